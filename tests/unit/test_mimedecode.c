/*
 * test_mimedecode.c - RFC 2047 encoded words, charset conversion and the
 * decoded text SEARCH matches against.  Expected UTF-8 written by hand.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/xalloc.h"
#include "store/mime.h"
#include "store/mimedecode.h"
#include "store/rfc2047.h"

static void
dec(const char *in, const char *want)
{
	struct buf out = BUF_INIT;

	rfc2047_decode(in, strlen(in), &out);
	if (strcmp(buf_cstr(&out), want) != 0)
		fail_msg("decode \"%s\": got \"%s\", want \"%s\"", in, buf_cstr(&out), want);
	buf_free(&out);
}

static void
test_rfc2047(void **state)
{
	(void)state;
	dec("plain ascii", "plain ascii");
	dec("=?UTF-8?B?w4RwZmVs?= und =?ISO-8859-1?Q?Birnen_=E4?=",
		"\xc3\x84pfel und Birnen \xc3\xa4");
	/* white space between encoded words goes, elsewhere it stays */
	dec("=?UTF-8?Q?a?= =?UTF-8?Q?b?=", "ab");
	dec("=?UTF-8?Q?a?=\r\n =?UTF-8?Q?b?=", "ab");
	dec("=?UTF-8?Q?a?= b", "a b");
	dec("x =?UTF-8?Q?a?=", "x a");
	dec("=?UTF-8?Q?a?=b", "ab");
	/* a character split across two words */
	dec("=?UTF-8?Q?=C3?= =?UTF-8?Q?=84?=", "\xc3\x84");
	/* lower-case encoding letter, RFC 2231 language suffix */
	dec("=?utf-8?q?hi?= =?UTF-8*en?b?aGk=?=", "hihi");
	/* stateful charset */
	dec("=?ISO-2022-JP?B?GyRCJEgkMxsoQg==?=", "\xe3\x81\xa8\xe3\x81\x93");
	dec("=?KOI8-R?B?8NLJ18XU?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82");
	/* ISO-8859-1 read as windows-1252, as mailers mean it */
	dec("=?ISO-8859-1?Q?=80?=", "\xe2\x82\xac");
	dec("=?ISO-8859-1?B?R3L832UgYXVzIEv2bG4=?=", "Gr\xc3\xbc\xc3\x9f" "e aus K\xc3\xb6ln");
	/* malformed words are kept */
	dec("=?UTF-8?X?abc?=", "=?UTF-8?X?abc?=");
	dec("=?UTF-8?B?abc", "=?UTF-8?B?abc");
	dec("=??Q?abc?=", "=??Q?abc?=");
	dec("a =?", "a =?");
	/* unknown charset: octets taken as UTF-8 / windows-1252 */
	dec("=?x-unknown?Q?abc?=", "abc");
	/* bad octets in declared UTF-8 become U+FFFD */
	dec("=?UTF-8?Q?a=FFb?=", "a\xef\xbf\xbd" "b");
	/* raw 8-bit outside words: UTF-8 kept, anything else windows-1252 */
	dec("caf\xc3\xa9", "caf\xc3\xa9");
	dec("caf\xe9", "caf\xc3\xa9");
	/* a charset name that could smuggle iconv options is refused */
	dec("=?UTF-8//TRANSLIT?Q?x?=", "x");
}

static void
test_convert(void **state)
{
	struct buf out = BUF_INIT;

	(void)state;
	assert_int_equal(rfc2047_convert("iso-8859-15", 11, "\xa4", 1, &out), 0);
	assert_string_equal(buf_cstr(&out), "\xe2\x82\xac"); /* euro sign */
	buf_reset(&out);
	assert_int_equal(rfc2047_convert("no-such-charset", 15, "abc", 3, &out), -1);
	assert_string_equal(buf_cstr(&out), "abc");
	buf_reset(&out);
	/* truncated multi-octet sequence at the end */
	assert_int_equal(rfc2047_convert("UTF-16LE", 8, "a\0b", 3, &out), 0);
	assert_string_equal(buf_cstr(&out), "a\xef\xbf\xbd");
	buf_free(&out);
	assert_true(rfc2047_is_utf8("\xe2\x82\xac", 3));
	assert_false(rfc2047_is_utf8("\xc0\xaf", 2));         /* overlong */
	assert_false(rfc2047_is_utf8("\xed\xa0\x80", 3));     /* surrogate */
	assert_false(rfc2047_is_utf8("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
	assert_false(rfc2047_is_utf8("\xe2\x82", 2));         /* cut short */
}

static const char msg[] =
	"From: a@example.com\r\n"
	"Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
	"Content-Type: multipart/mixed; boundary=X\r\n"
	"\r\n"
	"--X\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"Content-Transfer-Encoding: quoted-printable\r\n"
	"\r\n"
	"Caf=C3=A9 soft=\r\n"
	"break 1+1=3D2\r\n"
	"--X\r\n"
	"Content-Type: text/plain; charset=\"iso-8859-1\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"bmHvdmUgculzdW3pDQo=\r\n"
	"--X\r\n"
	"Content-Type: image/png\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"\r\n"
	"U0VDUkVUSU1BR0U=\r\n"
	"--X\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"Subject: =?ISO-8859-1?Q?inner_=FC?=\r\n"
	"\r\n"
	"inner body\r\n"
	"--X--\r\n";

static void
test_text(void **state)
{
	struct buf out = BUF_INIT;
	struct mime_tree t;
	const char *s;

	(void)state;
	mimedecode_text(msg, strlen(msg), false, &out);
	s = buf_cstr(&out);
	/* the CRLF before the delimiter is not the part's; "\n" separates parts */
	assert_non_null(strstr(s, "Caf\xc3\xa9 softbreak 1+1=2\n"));
	assert_non_null(strstr(s, "na\xc3\xafve r\xc3\xa9sum\xc3\xa9\r\n"));
	assert_non_null(strstr(s, "Subject: inner \xc3\xbc\n"));
	assert_non_null(strstr(s, "inner body"));
	/* not the image, not the transfer encoding, not the outer header */
	assert_null(strstr(s, "SECRETIMAGE"));
	assert_null(strstr(s, "U0VDUkVUSU1BR0U"));
	assert_null(strstr(s, "=3D"));
	assert_null(strstr(s, "Gr\xc3\xbc\xc3\x9f" "e"));
	buf_reset(&out);
	mimedecode_text(msg, strlen(msg), true, &out);
	s = buf_cstr(&out);
	assert_non_null(strstr(s, "Subject: Gr\xc3\xbc\xc3\x9f" "e\n"));
	assert_non_null(strstr(s, "From: a@example.com\n"));

	/* one part at a time */
	mime_parse(&t, msg, strlen(msg));
	buf_reset(&out);
	assert_int_equal(mimedecode_part(msg, &t, 1, &out), 1);
	assert_string_equal(buf_cstr(&out), "Caf\xc3\xa9 softbreak 1+1=2");
	buf_reset(&out);
	assert_int_equal(mimedecode_part(msg, &t, 3, &out), 0); /* image */
	assert_int_equal(out.len, 0);
	assert_int_equal(mimedecode_part(msg, &t, 0, &out), 0); /* multipart */
	mime_tree_free(&t);
	buf_free(&out);
}

static void
test_header(void **state)
{
	static const char hdr[] = "Subject: =?UTF-8?Q?Gr=C3=BC=C3=9Fe?=\r\n"
		"X-Folded: a\r\n b\r\n"
		"no colon line\r\n"
		"\r\n"
		"Body: not a header\r\n";
	struct buf out = BUF_INIT;

	(void)state;
	mimedecode_header(hdr, 0, sizeof(hdr) - 1, &out);
	assert_string_equal(buf_cstr(&out), "Subject: Gr\xc3\xbc\xc3\x9f" "e\nX-Folded: a b\n");
	buf_free(&out);
}

/* Every truncation of the message decodes without trouble. */
static void
test_truncations(void **state)
{
	size_t k, n = strlen(msg);

	(void)state;
	for (k = 0; k <= n; k++) {
		char *copy = xmemdup(msg, k);
		struct buf out = BUF_INIT;

		mimedecode_text(copy, k, true, &out);
		rfc2047_decode(copy, k, &out);
		buf_free(&out);
		free(copy);
	}
}

/* A long header full of unterminated "=?" must decode in linear time
 * (quadratic here would take many minutes and hit the test timeout). */
static void
test_unterminated_words(void **state)
{
	struct buf in = BUF_INIT, out = BUF_INIT;
	size_t i;

	(void)state;
	for (i = 0; i < 150000; i++)
		buf_puts(&in, "=?a?q?x ");
	rfc2047_decode(in.data, in.len, &out);
	assert_int_equal(out.len, in.len);
	buf_free(&in);
	buf_free(&out);
}

/* Text nested deeper than MIME_MAX_DEPTH is still searchable (flat). */
static void
test_deep_text(void **state)
{
	struct buf m = BUF_INIT, out = BUF_INIT;
	int depth = MIME_MAX_DEPTH * 3;

	(void)state;
	buf_puts(&m, "Subject: deep\n");
	for (int d = 0; d < depth; d++)
		buf_printf(&m, "Content-Type: multipart/mixed; boundary=\"b%dz\"\n\n--b%dz\n", d, d);
	buf_puts(&m, "Content-Type: text/plain\n\nthe deepest words\n");
	for (int d = depth - 1; d >= 0; d--)
		buf_printf(&m, "--b%dz--\n", d);
	mimedecode_text(m.data, m.len, false, &out);
	assert_non_null(strstr(buf_cstr(&out), "the deepest words"));
	buf_free(&m);
	buf_free(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc2047),
		cmocka_unit_test(test_convert),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_truncations),
		cmocka_unit_test(test_unterminated_words),
		cmocka_unit_test(test_deep_text),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
