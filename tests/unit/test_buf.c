/* test_buf.c - unit tests for lib/buf.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"

static void
test_append_and_cstr(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	assert_string_equal(buf_cstr(&b), "");
	buf_puts(&b, "hello");
	buf_putc(&b, ' ');
	buf_printf(&b, "%d-%s", 42, "x");
	assert_int_equal(b.len, 10);
	assert_string_equal(buf_cstr(&b), "hello 42-x");
	buf_consume(&b, 6);
	assert_string_equal(buf_cstr(&b), "42-x");
	buf_truncate(&b, 2);
	assert_string_equal(buf_cstr(&b), "42");
	buf_free(&b);
	assert_null(b.data);
}

static void
test_binary_and_growth(void **state)
{
	struct buf b = BUF_INIT;
	char big[10000];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(big); i++)
		big[i] = (char)(i % 251);
	for (i = 0; i < 10; i++)
		buf_append(&b, big, sizeof(big));
	assert_int_equal(b.len, 100000);
	assert_memory_equal(b.data + 50000, big, sizeof(big));
	assert_int_equal(b.data[b.len], '\0');
	buf_free(&b);
}

static void
test_printf_long(void **state)
{
	struct buf b = BUF_INIT;
	char s[3000];

	(void)state;
	memset(s, 'a', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	buf_printf(&b, "<%s>", s);
	assert_int_equal(b.len, sizeof(s) + 1);
	assert_int_equal(b.data[0], '<');
	assert_int_equal(b.data[b.len - 1], '>');
	buf_free(&b);
}

static void
test_astring(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	buf_put_astring(&b, "a \"q\" \\", 7);
	assert_string_equal(buf_cstr(&b), "\"a \\\"q\\\" \\\\\"");
	buf_reset(&b);
	buf_put_astring(&b, "line\r\nnext", 10);
	assert_string_equal(buf_cstr(&b), "{10}\r\nline\r\nnext");
	buf_reset(&b);
	buf_put_astring(&b, "nul\0x", 5);
	assert_int_equal(b.len, 5 + 5);
	assert_memory_equal(b.data, "{5}\r\nnul\0x", 10);
	buf_free(&b);
}

static void
test_steal(void **state)
{
	struct buf b = BUF_INIT;
	char *p;

	(void)state;
	p = buf_steal(&b);
	assert_string_equal(p, "");
	free(p);
	buf_puts(&b, "abc");
	p = buf_steal(&b);
	assert_string_equal(p, "abc");
	assert_int_equal(b.len, 0);
	free(p);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_append_and_cstr),
		cmocka_unit_test(test_binary_and_growth),
		cmocka_unit_test(test_printf_long),
		cmocka_unit_test(test_astring),
		cmocka_unit_test(test_steal),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
