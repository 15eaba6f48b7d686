/*
 * imap_catenate.c - CATENATE (RFC 4469): the message of an APPEND made of
 * TEXT literals and URLs.
 *
 * A URL names a message, or a section of one, in the user's own
 * mailboxes, in the relative form of RFC 5092 that RFC 4469 shows:
 *   /<mailbox>[;UIDVALIDITY=<n>]/;UID=<uid>[/;SECTION=<section>][/;PARTIAL=<off>[.<len>]]
 * (keys without case, the mailbox and section %-encoded, the mailbox
 * UTF-8).  Anything else -- an absolute imap:// URL (another server or
 * user), URLAUTH, a mailbox, uid or section that does not exist, a
 * UIDVALIDITY that is not the mailbox's -- is NO [BADURL <url>].  The
 * section has the BODY[...] grammar and is the same byte range FETCH
 * would send.
 *
 * The result goes to memory up to IMAP_APPEND_STREAM_MIN and then to a
 * store file (struct imap_cat_out), so a large result costs no more
 * memory than a large APPEND literal; over the APPENDLIMIT it is
 * NO [TOOBIG].  Nothing here writes to the store.
 */
#include "imap/imap_catenate.h"

#include <string.h>

#include "lib/log.h"
#include "lib/str.h"
#include "store/mime.h"

void
imap_cat_out_free(struct imap_cat_out *out)
{
	buf_free(&out->mem);
	store_blob_tmp_free(&out->tmp);
	memset(out, 0, sizeof(*out));
}

static void
imap_cat_put(struct imap_session *s, struct imap_cat_out *out, const char *p, size_t n)
{
	struct err err;

	if (out->toobig || out->len + n > imap_cfg.appendlimit) {
		out->toobig = true;
		return;
	}
	out->len += n;
	if (out->tmp == NULL && out->mem.len + n > IMAP_APPEND_STREAM_MIN &&
	    store_blob_tmp_open(s->u, &out->tmp, &err) == 0) {
		if (out->mem.len > 0)
			store_blob_tmp_write(out->tmp, out->mem.data, out->mem.len);
		buf_free(&out->mem);
	}
	if (out->tmp != NULL)
		store_blob_tmp_write(out->tmp, p, n);
	else
		buf_append(&out->mem, p, n);
}

static int
imap_cat_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* %-decode u[0..n) into out; false on a bad escape or a NUL. */
static bool
imap_cat_pct(const char *u, size_t n, struct buf *out)
{
	for (size_t i = 0; i < n; i++) {
		int hi, lo;

		if (u[i] != '%') {
			buf_putc(out, u[i]);
			continue;
		}
		if (n - i < 3)
			return false;
		hi = imap_cat_hexval(u[i + 1]);
		lo = imap_cat_hexval(u[i + 2]);
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
			return false;
		buf_putc(out, (char)(hi * 16 + lo));
		i += 2;
	}
	return true;
}

/* Does u[*i..n) start with key (no case)?  Skips it. */
static bool
imap_cat_key(const char *u, size_t n, size_t *i, const char *key)
{
	size_t k = strlen(key);

	if (n - *i < k || strncasecmp(u + *i, key, k) != 0)
		return false;
	*i += k;
	return true;
}

static bool
imap_cat_num(const char *u, size_t n, size_t *i, uint32_t *v)
{
	uint64_t x = 0;
	size_t start = *i;

	while (*i < n && u[*i] >= '0' && u[*i] <= '9' && *i - start < 10)
		x = x * 10 + (uint64_t)(u[(*i)++] - '0');
	if (*i == start || x > UINT32_MAX || (*i < n && u[*i] >= '0' && u[*i] <= '9'))
		return false;
	*v = (uint32_t)x;
	return true;
}

struct imap_cat_url {
	struct buf mailbox;      /* UTF-8 */
	uint32_t uidvalidity;    /* 0: not given */
	uint32_t uid;
	struct buf section;      /* with its brackets; empty: none */
	bool partial;
	uint32_t p_off, p_len;   /* p_len 0: to the end */
};

/* Split the URL; false when it is not of the form above. */
static bool
imap_cat_url_parse(const char *u, size_t n, struct imap_cat_url *r)
{
	size_t i = 1, semi;

	if (n < 2 || u[0] != '/')
		return false;
	for (semi = 1; semi < n && u[semi] != ';'; semi++)
		;
	if (semi == n)
		return false;
	if (u[semi - 1] == '/' && semi > 2) {
		/* "/mailbox/;UID=..." */
		if (!imap_cat_pct(u + 1, semi - 2, &r->mailbox))
			return false;
		i = semi;
	} else {
		if (!imap_cat_pct(u + 1, semi - 1, &r->mailbox))
			return false;
		i = semi;
		if (!imap_cat_key(u, n, &i, ";UIDVALIDITY=") || !imap_cat_num(u, n, &i, &r->uidvalidity) ||
		    r->uidvalidity == 0 || !imap_cat_key(u, n, &i, "/"))
			return false;
	}
	if (r->mailbox.len == 0 || !imap_cat_key(u, n, &i, ";UID=") || !imap_cat_num(u, n, &i, &r->uid) ||
	    r->uid == 0)
		return false;
	if (imap_cat_key(u, n, &i, "/;SECTION=")) {
		size_t e = i;

		while (e < n && !(u[e] == '/' && e + 1 < n && u[e + 1] == ';'))
			e++;
		buf_putc(&r->section, '[');
		if (e == i || !imap_cat_pct(u + i, e - i, &r->section))
			return false;
		buf_putc(&r->section, ']');
		i = e;
	}
	if (imap_cat_key(u, n, &i, "/;PARTIAL=")) {
		r->partial = true;
		if (!imap_cat_num(u, n, &i, &r->p_off))
			return false;
		if (i < n && u[i] == '.' && (++i, !imap_cat_num(u, n, &i, &r->p_len) || r->p_len == 0))
			return false;
	}
	return i == n;
}

/* The octets of a section of the mapped message b: *p, *len (in b or
 * in scratch).  false when the section does not exist. */
static bool
imap_cat_section(const struct store_blob *b, const char *spec, size_t speclen,
	struct buf *scratch, const char **p, size_t *len)
{
	struct imap_arena a = { 0 };
	struct imap_fetch_att att;
	struct mime_tree tree;
	struct mime_range range;
	enum mime_sec w = MIME_SEC_BODY;
	bool ok = false;

	if (imap_parse_section(spec, speclen, &a, &att) < 0) {
		imap_arena_free(&a);
		return false;
	}
	if (att.sec == IMAP_SEC_HEADER || att.sec == IMAP_SEC_HEADER_FIELDS ||
	    att.sec == IMAP_SEC_HEADER_FIELDS_NOT)
		w = MIME_SEC_HEADER;
	else if (att.sec == IMAP_SEC_TEXT)
		w = MIME_SEC_TEXT;
	else if (att.sec == IMAP_SEC_MIME)
		w = MIME_SEC_MIME;
	mime_parse(&tree, b->data, b->len);
	if (mime_section(&tree, att.path, att.npath, w, &range) == 0 && range.off <= b->len &&
	    range.len <= b->len - range.off) {
		ok = true;
		if (att.sec == IMAP_SEC_HEADER_FIELDS || att.sec == IMAP_SEC_HEADER_FIELDS_NOT) {
			mime_header_filter(b->data + range.off, range.len, att.fields, att.nfields,
				att.sec == IMAP_SEC_HEADER_FIELDS_NOT, scratch);
			*p = scratch->data ? scratch->data : "";
			*len = scratch->len;
		} else {
			*p = b->data + range.off;
			*len = range.len;
		}
	}
	mime_tree_free(&tree);
	imap_arena_free(&a);
	return ok;
}

/* Copy what the URL names to out.  0; 1 when the URL is bad (BADURL);
 * -1 a store failure (err). */
static int
imap_cat_url_copy(struct imap_session *s, const struct imap_str *url, struct imap_cat_out *out,
	struct err *err)
{
	struct imap_cat_url r = { BUF_INIT, 0, 0, BUF_INIT, false, 0, 0 };
	struct store_mailbox mb;
	struct store_record_full rf;
	struct store_blob b;
	struct buf scratch = BUF_INIT;
	const char *p;
	size_t len;
	int rc = 1;

	if (!imap_cat_url_parse(url->s, url->len, &r) ||
	    memchr(r.mailbox.data, '\0', r.mailbox.len) != NULL)
		goto out;
	if (store_mailbox_get(s->u, buf_cstr(&r.mailbox), &mb, err) < 0) {
		rc = err->kind == ERR_NOTFOUND || err->kind == ERR_INVALID ? 1 : -1;
		goto out;
	}
	if (r.uidvalidity != 0 && r.uidvalidity != mb.uidvalidity)
		goto out;
	if (store_record_get(s->u, mb.uniqueid, r.uid, &rf, err) < 0) {
		rc = err->kind == ERR_NOTFOUND ? 1 : -1;
		goto out;
	}
	if (store_blob_map(s->u, rf.rec.guid, &b, err) < 0) {
		store_record_full_free(&rf);
		rc = -1;
		goto out;
	}
	store_record_full_free(&rf);
	p = b.data;
	len = b.len;
	if (r.section.len == 0 || imap_cat_section(&b, r.section.data, r.section.len, &scratch, &p, &len)) {
		if (r.partial) {
			size_t off = r.p_off < len ? r.p_off : len;

			p += off;
			len -= off;
			if (r.p_len != 0 && len > r.p_len)
				len = r.p_len;
		}
		imap_cat_put(s, out, p, len);
		rc = 0;
	}
	store_blob_release(&b);
out:
	buf_free(&r.mailbox);
	buf_free(&r.section);
	buf_free(&scratch);
	return rc;
}

int
imap_catenate_build(struct imap_session *s, const struct imap_append_msg *m,
	struct imap_cat_out *out)
{
	struct err err;

	memset(out, 0, sizeof(*out));
	for (size_t i = 0; i < m->nparts; i++) {
		const struct imap_cat_part *cp = &m->parts[i];
		int rc;

		if (!cp->url) {
			imap_cat_put(s, out, cp->s.s, cp->s.len);
		} else if ((rc = imap_cat_url_copy(s, &cp->s, out, &err)) != 0) {
			if (rc < 0) {
				imap_tagged_err(s, &err, "APPEND");
			} else {
				struct buf code = BUF_INIT;

				log_debug("catenate: bad url user=%s url=%s", log_q(s->user), log_q(cp->s.s));
				/* url-resp-text: no CR, LF, NUL or ']' (RFC 4469 6) */
				buf_puts(&code, "BADURL ");
				for (size_t k = 0; k < cp->s.len && k < 1024; k++) {
					char c = cp->s.s[k];

					buf_putc(&code, c == '\r' || c == '\n' || c == '\0' || c == ']' ? '?' : c);
				}
				imap_tagged(s, "NO", buf_cstr(&code), "CATENATE URL not usable");
				buf_free(&code);
			}
			imap_cat_out_free(out);
			return -1;
		}
		if (out->toobig) {
			imap_tagged(s, "NO", "TOOBIG", "Message too large");
			imap_cat_out_free(out);
			return -1;
		}
	}
	return 0;
}
