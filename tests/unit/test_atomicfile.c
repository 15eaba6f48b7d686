/* test_atomicfile.c - unit tests for lib/atomicfile.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/failpoint.h"
#include "lib/str.h"

static char dir[256];

static int
setup(void **state)
{
	(void)state;
	str_lcpy(dir, "/tmp/castor-test-XXXXXX", sizeof(dir));
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void
test_write_replace_read(void **state)
{
	char path[300];
	char *data;
	size_t len;
	struct err e;

	(void)state;
	snprintf(path, sizeof(path), "%s/cursor", dir);
	assert_int_equal(atomicfile_write(path, "one", 3, 0600, &e), 0);
	assert_int_equal(atomicfile_write(path, "second", 6, 0600, &e), 0);
	assert_int_equal(atomicfile_read_all(path, 100, &data, &len, &e), 0);
	assert_int_equal(len, 6);
	assert_string_equal(data, "second");
	free(data);
	assert_int_equal(atomicfile_read_all(path, 3, &data, &len, &e), -1);
	assert_int_equal(e.kind, ERR_TOOBIG);
}

static void
test_failure_keeps_old(void **state)
{
	char path[300];
	char *data;
	size_t len;
	struct err e;

	(void)state;
	snprintf(path, sizeof(path), "%s/f", dir);
	assert_int_equal(atomicfile_write(path, "old", 3, 0600, &e), 0);
	assert_int_equal(failpoint_set("atomicfile.before_fsync=error"), 0);
	assert_int_equal(atomicfile_write(path, "new", 3, 0600, &e), -1);
	assert_int_equal(e.kind, ERR_TEMP);
	failpoint_set("");
	assert_int_equal(atomicfile_read_all(path, 100, &data, &len, &e), 0);
	assert_string_equal(data, "old");
	free(data);
}

static void
test_missing_and_mkdir(void **state)
{
	char path[300];
	char *data;
	struct err e;
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/none", dir);
	assert_int_equal(atomicfile_read_all(path, 100, &data, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_NOTFOUND);
	snprintf(path, sizeof(path), "%s/a/b/c", dir);
	assert_int_equal(atomicfile_mkdir_p(path, 0700, &e), 0);
	assert_int_equal(atomicfile_mkdir_p(path, 0700, &e), 0);
	assert_int_equal(stat(path, &st), 0);
	assert_true(S_ISDIR(st.st_mode));
	assert_int_equal(atomicfile_fsync_dir(path, &e), 0);
	assert_int_equal(atomicfile_fsync_dir("/nonexistent/dir", &e), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_write_replace_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failure_keeps_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_missing_and_mkdir, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
