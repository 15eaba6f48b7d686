/* test_imap_thread.c - unit tests for imap/imap_thread.c: base subjects
 * (RFC 5256 2.1), sent dates, ENVELOPE fields, message-ids, and the
 * REFERENCES / ORDEREDSUBJECT threads on small hand-made mailboxes
 * (dummies, loops, duplicate ids, one byte of input at a time for the
 * envelope reader). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_thread.h"
#include "lib/buf.h"

static void
base(const char *raw, const char *want, bool want_refwd)
{
	struct buf b = BUF_INIT;
	bool refwd = imap_thread_base_subject(raw, strlen(raw), &b);

	assert_string_equal(buf_cstr(&b), want);
	assert_int_equal(refwd, want_refwd);
	buf_free(&b);
}

static void
test_base_subject(void **state)
{
	(void)state;
	base("Meeting", "meeting", false);
	base("Re: Meeting", "meeting", true);
	base("RE:re:Fw: a", "a", true);
	base("Fwd: [list] Re: x", "x", true);
	base("[list] x", "x", false);
	base("[list]", "[list]", false);
	base("[a][b] Re: c", "c", true);
	base("Re[2]:  hello \t  world ", "hello world", true);
	base("[fwd: hello]", "hello", true);
	base("hello (fwd)", "hello", true);
	base("hello (FWD) (fwd)  ", "hello", true);
	base("[fwd: Re: x] (fwd)", "x", true);
	base("[list] Fwd: Meeting (fwd)", "meeting", true);
	base("Rebus: x", "rebus: x", false);
	base("Re", "re", false);
	base("Re:", "", true);
	base("   ", "", false);
	base("", "", false);
	base("=?UTF-8?Q?Caf=C3=A9?= plans", "caf\xc3\xa9 plans", false);
	base("Re: =?UTF-8?B?w4lsaXNl?=", "\xc3\x89lise", true);
	base("[fwd: =?UTF-8?Q?Caf=C3=A9?= plans]", "caf\xc3\xa9 plans", true);
	base("Re: [x", "[x", true);
	base("Subject\r\n folded", "subject folded", false);
}

static void
date(const char *s, bool ok, int64_t want)
{
	int64_t t = 0;

	assert_int_equal(imap_thread_sentdate(s, strlen(s), &t), ok);
	if (ok)
		assert_int_equal(t, want);
}

static void
test_sentdate(void **state)
{
	(void)state;
	date("Tue, 4 Mar 2025 10:00:00 +0100", true, 1741078800);
	date("4 Mar 2025 09:00:00 +0000", true, 1741078800);
	date("Tue, 04 Mar 2025 10:00 EST", true, 1741100400);
	date("4 Mar 25 09:00:00 GMT", true, 1741078800);
	date(" (comment) Fri, 31 Dec 1999 23:59:59 -0000", true, 946684799);
	date("Fri, 31 Dec 1999 23:59:59", true, 946684799);
	date("garbage", false, 0);
	date("", false, 0);
	date("30 Feb 2025 00:00:00 +0000", false, 0);
	date("4 Mar 2025", false, 0);
	date("4 Foo 2025 10:00:00 +0000", false, 0);
}

static void
test_msgid(void **state)
{
	const char *s = "junk <a@b> < c@d> <> <x@y>z <e@f";
	const char *id;
	size_t len, pos = 0;

	(void)state;
	assert_true(imap_thread_msgid_next(s, strlen(s), &pos, &id, &len));
	assert_int_equal(len, 3);
	assert_memory_equal(id, "a@b", 3);
	assert_true(imap_thread_msgid_next(s, strlen(s), &pos, &id, &len));
	assert_memory_equal(id, "x@y", 3);
	assert_false(imap_thread_msgid_next(s, strlen(s), &pos, &id, &len));
}

static const char ENV[] =
	"(\"Tue, 4 Mar 2025\" \"Re: \\\"x\\\"\" ((\"Ann\" NIL \"ann\" \"a.org\")) "
	"((\"Ann\" NIL \"ann\" \"a.org\")) ((\"Ann\" NIL \"ann\" \"a.org\")) "
	"((NIL NIL \"grp\" NIL)(NIL NIL \"bob\" \"b.org\")(NIL NIL NIL NIL)) NIL NIL "
	"\"<1@t>\" {5}\r\n<2@t>)";

static void
test_envelope(void **state)
{
	struct imap_env e;

	(void)state;
	assert_int_equal(imap_env_parse(ENV, strlen(ENV), &e), 0);
	assert_string_equal(e.date, "Tue, 4 Mar 2025");
	assert_string_equal(e.subject, "Re: \"x\"");
	assert_string_equal(e.from.name, "Ann");
	assert_string_equal(e.from.mailbox, "ann");
	assert_string_equal(e.to.mailbox, "bob");
	assert_null(e.to.name);
	assert_null(e.cc.mailbox);
	assert_string_equal(e.in_reply_to, "<1@t>");
	assert_string_equal(e.message_id, "<2@t>");
	imap_env_free(&e);
	/* every proper prefix is refused and leaves all fields NIL */
	for (size_t n = 0; n < strlen(ENV); n++) {
		char *p = malloc(n + 1);

		memcpy(p, ENV, n);
		p[n] = '\0';
		assert_int_equal(imap_env_parse(p, n, &e), -1);
		assert_null(e.date);
		assert_null(e.subject);
		assert_null(e.from.mailbox);
		assert_null(e.message_id);
		imap_env_free(&e);
		free(p);
	}
}

struct tmsg {
	const char *subject, *msgid, *refs, *irt;
	int64_t sent;
};

static void
thread(const struct tmsg *tm, size_t n, bool refs, const char *want)
{
	struct imap_thread_msg *m = calloc(n + 1, sizeof(*m));
	struct buf *subj = calloc(n + 1, sizeof(*subj)), out = BUF_INIT;

	for (size_t i = 0; i < n; i++) {
		m[i].num = (uint32_t)i + 1;
		m[i].sent = tm[i].sent;
		m[i].refwd = imap_thread_base_subject(tm[i].subject, strlen(tm[i].subject), &subj[i]);
		m[i].subject = buf_cstr(&subj[i]);
		m[i].subject_len = subj[i].len;
		m[i].msgid = tm[i].msgid;
		m[i].msgid_len = tm[i].msgid ? strlen(tm[i].msgid) : 0;
		m[i].refs = tm[i].refs;
		m[i].refs_len = tm[i].refs ? strlen(tm[i].refs) : 0;
		m[i].irt = tm[i].irt;
		m[i].irt_len = tm[i].irt ? strlen(tm[i].irt) : 0;
	}
	if (refs)
		imap_thread_references(m, n, &out);
	else
		imap_thread_orderedsubject(m, n, &out);
	assert_string_equal(buf_cstr(&out), want);
	for (size_t i = 0; i < n; i++)
		buf_free(&subj[i]);
	buf_free(&out);
	free(subj);
	free(m);
}

static void
test_references(void **state)
{
	(void)state;
	/* a chain by References, one by In-Reply-To only, a missing parent */
	static const struct tmsg a[] = {
		{ "a", "<1>", NULL, NULL, 10 },
		{ "Re: a", "<2>", "<1>", NULL, 20 },
		{ "Re: a", "<3>", "<1> <2>", NULL, 30 },
		{ "Re: a", "<4>", NULL, "<1>", 25 },
		{ "b", "<5>", "<gone>", NULL, 5 },
	};
	thread(a, 5, true, "(5)(1 (2 3)(4))");
	/* two children of a missing parent: a dummy at the root */
	static const struct tmsg b[] = {
		{ "x", "<1>", "<gone>", NULL, 10 },
		{ "y", "<2>", "<gone>", NULL, 5 },
	};
	thread(b, 2, true, "((2)(1))");
	/* a loop: 1 says its parent is 2, 2 says its parent is 1 */
	static const struct tmsg c[] = {
		{ "p", "<1>", "<2>", NULL, 10 },
		{ "q", "<2>", "<1>", NULL, 20 },
	};
	thread(c, 2, true, "(2 1)");
	/* a duplicate id counts as none; a reply goes to the first */
	static const struct tmsg d[] = {
		{ "p", "<1>", NULL, NULL, 10 },
		{ "q", "<1>", NULL, NULL, 20 },
		{ "r", "<3>", "<1>", NULL, 30 },
	};
	thread(d, 3, true, "(1 3)(2)");
	/* the same base subject gathers roots: under the original when the
	 * other is a reply, else under a new dummy; equal dates by sequence */
	static const struct tmsg e[] = {
		{ "Re: s", "<1>", NULL, NULL, 10 },
		{ "s", "<2>", NULL, NULL, 20 },
		{ "t", "<3>", NULL, NULL, 30 },
		{ "t", "<4>", NULL, NULL, 30 },
		{ "", "<5>", NULL, NULL, 1 },
	};
	thread(e, 5, true, "(5)(2 1)((3)(4))");
	thread(e, 0, true, "");
}

static void
test_orderedsubject(void **state)
{
	(void)state;
	static const struct tmsg a[] = {
		{ "Re: s", NULL, NULL, NULL, 40 },
		{ "s", NULL, NULL, NULL, 20 },
		{ "t", NULL, NULL, NULL, 30 },
		{ "[x] s", NULL, NULL, NULL, 20 },
		{ "u", NULL, NULL, NULL, 5 },
		{ "T", NULL, NULL, NULL, 50 },
	};
	thread(a, 6, false, "(5)(2 (4)(1))(3 6)");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_base_subject),
		cmocka_unit_test(test_sentdate),
		cmocka_unit_test(test_msgid),
		cmocka_unit_test(test_envelope),
		cmocka_unit_test(test_references),
		cmocka_unit_test(test_orderedsubject),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
