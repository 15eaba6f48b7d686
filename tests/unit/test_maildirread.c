/* test_maildirread.c - unit tests for ctl/maildirread.c (Maildir import reader) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>
#include <utime.h>

#include "ctl/maildirread.h"
#include "lib/buf.h"

static void
test_parse_name(void **state)
{
	unsigned f;
	uint32_t kw;

	(void)state;
	maildirread_parse_name("1700000000.M1P2.host:2,FRS", &f, &kw);
	assert_int_equal(f, MAILDIR_F_FLAGGED | MAILDIR_F_ANSWERED | MAILDIR_F_SEEN);
	assert_int_equal(kw, 0);
	maildirread_parse_name("1700000000.M1P2.host:2,DPTab", &f, &kw);
	assert_int_equal(f, MAILDIR_F_DRAFT | MAILDIR_F_PASSED | MAILDIR_F_DELETED);
	assert_int_equal(kw, 3);
	/* '!' separator, unknown letters ignored, z keyword */
	maildirread_parse_name("x!2,SXz", &f, &kw);
	assert_int_equal(f, MAILDIR_F_SEEN);
	assert_int_equal(kw, 1u << 25);
	/* no info, or an experimental ":1," info: no flags */
	maildirread_parse_name("1700000000.M1P2.host", &f, &kw);
	assert_int_equal(f, 0);
	maildirread_parse_name("x:1,S", &f, &kw);
	assert_int_equal(f, 0);
	/* a ':' in the host part before the real info: the last info wins */
	maildirread_parse_name("a:2,S.b:2,F", &f, &kw);
	assert_int_equal(f, MAILDIR_F_FLAGGED);
	maildirread_parse_name("x:2,", &f, &kw);
	assert_int_equal(f, 0);
}

static void
test_keywords(void **state)
{
	static const char text[] = "0 $Forwarded\n1 Work\r\n2 bad keyword\n26 toolarge\nx y\n3\n"
	    "4 ok\\no\n25 $Junk\n1 Work2\n";
	char *names[MAILDIR_KEYWORDS] = { NULL };
	int i;

	(void)state;
	assert_int_equal(maildirread_parse_keywords(text, strlen(text), names), 3);
	assert_string_equal(names[0], "$Forwarded");
	assert_string_equal(names[1], "Work2");
	assert_null(names[2]);
	assert_null(names[3]);
	assert_null(names[4]);
	assert_string_equal(names[25], "$Junk");
	for (i = 0; i < MAILDIR_KEYWORDS; i++)
		free(names[i]);
	assert_true(maildirread_valid_keyword("$Label1", 7));
	assert_false(maildirread_valid_keyword("a b", 3));
	assert_false(maildirread_valid_keyword("\\Seen", 5));
	assert_false(maildirread_valid_keyword("", 0));
}

static void
test_crlf(void **state)
{
	struct buf out = BUF_INIT;
	int cr = 0;
	const char *in = "a\nb\r\nc\r";
	size_t i;

	(void)state;
	/* byte by byte, a CR at a chunk end followed by LF is not doubled */
	for (i = 0; i < strlen(in); i++)
		maildirread_crlf(in + i, 1, &cr, &out);
	maildirread_crlf("\nd", 2, &cr, &out);
	assert_string_equal(buf_cstr(&out), "a\r\nb\r\nc\r\nd");
	buf_free(&out);
	cr = 0;
	maildirread_crlf("\n\n", 2, &cr, &out);
	assert_string_equal(buf_cstr(&out), "\r\n\r\n");
	buf_free(&out);
}

static void
put(const char *dir, const char *name, const char *text, time_t mtime)
{
	char path[512];
	struct utimbuf ut = { mtime, mtime };
	int fd;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	assert_int_equal(utime(path, &ut), 0);
}

static void
test_open(void **state)
{
	char dir[] = "/tmp/test_maildirread.XXXXXX";
	char sub[600];
	struct maildir *md = NULL;
	struct err err;
	struct buf msg = BUF_INIT;

	(void)state;
	assert_non_null(mkdtemp(dir));
	/* not a Maildir yet */
	assert_int_equal(maildirread_open(dir, &md, &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	assert_non_null(strstr(err.msg, "not a Maildir"));
	snprintf(sub, sizeof(sub), "%s/cur", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	put(sub, "1002.M2.h:2,S", "Subject: b\n\nbody\n", 1002);
	put(sub, "1001.M1.h:2,RFa", "Subject: a\r\n\r\nbody\r\n", 1001);
	put(sub, ".hidden", "x", 1000);
	snprintf(sub, sizeof(sub), "%s/cur/subdir", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	snprintf(sub, sizeof(sub), "%s/new", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	put(sub, "1000.M0.h", "Subject: c\n\nnew\n", 1000);
	snprintf(sub, sizeof(sub), "%s/tmp", dir);
	assert_int_equal(mkdir(sub, 0755), 0);
	put(sub, "999.M9.h", "in flight\n", 999);
	put(dir, "dovecot-keywords", "0 Work\n", 1000);

	assert_int_equal(maildirread_open(dir, &md, &err), 0);
	assert_int_equal(md->n, 3);
	assert_string_equal(md->msgs[0].name, "1000.M0.h");
	assert_true(md->msgs[0].is_new);
	assert_int_equal(md->msgs[0].flags, 0);
	assert_string_equal(md->msgs[1].name, "1001.M1.h:2,RFa");
	assert_int_equal(md->msgs[1].flags, MAILDIR_F_ANSWERED | MAILDIR_F_FLAGGED);
	assert_int_equal(md->msgs[1].keywords, 1);
	assert_int_equal((long long)md->msgs[1].mtime, 1001);
	assert_string_equal(md->keywords[0], "Work");
	assert_int_equal(md->msgs[2].flags, MAILDIR_F_SEEN);
	assert_int_equal(md->msgs[2].size, 17);

	assert_int_equal(maildirread_load(&md->msgs[2], 1000, &msg, &err), 0);
	assert_string_equal(buf_cstr(&msg), "Subject: b\r\n\r\nbody\r\n");
	assert_int_equal(maildirread_load(&md->msgs[1], 1000, &msg, &err), 0);
	assert_string_equal(buf_cstr(&msg), "Subject: a\r\n\r\nbody\r\n");
	assert_int_equal(maildirread_load(&md->msgs[1], 10, &msg, &err), -1);
	assert_int_equal(err.kind, ERR_TOOBIG);
	buf_free(&msg);
	maildirread_free(&md);
	assert_null(md);

	assert_int_equal(maildirread_open("/nonexistent/maildir", &md, &err), -1);
	assert_int_equal(err.kind, ERR_NOTFOUND);
	snprintf(sub, sizeof(sub), "rm -rf '%s'", dir);
	assert_int_equal(system(sub), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_name),
		cmocka_unit_test(test_keywords),
		cmocka_unit_test(test_crlf),
		cmocka_unit_test(test_open),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
