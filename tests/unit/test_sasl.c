/* test_sasl.c - unit tests for lib/sasl.c: SASL PLAIN parsing, its
 * rejections, base64 decoding of responses and the client encoder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "lib/base64.h"
#include "lib/buf.h"
#include "lib/err.h"
#include "lib/sasl.h"

static int
parse(const char *msg, size_t len, struct sasl_plain *p, struct err *err)
{
	return sasl_plain_parse(msg, len, p, err);
}

#define PARSE(lit, p, err) parse(lit, sizeof(lit) - 1, p, err)

static void
test_valid(void **state)
{
	struct sasl_plain p;
	struct err err = { 0 };

	(void)state;
	assert_int_equal(PARSE("\0alice\0s3cret", &p, &err), 0);
	assert_string_equal(p.authzid, "");
	assert_string_equal(p.authcid, "alice");
	assert_string_equal(p.passwd, "s3cret");
	assert_int_equal(PARSE("admin\0alice@example.org\0p w\x01\x7f", &p, &err), 0);
	assert_string_equal(p.authzid, "admin");
	assert_string_equal(p.authcid, "alice@example.org");
	assert_string_equal(p.passwd, "p w\x01\x7f"); /* passwords may hold controls */
	assert_int_equal(PARSE("\0J\xc3\xbcrgen\0\xe2\x82\xac\xf0\x9f\x98\x80", &p, &err), 0);
	assert_string_equal(p.authcid, "J\xc3\xbcrgen");
	sasl_plain_clear(&p);
	assert_int_equal(p.passwd[0], '\0');
}

static void
expect_reject(const char *msg, size_t len, const char *reason)
{
	struct sasl_plain p;
	struct err err = { 0 };

	memset(&p, 'X', sizeof(p));
	if (sasl_plain_parse(msg, len, &p, &err) != -1)
		fail_msg("accepted a message that should fail with \"%s\"", reason);
	assert_int_equal(err.kind, ERR_INVALID);
	if (strstr(err.msg, reason) == NULL)
		fail_msg("error \"%s\" does not say \"%s\"", err.msg, reason);
	/* nothing left behind */
	assert_int_equal(p.passwd[0], '\0');
	assert_int_equal(p.authcid[0], '\0');
}

#define REJECT(lit, reason) expect_reject(lit, sizeof(lit) - 1, reason)

static void
test_rejects(void **state)
{
	char big[2000];

	(void)state;
	REJECT("", "no NUL");
	REJECT("alicepass", "no NUL");
	REJECT("\0alicepass", "only one NUL");
	REJECT("\0alice\0pa\0ss", "more than two");
	REJECT("\0\0\0", "more than two");
	REJECT("\0\0pass", "empty authentication identity");
	REJECT("zid\0alice\0", "empty password");
	REJECT("\0ali\rce\0pass", "control character");
	REJECT("\0alice\n\0pass", "control character");
	REJECT("ad\x7fmin\0alice\0pass", "control character");
	REJECT("\0\xc3\0pass", "not valid UTF-8");
	REJECT("\0alice\0\xff", "not valid UTF-8");
	REJECT("\0\xc0\xafx\0pass", "not valid UTF-8");       /* overlong */
	REJECT("\0\xed\xa0\x80\0pass", "not valid UTF-8");    /* surrogate */
	REJECT("\0\xf4\x90\x80\x80\0pass", "not valid UTF-8"); /* > U+10FFFF */
	/* length limits: exactly at the limit passes, one over fails */
	memset(big, 'a', sizeof(big));
	big[0] = '\0';
	big[1 + SASL_PLAIN_ID_MAX] = '\0';
	{
		struct sasl_plain p;
		struct err err = { 0 };
		assert_int_equal(sasl_plain_parse(big, 1 + SASL_PLAIN_ID_MAX + 1 + SASL_PLAIN_PASS_MAX,
		    &p, &err), 0);
		assert_int_equal(strlen(p.authcid), SASL_PLAIN_ID_MAX);
		assert_int_equal(strlen(p.passwd), SASL_PLAIN_PASS_MAX);
	}
	expect_reject(big, 1 + SASL_PLAIN_ID_MAX + 1 + SASL_PLAIN_PASS_MAX + 1,
	    "password longer than 1024");
	big[1 + SASL_PLAIN_ID_MAX] = 'a';
	big[2 + SASL_PLAIN_ID_MAX] = '\0';
	expect_reject(big, 2 + SASL_PLAIN_ID_MAX + 5, "authentication identity longer than 255");
	memset(big, 'z', sizeof(big));
	big[SASL_PLAIN_ID_MAX + 1] = '\0';
	big[SASL_PLAIN_ID_MAX + 3] = '\0';
	expect_reject(big, SASL_PLAIN_ID_MAX + 6, "authorization identity longer than 255");
}

static void
test_decode_and_encode(void **state)
{
	struct buf b = BUF_INIT;
	struct sasl_plain p;
	struct err err = { 0 };

	(void)state;
	/* RFC 4616 example: "\0tim\0tanstaaftanstaaf" */
	assert_int_equal(sasl_plain_decode("AHRpbQB0YW5zdGFhZnRhbnN0YWFm", 28, &p, &err), 0);
	assert_string_equal(p.authcid, "tim");
	assert_string_equal(p.passwd, "tanstaaftanstaaf");
	sasl_plain_encode(&b, NULL, "tim", "tanstaaftanstaaf");
	assert_string_equal(buf_cstr(&b), "AHRpbQB0YW5zdGFhZnRhbnN0YWFm");
	buf_reset(&b);
	sasl_plain_encode(&b, "Ursel", "Kurt", "xipj3plmq");
	assert_int_equal(sasl_plain_decode(b.data, b.len, &p, &err), 0);
	assert_string_equal(p.authzid, "Ursel");
	assert_string_equal(p.authcid, "Kurt");
	assert_string_equal(p.passwd, "xipj3plmq");
	/* bad base64 is refused with a SASL reason */
	assert_int_equal(sasl_plain_decode("AHRpbQB0YW5zdGFhZnRhbnN0YWF", 27, &p, &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	assert_non_null(strstr(err.msg, "SASL PLAIN"));
	assert_non_null(strstr(err.msg, "base64"));
	/* "*" (the client's cancel) is not base64 */
	assert_int_equal(sasl_plain_decode("*", 1, &p, &err), -1);
	/* a decoded message with a bad structure */
	buf_reset(&b);
	base64_encode(&b, "nonuls", 6);
	assert_int_equal(sasl_plain_decode(b.data, b.len, &p, &err), -1);
	assert_non_null(strstr(err.msg, "no NUL"));
	/* an empty response */
	assert_int_equal(sasl_plain_decode("", 0, &p, &err), -1);
	/* overlong responses are refused before decoding */
	buf_reset(&b);
	while (b.len <= SASL_PLAIN_B64_MAX)
		buf_puts(&b, "AAAA");
	assert_int_equal(sasl_plain_decode(b.data, b.len, &p, &err), -1);
	assert_non_null(strstr(err.msg, "longer than"));
	buf_free(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_valid),
		cmocka_unit_test(test_rejects),
		cmocka_unit_test(test_decode_and_encode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
