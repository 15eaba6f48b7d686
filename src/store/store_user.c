/*
 * store_user.c - one user's database: open/create, the transaction and
 * operation machinery every mutating call goes through, the modseq
 * counter, quota usage, and the IDLE wake-up fd.
 *
 * user.db format (SQLite, journal_mode=WAL, synchronous=NORMAL plus
 * the group-commit WAL fdatasync of store_commit.c, which together
 * give synchronous=FULL's guarantee: a commit is durable before the
 * call that made it returns):
 *
 *   state(id = 1, modseq, last_uidvalidity, used_bytes, used_messages, schema, ident)
 *       modseq: the user's counter, the highest modseq ever handed out
 *       used_*: quota usage = sum of size / count of live records in
 *               live mailboxes
 *       schema: 4 (older ones are upgraded at open, below)
 *       ident: the database's identity, equal to users.ident (store_damage.c);
 *              the column is added at open to databases from before it
 *   mailboxes(id, uniqueid UNIQUE, name, uidvalidity, uidnext,
 *             highestmodseq, createdmodseq, modseq, deleted_modseq,
 *             specialuse, recentuid, sync_crc)
 *       unique index on name over live rows (deleted_modseq = 0)
 *   records(mailbox, uid, guid, size, internaldate, sysflags, keywords,
 *           modseq, expunged_modseq, envelope, bodystructure, body, parts,
 *           msgid)
 *       primary key (mailbox, uid); indexes on modseq, (mailbox, modseq),
 *       guid, (mailbox, msgid, internaldate), and records_snap on
 *       (mailbox, uid, sysflags, modseq, keywords, expunged_modseq) of
 *       live records
 *       body: NULL in rows written since schema 4 (computed at FETCH)
 *       msgid: the message-id index (duplicate suppression): the
 *       normalised Message-ID (store_msgid.c), '' when the message has
 *       none, NULL when not computed yet (records written before schema
 *       2, or by a binary without it); derived from the body, so it is
 *       not part of the sync checksum and not replicated: each side
 *       computes it.
 *   blobs(guid PRIMARY KEY, size, data)   data NULL = file blobs/<gg>/<guid>
 *   subs(name PRIMARY KEY, subscribed, modseq)   unsubscribe = tombstone
 *
 * Invariants (checked by store_check):
 *   M1. Every modseq, expunged_modseq, deleted_modseq in the database is
 *       <= state.modseq; each mutating call takes state.modseq + 1 once
 *       and stamps everything it changes with it.
 *   M2. A mailbox's highestmodseq >= its own modseq and every record's
 *       modseq in it; uidnext > every uid in it; uidvalidity never
 *       changes for a uniqueid.
 *   M3. sync_crc = XOR of store_record_crc() over the mailbox's live
 *       records (expunged_modseq = 0), updated in the same transaction
 *       as the records.
 *   M4. used_bytes / used_messages = sums over live records of live
 *       mailboxes, updated in the same transaction.
 *   M5. Every record's guid has a blobs row; every blobs row with NULL
 *       data has its file, fsynced with its directory entry, before the
 *       row's transaction commits (store_blob.c).
 *   M6. A live mailbox named INBOX exists.
 *   M8. mailboxes.c_exists, c_unseen, c_deleted, c_size are the count,
 *       unseen count, \\Deleted count and byte sum of the mailbox's live
 *       records: triggers on records keep them (schema 3), so IMAP STATUS
 *       reads one row instead of scanning the mailbox.
 *   M7. A non-NULL records.msgid is store_message_id() of the record's
 *       body ('' for none); it is set in the transaction that inserts
 *       the record and never changes (NULL ones are filled in by the
 *       first duplicate check that needs them, store_record.c), except
 *       that store_append_undo sets '' on the record it expunges.
 *
 * Schema upgrade to 4 (at open, any process, once): in one write
 * transaction, re-read state.schema; from 1, add records.msgid (NULL for
 * the existing rows) unless present and create records_msgid; from 2,
 * add the mailboxes counter columns unless present, create the counter
 * triggers and compute the counters; from 3, create records_snap; set
 * schema 4.  Idempotent, so concurrent openers and a crash half-way are
 * harmless.
 */
#include "store/store.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

/* The current user.db schema (state.schema). */
#define STORE_USER_SCHEMA 4
#define STORE_USER_SCHEMA_S "4"

/* Schema 4: records_snap, the columns a SELECT reads for every live
 * message, so a snapshot is one scan of a narrow index (store_snapshot.c).
 * expunged_modseq is a column too (always 0, one header byte): without it
 * SQLite reads each table row to test the WHERE, the index is not covering. */
#define SNAP_INDEX \
	"CREATE INDEX IF NOT EXISTS records_snap ON records(mailbox, uid, sysflags, modseq," \
	" keywords, expunged_modseq) WHERE expunged_modseq = 0;"

/* Schema 3: STATUS counters on mailboxes, kept by triggers in the same
 * transaction as every records change (invariant M8). */
#define COUNTER_TRIGGERS \
	"CREATE TRIGGER IF NOT EXISTS records_count_ins AFTER INSERT ON records" \
	" WHEN new.expunged_modseq = 0 BEGIN" \
	" UPDATE mailboxes SET c_exists = c_exists + 1," \
	" c_unseen = c_unseen + ((new.sysflags & 1) = 0)," \
	" c_deleted = c_deleted + ((new.sysflags & 8) != 0)," \
	" c_size = c_size + new.size WHERE id = new.mailbox; END;" \
	"CREATE TRIGGER IF NOT EXISTS records_count_del AFTER DELETE ON records" \
	" WHEN old.expunged_modseq = 0 BEGIN" \
	" UPDATE mailboxes SET c_exists = c_exists - 1," \
	" c_unseen = c_unseen - ((old.sysflags & 1) = 0)," \
	" c_deleted = c_deleted - ((old.sysflags & 8) != 0)," \
	" c_size = c_size - old.size WHERE id = old.mailbox; END;" \
	"CREATE TRIGGER IF NOT EXISTS records_count_upd" \
	" AFTER UPDATE OF mailbox, size, sysflags, expunged_modseq ON records BEGIN" \
	" UPDATE mailboxes SET c_exists = c_exists - (old.expunged_modseq = 0)," \
	" c_unseen = c_unseen - (old.expunged_modseq = 0 AND (old.sysflags & 1) = 0)," \
	" c_deleted = c_deleted - (old.expunged_modseq = 0 AND (old.sysflags & 8) != 0)," \
	" c_size = c_size - (CASE WHEN old.expunged_modseq = 0 THEN old.size ELSE 0 END)" \
	" WHERE id = old.mailbox;" \
	" UPDATE mailboxes SET c_exists = c_exists + (new.expunged_modseq = 0)," \
	" c_unseen = c_unseen + (new.expunged_modseq = 0 AND (new.sysflags & 1) = 0)," \
	" c_deleted = c_deleted + (new.expunged_modseq = 0 AND (new.sysflags & 8) != 0)," \
	" c_size = c_size + (CASE WHEN new.expunged_modseq = 0 THEN new.size ELSE 0 END)" \
	" WHERE id = new.mailbox; END;"

/* Recompute every mailbox's counters from its records (upgrade, repair). */
#define COUNTER_RECOMPUTE \
	"UPDATE mailboxes SET (c_exists, c_unseen, c_deleted, c_size) = (SELECT count(*)," \
	" coalesce(sum((sysflags & 1) = 0), 0), coalesce(sum((sysflags & 8) != 0), 0)," \
	" coalesce(sum(size), 0) FROM records r WHERE r.mailbox = mailboxes.id" \
	" AND r.expunged_modseq = 0);"

static const char user_schema[] =
	"CREATE TABLE IF NOT EXISTS state(id INTEGER PRIMARY KEY CHECK (id = 1),"
	" modseq INTEGER NOT NULL, last_uidvalidity INTEGER NOT NULL,"
	" used_bytes INTEGER NOT NULL, used_messages INTEGER NOT NULL, schema INTEGER NOT NULL,"
	" ident TEXT);"
	"CREATE TABLE IF NOT EXISTS mailboxes(id INTEGER PRIMARY KEY,"
	" uniqueid TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
	" uidvalidity INTEGER NOT NULL, uidnext INTEGER NOT NULL,"
	" highestmodseq INTEGER NOT NULL, createdmodseq INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL, deleted_modseq INTEGER NOT NULL DEFAULT 0,"
	" specialuse TEXT NOT NULL DEFAULT '', recentuid INTEGER NOT NULL DEFAULT 1,"
	" sync_crc INTEGER NOT NULL DEFAULT 0, c_exists INTEGER NOT NULL DEFAULT 0,"
	" c_unseen INTEGER NOT NULL DEFAULT 0, c_deleted INTEGER NOT NULL DEFAULT 0,"
	" c_size INTEGER NOT NULL DEFAULT 0);"
	"CREATE UNIQUE INDEX IF NOT EXISTS mailboxes_live_name ON mailboxes(name)"
	" WHERE deleted_modseq = 0;"
	"CREATE INDEX IF NOT EXISTS mailboxes_modseq ON mailboxes(modseq);"
	"CREATE TABLE IF NOT EXISTS records(mailbox INTEGER NOT NULL, uid INTEGER NOT NULL,"
	" guid TEXT NOT NULL, size INTEGER NOT NULL, internaldate INTEGER NOT NULL,"
	" sysflags INTEGER NOT NULL, keywords TEXT NOT NULL DEFAULT '',"
	" modseq INTEGER NOT NULL, expunged_modseq INTEGER NOT NULL DEFAULT 0,"
	" envelope TEXT, bodystructure TEXT, body TEXT, parts BLOB, msgid TEXT,"
	" PRIMARY KEY (mailbox, uid));"
	"CREATE INDEX IF NOT EXISTS records_modseq ON records(modseq);"
	"CREATE INDEX IF NOT EXISTS records_mbox_modseq ON records(mailbox, modseq);"
	"CREATE INDEX IF NOT EXISTS records_guid ON records(guid);"
	"CREATE INDEX IF NOT EXISTS records_msgid ON records(mailbox, msgid, internaldate);"
	SNAP_INDEX
	"CREATE TABLE IF NOT EXISTS blobs(guid TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB);"
	"CREATE TABLE IF NOT EXISTS subs(name TEXT PRIMARY KEY, subscribed INTEGER NOT NULL,"
	" modseq INTEGER NOT NULL);"
	"CREATE INDEX IF NOT EXISTS subs_modseq ON subs(modseq);"
	COUNTER_TRIGGERS
	"INSERT OR IGNORE INTO state(id, modseq, last_uidvalidity, used_bytes, used_messages, schema)"
	" VALUES (1, 0, 0, 0, 0, " STORE_USER_SCHEMA_S ");";

/* ------------------------------------------------------------------ */
/* statements */

sqlite3_stmt *
store_user_stmt(struct store_user *u, const char *sql, struct err *err)
{
	size_t i;
	int rc;

	for (i = 0; i < STORE_STMT_CACHE && u->stmts[i].sql != NULL; i++) {
		if (u->stmts[i].sql == sql) {
			sqlite3_reset(u->stmts[i].stmt);
			sqlite3_clear_bindings(u->stmts[i].stmt);
			return u->stmts[i].stmt;
		}
	}
	if (i == STORE_STMT_CACHE) {
		/* Cache full: evict the last slot. */
		i = STORE_STMT_CACHE - 1;
		sqlite3_finalize(u->stmts[i].stmt);
		u->stmts[i].sql = NULL;
		u->stmts[i].stmt = NULL;
	}
	rc = sqlite3_prepare_v3(u->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &u->stmts[i].stmt, NULL);
	if (rc != SQLITE_OK) {
		store_sql_err(u->db, rc, err, "prepare");
		u->stmts[i].stmt = NULL;
		return NULL;
	}
	u->stmts[i].sql = sql;
	return u->stmts[i].stmt;
}

/* ------------------------------------------------------------------ */
/* transactions and operations */

static void
events_drop(struct store_user *u, size_t keep)
{
	u->nevents = keep;
}

void
store_user_event(struct store_user *u, enum store_change_kind kind, const char *mailbox_id)
{
	for (size_t i = 0; i < u->nevents; i++) {
		if (u->events[i].kind == kind &&
		    (mailbox_id == NULL ? u->events[i].mailbox_id[0] == '\0' :
		     str_eq(u->events[i].mailbox_id, mailbox_id)))
			return;
	}
	if (u->nevents == u->capevents) {
		u->capevents = u->capevents ? u->capevents * 2 : 8;
		u->events = xreallocarray(u->events, u->capevents, sizeof(*u->events));
	}
	u->events[u->nevents].kind = kind;
	str_lcpy(u->events[u->nevents].mailbox_id, mailbox_id ? mailbox_id : "",
		sizeof(u->events[0].mailbox_id));
	u->nevents++;
}

static void
events_fire(struct store_user *u)
{
	struct store *st = u->st;
	size_t n = u->nevents;

	u->nevents = 0;
	if (st->hook == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		st->hook(st->hook_ctx, u->name, u->events[i].kind,
			u->events[i].mailbox_id[0] ? u->events[i].mailbox_id : NULL);
}

/* Run a statement-less SQL command (BEGIN, COMMIT, SAVEPOINT ...) from
 * the handle's statement cache: sqlite3_exec would parse it every time.
 * Returns an SQLite result code (SQLITE_OK on success). */
static int
user_exec(struct store_user *u, const char *sql)
{
	sqlite3_stmt *s = store_user_stmt(u, sql, NULL);
	int rc;

	if (s == NULL)
		return sqlite3_exec(u->db, sql, NULL, NULL, NULL);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

/* COMMIT, then run the change hook and wait for the group-commit
 * barrier when anything durable changed, then wake watchers. */
static int
commit_durable(struct store_user *u, bool dirty, const char *fp_after, struct err *err)
{
	int rc;

	store_commit_enter(&u->commit);
	/* the users.db summary first (store_summary.c S1, S2) */
	if (dirty && store_summary_before_commit(u, err) < 0) {
		store_commit_leave(&u->commit);
		sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
		events_drop(u, 0);
		store_blob_unlock_shared(u);
		return -1;
	}
	rc = user_exec(u, "COMMIT");
	if (rc != SQLITE_OK || !dirty)
		store_commit_leave(&u->commit);
	if (rc != SQLITE_OK) {
		store_sql_err(u->db, rc, err, "commit");
		sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
		events_drop(u, 0);
		store_blob_unlock_shared(u);
		store_blob_markers_forget(u);
		return -1;
	}
	store_blob_unlock_shared(u);
	store_blob_markers_done(u);
	if (dirty) {
		uint64_t t = store_commit_ticket(&u->commit);
		/* The sync log hears of the change before the WAL fsync, so
		 * the replica's round trip (with its own fsync) runs while
		 * ours does: other connections already see the commit, only
		 * its durability is pending.  A power loss that takes the
		 * commit back after a replica applied it leaves a message
		 * only on the replica, which the conflict policy brings back
		 * (docs/decisions.md); our caller was not told success. */
		events_fire(u);
		if (FAILPOINT("store.commit.before_fsync") < 0) {
			u->broken = true;
			return err_set(err, ERR_TEMP, "failpoint store.commit.before_fsync");
		}
		if (store_commit_barrier(&u->commit, t, err) < 0) {
			u->broken = true;
			return -1;
		}
		store_stats_g.commits++;
		/* watchers first: the checkpoint's fsyncs need not delay IDLE */
		store_commit_notify(&u->commit);
		if (store_commit_want_checkpoint(&u->commit)) {
			/* off the caller's path: store_ckpt.c */
			char path[4096];
			if (str_fmt(path, sizeof(path), "%s/user.db", u->dir) > 0)
				store_ckpt_request(u->db, path);
		}
		/* a bulk writer outrunning the thread pays here (store_ckpt.c 4) */
		store_wal_bound(u, "commit");
	} else {
		events_drop(u, 0);
	}
	if (fp_after != NULL && FAILPOINT(fp_after) < 0)
		return err_set(err, ERR_TEMP, "failpoint %s", fp_after);
	return 0;
}

int
store_user_op_begin(struct store_user *u, struct err *err)
{
	int rc;

	if (u->st->opts.read_only)
		return err_set(err, ERR_PERM, "read-only replica");
	if (u->broken)
		return err_set(err, ERR_TEMP, "user %s: an earlier fsync failed; reopen the store",
			u->name);
	if (u->op_open)
		return err_set(err, ERR_INVALID, "store call re-entered (from a change hook?)");
	if (!u->in_txn)
		store_commit_enter(&u->commit);
	rc = user_exec(u, u->in_txn ? "SAVEPOINT op" : "BEGIN IMMEDIATE");
	if (rc != SQLITE_OK) {
		if (!u->in_txn)
			store_commit_leave(&u->commit);
		if ((rc & 0xff) == SQLITE_BUSY)
			return err_set(err, ERR_TEMP, "user %s database busy", u->name);
		return store_sql_err(u->db, rc, err, "begin");
	}
	u->op_open = true;
	u->op_modseq = 0;
	u->op_nevents = u->nevents;
	u->op_ntmps = u->nblob_tmps;
	if (!u->in_txn)
		u->dirty = false;
	return 0;
}

int
store_user_op_end(struct store_user *u, int rc, const char *fp_before, const char *fp_after,
	struct err *err)
{
	u->op_open = false;
	if (rc == 0 && fp_before != NULL && FAILPOINT(fp_before) < 0)
		rc = err_set(err, ERR_TEMP, "failpoint %s", fp_before);
	if (rc < 0) {
		if (u->in_txn) {
			sqlite3_exec(u->db, "ROLLBACK TO op", NULL, NULL, NULL);
			sqlite3_exec(u->db, "RELEASE op", NULL, NULL, NULL);
			events_drop(u, u->op_nevents);
			/* the op's bodies keep their markers: the commit of the
			 * rest of the transaction must not remove them */
			store_blob_markers_keep(u, u->op_ntmps);
		} else {
			sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
			store_commit_leave(&u->commit);
			events_drop(u, 0);
			store_blob_unlock_shared(u);
			store_blob_markers_forget(u);
		}
		return -1;
	}
	if (u->in_txn) {
		if (user_exec(u, "RELEASE op") != SQLITE_OK)
			return store_sql_err(u->db, SQLITE_ERROR, err, "release");
		return 0;
	}
	return commit_durable(u, u->dirty, fp_after, err);
}

int
store_user_op_modseq(struct store_user *u, uint64_t *modseq_r, struct err *err)
{
	sqlite3_stmt *s;
	int rc;

	if (u->op_modseq == 0) {
		s = store_user_stmt(u, "UPDATE state SET modseq = modseq + 1 WHERE id = 1 RETURNING modseq",
			err);
		if (s == NULL)
			return -1;
		rc = sqlite3_step(s);
		if (rc != SQLITE_ROW) {
			sqlite3_reset(s);
			return store_sql_err(u->db, rc, err, "modseq");
		}
		u->op_modseq = (uint64_t)sqlite3_column_int64(s, 0);
		sqlite3_reset(s);
	}
	u->dirty = true;
	*modseq_r = u->op_modseq;
	return 0;
}

int
store_txn_begin(struct store_user *u, struct err *err)
{
	int rc;

	if (u->st->opts.read_only)
		return err_set(err, ERR_PERM, "read-only replica");
	if (u->in_txn || u->op_open)
		return err_set(err, ERR_INVALID, "transaction already open");
	if (u->broken)
		return err_set(err, ERR_TEMP, "user %s: an earlier fsync failed", u->name);
	rc = user_exec(u, "BEGIN IMMEDIATE");
	if (rc != SQLITE_OK) {
		if ((rc & 0xff) == SQLITE_BUSY)
			return err_set(err, ERR_TEMP, "user %s database busy", u->name);
		return store_sql_err(u->db, rc, err, "begin");
	}
	u->in_txn = true;
	u->dirty = false;
	u->nevents = 0;
	return 0;
}

int
store_txn_commit(struct store_user *u, struct err *err)
{
	if (!u->in_txn)
		return err_set(err, ERR_INVALID, "no transaction open");
	u->in_txn = false;
	u->txn_marked = false;     /* COMMIT releases every savepoint */
	return commit_durable(u, u->dirty, NULL, err);
}

int
store_txn_mark(struct store_user *u, struct err *err)
{
	if (!u->in_txn || u->op_open || u->txn_marked)
		return err_set(err, ERR_INVALID, "no transaction open to mark");
	if (user_exec(u, "SAVEPOINT txn_mark") != SQLITE_OK)
		return store_sql_err(u->db, SQLITE_ERROR, err, "savepoint");
	u->txn_marked = true;
	u->mark_dirty = u->dirty;
	u->mark_nevents = u->nevents;
	return 0;
}

void
store_txn_rollback_to_mark(struct store_user *u)
{
	if (!u->in_txn || !u->txn_marked)
		return;
	u->txn_marked = false;
	sqlite3_exec(u->db, "ROLLBACK TO txn_mark", NULL, NULL, NULL);
	sqlite3_exec(u->db, "RELEASE txn_mark", NULL, NULL, NULL);
	u->dirty = u->mark_dirty;
	events_drop(u, u->mark_nevents);
}

void
store_txn_rollback(struct store_user *u)
{
	if (!u->in_txn)
		return;
	u->in_txn = false;
	u->txn_marked = false;
	sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
	store_commit_leave(&u->commit);
	events_drop(u, 0);
	store_blob_unlock_shared(u);
	store_blob_markers_forget(u);
}

int
store_user_read_begin(struct store_user *u, struct err *err)
{
	int rc;

	if (u->in_txn || u->op_open || u->read_open) {
		u->read_nested++;
		return 0;
	}
	rc = sqlite3_exec(u->db, "BEGIN", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return store_sql_err(u->db, rc, err, "begin read");
	u->read_open = true;
	return 0;
}

void
store_user_read_end(struct store_user *u)
{
	if (u->read_nested > 0) {
		u->read_nested--;
		return;
	}
	u->read_open = false;
	sqlite3_exec(u->db, "COMMIT", NULL, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* quota usage */

int
store_user_usage_add(struct store_user *u, int64_t dbytes, int64_t dmsgs, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u,
		"UPDATE state SET used_bytes = max(0, used_bytes + ?1),"
		" used_messages = max(0, used_messages + ?2) WHERE id = 1", err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, dbytes);
	sqlite3_bind_int64(s, 2, dmsgs);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "usage");
	return 0;
}

int
store_user_usage_get(struct store_user *u, uint64_t *bytes_r, uint64_t *msgs_r, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u,
		"SELECT used_bytes, used_messages FROM state WHERE id = 1", err);
	int rc;

	if (s == NULL)
		return -1;
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return store_sql_err(u->db, rc, err, "usage");
	}
	*bytes_r = (uint64_t)sqlite3_column_int64(s, 0);
	*msgs_r = (uint64_t)sqlite3_column_int64(s, 1);
	sqlite3_reset(s);
	return 0;
}

int
store_user_quota_check(struct store_user *u, uint64_t add_bytes, uint64_t add_msgs,
	struct err *err)
{
	uint64_t lb, lm, ub, um;

	if (add_bytes == 0 && add_msgs == 0)
		return 0;
	if (store_quota_limits(u->st, u->name, &lb, &lm, err) < 0)
		return -1;
	if (lb == 0 && lm == 0)
		return 0;
	if (store_user_usage_get(u, &ub, &um, err) < 0)
		return -1;
	if (lb != 0 && ub + add_bytes > lb)
		return err_set(err, ERR_QUOTA,
			"over quota: user %s would use %llu of %llu bytes", u->name,
			(unsigned long long)(ub + add_bytes), (unsigned long long)lb);
	if (lm != 0 && um + add_msgs > lm)
		return err_set(err, ERR_QUOTA,
			"over quota: user %s would have %llu of %llu messages", u->name,
			(unsigned long long)(um + add_msgs), (unsigned long long)lm);
	return 0;
}

int
store_quota_get(struct store_user *u, struct store_quota *q, struct err *err)
{
	memset(q, 0, sizeof(*q));
	if (store_quota_limits(u->st, u->name, &q->limit_bytes, &q->limit_messages, err) < 0)
		return -1;
	return store_user_usage_get(u, &q->used_bytes, &q->used_messages, err);
}

int
store_user_modseq(struct store_user *u, uint64_t *modseq_r, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, "SELECT modseq FROM state WHERE id = 1", err);
	int rc;

	if (s == NULL)
		return -1;
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return store_sql_err(u->db, rc, err, "modseq");
	}
	*modseq_r = (uint64_t)sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return 0;
}

/* ------------------------------------------------------------------ */
/* open / close */

/* state.schema, or -1 (no state row / error). */
static int64_t
schema_version(sqlite3 *db)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -1;

	if (sqlite3_prepare_v2(db, "SELECT schema FROM state WHERE id = 1", -1, &s, NULL) !=
	    SQLITE_OK)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v;
}

static int
table_has_column(sqlite3 *db, const char *table, const char *column)
{
	sqlite3_stmt *s = NULL;
	int found = 0;

	if (sqlite3_prepare_v2(db, "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2", -1, &s,
		NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(s, 1, table, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, column, -1, SQLITE_STATIC);
	if (sqlite3_step(s) == SQLITE_ROW)
		found = 1;
	sqlite3_finalize(s);
	return found;
}

/* Schema upgrade (see the top of this file).  Runs in read-only mode too:
 * it changes no mail state, only adds derived indexes and counters. */
static int
user_upgrade_db(struct store_user *u, struct err *err)
{
	int rc, has;

	rc = sqlite3_exec(u->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return store_sql_err(u->db, rc, err, "begin upgrade");
	if (schema_version(u->db) >= STORE_USER_SCHEMA) {
		/* another process did it meanwhile */
		sqlite3_exec(u->db, "COMMIT", NULL, NULL, NULL);
		return 0;
	}
	u->op_open = true;
	u->dirty = true;
	has = table_has_column(u->db, "records", "msgid");
	rc = has < 0 ? store_sql_err(u->db, SQLITE_ERROR, err, "upgrade") : 0;
	if (rc == 0 && has == 0)
		rc = store_sql_exec(u->db, "ALTER TABLE records ADD COLUMN msgid TEXT", err);
	if (rc == 0)
		rc = store_sql_exec(u->db, "CREATE INDEX IF NOT EXISTS records_msgid"
			" ON records(mailbox, msgid, internaldate);", err);
	if (rc == 0) {
		has = table_has_column(u->db, "mailboxes", "c_exists");
		if (has < 0)
			rc = store_sql_err(u->db, SQLITE_ERROR, err, "upgrade");
		else if (has == 0)
			rc = store_sql_exec(u->db,
				"ALTER TABLE mailboxes ADD COLUMN c_exists INTEGER NOT NULL DEFAULT 0;"
				"ALTER TABLE mailboxes ADD COLUMN c_unseen INTEGER NOT NULL DEFAULT 0;"
				"ALTER TABLE mailboxes ADD COLUMN c_deleted INTEGER NOT NULL DEFAULT 0;"
				"ALTER TABLE mailboxes ADD COLUMN c_size INTEGER NOT NULL DEFAULT 0;", err);
	}
	if (rc == 0)
		rc = store_sql_exec(u->db, COUNTER_TRIGGERS COUNTER_RECOMPUTE SNAP_INDEX
			"UPDATE state SET schema = " STORE_USER_SCHEMA_S " WHERE id = 1", err);
	u->op_open = false;
	if (rc < 0) {
		sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
		events_drop(u, 0);
		return -1;
	}
	if (commit_durable(u, true, NULL, err) < 0)
		return -1;
	log_info("user database upgraded user=%s schema=%d", u->name, STORE_USER_SCHEMA);
	return 0;
}

/* Create the schema, INBOX and state.ident in a brand-new user.db (an
 * explicit creation: store_user_create). */
static int
user_create_db(struct store_user *u, const char *ident, struct err *err)
{
	struct store_mbrow row;
	sqlite3_stmt *s = NULL;
	int rc;

	rc = sqlite3_exec(u->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return store_sql_err(u->db, rc, err, "begin");
	u->op_open = true;
	u->op_modseq = 0;
	u->dirty = true;
	rc = store_sql_exec(u->db, user_schema, err);
	if (rc == 0 && sqlite3_prepare_v2(u->db, "UPDATE state SET ident = ?1 WHERE id = 1", -1, &s,
		NULL) != SQLITE_OK)
		rc = store_sql_err(u->db, SQLITE_ERROR, err, "ident");
	if (rc == 0) {
		sqlite3_bind_text(s, 1, ident, -1, SQLITE_STATIC);
		if (sqlite3_step(s) != SQLITE_DONE)
			rc = store_sql_err(u->db, sqlite3_errcode(u->db), err, "ident");
	}
	sqlite3_finalize(s);
	/* a name used before starts above every UIDVALIDITY it had then */
	s = NULL;
	if (rc == 0 && sqlite3_prepare_v2(u->db, "UPDATE state SET last_uidvalidity ="
		" max(last_uidvalidity, ?1) WHERE id = 1", -1, &s, NULL) != SQLITE_OK)
		rc = store_sql_err(u->db, SQLITE_ERROR, err, "uidvalidity floor");
	if (rc == 0) {
		sqlite3_bind_int64(s, 1, store_uidvalidity_floor(u->st));
		if (sqlite3_step(s) != SQLITE_DONE)
			rc = store_sql_err(u->db, sqlite3_errcode(u->db), err, "uidvalidity floor");
	}
	sqlite3_finalize(s);
	if (rc == 0)
		rc = store_mailbox_create_row(u, "INBOX", NULL, &row, err);
	u->op_open = false;
	if (rc < 0) {
		sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
		events_drop(u, 0);
		return -1;
	}
	if (commit_durable(u, true, NULL, err) < 0)
		return -1;
	/* The database file's directory entry must be durable too. */
	return atomicfile_fsync_dir(u->dir, err);
}

/* Add state.ident if missing and, when ident is not NULL, set a NULL one
 * (migration, D3 in store_damage.c); durable on return. */
static int
state_ident_write(struct store_user *u, const char *ident, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc, has;

	rc = sqlite3_exec(u->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return store_sql_err(u->db, rc, err, "begin ident");
	u->op_open = true;
	has = table_has_column(u->db, "state", "ident");
	rc = has < 0 ? store_sql_err(u->db, SQLITE_ERROR, err, "ident") : 0;
	if (rc == 0 && has == 0)
		rc = store_sql_exec(u->db, "ALTER TABLE state ADD COLUMN ident TEXT", err);
	if (rc == 0 && ident != NULL) {
		if (sqlite3_prepare_v2(u->db, "UPDATE state SET ident = ?1 WHERE id = 1 AND ident IS NULL",
			-1, &s, NULL) != SQLITE_OK)
			rc = store_sql_err(u->db, SQLITE_ERROR, err, "ident");
		else {
			sqlite3_bind_text(s, 1, ident, -1, SQLITE_STATIC);
			if (sqlite3_step(s) != SQLITE_DONE)
				rc = store_sql_err(u->db, sqlite3_errcode(u->db), err, "ident");
		}
		sqlite3_finalize(s);
	}
	u->op_open = false;
	if (rc < 0) {
		sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
		return -1;
	}
	return commit_durable(u, true, NULL, err);
}

/* SQLite's verdict on an open user.db: corruption and a foreign schema
 * are damage, anything else (busy, I/O) is temporary. */
static int
db_fault(struct store_user *u, int rc, const char *what, char *why, size_t size,
	struct err *err)
{
	switch (rc & 0xff) {
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		snprintf(why, size, "database unreadable (%s)", sqlite3_errmsg(u->db));
		return 0;
	case SQLITE_ERROR:
		snprintf(why, size, "wrong schema (%s)", sqlite3_errmsg(u->db));
		return 0;
	default:
		return store_sql_err(u->db, rc, err, what);
	}
}

/* state.schema and state.ident ("" when NULL): 1 read, 0 damaged (why),
 * -1 error.  A state table from before identities gets its column. */
static int
state_read(struct store_user *u, int64_t *schema_r, char ident_r[STORE_IDENT_LEN + 1],
	char *why, size_t size, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	ident_r[0] = '\0';
	for (int pass = 0;; pass++) {
		rc = sqlite3_prepare_v2(u->db, "SELECT schema, ident FROM state WHERE id = 1", -1, &s,
			NULL);
		if (rc == SQLITE_OK)
			break;
		if ((rc & 0xff) != SQLITE_ERROR)
			return db_fault(u, rc, "state", why, size, err);
		/* before the checks below: they run statements of their own */
		snprintf(why, size, "wrong schema (%s)", sqlite3_errmsg(u->db));
		if (pass == 0 && table_has_column(u->db, "state", "schema") == 1 &&
		    table_has_column(u->db, "state", "ident") == 0) {
			if (state_ident_write(u, NULL, err) < 0)
				return -1;
			continue;
		}
		return 0;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		*schema_r = sqlite3_column_int64(s, 0);
		if (sqlite3_column_type(s, 1) == SQLITE_TEXT)
			str_lcpy(ident_r, (const char *)sqlite3_column_text(s, 1), STORE_IDENT_LEN + 1);
		sqlite3_finalize(s);
		return 1;
	}
	sqlite3_finalize(s);
	if (rc == SQLITE_DONE) {
		str_lcpy(why, "wrong schema (no state row)", size);
		return 0;
	}
	return db_fault(u, rc, "state", why, size, err);
}

/* Is this opened user.db the user's own (D1)?  Assigns an identity to a
 * database from before identities (D3) and upgrades an older schema. */
static int
user_check_db(struct store_user *u, const char *uident, struct err *err)
{
	struct store *st = u->st;
	char why[200], dident[STORE_IDENT_LEN + 1], fresh[STORE_IDENT_LEN + 1];
	int64_t schema = 0;
	int r;

	r = state_read(u, &schema, dident, why, sizeof(why), err);
	if (r < 0)
		return -1;
	if (r == 0)
		return store_damage_mark(st, u->name, err, "%s", why);
	if (schema < 1 || schema > STORE_USER_SCHEMA)
		return store_damage_mark(st, u->name, err, "wrong schema (%lld)", (long long)schema);
	if (uident[0] != '\0' && !str_eq(uident, dident))
		return store_damage_mark(st, u->name, err, dident[0] == '\0' ?
			"database without an identity" : "database of another identity");
	if (uident[0] == '\0' && !st->opts.read_only) {
		if (dident[0] == '\0') {
			store_damage_new_ident(fresh);
			if (state_ident_write(u, fresh, err) < 0 ||
			    state_read(u, &schema, dident, why, sizeof(why), err) <= 0 ||
			    dident[0] == '\0')
				return err_set(err, ERR_TEMP, "user %s: identity not assigned: %s",
					u->name, err != NULL ? err->msg : "");
		}
		if (store_damage_adopt(st, u->name, dident, false, err) < 0)
			return -1;
		log_info("user database identity assigned user=%s", u->name);
	}
	if (schema >= STORE_USER_SCHEMA)
		return 0;
	if (user_upgrade_db(u, err) < 0) {
		if (!st->opts.read_only)
			return -1;
		/* a reader works without the index */
		log_warn("user database upgrade failed user=%s error=%s", u->name,
			log_q(err ? err->msg : ""));
	}
	return 0;
}

/* Open, or with create_ident create (explicitly: no users row needed,
 * no user.db may exist), a user's database. */
static struct store_user *
user_open(struct store *st, const char *name, const char *create_ident, struct err *err)
{
	char uident[STORE_IDENT_LEN + 1], why[200];
	struct store_user *u;
	struct buf p = BUF_INIT;
	bool marked = false;
	int rc;

	if (create_ident == NULL) {
		rc = store_damage_row(st, name, uident, &marked, err);
		if (rc < 0)
			return NULL;
		if (rc == 0) {
			if (store_damage_orphan(st, name))
				err_set(err, ERR_DAMAGED, "user %s is damaged: a database without a users row",
					name);
			else
				err_set(err, ERR_NOTFOUND, "no such user %s", log_q(name));
			return NULL;
		}
	}
	u = xcalloc(1, sizeof(*u));
	u->st = st;
	u->name = xstrdup(name);
	store_stats_g.user_opens++;
	u->blob_lock_fd = -1;
	u->watch_fd = -1;
	u->commit.shm_fd = -1;
	u->commit.wal_fd = -1;
	store_user_dir(st, name, &p);
	u->dir = buf_steal(&p);
	st->nusers++;
	/* Damage is found before anything is created in the spool. */
	if (create_ident == NULL) {
		rc = store_damage_file(u->dir, why, sizeof(why), err);
		if (rc < 0)
			goto fail;
		if (rc == 1) {
			store_damage_mark(st, name, err, "%s", why);
			goto fail;
		}
	} else {
		buf_printf(&p, "%s/user.db", u->dir);
		if (access(buf_cstr(&p), F_OK) == 0) {
			err_set(err, ERR_EXISTS, "user %s already has a database", name);
			goto fail;
		}
		buf_reset(&p);
	}
	if (!st->opts.read_only || create_ident != NULL) {
		buf_printf(&p, "%s/blobs", u->dir);
		if (atomicfile_mkdir_p(buf_cstr(&p), 0750, err) < 0)
			goto fail;
		buf_reset(&p);
	}
	if (store_commit_open(&u->commit, u->dir, err) < 0)
		goto fail;
	buf_printf(&p, "%s/user.db", u->dir);
	if (store_db_open(buf_cstr(&p), create_ident != NULL, st->opts.busy_timeout_ms, false,
		&u->db, err) < 0) {
		if (create_ident == NULL && err != NULL &&
		    (err->kind == ERR_CORRUPT || err->kind == ERR_NOTFOUND))
			store_damage_mark(st, name, err, "database unreadable");
		goto fail;
	}
	buf_reset(&p);
	if (create_ident != NULL ? user_create_db(u, create_ident, err) < 0 :
	    user_check_db(u, uident, err) < 0)
		goto fail;
	if (marked)
		store_damage_clear(st, name);
	store_wal_bound(u, "open");   /* a WAL left over (store_ckpt.c 4) */
	buf_free(&p);
	return u;
fail:
	buf_free(&p);
	store_user_close(&u);
	return NULL;
}

struct store_user *
store_user_open(struct store *st, const char *name, struct err *err)
{
	return user_open(st, name, NULL, err);
}

int
store_user_create(struct store *st, const char *name, const char *ident, struct err *err)
{
	struct store_user *u = user_open(st, name, ident, err);

	if (u == NULL)
		return -1;
	store_user_close(&u);
	return 0;
}

void
store_user_close(struct store_user **up)
{
	struct store_user *u = *up;

	if (u == NULL)
		return;
	if (u->in_txn)
		store_txn_rollback(u);
	store_wal_bound(u, "close");   /* the end of bulk work (store_ckpt.c 4) */
	for (size_t i = 0; i < STORE_STMT_CACHE; i++)
		if (u->stmts[i].stmt != NULL)
			sqlite3_finalize(u->stmts[i].stmt);
	for (size_t i = 0; i < 2; i++)
		sqlite3_finalize(u->full_stmt[i]);
	if (u->db != NULL)
		sqlite3_close(u->db);
	store_commit_close(&u->commit);
	store_blob_unlock(u);
	if (u->blob_lock_fd >= 0)
		close(u->blob_lock_fd);
	store_blob_markers_forget(u);
	if (u->watch_fd >= 0)
		close(u->watch_fd);
	u->st->nusers--;
	free(u->events);
	free(u->name);
	free(u->dir);
	free(u);
	*up = NULL;
}

const char *
store_user_name(const struct store_user *u)
{
	return u->name;
}

/* ------------------------------------------------------------------ */
/* IDLE wake-up */

int
store_user_watch_fd(struct store_user *u, struct err *err)
{
	if (u->watch_fd >= 0)
		return u->watch_fd;
	u->watch_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (u->watch_fd < 0)
		return err_errno(err, ERR_TEMP, "inotify_init1");
	if (access(u->commit.notify_path, F_OK) < 0) {
		/* O_RDONLY: creating it must not look like a commit to others */
		int fd = open(u->commit.notify_path, O_RDONLY | O_CREAT | O_CLOEXEC, 0640);
		if (fd >= 0)
			close(fd);
	}
	if (inotify_add_watch(u->watch_fd, u->commit.notify_path,
		IN_ATTRIB | IN_MODIFY | IN_CLOSE_WRITE | IN_DELETE_SELF | IN_MOVE_SELF) < 0) {
		err_errno(err, ERR_TEMP, "inotify_add_watch %s", u->commit.notify_path);
		close(u->watch_fd);
		u->watch_fd = -1;
		return -1;
	}
	return u->watch_fd;
}

void
store_user_watch_ack(struct store_user *u)
{
	char b[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

	if (u->watch_fd < 0)
		return;
	for (int i = 0; i < 64; i++) {
		ssize_t n = read(u->watch_fd, b, sizeof(b));
		if (n <= 0)
			break;
	}
}

/* ------------------------------------------------------------------ */
/* anti-entropy helper */

struct lm_ctx {
	struct store *st;
	store_user_modseq_fn fn;
	void *ctx;
	struct err *err;
	int rc;
};

static int
lm_one(void *vctx, const struct store_userinfo *ui)
{
	struct lm_ctx *c = vctx;
	struct store_user *u;
	uint64_t m = 0;
	struct err e;
	bool ro = c->st->opts.read_only;

	/* Do not create databases just to read a counter. */
	c->st->opts.read_only = true;
	u = store_user_open(c->st, ui->name, &e);
	c->st->opts.read_only = ro;
	if (u == NULL) {
		if (e.kind != ERR_NOTFOUND && e.kind != ERR_DAMAGED) {
			*c->err = e;
			c->rc = -1;
			return 1;
		}
	} else {
		int r = store_user_modseq(u, &m, c->err);
		store_user_close(&u);
		if (r < 0) {
			c->rc = -1;
			return 1;
		}
	}
	return c->fn(c->ctx, ui->name, m);
}

int
store_user_list_modseq(struct store *st, store_user_modseq_fn fn, void *ctx, struct err *err)
{
	struct lm_ctx c = { st, fn, ctx, err, 0 };
	struct err dummy;
	int r;

	if (c.err == NULL)
		c.err = &dummy;
	r = store_user_list(st, lm_one, &c, err);
	if (c.rc < 0)
		return -1;
	return r;
}
