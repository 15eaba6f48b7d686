/*
 * atomicfile.c - durable whole-file replacement.  See atomicfile.h for
 * the order of operations and what a crash leaves behind.
 */
#include "lib/atomicfile.h"
#include "lib/failpoint.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

int
atomicfile_write_all(int fd, const void *p, size_t n)
{
	const char *c = p;

	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

int
atomicfile_fsync_dir(const char *dir, struct err *err)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return err_errno(err, ERR_TEMP, "open directory %s", dir);
	if (fsync(fd) < 0) {
		err_errno(err, ERR_TEMP, "fsync directory %s", dir);
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

int
atomicfile_fsync_parent_dir(const char *path, struct err *err)
{
	char dir[PATH_MAX];
	char *slash;

	if (str_lcpy(dir, path, sizeof(dir)) >= sizeof(dir))
		return err_set(err, ERR_INVALID, "path too long: %s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL)
		return atomicfile_fsync_dir(".", err);
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	return atomicfile_fsync_dir(dir, err);
}

int
atomicfile_write(const char *path, const void *data, size_t len, mode_t mode, struct err *err)
{
	char tmp[PATH_MAX];
	int fd;

	if (str_fmt(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) < 0)
		return err_set(err, ERR_INVALID, "path too long: %s", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return err_errno(err, ERR_TEMP, "create %s", tmp);
	if (atomicfile_write_all(fd, data, len) < 0) {
		err_errno(err, ERR_TEMP, "write %s", tmp);
		goto fail;
	}
	if (FAILPOINT("atomicfile.before_fsync") < 0) {
		err_set(err, ERR_TEMP, "failpoint atomicfile.before_fsync");
		goto fail;
	}
	if (fsync(fd) < 0) {
		err_errno(err, ERR_TEMP, "fsync %s", tmp);
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		err_errno(err, ERR_TEMP, "close %s", tmp);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		err_errno(err, ERR_TEMP, "rename %s to %s", tmp, path);
		goto fail;
	}
	if (FAILPOINT("atomicfile.before_dirsync") < 0)
		return err_set(err, ERR_TEMP, "failpoint atomicfile.before_dirsync");
	return atomicfile_fsync_parent_dir(path, err);
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}

int
atomicfile_read_all(const char *path, size_t max, char **data_r, size_t *len_r, struct err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	char *data = NULL;
	size_t len = 0, cap = 0;

	if (fd < 0)
		return err_errno(err, errno == ENOENT ? ERR_NOTFOUND : ERR_TEMP, "open %s", path);
	if (fstat(fd, &st) == 0 && st.st_size > 0)
		cap = (size_t)st.st_size + 1;
	if (cap == 0 || cap > max + 1)
		cap = 4096;
	data = xmalloc(cap);
	for (;;) {
		ssize_t r;
		if (len + 1 >= cap) {
			cap *= 2;
			data = xrealloc(data, cap);
		}
		r = read(fd, data + len, cap - len - 1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			err_errno(err, ERR_TEMP, "read %s", path);
			free(data);
			close(fd);
			return -1;
		}
		if (r == 0)
			break;
		len += (size_t)r;
		if (len > max) {
			free(data);
			close(fd);
			return err_set(err, ERR_TOOBIG, "%s: larger than %zu bytes", path, max);
		}
	}
	close(fd);
	data[len] = '\0';
	*data_r = data;
	if (len_r != NULL)
		*len_r = len;
	return 0;
}

int
atomicfile_mkdir_p(const char *path, mode_t mode, struct err *err)
{
	char tmp[PATH_MAX];
	char *p;

	if (str_lcpy(tmp, path, sizeof(tmp)) >= sizeof(tmp))
		return err_set(err, ERR_INVALID, "path too long: %s", path);
	for (p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, mode) < 0 && errno != EEXIST)
			return err_errno(err, ERR_TEMP, "mkdir %s", tmp);
		*p = '/';
	}
	if (mkdir(tmp, mode) < 0 && errno != EEXIST)
		return err_errno(err, ERR_TEMP, "mkdir %s", tmp);
	return 0;
}
