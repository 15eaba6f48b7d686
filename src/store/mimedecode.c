/*
 * mimedecode.c - decoded UTF-8 text of message parts for SEARCH.  See
 * mimedecode.h.  Transfer decoding uses the lenient MIME decoders of
 * lib/base64.h and lib/qp.h; charsets go through rfc2047_convert().
 */
#include "store/mimedecode.h"

#include "lib/base64.h"
#include "lib/qp.h"
#include "store/rfc2047.h"

#include <string.h>

static bool
mimedecode_has(const struct mime_part *p, enum mime_hdr h)
{
	return (p->hdr_present & (1u << h)) != 0;
}

/* Is the part text/...?  Sets the charset parameter (raw, possibly
 * escaped) when there is one. */
static bool
mimedecode_is_text(const char *raw, const struct mime_part *p, struct buf *charset)
{
	struct mime_ctype ct;
	struct mime_param prm;
	const char *v;
	size_t n, pos;

	if (p->kind != MIME_KIND_LEAF || (p->flags & (MIME_PF_CT_OPAQUE | MIME_PF_CT_DIGEST)))
		return false;
	if ((p->flags & MIME_PF_CT_DEFAULT) || !mimedecode_has(p, MIME_H_CONTENT_TYPE))
		return true; /* text/plain; charset=us-ascii */
	v = raw + p->hdr[MIME_H_CONTENT_TYPE].off;
	n = p->hdr[MIME_H_CONTENT_TYPE].len;
	if (!mime_ctype_parse(v, n, &ct))
		return true;
	if (!mime_eq(ct.type, ct.type_len, "text"))
		return false;
	pos = ct.params_off;
	while (mime_param_next(v, n, &pos, &prm)) {
		if (mime_eq(prm.name, prm.name_len, "charset")) {
			mime_param_value(&prm, charset);
			break;
		}
	}
	return true;
}

enum mimedecode_cte { MIMEDECODE_IDENTITY, MIMEDECODE_BASE64, MIMEDECODE_QP };

static enum mimedecode_cte
mimedecode_cte(const char *raw, const struct mime_part *p)
{
	const char *v;
	size_t n, pos = 0, off, len;

	if (!mimedecode_has(p, MIME_H_CONTENT_TRANSFER_ENCODING))
		return MIMEDECODE_IDENTITY;
	v = raw + p->hdr[MIME_H_CONTENT_TRANSFER_ENCODING].off;
	n = p->hdr[MIME_H_CONTENT_TRANSFER_ENCODING].len;
	mime_skip_cfws(v, n, &pos);
	if (!mime_token(v, n, &pos, &off, &len))
		return MIMEDECODE_IDENTITY;
	if (mime_eq(v + off, len, "base64"))
		return MIMEDECODE_BASE64;
	if (mime_eq(v + off, len, "quoted-printable"))
		return MIMEDECODE_QP;
	return MIMEDECODE_IDENTITY;
}

int
mimedecode_part(const char *raw, const struct mime_tree *t, uint32_t idx, struct buf *out)
{
	const struct mime_part *p = &t->parts[idx];
	struct buf cs = BUF_INIT, dec = BUF_INIT;
	const char *body = raw + p->body_start, *data;
	size_t blen = p->body_end - p->body_start, dlen;

	if (!mimedecode_is_text(raw, p, &cs)) {
		buf_free(&cs);
		return 0;
	}
	switch (mimedecode_cte(raw, p)) {
	case MIMEDECODE_BASE64:
		base64_decode_mime(&dec, body, blen);
		data = buf_cstr(&dec);
		dlen = dec.len;
		break;
	case MIMEDECODE_QP:
		qp_decode(&dec, body, blen);
		data = buf_cstr(&dec);
		dlen = dec.len;
		break;
	default:
		data = body;
		dlen = blen;
		break;
	}
	if (cs.len > 0)
		rfc2047_convert(cs.data, cs.len, data, dlen, out);
	else
		rfc2047_utf8(data, dlen, out);
	buf_free(&cs);
	buf_free(&dec);
	return 1;
}

void
mimedecode_header(const char *raw, size_t off, size_t len, struct buf *out)
{
	const char *hdr = raw + off;
	struct mime_field f;
	struct buf v = BUF_INIT;
	size_t pos = 0;

	while (mime_header_next(hdr, len, &pos, &f)) {
		rfc2047_utf8(hdr + f.name_off, f.name_len, out);
		buf_append(out, ": ", 2);
		buf_reset(&v);
		mime_unfold(hdr + f.value_off, f.value_len, &v);
		rfc2047_decode(buf_cstr(&v), v.len, out);
		buf_putc(out, '\n');
	}
	buf_free(&v);
}

/* The octets a depth or part-count cap left unsplit (MIME_PF_CAPPED): a
 * capped leaf's body, or what follows a capped multipart's last part.
 * Returns false when the part has none. */
static bool
mimedecode_capped_range(const struct mime_tree *t, const struct mime_part *p, size_t *off_r,
	size_t *len_r)
{
	size_t start = p->body_start;

	if (!(p->flags & MIME_PF_CAPPED))
		return false;
	if (p->kind != MIME_KIND_LEAF && p->last_child != MIME_NONE)
		start = t->parts[p->last_child].body_end;
	if (start >= p->body_end)
		return false;
	*off_r = start;
	*len_r = p->body_end - start;
	return true;
}

void
mimedecode_tree_text(const char *raw, const struct mime_tree *t, bool with_header,
	struct buf *out)
{
	uint32_t i;
	size_t off, len;

	for (i = 0; i < t->nparts; i++) {
		const struct mime_part *p = &t->parts[i];

		if (mime_is_message_level(t, i) && (i > 0 || with_header)) {
			mimedecode_header(raw, p->hdr_start, p->body_start - p->hdr_start, out);
			buf_putc(out, '\n');
		}
		if (p->kind == MIME_KIND_LEAF && mimedecode_part(raw, t, i, out))
			buf_putc(out, '\n');
		/* beyond the parser's limits the text is still searched, flat:
		 * the raw octets (inner headers and delimiters included) */
		if (mimedecode_capped_range(t, p, &off, &len)) {
			rfc2047_utf8(raw + off, len, out);
			buf_putc(out, '\n');
		}
	}
}

void
mimedecode_text(const char *raw, size_t len, bool with_header, struct buf *out)
{
	struct mime_tree t;

	mime_parse(&t, raw, len);
	mimedecode_tree_text(raw, &t, with_header, out);
	mime_tree_free(&t);
}
