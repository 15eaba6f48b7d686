/* test_synclog.c - unit tests for sync/synclog.c: append and read,
 * rollover under concurrent appenders, torn and corrupt bytes,
 * resynchronisation, reader positions, reclamation, wake-up. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
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

#include "lib/crc32c.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"
#include "sync/synclog.h"

static char root[256];

static int
setup(void **state)
{
	(void)state;
	str_lcpy(root, "/tmp/castor-synclog-XXXXXX", sizeof(root));
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

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
seg_file(uint64_t seg, char *out, size_t size)
{
	snprintf(out, size, "%s/sync/log/%016" PRIx64 ".log", root, seg);
}

static off_t
file_size(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

static struct synclog *
open_log(uint64_t segsize)
{
	struct err e;
	struct synclog *log = synclog_open(root, segsize, &e);

	assert_non_null(log);
	return log;
}

static void
append_n(struct synclog *log, int n, const char *user)
{
	struct err e;

	for (int i = 0; i < n; i++) {
		char id[32];
		snprintf(id, sizeof(id), "%08x", (unsigned)i);
		assert_int_equal(synclog_append(log, SYNCLOG_MAILBOX, user, id, NULL, &e), 0);
	}
}

/* Read everything (grace 0), returning the count; records into recs. */
static size_t
read_all(struct synclog_reader *r, struct synclog_record *recs, size_t max)
{
	size_t total = 0;
	struct err e;

	for (int i = 0; i < 100000; i++) {
		size_t n;
		int rc = synclog_reader_next(r, recs + total, max - total, SIZE_MAX, &n, &e);
		assert_true(rc >= 0);
		total += n;
		if (rc == 0 || total == max)
			break;
	}
	return total;
}

static void
test_crc32c(void **state)
{
	(void)state;
	/* the standard check value of CRC-32C */
	assert_int_equal(crc32c(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c(crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
}

static void
test_append_read(void **state)
{
	struct synclog *log = open_log(0);
	struct synclog_record recs[16];
	struct synclog_reader *r;
	struct synclog_pos end, p1, p2;
	struct err e;
	size_t n;

	(void)state;
	assert_int_equal(synclog_append(log, SYNCLOG_USER, "alice", NULL, &p1, &e), 0);
	assert_int_equal(synclog_append(log, SYNCLOG_MAILBOX, "alice",
		"6F1C0E9A2B7D4C31A0E5F8D2C4B6A913", &p2, &e), 0);
	assert_int_equal(synclog_append(log, SYNCLOG_PASSWORD, "bob@example.com", "", NULL, &e), 0);
	assert_int_equal(synclog_append(log, 200, "carol", NULL, NULL, &e), 0);
	synclog_close(&log);

	r = synclog_reader_open(root, NULL, 0, &e);
	assert_non_null(r);
	assert_int_equal(synclog_reader_next(r, recs, 16, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 4);
	assert_int_equal(recs[0].type, SYNCLOG_USER);
	assert_string_equal(recs[0].user, "alice");
	assert_string_equal(recs[0].uniqueid, "");
	assert_int_equal(recs[1].type, SYNCLOG_MAILBOX);
	assert_string_equal(recs[1].uniqueid, "6f1c0e9a2b7d4c31a0e5f8d2c4b6a913");
	assert_string_equal(recs[2].user, "bob@example.com");
	assert_int_equal(recs[3].type, 200);
	assert_string_equal(synclog_type_name(recs[3].type), "UNKNOWN");
	assert_string_equal(synclog_type_name(SYNCLOG_UNUSER), "UNUSER");
	assert_int_equal(synclog_type_parse("seen"), SYNCLOG_SEEN);
	/* positions chain, and match what append reported */
	assert_int_equal(recs[0].pos.seg, 1);
	assert_int_equal(recs[0].pos.off, SYNCLOG_SEGMENT_HEADER);
	assert_int_equal(synclog_pos_cmp(&recs[0].next, &p1), 0);
	assert_int_equal(synclog_pos_cmp(&recs[1].next, &p2), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(synclog_pos_cmp(&recs[i].next, &recs[i + 1].pos), 0);
	assert_true(recs[0].time_ms > 1600000000000ull);
	assert_int_equal(synclog_end(root, &end, &e), 0);
	{
		struct synclog_pos rp = synclog_reader_pos(r);
		assert_int_equal(synclog_pos_cmp(&rp, &end), 0);
		assert_int_equal(synclog_pos_cmp(&recs[3].next, &end), 0);
	}
	assert_false(synclog_reader_gap(r));
	assert_int_not_equal(synclog_reader_log_id(r), 0);
	/* limits: max_records, and max_bytes (at least one record) */
	synclog_reader_close(&r);
	r = synclog_reader_open(root, NULL, 0, &e);
	assert_int_equal(synclog_reader_next(r, recs, 2, SIZE_MAX, &n, &e), 1);
	assert_int_equal(n, 2);
	assert_int_equal(synclog_reader_next(r, recs, 16, 1, &n, &e), 1);
	assert_int_equal(n, 1);
	assert_int_equal(recs[0].type, SYNCLOG_PASSWORD);
	assert_int_equal(synclog_reader_next(r, recs, 16, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_int_equal(synclog_reader_next(r, recs, 16, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 0);
	synclog_reader_close(&r);
}

static void
test_append_invalid(void **state)
{
	struct synclog *log = open_log(0);
	char longname[300];
	struct synclog_pos end;
	struct err e;

	(void)state;
	memset(longname, 'a', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = '\0';
	assert_int_equal(synclog_append(log, 0, "alice", NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	assert_int_equal(synclog_append(log, 256, "alice", NULL, NULL, &e), -1);
	assert_int_equal(synclog_append(log, SYNCLOG_USER, "", NULL, NULL, &e), -1);
	assert_int_equal(synclog_append(log, SYNCLOG_USER, "al ice", NULL, NULL, &e), -1);
	assert_int_equal(synclog_append(log, SYNCLOG_USER, "al\nice", NULL, NULL, &e), -1);
	assert_int_equal(synclog_append(log, SYNCLOG_USER, "\xf7SLR", NULL, NULL, &e), -1);
	assert_int_equal(synclog_append(log, SYNCLOG_USER, longname, NULL, NULL, &e), -1);
	assert_int_equal(synclog_append(log, SYNCLOG_MAILBOX, "alice", NULL, NULL, &e), -1);
	assert_int_equal(synclog_append(log, SYNCLOG_MAILBOX, "alice", "xyz", NULL, &e), -1);
	longname[65] = '\0';
	assert_int_equal(synclog_append(log, SYNCLOG_MAILBOX, "alice", longname, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_INVALID);
	/* a UTF-8 name is fine */
	assert_int_equal(synclog_append(log, SYNCLOG_USER, "j\xc3\xb6rg", NULL, NULL, &e), 0);
	synclog_close(&log);
	assert_int_equal(synclog_end(root, &end, &e), 0);
	assert_int_equal(end.seg, 1);
	assert_true(end.off > SYNCLOG_SEGMENT_HEADER && end.off < SYNCLOG_SEGMENT_HEADER + 40);
}

static void
test_failpoint_append(void **state)
{
	struct synclog *log = open_log(0);
	struct synclog_reader *r;
	struct synclog_record recs[4];
	struct err e;
	size_t n;

	(void)state;
	assert_int_equal(failpoint_set("synclog.append=error"), 0);
	assert_int_equal(synclog_append(log, SYNCLOG_USER, "alice", NULL, NULL, &e), -1);
	assert_int_equal(e.kind, ERR_TEMP);
	failpoint_set("");
	assert_int_equal(synclog_append(log, SYNCLOG_USER, "bob", NULL, NULL, &e), 0);
	synclog_close(&log);
	r = synclog_reader_open(root, NULL, 0, &e);
	assert_int_equal(synclog_reader_next(r, recs, 4, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(recs[0].user, "bob");
	synclog_reader_close(&r);
}

static void
test_rollover(void **state)
{
	struct synclog *log = open_log(1024);
	static struct synclog_record recs[400];
	struct synclog_reader *r;
	uint64_t *segs;
	size_t nseg, n;
	struct err e;

	(void)state;
	append_n(log, 300, "alice");
	synclog_close(&log);
	assert_int_equal(synclog_segments(root, &segs, &nseg, &e), 0);
	assert_true(nseg > 5);
	for (size_t i = 0; i < nseg; i++) {
		char path[400];
		struct stat st;
		assert_int_equal(segs[i], i + 1);   /* numbered upwards without holes */
		seg_file(segs[i], path, sizeof(path));
		assert_int_equal(stat(path, &st), 0);
		assert_true(st.st_size <= 1024);   /* one writer never overshoots */
		/* every segment but the newest is sealed */
		assert_int_equal((st.st_mode & S_IWUSR) != 0, i + 1 == nseg);
	}
	free(segs);
	r = synclog_reader_open(root, NULL, 0, &e);
	n = read_all(r, recs, 400);
	assert_int_equal(n, 300);
	for (size_t i = 0; i < n; i++) {
		char id[32];
		snprintf(id, sizeof(id), "%08x", (unsigned)i);
		assert_string_equal(recs[i].uniqueid, id);
	}
	assert_false(synclog_reader_gap(r));
	synclog_reader_close(&r);
}

#define WRITERS 4
#define PER_WRITER 2000
#define CONC_SEGSIZE 2048

static void
test_concurrent_appends(void **state)
{
	static struct synclog_record batch[256];
	long next_seq[WRITERS] = { 0 };
	pid_t pids[WRITERS];
	struct synclog_reader *r;
	uint64_t *segs;
	size_t nseg, total = 0;
	int running = WRITERS;
	int64_t deadline = now_ms() + 240000;
	struct err e;

	(void)state;
	/* the reader exists before the writers: it reads while they race */
	r = synclog_reader_open(root, NULL, 0, &e);
	assert_non_null(r);
	for (int w = 0; w < WRITERS; w++) {
		pids[w] = fork();
		assert_true(pids[w] >= 0);
		if (pids[w] == 0) {
			struct synclog *log = synclog_open(root, CONC_SEGSIZE, &e);
			char user[16];
			if (log == NULL)
				_exit(2);
			snprintf(user, sizeof(user), "w%d", w);
			for (int i = 0; i < PER_WRITER; i++) {
				char id[32];
				snprintf(id, sizeof(id), "%08x", (unsigned)i);
				if (synclog_append(log, SYNCLOG_MAILBOX, user, id, NULL, &e) < 0) {
					fprintf(stderr, "append: %s\n", e.msg);
					_exit(1);
				}
			}
			synclog_close(&log);
			_exit(0);
		}
	}
	for (;;) {
		size_t n;
		int rc = synclog_reader_next(r, batch, 256, SIZE_MAX, &n, &e);
		assert_true(rc >= 0);
		for (size_t i = 0; i < n; i++) {
			int w = batch[i].user[1] - '0';
			unsigned long seq = strtoul(batch[i].uniqueid, NULL, 16);
			assert_true(w >= 0 && w < WRITERS);
			/* exactly once, in each writer's order */
			assert_int_equal(seq, next_seq[w]);
			next_seq[w]++;
		}
		total += n;
		if (rc == 1)
			continue;
		if (running > 0) {
			int status;
			pid_t p;
			while (running > 0 && (p = waitpid(-1, &status, WNOHANG)) > 0) {
				assert_true(WIFEXITED(status));
				assert_int_equal(WEXITSTATUS(status), 0);
				running--;
			}
			if (running > 0) {
				synclog_reader_wait(r, 100, &e);
				assert_true(now_ms() < deadline);
				continue;
			}
			continue;   /* all done: read once more to the end */
		}
		break;
	}
	assert_int_equal(total, WRITERS * PER_WRITER);
	for (int w = 0; w < WRITERS; w++)
		assert_int_equal(next_seq[w], PER_WRITER);
	assert_false(synclog_reader_gap(r));
	synclog_reader_close(&r);

	/* rollover happened under contention; no segment grew by more than
	 * the records in flight */
	assert_int_equal(synclog_segments(root, &segs, &nseg, &e), 0);
	assert_true(nseg > 20);
	for (size_t i = 0; i < nseg; i++) {
		char path[400];
		seg_file(segs[i], path, sizeof(path));
		assert_true(file_size(path) <= CONC_SEGSIZE + WRITERS * 64);
		assert_int_equal(segs[i], i + 1);
	}
	free(segs);
}

static void
test_torn_tail(void **state)
{
	struct synclog *log = open_log(0);
	struct synclog_record recs[32];
	struct synclog_reader_stats st;
	struct synclog_reader *r;
	char path[400];
	off_t size;
	struct err e;
	size_t n;

	(void)state;
	append_n(log, 10, "alice");
	seg_file(1, path, sizeof(path));
	size = file_size(path);
	/* cut the last record in half: a crash in the middle of a write */
	assert_int_equal(truncate(path, size - 10), 0);

	r = synclog_reader_open(root, NULL, 0, &e);
	/* the live segment's incomplete tail may be a record in flight: wait */
	assert_int_equal(synclog_reader_next(r, recs, 32, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 9);
	assert_int_equal(synclog_reader_next(r, recs, 32, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 0);
	synclog_reader_stats(r, &st);
	assert_int_equal(st.skipped_bytes, 0);
	assert_false(synclog_reader_gap(r));
	/* after the grace period it is torn */
	synclog_reader_set_torn_grace(r, 0);
	assert_int_equal(synclog_reader_next(r, recs, 32, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 0);
	synclog_reader_stats(r, &st);
	assert_true(st.skipped_bytes > 0);
	assert_int_equal(st.skipped_regions, 1);
	assert_true(synclog_reader_gap(r));
	synclog_reader_clear_gap(r);

	/* appends after the torn bytes are read normally */
	synclog_reader_set_torn_grace(r, SYNCLOG_TORN_GRACE_MS_DEFAULT);
	assert_int_equal(synclog_append(log, SYNCLOG_USER, "bob", NULL, NULL, &e), 0);
	assert_int_equal(synclog_reader_next(r, recs, 32, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(recs[0].user, "bob");
	assert_false(synclog_reader_gap(r));
	synclog_reader_close(&r);

	/* a torn record followed by valid ones needs no grace: the reader
	 * resynchronises at once (a fresh reader with the default grace) */
	r = synclog_reader_open(root, NULL, 0, &e);
	n = read_all(r, recs, 32);
	assert_int_equal(n, 10);
	assert_string_equal(recs[9].user, "bob");
	assert_true(synclog_reader_gap(r));
	synclog_reader_close(&r);
	synclog_close(&log);
}

static void
test_torn_tail_sealed(void **state)
{
	struct synclog *log = open_log(1024);
	static struct synclog_record recs[200];
	struct synclog_reader *r;
	char path[400];
	struct err e;
	size_t n;

	(void)state;
	append_n(log, 60, "alice");    /* a few segments */
	seg_file(1, path, sizeof(path));
	/* segment 1 is sealed: chop its last record (restoring the seal) */
	chmod(path, 0640);
	assert_int_equal(truncate(path, file_size(path) - 5), 0);
	chmod(path, 0440);
	r = synclog_reader_open(root, NULL, 0, &e);   /* default grace */
	n = read_all(r, recs, 200);
	/* a sealed segment's tail is final: skipped at once, reader moves on */
	assert_int_equal(n, 59);
	assert_true(synclog_reader_gap(r));
	synclog_reader_close(&r);
	synclog_close(&log);
}

static void
flip(const char *path, off_t off)
{
	int fd = open(path, O_RDWR);
	unsigned char c;

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &c, 1, off), 1);
	c ^= 0x5a;
	assert_int_equal(pwrite(fd, &c, 1, off), 1);
	close(fd);
}

static void
test_corruption_resync(void **state)
{
	struct synclog *log = open_log(0);
	static struct synclog_record recs[64], all[64];
	struct synclog_reader_stats st;
	struct synclog_reader *r;
	char path[400];
	struct err e;
	size_t n;

	(void)state;
	append_n(log, 50, "alice");
	synclog_close(&log);
	r = synclog_reader_open(root, NULL, 0, &e);
	assert_int_equal(read_all(r, all, 64), 50);
	synclog_reader_close(&r);

	seg_file(1, path, sizeof(path));
	flip(path, (off_t)all[20].pos.off + 15);     /* payload byte: CRC mismatch */
	flip(path, (off_t)all[30].pos.off);          /* magic */
	flip(path, (off_t)all[40].pos.off + 5);      /* length field */
	r = synclog_reader_open(root, NULL, 0, &e);
	n = read_all(r, recs, 64);
	assert_int_equal(n, 47);
	synclog_reader_stats(r, &st);
	assert_int_equal(st.skipped_regions, 3);
	assert_int_equal(st.skipped_bytes, (all[20].next.off - all[20].pos.off) +
		(all[30].next.off - all[30].pos.off) + (all[40].next.off - all[40].pos.off));
	assert_true(synclog_reader_gap(r));
	/* the survivors, in order */
	for (size_t i = 0, k = 0; i < 50; i++) {
		if (i == 20 || i == 30 || i == 40)
			continue;
		assert_string_equal(recs[k].uniqueid, all[i].uniqueid);
		assert_int_equal(synclog_pos_cmp(&recs[k].pos, &all[i].pos), 0);
		k++;
	}
	synclog_reader_close(&r);

	/* a block of garbage in the middle (as a torn multi-page write leaves) */
	{
		int fd = open(path, O_RDWR);
		char junk[700];
		memset(junk, 0xF7, sizeof(junk));   /* magic bytes everywhere */
		assert_int_equal(pwrite(fd, junk, sizeof(junk), (off_t)all[2].pos.off),
			(ssize_t)sizeof(junk));
		close(fd);
	}
	r = synclog_reader_open(root, NULL, 0, &e);
	n = read_all(r, recs, 64);
	assert_true(n >= 25 && n < 47);
	assert_string_equal(recs[0].uniqueid, all[0].uniqueid);
	assert_string_equal(recs[n - 1].uniqueid, all[49].uniqueid);
	synclog_reader_close(&r);
}

static void
test_unknown_payload_version(void **state)
{
	struct synclog *log = open_log(0);
	struct synclog_record recs[8];
	struct synclog_reader_stats st;
	struct synclog_reader *r;
	unsigned char rec[12 + 20];
	char path[400];
	uint32_t crc;
	struct err e;
	size_t n;
	int fd;

	(void)state;
	append_n(log, 1, "alice");
	/* a CRC-valid record in a payload format from the future */
	memset(rec, 0, sizeof(rec));
	memcpy(rec, "\xF7SLR", 4);
	rec[7] = 20;
	rec[12] = 2;   /* payload version 2 */
	rec[13] = 1;
	crc = crc32c(0, rec, 8);
	crc = crc32c(crc, rec + 12, 20);
	rec[8] = (unsigned char)(crc >> 24);
	rec[9] = (unsigned char)(crc >> 16);
	rec[10] = (unsigned char)(crc >> 8);
	rec[11] = (unsigned char)crc;
	seg_file(1, path, sizeof(path));
	fd = open(path, O_WRONLY | O_APPEND);
	assert_int_equal(write(fd, rec, sizeof(rec)), (ssize_t)sizeof(rec));
	close(fd);
	append_n(log, 1, "bob");
	synclog_close(&log);

	r = synclog_reader_open(root, NULL, 0, &e);
	assert_int_equal(synclog_reader_next(r, recs, 8, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 2);
	assert_string_equal(recs[1].user, "bob");
	synclog_reader_stats(r, &st);
	assert_int_equal(st.unknown, 1);
	assert_int_equal(st.skipped_bytes, 0);
	assert_true(synclog_reader_gap(r));
	synclog_reader_close(&r);
}

static void
test_reader_positions(void **state)
{
	struct synclog *log = open_log(1024);
	static struct synclog_record all[200], recs[200];
	struct synclog_reader *r;
	struct synclog_pos p;
	uint64_t id;
	char path[400];
	struct err e;
	size_t n;

	(void)state;
	append_n(log, 100, "alice");
	r = synclog_reader_open(root, NULL, 0, &e);
	assert_int_equal(read_all(r, all, 200), 100);
	id = synclog_reader_log_id(r);
	synclog_reader_close(&r);

	/* resume after record 41: exactly the rest */
	r = synclog_reader_open(root, &all[41].next, id, &e);
	n = read_all(r, recs, 200);
	assert_int_equal(n, 58);
	assert_string_equal(recs[0].uniqueid, all[42].uniqueid);
	assert_false(synclog_reader_gap(r));
	synclog_reader_close(&r);

	/* resume at the end of a sealed segment: moves on to the next */
	p = all[0].pos;
	for (int i = 0; i < 100; i++)
		if (all[i].next.seg == 1)
			p = all[i].next;
	r = synclog_reader_open(root, &p, id, &e);
	n = read_all(r, recs, 200);
	assert_int_equal(recs[0].pos.seg, 2);
	assert_false(synclog_reader_gap(r));
	synclog_reader_close(&r);

	/* a position inside a record: resynchronise to the next one */
	p = all[10].pos;
	p.off += 3;
	r = synclog_reader_open(root, &p, id, &e);
	n = read_all(r, recs, 200);
	assert_int_equal(n, 89);
	assert_string_equal(recs[0].uniqueid, all[11].uniqueid);
	assert_true(synclog_reader_gap(r));
	synclog_reader_close(&r);

	/* a cursor from another log (id mismatch): from the oldest, with gap */
	r = synclog_reader_open(root, &all[50].next, id ^ 1, &e);
	n = read_all(r, recs, 200);
	assert_int_equal(n, 100);
	assert_true(synclog_reader_gap(r));
	synclog_reader_close(&r);

	/* a position past the end of its segment: reread that segment */
	p = all[99].next;
	p.off += 1000;
	r = synclog_reader_open(root, &p, id, &e);
	n = read_all(r, recs, 200);
	assert_true(n > 0);
	assert_int_equal(recs[0].pos.seg, p.seg);
	assert_true(synclog_reader_gap(r));
	synclog_reader_close(&r);

	/* a segment deleted by hand: continue at the next that exists */
	seg_file(3, path, sizeof(path));
	assert_int_equal(unlink(path), 0);
	p.seg = 3;
	p.off = 100;
	r = synclog_reader_open(root, &p, id, &e);
	n = read_all(r, recs, 200);
	assert_int_equal(recs[0].pos.seg, 4);
	assert_true(synclog_reader_gap(r));
	synclog_reader_close(&r);
	/* ... and a reader crossing the hole notices it */
	r = synclog_reader_open(root, NULL, 0, &e);
	n = read_all(r, recs, 200);
	assert_true(n < 100);
	assert_true(synclog_reader_gap(r));
	synclog_reader_close(&r);
	synclog_close(&log);
}

static void
test_empty_and_recreated_log(void **state)
{
	struct synclog_record recs[8];
	struct synclog_reader *r;
	struct synclog *log;
	struct synclog_pos end;
	char cmd[400];
	struct err e;
	size_t n;

	(void)state;
	r = synclog_reader_open(root, NULL, 0, &e);
	assert_non_null(r);
	assert_int_equal(synclog_reader_next(r, recs, 8, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 0);
	assert_int_equal(synclog_end(root, &end, &e), 0);
	assert_int_equal(end.seg, 0);
	log = open_log(0);
	append_n(log, 2, "alice");
	assert_int_equal(synclog_reader_next(r, recs, 8, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 2);
	synclog_reader_close(&r);

	/* the whole log deleted by hand: appending re-creates it */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s/sync/log'", root);
	assert_int_equal(system(cmd), 0);
	append_n(log, 1, "bob");
	synclog_close(&log);
	r = synclog_reader_open(root, NULL, 0, &e);
	assert_int_equal(synclog_reader_next(r, recs, 8, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(recs[0].user, "bob");
	synclog_reader_close(&r);
}

static void
test_sealed_or_headerless_newest(void **state)
{
	struct synclog *log = open_log(0);
	struct synclog_record recs[8];
	struct synclog_reader *r;
	uint64_t *segs;
	char path[400];
	size_t nseg, n;
	struct err e;
	int fd;

	(void)state;
	append_n(log, 1, "alice");
	synclog_close(&log);
	/* a rollover that crashed after sealing segment 1 */
	seg_file(1, path, sizeof(path));
	assert_int_equal(chmod(path, 0440), 0);
	log = open_log(0);
	append_n(log, 1, "bob");
	synclog_close(&log);
	assert_int_equal(synclog_segments(root, &segs, &nseg, &e), 0);
	assert_int_equal(nseg, 2);
	free(segs);
	/* a segment whose header was lost in a crash (empty file) */
	seg_file(3, path, sizeof(path));
	fd = open(path, O_WRONLY | O_CREAT, 0640);
	close(fd);
	log = open_log(0);
	append_n(log, 1, "carol");
	synclog_close(&log);
	assert_int_equal(synclog_segments(root, &segs, &nseg, &e), 0);
	assert_int_equal(nseg, 4);
	free(segs);
	seg_file(3, path, sizeof(path));
	assert_int_equal(file_size(path), 0);   /* never appended to */

	r = synclog_reader_open(root, NULL, 0, &e);
	n = read_all(r, recs, 8);
	assert_int_equal(n, 3);
	assert_string_equal(recs[0].user, "alice");
	assert_string_equal(recs[1].user, "bob");
	assert_string_equal(recs[2].user, "carol");
	assert_int_equal(recs[2].pos.seg, 4);
	synclog_reader_close(&r);
}

/* A rollover that fails right after sealing (a crash there leaves the
 * same state): the append fails, the next one creates the successor. */
static void
test_rollover_interrupted(void **state)
{
	struct synclog *log = open_log(1024);
	static struct synclog_record recs[200];
	struct synclog_reader *r;
	int ok = 0, failed = 0;
	struct err e;
	size_t n;

	(void)state;
	assert_int_equal(failpoint_set("synclog.rollover.after_seal=error"), 0);
	for (int i = 0; i < 60; i++) {
		char id[32];
		snprintf(id, sizeof(id), "%08x", (unsigned)i);
		if (synclog_append(log, SYNCLOG_MAILBOX, "alice", id, NULL, &e) == 0) {
			ok++;
		} else {
			assert_int_equal(e.kind, ERR_TEMP);
			failed++;
			failpoint_set("");
		}
	}
	assert_int_equal(failed, 1);
	r = synclog_reader_open(root, NULL, 0, &e);
	n = read_all(r, recs, 200);
	assert_int_equal(n, (size_t)ok);
	assert_true(recs[n - 1].pos.seg >= 2);
	assert_false(synclog_reader_gap(r));
	synclog_reader_close(&r);
	synclog_close(&log);
}

static void
test_reclaim_and_behind(void **state)
{
	struct synclog *log = open_log(1024);
	static struct synclog_record all[300], rest[200];
	struct synclog_reader *r;
	struct synclog_pos pos[3], zero = { 0, 0 };
	uint64_t *segs, behind, total;
	size_t nseg, deleted;
	struct err e;

	(void)state;
	append_n(log, 200, "alice");
	synclog_close(&log);
	r = synclog_reader_open(root, NULL, 0, &e);
	assert_int_equal(read_all(r, all, 300), 200);
	synclog_reader_close(&r);
	assert_int_equal(synclog_segments(root, &segs, &nseg, &e), 0);
	assert_true(nseg >= 8);
	free(segs);

	/* bytes behind: everything from the start, nothing from the end */
	assert_int_equal(synclog_bytes_behind(root, &zero, &total, &e), 0);
	{
		uint64_t sum = 0;
		for (int i = 0; i < 200; i++)
			sum += all[i].next.off - all[i].pos.off;
		assert_int_equal(total, sum);
	}
	assert_int_equal(synclog_bytes_behind(root, &all[199].next, &behind, &e), 0);
	assert_int_equal(behind, 0);
	assert_int_equal(synclog_bytes_behind(root, &all[99].next, &behind, &e), 0);
	{
		uint64_t sum = 0;
		for (int i = 100; i < 200; i++)
			sum += all[i].next.off - all[i].pos.off;
		assert_int_equal(behind, sum);
	}

	/* no channel: nothing goes */
	assert_int_equal(synclog_reclaim(root, NULL, 0, &deleted, &e), 0);
	assert_int_equal(deleted, 0);
	/* two channels: the slower one decides */
	pos[0] = all[150].next;
	pos[1] = all[60].next;
	assert_int_equal(synclog_reclaim(root, pos, 2, &deleted, &e), 0);
	assert_int_equal(deleted, all[60].next.seg - 1);
	assert_int_equal(synclog_segments(root, &segs, &nseg, &e), 0);
	assert_int_equal(segs[0], all[60].next.seg);
	free(segs);
	/* a reader still finds its records */
	r = synclog_reader_open(root, &pos[1], 0, &e);
	assert_int_equal(read_all(r, rest, 200), 139);
	assert_string_equal(rest[0].uniqueid, all[61].uniqueid);
	synclog_reader_close(&r);
	/* everyone at the end: all but the newest segment go */
	pos[0] = pos[1] = all[199].next;
	pos[2] = all[199].next;
	pos[2].seg += 5;   /* even a cursor "beyond" never removes the newest */
	assert_int_equal(synclog_reclaim(root, pos, 3, &deleted, &e), 0);
	assert_int_equal(synclog_segments(root, &segs, &nseg, &e), 0);
	assert_int_equal(nseg, 1);
	assert_int_equal(segs[0], all[199].next.seg);
	free(segs);
}

static void
test_wait_wakeup(void **state)
{
	struct synclog_record recs[4];
	struct synclog_reader *r;
	struct synclog *log = open_log(0);
	int64_t t0, waited;
	pid_t pid;
	struct err e;
	size_t n;
	int status;

	(void)state;
	append_n(log, 1, "alice");
	r = synclog_reader_open(root, NULL, 0, &e);
	assert_true(synclog_reader_fd(r) >= 0);
	assert_int_equal(synclog_reader_next(r, recs, 4, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_int_equal(synclog_reader_wait(r, 0, &e), 0);   /* nothing since it opened */
	/* nothing happens: timeout */
	t0 = now_ms();
	assert_int_equal(synclog_reader_wait(r, 100, &e), 0);
	assert_true(now_ms() - t0 >= 90);
	/* another process appends: woken at once, not by a timer */
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct synclog *l2;
		usleep(200 * 1000);
		l2 = synclog_open(root, 0, &e);
		_exit(l2 != NULL && synclog_append(l2, SYNCLOG_USER, "bob", NULL, NULL, &e) == 0 ?
			0 : 1);
	}
	t0 = now_ms();
	assert_int_equal(synclog_reader_wait(r, 10000, &e), 1);
	waited = now_ms() - t0;
	assert_true(waited >= 150 && waited < 2000);
	assert_int_equal(synclog_reader_next(r, recs, 4, SIZE_MAX, &n, &e), 0);
	assert_int_equal(n, 1);
	assert_string_equal(recs[0].user, "bob");
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_int_equal(WEXITSTATUS(status), 0);
	synclog_reader_close(&r);
	synclog_close(&log);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test_setup_teardown(test_append_read, setup, teardown),
		cmocka_unit_test_setup_teardown(test_append_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failpoint_append, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollover, setup, teardown),
		cmocka_unit_test_setup_teardown(test_concurrent_appends, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail, setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_tail_sealed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_corruption_resync, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unknown_payload_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reader_positions, setup, teardown),
		cmocka_unit_test_setup_teardown(test_empty_and_recreated_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sealed_or_headerless_newest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rollover_interrupted, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reclaim_and_behind, setup, teardown),
		cmocka_unit_test_setup_teardown(test_wait_wakeup, setup, teardown),
	};

	log_set_level(LOG_LVL_ERROR);   /* the skips are expected here */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
