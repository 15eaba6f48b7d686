/*
 * synchook.c - sync log appends from every writer, and the semisync wait
 * (synchook.h).
 *
 * INVARIANTS
 *  1. A record is appended only after the change it names is durable
 *     (the store calls the hook after its commit), so a reader that sees
 *     the record and then reads the store sees the change.
 *  2. A failed append never fails the change: it is counted, logged, and
 *     the marker file tells the clients to run anti-entropy.
 *  3. synchook_wait returns 0 in semisync mode only after an ACK file
 *     showed a position at or after our last record's end, or after the
 *     degradation (logged, flagged); never silently.
 *  4. In strict semisync, synchook_admit refuses before a change is made
 *     when no semisync channel is live, so "no replica" never leaves a
 *     committed change behind a refusal.
 */
#include "sync/synchook.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "sync/syncchan.h"
#include "sync/syncstat.h"

#define HOOKS_MAX 8
#define IDLE_SAMPLE_MAX_US 20000
#define ASYNC_SLOW_AFTER 8             /* consecutive misses before waiting stops */

struct synchook {
	struct store *st;
	char *root;
	struct synclog *log;
	bool semisync, strict;
	int64_t timeout_ms;
	char **chans;             /* semisync channels */
	size_t nchans;
	int *ackfd;
	struct synclog_pos last;
	bool pending;             /* appended since the last wait */
	bool lost;                /* an append failed since the last wait */
	/* async mode: the opportunistic wait (synchook_wait_async) */
	int64_t async_wait_us;    /* sync_async_wait; 0 = never wait */
	uint64_t idle_hint_us;    /* the client's idle time before this command */
	uint64_t idle_avg_us;     /* moving average of the known idle times (UNKNOWN: none yet) */
	uint64_t est_us;          /* moving average of a replica's confirmation time */
	uint64_t probe;           /* waits skipped while the replica keeps missing the budget */
	unsigned expired_run;     /* consecutive waits that ran out of budget */
	bool silent;              /* acked(): a connected channel missed its heartbeats */
	struct synchook_stats stats;
};

static struct synchook *hooks[HOOKS_MAX];

static struct synchook *
hook_find(const struct store *st)
{
	for (size_t i = 0; i < HOOKS_MAX; i++)
		if (hooks[i] != NULL && hooks[i]->st == st)
			return hooks[i];
	return NULL;
}

void
synchook_failed_marker(const char *root, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/run/sync-append-failed", root);
}

static void
mark_failed(struct synchook *h)
{
	struct buf p = BUF_INIT;
	char line[64];
	int fd;

	synchook_failed_marker(h->root, &p);
	fd = open(buf_cstr(&p), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd >= 0) {
		int n = snprintf(line, sizeof(line), "%llu\n", (unsigned long long)clock_wall_ms());
		if (atomicfile_write_all(fd, line, (size_t)n) < 0)
			log_warn("cannot write path=%s", log_q(buf_cstr(&p)));
		close(fd);
	}
	buf_free(&p);
}

static void
synchook_change(void *ctx, const char *user, enum store_change_kind kind, const char *mailbox_id)
{
	struct synchook *h = ctx;
	unsigned type;
	struct synclog_pos next;
	struct err err;

	switch (kind) {
	case STORE_CHANGE_MAILBOX:
		type = SYNCLOG_MAILBOX;
		break;
	case STORE_CHANGE_SUB:
		type = SYNCLOG_SUB;
		break;
	case STORE_CHANGE_UNUSER:
		type = SYNCLOG_UNUSER;
		break;
	case STORE_CHANGE_PASSWORD:
		type = SYNCLOG_PASSWORD;
		break;
	case STORE_CHANGE_USER:
	default:
		type = SYNCLOG_USER;
		break;
	}
	if (synclog_append(h->log, type, user, type == SYNCLOG_MAILBOX ? mailbox_id : NULL, &next,
		&err) < 0) {
		h->stats.append_failures++;
		h->lost = true;
		if (h->stats.append_failures == 1 || h->stats.append_failures % 100 == 0)
			log_error("sync log append failed (anti-entropy will find the change) user=%s"
				" type=%s failures=%llu error=%s", user, synclog_type_name(type),
				(unsigned long long)h->stats.append_failures, log_q(err.msg));
		mark_failed(h);
		return;
	}
	h->stats.appended++;
	h->last = next;
	h->stats.last = next;
	h->pending = true;
}

static void
hook_free(struct synchook *h)
{
	if (h == NULL)
		return;
	synclog_close(&h->log);
	for (size_t i = 0; i < h->nchans; i++)
		if (h->ackfd != NULL && h->ackfd[i] >= 0)
			close(h->ackfd[i]);
	free(h->ackfd);
	if (h->chans != NULL)
		conf_list_free(h->chans);
	free(h->root);
	free(h);
}

int
synchook_attach(struct store *st, const struct conf *conf, struct err *err)
{
	struct synchook *h;
	const char *role;
	uint64_t epoch;
	char **chans;
	size_t nchans = 0, slot;
	struct buf p = BUF_INIT;

	if (hook_find(st) != NULL)
		return 0;
	if (store_server_get(st, &role, &epoch, err) < 0)
		return -1;
	if (!str_eq(role, "master"))
		return 0;
	chans = syncchan_names(conf, &nchans);
	if (nchans == 0) {
		conf_list_free(chans);
		return 0;
	}
	for (slot = 0; slot < HOOKS_MAX && hooks[slot] != NULL; slot++)
		;
	if (slot == HOOKS_MAX) {
		conf_list_free(chans);
		return err_set(err, ERR_INVALID, "too many stores with a sync hook in one process");
	}
	h = xcalloc(1, sizeof(*h));
	h->st = st;
	h->root = xstrdup(store_root(st));
	h->log = synclog_open(h->root, conf_get_bytes(conf, "sync_log_segment_size", 0), err);
	if (h->log == NULL) {
		conf_list_free(chans);
		hook_free(h);
		return -1;
	}
	h->semisync = str_eq(conf_get_str(conf, "sync_mode", "async"), "semisync");
	h->strict = conf_get_bool(conf, "sync_semisync_strict", false);
	h->timeout_ms = conf_get_duration_ms(conf, "sync_semisync_timeout", 2000);
	h->stats.semisync = h->semisync;
	h->async_wait_us = h->semisync ? 0 : conf_get_duration_ms(conf, "sync_async_wait", 5) * 1000;
	if (h->async_wait_us < 0)
		h->async_wait_us = 0;
	h->idle_hint_us = SYNCHOOK_IDLE_UNKNOWN;
	h->idle_avg_us = SYNCHOOK_IDLE_UNKNOWN;
	h->est_us = 1000;
	if (h->semisync || h->async_wait_us > 0) {
		size_t n = 0;
		char **ss = conf_get_list(conf, "sync_semisync_channels", &n);
		if (n == 0) {
			conf_list_free(ss);
			h->chans = chans;
			h->nchans = nchans;
			chans = NULL;
		} else {
			h->chans = ss;
			h->nchans = n;
		}
		h->ackfd = xcalloc(h->nchans, sizeof(int));
		for (size_t i = 0; i < h->nchans; i++) {
			h->ackfd[i] = syncstat_ack_open(h->root, h->chans[i], true, err);
			if (h->ackfd[i] < 0)
				log_warn("semisync: cannot open the ack file channel=%s error=%s",
					h->chans[i], log_q(err->msg));
		}
	}
	if (chans != NULL)
		conf_list_free(chans);
	buf_free(&p);
	hooks[slot] = h;
	store_set_change_hook(st, synchook_change, h);
	return 0;
}

void
synchook_detach(struct store *st)
{
	for (size_t i = 0; i < HOOKS_MAX; i++)
		if (hooks[i] != NULL && hooks[i]->st == st) {
			store_set_change_hook(st, NULL, NULL);
			hook_free(hooks[i]);
			hooks[i] = NULL;
		}
}

bool
synchook_active(const struct store *st)
{
	return hook_find(st) != NULL;
}

void
synchook_stats(const struct store *st, struct synchook_stats *s)
{
	struct synchook *h = hook_find(st);

	memset(s, 0, sizeof(*s));
	if (h != NULL)
		*s = h->stats;
}

/* Channel i's ACK file: 1 read (*pos_r, and *state_r 2 = live: its
 * client is connected and heard the replica within the dead-peer timeout;
 * 1 = connected but silent; 0 = not connected), or 0 when unreadable. */
static int
ack_state(struct synchook *h, size_t i, uint64_t now, struct synclog_pos *pos_r, int *state_r)
{
	uint64_t log_id, heard;
	uint32_t dead;
	bool live;

	if (h->ackfd[i] < 0 ||
	    syncstat_ack_read_heard(h->ackfd[i], pos_r, &log_id, &live, &heard, &dead) != 1)
		return 0;
	*state_r = syncstat_ack_live(live, heard, dead, now) ? 2 : live ? 1 : 0;
	return 1;
}

/* 1 some channel acknowledged target, 0 not yet; *live_r: some channel
 * has a live client that heard its replica within the dead-peer timeout
 * (a client stuck on a silent replica leaves its live flag set, but its
 * last answer ages: such a channel is not worth waiting for). */
static int
acked(struct synchook *h, bool *live_r)
{
	uint64_t now = clock_wall_ms();

	*live_r = false;
	h->silent = false;
	for (size_t i = 0; i < h->nchans; i++) {
		struct synclog_pos pos;
		int state;

		if (ack_state(h, i, now, &pos, &state) == 0)
			continue;
		if (state == 2)
			*live_r = true;
		else if (state == 1)
			h->silent = true;
		if (synclog_pos_cmp(&pos, &h->last) >= 0)
			return 1;
	}
	return 0;
}

/* Is some semisync channel live (the heartbeat rule of acked())?  The one
 * liveness predicate of the admission check (synchook_admit). */
static bool
semisync_live(struct synchook *h)
{
	uint64_t now = clock_wall_ms();

	for (size_t i = 0; i < h->nchans; i++) {
		struct synclog_pos pos;
		int state;

		if (ack_state(h, i, now, &pos, &state) == 1 && state == 2)
			return true;
	}
	return false;
}

int
synchook_admit(struct store *st, struct err *err)
{
	struct synchook *h = hook_find(st);

	if (h == NULL || !h->semisync || !h->strict)
		return 0;
	if (semisync_live(h))
		return 0;
	h->stats.admit_refused++;
	return err_set(err, ERR_TEMP, "no replica is connected (semisync strict)");
}

void
synchook_forget(struct store *st)
{
	struct synchook *h = hook_find(st);

	if (h != NULL) {
		h->pending = false;
		h->lost = false;
	}
}

static void
set_degraded(struct synchook *h, bool on, const char *why)
{
	struct buf p = BUF_INIT;
	char line[256];
	int fd, n;

	syncstat_degraded_path(h->root, &p);
	if (on) {
		fd = open(buf_cstr(&p), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd >= 0) {
			n = snprintf(line, sizeof(line), "%llu %s\n", (unsigned long long)clock_wall_ms(), why);
			if (n > 0 && atomicfile_write_all(fd, line, (size_t)n) < 0)
				log_warn("cannot write path=%s", log_q(buf_cstr(&p)));
			close(fd);
		}
	} else {
		(void)unlink(buf_cstr(&p));
	}
	buf_free(&p);
	h->stats.degraded = on;
}

static bool
degraded_flagged(struct synchook *h)
{
	struct buf p = BUF_INIT;
	bool r;

	syncstat_degraded_path(h->root, &p);
	r = access(buf_cstr(&p), F_OK) == 0;
	buf_free(&p);
	return r;
}

void
synchook_idle_hint(struct store *st, uint64_t idle_us)
{
	struct synchook *h = hook_find(st);

	if (h == NULL)
		return;
	h->idle_hint_us = idle_us;
	if (idle_us == SYNCHOOK_IDLE_UNKNOWN)
		return;
	/* one long pause counts for 20 ms at most */
	if (idle_us > IDLE_SAMPLE_MAX_US)
		idle_us = IDLE_SAMPLE_MAX_US;
	if (h->idle_avg_us == SYNCHOOK_IDLE_UNKNOWN)
		h->idle_avg_us = idle_us;
	else
		h->idle_avg_us = (h->idle_avg_us * 7 + idle_us) / 8;
}

/* An inotify instance watching the channels' ACK files, or -1.  Made
 * for one wait and closed after it: the kernel allows each user 128
 * instances, and a master with hundreds of imapd processes each holding
 * one would leave none for the sync clients' log readers. */
static int
ack_watch_open(struct synchook *h)
{
	struct buf p = BUF_INIT;
	int ino = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);

	if (ino < 0)
		return -1;
	for (size_t i = 0; i < h->nchans; i++) {
		if (h->ackfd[i] < 0)
			continue;
		syncstat_ack_path(h->root, h->chans[i], &p);
		if (inotify_add_watch(ino, buf_cstr(&p), IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE) < 0)
			log_warn("semisync: inotify_add_watch failed path=%s", log_q(buf_cstr(&p)));
	}
	buf_free(&p);
	return ino;
}

/* The wait itself: on the inotify instance ino, or every 200 us
 * without one (ino < 0). */
static int
ack_wait_loop(struct synchook *h, int ino, uint64_t deadline_us, bool *live)
{
	char drainbuf[4096];

	for (;;) {
		uint64_t now = clock_mono_us();
		int left_ms;
		struct pollfd pf;

		if (now >= deadline_us)
			return 0;
		left_ms = (int)((deadline_us - now + 999) / 1000);
		if (ino >= 0) {
			pf.fd = ino;
			pf.events = POLLIN;
			pf.revents = 0;
			/* poll in short slices too: an ACK file replaced under us
			 * would not wake the inotify watch */
			if (poll(&pf, 1, left_ms < 50 ? left_ms : 50) > 0)
				while (read(ino, drainbuf, sizeof(drainbuf)) > 0)
					;
		} else {
			struct timespec ts = { 0, 200 * 1000 };
			nanosleep(&ts, NULL);
		}
		if (acked(h, live) == 1)
			return 1;
		if (!*live && h->silent)
			return 0;   /* the replica fell silent: nothing will come */
	}
}

/* Wait on the ACK files until some channel confirmed h->last or
 * deadline_us (monotonic) passes.  1 confirmed, 0 not.  Without an
 * inotify instance (none left) it reads the files every 200 us. */
static int
ack_wait_until(struct synchook *h, uint64_t deadline_us, bool *live)
{
	int ino = ack_watch_open(h), r;

	/* an ACK written before the watch existed woke nobody */
	r = acked(h, live) == 1 ? 1 : ack_wait_loop(h, ino, deadline_us, live);
	if (ino >= 0)
		close(ino);
	return r;
}

/*
 * A client whose idle time before its commands averages less than this
 * sends each command as soon as it has our previous answer: it is busy.
 * The idle time of a paced client is the slack left in its period after
 * our answer (already lengthened by our last wait), so clear slack means
 * the wait did not delay it; a bulk client's is its own turnaround, tens
 * to a few hundred microseconds.  The average (1/8 weight per command),
 * not the single sample: a paced client whose slack dips once is still
 * paced, and a bulk client descheduled once is still bulk.  Half a
 * confirmation time, and never above 500 us.
 */
static uint64_t
busy_below_us(const struct synchook *h)
{
	return h->est_us / 2 < 500 ? h->est_us / 2 : 500;
}

/*
 * Async mode: wait a little for a replica when that costs the client
 * nothing it would notice.  A client that had slack before this command
 * (busy_below_us) is not keeping this process busy, so its answer can
 * wait up to sync_async_wait for a live replica's commit; a client that
 * sends its next command as soon as it has the answer (a bulk load) is
 * answered at once.  Never an error, never degrades, never logs per
 * message.
 */
static void
synchook_wait_async(struct synchook *h)
{
	uint64_t idle = h->idle_hint_us, t0, deadline;
	bool live = false;

	h->idle_hint_us = SYNCHOOK_IDLE_UNKNOWN;
	if (!h->pending || h->async_wait_us <= 0)
		return;
	h->pending = false;
	if (idle != SYNCHOOK_IDLE_UNKNOWN && h->idle_avg_us < busy_below_us(h)) {
		h->stats.async_busy++;
		return;
	}
	if (h->expired_run >= ASYNC_SLOW_AFTER && (++h->probe % 64) != 0) {
		/* the replica keeps missing the budget: try now and then (one
		 * miss alone, a checkpoint or a scheduling hiccup, is not that) */
		h->stats.async_slow++;
		return;
	}
	if (acked(h, &live) == 1) {
		h->stats.async_confirmed++;
		return;
	}
	if (!live)
		return;
	t0 = clock_mono_us();
	deadline = t0 + (uint64_t)h->async_wait_us;
	h->stats.async_waits++;
	if (ack_wait_until(h, deadline, &live) == 1) {
		h->stats.async_confirmed++;
		h->expired_run = 0;
		h->est_us = (h->est_us * 7 + (clock_mono_us() - t0)) / 8;
	} else {
		h->stats.async_timeouts++;
		h->expired_run++;
		h->est_us = (h->est_us * 7 + (uint64_t)h->async_wait_us) / 8;
	}
}

int
synchook_wait(struct store *st, struct err *err)
{
	struct synchook *h = hook_find(st);
	uint64_t deadline;
	bool live = false;

	if (h == NULL)
		return 0;
	if (!h->semisync) {
		synchook_wait_async(h);
		return 0;
	}
	if (!h->pending && !h->lost)
		return 0;
	h->stats.waits++;
	if (h->lost) {
		/* We cannot name the position of a change whose record was lost. */
		h->lost = false;
		if (h->strict)
			return err_set(err, ERR_TEMP, "sync log append failed: cannot confirm replication");
		if (!h->pending)
			return 0;
	}
	if (acked(h, &live) == 1)
		goto done;
	if (!live && (degraded_flagged(h) || h->silent)) {
		/* degraded, and no channel is live: asynchronous until one is;
		 * a channel whose replica fell silent is known dead: no wait */
		h->pending = false;
		if (h->strict)
			return err_set(err, ERR_TEMP, "no replica is connected (semisync strict)");
		if (!h->stats.degraded && !degraded_flagged(h)) {
			log_error("SEMISYNC DEGRADED TO ASYNC: the replica missed its heartbeats;"
				" acknowledging without a replica until one catches up");
			set_degraded(h, true, "silent");
		}
		h->stats.degraded = true;
		return 0;
	}
	deadline = clock_mono_us() + (uint64_t)(h->timeout_ms > 0 ? h->timeout_ms : 0) * 1000;
	if (ack_wait_until(h, deadline, &live) == 1)
		goto done;
	h->stats.wait_timeouts++;
	h->pending = false;
	if (h->strict) {
		log_error("semisync: no replica confirmed within %lldms: refusing (sync_semisync_strict)",
			(long long)h->timeout_ms);
		return err_set(err, ERR_TEMP, "no replica confirmed the change in time");
	}
	if (!h->stats.degraded)
		log_error("SEMISYNC DEGRADED TO ASYNC: no replica confirmed within %lldms;"
			" acknowledging without a replica until one catches up", (long long)h->timeout_ms);
	set_degraded(h, true, "timeout");
	return 0;
done:
	h->pending = false;
	if (h->stats.degraded || degraded_flagged(h)) {
		log_notice("semisync resumed: a replica confirms again");
		set_degraded(h, false, NULL);
	}
	return 0;
}
