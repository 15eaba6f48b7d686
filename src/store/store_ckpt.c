/*
 * store_ckpt.c - WAL checkpoints on a background thread.
 *
 * A checkpoint copies committed WAL frames into user.db and fsyncs the
 * WAL and the database: several milliseconds.  Run inline by a committer
 * it delays that committer's answer (an LMTP 250, a replica's OK) and
 * everything queued behind it; the replication lag's tail was made of
 * exactly these pauses.  So commit_durable only asks (store_ckpt_request)
 * and one thread per process runs the checkpoint on its own connection,
 * while the caller answers.
 *
 * What the thread does for a database path:
 *   1. PASSIVE checkpoint: copies what no reader still needs; never
 *      blocks readers or writers.  When it catches up with the end of
 *      the WAL, the next writer rewinds the WAL and cuts it to
 *      journal_size_limit (store.c).
 *   2. Under a steady stream of commits a PASSIVE checkpoint may never
 *      catch up, so the WAL would grow by every commit's pages.  Past
 *      CKPT_RESTART_FRAMES frames the thread runs a RESTART checkpoint,
 *      which holds new writers back while it copies (busy handler of
 *      20 ms: with readers keeping old snapshots it gives up and tries
 *      again on a later request).
 *   3. When a checkpointed database's WAL has not been written for
 *      CKPT_IDLE_MS, a TRUNCATE checkpoint empties it (20 ms busy limit:
 *      it gives way to any writer or reader), so a mailbox at rest costs
 *      its database and nothing more.
 *
 * The WAL bound (store_wal_bound), for every process, service or not:
 *   4. A user's WAL found over STORE_WAL_MAX (4 MiB) is checkpointed with
 *      TRUNCATE, inline on the connection that found it: at open (a
 *      leftover of a writer killed or from before this rule), after a
 *      commit (a bulk writer - import, restore-from, a replica's full
 *      sync, check --repair - outrunning the thread above, whose RESTART
 *      gives way to a busy writer) and at close (the end of bulk work).
 *      Busy limit 200 ms; after a failed try the next one waits until
 *      the WAL has grown by another STORE_WAL_MAX, so a reader that
 *      holds a snapshot does not make every commit wait.
 *
 * Safety: a checkpoint only moves committed frames (SQLite syncs the WAL
 * before copying and the database after), so durability never depends
 * on it; a request dropped (queue full, process exit, error) only leaves
 * a longer WAL for the next one.  The thread's connections are keyed by
 * path and checked against the file's inode, so a user deleted and
 * created again is not checkpointed through a stale handle.
 */
#include "store/store_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"

#define CKPT_QUEUE 16
#define CKPT_CONNS 8
#define CKPT_RESTART_FRAMES 1024
#define CKPT_PATH_MAX 4096
#define CKPT_IDLE_MS 1000          /* a WAL untouched this long is truncated */

struct ckpt_conn {
	char path[CKPT_PATH_MAX];
	sqlite3 *db;
	ino_t ino;
	dev_t dev;
	uint64_t use;
	bool idle_pending;           /* checkpointed since the last truncation */
};

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool started;
	bool failed;                 /* the thread could not start: run inline */
	char queue[CKPT_QUEUE][CKPT_PATH_MAX];
	size_t head, n;
	/* thread-private */
	struct ckpt_conn conns[CKPT_CONNS];
	uint64_t clock;
} ck = { .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER };

static sqlite3 *
ckpt_conn_get(const char *path)
{
	struct ckpt_conn *slot = NULL;
	struct stat sb;
	struct err err;

	if (stat(path, &sb) < 0)
		return NULL;
	for (size_t i = 0; i < CKPT_CONNS; i++) {
		struct ckpt_conn *c = &ck.conns[i];

		if (c->db != NULL && str_eq(c->path, path)) {
			if (c->ino == sb.st_ino && c->dev == sb.st_dev) {
				c->use = ++ck.clock;
				return c->db;
			}
			sqlite3_close(c->db);   /* the file was replaced */
			c->db = NULL;
			slot = c;
			break;
		}
		if (slot == NULL || c->db == NULL || (slot->db != NULL && c->use < slot->use))
			slot = c;
	}
	if (slot->db != NULL) {
		sqlite3_close(slot->db);
		slot->db = NULL;
	}
	if (store_db_open(path, false, 20, false, &slot->db, &err) < 0) {
		log_warn("checkpoint: cannot open path=%s error=%s", log_q(path), log_q(err.msg));
		slot->db = NULL;
		return NULL;
	}
	str_lcpy(slot->path, path, sizeof(slot->path));
	slot->ino = sb.st_ino;
	slot->dev = sb.st_dev;
	slot->idle_pending = false;
	slot->use = ++ck.clock;
	return slot->db;
}

/* The checkpoint itself, on connection db.  Returns the fsyncs done. */
static int
ckpt_run(sqlite3 *db)
{
	int nlog = 0, nckpt = 0, syncs = 0;

	if (sqlite3_wal_checkpoint_v2(db, "main", SQLITE_CHECKPOINT_PASSIVE, &nlog, &nckpt) ==
	    SQLITE_OK && nckpt > 0)
		syncs += 2;   /* WAL, then database */
	if (nlog > CKPT_RESTART_FRAMES &&
	    sqlite3_wal_checkpoint_v2(db, "main", SQLITE_CHECKPOINT_RESTART, &nlog, &nckpt) ==
	    SQLITE_OK)
		syncs += 2;
	return syncs;
}

/* Step 3: truncate the WAL of every database whose WAL is at rest. */
static void
ckpt_idle(void)
{
	uint64_t now = (uint64_t)time(NULL) * 1000;
	struct timespec ts;

	if (clock_gettime(CLOCK_REALTIME, &ts) == 0)
		now = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
	for (size_t i = 0; i < CKPT_CONNS; i++) {
		struct ckpt_conn *c = &ck.conns[i];
		char wal[CKPT_PATH_MAX + 8];
		struct stat sb;
		uint64_t mtime;
		int nlog = 0, nckpt = 0;

		if (c->db == NULL || !c->idle_pending)
			continue;
		if (str_fmt(wal, sizeof(wal), "%s-wal", c->path) < 0 || stat(wal, &sb) < 0) {
			c->idle_pending = false;
			continue;
		}
		mtime = (uint64_t)sb.st_mtim.tv_sec * 1000 + (uint64_t)sb.st_mtim.tv_nsec / 1000000;
		if (sb.st_size == 0) {
			c->idle_pending = false;
			continue;
		}
		if (now < mtime + CKPT_IDLE_MS)
			continue;   /* written lately: look again later */
		if (sqlite3_wal_checkpoint_v2(c->db, "main", SQLITE_CHECKPOINT_TRUNCATE, &nlog,
			&nckpt) == SQLITE_OK) {
			c->idle_pending = false;
			__atomic_add_fetch(&store_stats_g.sqlite_syncs, 2, __ATOMIC_RELAXED);
		}
	}
}

static bool
ckpt_any_pending(void)
{
	for (size_t i = 0; i < CKPT_CONNS; i++)
		if (ck.conns[i].db != NULL && ck.conns[i].idle_pending)
			return true;
	return false;
}

static void *
ckpt_main(void *arg)
{
	char path[CKPT_PATH_MAX];

	(void)arg;
	for (;;) {
		sqlite3 *db;

		pthread_mutex_lock(&ck.mu);
		while (ck.n == 0) {
			struct timespec until;

			if (!ckpt_any_pending()) {
				pthread_cond_wait(&ck.cv, &ck.mu);
				continue;
			}
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_sec += CKPT_IDLE_MS / 1000;
			if (pthread_cond_timedwait(&ck.cv, &ck.mu, &until) != 0 && ck.n == 0) {
				pthread_mutex_unlock(&ck.mu);
				ckpt_idle();
				pthread_mutex_lock(&ck.mu);
			}
		}
		str_lcpy(path, ck.queue[ck.head], sizeof(path));
		ck.head = (ck.head + 1) % CKPT_QUEUE;
		ck.n--;
		pthread_mutex_unlock(&ck.mu);
		db = ckpt_conn_get(path);
		if (db != NULL) {
			__atomic_add_fetch(&store_stats_g.sqlite_syncs, (uint64_t)ckpt_run(db),
				__ATOMIC_RELAXED);
			for (size_t i = 0; i < CKPT_CONNS; i++)
				if (ck.conns[i].db == db)
					ck.conns[i].idle_pending = true;
		}
	}
	return NULL;
}

/* Start the thread once; false when it cannot run. */
static bool
ckpt_start(void)
{
	pthread_t t;
	pthread_attr_t a;

	if (ck.started)
		return true;
	if (ck.failed)
		return false;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	if (pthread_create(&t, &a, ckpt_main, NULL) != 0) {
		log_warn("checkpoint thread did not start: checkpoints run inline");
		ck.failed = true;
	} else {
		ck.started = true;
	}
	pthread_attr_destroy(&a);
	return ck.started;
}

void
store_ckpt_request(sqlite3 *db, const char *path)
{
	bool queued = false;

	if (strlen(path) >= CKPT_PATH_MAX)
		return;
	pthread_mutex_lock(&ck.mu);
	if (ckpt_start()) {
		for (size_t i = 0; i < ck.n; i++)
			if (str_eq(ck.queue[(ck.head + i) % CKPT_QUEUE], path)) {
				queued = true;   /* already asked for */
				break;
			}
		if (!queued && ck.n < CKPT_QUEUE) {
			str_lcpy(ck.queue[(ck.head + ck.n) % CKPT_QUEUE], path, CKPT_PATH_MAX);
			ck.n++;
			pthread_cond_signal(&ck.cv);
		}
		pthread_mutex_unlock(&ck.mu);
		return;
	}
	pthread_mutex_unlock(&ck.mu);
	/* no thread: the caller's connection does it (busy handler: its own) */
	__atomic_add_fetch(&store_stats_g.sqlite_syncs, (uint64_t)ckpt_run(db), __ATOMIC_RELAXED);
}

/* Step 4: the WAL bound. */
void
store_wal_bound(struct store_user *u, const char *when)
{
	char wal[CKPT_PATH_MAX];
	struct stat sb;
	int nlog = 0, nckpt = 0, rc;
	uint64_t before;

	if (u == NULL || u->db == NULL || u->in_txn || u->read_open || u->full_busy)
		return;
	if (str_fmt(wal, sizeof(wal), "%s/user.db-wal", u->dir) < 0 || stat(wal, &sb) < 0)
		return;
	before = (uint64_t)sb.st_size;
	if (before <= STORE_WAL_MAX || before < u->wal_retry_at)
		return;
	/* a writer with the bound off, for the tests: what older versions left */
	if (FAILPOINT("store.wal.unbounded") < 0)
		return;
	store_db_busy_set(u->db, 200);
	rc = sqlite3_wal_checkpoint_v2(u->db, "main", SQLITE_CHECKPOINT_TRUNCATE, &nlog, &nckpt);
	store_db_busy_set(u->db, u->st->opts.busy_timeout_ms);
	if (stat(wal, &sb) < 0)
		sb.st_size = 0;
	if (rc == SQLITE_OK && (uint64_t)sb.st_size <= STORE_WAL_MAX) {
		u->wal_retry_at = 0;
		__atomic_add_fetch(&store_stats_g.sqlite_syncs, 2, __ATOMIC_RELAXED);
		log_info("wal checkpointed user=%s when=%s wal_bytes=%llu now=%llu", u->name, when,
			(unsigned long long)before, (unsigned long long)sb.st_size);
		return;
	}
	u->wal_retry_at = (uint64_t)sb.st_size + STORE_WAL_MAX;
	log_info("wal checkpoint deferred user=%s when=%s wal_bytes=%llu error=%s", u->name, when,
		(unsigned long long)sb.st_size, log_q(rc == SQLITE_OK ? "readers" : sqlite3_errstr(rc)));
}
