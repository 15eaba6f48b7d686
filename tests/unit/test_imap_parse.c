/* test_imap_parse.c - unit tests for imap/imap_parse.c: every command's
 * arguments, literals, sequence sets, search keys, fetch items and their
 * echo names, the literal-marker scanner, dates, and rejection of bad
 * input (every prefix of a valid command, byte by byte). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_parse.h"
#include "lib/err.h"

static int
parse(const char *s, struct imap_cmd *c)
{
	struct err err = { 0 };
	int rc = imap_parse_command(s, strlen(s), c, &err);

	if (rc < 0)
		print_message("# parse error: %s\n", err.msg);
	return rc;
}

static void
expect_bad(const char *s, const char *why)
{
	struct imap_cmd c;
	struct err err = { 0 };

	if (imap_parse_command(s, strlen(s), &c, &err) == 0)
		fail_msg("accepted \"%s\"", s);
	assert_int_equal(err.kind, ERR_INVALID);
	if (why != NULL && strstr(err.msg, why) == NULL)
		fail_msg("\"%s\": error \"%s\" does not say \"%s\"", s, err.msg, why);
	imap_cmd_free(&c);
}

static void
test_simple(void **state)
{
	struct imap_cmd c;

	(void)state;
	assert_int_equal(parse("a1 CAPABILITY", &c), 0);
	assert_string_equal(c.tag, "a1");
	assert_int_equal(c.kind, IMAP_CMD_CAPABILITY);
	imap_cmd_free(&c);
	assert_int_equal(parse("x.y noop", &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_NOOP);
	imap_cmd_free(&c);
	assert_int_equal(parse("t uid expunge 1:5,7", &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_UID_EXPUNGE);
	assert_true(c.uid);
	assert_string_equal(c.name, "UID EXPUNGE");
	assert_int_equal(c.u.expunge.n, 2);
	assert_int_equal(c.u.expunge.r[0].lo, 1);
	assert_int_equal(c.u.expunge.r[0].hi, 5);
	imap_cmd_free(&c);
	assert_int_equal(parse("t ENABLE CONDSTORE QRESYNC", &c), 0);
	assert_int_equal(c.u.enable.ncaps, 2);
	assert_string_equal(c.u.enable.caps[1], "QRESYNC");
	imap_cmd_free(&c);
	assert_int_equal(parse("t ID (\"name\" \"mutt\" \"version\" NIL)", &c), 0);
	assert_int_equal(c.u.id.nkv, 4);
	assert_string_equal(c.u.id.kv[1], "mutt");
	assert_null(c.u.id.kv[3]);
	imap_cmd_free(&c);
	assert_int_equal(parse("t ID NIL", &c), 0);
	imap_cmd_free(&c);
	assert_int_equal(parse("z compress deflate", &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_COMPRESS);
	assert_string_equal(c.name, "COMPRESS");
	assert_string_equal(c.u.compress.mech, "deflate");
	imap_cmd_free(&c);
	expect_bad("z COMPRESS", NULL);
	expect_bad("z COMPRESS DEFLATE x", NULL);
	expect_bad("z COMPRESS \"DEFLATE\"", NULL);
	assert_int_equal(parse("t AUTHENTICATE PLAIN AGFsaWNlAHNlY3JldA==", &c), 0);
	assert_string_equal(c.u.auth.mech, "PLAIN");
	assert_string_equal(c.u.auth.ir, "AGFsaWNlAHNlY3JldA==");
	imap_cmd_free(&c);
	assert_int_equal(parse("t AUTHENTICATE PLAIN", &c), 0);
	assert_null(c.u.auth.ir);
	imap_cmd_free(&c);
}

static void
test_login_strings(void **state)
{
	struct imap_cmd c;
	const char lit[] = "t LOGIN {5}\r\nal\"ce \"p\\\\w\\\"d\"";

	(void)state;
	assert_int_equal(parse("t LOGIN alice secret", &c), 0);
	assert_string_equal(c.u.login.user.s, "alice");
	assert_string_equal(c.u.login.pass.s, "secret");
	imap_cmd_free(&c);
	assert_int_equal(parse(lit, &c), 0);
	assert_string_equal(c.u.login.user.s, "al\"ce");
	assert_string_equal(c.u.login.pass.s, "p\\w\"d");
	imap_cmd_free(&c);
	/* LITERAL+ and a literal holding a NUL */
	{
		const char nul[] = "t LOGIN {3+}\r\na\0b x";
		struct err err;

		assert_int_equal(imap_parse_command(nul, sizeof(nul) - 1, &c, &err), 0);
		assert_int_equal(c.u.login.user.len, 3);
		assert_memory_equal(c.u.login.user.s, "a\0b", 3);
		imap_cmd_free(&c);
	}
	expect_bad("t LOGIN {10}\r\nshort", "literal shorter");
	expect_bad("t LOGIN {3}x\r\nabc y", "must end its line");
	expect_bad("t LOGIN \"a\\x\" y", "bad escape");
	expect_bad("t LOGIN \"unterminated", "unterminated");
	expect_bad("t LOGIN alice", "expected a space");
}

static void
test_errors(void **state)
{
	(void)state;
	expect_bad("", "tag");
	expect_bad("+x NOOP", "tag");
	expect_bad("a", "missing command");
	expect_bad("a FROB", "unknown command");
	expect_bad("a NOOPX", "unknown command");
	expect_bad("a NOOP extra", "unexpected characters");
	expect_bad("a UID FROB 1", "unknown UID command");
	expect_bad("a FETCH 0 FLAGS", "non-zero");
	expect_bad("a FETCH 1: FLAGS", "sequence set");
	expect_bad("a FETCH 1,,2 FLAGS", "sequence set");
	expect_bad("a FETCH 99999999999 FLAGS", "too large");
	expect_bad("a FETCH 1 (FLAGS", "expected ')'");
	expect_bad("a FETCH 1 FLAGZ", "unknown fetch item");
	expect_bad("a FETCH 1 BODY[0]", "section");
	expect_bad("a FETCH 1 BODY[1.]", "section");
	expect_bad("a FETCH 1 BODY[MIME]", "section");
	expect_bad("a FETCH 1 BODY[]<5>", "partial");
	expect_bad("a FETCH 1 BODY[]<1.0>", "non-zero");
	expect_bad("a FETCH 1 BODY.PEEK", "section");
	expect_bad("a FETCH 1 FLAGS (VANISHED)", "CHANGEDSINCE");
	expect_bad("a SEARCH", "expected a space");
	expect_bad("a SEARCH ", "unknown search key");
	expect_bad("a SEARCH FROBNICATE", "unknown search key");
	expect_bad("a SEARCH BEFORE 32-Jan-2020", "bad date");
	expect_bad("a SEARCH BEFORE 29-Feb-2021", "bad date");
	expect_bad("a SEARCH (ALL", "expected ')'");
	expect_bad("a SEARCH OR ALL", "expected a space");
	expect_bad("a STORE 1 FLAGS.LOUD (\\Seen)", "FLAGS");
	expect_bad("a STORE 1 XFLAGS (\\Seen)", "FLAGS");
	expect_bad("a APPEND INBOX (\\Seen) hello", "literal");
	expect_bad("a APPEND INBOX \"31-Jun-2020 00:00:00 +0000\" {1}\r\nx", "date-time");
	expect_bad("a LIST (BOGUS) \"\" *", "selection option");
	expect_bad("a LIST (RECURSIVEMATCH) \"\" *", "RECURSIVEMATCH");
	expect_bad("a STATUS INBOX (MESSAGES BOGUS)", "STATUS item");
	expect_bad("a SELECT INBOX (BOGUS)", "SELECT parameter");
	expect_bad("a CREATE x (USE (Sent))", "special-use");
}

static void
test_depth(void **state)
{
	char buf[4096];
	size_t n = 0;

	(void)state;
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "a SEARCH ");
	for (int i = 0; i < IMAP_PARSE_MAX_DEPTH + 2; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "NOT ");
	snprintf(buf + n, sizeof(buf) - n, "ALL");
	expect_bad(buf, "nested too deeply");
	n = (size_t)snprintf(buf, sizeof(buf), "a SEARCH ");
	for (int i = 0; i < IMAP_PARSE_MAX_DEPTH + 2; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "(");
	expect_bad(buf, "nested too deeply");
}

static void
test_fetch(void **state)
{
	struct imap_cmd c;
	const struct imap_fetch_att *a;

	(void)state;
	assert_int_equal(parse("f UID FETCH 1:*,7 (FLAGS BODY.PEEK[1.2.HEADER.FIELDS (From \"X-A b\")]<10.20> "
		"RFC822.SIZE BODY[] body[text] BODY[2.MIME] BODYSTRUCTURE BODY ENVELOPE MODSEQ UID "
		"INTERNALDATE RFC822 RFC822.HEADER RFC822.TEXT BODY[3.HEADER.FIELDS.NOT (to cc)]) "
		"(CHANGEDSINCE 12345 VANISHED)", &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_FETCH);
	assert_true(c.uid);
	assert_int_equal(c.u.fetch.set.n, 2);
	assert_int_equal(c.u.fetch.set.r[0].lo, 1);
	assert_int_equal(c.u.fetch.set.r[0].hi, IMAP_STAR);
	assert_int_equal(c.u.fetch.natts, 16);
	assert_true(c.u.fetch.has_changedsince);
	assert_int_equal(c.u.fetch.changedsince, 12345);
	assert_true(c.u.fetch.vanished);
	a = &c.u.fetch.atts[1];
	assert_int_equal(a->kind, IMAP_FA_SECTION);
	assert_true(a->peek);
	assert_int_equal(a->sec, IMAP_SEC_HEADER_FIELDS);
	assert_int_equal(a->npath, 2);
	assert_int_equal(a->path[0], 1);
	assert_int_equal(a->path[1], 2);
	assert_int_equal(a->nfields, 2);
	assert_string_equal(a->fields[0], "From");
	assert_string_equal(a->fields[1], "X-A b");
	assert_true(a->partial);
	assert_int_equal(a->p_off, 10);
	assert_int_equal(a->p_len, 20);
	assert_string_equal(a->name, "BODY[1.2.HEADER.FIELDS (From \"X-A b\")]<10>");
	a = &c.u.fetch.atts[3];
	assert_false(a->peek);
	assert_int_equal(a->npath, 0);
	assert_int_equal(a->sec, IMAP_SEC_BODY);
	assert_string_equal(a->name, "BODY[]");
	assert_string_equal(c.u.fetch.atts[4].name, "BODY[TEXT]");
	assert_int_equal(c.u.fetch.atts[4].sec, IMAP_SEC_TEXT);
	assert_int_equal(c.u.fetch.atts[5].sec, IMAP_SEC_MIME);
	assert_string_equal(c.u.fetch.atts[5].name, "BODY[2.MIME]");
	assert_int_equal(c.u.fetch.atts[6].kind, IMAP_FA_BODYSTRUCTURE);
	assert_int_equal(c.u.fetch.atts[7].kind, IMAP_FA_BODY);
	assert_int_equal(c.u.fetch.atts[12].kind, IMAP_FA_RFC822);
	assert_int_equal(c.u.fetch.atts[13].kind, IMAP_FA_RFC822_HEADER);
	assert_int_equal(c.u.fetch.atts[14].kind, IMAP_FA_RFC822_TEXT);
	assert_int_equal(c.u.fetch.atts[15].sec, IMAP_SEC_HEADER_FIELDS_NOT);
	assert_string_equal(c.u.fetch.atts[15].name, "BODY[3.HEADER.FIELDS.NOT (to cc)]");
	imap_cmd_free(&c);

	assert_int_equal(parse("f FETCH 2 FULL", &c), 0);
	assert_int_equal(c.u.fetch.natts, 5);
	assert_int_equal(c.u.fetch.atts[4].kind, IMAP_FA_BODY);
	imap_cmd_free(&c);
	assert_int_equal(parse("f FETCH 2 ALL", &c), 0);
	assert_int_equal(c.u.fetch.natts, 4);
	assert_int_equal(c.u.fetch.atts[3].kind, IMAP_FA_ENVELOPE);
	imap_cmd_free(&c);
	assert_int_equal(parse("f FETCH 2 fast", &c), 0);
	assert_int_equal(c.u.fetch.natts, 3);
	imap_cmd_free(&c);
	assert_int_equal(parse("f FETCH 2 BODY[1]", &c), 0);
	assert_int_equal(c.u.fetch.natts, 1);
	assert_int_equal(c.u.fetch.atts[0].npath, 1);
	imap_cmd_free(&c);
}

static void
test_search(void **state)
{
	struct imap_cmd c;
	const struct imap_search_key *k;

	(void)state;
	assert_int_equal(parse("s UID SEARCH RETURN (MIN COUNT) CHARSET UTF-8 OR (FROM alice SEEN) "
		"NOT SUBJECT {4+}\r\nh\xc3\xa9j 1:3 UID 5:* SINCE 1-Feb-1994 HEADER X-Spam yes "
		"KEYWORD $Junk LARGER 100 MODSEQ \"/flags/\\\\draft\" all 620162338", &c), 0);
	assert_true(c.uid);
	assert_true(c.u.search.esearch);
	assert_int_equal(c.u.search.ret, IMAP_SRET_MIN | IMAP_SRET_COUNT);
	assert_string_equal(c.u.search.charset, "UTF-8");
	assert_true(c.u.search.has_modseq);
	k = c.u.search.key;
	assert_int_equal(k->kind, IMAP_SK_AND);
	assert_int_equal(k->nkids, 8);
	assert_int_equal(k->kids[0]->kind, IMAP_SK_OR);
	assert_int_equal(k->kids[0]->kids[0]->kind, IMAP_SK_AND);
	assert_int_equal(k->kids[0]->kids[0]->kids[0]->kind, IMAP_SK_FROM);
	assert_string_equal(k->kids[0]->kids[0]->kids[0]->str.s, "alice");
	assert_int_equal(k->kids[0]->kids[1]->kind, IMAP_SK_NOT);
	assert_int_equal(k->kids[0]->kids[1]->kids[0]->kind, IMAP_SK_SUBJECT);
	assert_string_equal(k->kids[0]->kids[1]->kids[0]->str.s, "h\xc3\xa9j");
	assert_int_equal(k->kids[1]->kind, IMAP_SK_SEQSET);
	assert_int_equal(k->kids[2]->kind, IMAP_SK_UID);
	assert_int_equal(k->kids[2]->set.r[0].hi, IMAP_STAR);
	assert_int_equal(k->kids[3]->kind, IMAP_SK_SINCE);
	assert_int_equal(k->kids[3]->date, 8797);   /* 1994-02-01 */
	assert_int_equal(k->kids[4]->kind, IMAP_SK_HEADER);
	assert_string_equal(k->kids[4]->field, "X-Spam");
	assert_int_equal(k->kids[5]->kind, IMAP_SK_KEYWORD);
	assert_int_equal(k->kids[6]->num, 100);
	assert_int_equal(k->kids[7]->kind, IMAP_SK_MODSEQ);
	assert_int_equal(k->kids[7]->num, 620162338);
	imap_cmd_free(&c);

	assert_int_equal(parse("s SEARCH RETURN () ALL", &c), 0);
	assert_int_equal(c.u.search.ret, IMAP_SRET_ALL);
	imap_cmd_free(&c);
	assert_int_equal(parse("s SEARCH SENTBEFORE \"5-Mar-2021\" UNDRAFT NEW OLD RECENT TEXT x BODY y "
		"BCC a CC b TO c SMALLER 5 ON 1-Jan-2000 BEFORE 2-Jan-2000 SENTON 1-Jan-2000 SENTSINCE "
		"1-Jan-2000 UNKEYWORD k ANSWERED DELETED DRAFT FLAGGED UNANSWERED UNDELETED UNFLAGGED "
		"UNSEEN *", &c), 0);
	assert_int_equal(c.u.search.key->nkids, 25);
	imap_cmd_free(&c);
}

static void
test_store_append(void **state)
{
	struct imap_cmd c;
	const char ap[] = "a APPEND \"Sent Items\" (\\Seen $Label1) \" 7-Jul-2021 10:20:30 -0130\" {5+}\r\nhello";

	(void)state;
	assert_int_equal(parse("s UID STORE 1:4 (UNCHANGEDSINCE 200) +FLAGS.SILENT (\\Deleted $x)", &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_STORE);
	assert_true(c.u.store.silent);
	assert_true(c.u.store.has_unchangedsince);
	assert_int_equal(c.u.store.unchangedsince, 200);
	assert_int_equal(c.u.store.op, IMAP_STORE_ADD);
	assert_string_equal(c.u.store.flags, "\\Deleted $x");
	imap_cmd_free(&c);
	assert_int_equal(parse("s STORE 2 -FLAGS \\Seen \\Flagged", &c), 0);
	assert_int_equal(c.u.store.op, IMAP_STORE_REMOVE);
	assert_false(c.u.store.silent);
	assert_string_equal(c.u.store.flags, "\\Seen \\Flagged");
	imap_cmd_free(&c);
	assert_int_equal(parse("s STORE 2 FLAGS ()", &c), 0);
	assert_int_equal(c.u.store.op, IMAP_STORE_REPLACE);
	assert_string_equal(c.u.store.flags, "");
	imap_cmd_free(&c);

	assert_int_equal(parse(ap, &c), 0);
	assert_string_equal(c.u.append.mailbox.s, "Sent Items");
	assert_string_equal(c.u.append.flags, "\\Seen $Label1");
	assert_true(c.u.append.has_date);
	/* 2021-07-07 10:20:30 -0130 = 11:50:30 UTC */
	assert_int_equal(c.u.append.date, 1625658630);
	assert_int_equal(c.u.append.len, 5);
	assert_ptr_equal(c.u.append.data, ap + sizeof(ap) - 6);   /* not copied */
	imap_cmd_free(&c);
	assert_int_equal(parse("a APPEND INBOX {3}\r\nabc", &c), 0);
	assert_null(c.u.append.flags);
	assert_false(c.u.append.has_date);
	imap_cmd_free(&c);
}

static void
test_mailbox_cmds(void **state)
{
	struct imap_cmd c;

	(void)state;
	assert_int_equal(parse("l LIST \"\" *", &c), 0);
	assert_false(c.u.list.extended);
	assert_int_equal(c.u.list.npatterns, 1);
	assert_string_equal(c.u.list.patterns[0].s, "*");
	imap_cmd_free(&c);
	assert_int_equal(parse("l LIST (SUBSCRIBED SPECIAL-USE RECURSIVEMATCH) \"\" (INBOX% \"a b\") "
		"RETURN (CHILDREN SUBSCRIBED SPECIAL-USE STATUS (MESSAGES UNSEEN HIGHESTMODSEQ SIZE))", &c), 0);
	assert_true(c.u.list.extended);
	assert_int_equal(c.u.list.sel, IMAP_LSEL_SUBSCRIBED | IMAP_LSEL_SPECIALUSE |
		IMAP_LSEL_RECURSIVEMATCH);
	assert_int_equal(c.u.list.npatterns, 2);
	assert_string_equal(c.u.list.patterns[1].s, "a b");
	assert_int_equal(c.u.list.ret, IMAP_LRET_CHILDREN | IMAP_LRET_SUBSCRIBED |
		IMAP_LRET_SPECIALUSE | IMAP_LRET_STATUS);
	assert_int_equal(c.u.list.status_items, IMAP_ST_MESSAGES | IMAP_ST_UNSEEN |
		IMAP_ST_HIGHESTMODSEQ | IMAP_ST_SIZE);
	imap_cmd_free(&c);
	assert_int_equal(parse("l LSUB \"\" %", &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_LSUB);
	imap_cmd_free(&c);
	assert_int_equal(parse("c CREATE Sent (USE (\\Sent))", &c), 0);
	assert_string_equal(c.u.create.specialuse, "\\Sent");
	imap_cmd_free(&c);
	assert_int_equal(parse("c RENAME a \"b c\"", &c), 0);
	assert_string_equal(c.u.rename.to.s, "b c");
	imap_cmd_free(&c);
	assert_int_equal(parse("c STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN APPENDLIMIT)", &c), 0);
	assert_int_equal(c.u.status.items, IMAP_ST_MESSAGES | IMAP_ST_RECENT | IMAP_ST_UIDNEXT |
		IMAP_ST_UIDVALIDITY | IMAP_ST_UNSEEN | IMAP_ST_APPENDLIMIT);
	imap_cmd_free(&c);
	assert_int_equal(parse("s SELECT INBOX (CONDSTORE)", &c), 0);
	assert_true(c.u.select.condstore);
	imap_cmd_free(&c);
	assert_int_equal(parse("s SELECT INBOX (QRESYNC (67890007 20050715194045000 41,43:211 "
		"(1:3 41,43:44)))", &c), 0);
	assert_true(c.u.select.qresync);
	assert_int_equal(c.u.select.q_uidvalidity, 67890007);
	assert_int_equal(c.u.select.q_modseq, 20050715194045000ull);
	assert_int_equal(c.u.select.q_known_uids.n, 2);
	assert_int_equal(c.u.select.q_seq_match.n, 1);
	assert_int_equal(c.u.select.q_uid_match.n, 2);
	imap_cmd_free(&c);
	assert_int_equal(parse("s EXAMINE INBOX (QRESYNC (1 2))", &c), 0);
	assert_int_equal(c.u.select.q_known_uids.n, 0);
	imap_cmd_free(&c);
	assert_int_equal(parse("m UID MOVE 1:3 Trash", &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_MOVE);
	assert_string_equal(c.u.copy.mailbox.s, "Trash");
	imap_cmd_free(&c);
}

static void
test_literal_tail(void **state)
{
	uint64_t n = 0;
	bool sync = false;

	(void)state;
	assert_int_equal(imap_parse_literal_tail("a LOGIN {5}", 11, &n, &sync), 1);
	assert_int_equal(n, 5);
	assert_true(sync);
	assert_int_equal(imap_parse_literal_tail("a LOGIN {12+}", 13, &n, &sync), 1);
	assert_int_equal(n, 12);
	assert_false(sync);
	assert_int_equal(imap_parse_literal_tail("a NOOP", 6, &n, &sync), 0);
	assert_int_equal(imap_parse_literal_tail("}", 1, &n, &sync), 0);
	assert_int_equal(imap_parse_literal_tail("a {x}", 5, &n, &sync), 0);
	assert_int_equal(imap_parse_literal_tail("a {}", 4, &n, &sync), -1);
	assert_int_equal(imap_parse_literal_tail("a {99999999999}", 15, &n, &sync), -1);
	assert_int_equal(imap_parse_literal_tail("a {4294967296}", 14, &n, &sync), -1);
	assert_int_equal(imap_parse_literal_tail("a {4294967295}", 14, &n, &sync), 1);
}

static void
test_seqset_resolve(void **state)
{
	struct imap_cmd c;
	struct imap_range out[8];
	size_t n;

	(void)state;
	assert_int_equal(parse("a UID FETCH 7:5,1,2,10:*,3,900:950 FLAGS", &c), 0);
	n = imap_seqset_resolve(&c.u.fetch.set, 12, out);
	assert_int_equal(n, 3);
	assert_int_equal(out[0].lo, 1);
	assert_int_equal(out[0].hi, 3);
	assert_int_equal(out[1].lo, 5);
	assert_int_equal(out[1].hi, 7);
	assert_int_equal(out[2].lo, 10);
	assert_int_equal(out[2].hi, 12);
	assert_true(imap_seqset_contains(out, n, 12));
	assert_false(imap_seqset_contains(out, n, 4));
	imap_cmd_free(&c);
	/* "n:*" with n above the largest uid still names the largest (RFC 3501 errata) */
	assert_int_equal(parse("a UID FETCH 559:* FLAGS", &c), 0);
	n = imap_seqset_resolve(&c.u.fetch.set, 100, out);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].lo, 100);
	assert_int_equal(out[0].hi, 100);
	n = imap_seqset_resolve(&c.u.fetch.set, 0, out);
	assert_int_equal(n, 0);
	imap_cmd_free(&c);
	/* 4294967295 is a number, not '*': "uidnext:4294967295" names nothing new */
	assert_int_equal(parse("a UID FETCH 101:4294967295 FLAGS", &c), 0);
	n = imap_seqset_resolve(&c.u.fetch.set, 100, out);
	assert_int_equal(n, 0);
	n = imap_seqset_resolve(&c.u.fetch.set, 4294967295u, out);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].lo, 101);
	assert_int_equal(out[0].hi, 4294967295u);
	imap_cmd_free(&c);
	assert_int_equal(parse("a UID FETCH 99:4294967295 FLAGS", &c), 0);
	n = imap_seqset_resolve(&c.u.fetch.set, 100, out);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].lo, 99);
	assert_int_equal(out[0].hi, 100);
	imap_cmd_free(&c);
}

/* Which literal of an APPEND is the message (imapd refuses a missing
 * mailbox before asking for it). */
static void
test_append_mailbox(void **state)
{
	static const struct {
		const char *in;
		int rc;
		const char *mailbox;
	} c[] = {
		{ "a APPEND INBOX {5}", 1, "INBOX" },
		{ "a append \"Sent Items\" (\\Seen $x) \"01-Jan-2000 00:00:00 +0000\" {5+}", 1,
		  "Sent Items" },
		{ "a APPEND {5}", 0, NULL },                       /* the name is the literal */
		{ "a APPEND {5}\r\nINBOX {7}", 1, "INBOX" },
		{ "a APPEND INBOX {3}\r\nabc (\\Seen) {7}", 0, NULL }, /* a second message */
		{ "a APPEND INBOX (\\Seen {5}", 0, NULL },
		{ "a APPENDX INBOX {5}", 0, NULL },
		{ "a APPEND INBOX x{5}", 0, NULL },
		{ "a APPEND INBOX ~{5}", 1, "INBOX" },             /* literal8 */
		{ "a APPEND Drafts CATENATE (TEXT {5}", 1, "Drafts" },
		{ "a APPEND Drafts (\\Seen) CATENATE (TEXT ~{5+}", 1, "Drafts" },
		{ "a APPEND Drafts CATENATE (URL \"/x;UID=1\" TEXT {5}", 0, NULL },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		struct imap_arena a = { 0 };
		struct imap_str mb = { NULL, 0 };

		assert_int_equal(imap_parse_append_mailbox(c[i].in, strlen(c[i].in), &a, &mb), c[i].rc);
		if (c[i].rc == 1)
			assert_string_equal(mb.s, c[i].mailbox);
		imap_arena_free(&a);
	}
}

static void
test_dates(void **state)
{
	int64_t t;

	(void)state;
	assert_int_equal(imap_parse_date("1-Jan-1970", 10), 0);
	assert_int_equal(imap_parse_date("01-jan-1970", 11), 0);
	assert_int_equal(imap_parse_date("29-Feb-2000", 11), 11016);
	assert_int_equal(imap_parse_date("29-Feb-1900", 11), -1);
	assert_int_equal(imap_parse_date("1-Foo-2000", 10), -1);
	assert_int_equal(imap_parse_date("1-Jan-200", 9), -1);
	assert_int_equal(imap_parse_date(" 1-Jan-2000", 11), -1);
	assert_int_equal(imap_parse_datetime("17-Jul-1996 02:44:25 -0700", 26, &t), 0);
	assert_int_equal(t, 837596665);
	assert_int_equal(imap_parse_datetime(" 1-Jan-2000 00:00:00 +0000", 26, &t), 0);
	assert_int_equal(t, 946684800);
	assert_int_equal(imap_parse_datetime("17-Jul-1996 24:44:25 -0700", 26, &t), -1);
	assert_int_equal(imap_parse_datetime("17-Jul-1996 02:44:25 0700", 25, &t), -1);
}

/* Prefixes of valid commands (fed byte by byte) and single-byte
 * corruptions parse or fail cleanly with ERR_INVALID (ASan watches). */
static void
test_prefixes(void **state)
{
	static const char *const cmds[] = {
		"a UID FETCH 1:* (FLAGS BODY.PEEK[1.HEADER.FIELDS (From)]<0.10>) (CHANGEDSINCE 5)",
		"b SEARCH CHARSET UTF-8 OR NOT FROM {3}\r\nabc (SEEN UID 1:2) TEXT \"q\"",
		"c APPEND INBOX (\\Seen) \"01-Jan-2000 00:00:00 +0000\" {3}\r\nxyz",
		"d SELECT INBOX (QRESYNC (1 2 1:5 (1 1)))",
		"e LIST (SUBSCRIBED) \"\" (a b) RETURN (STATUS (MESSAGES))",
		"f STORE 1 (UNCHANGEDSINCE 3) FLAGS.SILENT (\\Seen)",
	};

	(void)state;
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		size_t len = strlen(cmds[k]);
		struct imap_cmd c;
		struct err err;
		char *copy = malloc(len);

		assert_int_equal(imap_parse_command(cmds[k], len, &c, &err), 0);
		imap_cmd_free(&c);
		for (size_t i = 0; i < len; i++) {
			/* a prefix is a shorter valid command or fails cleanly */
			memcpy(copy, cmds[k], i);
			if (imap_parse_command(copy, i, &c, &err) < 0)
				assert_int_equal(err.kind, ERR_INVALID);
			else
				assert_true(i > 0);
			imap_cmd_free(&c);
		}
		for (size_t i = 0; i < len; i++) {
			static const char bytes[] = { '\0', ' ', '(', ')', '{', '"', '\\', '*', '\r', 'Z' };

			for (size_t b = 0; b < sizeof(bytes); b++) {
				memcpy(copy, cmds[k], len);
				copy[i] = bytes[b];
				if (imap_parse_command(copy, len, &c, &err) < 0)
					assert_int_equal(err.kind, ERR_INVALID);
				imap_cmd_free(&c);
			}
		}
		free(copy);
	}
}

static void
test_sort_thread(void **state)
{
	static const char *const cmds[] = {
		"a UID SORT RETURN (MIN COUNT PARTIAL 5:2) (REVERSE DATE DISPLAYFROM) UTF-8 OR SEEN FROM {1}\r\nx",
		"b THREAD REFERENCES US-ASCII UID 1:* NOT DELETED",
	};
	struct imap_cmd c;

	(void)state;
	assert_int_equal(parse(cmds[0], &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_SORT);
	assert_true(c.uid);
	assert_string_equal(c.name, "UID SORT");
	assert_int_equal(c.u.sort.nkeys, 2);
	assert_int_equal(c.u.sort.keys[0], IMAP_SORT_DATE);
	assert_true(c.u.sort.reverse[0]);
	assert_int_equal(c.u.sort.keys[1], IMAP_SORT_DISPLAYFROM);
	assert_false(c.u.sort.reverse[1]);
	assert_true(c.u.sort.search.esearch);
	assert_int_equal(c.u.sort.search.ret, IMAP_SRET_MIN | IMAP_SRET_COUNT | IMAP_SRET_PARTIAL);
	assert_int_equal(c.u.sort.partial_lo, 2);
	assert_int_equal(c.u.sort.partial_hi, 5);
	assert_string_equal(c.u.sort.search.charset, "UTF-8");
	assert_int_equal(c.u.sort.search.key->nkids, 1);
	assert_int_equal(c.u.sort.search.key->kids[0]->kind, IMAP_SK_OR);
	imap_cmd_free(&c);
	assert_int_equal(parse(cmds[1], &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_THREAD);
	assert_false(c.uid);
	assert_int_equal(c.u.sort.algo, IMAP_THREAD_REFERENCES);
	assert_string_equal(c.u.sort.search.charset, "US-ASCII");
	assert_int_equal(c.u.sort.search.key->nkids, 2);
	imap_cmd_free(&c);
	assert_int_equal(parse("c SORT (SUBJECT) UTF-8 ALL", &c), 0);
	assert_false(c.u.sort.search.esearch);
	imap_cmd_free(&c);
	assert_int_equal(parse("d THREAD orderedsubject UTF-8 ALL", &c), 0);
	assert_int_equal(c.u.sort.algo, IMAP_THREAD_ORDEREDSUBJECT);
	imap_cmd_free(&c);
	expect_bad("e SORT (SUBJECT) ALL", NULL);          /* charset required */
	expect_bad("e SORT () UTF-8 ALL", "unknown sort key");
	expect_bad("e SORT (REVERSE) UTF-8 ALL", NULL);
	expect_bad("e SORT (DATE  SIZE) UTF-8 ALL", "unknown sort key");
	expect_bad("e SORT (FOO) UTF-8 ALL", "unknown sort key");
	expect_bad("e SORT RETURN (SAVE) (DATE) UTF-8 ALL", "unknown SORT RETURN option");
	expect_bad("e SORT RETURN (PARTIAL 0:3) (DATE) UTF-8 ALL", "PARTIAL");
	expect_bad("e SORT RETURN (PARTIAL 1:2 PARTIAL 3:4) (DATE) UTF-8 ALL", "PARTIAL");
	expect_bad("e SORT (A A A A A A A A A A A A A A A A A) UTF-8 ALL", NULL);
	expect_bad("e SORT (DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE DATE "
		"DATE DATE DATE DATE) UTF-8 ALL", "too many sort keys");
	expect_bad("e THREAD FOO UTF-8 ALL", "unknown THREAD algorithm");
	expect_bad("e THREAD REFERENCES UTF-8", NULL);
	expect_bad("e UID THREAD", NULL);
	/* every prefix fails cleanly (or is a shorter valid command) */
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		size_t len = strlen(cmds[k]);
		char *copy = malloc(len + 1);
		struct err err;

		for (size_t i = 0; i < len; i++) {
			memcpy(copy, cmds[k], i);
			if (imap_parse_command(copy, i, &c, &err) < 0)
				assert_int_equal(err.kind, ERR_INVALID);
			imap_cmd_free(&c);
		}
		free(copy);
	}
}

/* MULTIAPPEND, CATENATE, literal8 and FETCH BINARY (RFC 3502, 4469, 3516) */
static void
test_append_ext(void **state)
{
	struct imap_cmd c;
	struct err err;
	const char multi[] = "a APPEND INBOX (\\Seen) {3}\r\nabc \"01-Jan-2000 00:00:00 +0000\" ~{4+}\r\nd\0ef"
		" CATENATE (TEXT {2}\r\nxy URL \"/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1.2\" TEXT ~{1}\r\nz)";

	(void)state;
	assert_int_equal(imap_parse_command(multi, sizeof(multi) - 1, &c, &err), 0);
	assert_int_equal(c.u.append.nmsgs, 3);
	assert_string_equal(c.u.append.msgs[0].flags, "\\Seen");
	assert_int_equal(c.u.append.msgs[0].len, 3);
	assert_ptr_equal(c.u.append.data, c.u.append.msgs[0].data);
	assert_false(c.u.append.msgs[0].literal8);
	assert_true(c.u.append.msgs[1].has_date);
	assert_true(c.u.append.msgs[1].literal8);
	assert_int_equal(c.u.append.msgs[1].len, 4);
	assert_memory_equal(c.u.append.msgs[1].data, "d\0ef", 4);
	assert_int_equal(c.u.append.msgs[2].nparts, 3);
	assert_false(c.u.append.msgs[2].parts[0].url);
	assert_int_equal(c.u.append.msgs[2].parts[0].s.len, 2);
	assert_true(c.u.append.msgs[2].parts[1].url);
	assert_string_equal(c.u.append.msgs[2].parts[1].s.s, "/INBOX;UIDVALIDITY=7/;UID=3/;SECTION=1.2");
	assert_int_equal(c.u.append.msgs[2].parts[2].s.len, 1);
	imap_cmd_free(&c);
	assert_int_equal(parse("a APPEND INBOX CATENATE ()", &c), -1);
	imap_cmd_free(&c);
	assert_int_equal(parse("a APPEND INBOX CATENATE (FOO x)", &c), -1);
	imap_cmd_free(&c);
	assert_int_equal(parse("a APPEND INBOX {1}\r\nx ", &c), -1);
	imap_cmd_free(&c);
	assert_int_equal(parse("a APPEND INBOX", &c), -1);
	imap_cmd_free(&c);

	assert_int_equal(parse("f FETCH 1 (BINARY[1.2]<5.10> BINARY.PEEK[] BINARY.SIZE[3])", &c), 0);
	assert_int_equal(c.u.fetch.natts, 3);
	assert_int_equal(c.u.fetch.atts[0].kind, IMAP_FA_BINARY);
	assert_false(c.u.fetch.atts[0].peek);
	assert_int_equal(c.u.fetch.atts[0].npath, 2);
	assert_true(c.u.fetch.atts[0].partial);
	assert_string_equal(c.u.fetch.atts[0].name, "BINARY[1.2]<5>");
	assert_true(c.u.fetch.atts[1].peek);
	assert_int_equal(c.u.fetch.atts[1].npath, 0);
	assert_string_equal(c.u.fetch.atts[1].name, "BINARY[]");
	assert_int_equal(c.u.fetch.atts[2].kind, IMAP_FA_BINARY_SIZE);
	assert_string_equal(c.u.fetch.atts[2].name, "BINARY.SIZE[3]");
	imap_cmd_free(&c);
	assert_int_equal(parse("f FETCH 1 BINARY[1.TEXT]", &c), -1);
	imap_cmd_free(&c);
	assert_int_equal(parse("f FETCH 1 BINARY[0]", &c), -1);
	imap_cmd_free(&c);
	assert_int_equal(parse("f FETCH 1 BINARY.SIZE[1]<0.1>", &c), -1);
	imap_cmd_free(&c);
	assert_int_equal(parse("f FETCH 1 BINARY", &c), -1);
	imap_cmd_free(&c);

	assert_true(imap_parse_is_cat_text("a APPEND x CATENATE (TEXT {5}", 29));
	assert_true(imap_parse_is_cat_text("a APPEND x CATENATE (TEXT ~{5+}", 31));
	assert_false(imap_parse_is_cat_text("a APPEND x {5}", 14));
	assert_false(imap_parse_is_cat_text("a APPEND CONTEXT {5}", 20));
}

static void
test_quota(void **state)
{
	static const char *const cmds[] = {
		"a SETQUOTA \"\" (STORAGE 512 MESSAGE 1000)",
		"b GETQUOTAROOT {5}\r\nINBOX",
	};
	struct imap_cmd c;

	(void)state;
	assert_int_equal(parse("a getquota \"\"", &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_GETQUOTA);
	assert_string_equal(c.name, "GETQUOTA");
	assert_int_equal(c.u.mailbox.len, 0);
	imap_cmd_free(&c);
	assert_int_equal(parse("a GETQUOTAROOT Work", &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_GETQUOTAROOT);
	assert_string_equal(c.u.mailbox.s, "Work");
	imap_cmd_free(&c);
	assert_int_equal(parse(cmds[0], &c), 0);
	assert_int_equal(c.kind, IMAP_CMD_SETQUOTA);
	assert_int_equal(c.u.mailbox.len, 0);
	imap_cmd_free(&c);
	assert_int_equal(parse(cmds[1], &c), 0);
	assert_string_equal(c.u.mailbox.s, "INBOX");
	imap_cmd_free(&c);
	assert_int_equal(parse("a SETQUOTA root ()", &c), 0);
	assert_string_equal(c.u.mailbox.s, "root");
	imap_cmd_free(&c);
	expect_bad("a GETQUOTA", NULL);
	expect_bad("a GETQUOTA \"\" x", "unexpected characters");
	expect_bad("a GETQUOTAROOTS INBOX", "unknown command");
	expect_bad("a SETQUOTA \"\" (STORAGE)", NULL);
	expect_bad("a SETQUOTA \"\" (STORAGE x)", "expected a number");
	expect_bad("a SETQUOTA \"\" STORAGE 5", "expected '('");
	expect_bad("a SETQUOTA \"\" (STORAGE 5 )", NULL);
	expect_bad("a SETQUOTA \"\" (STORAGE 99999999999999999999)", "number too large");
	for (size_t k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		size_t len = strlen(cmds[k]);
		char *copy = malloc(len + 1);
		struct err err;

		for (size_t i = 0; i < len; i++) {
			memcpy(copy, cmds[k], i);
			if (imap_parse_command(copy, i, &c, &err) < 0)
				assert_int_equal(err.kind, ERR_INVALID);
			imap_cmd_free(&c);
		}
		free(copy);
	}
}

static void
test_peek(void **state)
{
	char tag[16];

	(void)state;
	assert_true(imap_parse_peek_tag("abc NOOP", 8, tag, sizeof(tag)));
	assert_string_equal(tag, "abc");
	assert_false(imap_parse_peek_tag("+ NOOP", 6, tag, sizeof(tag)));
	assert_string_equal(tag, "*");
	assert_false(imap_parse_peek_tag("(x", 2, tag, sizeof(tag)));
	assert_true(imap_parse_is_append("a1 append INBOX {3}", 19));
	assert_false(imap_parse_is_append("a1 APPENDX", 10));
	assert_false(imap_parse_is_append("a1 NOOP", 7));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_simple),
		cmocka_unit_test(test_login_strings),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_depth),
		cmocka_unit_test(test_fetch),
		cmocka_unit_test(test_search),
		cmocka_unit_test(test_store_append),
		cmocka_unit_test(test_mailbox_cmds),
		cmocka_unit_test(test_literal_tail),
		cmocka_unit_test(test_seqset_resolve),
		cmocka_unit_test(test_append_mailbox),
		cmocka_unit_test(test_append_ext),
		cmocka_unit_test(test_dates),
		cmocka_unit_test(test_prefixes),
		cmocka_unit_test(test_peek),
		cmocka_unit_test(test_sort_thread),
		cmocka_unit_test(test_quota),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
