/*
 * atomicfile.h - durable whole-file replacement and directory fsync.
 *
 * atomicfile_write() guarantees that after it returns 0 the file at
 * `path` holds exactly `data` and survives a crash:
 *   1. write the data to "<path>.tmp.<pid>" in the same directory,
 *   2. fsync the temporary file,
 *   3. rename it over `path`,
 *   4. fsync the directory so the rename itself is durable.
 * A crash at any step leaves either the old or the new contents (and
 * possibly a stray .tmp file, which readers ignore).
 */
#ifndef CASTOR_ATOMICFILE_H
#define CASTOR_ATOMICFILE_H

#include <stddef.h>
#include <sys/types.h>

#include "lib/err.h"

int atomicfile_write(const char *path, const void *data, size_t len, mode_t mode, struct err *err);
/* fsync a directory by path. */
int atomicfile_fsync_dir(const char *dir, struct err *err);
/* fsync the directory containing path. */
int atomicfile_fsync_parent_dir(const char *path, struct err *err);
/* Read a whole file (up to max bytes) into a malloc'd NUL-terminated buffer. */
int atomicfile_read_all(const char *path, size_t max, char **data_r, size_t *len_r, struct err *err);
/* mkdir -p with mode; existing directories are fine. */
int atomicfile_mkdir_p(const char *path, mode_t mode, struct err *err);
/* write(2) all of it, retrying on EINTR and short writes. */
int atomicfile_write_all(int fd, const void *p, size_t n);

#endif
