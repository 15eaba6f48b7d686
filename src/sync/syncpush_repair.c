/*
 * syncpush_repair.c - the record-by-record comparison of one mailbox
 * after GET RECORDS 0 (a checksum that differs at equal modseq, or a
 * conflict the policy resolves): the policy's decision per replica
 * record, the local writes it needs (syncpush_resolve_local), and the
 * update that then makes the replica a copy of this mailbox; and the
 * reset of a mailbox whose uidvalidity differs (issue 8 case 4).
 */
#include "sync/syncpush_int.h"

#include "sync/syncconflict.h"

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
		if (syncpush_resolve_local(p, u, lu, m, fx, &none, err) < 0 ||
		    (rc = syncpush_plan_read_local(lu, m->id, 0, &m->L, all, &maxuid, &maxms, err)) < 0) {
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
	syncpush_plan_update(m, NULL, false, rc, maxuid, maxms);
	log_warn("sync conflict resolved policy=%s user=%s mailbox=%s name=%s uidvalidity=%u"
		" action=reset-there", syncconflict_action_name(m->reset_res), u->name, m->id,
		log_q(m->L.name), m->L.uidvalidity);
	p->stats.mailboxes_resolved++;
	return 0;
}

/* The highest modseq both sides agree on (a record identical on both):
 * the base syncconflict_merge_flags() merges from. */
static uint64_t
repair_base(const struct precs *all, const struct precs *rrecs)
{
	uint64_t base = 0;
	size_t i = 0, k = 0;

	while (i < all->n && k < rrecs->n) {
		const struct store_record *l = &all->v[i].r, *r = &rrecs->v[k].r;
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
	return base;
}

/* A live record only the replica has: what the policy makes of it. */
static enum rfix
repair_replica_only(struct syncpush *p, struct pu *u, struct pm *m, const struct store_record *r)
{
	enum syncpush_resolution res = syncpush_plan_report(p, u, r->uid >= m->L.uidnext ?
		SYNCPUSH_C_UID_ABOVE : SYNCPUSH_C_REPLICA_RECORD, m, m->L.name, r->uid, NULL, r->guid,
		0, r->modseq);

	if (res == SYNCPUSH_R_RENUMBER)
		return r->uid >= m->L.uidnext ? FX_ADOPT : FX_IMPORT;
	if (res == SYNCPUSH_R_REPLACE)
		return FX_DROP;
	return FX_LEFT;
}

/* The replica changed the flags of record l/r since the two agreed:
 * the policy merges (the merged record goes to *fl), keeps ours, or
 * leaves both alone. */
static void
repair_flags(struct syncpush *p, struct pu *u, struct pm *m, const struct store_record *l,
	const struct store_record *r, uint64_t base, enum rfix *fx, struct precs *fl,
	struct buf *kwb)
{
	struct syncpush_conflict c;
	enum syncpush_resolution res;

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
	res = syncpush_sess_conflict(p, &c);
	if (res == SYNCPUSH_R_MERGE) {
		struct store_record x = *l;
		if (syncconflict_merge_flags(l->sysflags, l->keywords, l->modseq, r->sysflags,
			r->keywords, r->modseq, base, &x.sysflags, kwb)) {
			x.keywords = buf_cstr(kwb);
			precs_add(fl, &x);
			*fx = FX_FLAGS;
		}
	} else if (res != SYNCPUSH_R_MASTER) {
		*fx = FX_LEFT;
		u->conflicted = true;
	}
}

/* Pass 1 (both lists in uid order): what the policy makes of each
 * conflict, in fx[] (one per replica record); merged flags in *fl. */
static void
repair_decide(struct syncpush *p, struct pu *u, struct pm *m, const struct precs *all,
	enum rfix *fx, struct precs *fl)
{
	uint64_t base = repair_base(all, &m->rrecs);
	struct buf kwb = BUF_INIT;
	size_t i = 0, k = 0;

	while (i < all->n || k < m->rrecs.n) {
		const struct store_record *l = i < all->n ? &all->v[i].r : NULL;
		const struct store_record *r = k < m->rrecs.n ? &m->rrecs.v[k].r : NULL;

		if (l != NULL && (r == NULL || l->uid < r->uid)) {
			i++;
			continue;
		}
		if (r != NULL && (l == NULL || r->uid < l->uid)) {
			if (r->expunged_modseq == 0)
				fx[k] = repair_replica_only(p, u, m, r);
			k++;
			continue;
		}
		if (!str_eq(l->guid, r->guid) && (l->expunged_modseq == 0 || r->expunged_modseq == 0)) {
			enum syncpush_resolution res = syncpush_plan_report(p, u, SYNCPUSH_C_GUID, m,
				m->L.name, l->uid, l->guid, r->guid, l->modseq, r->modseq);
			if (res == SYNCPUSH_R_RENUMBER && r->expunged_modseq == 0)
				fx[k] = FX_IMPORT;   /* theirs to a fresh UID; then ours replaces it */
			else if (syncpush_plan_resolves(res))
				fx[k] = FX_REPLACE;
			else
				fx[k] = FX_LEFT;
		} else if (str_eq(l->guid, r->guid) && l->expunged_modseq == 0 &&
		    r->expunged_modseq == 0 && r->modseq > base &&
		    (r->modseq > l->modseq || l->modseq <= base) && (l->sysflags != r->sysflags ||
		    !str_eq(l->keywords ? l->keywords : "", r->keywords ? r->keywords : ""))) {
			/* the replica changed the flags since the two agreed */
			repair_flags(p, u, m, l, r, base, &fx[k], fl, &kwb);
		}
		i++;
		k++;
	}
	buf_free(&kwb);
}

/* Pass 2, a live record only the replica has: expunged there when it
 * was brought here under a fresh UID or lost under replace (tomb: the
 * modseq of those expunges, 0 when nothing was written here).  true
 * when it stays (the mailbox is left diverged). */
static bool
repair_send_replica_only(struct syncpush *p, struct pu *u, struct pm *m,
	const struct store_record *r, enum rfix fx, uint64_t tomb)
{
	struct store_record t = *r;

	if ((fx != FX_IMPORT && fx != FX_DROP) || tomb == 0)
		return true;
	t.modseq = tomb;
	t.expunged_modseq = tomb;
	precs_add(&m->recs, &t);
	m->recs.v[m->recs.n - 1].replace = fx == FX_DROP;
	if (fx == FX_DROP) {
		p->stats.replaced++;
		log_warn("sync conflict resolved policy=replace user=%s mailbox=%s"
			" name=%s replica_uid=%u replica_guid=%s action=quarantine",
			u->name, m->id, log_q(m->L.name), r->uid, r->guid);
	}
	return false;
}

/* Pass 2, one UID naming different messages on the two sides (one of
 * them live).  true when it stays (the mailbox is left diverged). */
static bool
repair_send_guid(struct syncpush *p, struct pu *u, struct pm *m, const struct store_record *l,
	const struct store_record *r, enum rfix fx, uint64_t tomb)
{
	if (fx == FX_IMPORT && l->expunged_modseq != 0 && tomb != 0) {
		/* ours is gone, theirs is here now under a fresh UID */
		struct store_record t = *r;
		t.modseq = tomb;
		t.expunged_modseq = tomb;
		precs_add(&m->recs, &t);
		return false;
	}
	if ((fx != FX_IMPORT && fx != FX_REPLACE) || tomb == 0)
		return true;
	precs_add(&m->recs, l);
	m->recs.v[m->recs.n - 1].replace = true;
	if (l->expunged_modseq == 0)
		strv_add(&m->guids, l->guid);
	if (r->expunged_modseq == 0)
		p->stats.replaced++;
	log_warn("sync conflict resolved policy=%s user=%s mailbox=%s name=%s"
		" uid=%u master_guid=%s replica_guid=%s action=replace-there",
		fx == FX_IMPORT ? "renumber" : "replace", u->name, m->id,
		log_q(m->L.name), l->uid, l->guid, r->guid);
	return false;
}

/* Pass 2: the update that makes the replica a copy of this mailbox (all:
 * our records, read again after any local resolution).  true when
 * something is left diverged. */
static bool
repair_send(struct syncpush *p, struct pu *u, struct pm *m, const struct precs *all,
	const enum rfix *fx, uint64_t tomb)
{
	size_t i = 0, k = 0;
	bool left = false;

	while (i < all->n || k < m->rrecs.n) {
		const struct store_record *l = i < all->n ? &all->v[i].r : NULL;
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
			if (r->expunged_modseq == 0 &&
			    repair_send_replica_only(p, u, m, r, fx[k], tomb))
				left = true;
			k++;
			continue;
		}
		/* same uid */
		if (!str_eq(l->guid, r->guid)) {
			if ((l->expunged_modseq == 0 || r->expunged_modseq == 0) &&
			    repair_send_guid(p, u, m, l, r, fx[k], tomb))
				left = true;
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
	return left;
}

/* After GET RECORDS: compare record by record and fill the update.
 * Under renumber/replace (the conflict hook decides per record), the
 * conflicts are resolved first (syncpush_resolve_local), then compared
 * again: the update then makes the replica an exact copy of this
 * mailbox. */
int
syncpush_repair_plan(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
	struct err *err)
{
	struct precs all = { 0 }, fl = { 0 };
	struct plan_since since = { m->r_hms, m->r_crc, m->r_uidnext };
	uint32_t maxuid = 0;
	uint64_t maxms = 0, tomb = 0;
	bool left, local = false;
	enum rfix *fx;
	int rc;

	p->stats.repairs++;
	rc = syncpush_plan_read_local(lu, m->id, 0, &m->L, &all, &maxuid, &maxms, err);
	if (rc < 0)
		return -1;
	if (m->reset)
		return plan_reset(p, u, lu, m, &all, maxuid, maxms, rc, err);
	if (m->r_hms > m->L.highestmodseq) {
		if (!syncpush_plan_resolves(syncpush_plan_report(p, u, SYNCPUSH_C_MODSEQ_AHEAD, m,
			m->L.name, 0, NULL, NULL, m->L.highestmodseq, m->r_hms))) {
			m->act = PM_NONE;
			precs_free(&all);
			return 0;
		}
		local = true;
	}
	fx = xcalloc(m->rrecs.n + 1, sizeof(*fx));
	repair_decide(p, u, m, &all, fx, &fl);
	for (size_t k = 0; k < m->rrecs.n; k++)
		if (fx[k] != FX_NONE && fx[k] != FX_LEFT)
			local = true;
	if (local) {
		rc = syncpush_resolve_local(p, u, lu, m, fx, &fl, err);
		if (rc < 0)
			log_error("split-brain resolution failed user=%s mailbox=%s name=%s error=%s",
				u->name, m->id, log_q(m->L.name), log_q(err->msg));
		else
			rc = syncpush_plan_read_local(lu, m->id, 0, &m->L, &all, &maxuid, &maxms, err);
		tomb = m->L.highestmodseq;
	}
	precs_free(&fl);
	if (rc < 0) {
		free(fx);
		precs_free(&all);
		return -1;
	}
	left = repair_send(p, u, m, &all, fx, tomb);
	free(fx);
	precs_free(&all);
	syncpush_plan_update(m, &since, left, rc, maxuid, maxms);
	if (left)
		log_notice("mailbox left diverged user=%s mailbox=%s name=%s (conflicts above)",
			u->name, m->id, log_q(m->L.name));
	return 0;
}
