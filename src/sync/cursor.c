/*
 * cursor.c - durable per-channel positions in the sync log (cursor.h).
 *
 * INVARIANTS
 *
 *  1. A cursor never runs ahead of what its replica acknowledged: the
 *     client saves it only after the acknowledgement.  It may lag behind
 *     (records are replayed; replay is idempotent).
 *  2. The file is replaced whole, never edited in place: write a
 *     temporary file, fsync, rename over the cursor, fsync the directory
 *     (atomicfile_write).  A crash leaves the old or the new cursor.
 *  3. A file that does not validate is reported as ERR_CORRUPT and
 *     treated as "no position": the channel re-reads the whole log and
 *     runs anti-entropy.  Never a crash, never a guess.
 *  4. A detached cursor does not hold log segments back.
 *
 * FILE FORMAT, <root>/sync/cursor/<channel>, exactly 48 bytes, integers
 * big-endian:
 *     0   4  magic F7 53 43 55 ("\xF7SCU")
 *     4   2  version, 1
 *     6   2  flags: bit 0 detached; other bits 0
 *     8   8  segment number
 *    16   8  offset in the segment
 *    24   8  log id (the segment header's), 0 unknown
 *    32   8  time saved, unix milliseconds
 *    40   4  reserved, 0
 *    44   4  CRC-32C of bytes 0..43
 */
#include "sync/cursor.h"

#include "lib/atomicfile.h"
#include "lib/bigend.h"
#include "lib/buf.h"
#include "lib/crc32c.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CURSOR_MAGIC "\xF7SCU"
#define CURSOR_VERSION 1
#define CURSOR_SIZE 48

bool
cursor_channel_valid(const char *channel)
{
	size_t n = strlen(channel);

	if (n == 0 || n > CURSOR_CHANNEL_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = channel[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-'))
			return false;
	}
	return true;
}

void
cursor_path(const char *root, const char *channel, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/sync/cursor/%s", root, channel);
}

int
cursor_load(const char *root, const char *channel, struct cursor *c, struct err *err)
{
	struct buf path = BUF_INIT;
	const unsigned char *p;
	char *data = NULL;
	size_t len = 0;
	struct err e;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	if (!cursor_channel_valid(channel))
		return err_set(err, ERR_INVALID, "bad channel name %s", log_q(channel));
	cursor_path(root, channel, &path);
	if (atomicfile_read_all(buf_cstr(&path), CURSOR_SIZE, &data, &len, &e) < 0) {
		if (e.kind == ERR_NOTFOUND)
			rc = 0;
		else if (e.kind == ERR_TOOBIG)
			err_set(err, ERR_CORRUPT, "cursor %s: longer than %d bytes", buf_cstr(&path),
				CURSOR_SIZE);
		else if (err != NULL)
			*err = e;
		goto out;
	}
	p = (const unsigned char *)data;
	if (len != CURSOR_SIZE) {
		err_set(err, ERR_CORRUPT, "cursor %s: %zu bytes, expected %d", buf_cstr(&path), len,
			CURSOR_SIZE);
		goto out;
	}
	if (memcmp(p, CURSOR_MAGIC, 4) != 0) {
		err_set(err, ERR_CORRUPT, "cursor %s: bad magic", buf_cstr(&path));
		goto out;
	}
	if (bigend_get32(p + 44) != crc32c(0, p, 44)) {
		err_set(err, ERR_CORRUPT, "cursor %s: checksum mismatch", buf_cstr(&path));
		goto out;
	}
	if (p[4] != 0 || p[5] != CURSOR_VERSION) {
		err_set(err, ERR_CORRUPT, "cursor %s: unknown version %u", buf_cstr(&path),
			(unsigned)(p[4] << 8 | p[5]));
		goto out;
	}
	c->flags = (uint32_t)(p[6] << 8 | p[7]);
	if (c->flags & ~CURSOR_DETACHED) {
		err_set(err, ERR_CORRUPT, "cursor %s: unknown flags 0x%x", buf_cstr(&path), c->flags);
		goto out;
	}
	c->pos.seg = bigend_get64(p + 8);
	c->pos.off = bigend_get64(p + 16);
	c->log_id = bigend_get64(p + 24);
	c->saved_ms = bigend_get64(p + 32);
	rc = 1;
out:
	if (rc < 0)
		memset(c, 0, sizeof(*c));
	free(data);
	buf_free(&path);
	return rc;
}

int
cursor_save(const char *root, const char *channel, const struct cursor *c, struct err *err)
{
	unsigned char p[CURSOR_SIZE];
	struct buf path = BUF_INIT;
	struct timespec ts;
	int rc;

	if (!cursor_channel_valid(channel))
		return err_set(err, ERR_INVALID, "bad channel name %s", log_q(channel));
	clock_gettime(CLOCK_REALTIME, &ts);
	memset(p, 0, sizeof(p));
	memcpy(p, CURSOR_MAGIC, 4);
	p[5] = CURSOR_VERSION;
	p[6] = (unsigned char)((c->flags & CURSOR_DETACHED) >> 8);
	p[7] = (unsigned char)(c->flags & CURSOR_DETACHED);
	bigend_put64(p + 8, c->pos.seg);
	bigend_put64(p + 16, c->pos.off);
	bigend_put64(p + 24, c->log_id);
	bigend_put64(p + 32, (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u);
	bigend_put32(p + 44, crc32c(0, p, 44));

	buf_printf(&path, "%s/sync/cursor", root);
	rc = atomicfile_mkdir_p(buf_cstr(&path), 0750, err);
	if (rc == 0) {
		cursor_path(root, channel, &path);
		rc = atomicfile_write(buf_cstr(&path), p, sizeof(p), 0640, err);
	}
	buf_free(&path);
	return rc;
}

int
cursor_detach(const char *root, const char *channel, struct err *err)
{
	struct cursor c;
	struct err e;

	if (cursor_load(root, channel, &c, &e) < 0 && e.kind != ERR_CORRUPT) {
		if (err != NULL)
			*err = e;
		return -1;
	}
	c.flags |= CURSOR_DETACHED;
	return cursor_save(root, channel, &c, err);
}

int
cursor_remove(const char *root, const char *channel, struct err *err)
{
	struct buf path = BUF_INIT;
	int rc = 0;

	if (!cursor_channel_valid(channel))
		return err_set(err, ERR_INVALID, "bad channel name %s", log_q(channel));
	cursor_path(root, channel, &path);
	if (unlink(buf_cstr(&path)) < 0 && errno != ENOENT)
		rc = err_errno(err, ERR_TEMP, "remove %s", buf_cstr(&path));
	else if (atomicfile_fsync_parent_dir(buf_cstr(&path), NULL) < 0)
		log_warn("cursor removed but directory not synced path=%s", log_q(buf_cstr(&path)));
	buf_free(&path);
	return rc;
}

int
cursor_reclaim(const char *root, const char *const *channels, size_t n, size_t *deleted_r,
	struct err *err)
{
	struct synclog_pos *pos = xcalloc(n ? n : 1, sizeof(*pos));
	size_t npos = 0;
	int rc = -1;

	if (deleted_r != NULL)
		*deleted_r = 0;
	for (size_t i = 0; i < n; i++) {
		struct cursor c;
		struct err e;
		int lr = cursor_load(root, channels[i], &c, &e);

		if (lr < 0 && e.kind != ERR_CORRUPT) {
			if (err != NULL)
				*err = e;
			goto out;
		}
		if (lr > 0 && (c.flags & CURSOR_DETACHED))
			continue;
		if (lr > 0 && c.log_id != 0) {
			/* a cursor whose segment is gone or belongs to a replaced log
			 * restarts from the oldest segment: it holds everything back */
			uint64_t id;
			int hr = synclog_segment_log_id(root, c.pos.seg, &id, err);
			if (hr < 0)
				goto out;
			if (hr == 0 || id != c.log_id)
				lr = 0;
		}
		pos[npos++] = lr > 0 ? c.pos : (struct synclog_pos){ 0, 0 };
	}
	/* npos == 0 (no attached channel): synclog_reclaim deletes nothing */
	rc = synclog_reclaim(root, pos, npos, deleted_r, err);
out:
	free(pos);
	return rc;
}
