/* test_syncdigest.c - unit tests for sync/syncdigest.c and the users.db
 * summary of store/store_summary.c: the sorted merge of anti-entropy,
 * the digest read from the summary equals the one computed from the
 * database (and the digest older peers compute), listing unchanged
 * users opens no user database, an unknown summary is computed once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/crc32c.h"
#include "lib/str.h"
#include "store/store.h"
#include "sync/syncdigest.h"
#include "sync/synclog.h"

/* ------------------------------------------------------------------ */
/* The sorted merge                                                    */

struct pairs {
	char out[512];
};

static int
pair_cb(void *ctx, size_t ia, size_t ib)
{
	struct pairs *p = ctx;
	char one[32];

	snprintf(one, sizeof(one), "%s%s:%s", p->out[0] ? " " : "",
		ia == SIZE_MAX ? "-" : (char[2]){ (char)('0' + ia), 0 },
		ib == SIZE_MAX ? "-" : (char[2]){ (char)('0' + ib), 0 });
	str_lcpy(p->out + strlen(p->out), one, sizeof(p->out) - strlen(p->out));
	return 0;
}

static void
merge(const char *const *a, size_t na, const char *const *b, size_t nb, const char *want)
{
	struct pairs p;

	memset(&p, 0, sizeof(p));
	assert_int_equal(syncdigest_merge(a, na, b, nb, pair_cb, &p), 0);
	assert_string_equal(p.out, want);
}

static void
test_merge(void **state)
{
	const char *a[] = { "alice", "bob", "carol", "dave" };
	const char *b[] = { "aaron", "bob", "dave", "zed" };

	(void)state;
	merge(a, 4, b, 4, "-:0 0:- 1:1 2:- 3:2 -:3");
	merge(a, 4, b, 0, "0:- 1:- 2:- 3:-");
	merge(a, 0, b, 2, "-:0 -:1");
	merge(a, 0, b, 0, "");
	merge(a, 4, a, 4, "0:0 1:1 2:2 3:3");
}

static int
stop_cb(void *ctx, size_t ia, size_t ib)
{
	int *n = ctx;

	(void)ia;
	(void)ib;
	return ++*n == 2 ? 7 : 0;
}

static void
test_merge_stops(void **state)
{
	const char *a[] = { "a", "b", "c" };
	int n = 0;

	(void)state;
	assert_int_equal(syncdigest_merge(a, 3, a, 3, stop_cb, &n), 7);
	assert_int_equal(n, 2);
}

/* ------------------------------------------------------------------ */
/* Summaries                                                           */

static char root[256];
static struct store *st;

static int
setup(void **state)
{
	struct err e;

	(void)state;
	str_lcpy(root, "/tmp/castor-digest-XXXXXX", sizeof(root));
	if (mkdtemp(root) == NULL || store_create(root, "master", &e) < 0)
		return -1;
	st = store_open(root, NULL, &e);
	if (st == NULL)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	store_close(&st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	return system(cmd) == 0 ? 0 : -1;
}

/* The digest as sync peers before the summary computed it (every user
 * opened, its mailboxes listed): the wire value must not change. */
struct ref {
	struct buf mbs[16];
	char ids[16][STORE_UNIQUEID_LEN + 1];
	size_t n;
	struct buf subs;
};

static int
ref_mb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct ref *r = ctx;

	(void)name;
	(void)attrs;
	if (mb == NULL || mb->deleted_modseq != 0)
		return 0;
	assert_true(r->n < 16);
	buf_init(&r->mbs[r->n]);
	buf_printf(&r->mbs[r->n], "%s\n%s\n%u %llu %u %s\n", mb->uniqueid, mb->name,
		mb->uidvalidity, (unsigned long long)mb->highestmodseq, mb->sync_crc, mb->specialuse);
	str_lcpy(r->ids[r->n], mb->uniqueid, sizeof(r->ids[0]));
	r->n++;
	return 0;
}

static int
ref_sub(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct ref *r = ctx;

	(void)mb;
	if (attrs & STORE_MBATTR_SUBSCRIBED) {
		buf_puts(&r->subs, name);
		buf_putc(&r->subs, '\n');
	}
	return 0;
}

static uint32_t
ref_digest(struct store_user *u, const char *hash)
{
	struct ref r;
	struct err e;
	uint32_t crc = 0;
	bool used[16] = { false };
	char line[128];

	memset(&r, 0, sizeof(r));
	buf_init(&r.subs);
	assert_int_equal(store_mailbox_list(u, "*", STORE_LIST_NO_PARENTS, ref_mb, &r, &e), 0);
	assert_int_equal(store_mailbox_list(u, "*", STORE_LIST_SUBSCRIBED, ref_sub, &r, &e), 0);
	for (size_t k = 0; k < r.n; k++) {
		size_t best = SIZE_MAX;
		for (size_t i = 0; i < r.n; i++)
			if (!used[i] && (best == SIZE_MAX || strcmp(r.ids[i], r.ids[best]) < 0))
				best = i;
		used[best] = true;
		crc = crc32c(crc, r.mbs[best].data, r.mbs[best].len);
	}
	crc = crc32c(crc, "subs\n", 5);
	crc = crc32c(crc, r.subs.data ? r.subs.data : "", r.subs.len);
	if (hash != NULL) {
		unsigned char md[32];
		unsigned int n = 0;
		char hex[65];
		EVP_Digest(hash, strlen(hash), md, &n, EVP_sha256(), NULL);
		str_hex(md, n, hex);
		crc = crc32c(crc, hex, strlen(hex));
	}
	snprintf(line, sizeof(line), "\nquota %lld %lld\n", -1LL, -1LL);
	crc = crc32c(crc, line, strlen(line));
	for (size_t i = 0; i < r.n; i++)
		buf_free(&r.mbs[i]);
	buf_free(&r.subs);
	return crc;
}

struct got {
	char name[64];
	uint64_t modseq;
	uint32_t digest;
	size_t n;
};

static int
got_cb(void *ctx, const char *user, uint64_t modseq, uint32_t digest)
{
	struct got *g = ctx;

	str_lcpy(g->name, user, sizeof(g->name));
	g->modseq = modseq;
	g->digest = digest;
	g->n++;
	return 0;
}

static void
list(struct got *g, size_t *opened)
{
	struct err e;

	memset(g, 0, sizeof(*g));
	assert_int_equal(syncdigest_users(st, got_cb, g, opened, &e), 0);
	assert_int_equal(g->n, 1);
}

static void
test_summary_digest(void **state)
{
	struct err e;
	struct store_user *u;
	struct store_userinfo ui;
	char *hash = NULL;
	struct got g;
	size_t opened = 99;
	uint64_t ms;

	(void)state;
	assert_int_equal(store_user_add(st, "alice", "pw", &e), 0);
	u = store_user_open(st, "alice", &e);
	assert_non_null(u);
	assert_int_equal(store_mailbox_create(u, "Work", "\\Archive", NULL, &e), 0);
	assert_int_equal(store_mailbox_create(u, "Work/Sub", NULL, NULL, &e), 0);
	assert_int_equal(store_subscribe(u, "Work", true, &e), 0);
	assert_int_equal(syncdigest_userinfo(st, "alice", &ui, &hash, &e), 0);
	assert_int_equal(store_user_modseq(u, &ms, &e), 0);

	/* from the summary: the same values, nothing opened */
	list(&g, &opened);
	assert_int_equal(opened, 0);
	assert_string_equal(g.name, "alice");
	assert_int_equal(g.modseq, ms);
	assert_int_equal(g.digest, ref_digest(u, hash));

	/* a change moves the summary with it */
	assert_int_equal(store_mailbox_delete(u, "Work/Sub", &e), 0);
	assert_int_equal(store_user_modseq(u, &ms, &e), 0);
	list(&g, &opened);
	assert_int_equal(opened, 0);
	assert_int_equal(g.modseq, ms);
	assert_int_equal(g.digest, ref_digest(u, hash));
	store_user_close(&u);

	/* an unknown summary (reset after a reboot, or by hand): computed
	 * once, written back */
	{
		char p[400];
		sqlite3 *db;
		snprintf(p, sizeof(p), "%s/db/users.db", root);
		assert_int_equal(sqlite3_open(p, &db), SQLITE_OK);
		assert_int_equal(sqlite3_exec(db, "UPDATE users SET sum_modseq = NULL", NULL, NULL,
			NULL), SQLITE_OK);
		sqlite3_close(db);
	}
	{
		uint32_t before = g.digest;
		list(&g, &opened);
		assert_int_equal(opened, 1);
		assert_int_equal(g.digest, before);
		list(&g, &opened);
		assert_int_equal(opened, 0);
		assert_int_equal(g.digest, before);
	}
	free(hash);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_merge),
		cmocka_unit_test(test_merge_stops),
		cmocka_unit_test_setup_teardown(test_summary_digest, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
