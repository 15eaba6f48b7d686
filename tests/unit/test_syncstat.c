/* test_syncstat.c - the ACK file of a channel (sync/syncstat.c): the time
 * of the replica's last answer and the dead-peer timeout travel with the
 * position, the 40-byte form of earlier versions still reads, and a live
 * flag whose last answer is too old is not live (syncstat_ack_live). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sync/syncstat.h"

static void
test_ack_roundtrip_with_heard(void **state)
{
	char root[] = "/tmp/test_syncstat.XXXXXX";
	struct synclog_pos pos = { 3, 4096 }, got;
	uint64_t log_id = 0, heard = 0;
	uint32_t dead = 0;
	bool live = false;
	struct err err;
	int fd;

	(void)state;
	assert_non_null(mkdtemp(root));
	fd = syncstat_ack_open(root, "r1", true, &err);
	assert_true(fd >= 0);
	assert_int_equal(syncstat_ack_read(fd, &got, &log_id, &live), 0);   /* empty */
	assert_int_equal(syncstat_ack_write_heard(fd, &pos, 77, true, 1700000000123ull, 6000), 0);
	assert_int_equal(syncstat_ack_read_heard(fd, &got, &log_id, &live, &heard, &dead), 1);
	assert_true(got.seg == 3 && got.off == 4096 && log_id == 77 && live);
	assert_true(heard == 1700000000123ull && dead == 6000);
	/* the 40-byte form of earlier versions: heard unknown */
	assert_int_equal(ftruncate(fd, 40), 0);
	assert_int_equal(syncstat_ack_read_heard(fd, &got, &log_id, &live, &heard, &dead), 1);
	assert_true(live && heard == 0 && dead == 0);
	/* a broken tail is read again, then reported as nothing valid */
	assert_int_equal(syncstat_ack_write_heard(fd, &pos, 77, true, 5, 6000), 0);
	assert_int_equal(pwrite(fd, "\xff", 1, 44), 1);
	assert_int_equal(syncstat_ack_read_heard(fd, &got, &log_id, &live, &heard, &dead), 0);
	close(fd);
	{
		char p[300];
		snprintf(p, sizeof(p), "%s/run/sync-r1.ack", root);
		unlink(p);
		snprintf(p, sizeof(p), "%s/run", root);
		rmdir(p);
		rmdir(root);
	}
}

static void
test_ack_live(void **state)
{
	(void)state;
	assert_false(syncstat_ack_live(false, 1000, 6000, 1000));
	assert_true(syncstat_ack_live(true, 0, 0, 99999));          /* an older writer */
	assert_true(syncstat_ack_live(true, 1000, 6000, 7000));     /* exactly at the limit */
	assert_false(syncstat_ack_live(true, 1000, 6000, 7001));    /* silent */
	assert_true(syncstat_ack_live(true, 5000, 6000, 4000));     /* clocks: heard ahead */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ack_roundtrip_with_heard),
		cmocka_unit_test(test_ack_live),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
