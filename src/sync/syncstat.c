/*
 * syncstat.c - the ACK and STATUS files of a channel (format in
 * syncstat.h).
 */
#include "sync/syncstat.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/bigend.h"
#include "lib/crc32c.h"
#include "lib/str.h"

#define ACK_SIZE_V1 40
#define ACK_SIZE 56
#define ACK_MAGIC "CSAK"

void
syncstat_ack_path(const char *root, const char *channel, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/run/sync-%s.ack", root, channel);
}

void
syncstat_status_path(const char *root, const char *channel, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/run/sync-%s.status", root, channel);
}

void
syncstat_degraded_path(const char *root, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/run/semisync.degraded", root);
}

void
syncstat_pos_format(const struct synclog_pos *pos, char *out, size_t size)
{
	snprintf(out, size, "%" PRIu64 ":%" PRIu64, pos->seg, pos->off);
}

int
syncstat_ack_open(const char *root, const char *channel, bool create, struct err *err)
{
	struct buf p = BUF_INIT;
	int fd;

	if (create) {
		buf_printf(&p, "%s/run", root);
		if (atomicfile_mkdir_p(buf_cstr(&p), 0755, err) < 0) {
			buf_free(&p);
			return -1;
		}
	}
	syncstat_ack_path(root, channel, &p);
	fd = open(buf_cstr(&p), (create ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC, 0644);
	if (fd < 0)
		err_errno(err, errno == ENOENT ? ERR_NOTFOUND : ERR_TEMP, "%s", buf_cstr(&p));
	buf_free(&p);
	return fd;
}

int
syncstat_ack_write(int fd, const struct synclog_pos *pos, uint64_t log_id, bool live)
{
	return syncstat_ack_write_heard(fd, pos, log_id, live, 0, 0);
}

int
syncstat_ack_write_heard(int fd, const struct synclog_pos *pos, uint64_t log_id, bool live,
	uint64_t heard_ms, uint32_t dead_ms)
{
	unsigned char b[ACK_SIZE];

	memset(b, 0, sizeof(b));
	memcpy(b, ACK_MAGIC, 4);
	bigend_put32(b + 4, live ? 1u : 0u);
	bigend_put64(b + 8, pos->seg);
	bigend_put64(b + 16, pos->off);
	bigend_put64(b + 24, log_id);
	bigend_put32(b + 32, (uint32_t)getpid());
	bigend_put32(b + 36, crc32c(0, b, 36));
	bigend_put64(b + 40, heard_ms);
	bigend_put32(b + 48, dead_ms);
	bigend_put32(b + 52, crc32c(0, b, 52));
	return pwrite(fd, b, sizeof(b), 0) == (ssize_t)sizeof(b) ? 0 : -1;
}

int
syncstat_ack_read(int fd, struct synclog_pos *pos, uint64_t *log_id, bool *live)
{
	uint64_t heard;
	uint32_t dead;

	return syncstat_ack_read_heard(fd, pos, log_id, live, &heard, &dead);
}

int
syncstat_ack_read_heard(int fd, struct synclog_pos *pos, uint64_t *log_id, bool *live,
	uint64_t *heard_ms, uint32_t *dead_ms)
{
	unsigned char b[ACK_SIZE];

	for (int attempt = 0; attempt < 5; attempt++) {
		ssize_t n = pread(fd, b, sizeof(b), 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		if (n < ACK_SIZE_V1)
			return 0;
		if (memcmp(b, ACK_MAGIC, 4) != 0)
			return 0;
		if (bigend_get32(b + 36) != crc32c(0, b, 36))
			continue;   /* torn: a write was in progress */
		*heard_ms = 0;
		*dead_ms = 0;
		if (n == ACK_SIZE) {
			if (bigend_get32(b + 52) != crc32c(0, b, 52))
				continue;
			*heard_ms = bigend_get64(b + 40);
			*dead_ms = bigend_get32(b + 48);
		}
		*live = (bigend_get32(b + 4) & 1u) != 0;
		if (*live && bigend_get32(b + 32) != 0 && kill((pid_t)bigend_get32(b + 32), 0) < 0 && errno == ESRCH)
			*live = false;   /* its client died without saying so */
		pos->seg = bigend_get64(b + 8);
		pos->off = bigend_get64(b + 16);
		*log_id = bigend_get64(b + 24);
		return 1;
	}
	return 0;
}

int
syncstat_status_write(const char *root, const char *channel, const char *text, struct err *err)
{
	struct buf p = BUF_INIT, tmp = BUF_INIT;
	int fd, rc = -1;
	size_t len = strlen(text);

	syncstat_status_path(root, channel, &p);
	buf_printf(&tmp, "%s.tmp.%d", buf_cstr(&p), (int)getpid());
	fd = open(buf_cstr(&tmp), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		err_errno(err, ERR_TEMP, "%s", buf_cstr(&tmp));
		goto out;
	}
	if (atomicfile_write_all(fd, text, len) < 0) {
		err_errno(err, ERR_TEMP, "%s", buf_cstr(&tmp));
		close(fd);
		unlink(buf_cstr(&tmp));
		goto out;
	}
	close(fd);
	if (rename(buf_cstr(&tmp), buf_cstr(&p)) < 0) {
		err_errno(err, ERR_TEMP, "%s", buf_cstr(&p));
		unlink(buf_cstr(&tmp));
		goto out;
	}
	rc = 0;
out:
	buf_free(&p);
	buf_free(&tmp);
	return rc;
}

int
syncstat_read_kv(const char *root, const char *channel, syncstat_kv_fn fn, void *ctx,
	struct err *err)
{
	struct buf p = BUF_INIT;
	char *data = NULL, *line, *next;
	size_t len = 0;

	syncstat_status_path(root, channel, &p);
	if (atomicfile_read_all(buf_cstr(&p), 1024 * 1024, &data, &len, err) < 0) {
		if (access(buf_cstr(&p), F_OK) < 0 && errno == ENOENT)
			err->kind = ERR_NOTFOUND;
		buf_free(&p);
		return -1;
	}
	buf_free(&p);
	for (line = data; line != NULL && *line != '\0'; line = next) {
		char *eq;
		next = strchr(line, '\n');
		if (next != NULL)
			*next++ = '\0';
		eq = strchr(line, '=');
		if (eq == NULL)
			continue;
		*eq = '\0';
		fn(ctx, line, eq + 1);
	}
	free(data);
	return 0;
}

bool
syncstat_ack_live(bool live, uint64_t heard_ms, uint32_t dead_ms, uint64_t now_ms)
{
	if (!live)
		return false;
	if (heard_ms == 0 || dead_ms == 0)
		return true;   /* an older writer: its flag alone */
	return now_ms <= heard_ms || now_ms - heard_ms <= dead_ms;
}
