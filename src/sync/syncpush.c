/*
 * syncpush.c - the master side of replication (syncpush.h): compare,
 * plan, pipeline, check the answers.
 *
 * RULES
 *  1. State based: what is sent is read from the store at the time of
 *     sending, never taken from the log.  Replaying a hint twice is
 *     harmless.
 *  2. Every APPLY MAILBOX carries what the client believes the replica
 *     holds (SINCE-MODSEQ, SINCE-CHECKSUM); a replica elsewhere refuses,
 *     and the next round starts from a fresh GET USER.  So a stale cache
 *     costs a round trip, never a wrong state.
 *  3. A mailbox's records and its HIGHESTMODSEQ are read so that every
 *     record change up to the HIGHESTMODSEQ sent is among the records
 *     sent (mailbox row read before the records; commits are serialised
 *     in modseq order), and CHECKSUM is sent only when the row did not
 *     move while the records were read.
 *  4. Deletion only from a tombstone here: a deleted mailbox row
 *     (APPLY DELETE) or a user that is gone after an UNUSER hint
 *     (APPLY UNUSER).  Anything the replica has and we lack is reported
 *     through the conflict hook and left alone.
 *  5. A user's replica modseq counter is raised to ours (APPLY USER
 *     HIGHESTMODSEQ, the anti-entropy key) only after every other answer
 *     for that user in the round was OK and nothing was left in conflict.
 *  6. Commands are pipelined; at most WINDOW are unanswered at a time.
 *     The answers to that many small commands fit in the socket buffers,
 *     so neither side can block the other; the replica commits a group
 *     of UPLOADs at the latest when the window makes us wait.
 */
#include "sync/syncpush.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/atomicfile.h"
#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/sasl.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "sync/syncapply.h"
#include "sync/syncconflict.h"
#include "sync/syncdigest.h"
#include "sync/synclog.h"

#define WINDOW 1000
#define OUT_FLUSH (1024u * 1024)
#define CHUNK_RECORDS 1000
#define RESERVE_CHUNK 5000
#define RESERVE_SKIP_MAX (64u * 1024)   /* bodies up to this size skip RESERVE */
#define USERS_PER_WAVE 64
#define MAX_ROUNDS 4
#define CACHE_BUCKETS 4096
#define CACHE_MAX 200000
#define LOCAL_USERS 16
#define ZSTD_LEVEL 3

/* ------------------------------------------------------------------ */
/* Small containers                                                    */

struct strv {
	char **v;
	size_t n, cap;
};

static void
strv_add(struct strv *s, const char *x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 8;
		s->v = xreallocarray(s->v, s->cap, sizeof(*s->v));
	}
	s->v[s->n++] = xstrdup(x);
}

static bool
strv_has(const struct strv *s, const char *x)
{
	for (size_t i = 0; i < s->n; i++)
		if (str_eq(s->v[i], x))
			return true;
	return false;
}

static void
strv_add_uniq(struct strv *s, const char *x)
{
	if (!strv_has(s, x))
		strv_add(s, x);
}

static void
strv_free(struct strv *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int
str_cmp_p(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* sort and drop duplicates */
static void
strv_sort_uniq(struct strv *s)
{
	size_t k = 0;

	if (s->n < 2)
		return;
	qsort(s->v, s->n, sizeof(*s->v), str_cmp_p);
	for (size_t i = 0; i < s->n; i++) {
		if (k > 0 && str_eq(s->v[k - 1], s->v[i])) {
			free(s->v[i]);
			continue;
		}
		s->v[k++] = s->v[i];
	}
	s->n = k;
}

/* ------------------------------------------------------------------ */
/* Replica state                                                       */

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

static void
ruser_free(struct ruser *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->nmbs; i++)
		free(r->mbs[i].name);
	free(r->mbs);
	for (size_t i = 0; i < r->nsubs; i++)
		free(r->subs[i].name);
	free(r->subs);
	free(r);
}

static struct rmb *
ruser_find(struct ruser *r, const char *id)
{
	for (size_t i = 0; r != NULL && i < r->nmbs; i++)
		if (str_eq(r->mbs[i].uniqueid, id))
			return &r->mbs[i];
	return NULL;
}

/* The live replica mailbox holding name, or NULL. */
static struct rmb *
ruser_find_name(struct ruser *r, const char *name)
{
	for (size_t i = 0; r != NULL && i < r->nmbs; i++)
		if (r->mbs[i].deletedmodseq == 0 && str_eq(r->mbs[i].name, name))
			return &r->mbs[i];
	return NULL;
}

/* ------------------------------------------------------------------ */
/* Cache of replica mailbox state, from answers                        */

struct centry {
	struct centry *next;
	char *user;
	struct rmb mb;
};

struct rcache {
	struct centry *b[CACHE_BUCKETS];
	size_t n;
};

static unsigned
cache_hash(const char *user, const char *id)
{
	uint32_t h = 2166136261u;

	for (const char *p = user; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	h = (h ^ 0xff) * 16777619u;
	for (const char *p = id; *p; p++)
		h = (h ^ (unsigned char)*p) * 16777619u;
	return h % CACHE_BUCKETS;
}

static void
cache_clear(struct rcache *c)
{
	for (size_t i = 0; i < CACHE_BUCKETS; i++) {
		struct centry *e = c->b[i], *nx;
		for (; e != NULL; e = nx) {
			nx = e->next;
			free(e->user);
			free(e->mb.name);
			free(e);
		}
		c->b[i] = NULL;
	}
	c->n = 0;
}

static struct centry *
cache_get(struct rcache *c, const char *user, const char *id)
{
	for (struct centry *e = c->b[cache_hash(user, id)]; e != NULL; e = e->next)
		if (str_eq(e->mb.uniqueid, id) && str_eq(e->user, user))
			return e;
	return NULL;
}

static void
cache_del(struct rcache *c, const char *user, const char *id)
{
	struct centry **pp = &c->b[cache_hash(user, id)];

	for (; *pp != NULL; pp = &(*pp)->next) {
		struct centry *e = *pp;
		if (str_eq(e->mb.uniqueid, id) && str_eq(e->user, user)) {
			*pp = e->next;
			free(e->user);
			free(e->mb.name);
			free(e);
			c->n--;
			return;
		}
	}
}

static void
cache_put(struct rcache *c, const char *user, const struct rmb *mb)
{
	struct centry *e = cache_get(c, user, mb->uniqueid);
	unsigned h;

	if (e == NULL) {
		if (c->n >= CACHE_MAX)
			cache_clear(c);
		e = xcalloc(1, sizeof(*e));
		e->user = xstrdup(user);
		h = cache_hash(user, mb->uniqueid);
		e->next = c->b[h];
		c->b[h] = e;
		c->n++;
	} else {
		free(e->mb.name);
	}
	e->mb = *mb;
	e->mb.name = xstrdup(mb->name);
}

/* Drop every entry of one user (its state is in doubt). */
static void
cache_forget_user(struct rcache *c, const char *user)
{
	for (size_t i = 0; i < CACHE_BUCKETS; i++) {
		struct centry **pp = &c->b[i];
		while (*pp != NULL) {
			struct centry *e = *pp;
			if (str_eq(e->user, user)) {
				*pp = e->next;
				free(e->user);
				free(e->mb.name);
				free(e);
				c->n--;
			} else {
				pp = &e->next;
			}
		}
	}
}

/* ------------------------------------------------------------------ */
/* Batches                                                             */

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

struct syncpush_batch *
syncpush_batch_new(void)
{
	return xcalloc(1, sizeof(struct syncpush_batch));
}

void
syncpush_batch_clear(struct syncpush_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->u[i].name);
		strv_free(&b->u[i].mbids);
	}
	b->n = 0;
}

void
syncpush_batch_free(struct syncpush_batch **bp)
{
	if (*bp == NULL)
		return;
	syncpush_batch_clear(*bp);
	free((*bp)->u);
	free(*bp);
	*bp = NULL;
}

static struct bu *
batch_user(struct syncpush_batch *b, const char *user)
{
	for (size_t i = b->n; i > 0; i--)
		if (str_eq(b->u[i - 1].name, user))
			return &b->u[i - 1];
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 16;
		b->u = xreallocarray(b->u, b->cap, sizeof(*b->u));
	}
	memset(&b->u[b->n], 0, sizeof(b->u[b->n]));
	b->u[b->n].name = xstrdup(user);
	return &b->u[b->n++];
}

void
syncpush_batch_add(struct syncpush_batch *b, unsigned type, const char *user, const char *uniqueid)
{
	struct bu *u;

	if (user == NULL || user[0] == '\0')
		return;
	u = batch_user(b, user);
	switch (type) {
	case SYNCLOG_MAILBOX:
	case SYNCLOG_SEEN:
		if (uniqueid != NULL && strlen(uniqueid) == STORE_UNIQUEID_LEN) {
			if (u->mbids.n < 10000)
				strv_add_uniq(&u->mbids, uniqueid);
			else
				u->flags |= PU_FULL;
		} else {
			u->flags |= PU_FULL;
		}
		break;
	case SYNCLOG_SUB:
		u->flags |= PU_SUB;
		break;
	case SYNCLOG_PASSWORD:
		u->flags |= PU_PASSWORD;
		break;
	case SYNCLOG_UNUSER:
		u->flags |= PU_UNUSER;
		break;
	case SYNCLOG_QUOTA:
		u->flags |= PU_USER;
		break;
	case SYNCLOG_USER:
	default:
		u->flags |= PU_FULL | PU_USER;
		break;
	}
}

void
syncpush_batch_add_full(struct syncpush_batch *b, const char *user)
{
	batch_user(b, user)->flags |= PU_FULL | PU_USER;
}

size_t
syncpush_batch_users(const struct syncpush_batch *b)
{
	return b->n;
}

bool
syncpush_batch_empty(const struct syncpush_batch *b)
{
	return b->n == 0;
}

/* ------------------------------------------------------------------ */
/* Plans                                                               */

struct prec {
	struct store_record r;   /* r.keywords -> kw */
	char *kw;
	bool replace;            /* APPLY: REPLACE 1 (split brain) */
};

struct precs {
	struct prec *v;
	size_t n, cap;
};

static void
precs_free(struct precs *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i].kw);
	free(p->v);
	memset(p, 0, sizeof(*p));
}

static void
precs_add(struct precs *p, const struct store_record *r)
{
	struct prec *x;

	if (p->n == p->cap) {
		p->cap = p->cap ? 2 * p->cap : 64;
		p->v = xreallocarray(p->v, p->cap, sizeof(*p->v));
	}
	x = &p->v[p->n++];
	x->r = *r;
	x->replace = false;
	x->kw = xstrdup(r->keywords != NULL ? r->keywords : "");
	x->r.keywords = x->kw;
}

static int
prec_cmp_modseq(const void *a, const void *b)
{
	const struct prec *x = a, *y = b;
	uint64_t mx = x->r.modseq, my = y->r.modseq;

	if (mx != my)
		return mx < my ? -1 : 1;
	return x->r.uid < y->r.uid ? -1 : x->r.uid > y->r.uid;
}

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

static void
pm_free(struct pm *m)
{
	free(m->oldname);
	free(m->tmpname);
	free(m->rcopy.name);
	precs_free(&m->recs);
	precs_free(&m->rrecs);
	strv_free(&m->guids);
	strv_free(&m->push);
}

static void
pu_reset_plan(struct pu *u)
{
	for (size_t i = 0; i < u->npm; i++)
		pm_free(&u->pms[i]);
	free(u->pms);
	u->pms = NULL;
	u->npm = u->cappm = 0;
	strv_free(&u->need);
	strv_free(&u->missing);
	for (size_t i = 0; i < u->nsubs_to_send; i++)
		free(u->subs_to_send[i].name);
	free(u->subs_to_send);
	u->subs_to_send = NULL;
	u->nsubs_to_send = 0;
	ruser_free(u->r);
	u->r = NULL;
	u->got_r = false;
	free(u->hash);
	u->hash = NULL;
	u->send_unuser = u->send_create = u->send_password = u->send_quota = false;
	u->failed = u->retry = u->conflicted = u->final_user = false;
	u->parked = false;
	free(u->park_reason);
	u->park_reason = NULL;
}

static void
pu_free(struct pu *u)
{
	pu_reset_plan(u);
	free(u->name);
	strv_free(&u->mbids);
	strv_free(&u->force_repair);
}

static struct pm *
pu_add_pm(struct pu *u, const char *id)
{
	struct pm *m;

	for (size_t i = 0; i < u->npm; i++)
		if (str_eq(u->pms[i].id, id))
			return NULL;
	if (u->npm == u->cappm) {
		u->cappm = u->cappm ? 2 * u->cappm : 8;
		u->pms = xreallocarray(u->pms, u->cappm, sizeof(*u->pms));
	}
	m = &u->pms[u->npm++];
	memset(m, 0, sizeof(*m));
	str_lcpy(m->id, id, sizeof(m->id));
	return m;
}

/* ------------------------------------------------------------------ */
/* The session                                                         */

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

const char *
syncpush_conflict_name(enum syncpush_conflict_kind k)
{
	static const char *const names[SYNCPUSH_C_COUNT] = {
		"guid", "uid_above", "modseq_ahead", "uidvalidity", "name_clash",
		"deleted_on_replica", "replica_only_record", "replica_only_mailbox",
		"replica_only_user", "flags",
	};

	return (unsigned)k < SYNCPUSH_C_COUNT ? names[k] : "unknown";
}

static enum syncpush_resolution
default_conflict(void *ctx, const struct syncpush_conflict *c)
{
	(void)ctx;
	log_warn("sync conflict kind=%s user=%s mailbox=%s name=%s uid=%u master_guid=%s"
		" replica_guid=%s master_modseq=%llu replica_modseq=%llu action=%s",
		syncpush_conflict_name(c->kind), c->user, c->mailbox_id ? c->mailbox_id : "-",
		log_q(c->mailbox_name ? c->mailbox_name : "-"), c->uid,
		c->master_guid ? c->master_guid : "-", c->replica_guid ? c->replica_guid : "-",
		(unsigned long long)c->master_modseq, (unsigned long long)c->replica_modseq,
		c->kind == SYNCPUSH_C_FLAGS ? "master" : "leave");
	return c->kind == SYNCPUSH_C_FLAGS ? SYNCPUSH_R_MASTER : SYNCPUSH_R_LEAVE;
}

static enum syncpush_resolution
conflict(struct syncpush *p, const struct syncpush_conflict *c)
{
	p->stats.conflicts[c->kind]++;
	snprintf(p->last_problem, sizeof(p->last_problem), "conflict %s user %s mailbox %s uid %u",
		syncpush_conflict_name(c->kind), c->user, c->mailbox_name ? c->mailbox_name : "-",
		c->uid);
	return p->conflict_fn(p->conflict_ctx, c);
}

struct syncpush *
syncpush_new(struct store *st, struct syncsess *sess)
{
	struct syncpush *p = xcalloc(1, sizeof(*p));

	p->st = st;
	p->sess = sess;
	p->next_tag = 1;
	p->conflict_fn = default_conflict;
	syncpush_delete_limits_default(&p->dl);
	return p;
}

void
syncpush_delete_limits_default(struct syncpush_delete_limits *l)
{
	l->limit = 50;
	l->fraction = 0.5;
	l->fraction_min = 4;
	l->user_limit = 5;
}

void
syncpush_set_delete_limits(struct syncpush *p, const struct syncpush_delete_limits *l)
{
	p->dl = *l;
}

static void
untagged_clear(struct syncpush *p)
{
	for (size_t i = 0; i < p->nun; i++)
		syncproto_value_free(&p->un[i]);
	p->nun = 0;
}

void
syncpush_free(struct syncpush **pp)
{
	struct syncpush *p = *pp;

	if (p == NULL)
		return;
	untagged_clear(p);
	free(p->un);
	free(p->q);
	cache_clear(&p->cache);
	for (size_t i = 0; i < LOCAL_USERS; i++)
		store_user_close(&p->lus[i].u);
	strv_free(&p->au_names);
	free(p->au_modseq);
	free(p->au_digest);
	free(p);
	*pp = NULL;
}

void
syncpush_set_conflict_hook(struct syncpush *p, syncpush_conflict_fn fn, void *ctx)
{
	p->conflict_fn = fn != NULL ? fn : default_conflict;
	p->conflict_ctx = ctx;
}

void
syncpush_set_park_hook(struct syncpush *p, syncpush_park_fn park, syncpush_skip_fn skip, void *ctx)
{
	p->park_fn = park;
	p->skip_fn = skip;
	p->park_ctx = ctx;
}

void
syncpush_stats(const struct syncpush *p, struct syncpush_stats *s)
{
	*s = p->stats;
}

const char *
syncpush_last_problem(const struct syncpush *p)
{
	return p->last_problem;
}

void
syncpush_forget(struct syncpush *p)
{
	cache_clear(&p->cache);
}

/* A local user database, kept open for a while (LRU of a few). */
static struct store_user *
local_user(struct syncpush *p, const char *name, struct err *err)
{
	size_t victim = 0;

	for (size_t i = 0; i < LOCAL_USERS; i++) {
		if (p->lus[i].u != NULL && str_eq(p->lus[i].name, name)) {
			p->lus[i].used = ++p->luse;
			return p->lus[i].u;
		}
		if (p->lus[i].used < p->lus[victim].used)
			victim = i;
	}
	store_user_close(&p->lus[victim].u);
	p->lus[victim].u = store_user_open(p->st, name, err);
	if (p->lus[victim].u == NULL)
		return NULL;
	str_lcpy(p->lus[victim].name, name, sizeof(p->lus[victim].name));
	p->lus[victim].used = ++p->luse;
	return p->lus[victim].u;
}

static void
local_user_forget(struct syncpush *p, const char *name)
{
	for (size_t i = 0; i < LOCAL_USERS; i++)
		if (p->lus[i].u != NULL && str_eq(p->lus[i].name, name)) {
			store_user_close(&p->lus[i].u);
			p->lus[i].used = 0;
		}
}

static void
set_fatal(struct syncpush *p, enum err_kind kind, const char *fmt, const char *msg)
{
	if (p->fatal)
		return;
	p->fatal = true;
	err_set(&p->fatal_err, kind, fmt, msg);
}

/* ------------------------------------------------------------------ */
/* Sending and reading                                                 */

static struct pcmd *
cmd_begin(struct syncpush *p, enum pk kind, struct syncproto_enc *e)
{
	struct pcmd *c;
	char tag[24];

	if (p->qlen == p->qcap) {
		/* grow the ring, unrolling it */
		size_t nc = p->qcap ? 2 * p->qcap : 256;
		struct pcmd *nq = xcalloc(nc, sizeof(*nq));
		for (size_t i = 0; i < p->qlen; i++)
			nq[i] = p->q[(p->qhead + i) % p->qcap];
		free(p->q);
		p->q = nq;
		p->qcap = nc;
		p->qhead = 0;
	}
	c = &p->q[(p->qhead + p->qlen) % p->qcap];
	p->qlen++;
	memset(c, 0, sizeof(*c));
	c->tag = p->next_tag++;
	c->kind = kind;
	snprintf(tag, sizeof(tag), "T%llu", (unsigned long long)c->tag);
	syncproto_enc_init(e, syncsess_out(p->sess), SYNCPROTO_ENC_LITERAL_PLUS);
	syncproto_enc_atom(e, tag);
	return c;
}

static int read_one(struct syncpush *p, struct err *err);

/* End a command's frame; keep the pipeline within its window. */
static int
cmd_end(struct syncpush *p, struct syncproto_enc *e, struct err *err)
{
	syncproto_enc_end(e);
	if (syncsess_out(p->sess)->len >= OUT_FLUSH && syncsess_flush(p->sess, err) < 0)
		return -1;
	while (p->qlen >= WINDOW)
		if (read_one(p, err) < 0)
			return -1;
	return 0;
}

static int
drain(struct syncpush *p, struct err *err)
{
	while (p->qlen > 0)
		if (read_one(p, err) < 0)
			return -1;
	return 0;
}

static void handle(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r,
	const struct syncproto_value *code);

static int
read_one(struct syncpush *p, struct err *err)
{
	struct syncproto_value *f = NULL;
	struct syncproto_response r;
	struct pcmd *c;
	char want[24];
	int rc;

	if (p->qlen == 0)
		return 0;
	if (syncsess_out(p->sess)->len > 0 && syncsess_flush(p->sess, err) < 0)
		return -1;
	c = &p->q[p->qhead];
	snprintf(want, sizeof(want), "T%llu", (unsigned long long)c->tag);
	for (;;) {
		rc = syncsess_read(p->sess, &f, err);
		if (rc == 0)
			return err_set(err, ERR_TEMP, "the replica closed the connection");
		if (rc < 0)
			return -1;
		if (syncproto_response_parse(f, &r, err) < 0) {
			syncproto_value_free(&f);
			err->kind = ERR_TEMP;
			err_prefix(err, "bad answer from the replica");
			return -1;
		}
		if (r.kind == SYNCPROTO_RESP_BYE) {
			err_set(err, r.code_kind == ERR_FENCED ? ERR_FENCED : ERR_TEMP,
				"the replica said BYE: %s", r.text ? r.text : "");
			syncproto_value_free(&f);
			return -1;
		}
		if (r.kind == SYNCPROTO_RESP_DATA || r.kind == SYNCPROTO_RESP_CONTINUE ||
		    r.tag == NULL) {
			if (r.kind == SYNCPROTO_RESP_CONTINUE) {
				syncproto_value_free(&f);
				continue;
			}
			if (p->nun == p->capun) {
				p->capun = p->capun ? 2 * p->capun : 64;
				p->un = xreallocarray(p->un, p->capun, sizeof(*p->un));
			}
			p->un[p->nun++] = f;
			f = NULL;
			continue;
		}
		if (!str_eq(r.tag, want)) {
			syncproto_value_free(&f);
			return err_set(err, ERR_TEMP, "answer out of order: %s for %s", r.tag, want);
		}
		break;
	}
	p->qhead = (p->qhead + 1) % p->qcap;
	p->qlen--;
	handle(p, c, &r, r.code);
	untagged_clear(p);
	syncproto_value_free(&f);
	return 0;
}

/* The n-th value of a code after its name, or NULL. */
static const struct syncproto_value *
code_arg(const struct syncproto_value *code, size_t n)
{
	if (code == NULL || code->n <= n)
		return NULL;
	return &code->items[n];
}

static bool
code_word(const struct syncproto_value *code, const char *w)
{
	const struct syncproto_value *v = code_arg(code, 1);

	return v != NULL && syncproto_get_cstr(v) != NULL && str_eq_ci(v->str, w);
}

/* OK [MAILBOX HIGHESTMODSEQ h UIDNEXT n CHECKSUM c] */
static bool
code_mailbox(const struct syncproto_value *code, uint64_t *hms, uint32_t *uidnext, uint32_t *crc)
{
	uint64_t h = 0, n = 0, c = 0;
	int got = 0;

	if (code == NULL || code->n < 7 || !syncproto_is_atom(&code->items[0], "MAILBOX"))
		return false;
	for (size_t i = 1; i + 1 < code->n; i += 2) {
		const struct syncproto_value *k = &code->items[i], *v = &code->items[i + 1];
		uint64_t x;
		if (syncproto_get_u64(v, &x) < 0)
			return false;
		if (syncproto_is_atom(k, "HIGHESTMODSEQ"))
			h = x, got |= 1;
		else if (syncproto_is_atom(k, "UIDNEXT"))
			n = x, got |= 2;
		else if (syncproto_is_atom(k, "CHECKSUM"))
			c = x, got |= 4;
	}
	if (got != 7 || n > UINT32_MAX || c > UINT32_MAX)
		return false;
	*hms = h;
	*uidnext = (uint32_t)n;
	*crc = (uint32_t)c;
	return true;
}

/* Set one user aside: the replica refused a change of this user alone
 * (the first reason counts).  Nothing more is sent for it in this run. */
static void
park_user(struct pu *u, const char *what, const char *text)
{
	u->parked = true;
	u->failed = true;
	u->retry = false;
	if (u->park_reason == NULL) {
		struct buf b = BUF_INIT;
		if (what != NULL)
			buf_printf(&b, "%s: ", what);
		buf_puts(&b, text != NULL && text[0] ? text : "refused");
		u->park_reason = buf_steal(&b);
	}
}

/* Does this refusal belong to one user (park it) rather than to the
 * session?  PERM (delete-limit, INBOX cannot be deleted, out of UIDs),
 * DAMAGED (a damaged user on the replica, answered NO [DAMAGED]), and
 * any answer whose code names "damaged" as its argument.  A plain CORRUPT (one body that does not match its GUID) is
 * counted as an error as before: it should not hold the user's other
 * mail back. */
static bool
user_refusal(const struct syncproto_response *r)
{
	return r->code_kind == ERR_PERM || r->code_kind == ERR_DAMAGED ||
		code_word(r->code, "damaged");
}

/* A refusal that ends the session (or the channel), or that parks the
 * user u (when a park hook is set; u is NULL for session commands).
 * true: handled, the caller stops looking at the answer. */
static bool
fatal_no(struct syncpush *p, struct pu *u, const struct syncproto_response *r, const char *what)
{
	enum err_kind k = r->code_kind;

	if (r->kind == SYNCPROTO_RESP_OK)
		return false;
	if (u != NULL && p->park_fn != NULL && k != ERR_FENCED && user_refusal(r)) {
		park_user(u, what, r->text);
		return true;
	}
	if (k == ERR_FENCED) {
		set_fatal(p, ERR_FENCED, "fenced by the replica: %s", r->text ? r->text : what);
		return true;
	}
	if (k == ERR_TEMP || k == ERR_NOSPACE || k == ERR_NONE) {
		set_fatal(p, ERR_TEMP, "replica: %s", r->text ? r->text : what);
		return true;
	}
	if (k == ERR_PERM) {
		set_fatal(p, ERR_PERM, "refused by the replica: %s", r->text ? r->text : what);
		return true;
	}
	return false;
}

static void
note_error(struct syncpush *p, const char *user, const char *what, const struct syncproto_response *r)
{
	p->stats.errors++;
	snprintf(p->last_problem, sizeof(p->last_problem), "%s user %s: %s", what, user,
		r->text ? r->text : "refused");
	log_error("sync refused what=%s user=%s error=%s", what, user, log_q(r->text ? r->text : ""));
}

/* ------------------------------------------------------------------ */
/* Parsing replica data                                                */

static int
parse_rmb(const struct syncproto_value *kv, struct rmb *m)
{
	const struct syncproto_value *v;
	const char *name = NULL, *su = NULL;
	uint64_t x;
	struct err err;

	memset(m, 0, sizeof(*m));
	if (syncproto_kv_check(kv, &err) < 0)
		return -1;
	v = syncproto_kv_get(kv, "UNIQUEID");
	if (v == NULL || !syncproto_is_hex(v, STORE_UNIQUEID_LEN) ||
	    syncproto_kv_cstr(kv, "NAME", &name, &err) != 1)
		return -1;
	str_lcpy(m->uniqueid, v->str, sizeof(m->uniqueid));
	if (syncproto_kv_u64(kv, "UIDVALIDITY", &x, &err) != 1 || x > UINT32_MAX)
		return -1;
	m->uidvalidity = (uint32_t)x;
	if (syncproto_kv_u64(kv, "UIDNEXT", &x, &err) != 1 || x > UINT32_MAX)
		return -1;
	m->uidnext = (uint32_t)x;
	if (syncproto_kv_u64(kv, "HIGHESTMODSEQ", &m->hms, &err) != 1)
		return -1;
	if (syncproto_kv_u64(kv, "CHECKSUM", &x, &err) != 1 || x > UINT32_MAX)
		return -1;
	m->crc = (uint32_t)x;
	(void)syncproto_kv_u64(kv, "MODSEQ", &m->modseq, &err);
	(void)syncproto_kv_u64(kv, "CREATEDMODSEQ", &m->createdmodseq, &err);
	(void)syncproto_kv_u64(kv, "DELETEDMODSEQ", &m->deletedmodseq, &err);
	if (syncproto_kv_cstr(kv, "SPECIALUSE", &su, &err) == 1)
		str_lcpy(m->specialuse, su, sizeof(m->specialuse));
	m->name = xstrdup(name);
	return 0;
}

static int
parse_quota(const struct syncproto_value *kv, const char *key, int64_t *q)
{
	const struct syncproto_value *v = syncproto_kv_get(kv, key);
	uint64_t x;

	*q = -1;
	if (v == NULL || v->type == SYNCPROTO_NIL)
		return 0;
	if (syncproto_get_u64(v, &x) < 0 || x > INT64_MAX)
		return -1;
	*q = (int64_t)x;
	return 0;
}

static struct ruser *
parse_ruser(struct syncpush *p)
{
	struct ruser *r = xcalloc(1, sizeof(*r));
	struct err err;

	r->exists = true;
	r->quota_bytes = r->quota_messages = -1;
	for (size_t i = 0; i < p->nun; i++) {
		struct syncproto_response d;
		const struct syncproto_value *kv;

		if (syncproto_response_parse(p->un[i], &d, &err) < 0 || d.kind != SYNCPROTO_RESP_DATA ||
		    d.nargs != 1)
			continue;
		kv = &d.args[0];
		if (str_eq_ci(d.data, "USER")) {
			const struct syncproto_value *v;
			if (syncproto_kv_check(kv, &err) < 0)
				goto bad;
			if (syncproto_kv_u64(kv, "HIGHESTMODSEQ", &r->modseq, &err) != 1 ||
			    parse_quota(kv, "QUOTA-BYTES", &r->quota_bytes) < 0 ||
			    parse_quota(kv, "QUOTA-MESSAGES", &r->quota_messages) < 0)
				goto bad;
			v = syncproto_kv_get(kv, "PASSWORD-SHA256");
			if (v != NULL && syncproto_get_cstr(v) != NULL)
				str_lcpy(r->pwsha, v->str, sizeof(r->pwsha));
		} else if (str_eq_ci(d.data, "MAILBOX")) {
			if (r->nmbs == r->capmbs) {
				r->capmbs = r->capmbs ? 2 * r->capmbs : 16;
				r->mbs = xreallocarray(r->mbs, r->capmbs, sizeof(*r->mbs));
			}
			if (parse_rmb(kv, &r->mbs[r->nmbs]) < 0)
				goto bad;
			r->nmbs++;
		} else if (str_eq_ci(d.data, "SUB")) {
			const char *name = NULL;
			uint64_t s = 0, m = 0;
			if (syncproto_kv_check(kv, &err) < 0 ||
			    syncproto_kv_cstr(kv, "NAME", &name, &err) != 1 ||
			    syncproto_kv_u64(kv, "SUBSCRIBED", &s, &err) != 1 ||
			    syncproto_kv_u64(kv, "MODSEQ", &m, &err) != 1)
				goto bad;
			if (r->nsubs == r->capsubs) {
				r->capsubs = r->capsubs ? 2 * r->capsubs : 16;
				r->subs = xreallocarray(r->subs, r->capsubs, sizeof(*r->subs));
			}
			r->subs[r->nsubs].name = xstrdup(name);
			r->subs[r->nsubs].subscribed = s == 1;
			r->subs[r->nsubs].modseq = m;
			r->nsubs++;
		}
	}
	return r;
bad:
	ruser_free(r);
	return NULL;
}

static int
parse_rrecord(const struct syncproto_value *kv, struct store_record *rec, struct buf *kw)
{
	const struct syncproto_value *g, *flags = NULL;
	uint64_t uid = 0;
	int64_t idate = 0;
	struct err err;

	memset(rec, 0, sizeof(*rec));
	if (syncproto_kv_check(kv, &err) < 0 ||
	    syncproto_kv_u64(kv, "UID", &uid, &err) != 1 || uid == 0 || uid > UINT32_MAX ||
	    syncproto_kv_u64(kv, "MODSEQ", &rec->modseq, &err) != 1)
		return -1;
	rec->uid = (uint32_t)uid;
	g = syncproto_kv_get(kv, "GUID");
	if (g == NULL || !syncproto_is_hex(g, STORE_GUID_LEN))
		return -1;
	str_lcpy(rec->guid, g->str, sizeof(rec->guid));
	if (syncproto_kv_u64(kv, "EXPUNGEDMODSEQ", &rec->expunged_modseq, &err) < 0 ||
	    syncproto_kv_u64(kv, "SIZE", &rec->size, &err) < 0 ||
	    syncproto_kv_i64(kv, "INTERNALDATE", &idate, &err) < 0 ||
	    syncproto_kv_list(kv, "FLAGS", &flags, &err) < 0)
		return -1;
	rec->internaldate = idate;
	buf_reset(kw);
	if (flags != NULL && syncapply_parse_flags(flags, &rec->sysflags, kw, &err) < 0)
		return -1;
	rec->keywords = buf_cstr(kw);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Answers                                                             */

static void
handle_get_user(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r)
{
	struct pu *u = c->u;

	if (r->kind == SYNCPROTO_RESP_OK) {
		u->r = parse_ruser(p);
		if (u->r == NULL) {
			set_fatal(p, ERR_TEMP, "bad GET USER answer for %s", u->name);
			return;
		}
		u->got_r = true;
		for (size_t i = 0; i < u->r->nmbs; i++)
			if (u->r->mbs[i].deletedmodseq == 0)
				cache_put(&p->cache, u->name, &u->r->mbs[i]);
			else
				cache_del(&p->cache, u->name, u->r->mbs[i].uniqueid);
		return;
	}
	if (r->code_kind == ERR_NOTFOUND) {
		u->r = xcalloc(1, sizeof(*u->r));
		u->r->exists = false;
		u->r->quota_bytes = u->r->quota_messages = -1;
		u->got_r = true;
		return;
	}
	if (!fatal_no(p, u, r, "GET USER"))
		note_error(p, u->name, "GET USER", r);
	u->failed = true;
}

static void
handle_get_records(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r)
{
	struct pm *m = &c->u->pms[c->mi];
	struct buf kw = BUF_INIT;
	struct err err;

	if (r->kind != SYNCPROTO_RESP_OK) {
		if (!fatal_no(p, c->u, r, "GET RECORDS")) {
			m->retry = true;
			c->u->retry = true;
		}
		m->act = PM_NONE;
		return;
	}
	if (!code_mailbox(r->code, &m->r_hms, &m->r_uidnext, &m->r_crc)) {
		set_fatal(p, ERR_TEMP, "bad GET RECORDS answer for %s", c->u->name);
		return;
	}
	for (size_t i = 0; i < p->nun; i++) {
		struct syncproto_response d;
		struct store_record rec;

		if (syncproto_response_parse(p->un[i], &d, &err) < 0 || d.kind != SYNCPROTO_RESP_DATA ||
		    !str_eq_ci(d.data, "RECORD") || d.nargs != 1)
			continue;
		if (parse_rrecord(&d.args[0], &rec, &kw) < 0) {
			set_fatal(p, ERR_TEMP, "bad RECORD from the replica for %s", c->u->name);
			break;
		}
		precs_add(&m->rrecs, &rec);
	}
	buf_free(&kw);
	m->got_rrecs = true;
}

static void
handle_reserve(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r)
{
	struct pu *u = c->u;
	struct err err;

	if (r->kind != SYNCPROTO_RESP_OK) {
		if (!fatal_no(p, u, r, "RESERVE"))
			note_error(p, u->name, "RESERVE", r);
		u->failed = true;
		return;
	}
	for (size_t i = 0; i < p->nun; i++) {
		struct syncproto_response d;

		if (syncproto_response_parse(p->un[i], &d, &err) < 0 || d.kind != SYNCPROTO_RESP_DATA ||
		    !str_eq_ci(d.data, "MISSING") || d.nargs != 1 || d.args[0].type != SYNCPROTO_LIST)
			continue;
		for (size_t k = 0; k < d.args[0].n; k++)
			if (syncproto_is_hex(&d.args[0].items[k], STORE_GUID_LEN))
				strv_add(&u->missing, d.args[0].items[k].str);
	}
}

static void
handle_apply_mailbox(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r)
{
	struct pu *u = c->u;
	struct pm *m = &u->pms[c->mi];

	if (m->failed)
		return;      /* the first refusal of a chain is the one that counts */
	if (r->kind == SYNCPROTO_RESP_OK) {
		if (c->last) {
			struct rmb nm;

			if (!code_mailbox(r->code, &m->ok_hms, &m->ok_uidnext, &m->ok_crc)) {
				set_fatal(p, ERR_TEMP, "bad APPLY MAILBOX answer for %s", u->name);
				return;
			}
			m->ok = true;
			memset(&nm, 0, sizeof(nm));
			str_lcpy(nm.uniqueid, m->id, sizeof(nm.uniqueid));
			nm.name = m->L.name;
			nm.uidvalidity = m->L.uidvalidity;
			nm.uidnext = m->ok_uidnext;
			nm.hms = m->ok_hms;
			nm.crc = m->ok_crc;
			nm.diverged = m->diverged;
			str_lcpy(nm.specialuse, m->L.specialuse, sizeof(nm.specialuse));
			cache_put(&p->cache, u->name, &nm);
			p->stats.mailboxes++;
		}
		return;
	}
	m->failed = true;
	u->failed = true;
	cache_del(&p->cache, u->name, m->id);
	if (fatal_no(p, u, r, "APPLY MAILBOX"))
		return;
	switch (r->code_kind) {
	case ERR_CONFLICT:
		if (code_word(r->code, "checksum") || code_word(r->code, "checksum-after") ||
		    code_word(r->code, "guid") || code_word(r->code, "state"))
			m->force_repair = true;
		m->retry = true;
		u->retry = true;
		log_info("replica state differs user=%s mailbox=%s answer=%s: comparing again",
			u->name, m->id, log_q(r->text ? r->text : ""));
		break;
	case ERR_EXISTS:
	case ERR_NOTFOUND:
		if (code_word(r->code, "guid"))
			m->force_repair = true;
		m->retry = true;
		u->retry = true;
		break;
	default:
		note_error(p, u->name, "APPLY MAILBOX", r);
		break;
	}
}

static void
handle_simple(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r,
	const char *what)
{
	struct pu *u = c->u;

	if (r->kind == SYNCPROTO_RESP_OK)
		return;
	u->failed = true;
	if (c->kind == PK_APPLY_RENAME || c->kind == PK_APPLY_DELETE) {
		u->pms[c->mi].failed = true;
		cache_del(&p->cache, u->name, u->pms[c->mi].id);
	}
	if (fatal_no(p, u, r, what))
		return;
	if (r->code_kind == ERR_CONFLICT || r->code_kind == ERR_EXISTS ||
	    r->code_kind == ERR_NOTFOUND) {
		u->retry = true;
		return;
	}
	note_error(p, u->name, what, r);
}

static void
handle(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r,
	const struct syncproto_value *code)
{
	(void)code;
	switch (c->kind) {
	case PK_GET_USER:
		handle_get_user(p, c, r);
		break;
	case PK_GET_RECORDS:
		handle_get_records(p, c, r);
		break;
	case PK_RESERVE:
		handle_reserve(p, c, r);
		break;
	case PK_UPLOAD:
		if (r->kind != SYNCPROTO_RESP_OK) {
			c->u->failed = true;
			if (r->code_kind == ERR_CONFLICT) {
				/* rolled back with a refused APPLY: again next round */
				c->u->retry = true;
			} else if (!fatal_no(p, c->u, r, "UPLOAD")) {
				note_error(p, c->u->name, "UPLOAD", r);
			}
		}
		break;
	case PK_APPLY_MAILBOX:
		handle_apply_mailbox(p, c, r);
		break;
	case PK_APPLY_RENAME:
		if (r->kind == SYNCPROTO_RESP_OK)
			p->stats.renames++;
		handle_simple(p, c, r, "APPLY RENAME");
		break;
	case PK_APPLY_DELETE:
		if (r->kind == SYNCPROTO_RESP_OK) {
			p->stats.deletes++;
			cache_del(&p->cache, c->u->name, c->u->pms[c->mi].id);
		}
		handle_simple(p, c, r, "APPLY DELETE");
		break;
	case PK_APPLY_SUB:
		handle_simple(p, c, r, "APPLY SUB");
		break;
	case PK_APPLY_USER:
		handle_simple(p, c, r, "APPLY USER");
		break;
	case PK_APPLY_UNUSER:
		if (r->kind == SYNCPROTO_RESP_OK)
			cache_forget_user(&p->cache, c->u->name);
		handle_simple(p, c, r, "APPLY UNUSER");
		break;
	case PK_APPLY_PASSWORD:
		handle_simple(p, c, r, "APPLY PASSWORD");
		break;
	case PK_GET_USERS:
		if (r->kind == SYNCPROTO_RESP_OK) {
			struct err err;
			for (size_t i = 0; i < p->nun; i++) {
				struct syncproto_response d;
				const char *name = NULL;
				uint64_t ms = 0, dg = 0;
				if (syncproto_response_parse(p->un[i], &d, &err) < 0 ||
				    d.kind != SYNCPROTO_RESP_DATA || !str_eq_ci(d.data, "USER") ||
				    d.nargs != 1 || syncproto_kv_check(&d.args[0], &err) < 0 ||
				    syncproto_kv_cstr(&d.args[0], "NAME", &name, &err) != 1 ||
				    syncproto_kv_u64(&d.args[0], "HIGHESTMODSEQ", &ms, &err) != 1)
					continue;
				if (p->au_names.n == p->au_cap) {
					p->au_cap = p->au_cap ? 2 * p->au_cap : 256;
					p->au_modseq = xreallocarray(p->au_modseq, p->au_cap, sizeof(uint64_t));
					p->au_digest = xreallocarray(p->au_digest, p->au_cap, sizeof(int64_t));
				}
				p->au_modseq[p->au_names.n] = ms;
				p->au_digest[p->au_names.n] =
					syncproto_kv_u64(&d.args[0], "DIGEST", &dg, &err) == 1 && dg <= UINT32_MAX ?
					(int64_t)dg : -1;
				strv_add(&p->au_names, name);
			}
		} else if (!fatal_no(p, NULL, r, "GET USERS")) {
			set_fatal(p, ERR_TEMP, "GET USERS refused: %s", r->text ? r->text : "");
		}
		break;
	case PK_NOOP:
	case PK_LOGOUT:
	case PK_LOGIN:
		if (r->kind != SYNCPROTO_RESP_OK && c->kind == PK_NOOP)
			(void)fatal_no(p, NULL, r, "NOOP");
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Login                                                               */

/* Read one frame that must be a response; 0, or -1. */
static int
read_resp(struct syncpush *p, struct syncproto_value **f, struct syncproto_response *r,
	struct err *err)
{
	return syncsess_read_response(p->sess, "the replica", f, r, err);
}

/* Send a one-line command and wait for its tagged answer; untagged data
 * goes to on_data.  1 OK, 0 NO/BAD (*r holds it, valid until *f freed). */
static int
simple_cmd(struct syncpush *p, const char *line, struct syncproto_value **f,
	struct syncproto_response *r, struct syncproto_value **data, struct err *err)
{
	char tag[24];

	snprintf(tag, sizeof(tag), "L%llu", (unsigned long long)p->next_tag++);
	buf_printf(syncsess_out(p->sess), "%s %s\r\n", tag, line);
	if (data != NULL)
		*data = NULL;
	for (;;) {
		if (read_resp(p, f, r, err) < 0)
			return -1;
		if (r->tag != NULL && str_eq(r->tag, tag))
			return r->kind == SYNCPROTO_RESP_OK ? 1 : 0;
		if (data != NULL && *data == NULL && r->kind == SYNCPROTO_RESP_DATA) {
			*data = *f;
			*f = NULL;
			continue;
		}
		syncproto_value_free(f);
	}
}

struct greeting {
	bool starttls, plain, zstd, v1;
};

static int
read_greeting(struct syncpush *p, struct greeting *g, struct err *err)
{
	struct syncproto_value *f = NULL;
	struct syncproto_response r;
	const struct syncproto_value *caps;

	memset(g, 0, sizeof(*g));
	if (read_resp(p, &f, &r, err) < 0)
		return -1;
	if (r.kind != SYNCPROTO_RESP_OK || r.tag != NULL || r.code == NULL || r.code->n < 2 ||
	    !syncproto_is_atom(&r.code->items[0], "CASTOR-SYNC") ||
	    r.code->items[1].type != SYNCPROTO_LIST) {
		syncproto_value_free(&f);
		return err_set(err, ERR_TEMP, "not a Castor sync server");
	}
	caps = &r.code->items[1];
	for (size_t i = 0; i + 1 < caps->n; i += 2) {
		const struct syncproto_value *k = &caps->items[i], *v = &caps->items[i + 1];
		if (syncproto_is_atom(k, "STARTTLS")) {
			uint64_t x = 0;
			g->starttls = syncproto_get_u64(v, &x) == 0 && x == 1;
		} else if (v->type == SYNCPROTO_LIST) {
			for (size_t j = 0; j < v->n; j++) {
				if (syncproto_is_atom(k, "AUTH") && syncproto_is_atom(&v->items[j], "PLAIN"))
					g->plain = true;
				if (syncproto_is_atom(k, "COMPRESS") && syncproto_is_atom(&v->items[j], "ZSTD"))
					g->zstd = true;
				if (syncproto_is_atom(k, "VERSIONS")) {
					uint64_t x = 0;
					if (syncproto_get_u64(&v->items[j], &x) == 0 && x == SYNCPROTO_VERSION)
						g->v1 = true;
				}
			}
		}
	}
	syncproto_value_free(&f);
	if (!g->v1)
		return err_set(err, ERR_PERM, "the replica does not speak sync protocol version %d",
			SYNCPROTO_VERSION);
	return 0;
}

int
syncpush_login(struct syncpush *p, const struct syncpush_login *l, struct err *err)
{
	struct syncproto_value *f = NULL, *data = NULL;
	struct syncproto_response r;
	struct greeting g;
	struct buf b = BUF_INIT;
	const char *role;
	uint64_t epoch;
	int rc;

	if (store_server_get(p->st, &role, &epoch, err) < 0)
		return -1;
	if (!str_eq(role, "master"))
		return err_set(err, ERR_FENCED, "this server is a %s, not a master: nothing to push",
			role);
	p->allow_deletes = l->allow_deletes;
	if (read_greeting(p, &g, err) < 0)
		return -1;
	if (l->tls) {
		if (!g.starttls)
			return err_set(err, ERR_PERM, "the replica offers no STARTTLS (set %s_sync_tls: no on loopback)",
				l->channel ? l->channel : "CHAN");
		rc = simple_cmd(p, "STARTTLS", &f, &r, NULL, err);
		syncproto_value_free(&f);
		if (rc < 0)
			return -1;
		if (rc == 0)
			return err_set(err, ERR_PERM, "the replica refused STARTTLS");
		if (conn_starttls(syncsess_conn(p->sess), l->tls_ctx, l->host, err) < 0) {
			if (err->kind == ERR_INVALID)
				err->kind = ERR_PERM;
			return -1;
		}
		if (read_greeting(p, &g, err) < 0)
			return -1;
	}
	if (!g.plain)
		return err_set(err, ERR_PERM, "the replica offers no authentication on this connection"
			" (TLS needed off loopback)");
	if (l->password == NULL)
		return err_set(err, ERR_PERM, "no sync password configured for channel %s",
			l->channel ? l->channel : "?");
	buf_puts(&b, "AUTHENTICATE PLAIN ");
	sasl_plain_encode(&b, NULL, l->authname, l->password);
	rc = simple_cmd(p, buf_cstr(&b), &f, &r, NULL, err);
	memset(b.data, 0, b.len);
	buf_free(&b);
	if (rc == 0) {
		syncproto_value_free(&f);
		return err_set(err, ERR_PERM, "the replica refused the sync credentials (authname %s)",
			l->authname);
	}
	syncproto_value_free(&f);
	if (rc < 0)
		return -1;
	if (l->compress && g.zstd) {
		rc = simple_cmd(p, "COMPRESS ZSTD", &f, &r, NULL, err);
		syncproto_value_free(&f);
		if (rc < 0)
			return -1;
		if (rc == 1 && syncsess_compress_start(p->sess, ZSTD_LEVEL, err) < 0)
			return -1;
	}
	{
		struct syncproto_enc e;
		buf_reset(&b);
		syncproto_enc_init(&e, &b, 0);
		syncproto_enc_atom(&e, "HELLO");
		syncproto_enc_open(&e, '(');
		syncproto_enc_key_u64(&e, "VERSION", SYNCPROTO_VERSION);
		syncproto_enc_atom(&e, "ROLE");
		syncproto_enc_atom(&e, "master");
		syncproto_enc_key_u64(&e, "EPOCH", epoch);
		syncproto_enc_key_string(&e, "SERVERID", l->servername ? l->servername : "castor");
		if (l->channel != NULL)
			syncproto_enc_key_string(&e, "CHANNEL", l->channel);
		if (l->allow_deletes)
			syncproto_enc_key_u64(&e, "ALLOW-DELETES", 1);
		syncproto_enc_close(&e);
	}
	rc = simple_cmd(p, buf_cstr(&b), &f, &r, &data, err);
	buf_free(&b);
	if (rc == 0) {
		if (r.code_kind == ERR_FENCED)
			err_set(err, ERR_FENCED, "the replica fenced us (epoch %llu): %s",
				(unsigned long long)epoch, r.text ? r.text : "");
		else
			err_set(err, ERR_PERM, "HELLO refused: %s", r.text ? r.text : "");
		syncproto_value_free(&f);
		syncproto_value_free(&data);
		return -1;
	}
	syncproto_value_free(&f);
	if (rc < 0) {
		syncproto_value_free(&data);
		return -1;
	}
	if (data != NULL) {
		struct syncproto_response d;
		const char *rrole = NULL;
		bool parsed = syncproto_response_parse(data, &d, err) == 0;
		if (parsed && d.nargs == 1 &&
		    syncproto_kv_cstr(&d.args[0], "ROLE", &rrole, err) == 1 && !str_eq(rrole, "replica")) {
			err_set(err, ERR_FENCED, "the peer is a %s, not a replica", rrole);
			syncproto_value_free(&data);
			return -1;
		}
		if (parsed && d.nargs == 1 &&
		    syncproto_kv_u64(&d.args[0], "EPOCH", &p->peer_epoch, err) != 1)
			p->peer_epoch = 0;
		if (parsed && d.nargs == 1 &&
		    syncproto_kv_u64(&d.args[0], "LOCALGEN", &p->peer_local_gen, err) != 1)
			p->peer_local_gen = 0;
	}
	syncproto_value_free(&data);
	return 0;
}

int
syncpush_noop(struct syncpush *p, struct err *err)
{
	struct syncproto_enc e;

	cmd_begin(p, PK_NOOP, &e);
	syncproto_enc_atom(&e, "NOOP");
	if (cmd_end(p, &e, err) < 0 || drain(p, err) < 0)
		return -1;
	if (p->fatal) {
		*err = p->fatal_err;
		p->fatal = false;
		return -1;
	}
	return 0;
}

void
syncpush_logout(struct syncpush *p)
{
	struct syncproto_enc e;
	struct err err;

	if (p->fatal)
		return;
	cmd_begin(p, PK_LOGOUT, &e);
	syncproto_enc_atom(&e, "LOGOUT");
	if (cmd_end(p, &e, &err) == 0)
		(void)drain(p, &err);
}

/* ------------------------------------------------------------------ */
/* Reading local state                                                 */

struct lrec_ctx {
	struct precs *out;
	uint32_t maxuid;
	uint64_t maxmodseq;
};

static int
lrec_cb(void *ctx, const struct store_record *r)
{
	struct lrec_ctx *c = ctx;

	precs_add(c->out, r);
	if (r->uid > c->maxuid)
		c->maxuid = r->uid;
	if (r->modseq > c->maxmodseq)
		c->maxmodseq = r->modseq;
	if (r->expunged_modseq > c->maxmodseq)
		c->maxmodseq = r->expunged_modseq;
	return 0;
}

/* Read a mailbox row and its records since `since` consistently (RULES 3).
 * 1 consistent, 0 the row moved (L is the first reading), -1 error. */
static int
read_local(struct store_user *lu, const char *id, uint64_t since, struct store_mailbox *L,
	struct precs *recs, uint32_t *maxuid, uint64_t *maxmodseq, struct err *err)
{
	struct store_mailbox L2;

	for (int attempt = 0; attempt < 3; attempt++) {
		struct lrec_ctx c = { recs, 0, 0 };

		precs_free(recs);
		if (store_mailbox_get_id(lu, id, true, L, err) < 0)
			return -1;
		if (store_records_since(lu, id, since, lrec_cb, &c, err) < 0)
			return -1;
		*maxuid = c.maxuid;
		*maxmodseq = c.maxmodseq;
		if (store_mailbox_get_id(lu, id, true, &L2, err) < 0)
			return -1;
		if (L2.highestmodseq == L->highestmodseq && L2.sync_crc == L->sync_crc)
			return 1;
	}
	return 0;
}

struct lmb_ctx {
	struct strv *ids;
};

static int
lmb_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct lmb_ctx *c = ctx;

	(void)name;
	(void)attrs;
	if (mb != NULL)
		strv_add_uniq(c->ids, mb->uniqueid);
	return 0;
}

struct lsub {
	char *name;
	bool subscribed;
	uint64_t modseq;
};

struct lsub_ctx {
	struct lsub *v;
	size_t n, cap;
};

static int
lsub_cb(void *ctx, const struct store_change *ch)
{
	struct lsub_ctx *c = ctx;

	if (ch->item != STORE_ITEM_SUB)
		return 0;
	for (size_t i = 0; i < c->n; i++)
		if (str_eq(c->v[i].name, ch->sub_name)) {
			c->v[i].subscribed = ch->subscribed;
			c->v[i].modseq = ch->modseq;
			return 0;
		}
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 16;
		c->v = xreallocarray(c->v, c->cap, sizeof(*c->v));
	}
	c->v[c->n].name = xstrdup(ch->sub_name);
	c->v[c->n].subscribed = ch->subscribed;
	c->v[c->n].modseq = ch->modseq;
	c->n++;
	return 0;
}

static void
password_sha256(const char *hash, char *hex)
{
	unsigned char md[32];
	unsigned int n = 0;

	EVP_Digest(hash, strlen(hash), md, &n, EVP_sha256(), NULL);
	str_hex(md, n, hex);
}

/* ------------------------------------------------------------------ */
/* Planning                                                            */

static enum syncpush_resolution
report(struct syncpush *p, struct pu *u, enum syncpush_conflict_kind k, const struct pm *m,
	const char *name, uint32_t uid, const char *mg, const char *rg, uint64_t mm, uint64_t rm)
{
	struct syncpush_conflict c;
	enum syncpush_resolution res;

	memset(&c, 0, sizeof(c));
	c.kind = k;
	c.user = u->name;
	c.mailbox_id = m != NULL ? m->id : NULL;
	c.mailbox_name = name;
	c.uid = uid;
	c.master_guid = mg;
	c.replica_guid = rg;
	c.master_modseq = mm;
	c.replica_modseq = rm;
	res = conflict(p, &c);
	if (res != SYNCPUSH_R_RENUMBER && res != SYNCPUSH_R_REPLACE)
		u->conflicted = true;
	return res;
}

static bool
resolves(enum syncpush_resolution r)
{
	return r == SYNCPUSH_R_RENUMBER || r == SYNCPUSH_R_REPLACE;
}

/* Records to send for an update from the replica's state R (NULL: create). */
static void
select_records(struct pm *m, const struct precs *all, uint32_t r_uidnext, bool create)
{
	for (size_t i = 0; i < all->n; i++) {
		const struct store_record *r = &all->v[i].r;
		if (r->expunged_modseq != 0 && (create || r->uid >= r_uidnext))
			continue;   /* the replica never had it: nothing to expunge */
		precs_add(&m->recs, r);
		/* A new small body is sent without a RESERVE round trip
		 * (uploading one the replica has is harmless, the round trip
		 * is not); big ones are asked about first. */
		if (r->expunged_modseq == 0 && (create || r->uid >= r_uidnext))
			strv_add(r->size <= RESERVE_SKIP_MAX ? &m->push : &m->guids, r->guid);
	}
}

/* Plan one mailbox.  R is the replica's state (NULL absent).  Returns
 * false when the user must be planned again with every mailbox (a name
 * this plan needs is held by a mailbox outside it). */
static int
plan_mailbox(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	struct err *err)
{
	struct precs all = { 0 };
	uint32_t maxuid = 0;
	uint64_t maxms = 0;
	struct rmb *R = m->R;
	int rc;
	bool repair = strv_has(&u->force_repair, m->id);

	rc = store_mailbox_get_id(lu, m->id, true, &m->L, err);
	if (rc < 0 && err->kind != ERR_NOTFOUND)
		return -1;
	if (rc < 0) {
		/* nothing here, not even a tombstone */
		if (R != NULL && R->deletedmodseq == 0 && (u->flags & PU_FULL))
			report(p, u, SYNCPUSH_C_REPLICA_MAILBOX, m, R->name, 0, NULL, NULL, 0, R->hms);
		m->act = PM_NONE;
		return 0;
	}
	if (m->L.deleted_modseq != 0) {
		if (R == NULL || R->deletedmodseq != 0) {
			m->act = PM_NONE;
			return 0;
		}
		if (R->uidnext > m->L.uidnext) {
			/* mail arrived on the replica after our last UID: issue 8 case 7 */
			report(p, u, SYNCPUSH_C_UID_ABOVE, m, R->name, R->uidnext - 1, NULL, NULL,
				m->L.deleted_modseq, R->hms);
			m->act = PM_NONE;
			return 0;
		}
		m->act = PM_DELETE;
		m->oldname = xstrdup(R->name);
		return 0;
	}
	/* live here */
	if (R != NULL && R->deletedmodseq != 0 && m->L.modseq > R->deletedmodseq &&
	    m->L.uidvalidity == R->uidvalidity && m->L.createdmodseq <= R->deletedmodseq) {
		/* undeleted here after the deletion the replica holds: send it
		 * whole, as a creation over the tombstone (APPLY MAILBOX UNDELETE 1) */
		m->undelete = true;
		m->R = R = NULL;
	}
	if (R != NULL && R->deletedmodseq != 0) {
		report(p, u, SYNCPUSH_C_DELETED_REPLICA, m, m->L.name, 0, NULL, NULL,
			m->L.highestmodseq, R->deletedmodseq);
		m->act = PM_NONE;
		return 0;
	}
	if (R == NULL) {
		struct rmb *h = u->r != NULL ? ruser_find_name(u->r, m->L.name) : NULL;
		if (h != NULL && !(str_eq(h->name, "INBOX") && h->uidnext == 1)) {
			/* the holder may be on its way out (renamed or deleted here) */
			struct store_mailbox hl;
			struct err e2;
			bool leaving = store_mailbox_get_id(lu, h->uniqueid, true, &hl, &e2) == 0 &&
				(hl.deleted_modseq != 0 || !str_eq(hl.name, h->name));
			if (!leaving) {
				report(p, u, SYNCPUSH_C_NAME_CLASH, m, m->L.name, 0, NULL, NULL,
					m->L.highestmodseq, h->hms);
				m->act = PM_NONE;
				return 0;
			}
			if (!(u->flags & PU_FULL))
				return 1;   /* plan the holder too */
		}
		rc = read_local(lu, m->id, 0, &m->L, &all, &maxuid, &maxms, err);
		if (rc < 0)
			goto fail;
		m->create = true;
		m->since_modseq = 0;
		select_records(m, &all, 0, true);
		m->send_crc = rc == 1;
		m->hms = m->L.highestmodseq > maxms ? m->L.highestmodseq : maxms;
		m->uidnext = m->L.uidnext > maxuid ? m->L.uidnext : maxuid + 1;
		m->act = PM_UPDATE;
		precs_free(&all);
		return 0;
	}
	/* live on both sides */
	if (R->uidvalidity != m->L.uidvalidity) {
		m->reset_res = report(p, u, SYNCPUSH_C_UIDVALIDITY, m, m->L.name, 0, NULL, NULL,
			m->L.uidvalidity, R->uidvalidity);
		if (!resolves(m->reset_res)) {
			m->act = PM_NONE;
			return 0;
		}
		/* ours wins: the replica's messages we lack come here first
		 * (renumber), then the replica's copy is recreated as ours */
		m->reset = true;
		if (!str_eq(R->name, m->L.name))
			m->oldname = xstrdup(R->name);
		m->act = PM_REPAIR;
		return 0;
	}
	if (R->uidnext > m->L.uidnext) {
		if (!resolves(report(p, u, SYNCPUSH_C_UID_ABOVE, m, m->L.name, R->uidnext - 1, NULL,
			NULL, m->L.uidnext, R->uidnext))) {
			m->act = PM_NONE;
			return 0;
		}
		repair = true;   /* record by record, under the policy */
	} else if (R->hms > m->L.highestmodseq) {
		if (!resolves(report(p, u, SYNCPUSH_C_MODSEQ_AHEAD, m, m->L.name, 0, NULL, NULL,
			m->L.highestmodseq, R->hms))) {
			m->act = PM_NONE;
			return 0;
		}
		repair = true;
	}
	if (!str_eq(R->name, m->L.name)) {
		struct rmb *h = u->r != NULL ? ruser_find_name(u->r, m->L.name) : NULL;
		if (h != NULL && !str_eq(h->uniqueid, m->id)) {
			struct store_mailbox hl;
			struct err e2;
			bool leaving = store_mailbox_get_id(lu, h->uniqueid, true, &hl, &e2) == 0 &&
				(hl.deleted_modseq != 0 || !str_eq(hl.name, h->name));
			if (!leaving) {
				report(p, u, SYNCPUSH_C_NAME_CLASH, m, m->L.name, 0, NULL, NULL,
					m->L.highestmodseq, h->hms);
				m->act = PM_NONE;
				return 0;
			}
			if (!(u->flags & PU_FULL))
				return 1;
		}
		m->oldname = xstrdup(R->name);
	}
	m->since_modseq = R->hms;
	m->since_crc = R->crc;
	m->diverged = R->diverged;
	if (repair || (R->hms == m->L.highestmodseq && R->crc != m->L.sync_crc)) {
		m->act = PM_REPAIR;
		return 0;
	}
	if (R->hms == m->L.highestmodseq && m->oldname == NULL &&
	    str_eq(R->specialuse, m->L.specialuse)) {
		m->act = PM_NONE;   /* in sync */
		return 0;
	}
	rc = read_local(lu, m->id, R->hms, &m->L, &all, &maxuid, &maxms, err);
	if (rc < 0)
		goto fail;
	select_records(m, &all, R->uidnext, false);
	m->send_crc = rc == 1 && !m->diverged;
	m->hms = m->L.highestmodseq > maxms ? m->L.highestmodseq : maxms;
	if (m->hms < R->hms)
		m->hms = R->hms;
	m->uidnext = m->L.uidnext > maxuid ? m->L.uidnext : maxuid + 1;
	if (m->uidnext < R->uidnext)
		m->uidnext = R->uidnext;
	m->act = PM_UPDATE;
	precs_free(&all);
	return 0;
fail:
	precs_free(&all);
	return -1;
}

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

static int restore_blob(struct syncpush *p, struct store_user *lu, const char *user,
	const char *guid, struct err *err);

/* Renumber/replace: bring the replica's messages in here (FX_ADOPT,
 * FX_IMPORT) and raise this mailbox above everything the replica has
 * used (UIDNEXT, HIGHESTMODSEQ), in one local transaction.  *tomb_r
 * gets the modseq the replica's expunges will carry.  0 or -1. */
static int resolve_apply(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	const enum rfix *fx, const struct precs *fl, struct err *err);

/* A writable handle on user's database: lu itself, or (sync-client
 * reads through a read-only store) one of its own in *wst_r.  The split-
 * brain resolutions are the only writes the master's sync side makes. */
static struct store_user *
wuser_open(struct syncpush *p, const char *user, struct store_user *lu, struct store **wst_r,
	struct err *err)
{
	struct store_user *wu;

	*wst_r = NULL;
	if (!store_is_read_only(p->st))
		return lu;
	if ((*wst_r = store_open(store_root(p->st), NULL, err)) == NULL)
		return NULL;
	if ((wu = store_user_open(*wst_r, user, err)) == NULL)
		store_close(wst_r);
	return wu;
}

/* Close what wuser_open opened; on success tell every channel to look
 * again (the change is not in the sync log: no hook on this handle). */
static void
wuser_close(struct syncpush *p, struct store **wst, struct store_user **wu, bool changed)
{
	struct buf mp = BUF_INIT;
	struct err e2;

	if (*wst != NULL) {
		store_user_close(wu);
		store_close(wst);
	}
	*wu = NULL;
	if (!changed)
		return;
	buf_printf(&mp, "%s/run/sync-append-failed", store_root(p->st));
	if (atomicfile_write(buf_cstr(&mp), "split-brain\n", 12, 0640, &e2) < 0)
		log_warn("cannot touch marker path=%s error=%s", log_q(buf_cstr(&mp)), log_q(e2.msg));
	buf_free(&mp);
}

static int
resolve_local(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	const enum rfix *fx, const struct precs *fl, struct err *err)
{
	struct store *wst;
	struct store_user *wu;
	int rc;

	if ((wu = wuser_open(p, u->name, lu, &wst, err)) == NULL)
		return -1;
	rc = resolve_apply(p, u, wu, m, fx, fl, err);
	wuser_close(p, &wst, &wu, rc == 0);
	return rc;
}

static int
resolve_apply(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	const enum rfix *fx, const struct precs *fl, struct err *err)
{
	struct store_mailbox L;
	uint64_t cnt = 0, next;
	uint32_t uidnext, rmax = 0;
	int x;

	/* the bodies first: GET BLOB for those we lack (each stored durably) */
	for (size_t k = 0; k < m->rrecs.n; k++) {
		const struct store_record *r = &m->rrecs.v[k].r;
		if (r->uid > rmax)
			rmax = r->uid;
		if (fx[k] != FX_ADOPT && fx[k] != FX_IMPORT)
			continue;
		if ((x = store_blob_exists(lu, r->guid, err)) < 0)
			return -1;
		if (x == 0 && restore_blob(p, lu, u->name, r->guid, err) < 0)
			return -1;
	}
	if (store_txn_begin(lu, err) < 0)
		return -1;
	if (store_user_modseq(lu, &cnt, err) < 0 || store_mailbox_get_id(lu, m->id, true, &L, err) < 0)
		goto fail;
	if (L.deleted_modseq != 0) {
		err_set(err, ERR_CONFLICT, "mailbox %s was deleted meanwhile", m->id);
		goto fail;
	}
	if (cnt < L.highestmodseq)
		cnt = L.highestmodseq;
	if (cnt < m->r_hms)
		cnt = m->r_hms;
	/* one modseq for the mailbox row (and the replica's expunges), one
	 * for each message brought in */
	L.highestmodseq = cnt + 1;
	if (L.uidnext < m->r_uidnext)
		L.uidnext = m->r_uidnext;
	if (L.uidnext <= rmax)
		L.uidnext = rmax + 1;
	if (store_repl_mailbox(lu, &L, err) < 0)
		goto fail;
	next = cnt + 2;
	uidnext = L.uidnext;
	for (size_t k = 0; k < m->rrecs.n; k++) {
		struct store_record r = m->rrecs.v[k].r;
		uint32_t from = r.uid;
		if (fx[k] != FX_ADOPT && fx[k] != FX_IMPORT)
			continue;
		if (fx[k] == FX_IMPORT)
			r.uid = uidnext++;
		r.modseq = next++;
		r.expunged_modseq = 0;
		if (store_repl_record(lu, m->id, &r, err) < 0)
			goto fail;
		p->stats.renumbered++;
		log_warn("sync conflict resolved policy=renumber user=%s mailbox=%s name=%s"
			" replica_uid=%u uid=%u guid=%s action=%s", u->name, m->id, log_q(L.name), from,
			r.uid, r.guid, fx[k] == FX_IMPORT ? "fresh-uid" : "same-uid");
	}
	for (size_t f = 0; f < fl->n; f++) {
		struct store_record r = fl->v[f].r;
		r.modseq = next++;
		if (store_repl_record(lu, m->id, &r, err) < 0)
			goto fail;
		log_warn("sync conflict resolved policy=merge user=%s mailbox=%s name=%s uid=%u"
			" guid=%s modseq=%llu action=flags-merged", u->name, m->id, log_q(L.name), r.uid,
			r.guid, (unsigned long long)r.modseq);
	}
	if (store_txn_commit(lu, err) < 0)
		return -1;
	return 0;
fail:
	store_txn_rollback(lu);
	return -1;
}

/* Case 4 (plan_mailbox set m->reset): the replica's live messages whose
 * GUID is not live here are appended here under fresh UIDs (renumber)
 * or left to the replica's quarantine (replace); then every live record
 * of ours is sent as for a creation with RESET 1.  Frees *all. */
static int
plan_reset(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	struct precs *all, uint32_t maxuid, uint64_t maxms, int rc, struct err *err)
{
	enum rfix *fx = xcalloc(m->rrecs.n + 1, sizeof(*fx));
	struct precs none = { 0 };
	bool local = false;

	for (size_t k = 0; k < m->rrecs.n; k++) {
		const struct store_record *r = &m->rrecs.v[k].r;
		bool here = false;
		if (r->expunged_modseq != 0)
			continue;
		for (size_t i = 0; i < all->n && !here; i++)
			here = all->v[i].r.expunged_modseq == 0 && str_eq(all->v[i].r.guid, r->guid);
		if (here)
			continue;
		if (m->reset_res == SYNCPUSH_R_RENUMBER) {
			fx[k] = FX_IMPORT;
			local = true;
		} else {
			p->stats.replaced++;
			log_warn("sync conflict resolved policy=replace user=%s mailbox=%s name=%s"
				" replica_uid=%u replica_guid=%s action=quarantine (uidvalidity)", u->name,
				m->id, log_q(m->L.name), r->uid, r->guid);
		}
	}
	if (local) {
		if (resolve_local(p, u, lu, m, fx, &none, err) < 0 ||
		    (rc = read_local(lu, m->id, 0, &m->L, all, &maxuid, &maxms, err)) < 0) {
			free(fx);
			precs_free(all);
			return -1;
		}
	}
	free(fx);
	for (size_t i = 0; i < all->n; i++) {
		const struct store_record *l = &all->v[i].r;
		if (l->expunged_modseq != 0)
			continue;
		precs_add(&m->recs, l);
		strv_add(&m->guids, l->guid);
	}
	precs_free(all);
	m->create = true;
	m->since_modseq = 0;
	m->diverged = false;
	m->send_crc = rc == 1;
	m->hms = m->L.highestmodseq > maxms ? m->L.highestmodseq : maxms;
	m->uidnext = m->L.uidnext > maxuid ? m->L.uidnext : maxuid + 1;
	m->act = PM_UPDATE;
	log_warn("sync conflict resolved policy=%s user=%s mailbox=%s name=%s uidvalidity=%u"
		" action=reset-there", syncconflict_action_name(m->reset_res), u->name, m->id,
		log_q(m->L.name), m->L.uidvalidity);
	p->stats.mailboxes_resolved++;
	return 0;
}

/* After GET RECORDS: compare record by record and fill the update.
 * Under renumber/replace (the conflict hook decides per record), the
 * conflicts are resolved first (resolve_local), then compared again:
 * the update then makes the replica an exact copy of this mailbox. */
static int
plan_repair(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	struct err *err)
{
	struct precs all = { 0 };
	uint32_t maxuid = 0;
	uint64_t maxms = 0, tomb = 0, base = 0;
	size_t i = 0, k = 0;
	bool left = false, local = false;
	enum rfix *fx = NULL;
	struct precs fl = { 0 };
	struct buf kwb = BUF_INIT;
	enum syncpush_resolution res;
	int rc;

	p->stats.repairs++;
	rc = read_local(lu, m->id, 0, &m->L, &all, &maxuid, &maxms, err);
	if (rc < 0)
		return -1;
	if (m->reset)
		return plan_reset(p, u, lu, m, &all, maxuid, maxms, rc, err);
	if (m->r_hms > m->L.highestmodseq) {
		res = report(p, u, SYNCPUSH_C_MODSEQ_AHEAD, m, m->L.name, 0, NULL, NULL,
			m->L.highestmodseq, m->r_hms);
		if (!resolves(res)) {
			m->act = PM_NONE;
			precs_free(&all);
			return 0;
		}
		local = true;
	}
	fx = xcalloc(m->rrecs.n + 1, sizeof(*fx));
	/* the highest modseq both sides agree on (syncconflict_merge_flags) */
	while (i < all.n && k < m->rrecs.n) {
		const struct store_record *l = &all.v[i].r, *r = &m->rrecs.v[k].r;
		if (l->uid != r->uid) {
			if (l->uid < r->uid)
				i++;
			else
				k++;
			continue;
		}
		if (str_eq(l->guid, r->guid) && l->modseq == r->modseq &&
		    l->expunged_modseq == r->expunged_modseq && l->sysflags == r->sysflags &&
		    str_eq(l->keywords ? l->keywords : "", r->keywords ? r->keywords : "")) {
			if (l->modseq > base)
				base = l->modseq;
			if (l->expunged_modseq > base)
				base = l->expunged_modseq;
		}
		i++;
		k++;
	}
	i = k = 0;
	/* pass 1: what the policy makes of each conflict (both lists in uid order) */
	while (i < all.n || k < m->rrecs.n) {
		const struct store_record *l = i < all.n ? &all.v[i].r : NULL;
		const struct store_record *r = k < m->rrecs.n ? &m->rrecs.v[k].r : NULL;

		if (l != NULL && (r == NULL || l->uid < r->uid)) {
			i++;
			continue;
		}
		if (r != NULL && (l == NULL || r->uid < l->uid)) {
			if (r->expunged_modseq == 0) {
				res = report(p, u, r->uid >= m->L.uidnext ? SYNCPUSH_C_UID_ABOVE :
					SYNCPUSH_C_REPLICA_RECORD, m, m->L.name, r->uid, NULL, r->guid, 0,
					r->modseq);
				if (res == SYNCPUSH_R_RENUMBER)
					fx[k] = r->uid >= m->L.uidnext ? FX_ADOPT : FX_IMPORT;
				else if (res == SYNCPUSH_R_REPLACE)
					fx[k] = FX_DROP;
				else
					fx[k] = FX_LEFT;
			}
			k++;
			continue;
		}
		if (!str_eq(l->guid, r->guid) && (l->expunged_modseq == 0 || r->expunged_modseq == 0)) {
			res = report(p, u, SYNCPUSH_C_GUID, m, m->L.name, l->uid, l->guid, r->guid,
				l->modseq, r->modseq);
			if (res == SYNCPUSH_R_RENUMBER && r->expunged_modseq == 0)
				fx[k] = FX_IMPORT;   /* theirs to a fresh UID; then ours replaces it */
			else if (resolves(res))
				fx[k] = FX_REPLACE;
			else
				fx[k] = FX_LEFT;
		} else if (str_eq(l->guid, r->guid) && l->expunged_modseq == 0 &&
		    r->expunged_modseq == 0 && r->modseq > base &&
		    (r->modseq > l->modseq || l->modseq <= base) && (l->sysflags != r->sysflags ||
		    !str_eq(l->keywords ? l->keywords : "", r->keywords ? r->keywords : ""))) {
			/* the replica changed the flags since the two agreed */
			struct syncpush_conflict c;
			memset(&c, 0, sizeof(c));
			c.kind = SYNCPUSH_C_FLAGS;
			c.user = u->name;
			c.mailbox_id = m->id;
			c.mailbox_name = m->L.name;
			c.uid = l->uid;
			c.master_guid = l->guid;
			c.replica_guid = r->guid;
			c.master_modseq = l->modseq;
			c.replica_modseq = r->modseq;
			res = conflict(p, &c);
			if (res == SYNCPUSH_R_MERGE) {
				struct store_record x = *l;
				if (syncconflict_merge_flags(l->sysflags, l->keywords, l->modseq, r->sysflags,
					r->keywords, r->modseq, base, &x.sysflags, &kwb)) {
					x.keywords = buf_cstr(&kwb);
					precs_add(&fl, &x);
					fx[k] = FX_FLAGS;
				}
			} else if (res != SYNCPUSH_R_MASTER) {
				fx[k] = FX_LEFT;
				u->conflicted = true;
			}
		}
		i++;
		k++;
	}
	for (k = 0; k < m->rrecs.n; k++)
		if (fx[k] != FX_NONE && fx[k] != FX_LEFT)
			local = true;
	if (!local)
		precs_free(&fl);
	buf_free(&kwb);
	if (local) {
		rc = resolve_local(p, u, lu, m, fx, &fl, err);
		precs_free(&fl);
		if (rc < 0) {
			log_error("split-brain resolution failed user=%s mailbox=%s name=%s error=%s",
				u->name, m->id, log_q(m->L.name), log_q(err->msg));
			free(fx);
			precs_free(&all);
			return -1;
		}
		rc = read_local(lu, m->id, 0, &m->L, &all, &maxuid, &maxms, err);
		if (rc < 0) {
			free(fx);
			return -1;
		}
		tomb = m->L.highestmodseq;
	}
	/* pass 2: the update */
	i = k = 0;
	while (i < all.n || k < m->rrecs.n) {
		const struct store_record *l = i < all.n ? &all.v[i].r : NULL;
		const struct store_record *r = k < m->rrecs.n ? &m->rrecs.v[k].r : NULL;

		if (l != NULL && (r == NULL || l->uid < r->uid)) {
			if (l->expunged_modseq == 0) {
				precs_add(&m->recs, l);
				strv_add(&m->guids, l->guid);
			}
			i++;
			continue;
		}
		if (r != NULL && (l == NULL || r->uid < l->uid)) {
			if (r->expunged_modseq == 0) {
				if ((fx[k] == FX_IMPORT || fx[k] == FX_DROP) && tomb != 0) {
					/* brought here under a fresh UID, or the loser of
					 * replace: expunged there (replace: quarantined) */
					struct store_record t = *r;
					t.modseq = tomb;
					t.expunged_modseq = tomb;
					precs_add(&m->recs, &t);
					m->recs.v[m->recs.n - 1].replace = fx[k] == FX_DROP;
					if (fx[k] == FX_DROP) {
						p->stats.replaced++;
						log_warn("sync conflict resolved policy=replace user=%s mailbox=%s"
							" name=%s replica_uid=%u replica_guid=%s action=quarantine",
							u->name, m->id, log_q(m->L.name), r->uid, r->guid);
					}
				} else {
					left = true;
				}
			}
			k++;
			continue;
		}
		/* same uid */
		if (!str_eq(l->guid, r->guid)) {
			if (l->expunged_modseq == 0 || r->expunged_modseq == 0) {
				if (fx[k] == FX_IMPORT && l->expunged_modseq != 0 && tomb != 0) {
					/* ours is gone, theirs is here now under a fresh UID */
					struct store_record t = *r;
					t.modseq = tomb;
					t.expunged_modseq = tomb;
					precs_add(&m->recs, &t);
				} else if ((fx[k] == FX_IMPORT || fx[k] == FX_REPLACE) && tomb != 0) {
					precs_add(&m->recs, l);
					m->recs.v[m->recs.n - 1].replace = true;
					if (l->expunged_modseq == 0)
						strv_add(&m->guids, l->guid);
					if (r->expunged_modseq == 0)
						p->stats.replaced++;
					log_warn("sync conflict resolved policy=%s user=%s mailbox=%s name=%s"
						" uid=%u master_guid=%s replica_guid=%s action=replace-there",
						fx[k] == FX_IMPORT ? "renumber" : "replace", u->name, m->id,
						log_q(m->L.name), l->uid, l->guid, r->guid);
				} else {
					left = true;
				}
			}
		} else if (l->modseq != r->modseq || l->sysflags != r->sysflags ||
		    l->expunged_modseq != r->expunged_modseq ||
		    !str_eq(l->keywords ? l->keywords : "", r->keywords ? r->keywords : "")) {
			/* ours (merged in pass 1 where both changed), unless the
			 * policy left the replica's flags alone */
			if (fx[k] == FX_LEFT)
				left = true;
			else
				precs_add(&m->recs, l);
		}
		i++;
		k++;
	}
	free(fx);
	precs_free(&all);
	m->since_modseq = m->r_hms;
	m->since_crc = m->r_crc;
	m->diverged = left;
	m->send_crc = rc == 1 && !left;
	m->hms = m->L.highestmodseq > maxms ? m->L.highestmodseq : maxms;
	if (m->hms < m->r_hms)
		m->hms = m->r_hms;
	m->uidnext = m->L.uidnext > maxuid ? m->L.uidnext : maxuid + 1;
	if (m->uidnext < m->r_uidnext)
		m->uidnext = m->r_uidnext;
	m->act = PM_UPDATE;
	if (left)
		log_notice("mailbox left diverged user=%s mailbox=%s name=%s (conflicts above)",
			u->name, m->id, log_q(m->L.name));
	return 0;
}

/* ------------------------------------------------------------------ */
/* Mailbox-level split brain (issue 8 cases 5 and 7)                   */

static int restore_mailbox(struct syncpush *p, struct store_user *lu, const char *user,
	struct pm *m, struct syncpush_restore *res, struct err *err);
static int send_get_records(struct syncpush *p, struct pu *u, size_t mi, struct err *err);
static int fail_session(struct syncpush *p, struct err *err);

/* GET RECORDS 0 of one replica mailbox, synchronously (nothing else in
 * flight).  t is a scratch pu whose pms[0] gets the records. */
static int
fetch_rrecs(struct syncpush *p, struct pu *t, const char *user, const char *id, struct err *err)
{
	memset(t, 0, sizeof(*t));
	t->name = xstrdup(user);
	(void)pu_add_pm(t, id);
	if (send_get_records(p, t, 0, err) < 0 || drain(p, err) < 0)
		return -1;
	if (p->fatal)
		return fail_session(p, err);
	if (!t->pms[0].got_rrecs)
		return err_set(err, ERR_TEMP, "records of mailbox %s unreadable on the replica", id);
	return 0;
}

/* "<name> (conflict YYYY-MM-DD)", or with " 2" ... when taken on either
 * side.  0, or -1 when no free name was found. */
static int
conflict_name(struct pu *u, struct store_user *lu, const char *name, char *out, size_t size)
{
	char day[16];
	time_t now = time(NULL);
	struct tm tm;
	struct store_mailbox x;
	struct err e2;

	gmtime_r(&now, &tm);
	strftime(day, sizeof(day), "%Y-%m-%d", &tm);
	for (int n = 1; n <= 20; n++) {
		if (n == 1)
			snprintf(out, size, "%.*s (conflict %s)", (int)(size - 32), name, day);
		else
			snprintf(out, size, "%.*s (conflict %s %d)", (int)(size - 36), name, day, n);
		if (store_mailbox_get(lu, out, &x, &e2) < 0 && e2.kind == ERR_NOTFOUND &&
		    ruser_find_name(u->r, out) == NULL)
			return 0;
	}
	return -1;
}

/* Case 5: the replica's mailbox R holds a name a different mailbox holds
 * here.  R comes here under "<name> (conflict YYYY-MM-DD)", same
 * uniqueid, UIDs, flags; the normal plan then renames it on the replica
 * (OLDNAME) and creates ours there.  1 done, 0 nothing done, -1. */
static int
resolve_name_clash(struct syncpush *p, struct pu *u, struct store_user *lu, const struct rmb *R,
	const struct store_mailbox *mine, struct err *err)
{
	struct pu t;
	struct rmb r2;
	struct store *wst;
	struct store_user *wu;
	struct syncpush_restore res;
	char name[STORE_MBOX_NAME_MAX + 1];
	int rc;

	enum syncpush_resolution how = report(p, u, SYNCPUSH_C_NAME_CLASH, NULL, R->name, 0, NULL,
		NULL, mine->highestmodseq, R->hms);

	if (!resolves(how))
		return 0;
	if (conflict_name(u, lu, R->name, name, sizeof(name)) < 0)
		return err_set(err, ERR_CONFLICT, "no free conflict name for %s", log_q(R->name));
	if (fetch_rrecs(p, &t, u->name, R->uniqueid, err) < 0) {
		pu_free(&t);
		return -1;
	}
	r2 = *R;
	r2.name = name;
	t.pms[0].R = &r2;
	memset(&res, 0, sizeof(res));
	if ((wu = wuser_open(p, u->name, lu, &wst, err)) == NULL) {
		pu_free(&t);
		return -1;
	}
	rc = restore_mailbox(p, wu, u->name, &t.pms[0], &res, err);
	wuser_close(p, &wst, &wu, rc == 0);
	pu_free(&t);
	if (rc < 0)
		return -1;
	p->stats.mailboxes_resolved++;
	log_warn("sync conflict resolved policy=%s user=%s mailbox=%s name=%s replica_mailbox=%s"
		" new_name=%s records=%zu action=conflict-rename", syncconflict_action_name(how), u->name,
		mine->uniqueid, log_q(mine->name), R->uniqueid, log_q(name), res.records);
	strv_add_uniq(&u->mbids, R->uniqueid);
	return 1;
}

/* Case 7: deleted here (tombstone L) while mail arrived in it on the
 * replica (UIDs at or above ours).  The new messages are appended here to
 * "Recovered/<name>" (created when absent) under fresh UIDs; the
 * tombstone's UIDNEXT is raised to the replica's so the next round sends
 * the deletion.  1 done, 0 nothing done, -1. */
static int
resolve_deleted_with_mail(struct syncpush *p, struct pu *u, struct store_user *lu,
	const struct rmb *R, const struct store_mailbox *L, struct err *err)
{
	struct pu t;
	struct store *wst;
	struct store_user *wu;
	struct store_mailbox rec, tomb;
	struct err e2;
	char name[STORE_MBOX_NAME_MAX + 1];
	uint64_t cnt = 0;
	size_t n = 0;
	int rc = -1;

	enum syncpush_resolution how = report(p, u, SYNCPUSH_C_UID_ABOVE, NULL, R->name,
		R->uidnext - 1, NULL, NULL, L->deleted_modseq, R->hms);

	if (!resolves(how))
		return 0;
	snprintf(name, sizeof(name), "Recovered/%.*s", (int)(sizeof(name) - 11), R->name);
	if (fetch_rrecs(p, &t, u->name, R->uniqueid, err) < 0) {
		pu_free(&t);
		return -1;
	}
	if ((wu = wuser_open(p, u->name, lu, &wst, err)) == NULL) {
		pu_free(&t);
		return -1;
	}
	for (size_t k = 0; k < t.pms[0].rrecs.n; k++) {
		const struct store_record *r = &t.pms[0].rrecs.v[k].r;
		int x;
		if (r->expunged_modseq != 0 || r->uid < L->uidnext)
			continue;
		if ((x = store_blob_exists(wu, r->guid, err)) < 0 ||
		    (x == 0 && restore_blob(p, wu, u->name, r->guid, err) < 0))
			goto out;
	}
	if (store_mailbox_get(wu, name, &rec, &e2) < 0) {
		if (e2.kind != ERR_NOTFOUND) {
			*err = e2;
			goto out;
		}
		if (store_mailbox_create(wu, name, NULL, &rec, err) < 0)
			goto out;
	}
	if (store_txn_begin(wu, err) < 0)
		goto out;
	if (store_user_modseq(wu, &cnt, err) < 0 ||
	    store_mailbox_get_id(wu, rec.uniqueid, false, &rec, err) < 0 ||
	    store_mailbox_get_id(wu, L->uniqueid, true, &tomb, err) < 0)
		goto fail;
	if (cnt < R->hms)
		cnt = R->hms;
	for (size_t k = 0; k < t.pms[0].rrecs.n; k++) {
		struct store_record r = t.pms[0].rrecs.v[k].r;
		uint32_t from = r.uid;
		if (r.expunged_modseq != 0 || r.uid < L->uidnext)
			continue;
		r.uid = rec.uidnext++;
		r.modseq = ++cnt;
		if (store_repl_record(wu, rec.uniqueid, &r, err) < 0)
			goto fail;
		n++;
		p->stats.renumbered++;
		log_warn("sync conflict resolved policy=%s user=%s mailbox=%s name=%s replica_uid=%u"
			" recovered_mailbox=%s recovered_name=%s uid=%u guid=%s action=recovered",
			syncconflict_action_name(how), u->name,
			L->uniqueid, log_q(R->name), from, rec.uniqueid, log_q(name), r.uid, r.guid);
	}
	/* the tombstone now covers every UID the replica used: deletable */
	tomb.uidnext = R->uidnext > tomb.uidnext ? R->uidnext : tomb.uidnext;
	if (store_repl_mailbox(wu, &tomb, err) < 0)
		goto fail;
	if (store_txn_commit(wu, err) < 0)
		goto out;
	p->stats.mailboxes_resolved++;
	strv_add_uniq(&u->mbids, rec.uniqueid);
	strv_add_uniq(&u->mbids, L->uniqueid);
	rc = 1;
	goto out;
fail:
	store_txn_rollback(wu);
out:
	wuser_close(p, &wst, &wu, rc == 1 || n > 0);
	pu_free(&t);
	return rc;
}

/* Before planning a full sync of u: resolve the mailbox-level conflicts
 * the policy allows (cases 5 and 7).  Returns 1 when something changed
 * here (plan again with fresh replica state), 0 nothing, -1 error. */
static int
resolve_mailboxes(struct syncpush *p, struct pu *u, struct err *err)
{
	struct store_user *lu;
	int changed = 0, x;

	if (u->fast || u->r == NULL || !u->r->exists || !(u->flags & PU_FULL))
		return 0;
	if ((x = store_user_exists(p->st, u->name, err)) <= 0)
		return x;
	if ((lu = local_user(p, u->name, err)) == NULL)
		return -1;
	for (size_t i = 0; i < u->r->nmbs; i++) {
		const struct rmb *R = &u->r->mbs[i];
		struct store_mailbox L, H;
		struct err e2;

		if (R->deletedmodseq != 0)
			continue;
		if (store_mailbox_get_id(lu, R->uniqueid, true, &L, &e2) == 0) {
			if (L.deleted_modseq != 0 && R->uidnext > L.uidnext &&
			    !(L.modseq > R->deletedmodseq && R->deletedmodseq != 0)) {
				x = resolve_deleted_with_mail(p, u, lu, R, &L, err);
				if (x < 0)
					return -1;
				changed |= x;
			}
			continue;
		}
		if (e2.kind != ERR_NOTFOUND) {
			*err = e2;
			return -1;
		}
		/* only the replica has R: a name clash when a live mailbox of
		 * another uniqueid holds its name here (never INBOX: a master
		 * whose INBOX was recreated is a restore-from case) */
		if (str_eq(R->name, "INBOX") || store_mailbox_get(lu, R->name, &H, &e2) < 0)
			continue;
		if (str_eq(H.uniqueid, R->uniqueid))
			continue;
		x = resolve_name_clash(p, u, lu, R, &H, err);
		if (x < 0)
			return -1;
		changed |= x;
	}
	if (changed)
		local_user_forget(p, u->name);
	return changed;
}

/* Compare subscriptions, password and quota (full path). */
static int
plan_user_fields(struct syncpush *p, struct pu *u, struct store_user *lu, struct err *err)
{
	struct lsub_ctx ls = { 0 };
	char hex[65];

	(void)p;
	if ((u->flags & (PU_FULL | PU_SUB)) && u->r != NULL) {
		if (store_changes_since(lu, 0, lsub_cb, &ls, err) < 0)
			return -1;
		for (size_t i = 0; i < ls.n; i++) {
			bool same = false;
			for (size_t k = 0; k < u->r->nsubs; k++)
				if (str_eq(u->r->subs[k].name, ls.v[i].name)) {
					same = u->r->subs[k].subscribed == ls.v[i].subscribed &&
						u->r->subs[k].modseq == ls.v[i].modseq;
					break;
				}
			if (same || (!ls.v[i].subscribed && !u->r->exists)) {
				free(ls.v[i].name);
				continue;
			}
			u->subs_to_send = xreallocarray(u->subs_to_send, u->nsubs_to_send + 1,
				sizeof(*u->subs_to_send));
			u->subs_to_send[u->nsubs_to_send].name = ls.v[i].name;
			u->subs_to_send[u->nsubs_to_send].subscribed = ls.v[i].subscribed;
			u->subs_to_send[u->nsubs_to_send].modseq = ls.v[i].modseq;
			u->nsubs_to_send++;
		}
		free(ls.v);
	}
	if ((u->flags & (PU_FULL | PU_PASSWORD | PU_USER)) && u->r != NULL) {
		if (u->hash != NULL)
			password_sha256(u->hash, hex);
		else
			hex[0] = '\0';
		if (!u->r->exists || !str_eq(hex, u->r->pwsha))
			u->send_password = u->r->exists || u->hash != NULL;
	}
	if ((u->flags & (PU_FULL | PU_USER)) && u->r != NULL && u->r->exists &&
	    (u->r->quota_bytes != u->ui.quota_bytes || u->r->quota_messages != u->ui.quota_messages))
		u->send_quota = true;
	return 0;
}

/* Plan a whole user.  The user's replica state is u->r (full path) or the
 * cache (fast path).  0, or -1 on a local error (counted, user skipped). */
static int
plan_user(struct syncpush *p, struct pu *u, struct err *err)
{
	struct store_user *lu;
	struct strv ids = { 0 };
	struct lmb_ctx lc = { &ids };
	int x;

	p->stats.users++;
	x = store_user_exists(p->st, u->name, err);
	if (x < 0)
		return -1;
	u->local_exists = x == 1;
	if (!u->local_exists) {
		local_user_forget(p, u->name);
		if (u->flags & PU_UNUSER)
			u->send_unuser = true;
		return 0;
	}
	if ((lu = local_user(p, u->name, err)) == NULL)
		return -1;
	if (store_user_modseq(lu, &u->m0, err) < 0)
		return -1;
	free(u->hash);
	u->hash = NULL;
	if (syncdigest_userinfo(p->st, u->name, &u->ui, &u->hash, err) < 0)
		return -1;
	if (!u->fast && u->r != NULL && u->r->exists && (u->flags & PU_UNUSER)) {
		/* deleted and created again here: is the replica's user the old one? */
		struct store_mailbox inbox;
		struct rmb *ri = ruser_find_name(u->r, "INBOX");
		if (store_mailbox_get(lu, "INBOX", &inbox, err) < 0)
			return -1;
		if (ri != NULL && !str_eq(ri->uniqueid, inbox.uniqueid) && ri->uidnext > 1) {
			u->send_unuser = true;
			ruser_free(u->r);
			u->r = xcalloc(1, sizeof(*u->r));
			u->r->quota_bytes = u->r->quota_messages = -1;
		}
	}
	if (!u->fast && u->r != NULL && !u->r->exists)
		u->send_create = true;
again:
	strv_free(&ids);
	if (u->fast || !(u->flags & PU_FULL)) {
		for (size_t i = 0; i < u->mbids.n; i++)
			strv_add_uniq(&ids, u->mbids.v[i]);
		for (size_t i = 0; i < u->force_repair.n; i++)
			strv_add_uniq(&ids, u->force_repair.v[i]);
	} else {
		if (store_mailbox_list(lu, "*", STORE_LIST_DELETED | STORE_LIST_NO_PARENTS, lmb_cb, &lc,
			err) < 0) {
			strv_free(&ids);
			return -1;
		}
		for (size_t i = 0; u->r != NULL && i < u->r->nmbs; i++)
			strv_add_uniq(&ids, u->r->mbs[i].uniqueid);
	}
	for (size_t i = 0; i < ids.n; i++) {
		struct pm *m = pu_add_pm(u, ids.v[i]);
		if (m == NULL)
			continue;
		if (u->fast) {
			struct centry *ce = cache_get(&p->cache, u->name, m->id);
			if (ce == NULL) {
				/* not cached: this user needs a GET USER */
				u->fast = false;
				u->retry = true;
				strv_free(&ids);
				return 0;
			}
			m->rcopy = ce->mb;
			m->rcopy.name = xstrdup(ce->mb.name);
			m->R = &m->rcopy;
		} else {
			m->R = ruser_find(u->r, m->id);
		}
		x = plan_mailbox(p, u, lu, m, err);
		if (x < 0) {
			strv_free(&ids);
			return -1;
		}
		if (x == 1) {
			/* a name is held by a mailbox outside the plan: plan everything */
			for (size_t k = 0; k < u->npm; k++)
				pm_free(&u->pms[k]);
			u->npm = 0;
			u->flags |= PU_FULL;
			goto again;
		}
		if (u->fast && (m->act == PM_DELETE || m->act == PM_REPAIR || m->oldname != NULL ||
		    m->create)) {
			/* anything but a plain update wants the full picture */
			for (size_t k = 0; k < u->npm; k++)
				pm_free(&u->pms[k]);
			u->npm = 0;
			u->fast = false;
			u->retry = true;
			strv_free(&ids);
			return 0;
		}
	}
	strv_free(&ids);
	if (!u->fast && plan_user_fields(p, u, lu, err) < 0)
		return -1;
	if (!u->fast && (u->flags & PU_FULL))
		u->final_user = true;
	return 0;
}

/* Temporary names for renames whose current name another rename wants. */
static void
plan_renames(struct pu *u)
{
	struct strv targets = { 0 };

	for (size_t i = 0; i < u->npm; i++)
		if (u->pms[i].act == PM_UPDATE && (u->pms[i].create || u->pms[i].oldname != NULL))
			strv_add(&targets, u->pms[i].L.name);
	for (size_t i = 0; i < u->npm; i++) {
		struct pm *m = &u->pms[i];
		char tmp[STORE_MBOX_NAME_MAX + 1];
		if (m->act != PM_UPDATE || m->oldname == NULL || !strv_has(&targets, m->oldname))
			continue;
		if (strlen(m->oldname) + 6 + STORE_UNIQUEID_LEN < STORE_MBOX_NAME_MAX)
			snprintf(tmp, sizeof(tmp), "%s.sync-%s", m->oldname, m->id);
		else
			snprintf(tmp, sizeof(tmp), "sync-%s", m->id);
		m->tmpname = xstrdup(tmp);
	}
	strv_free(&targets);
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */

static int
send_get_user(struct syncpush *p, struct pu *u, struct err *err)
{
	struct syncproto_enc e;
	struct pcmd *c = cmd_begin(p, PK_GET_USER, &e);

	c->u = u;
	syncproto_enc_atom(&e, "GET");
	syncproto_enc_atom(&e, "USER");
	syncproto_enc_cstring(&e, u->name);
	return cmd_end(p, &e, err);
}

static int
send_get_records(struct syncpush *p, struct pu *u, size_t mi, struct err *err)
{
	struct syncproto_enc e;
	struct pcmd *c = cmd_begin(p, PK_GET_RECORDS, &e);

	c->u = u;
	c->mi = mi;
	syncproto_enc_atom(&e, "GET");
	syncproto_enc_atom(&e, "RECORDS");
	syncproto_enc_cstring(&e, u->name);
	syncproto_enc_atom(&e, u->pms[mi].id);
	syncproto_enc_u64(&e, 0);
	return cmd_end(p, &e, err);
}

static int
send_reserve(struct syncpush *p, struct pu *u, struct err *err)
{
	strv_sort_uniq(&u->need);
	for (size_t i = 0; i < u->need.n; i += RESERVE_CHUNK) {
		struct syncproto_enc e;
		struct pcmd *c = cmd_begin(p, PK_RESERVE, &e);

		c->u = u;
		syncproto_enc_atom(&e, "RESERVE");
		syncproto_enc_cstring(&e, u->name);
		syncproto_enc_open(&e, '(');
		for (size_t k = i; k < u->need.n && k < i + RESERVE_CHUNK; k++)
			syncproto_enc_atom(&e, u->need.v[k]);
		syncproto_enc_close(&e);
		if (cmd_end(p, &e, err) < 0)
			return -1;
	}
	return 0;
}

static int
send_upload(struct syncpush *p, struct pu *u, struct store_user *lu, const char *guid,
	struct err *err)
{
	struct syncproto_enc e;
	struct store_blob b;
	struct pcmd *c;
	struct err e2;

	if (store_blob_map(lu, guid, &b, &e2) < 0) {
		/* gone since we read the record (expunged and purged): the
		 * APPLY will say NOTFOUND and the next round reads again */
		log_info("body vanished before upload user=%s guid=%s error=%s", u->name, guid,
			log_q(e2.msg));
		return 0;
	}
	c = cmd_begin(p, PK_UPLOAD, &e);
	c->u = u;
	syncproto_enc_atom(&e, "UPLOAD");
	syncproto_enc_cstring(&e, u->name);
	syncproto_enc_atom(&e, guid);
	syncproto_enc_literal(&e, b.data, b.len);
	p->stats.uploads++;
	p->stats.upload_bytes += b.len;
	store_blob_release(&b);
	return cmd_end(p, &e, err);
}

static void
enc_record(struct syncproto_enc *e, const struct store_record *r, bool replace)
{
	syncproto_enc_open(e, '(');
	syncproto_enc_key_u64(e, "UID", r->uid);
	syncproto_enc_key_u64(e, "MODSEQ", r->modseq);
	syncproto_enc_atom(e, "GUID");
	syncproto_enc_atom(e, r->guid);
	if (r->expunged_modseq != 0)
		syncproto_enc_key_u64(e, "EXPUNGEDMODSEQ", r->expunged_modseq);
	syncproto_enc_key_u64(e, "SIZE", r->size);
	syncproto_enc_atom(e, "INTERNALDATE");
	syncproto_enc_i64(e, r->internaldate);
	syncproto_enc_atom(e, "FLAGS");
	syncapply_enc_flags(e, r->sysflags, r->keywords);
	if (replace)
		syncproto_enc_key_u64(e, "REPLACE", 1);
	syncproto_enc_close(e);
}

static int
send_apply_mailbox(struct syncpush *p, struct pu *u, size_t mi, struct err *err)
{
	struct pm *m = &u->pms[mi];
	size_t nchunks, i0 = 0;
	uint64_t since = m->since_modseq;
	uint32_t maxuid = m->R != NULL && !m->reset ? m->R->uidnext - 1 : 0;

	if (m->recs.n > 1)
		qsort(m->recs.v, m->recs.n, sizeof(*m->recs.v), prec_cmp_modseq);
	nchunks = m->recs.n == 0 ? 1 : (m->recs.n + CHUNK_RECORDS - 1) / CHUNK_RECORDS;
	for (size_t ch = 0; ch < nchunks; ch++) {
		struct syncproto_enc e;
		struct pcmd *c = cmd_begin(p, PK_APPLY_MAILBOX, &e);
		size_t i1 = i0 + CHUNK_RECORDS < m->recs.n ? i0 + CHUNK_RECORDS : m->recs.n;
		bool last = ch + 1 == nchunks;
		uint64_t hms = since, mod;
		uint32_t uidnext;

		for (size_t i = i0; i < i1; i++) {
			const struct store_record *r = &m->recs.v[i].r;
			uint64_t top = r->expunged_modseq > r->modseq ? r->expunged_modseq : r->modseq;
			if (top > hms)
				hms = top;
			if (r->uid > maxuid)
				maxuid = r->uid;
		}
		if (last)
			hms = m->hms > hms ? m->hms : hms;
		uidnext = last ? m->uidnext : maxuid + 1;
		if (m->R != NULL && uidnext < m->R->uidnext && !m->reset)
			uidnext = m->R->uidnext;
		mod = m->L.modseq < hms ? m->L.modseq : hms;
		c->u = u;
		c->mi = mi;
		c->last = last;
		syncproto_enc_atom(&e, "APPLY");
		syncproto_enc_atom(&e, "MAILBOX");
		syncproto_enc_cstring(&e, u->name);
		syncproto_enc_open(&e, '(');
		syncproto_enc_atom(&e, "UNIQUEID");
		syncproto_enc_atom(&e, m->id);
		syncproto_enc_key_string(&e, "NAME", m->L.name);
		if (ch == 0 && (m->oldname != NULL || m->tmpname != NULL))
			syncproto_enc_key_string(&e, "OLDNAME", m->tmpname ? m->tmpname : m->oldname);
		syncproto_enc_key_u64(&e, "UIDVALIDITY", m->L.uidvalidity);
		syncproto_enc_key_u64(&e, "UIDNEXT", uidnext);
		syncproto_enc_key_u64(&e, "HIGHESTMODSEQ", hms);
		syncproto_enc_key_u64(&e, "CREATEDMODSEQ", m->L.createdmodseq < hms ? m->L.createdmodseq : hms);
		syncproto_enc_key_u64(&e, "MODSEQ", mod);
		syncproto_enc_key_string(&e, "SPECIALUSE", m->L.specialuse);
		syncproto_enc_key_u64(&e, "SINCE-MODSEQ", since);
		if (ch == 0 && m->undelete)
			syncproto_enc_key_u64(&e, "UNDELETE", 1);
		if (ch == 0 && m->reset)
			syncproto_enc_key_u64(&e, "RESET", 1);
		if (ch == 0) {
			syncproto_enc_atom(&e, "SINCE-CHECKSUM");
			if (m->create)
				syncproto_enc_nil(&e);
			else
				syncproto_enc_u64(&e, m->since_crc);
		}
		if (last && m->send_crc)
			syncproto_enc_key_u64(&e, "CHECKSUM", m->L.sync_crc);
		syncproto_enc_atom(&e, "RECORDS");
		syncproto_enc_open(&e, '(');
		for (size_t i = i0; i < i1; i++)
			enc_record(&e, &m->recs.v[i].r, m->recs.v[i].replace);
		syncproto_enc_close(&e);
		syncproto_enc_close(&e);
		p->stats.records += i1 - i0;
		if (cmd_end(p, &e, err) < 0)
			return -1;
		since = hms;
		i0 = i1;
	}
	return 0;
}

static int
send_rename(struct syncpush *p, struct pu *u, size_t mi, const char *from, const char *to,
	struct err *err)
{
	struct syncproto_enc e;
	struct pcmd *c = cmd_begin(p, PK_APPLY_RENAME, &e);

	c->u = u;
	c->mi = mi;
	syncproto_enc_atom(&e, "APPLY");
	syncproto_enc_atom(&e, "RENAME");
	syncproto_enc_cstring(&e, u->name);
	syncproto_enc_open(&e, '(');
	syncproto_enc_atom(&e, "UNIQUEID");
	syncproto_enc_atom(&e, u->pms[mi].id);
	syncproto_enc_key_string(&e, "OLDNAME", from);
	syncproto_enc_key_string(&e, "NAME", to);
	syncproto_enc_key_u64(&e, "MODSEQ", u->pms[mi].L.modseq);
	syncproto_enc_close(&e);
	return cmd_end(p, &e, err);
}

static int
send_delete(struct syncpush *p, struct pu *u, size_t mi, struct err *err)
{
	struct syncproto_enc e;
	struct pm *m = &u->pms[mi];
	struct pcmd *c = cmd_begin(p, PK_APPLY_DELETE, &e);

	c->u = u;
	c->mi = mi;
	syncproto_enc_atom(&e, "APPLY");
	syncproto_enc_atom(&e, "DELETE");
	syncproto_enc_cstring(&e, u->name);
	syncproto_enc_open(&e, '(');
	syncproto_enc_atom(&e, "UNIQUEID");
	syncproto_enc_atom(&e, m->id);
	syncproto_enc_key_string(&e, "NAME", m->oldname);
	syncproto_enc_key_u64(&e, "DELETEDMODSEQ", m->L.deleted_modseq);
	syncproto_enc_close(&e);
	return cmd_end(p, &e, err);
}

static void
enc_quota(struct syncproto_enc *e, const char *key, int64_t q)
{
	syncproto_enc_atom(e, key);
	if (q < 0)
		syncproto_enc_nil(e);
	else
		syncproto_enc_u64(e, (uint64_t)q);
}

static int
send_apply_user(struct syncpush *p, struct pu *u, bool quota, uint64_t modseq, bool final,
	struct err *err)
{
	struct syncproto_enc e;
	struct pcmd *c = cmd_begin(p, PK_APPLY_USER, &e);

	c->u = u;
	c->final = final;
	syncproto_enc_atom(&e, "APPLY");
	syncproto_enc_atom(&e, "USER");
	syncproto_enc_cstring(&e, u->name);
	syncproto_enc_open(&e, '(');
	syncproto_enc_key_string(&e, "NAME", u->name);
	syncproto_enc_key_u64(&e, "HIGHESTMODSEQ", modseq);
	if (quota) {
		enc_quota(&e, "QUOTA-BYTES", u->ui.quota_bytes);
		enc_quota(&e, "QUOTA-MESSAGES", u->ui.quota_messages);
	}
	syncproto_enc_close(&e);
	return cmd_end(p, &e, err);
}

static int
send_user_cmds(struct syncpush *p, struct pu *u, struct err *err)
{
	struct store_user *lu = NULL;
	struct syncproto_enc e;
	struct pcmd *c;

	if (u->send_unuser) {
		c = cmd_begin(p, PK_APPLY_UNUSER, &e);
		c->u = u;
		syncproto_enc_atom(&e, "APPLY");
		syncproto_enc_atom(&e, "UNUSER");
		syncproto_enc_cstring(&e, u->name);
		syncproto_enc_open(&e, '(');
		syncproto_enc_key_u64(&e, "MODSEQ", 0);
		syncproto_enc_close(&e);
		if (cmd_end(p, &e, err) < 0)
			return -1;
		log_info("user deletion sent user=%s", u->name);
	}
	if (!u->local_exists)
		return 0;
	if (u->send_create && send_apply_user(p, u, true, 0, false, err) < 0)
		return -1;
	if (u->missing.n > 0) {
		if ((lu = local_user(p, u->name, err)) == NULL)
			return -1;
		if (FAILPOINT("sync.push.before_upload") < 0)
			return err_set(err, ERR_TEMP, "failpoint sync.push.before_upload");
		for (size_t i = 0; i < u->missing.n; i++)
			if (send_upload(p, u, lu, u->missing.v[i], err) < 0)
				return -1;
		if (failpoint_armed) {
			/* the bodies are on the replica, no APPLY names them yet */
			if (drain(p, err) < 0)
				return -1;
			if (FAILPOINT("sync.push.after_upload") < 0)
				return err_set(err, ERR_TEMP, "failpoint sync.push.after_upload");
		}
	}
	for (size_t i = 0; i < u->npm; i++)
		if (u->pms[i].act == PM_DELETE && send_delete(p, u, i, err) < 0)
			return -1;
	for (size_t i = 0; i < u->npm; i++) {
		struct pm *m = &u->pms[i];
		if (m->act == PM_UPDATE && m->tmpname != NULL &&
		    send_rename(p, u, i, m->oldname, m->tmpname, err) < 0)
			return -1;
	}
	/* existing mailboxes first (renames free names), creations last */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < u->npm; i++) {
			struct pm *m = &u->pms[i];
			if (m->act == PM_UPDATE && m->create == (pass == 1) &&
			    send_apply_mailbox(p, u, i, err) < 0)
				return -1;
		}
	for (size_t i = 0; i < u->nsubs_to_send; i++) {
		c = cmd_begin(p, PK_APPLY_SUB, &e);
		c->u = u;
		syncproto_enc_atom(&e, "APPLY");
		syncproto_enc_atom(&e, "SUB");
		syncproto_enc_cstring(&e, u->name);
		syncproto_enc_open(&e, '(');
		syncproto_enc_key_string(&e, "NAME", u->subs_to_send[i].name);
		syncproto_enc_key_u64(&e, "SUBSCRIBED", u->subs_to_send[i].subscribed ? 1 : 0);
		syncproto_enc_key_u64(&e, "MODSEQ", u->subs_to_send[i].modseq);
		syncproto_enc_close(&e);
		if (cmd_end(p, &e, err) < 0)
			return -1;
	}
	if (u->send_password) {
		c = cmd_begin(p, PK_APPLY_PASSWORD, &e);
		c->u = u;
		syncproto_enc_atom(&e, "APPLY");
		syncproto_enc_atom(&e, "PASSWORD");
		syncproto_enc_cstring(&e, u->name);
		syncproto_enc_open(&e, '(');
		syncproto_enc_atom(&e, "HASH");
		if (u->hash != NULL)
			syncproto_enc_cstring(&e, u->hash);
		else
			syncproto_enc_nil(&e);
		syncproto_enc_close(&e);
		if (cmd_end(p, &e, err) < 0)
			return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Rounds                                                              */

static int
fail_session(struct syncpush *p, struct err *err)
{
	if (p->fatal) {
		*err = p->fatal_err;
		p->fatal = false;
	}
	return -1;
}

/* Deletions this round's plan sends for u. */
static uint64_t
planned_deletes(const struct pu *u)
{
	uint64_t del = 0;

	for (size_t k = 0; k < u->npm; k++)
		if (u->pms[k].act == PM_DELETE)
			del++;
	return del;
}

/* A threshold was crossed: with a park hook the users that would delete
 * (mailboxes, or whole users when unusers) are parked with the reason and
 * the round goes on for the others; without one the round fails with
 * ERR_PERM (nothing was sent yet).  0 or -1. */
static int
delete_limit_hit(struct syncpush *p, struct pu **us, size_t n, struct pu *only, bool unusers,
	const char *reason, struct err *err)
{
	if (p->park_fn == NULL)
		return err_set(err, ERR_PERM, "%s", reason);
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		if (u->parked || (only != NULL && u != only))
			continue;
		if (only != NULL || (unusers ? u->send_unuser : !u->failed && planned_deletes(u) > 0))
			park_user(u, NULL, reason);
	}
	return 0;
}

/* The deletion thresholds over the plan of one round (before wave C):
 * 0 (users over a threshold parked, when there is a park hook), or -1
 * with ERR_PERM "delete-limit ..." (nothing was sent yet). */
static int
check_delete_limits(struct syncpush *p, struct pu **us, size_t n, struct err *err)
{
	uint64_t total = 0, users = 0;
	char why[ERR_MSG_MAX];

	if (p->allow_deletes)
		return 0;
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		uint64_t del, live = 0;
		if (u->parked)
			continue;
		if (u->send_unuser)
			users++;
		if (u->failed && !u->send_unuser)
			continue;
		del = planned_deletes(u);
		total += del;
		if (u->r != NULL)
			for (size_t k = 0; k < u->r->nmbs; k++)
				if (u->r->mbs[k].deletedmodseq == 0)
					live++;
		if (del > p->dl.fraction_min && p->dl.fraction < 1.0 && live > 0 &&
		    (double)del > p->dl.fraction * (double)live) {
			log_error("DELETE LIMIT: refusing to delete %llu of %llu mailboxes of user %s "
				"(sync_delete_fraction %.2f); replica left untouched; release with "
				"castorctl sync --allow-deletes CHAN [USER]",
				(unsigned long long)del, (unsigned long long)live, u->name, p->dl.fraction);
			snprintf(why, sizeof(why), "delete-limit: %llu of %llu mailboxes of user %s "
				"(sync_delete_fraction %.2f)", (unsigned long long)del,
				(unsigned long long)live, u->name, p->dl.fraction);
			if (delete_limit_hit(p, us, n, u, false, why, err) < 0)
				return -1;
			total -= del;
		}
	}
	if (p->dl.limit > 0 && total > p->dl.limit) {
		log_error("DELETE LIMIT: refusing to delete %llu mailboxes in one pass "
			"(sync_delete_limit %llu); replica left untouched; release with "
			"castorctl sync --allow-deletes CHAN [USER]",
			(unsigned long long)total, (unsigned long long)p->dl.limit);
		snprintf(why, sizeof(why), "delete-limit: %llu mailboxes in one pass (sync_delete_limit %llu)",
			(unsigned long long)total, (unsigned long long)p->dl.limit);
		if (delete_limit_hit(p, us, n, NULL, false, why, err) < 0)
			return -1;
	}
	if (p->dl.user_limit > 0 && users > p->dl.user_limit) {
		log_error("DELETE LIMIT: refusing to delete %llu users in one pass "
			"(sync_user_delete_limit %llu); replica left untouched; release with "
			"castorctl sync --allow-deletes CHAN [USER]",
			(unsigned long long)users, (unsigned long long)p->dl.user_limit);
		snprintf(why, sizeof(why), "delete-limit: %llu users in one pass (sync_user_delete_limit %llu)",
			(unsigned long long)users, (unsigned long long)p->dl.user_limit);
		if (delete_limit_hit(p, us, n, NULL, true, why, err) < 0)
			return -1;
	}
	return 0;
}

/* One round over users[0..n): waves A (GET USER), A2 (GET RECORDS for
 * repairs), B (RESERVE), C (UPLOAD + APPLY), C2 (APPLY USER modseq). */
static int
round_users(struct syncpush *p, struct pu **us, size_t n, struct err *err)
{
	int rc;

	p->stats.rounds++;
	/* A */
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		u->fast = !u->no_fast && u->flags == 0 && u->force_repair.n == 0;
		for (size_t k = 0; u->fast && k < u->mbids.n; k++)
			if (cache_get(&p->cache, u->name, u->mbids.v[k]) == NULL)
				u->fast = false;
		if (!u->fast && !((u->flags & PU_UNUSER) && store_user_exists(p->st, u->name, err) == 0) &&
		    send_get_user(p, u, err) < 0)
			return -1;
	}
	if (drain(p, err) < 0)
		return -1;
	if (p->fatal)
		return fail_session(p, err);
	/* plan */
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		struct err e2;
		if (u->failed)
			continue;
		rc = resolve_mailboxes(p, u, &e2);
		if (p->fatal)
			return fail_session(p, err);
		if (rc != 0) {
			/* resolved here (or failed): plan again with fresh state */
			if (rc < 0) {
				p->stats.errors++;
				snprintf(p->last_problem, sizeof(p->last_problem), "user %s: %s", u->name,
					e2.msg);
				log_error("split-brain resolution failed user=%s error=%s", u->name,
					log_q(e2.msg));
			}
			u->failed = true;
			u->retry = true;
			continue;
		}
		if (plan_user(p, u, &e2) < 0) {
			p->stats.errors++;
			snprintf(p->last_problem, sizeof(p->last_problem), "user %s: %s", u->name, e2.msg);
			log_error("cannot read local state user=%s error=%s", u->name, log_q(e2.msg));
			u->failed = true;
			if (e2.kind == ERR_TEMP)
				u->retry = true;
			continue;
		}
		for (size_t k = 0; k < u->npm; k++)
			if (u->pms[k].act == PM_REPAIR && send_get_records(p, u, k, err) < 0)
				return -1;
	}
	if (drain(p, err) < 0)
		return -1;
	if (p->fatal)
		return fail_session(p, err);
	/* repairs, renames, and what to reserve */
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		if (u->failed || !u->local_exists)
			continue;
		for (size_t k = 0; k < u->npm; k++) {
			struct pm *m = &u->pms[k];
			if (m->act == PM_REPAIR) {
				struct store_user *lu;
				struct err e2;
				if (!m->got_rrecs || (lu = local_user(p, u->name, &e2)) == NULL ||
				    plan_repair(p, u, lu, m, &e2) < 0) {
					m->act = PM_NONE;
					u->failed = true;
					continue;
				}
			}
			if (m->act == PM_UPDATE)
				for (size_t g = 0; g < m->guids.n; g++)
					strv_add(&u->need, m->guids.v[g]);
			if (m->act == PM_UPDATE)
				for (size_t g = 0; g < m->push.n; g++)
					strv_add(&u->missing, m->push.v[g]);
		}
		plan_renames(u);
		if (u->need.n > 0 && (!u->fast && u->r != NULL && !u->r->exists)) {
			/* a new user has no bodies: everything is missing */
			strv_sort_uniq(&u->need);
			for (size_t g = 0; g < u->need.n; g++)
				strv_add(&u->missing, u->need.v[g]);
		} else if (u->need.n > 0 && send_reserve(p, u, err) < 0) {
			return -1;
		}
	}
	if (drain(p, err) < 0)
		return -1;
	if (p->fatal)
		return fail_session(p, err);
	if (check_delete_limits(p, us, n, err) < 0)
		return -1;
	/* C */
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		if (u->parked || (u->failed && !u->send_unuser))
			continue;
		strv_sort_uniq(&u->missing);
		if (send_user_cmds(p, u, err) < 0)
			return -1;
	}
	if (drain(p, err) < 0)
		return -1;
	if (p->fatal)
		return fail_session(p, err);
	/* C2 */
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		bool clean = !u->failed && !u->retry && !u->conflicted;
		if (!u->local_exists || u->failed)
			continue;
		for (size_t k = 0; k < u->npm && clean; k++)
			if (u->pms[k].diverged || (u->pms[k].act == PM_UPDATE && !u->pms[k].ok))
				clean = false;
		if ((u->final_user && clean) || u->send_quota)
			if (send_apply_user(p, u, u->send_quota, clean && u->final_user ? u->m0 : 0, true,
				err) < 0)
				return -1;
	}
	if (drain(p, err) < 0)
		return -1;
	if (p->fatal)
		return fail_session(p, err);
	return 0;
}

/* Run rounds over a list of users until nothing asks for a retry. */
static int
run_users(struct syncpush *p, struct pu *us, size_t n, struct err *err)
{
	struct pu **cur = xcalloc(n + 1, sizeof(*cur));
	size_t ncur = n;
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		cur[i] = &us[i];
	for (int round = 0; ncur > 0; round++) {
		size_t nnext = 0;

		for (size_t i = 0; i < ncur; i += USERS_PER_WAVE) {
			size_t w = ncur - i < USERS_PER_WAVE ? ncur - i : USERS_PER_WAVE;
			if (round_users(p, cur + i, w, err) < 0) {
				rc = -1;
				goto out;
			}
		}
		for (size_t i = 0; i < ncur; i++) {
			struct pu *u = cur[i];
			struct strv fr = { 0 };
			if (!u->retry || u->parked)
				continue;
			if (round + 1 >= MAX_ROUNDS) {
				p->stats.errors++;
				snprintf(p->last_problem, sizeof(p->last_problem),
					"user %s did not converge in %d rounds", u->name, MAX_ROUNDS);
				log_error("sync did not converge user=%s rounds=%d (anti-entropy will retry)",
					u->name, MAX_ROUNDS);
				continue;
			}
			for (size_t k = 0; k < u->npm; k++)
				if (u->pms[k].force_repair)
					strv_add_uniq(&fr, u->pms[k].id);
			pu_reset_plan(u);
			strv_free(&u->force_repair);
			u->force_repair = fr;
			/* fresh state: GET USER, and every hinted mailbox again */
			u->no_fast = true;
			cur[nnext++] = u;
		}
		ncur = nnext;
	}
out:
	free(cur);
	return rc;
}

int
syncpush_run(struct syncpush *p, struct syncpush_batch *b, struct err *err)
{
	struct pu *us;
	size_t n = 0;
	int rc;

	if (b->n == 0)
		return 0;
	us = xcalloc(b->n, sizeof(*us));
	for (size_t i = 0; i < b->n; i++) {
		if (p->skip_fn != NULL && p->skip_fn(p->park_ctx, b->u[i].name))
			continue;   /* parked: its hints are dropped (re-synced in full on release) */
		us[n].name = xstrdup(b->u[i].name);
		us[n].flags = b->u[i].flags;
		for (size_t k = 0; k < b->u[i].mbids.n; k++)
			strv_add(&us[n].mbids, b->u[i].mbids.v[k]);
		n++;
	}
	rc = n > 0 ? run_users(p, us, n, err) : 0;
	for (size_t i = 0; i < n; i++) {
		if (us[i].parked)
			p->park_fn(p->park_ctx, us[i].name, us[i].park_reason);
		pu_free(&us[i]);
	}
	free(us);
	if (rc < 0) {
		/* whatever we believed about the replica may be stale now */
		cache_clear(&p->cache);
		for (size_t i = 0; i < LOCAL_USERS; i++)
			store_user_close(&p->lus[i].u);
	}
	return rc;
}

/* ------------------------------------------------------------------ */
/* Anti-entropy                                                        */

struct lum {
	struct strv names;
	uint64_t *modseq;
	uint32_t *digest;
	size_t cap;
};

static int
lum_cb(void *ctx, const char *user, uint64_t modseq, uint32_t digest)
{
	struct lum *l = ctx;

	if (l->names.n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->modseq = xreallocarray(l->modseq, l->cap, sizeof(uint64_t));
		l->digest = xreallocarray(l->digest, l->cap, sizeof(uint32_t));
	}
	l->modseq[l->names.n] = modseq;
	l->digest[l->names.n] = digest;
	strv_add(&l->names, user);
	return 0;
}

/* Was this user deleted here (its spool held in <root>/deleted/<name>.<time>,
 * store_user_del)?  Then a user only the replica has is a deletion the
 * log lost (e.g. anti-entropy jumped past the UNUSER record), not a
 * replica-only user: it is sent as APPLY UNUSER (deletion thresholds
 * apply; the replica holds the spool in its own deleted/). */
static bool
user_deleted_here(struct syncpush *p, const char *name)
{
	struct buf d = BUF_INIT;
	DIR *dir;
	struct dirent *de;
	size_t n = strlen(name);
	bool found = false;

	buf_printf(&d, "%s/deleted", store_root(p->st));
	dir = opendir(buf_cstr(&d));
	buf_free(&d);
	if (dir == NULL)
		return false;
	while (!found && (de = readdir(dir)) != NULL) {
		const char *t = de->d_name + n + 1;
		if (strncmp(de->d_name, name, n) != 0 || de->d_name[n] != '.' || *t == '\0')
			continue;
		while (*t >= '0' && *t <= '9')
			t++;
		found = *t == '\0';
	}
	closedir(dir);
	return found;
}

static int
ix_cmp(const void *x, const void *y, void *ctx)
{
	const struct strv *n = ctx;

	return strcmp(n->v[*(const size_t *)x], n->v[*(const size_t *)y]);
}

/* An index of names in strcmp order, and the names in that order. */
static size_t *
sorted_index(const struct strv *names, const char ***sorted_r)
{
	size_t *ix = xcalloc(names->n + 1, sizeof(*ix));
	const char **v = xcalloc(names->n + 1, sizeof(*v));

	for (size_t k = 0; k < names->n; k++)
		ix[k] = k;
	qsort_r(ix, names->n, sizeof(*ix), ix_cmp, (void *)names);
	for (size_t k = 0; k < names->n; k++)
		v[k] = names->v[ix[k]];
	*sorted_r = v;
	return ix;
}

struct ae {
	struct syncpush *p;
	struct lum *l;
	const char **lnames;        /* our names, sorted */
	size_t *lix;                /* their index in l */
	const char **rnames;        /* replica names, sorted */
	size_t *rix;                /* their index in p->au_* */
	struct strv full;           /* users to sync: missing there, or checked here */
	struct strv check;          /* summaries differ: look at our database first */
	size_t *check_k;            /* their index in p->au_* */
	size_t ncheck_cap;
	struct strv unuser;         /* users deleted here */
	size_t compared, opened, differ;
	struct err *err;
};

#define AE_SLICE 8     /* differing users synced between two looks at the live log */

/* Both sides have the user: do the summaries agree? */
static bool
ae_differs(const struct syncpush *p, size_t k, uint64_t modseq, uint32_t digest)
{
	if (p->au_digest[k] < 0)
		return p->au_modseq[k] != modseq;
	return p->au_digest[k] != (int64_t)digest || p->au_modseq[k] < modseq;
}

static int
ae_pair(void *ctx, size_t i, size_t j)
{
	struct ae *a = ctx;
	struct syncpush *p = a->p;
	struct lum *l = a->l;

	a->compared++;
	if (i != SIZE_MAX)
		i = a->lix[i];
	if (j == SIZE_MAX) {
		strv_add(&a->full, l->names.v[i]);
		log_info("anti-entropy: user missing on the replica user=%s", l->names.v[i]);
		return 0;
	}
	if (i == SIZE_MAX) {
		size_t k = a->rix[j];
		const char *name = p->au_names.v[k];
		if (user_deleted_here(p, name)) {
			strv_add(&a->unuser, name);
			log_info("anti-entropy: user deleted here, present on the replica user=%s", name);
		} else {
			struct syncpush_conflict c;
			memset(&c, 0, sizeof(c));
			c.kind = SYNCPUSH_C_REPLICA_USER;
			c.user = name;
			c.replica_modseq = p->au_modseq[k];
			(void)conflict(p, &c);
		}
		return 0;
	}
	if (ae_differs(p, a->rix[j], l->modseq[i], l->digest[i])) {
		if (a->check.n == a->ncheck_cap) {
			a->ncheck_cap = a->ncheck_cap ? 2 * a->ncheck_cap : 64;
			a->check_k = xreallocarray(a->check_k, a->ncheck_cap, sizeof(*a->check_k));
		}
		a->check_k[a->check.n] = a->rix[j];
		strv_add(&a->check, l->names.v[i]);
	}
	return 0;
}

/* A user whose summaries differ: the summary is a hint and ours may be
 * stale (store_summary.c S1), so our database decides first.  1 when it
 * still differs (then the per-mailbox checksums decide), 0 when it
 * agrees, -1 with err when it cannot be read (the pass fails, as a
 * listing that cannot read a user does). */
static int
ae_confirm(struct syncpush *p, struct ae *a, const char *name, size_t k, struct err *err)
{
	struct store_userinfo ui;
	char *hash = NULL;
	uint64_t ms = 0;
	uint32_t dg = 0;
	bool fresh = false;
	int rc = syncdigest_userinfo(p->st, name, &ui, &hash, err);

	if (rc == 0) {
		a->opened++;
		rc = syncdigest_user_fresh(p->st, name, hash, ui.quota_bytes, ui.quota_messages,
			&ms, &dg, err);
		fresh = rc == 0;
	}
	free(hash);
	if (rc < 0 && err->kind != ERR_NOTFOUND) {
		log_warn("anti-entropy: cannot read user=%s error=%s", name, log_q(err->msg));
		return -1;
	}
	if (fresh && !ae_differs(p, k, ms, dg)) {
		log_info("anti-entropy: summary was stale, user agrees user=%s", name);
		return 0;
	}
	log_info("anti-entropy: user differs user=%s master_modseq=%llu replica_modseq=%llu"
		" digest=%s", name, (unsigned long long)ms, (unsigned long long)p->au_modseq[k],
		!fresh ? "unknown" : p->au_digest[k] != (int64_t)dg ? "differs" : "same");
	return 1;
}

/* Sync the users found differing, AE_SLICE at a time; between slices
 * the yield hook serves the live log (a pass never holds it back). */
static int
ae_run(struct syncpush *p, struct ae *a, struct err *err)
{
	size_t i = 0;

	if (a->unuser.n > 0) {
		struct syncpush_batch *b = syncpush_batch_new();
		for (size_t k = 0; k < a->unuser.n; k++)
			syncpush_batch_add(b, SYNCLOG_UNUSER, a->unuser.v[k], NULL);
		if (syncpush_run(p, b, err) < 0) {
			syncpush_batch_free(&b);
			return -1;
		}
		syncpush_batch_free(&b);
	}
	/* users missing there first, then those whose summaries differ */
	while (i < a->full.n + a->check.n) {
		struct syncpush_batch *b;
		size_t n = 0;
		int rc;
		if (p->ae_yield != NULL && p->ae_yield(p->ae_yield_ctx, err) < 0)
			return -1;
		b = syncpush_batch_new();
		for (; n < AE_SLICE && i < a->full.n + a->check.n; i++) {
			if (i < a->full.n) {
				syncpush_batch_add_full(b, a->full.v[i]);
			} else {
				size_t c = i - a->full.n;
				int r = ae_confirm(p, a, a->check.v[c], a->check_k[c], err);
				if (r < 0) {
					syncpush_batch_free(&b);
					return -1;
				}
				if (r == 0)
					continue;
				syncpush_batch_add_full(b, a->check.v[c]);
			}
			a->differ++;
			n++;
		}
		rc = syncpush_run(p, b, err);
		syncpush_batch_free(&b);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int
syncpush_anti_entropy(struct syncpush *p, size_t *differ_r, struct err *err)
{
	struct syncproto_enc e;
	struct lum l = { { 0 }, NULL, NULL, 0 };
	struct ae a;
	size_t nr, opened = 0;
	int rc = -1;

	memset(&a, 0, sizeof(a));
	a.p = p;
	a.l = &l;
	a.err = err;
	p->ae_compared = p->ae_opened = 0;
	if (differ_r != NULL)
		*differ_r = 0;
	strv_free(&p->au_names);
	cmd_begin(p, PK_GET_USERS, &e);
	syncproto_enc_atom(&e, "GET");
	syncproto_enc_atom(&e, "USERS");
	if (cmd_end(p, &e, err) < 0 || drain(p, err) < 0)
		goto out;
	if (p->fatal) {
		fail_session(p, err);
		goto out;
	}
	/* ours come from users.db in name order; only unknown summaries open
	 * a user database (counted) */
	if (syncdigest_users(p->st, lum_cb, &l, &opened, err) < 0)
		goto out;
	/* both lists in strcmp order (users.db lists ours so already; a
	 * replica may answer in any order) */
	a.lix = sorted_index(&l.names, &a.lnames);
	nr = p->au_names.n;
	a.rix = sorted_index(&p->au_names, &a.rnames);
	nr = p->au_names.n;
	for (size_t k = 1; k < nr; k++)
		if (str_eq(a.rnames[k - 1], a.rnames[k])) {
			err_set(err, ERR_INVALID, "GET USERS: user %s listed twice", log_q(a.rnames[k]));
			goto out;
		}
	(void)syncdigest_merge(a.lnames, l.names.n, a.rnames, nr, ae_pair, &a);
	rc = ae_run(p, &a, err);
	p->ae_compared = a.compared;
	p->ae_opened = opened + a.opened;
	if (differ_r != NULL)
		*differ_r = a.differ + a.unuser.n;
out:
	strv_free(&a.full);
	strv_free(&a.check);
	free(a.check_k);
	strv_free(&a.unuser);
	free(a.rix);
	free(a.rnames);
	free(a.lix);
	free(a.lnames);
	strv_free(&l.names);
	free(l.modseq);
	free(l.digest);
	strv_free(&p->au_names);
	return rc;
}

void
syncpush_ae_counts(const struct syncpush *p, size_t *compared_r, size_t *opened_r)
{
	*compared_r = p->ae_compared;
	*opened_r = p->ae_opened;
}

uint64_t
syncpush_peer_epoch(const struct syncpush *p)
{
	return p->peer_epoch;
}

uint64_t
syncpush_peer_local_gen(const struct syncpush *p)
{
	return p->peer_local_gen;
}

void
syncpush_set_ae_yield(struct syncpush *p, syncpush_yield_fn fn, void *ctx)
{
	p->ae_yield = fn;
	p->ae_yield_ctx = ctx;
}

static int
all_cb(void *ctx, const struct store_userinfo *ui)
{
	syncpush_batch_add_full(ctx, ui->name);
	return 0;
}

int
syncpush_all_users(struct syncpush *p, struct err *err)
{
	struct syncpush_batch *b = syncpush_batch_new();
	int rc;

	if (store_user_list(p->st, all_cb, b, err) < 0) {
		syncpush_batch_free(&b);
		return -1;
	}
	rc = syncpush_run(p, b, err);
	syncpush_batch_free(&b);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Verify (castorctl verify)                                           */

struct vmb_ctx {
	struct store_mailbox *v;
	size_t n, cap;
};

static int
vmb_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct vmb_ctx *c = ctx;

	(void)name;
	if (mb == NULL || (attrs & STORE_MBATTR_DELETED) || mb->deleted_modseq != 0)
		return 0;
	if (c->n == c->cap) {
		c->cap = c->cap ? 2 * c->cap : 16;
		c->v = xreallocarray(c->v, c->cap, sizeof(*c->v));
	}
	c->v[c->n++] = *mb;
	return 0;
}

static void
verify_line(struct buf *out, size_t *ndiff, const char *user, const char *mbname,
	const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void
verify_line(struct buf *out, size_t *ndiff, const char *user, const char *mbname,
	const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (mbname != NULL)
		buf_printf(out, "user %s mailbox \"%s\": %s\n", user, mbname, text);
	else
		buf_printf(out, "user %s: %s\n", user, text);
	(*ndiff)++;
}

static void
verify_flags(const struct store_record *r, char *out, size_t size)
{
	struct buf b = BUF_INIT;

	store_flags_format(r->sysflags, r->keywords, &b);
	str_lcpy(out, buf_cstr(&b), size);
	buf_free(&b);
}

/* Compare the live records of one mailbox, master (L) vs replica (R). */
static void
verify_records(struct buf *out, size_t *ndiff, const char *user, const char *name,
	struct precs *L, struct precs *R)
{
	size_t i = 0, k = 0;
	char fl[256], fr[256];

	for (;;) {
		const struct store_record *a, *b;
		while (i < L->n && L->v[i].r.expunged_modseq != 0)
			i++;
		while (k < R->n && R->v[k].r.expunged_modseq != 0)
			k++;
		if (i >= L->n && k >= R->n)
			break;
		a = i < L->n ? &L->v[i].r : NULL;
		b = k < R->n ? &R->v[k].r : NULL;
		if (b == NULL || (a != NULL && a->uid < b->uid)) {
			verify_line(out, ndiff, user, name, "uid %u guid %s only on the master", a->uid,
				a->guid);
			i++;
			continue;
		}
		if (a == NULL || b->uid < a->uid) {
			verify_line(out, ndiff, user, name, "uid %u guid %s only on the replica", b->uid,
				b->guid);
			k++;
			continue;
		}
		if (!str_eq(a->guid, b->guid)) {
			verify_line(out, ndiff, user, name, "uid %u names different messages: master guid %s,"
				" replica guid %s", a->uid, a->guid, b->guid);
		} else {
			verify_flags(a, fl, sizeof(fl));
			verify_flags(b, fr, sizeof(fr));
			if (!str_eq(fl, fr) || a->modseq != b->modseq)
				verify_line(out, ndiff, user, name, "uid %u flags differ: master (%s) modseq %llu,"
					" replica (%s) modseq %llu", a->uid, fl, (unsigned long long)a->modseq,
					fr, (unsigned long long)b->modseq);
		}
		i++;
		k++;
	}
}

static int
prec_cmp_uid(const void *a, const void *b)
{
	const struct prec *x = a, *y = b;

	return x->r.uid < y->r.uid ? -1 : x->r.uid > y->r.uid;
}

int
syncpush_verify_user(struct syncpush *p, const char *user, struct buf *out, size_t *ndiff_r,
	struct err *err)
{
	struct pu u;
	struct vmb_ctx lm = { NULL, 0, 0 };
	struct store_user *lu;
	size_t ndiff = 0;
	int rc = -1;
	bool lexists;

	memset(&u, 0, sizeof(u));
	u.name = xstrdup(user);
	*ndiff_r = 0;
	if (send_get_user(p, &u, err) < 0 || drain(p, err) < 0)
		goto out;
	if (p->fatal) {
		fail_session(p, err);
		goto out;
	}
	if (u.r == NULL) {
		err_set(err, ERR_TEMP, "GET USER %s failed", user);
		goto out;
	}
	lu = local_user(p, user, err);
	lexists = lu != NULL;
	if (lu == NULL && err->kind != ERR_NOTFOUND)
		goto out;
	if (!lexists && !u.r->exists) {
		rc = 0;
		goto out;
	}
	if (!lexists || !u.r->exists) {
		verify_line(out, &ndiff, user, NULL, "user only on the %s",
			lexists ? "master" : "replica");
		rc = 0;
		goto out;
	}
	if (store_mailbox_list(lu, "*", STORE_LIST_NO_PARENTS, vmb_cb, &lm, err) < 0)
		goto out;
	/* checksums first */
	for (size_t i = 0; i < lm.n; i++) {
		const struct store_mailbox *L = &lm.v[i];
		struct rmb *R = NULL;
		struct pm *m;
		for (size_t k = 0; k < u.r->nmbs; k++)
			if (str_eq(u.r->mbs[k].uniqueid, L->uniqueid) && u.r->mbs[k].deletedmodseq == 0)
				R = &u.r->mbs[k];
		if (R == NULL) {
			verify_line(out, &ndiff, user, L->name, "mailbox %s only on the master", L->uniqueid);
			continue;
		}
		if (!str_eq(R->name, L->name))
			verify_line(out, &ndiff, user, L->name, "named \"%s\" on the replica", R->name);
		if (R->uidvalidity != L->uidvalidity)
			verify_line(out, &ndiff, user, L->name, "uidvalidity master %u, replica %u",
				L->uidvalidity, R->uidvalidity);
		if (R->crc == L->sync_crc && R->uidnext == L->uidnext && R->hms == L->highestmodseq)
			continue;
		if (R->uidnext != L->uidnext)
			verify_line(out, &ndiff, user, L->name, "uidnext master %u, replica %u",
				L->uidnext, R->uidnext);
		if (R->hms != L->highestmodseq)
			verify_line(out, &ndiff, user, L->name, "highestmodseq master %llu, replica %llu",
				(unsigned long long)L->highestmodseq, (unsigned long long)R->hms);
		if (R->crc != L->sync_crc) {
			if ((m = pu_add_pm(&u, L->uniqueid)) == NULL)
				continue;
			m->L = *L;
			if (send_get_records(p, &u, u.npm - 1, err) < 0)
				goto out;
		}
	}
	for (size_t k = 0; k < u.r->nmbs; k++) {
		bool found = false;
		if (u.r->mbs[k].deletedmodseq != 0)
			continue;
		for (size_t i = 0; i < lm.n && !found; i++)
			found = str_eq(lm.v[i].uniqueid, u.r->mbs[k].uniqueid);
		if (!found)
			verify_line(out, &ndiff, user, u.r->mbs[k].name, "mailbox %s only on the replica",
				u.r->mbs[k].uniqueid);
	}
	if (drain(p, err) < 0)
		goto out;
	if (p->fatal) {
		fail_session(p, err);
		goto out;
	}
	/* records only where the checksums differ */
	for (size_t i = 0; i < u.npm; i++) {
		struct pm *m = &u.pms[i];
		struct precs lr = { 0 };
		struct store_mailbox L;
		uint32_t maxuid;
		uint64_t maxms;
		if (!m->got_rrecs) {
			verify_line(out, &ndiff, user, m->L.name, "records unreadable on the replica");
			continue;
		}
		if (read_local(lu, m->id, 0, &L, &lr, &maxuid, &maxms, err) < 0)
			goto out;
		qsort(lr.v, lr.n, sizeof(*lr.v), prec_cmp_uid);
		qsort(m->rrecs.v, m->rrecs.n, sizeof(*m->rrecs.v), prec_cmp_uid);
		verify_records(out, &ndiff, user, m->L.name, &lr, &m->rrecs);
		precs_free(&lr);
	}
	rc = 0;
out:
	*ndiff_r = ndiff;
	free(lm.v);
	pu_free(&u);
	return rc;
}

int
syncpush_replica_users(struct syncpush *p, char ***names_r, size_t *n_r, struct err *err)
{
	struct syncproto_enc e;
	char **v;

	strv_free(&p->au_names);
	cmd_begin(p, PK_GET_USERS, &e);
	syncproto_enc_atom(&e, "GET");
	syncproto_enc_atom(&e, "USERS");
	if (cmd_end(p, &e, err) < 0 || drain(p, err) < 0)
		return -1;
	if (p->fatal)
		return fail_session(p, err);
	v = xcalloc(p->au_names.n + 1, sizeof(*v));
	for (size_t i = 0; i < p->au_names.n; i++)
		v[i] = xstrdup(p->au_names.v[i]);
	*names_r = v;
	*n_r = p->au_names.n;
	strv_free(&p->au_names);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Restore from the replica (castorctl restore-from)                   */

/* GET BLOB user guid, stored locally.  0 or -1. */
static int
restore_blob(struct syncpush *p, struct store_user *lu, const char *user, const char *guid,
	struct err *err)
{
	struct buf line = BUF_INIT;
	struct syncproto_value *f = NULL, *data = NULL;
	struct syncproto_response r, d;
	int rc;

	buf_puts(&line, "GET BLOB ");
	buf_put_quoted(&line, user, strlen(user));
	buf_printf(&line, " %s", guid);
	rc = simple_cmd(p, buf_cstr(&line), &f, &r, &data, err);
	buf_free(&line);
	if (rc < 0)
		goto out;
	if (rc == 0) {
		rc = err_set(err, r.code_kind != ERR_NONE ? r.code_kind : ERR_TEMP,
			"GET BLOB %s: %s", guid, r.text != NULL ? r.text : "refused");
		goto out;
	}
	if (data == NULL || syncproto_response_parse(data, &d, err) < 0 || d.nargs != 2 ||
	    !str_eq_ci(d.data, "BLOB") || !syncproto_is_text(&d.args[1])) {
		rc = err_set(err, ERR_TEMP, "bad GET BLOB answer for %s", guid);
		goto out;
	}
	rc = store_repl_blob(lu, guid, d.args[1].str, d.args[1].len, err);
out:
	syncproto_value_free(&f);
	syncproto_value_free(&data);
	return rc;
}

/* One replica mailbox into the local store (one transaction). */
static int
restore_mailbox(struct syncpush *p, struct store_user *lu, const char *user, struct pm *m,
	struct syncpush_restore *res, struct err *err)
{
	struct store_mailbox L, cur, mb;
	const struct rmb *R = m->R;
	bool have;

	if (store_txn_begin(lu, err) < 0)
		return -1;
	have = store_mailbox_get_id(lu, R->uniqueid, true, &L, err) == 0;
	if (!have && err->kind != ERR_NOTFOUND)
		goto fail;
	/* another mailbox holds the name here: keep it, under another name
	 * (but an INBOX that never held a message, as a fresh database's,
	 * takes the replica's uniqueid: store_repl_mailbox adopts it) */
	if (store_mailbox_get(lu, R->name, &cur, err) == 0 && !str_eq(cur.uniqueid, R->uniqueid) &&
	    !(str_eq(cur.name, "INBOX") && cur.uidnext == 1)) {
		struct store_status ss;
		if (store_mailbox_status_id(lu, cur.uniqueid, &ss, err) < 0)
			goto fail;
		mb = cur;
		if (ss.messages == 0 && !str_eq(cur.name, "INBOX")) {
			/* empty: retire it (an INBOX, e.g. the one check --repair
			 * recreated, cannot be a tombstone: it is renamed) */
			mb.deleted_modseq = (cur.highestmodseq > cur.modseq ? cur.highestmodseq :
				cur.modseq) + 1;
			mb.modseq = mb.highestmodseq = mb.deleted_modseq;
		} else {
			snprintf(mb.name, sizeof(mb.name), "%.*s (before restore)",
				(int)(sizeof(mb.name) - 20), R->name);
			res->renamed++;
		}
		if (store_repl_mailbox(lu, &mb, err) < 0)
			goto fail;
		log_notice("restore: mailbox out of the way user=%s mailbox=%s name=%s action=%s",
			user, cur.uniqueid, log_q(mb.name), mb.deleted_modseq != 0 ? "retired" : "renamed");
	}
	memset(&mb, 0, sizeof(mb));
	str_lcpy(mb.uniqueid, R->uniqueid, sizeof(mb.uniqueid));
	str_lcpy(mb.name, R->name, sizeof(mb.name));
	mb.uidvalidity = R->uidvalidity;
	mb.uidnext = R->uidnext;
	mb.highestmodseq = R->hms;
	mb.createdmodseq = R->createdmodseq;
	mb.modseq = R->modseq;
	str_lcpy(mb.specialuse, R->specialuse, sizeof(mb.specialuse));
	if (have) {
		if (L.uidnext > mb.uidnext)
			mb.uidnext = L.uidnext;
		if (L.highestmodseq > mb.highestmodseq)
			mb.highestmodseq = L.highestmodseq;
		if (L.modseq > mb.modseq)
			mb.modseq = L.modseq;
	}
	if (store_repl_mailbox(lu, &mb, err) < 0)
		goto fail;
	for (size_t i = 0; i < m->rrecs.n; i++) {
		const struct store_record *r = &m->rrecs.v[i].r;
		struct err e2;
		int x;
		if (r->expunged_modseq != 0)
			continue;
		if ((x = store_blob_exists(lu, r->guid, err)) < 0)
			goto fail;
		if (x == 0) {
			if (restore_blob(p, lu, user, r->guid, err) < 0)
				goto fail;
			res->blobs++;
		}
		if (store_repl_record(lu, R->uniqueid, r, &e2) < 0) {
			if (e2.kind != ERR_CONFLICT) {
				*err = e2;
				goto fail;
			}
			log_warn("restore: uid names another message here, left alone user=%s mailbox=%s"
				" uid=%u replica_guid=%s error=%s", user, R->uniqueid, r->uid, r->guid,
				log_q(e2.msg));
			res->conflicts++;
			continue;
		}
		res->records++;
	}
	if (store_txn_commit(lu, err) < 0)
		return -1;
	res->mailboxes++;
	return 0;
fail:
	store_txn_rollback(lu);
	return -1;
}

int
syncpush_restore_user(struct syncpush *p, const char *user, struct syncpush_restore *res,
	struct err *err)
{
	struct pu u;
	struct store_user *lu;
	void *hook_ctx;
	store_change_hook_fn hook = store_get_change_hook(p->st, &hook_ctx);
	int rc = -1, x;

	memset(res, 0, sizeof(*res));
	memset(&u, 0, sizeof(u));
	u.name = xstrdup(user);
	if (send_get_user(p, &u, err) < 0 || drain(p, err) < 0)
		goto out;
	if (p->fatal) {
		fail_session(p, err);
		goto out;
	}
	if (u.r == NULL || !u.r->exists) {
		err_set(err, ERR_NOTFOUND, "the replica has no user %s", user);
		goto out;
	}
	for (size_t k = 0; k < u.r->nmbs; k++) {
		struct pm *m;
		if (u.r->mbs[k].deletedmodseq != 0)
			continue;
		if ((m = pu_add_pm(&u, u.r->mbs[k].uniqueid)) == NULL)
			continue;
		if (send_get_records(p, &u, u.npm - 1, err) < 0)
			goto out;
	}
	if (drain(p, err) < 0)
		goto out;
	if (p->fatal) {
		fail_session(p, err);
		goto out;
	}
	/* pms[] is complete: point each at its replica row */
	for (size_t i = 0; i < u.npm; i++)
		for (size_t k = 0; k < u.r->nmbs; k++)
			if (str_eq(u.r->mbs[k].uniqueid, u.pms[i].id) && u.r->mbs[k].deletedmodseq == 0)
				u.pms[i].R = &u.r->mbs[k];
	/* A user made here stays out of the sync log, like every write of the
	 * restore: announced, the fresh empty user would race the restore to
	 * the replica; the anti-entropy pass ctl_restore asks for follows. */
	store_set_change_hook(p->st, NULL, NULL);
	if ((x = store_user_exists(p->st, user, err)) < 0)
		goto out;
	if (x == 0) {
		/* a spool left without its users row goes to deleted/ */
		if (store_user_add(p->st, user, NULL, err) < 0)
			goto out;
		res->user_created = true;
	}
	local_user_forget(p, user);
	if ((lu = local_user(p, user, err)) == NULL && err->kind == ERR_DAMAGED) {
		/* restore-from is an explicit creation: the damaged spool goes
		 * aside and the replica's state fills a fresh database */
		log_notice("restore: user damaged here, starting from a fresh database user=%s error=%s",
			user, log_q(err->msg));
		if (store_user_reset(p->st, user, err) < 0)
			goto out;
		res->user_created = true;
		lu = local_user(p, user, err);
	}
	store_set_change_hook(p->st, hook, hook_ctx);
	if (lu == NULL)
		goto out;
	/* INBOX first: the names of the others may hang below it */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < u.npm; i++) {
			struct pm *m = &u.pms[i];
			bool inbox = m->R != NULL && str_eq(m->R->name, "INBOX");
			if (m->R == NULL || inbox != (pass == 0))
				continue;
			if (!m->got_rrecs) {
				err_set(err, ERR_TEMP, "records of %s unreadable on the replica", m->R->name);
				goto out;
			}
			if (restore_mailbox(p, lu, user, m, res, err) < 0) {
				err_prefix(err, "mailbox %s", m->R->name);
				goto out;
			}
		}
	if (store_repl_modseq(lu, u.r->modseq, err) < 0)
		goto out;
	/* records that survived their mailbox row were updated in place: let
	 * the checker recompute the derived values (checksums, usage) */
	local_user_forget(p, user);
	if (store_check(p->st, user, true, NULL, NULL, err) < 0)
		goto out;
	log_notice("restored from the replica user=%s mailboxes=%zu records=%zu bodies=%zu"
		" renamed=%zu conflicts=%zu", user, res->mailboxes, res->records, res->blobs,
		res->renamed, res->conflicts);
	rc = 0;
out:
	store_set_change_hook(p->st, hook, hook_ctx);
	local_user_forget(p, user);
	pu_free(&u);
	return rc;
}
