/*
 * test_store_msgid.c - store_message_id(): the normalised Message-ID that
 * keys duplicate-delivery suppression.  Expected values written by hand
 * from the rules at the top of src/store/store_msgid.c; every prefix of
 * a message fed in turn (never a wrong id, the full id once the field
 * line is complete).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "store/store.h"

/* The id of a NUL-terminated message, or NULL when none. */
static const char *
mid(const char *msg)
{
	static struct buf b;
	int r = store_message_id(msg, strlen(msg), &b);

	if (r == 0) {
		assert_int_equal(b.len, 0);
		return NULL;
	}
	assert_int_equal(r, 1);
	return buf_cstr(&b);
}

static void
test_plain(void **state)
{
	(void)state;
	assert_string_equal(mid("From: a@b\r\nMessage-ID: <1234.abc@example.org>\r\n\r\nbody\r\n"),
		"<1234.abc@example.org>");
	/* name case-insensitive, bare LF, no body */
	assert_string_equal(mid("message-id:<x@y>\n"), "<x@y>");
	assert_string_equal(mid("MESSAGE-ID:   <x@y>   \r\n\r\n"), "<x@y>");
	/* the first field wins */
	assert_string_equal(mid("Message-Id: <first@x>\r\nMessage-Id: <second@x>\r\n\r\n"),
		"<first@x>");
}

static void
test_folding_and_whitespace(void **state)
{
	(void)state;
	/* folded onto the next line, white space inside dropped */
	assert_string_equal(mid("Subject: s\r\nMessage-ID:\r\n <abc.def\r\n\t@example.org>\r\nTo: t\r\n\r\n"),
		"<abc.def@example.org>");
	assert_string_equal(mid("Message-ID: < a b @ c >\r\n\r\n"), "<ab@c>");
	/* NUL and control octets dropped, 8-bit kept */
	assert_string_equal(mid("Message-ID: <a\x01" "b@\xc3\xa9>\r\n\r\n"), "<ab@\xc3\xa9>");
}

static void
test_comments_and_junk(void **state)
{
	(void)state;
	assert_string_equal(mid("Message-ID: (a comment <no@no>) <real@x> (trailing)\r\n\r\n"),
		"<real@x>");
	assert_string_equal(mid("Message-ID: (nested (comment)) <n@x>\r\n\r\n"), "<n@x>");
	/* text before the msg-id is ignored */
	assert_string_equal(mid("Message-ID: junk <j@x>\r\n\r\n"), "<j@x>");
	/* a quoted local part may hold '>' */
	assert_string_equal(mid("Message-ID: <\"a>b\"@x>\r\n\r\n"), "<\"a>b\"@x>");
	/* no angle brackets: the whole value, comments and white space dropped */
	assert_string_equal(mid("Message-ID: abc@example.org (broken mailer)\r\n\r\n"),
		"abc@example.org");
	/* an unclosed '<' falls back to the whole value */
	assert_string_equal(mid("Message-ID: <open@x\r\n\r\n"), "<open@x");
}

static void
test_none(void **state)
{
	struct buf b = BUF_INIT;
	char *big;

	(void)state;
	assert_null(mid("From: a@b\r\nSubject: no id\r\n\r\nMessage-ID: <in-body@x>\r\n"));
	assert_null(mid(""));
	assert_null(mid("Message-ID: <>\r\n\r\n"));
	assert_null(mid("Message-ID:   \r\n\r\n"));
	assert_null(mid("Message-ID: (only a comment)\r\n\r\n"));
	/* the field name must match exactly */
	assert_null(mid("X-Message-ID: <x@y>\r\nMessage-IDs: <y@z>\r\n\r\n"));
	/* a line without a colon is not a field */
	assert_null(mid("Message-ID <x@y>\r\n\r\n"));
	assert_int_equal(store_message_id(NULL, 0, &b), 0);
	/* longer than STORE_MSGID_MAX: none; exactly the limit: kept */
	big = malloc(STORE_MSGID_MAX + 64);
	assert_non_null(big);
	memcpy(big, "Message-ID: <", 13);
	memset(big + 13, 'a', STORE_MSGID_MAX - 2);
	memcpy(big + 13 + STORE_MSGID_MAX - 2, ">\r\n\r\n", 6);
	assert_int_equal(store_message_id(big, strlen(big), &b), 1);
	assert_int_equal(b.len, STORE_MSGID_MAX);
	memcpy(big + 13 + STORE_MSGID_MAX - 2, "a>\r\n\r\n", 7);
	assert_int_equal(store_message_id(big, strlen(big), &b), 0);
	assert_int_equal(b.len, 0);
	free(big);
	buf_free(&b);
}

/* Every prefix: none, or the full id once its field line is complete;
 * also the octets as they are (no NUL terminator, exact length). */
static void
test_prefixes(void **state)
{
	static const char msg[] = "Received: from x by y;\r\n\tMon, 2 Mar 2026 10:00:00 +0000\r\n"
		"Message-ID: (c)\r\n <pre.fix@example.org>\r\nSubject: s\r\n\r\nbody\r\n";
	const char *end_of_field = strstr(msg, "\r\nSubject");
	struct buf b = BUF_INIT;

	(void)state;
	for (size_t n = 0; n <= sizeof(msg) - 1; n++) {
		char *copy = malloc(n ? n : 1);
		int r;

		assert_non_null(copy);
		memcpy(copy, msg, n);
		r = store_message_id(copy, n, &b);
		if (n >= (size_t)(end_of_field - msg) + 2) {
			assert_int_equal(r, 1);
			assert_string_equal(buf_cstr(&b), "<pre.fix@example.org>");
		} else if (r == 1) {
			/* a partial field line yields a partial id, never a different one */
			assert_true(b.len >= 1 && b.len <= strlen("<pre.fix@example.org>"));
			assert_memory_equal(b.data, "<pre.fix@example.org>", b.len);
		}
		free(copy);
	}
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain),
		cmocka_unit_test(test_folding_and_whitespace),
		cmocka_unit_test(test_comments_and_junk),
		cmocka_unit_test(test_none),
		cmocka_unit_test(test_prefixes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
