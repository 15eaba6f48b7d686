/*
 * mime.c - the MIME part-tree scanner.  See mime.h for the rules it
 * follows on malformed input; docs/decisions.md for why it is ours and
 * not GMime's.
 *
 * One pass over the octets, recursive descent over entities, with a
 * stack of the boundaries of the enclosing multiparts.  Recursion depth
 * and the boundary stack are bounded by MIME_MAX_DEPTH, the part array by
 * MIME_MAX_PARTS.  Nothing is copied from the message except boundary
 * strings during the scan; header fields are remembered as offsets.
 */
#include "store/mime.h"

#include "lib/xalloc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ---- small helpers ---- */

static inline char
mime_lc(char c)
{
	return (c >= 'A' && c <= 'Z') ? (char)(c + ('a' - 'A')) : c;
}

bool
mime_eq(const char *s, size_t n, const char *lit)
{
	size_t i;

	for (i = 0; i < n; i++) {
		if (lit[i] == '\0' || mime_lc(s[i]) != mime_lc(lit[i]))
			return false;
	}
	return lit[n] == '\0';
}

static __thread const char *mime_rel_base;
static __thread size_t mime_rel_len;

void
mime_release_map(const char *base, size_t len)
{
	mime_rel_base = base;
	mime_rel_len = base != NULL ? len : 0;
}

/* The scanners are past [from, to): give back its whole pages when it
 * lies in the declared file mapping. */
static void
mime_release(const char *from, const char *to)
{
	static uintptr_t pg;
	uintptr_t a, b;

	if (mime_rel_base == NULL || from < mime_rel_base || to > mime_rel_base + mime_rel_len)
		return;
	if (pg == 0)
		pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	a = ((uintptr_t)from + pg - 1) & ~(pg - 1);
	b = (uintptr_t)to & ~(pg - 1);
	if (b > a)
		(void)madvise((void *)a, b - a, MADV_DONTNEED);
}

size_t
mime_count_lf(const char *p, size_t n)
{
	const char *end = p + n, *q;
	size_t lines = 0;

	/* a step at a time, so the pages of a mapped message go back as
	 * the count passes them (mime_release_map) */
	while (p < end) {
		const char *start = p;
		const char *stop = (size_t)(end - p) > MIME_RELEASE_STEP ? p + MIME_RELEASE_STEP : end;

		while (p < stop && (q = memchr(p, '\n', (size_t)(stop - p))) != NULL) {
			lines++;
			p = q + 1;
		}
		p = stop;
		mime_release(start, stop);
	}
	return lines;
}

#define MIME_HN(s) { s, sizeof(s) - 1 }
static const struct {
	const char *name;
	size_t len;
} mime_hdr_names[MIME_H_COUNT] = {
	[MIME_H_CONTENT_TYPE] = MIME_HN("content-type"),
	[MIME_H_CONTENT_TRANSFER_ENCODING] = MIME_HN("content-transfer-encoding"),
	[MIME_H_CONTENT_ID] = MIME_HN("content-id"),
	[MIME_H_CONTENT_DESCRIPTION] = MIME_HN("content-description"),
	[MIME_H_CONTENT_MD5] = MIME_HN("content-md5"),
	[MIME_H_CONTENT_DISPOSITION] = MIME_HN("content-disposition"),
	[MIME_H_CONTENT_LANGUAGE] = MIME_HN("content-language"),
	[MIME_H_CONTENT_LOCATION] = MIME_HN("content-location"),
	[MIME_H_DATE] = MIME_HN("date"),
	[MIME_H_SUBJECT] = MIME_HN("subject"),
	[MIME_H_FROM] = MIME_HN("from"),
	[MIME_H_SENDER] = MIME_HN("sender"),
	[MIME_H_REPLY_TO] = MIME_HN("reply-to"),
	[MIME_H_TO] = MIME_HN("to"),
	[MIME_H_CC] = MIME_HN("cc"),
	[MIME_H_BCC] = MIME_HN("bcc"),
	[MIME_H_IN_REPLY_TO] = MIME_HN("in-reply-to"),
	[MIME_H_MESSAGE_ID] = MIME_HN("message-id"),
};

static int
mime_hdr_lookup(const char *name, size_t n)
{
	int i;

	if (n < 2 || n > 25)
		return -1;
	for (i = 0; i < MIME_H_COUNT; i++) {
		if (mime_hdr_names[i].len == n && mime_lc(name[0]) == mime_hdr_names[i].name[0] &&
		    mime_eq(name, n, mime_hdr_names[i].name))
			return i;
	}
	return -1;
}

/* ---- tree storage ---- */

uint32_t
mime_tree_add(struct mime_tree *t, uint32_t parent)
{
	struct mime_part *p;
	uint32_t idx;

	if (t->nparts == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 8;
		t->parts = xreallocarray(t->parts, t->cap, sizeof(*t->parts));
	}
	idx = t->nparts++;
	p = &t->parts[idx];
	memset(p, 0, sizeof(*p));
	p->parent = parent;
	p->first_child = p->last_child = p->next = MIME_NONE;
	if (parent != MIME_NONE) {
		struct mime_part *pp = &t->parts[parent];

		p->depth = (uint16_t)(pp->depth + 1);
		if (pp->last_child == MIME_NONE)
			pp->first_child = idx;
		else
			t->parts[pp->last_child].next = idx;
		pp->last_child = idx;
		pp->nchildren++;
	}
	return idx;
}

void
mime_tree_free(struct mime_tree *t)
{
	free(t->parts);
	memset(t, 0, sizeof(*t));
}

bool
mime_is_message_level(const struct mime_tree *t, uint32_t idx)
{
	uint32_t parent = t->parts[idx].parent;

	return parent == MIME_NONE || t->parts[parent].kind == MIME_KIND_MESSAGE;
}

/* ---- RFC 2045 lexical helpers ---- */

void
mime_skip_cfws(const char *v, size_t n, size_t *pos)
{
	size_t i = *pos;

	while (i < n) {
		char c = v[i];

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
			i++;
		} else if (c == '(') {
			unsigned depth = 0;

			for (; i < n; i++) {
				if (v[i] == '\\') {
					i++;
				} else if (v[i] == '(') {
					depth++;
				} else if (v[i] == ')') {
					if (--depth == 0) {
						i++;
						break;
					}
				}
			}
			if (i > n)
				i = n;
		} else {
			break;
		}
	}
	*pos = i;
}

static bool
mime_is_tchar(unsigned char c)
{
	if (c <= 0x20 || c == 0x7f)
		return false;
	return strchr("()<>@,;:\\\"/[]?=", c) == NULL;
}

bool
mime_token(const char *v, size_t n, size_t *pos, size_t *off, size_t *len)
{
	size_t i = *pos;

	while (i < n && mime_is_tchar((unsigned char)v[i]))
		i++;
	if (i == *pos)
		return false;
	*off = *pos;
	*len = i - *pos;
	*pos = i;
	return true;
}

bool
mime_ctype_parse(const char *v, size_t n, struct mime_ctype *ct)
{
	size_t pos = 0, off, len;

	mime_skip_cfws(v, n, &pos);
	if (!mime_token(v, n, &pos, &off, &len))
		return false;
	ct->type = v + off;
	ct->type_len = len;
	mime_skip_cfws(v, n, &pos);
	if (pos >= n || v[pos] != '/')
		return false;
	pos++;
	mime_skip_cfws(v, n, &pos);
	if (!mime_token(v, n, &pos, &off, &len))
		return false;
	ct->subtype = v + off;
	ct->subtype_len = len;
	ct->params_off = pos;
	return true;
}

/* Skip to the next ';' outside a quoted string (or the end). */
static void
mime_skip_junk(const char *v, size_t n, size_t *pos)
{
	size_t i = *pos;
	bool q = false;

	for (; i < n; i++) {
		if (q && v[i] == '\\')
			i++;
		else if (v[i] == '"')
			q = !q;
		else if (!q && v[i] == ';')
			break;
	}
	*pos = i < n ? i : n;
}

static bool
mime_is_vchar(unsigned char c)
{
	return c > 0x20 && c != 0x7f && c != ';' && c != '"' && c != '(' && c != ')';
}

bool
mime_param_next(const char *v, size_t n, size_t *pos, struct mime_param *p)
{
	size_t i = *pos, off, len;

	for (;;) {
		mime_skip_cfws(v, n, &i);
		while (i < n && v[i] == ';') {
			i++;
			mime_skip_cfws(v, n, &i);
		}
		if (i >= n) {
			*pos = n;
			return false;
		}
		if (!mime_token(v, n, &i, &off, &len)) {
			i++;
			mime_skip_junk(v, n, &i);
			continue;
		}
		p->name = v + off;
		p->name_len = len;
		mime_skip_cfws(v, n, &i);
		if (i >= n || v[i] != '=') {
			mime_skip_junk(v, n, &i);
			continue;
		}
		i++;
		mime_skip_cfws(v, n, &i);
		if (i < n && v[i] == '"') {
			size_t start = ++i;

			while (i < n && v[i] != '"') {
				if (v[i] == '\\' && i + 1 < n)
					i++;
				i++;
			}
			if (i > n)
				i = n;
			p->value = v + start;
			p->value_len = i - start;
			p->quoted = true;
			if (i < n)
				i++;
		} else {
			size_t start = i;

			while (i < n && mime_is_vchar((unsigned char)v[i]))
				i++;
			p->value = v + start;
			p->value_len = i - start;
			p->quoted = false;
		}
		*pos = i;
		return true;
	}
}

void
mime_param_value(const struct mime_param *p, struct buf *out)
{
	size_t i;

	for (i = 0; i < p->value_len; i++) {
		char c = p->value[i];

		if (c == '\0')
			continue;
		if (p->quoted && c == '\\' && i + 1 < p->value_len) {
			c = p->value[++i];
			if (c == '\0')
				continue;
		} else if (c == '\r' || c == '\n') {
			continue; /* folding inside a quoted string */
		}
		buf_putc(out, c);
	}
}

void
mime_unfold(const char *v, size_t n, struct buf *out)
{
	size_t i = 0, run, start = out->len;

	while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == '\r' || v[i] == '\n'))
		i++;
	while (i < n) {
		/* copy the run up to the next CR, LF or NUL at once */
		for (run = i; run < n && v[run] != '\r' && v[run] != '\n' && v[run] != '\0'; run++)
			;
		buf_append(out, v + i, run - i);
		if (run >= n)
			break;
		i = run;
		if (v[i] == '\0') {
			i++;
		} else if (v[i] == '\r' && i + 2 < n && v[i + 1] == '\n' && (v[i + 2] == ' ' || v[i + 2] == '\t')) {
			i += 2;
		} else if (v[i] == '\n' && i + 1 < n && (v[i + 1] == ' ' || v[i + 1] == '\t')) {
			i++;
		} else {
			buf_putc(out, v[i]);
			i++;
		}
	}
	while (out->len > start) {
		char c = out->data[out->len - 1];

		if (c != ' ' && c != '\t' && c != '\r' && c != '\n')
			break;
		buf_truncate(out, out->len - 1);
	}
}

/* ---- header iteration ---- */

/* End of the line starting at i: one past its LF, or n. */
static inline size_t
mime_line_end(const char *p, size_t n, size_t i)
{
	const char *nl = memchr(p + i, '\n', n - i);

	return nl != NULL ? (size_t)(nl - p) + 1 : n;
}

static inline bool
mime_is_blank_line(const char *p, size_t n, size_t i)
{
	return p[i] == '\n' || (p[i] == '\r' && i + 1 < n && p[i + 1] == '\n');
}

/* Parse the field whose first line starts at i (not blank): fill f; its
 * end is past all continuation lines.  Returns false when the first line
 * has no colon (f->end still set). */
static bool
mime_field_at(const char *p, size_t n, size_t i, struct mime_field *f)
{
	size_t le = mime_line_end(p, n, i), e = le, ve;
	const char *colon;

	while (e < n && (p[e] == ' ' || p[e] == '\t'))
		e = mime_line_end(p, n, e);
	f->start = i;
	f->end = e;
	colon = memchr(p + i, ':', le - i);
	if (colon == NULL)
		return false;
	f->name_off = i;
	f->name_len = (size_t)(colon - p) - i;
	while (f->name_len > 0 && (p[i + f->name_len - 1] == ' ' || p[i + f->name_len - 1] == '\t'))
		f->name_len--;
	ve = e;
	if (ve > i && p[ve - 1] == '\n') {
		ve--;
		if (ve > i && p[ve - 1] == '\r')
			ve--;
	}
	f->value_off = (size_t)(colon - p) + 1;
	f->value_len = ve > f->value_off ? ve - f->value_off : 0;
	return f->name_len > 0;
}

bool
mime_header_next(const char *hdr, size_t len, size_t *pos, struct mime_field *f)
{
	size_t i = *pos;

	while (i < len) {
		if (mime_is_blank_line(hdr, len, i))
			break;
		if (mime_field_at(hdr, len, i, f)) {
			*pos = f->end;
			return true;
		}
		i = f->end;
	}
	*pos = len;
	return false;
}

void
mime_header_filter(const char *hdr, size_t len, const char *const *names, size_t n,
	bool exclude, struct buf *out)
{
	struct mime_field f;
	size_t pos = 0, k;

	while (mime_header_next(hdr, len, &pos, &f)) {
		bool match = false;

		for (k = 0; k < n && !match; k++)
			match = mime_eq(hdr + f.name_off, f.name_len, names[k]);
		if (match == exclude)
			continue;
		buf_append(out, hdr + f.start, f.end - f.start);
		if (hdr[f.end - 1] != '\n')
			buf_append(out, "\r\n", 2);
	}
	buf_append(out, "\r\n", 2);
}

/* ---- the scanner ---- */

struct mime_bnd {
	char *s;
	size_t n;
};

struct mime_scan {
	struct mime_tree *t;
	const char *p;
	size_t len;
	struct mime_bnd bnd[MIME_MAX_DEPTH + 2];
	unsigned nbnd;
};

/* How an entity ended. */
struct mime_delim {
	int level;  /* index into bnd[] of the delimiter found; -1: end of data */
	bool close; /* "--boundary--" */
	size_t end; /* where the content before the delimiter ends */
	size_t next; /* first octet after the delimiter line */
};

/* Is the line at i a delimiter of an enclosing multipart? */
static bool
mime_delim_at(const struct mime_scan *sc, size_t i, struct mime_delim *d)
{
	const char *s;
	size_t rest, bestn = 0;
	int k, best = -1;

	if (sc->nbnd == 0 || i + 2 > sc->len || sc->p[i] != '-' || sc->p[i + 1] != '-')
		return false;
	s = sc->p + i + 2;
	rest = sc->len - i - 2;
	for (k = (int)sc->nbnd - 1; k >= 0; k--) {
		size_t n = sc->bnd[k].n;

		if (n <= rest && (best < 0 || n > bestn) && memcmp(s, sc->bnd[k].s, n) == 0) {
			best = k;
			bestn = n;
		}
	}
	if (best < 0)
		return false;
	d->level = best;
	d->close = bestn + 2 <= rest && s[bestn] == '-' && s[bestn + 1] == '-';
	d->next = mime_line_end(sc->p, sc->len, i + 2 + bestn);
	return true;
}

/* Where content that started at `from` ends when a delimiter line starts
 * at i: the line end before it belongs to the delimiter. */
static size_t
mime_content_end(const char *p, size_t from, size_t i)
{
	size_t e;

	if (i <= from)
		return from;
	e = i - 1; /* p[e] == '\n' */
	if (e > from && p[e - 1] == '\r')
		e--;
	return e;
}

/* Find the next delimiter line at or after the line start pos. */
static void
mime_find_delim(const struct mime_scan *sc, size_t pos, struct mime_delim *d)
{
	size_t i = pos, rel = pos;

	if (sc->nbnd > 0) {
		while (i < sc->len) {
			if (mime_delim_at(sc, i, d)) {
				d->end = mime_content_end(sc->p, pos, i);
				return;
			}
			i = mime_line_end(sc->p, sc->len, i);
			if (i - rel >= MIME_RELEASE_STEP) {
				mime_release(sc->p + rel, sc->p + i);
				rel = i;
			}
		}
	}
	d->level = -1;
	d->close = false;
	d->end = sc->len;
	d->next = sc->len;
}

/* Scan the header of part idx from pos.  Sets body_start; returns true
 * when a delimiter line cut the header short (*d filled, body empty). */
static bool
mime_scan_header(struct mime_scan *sc, uint32_t idx, size_t pos, struct mime_delim *d)
{
	const char *p = sc->p;
	size_t n = sc->len, i = pos;
	struct mime_field f;

	while (i < n) {
		if (mime_is_blank_line(p, n, i)) {
			sc->t->parts[idx].body_start = i + (p[i] == '\r' ? 2 : 1);
			return false;
		}
		if (mime_delim_at(sc, i, d)) {
			d->end = mime_content_end(p, pos, i);
			sc->t->parts[idx].body_start = d->end;
			return true;
		}
		if (mime_field_at(p, n, i, &f)) {
			int h = mime_hdr_lookup(p + f.name_off, f.name_len);
			struct mime_part *part = &sc->t->parts[idx];

			if (h >= 0 && !(part->hdr_present & (1u << h))) {
				part->hdr_present |= 1u << h;
				part->hdr[h].off = f.value_off;
				part->hdr[h].len = f.value_len;
			}
		}
		i = f.end;
	}
	sc->t->parts[idx].body_start = n;
	return false;
}

static bool
mime_identity_cte(const struct mime_scan *sc, const struct mime_part *part)
{
	const struct mime_span *sp = &part->hdr[MIME_H_CONTENT_TRANSFER_ENCODING];
	const char *v = sc->p + sp->off;
	size_t pos = 0, off, len;

	if (!(part->hdr_present & (1u << MIME_H_CONTENT_TRANSFER_ENCODING)))
		return true;
	mime_skip_cfws(v, sp->len, &pos);
	if (!mime_token(v, sp->len, &pos, &off, &len))
		return true;
	return mime_eq(v + off, len, "7bit") || mime_eq(v + off, len, "8bit") ||
		mime_eq(v + off, len, "binary");
}

/* The boundary parameter of a Content-Type value, unescaped (NULL if
 * none or empty).  Caller frees. */
static char *
mime_boundary(const char *v, size_t n, size_t params_off, size_t *blen)
{
	struct mime_param prm;
	size_t pos = params_off;

	while (mime_param_next(v, n, &pos, &prm)) {
		if (mime_eq(prm.name, prm.name_len, "boundary")) {
			struct buf b = BUF_INIT;

			mime_param_value(&prm, &b);
			if (b.len == 0) {
				buf_free(&b);
				return NULL;
			}
			*blen = b.len;
			return buf_steal(&b);
		}
	}
	return NULL;
}

static uint32_t mime_scan_entity(struct mime_scan *sc, size_t pos, uint32_t parent,
	bool digest_child, struct mime_delim *d);

/* An empty leaf at pos (the message of a message/rfc822 part whose body
 * is empty). */
static void
mime_empty_child(struct mime_scan *sc, uint32_t parent, size_t pos)
{
	uint32_t c = mime_tree_add(sc->t, parent);
	struct mime_part *cp = &sc->t->parts[c];

	cp->hdr_start = cp->body_start = cp->body_end = pos;
	cp->flags |= MIME_PF_CT_DEFAULT;
}

static void
mime_scan_multipart(struct mime_scan *sc, uint32_t idx, char *boundary, size_t blen,
	bool digest, struct mime_delim *d)
{
	struct mime_delim dd, d2;
	unsigned level = sc->nbnd;
	size_t body_start = sc->t->parts[idx].body_start;
	bool capped = false;

	sc->bnd[level].s = boundary;
	sc->bnd[level].n = blen;
	sc->nbnd++;
	mime_find_delim(sc, body_start, &dd);
	while (dd.level == (int)level && !dd.close) {
		if (sc->t->nparts >= MIME_MAX_PARTS) {
			/* Leave the rest unsplit, but still find where we end. */
			capped = true;
			mime_find_delim(sc, dd.next, &dd);
			continue;
		}
		mime_scan_entity(sc, dd.next, idx, digest, &dd);
	}
	sc->nbnd--;
	free(boundary);
	sc->bnd[level].s = NULL;
	if (capped)
		sc->t->parts[idx].flags |= MIME_PF_CAPPED;
	if (dd.level == (int)level) {
		/* close delimiter: the epilogue runs to an outer delimiter */
		mime_find_delim(sc, dd.next, &d2);
		*d = d2;
	} else {
		sc->t->parts[idx].flags |= MIME_PF_TRUNCATED;
		*d = dd;
	}
	sc->t->parts[idx].body_end = d->end;
	if (sc->t->parts[idx].nchildren == 0) {
		/* no delimiter of its own: not a usable multipart */
		sc->t->parts[idx].kind = MIME_KIND_LEAF;
		sc->t->parts[idx].flags |= MIME_PF_CT_DEFAULT;
	}
}

static uint32_t
mime_scan_entity(struct mime_scan *sc, size_t pos, uint32_t parent, bool digest_child,
	struct mime_delim *d)
{
	uint32_t idx = mime_tree_add(sc->t, parent);
	struct mime_part *part = &sc->t->parts[idx];
	struct mime_ctype ct;
	bool have_ct = false, cut, is_multi = false, is_msg = false;
	const char *ctv = NULL;
	size_t ctn = 0;

	part->hdr_start = pos;
	cut = mime_scan_header(sc, idx, pos, d);
	part = &sc->t->parts[idx];
	if (part->hdr_present & (1u << MIME_H_CONTENT_TYPE)) {
		ctv = sc->p + part->hdr[MIME_H_CONTENT_TYPE].off;
		ctn = part->hdr[MIME_H_CONTENT_TYPE].len;
		have_ct = mime_ctype_parse(ctv, ctn, &ct);
		if (!have_ct)
			part->flags |= MIME_PF_CT_DEFAULT;
		else if (mime_eq(ct.type, ct.type_len, "multipart"))
			is_multi = true;
		else if (mime_eq(ct.type, ct.type_len, "message") && mime_eq(ct.subtype, ct.subtype_len, "rfc822"))
			is_msg = true;
	} else if (digest_child) {
		part->flags |= MIME_PF_CT_DIGEST;
		is_msg = true;
	}

	if (is_msg && !mime_identity_cte(sc, part)) {
		part->flags |= MIME_PF_CT_OPAQUE;
		is_msg = false;
	}
	if ((is_msg || is_multi) &&
	    (part->depth >= MIME_MAX_DEPTH || sc->t->nparts >= MIME_MAX_PARTS)) {
		part->flags |= MIME_PF_CT_OPAQUE | MIME_PF_CAPPED;
		is_msg = is_multi = false;
	}

	if (cut) {
		/* A delimiter right after the header: the body is empty. */
		part->body_end = part->body_start;
		if (is_msg) {
			part->kind = MIME_KIND_MESSAGE;
			mime_empty_child(sc, idx, part->body_start);
		} else if (is_multi) {
			part->flags |= MIME_PF_CT_DEFAULT;
		}
		return idx;
	}

	if (is_multi) {
		size_t blen = 0;
		char *b = mime_boundary(ctv, ctn, ct.params_off, &blen);

		if (b == NULL) {
			part->flags |= MIME_PF_CT_DEFAULT;
		} else {
			part->kind = MIME_KIND_MULTIPART;
			mime_scan_multipart(sc, idx, b, blen,
				mime_eq(ct.subtype, ct.subtype_len, "digest"), d);
			return idx;
		}
	}
	if (is_msg) {
		size_t bs = part->body_start;

		part->kind = MIME_KIND_MESSAGE;
		mime_scan_entity(sc, bs, idx, false, d);
		sc->t->parts[idx].body_end = d->end;
		return idx;
	}
	mime_find_delim(sc, part->body_start, d);
	sc->t->parts[idx].body_end = d->end;
	return idx;
}

void
mime_parse(struct mime_tree *t, const char *raw, size_t len)
{
	struct mime_scan sc;
	struct mime_delim d;

	memset(t, 0, sizeof(*t));
	memset(&sc, 0, sizeof(sc));
	t->len = len;
	t->have_fields = true;
	sc.t = t;
	sc.p = raw;
	sc.len = len;
	mime_scan_entity(&sc, 0, MIME_NONE, false, &d);
	/* Nothing encloses the root: it always runs to the end. */
	t->parts[0].body_end = len;
}

/* ---- sections ---- */

int
mime_section(const struct mime_tree *t, const uint32_t *path, size_t npath,
	enum mime_sec what, struct mime_range *r)
{
	uint32_t cur = 0;
	bool msg_level = true;
	const struct mime_part *p;
	size_t i;

	if (t->nparts == 0)
		return -1;
	if (npath == 0 && what == MIME_SEC_MIME)
		return -1;
	for (i = 0; i < npath; i++) {
		uint32_t k = path[i];

		if (k == 0)
			return -1;
		if (t->parts[cur].kind == MIME_KIND_MULTIPART) {
			uint32_t c = t->parts[cur].first_child;

			while (c != MIME_NONE && --k > 0)
				c = t->parts[c].next;
			if (c == MIME_NONE)
				return -1;
			cur = c;
		} else if (!(msg_level && k == 1)) {
			return -1;
		}
		msg_level = false;
		if (i + 1 < npath && t->parts[cur].kind == MIME_KIND_MESSAGE) {
			if (t->parts[cur].first_child == MIME_NONE)
				return -1;
			cur = t->parts[cur].first_child;
			msg_level = true;
		}
	}
	if (npath > 0 && (what == MIME_SEC_HEADER || what == MIME_SEC_TEXT)) {
		if (t->parts[cur].kind != MIME_KIND_MESSAGE || t->parts[cur].first_child == MIME_NONE)
			return -1;
		cur = t->parts[cur].first_child;
	}
	p = &t->parts[cur];
	r->part = cur;
	switch (what) {
	case MIME_SEC_BODY:
		if (npath == 0) {
			r->off = 0;
			r->len = t->len;
		} else {
			r->off = p->body_start;
			r->len = p->body_end - p->body_start;
		}
		break;
	case MIME_SEC_HEADER:
	case MIME_SEC_MIME:
		r->off = p->hdr_start;
		r->len = p->body_start - p->hdr_start;
		break;
	case MIME_SEC_TEXT:
		r->off = p->body_start;
		r->len = p->body_end - p->body_start;
		break;
	default:
		return -1;
	}
	return 0;
}
