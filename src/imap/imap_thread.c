/*
 * imap_thread.c - the pure parts of SORT and THREAD (imap_thread.h):
 * base subject extraction (RFC 5256 2.1), sent dates, ENVELOPE fields,
 * message-ids, and THREAD=REFERENCES / THREAD=ORDEREDSUBJECT (RFC 5256
 * sections 3 and 4).
 *
 * Threads are built in arrays of containers linked by index (parent,
 * first child, next sibling) and walked with explicit stacks, so a reply
 * chain as long as the mailbox costs no C stack.  Sibling order is fixed
 * by (sent date, sequence number) of the message or, for a dummy, of its
 * first child: the order links were made in never shows.
 */
#include "imap/imap_thread.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/xalloc.h"
#include "store/rfc2047.h"

/* ------------------------------------------------------------------ */
/* base subject                                                        */

static bool
imap_thread_wsp(char c)
{
	return c == ' ' || c == '\t';
}

/* A subj-blob at s[i..n): "[" *BLOBCHAR "]" *WSP; its end, or 0. */
static size_t
imap_thread_blob(const char *s, size_t i, size_t n)
{
	if (i >= n || s[i] != '[')
		return 0;
	for (i++; i < n && s[i] != ']'; i++)
		if (s[i] == '[')
			return 0;
	if (i >= n)
		return 0;
	for (i++; i < n && imap_thread_wsp(s[i]); i++)
		;
	return i;
}

/* subj-leader at s[0..n) other than WSP: *subj-blob subj-refwd; its end, or 0 */
static size_t
imap_thread_refwd(const char *s, size_t n)
{
	size_t i = 0, e;

	while ((e = imap_thread_blob(s, i, n)) != 0)
		i = e;
	if (n - i >= 3 && strncasecmp(s + i, "fwd", 3) == 0)
		i += 3;
	else if (n - i >= 2 && (strncasecmp(s + i, "re", 2) == 0 || strncasecmp(s + i, "fw", 2) == 0))
		i += 2;
	else
		return 0;
	while (i < n && imap_thread_wsp(s[i]))
		i++;
	if ((e = imap_thread_blob(s, i, n)) != 0)
		i = e;
	return i < n && s[i] == ':' ? i + 1 : 0;
}

/* Steps 3 to 5: leaders and blobs off the front of s[*lo..*hi). */
static void
imap_thread_strip_front(const char *s, size_t *lo, size_t hi, bool *refwd)
{
	bool changed = true;

	while (changed) {
		size_t e;

		changed = false;
		while (*lo < hi) {
			if (imap_thread_wsp(s[*lo])) {
				(*lo)++;
			} else if ((e = imap_thread_refwd(s + *lo, hi - *lo)) != 0) {
				*lo += e;
				*refwd = true;
			} else {
				break;
			}
		}
		e = imap_thread_blob(s, *lo, hi);
		if (e != 0) {
			/* only when a subj-base (some non-WSP) is left */
			for (size_t k = e; k < hi; k++) {
				if (!imap_thread_wsp(s[k])) {
					*lo = e;
					changed = true;
					break;
				}
			}
		}
	}
}

bool
imap_thread_base_subject(const char *raw, size_t n, struct buf *out)
{
	struct buf d = BUF_INIT;
	bool refwd = false;
	size_t lo = 0, hi = 0, w = 0, start = out->len;

	/* 1: decode, tabs and line ends to one space, runs of spaces to one */
	rfc2047_decode(raw, n, &d);
	for (size_t i = 0; i < d.len; i++) {
		char c = d.data[i];

		if (c == '\t' || c == '\r' || c == '\n')
			c = ' ';
		if (c == ' ' && w > 0 && d.data[w - 1] == ' ')
			continue;
		d.data[w++] = c;
	}
	hi = w;
	for (;;) {
		/* 2: trailers */
		for (;;) {
			if (hi > lo && imap_thread_wsp(d.data[hi - 1])) {
				hi--;
			} else if (hi - lo >= 5 && strncasecmp(d.data + hi - 5, "(fwd)", 5) == 0) {
				hi -= 5;
				refwd = true;
			} else {
				break;
			}
		}
		/* 3, 4, 5 */
		imap_thread_strip_front(d.data, &lo, hi, &refwd);
		/* 6: "[fwd: ... ]" */
		if (hi - lo >= 6 && strncasecmp(d.data + lo, "[fwd:", 5) == 0 && d.data[hi - 1] == ']') {
			lo += 5;
			hi--;
			refwd = true;
			continue;
		}
		break;
	}
	buf_append(out, d.data != NULL ? d.data + lo : "", hi - lo);
	for (size_t i = start; i < out->len; i++)
		if (out->data[i] >= 'A' && out->data[i] <= 'Z')
			out->data[i] = (char)(out->data[i] + 32);
	buf_free(&d);
	return refwd;
}

/* ------------------------------------------------------------------ */
/* sent date                                                           */

static int64_t
imap_thread_days(int64_t y, int m, int d)
{
	/* days from civil (H. Hinnant's algorithm) */
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;

	return era * 146097 + doe - 719468;
}

static size_t
imap_thread_num(const char *s, size_t n, size_t *i, int maxdig, int *v)
{
	size_t k = 0;

	*v = 0;
	while (*i < n && s[*i] >= '0' && s[*i] <= '9' && k < (size_t)maxdig) {
		*v = *v * 10 + (s[*i] - '0');
		(*i)++;
		k++;
	}
	return k;
}

static void
imap_thread_skip_cfws(const char *s, size_t n, size_t *i)
{
	int depth = 0;

	while (*i < n) {
		char c = s[*i];

		if (c == '(')
			depth++;
		else if (c == ')' && depth > 0)
			depth--;
		else if (depth == 0 && c != ' ' && c != '\t' && c != '\r' && c != '\n')
			return;
		(*i)++;
	}
}

/* minutes east of UTC for a zone at s[*i..n); 0 when unknown */
static int
imap_thread_zone(const char *s, size_t n, size_t i)
{
	static const struct { const char *name; int off; } zones[] = {
		{ "UT", 0 }, { "GMT", 0 }, { "Z", 0 }, { "EST", -300 }, { "EDT", -240 },
		{ "CST", -360 }, { "CDT", -300 }, { "MST", -420 }, { "MDT", -360 },
		{ "PST", -480 }, { "PDT", -420 },
	};
	size_t e = i;

	if (i < n && (s[i] == '+' || s[i] == '-')) {
		int sign = s[i] == '-' ? -1 : 1, v;

		i++;
		if (imap_thread_num(s, n, &i, 4, &v) != 4)
			return 0;
		if (v / 100 > 23 || v % 100 > 59)
			return 0;
		return sign * (v / 100 * 60 + v % 100);
	}
	while (e < n && ((s[e] | 0x20) >= 'a' && (s[e] | 0x20) <= 'z'))
		e++;
	for (size_t k = 0; k < sizeof(zones) / sizeof(zones[0]); k++)
		if (strlen(zones[k].name) == e - i && strncasecmp(s + i, zones[k].name, e - i) == 0)
			return zones[k].off;
	return 0;   /* military zones and the unknown: RFC 5322 4.3 says treat as -0000 */
}

bool
imap_thread_sentdate(const char *s, size_t n, int64_t *t_r)
{
	static const char *const mon[12] = { "jan", "feb", "mar", "apr", "may", "jun", "jul",
		"aug", "sep", "oct", "nov", "dec" };
	size_t i = 0, k;
	int day, m = -1, year, hh, mm, ss = 0;
	static const int mdays[12] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };

	imap_thread_skip_cfws(s, n, &i);
	if (i < n && ((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z')) {
		while (i < n && s[i] != ',' && s[i] != ' ')
			i++;
		if (i < n && s[i] == ',')
			i++;
	}
	imap_thread_skip_cfws(s, n, &i);
	if (imap_thread_num(s, n, &i, 2, &day) == 0)
		return false;
	imap_thread_skip_cfws(s, n, &i);
	if (n - i < 3)
		return false;
	for (k = 0; k < 12; k++)
		if (strncasecmp(s + i, mon[k], 3) == 0)
			m = (int)k;
	if (m < 0)
		return false;
	i += 3;
	imap_thread_skip_cfws(s, n, &i);
	k = imap_thread_num(s, n, &i, 4, &year);
	if (k == 2)
		year += year < 50 ? 2000 : 1900;
	else if (k == 3)
		year += 1900;
	else if (k != 4)
		return false;
	imap_thread_skip_cfws(s, n, &i);
	if (imap_thread_num(s, n, &i, 2, &hh) == 0 || i >= n || s[i] != ':')
		return false;
	i++;
	if (imap_thread_num(s, n, &i, 2, &mm) != 2)
		return false;
	if (i < n && s[i] == ':') {
		i++;
		if (imap_thread_num(s, n, &i, 2, &ss) != 2)
			return false;
	}
	if (day < 1 || day > mdays[m] || hh > 23 || mm > 59 || ss > 60)
		return false;
	imap_thread_skip_cfws(s, n, &i);
	*t_r = imap_thread_days(year, m + 1, day) * 86400 + hh * 3600 + mm * 60 + ss -
		(int64_t)imap_thread_zone(s, n, i) * 60;
	return true;
}

/* ------------------------------------------------------------------ */
/* message-ids                                                         */

bool
imap_thread_msgid_next(const char *s, size_t n, size_t *pos, const char **id_r, size_t *len_r)
{
	size_t i = *pos;

	while (i < n) {
		size_t st, e;

		while (i < n && s[i] != '<')
			i++;
		if (i >= n)
			break;
		st = ++i;
		for (e = st; e < n && s[e] != '>' && s[e] != '<' && s[e] != ' ' && s[e] != '\t' &&
		     s[e] != '\r' && s[e] != '\n'; e++)
			;
		if (e < n && s[e] == '>' && e > st) {
			*id_r = s + st;
			*len_r = e - st;
			*pos = e + 1;
			return true;
		}
		i = e;
	}
	*pos = n;
	return false;
}

/* ------------------------------------------------------------------ */
/* ENVELOPE                                                            */

struct imap_envp {
	const char *s;
	size_t n, i;
	struct imap_env *e;
};

static void
imap_envp_ws(struct imap_envp *p)
{
	while (p->i < p->n && p->s[p->i] == ' ')
		p->i++;
}

/* nstring into e->strs (reserved large enough: pointers stay put);
 * *out NULL for NIL.  0 or -1. */
static int
imap_envp_nstring(struct imap_envp *p, const char **out)
{
	struct buf *b = &p->e->strs;
	char *dst;

	imap_envp_ws(p);
	*out = NULL;
	if (p->n - p->i >= 3 && strncasecmp(p->s + p->i, "NIL", 3) == 0) {
		p->i += 3;
		return 0;
	}
	dst = b->data + b->len;
	if (p->i < p->n && p->s[p->i] == '"') {
		for (p->i++; p->i < p->n && p->s[p->i] != '"'; p->i++) {
			if (p->s[p->i] == '\\' && p->i + 1 < p->n)
				p->i++;
			b->data[b->len++] = p->s[p->i];
		}
		if (p->i >= p->n)
			return -1;
		p->i++;
	} else if (p->i < p->n && p->s[p->i] == '{') {
		size_t len = 0;

		for (p->i++; p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9'; p->i++) {
			if (len > p->n)
				return -1;
			len = len * 10 + (size_t)(p->s[p->i] - '0');
		}
		if (p->n - p->i < 3 || memcmp(p->s + p->i, "}\r\n", 3) != 0)
			return -1;
		p->i += 3;
		if (len > p->n - p->i)
			return -1;
		memcpy(dst, p->s + p->i, len);
		b->len += len;
		p->i += len;
	} else {
		return -1;
	}
	b->data[b->len++] = '\0';
	*out = dst;
	return 0;
}

static int
imap_envp_expect(struct imap_envp *p, char c)
{
	imap_envp_ws(p);
	if (p->i >= p->n || p->s[p->i] != c)
		return -1;
	p->i++;
	return 0;
}

/* An address list; the first non-group address goes to *first. */
static int
imap_envp_addrs(struct imap_envp *p, struct imap_env_addr *first)
{
	bool have = false;

	imap_envp_ws(p);
	if (p->n - p->i >= 3 && strncasecmp(p->s + p->i, "NIL", 3) == 0) {
		p->i += 3;
		return 0;
	}
	if (imap_envp_expect(p, '(') < 0)
		return -1;
	for (;;) {
		struct imap_env_addr a;
		const char *adl;

		imap_envp_ws(p);
		if (p->i < p->n && p->s[p->i] == ')') {
			p->i++;
			return 0;
		}
		if (imap_envp_expect(p, '(') < 0 || imap_envp_nstring(p, &a.name) < 0 ||
		    imap_envp_nstring(p, &adl) < 0 || imap_envp_nstring(p, &a.mailbox) < 0 ||
		    imap_envp_nstring(p, &a.host) < 0 || imap_envp_expect(p, ')') < 0)
			return -1;
		if (!have && a.host != NULL) {
			*first = a;
			have = true;
		}
	}
}

int
imap_env_parse(const char *env, size_t n, struct imap_env *e)
{
	struct imap_envp p = { env, n, 0, e };

	memset(e, 0, sizeof(*e));
	buf_reserve(&e->strs, n + 16);
	if (imap_envp_expect(&p, '(') < 0 || imap_envp_nstring(&p, &e->date) < 0 ||
	    imap_envp_nstring(&p, &e->subject) < 0 || imap_envp_addrs(&p, &e->from) < 0 ||
	    imap_envp_addrs(&p, &(struct imap_env_addr){ 0 }) < 0 ||
	    imap_envp_addrs(&p, &(struct imap_env_addr){ 0 }) < 0 ||
	    imap_envp_addrs(&p, &e->to) < 0 || imap_envp_addrs(&p, &e->cc) < 0 ||
	    imap_envp_addrs(&p, &(struct imap_env_addr){ 0 }) < 0 ||
	    imap_envp_nstring(&p, &e->in_reply_to) < 0 ||
	    imap_envp_nstring(&p, &e->message_id) < 0 || imap_envp_expect(&p, ')') < 0) {
		struct buf keep = e->strs;

		memset(e, 0, sizeof(*e));
		e->strs = keep;
		return -1;
	}
	return 0;
}

void
imap_env_free(struct imap_env *e)
{
	buf_free(&e->strs);
	memset(e, 0, sizeof(*e));
}

/* ------------------------------------------------------------------ */
/* threads                                                             */

#define TNONE SIZE_MAX

struct imap_tc {
	size_t msg;               /* index into the messages, TNONE: dummy */
	size_t parent, child, next;
};

struct imap_tree {
	const struct imap_thread_msg *m;
	struct imap_tc *c;
	size_t n, cap;
	/* message-id table: open addressing, values container index + 1 */
	const char **hk;
	size_t *hl, *hv, hcap, hused;
};

static size_t
imap_tree_new(struct imap_tree *t, size_t msg)
{
	if (t->n == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 64;
		t->c = xreallocarray(t->c, t->cap, sizeof(*t->c));
	}
	t->c[t->n] = (struct imap_tc){ msg, TNONE, TNONE, TNONE };
	return t->n++;
}

static uint64_t
imap_tree_hash(const char *s, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
	return h;
}

static void imap_tree_hput(struct imap_tree *t, const char *k, size_t l, size_t v);

static void
imap_tree_hgrow(struct imap_tree *t)
{
	const char **ok = t->hk;
	size_t *ol = t->hl, *ov = t->hv, ocap = t->hcap;

	t->hcap = t->hcap ? t->hcap * 2 : 256;
	t->hk = xcalloc(t->hcap, sizeof(*t->hk));
	t->hl = xcalloc(t->hcap, sizeof(*t->hl));
	t->hv = xcalloc(t->hcap, sizeof(*t->hv));
	t->hused = 0;
	for (size_t i = 0; i < ocap; i++)
		if (ov[i] != 0)
			imap_tree_hput(t, ok[i], ol[i], ov[i]);
	free(ok);
	free(ol);
	free(ov);
}

static size_t *
imap_tree_hslot(struct imap_tree *t, const char *k, size_t l)
{
	size_t i = (size_t)imap_tree_hash(k, l) & (t->hcap - 1);

	while (t->hv[i] != 0 && !(t->hl[i] == l && memcmp(t->hk[i], k, l) == 0))
		i = (i + 1) & (t->hcap - 1);
	return &t->hv[i];
}

static void
imap_tree_hput(struct imap_tree *t, const char *k, size_t l, size_t v)
{
	size_t *slot;

	if ((t->hused + 1) * 2 > t->hcap)
		imap_tree_hgrow(t);
	slot = imap_tree_hslot(t, k, l);
	if (*slot == 0) {
		size_t i = (size_t)(slot - t->hv);

		t->hk[i] = k;
		t->hl[i] = l;
		t->hused++;
	}
	*slot = v;
}

/* The container of a message-id, made (as a dummy) when new. */
static size_t
imap_tree_get(struct imap_tree *t, const char *k, size_t l)
{
	size_t *slot, c;

	if (t->hcap == 0)
		imap_tree_hgrow(t);
	slot = imap_tree_hslot(t, k, l);
	if (*slot != 0)
		return *slot - 1;
	c = imap_tree_new(t, TNONE);
	imap_tree_hput(t, k, l, c + 1);
	return c;
}

/* Would making p the parent of c make a loop? */
static bool
imap_tree_loop(const struct imap_tree *t, size_t p, size_t c)
{
	for (size_t a = p; a != TNONE; a = t->c[a].parent)
		if (a == c)
			return true;
	return false;
}

static void
imap_tree_unlink(struct imap_tree *t, size_t c)
{
	size_t p = t->c[c].parent, *link;

	if (p == TNONE)
		return;
	for (link = &t->c[p].child; *link != TNONE; link = &t->c[*link].next) {
		if (*link == c) {
			*link = t->c[c].next;
			break;
		}
	}
	t->c[c].parent = TNONE;
	t->c[c].next = TNONE;
}

static void
imap_tree_link(struct imap_tree *t, size_t p, size_t c)
{
	imap_tree_unlink(t, c);
	t->c[c].parent = p;
	t->c[c].next = t->c[p].child;
	t->c[p].child = c;
}

/* Step 1 for message i. */
static void
imap_tree_add(struct imap_tree *t, size_t i)
{
	const struct imap_thread_msg *m = &t->m[i];
	const char *id;
	size_t len, pos = 0, prev = TNONE, c = TNONE, nrefs = 0;

	if (m->msgid != NULL && imap_thread_msgid_next(m->msgid, m->msgid_len, &pos, &id, &len)) {
		c = imap_tree_get(t, id, len);
		if (t->c[c].msg != TNONE)
			c = TNONE;    /* a duplicate id: this one counts as having none */
	}
	if (c == TNONE)
		c = imap_tree_new(t, TNONE);
	t->c[c].msg = i;
	/* B: link the references in order */
	pos = 0;
	while (m->refs != NULL && imap_thread_msgid_next(m->refs, m->refs_len, &pos, &id, &len)) {
		size_t r = imap_tree_get(t, id, len);

		if (prev != TNONE && t->c[r].parent == TNONE && !imap_tree_loop(t, prev, r))
			imap_tree_link(t, prev, r);
		prev = r;
		nrefs++;
	}
	if (nrefs == 0 && m->irt != NULL) {
		pos = 0;
		if (imap_thread_msgid_next(m->irt, m->irt_len, &pos, &id, &len))
			prev = imap_tree_get(t, id, len);
	}
	/* C: the last reference is the parent, replacing any other */
	imap_tree_unlink(t, c);
	if (prev != TNONE && !imap_tree_loop(t, prev, c))
		imap_tree_link(t, prev, c);
}

/* The message that dates a container: its own, or its first child's. */
static size_t
imap_tree_datemsg(const struct imap_tree *t, size_t c)
{
	while (t->c[c].msg == TNONE && t->c[c].child != TNONE)
		c = t->c[c].child;
	return t->c[c].msg;
}

static const struct imap_tree *imap_tree_cmp_t;

static int
imap_tree_cmp(const void *a, const void *b)
{
	const struct imap_tree *t = imap_tree_cmp_t;
	size_t ma = imap_tree_datemsg(t, *(const size_t *)a);
	size_t mb = imap_tree_datemsg(t, *(const size_t *)b);

	if (ma == TNONE || mb == TNONE)
		return ma == mb ? 0 : (ma == TNONE ? 1 : -1);
	if (t->m[ma].sent != t->m[mb].sent)
		return t->m[ma].sent < t->m[mb].sent ? -1 : 1;
	return ma < mb ? -1 : (ma > mb ? 1 : 0);
}

/* Sort siblings v[0..k) by (sent date, sequence number); the caller relinks them. */
static void
imap_tree_sort(struct imap_tree *t, size_t *v, size_t k)
{
	imap_tree_cmp_t = t;
	qsort(v, k, sizeof(*v), imap_tree_cmp);
	imap_tree_cmp_t = NULL;
}

/* All containers reachable from roots[0..nr), parents before children. */
static size_t *
imap_tree_preorder(const struct imap_tree *t, const size_t *roots, size_t nr, size_t *n_r)
{
	size_t *order = xcalloc(t->n + 1, sizeof(*order)), *st = xcalloc(t->n + 1, sizeof(*st));
	size_t no = 0, sp = 0;

	for (size_t r = nr; r-- > 0;)
		st[sp++] = roots[r];
	while (sp > 0) {
		size_t c = st[--sp];

		order[no++] = c;
		for (size_t k = t->c[c].child; k != TNONE; k = t->c[k].next)
			st[sp++] = k;
	}
	free(st);
	*n_r = no;
	return order;
}

/* Sort every sibling list bottom-up, then the roots (step 7 and 5). */
static void
imap_tree_sort_all(struct imap_tree *t, size_t *roots, size_t nr)
{
	size_t no, *order = imap_tree_preorder(t, roots, nr, &no);
	size_t *v = xcalloc(t->n + 1, sizeof(*v));

	for (size_t j = no; j-- > 0;) {
		size_t c = order[j], k = 0;

		for (size_t x = t->c[c].child; x != TNONE; x = t->c[x].next)
			v[k++] = x;
		if (k < 2)
			continue;
		imap_tree_sort(t, v, k);
		t->c[c].child = v[0];
		for (size_t x = 0; x + 1 < k; x++)
			t->c[v[x]].next = v[x + 1];
		t->c[v[k - 1]].next = TNONE;
	}
	imap_tree_sort(t, roots, nr);
	free(v);
	free(order);
}

/* Step 4: drop childless dummies, promote the children of the others
 * (at the root only when there is one child).  Returns the new root count. */
static size_t
imap_tree_prune(struct imap_tree *t, size_t *roots, size_t nr)
{
	size_t no, *order = imap_tree_preorder(t, roots, nr, &no), w = 0;

	for (size_t j = no; j-- > 0;) {
		size_t c = order[j], x = t->c[c].child, head = TNONE, *tail = &head;

		while (x != TNONE) {
			size_t next = t->c[x].next;

			if (t->c[x].msg == TNONE) {
				/* splice the dummy's (already pruned) children in its place */
				for (size_t g = t->c[x].child; g != TNONE; g = t->c[g].next) {
					t->c[g].parent = c;
					*tail = g;
					tail = &t->c[g].next;
				}
				t->c[x].child = TNONE;
				t->c[x].parent = TNONE;
			} else {
				*tail = x;
				tail = &t->c[x].next;
			}
			x = next;
		}
		*tail = TNONE;
		t->c[c].child = head;
	}
	for (size_t r = 0; r < nr; r++) {
		size_t c = roots[r], k = t->c[c].child;

		if (t->c[c].msg != TNONE)
			roots[w++] = c;
		else if (k != TNONE && t->c[k].next == TNONE) {
			t->c[k].parent = TNONE;
			t->c[c].child = TNONE;
			roots[w++] = k;
		} else if (k != TNONE)
			roots[w++] = c;
	}
	free(order);
	return w;
}

static const struct imap_thread_msg *
imap_tree_subj(const struct imap_tree *t, size_t c)
{
	size_t m = imap_tree_datemsg(t, c);

	return m == TNONE ? NULL : &t->m[m];
}

/* Step 6A: the subject table, base subject -> root position + 1.  A
 * dummy wins over a message, an original over a reply or forward. */
static void
imap_tree_subject_table(struct imap_tree *t, const size_t *roots, size_t nr,
	const struct imap_thread_msg **rs, struct imap_tree *st)
{
	for (size_t r = 0; r < nr; r++) {
		const struct imap_thread_msg *m = imap_tree_subj(t, roots[r]);
		size_t *slot, c = roots[r];

		rs[r] = m;
		if (m == NULL || m->subject_len == 0)
			continue;
		if (st->hcap == 0 || (st->hused + 1) * 2 > st->hcap)
			imap_tree_hgrow(st);
		slot = imap_tree_hslot(st, m->subject, m->subject_len);
		if (*slot == 0) {
			imap_tree_hput(st, m->subject, m->subject_len, r + 1);
		} else {
			size_t o = roots[*slot - 1];
			const struct imap_thread_msg *om = rs[*slot - 1];

			if ((t->c[c].msg == TNONE && t->c[o].msg != TNONE) ||
			    (om->refwd && !m->refwd && t->c[o].msg != TNONE))
				*slot = r + 1;
		}
	}
}

/* Step 6B for the root at position r whose table entry is at position k. */
static void
imap_tree_merge(struct imap_tree *t, size_t *roots, size_t r, size_t *k,
	const struct imap_thread_msg *m)
{
	size_t c = roots[r], o = roots[*k];
	bool cd = t->c[c].msg == TNONE, od = t->c[o].msg == TNONE;

	if (cd && od) {
		size_t g;

		while ((g = t->c[c].child) != TNONE)
			imap_tree_link(t, o, g);
		t->c[c].parent = o;    /* gone: no longer a root */
	} else if (od) {
		imap_tree_link(t, o, c);
	} else if (cd) {
		imap_tree_link(t, c, o);
		*k = r;
	} else if (!t->m[t->c[o].msg].refwd && m->refwd) {
		imap_tree_link(t, o, c);
	} else {
		size_t d = imap_tree_new(t, TNONE);

		/* the dummy takes o's place among the roots */
		roots[*k] = d;
		imap_tree_link(t, d, o);
		imap_tree_link(t, d, c);
	}
}

/* Step 6: gather roots with the same base subject.  A root's subject is
 * taken once, before any merge changes the first child of a dummy.
 * Returns the new root count. */
static size_t
imap_tree_group(struct imap_tree *t, size_t *roots, size_t nr)
{
	struct imap_tree st = { 0 };    /* the subject table (its hash only) */
	const struct imap_thread_msg **rs = xcalloc(nr + 1, sizeof(*rs));
	size_t w = 0;

	imap_tree_subject_table(t, roots, nr, rs, &st);
	for (size_t r = 0; r < nr; r++) {
		const struct imap_thread_msg *m = rs[r];
		size_t *slot, k;

		if (t->c[roots[r]].parent != TNONE || m == NULL || m->subject_len == 0)
			continue;
		slot = imap_tree_hslot(&st, m->subject, m->subject_len);
		k = *slot - 1;
		if (k == r)
			continue;
		imap_tree_merge(t, roots, r, &k, m);
		*slot = k + 1;
	}
	for (size_t r = 0; r < nr; r++)
		if (t->c[roots[r]].parent == TNONE)
			roots[w++] = roots[r];
	free(st.hk);
	free(st.hl);
	free(st.hv);
	free(rs);
	return w;
}

/* Render: a node prints its number; one child follows inline, several
 * each in parentheses.  Explicit stack: items are containers, or
 * TNONE - 1 / TNONE - 2 for "(" / ")". */
#define TOPEN (TNONE - 1)
#define TCLOSE (TNONE - 2)

static void
imap_tree_render(const struct imap_tree *t, const size_t *roots, size_t nr, struct buf *out)
{
	size_t cap = 3 * t->n + 3 * nr + 4, sp = 0;
	size_t *st = xcalloc(cap, sizeof(*st));

	for (size_t r = nr; r-- > 0;) {
		st[sp++] = TCLOSE;
		st[sp++] = roots[r];
		st[sp++] = TOPEN;
	}
	while (sp > 0) {
		size_t c = st[--sp], k, nk = 0;
		bool printed = false;

		if (c == TOPEN || c == TCLOSE) {
			buf_putc(out, c == TOPEN ? '(' : ')');
			continue;
		}
		if (t->c[c].msg != TNONE) {
			buf_printf(out, "%u", t->m[t->c[c].msg].num);
			printed = true;
		}
		for (k = t->c[c].child; k != TNONE; k = t->c[k].next)
			nk++;
		if (nk == 0)
			continue;
		if (printed)
			buf_putc(out, ' ');
		if (nk == 1) {
			st[sp++] = t->c[c].child;
			continue;
		}
		/* push in reverse: collect then push */
		size_t base = sp;

		for (k = t->c[c].child; k != TNONE; k = t->c[k].next) {
			st[sp++] = TCLOSE;
			st[sp++] = k;
			st[sp++] = TOPEN;
		}
		/* reverse the triples so the first child comes out first */
		for (size_t a = base, b = sp - 3; a < b; a += 3, b -= 3)
			for (size_t q = 0; q < 3; q++) {
				size_t tmp = st[a + q];

				st[a + q] = st[b + q];
				st[b + q] = tmp;
			}
	}
	free(st);
}

static void
imap_tree_free(struct imap_tree *t)
{
	free(t->c);
	free(t->hk);
	free(t->hl);
	free(t->hv);
}

void
imap_thread_references(const struct imap_thread_msg *m, size_t n, struct buf *out)
{
	struct imap_tree t = { 0 };
	size_t nr = 0, *roots;

	t.m = m;
	for (size_t i = 0; i < n; i++)
		imap_tree_add(&t, i);
	/* 2, 3: the roots; the id table is no longer needed */
	roots = xcalloc(t.n + 1, sizeof(*roots));
	for (size_t c = 0; c < t.n; c++)
		if (t.c[c].parent == TNONE)
			roots[nr++] = c;
	nr = imap_tree_prune(&t, roots, nr);
	imap_tree_sort_all(&t, roots, nr);
	nr = imap_tree_group(&t, roots, nr);
	imap_tree_sort_all(&t, roots, nr);
	imap_tree_render(&t, roots, nr, out);
	free(roots);
	imap_tree_free(&t);
}

static const struct imap_thread_msg *imap_os_m;

static int
imap_os_cmp(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	const struct imap_thread_msg *p = &imap_os_m[x], *q = &imap_os_m[y];
	size_t l = p->subject_len < q->subject_len ? p->subject_len : q->subject_len;
	int c = memcmp(p->subject, q->subject, l);

	if (c != 0)
		return c;
	if (p->subject_len != q->subject_len)
		return p->subject_len < q->subject_len ? -1 : 1;
	if (p->sent != q->sent)
		return p->sent < q->sent ? -1 : 1;
	return x < y ? -1 : (x > y ? 1 : 0);
}

void
imap_thread_orderedsubject(const struct imap_thread_msg *m, size_t n, struct buf *out)
{
	struct imap_tree t = { 0 };
	size_t *ix = xcalloc(n + 1, sizeof(*ix)), *roots = xcalloc(n + 1, sizeof(*roots)), nr = 0;

	t.m = m;
	for (size_t i = 0; i < n; i++) {
		imap_tree_new(&t, i);
		ix[i] = i;
	}
	imap_os_m = m;
	qsort(ix, n, sizeof(*ix), imap_os_cmp);
	imap_os_m = NULL;
	/* the first of each subject is the parent of the others */
	for (size_t i = 0; i < n; i++) {
		const struct imap_thread_msg *p = nr > 0 ? &m[roots[nr - 1]] : NULL, *q = &m[ix[i]];

		if (p != NULL && p->subject_len == q->subject_len &&
		    memcmp(p->subject, q->subject, q->subject_len) == 0)
			imap_tree_link(&t, roots[nr - 1], ix[i]);
		else
			roots[nr++] = ix[i];
	}
	imap_tree_sort_all(&t, roots, nr);
	imap_tree_render(&t, roots, nr, out);
	free(ix);
	free(roots);
	imap_tree_free(&t);
}
