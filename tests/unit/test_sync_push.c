/* test_sync_push.c - the master side (sync/syncpush_*.c) against a real
 * replica side (syncapply over syncsess) in a forked child, over a
 * socketpair: full sync, incremental sync through the cache, idempotency,
 * zstd on the channel, conflicts detected and left alone, and no deletion
 * inferred from absence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/str.h"
#include "store/store.h"
#include "sync/syncapply.h"
#include "sync/synclog.h"
#include "sync/syncpush.h"
#include "sync/syncsess.h"

static char mroot[256], rroot[256];
static struct store *mst;
static pid_t child;
static struct syncsess *sess;
static struct syncpush *push;
static unsigned conflicts_seen[SYNCPUSH_C_COUNT];

static enum syncpush_resolution
hook(void *ctx, const struct syncpush_conflict *c)
{
	(void)ctx;
	conflicts_seen[c->kind]++;
	return c->kind == SYNCPUSH_C_FLAGS ? SYNCPUSH_R_MASTER : SYNCPUSH_R_LEAVE;
}

/* The replica: a minimal syncd loop on one end of the socketpair. */
static void
serve(int fd)
{
	struct syncapply_opts o;
	struct store *st;
	struct syncsess *s;
	struct syncapply *a;
	struct err err;

	st = store_open(rroot, NULL, &err);
	if (st == NULL)
		_exit(3);
	s = syncsess_new(conn_new(fd, fd), true, NULL);
	memset(&o, 0, sizeof(o));
	o.auth_allowed = true;
	o.compress_allowed = true;
	a = syncapply_new(st, &o);
	syncapply_greeting(a, syncsess_out(s));
	for (;;) {
		struct syncproto_value *f;
		enum syncapply_action act;
		int rc;

		if (!syncsess_pending(s)) {
			syncapply_sync(a, syncsess_out(s));
			if (syncsess_flush(s, &err) < 0)
				break;
		}
		rc = syncsess_read(s, &f, &err);
		if (rc <= 0)
			break;
		act = syncapply_frame(a, f, syncsess_out(s));
		syncproto_value_free(&f);
		if (act == SYNCAPPLY_CLOSE)
			break;
		if (act == SYNCAPPLY_COMPRESS) {
			if (syncsess_flush(s, &err) < 0 || syncsess_compress_start(s, 3, &err) < 0)
				break;
		}
	}
	syncapply_sync(a, syncsess_out(s));
	(void)syncsess_flush(s, &err);
	syncapply_free(&a);
	syncsess_free(&s);
	store_close(&st);
	_exit(0);
}

static void
connect_replica(bool compress)
{
	struct syncpush_login l;
	struct err err;
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		close(sv[0]);
		serve(sv[1]);
	}
	close(sv[1]);
	sess = syncsess_new(conn_new(sv[0], sv[0]), false, NULL);
	push = syncpush_new(mst, sess);
	syncpush_set_conflict_hook(push, hook, NULL);
	memset(&l, 0, sizeof(l));
	l.authname = "sync";
	l.password = "syncpw";
	l.channel = "r1";
	l.compress = compress;
	if (syncpush_login(push, &l, &err) < 0)
		fail_msg("login: %s", err.msg);
}

static void
disconnect_replica(void)
{
	int status = 0;

	syncpush_logout(push);
	syncpush_free(&push);
	syncsess_free(&sess);
	waitpid(child, &status, 0);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static int
setup(void **state)
{
	struct err err;
	struct store *rst;

	(void)state;
	memset(conflicts_seen, 0, sizeof(conflicts_seen));
	str_lcpy(mroot, "/tmp/castor-syncpush-m-XXXXXX", sizeof(mroot));
	str_lcpy(rroot, "/tmp/castor-syncpush-r-XXXXXX", sizeof(rroot));
	if (mkdtemp(mroot) == NULL || mkdtemp(rroot) == NULL)
		return -1;
	if (store_create(mroot, "master", &err) < 0 || store_create(rroot, "replica", &err) < 0)
		return -1;
	rst = store_open(rroot, NULL, &err);
	if (rst == NULL || store_sync_auth_set(rst, "sync", "syncpw", &err) < 0)
		return -1;
	store_close(&rst);
	mst = store_open(mroot, NULL, &err);
	return mst == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char cmd[600];

	(void)state;
	store_close(&mst);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s' '%s'", mroot, rroot);
	return system(cmd) == 0 ? 0 : -1;
}

static void
deliver(const char *user, const char *mbox, int n, const char *seed, uint32_t sys)
{
	struct store_user *u = store_user_open(mst, user, NULL);
	struct store_mailbox mb;
	struct buf m = BUF_INIT;

	assert_non_null(u);
	assert_int_equal(store_mailbox_get(u, mbox, &mb, NULL), 0);
	for (int i = 0; i < n; i++) {
		struct store_append_msg msg;
		struct store_append_result res;
		buf_reset(&m);
		buf_printf(&m, "Subject: %s %d\r\n\r\n", seed, i);
		for (int k = 0; k < 40; k++)
			buf_printf(&m, "line %d of message %s %d, compressible text\r\n", k, seed, i);
		memset(&msg, 0, sizeof(msg));
		msg.data = m.data;
		msg.len = m.len;
		msg.sysflags = sys;
		assert_int_equal(store_append(u, mb.uniqueid, &msg, 1, &res, NULL, NULL), 0);
	}
	buf_free(&m);
	store_user_close(&u);
}

/* A comparable text of a store's user: mailboxes (live) and records. */
struct cmp {
	struct buf *out;
	struct store_user *u;
};

static int
cmp_rec(void *ctx, const struct store_record *r)
{
	struct buf *out = ctx;

	if (r->expunged_modseq == 0)
		buf_printf(out, "  %u %s %llu %x %s\n", r->uid, r->guid, (unsigned long long)r->modseq,
			r->sysflags, r->keywords ? r->keywords : "");
	return 0;
}

static int
cmp_mb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct cmp *c = ctx;

	(void)attrs;
	if (mb == NULL)
		return 0;
	buf_printf(c->out, "%s %s %u %llu %08x\n", name, mb->uniqueid, mb->uidvalidity,
		(unsigned long long)mb->highestmodseq, mb->sync_crc);
	return store_records_since(c->u, mb->uniqueid, 0, cmp_rec, c->out, NULL);
}

static void
snapshot(const char *root, const char *user, struct buf *out)
{
	struct store *st = store_open(root, NULL, NULL);
	struct cmp c;

	assert_non_null(st);
	buf_reset(out);
	c.out = out;
	c.u = store_user_open(st, user, NULL);
	if (c.u != NULL) {
		assert_int_equal(store_mailbox_list(c.u, "*", STORE_LIST_NO_PARENTS, cmp_mb, &c, NULL), 0);
		store_user_close(&c.u);
	} else {
		buf_puts(out, "(no user)");
	}
	store_close(&st);
}

static void
assert_same(const char *user)
{
	struct buf a = BUF_INIT, b = BUF_INIT;

	snapshot(mroot, user, &a);
	snapshot(rroot, user, &b);
	if (!str_eq(buf_cstr(&a), buf_cstr(&b)))
		fail_msg("master:\n%s\nreplica:\n%s", buf_cstr(&a), buf_cstr(&b));
	buf_free(&a);
	buf_free(&b);
}

static void
run_batch(unsigned type, const char *user, const char *id)
{
	struct syncpush_batch *b = syncpush_batch_new();
	struct err err;

	syncpush_batch_add(b, type, user, id);
	if (syncpush_run(push, b, &err) < 0)
		fail_msg("run: %s", err.msg);
	syncpush_batch_free(&b);
}

static void
test_full_then_incremental(void **state)
{
	struct syncpush_stats s;
	struct store_user *u;
	struct store_mailbox work;
	struct store_range r = { 1, 5 };
	size_t differ = 99;
	struct err err;

	(void)state;
	assert_int_equal(store_user_add(mst, "alice", "pw", NULL), 0);
	u = store_user_open(mst, "alice", NULL);
	assert_int_equal(store_mailbox_create(u, "Work", NULL, &work, NULL), 0);
	store_user_close(&u);
	deliver("alice", "INBOX", 30, "a", 0);
	deliver("alice", "Work", 10, "w", STORE_FLAG_SEEN);
	connect_replica(false);
	assert_int_equal(syncpush_anti_entropy(push, &differ, &err), 0);
	assert_int_equal(differ, 1);
	assert_same("alice");
	syncpush_stats(push, &s);
	assert_int_equal(s.uploads, 40);
	/* nothing left to do: a second pass finds no difference */
	assert_int_equal(syncpush_anti_entropy(push, &differ, &err), 0);
	assert_int_equal(differ, 0);
	/* incremental, from the cache: one mailbox, only what changed */
	u = store_user_open(mst, "alice", NULL);
	assert_int_equal(store_flags(u, work.uniqueid, &r, 1, STORE_FLAGS_ADD, STORE_FLAG_FLAGGED,
		"k1", 0, NULL, NULL, NULL, NULL), 0);
	assert_int_equal(store_expunge(u, work.uniqueid, &r, 1, false, NULL, NULL), 0);
	store_user_close(&u);
	deliver("alice", "Work", 2, "w2", 0);
	run_batch(SYNCLOG_MAILBOX, "alice", work.uniqueid);
	assert_same("alice");
	syncpush_stats(push, &s);
	assert_int_equal(s.uploads, 42);   /* once per new message */
	/* replaying the same hint changes nothing and sends nothing */
	run_batch(SYNCLOG_MAILBOX, "alice", work.uniqueid);
	syncpush_stats(push, &s);
	assert_int_equal(s.uploads, 42);
	assert_int_equal(s.errors, 0);
	disconnect_replica();
	assert_same("alice");
}

static void
test_compressed_channel(void **state)
{
	size_t differ = 0;
	struct err err;

	(void)state;
	assert_int_equal(store_user_add(mst, "bob", NULL, NULL), 0);
	deliver("bob", "INBOX", 50, "b", 0);
	connect_replica(true);
	assert_true(syncsess_compressed(sess));
	assert_int_equal(syncpush_anti_entropy(push, &differ, &err), 0);
	assert_true(syncsess_wire_out(sess) < syncsess_plain_out(sess) / 2);
	disconnect_replica();
	assert_same("bob");
}

static void
test_conflicts_left_alone(void **state)
{
	struct store *rst;
	struct store_user *u;
	struct store_mailbox mb;
	struct store_append_msg msg;
	struct store_append_result res;
	struct buf before = BUF_INIT, after = BUF_INIT;
	size_t differ = 0;
	struct err err;

	(void)state;
	assert_int_equal(store_user_add(mst, "carol", NULL, NULL), 0);
	deliver("carol", "INBOX", 3, "c", 0);
	connect_replica(false);
	assert_int_equal(syncpush_anti_entropy(push, &differ, &err), 0);
	disconnect_replica();
	/* split brain: uid 4 is a different message on each side, uid 5
	 * exists only on the replica */
	deliver("carol", "INBOX", 1, "master-side", 0);
	rst = store_open(rroot, NULL, NULL);
	u = store_user_open(rst, "carol", NULL);
	assert_int_equal(store_mailbox_get(u, "INBOX", &mb, NULL), 0);
	memset(&msg, 0, sizeof(msg));
	msg.data = "Subject: replica 1\r\n\r\nx\r\n";
	msg.len = strlen(msg.data);
	assert_int_equal(store_append(u, mb.uniqueid, &msg, 1, &res, NULL, NULL), 0);
	msg.data = "Subject: replica 2\r\n\r\ny\r\n";
	msg.len = strlen(msg.data);
	assert_int_equal(store_append(u, mb.uniqueid, &msg, 1, &res, NULL, NULL), 0);
	store_user_close(&u);
	store_close(&rst);
	snapshot(rroot, "carol", &before);
	connect_replica(false);
	assert_int_equal(syncpush_anti_entropy(push, &differ, &err), 0);
	disconnect_replica();
	snapshot(rroot, "carol", &after);
	assert_string_equal(buf_cstr(&before), buf_cstr(&after));
	assert_true(conflicts_seen[SYNCPUSH_C_UID_ABOVE] + conflicts_seen[SYNCPUSH_C_GUID] >= 1);
	buf_free(&before);
	buf_free(&after);
}

static void
test_no_delete_from_absence(void **state)
{
	struct store_user *u;
	struct store_mailbox keep;
	size_t differ = 0;
	struct err err;
	char cmd[600];

	(void)state;
	assert_int_equal(store_user_add(mst, "dave", NULL, NULL), 0);
	u = store_user_open(mst, "dave", NULL);
	assert_int_equal(store_mailbox_create(u, "Keep", NULL, &keep, NULL), 0);
	store_user_close(&u);
	deliver("dave", "Keep", 2, "k", 0);
	connect_replica(false);
	assert_int_equal(syncpush_anti_entropy(push, &differ, &err), 0);
	disconnect_replica();
	/* the master "loses" the mailbox row without a tombstone (corruption) */
	{
		sqlite3 *db = NULL;
		snprintf(cmd, sizeof(cmd), "%s/spool/d/dave/user.db", mroot);
		assert_int_equal(sqlite3_open(cmd, &db), SQLITE_OK);
		sqlite3_busy_timeout(db, 10000);
		assert_int_equal(sqlite3_exec(db, "DELETE FROM records WHERE mailbox IN (SELECT id FROM"
			" mailboxes WHERE name = 'Keep'); DELETE FROM mailboxes WHERE name = 'Keep'",
			NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
		/* an edit by hand resets the user's summary (store_summary.c) */
		snprintf(cmd, sizeof(cmd), "%s/db/users.db", mroot);
		assert_int_equal(sqlite3_open(cmd, &db), SQLITE_OK);
		sqlite3_busy_timeout(db, 10000);
		assert_int_equal(sqlite3_exec(db, "UPDATE users SET sum_modseq = NULL WHERE name = 'dave'",
			NULL, NULL, NULL), SQLITE_OK);
		sqlite3_close(db);
	}
	connect_replica(false);
	assert_int_equal(syncpush_anti_entropy(push, &differ, &err), 0);
	run_batch(SYNCLOG_MAILBOX, "dave", keep.uniqueid);
	disconnect_replica();
	/* still there on the replica, reported */
	{
		struct store *rst = store_open(rroot, NULL, NULL);
		struct store_mailbox mb;
		u = store_user_open(rst, "dave", NULL);
		assert_int_equal(store_mailbox_get(u, "Keep", &mb, NULL), 0);
		assert_int_equal(mb.deleted_modseq, 0);
		store_user_close(&u);
		store_close(&rst);
	}
	assert_true(conflicts_seen[SYNCPUSH_C_REPLICA_MAILBOX] >= 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_full_then_incremental, setup, teardown),
		cmocka_unit_test_setup_teardown(test_compressed_channel, setup, teardown),
		cmocka_unit_test_setup_teardown(test_conflicts_left_alone, setup, teardown),
		cmocka_unit_test_setup_teardown(test_no_delete_from_absence, setup, teardown),
	};

	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
