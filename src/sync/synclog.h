/*
 * synclog.h - the sync log: one append-only, segmented list of "this
 * object changed" hints, written by every process that mutates a user
 * and read by one sync client per replica channel, each at its own
 * position (see synclog.c for the invariants and the on-disk format,
 * docs/replication.md for how the client uses it).
 *
 * The log is a hint; the databases are the truth.  Appending never
 * fsyncs, a failed append loses nothing but time (anti-entropy finds the
 * change), and a reader skips torn or corrupt bytes with a log line and
 * raises its `gap` flag so the client knows to run anti-entropy.
 *
 * Layout: <root>/sync/log/<16 hex digits>.log, one file per segment,
 * numbered upwards from 1; <root>/sync/log/.lock serialises rollover.
 */
#ifndef CASTOR_SYNCLOG_H
#define CASTOR_SYNCLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define SYNCLOG_SEGMENT_SIZE_DEFAULT (64ull * 1024 * 1024)
#define SYNCLOG_SEGMENT_SIZE_MIN 1024ull
#define SYNCLOG_USER_MAX 255         /* bytes of a user name in a record */
#define SYNCLOG_UNIQUEID_MAX 64      /* hex digits of a mailbox uniqueid */
#define SYNCLOG_SEGMENT_HEADER 40    /* bytes before the first record of a segment */
/* Default time an incomplete record at the end of a live segment is
 * given to complete before it is skipped as torn. */
#define SYNCLOG_TORN_GRACE_MS_DEFAULT 2000

/* What changed.  A reader may meet a type it does not know (written by a
 * newer Castor): it is returned as is, and the client syncs the whole
 * user for it. */
enum synclog_type {
	SYNCLOG_USER = 1,      /* anything about the user: sync the whole user */
	SYNCLOG_MAILBOX = 2,   /* one mailbox (uniqueid): records, name, deletion */
	SYNCLOG_SEEN = 3,      /* seen state (uniqueid optional) */
	SYNCLOG_SUB = 4,       /* subscriptions */
	SYNCLOG_UNUSER = 5,    /* the user was deleted */
	SYNCLOG_PASSWORD = 6,  /* the password hash changed */
	SYNCLOG_QUOTA = 7,     /* quota limits changed */
	SYNCLOG_SIEVE = 8,     /* sieve scripts (later) */
};

/* "MAILBOX", ...; "UNKNOWN" for a number this build does not know. */
const char *synclog_type_name(unsigned type);
/* Inverse of synclog_type_name (case-insensitive); 0 when unknown. */
unsigned synclog_type_parse(const char *name);

/* A position in the log: segment number and byte offset in it.  (0, 0)
 * means "before everything". */
struct synclog_pos {
	uint64_t seg;
	uint64_t off;
};

/* <0, 0, >0 as a is before, at, after b. */
int synclog_pos_cmp(const struct synclog_pos *a, const struct synclog_pos *b);

struct synclog_record {
	unsigned type;                             /* enum synclog_type, or unknown */
	uint64_t time_ms;                          /* when it was appended (unix ms) */
	char user[SYNCLOG_USER_MAX + 1];
	char uniqueid[SYNCLOG_UNIQUEID_MAX + 1];   /* "" when the record has none */
	struct synclog_pos pos;                    /* where the record starts */
	struct synclog_pos next;                   /* just after it: the cursor once it is replicated */
};


/* ------------------------------------------------------------------ */
/* Appending                                                           */

struct synclog;

/* Prepare to append to the log of a server root (creating
 * <root>/sync/log if needed).  segment_size 0 = the default; values below
 * SYNCLOG_SEGMENT_SIZE_MIN are raised to it.  Opens no segment yet. */
struct synclog *synclog_open(const char *root, uint64_t segment_size, struct err *err);
void synclog_close(struct synclog **log);

/*
 * Append one record with a single write(2) on an O_APPEND descriptor;
 * never fsyncs.  type 1..255; user 1..SYNCLOG_USER_MAX bytes without
 * spaces or control characters; uniqueid NULL/"" or up to
 * SYNCLOG_UNIQUEID_MAX hex digits (stored lower-case), required for
 * SYNCLOG_MAILBOX.  next_r (may be NULL) receives the position just
 * after the record (what semisync waits for).
 * Returns 0, or -1 with ERR_INVALID (bad argument) or ERR_TEMP/ERR_NOSPACE
 * (I/O).  The caller has already committed the change: it counts and
 * logs the failure, and anti-entropy will find the change.
 * Failpoint: synclog.append (error: fail before writing).
 */
int synclog_append(struct synclog *log, unsigned type, const char *user, const char *uniqueid,
	struct synclog_pos *next_r, struct err *err);

/* ------------------------------------------------------------------ */
/* The log as a whole                                                  */

/* Segment numbers present, ascending (*segs_r malloc'd, NULL when none). */
int synclog_segments(const char *root, uint64_t **segs_r, size_t *n_r, struct err *err);
/* The position after the last byte of the newest segment; (0, 0) for an
 * empty log. */
int synclog_end(const char *root, struct synclog_pos *end_r, struct err *err);
/* Bytes of log after pos (the records a channel at pos has yet to
 * replicate, plus any torn bytes); what `sync_log_max_bytes` limits. */
int synclog_bytes_behind(const char *root, const struct synclog_pos *pos, uint64_t *bytes_r,
	struct err *err);
/* Log id in the header of segment seg: 1 (id_r set), 0 no such segment or
 * its header does not validate, -1 error. */
int synclog_segment_log_id(const char *root, uint64_t seg, uint64_t *id_r, struct err *err);
/* Delete every segment that all the given positions have passed: those
 * numbered below the lowest pos.seg, never the newest segment.  n == 0
 * deletes nothing (no channel has said where it is).  *deleted_r (may be
 * NULL) gets the number of segments removed. */
int synclog_reclaim(const char *root, const struct synclog_pos *positions, size_t n,
	size_t *deleted_r, struct err *err);

/* ------------------------------------------------------------------ */
/* Reading                                                             */

struct synclog_reader;

/*
 * Open a reader at `start` (NULL or seg 0: the oldest segment).  When
 * log_id is not 0 and the segment at start belongs to another log (the
 * log was deleted and re-created), or start's segment is gone, or start
 * is past the end of its segment, the reader starts at the oldest
 * segment that can still serve it and raises its gap flag.  An empty or
 * missing log is fine: records are read once they appear.
 */
struct synclog_reader *synclog_reader_open(const char *root, const struct synclog_pos *start,
	uint64_t log_id, struct err *err);
void synclog_reader_close(struct synclog_reader **r);

/* How long an incomplete record at the end of a live segment may stay
 * incomplete before it is skipped as torn (default
 * SYNCLOG_TORN_GRACE_MS_DEFAULT; 0: at once, for a drain after every
 * writer has exited, and for tests). */
void synclog_reader_set_torn_grace(struct synclog_reader *r, int ms);

/*
 * Read up to max_records records, stopping early once max_bytes bytes of
 * log have been consumed (at least one record is returned if one is
 * there).  *n_r gets the number read into recs.  Returns
 *    1  stopped at a limit: more may follow at once;
 *    0  reached the end of what is in the log now (wait, then call again);
 *   -1  error (ERR_TEMP: I/O); the position is unchanged.
 * Torn and corrupt bytes are skipped with a log line (and raise the gap
 * flag); they never stop the reader.
 */
int synclog_reader_next(struct synclog_reader *r, struct synclog_record *recs,
	size_t max_records, size_t max_bytes, size_t *n_r, struct err *err);

/* The position after the last record returned (or skipped). */
struct synclog_pos synclog_reader_pos(const struct synclog_reader *r);
/* Log id of the segment being read (0 before any segment was opened);
 * saved in the cursor with the position. */
uint64_t synclog_reader_log_id(const struct synclog_reader *r);
/* True once records may have been missed (skipped bytes, missing
 * segments, a replaced log): the client should run anti-entropy, then
 * clear the flag. */
bool synclog_reader_gap(const struct synclog_reader *r);
void synclog_reader_clear_gap(struct synclog_reader *r);

struct synclog_reader_stats {
	uint64_t records;         /* records returned */
	uint64_t skipped_bytes;   /* torn or corrupt bytes skipped */
	uint64_t skipped_regions; /* separate places where bytes were skipped */
	uint64_t unknown;         /* valid records this build cannot parse (newer format) */
};
void synclog_reader_stats(const struct synclog_reader *r, struct synclog_reader_stats *s);

/* An fd that polls readable (POLLIN) within moments of an append,
 * rollover or seal (inotify on the log directory); -1 if inotify is
 * unavailable (then synclog_reader_wait polls every 50 ms).  Owned by the
 * reader.  After it polls readable, call synclog_reader_wait(r, 0) or
 * simply read again. */
int synclog_reader_fd(const struct synclog_reader *r);
/* Wait up to timeout_ms (negative: forever) for the log to change and
 * drain the notifications.  1 woken, 0 timeout or EINTR, -1 error.  Use:
 * read until synclog_reader_next returns 0, then wait, then read again. */
int synclog_reader_wait(struct synclog_reader *r, int timeout_ms, struct err *err);

#endif
