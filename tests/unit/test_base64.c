/* test_base64.c - unit tests for lib/base64.c: RFC 4648 vectors, strict
 * rejection, lenient MIME decoding, and random round trips. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base64.h"
#include "lib/buf.h"
#include "lib/err.h"

static const char *const vec[][2] = {
	{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
};

static void
test_rfc4648_vectors(void **state)
{
	struct buf b = BUF_INIT;
	struct err err = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		buf_reset(&b);
		base64_encode(&b, vec[i][0], strlen(vec[i][0]));
		assert_string_equal(buf_cstr(&b), vec[i][1]);
		assert_int_equal(b.len, base64_encoded_len(strlen(vec[i][0])));
		buf_reset(&b);
		assert_int_equal(base64_decode(&b, vec[i][1], strlen(vec[i][1]), &err), 0);
		assert_string_equal(buf_cstr(&b), vec[i][0]);
		buf_reset(&b);
		assert_int_equal(base64_decode_mime(&b, vec[i][1], strlen(vec[i][1])), strlen(vec[i][0]));
		assert_string_equal(buf_cstr(&b), vec[i][0]);
	}
	/* all 256 byte values, appended after existing content */
	{
		unsigned char all[256];
		struct buf e = BUF_INIT;
		for (i = 0; i < 256; i++)
			all[i] = (unsigned char)i;
		base64_encode(&e, all, sizeof(all));
		buf_reset(&b);
		buf_puts(&b, "pre");
		assert_int_equal(base64_decode(&b, e.data, e.len, &err), 0);
		assert_int_equal(b.len, 3 + 256);
		assert_memory_equal(b.data + 3, all, 256);
		assert_true(strchr(e.data, '+') != NULL && strchr(e.data, '/') != NULL);
		buf_free(&e);
	}
	buf_free(&b);
}

static void
test_strict_rejects(void **state)
{
	static const char *const bad[] = {
		"Zg=",        /* not a multiple of 4 */
		"Zm9v\r\n",   /* white space */
		"Zm 9v",
		"Zg==Zg==",   /* padding in the middle */
		"Z===",       /* too much padding */
		"=Zg=",
		"Zm9-",       /* URL alphabet is not base64 */
		"Zh==",       /* non-zero bits in the padding */
		"Zm9=",
		"Zg=A",
		"Zm\0v",
	};
	struct buf b = BUF_INIT;
	struct err err = { 0 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		size_t n = i == 10 ? 4 : strlen(bad[i]);
		buf_reset(&b);
		buf_puts(&b, "keep");
		err.kind = ERR_NONE;
		if (base64_decode(&b, bad[i], n, &err) != -1)
			fail_msg("accepted \"%s\"", bad[i]);
		assert_int_equal(err.kind, ERR_INVALID);
		assert_int_equal(b.len, 4); /* restored */
		assert_string_equal(b.data, "keep");
	}
	buf_reset(&b);
	assert_int_equal(base64_decode(&b, "Zm9vYg==", 8, &err), 0);
	assert_int_equal(base64_decode(&b, "Zm9vYg=x", 8, &err), -1);
	assert_non_null(strstr(err.msg, "offset 6"));
	buf_free(&b);
}

static void
test_mime_lenient(void **state)
{
	struct buf b = BUF_INIT;
	static const char body[] =
		"SGVsbG8s\r\n"
		"IHdvcmxk\r\n"
		"IQ==\r\n";
	static const char junk[] = "SGV\tsbG8 *!%&sIHdv\ncmxk IQ";

	(void)state;
	assert_int_equal(base64_decode_mime(&b, body, strlen(body)), 13);
	assert_string_equal(buf_cstr(&b), "Hello, world!");
	buf_reset(&b);
	/* garbage skipped; an unpadded last quantum yields its whole bytes */
	assert_int_equal(base64_decode_mime(&b, junk, strlen(junk)), 13);
	assert_string_equal(buf_cstr(&b), "Hello, world!");
	buf_reset(&b);
	/* two encoded parts glued together: both decoded */
	assert_int_equal(base64_decode_mime(&b, "Zm8=\r\nYmFy", 10), 5);
	assert_string_equal(buf_cstr(&b), "fobar");
	buf_reset(&b);
	/* a lone trailing character carries no whole byte */
	assert_int_equal(base64_decode_mime(&b, "Zm9vY", 5), 3);
	assert_string_equal(buf_cstr(&b), "foo");
	buf_reset(&b);
	assert_int_equal(base64_decode_mime(&b, "====\r\n", 6), 0);
	buf_free(&b);
}

static void
test_random_roundtrip(void **state)
{
	struct buf e = BUF_INIT, d = BUF_INIT, m = BUF_INIT, wrapped = BUF_INIT;
	struct err err = { 0 };
	unsigned char data[1000];
	unsigned int seed = 12345;
	int round;

	(void)state;
	for (round = 0; round < 500; round++) {
		size_t n = (size_t)rand_r(&seed) % sizeof(data), i;
		for (i = 0; i < n; i++)
			data[i] = (unsigned char)rand_r(&seed);
		buf_reset(&e);
		buf_reset(&d);
		buf_reset(&m);
		buf_reset(&wrapped);
		base64_encode(&e, data, n);
		assert_int_equal(base64_decode(&d, e.data, e.len, &err), 0);
		assert_int_equal(d.len, n);
		assert_memory_equal(d.data, data, n);
		/* MIME: wrapped at 76 columns with CRLF */
		for (i = 0; i < e.len; i += 76) {
			buf_append(&wrapped, e.data + i, e.len - i < 76 ? e.len - i : 76);
			buf_puts(&wrapped, "\r\n");
		}
		assert_int_equal(base64_decode_mime(&m, wrapped.data, wrapped.len), n);
		assert_memory_equal(m.data, data, n);
	}
	buf_free(&e);
	buf_free(&d);
	buf_free(&m);
	buf_free(&wrapped);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc4648_vectors),
		cmocka_unit_test(test_strict_rejects),
		cmocka_unit_test(test_mime_lenient),
		cmocka_unit_test(test_random_roundtrip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
