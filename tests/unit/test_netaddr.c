/* test_netaddr.c - unit tests for lib/netaddr.c (listen/connect specs) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "lib/err.h"
#include "lib/netaddr.h"

struct good {
	const char *spec;
	enum netaddr_kind kind;
	const char *host;     /* or path */
	unsigned port;
	const char *canon;
};

static const struct good goods[] = {
	{ "127.0.0.1:143", NETADDR_TCP, "127.0.0.1", 143, "127.0.0.1:143" },
	{ "[::1]:1143", NETADDR_TCP, "::1", 1143, "[::1]:1143" },
	{ "[2001:db8::1]:65535", NETADDR_TCP, "2001:db8::1", 65535, "[2001:db8::1]:65535" },
	{ "[::ffff:127.0.0.1]:1", NETADDR_TCP, "::ffff:127.0.0.1", 1, "[::ffff:127.0.0.1]:1" },
	{ "localhost:143", NETADDR_TCP, "localhost", 143, "localhost:143" },
	{ "mail-1.example.org.:25", NETADDR_TCP, "mail-1.example.org.", 25, "mail-1.example.org.:25" },
	{ "*:993", NETADDR_TCP, "", 993, "*:993" },
	{ "143", NETADDR_TCP, "", 143, "*:143" },
	{ "00143", NETADDR_TCP, "", 143, "*:143" },
	{ "/srv/castor/run/lmtp.sock", NETADDR_UNIX, "/srv/castor/run/lmtp.sock", 0, "/srv/castor/run/lmtp.sock" },
	{ "/tmp/with space.sock", NETADDR_UNIX, "/tmp/with space.sock", 0, "/tmp/with space.sock" },
};

static void
test_good_specs(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(goods) / sizeof(goods[0]); i++) {
		struct netaddr a, b;
		struct err err;
		char out[300];
		int n;

		err_clear(&err);
		assert_int_equal(netaddr_parse(goods[i].spec, &a, &err), 0);
		assert_int_equal(a.kind, goods[i].kind);
		if (a.kind == NETADDR_TCP) {
			assert_string_equal(a.host, goods[i].host);
			assert_int_equal(a.port, goods[i].port);
		} else {
			assert_string_equal(a.path, goods[i].host);
		}
		n = netaddr_format(&a, out, sizeof(out));
		assert_int_equal(n, (int)strlen(goods[i].canon));
		assert_string_equal(out, goods[i].canon);
		/* the canonical form parses back to the same address */
		assert_int_equal(netaddr_parse(out, &b, &err), 0);
		assert_int_equal(b.kind, a.kind);
		assert_string_equal(b.host, a.host);
		assert_string_equal(b.path, a.path);
		assert_int_equal(b.port, a.port);
	}
}

struct bad {
	const char *spec;
	size_t pos;
	const char *reason;   /* substring of the message */
};

static const struct bad bads[] = {
	{ "", 0, "empty address" },
	{ "1.2.3.4:0", 8, "port out of range" },
	{ "1.2.3.4:65536", 8, "port out of range" },
	{ "1.2.3.4:99999999999999999999", 8, "port out of range" },
	{ "0", 0, "port out of range" },
	{ "[::1:143", 8, "missing ']'" },
	{ "[::1]", 5, "missing ':PORT'" },
	{ "[::1]143", 5, "expected ':' after ']'" },
	{ "[]:143", 1, "invalid IPv6" },
	{ "[::g]:143", 1, "invalid IPv6" },
	{ "[fe80::1%eth0]:143", 8, "zone" },
	{ "::1:143", 0, "must be in brackets" },
	{ "host:", 5, "missing port" },
	{ ":143", 0, "empty host" },
	{ "host:14x", 7, "decimal" },
	{ "host:-1", 5, "decimal" },
	{ "localhost", 9, "missing ':PORT'" },
	{ "run/lmtp.sock", 0, "must be absolute" },
	{ "./lmtp.sock", 0, "must be absolute" },
	{ "1.2.3.256:143", 0, "invalid IPv4" },
	{ "1.2.3:143", 0, "invalid IPv4" },
	{ "ho_st:143", 2, "invalid character in host" },
	{ "-host:143", 0, "starts with '-'" },
	{ "host-.a:143", 4, "ends with '-'" },
	{ "a..b:143", 2, "empty label" },
	{ "host :143", 4, "blank" },
	{ "host:1\t43", 6, "control character" },
	{ "/run/", 4, "names a directory" },
};

static void
test_bad_specs(void **state)
{
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		struct netaddr a;
		struct err err;
		size_t pos = 12345;

		err_clear(&err);
		memset(&a, 0x5a, sizeof(a));
		if (netaddr_parse_pos(bads[i].spec, &a, &pos, &err) != -1)
			fail_msg("accepted bad spec '%s'", bads[i].spec);
		assert_int_equal(err.kind, ERR_INVALID);
		if (strstr(err.msg, bads[i].reason) == NULL)
			fail_msg("'%s': message '%s' lacks '%s'", bads[i].spec, err.msg, bads[i].reason);
		if (pos != bads[i].pos)
			fail_msg("'%s': pos %zu, expected %zu (%s)", bads[i].spec, pos, bads[i].pos, err.msg);
		/* the output is zeroed on failure */
		assert_int_equal(a.kind, 0);
		assert_int_equal(a.port, 0);
		assert_int_equal(a.host[0], '\0');
		/* and netaddr_parse agrees */
		assert_int_equal(netaddr_parse(bads[i].spec, &a, NULL), -1);
	}
}

static void
test_unix_path_limit(void **state)
{
	char spec[200];
	struct netaddr a;
	struct err err;
	size_t pos;

	(void)state;
	memset(spec, 'x', sizeof(spec));
	spec[0] = '/';
	spec[107] = '\0';       /* 107 bytes: fits sun_path with its NUL */
	assert_int_equal(netaddr_parse(spec, &a, &err), 0);
	assert_int_equal(a.kind, NETADDR_UNIX);
	assert_int_equal(strlen(a.path), 107);
	spec[107] = 'x';
	spec[108] = '\0';       /* 108 bytes: too long */
	assert_int_equal(netaddr_parse_pos(spec, &a, &pos, &err), -1);
	assert_int_equal(pos, 107);
	assert_non_null(strstr(err.msg, "too long"));
}

static void
test_host_limits(void **state)
{
	char spec[400];
	struct netaddr a;
	struct err err;
	size_t pos;

	(void)state;
	/* a 63-byte label is fine, 64 is not */
	memset(spec, 'a', 63);
	memcpy(spec + 63, ":25", 4);
	assert_int_equal(netaddr_parse(spec, &a, &err), 0);
	memset(spec, 'a', 64);
	memcpy(spec + 64, ":25", 4);
	assert_int_equal(netaddr_parse_pos(spec, &a, &pos, &err), -1);
	assert_int_equal(pos, 63);
	/* a 253-byte name is fine, 254 is not */
	memset(spec, 'a', 254);
	for (size_t i = 50; i < 254; i += 50)
		spec[i] = '.';
	memcpy(spec + 253, ":25", 4);
	assert_int_equal(netaddr_parse(spec, &a, &err), 0);
	assert_int_equal(strlen(a.host), 253);
	memset(spec, 'a', 254);
	for (size_t i = 50; i < 254; i += 50)
		spec[i] = '.';
	memcpy(spec + 254, ":25", 4);
	assert_int_equal(netaddr_parse_pos(spec, &a, &pos, &err), -1);
	assert_int_equal(pos, 253);
}

static void
test_format_bounds(void **state)
{
	struct netaddr a;
	char out[32];

	(void)state;
	assert_int_equal(netaddr_parse("[2001:db8::1]:65535", &a, NULL), 0);
	assert_int_equal(netaddr_format(&a, out, 20), 19);
	assert_string_equal(out, "[2001:db8::1]:65535");
	assert_int_equal(netaddr_format(&a, out, 19), -1);
	memset(&a, 0, sizeof(a));
	assert_int_equal(netaddr_format(&a, out, sizeof(out)), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_specs),
		cmocka_unit_test(test_bad_specs),
		cmocka_unit_test(test_unix_path_limit),
		cmocka_unit_test(test_host_limits),
		cmocka_unit_test(test_format_bounds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
