/* test_syncpark.c - unit tests for sync/syncpark.c: the per-channel list
 * of parked users survives a save and load, a damaged file is reported,
 * and an empty list removes the file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/buf.h"
#include "lib/str.h"
#include "sync/syncpark.h"

static char root[256];

static int
setup(void **state)
{
	(void)state;
	str_lcpy(root, "/tmp/castor-syncpark-XXXXXX", sizeof(root));
	return mkdtemp(root) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_missing_file_is_empty(void **state)
{
	struct syncpark pk;
	struct err err;

	(void)state;
	assert_int_equal(syncpark_load(root, "r1", &pk, &err), 0);
	assert_int_equal(pk.n, 0);
	syncpark_clear(&pk);
}

static void
test_round_trip(void **state)
{
	struct syncpark pk = { 0 }, back;
	struct syncpark_entry *e;
	struct err err;
	bool added;

	(void)state;
	e = syncpark_add(&pk, "ann", "APPLY DELETE: INBOX\tcannot\nbe deleted", 1000, 60000, &added);
	assert_true(added);
	assert_int_equal(e->retry_ms, 61000);
	e = syncpark_add(&pk, "ann", "other", 2000, 60000, &added);
	assert_false(added);
	assert_string_equal(e->reason, "APPLY DELETE: INBOX cannot be deleted");
	(void)syncpark_add(&pk, "bob", "delete-limit: 6 of 10", 3000, 120000, &added);
	assert_int_equal(syncpark_save(root, "r1", &pk, &err), 0);
	assert_int_equal(syncpark_load(root, "r1", &back, &err), 0);
	assert_int_equal(back.n, 2);
	e = syncpark_find(&back, "bob");
	assert_non_null(e);
	assert_int_equal(e->since_ms, 3000);
	assert_int_equal(e->retry_ms, 123000);
	assert_int_equal(e->backoff_ms, 120000);
	assert_string_equal(e->reason, "delete-limit: 6 of 10");
	syncpark_remove(&back, "ann");
	syncpark_remove(&back, "bob");
	assert_int_equal(back.n, 0);
	assert_int_equal(syncpark_save(root, "r1", &back, &err), 0);
	{
		struct buf p = BUF_INIT;
		syncpark_path(root, "r1", &p);
		assert_int_not_equal(access(buf_cstr(&p), F_OK), 0);
		buf_free(&p);
	}
	syncpark_clear(&pk);
	syncpark_clear(&back);
}

static void
test_damaged_file_is_reported(void **state)
{
	struct syncpark pk;
	struct buf p = BUF_INIT, d = BUF_INIT;
	struct err err;
	static const char *const bad[] = {
		"garbage\n",
		"castor-parked 1\nann\t1\t2\n",
		"castor-parked 1\nann\t1\t2\t3\tok\nbob\tx\t2\t3\tr\n",
		"castor-parked 1\nann\t1\t2\t3\tno newline",
	};

	(void)state;
	buf_printf(&d, "%s/sync/parked", root);
	assert_int_equal(atomicfile_mkdir_p(buf_cstr(&d), 0755, &err), 0);
	syncpark_path(root, "r1", &p);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(atomicfile_write(buf_cstr(&p), bad[i], strlen(bad[i]), 0644, &err), 0);
		assert_int_equal(syncpark_load(root, "r1", &pk, &err), -1);
		assert_int_equal(err.kind, ERR_CORRUPT);
		assert_int_equal(pk.n, 0);
	}
	buf_free(&p);
	buf_free(&d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_missing_file_is_empty, setup, teardown),
		cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_file_is_reported, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
