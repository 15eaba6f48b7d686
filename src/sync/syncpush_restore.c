/*
 * syncpush_restore.c - castorctl restore-from: one user's live
 * mailboxes, records and bodies copied from the replica into this
 * server's store, additively (a name held here is moved aside, a UID
 * that names another message here is left alone).  Also GET BLOB, used
 * by the split-brain resolutions to fetch the replica's bodies.
 */
#include "sync/syncpush_int.h"

/* A body the replica holds, unless lu has it already: GET BLOB user
 * guid, stored here.  1 fetched, 0 it was here, -1. */
int
syncpush_restore_blob(struct syncpush *p, struct store_user *lu, const char *user, const char *guid,
	struct err *err)
{
	struct buf line = BUF_INIT;
	struct syncproto_value *f = NULL, *data = NULL;
	struct syncproto_response r, d;
	int rc = store_blob_exists(lu, guid, err);

	if (rc != 0)
		return rc < 0 ? -1 : 0;
	buf_puts(&line, "GET BLOB ");
	buf_put_quoted(&line, user, strlen(user));
	buf_printf(&line, " %s", guid);
	rc = syncpush_sess_simple(p, buf_cstr(&line), &f, &r, &data, err);
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
	rc = store_repl_blob(lu, guid, d.args[1].str, d.args[1].len, err) < 0 ? -1 : 1;
out:
	syncproto_value_free(&f);
	syncproto_value_free(&data);
	return rc;
}

/* Another mailbox holds R's name here: keep it, under another name
 * (but an INBOX that never held a message, as a fresh database's,
 * takes the replica's uniqueid: store_repl_mailbox adopts it).  Inside
 * the caller's transaction.  0 or -1. */
static int
restore_make_room(struct store_user *lu, const char *user, const struct rmb *R,
	struct syncpush_restore *res, struct err *err)
{
	struct store_mailbox cur, mb;
	struct store_status ss;

	if (store_mailbox_get(lu, R->name, &cur, err) < 0 || str_eq(cur.uniqueid, R->uniqueid) ||
	    (str_eq(cur.name, "INBOX") && cur.uidnext == 1))
		return 0;
	if (store_mailbox_status_id(lu, cur.uniqueid, &ss, err) < 0)
		return -1;
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
		return -1;
	log_notice("restore: mailbox out of the way user=%s mailbox=%s name=%s action=%s",
		user, cur.uniqueid, log_q(mb.name), mb.deleted_modseq != 0 ? "retired" : "renamed");
	return 0;
}

/* One replica mailbox into the local store (one transaction). */
int
syncpush_restore_mailbox(struct syncpush *p, struct store_user *lu, const char *user, struct pm *m,
	struct syncpush_restore *res, struct err *err)
{
	struct store_mailbox L, mb;
	const struct rmb *R = m->R;
	bool have;

	if (store_txn_begin(lu, err) < 0)
		return -1;
	have = store_mailbox_get_id(lu, R->uniqueid, true, &L, err) == 0;
	if (!have && err->kind != ERR_NOTFOUND)
		goto fail;
	if (restore_make_room(lu, user, R, res, err) < 0)
		goto fail;
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
		if ((x = syncpush_restore_blob(p, lu, user, r->guid, err)) < 0)
			goto fail;
		if (x == 1)
			res->blobs++;
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

/* The replica's state of u: GET USER, then GET RECORDS of each live
 * mailbox (u->pms, each pointing at its replica row).  0 or -1. */
static int
restore_fetch(struct syncpush *p, struct pu *u, struct err *err)
{
	if (syncpush_send_get_user(p, u, err) < 0 || syncpush_sess_wait(p, err) < 0)
		return -1;
	if (u->r == NULL || !u->r->exists)
		return err_set(err, ERR_NOTFOUND, "the replica has no user %s", u->name);
	for (size_t k = 0; k < u->r->nmbs; k++) {
		struct pm *m;
		if (u->r->mbs[k].deletedmodseq != 0)
			continue;
		if ((m = pu_add_pm(u, u->r->mbs[k].uniqueid)) == NULL)
			continue;
		if (syncpush_send_get_records(p, u, u->npm - 1, err) < 0)
			return -1;
	}
	if (syncpush_sess_wait(p, err) < 0)
		return -1;
	/* pms[] is complete: point each at its replica row */
	for (size_t i = 0; i < u->npm; i++)
		for (size_t k = 0; k < u->r->nmbs; k++)
			if (str_eq(u->r->mbs[k].uniqueid, u->pms[i].id) && u->r->mbs[k].deletedmodseq == 0)
				u->pms[i].R = &u->r->mbs[k];
	return 0;
}

/* The user's database here: created when absent, or a fresh one when it
 * is damaged.  NULL with err on failure. */
static struct store_user *
restore_open(struct syncpush *p, const char *user, struct syncpush_restore *res,
	struct err *err)
{
	void *hook_ctx;
	store_change_hook_fn hook = store_get_change_hook(p->st, &hook_ctx);
	struct store_user *lu = NULL;
	int x;

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
	syncpush_sess_user_forget(p, user);
	if ((lu = syncpush_sess_user(p, user, err)) == NULL && err->kind == ERR_DAMAGED) {
		/* restore-from is an explicit creation: the damaged spool goes
		 * aside and the replica's state fills a fresh database */
		log_notice("restore: user damaged here, starting from a fresh database user=%s error=%s",
			user, log_q(err->msg));
		if (store_user_reset(p->st, user, err) < 0)
			goto out;
		res->user_created = true;
		lu = syncpush_sess_user(p, user, err);
	}
out:
	store_set_change_hook(p->st, hook, hook_ctx);
	return lu;
}

/* Every fetched mailbox into lu, INBOX first (the names of the others
 * may hang below it).  0 or -1. */
static int
restore_mailboxes(struct syncpush *p, struct store_user *lu, struct pu *u,
	struct syncpush_restore *res, struct err *err)
{
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < u->npm; i++) {
			struct pm *m = &u->pms[i];
			bool inbox = m->R != NULL && str_eq(m->R->name, "INBOX");
			if (m->R == NULL || inbox != (pass == 0))
				continue;
			if (!m->got_rrecs)
				return err_set(err, ERR_TEMP, "records of %s unreadable on the replica",
					m->R->name);
			if (syncpush_restore_mailbox(p, lu, u->name, m, res, err) < 0) {
				err_prefix(err, "mailbox %s", m->R->name);
				return -1;
			}
		}
	return 0;
}

int
syncpush_restore_user(struct syncpush *p, const char *user, struct syncpush_restore *res,
	struct err *err)
{
	struct pu u;
	struct store_user *lu;
	int rc = -1;

	memset(res, 0, sizeof(*res));
	memset(&u, 0, sizeof(u));
	u.name = xstrdup(user);
	if (restore_fetch(p, &u, err) < 0 || (lu = restore_open(p, user, res, err)) == NULL ||
	    restore_mailboxes(p, lu, &u, res, err) < 0 ||
	    store_repl_modseq(lu, u.r->modseq, err) < 0)
		goto out;
	/* records that survived their mailbox row were updated in place: let
	 * the checker recompute the derived values (checksums, usage) */
	syncpush_sess_user_forget(p, user);
	if (store_check(p->st, user, true, NULL, NULL, err) < 0)
		goto out;
	log_notice("restored from the replica user=%s mailboxes=%zu records=%zu bodies=%zu"
		" renamed=%zu conflicts=%zu", user, res->mailboxes, res->records, res->blobs,
		res->renamed, res->conflicts);
	rc = 0;
out:
	syncpush_sess_user_forget(p, user);
	pu_free(&u);
	return rc;
}
