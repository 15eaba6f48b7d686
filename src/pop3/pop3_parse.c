/*
 * pop3_parse.c - POP3 command lines and the RETR/TOP encoder (see
 * pop3_parse.h).  No I/O: every input is a byte string of known length
 * that may contain anything.
 */
#include "pop3/pop3_parse.h"

#include "lib/str.h"

#include <stdio.h>
#include <string.h>

static const struct {
	const char *name;
	enum pop3_verb verb;
} pop3_verbs[] = {
	{ "USER", POP3_USER }, { "PASS", POP3_PASS }, { "APOP", POP3_APOP },
	{ "AUTH", POP3_AUTH }, { "CAPA", POP3_CAPA }, { "STLS", POP3_STLS },
	{ "STAT", POP3_STAT }, { "LIST", POP3_LIST }, { "UIDL", POP3_UIDL },
	{ "RETR", POP3_RETR }, { "TOP", POP3_TOP }, { "DELE", POP3_DELE },
	{ "RSET", POP3_RSET }, { "NOOP", POP3_NOOP }, { "QUIT", POP3_QUIT },
};

const char *
pop3_verb_name(enum pop3_verb v)
{
	for (size_t i = 0; i < sizeof(pop3_verbs) / sizeof(pop3_verbs[0]); i++)
		if (pop3_verbs[i].verb == v)
			return pop3_verbs[i].name;
	return "UNKNOWN";
}

static int
pop3_why(char *why, size_t size, const char *text)
{
	str_lcpy(why, text, size);
	return -1;
}

static bool
pop3_kw_eq(const char *p, size_t n, const char *kw)
{
	size_t kn = strlen(kw);

	if (n != kn)
		return false;
	for (size_t i = 0; i < n; i++)
		if (str_upper_c(p[i]) != kw[i])
			return false;
	return true;
}

/* Split the arguments (after the keyword) into at most max words. */
static size_t
pop3_words(const char *p, const char *end, const char **w, size_t *wn, size_t max, bool *extra)
{
	size_t n = 0;

	*extra = false;
	for (;;) {
		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			return n;
		if (n == max) {
			*extra = true;
			return n;
		}
		w[n] = p;
		while (p < end && *p != ' ')
			p++;
		wn[n] = (size_t)(p - w[n]);
		n++;
	}
}

/* Decimal digits only; 1 fits (value in *v, capped at cap when clamp), 0 not a number. */
static bool
pop3_number(const char *p, size_t n, uint64_t cap, bool clamp, uint32_t *v)
{
	uint64_t x = 0;

	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		if (x <= cap)
			x = x * 10 + (uint64_t)(p[i] - '0');
	}
	if (x > cap) {
		if (!clamp)
			return false;
		x = cap;
	}
	*v = (uint32_t)x;
	return true;
}

static bool
pop3_has_ctl(const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f)
			return true;
	return false;
}

int
pop3_parse_command(const char *line, size_t len, struct pop3_cmd *cmd, char *why, size_t why_size)
{
	const char *end, *args, *w[3];
	size_t vn, wn[3], n;
	bool extra;
	char msg[96];

	if (line == NULL) {
		line = "";
		len = 0;
	}
	end = line + len;
	memset(cmd, 0, sizeof(*cmd));
	cmd->arg = cmd->arg2 = "";
	for (vn = 0; vn < len && line[vn] != ' '; vn++)
		;
	for (size_t i = 0; i < sizeof(pop3_verbs) / sizeof(pop3_verbs[0]); i++)
		if (pop3_kw_eq(line, vn, pop3_verbs[i].name))
			cmd->verb = pop3_verbs[i].verb;
	if (cmd->verb == POP3_UNKNOWN)
		return pop3_why(why, why_size, "Unknown command");
	args = vn < len ? line + vn + 1 : end;

	switch (cmd->verb) {
	case POP3_PASS:
		/* the rest of the line, blanks included */
		if (args >= end)
			return pop3_why(why, why_size, "Syntax: PASS password");
		if ((size_t)(end - args) > POP3_ARG_MAX || pop3_has_ctl(args, (size_t)(end - args)))
			return pop3_why(why, why_size, "Invalid password");
		cmd->arg = args;
		cmd->arg_len = (size_t)(end - args);
		return 0;
	case POP3_USER:
		n = pop3_words(args, end, w, wn, 1, &extra);
		if (n != 1 || extra)
			return pop3_why(why, why_size, "Syntax: USER name");
		if (wn[0] > POP3_ARG_MAX || pop3_has_ctl(w[0], wn[0]))
			return pop3_why(why, why_size, "Invalid user name");
		cmd->arg = w[0];
		cmd->arg_len = wn[0];
		return 0;
	case POP3_APOP:
		return 0;  /* refused by the session whatever its arguments */
	case POP3_AUTH:
		n = pop3_words(args, end, w, wn, 2, &extra);
		if (extra)
			return pop3_why(why, why_size, "Syntax: AUTH [mechanism [initial-response]]");
		if (n >= 1) {
			if (wn[0] > 20 || pop3_has_ctl(w[0], wn[0]))
				return pop3_why(why, why_size, "Invalid mechanism");
			cmd->arg = w[0];
			cmd->arg_len = wn[0];
		}
		if (n == 2) {
			if (pop3_has_ctl(w[1], wn[1]))
				return pop3_why(why, why_size, "Invalid initial response");
			cmd->arg2 = w[1];
			cmd->arg2_len = wn[1];
		}
		return 0;
	case POP3_LIST:
	case POP3_UIDL:
		n = pop3_words(args, end, w, wn, 1, &extra);
		if (extra) {
			snprintf(msg, sizeof(msg), "Syntax: %s [msg]", pop3_verb_name(cmd->verb));
			return pop3_why(why, why_size, msg);
		}
		if (n == 0)
			return 0;
		if (!pop3_number(w[0], wn[0], POP3_MSGNUM_MAX, false, &cmd->msg) || cmd->msg == 0)
			return pop3_why(why, why_size, "No such message");
		cmd->has_msg = true;
		return 0;
	case POP3_RETR:
	case POP3_DELE:
		n = pop3_words(args, end, w, wn, 1, &extra);
		if (n != 1 || extra) {
			snprintf(msg, sizeof(msg), "Syntax: %s msg", pop3_verb_name(cmd->verb));
			return pop3_why(why, why_size, msg);
		}
		if (!pop3_number(w[0], wn[0], POP3_MSGNUM_MAX, false, &cmd->msg) || cmd->msg == 0)
			return pop3_why(why, why_size, "No such message");
		cmd->has_msg = true;
		return 0;
	case POP3_TOP:
		n = pop3_words(args, end, w, wn, 2, &extra);
		if (n != 2 || extra)
			return pop3_why(why, why_size, "Syntax: TOP msg lines");
		if (!pop3_number(w[0], wn[0], POP3_MSGNUM_MAX, false, &cmd->msg) || cmd->msg == 0)
			return pop3_why(why, why_size, "No such message");
		if (!pop3_number(w[1], wn[1], UINT32_MAX, true, &cmd->lines))
			return pop3_why(why, why_size, "Syntax: TOP msg lines");
		cmd->has_msg = true;
		return 0;
	case POP3_CAPA:
	case POP3_STLS:
	case POP3_STAT:
	case POP3_RSET:
	case POP3_NOOP:
	case POP3_QUIT:
		n = pop3_words(args, end, w, wn, 0, &extra);
		if (extra) {
			snprintf(msg, sizeof(msg), "Syntax: %s takes no arguments", pop3_verb_name(cmd->verb));
			return pop3_why(why, why_size, msg);
		}
		return 0;
	case POP3_UNKNOWN:
		break;
	}
	return pop3_why(why, why_size, "Unknown command");
}

void
pop3_parse_encode(struct buf *out, const char *msg, size_t len, int64_t body_lines)
{
	size_t i = 0;
	bool in_body = false;
	int64_t left = body_lines;

	buf_reserve(out, len + len / 32 + 16);
	while (i < len) {
		const char *nl = memchr(msg + i, '\n', len - i);
		size_t end = nl != NULL ? (size_t)(nl - msg) : len;
		size_t n = end - i;

		if (in_body && body_lines >= 0) {
			if (left == 0)
				break;
			left--;
		}
		if (n > 0 && msg[i + n - 1] == '\r')
			n--;
		if (n > 0 && msg[i] == '.')
			buf_putc(out, '.');
		buf_append(out, msg + i, n);
		buf_append(out, "\r\n", 2);
		if (n == 0 && !in_body)
			in_body = true;
		i = nl != NULL ? end + 1 : len;
	}
}
