/*
 * synclog.c - the sync log: append-only segments of "this object
 * changed" records, shared by every channel (see synclog.h).
 *
 * INVARIANTS
 *
 *  1. A segment file that is visible under its final name carries a
 *     complete header: it is written under a temporary name and linked
 *     into place.  (After a crash the header may still be lost with the
 *     page cache; a segment shorter than its header is treated as sealed
 *     and never appended to.)
 *  2. Records are appended only to the newest segment, and only while it
 *     is not sealed.  Sealing clears the owner-write bit of the file
 *     (mode 0640 -> 0440) while holding flock(LOCK_EX) on it; every
 *     appender holds flock(LOCK_SH) from its check "not sealed, room
 *     left" until its write(2) returned.  So once a reader has seen the
 *     seal (fstat), the segment's size is final.
 *  3. A segment is sealed before its successor is created, and both
 *     happen under flock(LOCK_EX) on <dir>/.lock, so segment numbers
 *     only grow (the next is newest + 1) and only one process rolls
 *     over at a time.
 *  4. Each record is one write(2) on an O_APPEND descriptor: records of
 *     concurrent appenders never interleave.  A write cut short (a full
 *     disk, SIGKILL in the middle of a two-page write) leaves a torn
 *     record, which readers skip (invariant 5).
 *  5. A record is valid when its magic, its length bounds and the CRC-32C
 *     over its header and payload all match; nothing else in a segment is
 *     trusted.  A reader that meets invalid bytes looks for the next valid
 *     record (resynchronises), logs what it skipped and raises its gap
 *     flag.  Incomplete bytes at the end of the live segment may be a
 *     record still being written: they get a grace period before they
 *     are declared torn.
 *  6. A segment is deleted only when every channel's cursor lies in a
 *     later segment (synclog_reclaim), and the newest segment never is.
 *  7. Nothing here is needed for correctness, only for speed: the user
 *     databases are the truth.  No fsync anywhere.  A lost, torn or
 *     skipped record costs an anti-entropy pass, never mail.
 *
 * SEGMENT LIFE
 *
 *     (temp file) --link--> live --seal (chmod 0440)--> sealed --reclaim--> gone
 *                           ^ appends go here            readers move on to
 *                                                        the next segment
 *
 * ON-DISK FORMAT (all integers big-endian)
 *
 *   File name: 16 lower-case hex digits of the segment number, ".log"
 *   (0000000000000001.log).  Other names in the directory are ignored
 *   (".lock", ".tmp.*").
 *
 *   Segment header, 40 bytes:
 *     0   4  magic F7 53 4C 47 ("\xF7SLG")
 *     4   2  format version, 1
 *     6   2  header length, 40
 *     8   8  segment number (equals the file name)
 *    16   8  log id: random, chosen with the first segment and copied to
 *            every later one; a cursor from another log is detected by it
 *    24   8  creation time, unix milliseconds
 *    32   4  reserved, 0
 *    36   4  CRC-32C of bytes 0..35
 *   Records start at offset 40 even when the header does not validate.
 *
 *   Record, 12-byte header + payload:
 *     0   4  magic F7 53 4C 52 ("\xF7SLR").  0xF7 never occurs in UTF-8
 *            text, so user names cannot imitate it.
 *     4   4  payload length L, 12 <= L <= 4096
 *     8   4  CRC-32C of bytes 0..7 followed by the L payload bytes
 *    12   L  payload
 *
 *   Payload, version 1:
 *     0   1  payload version, 1
 *     1   1  type (enum synclog_type; unknown values are returned as is)
 *     2   8  time appended, unix milliseconds
 *    10   1  U = user name length, 1..255
 *    11   U  user name: bytes 0x21..0x7E or 0x80..0xF4
 *  11+U   1  K = uniqueid length, 0..64
 *  12+U   K  uniqueid, lower-case hex
 *   Bytes after the uniqueid are ignored (room for optional fields).
 *   A record whose CRC matches but whose payload version is not 1 is
 *   skipped and counted as unknown.
 */
#include "sync/synclog.h"

#include "lib/atomicfile.h"
#include "lib/bigend.h"
#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/crc32c.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEG_MAGIC "\xF7SLG"
#define REC_MAGIC "\xF7SLR"
#define SEG_VERSION 1
#define REC_HDR 12
#define PAYLOAD_MIN 12
#define PAYLOAD_MAX 4096
#define PAYLOAD_VERSION 1
#define REC_MAX (REC_HDR + PAYLOAD_MAX)
#define SEG_MODE_LIVE 0640
#define SEG_MODE_SEALED 0440
#define APPEND_ATTEMPTS 64
#define WINDOW (256 * 1024)
#define WATCH_MASK (IN_MODIFY | IN_ATTRIB | IN_CREATE | IN_MOVED_TO | IN_DELETE)

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static const char *const type_names[] = {
	NULL, "USER", "MAILBOX", "SEEN", "SUB", "UNUSER", "PASSWORD", "QUOTA", "SIEVE",
};
#define NTYPES (sizeof(type_names) / sizeof(type_names[0]))

const char *
synclog_type_name(unsigned type)
{
	if (type > 0 && type < NTYPES)
		return type_names[type];
	return "UNKNOWN";
}

unsigned
synclog_type_parse(const char *name)
{
	for (unsigned i = 1; i < NTYPES; i++)
		if (str_eq_ci(name, type_names[i]))
			return i;
	return 0;
}

int
synclog_pos_cmp(const struct synclog_pos *a, const struct synclog_pos *b)
{
	if (a->seg != b->seg)
		return a->seg < b->seg ? -1 : 1;
	if (a->off != b->off)
		return a->off < b->off ? -1 : 1;
	return 0;
}

static bool
user_byte_ok(unsigned char c)
{
	return (c >= 0x21 && c <= 0x7e) || (c >= 0x80 && c <= 0xf4);
}

static bool
hex_ok(unsigned char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

static void
log_dir(const char *root, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/sync/log", root);
}

static void
seg_path(const char *dir, uint64_t seg, char *out, size_t size)
{
	snprintf(out, size, "%s/%016" PRIx64 ".log", dir, seg);
}

/* Parse "<16 hex>.log"; 0 when the name is something else. */
static uint64_t
seg_from_name(const char *name)
{
	uint64_t v = 0;

	if (strlen(name) != 20 || strcmp(name + 16, ".log") != 0)
		return 0;
	for (int i = 0; i < 16; i++) {
		unsigned char c = (unsigned char)name[i];
		if (!hex_ok(c))
			return 0;
		v = (v << 4) | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
	}
	return v;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* List segments in dir, ascending.  A missing directory is an empty log.
 * With clean_tmp (caller holds the rollover lock), stale temporary files
 * of crashed rollovers are removed. */
static int
list_segments(const char *dir, bool clean_tmp, uint64_t **segs_r, size_t *n_r, struct err *err)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	uint64_t *v = NULL;
	size_t n = 0, cap = 0;

	*segs_r = NULL;
	*n_r = 0;
	if (d == NULL) {
		if (errno == ENOENT)
			return 0;
		return err_errno(err, ERR_TEMP, "open directory %s", dir);
	}
	while ((de = readdir(d)) != NULL) {
		uint64_t s = seg_from_name(de->d_name);
		if (s == 0) {
			if (clean_tmp && str_has_prefix(de->d_name, ".tmp."))
				(void)unlinkat(dirfd(d), de->d_name, 0);
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n++] = s;
	}
	closedir(d);
	if (n > 1)
		qsort(v, n, sizeof(*v), cmp_u64);
	*segs_r = v;
	*n_r = n;
	return 0;
}

static int
newest_segment(const char *dir, bool clean_tmp, uint64_t *seg_r, struct err *err)
{
	uint64_t *v;
	size_t n;

	if (list_segments(dir, clean_tmp, &v, &n, err) < 0)
		return -1;
	*seg_r = n > 0 ? v[n - 1] : 0;
	free(v);
	return 0;
}

static bool
st_sealed(const struct stat *st)
{
	return (st->st_mode & S_IWUSR) == 0 || st->st_nlink == 0;
}

/* Read and check a segment header.  1 valid (id_r set), 0 invalid. */
static int
read_header(int fd, uint64_t seg, uint64_t *id_r)
{
	unsigned char h[SYNCLOG_SEGMENT_HEADER];
	ssize_t r;

	do
		r = pread(fd, h, sizeof(h), 0);
	while (r < 0 && errno == EINTR);
	if (r != (ssize_t)sizeof(h))
		return 0;
	if (memcmp(h, SEG_MAGIC, 4) != 0 || bigend_get16(h + 4) != SEG_VERSION ||
	    bigend_get16(h + 6) != SYNCLOG_SEGMENT_HEADER || bigend_get64(h + 8) != seg ||
	    bigend_get32(h + 36) != crc32c(0, h, 36))
		return 0;
	*id_r = bigend_get64(h + 16);
	return 1;
}

/* ------------------------------------------------------------------ */
/* Appending                                                           */

struct synclog {
	char *dir;
	uint64_t segment_size;
	int fd;          /* newest segment, O_APPEND, or -1 */
	uint64_t seg;
	pid_t pid;       /* process that opened fd */
};

struct synclog *
synclog_open(const char *root, uint64_t segment_size, struct err *err)
{
	struct synclog *log;
	struct buf dir = BUF_INIT;

	log_dir(root, &dir);
	if (atomicfile_mkdir_p(buf_cstr(&dir), 0750, err) < 0) {
		buf_free(&dir);
		return NULL;
	}
	log = xcalloc(1, sizeof(*log));
	log->dir = buf_steal(&dir);
	if (segment_size == 0)
		segment_size = SYNCLOG_SEGMENT_SIZE_DEFAULT;
	if (segment_size < SYNCLOG_SEGMENT_SIZE_MIN)
		segment_size = SYNCLOG_SEGMENT_SIZE_MIN;
	log->segment_size = segment_size;
	log->fd = -1;
	return log;
}

void
synclog_close(struct synclog **logp)
{
	struct synclog *log = *logp;

	if (log == NULL)
		return;
	if (log->fd >= 0)
		close(log->fd);
	free(log->dir);
	free(log);
	*logp = NULL;
}

static void
writer_detach(struct synclog *log)
{
	if (log->fd >= 0)
		close(log->fd);
	log->fd = -1;
	log->seg = 0;
}

static int
flock_retry(int fd, int op)
{
	int r;

	do
		r = flock(fd, op);
	while (r < 0 && errno == EINTR);
	return r;
}

static uint64_t
random_id(void)
{
	uint64_t id = 0;

	if (getrandom(&id, sizeof(id), 0) != (ssize_t)sizeof(id))
		id = clock_wall_ms() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)(uintptr_t)&id;
	return id ? id : 1;
}

/* Create segment `seg` with a complete header (invariant 1).  Caller
 * holds the rollover lock. */
static int
create_segment(const char *dir, uint64_t seg, uint64_t log_id, struct err *err)
{
	char tmp[PATH_MAX], path[PATH_MAX];
	unsigned char h[SYNCLOG_SEGMENT_HEADER];
	int fd;

	memset(h, 0, sizeof(h));
	memcpy(h, SEG_MAGIC, 4);
	bigend_put16(h + 4, SEG_VERSION);
	bigend_put16(h + 6, SYNCLOG_SEGMENT_HEADER);
	bigend_put64(h + 8, seg);
	bigend_put64(h + 16, log_id);
	bigend_put64(h + 24, clock_wall_ms());
	bigend_put32(h + 36, crc32c(0, h, 36));

	snprintf(tmp, sizeof(tmp), "%s/.tmp.%ld.%016" PRIx64, dir, (long)getpid(), seg);
	seg_path(dir, seg, path, sizeof(path));
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, SEG_MODE_LIVE);
	if (fd < 0)
		return err_errno(err, ERR_TEMP, "create %s", tmp);
	if (atomicfile_write_all(fd, h, sizeof(h)) < 0 || fchmod(fd, SEG_MODE_LIVE) < 0) {
		err_errno(err, ERR_TEMP, "write %s", tmp);
		close(fd);
		unlink(tmp);
		return -1;
	}
	close(fd);
	if (link(tmp, path) < 0 && errno != EEXIST) {
		err_errno(err, ERR_TEMP, "link %s", path);
		unlink(tmp);
		return -1;
	}
	unlink(tmp);
	return 0;
}

/*
 * Roll over from segment `from` (0: the log is empty): under the rollover
 * lock, if `from` is still the newest segment, seal it (waiting for its
 * appenders) and create from + 1.  If someone else rolled over first,
 * do nothing: the caller re-attaches to the newest segment.
 */
static int
rollover(struct synclog *log, uint64_t from, struct err *err)
{
	char lockpath[PATH_MAX], path[PATH_MAX];
	uint64_t newest, log_id = 0;
	int lfd, rc = -1;

	snprintf(lockpath, sizeof(lockpath), "%s/.lock", log->dir);
	lfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (lfd < 0 && errno == ENOENT) {
		/* the directory was removed by hand: make it again */
		if (atomicfile_mkdir_p(log->dir, 0750, err) < 0)
			return -1;
		lfd = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	}
	if (lfd < 0)
		return err_errno(err, ERR_TEMP, "open %s", lockpath);
	if (flock_retry(lfd, LOCK_EX) < 0) {
		err_errno(err, ERR_TEMP, "lock %s", lockpath);
		goto out;
	}
	if (newest_segment(log->dir, true, &newest, err) < 0)
		goto out;
	if (newest != from) {
		rc = 0;
		goto out;
	}
	if (from != 0) {
		int sfd;

		seg_path(log->dir, from, path, sizeof(path));
		sfd = open(path, O_RDONLY | O_CLOEXEC);
		if (sfd < 0) {
			err_errno(err, ERR_TEMP, "open %s", path);
			goto out;
		}
		if (flock_retry(sfd, LOCK_EX) < 0 || fchmod(sfd, SEG_MODE_SEALED) < 0) {
			err_errno(err, ERR_TEMP, "seal %s", path);
			close(sfd);
			goto out;
		}
		if (!read_header(sfd, from, &log_id))
			log_id = 0;
		close(sfd);
		if (FAILPOINT("synclog.rollover.after_seal") < 0) {
			err_set(err, ERR_TEMP, "failpoint synclog.rollover.after_seal");
			goto out;
		}
	}
	if (log_id == 0)
		log_id = random_id();
	rc = create_segment(log->dir, from + 1, log_id, err);
out:
	close(lfd);   /* releases the lock */
	return rc;
}

/* Open the newest live segment for appending, rolling over from a sealed
 * or headerless one. */
static int
writer_attach(struct synclog *log, struct err *err)
{
	char path[PATH_MAX];

	for (int i = 0; i < APPEND_ATTEMPTS; i++) {
		uint64_t newest;
		struct stat st;
		int fd;

		if (newest_segment(log->dir, false, &newest, err) < 0)
			return -1;
		if (newest == 0) {
			if (rollover(log, 0, err) < 0)
				return -1;
			continue;
		}
		seg_path(log->dir, newest, path, sizeof(path));
		fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
		if (fd < 0) {
			if (errno == ENOENT)
				continue;
			if (errno != EACCES)
				return err_errno(err, ERR_TEMP, "open %s", path);
			if (stat(path, &st) < 0 || !st_sealed(&st))
				return err_errno(err, ERR_TEMP, "open %s", path);
			if (rollover(log, newest, err) < 0)
				return -1;
			continue;
		}
		if (fstat(fd, &st) < 0) {
			err_errno(err, ERR_TEMP, "stat %s", path);
			close(fd);
			return -1;
		}
		if (st_sealed(&st) || st.st_size < SYNCLOG_SEGMENT_HEADER) {
			close(fd);
			if (rollover(log, newest, err) < 0)
				return -1;
			continue;
		}
		log->fd = fd;
		log->seg = newest;
		log->pid = getpid();
		return 0;
	}
	return err_set(err, ERR_TEMP, "sync log %s: could not find a live segment", log->dir);
}

/* Encode a record into rec; returns its length, or -1 (ERR_INVALID). */
static int
encode_record(unsigned char *rec, unsigned type, const char *user, const char *uniqueid,
	struct err *err)
{
	size_t ulen = strlen(user), klen = uniqueid ? strlen(uniqueid) : 0;
	unsigned char *p = rec + REC_HDR;
	uint32_t len, crc;

	if (type == 0 || type > 255)
		return err_set(err, ERR_INVALID, "sync log: bad record type %u", type);
	if (ulen == 0 || ulen > SYNCLOG_USER_MAX)
		return err_set(err, ERR_INVALID, "sync log: bad user name length %zu", ulen);
	for (size_t i = 0; i < ulen; i++)
		if (!user_byte_ok((unsigned char)user[i]))
			return err_set(err, ERR_INVALID, "sync log: bad byte in user name");
	if (klen > SYNCLOG_UNIQUEID_MAX)
		return err_set(err, ERR_INVALID, "sync log: uniqueid too long");
	if (type == SYNCLOG_MAILBOX && klen == 0)
		return err_set(err, ERR_INVALID, "sync log: MAILBOX record without uniqueid");
	*p++ = PAYLOAD_VERSION;
	*p++ = (unsigned char)type;
	bigend_put64(p, clock_wall_ms());
	p += 8;
	*p++ = (unsigned char)ulen;
	memcpy(p, user, ulen);
	p += ulen;
	*p++ = (unsigned char)klen;
	for (size_t i = 0; i < klen; i++) {
		char c = str_lower_c(uniqueid[i]);
		if (!hex_ok((unsigned char)c))
			return err_set(err, ERR_INVALID, "sync log: uniqueid is not hex");
		*p++ = (unsigned char)c;
	}
	len = (uint32_t)(p - rec - REC_HDR);
	memcpy(rec, REC_MAGIC, 4);
	bigend_put32(rec + 4, len);
	crc = crc32c(0, rec, 8);
	crc = crc32c(crc, rec + REC_HDR, len);
	bigend_put32(rec + 8, crc);
	return (int)(REC_HDR + len);
}

int
synclog_append(struct synclog *log, unsigned type, const char *user, const char *uniqueid,
	struct synclog_pos *next_r, struct err *err)
{
	unsigned char rec[REC_MAX];
	int len = encode_record(rec, type, user, uniqueid, err);

	if (len < 0)
		return -1;
	if (FAILPOINT("synclog.append") < 0)
		return err_set(err, ERR_TEMP, "failpoint synclog.append");
	for (int i = 0; i < APPEND_ATTEMPTS; i++) {
		struct stat st;
		ssize_t w;

		if (log->fd >= 0 && log->pid != getpid()) {
			/* inherited across fork(): the flock would be shared with the
			 * parent, so an unlock here could release the parent's lock.
			 * Closing our copy leaves the parent's lock alone. */
			close(log->fd);
			log->fd = -1;
		}
		if (log->fd < 0 && writer_attach(log, err) < 0)
			return -1;
		if (flock_retry(log->fd, LOCK_SH) < 0) {
			err_errno(err, ERR_TEMP, "lock sync log segment");
			writer_detach(log);
			return -1;
		}
		if (fstat(log->fd, &st) < 0) {
			err_errno(err, ERR_TEMP, "stat sync log segment");
			writer_detach(log);
			return -1;
		}
		if (st_sealed(&st)) {
			writer_detach(log);   /* closing drops the lock */
			continue;
		}
		if (st.st_size < SYNCLOG_SEGMENT_HEADER ||
		    ((uint64_t)st.st_size + (uint64_t)len > log->segment_size &&
		     st.st_size > SYNCLOG_SEGMENT_HEADER)) {
			uint64_t from = log->seg;
			writer_detach(log);
			if (rollover(log, from, err) < 0)
				return -1;
			continue;
		}
		do
			w = write(log->fd, rec, (size_t)len);
		while (w < 0 && errno == EINTR);
		if (w != len) {
			if (w >= 0)
				err_set(err, ERR_NOSPACE, "sync log: short write (%zd of %d bytes)", w, len);
			else
				err_errno(err, ERR_TEMP, "write sync log segment %016" PRIx64, log->seg);
			writer_detach(log);
			return -1;
		}
		if (next_r != NULL) {
			off_t end = lseek(log->fd, 0, SEEK_CUR);
			next_r->seg = log->seg;
			next_r->off = end < 0 ? 0 : (uint64_t)end;
		}
		(void)flock_retry(log->fd, LOCK_UN);
		return 0;
	}
	return err_set(err, ERR_TEMP, "sync log %s: append kept losing races", log->dir);
}

/* ------------------------------------------------------------------ */
/* The log as a whole                                                  */

int
synclog_segments(const char *root, uint64_t **segs_r, size_t *n_r, struct err *err)
{
	struct buf dir = BUF_INIT;
	int rc;

	log_dir(root, &dir);
	rc = list_segments(buf_cstr(&dir), false, segs_r, n_r, err);
	buf_free(&dir);
	return rc;
}

static int
seg_size(const char *dir, uint64_t seg, uint64_t *size_r)
{
	char path[PATH_MAX];
	struct stat st;

	seg_path(dir, seg, path, sizeof(path));
	if (stat(path, &st) < 0)
		return -1;
	*size_r = (uint64_t)st.st_size;
	return 0;
}

int
synclog_end(const char *root, struct synclog_pos *end_r, struct err *err)
{
	struct buf dir = BUF_INIT;
	uint64_t newest, size;
	int rc = -1;

	log_dir(root, &dir);
	end_r->seg = end_r->off = 0;
	if (newest_segment(buf_cstr(&dir), false, &newest, err) < 0)
		goto out;
	if (newest != 0) {
		if (seg_size(buf_cstr(&dir), newest, &size) < 0) {
			err_errno(err, ERR_TEMP, "stat sync log segment %016" PRIx64, newest);
			goto out;
		}
		end_r->seg = newest;
		end_r->off = size;
	}
	rc = 0;
out:
	buf_free(&dir);
	return rc;
}

int
synclog_bytes_behind(const char *root, const struct synclog_pos *pos, uint64_t *bytes_r,
	struct err *err)
{
	struct buf dir = BUF_INIT;
	uint64_t *v, total = 0;
	size_t n;

	*bytes_r = 0;
	log_dir(root, &dir);
	if (list_segments(buf_cstr(&dir), false, &v, &n, err) < 0) {
		buf_free(&dir);
		return -1;
	}
	for (size_t i = 0; i < n; i++) {
		uint64_t size, from;
		if (v[i] < pos->seg || seg_size(buf_cstr(&dir), v[i], &size) < 0)
			continue;   /* passed, or reclaimed under our feet */
		from = SYNCLOG_SEGMENT_HEADER;
		if (v[i] == pos->seg && pos->off > from)
			from = pos->off;
		if (size > from)
			total += size - from;
	}
	free(v);
	buf_free(&dir);
	*bytes_r = total;
	return 0;
}

int
synclog_segment_log_id(const char *root, uint64_t seg, uint64_t *id_r, struct err *err)
{
	struct buf dir = BUF_INIT;
	char path[PATH_MAX];
	int fd, rc;

	*id_r = 0;
	log_dir(root, &dir);
	seg_path(buf_cstr(&dir), seg, path, sizeof(path));
	buf_free(&dir);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return err_errno(err, ERR_TEMP, "open %s", path);
	}
	rc = read_header(fd, seg, id_r);
	close(fd);
	return rc;
}

int
synclog_reclaim(const char *root, const struct synclog_pos *positions, size_t n,
	size_t *deleted_r, struct err *err)
{
	struct buf dir = BUF_INIT;
	char path[PATH_MAX];
	uint64_t *v, min;
	size_t nseg, deleted = 0;
	int rc = 0;

	if (deleted_r != NULL)
		*deleted_r = 0;
	if (n == 0)
		return 0;
	min = positions[0].seg;
	for (size_t i = 1; i < n; i++)
		if (positions[i].seg < min)
			min = positions[i].seg;
	log_dir(root, &dir);
	if (list_segments(buf_cstr(&dir), false, &v, &nseg, err) < 0) {
		buf_free(&dir);
		return -1;
	}
	for (size_t i = 0; i + 1 < nseg && v[i] < min; i++) {
		seg_path(buf_cstr(&dir), v[i], path, sizeof(path));
		if (unlink(path) < 0 && errno != ENOENT) {
			rc = err_errno(err, ERR_TEMP, "remove %s", path);
			break;
		}
		log_info("sync log segment reclaimed segment=%016" PRIx64, v[i]);
		deleted++;
	}
	free(v);
	buf_free(&dir);
	if (deleted_r != NULL)
		*deleted_r = deleted;
	return rc;
}

/* ------------------------------------------------------------------ */
/* Reading                                                             */

struct synclog_reader {
	char *dir;
	int fd;               /* current segment, or -1 */
	uint64_t seg;         /* current segment (0: none opened yet) */
	uint64_t off;         /* next byte to look at */
	uint64_t log_id;
	bool gap;
	int torn_grace_ms;
	int ino_fd;
	/* read window: bytes [win_off, win_off + win_len) of the segment */
	unsigned char *win;
	uint64_t win_off;
	size_t win_len;
	/* an incomplete tail seen at (pend_seg, pend_off) with file size pend_size */
	uint64_t pend_seg, pend_off, pend_size;
	int64_t pend_since;
	bool warned_unsealed;
	struct synclog_reader_stats stats;
};

static void
reader_close_seg(struct synclog_reader *r)
{
	if (r->fd >= 0)
		close(r->fd);
	r->fd = -1;
	r->win_len = 0;
}

/* Open segment seg and position at off (clamped to the first record).
 * 1 opened, 0 it does not exist, -1 error. */
static int
reader_open_seg(struct synclog_reader *r, uint64_t seg, uint64_t off, struct err *err)
{
	char path[PATH_MAX];
	uint64_t id;
	int fd;

	seg_path(r->dir, seg, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return 0;
		return err_errno(err, ERR_TEMP, "open %s", path);
	}
	reader_close_seg(r);
	r->fd = fd;
	r->seg = seg;
	r->off = off < SYNCLOG_SEGMENT_HEADER ? SYNCLOG_SEGMENT_HEADER : off;
	r->warned_unsealed = false;
	if (read_header(fd, seg, &id)) {
		if (r->log_id != 0 && id != r->log_id)
			log_notice("sync log id changed segment=%016" PRIx64 " old=%016" PRIx64
				" new=%016" PRIx64, seg, r->log_id, id);
		r->log_id = id;
	} else {
		struct stat st;
		/* a fresh segment whose header is not written yet cannot be
		 * seen (invariant 1); this one is damaged */
		if (fstat(fd, &st) == 0 && st.st_size > 0)
			log_warn("sync log segment header invalid segment=%016" PRIx64
				" (reading its records anyway)", seg);
	}
	return 1;
}

/* Make bytes [off, off + want) available in the window if the file has
 * them; returns a pointer to off and sets *avail to the bytes available
 * from off (up to `size`, the file size the caller saw). */
static const unsigned char *
window(struct synclog_reader *r, uint64_t off, size_t want, uint64_t size, size_t *avail,
	struct err *err)
{
	uint64_t have_end = r->win_off + r->win_len;
	size_t need = want;

	if (off >= size) {
		*avail = 0;
		return NULL;
	}
	if (need > size - off)
		need = (size_t)(size - off);
	if (!(r->win_len > 0 && off >= r->win_off && off + need <= have_end)) {
		size_t len = WINDOW;
		ssize_t got;
		if (len > size - off)
			len = (size_t)(size - off);
		do
			got = pread(r->fd, r->win, len, (off_t)off);
		while (got < 0 && errno == EINTR);
		if (got < 0) {
			err_errno(err, ERR_TEMP, "read sync log segment %016" PRIx64, r->seg);
			*avail = 0;
			r->win_len = 0;
			return NULL;
		}
		r->win_off = off;
		r->win_len = (size_t)got;
		have_end = off + (uint64_t)got;
	}
	*avail = (size_t)(have_end - off);
	if (*avail > size - off)
		*avail = (size_t)(size - off);
	return r->win + (off - r->win_off);
}

enum parse_result { P_VALID, P_SKIP, P_BAD, P_INCOMPLETE };

/* Decode the payload of a CRC-valid record.  false: not version 1 or
 * malformed. */
static bool
decode_payload(const unsigned char *p, uint32_t len, struct synclog_record *rec)
{
	unsigned ulen, klen;

	if (p[0] != PAYLOAD_VERSION || p[1] == 0)
		return false;
	ulen = p[10];
	if (ulen == 0 || 11u + ulen + 1u > len)
		return false;
	klen = p[11 + ulen];
	if (klen > SYNCLOG_UNIQUEID_MAX || 12u + ulen + klen > len)
		return false;
	for (unsigned i = 0; i < ulen; i++)
		if (!user_byte_ok(p[11 + i]))
			return false;
	for (unsigned i = 0; i < klen; i++)
		if (!hex_ok(p[12 + ulen + i]))
			return false;
	rec->type = p[1];
	rec->time_ms = bigend_get64(p + 2);
	memcpy(rec->user, p + 11, ulen);
	rec->user[ulen] = '\0';
	memcpy(rec->uniqueid, p + 12 + ulen, klen);
	rec->uniqueid[klen] = '\0';
	return true;
}

/* Look at the bytes at p (avail of them).  *reclen_r gets the record's
 * length for P_VALID and P_SKIP. */
static enum parse_result
parse_one(const unsigned char *p, size_t avail, struct synclog_record *rec, size_t *reclen_r)
{
	uint32_t len, crc;

	if (avail < 4)
		return memcmp(p, REC_MAGIC, avail) == 0 ? P_INCOMPLETE : P_BAD;
	if (memcmp(p, REC_MAGIC, 4) != 0)
		return P_BAD;
	if (avail < REC_HDR)
		return P_INCOMPLETE;
	len = bigend_get32(p + 4);
	if (len < PAYLOAD_MIN || len > PAYLOAD_MAX)
		return P_BAD;
	if (avail < REC_HDR + (size_t)len)
		return P_INCOMPLETE;
	crc = crc32c(0, p, 8);
	crc = crc32c(crc, p + REC_HDR, len);
	if (crc != bigend_get32(p + 8))
		return P_BAD;
	*reclen_r = REC_HDR + (size_t)len;
	return decode_payload(p + REC_HDR, len, rec) ? P_VALID : P_SKIP;
}

/* Find the first complete, CRC-valid record at or after `from` (below
 * `size`).  1 found (*at_r), 0 none, -1 error. */
static int
resync(struct synclog_reader *r, uint64_t from, uint64_t size, uint64_t *at_r, struct err *err)
{
	uint64_t off = from;

	while (off + REC_HDR + PAYLOAD_MIN <= size) {
		size_t avail;
		const unsigned char *p = window(r, off, REC_MAX, size, &avail, err);
		const unsigned char *hit;
		struct synclog_record scratch;
		size_t reclen;

		if (p == NULL)
			return -1;
		hit = memchr(p, 0xF7, avail);
		if (hit == NULL) {
			off += avail;
			continue;
		}
		off += (uint64_t)(hit - p);
		p = window(r, off, REC_MAX, size, &avail, err);
		if (p == NULL)
			return -1;
		switch (parse_one(p, avail, &scratch, &reclen)) {
		case P_VALID:
		case P_SKIP:
			*at_r = off;
			return 1;
		default:
			off++;
		}
	}
	return 0;
}

static void
note_skip(struct synclog_reader *r, uint64_t from, uint64_t to, const char *why)
{
	log_warn("sync log bytes skipped segment=%016" PRIx64 " offset=%" PRIu64 " bytes=%" PRIu64
		" reason=%s", r->seg, from, to - from, why);
	r->stats.skipped_bytes += to - from;
	r->stats.skipped_regions++;
	r->gap = true;
}

struct synclog_reader *
synclog_reader_open(const char *root, const struct synclog_pos *start, uint64_t log_id,
	struct err *err)
{
	struct synclog_reader *r = xcalloc(1, sizeof(*r));
	struct buf dir = BUF_INIT;
	uint64_t *v = NULL;
	size_t n = 0;
	int rc;

	log_dir(root, &dir);
	r->dir = buf_steal(&dir);
	r->fd = -1;
	r->torn_grace_ms = SYNCLOG_TORN_GRACE_MS_DEFAULT;
	r->win = xmalloc(WINDOW);
	r->ino_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (r->ino_fd < 0)
		log_warn("sync log: no inotify instance dir=%s error=%s (polling every 5 ms instead;"
			" raise fs.inotify.max_user_instances)", log_q(r->dir), strerror(errno));
	if (r->ino_fd >= 0) {
		if (atomicfile_mkdir_p(r->dir, 0750, NULL) < 0 ||
		    inotify_add_watch(r->ino_fd, r->dir, WATCH_MASK) < 0) {
			log_warn("sync log: inotify watch failed dir=%s error=%s (polling instead)",
				log_q(r->dir), strerror(errno));
			close(r->ino_fd);
			r->ino_fd = -1;
		}
	}
	if (list_segments(r->dir, false, &v, &n, err) < 0)
		goto fail;
	if (n == 0) {
		/* empty log: the first segment to appear is read from its start */
		if (start != NULL && start->seg != 0)
			r->gap = true;
		free(v);
		return r;
	}
	if (start != NULL && start->seg != 0) {
		rc = reader_open_seg(r, start->seg, start->off, err);
		if (rc < 0)
			goto fail;
		if (rc > 0) {
			struct stat st;
			if (log_id != 0 && r->log_id != log_id) {
				log_notice("sync log replaced: cursor belongs to another log, "
					"starting from the oldest segment");
				reader_close_seg(r);
				r->gap = true;
			} else if (fstat(r->fd, &st) == 0 && start->off > (uint64_t)st.st_size) {
				log_notice("sync log position past the end of its segment segment=%016"
					PRIx64 " offset=%" PRIu64 " size=%" PRIu64 ", rereading it",
					start->seg, start->off, (uint64_t)st.st_size);
				r->off = SYNCLOG_SEGMENT_HEADER;
				r->gap = true;
			}
			if (r->fd >= 0) {
				free(v);
				return r;
			}
		} else {
			/* its segment is gone: continue with the next one that exists,
			 * or from the oldest if the log was re-created below it */
			uint64_t pick = v[0];
			for (size_t i = 0; i < n; i++) {
				if (v[i] > start->seg) {
					pick = v[i];
					break;
				}
			}
			log_notice("sync log segment missing segment=%016" PRIx64
				", continuing at segment=%016" PRIx64, start->seg, pick);
			r->gap = true;
			if (reader_open_seg(r, pick, 0, err) < 0)
				goto fail;
			free(v);
			return r;
		}
	}
	if (reader_open_seg(r, v[0], 0, err) < 0)
		goto fail;
	free(v);
	return r;
fail:
	free(v);
	synclog_reader_close(&r);
	return NULL;
}

void
synclog_reader_close(struct synclog_reader **rp)
{
	struct synclog_reader *r = *rp;

	if (r == NULL)
		return;
	reader_close_seg(r);
	if (r->ino_fd >= 0)
		close(r->ino_fd);
	free(r->win);
	free(r->dir);
	free(r);
	*rp = NULL;
}

void
synclog_reader_set_torn_grace(struct synclog_reader *r, int ms)
{
	r->torn_grace_ms = ms < 0 ? 0 : ms;
}

struct synclog_pos
synclog_reader_pos(const struct synclog_reader *r)
{
	struct synclog_pos p = { r->seg, r->seg ? r->off : 0 };

	return p;
}

uint64_t
synclog_reader_log_id(const struct synclog_reader *r)
{
	return r->log_id;
}

bool
synclog_reader_gap(const struct synclog_reader *r)
{
	return r->gap;
}

void
synclog_reader_clear_gap(struct synclog_reader *r)
{
	r->gap = false;
}

void
synclog_reader_stats(const struct synclog_reader *r, struct synclog_reader_stats *s)
{
	*s = r->stats;
}

int
synclog_reader_fd(const struct synclog_reader *r)
{
	return r->ino_fd;
}

/* Bytes [off, size) hold no complete valid record.  Decide whether they
 * are torn (skip them) or possibly a record in flight (wait).  true when
 * the reader moved past them. */
static bool
handle_tail(struct synclog_reader *r, uint64_t size, bool sealed)
{
	int64_t now;

	if (sealed) {
		note_skip(r, r->off, size, "torn tail");
		r->off = size;
		return true;
	}
	now = clock_mono_ms();
	if (r->pend_seg != r->seg || r->pend_off != r->off || r->pend_size != size) {
		r->pend_seg = r->seg;
		r->pend_off = r->off;
		r->pend_size = size;
		r->pend_since = now;
	}
	if (now - r->pend_since >= r->torn_grace_ms) {
		note_skip(r, r->off, size, "torn tail (incomplete for too long)");
		r->off = size;
		return true;
	}
	return false;
}

/* No segment open: open the first one after r->seg (the oldest when
 * r->seg is 0).  1 opened, 0 none there yet, -1 error. */
static int
reader_advance(struct synclog_reader *r, struct err *err)
{
	for (int i = 0; i < APPEND_ATTEMPTS; i++) {
		uint64_t *v, pick = 0;
		size_t n;
		int rc;

		if (list_segments(r->dir, false, &v, &n, err) < 0)
			return -1;
		for (size_t k = 0; k < n; k++) {
			if (v[k] > r->seg) {
				pick = v[k];
				break;
			}
		}
		free(v);
		if (pick == 0)
			return 0;
		if (r->seg != 0 && pick != r->seg + 1) {
			log_warn("sync log segments missing from=%016" PRIx64 " to=%016" PRIx64,
				r->seg + 1, pick - 1);
			r->gap = true;
		}
		rc = reader_open_seg(r, pick, 0, err);
		if (rc != 0)
			return rc;
		r->seg = pick;   /* vanished between list and open: look past it */
	}
	return err_set(err, ERR_TEMP, "sync log %s: segments keep vanishing", r->dir);
}

int
synclog_reader_next(struct synclog_reader *r, struct synclog_record *recs, size_t max_records,
	size_t max_bytes, size_t *n_r, struct err *err)
{
	size_t n = 0, bytes = 0;

	*n_r = 0;
	while (n < max_records && (n == 0 || bytes < max_bytes)) {
		struct stat st;
		uint64_t size;
		bool sealed;

		if (r->fd < 0) {
			int rc = reader_advance(r, err);
			if (rc < 0)
				goto fail;
			if (rc == 0)
				break;
		}
		if (fstat(r->fd, &st) < 0) {
			err_errno(err, ERR_TEMP, "stat sync log segment %016" PRIx64, r->seg);
			goto fail;
		}
		size = (uint64_t)st.st_size;
		/* a segment without its header is never appended to (invariant 1) */
		sealed = st_sealed(&st) || size < SYNCLOG_SEGMENT_HEADER;

		if (r->off < size) {
			size_t avail, reclen = 0;
			const unsigned char *p = window(r, r->off, REC_MAX, size, &avail, err);
			enum parse_result pr;
			uint64_t at;
			int rc;

			if (p == NULL)
				goto fail;
			pr = parse_one(p, avail, &recs[n], &reclen);
			if (pr == P_VALID) {
				recs[n].pos.seg = r->seg;
				recs[n].pos.off = r->off;
				r->off += reclen;
				recs[n].next.seg = r->seg;
				recs[n].next.off = r->off;
				n++;
				bytes += reclen;
				r->stats.records++;
				continue;
			}
			if (pr == P_SKIP) {
				log_warn("sync log record in an unknown format skipped segment=%016" PRIx64
					" offset=%" PRIu64, r->seg, r->off);
				r->off += reclen;
				r->stats.unknown++;
				r->gap = true;
				continue;
			}
			rc = resync(r, r->off + 1, size, &at, err);
			if (rc < 0)
				goto fail;
			if (rc > 0) {
				note_skip(r, r->off, at, pr == P_BAD ? "corrupt" : "torn record");
				r->off = at;
				continue;
			}
			if (!handle_tail(r, size, sealed))
				break;   /* maybe a record in flight: end of log for now */
		}

		/* at the end of the segment: its size is final once it is sealed
		 * (invariant 2) */
		if (!sealed) {
			char path[PATH_MAX];
			struct stat nst;

			seg_path(r->dir, r->seg + 1, path, sizeof(path));
			if (stat(path, &nst) < 0)
				break;   /* the live segment: end of log for now */
			if (fstat(r->fd, &st) < 0) {
				err_errno(err, ERR_TEMP, "stat sync log segment %016" PRIx64, r->seg);
				goto fail;
			}
			if (st_sealed(&st) || (uint64_t)st.st_size > r->off)
				continue;   /* sealed (or grew) while we looked: once more */
			/* a newer segment but no seal: a crash lost the chmod, or
			 * someone restored files by hand.  Move on. */
			if (!r->warned_unsealed) {
				log_warn("sync log segment not sealed but a newer one exists segment=%016"
					PRIx64, r->seg);
				r->warned_unsealed = true;
			}
		}
		reader_close_seg(r);   /* keeps seg and off: reader_advance goes on from there */
	}
	*n_r = n;
	return n >= max_records || (n > 0 && bytes >= max_bytes) ? 1 : 0;
fail:
	if (n == 0)
		return -1;
	/* hand out what was read; the error will come back on the next call */
	*n_r = n;
	return 1;
}

int
synclog_reader_wait(struct synclog_reader *r, int timeout_ms, struct err *err)
{
	struct pollfd pfd;
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	bool lost = false;
	int rc;

	if (r->ino_fd < 0) {
		int ms = timeout_ms < 0 || timeout_ms > 50 ? 50 : timeout_ms;
		if (ms > 0)
			poll(NULL, 0, ms);
		return 1;
	}
	pfd.fd = r->ino_fd;
	pfd.events = POLLIN;
	rc = poll(&pfd, 1, timeout_ms);
	if (rc < 0) {
		if (errno == EINTR)
			return 0;
		return err_errno(err, ERR_TEMP, "poll sync log notifications");
	}
	if (rc == 0)
		return 0;
	for (;;) {
		ssize_t len = read(r->ino_fd, buf, sizeof(buf));
		if (len <= 0)
			break;
		for (ssize_t i = 0; i + (ssize_t)sizeof(struct inotify_event) <= len;) {
			const struct inotify_event *ev = (const struct inotify_event *)(buf + i);
			if (ev->mask & IN_IGNORED)
				lost = true;   /* the directory was removed (by hand) */
			i += (ssize_t)sizeof(*ev) + ev->len;
		}
	}
	if (lost && (atomicfile_mkdir_p(r->dir, 0750, NULL) < 0 || inotify_add_watch(r->ino_fd, r->dir,
	    WATCH_MASK) < 0))
		log_warn("sync log: inotify watch lost dir=%s", log_q(r->dir));
	return 1;
}
