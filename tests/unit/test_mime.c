/*
 * test_mime.c - the part-tree scanner: exact octet ranges of BODY[section]
 * (expected substrings written by hand), on the tree from mime_parse and
 * on the tree decoded from its serialised form; header field filtering;
 * caps; boundary edge cases; parse speed (printed, never asserted).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/mman.h>

#include "lib/buf.h"
#include "lib/xalloc.h"
#include "store/imapenv.h"
#include "store/mime.h"
#include "store/mimedecode.h"

static const char msg_mixed[] =
	"From: Carol <carol@example.net>\r\n"
	"To: Dave <dave@example.net>, eve@example.net\r\n"
	"Subject: Report\r\n"
	"MIME-Version: 1.0\r\n"
	"Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
	"\r\n"
	"This is a preamble.\r\n"
	"--XYZ\r\n"
	"Content-Type: text/plain; charset=utf-8\r\n"
	"\r\n"
	"See attached.\r\n"
	"--XYZ\r\n"
	"Content-Type: application/pdf; name=\"r.pdf\"\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-Disposition: attachment; filename=\"r.pdf\"\r\n"
	"\r\n"
	"JVBERi0xLjQK\r\n"
	"--XYZ--\r\n"
	"Epilogue.\r\n";

static const char msg_nested[] =
	"From: f@example.com\r\n"
	"Subject: nested\r\n"
	"Content-Type: multipart/mixed; boundary=outer\r\n"
	"\r\n"
	"--outer\r\n"
	"Content-Type: multipart/alternative; boundary=inner\r\n"
	"\r\n"
	"--inner\r\n"
	"Content-Type: text/plain\r\n"
	"\r\n"
	"plain\r\n"
	"--inner\r\n"
	"Content-Type: text/html\r\n"
	"\r\n"
	"<b>html</b>\r\n"
	"--inner--\r\n"
	"--outer\r\n"
	"Content-Type: image/png\r\n"
	"Content-Transfer-Encoding: base64\r\n"
	"Content-ID: <img1@example.com>\r\n"
	"\r\n"
	"iVBORw0KGgo=\r\n"
	"--outer--\r\n";

static const char msg_rfc822[] =
	"From: g@example.com\r\n"
	"Subject: fwd\r\n"
	"Content-Type: multipart/mixed; boundary=\"b1\"\r\n"
	"\r\n"
	"--b1\r\n"
	"\r\n"
	"Forwarded below.\r\n"
	"--b1\r\n"
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"From: h@example.com\r\n"
	"Subject: inner\r\n"
	"Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
	"\r\n"
	"--b2\r\n"
	"Content-Type: text/plain; charset=us-ascii\r\n"
	"\r\n"
	"one\r\n"
	"two\r\n"
	"--b2\r\n"
	"Content-Type: text/html; charset=us-ascii\r\n"
	"\r\n"
	"<p>one two</p>\r\n"
	"--b2--\r\n"
	"\r\n"
	"--b1--\r\n";

static const char msg_single[] =
	"Subject: one part\r\n"
	"\r\n"
	"only body\r\n";

static const char msg_toplevel_822[] =
	"Content-Type: message/rfc822\r\n"
	"\r\n"
	"Subject: in\r\n"
	"\r\n"
	"x\r\n";

struct sec {
	const char *msg;
	const char *section;   /* "HEADER", "1.2.MIME", "2.TEXT", "" ... */
	const char *want;      /* NULL: the part does not exist */
};

static const struct sec secs[] = {
	{ msg_mixed, "", msg_mixed },
	{ msg_mixed, "HEADER",
	  "From: Carol <carol@example.net>\r\n"
	  "To: Dave <dave@example.net>, eve@example.net\r\n"
	  "Subject: Report\r\n"
	  "MIME-Version: 1.0\r\n"
	  "Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n"
	  "\r\n" },
	{ msg_mixed, "TEXT",
	  "This is a preamble.\r\n"
	  "--XYZ\r\n"
	  "Content-Type: text/plain; charset=utf-8\r\n"
	  "\r\n"
	  "See attached.\r\n"
	  "--XYZ\r\n"
	  "Content-Type: application/pdf; name=\"r.pdf\"\r\n"
	  "Content-Transfer-Encoding: base64\r\n"
	  "Content-Disposition: attachment; filename=\"r.pdf\"\r\n"
	  "\r\n"
	  "JVBERi0xLjQK\r\n"
	  "--XYZ--\r\n"
	  "Epilogue.\r\n" },
	{ msg_mixed, "1", "See attached." },
	{ msg_mixed, "1.MIME", "Content-Type: text/plain; charset=utf-8\r\n\r\n" },
	{ msg_mixed, "2", "JVBERi0xLjQK" },
	{ msg_mixed, "2.MIME",
	  "Content-Type: application/pdf; name=\"r.pdf\"\r\n"
	  "Content-Transfer-Encoding: base64\r\n"
	  "Content-Disposition: attachment; filename=\"r.pdf\"\r\n"
	  "\r\n" },
	{ msg_mixed, "3", NULL },
	{ msg_mixed, "1.1", NULL },
	{ msg_mixed, "2.HEADER", NULL },
	{ msg_mixed, "0", NULL },
	{ msg_mixed, "MIME", NULL },

	{ msg_nested, "1",
	  "--inner\r\n"
	  "Content-Type: text/plain\r\n"
	  "\r\n"
	  "plain\r\n"
	  "--inner\r\n"
	  "Content-Type: text/html\r\n"
	  "\r\n"
	  "<b>html</b>\r\n"
	  "--inner--\r\n" },
	{ msg_nested, "1.MIME", "Content-Type: multipart/alternative; boundary=inner\r\n\r\n" },
	{ msg_nested, "1.1", "plain" },
	{ msg_nested, "1.2", "<b>html</b>" },
	{ msg_nested, "1.2.MIME", "Content-Type: text/html\r\n\r\n" },
	{ msg_nested, "2", "iVBORw0KGgo=" },
	{ msg_nested, "2.MIME",
	  "Content-Type: image/png\r\n"
	  "Content-Transfer-Encoding: base64\r\n"
	  "Content-ID: <img1@example.com>\r\n"
	  "\r\n" },
	{ msg_nested, "2.1", NULL },
	{ msg_nested, "1.3", NULL },

	{ msg_rfc822, "1", "Forwarded below." },
	{ msg_rfc822, "1.MIME", "\r\n" },
	{ msg_rfc822, "2.MIME", "Content-Type: message/rfc822\r\n\r\n" },
	{ msg_rfc822, "2",
	  "From: h@example.com\r\n"
	  "Subject: inner\r\n"
	  "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
	  "\r\n"
	  "--b2\r\n"
	  "Content-Type: text/plain; charset=us-ascii\r\n"
	  "\r\n"
	  "one\r\n"
	  "two\r\n"
	  "--b2\r\n"
	  "Content-Type: text/html; charset=us-ascii\r\n"
	  "\r\n"
	  "<p>one two</p>\r\n"
	  "--b2--\r\n" },
	{ msg_rfc822, "2.HEADER",
	  "From: h@example.com\r\n"
	  "Subject: inner\r\n"
	  "Content-Type: multipart/alternative; boundary=\"b2\"\r\n"
	  "\r\n" },
	{ msg_rfc822, "2.TEXT",
	  "--b2\r\n"
	  "Content-Type: text/plain; charset=us-ascii\r\n"
	  "\r\n"
	  "one\r\n"
	  "two\r\n"
	  "--b2\r\n"
	  "Content-Type: text/html; charset=us-ascii\r\n"
	  "\r\n"
	  "<p>one two</p>\r\n"
	  "--b2--\r\n" },
	{ msg_rfc822, "2.1", "one\r\ntwo" },
	{ msg_rfc822, "2.1.MIME", "Content-Type: text/plain; charset=us-ascii\r\n\r\n" },
	{ msg_rfc822, "2.2", "<p>one two</p>" },
	{ msg_rfc822, "2.3", NULL },
	{ msg_rfc822, "1.HEADER", NULL },
	{ msg_rfc822, "2.1.1", NULL },

	{ msg_single, "1", "only body\r\n" },
	{ msg_single, "1.MIME", "Subject: one part\r\n\r\n" },
	{ msg_single, "TEXT", "only body\r\n" },
	{ msg_single, "2", NULL },
	{ msg_single, "1.1", NULL },
	{ msg_single, "1.HEADER", NULL },

	{ msg_toplevel_822, "1", "Subject: in\r\n\r\nx\r\n" },
	{ msg_toplevel_822, "1.HEADER", "Subject: in\r\n\r\n" },
	{ msg_toplevel_822, "1.TEXT", "x\r\n" },
	{ msg_toplevel_822, "1.1", "x\r\n" },
	{ msg_toplevel_822, "1.2", NULL },
};

/* Split "1.2.MIME" into the path and the section kind. */
static void
parse_section(const char *s, uint32_t *path, size_t *npath, enum mime_sec *what)
{
	*npath = 0;
	*what = MIME_SEC_BODY;
	while (*s != '\0') {
		if (*s >= '0' && *s <= '9') {
			path[(*npath)++] = (uint32_t)strtoul(s, (char **)&s, 10);
		} else {
			if (strcmp(s, "HEADER") == 0)
				*what = MIME_SEC_HEADER;
			else if (strcmp(s, "TEXT") == 0)
				*what = MIME_SEC_TEXT;
			else if (strcmp(s, "MIME") == 0)
				*what = MIME_SEC_MIME;
			else
				fail_msg("bad section %s", s);
			break;
		}
		if (*s == '.')
			s++;
	}
}

static void
check_sections(const struct mime_tree *t, const char *msg)
{
	size_t i;

	for (i = 0; i < sizeof(secs) / sizeof(secs[0]); i++) {
		uint32_t path[8];
		size_t npath;
		enum mime_sec what;
		struct mime_range r;
		int rc;

		if (secs[i].msg != msg)
			continue;
		parse_section(secs[i].section, path, &npath, &what);
		rc = mime_section(t, path, npath, what, &r);
		if (secs[i].want == NULL) {
			if (rc != -1)
				fail_msg("BODY[%s] should not exist", secs[i].section);
			continue;
		}
		if (rc != 0)
			fail_msg("BODY[%s] not found", secs[i].section);
		if (r.len != strlen(secs[i].want) || memcmp(msg + r.off, secs[i].want, r.len) != 0)
			fail_msg("BODY[%s] is [%zu,+%zu) \"%.*s\"", secs[i].section, r.off, r.len,
				(int)r.len, msg + r.off);
	}
}

static void
test_sections(void **state)
{
	static const char *const msgs[] = { msg_mixed, msg_nested, msg_rfc822, msg_single,
		msg_toplevel_822 };
	size_t i;

	(void)state;
	for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
		struct mime_tree t, d;
		struct imapenv r;
		struct err err;

		/* the tree straight from the scanner */
		mime_parse(&t, msgs[i], strlen(msgs[i]));
		check_sections(&t, msgs[i]);
		mime_tree_free(&t);
		/* and as IMAP gets it: decoded from storage */
		imapenv_build(msgs[i], strlen(msgs[i]), &r);
		assert_int_equal(imapenv_tree_decode(r.tree.data, r.tree.len, &d, &err), 0);
		check_sections(&d, msgs[i]);
		mime_tree_free(&d);
		imapenv_free(&r);
	}
}

static void
filter(const char *hdr, const char *const *names, size_t n, bool exclude, const char *want)
{
	struct buf out = BUF_INIT;

	mime_header_filter(hdr, strlen(hdr), names, n, exclude, &out);
	assert_string_equal(buf_cstr(&out), want);
	buf_free(&out);
}

static void
test_header_filter(void **state)
{
	static const char hdr[] =
		"Subject: hi\r\n"
		"X-A: 1\r\n"
		"  cont\r\n"
		"From: a@b\r\n"
		"subject: dup\r\n"
		"\r\n";
	static const char *const subj[] = { "SUBJECT" };
	static const char *const subj_xa[] = { "subject", "x-a" };
	static const char *const xa[] = { "X-a" };
	static const char *const none[] = { "nothing" };
	static const char *const b[] = { "b" };
	static const char *const a[] = { "a" };

	(void)state;
	filter(hdr, subj, 1, false, "Subject: hi\r\nsubject: dup\r\n\r\n");
	filter(hdr, subj_xa, 2, true, "From: a@b\r\n\r\n");
	filter(hdr, xa, 1, false, "X-A: 1\r\n  cont\r\n\r\n");
	filter(hdr, none, 1, false, "\r\n");
	filter(hdr, NULL, 0, true,
		"Subject: hi\r\nX-A: 1\r\n  cont\r\nFrom: a@b\r\nsubject: dup\r\n\r\n");
	/* bare LF kept; blank line added as CRLF */
	filter("A: 1\nB: 2\n\nbody: no\n", b, 1, false, "B: 2\n\r\n");
	/* a last field without a line end gets one */
	filter("A: 1", a, 1, false, "A: 1\r\n\r\n");
	/* lines without a colon are not fields */
	filter("garbage line\r\nA: 1\r\n\r\n", NULL, 0, true, "A: 1\r\n\r\n");
	/* white space before the colon (obsolete syntax) */
	filter("Subject : x\r\n\r\n", subj, 1, false, "Subject : x\r\n\r\n");
}

static void
test_header_next(void **state)
{
	static const char hdr[] = "A: 1\r\nno colon\r\n\tcontinued\r\nB:2\r\n folded\r\n\r\nC: body\r\n";
	struct mime_field f;
	size_t pos = 0;

	(void)state;
	assert_true(mime_header_next(hdr, strlen(hdr), &pos, &f));
	assert_int_equal(f.name_len, 1);
	assert_memory_equal(hdr + f.name_off, "A", 1);
	assert_int_equal(f.value_len, 2);
	assert_memory_equal(hdr + f.value_off, " 1", 2);
	assert_true(mime_header_next(hdr, strlen(hdr), &pos, &f));
	assert_memory_equal(hdr + f.name_off, "B", 1);
	assert_int_equal(f.value_len, strlen("2\r\n folded"));
	assert_memory_equal(hdr + f.value_off, "2\r\n folded", f.value_len);
	assert_false(mime_header_next(hdr, strlen(hdr), &pos, &f));
}

static void
test_unfold(void **state)
{
	struct buf b = BUF_INIT;

	(void)state;
	mime_unfold("  a\r\n b\n\tc\r\nd \r\n ", strlen("  a\r\n b\n\tc\r\nd \r\n "), &b);
	/* a CRLF not followed by white space is not folding: kept */
	assert_string_equal(buf_cstr(&b), "a b\tc\r\nd");
	buf_free(&b);
}

/* Nested boundaries where one is a prefix of the other: the longest
 * active boundary wins. */
static void
test_prefix_boundaries(void **state)
{
	static const char m[] =
		"Content-Type: multipart/mixed; boundary=\"=_a\"\r\n"
		"\r\n"
		"--=_a\r\n"
		"Content-Type: multipart/alternative; boundary=\"=_a1\"\r\n"
		"\r\n"
		"--=_a1\r\n"
		"\r\n"
		"x\r\n"
		"--=_a1--\r\n"
		"--=_a  \r\n"
		"\r\n"
		"y\r\n"
		"--=_a--\r\n";
	struct mime_tree t;
	struct mime_range r;
	uint32_t p11[] = { 1, 1 }, p2[] = { 2 };

	(void)state;
	mime_parse(&t, m, strlen(m));
	assert_int_equal(t.nparts, 4);
	assert_int_equal(t.parts[1].kind, MIME_KIND_MULTIPART);
	assert_int_equal(t.parts[1].nchildren, 1);
	assert_int_equal(mime_section(&t, p11, 2, MIME_SEC_BODY, &r), 0);
	assert_int_equal(r.len, 1);
	assert_memory_equal(m + r.off, "x", 1);
	/* transport padding after the delimiter is allowed */
	assert_int_equal(mime_section(&t, p2, 1, MIME_SEC_BODY, &r), 0);
	assert_int_equal(r.len, 1);
	assert_memory_equal(m + r.off, "y", 1);
	assert_false(t.parts[0].flags & MIME_PF_TRUNCATED);
	mime_tree_free(&t);
}

/* A part whose header runs into the next delimiter without a blank line:
 * the CRLF before the delimiter belongs to the delimiter. */
static void
test_header_cut_by_delimiter(void **state)
{
	static const char m[] =
		"Content-Type: multipart/mixed; boundary=b\r\n"
		"\r\n"
		"--b\r\n"
		"Content-Type: text/plain\r\n"
		"--b\r\n"
		"Content-Type: message/rfc822\r\n"
		"--b--\r\n";
	struct mime_tree t;
	struct mime_range r;
	uint32_t p1[] = { 1 }, p2[] = { 2 };
	struct imapenv e;

	(void)state;
	mime_parse(&t, m, strlen(m));
	assert_int_equal(mime_section(&t, p1, 1, MIME_SEC_MIME, &r), 0);
	assert_int_equal(r.len, strlen("Content-Type: text/plain"));
	assert_memory_equal(m + r.off, "Content-Type: text/plain", r.len);
	assert_int_equal(mime_section(&t, p1, 1, MIME_SEC_BODY, &r), 0);
	assert_int_equal(r.len, 0);
	/* an empty message/rfc822 still has its (empty) message */
	assert_int_equal(t.parts[2].kind, MIME_KIND_MESSAGE);
	assert_int_equal(mime_section(&t, p2, 1, MIME_SEC_HEADER, &r), 0);
	assert_int_equal(r.len, 0);
	mime_tree_free(&t);
	imapenv_build(m, strlen(m), &e);
	assert_string_equal(buf_cstr(&e.bodystructure),
		"((\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)"
		"(\"MESSAGE\" \"RFC822\" NIL NIL NIL \"7BIT\" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL) "
		"(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL) 0 "
		"NIL NIL NIL NIL) \"MIXED\" (\"BOUNDARY\" \"b\") NIL NIL NIL)");
	imapenv_free(&e);
}

/* An outer delimiter ends an inner multipart that never closed. */
static void
test_outer_delimiter_closes_inner(void **state)
{
	static const char m[] =
		"Content-Type: multipart/mixed; boundary=out\r\n"
		"\r\n"
		"--out\r\n"
		"Content-Type: multipart/mixed; boundary=in\r\n"
		"\r\n"
		"--in\r\n"
		"\r\n"
		"a\r\n"
		"--out\r\n"
		"\r\n"
		"b\r\n"
		"--out--\r\n";
	struct mime_tree t;
	struct mime_range r;
	uint32_t p11[] = { 1, 1 }, p2[] = { 2 };

	(void)state;
	mime_parse(&t, m, strlen(m));
	assert_true(t.parts[1].flags & MIME_PF_TRUNCATED);
	assert_false(t.parts[0].flags & MIME_PF_TRUNCATED);
	assert_int_equal(mime_section(&t, p11, 2, MIME_SEC_BODY, &r), 0);
	assert_int_equal(r.len, 1);
	assert_memory_equal(m + r.off, "a", 1);
	assert_int_equal(mime_section(&t, p2, 1, MIME_SEC_BODY, &r), 0);
	assert_int_equal(r.len, 1);
	assert_memory_equal(m + r.off, "b", 1);
	mime_tree_free(&t);
}

static void
test_parts_cap(void **state)
{
	struct buf m = BUF_INIT;
	struct mime_tree t;
	struct imapenv e;
	struct mime_tree d;
	struct err err;
	int i;

	(void)state;
	buf_puts(&m, "Content-Type: multipart/mixed; boundary=x\r\n\r\n");
	for (i = 0; i < 20000; i++)
		buf_puts(&m, "--x\r\n\r\np\r\n");
	buf_puts(&m, "--x--\r\n");
	mime_parse(&t, m.data, m.len);
	assert_int_equal(t.nparts, MIME_MAX_PARTS);
	assert_true(t.parts[0].flags & MIME_PF_CAPPED);
	assert_false(t.parts[0].flags & MIME_PF_TRUNCATED);
	assert_int_equal(t.parts[0].body_end, m.len);
	mime_tree_free(&t);
	imapenv_build(m.data, m.len, &e);
	assert_int_equal(imapenv_tree_decode(e.tree.data, e.tree.len, &d, &err), 0);
	assert_int_equal(d.nparts, MIME_MAX_PARTS);
	mime_tree_free(&d);
	imapenv_free(&e);
	buf_free(&m);
}

/* Structured-value parsing survives junk and comments. */
static void
test_ctype_params(void **state)
{
	static const char v[] = " (c) Text / Plain (c2) ; junk ; charset = \"a\\\"b\" ; ;x=1;name=a b;=;q=\"open";
	struct mime_ctype ct;
	struct mime_param p;
	struct buf val = BUF_INIT;
	size_t pos;

	(void)state;
	assert_true(mime_ctype_parse(v, strlen(v), &ct));
	assert_true(mime_eq(ct.type, ct.type_len, "text"));
	assert_true(mime_eq(ct.subtype, ct.subtype_len, "PLAIN"));
	pos = ct.params_off;
	assert_true(mime_param_next(v, strlen(v), &pos, &p));
	assert_true(mime_eq(p.name, p.name_len, "charset"));
	mime_param_value(&p, &val);
	assert_string_equal(buf_cstr(&val), "a\"b");
	assert_true(mime_param_next(v, strlen(v), &pos, &p));
	assert_true(mime_eq(p.name, p.name_len, "x"));
	assert_true(mime_param_next(v, strlen(v), &pos, &p));
	assert_true(mime_eq(p.name, p.name_len, "name"));
	buf_reset(&val);
	mime_param_value(&p, &val);
	assert_string_equal(buf_cstr(&val), "a");
	assert_true(mime_param_next(v, strlen(v), &pos, &p));
	assert_true(mime_eq(p.name, p.name_len, "q"));
	buf_reset(&val);
	mime_param_value(&p, &val);
	assert_string_equal(buf_cstr(&val), "open");
	assert_false(mime_param_next(v, strlen(v), &pos, &p));
	assert_false(mime_ctype_parse("text", 4, &ct));
	assert_false(mime_ctype_parse("/plain", 6, &ct));
	assert_false(mime_ctype_parse("", 0, &ct));
	buf_free(&val);
}

/* Build one of several 4 KiB message shapes. */
static void
gen_message(struct buf *m, unsigned i)
{
	size_t target = 4096;

	buf_reset(m);
	buf_printf(m, "Return-Path: <sender%u@example.com>\r\n"
		"Received: from mx.example.com (mx.example.com [192.0.2.%u]) by castor; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
		"From: \"Sender %u\" <sender%u@example.com>\r\n"
		"To: Rcpt <rcpt@example.org>, other%u@example.org\r\n"
		"Subject: =?UTF-8?Q?message_number_%u?=\r\n"
		"Date: Mon, 1 Jan 2024 00:00:%02u +0000\r\n"
		"Message-ID: <%u@example.com>\r\n"
		"MIME-Version: 1.0\r\n", i, i % 250, i, i, i, i, i % 60, i);
	if (i % 3 == 0) {
		buf_puts(m, "Content-Type: text/plain; charset=utf-8\r\n\r\n");
		while (m->len < target - 60)
			buf_puts(m, "The quick brown fox jumps over the lazy dog 0123456789.\r\n");
		return;
	}
	buf_puts(m, "Content-Type: multipart/mixed; boundary=\"=_outer\"\r\n\r\n"
		"This is a multi-part message in MIME format.\r\n"
		"--=_outer\r\nContent-Type: multipart/alternative; boundary=\"=_alt\"\r\n\r\n"
		"--=_alt\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n");
	while (m->len < 1500)
		buf_puts(m, "Hello there, this is the plain text alternative =E2=9C=93.\r\n");
	buf_puts(m, "--=_alt\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n");
	while (m->len < 2500)
		buf_puts(m, "<p>Hello there, this is the HTML alternative.</p>\r\n");
	buf_puts(m, "</body></html>\r\n--=_alt--\r\n"
		"--=_outer\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\n"
		"Content-Transfer-Encoding: base64\r\n"
		"Content-Disposition: attachment; filename=\"data.bin\"\r\n\r\n");
	while (m->len < target - 80)
		buf_puts(m, "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2\r\n");
	buf_puts(m, "--=_outer--\r\n");
}

static double
now(void)
{
	struct timespec ts;

	/* CPU time: the machine is shared, wall time says little */
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* 10,000 messages of about 4 KiB: parse only, and the whole append-time
 * work (parse + ENVELOPE + BODYSTRUCTURE + BODY + tree).  Printed as TAP
 * comments; timing is never asserted. */
/* A message in a file mapping declared with mime_release_map: the
 * scanners give pages back as they pass them (MADV_DONTNEED), and the
 * tree and line counts are the same as without; the count crosses many
 * MIME_RELEASE_STEP boundaries, with a multipart so the delimiter search
 * runs over the whole body too. */
static void
test_release_map(void **state)
{
	struct buf m = BUF_INIT;
	struct mime_tree t1, t2;
	char path[] = "/tmp/test_mime_XXXXXX";
	size_t lines1, lines2;
	int fd;
	char *map;

	(void)state;
	buf_puts(&m, "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\n");
	while (m.len < 3 * MIME_RELEASE_STEP + 12345)
		buf_puts(&m, "line of text without a delimiter in it, 3 MiB of them\r\n");
	buf_puts(&m, "\r\n--b\r\nContent-Type: text/plain\r\n\r\nsecond\r\n--b--\r\n");
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(write(fd, m.data, m.len), (ssize_t)m.len);
	map = mmap(NULL, m.len, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	mime_parse(&t1, m.data, m.len);
	lines1 = mime_count_lf(m.data, m.len);
	mime_release_map(map, m.len);
	mime_parse(&t2, map, m.len);
	lines2 = mime_count_lf(map, m.len);
	mime_release_map(NULL, 0);
	assert_int_equal(lines1, lines2);
	assert_int_equal(t1.nparts, t2.nparts);
	assert_int_equal(t1.nparts, 3);
	for (uint32_t i = 0; i < t1.nparts; i++) {
		assert_int_equal(t1.parts[i].body_start, t2.parts[i].body_start);
		assert_int_equal(t1.parts[i].body_end, t2.parts[i].body_end);
	}
	assert_memory_equal(map, m.data, m.len);
	mime_tree_free(&t1);
	mime_tree_free(&t2);
	munmap(map, m.len);
	close(fd);
	buf_free(&m);
}

static void
test_speed(void **state)
{
	enum { N = 10000 };
	struct buf *msgs = xcalloc(N, sizeof(*msgs));
	size_t total = 0, parts = 0, text = 0;
	double t0, t1, t2, t3;
	unsigned i;

	(void)state;
	for (i = 0; i < N; i++) {
		gen_message(&msgs[i], i);
		total += msgs[i].len;
	}
	t0 = now();
	for (i = 0; i < N; i++) {
		struct mime_tree t;

		mime_parse(&t, msgs[i].data, msgs[i].len);
		parts += t.nparts;
		mime_tree_free(&t);
	}
	t1 = now();
	for (i = 0; i < N; i++) {
		struct imapenv e;

		imapenv_build(msgs[i].data, msgs[i].len, &e);
		assert_true(e.bodystructure.len > 0);
		imapenv_free(&e);
	}
	t2 = now();
	for (i = 0; i < N; i++) {
		struct buf out = BUF_INIT;

		mimedecode_text(msgs[i].data, msgs[i].len, true, &out);
		text += out.len;
		buf_free(&out);
	}
	t3 = now();
	printf("# mime speed: %d messages, %zu octets (avg %zu), %zu parts: "
		"mime_parse %.3f CPU s (%.0f msg/s), imapenv_build %.3f CPU s (%.0f msg/s)\n",
		N, total, total / N, parts, t1 - t0, N / (t1 - t0), t2 - t1, N / (t2 - t1));
	printf("# mime speed: mimedecode_text (SEARCH TEXT) %.3f CPU s (%.0f msg/s), %zu octets of text\n",
		t3 - t2, N / (t3 - t2), text);
	for (i = 0; i < N; i++)
		buf_free(&msgs[i]);
	free(msgs);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sections),
		cmocka_unit_test(test_header_filter),
		cmocka_unit_test(test_header_next),
		cmocka_unit_test(test_unfold),
		cmocka_unit_test(test_prefix_boundaries),
		cmocka_unit_test(test_header_cut_by_delimiter),
		cmocka_unit_test(test_outer_delimiter_closes_inner),
		cmocka_unit_test(test_parts_cap),
		cmocka_unit_test(test_ctype_params),
		cmocka_unit_test(test_release_map),
		cmocka_unit_test(test_speed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
