/*
 * imapenv.c - ENVELOPE, BODYSTRUCTURE/BODY rendering (RFC 3501 7.4.2) and
 * the serialised part tree.  See imapenv.h for the rendering rules and the
 * tree format.
 */
#include "store/imapenv.h"

#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

/* ---- strings ---- */

void
imapenv_put_string(struct buf *out, const char *s, size_t n)
{
	size_t i, nul = 0, run;
	bool literal = n > 1024;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '\0')
			nul++;
		else if (c == '\r' || c == '\n' || c >= 0x80)
			literal = true;
	}
	if (literal) {
		buf_printf(out, "{%zu}\r\n", n - nul);
		if (nul == 0) {
			buf_append(out, s, n);
			return;
		}
	} else {
		buf_putc(out, '"');
	}
	for (i = 0; i < n;) {
		for (run = i; run < n && s[run] != '\0' &&
		    (literal || (s[run] != '"' && s[run] != '\\')); run++)
			;
		buf_append(out, s + i, run - i);
		if (run >= n)
			break;
		if (s[run] != '\0') {
			buf_putc(out, '\\');
			buf_putc(out, s[run]);
		}
		i = run + 1;
	}
	if (!literal)
		buf_putc(out, '"');
}

static void
imapenv_put_upper(struct buf *out, const char *s, size_t n)
{
	struct buf tmp = BUF_INIT;
	size_t i;
	bool plain = n <= 1024;

	for (i = 0; i < n && plain; i++) {
		unsigned char c = (unsigned char)s[i];

		plain = c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
	}
	if (plain) {
		/* the common case (a token): no copy */
		buf_reserve(out, n + 2);
		out->data[out->len++] = '"';
		for (i = 0; i < n; i++) {
			char c = s[i];

			out->data[out->len++] = (c >= 'a' && c <= 'z') ? (char)(c - ('a' - 'A')) : c;
		}
		out->data[out->len++] = '"';
		out->data[out->len] = '\0';
		return;
	}
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c >= 'a' && c <= 'z')
			c = (char)(c - ('a' - 'A'));
		buf_putc(&tmp, c);
	}
	imapenv_put_string(out, buf_cstr(&tmp), tmp.len);
	buf_free(&tmp);
}

static bool
imapenv_has(const struct mime_part *p, enum mime_hdr h)
{
	return (p->hdr_present & (1u << h)) != 0;
}

/* The unfolded value of header h as an nstring. */
static void
imapenv_nstring_hdr(struct buf *out, const char *raw, const struct mime_part *p, enum mime_hdr h)
{
	struct buf v = BUF_INIT;

	if (!imapenv_has(p, h)) {
		buf_puts(out, "NIL");
		return;
	}
	mime_unfold(raw + p->hdr[h].off, p->hdr[h].len, &v);
	imapenv_put_string(out, buf_cstr(&v), v.len);
	buf_free(&v);
}

static void
imapenv_nstring(struct buf *out, const struct buf *v)
{
	if (v->len == 0)
		buf_puts(out, "NIL");
	else
		imapenv_put_string(out, v->data, v->len);
}

/* ---- addresses (RFC 5322 3.4, obsolete forms tolerated) ---- */

enum imapenv_tok { IMAPENV_T_END, IMAPENV_T_WORD, IMAPENV_T_DLIT, IMAPENV_T_SPECIAL };

struct imapenv_lex {
	const char *s;
	size_t n, pos;
	struct buf word;     /* text of the last IMAPENV_T_WORD / IMAPENV_T_DLIT */
	bool word_quoted;
	char special;
	bool space_before;   /* white space or a comment before this token */
	struct buf comment;  /* first comment of the current address */
	bool have_comment;
	bool text;           /* emit plain text, not ENVELOPE (imapenv_address_text) */
};

static void
imapenv_lex_comment(struct imapenv_lex *lx)
{
	unsigned depth = 0;
	bool keep = !lx->have_comment;
	size_t i = lx->pos;

	for (; i < lx->n; i++) {
		char c = lx->s[i];

		if (c == '\\' && i + 1 < lx->n) {
			i++;
			if (keep)
				buf_putc(&lx->comment, lx->s[i]);
			continue;
		}
		if (c == '(') {
			if (depth++ == 0)
				continue;
		} else if (c == ')') {
			if (--depth == 0) {
				i++;
				break;
			}
		}
		if (keep)
			buf_putc(&lx->comment, c);
	}
	lx->pos = i;
	if (keep) {
		/* trim */
		size_t a = 0, b = lx->comment.len;

		while (a < b && (lx->comment.data[a] == ' ' || lx->comment.data[a] == '\t'))
			a++;
		while (b > a && (lx->comment.data[b - 1] == ' ' || lx->comment.data[b - 1] == '\t'))
			b--;
		buf_truncate(&lx->comment, b);
		buf_consume(&lx->comment, a);
		lx->have_comment = lx->comment.len > 0;
	}
}

/* Octets that end an atom. */
static const bool imapenv_lex_stop[256] = {
	[' '] = true, ['\t'] = true, ['\r'] = true, ['\n'] = true, ['('] = true, [')'] = true,
	['<'] = true, ['>'] = true, ['@'] = true, [','] = true, [';'] = true, [':'] = true,
	['"'] = true, ['['] = true,
};

static enum imapenv_tok
imapenv_lex_next(struct imapenv_lex *lx)
{
	const char *s = lx->s;
	size_t n = lx->n, start;

	lx->space_before = false;
	for (;;) {
		while (lx->pos < n && (s[lx->pos] == ' ' || s[lx->pos] == '\t' ||
		    s[lx->pos] == '\r' || s[lx->pos] == '\n')) {
			lx->pos++;
			lx->space_before = true;
		}
		if (lx->pos < n && s[lx->pos] == '(') {
			imapenv_lex_comment(lx);
			lx->space_before = true;
			continue;
		}
		break;
	}
	if (lx->pos >= n)
		return IMAPENV_T_END;
	buf_reset(&lx->word);
	lx->word_quoted = false;
	switch (s[lx->pos]) {
	case '"':
		lx->pos++;
		lx->word_quoted = true;
		while (lx->pos < n && s[lx->pos] != '"') {
			start = lx->pos;
			while (lx->pos < n && s[lx->pos] != '"' && s[lx->pos] != '\\')
				lx->pos++;
			buf_append(&lx->word, s + start, lx->pos - start);
			if (lx->pos + 1 < n && s[lx->pos] == '\\') {
				buf_putc(&lx->word, s[lx->pos + 1]);
				lx->pos += 2;
			} else if (lx->pos < n && s[lx->pos] == '\\') {
				lx->pos++;
			}
		}
		if (lx->pos < n)
			lx->pos++;
		return IMAPENV_T_WORD;
	case '[':
		while (lx->pos < n) {
			char c = s[lx->pos++];

			buf_putc(&lx->word, c);
			if (c == ']')
				break;
		}
		return IMAPENV_T_DLIT;
	case '<': case '>': case '@': case ',': case ';': case ':':
		lx->special = s[lx->pos++];
		return IMAPENV_T_SPECIAL;
	default:
		break;
	}
	start = lx->pos;
	while (lx->pos < n && !imapenv_lex_stop[(unsigned char)s[lx->pos]])
		lx->pos++;
	if (lx->pos == start)
		lx->pos++; /* a stray ')': take it as a word */
	buf_append(&lx->word, s + start, lx->pos - start);
	return IMAPENV_T_WORD;
}

/* The address being collected. */
struct imapenv_addr {
	struct buf phrase;  /* words joined by single spaces */
	struct buf local;   /* words concatenated */
	struct buf mailbox, host, adl;
	bool have_addr;     /* an addr-spec or angle-addr was seen */
	bool angle;
	unsigned nwords;
};

static void
imapenv_addr_reset(struct imapenv_addr *a, struct imapenv_lex *lx)
{
	buf_reset(&a->phrase);
	buf_reset(&a->local);
	buf_reset(&a->mailbox);
	buf_reset(&a->host);
	buf_reset(&a->adl);
	a->have_addr = a->angle = false;
	a->nwords = 0;
	buf_reset(&lx->comment);
	lx->have_comment = false;
}

static void
imapenv_addr_emit(struct buf *out, const struct buf *name, const struct buf *adl,
	const struct buf *mailbox, const struct buf *host)
{
	buf_putc(out, '(');
	imapenv_nstring(out, name);
	buf_putc(out, ' ');
	imapenv_nstring(out, adl);
	buf_putc(out, ' ');
	if (mailbox->len == 0)
		buf_puts(out, "\"MISSING_MAILBOX\"");
	else
		imapenv_put_string(out, mailbox->data, mailbox->len);
	buf_putc(out, ' ');
	if (host->len == 0)
		buf_puts(out, "\"MISSING_DOMAIN\"");
	else
		imapenv_put_string(out, host->data, host->len);
	buf_putc(out, ')');
}

/* The text form: "name <mailbox@host>", after a ", " when out has one. */
static void
imapenv_addr_emit_text(struct buf *out, const struct buf *name, const struct buf *mailbox,
	const struct buf *host)
{
	if (out->len > 0)
		buf_puts(out, ", ");
	if (name->len > 0) {
		buf_append(out, name->data, name->len);
		buf_putc(out, ' ');
	}
	buf_putc(out, '<');
	buf_append(out, mailbox->data, mailbox->len);
	if (host->len > 0) {
		buf_putc(out, '@');
		buf_append(out, host->data, host->len);
	}
	buf_putc(out, '>');
}

/* Emit the pending address, if any; returns 1 if one was emitted. */
static int
imapenv_addr_flush(struct buf *out, struct imapenv_addr *a, struct imapenv_lex *lx)
{
	const struct buf *name;
	int emitted = 0;

	if (a->have_addr) {
		name = (a->angle && a->phrase.len > 0) ? &a->phrase : &lx->comment;
		if (a->mailbox.len > 0 || a->host.len > 0 || name->len > 0) {
			if (lx->text)
				imapenv_addr_emit_text(out, name, &a->mailbox, &a->host);
			else
				imapenv_addr_emit(out, name, &a->adl, &a->mailbox, &a->host);
			emitted = 1;
		}
	} else if (a->nwords > 0) {
		/* bare words: a local part without a domain */
		if (lx->text)
			imapenv_addr_emit_text(out, &lx->comment, &a->local, &a->host);
		else
			imapenv_addr_emit(out, &lx->comment, &a->adl, &a->local, &a->host);
		emitted = 1;
	}
	imapenv_addr_reset(a, lx);
	return emitted;
}

/* Collect a domain (words and domain literals joined while adjacent or
 * dotted) into out; returns the token after it. */
static enum imapenv_tok
imapenv_domain(struct imapenv_lex *lx, struct buf *out)
{
	enum imapenv_tok tk = imapenv_lex_next(lx);

	while (tk == IMAPENV_T_WORD || tk == IMAPENV_T_DLIT) {
		if (out->len > 0 && lx->space_before && out->data[out->len - 1] != '.' &&
		    lx->word.data[0] != '.')
			break;
		buf_append(out, lx->word.data, lx->word.len);
		tk = imapenv_lex_next(lx);
	}
	return tk;
}

/* Buffers reused across the address headers of one envelope. */
struct imapenv_scratch {
	struct imapenv_lex lx;
	struct imapenv_addr a;
	struct buf v, list;
};

static void
imapenv_scratch_free(struct imapenv_scratch *sc)
{
	buf_free(&sc->a.phrase);
	buf_free(&sc->a.local);
	buf_free(&sc->a.mailbox);
	buf_free(&sc->a.host);
	buf_free(&sc->a.adl);
	buf_free(&sc->lx.word);
	buf_free(&sc->lx.comment);
	buf_free(&sc->v);
	buf_free(&sc->list);
}

/* Parse an address list; append the addresses (without the outer
 * parentheses) to out.  Returns the number of address structures. */
static int
imapenv_address_list(struct imapenv_scratch *sc, const char *s, size_t n, struct buf *out)
{
	struct imapenv_lex lx = sc->lx;
	struct imapenv_addr a = sc->a;
	enum imapenv_tok tk;
	bool in_group = false;
	int count = 0;

	lx.s = s;
	lx.n = n;
	lx.pos = 0;
	imapenv_addr_reset(&a, &lx);
	tk = imapenv_lex_next(&lx);
	while (tk != IMAPENV_T_END) {
		if (tk == IMAPENV_T_WORD || tk == IMAPENV_T_DLIT) {
			if (!a.have_addr) {
				if (a.phrase.len > 0)
					buf_putc(&a.phrase, ' ');
				buf_append(&a.phrase, lx.word.data, lx.word.len);
				buf_append(&a.local, lx.word.data, lx.word.len);
				a.nwords++;
			}
			tk = imapenv_lex_next(&lx);
			continue;
		}
		switch (lx.special) {
		case '<':
			if (a.have_addr) {
				/* junk after a complete address: skip to '>' */
				while ((tk = imapenv_lex_next(&lx)) != IMAPENV_T_END &&
				    !(tk == IMAPENV_T_SPECIAL && lx.special == '>'))
					;
				if (tk != IMAPENV_T_END)
					tk = imapenv_lex_next(&lx);
				continue;
			}
			a.angle = true;
			a.have_addr = true;
			tk = imapenv_lex_next(&lx);
			/* obsolete route: @a,@b: */
			if (tk == IMAPENV_T_SPECIAL && lx.special == '@') {
				while (tk == IMAPENV_T_SPECIAL && (lx.special == '@' || lx.special == ',')) {
					if (lx.special == '@') {
						if (a.adl.len > 0)
							buf_putc(&a.adl, ',');
						buf_putc(&a.adl, '@');
						tk = imapenv_domain(&lx, &a.adl);
					} else {
						tk = imapenv_lex_next(&lx);
					}
				}
				if (tk == IMAPENV_T_SPECIAL && lx.special == ':')
					tk = imapenv_lex_next(&lx);
			}
			while (tk == IMAPENV_T_WORD || tk == IMAPENV_T_DLIT) {
				buf_append(&a.mailbox, lx.word.data, lx.word.len);
				tk = imapenv_lex_next(&lx);
			}
			if (tk == IMAPENV_T_SPECIAL && lx.special == '@')
				tk = imapenv_domain(&lx, &a.host);
			/* anything up to '>' is junk */
			while (tk != IMAPENV_T_END && !(tk == IMAPENV_T_SPECIAL &&
			    (lx.special == '>' || lx.special == ',' || lx.special == ';')))
				tk = imapenv_lex_next(&lx);
			if (tk == IMAPENV_T_SPECIAL && lx.special == '>')
				tk = imapenv_lex_next(&lx);
			continue;
		case '@':
			if (!a.have_addr) {
				a.have_addr = true;
				buf_append(&a.mailbox, a.local.data, a.local.len);
				tk = imapenv_domain(&lx, &a.host);
				continue;
			}
			break;
		case ':':
			if (!in_group && !a.have_addr) {
				if (lx.text) {
					if (out->len > 0)
						buf_puts(out, ", ");
					buf_append(out, a.phrase.data, a.phrase.len);
					buf_putc(out, ':');
				} else {
					buf_puts(out, "(NIL NIL ");
					imapenv_put_string(out, buf_cstr(&a.phrase), a.phrase.len);
					buf_puts(out, " NIL)");
				}
				count++;
				in_group = true;
				imapenv_addr_reset(&a, &lx);
			}
			break;
		case ';':
			count += imapenv_addr_flush(out, &a, &lx);
			if (in_group && !lx.text) {
				buf_puts(out, "(NIL NIL NIL NIL)");
				count++;
				in_group = false;
			}
			break;
		case ',':
			count += imapenv_addr_flush(out, &a, &lx);
			break;
		default:
			break; /* stray '>' */
		}
		tk = imapenv_lex_next(&lx);
	}
	count += imapenv_addr_flush(out, &a, &lx);
	if (in_group && !lx.text) {
		buf_puts(out, "(NIL NIL NIL NIL)");
		count++;
	}
	/* hand the (possibly regrown) buffers back for the next header */
	sc->lx = lx;
	sc->a = a;
	return count;
}

/* Address list of header h into out as "(...)"; returns false (and
 * appends nothing) when the header is absent or holds no address. */
static bool
imapenv_addresses(struct imapenv_scratch *sc, struct buf *out, const char *raw, const struct mime_part *p,
	enum mime_hdr h)
{
	if (!imapenv_has(p, h))
		return false;
	buf_reset(&sc->v);
	buf_reset(&sc->list);
	mime_unfold(raw + p->hdr[h].off, p->hdr[h].len, &sc->v);
	if (imapenv_address_list(sc, buf_cstr(&sc->v), sc->v.len, &sc->list) == 0)
		return false;
	buf_putc(out, '(');
	buf_append(out, sc->list.data, sc->list.len);
	buf_putc(out, ')');
	return true;
}

void
imapenv_address_text(const char *v, size_t n, struct buf *out)
{
	struct imapenv_scratch sc;

	memset(&sc, 0, sizeof(sc));
	mime_unfold(v, n, &sc.v);
	sc.lx.text = true;
	imapenv_address_list(&sc, buf_cstr(&sc.v), sc.v.len, &sc.list);
	buf_append(out, sc.list.data, sc.list.len);
	imapenv_scratch_free(&sc);
}

void
imapenv_envelope(const struct mime_tree *t, const char *raw, uint32_t idx, struct buf *out)
{
	const struct mime_part *p = &t->parts[idx];
	struct imapenv_scratch sc;
	struct buf from = BUF_INIT;
	bool have_from;

	memset(&sc, 0, sizeof(sc));
	buf_putc(out, '(');
	imapenv_nstring_hdr(out, raw, p, MIME_H_DATE);
	buf_putc(out, ' ');
	imapenv_nstring_hdr(out, raw, p, MIME_H_SUBJECT);
	buf_putc(out, ' ');
	have_from = imapenv_addresses(&sc, &from, raw, p, MIME_H_FROM);
	if (have_from)
		buf_append(out, from.data, from.len);
	else
		buf_puts(out, "NIL");
	buf_putc(out, ' ');
	if (!imapenv_addresses(&sc, out, raw, p, MIME_H_SENDER)) {
		if (have_from)
			buf_append(out, from.data, from.len);
		else
			buf_puts(out, "NIL");
	}
	buf_putc(out, ' ');
	if (!imapenv_addresses(&sc, out, raw, p, MIME_H_REPLY_TO)) {
		if (have_from)
			buf_append(out, from.data, from.len);
		else
			buf_puts(out, "NIL");
	}
	buf_putc(out, ' ');
	if (!imapenv_addresses(&sc, out, raw, p, MIME_H_TO))
		buf_puts(out, "NIL");
	buf_putc(out, ' ');
	if (!imapenv_addresses(&sc, out, raw, p, MIME_H_CC))
		buf_puts(out, "NIL");
	buf_putc(out, ' ');
	if (!imapenv_addresses(&sc, out, raw, p, MIME_H_BCC))
		buf_puts(out, "NIL");
	buf_putc(out, ' ');
	imapenv_nstring_hdr(out, raw, p, MIME_H_IN_REPLY_TO);
	buf_putc(out, ' ');
	imapenv_nstring_hdr(out, raw, p, MIME_H_MESSAGE_ID);
	buf_putc(out, ')');
	buf_free(&from);
	imapenv_scratch_free(&sc);
}

/* ---- body structure ---- */

/* A parameter list "(NAME value ...)" from v[pos..n), or NIL. */
static void
imapenv_params(struct buf *out, const char *v, size_t n, size_t pos)
{
	struct mime_param prm;
	struct buf val = BUF_INIT;
	size_t count = 0;

	while (mime_param_next(v, n, &pos, &prm)) {
		buf_putc(out, count++ == 0 ? '(' : ' ');
		imapenv_put_upper(out, prm.name, prm.name_len);
		buf_putc(out, ' ');
		buf_reset(&val);
		mime_param_value(&prm, &val);
		imapenv_put_string(out, buf_cstr(&val), val.len);
	}
	buf_puts(out, count > 0 ? ")" : "NIL");
	buf_free(&val);
}

static void
imapenv_disposition(struct buf *out, const char *raw, const struct mime_part *p)
{
	const char *v;
	size_t n, pos = 0, off, len;

	if (!imapenv_has(p, MIME_H_CONTENT_DISPOSITION)) {
		buf_puts(out, "NIL");
		return;
	}
	v = raw + p->hdr[MIME_H_CONTENT_DISPOSITION].off;
	n = p->hdr[MIME_H_CONTENT_DISPOSITION].len;
	mime_skip_cfws(v, n, &pos);
	if (!mime_token(v, n, &pos, &off, &len)) {
		buf_puts(out, "NIL");
		return;
	}
	buf_putc(out, '(');
	imapenv_put_upper(out, v + off, len);
	buf_putc(out, ' ');
	imapenv_params(out, v, n, pos);
	buf_putc(out, ')');
}

static void
imapenv_language(struct buf *out, const char *raw, const struct mime_part *p)
{
	const char *v;
	size_t n, pos = 0, off, len, count = 0;

	if (imapenv_has(p, MIME_H_CONTENT_LANGUAGE)) {
		v = raw + p->hdr[MIME_H_CONTENT_LANGUAGE].off;
		n = p->hdr[MIME_H_CONTENT_LANGUAGE].len;
		for (;;) {
			mime_skip_cfws(v, n, &pos);
			if (pos >= n)
				break;
			if (!mime_token(v, n, &pos, &off, &len)) {
				pos++; /* ',' or junk */
				continue;
			}
			buf_putc(out, count++ == 0 ? '(' : ' ');
			imapenv_put_string(out, v + off, len);
		}
	}
	buf_puts(out, count > 0 ? ")" : "NIL");
}

static void
imapenv_encoding(struct buf *out, const char *raw, const struct mime_part *p)
{
	const char *v;
	size_t n, pos = 0, off, len;

	if (imapenv_has(p, MIME_H_CONTENT_TRANSFER_ENCODING)) {
		v = raw + p->hdr[MIME_H_CONTENT_TRANSFER_ENCODING].off;
		n = p->hdr[MIME_H_CONTENT_TRANSFER_ENCODING].len;
		mime_skip_cfws(v, n, &pos);
		if (mime_token(v, n, &pos, &off, &len)) {
			imapenv_put_upper(out, v + off, len);
			return;
		}
	}
	buf_puts(out, "\"7BIT\"");
}

/* md5 dsp lang loc */
static void
imapenv_ext_tail(struct buf *out, const char *raw, const struct mime_part *p)
{
	buf_putc(out, ' ');
	imapenv_disposition(out, raw, p);
	buf_putc(out, ' ');
	imapenv_language(out, raw, p);
	buf_putc(out, ' ');
	imapenv_nstring_hdr(out, raw, p, MIME_H_CONTENT_LOCATION);
}

struct imapenv_type {
	const char *type, *subtype;
	size_t type_len, subtype_len;
	const char *params; /* Content-Type value, or NULL for the default's */
	size_t params_len, params_off;
};

static void
imapenv_effective_type(const char *raw, const struct mime_part *p, struct imapenv_type *ty)
{
	struct mime_ctype ct;

	memset(ty, 0, sizeof(*ty));
	if (p->flags & MIME_PF_CT_OPAQUE) {
		ty->type = "APPLICATION";
		ty->subtype = "OCTET-STREAM";
	} else if (p->flags & MIME_PF_CT_DIGEST) {
		ty->type = "MESSAGE";
		ty->subtype = "RFC822";
	} else if (!(p->flags & MIME_PF_CT_DEFAULT) && imapenv_has(p, MIME_H_CONTENT_TYPE) &&
	    mime_ctype_parse(raw + p->hdr[MIME_H_CONTENT_TYPE].off,
		    p->hdr[MIME_H_CONTENT_TYPE].len, &ct)) {
		ty->type = ct.type;
		ty->type_len = ct.type_len;
		ty->subtype = ct.subtype;
		ty->subtype_len = ct.subtype_len;
		ty->params = raw + p->hdr[MIME_H_CONTENT_TYPE].off;
		ty->params_len = p->hdr[MIME_H_CONTENT_TYPE].len;
		ty->params_off = ct.params_off;
		return;
	} else {
		ty->type = "TEXT";
		ty->subtype = "PLAIN";
	}
	ty->type_len = strlen(ty->type);
	ty->subtype_len = strlen(ty->subtype);
}

static void
imapenv_body(const struct mime_tree *t, const char *raw, uint32_t idx, bool ext, struct buf *out)
{
	const struct mime_part *p = &t->parts[idx];
	struct imapenv_type ty;
	uint32_t c;

	imapenv_effective_type(raw, p, &ty);
	buf_putc(out, '(');
	if (p->kind == MIME_KIND_MULTIPART) {
		for (c = p->first_child; c != MIME_NONE; c = t->parts[c].next)
			imapenv_body(t, raw, c, ext, out);
		buf_putc(out, ' ');
		imapenv_put_upper(out, ty.subtype, ty.subtype_len);
		if (ext) {
			buf_putc(out, ' ');
			imapenv_params(out, ty.params, ty.params_len, ty.params_off);
			imapenv_ext_tail(out, raw, p);
		}
		buf_putc(out, ')');
		return;
	}
	imapenv_put_upper(out, ty.type, ty.type_len);
	buf_putc(out, ' ');
	imapenv_put_upper(out, ty.subtype, ty.subtype_len);
	buf_putc(out, ' ');
	if (ty.params != NULL)
		imapenv_params(out, ty.params, ty.params_len, ty.params_off);
	else if (mime_eq(ty.type, ty.type_len, "text"))
		buf_puts(out, "(\"CHARSET\" \"US-ASCII\")");
	else
		buf_puts(out, "NIL");
	buf_putc(out, ' ');
	imapenv_nstring_hdr(out, raw, p, MIME_H_CONTENT_ID);
	buf_putc(out, ' ');
	imapenv_nstring_hdr(out, raw, p, MIME_H_CONTENT_DESCRIPTION);
	buf_putc(out, ' ');
	imapenv_encoding(out, raw, p);
	buf_printf(out, " %zu", p->body_end - p->body_start);
	if (p->kind == MIME_KIND_MESSAGE && p->first_child != MIME_NONE) {
		buf_putc(out, ' ');
		imapenv_envelope(t, raw, p->first_child, out);
		buf_putc(out, ' ');
		imapenv_body(t, raw, p->first_child, ext, out);
		buf_printf(out, " %zu", mime_count_lf(raw + p->body_start, p->body_end - p->body_start));
	} else if (mime_eq(ty.type, ty.type_len, "text")) {
		buf_printf(out, " %zu", mime_count_lf(raw + p->body_start, p->body_end - p->body_start));
	}
	if (ext) {
		buf_putc(out, ' ');
		imapenv_nstring_hdr(out, raw, p, MIME_H_CONTENT_MD5);
		imapenv_ext_tail(out, raw, p);
	}
	buf_putc(out, ')');
}

void
imapenv_bodystructure(const struct mime_tree *t, const char *raw, uint32_t idx,
	bool extended, struct buf *out)
{
	imapenv_body(t, raw, idx, extended, out);
}

void
imapenv_build(const char *raw, size_t len, struct imapenv *r)
{
	struct mime_tree t;

	buf_init(&r->envelope);
	buf_init(&r->bodystructure);
	buf_init(&r->body);
	buf_init(&r->tree);
	mime_parse(&t, raw, len);
	imapenv_envelope(&t, raw, 0, &r->envelope);
	imapenv_bodystructure(&t, raw, 0, true, &r->bodystructure);
	imapenv_bodystructure(&t, raw, 0, false, &r->body);
	imapenv_tree_encode(&t, &r->tree);
	mime_tree_free(&t);
}

void
imapenv_free(struct imapenv *r)
{
	buf_free(&r->envelope);
	buf_free(&r->bodystructure);
	buf_free(&r->body);
	buf_free(&r->tree);
}

/* ---- serialised tree ---- */

static void
imapenv_varint(struct buf *out, uint64_t v)
{
	unsigned char b[10];
	size_t n = 0;

	do {
		b[n] = (unsigned char)(v & 0x7f);
		v >>= 7;
		if (v != 0)
			b[n] |= 0x80;
		n++;
	} while (v != 0);
	buf_append(out, b, n);
}

void
imapenv_tree_encode(const struct mime_tree *t, struct buf *out)
{
	uint32_t i;

	buf_putc(out, 'M');
	buf_putc(out, 1);
	imapenv_varint(out, t->len);
	imapenv_varint(out, t->nparts);
	for (i = 0; i < t->nparts; i++) {
		const struct mime_part *p = &t->parts[i];

		buf_putc(out, (char)(p->kind | (p->flags << 2)));
		imapenv_varint(out, p->hdr_start);
		imapenv_varint(out, p->body_start - p->hdr_start);
		imapenv_varint(out, p->body_end - p->body_start);
		imapenv_varint(out, p->nchildren);
	}
}

struct imapenv_rd {
	const unsigned char *p;
	size_t n, pos;
};

static int
imapenv_get_varint(struct imapenv_rd *rd, uint64_t *v)
{
	uint64_t x = 0;
	unsigned shift = 0;

	for (;;) {
		unsigned char b;

		if (rd->pos >= rd->n || shift > 63)
			return -1;
		b = rd->p[rd->pos++];
		if (shift == 63 && (b & 0x7e) != 0)
			return -1;
		x |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			break;
		shift += 7;
	}
	*v = x;
	return 0;
}

int
imapenv_tree_decode(const void *blob, size_t n, struct mime_tree *t, struct err *err)
{
	struct imapenv_rd rd = { blob, n, 0 };
	struct {
		uint32_t idx;
		uint64_t left;
		size_t floor; /* where the next child may start */
	} stack[MIME_MAX_DEPTH + 2];
	unsigned depth = 0;
	uint64_t len, count, i;

	memset(t, 0, sizeof(*t));
	if (n < 2 || rd.p[0] != 'M' || rd.p[1] != 1)
		return err_set(err, ERR_CORRUPT, "part tree: bad magic or version");
	rd.pos = 2;
	if (imapenv_get_varint(&rd, &len) < 0 || imapenv_get_varint(&rd, &count) < 0)
		return err_set(err, ERR_CORRUPT, "part tree: truncated header");
	if (len > SIZE_MAX / 2 || count == 0 || count > MIME_MAX_PARTS || count > (n - rd.pos) / 5)
		return err_set(err, ERR_CORRUPT, "part tree: bad length or count");
	t->len = (size_t)len;
	t->have_fields = false;
	for (i = 0; i < count; i++) {
		uint64_t hs, hl, bl, nc;
		unsigned char kf;
		uint32_t parent = depth > 0 ? stack[depth - 1].idx : MIME_NONE;
		uint32_t idx;
		struct mime_part *p;

		if (i > 0 && depth == 0)
			goto corrupt;
		if (rd.pos >= rd.n)
			goto corrupt;
		kf = rd.p[rd.pos++];
		if (imapenv_get_varint(&rd, &hs) < 0 || imapenv_get_varint(&rd, &hl) < 0 ||
		    imapenv_get_varint(&rd, &bl) < 0 || imapenv_get_varint(&rd, &nc) < 0)
			goto corrupt;
		if ((kf & 3) > MIME_KIND_MESSAGE || hs > len || hl > len - hs || bl > len - hs - hl)
			goto corrupt;
		if ((kf & 3) == MIME_KIND_LEAF && nc != 0)
			goto corrupt;
		if ((kf & 3) == MIME_KIND_MESSAGE && nc != 1)
			goto corrupt;
		if ((kf & 3) == MIME_KIND_MULTIPART && (nc == 0 || nc > count))
			goto corrupt;
		if (parent == MIME_NONE) {
			if (hs != 0 || hs + hl + bl != len)
				goto corrupt;
		} else {
			const struct mime_part *pp = &t->parts[parent];

			if (hs < stack[depth - 1].floor || hs + hl + bl > pp->body_end)
				goto corrupt;
		}
		idx = mime_tree_add(t, parent);
		p = &t->parts[idx];
		p->kind = kf & 3;
		p->flags = kf >> 2;
		p->hdr_start = (size_t)hs;
		p->body_start = (size_t)(hs + hl);
		p->body_end = (size_t)(hs + hl + bl);
		if (depth > 0) {
			stack[depth - 1].floor = p->body_end;
			stack[depth - 1].left--;
		}
		if (nc > 0) {
			/* as the scanner: nothing below MIME_MAX_DEPTH is split */
			if (p->depth >= MIME_MAX_DEPTH)
				goto corrupt;
			stack[depth].idx = idx;
			stack[depth].left = nc;
			stack[depth].floor = p->body_start;
			depth++;
		}
		while (depth > 0 && stack[depth - 1].left == 0)
			depth--;
	}
	if (depth != 0 || rd.pos != rd.n)
		goto corrupt;
	return 0;
corrupt:
	mime_tree_free(t);
	return err_set(err, ERR_CORRUPT, "part tree: inconsistent entry");
}
