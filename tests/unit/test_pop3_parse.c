/* test_pop3_parse.c - unit tests for src/pop3/pop3_parse.c: POP3 command
 * lines and their -ERR texts, and the RETR/TOP encoder (checked against
 * the LMTP DATA decoder: what pop3d sends decodes back to the message). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "lib/buf.h"
#include "lmtp/lmtp_parse.h"
#include "pop3/pop3_parse.h"

static void
expect_ok(const char *line, enum pop3_verb verb, struct pop3_cmd *cmd)
{
	char why[160] = "";

	if (pop3_parse_command(line, strlen(line), cmd, why, sizeof(why)) != 0)
		fail_msg("\"%s\" refused: %s", line, why);
	assert_int_equal(cmd->verb, verb);
}

static void
expect_err(const char *line, const char *prefix)
{
	struct pop3_cmd cmd;
	char why[160] = "";

	if (pop3_parse_command(line, strlen(line), &cmd, why, sizeof(why)) != -1)
		fail_msg("\"%s\" accepted, wanted %s", line, prefix);
	if (strncmp(why, prefix, strlen(prefix)) != 0)
		fail_msg("\"%s\": \"%s\", wanted \"%s...\"", line, why, prefix);
}

static void
test_simple(void **state)
{
	struct pop3_cmd c;

	(void)state;
	expect_ok("STAT", POP3_STAT, &c);
	expect_ok("stat", POP3_STAT, &c);
	expect_ok("CAPA", POP3_CAPA, &c);
	expect_ok("STLS", POP3_STLS, &c);
	expect_ok("RSET", POP3_RSET, &c);
	expect_ok("NOOP", POP3_NOOP, &c);
	expect_ok("QUIT", POP3_QUIT, &c);
	expect_ok("QUIT ", POP3_QUIT, &c);
	expect_err("QUIT now", "Syntax: QUIT takes no arguments");
	expect_err("STAT 1", "Syntax");
	expect_err("", "Unknown command");
	expect_err("STATS", "Unknown command");
	expect_err("XTND XMIT", "Unknown command");
	expect_err(" STAT", "Unknown command");
	assert_string_equal(pop3_verb_name(POP3_TOP), "TOP");
}

static void
test_user_pass(void **state)
{
	struct pop3_cmd c;

	(void)state;
	expect_ok("USER alice", POP3_USER, &c);
	assert_int_equal(c.arg_len, 5);
	assert_memory_equal(c.arg, "alice", 5);
	expect_ok("user  alice@example.org", POP3_USER, &c);
	assert_int_equal(c.arg_len, 17);
	expect_err("USER", "Syntax: USER name");
	expect_err("USER a b", "Syntax: USER name");
	expect_ok("PASS secret with  blanks ", POP3_PASS, &c);
	assert_int_equal(c.arg_len, 20);
	assert_memory_equal(c.arg, "secret with  blanks ", 20);
	expect_ok("PASS  x", POP3_PASS, &c);      /* the rest of the line, as it is */
	assert_int_equal(c.arg_len, 2);
	expect_err("PASS", "Syntax: PASS");
	expect_err("PASS a\tb", "Invalid password");
	expect_ok("APOP alice 0123", POP3_APOP, &c);
}

static void
test_auth(void **state)
{
	struct pop3_cmd c;

	(void)state;
	expect_ok("AUTH", POP3_AUTH, &c);
	assert_int_equal(c.arg_len, 0);
	expect_ok("AUTH PLAIN", POP3_AUTH, &c);
	assert_int_equal(c.arg_len, 5);
	assert_int_equal(c.arg2_len, 0);
	expect_ok("AUTH PLAIN AGFsaWNlAHB3", POP3_AUTH, &c);
	assert_int_equal(c.arg2_len, 12);
	assert_memory_equal(c.arg2, "AGFsaWNlAHB3", 12);
	expect_ok("AUTH PLAIN =", POP3_AUTH, &c);
	assert_int_equal(c.arg2_len, 1);
	expect_err("AUTH PLAIN a b", "Syntax: AUTH");
	expect_err("AUTH ABCDEFGHIJKLMNOPQRSTUVWXYZ", "Invalid mechanism");
}

static void
test_numbers(void **state)
{
	struct pop3_cmd c;

	(void)state;
	expect_ok("LIST", POP3_LIST, &c);
	assert_false(c.has_msg);
	expect_ok("LIST 7", POP3_LIST, &c);
	assert_true(c.has_msg);
	assert_int_equal(c.msg, 7);
	expect_ok("UIDL 2147483647", POP3_UIDL, &c);
	assert_int_equal(c.msg, 2147483647u);
	expect_ok("RETR 1", POP3_RETR, &c);
	expect_ok("DELE  3", POP3_DELE, &c);
	assert_int_equal(c.msg, 3);
	expect_ok("TOP 2 10", POP3_TOP, &c);
	assert_int_equal(c.msg, 2);
	assert_int_equal(c.lines, 10);
	expect_ok("TOP 2 0", POP3_TOP, &c);
	assert_int_equal(c.lines, 0);
	expect_ok("TOP 2 99999999999999999999", POP3_TOP, &c);
	assert_true(c.lines == UINT32_MAX);
	expect_err("LIST 0", "No such message");
	expect_err("LIST 2147483648", "No such message");
	expect_err("LIST 99999999999999999999999", "No such message");
	expect_err("LIST -1", "No such message");
	expect_err("LIST +1", "No such message");
	expect_err("LIST 1 2", "Syntax: LIST");
	expect_err("RETR", "Syntax: RETR msg");
	expect_err("RETR 1x", "No such message");
	expect_err("DELE", "Syntax: DELE msg");
	expect_err("TOP 1", "Syntax: TOP msg lines");
	expect_err("TOP 1 -1", "Syntax: TOP msg lines");
	expect_err("TOP 0 1", "No such message");
	expect_err("TOP 1 2 3", "Syntax");
}

static void
test_nul(void **state)
{
	struct pop3_cmd c;
	char why[160];

	(void)state;
	assert_int_equal(pop3_parse_command("USER a\0b", 8, &c, why, sizeof(why)), -1);
	assert_int_equal(pop3_parse_command("RETR 1\0", 7, &c, why, sizeof(why)), -1);
	assert_int_equal(pop3_parse_command("STAT\0", 5, &c, why, sizeof(why)), -1);
}

static void
check_encode(const char *msg, int64_t lines, const char *want)
{
	struct buf out = BUF_INIT;

	pop3_parse_encode(&out, msg, strlen(msg), lines);
	if (out.len != strlen(want) || memcmp(out.data, want, out.len) != 0)
		fail_msg("encode(\"%s\", %lld) = \"%s\", want \"%s\"", msg, (long long)lines, buf_cstr(&out),
			want);
	buf_free(&out);
}

static void
test_encode(void **state)
{
	(void)state;
	check_encode("", -1, "");
	check_encode("a\r\nb\r\n", -1, "a\r\nb\r\n");
	check_encode(".a\r\n.\r\n..\r\n", -1, "..a\r\n..\r\n...\r\n");
	check_encode("a\nb\n", -1, "a\r\nb\r\n");                   /* bare LF becomes CRLF */
	check_encode("no end", -1, "no end\r\n");
	check_encode("x\rb\r\n", -1, "x\rb\r\n");                   /* a bare CR stays */
	check_encode("H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n.b3\r\n", 0, "H: 1\r\nH: 2\r\n\r\n");
	check_encode("H: 1\r\nH: 2\r\n\r\nb1\r\nb2\r\n.b3\r\n", 1, "H: 1\r\nH: 2\r\n\r\nb1\r\n");
	check_encode("H: 1\r\n\r\nb1\r\nb2\r\n.b3\r\n", 3, "H: 1\r\n\r\nb1\r\nb2\r\n..b3\r\n");
	check_encode("H: 1\r\n\r\nb1\r\n", 100, "H: 1\r\n\r\nb1\r\n");
	check_encode("H: only headers\r\n", 0, "H: only headers\r\n");
	check_encode("\r\nbody\r\n", 0, "\r\n");
}

/* What pop3d sends, followed by its ".\r\n", is what the LMTP DATA
 * decoder reads back as the message (with CRLF line ends). */
static void
test_encode_decode_roundtrip(void **state)
{
	static const char alphabet[] = { '.', '\r', '\n', 'a', 'F', ' ' };
	unsigned seed = 777;

	(void)state;
	for (int iter = 0; iter < 3000; iter++) {
		char m[48];
		size_t n;
		struct buf w = BUF_INIT, back = BUF_INIT;
		struct lmtp_data d;

		seed = seed * 1103515245u + 12345u;
		n = 2 + (seed >> 16) % (sizeof(m) - 2);   /* the empty message is tested apart */
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			m[i] = alphabet[(seed >> 16) % sizeof(alphabet)];
			if (m[i] == '\n' && (i == 0 || m[i - 1] != '\r'))
				m[i] = 'a';  /* CRLF-only messages decode to themselves */
			if (i > 0 && m[i - 1] == '\r' && m[i] != '\n')
				m[i - 1] = 'a';
		}
		if (n > 0 && m[n - 1] == '\r')
			m[n - 1] = 'a';
		memcpy(m + n - 2, "\r\n", 2);
		pop3_parse_encode(&w, m, n, -1);
		buf_append(&w, ".\r\n", 3);
		lmtp_data_init(&d);
		assert_int_equal(lmtp_data_feed(&d, w.data, w.len, &back, SIZE_MAX), w.len);
		assert_true(d.done);
		assert_int_equal(back.len, n);
		assert_memory_equal(back.data, m, n);
		buf_free(&w);
		buf_free(&back);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_user_pass),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_nul),
		cmocka_unit_test(test_encode),
		cmocka_unit_test(test_encode_decode_roundtrip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
