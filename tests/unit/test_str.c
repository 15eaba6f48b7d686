/* test_str.c - unit tests for lib/str.c and lib/err.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "lib/err.h"
#include "lib/str.h"

static void
test_lcpy(void **state)
{
	char d[5];

	(void)state;
	assert_int_equal(str_lcpy(d, "abc", sizeof(d)), 3);
	assert_string_equal(d, "abc");
	assert_int_equal(str_lcpy(d, "abcdefgh", sizeof(d)), 8);
	assert_string_equal(d, "abcd");
	assert_int_equal(str_fmt(d, sizeof(d), "%d", 1234), 4);
	assert_int_equal(str_fmt(d, sizeof(d), "%d", 12345), -1);
}

static void
test_case_and_prefix(void **state)
{
	char s[] = "  MiXeD Case \r\n";

	(void)state;
	assert_true(str_eq_ci("INBOX", "inbox"));
	assert_false(str_eq_ci("INBOX", "inbox2"));
	assert_true(str_has_prefix_ci("Content-Type: x", "content-type:"));
	assert_false(str_has_prefix_ci("Cont", "content"));
	assert_true(str_has_suffix("file.log", ".log"));
	assert_false(str_has_suffix("g", ".log"));
	str_trim(s);
	assert_string_equal(s, "MiXeD Case");
	str_lower(s);
	assert_string_equal(s, "mixed case");
}

static void
test_numbers(void **state)
{
	uint64_t u;
	uint32_t v;
	int64_t i;

	(void)state;
	assert_int_equal(str_to_u64("18446744073709551615", &u), 0);
	assert_true(u == UINT64_MAX);
	assert_int_equal(str_to_u64("18446744073709551616", &u), -1);
	assert_int_equal(str_to_u64("-1", &u), -1);
	assert_int_equal(str_to_u64("12a", &u), -1);
	assert_int_equal(str_to_u64("", &u), -1);
	assert_int_equal(str_to_u32("4294967296", &v), -1);
	assert_int_equal(str_to_u32("4294967295", &v), 0);
	assert_int_equal(str_to_i64_range("-5", -10, 10, &i), 0);
	assert_int_equal(i, -5);
	assert_int_equal(str_to_i64_range("11", -10, 10, &i), -1);
	assert_int_equal(str_to_i64_range(" 1", -10, 10, &i), -1);
}

static void
test_hex_ct(void **state)
{
	unsigned char in[] = { 0x00, 0xab, 0xff };
	char out[7];

	(void)state;
	str_hex(in, 3, out);
	assert_string_equal(out, "00abff");
	assert_true(str_ct_eq("abc", 3, "abc", 3));
	assert_false(str_ct_eq("abc", 3, "abd", 3));
	assert_false(str_ct_eq("abc", 3, "ab", 2));
}

static void
test_err(void **state)
{
	struct err e;

	(void)state;
	err_clear(&e);
	assert_int_equal(err_set(&e, ERR_NOTFOUND, "no mailbox %s", "x"), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_string_equal(e.msg, "no mailbox x");
	err_prefix(&e, "user %s", "alice");
	assert_string_equal(e.msg, "user alice: no mailbox x");
	errno = ENOSPC;
	err_errno(&e, ERR_TEMP, "write");
	assert_int_equal(e.kind, ERR_NOSPACE);
	assert_non_null(strstr(e.msg, "write: "));
	assert_string_equal(err_kind_name(ERR_QUOTA), "quota");
	assert_int_equal(err_set(NULL, ERR_TEMP, "ignored"), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lcpy),
		cmocka_unit_test(test_case_and_prefix),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_hex_ct),
		cmocka_unit_test(test_err),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
