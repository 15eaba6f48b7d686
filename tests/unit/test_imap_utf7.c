/* test_imap_utf7.c - unit tests for imap/imap_utf7.c: modified UTF-7
 * mailbox names (RFC 3501 5.1.3), both directions, and what the strict
 * decoder refuses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "imap/imap_utf7.h"
#include "lib/buf.h"

static void
roundtrip(const char *utf8, const char *wire)
{
	struct buf b = BUF_INIT;

	assert_int_equal(imap_utf7_encode(utf8, strlen(utf8), &b), 0);
	assert_string_equal(buf_cstr(&b), wire);
	buf_reset(&b);
	assert_int_equal(imap_utf7_decode(wire, strlen(wire), &b), 0);
	assert_string_equal(buf_cstr(&b), utf8);
	buf_free(&b);
}

static void
test_examples(void **state)
{
	(void)state;
	roundtrip("INBOX", "INBOX");
	roundtrip("", "");
	roundtrip("a&b", "a&-b");
	roundtrip("&", "&-");
	/* RFC 3501 5.1.3 example: ~peter/mail/日本語/台北 */
	roundtrip("~peter/mail/\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e/\xe5\x8f\xb0\xe5\x8c\x97",
		"~peter/mail/&ZeVnLIqe-/&U,BTFw-");
	roundtrip("Entw\xc3\xbcrfe", "Entw&APw-rfe");
	roundtrip("\xc3\xa9&", "&AOk-&-");
	/* outside the BMP: a surrogate pair (U+1F600) */
	roundtrip("x\xf0\x9f\x98\x80y", "x&2D3eAA-y");
	/* control characters are encoded */
	roundtrip("a\tb", "a&AAk-b");
}

static void
expect_bad_decode(const char *wire)
{
	struct buf b = BUF_INIT;

	if (imap_utf7_decode(wire, strlen(wire), &b) == 0)
		fail_msg("decoded invalid modified UTF-7 \"%s\" as \"%s\"", wire, buf_cstr(&b));
	buf_free(&b);
}

static void
test_decode_rejects(void **state)
{
	(void)state;
	expect_bad_decode("&");            /* unterminated */
	expect_bad_decode("&AOk");         /* unterminated */
	expect_bad_decode("&AGE-");        /* encodes printable ASCII "a" */
	expect_bad_decode("&AOk-&AOk-");   /* two shifts back to back */
	expect_bad_decode("&AO-");         /* partial UTF-16 unit */
	expect_bad_decode("&AOl-");        /* non-zero leftover bits */
	expect_bad_decode("&2D0-");        /* lone high surrogate */
	expect_bad_decode("&3gA-");        /* lone low surrogate */
	expect_bad_decode("&A/k-");        /* '/' is not in the modified alphabet */
	expect_bad_decode("caf\xc3\xa9");  /* raw 8-bit */
	expect_bad_decode("a\tb");         /* raw control */
}

static void
test_encode_rejects(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	assert_int_equal(imap_utf7_encode("\xff", 1, &b), -1);
	buf_reset(&b);
	assert_int_equal(imap_utf7_encode("\xc3", 1, &b), -1);        /* truncated */
	buf_reset(&b);
	assert_int_equal(imap_utf7_encode("\xc0\xaf", 2, &b), -1);    /* overlong */
	buf_reset(&b);
	assert_int_equal(imap_utf7_encode("\xed\xa0\x80", 3, &b), -1); /* surrogate */
	buf_free(&b);
}

/* Every BMP code point and a few beyond survive a round trip. */
static void
test_roundtrip_all(void **state)
{
	struct buf in = BUF_INIT, wire = BUF_INIT, back = BUF_INIT;

	(void)state;
	for (uint32_t cp = 1; cp < 0x110000; cp += (cp < 0x10000 ? 1 : 997)) {
		char u[5];
		size_t n;

		if (cp >= 0xd800 && cp <= 0xdfff)
			continue;
		if (cp < 0x80) {
			u[0] = (char)cp;
			n = 1;
		} else if (cp < 0x800) {
			u[0] = (char)(0xc0 | (cp >> 6));
			u[1] = (char)(0x80 | (cp & 0x3f));
			n = 2;
		} else if (cp < 0x10000) {
			u[0] = (char)(0xe0 | (cp >> 12));
			u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
			u[2] = (char)(0x80 | (cp & 0x3f));
			n = 3;
		} else {
			u[0] = (char)(0xf0 | (cp >> 18));
			u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
			u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
			u[3] = (char)(0x80 | (cp & 0x3f));
			n = 4;
		}
		buf_reset(&in);
		buf_puts(&in, "x");
		buf_append(&in, u, n);
		buf_append(&in, u, n);
		buf_puts(&in, "y");
		buf_reset(&wire);
		buf_reset(&back);
		assert_int_equal(imap_utf7_encode(in.data, in.len, &wire), 0);
		for (size_t i = 0; i < wire.len; i++)
			assert_true(wire.data[i] >= 0x20 && wire.data[i] <= 0x7e);
		assert_int_equal(imap_utf7_decode(wire.data, wire.len, &back), 0);
		assert_int_equal(back.len, in.len);
		assert_memory_equal(back.data, in.data, in.len);
	}
	buf_free(&in);
	buf_free(&wire);
	buf_free(&back);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_examples),
		cmocka_unit_test(test_decode_rejects),
		cmocka_unit_test(test_encode_rejects),
		cmocka_unit_test(test_roundtrip_all),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
