/*
 * syncpush_resolve.c - split-brain resolutions that write to this
 * server's store (the only writes the master's sync side makes),
 * through a writable handle of their own when the store is read-only:
 * replica messages brought in under renumber and merged flags
 * (syncpush_resolve_local), a replica mailbox that clashes by name
 * (case 5) and mail that arrived there in a mailbox deleted here
 * (case 7; syncpush_resolve_mailboxes).  Each ends by telling every
 * channel to look again (the writes are not in the sync log).
 */
#include "sync/syncpush_int.h"

#include <time.h>

#include "lib/atomicfile.h"
#include "sync/syncconflict.h"

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

int
syncpush_resolve_local(struct syncpush *p, struct pu *u, struct store_user *lu, struct pm *m,
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

	/* the bodies first: GET BLOB for those we lack (each stored durably) */
	for (size_t k = 0; k < m->rrecs.n; k++) {
		const struct store_record *r = &m->rrecs.v[k].r;
		if (r->uid > rmax)
			rmax = r->uid;
		if (fx[k] != FX_ADOPT && fx[k] != FX_IMPORT)
			continue;
		if (syncpush_restore_blob(p, lu, u->name, r->guid, err) < 0)
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

/* GET RECORDS 0 of one replica mailbox, synchronously (nothing else in
 * flight).  t is a scratch pu whose pms[0] gets the records. */
static int
fetch_rrecs(struct syncpush *p, struct pu *t, const char *user, const char *id, struct err *err)
{
	memset(t, 0, sizeof(*t));
	t->name = xstrdup(user);
	(void)pu_add_pm(t, id);
	if (syncpush_send_get_records(p, t, 0, err) < 0 || syncpush_sess_wait(p, err) < 0)
		return -1;
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

	enum syncpush_resolution how = syncpush_plan_report(p, u, SYNCPUSH_C_NAME_CLASH, NULL,
		R->name, 0, NULL, NULL, mine->highestmodseq, R->hms);

	if (!syncpush_plan_resolves(how))
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
	rc = syncpush_restore_mailbox(p, wu, u->name, &t.pms[0], &res, err);
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

/* Case 7's local transaction: the replica's new messages (rrecs, UIDs at
 * or above the tombstone L's UIDNEXT) appended to rec (named name) under
 * fresh UIDs, and the tombstone's UIDNEXT raised to the replica's.  *n
 * counts the records written.  0 or -1. */
static int
recover_records(struct syncpush *p, struct pu *u, struct store_user *wu, const struct rmb *R,
	const struct store_mailbox *L, const struct precs *rrecs, enum syncpush_resolution how,
	const char *name, struct store_mailbox *rec, size_t *n, struct err *err)
{
	struct store_mailbox tomb;
	uint64_t cnt = 0;

	if (store_txn_begin(wu, err) < 0)
		return -1;
	if (store_user_modseq(wu, &cnt, err) < 0 ||
	    store_mailbox_get_id(wu, rec->uniqueid, false, rec, err) < 0 ||
	    store_mailbox_get_id(wu, L->uniqueid, true, &tomb, err) < 0)
		goto fail;
	if (cnt < R->hms)
		cnt = R->hms;
	for (size_t k = 0; k < rrecs->n; k++) {
		struct store_record r = rrecs->v[k].r;
		uint32_t from = r.uid;
		if (r.expunged_modseq != 0 || r.uid < L->uidnext)
			continue;
		r.uid = rec->uidnext++;
		r.modseq = ++cnt;
		if (store_repl_record(wu, rec->uniqueid, &r, err) < 0)
			goto fail;
		(*n)++;
		p->stats.renumbered++;
		log_warn("sync conflict resolved policy=%s user=%s mailbox=%s name=%s replica_uid=%u"
			" recovered_mailbox=%s recovered_name=%s uid=%u guid=%s action=recovered",
			syncconflict_action_name(how), u->name,
			L->uniqueid, log_q(R->name), from, rec->uniqueid, log_q(name), r.uid, r.guid);
	}
	/* the tombstone now covers every UID the replica used: deletable */
	tomb.uidnext = R->uidnext > tomb.uidnext ? R->uidnext : tomb.uidnext;
	if (store_repl_mailbox(wu, &tomb, err) < 0)
		goto fail;
	return store_txn_commit(wu, err);
fail:
	store_txn_rollback(wu);
	return -1;
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
	struct store_mailbox rec;
	struct err e2;
	char name[STORE_MBOX_NAME_MAX + 1];
	size_t n = 0;
	int rc = -1;

	enum syncpush_resolution how = syncpush_plan_report(p, u, SYNCPUSH_C_UID_ABOVE, NULL, R->name,
		R->uidnext - 1, NULL, NULL, L->deleted_modseq, R->hms);

	if (!syncpush_plan_resolves(how))
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
		if (r->expunged_modseq != 0 || r->uid < L->uidnext)
			continue;
		if (syncpush_restore_blob(p, wu, u->name, r->guid, err) < 0)
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
	if (recover_records(p, u, wu, R, L, &t.pms[0].rrecs, how, name, &rec, &n, err) < 0)
		goto out;
	p->stats.mailboxes_resolved++;
	strv_add_uniq(&u->mbids, rec.uniqueid);
	strv_add_uniq(&u->mbids, L->uniqueid);
	rc = 1;
out:
	wuser_close(p, &wst, &wu, rc == 1 || n > 0);
	pu_free(&t);
	return rc;
}

/* Before planning a full sync of u: resolve the mailbox-level conflicts
 * the policy allows (cases 5 and 7).  Returns 1 when something changed
 * here (plan again with fresh replica state), 0 nothing, -1 error. */
int
syncpush_resolve_mailboxes(struct syncpush *p, struct pu *u, struct err *err)
{
	struct store_user *lu;
	int changed = 0, x;

	if (u->fast || u->r == NULL || !u->r->exists || !(u->flags & PU_FULL))
		return 0;
	if ((x = store_user_exists(p->st, u->name, err)) <= 0)
		return x;
	if ((lu = syncpush_sess_user(p, u->name, err)) == NULL)
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
		syncpush_sess_user_forget(p, u->name);
	return changed;
}
