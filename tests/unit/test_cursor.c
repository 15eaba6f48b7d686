/* test_cursor.c - unit tests for sync/cursor.c: durable channel cursors,
 * corruption reporting, atomic replacement under SIGKILL, detaching and
 * segment reclamation by cursors. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/crc32c.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"
#include "sync/cursor.h"
#include "sync/synclog.h"

static char root[256];

static int
setup(void **state)
{
	(void)state;
	str_lcpy(root, "/tmp/castor-cursor-XXXXXX", sizeof(root));
	return mkdtemp(root) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	failpoint_set("");
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	return system(cmd) == 0 ? 0 : -1;
}

static void
cursor_file(const char *channel, char *out, size_t size)
{
	snprintf(out, size, "%s/sync/cursor/%s", root, channel);
}

static void
write_file(const char *path, const void *p, size_t n)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, p, n), (ssize_t)n);
	close(fd);
}

static size_t
read_file(const char *path, unsigned char *p, size_t max)
{
	int fd = open(path, O_RDONLY);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, p, max);
	close(fd);
	assert_true(n >= 0);
	return (size_t)n;
}

static void
test_save_load(void **state)
{
	struct cursor c = { { 7, 123456 }, 0xdeadbeefcafef00dull, 0, 0 }, l;
	struct timespec ts;
	uint64_t now;
	struct err e;

	(void)state;
	assert_int_equal(cursor_load(root, "r1", &l, &e), 0);   /* none yet */
	assert_int_equal(l.pos.seg, 0);
	assert_int_equal(cursor_save(root, "r1", &c, &e), 0);
	assert_int_equal(cursor_load(root, "r1", &l, &e), 1);
	assert_int_equal(l.pos.seg, 7);
	assert_int_equal(l.pos.off, 123456);
	assert_int_equal(l.log_id, 0xdeadbeefcafef00dull);
	assert_int_equal(l.flags, 0);
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (uint64_t)ts.tv_sec * 1000;
	assert_true(l.saved_ms + 60000 > now && l.saved_ms <= now + 1000);
	/* replacing */
	c.pos.off = 99;
	assert_int_equal(cursor_save(root, "r1", &c, &e), 0);
	assert_int_equal(cursor_load(root, "r1", &l, &e), 1);
	assert_int_equal(l.pos.off, 99);
	/* channels are separate */
	assert_int_equal(cursor_load(root, "r2", &l, &e), 0);
	assert_int_equal(cursor_remove(root, "r1", &e), 0);
	assert_int_equal(cursor_load(root, "r1", &l, &e), 0);
	assert_int_equal(cursor_remove(root, "r1", &e), 0);   /* absent is fine */
}

static void
test_channel_names(void **state)
{
	struct cursor c = { { 1, 40 }, 1, 0, 0 };
	char longname[80];
	struct err e;

	(void)state;
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_true(cursor_channel_valid("r1"));
	assert_true(cursor_channel_valid("dc-2_replica"));
	assert_false(cursor_channel_valid(""));
	assert_false(cursor_channel_valid(".."));
	assert_false(cursor_channel_valid("a/b"));
	assert_false(cursor_channel_valid("a b"));
	assert_false(cursor_channel_valid(longname));
	assert_int_equal(cursor_save(root, "../escape", &c, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(cursor_load(root, "../escape", &c, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
}

static void
expect_corrupt(const char *channel)
{
	struct cursor l;
	struct err e;

	memset(&l, 0xff, sizeof(l));
	assert_int_equal(cursor_load(root, channel, &l, &e), -1);
	assert_int_equal(e.kind, ERR_CORRUPT);
	/* zeroed: start from the oldest segment */
	assert_int_equal(l.pos.seg, 0);
	assert_int_equal(l.pos.off, 0);
	assert_int_equal(l.flags, 0);
}

static void
test_corruption(void **state)
{
	struct cursor c = { { 3, 4000 }, 42, 0, 0 };
	unsigned char good[64], bad[128];
	char path[400];
	size_t n;
	struct err e;

	(void)state;
	assert_int_equal(cursor_save(root, "r1", &c, &e), 0);
	cursor_file("r1", path, sizeof(path));
	n = read_file(path, good, sizeof(good));
	assert_int_equal(n, 48);

	/* every single flipped byte is caught */
	for (size_t i = 0; i < n; i++) {
		memcpy(bad, good, n);
		bad[i] ^= 0x01;
		write_file(path, bad, n);
		expect_corrupt("r1");
	}
	write_file(path, good, 20);                 /* truncated */
	expect_corrupt("r1");
	write_file(path, "", 0);                    /* empty (a crash before rename cannot do this, a disk can) */
	expect_corrupt("r1");
	memset(bad, 'x', sizeof(bad));
	write_file(path, bad, sizeof(bad));         /* too long */
	expect_corrupt("r1");
	/* unknown flag bits with a valid checksum */
	memcpy(bad, good, n);
	bad[6] = 0x80;
	{
		uint32_t crc = crc32c(0, bad, 44);
		bad[44] = (unsigned char)(crc >> 24);
		bad[45] = (unsigned char)(crc >> 16);
		bad[46] = (unsigned char)(crc >> 8);
		bad[47] = (unsigned char)crc;
	}
	write_file(path, bad, n);
	expect_corrupt("r1");
	/* a good file loads again */
	write_file(path, good, n);
	assert_int_equal(cursor_load(root, "r1", &c, &e), 1);
	assert_int_equal(c.pos.off, 4000);
}

static void
test_failed_save_keeps_old(void **state)
{
	struct cursor c = { { 2, 100 }, 5, 0, 0 }, l;
	struct err e;

	(void)state;
	assert_int_equal(cursor_save(root, "r1", &c, &e), 0);
	c.pos.off = 200;
	assert_int_equal(failpoint_set("atomicfile.before_fsync=error"), 0);
	assert_int_equal(cursor_save(root, "r1", &c, &e), -1);
	failpoint_set("");
	assert_int_equal(cursor_load(root, "r1", &l, &e), 1);
	assert_int_equal(l.pos.off, 100);
}

/* SIGKILL a process that saves cursors in a loop at random moments: the
 * file always holds one complete cursor, old or new, never a mix. */
static void
test_atomic_under_sigkill(void **state)
{
	struct cursor c = { { 1, 1 }, 9, 0, 0 }, l;
	struct err e;

	(void)state;
	assert_int_equal(cursor_save(root, "r1", &c, &e), 0);
	for (int round = 0; round < 20; round++) {
		pid_t pid = fork();
		int status;
		assert_true(pid >= 0);
		if (pid == 0) {
			struct cursor k = { { 1, 1 }, 9, 0, 0 };
			for (uint64_t i = 2; i < 1000000; i++) {
				k.pos.seg = i;
				k.pos.off = i * 3;   /* a torn mix would break seg*3 == off */
				if (cursor_save(root, "r1", &k, NULL) < 0)
					_exit(1);
			}
			_exit(0);
		}
		usleep((useconds_t)(1000 + (round * 7919) % 20000));
		kill(pid, SIGKILL);
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_int_equal(cursor_load(root, "r1", &l, &e), 1);
		assert_true(l.pos.off == l.pos.seg * 3 || (l.pos.seg == 1 && l.pos.off == 1));
	}
}

static void
test_detach(void **state)
{
	struct cursor c = { { 4, 500 }, 77, 0, 0 }, l;
	struct err e;

	(void)state;
	assert_int_equal(cursor_save(root, "r1", &c, &e), 0);
	assert_int_equal(cursor_detach(root, "r1", &e), 0);
	assert_int_equal(cursor_load(root, "r1", &l, &e), 1);
	assert_true(l.flags & CURSOR_DETACHED);
	assert_int_equal(l.pos.seg, 4);
	assert_int_equal(l.pos.off, 500);
	/* reattach: the client saves a fresh cursor without the flag */
	assert_int_equal(cursor_save(root, "r1", &c, &e), 0);
	assert_int_equal(cursor_load(root, "r1", &l, &e), 1);
	assert_int_equal(l.flags, 0);
	/* detaching a channel without a cursor works */
	assert_int_equal(cursor_detach(root, "r9", &e), 0);
	assert_int_equal(cursor_load(root, "r9", &l, &e), 1);
	assert_true(l.flags & CURSOR_DETACHED);
}

static void
test_reclaim(void **state)
{
	static struct synclog_record recs[200];
	struct synclog *log;
	struct synclog_reader *r;
	const char *chans[] = { "r1", "r2", "r3" };
	struct cursor c1, c2;
	uint64_t *segs, id;
	size_t nseg, deleted, n = 0;
	struct err e;

	(void)state;
	log = synclog_open(root, 1024, &e);
	for (int i = 0; i < 150; i++)
		assert_int_equal(synclog_append(log, SYNCLOG_USER, "alice", NULL, NULL, &e), 0);
	synclog_close(&log);
	r = synclog_reader_open(root, NULL, 0, &e);
	for (int i = 0; i < 10; i++) {
		size_t got;
		if (synclog_reader_next(r, recs + n, 200 - n, SIZE_MAX, &got, &e) == 0) {
			n += got;
			break;
		}
		n += got;
	}
	assert_int_equal(n, 150);
	id = synclog_reader_log_id(r);
	synclog_reader_close(&r);
	assert_int_equal(synclog_segments(root, &segs, &nseg, &e), 0);
	assert_true(nseg >= 5);
	free(segs);

	c1 = (struct cursor){ recs[140].next, id, 0, 0 };
	c2 = (struct cursor){ recs[40].next, id, 0, 0 };
	assert_int_equal(cursor_save(root, "r1", &c1, &e), 0);
	assert_int_equal(cursor_save(root, "r2", &c2, &e), 0);
	/* r3 has no cursor yet: it will read from the oldest, nothing goes */
	assert_int_equal(cursor_reclaim(root, chans, 3, &deleted, &e), 0);
	assert_int_equal(deleted, 0);
	/* r1 and r2: r2 holds segments back */
	assert_int_equal(cursor_reclaim(root, chans, 2, &deleted, &e), 0);
	assert_int_equal(deleted, recs[40].next.seg - 1);
	/* r2 detached: it no longer holds anything back */
	assert_int_equal(cursor_detach(root, "r2", &e), 0);
	assert_int_equal(cursor_reclaim(root, chans, 2, &deleted, &e), 0);
	assert_int_equal(deleted, recs[140].next.seg - recs[40].next.seg);
	assert_int_equal(synclog_segments(root, &segs, &nseg, &e), 0);
	assert_int_equal(segs[0], recs[140].next.seg);
	free(segs);
	/* a cursor of another log (re-created log) holds everything back */
	c1.log_id = id + 1;
	c1.pos = recs[149].next;
	assert_int_equal(cursor_save(root, "r1", &c1, &e), 0);
	assert_int_equal(cursor_reclaim(root, chans, 1, &deleted, &e), 0);
	assert_int_equal(deleted, 0);
	/* a corrupt cursor holds everything back too */
	{
		char path[400];
		cursor_file("r1", path, sizeof(path));
		write_file(path, "junk", 4);
	}
	assert_int_equal(cursor_reclaim(root, chans, 1, &deleted, &e), 0);
	assert_int_equal(deleted, 0);
	/* only detached channels: nothing says what may go */
	assert_int_equal(cursor_reclaim(root, chans + 1, 1, &deleted, &e), 0);
	assert_int_equal(deleted, 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
		cmocka_unit_test_setup_teardown(test_channel_names, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corruption, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_save_keeps_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_under_sigkill, setup, teardown),
		cmocka_unit_test_setup_teardown(test_detach, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim, setup, teardown),
	};

	log_set_level(LOG_LVL_ERROR);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
