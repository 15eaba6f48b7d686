/*
 * syncpush.h - the master side of replication ("brain"): compares the
 * state of users and mailboxes on this server with a replica's over one
 * sync protocol session and sends what differs.  State based and
 * idempotent: the sync log only says *what* to look at.
 *
 * A run takes a batch of (type, user, uniqueid) hints, coalesced per user,
 * and works in rounds.  Each round is pipelined in three waves, so a
 * batch of any size costs about three round trips:
 *   A  GET USER for the users whose replica state is not cached;
 *   B  RESERVE the GUIDs of the messages that would travel;
 *   C  UPLOAD what the replica lacks, then APPLY DELETE / RENAME /
 *      MAILBOX / SUB / PASSWORD / USER.
 * A refusal that means "your picture of the replica is stale" (checksum
 * or modseq mismatch, unknown mailbox, missing body) sends the user to
 * the next round with a fresh GET USER, and a checksum that differs at
 * equal modseq to a repair (GET RECORDS 0, record by record).
 *
 * Conflicts (split brain, issue 8) are detected and handed to the
 * conflict hook; the default hook logs and counts them and leaves both
 * sides alone (flags: ours is sent).  sync-client plugs in the
 * channel's policy (syncconflict.h): under renumber/replace the record-
 * level kinds, name clashes, deleted-here-with-mail-there and
 * uidvalidity are resolved (docs/replication.md "Conflicts"), writing
 * to this server's store through a handle of their own.  Deletions are sent only for tombstones this server holds
 * (deleted mailbox, UNUSER), never because something is missing here.
 *
 * Failpoints: sync.push.before_upload, sync.push.after_upload (the
 * uploads were acknowledged, no APPLY sent yet).
 */
#ifndef CASTOR_SYNCPUSH_H
#define CASTOR_SYNCPUSH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "store/store.h"
#include "sync/syncsess.h"

struct tls_ctx;

/* ------------------------------------------------------------------ */
/* Conflicts                                                           */

enum syncpush_conflict_kind {
	SYNCPUSH_C_GUID = 0,          /* same UID, different GUID */
	SYNCPUSH_C_UID_ABOVE,         /* replica holds UIDs at or above the master's UIDNEXT */
	SYNCPUSH_C_MODSEQ_AHEAD,      /* replica mailbox modseq above the master's */
	SYNCPUSH_C_UIDVALIDITY,       /* same uniqueid, different uidvalidity */
	SYNCPUSH_C_NAME_CLASH,        /* same name, different uniqueid (created on both sides) */
	SYNCPUSH_C_DELETED_REPLICA,   /* tombstone on the replica, live here */
	SYNCPUSH_C_REPLICA_RECORD,    /* a live record only the replica has, below our UIDNEXT */
	SYNCPUSH_C_REPLICA_MAILBOX,   /* a live mailbox only the replica has (no tombstone here) */
	SYNCPUSH_C_REPLICA_USER,      /* a user only the replica has (no UNUSER here) */
	SYNCPUSH_C_FLAGS,             /* a record changed on both sides (replica modseq higher) */
	SYNCPUSH_C_COUNT
};

const char *syncpush_conflict_name(enum syncpush_conflict_kind k);

struct syncpush_conflict {
	enum syncpush_conflict_kind kind;
	const char *user;
	const char *mailbox_id;      /* NULL for user-level conflicts */
	const char *mailbox_name;    /* ours, or the replica's when we have none */
	uint32_t uid;                /* record-level: the UID; else 0 */
	const char *master_guid;     /* record-level, or NULL */
	const char *replica_guid;    /* record-level, or NULL */
	uint64_t master_modseq, replica_modseq;
};

/* What the policy decided.  LEAVE: touch neither side.  MASTER (for
 * SYNCPUSH_C_FLAGS): send our record.  RENUMBER (for GUID, UID_ABOVE,
 * REPLICA_RECORD, MODSEQ_AHEAD): the replica's messages are fetched and
 * appended here (same UID when it is free here, else a fresh one), then
 * the replica becomes our copy; a UID that named another message there
 * is replaced by ours (the old one quarantined there, and here under its
 * new UID).  REPLACE (same kinds): our state wins, the replica's losing
 * messages go to its <root>/quarantine/, never deleted. */
enum syncpush_resolution {
	SYNCPUSH_R_LEAVE = 0,
	SYNCPUSH_R_MASTER,
	SYNCPUSH_R_RENUMBER,
	SYNCPUSH_R_REPLACE,
	SYNCPUSH_R_MERGE,       /* FLAGS: syncconflict_merge_flags(), written here, then sent */
};

typedef enum syncpush_resolution (*syncpush_conflict_fn)(void *ctx,
	const struct syncpush_conflict *c);

/* ------------------------------------------------------------------ */
/* Batches                                                             */

/* Hint types: the synclog_type values (SYNCLOG_USER ...).  Unknown types
 * are treated as "sync the whole user". */
struct syncpush_batch;
struct syncpush_batch *syncpush_batch_new(void);
void syncpush_batch_free(struct syncpush_batch **b);
void syncpush_batch_clear(struct syncpush_batch *b);
void syncpush_batch_add(struct syncpush_batch *b, unsigned type, const char *user,
	const char *uniqueid);
/* Sync everything about the user (anti-entropy, -u). */
void syncpush_batch_add_full(struct syncpush_batch *b, const char *user);
size_t syncpush_batch_users(const struct syncpush_batch *b);
bool syncpush_batch_empty(const struct syncpush_batch *b);

/* ------------------------------------------------------------------ */
/* Sessions                                                            */

struct syncpush_login {
	const char *host;            /* for SNI/verification and logs */
	const char *authname;
	const char *password;
	const char *channel;
	const char *servername;
	bool tls;                    /* STARTTLS (refuse to go on without it) */
	struct tls_ctx *tls_ctx;     /* client context when tls */
	bool compress;               /* COMPRESS ZSTD when offered */
	bool allow_deletes;          /* HELLO ALLOW-DELETES 1 */
};

struct syncpush_stats {
	uint64_t users;              /* users looked at */
	uint64_t mailboxes;          /* mailbox updates sent */
	uint64_t records;            /* records sent */
	uint64_t uploads;            /* bodies uploaded */
	uint64_t upload_bytes;
	uint64_t deletes;            /* mailbox tombstones sent */
	uint64_t renames;
	uint64_t repairs;            /* full record comparisons */
	uint64_t rounds;
	uint64_t errors;             /* objects that could not be brought in line */
	uint64_t conflicts[SYNCPUSH_C_COUNT];
	uint64_t renumbered;         /* replica messages appended here (renumber) */
	uint64_t replaced;           /* replica messages quarantined there (replace, renumber clash) */
	uint64_t mailboxes_resolved; /* name clashes and deleted-with-mail resolved (cases 5, 7) */
};

struct syncpush;

/* sess is borrowed (the caller frees it after syncpush_free). */
struct syncpush *syncpush_new(struct store *st, struct syncsess *sess);
void syncpush_free(struct syncpush **p);
void syncpush_set_conflict_hook(struct syncpush *p, syncpush_conflict_fn fn, void *ctx);

/* Parking (issue 16): a refusal that belongs to one user (an answer
 * NO [PERM] to one of its commands, or any NO whose code says
 * "damaged": delete-limit, INBOX cannot be deleted, a damaged user on the
 * replica; and the master's own deletion thresholds) sets that user aside
 * instead of ending the session: nothing more is sent for it in that run,
 * every other user goes on, and at the end of syncpush_run park(ctx,
 * user, reason) is called once for it.  skip(ctx, user) true drops the
 * user's hints from every batch (syncpush_run, anti-entropy included);
 * the caller re-syncs a released user in full (syncpush_batch_add_full).
 * Without a hook (NULL park) such refusals end the run with ERR_PERM. */
typedef void (*syncpush_park_fn)(void *ctx, const char *user, const char *reason);
typedef bool (*syncpush_skip_fn)(void *ctx, const char *user);
void syncpush_set_park_hook(struct syncpush *p, syncpush_park_fn park, syncpush_skip_fn skip,
	void *ctx);

/* Deletion thresholds (issue 8), checked on the plan of every round
 * before anything is sent: more than `limit` mailbox deletions in the
 * round, more than `fraction` of one user's live replica mailboxes
 * (counted only when that user loses more than `fraction_min`), or more
 * than `user_limit` users: the users concerned are parked (park hook
 * set), else the round fails with ERR_PERM "delete-limit"; nothing of
 * theirs reaches the replica, unless the session logged in with
 * allow_deletes.  limit 0 / user_limit 0 / fraction >= 1 disable
 * that check.  Defaults: 50, 0.5 (min 4), 5. */
struct syncpush_delete_limits {
	uint64_t limit;
	double fraction;
	uint64_t fraction_min;
	uint64_t user_limit;
};
void syncpush_delete_limits_default(struct syncpush_delete_limits *l);
void syncpush_set_delete_limits(struct syncpush *p, const struct syncpush_delete_limits *l);

/*
 * Greeting, STARTTLS, AUTHENTICATE, COMPRESS, HELLO with this server's
 * role and epoch.  0, or -1 with err: ERR_FENCED (the replica refuses us:
 * stop the channel, do not retry), ERR_PERM (authentication or TLS
 * refused: configuration), ERR_TEMP (anything else: retry).
 * Refuses (ERR_FENCED) when this server is not a master.
 */
int syncpush_login(struct syncpush *p, const struct syncpush_login *l, struct err *err);

/*
 * Bring every object named in the batch in line on the replica.  Returns
 * 0 when the batch is done: everything replicated, or reported as a
 * conflict / error that retrying now would not cure (counted in stats,
 * last one in syncpush_last_problem; users parked through the park
 * hook).  -1 with err when the session cannot go on: ERR_FENCED (stop),
 * ERR_PERM (refused by the replica's policy without a park hook, e.g.
 * delete-limit: stop and tell the operator), ERR_TEMP and anything else
 * (reconnect and retry the batch).
 */
int syncpush_run(struct syncpush *p, struct syncpush_batch *b, struct err *err);

/* Anti-entropy: GET USERS, a sorted merge of the replica's users with
 * ours (both from the users.db summaries, syncdigest.h), and a full sync
 * of each user whose summary differs (after our own summary was
 * recomputed from the database: the summary is a hint).  O(users); an
 * unchanged user opens no database on either side.  The users to sync
 * go in slices; the yield hook (syncpush_set_ae_yield) runs before each
 * slice.  *differ_r (may be NULL) gets the number of users that
 * differed.  Same returns as syncpush_run. */
int syncpush_anti_entropy(struct syncpush *p, size_t *differ_r, struct err *err);
/* Of the last pass: users compared, user databases opened here. */
void syncpush_ae_counts(const struct syncpush *p, size_t *compared_r, size_t *opened_r);
/* Run by anti-entropy between slices of users (sync-client serves the
 * live log there); 0, or -1 with err to end the pass (session error). */
typedef int (*syncpush_yield_fn)(void *ctx, struct err *err);
void syncpush_set_ae_yield(struct syncpush *p, syncpush_yield_fn fn, void *ctx);
/* The replica's epoch as its HELLO gave it (0 when it gave none). */
uint64_t syncpush_peer_epoch(const struct syncpush *p);
/* Its LOCALGEN: commits made on the replica by anything but syncd (0
 * when it gave none). */
uint64_t syncpush_peer_local_gen(const struct syncpush *p);

/* Full sync of every local user (sync-client -A).  Same returns. */
int syncpush_all_users(struct syncpush *p, struct err *err);

/* NOOP round trip (keepalive, and a check that the session lives). */
int syncpush_noop(struct syncpush *p, struct err *err);
/* LOGOUT (best effort). */
void syncpush_logout(struct syncpush *p);

/* castorctl verify: compare one user on both sides, mailbox by mailbox
 * (CRC, UIDNEXT, HIGHESTMODSEQ, name, UIDVALIDITY first; GET RECORDS
 * only for mailboxes whose checksum differs) and append one readable
 * line per difference to out ("user U mailbox "M": ...").  Read only.
 * 0 (*ndiff_r differences), or -1 with err (session). */
int syncpush_verify_user(struct syncpush *p, const char *user, struct buf *out, size_t *ndiff_r,
	struct err *err);

/* The replica's user names (GET USERS), a NULL-terminated vector of
 * malloc'd strings (free each, then the vector).  0 or -1. */
int syncpush_replica_users(struct syncpush *p, char ***names_r, size_t *n_r, struct err *err);

/* castorctl restore-from: copy one user's live mailboxes, records and
 * bodies from the replica into this server's store (the master
 * repairing itself after its user database was damaged; run castorctl
 * check --repair first).  Additive: a mailbox here that holds a name the
 * replica's uses is renamed "<name> (before restore)", a UID that names
 * another message here is left alone and counted as a conflict, nothing
 * is deleted.  Creates the user (without a password) when absent.
 * 0, or -1 with err. */
struct syncpush_restore {
	size_t mailboxes, records, blobs, renamed, conflicts;
	bool user_created;
};
int syncpush_restore_user(struct syncpush *p, const char *user, struct syncpush_restore *res,
	struct err *err);

void syncpush_stats(const struct syncpush *p, struct syncpush_stats *s);
/* The last problem that was counted as an error or conflict ("" none). */
const char *syncpush_last_problem(const struct syncpush *p);
/* Forget the cached replica state (after something else touched it). */
void syncpush_forget(struct syncpush *p);

#endif
