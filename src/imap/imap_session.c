/*
 * imap_session.c - the selected state: SELECT/EXAMINE (with CONDSTORE
 * and QRESYNC parameters), CLOSE, UNSELECT, EXPUNGE / UID EXPUNGE, and
 * the untagged updates that bring a session's view of its mailbox
 * forward (imap_sel_sync).
 *
 * The view is a store snapshot (store.h): an array of records in uid
 * order whose index + 1 is the message sequence number.  It only moves
 * when imap_sel_sync() refreshes it, which happens after every command
 * and while idling, so sequence numbers never shift under a command.
 * Expunges found while the command was FETCH, STORE or SEARCH (not
 * their UID forms) stay marked in the snapshot and are reported at the
 * next command that allows it (RFC 3501 7.4.1).  With QRESYNC enabled
 * expunges are reported as VANISHED uid sets (RFC 7162 3.2.10).
 */
#include "imap/imap_session.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

/* ------------------------------------------------------------------ */
/* helpers                                                             */

void
imap_put_set(struct buf *out, const uint32_t *v, size_t n)
{
	size_t i = 0;
	bool first = true;

	while (i < n) {
		size_t j = i;

		while (j + 1 < n && v[j + 1] == v[j] + 1)
			j++;
		if (!first)
			buf_putc(out, ',');
		first = false;
		if (j == i)
			buf_printf(out, "%u", v[i]);
		else
			buf_printf(out, "%u:%u", v[i], v[j]);
		i = j + 1;
	}
}

bool
imap_sel_is_recent(const struct imap_session *s, const struct store_snaprec *r)
{
	/* IMAP4rev2 has no \Recent (RFC 9051 appendix E) */
	return r->recent && !s->rev2;
}

uint32_t
imap_sel_recent_count(const struct imap_session *s)
{
	return s->sel.snap->nrecent;
}

/* First index whose uid >= uid. */
static size_t
imap_sel_lower(const struct store_snapshot *snap, uint32_t uid)
{
	size_t lo = 0, hi = snap->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (snap->recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

ssize_t
imap_sel_find_uid(const struct imap_session *s, uint32_t uid)
{
	const struct store_snapshot *snap = s->sel.snap;
	size_t i = imap_sel_lower(snap, uid);

	return i < snap->n && snap->recs[i].uid == uid ? (ssize_t)i : -1;
}

int
imap_sel_indexes(struct imap_session *s, const struct imap_seqset *set, bool uid,
	struct imap_range **out, size_t *n_r)
{
	const struct store_snapshot *snap = s->sel.snap;
	struct imap_range *r = xcalloc(set->n + 1, sizeof(*r));
	size_t n, m = 0;

	*out = NULL;
	*n_r = 0;
	if (!uid) {
		for (size_t i = 0; i < set->n; i++) {
			uint32_t lo = set->r[i].lo, hi = set->r[i].hi;

			if ((lo != IMAP_STAR && lo > snap->n) || (hi != IMAP_STAR && hi > snap->n) ||
			    snap->n == 0) {
				free(r);
				imap_tagged(s, "BAD", NULL, "Invalid message sequence number (%zu messages)",
					snap->n);
				return -1;
			}
		}
		n = imap_seqset_resolve(set, (uint32_t)snap->n, r);
		for (size_t i = 0; i < n; i++) {
			r[i].lo = r[i].lo - 1;
			/* hi stays: [lo, hi) in indexes */
		}
		*out = r;
		*n_r = n;
		return 0;
	}
	n = imap_seqset_resolve(set, snap->n > 0 ? snap->recs[snap->n - 1].uid : 0, r);
	for (size_t i = 0; i < n; i++) {
		size_t a = imap_sel_lower(snap, r[i].lo);
		size_t b = r[i].hi == UINT32_MAX ? snap->n : imap_sel_lower(snap, r[i].hi + 1);

		if (a < b) {
			r[m].lo = (uint32_t)a;
			r[m].hi = (uint32_t)b;
			m++;
		}
	}
	*out = r;
	*n_r = m;
	return 0;
}

size_t
imap_sel_uid_ranges(struct imap_session *s, const struct imap_range *idx, size_t n,
	struct store_range *out)
{
	const struct store_snapshot *snap = s->sel.snap;

	for (size_t i = 0; i < n; i++) {
		out[i].lo = snap->recs[idx[i].lo].uid;
		out[i].hi = snap->recs[idx[i].hi - 1].uid;
	}
	return n;
}

/* Is the keyword k[0..len) in the space-separated list? */
static bool
imap_kw_listed(const struct buf *list, const char *k, size_t len)
{
	const char *p = list->len > 0 ? list->data : NULL;

	while (p != NULL && *p != '\0') {
		const char *e = strchr(p, ' ');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n == len && strncasecmp(p, k, len) == 0)
			return true;
		p = e ? e + 1 : NULL;
	}
	return false;
}

/* "* FLAGS (...)" and "* OK [PERMANENTFLAGS (...)]" for s->sel.kw. */
static void
imap_sel_put_flags(struct imap_session *s)
{
	const char *kw = s->sel.kw.len > 0 ? buf_cstr(&s->sel.kw) : "";
	const char *sp = kw[0] != '\0' ? " " : "";

	imap_printf(s, "* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s)\r\n", sp, kw);
	if (s->sel.readonly)
		imap_puts(s, "* OK [PERMANENTFLAGS ()] No permanent flags permitted\r\n");
	else
		imap_printf(s, "* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft%s%s"
			" \\*)] Flags permitted\r\n", sp, kw);
}

void
imap_sel_announce(struct imap_session *s, const char *keywords)
{
	const char *k = keywords;
	bool added = false;

	while (k != NULL && *k != '\0') {
		const char *e = strchr(k, ' ');
		size_t len = e ? (size_t)(e - k) : strlen(k);

		if (len > 0 && !imap_kw_listed(&s->sel.kw, k, len)) {
			if (s->sel.kw.len > 0)
				buf_putc(&s->sel.kw, ' ');
			buf_append(&s->sel.kw, k, len);
			added = true;
		}
		k = e ? e + 1 : NULL;
	}
	if (added)
		imap_sel_put_flags(s);
}

void
imap_condstore_enable(struct imap_session *s)
{
	if (s->condstore)
		return;
	s->condstore = true;
	if (s->state == IMAP_SELECTED && s->sel.snap != NULL)
		imap_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n",
			(unsigned long long)s->sel.snap->modseq);
}

void
imap_sel_send_flags(struct imap_session *s, size_t i, bool with_uid)
{
	const struct store_snaprec *r = &s->sel.snap->recs[i];

	imap_sel_announce(s, r->keywords);
	buf_reset(&s->tmp);
	buf_printf(&s->tmp, "* %zu FETCH (", i + 1);
	if (with_uid || s->qresync)
		buf_printf(&s->tmp, "UID %u ", r->uid);
	buf_puts(&s->tmp, "FLAGS ");
	imap_flags_put(&s->tmp, r->sysflags, r->keywords, imap_sel_is_recent(s, r));
	if (s->condstore)
		buf_printf(&s->tmp, " MODSEQ (%llu)", (unsigned long long)r->modseq);
	buf_puts(&s->tmp, ")\r\n");
	imap_write(s, s->tmp.data, s->tmp.len);
}

void
imap_sel_close(struct imap_session *s)
{
	store_snapshot_free(&s->sel.snap);
	buf_free(&s->sel.kw);
	memset(&s->sel, 0, sizeof(s->sel));
	if (s->state == IMAP_SELECTED)
		s->state = IMAP_AUTH;
}

/* ------------------------------------------------------------------ */
/* updates                                                             */

int
imap_sel_sync(struct imap_session *s, bool allow_expunge, struct store_uids *changed_r)
{
	struct store_snapshot *snap = s->sel.snap;
	struct store_snapdiff d;
	struct err err;
	uint32_t *old = NULL;
	size_t oldn = snap->n;
	uint32_t recent;

	if (allow_expunge && s->qresync && oldn > 0) {
		old = xmalloc(oldn * sizeof(*old));
		for (size_t i = 0; i < oldn; i++)
			old[i] = snap->recs[i].uid;
	}
	if (store_snapshot_refresh(s->u, snap, allow_expunge ? STORE_REFRESH_EXPUNGE : 0, &d,
		&err) < 0) {
		log_warn("mailbox refresh failed user=%s mailbox=%s error=%s", log_q(s->user),
			log_q(s->sel.name), log_q(err.msg));
		free(old);
		return 0;
	}
	if (d.mailbox_gone || d.uidvalidity_changed) {
		imap_puts(s, "* BYE The selected mailbox was deleted by another session\r\n");
		log_info("selected mailbox gone user=%s mailbox=%s", log_q(s->user), log_q(s->sel.name));
		store_snapdiff_free(&d);
		free(old);
		imap_sel_close(s);
		s->state = IMAP_LOGOUT;
		return -1;
	}
	if (d.expunged_seq.n > 0) {
		if (old != NULL) {
			struct store_uids v = { 0 };

			for (size_t k = 0; k < d.expunged_seq.n; k++) {
				size_t idx = d.expunged_seq.v[k] - 1 + k;

				if (idx < oldn)
					store_uids_add(&v, old[idx]);
			}
			/* ascending already: removal goes in index order */
			buf_reset(&s->tmp);
			buf_puts(&s->tmp, "* VANISHED ");
			imap_put_set(&s->tmp, v.v, v.n);
			buf_puts(&s->tmp, "\r\n");
			imap_write(s, s->tmp.data, s->tmp.len);
			store_uids_free(&v);
		} else {
			for (size_t k = 0; k < d.expunged_seq.n; k++)
				imap_printf(s, "* %u EXPUNGE\r\n", d.expunged_seq.v[k]);
		}
		s->sel.exists_sent -= d.expunged_seq.n < s->sel.exists_sent ?
			(uint32_t)d.expunged_seq.n : s->sel.exists_sent;
	}
	if (snap->n != s->sel.exists_sent) {
		imap_printf(s, "* %zu EXISTS\r\n", snap->n);
		s->sel.exists_sent = (uint32_t)snap->n;
	}
	recent = imap_sel_recent_count(s);
	if (recent != s->sel.recent_sent) {
		if (!s->rev2)
			imap_printf(s, "* %u RECENT\r\n", recent);
		s->sel.recent_sent = recent;
	}
	for (size_t k = 0; k < d.changed_seq.n; k++) {
		uint32_t seq = d.changed_seq.v[k];

		if (seq == 0 || seq > snap->n)
			continue;
		if (changed_r != NULL)
			store_uids_add(changed_r, seq);
		else
			imap_sel_send_flags(s, seq - 1, false);
	}
	store_snapdiff_free(&d);
	free(old);
	return 0;
}

/* ------------------------------------------------------------------ */
/* SELECT / EXAMINE                                                    */

struct imap_qr_ctx {
	struct store_uids uids;
	const struct imap_range *known;
	size_t nknown;
};

static int
imap_qr_cb(void *vctx, const struct store_record *r)
{
	struct imap_qr_ctx *ctx = vctx;

	if (r->expunged_modseq != 0 &&
	    (ctx->nknown == 0 || imap_seqset_contains(ctx->known, ctx->nknown, r->uid)))
		store_uids_add(&ctx->uids, r->uid);
	return 0;
}

static int
imap_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

/* The expunges a client missed since modseq: tombstones, or with a
 * known-uids set, every known uid below uidnext that is not live. */
static int
imap_vanished_since(struct imap_session *s, uint64_t modseq, const struct imap_seqset *known,
	uint32_t uidmin, uint32_t uidmax, struct store_uids *out, struct err *err)
{
	const struct store_snapshot *snap = s->sel.snap;
	struct imap_qr_ctx ctx = { { 0 }, NULL, 0 };
	struct imap_range *kr = NULL;
	size_t nk = 0;
	int rc = 0;

	if (known != NULL && known->n > 0) {
		kr = xcalloc(known->n, sizeof(*kr));
		nk = imap_seqset_resolve(known, snap->uidnext > 0 ? snap->uidnext - 1 : 0, kr);
		for (size_t i = 0; i < nk; i++) {
			uint32_t lo = kr[i].lo < uidmin ? uidmin : kr[i].lo;
			uint32_t hi = kr[i].hi > uidmax ? uidmax : kr[i].hi;
			size_t p = imap_sel_lower(snap, lo);

			for (uint64_t u = lo; u <= hi; u++) {
				while (p < snap->n && snap->recs[p].uid < u)
					p++;
				if (p < snap->n && snap->recs[p].uid == u && !snap->recs[p].expunged)
					continue;
				store_uids_add(out, (uint32_t)u);
			}
		}
		free(kr);
		return 0;
	}
	rc = store_records_since(s->u, s->sel.mailbox_id, modseq, imap_qr_cb, &ctx, err);
	for (size_t i = 0; i < ctx.uids.n; i++)
		if (ctx.uids.v[i] >= uidmin && ctx.uids.v[i] <= uidmax)
			store_uids_add(out, ctx.uids.v[i]);
	store_uids_free(&ctx.uids);
	if (out->n > 1)
		qsort(out->v, out->n, sizeof(*out->v), imap_u32_cmp);
	return rc;
}

/* QRESYNC: VANISHED (EARLIER) and FETCH for what changed since modseq. */
static void
imap_qresync_report(struct imap_session *s, const struct imap_select_args *a)
{
	const struct store_snapshot *snap = s->sel.snap;
	struct store_uids v = { 0 };
	struct err err;

	if (imap_vanished_since(s, a->q_modseq, &a->q_known_uids, 1, UINT32_MAX, &v, &err) < 0)
		log_warn("qresync vanished failed user=%s error=%s", log_q(s->user), log_q(err.msg));
	if (v.n > 0) {
		buf_reset(&s->tmp);
		buf_puts(&s->tmp, "* VANISHED (EARLIER) ");
		imap_put_set(&s->tmp, v.v, v.n);
		buf_puts(&s->tmp, "\r\n");
		imap_write(s, s->tmp.data, s->tmp.len);
	}
	store_uids_free(&v);
	for (size_t i = 0; i < snap->n; i++)
		if (snap->recs[i].modseq > a->q_modseq)
			imap_sel_send_flags(s, i, true);
}

/* Exposed for UID FETCH (CHANGEDSINCE n VANISHED). */
int imap_sel_vanished(struct imap_session *s, uint64_t modseq, uint32_t uidmin, uint32_t uidmax,
	struct store_uids *out, struct err *err);

int
imap_sel_vanished(struct imap_session *s, uint64_t modseq, uint32_t uidmin, uint32_t uidmax,
	struct store_uids *out, struct err *err)
{
	return imap_vanished_since(s, modseq, NULL, uidmin, uidmax, out, err);
}

static int
imap_kw_cmp(const void *a, const void *b)
{
	return strcasecmp(*(const char *const *)a, *(const char *const *)b);
}

/* The keywords in use (at most 64 distinct; any other is announced
 * when a FETCH first carries it) into s->sel.kw. */
static void
imap_select_flags(struct imap_session *s)
{
	const struct store_snapshot *snap = s->sel.snap;
	struct buf *out = &s->sel.kw;
	const char *kw[64];
	size_t nkw = 0;

	buf_reset(out);
	for (size_t i = 0; i < snap->n && nkw < 64; i++) {
		const char *k = snap->recs[i].keywords;

		while (k != NULL && *k != '\0' && nkw < 64) {
			const char *e = strchr(k, ' ');
			size_t len = e ? (size_t)(e - k) : strlen(k);
			size_t j;

			for (j = 0; j < nkw; j++)
				if (strncasecmp(kw[j], k, len) == 0 && (kw[j][len] == ' ' || kw[j][len] == '\0'))
					break;
			if (j == nkw)
				kw[nkw++] = k;
			k = e ? e + 1 : NULL;
		}
	}
	if (nkw > 1)
		qsort(kw, nkw, sizeof(kw[0]), imap_kw_cmp);
	for (size_t j = 0; j < nkw; j++) {
		const char *e = strchr(kw[j], ' ');

		if (j > 0)
			buf_putc(out, ' ');
		buf_append(out, kw[j], e ? (size_t)(e - kw[j]) : strlen(kw[j]));
	}
}

void
imap_cmd_select(struct imap_session *s, struct imap_cmd *c)
{
	const struct imap_select_args *a = &c->u.select;
	bool examine = c->kind == IMAP_CMD_EXAMINE;
	struct buf name = BUF_INIT;
	struct store_mailbox mb;
	struct store_snapshot *snap = NULL;
	struct err err;
	size_t first_unseen = 0;

	if (a->qresync && !s->qresync) {
		imap_tagged(s, "BAD", NULL, "QRESYNC is not enabled (ENABLE QRESYNC first)");
		return;
	}
	if (s->state == IMAP_SELECTED) {
		imap_sel_close(s);
		imap_puts(s, "* OK [CLOSED] Previous mailbox closed\r\n");
	}
	if (imap_name_decode(s, &a->mailbox, &name, &err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", err.msg);
		goto out;
	}
	if (store_mailbox_get(s->u, buf_cstr(&name), &mb, &err) < 0) {
		imap_tagged_err(s, &err, c->name);
		goto out;
	}
	bool readonly = examine || store_is_read_only(imap_cfg.st);
	/* EXAMINE shows what SELECT would take without taking it (RFC 3501
	 * 6.3.2); a read-only store (a replica) has no \Recent to show */
	if (store_snapshot_open(s->u, mb.uniqueid, !readonly ? STORE_SNAP_CLAIM_RECENT :
		store_is_read_only(imap_cfg.st) ? 0 : STORE_SNAP_PEEK_RECENT, &snap, &err) < 0) {
		imap_tagged_err(s, &err, c->name);
		goto out;
	}
	if (a->condstore)
		s->condstore = true;
	s->sel.snap = snap;
	str_lcpy(s->sel.mailbox_id, mb.uniqueid, sizeof(s->sel.mailbox_id));
	str_lcpy(s->sel.name, mb.name, sizeof(s->sel.name));
	s->sel.readonly = readonly;
	s->state = IMAP_SELECTED;

	imap_select_flags(s);
	imap_sel_put_flags(s);
	imap_printf(s, "* %zu EXISTS\r\n", snap->n);
	s->sel.exists_sent = (uint32_t)snap->n;
	s->sel.recent_sent = imap_sel_recent_count(s);
	if (s->rev2)
		imap_rev2_select_list(s);
	else
		imap_printf(s, "* %u RECENT\r\n", s->sel.recent_sent);
	for (size_t i = 0; i < snap->n; i++) {
		if (!(snap->recs[i].sysflags & STORE_FLAG_SEEN)) {
			first_unseen = i + 1;
			break;
		}
	}
	if (first_unseen > 0)
		imap_printf(s, "* OK [UNSEEN %zu] First unseen\r\n", first_unseen);
	imap_printf(s, "* OK [UIDVALIDITY %u] UIDs valid\r\n", snap->uidvalidity);
	imap_printf(s, "* OK [UIDNEXT %u] Predicted next UID\r\n", snap->uidnext);
	imap_printf(s, "* OK [HIGHESTMODSEQ %llu] Highest\r\n", (unsigned long long)snap->modseq);
	if (a->qresync && a->q_uidvalidity == snap->uidvalidity)
		imap_qresync_report(s, a);
	imap_tagged(s, "OK", readonly ? "READ-ONLY" : "READ-WRITE", "%s completed",
		examine ? "EXAMINE" : "SELECT");
out:
	buf_free(&name);
}

/* ------------------------------------------------------------------ */
/* CLOSE / UNSELECT / EXPUNGE                                          */

void
imap_cmd_close(struct imap_session *s, struct imap_cmd *c)
{
	struct err err;

	(void)c;
	if (!s->sel.readonly &&
	    store_expunge(s->u, s->sel.mailbox_id, NULL, 0, true, NULL, &err) < 0 &&
	    err.kind != ERR_NOTFOUND)
		log_warn("close: expunge failed user=%s mailbox=%s error=%s", log_q(s->user),
			log_q(s->sel.name), log_q(err.msg));
	imap_sel_close(s);
	imap_tagged(s, "OK", NULL, "CLOSE completed");
}

void
imap_cmd_unselect(struct imap_session *s, struct imap_cmd *c)
{
	(void)c;
	imap_sel_close(s);
	imap_tagged(s, "OK", NULL, "UNSELECT completed");
}

void
imap_cmd_expunge(struct imap_session *s, struct imap_cmd *c)
{
	struct imap_range *idx = NULL;
	struct store_range *ranges = NULL;
	size_t n = 0;
	struct err err;
	int rc;

	if (s->sel.readonly) {
		imap_tagged(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	if (c->kind == IMAP_CMD_UID_EXPUNGE) {
		if (imap_sel_indexes(s, &c->u.expunge, true, &idx, &n) < 0)
			return;
		if (n == 0) {
			free(idx);
			imap_tagged(s, "OK", NULL, "UID EXPUNGE completed (nothing matched)");
			return;
		}
		ranges = xcalloc(n, sizeof(*ranges));
		imap_sel_uid_ranges(s, idx, n, ranges);
	}
	rc = store_expunge(s->u, s->sel.mailbox_id, ranges, n, true, NULL, &err);
	free(idx);
	free(ranges);
	if (rc < 0) {
		imap_tagged_err(s, &err, c->name);
		return;
	}
	imap_tagged(s, "OK", NULL, "%s completed", c->name);
}
