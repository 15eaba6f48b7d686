/*
 * imap_sort.c - SORT, UID SORT, THREAD and UID THREAD (RFC 5256), with
 * DISPLAYFROM / DISPLAYTO (RFC 5957) and ESORT results (RFC 5267:
 * SORT RETURN (MIN MAX COUNT ALL PARTIAL)).
 *
 * The search keys are evaluated as for SEARCH (imap_search_indexes);
 * the sort and thread data of the matches then come from what the store
 * already keeps: size and internal date from the snapshot records, the
 * header fields from the stored ENVELOPE (read in chunks with
 * store_records_full), and only THREAD=REFERENCES opens message bodies,
 * for the References field that ENVELOPE lacks.  Nothing is written, so
 * both commands work on a read-only replica.
 *
 * Keys (RFC 5256 section 3): ARRIVAL internal date; DATE the Date: field
 * in UTC or, when missing or unreadable, the internal date; FROM / TO /
 * CC the local part (addr-mailbox) of the first address; SUBJECT the
 * base subject (imap_thread.c); SIZE the RFC822.SIZE; DISPLAYFROM /
 * DISPLAYTO the decoded display name of the first address or, without
 * one, its addr-spec.  Strings compare with i;ascii-casemap; a missing
 * value is the empty string; equal messages stay in sequence order.
 */
#include "imap/imap_session.h"

#include <stdlib.h>
#include <string.h>

#include "imap/imap_thread.h"
#include "lib/log.h"
#include "lib/xalloc.h"
#include "store/mime.h"
#include "store/rfc2047.h"

#define IMAP_SORT_CHUNK 256

struct imap_sortmsg {
	uint32_t idx;              /* snapshot index */
	uint32_t uid;
	int64_t arrival, sent;
	uint64_t size;
	uint64_t modseq;
	bool refwd;
	char *subject;             /* base subject, lower-cased ASCII */
	size_t subject_len;
	char *from, *to, *cc, *dfrom, *dto;
	char *msgid, *irt, *refs;  /* raw, NULL when absent */
};

struct imap_sortload {
	struct imap_session *s;
	struct imap_sortmsg *m;    /* the chunk */
	size_t n, j;
	bool want_subject, want_display, want_refs;
};

static char *
imap_sort_dup(const char *s)
{
	return xstrdup(s != NULL ? s : "");
}

/* DISPLAYFROM / DISPLAYTO (RFC 5957 section 3) */
static char *
imap_sort_display(const struct imap_env_addr *a)
{
	struct buf b = BUF_INIT;

	if (a->name != NULL)
		rfc2047_decode(a->name, strlen(a->name), &b);
	if (b.len == 0 && a->mailbox != NULL)
		buf_printf(&b, "%s@%s", a->mailbox, a->host != NULL ? a->host : "");
	if (b.data == NULL)
		return xstrdup("");
	return buf_steal(&b);
}

/* The References field of a message, from its body. */
static char *
imap_sort_refs(struct imap_session *s, const char *guid)
{
	struct store_blob blob;
	struct mime_field f;
	struct err err;
	size_t pos = 0, hlen;
	char *out = NULL;

	if (store_blob_map(s->u, guid, &blob, &err) < 0) {
		log_debug("sort: body unavailable user=%s guid=%s error=%s", s->user, guid,
			log_q(err.msg));
		return NULL;
	}
	hlen = blob.len;
	for (size_t i = 0; i + 1 < blob.len; i++) {
		if (blob.data[i] == '\n' && (blob.data[i + 1] == '\n' ||
		    (blob.data[i + 1] == '\r' && i + 2 < blob.len && blob.data[i + 2] == '\n'))) {
			hlen = i + 1;
			break;
		}
	}
	while (mime_header_next(blob.data, hlen, &pos, &f)) {
		if (mime_eq(blob.data + f.name_off, f.name_len, "references")) {
			out = xstrndup(blob.data + f.value_off, f.value_len);
			break;
		}
	}
	store_blob_release(&blob);
	return out;
}

static int
imap_sort_fill(void *ctx, const struct store_record_full *r)
{
	struct imap_sortload *l = ctx;
	struct imap_sortmsg *m;
	struct imap_env e;

	while (l->j < l->n && l->m[l->j].uid < r->rec.uid)
		l->j++;
	if (l->j == l->n || l->m[l->j].uid != r->rec.uid)
		return 0;
	m = &l->m[l->j++];
	m->arrival = r->rec.internaldate;
	m->size = r->rec.size;
	m->modseq = r->rec.modseq;
	imap_env_parse(r->envelope != NULL ? r->envelope : "", r->envelope != NULL ?
		strlen(r->envelope) : 0, &e);
	if (e.date == NULL || !imap_thread_sentdate(e.date, strlen(e.date), &m->sent))
		m->sent = m->arrival;
	if (l->want_subject) {
		struct buf b = BUF_INIT;

		m->refwd = imap_thread_base_subject(e.subject != NULL ? e.subject : "",
			e.subject != NULL ? strlen(e.subject) : 0, &b);
		m->subject_len = b.len;
		m->subject = b.data != NULL ? buf_steal(&b) : xstrdup("");
	}
	m->from = imap_sort_dup(e.from.mailbox);
	m->to = imap_sort_dup(e.to.mailbox);
	m->cc = imap_sort_dup(e.cc.mailbox);
	if (l->want_display) {
		m->dfrom = imap_sort_display(&e.from);
		m->dto = imap_sort_display(&e.to);
	}
	if (l->want_refs) {
		m->msgid = e.message_id != NULL ? xstrdup(e.message_id) : NULL;
		m->irt = e.in_reply_to != NULL ? xstrdup(e.in_reply_to) : NULL;
		m->refs = imap_sort_refs(l->s, r->rec.guid);
	}
	imap_env_free(&e);
	return 0;
}

/* The chunk m[0..n) (ascending uids) from the store. */
static int
imap_sort_load_chunk(struct imap_sortload *l, struct err *err)
{
	const struct store_snapshot *snap = l->s->sel.snap;
	struct store_range *rg = xcalloc(l->n, sizeof(*rg));
	size_t nr = 0;
	int rc;

	for (size_t k = 0; k < l->n; k++) {
		if (nr > 0 && k > 0 && l->m[k].idx == l->m[k - 1].idx + 1)
			rg[nr - 1].hi = l->m[k].uid;
		else
			rg[nr++] = (struct store_range){ l->m[k].uid, l->m[k].uid };
	}
	l->j = 0;
	rc = store_records_full(l->s->u, snap->mailbox_id, rg, nr, false, imap_sort_fill, l, err);
	free(rg);
	return rc;
}

static void
imap_sort_msgs_free(struct imap_sortmsg *m, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(m[i].subject);
		free(m[i].from);
		free(m[i].to);
		free(m[i].cc);
		free(m[i].dfrom);
		free(m[i].dto);
		free(m[i].msgid);
		free(m[i].irt);
		free(m[i].refs);
	}
	free(m);
}

/* The sort data of the snapshot indexes idx[0..n).  NULL with the
 * tagged NO sent when the store fails. */
static struct imap_sortmsg *
imap_sort_load(struct imap_session *s, struct imap_cmd *c, const struct store_uids *idx,
	bool subject, bool display, bool refs)
{
	const struct store_snapshot *snap = s->sel.snap;
	struct imap_sortmsg *m = xcalloc(idx->n + 1, sizeof(*m));
	struct imap_sortload l = { s, NULL, 0, 0, subject, display, refs };
	struct err err;

	for (size_t i = 0; i < idx->n; i++) {
		const struct store_snaprec *r = &snap->recs[idx->v[i]];

		m[i].idx = idx->v[i];
		m[i].uid = r->uid;
		m[i].modseq = r->modseq;
	}
	for (size_t i = 0; i < idx->n; i += IMAP_SORT_CHUNK) {
		l.m = m + i;
		l.n = idx->n - i < IMAP_SORT_CHUNK ? idx->n - i : IMAP_SORT_CHUNK;
		if (imap_sort_load_chunk(&l, &err) < 0) {
			imap_tagged_err(s, &err, c->name);
			imap_sort_msgs_free(m, idx->n);
			return NULL;
		}
	}
	/* a record gone meanwhile: what the snapshot knows, empty strings */
	for (size_t i = 0; i < idx->n; i++) {
		if (m[i].from != NULL)
			continue;
		m[i].from = xstrdup("");
		m[i].to = xstrdup("");
		m[i].cc = xstrdup("");
		if (display) {
			m[i].dfrom = xstrdup("");
			m[i].dto = xstrdup("");
		}
		if (subject)
			m[i].subject = xstrdup("");
		m[i].arrival = m[i].sent = snap->recs[m[i].idx].internaldate;
		m[i].size = snap->recs[m[i].idx].size;
	}
	return m;
}

/* i;ascii-casemap */
static int
imap_sort_casecmp(const char *a, const char *b)
{
	for (;; a++, b++) {
		unsigned char x = (unsigned char)*a, y = (unsigned char)*b;

		if (x >= 'A' && x <= 'Z')
			x += 32;
		if (y >= 'A' && y <= 'Z')
			y += 32;
		if (x != y || x == 0)
			return x < y ? -1 : (x > y ? 1 : 0);
	}
}

static int
imap_sort_cmp_num(int64_t a, int64_t b)
{
	return a < b ? -1 : (a > b ? 1 : 0);
}

static int
imap_sort_cmp_key(const struct imap_sortmsg *x, const struct imap_sortmsg *y, int key)
{
	switch (key) {
	case IMAP_SORT_ARRIVAL: return imap_sort_cmp_num(x->arrival, y->arrival);
	case IMAP_SORT_DATE: return imap_sort_cmp_num(x->sent, y->sent);
	case IMAP_SORT_SIZE: return x->size < y->size ? -1 : (x->size > y->size ? 1 : 0);
	case IMAP_SORT_FROM: return imap_sort_casecmp(x->from, y->from);
	case IMAP_SORT_TO: return imap_sort_casecmp(x->to, y->to);
	case IMAP_SORT_CC: return imap_sort_casecmp(x->cc, y->cc);
	case IMAP_SORT_DISPLAYFROM: return imap_sort_casecmp(x->dfrom, y->dfrom);
	case IMAP_SORT_DISPLAYTO: return imap_sort_casecmp(x->dto, y->dto);
	case IMAP_SORT_SUBJECT: {
		size_t l = x->subject_len < y->subject_len ? x->subject_len : y->subject_len;
		int r = memcmp(x->subject, y->subject, l);

		if (r != 0)
			return r;
		return imap_sort_cmp_num((int64_t)x->subject_len, (int64_t)y->subject_len);
	}
	}
	return 0;
}

static int
imap_sort_cmp(const void *a, const void *b, void *ctx)
{
	const struct imap_sortmsg *x = a, *y = b;
	const struct imap_sort_args *s = ctx;

	for (size_t k = 0; k < s->nkeys; k++) {
		int r = imap_sort_cmp_key(x, y, s->keys[k]);

		if (r != 0)
			return s->reverse[k] ? -r : r;
	}
	return imap_sort_cmp_num(x->idx, y->idx);
}

static uint32_t
imap_sort_num(const struct imap_cmd *c, const struct imap_sortmsg *m)
{
	return c->uid ? m->uid : m->idx + 1;
}

/* m[lo..hi) as a sequence set in that order: ascending runs as a:b */
static void
imap_sort_put_set(struct buf *out, const struct imap_cmd *c, const struct imap_sortmsg *m,
	size_t lo, size_t hi)
{
	for (size_t i = lo; i < hi;) {
		size_t j = i;

		while (j + 1 < hi && imap_sort_num(c, &m[j + 1]) == imap_sort_num(c, &m[j]) + 1)
			j++;
		if (i > lo)
			buf_putc(out, ',');
		if (j > i)
			buf_printf(out, "%u:%u", imap_sort_num(c, &m[i]), imap_sort_num(c, &m[j]));
		else
			buf_printf(out, "%u", imap_sort_num(c, &m[i]));
		i = j + 1;
	}
}

static void
imap_sort_esearch(struct imap_session *s, struct imap_cmd *c, const struct imap_sortmsg *m,
	size_t n, uint64_t maxmodseq)
{
	const struct imap_sort_args *a = &c->u.sort;
	unsigned ret = a->search.ret;
	struct buf line = BUF_INIT;

	buf_puts(&line, "* ESEARCH (TAG ");
	buf_put_quoted(&line, c->tag, strlen(c->tag));
	buf_printf(&line, ")%s", c->uid ? " UID" : "");
	if (n > 0 && (ret & IMAP_SRET_MIN))
		buf_printf(&line, " MIN %u", imap_sort_num(c, &m[0]));
	if (n > 0 && (ret & IMAP_SRET_MAX))
		buf_printf(&line, " MAX %u", imap_sort_num(c, &m[n - 1]));
	if (ret & IMAP_SRET_COUNT)
		buf_printf(&line, " COUNT %zu", n);
	if (n > 0 && (ret & IMAP_SRET_ALL)) {
		buf_puts(&line, " ALL ");
		imap_sort_put_set(&line, c, m, 0, n);
	}
	if (ret & IMAP_SRET_PARTIAL) {
		size_t lo = a->partial_lo - 1, hi = a->partial_hi;

		buf_printf(&line, " PARTIAL (%u:%u ", a->partial_lo, a->partial_hi);
		if (hi > n)
			hi = n;
		if (lo < hi)
			imap_sort_put_set(&line, c, m, lo, hi);
		else
			buf_puts(&line, "NIL");
		buf_putc(&line, ')');
	}
	if (a->search.has_modseq && n > 0)
		buf_printf(&line, " MODSEQ %llu", (unsigned long long)maxmodseq);
	buf_puts(&line, "\r\n");
	imap_write(s, line.data, line.len);
	buf_free(&line);
}

void
imap_cmd_sort(struct imap_session *s, struct imap_cmd *c)
{
	struct imap_sort_args *a = &c->u.sort;
	struct store_uids idx = { 0 };
	struct imap_sortmsg *m;
	bool subject = false, display = false;
	uint64_t maxmodseq = 0;

	if (imap_search_indexes(s, c, &a->search, &idx) < 0)
		return;
	for (size_t k = 0; k < a->nkeys; k++) {
		subject |= a->keys[k] == IMAP_SORT_SUBJECT;
		display |= a->keys[k] == IMAP_SORT_DISPLAYFROM || a->keys[k] == IMAP_SORT_DISPLAYTO;
	}
	m = imap_sort_load(s, c, &idx, subject, display, false);
	if (m == NULL) {
		store_uids_free(&idx);
		return;
	}
	qsort_r(m, idx.n, sizeof(*m), imap_sort_cmp, a);
	for (size_t i = 0; i < idx.n; i++)
		if (m[i].modseq > maxmodseq)
			maxmodseq = m[i].modseq;
	if (a->search.esearch) {
		imap_sort_esearch(s, c, m, idx.n, maxmodseq);
	} else {
		struct buf line = BUF_INIT;

		buf_puts(&line, "* SORT");
		for (size_t i = 0; i < idx.n; i++) {
			buf_printf(&line, " %u", imap_sort_num(c, &m[i]));
			if (line.len > 16384) {
				imap_write(s, line.data, line.len);
				buf_reset(&line);
			}
		}
		if (a->search.has_modseq && idx.n > 0)
			buf_printf(&line, " (MODSEQ %llu)", (unsigned long long)maxmodseq);
		buf_puts(&line, "\r\n");
		imap_write(s, line.data, line.len);
		buf_free(&line);
	}
	imap_tagged(s, "OK", NULL, "%s completed (%zu matches)", c->name, idx.n);
	imap_sort_msgs_free(m, idx.n);
	store_uids_free(&idx);
}

void
imap_cmd_thread(struct imap_session *s, struct imap_cmd *c)
{
	struct imap_sort_args *a = &c->u.sort;
	bool refs = a->algo == IMAP_THREAD_REFERENCES;
	struct store_uids idx = { 0 };
	struct imap_thread_msg *t;
	struct imap_sortmsg *m;
	struct buf line = BUF_INIT;

	if (imap_search_indexes(s, c, &a->search, &idx) < 0)
		return;
	m = imap_sort_load(s, c, &idx, true, false, refs);
	if (m == NULL) {
		store_uids_free(&idx);
		return;
	}
	t = xcalloc(idx.n + 1, sizeof(*t));
	for (size_t i = 0; i < idx.n; i++) {
		t[i] = (struct imap_thread_msg){
			.num = imap_sort_num(c, &m[i]), .sent = m[i].sent,
			.subject = m[i].subject, .subject_len = m[i].subject_len, .refwd = m[i].refwd,
			.msgid = m[i].msgid, .msgid_len = m[i].msgid ? strlen(m[i].msgid) : 0,
			.refs = m[i].refs, .refs_len = m[i].refs ? strlen(m[i].refs) : 0,
			.irt = m[i].irt, .irt_len = m[i].irt ? strlen(m[i].irt) : 0,
		};
	}
	buf_puts(&line, idx.n > 0 ? "* THREAD " : "* THREAD");
	if (refs)
		imap_thread_references(t, idx.n, &line);
	else
		imap_thread_orderedsubject(t, idx.n, &line);
	buf_puts(&line, "\r\n");
	imap_write(s, line.data, line.len);
	imap_tagged(s, "OK", NULL, "%s completed (%zu matches)", c->name, idx.n);
	buf_free(&line);
	free(t);
	imap_sort_msgs_free(m, idx.n);
	store_uids_free(&idx);
}
