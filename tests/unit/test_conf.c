/* test_conf.c - unit tests for lib/conf.c and lib/conf_keys.c (castor.conf) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/err.h"
#include "lib/log.h"
#include "lib/str.h"

#define NAME "/srv/castor/castor.conf"

/* ---- helpers ---- */

/* Parse text (len bytes) and expect rejection at line:col with `reason` in the message. */
static void
expect_reject_n(const char *text, size_t len, int line, int col, const char *reason)
{
	struct err err;
	struct conf *c;
	char want[128];

	err_clear(&err);
	c = conf_parse(text, len, NAME, &err);
	if (c != NULL) {
		conf_free(c);
		fail_msg("accepted: %.60s", text);
	}
	assert_int_equal(err.kind, ERR_INVALID);
	snprintf(want, sizeof(want), NAME ":%d:%d: ", line, col);
	if (!str_has_prefix(err.msg, want))
		fail_msg("expected prefix '%s', got '%s'", want, err.msg);
	if (strstr(err.msg, reason) == NULL)
		fail_msg("expected reason '%s', got '%s'", reason, err.msg);
}

static void
expect_reject(const char *text, int line, int col, const char *reason)
{
	expect_reject_n(text, strlen(text), line, col, reason);
}

static struct conf *
parse_ok(const char *text)
{
	struct err err;
	struct conf *c;

	err_clear(&err);
	c = conf_parse(text, strlen(text), NAME, &err);
	if (c == NULL)
		fail_msg("rejected: %s", err.msg);
	return c;
}

/* Run fn with stderr captured into buf (log lines go to fd 2). */
static void
capture_stderr_begin(int *saved, char *path, size_t size)
{
	int fd;

	str_lcpy(path, "/tmp/castor-test-log-XXXXXX", size);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	*saved = dup(2);
	assert_true(*saved >= 0);
	assert_int_equal(dup2(fd, 2), 2);
	close(fd);
}

static char *
capture_stderr_end(int saved, const char *path)
{
	static char out[8192];
	FILE *f;
	size_t n;

	assert_int_equal(dup2(saved, 2), 2);
	close(saved);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(out, 1, sizeof(out) - 1, f);
	out[n] = '\0';
	fclose(f);
	unlink(path);
	return out;
}

static int
count_substr(const char *hay, const char *needle)
{
	int n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

/* ---- value parsers ---- */

static void
test_value_parsers(void **state)
{
	bool b;
	int64_t d;
	uint64_t u;
	double f;

	(void)state;
	assert_int_equal(conf_parse_bool("Yes", &b), 0);
	assert_true(b);
	assert_int_equal(conf_parse_bool("on", &b), 0);
	assert_true(b);
	assert_int_equal(conf_parse_bool("TRUE", &b), 0);
	assert_true(b);
	assert_int_equal(conf_parse_bool("1", &b), 0);
	assert_true(b);
	assert_int_equal(conf_parse_bool("no", &b), 0);
	assert_false(b);
	assert_int_equal(conf_parse_bool("Off", &b), 0);
	assert_false(b);
	assert_int_equal(conf_parse_bool("false", &b), 0);
	assert_false(b);
	assert_int_equal(conf_parse_bool("0", &b), 0);
	assert_false(b);
	assert_int_equal(conf_parse_bool("maybe", &b), -1);
	assert_int_equal(conf_parse_bool("", &b), -1);
	assert_int_equal(conf_parse_bool("yes ", &b), -1);

	assert_int_equal(conf_parse_duration_ms("10", &d), 0);
	assert_int_equal(d, 10000);
	assert_int_equal(conf_parse_duration_ms("500ms", &d), 0);
	assert_int_equal(d, 500);
	assert_int_equal(conf_parse_duration_ms("10s", &d), 0);
	assert_int_equal(d, 10000);
	assert_int_equal(conf_parse_duration_ms("5m", &d), 0);
	assert_int_equal(d, 300000);
	assert_int_equal(conf_parse_duration_ms("2h", &d), 0);
	assert_int_equal(d, 7200000);
	assert_int_equal(conf_parse_duration_ms("7d", &d), 0);
	assert_int_equal(d, 604800000);
	assert_int_equal(conf_parse_duration_ms("0", &d), 0);
	assert_int_equal(d, 0);
	assert_int_equal(conf_parse_duration_ms("9223372036854775807ms", &d), 0);
	assert_int_equal(conf_parse_duration_ms("9223372036854775808ms", &d), -1);
	assert_int_equal(conf_parse_duration_ms("9223372036854776s", &d), -1);
	assert_int_equal(conf_parse_duration_ms("106751991167301d", &d), -1);
	assert_int_equal(conf_parse_duration_ms("-1", &d), -1);
	assert_int_equal(conf_parse_duration_ms("10 s", &d), -1);
	assert_int_equal(conf_parse_duration_ms("10S", &d), -1);
	assert_int_equal(conf_parse_duration_ms("1.5h", &d), -1);
	assert_int_equal(conf_parse_duration_ms("s", &d), -1);
	assert_int_equal(conf_parse_duration_ms("", &d), -1);
	assert_int_equal(conf_parse_duration_ms("10w", &d), -1);

	assert_int_equal(conf_parse_bytes("1024", &u), 0);
	assert_true(u == 1024);
	assert_int_equal(conf_parse_bytes("64k", &u), 0);
	assert_true(u == 65536);
	assert_int_equal(conf_parse_bytes("64M", &u), 0);
	assert_true(u == 64ull << 20);
	assert_int_equal(conf_parse_bytes("1G", &u), 0);
	assert_true(u == 1ull << 30);
	assert_int_equal(conf_parse_bytes("2t", &u), 0);
	assert_true(u == 2ull << 40);
	assert_int_equal(conf_parse_bytes("18446744073709551615", &u), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(conf_parse_bytes("18446744073709551616", &u), -1);
	assert_int_equal(conf_parse_bytes("16777216T", &u), -1);
	assert_int_equal(conf_parse_bytes("16777215T", &u), 0);
	assert_int_equal(conf_parse_bytes("64MB", &u), -1);
	assert_int_equal(conf_parse_bytes("-1", &u), -1);
	assert_int_equal(conf_parse_bytes("k", &u), -1);
	assert_int_equal(conf_parse_bytes("1.5G", &u), -1);
	assert_int_equal(conf_parse_bytes("", &u), -1);

	assert_int_equal(conf_parse_double("0.5", &f), 0);
	assert_true(f == 0.5);
	assert_int_equal(conf_parse_double("2", &f), 0);
	assert_true(f == 2.0);
	assert_int_equal(conf_parse_double("-1.25", &f), 0);
	assert_true(f == -1.25);
	assert_int_equal(conf_parse_double("1e3", &f), -1);
	assert_int_equal(conf_parse_double(".5", &f), -1);
	assert_int_equal(conf_parse_double("1.", &f), -1);
	assert_int_equal(conf_parse_double("nan", &f), -1);
	assert_int_equal(conf_parse_double("", &f), -1);
}

static void
test_line_check_and_show(void **state)
{
	char why[128], show[64];
	size_t off;
	char longline[CONF_LINE_MAX + 2];

	(void)state;
	assert_int_equal(conf_line_check("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\xa7\t", 14, &off, why, sizeof(why)), 0);
	assert_int_equal(conf_line_check("ab\xc3", 3, &off, why, sizeof(why)), -1);       /* truncated */
	assert_int_equal(off, 2);
	assert_int_equal(conf_line_check("a\xc0\xaf", 3, &off, why, sizeof(why)), -1);    /* overlong '/' */
	assert_int_equal(off, 1);
	assert_int_equal(conf_line_check("\xed\xa0\x80", 3, &off, why, sizeof(why)), -1); /* surrogate */
	assert_int_equal(off, 0);
	assert_int_equal(conf_line_check("\xf4\x90\x80\x80", 4, &off, why, sizeof(why)), -1); /* > U+10FFFF */
	assert_int_equal(conf_line_check("xy\x7f", 3, &off, why, sizeof(why)), -1);
	assert_int_equal(off, 2);
	assert_non_null(strstr(why, "control character 0x7f"));
	memset(longline, 'a', sizeof(longline));
	assert_int_equal(conf_line_check(longline, CONF_LINE_MAX, &off, why, sizeof(why)), 0);
	assert_int_equal(conf_line_check(longline, CONF_LINE_MAX + 1, &off, why, sizeof(why)), -1);
	assert_int_equal(off, CONF_LINE_MAX);

	assert_string_equal(conf_show("a\x01\xff", 3, show, sizeof(show)), "a\\x01\\xff");
	assert_string_equal(conf_show(longline, 100, show, sizeof(show)),
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...");
}

static void
test_key_table(void **state)
{
	const struct conf_key *k;
	size_t i, j;

	(void)state;
	k = conf_key_lookup("sync_mode");
	assert_non_null(k);
	assert_int_equal(k->type, CONF_ENUM);
	assert_string_equal(k->choices, "async|semisync");
	k = conf_key_lookup("r1_sync_host");
	assert_non_null(k);
	assert_string_equal(k->name, "*_sync_host");
	k = conf_key_lookup("r1_sync_password_file");
	assert_non_null(k);
	assert_string_equal(k->name, "*_sync_password_file");
	assert_int_equal(k->type, CONF_PATH);
	assert_string_equal(conf_key_lookup("east_sync_password")->name, "*_sync_password");
	assert_null(conf_key_lookup("_sync_host"));      /* the prefix may not be empty */
	assert_null(conf_key_lookup("no_such_key"));
	assert_string_equal(conf_key_lookup("SHUTDOWN_TIMEOUT")->name, "shutdown_timeout");
	/* every row is well formed and unique */
	for (i = 0; conf_known_keys[i].name != NULL; i++) {
		assert_non_null(conf_known_keys[i].help);
		assert_true(strlen(conf_known_keys[i].help) > 10);
		if (conf_known_keys[i].type == CONF_ENUM)
			assert_non_null(conf_known_keys[i].choices);
		for (j = 0; j < i; j++)
			assert_string_not_equal(conf_known_keys[i].name, conf_known_keys[j].name);
	}
	assert_true(i >= 40);
}

/* ---- positive parse ---- */

static const char full_conf[] =
    "# castor.conf written by castorctl init\r\n"
    "\n"
    "servername: mail.example.org\n"
    "role: Master\n"
    "master_name: mail.example.org\n"
    "  log_level:   notice   \n"
    "shutdown_timeout: 15s\n"
    "services_conf: services.conf\n"
    "pidfile: /run/castor/castord.pid\n"
    "   # an indented comment\n"
    "blob_inline_max: 64k\n"
    "maxmessagesize: 50M\n"
    "quota_default_bytes: 1G\n"
    "quota_default_messages: 100000\n"
    "duplicatesuppression: yes\n"
    "duplicate_days: 3\n"
    "virtdomains: on\n"
    "delete_hold_days: 7\n"
    "autocreate_folders: Sent Drafts  Trash\tJunk Archive\n"
    "allowplaintext: no\n"
    "tls_cert_file: tls/cert.pem\n"
    "tls_key_file: /etc/castor/key.pem\n"
    "tls_min_version: 1.3\n"
    "imap_idle_timeout: 30m\n"
    "imap_preauth_timeout: 60\n"
    "sync_mode: semisync\n"
    "sync_channels: r1 r2\n"
    "r1_sync_host: 127.0.0.1\n"
    "r1_sync_port: 2004\n"
    "r1_sync_authname: sync\n"
    "r1_sync_password: s3cret: with colon # and hash\n"
    "r1_sync_tls: off\n"
    "r2_sync_host: ::1\n"
    "r2_sync_port: 2005\n"
    "r2_sync_password_file: secrets/r2.pw\n"
    "sync_log_segment_size: 64M\n"
    "sync_log_max_bytes: 4G\n"
    "sync_semisync_channels: r1\n"
    "sync_semisync_timeout: 2s\n"
    "sync_semisync_strict: true\n"
    "sync_verify_interval: 1h\n"
    "sync_conflict: RENUMBER\n"
    "sync_delete_limit: 50\n"
    "sync_delete_fraction: 0.5\n"
    "sync_user_delete_limit: 5\n"
    "Future_Key: something new\n"
    "empty_string:\n"
    "comment_value: # not a comment\n"
    "utf8_value: caf\xc3\xa9 \xe2\x82\xac";

static void
check_full(const struct conf *c)
{
	char **list;
	size_t n;
	char *p;

	assert_string_equal(conf_filename(c), NAME);
	assert_string_equal(conf_dir(c), "/srv/castor");
	assert_string_equal(conf_get_str(c, "servername", NULL), "mail.example.org");
	assert_string_equal(conf_get_str(c, "role", NULL), "master");       /* canonical enum spelling */
	assert_string_equal(conf_get_str(c, "log_level", NULL), "notice");  /* blanks trimmed */
	assert_int_equal(conf_get_duration_ms(c, "shutdown_timeout", 10000), 15000);
	p = conf_get_path(c, "services_conf", NULL);
	assert_string_equal(p, "/srv/castor/services.conf");
	free(p);
	p = conf_get_path(c, "pidfile", NULL);
	assert_string_equal(p, "/run/castor/castord.pid");
	free(p);
	assert_true(conf_get_bytes(c, "blob_inline_max", 0) == 65536);
	assert_true(conf_get_bytes(c, "maxmessagesize", 0) == 50ull << 20);
	assert_true(conf_get_bytes(c, "quota_default_bytes", 0) == 1ull << 30);
	assert_int_equal(conf_get_int(c, "quota_default_messages", 0), 100000);
	assert_true(conf_get_bool(c, "duplicatesuppression", false));
	assert_int_equal(conf_get_int(c, "duplicate_days", 0), 3);
	assert_true(conf_get_bool(c, "virtdomains", false));
	assert_int_equal(conf_get_int(c, "delete_hold_days", 0), 7);
	list = conf_get_list(c, "autocreate_folders", &n);
	assert_int_equal(n, 5);
	assert_string_equal(list[0], "Sent");
	assert_string_equal(list[1], "Drafts");
	assert_string_equal(list[2], "Trash");
	assert_string_equal(list[3], "Junk");
	assert_string_equal(list[4], "Archive");
	assert_null(list[5]);
	conf_list_free(list);
	assert_false(conf_get_bool(c, "allowplaintext", true));
	p = conf_get_path(c, "tls_cert_file", NULL);
	assert_string_equal(p, "/srv/castor/tls/cert.pem");
	free(p);
	p = conf_get_path(c, "tls_key_file", NULL);
	assert_string_equal(p, "/etc/castor/key.pem");
	free(p);
	assert_string_equal(conf_get_str(c, "tls_min_version", NULL), "1.3");
	assert_int_equal(conf_get_duration_ms(c, "imap_idle_timeout", 0), 1800000);
	assert_int_equal(conf_get_duration_ms(c, "imap_preauth_timeout", 0), 60000);
	assert_string_equal(conf_get_str(c, "sync_mode", NULL), "semisync");
	list = conf_get_list(c, "sync_channels", &n);
	assert_int_equal(n, 2);
	assert_string_equal(list[0], "r1");
	assert_string_equal(list[1], "r2");
	conf_list_free(list);
	assert_string_equal(conf_get_str(c, "r1_sync_host", NULL), "127.0.0.1");
	assert_int_equal(conf_get_int(c, "r1_sync_port", 0), 2004);
	assert_string_equal(conf_get_str(c, "r1_sync_authname", NULL), "sync");
	assert_string_equal(conf_get_str(c, "r1_sync_password", NULL), "s3cret: with colon # and hash");
	assert_false(conf_get_bool(c, "r1_sync_tls", true));
	assert_string_equal(conf_get_str(c, "r2_sync_host", NULL), "::1");
	assert_int_equal(conf_get_int(c, "r2_sync_port", 0), 2005);
	p = conf_get_path(c, "r2_sync_password_file", NULL);
	assert_string_equal(p, "/srv/castor/secrets/r2.pw");
	free(p);
	assert_true(conf_get_bytes(c, "sync_log_segment_size", 0) == 64ull << 20);
	assert_true(conf_get_bytes(c, "sync_log_max_bytes", 0) == 4ull << 30);
	assert_string_equal(conf_get_str(c, "sync_semisync_channels", NULL), "r1");
	assert_int_equal(conf_get_duration_ms(c, "sync_semisync_timeout", 0), 2000);
	assert_true(conf_get_bool(c, "sync_semisync_strict", false));
	assert_int_equal(conf_get_duration_ms(c, "sync_verify_interval", 0), 3600000);
	assert_string_equal(conf_get_str(c, "sync_conflict", NULL), "renumber");
	assert_int_equal(conf_get_int(c, "sync_delete_limit", 0), 50);
	assert_true(conf_get_double(c, "sync_delete_fraction", 0) == 0.5);
	assert_int_equal(conf_get_int(c, "sync_user_delete_limit", 0), 5);
	/* unknown keys are kept, stored lower-case, looked up case-insensitively */
	assert_true(conf_has(c, "future_key"));
	assert_true(conf_has(c, "FUTURE_KEY"));
	assert_string_equal(conf_get_str(c, "Future_Key", NULL), "something new");
	assert_true(conf_has(c, "empty_string"));
	assert_string_equal(conf_get_str(c, "empty_string", "def"), "");
	assert_string_equal(conf_get_str(c, "comment_value", NULL), "# not a comment");
	assert_string_equal(conf_get_str(c, "utf8_value", NULL), "caf\xc3\xa9 \xe2\x82\xac");
	/* absent keys give the defaults */
	assert_false(conf_has(c, "no_such_key"));
	assert_null(conf_get_str(c, "no_such_key", NULL));
	assert_string_equal(conf_get_str(c, "no_such_key", "d"), "d");
	assert_int_equal(conf_get_int(c, "no_such_key", -7), -7);
	assert_true(conf_get_bool(c, "no_such_key", true));
	assert_int_equal(conf_get_duration_ms(c, "no_such_key", 1234), 1234);
	assert_true(conf_get_bytes(c, "no_such_key", 99) == 99);
	assert_true(conf_get_double(c, "no_such_key", 0.25) == 0.25);
	assert_null(conf_get_path(c, "no_such_key", NULL));
	p = conf_get_path(c, "no_such_key", "db/users.db");
	assert_string_equal(p, "/srv/castor/db/users.db");
	free(p);
	p = conf_get_path(c, "empty_string", "x");
	assert_string_equal(p, "/srv/castor/x");
	free(p);
	list = conf_get_list(c, "no_such_key", &n);
	assert_int_equal(n, 0);
	assert_null(list[0]);
	conf_list_free(list);
}

static void
test_full_conf(void **state)
{
	struct conf *c;
	const char *k, *v;
	size_t i;

	(void)state;
	c = parse_ok(full_conf);
	check_full(c);
	/* iteration in file order */
	assert_true(conf_iter(c, 0, &k, &v));
	assert_string_equal(k, "servername");
	assert_string_equal(v, "mail.example.org");
	for (i = 0; conf_iter(c, i, &k, &v); i++)
		;
	assert_int_equal(i, 46);
	assert_true(conf_iter(c, 42, &k, &v));
	assert_string_equal(k, "future_key");
	assert_string_equal(v, "something new");
	assert_false(conf_iter(c, 46, &k, &v));
	conf_free(c);
}

/* The parser sees a buffer, not a stream: feed it every prefix of a real
 * file.  Each prefix that ends at a line boundary must load; the others
 * must load or fail cleanly at a position on the last line. */
static void
test_every_prefix(void **state)
{
	size_t len = strlen(full_conf), cut;
	int lines_before = 1;

	(void)state;
	for (cut = 0; cut <= len; cut++) {
		struct err err;
		struct conf *c;

		err_clear(&err);
		c = conf_parse(full_conf, cut, NAME, &err);
		if (cut == 0 || full_conf[cut - 1] == '\n') {
			if (c == NULL)
				fail_msg("prefix of %zu bytes rejected: %s", cut, err.msg);
		} else if (c == NULL) {
			char want[64];
			snprintf(want, sizeof(want), NAME ":%d:", lines_before);
			if (!str_has_prefix(err.msg, want))
				fail_msg("prefix of %zu bytes: '%s' not on line %d", cut, err.msg, lines_before);
		}
		conf_free(c);
		if (cut < len && full_conf[cut] == '\n')
			lines_before++;
	}
}

/* Replace each byte in turn with a hostile one: never a crash, and a
 * rejection is never reported before the line that was changed. */
static void
test_every_byte_mutated(void **state)
{
	static const char subst[] = { '\0', '\xff', ':', '-', ' ', '\n', '#', '\x01' };
	size_t len = strlen(full_conf), i, s;
	char *copy = malloc(len);
	int line = 1, rejected = 0;

	(void)state;
	assert_non_null(copy);
	for (i = 0; i < len; i++) {
		for (s = 0; s < sizeof(subst); s++) {
			struct err err;
			struct conf *c;
			int eline = 0;

			memcpy(copy, full_conf, len);
			copy[i] = subst[s];
			c = conf_parse(copy, len, NAME, &err);
			if (c == NULL) {
				rejected++;
				assert_int_equal(sscanf(err.msg, NAME ":%d:", &eline), 1);
				if (eline < line)
					fail_msg("byte %zu (line %d) -> 0x%02x: error on line %d: %s", i, line,
					    (unsigned char)subst[s], eline, err.msg);
			}
			conf_free(c);
		}
		if (full_conf[i] == '\n')
			line++;
	}
	assert_true(rejected > 100);
	free(copy);
}

/* ---- malformations: each rejects the whole file at an exact place ---- */

static void
test_reject_syntax(void **state)
{
	char big[CONF_LINE_MAX + 100];

	(void)state;
	/* 1. missing ':' */
	expect_reject("servername: a\nsync_mode async\n", 2, 10, "expected ':' after key 'sync_mode'");
	/* 2. key without ':' at end of line */
	expect_reject("allowplaintext\n", 1, 15, "expected ':' after key");
	/* 3. blank between key and ':' */
	expect_reject("log_level : info\n", 1, 10, "expected ':'");
	/* 4. bad key character */
	expect_reject("sync-mode: async\n", 1, 5, "invalid character '-' in key");
	expect_reject("  key.name: x\n", 1, 6, "invalid character '.' in key");
	/* 5. a key cannot start with a non-key character */
	expect_reject("\n\n   -x: 1\n", 3, 4, "invalid character '-' at start of key");
	expect_reject("\xc3\xa9t\xc3\xa9: x\n", 1, 1, "at start of key");
	/* 6. value without key */
	expect_reject("# c\n: async\n", 2, 1, "missing key before ':'");
	expect_reject("\t: x\n", 1, 2, "missing key before ':'");
	/* 7. duplicate key, case-insensitively */
	expect_reject("log_level: info\nservername: x\nLOG_LEVEL: debug\n", 3, 1,
	    "duplicate key 'LOG_LEVEL' (first set at line 1)");
	expect_reject("a: 1\n  a: 2\n", 2, 3, "duplicate key 'a'");
	/* 8. NUL byte */
	expect_reject_n("servername: a\0b\n", 16, 1, 14, "NUL byte");
	expect_reject_n("\0", 1, 1, 1, "NUL byte");
	/* 9. control characters, including a lone CR */
	expect_reject("servername: a\x01\n", 1, 14, "control character 0x01");
	expect_reject("a: b\rc\n", 1, 5, "control character 0x0d");
	expect_reject("a: b\r\r\n", 1, 5, "control character 0x0d");
	/* 10. invalid UTF-8 */
	expect_reject("ok: 1\nservername: caf\xe9\n", 2, 16, "invalid UTF-8");
	expect_reject("servername: \xc0\xaf\n", 1, 13, "invalid UTF-8");
	expect_reject("servername: x\xe2\x82\n", 1, 14, "invalid UTF-8");
	expect_reject("# comment \xff\n", 1, 11, "invalid UTF-8");
	/* 11. overlong line */
	memset(big, 'x', sizeof(big));
	memcpy(big, "servername: ", 12);
	big[CONF_LINE_MAX + 50] = '\0';
	expect_reject(big, 1, CONF_LINE_MAX + 1, "line too long");
	/* 12. overlong key */
	memset(big, 'k', 200);
	memcpy(big + 200, ": v\n", 5);
	expect_reject(big, 1, 1, "key longer than 128 bytes");
	/* 13. too many settings */
	{
		struct buf b = BUF_INIT;
		struct conf *c;
		int i;
		for (i = 0; i <= 10000; i++)
			buf_printf(&b, "k%d: x\n", i);
		expect_reject_n(b.data, b.len, 10001, 1, "too many settings (more than 10000)");
		buf_truncate(&b, b.len - strlen("k10000: x\n"));
		c = conf_parse(b.data, b.len, NAME, NULL);    /* 10000 is fine */
		assert_non_null(c);
		conf_free(c);
		buf_free(&b);
	}
	/* an error on a late line still rejects the file, only the first counts */
	expect_reject("a: 1\nb: 2\nc 3\nd-4: x\n", 3, 2, "expected ':'");
}

static void
test_reject_types(void **state)
{
	(void)state;
	/* 13. bool */
	expect_reject("allowplaintext: maybe\n", 1, 17, "invalid value 'maybe' for 'allowplaintext': expected yes/no");
	expect_reject("r1_sync_tls: sometimes\n", 1, 14, "for 'r1_sync_tls'");
	/* 14. duration */
	expect_reject("shutdown_timeout: 10x\n", 1, 19, "expected a duration");
	expect_reject("sync_semisync_timeout: -2s\n", 1, 24, "expected a duration");
	expect_reject("imap_idle_timeout: 999999999999999999d\n", 1, 20, "expected a duration");
	/* 15. bytes */
	expect_reject("maxmessagesize: 10Q\n", 1, 17, "expected a size");
	expect_reject("sync_log_segment_size: 99999999999T\n", 1, 24, "expected a size");
	expect_reject("blob_inline_max: 64 k\n", 1, 18, "expected a size");
	/* 16. enum */
	expect_reject("sync_conflict: merge\n", 1, 16, "expected one of renumber|keep|replace");
	expect_reject("sync_mode: sync\n", 1, 12, "expected one of async|semisync");
	expect_reject("tls_min_version: 1.4\n", 1, 18, "one of 1.0|1.1|1.2|1.3|");
	/* 17. int */
	expect_reject("sync_delete_limit: 5.5\n", 1, 20, "expected an integer");
	expect_reject("r1_sync_port: imap\n", 1, 15, "expected an integer");
	expect_reject("duplicate_days: 99999999999999999999\n", 1, 17, "expected an integer");
	expect_reject("delete_hold_days: +7\n", 1, 19, "expected an integer");
	/* 18. float */
	expect_reject("sync_delete_fraction: 1e3\n", 1, 23, "expected a decimal number");
	/* 19. a typed key without a value */
	expect_reject("sync_mode:\n", 1, 11, "missing value for 'sync_mode'");
	expect_reject("shutdown_timeout:    \n", 1, 22, "missing value for 'shutdown_timeout'");
}

/* ---- logging of unknown and unusable keys ---- */

static void
test_unknown_key_warned_once(void **state)
{
	struct conf *c;
	int saved;
	char path[64];
	const char *out;

	(void)state;
	log_set_level(LOG_LVL_DEBUG);
	capture_stderr_begin(&saved, path, sizeof(path));
	c = parse_ok("mystery: 12\nother_mystery: abc\nservername: x\n");
	/* an unknown key is still readable through any getter that can parse it */
	assert_int_equal(conf_get_int(c, "mystery", 0), 12);
	/* a value the getter cannot parse gives the default, and one warning */
	assert_int_equal(conf_get_int(c, "other_mystery", 5), 5);
	assert_int_equal(conf_get_int(c, "other_mystery", 6), 6);
	assert_false(conf_get_bool(c, "other_mystery", false));
	/* a known string key read as a number: same */
	assert_int_equal(conf_get_int(c, "servername", 9), 9);
	out = capture_stderr_end(saved, path);
	assert_int_equal(count_substr(out, "unknown config key"), 2);
	assert_int_equal(count_substr(out, "key=mystery"), 1);
	assert_int_equal(count_substr(out, "line=2 key=other_mystery\n"), 1);
	assert_int_equal(count_substr(out, "config value ignored"), 2);
	assert_int_equal(count_substr(out, "key=other_mystery value=abc expected=integer"), 1);
	assert_int_equal(count_substr(out, "key=servername value=x expected=integer"), 1);
	assert_null(strstr(out, "key=servername\n"));
	conf_free(c);

	/* a rejected file logs nothing about its unknown keys */
	capture_stderr_begin(&saved, path, sizeof(path));
	assert_null(conf_parse("mystery: 1\nsync_mode: x\n", 24, NAME, NULL));
	out = capture_stderr_end(saved, path);
	assert_null(strstr(out, "unknown config key"));
	log_set_level(LOG_LVL_ERROR);
}

/* ---- files ---- */

static void
test_load_file(void **state)
{
	char dir[64], path[128], cwd[4096], *p;
	struct conf *c;
	struct err err;
	FILE *f;

	(void)state;
	str_lcpy(dir, "/tmp/castor-conf-XXXXXX", sizeof(dir));
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/castor.conf", dir);

	err_clear(&err);
	assert_null(conf_load(path, &err));
	assert_int_equal(err.kind, ERR_NOTFOUND);
	assert_true(str_has_prefix(err.msg, path));

	f = fopen(path, "w");
	assert_non_null(f);
	fputs(full_conf, f);
	fclose(f);
	c = conf_load(path, &err);
	assert_non_null(c);
	assert_string_equal(conf_filename(c), path);
	assert_string_equal(conf_dir(c), dir);
	p = conf_get_path(c, "tls_cert_file", NULL);
	assert_true(str_has_prefix(p, dir));
	assert_true(str_has_suffix(p, "/tls/cert.pem"));
	free(p);
	conf_free(c);

	/* a relative file name resolves against the current directory */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir(dir), 0);
	c = conf_load("castor.conf", &err);
	assert_non_null(c);
	assert_string_equal(conf_dir(c), dir);
	conf_free(c);
	assert_int_equal(chdir("/tmp"), 0);
	snprintf(path, sizeof(path), "./%s/castor.conf", dir + 5);
	c = conf_load(path, &err);
	assert_non_null(c);
	assert_string_equal(conf_dir(c), dir);
	conf_free(c);
	assert_int_equal(chdir(cwd), 0);

	/* errors name the file as given */
	snprintf(path, sizeof(path), "%s/bad.conf", dir);
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("servername: x\nsync_mode: fast\n", f);
	fclose(f);
	assert_null(conf_load(path, &err));
	assert_true(str_has_prefix(err.msg, path));
	assert_non_null(strstr(err.msg, "bad.conf:2:12: invalid value 'fast'"));
	unlink(path);

	/* a directory is not a config file */
	assert_null(conf_load(dir, &err));
	assert_non_null(strstr(err.msg, "not a regular file"));

	snprintf(path, sizeof(path), "%s/castor.conf", dir);
	unlink(path);
	rmdir(dir);
}

static void
test_empty_and_odd_files(void **state)
{
	struct conf *c;
	const char *k, *v;

	(void)state;
	c = parse_ok("");
	assert_false(conf_iter(c, 0, &k, &v));
	conf_free(c);
	c = parse_ok("\n\n# only comments\n   \n\t\n");
	assert_false(conf_iter(c, 0, &k, &v));
	conf_free(c);
	/* no newline at the end, CRLF line ends, tabs around the value */
	c = parse_ok("a:\tb\t\r\nc:d");
	assert_string_equal(conf_get_str(c, "a", NULL), "b");
	assert_string_equal(conf_get_str(c, "c", NULL), "d");
	conf_free(c);
	/* name without a directory part: the current directory */
	{
		struct err err;
		char cwd[4096];
		c = conf_parse("a: b\n", 5, "plain.conf", &err);
		assert_non_null(c);
		assert_non_null(getcwd(cwd, sizeof(cwd)));
		assert_string_equal(conf_dir(c), cwd);
		conf_free(c);
		c = conf_parse("a: b\n", 5, "/castor.conf", &err);
		assert_string_equal(conf_dir(c), "/");
		conf_free(c);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_value_parsers),
		cmocka_unit_test(test_line_check_and_show),
		cmocka_unit_test(test_key_table),
		cmocka_unit_test(test_full_conf),
		cmocka_unit_test(test_every_prefix),
		cmocka_unit_test(test_every_byte_mutated),
		cmocka_unit_test(test_reject_syntax),
		cmocka_unit_test(test_reject_types),
		cmocka_unit_test(test_unknown_key_warned_once),
		cmocka_unit_test(test_load_file),
		cmocka_unit_test(test_empty_and_odd_files),
	};

	/* the warnings for unknown keys are tested where they are captured */
	log_set_level(LOG_LVL_ERROR);

	return cmocka_run_group_tests(tests, NULL, NULL);
}
