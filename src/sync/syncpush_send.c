/*
 * syncpush_send.c - encoding the commands of a plan into the pipeline:
 * GET USER, GET RECORDS, RESERVE, UPLOAD, APPLY MAILBOX (in chunks of
 * CHUNK_RECORDS records, RULES 2 in syncpush_round.c), APPLY RENAME /
 * DELETE / SUB / PASSWORD / USER / UNUSER, in the order a user's wave C
 * needs them.  Failpoints sync.push.before_upload, after_upload.
 */
#include "sync/syncpush_int.h"

#include "lib/failpoint.h"
#include "sync/syncapply.h"

#define CHUNK_RECORDS 1000
#define RESERVE_CHUNK 5000

static int
prec_cmp_modseq(const void *a, const void *b)
{
	const struct prec *x = a, *y = b;
	uint64_t mx = x->r.modseq, my = y->r.modseq;

	if (mx != my)
		return mx < my ? -1 : 1;
	return x->r.uid < y->r.uid ? -1 : x->r.uid > y->r.uid;
}

/* Begin a command about u: "<tag> WORD [WORD2] <user>". */
static struct pcmd *
send_begin(struct syncpush *p, struct pu *u, enum pk kind, const char *word, const char *word2,
	struct syncproto_enc *e)
{
	struct pcmd *c = syncpush_sess_begin(p, kind, e);

	c->u = u;
	syncproto_enc_atom(e, word);
	if (word2 != NULL)
		syncproto_enc_atom(e, word2);
	syncproto_enc_cstring(e, u->name);
	return c;
}

int
syncpush_send_get_user(struct syncpush *p, struct pu *u, struct err *err)
{
	struct syncproto_enc e;

	send_begin(p, u, PK_GET_USER, "GET", "USER", &e);
	return syncpush_sess_end(p, &e, err);
}

int
syncpush_send_get_records(struct syncpush *p, struct pu *u, size_t mi, struct err *err)
{
	struct syncproto_enc e;
	struct pcmd *c = send_begin(p, u, PK_GET_RECORDS, "GET", "RECORDS", &e);

	c->mi = mi;
	syncproto_enc_atom(&e, u->pms[mi].id);
	syncproto_enc_u64(&e, 0);
	return syncpush_sess_end(p, &e, err);
}

int
syncpush_send_reserve(struct syncpush *p, struct pu *u, struct err *err)
{
	strv_sort_uniq(&u->need);
	for (size_t i = 0; i < u->need.n; i += RESERVE_CHUNK) {
		struct syncproto_enc e;

		send_begin(p, u, PK_RESERVE, "RESERVE", NULL, &e);
		syncproto_enc_open(&e, '(');
		for (size_t k = i; k < u->need.n && k < i + RESERVE_CHUNK; k++)
			syncproto_enc_atom(&e, u->need.v[k]);
		syncproto_enc_close(&e);
		if (syncpush_sess_end(p, &e, err) < 0)
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
	struct err e2;

	if (store_blob_map(lu, guid, &b, &e2) < 0) {
		/* gone since we read the record (expunged and purged): the
		 * APPLY will say NOTFOUND and the next round reads again */
		log_info("body vanished before upload user=%s guid=%s error=%s", u->name, guid,
			log_q(e2.msg));
		return 0;
	}
	send_begin(p, u, PK_UPLOAD, "UPLOAD", NULL, &e);
	syncproto_enc_atom(&e, guid);
	syncproto_enc_literal(&e, b.data, b.len);
	p->stats.uploads++;
	p->stats.upload_bytes += b.len;
	store_blob_release(&b);
	return syncpush_sess_end(p, &e, err);
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
		struct pcmd *c = send_begin(p, u, PK_APPLY_MAILBOX, "APPLY", "MAILBOX", &e);
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
		c->mi = mi;
		c->last = last;
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
		if (syncpush_sess_end(p, &e, err) < 0)
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
	struct pcmd *c = send_begin(p, u, PK_APPLY_RENAME, "APPLY", "RENAME", &e);

	c->mi = mi;
	syncproto_enc_open(&e, '(');
	syncproto_enc_atom(&e, "UNIQUEID");
	syncproto_enc_atom(&e, u->pms[mi].id);
	syncproto_enc_key_string(&e, "OLDNAME", from);
	syncproto_enc_key_string(&e, "NAME", to);
	syncproto_enc_key_u64(&e, "MODSEQ", u->pms[mi].L.modseq);
	syncproto_enc_close(&e);
	return syncpush_sess_end(p, &e, err);
}

static int
send_delete(struct syncpush *p, struct pu *u, size_t mi, struct err *err)
{
	struct syncproto_enc e;
	struct pm *m = &u->pms[mi];
	struct pcmd *c = send_begin(p, u, PK_APPLY_DELETE, "APPLY", "DELETE", &e);

	c->mi = mi;
	syncproto_enc_open(&e, '(');
	syncproto_enc_atom(&e, "UNIQUEID");
	syncproto_enc_atom(&e, m->id);
	syncproto_enc_key_string(&e, "NAME", m->oldname);
	syncproto_enc_key_u64(&e, "DELETEDMODSEQ", m->L.deleted_modseq);
	syncproto_enc_close(&e);
	return syncpush_sess_end(p, &e, err);
}

int
syncpush_send_apply_user(struct syncpush *p, struct pu *u, bool quota, uint64_t modseq, bool final,
	struct err *err)
{
	struct syncproto_enc e;
	struct pcmd *c = send_begin(p, u, PK_APPLY_USER, "APPLY", "USER", &e);

	c->final = final;
	syncproto_enc_open(&e, '(');
	syncproto_enc_key_string(&e, "NAME", u->name);
	syncproto_enc_key_u64(&e, "HIGHESTMODSEQ", modseq);
	if (quota) {
		syncproto_enc_key_quota(&e, "QUOTA-BYTES", u->ui.quota_bytes);
		syncproto_enc_key_quota(&e, "QUOTA-MESSAGES", u->ui.quota_messages);
	}
	syncproto_enc_close(&e);
	return syncpush_sess_end(p, &e, err);
}

/* APPLY UNUSER: the user is gone here (RULES 4). */
static int
send_unuser(struct syncpush *p, struct pu *u, struct err *err)
{
	struct syncproto_enc e;

	send_begin(p, u, PK_APPLY_UNUSER, "APPLY", "UNUSER", &e);
	syncproto_enc_open(&e, '(');
	syncproto_enc_key_u64(&e, "MODSEQ", 0);
	syncproto_enc_close(&e);
	if (syncpush_sess_end(p, &e, err) < 0)
		return -1;
	log_info("user deletion sent user=%s", u->name);
	return 0;
}

/* The bodies the replica lacks, before any APPLY names them. */
static int
send_uploads(struct syncpush *p, struct pu *u, struct err *err)
{
	struct store_user *lu;

	if ((lu = syncpush_sess_user(p, u->name, err)) == NULL)
		return -1;
	if (FAILPOINT("sync.push.before_upload") < 0)
		return err_set(err, ERR_TEMP, "failpoint sync.push.before_upload");
	for (size_t i = 0; i < u->missing.n; i++)
		if (send_upload(p, u, lu, u->missing.v[i], err) < 0)
			return -1;
	if (failpoint_armed) {
		/* the bodies are on the replica, no APPLY names them yet */
		if (syncpush_sess_drain(p, err) < 0)
			return -1;
		if (FAILPOINT("sync.push.after_upload") < 0)
			return err_set(err, ERR_TEMP, "failpoint sync.push.after_upload");
	}
	return 0;
}

/* APPLY SUB for each subscription that differs, APPLY PASSWORD. */
static int
send_subs_password(struct syncpush *p, struct pu *u, struct err *err)
{
	struct syncproto_enc e;

	for (size_t i = 0; i < u->nsubs_to_send; i++) {
		send_begin(p, u, PK_APPLY_SUB, "APPLY", "SUB", &e);
		syncproto_enc_open(&e, '(');
		syncproto_enc_key_string(&e, "NAME", u->subs_to_send[i].name);
		syncproto_enc_key_u64(&e, "SUBSCRIBED", u->subs_to_send[i].subscribed ? 1 : 0);
		syncproto_enc_key_u64(&e, "MODSEQ", u->subs_to_send[i].modseq);
		syncproto_enc_close(&e);
		if (syncpush_sess_end(p, &e, err) < 0)
			return -1;
	}
	if (!u->send_password)
		return 0;
	send_begin(p, u, PK_APPLY_PASSWORD, "APPLY", "PASSWORD", &e);
	syncproto_enc_open(&e, '(');
	syncproto_enc_atom(&e, "HASH");
	if (u->hash != NULL)
		syncproto_enc_cstring(&e, u->hash);
	else
		syncproto_enc_nil(&e);
	syncproto_enc_close(&e);
	return syncpush_sess_end(p, &e, err);
}

/* Wave C for one user: UNUSER, the user's creation, UPLOADs, then
 * DELETE, renames to temporary names, APPLY MAILBOX (existing mailboxes
 * first: renames free names; creations last), SUB, PASSWORD. */
int
syncpush_send_user_cmds(struct syncpush *p, struct pu *u, struct err *err)
{
	if (u->send_unuser && send_unuser(p, u, err) < 0)
		return -1;
	if (!u->local_exists)
		return 0;
	if (u->send_create && syncpush_send_apply_user(p, u, true, 0, false, err) < 0)
		return -1;
	if (u->missing.n > 0 && send_uploads(p, u, err) < 0)
		return -1;
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
	return send_subs_password(p, u, err);
}
