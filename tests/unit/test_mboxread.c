/* test_mboxread.c - unit tests for ctl/mboxread.c (the streaming mbox reader) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl/mboxread.h"
#include "lib/buf.h"
#include "lib/xalloc.h"

/* Collected messages: each as "sender|date|line|offset\n" + data + "\n--\n". */
struct coll {
	struct buf out;
	int n;
	int fail_at;   /* make the callback fail on this message (1-based), 0 = never */
};

static int
collect(const struct mboxread_msg *m, void *ctx, struct err *err)
{
	struct coll *c = ctx;

	c->n++;
	if (c->fail_at && c->n == c->fail_at)
		return err_set(err, ERR_TEMP, "stop at %d", c->n);
	assert_int_equal(m->index, (uint64_t)(c->n - 1));
	buf_printf(&c->out, "%s|%lld|%llu|%llu\n", m->sender, (long long)m->date,
	    (unsigned long long)m->line, (unsigned long long)m->offset);
	buf_append(&c->out, m->data, m->len);
	buf_puts(&c->out, "\n--\n");
	return 0;
}

/* Feed `in` in chunks of `chunk` bytes (0 = all at once). */
static int
parse(const char *in, size_t len, size_t chunk, enum mboxread_format fmt, size_t max,
    struct coll *c, struct err *err)
{
	struct mboxread *r = mboxread_new(fmt, max, collect, c);
	size_t pos = 0;
	int rc = 0;

	buf_init(&c->out);
	c->n = 0;
	err_clear(err);
	if (chunk == 0)
		chunk = len ? len : 1;
	while (pos < len && rc == 0) {
		size_t n = len - pos < chunk ? len - pos : chunk;
		rc = mboxread_feed(r, in + pos, n, err);
		pos += n;
	}
	if (rc == 0)
		rc = mboxread_finish(r, err);
	if (rc == 0)
		assert_int_equal(mboxread_offset(r), len);
	mboxread_free(&r);
	assert_null(r);
	return rc;
}

static const char two[] =
    "From alice@example.com Thu Nov 27 00:28:00 2025\n"
    "Subject: one\n"
    "\n"
    "body one\n"
    "\n"
    "From bob@example.com Fri Nov 28 10:00:01 2025\n"
    "Subject: two\n"
    "\n"
    "body two\n";

static const char two_expect[] =
    "alice@example.com|1764203280|1|0\n"
    "Subject: one\r\n\r\nbody one\r\n"
    "\n--\n"
    "bob@example.com|1764324001|6|72\n"
    "Subject: two\r\n\r\nbody two\r\n"
    "\n--\n";

static void
test_two_messages(void **state)
{
	struct coll c = { .fail_at = 0 };
	struct err err;

	(void)state;
	assert_int_equal(parse(two, strlen(two), 0, MBOXREAD_MBOXRD, 0, &c, &err), 0);
	assert_int_equal(c.n, 2);
	assert_string_equal(buf_cstr(&c.out), two_expect);
	buf_free(&c.out);
}

static void
test_crlf_input(void **state)
{
	struct coll c = { .fail_at = 0 };
	struct err err;
	struct buf in = BUF_INIT;
	const char *p;

	(void)state;
	for (p = two; *p; p++) {
		if (*p == '\n')
			buf_putc(&in, '\r');
		buf_putc(&in, *p);
	}
	assert_int_equal(parse(in.data, in.len, 0, MBOXREAD_MBOXRD, 0, &c, &err), 0);
	assert_int_equal(c.n, 2);
	/* same messages; only the separator offset of message 2 moves (5 more CRs) */
	assert_non_null(strstr(buf_cstr(&c.out), "Subject: two\r\n\r\nbody two\r\n\n--\n"));
	assert_non_null(strstr(buf_cstr(&c.out), "bob@example.com|1764324001|6|77\n"));
	assert_null(strstr(buf_cstr(&c.out), "\r\r"));
	buf_free(&c.out);
	buf_free(&in);
}

/* Every chunk size, down to one byte at a time, gives the same result. */
static void
test_byte_by_byte(void **state)
{
	static const char in[] =
	    "\n\nFrom a Mon Jan  5 01:02:03 2015\r\n"
	    "X: y\r\n\r\n>From quoted\n>>From deeper\n\n\nFrom b Tue Jan  6 01:02:03 2015\n"
	    "line\nFrom not-a-separator here\nlast line without newline";
	struct coll whole = { .fail_at = 0 }, part = { .fail_at = 0 };
	struct err err;
	size_t chunk;

	(void)state;
	assert_int_equal(parse(in, sizeof(in) - 1, 0, MBOXREAD_MBOXRD, 0, &whole, &err), 0);
	assert_int_equal(whole.n, 2);
	for (chunk = 1; chunk < sizeof(in); chunk++) {
		assert_int_equal(parse(in, sizeof(in) - 1, chunk, MBOXREAD_MBOXRD, 0, &part, &err), 0);
		assert_int_equal(part.n, whole.n);
		assert_int_equal(part.out.len, whole.out.len);
		assert_memory_equal(part.out.data, whole.out.data, whole.out.len);
		buf_free(&part.out);
	}
	assert_string_equal(buf_cstr(&whole.out),
	    "a|1420419723|3|2\n"
	    "X: y\r\n\r\nFrom quoted\r\n>From deeper\r\n\r\n"
	    "\n--\n"
	    "b|1420506123|10|72\n"
	    "line\r\nFrom not-a-separator here\r\nlast line without newline\r\n"
	    "\n--\n");
	buf_free(&whole.out);
}

static void
test_mboxo_vs_mboxrd(void **state)
{
	static const char in[] = "From x Mon Jan  5 01:02:03 2015\n>From a\n>>From b\n>>>From c\n>Fromage\n";
	struct coll c = { .fail_at = 0 };
	struct err err;

	(void)state;
	assert_int_equal(parse(in, strlen(in), 0, MBOXREAD_MBOXRD, 0, &c, &err), 0);
	assert_non_null(strstr(buf_cstr(&c.out), "\nFrom a\r\n>From b\r\n>>From c\r\n>Fromage\r\n\n--\n"));
	buf_free(&c.out);
	assert_int_equal(parse(in, strlen(in), 0, MBOXREAD_MBOXO, 0, &c, &err), 0);
	assert_non_null(strstr(buf_cstr(&c.out), "\nFrom a\r\n>>From b\r\n>>>From c\r\n>Fromage\r\n\n--\n"));
	buf_free(&c.out);
}

/* An unquoted "From " in a body splits only when it is a well-formed
 * separator line, blank line before it or not; trailing blank lines: only
 * one is framing. */
static void
test_separator_rules(void **state)
{
	static const char in[] =
	    "From x Mon Jan  5 01:02:03 2015\n"
	    "a\n"
	    "From here we go\n"                           /* body: no blank, no date */
	    "\n"
	    "From here on, a blank line before\n"         /* body: no date, blank or not */
	    "From y Tue Jan  6 01:02:03 2015\n"           /* separator: valid date */
	    "b\n\n\n\n"
	    "From z Wed Jan  7 01:02:03 2015\n"
	    "c\n";
	struct coll c = { .fail_at = 0 };
	struct err err;

	(void)state;
	assert_int_equal(parse(in, strlen(in), 0, MBOXREAD_MBOXRD, 0, &c, &err), 0);
	assert_int_equal(c.n, 3);
	assert_non_null(strstr(buf_cstr(&c.out),
	    "|1|0\na\r\nFrom here we go\r\n\r\nFrom here on, a blank line before\r\n\n--\n"));
	assert_non_null(strstr(buf_cstr(&c.out), "|6|"));
	assert_non_null(strstr(buf_cstr(&c.out), "\nb\r\n\r\n\r\n\n--\n"));
	buf_free(&c.out);
}

static void
test_not_an_mbox(void **state)
{
	static const char in[] = "\nSubject: hello\n\nbody\n";
	struct coll c = { .fail_at = 0 };
	struct err err;

	(void)state;
	assert_int_equal(parse(in, strlen(in), 0, MBOXREAD_MBOXRD, 0, &c, &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	assert_non_null(strstr(err.msg, "not an mbox"));
	assert_non_null(strstr(err.msg, "line 2"));
	assert_int_equal(c.n, 0);
	buf_free(&c.out);
	/* only blank lines: no separator at all */
	assert_int_equal(parse("\n\n\r\n", 4, 1, MBOXREAD_MBOXRD, 0, &c, &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	buf_free(&c.out);
	/* empty input: zero messages, fine */
	assert_int_equal(parse("", 0, 0, MBOXREAD_MBOXRD, 0, &c, &err), 0);
	assert_int_equal(c.n, 0);
	buf_free(&c.out);
	/* binary garbage without a newline */
	assert_int_equal(parse("\x00\x01\x02garbage", 10, 3, MBOXREAD_MBOXRD, 0, &c, &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	buf_free(&c.out);
}

static void
test_empty_message(void **state)
{
	static const char in[] = "From a Mon Jan  5 01:02:03 2015\nx\n\nFrom b Mon Jan  5 01:02:03 2015\n\nFrom c Mon Jan  5 01:02:03 2015\ny\n";
	struct coll c = { .fail_at = 0 };
	struct err err;

	(void)state;
	assert_int_equal(parse(in, strlen(in), 0, MBOXREAD_MBOXRD, 0, &c, &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	assert_non_null(strstr(err.msg, "empty message 2 at line 4"));
	assert_int_equal(c.n, 1);
	buf_free(&c.out);
	/* a trailing separator with nothing after it */
	assert_int_equal(parse("From a\nx\nFrom b Mon Jan  5 01:02:03 2015\n", 40, 0, MBOXREAD_MBOXRD, 0, &c, &err), -1);
	assert_non_null(strstr(err.msg, "empty message"));
	buf_free(&c.out);
}

static void
test_too_big(void **state)
{
	struct coll c = { .fail_at = 0 };
	struct err err;
	struct buf in = BUF_INIT;
	int i;

	(void)state;
	buf_puts(&in, "From a Mon Jan  5 01:02:03 2015\nsmall\n\n");
	buf_puts(&in, "From b Mon Jan  5 01:02:03 2015\n");
	for (i = 0; i < 100; i++)
		buf_puts(&in, "0123456789\n");
	/* 100 lines of 12 bytes = 1200 > 1000: message 2 too big, message 1 delivered */
	assert_int_equal(parse(in.data, in.len, 7, MBOXREAD_MBOXRD, 1000, &c, &err), -1);
	assert_int_equal(err.kind, ERR_TOOBIG);
	assert_non_null(strstr(err.msg, "message 2 (line 4)"));
	assert_int_equal(c.n, 1);
	buf_free(&c.out);
	/* one giant line with no newline is bounded too */
	buf_reset(&in);
	buf_puts(&in, "From b Mon Jan  5 01:02:03 2015\n");
	for (i = 0; i < 300; i++)
		buf_puts(&in, "0123456789");
	assert_int_equal(parse(in.data, in.len, 0, MBOXREAD_MBOXRD, 1000, &c, &err), -1);
	assert_int_equal(err.kind, ERR_TOOBIG);
	buf_free(&c.out);
	/* exactly at the limit is fine: "x\r\n" * n */
	buf_reset(&in);
	buf_puts(&in, "From b Mon Jan  5 01:02:03 2015\n");
	for (i = 0; i < 10; i++)
		buf_puts(&in, "x\n");
	assert_int_equal(parse(in.data, in.len, 0, MBOXREAD_MBOXRD, 30, &c, &err), 0);
	assert_int_equal(c.n, 1);
	buf_free(&c.out);
	assert_int_equal(parse(in.data, in.len, 0, MBOXREAD_MBOXRD, 29, &c, &err), -1);
	buf_free(&c.out);
	buf_free(&in);
}

static void
test_callback_error(void **state)
{
	struct coll c = { .fail_at = 2 };
	struct err err;
	struct mboxread *r;

	(void)state;
	assert_int_equal(parse(two, strlen(two), 5, MBOXREAD_MBOXRD, 0, &c, &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	assert_string_equal(err.msg, "stop at 2");
	buf_free(&c.out);
	/* a failed reader refuses further input */
	c.fail_at = 1;
	c.n = 0;
	buf_init(&c.out);
	r = mboxread_new(MBOXREAD_MBOXRD, 0, collect, &c);
	assert_int_equal(mboxread_feed(r, two, strlen(two), &err), -1);
	assert_int_equal(mboxread_feed(r, "x\n", 2, &err), -1);
	assert_int_equal(mboxread_finish(r, &err), -1);
	assert_int_equal(mboxread_count(r), 0);
	mboxread_free(&r);
	buf_free(&c.out);
}

static void
test_nul_and_8bit(void **state)
{
	static const char in[] = "From a Mon Jan  5 01:02:03 2015\nA\0B\xff\n";
	struct coll c = { .fail_at = 0 };
	struct err err;

	(void)state;
	assert_int_equal(parse(in, sizeof(in) - 1, 1, MBOXREAD_MBOXRD, 0, &c, &err), 0);
	assert_int_equal(c.n, 1);
	assert_memory_equal(strchr(c.out.data, '\n') + 1, "A\0B\xff\r\n", 6);
	buf_free(&c.out);
}

static void
test_parse_from(void **state)
{
	char sender[64];
	time_t t;
	const char *s;

	(void)state;
	s = "MAILER-DAEMON Fri Jul  8 12:08:34 2011";
	assert_int_equal(mboxread_parse_from(s, strlen(s), sender, sizeof(sender), &t), 0);
	assert_string_equal(sender, "MAILER-DAEMON");
	assert_int_equal((long long)t, 1310126914LL);
	/* numeric zone after the year (Netscape) and before it */
	s = "a@b Fri Jul  8 12:08:34 2011 +0200";
	assert_int_equal(mboxread_parse_from(s, strlen(s), sender, sizeof(sender), &t), 0);
	assert_int_equal((long long)t, 1310126914LL - 7200);
	s = "a@b Fri Jul  8 12:08:34 -0130 2011";
	assert_int_equal(mboxread_parse_from(s, strlen(s), sender, sizeof(sender), &t), 0);
	assert_int_equal((long long)t, 1310126914LL + 5400);
	/* named zone, no seconds, lower-case names */
	s = "a@b fri jul  8 12:08 PDT 2011";
	assert_int_equal(mboxread_parse_from(s, strlen(s), sender, sizeof(sender), &t), 0);
	assert_int_equal((long long)t, 1310126880LL);
	/* sender with a blank (quoted local part) */
	s = "\"john doe\"@example.com  Sat Jan  3 01:05:34 1996";
	assert_int_equal(mboxread_parse_from(s, strlen(s), sender, sizeof(sender), &t), 0);
	assert_int_equal((long long)t, 820631134LL);
	/* no date, bad day, bad time, missing year */
	s = "here we go";
	assert_int_equal(mboxread_parse_from(s, strlen(s), sender, sizeof(sender), &t), -1);
	assert_string_equal(sender, "here");
	s = "a Fri Jul 32 12:08:34 2011";
	assert_int_equal(mboxread_parse_from(s, strlen(s), sender, sizeof(sender), &t), -1);
	s = "a Fri Jul  8 25:08:34 2011";
	assert_int_equal(mboxread_parse_from(s, strlen(s), sender, sizeof(sender), &t), -1);
	s = "a Fri Jul  8 12:08:34";
	assert_int_equal(mboxread_parse_from(s, strlen(s), sender, sizeof(sender), &t), -1);
	/* empty, and a sender that does not fit the buffer */
	assert_int_equal(mboxread_parse_from("", 0, sender, sizeof(sender), &t), -1);
	assert_string_equal(sender, "");
	s = "averyveryverylongsender Fri Jul  8 12:08:34 2011";
	assert_int_equal(mboxread_parse_from(s, strlen(s), sender, 6, &t), 0);
	assert_string_equal(sender, "avery");
}

static void
test_file(void **state)
{
	char path[] = "/tmp/test_mboxread.XXXXXX";
	struct coll c = { .fail_at = 0 };
	struct err err;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, two, strlen(two)), (ssize_t)strlen(two));
	close(fd);
	buf_init(&c.out);
	assert_int_equal(mboxread_file(path, MBOXREAD_MBOXRD, 0, collect, &c, &err), 0);
	assert_string_equal(buf_cstr(&c.out), two_expect);
	buf_free(&c.out);
	unlink(path);
	assert_int_equal(mboxread_file(path, MBOXREAD_MBOXRD, 0, collect, &c, &err), -1);
	assert_int_equal(err.kind, ERR_NOTFOUND);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_two_messages),
		cmocka_unit_test(test_crlf_input),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_mboxo_vs_mboxrd),
		cmocka_unit_test(test_separator_rules),
		cmocka_unit_test(test_not_an_mbox),
		cmocka_unit_test(test_empty_message),
		cmocka_unit_test(test_too_big),
		cmocka_unit_test(test_callback_error),
		cmocka_unit_test(test_nul_and_8bit),
		cmocka_unit_test(test_parse_from),
		cmocka_unit_test(test_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
