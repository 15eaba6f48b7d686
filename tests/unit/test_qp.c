/* test_qp.c - unit tests for lib/qp.c: RFC 2045 quoted-printable decoding,
 * lenient on malformed input, and the RFC 2047 "Q" variant. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/qp.h"

static void
check(const char *in, const char *want)
{
	struct buf b = BUF_INIT;
	size_t n = qp_decode(&b, in, strlen(in));

	assert_int_equal(n, strlen(want));
	if (strcmp(buf_cstr(&b), want) != 0)
		fail_msg("qp(\"%s\") = \"%s\", want \"%s\"", in, buf_cstr(&b), want);
	buf_free(&b);
}

static void
test_valid(void **state)
{
	(void)state;
	check("plain text", "plain text");
	check("caf=C3=A9", "caf\xc3\xa9");
	check("lower =c3=a9 hex", "lower \xc3\xa9 hex");
	check("a=3Db", "a=b");
	check("soft=\r\nbreak", "softbreak");
	check("soft=\nbreak lf", "softbreak lf");
	check("hard\r\nbreak\nlf", "hard\r\nbreak\nlf");
	check("tab\there", "tab\there");
}

static void
test_nul_byte(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	assert_int_equal(qp_decode(&b, "=00x", 4), 2);
	assert_memory_equal(b.data, "\0x", 2);
	buf_free(&b);
}

static void
test_whitespace_rules(void **state)
{
	(void)state;
	/* trailing white space before a line break was added in transport */
	check("line  \t\r\nnext", "line\r\nnext");
	check("line \nnext", "line\nnext");
	/* white space after a soft-break "=" (illegal but common) */
	check("soft= \t\r\nbreak", "softbreak");
	/* inner white space stays, and so does white space at end of input */
	check("a  b ", "a  b ");
}

static void
test_malformed_kept(void **state)
{
	(void)state;
	check("100%=", "100%");            /* "=" at the very end: cut-short soft break */
	check("a=zzb", "a=zzb");           /* not hex: kept */
	check("a=4", "a=4");               /* too short: kept */
	check("a=4G", "a=4G");
	check("x = y", "x = y");
	check("==41", "=A");
	check("\xff\xfe 8bit", "\xff\xfe 8bit");
	check("=\r", "=\r");               /* CR without LF is not a line break */
}

static void
test_q_variant(void **state)
{
	struct buf b = BUF_INIT;
	const char *in = "Caf=C3=A9_au_lait=5F";

	(void)state;
	qp_decode_q(&b, in, strlen(in));
	assert_string_equal(buf_cstr(&b), "Caf\xc3\xa9 au lait_");
	buf_reset(&b);
	/* plain qp keeps '_' */
	qp_decode(&b, "a_b", 3);
	assert_string_equal(buf_cstr(&b), "a_b");
	buf_free(&b);
}

static void
test_appends(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	buf_puts(&b, "head:");
	assert_int_equal(qp_decode(&b, "=41=42", 6), 2);
	assert_string_equal(buf_cstr(&b), "head:AB");
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_nul_byte),
		cmocka_unit_test(test_whitespace_rules),
		cmocka_unit_test(test_malformed_kept),
		cmocka_unit_test(test_q_variant),
		cmocka_unit_test(test_appends),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
