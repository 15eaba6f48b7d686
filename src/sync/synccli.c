/*
 * synccli.c - sync-client, the master side of replication.
 *
 *   sync-client [-C castor.conf] -r -n CHAN       rolling: follow the sync log (castord DAEMON)
 *   sync-client [-C castor.conf] --drain [-n CHAN] [--timeout SEC]
 *                                                 replay the log to every channel, exit 0
 *                                                 only when every cursor is at its end
 *   sync-client [-C ...] [-n CHAN] -u USER...     full sync of these users
 *   sync-client [-C ...] [-n CHAN] -m USER MAILBOX   one mailbox
 *   sync-client [-C ...] [-n CHAN] -A             full sync of every user
 *   options: --allow-deletes (HELLO ALLOW-DELETES 1), -v (debug log)
 *
 * Exit codes: 0 done; 1 something was not replicated (errors or
 * conflicts, see the log); 2 fenced by the replica; 3 (--drain) every
 * channel drained but users are parked (named in the log: "drain: user
 * left behind"); 64 usage; 75 the replica could not be reached / drain
 * timed out; 78 configuration.
 *
 * ROLLING CLIENT, one process per channel:
 *
 *   disconnected --connect+login--> anti-entropy --> following the log
 *        ^   backoff 100 ms doubling to 1 s           |  batch: read up to
 *        +------------- error ------------------------+  BATCH_MAX records,
 *                                                        syncpush_run, ack
 *
 *  1. The cursor is saved only after the replica acknowledged every
 *     record before it (syncpush_run returned 0), at most once a second
 *     while busy and at once when idle or stopping.  A batch that fails
 *     is kept and sent again after the reconnect.
 *  2. A (re)connect resumes from the saved cursor.  Anti-entropy
 *     (syncpush_anti_entropy) runs only when the cursor cannot be used:
 *     none or unreadable (first start), detached, the reader reports a
 *     gap (a segment gone, another log id: a new epoch here), the
 *     replica's epoch or LOCALGEN (commits there not made by its syncd)
 *     differs from the one of the last pass (sync/cursor/<chan>.peer), a
 *     writer marked a failed append, the last sync-client of this
 *     channel did not stop cleanly (run/sync-<chan>.running left) -
 *     and on its schedule, every sync_verify_interval.  A pass without
 *     errors moves the cursor to the log end noted before it started:
 *     every change committed before that point was compared.  The pass
 *     compares users.db summaries (syncdigest.h) and syncs the users
 *     that differ in slices; between slices the live log is served
 *     (chan_yield), so log records never wait for a whole pass.  A
 *     resumed session with records behind sends the backlog first as
 *     one plan per user named in it (chan_catchup), so the deletion
 *     thresholds judge it whole.
 *  3. The ACK file (syncstat.h) is written after every acknowledged batch
 *     and every answered heartbeat (semisync waiters), the STATUS file
 *     about once a second.
 *  3a. Liveness is measured: an idle channel sends a heartbeat (NOOP)
 *     every sync_heartbeat; the replica must have answered something
 *     within sync_heartbeat_timeout, or the channel is dropped and
 *     reconnected with backoff.  The ACK file carries the time of the
 *     last answer, so writers stop waiting for a channel that went silent
 *     even while this client is still blocked on it.  Connect and login
 *     read with sync_connect_timeout; any other answer has sync_timeout.
 *  4. SIGQUIT (castord's graceful stop): the batch in hand is finished,
 *     the cursor saved, exit 0.
 *  5. A channel further behind than sync_log_max_bytes is detached (it no
 *     longer holds log segments) and recovers through rule 2.
 *  6. One driver per channel: <root>/sync/cursor/<chan>.lock (flock).
 *  7. A change the replica refuses for one user parks that user
 *     (syncpark.h): its records are skipped, the cursor goes on, it is
 *     retried in full after sync_park_retry (1 min) doubling to 1 h, or released by
 *     castorctl sync --allow-deletes CHAN [USER].  The parked list is
 *     saved before the cursor can move past the user's records.
 *  8. A cursor save that fails (disk full) is retried after 100 ms
 *     doubling to 5 s and logged at most every 10 s.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <malloc.h>
#include <time.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/clock.h"
#include "lib/conf.h"
#include "lib/conn.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/netaddr.h"
#include "lib/priv.h"
#include "lib/signals.h"
#include "lib/str.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/cursor.h"
#include "sync/syncchan.h"
#include "sync/syncconflict.h"
#include "sync/synchook.h"
#include "sync/synclog.h"
#include "sync/syncpark.h"
#include "sync/syncpush.h"
#include "sync/syncsess.h"
#include "sync/syncstat.h"

#define EXIT_PROBLEMS 1
#define EXIT_FENCED 2
#define EXIT_PARKED 3         /* drain: everything else is replicated, users were left parked */
#define EXIT_USAGE 64
#define EXIT_UNAVAILABLE 75
#define EXIT_CONFIG 78

#define BATCH_MAX 4096
#define TRIM_EVERY_MS 10000
#define BATCH_BYTES (1024 * 1024)
#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 1000
#define BACKOFF_PERM_MS 10000
#define IDLE_ROLE_MS 250      /* role re-check while this server is a replica */
#define CONNECT_MS 5000        /* sync_connect_timeout: TCP connect, and each read of the login */
#define HEARTBEAT_MS 2000      /* sync_heartbeat: probe an idle channel this often */
#define HEARTBEAT_MISSES 3     /* sync_heartbeat_timeout defaults to this many heartbeats */
#define ANSWER_MS (30 * 1000)  /* sync_timeout: the deadline of any outstanding answer */
#define SAVE_EVERY_MS 1000
#define SAVE_IDLE_MS 200
#define STATUS_EVERY_MS 1000
#define SAVE_BACKOFF_MIN_MS 100    /* a failed cursor save: retry after this, doubling */
#define SAVE_BACKOFF_MAX_MS 5000
#define SAVE_LOG_EVERY_MS 10000    /* and say so at most this often */
#define PARK_RETRY_MIN_MS (60 * 1000)   /* default sync_park_retry: first retry, doubling */
#define PARK_RETRY_MAX_MS (3600 * 1000)

static const char *prog = "sync-client";

static bool
quit_requested(void)
{
	signals_poll();
	return signals_pending(SIGQUIT) || signals_pending(SIGINT);
}

/* ------------------------------------------------------------------ */
/* A channel                                                           */

struct chan {
	const struct conf *conf;
	const char *root;
	struct store *st;
	struct syncchan ch;
	struct tls_ctx *tls;
	struct stat ca_st;                   /* the CA file c->tls was made from */
	bool allow_deletes;
	bool allow_once;                     /* this session uses the allow-deletes marker */
	struct syncconflict *cf;             /* conflict policy and warned-once memory */
	int lockfd;

	struct syncsess *sess;
	struct syncpush *push;
	struct syncpush_stats total;        /* closed sessions, summed */

	struct cursor cur;                   /* as saved */
	struct synclog_reader *rd;
	struct synclog_pos acked;
	uint64_t acked_log_id;
	bool dirty;
	uint64_t last_save_ms;
	struct synclog_record *recs;
	size_t nrecs;
	struct synclog_pos batch_end;
	bool at_end;                          /* the last read reached the end of the log */

	struct synclog_reader *cnt;          /* counts records for records_behind */
	int torn_grace;                       /* -1 default; 0 in a drain */
	uint64_t counted, acked_count;

	int ackfd;
	bool live;
	const char *state;
	uint64_t state_since;
	char last_error[ERR_MSG_MAX];
	uint64_t last_error_ms;
	uint64_t last_ae_ms;
	uint64_t ae_passes, ae_last_ms, ae_compared, ae_opened, resumes;
	const char *ae_reason;                /* why the next/last pass runs */
	/* the replica as of the last pass (sync/cursor/<chan>.peer): its
	 * epoch and LOCALGEN; pend_* as its HELLO gave them this session */
	bool peer_known;
	uint64_t peer_epoch, peer_gen, pend_epoch, pend_gen;
	uint64_t batches;
	uint64_t trim_batches;        /* batches when the heap was last trimmed */
	uint64_t trim_ms;             /* and when */
	bool detached;
	bool need_ae;
	bool catchup;                         /* a backlog to send after a reconnect (chan_catchup) */
	uint64_t verify_ms, next_verify_ms;
	uint64_t marker_seen_ms;
	uint64_t max_behind;
	uint64_t park_retry_ms;              /* sync_park_retry: a parked user's first retry */
	uint64_t backoff_ms, next_connect_ms;
	uint64_t last_io_ms;
	uint64_t status_ms;
	/* liveness (RULE 3a) */
	uint64_t hb_ms, dead_ms, connect_ms, answer_ms;
	uint64_t heard_ms;                    /* last answer from the replica */
	uint64_t heard_wire;                  /* syncsess_wire_in when heard_ms was set */
	uint64_t heard_written_ms;            /* heard_ms as last written to the ACK file */

	uint64_t next_save_ms;               /* a failed save: not before this */
	uint64_t save_backoff_ms, save_failures, save_log_ms, save_unlogged;

	bool parking;                        /* rolling and drain: refusals park users */
	struct syncpark park;                /* parked users, as saved in sync/parked/<chan> */
	char allow_user[STORE_USER_NAME_MAX + 1];   /* the allow-deletes marker names one user */
};

/* Note an answer from the replica if bytes arrived since the last look. */
static void
chan_heard(struct chan *c)
{
	uint64_t w;

	if (c->sess == NULL)
		return;
	w = syncsess_wire_in(c->sess);
	if (w != c->heard_wire) {
		c->heard_wire = w;
		c->heard_ms = clock_wall_ms();
	}
}

static void chan_ack_write(struct chan *c);

/* syncsess answer hook: the replica answered something.  Inside a long
 * batch the ACK file's heard time is refreshed a few times per dead-peer
 * timeout, so writers keep waiting for a replica that is busy, not gone. */
static void
chan_answered(void *ctx)
{
	struct chan *c = ctx;
	uint64_t now = clock_wall_ms();

	c->heard_ms = now;
	c->heard_wire = syncsess_wire_in(c->sess);
	if (c->ackfd >= 0 && now - c->heard_written_ms >= c->dead_ms / 8)
		chan_ack_write(c);
}

static void
chan_ack_write(struct chan *c)
{
	chan_heard(c);
	c->heard_written_ms = c->heard_ms;
	(void)syncstat_ack_write_heard(c->ackfd, &c->acked, c->acked_log_id, c->live, c->heard_ms,
		(uint32_t)c->dead_ms);
}

static void
chan_state(struct chan *c, const char *state)
{
	if (c->state == NULL || !str_eq(c->state, state)) {
		c->state = state;
		c->state_since = clock_wall_ms();
		c->status_ms = 0;
	}
}

/* A full pass is due (RULE 2); the first reason given is kept. */
static void
chan_want_ae(struct chan *c, const char *reason)
{
	if (!c->need_ae)
		c->ae_reason = reason;
	c->need_ae = true;
}

/* <root>/sync/cursor/<chan>.peer: "EPOCH LOCALGEN\n" of the replica as
 * its HELLO gave them before the last pass without errors. */
static void
peer_path(const struct chan *c, struct buf *out)
{
	buf_printf(out, "%s/sync/cursor/%s.peer", c->root, c->ch.name);
}

static void
peer_load(struct chan *c)
{
	struct buf p = BUF_INIT;
	char *data = NULL;
	size_t len = 0;
	struct err e2;
	unsigned long long ep, gen;

	peer_path(c, &p);
	if (atomicfile_read_all(buf_cstr(&p), 256, &data, &len, &e2) == 0 &&
	    sscanf(data, "%llu %llu", &ep, &gen) == 2) {
		c->peer_known = true;
		c->peer_epoch = ep;
		c->peer_gen = gen;
	}
	free(data);
	buf_free(&p);
}

/* After a pass without errors: the replica is reconciled as of its HELLO. */
static void
peer_save(struct chan *c)
{
	struct buf p = BUF_INIT;
	char line[64];
	struct err e2;
	int n;

	if (c->peer_known && c->peer_epoch == c->pend_epoch && c->peer_gen == c->pend_gen)
		return;
	c->peer_known = true;
	c->peer_epoch = c->pend_epoch;
	c->peer_gen = c->pend_gen;
	n = snprintf(line, sizeof(line), "%llu %llu\n", (unsigned long long)c->peer_epoch,
		(unsigned long long)c->peer_gen);
	peer_path(c, &p);
	if (atomicfile_write(buf_cstr(&p), line, (size_t)n, 0644, &e2) < 0)
		log_warn("cannot save the replica's epoch channel=%s error=%s", c->ch.name,
			log_q(e2.msg));
	buf_free(&p);
}

static void
chan_error(struct chan *c, const struct err *err)
{
	str_lcpy(c->last_error, err->msg, sizeof(c->last_error));
	c->last_error_ms = clock_wall_ms();
}

static void
sum_stats(struct syncpush_stats *t, const struct syncpush_stats *s)
{
	t->users += s->users;
	t->mailboxes += s->mailboxes;
	t->records += s->records;
	t->uploads += s->uploads;
	t->upload_bytes += s->upload_bytes;
	t->deletes += s->deletes;
	t->renames += s->renames;
	t->repairs += s->repairs;
	t->rounds += s->rounds;
	t->errors += s->errors;
	t->renumbered += s->renumbered;
	t->replaced += s->replaced;
	t->mailboxes_resolved += s->mailboxes_resolved;
	for (int k = 0; k < SYNCPUSH_C_COUNT; k++)
		t->conflicts[k] += s->conflicts[k];
}

static void
chan_totals(const struct chan *c, struct syncpush_stats *t)
{
	*t = c->total;
	if (c->push != NULL) {
		struct syncpush_stats s;
		syncpush_stats(c->push, &s);
		sum_stats(t, &s);
	}
}

static uint64_t wire_in_total, wire_out_total;

static void
chan_disconnect(struct chan *c, bool logout)
{
	struct syncpush_stats s;

	if (c->push != NULL) {
		if (logout)
			syncpush_logout(c->push);
		syncpush_stats(c->push, &s);
		sum_stats(&c->total, &s);
		if (s.errors > 0 || syncpush_last_problem(c->push)[0] != '\0')
			str_lcpy(c->last_error, syncpush_last_problem(c->push), sizeof(c->last_error));
		syncpush_free(&c->push);
	}
	if (c->sess != NULL) {
		wire_in_total += syncsess_wire_in(c->sess);
		wire_out_total += syncsess_wire_out(c->sess);
		syncsess_free(&c->sess);
	}
	if (c->live && c->ackfd >= 0) {
		c->live = false;
		chan_ack_write(c);
	}
}

/* Delete the log segments every channel has passed (detached ones do not
 * count). */
static void
reclaim(struct chan *c)
{
	size_t n = 0, deleted = 0;
	char **names = syncchan_names(c->conf, &n);
	struct err e2;

	bool attached = false;

	for (size_t i = 0; i < n && !attached; i++) {
		struct cursor cu;
		if (cursor_load(c->root, names[i], &cu, &e2) <= 0 || !(cu.flags & CURSOR_DETACHED))
			attached = true;
	}
	if (attached) {
		if (cursor_reclaim(c->root, (const char *const *)names, n, &deleted, &e2) < 0)
			log_warn("segment reclaim failed error=%s", log_q(e2.msg));
	} else {
		/* every channel detached: nothing holds the log back
		 * (cursor_reclaim deletes nothing then) */
		struct synclog_pos end;
		if (synclog_end(c->root, &end, &e2) < 0 ||
		    synclog_reclaim(c->root, &end, 1, &deleted, &e2) < 0)
			log_warn("segment reclaim failed error=%s", log_q(e2.msg));
	}
	if (deleted > 0)
		log_info("log segments reclaimed count=%zu", deleted);
	conf_list_free(names);
}

static void
status_write(struct chan *c, bool force)
{
	struct buf b = BUF_INIT;
	struct syncpush_stats t;
	struct synclog_pos end = { 0, 0 };
	uint64_t behind = 0, now = clock_wall_ms(), conflicts = 0, oldest = 0;
	char p1[48], p2[48], p3[48];
	struct err err;

	if (!force && c->status_ms != 0 && now - c->status_ms < STATUS_EVERY_MS)
		return;
	c->status_ms = now;
	(void)synclog_end(c->root, &end, &err);
	(void)synclog_bytes_behind(c->root, &c->acked, &behind, &err);
	/* count what lies after the acknowledged position */
	if (c->cnt != NULL) {
		struct synclog_record recs[256];
		size_t n = 0;
		for (int i = 0; i < 400; i++) {
			if (synclog_reader_next(c->cnt, recs, 256, 1024 * 1024, &n, &err) < 0 || n == 0)
				break;
			c->counted += n;
		}
	}
	if (c->nrecs > 0)
		oldest = c->recs[0].time_ms;
	chan_totals(c, &t);
	for (int k = 0; k < SYNCPUSH_C_COUNT; k++)
		conflicts += t.conflicts[k];
	syncstat_pos_format(&c->acked, p1, sizeof(p1));
	syncstat_pos_format(&c->cur.pos, p2, sizeof(p2));
	syncstat_pos_format(&end, p3, sizeof(p3));
	buf_printf(&b, "channel=%s\npid=%d\nstate=%s\nconnected=%d\nstate_since_ms=%llu\n"
		"updated_ms=%llu\ncursor=%s\ncursor_saved=%s\nlog_end=%s\nbytes_behind=%llu\n"
		"records_behind=%llu\noldest_unreplicated_ms=%llu\nlag_ms=%llu\ndetached=%d\n",
		c->ch.name, (int)getpid(), c->state, c->push != NULL ? 1 : 0,
		(unsigned long long)c->state_since, (unsigned long long)now, p1, p2, p3,
		(unsigned long long)behind,
		(unsigned long long)(c->counted > c->acked_count ? c->counted - c->acked_count : 0),
		(unsigned long long)oldest,
		(unsigned long long)(oldest != 0 && now > oldest ? now - oldest : 0),
		c->detached ? 1 : 0);
	chan_heard(c);
	buf_printf(&b, "last_ack_ms=%llu\nheartbeat_ms=%llu\ndead_after_ms=%llu\n",
		(unsigned long long)c->heard_ms, (unsigned long long)c->hb_ms,
		(unsigned long long)c->dead_ms);
	buf_puts(&b, "last_error=");
	for (const char *s = c->last_error; *s; s++)
		buf_putc(&b, *s == '\n' || *s == '\r' ? ' ' : *s);
	buf_printf(&b, "\nlast_error_ms=%llu\nlast_anti_entropy_ms=%llu\nbatches=%llu\nusers=%llu\n"
		"mailboxes=%llu\nrecords=%llu\nuploads=%llu\nupload_bytes=%llu\ndeletes=%llu\n"
		"renames=%llu\nrepairs=%llu\nerrors=%llu\nwire_in=%llu\nwire_out=%llu\nconflicts=%llu\n",
		(unsigned long long)c->last_error_ms, (unsigned long long)c->last_ae_ms,
		(unsigned long long)c->batches, (unsigned long long)t.users,
		(unsigned long long)t.mailboxes, (unsigned long long)t.records,
		(unsigned long long)t.uploads, (unsigned long long)t.upload_bytes,
		(unsigned long long)t.deletes, (unsigned long long)t.renames,
		(unsigned long long)t.repairs, (unsigned long long)t.errors,
		(unsigned long long)(wire_in_total + (c->sess ? syncsess_wire_in(c->sess) : 0)),
		(unsigned long long)(wire_out_total + (c->sess ? syncsess_wire_out(c->sess) : 0)),
		(unsigned long long)conflicts);
	buf_printf(&b, "anti_entropy_passes=%llu\nanti_entropy_last_duration_ms=%llu\n"
		"anti_entropy_users_compared=%llu\nanti_entropy_user_dbs_opened=%llu\n"
		"anti_entropy_reason=%s\nresumed_from_cursor=%llu\n",
		(unsigned long long)c->ae_passes, (unsigned long long)c->ae_last_ms,
		(unsigned long long)c->ae_compared, (unsigned long long)c->ae_opened,
		c->ae_reason != NULL ? c->ae_reason : "none", (unsigned long long)c->resumes);
	for (int k = 0; k < SYNCPUSH_C_COUNT; k++)
		buf_printf(&b, "conflict_%s=%llu\n", syncpush_conflict_name((enum syncpush_conflict_kind)k),
			(unsigned long long)t.conflicts[k]);
	buf_printf(&b, "resolved_renumbered=%llu\nresolved_replaced=%llu\nresolved_mailboxes=%llu\n",
		(unsigned long long)t.renumbered, (unsigned long long)t.replaced,
		(unsigned long long)t.mailboxes_resolved);
	/* the users themselves: <root>/sync/parked/<chan> (syncpark.h) */
	buf_printf(&b, "parked=%zu\n", c->park.n);
	if (syncstat_status_write(c->root, c->ch.name, buf_cstr(&b), &err) < 0 && force)
		log_warn("cannot write the status file channel=%s error=%s", c->ch.name, log_q(err.msg));
	buf_free(&b);
	if (behind > c->max_behind && c->max_behind > 0 && !c->detached) {
		log_error("CHANNEL DETACHED: channel=%s is %llu bytes behind (sync_log_max_bytes=%llu);"
			" it no longer holds log segments and will catch up by anti-entropy",
			c->ch.name, (unsigned long long)behind, (unsigned long long)c->max_behind);
		if (cursor_detach(c->root, c->ch.name, &err) < 0)
			log_error("cannot detach channel=%s error=%s", c->ch.name, log_q(err.msg));
		c->detached = true;
		c->cur.flags |= CURSOR_DETACHED;
		reclaim(c);
		chan_want_ae(c, "detached");
		c->nrecs = 0;
	}
}

/* (Re)open the readers at pos. */
static int
chan_reader_open(struct chan *c, const struct synclog_pos *pos, uint64_t log_id, int torn_grace,
	struct err *err)
{
	synclog_reader_close(&c->rd);
	synclog_reader_close(&c->cnt);
	if (torn_grace < 0)
		torn_grace = c->torn_grace;
	c->rd = synclog_reader_open(c->root, pos, log_id, err);
	if (c->rd == NULL)
		return -1;
	if (torn_grace >= 0)
		synclog_reader_set_torn_grace(c->rd, torn_grace);
	c->cnt = synclog_reader_open(c->root, pos, log_id, err);
	if (c->cnt != NULL && torn_grace >= 0)
		synclog_reader_set_torn_grace(c->cnt, torn_grace);
	c->counted = c->acked_count = 0;
	c->nrecs = 0;
	c->at_end = false;
	if (synclog_reader_gap(c->rd)) {
		chan_want_ae(c, "log-gap");
		synclog_reader_clear_gap(c->rd);
	}
	return 0;
}

/* Save the cursor if it moved: always when force, else when `every` ms
 * have passed since the last save (two fsyncs each: not per batch).  A
 * failed save (disk full) is retried after a backoff (100 ms doubling to
 * 5 s), not at once: the acknowledged position stays in memory and the
 * replica is not affected; only a restart would replay more. */
static int
chan_save_every(struct chan *c, bool force, uint64_t every, struct err *err)
{
	struct cursor nc;
	uint64_t now = clock_wall_ms();

	if (!c->dirty)
		return 0;
	if (!force && (now - c->last_save_ms < every || now < c->next_save_ms))
		return 0;
	memset(&nc, 0, sizeof(nc));
	nc.pos = c->acked;
	nc.log_id = c->acked_log_id;
	nc.flags = c->detached ? CURSOR_DETACHED : 0;
	if (FAILPOINT("sync.client.before_cursor_save") < 0)
		err_set(err, ERR_TEMP, "failpoint sync.client.before_cursor_save");
	else if (cursor_save(c->root, c->ch.name, &nc, err) == 0)
		goto saved;
	c->save_failures++;
	c->save_backoff_ms = c->save_backoff_ms == 0 ? SAVE_BACKOFF_MIN_MS : 2 * c->save_backoff_ms;
	if (c->save_backoff_ms > SAVE_BACKOFF_MAX_MS)
		c->save_backoff_ms = SAVE_BACKOFF_MAX_MS;
	c->next_save_ms = clock_wall_ms() + c->save_backoff_ms;
	return -1;
saved:
	if (c->save_failures > 0)
		log_notice("cursor saved again channel=%s after failures=%llu", c->ch.name,
			(unsigned long long)c->save_failures);
	c->save_failures = c->save_backoff_ms = c->next_save_ms = c->save_unlogged = 0;
	c->cur = nc;
	c->dirty = false;
	c->last_save_ms = clock_wall_ms();
	reclaim(c);
	return 0;
}

/* Log a failed cursor save: the first, then at most every 10 s with the
 * number of failures in between (a full disk must not fill the log). */
static void
chan_save_failed(struct chan *c, const char *when, const struct err *err)
{
	uint64_t now = clock_wall_ms();

	chan_error(c, err);
	if (c->save_log_ms != 0 && now - c->save_log_ms < SAVE_LOG_EVERY_MS) {
		c->save_unlogged++;
		return;
	}
	log_error("cursor save failed%s channel=%s error=%s failures=%llu unlogged=%llu retry_ms=%llu",
		when, c->ch.name, log_q(err->msg), (unsigned long long)c->save_failures,
		(unsigned long long)c->save_unlogged, (unsigned long long)c->save_backoff_ms);
	c->save_log_ms = now;
	c->save_unlogged = 0;
}

static int
chan_save(struct chan *c, bool force, struct err *err)
{
	return chan_save_every(c, force, SAVE_EVERY_MS, err);
}

/* sync_heartbeat, sync_heartbeat_timeout, sync_connect_timeout,
 * sync_timeout (docs/config.md). */
static int
chan_liveness_conf(struct chan *c, const struct conf *conf, struct err *err)
{
	int64_t hb = conf_get_duration_ms(conf, "sync_heartbeat", HEARTBEAT_MS);
	int64_t dead = conf_get_duration_ms(conf, "sync_heartbeat_timeout", hb * HEARTBEAT_MISSES);
	int64_t con = conf_get_duration_ms(conf, "sync_connect_timeout", CONNECT_MS);
	int64_t ans = conf_get_duration_ms(conf, "sync_timeout", ANSWER_MS);

	/* at most a minute: far below the replica's sync_idle_timeout */
	if (hb < 100 || hb > 60 * 1000)
		return err_set(err, ERR_INVALID, "sync_heartbeat must be between 100ms and 1min");
	if (dead < 2 * hb || dead > 3600 * 1000)
		return err_set(err, ERR_INVALID,
			"sync_heartbeat_timeout must be at least two heartbeats (and at most 1h)");
	if (con < 100 || con > 600 * 1000)
		return err_set(err, ERR_INVALID, "sync_connect_timeout must be between 100ms and 10min");
	if (ans < dead || ans > 3600 * 1000)
		return err_set(err, ERR_INVALID,
			"sync_timeout must be at least sync_heartbeat_timeout (and at most 1h)");
	c->hb_ms = (uint64_t)hb;
	c->dead_ms = (uint64_t)dead;
	c->connect_ms = (uint64_t)con;
	c->answer_ms = (uint64_t)ans;
	return 0;
}

static int
chan_open(struct chan *c, const struct conf *conf, struct store *st, const char *name,
	int torn_grace, struct err *err)
{
	struct buf p = BUF_INIT;
	int rc;

	memset(c, 0, sizeof(*c));
	c->conf = conf;
	c->torn_grace = torn_grace;
	c->root = conf_dir(conf);
	c->st = st;
	c->lockfd = -1;
	c->ackfd = -1;
	chan_state(c, "disconnected");
	if (syncchan_load(conf, name, &c->ch, err) < 0)
		return -1;
	{
		enum syncconflict_policy pol;
		const char *ps = conf_get_str(conf, "sync_conflict", "renumber");
		if (syncconflict_parse_policy(ps, &pol) < 0)
			return err_set(err, ERR_INVALID, "sync_conflict: %s is not renumber, keep or replace",
				log_q(ps));
		c->cf = syncconflict_new(c->root, name, pol);
	}
	if (c->ch.tls) {
		c->tls = tls_client_ctx_new(c->ch.ca_file != NULL, c->ch.ca_file, err);
		if (c->tls == NULL)
			return -1;
		if (c->ch.ca_file != NULL)
			(void)stat(c->ch.ca_file, &c->ca_st);
	}
	c->verify_ms = (uint64_t)conf_get_duration_ms(conf, "sync_verify_interval", 3600 * 1000);
	if (chan_liveness_conf(c, conf, err) < 0)
		return -1;
	c->next_verify_ms = clock_wall_ms() + c->verify_ms;
	peer_load(c);
	c->max_behind = conf_get_bytes(conf, "sync_log_max_bytes", 4ull * 1024 * 1024 * 1024);
	c->park_retry_ms = (uint64_t)conf_get_duration_ms(conf, "sync_park_retry", PARK_RETRY_MIN_MS);
	if (c->park_retry_ms == 0 || c->park_retry_ms > PARK_RETRY_MAX_MS)
		c->park_retry_ms = PARK_RETRY_MIN_MS;
	c->recs = xcalloc(BATCH_MAX, sizeof(*c->recs));
	c->backoff_ms = BACKOFF_MIN_MS;
	rc = cursor_load(c->root, name, &c->cur, err);
	if (rc < 0) {
		log_error("cursor unreadable channel=%s error=%s: starting from the oldest segment with"
			" anti-entropy", name, log_q(err->msg));
		memset(&c->cur, 0, sizeof(c->cur));
	}
	if (rc <= 0)
		chan_want_ae(c, "no-cursor");
	c->detached = (c->cur.flags & CURSOR_DETACHED) != 0;
	if (c->detached)
		chan_want_ae(c, "detached");
	c->acked = c->cur.pos;
	c->acked_log_id = c->cur.log_id;
	c->last_save_ms = clock_wall_ms();
	if (syncpark_load(c->root, name, &c->park, err) < 0) {
		/* its users are caught by the anti-entropy pass after connecting */
		log_error("parked-users file unreadable channel=%s error=%s: starting with none",
			name, log_q(err->msg));
		c->need_ae = true;
	}
	{
		struct buf mp = BUF_INIT;
		struct stat sb;
		synchook_failed_marker(c->root, &mp);
		if (stat(buf_cstr(&mp), &sb) == 0) {
			c->marker_seen_ms = (uint64_t)sb.st_mtim.tv_sec * 1000 + (uint64_t)sb.st_mtim.tv_nsec / 1000000;
			if (c->marker_seen_ms >= c->cur.saved_ms)
				chan_want_ae(c, "append-failed");
		}
		buf_free(&mp);
	}
	if (chan_reader_open(c, &c->acked, c->acked_log_id, torn_grace, err) < 0)
		return -1;
	c->ackfd = syncstat_ack_open(c->root, name, true, err);
	if (c->ackfd < 0)
		return -1;
	chan_ack_write(c);
	buf_printf(&p, "%s/sync/cursor", c->root);
	if (atomicfile_mkdir_p(buf_cstr(&p), 0755, err) < 0) {
		buf_free(&p);
		return -1;
	}
	buf_printf(&p, "/%s.lock", name);
	c->lockfd = open(buf_cstr(&p), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
	if (c->lockfd < 0) {
		err_errno(err, ERR_TEMP, "%s", buf_cstr(&p));
		buf_free(&p);
		return -1;
	}
	buf_free(&p);
	return 0;
}

static void
chan_close(struct chan *c)
{
	chan_disconnect(c, true);
	synclog_reader_close(&c->rd);
	synclog_reader_close(&c->cnt);
	if (c->ackfd >= 0)
		close(c->ackfd);
	if (c->lockfd >= 0)
		close(c->lockfd);
	tls_ctx_free(&c->tls);
	syncchan_free(&c->ch);
	syncconflict_free(&c->cf);
	syncpark_clear(&c->park);
	free(c->recs);
}

/* Take the channel's lock, waiting up to wait_ms (<0 forever). */
static int
chan_lock(struct chan *c, int64_t wait_ms, struct err *err)
{
	uint64_t until = wait_ms < 0 ? UINT64_MAX : clock_wall_ms() + (uint64_t)wait_ms;

	for (;;) {
		if (flock(c->lockfd, LOCK_EX | LOCK_NB) == 0)
			return 0;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return err_errno(err, ERR_TEMP, "lock of channel %s", c->ch.name);
		if (clock_wall_ms() >= until || quit_requested())
			return err_set(err, ERR_TEMP, "channel %s is driven by another sync-client",
				c->ch.name);
		{
			struct timespec ts = { 0, 100 * 1000 * 1000 };
			nanosleep(&ts, NULL);
		}
	}
}

/* <root>/run/sync-<chan>.allow-deletes: written by `castorctl sync
 * --allow-deletes CHAN [USER]` to release the parked users (USER alone:
 * "user=USER" in it) past the deletion thresholds for one pass; removed
 * after the pass that used it. */
static void
allow_marker_path(const struct chan *c, struct buf *out)
{
	buf_printf(out, "%s/run/sync-%s.allow-deletes", c->root, c->ch.name);
}

static bool
allow_marker_exists(const struct chan *c)
{
	struct buf p = BUF_INIT;
	bool r;

	allow_marker_path(c, &p);
	r = access(buf_cstr(&p), F_OK) == 0;
	buf_free(&p);
	return r;
}

static void
allow_marker_done(struct chan *c)
{
	struct buf p = BUF_INIT;

	if (!c->allow_once)
		return;
	allow_marker_path(c, &p);
	(void)unlink(buf_cstr(&p));
	buf_free(&p);
	c->allow_once = false;
	log_notice("allow-deletes pass done channel=%s: deletion thresholds apply again", c->ch.name);
}

/* <root>/run/sync-<chan>.verify: written by `castorctl sync --verify
 * CHAN` to ask for one anti-entropy pass now (after a user.db was changed
 * by hand, say).  Taken (removed) when the pass is scheduled: true then. */
static bool
verify_marker_take(const struct chan *c)
{
	struct buf p = BUF_INIT;
	bool r;

	buf_printf(&p, "%s/run/sync-%s.verify", c->root, c->ch.name);
	r = unlink(buf_cstr(&p)) == 0;
	buf_free(&p);
	return r;
}

/* ------------------------------------------------------------------ */
/* Parked users (syncpark.h)                                           */

static void
chan_park_save(struct chan *c)
{
	struct err err;

	if (syncpark_save(c->root, c->ch.name, &c->park, &err) < 0)
		log_error("cannot save the parked users channel=%s error=%s", c->ch.name,
			log_q(err.msg));
}

/* syncpush's skip hook: a parked user's hints are dropped, unless a
 * retry or release of it runs right now. */
static bool
chan_park_skip(void *ctx, const char *user)
{
	struct chan *c = ctx;
	struct syncpark_entry *e = syncpark_find(&c->park, user);

	return e != NULL && !e->trying;
}

/* syncpush's park hook: the replica refused a change of this user alone.
 * Logged by name when parked, then only at each (backed-off) retry that
 * fails again.  Saved before the cursor can move past its records. */
static void
chan_park_user(void *ctx, const char *user, const char *reason)
{
	struct chan *c = ctx;
	uint64_t now = clock_wall_ms();
	bool added;
	struct syncpark_entry *e = syncpark_add(&c->park, user, reason, now, c->park_retry_ms, &added);

	if (added) {
		log_error("USER PARKED channel=%s user=%s reason=%s retry_ms=%llu: the user's changes"
			" are held back, every other user goes on; release with castorctl sync"
			" --allow-deletes %s %s", c->ch.name, user, log_q(e->reason),
			(unsigned long long)e->backoff_ms, c->ch.name, user);
	} else {
		e->backoff_ms = e->backoff_ms >= PARK_RETRY_MAX_MS / 2 ? PARK_RETRY_MAX_MS :
			2 * e->backoff_ms;
		e->retry_ms = now + e->backoff_ms;
		syncpark_set_reason(e, reason);
		log_warn("user still parked channel=%s user=%s reason=%s retry_ms=%llu", c->ch.name,
			user, log_q(e->reason), (unsigned long long)e->backoff_ms);
	}
	e->trying = false;
	snprintf(c->last_error, sizeof(c->last_error), "user %s parked: %s", user, e->reason);
	c->last_error_ms = now;
	chan_park_save(c);
}

static bool
chan_park_due(const struct chan *c, uint64_t now)
{
	for (size_t i = 0; i < c->park.n; i++)
		if (c->park.v[i].retry_ms <= now)
			return true;
	return false;
}

/* Re-sync parked users in full: `only` (a release by name), every one
 * (all: a release of the channel), else those whose retry is due.  A
 * user that goes through without a refusal or an error is unparked.
 * 0, or -1 with err (session error: they stay parked, retried later). */
static int
chan_unpark(struct chan *c, const char *only, bool all, struct err *err)
{
	struct syncpush_batch *b = syncpush_batch_new();
	struct syncpush_stats s;
	uint64_t now = clock_wall_ms(), errors;
	size_t n = 0;
	int rc;

	for (size_t i = 0; i < c->park.n; i++) {
		struct syncpark_entry *e = &c->park.v[i];
		if (!(all || (only != NULL ? str_eq(e->user, only) : e->retry_ms <= now)))
			continue;
		e->trying = true;
		syncpush_batch_add_full(b, e->user);
		if (store_user_exists(c->st, e->user, err) == 0)
			syncpush_batch_add(b, SYNCLOG_UNUSER, e->user, NULL);   /* a user deletion */
		n++;
	}
	if (n == 0) {
		syncpush_batch_free(&b);
		return 0;
	}
	syncpush_stats(c->push, &s);
	errors = s.errors;
	rc = syncpush_run(c->push, b, err);
	syncpush_batch_free(&b);
	syncpush_stats(c->push, &s);
	for (size_t i = 0; i < c->park.n;) {
		struct syncpark_entry *e = &c->park.v[i];
		if (!e->trying) {
			i++;
			continue;
		}
		e->trying = false;
		if (rc == 0 && s.errors == errors) {
			log_notice("user unparked channel=%s user=%s parked_ms=%llu: re-synced in full",
				c->ch.name, e->user, (unsigned long long)(clock_wall_ms() - e->since_ms));
			syncpark_remove(&c->park, e->user);
			continue;
		}
		/* an error (not a refusal): the usual backoff, without a log line of ours */
		e->backoff_ms = e->backoff_ms >= PARK_RETRY_MAX_MS / 2 ? PARK_RETRY_MAX_MS :
			2 * e->backoff_ms;
		e->retry_ms = clock_wall_ms() + e->backoff_ms;
		i++;
	}
	chan_park_save(c);
	return rc;
}

/* A field of the allow-deletes marker (castorctl sync --allow-deletes |
 * --release CHAN [USER]): "user" (the user it names, "" for the whole
 * channel) or "deletes" ("no" from --release: the users are released
 * without the deletion allowance). */
static void
allow_marker_field(const struct chan *c, const char *key, char *out, size_t size)
{
	struct buf p = BUF_INIT, k = BUF_INIT;
	struct err err;
	char *data = NULL, *u;
	size_t len;

	out[0] = '\0';
	allow_marker_path(c, &p);
	buf_printf(&k, "\n%s=", key);
	if (atomicfile_read_all(buf_cstr(&p), 4096, &data, &len, &err) == 0 &&
	    (u = strstr(data, buf_cstr(&k))) != NULL) {
		u += k.len;
		u[strcspn(u, "\r\n")] = '\0';
		str_lcpy(out, u, size);
	}
	free(data);
	buf_free(&p);
	buf_free(&k);
}

static int chan_yield(void *ctx, struct err *err);

/* A replica's certificate renewed under a new CA: a CA file that changed
 * since the context was made (inode, size or time) is read again before
 * the next connection; one that does not load leaves the old context. */
static void
chan_tls_refresh(struct chan *c)
{
	struct err err = { 0 };
	struct tls_ctx *fresh;
	struct stat st;

	if (c->tls == NULL || c->ch.ca_file == NULL || stat(c->ch.ca_file, &st) < 0)
		return;
	if (st.st_ino == c->ca_st.st_ino && st.st_size == c->ca_st.st_size &&
	    st.st_mtim.tv_sec == c->ca_st.st_mtim.tv_sec && st.st_mtim.tv_nsec == c->ca_st.st_mtim.tv_nsec)
		return;
	fresh = tls_client_ctx_new(true, c->ch.ca_file, &err);
	if (fresh == NULL) {
		log_error("sync CA file reload failed, previous one kept channel=%s error=%s", c->ch.name,
			  log_q(err.msg));
		c->ca_st = st;  /* said once per change */
		return;
	}
	tls_ctx_free(&c->tls);
	c->tls = fresh;
	c->ca_st = st;
	log_info("sync CA file reloaded channel=%s file=%s", c->ch.name, log_q(c->ch.ca_file));
}

static int
chan_connect(struct chan *c, struct err *err)
{
	struct netaddr a;
	struct syncpush_login l;
	struct conn *cn;
	char spec[300];
	int fd;

	memset(&a, 0, sizeof(a));
	a.kind = NETADDR_TCP;
	str_lcpy(a.host, c->ch.host, sizeof(a.host));
	if (a.host[0] == '[') {
		size_t n = strlen(a.host);
		memmove(a.host, a.host + 1, n);
		if (n > 1 && a.host[n - 2] == ']')
			a.host[n - 2] = '\0';
	}
	a.port = (uint16_t)c->ch.port;
	snprintf(spec, sizeof(spec), "%s:%u", c->ch.host, c->ch.port);
	chan_state(c, "connecting");
	fd = net_connect(&a, (int)c->connect_ms, err);
	if (fd < 0)
		return -1;
	(void)net_set_nodelay(fd);
	cn = conn_new(fd, fd);
	/* a peer that accepts and never greets fails the login in
	 * sync_connect_timeout, not in the session's answer deadline */
	conn_set_read_timeout(cn, (int)c->connect_ms);
	conn_set_write_timeout(cn, (int)c->connect_ms);
	c->sess = syncsess_new(cn, false, NULL);
	syncsess_set_answer_hook(c->sess, chan_answered, c);
	c->push = syncpush_new(c->st, c->sess);
	syncpush_set_ae_yield(c->push, chan_yield, c);
	if (c->cf != NULL)
		syncpush_set_conflict_hook(c->push, syncconflict_hook, c->cf);
	if (c->parking)
		syncpush_set_park_hook(c->push, chan_park_user, chan_park_skip, c);
	memset(&l, 0, sizeof(l));
	l.host = c->ch.host;
	l.authname = c->ch.authname;
	l.password = c->ch.password;
	l.channel = c->ch.name;
	l.servername = conf_get_str(c->conf, "servername", "castor");
	l.tls = c->ch.tls;
	chan_tls_refresh(c);
	l.tls_ctx = c->tls;
	l.compress = c->ch.compress;
	c->allow_once = allow_marker_exists(c);
	l.allow_deletes = c->allow_deletes || c->allow_once;
	c->allow_user[0] = '\0';
	if (c->allow_once) {
		char deletes[8];
		allow_marker_field(c, "user", c->allow_user, sizeof(c->allow_user));
		allow_marker_field(c, "deletes", deletes, sizeof(deletes));
		if (str_eq(deletes, "no"))
			l.allow_deletes = c->allow_deletes;
		log_notice("parked users released for one pass channel=%s user=%s deletes_allowed=%s",
			c->ch.name, c->allow_user[0] ? c->allow_user : "*",
			l.allow_deletes ? "yes" : "no");
	}
	{
		struct syncpush_delete_limits dl;
		syncpush_delete_limits_default(&dl);
		dl.limit = (uint64_t)conf_get_int(c->conf, "sync_delete_limit", (int64_t)dl.limit);
		dl.fraction = conf_get_double(c->conf, "sync_delete_fraction", dl.fraction);
		dl.fraction_min = (uint64_t)conf_get_int(c->conf, "sync_delete_fraction_min",
			(int64_t)dl.fraction_min);
		dl.user_limit = (uint64_t)conf_get_int(c->conf, "sync_user_delete_limit",
			(int64_t)dl.user_limit);
		syncpush_set_delete_limits(c->push, &dl);
	}
	if (syncpush_login(c->push, &l, err) < 0) {
		err_prefix(err, "%s", spec);
		chan_disconnect(c, false);
		return -1;
	}
	conn_set_read_timeout(cn, (int)c->answer_ms);
	conn_set_write_timeout(cn, (int)c->answer_ms);
	c->heard_wire = 0;
	chan_heard(c);
	log_info("connected channel=%s replica=%s tls=%d compress=%d", c->ch.name, spec,
		conn_is_tls(cn) ? 1 : 0, syncsess_compressed(c->sess) ? 1 : 0);
	chan_state(c, "connected");
	c->last_io_ms = clock_wall_ms();
	c->backoff_ms = BACKOFF_MIN_MS;
	return 0;
}

/* Anti-entropy, then the cursor jump of RULE 2.  0 or -1 (session error). */
static int
chan_anti_entropy(struct chan *c, struct err *err)
{
	struct synclog_pos e0;
	uint64_t log_id = 0, errors_before;
	struct syncpush_stats s;
	size_t differ = 0;
	uint64_t t0 = clock_wall_ms();

	if (synclog_end(c->root, &e0, err) < 0)
		return -1;
	if (e0.seg != 0 && synclog_segment_log_id(c->root, e0.seg, &log_id, err) != 1)
		log_id = 0;
	{
		struct buf mp = BUF_INIT;
		struct stat sb;
		synchook_failed_marker(c->root, &mp);
		if (stat(buf_cstr(&mp), &sb) == 0)
			c->marker_seen_ms = (uint64_t)sb.st_mtim.tv_sec * 1000 + (uint64_t)sb.st_mtim.tv_nsec / 1000000;
		buf_free(&mp);
	}
	syncpush_stats(c->push, &s);
	errors_before = s.errors;
	log_info("anti-entropy start channel=%s reason=%s", c->ch.name,
		c->ae_reason != NULL ? c->ae_reason : "none");
	/* a gap met while the pass serves the live log (chan_yield) asks
	 * for another pass */
	c->need_ae = false;
	if (syncpush_anti_entropy(c->push, &differ, err) < 0) {
		c->need_ae = true;
		return -1;
	}
	syncpush_stats(c->push, &s);
	c->last_ae_ms = clock_wall_ms();
	c->next_verify_ms = c->last_ae_ms + c->verify_ms;
	{
		size_t compared = 0, opened = 0;
		syncpush_ae_counts(c->push, &compared, &opened);
		c->ae_passes++;
		c->ae_last_ms = c->last_ae_ms - t0;
		c->ae_compared = compared;
		c->ae_opened = opened;
	}
	log_info("anti-entropy done channel=%s reason=%s users_compared=%llu users_differing=%zu"
		" user_dbs_opened=%llu ms=%llu", c->ch.name, c->ae_reason != NULL ? c->ae_reason : "none",
		(unsigned long long)c->ae_compared, differ, (unsigned long long)c->ae_opened,
		(unsigned long long)c->ae_last_ms);
	status_write(c, true);
	if (s.errors == errors_before)
		peer_save(c);
	if (s.errors == errors_before && synclog_pos_cmp(&e0, &c->acked) > 0) {
		/* everything before e0 was compared: follow the log from there */
		log_info("cursor moved to the log end after anti-entropy channel=%s", c->ch.name);
		c->acked = e0;
		c->acked_log_id = log_id;
		c->dirty = true;
		if (c->detached) {
			c->detached = false;
			log_notice("channel reattached channel=%s", c->ch.name);
		}
		if (chan_reader_open(c, &c->acked, log_id, -1, err) < 0)
			return -1;
		(void)chan_save(c, true, err);
	} else if (c->detached && s.errors == errors_before) {
		c->detached = false;
		c->dirty = true;
		(void)chan_save(c, true, err);
	}
	return 0;
}

/* Read the next batch into c->recs if none is in hand.  0, or -1. */
static int
chan_fill(struct chan *c, struct err *err)
{
	size_t n = 0;
	int rc;

	if (c->nrecs > 0 || c->detached)
		return 0;
	rc = synclog_reader_next(c->rd, c->recs, BATCH_MAX, BATCH_BYTES, &n, err);
	if (rc < 0)
		return -1;
	c->nrecs = n;
	c->batch_end = synclog_reader_pos(c->rd);
	c->at_end = rc == 0;
	if (synclog_reader_gap(c->rd)) {
		chan_want_ae(c, "log-gap");
		synclog_reader_clear_gap(c->rd);
	}
	if (n == 0 && synclog_pos_cmp(&c->batch_end, &c->acked) > 0) {
		/* skipped bytes only: nothing to replicate up to here */
		c->acked = c->batch_end;
		c->acked_log_id = synclog_reader_log_id(c->rd);
		c->dirty = true;
	}
	return 0;
}

/* Send the batch in hand.  0, or -1 with err (session). */
static int
chan_push(struct chan *c, struct err *err)
{
	struct syncpush_batch *b;
	int rc;

	if (c->nrecs == 0)
		return 0;
	b = syncpush_batch_new();
	for (size_t i = 0; i < c->nrecs; i++)
		syncpush_batch_add(b, c->recs[i].type, c->recs[i].user, c->recs[i].uniqueid);
	if (FAILPOINT("sync.client.before_batch") < 0) {
		syncpush_batch_free(&b);
		return err_set(err, ERR_TEMP, "failpoint sync.client.before_batch");
	}
	rc = syncpush_run(c->push, b, err);
	syncpush_batch_free(&b);
	if (rc < 0)
		return -1;
	c->batches++;
	c->last_io_ms = clock_wall_ms();
	c->acked = c->batch_end;
	c->acked_log_id = synclog_reader_log_id(c->rd);
	c->acked_count += c->nrecs;
	c->nrecs = 0;
	c->dirty = true;
	if (c->at_end && !c->live)
		log_info("caught up channel=%s", c->ch.name);
	c->live = c->at_end || c->live;
	chan_ack_write(c);
	return 0;
}

/* ms until the next heartbeat is due (0: now): sync_heartbeat after the
 * last exchange with the replica. */
static uint64_t
chan_heartbeat_due(struct chan *c, uint64_t now)
{
	uint64_t last;

	chan_heard(c);
	last = c->last_io_ms > c->heard_ms ? c->last_io_ms : c->heard_ms;
	return last + c->hb_ms > now ? last + c->hb_ms - now : 0;
}

/* RULE 3a: one NOOP round trip whose answer must come before the
 * replica has been silent for sync_heartbeat_timeout.  0, or -1 with
 * err (the channel is to be dropped). */
static int
chan_heartbeat(struct chan *c, struct err *err)
{
	struct conn *cn = syncsess_conn(c->sess);
	uint64_t t0 = clock_wall_ms(), left;
	int rc;

	chan_heard(c);
	left = c->heard_ms + c->dead_ms > t0 ? c->heard_ms + c->dead_ms - t0 : 0;
	if (left < c->hb_ms)
		left = c->hb_ms;
	conn_set_read_timeout(cn, (int)left);
	conn_set_write_timeout(cn, (int)left);
	rc = syncpush_noop(c->push, err);
	conn_set_read_timeout(cn, (int)c->answer_ms);
	conn_set_write_timeout(cn, (int)c->answer_ms);
	c->last_io_ms = clock_wall_ms();
	if (rc < 0) {
		if (err->kind == ERR_TEMP && c->last_io_ms - t0 + 50 >= left) {
			log_warn("replica silent channel=%s: no answer to a heartbeat for %llu ms"
				" (sync_heartbeat_timeout=%llu ms)", c->ch.name,
				(unsigned long long)(c->last_io_ms - c->heard_ms),
				(unsigned long long)c->dead_ms);
			err_prefix(err, "replica silent (no heartbeat answer for %llu ms)",
				(unsigned long long)(c->last_io_ms - c->heard_ms));
		}
		return -1;
	}
	chan_ack_write(c);   /* heard: the writers see a live channel */
	return 0;
}

/* Between two slices of an anti-entropy pass: send what the live log
 * holds (RULE 2), so a pass never delays it by more than a slice. */
static int
chan_yield(void *ctx, struct err *err)
{
	struct chan *c = ctx;

	for (int i = 0; i < 16 && !c->detached; i++) {
		if (chan_fill(c, err) < 0)
			return 0;   /* a read problem: the main loop reports it */
		if (c->nrecs == 0)
			break;
		if (chan_push(c, err) < 0)
			return -1;
	}
	(void)chan_save(c, false, err);
	status_write(c, false);
	return 0;
}

/* After a reconnect with records behind (RULE 2): everything the log
 * holds from the cursor on, as one plan per user named in it (GET USER,
 * the per-mailbox checksums), CATCHUP_USERS users at a time, so the
 * deletion thresholds judge the whole backlog at once as a pass would
 * (one batch read while the replica was away held only a part of it).
 * 0, or -1 with err (session). */
#define CATCHUP_USERS 4096

static int
chan_catchup(struct chan *c, struct err *err)
{
	struct syncpush_batch *b;
	int rc;

	c->nrecs = 0;
	if (chan_reader_open(c, &c->acked, c->acked_log_id, -1, err) < 0)
		return -1;
	b = syncpush_batch_new();
	for (;;) {
		if (chan_fill(c, err) < 0) {
			syncpush_batch_free(&b);
			return -1;
		}
		for (size_t i = 0; i < c->nrecs; i++) {
			if (c->recs[i].type == SYNCLOG_UNUSER)
				syncpush_batch_add(b, SYNCLOG_UNUSER, c->recs[i].user, NULL);
			else
				syncpush_batch_add_full(b, c->recs[i].user);
		}
		c->acked_count += c->nrecs;
		c->nrecs = 0;
		if (c->at_end || c->need_ae || c->detached ||
		    syncpush_batch_users(b) >= CATCHUP_USERS)
			break;
	}
	c->catchup = !c->at_end && !c->need_ae && !c->detached;
	log_info("catching up channel=%s users=%zu", c->ch.name, syncpush_batch_users(b));
	rc = syncpush_run(c->push, b, err);
	syncpush_batch_free(&b);
	if (rc < 0) {
		c->catchup = true;
		/* the records read stay unacknowledged: read them again */
		(void)chan_reader_open(c, &c->acked, c->acked_log_id, -1, err);
		return -1;
	}
	c->batches++;
	c->last_io_ms = clock_wall_ms();
	c->acked = c->batch_end;
	c->acked_log_id = synclog_reader_log_id(c->rd);
	c->dirty = true;
	(void)syncstat_ack_write(c->ackfd, &c->acked, c->acked_log_id, c->live);
	return 0;
}

/* Classify a session error: log it, disconnect, set the backoff. */
static void
chan_fail(struct chan *c, const struct err *err)
{
	chan_disconnect(c, false);
	chan_error(c, err);
	if (err->kind == ERR_FENCED) {
		log_error("CHANNEL FENCED channel=%s: %s (not retrying; restart sync-client after"
			" fixing roles)", c->ch.name, err->msg);
		chan_state(c, "fenced");
		c->next_connect_ms = UINT64_MAX;
		return;
	}
	if (err->kind == ERR_PERM) {
		log_error("channel refused channel=%s error=%s", c->ch.name, log_q(err->msg));
		chan_state(c, "refused");
		c->next_connect_ms = clock_wall_ms() + BACKOFF_PERM_MS;
		return;
	}
	log_warn("channel down channel=%s error=%s retry_ms=%llu", c->ch.name, log_q(err->msg),
		(unsigned long long)c->backoff_ms);
	chan_state(c, "disconnected");
	c->next_connect_ms = clock_wall_ms() + c->backoff_ms;
	c->backoff_ms *= 2;
	if (c->backoff_ms > BACKOFF_MAX_MS)
		c->backoff_ms = BACKOFF_MAX_MS;
}

static bool
marker_changed(struct chan *c)
{
	struct buf mp = BUF_INIT;
	struct stat sb;
	bool changed = false;

	synchook_failed_marker(c->root, &mp);
	if (stat(buf_cstr(&mp), &sb) == 0) {
		uint64_t m = (uint64_t)sb.st_mtim.tv_sec * 1000 + (uint64_t)sb.st_mtim.tv_nsec / 1000000;
		changed = m != c->marker_seen_ms;
	}
	buf_free(&mp);
	return changed;
}

/* After a connect (RULE 2): resume from the cursor unless a pass is
 * due.  A replica of another epoch, or one written by anything but its
 * master since the last pass (LOCALGEN moved: a promotion, castorctl or
 * a tool on it), may hold anything: it gets a pass. */
static void
chan_resume(struct chan *c)
{
	c->pend_epoch = syncpush_peer_epoch(c->push);
	c->pend_gen = syncpush_peer_local_gen(c->push);
	if (!c->peer_known)
		chan_want_ae(c, "replica-unknown");
	else if (c->pend_epoch != c->peer_epoch)
		chan_want_ae(c, "replica-epoch");
	else if (c->pend_gen != c->peer_gen)
		chan_want_ae(c, "replica-written");
	if (c->allow_once && !c->allow_user[0])
		chan_want_ae(c, "allow-deletes");   /* the released pass of the channel */
	if (c->need_ae)
		return;
	c->resumes++;
	{
		uint64_t behind = 0;
		struct err e2;
		c->catchup = c->nrecs > 0 ||
			(synclog_bytes_behind(c->root, &c->acked, &behind, &e2) == 0 && behind > 0);
	}
	log_info("resumed from cursor channel=%s cursor=%llu:%llu backlog=%d", c->ch.name,
		(unsigned long long)c->acked.seg, (unsigned long long)c->acked.off, c->catchup ? 1 : 0);
}

/* <root>/run/sync-<chan>.running: present while a rolling sync-client
 * runs; left behind by one that did not stop cleanly (RULE 2). */
static void
running_marker_path(const struct chan *c, struct buf *out)
{
	buf_printf(out, "%s/run/sync-%s.running", c->root, c->ch.name);
}

/* ------------------------------------------------------------------ */
/* Rolling                                                             */

/* Start-up: a running marker left behind means the last sync-client
 * did not stop cleanly (anti-entropy); leave ours. */
static void
rolling_mark_running(struct chan *c, const char *name)
{
	struct buf mp = BUF_INIT;
	int fd;

	running_marker_path(c, &mp);
	if (access(buf_cstr(&mp), F_OK) == 0) {
		log_info("the last sync-client did not stop cleanly channel=%s: anti-entropy",
			name);
		chan_want_ae(c, "unclean-stop");
	}
	fd = open(buf_cstr(&mp), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
	if (fd >= 0)
		close(fd);
	buf_free(&mp);
}

/* castorctl sync --allow-deletes asked: reconnect now, for a session
 * that allows them. */
static void
rolling_allow_asked(struct chan *c, uint64_t now)
{
	if (!c->allow_once && (c->push != NULL || (c->state != NULL && str_eq(c->state, "refused") &&
	    c->next_connect_ms != UINT64_MAX)) && allow_marker_exists(c)) {
		/* castorctl sync --allow-deletes: a session that allows
		 * them (a channel that is down keeps its backoff) */
		if (c->push != NULL) {
			chan_disconnect(c, true);
			chan_state(c, "disconnected");
		}
		c->next_connect_ms = now;
	}
}

/* Connect when due, unless this server is not a master. */
static void
rolling_connect(struct chan *c, struct store *st, const char *name, uint64_t now)
{
	const char *role;
	uint64_t epoch;
	struct err err;

	if (store_server_get(st, &role, &epoch, &err) == 0 && !str_eq(role, "master")) {
		/* a replica's channel back to its master: idle, and
		 * look again soon (a promotion starts it at once) */
		if (c->state == NULL || !str_eq(c->state, "idle-replica"))
			log_info("idle: this server is a %s, not pushing channel=%s", role,
				name);
		chan_state(c, "idle-replica");
		c->next_connect_ms = now + IDLE_ROLE_MS;
	} else if (chan_connect(c, &err) < 0) {
		chan_fail(c, &err);
	} else {
		chan_resume(c);   /* RULE 2 */
	}
}

/* A connected session with an allowance: release the parked users it
 * names (or all, and one anti-entropy pass for the channel), then
 * reconnect without it.  Call only with c->push and c->allow_once. */
static void
rolling_allow_release(struct chan *c)
{
	struct err err;

	if (chan_unpark(c, c->allow_user[0] ? c->allow_user : NULL, !c->allow_user[0],
		&err) < 0 || (!c->allow_user[0] && chan_anti_entropy(c, &err) < 0)) {
		chan_fail(c, &err);
		return;
	}
	allow_marker_done(c);
	chan_disconnect(c, true);
	chan_state(c, "disconnected");
	c->next_connect_ms = clock_wall_ms();
}

/* The work of a round: anti-entropy when wanted, parked users due,
 * catch-up, then read the log and push a batch.  true: go round again
 * at once (a failure, or more may be waiting). */
static bool
rolling_work(struct chan *c, const char *name, uint64_t now)
{
	struct err err;

	if (c->push != NULL && !c->need_ae && now >= c->next_verify_ms)
		chan_want_ae(c, "scheduled");
	if (c->push != NULL && !c->need_ae && marker_changed(c))
		chan_want_ae(c, "append-failed");
	if (c->push != NULL && verify_marker_take(c))
		chan_want_ae(c, "operator");
	if (c->push != NULL && c->need_ae) {
		if (chan_anti_entropy(c, &err) < 0) {
			chan_fail(c, &err);
			return true;
		}
	}
	if (c->push != NULL && chan_park_due(c, now) && chan_unpark(c, NULL, false, &err) < 0) {
		chan_fail(c, &err);
		return true;
	}
	if (c->push != NULL && c->catchup && !c->need_ae) {
		if (chan_catchup(c, &err) < 0) {
			chan_fail(c, &err);
			return true;
		}
		status_write(c, false);
	}
	if (chan_fill(c, &err) < 0) {
		log_error("sync log read failed channel=%s error=%s", name, log_q(err.msg));
		chan_error(c, &err);
	}
	if (c->push != NULL && c->nrecs > 0) {
		if (chan_push(c, &err) < 0) {
			chan_fail(c, &err);
			return true;
		}
		if (chan_save(c, false, &err) < 0)
			chan_save_failed(c, "", &err);
		status_write(c, false);
		return true;   /* more may be waiting */
	}
	if (c->push != NULL && c->at_end && c->nrecs == 0 && !c->live) {
		c->live = true;
		chan_ack_write(c);
	}
	return false;
}

/* A burst of batches (a catch-up, a fill of many users) leaves the heap
 * large and mostly free; glibc keeps it.  Once idle after batches, at most
 * every TRIM_EVERY_MS, give the free pages back (measured: 3,000 users of
 * 20 messages left 28 MB resident of which 8 MB in use; trimmed, 17 MB). */
static void
rolling_trim(struct chan *c)
{
	uint64_t now = clock_wall_ms();

	if (c->batches == c->trim_batches || now - c->trim_ms < TRIM_EVERY_MS)
		return;
	c->trim_batches = c->batches;
	c->trim_ms = now;
	(void)malloc_trim(0);
}

/* Idle: save, report, heartbeat.  false when the heartbeat failed. */
static bool
rolling_idle(struct chan *c)
{
	struct err err;

	if (chan_save_every(c, false, SAVE_IDLE_MS, &err) < 0)
		chan_save_failed(c, "", &err);
	status_write(c, false);
	rolling_trim(c);
	if (c->push != NULL && chan_heartbeat_due(c, clock_wall_ms()) == 0 &&
	    chan_heartbeat(c, &err) < 0) {
		chan_fail(c, &err);
		return false;
	}
	return true;
}

/* How long the idle wait may last: the next heartbeat, cursor save or
 * connect, at most STATUS_EVERY_MS. */
static int
rolling_timeout(struct chan *c, uint64_t now)
{
	int timeout = STATUS_EVERY_MS;

	if (c->push != NULL) {
		uint64_t w = chan_heartbeat_due(c, clock_wall_ms());
		if (w < (uint64_t)timeout)
			timeout = (int)w;
	}
	if (c->dirty) {
		uint64_t due = c->last_save_ms + SAVE_IDLE_MS, t = clock_wall_ms();
		if (due < c->next_save_ms)
			due = c->next_save_ms;   /* backing off after a failed save */
		if (due <= t)
			timeout = 0;
		else if (due - t < (uint64_t)timeout)
			timeout = (int)(due - t);
	}
	if (c->push == NULL && c->next_connect_ms != UINT64_MAX) {
		uint64_t w = c->next_connect_ms > now ? c->next_connect_ms - now : 0;
		if (w < (uint64_t)timeout)
			timeout = (int)w;
	}
	/* (a parked user's retry is looked at within STATUS_EVERY_MS) */
	return timeout;
}

/* Wait for the log, a signal or the replica (which may speak unasked). */
static void
rolling_wait(struct chan *c, int timeout)
{
	struct pollfd pf[3];
	struct err err;
	int np = 0;

	pf[np].fd = signals_fd();
	pf[np].events = POLLIN;
	np++;
	if (c->nrecs == 0 && synclog_reader_fd(c->rd) >= 0) {
		pf[np].fd = synclog_reader_fd(c->rd);
		pf[np].events = POLLIN;
		np++;
	} else if (c->nrecs == 0 && timeout > 5) {
		/* no inotify instance left (synclog.c logged it):
		 * look at the log every 5 ms */
		timeout = 5;
	}
	if (c->push != NULL) {
		pf[np].fd = conn_rfd(syncsess_conn(c->sess));
		pf[np].events = POLLIN;
		np++;
	}
	for (int i = 0; i < np; i++)
		pf[i].revents = 0;
	if (poll(pf, (nfds_t)np, timeout) > 0) {
		if (np > 1 && pf[1].fd == synclog_reader_fd(c->rd) && (pf[1].revents & POLLIN))
			(void)synclog_reader_wait(c->rd, 0, &err);
		if (c->push != NULL && (pf[np - 1].revents & (POLLIN | POLLHUP | POLLERR))) {
			/* the replica spoke unasked: a BYE, or it closed */
			if (syncpush_noop(c->push, &err) < 0)
				chan_fail(c, &err);
		}
	}
}

/* SIGQUIT: the batch in hand was finished; save the cursor, remove the
 * running marker if that worked, report and close. */
static int
rolling_stop(struct chan *c, const char *name)
{
	struct err err;
	int rc = 0;

	if (chan_save(c, true, &err) < 0) {
		log_error("cursor save failed at exit channel=%s error=%s", name, log_q(err.msg));
		rc = EXIT_PROBLEMS;
	}
	if (rc == 0) {
		struct buf mp = BUF_INIT;
		running_marker_path(c, &mp);
		(void)unlink(buf_cstr(&mp));
		buf_free(&mp);
	}
	chan_state(c, "stopped");
	chan_disconnect(c, true);
	status_write(c, true);
	log_info("stopped channel=%s cursor=%llu:%llu", name, (unsigned long long)c->acked.seg,
		(unsigned long long)c->acked.off);
	chan_close(c);
	return rc;
}

static int
run_rolling(const struct conf *conf, struct store *st, const char *name, bool allow_deletes)
{
	struct chan c;
	struct err err;

	if (chan_open(&c, conf, st, name, -1, &err) < 0) {
		log_error("channel %s: %s", name, err.msg);
		return EXIT_CONFIG;
	}
	c.allow_deletes = allow_deletes;
	c.parking = true;
	if (chan_lock(&c, -1, &err) < 0) {
		log_error("%s", err.msg);
		chan_close(&c);
		return quit_requested() ? 0 : EXIT_UNAVAILABLE;
	}
	log_info("rolling channel=%s replica=%s:%u cursor=%llu:%llu", name, c.ch.host, c.ch.port,
		(unsigned long long)c.acked.seg, (unsigned long long)c.acked.off);
	rolling_mark_running(&c, name);
	for (;;) {
		uint64_t now;

		if (quit_requested())
			break;
		now = clock_wall_ms();
		rolling_allow_asked(&c, now);
		if (c.push == NULL && now >= c.next_connect_ms)
			rolling_connect(&c, st, name, now);
		if (c.push != NULL && c.allow_once) {
			rolling_allow_release(&c);
			continue;
		}
		if (rolling_work(&c, name, now))
			continue;
		/* idle: save, report, wait for the log, a signal or the replica */
		if (!rolling_idle(&c))
			continue;
		rolling_wait(&c, rolling_timeout(&c, now));
	}
	/* SIGQUIT: the batch in hand was finished above; save and go */
	return rolling_stop(&c, name);
}

/* ------------------------------------------------------------------ */
/* Drain                                                               */

/* Nothing behind: the durable cursor is usable (no gap, not detached,
 * no failed-append marker since it was saved) and already at the log's
 * end, so the drain is done without a connection (the replica may be
 * stopping at the same moment as we are). */
static bool
drain_at_end(struct chan *c)
{
	struct synclog_pos end;
	struct err err;

	if (c->need_ae || c->detached || marker_changed(c))
		return false;
	return synclog_end(c->root, &end, &err) == 0 && synclog_pos_cmp(&c->acked, &end) >= 0;
}

/* Parked users do not hold the drain: each is named, and the exit status
 * (rc when it is already an error, else EXIT_PARKED) says that someone
 * was left behind. */
static int
drain_parked(const struct chan *c, const char *name, int rc)
{
	for (size_t i = 0; i < c->park.n; i++)
		log_error("drain: user left behind channel=%s user=%s reason=%s since_ms=%llu"
			" (parked; release with castorctl sync --allow-deletes %s %s)", name,
			c->park.v[i].user, log_q(c->park.v[i].reason),
			(unsigned long long)c->park.v[i].since_ms, name, c->park.v[i].user);
	return c->park.n > 0 && rc == 0 ? EXIT_PARKED : rc;
}

static int
drain_channel(const struct conf *conf, struct store *st, const char *name, uint64_t deadline,
	bool allow_deletes)
{
	struct chan c;
	struct err err;
	int rc = EXIT_UNAVAILABLE;

	if (chan_open(&c, conf, st, name, 0, &err) < 0) {
		log_error("drain: channel %s: %s", name, err.msg);
		return EXIT_CONFIG;
	}
	c.allow_deletes = allow_deletes;
	c.parking = true;
	if (chan_lock(&c, (int64_t)(deadline - clock_wall_ms()), &err) < 0) {
		log_error("drain: %s", err.msg);
		chan_close(&c);
		return EXIT_UNAVAILABLE;
	}
	if (drain_at_end(&c)) {
		log_info("drain complete channel=%s cursor=%llu:%llu nothing behind", name,
			(unsigned long long)c.acked.seg, (unsigned long long)c.acked.off);
		rc = drain_parked(&c, name, 0);
	}
	while (rc == EXIT_UNAVAILABLE && clock_wall_ms() < deadline && !quit_requested()) {
		struct synclog_pos end;

		if (c.push == NULL) {
			if (clock_wall_ms() < c.next_connect_ms) {
				struct timespec ts = { 0, 20 * 1000 * 1000 };
				nanosleep(&ts, NULL);
				continue;
			}
			if (chan_connect(&c, &err) < 0) {
				chan_fail(&c, &err);
				if (err.kind == ERR_FENCED) {
					rc = EXIT_FENCED;
					break;
				}
				continue;
			}
			/* a reconnect alone does not need a full pass in a drain:
			 * only a gap, a detached or unreadable cursor, a failed
			 * append (chan_open and chan_fill set need_ae for those) */
			if (marker_changed(&c))
				chan_want_ae(&c, "append-failed");
		}
		if (c.need_ae && chan_anti_entropy(&c, &err) < 0) {
			chan_fail(&c, &err);
			continue;
		}
		if (c.detached) {
			log_error("drain: channel=%s stays detached (anti-entropy had errors: %s)", name,
				log_q(c.last_error));
			rc = EXIT_PROBLEMS;
			break;
		}
		if (chan_fill(&c, &err) < 0) {
			log_error("drain: log read failed channel=%s error=%s", name, log_q(err.msg));
			break;
		}
		if (c.need_ae)
			continue;
		if (c.nrecs > 0) {
			if (chan_push(&c, &err) < 0) {
				chan_fail(&c, &err);
				if (err.kind == ERR_FENCED) {
					rc = EXIT_FENCED;
					break;
				}
				continue;
			}
			(void)chan_save(&c, false, &err);
			continue;
		}
		if (!c.at_end)
			continue;
		if (chan_save(&c, true, &err) < 0) {
			log_error("drain: cursor save failed channel=%s error=%s", name, log_q(err.msg));
			break;
		}
		if (synclog_end(c.root, &end, &err) == 0 && synclog_pos_cmp(&c.acked, &end) >= 0) {
			struct syncpush_stats t;
			chan_totals(&c, &t);
			log_info("drain complete channel=%s cursor=%llu:%llu batches=%llu records=%llu"
				" uploads=%llu errors=%llu", name, (unsigned long long)c.acked.seg,
				(unsigned long long)c.acked.off, (unsigned long long)c.batches,
				(unsigned long long)t.records, (unsigned long long)t.uploads,
				(unsigned long long)t.errors);
			rc = drain_parked(&c, name, t.errors > 0 ? EXIT_PROBLEMS : 0);
			break;
		}
	}
	if (rc == EXIT_UNAVAILABLE)
		log_error("drain did not finish channel=%s cursor=%llu:%llu last_error=%s", name,
			(unsigned long long)c.acked.seg, (unsigned long long)c.acked.off,
			log_q(c.last_error));
	chan_state(&c, rc == 0 ? "stopped" : "disconnected");
	chan_disconnect(&c, true);
	status_write(&c, true);
	chan_close(&c);
	return rc;
}

static int
run_drain(const struct conf *conf, const char *root, const char *only, int64_t timeout_s,
	bool allow_deletes)
{
	size_t n = 0;
	char **names = syncchan_names(conf, &n);
	pid_t *pids;
	int worst = 0;
	uint64_t deadline = clock_wall_ms() + (uint64_t)timeout_s * 1000;

	if (only != NULL) {
		conf_list_free(names);
		names = xcalloc(2, sizeof(char *));
		names[0] = xstrdup(only);
		n = 1;
	}
	if (n == 0) {
		log_info("drain: no channels configured");
		conf_list_free(names);
		return 0;
	}
	/* one child per channel: a dead replica must not hold up the others */
	pids = xcalloc(n, sizeof(*pids));
	for (size_t i = 0; i < n; i++) {
		pids[i] = fork();
		if (pids[i] == 0) {
			struct store_opts o;
			struct store *st;
			struct err err;
			int rc;
			store_opts_from_conf(&o, conf);
			o.read_only = true;
			st = store_open(root, &o, &err);
			if (st == NULL) {
				log_error("drain: cannot open the store: %s", err.msg);
				_exit(EXIT_CONFIG);
			}
			rc = drain_channel(conf, st, names[i], deadline, allow_deletes);
			store_close(&st);
			_exit(rc);
		}
		if (pids[i] < 0) {
			log_error("drain: fork failed");
			worst = EXIT_UNAVAILABLE;
		}
	}
	for (size_t i = 0; i < n; i++) {
		int status = 0;
		if (pids[i] <= 0)
			continue;
		while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR)
			;
		if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			int code = WIFEXITED(status) ? WEXITSTATUS(status) : EXIT_UNAVAILABLE;
			log_error("drain failed channel=%s status=%d", names[i], code);
			if (worst == 0 || code == EXIT_FENCED)
				worst = code;
		}
	}
	free(pids);
	conf_list_free(names);
	if (worst == 0)
		log_info("drain: every channel is at the end of the log");
	return worst;
}

/* ------------------------------------------------------------------ */
/* One-shot: -u, -m, -A                                                */

static int
run_once(const struct conf *conf, struct store *st, const char *name, char mode, char **args,
	int nargs, bool allow_deletes)
{
	struct chan c;
	struct err err;
	struct syncpush_stats s;
	int rc;

	if (chan_open(&c, conf, st, name, -1, &err) < 0) {
		fprintf(stderr, "%s: channel %s: %s\n", prog, name, err.msg);
		return EXIT_CONFIG;
	}
	c.allow_deletes = allow_deletes;
	if (chan_connect(&c, &err) < 0) {
		fprintf(stderr, "%s: channel %s: %s\n", prog, name, err.msg);
		chan_close(&c);
		return err.kind == ERR_FENCED ? EXIT_FENCED : EXIT_UNAVAILABLE;
	}
	if (mode == 'A') {
		rc = syncpush_all_users(c.push, &err);
	} else {
		struct syncpush_batch *b = syncpush_batch_new();
		if (mode == 'u') {
			for (int i = 0; i < nargs; i++)
				syncpush_batch_add_full(b, args[i]);
		} else {
			struct store_user *u = store_user_open(st, args[0], &err);
			struct store_mailbox mb;
			if (u == NULL || store_mailbox_get(u, args[1], &mb, &err) < 0) {
				fprintf(stderr, "%s: %s %s: %s\n", prog, args[0], args[1], err.msg);
				store_user_close(&u);
				syncpush_batch_free(&b);
				chan_close(&c);
				return EXIT_PROBLEMS;
			}
			store_user_close(&u);
			syncpush_batch_add(b, SYNCLOG_MAILBOX, args[0], mb.uniqueid);
		}
		rc = syncpush_run(c.push, b, &err);
		syncpush_batch_free(&b);
	}
	if (rc < 0) {
		fprintf(stderr, "%s: channel %s: %s\n", prog, name, err.msg);
		chan_close(&c);
		return err.kind == ERR_FENCED ? EXIT_FENCED : EXIT_UNAVAILABLE;
	}
	syncpush_stats(c.push, &s);
	printf("channel %s: users=%llu mailboxes=%llu records=%llu uploads=%llu upload_bytes=%llu"
		" wire_out=%llu wire_in=%llu errors=%llu\n", name, (unsigned long long)s.users,
		(unsigned long long)s.mailboxes, (unsigned long long)s.records,
		(unsigned long long)s.uploads, (unsigned long long)s.upload_bytes,
		(unsigned long long)syncsess_wire_out(c.sess), (unsigned long long)syncsess_wire_in(c.sess),
		(unsigned long long)s.errors);
	rc = s.errors > 0 ? EXIT_PROBLEMS : 0;
	for (int k = 0; k < SYNCPUSH_C_COUNT; k++)
		if (s.conflicts[k] > 0) {
			printf("channel %s: conflicts %s=%llu\n", name,
				syncpush_conflict_name((enum syncpush_conflict_kind)k),
				(unsigned long long)s.conflicts[k]);
			rc = EXIT_PROBLEMS;
		}
	chan_close(&c);
	return rc;
}

/* ------------------------------------------------------------------ */

static void
usage(FILE *f)
{
	fprintf(f,
		"usage: %s [-C castor.conf] -r -n CHAN            rolling replication (castord DAEMON)\n"
		"       %s [-C castor.conf] --drain [-n CHAN] [--timeout SEC]\n"
		"       %s [-C castor.conf] [-n CHAN] -u USER...  full sync of users\n"
		"       %s [-C castor.conf] [-n CHAN] -m USER MAILBOX\n"
		"       %s [-C castor.conf] [-n CHAN] -A          full sync of every user\n"
		"options: --allow-deletes  -v (debug)\n", prog, prog, prog, prog, prog);
}

/* What the command line asked for. */
struct cli_args {
	const char *confpath, *chan;
	char mode;
	bool allow_deletes, verbose;
	int64_t timeout_s;
};

/* The options and their combination.  -1 to go on, else the exit code
 * (usage printed). */
static int
main_parse_args(int argc, char **argv, struct cli_args *a)
{
	static const struct option longopts[] = {
		{ "drain", no_argument, NULL, 'D' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "allow-deletes", no_argument, NULL, 'X' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int opt;

	while ((opt = getopt_long(argc, argv, "C:rn:uAmvh", longopts, NULL)) != -1) {
		switch (opt) {
		case 'C':
			a->confpath = optarg;
			break;
		case 'r':
		case 'u':
		case 'A':
		case 'm':
		case 'D':
			if (a->mode != 0 && a->mode != opt) {
				usage(stderr);
				return EXIT_USAGE;
			}
			a->mode = (char)opt;
			break;
		case 'n':
			a->chan = optarg;
			break;
		case 'T':
			if (str_to_i64_range(optarg, 1, 86400, &a->timeout_s) < 0) {
				fprintf(stderr, "%s: --timeout wants seconds\n", prog);
				return EXIT_USAGE;
			}
			break;
		case 'X':
			a->allow_deletes = true;
			break;
		case 'v':
			a->verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (a->mode == 0 || (a->mode == 'r' && a->chan == NULL) || (a->mode == 'u' && optind >= argc) ||
	    (a->mode == 'm' && argc - optind != 2) ||
	    ((a->mode == 'r' || a->mode == 'A' || a->mode == 'D') && optind != argc)) {
		usage(stderr);
		return EXIT_USAGE;
	}
	return -1;
}

/* Configuration, privileges, log level and signals.  0, or the exit
 * code (logged; nothing left open). */
static int
main_setup(const char *confpath, bool verbose, struct conf **conf_r)
{
	struct conf *conf;
	struct err err;

	priv_umask();
	conf = conf_load(confpath, &err);
	if (conf == NULL) {
		log_error("bad configuration: %s", err.msg);
		return EXIT_CONFIG;
	}
	/* run by hand as root: become run_user, as castord's children are */
	if (priv_drop_for_conf(conf, false, &err) < 0) {
		log_error("cannot switch user: %s", err.msg);
		conf_free(conf);
		return EXIT_CONFIG;
	}
	if (verbose)
		log_set_level(LOG_LVL_DEBUG);
	else if (conf_has(conf, "log_level") && log_level_parse(conf_get_str(conf, "log_level", "info")) >= 0)
		log_set_level((enum log_level)log_level_parse(conf_get_str(conf, "log_level", "info")));
	if (signals_init(&err) < 0 || signals_catch(SIGQUIT, SIGNALS_RESTART, &err) < 0 ||
	    signals_catch(SIGINT, SIGNALS_RESTART, &err) < 0 || signals_ignore(SIGPIPE, &err) < 0 ||
	    signals_ignore(SIGHUP, &err) < 0) {
		log_error("signals: %s", err.msg);
		conf_free(conf);
		return EXIT_CONFIG;
	}
	*conf_r = conf;
	return 0;
}

/* --drain: nothing to do on a replica; else the drain (its children
 * open their own store). */
static int
main_drain(struct conf *conf, const struct cli_args *a)
{
	const char *role;
	uint64_t epoch;
	struct store *st;
	struct store_opts o;
	struct err err;

	store_opts_from_conf(&o, conf);
	o.read_only = true;
	st = store_open(conf_dir(conf), &o, &err);
	if (st == NULL) {
		log_error("cannot open the store: %s", err.msg);
		return EXIT_CONFIG;
	}
	if (store_server_get(st, &role, &epoch, &err) == 0 && !str_eq(role, "master")) {
		log_info("drain: this server is a %s: nothing to drain", role);
		store_close(&st);
		return 0;
	}
	store_close(&st);   /* the children open their own */
	return run_drain(conf, conf_dir(conf), a->chan, a->timeout_s, a->allow_deletes);
}

/* -r, -u, -A, -m: on the named channel, or (but -r) on each one. */
static int
main_run(struct conf *conf, const struct cli_args *a, int argc, char **argv)
{
	struct store *st;
	struct store_opts o;
	struct err err;
	int rc = 0;

	store_opts_from_conf(&o, conf);
	o.read_only = true;
	st = store_open(conf_dir(conf), &o, &err);
	if (st == NULL) {
		log_error("cannot open the store: %s", err.msg);
		return EXIT_CONFIG;
	}
	if (a->mode == 'r') {
		rc = run_rolling(conf, st, a->chan, a->allow_deletes);
	} else {
		size_t n = 0;
		char **names = a->chan != NULL ? NULL : syncchan_names(conf, &n);
		if (a->chan != NULL) {
			rc = run_once(conf, st, a->chan, a->mode, argv + optind, argc - optind,
				a->allow_deletes);
		} else if (n == 0) {
			fprintf(stderr, "%s: no channels configured (sync_channels)\n", prog);
			rc = EXIT_CONFIG;
		} else {
			for (size_t i = 0; i < n; i++) {
				int r = run_once(conf, st, names[i], a->mode, argv + optind, argc - optind,
					a->allow_deletes);
				if (r > rc)
					rc = r;
			}
		}
		if (names != NULL)
			conf_list_free(names);
	}
	store_close(&st);
	return rc;
}

int
main(int argc, char **argv)
{
	struct cli_args a = { .timeout_s = 100 };
	const char *logdest;
	struct conf *conf;
	int rc;

	xalloc_tune();
	logdest = getenv("CASTOR_LOG");
	log_init(getenv("CASTOR_SERVICE") != NULL ? getenv("CASTOR_SERVICE") : "sync-client",
		logdest != NULL && str_eq(logdest, "syslog") ? LOG_DEST_SYSLOG : LOG_DEST_STDERR);
	if (failpoint_init() < 0)
		return EXIT_USAGE;
	rc = main_parse_args(argc, argv, &a);
	if (rc >= 0)
		return rc;
	if (a.confpath == NULL)
		a.confpath = getenv("CASTOR_CONFIG");
	if (a.confpath == NULL)
		a.confpath = "castor.conf";
	rc = main_setup(a.confpath, a.verbose, &conf);
	if (rc != 0)
		return rc;
	if (a.chan != NULL && !cursor_channel_valid(a.chan)) {
		fprintf(stderr, "%s: bad channel name %s\n", prog, a.chan);
		conf_free(conf);
		return EXIT_USAGE;
	}
	if (a.mode == 'D')
		rc = main_drain(conf, &a);
	else
		rc = main_run(conf, &a, argc, argv);
	conf_free(conf);
	return rc;
}
