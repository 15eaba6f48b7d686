/*
 * imap_search.c - SEARCH / UID SEARCH with every RFC 3501 key, AND / OR /
 * NOT nesting, CHARSET UTF-8 and US-ASCII, MODSEQ (RFC 7162) and ESEARCH
 * results (RFC 4731: RETURN (MIN MAX COUNT ALL)).
 *
 * Matching:
 *   - flags, sequence numbers, uids, sizes, internal dates and modseqs
 *     come from the snapshot: no message is opened for them;
 *   - header keys (FROM TO CC BCC SUBJECT HEADER) match a substring of
 *     the unfolded, RFC 2047-decoded value of every field of that name;
 *     FROM TO CC BCC also match the parsed addresses of the field, as
 *     "name <mailbox@host>" without comments or folding (imapenv.h);
 *     HEADER with an empty string matches when the field is present;
 *   - BODY matches the decoded text of the message (text parts decoded
 *     from base64 / quoted-printable and converted from their charset to
 *     UTF-8, store/mimedecode.h), TEXT the decoded header and body;
 *   - all string matching is case-insensitive over Unicode (towlower in
 *     the C.UTF-8 locale; ASCII folding if that locale is missing);
 *   - SENTBEFORE/SENTON/SENTSINCE use the date of the Date: header in
 *     its own time zone, or the internal date when there is none;
 *     BEFORE/ON/SINCE use the internal date in UTC (INTERNALDATE is
 *     reported in +0000).
 * The keys of an AND are evaluated cheapest first, so content is only
 * read for messages that passed the cheap tests.
 */
#include "imap/imap_session.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wctype.h>

#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/imapenv.h"
#include "store/mime.h"
#include "store/mimedecode.h"
#include "store/rfc2047.h"

/* ------------------------------------------------------------------ */
/* case folding                                                        */

static locale_t imap_fold_loc;
static bool imap_fold_tried;

static size_t
imap_fold_put(char *o, uint32_t cp)
{
	if (cp < 0x80) {
		o[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		o[0] = (char)(0xc0 | (cp >> 6));
		o[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		o[0] = (char)(0xe0 | (cp >> 12));
		o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		o[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	o[0] = (char)(0xf0 | (cp >> 18));
	o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	o[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* Append the case-folded form of in[0..n) to out.  Invalid UTF-8 octets
 * are copied as they are.  Written straight into the buffer: this runs
 * over every octet of every message a TEXT search reads. */
static void
imap_fold(const char *in, size_t n, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0;
	char *o;

	if (!imap_fold_tried) {
		imap_fold_tried = true;
		imap_fold_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
	}
	/* lower-casing grows a character by at most half (2 -> 3 octets) */
	buf_reserve(out, n + n / 2 + 8);
	o = out->data + out->len;
	while (i < n) {
		unsigned char c = p[i];
		uint32_t cp;
		size_t len, k;

		if (c < 0x80) {
			*o++ = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
			i++;
			continue;
		}
		if ((c & 0xe0) == 0xc0) {
			len = 2;
			cp = c & 0x1f;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3;
			cp = c & 0x0f;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4;
			cp = c & 0x07;
		} else {
			*o++ = (char)c;
			i++;
			continue;
		}
		if (n - i < len) {
			*o++ = (char)c;
			i++;
			continue;
		}
		for (k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				break;
			cp = (cp << 6) | (p[i + k] & 0x3f);
		}
		if (k < len) {
			*o++ = (char)c;
			i++;
			continue;
		}
		if (imap_fold_loc != (locale_t)0) {
			wint_t l = towlower_l((wint_t)cp, imap_fold_loc);

			if (l != WEOF && (l < 0xd800 || l > 0xdfff) && l < 0x110000)
				cp = (uint32_t)l;
		}
		o += imap_fold_put(o, cp);
		i += len;
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
}

/* ------------------------------------------------------------------ */
/* per-message content, loaded on demand                               */

struct imap_smsg {
	bool loaded, failed;
	struct store_blob blob;
	size_t hdr_len;              /* the top-level header, blank line included */
	bool have_tree;
	struct mime_tree tree;
	bool have_body, have_text;
	struct buf body, text;       /* folded decoded text */
	bool have_date;
	int64_t date;                /* Date: day, or -1 */
};

struct imap_sctx {
	struct imap_session *s;
	struct imap_smsg m;
	struct buf scratch, folded;
	size_t i;                    /* snapshot index */
};

static void
imap_smsg_reset(struct imap_smsg *m)
{
	if (m->loaded && !m->failed)
		store_blob_release(&m->blob);
	if (m->have_tree)
		mime_tree_free(&m->tree);
	buf_free(&m->body);
	buf_free(&m->text);
	memset(m, 0, sizeof(*m));
}

static size_t
imap_header_len(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (p[i] != '\n')
			continue;
		if (i + 1 < n && p[i + 1] == '\n')
			return i + 2;
		if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n')
			return i + 3;
	}
	return n;
}

static bool
imap_smsg_load(struct imap_sctx *x)
{
	struct imap_smsg *m = &x->m;
	const struct store_snaprec *r = &x->s->sel.snap->recs[x->i];
	struct err err;

	if (m->loaded)
		return !m->failed;
	m->loaded = true;
	if (store_blob_map(x->s->u, r->guid, &m->blob, &err) < 0) {
		log_debug("search: body unavailable uid=%u error=%s", r->uid, log_q(err.msg));
		m->failed = true;
		return false;
	}
	m->hdr_len = imap_header_len(m->blob.data, m->blob.len);
	return true;
}

static bool
imap_smsg_tree(struct imap_sctx *x)
{
	if (!imap_smsg_load(x))
		return false;
	if (!x->m.have_tree) {
		mime_parse(&x->m.tree, x->m.blob.data, x->m.blob.len);
		x->m.have_tree = true;
	}
	return true;
}

/* day number of an RFC 5322 date ("Tue, 1 Jul 2003 10:52:37 +0200"), or -1 */
static int64_t
imap_rfc5322_day(const char *v, size_t n)
{
	static const char *const mon[12] = { "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
		"sep", "oct", "nov", "dec" };
	char buf[64];
	size_t i = 0;
	int day = 0, m = -1, year = 0, k;

	/* skip a day name and comma */
	while (i < n && (v[i] == ' ' || v[i] == '\t'))
		i++;
	if (i < n && ((v[i] | 0x20) >= 'a' && (v[i] | 0x20) <= 'z')) {
		while (i < n && v[i] != ',' && v[i] != ' ')
			i++;
		if (i < n && v[i] == ',')
			i++;
	}
	while (i < n && (v[i] == ' ' || v[i] == '\t'))
		i++;
	for (k = 0; k < 2 && i < n && v[i] >= '0' && v[i] <= '9'; k++)
		day = day * 10 + (v[i++] - '0');
	if (k == 0)
		return -1;
	while (i < n && (v[i] == ' ' || v[i] == '-'))
		i++;
	if (n - i < 3)
		return -1;
	for (k = 0; k < 12; k++)
		if (strncasecmp(v + i, mon[k], 3) == 0)
			m = k;
	if (m < 0)
		return -1;
	i += 3;
	while (i < n && ((v[i] | 0x20) >= 'a' && (v[i] | 0x20) <= 'z'))
		i++;
	while (i < n && (v[i] == ' ' || v[i] == '-'))
		i++;
	for (k = 0; k < 4 && i < n && v[i] >= '0' && v[i] <= '9'; k++)
		year = year * 10 + (v[i++] - '0');
	if (k == 2)
		year += year < 50 ? 2000 : 1900;
	else if (k == 3)
		year += 1900;
	else if (k != 4)
		return -1;
	/* reuse the IMAP date parser for validation and the day count */
	int len = snprintf(buf, sizeof(buf), "%d-%c%c%c-%04d", day, mon[m][0] - 32, mon[m][1], mon[m][2],
		year);
	if (len <= 0 || (size_t)len >= sizeof(buf))
		return -1;
	return imap_parse_date(buf, (size_t)len);
}

static int64_t
imap_smsg_sentday(struct imap_sctx *x)
{
	struct imap_smsg *m = &x->m;
	const struct store_snaprec *r = &x->s->sel.snap->recs[x->i];
	struct mime_field f;
	size_t pos = 0;

	if (m->have_date)
		return m->date;
	m->have_date = true;
	m->date = -1;
	if (imap_smsg_load(x)) {
		while (mime_header_next(m->blob.data, m->hdr_len, &pos, &f)) {
			if (mime_eq(m->blob.data + f.name_off, f.name_len, "date")) {
				m->date = imap_rfc5322_day(m->blob.data + f.value_off, f.value_len);
				break;
			}
		}
	}
	if (m->date < 0)
		m->date = r->internaldate >= 0 ? r->internaldate / 86400 : (r->internaldate - 86399) / 86400;
	return m->date;
}

/* Does the folded, decoded text t[0..n) contain needle? */
static bool
imap_smsg_has(struct imap_sctx *x, const char *t, size_t n, const struct imap_str *needle)
{
	buf_reset(&x->scratch);
	rfc2047_decode(t, n, &x->scratch);
	buf_reset(&x->folded);
	imap_fold(x->scratch.data ? x->scratch.data : "", x->scratch.len, &x->folded);
	return x->folded.len >= needle->len &&
		memmem(x->folded.data, x->folded.len, needle->s, needle->len) != NULL;
}

/* Does a header field `name` contain needle (folded)?  Empty needle:
 * present at all.  addr: an address field, also matched on its parsed
 * addresses ("a (c) @ b" is found as "a@b"). */
static bool
imap_smsg_header(struct imap_sctx *x, const char *name, const struct imap_str *needle, bool addr)
{
	struct imap_smsg *m = &x->m;
	struct mime_field f;
	size_t pos = 0;

	if (!imap_smsg_load(x))
		return false;
	while (mime_header_next(m->blob.data, m->hdr_len, &pos, &f)) {
		if (!mime_eq(m->blob.data + f.name_off, f.name_len, name))
			continue;
		if (needle->len == 0)
			return true;
		if (imap_smsg_has(x, m->blob.data + f.value_off, f.value_len, needle))
			return true;
		if (addr) {
			struct buf a = BUF_INIT;
			bool hit;

			imapenv_address_text(m->blob.data + f.value_off, f.value_len, &a);
			hit = imap_smsg_has(x, a.data ? a.data : "", a.len, needle);
			buf_free(&a);
			if (hit)
				return true;
		}
	}
	return false;
}

static bool
imap_smsg_text(struct imap_sctx *x, bool with_header, const struct imap_str *needle)
{
	struct imap_smsg *m = &x->m;
	struct buf *t = with_header ? &m->text : &m->body;
	bool *have = with_header ? &m->have_text : &m->have_body;

	if (needle->len == 0)
		return true;
	if (!*have) {
		if (!imap_smsg_tree(x))
			return false;
		buf_reset(&x->scratch);
		mimedecode_tree_text(m->blob.data, &m->tree, with_header, &x->scratch);
		imap_fold(x->scratch.data ? x->scratch.data : "", x->scratch.len, t);
		*have = true;
	}
	return t->len >= needle->len && memmem(t->data, t->len, needle->s, needle->len) != NULL;
}

/* ------------------------------------------------------------------ */
/* evaluation                                                          */

static bool
imap_kw_has(const char *list, const char *kw)
{
	size_t n = strlen(kw);

	while (list != NULL && *list != '\0') {
		const char *e = strchr(list, ' ');
		size_t len = e ? (size_t)(e - list) : strlen(list);

		if (len == n && strncasecmp(list, kw, n) == 0)
			return true;
		list = e ? e + 1 : NULL;
	}
	return false;
}

static bool
imap_search_eval(struct imap_sctx *x, const struct imap_search_key *k)
{
	const struct store_snaprec *r = &x->s->sel.snap->recs[x->i];
	uint32_t f = r->sysflags;
	int64_t iday = r->internaldate >= 0 ? r->internaldate / 86400 :
		(r->internaldate - 86399) / 86400;

	switch (k->kind) {
	case IMAP_SK_AND:
		for (size_t i = 0; i < k->nkids; i++)
			if (!imap_search_eval(x, k->kids[i]))
				return false;
		return true;
	case IMAP_SK_OR:
		return imap_search_eval(x, k->kids[0]) || imap_search_eval(x, k->kids[1]);
	case IMAP_SK_NOT:
		return !imap_search_eval(x, k->kids[0]);
	case IMAP_SK_ALL:
		return true;
	case IMAP_SK_SEQSET:
		return imap_seqset_contains(k->set.r, k->set.n, (uint32_t)x->i + 1);
	case IMAP_SK_UID:
		return imap_seqset_contains(k->set.r, k->set.n, r->uid);
	case IMAP_SK_ANSWERED: return (f & STORE_FLAG_ANSWERED) != 0;
	case IMAP_SK_DELETED: return (f & STORE_FLAG_DELETED) != 0;
	case IMAP_SK_DRAFT: return (f & STORE_FLAG_DRAFT) != 0;
	case IMAP_SK_FLAGGED: return (f & STORE_FLAG_FLAGGED) != 0;
	case IMAP_SK_SEEN: return (f & STORE_FLAG_SEEN) != 0;
	case IMAP_SK_UNANSWERED: return (f & STORE_FLAG_ANSWERED) == 0;
	case IMAP_SK_UNDELETED: return (f & STORE_FLAG_DELETED) == 0;
	case IMAP_SK_UNDRAFT: return (f & STORE_FLAG_DRAFT) == 0;
	case IMAP_SK_UNFLAGGED: return (f & STORE_FLAG_FLAGGED) == 0;
	case IMAP_SK_UNSEEN: return (f & STORE_FLAG_SEEN) == 0;
	case IMAP_SK_RECENT: return imap_sel_is_recent(x->s, r);
	case IMAP_SK_NEW: return imap_sel_is_recent(x->s, r) && (f & STORE_FLAG_SEEN) == 0;
	case IMAP_SK_OLD: return !imap_sel_is_recent(x->s, r);
	case IMAP_SK_KEYWORD: return imap_kw_has(r->keywords, k->str.s);
	case IMAP_SK_UNKEYWORD: return !imap_kw_has(r->keywords, k->str.s);
	case IMAP_SK_BEFORE: return iday < k->date;
	case IMAP_SK_ON: return iday == k->date;
	case IMAP_SK_SINCE: return iday >= k->date;
	case IMAP_SK_SENTBEFORE: return imap_smsg_sentday(x) < k->date;
	case IMAP_SK_SENTON: return imap_smsg_sentday(x) == k->date;
	case IMAP_SK_SENTSINCE: return imap_smsg_sentday(x) >= k->date;
	case IMAP_SK_LARGER: return r->size > k->num;
	case IMAP_SK_SMALLER: return r->size < k->num;
	case IMAP_SK_MODSEQ: return r->modseq >= k->num;
	case IMAP_SK_HEADER: return imap_smsg_header(x, k->field, &k->str, false);
	case IMAP_SK_BCC: return imap_smsg_header(x, "bcc", &k->str, true);
	case IMAP_SK_CC: return imap_smsg_header(x, "cc", &k->str, true);
	case IMAP_SK_FROM: return imap_smsg_header(x, "from", &k->str, true);
	case IMAP_SK_SUBJECT: return imap_smsg_header(x, "subject", &k->str, false);
	case IMAP_SK_TO: return imap_smsg_header(x, "to", &k->str, true);
	case IMAP_SK_BODY: return imap_smsg_text(x, false, &k->str);
	case IMAP_SK_TEXT: return imap_smsg_text(x, true, &k->str);
	}
	return false;
}

/* 0 snapshot only, 1 header, 2 body */
static int
imap_search_cost(const struct imap_search_key *k)
{
	int c = 0;

	switch (k->kind) {
	case IMAP_SK_AND:
	case IMAP_SK_OR:
	case IMAP_SK_NOT:
		for (size_t i = 0; i < k->nkids; i++) {
			int kc = imap_search_cost(k->kids[i]);
			if (kc > c)
				c = kc;
		}
		return c;
	case IMAP_SK_HEADER: case IMAP_SK_BCC: case IMAP_SK_CC: case IMAP_SK_FROM:
	case IMAP_SK_SUBJECT: case IMAP_SK_TO: case IMAP_SK_SENTBEFORE: case IMAP_SK_SENTON:
	case IMAP_SK_SENTSINCE:
		return 1;
	case IMAP_SK_BODY: case IMAP_SK_TEXT:
		return 2;
	default:
		return 0;
	}
}

/* Does the key read a record's guid (its body), size or internaldate? */
static bool
imap_search_needs_meta(const struct imap_search_key *k)
{
	switch (k->kind) {
	case IMAP_SK_AND:
	case IMAP_SK_OR:
	case IMAP_SK_NOT:
		for (size_t i = 0; i < k->nkids; i++)
			if (imap_search_needs_meta(k->kids[i]))
				return true;
		return false;
	case IMAP_SK_BEFORE: case IMAP_SK_ON: case IMAP_SK_SINCE:
	case IMAP_SK_LARGER: case IMAP_SK_SMALLER:
		return true;
	default:
		return imap_search_cost(k) > 0;
	}
}

/* Prepare the tree: fold needles, resolve sets, order AND kids by cost. */
static void
imap_search_prepare(struct imap_session *s, struct imap_cmd *c, struct imap_search_key *k,
	struct buf *tmp)
{
	const struct store_snapshot *snap = s->sel.snap;

	switch (k->kind) {
	case IMAP_SK_AND:
	case IMAP_SK_OR:
	case IMAP_SK_NOT:
		for (size_t i = 0; i < k->nkids; i++)
			imap_search_prepare(s, c, k->kids[i], tmp);
		if (k->kind == IMAP_SK_AND && k->nkids > 1) {
			/* stable insertion sort by cost */
			for (size_t i = 1; i < k->nkids; i++) {
				struct imap_search_key *v = k->kids[i];
				int cv = imap_search_cost(v);
				size_t j = i;

				while (j > 0 && imap_search_cost(k->kids[j - 1]) > cv) {
					k->kids[j] = k->kids[j - 1];
					j--;
				}
				k->kids[j] = v;
			}
		}
		return;
	case IMAP_SK_SEQSET:
	case IMAP_SK_UID: {
		struct imap_range *r = imap_arena_alloc(&c->arena, (k->set.n + 1) * sizeof(*r));
		uint32_t star = k->kind == IMAP_SK_SEQSET ? (uint32_t)snap->n :
			(snap->n > 0 ? snap->recs[snap->n - 1].uid : 0);

		k->set.n = imap_seqset_resolve(&k->set, star, r);
		k->set.r = r;
		return;
	}
	case IMAP_SK_HEADER: case IMAP_SK_BCC: case IMAP_SK_CC: case IMAP_SK_FROM:
	case IMAP_SK_SUBJECT: case IMAP_SK_TO: case IMAP_SK_BODY: case IMAP_SK_TEXT:
		buf_reset(tmp);
		imap_fold(k->str.s, k->str.len, tmp);
		k->str.s = imap_arena_strndup(&c->arena, tmp->data ? tmp->data : "", tmp->len);
		k->str.len = tmp->len;
		return;
	default:
		return;
	}
}

void
imap_cmd_search(struct imap_session *s, struct imap_cmd *c)
{
	struct imap_search *q = &c->u.search;
	const struct store_snapshot *snap;
	struct imap_sctx x;
	struct store_uids res = { 0 };
	struct buf line = BUF_INIT;
	uint64_t maxmodseq = 0;
	size_t first_i = 0, last_i = 0;

	if (q->charset != NULL && !str_eq_ci(q->charset, "UTF-8") &&
	    !str_eq_ci(q->charset, "US-ASCII")) {
		imap_tagged(s, "NO", "BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset");
		return;
	}
	if (q->has_modseq)
		imap_condstore_enable(s);
	memset(&x, 0, sizeof(x));
	x.s = s;
	imap_search_prepare(s, c, q->key, &x.scratch);
	snap = s->sel.snap;
	if (imap_search_needs_meta(q->key)) {
		struct err err;

		if (store_snapshot_meta(s->u, s->sel.snap, 0, snap->n, &err) < 0) {
			imap_tagged_err(s, &err, c->name);
			buf_free(&x.scratch);
			return;
		}
	}
	for (size_t i = 0; i < snap->n; i++) {
		x.i = i;
		if (imap_search_eval(&x, q->key)) {
			if (res.n == 0)
				first_i = i;
			last_i = i;
			store_uids_add(&res, c->uid ? snap->recs[i].uid : (uint32_t)i + 1);
			if (snap->recs[i].modseq > maxmodseq)
				maxmodseq = snap->recs[i].modseq;
		}
		if (x.m.loaded || x.m.have_date)
			imap_smsg_reset(&x.m);
	}
	if (s->rev2 && !q->esearch) {
		/* IMAP4rev2: SEARCH answers with ESEARCH, as RETURN (ALL) */
		q->esearch = true;
		q->ret = IMAP_SRET_ALL;
	}
	if (q->esearch) {
		buf_printf(&line, "* ESEARCH (TAG \"%s\")%s", c->tag, c->uid ? " UID" : "");
		if (res.n > 0 && (q->ret & IMAP_SRET_MIN))
			buf_printf(&line, " MIN %u", res.v[0]);
		if (res.n > 0 && (q->ret & IMAP_SRET_MAX))
			buf_printf(&line, " MAX %u", res.v[res.n - 1]);
		if (q->ret & IMAP_SRET_COUNT)
			buf_printf(&line, " COUNT %zu", res.n);
		if (res.n > 0 && (q->ret & IMAP_SRET_ALL)) {
			buf_puts(&line, " ALL ");
			imap_put_set(&line, res.v, res.n);
		}
		if (q->has_modseq && res.n > 0) {
			/* only MIN and/or MAX: the modseq of what they return
			 * (RFC 7162 3.1.5) */
			if (!(q->ret & (IMAP_SRET_ALL | IMAP_SRET_COUNT))) {
				maxmodseq = 0;
				if ((q->ret & IMAP_SRET_MIN))
					maxmodseq = snap->recs[first_i].modseq;
				if ((q->ret & IMAP_SRET_MAX) && snap->recs[last_i].modseq > maxmodseq)
					maxmodseq = snap->recs[last_i].modseq;
			}
			buf_printf(&line, " MODSEQ %llu", (unsigned long long)maxmodseq);
		}
		buf_puts(&line, "\r\n");
		imap_write(s, line.data, line.len);
	} else {
		buf_puts(&line, "* SEARCH");
		for (size_t k = 0; k < res.n; k++) {
			buf_printf(&line, " %u", res.v[k]);
			if (line.len > 16384) {
				imap_write(s, line.data, line.len);
				buf_reset(&line);
			}
		}
		if (q->has_modseq && res.n > 0)
			buf_printf(&line, " (MODSEQ %llu)", (unsigned long long)maxmodseq);
		buf_puts(&line, "\r\n");
		imap_write(s, line.data, line.len);
	}
	imap_tagged(s, "OK", NULL, "%s completed (%zu matches)", c->name, res.n);
	imap_smsg_reset(&x.m);
	buf_free(&x.scratch);
	buf_free(&x.folded);
	buf_free(&line);
	store_uids_free(&res);
}

/* The snapshot indexes of the messages q matches, ascending, for SORT
 * and THREAD (imap_sort.c); the same evaluation as SEARCH.  0, or -1
 * with the tagged NO sent. */
int
imap_search_indexes(struct imap_session *s, struct imap_cmd *c, struct imap_search *q,
	struct store_uids *idx_r)
{
	const struct store_snapshot *snap = s->sel.snap;
	struct imap_sctx x;

	if (q->charset != NULL && !str_eq_ci(q->charset, "UTF-8") &&
	    !str_eq_ci(q->charset, "US-ASCII")) {
		imap_tagged(s, "NO", "BADCHARSET (UTF-8 US-ASCII)", "Unsupported charset");
		return -1;
	}
	if (q->has_modseq)
		s->condstore = true;
	memset(&x, 0, sizeof(x));
	x.s = s;
	imap_search_prepare(s, c, q->key, &x.scratch);
	if (imap_search_needs_meta(q->key)) {
		struct err err;

		if (store_snapshot_meta(s->u, s->sel.snap, 0, snap->n, &err) < 0) {
			imap_tagged_err(s, &err, c->name);
			buf_free(&x.scratch);
			return -1;
		}
	}
	for (size_t i = 0; i < snap->n; i++) {
		x.i = i;
		if (imap_search_eval(&x, q->key))
			store_uids_add(idx_r, (uint32_t)i);
		if (x.m.loaded || x.m.have_date)
			imap_smsg_reset(&x.m);
	}
	imap_smsg_reset(&x.m);
	buf_free(&x.scratch);
	buf_free(&x.folded);
	return 0;
}
