/*
 * conf.c - castor.conf reader: "key: value" lines, typed getters.
 * See conf.h for the grammar and docs/config.md for the keys.
 *
 * The whole file is read and checked before anything is returned: a
 * byte-level check per line (no NUL or control characters, valid UTF-8,
 * bounded length), then the line's syntax, then the value of a known key
 * against its type.  The first problem rejects the file with
 * "FILE:LINE:COL: reason"; columns are 1-based byte offsets in the line.
 * Unknown keys are kept and logged once per load.
 */
#include "lib/conf.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONF_KEY_MAX 128
#define CONF_SETTINGS_MAX 10000   /* duplicate detection is quadratic */

struct conf_item {
	char *key;        /* lower-case */
	char *value;      /* trimmed; canonical spelling for CONF_ENUM */
	int line;
	const struct conf_key *known;
	bool warned;      /* a getter already logged that it could not use the value */
};

struct conf {
	char *filename;
	char *dir;        /* absolute directory of filename */
	struct conf_item *items;
	size_t n;
	size_t cap;
};

/* ---- shared helpers ---- */

int
conf_line_check(const char *line, size_t len, size_t *off_r, char *why, size_t why_size)
{
	const unsigned char *p = (const unsigned char *)line;
	size_t lim = len < CONF_LINE_MAX ? len : CONF_LINE_MAX;
	size_t i = 0;

	while (i < lim) {
		unsigned char c = p[i];
		size_t need, k;
		unsigned char lo = 0x80, hi = 0xbf;

		if (c == '\0') {
			*off_r = i;
			snprintf(why, why_size, "NUL byte");
			return -1;
		}
		if ((c < 0x20 && c != '\t') || c == 0x7f) {
			*off_r = i;
			snprintf(why, why_size, "control character 0x%02x", c);
			return -1;
		}
		if (c < 0x80) {
			i++;
			continue;
		}
		/* UTF-8: reject overlong forms, surrogates and > U+10FFFF */
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
		} else {
			*off_r = i;
			snprintf(why, why_size, "invalid UTF-8 byte 0x%02x", c);
			return -1;
		}
		for (k = 1; k <= need; k++) {
			unsigned char d = i + k < len ? p[i + k] : 0;
			unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xbf;
			if (i + k >= len || d < l || d > h) {
				*off_r = i;
				snprintf(why, why_size, "invalid UTF-8 sequence starting with byte 0x%02x", c);
				return -1;
			}
		}
		i += need + 1;
	}
	if (len > CONF_LINE_MAX) {
		*off_r = CONF_LINE_MAX;
		snprintf(why, why_size, "line too long (more than %d bytes)", CONF_LINE_MAX);
		return -1;
	}
	return 0;
}

const char *
conf_show(const char *p, size_t n, char *out, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (size == 0)
		return out;
	for (i = 0; i < n && i < 40; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c >= 0x20 && c < 0x7f) {
			if (o + 1 >= size)
				break;
			out[o++] = (char)c;
		} else {
			if (o + 4 >= size)
				break;
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	if (i < n && o + 3 < size) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return out;
}

/* ---- value parsers ---- */

int
conf_parse_bool(const char *s, bool *out)
{
	static const char *const yes[] = { "yes", "on", "true", "1" };
	static const char *const no[] = { "no", "off", "false", "0" };
	size_t i;

	for (i = 0; i < 4; i++) {
		if (str_eq_ci(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (str_eq_ci(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* Leading decimal digits of s as a uint64; -1 if none or overflow. */
static int
conf_digits(const char **sp, uint64_t *out)
{
	const char *s = *sp;
	uint64_t v = 0;

	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*sp = s;
	*out = v;
	return 0;
}

int
conf_parse_duration_ms(const char *s, int64_t *out)
{
	uint64_t v, mult;

	if (s == NULL || conf_digits(&s, &v) < 0)
		return -1;
	if (str_eq(s, "") || str_eq(s, "s"))
		mult = 1000;
	else if (str_eq(s, "ms"))
		mult = 1;
	else if (str_eq(s, "m"))
		mult = 60 * 1000;
	else if (str_eq(s, "h"))
		mult = 3600 * 1000;
	else if (str_eq(s, "d"))
		mult = 86400 * 1000;
	else
		return -1;
	if (v > (uint64_t)INT64_MAX / mult)
		return -1;
	*out = (int64_t)(v * mult);
	return 0;
}

int
conf_parse_bytes(const char *s, uint64_t *out)
{
	uint64_t v;
	unsigned shift;

	if (s == NULL || conf_digits(&s, &v) < 0)
		return -1;
	switch (*s) {
	case '\0': shift = 0; break;
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	default: return -1;
	}
	if (*s != '\0' && s[1] != '\0')
		return -1;
	if (shift > 0 && v > (UINT64_MAX >> shift))
		return -1;
	*out = v << shift;
	return 0;
}

int
conf_parse_double(const char *s, double *out)
{
	uint64_t ip, fp;
	const char *f;
	double v, scale = 1.0;
	bool neg = false;

	if (s == NULL)
		return -1;
	if (*s == '-') {
		neg = true;
		s++;
	}
	if (conf_digits(&s, &ip) < 0 || ip > ((uint64_t)1 << 53))
		return -1;
	v = (double)ip;
	if (*s == '.') {
		s++;
		f = s;
		if (conf_digits(&s, &fp) < 0 || s - f > 15)
			return -1;
		while (f++ < s)
			scale *= 10.0;
		v += (double)fp / scale;
	}
	if (*s != '\0')
		return -1;
	*out = neg ? -v : v;
	return 0;
}

static int
conf_parse_int(const char *s, int64_t *out)
{
	if (s == NULL || !((*s >= '0' && *s <= '9') || (*s == '-' && s[1] >= '0' && s[1] <= '9')))
		return -1;
	return str_to_i64_range(s, INT64_MIN, INT64_MAX, out);
}

/* ---- the key table ---- */

const struct conf_key *
conf_key_lookup(const char *key)
{
	const struct conf_key *k;
	size_t klen = strlen(key);

	for (k = conf_known_keys; k->name != NULL; k++)
		if (k->name[0] != '*' && str_eq_ci(k->name, key))
			return k;
	for (k = conf_known_keys; k->name != NULL; k++) {
		size_t slen;
		if (k->name[0] != '*')
			continue;
		slen = strlen(k->name + 1);
		if (klen > slen && str_eq_ci(key + klen - slen, k->name + 1))
			return k;
	}
	return NULL;
}

/* Is v one of k->choices?  Returns the canonical spelling (malloc'd) or NULL. */
static char *
conf_enum_match(const struct conf_key *k, const char *v)
{
	const char *c = k->choices != NULL ? k->choices : "";
	size_t vlen = strlen(v);

	while (*c != '\0') {
		const char *bar = strchr(c, '|');
		size_t n = bar != NULL ? (size_t)(bar - c) : strlen(c);
		if (n == vlen && n > 0) {
			size_t i;
			for (i = 0; i < n; i++)
				if (str_lower_c(c[i]) != str_lower_c(v[i]))
					break;
			if (i == n)
				return xstrndup(c, n);
		}
		if (bar == NULL)
			break;
		c = bar + 1;
	}
	return NULL;
}

static const char *
conf_type_expect(const struct conf_key *k, char *buf, size_t size)
{
	switch (k->type) {
	case CONF_INT: return "an integer";
	case CONF_BOOL: return "yes/no, on/off, true/false or 1/0";
	case CONF_DURATION: return "a duration such as 30, 500ms, 10s, 5m, 2h or 7d";
	case CONF_BYTES: return "a size such as 1024, 64k, 64M or 1G";
	case CONF_FLOAT: return "a decimal number such as 0.5";
	case CONF_ENUM:
		snprintf(buf, size, "one of %s", k->choices != NULL ? k->choices : "(none)");
		return buf;
	case CONF_STRING:
	case CONF_PATH:
	case CONF_LIST:
		break;
	}
	return "a string";
}

/* Check v against k's type.  0 ok; -1 if malformed. */
static int
conf_check_type(const struct conf_key *k, const char *v)
{
	bool b;
	int64_t i;
	uint64_t u;
	double d;
	char *e;

	switch (k->type) {
	case CONF_STRING:
	case CONF_PATH:
	case CONF_LIST:
		return 0;
	case CONF_INT: return conf_parse_int(v, &i);
	case CONF_BOOL: return conf_parse_bool(v, &b);
	case CONF_DURATION: return conf_parse_duration_ms(v, &i);
	case CONF_BYTES: return conf_parse_bytes(v, &u);
	case CONF_FLOAT: return conf_parse_double(v, &d);
	case CONF_ENUM:
		e = conf_enum_match(k, v);
		free(e);
		return e != NULL ? 0 : -1;
	}
	return -1;
}

/* ---- loading ---- */

void
conf_free(struct conf *conf)
{
	size_t i;

	if (conf == NULL)
		return;
	for (i = 0; i < conf->n; i++) {
		free(conf->items[i].key);
		free(conf->items[i].value);
	}
	free(conf->items);
	free(conf->filename);
	free(conf->dir);
	free(conf);
}

/* Absolute directory of `name` ("." and relative ones against the cwd). */
static char *
conf_dirname_abs(const char *name)
{
	const char *slash = strrchr(name, '/');
	char *dir, cwd[PATH_MAX];
	struct buf b = BUF_INIT;

	if (slash == NULL)
		dir = xstrdup(".");
	else if (slash == name)
		dir = xstrdup("/");
	else
		dir = xstrndup(name, (size_t)(slash - name));
	if (dir[0] == '/' || getcwd(cwd, sizeof(cwd)) == NULL)
		return dir;
	buf_puts(&b, cwd);
	if (!str_eq(dir, ".")) {
		const char *d = dir;
		while (d[0] == '.' && d[1] == '/')
			d += 2;
		if (!str_eq(cwd, "/"))
			buf_putc(&b, '/');
		buf_puts(&b, d);
	}
	free(dir);
	return buf_steal(&b);
}

static struct conf_item *
conf_find(const struct conf *conf, const char *key)
{
	size_t i;

	if (conf == NULL || key == NULL)
		return NULL;
	for (i = 0; i < conf->n; i++)
		if (str_eq_ci(conf->items[i].key, key))
			return &conf->items[i];
	return NULL;
}

static struct conf *
conf_fail(struct conf *conf, struct err *err, const char *name, int line, size_t col, const char *fmt, ...)
	__attribute__((format(printf, 6, 7)));

static struct conf *
conf_fail(struct conf *conf, struct err *err, const char *name, int line, size_t col, const char *fmt, ...)
{
	char why[ERR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	err_set(err, ERR_INVALID, "%s:%d:%zu: %s", name, line, col, why);
	conf_free(conf);
	return NULL;
}

static bool
conf_is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool
conf_is_key_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

struct conf *
conf_parse(const char *text, size_t len, const char *name, struct err *err)
{
	struct conf *conf;
	size_t pos = 0, i;
	int line = 0;
	char show[200], why[128];

	if (name == NULL)
		name = "<config>";
	if (len > CONF_FILE_MAX) {
		err_set(err, ERR_INVALID, "%s: file too large (more than %u bytes)", name, CONF_FILE_MAX);
		return NULL;
	}
	conf = xcalloc(1, sizeof(*conf));
	conf->filename = xstrdup(name);
	conf->dir = conf_dirname_abs(name);

	while (pos < len) {
		const char *p = text + pos, *nl;
		size_t n, off, k0, k1, v0, v1;
		char *key, *value;
		const struct conf_key *known;
		struct conf_item *dup, *it;

		line++;
		nl = memchr(p, '\n', len - pos);
		n = nl != NULL ? (size_t)(nl - p) : len - pos;
		pos += n + (nl != NULL);
		if (n > 0 && p[n - 1] == '\r')
			n--;
		if (conf_line_check(p, n, &off, why, sizeof(why)) < 0)
			return conf_fail(conf, err, name, line, off + 1, "%s", why);

		for (i = 0; i < n && conf_is_blank(p[i]); i++)
			;
		if (i == n || p[i] == '#')
			continue;
		k0 = i;
		while (i < n && conf_is_key_char(p[i]))
			i++;
		k1 = i;
		if (k1 == k0) {
			if (p[i] == ':')
				return conf_fail(conf, err, name, line, i + 1, "missing key before ':'");
			return conf_fail(conf, err, name, line, i + 1, "invalid character '%s' at start of key",
			    conf_show(p + i, 1, show, sizeof(show)));
		}
		if (i == n || conf_is_blank(p[i]))
			return conf_fail(conf, err, name, line, i + 1, "expected ':' after key '%s'",
			    conf_show(p + k0, k1 - k0, show, sizeof(show)));
		if (p[i] != ':')
			return conf_fail(conf, err, name, line, i + 1, "invalid character '%s' in key",
			    conf_show(p + i, 1, show, sizeof(show)));
		if (k1 - k0 > CONF_KEY_MAX)
			return conf_fail(conf, err, name, line, k0 + 1, "key longer than %d bytes", CONF_KEY_MAX);
		i++;
		while (i < n && conf_is_blank(p[i]))
			i++;
		v0 = i;
		v1 = n;
		while (v1 > v0 && conf_is_blank(p[v1 - 1]))
			v1--;

		key = xstrndup(p + k0, k1 - k0);
		str_lower(key);
		dup = conf_find(conf, key);
		if (dup != NULL) {
			int first = dup->line;
			free(key);
			return conf_fail(conf, err, name, line, k0 + 1, "duplicate key '%s' (first set at line %d)",
			    conf_show(p + k0, k1 - k0, show, sizeof(show)), first);
		}
		value = xstrndup(p + v0, v1 - v0);
		known = conf_key_lookup(key);
		if (known != NULL) {
			if (conf_check_type(known, value) < 0) {
				char ebuf[256], kshow[200];
				conf_show(p + k0, k1 - k0, kshow, sizeof(kshow));
				free(key);
				free(value);
				if (v1 == v0)
					return conf_fail(conf, err, name, line, v0 + 1, "missing value for '%s': expected %s",
					    kshow, conf_type_expect(known, ebuf, sizeof(ebuf)));
				return conf_fail(conf, err, name, line, v0 + 1, "invalid value '%s' for '%s': expected %s",
				    conf_show(p + v0, v1 - v0, show, sizeof(show)), kshow,
				    conf_type_expect(known, ebuf, sizeof(ebuf)));
			}
			if (known->type == CONF_ENUM) {
				char *canon = conf_enum_match(known, value);
				free(value);
				value = canon;
			}
		}
		if (conf->n == CONF_SETTINGS_MAX) {
			free(key);
			free(value);
			return conf_fail(conf, err, name, line, k0 + 1, "too many settings (more than %d)", CONF_SETTINGS_MAX);
		}
		if (conf->n == conf->cap) {
			conf->cap = conf->cap ? conf->cap * 2 : 16;
			conf->items = xreallocarray(conf->items, conf->cap, sizeof(*conf->items));
		}
		it = &conf->items[conf->n++];
		it->key = key;
		it->value = value;
		it->line = line;
		it->known = known;
		it->warned = false;
	}

	for (i = 0; i < conf->n; i++)
		if (conf->items[i].known == NULL)
			log_warn("unknown config key file=%s line=%d key=%s", log_q(name), conf->items[i].line,
			    log_q(conf->items[i].key));
	return conf;
}

int
conf_read_file(const char *path, char **data_r, size_t *len_r, struct err *err)
{
	struct buf b = BUF_INIT;
	struct stat st;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return err_errno(err, errno == ENOENT ? ERR_NOTFOUND : errno == EACCES ? ERR_PERM : ERR_TEMP,
		    "%s: cannot open", path);
	if (fstat(fd, &st) < 0) {
		err_errno(err, ERR_TEMP, "%s: fstat", path);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(err, ERR_INVALID, "%s: not a regular file", path);
	}
	for (;;) {
		ssize_t r;
		buf_reserve(&b, 65536);
		r = read(fd, b.data + b.len, b.cap - b.len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			err_errno(err, ERR_TEMP, "%s: read", path);
			close(fd);
			buf_free(&b);
			return -1;
		}
		if (r == 0)
			break;
		b.len += (size_t)r;
		b.data[b.len] = '\0';
		if (b.len > CONF_FILE_MAX) {
			close(fd);
			buf_free(&b);
			return err_set(err, ERR_INVALID, "%s: file too large (more than %u bytes)", path, CONF_FILE_MAX);
		}
	}
	close(fd);
	*len_r = b.len;
	*data_r = b.data != NULL ? buf_steal(&b) : xstrdup("");
	return 0;
}

struct conf *
conf_load(const char *path, struct err *err)
{
	struct conf *conf;
	char *data;
	size_t len;

	if (conf_read_file(path, &data, &len, err) < 0)
		return NULL;
	conf = conf_parse(data, len, path, err);
	free(data);
	return conf;
}

/* ---- getters ---- */

const char *
conf_filename(const struct conf *conf)
{
	return conf->filename;
}

const char *
conf_dir(const struct conf *conf)
{
	return conf->dir;
}

bool
conf_has(const struct conf *conf, const char *key)
{
	return conf_find(conf, key) != NULL;
}

bool
conf_iter(const struct conf *conf, size_t i, const char **key_r, const char **value_r)
{
	if (conf == NULL || i >= conf->n)
		return false;
	if (key_r != NULL)
		*key_r = conf->items[i].key;
	if (value_r != NULL)
		*value_r = conf->items[i].value;
	return true;
}

/* A getter cannot use the value it found: say so once per setting. */
static void
conf_warn_once(const struct conf *conf, struct conf_item *it, const char *expected)
{
	if (it->warned)
		return;
	it->warned = true;
	log_warn("config value ignored, using default file=%s line=%d key=%s value=%s expected=%s",
	    log_q(conf->filename), it->line, log_q(it->key), log_q(it->value), log_q(expected));
}

const char *
conf_get_str(const struct conf *conf, const char *key, const char *def)
{
	struct conf_item *it = conf_find(conf, key);

	return it != NULL ? it->value : def;
}

int64_t
conf_get_int(const struct conf *conf, const char *key, int64_t def)
{
	struct conf_item *it = conf_find(conf, key);
	int64_t v;

	if (it == NULL)
		return def;
	if (conf_parse_int(it->value, &v) < 0) {
		conf_warn_once(conf, it, "integer");
		return def;
	}
	return v;
}

bool
conf_get_bool(const struct conf *conf, const char *key, bool def)
{
	struct conf_item *it = conf_find(conf, key);
	bool v;

	if (it == NULL)
		return def;
	if (conf_parse_bool(it->value, &v) < 0) {
		conf_warn_once(conf, it, "boolean");
		return def;
	}
	return v;
}

int64_t
conf_get_duration_ms(const struct conf *conf, const char *key, int64_t def_ms)
{
	struct conf_item *it = conf_find(conf, key);
	int64_t v;

	if (it == NULL)
		return def_ms;
	if (conf_parse_duration_ms(it->value, &v) < 0) {
		conf_warn_once(conf, it, "duration");
		return def_ms;
	}
	return v;
}

uint64_t
conf_get_bytes(const struct conf *conf, const char *key, uint64_t def)
{
	struct conf_item *it = conf_find(conf, key);
	uint64_t v;

	if (it == NULL)
		return def;
	if (conf_parse_bytes(it->value, &v) < 0) {
		conf_warn_once(conf, it, "size");
		return def;
	}
	return v;
}

double
conf_get_double(const struct conf *conf, const char *key, double def)
{
	struct conf_item *it = conf_find(conf, key);
	double v;

	if (it == NULL)
		return def;
	if (conf_parse_double(it->value, &v) < 0) {
		conf_warn_once(conf, it, "decimal number");
		return def;
	}
	return v;
}

char *
conf_get_path(const struct conf *conf, const char *key, const char *def)
{
	struct conf_item *it = conf_find(conf, key);
	const char *v = it != NULL && it->value[0] != '\0' ? it->value : def;
	struct buf b = BUF_INIT;

	if (v == NULL)
		return NULL;
	if (v[0] == '/')
		return xstrdup(v);
	buf_puts(&b, conf->dir);
	if (b.len == 0 || b.data[b.len - 1] != '/')
		buf_putc(&b, '/');
	buf_puts(&b, v);
	return buf_steal(&b);
}

char **
conf_get_list(const struct conf *conf, const char *key, size_t *n_r)
{
	struct conf_item *it = conf_find(conf, key);
	const char *s = it != NULL ? it->value : "";
	char **list = xcalloc(1, sizeof(*list));
	size_t n = 0;

	for (;;) {
		const char *w;
		while (conf_is_blank(*s))
			s++;
		if (*s == '\0')
			break;
		w = s;
		while (*s != '\0' && !conf_is_blank(*s))
			s++;
		list = xreallocarray(list, n + 2, sizeof(*list));
		list[n++] = xstrndup(w, (size_t)(s - w));
		list[n] = NULL;
	}
	if (n_r != NULL)
		*n_r = n;
	return list;
}

void
conf_list_free(char **list)
{
	size_t i;

	if (list == NULL)
		return;
	for (i = 0; list[i] != NULL; i++)
		free(list[i]);
	free(list);
}
