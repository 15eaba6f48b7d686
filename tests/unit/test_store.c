/* test_store.c - unit tests for src/store (store.h): every API call,
 * including bad input that must fail with a clear error and change
 * nothing, several processes on one user, snapshots, IDLE wake-up,
 * replication apply, purge, check and repair. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/failpoint.h"
#include "lib/str.h"
#include "store/store.h"

static char root[256];
static struct store *st;

static int
setup_opts(const struct store_opts *o)
{
	struct err e;

	str_lcpy(root, "/tmp/castor-store-XXXXXX", sizeof(root));
	if (mkdtemp(root) == NULL)
		return -1;
	if (store_create(root, "master", &e) < 0) {
		fprintf(stderr, "store_create: %s\n", e.msg);
		return -1;
	}
	st = store_open(root, o, &e);
	if (st == NULL) {
		fprintf(stderr, "store_open: %s\n", e.msg);
		return -1;
	}
	if (store_user_add(st, "alice", "secret", &e) < 0) {
		fprintf(stderr, "user_add: %s\n", e.msg);
		return -1;
	}
	return 0;
}

static int
setup(void **state)
{
	(void)state;
	failpoint_set("");
	return setup_opts(NULL);
}

/* All bodies as files. */
static int
setup_files(void **state)
{
	struct store_opts o;

	(void)state;
	failpoint_set("");
	store_opts_init(&o);
	o.inline_max = 0;
	return setup_opts(&o);
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	failpoint_set("");
	store_close(&st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static struct store_user *
open_user(const char *name)
{
	struct err e;
	struct store_user *u = store_user_open(st, name, &e);

	if (u == NULL)
		fail_msg("store_user_open(%s): %s", name, e.msg);
	return u;
}

static char *
make_msg(int i, size_t size)
{
	struct buf b = BUF_INIT;

	buf_printf(&b, "From: Ann <ann@example.org>\r\nTo: bob@example.org\r\n"
		"Subject: message %d\r\nMessage-ID: <%d.%ld@example.org>\r\n\r\n", i, i, (long)getpid());
	while (b.len + 2 < size)
		buf_puts(&b, "The quick brown fox jumps over the lazy dog.\r\n");
	buf_truncate(&b, size > b.len ? b.len : size);
	return buf_steal(&b);
}

/* Append one message; returns its uid. */
static uint32_t
append1(struct store_user *u, const char *mbid, int i, size_t size, uint32_t flags, const char *kw)
{
	struct store_append_msg m = { 0 };
	struct store_append_result r;
	struct err e;
	char *data = make_msg(i, size);

	m.data = data;
	m.len = strlen(data);
	m.sysflags = flags;
	m.keywords = kw;
	if (store_append(u, mbid, &m, 1, &r, NULL, &e) < 0)
		fail_msg("append: %s", e.msg);
	free(data);
	return r.uid;
}

static void
mbid_of(struct store_user *u, const char *name, char *id)
{
	struct store_mailbox mb;
	struct err e;

	if (store_mailbox_get(u, name, &mb, &e) < 0)
		fail_msg("mailbox_get(%s): %s", name, e.msg);
	memcpy(id, mb.uniqueid, STORE_UNIQUEID_LEN + 1);
}

static uint64_t
modseq_of(struct store_user *u)
{
	uint64_t m = 0;
	struct err e;

	assert_int_equal(store_user_modseq(u, &m, &e), 0);
	return m;
}

static int
check_clean(const char *user)
{
	struct err e;
	int n = store_check(st, user, false, NULL, NULL, &e);

	if (n < 0)
		fail_msg("check: %s", e.msg);
	return n;
}

/* ------------------------------------------------------------------ */

static void
test_create_open_server(void **state)
{
	const char *role;
	uint64_t epoch;
	struct err e;
	struct store *st2;

	(void)state;
	assert_int_equal(store_server_get(st, &role, &epoch, &e), 0);
	assert_string_equal(role, "master");
	assert_int_equal(epoch, 1);
	assert_int_equal(store_server_set(st, "replica", 7, &e), 0);
	assert_int_equal(store_server_get(st, &role, &epoch, &e), 0);
	assert_string_equal(role, "replica");
	assert_int_equal(epoch, 7);
	assert_int_equal(store_server_set(st, "boss", 8, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	/* a second create on the same root refuses */
	assert_int_equal(store_create(root, "master", &e), -1);
	assert_int_equal(e.kind, ERR_EXISTS);
	assert_int_equal(store_create("/tmp/x", "chief", &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	/* not a root */
	st2 = store_open("/nonexistent/castor", NULL, &e);
	assert_null(st2);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_string_equal(store_root(st), root);
}

static int
count_user(void *ctx, const struct store_userinfo *ui)
{
	int *n = ctx;

	(void)ui;
	(*n)++;
	return 0;
}

static int
grab_hash(void *ctx, const struct store_userinfo *ui)
{
	if (str_eq(ui->name, "alice") && ui->hash != NULL)
		str_lcpy(ctx, ui->hash, 256);
	return 0;
}

static void
test_users(void **state)
{
	struct err e;
	struct store_userinfo ui;
	struct buf p = BUF_INIT;
	int n = 0;

	(void)state;
	assert_int_equal(store_user_exists(st, "alice", &e), 1);
	assert_int_equal(store_user_exists(st, "nobody", &e), 0);
	assert_int_equal(store_user_add(st, "alice", "x", &e), -1);
	assert_int_equal(e.kind, ERR_EXISTS);
	assert_int_equal(store_user_add(st, "Alice", "x", &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(store_user_add(st, "../etc", "x", &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(store_user_add(st, "", "x", &e), -1);
	assert_int_equal(store_user_add(st, ".hidden", "x", &e), -1);
	assert_false(store_user_name_valid("a/b"));
	assert_true(store_user_name_valid("bob.smith+tag@example.org"));

	assert_int_equal(store_user_verify(st, "alice", "secret", &e), 1);
	assert_int_equal(store_user_verify(st, "alice", "wrong", &e), 0);
	assert_int_equal(store_user_verify(st, "nobody", "secret", &e), 0);
	assert_int_equal(store_user_passwd(st, "alice", "new pw", &e), 0);
	assert_int_equal(store_user_verify(st, "alice", "secret", &e), 0);
	assert_int_equal(store_user_verify(st, "alice", "new pw", &e), 1);
	assert_int_equal(store_user_passwd(st, "nobody", "x", &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);

	assert_int_equal(store_user_info(st, "alice", &ui, &e), 0);
	assert_true(ui.has_password);
	assert_int_equal(ui.quota_bytes, -1);

	assert_int_equal(store_user_add(st, "bob", NULL, &e), 0);
	assert_int_equal(store_user_verify(st, "bob", "", &e), 0);
	assert_int_equal(store_user_list(st, count_user, &n, &e), 0);
	assert_int_equal(n, 2);

	/* set_hash copies a hash verbatim (replication) */
	assert_int_equal(store_user_set_hash(st, "bob", "not-a-hash", &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	{
		char hash[256] = "";
		assert_int_equal(store_user_list(st, grab_hash, hash, &e), 0);
		assert_true(str_has_prefix(hash, "$y$"));
		assert_int_equal(store_user_set_hash(st, "bob", hash, &e), 0);
		assert_int_equal(store_user_verify(st, "bob", "new pw", &e), 1);
		assert_int_equal(store_user_set_hash(st, "nobody", hash, &e), -1);
		assert_int_equal(e.kind, ERR_NOTFOUND);
	}

	assert_int_equal(store_user_set_quota(st, "bob", 1000, 0, &e), 0);
	assert_int_equal(store_user_info(st, "bob", &ui, &e), 0);
	assert_int_equal(ui.quota_bytes, 1000);
	assert_int_equal(store_user_set_quota(st, "bob", -5, 0, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);

	/* delete moves the spool away and the user is gone */
	store_user_dir(st, "bob", &p);
	assert_int_equal(access(buf_cstr(&p), F_OK), 0);
	assert_int_equal(store_user_del(st, "bob", &e), 0);
	assert_int_equal(access(buf_cstr(&p), F_OK), -1);
	assert_int_equal(store_user_exists(st, "bob", &e), 0);
	assert_int_equal(store_user_del(st, "bob", &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_null(store_user_open(st, "bob", &e));
	assert_int_equal(e.kind, ERR_NOTFOUND);
	buf_free(&p);
}

static void
test_mailbox_names(void **state)
{
	char norm[STORE_MBOX_NAME_MAX + 1];
	struct err e;
	char longname[STORE_MBOX_NAME_MAX + 10];
	static const char *const bad[] = { "", "/a", "a/", "a//b", "..", "a/../b", ".", "a/./b",
		"a\tb", "a\x7f", "a\xc2\x85" /* U+0085 NEL */, "bad\xff", "\xc0\xaf", "\xed\xa0\x80",
		"a*b", "a%b", "x\ny" };
	static const char *const good[] = { "INBOX", "Sent", "a/b/c", "Entw\xc3\xbcrfe",
		"\xe6\x97\xa5\xe6\x9c\xac", "a b", "a.b", "...x", "#news" };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (store_mailbox_name_check(bad[i], norm, &e) == 0)
			fail_msg("accepted bad name %zu", i);
		assert_int_equal(e.kind, ERR_INVALID);
	}
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (store_mailbox_name_check(good[i], norm, &e) != 0)
			fail_msg("refused good name %s: %s", good[i], e.msg);
	assert_int_equal(store_mailbox_name_check("inbox/Sub", norm, &e), 0);
	assert_string_equal(norm, "INBOX/Sub");
	assert_int_equal(store_mailbox_name_check("InBoX", norm, &e), 0);
	assert_string_equal(norm, "INBOX");
	assert_int_equal(store_mailbox_name_check("inboxes", norm, &e), 0);
	assert_string_equal(norm, "inboxes");
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(store_mailbox_name_check(longname, norm, &e), -1);
	memset(longname, 'a', 300);
	longname[300] = '\0';
	assert_int_equal(store_mailbox_name_check(longname, norm, &e), -1); /* component > 255 */
}

static void
test_mailbox_create_get(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_mailbox mb, mb2;
	struct err e;
	uint64_t m0;

	(void)state;
	assert_int_equal(store_mailbox_get(u, "inbox", &mb, &e), 0);
	assert_string_equal(mb.name, "INBOX");
	assert_int_equal(strlen(mb.uniqueid), 32);
	assert_int_equal(mb.uidnext, 1);
	assert_true(mb.uidvalidity > 0);

	assert_int_equal(store_mailbox_create(u, "Sent", "\\sent", &mb, &e), 0);
	assert_string_equal(mb.specialuse, "\\Sent");
	assert_true(mb.createdmodseq > 0);
	m0 = modseq_of(u);
	/* bad input changes nothing */
	assert_int_equal(store_mailbox_create(u, "Sent", NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_EXISTS);
	assert_int_equal(store_mailbox_create(u, "INBOX", NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_EXISTS);
	assert_int_equal(store_mailbox_create(u, "a//b", NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(store_mailbox_create(u, "X", "\\Bogus", NULL, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(modseq_of(u), m0);
	assert_int_equal(store_mailbox_get(u, "X", NULL, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);

	assert_int_equal(store_mailbox_get_id(u, mb.uniqueid, false, &mb2, &e), 0);
	assert_string_equal(mb2.name, "Sent");
	assert_int_equal(store_mailbox_get_id(u, "00000000000000000000000000000000", false, &mb2, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);

	assert_int_equal(store_mailbox_set_specialuse(u, "Sent", "\\Archive \\sent", &e), 0);
	assert_int_equal(store_mailbox_get(u, "Sent", &mb2, &e), 0);
	assert_string_equal(mb2.specialuse, "\\Archive \\Sent");
	assert_true(mb2.modseq > mb.modseq);
	assert_int_equal(store_mailbox_set_specialuse(u, "Nope", "", &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

static void
test_mailbox_rename(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_mailbox a, ab, abc, x;
	char inbox[33], id[33];
	struct err e;
	struct store_status sst;
	uint64_t m0;

	(void)state;
	assert_int_equal(store_mailbox_create(u, "a", NULL, &a, &e), 0);
	assert_int_equal(store_mailbox_create(u, "a/b", NULL, &ab, &e), 0);
	assert_int_equal(store_mailbox_create(u, "a/b/c", NULL, &abc, &e), 0);
	assert_int_equal(store_mailbox_create(u, "ab", NULL, NULL, &e), 0);   /* not a child of a */
	assert_int_equal(store_mailbox_create(u, "taken", NULL, NULL, &e), 0);
	m0 = modseq_of(u);
	/* refusals change nothing */
	assert_int_equal(store_mailbox_rename(u, "a", "a/b/d", &e), -1);
	assert_int_equal(e.kind, ERR_PERM);
	assert_int_equal(store_mailbox_rename(u, "a", "taken", &e), -1);
	assert_int_equal(e.kind, ERR_EXISTS);
	assert_int_equal(store_mailbox_rename(u, "nope", "z", &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_int_equal(store_mailbox_rename(u, "a", "bad//name", &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(store_mailbox_rename(u, "a", "inbox", &e), -1);
	assert_int_equal(e.kind, ERR_EXISTS);
	assert_int_equal(store_mailbox_rename(u, "a", "a", &e), -1);
	assert_int_equal(modseq_of(u), m0);
	assert_int_equal(store_mailbox_get(u, "a/b/c", NULL, &e), 0);

	/* a child of the target name exists: the whole rename is refused */
	assert_int_equal(store_mailbox_create(u, "t/b", NULL, NULL, &e), 0);
	m0 = modseq_of(u);
	assert_int_equal(store_mailbox_rename(u, "a", "t", &e), -1);
	assert_int_equal(e.kind, ERR_EXISTS);
	assert_int_equal(modseq_of(u), m0);
	assert_int_equal(store_mailbox_get(u, "a", NULL, &e), 0);

	assert_int_equal(store_mailbox_rename(u, "a", "z/y", &e), 0);
	assert_int_equal(store_mailbox_get(u, "z/y", &x, &e), 0);
	assert_string_equal(x.uniqueid, a.uniqueid);
	assert_int_equal(x.uidvalidity, a.uidvalidity);
	assert_int_equal(store_mailbox_get(u, "z/y/b", &x, &e), 0);
	assert_string_equal(x.uniqueid, ab.uniqueid);
	assert_int_equal(store_mailbox_get(u, "z/y/b/c", &x, &e), 0);
	assert_string_equal(x.uniqueid, abc.uniqueid);
	assert_int_equal(store_mailbox_get(u, "a/b", NULL, &e), -1);
	assert_int_equal(store_mailbox_get(u, "ab", NULL, &e), 0);

	/* RENAME INBOX moves its messages, INBOX stays (RFC 3501) */
	mbid_of(u, "INBOX", inbox);
	append1(u, inbox, 1, 500, STORE_FLAG_FLAGGED, "$Work");
	append1(u, inbox, 2, 500, 0, NULL);
	assert_int_equal(store_mailbox_rename(u, "INBOX", "Old", &e), 0);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.messages, 0);
	assert_int_equal(store_mailbox_status(u, "Old", &sst, &e), 0);
	assert_int_equal(sst.messages, 2);
	mbid_of(u, "INBOX", id);
	assert_string_equal(id, inbox);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

static void
test_mailbox_delete(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_mailbox mb, again, tomb;
	struct store_quota q;
	struct err e;
	uint64_t m0;

	(void)state;
	assert_int_equal(store_mailbox_create(u, "Trash", NULL, &mb, &e), 0);
	append1(u, mb.uniqueid, 1, 1000, 0, NULL);
	assert_int_equal(store_quota_get(u, &q, &e), 0);
	assert_int_equal(q.used_messages, 1);
	m0 = modseq_of(u);
	assert_int_equal(store_mailbox_delete(u, "INBOX", &e), -1);
	assert_int_equal(e.kind, ERR_PERM);
	assert_int_equal(store_mailbox_delete(u, "nope", &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_int_equal(modseq_of(u), m0);

	assert_int_equal(store_mailbox_delete(u, "Trash", &e), 0);
	assert_int_equal(store_mailbox_get(u, "Trash", NULL, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_int_equal(store_mailbox_get_id(u, mb.uniqueid, false, NULL, &e), -1);
	assert_int_equal(store_mailbox_get_id(u, mb.uniqueid, true, &tomb, &e), 0);
	assert_true(tomb.deleted_modseq > m0);
	assert_int_equal(store_quota_get(u, &q, &e), 0);
	assert_int_equal(q.used_messages, 0);
	assert_int_equal(q.used_bytes, 0);
	/* appending to a deleted mailbox: not found */
	{
		struct store_append_msg m = { "x", 1, 0, 0, NULL };
		assert_int_equal(store_append(u, mb.uniqueid, &m, 1, NULL, NULL, &e), -1);
		assert_int_equal(e.kind, ERR_NOTFOUND);
	}
	/* recreated: new identity */
	assert_int_equal(store_mailbox_create(u, "Trash", NULL, &again, &e), 0);
	assert_string_not_equal(again.uniqueid, mb.uniqueid);
	assert_true(again.uidvalidity > mb.uidvalidity);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

struct lres {
	char names[32][64];
	unsigned attrs[32];
	int n;
};

static int
list_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct lres *r = ctx;

	if ((attrs & STORE_MBATTR_NONEXISTENT) ? mb != NULL : mb == NULL)
		fail_msg("mb pointer vs NONEXISTENT mismatch for %s", name);
	if (r->n < 32) {
		str_lcpy(r->names[r->n], name, sizeof(r->names[0]));
		r->attrs[r->n] = attrs;
		r->n++;
	}
	return 0;
}

static void
test_list(void **state)
{
	struct store_user *u = open_user("alice");
	struct lres r;
	struct err e;

	(void)state;
	assert_true(store_list_match("*", "a/b"));
	assert_true(store_list_match("%", "a"));
	assert_false(store_list_match("%", "a/b"));
	assert_true(store_list_match("a/%", "a/b"));
	assert_false(store_list_match("a/%", "a/b/c"));
	assert_true(store_list_match("a*c", "a/b/c"));
	assert_false(store_list_match("a%c", "a/b/c"));
	assert_true(store_list_match("inbox", "INBOX"));
	assert_true(store_list_match("Inbox/*", "INBOX/x"));
	assert_false(store_list_match("inbox", "inboxes"));
	assert_true(store_list_match("%/%", "x/y"));
	assert_false(store_list_match("abc", "ab"));
	assert_true(store_list_match("**%%*", "q/w/e"));

	assert_int_equal(store_mailbox_create(u, "Sent", NULL, NULL, &e), 0);
	assert_int_equal(store_mailbox_create(u, "Work/Projects/X", NULL, NULL, &e), 0);
	assert_int_equal(store_mailbox_create(u, "Work/Projects", NULL, NULL, &e), 0);
	assert_int_equal(store_subscribe(u, "Sent", true, &e), 0);
	assert_int_equal(store_subscribe(u, "Gone", true, &e), 0);

	memset(&r, 0, sizeof(r));
	assert_int_equal(store_mailbox_list(u, "*", 0, list_cb, &r, &e), 0);
	assert_int_equal(r.n, 4);
	assert_string_equal(r.names[0], "INBOX");
	assert_int_equal(r.attrs[0], STORE_MBATTR_HASNOCHILDREN);
	assert_string_equal(r.names[1], "Sent");
	assert_int_equal(r.attrs[1], STORE_MBATTR_HASNOCHILDREN | STORE_MBATTR_SUBSCRIBED);
	assert_string_equal(r.names[2], "Work/Projects");
	assert_int_equal(r.attrs[2], STORE_MBATTR_HASCHILDREN);
	assert_string_equal(r.names[3], "Work/Projects/X");

	/* % shows the missing parent Work as \NonExistent \HasChildren */
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_mailbox_list(u, "%", 0, list_cb, &r, &e), 0);
	assert_int_equal(r.n, 3);
	assert_string_equal(r.names[2], "Work");
	assert_int_equal(r.attrs[2], STORE_MBATTR_NONEXISTENT | STORE_MBATTR_HASCHILDREN);
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_mailbox_list(u, "%", STORE_LIST_NO_PARENTS, list_cb, &r, &e), 0);
	assert_int_equal(r.n, 2);

	memset(&r, 0, sizeof(r));
	assert_int_equal(store_mailbox_list(u, "Work/%", 0, list_cb, &r, &e), 0);
	assert_int_equal(r.n, 1);
	assert_string_equal(r.names[0], "Work/Projects");

	/* subscriptions, including one without a mailbox */
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_mailbox_list(u, "*", STORE_LIST_SUBSCRIBED, list_cb, &r, &e), 0);
	assert_int_equal(r.n, 2);
	assert_string_equal(r.names[0], "Gone");
	assert_true(r.attrs[0] & STORE_MBATTR_NONEXISTENT);
	assert_string_equal(r.names[1], "Sent");
	assert_int_equal(store_subscribed(u, "Sent", &e), 1);
	assert_int_equal(store_subscribe(u, "Sent", false, &e), 0);
	assert_int_equal(store_subscribed(u, "Sent", &e), 0);
	assert_int_equal(store_subscribe(u, "a//b", true, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);

	/* deleted mailboxes only with STORE_LIST_DELETED */
	assert_int_equal(store_mailbox_delete(u, "Sent", &e), 0);
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_mailbox_list(u, "Sent", 0, list_cb, &r, &e), 0);
	assert_int_equal(r.n, 0);
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_mailbox_list(u, "Sent", STORE_LIST_DELETED, list_cb, &r, &e), 0);
	assert_int_equal(r.n, 1);
	assert_int_equal(r.attrs[0], STORE_MBATTR_DELETED);
	store_user_close(&u);
}

static void
test_append_read(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33], guid[41];
	struct store_append_msg m[3];
	struct store_append_result res[3];
	struct store_record_full rf;
	struct store_status sst;
	struct buf body = BUF_INIT;
	struct store_blob b;
	char *d[3];
	uint32_t uv = 0;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	memset(m, 0, sizeof(m));
	for (int i = 0; i < 3; i++) {
		d[i] = make_msg(i, i == 2 ? 200000 : 3000);  /* the last one is a file body */
		m[i].data = d[i];
		m[i].len = strlen(d[i]);
		m[i].internaldate = 1700000000 + i;
	}
	m[0].sysflags = STORE_FLAG_SEEN;
	m[1].keywords = "$Junk  foo $junk";
	assert_int_equal(store_append(u, inbox, m, 3, res, &uv, &e), 0);
	assert_int_equal(res[0].uid, 1);
	assert_int_equal(res[1].uid, 2);
	assert_int_equal(res[2].uid, 3);
	assert_int_equal(res[0].modseq, res[2].modseq);  /* one transaction, one modseq */
	assert_true(uv > 0);
	for (int i = 0; i < 3; i++) {
		store_guid(d[i], strlen(d[i]), guid);
		assert_string_equal(res[i].guid, guid);
		buf_reset(&body);
		assert_int_equal(store_blob_read(u, guid, &body, &e), 0);
		assert_int_equal(body.len, strlen(d[i]));
		assert_memory_equal(body.data, d[i], body.len);
		assert_int_equal(store_blob_map(u, guid, &b, &e), 0);
		assert_int_equal(b.len, strlen(d[i]));
		assert_memory_equal(b.data, d[i], b.len);
		store_blob_release(&b);
		assert_int_equal(store_blob_exists(u, guid, &e), 1);
	}
	assert_int_equal(store_record_get(u, inbox, 2, &rf, &e), 0);
	assert_string_equal(rf.rec.keywords, "$Junk foo");
	assert_int_equal(rf.rec.internaldate, 1700000001);
	assert_non_null(rf.envelope);
	assert_non_null(strstr(rf.envelope, "message 1"));
	assert_non_null(rf.bodystructure);
	assert_non_null(strstr(rf.bodystructure, "\"TEXT\" \"PLAIN\""));
	assert_null(rf.body);    /* BODY is computed from the message at FETCH */
	assert_non_null(rf.parts);
	store_record_full_free(&rf);
	assert_int_equal(store_record_get(u, inbox, 99, &rf, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);

	assert_int_equal(store_mailbox_status_id(u, inbox, &sst, &e), 0);
	assert_int_equal(sst.messages, 3);
	assert_int_equal(store_mailbox_status_id(u, "nope", &sst, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.messages, 3);
	assert_int_equal(sst.unseen, 2);
	assert_int_equal(sst.recent, 3);
	assert_int_equal(sst.uidnext, 4);
	assert_int_equal(sst.uidvalidity, uv);
	assert_int_equal(sst.highestmodseq, res[0].modseq);

	/* bad input: nothing appended */
	{
		struct store_append_msg bad = { "x", 1, 0, 0x100, NULL };
		struct store_append_msg badkw = { "x", 1, 0, 0, "ok (bad" };
		struct store_append_msg two[2] = { { "y", 1, 0, 0, NULL }, { "z", 1, 0, 0, "a]b" } };
		assert_int_equal(store_append(u, inbox, &bad, 1, NULL, NULL, &e), -1);
		assert_int_equal(e.kind, ERR_INVALID);
		assert_int_equal(store_append(u, inbox, &badkw, 1, NULL, NULL, &e), -1);
		assert_int_equal(e.kind, ERR_INVALID);
		assert_int_equal(store_append(u, inbox, two, 2, NULL, NULL, &e), -1);
		assert_int_equal(store_append(u, "ffffffffffffffffffffffffffffffff", &bad, 0, NULL, NULL, &e), -1);
		assert_int_equal(store_blob_exists(u, "zz", &e), -1);
		assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
		assert_int_equal(sst.messages, 3);
	}
	/* the same message twice: one body, two records */
	{
		struct store_append_msg again = m[2];
		assert_int_equal(store_append(u, inbox, &again, 1, res, NULL, &e), 0);
		assert_int_equal(res[0].uid, 4);
	}
	for (int i = 0; i < 3; i++)
		free(d[i]);
	buf_free(&body);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

static void
test_flags(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33];
	struct store_uids changed = { 0 }, failed = { 0 };
	struct store_range all = { 1, 100 }, one = { 2, 2 };
	struct store_record_full rf;
	struct buf kw = BUF_INIT, fs = BUF_INIT;
	uint32_t sys;
	uint64_t m1, m2, m0;
	struct err e;

	(void)state;
	assert_int_equal(store_flags_parse("\\seen $Junk \\Recent foo \\FLAGGED", &sys, &kw, &e), 0);
	assert_int_equal(sys, STORE_FLAG_SEEN | STORE_FLAG_FLAGGED);
	assert_string_equal(buf_cstr(&kw), "$Junk foo");
	store_flags_format(sys, buf_cstr(&kw), &fs);
	assert_string_equal(buf_cstr(&fs), "\\Flagged \\Seen $Junk foo");
	assert_int_equal(store_flags_parse("\\Bogus", &sys, &kw, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);

	mbid_of(u, "INBOX", inbox);
	for (int i = 0; i < 3; i++)
		append1(u, inbox, i, 1000, 0, NULL);

	assert_int_equal(store_flags(u, inbox, &all, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, "$A",
		0, &changed, &failed, &m1, &e), 0);
	assert_int_equal(changed.n, 3);
	assert_int_equal(failed.n, 0);
	assert_true(m1 > 0);
	/* no-op: no modseq, nothing changed */
	changed.n = 0;
	m0 = modseq_of(u);
	assert_int_equal(store_flags(u, inbox, &all, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, "$a",
		0, &changed, NULL, &m2, &e), 0);
	assert_int_equal(changed.n, 0);
	assert_int_equal(m2, 0);
	assert_int_equal(modseq_of(u), m0);
	/* remove on one */
	assert_int_equal(store_flags(u, inbox, &one, 1, STORE_FLAGS_REMOVE, STORE_FLAG_SEEN, "$A",
		0, &changed, NULL, &m2, &e), 0);
	assert_int_equal(changed.n, 1);
	assert_int_equal(store_record_get(u, inbox, 2, &rf, &e), 0);
	assert_int_equal(rf.rec.sysflags, 0);
	assert_string_equal(rf.rec.keywords, "");
	assert_int_equal(rf.rec.modseq, m2);
	store_record_full_free(&rf);
	/* UNCHANGEDSINCE: uid 2 changed after m1, so it fails; 1 and 3 change */
	changed.n = 0;
	assert_int_equal(store_flags(u, inbox, &all, 1, STORE_FLAGS_REPLACE, STORE_FLAG_ANSWERED,
		"x y", m1, &changed, &failed, &m2, &e), 0);
	assert_int_equal(failed.n, 1);
	assert_int_equal(failed.v[0], 2);
	assert_int_equal(changed.n, 2);
	assert_int_equal(store_record_get(u, inbox, 3, &rf, &e), 0);
	assert_int_equal(rf.rec.sysflags, STORE_FLAG_ANSWERED);
	assert_string_equal(rf.rec.keywords, "x y");
	store_record_full_free(&rf);
	/* bad input */
	m0 = modseq_of(u);
	assert_int_equal(store_flags(u, inbox, &all, 1, STORE_FLAGS_ADD, 0, "bad\"kw", 0, NULL, NULL,
		NULL, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(store_flags(u, inbox, &all, 1, STORE_FLAGS_ADD, 0x400, NULL, 0, NULL, NULL,
		NULL, &e), -1);
	{
		struct store_range rev = { 5, 1 };
		assert_int_equal(store_flags(u, inbox, &rev, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0,
			NULL, NULL, NULL, &e), -1);
		assert_int_equal(e.kind, ERR_INVALID);
	}
	assert_int_equal(store_flags(u, "0123456789abcdef0123456789abcdef", &all, 1, STORE_FLAGS_ADD,
		STORE_FLAG_SEEN, NULL, 0, NULL, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	/* unknown uids are ignored (IMAP) */
	{
		struct store_range far = { 50, 60 };
		changed.n = 0;
		assert_int_equal(store_flags(u, inbox, &far, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0,
			&changed, NULL, NULL, &e), 0);
		assert_int_equal(changed.n, 0);
	}
	assert_int_equal(modseq_of(u), m0);
	store_uids_free(&changed);
	store_uids_free(&failed);
	buf_free(&kw);
	buf_free(&fs);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

struct since_ctx {
	int n, tomb;
	uint32_t uids[64];
};

static int
since_cb(void *ctx, const struct store_record *r)
{
	struct since_ctx *c = ctx;

	if (c->n < 64)
		c->uids[c->n] = r->uid;
	c->n++;
	if (r->expunged_modseq)
		c->tomb++;
	return 0;
}

static void
test_expunge(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33];
	struct store_uids ex = { 0 };
	struct store_range r23 = { 2, 3 };
	struct store_quota q;
	struct since_ctx sc;
	uint64_t m0;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	for (int i = 0; i < 5; i++)
		append1(u, inbox, i, 1000, i % 2 ? STORE_FLAG_DELETED : 0, NULL);
	m0 = modseq_of(u);
	/* EXPUNGE: only \Deleted (uids 2 and 4) */
	assert_int_equal(store_expunge(u, inbox, NULL, 0, true, &ex, &e), 0);
	assert_int_equal(ex.n, 2);
	assert_int_equal(ex.v[0], 2);
	assert_int_equal(ex.v[1], 4);
	/* POP3-style: exactly these uids (3; 2 is gone already) */
	ex.n = 0;
	assert_int_equal(store_expunge(u, inbox, &r23, 1, false, &ex, &e), 0);
	assert_int_equal(ex.n, 1);
	assert_int_equal(ex.v[0], 3);
	assert_int_equal(store_quota_get(u, &q, &e), 0);
	assert_int_equal(q.used_messages, 2);
	/* tombstones are visible to "since" */
	memset(&sc, 0, sizeof(sc));
	assert_int_equal(store_records_since(u, inbox, m0, since_cb, &sc, &e), 0);
	assert_int_equal(sc.n, 3);
	assert_int_equal(sc.tomb, 3);
	/* nothing to expunge: no modseq */
	m0 = modseq_of(u);
	ex.n = 0;
	assert_int_equal(store_expunge(u, inbox, &r23, 1, false, &ex, &e), 0);
	assert_int_equal(ex.n, 0);
	assert_int_equal(modseq_of(u), m0);
	assert_int_equal(store_expunge(u, "nope", NULL, 0, true, &ex, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	store_uids_free(&ex);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

static int
count_files(const char *dir)
{
	char cmd[512];
	FILE *f;
	int n = -1;

	snprintf(cmd, sizeof(cmd), "find '%s' -type f | wc -l", dir);
	f = popen(cmd, "r");
	if (f == NULL)
		return -1;
	if (fscanf(f, "%d", &n) != 1)
		n = -1;
	pclose(f);
	return n;
}

static void
test_copy_move(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33];
	struct store_mailbox arch;
	struct store_uids su = { 0 }, du = { 0 };
	struct store_range all = { 1, UINT32_MAX };
	struct store_record_full a, b;
	struct store_status sst;
	struct buf blobs = BUF_INIT;
	uint32_t uv = 0;
	uint64_t m0;
	int files;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	assert_int_equal(store_mailbox_create(u, "Archive", NULL, &arch, &e), 0);
	append1(u, inbox, 1, 1000, STORE_FLAG_FLAGGED, "k1");
	append1(u, inbox, 2, 1000, 0, NULL);
	store_user_dir(st, "alice", &blobs);
	buf_puts(&blobs, "/blobs");
	files = count_files(buf_cstr(&blobs));
	assert_int_equal(files, 2);  /* setup_files: every body is a file */

	assert_int_equal(store_copy(u, inbox, &all, 1, arch.uniqueid, false, &su, &du, &uv, &e), 0);
	assert_int_equal(su.n, 2);
	assert_int_equal(du.n, 2);
	assert_int_equal(du.v[0], 1);
	assert_int_equal(uv, arch.uidvalidity);
	assert_int_equal(count_files(buf_cstr(&blobs)), 2);   /* no body copied */
	assert_int_equal(store_record_get(u, inbox, 1, &a, &e), 0);
	assert_int_equal(store_record_get(u, arch.uniqueid, 1, &b, &e), 0);
	assert_string_equal(a.rec.guid, b.rec.guid);
	assert_int_equal(b.rec.sysflags, STORE_FLAG_FLAGGED);
	assert_string_equal(b.rec.keywords, "k1");
	assert_string_equal(a.envelope, b.envelope);
	store_record_full_free(&a);
	store_record_full_free(&b);

	/* move: sources expunged */
	su.n = du.n = 0;
	assert_int_equal(store_copy(u, inbox, &all, 1, arch.uniqueid, true, &su, &du, NULL, &e), 0);
	assert_int_equal(du.n, 2);
	assert_int_equal(du.v[0], 3);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.messages, 0);
	assert_int_equal(store_mailbox_status(u, "Archive", &sst, &e), 0);
	assert_int_equal(sst.messages, 4);

	/* bad input changes nothing */
	m0 = modseq_of(u);
	assert_int_equal(store_copy(u, arch.uniqueid, &all, 1, "00000000000000000000000000000000",
		false, NULL, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_int_equal(store_copy(u, arch.uniqueid, NULL, 0, inbox, false, NULL, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(modseq_of(u), m0);
	/* copy into the same mailbox works */
	assert_int_equal(store_copy(u, arch.uniqueid, &all, 1, arch.uniqueid, false, NULL, NULL, NULL,
		&e), 0);
	assert_int_equal(store_mailbox_status(u, "Archive", &sst, &e), 0);
	assert_int_equal(sst.messages, 8);
	store_uids_free(&su);
	store_uids_free(&du);
	buf_free(&blobs);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

static void
test_quota(void **state)
{
	struct store_user *u;
	char inbox[33];
	struct store_mailbox other;
	struct store_append_msg m = { 0 };
	struct store_quota q;
	struct store_range all = { 1, UINT32_MAX };
	char *d = make_msg(1, 4000);
	uint64_t m0;
	struct err e;

	(void)state;
	assert_int_equal(store_user_set_quota(st, "alice", 10000, 0, &e), 0);
	u = open_user("alice");
	mbid_of(u, "INBOX", inbox);
	assert_int_equal(store_mailbox_create(u, "Other", NULL, &other, &e), 0);
	m.data = d;
	m.len = strlen(d);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);
	m0 = modseq_of(u);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_QUOTA);
	assert_non_null(strstr(e.msg, "over quota"));
	assert_int_equal(modseq_of(u), m0);
	assert_int_equal(store_quota_get(u, &q, &e), 0);
	assert_int_equal(q.used_messages, 2);
	assert_int_equal(q.used_bytes, 8000);
	assert_int_equal(q.limit_bytes, 10000);
	/* copy over quota refused, move allowed (no net change) */
	assert_int_equal(store_copy(u, inbox, &all, 1, other.uniqueid, false, NULL, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_QUOTA);
	assert_int_equal(store_copy(u, inbox, &all, 1, other.uniqueid, true, NULL, NULL, NULL, &e), 0);
	/* messages limit; default from store options */
	assert_int_equal(store_user_set_quota(st, "alice", 0, 2, &e), 0);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_QUOTA);
	/* expunge frees quota */
	assert_int_equal(store_expunge(u, other.uniqueid, NULL, 0, false, NULL, &e), 0);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);
	store_user_close(&u);
	free(d);
	assert_int_equal(check_clean("alice"), 0);
}

static void
test_quota_default(void **state)
{
	struct store_opts o;
	struct store *st2;
	struct store_user *u;
	struct store_quota q;
	char inbox[33];
	struct store_append_msg m = { "hello", 5, 0, 0, NULL };
	struct err e;

	(void)state;
	store_opts_init(&o);
	o.quota_default_messages = 1;
	st2 = store_open(root, &o, &e);
	assert_non_null(st2);
	u = store_user_open(st2, "alice", &e);
	assert_non_null(u);
	assert_int_equal(store_quota_get(u, &q, &e), 0);
	assert_int_equal(q.limit_messages, 1);
	mbid_of(u, "INBOX", inbox);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_QUOTA);
	store_user_close(&u);
	store_close(&st2);
}

struct chg {
	int mailboxes, records, subs, tombs;
	uint64_t last;
	bool ordered;
};

static int
chg_cb(void *ctx, const struct store_change *c)
{
	struct chg *x = ctx;

	if (c->modseq < x->last)
		x->ordered = false;
	x->last = c->modseq;
	if (c->item == STORE_ITEM_MAILBOX) {
		x->mailboxes++;
		assert_non_null(c->mb);
		if (c->mb->deleted_modseq)
			x->tombs++;
	} else if (c->item == STORE_ITEM_RECORD) {
		x->records++;
		assert_non_null(c->rec);
		assert_non_null(c->mailbox_id);
		if (c->rec->expunged_modseq)
			x->tombs++;
	} else {
		x->subs++;
		assert_non_null(c->sub_name);
	}
	return 0;
}

static void
test_modseq_changes(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33];
	struct store_mailbox mb;
	struct store_range r1 = { 1, 1 };
	struct chg c;
	uint64_t m0, m;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	m0 = modseq_of(u);
	append1(u, inbox, 1, 100, 0, NULL);
	assert_true((m = modseq_of(u)) == m0 + 1);
	append1(u, inbox, 2, 100, 0, NULL);
	assert_int_equal(store_flags(u, inbox, &r1, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0,
		NULL, NULL, NULL, &e), 0);
	assert_int_equal(store_mailbox_create(u, "F", NULL, &mb, &e), 0);
	assert_int_equal(store_mailbox_rename(u, "F", "G", &e), 0);
	assert_int_equal(store_subscribe(u, "G", true, &e), 0);
	assert_int_equal(store_expunge(u, inbox, &r1, 1, false, NULL, &e), 0);
	assert_int_equal(store_mailbox_delete(u, "G", &e), 0);
	assert_int_equal(modseq_of(u), m0 + 8);

	memset(&c, 0, sizeof(c));
	c.ordered = true;
	assert_int_equal(store_changes_since(u, m0, chg_cb, &c, &e), 0);
	assert_true(c.ordered);
	assert_int_equal(c.records, 2);     /* uid 1 (expunged), uid 2 */
	assert_int_equal(c.mailboxes, 1);   /* G, latest state: deleted */
	assert_int_equal(c.subs, 1);
	assert_int_equal(c.tombs, 2);
	memset(&c, 0, sizeof(c));
	assert_int_equal(store_changes_since(u, modseq_of(u), chg_cb, &c, &e), 0);
	assert_int_equal(c.records + c.mailboxes + c.subs, 0);
	store_user_close(&u);
}

static uint32_t sum_crc;
static int
crc_cb(void *ctx, const struct store_record *r)
{
	(void)ctx;
	if (r->expunged_modseq == 0)
		sum_crc ^= store_record_crc(r);
	return 0;
}

static void
test_sync_crc(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33];
	struct store_mailbox mb;
	struct store_range r2 = { 2, 2 };
	struct err e;
	uint32_t c0;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	assert_int_equal(store_mailbox_get(u, "INBOX", &mb, &e), 0);
	assert_int_equal(mb.sync_crc, 0);
	for (int i = 0; i < 4; i++)
		append1(u, inbox, i, 500, 0, i == 1 ? "kw" : NULL);
	assert_int_equal(store_mailbox_get(u, "INBOX", &mb, &e), 0);
	c0 = mb.sync_crc;
	assert_true(c0 != 0);
	sum_crc = 0;
	assert_int_equal(store_records_since(u, inbox, 0, crc_cb, NULL, &e), 0);
	assert_int_equal(sum_crc, c0);
	assert_int_equal(store_flags(u, inbox, &r2, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0,
		NULL, NULL, NULL, &e), 0);
	assert_int_equal(store_mailbox_get(u, "INBOX", &mb, &e), 0);
	assert_true(mb.sync_crc != c0);
	assert_int_equal(store_expunge(u, inbox, &r2, 1, false, NULL, &e), 0);
	assert_int_equal(store_mailbox_get(u, "INBOX", &mb, &e), 0);
	sum_crc = 0;
	assert_int_equal(store_records_since(u, inbox, 0, crc_cb, NULL, &e), 0);
	assert_int_equal(sum_crc, mb.sync_crc);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

/* STATUS RECENT counts from the nearer end of the UID range (one
 * subquery or the other); both ends give the brute-force answer. */
static void
test_status_recent_both_ends(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_snapshot *snap = NULL;
	struct store_status sst;
	struct store_range r12 = { 1, 2 }, r12b = { 12, 12 };
	char inbox[33];
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	for (int i = 0; i < 10; i++)
		append1(u, inbox, i, 200, 0, NULL);
	/* never selected: recentuid 1, all of them are recent */
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.recent, 10);
	assert_int_equal(store_expunge(u, inbox, &r12, 1, false, NULL, &e), 0);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.messages, 8);
	assert_int_equal(sst.recent, 8);
	/* a session claims them: recentuid 11, counted from the top */
	assert_int_equal(store_snapshot_open(u, inbox, STORE_SNAP_CLAIM_RECENT, &snap, &e), 0);
	store_snapshot_free(&snap);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.recent, 0);
	for (int i = 10; i < 13; i++)
		append1(u, inbox, i, 200, 0, NULL);
	assert_int_equal(store_expunge(u, inbox, &r12b, 1, false, NULL, &e), 0);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.messages, 10);
	assert_int_equal(sst.recent, 2);      /* 11 and 13 */
	/* 20 more: uidnext 34 puts recentuid 11 in the lower half */
	for (int i = 13; i < 33; i++)
		append1(u, inbox, i, 200, 0, NULL);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.uidnext, 34);
	assert_int_equal(sst.messages, 30);
	assert_int_equal(sst.recent, 22);     /* 11, 13, 14..33 */
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

static void
test_snapshot(void **state)
{
	struct store_user *u = open_user("alice"), *w = open_user("alice");
	char inbox[33];
	struct store_snapshot *snap = NULL;
	struct store_snapdiff d;
	struct store_range r2 = { 2, 2 }, r4 = { 4, 4 };
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	for (int i = 0; i < 5; i++)
		append1(w, inbox, i, 300, 0, NULL);
	assert_int_equal(store_snapshot_open(u, inbox, STORE_SNAP_CLAIM_RECENT, &snap, &e), 0);
	assert_int_equal(snap->n, 5);
	assert_int_equal(snap->first_recent, 1);
	assert_int_equal(snap->uidnext, 6);
	/* SELECT reads uid, flags, modseq and keywords only; guid, size and
	 * internaldate come for the records asked for, as store_record_get has them */
	for (size_t i = 0; i < snap->n; i++)
		assert_false(snap->recs[i].meta);
	assert_int_equal(store_snapshot_meta(u, snap, 1, 3, &e), 0);
	assert_false(snap->recs[0].meta);
	assert_false(snap->recs[3].meta);
	for (size_t i = 1; i < 3; i++) {
		struct store_record_full rf;

		assert_true(snap->recs[i].meta);
		assert_int_equal(store_record_get(u, inbox, snap->recs[i].uid, &rf, &e), 0);
		assert_string_equal(snap->recs[i].guid, rf.rec.guid);
		assert_int_equal(snap->recs[i].size, rf.rec.size);
		assert_int_equal(snap->recs[i].internaldate, rf.rec.internaldate);
		store_record_full_free(&rf);
	}
	{
		struct store_snapshot *s2 = NULL;

		assert_int_equal(store_snapshot_open(w, inbox, STORE_SNAP_META, &s2, &e), 0);
		assert_int_equal(store_snapshot_meta(u, snap, 0, snap->n, &e), 0);
		for (size_t i = 0; i < snap->n; i++) {
			assert_true(s2->recs[i].meta);
			assert_true(snap->recs[i].meta);
			assert_string_equal(snap->recs[i].guid, s2->recs[i].guid);
			assert_int_equal(snap->recs[i].size, s2->recs[i].size);
		}
		store_snapshot_free(&s2);
	}
	/* a second session gets no \Recent */
	{
		struct store_snapshot *s2 = NULL;
		assert_int_equal(store_snapshot_open(w, inbox, STORE_SNAP_CLAIM_RECENT, &s2, &e), 0);
		assert_int_equal(s2->first_recent, 0);
		store_snapshot_free(&s2);
	}
	/* another "process" changes things */
	assert_int_equal(store_flags(w, inbox, &r4, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0,
		NULL, NULL, NULL, &e), 0);
	assert_int_equal(store_expunge(w, inbox, &r2, 1, false, NULL, &e), 0);
	append1(w, inbox, 10, 300, 0, NULL);
	/* the snapshot did not move */
	assert_int_equal(snap->n, 5);
	/* refresh without EXPUNGE: marks uid 2, reports flags of 4 and EXISTS 6 */
	assert_int_equal(store_snapshot_refresh(u, snap, 0, &d, &e), 0);
	assert_int_equal(d.expunged_seq.n, 0);
	assert_int_equal(snap->n, 6);
	assert_true(snap->recs[1].expunged);
	assert_int_equal(d.new_exists, 6);
	assert_int_equal(d.changed_seq.n, 1);
	assert_int_equal(d.changed_seq.v[0], 4);
	assert_int_equal(snap->recs[3].sysflags, STORE_FLAG_SEEN);
	assert_int_equal(d.new_recent, 1);
	assert_true(snap->recs[5].meta);     /* a refresh reads the whole record */
	assert_int_equal(snap->recs[5].size, snap->recs[0].size);
	store_snapdiff_free(&d);
	/* now with EXPUNGE */
	assert_int_equal(store_snapshot_refresh(u, snap, STORE_REFRESH_EXPUNGE, &d, &e), 0);
	assert_int_equal(d.expunged_seq.n, 1);
	assert_int_equal(d.expunged_seq.v[0], 2);
	assert_int_equal(snap->n, 5);
	assert_int_equal(snap->recs[1].uid, 3);
	assert_int_equal(snap->recs[4].uid, 6);
	assert_int_equal(d.new_exists, 0);
	store_snapdiff_free(&d);
	/* mailbox deleted under the session */
	{
		struct store_mailbox x;
		struct store_snapshot *s3 = NULL;
		assert_int_equal(store_mailbox_create(w, "Tmp", NULL, &x, &e), 0);
		assert_int_equal(store_snapshot_open(u, x.uniqueid, 0, &s3, &e), 0);
		assert_int_equal(store_mailbox_delete(w, "Tmp", &e), 0);
		assert_int_equal(store_snapshot_refresh(u, s3, 0, &d, &e), 0);
		assert_true(d.mailbox_gone);
		store_snapdiff_free(&d);
		store_snapshot_free(&s3);
	}
	store_snapshot_free(&snap);
	assert_int_equal(store_snapshot_open(u, "00000000000000000000000000000000", 0, &snap, &e), -1);
	assert_null(snap);
	store_user_close(&w);
	store_user_close(&u);
}

struct hook_log {
	int n;
	enum store_change_kind kinds[16];
	char ids[16][33];
};

static void
hook(void *ctx, const char *user, enum store_change_kind kind, const char *mbid)
{
	struct hook_log *h = ctx;

	assert_string_equal(user, "alice");
	if (h->n < 16) {
		h->kinds[h->n] = kind;
		str_lcpy(h->ids[h->n], mbid ? mbid : "", sizeof(h->ids[0]));
	}
	h->n++;
}

static void
test_change_hook(void **state)
{
	struct store_user *u;
	struct hook_log h;
	char inbox[33];
	struct err e;

	(void)state;
	memset(&h, 0, sizeof(h));
	store_set_change_hook(st, hook, &h);
	u = open_user("alice");
	mbid_of(u, "INBOX", inbox);
	h.n = 0;
	append1(u, inbox, 1, 100, 0, NULL);
	assert_int_equal(h.n, 1);
	assert_int_equal(h.kinds[0], STORE_CHANGE_MAILBOX);
	assert_string_equal(h.ids[0], inbox);
	/* failures fire nothing */
	assert_int_equal(store_mailbox_create(u, "INBOX", NULL, NULL, &e), -1);
	assert_int_equal(h.n, 1);
	assert_int_equal(store_subscribe(u, "INBOX", true, &e), 0);
	assert_int_equal(h.n, 2);
	assert_int_equal(h.kinds[1], STORE_CHANGE_SUB);
	/* a transaction fires at commit, once per mailbox */
	assert_int_equal(store_txn_begin(u, &e), 0);
	append1(u, inbox, 2, 100, 0, NULL);
	append1(u, inbox, 3, 100, 0, NULL);
	assert_int_equal(h.n, 2);
	assert_int_equal(store_txn_commit(u, &e), 0);
	assert_int_equal(h.n, 3);
	/* a rolled-back transaction fires nothing */
	assert_int_equal(store_txn_begin(u, &e), 0);
	append1(u, inbox, 4, 100, 0, NULL);
	store_txn_rollback(u);
	assert_int_equal(h.n, 3);
	assert_int_equal(store_user_passwd(st, "alice", "pw2", &e), 0);
	assert_int_equal(h.n, 4);
	assert_int_equal(h.kinds[3], STORE_CHANGE_PASSWORD);
	store_user_close(&u);
	store_set_change_hook(st, NULL, NULL);
}

static void
test_txn(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33];
	struct store_status sst;
	struct err e;
	uint64_t m0;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	assert_int_equal(store_txn_commit(u, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(store_txn_begin(u, &e), 0);
	assert_int_equal(store_txn_begin(u, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	append1(u, inbox, 1, 100, 0, NULL);
	/* a failing call inside rolls back alone */
	assert_int_equal(store_mailbox_create(u, "X", NULL, NULL, &e), 0);
	assert_int_equal(store_mailbox_create(u, "X", NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_EXISTS);
	append1(u, inbox, 2, 100, 0, NULL);
	assert_int_equal(store_txn_commit(u, &e), 0);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.messages, 2);
	assert_int_equal(store_mailbox_get(u, "X", NULL, &e), 0);
	/* rollback discards everything */
	m0 = modseq_of(u);
	assert_int_equal(store_txn_begin(u, &e), 0);
	append1(u, inbox, 3, 100, 0, NULL);
	assert_int_equal(store_mailbox_create(u, "Y", NULL, NULL, &e), 0);
	store_txn_rollback(u);
	assert_int_equal(modseq_of(u), m0);
	assert_int_equal(store_mailbox_get(u, "Y", NULL, &e), -1);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.messages, 2);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

static void
test_read_only(void **state)
{
	struct store_opts o;
	struct store *ro;
	struct store_user *u;
	char inbox[33];
	struct store_append_msg m = { "x", 1, 0, 0, NULL };
	struct store_range all = { 1, 10 };
	struct store_snapshot *snap = NULL;
	struct store_status sst;
	struct err e;

	(void)state;
	u = open_user("alice");
	mbid_of(u, "INBOX", inbox);
	append1(u, inbox, 1, 100, 0, NULL);
	store_user_close(&u);

	store_opts_init(&o);
	o.read_only = true;
	ro = store_open(root, &o, &e);
	assert_non_null(ro);
	assert_true(store_is_read_only(ro));
	u = store_user_open(ro, "alice", &e);
	assert_non_null(u);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_PERM);
	assert_string_equal(e.msg, "read-only replica");
	assert_int_equal(store_flags(u, inbox, &all, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, NULL, 0,
		NULL, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_PERM);
	assert_int_equal(store_expunge(u, inbox, NULL, 0, false, NULL, &e), -1);
	assert_int_equal(store_mailbox_create(u, "X", NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_PERM);
	assert_int_equal(store_mailbox_rename(u, "INBOX", "X", &e), -1);
	assert_int_equal(store_subscribe(u, "INBOX", true, &e), -1);
	assert_int_equal(store_txn_begin(u, &e), -1);
	assert_int_equal(store_user_add(ro, "carol", "x", &e), -1);
	assert_int_equal(e.kind, ERR_PERM);
	assert_int_equal(store_check(ro, "alice", true, NULL, NULL, &e), -1);
	/* reads work, and SELECT claims no \Recent */
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.messages, 1);
	assert_int_equal(store_snapshot_open(u, inbox, STORE_SNAP_CLAIM_RECENT, &snap, &e), 0);
	assert_int_equal(snap->n, 1);
	assert_int_equal(snap->first_recent, 0);
	store_snapshot_free(&snap);
	store_user_close(&u);
	/* failover: the same handle becomes writable */
	store_set_read_only(ro, false);
	u = store_user_open(ro, "alice", &e);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);
	store_user_close(&u);
	store_close(&ro);
}

static void
test_watch_fd(void **state)
{
	struct store_user *u = open_user("alice"), *w;
	char inbox[33];
	struct pollfd pfd;
	struct timespec t0, t1;
	pid_t pid;
	int fd, status;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	fd = store_user_watch_fd(u, &e);
	assert_true(fd >= 0);
	pfd.fd = fd;
	pfd.events = POLLIN;
	assert_int_equal(poll(&pfd, 1, 0), 0);   /* quiet */
	/* another process commits: we wake */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store *st2 = store_open(root, NULL, &e);
		struct store_user *c = st2 ? store_user_open(st2, "alice", &e) : NULL;
		struct store_append_msg m = { "child", 5, 0, 0, NULL };
		usleep(100000);
		_exit(c != NULL && store_append(c, inbox, &m, 1, NULL, NULL, &e) == 0 ? 0 : 1);
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(poll(&pfd, 1, 5000), 1);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true((t1.tv_sec - t0.tv_sec) < 2);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	store_user_watch_ack(u);
	assert_int_equal(poll(&pfd, 1, 0), 0);
	/* a failed write does not wake */
	w = open_user("alice");
	assert_int_equal(store_mailbox_create(w, "INBOX", NULL, NULL, &e), -1);
	assert_int_equal(poll(&pfd, 1, 50), 0);
	assert_int_equal(store_mailbox_create(w, "New", NULL, NULL, &e), 0);
	assert_int_equal(poll(&pfd, 1, 1000), 1);
	store_user_close(&w);
	store_user_close(&u);
}

/* Several processes write the same user at once: no lost update. */
static void
test_concurrent_writers(void **state)
{
	enum { NPROC = 4, PER = 40 };
	struct store_user *u;
	char inbox[33];
	struct store_snapshot *snap = NULL;
	pid_t pids[NPROC];
	struct err e;

	(void)state;
	u = open_user("alice");
	mbid_of(u, "INBOX", inbox);
	store_user_close(&u);
	for (int p = 0; p < NPROC; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			struct store *s2 = store_open(root, NULL, &e);
			struct store_user *c = s2 ? store_user_open(s2, "alice", &e) : NULL;
			int bad = c == NULL;
			store_stats_reset();
			for (int i = 0; i < PER && !bad; i++) {
				char *d = make_msg(p * 1000 + i, i % 10 == 0 ? 70000 : 2000);
				struct store_append_msg m = { d, strlen(d), 0, 0, NULL };
				struct store_append_result r;
				struct store_range rr;
				if (store_append(c, inbox, &m, 1, &r, NULL, &e) < 0)
					bad = 1;
				rr.lo = rr.hi = r.uid;
				/* flag our own message, concurrently with the others */
				if (!bad && store_flags(c, inbox, &rr, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN,
					"p", 0, NULL, NULL, NULL, &e) < 0)
					bad = 1;
				free(d);
			}
			if (bad)
				fprintf(stderr, "child: %s\n", e.msg);
			{
				/* every durable commit was either synced by us or covered
				 * by another process's sync */
				struct store_stats ss;
				store_stats_get(&ss);
				if (ss.commits != 2 * PER || ss.wal_syncs + ss.shared_commits != ss.commits) {
					fprintf(stderr, "child: stats commits=%llu wal=%llu shared=%llu\n",
						(unsigned long long)ss.commits, (unsigned long long)ss.wal_syncs,
						(unsigned long long)ss.shared_commits);
					bad = 1;
				}
			}
			store_user_close(&c);
			store_close(&s2);
			_exit(bad);
		}
	}
	for (int p = 0; p < NPROC; p++) {
		int status;
		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	u = open_user("alice");
	assert_int_equal(store_snapshot_open(u, inbox, 0, &snap, &e), 0);
	assert_int_equal(snap->n, NPROC * PER);
	for (size_t i = 0; i < snap->n; i++) {
		assert_int_equal(snap->recs[i].uid, i + 1);
		assert_int_equal(snap->recs[i].sysflags, STORE_FLAG_SEEN);
		assert_string_equal(snap->recs[i].keywords, "p");
	}
	store_snapshot_free(&snap);
	assert_int_equal(modseq_of(u), 1 + 2 * NPROC * PER);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

/* Readers never see half a transaction: writers append batches of three
 * while this process keeps taking snapshots. */
static void
test_no_torn_reads(void **state)
{
	enum { NPROC = 3, BATCHES = 25 };
	struct store_user *u = open_user("alice");
	char inbox[33];
	pid_t pids[NPROC];
	int snaps = 0, running = NPROC;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	for (int p = 0; p < NPROC; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			struct store *s2 = store_open(root, NULL, &e);
			struct store_user *c = s2 ? store_user_open(s2, "alice", &e) : NULL;
			int bad = c == NULL;
			for (int b = 0; b < BATCHES && !bad; b++) {
				char *d[3];
				struct store_append_msg m[3];
				memset(m, 0, sizeof(m));
				for (int k = 0; k < 3; k++) {
					d[k] = make_msg(p * 10000 + b * 3 + k, 1500);
					m[k].data = d[k];
					m[k].len = strlen(d[k]);
				}
				if (store_append(c, inbox, m, 3, NULL, NULL, &e) < 0)
					bad = 1;
				for (int k = 0; k < 3; k++)
					free(d[k]);
			}
			store_user_close(&c);
			store_close(&s2);
			_exit(bad);
		}
	}
	while (running > 0) {
		struct store_snapshot *snap = NULL;
		struct store_status sst;
		int status;
		assert_int_equal(store_snapshot_open(u, inbox, 0, &snap, &e), 0);
		assert_int_equal(snap->n % 3, 0);
		for (size_t i = 0; i < snap->n; i++)
			assert_int_equal(snap->recs[i].uid, i + 1);
		assert_int_equal(snap->uidnext, snap->n + 1);
		store_snapshot_free(&snap);
		assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
		assert_int_equal(sst.messages % 3, 0);
		snaps++;
		for (int p = 0; p < NPROC; p++) {
			if (pids[p] > 0 && waitpid(pids[p], &status, WNOHANG) == pids[p]) {
				assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
				pids[p] = 0;
				running--;
			}
		}
	}
	assert_true(snaps > 1);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

/* Group commit: every commit is accounted for as either a WAL sync this
 * process led or a share of another's. */
static void
test_group_commit_stats(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_stats s;
	char inbox[33];

	(void)state;
	mbid_of(u, "INBOX", inbox);
	store_stats_reset();
	for (int i = 0; i < 10; i++)
		append1(u, inbox, i, 100, 0, NULL);
	store_stats_get(&s);
	assert_int_equal(s.commits, 10);
	assert_int_equal(s.appended, 10);
	assert_int_equal(s.wal_syncs + s.shared_commits, 10);
	assert_int_equal(s.wal_syncs, 10);   /* alone: one sync each */
	assert_int_equal(s.blob_syncs, 0);   /* inline bodies */
	store_user_close(&u);
}

static void
test_failpoint_error(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33];
	struct store_append_msg m = { "hello", 5, 0, 0, NULL };
	struct store_status sst;
	uint64_t m0;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	m0 = modseq_of(u);
	assert_int_equal(failpoint_set("store.append.before_commit=error"), 0);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_TEMP);
	assert_int_equal(modseq_of(u), m0);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.messages, 0);
	assert_int_equal(failpoint_set("store.expunge.before_commit=error"), 0);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);
	assert_int_equal(store_expunge(u, inbox, NULL, 0, false, NULL, &e), -1);
	assert_int_equal(store_mailbox_status(u, "INBOX", &sst, &e), 0);
	assert_int_equal(sst.messages, 1);
	failpoint_set("");
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

/* A file body whose write "fails" leaves no orphan and no record. */
static void
test_failpoint_blob(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33];
	char *d = make_msg(1, 100000);
	struct store_append_msg m = { d, strlen(d), 0, 0, NULL };
	struct buf blobs = BUF_INIT;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	assert_int_equal(failpoint_set("store.append.after_blob_fsync=error"), 0);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), -1);
	failpoint_set("");
	store_user_dir(st, "alice", &blobs);
	buf_puts(&blobs, "/blobs");
	assert_int_equal(count_files(buf_cstr(&blobs)), 0);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);
	assert_int_equal(count_files(buf_cstr(&blobs)), 1);
	free(d);
	buf_free(&blobs);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

static void
test_repl(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_mailbox mb, got;
	struct store_record r;
	struct store_record_full rf;
	const char *body = "From: x@y\r\nSubject: replicated\r\n\r\nhi\r\n";
	char guid[41], inbox[33];
	struct err e;

	(void)state;
	store_guid(body, strlen(body), guid);
	/* body integrity */
	assert_int_equal(store_repl_blob(u, guid, "tampered", 8, &e), -1);
	assert_int_equal(e.kind, ERR_CORRUPT);
	assert_int_equal(store_blob_exists(u, guid, &e), 0);
	assert_int_equal(store_repl_blob(u, guid, body, strlen(body), &e), 0);
	assert_int_equal(store_repl_blob(u, guid, body, strlen(body), &e), 0);  /* idempotent */
	assert_int_equal(store_blob_exists(u, guid, &e), 1);

	/* INBOX adoption: the master's uniqueid replaces an untouched INBOX */
	memset(&mb, 0, sizeof(mb));
	str_lcpy(mb.uniqueid, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", sizeof(mb.uniqueid));
	str_lcpy(mb.name, "INBOX", sizeof(mb.name));
	mb.uidvalidity = 12345;
	mb.uidnext = 10;
	mb.highestmodseq = 500;
	mb.createdmodseq = 3;
	mb.modseq = 3;
	assert_int_equal(store_repl_mailbox(u, &mb, &e), 0);
	mbid_of(u, "INBOX", inbox);
	assert_string_equal(inbox, mb.uniqueid);
	assert_int_equal(store_mailbox_get(u, "INBOX", &got, &e), 0);
	assert_int_equal(got.uidvalidity, 12345);
	assert_int_equal(got.uidnext, 10);
	assert_true(modseq_of(u) >= 500);

	memset(&r, 0, sizeof(r));
	r.uid = 7;
	memcpy(r.guid, guid, sizeof(r.guid));
	r.internaldate = 1600000000;
	r.sysflags = STORE_FLAG_SEEN;
	r.keywords = "b a";
	r.modseq = 499;
	assert_int_equal(store_repl_record(u, inbox, &r, &e), 0);
	assert_int_equal(store_repl_record(u, inbox, &r, &e), 0);   /* idempotent */
	assert_int_equal(store_record_get(u, inbox, 7, &rf, &e), 0);
	assert_int_equal(rf.rec.modseq, 499);
	assert_int_equal(rf.rec.size, strlen(body));
	assert_string_equal(rf.rec.keywords, "a b");
	assert_non_null(strstr(rf.envelope, "replicated"));
	store_record_full_free(&rf);
	/* a different guid under the same uid is a conflict */
	{
		struct store_record r2 = r;
		const char *other = "other body";
		char g2[41];
		store_guid(other, strlen(other), g2);
		assert_int_equal(store_repl_blob(u, g2, other, strlen(other), &e), 0);
		memcpy(r2.guid, g2, sizeof(r2.guid));
		assert_int_equal(store_repl_record(u, inbox, &r2, &e), -1);
		assert_int_equal(e.kind, ERR_CONFLICT);
		/* a body not present */
		r2.uid = 8;
		memcpy(r2.guid, "0123456789012345678901234567890123456789", 41);
		assert_int_equal(store_repl_record(u, inbox, &r2, &e), -1);
		assert_int_equal(e.kind, ERR_NOTFOUND);
	}
	/* expunge tombstone with explicit modseq */
	r.expunged_modseq = 600;
	r.modseq = 600;
	assert_int_equal(store_repl_record(u, inbox, &r, &e), 0);
	assert_true(modseq_of(u) >= 600);
	/* uidnext below an existing uid is refused */
	mb.uidnext = 5;
	assert_int_equal(store_repl_mailbox(u, &mb, &e), -1);
	assert_int_equal(e.kind, ERR_CONFLICT);
	/* name clash with another uniqueid */
	assert_int_equal(store_mailbox_create(u, "Local", NULL, NULL, &e), 0);
	memset(&mb, 0, sizeof(mb));
	str_lcpy(mb.uniqueid, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", sizeof(mb.uniqueid));
	str_lcpy(mb.name, "Local", sizeof(mb.name));
	mb.uidvalidity = 1;
	mb.uidnext = 1;
	mb.modseq = 700;
	assert_int_equal(store_repl_mailbox(u, &mb, &e), -1);
	assert_int_equal(e.kind, ERR_EXISTS);
	str_lcpy(mb.name, "Remote", sizeof(mb.name));
	assert_int_equal(store_repl_mailbox(u, &mb, &e), 0);
	mb.deleted_modseq = 701;   /* tombstone arrives */
	assert_int_equal(store_repl_mailbox(u, &mb, &e), 0);
	assert_int_equal(store_mailbox_get(u, "Remote", NULL, &e), -1);
	assert_int_equal(store_repl_sub(u, "Remote", true, 702, &e), 0);
	assert_int_equal(store_subscribed(u, "Remote", &e), 1);
	assert_int_equal(store_repl_modseq(u, 5000, &e), 0);
	assert_int_equal(modseq_of(u), 5000);
	assert_int_equal(store_repl_modseq(u, 10, &e), 0);
	assert_int_equal(modseq_of(u), 5000);
	store_user_close(&u);
	/* the unused other body is reported (named by no record) */
	assert_int_equal(check_clean("alice"), 1);
}

static void
test_purge(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33];
	struct store_mailbox t;
	struct buf blobs = BUF_INIT;
	struct err e;
	int64_t n;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	assert_int_equal(store_mailbox_create(u, "T", NULL, &t, &e), 0);
	append1(u, inbox, 1, 3000, 0, NULL);
	append1(u, inbox, 2, 3000, 0, NULL);
	append1(u, t.uniqueid, 3, 3000, 0, NULL);
	assert_int_equal(store_expunge(u, inbox, NULL, 0, false, NULL, &e), 0);
	assert_int_equal(store_mailbox_delete(u, "T", &e), 0);
	store_user_dir(st, "alice", &blobs);
	buf_puts(&blobs, "/blobs");
	assert_int_equal(count_files(buf_cstr(&blobs)), 3);
	/* nothing old enough */
	assert_int_equal(store_purge(u, 1, &e), 0);
	n = store_purge(u, modseq_of(u), &e);
	assert_int_equal(n, 3);
	assert_int_equal(count_files(buf_cstr(&blobs)), 0);
	assert_int_equal(store_mailbox_get_id(u, t.uniqueid, true, NULL, &e), -1);
	buf_free(&blobs);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

struct rep {
	int n;
	char lines[16][256];
};

static void
rep_cb(void *ctx, const char *line)
{
	struct rep *r = ctx;

	if (r->n < 16)
		str_lcpy(r->lines[r->n], line, sizeof(r->lines[0]));
	r->n++;
}

static bool
rep_has(const struct rep *r, const char *s)
{
	for (int i = 0; i < r->n && i < 16; i++)
		if (strstr(r->lines[i], s))
			return true;
	return false;
}

static void
test_check_repair(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33], guid[41];
	struct buf dir = BUF_INIT, p = BUF_INIT;
	struct rep r;
	sqlite3 *db;
	struct err e;
	int fd;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	append1(u, inbox, 1, 100000, 0, NULL);
	append1(u, inbox, 2, 100000, 0, NULL);
	store_user_close(&u);
	store_user_dir(st, "alice", &dir);
	assert_int_equal(check_clean("alice"), 0);

	/* an orphan body and a stray temporary, as a crash leaves them */
	store_guid("orphan", 6, guid);
	buf_printf(&p, "%s/blobs/%.2s", buf_cstr(&dir), guid);
	mkdir(buf_cstr(&p), 0750);
	buf_printf(&p, "/%s", guid);
	fd = open(buf_cstr(&p), O_WRONLY | O_CREAT, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "orphan", 6), 6);
	close(fd);
	buf_reset(&p);
	buf_printf(&p, "%s/blobs/%.2s/.tmp.%s.1.1", buf_cstr(&dir), guid, guid);
	fd = open(buf_cstr(&p), O_WRONLY | O_CREAT, 0640);
	close(fd);
	/* damage counters behind the store's back */
	buf_reset(&p);
	buf_printf(&p, "%s/user.db", buf_cstr(&dir));
	assert_int_equal(sqlite3_open(buf_cstr(&p), &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE mailboxes SET sync_crc = 42, uidnext = 2;"
		" UPDATE state SET used_bytes = 1, modseq = 1;", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);

	memset(&r, 0, sizeof(r));
	assert_int_equal(store_check(st, "alice", false, rep_cb, &r, &e), 5);
	assert_true(rep_has(&r, "orphan body file"));
	/* the marker is a crash leftover: removed, not a problem (its own
	 * inode is not the orphan's, so the orphan stays and is reported) */
	assert_true(rep_has(&r, "removed 1 crash leftover"));
	assert_false(rep_has(&r, "stray temporary"));
	assert_true(rep_has(&r, "sync checksum"));
	assert_true(rep_has(&r, "uidnext"));
	assert_true(rep_has(&r, "quota usage"));
	assert_true(rep_has(&r, "modseq counter"));
	/* check alone changed nothing else */
	assert_int_equal(store_check(st, "alice", false, NULL, NULL, &e), 5);
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_check(st, "alice", true, rep_cb, &r, &e), 5);
	assert_true(rep_has(&r, "[repaired]"));
	assert_int_equal(check_clean("alice"), 0);
	/* orphans are never served */
	u = open_user("alice");
	assert_int_equal(store_blob_exists(u, guid, &e), 0);
	/* a missing body is reported, not repaired away */
	{
		struct store_record_full rf;
		struct buf bp = BUF_INIT;
		assert_int_equal(store_record_get(u, inbox, 1, &rf, &e), 0);
		buf_printf(&bp, "%s/blobs/%.2s/%s", buf_cstr(&dir), rf.rec.guid, rf.rec.guid);
		assert_int_equal(unlink(buf_cstr(&bp)), 0);
		store_record_full_free(&rf);
		buf_free(&bp);
	}
	store_user_close(&u);
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_check(st, "alice", true, rep_cb, &r, &e), 1);
	assert_true(rep_has(&r, "missing"));
	assert_true(rep_has(&r, "not repairable"));
	assert_int_equal(check_clean("alice"), 1);
	assert_int_equal(store_check(st, "nobody", false, NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	buf_free(&dir);
	buf_free(&p);
}

/* What a process killed between linking a large body and removing its
 * marker leaves (store_blob.c "Recovery"): check cleans it without
 * calling it a problem -- the body and its marker when no row names the
 * GUID, only the marker when the transaction had committed. */
static void
test_check_leftover(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33], guid[STORE_GUID_LEN + 1];
	char *d = make_msg(7, 100000);
	struct store_append_msg m = { d, strlen(d), 0, 0, NULL };
	struct buf dir = BUF_INIT, p = BUF_INIT, q = BUF_INIT;
	struct rep r;
	struct err e;
	int fd;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);
	store_user_close(&u);
	store_user_dir(st, "alice", &dir);
	buf_puts(&dir, "/blobs");
	/* a committed append leaves its body and no marker */
	assert_int_equal(count_files(buf_cstr(&dir)), 1);

	/* committed, marker left: only the marker goes */
	store_guid(d, strlen(d), guid);
	buf_printf(&p, "%s/%.2s/%s", buf_cstr(&dir), guid, guid);
	buf_printf(&q, "%s/%.2s/.tmp.%s.999999.1", buf_cstr(&dir), guid, guid);
	assert_int_equal(link(buf_cstr(&p), buf_cstr(&q)), 0);
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_check(st, "alice", false, rep_cb, &r, &e), 0);
	assert_true(rep_has(&r, "removed 1 crash leftover"));
	assert_int_equal(count_files(buf_cstr(&dir)), 1);

	/* never committed: body and marker go */
	store_guid("uncommitted", 11, guid);
	buf_reset(&p);
	buf_reset(&q);
	buf_printf(&p, "%s/%.2s", buf_cstr(&dir), guid);
	mkdir(buf_cstr(&p), 0750);
	buf_printf(&p, "/%s", guid);
	buf_printf(&q, "%s/%.2s/.tmp.%s.999999.2", buf_cstr(&dir), guid, guid);
	fd = open(buf_cstr(&q), O_WRONLY | O_CREAT, 0640);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "uncommitted", 11), 11);
	close(fd);
	assert_int_equal(link(buf_cstr(&q), buf_cstr(&p)), 0);
	assert_int_equal(count_files(buf_cstr(&dir)), 3);
	memset(&r, 0, sizeof(r));
	assert_int_equal(store_check(st, "alice", false, rep_cb, &r, &e), 0);
	assert_true(rep_has(&r, "removed 1 crash leftover"));
	assert_int_equal(count_files(buf_cstr(&dir)), 1);
	assert_int_equal(check_clean("alice"), 0);
	free(d);
	buf_free(&dir);
	buf_free(&p);
	buf_free(&q);
}

static void
test_opts_from_conf(void **state)
{
	const char *text = "quota_default_messages: 5\nquota_default_bytes: 2M\nblob_inline_max: 1k\n";
	struct conf *c;
	struct store_opts o;
	struct err e;

	(void)state;
	c = conf_parse(text, strlen(text), "/tmp/castor.conf", &e);
	assert_non_null(c);
	store_opts_from_conf(&o, c);
	assert_int_equal(o.quota_default_messages, 5);
	assert_int_equal(o.quota_default_bytes, 2 * 1024 * 1024);
	assert_int_equal(o.inline_max, 1024);
	assert_false(o.read_only);
	assert_true(o.compress);
	conf_free(c);
	c = conf_parse("blob_compress: no\n", 18, "/tmp/castor.conf", &e);
	assert_non_null(c);
	store_opts_from_conf(&o, c);
	assert_false(o.compress);
	conf_free(c);
	store_opts_from_conf(&o, NULL);
	assert_int_equal(o.inline_max, STORE_INLINE_MAX_DEFAULT);
}

static int
lm_cb(void *ctx, const char *user, uint64_t m)
{
	uint64_t *sum = ctx;

	(void)user;
	*sum += m;
	return 0;
}

static void
test_list_modseq(void **state)
{
	struct store_user *u;
	uint64_t sum = 0, m;
	struct err e;

	(void)state;
	assert_int_equal(store_user_add(st, "bob", NULL, &e), 0);
	u = open_user("alice");
	m = modseq_of(u);
	store_user_close(&u);
	assert_int_equal(store_user_list_modseq(st, lm_cb, &sum, &e), 0);
	assert_int_equal(sum, m + 1);   /* bob: INBOX creation = 1 */
}

/* ------------------------------------------------------------------ */
/* API v2: password hash copy, batched record read, duplicate suppression */

static void
test_user_hash(void **state)
{
	struct store_userinfo ui, keep;
	struct buf h = BUF_INIT;
	struct err e;

	(void)state;
	assert_int_equal(store_user_info(st, "alice", &ui, &e), 0);
	assert_true(ui.has_password);
	assert_non_null(ui.hash);
	assert_ptr_equal(ui.hash, ui.hash_buf);
	assert_memory_equal(ui.hash, "$y$", 3);
	assert_int_equal(store_user_hash(st, "alice", &h, &e), 1);
	assert_string_equal(buf_cstr(&h), ui.hash);
	/* the hash it holds is the one that verifies */
	assert_int_equal(store_user_verify(st, "alice", "secret", &e), 1);
	/* the copy outlives the call: another lookup does not disturb it */
	keep = ui;
	assert_int_equal(store_user_add(st, "nopw", NULL, &e), 0);
	assert_int_equal(store_user_info(st, "nopw", &ui, &e), 0);
	assert_false(ui.has_password);
	assert_null(ui.hash);
	assert_string_equal(keep.hash_buf, buf_cstr(&h));
	buf_reset(&h);
	assert_int_equal(store_user_hash(st, "nopw", &h, &e), 0);
	assert_int_equal(h.len, 0);
	/* replication copies a hash with it */
	assert_int_equal(store_user_set_hash(st, "nopw", keep.hash_buf, &e), 0);
	assert_int_equal(store_user_info(st, "nopw", &ui, &e), 0);
	assert_string_equal(ui.hash, keep.hash_buf);
	assert_int_equal(store_user_verify(st, "nopw", "secret", &e), 1);
	/* errors */
	assert_int_equal(store_user_info(st, "nobody", &ui, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_int_equal(store_user_hash(st, "nobody", &h, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_int_equal(store_user_hash(st, "Bad/Name", &h, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	buf_free(&h);
}

/* What a store_records_full walk saw. */
struct full_seen {
	struct store_user *u;
	const char *mbid;
	int n;
	uint32_t uids[32];
	int stop_after;          /* return 42 after this many (0 = never) */
	bool compare;            /* compare each with store_record_get (a nested read) */
	bool with_parts;
	bool reenter;            /* call store_records_full from the callback */
	int reenter_kind;
	int go_fd, done_fd;      /* >= 0: at the first record, let the child append */
};

/* A process (forked while this one holds no user handle) that appends
 * one message when told to on go_fd and reports 'y'/'n' on done_fd. */
static pid_t
full_child_start(int *go_fd, int *done_fd)
{
	int go[2], done[2];
	pid_t pid;

	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(done), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct err e;
		struct store *s2;
		struct store_user *c = NULL;
		struct store_append_msg m = { "Subject: late\r\n\r\nlate\r\n", 23, 0, 0, NULL };
		struct store_mailbox mb;
		char x = 'n';
		int bad = 1;

		close(go[1]);
		close(done[0]);
		if (read(go[0], &x, 1) == 1) {
			s2 = store_open(root, NULL, &e);
			c = s2 ? store_user_open(s2, "alice", &e) : NULL;
			bad = c == NULL || store_mailbox_get(c, "INBOX", &mb, &e) < 0 ||
				store_append(c, mb.uniqueid, &m, 1, NULL, NULL, &e) < 0;
			store_user_close(&c);
			store_close(&s2);
		}
		x = bad ? 'n' : 'y';
		if (write(done[1], &x, 1) != 1)
			bad = 1;
		_exit(bad);
	}
	close(go[0]);
	close(done[1]);
	*go_fd = go[1];
	*done_fd = done[0];
	return pid;
}

static int
full_cb(void *ctx, const struct store_record_full *r)
{
	struct full_seen *f = ctx;
	struct store_record_full g;
	struct err e;

	if (f->n < 32)
		f->uids[f->n] = r->rec.uid;
	f->n++;
	assert_non_null(r->keywords);
	assert_ptr_equal(r->rec.keywords, r->keywords);
	if (!f->with_parts) {
		assert_null(r->parts);
		assert_int_equal(r->parts_len, 0);
	}
	if (f->compare) {
		assert_int_equal(store_record_get(f->u, f->mbid, r->rec.uid, &g, &e), 0);
		assert_string_equal(g.rec.guid, r->rec.guid);
		assert_int_equal(g.rec.size, r->rec.size);
		assert_int_equal(g.rec.internaldate, r->rec.internaldate);
		assert_int_equal(g.rec.sysflags, r->rec.sysflags);
		assert_int_equal(g.rec.modseq, r->rec.modseq);
		assert_int_equal(g.rec.expunged_modseq, r->rec.expunged_modseq);
		assert_string_equal(g.keywords, r->keywords);
		assert_string_equal(g.envelope, r->envelope);
		assert_string_equal(g.bodystructure, r->bodystructure);
		assert_null(g.body);     /* not stored since schema 4: computed at FETCH */
		assert_null(r->body);
		if (f->with_parts) {
			assert_int_equal(g.parts_len, r->parts_len);
			assert_true(r->parts_len > 0);
			assert_memory_equal(g.parts, r->parts, r->parts_len);
		}
		store_record_full_free(&g);
	}
	if (f->reenter) {
		f->reenter = false;
		assert_int_equal(store_records_full(f->u, f->mbid, NULL, 0, false, full_cb, f, &e), -1);
		f->reenter_kind = e.kind;
	}
	if (f->go_fd >= 0) {
		char x = 'g';

		assert_int_equal(write(f->go_fd, &x, 1), 1);
		assert_int_equal(read(f->done_fd, &x, 1), 1);
		assert_int_equal(x, 'y');    /* committed while this walk is open */
		f->go_fd = -1;
	}
	if (f->stop_after != 0 && f->n >= f->stop_after)
		return 42;
	return 0;
}

static void
full_init(struct full_seen *f, struct store_user *u, const char *mbid)
{
	memset(f, 0, sizeof(*f));
	f->u = u;
	f->mbid = mbid;
	f->go_fd = -1;
	f->done_fd = -1;
}

static void
test_records_full(void **state)
{
	static const char multi[] = "From: a@b\r\nSubject: parts\r\nMIME-Version: 1.0\r\n"
		"Content-Type: multipart/mixed; boundary=\"q\"\r\n\r\n--q\r\n"
		"Content-Type: text/plain\r\n\r\none\r\n--q\r\nContent-Type: text/html\r\n\r\n"
		"<b>two</b>\r\n--q--\r\n";
	struct store_user *u = open_user("alice");
	struct store_append_msg m = { multi, sizeof(multi) - 1, 0, STORE_FLAG_FLAGGED, "$x" };
	struct store_range r3 = { 3, 3 };
	struct store_range mixed[3] = { { 5, 6 }, { 1, 2 }, { 2, 4 } };
	struct store_range none = { 7, 100 }, bad[2] = { { 0, 3 }, { 5, 2 } };
	struct full_seen f;
	char inbox[33];
	int go_fd, done_fd, status;
	pid_t pid;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	for (int i = 1; i <= 5; i++)
		append1(u, inbox, i, 300 + 100 * i, i % 2 ? STORE_FLAG_SEEN : 0, i == 2 ? "$a b" : NULL);
	assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);   /* uid 6 */
	assert_int_equal(store_expunge(u, inbox, &r3, 1, false, NULL, &e), 0);

	/* ranges in any order and overlapping: each uid once, ascending,
	 * tombstones included, the same data as store_record_get */
	full_init(&f, u, inbox);
	f.compare = true;
	assert_int_equal(store_records_full(u, inbox, mixed, 3, false, full_cb, &f, &e), 0);
	assert_int_equal(f.n, 6);
	for (int i = 0; i < 6; i++)
		assert_int_equal(f.uids[i], i + 1);
	/* with the part tree */
	full_init(&f, u, inbox);
	f.compare = true;
	f.with_parts = true;
	assert_int_equal(store_records_full(u, inbox, NULL, 0, true, full_cb, &f, &e), 0);
	assert_int_equal(f.n, 6);
	/* nothing in range */
	full_init(&f, u, inbox);
	assert_int_equal(store_records_full(u, inbox, &none, 1, false, full_cb, &f, &e), 0);
	assert_int_equal(f.n, 0);
	/* the callback stops the walk and its value is returned */
	full_init(&f, u, inbox);
	f.stop_after = 2;
	assert_int_equal(store_records_full(u, inbox, NULL, 0, false, full_cb, &f, &e), 42);
	assert_int_equal(f.n, 2);
	/* re-entry is refused, the outer walk carries on */
	full_init(&f, u, inbox);
	f.reenter = true;
	assert_int_equal(store_records_full(u, inbox, NULL, 0, false, full_cb, &f, &e), 0);
	assert_int_equal(f.reenter_kind, ERR_INVALID);
	assert_int_equal(f.n, 6);
	/* one read transaction: an append committed by another process
	 * during the walk is not seen by it, and is by the next one */
	store_user_close(&u);     /* fork with no user handle open */
	pid = full_child_start(&go_fd, &done_fd);
	u = open_user("alice");
	full_init(&f, u, inbox);
	f.go_fd = go_fd;
	f.done_fd = done_fd;
	assert_int_equal(store_records_full(u, inbox, NULL, 0, false, full_cb, &f, &e), 0);
	assert_int_equal(f.go_fd, -1);
	assert_int_equal(f.n, 6);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(go_fd);
	close(done_fd);
	full_init(&f, u, inbox);
	assert_int_equal(store_records_full(u, inbox, NULL, 0, false, full_cb, &f, &e), 0);
	assert_int_equal(f.n, 7);
	assert_int_equal(f.uids[6], 7);
	/* bad input */
	assert_int_equal(store_records_full(u, inbox, bad, 1, false, full_cb, &f, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(store_records_full(u, inbox, bad + 1, 1, false, full_cb, &f, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(store_records_full(u, inbox, NULL, 2, false, full_cb, &f, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(store_records_full(u, "ffffffffffffffffffffffffffffffff", NULL, 0, false,
		full_cb, &f, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	/* the handle is usable afterwards (no transaction left open) */
	append1(u, inbox, 9, 200, 0, NULL);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

/* A delivery of message-id `id` (NULL: no Message-ID header) as an MTA
 * retry would bring it: the Received line differs each time (so does
 * the GUID). */
static char *
make_delivery(const char *id, int n, size_t size)
{
	struct buf b = BUF_INIT;

	buf_printf(&b, "Received: from mta%d.example.org by castor; attempt %d\r\n"
		"From: Ann <ann@example.org>\r\nTo: alice@example.org\r\n", n, n);
	if (id != NULL)
		buf_printf(&b, "Message-ID:\r\n %s\r\n", id);
	buf_puts(&b, "Subject: delivery\r\n\r\n");
	while (b.len < size)
		buf_puts(&b, "The quick brown fox jumps over the lazy dog.\r\n");
	return buf_steal(&b);
}

/* store_append_dedup of one delivery, the id taken from the message as
 * lmtpd does; internaldate 0 = now. */
static int
deliver(struct store_user *u, const char *mbid, const char *data, int64_t internaldate,
	int64_t since, struct store_append_result *r, struct err *e)
{
	struct store_append_msg m = { 0 };
	struct store_dedup d = { 0 };
	struct buf id = BUF_INIT;
	int rc;

	m.data = data;
	m.len = strlen(data);
	m.internaldate = internaldate;
	store_message_id(data, m.len, &id);
	d.msgid = buf_cstr(&id);
	d.since = since;
	rc = store_append_dedup(u, mbid, &m, &d, 1, r, NULL, e);
	buf_free(&id);
	return rc;
}

static uint32_t
messages_in(struct store_user *u, const char *name)
{
	struct store_status s;
	struct err e;

	assert_int_equal(store_mailbox_status(u, name, &s, &e), 0);
	return s.messages;
}

/* store_append_undo: the undone record is expunged and out of the
 * message-id index, so the sender's retry is stored, not suppressed;
 * other records, unknown and already expunged uids are left alone. */
static void
test_append_undo(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_append_result keep, r1, r2;
	int64_t since = (int64_t)time(NULL) - 3 * 86400;
	uint32_t gone[2], uid;
	char inbox[33], *d1, *d0;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	d0 = make_delivery("<kept@example.org>", 1, 300);
	d1 = make_delivery("<undone@example.org>", 2, 300);
	assert_int_equal(deliver(u, inbox, d0, 0, since, &keep, &e), 0);
	assert_int_equal(deliver(u, inbox, d1, 0, since, &r1, &e), 0);
	assert_int_equal(messages_in(u, "INBOX"), 2);
	gone[0] = r1.uid;
	gone[1] = r1.uid + 100;                    /* unknown: ignored */
	assert_int_equal(store_append_undo(u, inbox, gone, 2, &e), 0);
	assert_int_equal(messages_in(u, "INBOX"), 1);
	assert_int_equal(store_msgid_find(u, inbox, "<undone@example.org>", since, &uid, &e), 0);
	assert_int_equal(store_msgid_find(u, inbox, "<kept@example.org>", since, &uid, &e), 1);
	assert_int_equal(uid, keep.uid);
	/* again: already expunged, nothing changes */
	assert_int_equal(store_append_undo(u, inbox, gone, 1, &e), 0);
	assert_int_equal(messages_in(u, "INBOX"), 1);
	/* the retry is stored, and a second retry is its duplicate */
	assert_int_equal(deliver(u, inbox, d1, 0, since, &r2, &e), 0);
	assert_false(r2.duplicate);
	assert_true(r2.uid > r1.uid);
	assert_int_equal(deliver(u, inbox, d1, 0, since, &r1, &e), 0);
	assert_true(r1.duplicate);
	assert_int_equal(r1.uid, r2.uid);
	assert_int_equal(messages_in(u, "INBOX"), 2);
	assert_int_equal(store_append_undo(u, inbox, NULL, 0, &e), 0);
	free(d0);
	free(d1);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

static void
test_dedup(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_append_result r1, r2, rb[3];
	struct store_mailbox other;
	struct store_quota q0, q1;
	struct store_stats ss;
	struct hook_log h;
	int64_t now = (int64_t)time(NULL), since = now - 3 * 86400;
	uint64_t ms;
	uint32_t uid;
	char inbox[33], *d1, *d2;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	assert_int_equal(store_mailbox_create(u, "Other", NULL, &other, &e), 0);
	d1 = make_delivery("<w1@example.org>", 1, 600);
	d2 = make_delivery("<w1@example.org>", 2, 600);
	assert_int_equal(deliver(u, inbox, d1, 0, since, &r1, &e), 0);
	assert_false(r1.duplicate);
	/* a retry within the window: stored once, the result names the first */
	ms = modseq_of(u);
	assert_int_equal(store_quota_get(u, &q0, &e), 0);
	memset(&h, 0, sizeof(h));
	store_set_change_hook(st, hook, &h);
	store_stats_reset();
	assert_int_equal(deliver(u, inbox, d2, 0, since, &r2, &e), 0);
	store_set_change_hook(st, NULL, NULL);
	assert_true(r2.duplicate);
	assert_int_equal(r2.uid, r1.uid);
	assert_int_equal(r2.modseq, r1.modseq);
	assert_string_equal(r2.guid, r1.guid);
	assert_int_equal(messages_in(u, "INBOX"), 1);
	assert_int_equal(modseq_of(u), ms);        /* nothing changed */
	assert_int_equal(h.n, 0);                  /* no change hook */
	assert_int_equal(store_quota_get(u, &q1, &e), 0);
	assert_int_equal(q1.used_bytes, q0.used_bytes);
	assert_int_equal(q1.used_messages, q0.used_messages);
	store_stats_get(&ss);
	assert_int_equal(ss.appended, 0);
	assert_int_equal(ss.commits, 1);           /* but it passed the durability barrier */
	assert_int_equal(store_msgid_find(u, inbox, "<w1@example.org>", since, &uid, &e), 1);
	assert_int_equal(uid, r1.uid);
	/* plain store_append never suppresses and says so */
	{
		struct store_append_msg m = { d2, strlen(d2), 0, 0, NULL };
		r2.duplicate = true;
		assert_int_equal(store_append(u, inbox, &m, 1, &r2, NULL, &e), 0);
		assert_false(r2.duplicate);
		assert_int_equal(messages_in(u, "INBOX"), 2);
	}
	/* another mailbox of the same user is not suppressed */
	assert_int_equal(deliver(u, other.uniqueid, d2, 0, since, &r2, &e), 0);
	assert_false(r2.duplicate);
	assert_int_equal(messages_in(u, "Other"), 1);
	free(d1);
	free(d2);

	/* the window: a copy delivered 5 days ago does not suppress with a
	 * 3-day window, does with a 6-day one; "at or after since" */
	d1 = make_delivery("<old@example.org>", 1, 300);
	d2 = make_delivery("<old@example.org>", 2, 300);
	assert_int_equal(deliver(u, inbox, d1, now - 5 * 86400, since, &r1, &e), 0);
	assert_false(r1.duplicate);
	assert_int_equal(deliver(u, inbox, d2, 0, since, &r2, &e), 0);
	assert_false(r2.duplicate);
	assert_int_equal(deliver(u, inbox, d2, 0, now - 6 * 86400, &r2, &e), 0);
	assert_true(r2.duplicate);
	assert_int_equal(r2.uid, r1.uid);          /* the lowest uid */
	assert_int_equal(deliver(u, inbox, d2, 0, now - 5 * 86400, &r2, &e), 0);
	assert_true(r2.duplicate);
	assert_int_equal(deliver(u, inbox, d2, 0, now - 5 * 86400 + 1, &r2, &e), 0);
	assert_true(r2.duplicate);                 /* the second copy (delivered now) */
	assert_true(r2.uid > r1.uid);
	free(d1);
	free(d2);

	/* no Message-ID: never suppressed */
	d1 = make_delivery(NULL, 1, 300);
	for (int i = 0; i < 2; i++) {
		uint32_t before = messages_in(u, "INBOX");
		assert_int_equal(deliver(u, inbox, d1, 0, since, &r1, &e), 0);
		assert_false(r1.duplicate);
		assert_int_equal(messages_in(u, "INBOX"), before + 1);
	}
	free(d1);
	/* "<>" is no Message-ID either */
	d1 = make_delivery("<>", 1, 300);
	assert_int_equal(deliver(u, inbox, d1, 0, since, &r1, &e), 0);
	assert_int_equal(deliver(u, inbox, d1, 0, since, &r2, &e), 0);
	assert_false(r2.duplicate);
	assert_true(r2.uid > r1.uid);
	free(d1);

	/* a batch: the check sees the messages before it in the same call */
	{
		char *b0 = make_delivery("<batch@example.org>", 1, 300);
		char *b1 = make_delivery("<batch@example.org>", 2, 300);
		char *b2 = make_delivery("<batch2@example.org>", 3, 300);
		struct store_append_msg m[3] = {
			{ b0, strlen(b0), 0, 0, NULL }, { b1, strlen(b1), 0, 0, NULL },
			{ b2, strlen(b2), 0, 0, NULL } };
		struct store_dedup dd[3] = { { "<batch@example.org>", since },
			{ "<batch@example.org>", since }, { NULL, 0 } };
		uint32_t before = messages_in(u, "INBOX");

		assert_int_equal(store_append_dedup(u, inbox, m, dd, 3, rb, NULL, &e), 0);
		assert_false(rb[0].duplicate);
		assert_true(rb[1].duplicate);
		assert_int_equal(rb[1].uid, rb[0].uid);
		assert_false(rb[2].duplicate);
		assert_int_equal(rb[2].uid, rb[0].uid + 1);
		assert_int_equal(messages_in(u, "INBOX"), before + 2);
		free(b0);
		free(b1);
		free(b2);
	}
	/* COPY indexes the copy in its new mailbox */
	{
		struct store_range rr = { rb[0].uid, rb[0].uid };
		struct store_uids dst = { 0 };

		assert_int_equal(store_copy(u, inbox, &rr, 1, other.uniqueid, false, NULL, &dst, NULL,
			&e), 0);
		assert_int_equal(store_msgid_find(u, other.uniqueid, "<batch@example.org>", since, &uid,
			&e), 1);
		assert_int_equal(uid, dst.v[0]);
		store_uids_free(&dst);
	}
	assert_int_equal(store_msgid_find(u, inbox, "<nothing@example.org>", 0, &uid, &e), 0);
	assert_int_equal(uid, 0);
	assert_int_equal(store_msgid_find(u, "ffffffffffffffffffffffffffffffff", "<x@y>", 0, &uid, &e),
		-1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

/* An expunged message still suppresses (until purge); a duplicate of a
 * large (file) body leaves no orphan file behind. */
static void
test_dedup_expunged(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_append_result r1, r2;
	struct store_range rr;
	struct buf blobs = BUF_INIT;
	int64_t since = (int64_t)time(NULL) - 3 * 86400;
	char inbox[33], *d1, *d2;
	uint32_t uid;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	store_user_dir(st, "alice", &blobs);
	buf_puts(&blobs, "/blobs");
	d1 = make_delivery("<gone@example.org>", 1, 5000);
	d2 = make_delivery("<gone@example.org>", 2, 5000);
	assert_int_equal(deliver(u, inbox, d1, 0, since, &r1, &e), 0);
	rr.lo = rr.hi = r1.uid;
	assert_int_equal(store_expunge(u, inbox, &rr, 1, false, NULL, &e), 0);
	assert_int_equal(messages_in(u, "INBOX"), 0);
	assert_int_equal(deliver(u, inbox, d2, 0, since, &r2, &e), 0);
	assert_true(r2.duplicate);
	assert_int_equal(r2.uid, r1.uid);
	assert_int_equal(messages_in(u, "INBOX"), 0);
	assert_int_equal(count_files(buf_cstr(&blobs)), 1);
	/* purge ends it */
	assert_int_equal(store_purge(u, modseq_of(u), &e), 1);
	assert_int_equal(store_msgid_find(u, inbox, "<gone@example.org>", since, &uid, &e), 0);
	assert_int_equal(deliver(u, inbox, d2, 0, since, &r2, &e), 0);
	assert_false(r2.duplicate);
	assert_int_equal(messages_in(u, "INBOX"), 1);
	free(d1);
	free(d2);
	buf_free(&blobs);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

/* Concurrent deliveries of one message from several processes store it
 * exactly once; every process is told the same uid. */
static void
test_dedup_concurrent(void **state)
{
	enum { NPROC = 4, ROUNDS = 12 };
	struct dres {
		int round;
		uint32_t uid;
		int dup;
	} res[NPROC * ROUNDS];
	int go[2], out[2], stored[ROUNDS];
	uint32_t uid_of[ROUNDS];
	pid_t pids[NPROC];
	struct store_user *u;
	char inbox[33];
	struct err e;
	size_t got = 0;

	(void)state;
	u = open_user("alice");
	mbid_of(u, "INBOX", inbox);
	store_user_close(&u);
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(out), 0);
	for (int p = 0; p < NPROC; p++) {
		pids[p] = fork();
		assert_true(pids[p] >= 0);
		if (pids[p] == 0) {
			struct store *s2 = store_open(root, NULL, &e);
			struct store_user *c = s2 ? store_user_open(s2, "alice", &e) : NULL;
			int64_t since = (int64_t)time(NULL) - 3 * 86400;
			int bad = c == NULL;
			char x;

			close(go[1]);
			close(out[0]);
			if (read(go[0], &x, 1) != 1)
				bad = 1;
			for (int r = 0; r < ROUNDS && !bad; r++) {
				char id[64];
				char *d;
				struct store_append_result ar;
				struct dres dr;

				snprintf(id, sizeof(id), "<round%d@example.org>", r);
				/* bodies over the inline limit in odd rounds: files too */
				d = make_delivery(id, p, r % 2 ? 70000 : 2000);
				if (deliver(c, inbox, d, 0, since, &ar, &e) < 0) {
					fprintf(stderr, "child %d: %s\n", p, e.msg);
					bad = 1;
				}
				dr.round = r;
				dr.uid = ar.uid;
				dr.dup = ar.duplicate;
				if (!bad && write(out[1], &dr, sizeof(dr)) != (ssize_t)sizeof(dr))
					bad = 1;
				free(d);
			}
			store_user_close(&c);
			store_close(&s2);
			_exit(bad);
		}
	}
	close(go[0]);
	close(out[1]);
	{
		char g[NPROC];
		memset(g, 'g', sizeof(g));
		assert_int_equal(write(go[1], g, sizeof(g)), NPROC);   /* all start at once */
	}
	close(go[1]);
	for (;;) {
		ssize_t n = read(out[0], (char *)res + got, sizeof(res) - got);
		if (n <= 0)
			break;
		got += (size_t)n;
	}
	close(out[0]);
	for (int p = 0; p < NPROC; p++) {
		int status;
		assert_int_equal(waitpid(pids[p], &status, 0), pids[p]);
		assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	}
	assert_int_equal(got, sizeof(res));
	memset(stored, 0, sizeof(stored));
	memset(uid_of, 0, sizeof(uid_of));
	for (size_t i = 0; i < NPROC * ROUNDS; i++) {
		int r = res[i].round;
		assert_true(r >= 0 && r < ROUNDS);
		if (!res[i].dup)
			stored[r]++;
		if (uid_of[r] == 0)
			uid_of[r] = res[i].uid;
		assert_int_equal(res[i].uid, uid_of[r]);
	}
	for (int r = 0; r < ROUNDS; r++)
		assert_int_equal(stored[r], 1);
	u = open_user("alice");
	assert_int_equal(messages_in(u, "INBOX"), ROUNDS);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

/* The replica builds the same index from store_repl_record, live
 * records and tombstones alike, and suppresses the same duplicates. */
static void
test_dedup_replica(void **state)
{
	struct store_user *mu = open_user("alice"), *ru;
	struct store_mailbox mmb;
	struct store_record_full rf;
	struct store_append_result r1, r2;
	struct store_range rr;
	struct buf body = BUF_INIT;
	int64_t since = (int64_t)time(NULL) - 3 * 86400;
	char *d1, *d2, *d3;
	uint32_t uid;
	struct err e;

	(void)state;
	assert_int_equal(store_user_add(st, "replica", NULL, &e), 0);
	ru = open_user("replica");
	assert_int_equal(store_mailbox_get(mu, "INBOX", &mmb, &e), 0);
	d1 = make_delivery("<rep@example.org>", 1, 400);
	d2 = make_delivery("<rep@example.org>", 2, 400);
	d3 = make_delivery("<rep-gone@example.org>", 3, 400);
	assert_int_equal(deliver(mu, mmb.uniqueid, d1, 0, since, &r1, &e), 0);
	assert_int_equal(deliver(mu, mmb.uniqueid, d3, 0, since, &r2, &e), 0);
	rr.lo = rr.hi = r2.uid;
	assert_int_equal(store_expunge(mu, mmb.uniqueid, &rr, 1, false, NULL, &e), 0);
	assert_int_equal(store_mailbox_get(mu, "INBOX", &mmb, &e), 0);
	/* replicate the mailbox, the bodies and both records (the second
	 * arrives as a tombstone: the replica never saw it live) */
	assert_int_equal(store_repl_mailbox(ru, &mmb, &e), 0);
	for (uint32_t id = r1.uid; id <= r2.uid; id++) {
		assert_int_equal(store_record_get(mu, mmb.uniqueid, id, &rf, &e), 0);
		buf_reset(&body);
		assert_int_equal(store_blob_read(mu, rf.rec.guid, &body, &e), 0);
		assert_int_equal(store_repl_blob(ru, rf.rec.guid, body.data, body.len, &e), 0);
		assert_int_equal(store_repl_record(ru, mmb.uniqueid, &rf.rec, &e), 0);
		store_record_full_free(&rf);
	}
	assert_int_equal(store_msgid_find(ru, mmb.uniqueid, "<rep@example.org>", since, &uid, &e), 1);
	assert_int_equal(uid, r1.uid);
	assert_int_equal(store_msgid_find(ru, mmb.uniqueid, "<rep-gone@example.org>", since, &uid,
		&e), 1);
	assert_int_equal(uid, r2.uid);
	/* after a failover the replica suppresses the MTA's retry */
	assert_int_equal(deliver(ru, mmb.uniqueid, d2, 0, since, &r2, &e), 0);
	assert_true(r2.duplicate);
	assert_int_equal(r2.uid, r1.uid);
	free(d1);
	free(d2);
	free(d3);
	buf_free(&body);
	store_user_close(&mu);
	store_user_close(&ru);
	assert_int_equal(check_clean("replica"), 0);
}

/* A duplicate's prewritten body is removed in its transaction; an
 * appender of the same octets that prewrote the same file before (and
 * waited for the write lock) writes it again rather than commit a row
 * without its file. */
static void
test_dedup_drop_race(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_append_result r0, r1;
	struct store_record_full rf;
	struct buf path = BUF_INIT, got = BUF_INIT;
	int64_t since = (int64_t)time(NULL) - 3 * 86400;
	char inbox[33], guid[41], *d0, *same;
	struct stat sb;
	pid_t pid;
	int status, i, go[2];
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	d0 = make_delivery("<race@example.org>", 0, 3000);
	same = make_delivery("<race@example.org>", 1, 3000);
	store_guid(same, strlen(same), guid);
	store_user_dir(st, "alice", &path);
	buf_printf(&path, "/blobs/%.2s/%s", guid, guid);
	/* hold the write lock while another process (forked with no user
	 * handle open) prewrites `same` and then waits for the lock */
	store_user_close(&u);
	assert_int_equal(pipe(go), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct store_opts o;
		struct store *s2;
		struct store_user *c;
		struct store_append_msg m = { same, strlen(same), 0, 0, NULL };
		int bad;
		char x;

		close(go[1]);
		if (read(go[0], &x, 1) != 1)
			_exit(1);
		store_opts_init(&o);
		o.inline_max = 0;      /* bodies as files, as in this process */
		s2 = store_open(root, &o, &e);
		c = s2 ? store_user_open(s2, "alice", &e) : NULL;
		bad = c == NULL || store_append(c, inbox, &m, 1, NULL, NULL, &e) < 0;
		if (bad)
			fprintf(stderr, "child: %s\n", e.msg);
		store_user_close(&c);
		store_close(&s2);
		_exit(bad);
	}
	close(go[0]);
	u = open_user("alice");
	assert_int_equal(store_txn_begin(u, &e), 0);
	assert_int_equal(write(go[1], "g", 1), 1);
	close(go[1]);
	for (i = 0; i < 500 && stat(buf_cstr(&path), &sb) < 0; i++)
		usleep(10000);
	assert_true(i < 500);
	/* the same octets arrive by LMTP right behind another copy (nothing
	 * to hint at a duplicate before the transaction, so both bodies are
	 * prewritten): the second is a duplicate of the first, its file goes */
	{
		struct store_append_msg m[2] = { { d0, strlen(d0), 0, 0, NULL },
			{ same, strlen(same), 0, 0, NULL } };
		struct store_dedup dd[2] = { { "<race@example.org>", since },
			{ "<race@example.org>", since } };
		struct store_append_result rr[2];

		assert_int_equal(store_append_dedup(u, inbox, m, dd, 2, rr, NULL, &e), 0);
		r0 = rr[0];
		r1 = rr[1];
	}
	assert_false(r0.duplicate);
	assert_true(r1.duplicate);
	assert_int_equal(r1.uid, r0.uid);
	assert_int_equal(stat(buf_cstr(&path), &sb), -1);
	assert_int_equal(store_txn_commit(u, &e), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* the other process's record has its body */
	assert_int_equal(store_record_get(u, inbox, r0.uid + 1, &rf, &e), 0);
	assert_string_equal(rf.rec.guid, guid);
	assert_int_equal(store_blob_read(u, guid, &got, &e), 0);
	assert_int_equal(got.len, strlen(same));
	assert_memory_equal(got.data, same, got.len);
	store_record_full_free(&rf);
	free(d0);
	free(same);
	buf_free(&path);
	buf_free(&got);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
}

static double
mono_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Median microseconds of `rounds` store_msgid_find calls (the lookup
 * store_append_dedup runs in its transaction) for an id not there. */
static double
lookup_median_us(struct store_user *u, const char *mbid, int rounds)
{
	double t[64];
	uint32_t uid;
	struct err e;

	assert_true(rounds <= 64);
	for (int i = 0; i < rounds; i++) {
		double t0 = mono_us();
		assert_int_equal(store_msgid_find(u, mbid, "<absent@example.org>",
			(int64_t)time(NULL) - 3 * 86400, &uid, &e), 0);
		t[i] = mono_us() - t0;
	}
	qsort(t, (size_t)rounds, sizeof(t[0]), cmp_double);
	return t[rounds / 2];
}

/* The duplicate check costs the same in a mailbox of 20,000 messages as
 * in an empty one: it is an index lookup, never a scan of the mailbox
 * (a plan on the primary key once made LMTP 20 times slower). */
static void
test_dedup_scale(void **state)
{
	enum { BIG = 20000, BATCH = 500 };
	struct store_user *u = open_user("alice");
	struct store_mailbox big, empty;
	struct store_append_msg m[BATCH];
	struct store_append_result r;
	char *d[BATCH], *x;
	double tb, te;
	struct err e;

	(void)state;
	assert_int_equal(store_mailbox_create(u, "Big", NULL, &big, &e), 0);
	assert_int_equal(store_mailbox_create(u, "Empty", NULL, &empty, &e), 0);
	for (int i = 0; i < BIG; i += BATCH) {
		memset(m, 0, sizeof(m));
		for (int k = 0; k < BATCH; k++) {
			char id[64];
			snprintf(id, sizeof(id), "<big%d@example.org>", i + k);
			d[k] = make_delivery(id, i + k, 200);
			m[k].data = d[k];
			m[k].len = strlen(d[k]);
		}
		assert_int_equal(store_append(u, big.uniqueid, m, BATCH, NULL, NULL, &e), 0);
		for (int k = 0; k < BATCH; k++)
			free(d[k]);
	}
	/* warm both up, then compare */
	(void)lookup_median_us(u, big.uniqueid, 5);
	(void)lookup_median_us(u, empty.uniqueid, 5);
	tb = lookup_median_us(u, big.uniqueid, 31);
	te = lookup_median_us(u, empty.uniqueid, 31);
	print_message("dedup lookup: %.1f us in %d messages, %.1f us in an empty mailbox\n", tb,
		BIG, te);
	assert_true(tb < 10 * te + 300);
	/* and a delivery there is still suppressed or stored correctly */
	x = make_delivery("<big7@example.org>", 1, 200);
	assert_int_equal(deliver(u, big.uniqueid, x, 0, (int64_t)time(NULL) - 86400, &r, &e), 0);
	assert_true(r.duplicate);
	assert_int_equal(r.uid, 8);
	free(x);
	store_user_close(&u);
}

static int64_t
sql_int(const char *path, const char *sql)
{
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int64_t v = -1;

	assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

/* A user deleted and added again within the same second gets UIDVALIDITY
 * values above every one it had (RFC 3501 2.3.1.1: a reused name whose
 * UIDs are not kept must not reuse the value). */
static void
test_uidvalidity_after_readd(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_mailbox a, b;
	uint32_t old_max;
	struct err e;

	(void)state;
	assert_int_equal(store_mailbox_get(u, "INBOX", &a, &e), 0);
	for (int i = 0; i < 5; i++) {
		char name[16];

		snprintf(name, sizeof(name), "F%d", i);
		assert_int_equal(store_mailbox_create(u, name, NULL, &b, &e), 0);
	}
	old_max = b.uidvalidity;          /* five creations in a second: now + 5 */
	assert_true(old_max > a.uidvalidity);
	store_user_close(&u);
	assert_int_equal(store_user_del(st, "alice", &e), 0);
	assert_int_equal(store_user_add(st, "alice", "secret", &e), 0);
	u = open_user("alice");
	assert_int_equal(store_mailbox_get(u, "INBOX", &a, &e), 0);
	assert_true(a.uidvalidity > old_max);
	assert_int_equal(store_mailbox_create(u, "F4", NULL, &b, &e), 0);
	assert_true(b.uidvalidity > old_max);
	store_user_close(&u);
}

/* A user.db of schema 3 gets records_snap at open, and the snapshot's
 * query is answered from it (no table row per message). */
static void
test_snap_index_upgrade(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_snapshot *snap = NULL;
	struct buf path = BUF_INIT;
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	char inbox[33], plan[200] = "";
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	for (int i = 0; i < 4; i++)
		append1(u, inbox, i, 300, i % 2 ? STORE_FLAG_SEEN : 0, i == 1 ? "$a" : NULL);
	store_user_close(&u);
	store_user_dir(st, "alice", &path);
	buf_puts(&path, "/user.db");
	assert_int_equal(sqlite3_open(buf_cstr(&path), &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DROP INDEX records_snap; UPDATE state SET schema = 3",
		NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	u = open_user("alice");
	assert_int_equal(sql_int(buf_cstr(&path), "SELECT schema FROM state"), 4);
	assert_int_equal(sql_int(buf_cstr(&path),
		"SELECT count(*) FROM sqlite_master WHERE name = 'records_snap'"), 1);
	assert_int_equal(sqlite3_open(buf_cstr(&path), &db), SQLITE_OK);
	assert_int_equal(sqlite3_prepare_v2(db, "EXPLAIN QUERY PLAN SELECT uid, sysflags, modseq,"
		" keywords FROM records WHERE mailbox = 1 AND expunged_modseq = 0 ORDER BY uid",
		-1, &s, NULL), SQLITE_OK);
	while (sqlite3_step(s) == SQLITE_ROW)
		str_lcpy(plan, (const char *)sqlite3_column_text(s, 3), sizeof(plan));
	sqlite3_finalize(s);
	sqlite3_close(db);
	assert_non_null(strstr(plan, "COVERING INDEX records_snap"));
	assert_int_equal(store_snapshot_open(u, inbox, 0, &snap, &e), 0);
	assert_int_equal(snap->n, 4);
	assert_int_equal(snap->recs[1].sysflags, STORE_FLAG_SEEN);
	assert_string_equal(snap->recs[1].keywords, "$a");
	store_snapshot_free(&snap);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
	buf_free(&path);
}

/* A user.db of schema 1 (no message-id index) is upgraded at open; its
 * old records are indexed from their bodies when a check needs them. */
static void
test_dedup_upgrade(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_append_result r;
	struct buf path = BUF_INIT;
	int64_t since = (int64_t)time(NULL) - 3 * 86400;
	char inbox[33], *d1, *d2, *d3;
	sqlite3 *db = NULL;
	uint32_t uid;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	d1 = make_delivery("<up1@example.org>", 1, 400);
	d2 = make_delivery("<up2@example.org>", 2, 400);
	d3 = make_delivery("<up2@example.org>", 3, 400);
	{
		struct store_append_msg m[2] = { { d1, strlen(d1), 0, 0, NULL },
			{ d2, strlen(d2), 0, 0, NULL } };
		assert_int_equal(store_append(u, inbox, m, 2, NULL, NULL, &e), 0);
	}
	store_user_close(&u);
	store_user_dir(st, "alice", &path);
	buf_puts(&path, "/user.db");
	assert_int_equal(sql_int(buf_cstr(&path), "SELECT schema FROM state"), 4);
	/* turn it into a schema-1 database */
	assert_int_equal(sqlite3_open(buf_cstr(&path), &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DROP INDEX records_msgid; DROP INDEX records_snap;"
		"ALTER TABLE records DROP COLUMN msgid; UPDATE state SET schema = 1", NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(sql_int(buf_cstr(&path),
		"SELECT count(*) FROM pragma_table_info('records') WHERE name = 'msgid'"), 0);
	/* open upgrades */
	u = open_user("alice");
	assert_int_equal(sql_int(buf_cstr(&path), "SELECT schema FROM state"), 4);
	assert_int_equal(sql_int(buf_cstr(&path),
		"SELECT count(*) FROM records WHERE msgid IS NULL"), 2);
	assert_int_equal(sql_int(buf_cstr(&path),
		"SELECT count(*) FROM sqlite_master WHERE name = 'records_msgid'"), 1);
	assert_int_equal(sql_int(buf_cstr(&path),
		"SELECT count(*) FROM sqlite_master WHERE name = 'records_snap'"), 1);
	/* a read finds old records without writing */
	assert_int_equal(store_msgid_find(u, inbox, "<up1@example.org>", since, &uid, &e), 1);
	assert_int_equal(uid, 1);
	assert_int_equal(sql_int(buf_cstr(&path),
		"SELECT count(*) FROM records WHERE msgid IS NULL"), 2);
	/* a delivery suppresses against them and indexes them */
	assert_int_equal(deliver(u, inbox, d3, 0, since, &r, &e), 0);
	assert_true(r.duplicate);
	assert_int_equal(r.uid, 2);
	assert_int_equal(sql_int(buf_cstr(&path),
		"SELECT count(*) FROM records WHERE msgid IS NULL"), 0);
	assert_int_equal(sql_int(buf_cstr(&path),
		"SELECT count(*) FROM records WHERE msgid = '<up1@example.org>' AND uid = 1"), 1);
	assert_int_equal(messages_in(u, "INBOX"), 2);
	store_user_close(&u);
	/* opening again is a no-op */
	u = open_user("alice");
	assert_int_equal(sql_int(buf_cstr(&path), "SELECT schema FROM state"), 4);
	store_user_close(&u);
	free(d1);
	free(d2);
	free(d3);
	buf_free(&path);
	assert_int_equal(check_clean("alice"), 0);
}

/* store_ckpt.c: commits ask the checkpoint thread; a WAL left alone for
 * a second is emptied, so a mailbox at rest costs its database only. */
static void
test_wal_truncated_at_rest(void **state)
{
	struct store_user *u = open_user("alice");
	struct buf path = BUF_INIT;
	char inbox[33];
	struct stat sb;
	struct err e;
	int i;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	for (i = 0; i < 300; i++) {
		char *d = make_delivery(NULL, i, 600);
		struct store_append_msg m = { d, strlen(d), 0, 0, NULL };
		assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);
		free(d);
	}
	store_user_dir(st, "alice", &path);
	buf_puts(&path, "/user.db-wal");
	assert_int_equal(stat(buf_cstr(&path), &sb), 0);
	assert_true(sb.st_size > 0);
	for (i = 0; i < 100; i++) {     /* at most 10 s */
		struct timespec ts = { 0, 100 * 1000 * 1000 };
		if (stat(buf_cstr(&path), &sb) == 0 && sb.st_size == 0)
			break;
		nanosleep(&ts, NULL);
	}
	assert_int_equal(sb.st_size, 0);
	assert_int_equal(messages_in(u, "INBOX"), 300);
	store_user_close(&u);
	buf_free(&path);
	assert_int_equal(check_clean("alice"), 0);
}

/* Inline bodies are stored as zstd frames when that saves space
 * (blob_compress); reads give the octets back, check verifies the SHA-1 of
 * the octets, a damaged frame is ERR_CORRUPT and a problem for check, and
 * rows stored as octets (small bodies, compression off) read unchanged. */
static int
blob_stored_len(const char *guid, int64_t *size)
{
	struct buf path = BUF_INIT;
	sqlite3 *db;
	sqlite3_stmt *q;
	int n = -1;

	store_user_dir(st, "alice", &path);
	buf_puts(&path, "/user.db");
	assert_int_equal(sqlite3_open(buf_cstr(&path), &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT length(data), size FROM blobs WHERE guid = ?",
		-1, &q, NULL), SQLITE_OK);
	sqlite3_bind_text(q, 1, guid, -1, SQLITE_STATIC);
	if (sqlite3_step(q) == SQLITE_ROW) {
		n = sqlite3_column_int(q, 0);
		*size = sqlite3_column_int64(q, 1);
	}
	sqlite3_finalize(q);
	sqlite3_close(db);
	buf_free(&path);
	return n;
}

static void
blob_damage(const char *guid)
{
	struct buf path = BUF_INIT;
	sqlite3 *db;
	sqlite3_stmt *q;

	store_user_dir(st, "alice", &path);
	buf_puts(&path, "/user.db");
	assert_int_equal(sqlite3_open(buf_cstr(&path), &db), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	/* keep the frame header, break the compressed block after it */
	assert_int_equal(sqlite3_prepare_v2(db, "UPDATE blobs SET data = substr(data, 1, 12) ||"
		" zeroblob(length(data) - 12) WHERE guid = ?", -1, &q, NULL), SQLITE_OK);
	sqlite3_bind_text(q, 1, guid, -1, SQLITE_STATIC);
	assert_int_equal(sqlite3_step(q), SQLITE_DONE);
	sqlite3_finalize(q);
	sqlite3_close(db);
	buf_free(&path);
}

static void
append_guid(struct store_user *u, const char *inbox, const char *data, char *guid)
{
	struct store_append_msg m = { 0 };
	struct store_append_result r;
	struct err e;

	m.data = data;
	m.len = strlen(data);
	if (store_append(u, inbox, &m, 1, &r, NULL, &e) < 0)
		fail_msg("append: %s", e.msg);
	memcpy(guid, r.guid, STORE_GUID_LEN + 1);
}

static void
test_blob_compression(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33], g_big[STORE_GUID_LEN + 1], g_small[STORE_GUID_LEN + 1];
	char *big = make_msg(1, 4000);
	const char *small = "Subject: s\r\n\r\nhi\r\n";
	struct buf got = BUF_INIT;
	int64_t size = 0;
	struct err e;
	int n;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	append_guid(u, inbox, big, g_big);
	append_guid(u, inbox, small, g_small);
	/* the text compresses: a frame, much shorter than the body */
	n = blob_stored_len(g_big, &size);
	assert_int_equal(size, (int64_t)strlen(big));
	assert_true(n > 0 && n < size / 4);
	/* too small to gain 64 bytes: the octets */
	n = blob_stored_len(g_small, &size);
	assert_int_equal(n, (int)strlen(small));
	assert_int_equal(size, (int64_t)strlen(small));
	assert_int_equal(store_blob_read(u, g_big, &got, &e), 0);
	assert_int_equal(got.len, strlen(big));
	assert_memory_equal(got.data, big, got.len);
	buf_reset(&got);
	assert_int_equal(store_blob_read(u, g_small, &got, &e), 0);
	assert_string_equal(buf_cstr(&got), small);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);

	/* a damaged frame: the read fails as corrupt, check reports it */
	blob_damage(g_big);
	u = open_user("alice");
	buf_reset(&got);
	assert_int_equal(store_blob_read(u, g_big, &got, &e), -1);
	assert_int_equal(e.kind, ERR_CORRUPT);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 1);
	buf_free(&got);
	free(big);
}

/* blob_compress: no stores every inline body as its octets. */
static int
setup_nocompress(void **state)
{
	struct store_opts o;

	(void)state;
	failpoint_set("");
	store_opts_init(&o);
	o.compress = false;
	return setup_opts(&o);
}

static void
test_blob_compression_off(void **state)
{
	struct store_user *u = open_user("alice");
	char inbox[33], g[STORE_GUID_LEN + 1];
	char *big = make_msg(2, 4000);
	struct buf got = BUF_INIT;
	int64_t size = 0;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	append_guid(u, inbox, big, g);
	assert_int_equal(blob_stored_len(g, &size), (int)strlen(big));
	assert_int_equal(store_blob_read(u, g, &got, &e), 0);
	assert_memory_equal(got.data, big, strlen(big));
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
	buf_free(&got);
	free(big);
}

/* Schema 3: STATUS counters kept by triggers through append, flags,
 * copy, move and expunge; an upgrade from schema 2 computes them;
 * castorctl check finds and repairs a wrong one. */
static void
test_status_counters(void **state)
{
	struct store_user *u = open_user("alice");
	struct store_status stt;
	struct store_range all = { 1, UINT32_MAX };
	struct store_mailbox mb;
	struct buf path = BUF_INIT;
	char inbox[33], other[33];
	sqlite3 *db = NULL;
	struct err e;

	(void)state;
	mbid_of(u, "INBOX", inbox);
	assert_int_equal(store_mailbox_create(u, "Other", NULL, &mb, &e), 0);
	str_lcpy(other, mb.uniqueid, sizeof(other));
	for (int i = 0; i < 5; i++) {
		char *d = make_delivery(NULL, i, 300 + 10 * i);
		struct store_append_msg m = { d, strlen(d), 0, 0, NULL };
		assert_int_equal(store_append(u, inbox, &m, 1, NULL, NULL, &e), 0);
		free(d);
	}
	{
		struct store_range r12 = { 1, 2 }, r3 = { 3, 3 };
		assert_int_equal(store_flags(u, inbox, &r12, 1, STORE_FLAGS_ADD, STORE_FLAG_SEEN, "",
			0, NULL, NULL, NULL, &e), 0);
		assert_int_equal(store_flags(u, inbox, &r3, 1, STORE_FLAGS_ADD, STORE_FLAG_DELETED, "",
			0, NULL, NULL, NULL, &e), 0);
		assert_int_equal(store_mailbox_status(u, "INBOX", &stt, &e), 0);
		assert_int_equal(stt.messages, 5);
		assert_int_equal(stt.unseen, 3);
		assert_int_equal(stt.deleted, 1);
		assert_int_equal(store_copy(u, inbox, &r12, 1, other, false, NULL, NULL, NULL, &e), 0);
		assert_int_equal(store_copy(u, inbox, &r3, 1, other, true, NULL, NULL, NULL, &e), 0);
	}
	assert_int_equal(store_mailbox_status(u, "INBOX", &stt, &e), 0);
	assert_int_equal(stt.messages, 4);
	assert_int_equal(stt.deleted, 0);
	assert_int_equal(store_mailbox_status(u, "Other", &stt, &e), 0);
	assert_int_equal(stt.messages, 3);
	assert_int_equal(stt.unseen, 1);
	assert_int_equal(stt.deleted, 1);
	assert_int_equal(store_expunge(u, other, &all, 1, true, NULL, &e), 0);
	assert_int_equal(store_mailbox_status(u, "Other", &stt, &e), 0);
	assert_int_equal(stt.messages, 2);
	assert_int_equal(stt.deleted, 0);
	store_user_close(&u);
	store_user_dir(st, "alice", &path);
	buf_puts(&path, "/user.db");
	/* the counters are what a scan of the records gives */
	assert_int_equal(sql_int(buf_cstr(&path), "SELECT c_exists FROM mailboxes WHERE name = 'INBOX'"),
		sql_int(buf_cstr(&path), "SELECT count(*) FROM records r JOIN mailboxes m ON m.id = r.mailbox"
			" WHERE m.name = 'INBOX' AND r.expunged_modseq = 0"));
	assert_int_equal(sql_int(buf_cstr(&path), "SELECT c_size FROM mailboxes WHERE name = 'INBOX'"),
		sql_int(buf_cstr(&path), "SELECT sum(size) FROM records r JOIN mailboxes m ON m.id = r.mailbox"
			" WHERE m.name = 'INBOX' AND r.expunged_modseq = 0"));
	assert_int_equal(check_clean("alice"), 0);
	/* a wrong counter is found, and repaired */
	assert_int_equal(sqlite3_open(buf_cstr(&path), &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE mailboxes SET c_exists = 99 WHERE name = 'INBOX'",
		NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_true(check_clean("alice") > 0);
	assert_true(store_check(st, "alice", true, NULL, NULL, &e) > 0);
	assert_int_equal(check_clean("alice"), 0);
	/* schema 2 (no counters) is upgraded at open, counters computed */
	assert_int_equal(sqlite3_open(buf_cstr(&path), &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DROP TRIGGER records_count_ins; DROP TRIGGER records_count_del;"
		"DROP TRIGGER records_count_upd; ALTER TABLE mailboxes DROP COLUMN c_exists;"
		"ALTER TABLE mailboxes DROP COLUMN c_unseen; ALTER TABLE mailboxes DROP COLUMN c_deleted;"
		"ALTER TABLE mailboxes DROP COLUMN c_size; UPDATE state SET schema = 2", NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	u = open_user("alice");
	assert_int_equal(sql_int(buf_cstr(&path), "SELECT schema FROM state"), 4);
	assert_int_equal(sql_int(buf_cstr(&path), "SELECT c_exists FROM mailboxes WHERE name = 'INBOX'"), 4);
	assert_int_equal(store_mailbox_status(u, "INBOX", &stt, &e), 0);
	assert_int_equal(stt.messages, 4);
	assert_int_equal(stt.unseen, 2);
	store_user_close(&u);
	assert_int_equal(check_clean("alice"), 0);
	buf_free(&path);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_create_open_server, setup, teardown),
		cmocka_unit_test_setup_teardown(test_users, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mailbox_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mailbox_create_get, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mailbox_rename, setup, teardown),
		cmocka_unit_test_setup_teardown(test_mailbox_delete, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flags, setup, teardown),
		cmocka_unit_test_setup_teardown(test_expunge, setup, teardown),
		cmocka_unit_test_setup_teardown(test_copy_move, setup_files, teardown),
		cmocka_unit_test_setup_teardown(test_quota, setup, teardown),
		cmocka_unit_test_setup_teardown(test_quota_default, setup, teardown),
		cmocka_unit_test_setup_teardown(test_modseq_changes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_crc, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_recent_both_ends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snapshot, setup, teardown),
		cmocka_unit_test_setup_teardown(test_change_hook, setup, teardown),
		cmocka_unit_test_setup_teardown(test_txn, setup, teardown),
		cmocka_unit_test_setup_teardown(test_read_only, setup, teardown),
		cmocka_unit_test_setup_teardown(test_watch_fd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_torn_reads, setup, teardown),
		cmocka_unit_test_setup_teardown(test_group_commit_stats, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failpoint_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failpoint_blob, setup, teardown),
		cmocka_unit_test_setup_teardown(test_repl, setup, teardown),
		cmocka_unit_test_setup_teardown(test_purge, setup_files, teardown),
		cmocka_unit_test_setup_teardown(test_check_repair, setup, teardown),
		cmocka_unit_test_setup_teardown(test_check_leftover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_modseq, setup, teardown),
		cmocka_unit_test(test_opts_from_conf),
		cmocka_unit_test_setup_teardown(test_user_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_snap_index_upgrade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_uidvalidity_after_readd, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dedup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dedup_expunged, setup_files, teardown),
		cmocka_unit_test_setup_teardown(test_dedup_concurrent, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dedup_drop_race, setup_files, teardown),
		cmocka_unit_test_setup_teardown(test_dedup_replica, setup, teardown),
		cmocka_unit_test_setup_teardown(test_dedup_upgrade, setup, teardown),
		cmocka_unit_test_setup_teardown(test_status_counters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wal_truncated_at_rest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blob_compression, setup, teardown),
		cmocka_unit_test_setup_teardown(test_blob_compression_off, setup_nocompress, teardown),
		cmocka_unit_test_setup_teardown(test_dedup_scale, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_undo, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
