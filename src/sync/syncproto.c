/*
 * syncproto.c - wire codec of the sync protocol: the incremental frame
 * decoder, the encoder, and the shape checks of commands and responses
 * (see syncproto.h; the grammar is section 2 of docs/sync-protocol.md).
 *
 * The decoder is a byte-at-a-time state machine (literal data is copied
 * in blocks).  Every byte outside literal data counts against max_line,
 * every byte against max_frame, every value against max_items, every
 * open list against max_depth, each checked before the byte is used.
 * Values are built as they complete; the open lists form a stack of
 * pointers, each the last item of its parent, which does not grow while
 * the child is open, so the pointers stay valid.
 */
#include "sync/syncproto.h"

#include "lib/str.h"
#include "lib/xalloc.h"

#include <assert.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* Characters and values                                               */

static bool
atom_char(unsigned char c)
{
	return c > 0x20 && c < 0x7f && c != '"' && c != '(' && c != ')' && c != '[' && c != ']' &&
	       c != '{' && c != '}';
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

/* ["-"] 1*DIGIT */
static bool
number_like(const char *s, size_t n)
{
	size_t i = 0;

	if (n > 0 && s[0] == '-')
		i = 1;
	if (i == n)
		return false;
	for (; i < n; i++)
		if (!is_digit((unsigned char)s[i]))
			return false;
	return true;
}

/* Parse a number_like text that fits: magnitude <= UINT64_MAX, or
 * <= 2^63 when negative.  false when it does not fit. */
static bool
number_parse(const char *s, size_t n, uint64_t *num, bool *neg)
{
	uint64_t v = 0;
	size_t i = 0;

	*neg = false;
	if (s[0] == '-') {
		*neg = true;
		i = 1;
	}
	if (n - i > 20)
		return false;
	for (; i < n; i++) {
		unsigned d = (unsigned)(s[i] - '0');
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	if (*neg && v > (uint64_t)INT64_MAX + 1)
		return false;
	if (v == 0)
		*neg = false;
	*num = v;
	return true;
}

static bool
nil_text(const char *s, size_t n)
{
	return n == 3 && str_lower_c(s[0]) == 'n' && str_lower_c(s[1]) == 'i' &&
	       str_lower_c(s[2]) == 'l';
}

static void
value_clear(struct syncproto_value *v)
{
	for (size_t i = 0; i < v->n; i++)
		value_clear(&v->items[i]);
	free(v->items);
	free(v->str);
	memset(v, 0, sizeof(*v));
}

void
syncproto_value_free(struct syncproto_value **vp)
{
	if (*vp == NULL)
		return;
	value_clear(*vp);
	free(*vp);
	*vp = NULL;
}

void
syncproto_limits_default(struct syncproto_limits *lim)
{
	lim->max_line = SYNCPROTO_MAX_LINE_DEFAULT;
	lim->max_literal = SYNCPROTO_MAX_LITERAL_DEFAULT;
	lim->max_frame = SYNCPROTO_MAX_FRAME_DEFAULT;
	lim->max_items = SYNCPROTO_MAX_ITEMS_DEFAULT;
	lim->max_depth = SYNCPROTO_MAX_DEPTH_DEFAULT;
}

/* ------------------------------------------------------------------ */
/* Decoder                                                             */

enum dstate {
	D_SLOT,        /* a value may start here */
	D_ATOM,
	D_QUOTED,
	D_QESC,
	D_LITLEN,
	D_LITPLUS,     /* after '+': expect '}' */
	D_LITEOL,      /* after '}': expect CR or LF */
	D_LITLF,       /* after CR: expect LF */
	D_LITDATA,
	D_AFTER,       /* a value ended: SP, ')' ']' or end of line */
	D_CR,          /* CR at end of line: expect LF */
	D_DONE,        /* frame complete, waiting to be taken */
	D_DEAD,
};

/* how the current slot was entered */
enum slot_kind { SLOT_FRAME, SLOT_SPACE, SLOT_OPEN };

struct syncproto_decoder {
	struct syncproto_limits lim;
	enum dstate st;
	enum slot_kind slot;
	struct syncproto_value *frame;        /* root LIST being built */
	struct syncproto_value **stack;       /* open containers; stack[0] = frame */
	unsigned depth;                       /* open containers beyond the root */
	struct buf tok;
	uint64_t lit_len;
	bool lit_sync;
	unsigned lit_digits;
	size_t line_bytes, frame_bytes, items;
	uint64_t offset;                      /* bytes consumed in total */
	uint64_t frame_start;
	struct err error;
};

void
syncproto_decoder_set_limits(struct syncproto_decoder *d, const struct syncproto_limits *lim)
{
	unsigned depth = d->lim.max_depth;

	d->lim = *lim;
	d->lim.max_depth = depth;
}

struct syncproto_decoder *
syncproto_decoder_new(const struct syncproto_limits *lim)
{
	struct syncproto_decoder *d = xcalloc(1, sizeof(*d));

	if (lim != NULL)
		d->lim = *lim;
	else
		syncproto_limits_default(&d->lim);
	/* the encoder nests at most 64 deep: whatever is decoded can be
	 * re-encoded */
	if (d->lim.max_depth > 64)
		d->lim.max_depth = 64;
	d->stack = xcalloc(d->lim.max_depth + 1, sizeof(*d->stack));
	d->st = D_SLOT;
	d->slot = SLOT_FRAME;
	return d;
}

void
syncproto_decoder_free(struct syncproto_decoder **dp)
{
	struct syncproto_decoder *d = *dp;

	if (d == NULL)
		return;
	syncproto_value_free(&d->frame);
	buf_free(&d->tok);
	free(d->stack);
	free(d);
	*dp = NULL;
}

uint64_t
syncproto_decoder_offset(const struct syncproto_decoder *d)
{
	return d->offset;
}

static int
fail(struct syncproto_decoder *d, enum err_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static int step_after(struct syncproto_decoder *d, unsigned char c);

static int
fail(struct syncproto_decoder *d, enum err_kind kind, const char *fmt, ...)
{
	char what[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	err_set(&d->error, kind, "sync protocol: offset %" PRIu64 " (byte %" PRIu64
		" of the frame): %s", d->offset, d->offset - d->frame_start, what);
	d->st = D_DEAD;
	return -1;
}

/* Append a new value to the innermost open container. */
static struct syncproto_value *
push_value(struct syncproto_decoder *d, enum syncproto_type type)
{
	struct syncproto_value *c;
	struct syncproto_value *v;

	if (d->frame == NULL) {
		d->frame = xcalloc(1, sizeof(*d->frame));
		d->frame->type = SYNCPROTO_LIST;
		d->stack[0] = d->frame;
	}
	c = d->stack[d->depth];
	if (c->n == c->cap) {
		c->cap = c->cap ? c->cap * 2 : 4;
		c->items = xreallocarray(c->items, c->cap, sizeof(*c->items));
	}
	v = &c->items[c->n++];
	memset(v, 0, sizeof(*v));
	v->type = type;
	return v;
}

static int
count_item(struct syncproto_decoder *d)
{
	if (++d->items > d->lim.max_items)
		return fail(d, ERR_TOOBIG, "more than %zu values in one frame", d->lim.max_items);
	return 0;
}

static void
finish_text(struct syncproto_decoder *d, enum syncproto_type type)
{
	struct syncproto_value *v = push_value(d, type);

	v->len = d->tok.len;
	v->str = xmalloc(d->tok.len + 1);
	if (d->tok.len > 0)
		memcpy(v->str, d->tok.data, d->tok.len);
	v->str[d->tok.len] = '\0';
	buf_reset(&d->tok);
}

static void
finish_atom(struct syncproto_decoder *d)
{
	const char *s = d->tok.data;
	size_t n = d->tok.len;
	uint64_t num;
	bool neg;

	if (nil_text(s, n)) {
		push_value(d, SYNCPROTO_NIL);
		buf_reset(&d->tok);
		return;
	}
	if (number_like(s, n) && number_parse(s, n, &num, &neg)) {
		finish_text(d, SYNCPROTO_NUMBER);
		d->stack[d->depth]->items[d->stack[d->depth]->n - 1].num = num;
		d->stack[d->depth]->items[d->stack[d->depth]->n - 1].neg = neg;
		return;
	}
	finish_text(d, SYNCPROTO_ATOM);
}

static int
open_container(struct syncproto_decoder *d, enum syncproto_type type)
{
	struct syncproto_value *v;

	if (d->depth >= d->lim.max_depth)
		return fail(d, ERR_TOOBIG, "lists nested deeper than %u", d->lim.max_depth);
	if (count_item(d) < 0)
		return -1;
	v = push_value(d, type);
	d->stack[++d->depth] = v;
	return 0;
}

static int
close_container(struct syncproto_decoder *d, unsigned char c)
{
	enum syncproto_type want = c == ')' ? SYNCPROTO_LIST : SYNCPROTO_CODE;

	if (d->depth == 0)
		return fail(d, ERR_INVALID, "'%c' without an open list", c);
	if (d->stack[d->depth]->type != want)
		return fail(d, ERR_INVALID, "'%c' closes a list opened with '%c'", c,
			d->stack[d->depth]->type == SYNCPROTO_LIST ? '(' : '[');
	d->depth--;
	return 0;
}

/* End of line reached (LF consumed). */
static int
end_line(struct syncproto_decoder *d)
{
	if (d->depth > 0)
		return fail(d, ERR_INVALID, "end of line inside a list");
	d->st = D_DONE;
	return 0;
}

static int
start_literal(struct syncproto_decoder *d)
{
	if (d->frame_bytes + d->lit_len > d->lim.max_frame)
		return fail(d, ERR_TOOBIG, "frame larger than %zu bytes", d->lim.max_frame);
	buf_reset(&d->tok);
	if (d->lit_len == 0) {
		finish_text(d, SYNCPROTO_LITERAL);
		d->st = D_AFTER;
		return 0;
	}
	buf_reserve(&d->tok, d->lit_len < 65536 ? (size_t)d->lit_len : 65536);
	d->st = D_LITDATA;
	return 0;
}

/* D_SLOT: the byte that starts an item, or closes a list. */
static int
step_slot(struct syncproto_decoder *d, unsigned char c)
{
	if (c == '(' || c == '[') {
		if (open_container(d, c == '(' ? SYNCPROTO_LIST : SYNCPROTO_CODE) < 0)
			return -1;
		d->slot = SLOT_OPEN;
		return 0;
	}
	if (c == ')' || c == ']') {
		if (d->slot != SLOT_OPEN)
			return fail(d, ERR_INVALID, d->slot == SLOT_SPACE ?
				"space before '%c'" : "'%c' at the start of a line", c);
		if (close_container(d, c) < 0)
			return -1;
		d->st = D_AFTER;
		return 0;
	}
	if (c == '\r' || c == '\n') {
		if (d->slot == SLOT_FRAME)
			return fail(d, ERR_INVALID, "empty line");
		if (d->slot == SLOT_SPACE)
			return fail(d, ERR_INVALID, "space at the end of a line");
		return fail(d, ERR_INVALID, "end of line inside a list");
	}
	if (count_item(d) < 0)
		return -1;
	if (c == '"') {
		buf_reset(&d->tok);
		d->st = D_QUOTED;
		return 0;
	}
	if (c == '{') {
		d->lit_len = 0;
		d->lit_digits = 0;
		d->lit_sync = true;
		d->st = D_LITLEN;
		return 0;
	}
	if (atom_char(c)) {
		buf_reset(&d->tok);
		buf_putc(&d->tok, (char)c);
		d->st = D_ATOM;
		return 0;
	}
	if (c == ' ')
		return fail(d, ERR_INVALID, d->slot == SLOT_FRAME ? "space at the start of a line" :
			d->slot == SLOT_OPEN ? "space after an opening bracket" :
			"two spaces in a row");
	return fail(d, ERR_INVALID, "unexpected byte 0x%02x", c);
}

/* D_QUOTED and D_QESC: a byte of a quoted string, or of its escape. */
static int
step_quoted(struct syncproto_decoder *d, unsigned char c)
{
	if (d->st == D_QESC) {
		if (c != '"' && c != '\\')
			return fail(d, ERR_INVALID, "bad escape '\\%c' in a quoted string",
				c >= 0x20 && c < 0x7f ? c : '?');
		buf_putc(&d->tok, (char)c);
		d->st = D_QUOTED;
		return 0;
	}
	if (c == '"') {
		finish_text(d, SYNCPROTO_STRING);
		d->st = D_AFTER;
		return 0;
	}
	if (c == '\\') {
		d->st = D_QESC;
		return 0;
	}
	if (c == '\0' || c == '\r' || c == '\n')
		return fail(d, ERR_INVALID, "byte 0x%02x inside a quoted string", c);
	buf_putc(&d->tok, (char)c);
	return 0;
}

/* D_LITLEN and D_LITPLUS: the size of a literal, up to its '}'. */
static int
step_litlen(struct syncproto_decoder *d, unsigned char c)
{
	if (d->st == D_LITPLUS) {
		if (c != '}')
			return fail(d, ERR_INVALID, "expected '}' after '+'");
		d->st = D_LITEOL;
		return 0;
	}
	if (is_digit(c)) {
		if (++d->lit_digits > 20 || d->lit_len > (UINT64_MAX - 9) / 10)
			return fail(d, ERR_TOOBIG, "literal size too long");
		d->lit_len = d->lit_len * 10 + (uint64_t)(c - '0');
		if (d->lit_len > d->lim.max_literal)
			return fail(d, ERR_TOOBIG, "literal larger than %zu bytes",
				d->lim.max_literal);
		return 0;
	}
	if (d->lit_digits == 0)
		return fail(d, ERR_INVALID, "literal without a size");
	if (c == '+') {
		d->lit_sync = false;
		d->st = D_LITPLUS;
		return 0;
	}
	if (c == '}') {
		d->st = D_LITEOL;
		return 0;
	}
	return fail(d, ERR_INVALID, "bad byte 0x%02x in a literal size", c);
}

/* D_LITEOL and D_LITLF: the CRLF (or bare LF) after a literal's size;
 * 1 when the literal is synchronising and has data (stop). */
static int
step_liteol(struct syncproto_decoder *d, unsigned char c)
{
	if (d->st == D_LITEOL) {
		if (c == '\r') {
			d->st = D_LITLF;
			return 0;
		}
		if (c != '\n')
			return fail(d, ERR_INVALID, "expected CRLF after a literal size");
	}
	if (c != '\n')
		return fail(d, ERR_INVALID, "expected LF after CR");
	if (start_literal(d) < 0)
		return -1;
	return d->lit_sync && d->st == D_LITDATA ? 1 : 0;
}

/* One byte outside literal data.  Returns 0, 1 when the byte ended a
 * synchronising literal header (stop: the caller answers it), or -1. */
static int
step(struct syncproto_decoder *d, unsigned char c)
{
	if (++d->line_bytes > d->lim.max_line)
		return fail(d, ERR_TOOBIG, "line longer than %zu bytes", d->lim.max_line);
	if (++d->frame_bytes > d->lim.max_frame)
		return fail(d, ERR_TOOBIG, "frame larger than %zu bytes", d->lim.max_frame);

	switch (d->st) {
	case D_SLOT:
		return step_slot(d, c);

	case D_ATOM:
		if (atom_char(c)) {
			buf_putc(&d->tok, (char)c);
			return 0;
		}
		finish_atom(d);
		d->st = D_AFTER;
		return step_after(d, c);

	case D_QUOTED:
	case D_QESC:
		return step_quoted(d, c);

	case D_LITLEN:
	case D_LITPLUS:
		return step_litlen(d, c);

	case D_LITEOL:
	case D_LITLF:
		return step_liteol(d, c);

	case D_AFTER:
		return step_after(d, c);

	case D_CR:
		if (c != '\n')
			return fail(d, ERR_INVALID, "CR not followed by LF");
		return end_line(d);

	case D_LITDATA:
	case D_DONE:
	case D_DEAD:
		break;
	}
	assert(!"unreachable decoder state");
	return -1;
}

static int
step_after(struct syncproto_decoder *d, unsigned char c)
{
	switch (c) {
	case ' ':
		d->st = D_SLOT;
		d->slot = SLOT_SPACE;
		return 0;
	case ')':
	case ']':
		return close_container(d, c);
	case '\r':
		if (d->depth > 0)
			return fail(d, ERR_INVALID, "end of line inside a list");
		d->st = D_CR;
		return 0;
	case '\n':
		return end_line(d);
	default:
		return fail(d, ERR_INVALID, "expected a space, ')', ']' or end of line, got 0x%02x", c);
	}
}

int
syncproto_decoder_feed(struct syncproto_decoder *d, const void *data, size_t len,
	size_t *used_r, struct err *err)
{
	const unsigned char *p = data;
	size_t i = 0;
	int rc;

	*used_r = 0;
	if (d->st == D_DEAD) {
		if (err != NULL)
			*err = d->error;
		return -1;
	}
	if (d->st == D_DONE)
		return SYNCPROTO_FRAME;
	while (i < len) {
		if (d->st == D_LITDATA) {
			size_t chunk = len - i;
			if (chunk > d->lit_len)
				chunk = (size_t)d->lit_len;
			buf_append(&d->tok, p + i, chunk);
			i += chunk;
			d->offset += chunk;
			d->frame_bytes += chunk;
			d->lit_len -= chunk;
			if (d->lit_len == 0) {
				finish_text(d, SYNCPROTO_LITERAL);
				d->st = D_AFTER;
			}
			continue;
		}
		if (d->line_bytes == 0 && d->st == D_SLOT && d->slot == SLOT_FRAME)
			d->frame_start = d->offset;
		rc = step(d, p[i]);
		if (rc < 0) {
			*used_r = i;
			if (err != NULL)
				*err = d->error;
			return -1;
		}
		i++;
		d->offset++;
		if (d->st == D_DONE) {
			*used_r = i;
			return SYNCPROTO_FRAME;
		}
		if (rc == 1) {
			*used_r = i;
			return SYNCPROTO_CONTINUE;
		}
	}
	*used_r = i;
	return SYNCPROTO_MORE;
}

struct syncproto_value *
syncproto_decoder_take(struct syncproto_decoder *d)
{
	struct syncproto_value *f;

	if (d->st != D_DONE)
		return NULL;
	f = d->frame;
	d->frame = NULL;
	d->depth = 0;
	d->line_bytes = d->frame_bytes = d->items = 0;
	d->st = D_SLOT;
	d->slot = SLOT_FRAME;
	return f;
}

struct syncproto_value *
syncproto_decode_one(const void *data, size_t len, const struct syncproto_limits *lim,
	struct err *err)
{
	struct syncproto_decoder *d = syncproto_decoder_new(lim);
	struct syncproto_value *f = NULL;
	size_t used = 0, at = 0;
	int rc;

	do {
		size_t u;
		rc = syncproto_decoder_feed(d, (const char *)data + at, len - at, &u, err);
		at += u;
		used = at;
	} while (rc == SYNCPROTO_CONTINUE);
	if (rc == SYNCPROTO_FRAME) {
		if (used != len)
			err_set(err, ERR_INVALID, "sync protocol: %zu bytes after the frame", len - used);
		else
			f = syncproto_decoder_take(d);
	} else if (rc == SYNCPROTO_MORE) {
		err_set(err, ERR_INVALID, "sync protocol: frame incomplete after %zu bytes", len);
	}
	syncproto_decoder_free(&d);
	return f;
}

/* ------------------------------------------------------------------ */
/* Looking at values                                                   */

bool
syncproto_is_atom(const struct syncproto_value *v, const char *word)
{
	return v != NULL && v->type == SYNCPROTO_ATOM && str_eq_ci(v->str, word);
}

bool
syncproto_is_text(const struct syncproto_value *v)
{
	return v != NULL && (v->type == SYNCPROTO_ATOM || v->type == SYNCPROTO_NUMBER ||
			     v->type == SYNCPROTO_STRING || v->type == SYNCPROTO_LITERAL);
}

int
syncproto_get_u64(const struct syncproto_value *v, uint64_t *out)
{
	if (v == NULL || v->type != SYNCPROTO_NUMBER || v->neg)
		return -1;
	*out = v->num;
	return 0;
}

int
syncproto_get_i64(const struct syncproto_value *v, int64_t *out)
{
	if (v == NULL || v->type != SYNCPROTO_NUMBER)
		return -1;
	if (v->neg) {
		*out = v->num == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v->num;
		return 0;
	}
	if (v->num > INT64_MAX)
		return -1;
	*out = (int64_t)v->num;
	return 0;
}

const char *
syncproto_get_cstr(const struct syncproto_value *v)
{
	if (!syncproto_is_text(v) || memchr(v->str, '\0', v->len) != NULL)
		return NULL;
	return v->str;
}

bool
syncproto_is_hex(const struct syncproto_value *v, size_t n)
{
	if (!syncproto_is_text(v) || v->len != n)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = v->str[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return true;
}

int
syncproto_kv_check(const struct syncproto_value *kv, struct err *err)
{
	if (kv == NULL || kv->type != SYNCPROTO_LIST)
		return err_set(err, ERR_INVALID, "expected a list of keys and values");
	if (kv->n % 2 != 0)
		return err_set(err, ERR_INVALID, "key without a value in a list of keys and values");
	for (size_t i = 0; i < kv->n; i += 2) {
		if (kv->items[i].type != SYNCPROTO_ATOM)
			return err_set(err, ERR_INVALID, "key %zu is not an atom", i / 2 + 1);
		for (size_t j = 0; j < i; j += 2)
			if (str_eq_ci(kv->items[j].str, kv->items[i].str))
				return err_set(err, ERR_INVALID, "key %s given twice", kv->items[i].str);
	}
	return 0;
}

const struct syncproto_value *
syncproto_kv_get(const struct syncproto_value *kv, const char *key)
{
	if (kv == NULL || kv->type != SYNCPROTO_LIST)
		return NULL;
	for (size_t i = 0; i + 1 < kv->n; i += 2)
		if (kv->items[i].type == SYNCPROTO_ATOM && str_eq_ci(kv->items[i].str, key))
			return &kv->items[i + 1];
	return NULL;
}

int
syncproto_kv_u64(const struct syncproto_value *kv, const char *key, uint64_t *out,
	struct err *err)
{
	const struct syncproto_value *v = syncproto_kv_get(kv, key);

	if (v == NULL || v->type == SYNCPROTO_NIL)
		return 0;
	if (syncproto_get_u64(v, out) < 0)
		return err_set(err, ERR_INVALID, "%s: expected a non-negative number", key);
	return 1;
}

int
syncproto_kv_i64(const struct syncproto_value *kv, const char *key, int64_t *out,
	struct err *err)
{
	const struct syncproto_value *v = syncproto_kv_get(kv, key);

	if (v == NULL || v->type == SYNCPROTO_NIL)
		return 0;
	if (syncproto_get_i64(v, out) < 0)
		return err_set(err, ERR_INVALID, "%s: expected a 64-bit number", key);
	return 1;
}

int
syncproto_kv_cstr(const struct syncproto_value *kv, const char *key, const char **out,
	struct err *err)
{
	const struct syncproto_value *v = syncproto_kv_get(kv, key);

	if (v == NULL || v->type == SYNCPROTO_NIL)
		return 0;
	if ((*out = syncproto_get_cstr(v)) == NULL)
		return err_set(err, ERR_INVALID, "%s: expected a string without NUL", key);
	return 1;
}

int
syncproto_kv_list(const struct syncproto_value *kv, const char *key,
	const struct syncproto_value **out, struct err *err)
{
	const struct syncproto_value *v = syncproto_kv_get(kv, key);

	if (v == NULL || v->type == SYNCPROTO_NIL)
		return 0;
	if (v->type != SYNCPROTO_LIST)
		return err_set(err, ERR_INVALID, "%s: expected a list", key);
	*out = v;
	return 1;
}

static const char *const code_names[] = {
	[ERR_NONE] = NULL,
	[ERR_TEMP] = "TEMP",
	[ERR_PERM] = "PERM",
	[ERR_NOTFOUND] = "NOTFOUND",
	[ERR_EXISTS] = "EXISTS",
	[ERR_INVALID] = "INVALID",
	[ERR_NOSPACE] = "NOSPACE",
	[ERR_QUOTA] = "QUOTA",
	[ERR_TOOBIG] = "TOOBIG",
	[ERR_CORRUPT] = "CORRUPT",
	[ERR_FENCED] = "FENCED",
	[ERR_CONFLICT] = "CONFLICT",
	[ERR_DAMAGED] = "DAMAGED",
};
#define NCODES (sizeof(code_names) / sizeof(code_names[0]))

const char *
syncproto_code_name(enum err_kind kind)
{
	if ((size_t)kind < NCODES)
		return code_names[kind];
	return "TEMP";
}

enum err_kind
syncproto_code_kind(const char *name)
{
	for (size_t i = 1; i < NCODES; i++)
		if (code_names[i] != NULL && str_eq_ci(name, code_names[i]))
			return (enum err_kind)i;
	return ERR_NONE;
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */

/*
 * Argument signatures, one letter per argument:
 *   a atom          s text (any string form)    u user name
 *   h UNIQUEID      g GUID                      n non-negative number
 *   k kv-list       G list of GUIDs             b body (string or literal)
 */
static const struct {
	enum syncproto_cmd cmd;
	const char *word1, *word2;   /* word2 NULL: one-word command */
	const char *sig;
} commands[] = {
	{ SYNCPROTO_CMD_NOOP, "NOOP", NULL, "" },
	{ SYNCPROTO_CMD_LOGOUT, "LOGOUT", NULL, "" },
	{ SYNCPROTO_CMD_STARTTLS, "STARTTLS", NULL, "" },
	{ SYNCPROTO_CMD_AUTHENTICATE, "AUTHENTICATE", NULL, "as" },
	{ SYNCPROTO_CMD_COMPRESS, "COMPRESS", NULL, "a" },
	{ SYNCPROTO_CMD_HELLO, "HELLO", NULL, "k" },
	{ SYNCPROTO_CMD_GET_USERS, "GET", "USERS", "" },
	{ SYNCPROTO_CMD_GET_USER, "GET", "USER", "u" },
	{ SYNCPROTO_CMD_GET_RECORDS, "GET", "RECORDS", "uhn" },
	{ SYNCPROTO_CMD_GET_BLOB, "GET", "BLOB", "ug" },
	{ SYNCPROTO_CMD_RESERVE, "RESERVE", NULL, "uG" },
	{ SYNCPROTO_CMD_UPLOAD, "UPLOAD", NULL, "ugb" },
	{ SYNCPROTO_CMD_APPLY_MAILBOX, "APPLY", "MAILBOX", "uk" },
	{ SYNCPROTO_CMD_APPLY_RENAME, "APPLY", "RENAME", "uk" },
	{ SYNCPROTO_CMD_APPLY_DELETE, "APPLY", "DELETE", "uk" },
	{ SYNCPROTO_CMD_APPLY_SEEN, "APPLY", "SEEN", "uk" },
	{ SYNCPROTO_CMD_APPLY_SUB, "APPLY", "SUB", "uk" },
	{ SYNCPROTO_CMD_APPLY_USER, "APPLY", "USER", "uk" },
	{ SYNCPROTO_CMD_APPLY_UNUSER, "APPLY", "UNUSER", "uk" },
	{ SYNCPROTO_CMD_APPLY_PASSWORD, "APPLY", "PASSWORD", "uk" },
	{ SYNCPROTO_CMD_PROMOTE, "PROMOTE", NULL, "n" },
};
#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char *const command_names[] = {
	[SYNCPROTO_CMD_NOOP] = "NOOP",
	[SYNCPROTO_CMD_LOGOUT] = "LOGOUT",
	[SYNCPROTO_CMD_STARTTLS] = "STARTTLS",
	[SYNCPROTO_CMD_AUTHENTICATE] = "AUTHENTICATE",
	[SYNCPROTO_CMD_COMPRESS] = "COMPRESS",
	[SYNCPROTO_CMD_HELLO] = "HELLO",
	[SYNCPROTO_CMD_GET_USERS] = "GET USERS",
	[SYNCPROTO_CMD_GET_USER] = "GET USER",
	[SYNCPROTO_CMD_GET_RECORDS] = "GET RECORDS",
	[SYNCPROTO_CMD_GET_BLOB] = "GET BLOB",
	[SYNCPROTO_CMD_RESERVE] = "RESERVE",
	[SYNCPROTO_CMD_UPLOAD] = "UPLOAD",
	[SYNCPROTO_CMD_APPLY_MAILBOX] = "APPLY MAILBOX",
	[SYNCPROTO_CMD_APPLY_RENAME] = "APPLY RENAME",
	[SYNCPROTO_CMD_APPLY_DELETE] = "APPLY DELETE",
	[SYNCPROTO_CMD_APPLY_SEEN] = "APPLY SEEN",
	[SYNCPROTO_CMD_APPLY_SUB] = "APPLY SUB",
	[SYNCPROTO_CMD_APPLY_USER] = "APPLY USER",
	[SYNCPROTO_CMD_APPLY_UNUSER] = "APPLY UNUSER",
	[SYNCPROTO_CMD_APPLY_PASSWORD] = "APPLY PASSWORD",
	[SYNCPROTO_CMD_PROMOTE] = "PROMOTE",
};

static bool
user_ok(const struct syncproto_value *v)
{
	if (!syncproto_is_text(v) || v->len == 0 || v->len > 255)
		return false;
	for (size_t i = 0; i < v->len; i++) {
		unsigned char c = (unsigned char)v->str[i];
		if (c < 0x20 || c == 0x7f)
			return false;
	}
	return true;
}

static int
check_arg(char sig, const struct syncproto_value *v, size_t argno, struct err *err)
{
	switch (sig) {
	case 'a':
		if (v->type == SYNCPROTO_ATOM)
			return 0;
		return err_set(err, ERR_INVALID, "argument %zu: expected an atom", argno);
	case 's':
	case 'b':
		if (syncproto_is_text(v))
			return 0;
		return err_set(err, ERR_INVALID, "argument %zu: expected a string", argno);
	case 'u':
		if (user_ok(v))
			return 0;
		return err_set(err, ERR_INVALID, "argument %zu: expected a user name", argno);
	case 'h':
		if (syncproto_is_hex(v, 32))
			return 0;
		return err_set(err, ERR_INVALID, "argument %zu: expected a uniqueid (32 hex digits)",
			argno);
	case 'g':
		if (syncproto_is_hex(v, 40))
			return 0;
		return err_set(err, ERR_INVALID, "argument %zu: expected a GUID (40 hex digits)",
			argno);
	case 'n':
		if (v->type == SYNCPROTO_NUMBER && !v->neg)
			return 0;
		return err_set(err, ERR_INVALID, "argument %zu: expected a number", argno);
	case 'k':
		if (syncproto_kv_check(v, err) < 0) {
			err_prefix(err, "argument %zu", argno);
			return -1;
		}
		return 0;
	case 'G':
		if (v->type != SYNCPROTO_LIST)
			return err_set(err, ERR_INVALID, "argument %zu: expected a list of GUIDs", argno);
		for (size_t i = 0; i < v->n; i++)
			if (!syncproto_is_hex(&v->items[i], 40))
				return err_set(err, ERR_INVALID, "argument %zu: item %zu is not a GUID",
					argno, i + 1);
		return 0;
	}
	assert(!"bad signature letter");
	return -1;
}

static bool
tag_ok(const struct syncproto_value *v)
{
	if (v == NULL || (v->type != SYNCPROTO_ATOM && v->type != SYNCPROTO_NUMBER))
		return false;
	if (v->len == 0 || v->len > SYNCPROTO_TAG_MAX)
		return false;
	return !(v->len == 1 && (v->str[0] == '*' || v->str[0] == '+'));
}

int
syncproto_command_parse(const struct syncproto_value *frame, struct syncproto_command *cmd,
	struct err *err)
{
	const struct syncproto_value *w1, *w2;
	size_t first;

	memset(cmd, 0, sizeof(*cmd));
	if (frame == NULL || frame->type != SYNCPROTO_LIST || frame->n == 0)
		return err_set(err, ERR_INVALID, "empty command");
	if (!tag_ok(&frame->items[0]))
		return err_set(err, ERR_INVALID, "bad tag");
	cmd->tag = frame->items[0].str;
	if (frame->n < 2 || frame->items[1].type != SYNCPROTO_ATOM)
		return err_set(err, ERR_INVALID, "missing command name");
	w1 = &frame->items[1];
	w2 = frame->n > 2 ? &frame->items[2] : NULL;
	for (size_t i = 0; i < NCOMMANDS; i++) {
		const char *sig = commands[i].sig;
		size_t nsig = strlen(sig);

		if (!str_eq_ci(w1->str, commands[i].word1))
			continue;
		if (commands[i].word2 != NULL && !syncproto_is_atom(w2, commands[i].word2))
			continue;
		first = commands[i].word2 != NULL ? 3 : 2;
		cmd->cmd = commands[i].cmd;
		cmd->name = command_names[commands[i].cmd];
		if (frame->n - first != nsig)
			return err_set(err, ERR_INVALID, "%s takes %zu argument%s, got %zu", cmd->name,
				nsig, nsig == 1 ? "" : "s", frame->n - first);
		cmd->args = frame->items + first;
		cmd->nargs = nsig;
		for (size_t k = 0; k < nsig; k++) {
			if (check_arg(sig[k], &cmd->args[k], k + 1, err) < 0) {
				err_prefix(err, "%s", cmd->name);
				return -1;
			}
		}
		return 0;
	}
	/* atoms are printable and without spaces: safe to quote back */
	if (w2 != NULL && w2->type == SYNCPROTO_ATOM &&
	    (str_eq_ci(w1->str, "GET") || str_eq_ci(w1->str, "APPLY")))
		return err_set(err, ERR_INVALID, "unknown command %.32s %.32s", w1->str, w2->str);
	return err_set(err, ERR_INVALID, "unknown command %.32s", w1->str);
}

/* ------------------------------------------------------------------ */
/* Responses                                                           */

int
syncproto_response_parse(const struct syncproto_value *frame, struct syncproto_response *r,
	struct err *err)
{
	const struct syncproto_value *t, *s;
	size_t i;

	memset(r, 0, sizeof(*r));
	if (frame == NULL || frame->type != SYNCPROTO_LIST || frame->n == 0)
		return err_set(err, ERR_INVALID, "empty response");
	t = &frame->items[0];
	if (syncproto_is_atom(t, "+")) {
		r->kind = SYNCPROTO_RESP_CONTINUE;
		if (frame->n > 2 || (frame->n == 2 && syncproto_get_cstr(&frame->items[1]) == NULL))
			return err_set(err, ERR_INVALID, "bad continuation");
		if (frame->n == 2)
			r->text = frame->items[1].str;
		return 0;
	}
	if (!syncproto_is_atom(t, "*") && !tag_ok(t))
		return err_set(err, ERR_INVALID, "bad tag in a response");
	if (frame->n < 2 || frame->items[1].type != SYNCPROTO_ATOM)
		return err_set(err, ERR_INVALID, "response without a status or data name");
	s = &frame->items[1];
	if (syncproto_is_atom(s, "OK"))
		r->kind = SYNCPROTO_RESP_OK;
	else if (syncproto_is_atom(s, "NO"))
		r->kind = SYNCPROTO_RESP_NO;
	else if (syncproto_is_atom(s, "BAD"))
		r->kind = SYNCPROTO_RESP_BAD;
	else if (syncproto_is_atom(s, "BYE"))
		r->kind = SYNCPROTO_RESP_BYE;
	else if (syncproto_is_atom(t, "*")) {
		r->kind = SYNCPROTO_RESP_DATA;
		r->data = s->str;
		r->args = frame->items + 2;
		r->nargs = frame->n - 2;
		return 0;
	} else
		return err_set(err, ERR_INVALID, "unknown status in a tagged response");
	if (!syncproto_is_atom(t, "*"))
		r->tag = t->str;
	i = 2;
	if (i < frame->n && frame->items[i].type == SYNCPROTO_CODE) {
		const struct syncproto_value *c = &frame->items[i];
		if (c->n == 0 || c->items[0].type != SYNCPROTO_ATOM)
			return err_set(err, ERR_INVALID, "response code without a name");
		r->code = c;
		r->code_kind = syncproto_code_kind(c->items[0].str);
		i++;
	}
	if (i < frame->n) {
		if ((r->text = syncproto_get_cstr(&frame->items[i])) == NULL ||
		    frame->items[i].type == SYNCPROTO_NUMBER)
			return err_set(err, ERR_INVALID, "response text is not a string");
		i++;
	}
	if (i != frame->n)
		return err_set(err, ERR_INVALID, "values after the response text");
	return 0;
}

/* ------------------------------------------------------------------ */
/* Encoder                                                             */

void
syncproto_enc_init(struct syncproto_enc *e, struct buf *out, unsigned flags)
{
	e->out = out;
	e->flags = flags;
	e->depth = 0;
	e->brackets = 0;
	e->need_sp = false;
}

static void
sep(struct syncproto_enc *e)
{
	if (e->need_sp)
		buf_putc(e->out, ' ');
	e->need_sp = true;
}

void
syncproto_enc_atom(struct syncproto_enc *e, const char *atom)
{
	assert(atom[0] != '\0');
	for (const char *p = atom; *p; p++)
		assert(atom_char((unsigned char)*p));
	sep(e);
	buf_puts(e->out, atom);
}

void
syncproto_enc_u64(struct syncproto_enc *e, uint64_t n)
{
	sep(e);
	buf_printf(e->out, "%" PRIu64, n);
}

void
syncproto_enc_i64(struct syncproto_enc *e, int64_t n)
{
	sep(e);
	buf_printf(e->out, "%" PRId64, n);
}

void
syncproto_enc_nil(struct syncproto_enc *e)
{
	sep(e);
	buf_puts(e->out, "NIL");
}

void
syncproto_enc_literal(struct syncproto_enc *e, const void *p, size_t n)
{
	sep(e);
	buf_printf(e->out, (e->flags & SYNCPROTO_ENC_LITERAL_PLUS) ? "{%zu+}\r\n" : "{%zu}\r\n", n);
	buf_append(e->out, p, n);
}

void
syncproto_enc_string(struct syncproto_enc *e, const char *s, size_t n)
{
	bool atom = n > 0 && n <= 1024 && !nil_text(s, n) && !number_like(s, n);
	bool quotable = n <= 4096;

	for (size_t i = 0; i < n && (atom || quotable); i++) {
		unsigned char c = (unsigned char)s[i];
		if (!atom_char(c))
			atom = false;
		if (c == '\0' || c == '\r' || c == '\n')
			quotable = false;
	}
	if (atom) {
		sep(e);
		buf_append(e->out, s, n);
		return;
	}
	if (!quotable) {
		syncproto_enc_literal(e, s, n);
		return;
	}
	sep(e);
	buf_putc(e->out, '"');
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			buf_putc(e->out, '\\');
		buf_putc(e->out, s[i]);
	}
	buf_putc(e->out, '"');
}

void
syncproto_enc_cstring(struct syncproto_enc *e, const char *s)
{
	syncproto_enc_string(e, s, strlen(s));
}

void
syncproto_enc_open(struct syncproto_enc *e, char bracket)
{
	assert(bracket == '(' || bracket == '[');
	assert(e->depth < 64);
	sep(e);
	buf_putc(e->out, bracket);
	if (bracket == '[')
		e->brackets |= (uint64_t)1 << e->depth;
	else
		e->brackets &= ~((uint64_t)1 << e->depth);
	e->depth++;
	e->need_sp = false;
}

void
syncproto_enc_close(struct syncproto_enc *e)
{
	assert(e->depth > 0);
	e->depth--;
	buf_putc(e->out, (e->brackets >> e->depth) & 1u ? ']' : ')');
	e->need_sp = true;
}

void
syncproto_enc_key_u64(struct syncproto_enc *e, const char *key, uint64_t n)
{
	syncproto_enc_atom(e, key);
	syncproto_enc_u64(e, n);
}

void
syncproto_enc_key_string(struct syncproto_enc *e, const char *key, const char *s)
{
	syncproto_enc_atom(e, key);
	syncproto_enc_cstring(e, s);
}

void
syncproto_enc_key_quota(struct syncproto_enc *e, const char *key, int64_t q)
{
	syncproto_enc_atom(e, key);
	if (q < 0)
		syncproto_enc_nil(e);
	else
		syncproto_enc_u64(e, (uint64_t)q);
}

void
syncproto_password_digest(const char *hash, char hex[65])
{
	unsigned char md[32];
	unsigned int n = 0;

	EVP_Digest(hash, strlen(hash), md, &n, EVP_sha256(), NULL);
	str_hex(md, n, hex);
}

void
syncproto_enc_value(struct syncproto_enc *e, const struct syncproto_value *v)
{
	switch (v->type) {
	case SYNCPROTO_ATOM:
	case SYNCPROTO_NUMBER:
		sep(e);
		buf_append(e->out, v->str, v->len);
		return;
	case SYNCPROTO_STRING:
	case SYNCPROTO_LITERAL:
		syncproto_enc_string(e, v->str, v->len);
		return;
	case SYNCPROTO_NIL:
		syncproto_enc_nil(e);
		return;
	case SYNCPROTO_LIST:
	case SYNCPROTO_CODE:
		syncproto_enc_open(e, v->type == SYNCPROTO_LIST ? '(' : '[');
		for (size_t i = 0; i < v->n; i++)
			syncproto_enc_value(e, &v->items[i]);
		syncproto_enc_close(e);
		return;
	}
}

void
syncproto_enc_end(struct syncproto_enc *e)
{
	assert(e->depth == 0);
	buf_puts(e->out, "\r\n");
	e->need_sp = false;
}

void
syncproto_put_status(struct buf *out, const char *tag, const char *status, enum err_kind kind,
	const char *detail, const char *text)
{
	struct syncproto_enc e;
	const char *code = syncproto_code_name(kind);

	syncproto_enc_init(&e, out, 0);
	syncproto_enc_atom(&e, tag);
	syncproto_enc_atom(&e, status);
	if (code != NULL) {
		syncproto_enc_open(&e, '[');
		syncproto_enc_atom(&e, code);
		if (detail != NULL)
			syncproto_enc_cstring(&e, detail);
		syncproto_enc_close(&e);
	}
	if (text != NULL)
		syncproto_enc_string(&e, text, strlen(text));
	syncproto_enc_end(&e);
}
