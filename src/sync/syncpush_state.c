/*
 * syncpush_state.c - the in-memory state of the master side of
 * replication (syncpush_int.h): string vectors, the replica's state as a
 * GET USER answer gave it (struct ruser), the cache of replica mailbox
 * rows taken from answers (struct rcache, the fast path's picture of the
 * replica), and the plan records of a round (struct pu per user, struct
 * pm per mailbox, struct precs of records).  No I/O here.
 */
#include "sync/syncpush_int.h"

#define CACHE_MAX 200000

void
strv_add(struct strv *s, const char *x)
{
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 8;
		s->v = xreallocarray(s->v, s->cap, sizeof(*s->v));
	}
	s->v[s->n++] = xstrdup(x);
}

bool
strv_has(const struct strv *s, const char *x)
{
	for (size_t i = 0; i < s->n; i++)
		if (str_eq(s->v[i], x))
			return true;
	return false;
}

void
strv_add_uniq(struct strv *s, const char *x)
{
	if (!strv_has(s, x))
		strv_add(s, x);
}

void
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
void
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

void
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

struct rmb *
ruser_find(struct ruser *r, const char *id)
{
	for (size_t i = 0; r != NULL && i < r->nmbs; i++)
		if (str_eq(r->mbs[i].uniqueid, id))
			return &r->mbs[i];
	return NULL;
}

/* The live replica mailbox holding name, or NULL. */
struct rmb *
ruser_find_name(struct ruser *r, const char *name)
{
	for (size_t i = 0; r != NULL && i < r->nmbs; i++)
		if (r->mbs[i].deletedmodseq == 0 && str_eq(r->mbs[i].name, name))
			return &r->mbs[i];
	return NULL;
}

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

void
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

struct centry *
cache_get(struct rcache *c, const char *user, const char *id)
{
	for (struct centry *e = c->b[cache_hash(user, id)]; e != NULL; e = e->next)
		if (str_eq(e->mb.uniqueid, id) && str_eq(e->user, user))
			return e;
	return NULL;
}

void
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

void
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
void
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

void
precs_free(struct precs *p)
{
	for (size_t i = 0; i < p->n; i++)
		free(p->v[i].kw);
	free(p->v);
	memset(p, 0, sizeof(*p));
}

void
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

void
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

void
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

void
pu_free(struct pu *u)
{
	pu_reset_plan(u);
	free(u->name);
	strv_free(&u->mbids);
	strv_free(&u->force_repair);
}

struct pm *
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
