/*
 * store_mailbox.c - mailboxes of a user: name validation, create,
 * rename (with children), delete (tombstone), LIST with IMAP patterns,
 * STATUS counts, special-use, subscriptions.
 *
 * Durable state is the `mailboxes` and `subs` tables of user.db (format
 * and invariants in store_user.c).  Rules kept here:
 *   - uniqueid: 128 random bits as hex, assigned at creation, never
 *     changed by rename; a deleted mailbox keeps its row with
 *     deleted_modseq set (the name is free again for a new mailbox,
 *     which gets a new uniqueid and a new uidvalidity).
 *   - uidvalidity: max(now, last_uidvalidity + 1) from state, so a
 *     recreated name never reuses a uidvalidity; a new user.db starts
 *     from the server's floor (store_uidvalidity_floor), so neither does
 *     a user deleted and added again.
 *   - every create/rename/delete/special-use change stamps the row's
 *     modseq (and highestmodseq) with the call's modseq.
 */
#include "store/store.h"
#include "store/store_int.h"
#include "store/store_repl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#define MB_COLS "id, uniqueid, name, uidvalidity, uidnext, highestmodseq, createdmodseq," \
	" modseq, deleted_modseq, specialuse, recentuid, sync_crc"

/* ------------------------------------------------------------------ */
/* names */

/* Decode one UTF-8 sequence strictly; returns its length or 0 if invalid. */
static size_t
utf8_next(const unsigned char *s, size_t n, uint32_t *cp)
{
	uint32_t c;
	size_t len;

	if (n == 0)
		return 0;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	} else if ((s[0] & 0xe0) == 0xc0) {
		c = s[0] & 0x1f;
		len = 2;
	} else if ((s[0] & 0xf0) == 0xe0) {
		c = s[0] & 0x0f;
		len = 3;
	} else if ((s[0] & 0xf8) == 0xf0) {
		c = s[0] & 0x07;
		len = 4;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return len;
}

int
store_mailbox_name_check(const char *name, char *norm, struct err *err)
{
	const unsigned char *s = (const unsigned char *)name;
	size_t n, i, comp_start = 0;

	if (name == NULL || name[0] == '\0')
		return err_set(err, ERR_INVALID, "empty mailbox name");
	n = strlen(name);
	if (n > STORE_MBOX_NAME_MAX)
		return err_set(err, ERR_INVALID, "mailbox name longer than %d bytes", STORE_MBOX_NAME_MAX);
	for (i = 0; i <= n; ) {
		uint32_t cp;
		size_t l;

		if (i == n || s[i] == '/') {
			size_t clen = i - comp_start;
			if (clen == 0)
				return err_set(err, ERR_INVALID, "mailbox name %s has an empty component",
					log_q(name));
			if (clen > STORE_MBOX_COMPONENT_MAX)
				return err_set(err, ERR_INVALID, "mailbox name component longer than %d bytes",
					STORE_MBOX_COMPONENT_MAX);
			if ((clen == 1 && s[comp_start] == '.') ||
			    (clen == 2 && s[comp_start] == '.' && s[comp_start + 1] == '.'))
				return err_set(err, ERR_INVALID, "mailbox name %s has a '.' or '..' component",
					log_q(name));
			i++;
			comp_start = i;
			continue;
		}
		l = utf8_next(s + i, n - i, &cp);
		if (l == 0)
			return err_set(err, ERR_INVALID, "mailbox name is not valid UTF-8");
		if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f))
			return err_set(err, ERR_INVALID, "mailbox name contains a control character");
		if (cp == '*' || cp == '%')
			return err_set(err, ERR_INVALID, "mailbox name contains a wildcard (* or %%)");
		i += l;
	}
	if (norm != NULL) {
		memcpy(norm, name, n + 1);
		if (str_has_prefix_ci(name, "INBOX") && (name[5] == '\0' || name[5] == '/'))
			memcpy(norm, "INBOX", 5);
	}
	return 0;
}

static const char *const special_uses[] = { "\\All", "\\Archive", "\\Drafts", "\\Flagged",
	"\\Junk", "\\Sent", "\\Trash" };

int
store_mailbox_specialuse_check(const char *s, char *out, size_t outsz, struct err *err)
{
	struct buf b = BUF_INIT;
	unsigned seen = 0;
	const char *p = s ? s : "";

	while (*p != '\0') {
		size_t len, k;
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		len = strcspn(p, " ");
		for (k = 0; k < sizeof(special_uses) / sizeof(special_uses[0]); k++)
			if (strlen(special_uses[k]) == len && strncasecmp(p, special_uses[k], len) == 0)
				break;
		if (k == sizeof(special_uses) / sizeof(special_uses[0])) {
			buf_free(&b);
			return err_set(err, ERR_INVALID, "unknown special-use attribute %.*s",
				(int)(len > 64 ? 64 : len), p);
		}
		if (!(seen & (1u << k))) {
			seen |= 1u << k;
		}
		p += len;
	}
	for (size_t k = 0; k < sizeof(special_uses) / sizeof(special_uses[0]); k++) {
		if (seen & (1u << k)) {
			if (b.len)
				buf_putc(&b, ' ');
			buf_puts(&b, special_uses[k]);
		}
	}
	if (b.len >= outsz) {
		buf_free(&b);
		return err_set(err, ERR_INVALID, "special-use list too long");
	}
	memcpy(out, buf_cstr(&b), b.len + 1);
	buf_free(&b);
	return 0;
}

/* ------------------------------------------------------------------ */
/* rows */

static void
row_fill(sqlite3_stmt *s, struct store_mbrow *row)
{
	memset(row, 0, sizeof(*row));
	row->id = sqlite3_column_int64(s, 0);
	str_lcpy(row->mb.uniqueid, (const char *)sqlite3_column_text(s, 1), sizeof(row->mb.uniqueid));
	str_lcpy(row->mb.name, (const char *)sqlite3_column_text(s, 2), sizeof(row->mb.name));
	row->mb.uidvalidity = (uint32_t)sqlite3_column_int64(s, 3);
	row->mb.uidnext = (uint32_t)sqlite3_column_int64(s, 4);
	row->mb.highestmodseq = (uint64_t)sqlite3_column_int64(s, 5);
	row->mb.createdmodseq = (uint64_t)sqlite3_column_int64(s, 6);
	row->mb.modseq = (uint64_t)sqlite3_column_int64(s, 7);
	row->mb.deleted_modseq = (uint64_t)sqlite3_column_int64(s, 8);
	str_lcpy(row->mb.specialuse, (const char *)sqlite3_column_text(s, 9),
		sizeof(row->mb.specialuse));
	row->recentuid = (uint32_t)sqlite3_column_int64(s, 10);
	row->mb.sync_crc = (uint32_t)sqlite3_column_int64(s, 11);
}

static int
row_load(struct store_user *u, sqlite3_stmt *s, struct store_mbrow *row, const char *what,
	struct err *err)
{
	int rc = sqlite3_step(s);

	if (rc == SQLITE_ROW) {
		row_fill(s, row);
		sqlite3_reset(s);
		return 0;
	}
	sqlite3_reset(s);
	if (rc == SQLITE_DONE)
		return err_set(err, ERR_NOTFOUND, "no such mailbox %s", log_q(what));
	return store_sql_err(u->db, rc, err, "mailbox");
}

int
store_mailbox_load_id(struct store_user *u, const char *mailbox_id, bool include_deleted,
	struct store_mbrow *row, struct err *err)
{
	sqlite3_stmt *s;

	if (mailbox_id == NULL)
		return err_set(err, ERR_INVALID, "no mailbox id");
	s = include_deleted ?
		store_user_stmt(u, "SELECT " MB_COLS " FROM mailboxes WHERE uniqueid = ?", err) :
		store_user_stmt(u, "SELECT " MB_COLS " FROM mailboxes WHERE uniqueid = ?"
			" AND deleted_modseq = 0", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, mailbox_id, -1, SQLITE_STATIC);
	return row_load(u, s, row, mailbox_id, err);
}

int
store_mailbox_load_name(struct store_user *u, const char *norm_name, struct store_mbrow *row,
	struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u,
		"SELECT " MB_COLS " FROM mailboxes WHERE name = ? AND deleted_modseq = 0", err);

	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, norm_name, -1, SQLITE_STATIC);
	return row_load(u, s, row, norm_name, err);
}

int
store_mailbox_save_counters(struct store_user *u, const struct store_mbrow *row, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u,
		"UPDATE mailboxes SET uidnext = ?2, highestmodseq = ?3, sync_crc = ?4 WHERE id = ?1", err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, row->id);
	sqlite3_bind_int64(s, 2, row->mb.uidnext);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)row->mb.highestmodseq);
	sqlite3_bind_int64(s, 4, row->mb.sync_crc);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "mailbox update");
	return 0;
}

static int
next_uidvalidity(struct store_user *u, uint32_t *uv_r, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u,
		"UPDATE state SET last_uidvalidity = max(?1, last_uidvalidity + 1) WHERE id = 1"
		" RETURNING last_uidvalidity", err);
	int rc;
	int64_t now = (int64_t)time(NULL);

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, now);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return store_sql_err(u->db, rc, err, "uidvalidity");
	}
	*uv_r = (uint32_t)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (*uv_r == 0)
		*uv_r = 1;
	return 0;
}

static int
row_insert(struct store_user *u, struct store_mbrow *row, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u,
		"INSERT INTO mailboxes(uniqueid, name, uidvalidity, uidnext, highestmodseq,"
		" createdmodseq, modseq, deleted_modseq, specialuse, recentuid, sync_crc)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)", err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, row->mb.uniqueid, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, row->mb.name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, row->mb.uidvalidity);
	sqlite3_bind_int64(s, 4, row->mb.uidnext);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)row->mb.highestmodseq);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)row->mb.createdmodseq);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)row->mb.modseq);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)row->mb.deleted_modseq);
	sqlite3_bind_text(s, 9, row->mb.specialuse, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 10, row->recentuid);
	sqlite3_bind_int64(s, 11, row->mb.sync_crc);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		if ((rc & 0xff) == SQLITE_CONSTRAINT)
			return err_set(err, ERR_EXISTS, "mailbox %s already exists", log_q(row->mb.name));
		return store_sql_err(u->db, rc, err, "mailbox insert");
	}
	row->id = sqlite3_last_insert_rowid(u->db);
	return 0;
}

int
store_mailbox_create_row(struct store_user *u, const char *norm_name, const char *specialuse,
	struct store_mbrow *row, struct err *err)
{
	uint64_t m;

	memset(row, 0, sizeof(*row));
	if (store_mailbox_specialuse_check(specialuse, row->mb.specialuse,
		sizeof(row->mb.specialuse), err) < 0)
		return -1;
	if (store_user_op_modseq(u, &m, err) < 0 || next_uidvalidity(u, &row->mb.uidvalidity, err) < 0)
		return -1;
	store_random_hex(row->mb.uniqueid, 16);
	str_lcpy(row->mb.name, norm_name, sizeof(row->mb.name));
	row->mb.uidnext = 1;
	row->mb.highestmodseq = m;
	row->mb.createdmodseq = m;
	row->mb.modseq = m;
	row->recentuid = 1;
	if (row_insert(u, row, err) < 0)
		return -1;
	store_user_event(u, STORE_CHANGE_MAILBOX, row->mb.uniqueid);
	return 0;
}

/* ------------------------------------------------------------------ */
/* create / get / rename / delete */

/* 0 when no live mailbox has this name; -1 with ERR_EXISTS (or another
 * error) otherwise. */
static int
name_free(struct store_user *u, const char *norm, struct err *err)
{
	struct store_mbrow tmp;
	struct err e;

	if (store_mailbox_load_name(u, norm, &tmp, &e) == 0)
		return err_set(err, ERR_EXISTS, "mailbox %s already exists", log_q(norm));
	if (e.kind != ERR_NOTFOUND) {
		if (err)
			*err = e;
		return -1;
	}
	return 0;
}

int
store_mailbox_create(struct store_user *u, const char *name, const char *specialuse,
	struct store_mailbox *mb_r, struct err *err)
{
	char norm[STORE_MBOX_NAME_MAX + 1];
	char su[STORE_SPECIALUSE_MAX + 1];
	struct store_mbrow row;
	int rc;

	if (store_mailbox_name_check(name, norm, err) < 0 ||
	    store_mailbox_specialuse_check(specialuse, su, sizeof(su), err) < 0)
		return -1;
	if (store_user_op_begin(u, err) < 0)
		return -1;
	rc = name_free(u, norm, err);
	if (rc == 0)
		rc = store_mailbox_create_row(u, norm, su, &row, err);
	if (store_user_op_end(u, rc, "store.mailbox.before_commit", NULL, err) < 0)
		return -1;
	if (mb_r)
		*mb_r = row.mb;
	return 0;
}

int
store_mailbox_create_parents(struct store_user *u, const char *name, struct err *err)
{
	char *p = xstrdup(name);
	struct store_mailbox mb;
	int rc = 0;

	for (char *sl = strchr(p, '/'); sl != NULL; sl = strchr(sl + 1, '/')) {
		*sl = '\0';
		if (p[0] != '\0' && store_mailbox_get(u, p, &mb, err) < 0) {
			if (err->kind != ERR_NOTFOUND ||
			    (store_mailbox_create(u, p, NULL, NULL, err) < 0 && err->kind != ERR_EXISTS)) {
				rc = -1;
				break;
			}
		}
		*sl = '/';
	}
	free(p);
	return rc;
}

int
store_mailbox_get(struct store_user *u, const char *name, struct store_mailbox *mb_r,
	struct err *err)
{
	char norm[STORE_MBOX_NAME_MAX + 1];
	struct store_mbrow row;

	if (store_mailbox_name_check(name, norm, err) < 0)
		return -1;
	if (store_mailbox_load_name(u, norm, &row, err) < 0)
		return -1;
	if (mb_r)
		*mb_r = row.mb;
	return 0;
}

int
store_mailbox_get_id(struct store_user *u, const char *mailbox_id, bool include_deleted,
	struct store_mailbox *mb_r, struct err *err)
{
	struct store_mbrow row;

	if (store_mailbox_load_id(u, mailbox_id, include_deleted, &row, err) < 0)
		return -1;
	if (mb_r)
		*mb_r = row.mb;
	return 0;
}

/* Rows named `norm` or below it (live), in name order. */
static int
load_subtree(struct store_user *u, const char *norm, struct store_mbrow **rows_r, size_t *n_r,
	struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u,
		"SELECT " MB_COLS " FROM mailboxes WHERE deleted_modseq = 0 AND"
		" (name = ?1 OR substr(name, 1, length(?1) + 1) = ?1 || '/') ORDER BY name", err);
	struct store_mbrow *rows = NULL;
	size_t n = 0, cap = 0;
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, norm, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			cap = cap ? cap * 2 : 8;
			rows = xreallocarray(rows, cap, sizeof(*rows));
		}
		row_fill(s, &rows[n++]);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(rows);
		return store_sql_err(u->db, rc, err, "mailbox subtree");
	}
	*rows_r = rows;
	*n_r = n;
	return 0;
}

static int
rename_inbox(struct store_user *u, const char *newnorm, struct err *err)
{
	struct store_mbrow inbox, dst;

	if (store_mailbox_load_name(u, "INBOX", &inbox, err) < 0)
		return -1;
	if (name_free(u, newnorm, err) < 0)
		return -1;
	if (store_mailbox_create_row(u, newnorm, NULL, &dst, err) < 0)
		return -1;
	return store_record_move_all(u, &inbox, &dst, err);
}

int
store_mailbox_rename(struct store_user *u, const char *oldname, const char *newname,
	struct err *err)
{
	char oldn[STORE_MBOX_NAME_MAX + 1], newn[STORE_MBOX_NAME_MAX + 1];
	struct store_mbrow *rows = NULL;
	size_t n = 0, oldlen;
	uint64_t m;
	int rc = 0;

	if (store_mailbox_name_check(oldname, oldn, err) < 0 ||
	    store_mailbox_name_check(newname, newn, err) < 0)
		return -1;
	oldlen = strlen(oldn);
	if (str_eq(oldn, newn))
		return err_set(err, ERR_EXISTS, "mailbox %s already has that name", log_q(oldn));
	if (strncmp(newn, oldn, oldlen) == 0 && newn[oldlen] == '/')
		return err_set(err, ERR_PERM, "cannot rename %s into its own child %s", log_q(oldn),
			log_q(newn));
	if (store_user_op_begin(u, err) < 0)
		return -1;
	if (str_eq(oldn, "INBOX")) {
		rc = rename_inbox(u, newn, err);
		return store_user_op_end(u, rc, "store.mailbox.before_commit", NULL, err);
	}
	rc = load_subtree(u, oldn, &rows, &n, err);
	if (rc == 0 && (n == 0 || !str_eq(rows[0].mb.name, oldn)))
		rc = err_set(err, ERR_NOTFOUND, "no such mailbox %s", log_q(oldn));
	if (rc == 0 && str_eq(newn, "INBOX"))
		rc = err_set(err, ERR_EXISTS, "mailbox INBOX already exists");
	if (rc == 0)
		rc = store_user_op_modseq(u, &m, err);
	for (size_t i = 0; rc == 0 && i < n; i++) {
		struct buf nn = BUF_INIT;
		const char *suffix = rows[i].mb.name + oldlen;
		sqlite3_stmt *s;

		buf_printf(&nn, "%s%s", newn, suffix);
		if (nn.len > STORE_MBOX_NAME_MAX) {
			rc = err_set(err, ERR_INVALID, "new name of %s would be longer than %d bytes",
				log_q(rows[i].mb.name), STORE_MBOX_NAME_MAX);
		} else if (name_free(u, buf_cstr(&nn), err) < 0) {
			rc = -1;
		} else if ((s = store_user_stmt(u, "UPDATE mailboxes SET name = ?2, modseq = ?3,"
			" highestmodseq = max(highestmodseq, ?3) WHERE id = ?1", err)) == NULL) {
			rc = -1;
		} else {
			sqlite3_bind_int64(s, 1, rows[i].id);
			sqlite3_bind_text(s, 2, buf_cstr(&nn), (int)nn.len, SQLITE_STATIC);
			sqlite3_bind_int64(s, 3, (sqlite3_int64)m);
			rc = sqlite3_step(s);
			sqlite3_reset(s);
			if (rc == SQLITE_DONE) {
				rc = 0;
				store_user_event(u, STORE_CHANGE_MAILBOX, rows[i].mb.uniqueid);
			} else if ((rc & 0xff) == SQLITE_CONSTRAINT) {
				rc = err_set(err, ERR_EXISTS, "mailbox %s already exists",
					log_q(buf_cstr(&nn)));
			} else {
				rc = store_sql_err(u->db, rc, err, "rename");
			}
		}
		buf_free(&nn);
	}
	free(rows);
	return store_user_op_end(u, rc, "store.mailbox.before_commit", NULL, err);
}

int
store_mailbox_delete(struct store_user *u, const char *name, struct err *err)
{
	char norm[STORE_MBOX_NAME_MAX + 1];
	struct store_mbrow row;
	sqlite3_stmt *s;
	uint64_t m;
	int64_t bytes = 0, msgs = 0;
	int rc;

	if (store_mailbox_name_check(name, norm, err) < 0)
		return -1;
	if (str_eq(norm, "INBOX"))
		return err_set(err, ERR_PERM, "INBOX cannot be deleted");
	if (store_user_op_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_name(u, norm, &row, err);
	if (rc == 0)
		rc = store_user_op_modseq(u, &m, err);
	if (rc == 0) {
		s = store_user_stmt(u, "SELECT coalesce(sum(size), 0), count(*) FROM records"
			" WHERE mailbox = ? AND expunged_modseq = 0", err);
		if (s == NULL) {
			rc = -1;
		} else {
			sqlite3_bind_int64(s, 1, row.id);
			if (sqlite3_step(s) == SQLITE_ROW) {
				bytes = sqlite3_column_int64(s, 0);
				msgs = sqlite3_column_int64(s, 1);
			} else {
				rc = store_sql_err(u->db, SQLITE_ERROR, err, "delete");
			}
			sqlite3_reset(s);
		}
	}
	if (rc == 0) {
		s = store_user_stmt(u, "UPDATE mailboxes SET deleted_modseq = ?2, modseq = ?2,"
			" highestmodseq = ?2 WHERE id = ?1", err);
		if (s == NULL) {
			rc = -1;
		} else {
			sqlite3_bind_int64(s, 1, row.id);
			sqlite3_bind_int64(s, 2, (sqlite3_int64)m);
			rc = sqlite3_step(s) == SQLITE_DONE ? 0 :
				store_sql_err(u->db, SQLITE_ERROR, err, "delete");
			sqlite3_reset(s);
		}
	}
	if (rc == 0)
		rc = store_user_usage_add(u, -bytes, -msgs, err);
	if (rc == 0)
		store_user_event(u, STORE_CHANGE_MAILBOX, row.mb.uniqueid);
	rc = store_user_op_end(u, rc, "store.mailbox.before_commit", NULL, err);
	if (rc == 0) {
		/* delete_hold_days: the hold runs from this note (store_repl.h) */
		struct err e2;
		row.mb.deleted_modseq = m;
		if (store_deleted_note(u, &row.mb, (int64_t)time(NULL), &e2) < 0)
			log_warn("cannot note the deletion user=%s mailbox=%s error=%s", u->name,
				row.mb.uniqueid, log_q(e2.msg));
	}
	return rc;
}

int
store_mailbox_set_specialuse(struct store_user *u, const char *name, const char *specialuse,
	struct err *err)
{
	char norm[STORE_MBOX_NAME_MAX + 1], su[STORE_SPECIALUSE_MAX + 1];
	struct store_mbrow row;
	sqlite3_stmt *s;
	uint64_t m;
	int rc;

	if (store_mailbox_name_check(name, norm, err) < 0 ||
	    store_mailbox_specialuse_check(specialuse, su, sizeof(su), err) < 0)
		return -1;
	if (store_user_op_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_name(u, norm, &row, err);
	if (rc == 0 && !str_eq(row.mb.specialuse, su)) {
		rc = store_user_op_modseq(u, &m, err);
		if (rc == 0 && (s = store_user_stmt(u, "UPDATE mailboxes SET specialuse = ?2,"
			" modseq = ?3, highestmodseq = max(highestmodseq, ?3) WHERE id = ?1", err)) != NULL) {
			sqlite3_bind_int64(s, 1, row.id);
			sqlite3_bind_text(s, 2, su, -1, SQLITE_STATIC);
			sqlite3_bind_int64(s, 3, (sqlite3_int64)m);
			rc = sqlite3_step(s) == SQLITE_DONE ? 0 :
				store_sql_err(u->db, SQLITE_ERROR, err, "specialuse");
			sqlite3_reset(s);
			store_user_event(u, STORE_CHANGE_MAILBOX, row.mb.uniqueid);
		} else if (rc == 0) {
			rc = -1;
		}
	}
	return store_user_op_end(u, rc, NULL, NULL, err);
}

/* ------------------------------------------------------------------ */
/* LIST */

/* Wildcard match by dynamic programming: O(|pattern| * |name|). */
static bool
match_dp(const char *p, const char *n)
{
	size_t nl = strlen(n), pl = strlen(p);
	bool *cur, *nxt, ok;

	if (pl > 4 * STORE_MBOX_NAME_MAX)
		return false;
	cur = xcalloc(nl + 1, sizeof(bool));
	nxt = xcalloc(nl + 1, sizeof(bool));
	cur[0] = true;
	for (size_t i = 0; i < pl; i++) {
		char c = p[i];
		memset(nxt, 0, nl + 1);
		if (c == '*') {
			bool any = false;
			for (size_t j = 0; j <= nl; j++) {
				any = any || cur[j];
				nxt[j] = any;
			}
		} else if (c == '%') {
			bool any = false;
			for (size_t j = 0; j <= nl; j++) {
				if (j > 0 && n[j - 1] == '/')
					any = false;
				any = any || cur[j];
				nxt[j] = any;
			}
		} else {
			for (size_t j = 0; j < nl; j++)
				nxt[j + 1] = cur[j] && n[j] == c;
		}
		bool *t = cur;
		cur = nxt;
		nxt = t;
	}
	ok = cur[nl];
	free(cur);
	free(nxt);
	return ok;
}

bool
store_list_match(const char *pattern, const char *name)
{
	if (pattern == NULL || name == NULL)
		return false;
	/* INBOX is case-insensitive, in the pattern as in names. */
	if (str_has_prefix(name, "INBOX") && (name[5] == '\0' || name[5] == '/') &&
	    str_has_prefix_ci(pattern, "INBOX")) {
		struct buf b = BUF_INIT;
		bool r;
		buf_puts(&b, "INBOX");
		buf_puts(&b, pattern + 5);
		r = match_dp(buf_cstr(&b), name);
		buf_free(&b);
		return r;
	}
	return match_dp(pattern, name);
}

struct lentry {
	char *name;
	unsigned attrs;
	struct store_mailbox *mb;   /* NULL for nonexistent */
};

static int
lentry_cmp(const void *a, const void *b)
{
	const struct lentry *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c != 0)
		return c;
	/* live before tombstones */
	return (int)((x->attrs & STORE_MBATTR_DELETED) != 0) - (int)((y->attrs & STORE_MBATTR_DELETED) != 0);
}

static int
str_cmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* First index in sorted names[] >= key. */
static size_t
lower_bound(char **names, size_t n, const char *key)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (strcmp(names[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static bool
sorted_has(char **names, size_t n, const char *key)
{
	size_t i = lower_bound(names, n, key);

	return i < n && str_eq(names[i], key);
}

/* Is there a name in names[] below `parent` (parent + "/" prefix)? If
 * pattern is given, only count those that do not match it. */
static bool
has_descendant(char **names, size_t n, const char *parent, const char *pattern)
{
	struct buf k = BUF_INIT;
	size_t i;
	bool r = false;

	buf_printf(&k, "%s/", parent);
	for (i = lower_bound(names, n, buf_cstr(&k)); i < n && str_has_prefix(names[i], buf_cstr(&k));
	     i++) {
		if (pattern == NULL || !store_list_match(pattern, names[i])) {
			r = true;
			break;
		}
	}
	buf_free(&k);
	return r;
}

/* STORE_LIST_CHILDINFO: every ancestor of a subscribed name that matches
 * the pattern while a subscribed descendant does not gets
 * STORE_MBATTR_CHILDSUBSCRIBED; one not listed yet (not subscribed) is
 * added, \NonExistent when it is no mailbox.  subs and live are sorted. */
static void
list_childinfo(const char *pattern, char **subs, size_t nsubs, char **live, size_t nlive,
	struct store_mailbox *mbs, size_t nmbs, struct lentry **ents_r, size_t *nents_r,
	size_t *cap_r)
{
	for (size_t i = 0; i < nsubs; i++) {
		char *p = xstrdup(subs[i]);

		for (char *sl = strchr(p, '/'); sl != NULL; sl = strchr(sl + 1, '/')) {
			struct store_mailbox *mb = NULL;
			unsigned a = STORE_MBATTR_CHILDSUBSCRIBED;
			size_t k;

			*sl = '\0';
			if (!store_list_match(pattern, p) || !has_descendant(subs, nsubs, p, pattern)) {
				*sl = '/';
				continue;
			}
			for (k = 0; k < *nents_r; k++)
				if (str_eq((*ents_r)[k].name, p))
					break;
			if (k < *nents_r) {
				(*ents_r)[k].attrs |= STORE_MBATTR_CHILDSUBSCRIBED;
				*sl = '/';
				continue;
			}
			for (size_t m = 0; m < nmbs; m++)
				if (mbs[m].deleted_modseq == 0 && str_eq(mbs[m].name, p))
					mb = &mbs[m];
			if (has_descendant(live, nlive, p, NULL))
				a |= STORE_MBATTR_HASCHILDREN;
			else if (mb != NULL)
				a |= STORE_MBATTR_HASNOCHILDREN;
			if (mb == NULL)
				a |= STORE_MBATTR_NONEXISTENT;
			if (*nents_r == *cap_r) {
				*cap_r = *cap_r ? *cap_r * 2 : 16;
				*ents_r = xreallocarray(*ents_r, *cap_r, sizeof(**ents_r));
			}
			(*ents_r)[*nents_r].name = xstrdup(p);
			(*ents_r)[*nents_r].attrs = a;
			(*ents_r)[*nents_r].mb = mb;
			(*nents_r)++;
			*sl = '/';
		}
		free(p);
	}
}

/* What one LIST call gathers: the rows, the subscriptions, the live names
 * and the entries to report. */
struct list_set {
	struct store_mailbox *mbs;
	size_t nmbs;
	char **subs;
	size_t nsubs;
	char **live;
	size_t nlive;
	struct lentry *ents;
	size_t nents, capents;
};

/* Reads the mailbox rows (tombstones only with STORE_LIST_DELETED) into ls->mbs. */
static int
list_read_mailboxes(struct store_user *u, unsigned flags, struct list_set *ls, struct err *err)
{
	struct store_mbrow row;
	size_t capmbs = 0;
	sqlite3_stmt *s;
	int rc;

	s = store_user_stmt(u, "SELECT " MB_COLS " FROM mailboxes ORDER BY name", err);
	if (s == NULL)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		row_fill(s, &row);
		if (row.mb.deleted_modseq != 0 && !(flags & STORE_LIST_DELETED))
			continue;
		if (ls->nmbs == capmbs) {
			capmbs = capmbs ? capmbs * 2 : 16;
			ls->mbs = xreallocarray(ls->mbs, capmbs, sizeof(*ls->mbs));
		}
		ls->mbs[ls->nmbs++] = row.mb;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "list");
	return 0;
}

/* Reads the subscribed names into ls->subs. */
static int
list_read_subs(struct store_user *u, struct list_set *ls, struct err *err)
{
	sqlite3_stmt *s;
	int rc;

	s = store_user_stmt(u, "SELECT name FROM subs WHERE subscribed = 1 ORDER BY name", err);
	if (s == NULL)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		ls->subs = xreallocarray(ls->subs, ls->nsubs + 1, sizeof(*ls->subs));
		ls->subs[ls->nsubs++] = xstrdup((const char *)sqlite3_column_text(s, 0));
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "list subs");
	return 0;
}

/* Reads rows and subscriptions in one read transaction. */
static int
list_read(struct store_user *u, unsigned flags, struct list_set *ls, struct err *err)
{
	int rc;

	if (store_user_read_begin(u, err) < 0)
		return -1;
	rc = list_read_mailboxes(u, flags, ls, err);
	if (rc == 0)
		rc = list_read_subs(u, ls, err);
	store_user_read_end(u);
	return rc;
}

/* Sorts the subscriptions and collects the live names, sorted (byte order). */
static void
list_index(struct list_set *ls)
{
	if (ls->nsubs > 0)
		qsort(ls->subs, ls->nsubs, sizeof(*ls->subs), str_cmp_p);
	ls->live = xcalloc(ls->nmbs + 1, sizeof(*ls->live));
	for (size_t i = 0; i < ls->nmbs; i++)
		if (ls->mbs[i].deleted_modseq == 0)
			ls->live[ls->nlive++] = ls->mbs[i].name;
	if (ls->nlive > 0)
		qsort(ls->live, ls->nlive, sizeof(*ls->live), str_cmp_p);
}

/* Appends one entry to report (the name is copied). */
static void
list_add(struct list_set *ls, const char *name, unsigned attrs, struct store_mailbox *mb)
{
	if (ls->nents == ls->capents) {
		ls->capents = ls->capents ? ls->capents * 2 : 16;
		ls->ents = xreallocarray(ls->ents, ls->capents, sizeof(*ls->ents));
	}
	ls->ents[ls->nents].name = xstrdup(name);
	ls->ents[ls->nents].attrs = attrs;
	ls->ents[ls->nents].mb = mb;
	ls->nents++;
}

/* LSUB / LIST (SUBSCRIBED): the subscribed names matching, with CHILDINFO parents. */
static void
list_subscribed(struct list_set *ls, const char *pattern, unsigned flags)
{
	for (size_t i = 0; i < ls->nsubs; i++) {
		struct store_mailbox *mb = NULL;
		unsigned a = STORE_MBATTR_SUBSCRIBED;
		if (!store_list_match(pattern, ls->subs[i]))
			continue;
		for (size_t k = 0; k < ls->nmbs; k++)
			if (ls->mbs[k].deleted_modseq == 0 && str_eq(ls->mbs[k].name, ls->subs[i]))
				mb = &ls->mbs[k];
		if (mb == NULL)
			a |= STORE_MBATTR_NONEXISTENT;
		a |= has_descendant(ls->live, ls->nlive, ls->subs[i], NULL) ?
			STORE_MBATTR_HASCHILDREN : STORE_MBATTR_HASNOCHILDREN;
		list_add(ls, ls->subs[i], a, mb);
	}
	if (flags & STORE_LIST_CHILDINFO)
		list_childinfo(pattern, ls->subs, ls->nsubs, ls->live, ls->nlive, ls->mbs, ls->nmbs,
			&ls->ents, &ls->nents, &ls->capents);
}

/* Plain LIST: every row matching (tombstones as \Deleted entries). */
static void
list_rows(struct list_set *ls, const char *pattern)
{
	for (size_t i = 0; i < ls->nmbs; i++) {
		struct store_mailbox *mb = &ls->mbs[i];
		unsigned a;
		if (!store_list_match(pattern, mb->name))
			continue;
		if (mb->deleted_modseq != 0) {
			list_add(ls, mb->name, STORE_MBATTR_DELETED, mb);
			continue;
		}
		a = has_descendant(ls->live, ls->nlive, mb->name, NULL) ? STORE_MBATTR_HASCHILDREN :
			STORE_MBATTR_HASNOCHILDREN;
		if (sorted_has(ls->subs, ls->nsubs, mb->name))
			a |= STORE_MBATTR_SUBSCRIBED;
		list_add(ls, mb->name, a, mb);
	}
}

/* Missing parents: listed when they match and a descendant was cut off
 * by the pattern (RFC 3501 '%' rule). */
static void
list_missing_parents(struct list_set *ls, const char *pattern)
{
	char **seen = NULL;
	size_t nseen = 0;

	for (size_t i = 0; i < ls->nlive; i++) {
		char *p = xstrdup(ls->live[i]);
		for (char *sl = strchr(p, '/'); sl != NULL; sl = strchr(sl + 1, '/')) {
			*sl = '\0';
			if (!sorted_has(ls->live, ls->nlive, p) && store_list_match(pattern, p) &&
			    has_descendant(ls->live, ls->nlive, p, pattern)) {
				bool dup = false;
				for (size_t k = 0; k < nseen; k++)
					if (str_eq(seen[k], p))
						dup = true;
				if (!dup) {
					unsigned a = STORE_MBATTR_NONEXISTENT | STORE_MBATTR_HASCHILDREN;
					if (sorted_has(ls->subs, ls->nsubs, p))
						a |= STORE_MBATTR_SUBSCRIBED;
					list_add(ls, p, a, NULL);
					seen = xreallocarray(seen, nseen + 1, sizeof(*seen));
					seen[nseen++] = xstrdup(p);
				}
			}
			*sl = '/';
		}
		free(p);
	}
	for (size_t k = 0; k < nseen; k++)
		free(seen[k]);
	free(seen);
}

/* Sorts the entries and hands each to fn until it returns non-zero (its value is returned). */
static int
list_emit(struct list_set *ls, store_list_fn fn, void *ctx)
{
	int r = 0;

	if (ls->nents > 0)
		qsort(ls->ents, ls->nents, sizeof(*ls->ents), lentry_cmp);
	for (size_t i = 0; i < ls->nents; i++) {
		r = fn(ctx, ls->ents[i].name, ls->ents[i].attrs, ls->ents[i].mb);
		if (r != 0)
			break;
	}
	return r;
}

/* Frees what list_read .. list_emit gathered. */
static void
list_set_free(struct list_set *ls)
{
	for (size_t i = 0; i < ls->nents; i++)
		free(ls->ents[i].name);
	free(ls->ents);
	for (size_t i = 0; i < ls->nsubs; i++)
		free(ls->subs[i]);
	free(ls->subs);
	free(ls->live);
	free(ls->mbs);
}

int
store_mailbox_list(struct store_user *u, const char *pattern, unsigned flags, store_list_fn fn,
	void *ctx, struct err *err)
{
	struct list_set ls;
	int rc;

	memset(&ls, 0, sizeof(ls));
	if (pattern == NULL)
		pattern = "*";
	rc = list_read(u, flags, &ls, err);
	if (rc == 0) {
		list_index(&ls);
		if (flags & STORE_LIST_SUBSCRIBED) {
			list_subscribed(&ls, pattern, flags);
		} else {
			list_rows(&ls, pattern);
			if (!(flags & STORE_LIST_NO_PARENTS))
				list_missing_parents(&ls, pattern);
		}
		rc = list_emit(&ls, fn, ctx);
	}
	list_set_free(&ls);
	return rc;
}

/* ------------------------------------------------------------------ */
/* STATUS */

/* STATUS reads the counters of schema 3 (M8) and counts the recent UIDs
 * (those at or above recentuid) over the primary key, from whichever end
 * of the UID range is nearer: a mailbox nobody has selected (every one on
 * a replica) has recentuid 1, and counting from it walked the whole
 * index on every STATUS.  A database a read-only process could not
 * upgrade has no counters: then the records are counted.  Both
 * statements give messages, unseen, deleted, recent, size. */
static const char status_sql_counters[] =
	"SELECT c_exists, c_unseen, c_deleted,"
	" CASE WHEN ?2 * 2 <= uidnext"
	"  THEN c_exists - (SELECT count(*) FROM records"
	"   WHERE mailbox = ?1 AND uid < ?2 AND expunged_modseq = 0)"
	"  ELSE (SELECT count(*) FROM records"
	"   WHERE mailbox = ?1 AND uid >= ?2 AND expunged_modseq = 0) END,"
	" c_size FROM mailboxes WHERE id = ?1";
static const char status_sql_scan[] =
	"SELECT count(*), coalesce(sum((sysflags & 1) = 0), 0), coalesce(sum((sysflags & 8) != 0), 0),"
	" coalesce(sum(uid >= ?2), 0), coalesce(sum(size), 0)"
	" FROM records WHERE mailbox = ?1 AND expunged_modseq = 0";

static int
status_row(struct store_user *u, const struct store_mbrow *row, struct store_status *st,
	struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, status_sql_counters, NULL);
	int rc;

	if (s == NULL)
		s = store_user_stmt(u, status_sql_scan, err);
	if (s == NULL)
		return -1;
	memset(st, 0, sizeof(*st));
	sqlite3_bind_int64(s, 1, row->id);
	sqlite3_bind_int64(s, 2, row->recentuid);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return store_sql_err(u->db, rc, err, "status");
	}
	st->messages = (uint32_t)sqlite3_column_int64(s, 0);
	st->unseen = (uint32_t)sqlite3_column_int64(s, 1);
	st->deleted = (uint32_t)sqlite3_column_int64(s, 2);
	st->recent = (uint32_t)sqlite3_column_int64(s, 3);
	st->size = (uint64_t)sqlite3_column_int64(s, 4);
	sqlite3_reset(s);
	st->uidnext = row->mb.uidnext;
	st->uidvalidity = row->mb.uidvalidity;
	st->highestmodseq = row->mb.highestmodseq;
	return 0;
}

int
store_mailbox_status(struct store_user *u, const char *name, struct store_status *st_r,
	struct err *err)
{
	char norm[STORE_MBOX_NAME_MAX + 1];
	struct store_mbrow row;
	int rc;

	if (store_mailbox_name_check(name, norm, err) < 0)
		return -1;
	if (store_user_read_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_name(u, norm, &row, err);
	if (rc == 0)
		rc = status_row(u, &row, st_r, err);
	store_user_read_end(u);
	return rc;
}

int
store_mailbox_status_id(struct store_user *u, const char *mailbox_id, struct store_status *st_r,
	struct err *err)
{
	struct store_mbrow row;
	int rc;

	if (store_user_read_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_id(u, mailbox_id, false, &row, err);
	if (rc == 0)
		rc = status_row(u, &row, st_r, err);
	store_user_read_end(u);
	return rc;
}

/* ------------------------------------------------------------------ */
/* subscriptions */

int
store_subscribed(struct store_user *u, const char *name, struct err *err)
{
	char norm[STORE_MBOX_NAME_MAX + 1];
	sqlite3_stmt *s;
	int rc, r = 0;

	if (store_mailbox_name_check(name, norm, err) < 0)
		return -1;
	s = store_user_stmt(u, "SELECT subscribed FROM subs WHERE name = ?", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, norm, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		r = sqlite3_column_int(s, 0) ? 1 : 0;
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "subscribed");
	return r;
}

int
store_mailbox_sub_set(struct store_user *u, const char *norm, bool on, uint64_t modseq,
	struct err *err)
{
	sqlite3_stmt *s;
	int rc;

	if (modseq == 0 && store_user_op_modseq(u, &modseq, err) < 0)
		return -1;
	s = store_user_stmt(u, "INSERT INTO subs(name, subscribed, modseq) VALUES (?1, ?2, ?3)"
		" ON CONFLICT(name) DO UPDATE SET subscribed = ?2, modseq = ?3", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, norm, -1, SQLITE_STATIC);
	sqlite3_bind_int(s, 2, on ? 1 : 0);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)modseq);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "subscribe");
	u->dirty = true;
	store_user_event(u, STORE_CHANGE_SUB, NULL);
	return 0;
}

int
store_subscribe(struct store_user *u, const char *name, bool subscribe, struct err *err)
{
	char norm[STORE_MBOX_NAME_MAX + 1];
	int rc, cur;

	if (store_mailbox_name_check(name, norm, err) < 0)
		return -1;
	if (store_user_op_begin(u, err) < 0)
		return -1;
	cur = store_subscribed(u, norm, err);
	if (cur < 0)
		rc = -1;
	else if ((cur == 1) == subscribe)
		rc = 0;   /* no change, no modseq */
	else
		rc = store_mailbox_sub_set(u, norm, subscribe, 0, err);
	return store_user_op_end(u, rc, NULL, NULL, err);
}
