/*
 * store.h - the mail store: users, mailboxes, message records, blobs,
 * modseq, tombstones, quota, subscriptions.  The truth that replication
 * copies.
 *
 * Layout of a server root (see docs/store.md):
 *     <root>/db/users.db                    users, password hashes, quota, role/epoch
 *     <root>/spool/<h>/<user>/user.db       one SQLite (WAL) database per user
 *     <root>/spool/<h>/<user>/blobs/<gg>/<guid>   large message bodies (files)
 *     <root>/spool/<h>/<user>/commit.shm    group-commit state (shared memory)
 *     <root>/spool/<h>/<user>/notify        touched after every commit (IDLE)
 * <h> is the first character of the user name; <gg> the first two hex
 * digits of the GUID.
 *
 * Handles.  A `struct store` is one open server root (users.db); a
 * `struct store_user` is one open user database, obtained from a store
 * and closed before it.  Handles are not thread-safe; a process may hold
 * several.  Any number of processes may open the same user at once:
 * SQLite's locking serialises writers, readers see committed snapshots.
 *
 * Naming a mailbox.  Mailbox-level calls (create, rename, delete, get,
 * status, subscribe) take a NAME: UTF-8, '/' as hierarchy separator,
 * "INBOX" case-insensitive (and normalised to "INBOX", also as the
 * first component of a child: "inbox/x" is "INBOX/x").  Message-level
 * calls (append, flags, expunge, copy, snapshot, records) take the
 * mailbox's UNIQUEID (32 lower-case hex digits, immutable, survives
 * rename), which store_mailbox_get() returns.  A uniqueid whose mailbox
 * is deleted yields ERR_NOTFOUND.
 *
 * Errors.  Every call that can fail returns -1 (or NULL) and fills
 * `err` (lib/err.h): ERR_INVALID bad name/flag/argument, ERR_NOTFOUND
 * unknown user/mailbox/uid/blob, ERR_EXISTS duplicate, ERR_QUOTA over
 * quota, ERR_PERM refused (read-only replica, INBOX deletion, rename
 * into own child), ERR_CONFLICT replication value clash, ERR_TEMP lock
 * timeout or I/O, ERR_NOSPACE disk full, ERR_CORRUPT damaged state.  A
 * call that fails changes nothing (its statements are rolled back).
 *
 * Durability.  A mutating call that returns 0 has made its change
 * durable (blob fsynced, directory entry fsynced, WAL fsynced): the
 * group commit shares the WAL fsync between every process that
 * committed before the fsync started.  Inside an explicit transaction
 * (store_txn_begin) changes become durable at store_txn_commit.
 *
 * Modseq.  One counter per user; every mutating call bumps it once and
 * stamps everything it changed (records, mailbox rows, subscriptions)
 * with the new value.  Expunged records and deleted mailboxes stay as
 * tombstones (expunged_modseq / deleted_modseq != 0) until
 * store_purge(), so "what changed since N" sees deletions too.
 *
 * API versions.  v1 as first published; v2 adds, without changing any
 * v1 call: store_user_info() filling hash_buf, store_user_hash(),
 * store_records_full() (batched FETCH read), and duplicate-delivery
 * suppression: store_message_id(), store_append_dedup(),
 * store_msgid_find(), store_append_result.duplicate.
 */
#ifndef CASTOR_STORE_H
#define CASTOR_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/err.h"

struct store;
struct store_user;

/* ------------------------------------------------------------------ */
/* Limits and constants                                                */

#define STORE_USER_NAME_MAX 64       /* bytes */
#define STORE_MBOX_NAME_MAX 1000     /* bytes, whole name */
#define STORE_MBOX_COMPONENT_MAX 255 /* bytes, one component */
#define STORE_UNIQUEID_LEN 32        /* hex digits */
#define STORE_GUID_LEN 40            /* hex digits of SHA-1 */
#define STORE_KEYWORDS_MAX 1000      /* bytes of the keyword string */
#define STORE_SPECIALUSE_MAX 64
#define STORE_MESSAGE_MAX (256u * 1024 * 1024)  /* largest message accepted */
#define STORE_HASH_MAX 512           /* bytes of a password hash (store_user_set_hash) */
#define STORE_MSGID_MAX 998          /* bytes of a normalised Message-ID (store_message_id) */
/* Default for store_opts.inline_max: bodies up to this size live in
 * user.db; larger ones are files.  Chosen by bench/store_append, see
 * docs/decisions.md. */
#define STORE_INLINE_MAX_DEFAULT (64u * 1024)

/* System flags (bit values of `sysflags`).  \Recent is not stored. */
#define STORE_FLAG_SEEN     0x01u
#define STORE_FLAG_ANSWERED 0x02u
#define STORE_FLAG_FLAGGED  0x04u
#define STORE_FLAG_DELETED  0x08u
#define STORE_FLAG_DRAFT    0x10u
#define STORE_FLAGS_ALL     0x1fu

/* ------------------------------------------------------------------ */
/* Server root                                                         */

struct store_opts {
	bool read_only;                  /* refuse every write: ERR_PERM "read-only replica" */
	uint64_t quota_default_bytes;    /* limit for users without their own; 0 = unlimited */
	uint64_t quota_default_messages; /* ditto */
	size_t inline_max;               /* bodies <= this are rows of user.db; 0 = all files;
	                                    SIZE_MAX = all inline.  Default STORE_INLINE_MAX_DEFAULT */
	int busy_timeout_ms;             /* SQLite busy timeout; 0 = 30000 */
	bool compress;                   /* zstd-compress bodies stored in user.db
	                                    (blob_compress, default yes) */
};

/* Fill opts with the defaults (read-write, unlimited quota, default
 * inline threshold). */
void store_opts_init(struct store_opts *opts);
/* Defaults, then castor.conf's quota_default_bytes,
 * quota_default_messages (a negative one is none), blob_inline_max and
 * blob_compress.  The one builder every program uses (services, syncd,
 * sync-client, castorctl).  read_only is left false: the caller decides
 * it from the stored role (store_server_get). */
struct conf;
void store_opts_from_conf(struct store_opts *opts, const struct conf *conf);

/* Create a server root: <root>/{db,spool,sync/log,sync/cursor,run,
 * quarantine,deleted} and db/users.db with the server row (role
 * "master" or "replica", epoch 1).  Existing directories are fine; an
 * existing users.db is ERR_EXISTS. */
int store_create(const char *root, const char *role, struct err *err);

/* Open a server root created by store_create.  opts NULL = defaults. */
struct store *store_open(const char *root, const struct store_opts *opts, struct err *err);
/* Close and NULL *st.  Every store_user from it must be closed first. */
void store_close(struct store **st);
const char *store_root(const struct store *st);
/* Switch read-only mode at run time (failover). */
void store_set_read_only(struct store *st, bool read_only);
bool store_is_read_only(const struct store *st);

/* Server role and fencing epoch (users.db `server` table).
 * role_r gets "master" or "replica" (static string). */
int store_server_get(struct store *st, const char **role_r, uint64_t *epoch_r, struct err *err);
/* Set both (role "master"|"replica").  The one write that ignores
 * read_only: promotion runs on a read-only replica. */
int store_server_set(struct store *st, const char *role, uint64_t epoch, struct err *err);

/* ------------------------------------------------------------------ */
/* Change notification                                                 */

enum store_change_kind {
	STORE_CHANGE_MAILBOX = 1, /* records or the mailbox row changed (create/rename/delete too) */
	STORE_CHANGE_SUB,         /* subscriptions */
	STORE_CHANGE_USER,        /* user created, or quota changed */
	STORE_CHANGE_UNUSER,      /* user deleted */
	STORE_CHANGE_PASSWORD,    /* password changed */
};

/* Called once per (kind, mailbox) after each commit, in the process
 * that committed, before the commit's WAL fsync (the change is visible
 * to readers, its durability pending; the call itself returns success
 * only after the fsync).  mailbox_id is the uniqueid for
 * STORE_CHANGE_MAILBOX, NULL otherwise.  Must not call back into the
 * store with the same user handle. */
typedef void (*store_change_hook_fn)(void *ctx, const char *user,
	enum store_change_kind kind, const char *mailbox_id);
void store_set_change_hook(struct store *st, store_change_hook_fn fn, void *ctx);
/* The hook in place (NULL when none), to put it back after a stretch of
 * writes that must not enter the sync log (restore-from). */
store_change_hook_fn store_get_change_hook(const struct store *st, void **ctx_r);

/* ------------------------------------------------------------------ */
/* Users (users.db)                                                    */

/* User names: 1..STORE_USER_NAME_MAX bytes of [a-z0-9._+@-], first
 * character [a-z0-9].  Lower-case only: services fold logins. */
bool store_user_name_valid(const char *name);

/* Add a user (password NULL: no password, login impossible).  Creates
 * the spool directory and user.db with INBOX.  ERR_EXISTS if present. */
int store_user_add(struct store *st, const char *name, const char *password, struct err *err);
/* Delete a user: the users row goes first, then the spool directory is
 * moved to <root>/deleted/<name>.<unixtime>.  ERR_NOTFOUND if absent. */
int store_user_del(struct store *st, const char *name, struct err *err);
/* Set the password (yescrypt hash); NULL clears it. */
int store_user_passwd(struct store *st, const char *name, const char *password, struct err *err);
/* Set the password hash directly (replication: copies the hash). */
int store_user_set_hash(struct store *st, const char *name, const char *hash, struct err *err);
/* 1 password matches, 0 it does not (or no password / no such user),
 * -1 error. */
int store_user_verify(struct store *st, const char *name, const char *password, struct err *err);
/* The replication credential syncd accepts (users.db sync_auth): not a
 * user, never a mailbox, never replicated (store.c U3).  _set stores a
 * yescrypt hash of password for authname (replacing one); _verify
 * returns 1 match, 0 no match or no credential, -1 error. */
int store_sync_auth_set(struct store *st, const char *authname, const char *password, struct err *err);
int store_sync_auth_verify(struct store *st, const char *authname, const char *password, struct err *err);
/* 1 exists, 0 not, -1 error. */
int store_user_exists(struct store *st, const char *name, struct err *err);
/* Quota limits: -1 = the server default, 0 = unlimited, else the limit. */
int store_user_set_quota(struct store *st, const char *name, int64_t bytes, int64_t messages,
	struct err *err);

struct store_userinfo {
	char name[STORE_USER_NAME_MAX + 1];
	int64_t quota_bytes;     /* as stored: -1 default, 0 unlimited, else limit */
	int64_t quota_messages;
	int64_t created;         /* unix time */
	bool has_password;
	const char *hash;        /* password hash or NULL; points at hash_buf (see below) */
	/* Added in API v2: a copy of the hash.  store_user_info() and
	 * store_user_list() point `hash` here, so the hash outlives the
	 * call (store_user_info) or the callback (a copy of the struct
	 * must re-point it: copy.hash = copy.hash_buf when hash != NULL). */
	char hash_buf[STORE_HASH_MAX + 1];
};
/* Calls fn for every user in name order; fn returning non-zero stops
 * the walk (store_user_list then returns that value). */
typedef int (*store_user_fn)(void *ctx, const struct store_userinfo *ui);
int store_user_list(struct store *st, store_user_fn fn, void *ctx, struct err *err);

/* The per-user summary kept in users.db (store_summary.c): the user's
 * modseq and a CRC-32C of its live mailboxes' (uniqueid, name,
 * uidvalidity, highestmodseq, sync_crc, specialuse) and subscriptions,
 * written in every commit of the user's database.  A hint for
 * anti-entropy: known = false when it must be computed by opening. */
struct store_summary {
	const char *name;
	const char *hash;          /* NULL = no password */
	int64_t quota_bytes, quota_messages;
	bool known;
	bool damaged;              /* users.damaged is set (store_damage.c) */
	uint64_t modseq;
	uint32_t crc;
};
typedef int (*store_summary_fn)(void *ctx, const struct store_summary *sm);
/* Every user with its summary, in byte order of name (strcmp). */
int store_user_summary_list(struct store *st, store_summary_fn fn, void *ctx, struct err *err);
/* The user's summary computed from its database (read transaction). */
int store_user_summary(struct store_user *u, uint64_t *modseq_r, uint32_t *crc_r, struct err *err);
/* The same, also written to users.db (under the user's write lock;
 * only computed on a read-only store). */
int store_user_summary_refresh(struct store_user *u, uint64_t *modseq_r, uint32_t *crc_r,
	struct err *err);
/* syncd: this process's writes are a master's changes, not local ones.
 * Every other commit on a replica raises users.db meta 'local_gen' (in
 * the summary write): the replica's state changed behind its master's
 * log, and the master's next session runs anti-entropy. */
void store_set_sync_apply(struct store *st, bool on);
/* meta 'local_gen' (0 when never raised). */
int store_local_gen(struct store *st, uint64_t *gen_r, struct err *err);
/* One user's row.  ui_r->hash is NULL (no password) or points at
 * ui_r->hash_buf, which holds the hash after the call (API v2; v1 set
 * hash to NULL).  ERR_NOTFOUND for an unknown user. */
int store_user_info(struct store *st, const char *name, struct store_userinfo *ui_r, struct err *err);
/* The password hash of one user, appended to out (replication copies it
 * with store_user_set_hash).  1 the user has a hash, 0 no password (out
 * unchanged), -1 error (ERR_NOTFOUND unknown user). */
int store_user_hash(struct store *st, const char *name, struct buf *out, struct err *err);

/* Make a damaged user usable again, explicitly: the spool directory
 * (whatever is left of it) moves to <root>/deleted/, and a fresh user.db
 * with INBOX and a new identity takes its place.  Logged.  ERR_NOTFOUND
 * for an unknown user.  Also works on a healthy user (it then starts
 * empty; the old spool is kept in deleted/). */
int store_user_reset(struct store *st, const char *name, struct err *err);
/* Users marked damaged by the last process that opened them (users.damaged,
 * docs/store.md), in name order, with the reason; fn non-zero stops. */
typedef int (*store_user_damaged_fn)(void *ctx, const char *user, const char *why);
int store_user_damaged_list(struct store *st, store_user_damaged_fn fn, void *ctx,
	struct err *err);

/* Names whose spool holds a user.db but that have no users row (damage:
 * never taken for a new user; `castorctl check --all` lists them), in
 * directory order; fn non-zero stops the walk. */
typedef int (*store_spool_orphan_fn)(void *ctx, const char *user);
int store_spool_orphans(struct store *st, store_spool_orphan_fn fn, void *ctx, struct err *err);

/* The spool directory of a user (no check that it exists). */
void store_user_dir(const struct store *st, const char *name, struct buf *out);

/* ------------------------------------------------------------------ */
/* User database handle                                                */

/* Open a user's database.  Never creates one: ERR_NOTFOUND for unknown
 * users, ERR_DAMAGED for a user whose user.db is missing, empty,
 * truncated, unreadable, of another schema or of another identity, and
 * for a name with a user.db but no users row (docs/store.md, "Damage").
 * Only store_user_add and store_user_reset create a database. */
struct store_user *store_user_open(struct store *st, const char *name, struct err *err);
void store_user_close(struct store_user **u);
const char *store_user_name(const struct store_user *u);

/* Highest modseq ever assigned in this user's database. */
int store_user_modseq(struct store_user *u, uint64_t *modseq_r, struct err *err);

/* Enumerate users with their highestmodseq (opens each user database
 * read-only in turn; for anti-entropy). */
typedef int (*store_user_modseq_fn)(void *ctx, const char *user, uint64_t highestmodseq);
int store_user_list_modseq(struct store *st, store_user_modseq_fn fn, void *ctx, struct err *err);

/* Explicit transaction: every call between begin and commit on this
 * handle is one SQLite write transaction (BEGIN IMMEDIATE); a call that
 * fails inside it is rolled back alone (savepoint) and the transaction
 * stays open.  commit returns 0 only once everything is durable; the
 * change hook runs between its COMMIT and its WAL fsync.  rollback
 * discards everything.  Not nestable: begin while open is ERR_INVALID. */
int store_txn_begin(struct store_user *u, struct err *err);
int store_txn_commit(struct store_user *u, struct err *err);
void store_txn_rollback(struct store_user *u);
/* A point inside the open transaction to come back to: rollback_to_mark
 * undoes everything after it and keeps what came before (the
 * transaction stays open, the mark is gone).  One mark at a time; commit
 * and rollback drop it.  mark: 0, or -1 (ERR_INVALID without a
 * transaction). */
int store_txn_mark(struct store_user *u, struct err *err);
void store_txn_rollback_to_mark(struct store_user *u);

/* ------------------------------------------------------------------ */
/* Mailboxes                                                           */

struct store_mailbox {
	char uniqueid[STORE_UNIQUEID_LEN + 1];
	char name[STORE_MBOX_NAME_MAX + 1];
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t highestmodseq;   /* highest modseq of the mailbox or any of its records */
	uint64_t createdmodseq;
	uint64_t modseq;          /* last change to the mailbox row itself */
	uint64_t deleted_modseq;  /* 0 live, else tombstone */
	uint32_t sync_crc;        /* XOR of store_record_crc() over live records */
	char specialuse[STORE_SPECIALUSE_MAX + 1]; /* "\Sent" ... or "" */
};

/* Validate a name (see above); on success writes the normalised name
 * ("inbox/x" -> "INBOX/x") into norm (STORE_MBOX_NAME_MAX+1 bytes). */
int store_mailbox_name_check(const char *name, char *norm, struct err *err);

/* Create a mailbox; specialuse NULL or "" for none, else one or more
 * of \All \Archive \Drafts \Flagged \Junk \Sent \Trash separated by
 * spaces.  mb_r (may be NULL) receives the new row.  Parents are not
 * created (IMAP lists a missing parent as \NonExistent).  ERR_EXISTS
 * for a live mailbox of the same name. */
int store_mailbox_create(struct store_user *u, const char *name, const char *specialuse,
	struct store_mailbox *mb_r, struct err *err);
/* Create the missing parents of name ("a/b/c": "a" and "a/b"), as IMAP
 * CREATE and RENAME do (RFC 3501 6.3.3); existing ones are left alone. */
int store_mailbox_create_parents(struct store_user *u, const char *name, struct err *err);
/* Look up a live mailbox by name. */
int store_mailbox_get(struct store_user *u, const char *name, struct store_mailbox *mb_r,
	struct err *err);
/* Look up by uniqueid; with include_deleted a tombstone is returned too. */
int store_mailbox_get_id(struct store_user *u, const char *mailbox_id, bool include_deleted,
	struct store_mailbox *mb_r, struct err *err);
/* Rename a mailbox and all its children (uniqueids unchanged).
 * ERR_NOTFOUND old missing, ERR_EXISTS new (or a child's new name)
 * taken, ERR_PERM new is old's child.  Renaming INBOX moves its
 * messages to a new mailbox `newname` and leaves INBOX empty (RFC 3501).
 * Subscriptions keep their names (as Dovecot). */
int store_mailbox_rename(struct store_user *u, const char *oldname, const char *newname,
	struct err *err);
/* Delete (tombstone) a mailbox; its records stay (for undelete and
 * replication) but leave quota.  Children are not deleted.  INBOX is
 * ERR_PERM. */
int store_mailbox_delete(struct store_user *u, const char *name, struct err *err);
int store_mailbox_set_specialuse(struct store_user *u, const char *name, const char *specialuse,
	struct err *err);

/* LIST.  pattern uses IMAP wildcards: '*' matches anything, '%' anything
 * but '/'.  "INBOX" prefix matches case-insensitively.  Matching names
 * are given in name order. */
#define STORE_LIST_SUBSCRIBED  0x01 /* only subscribed names (LSUB/LIST (SUBSCRIBED)),
                                       including subscribed names with no mailbox */
#define STORE_LIST_DELETED     0x02 /* also tombstones (replication, dump) */
#define STORE_LIST_NO_PARENTS  0x04 /* do not report missing parents as \NonExistent */
#define STORE_LIST_CHILDINFO   0x08 /* with SUBSCRIBED: also names matching the pattern with a
                                     * subscribed descendant the pattern cut off
                                     * (STORE_MBATTR_CHILDSUBSCRIBED; LSUB's \Noselect
                                     * parents, RFC 5258 CHILDINFO) */

#define STORE_MBATTR_HASCHILDREN   0x01
#define STORE_MBATTR_HASNOCHILDREN 0x02
#define STORE_MBATTR_NONEXISTENT   0x04 /* a parent or subscription without a mailbox */
#define STORE_MBATTR_SUBSCRIBED    0x08
#define STORE_MBATTR_DELETED       0x10 /* a tombstone (STORE_LIST_DELETED) */
#define STORE_MBATTR_CHILDSUBSCRIBED 0x20 /* STORE_LIST_CHILDINFO: such a descendant exists */

/* mb is NULL for \NonExistent entries (then name is in `name`). */
typedef int (*store_list_fn)(void *ctx, const char *name, unsigned attrs,
	const struct store_mailbox *mb);
int store_mailbox_list(struct store_user *u, const char *pattern, unsigned flags,
	store_list_fn fn, void *ctx, struct err *err);
/* Does name match an IMAP LIST pattern?  (Exposed for tests and IMAP.) */
bool store_list_match(const char *pattern, const char *name);

struct store_status {
	uint32_t messages;
	uint32_t recent;      /* uids >= the mailbox's first recent uid */
	uint32_t unseen;
	uint32_t deleted;     /* live records with \Deleted */
	uint32_t uidnext;
	uint32_t uidvalidity;
	uint64_t highestmodseq;
	uint64_t size;        /* bytes of live records */
};
int store_mailbox_status(struct store_user *u, const char *name, struct store_status *st_r,
	struct err *err);
int store_mailbox_status_id(struct store_user *u, const char *mailbox_id,
	struct store_status *st_r, struct err *err);

/* Subscriptions (names need not exist).  Bumps modseq. */
int store_subscribe(struct store_user *u, const char *name, bool subscribe, struct err *err);
/* 1 subscribed, 0 not, -1 error. */
int store_subscribed(struct store_user *u, const char *name, struct err *err);

/* ------------------------------------------------------------------ */
/* Flags                                                               */

/* Parse an IMAP flag list body ("\Seen $Junk foo", no parentheses):
 * system flags into *sys_r, keywords into kw_r (canonical: space
 * separated, deduplicated case-insensitively, sorted by bytes).
 * \Recent is ignored; unknown \X is ERR_INVALID; keywords must be
 * atoms.  Seen state is the \Seen flag of each record (mailboxes
 * have one owner). */
int store_flags_parse(const char *s, uint32_t *sys_r, struct buf *kw_r, struct err *err);
/* Canonical flag string: system flags in the order \Answered \Flagged
 * \Deleted \Seen \Draft, then keywords; what the sync CRC covers. */
void store_flags_format(uint32_t sys, const char *keywords, struct buf *out);

/* ------------------------------------------------------------------ */
/* Records                                                             */

struct store_range {
	uint32_t lo, hi;   /* inclusive; lo <= hi */
};

/* A growable list of uids. */
struct store_uids {
	uint32_t *v;
	size_t n, cap;
};
void store_uids_add(struct store_uids *l, uint32_t uid);
void store_uids_free(struct store_uids *l);

struct store_record {
	uint32_t uid;
	char guid[STORE_GUID_LEN + 1];
	uint64_t size;
	int64_t internaldate;     /* unix seconds */
	uint32_t sysflags;
	const char *keywords;     /* canonical; owned by whoever handed out the record */
	uint64_t modseq;
	uint64_t expunged_modseq; /* 0 live */
};

/* The CRC that the mailbox sync checksum XORs together:
 * crc32 of "<uid> <modseq> <flags> <guid>" with flags as
 * store_flags_format().  Both ends of replication compute it here. */
uint32_t store_record_crc(const struct store_record *r);

/* One message to append. */
struct store_append_msg {
	const char *data;         /* the raw message (CRLF line ends as received) */
	size_t len;
	int64_t internaldate;     /* 0 = now */
	uint32_t sysflags;
	const char *keywords;     /* space separated or NULL */
};
struct store_append_result {
	uint32_t uid;
	uint64_t modseq;
	char guid[STORE_GUID_LEN + 1];
	/* Added in API v2 (store_append_dedup): true when nothing was
	 * appended because the mailbox already holds this message; uid,
	 * modseq and guid are then the existing record's.  Always false
	 * from store_append. */
	bool duplicate;
};

/* Append n messages to a mailbox in one transaction (MULTIAPPEND, a
 * batch of deliveries).  res[i] gets each message's uid/guid/modseq;
 * uidvalidity_r (may be NULL) the mailbox's.  Refused with ERR_QUOTA
 * when the user's usage plus the batch would exceed a limit,
 * ERR_TOOBIG for a message over STORE_MESSAGE_MAX, and nothing is
 * appended then.  The ENVELOPE/BODYSTRUCTURE are computed here, once.
 * Durable when it returns 0. */
int store_append(struct store_user *u, const char *mailbox_id,
	const struct store_append_msg *msgs, size_t n, struct store_append_result *res,
	uint32_t *uidvalidity_r, struct err *err);

/* A message body that arrives in pieces (a large APPEND literal): each
 * piece goes to an unnamed file beside the user's bodies and into the
 * GUID's hash as it comes, so the whole message is never in memory.
 * store_blob_tmp_open: 0, or -1 with err (ERR_TEMP; a filesystem without
 * O_TMPFILE too: the caller then reads the message into memory).
 * store_blob_tmp_write never fails: a write error is kept and reported
 * by store_append_tmp (the caller goes on reading the literal). */
struct store_blob_tmp;
int store_blob_tmp_open(struct store_user *u, struct store_blob_tmp **t_r, struct err *err);
void store_blob_tmp_write(struct store_blob_tmp *t, const void *p, size_t n);
uint64_t store_blob_tmp_size(const struct store_blob_tmp *t);
void store_blob_tmp_free(struct store_blob_tmp **t);
/* store_append of one message whose octets are in t (msg->data and
 * msg->len are not used).  The file becomes the body file without a
 * copy, and it is parsed through a mapping whose pages are given back as
 * the parser passes them, so memory stays bounded by a few MiB. */
int store_append_tmp(struct store_user *u, const char *mailbox_id,
	const struct store_append_msg *msg, struct store_blob_tmp *t, struct store_append_result *res,
	uint32_t *uidvalidity_r, struct err *err);

/* Duplicate-delivery suppression (LMTP, issue 5).
 *
 * Every record carries the normalised Message-ID of its message (the
 * message-id index, column records.msgid), set by store_append, COPY/
 * MOVE and store_repl_record alike, so a replica holds the same index as
 * its master and suppresses the same duplicates after a failover.  Its
 * delivery time is the record's internaldate (lmtpd appends with
 * internaldate 0 = now).  Index entries live as long as their record:
 * an expunged record (tombstone) still suppresses, until store_purge
 * removes it.
 *
 * store_message_id: the normalised Message-ID of a raw message: the
 * first Message-ID field of the top-level header; its msg-id "<...>"
 * (comments before it skipped) with every white space, control octet
 * and DEL removed, angle brackets kept ("<a@b>").  A value without
 * angle brackets is used whole (comments and white space removed).
 * Returns 1 and sets out (reset first) to it, or 0 (out empty) when the
 * message has no Message-ID, an empty one ("<>"), or one longer than
 * STORE_MSGID_MAX: such messages are never suppressed. */
int store_message_id(const char *data, size_t len, struct buf *out);

struct store_dedup {
	const char *msgid;   /* normalised Message-ID (store_message_id); NULL or "" = no check */
	int64_t since;       /* unix seconds: only records with internaldate >= since count
	                        (lmtpd: now - duplicate_days * 86400); 0 = any age */
};

/* store_append with duplicate suppression.  dedup (NULL = none) has n
 * entries, one per message.  For message i with dedup[i].msgid set: if
 * the mailbox holds a record (live or expunged, not purged) whose
 * Message-ID is dedup[i].msgid and whose internaldate >= dedup[i].since
 * -- including a message appended earlier in the same call -- message
 * i is not appended: res[i].duplicate is true and res[i] names the
 * existing record (the lowest such uid).  The check runs inside the
 * append's write transaction, so of two concurrent deliveries of one
 * message (any processes) exactly one stores it and the other gets
 * duplicate.  A duplicate costs no quota; when every message is a
 * duplicate nothing changes (no modseq, no change hook).  Returns 0
 * only when the existing record is durable too.  Otherwise as
 * store_append (same errors, durability, failpoints). */
int store_append_dedup(struct store_user *u, const char *mailbox_id,
	const struct store_append_msg *msgs, const struct store_dedup *dedup, size_t n,
	struct store_append_result *res, uint32_t *uidvalidity_r, struct err *err);

/* Look the message-id index up without appending: 1 and *uid_r (may be
 * NULL) = the lowest uid of a record of the mailbox (live or expunged)
 * with that Message-ID and internaldate >= since, 0 none, -1 error
 * (ERR_NOTFOUND unknown mailbox; deleted mailboxes are searched too). */
int store_msgid_find(struct store_user *u, const char *mailbox_id, const char *msgid,
	int64_t since, uint32_t *uid_r, struct err *err);

enum store_flags_op {
	STORE_FLAGS_ADD,
	STORE_FLAGS_REMOVE,
	STORE_FLAGS_REPLACE,
};
/* STORE: change flags of the live records whose uid is in the ranges.
 * unchangedsince 0 = no condition; otherwise records whose modseq is
 * above it are left alone and their uids added to failed_r (may be
 * NULL; RFC 7162 MODIFIED).  Records whose flags do not actually change
 * keep their modseq.  changed_r (may be NULL) gets the uids changed;
 * modseq_r (may be NULL) the modseq they got (0 if none changed).
 * Unknown uids are ignored (IMAP semantics). */
int store_flags(struct store_user *u, const char *mailbox_id, const struct store_range *ranges,
	size_t nranges, enum store_flags_op op, uint32_t sysflags, const char *keywords,
	uint64_t unchangedsince, struct store_uids *changed_r, struct store_uids *failed_r,
	uint64_t *modseq_r, struct err *err);

/* EXPUNGE: tombstone live records.  ranges NULL = every record; with
 * only_deleted, only records flagged \Deleted (IMAP EXPUNGE / UID
 * EXPUNGE); without it, exactly the uids given (POP3 DELE).
 * expunged_r (may be NULL) gets the uids expunged, ascending. */
int store_expunge(struct store_user *u, const char *mailbox_id, const struct store_range *ranges,
	size_t nranges, bool only_deleted, struct store_uids *expunged_r, struct err *err);

/* Undo appends that were refused after their commit (strict semisync:
 * no replica confirmed them in time): tombstone the live records of
 * mailbox_id whose uid is in uids (n of them, any order) as EXPUNGE
 * does, and drop them from the message-id index, so the sender's retry
 * is stored again instead of being suppressed as a duplicate of a
 * message nobody can see.  Uids already expunged or unknown are
 * ignored.  Durable when it returns 0. */
int store_append_undo(struct store_user *u, const char *mailbox_id, const uint32_t *uids, size_t n,
	struct err *err);

/* COPY / MOVE the live records in ranges from one mailbox to another
 * (same user; the blob is shared, never copied).  Flags, keywords and
 * internaldate are kept.  src_r/dst_r (may be NULL) get matching uid
 * lists for COPYUID; dst_uidvalidity_r the destination's.  MOVE
 * expunges the sources in the same transaction.  Quota applies to
 * copies.  Copy into the same mailbox is allowed (new uids). */
int store_copy(struct store_user *u, const char *src_id, const struct store_range *ranges,
	size_t nranges, const char *dst_id, bool move, struct store_uids *src_r,
	struct store_uids *dst_r, uint32_t *dst_uidvalidity_r, struct err *err);

/* A record with its parsed MIME data (malloc'd strings; NULL when the
 * MIME parser was unavailable at append). */
struct store_record_full {
	struct store_record rec;
	char *keywords;           /* rec.keywords points here */
	char *envelope;           /* IMAP ENVELOPE, parenthesised */
	char *bodystructure;      /* IMAP BODYSTRUCTURE (extensible form) */
	char *body;               /* IMAP BODY (non-extensible form) */
	void *parts;              /* serialised part tree (mime engineer's format) */
	size_t parts_len;
};
/* Fetch one record (live or tombstone) by uid. */
int store_record_get(struct store_user *u, const char *mailbox_id, uint32_t uid,
	struct store_record_full *r, struct err *err);
void store_record_full_free(struct store_record_full *r);

/* Batched read for FETCH (API v2): the records of a mailbox (live and
 * tombstones: rec.expunged_modseq != 0) whose uid lies in ranges,
 * ascending uid order, each uid once (ranges may be given in any
 * order and overlap; NULL with nranges 0 = every record), in ONE read
 * transaction, with one prepared statement.  fn gets each record with
 * keywords, envelope, bodystructure, body and -- only with_parts --
 * the part tree (else parts NULL, parts_len 0).  `r` and every string
 * in it point into SQLite's row and are valid only during the call: do
 * not free them (store_record_full_free is for store_record_get).  fn
 * may make read calls on u (store_blob_map, store_record_get, ...) but
 * no writing call and not store_records_full itself (ERR_INVALID).
 * fn returning non-zero stops the walk and store_records_full returns
 * that value; else 0, or -1 with err (ERR_NOTFOUND unknown mailbox,
 * ERR_INVALID bad range).  Keep chunks modest (a few hundred uids): the
 * read transaction pins the WAL against checkpoints while it is open. */
typedef int (*store_record_full_fn)(void *ctx, const struct store_record_full *r);
int store_records_full(struct store_user *u, const char *mailbox_id,
	const struct store_range *ranges, size_t nranges, bool with_parts,
	store_record_full_fn fn, void *ctx, struct err *err);

/* Records of a mailbox with modseq > since (including tombstones), in
 * uid order; since 0 = all.  fn returning non-zero stops the walk. */
typedef int (*store_record_fn)(void *ctx, const struct store_record *r);
int store_records_since(struct store_user *u, const char *mailbox_id, uint64_t since,
	store_record_fn fn, void *ctx, struct err *err);

/* Everything in the user with modseq > since, in modseq order: one
 * indexed query.  kind MAILBOX: a mailbox row changed (created,
 * renamed, deleted: mb set, rec NULL); RECORD: a record changed
 * (appended, flags, expunged: mb->uniqueid names its mailbox, rec
 * set); SUB: a subscription (name, subscribed). */
enum store_change_item { STORE_ITEM_MAILBOX = 1, STORE_ITEM_RECORD, STORE_ITEM_SUB };
struct store_change {
	enum store_change_item item;
	uint64_t modseq;
	const char *mailbox_id;              /* MAILBOX, RECORD */
	const struct store_mailbox *mb;      /* MAILBOX */
	const struct store_record *rec;      /* RECORD */
	const char *sub_name;                /* SUB */
	bool subscribed;                     /* SUB */
};
typedef int (*store_change_fn)(void *ctx, const struct store_change *c);
int store_changes_since(struct store_user *u, uint64_t since, store_change_fn fn, void *ctx,
	struct err *err);

/* ------------------------------------------------------------------ */
/* Message bodies                                                      */

/* A mapped body: data/len valid until store_blob_release. */
struct store_blob {
	const char *data;
	size_t len;
	void *priv_map;     /* internal */
	size_t priv_maplen; /* internal */
	char *priv_copy;    /* internal */
};
/* Map the body named by guid (mmap for files, a copy for inline
 * bodies).  Only bodies whose blob row is committed are served: an
 * orphan file left by a crash is ERR_NOTFOUND. */
int store_blob_map(struct store_user *u, const char *guid, struct store_blob *b, struct err *err);
/* The caller has sent [p, p + n) of b and will not read it soon: the
 * whole pages of a mapped file body in that range leave the process
 * (they are read again from the file if needed), so sending a large
 * body does not make the process as large as the body.  A no-op for an
 * inline body or a range outside b. */
void store_blob_done_with(struct store_blob *b, const char *p, size_t n);
void store_blob_release(struct store_blob *b);
/* Read the body into out (appended). */
int store_blob_read(struct store_user *u, const char *guid, struct buf *out, struct err *err);
/* 1 present, 0 absent, -1 error (replication: reserve). */
int store_blob_exists(struct store_user *u, const char *guid, struct err *err);
/* SHA-1 hex of data into guid (STORE_GUID_LEN+1 bytes). */
void store_guid(const void *data, size_t len, char *guid);

/* ------------------------------------------------------------------ */
/* Mailbox snapshot (IMAP SELECT)                                      */

struct store_snaprec {
	uint32_t uid;
	uint32_t sysflags;
	uint64_t modseq;
	uint64_t size;
	int64_t internaldate;
	const char *keywords;       /* owned by the snapshot */
	char guid[STORE_GUID_LEN + 1];
	bool expunged;              /* expunged, not yet removed (refresh without EXPUNGE) */
	bool meta;                  /* guid, size, internaldate are loaded (store_snapshot_meta) */
	bool recent;                /* \Recent in this session (claimed, or seen by EXAMINE) */
};
struct store_snapshot {
	char mailbox_id[STORE_UNIQUEID_LEN + 1];
	uint32_t uidvalidity;
	uint32_t uidnext;
	uint64_t modseq;            /* highestmodseq this snapshot reflects */
	uint32_t first_recent;      /* lowest uid this session got as \Recent; 0 = none */
	uint32_t nrecent;           /* records with recent set */
	size_t n;                   /* records, ascending uid; seq number = index + 1 */
	struct store_snaprec *recs;
	void *priv;
};
#define STORE_SNAP_CLAIM_RECENT 0x01  /* SELECT (not EXAMINE): take the \Recent messages */
#define STORE_SNAP_META 0x02  /* load guid, size, internaldate of every record now */
#define STORE_SNAP_PEEK_RECENT 0x04  /* EXAMINE: the unclaimed records are \Recent, none taken */

/* Take a consistent snapshot of a mailbox's live records (one read
 * transaction: concurrent appends are either wholly in or out). */
int store_snapshot_open(struct store_user *u, const char *mailbox_id, unsigned flags,
	struct store_snapshot **snap_r, struct err *err);
void store_snapshot_free(struct store_snapshot **snap);
/* Load guid, size and internaldate of recs[lo..hi) that lack them (a
 * snapshot opened without STORE_SNAP_META has uid, flags, modseq and
 * keywords only; a record refreshed since has everything).  A record
 * whose row is gone meanwhile keeps meta false. */
int store_snapshot_meta(struct store_user *u, struct store_snapshot *snap, size_t lo, size_t hi,
	struct err *err);

/* What a refresh found.  expunged_seq: the sequence numbers to send as
 * "* n EXPUNGE", in the order to send them (each already adjusted for
 * the ones before it).  new_exists: EXISTS count when records were
 * added (else 0).  changed_seq: new sequence numbers of surviving
 * records whose flags/modseq changed (send FETCH FLAGS). */
struct store_snapdiff {
	struct store_uids expunged_seq;
	struct store_uids changed_seq;
	uint32_t new_exists;
	uint32_t new_recent;
	bool uidvalidity_changed;   /* the mailbox was deleted/recreated: session must end */
	bool mailbox_gone;
};
#define STORE_REFRESH_EXPUNGE 0x01  /* remove expunged records now (else mark them) */
/* Bring snap up to date with everything committed since snap->modseq
 * and report the difference.  Cost is proportional to the changes. */
int store_snapshot_refresh(struct store_user *u, struct store_snapshot *snap, unsigned flags,
	struct store_snapdiff *d, struct err *err);
void store_snapdiff_free(struct store_snapdiff *d);

/* ------------------------------------------------------------------ */
/* Quota                                                               */

struct store_quota {
	uint64_t used_bytes;
	uint64_t used_messages;
	uint64_t limit_bytes;     /* 0 unlimited */
	uint64_t limit_messages;  /* 0 unlimited */
};
int store_quota_get(struct store_user *u, struct store_quota *q, struct err *err);

/* ------------------------------------------------------------------ */
/* Cross-process wake-up (IMAP IDLE)                                   */

/* An fd that becomes readable (poll POLLIN) within moments of any
 * process committing a change to this user.  Implemented with inotify
 * on the user's `notify` file, which every committer touches after its
 * commit is durable.  The fd belongs to the handle (closed with it). */
int store_user_watch_fd(struct store_user *u, struct err *err);
/* Drain the fd after it polled readable (non-blocking). */
void store_user_watch_ack(struct store_user *u);

/* ------------------------------------------------------------------ */
/* Replication: apply explicit values                                  */

/* Create or update a mailbox by uniqueid with exactly the given name,
 * uidvalidity, uidnext, highestmodseq, createdmodseq, modseq,
 * deleted_modseq and specialuse (sync_crc is ignored: it is derived).
 * ERR_EXISTS when another live mailbox holds the name. */
int store_repl_mailbox(struct store_user *u, const struct store_mailbox *mb, struct err *err);
/* Insert or update a record with explicit uid, guid, size,
 * internaldate, flags, modseq, expunged_modseq.  The blob must be
 * present (ERR_NOTFOUND).  A different guid under an existing uid is
 * ERR_CONFLICT (the caller resolves).  Raises the mailbox's uidnext
 * and highestmodseq and the user's modseq counter as needed; keeps the
 * sync checksum and quota usage exact. */
int store_repl_record(struct store_user *u, const char *mailbox_id, const struct store_record *r,
	struct err *err);
/* Store a body (verifying that its SHA-1 is guid, ERR_CORRUPT if not);
 * present already is fine. */
int store_repl_blob(struct store_user *u, const char *guid, const void *data, size_t len,
	struct err *err);
/* Set a subscription with an explicit modseq. */
int store_repl_sub(struct store_user *u, const char *name, bool subscribed, uint64_t modseq,
	struct err *err);
/* Raise the user's modseq counter to at least modseq. */
int store_repl_modseq(struct store_user *u, uint64_t modseq, struct err *err);

/* Remove tombstones with expunged/deleted modseq <= upto (all channels
 * have seen them), and bodies no record names any more.  Returns the
 * number of records removed, or -1. */
int64_t store_purge(struct store_user *u, uint64_t upto, struct err *err);

/* ------------------------------------------------------------------ */
/* Consistency check                                                   */

/* Check one user: SQLite integrity, blob rows vs files (missing,
 * orphan, wrong size, stray temporaries), every record's blob present,
 * modseq monotonicity (nothing above the counter, mailbox
 * highestmodseq >= its records', uid < uidnext), sync checksums and
 * quota usage recomputed, INBOX present, names valid and unique.  Each
 * problem is reported as one line through report (may be NULL).  With
 * repair, what can be fixed is fixed (orphans removed, counters
 * raised, checksums and usage rewritten, INBOX recreated); records
 * whose blob is missing are reported, never silently dropped.
 * Returns the number of problems found (0 = clean), -1 on error. */
typedef void (*store_report_fn)(void *ctx, const char *line);
int store_check(struct store *st, const char *user, bool repair, store_report_fn report,
	void *ctx, struct err *err);

/* ------------------------------------------------------------------ */
/* Statistics (per process, for benchmarks and tests)                  */

struct store_stats {
	uint64_t commits;         /* durable commits made by this process */
	uint64_t wal_syncs;       /* WAL fdatasyncs this process made as group-commit leader */
	uint64_t blob_syncs;      /* blob file fsyncs */
	uint64_t dir_syncs;       /* directory fsyncs */
	uint64_t sqlite_syncs;    /* syncs SQLite itself issued (checkpoints, users.db) */
	uint64_t shared_commits;  /* commits made durable by another's fsync */
	uint64_t appended;        /* messages appended */
	uint64_t user_opens;      /* user databases opened (store_user_open) */
};
void store_stats_get(struct store_stats *s);
void store_stats_reset(void);

#endif
