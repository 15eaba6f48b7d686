/*
 * test_store_damage.c - damage is never a new user (store_damage.c):
 * store_user_open of an existing user whose user.db is missing, empty,
 * truncated mid-page, of another schema or of another identity fails
 * with ERR_DAMAGED and creates nothing; a user.db without its users row
 * is damage too; store_user_reset and store_user_add are the ways to a
 * fresh database; a database from before identities gets one.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "store/store.h"

struct fx {
	char root[64];
	struct store *st;
	char db[256];
};

static int
setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	struct err e;
	struct store_mailbox mb;
	struct store_user *u;
	struct store_append_msg m = { .data = "Subject: x\r\n\r\nhi\r\n", .len = 18 };
	struct store_append_result r;

	snprintf(f->root, sizeof(f->root), "/tmp/castor-damage-XXXXXX");
	assert_non_null(mkdtemp(f->root));
	assert_int_equal(store_create(f->root, "master", &e), 0);
	f->st = store_open(f->root, NULL, &e);
	assert_non_null(f->st);
	assert_int_equal(store_user_add(f->st, "alice", "pw", &e), 0);
	assert_int_equal(store_user_add(f->st, "bob", "pw", &e), 0);
	u = store_user_open(f->st, "alice", &e);
	assert_non_null(u);
	assert_int_equal(store_mailbox_get(u, "INBOX", &mb, &e), 0);
	for (int i = 0; i < 40; i++)
		assert_int_equal(store_append(u, mb.uniqueid, &m, 1, &r, NULL, &e), 0);
	store_user_close(&u);
	snprintf(f->db, sizeof(f->db), "%s/spool/a/alice/user.db", f->root);
	*state = f;
	return 0;
}

static int
teardown(void **state)
{
	struct fx *f = *state;
	char cmd[128];

	store_close(&f->st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", f->root);
	assert_int_equal(system(cmd), 0);
	free(f);
	return 0;
}

/* alice is damaged, and opening her left no user.db behind. */
static void
assert_damaged(struct fx *f, bool db_gone)
{
	struct err e;
	struct store_user *u = store_user_open(f->st, "alice", &e);

	assert_null(u);
	assert_int_equal(e.kind, ERR_DAMAGED);
	assert_non_null(strstr(e.msg, "alice"));
	if (db_gone)
		assert_int_not_equal(access(f->db, F_OK), 0);
	/* bob is not affected */
	u = store_user_open(f->st, "bob", &e);
	assert_non_null(u);
	store_user_close(&u);
}

static int
count_damaged(void *ctx, const char *user, const char *why)
{
	(void)why;
	assert_string_equal(user, "alice");
	(*(int *)ctx)++;
	return 0;
}

/* reset gives a fresh, empty, usable database and clears the mark */
static void
assert_reset(struct fx *f)
{
	struct err e;
	struct store_user *u;
	struct store_status ss;
	int n = 0;

	assert_int_equal(store_user_damaged_list(f->st, count_damaged, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_int_equal(store_user_reset(f->st, "alice", &e), 0);
	u = store_user_open(f->st, "alice", &e);
	assert_non_null(u);
	assert_int_equal(store_mailbox_status(u, "INBOX", &ss, &e), 0);
	assert_int_equal(ss.messages, 0);
	store_user_close(&u);
	n = 0;
	assert_int_equal(store_user_damaged_list(f->st, count_damaged, &n, &e), 0);
	assert_int_equal(n, 0);
}

/* Fold a user's WAL into its user.db, so that a copy is whole. */
static void
fold_wal(struct fx *f, const char *user)
{
	char p[300];
	sqlite3 *db;

	snprintf(p, sizeof(p), "%s/spool/%c/%s/user.db", f->root, user[0], user);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
}

static void
rm_db(struct fx *f)
{
	char p[300];

	unlink(f->db);
	snprintf(p, sizeof(p), "%s-wal", f->db);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->db);
	unlink(p);
}

static void
test_missing(void **state)
{
	struct fx *f = *state;

	rm_db(f);
	assert_damaged(f, true);
	assert_reset(f);
}

static void
test_empty(void **state)
{
	struct fx *f = *state;
	struct stat sb;

	rm_db(f);
	close(open(f->db, O_CREAT | O_WRONLY, 0640));
	assert_damaged(f, false);
	assert_int_equal(stat(f->db, &sb), 0);
	assert_int_equal(sb.st_size, 0);
	assert_reset(f);
}

static void
test_truncated(void **state)
{
	struct fx *f = *state;
	struct stat sb;
	char p[300];

	/* the WAL folded into user.db first: a cut the header can see */
	snprintf(p, sizeof(p), "%s-wal", f->db);
	{
		sqlite3 *db;
		assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL),
			SQLITE_OK);
		sqlite3_close(db);
	}
	unlink(p);
	assert_int_equal(stat(f->db, &sb), 0);
	assert_true(sb.st_size > 8192);
	assert_int_equal(truncate(f->db, sb.st_size - 1500), 0);
	assert_damaged(f, false);
	assert_reset(f);
}

static void
test_wrong_schema(void **state)
{
	struct fx *f = *state;
	sqlite3 *db;

	rm_db(f);
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "PRAGMA journal_mode=WAL; CREATE TABLE notes(x TEXT);"
		" INSERT INTO notes VALUES ('x')", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_damaged(f, false);
	assert_reset(f);
}

/* a database in rollback-journal mode was not made by the store (and
 * opening it must not convert it: the file stays as it was) */
static void
test_not_wal(void **state)
{
	struct fx *f = *state;
	struct stat a, b;
	sqlite3 *db;

	rm_db(f);
	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "CREATE TABLE notes(x TEXT)", NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
	assert_int_equal(stat(f->db, &a), 0);
	assert_damaged(f, false);
	assert_int_equal(stat(f->db, &b), 0);
	assert_int_equal(a.st_mtim.tv_nsec, b.st_mtim.tv_nsec);
	assert_int_equal(a.st_size, b.st_size);
	assert_reset(f);
}

static void
test_future_schema(void **state)
{
	struct fx *f = *state;
	sqlite3 *db;

	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE state SET schema = 99", NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	assert_damaged(f, false);
	assert_reset(f);
}

/* bob's database copied over alice's: a whole database, not hers */
static void
test_other_identity(void **state)
{
	struct fx *f = *state;
	char cmd[600];

	fold_wal(f, "bob");
	rm_db(f);
	snprintf(cmd, sizeof(cmd), "cp %s/spool/b/bob/user.db %s", f->root, f->db);
	assert_int_equal(system(cmd), 0);
	assert_damaged(f, false);
	assert_reset(f);
}

/* a user.db whose users row is gone: neither a user nor a new one */
static void
test_row_missing(void **state)
{
	struct fx *f = *state;
	struct err e;
	sqlite3 *db;
	char p[300];

	snprintf(p, sizeof(p), "%s/db/users.db", f->root);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "DELETE FROM users WHERE name = 'alice'", NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	assert_null(store_user_open(f->st, "alice", &e));
	assert_int_equal(e.kind, ERR_DAMAGED);
	assert_int_equal(store_user_verify(f->st, "alice", "pw", &e), -1);
	assert_int_equal(e.kind, ERR_DAMAGED);
	/* an unknown name stays unknown */
	assert_null(store_user_open(f->st, "carol", &e));
	assert_int_equal(e.kind, ERR_NOTFOUND);
	/* user add is explicit: the old spool is kept aside, a new one made */
	assert_int_equal(store_user_add(f->st, "alice", "pw", &e), 0);
	{
		struct store_user *u = store_user_open(f->st, "alice", &e);
		assert_non_null(u);
		store_user_close(&u);
	}
}

/* A database and users row from before identities get one at open. */
static void
test_migration(void **state)
{
	struct fx *f = *state;
	struct store_user *u;
	struct err e;
	sqlite3 *db;
	char p[300];

	assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "ALTER TABLE state DROP COLUMN ident", NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	snprintf(p, sizeof(p), "%s/db/users.db", f->root);
	assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
	assert_int_equal(sqlite3_exec(db, "UPDATE users SET ident = NULL", NULL, NULL, NULL),
		SQLITE_OK);
	sqlite3_close(db);
	u = store_user_open(f->st, "alice", &e);
	assert_non_null(u);
	store_user_close(&u);
	/* now bound: a copy of bob's database is no longer taken for hers */
	fold_wal(f, "bob");
	rm_db(f);
	snprintf(p, sizeof(p), "cp %s/spool/b/bob/user.db %s", f->root, f->db);
	assert_int_equal(system(p), 0);
	assert_damaged(f, false);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_not_wal, setup, teardown),
		cmocka_unit_test_setup_teardown(test_future_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_other_identity, setup, teardown),
		cmocka_unit_test_setup_teardown(test_row_missing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
