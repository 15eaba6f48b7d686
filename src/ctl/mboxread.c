/*
 * mboxread.c - streaming reader for mbox files.  See mboxread.h for the
 * format accepted.
 *
 * The reader works line by line.  A line is complete at its LF; a line
 * that arrives split over several feeds is collected in `line`, a line
 * that arrives whole is processed in place.  A blank line inside a
 * message is held back (`pending_blank`) until the next line shows
 * whether it was body text or the blank that precedes a separator.
 */
#include "ctl/mboxread.h"

#include "lib/buf.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct mboxread {
	enum mboxread_format fmt;
	size_t max_msg;
	mboxread_cb *cb;
	void *ctx;

	struct buf line;        /* a line split over feeds, without its LF */
	uint64_t line_off;      /* input offset of the line in `line` */
	struct buf msg;         /* the current message, CRLF lines */
	bool in_msg;
	bool pending_blank;     /* a blank line seen, not yet added to msg */
	bool failed;

	char sender[256];
	time_t date;
	uint64_t sep_line;
	uint64_t sep_off;

	uint64_t lineno;        /* lines completed */
	uint64_t offset;        /* bytes consumed */
	uint64_t count;         /* messages delivered */
};

struct mboxread *
mboxread_new(enum mboxread_format fmt, size_t max_msg, mboxread_cb *cb, void *ctx)
{
	struct mboxread *r = xcalloc(1, sizeof(*r));

	r->fmt = fmt;
	r->max_msg = max_msg ? max_msg : (size_t)64 << 20;
	r->cb = cb;
	r->ctx = ctx;
	r->date = -1;
	return r;
}

void
mboxread_free(struct mboxread **rp)
{
	struct mboxread *r = *rp;

	if (r == NULL)
		return;
	buf_free(&r->line);
	buf_free(&r->msg);
	free(r);
	*rp = NULL;
}

uint64_t
mboxread_count(const struct mboxread *r)
{
	return r->count;
}

uint64_t
mboxread_offset(const struct mboxread *r)
{
	return r->offset;
}

/* ---- separator line ------------------------------------------------ */

struct tok {
	const char *p;
	size_t n;
};

static int
mboxread_lookup(const struct tok *t, const char *const *names)
{
	int i;

	if (t->n != 3)
		return -1;
	for (i = 0; names[i] != NULL; i++)
		if (str_lower_c(t->p[0]) == str_lower_c(names[i][0]) &&
		    str_lower_c(t->p[1]) == names[i][1] && str_lower_c(t->p[2]) == names[i][2])
			return i;
	return -1;
}

/* Parse a decimal of 1..maxdig digits covering the whole token. */
static int
mboxread_num(const char *p, size_t n, size_t maxdig, int *out)
{
	size_t i;
	int v = 0;

	if (n == 0 || n > maxdig)
		return -1;
	for (i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	*out = v;
	return 0;
}

/* "HH:MM" or "HH:MM:SS" */
static int
mboxread_time(const struct tok *t, int *h, int *m, int *s)
{
	const char *c1 = memchr(t->p, ':', t->n), *c2;

	if (c1 == NULL)
		return -1;
	if (mboxread_num(t->p, (size_t)(c1 - t->p), 2, h) < 0)
		return -1;
	c1++;
	c2 = memchr(c1, ':', t->n - (size_t)(c1 - t->p));
	*s = 0;
	if (c2 == NULL)
		return mboxread_num(c1, t->n - (size_t)(c1 - t->p), 2, m);
	if (mboxread_num(c1, (size_t)(c2 - c1), 2, m) < 0)
		return -1;
	c2++;
	return mboxread_num(c2, t->n - (size_t)(c2 - t->p), 2, s);
}

/* "+hhmm" / "-hhmm": offset in seconds east of UTC. */
static int
mboxread_tz(const struct tok *t, long *off)
{
	int v;

	if (t->n != 5 || (t->p[0] != '+' && t->p[0] != '-'))
		return -1;
	if (mboxread_num(t->p + 1, 4, 4, &v) < 0 || v % 100 >= 60 || v / 100 > 23)
		return -1;
	*off = (long)(v / 100 * 3600 + v % 100 * 60);
	if (t->p[0] == '-')
		*off = -*off;
	return 0;
}

static bool
mboxread_alpha_tok(const struct tok *t)
{
	size_t i;

	if (t->n < 1 || t->n > 5)
		return false;
	for (i = 0; i < t->n; i++)
		if (!((t->p[i] >= 'A' && t->p[i] <= 'Z') || (t->p[i] >= 'a' && t->p[i] <= 'z')))
			return false;
	return true;
}

int
mboxread_parse_from(const char *s, size_t n, char *sender_r, size_t sender_size, time_t *date_r)
{
	static const char *const wdays_l[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL };
	static const char *const months[] = { "jan", "feb", "mar", "apr", "may", "jun", "jul",
		"aug", "sep", "oct", "nov", "dec", NULL };
	struct tok t[24];
	size_t nt = 0, i = 0, k;

	while (i < n && nt < sizeof(t) / sizeof(t[0])) {
		while (i < n && (s[i] == ' ' || s[i] == '\t'))
			i++;
		if (i >= n)
			break;
		t[nt].p = s + i;
		while (i < n && s[i] != ' ' && s[i] != '\t')
			i++;
		t[nt].n = (size_t)(s + i - t[nt].p);
		nt++;
	}
	if (sender_size > 0) {
		size_t m = nt > 0 ? t[0].n : 0;
		if (m >= sender_size)
			m = sender_size - 1;
		if (m)
			memcpy(sender_r, t[0].p, m);
		sender_r[m] = '\0';
	}
	/* The date follows the sender, which may itself contain blanks
	 * (a quoted local part): look for "Wdy Mon" anywhere after token 0. */
	for (k = 1; k + 4 <= nt; k++) {
		struct tm tm;
		int mon, day, h, m, sec, year = -1;
		long off = 0;
		size_t j;
		time_t when;

		if (mboxread_lookup(&t[k], wdays_l) < 0)
			continue;
		mon = mboxread_lookup(&t[k + 1], months);
		if (mon < 0)
			continue;
		if (mboxread_num(t[k + 2].p, t[k + 2].n, 2, &day) < 0 || day < 1 || day > 31)
			continue;
		if (mboxread_time(&t[k + 3], &h, &m, &sec) < 0 || h > 23 || m > 59 || sec > 60)
			continue;
		/* then [TZ] YYYY [TZ], in either order */
		for (j = k + 4; j < nt && j < k + 7; j++) {
			int y;
			if (year < 0 && mboxread_num(t[j].p, t[j].n, 4, &y) == 0 && t[j].n == 4) {
				year = y;
				continue;
			}
			if (mboxread_tz(&t[j], &off) == 0)
				continue;
			if (mboxread_alpha_tok(&t[j]))
				continue;
			break;
		}
		if (year < 1970)
			continue;
		memset(&tm, 0, sizeof(tm));
		tm.tm_year = year - 1900;
		tm.tm_mon = mon;
		tm.tm_mday = day;
		tm.tm_hour = h;
		tm.tm_min = m;
		tm.tm_sec = sec > 59 ? 59 : sec;
		when = timegm(&tm);
		if (when == (time_t)-1)
			continue;
		*date_r = when - off;
		return 0;
	}
	return -1;
}

/* ---- line machine -------------------------------------------------- */

static int
mboxread_toobig(struct mboxread *r, struct err *err)
{
	r->failed = true;
	return err_set(err, ERR_TOOBIG, "message %llu (line %llu) is larger than %zu bytes",
	    (unsigned long long)r->count + 1, (unsigned long long)r->sep_line, r->max_msg);
}

static int
mboxread_end_msg(struct mboxread *r, struct err *err)
{
	struct mboxread_msg m;

	r->pending_blank = false;  /* the framing blank before the separator / at EOF */
	r->in_msg = false;
	if (r->msg.len == 0) {
		r->failed = true;
		return err_set(err, ERR_INVALID, "empty message %llu at line %llu",
		    (unsigned long long)r->count + 1, (unsigned long long)r->sep_line);
	}
	m.data = r->msg.data;
	m.len = r->msg.len;
	m.sender = r->sender;
	m.date = r->date;
	m.line = r->sep_line;
	m.offset = r->sep_off;
	m.index = r->count;
	if (r->cb != NULL && r->cb(&m, r->ctx, err) < 0) {
		r->failed = true;
		return -1;
	}
	r->count++;
	buf_reset(&r->msg);
	return 0;
}

static void
mboxread_start_msg(struct mboxread *r, const char *p, size_t n, uint64_t off)
{
	time_t d = -1;

	if (mboxread_parse_from(p + 5, n - 5, r->sender, sizeof(r->sender), &d) < 0)
		d = -1;
	r->date = d;
	r->sep_line = r->lineno;
	r->sep_off = off;
	r->in_msg = true;
	r->pending_blank = false;
	buf_reset(&r->msg);
}

static int
mboxread_add(struct mboxread *r, const char *p, size_t n, struct err *err)
{
	if (r->msg.len + n + 2 > r->max_msg)
		return mboxread_toobig(r, err);
	buf_reserve(&r->msg, n + 2);
	if (n)
		memcpy(r->msg.data + r->msg.len, p, n);
	r->msg.data[r->msg.len + n] = '\r';
	r->msg.data[r->msg.len + n + 1] = '\n';
	r->msg.len += n + 2;
	r->msg.data[r->msg.len] = '\0';
	return 0;
}

/* One complete line, without its LF. */
static int
mboxread_line(struct mboxread *r, const char *p, size_t n, uint64_t off, struct err *err)
{
	bool from;

	r->lineno++;
	if (n > 0 && p[n - 1] == '\r')
		n--;
	from = n >= 5 && memcmp(p, "From ", 5) == 0;
	if (!r->in_msg) {
		if (n == 0)
			return 0;
		if (!from) {
			r->failed = true;
			return err_set(err, ERR_INVALID, "not an mbox: line %llu does not start with \"From \"",
			    (unsigned long long)r->lineno);
		}
		mboxread_start_msg(r, p, n, off);
		return 0;
	}
	if (from) {
		char sender[8];
		time_t d;

		/* a separator is a well-formed "From SENDER DATE" line, as mutt
		 * and Dovecot read it: "From here on ..." after a blank line is
		 * body text of a message written without quoting */
		if (mboxread_parse_from(p + 5, n - 5, sender, sizeof(sender), &d) == 0) {
			if (mboxread_end_msg(r, err) < 0)
				return -1;
			mboxread_start_msg(r, p, n, off);
			return 0;
		}
	}
	if (n == 0) {
		if (r->pending_blank && mboxread_add(r, "", 0, err) < 0)
			return -1;
		r->pending_blank = true;
		return 0;
	}
	if (r->pending_blank) {
		if (mboxread_add(r, "", 0, err) < 0)
			return -1;
		r->pending_blank = false;
	}
	if (p[0] == '>') {
		size_t k = 1;
		while (k < n && p[k] == '>')
			k++;
		if (n - k >= 5 && memcmp(p + k, "From ", 5) == 0 &&
		    (r->fmt == MBOXREAD_MBOXRD || k == 1)) {
			p++;
			n--;
		}
	}
	return mboxread_add(r, p, n, err);
}

int
mboxread_feed(struct mboxread *r, const void *data, size_t len, struct err *err)
{
	const char *p = data;
	size_t pos = 0;

	if (r->failed)
		return err_set(err, ERR_INVALID, "mbox reader used after an error");
	while (pos < len) {
		const char *lf = memchr(p + pos, '\n', len - pos);
		size_t seg = lf ? (size_t)(lf - (p + pos)) : len - pos;
		int rc;

		if (r->line.len == 0)
			r->line_off = r->offset + pos;
		if (r->line.len + seg > r->max_msg + 2) {
			if (!r->in_msg)
				r->sep_line = r->lineno + 1;
			return mboxread_toobig(r, err);
		}
		if (lf == NULL) {
			buf_append(&r->line, p + pos, seg);
			pos = len;
			break;
		}
		if (r->line.len == 0) {
			rc = mboxread_line(r, p + pos, seg, r->line_off, err);
		} else {
			buf_append(&r->line, p + pos, seg);
			rc = mboxread_line(r, r->line.data, r->line.len, r->line_off, err);
			buf_reset(&r->line);
		}
		if (rc < 0)
			return -1;
		pos += seg + 1;
	}
	r->offset += len;
	return 0;
}

int
mboxread_finish(struct mboxread *r, struct err *err)
{
	if (r->failed)
		return err_set(err, ERR_INVALID, "mbox reader used after an error");
	if (r->line.len > 0) {
		if (mboxread_line(r, r->line.data, r->line.len, r->line_off, err) < 0)
			return -1;
		buf_reset(&r->line);
	}
	if (r->in_msg)
		return mboxread_end_msg(r, err);
	if (r->count == 0 && r->offset > 0) {
		r->failed = true;
		return err_set(err, ERR_INVALID, "not an mbox: no \"From \" separator line");
	}
	return 0;
}

int
mboxread_file(const char *path, enum mboxread_format fmt, size_t max_msg,
    mboxread_cb *cb, void *ctx, struct err *err)
{
	struct mboxread *r;
	char *chunk;
	int fd, rc = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_errno(err, errno == ENOENT ? ERR_NOTFOUND : ERR_PERM, "open %s", path);
	(void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
	r = mboxread_new(fmt, max_msg, cb, ctx);
	chunk = xmalloc(65536);
	for (;;) {
		ssize_t n = read(fd, chunk, 65536);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			rc = err_errno(err, ERR_TEMP, "read %s", path);
			break;
		}
		if (n == 0) {
			rc = mboxread_finish(r, err);
			break;
		}
		if (mboxread_feed(r, chunk, (size_t)n, err) < 0) {
			rc = -1;
			break;
		}
	}
	free(chunk);
	mboxread_free(&r);
	close(fd);
	return rc;
}
