/*
 * lmtp_parse.c - LMTP command lines, the DATA decoder and recipient
 * splitting (see lmtp_parse.h).  No I/O, no allocation but the DATA
 * decoder's output buffer: every input is a byte string of known
 * length that may contain anything.
 */
#include "lmtp/lmtp_parse.h"

#include "lib/str.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	enum lmtp_verb verb;
} lmtp_verbs[] = {
	{ "LHLO", LMTP_LHLO }, { "HELO", LMTP_HELO }, { "EHLO", LMTP_EHLO },
	{ "MAIL", LMTP_MAIL }, { "RCPT", LMTP_RCPT }, { "DATA", LMTP_DATA },
	{ "BDAT", LMTP_BDAT }, { "RSET", LMTP_RSET }, { "NOOP", LMTP_NOOP },
	{ "QUIT", LMTP_QUIT }, { "VRFY", LMTP_VRFY }, { "EXPN", LMTP_EXPN },
	{ "HELP", LMTP_HELP }, { "STARTTLS", LMTP_STARTTLS },
};

const char *
lmtp_verb_name(enum lmtp_verb v)
{
	for (size_t i = 0; i < sizeof(lmtp_verbs) / sizeof(lmtp_verbs[0]); i++)
		if (lmtp_verbs[i].verb == v)
			return lmtp_verbs[i].name;
	return "UNKNOWN";
}

static int
lmtp_reply(char *reply, size_t size, const char *text)
{
	str_lcpy(reply, text, size);
	return -1;
}

static bool
lmtp_is_ctl(unsigned char c)
{
	return c < 0x20 || c == 0x7f;
}

/* RFC 5322 atext, plus 8-bit bytes (UTF-8 local parts are delivered as they come). */
static bool
lmtp_is_atext(unsigned char c)
{
	if (c >= 0x80)
		return true;
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL;
}

static bool
lmtp_is_domain_c(unsigned char c)
{
	return c >= 0x80 || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/* Is p[0..n) valid UTF-8 (no overlong forms, surrogates or values past
 * U+10FFFF)?  Addresses with 8-bit bytes must be (RFC 6531 3.3). */
static bool
lmtp_utf8_ok(const char *p, size_t n)
{
	const unsigned char *s = (const unsigned char *)p;
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		size_t len;
		uint32_t v;

		if (c < 0x80) {
			i++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			len = 2;
			v = c & 0x1f;
		} else if (c >= 0xe0 && c <= 0xef) {
			len = 3;
			v = c & 0x0f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			len = 4;
			v = c & 0x07;
		} else {
			return false;
		}
		if (n - i < len)
			return false;
		for (size_t k = 1; k < len; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			v = (v << 6) | (s[i + k] & 0x3f);
		}
		if ((len == 3 && (v < 0x800 || (v >= 0xd800 && v <= 0xdfff))) ||
		    (len == 4 && (v < 0x10000 || v > 0x10ffff)))
			return false;
		i += len;
	}
	return true;
}

/*
 * Parse "<...>" at p (p < end).  On success *next is the first byte
 * after '>'.  is_mail selects the error text and allows the null path.
 */
static int
lmtp_parse_path(const char *p, const char *end, const char **next, struct lmtp_cmd *cmd,
	bool is_mail, char *reply, size_t rsize)
{
	const char *bad = is_mail ? "501 5.1.7 Bad sender address syntax" :
				    "501 5.1.3 Bad recipient address syntax";
	const char *start;
	size_t ln = 0, dn = 0;

	cmd->path[0] = cmd->local[0] = cmd->domain[0] = '\0';
	if (p >= end || *p != '<')
		return lmtp_reply(reply, rsize, bad);
	p++;
	if (p < end && *p == '>') {
		if (!is_mail)
			return lmtp_reply(reply, rsize, bad);
		*next = p + 1;
		return 0;
	}
	if (p < end && *p == '@') {
		/* source route "@a,@b:" - obsolete, skipped (RFC 5321 section 4.1.2) */
		while (p < end && *p != ':' && *p != '>') {
			if (*p != '@' && *p != ',' && *p != '[' && *p != ']' && *p != ':' &&
			    !lmtp_is_domain_c((unsigned char)*p))
				return lmtp_reply(reply, rsize, bad);
			p++;
		}
		if (p >= end || *p != ':')
			return lmtp_reply(reply, rsize, bad);
		p++;
	}
	start = p;
	if (p < end && *p == '"') {
		p++;
		for (;;) {
			if (p >= end)
				return lmtp_reply(reply, rsize, bad);
			if (*p == '"')
				break;
			if (*p == '\\') {
				p++;
				if (p >= end || lmtp_is_ctl((unsigned char)*p))
					return lmtp_reply(reply, rsize, bad);
			} else if (lmtp_is_ctl((unsigned char)*p)) {
				return lmtp_reply(reply, rsize, bad);
			}
			if (ln >= LMTP_LOCAL_MAX)
				return lmtp_reply(reply, rsize, bad);
			cmd->local[ln++] = *p++;
		}
		p++;
		if (ln == 0)
			return lmtp_reply(reply, rsize, bad);
	} else {
		while (p < end && (lmtp_is_atext((unsigned char)*p) || *p == '.')) {
			if (ln >= LMTP_LOCAL_MAX)
				return lmtp_reply(reply, rsize, bad);
			cmd->local[ln++] = *p++;
		}
		if (ln == 0 || cmd->local[0] == '.' || cmd->local[ln - 1] == '.')
			return lmtp_reply(reply, rsize, bad);
		for (size_t i = 1; i < ln; i++)
			if (cmd->local[i] == '.' && cmd->local[i - 1] == '.')
				return lmtp_reply(reply, rsize, bad);
	}
	cmd->local[ln] = '\0';
	if (p < end && *p == '@') {
		p++;
		if (p < end && *p == '[') {
			/* address literals: [192.0.2.1], [IPv6:2001:db8::1] */
			cmd->domain[dn++] = *p++;
			while (p < end && *p != ']') {
				char c = *p;

				if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
				      (c >= '0' && c <= '9') || c == '.' || c == ':' || c == '-') ||
				    dn >= LMTP_DOMAIN_MAX)
					return lmtp_reply(reply, rsize, bad);
				cmd->domain[dn++] = *p++;
			}
			if (p >= end || dn < 2 || dn >= LMTP_DOMAIN_MAX)
				return lmtp_reply(reply, rsize, bad);
			cmd->domain[dn++] = *p++;
		} else {
			while (p < end && lmtp_is_domain_c((unsigned char)*p)) {
				if (dn >= LMTP_DOMAIN_MAX)
					return lmtp_reply(reply, rsize, bad);
				cmd->domain[dn++] = *p++;
			}
			if (dn == 0 || cmd->domain[0] == '.' || cmd->domain[0] == '-' ||
			    cmd->domain[dn - 1] == '-')
				return lmtp_reply(reply, rsize, bad);
			for (size_t i = 1; i < dn; i++)
				if (cmd->domain[i] == '.' && cmd->domain[i - 1] == '.')
					return lmtp_reply(reply, rsize, bad);
			if (cmd->domain[dn - 1] == '.')
				dn--;  /* a trailing root dot is harmless */
			if (dn == 0)
				return lmtp_reply(reply, rsize, bad);
		}
		cmd->domain[dn] = '\0';
	}
	if (p >= end || *p != '>')
		return lmtp_reply(reply, rsize, bad);
	if ((size_t)(p - start) > LMTP_PATH_MAX || !lmtp_utf8_ok(start, (size_t)(p - start)))
		return lmtp_reply(reply, rsize, bad);
	memcpy(cmd->path, start, (size_t)(p - start));
	cmd->path[p - start] = '\0';
	*next = p + 1;
	return 0;
}

static bool
lmtp_digits_u64(const char *p, size_t n, uint64_t *out)
{
	uint64_t v = 0;

	if (n == 0 || n > 20)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		if (v > (UINT64_MAX - (uint64_t)(p[i] - '0')) / 10)
			return false;
		v = v * 10 + (uint64_t)(p[i] - '0');
	}
	*out = v;
	return true;
}

static bool
lmtp_word_eq(const char *p, size_t n, const char *word)
{
	size_t wn = strlen(word);

	if (n != wn)
		return false;
	for (size_t i = 0; i < n; i++)
		if (str_upper_c(p[i]) != word[i])
			return false;
	return true;
}

/* ESMTP parameters after a path: " KEY[=VALUE]" ... */
static int
lmtp_parse_params(const char *p, const char *end, struct lmtp_cmd *cmd, bool is_mail, char *reply,
	size_t rsize)
{
	const char *syntax = is_mail ? "501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]" :
				       "501 5.5.4 Syntax: RCPT TO:<address>";
	bool seen_body = false, seen_utf8 = false;

	while (p < end) {
		const char *k, *eq = NULL, *v;
		size_t kn, vn;

		if (*p != ' ')
			return lmtp_reply(reply, rsize, syntax);
		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			break;
		k = p;
		while (p < end && *p != ' ') {
			if (*p == '=' && eq == NULL)
				eq = p;
			else if (lmtp_is_ctl((unsigned char)*p) || (unsigned char)*p >= 0x80)
				return lmtp_reply(reply, rsize, syntax);
			p++;
		}
		kn = (size_t)((eq != NULL ? eq : p) - k);
		v = eq != NULL ? eq + 1 : p;
		vn = (size_t)(p - v);
		for (size_t i = 0; i < kn; i++) {
			char c = k[i];
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			      (c == '-' && i > 0)))
				return lmtp_reply(reply, rsize, syntax);
		}
		if (kn == 0 || (eq != NULL && vn == 0))
			return lmtp_reply(reply, rsize, syntax);
		if (is_mail && lmtp_word_eq(k, kn, "SIZE")) {
			uint64_t sz;

			if (cmd->has_size || eq == NULL)
				return lmtp_reply(reply, rsize, syntax);
			if (!lmtp_digits_u64(v, vn, &sz)) {
				/* all digits but too large for 64 bits: as good as infinite */
				bool digits = vn > 0;
				for (size_t i = 0; i < vn; i++)
					digits = digits && v[i] >= '0' && v[i] <= '9';
				if (!digits)
					return lmtp_reply(reply, rsize, syntax);
				sz = UINT64_MAX;
			}
			cmd->has_size = true;
			cmd->size = sz;
		} else if (is_mail && lmtp_word_eq(k, kn, "BODY")) {
			if (seen_body || eq == NULL)
				return lmtp_reply(reply, rsize, syntax);
			seen_body = true;
			if (lmtp_word_eq(v, vn, "7BIT"))
				cmd->body = LMTP_BODY_7BIT;
			else if (lmtp_word_eq(v, vn, "8BITMIME"))
				cmd->body = LMTP_BODY_8BITMIME;
			else
				return lmtp_reply(reply, rsize, "555 5.5.4 Unsupported BODY type");
		} else if (is_mail && lmtp_word_eq(k, kn, "SMTPUTF8")) {
			if (seen_utf8 || eq != NULL)
				return lmtp_reply(reply, rsize, syntax);
			seen_utf8 = true;
			cmd->smtputf8 = true;
		} else {
			char r[128];

			snprintf(r, sizeof(r), "555 5.5.4 Unsupported parameter %.*s",
				(int)(kn > 40 ? 40 : kn), k);
			return lmtp_reply(reply, rsize, r);
		}
	}
	return 0;
}

/* Does the argument text contain bytes a command argument must not? */
static bool
lmtp_arg_bad(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (lmtp_is_ctl((unsigned char)p[i]) && p[i] != '\t')
			return true;
	return false;
}

int
lmtp_parse_command(const char *line, size_t len, struct lmtp_cmd *cmd, char *reply,
	size_t reply_size)
{
	const char *end, *p, *args;
	size_t vn, an;

	if (line == NULL) {
		line = "";
		len = 0;
	}
	end = line + len;
	memset(cmd, 0, sizeof(*cmd));
	for (vn = 0; vn < len && line[vn] != ' '; vn++)
		;
	for (size_t i = 0; i < sizeof(lmtp_verbs) / sizeof(lmtp_verbs[0]); i++)
		if (lmtp_word_eq(line, vn, lmtp_verbs[i].name))
			cmd->verb = lmtp_verbs[i].verb;
	if (cmd->verb == LMTP_UNKNOWN)
		return lmtp_reply(reply, reply_size, "500 5.5.2 Syntax error, command unrecognized");
	args = vn < len ? line + vn + 1 : end;   /* after one blank */
	an = (size_t)(end - args);
	cmd->arg = args;
	cmd->arg_len = an;

	switch (cmd->verb) {
	case LMTP_LHLO:
	case LMTP_HELO:
	case LMTP_EHLO:
		while (an > 0 && args[an - 1] == ' ')
			an--;
		cmd->arg_len = an;
		if (an == 0 || an > 255 || lmtp_arg_bad(args, an) || str_mem_has(args, an, ' '))
			return lmtp_reply(reply, reply_size, "501 5.5.4 Syntax: LHLO hostname");
		return 0;
	case LMTP_MAIL:
	case LMTP_RCPT: {
		bool is_mail = cmd->verb == LMTP_MAIL;
		const char *kw = is_mail ? "FROM:" : "TO:";
		size_t kwn = strlen(kw);

		if (an < kwn || !lmtp_word_eq(args, kwn, kw))
			return lmtp_reply(reply, reply_size, is_mail ?
				"501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]" :
				"501 5.5.4 Syntax: RCPT TO:<address>");
		p = args + kwn;
		while (p < end && *p == ' ')
			p++;
		if (lmtp_parse_path(p, end, &p, cmd, is_mail, reply, reply_size) < 0)
			return -1;
		return lmtp_parse_params(p, end, cmd, is_mail, reply, reply_size);
	}
	case LMTP_BDAT: {
		const char *sp;
		size_t n1;

		cmd->chunk = UINT64_MAX;
		sp = memchr(args, ' ', an);
		n1 = sp != NULL ? (size_t)(sp - args) : an;
		if (!lmtp_digits_u64(args, n1, &cmd->chunk)) {
			cmd->chunk = UINT64_MAX;
			return lmtp_reply(reply, reply_size, "501 5.5.4 Syntax: BDAT size [LAST]");
		}
		if (sp != NULL) {
			const char *w = sp + 1;
			size_t wn = (size_t)(end - w);

			if (!lmtp_word_eq(w, wn, "LAST"))
				return lmtp_reply(reply, reply_size, "501 5.5.4 Syntax: BDAT size [LAST]");
			cmd->last = true;
		}
		return 0;
	}
	case LMTP_DATA:
	case LMTP_RSET:
	case LMTP_QUIT:
	case LMTP_STARTTLS:
		if (vn < len) {
			char r[64];

			snprintf(r, sizeof(r), "501 5.5.4 Syntax: %s", lmtp_verb_name(cmd->verb));
			return lmtp_reply(reply, reply_size, r);
		}
		return 0;
	case LMTP_VRFY:
	case LMTP_EXPN:
		if (an == 0 || lmtp_arg_bad(args, an)) {
			char r[64];

			snprintf(r, sizeof(r), "501 5.5.4 Syntax: %s address", lmtp_verb_name(cmd->verb));
			return lmtp_reply(reply, reply_size, r);
		}
		return 0;
	case LMTP_NOOP:
	case LMTP_HELP:
	case LMTP_UNKNOWN:
		return 0;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* DATA decoder                                                        */

enum {
	LMTP_D_BOL = 0,   /* at the start of a line (after CRLF, or at the start) */
	LMTP_D_MID,       /* inside a line */
	LMTP_D_CR,        /* after a CR inside a line (a LF now ends the line) */
	LMTP_D_DOT,       /* a '.' at the start of a line, held back */
	LMTP_D_DOTCR,     /* ".\r" at the start of a line, held back */
};

void
lmtp_data_init(struct lmtp_data *d)
{
	memset(d, 0, sizeof(*d));
	d->state = LMTP_D_BOL;
}

static void
lmtp_data_emit(struct lmtp_data *d, const char *p, size_t n, struct buf *out, size_t limit)
{
	d->size += n;
	if (out->len < limit) {
		size_t room = limit - out->len;
		buf_append(out, p, n < room ? n : room);
	}
}

size_t
lmtp_data_feed(struct lmtp_data *d, const char *p, size_t n, struct buf *out, size_t limit)
{
	size_t i = 0;

	while (i < n && !d->done) {
		char c = p[i];

		switch (d->state) {
		case LMTP_D_MID: {
			/* fast path: copy up to the next CR in one go */
			const char *cr = memchr(p + i, '\r', n - i);
			size_t run = cr != NULL ? (size_t)(cr - (p + i)) : n - i;

			if (run > 0) {
				lmtp_data_emit(d, p + i, run, out, limit);
				i += run;
				continue;
			}
			lmtp_data_emit(d, "\r", 1, out, limit);
			d->state = LMTP_D_CR;
			i++;
			break;
		}
		case LMTP_D_BOL:
			if (c == '.') {
				d->state = LMTP_D_DOT;
			} else {
				lmtp_data_emit(d, &c, 1, out, limit);
				d->state = c == '\r' ? LMTP_D_CR : LMTP_D_MID;
			}
			i++;
			break;
		case LMTP_D_CR:
			lmtp_data_emit(d, &c, 1, out, limit);
			d->state = c == '\n' ? LMTP_D_BOL : c == '\r' ? LMTP_D_CR : LMTP_D_MID;
			i++;
			break;
		case LMTP_D_DOT:
			if (c == '\r') {
				d->state = LMTP_D_DOTCR;
			} else {
				/* ".x": the stuffed dot goes, x stays */
				lmtp_data_emit(d, &c, 1, out, limit);
				d->state = LMTP_D_MID;
			}
			i++;
			break;
		case LMTP_D_DOTCR:
			if (c == '\n') {
				d->done = true;
			} else {
				/* ".\rx": the dot goes, "\r" and x stay */
				lmtp_data_emit(d, "\r", 1, out, limit);
				lmtp_data_emit(d, &c, 1, out, limit);
				d->state = c == '\r' ? LMTP_D_CR : LMTP_D_MID;
			}
			i++;
			break;
		}
	}
	return i;
}

/* ------------------------------------------------------------------ */
/* Recipients                                                          */

int
lmtp_parse_rcpt_split(const char *local, const char *domain, char *login, size_t login_size,
	char *detail, size_t detail_size)
{
	const char *plus = strchr(local, '+');
	size_t un = plus != NULL ? (size_t)(plus - local) : strlen(local);
	size_t dn = domain != NULL ? strlen(domain) : 0;

	login[0] = detail[0] = '\0';
	if (un + (dn > 0 ? dn + 1 : 0) >= login_size)
		return -1;
	memcpy(login, local, un);
	login[un] = '\0';
	if (dn > 0) {
		login[un] = '@';
		memcpy(login + un + 1, domain, dn);
		login[un + 1 + dn] = '\0';
	}
	if (plus != NULL && str_lcpy(detail, plus + 1, detail_size) >= detail_size) {
		login[0] = detail[0] = '\0';
		return -1;
	}
	return 0;
}
