/* test_lmtp_parse.c - unit tests for src/lmtp/lmtp_parse.c: LMTP command
 * lines and their error replies, the DATA decoder (fed whole and byte by
 * byte), recipient splitting and Message-ID extraction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lmtp/lmtp_parse.h"

static int
parse(const char *line, struct lmtp_cmd *cmd, char *reply)
{
	return lmtp_parse_command(line, strlen(line), cmd, reply, 256);
}

static void
expect_ok(const char *line, enum lmtp_verb verb, struct lmtp_cmd *cmd)
{
	char reply[256] = "";

	if (parse(line, cmd, reply) != 0)
		fail_msg("\"%s\" refused: %s", line, reply);
	assert_int_equal(cmd->verb, verb);
}

static void
expect_reply(const char *line, const char *prefix)
{
	struct lmtp_cmd cmd;
	char reply[256] = "";

	if (parse(line, &cmd, reply) != -1)
		fail_msg("\"%s\" accepted, wanted %s", line, prefix);
	if (strncmp(reply, prefix, strlen(prefix)) != 0)
		fail_msg("\"%s\": reply \"%s\", wanted \"%s...\"", line, reply, prefix);
}

static void
test_verbs(void **state)
{
	struct lmtp_cmd c;

	(void)state;
	expect_ok("LHLO mx.example.org", LMTP_LHLO, &c);
	assert_int_equal(c.arg_len, 14);
	assert_memory_equal(c.arg, "mx.example.org", 14);
	expect_ok("lhlo [127.0.0.1]", LMTP_LHLO, &c);
	expect_ok("LHLO host  ", LMTP_LHLO, &c);   /* trailing blanks dropped */
	assert_int_equal(c.arg_len, 4);
	expect_ok("helo x", LMTP_HELO, &c);
	expect_ok("EHLO x", LMTP_EHLO, &c);
	expect_ok("DATA", LMTP_DATA, &c);
	expect_ok("data", LMTP_DATA, &c);
	expect_ok("RSET", LMTP_RSET, &c);
	expect_ok("NOOP", LMTP_NOOP, &c);
	expect_ok("NOOP whatever you like", LMTP_NOOP, &c);
	expect_ok("QUIT", LMTP_QUIT, &c);
	expect_ok("VRFY alice", LMTP_VRFY, &c);
	expect_ok("EXPN list", LMTP_EXPN, &c);
	expect_ok("HELP", LMTP_HELP, &c);
	expect_ok("HELP MAIL", LMTP_HELP, &c);
	expect_ok("StartTLS", LMTP_STARTTLS, &c);
	expect_reply("", "500 5.5.2");
	expect_reply("FOO", "500 5.5.2");
	expect_reply("DATAX", "500 5.5.2");
	expect_reply("DAT", "500 5.5.2");
	expect_reply(" DATA", "500 5.5.2");
	expect_reply("LHLO", "501 5.5.4");
	expect_reply("LHLO ", "501 5.5.4");
	expect_reply("LHLO a b", "501 5.5.4");
	expect_reply("DATA x", "501 5.5.4 Syntax: DATA");
	expect_reply("RSET x", "501 5.5.4");
	expect_reply("QUIT x", "501 5.5.4");
	expect_reply("STARTTLS x", "501 5.5.4");
	expect_reply("VRFY", "501 5.5.4");
	expect_reply("DATA ", "501 5.5.4");
	assert_string_equal(lmtp_verb_name(LMTP_BDAT), "BDAT");
}

static void
test_nul_in_line(void **state)
{
	struct lmtp_cmd c;
	char reply[256];
	static const char line[] = "LHLO a\0b";

	(void)state;
	assert_int_equal(lmtp_parse_command(line, sizeof(line) - 1, &c, reply, sizeof(reply)), -1);
	assert_true(strncmp(reply, "501", 3) == 0);
	assert_int_equal(lmtp_parse_command("DATA\0", 5, &c, reply, sizeof(reply)), -1);
	assert_int_equal(lmtp_parse_command("MAIL FROM:<a\0@b>", 16, &c, reply, sizeof(reply)), -1);
	assert_true(strncmp(reply, "501 5.1.7", 9) == 0);
}

static void
test_mail(void **state)
{
	struct lmtp_cmd c;

	(void)state;
	expect_ok("MAIL FROM:<alice@example.org>", LMTP_MAIL, &c);
	assert_string_equal(c.path, "alice@example.org");
	assert_string_equal(c.local, "alice");
	assert_string_equal(c.domain, "example.org");
	assert_false(c.has_size);
	assert_int_equal(c.body, LMTP_BODY_NONE);
	expect_ok("MAIL FROM:<>", LMTP_MAIL, &c);
	assert_string_equal(c.path, "");
	expect_ok("mail from: <a@b.c>", LMTP_MAIL, &c);  /* blank after the colon */
	assert_string_equal(c.path, "a@b.c");
	expect_ok("MAIL FROM:<a@b.c> SIZE=12345 BODY=8BITMIME", LMTP_MAIL, &c);
	assert_true(c.has_size);
	assert_int_equal(c.size, 12345);
	assert_int_equal(c.body, LMTP_BODY_8BITMIME);
	expect_ok("MAIL FROM:<a@b.c> body=7bit  size=0", LMTP_MAIL, &c);
	assert_int_equal(c.body, LMTP_BODY_7BIT);
	assert_int_equal(c.size, 0);
	expect_ok("MAIL FROM:<a@b.c> SIZE=99999999999999999999999", LMTP_MAIL, &c);
	assert_true(c.size == UINT64_MAX);
	expect_ok("MAIL FROM:<@a.example,@b.example:user@c.example>", LMTP_MAIL, &c);
	assert_string_equal(c.path, "user@c.example");
	expect_ok("MAIL FROM:<\"john q. doe\\\"x\"@example.org>", LMTP_MAIL, &c);
	assert_string_equal(c.path, "\"john q. doe\\\"x\"@example.org");
	assert_string_equal(c.local, "john q. doe\"x");
	expect_ok("MAIL FROM:<a@[192.0.2.1]>", LMTP_MAIL, &c);
	assert_string_equal(c.domain, "[192.0.2.1]");
	expect_ok("MAIL FROM:<a@example.org.>", LMTP_MAIL, &c);
	assert_string_equal(c.domain, "example.org");
	expect_ok("MAIL FROM:<j\xc3\xbcrgen@example.org>", LMTP_MAIL, &c);  /* UTF-8 kept */
	expect_ok("MAIL FROM:<postmaster>", LMTP_MAIL, &c);
	assert_string_equal(c.domain, "");

	expect_reply("MAIL", "501 5.5.4");
	expect_reply("MAIL TO:<a@b>", "501 5.5.4");
	expect_reply("MAIL FROM:", "501 5.1.7");
	expect_reply("MAIL FROM:a@b.c", "501 5.1.7");
	expect_reply("MAIL FROM:<a@b.c", "501 5.1.7");
	expect_reply("MAIL FROM:<a b@c>", "501 5.1.7");
	expect_reply("MAIL FROM:<.a@b>", "501 5.1.7");
	expect_reply("MAIL FROM:<a.@b>", "501 5.1.7");
	expect_reply("MAIL FROM:<a..b@c>", "501 5.1.7");
	expect_reply("MAIL FROM:<a@>", "501 5.1.7");
	expect_reply("MAIL FROM:<a@b..c>", "501 5.1.7");
	expect_reply("MAIL FROM:<a@-b>", "501 5.1.7");
	expect_reply("MAIL FROM:<a@[1.2.3.4>", "501 5.1.7");
	expect_reply("MAIL FROM:<\"\"@b>", "501 5.1.7");
	expect_reply("MAIL FROM:<\"a@b>", "501 5.1.7");
	expect_reply("MAIL FROM:<@a.b>", "501 5.1.7");
	expect_reply("MAIL FROM:<a@b.c>x", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.c> SIZE=", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.c> SIZE=12x", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.c> SIZE=1 SIZE=2", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.c> SIZE", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.c> BODY=8BITMIME BODY=7BIT", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.c> BODY=BINARYMIME", "555 5.5.4");
	expect_reply("MAIL FROM:<a@b.c> AUTH=<>", "555 5.5.4 Unsupported parameter AUTH");
	expect_ok("MAIL FROM:<a@b.c> SMTPUTF8", LMTP_MAIL, &c);
	assert_true(c.smtputf8);
	expect_ok("MAIL FROM:<j\xc3\xbcrgen@b\xc3\xbc" "cher.example> BODY=8BITMIME smtputf8", LMTP_MAIL, &c);
	assert_true(c.smtputf8 && c.body == LMTP_BODY_8BITMIME);
	assert_string_equal(c.local, "j\xc3\xbcrgen");
	expect_ok("MAIL FROM:<a@b.c>", LMTP_MAIL, &c);
	assert_false(c.smtputf8);
	expect_reply("MAIL FROM:<a@b.c> SMTPUTF8=yes", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.c> SMTPUTF8 SMTPUTF8", "501 5.5.4");
	expect_reply("RCPT TO:<a@b.c> SMTPUTF8", "555 5.5.4");
	/* 8-bit bytes that are not UTF-8: latin-1, overlong, surrogate, truncated */
	expect_reply("MAIL FROM:<j\xfcrgen@example.org> SMTPUTF8", "501 5.1.7");
	expect_reply("MAIL FROM:<\xc0\xafx@example.org>", "501 5.1.7");
	expect_reply("MAIL FROM:<\xed\xa0\x80x@example.org>", "501 5.1.7");
	expect_reply("RCPT TO:<alice@b\xc3>", "501 5.1.3");
	expect_reply("MAIL FROM:<a@b.c> =x", "501 5.5.4");
	expect_reply("MAIL FROM:<a@b.c> -X=1", "501 5.5.4");
}

static void
test_rcpt(void **state)
{
	struct lmtp_cmd c;
	char big[600];

	(void)state;
	expect_ok("RCPT TO:<alice+lists@example.org>", LMTP_RCPT, &c);
	assert_string_equal(c.local, "alice+lists");
	assert_string_equal(c.domain, "example.org");
	expect_ok("RCPT TO:<alice>", LMTP_RCPT, &c);
	assert_string_equal(c.local, "alice");
	assert_string_equal(c.domain, "");
	expect_ok("rcpt to: <Bob@X.Y>", LMTP_RCPT, &c);
	assert_string_equal(c.local, "Bob");
	expect_reply("RCPT TO:<>", "501 5.1.3");
	expect_reply("RCPT TO:alice", "501 5.1.3");
	expect_reply("RCPT TO:<a@b> NOTIFY=NEVER", "555 5.5.4");
	expect_reply("RCPT TO:<a@b> ORCPT=rfc822;a@b", "555 5.5.4");
	expect_reply("RCPT TO:<a@b> SIZE=1", "555 5.5.4");
	expect_reply("RCPT FROM:<a@b>", "501 5.5.4");
	expect_reply("RCPT", "501 5.5.4");
	/* a local part over the limit */
	memset(big, 'a', sizeof(big));
	memcpy(big, "RCPT TO:<", 9);
	memcpy(big + sizeof(big) - 5, "@b>", 4);
	expect_reply(big, "501 5.1.3");
}

static void
test_bdat(void **state)
{
	struct lmtp_cmd c;
	char reply[256];

	(void)state;
	expect_ok("BDAT 1000", LMTP_BDAT, &c);
	assert_true(c.chunk == 1000 && !c.last);
	expect_ok("bdat 0 last", LMTP_BDAT, &c);
	assert_true(c.chunk == 0 && c.last);
	expect_ok("BDAT 18446744073709551615 LAST", LMTP_BDAT, &c);
	assert_true(c.chunk == UINT64_MAX && c.last);
	assert_int_equal(parse("BDAT", &c, reply), -1);
	assert_int_equal(c.verb, LMTP_BDAT);
	assert_true(c.chunk == UINT64_MAX);
	assert_int_equal(parse("BDAT x", &c, reply), -1);
	assert_true(c.chunk == UINT64_MAX);
	assert_int_equal(parse("BDAT 18446744073709551616", &c, reply), -1);
	assert_true(c.chunk == UINT64_MAX);
	assert_int_equal(parse("BDAT 10 FIRST", &c, reply), -1);
	assert_true(strncmp(reply, "501 5.5.4", 9) == 0);
	assert_int_equal(parse("BDAT 10 LAST x", &c, reply), -1);
	assert_int_equal(parse("BDAT -1", &c, reply), -1);
}

/* ------------------------------------------------------------------ */
/* DATA decoder */

/* Decode wire in one go; returns bytes consumed, decoded into out. */
static size_t
decode_whole(const char *wire, size_t n, struct buf *out, bool *done)
{
	struct lmtp_data d;
	size_t used;

	lmtp_data_init(&d);
	used = lmtp_data_feed(&d, wire, n, out, SIZE_MAX);
	*done = d.done;
	assert_int_equal(d.size, out->len);
	return used;
}

/* The same, one byte at a time: must give the same result. */
static size_t
decode_bytewise(const char *wire, size_t n, struct buf *out, bool *done)
{
	struct lmtp_data d;
	size_t used = 0;

	lmtp_data_init(&d);
	while (used < n && !d.done) {
		size_t u = lmtp_data_feed(&d, wire + used, 1, out, SIZE_MAX);
		assert_int_equal(u, 1);
		used += u;
	}
	*done = d.done;
	return used;
}

static void
check_decode(const char *wire, size_t n, const char *want, size_t want_len, size_t want_used)
{
	struct buf a = BUF_INIT, b = BUF_INIT;
	bool da, db;
	size_t ua = decode_whole(wire, n, &a, &da);
	size_t ub = decode_bytewise(wire, n, &b, &db);

	assert_true(da && db);
	assert_int_equal(ua, want_used);
	assert_int_equal(ub, want_used);
	assert_int_equal(a.len, want_len);
	assert_memory_equal(a.data, want, want_len);
	assert_int_equal(b.len, want_len);
	assert_memory_equal(b.data, want, want_len);
	buf_free(&a);
	buf_free(&b);
}

#define CHECK_DECODE(wire, want, used) \
	check_decode(wire, sizeof(wire) - 1, want, sizeof(want) - 1, used)

static void
test_data_decoder(void **state)
{
	(void)state;
	CHECK_DECODE(".\r\n", "", 3);
	CHECK_DECODE("a\r\n.\r\n", "a\r\n", 6);
	CHECK_DECODE("a\r\n.\r\nMAIL FROM:<>\r\n", "a\r\n", 6);      /* the rest is the next command */
	CHECK_DECODE("..a\r\n.\r\n", ".a\r\n", 8);
	CHECK_DECODE("x\r\n...\r\n.\r\n", "x\r\n..\r\n", 11);
	CHECK_DECODE("x\r\n..\r\n.\r\n", "x\r\n.\r\n", 10);
	CHECK_DECODE("a\nb\n.\nc\r\n.\r\n", "a\nb\n.\nc\r\n", 12);     /* bare LF is content */
	CHECK_DECODE("a\r\n.\nb\r\n.\r\n", "a\r\n\nb\r\n", 11);        /* ".\n" is not the end */
	CHECK_DECODE("a\r\n.\rb\r\n.\r\n", "a\r\n\rb\r\n", 11);
	CHECK_DECODE("a\r\n.\r\r\n.\r\n", "a\r\n\r\r\n", 10);
	CHECK_DECODE("a\rb\r\r\n.\r\n", "a\rb\r\r\n", 9);
	CHECK_DECODE("\0\xff\r\n.\r\n", "\0\xff\r\n", 7);
	CHECK_DECODE("\r\n.\r\n", "\r\n", 5);
	CHECK_DECODE("a\r\n\r\n.\r\n", "a\r\n\r\n", 8);
}

static void
test_data_decoder_incomplete_and_limit(void **state)
{
	struct lmtp_data d;
	struct buf out = BUF_INIT;
	const char *wire = "abc\r\ndef\r\n.\r\n";
	size_t n = strlen(wire), used;

	(void)state;
	/* no end marker yet: everything is consumed, not done */
	lmtp_data_init(&d);
	assert_int_equal(lmtp_data_feed(&d, "abc\r\n.", 6, &out, SIZE_MAX), 6);
	assert_false(d.done);
	assert_int_equal(out.len, 5);          /* the held-back '.' is not out yet */
	assert_int_equal(lmtp_data_feed(&d, "\r", 1, &out, SIZE_MAX), 1);
	assert_false(d.done);
	assert_int_equal(lmtp_data_feed(&d, "\nNOOP", 5, &out, SIZE_MAX), 1);
	assert_true(d.done);
	/* over the limit: counted, not stored */
	buf_reset(&out);
	lmtp_data_init(&d);
	used = lmtp_data_feed(&d, wire, n, &out, 4);
	assert_int_equal(used, n);
	assert_true(d.done);
	assert_int_equal(d.size, 10);
	assert_int_equal(out.len, 4);
	assert_memory_equal(out.data, "abc\r", 4);
	buf_free(&out);
}

/* Reference stuffing: a '.' at the start of each CRLF line gets doubled. */
static void
stuff(struct buf *w, const char *m, size_t n)
{
	bool bol = true;

	for (size_t i = 0; i < n; i++) {
		if (bol && m[i] == '.')
			buf_putc(w, '.');
		buf_putc(w, m[i]);
		bol = m[i] == '\n' && i > 0 && m[i - 1] == '\r';
	}
	if (n > 0 && !(n >= 2 && m[n - 2] == '\r' && m[n - 1] == '\n'))
		buf_append(w, "\r\n", 2);
	buf_append(w, ".\r\n", 3);
}

static void
test_data_roundtrip_random(void **state)
{
	static const char alphabet[] = { '.', '\r', '\n', 'a', '\0', ' ' };
	unsigned seed = 12345;

	(void)state;
	for (int iter = 0; iter < 3000; iter++) {
		char m[64];
		size_t n;
		struct buf w = BUF_INIT, a = BUF_INIT, b = BUF_INIT;
		bool da, db;

		seed = seed * 1103515245u + 12345u;
		n = 2 + (seed >> 16) % (sizeof(m) - 2);   /* the empty message is tested apart */
		for (size_t i = 0; i < n; i++) {
			seed = seed * 1103515245u + 12345u;
			m[i] = alphabet[(seed >> 16) % sizeof(alphabet)];
		}
		/* messages that end in CRLF decode to themselves */
		memcpy(m + n - 2, "\r\n", 2);
		stuff(&w, m, n);
		assert_int_equal(decode_whole(w.data, w.len, &a, &da), w.len);
		assert_int_equal(decode_bytewise(w.data, w.len, &b, &db), w.len);
		assert_true(da && db);
		assert_int_equal(a.len, n);
		assert_memory_equal(a.data, m, n);
		assert_int_equal(b.len, n);
		assert_memory_equal(b.data, m, n);
		buf_free(&w);
		buf_free(&a);
		buf_free(&b);
	}
}

/* ------------------------------------------------------------------ */
/* recipients, Message-ID */

static void
test_rcpt_split(void **state)
{
	char login[100], detail[100];

	(void)state;
	assert_int_equal(lmtp_parse_rcpt_split("alice+lists", "example.org", login, sizeof(login),
		detail, sizeof(detail)), 0);
	assert_string_equal(login, "alice@example.org");
	assert_string_equal(detail, "lists");
	assert_int_equal(lmtp_parse_rcpt_split("alice", "", login, sizeof(login), detail,
		sizeof(detail)), 0);
	assert_string_equal(login, "alice");
	assert_string_equal(detail, "");
	assert_int_equal(lmtp_parse_rcpt_split("a+b+c", "d", login, sizeof(login), detail,
		sizeof(detail)), 0);
	assert_string_equal(login, "a@d");
	assert_string_equal(detail, "b+c");
	assert_int_equal(lmtp_parse_rcpt_split("a+", "d", login, sizeof(login), detail,
		sizeof(detail)), 0);
	assert_string_equal(detail, "");
	assert_int_equal(lmtp_parse_rcpt_split("alice", "example.org", login, 10, detail,
		sizeof(detail)), -1);
	assert_int_equal(lmtp_parse_rcpt_split("a+0123456789", "d", login, sizeof(login), detail, 5),
		-1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_verbs),
		cmocka_unit_test(test_nul_in_line),
		cmocka_unit_test(test_mail),
		cmocka_unit_test(test_rcpt),
		cmocka_unit_test(test_bdat),
		cmocka_unit_test(test_data_decoder),
		cmocka_unit_test(test_data_decoder_incomplete_and_limit),
		cmocka_unit_test(test_data_roundtrip_random),
		cmocka_unit_test(test_rcpt_split),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
