/*
 * synchook.h - what every process that changes the store links in so its
 * changes reach the replicas: the change hook that appends one sync log
 * record per committed change, and the semi-synchronous wait.
 *
 * Use (lmtpd, imapd, pop3d, castorctl, any writer):
 *
 *     st = store_open(root, &opts, &err);
 *     if (synchook_attach(st, conf, &err) < 0) ...      // right after store_open
 *     ...
 *     if (synchook_admit(st, &err) < 0)                  // before a change asked for
 *             refuse, change nothing (strict semisync, no replica)
 *     store_append(...);                                 // commit
 *     if (synchook_wait(st, &err) < 0)                   // before "250 OK" / "OK"
 *             reply 451 4.4.0 / NO [UNAVAILABLE] (err.msg)
 *     ...
 *     synchook_detach(st);                               // before store_close
 *
 * Attaching is a no-op (returns 0) when the stored role is "replica" (a
 * replica's changes come from its master; syncd does not attach) or
 * `sync_channels` is empty (nobody reads the log).  The log is appended
 * after each durable commit, never fsynced; a failed append is counted,
 * logged, and marks <root>/run/sync-append-failed so the channels run an
 * anti-entropy pass (the change itself is committed and will be found).
 *
 * synchook_wait: in `sync_mode: semisync` it waits until one channel of
 * `sync_semisync_channels` (default: every channel) has acknowledged a
 * log position at or after the last record this process appended, i.e.
 * the replica durably committed the change.  Many changes share one
 * acknowledgement: the client sends whatever accumulated in one batch.
 * Cost when caught up: one pread per channel; otherwise a poll on an
 * inotify fd watching the channels' ACK files (syncstat.h), made for
 * that wait and closed after it (no process holds one between waits:
 * the kernel's 128 instances per user are shared by every process of
 * the server).  After
 * `sync_semisync_timeout` (default 2 s): with `sync_semisync_strict: no`
 * (default) it logs loudly, creates <root>/run/semisync.degraded and
 * returns 0 (asynchronous from then on, for every process, until a
 * channel is live again); with `sync_semisync_strict: yes` it returns -1
 * with ERR_TEMP, and the service must refuse with a temporary error.  In
 * async mode it returns 0 at once.
 */
#ifndef CASTOR_SYNCHOOK_H
#define CASTOR_SYNCHOOK_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/conf.h"
#include "lib/err.h"
#include "store/store.h"
#include "sync/synclog.h"

/* 0 (attached, or nothing to do on this server), -1 with err (the log
 * directory cannot be prepared: a configuration problem). */
int synchook_attach(struct store *st, const struct conf *conf, struct err *err);
/* Unregister and free; harmless when not attached. */
void synchook_detach(struct store *st);
/* Is a hook attached to st (master with channels)? */
bool synchook_active(const struct store *st);

/* Semi-synchronous acknowledgement, see above.  0 or -1 (ERR_TEMP). */
int synchook_wait(struct store *st, struct err *err);

/*
 * Strict semisync: decide before committing.  A service calls
 * synchook_admit before a command that would change the store; -1
 * (ERR_TEMP) when `sync_semisync_strict: yes` and no channel of
 * `sync_semisync_channels` is live (no client connected to its replica):
 * the wait could not succeed, so the command must be refused before it
 * changes anything (IMAP NO [UNAVAILABLE], LMTP 451, POP3 -ERR).  0
 * otherwise (always 0 in async and non-strict semisync).  A replica that
 * was live but does not confirm in time is synchook_wait's -1 after the
 * commit; what the services do then is in docs/decisions.md ("strict
 * semisync: a refusal changes nothing").
 */
int synchook_admit(struct store *st, struct err *err);

/*
 * The changes appended since the last wait need no confirmation: the
 * next synchook_wait that has nothing newer returns 0 at once.  For
 * changes nobody asked for and whose loss on a failover loses no mail:
 * the folders autocreated at a user's first login, the \Seen set by a
 * FETCH.  A later change's wait still covers them (the log is ordered).
 */
void synchook_forget(struct store *st);

/*
 * Async mode's opportunistic wait.  With `sync_async_wait` > 0 (default
 * 5ms) synchook_wait, in async mode, may hold the answer up to that long
 * for a live replica to confirm the change, but only when the client was
 * idle before its commands for 500 us or more on average (or half the
 * usual confirmation time, if less):
 * then the wait costs the client latency it does not notice, and on a
 * hard failover the change is already on the replica.  A client that
 * keeps the process busy (its next command follows the answer at once)
 * is answered at once, so bulk throughput is that of plain async.  When
 * no channel is live, or the replica keeps missing the budget, nothing
 * waits.  It is never an error and never degrades anything.
 *
 * The service tells the hook how long the client was idle before the
 * command whose changes the next synchook_wait covers (its wait for input
 * before MAIL, or before the IMAP command); SYNCHOOK_IDLE_UNKNOWN (the
 * default) counts as idle.
 */
#define SYNCHOOK_IDLE_UNKNOWN UINT64_MAX
void synchook_idle_hint(struct store *st, uint64_t idle_us);

struct synchook_stats {
	uint64_t appended;
	uint64_t append_failures;
	uint64_t waits;            /* synchook_wait calls that had something to wait for */
	uint64_t wait_timeouts;
	uint64_t async_waits;      /* async: waits begun */
	uint64_t async_confirmed;  /* async: answered after a replica's commit */
	uint64_t async_timeouts;   /* async: the budget ran out first */
	uint64_t async_busy;       /* async: not waited, the client was busy */
	uint64_t async_slow;       /* async: not waited, the replica missed the budget 8 times in a row */
	uint64_t admit_refused;    /* strict semisync: changes refused before they were made */
	bool semisync;
	bool degraded;
	struct synclog_pos last;   /* just after the last record appended */
};
void synchook_stats(const struct store *st, struct synchook_stats *s);

/* Path of the marker a failed append touches (the client watches it). */
void synchook_failed_marker(const char *root, struct buf *out);

#endif
