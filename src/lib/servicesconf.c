/*
 * servicesconf.c - services.conf reader (the grammar of Cyrus's cyrus.conf).
 * See servicesconf.h for the grammar and docs/config.md for the keys.
 *
 * The file is read line by line; an entry never spans lines, so the
 * only state carried from one line to the next is the open section.
 * Each line's bytes are checked first (conf_line_check: no NUL or
 * control characters, valid UTF-8, bounded length), then tokenised:
 *
 *     top level:   SECTION '{'            (and '}' closes it again)
 *     in section:  NAME (KEY '=' VALUE)*  ... repeated, until '}' or EOL
 *     VALUE:       bare word | "quoted string" with \" and \\ escapes
 *
 * A word followed by '=' is a key of the current entry; any other word
 * starts a new entry.  Every value is checked as soon as it is read, and
 * an entry as a whole (cmd present, listen for SERVICES, ...) when it
 * ends.  The first problem rejects the file: "FILE:LINE:COL: reason",
 * columns being 1-based byte offsets in the line.  To point inside a
 * quoted value (a bad listen address, an unterminated quote in cmd) each
 * decoded value keeps the source column of every byte.
 */
#include "lib/servicesconf.h"
#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/netaddr.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCONF_NAME_MAX 64
#define SCONF_ENTRIES_MAX 10000     /* duplicate detection is quadratic */

enum svc_key {
	K_CMD, K_LISTEN, K_TLS, K_PREFORK, K_MAXCHILD, K_MAXFORKRATE, K_MAXUSE,
	K_PERIOD, K_AT, K_TIMEOUT, K_MAXPERIP, K_MAXIDLE, K_PROTO, K_COUNT
};

static const char *const svc_key_names[K_COUNT] = {
	"cmd", "listen", "tls", "prefork", "maxchild", "maxforkrate", "maxuse",
	"period", "at", "timeout", "maxperip", "maxidle", "proto",
};

#define KB(k) (1u << (k))
static const struct {
	const char *name;
	unsigned keys;        /* bit set of enum svc_key */
} svc_sections[] = {
	[SCONF_START] = { "START", KB(K_CMD) | KB(K_TIMEOUT) },
	[SCONF_SERVICES] = { "SERVICES", KB(K_CMD) | KB(K_LISTEN) | KB(K_TLS) | KB(K_PREFORK) | KB(K_MAXCHILD) |
	    KB(K_MAXFORKRATE) | KB(K_MAXUSE) | KB(K_MAXPERIP) | KB(K_MAXIDLE) | KB(K_PROTO) },
	[SCONF_EVENTS] = { "EVENTS", KB(K_CMD) | KB(K_PERIOD) | KB(K_AT) | KB(K_TIMEOUT) },
	[SCONF_DAEMON] = { "DAEMON", KB(K_CMD) },
	[SCONF_SHUTDOWN] = { "SHUTDOWN", KB(K_CMD) | KB(K_TIMEOUT) },
};
#define SCONF_NSECTIONS (sizeof(svc_sections) / sizeof(svc_sections[0]))

const char *
svc_section_name(enum svc_section s)
{
	if ((size_t)s < SCONF_NSECTIONS)
		return svc_sections[s].name;
	return "?";
}

/* A decoded value and the 1-based source column of each of its bytes;
 * cols[len] is the column just after the value. */
struct svc_val {
	char *s;
	size_t len;
	size_t *cols;
};

struct svc_parser {
	const char *name;
	struct servicesconf *conf;
	struct err *err;
	size_t cap;
	int line;
	bool in_section;
	enum svc_section sec;
	int sec_line;
	/* the entry being read on this line, or -1 */
	long cur;
	size_t name_col, name_end_col;
	int npairs;
	bool have[K_COUNT];
	size_t key_col[K_COUNT];
	size_t val_col[K_COUNT];
};

static int
svc_fail(struct svc_parser *ps, size_t col, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int
svc_fail(struct svc_parser *ps, size_t col, const char *fmt, ...)
{
	char why[ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return err_set(ps->err, ERR_INVALID, "%s:%d:%zu: %s", ps->name, ps->line, col, why);
}

static bool
svc_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool
svc_is_name_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

/* ASCII case-insensitive comparison of n bytes. */
static bool
svc_ncase_eq(const char *a, const char *b, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (str_lower_c(a[i]) != str_lower_c(b[i]))
			return false;
	return true;
}

/* Printable ASCII allowed in an unquoted value. */
static bool
svc_is_bare_char(char c)
{
	return c > 0x20 && c < 0x7f && c != '"' && c != '\'' && c != '=' && c != '{' && c != '}' && c != '#' &&
	    c != '\\';
}

/* ---- argv splitting ---- */

void
servicesconf_argv_free(char **argv)
{
	size_t i;

	if (argv == NULL)
		return;
	for (i = 0; argv[i] != NULL; i++)
		free(argv[i]);
	free(argv);
}

int
servicesconf_split_argv(const char *cmd, char ***argv_r, int *argc_r, size_t *pos_r, struct err *err)
{
	struct buf w = BUF_INIT;
	char **argv = xcalloc(1, sizeof(*argv));
	int argc = 0;
	bool in_word = false;
	size_t i = 0, q;

	for (;;) {
		char c = cmd[i];
		if (c == '\0' || svc_is_blank(c)) {
			if (in_word) {
				argv = xreallocarray(argv, (size_t)argc + 2, sizeof(*argv));
				argv[argc++] = xstrndup(w.data != NULL ? w.data : "", w.len);
				argv[argc] = NULL;
				buf_reset(&w);
				in_word = false;
			}
			if (c == '\0')
				break;
			i++;
			continue;
		}
		in_word = true;
		if (c == '\\') {
			if (cmd[i + 1] == '\0') {
				if (pos_r != NULL)
					*pos_r = i;
				err_set(err, ERR_INVALID, "backslash at the end of cmd");
				goto fail;
			}
			buf_putc(&w, cmd[i + 1]);
			i += 2;
		} else if (c == '"') {
			q = i++;
			while (cmd[i] != '"') {
				if (cmd[i] == '\0') {
					if (pos_r != NULL)
						*pos_r = q;
					err_set(err, ERR_INVALID, "unterminated double quote in cmd");
					goto fail;
				}
				if (cmd[i] == '\\' && (cmd[i + 1] == '"' || cmd[i + 1] == '\\'))
					i++;
				buf_putc(&w, cmd[i++]);
			}
			i++;
		} else if (c == '\'') {
			q = i++;
			while (cmd[i] != '\'') {
				if (cmd[i] == '\0') {
					if (pos_r != NULL)
						*pos_r = q;
					err_set(err, ERR_INVALID, "unterminated single quote in cmd");
					goto fail;
				}
				buf_putc(&w, cmd[i++]);
			}
			i++;
		} else {
			buf_putc(&w, c);
			i++;
		}
	}
	buf_free(&w);
	if (argc == 0) {
		if (pos_r != NULL)
			*pos_r = 0;
		servicesconf_argv_free(argv);
		return err_set(err, ERR_INVALID, "empty cmd");
	}
	*argv_r = argv;
	*argc_r = argc;
	return 0;
fail:
	buf_free(&w);
	servicesconf_argv_free(argv);
	return -1;
}

/* ---- entries ---- */

static void
svc_entry_free(struct servicesconf_entry *e)
{
	free(e->name);
	free(e->cmd);
	servicesconf_argv_free(e->argv);
	free(e->listen);
}

void
servicesconf_free(struct servicesconf *conf)
{
	size_t i;

	if (conf == NULL)
		return;
	for (i = 0; i < conf->n; i++)
		svc_entry_free(&conf->entries[i]);
	free(conf->entries);
	free(conf->filename);
	free(conf);
}

const struct servicesconf_entry *
servicesconf_find(const struct servicesconf *conf, const char *name)
{
	size_t i;

	if (conf == NULL || name == NULL)
		return NULL;
	for (i = 0; i < conf->n; i++)
		if (str_eq_ci(conf->entries[i].name, name))
			return &conf->entries[i];
	return NULL;
}

/* Start a new entry named p[0..n) at column col. */
static int
svc_entry_start(struct svc_parser *ps, const char *p, size_t n, size_t col)
{
	struct servicesconf_entry *e;
	char show[200];
	size_t i;

	if (n > SCONF_NAME_MAX)
		return svc_fail(ps, col, "entry name longer than %d bytes", SCONF_NAME_MAX);
	if (ps->conf->n == SCONF_ENTRIES_MAX)
		return svc_fail(ps, col, "too many entries (more than %d)", SCONF_ENTRIES_MAX);
	for (i = 0; i < ps->conf->n; i++) {
		const char *o = ps->conf->entries[i].name;
		if (strlen(o) == n && svc_ncase_eq(o, p, n))
			return svc_fail(ps, col, "duplicate entry name '%s' (first defined at line %d)",
			    conf_show(p, n, show, sizeof(show)), ps->conf->entries[i].line);
	}
	if (ps->conf->n == ps->cap) {
		ps->cap = ps->cap ? ps->cap * 2 : 16;
		ps->conf->entries = xreallocarray(ps->conf->entries, ps->cap, sizeof(*ps->conf->entries));
	}
	e = &ps->conf->entries[ps->conf->n];
	memset(e, 0, sizeof(*e));
	e->section = ps->sec;
	e->name = xstrndup(p, n);
	e->prefork = 0;
	e->maxchild = -1;
	e->maxforkrate = 0;
	e->maxuse = 250;
	e->maxperip = 0;
	e->maxidle = -1;
	e->proto = SCONF_PROTO_AUTO;
	e->period = 0;
	e->at = -1;
	e->timeout = 60;
	e->line = ps->line;
	ps->cur = (long)ps->conf->n;
	ps->conf->n++;
	ps->name_col = col;
	ps->name_end_col = col + n;
	ps->npairs = 0;
	memset(ps->have, 0, sizeof(ps->have));
	return 0;
}

/* The entry in hand is complete: check it as a whole. */
static int
svc_entry_end(struct svc_parser *ps)
{
	struct servicesconf_entry *e;
	size_t k;

	if (ps->cur < 0)
		return 0;
	e = &ps->conf->entries[ps->cur];
	ps->cur = -1;
	if (ps->npairs == 0) {
		for (k = 0; k < K_COUNT; k++)
			if (str_eq(e->name, svc_key_names[k]))
				return svc_fail(ps, ps->name_end_col, "expected '=' after key '%s'", e->name);
	}
	if (!ps->have[K_CMD])
		return svc_fail(ps, ps->name_col, "entry '%s' has no cmd=", e->name);
	if (e->section == SCONF_SERVICES && !ps->have[K_LISTEN])
		return svc_fail(ps, ps->name_col, "service '%s' has no listen=", e->name);
	if (e->section == SCONF_EVENTS) {
		if (!ps->have[K_PERIOD] && !ps->have[K_AT])
			return svc_fail(ps, ps->name_col, "event '%s' needs period= or at=", e->name);
		if (ps->have[K_PERIOD] && ps->have[K_AT])
			return svc_fail(ps, ps->key_col[K_AT] > ps->key_col[K_PERIOD] ? ps->key_col[K_AT] : ps->key_col[K_PERIOD],
			    "event '%s' has both period= and at=; give one", e->name);
	}
	if (e->section == SCONF_SERVICES && e->maxchild > 0 && e->prefork > e->maxchild)
		return svc_fail(ps, ps->val_col[K_PREFORK], "prefork=%d exceeds maxchild=%d", e->prefork, e->maxchild);
	return 0;
}

/* Parse v as a decimal integer in [min,max] (an optional '-' allowed). */
static int
svc_number(const struct svc_val *v, long min, long max, int *out)
{
	int64_t x;

	if (v->len == 0 || v->len > 12 || !((v->s[0] >= '0' && v->s[0] <= '9') || v->s[0] == '-'))
		return -1;
	if (str_to_i64_range(v->s, min, max, &x) < 0)
		return -1;
	*out = (int)x;
	return 0;
}

/* Apply key k = v to the entry in hand. */
static int
svc_apply(struct svc_parser *ps, enum svc_key k, struct svc_val *v, size_t vcol)
{
	struct servicesconf_entry *e = &ps->conf->entries[ps->cur];
	char show[200], why[ERR_MSG_MAX];
	struct err e2;
	struct netaddr na;
	size_t pos = 0;
	bool b;

	conf_show(v->s, v->len, show, sizeof(show));
	switch (k) {
	case K_CMD:
		if (servicesconf_split_argv(v->s, &e->argv, &e->argc, &pos, &e2) < 0)
			return svc_fail(ps, v->len == 0 ? vcol : v->cols[pos], "%s", e2.msg);
		e->cmd = xstrdup(v->s);
		break;
	case K_LISTEN:
		if (netaddr_parse_pos(v->s, &na, &pos, &e2) < 0) {
			str_lcpy(why, e2.msg, sizeof(why));
			return svc_fail(ps, v->cols[pos], "bad listen address '%s': %s", show, why);
		}
		e->listen = xstrdup(v->s);
		break;
	case K_TLS:
		if (conf_parse_bool(v->s, &b) < 0)
			return svc_fail(ps, vcol, "tls must be yes or no, not '%s'", show);
		e->tls = b;
		break;
	case K_PREFORK:
		if (svc_number(v, 0, 10000, &e->prefork) < 0)
			return svc_fail(ps, vcol, "prefork must be an integer 0..10000, not '%s'", show);
		break;
	case K_MAXCHILD:
		if (svc_number(v, -1, 100000, &e->maxchild) < 0 || e->maxchild == 0)
			return svc_fail(ps, vcol, "maxchild must be -1 (unlimited) or 1..100000, not '%s'", show);
		break;
	case K_MAXFORKRATE:
		if (svc_number(v, 0, 100000, &e->maxforkrate) < 0)
			return svc_fail(ps, vcol, "maxforkrate must be an integer 0..100000, not '%s'", show);
		break;
	case K_MAXUSE:
		if (svc_number(v, 0, 100000000, &e->maxuse) < 0)
			return svc_fail(ps, vcol, "maxuse must be an integer 0..100000000, not '%s'", show);
		break;
	case K_PERIOD:
		if (svc_number(v, 1, 525600, &e->period) < 0)
			return svc_fail(ps, vcol, "period must be 1..525600 minutes, not '%s'", show);
		break;
	case K_AT:
		if (v->len != 4 || !(v->s[0] >= '0' && v->s[0] <= '9') || svc_number(v, 0, 2359, &e->at) < 0 ||
		    e->at % 100 > 59) {
			e->at = -1;
			return svc_fail(ps, vcol, "at must be HHMM between 0000 and 2359, not '%s'", show);
		}
		break;
	case K_TIMEOUT:
		if (svc_number(v, 0, 86400, &e->timeout) < 0)
			return svc_fail(ps, vcol, "timeout must be 0..86400 seconds, not '%s'", show);
		break;
	case K_MAXPERIP:
		if (svc_number(v, 0, 100000, &e->maxperip) < 0)
			return svc_fail(ps, vcol, "maxperip must be an integer 0..100000, not '%s'", show);
		break;
	case K_MAXIDLE:
		if (svc_number(v, 0, 86400, &e->maxidle) < 0)
			return svc_fail(ps, vcol, "maxidle must be 0..86400 seconds, not '%s'", show);
		break;
	case K_PROTO:
		if ((e->proto = servicesconf_proto_parse(v->s)) == SCONF_PROTO_AUTO)
			return svc_fail(ps, vcol, "proto must be imap, pop3, lmtp, sync or none, not '%s'", show);
		break;
	case K_COUNT:
		break;
	}
	return 0;
}

enum svc_proto
servicesconf_proto_parse(const char *s)
{
	static const char *const names[] = {
		[SCONF_PROTO_NONE] = "none", [SCONF_PROTO_IMAP] = "imap", [SCONF_PROTO_POP3] = "pop3",
		[SCONF_PROTO_LMTP] = "lmtp", [SCONF_PROTO_SYNC] = "sync",
	};
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i] != NULL && str_eq(s, names[i]))
			return (enum svc_proto)i;
	return SCONF_PROTO_AUTO;
}

static void
svc_val_free(struct svc_val *v)
{
	free(v->s);
	free(v->cols);
	v->s = NULL;
	v->cols = NULL;
}

/* Read the value at p[*ip] (line of n bytes).  Columns are i+1. */
static int
svc_read_value(struct svc_parser *ps, const char *p, size_t n, size_t *ip, const char *key, struct svc_val *v)
{
	size_t i = *ip, o = 0;
	char show[16];

	/* the value cannot be longer than the rest of the line */
	v->s = xmalloc(n - i + 1);
	v->cols = xcalloc(n - i + 2, sizeof(*v->cols));
	if (i < n && p[i] == '"') {
		size_t q = i++;
		for (;;) {
			if (i >= n)
				return svc_fail(ps, q + 1, "unterminated string");
			if (p[i] == '"')
				break;
			if (p[i] == '\\') {
				if (i + 1 < n && (p[i + 1] == '"' || p[i + 1] == '\\')) {
					i++;
				} else {
					return svc_fail(ps, i + 1, "invalid escape '\\%s' in string (only \\\" and \\\\)",
					    conf_show(p + i + 1, i + 1 < n ? 1 : 0, show, sizeof(show)));
				}
			}
			v->cols[o] = i + 1;
			v->s[o++] = p[i++];
		}
		v->cols[o] = i + 1;
		i++;
		if (i < n && !svc_is_blank(p[i]) && p[i] != '#' && p[i] != '}')
			return svc_fail(ps, i + 1, "expected a blank after the closing quote, not '%s'",
			    conf_show(p + i, 1, show, sizeof(show)));
	} else {
		while (i < n && !svc_is_blank(p[i]) && p[i] != '#' && p[i] != '}') {
			if (!svc_is_bare_char(p[i]))
				return svc_fail(ps, i + 1, "unexpected '%s' in unquoted value (quote the value)",
				    conf_show(p + i, 1, show, sizeof(show)));
			v->cols[o] = i + 1;
			v->s[o++] = p[i++];
		}
		v->cols[o] = i + 1;
		if (o == 0)
			return svc_fail(ps, i + 1, "missing value after '%s='", key);
	}
	v->s[o] = '\0';
	v->len = o;
	*ip = i;
	return 0;
}

/* key=value: the key is p[k0..k1), *ip points at the '='. */
static int
svc_pair(struct svc_parser *ps, const char *p, size_t n, size_t k0, size_t k1, size_t *ip)
{
	unsigned allowed = svc_sections[ps->sec].keys;
	struct svc_val v = { NULL, 0, NULL };
	char key[SCONF_NAME_MAX + 1], show[200], list[200];
	size_t vcol;
	int k, r;

	conf_show(p + k0, k1 - k0, show, sizeof(show));
	if (ps->cur < 0)
		return svc_fail(ps, k0 + 1, "key '%s' without an entry name before it", show);
	for (k = 0; k < K_COUNT; k++)
		if (strlen(svc_key_names[k]) == k1 - k0 && memcmp(svc_key_names[k], p + k0, k1 - k0) == 0)
			break;
	if (k == K_COUNT || !(allowed & KB(k))) {
		size_t o = 0;
		int j;
		list[0] = '\0';
		for (j = 0; j < K_COUNT; j++)
			if (allowed & KB(j)) {
				int m = snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "", svc_key_names[j]);
				if (m > 0 && (size_t)m < sizeof(list) - o)
					o += (size_t)m;
			}
		return svc_fail(ps, k0 + 1, "unknown key '%s' in %s (expected %s)", show, svc_sections[ps->sec].name, list);
	}
	if (ps->have[k])
		return svc_fail(ps, k0 + 1, "duplicate key '%s' in entry '%s'", show, ps->conf->entries[ps->cur].name);
	str_lcpy(key, svc_key_names[k], sizeof(key));
	(*ip)++;
	vcol = *ip + 1;
	r = svc_read_value(ps, p, n, ip, key, &v);
	if (r == 0)
		r = svc_apply(ps, (enum svc_key)k, &v, vcol);
	svc_val_free(&v);
	if (r < 0)
		return -1;
	ps->have[k] = true;
	ps->key_col[k] = k0 + 1;
	ps->val_col[k] = vcol;
	ps->npairs++;
	return 0;
}

static int
svc_line(struct svc_parser *ps, const char *p, size_t n)
{
	size_t i = 0, w0, w1, s;
	char show[200];

	for (;;) {
		while (i < n && svc_is_blank(p[i]))
			i++;
		if (i == n || p[i] == '#')
			break;
		if (!ps->in_section) {
			if (p[i] == '}')
				return svc_fail(ps, i + 1, "'}' without an open section");
			if (p[i] == '{')
				return svc_fail(ps, i + 1, "'{' without a section name before it");
			if (!svc_is_name_char(p[i]))
				return svc_fail(ps, i + 1, "unexpected '%s' outside a section",
				    conf_show(p + i, 1, show, sizeof(show)));
			w0 = i;
			while (i < n && svc_is_name_char(p[i]))
				i++;
			w1 = i;
			conf_show(p + w0, w1 - w0, show, sizeof(show));
			for (s = 0; s < SCONF_NSECTIONS; s++)
				if (strlen(svc_sections[s].name) == w1 - w0 && memcmp(svc_sections[s].name, p + w0, w1 - w0) == 0)
					break;
			if (s == SCONF_NSECTIONS) {
				for (s = 0; s < SCONF_NSECTIONS; s++)
					if (strlen(svc_sections[s].name) == w1 - w0 &&
					    svc_ncase_eq(svc_sections[s].name, p + w0, w1 - w0))
						return svc_fail(ps, w0 + 1, "section names are upper case: '%s'", svc_sections[s].name);
				return svc_fail(ps, w0 + 1,
				    "unknown section '%s' (expected START, SERVICES, EVENTS, DAEMON or SHUTDOWN)", show);
			}
			while (i < n && svc_is_blank(p[i]))
				i++;
			if (i == n || p[i] != '{')
				return svc_fail(ps, i + 1, "expected '{' after section name %s", show);
			i++;
			ps->in_section = true;
			ps->sec = (enum svc_section)s;
			ps->sec_line = ps->line;
			continue;
		}
		/* inside a section */
		if (p[i] == '}') {
			if (svc_entry_end(ps) < 0)
				return -1;
			ps->in_section = false;
			i++;
			continue;
		}
		if (p[i] == '=')
			return svc_fail(ps, i + 1, "'=' without a key before it");
		if (p[i] == '{')
			return svc_fail(ps, i + 1, "unexpected '{' inside section %s (missing '}'?)",
			    svc_sections[ps->sec].name);
		if (!svc_is_name_char(p[i]))
			return svc_fail(ps, i + 1, "unexpected '%s' (expected an entry name or key=value)",
			    conf_show(p + i, 1, show, sizeof(show)));
		w0 = i;
		while (i < n && svc_is_name_char(p[i]))
			i++;
		w1 = i;
		if (i < n && p[i] == '=') {
			if (svc_pair(ps, p, n, w0, w1, &i) < 0)
				return -1;
			continue;
		}
		if (i < n && !svc_is_blank(p[i]) && p[i] != '#' && p[i] != '}')
			return svc_fail(ps, i + 1, "invalid character '%s' in name", conf_show(p + i, 1, show, sizeof(show)));
		if (svc_entry_end(ps) < 0)
			return -1;
		if (svc_entry_start(ps, p + w0, w1 - w0, w0 + 1) < 0)
			return -1;
	}
	return svc_entry_end(ps);
}

int
servicesconf_parse(const char *text, size_t len, const char *name, struct servicesconf **conf_r, struct err *err)
{
	struct svc_parser ps;
	size_t pos = 0, off, eof_col = 1;
	char why[128];

	*conf_r = NULL;
	memset(&ps, 0, sizeof(ps));
	ps.name = name != NULL ? name : "<services>";
	ps.err = err;
	ps.cur = -1;
	if (len > CONF_FILE_MAX)
		return err_set(err, ERR_INVALID, "%s: file too large (more than %u bytes)", ps.name, CONF_FILE_MAX);
	ps.conf = xcalloc(1, sizeof(*ps.conf));
	ps.conf->filename = xstrdup(ps.name);

	while (pos < len) {
		const char *p = text + pos, *nl;
		size_t n;

		ps.line++;
		nl = memchr(p, '\n', len - pos);
		n = nl != NULL ? (size_t)(nl - p) : len - pos;
		pos += n + (nl != NULL);
		eof_col = nl != NULL ? 1 : n + 1;
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (conf_line_check(p, n, &off, why, sizeof(why)) < 0) {
			svc_fail(&ps, off + 1, "%s", why);
			goto fail;
		}
		if (svc_line(&ps, p, n) < 0)
			goto fail;
	}
	if (ps.in_section) {
		if (eof_col == 1)
			ps.line++;
		if (ps.line == 0)
			ps.line = 1;
		svc_fail(&ps, eof_col, "missing '}' for section %s opened at line %d", svc_sections[ps.sec].name,
		    ps.sec_line);
		goto fail;
	}
	*conf_r = ps.conf;
	return 0;
fail:
	servicesconf_free(ps.conf);
	return -1;
}

int
servicesconf_load(const char *path, struct servicesconf **conf_r, struct err *err)
{
	char *data;
	size_t len;
	int r;

	*conf_r = NULL;
	if (conf_read_file(path, &data, &len, err) < 0)
		return -1;
	r = servicesconf_parse(data, len, path, conf_r, err);
	free(data);
	return r;
}
