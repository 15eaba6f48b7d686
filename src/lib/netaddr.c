/*
 * netaddr.c - parse and format listen/connect address specifications.
 * See netaddr.h for the accepted forms.
 *
 * Parsing is purely syntactic: host names are checked for valid label
 * characters but not resolved, IP literals are checked with inet_pton.
 * Every rejection names the byte offset of the offending character so
 * that the config readers can turn it into a file:line:column.
 */
#include "lib/netaddr.h"
#include "lib/str.h"

#include <arpa/inet.h>
#include <stdbool.h>
#include <string.h>

static bool
netaddr_is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
netaddr_all_digits(const char *s, size_t n)
{
	size_t i;

	if (n == 0)
		return false;
	for (i = 0; i < n; i++)
		if (!netaddr_is_digit(s[i]))
			return false;
	return true;
}

static int
netaddr_fail(struct err *err, size_t *pos_r, size_t pos, const char *reason)
{
	if (pos_r != NULL)
		*pos_r = pos;
	return err_set(err, ERR_INVALID, "%s", reason);
}

/* Port at s[0..n): 1..65535, decimal digits only.  `base` is its offset in the spec. */
static int
netaddr_parse_port(const char *s, size_t n, size_t base, uint16_t *port, size_t *pos_r, struct err *err)
{
	uint32_t v = 0;
	size_t i;

	if (n == 0)
		return netaddr_fail(err, pos_r, base, "missing port after ':'");
	for (i = 0; i < n; i++) {
		if (!netaddr_is_digit(s[i]))
			return netaddr_fail(err, pos_r, base + i, "port must be a decimal number 1..65535");
		v = v * 10 + (uint32_t)(s[i] - '0');
		if (v > 65535)
			return netaddr_fail(err, pos_r, base, "port out of range 1..65535");
	}
	if (v == 0)
		return netaddr_fail(err, pos_r, base, "port out of range 1..65535");
	*port = (uint16_t)v;
	return 0;
}

/* Host name or IPv4 literal at s[0..n). */
static int
netaddr_check_host(const char *s, size_t n, size_t base, size_t *pos_r, struct err *err)
{
	size_t i, label = 0;
	bool numeric = true;
	char tmp[256];
	struct in_addr a4;

	if (n == 0)
		return netaddr_fail(err, pos_r, base, "empty host (use *:PORT for any address)");
	if (n > 253)
		return netaddr_fail(err, pos_r, base + 253, "host name longer than 253 bytes");
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (c != '.' && !netaddr_is_digit(c))
			numeric = false;
	}
	if (numeric) {
		memcpy(tmp, s, n);
		tmp[n] = '\0';
		if (inet_pton(AF_INET, tmp, &a4) != 1)
			return netaddr_fail(err, pos_r, base, "invalid IPv4 address");
		return 0;
	}
	for (i = 0; i < n; i++) {
		char c = s[i];
		if (c == '.') {
			if (label == 0)
				return netaddr_fail(err, pos_r, base + i, "empty label in host name");
			if (s[i - 1] == '-')
				return netaddr_fail(err, pos_r, base + i - 1, "host name label ends with '-'");
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || netaddr_is_digit(c) || c == '-')) {
			if (c == ':')
				return netaddr_fail(err, pos_r, base + i, "IPv6 address must be in brackets: [ADDR]:PORT");
			return netaddr_fail(err, pos_r, base + i, "invalid character in host name");
		}
		if (c == '-' && label == 0)
			return netaddr_fail(err, pos_r, base + i, "host name label starts with '-'");
		if (++label > 63)
			return netaddr_fail(err, pos_r, base + i, "host name label longer than 63 bytes");
	}
	if (s[n - 1] == '-')
		return netaddr_fail(err, pos_r, base + n - 1, "host name label ends with '-'");
	return 0;
}

static int
netaddr_parse_spec(const char *spec, struct netaddr *out, size_t *pos_r, struct err *err)
{
	size_t len, i;
	const char *colon;

	if (spec == NULL || spec[0] == '\0')
		return netaddr_fail(err, pos_r, 0, "empty address");
	len = strlen(spec);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)spec[i];
		if (c < 0x20 || c == 0x7f)
			return netaddr_fail(err, pos_r, i, "control character in address");
		if (c == ' ' && spec[0] != '/')
			return netaddr_fail(err, pos_r, i, "blank in address");
	}

	if (spec[0] == '/') {
		if (len >= sizeof(out->path))
			return netaddr_fail(err, pos_r, sizeof(out->path) - 1,
			    "unix socket path too long (at most 107 bytes)");
		if (spec[len - 1] == '/')
			return netaddr_fail(err, pos_r, len - 1, "unix socket path names a directory");
		out->kind = NETADDR_UNIX;
		memcpy(out->path, spec, len + 1);
		return 0;
	}

	if (netaddr_all_digits(spec, len)) {
		out->kind = NETADDR_TCP;
		return netaddr_parse_port(spec, len, 0, &out->port, pos_r, err);
	}

	if (spec[0] == '[') {
		const char *close = strchr(spec, ']');
		char tmp[INET6_ADDRSTRLEN + 1];
		struct in6_addr a6;
		size_t hl;

		if (close == NULL)
			return netaddr_fail(err, pos_r, len, "missing ']' after IPv6 address");
		hl = (size_t)(close - spec) - 1;
		if (hl == 0 || hl >= sizeof(tmp))
			return netaddr_fail(err, pos_r, 1, "invalid IPv6 address");
		memcpy(tmp, spec + 1, hl);
		tmp[hl] = '\0';
		if (strchr(tmp, '%') != NULL)
			return netaddr_fail(err, pos_r, 1 + (size_t)(strchr(tmp, '%') - tmp),
			    "IPv6 zone identifiers are not supported");
		if (inet_pton(AF_INET6, tmp, &a6) != 1)
			return netaddr_fail(err, pos_r, 1, "invalid IPv6 address");
		if (close[1] != ':') {
			size_t at = (size_t)(close - spec) + 1;
			return netaddr_fail(err, pos_r, at, at == len ? "missing ':PORT' after ']'" : "expected ':' after ']'");
		}
		out->kind = NETADDR_TCP;
		memcpy(out->host, tmp, hl + 1);
		return netaddr_parse_port(close + 2, strlen(close + 2), (size_t)(close - spec) + 2, &out->port, pos_r, err);
	}

	colon = strrchr(spec, ':');
	if (colon == NULL) {
		if (strchr(spec, '/') != NULL)
			return netaddr_fail(err, pos_r, 0, "unix socket path must be absolute");
		return netaddr_fail(err, pos_r, len, "missing ':PORT'");
	}
	if (strchr(spec, ':') != colon)
		return netaddr_fail(err, pos_r, (size_t)(strchr(spec, ':') - spec),
		    "IPv6 address must be in brackets: [ADDR]:PORT");
	if (strchr(spec, '/') != NULL)
		return netaddr_fail(err, pos_r, (size_t)(strchr(spec, '/') - spec),
		    strchr(spec, '/') < colon ? "unix socket path must be absolute" : "invalid character in port");
	out->kind = NETADDR_TCP;
	if (colon - spec == 1 && spec[0] == '*') {
		out->host[0] = '\0';
	} else {
		size_t hl = (size_t)(colon - spec);
		if (netaddr_check_host(spec, hl, 0, pos_r, err) < 0)
			return -1;
		memcpy(out->host, spec, hl);
		out->host[hl] = '\0';
	}
	return netaddr_parse_port(colon + 1, strlen(colon + 1), (size_t)(colon - spec) + 1, &out->port, pos_r, err);
}

int
netaddr_parse_pos(const char *spec, struct netaddr *out, size_t *pos_r, struct err *err)
{
	size_t pos = 0;

	memset(out, 0, sizeof(*out));
	if (netaddr_parse_spec(spec, out, &pos, err) < 0) {
		memset(out, 0, sizeof(*out));
		if (pos_r != NULL)
			*pos_r = pos;
		return -1;
	}
	if (pos_r != NULL)
		*pos_r = 0;
	return 0;
}

int
netaddr_parse(const char *spec, struct netaddr *out, struct err *err)
{
	return netaddr_parse_pos(spec, out, NULL, err);
}

int
netaddr_format(const struct netaddr *a, char *buf, size_t size)
{
	switch (a->kind) {
	case NETADDR_UNIX:
		return str_fmt(buf, size, "%s", a->path);
	case NETADDR_TCP:
		if (a->host[0] == '\0')
			return str_fmt(buf, size, "*:%u", (unsigned)a->port);
		if (strchr(a->host, ':') != NULL)
			return str_fmt(buf, size, "[%s]:%u", a->host, (unsigned)a->port);
		return str_fmt(buf, size, "%s:%u", a->host, (unsigned)a->port);
	}
	return -1;
}
