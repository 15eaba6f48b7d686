/*
 * syncstat.h - what a running sync-client tells the rest of the server
 * about its channel, through two small files under <root>/run/:
 *
 * 1. The ACK file, <root>/run/sync-<chan>.ack: the log position up to
 *    which the replica has durably committed everything, updated in place
 *    (one pwrite) after every acknowledged batch.  Semi-synchronous
 *    services wait on it (synchook_wait, inotify).  Not fsynced: it is a
 *    signal, not a durable record (the cursor is that).  Format, 40 bytes,
 *    integers big-endian:
 *        0   4  magic "CSAK"
 *        4   4  flags: bit 0 live (connected, and the batch acknowledged
 *                 reached the end of the log since it connected)
 *        8   8  segment
 *       16   8  offset
 *       24   8  log id
 *       32   4  pid of the writer (a live flag from a dead pid is ignored)
 *       36   4  CRC-32C of bytes 0..35
 *       40   8  heard: unix ms of the last answer from the replica (a batch
 *                 acknowledged, a heartbeat answered); 0 unknown
 *       48   4  dead-peer timeout of the writer in ms (sync_heartbeat_timeout)
 *       52   4  CRC-32C of bytes 0..51
 *    A reader that meets a bad CRC (a torn read beside a write) reads
 *    again; an absent or short file means "nothing acknowledged".  The
 *    40-byte form of earlier versions reads with heard 0.  A live flag
 *    whose heard is older than the dead-peer timeout is not live
 *    (syncstat_ack_live): the client is stuck on a silent replica.
 *
 * 2. The STATUS file, <root>/run/sync-<chan>.status: text, one
 *    "key=value" per line, replaced atomically (write + rename, no fsync)
 *    about once a second and at every change of state.  Keys (values have
 *    no newlines; times are unix milliseconds, 0 = never/none):
 *        channel            the channel name
 *        pid                the sync-client's pid
 *        state              connecting | connected | disconnected | fenced |
 *                           refused | stopped
 *        connected          1 or 0
 *        state_since_ms     when state last changed
 *        updated_ms         when the file was written
 *        cursor             SEG:OFF acknowledged by the replica
 *        cursor_saved       SEG:OFF in the durable cursor file
 *        log_end            SEG:OFF end of the log when written
 *        bytes_behind       log bytes after the acknowledged position
 *        records_behind     records after the acknowledged position
 *        oldest_unreplicated_ms  append time of the oldest record not yet
 *                           acknowledged (0 when caught up)
 *        lag_ms             updated_ms - oldest_unreplicated_ms (0 when caught up)
 *        detached           1 when the channel fell behind sync_log_max_bytes
 *        last_error         text of the last error ("" none)
 *        last_error_ms      when
 *        last_ack_ms        when the replica last answered (a batch, a
 *                           heartbeat); 0 none since the client started
 *        heartbeat_ms       sync_heartbeat: an idle channel is probed this often
 *        dead_after_ms      sync_heartbeat_timeout: a channel silent this long
 *                           is not live (status, semisync) and is dropped
 *        last_anti_entropy_ms   end of the last completed anti-entropy pass
 *        batches, users, mailboxes, records, uploads, upload_bytes,
 *        deletes, renames, repairs, errors   counters since the client started
 *        wire_in, wire_out  bytes on the wire since the client started
 *        conflicts          sum of the conflict counters
 *        conflict_<kind>    per kind: guid uid_above modseq_ahead uidvalidity
 *                           name_clash deleted_on_replica replica_only_record
 *                           replica_only_mailbox replica_only_user flags
 *    castorctl status reads it with syncstat_read_kv().
 *
 * 3. <root>/run/semisync.degraded exists while some service degraded
 *    semi-synchronous acknowledgement to asynchronous (its content: the
 *    time in unix ms and the reason); removed when a wait succeeds again.
 */
#ifndef CASTOR_SYNCSTAT_H
#define CASTOR_SYNCSTAT_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "sync/synclog.h"

void syncstat_ack_path(const char *root, const char *channel, struct buf *out);
void syncstat_status_path(const char *root, const char *channel, struct buf *out);
void syncstat_degraded_path(const char *root, struct buf *out);

/* Open (creating <root>/run and the file when create) the ACK file.
 * Returns an fd (O_CLOEXEC) or -1 with err. */
int syncstat_ack_open(const char *root, const char *channel, bool create, struct err *err);
/* Write the ACK record in place.  0 or -1 (errno). */
int syncstat_ack_write(int fd, const struct synclog_pos *pos, uint64_t log_id, bool live);
/* The same with heard_ms (unix ms of the last answer from the replica)
 * and dead_ms (after how long without one the channel is not live). */
int syncstat_ack_write_heard(int fd, const struct synclog_pos *pos, uint64_t log_id, bool live,
	uint64_t heard_ms, uint32_t dead_ms);
/* 1 read, 0 nothing valid there, -1 I/O error. */
int syncstat_ack_read(int fd, struct synclog_pos *pos, uint64_t *log_id, bool *live);
int syncstat_ack_read_heard(int fd, struct synclog_pos *pos, uint64_t *log_id, bool *live,
	uint64_t *heard_ms, uint32_t *dead_ms);
/* Is a channel live at now_ms: its live flag is set and, when the writer
 * recorded them, the last answer is not older than the dead-peer timeout. */
bool syncstat_ack_live(bool live, uint64_t heard_ms, uint32_t dead_ms, uint64_t now_ms);

/* Replace the STATUS file with text (key=value lines). */
int syncstat_status_write(const char *root, const char *channel, const char *text,
	struct err *err);
/* Read a STATUS file: fn(ctx, key, value) per line.  0, -1 with err
 * (ERR_NOTFOUND: no such file, the channel's client never ran). */
typedef void (*syncstat_kv_fn)(void *ctx, const char *key, const char *value);
int syncstat_read_kv(const char *root, const char *channel, syncstat_kv_fn fn, void *ctx,
	struct err *err);

/* "SEG:OFF" */
void syncstat_pos_format(const struct synclog_pos *pos, char *out, size_t size);

#endif
