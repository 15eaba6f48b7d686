/* fuzz_synclog.c - libFuzzer target for the sync log reader
 * (sync/synclog.c).
 *
 * The input, after one control byte, is written as a segment file; a
 * reader reads it to the end (torn-tail grace 0), from the start and
 * from an offset taken from the input.  Whatever the bytes, the reader
 * must not crash, must return well-formed records at increasing
 * positions, and must always reach the end.  Then a record is appended
 * through the normal path and a fresh reader must find it last: garbage
 * in a segment never hides later appends.
 *
 * Control byte: bit 0 seal the segment, bit 1 give it a valid header,
 * bits 2-7 scale the start offset of the second reader. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/crc32c.h"
#include "lib/err.h"
#include "lib/log.h"
#include "sync/synclog.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)
#define BATCH 7

static char root[64];
static char dir[128];

/* Empty the log directory (segments, .lock, stray temporaries). */
static void
clean(void)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
}

static void
remove_root(void)
{
	char sync[96];

	clean();
	rmdir(dir);
	snprintf(sync, sizeof(sync), "%s/sync", root);
	rmdir(sync);
	rmdir(root);
}

static void
init(void)
{
	char sync[96];

	if (root[0] != '\0')
		return;
	/* tmpfs when there is one: file creation on a busy disk dominates */
	snprintf(root, sizeof(root), "%s/castor-fuzz-synclog-%ld",
		access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (long)getpid());
	snprintf(sync, sizeof(sync), "%s/sync", root);
	snprintf(dir, sizeof(dir), "%s/sync/log", root);
	mkdir(root, 0700);
	mkdir(sync, 0700);
	mkdir(dir, 0700);
	atexit(remove_root);
	log_set_level(LOG_LVL_FATAL);
}

static void
put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (unsigned char)v;
}

/* Read to the end; returns the number of records; *last gets the last. */
static size_t
read_to_end(const struct synclog_pos *start, struct synclog_record *last)
{
	struct synclog_record recs[BATCH];
	struct synclog_reader *r;
	struct synclog_pos prev = { 0, 0 };
	size_t total = 0;
	struct err e;
	int rc = 1;

	r = synclog_reader_open(root, start, 0, &e);
	CHECK(r != NULL);
	synclog_reader_set_torn_grace(r, 0);
	for (int i = 0; i < 100000 && rc == 1; i++) {
		size_t n;
		rc = synclog_reader_next(r, recs, BATCH, 300, &n, &e);
		CHECK(rc >= 0);
		CHECK(n <= BATCH);
		for (size_t k = 0; k < n; k++) {
			size_t ulen = strlen(recs[k].user);
			CHECK(recs[k].type >= 1 && recs[k].type <= 255);
			CHECK(ulen >= 1 && ulen <= SYNCLOG_USER_MAX);
			CHECK(strlen(recs[k].uniqueid) <= SYNCLOG_UNIQUEID_MAX);
			CHECK(recs[k].pos.seg == recs[k].next.seg);
			CHECK(recs[k].next.off >= recs[k].pos.off + 24);
			CHECK(synclog_pos_cmp(&recs[k].pos, &prev) >= 0);
			prev = recs[k].next;
			*last = recs[k];
		}
		total += n;
	}
	CHECK(rc == 0);   /* always reaches the end */
	synclog_reader_close(&r);
	return total;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[192];
	unsigned char hdr[SYNCLOG_SEGMENT_HEADER];
	struct synclog_record last;
	struct synclog_pos start;
	struct synclog *log;
	struct err e;
	uint8_t ctl;
	int fd;

	if (size < 1)
		return 0;
	init();
	clean();
	ctl = data[0];
	data++;
	size--;
	snprintf(path, sizeof(path), "%s/%016" PRIx64 ".log", dir, (uint64_t)1);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
	CHECK(fd >= 0);
	if (ctl & 2) {
		memset(hdr, 0, sizeof(hdr));
		memcpy(hdr, "\xF7SLG", 4);
		hdr[5] = 1;
		hdr[7] = SYNCLOG_SEGMENT_HEADER;
		put64(hdr + 8, 1);
		put64(hdr + 16, 0x1234);
		{
			uint32_t crc = crc32c(0, hdr, 36);
			hdr[36] = (unsigned char)(crc >> 24);
			hdr[37] = (unsigned char)(crc >> 16);
			hdr[38] = (unsigned char)(crc >> 8);
			hdr[39] = (unsigned char)crc;
		}
		CHECK(write(fd, hdr, sizeof(hdr)) == (ssize_t)sizeof(hdr));
	}
	if (size > 0)
		CHECK(write(fd, data, size) == (ssize_t)size);
	fchmod(fd, (ctl & 1) ? 0440 : 0640);
	close(fd);

	(void)read_to_end(NULL, &last);
	start.seg = 1;
	start.off = (uint64_t)(ctl >> 2) * (size / 64 + 1);
	(void)read_to_end(&start, &last);

	/* garbage never hides a later append */
	log = synclog_open(root, 1 << 20, &e);
	CHECK(log != NULL);
	CHECK(synclog_append(log, SYNCLOG_MAILBOX, "fuzz", "abcdef0123456789", NULL, &e) == 0);
	synclog_close(&log);
	CHECK(read_to_end(NULL, &last) >= 1);
	CHECK(strcmp(last.user, "fuzz") == 0);
	CHECK(strcmp(last.uniqueid, "abcdef0123456789") == 0);
	return 0;
}
