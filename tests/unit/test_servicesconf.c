/* test_servicesconf.c - unit tests for lib/servicesconf.c (services.conf) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/err.h"
#include "lib/str.h"
#include "lib/servicesconf.h"

#define NAME "/srv/castor/services.conf"

/* ---- helpers ---- */

static int mismatches;

static void
expect_reject_n(const char *text, size_t len, int line, int col, const char *reason)
{
	struct servicesconf *c = (struct servicesconf *)1;
	struct err err;
	char want[128];

	err_clear(&err);
	if (servicesconf_parse(text, len, NAME, &c, &err) == 0) {
		servicesconf_free(c);
		fail_msg("accepted: %.80s", text);
	}
	assert_null(c);     /* rejected whole: nothing half-built is returned */
	assert_int_equal(err.kind, ERR_INVALID);
	snprintf(want, sizeof(want), NAME ":%d:%d: ", line, col);
	/* report every mismatch of a test, then fail it (see check_mismatches) */
	if (!str_has_prefix(err.msg, want) || strstr(err.msg, reason) == NULL) {
		print_error("mismatch: expected '%s...%s', got '%s'\n", want, reason, err.msg);
		mismatches++;
	}
}

static void
check_mismatches(void)
{
	int n = mismatches;

	mismatches = 0;
	if (n > 0)
		fail_msg("%d rejection(s) at the wrong place or with the wrong reason", n);
}

static void
expect_reject(const char *text, int line, int col, const char *reason)
{
	expect_reject_n(text, strlen(text), line, col, reason);
}

static struct servicesconf *
parse_ok(const char *text)
{
	struct servicesconf *c = NULL;
	struct err err;

	err_clear(&err);
	if (servicesconf_parse(text, strlen(text), NAME, &c, &err) != 0)
		fail_msg("rejected: %s", err.msg);
	assert_non_null(c);
	return c;
}

/* ---- argv splitting ---- */

static void
expect_argv(const char *cmd, int argc, ...)
{
	char **argv = NULL;
	int n = -1, i;
	struct err err;
	va_list ap;

	if (servicesconf_split_argv(cmd, &argv, &n, NULL, &err) != 0)
		fail_msg("'%s' rejected: %s", cmd, err.msg);
	if (n != argc)
		fail_msg("'%s': %d words, expected %d", cmd, n, argc);
	va_start(ap, argc);
	for (i = 0; i < argc; i++) {
		const char *w = va_arg(ap, const char *);
		if (!str_eq(argv[i], w))
			fail_msg("'%s': word %d is '%s', expected '%s'", cmd, i, argv[i], w);
	}
	va_end(ap);
	assert_null(argv[argc]);
	servicesconf_argv_free(argv);
}

static void
expect_argv_error(const char *cmd, size_t pos, const char *reason)
{
	char **argv = NULL;
	int n = -1;
	size_t p = 999;
	struct err err;

	assert_int_equal(servicesconf_split_argv(cmd, &argv, &n, &p, &err), -1);
	assert_null(argv);
	assert_int_equal(p, pos);
	assert_non_null(strstr(err.msg, reason));
}

static void
test_split_argv(void **state)
{
	(void)state;
	expect_argv("imapd", 1, "imapd");
	expect_argv("  sync-client  -r\t-n r1  ", 4, "sync-client", "-r", "-n", "r1");
	expect_argv("castorctl -C \"/srv/my castor/castor.conf\" check", 4, "castorctl", "-C",
	    "/srv/my castor/castor.conf", "check");
	expect_argv("echo \"say \\\"hi\\\"\" \"back\\\\slash\" \"keep\\n\"", 4, "echo", "say \"hi\"", "back\\slash",
	    "keep\\n");
	expect_argv("sh -c 'echo \"$HOME\" *'", 3, "sh", "-c", "echo \"$HOME\" *");
	expect_argv("a\\ b c\\\\d \\'e", 3, "a b", "c\\d", "'e");
	expect_argv("x \"\" '' y", 4, "x", "", "", "y");
	expect_argv("pre\"mid dle\"post", 1, "premid dlepost");
	expect_argv_error("echo \"oops", 5, "unterminated double quote");
	expect_argv_error("echo 'oops", 5, "unterminated single quote");
	expect_argv_error("echo oops\\", 9, "backslash at the end");
	expect_argv_error("", 0, "empty cmd");
	expect_argv_error("  \t ", 0, "empty cmd");
}

/* ---- a realistic file ---- */

static const char full_services[] =
    "# services.conf for a Castor master\n"
    "START {\n"
    "  recover   cmd=\"castorctl -C /srv/castor/castor.conf check --quick\" timeout=300\n"
    "}\n"
    "\n"
    "SERVICES {\n"
    "  imap      cmd=\"imapd\" listen=\"127.0.0.1:1143\" prefork=2 maxchild=100\n"
    "  imaps     cmd=\"imapd -s\" listen=\"[::1]:1993\" tls=yes maxforkrate=10 maxuse=50\r\n"
    "  pop3      cmd=pop3d listen=127.0.0.1:1110 prefork=0 maxchild=-1   # bare values\n"
    "\tlmtpunix\tcmd=\"lmtpd\"\tlisten=\"/srv/castor/run/lmtp.sock\"\n"
    "  sync      cmd=\"syncd\" listen=\"*:2004\" tls=no maxuse=0 maxperip=5 maxidle=30 proto=sync\n"
    "  lmtp      cmd=\"lmtpd -a\" listen=2024   \n"
    "}\n"
    "EVENTS   { purge cmd=\"castorctl purge\" at=0400   checkpoint cmd=\"castorctl checkpoint\" period=30 timeout=0 }\n"
    "DAEMON   {\n"
    "  syncr1 cmd=\"sync-client -r -n r1\"\n"
    "  shell  cmd=\"sh -c \\\"echo 'h\xc3\xa9 there'\\\" x\\\\\\\\y\"   # quotes and escapes\n"
    "}\n"
    "SHUTDOWN { drain cmd=\"sync-client --drain\" timeout=120 }\n"
    "SERVICES{pop3s cmd=\"pop3d -s\" listen=\"localhost:1995\" tls=1}\n";

static void
test_full_file(void **state)
{
	struct servicesconf *c;
	const struct servicesconf_entry *e;

	(void)state;
	c = parse_ok(full_services);
	assert_string_equal(c->filename, NAME);
	assert_int_equal(c->n, 13);

	e = &c->entries[0];
	assert_string_equal(e->name, "recover");
	assert_int_equal(e->section, SCONF_START);
	assert_string_equal(e->cmd, "castorctl -C /srv/castor/castor.conf check --quick");
	assert_int_equal(e->argc, 5);
	assert_string_equal(e->argv[0], "castorctl");
	assert_string_equal(e->argv[4], "--quick");
	assert_null(e->argv[5]);
	assert_int_equal(e->timeout, 300);
	assert_null(e->listen);
	assert_int_equal(e->line, 3);

	e = servicesconf_find(c, "imap");
	assert_ptr_equal(e, &c->entries[1]);
	assert_int_equal(e->section, SCONF_SERVICES);
	assert_string_equal(e->cmd, "imapd");
	assert_int_equal(e->argc, 1);
	assert_string_equal(e->listen, "127.0.0.1:1143");
	assert_false(e->tls);
	assert_int_equal(e->prefork, 2);
	assert_int_equal(e->maxchild, 100);
	assert_int_equal(e->maxforkrate, 0);
	assert_int_equal(e->maxuse, 250);
	assert_int_equal(e->timeout, 60);
	assert_int_equal(e->at, -1);
	assert_int_equal(e->period, 0);
	assert_int_equal(e->line, 7);

	e = servicesconf_find(c, "IMAPS");      /* names are case-insensitive */
	assert_non_null(e);
	assert_string_equal(e->name, "imaps");
	assert_string_equal(e->listen, "[::1]:1993");
	assert_true(e->tls);
	assert_int_equal(e->maxforkrate, 10);
	assert_int_equal(e->maxuse, 50);
	assert_int_equal(e->maxperip, 0);
	assert_int_equal(e->maxidle, -1);
	assert_int_equal(e->proto, SCONF_PROTO_AUTO);
	assert_int_equal(e->argc, 2);
	assert_string_equal(e->argv[1], "-s");

	e = servicesconf_find(c, "pop3");
	assert_string_equal(e->cmd, "pop3d");
	assert_string_equal(e->listen, "127.0.0.1:1110");
	assert_int_equal(e->prefork, 0);
	assert_int_equal(e->maxchild, -1);

	e = servicesconf_find(c, "lmtpunix");
	assert_string_equal(e->listen, "/srv/castor/run/lmtp.sock");
	assert_int_equal(e->line, 10);

	e = servicesconf_find(c, "sync");
	assert_string_equal(e->listen, "*:2004");
	assert_false(e->tls);
	assert_int_equal(e->maxuse, 0);
	assert_int_equal(e->maxperip, 5);
	assert_int_equal(e->maxidle, 30);
	assert_int_equal(e->proto, SCONF_PROTO_SYNC);

	e = servicesconf_find(c, "lmtp");
	assert_string_equal(e->listen, "2024");
	assert_int_equal(e->argc, 2);

	e = servicesconf_find(c, "purge");
	assert_int_equal(e->section, SCONF_EVENTS);
	assert_int_equal(e->at, 400);
	assert_int_equal(e->period, 0);
	assert_int_equal(e->timeout, 60);
	assert_int_equal(e->line, 14);
	e = servicesconf_find(c, "checkpoint");
	assert_int_equal(e->section, SCONF_EVENTS);
	assert_int_equal(e->period, 30);
	assert_int_equal(e->at, -1);
	assert_int_equal(e->timeout, 0);
	assert_int_equal(e->line, 14);

	e = servicesconf_find(c, "syncr1");
	assert_int_equal(e->section, SCONF_DAEMON);
	assert_int_equal(e->argc, 4);
	assert_string_equal(e->argv[3], "r1");

	e = servicesconf_find(c, "shell");
	assert_string_equal(e->cmd, "sh -c \"echo 'h\xc3\xa9 there'\" x\\\\y");
	assert_int_equal(e->argc, 4);
	assert_string_equal(e->argv[0], "sh");
	assert_string_equal(e->argv[1], "-c");
	assert_string_equal(e->argv[2], "echo 'h\xc3\xa9 there'");
	assert_string_equal(e->argv[3], "x\\y");

	e = servicesconf_find(c, "drain");
	assert_int_equal(e->section, SCONF_SHUTDOWN);
	assert_int_equal(e->timeout, 120);
	assert_int_equal(e->argc, 2);

	/* a section may appear more than once */
	e = servicesconf_find(c, "pop3s");
	assert_ptr_equal(e, &c->entries[12]);
	assert_int_equal(e->section, SCONF_SERVICES);
	assert_true(e->tls);
	assert_string_equal(e->listen, "localhost:1995");

	assert_null(servicesconf_find(c, "nosuch"));
	servicesconf_free(c);
}

static void
test_section_names(void **state)
{
	(void)state;
	assert_string_equal(svc_section_name(SCONF_START), "START");
	assert_string_equal(svc_section_name(SCONF_SERVICES), "SERVICES");
	assert_string_equal(svc_section_name(SCONF_EVENTS), "EVENTS");
	assert_string_equal(svc_section_name(SCONF_DAEMON), "DAEMON");
	assert_string_equal(svc_section_name(SCONF_SHUTDOWN), "SHUTDOWN");
}

static void
test_empty_and_minimal(void **state)
{
	struct servicesconf *c;

	(void)state;
	c = parse_ok("");
	assert_int_equal(c->n, 0);
	servicesconf_free(c);
	c = parse_ok("# nothing\n\nSERVICES {\n}\nEVENTS {}\n");
	assert_int_equal(c->n, 0);
	servicesconf_free(c);
	c = parse_ok("DAEMON { d cmd=x }");      /* no newline at the end */
	assert_int_equal(c->n, 1);
	assert_int_equal(c->entries[0].timeout, 60);
	servicesconf_free(c);
	servicesconf_free(NULL);
}

/* Every prefix of the real file: at a line boundary it either loads or
 * misses a '}' at its end; elsewhere it loads or fails on its last line
 * (or just after it, for the missing '}'). */
static void
test_every_prefix(void **state)
{
	const char *text = full_services;
	size_t len = strlen(text), cut;
	int lines_before = 1;

	(void)state;
	for (cut = 0; cut <= len; cut++) {
		struct servicesconf *c = NULL;
		struct err err;
		int eline = 0;

		err_clear(&err);
		if (servicesconf_parse(text, cut, NAME, &c, &err) == 0) {
			servicesconf_free(c);
		} else {
			assert_null(c);
			assert_int_equal(sscanf(err.msg, NAME ":%d:", &eline), 1);
			if (cut == 0 || text[cut - 1] == '\n') {
				if (strstr(err.msg, "missing '}'") == NULL || eline != lines_before)
					fail_msg("prefix of %zu bytes: %s", cut, err.msg);
			} else if (eline != lines_before && !(eline == lines_before + 1 && strstr(err.msg, "missing '}'"))) {
				fail_msg("prefix of %zu bytes (last line %d): %s", cut, lines_before, err.msg);
			}
		}
		if (cut < len && text[cut] == '\n')
			lines_before++;
	}
}

/* Replace each byte with hostile ones: no crash, and an error is never
 * reported before the changed line. */
static void
test_every_byte_mutated(void **state)
{
	static const char subst[] = { '\0', '\xff', '"', '=', '}', '{', ' ', '\n', '#', '\\' };
	size_t len = strlen(full_services), i, s;
	char *copy = malloc(len);
	int line = 1, rejected = 0;

	(void)state;
	assert_non_null(copy);
	for (i = 0; i < len; i++) {
		for (s = 0; s < sizeof(subst); s++) {
			struct servicesconf *c = NULL;
			struct err err;
			int eline = 0;

			memcpy(copy, full_services, len);
			copy[i] = subst[s];
			if (servicesconf_parse(copy, len, NAME, &c, &err) == 0) {
				servicesconf_free(c);
				continue;
			}
			rejected++;
			assert_null(c);
			assert_int_equal(sscanf(err.msg, NAME ":%d:", &eline), 1);
			if (eline < line)
				fail_msg("byte %zu (line %d) -> 0x%02x: error on line %d: %s", i, line,
				    (unsigned char)subst[s], eline, err.msg);
		}
		if (full_services[i] == '\n')
			line++;
	}
	assert_true(rejected > 1000);
	free(copy);
}

/* ---- malformations: each rejects the whole file at an exact place ---- */

static void
test_reject_structure(void **state)
{
	(void)state;
	/* 1. unterminated string: points at the opening quote */
	expect_reject("SERVICES {\n  imap cmd=\"imapd listen=\"1143\"\n}\n", 2, 27, "expected a blank after the closing quote");
	expect_reject("SERVICES {\n  imap cmd=\"imapd listen=1143\n}\n", 2, 12, "unterminated string");
	/* 2. missing '}' at the end of the file: points at the end */
	expect_reject("START {\n  a cmd=x\n", 3, 1, "missing '}' for section START opened at line 1");
	expect_reject("# x\nDAEMON {\n  a cmd=x", 3, 10, "missing '}' for section DAEMON opened at line 2");
	/* 3. '}' without a section */
	expect_reject("START { a cmd=x }\n  }\n", 2, 3, "'}' without an open section");
	/* 4. '{' without a name */
	expect_reject("{\n", 1, 1, "'{' without a section name");
	/* 5. unknown section, and a lower-case one */
	expect_reject("\nSERVICE {\n}\n", 2, 1, "unknown section 'SERVICE'");
	expect_reject("services {\n}\n", 1, 1, "section names are upper case: 'SERVICES'");
	/* 6. section name without '{' on its line */
	expect_reject("SERVICES\n{\n}\n", 1, 9, "expected '{' after section name SERVICES");
	expect_reject("EVENTS x {\n", 1, 8, "expected '{'");
	/* 7. a '{' inside a section (a forgotten '}') */
	expect_reject("START {\n a cmd=x\nSERVICES {\n", 3, 10, "unexpected '{' inside section START");
	/* 8. junk outside a section */
	expect_reject("START { a cmd=x }\n\"x\"\n", 2, 1, "unexpected '\"' outside a section");
	/* 9. NUL byte */
	expect_reject_n("START {\n a cmd=\"x\0y\"\n}\n", 22, 2, 10, "NUL byte");
	/* 10. overlong line */
	{
		char big[CONF_LINE_MAX + 64];
		memset(big, ' ', sizeof(big));
		memcpy(big, "START {\n", 8);
		big[sizeof(big) - 1] = '\0';
		expect_reject(big, 2, CONF_LINE_MAX + 1, "line too long");
	}
	/* 11. non-UTF-8 junk outside quotes, invalid UTF-8 inside, and UTF-8 in a name */
	expect_reject("SERVICES {\n imap cmd=x listen=1 \xff\n}\n", 2, 22, "invalid UTF-8");
	expect_reject("SERVICES {\n imap cmd=\"x\xc3\" listen=1\n}\n", 2, 13, "invalid UTF-8");
	expect_reject("SERVICES {\n im\xc3\xa4p cmd=x listen=1\n}\n", 2, 4, "invalid character '\\xc3' in name");
	expect_reject("START {\n a cmd=\xc3\xa4\n}\n", 2, 8, "unexpected '\\xc3' in unquoted value");
	/* 12. control characters and a lone CR */
	expect_reject("START {\n a cmd=x\x1b\n}\n", 2, 9, "control character 0x1b");
	expect_reject("START {\r a cmd=x\n}\n", 1, 8, "control character 0x0d");
	check_mismatches();
}

static void
test_reject_entries(void **state)
{
	(void)state;
	/* 13. unknown key, and a key of another section */
	expect_reject("SERVICES {\n  imap cmd=a listen=1 port=tcp\n}\n", 2, 23,
	    "unknown key 'port' in SERVICES (expected cmd, listen, tls, prefork, maxchild, maxforkrate, maxuse, "
	    "maxperip, maxidle, proto)");
	expect_reject("DAEMON { d cmd=x listen=1 }\n", 1, 18, "unknown key 'listen' in DAEMON (expected cmd)");
	expect_reject("START { s cmd=x CMD=y }\n", 1, 17, "unknown key 'CMD'");
	/* 14. duplicate entry name, across sections and case */
	expect_reject("START { imap cmd=a }\nSERVICES {\n  IMAP cmd=b listen=1\n}\n", 3, 3,
	    "duplicate entry name 'IMAP' (first defined at line 1)");
	expect_reject("EVENTS { a cmd=x at=0100 a cmd=y at=0200 }\n", 1, 26, "duplicate entry name 'a'");
	/* 15. duplicate key in an entry */
	expect_reject("SERVICES {\n  imap cmd=a listen=1 cmd=b\n}\n", 2, 23, "duplicate key 'cmd' in entry 'imap'");
	/* 16. missing cmd */
	expect_reject("SERVICES {\n  imap listen=1\n}\n", 2, 3, "entry 'imap' has no cmd=");
	expect_reject("START {\n  lonely\n}\n", 2, 3, "entry 'lonely' has no cmd=");
	/* 17. SERVICES without listen */
	expect_reject("SERVICES {\n  imap cmd=imapd prefork=1\n}\n", 2, 3, "service 'imap' has no listen=");
	/* 18. EVENTS without period or at, or with both */
	expect_reject("EVENTS {\n  purge cmd=x\n}\n", 2, 3, "event 'purge' needs period= or at=");
	expect_reject("EVENTS {\n  purge cmd=x period=5 at=0100\n}\n", 2, 24, "both period= and at=");
	/* 19. key without a value, and a key without '=' */
	expect_reject("SERVICES {\n  imap cmd=a listen=1 prefork=\n}\n", 2, 31, "missing value after 'prefork='");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 prefork= maxchild=3\n}\n", 2, 31, "missing value after 'prefork='");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 tls\n}\n", 2, 26, "expected '=' after key 'tls'");
	/* 20. value without key, key without entry */
	expect_reject("SERVICES {\n  imap cmd=a =1143\n}\n", 2, 14, "'=' without a key");
	expect_reject("SERVICES {\n  cmd=a listen=1\n}\n", 2, 3, "key 'cmd' without an entry name");
	/* 21. bad characters in names and values */
	expect_reject("SERVICES {\n  im.ap cmd=a listen=1\n}\n", 2, 5, "invalid character '.' in name");
	expect_reject("SERVICES {\n  imap cmd=a listen=a\"b\n}\n", 2, 22, "unexpected '\"' in unquoted value");
	expect_reject("START {\n  a cmd=\"x\"y\n}\n", 2, 12, "expected a blank after the closing quote");
	expect_reject("START {\n  a cmd=\"x\\ny\"\n}\n", 2, 11, "invalid escape '\\n'");
	expect_reject("START {\n  \"a\" cmd=x\n}\n", 2, 3, "unexpected '\"' (expected an entry name");
	expect_reject("SERVICES {\n  lmtp cmd=a listen=2024 ; \n}\n", 2, 26, "unexpected ';'");
	{
		char big[200];
		memset(big, 0, sizeof(big));
		memcpy(big, "START {\n  ", 10);
		memset(big + 10, 'n', 65);
		memcpy(big + 75, " cmd=x\n}\n", 9);
		expect_reject(big, 2, 3, "entry name longer than 64 bytes");
	}
	{
		struct buf b = BUF_INIT;
		struct servicesconf *c = NULL;
		int i;
		buf_puts(&b, "DAEMON {\n");
		for (i = 0; i < 10000; i++)
			buf_printf(&b, "  d%d cmd=x\n", i);
		buf_puts(&b, "}\n");
		assert_int_equal(servicesconf_parse(b.data, b.len, NAME, &c, NULL), 0);  /* 10000 is fine */
		assert_int_equal(c->n, 10000);
		servicesconf_free(c);
		buf_truncate(&b, b.len - 2);
		buf_puts(&b, "  one_more cmd=x\n}\n");
		expect_reject_n(b.data, b.len, 10002, 3, "too many entries (more than 10000)");
		buf_free(&b);
	}
	check_mismatches();
}

static void
test_reject_values(void **state)
{
	(void)state;
	/* 22. numbers */
	expect_reject("SERVICES {\n  imap cmd=a listen=1 prefork=abc\n}\n", 2, 31, "prefork must be an integer 0..10000, not 'abc'");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 prefork=-1\n}\n", 2, 31, "prefork must be an integer 0..10000, not '-1'");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 prefork=\"2 \"\n}\n", 2, 31, "prefork must be an integer");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 maxchild=99999999999\n}\n", 2, 32,
	    "maxchild must be -1 (unlimited) or 1..100000, not '99999999999'");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 maxchild=0\n}\n", 2, 32, "maxchild must be -1 (unlimited)");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 maxforkrate=+5\n}\n", 2, 35, "maxforkrate must be");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 maxuse=1e3\n}\n", 2, 30, "maxuse must be");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 maxperip=-1\n}\n", 2, 32, "maxperip must be an integer 0..100000");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 maxidle=86401\n}\n", 2, 31, "maxidle must be 0..86400 seconds");
	expect_reject("SERVICES {\n  imap cmd=a listen=1 proto=tcp\n}\n", 2, 29,
	    "proto must be imap, pop3, lmtp, sync or none, not 'tcp'");
	expect_reject("DAEMON {\n  d cmd=a maxperip=3\n}\n", 2, 11, "unknown key 'maxperip' in DAEMON");
	expect_reject("SHUTDOWN {\n  d cmd=a timeout=86401\n}\n", 2, 19, "timeout must be 0..86400 seconds");
	expect_reject("EVENTS {\n  e cmd=a period=0\n}\n", 2, 18, "period must be 1..525600 minutes");
	/* 23. prefork above maxchild */
	expect_reject("SERVICES {\n  imap cmd=a listen=1 prefork=5 maxchild=4\n}\n", 2, 31, "prefork=5 exceeds maxchild=4");
	/* 24. at= not a valid HHMM */
	expect_reject("EVENTS {\n  e cmd=a at=2460\n}\n", 2, 14, "at must be HHMM between 0000 and 2359, not '2460'");
	expect_reject("EVENTS {\n  e cmd=a at=0060\n}\n", 2, 14, "at must be HHMM");
	expect_reject("EVENTS {\n  e cmd=a at=400\n}\n", 2, 14, "at must be HHMM");
	expect_reject("EVENTS {\n  e cmd=a at=-100\n}\n", 2, 14, "at must be HHMM");
	/* 25. tls= not a boolean */
	expect_reject("SERVICES {\n  imaps cmd=a listen=1 tls=maybe\n}\n", 2, 28, "tls must be yes or no, not 'maybe'");
	/* 26. bad listen addresses: the column points inside the value */
	expect_reject("SERVICES {\n  imap cmd=a listen=\"1.2.3.4:0\"\n}\n", 2, 30, "bad listen address '1.2.3.4:0': port out of range");
	expect_reject("SERVICES {\n  imap cmd=a listen=\"[::1:143\"\n}\n", 2, 30, "missing ']'");
	expect_reject("SERVICES {\n  imap cmd=a listen=host:\n}\n", 2, 26, "missing port");
	expect_reject("SERVICES {\n  imap cmd=a listen=\"host:\"\n}\n", 2, 27, "missing port");
	expect_reject("SERVICES {\n  lmtp cmd=a listen=\"run/lmtp.sock\"\n}\n", 2, 22, "unix socket path must be absolute");
	expect_reject("SERVICES {\n  imap cmd=a listen=\"::1:143\"\n}\n", 2, 22, "must be in brackets");
	expect_reject("SERVICES {\n  imap cmd=a listen=\"\"\n}\n", 2, 22, "empty address");
	/* 27. cmd that does not split: the column points inside the string */
	expect_reject("START {\n  a cmd=\"echo \\\"oops\"\n}\n", 2, 16, "unterminated double quote in cmd");
	expect_reject("START {\n  a cmd=\"echo 'oops\"\n}\n", 2, 15, "unterminated single quote in cmd");
	expect_reject("START {\n  a cmd=\"\"\n}\n", 2, 9, "empty cmd");
	expect_reject("START {\n  a cmd=\"echo \\\\\"\n}\n", 2, 16, "backslash at the end of cmd");
	check_mismatches();
}

static void
test_load_file(void **state)
{
	char path[64];
	struct servicesconf *c = NULL;
	struct err err;
	FILE *f;
	int fd;

	(void)state;
	str_lcpy(path, "/tmp/castor-svc-XXXXXX", sizeof(path));
	fd = mkstemp(path);
	assert_true(fd >= 0);
	close(fd);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("SERVICES {\n  imap cmd=imapd listen=\"127.0.0.1:1143\"\n}\n", f);
	fclose(f);
	assert_int_equal(servicesconf_load(path, &c, &err), 0);
	assert_string_equal(c->filename, path);
	assert_int_equal(c->n, 1);
	servicesconf_free(c);

	f = fopen(path, "w");
	assert_non_null(f);
	fputs("SERVICES {\n  imap cmd=imapd listen=\"127.0.0.1:1143\"\n", f);
	fclose(f);
	assert_int_equal(servicesconf_load(path, &c, &err), -1);
	assert_null(c);
	assert_true(str_has_prefix(err.msg, path));
	assert_non_null(strstr(err.msg, ":3:1: missing '}'"));

	unlink(path);
	assert_int_equal(servicesconf_load(path, &c, &err), -1);
	assert_int_equal(err.kind, ERR_NOTFOUND);
	assert_null(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_split_argv),
		cmocka_unit_test(test_full_file),
		cmocka_unit_test(test_section_names),
		cmocka_unit_test(test_empty_and_minimal),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_every_byte_mutated),
		cmocka_unit_test(test_reject_structure),
		cmocka_unit_test(test_reject_entries),
		cmocka_unit_test(test_reject_values),
		cmocka_unit_test(test_load_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
