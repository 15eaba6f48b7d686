/*
 * imap_parse.c - the IMAP command parser (see imap_parse.h): a
 * recursive-descent reader over one complete command with its literals,
 * producing struct imap_cmd in an arena.  Pure: no I/O, no store.
 */
#include "imap/imap_parse.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/str.h"
#include "lib/xalloc.h"

/* ------------------------------------------------------------------ */
/* arena                                                               */

struct imap_arena_chunk {
	struct imap_arena_chunk *next;
	size_t size, used;
	max_align_t data[];
};

#define IMAP_ARENA_CHUNK 4096

void *
imap_arena_alloc(struct imap_arena *a, size_t n)
{
	struct imap_arena_chunk *c = a->head;
	size_t need = (n + 15) & ~(size_t)15;

	if (need < n)
		abort();
	if (c == NULL || c->size - c->used < need) {
		size_t sz = need > IMAP_ARENA_CHUNK ? need : IMAP_ARENA_CHUNK;

		c = xmalloc(sizeof(*c) + sz);
		c->size = sz;
		c->used = 0;
		c->next = a->head;
		a->head = c;
	}
	void *p = (char *)c->data + c->used;
	c->used += need;
	a->used += need;
	memset(p, 0, n);
	return p;
}

char *
imap_arena_strndup(struct imap_arena *a, const char *s, size_t n)
{
	char *p = imap_arena_alloc(a, n + 1);

	if (n > 0)
		memcpy(p, s, n);
	p[n] = '\0';
	return p;
}

void
imap_arena_free(struct imap_arena *a)
{
	struct imap_arena_chunk *c = a->head, *next;

	while (c != NULL) {
		next = c->next;
		free(c);
		c = next;
	}
	a->head = NULL;
	a->used = 0;
}

/* A growable array inside the arena (the old storage is abandoned on
 * growth: at most twice the final size). */
struct imap_vec {
	void *v;
	size_t n, cap, elem;
};

static void *
imap_vec_push(struct imap_arena *a, struct imap_vec *vec)
{
	if (vec->n == vec->cap) {
		size_t ncap = vec->cap ? vec->cap * 2 : 4;
		void *nv = imap_arena_alloc(a, ncap * vec->elem);

		if (vec->n > 0)
			memcpy(nv, vec->v, vec->n * vec->elem);
		vec->v = nv;
		vec->cap = ncap;
	}
	return (char *)vec->v + vec->elem * vec->n++;
}

/* ------------------------------------------------------------------ */
/* the reader                                                          */

struct imap_p {
	const char *b;
	size_t len, pos;
	struct imap_arena *a;
	struct err *err;
	int depth;
	bool failed;
};

static int
imap_p_fail(struct imap_p *p, const char *why)
{
	if (!p->failed) {
		if (p->pos < p->len)
			err_set(p->err, ERR_INVALID, "%s (at octet %zu)", why, p->pos);
		else
			err_set(p->err, ERR_INVALID, "%s (at end of line)", why);
	}
	p->failed = true;
	return -1;
}

static bool
imap_p_eol(const struct imap_p *p)
{
	return p->pos >= p->len;
}

static int
imap_p_peek(const struct imap_p *p)
{
	return p->pos < p->len ? (unsigned char)p->b[p->pos] : -1;
}

static int
imap_p_sp(struct imap_p *p)
{
	if (imap_p_peek(p) != ' ')
		return imap_p_fail(p, "expected a space");
	p->pos++;
	return 0;
}

static bool
imap_p_accept(struct imap_p *p, char c)
{
	if (imap_p_peek(p) == (unsigned char)c) {
		p->pos++;
		return true;
	}
	return false;
}

static int
imap_p_expect(struct imap_p *p, char c)
{
	if (!imap_p_accept(p, c)) {
		char why[32];

		snprintf(why, sizeof(why), "expected '%c'", c);
		return imap_p_fail(p, why);
	}
	return 0;
}

/* atom-specials: ( ) { SP CTL % * " \ ] ; 8-bit is not an atom char either */
static bool
imap_atom_char(int c)
{
	if (c <= 0x20 || c >= 0x7f)
		return false;
	switch (c) {
	case '(': case ')': case '{': case '%': case '*': case '"': case '\\': case ']':
		return false;
	default:
		return true;
	}
}

static bool
imap_astring_char(int c)
{
	return imap_atom_char(c) || c == ']';
}

static bool
imap_list_char(int c)
{
	return imap_atom_char(c) || c == '%' || c == '*' || c == ']';
}

/* The run of characters accepted by cls starting at pos. */
static size_t
imap_p_span(const struct imap_p *p, bool (*cls)(int))
{
	size_t i = p->pos;

	while (i < p->len && cls((unsigned char)p->b[i]))
		i++;
	return i - p->pos;
}

/* Match a keyword (case-insensitive) followed by a non-atom character. */
static bool
imap_p_word(struct imap_p *p, const char *w)
{
	size_t n = strlen(w);

	if (p->len - p->pos < n || strncasecmp(p->b + p->pos, w, n) != 0)
		return false;
	/* the word must end here: '[' ends it too (BODY[...]) */
	if (p->pos + n < p->len && imap_atom_char((unsigned char)p->b[p->pos + n]) &&
	    p->b[p->pos + n] != '[')
		return false;
	p->pos += n;
	return true;
}

/* An atom (copied, NUL-terminated). */
static const char *
imap_p_atom(struct imap_p *p, struct imap_str *s)
{
	size_t n = imap_p_span(p, imap_atom_char);

	if (n == 0) {
		imap_p_fail(p, "expected an atom");
		return NULL;
	}
	s->s = imap_arena_strndup(p->a, p->b + p->pos, n);
	s->len = n;
	p->pos += n;
	return s->s;
}

static int
imap_p_number64(struct imap_p *p, uint64_t max, uint64_t *v)
{
	uint64_t x = 0;
	size_t start = p->pos;

	while (p->pos < p->len && p->b[p->pos] >= '0' && p->b[p->pos] <= '9') {
		unsigned d = (unsigned)(p->b[p->pos] - '0');

		if (x > (max - d) / 10)
			return imap_p_fail(p, "number too large");
		x = x * 10 + d;
		p->pos++;
	}
	if (p->pos == start)
		return imap_p_fail(p, "expected a number");
	*v = x;
	return 0;
}

static int
imap_p_number(struct imap_p *p, uint32_t *v)
{
	uint64_t x;

	if (imap_p_number64(p, UINT32_MAX, &x) < 0)
		return -1;
	*v = (uint32_t)x;
	return 0;
}

static int
imap_p_nznumber(struct imap_p *p, uint32_t *v)
{
	if (imap_p_number(p, v) < 0)
		return -1;
	if (*v == 0)
		return imap_p_fail(p, "expected a non-zero number");
	return 0;
}

/* mod-sequence-value: 1*DIGIT up to 2^63-1 */
static int
imap_p_modseq(struct imap_p *p, uint64_t *v)
{
	return imap_p_number64(p, (uint64_t)INT64_MAX, v);
}

/* A quoted string (unescaped copy). */
static int
imap_p_quoted(struct imap_p *p, struct imap_str *s)
{
	size_t i, n = 0;
	char *out;

	if (!imap_p_accept(p, '"'))
		return imap_p_fail(p, "expected a quoted string");
	/* first pass: find the end and the length */
	for (i = p->pos; i < p->len; i++) {
		char c = p->b[i];

		if (c == '"')
			break;
		if (c == '\r' || c == '\n' || c == '\0')
			return imap_p_fail(p, "CR, LF or NUL in a quoted string");
		if (c == '\\') {
			i++;
			if (i >= p->len || (p->b[i] != '"' && p->b[i] != '\\'))
				return imap_p_fail(p, "bad escape in a quoted string");
		}
		n++;
	}
	if (i >= p->len)
		return imap_p_fail(p, "unterminated quoted string");
	out = imap_arena_alloc(p->a, n + 1);
	n = 0;
	for (i = p->pos; p->b[i] != '"'; i++) {
		if (p->b[i] == '\\')
			i++;
		out[n++] = p->b[i];
	}
	out[n] = '\0';
	p->pos = i + 1;
	s->s = out;
	s->len = n;
	return 0;
}

/* A literal: "{n}" or "{n+}" CRLF n octets.  copy=false points into the
 * input (the APPEND message). */
static int
imap_p_literal(struct imap_p *p, struct imap_str *s, bool copy)
{
	uint64_t n;

	if (!imap_p_accept(p, '{'))
		return imap_p_fail(p, "expected a literal");
	if (imap_p_number64(p, UINT32_MAX, &n) < 0)
		return -1;
	imap_p_accept(p, '+');
	if (imap_p_expect(p, '}') < 0)
		return -1;
	if (p->len - p->pos < 2 || p->b[p->pos] != '\r' || p->b[p->pos + 1] != '\n')
		return imap_p_fail(p, "a literal must end its line");
	p->pos += 2;
	if (p->len - p->pos < n)
		return imap_p_fail(p, "literal shorter than announced");
	if (copy)
		s->s = imap_arena_strndup(p->a, p->b + p->pos, (size_t)n);
	else
		s->s = p->b + p->pos;
	s->len = (size_t)n;
	p->pos += (size_t)n;
	return 0;
}

static int
imap_p_string(struct imap_p *p, struct imap_str *s)
{
	int c = imap_p_peek(p);

	if (c == '"')
		return imap_p_quoted(p, s);
	if (c == '{')
		return imap_p_literal(p, s, true);
	return imap_p_fail(p, "expected a string");
}

static int
imap_p_astring(struct imap_p *p, struct imap_str *s)
{
	int c = imap_p_peek(p);
	size_t n;

	if (c == '"' || c == '{')
		return imap_p_string(p, s);
	n = imap_p_span(p, imap_astring_char);
	if (n == 0)
		return imap_p_fail(p, "expected an atom or a string");
	s->s = imap_arena_strndup(p->a, p->b + p->pos, n);
	s->len = n;
	p->pos += n;
	return 0;
}

/* nstring: string / NIL (s->s NULL) */
static int
imap_p_nstring(struct imap_p *p, struct imap_str *s)
{
	if (imap_p_word(p, "NIL")) {
		s->s = NULL;
		s->len = 0;
		return 0;
	}
	return imap_p_string(p, s);
}

/* list-mailbox: 1*list-char / string */
static int
imap_p_list_mailbox(struct imap_p *p, struct imap_str *s)
{
	int c = imap_p_peek(p);
	size_t n;

	if (c == '"' || c == '{')
		return imap_p_string(p, s);
	n = imap_p_span(p, imap_list_char);
	if (n == 0)
		return imap_p_fail(p, "expected a mailbox pattern");
	s->s = imap_arena_strndup(p->a, p->b + p->pos, n);
	s->len = n;
	p->pos += n;
	return 0;
}

/* ---- sequence sets ---- */

static int
imap_p_seqnum(struct imap_p *p, uint32_t *v)
{
	if (imap_p_accept(p, '*')) {
		*v = IMAP_STAR;
		return 0;
	}
	if (imap_p_peek(p) < '0' || imap_p_peek(p) > '9')
		return imap_p_fail(p, "bad sequence set");
	return imap_p_nznumber(p, v);
}

static int
imap_p_seqset(struct imap_p *p, struct imap_seqset *set)
{
	struct imap_vec v = { NULL, 0, 0, sizeof(struct imap_range) };

	do {
		struct imap_range *r = imap_vec_push(p->a, &v);

		if (imap_p_seqnum(p, &r->lo) < 0)
			return imap_p_fail(p, "bad sequence set");
		r->hi = r->lo;
		if (imap_p_accept(p, ':') && imap_p_seqnum(p, &r->hi) < 0)
			return imap_p_fail(p, "bad sequence set");
	} while (imap_p_accept(p, ','));
	set->r = v.v;
	set->n = v.n;
	return 0;
}

static int
imap_range_cmp(const void *a, const void *b)
{
	const struct imap_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

size_t
imap_seqset_resolve(const struct imap_seqset *set, uint32_t star, struct imap_range *out)
{
	size_t i, n = 0, m = 0;

	for (i = 0; i < set->n; i++) {
		uint32_t lo = set->r[i].lo == IMAP_STAR ? star : set->r[i].lo;
		uint32_t hi = set->r[i].hi == IMAP_STAR ? star : set->r[i].hi;

		if (lo > hi) {
			uint32_t t = lo;
			lo = hi;
			hi = t;
		}
		if (lo == 0)
			lo = 1;
		if (hi == 0 || lo > star)
			continue;
		if (hi > star)
			hi = star;
		out[n].lo = lo;
		out[n].hi = hi;
		n++;
	}
	if (n > 1)
		qsort(out, n, sizeof(*out), imap_range_cmp);
	for (i = 0; i < n; i++) {
		if (m > 0 && (uint64_t)out[i].lo <= (uint64_t)out[m - 1].hi + 1) {
			if (out[i].hi > out[m - 1].hi)
				out[m - 1].hi = out[i].hi;
		} else {
			out[m++] = out[i];
		}
	}
	return m;
}

bool
imap_seqset_contains(const struct imap_range *r, size_t n, uint32_t v)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (r[mid].hi < v)
			lo = mid + 1;
		else if (r[mid].lo > v)
			hi = mid;
		else
			return true;
	}
	return false;
}

/* ---- dates ---- */

static const char *const imap_months[12] = {
	"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
};

/* days from 1970-01-01 to y-m-d (proleptic Gregorian) */
static int64_t
imap_days_from_civil(int64_t y, unsigned m, unsigned d)
{
	y -= m <= 2;
	const int64_t era = (y >= 0 ? y : y - 399) / 400;
	const unsigned yoe = (unsigned)(y - era * 400);
	const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + (int64_t)doe - 719468;
}

static bool
imap_valid_day(int y, int m, int d)
{
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
		return false;
	if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return false;
	return true;
}

/* "d-Mon-yyyy" at s; returns chars consumed or 0. */
static size_t
imap_scan_date(const char *s, size_t n, int *y, int *m, int *d)
{
	size_t i = 0;
	int day = 0, year = 0, k;

	if (i < n && s[i] == ' ')
		i++;   /* date-day-fixed: SP DIGIT */
	for (k = 0; k < 2 && i < n && s[i] >= '0' && s[i] <= '9'; k++)
		day = day * 10 + (s[i++] - '0');
	if (k == 0 || i >= n || s[i] != '-')
		return 0;
	i++;
	if (n - i < 4)
		return 0;
	for (k = 0; k < 12; k++)
		if (strncasecmp(s + i, imap_months[k], 3) == 0)
			break;
	if (k == 12 || s[i + 3] != '-')
		return 0;
	*m = k + 1;
	i += 4;
	for (k = 0; k < 4; k++) {
		if (i >= n || s[i] < '0' || s[i] > '9')
			return 0;
		year = year * 10 + (s[i++] - '0');
	}
	if (year < 1900 || !imap_valid_day(year, *m, day))
		return 0;
	*y = year;
	*d = day;
	return i;
}

int64_t
imap_parse_date(const char *s, size_t n)
{
	int y, m, d;
	size_t k = imap_scan_date(s, n, &y, &m, &d);

	if (k == 0 || k != n || s[0] == ' ')
		return -1;
	return imap_days_from_civil(y, (unsigned)m, (unsigned)d);
}

int
imap_parse_datetime(const char *s, size_t n, int64_t *t_r)
{
	int y, m, d, hh, mm, ss, zh, zm, sign;
	size_t i = imap_scan_date(s, n, &y, &m, &d);

	if (i == 0 || n - i != 15)
		return -1;
	s += i;
	/* " hh:mm:ss +zzzz" */
	if (s[0] != ' ' || s[3] != ':' || s[6] != ':' || s[9] != ' ' ||
	    (s[10] != '+' && s[10] != '-'))
		return -1;
	for (size_t k = 1; k < 15; k++)
		if (k != 3 && k != 6 && k != 9 && k != 10 && (s[k] < '0' || s[k] > '9'))
			return -1;
	hh = (s[1] - '0') * 10 + (s[2] - '0');
	mm = (s[4] - '0') * 10 + (s[5] - '0');
	ss = (s[7] - '0') * 10 + (s[8] - '0');
	sign = s[10] == '-' ? -1 : 1;
	zh = (s[11] - '0') * 10 + (s[12] - '0');
	zm = (s[13] - '0') * 10 + (s[14] - '0');
	if (hh > 23 || mm > 59 || ss > 60 || zm > 59)
		return -1;
	*t_r = imap_days_from_civil(y, (unsigned)m, (unsigned)d) * 86400 + hh * 3600 + mm * 60 + ss -
	       sign * (zh * 3600 + zm * 60);
	return 0;
}

/* date: date-text / DQUOTE date-text DQUOTE */
static int
imap_p_date(struct imap_p *p, int64_t *days)
{
	bool q = imap_p_accept(p, '"');
	size_t start = p->pos;

	while (p->pos < p->len && p->b[p->pos] != ' ' && p->b[p->pos] != '"' && p->b[p->pos] != ')')
		p->pos++;
	*days = imap_parse_date(p->b + start, p->pos - start);
	if (*days < 0)
		return imap_p_fail(p, "bad date (expected d-Mon-yyyy)");
	if (q && imap_p_expect(p, '"') < 0)
		return -1;
	return 0;
}

/* ---- flags ---- */

/* flag: "\" atom / atom; appended to out with a separating space. */
static int
imap_p_flag(struct imap_p *p, struct imap_vec *out, bool allow_star)
{
	size_t start = p->pos, n;

	if (imap_p_accept(p, '\\')) {
		if (allow_star && imap_p_accept(p, '*'))
			goto done;
		n = imap_p_span(p, imap_atom_char);
		if (n == 0)
			return imap_p_fail(p, "bad flag");
		p->pos += n;
	} else {
		n = imap_p_span(p, imap_atom_char);
		if (n == 0)
			return imap_p_fail(p, "bad flag");
		p->pos += n;
	}
done:
	if (out->n > 0)
		*(char *)imap_vec_push(p->a, out) = ' ';
	for (size_t i = start; i < p->pos; i++)
		*(char *)imap_vec_push(p->a, out) = p->b[i];
	return 0;
}

static const char *
imap_vec_cstr(struct imap_arena *a, struct imap_vec *v)
{
	*(char *)imap_vec_push(a, v) = '\0';
	return v->v;
}

/* "(" [flag *(SP flag)] ")" */
static int
imap_p_flag_list(struct imap_p *p, const char **flags)
{
	struct imap_vec v = { NULL, 0, 0, 1 };

	if (imap_p_expect(p, '(') < 0)
		return -1;
	if (!imap_p_accept(p, ')')) {
		do {
			if (imap_p_flag(p, &v, false) < 0)
				return -1;
		} while (imap_p_accept(p, ' '));
		if (imap_p_expect(p, ')') < 0)
			return -1;
	}
	*flags = imap_vec_cstr(p->a, &v);
	return 0;
}

/* ------------------------------------------------------------------ */
/* search                                                              */

static struct imap_search_key *
imap_skey_new(struct imap_p *p, enum imap_skey kind)
{
	struct imap_search_key *k = imap_arena_alloc(p->a, sizeof(*k));

	k->kind = kind;
	return k;
}

static struct imap_search_key *imap_p_search_key(struct imap_p *p, struct imap_search *srch);

static struct imap_search_key *
imap_p_search_list(struct imap_p *p, struct imap_search *srch, bool paren)
{
	struct imap_search_key *and = imap_skey_new(p, IMAP_SK_AND);
	struct imap_vec v = { NULL, 0, 0, sizeof(struct imap_search_key *) };

	for (;;) {
		struct imap_search_key *k = imap_p_search_key(p, srch);

		if (k == NULL)
			return NULL;
		*(struct imap_search_key **)imap_vec_push(p->a, &v) = k;
		if (paren && imap_p_peek(p) == ')')
			break;
		if (paren && imap_p_eol(p)) {
			imap_p_fail(p, "expected ')'");
			return NULL;
		}
		if (!paren && imap_p_eol(p))
			break;
		if (imap_p_sp(p) < 0)
			return NULL;
	}
	and->kids = v.v;
	and->nkids = v.n;
	return and;
}

static const struct {
	const char *name;
	enum imap_skey kind;
	char arg;   /* 0 none, 's' astring, 'd' date, 'n' number, 'k' keyword */
} imap_skeys[] = {
	{ "ALL", IMAP_SK_ALL, 0 },
	{ "ANSWERED", IMAP_SK_ANSWERED, 0 },
	{ "BCC", IMAP_SK_BCC, 's' },
	{ "BEFORE", IMAP_SK_BEFORE, 'd' },
	{ "BODY", IMAP_SK_BODY, 's' },
	{ "CC", IMAP_SK_CC, 's' },
	{ "DELETED", IMAP_SK_DELETED, 0 },
	{ "DRAFT", IMAP_SK_DRAFT, 0 },
	{ "FLAGGED", IMAP_SK_FLAGGED, 0 },
	{ "FROM", IMAP_SK_FROM, 's' },
	{ "KEYWORD", IMAP_SK_KEYWORD, 'k' },
	{ "LARGER", IMAP_SK_LARGER, 'n' },
	{ "NEW", IMAP_SK_NEW, 0 },
	{ "OLD", IMAP_SK_OLD, 0 },
	{ "ON", IMAP_SK_ON, 'd' },
	{ "RECENT", IMAP_SK_RECENT, 0 },
	{ "SEEN", IMAP_SK_SEEN, 0 },
	{ "SENTBEFORE", IMAP_SK_SENTBEFORE, 'd' },
	{ "SENTON", IMAP_SK_SENTON, 'd' },
	{ "SENTSINCE", IMAP_SK_SENTSINCE, 'd' },
	{ "SINCE", IMAP_SK_SINCE, 'd' },
	{ "SMALLER", IMAP_SK_SMALLER, 'n' },
	{ "SUBJECT", IMAP_SK_SUBJECT, 's' },
	{ "TEXT", IMAP_SK_TEXT, 's' },
	{ "TO", IMAP_SK_TO, 's' },
	{ "UNANSWERED", IMAP_SK_UNANSWERED, 0 },
	{ "UNDELETED", IMAP_SK_UNDELETED, 0 },
	{ "UNDRAFT", IMAP_SK_UNDRAFT, 0 },
	{ "UNFLAGGED", IMAP_SK_UNFLAGGED, 0 },
	{ "UNKEYWORD", IMAP_SK_UNKEYWORD, 'k' },
	{ "UNSEEN", IMAP_SK_UNSEEN, 0 },
};

static struct imap_search_key *
imap_p_search_key(struct imap_p *p, struct imap_search *srch)
{
	struct imap_search_key *k;
	int c = imap_p_peek(p);
	size_t i;

	if (c == '(') {
		if (++p->depth > IMAP_PARSE_MAX_DEPTH) {
			imap_p_fail(p, "search keys nested too deeply");
			return NULL;
		}
		p->pos++;
		k = imap_p_search_list(p, srch, true);
		if (k == NULL || imap_p_expect(p, ')') < 0)
			return NULL;
		p->depth--;
		return k;
	}
	if (c == '*' || (c >= '0' && c <= '9')) {
		k = imap_skey_new(p, IMAP_SK_SEQSET);
		if (imap_p_seqset(p, &k->set) < 0)
			return NULL;
		return k;
	}
	bool is_not = imap_p_word(p, "NOT");
	bool is_or = !is_not && imap_p_word(p, "OR");

	if (is_not || is_or) {

		if (++p->depth > IMAP_PARSE_MAX_DEPTH) {
			imap_p_fail(p, "search keys nested too deeply");
			return NULL;
		}
		k = imap_skey_new(p, is_or ? IMAP_SK_OR : IMAP_SK_NOT);
		k->nkids = is_or ? 2 : 1;
		k->kids = imap_arena_alloc(p->a, k->nkids * sizeof(*k->kids));
		for (i = 0; i < k->nkids; i++) {
			if (imap_p_sp(p) < 0)
				return NULL;
			k->kids[i] = imap_p_search_key(p, srch);
			if (k->kids[i] == NULL)
				return NULL;
		}
		p->depth--;
		return k;
	}
	if (imap_p_word(p, "UID")) {
		k = imap_skey_new(p, IMAP_SK_UID);
		if (imap_p_sp(p) < 0 || imap_p_seqset(p, &k->set) < 0)
			return NULL;
		return k;
	}
	if (imap_p_word(p, "HEADER")) {
		struct imap_str f;

		k = imap_skey_new(p, IMAP_SK_HEADER);
		if (imap_p_sp(p) < 0 || imap_p_astring(p, &f) < 0 || imap_p_sp(p) < 0 ||
		    imap_p_astring(p, &k->str) < 0)
			return NULL;
		if (f.len == 0 || memchr(f.s, ':', f.len) != NULL || strlen(f.s) != f.len) {
			imap_p_fail(p, "bad header field name");
			return NULL;
		}
		k->field = f.s;
		return k;
	}
	if (imap_p_word(p, "MODSEQ")) {
		k = imap_skey_new(p, IMAP_SK_MODSEQ);
		if (imap_p_sp(p) < 0)
			return NULL;
		if (imap_p_peek(p) == '"') {
			struct imap_str entry, type;

			/* entry-name SP entry-type-req: accepted and ignored (flags
			 * share the message's modseq here) */
			if (imap_p_quoted(p, &entry) < 0 || imap_p_sp(p) < 0 ||
			    imap_p_atom(p, &type) == NULL || imap_p_sp(p) < 0)
				return NULL;
			if (!str_eq_ci(type.s, "priv") && !str_eq_ci(type.s, "shared") &&
			    !str_eq_ci(type.s, "all")) {
				imap_p_fail(p, "bad MODSEQ entry type");
				return NULL;
			}
		}
		if (imap_p_modseq(p, &k->num) < 0)
			return NULL;
		srch->has_modseq = true;
		return k;
	}
	for (i = 0; i < sizeof(imap_skeys) / sizeof(imap_skeys[0]); i++) {
		if (!imap_p_word(p, imap_skeys[i].name))
			continue;
		k = imap_skey_new(p, imap_skeys[i].kind);
		switch (imap_skeys[i].arg) {
		case 0:
			return k;
		case 's':
			if (imap_p_sp(p) < 0 || imap_p_astring(p, &k->str) < 0)
				return NULL;
			return k;
		case 'd':
			if (imap_p_sp(p) < 0 || imap_p_date(p, &k->date) < 0)
				return NULL;
			return k;
		case 'n': {
			uint32_t v;

			if (imap_p_sp(p) < 0 || imap_p_number(p, &v) < 0)
				return NULL;
			k->num = v;
			return k;
		}
		case 'k':
			if (imap_p_sp(p) < 0 || imap_p_atom(p, &k->str) == NULL)
				return NULL;
			return k;
		}
	}
	imap_p_fail(p, "unknown search key");
	return NULL;
}

static int imap_p_return_opts(struct imap_p *p, struct imap_search *s, struct imap_sort_args *a);

static int
imap_p_search(struct imap_p *p, struct imap_search *s)
{
	if (imap_p_sp(p) < 0)
		return -1;
	if (imap_p_word(p, "RETURN") &&
	    (imap_p_return_opts(p, s, NULL) < 0 || imap_p_sp(p) < 0))
		return -1;
	if (imap_p_word(p, "CHARSET")) {
		struct imap_str cs;

		if (imap_p_sp(p) < 0 || imap_p_astring(p, &cs) < 0 || imap_p_sp(p) < 0)
			return -1;
		s->charset = cs.s;
	}
	s->key = imap_p_search_list(p, s, false);
	return s->key == NULL ? -1 : 0;
}

/* ------------------------------------------------------------------ */
/* sort / thread                                                       */

static const struct {
	const char *name;
	enum imap_sort_key key;
} imap_sort_keys[] = {
	{ "ARRIVAL", IMAP_SORT_ARRIVAL }, { "CC", IMAP_SORT_CC }, { "DATE", IMAP_SORT_DATE },
	{ "FROM", IMAP_SORT_FROM }, { "SIZE", IMAP_SORT_SIZE }, { "SUBJECT", IMAP_SORT_SUBJECT },
	{ "TO", IMAP_SORT_TO }, { "DISPLAYFROM", IMAP_SORT_DISPLAYFROM },
	{ "DISPLAYTO", IMAP_SORT_DISPLAYTO },
};

/* sort-criteria: "(" [REVERSE SP] key *(SP [REVERSE SP] key) ")" */
static int
imap_p_sort_criteria(struct imap_p *p, struct imap_sort_args *a)
{
	if (imap_p_expect(p, '(') < 0)
		return -1;
	do {
		bool rev = false;
		size_t i, nk = sizeof(imap_sort_keys) / sizeof(imap_sort_keys[0]);

		if (a->nkeys == IMAP_SORT_MAX_KEYS)
			return imap_p_fail(p, "too many sort keys");
		if (imap_p_word(p, "REVERSE")) {
			if (imap_p_sp(p) < 0)
				return -1;
			rev = true;
		}
		for (i = 0; i < nk; i++)
			if (imap_p_word(p, imap_sort_keys[i].name))
				break;
		if (i == nk)
			return imap_p_fail(p, "unknown sort key");
		a->keys[a->nkeys] = (unsigned char)imap_sort_keys[i].key;
		a->reverse[a->nkeys++] = rev;
	} while (imap_p_accept(p, ' '));
	return imap_p_expect(p, ')');
}

/* RETURN (MIN MAX COUNT ALL PARTIAL lo:hi) of SORT (RFC 5267) */
/* RETURN (...) of SEARCH (RFC 4731) and of SORT (RFC 5267, which adds
 * PARTIAL lo:hi; a is NULL for SEARCH, where PARTIAL is refused). */
static int
imap_p_return_opts(struct imap_p *p, struct imap_search *s, struct imap_sort_args *a)
{
	s->esearch = true;
	if (imap_p_sp(p) < 0 || imap_p_expect(p, '(') < 0)
		return -1;
	while (!imap_p_accept(p, ')')) {
		if (s->ret != 0 && imap_p_sp(p) < 0)
			return -1;
		if (imap_p_word(p, "MIN"))
			s->ret |= IMAP_SRET_MIN;
		else if (imap_p_word(p, "MAX"))
			s->ret |= IMAP_SRET_MAX;
		else if (imap_p_word(p, "ALL"))
			s->ret |= IMAP_SRET_ALL;
		else if (imap_p_word(p, "COUNT"))
			s->ret |= IMAP_SRET_COUNT;
		else if (a != NULL && imap_p_word(p, "PARTIAL")) {
			if ((s->ret & IMAP_SRET_PARTIAL) || imap_p_sp(p) < 0 ||
			    imap_p_number(p, &a->partial_lo) < 0 || imap_p_expect(p, ':') < 0 ||
			    imap_p_number(p, &a->partial_hi) < 0)
				return imap_p_fail(p, "bad PARTIAL range");
			if (a->partial_lo == 0 || a->partial_hi == 0)
				return imap_p_fail(p, "bad PARTIAL range");
			if (a->partial_lo > a->partial_hi) {
				uint32_t t = a->partial_lo;

				a->partial_lo = a->partial_hi;
				a->partial_hi = t;
			}
			s->ret |= IMAP_SRET_PARTIAL;
		} else
			return imap_p_fail(p, a != NULL ? "unknown SORT RETURN option" :
				"unknown SEARCH RETURN option");
	}
	if (s->ret == 0)
		s->ret = IMAP_SRET_ALL;
	return 0;
}

static int
imap_p_sort_return(struct imap_p *p, struct imap_sort_args *a)
{
	return imap_p_return_opts(p, &a->search, a);
}

/* charset SP search-key *(SP search-key): SORT and THREAD need the charset */
static int
imap_p_charset_keys(struct imap_p *p, struct imap_search *s)
{
	struct imap_str cs;

	if (imap_p_sp(p) < 0 || imap_p_astring(p, &cs) < 0 || imap_p_sp(p) < 0)
		return -1;
	s->charset = cs.s;
	s->key = imap_p_search_list(p, s, false);
	return s->key == NULL ? -1 : 0;
}

static int
imap_p_sort(struct imap_p *p, struct imap_sort_args *a)
{
	if (imap_p_sp(p) < 0)
		return -1;
	if (imap_p_word(p, "RETURN")) {
		if (imap_p_sort_return(p, a) < 0 || imap_p_sp(p) < 0)
			return -1;
	}
	if (imap_p_sort_criteria(p, a) < 0)
		return -1;
	return imap_p_charset_keys(p, &a->search);
}

static int
imap_p_thread(struct imap_p *p, struct imap_sort_args *a)
{
	if (imap_p_sp(p) < 0)
		return -1;
	if (imap_p_word(p, "REFERENCES"))
		a->algo = IMAP_THREAD_REFERENCES;
	else if (imap_p_word(p, "ORDEREDSUBJECT"))
		a->algo = IMAP_THREAD_ORDEREDSUBJECT;
	else
		return imap_p_fail(p, "unknown THREAD algorithm");
	return imap_p_charset_keys(p, &a->search);
}

/* ------------------------------------------------------------------ */
/* fetch                                                               */

static bool
imap_fieldname_atom(const char *s, size_t n)
{
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!imap_astring_char((unsigned char)s[i]))
			return false;
	return true;
}

/* section = "[" [section-spec] "]", then [partial]; fills a and its echo name */
static int
imap_p_section(struct imap_p *p, struct imap_fetch_att *a, struct imap_vec *name)
{
	struct imap_vec path = { NULL, 0, 0, sizeof(uint32_t) };
	size_t start;

	if (imap_p_expect(p, '[') < 0)
		return -1;
	a->sec = IMAP_SEC_BODY;
	start = p->pos;
	while (imap_p_peek(p) >= '1' && imap_p_peek(p) <= '9') {
		uint32_t v;

		if (path.n >= IMAP_SECTION_MAX_PARTS)
			return imap_p_fail(p, "section nested too deeply");
		if (imap_p_nznumber(p, &v) < 0)
			return -1;
		*(uint32_t *)imap_vec_push(p->a, &path) = v;
		if (!imap_p_accept(p, '.'))
			break;
	}
	if (path.n > 0 && p->b[p->pos - 1] != '.' && imap_p_peek(p) != ']')
		return imap_p_fail(p, "bad section");
	a->path = path.v;
	a->npath = path.n;
	bool fnot = imap_p_word(p, "HEADER.FIELDS.NOT");

	if (fnot || imap_p_word(p, "HEADER.FIELDS")) {
		struct imap_vec f = { NULL, 0, 0, sizeof(char *) };

		a->sec = fnot ? IMAP_SEC_HEADER_FIELDS_NOT : IMAP_SEC_HEADER_FIELDS;
		if (imap_p_sp(p) < 0 || imap_p_expect(p, '(') < 0)
			return -1;
		/* echo: the spec up to here, then the names as atoms or quoted */
		for (size_t i = start; i < p->pos; i++)
			*(char *)imap_vec_push(p->a, name) = (char)str_upper_c(p->b[i]);
		do {
			struct imap_str s;

			if (imap_p_astring(p, &s) < 0)
				return -1;
			if (s.len == 0 || strlen(s.s) != s.len || memchr(s.s, ':', s.len) != NULL)
				return imap_p_fail(p, "bad header field name");
			*(const char **)imap_vec_push(p->a, &f) = s.s;
			if (f.n > 1)
				*(char *)imap_vec_push(p->a, name) = ' ';
			bool atom = imap_fieldname_atom(s.s, s.len);
			if (!atom)
				*(char *)imap_vec_push(p->a, name) = '"';
			for (size_t i = 0; i < s.len; i++) {
				if (!atom && (s.s[i] == '"' || s.s[i] == '\\'))
					*(char *)imap_vec_push(p->a, name) = '\\';
				*(char *)imap_vec_push(p->a, name) = s.s[i];
			}
			if (!atom)
				*(char *)imap_vec_push(p->a, name) = '"';
		} while (imap_p_accept(p, ' '));
		if (imap_p_expect(p, ')') < 0)
			return -1;
		*(char *)imap_vec_push(p->a, name) = ')';
		a->fields = f.v;
		a->nfields = f.n;
		if (imap_p_expect(p, ']') < 0)
			return -1;
		*(char *)imap_vec_push(p->a, name) = ']';
		goto partial;
	}
	if (imap_p_word(p, "HEADER"))
		a->sec = IMAP_SEC_HEADER;
	else if (imap_p_word(p, "TEXT"))
		a->sec = IMAP_SEC_TEXT;
	else if (path.n > 0 && imap_p_word(p, "MIME"))
		a->sec = IMAP_SEC_MIME;
	else if (path.n > 0 && p->b[p->pos - 1] == '.')
		return imap_p_fail(p, "bad section");
	if (!imap_p_accept(p, ']'))
		return imap_p_fail(p, "bad section");
	for (size_t i = start; i < p->pos; i++)
		*(char *)imap_vec_push(p->a, name) = (char)str_upper_c(p->b[i]);
partial:
	if (imap_p_accept(p, '<')) {
		char tmp[16];
		int n;

		if (imap_p_peek(p) < '0' || imap_p_peek(p) > '9' || imap_p_number(p, &a->p_off) < 0 ||
		    !imap_p_accept(p, '.') || imap_p_peek(p) < '0' || imap_p_peek(p) > '9' ||
		    imap_p_nznumber(p, &a->p_len) < 0 || !imap_p_accept(p, '>'))
			return imap_p_fail(p, "bad partial <offset.length>");
		a->partial = true;
		n = snprintf(tmp, sizeof(tmp), "<%u>", a->p_off);
		for (int i = 0; i < n; i++)
			*(char *)imap_vec_push(p->a, name) = tmp[i];
	}
	return 0;
}

/* BINARY[part]<partial>, BINARY.PEEK[part]<partial>, BINARY.SIZE[part]
 * (RFC 3516; section-binary = "[" [section-part] "]").  0 parsed, -1
 * error, 1 not a BINARY item. */
static int
imap_p_binary_att(struct imap_p *p, struct imap_fetch_att *a)
{
	struct imap_vec path = { NULL, 0, 0, sizeof(uint32_t) };
	struct imap_vec name = { NULL, 0, 0, 1 };
	const char *echo;

	if (imap_p_word(p, "BINARY.PEEK")) {
		a->kind = IMAP_FA_BINARY;
		a->peek = true;
		echo = "BINARY[";
	} else if (imap_p_word(p, "BINARY.SIZE")) {
		a->kind = IMAP_FA_BINARY_SIZE;
		echo = "BINARY.SIZE[";
	} else if (imap_p_word(p, "BINARY")) {
		a->kind = IMAP_FA_BINARY;
		echo = "BINARY[";
	} else {
		return 1;
	}
	if (imap_p_expect(p, '[') < 0)
		return -1;
	for (const char *e = echo; *e; e++)
		*(char *)imap_vec_push(p->a, &name) = *e;
	while (imap_p_peek(p) != ']') {
		uint32_t v;
		char tmp[16];
		int n;

		if (path.n >= IMAP_SECTION_MAX_PARTS)
			return imap_p_fail(p, "section nested too deeply");
		if (path.n > 0 && imap_p_expect(p, '.') < 0)
			return -1;
		if (imap_p_peek(p) < '1' || imap_p_peek(p) > '9' || imap_p_nznumber(p, &v) < 0)
			return imap_p_fail(p, "bad BINARY section (part numbers only)");
		*(uint32_t *)imap_vec_push(p->a, &path) = v;
		n = snprintf(tmp, sizeof(tmp), "%s%u", path.n > 1 ? "." : "", v);
		for (int i = 0; i < n; i++)
			*(char *)imap_vec_push(p->a, &name) = tmp[i];
	}
	p->pos++;
	*(char *)imap_vec_push(p->a, &name) = ']';
	a->sec = IMAP_SEC_BODY;
	a->path = path.v;
	a->npath = path.n;
	if (a->kind == IMAP_FA_BINARY && imap_p_accept(p, '<')) {
		char tmp[16];
		int n;

		if (imap_p_peek(p) < '0' || imap_p_peek(p) > '9' || imap_p_number(p, &a->p_off) < 0 ||
		    !imap_p_accept(p, '.') || imap_p_peek(p) < '0' || imap_p_peek(p) > '9' ||
		    imap_p_nznumber(p, &a->p_len) < 0 || !imap_p_accept(p, '>'))
			return imap_p_fail(p, "bad partial <offset.length>");
		a->partial = true;
		n = snprintf(tmp, sizeof(tmp), "<%u>", a->p_off);
		for (int i = 0; i < n; i++)
			*(char *)imap_vec_push(p->a, &name) = tmp[i];
	}
	a->name = imap_vec_cstr(p->a, &name);
	return 0;
}

static int
imap_p_fetch_att(struct imap_p *p, struct imap_vec *atts)
{
	struct imap_fetch_att *a = imap_vec_push(p->a, atts);
	static const struct {
		const char *word;
		enum imap_fatt_kind kind;
	} simple[] = {
		{ "ENVELOPE", IMAP_FA_ENVELOPE },
		{ "FLAGS", IMAP_FA_FLAGS },
		{ "INTERNALDATE", IMAP_FA_INTERNALDATE },
		{ "RFC822.HEADER", IMAP_FA_RFC822_HEADER },
		{ "RFC822.SIZE", IMAP_FA_RFC822_SIZE },
		{ "RFC822.TEXT", IMAP_FA_RFC822_TEXT },
		{ "RFC822", IMAP_FA_RFC822 },
		{ "BODYSTRUCTURE", IMAP_FA_BODYSTRUCTURE },
		{ "UID", IMAP_FA_UID },
		{ "MODSEQ", IMAP_FA_MODSEQ },
	};
	struct imap_vec name = { NULL, 0, 0, 1 };
	size_t i;

	for (i = 0; i < sizeof(simple) / sizeof(simple[0]); i++) {
		if (imap_p_word(p, simple[i].word)) {
			if (imap_p_peek(p) == '.' || imap_p_peek(p) == '[')
				return imap_p_fail(p, "unknown fetch item");
			a->kind = simple[i].kind;
			a->name = simple[i].word;
			return 0;
		}
	}
	if (imap_p_peek(p) == 'B' || imap_p_peek(p) == 'b') {
		int rc = imap_p_binary_att(p, a);

		if (rc <= 0)
			return rc;
	}
	if (imap_p_word(p, "BODY.PEEK")) {
		a->peek = true;
		if (imap_p_peek(p) != '[')
			return imap_p_fail(p, "BODY.PEEK needs a section");
	} else if (!imap_p_word(p, "BODY")) {
		return imap_p_fail(p, "unknown fetch item");
	}
	if (imap_p_peek(p) != '[') {
		a->kind = IMAP_FA_BODY;
		a->name = "BODY";
		return 0;
	}
	a->kind = IMAP_FA_SECTION;
	for (const char *s = "BODY["; *s; s++)
		*(char *)imap_vec_push(p->a, &name) = *s;
	if (imap_p_section(p, a, &name) < 0)
		return -1;
	/* the section parser echoed what followed '[' (and the partial) */
	a->name = imap_vec_cstr(p->a, &name);
	return 0;
}

static int
imap_p_fetch(struct imap_p *p, struct imap_fetch *f)
{
	struct imap_vec atts = { NULL, 0, 0, sizeof(struct imap_fetch_att) };

	if (imap_p_sp(p) < 0 || imap_p_seqset(p, &f->set) < 0 || imap_p_sp(p) < 0)
		return -1;
	int macro = imap_p_word(p, "FAST") ? 1 : imap_p_word(p, "ALL") ? 2 :
		imap_p_word(p, "FULL") ? 3 : 0;

	if (macro != 0) {
		static const enum imap_fatt_kind fast[] = { IMAP_FA_FLAGS, IMAP_FA_INTERNALDATE,
			IMAP_FA_RFC822_SIZE };
		static const char *const fastn[] = { "FLAGS", "INTERNALDATE", "RFC822.SIZE" };

		for (size_t i = 0; i < 3; i++) {
			struct imap_fetch_att *a = imap_vec_push(p->a, &atts);
			a->kind = fast[i];
			a->name = fastn[i];
		}
		if (macro >= 2) {
			struct imap_fetch_att *a = imap_vec_push(p->a, &atts);
			a->kind = IMAP_FA_ENVELOPE;
			a->name = "ENVELOPE";
			if (macro == 3) {
				a = imap_vec_push(p->a, &atts);
				a->kind = IMAP_FA_BODY;
				a->name = "BODY";
			}
		}
	} else if (imap_p_accept(p, '(')) {
		do {
			if (imap_p_fetch_att(p, &atts) < 0)
				return -1;
		} while (imap_p_accept(p, ' '));
		if (imap_p_expect(p, ')') < 0)
			return -1;
	} else if (imap_p_fetch_att(p, &atts) < 0) {
		return -1;
	}
	f->atts = atts.v;
	f->natts = atts.n;
	if (imap_p_accept(p, ' ')) {
		if (imap_p_expect(p, '(') < 0)
			return -1;
		do {
			if (imap_p_word(p, "CHANGEDSINCE")) {
				if (imap_p_sp(p) < 0 || imap_p_modseq(p, &f->changedsince) < 0)
					return -1;
				f->has_changedsince = true;
			} else if (imap_p_word(p, "VANISHED")) {
				f->vanished = true;
			} else {
				return imap_p_fail(p, "unknown FETCH modifier");
			}
		} while (imap_p_accept(p, ' '));
		if (imap_p_expect(p, ')') < 0)
			return -1;
		if (f->vanished && !f->has_changedsince)
			return imap_p_fail(p, "VANISHED needs CHANGEDSINCE");
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* other commands                                                      */

static int
imap_p_store(struct imap_p *p, struct imap_store_args *s)
{
	struct imap_vec v = { NULL, 0, 0, 1 };

	if (imap_p_sp(p) < 0 || imap_p_seqset(p, &s->set) < 0 || imap_p_sp(p) < 0)
		return -1;
	if (imap_p_accept(p, '(')) {
		if (!imap_p_word(p, "UNCHANGEDSINCE"))
			return imap_p_fail(p, "unknown STORE modifier");
		if (imap_p_sp(p) < 0 || imap_p_modseq(p, &s->unchangedsince) < 0 ||
		    imap_p_expect(p, ')') < 0 || imap_p_sp(p) < 0)
			return -1;
		s->has_unchangedsince = true;
	}
	if (imap_p_accept(p, '+'))
		s->op = IMAP_STORE_ADD;
	else if (imap_p_accept(p, '-'))
		s->op = IMAP_STORE_REMOVE;
	else
		s->op = IMAP_STORE_REPLACE;
	if (imap_p_word(p, "FLAGS.SILENT"))
		s->silent = true;
	else if (!imap_p_word(p, "FLAGS"))
		return imap_p_fail(p, "expected FLAGS, +FLAGS or -FLAGS");
	if (imap_p_sp(p) < 0)
		return -1;
	if (imap_p_peek(p) == '(')
		return imap_p_flag_list(p, &s->flags);
	do {
		if (imap_p_flag(p, &v, false) < 0)
			return -1;
	} while (imap_p_accept(p, ' '));
	s->flags = imap_vec_cstr(p->a, &v);
	return 0;
}

/* literal / literal8 (RFC 3516 "~{n}"): a pointer into the input */
static int
imap_p_literal_or8(struct imap_p *p, struct imap_str *s, bool *lit8_r)
{
	*lit8_r = imap_p_accept(p, '~');
	if (imap_p_peek(p) != '{')
		return imap_p_fail(p, "expected a literal");
	return imap_p_literal(p, s, false);
}

/* "CATENATE" SP "(" cat-part *(SP cat-part) ")" (RFC 4469);
 * cat-part = "TEXT" SP literal / "URL" SP astring */
static int
imap_p_catenate(struct imap_p *p, struct imap_append_msg *m)
{
	struct imap_vec parts = { NULL, 0, 0, sizeof(struct imap_cat_part) };

	if (imap_p_sp(p) < 0 || imap_p_expect(p, '(') < 0)
		return -1;
	do {
		struct imap_cat_part *cp;
		bool lit8;

		if (parts.n >= IMAP_CATENATE_MAX_PARTS)
			return imap_p_fail(p, "too many CATENATE parts");
		cp = imap_vec_push(p->a, &parts);
		if (imap_p_word(p, "TEXT")) {
			if (imap_p_sp(p) < 0 || imap_p_literal_or8(p, &cp->s, &lit8) < 0)
				return -1;
		} else if (imap_p_word(p, "URL")) {
			cp->url = true;
			if (imap_p_sp(p) < 0 || imap_p_astring(p, &cp->s) < 0)
				return -1;
		} else {
			return imap_p_fail(p, "expected TEXT or URL");
		}
	} while (imap_p_accept(p, ' '));
	if (imap_p_expect(p, ')') < 0)
		return -1;
	m->parts = parts.v;
	m->nparts = parts.n;
	return 0;
}

/* append = "APPEND" SP mailbox 1*(SP [flag-list SP] [date-time SP]
 * (literal / literal8 / catenate))  (RFC 3502, 4469, 3516) */
static int
imap_p_append(struct imap_p *p, struct imap_append_args *ap)
{
	struct imap_vec msgs = { NULL, 0, 0, sizeof(struct imap_append_msg) };

	if (imap_p_sp(p) < 0 || imap_p_astring(p, &ap->mailbox) < 0)
		return -1;
	while (imap_p_accept(p, ' ')) {
		struct imap_append_msg *m;
		struct imap_str msg;

		if (msgs.n >= IMAP_APPEND_MAX_MSGS)
			return imap_p_fail(p, "too many messages in one APPEND");
		m = imap_vec_push(p->a, &msgs);
		if (imap_p_peek(p) == '(') {
			if (imap_p_flag_list(p, &m->flags) < 0 || imap_p_sp(p) < 0)
				return -1;
		}
		if (imap_p_peek(p) == '"') {
			struct imap_str d;

			if (imap_p_quoted(p, &d) < 0)
				return -1;
			if (imap_parse_datetime(d.s, d.len, &m->date) < 0)
				return imap_p_fail(p, "bad date-time (expected \"dd-Mon-yyyy hh:mm:ss +zzzz\")");
			m->has_date = true;
			if (imap_p_sp(p) < 0)
				return -1;
		}
		if (imap_p_word(p, "CATENATE")) {
			if (imap_p_catenate(p, m) < 0)
				return -1;
			continue;
		}
		if (imap_p_peek(p) != '{' && imap_p_peek(p) != '~')
			return imap_p_fail(p, "APPEND needs the message as a literal");
		if (imap_p_literal_or8(p, &msg, &m->literal8) < 0)
			return -1;
		m->data = msg.s;
		m->len = msg.len;
	}
	if (msgs.n == 0)
		return imap_p_fail(p, "APPEND needs a message");
	ap->msgs = msgs.v;
	ap->nmsgs = msgs.n;
	ap->flags = ap->msgs[0].flags;
	ap->date = ap->msgs[0].date;
	ap->has_date = ap->msgs[0].has_date;
	ap->data = ap->msgs[0].data;
	ap->len = ap->msgs[0].len;
	return 0;
}

static int
imap_p_status_att(struct imap_p *p, unsigned *items)
{
	static const struct {
		const char *w;
		unsigned bit;
	} atts[] = {
		{ "MESSAGES", IMAP_ST_MESSAGES }, { "RECENT", IMAP_ST_RECENT },
		{ "UIDNEXT", IMAP_ST_UIDNEXT }, { "UIDVALIDITY", IMAP_ST_UIDVALIDITY },
		{ "UNSEEN", IMAP_ST_UNSEEN }, { "HIGHESTMODSEQ", IMAP_ST_HIGHESTMODSEQ },
		{ "SIZE", IMAP_ST_SIZE }, { "APPENDLIMIT", IMAP_ST_APPENDLIMIT },
	};

	if (imap_p_expect(p, '(') < 0)
		return -1;
	do {
		size_t i;

		for (i = 0; i < sizeof(atts) / sizeof(atts[0]); i++)
			if (imap_p_word(p, atts[i].w))
				break;
		if (i == sizeof(atts) / sizeof(atts[0]))
			return imap_p_fail(p, "unknown STATUS item");
		*items |= atts[i].bit;
	} while (imap_p_accept(p, ' '));
	return imap_p_expect(p, ')');
}

static int
imap_p_list(struct imap_p *p, struct imap_list_args *l)
{
	struct imap_vec pats = { NULL, 0, 0, sizeof(struct imap_str) };

	if (imap_p_sp(p) < 0)
		return -1;
	if (imap_p_accept(p, '(')) {
		l->extended = true;
		while (!imap_p_accept(p, ')')) {
			if (l->sel != 0 && imap_p_sp(p) < 0)
				return -1;
			if (imap_p_word(p, "SUBSCRIBED"))
				l->sel |= IMAP_LSEL_SUBSCRIBED;
			else if (imap_p_word(p, "REMOTE"))
				l->sel |= IMAP_LSEL_REMOTE;
			else if (imap_p_word(p, "RECURSIVEMATCH"))
				l->sel |= IMAP_LSEL_RECURSIVEMATCH;
			else if (imap_p_word(p, "SPECIAL-USE"))
				l->sel |= IMAP_LSEL_SPECIALUSE;
			else
				return imap_p_fail(p, "unknown LIST selection option");
		}
		/* RFC 5258 3.1: not alone, nor with REMOTE only */
		if ((l->sel & ~(unsigned)IMAP_LSEL_REMOTE) == IMAP_LSEL_RECURSIVEMATCH)
			return imap_p_fail(p, "RECURSIVEMATCH needs another selection option");
		if (imap_p_sp(p) < 0)
			return -1;
	}
	if (imap_p_astring(p, &l->ref) < 0 || imap_p_sp(p) < 0)
		return -1;
	if (imap_p_accept(p, '(')) {
		l->extended = true;
		do {
			if (imap_p_list_mailbox(p, imap_vec_push(p->a, &pats)) < 0)
				return -1;
		} while (imap_p_accept(p, ' '));
		if (imap_p_expect(p, ')') < 0)
			return -1;
	} else if (imap_p_list_mailbox(p, imap_vec_push(p->a, &pats)) < 0) {
		return -1;
	}
	l->patterns = pats.v;
	l->npatterns = pats.n;
	if (imap_p_accept(p, ' ')) {
		bool first = true;

		if (!imap_p_word(p, "RETURN") || imap_p_sp(p) < 0 || imap_p_expect(p, '(') < 0)
			return imap_p_fail(p, "expected RETURN (...)");
		l->extended = true;
		while (!imap_p_accept(p, ')')) {
			if (!first && imap_p_sp(p) < 0)
				return -1;
			first = false;
			if (imap_p_word(p, "SUBSCRIBED")) {
				l->ret |= IMAP_LRET_SUBSCRIBED;
			} else if (imap_p_word(p, "CHILDREN")) {
				l->ret |= IMAP_LRET_CHILDREN;
			} else if (imap_p_word(p, "SPECIAL-USE")) {
				l->ret |= IMAP_LRET_SPECIALUSE;
			} else if (imap_p_word(p, "STATUS")) {
				l->ret |= IMAP_LRET_STATUS;
				if (imap_p_sp(p) < 0 || imap_p_status_att(p, &l->status_items) < 0)
					return -1;
			} else {
				return imap_p_fail(p, "unknown LIST return option");
			}
		}
	}
	return 0;
}

static int
imap_p_select(struct imap_p *p, struct imap_select_args *s)
{
	if (imap_p_sp(p) < 0 || imap_p_astring(p, &s->mailbox) < 0)
		return -1;
	if (!imap_p_accept(p, ' '))
		return 0;
	if (imap_p_expect(p, '(') < 0)
		return -1;
	do {
		if (imap_p_word(p, "CONDSTORE")) {
			s->condstore = true;
		} else if (imap_p_word(p, "QRESYNC")) {
			uint32_t uv;

			s->qresync = true;
			if (imap_p_sp(p) < 0 || imap_p_expect(p, '(') < 0 || imap_p_nznumber(p, &uv) < 0 ||
			    imap_p_sp(p) < 0 || imap_p_modseq(p, &s->q_modseq) < 0)
				return -1;
			s->q_uidvalidity = uv;
			if (imap_p_accept(p, ' ')) {
				if (imap_p_peek(p) != '(' && imap_p_seqset(p, &s->q_known_uids) < 0)
					return -1;
				if (imap_p_peek(p) == ' ')
					p->pos++;
				if (imap_p_accept(p, '(')) {
					if (imap_p_seqset(p, &s->q_seq_match) < 0 || imap_p_sp(p) < 0 ||
					    imap_p_seqset(p, &s->q_uid_match) < 0 || imap_p_expect(p, ')') < 0)
						return -1;
				}
			}
			if (imap_p_expect(p, ')') < 0)
				return -1;
		} else {
			return imap_p_fail(p, "unknown SELECT parameter");
		}
	} while (imap_p_accept(p, ' '));
	return imap_p_expect(p, ')');
}

static int
imap_p_create(struct imap_p *p, struct imap_cmd *c)
{
	struct imap_vec v = { NULL, 0, 0, 1 };

	if (imap_p_sp(p) < 0 || imap_p_astring(p, &c->u.create.mailbox) < 0)
		return -1;
	if (!imap_p_accept(p, ' '))
		return 0;
	if (imap_p_expect(p, '(') < 0 || !imap_p_word(p, "USE") || imap_p_sp(p) < 0 ||
	    imap_p_expect(p, '(') < 0)
		return imap_p_fail(p, "expected (USE (...))");
	if (!imap_p_accept(p, ')')) {
		do {
			if (imap_p_peek(p) != '\\' || imap_p_flag(p, &v, false) < 0)
				return imap_p_fail(p, "bad special-use attribute");
		} while (imap_p_accept(p, ' '));
		if (imap_p_expect(p, ')') < 0)
			return -1;
	}
	if (imap_p_expect(p, ')') < 0)
		return -1;
	c->u.create.specialuse = imap_vec_cstr(p->a, &v);
	return 0;
}

static int
imap_p_id(struct imap_p *p, struct imap_cmd *c)
{
	struct imap_vec v = { NULL, 0, 0, sizeof(char *) };

	if (imap_p_sp(p) < 0)
		return -1;
	if (imap_p_word(p, "NIL"))
		return 0;
	if (imap_p_expect(p, '(') < 0)
		return -1;
	if (!imap_p_accept(p, ')')) {
		do {
			struct imap_str k, val;

			if (imap_p_string(p, &k) < 0 || imap_p_sp(p) < 0 || imap_p_nstring(p, &val) < 0)
				return -1;
			if (v.n >= 60)
				return imap_p_fail(p, "too many ID fields");
			*(const char **)imap_vec_push(p->a, &v) = k.s;
			*(const char **)imap_vec_push(p->a, &v) = val.s;
		} while (imap_p_accept(p, ' '));
		if (imap_p_expect(p, ')') < 0)
			return -1;
	}
	c->u.id.kv = v.v;
	c->u.id.nkv = v.n;
	return 0;
}

static int
imap_p_enable(struct imap_p *p, struct imap_cmd *c)
{
	struct imap_vec v = { NULL, 0, 0, sizeof(char *) };

	do {
		struct imap_str s;

		if (imap_p_sp(p) < 0 || imap_p_atom(p, &s) == NULL)
			return -1;
		*(const char **)imap_vec_push(p->a, &v) = s.s;
	} while (imap_p_peek(p) == ' ');
	c->u.enable.caps = v.v;
	c->u.enable.ncaps = v.n;
	return 0;
}

/* SETQUOTA root (resource limit ...), RFC 9208 section 4.1.3: the list
 * is checked (atoms and number64s) but not kept. */
static int
imap_p_setquota(struct imap_p *p, struct imap_cmd *c)
{
	struct imap_str res;
	uint64_t limit;

	if (imap_p_sp(p) < 0 || imap_p_astring(p, &c->u.mailbox) < 0 || imap_p_sp(p) < 0 ||
	    imap_p_expect(p, '(') < 0)
		return -1;
	if (imap_p_accept(p, ')'))
		return 0;
	do {
		if (imap_p_atom(p, &res) == NULL || imap_p_sp(p) < 0 ||
		    imap_p_number64(p, (uint64_t)INT64_MAX, &limit) < 0)
			return -1;
	} while (imap_p_accept(p, ' '));
	return imap_p_expect(p, ')');
}

static int
imap_p_authenticate(struct imap_p *p, struct imap_cmd *c)
{
	struct imap_str s;

	if (imap_p_sp(p) < 0 || imap_p_atom(p, &s) == NULL)
		return -1;
	c->u.auth.mech = s.s;
	if (imap_p_accept(p, ' ')) {
		size_t start = p->pos;

		while (p->pos < p->len && (imap_atom_char((unsigned char)p->b[p->pos]) ||
			p->b[p->pos] == '='))
			p->pos++;
		if (p->pos == start)
			return imap_p_fail(p, "bad initial response");
		c->u.auth.ir = imap_arena_strndup(p->a, p->b + start, p->pos - start);
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* the command                                                         */

static const struct {
	const char *name;
	enum imap_cmd_kind kind;
} imap_commands[] = {
	{ "CAPABILITY", IMAP_CMD_CAPABILITY }, { "NOOP", IMAP_CMD_NOOP },
	{ "LOGOUT", IMAP_CMD_LOGOUT }, { "ID", IMAP_CMD_ID },
	{ "STARTTLS", IMAP_CMD_STARTTLS }, { "AUTHENTICATE", IMAP_CMD_AUTHENTICATE },
	{ "LOGIN", IMAP_CMD_LOGIN }, { "SELECT", IMAP_CMD_SELECT },
	{ "EXAMINE", IMAP_CMD_EXAMINE }, { "CREATE", IMAP_CMD_CREATE },
	{ "DELETE", IMAP_CMD_DELETE }, { "RENAME", IMAP_CMD_RENAME },
	{ "SUBSCRIBE", IMAP_CMD_SUBSCRIBE }, { "UNSUBSCRIBE", IMAP_CMD_UNSUBSCRIBE },
	{ "LIST", IMAP_CMD_LIST }, { "LSUB", IMAP_CMD_LSUB }, { "STATUS", IMAP_CMD_STATUS },
	{ "APPEND", IMAP_CMD_APPEND }, { "NAMESPACE", IMAP_CMD_NAMESPACE },
	{ "ENABLE", IMAP_CMD_ENABLE }, { "IDLE", IMAP_CMD_IDLE }, { "CHECK", IMAP_CMD_CHECK },
	{ "CLOSE", IMAP_CMD_CLOSE }, { "UNSELECT", IMAP_CMD_UNSELECT },
	{ "EXPUNGE", IMAP_CMD_EXPUNGE }, { "SEARCH", IMAP_CMD_SEARCH },
	{ "FETCH", IMAP_CMD_FETCH }, { "STORE", IMAP_CMD_STORE }, { "COPY", IMAP_CMD_COPY },
	{ "MOVE", IMAP_CMD_MOVE }, { "SORT", IMAP_CMD_SORT }, { "THREAD", IMAP_CMD_THREAD },
	{ "GETQUOTA", IMAP_CMD_GETQUOTA }, { "GETQUOTAROOT", IMAP_CMD_GETQUOTAROOT },
	{ "SETQUOTA", IMAP_CMD_SETQUOTA },
	{ "COMPRESS", IMAP_CMD_COMPRESS },
};

static const char *const imap_uid_names[] = {
	[IMAP_CMD_SEARCH] = "UID SEARCH", [IMAP_CMD_FETCH] = "UID FETCH",
	[IMAP_CMD_STORE] = "UID STORE", [IMAP_CMD_COPY] = "UID COPY",
	[IMAP_CMD_MOVE] = "UID MOVE", [IMAP_CMD_UID_EXPUNGE] = "UID EXPUNGE",
	[IMAP_CMD_SORT] = "UID SORT", [IMAP_CMD_THREAD] = "UID THREAD",
};

static bool
imap_tag_char(int c)
{
	return imap_astring_char(c) && c != '+';
}

bool
imap_parse_peek_tag(const char *line, size_t len, char *out, size_t size)
{
	size_t n = 0;

	while (n < len && imap_tag_char((unsigned char)line[n]))
		n++;
	if (n == 0 || (n < len && line[n] != ' ') || size == 0) {
		str_lcpy(out, "*", size);
		return false;
	}
	if (n >= size)
		n = size - 1;
	memcpy(out, line, n);
	out[n] = '\0';
	return true;
}

bool
imap_parse_is_append(const char *line, size_t len)
{
	size_t n = 0;

	while (n < len && imap_tag_char((unsigned char)line[n]))
		n++;
	if (n == 0 || len - n < 8 || line[n] != ' ')
		return false;
	return strncasecmp(line + n + 1, "APPEND ", 7) == 0;
}

int
imap_parse_section(const char *spec, size_t n, struct imap_arena *a, struct imap_fetch_att *att)
{
	struct err err;
	struct imap_p p = { spec, n, 0, a, &err, 0, false };
	struct imap_vec name = { NULL, 0, 0, 1 };

	memset(att, 0, sizeof(*att));
	att->kind = IMAP_FA_SECTION;
	att->peek = true;
	if (imap_p_section(&p, att, &name) < 0 || !imap_p_eol(&p) || att->partial)
		return -1;
	return 0;
}

bool
imap_parse_is_cat_text(const char *line, size_t len)
{
	size_t i = len;

	while (i > 0 && line[i - 1] != '{')
		i--;
	if (i == 0)
		return false;
	i--;
	if (i > 0 && line[i - 1] == '~')
		i--;
	return i >= 5 && strncasecmp(line + i - 5, "TEXT ", 5) == 0 &&
	       (i == 5 || !imap_atom_char((unsigned char)line[i - 6]));
}

int
imap_parse_append_mailbox(const char *buf, size_t len, struct imap_arena *a,
	struct imap_str *mailbox_r)
{
	struct err err;
	struct imap_p p = { buf, len, 0, a, &err, 0, false };
	const char *flags;
	struct imap_str d;
	uint64_t n;

	p.pos = imap_p_span(&p, imap_tag_char);
	if (p.pos == 0 || imap_p_sp(&p) < 0 || !imap_p_word(&p, "APPEND") || imap_p_sp(&p) < 0 ||
	    imap_p_astring(&p, mailbox_r) < 0 || imap_p_sp(&p) < 0)
		return 0;
	if (imap_p_peek(&p) == '(' && (imap_p_flag_list(&p, &flags) < 0 || imap_p_sp(&p) < 0))
		return 0;
	if (imap_p_peek(&p) == '"' && (imap_p_quoted(&p, &d) < 0 || imap_p_sp(&p) < 0))
		return 0;
	if (imap_p_word(&p, "CATENATE") && (!imap_p_accept(&p, ' ') || !imap_p_accept(&p, '(') ||
	    !imap_p_word(&p, "TEXT") || !imap_p_accept(&p, ' ')))
		return 0;
	imap_p_accept(&p, '~');
	/* what is left must be the marker itself */
	if (!imap_p_accept(&p, '{') || imap_p_number64(&p, UINT32_MAX, &n) < 0)
		return 0;
	imap_p_accept(&p, '+');
	return imap_p_accept(&p, '}') && imap_p_eol(&p) ? 1 : 0;
}

int
imap_parse_literal_tail(const char *line, size_t len, uint64_t *n_r, bool *sync_r)
{
	size_t i, end;
	uint64_t v = 0;

	if (len < 3 || line[len - 1] != '}')
		return 0;
	end = len - 1;
	*sync_r = true;
	if (line[end - 1] == '+') {
		*sync_r = false;
		end--;
	}
	i = end;
	while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
		i--;
	if (i == 0 || line[i - 1] != '{')
		return 0;
	if (i == end || end - i > 10)
		return -1;
	for (size_t k = i; k < end; k++)
		v = v * 10 + (uint64_t)(line[k] - '0');
	if (v > UINT32_MAX)
		return -1;
	*n_r = v;
	return 1;
}

void
imap_cmd_free(struct imap_cmd *cmd)
{
	imap_arena_free(&cmd->arena);
}

static int
imap_parse_body(struct imap_p *p, struct imap_cmd *c)
{
	switch (c->kind) {
	case IMAP_CMD_CAPABILITY:
	case IMAP_CMD_NOOP:
	case IMAP_CMD_LOGOUT:
	case IMAP_CMD_STARTTLS:
	case IMAP_CMD_NAMESPACE:
	case IMAP_CMD_IDLE:
	case IMAP_CMD_CHECK:
	case IMAP_CMD_CLOSE:
	case IMAP_CMD_UNSELECT:
	case IMAP_CMD_EXPUNGE:
		return 0;
	case IMAP_CMD_ID:
		return imap_p_id(p, c);
	case IMAP_CMD_AUTHENTICATE:
		return imap_p_authenticate(p, c);
	case IMAP_CMD_COMPRESS: {
		struct imap_str mech;

		if (imap_p_sp(p) < 0 || imap_p_atom(p, &mech) == NULL)
			return -1;
		c->u.compress.mech = mech.s;
		return 0;
	}
	case IMAP_CMD_LOGIN:
		if (imap_p_sp(p) < 0 || imap_p_astring(p, &c->u.login.user) < 0 || imap_p_sp(p) < 0 ||
		    imap_p_astring(p, &c->u.login.pass) < 0)
			return -1;
		return 0;
	case IMAP_CMD_SELECT:
	case IMAP_CMD_EXAMINE:
		return imap_p_select(p, &c->u.select);
	case IMAP_CMD_CREATE:
		return imap_p_create(p, c);
	case IMAP_CMD_DELETE:
	case IMAP_CMD_SUBSCRIBE:
	case IMAP_CMD_UNSUBSCRIBE:
	case IMAP_CMD_GETQUOTA:
	case IMAP_CMD_GETQUOTAROOT:
		if (imap_p_sp(p) < 0 || imap_p_astring(p, &c->u.mailbox) < 0)
			return -1;
		return 0;
	case IMAP_CMD_SETQUOTA:
		return imap_p_setquota(p, c);
	case IMAP_CMD_RENAME:
		if (imap_p_sp(p) < 0 || imap_p_astring(p, &c->u.rename.from) < 0 || imap_p_sp(p) < 0 ||
		    imap_p_astring(p, &c->u.rename.to) < 0)
			return -1;
		return 0;
	case IMAP_CMD_LIST:
		return imap_p_list(p, &c->u.list);
	case IMAP_CMD_LSUB: {
		struct imap_str *pat = imap_arena_alloc(p->a, sizeof(*pat));

		if (imap_p_sp(p) < 0 || imap_p_astring(p, &c->u.list.ref) < 0 || imap_p_sp(p) < 0 ||
		    imap_p_list_mailbox(p, pat) < 0)
			return -1;
		c->u.list.patterns = pat;
		c->u.list.npatterns = 1;
		return 0;
	}
	case IMAP_CMD_STATUS:
		if (imap_p_sp(p) < 0 || imap_p_astring(p, &c->u.status.mailbox) < 0 || imap_p_sp(p) < 0)
			return -1;
		return imap_p_status_att(p, &c->u.status.items);
	case IMAP_CMD_APPEND:
		return imap_p_append(p, &c->u.append);
	case IMAP_CMD_ENABLE:
		return imap_p_enable(p, c);
	case IMAP_CMD_SEARCH:
		return imap_p_search(p, &c->u.search);
	case IMAP_CMD_SORT:
		return imap_p_sort(p, &c->u.sort);
	case IMAP_CMD_THREAD:
		return imap_p_thread(p, &c->u.sort);
	case IMAP_CMD_FETCH:
		return imap_p_fetch(p, &c->u.fetch);
	case IMAP_CMD_STORE:
		return imap_p_store(p, &c->u.store);
	case IMAP_CMD_COPY:
	case IMAP_CMD_MOVE:
		if (imap_p_sp(p) < 0 || imap_p_seqset(p, &c->u.copy.set) < 0 || imap_p_sp(p) < 0 ||
		    imap_p_astring(p, &c->u.copy.mailbox) < 0)
			return -1;
		return 0;
	case IMAP_CMD_UID_EXPUNGE:
		if (imap_p_sp(p) < 0 || imap_p_seqset(p, &c->u.expunge) < 0)
			return -1;
		return 0;
	}
	return imap_p_fail(p, "unknown command");
}

int
imap_parse_command(const char *buf, size_t len, struct imap_cmd *cmd, struct err *err)
{
	struct imap_p p = { buf, len, 0, &cmd->arena, err, 0, false };
	size_t n, i;

	memset(cmd, 0, sizeof(*cmd));
	p.a = &cmd->arena;
	n = imap_p_span(&p, imap_tag_char);
	if (n == 0 || (n < len && buf[n] != ' '))
		return imap_p_fail(&p, "missing or invalid tag");
	cmd->tag = imap_arena_strndup(p.a, buf, n);
	p.pos = n;
	if (imap_p_sp(&p) < 0)
		return err_set(err, ERR_INVALID, "missing command");
	if (imap_p_word(&p, "UID")) {
		if (imap_p_sp(&p) < 0)
			return -1;
		cmd->uid = true;
		if (imap_p_word(&p, "FETCH"))
			cmd->kind = IMAP_CMD_FETCH;
		else if (imap_p_word(&p, "STORE"))
			cmd->kind = IMAP_CMD_STORE;
		else if (imap_p_word(&p, "COPY"))
			cmd->kind = IMAP_CMD_COPY;
		else if (imap_p_word(&p, "MOVE"))
			cmd->kind = IMAP_CMD_MOVE;
		else if (imap_p_word(&p, "SEARCH"))
			cmd->kind = IMAP_CMD_SEARCH;
		else if (imap_p_word(&p, "EXPUNGE"))
			cmd->kind = IMAP_CMD_UID_EXPUNGE;
		else if (imap_p_word(&p, "SORT"))
			cmd->kind = IMAP_CMD_SORT;
		else if (imap_p_word(&p, "THREAD"))
			cmd->kind = IMAP_CMD_THREAD;
		else
			return err_set(err, ERR_INVALID, "unknown UID command");
		cmd->name = imap_uid_names[cmd->kind];
	} else {
		for (i = 0; i < sizeof(imap_commands) / sizeof(imap_commands[0]); i++)
			if (imap_p_word(&p, imap_commands[i].name))
				break;
		if (i == sizeof(imap_commands) / sizeof(imap_commands[0]))
			return err_set(err, ERR_INVALID, "unknown command");
		cmd->kind = imap_commands[i].kind;
		cmd->name = imap_commands[i].name;
	}
	if (p.pos < len && buf[p.pos] != ' ')
		return err_set(err, ERR_INVALID, "unknown command");
	if (imap_parse_body(&p, cmd) < 0)
		return -1;
	if (!imap_p_eol(&p))
		return imap_p_fail(&p, "unexpected characters after the command");
	return 0;
}
