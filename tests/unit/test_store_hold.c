/*
 * test_store_hold.c - the split-brain and delayed-deletion primitives of
 * store_repl.h: a replaced record keeps the mailbox's checksum and usage
 * exact (store_check finds nothing), the loser is copied into the
 * quarantine with a manifest line first; a deleted mailbox is noted in
 * deleted/ and purged only after the hold; a tombstone without a note
 * gets one dated now.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/buf.h"
#include "lib/failpoint.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_repl.h"

static char root[256];
static struct store *st;
static struct store_user *u;

static int
setup(void **state)
{
	struct err e;

	(void)state;
	failpoint_set("");
	str_lcpy(root, "/tmp/castor-hold-XXXXXX", sizeof(root));
	if (mkdtemp(root) == NULL || store_create(root, "master", &e) < 0 ||
	    (st = store_open(root, NULL, &e)) == NULL || store_user_add(st, "kim", "pw", &e) < 0 ||
	    (u = store_user_open(st, "kim", &e)) == NULL)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	store_user_close(&u);
	store_close(&st);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void
append1(const char *mbid, const char *text, struct store_append_result *res)
{
	struct store_append_msg msg = { text, strlen(text), 0, 0, NULL };
	struct err e;

	assert_int_equal(store_append(u, mbid, &msg, 1, res, NULL, &e), 0);
}

static int nrep;
static char lastrep[512];

static void
report(void *ctx, const char *line)
{
	(void)ctx;
	nrep++;
	str_lcpy(lastrep, line, sizeof(lastrep));
}

static bool
exists(const char *path)
{
	return access(path, F_OK) == 0;
}

static void
test_replace_with_quarantine(void **state)
{
	struct store_mailbox mb;
	struct store_append_result a;
	struct store_record_full got;
	struct store_record r;
	const char *other = "Subject: other\r\n\r\nthe replacing message\r\n";
	char g2[STORE_GUID_LEN + 1], path[512];
	char *data = NULL;
	size_t len = 0;
	struct err e;

	(void)state;
	assert_int_equal(store_mailbox_get(u, "INBOX", &mb, &e), 0);
	append1(mb.uniqueid, "Subject: loser\r\n\r\nthe replica's message\r\n", &a);
	/* without REPLACE a different guid under the uid is a conflict */
	store_guid(other, strlen(other), g2);
	assert_int_equal(store_repl_blob(u, g2, other, strlen(other), &e), 0);
	memset(&r, 0, sizeof(r));
	r.uid = a.uid;
	str_lcpy(r.guid, g2, sizeof(r.guid));
	r.modseq = a.modseq + 5;
	r.keywords = "";
	assert_int_equal(store_repl_record(u, mb.uniqueid, &r, &e), -1);
	assert_int_equal(e.kind, ERR_CONFLICT);
	/* quarantine first, then replace */
	assert_int_equal(store_repl_quarantine(u, mb.uniqueid, a.uid, "uid-replaced", &e), 0);
	snprintf(path, sizeof(path), "%s/quarantine/kim/%s", root, a.guid);
	assert_int_equal(atomicfile_read_all(path, 4096, &data, &len, &e), 0);
	assert_string_equal(data, "Subject: loser\r\n\r\nthe replica's message\r\n");
	free(data);
	snprintf(path, sizeof(path), "%s/quarantine/manifest", root);
	assert_int_equal(atomicfile_read_all(path, 4096, &data, &len, &e), 0);
	assert_non_null(strstr(data, " user=kim "));
	assert_non_null(strstr(data, a.guid));
	assert_non_null(strstr(data, " reason=uid-replaced\n"));
	free(data);
	assert_int_equal(store_repl_record_replace(u, mb.uniqueid, &r, &e), 0);
	assert_int_equal(store_record_get(u, mb.uniqueid, a.uid, &got, &e), 0);
	assert_string_equal(got.rec.guid, g2);
	assert_int_equal(got.rec.size, strlen(other));
	store_record_full_free(&got);
	/* checksum and usage follow: the checker finds only the loser's body,
	 * now named by no record (kept in the quarantine) */
	store_user_close(&u);
	nrep = 0;
	assert_int_equal(store_check(st, "kim", false, report, NULL, &e), 1);
	assert_int_equal(nrep, 1);
	assert_non_null(strstr(lastrep, "is named by no record"));
	assert_non_null(strstr(lastrep, a.guid));
	u = store_user_open(st, "kim", &e);
	assert_non_null(u);
	/* nothing live under a uid: nothing to keep, fine */
	assert_int_equal(store_repl_quarantine(u, mb.uniqueid, 99, "x", &e), 0);
}

static void
test_hold_then_purge(void **state)
{
	struct store_mailbox mb, gone;
	struct store_append_result a;
	char path[512];
	size_t purged, held;
	int64_t now = (int64_t)time(NULL);
	struct err e;

	(void)state;
	assert_int_equal(store_mailbox_create(u, "Work", NULL, &mb, &e), 0);
	append1(mb.uniqueid, "Subject: w\r\n\r\nwork\r\n", &a);
	assert_int_equal(store_mailbox_delete(u, "Work", &e), 0);
	snprintf(path, sizeof(path), "%s/deleted/kim/%s", root, mb.uniqueid);
	assert_true(exists(path));
	/* within the hold: kept, undeletable */
	assert_int_equal(store_purge_deleted(u, 7 * 86400, now + 6 * 86400, &purged, &held, &e), 0);
	assert_int_equal(purged, 0);
	assert_int_equal(held, 1);
	assert_int_equal(store_mailbox_get_id(u, mb.uniqueid, true, &gone, &e), 0);
	assert_true(gone.deleted_modseq != 0);
	/* after it: gone, with its note and its body */
	assert_int_equal(store_purge_deleted(u, 7 * 86400, now + 8 * 86400, &purged, &held, &e), 0);
	assert_int_equal(purged, 1);
	assert_int_equal(held, 0);
	assert_int_equal(store_mailbox_get_id(u, mb.uniqueid, true, &gone, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	assert_false(exists(path));
	assert_int_equal(store_blob_exists(u, a.guid, &e), 0);
	/* a tombstone without a note: the hold starts at the first purge run */
	assert_int_equal(store_mailbox_create(u, "Old", NULL, &mb, &e), 0);
	assert_int_equal(store_mailbox_delete(u, "Old", &e), 0);
	snprintf(path, sizeof(path), "%s/deleted/kim/%s", root, mb.uniqueid);
	assert_int_equal(unlink(path), 0);
	assert_int_equal(store_purge_deleted(u, 7 * 86400, now + 30 * 86400, &purged, &held, &e), 0);
	assert_int_equal(purged, 0);
	assert_int_equal(held, 1);
	assert_true(exists(path));
	assert_int_equal(store_purge_deleted(u, 7 * 86400, now + 38 * 86400, &purged, &held, &e), 0);
	assert_int_equal(purged, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_replace_with_quarantine, setup, teardown),
		cmocka_unit_test_setup_teardown(test_hold_then_purge, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
