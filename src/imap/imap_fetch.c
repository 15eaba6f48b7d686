/*
 * imap_fetch.c - FETCH / UID FETCH: every RFC 3501 data item, BODY[section]
 * <partial> and BODY.PEEK, RFC822*, the ALL/FAST/FULL macros, MODSEQ and
 * the CHANGEDSINCE / VANISHED modifiers (RFC 7162).
 *
 * Nothing is reparsed to answer: FLAGS, UID, INTERNALDATE, RFC822.SIZE
 * and MODSEQ come from the snapshot; ENVELOPE, BODY and BODYSTRUCTURE
 * are the strings computed at delivery (store_record_get); a section is
 * a byte range of the stored message found through the stored part tree
 * (imapenv_tree_decode + mime_section), written to the client straight
 * from the mapped body.  Only when a record lacks those (the MIME code
 * was unavailable at append) is the message parsed here.
 *
 * BINARY[part]<partial>, BINARY.PEEK and BINARY.SIZE (RFC 3516) are the
 * same byte range as BODY[part] with its Content-Transfer-Encoding undone
 * (base64 and quoted-printable; 7bit, 8bit and binary as they are; a
 * multipart or message part, or the whole message, as stored).  Any
 * other encoding fails the FETCH with NO [UNKNOWN-CTE] before that
 * message's response; content with a NUL goes out as a literal8 ~{n}.
 *
 * \Seen: a non-PEEK body item on a read-write mailbox sets \Seen first
 * (one store transaction for the whole set) and the FETCH responses of
 * those messages then carry FLAGS as well.
 */
#include "imap/imap_session.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/base64.h"
#include "lib/log.h"
#include "lib/qp.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/imapenv.h"
#include "store/mime.h"

#define IMAP_FETCH_STEP (1024 * 1024)   /* a large body goes out this much at a time */

int imap_sel_vanished(struct imap_session *s, uint64_t modseq, uint32_t uidmin, uint32_t uidmax,
	struct store_uids *out, struct err *err);

void
imap_put_internaldate(struct buf *out, int64_t t)
{
	static const char *const mon[12] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
		"Sep", "Oct", "Nov", "Dec" };
	time_t tt = (time_t)t;
	struct tm tm;

	if (gmtime_r(&tt, &tm) == NULL)
		memset(&tm, 0, sizeof(tm));
	buf_printf(out, "\"%02d-%s-%04d %02d:%02d:%02d +0000\"", tm.tm_mday, mon[tm.tm_mon % 12],
		tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* What one message needs, loaded on demand.  rf is the record with its
 * strings: borrowed from a batched read (store_records_full), or owned
 * (own, from store_record_get). */
struct imap_fmsg {
	const struct store_record_full *rf;
	struct store_record_full own;
	bool have_own;
	struct store_blob blob;
	bool have_blob;
	struct mime_tree tree;
	bool have_tree;
	struct imapenv env;       /* only when the stored strings are missing */
	bool have_env;
};

static void
imap_fmsg_free(struct imap_fmsg *m)
{
	if (m->have_own)
		store_record_full_free(&m->own);
	if (m->have_blob)
		store_blob_release(&m->blob);
	if (m->have_tree)
		mime_tree_free(&m->tree);
	if (m->have_env)
		imapenv_free(&m->env);
	memset(m, 0, sizeof(*m));
}

/* Send a large piece of a message a MiB at a time, giving the pages of
 * the body's mapping back behind it (store_blob_done_with): a FETCH of a
 * 100 MB body costs the process no more than a few MiB. */
static void
imap_fetch_write_big(struct imap_session *s, struct imap_fmsg *m, const char *p, size_t len)
{
	while (len > 0) {
		size_t step = len < IMAP_FETCH_STEP ? len : IMAP_FETCH_STEP;

		imap_write(s, p, step);   /* sent (or buffered) on return */
		if (m->have_blob)
			store_blob_done_with(&m->blob, p, step);
		p += step;
		len -= step;
	}
}

static int
imap_fmsg_blob(struct imap_session *s, struct imap_fmsg *m, const struct store_snaprec *r,
	struct err *err)
{
	if (m->have_blob)
		return 0;
	if (store_blob_map(s->u, r->guid, &m->blob, err) < 0)
		return -1;
	m->have_blob = true;
	return 0;
}

static int
imap_fmsg_tree(struct imap_session *s, struct imap_fmsg *m, const struct store_snaprec *r,
	struct err *err)
{
	struct err derr;

	if (m->have_tree)
		return 0;
	if (imap_fmsg_blob(s, m, r, err) < 0)
		return -1;
	memset(&m->tree, 0, sizeof(m->tree));
	if (m->rf != NULL && m->rf->parts != NULL &&
	    imapenv_tree_decode(m->rf->parts, m->rf->parts_len, &m->tree, &derr) == 0 &&
	    m->tree.len == m->blob.len) {
		m->have_tree = true;
		return 0;
	}
	mime_tree_free(&m->tree);
	mime_parse(&m->tree, m->blob.data, m->blob.len);
	m->have_tree = true;
	return 0;
}

/* The stored ENVELOPE/BODY/BODYSTRUCTURE, computing them if missing. */
static const char *
imap_fmsg_str(struct imap_session *s, struct imap_fmsg *m, const struct store_snaprec *r,
	enum imap_fatt_kind k, struct err *err)
{
	const char *v = m->rf == NULL ? NULL : k == IMAP_FA_ENVELOPE ? m->rf->envelope :
		k == IMAP_FA_BODY ? m->rf->body : m->rf->bodystructure;

	if (v != NULL)
		return v;
	if (!m->have_env) {
		if (imap_fmsg_blob(s, m, r, err) < 0)
			return NULL;
		imapenv_build(m->blob.data, m->blob.len, &m->env);
		m->have_env = true;
	}
	return buf_cstr(k == IMAP_FA_ENVELOPE ? &m->env.envelope :
		k == IMAP_FA_BODY ? &m->env.body : &m->env.bodystructure);
}

static bool
imap_att_needs_record(const struct imap_fetch_att *a)
{
	switch (a->kind) {
	case IMAP_FA_ENVELOPE:
	case IMAP_FA_BODY:
	case IMAP_FA_BODYSTRUCTURE:
	case IMAP_FA_SECTION:
	case IMAP_FA_RFC822:
	case IMAP_FA_RFC822_HEADER:
	case IMAP_FA_RFC822_TEXT:
	case IMAP_FA_BINARY:
	case IMAP_FA_BINARY_SIZE:
		return true;
	default:
		return false;
	}
}

/* Does the item read the record's guid, size or internaldate? */
static bool
imap_att_needs_meta(const struct imap_fetch_att *a)
{
	return imap_att_needs_record(a) || a->kind == IMAP_FA_INTERNALDATE ||
	       a->kind == IMAP_FA_RFC822_SIZE;
}

static bool
imap_att_sets_seen(const struct imap_fetch_att *a)
{
	return a->kind == IMAP_FA_RFC822 || a->kind == IMAP_FA_RFC822_TEXT ||
	       ((a->kind == IMAP_FA_SECTION || a->kind == IMAP_FA_BINARY) && !a->peek);
}

/* Does the item read the message body (and its part tree)? */
static bool
imap_att_needs_body(enum imap_fatt_kind kind)
{
	return kind == IMAP_FA_SECTION || kind == IMAP_FA_RFC822 || kind == IMAP_FA_RFC822_HEADER ||
	       kind == IMAP_FA_RFC822_TEXT || kind == IMAP_FA_BINARY || kind == IMAP_FA_BINARY_SIZE;
}

enum imap_cte { IMAP_CTE_NONE, IMAP_CTE_BASE64, IMAP_CTE_QP, IMAP_CTE_UNKNOWN };

/* The transfer encoding BINARY[path] must undo (tree loaded); *range
 * the part's body, or false when there is no such part. */
static bool
imap_binary_cte(struct imap_fmsg *m, const struct imap_fetch_att *a, struct mime_range *range,
	enum imap_cte *cte)
{
	const struct mime_part *pt;
	const char *hdr;
	size_t hlen, pos = 0;
	struct mime_field f;

	*cte = IMAP_CTE_NONE;
	if (mime_section(&m->tree, a->path, a->npath, MIME_SEC_BODY, range) < 0 ||
	    range->off > m->blob.len || range->len > m->blob.len - range->off)
		return false;
	if (a->npath == 0 || range->part >= m->tree.nparts)
		return true;
	pt = &m->tree.parts[range->part];
	if (pt->kind != MIME_KIND_LEAF || pt->body_start < pt->hdr_start || pt->body_start > m->blob.len)
		return true;
	hdr = m->blob.data + pt->hdr_start;
	hlen = pt->body_start - pt->hdr_start;
	while (mime_header_next(hdr, hlen, &pos, &f)) {
		size_t off = f.value_off, n = f.value_len;

		if (f.name_len != 25 || strncasecmp(hdr + f.name_off, "Content-Transfer-Encoding", 25) != 0)
			continue;
		while (n > 0 && (hdr[off] == ' ' || hdr[off] == '\t' || hdr[off] == '\r' || hdr[off] == '\n')) {
			off++;
			n--;
		}
		while (n > 0 && (hdr[off + n - 1] == ' ' || hdr[off + n - 1] == '\t' ||
		       hdr[off + n - 1] == '\r' || hdr[off + n - 1] == '\n'))
			n--;
		if (n == 6 && strncasecmp(hdr + off, "base64", 6) == 0)
			*cte = IMAP_CTE_BASE64;
		else if (n == 16 && strncasecmp(hdr + off, "quoted-printable", 16) == 0)
			*cte = IMAP_CTE_QP;
		else if (!((n == 4 && (strncasecmp(hdr + off, "7bit", 4) == 0 ||
		                       strncasecmp(hdr + off, "8bit", 4) == 0)) ||
		           (n == 6 && strncasecmp(hdr + off, "binary", 6) == 0) || n == 0))
			*cte = IMAP_CTE_UNKNOWN;
		break;
	}
	return true;
}

/* The decoded octets of a BINARY item: *p, *len (into the blob or
 * scratch), before any partial. */
static void
imap_fetch_binary(struct imap_fmsg *m, const struct imap_fetch_att *a, const char **p,
	size_t *len, struct buf *scratch)
{
	struct mime_range range;
	enum imap_cte cte;

	*p = "";
	*len = 0;
	if (!imap_binary_cte(m, a, &range, &cte))
		return;
	if (cte == IMAP_CTE_NONE || cte == IMAP_CTE_UNKNOWN) {
		*p = m->blob.data + range.off;
		*len = range.len;
		return;
	}
	buf_reset(scratch);
	if (cte == IMAP_CTE_BASE64)
		base64_decode_mime(scratch, m->blob.data + range.off, range.len);
	else
		qp_decode(scratch, m->blob.data + range.off, range.len);
	*p = scratch->data != NULL ? scratch->data : "";
	*len = scratch->len;
}

/* The bytes of a body item: p_r, len_r (into the blob or into scratch). */
static int
imap_fetch_section(struct imap_session *s, struct imap_fmsg *m, const struct store_snaprec *r,
	const struct imap_fetch_att *a, const char **p, size_t *len, struct buf *scratch,
	struct err *err)
{
	enum mime_sec w;
	struct mime_range range;
	const uint32_t *path = NULL;
	size_t npath = 0;
	enum imap_sec sec = IMAP_SEC_BODY;

	if (imap_fmsg_tree(s, m, r, err) < 0)
		return -1;
	switch (a->kind) {
	case IMAP_FA_RFC822:
		sec = IMAP_SEC_BODY;
		break;
	case IMAP_FA_RFC822_HEADER:
		sec = IMAP_SEC_HEADER;
		break;
	case IMAP_FA_RFC822_TEXT:
		sec = IMAP_SEC_TEXT;
		break;
	default:
		sec = a->sec;
		path = a->path;
		npath = a->npath;
		break;
	}
	switch (sec) {
	case IMAP_SEC_HEADER:
	case IMAP_SEC_HEADER_FIELDS:
	case IMAP_SEC_HEADER_FIELDS_NOT:
		w = MIME_SEC_HEADER;
		break;
	case IMAP_SEC_TEXT:
		w = MIME_SEC_TEXT;
		break;
	case IMAP_SEC_MIME:
		w = MIME_SEC_MIME;
		break;
	default:
		w = MIME_SEC_BODY;
		break;
	}
	*p = "";
	*len = 0;
	if (mime_section(&m->tree, path, npath, w, &range) < 0)
		return 0;   /* no such part: an empty string */
	if (range.off > m->blob.len || range.len > m->blob.len - range.off)
		return 0;
	if (sec == IMAP_SEC_HEADER_FIELDS || sec == IMAP_SEC_HEADER_FIELDS_NOT) {
		buf_reset(scratch);
		mime_header_filter(m->blob.data + range.off, range.len, a->fields, a->nfields,
			sec == IMAP_SEC_HEADER_FIELDS_NOT, scratch);
		*p = scratch->data ? scratch->data : "";
		*len = scratch->len;
	} else {
		*p = m->blob.data + range.off;
		*len = range.len;
	}
	if (a->partial) {
		if (a->p_off >= *len) {
			*len = 0;
		} else {
			*p += a->p_off;
			*len -= a->p_off;
			if (*len > a->p_len)
				*len = a->p_len;
		}
	}
	return 0;
}

struct imap_fetch_ctx {
	struct imap_session *s;
	struct imap_cmd *c;
	const struct imap_fetch *f;
	bool need_record;
	bool auto_uid;
	bool auto_modseq;
	struct buf out;
	struct buf scratch;
	unsigned failed;
	unsigned unknown_cte;   /* BINARY of a part in an encoding we cannot undo */
};

/* Send everything out holds, then empty it. */
static void
imap_fetch_drain(struct imap_fetch_ctx *fc)
{
	if (fc->out.len > 0)
		imap_write(fc->s, fc->out.data, fc->out.len);
	buf_reset(&fc->out);
}

/* Load everything of message i that can fail before the first byte goes
 * out (record, body, transfer encodings); false: the message is skipped,
 * counted in fc->failed or fc->unknown_cte, and m freed. */
static bool
imap_fetch_load(struct imap_fetch_ctx *fc, const struct store_snaprec *r, struct imap_fmsg *m,
	const struct store_record_full *rf)
{
	struct imap_session *s = fc->s;
	const struct imap_fetch *f = fc->f;
	struct err err;

	memset(m, 0, sizeof(*m));
	m->rf = rf;
	if (fc->need_record && rf == NULL) {
		if (store_record_get(s->u, s->sel.mailbox_id, r->uid, &m->own, &err) < 0) {
			log_debug("fetch: record unavailable user=%s uid=%u error=%s", log_q(s->user),
				r->uid, log_q(err.msg));
			fc->failed++;
			return false;
		}
		m->have_own = true;
		m->rf = &m->own;
	}
	for (size_t k = 0; k < f->natts; k++) {
		enum imap_fatt_kind kind = f->atts[k].kind;

		if (imap_att_needs_body(kind) && imap_fmsg_tree(s, m, r, &err) < 0) {
			log_warn("fetch: message body unavailable user=%s uid=%u error=%s", log_q(s->user),
				r->uid, log_q(err.msg));
			fc->failed++;
			imap_fmsg_free(m);
			return false;
		}
		if (kind == IMAP_FA_BINARY || kind == IMAP_FA_BINARY_SIZE) {
			struct mime_range range;
			enum imap_cte cte;

			if (imap_binary_cte(m, &f->atts[k], &range, &cte) && cte == IMAP_CTE_UNKNOWN) {
				log_debug("fetch: unknown transfer encoding user=%s uid=%u item=%s",
					log_q(s->user), r->uid, f->atts[k].name);
				fc->unknown_cte++;
				imap_fmsg_free(m);
				return false;
			}
		}
	}
	return true;
}

/* A body item (RFC822*, BODY[...], BINARY[...]): its name and its bytes as
 * a string or literal; a large one goes out straight from the body. */
static void
imap_fetch_put_body(struct imap_fetch_ctx *fc, struct imap_fmsg *m, const struct store_snaprec *r,
	const struct imap_fetch_att *a)
{
	const char *p = "";
	size_t len = 0;
	struct err err;

	if (a->kind == IMAP_FA_BINARY) {
		imap_fetch_binary(m, a, &p, &len, &fc->scratch);
		if (a->partial) {
			size_t off = a->p_off < len ? a->p_off : len;

			p += off;
			len -= off;
			if (len > a->p_len)
				len = a->p_len;
		}
	} else {
		imap_fetch_section(fc->s, m, r, a, &p, &len, &fc->scratch, &err);
	}
	buf_puts(&fc->out, a->name);
	if (len == 0) {
		buf_puts(&fc->out, " \"\"");
		return;
	}
	buf_printf(&fc->out, " %s{%zu}\r\n",
		a->kind == IMAP_FA_BINARY && memchr(p, '\0', len) != NULL ? "~" : "", len);
	if (len < 4096) {
		buf_append(&fc->out, p, len);
	} else {
		imap_fetch_drain(fc);
		imap_fetch_write_big(fc->s, m, p, len);
	}
}

/* One data item of the response (its leading space already written);
 * true when it was FLAGS. */
static bool
imap_fetch_put_att(struct imap_fetch_ctx *fc, struct imap_fmsg *m, const struct store_snaprec *r,
	const struct imap_fetch_att *a)
{
	struct imap_session *s = fc->s;
	struct err err;

	switch (a->kind) {
	case IMAP_FA_FLAGS:
		buf_puts(&fc->out, "FLAGS ");
		imap_flags_put(&fc->out, r->sysflags, r->keywords, imap_sel_is_recent(s, r));
		return true;
	case IMAP_FA_UID:
		buf_printf(&fc->out, "UID %u", r->uid);
		break;
	case IMAP_FA_INTERNALDATE:
		buf_puts(&fc->out, "INTERNALDATE ");
		imap_put_internaldate(&fc->out, r->internaldate);
		break;
	case IMAP_FA_RFC822_SIZE:
		buf_printf(&fc->out, "RFC822.SIZE %llu", (unsigned long long)r->size);
		break;
	case IMAP_FA_MODSEQ:
		buf_printf(&fc->out, "MODSEQ (%llu)", (unsigned long long)r->modseq);
		break;
	case IMAP_FA_ENVELOPE:
	case IMAP_FA_BODY:
	case IMAP_FA_BODYSTRUCTURE: {
		const char *v = imap_fmsg_str(s, m, r, a->kind, &err);

		buf_puts(&fc->out, a->name);
		buf_putc(&fc->out, ' ');
		buf_puts(&fc->out, v != NULL ? v : "NIL");
		break;
	}
	case IMAP_FA_BINARY_SIZE: {
		const char *p;
		size_t len;

		imap_fetch_binary(m, a, &p, &len, &fc->scratch);
		buf_printf(&fc->out, "%s %zu", a->name, len);
		break;
	}
	case IMAP_FA_RFC822:
	case IMAP_FA_RFC822_HEADER:
	case IMAP_FA_RFC822_TEXT:
	case IMAP_FA_BINARY:
	case IMAP_FA_SECTION:
		imap_fetch_put_body(fc, m, r, a);
		break;
	}
	return false;
}

/* One FETCH response.  rf: the record from a batched read, or NULL (read
 * it here when the items need it). */
static void
imap_fetch_one(struct imap_fetch_ctx *fc, size_t i, bool add_flags,
	const struct store_record_full *rf)
{
	struct imap_session *s = fc->s;
	const struct store_snaprec *r = &s->sel.snap->recs[i];
	const struct imap_fetch *f = fc->f;
	struct imap_fmsg m;
	bool first = true, flags_sent = false;

	if (!imap_fetch_load(fc, r, &m, rf))
		return;
	/* a keyword this session was not told of gets FLAGS first */
	imap_sel_announce(s, r->keywords);
	buf_reset(&fc->out);
	buf_printf(&fc->out, "* %zu FETCH (", i + 1);
	if (fc->auto_uid) {
		buf_printf(&fc->out, "UID %u", r->uid);
		first = false;
	}
	for (size_t k = 0; k < f->natts; k++) {
		if (!first)
			buf_putc(&fc->out, ' ');
		first = false;
		if (imap_fetch_put_att(fc, &m, r, &f->atts[k]))
			flags_sent = true;
	}
	if (fc->auto_modseq) {
		buf_printf(&fc->out, "%sMODSEQ (%llu)", first ? "" : " ", (unsigned long long)r->modseq);
		first = false;
	}
	if (add_flags && !flags_sent) {
		buf_puts(&fc->out, first ? "FLAGS " : " FLAGS ");
		imap_flags_put(&fc->out, r->sysflags, r->keywords, imap_sel_is_recent(s, r));
	}
	buf_puts(&fc->out, ")\r\n");
	imap_fetch_drain(fc);
	imap_fmsg_free(&m);
}

/* Set \Seen on the unseen messages of the set; their seqs (and others'
 * changes found on the way) end up in changed. */
static int
imap_fetch_set_seen(struct imap_session *s, const struct imap_fetch *f, const struct imap_range *idx,
	size_t n, struct store_uids *changed)
{
	const struct store_snapshot *snap = s->sel.snap;
	struct store_range *ranges = NULL;
	size_t nr = 0, cap = 0;
	struct err err;
	int rc = 0;

	for (size_t k = 0; k < n; k++) {
		for (size_t i = idx[k].lo; i < idx[k].hi; i++) {
			const struct store_snaprec *r = &snap->recs[i];

			if ((r->sysflags & STORE_FLAG_SEEN) || r->expunged)
				continue;
			if (f->has_changedsince && r->modseq <= f->changedsince)
				continue;
			if (nr > 0 && ranges[nr - 1].hi + 1 == r->uid) {
				ranges[nr - 1].hi = r->uid;
				continue;
			}
			if (nr == cap) {
				cap = cap ? cap * 2 : 16;
				ranges = xreallocarray(ranges, cap, sizeof(*ranges));
			}
			ranges[nr].lo = ranges[nr].hi = r->uid;
			nr++;
		}
	}
	if (nr == 0)
		return 0;
	if (store_flags(s->u, s->sel.mailbox_id, ranges, nr, STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0,
		NULL, NULL, NULL, &err) < 0) {
		log_warn("fetch: cannot set \\Seen user=%s error=%s", log_q(s->user), log_q(err.msg));
		rc = -1;
	} else {
		rc = imap_sel_sync(s, false, changed);
	}
	free(ranges);
	return rc;
}

/* Messages whose records are read in one store transaction. */
#define IMAP_FETCH_BATCH 256

struct imap_fetch_batch {
	struct imap_fetch_ctx *fc;
	bool *extra;
	size_t idx[IMAP_FETCH_BATCH];   /* snapshot indexes, ascending */
	size_t n;
	size_t cur;                     /* next of idx[] to answer */
};

static int
imap_fetch_batch_cb(void *ctx, const struct store_record_full *rf)
{
	struct imap_fetch_batch *b = ctx;
	const struct store_snapshot *snap = b->fc->s->sel.snap;

	while (b->cur < b->n && snap->recs[b->idx[b->cur]].uid < rf->rec.uid) {
		b->fc->failed++;   /* no record for it: gone since */
		b->cur++;
	}
	if (b->cur < b->n && snap->recs[b->idx[b->cur]].uid == rf->rec.uid) {
		size_t i = b->idx[b->cur++];

		imap_fetch_one(b->fc, i, b->extra != NULL && b->extra[i], rf);
		if (b->extra != NULL)
			b->extra[i] = false;
	}
	return b->fc->s->fatal ? 1 : 0;
}

/* Answer the batched messages: one store_records_full call over the uid
 * ranges they form. */
static void
imap_fetch_batch_run(struct imap_fetch_batch *b, bool with_parts)
{
	struct imap_session *s = b->fc->s;
	const struct store_snapshot *snap = s->sel.snap;
	struct store_range ranges[IMAP_FETCH_BATCH];
	size_t nr = 0;
	struct err err;

	for (size_t k = 0; k < b->n; k++) {
		uint32_t uid = snap->recs[b->idx[k]].uid;

		if (nr > 0 && k > 0 && b->idx[k] == b->idx[k - 1] + 1)
			ranges[nr - 1].hi = uid;
		else {
			ranges[nr].lo = ranges[nr].hi = uid;
			nr++;
		}
	}
	b->cur = 0;
	if (store_records_full(s->u, s->sel.mailbox_id, ranges, nr, with_parts, imap_fetch_batch_cb, b,
		&err) < 0) {
		log_warn("fetch: batched read failed user=%s error=%s", log_q(s->user), log_q(err.msg));
		/* answer the rest one by one */
		for (; b->cur < b->n; b->cur++) {
			size_t i = b->idx[b->cur];

			imap_fetch_one(b->fc, i, b->extra != NULL && b->extra[i], NULL);
			if (b->extra != NULL)
				b->extra[i] = false;
		}
	}
	b->fc->failed += (unsigned)(b->n - b->cur);
	b->n = 0;
	b->cur = 0;
}

static int
imap_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void
imap_cmd_fetch(struct imap_session *s, struct imap_cmd *c)
{
	const struct imap_fetch *f = &c->u.fetch;
	struct imap_fetch_ctx fc;
	struct imap_range *idx = NULL;
	struct store_uids changed = { 0 };
	bool set_seen = false, with_parts = false, need_meta = false, *extra = NULL;
	size_t n;

	if (f->vanished && !(c->uid && s->qresync)) {
		imap_tagged(s, "BAD", NULL, "VANISHED needs UID FETCH and ENABLE QRESYNC");
		return;
	}
	if (imap_sel_indexes(s, &f->set, c->uid, &idx, &n) < 0)
		return;
	memset(&fc, 0, sizeof(fc));
	fc.s = s;
	fc.c = c;
	fc.f = f;
	fc.auto_uid = c->uid;
	fc.auto_modseq = f->has_changedsince;
	for (size_t k = 0; k < f->natts; k++) {
		const struct imap_fetch_att *a = &f->atts[k];

		if (imap_att_needs_record(a))
			fc.need_record = true;
		if (imap_att_needs_meta(a))
			need_meta = true;
		if (imap_att_sets_seen(a))
			set_seen = true;
		if (imap_att_needs_body(a->kind))
			with_parts = true;
		if (a->kind == IMAP_FA_UID)
			fc.auto_uid = false;
		if (a->kind == IMAP_FA_MODSEQ) {
			fc.auto_modseq = false;
			imap_condstore_enable(s);
		}
	}
	if (f->has_changedsince)
		imap_condstore_enable(s);
	if (need_meta && n > 0) {
		size_t lo = idx[0].lo, hi = idx[0].hi;
		struct err err;

		for (size_t k = 1; k < n; k++) {
			lo = idx[k].lo < lo ? idx[k].lo : lo;
			hi = idx[k].hi > hi ? idx[k].hi : hi;
		}
		if (store_snapshot_meta(s->u, s->sel.snap, lo, hi, &err) < 0) {
			imap_tagged_err(s, &err, c->name);
			free(idx);
			return;
		}
	}

	if (f->vanished) {
		struct store_uids v = { 0 }, w = { 0 };
		struct imap_range *ur = xcalloc(f->set.n + 1, sizeof(*ur));
		uint32_t star = s->sel.snap->uidnext > 0 ? s->sel.snap->uidnext - 1 : 0;
		size_t nu = imap_seqset_resolve(&f->set, star, ur);
		struct err err;

		if (nu > 0 && imap_sel_vanished(s, f->changedsince, ur[0].lo, ur[nu - 1].hi, &v, &err) == 0) {
			for (size_t k = 0; k < v.n; k++)
				if (imap_seqset_contains(ur, nu, v.v[k]))
					store_uids_add(&w, v.v[k]);
			if (w.n > 0) {
				buf_reset(&s->tmp);
				buf_puts(&s->tmp, "* VANISHED (EARLIER) ");
				imap_put_set(&s->tmp, w.v, w.n);
				buf_puts(&s->tmp, "\r\n");
				imap_write(s, s->tmp.data, s->tmp.len);
			}
		}
		store_uids_free(&v);
		store_uids_free(&w);
		free(ur);
	}

	if (set_seen && !s->sel.readonly) {
		if (imap_fetch_set_seen(s, f, idx, n, &changed) < 0 && s->state != IMAP_SELECTED)
			goto out;
		if (changed.n > 1)
			qsort(changed.v, changed.n, sizeof(*changed.v), imap_u32_cmp);
		extra = xcalloc(s->sel.snap->n + 1, sizeof(bool));
		for (size_t k = 0; k < changed.n; k++)
			if (changed.v[k] >= 1 && changed.v[k] <= s->sel.snap->n)
				extra[changed.v[k] - 1] = true;
	}
	{
		struct imap_fetch_batch b;

		memset(&b, 0, sizeof(b));
		b.fc = &fc;
		b.extra = extra;
		for (size_t k = 0; k < n; k++) {
			for (size_t i = idx[k].lo; i < idx[k].hi && i < s->sel.snap->n; i++) {
				const struct store_snaprec *r = &s->sel.snap->recs[i];

				if (f->has_changedsince && r->modseq <= f->changedsince)
					continue;
				if (!fc.need_record) {
					imap_fetch_one(&fc, i, extra != NULL && extra[i], NULL);
					if (extra != NULL)
						extra[i] = false;
					continue;
				}
				b.idx[b.n++] = i;
				if (b.n == IMAP_FETCH_BATCH)
					imap_fetch_batch_run(&b, with_parts);
			}
		}
		if (b.n > 0)
			imap_fetch_batch_run(&b, with_parts);
	}
	/* other sessions' flag changes met while setting \Seen */
	if (extra != NULL)
		for (size_t i = 0; i < s->sel.snap->n; i++)
			if (extra[i])
				imap_sel_send_flags(s, i, c->uid);
	if (fc.unknown_cte > 0)
		imap_tagged(s, "NO", "UNKNOWN-CTE", "Cannot decode the content transfer encoding");
	else if (fc.failed > 0)
		imap_tagged(s, "NO", "EXPUNGEISSUED", "Some messages could not be fetched (%u)",
			fc.failed);
	else
		imap_tagged(s, "OK", NULL, "%s completed", c->name);
out:
	free(extra);
	free(idx);
	store_uids_free(&changed);
	buf_free(&fc.out);
	buf_free(&fc.scratch);
}
