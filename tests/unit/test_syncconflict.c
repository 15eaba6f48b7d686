/* test_syncconflict.c - the conflict policy's parser and its "warned
 * once" memory (sync/syncconflict.c): a conflict met again is not warned
 * again, also by a new instance reading the channel's .conflicts file;
 * the resolution each policy gives each kind; the per-flag merge of
 * case 3 (docs/replication.md "Flag merge"). */
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
	assert_int_equal(syncconflict_hook(sc, &c), SYNCPUSH_R_MERGE);
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
	assert_int_equal(syncconflict_hook(sc, &c), SYNCPUSH_R_MERGE);
	assert_int_equal(syncconflict_warned(sc), 0);
	/* another user's conflict is new */
	c.user = "lee";
	(void)syncconflict_hook(sc, &c);
	assert_int_equal(syncconflict_warned(sc), 1);
	syncconflict_free(&sc);
}

static void
test_resolution_table(void **state)
{
	(void)state;
	assert_int_equal(syncconflict_resolution(SYNCCONFLICT_RENUMBER, SYNCPUSH_C_GUID),
		SYNCPUSH_R_RENUMBER);
	assert_int_equal(syncconflict_resolution(SYNCCONFLICT_RENUMBER, SYNCPUSH_C_UID_ABOVE),
		SYNCPUSH_R_RENUMBER);
	assert_int_equal(syncconflict_resolution(SYNCCONFLICT_REPLACE, SYNCPUSH_C_REPLICA_RECORD),
		SYNCPUSH_R_REPLACE);
	assert_int_equal(syncconflict_resolution(SYNCCONFLICT_REPLACE, SYNCPUSH_C_MODSEQ_AHEAD),
		SYNCPUSH_R_REPLACE);
	assert_int_equal(syncconflict_resolution(SYNCCONFLICT_KEEP, SYNCPUSH_C_GUID),
		SYNCPUSH_R_LEAVE);
	assert_int_equal(syncconflict_resolution(SYNCCONFLICT_KEEP, SYNCPUSH_C_FLAGS),
		SYNCPUSH_R_MERGE);
	assert_int_equal(syncconflict_resolution(SYNCCONFLICT_REPLACE, SYNCPUSH_C_NAME_CLASH),
		SYNCPUSH_R_REPLACE);
	assert_int_equal(syncconflict_resolution(SYNCCONFLICT_KEEP, SYNCPUSH_C_NAME_CLASH),
		SYNCPUSH_R_LEAVE);
	assert_int_equal(syncconflict_resolution(SYNCCONFLICT_RENUMBER, SYNCPUSH_C_REPLICA_USER),
		SYNCPUSH_R_LEAVE);
	assert_string_equal(syncconflict_action_name(SYNCPUSH_R_RENUMBER), "renumber");
}

#define SEEN 0x01u
#define FLAGGED 0x04u
#define DELETED 0x08u

static void
test_merge_flags(void **state)
{
	struct buf kw = BUF_INIT;
	uint32_t sys;

	(void)state;
	/* only the replica changed (master's record at or below the base) */
	assert_true(syncconflict_merge_flags(SEEN, "", 10, SEEN | FLAGGED, "$Work", 25, 10, &sys,
		&kw));
	assert_int_equal(sys, SEEN | FLAGGED);
	assert_string_equal(buf_cstr(&kw), "$Work");
	/* only the master changed: the master's flags, nothing to write */
	assert_false(syncconflict_merge_flags(FLAGGED, "a", 30, SEEN, "", 9, 10, &sys, &kw));
	assert_int_equal(sys, FLAGGED);
	assert_string_equal(buf_cstr(&kw), "a");
	/* both changed, replica newer: what both have stays, the rest is the replica's */
	assert_true(syncconflict_merge_flags(SEEN | FLAGGED, "a b", 20, SEEN | DELETED, "b c", 30,
		10, &sys, &kw));
	assert_int_equal(sys, SEEN | DELETED);
	assert_string_equal(buf_cstr(&kw), "b c");
	/* both changed, master newer */
	assert_false(syncconflict_merge_flags(SEEN | FLAGGED, "a b", 40, SEEN | DELETED, "b c", 30,
		10, &sys, &kw));
	assert_int_equal(sys, SEEN | FLAGGED);
	assert_string_equal(buf_cstr(&kw), "a b");
	/* a tie goes to the master */
	assert_false(syncconflict_merge_flags(FLAGGED, "", 30, SEEN, "x", 30, 10, &sys, &kw));
	assert_int_equal(sys, FLAGGED);
	assert_string_equal(buf_cstr(&kw), "");
	/* keywords compare as sets, case-insensitively */
	assert_false(syncconflict_merge_flags(0, "b a", 10, 0, "A B", 30, 10, &sys, &kw));
	buf_free(&kw);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_parse),
		cmocka_unit_test(test_resolution_table),
		cmocka_unit_test(test_merge_flags),
		cmocka_unit_test_setup_teardown(test_warned_once_across_instances, setup, teardown),
	};

	log_init("test_syncconflict", LOG_DEST_STDERR);
	log_set_level(LOG_LVL_ERROR);
	cmocka_set_message_output(CM_OUTPUT_TAP);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
