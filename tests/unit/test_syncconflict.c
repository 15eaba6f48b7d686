/* test_syncconflict.c - the conflict policy's parser and its "warned
 * once" memory (sync/syncconflict.c): a conflict met again is not warned
 * again, also by a new instance reading the channel's .conflicts file;
 * flags conflicts resolve to the master, the rest are left alone. */
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

#include "lib/log.h"
#include "sync/syncconflict.h"

static char root[256];

static int
setup(void **state)
{
	(void)state;
	snprintf(root, sizeof(root), "/tmp/test_syncconflict.XXXXXX");
	assert_non_null(mkdtemp(root));
	{
		char run[300];
		snprintf(run, sizeof(run), "%s/run", root);
		assert_int_equal(mkdir(run, 0700), 0);
	}
	return 0;
}

static int
teardown(void **state)
{
	char p[400];

	(void)state;
	snprintf(p, sizeof(p), "%s/run/sync-r1.conflicts", root);
	unlink(p);
	snprintf(p, sizeof(p), "%s/run", root);
	rmdir(p);
	rmdir(root);
	return 0;
}

static void
test_policy_parse(void **state)
{
	enum syncconflict_policy p;

	(void)state;
	assert_int_equal(syncconflict_parse_policy(NULL, &p), 0);
	assert_int_equal(p, SYNCCONFLICT_RENUMBER);
	assert_int_equal(syncconflict_parse_policy("keep", &p), 0);
	assert_int_equal(p, SYNCCONFLICT_KEEP);
	assert_int_equal(syncconflict_parse_policy("replace", &p), 0);
	assert_string_equal(syncconflict_policy_name(p), "replace");
	assert_int_equal(syncconflict_parse_policy("merge", &p), -1);
	assert_int_equal(syncconflict_parse_policy("Keep", &p), -1);
}

static void
test_warned_once_across_instances(void **state)
{
	struct syncpush_conflict c;
	struct syncconflict *sc;

	(void)state;
	memset(&c, 0, sizeof(c));
	c.kind = SYNCPUSH_C_GUID;
	c.user = "kim";
	c.mailbox_id = "0123456789abcdef0123456789abcdef";
	c.mailbox_name = "INBOX";
	c.uid = 2;
	c.master_guid = "1111111111111111111111111111111111111111";
	c.replica_guid = "2222222222222222222222222222222222222222";

	sc = syncconflict_new(root, "r1", SYNCCONFLICT_KEEP);
	assert_int_equal(syncconflict_hook(sc, &c), SYNCPUSH_R_LEAVE);
	assert_int_equal(syncconflict_hook(sc, &c), SYNCPUSH_R_LEAVE);
	assert_int_equal(syncconflict_warned(sc), 1);
	c.uid = 3;   /* another message: warned */
	assert_int_equal(syncconflict_hook(sc, &c), SYNCPUSH_R_LEAVE);
	assert_int_equal(syncconflict_warned(sc), 2);
	c.kind = SYNCPUSH_C_FLAGS;
	assert_int_equal(syncconflict_hook(sc, &c), SYNCPUSH_R_MASTER);
	syncconflict_free(&sc);
	assert_null(sc);

	/* a restarted client remembers all three */
	sc = syncconflict_new(root, "r1", SYNCCONFLICT_KEEP);
	c.kind = SYNCPUSH_C_GUID;
	c.uid = 2;
	(void)syncconflict_hook(sc, &c);
	c.uid = 3;
	(void)syncconflict_hook(sc, &c);
	c.kind = SYNCPUSH_C_FLAGS;
	assert_int_equal(syncconflict_hook(sc, &c), SYNCPUSH_R_MASTER);
	assert_int_equal(syncconflict_warned(sc), 0);
	/* another user's conflict is new */
	c.user = "lee";
	(void)syncconflict_hook(sc, &c);
	assert_int_equal(syncconflict_warned(sc), 1);
	syncconflict_free(&sc);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_parse),
		cmocka_unit_test_setup_teardown(test_warned_once_across_instances, setup, teardown),
	};

	log_init("test_syncconflict", LOG_DEST_STDERR);
	log_set_level(LOG_LVL_ERROR);
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
