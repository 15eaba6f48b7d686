/*
 * cursor.h - per-channel positions in the sync log.
 *
 * Each replica channel has one cursor file, <root>/sync/cursor/<channel>:
 * the log position up to which the replica has acknowledged every record
 * as committed, the id of the log it belongs to, and a "detached" flag.
 * A cursor is saved only after the replica acknowledged; it may lag
 * behind (a record replayed twice is harmless), it must never run ahead.
 * A cursor that cannot be read is reported, never fatal: the channel
 * starts from the oldest segment and runs anti-entropy.  See cursor.c
 * for the file format.
 */
#ifndef CASTOR_CURSOR_H
#define CASTOR_CURSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "sync/synclog.h"

#define CURSOR_CHANNEL_MAX 64
/* The channel fell further behind than sync_log_max_bytes and was cut
 * loose: its position no longer holds segments back, and it catches up
 * by anti-entropy before it follows the log again. */
#define CURSOR_DETACHED 0x1u

struct cursor {
	struct synclog_pos pos;   /* every record before pos is replicated */
	uint64_t log_id;          /* synclog_reader_log_id() when saved; 0 unknown */
	uint32_t flags;           /* CURSOR_DETACHED */
	uint64_t saved_ms;        /* when it was saved (unix ms); set by cursor_save */
};

/* Channel names: 1..CURSOR_CHANNEL_MAX of [A-Za-z0-9_-]. */
bool cursor_channel_valid(const char *channel);

/* Path of a channel's cursor file into out (reset first). */
void cursor_path(const char *root, const char *channel, struct buf *out);

/*
 * Load a channel's cursor.  Returns
 *    1  loaded;
 *    0  the channel has no cursor yet (*c zeroed: start at the oldest
 *       segment);
 *   -1  error, *c zeroed: ERR_CORRUPT (bad size, magic, version or
 *       checksum: start at the oldest segment and run anti-entropy; the
 *       caller logs it), ERR_INVALID (bad channel name), ERR_TEMP (I/O).
 */
int cursor_load(const char *root, const char *channel, struct cursor *c, struct err *err);

/* Save atomically and durably (write, fsync, rename, fsync directory;
 * lib/atomicfile.h), creating <root>/sync/cursor if needed.  c->saved_ms
 * is ignored and stamped with the current time.  Call only once the
 * replica acknowledged everything before c->pos as committed.  Each save
 * costs two fsyncs: a rolling client should save at most every few
 * hundred milliseconds and at exit, not after every batch. */
int cursor_save(const char *root, const char *channel, const struct cursor *c, struct err *err);

/* Mark a channel detached (keeping its position for the record). */
int cursor_detach(const char *root, const char *channel, struct err *err);

/* Remove a channel's cursor (channel taken out of the configuration);
 * absent is fine. */
int cursor_remove(const char *root, const char *channel, struct err *err);

/* Reclaim log segments every listed channel has passed: loads each
 * cursor, ignores detached ones, and holds everything back for a channel
 * whose cursor is missing, unreadable or from another log.  *deleted_r
 * (may be NULL) gets the number of segments removed. */
int cursor_reclaim(const char *root, const char *const *channels, size_t n, size_t *deleted_r,
	struct err *err);

#endif
