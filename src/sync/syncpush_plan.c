/*
 * syncpush_plan.c - planning one user: read its local state (mailbox
 * rows and records read consistently, RULES 3 in syncpush_round.c;
 * subscriptions, password, quota), compare each mailbox with the
 * replica's state (from GET USER or the cache) and decide its action:
 * nothing, an update (a creation, an undelete, a rename, new records),
 * a deletion (only from a tombstone here, RULES 4), or a repair (GET
 * RECORDS first, syncpush_repair.c).  Conflicts met on the way go to
 * the conflict hook (syncpush_plan_report).
 */
#include "sync/syncpush_int.h"


#include "sync/syncdigest.h"

#define RESERVE_SKIP_MAX (64u * 1024)   /* bodies up to this size skip RESERVE */

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
int
syncpush_plan_read_local(struct store_user *lu, const char *id, uint64_t since,
	struct store_mailbox *L, struct precs *recs, uint32_t *maxuid, uint64_t *maxmodseq,
	struct err *err)
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

enum syncpush_resolution
syncpush_plan_report(struct syncpush *p, struct pu *u, enum syncpush_conflict_kind k,
	const struct pm *m, const char *name, uint32_t uid, const char *mg, const char *rg,
	uint64_t mm, uint64_t rm)
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
	res = syncpush_sess_conflict(p, &c);
	if (res != SYNCPUSH_R_RENUMBER && res != SYNCPUSH_R_REPLACE)
		u->conflicted = true;
	return res;
}

bool
syncpush_plan_resolves(enum syncpush_resolution r)
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

/* The end every plan that sends an update shares (a creation, an
 * update, a reset, a repair): what the replica is believed to hold
 * (since; NULL for a creation), whether the result will differ from
 * ours, and the HIGHESTMODSEQ and UIDNEXT to send: ours, from the row
 * and the records read (maxuid, maxms), never below the replica's.
 * rc is syncpush_plan_read_local's (1: the row did not move, CHECKSUM
 * may go). */
void
syncpush_plan_update(struct pm *m, const struct plan_since *since, bool diverged, int rc,
	uint32_t maxuid, uint64_t maxms)
{
	m->create = since == NULL;
	m->since_modseq = since != NULL ? since->hms : 0;
	m->since_crc = since != NULL ? since->crc : 0;
	m->diverged = diverged;
	m->send_crc = rc == 1 && !diverged;
	m->hms = m->L.highestmodseq > maxms ? m->L.highestmodseq : maxms;
	if (since != NULL && m->hms < since->hms)
		m->hms = since->hms;
	m->uidnext = m->L.uidnext > maxuid ? m->L.uidnext : maxuid + 1;
	if (since != NULL && m->uidnext < since->uidnext)
		m->uidnext = since->uidnext;
	m->act = PM_UPDATE;
}

/* A creation (since NULL) or an update from the replica's state: read
 * our records since then and plan them.  0 or -1. */
static int
plan_send(struct pm *m, struct store_user *lu, const struct plan_since *since, bool diverged,
	struct err *err)
{
	struct precs all = { 0 };
	uint32_t maxuid = 0;
	uint64_t maxms = 0;
	int rc = syncpush_plan_read_local(lu, m->id, since != NULL ? since->hms : 0, &m->L, &all,
		&maxuid, &maxms, err);

	if (rc >= 0) {
		select_records(m, &all, since != NULL ? since->uidnext : 0, since == NULL);
		syncpush_plan_update(m, since, diverged, rc, maxuid, maxms);
	}
	precs_free(&all);
	return rc < 0 ? -1 : 0;
}

/* The replica's mailbox h holds the name m needs there: a clash, unless
 * h is on its way out here (renamed or deleted).  0 go on, 1 plan the
 * whole user first (h is outside this plan), 2 a clash (reported, m
 * planned as nothing). */
static int
plan_name_held(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	const struct rmb *h)
{
	struct store_mailbox hl;
	struct err e2;
	bool leaving = store_mailbox_get_id(lu, h->uniqueid, true, &hl, &e2) == 0 &&
		(hl.deleted_modseq != 0 || !str_eq(hl.name, h->name));

	if (!leaving) {
		syncpush_plan_report(p, u, SYNCPUSH_C_NAME_CLASH, m, m->L.name, 0, NULL, NULL,
			m->L.highestmodseq, h->hms);
		m->act = PM_NONE;
		return 2;
	}
	return (u->flags & PU_FULL) ? 0 : 1;
}

/* A tombstone here: the deletion goes to a replica that holds the
 * mailbox live, unless mail arrived there after our last UID. */
static void
plan_deleted(struct syncpush *p, struct pu *u, struct pm *m)
{
	struct rmb *R = m->R;

	m->act = PM_NONE;
	if (R == NULL || R->deletedmodseq != 0)
		return;
	if (R->uidnext > m->L.uidnext) {
		/* mail arrived on the replica after our last UID: issue 8 case 7 */
		syncpush_plan_report(p, u, SYNCPUSH_C_UID_ABOVE, m, R->name, R->uidnext - 1, NULL,
			NULL, m->L.deleted_modseq, R->hms);
		return;
	}
	m->act = PM_DELETE;
	m->oldname = xstrdup(R->name);
}

/* Live here, absent there (or a tombstone we undelete): a creation. */
static int
plan_create(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	struct err *err)
{
	struct rmb *h = u->r != NULL ? ruser_find_name(u->r, m->L.name) : NULL;
	int x;

	if (h != NULL && !(str_eq(h->name, "INBOX") && h->uidnext == 1)) {
		/* the holder may be on its way out (renamed or deleted here) */
		if ((x = plan_name_held(p, u, lu, m, h)) != 0)
			return x == 1 ? 1 : 0;
	}
	return plan_send(m, lu, NULL, false, err);
}

/* Live on both sides: a reset (uidvalidity), a repair (conflicts the
 * policy resolves, or a checksum that differs at equal modseq), nothing
 * (in sync), or an update (a rename, new records, row fields). */
static int
plan_both(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	struct err *err)
{
	struct rmb *R = m->R;
	struct plan_since since = { R->hms, R->crc, R->uidnext };
	bool repair = strv_has(&u->force_repair, m->id);
	int x;

	if (R->uidvalidity != m->L.uidvalidity) {
		m->reset_res = syncpush_plan_report(p, u, SYNCPUSH_C_UIDVALIDITY, m, m->L.name, 0,
			NULL, NULL, m->L.uidvalidity, R->uidvalidity);
		if (!syncpush_plan_resolves(m->reset_res)) {
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
	if (R->uidnext > m->L.uidnext || R->hms > m->L.highestmodseq) {
		bool above = R->uidnext > m->L.uidnext;
		enum syncpush_resolution res = above ?
			syncpush_plan_report(p, u, SYNCPUSH_C_UID_ABOVE, m, m->L.name, R->uidnext - 1,
				NULL, NULL, m->L.uidnext, R->uidnext) :
			syncpush_plan_report(p, u, SYNCPUSH_C_MODSEQ_AHEAD, m, m->L.name, 0, NULL,
				NULL, m->L.highestmodseq, R->hms);
		if (!syncpush_plan_resolves(res)) {
			m->act = PM_NONE;
			return 0;
		}
		repair = true;   /* record by record, under the policy */
	}
	if (!str_eq(R->name, m->L.name)) {
		struct rmb *h = u->r != NULL ? ruser_find_name(u->r, m->L.name) : NULL;
		if (h != NULL && !str_eq(h->uniqueid, m->id) &&
		    (x = plan_name_held(p, u, lu, m, h)) != 0)
			return x == 1 ? 1 : 0;
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
	return plan_send(m, lu, &since, m->diverged, err);
}

/* Plan one mailbox.  m->R is the replica's state (NULL absent).  0, 1
 * when the user must be planned again with every mailbox (a name this
 * plan needs is held by a mailbox outside it), or -1. */
static int
plan_mailbox(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	struct err *err)
{
	struct rmb *R = m->R;
	int rc = store_mailbox_get_id(lu, m->id, true, &m->L, err);

	if (rc < 0 && err->kind != ERR_NOTFOUND)
		return -1;
	if (rc < 0) {
		/* nothing here, not even a tombstone */
		if (R != NULL && R->deletedmodseq == 0 && (u->flags & PU_FULL))
			syncpush_plan_report(p, u, SYNCPUSH_C_REPLICA_MAILBOX, m, R->name, 0, NULL,
				NULL, 0, R->hms);
		m->act = PM_NONE;
		return 0;
	}
	if (m->L.deleted_modseq != 0) {
		plan_deleted(p, u, m);
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
		syncpush_plan_report(p, u, SYNCPUSH_C_DELETED_REPLICA, m, m->L.name, 0, NULL, NULL,
			m->L.highestmodseq, R->deletedmodseq);
		m->act = PM_NONE;
		return 0;
	}
	return R == NULL ? plan_create(p, u, lu, m, err) : plan_both(p, u, lu, m, err);
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
			syncproto_password_digest(u->hash, hex);
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

/* The mailboxes to plan: the hinted ones (and those to repair), or for
 * a full sync every mailbox on either side (tombstones included). */
static int
plan_ids(struct pu *u, struct store_user *lu, struct strv *ids, struct err *err)
{
	struct lmb_ctx lc = { ids };

	if (u->fast || !(u->flags & PU_FULL)) {
		for (size_t i = 0; i < u->mbids.n; i++)
			strv_add_uniq(ids, u->mbids.v[i]);
		for (size_t i = 0; i < u->force_repair.n; i++)
			strv_add_uniq(ids, u->force_repair.v[i]);
		return 0;
	}
	if (store_mailbox_list(lu, "*", STORE_LIST_DELETED | STORE_LIST_NO_PARENTS, lmb_cb, &lc,
		err) < 0)
		return -1;
	for (size_t i = 0; u->r != NULL && i < u->r->nmbs; i++)
		strv_add_uniq(ids, u->r->mbs[i].uniqueid);
	return 0;
}

/* Forget the mailboxes planned so far. */
static void
plan_drop(struct pu *u)
{
	for (size_t k = 0; k < u->npm; k++)
		pm_free(&u->pms[k]);
	u->npm = 0;
}

/* Plan u's mailboxes.  0 planned, 1 the fast path cannot serve this user
 * (it goes to the next round with a GET USER), -1 error. */
static int
plan_mailboxes(struct syncpush *p, struct pu *u, struct store_user *lu, struct err *err)
{
	struct strv ids = { 0 };
	int x;

again:
	strv_free(&ids);
	x = plan_ids(u, lu, &ids, err) < 0 ? -1 : 0;
	for (size_t i = 0; x == 0 && i < ids.n; i++) {
		struct pm *m = pu_add_pm(u, ids.v[i]);
		struct centry *ce;
		if (m == NULL)
			continue;
		if (!u->fast) {
			m->R = ruser_find(u->r, m->id);
		} else if ((ce = cache_get(&p->cache, u->name, m->id)) != NULL) {
			m->rcopy = ce->mb;
			m->rcopy.name = xstrdup(ce->mb.name);
			m->R = &m->rcopy;
		} else {
			/* not cached: this user needs a GET USER */
			x = 1;
			break;
		}
		x = plan_mailbox(p, u, lu, m, err);
		if (x == 1) {
			/* a name is held by a mailbox outside the plan: plan everything */
			plan_drop(u);
			u->flags |= PU_FULL;
			goto again;
		}
		if (x == 0 && u->fast && (m->act == PM_DELETE || m->act == PM_REPAIR ||
		    m->oldname != NULL || m->create)) {
			/* anything but a plain update wants the full picture */
			plan_drop(u);
			x = 1;
		}
	}
	strv_free(&ids);
	if (x == 1) {
		u->fast = false;
		u->retry = true;
	}
	return x;
}

/* Deleted and created again here (an UNUSER hint): when the replica's
 * user is the old one (another INBOX that held mail), it is deleted
 * there first and this one sent as new.  0 or -1. */
static int
plan_reborn(struct pu *u, struct store_user *lu, struct err *err)
{
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
	return 0;
}

/* Plan a whole user.  The user's replica state is u->r (full path) or the
 * cache (fast path).  0, or -1 on a local error (counted, user skipped). */
int
syncpush_plan_user(struct syncpush *p, struct pu *u, struct err *err)
{
	struct store_user *lu;
	int x;

	p->stats.users++;
	x = store_user_exists(p->st, u->name, err);
	if (x < 0)
		return -1;
	u->local_exists = x == 1;
	if (!u->local_exists) {
		syncpush_sess_user_forget(p, u->name);
		if (u->flags & PU_UNUSER)
			u->send_unuser = true;
		return 0;
	}
	if ((lu = syncpush_sess_user(p, u->name, err)) == NULL)
		return -1;
	if (store_user_modseq(lu, &u->m0, err) < 0)
		return -1;
	free(u->hash);
	u->hash = NULL;
	if (syncdigest_userinfo(p->st, u->name, &u->ui, &u->hash, err) < 0)
		return -1;
	if (!u->fast && u->r != NULL && u->r->exists && (u->flags & PU_UNUSER) &&
	    plan_reborn(u, lu, err) < 0)
		return -1;
	if (!u->fast && u->r != NULL && !u->r->exists)
		u->send_create = true;
	if ((x = plan_mailboxes(p, u, lu, err)) != 0)
		return x < 0 ? -1 : 0;
	if (!u->fast && plan_user_fields(p, u, lu, err) < 0)
		return -1;
	if (!u->fast && (u->flags & PU_FULL))
		u->final_user = true;
	return 0;
}

/* Temporary names for renames whose current name another rename wants. */
void
syncpush_plan_renames(struct pu *u)
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
