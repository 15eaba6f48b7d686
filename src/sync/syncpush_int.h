/*
 * syncpush_int.h - what the pieces of the master side of replication
 * share: struct syncpush, the replica's state, the plan records, and the
 * functions one piece offers the others.  Private to src/sync/syncpush_*.c;
 * callers use syncpush.h, the one public API.
 *
 * The pieces, one job each:
 *   syncpush_state.c    containers: string vectors, the replica's state,
 *                       the cache of replica mailboxes, the plan records
 *   syncpush_sess.c     the session: struct syncpush's life and settings,
 *                       login, NOOP/LOGOUT, the command pipeline
 *   syncpush_answer.c   the replica's answers: parsing its data, and what
 *                       each tagged answer does to the plan
 *   syncpush_plan.c     reading local state and planning one user and its
 *                       mailboxes
 *   syncpush_repair.c   the record-by-record comparison after GET RECORDS
 *   syncpush_resolve.c  split-brain resolutions that write to this store
 *   syncpush_send.c     encoding the commands of a plan
 *   syncpush_round.c    batches and rounds (waves A, B, C), the deletion
 *                       thresholds; holds the RULES every piece keeps
 *   syncpush_ae.c       anti-entropy
 *   syncpush_verify.c   castorctl verify
 *   syncpush_restore.c  castorctl restore-from (and GET BLOB)
 *
 * Names: functions one piece offers the others carry its file's prefix
 * (syncpush_sess_drain, syncpush_plan_user ...); the containers of
 * syncpush_state.c are named after their type (strv_, ruser_, cache_,
 * precs_, pm_, pu_).
 */
#ifndef CASTOR_SYNCPUSH_INT_H
#define CASTOR_SYNCPUSH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "sync/syncproto.h"
#include "sync/syncpush.h"

#define CACHE_BUCKETS 4096
#define LOCAL_USERS 16

struct strv {
	char **v;
	size_t n, cap;
};

struct rmb {
	char uniqueid[STORE_UNIQUEID_LEN + 1];
	char *name;
	uint32_t uidvalidity, uidnext, crc;
	uint64_t hms, modseq, createdmodseq, deletedmodseq;
	char specialuse[STORE_SPECIALUSE_MAX + 1];
	bool diverged;       /* cache only: known conflicts, send no CHECKSUM */
};

struct rsub {
	char *name;
	bool subscribed;
	uint64_t modseq;
};

struct ruser {
	bool exists;
	uint64_t modseq;
	int64_t quota_bytes, quota_messages;     /* -1 = NIL (server default) */
	char pwsha[65];                          /* "" = NIL (no password) */
	struct rmb *mbs;
	size_t nmbs, capmbs;
	struct rsub *subs;
	size_t nsubs, capsubs;
};

struct centry {
	struct centry *next;
	char *user;
	struct rmb mb;
};

struct rcache {
	struct centry *b[CACHE_BUCKETS];
	size_t n;
};

#define PU_FULL     0x01u
#define PU_SUB      0x02u
#define PU_PASSWORD 0x04u
#define PU_UNUSER   0x08u
#define PU_USER     0x10u

struct bu {
	char *name;
	unsigned flags;
	struct strv mbids;
};

struct syncpush_batch {
	struct bu *u;
	size_t n, cap;
};

struct prec {
	struct store_record r;   /* r.keywords -> kw */
	char *kw;
	bool replace;            /* APPLY: REPLACE 1 (split brain) */
};

struct precs {
	struct prec *v;
	size_t n, cap;
};

enum pm_act {
	PM_NONE = 0,
	PM_UPDATE,    /* APPLY MAILBOX (create, rename, records, row fields) */
	PM_DELETE,    /* APPLY DELETE */
	PM_REPAIR,    /* GET RECORDS 0 first, then an UPDATE */
};

struct pm {
	char id[STORE_UNIQUEID_LEN + 1];
	enum pm_act act;
	struct store_mailbox L;
	struct rmb *R;             /* replica state (ruser's or the cache's copy), NULL: absent */
	struct rmb rcopy;          /* the cache's entry copied for the fast path */
	bool create;
	bool undelete;             /* create over the replica's tombstone (castorctl undelete) */
	bool reset;                /* case 4: create over the replica's copy of another uidvalidity */
	enum syncpush_resolution reset_res;
	char *oldname;             /* rename: the replica's current name (maybe a temporary) */
	char *tmpname;             /* rename through this temporary name first */
	bool send_crc;
	uint64_t since_modseq;
	uint32_t since_crc;
	uint64_t hms;              /* HIGHESTMODSEQ to send */
	uint32_t uidnext;
	bool diverged;             /* conflicts left: the result will differ from ours */
	struct precs recs;
	struct strv guids;         /* bodies the records need: RESERVE asks which are missing */
	struct strv push;          /* small new bodies: uploaded without asking */
	struct precs rrecs;        /* PM_REPAIR: the replica's records */
	uint64_t r_hms;            /* PM_REPAIR: replica state the records were read at */
	uint32_t r_crc, r_uidnext;
	bool got_rrecs;
	bool failed;               /* an answer for it was not OK */
	bool retry;                /* try again next round (fresh state) */
	bool force_repair;         /* next round: compare records one by one */
	uint32_t ok_uidnext, ok_crc;
	uint64_t ok_hms;
	bool ok;
};

struct pu {
	char *name;
	unsigned flags;
	struct strv mbids;          /* hinted mailboxes */
	struct strv force_repair;   /* from the previous round */
	bool fast;                  /* replica state from the cache, no GET USER */
	bool no_fast;               /* a retry: ask the replica afresh */
	struct ruser *r;
	bool got_r;
	bool local_exists;
	struct store_userinfo ui;
	char *hash;                 /* ui.hash copy */
	uint64_t m0;                /* our modseq counter before reading anything */
	struct pm *pms;
	size_t npm, cappm;
	struct strv need;           /* GUIDs to RESERVE */
	struct strv missing;        /* GUIDs the replica lacks (sorted) */
	bool send_unuser, send_create, send_password, send_quota;
	struct rsub *subs_to_send;
	size_t nsubs_to_send;
	bool failed;                /* something in the round was not OK */
	bool retry;                 /* next round with a fresh GET USER */
	bool conflicted;            /* conflicts left: do not raise the modseq counter */
	bool final_user;            /* APPLY USER HIGHESTMODSEQ in wave C2 */
	bool parked;                /* refused for this user alone: set aside (park hook) */
	char *park_reason;
};

enum pk {
	PK_NOOP = 1, PK_LOGOUT, PK_GET_USERS, PK_GET_USER, PK_GET_RECORDS, PK_RESERVE, PK_UPLOAD,
	PK_APPLY_MAILBOX, PK_APPLY_RENAME, PK_APPLY_DELETE, PK_APPLY_SUB, PK_APPLY_USER,
	PK_APPLY_UNUSER, PK_APPLY_PASSWORD, PK_LOGIN,
};

struct pcmd {
	uint64_t tag;
	enum pk kind;
	struct pu *u;
	size_t mi;                 /* index of the pm in u->pms */
	bool last;                 /* last chunk of an APPLY MAILBOX */
	bool final;                /* APPLY USER of wave C2 */
};

struct luser {
	char name[STORE_USER_NAME_MAX + 1];
	struct store_user *u;
	uint64_t used;
};

struct syncpush {
	struct store *st;
	struct syncsess *sess;
	uint64_t next_tag;
	struct pcmd *q;
	size_t qhead, qlen, qcap;
	struct syncproto_value **un;     /* untagged frames for the head command */
	size_t nun, capun;
	bool fatal;
	struct err fatal_err;
	struct rcache cache;
	struct luser lus[LOCAL_USERS];
	uint64_t luse;
	struct syncpush_stats stats;
	syncpush_conflict_fn conflict_fn;
	void *conflict_ctx;
	char last_problem[ERR_MSG_MAX];
	struct syncpush_delete_limits dl;
	bool allow_deletes;
	syncpush_park_fn park_fn;        /* parking (issue 16) */
	syncpush_skip_fn skip_fn;
	void *park_ctx;
	/* GET USERS answers (anti-entropy) */
	struct strv au_names;
	uint64_t *au_modseq;
	int64_t *au_digest;        /* -1: the replica sent none */
	size_t au_cap;
	/* the last anti-entropy pass (syncpush_ae_counts), its yield hook */
	size_t ae_compared, ae_opened;
	uint64_t peer_epoch;       /* the replica's EPOCH in its HELLO (0 unknown) */
	uint64_t peer_local_gen;   /* its LOCALGEN (0 none) */
	syncpush_yield_fn ae_yield;
	void *ae_yield_ctx;
};

/* What the policy made of one replica record (plan_repair). */
enum rfix {
	FX_NONE = 0,
	FX_LEFT,      /* left alone (keep, or no policy) */
	FX_ADOPT,     /* renumber: only the replica has it, its UID is free here: same UID */
	FX_IMPORT,    /* renumber: appended here under a fresh UID */
	FX_DROP,      /* replace: expunged there (quarantined first) */
	FX_REPLACE,   /* replace/renumber: the UID is ours there (theirs quarantined) */
	FX_FLAGS,     /* changed on both sides: the merged flags written here (fl) */
};

/* syncpush_state.c: containers (named after their type) */
void strv_add(struct strv *s, const char *x);
bool strv_has(const struct strv *s, const char *x);
void strv_add_uniq(struct strv *s, const char *x);
void strv_free(struct strv *s);
void strv_sort_uniq(struct strv *s);
void ruser_free(struct ruser *r);
struct rmb *ruser_find(struct ruser *r, const char *id);
struct rmb *ruser_find_name(struct ruser *r, const char *name);
void cache_clear(struct rcache *c);
struct centry *cache_get(struct rcache *c, const char *user, const char *id);
void cache_del(struct rcache *c, const char *user, const char *id);
void cache_put(struct rcache *c, const char *user, const struct rmb *mb);
void cache_forget_user(struct rcache *c, const char *user);
void precs_free(struct precs *p);
void precs_add(struct precs *p, const struct store_record *r);
void pm_free(struct pm *m);
void pu_reset_plan(struct pu *u);
void pu_free(struct pu *u);
struct pm *pu_add_pm(struct pu *u, const char *id);

/* syncpush_sess.c: the session, the pipeline, local user databases */
/* Count a conflict, remember it as the last problem, ask the hook. */
enum syncpush_resolution syncpush_sess_conflict(struct syncpush *p,
	const struct syncpush_conflict *c);
/* A user's database here (kept open, a small LRU); NULL with err. */
struct store_user *syncpush_sess_user(struct syncpush *p, const char *name, struct err *err);
void syncpush_sess_user_forget(struct syncpush *p, const char *name);
/* The first fatal answer of a run ends the session (syncpush_sess_fail). */
void syncpush_sess_fatal(struct syncpush *p, enum err_kind kind, const char *fmt,
	const char *msg);
/* A pipelined command: begin (tag), encode, end (window kept). */
struct pcmd *syncpush_sess_begin(struct syncpush *p, enum pk kind, struct syncproto_enc *e);
int syncpush_sess_end(struct syncpush *p, struct syncproto_enc *e, struct err *err);
/* Read answers until none is outstanding. */
int syncpush_sess_drain(struct syncpush *p, struct err *err);
/* drain, then the fatal answer's error if one came: 0 or -1. */
int syncpush_sess_wait(struct syncpush *p, struct err *err);
/* A one-line command outside the pipeline: 1 OK, 0 NO/BAD, -1. */
int syncpush_sess_simple(struct syncpush *p, const char *line, struct syncproto_value **f,
	struct syncproto_response *r, struct syncproto_value **data, struct err *err);
/* -1 with the fatal answer's error (if any) in err. */
int syncpush_sess_fail(struct syncpush *p, struct err *err);

/* syncpush_answer.c: the replica's answers */
void syncpush_answer_park(struct pu *u, const char *what, const char *text);
void syncpush_answer_handle(struct syncpush *p, struct pcmd *c,
	const struct syncproto_response *r, const struct syncproto_value *code);

/* syncpush_plan.c: reading local state, planning a user */
int syncpush_plan_read_local(struct store_user *lu, const char *id, uint64_t since,
	struct store_mailbox *L, struct precs *recs, uint32_t *maxuid, uint64_t *maxmodseq,
	struct err *err);
enum syncpush_resolution syncpush_plan_report(struct syncpush *p, struct pu *u,
	enum syncpush_conflict_kind k, const struct pm *m, const char *name, uint32_t uid,
	const char *mg, const char *rg, uint64_t mm, uint64_t rm);
/* RENUMBER and REPLACE resolve a conflict; the others leave it. */
bool syncpush_plan_resolves(enum syncpush_resolution r);
/* What the replica is believed to hold before an update (a creation:
 * none, NULL). */
struct plan_since {
	uint64_t hms;
	uint32_t crc, uidnext;
};
void syncpush_plan_update(struct pm *m, const struct plan_since *since, bool diverged, int rc,
	uint32_t maxuid, uint64_t maxms);
int syncpush_plan_user(struct syncpush *p, struct pu *u, struct err *err);
void syncpush_plan_renames(struct pu *u);

/* syncpush_repair.c: record-by-record comparison after GET RECORDS */
int syncpush_repair_plan(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	struct err *err);

/* syncpush_resolve.c: split-brain resolutions written here */
int syncpush_resolve_local(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	const enum rfix *fx, const struct precs *fl, struct err *err);
int syncpush_resolve_mailboxes(struct syncpush *p, struct pu *u, struct err *err);

/* syncpush_send.c: encoding a plan's commands */
int syncpush_send_get_user(struct syncpush *p, struct pu *u, struct err *err);
int syncpush_send_get_records(struct syncpush *p, struct pu *u, size_t mi, struct err *err);
int syncpush_send_reserve(struct syncpush *p, struct pu *u, struct err *err);
int syncpush_send_apply_user(struct syncpush *p, struct pu *u, bool quota, uint64_t modseq,
	bool final, struct err *err);
int syncpush_send_user_cmds(struct syncpush *p, struct pu *u, struct err *err);

/* syncpush_restore.c: copying from the replica */
int syncpush_restore_blob(struct syncpush *p, struct store_user *lu, const char *user,
	const char *guid, struct err *err);
int syncpush_restore_mailbox(struct syncpush *p, struct store_user *lu, const char *user,
	struct pm *m, struct syncpush_restore *res, struct err *err);

#endif
