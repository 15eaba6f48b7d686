/*
 * syncpush_verify.c - castorctl verify: one user compared on both
 * sides, mailbox rows first, records only where the checksums differ,
 * one readable line per difference.  Read only on both sides.
 */
#include "sync/syncpush_int.h"

#include <stdarg.h>

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

/* The mailbox rows of both sides (lm: our live mailboxes): a line for
 * each difference, and GET RECORDS queued for each mailbox whose
 * checksum differs (into u->pms).  0, or -1 (session). */
static int
verify_rows(struct syncpush *p, struct pu *u, const struct vmb_ctx *lm, struct buf *out,
	size_t *ndiff, struct err *err)
{
	const char *user = u->name;

	for (size_t i = 0; i < lm->n; i++) {
		const struct store_mailbox *L = &lm->v[i];
		struct rmb *R = NULL;
		struct pm *m;
		for (size_t k = 0; k < u->r->nmbs; k++)
			if (str_eq(u->r->mbs[k].uniqueid, L->uniqueid) && u->r->mbs[k].deletedmodseq == 0)
				R = &u->r->mbs[k];
		if (R == NULL) {
			verify_line(out, ndiff, user, L->name, "mailbox %s only on the master", L->uniqueid);
			continue;
		}
		if (!str_eq(R->name, L->name))
			verify_line(out, ndiff, user, L->name, "named \"%s\" on the replica", R->name);
		if (R->uidvalidity != L->uidvalidity)
			verify_line(out, ndiff, user, L->name, "uidvalidity master %u, replica %u",
				L->uidvalidity, R->uidvalidity);
		if (R->crc == L->sync_crc && R->uidnext == L->uidnext && R->hms == L->highestmodseq)
			continue;
		if (R->uidnext != L->uidnext)
			verify_line(out, ndiff, user, L->name, "uidnext master %u, replica %u",
				L->uidnext, R->uidnext);
		if (R->hms != L->highestmodseq)
			verify_line(out, ndiff, user, L->name, "highestmodseq master %llu, replica %llu",
				(unsigned long long)L->highestmodseq, (unsigned long long)R->hms);
		if (R->crc != L->sync_crc) {
			if ((m = pu_add_pm(u, L->uniqueid)) == NULL)
				continue;
			m->L = *L;
			if (syncpush_send_get_records(p, u, u->npm - 1, err) < 0)
				return -1;
		}
	}
	for (size_t k = 0; k < u->r->nmbs; k++) {
		bool found = false;
		if (u->r->mbs[k].deletedmodseq != 0)
			continue;
		for (size_t i = 0; i < lm->n && !found; i++)
			found = str_eq(lm->v[i].uniqueid, u->r->mbs[k].uniqueid);
		if (!found)
			verify_line(out, ndiff, user, u->r->mbs[k].name, "mailbox %s only on the replica",
				u->r->mbs[k].uniqueid);
	}
	return 0;
}

/* The records of the mailboxes whose checksums differ (u->pms, with the
 * replica's records).  0, or -1 (our database). */
static int
verify_mailboxes(struct pu *u, struct store_user *lu, struct buf *out, size_t *ndiff,
	struct err *err)
{
	for (size_t i = 0; i < u->npm; i++) {
		struct pm *m = &u->pms[i];
		struct precs lr = { 0 };
		struct store_mailbox L;
		uint32_t maxuid;
		uint64_t maxms;
		if (!m->got_rrecs) {
			verify_line(out, ndiff, u->name, m->L.name, "records unreadable on the replica");
			continue;
		}
		if (syncpush_plan_read_local(lu, m->id, 0, &L, &lr, &maxuid, &maxms, err) < 0) {
			precs_free(&lr);
			return -1;
		}
		qsort(lr.v, lr.n, sizeof(*lr.v), prec_cmp_uid);
		qsort(m->rrecs.v, m->rrecs.n, sizeof(*m->rrecs.v), prec_cmp_uid);
		verify_records(out, ndiff, u->name, m->L.name, &lr, &m->rrecs);
		precs_free(&lr);
	}
	return 0;
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
	if (syncpush_send_get_user(p, &u, err) < 0 || syncpush_sess_wait(p, err) < 0)
		goto out;
	if (u.r == NULL) {
		err_set(err, ERR_TEMP, "GET USER %s failed", user);
		goto out;
	}
	lu = syncpush_sess_user(p, user, err);
	lexists = lu != NULL;
	if (lu == NULL && err->kind != ERR_NOTFOUND)
		goto out;
	if (!lexists || !u.r->exists) {
		if (lexists || u.r->exists)
			verify_line(out, &ndiff, user, NULL, "user only on the %s",
				lexists ? "master" : "replica");
		rc = 0;
		goto out;
	}
	/* checksums first, records only where the checksums differ */
	if (store_mailbox_list(lu, "*", STORE_LIST_NO_PARENTS, vmb_cb, &lm, err) < 0 ||
	    verify_rows(p, &u, &lm, out, &ndiff, err) < 0 || syncpush_sess_wait(p, err) < 0 ||
	    verify_mailboxes(&u, lu, out, &ndiff, err) < 0)
		goto out;
	rc = 0;
out:
	*ndiff_r = ndiff;
	free(lm.v);
	pu_free(&u);
	return rc;
}
