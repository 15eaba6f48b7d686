/*
 * store_damage.c - telling a user's own database from a fresh or broken
 * one.  Damage is never a new user: a user that exists (users row) but
 * whose user.db is missing, empty, cut short, unreadable, of another
 * schema or of another identity is *damaged*, and every opener gets
 * ERR_DAMAGED; only the explicit creation paths (store_user_add,
 * store_user_reset) make a database.
 *
 * users.db columns added here (idempotent migration at store open,
 * decided by PRAGMA table_info, no schema number):
 *     users.ident    32 hex digits, the identity of the user's database,
 *                    written at creation; NULL for users made before it
 *     users.damaged  why the last opener found the database damaged,
 *                    NULL when not; a hint for `castorctl status`, cleared
 *                    by the next good open, store_user_reset and add
 * user.db carries the same identity in state.ident.
 *
 * Invariants:
 *   D1. A users row with a non-NULL ident names exactly one user.db: the
 *       one whose state.ident is equal.  A database with another ident,
 *       or none, is not that user's.
 *   D2. Creation writes user.db (with state.ident) first and the users
 *       row's ident second (store_user_add: the row itself second;
 *       store_user_reset: the ident second), so a crash between leaves
 *       damage that the same explicit act repairs, never a wrong
 *       database taken for the user's.
 *   D3. Migration of a user from before identities (both NULL) writes
 *       state.ident first and adopts it into users.ident second; a
 *       crash between leaves (NULL, X), which the next opener adopts.
 *       Concurrent migrators agree: each sets only a NULL ident and then
 *       re-reads.
 */
#include "store/store.h"
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

static int
column_missing(sqlite3 *db, const char *column)
{
	sqlite3_stmt *s = NULL;
	int missing = 1;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info('users') WHERE name = ?1", -1,
		&s, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, column, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		missing = 0;
	sqlite3_finalize(s);
	return missing;
}

int
store_damage_migrate(sqlite3 *db, struct err *err)
{
	static const char *const cols[] = { "ident", "damaged" };
	int rc = 0;

	if (column_missing(db, "ident") == 0 && column_missing(db, "damaged") == 0)
		return 0;
	if (store_sql_exec(db, "BEGIN IMMEDIATE", err) < 0)
		return -1;
	for (size_t i = 0; rc == 0 && i < sizeof(cols) / sizeof(cols[0]); i++) {
		char sql[96];
		int m = column_missing(db, cols[i]);   /* again: another process may have won */

		if (m < 0)
			rc = store_sql_err(db, SQLITE_ERROR, err, "users.db table_info");
		else if (m == 1 && str_fmt(sql, sizeof(sql), "ALTER TABLE users ADD COLUMN %s TEXT",
			cols[i]) > 0)
			rc = store_sql_exec(db, sql, err);
	}
	if (rc == 0)
		rc = store_sql_exec(db, "COMMIT", err);
	if (rc < 0)
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

void
store_damage_new_ident(char out[STORE_IDENT_LEN + 1])
{
	store_random_hex(out, STORE_IDENT_LEN / 2);
}

int
store_damage_row(struct store *st, const char *name, char ident_r[STORE_IDENT_LEN + 1],
	bool *damaged_r, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	ident_r[0] = '\0';
	*damaged_r = false;
	if (!store_user_name_valid(name))
		return 0;
	if (sqlite3_prepare_v2(st->db, "SELECT ident, damaged FROM users WHERE name = ?", -1, &s,
		NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		if (sqlite3_column_type(s, 0) == SQLITE_TEXT)
			str_lcpy(ident_r, (const char *)sqlite3_column_text(s, 0), STORE_IDENT_LEN + 1);
		*damaged_r = sqlite3_column_type(s, 1) != SQLITE_NULL;
	}
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return store_sql_err(st->db, rc, err, "users.db");
}

/* UPDATE users ... WHERE name = ?1 with one text argument ?2. */
static int
row_update(struct store *st, const char *sql, const char *name, const char *text,
	struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (text != NULL)
		sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db update");
	return sqlite3_changes(st->db);
}

int
store_damage_adopt(struct store *st, const char *name, const char *ident, bool force,
	struct err *err)
{
	int rc = row_update(st, force ?
		"UPDATE users SET ident = ?2, damaged = NULL WHERE name = ?1" :
		"UPDATE users SET ident = ?2 WHERE name = ?1 AND ident IS NULL", name, ident, err);

	return rc < 0 ? -1 : 0;
}

int
store_damage_mark(struct store *st, const char *name, struct err *err, const char *fmt, ...)
{
	char why[256];
	va_list ap;
	int n;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	/* A hint for status: failing to write it changes nothing else. */
	n = row_update(st, "UPDATE users SET damaged = ?2 WHERE name = ?1 AND damaged IS NOT ?2",
		name, why, NULL);
	if (n > 0)
		log_error("user database damaged user=%s reason=%s", name, log_q(why));
	else if (n == 0 && store_user_exists(st, name, NULL) == 0)
		/* deleted meanwhile: its spool was moved away after the row */
		return err_set(err, ERR_NOTFOUND, "no such user %s", name);
	return err_set(err, ERR_DAMAGED, "user %s is damaged: %s", name, why);
}

void
store_damage_clear(struct store *st, const char *name)
{
	if (row_update(st, "UPDATE users SET damaged = NULL WHERE name = ?1 AND damaged IS NOT NULL",
		name, NULL, NULL) > 0)
		log_notice("user database no longer damaged user=%s", name);
}

/* A big-endian 16/32-bit field of the SQLite header. */
static uint32_t
be(const unsigned char *p, int n)
{
	uint32_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

int
store_damage_file(const char *dir, char *why, size_t size, struct err *err)
{
	char path[4096];
	unsigned char h[100];
	struct stat sb, wb;
	uint32_t psize;
	ssize_t n;
	int fd;

	if (str_fmt(path, sizeof(path), "%s/user.db", dir) < 0)
		return err_set(err, ERR_INVALID, "spool path too long");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT) {
			str_lcpy(why, "database missing", size);
			return 1;
		}
		return err_errno(err, ERR_TEMP, "open %s", path);
	}
	if (fstat(fd, &sb) < 0) {
		close(fd);
		return err_errno(err, ERR_TEMP, "stat %s", path);
	}
	n = pread(fd, h, sizeof(h), 0);
	close(fd);
	if (sb.st_size == 0) {
		str_lcpy(why, "database empty (0 bytes)", size);
		return 1;
	}
	if (n < 0)
		return err_errno(err, ERR_TEMP, "read %s", path);
	if (n < (ssize_t)sizeof(h) || memcmp(h, "SQLite format 3", 16) != 0) {
		str_lcpy(why, "not a database", size);
		return 1;
	}
	/* every user.db is made in WAL mode (bytes 18-19 = 2, persistent);
	 * one that is not was made by something else, and opening it would
	 * switch it over: a change to evidence */
	if (h[18] != 2 || h[19] != 2) {
		str_lcpy(why, "wrong format (not a WAL database)", size);
		return 1;
	}
	psize = be(h + 16, 2);
	if (psize == 1)
		psize = 65536;
	if (psize < 512 || (psize & (psize - 1)) != 0) {
		str_lcpy(why, "database header unreadable", size);
		return 1;
	}
	/* With a WAL holding frames the file may legitimately lag behind its
	 * header (a checkpoint cut short); SQLite's recovery sorts that out. */
	if (str_fmt(path, sizeof(path), "%s/user.db-wal", dir) > 0 && stat(path, &wb) == 0 &&
	    wb.st_size > 0)
		return 0;
	if (sb.st_size % psize != 0) {
		snprintf(why, size, "database truncated mid-page (%lld bytes, pages of %u)",
			(long long)sb.st_size, psize);
		return 1;
	}
	/* the header's page count is valid when its two counters agree */
	if (be(h + 24, 4) == be(h + 92, 4) &&
	    (uint64_t)be(h + 28, 4) * psize > (uint64_t)sb.st_size) {
		snprintf(why, size, "database truncated (%lld of %llu bytes)", (long long)sb.st_size,
			(unsigned long long)be(h + 28, 4) * psize);
		return 1;
	}
	return 0;
}

int
store_damage_orphan(struct store *st, const char *name)
{
	struct buf p = BUF_INIT;
	int r;

	if (!store_user_name_valid(name))
		return 0;
	store_user_dir(st, name, &p);
	buf_puts(&p, "/user.db");
	r = access(buf_cstr(&p), F_OK) == 0;
	buf_free(&p);
	return r;
}

int
store_user_damaged_list(struct store *st, store_user_damaged_fn fn, void *ctx, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc, r = 0;

	if (sqlite3_prepare_v2(st->db,
		"SELECT name, damaged FROM users WHERE damaged IS NOT NULL ORDER BY name", -1, &s,
		NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		r = fn(ctx, (const char *)sqlite3_column_text(s, 0),
			(const char *)sqlite3_column_text(s, 1));
		if (r != 0)
			break;
	}
	sqlite3_finalize(s);
	if (r != 0)
		return r;
	if (rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db damaged");
	return 0;
}

int
store_spool_orphans(struct store *st, store_spool_orphan_fn fn, void *ctx, struct err *err)
{
	struct buf p = BUF_INIT;
	DIR *top, *d;
	struct dirent *h, *e;
	int r = 0;

	buf_printf(&p, "%s/spool", st->root);
	top = opendir(buf_cstr(&p));
	if (top == NULL) {
		buf_free(&p);
		return errno == ENOENT ? 0 : err_errno(err, ERR_TEMP, "opendir spool");
	}
	while (r == 0 && (h = readdir(top)) != NULL) {
		if (h->d_name[0] == '.')
			continue;
		buf_reset(&p);
		buf_printf(&p, "%s/spool/%s", st->root, h->d_name);
		if ((d = opendir(buf_cstr(&p))) == NULL)
			continue;
		while (r == 0 && (e = readdir(d)) != NULL) {
			int x;

			if (e->d_name[0] == '.' || !store_user_name_valid(e->d_name) ||
			    e->d_name[0] != h->d_name[0] || !store_damage_orphan(st, e->d_name))
				continue;
			x = store_user_exists(st, e->d_name, err);
			if (x < 0)
				r = -1;
			else if (x == 0)
				r = fn(ctx, e->d_name);
		}
		closedir(d);
	}
	closedir(top);
	buf_free(&p);
	return r;
}
