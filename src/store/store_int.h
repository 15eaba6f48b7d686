/*
 * store_int.h - internals shared by the store's source files.  Not for
 * use outside src/store.
 */
#ifndef CASTOR_STORE_INT_H
#define CASTOR_STORE_INT_H

#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "store/store.h"

/* Per-process counters (store_stats). */
extern struct store_stats store_stats_g;

#define STORE_DB_STMTS 16

struct store {
	char *root;
	sqlite3 *db;                 /* db/users.db */
	struct store_opts opts;
	store_change_hook_fn hook;
	void *hook_ctx;
	int nusers;                  /* open store_user handles */
	/* store_server_get cache: valid while users.db's data_version
	 * (changed by any other connection's commit) stays the same */
	sqlite3_stmt *stmts[STORE_DB_STMTS];    /* store_stmt cache */
	const char *stmt_sql[STORE_DB_STMTS];
	bool server_cached;
	int64_t server_dv;
	bool server_replica;
	uint64_t server_epoch;
	bool sync_apply;             /* this process applies a master's changes (syncd) */
};

/* Group commit state of one user database (store_commit.c). */
struct store_commit {
	int shm_fd;                  /* commit.shm, also the leader lock (flock) */
	void *shm;                   /* mapped struct (see store_commit.c) */
	int wal_fd;                  /* user.db-wal, opened lazily */
	char *wal_path;
	char *notify_path;
	int slot;                    /* our in-flight slot, -1 when none */
};

int store_commit_open(struct store_commit *c, const char *dir, struct err *err);
void store_commit_close(struct store_commit *c);
/* In flight: from the start of an append (or BEGIN of another write)
 * until its ticket, or its end without one.  A hint that lets a leader
 * wait for imminent commits. */
void store_commit_enter(struct store_commit *c);
void store_commit_leave(struct store_commit *c);
/* Called right after a successful COMMIT: returns this commit's ticket
 * (and leaves the in-flight set). */
uint64_t store_commit_ticket(struct store_commit *c);
/* Wait until every commit up to ticket is durable (one process fsyncs
 * the WAL for all). */
int store_commit_barrier(struct store_commit *c, uint64_t ticket, struct err *err);
/* After a durable commit: is it this process's turn to checkpoint? */
bool store_commit_want_checkpoint(struct store_commit *c);
/* Touch the notify file (wakes IDLE watchers). */
void store_commit_notify(struct store_commit *c);

struct store_event {
	enum store_change_kind kind;
	char mailbox_id[STORE_UNIQUEID_LEN + 1];
};

#define STORE_STMT_CACHE 64

struct store_user {
	struct store *st;
	char *name;
	char *dir;                   /* spool directory */
	sqlite3 *db;
	struct store_commit commit;
	bool in_txn;                 /* explicit transaction open */
	bool op_open;                /* an op is running */
	bool broken;                 /* fsync failed: durability unknown; refuse writes */
	bool dirty;                  /* the open transaction changed durable state */
	int read_nested;             /* read_begin calls inside a write or read transaction */
	bool read_open;              /* a read transaction of read_begin is open */
	bool full_busy;              /* store_records_full is walking */
	sqlite3_stmt *full_stmt[2];  /* its statements (without, with parts): not in the
	                                cache, so nothing its callback does can reset them */
	uint64_t op_modseq;          /* modseq of the running op (0 until needed) */
	size_t op_nevents;           /* events queued before the running op */
	bool txn_marked;             /* store_txn_mark: a savepoint inside the transaction */
	bool mark_dirty;             /* dirty and nevents at the mark */
	size_t mark_nevents;
	struct store_event *events;
	size_t nevents, capevents;
	int blob_lock_fd;            /* blobs.lock: shared while writing blobs */
	bool blob_lock_held;
	bool blob_lock_excl;
	char **blob_tmps;            /* markers of bodies written in the open transaction */
	size_t nblob_tmps;
	size_t op_ntmps;             /* nblob_tmps when the running op began */
	int watch_fd;                /* inotify, -1 until asked */
	uint64_t wal_retry_at;       /* store_wal_bound: WAL bytes before the next try */
	struct {
		const char *sql;
		sqlite3_stmt *stmt;
	} stmts[STORE_STMT_CACHE];
};

/* SQLite helpers (store.c). */
int store_sql_err(sqlite3 *db, int rc, struct err *err, const char *what);
int store_sql_exec(sqlite3 *db, const char *sql, struct err *err);
/* Ask the checkpoint thread (store_ckpt.c) to checkpoint the database
 * at path; db is the caller's connection, used only if no thread runs. */
void store_ckpt_request(sqlite3 *db, const char *path);
/* The WAL bound (store_ckpt.c): when u's WAL is over STORE_WAL_MAX and
 * no transaction of u is open, checkpoint it with TRUNCATE on u's own
 * connection (short busy limit).  `when` names the caller in the log
 * ("open", "commit", "close").  Never fails: a WAL left long is only
 * disk, not a durability matter. */
#define STORE_WAL_MAX (4u * 1024 * 1024)
void store_wal_bound(struct store_user *u, const char *when);
/* The busy handler of every store database: retry for busy_ms (<= 0: 30 s). */
void store_db_busy_set(sqlite3 *db, int busy_ms);
int store_db_open(const char *path, bool create, int busy_ms, bool full_sync, sqlite3 **db_r,
	struct err *err);
/* Random 128-bit uniqueid as hex. */
void store_random_hex(char *out, size_t nbytes);
uint32_t store_crc32(uint32_t crc, const void *p, size_t n);
int store_quota_limits(struct store *st, const char *user, uint64_t *bytes_r,
	uint64_t *msgs_r, struct err *err);

/* The server's UIDVALIDITY floor (users.db meta uidvalidity_floor, store.c):
 * at least every UIDVALIDITY a deleted user's mailboxes had, so a user
 * deleted and added again never sees one of its old values (RFC 3501
 * 2.3.1.1).  0 when none was recorded. */
uint32_t store_uidvalidity_floor(struct store *st);

/* Damage detection (store_damage.c; invariants D1-D3 there). */
#define STORE_IDENT_LEN 32
/* Add users.ident and users.damaged unless present (idempotent). */
int store_damage_migrate(sqlite3 *db, struct err *err);
void store_damage_new_ident(char out[STORE_IDENT_LEN + 1]);
/* The users row's ident ("" when NULL) and whether it is marked damaged:
 * 1 the row exists, 0 it does not, -1 error. */
int store_damage_row(struct store *st, const char *name, char ident_r[STORE_IDENT_LEN + 1],
	bool *damaged_r, struct err *err);
/* Set users.ident: only a NULL one (adopt), or any and clear the damage
 * mark (force: an explicit creation). */
int store_damage_adopt(struct store *st, const char *name, const char *ident, bool force,
	struct err *err);
/* Record why a user is damaged (logged when it changes) and fill err
 * with ERR_DAMAGED (ERR_NOTFOUND when the users row is gone meanwhile:
 * a deletion moves the spool after the row); returns -1. */
int store_damage_mark(struct store *st, const char *name, struct err *err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void store_damage_clear(struct store *st, const char *name);
/* Look at <dir>/user.db's bytes before SQLite does: 1 damaged (why
 * says how), 0 looks whole, -1 could not look (ERR_TEMP). */
int store_damage_file(const char *dir, char *why, size_t size, struct err *err);
/* 1 when name has no users row to go with but a spool with user.db. */
int store_damage_orphan(struct store *st, const char *name);
/* Create user.db (with INBOX) carrying ident, in a spool that has none:
 * the one way a database comes to be (store_user_open never creates). */
int store_user_create(struct store *st, const char *name, const char *ident, struct err *err);
/* Move a user's spool directory into <root>/deleted/ (store.c). */
int store_spool_retire(struct store *st, const char *name, struct err *err);

/* Statement cache on a user handle (store_user.c): sql must be a
 * string literal (the pointer is the key).  The statement is reset and
 * its bindings cleared. */
sqlite3_stmt *store_user_stmt(struct store_user *u, const char *sql, struct err *err);

/* Operations (store_user.c).  Every mutating API call is
 *     if (store_user_op_begin(u, err) < 0) return -1;
 *     rc = ...work...;
 *     return store_user_op_end(u, rc, "fp.before_commit", "fp.after_commit", err);
 * op_begin opens BEGIN IMMEDIATE (or a SAVEPOINT inside an explicit
 * transaction); op_end rolls back on rc < 0, else commits, runs the
 * change hook and waits for the group-commit barrier. */
int store_user_op_begin(struct store_user *u, struct err *err);
int store_user_op_end(struct store_user *u, int rc, const char *fp_before, const char *fp_after,
	struct err *err);
/* The running op's modseq, allocating it (counter + 1) on first use. */
int store_user_op_modseq(struct store_user *u, uint64_t *modseq_r, struct err *err);
void store_user_event(struct store_user *u, enum store_change_kind kind, const char *mailbox_id);
/* Read transaction helpers. */
int store_user_read_begin(struct store_user *u, struct err *err);
void store_user_read_end(struct store_user *u);

/* Summary upkeep (store_summary.c): migration and the reboot rule at
 * store_open; the summary write of commit_durable, before COMMIT. */
int store_summary_open(struct store *st, struct err *err);
int store_summary_before_commit(struct store_user *u, struct err *err);

/* Mailbox row helpers (store_mailbox.c). */
struct store_mbrow {
	int64_t id;
	struct store_mailbox mb;
	uint32_t recentuid;
};
int store_mailbox_load_id(struct store_user *u, const char *mailbox_id, bool include_deleted,
	struct store_mbrow *row, struct err *err);
int store_mailbox_load_name(struct store_user *u, const char *norm_name, struct store_mbrow *row,
	struct err *err);
/* Write back uidnext, highestmodseq, sync_crc of row. */
int store_mailbox_save_counters(struct store_user *u, const struct store_mbrow *row,
	struct err *err);
int store_mailbox_create_row(struct store_user *u, const char *norm_name, const char *specialuse,
	struct store_mbrow *row, struct err *err);
/* Validate a special-use list; writes the canonical form. */
int store_mailbox_specialuse_check(const char *s, char *out, size_t outsz, struct err *err);

/* Set a subscription row; modseq 0 = allocate one. */
int store_mailbox_sub_set(struct store_user *u, const char *norm, bool on, uint64_t modseq,
	struct err *err);

/* Quota usage (store_user.c). */
int store_user_usage_add(struct store_user *u, int64_t dbytes, int64_t dmsgs, struct err *err);
int store_user_usage_get(struct store_user *u, uint64_t *bytes_r, uint64_t *msgs_r,
	struct err *err);
/* Refuse when adding (bytes, msgs) would exceed the user's limits. */
int store_user_quota_check(struct store_user *u, uint64_t add_bytes, uint64_t add_msgs,
	struct err *err);

/* Blobs (store_blob.c). */
/* Put a body inside the running op: inline row, or file (written and
 * synced before the row is inserted).  Dedups by guid. */
int store_blob_put(struct store_user *u, const char *guid, const void *data, size_t len,
	bool prewritten, struct err *err);
/* Write the file of a large body ahead of the transaction (durable on
 * return): lets concurrent appenders fsync files in parallel. */
/* The open transaction committed: remove the .tmp markers of the bodies it
 * wrote (store_blob.c "Recovery").  store_blob_markers_forget: it did not;
 * the markers stay behind for store_check to clean. */
void store_blob_markers_done(struct store_user *u);
void store_blob_markers_forget(struct store_user *u);
/* Forget the markers after the first n (an op inside a transaction rolled
 * back): its bodies' markers stay on disk for store_check. */
void store_blob_markers_keep(struct store_user *u, size_t n);
/* store_check's sweep of one blobs/<gg>/ entry named .tmp.*, under the
 * exclusive blobs.lock: 1 when it was a crash leftover and is now gone
 * (with the body file it had linked, when no row names that GUID), 0 when
 * the name is not a marker, -1 on error. */
int store_blob_leftover_clean(struct store_user *u, const char *dir, const char *name,
	bool (*named)(void *ctx, const char *guid), void *ctx, struct err *err);
int store_blob_prewrite(struct store_user *u, const char *guid, const void *data, size_t len,
	struct err *err);
/* A body that arrived in pieces (store.h store_blob_tmp). */
struct store_blob_tmp {
	struct store_user *u;
	int fd;                    /* O_TMPFILE in <userdir>/blobs */
	uint64_t len;
	void *md;                  /* EVP_MD_CTX of the GUID */
	bool failed;
	struct err err;            /* the first write error */
};
/* The GUID of what t holds (ends its hash; once). */
void store_blob_tmp_guid(struct store_blob_tmp *t, char *guid);
/* store_blob_prewrite for t's octets: the file is linked into place
 * rather than written again. */
int store_blob_prewrite_tmp(struct store_user *u, const char *guid, struct store_blob_tmp *t,
	struct err *err);
/* Inside the running op: remove the file of a body that no blobs row
 * names (a duplicate delivery's prewritten body).  0 or -1. */
int store_blob_drop_unused(struct store_user *u, const char *guid, struct err *err);
void store_blob_path(const struct store_user *u, const char *guid, struct buf *out);
bool store_blob_is_inline(const struct store_user *u, size_t len);
/* An inline body stored as a zstd frame (n bytes) back to its size octets,
 * in a new NUL-terminated allocation.  0, or -1 with ERR_CORRUPT. */
int store_blob_inflate(const void *frame, size_t n, uint64_t size, char **out, struct err *err);
bool store_guid_valid(const char *guid);
/* blobs.lock: shared while a blob may be written but not yet committed;
 * exclusive for the orphan sweep. */
int store_blob_lock(struct store_user *u, bool exclusive, struct err *err);
void store_blob_unlock(struct store_user *u);
/* Release a shared hold at the end of a transaction (an exclusive one stays). */
void store_blob_unlock_shared(struct store_user *u);

/* Records (store_record.c). */
/* msgid: the normalised Message-ID ("" none, NULL not computed: M7). */
int store_record_insert(struct store_user *u, struct store_mbrow *row,
	const struct store_record *r, const char *envelope, const char *bodystructure,
	const void *parts, size_t parts_len, const char *msgid, struct err *err);
/* Move every live record of src into dst (RENAME INBOX). */
int store_record_move_all(struct store_user *u, struct store_mbrow *src, struct store_mbrow *dst,
	struct err *err);
/* Keyword canonicalisation: parse a space-separated keyword string. */
int store_keywords_canon(const char *in, struct buf *out, struct err *err);

#endif
