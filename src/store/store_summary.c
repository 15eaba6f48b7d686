/*
 * store_summary.c - the per-user summary in users.db: what anti-entropy
 * compares instead of opening a user's database.
 *
 * users.db columns (added by an idempotent migration at store_open,
 * checked against PRAGMA table_info, no schema number):
 *   users.sum_modseq  the user's state.modseq the summary describes, or
 *                     NULL = unknown (never computed, or reset)
 *   users.sum_crc     CRC-32C chained over the user's live mailboxes,
 *                     sorted by uniqueid, one line each
 *                     "uniqueid\nname\nuidvalidity highestmodseq sync_crc specialuse\n",
 *                     then "subs\n" and the subscribed names sorted, one a
 *                     line.  syncdigest.c continues the chain with the
 *                     password hash and the quota limits (users.db
 *                     columns) to get the user's anti-entropy digest.
 *   meta 'local_gen'  replica: commits not made by syncd (S5)
 *   meta 'summary_boot'  boot id of the machine the summaries were last
 *                     trusted on.
 *
 * Invariants:
 *   S1. The summary is written inside the user's write transaction,
 *       after the last change and before its COMMIT (store_user.c
 *       commit_durable), computed from that transaction's own view.  So
 *       it never describes an older state than the committed one: a
 *       crash or a failed COMMIT after the summary write leaves a summary
 *       of a state that exists nowhere, which disagrees with every peer
 *       and makes anti-entropy open the user (and refresh the summary).
 *   S2. A failed summary write fails the operation (rolled back), so no
 *       change commits behind a summary that does not cover it.
 *   S3. The summary write is not fsynced on its own (users.db runs
 *       synchronous=FULL for its own rows; the summary write switches
 *       to NORMAL for that one statement).  A power loss can lose it
 *       while the user's commit, fsynced by the group commit, survives;
 *       so the first writable store_open after a reboot (boot id differs
 *       from meta 'summary_boot') sets every summary to unknown.
 *   S4. A summary is refreshed (store_user_summary_refresh) only under
 *       the user's write lock (BEGIN IMMEDIATE on user.db), so it cannot
 *       overwrite the summary of a commit that happened meanwhile.
 *   S5. On a replica, a commit by any process but syncd (store_set_sync_apply)
 *       also raises meta 'local_gen' before its COMMIT, so a master can
 *       tell, at its next HELLO, that the replica changed behind its log.
 *   Whoever changes a user.db by other means (sqlite3 by hand, a file
 *   restored from a backup) must reset its summary: `UPDATE users SET
 *   sum_modseq = NULL WHERE name = ...`, or the next reboot does.
 */
#include "store/store.h"
#include "store/store_int.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/crc32c.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

/* ------------------------------------------------------------------ */
/* Computing (inside a transaction of the caller's) */

static int
summary_compute(struct store_user *u, uint64_t *modseq_r, uint32_t *crc_r, struct err *err)
{
	sqlite3_stmt *s;
	uint32_t crc = 0;
	int rc;

	s = store_user_stmt(u, "SELECT modseq FROM state WHERE id = 1", err);
	if (s == NULL)
		return -1;
	rc = sqlite3_step(s);
	*modseq_r = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "summary state");
	s = store_user_stmt(u, "SELECT uniqueid, name, uidvalidity, highestmodseq, sync_crc,"
		" coalesce(specialuse, '') FROM mailboxes WHERE deleted_modseq = 0"
		" ORDER BY uniqueid", err);
	if (s == NULL)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct buf l = BUF_INIT;
		buf_printf(&l, "%s\n%s\n%u %llu %u %s\n", (const char *)sqlite3_column_text(s, 0),
			(const char *)sqlite3_column_text(s, 1), (unsigned)sqlite3_column_int64(s, 2),
			(unsigned long long)sqlite3_column_int64(s, 3),
			(unsigned)sqlite3_column_int64(s, 4), (const char *)sqlite3_column_text(s, 5));
		crc = crc32c(crc, l.data, l.len);
		buf_free(&l);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "summary mailboxes");
	crc = crc32c(crc, "subs\n", 5);
	s = store_user_stmt(u, "SELECT name FROM subs WHERE subscribed = 1 ORDER BY name", err);
	if (s == NULL)
		return -1;
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *n = (const char *)sqlite3_column_text(s, 0);
		crc = crc32c(crc, n, strlen(n));
		crc = crc32c(crc, "\n", 1);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "summary subs");
	*crc_r = crc;
	return 0;
}

static int
summary_write(struct store *st, const char *name, bool known, uint64_t modseq, uint32_t crc,
	struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (sqlite3_prepare_v2(st->db, "UPDATE users SET sum_modseq = ?2, sum_crc = ?3"
		" WHERE name = ?1", -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db summary");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (known) {
		sqlite3_bind_int64(s, 2, (sqlite3_int64)modseq);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)crc);
	}
	/* S3: one statement without its own fsync */
	sqlite3_exec(st->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	rc = sqlite3_step(s);
	sqlite3_exec(st->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db summary update");
	return 0;
}

/* S5: a commit on a replica by anything but syncd raises local_gen. */
static int
local_gen_bump(struct store *st, struct err *err)
{
	const char *role;
	int rc;

	if (st->sync_apply || store_server_get(st, &role, NULL, err) < 0 || !str_eq(role, "replica"))
		return 0;
	sqlite3_exec(st->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
	rc = store_sql_exec(st->db, "INSERT INTO meta(key, value) VALUES ('local_gen', '1')"
		" ON CONFLICT(key) DO UPDATE SET value = CAST(value AS INTEGER) + 1", err);
	sqlite3_exec(st->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
	return rc;
}

int
store_summary_before_commit(struct store_user *u, struct err *err)
{
	uint64_t modseq;
	uint32_t crc;

	if (summary_compute(u, &modseq, &crc, err) < 0 ||
	    summary_write(u->st, u->name, true, modseq, crc, err) < 0 ||
	    local_gen_bump(u->st, err) < 0) {
		err_prefix(err, "user %s summary", u->name);
		return -1;
	}
	return 0;
}

void
store_set_sync_apply(struct store *st, bool on)
{
	st->sync_apply = on;
}

int
store_local_gen(struct store *st, uint64_t *gen_r, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	*gen_r = 0;
	if (sqlite3_prepare_v2(st->db, "SELECT CAST(value AS INTEGER) FROM meta"
		" WHERE key = 'local_gen'", -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*gen_r = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db local_gen");
	return 0;
}

int
store_user_summary(struct store_user *u, uint64_t *modseq_r, uint32_t *crc_r, struct err *err)
{
	int rc;

	if (store_user_read_begin(u, err) < 0)
		return -1;
	rc = summary_compute(u, modseq_r, crc_r, err);
	store_user_read_end(u);
	return rc;
}

int
store_user_summary_refresh(struct store_user *u, uint64_t *modseq_r, uint32_t *crc_r,
	struct err *err)
{
	int rc;

	if (u->st->opts.read_only || u->in_txn || u->op_open || u->read_open)
		return store_user_summary(u, modseq_r, crc_r, err);
	/* S4: under the user's write lock */
	rc = sqlite3_exec(u->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return store_sql_err(u->db, rc, err, "summary begin");
	rc = summary_compute(u, modseq_r, crc_r, err);
	if (rc == 0)
		rc = summary_write(u->st, u->name, true, *modseq_r, *crc_r, err);
	sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

int
store_user_summary_list(struct store *st, store_summary_fn fn, void *ctx, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc, r = 0;

	if (sqlite3_prepare_v2(st->db, "SELECT name, hash, quota_bytes, quota_messages,"
		" sum_modseq, sum_crc, damaged IS NOT NULL FROM users ORDER BY name", -1, &s,
		NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_summary sm;
		memset(&sm, 0, sizeof(sm));
		sm.name = (const char *)sqlite3_column_text(s, 0);
		sm.hash = (const char *)sqlite3_column_text(s, 1);
		sm.quota_bytes = sqlite3_column_int64(s, 2);
		sm.quota_messages = sqlite3_column_int64(s, 3);
		sm.known = sqlite3_column_type(s, 4) != SQLITE_NULL &&
			sqlite3_column_type(s, 5) != SQLITE_NULL;
		sm.modseq = (uint64_t)sqlite3_column_int64(s, 4);
		sm.crc = (uint32_t)sqlite3_column_int64(s, 5);
		sm.damaged = sqlite3_column_int(s, 6) != 0;
		r = fn(ctx, &sm);
		if (r != 0)
			break;
	}
	sqlite3_finalize(s);
	if (r != 0)
		return r;
	if (rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db summary list");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Migration and the reboot rule (S3), at store_open */

static bool
has_column(sqlite3 *db, const char *col)
{
	sqlite3_stmt *s = NULL;
	bool found = false;

	if (sqlite3_prepare_v2(db, "PRAGMA table_info(users)", -1, &s, NULL) != SQLITE_OK)
		return false;
	while (!found && sqlite3_step(s) == SQLITE_ROW)
		found = str_eq((const char *)sqlite3_column_text(s, 1), col);
	sqlite3_finalize(s);
	return found;
}

static void
boot_id_read(char out[64])
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	ssize_t n = -1;

	out[0] = '\0';
	if (fd >= 0) {
		n = read(fd, out, 63);
		close(fd);
	}
	out[n > 0 ? n : 0] = '\0';
	for (char *p = out; *p; p++)
		if (*p == '\n')
			*p = '\0';
}

int
store_summary_open(struct store *st, struct err *err)
{
	sqlite3_stmt *s = NULL;
	char boot[64];
	bool same = false;
	int rc;

	if (st->opts.read_only)
		return 0;
	boot_id_read(boot);
	if (has_column(st->db, "sum_crc")) {
		if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = 'summary_boot'", -1,
			&s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
			same = str_eq((const char *)sqlite3_column_text(s, 0), boot);
		sqlite3_finalize(s);
		if (same)
			return 0;
	}
	if (store_sql_exec(st->db, "BEGIN IMMEDIATE", err) < 0)
		return -1;
	rc = 0;
	if (!has_column(st->db, "sum_modseq"))
		rc = store_sql_exec(st->db, "ALTER TABLE users ADD COLUMN sum_modseq INTEGER", err);
	if (rc == 0 && !has_column(st->db, "sum_crc"))
		rc = store_sql_exec(st->db, "ALTER TABLE users ADD COLUMN sum_crc INTEGER", err);
	s = NULL;
	if (rc == 0 && sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = 'summary_boot'",
		-1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
		same = str_eq((const char *)sqlite3_column_text(s, 0), boot);
	sqlite3_finalize(s);
	s = NULL;
	if (rc == 0 && !same) {
		/* S3: another process may have done it since our first look */
		rc = store_sql_exec(st->db, "UPDATE users SET sum_modseq = NULL, sum_crc = NULL", err);
		if (rc == 0 && sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO meta(key, value)"
			" VALUES ('summary_boot', ?1)", -1, &s, NULL) == SQLITE_OK) {
			sqlite3_bind_text(s, 1, boot, -1, SQLITE_STATIC);
			if (sqlite3_step(s) != SQLITE_DONE)
				rc = store_sql_err(st->db, sqlite3_errcode(st->db), err, "meta");
		}
		sqlite3_finalize(s);
	}
	if (rc == 0)
		rc = store_sql_exec(st->db, "COMMIT", err);
	if (rc < 0)
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}
