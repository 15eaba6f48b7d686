/*
 * store_commit.c - group commit: many processes committing to one
 * user database share one WAL fsync.
 *
 * A user database runs with journal_mode=WAL and synchronous=NORMAL:
 * SQLite's COMMIT appends the transaction's frames (with its commit
 * marker) to user.db-wal without syncing, and syncs the WAL itself
 * only around checkpoints (before copying frames into user.db, and
 * user.db after).  Durability of a commit is then exactly "the WAL
 * file has been fdatasynced since the commit's frames were written".
 * This file provides that, shared between processes:
 *
 *   commit.shm (one page, mmap'd MAP_SHARED by every process using the
 *   user; little-endian host words, not portable across machines):
 *       0   8  magic "CSTRGC01"
 *       8  40  boot id (/proc/sys/kernel/random/boot_id) the counters belong to
 *      48   8  ticket   - commits registered so far (atomic fetch-add)
 *      56   8  synced   - every ticket <= synced is durable
 *      64   8  leader_syncs - WAL fsyncs done (statistics)
 *      72 512  inflight[128] - pids of processes between BEGIN and their ticket
 *     584   8  ckpt_ticket - ticket at the last checkpoint
 *     592   4  gen     - bumped after every change of synced (futex word)
 *   The file is also the leader lock: flock(LOCK_EX) on it.
 *
 * Protocol of a committer:
 *   1. COMMIT (frames in the WAL, page cache only)
 *   2. t = ++ticket                      (after the commit is in the WAL)
 *   3. g = gen; if synced >= t: durable, done (someone fsynced after step 1)
 *   4. flock(LOCK_EX | LOCK_NB) fails: another process is leading; sleep
 *      on the futex `gen` (until it changes, at most 10 ms) and go to 3
 *   5. leader: if synced >= t: unlock, done
 *   6. wait (at most GC_DELAY_US) while another process is in flight,
 *      i.e. between the start of its append and its ticket
 *   7. target = ticket; fdatasync(WAL); synced = max(synced, target);
 *      gen++; wake every futex waiter; unlock
 * While a leader is in step 7, later committers sleep in step 4; when it
 * is done they all wake at once, those it covered return, and one of
 * the others becomes the next leader.  (Queueing on the lock itself
 * instead made covered committers wait behind the next leader's fsync.)
 * Step 5 (PostgreSQL's commit_delay, bounded and only when someone is
 * actually committing) lets one fsync cover the writers whose commits
 * are a fraction of a millisecond away; a lone writer never waits.
 * The in-flight slots are a hint only: a slot left by a killed process
 * is cleared by the next leader that finds its pid dead.
 *
 * Invariants:
 *   G1. A ticket is taken only after its COMMIT returned, so when a
 *       leader reads ticket = T before its fdatasync, the frames of
 *       every commit with ticket <= T are already in the WAL file and
 *       the fdatasync covers them: setting synced = T is truthful.
 *   G2. synced only grows within a boot.  The counters are advisory
 *       memory: after a reboot (boot id differs) they are reset under
 *       the lock by the first process to open the file; nothing is
 *       pending across a reboot because no process survived it.
 *   G3. The WAL is never unlinked (SQLITE_FCNTL_PERSIST_WAL on every
 *       connection), and the leader checks that its fd still names
 *       the file at user.db-wal (inode compare) before syncing, so the
 *       fsync always reaches the live WAL.
 *   G4. A failed fdatasync leaves synced unchanged and is reported to
 *       the caller as ERR_TEMP (durability unknown); the handle is
 *       then marked broken by the caller (SQLite's sticky-error rule:
 *       after a failed fsync the page cache can no longer be trusted).
 *   G5. A process killed anywhere in 1-7 leaves at worst an unsynced
 *       commit whose caller never saw success; the lock dies with it,
 *       and sleepers in step 4 retry after their 10 ms timeout.
 *
 * Checkpoints: SQLite's automatic checkpoint is off for user databases
 * (wal_autocheckpoint=0).  Left on, every commit that finds the WAL over
 * its threshold attempts a checkpoint, each costing a WAL and a database
 * fsync, and with several processes appending the checkpoints rarely
 * complete, so nearly every commit paid two extra fsyncs.  Instead, after
 * a durable commit, one process at most every GC_CKPT_EVERY tickets (a
 * CAS on ckpt_ticket) runs a PASSIVE checkpoint: two fsyncs per that many
 * commits.
 *
 * Wake-up for IMAP IDLE: after a commit is durable the committer
 * touches <userdir>/notify (utimensat); watchers hold an inotify watch
 * on it (IN_ATTRIB), see store_user_watch_fd().
 */
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#define GC_MAGIC "CSTRGC01"
#define GC_SIZE 4096
#define GC_SLOTS 128
#define GC_DELAY_US 2000
#define GC_CKPT_EVERY 128

struct gc_shm {
	char magic[8];
	char boot_id[40];
	uint64_t ticket;
	uint64_t synced;
	uint64_t leader_syncs;
	uint32_t inflight[GC_SLOTS];
	uint64_t ckpt_ticket;
	uint32_t gen;
};

static void
boot_id(char out[40])
{
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");

	memset(out, 0, 40);
	if (f != NULL) {
		if (fgets(out, 40, f) == NULL)
			out[0] = '\0';
		fclose(f);
	}
	out[strcspn(out, "\n")] = '\0';
}

static int
lock_ex(int fd)
{
	while (flock(fd, LOCK_EX) < 0) {
		if (errno != EINTR)
			return -1;
	}
	return 0;
}

int
store_commit_open(struct store_commit *c, const char *dir, struct err *err)
{
	struct buf p = BUF_INIT;
	struct gc_shm *g;
	struct stat sb;
	char bid[40];
	int fd;

	memset(c, 0, sizeof(*c));
	c->shm_fd = -1;
	c->wal_fd = -1;
	c->slot = -1;
	buf_printf(&p, "%s/commit.shm", dir);
	fd = open(buf_cstr(&p), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		err_errno(err, ERR_TEMP, "open %s", buf_cstr(&p));
		buf_free(&p);
		return -1;
	}
	if (lock_ex(fd) < 0 || fstat(fd, &sb) < 0 ||
	    (sb.st_size < GC_SIZE && ftruncate(fd, GC_SIZE) < 0)) {
		err_errno(err, ERR_TEMP, "%s", buf_cstr(&p));
		close(fd);
		buf_free(&p);
		return -1;
	}
	g = mmap(NULL, GC_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (g == MAP_FAILED) {
		err_errno(err, ERR_TEMP, "mmap %s", buf_cstr(&p));
		close(fd);
		buf_free(&p);
		return -1;
	}
	boot_id(bid);
	if (memcmp(g->magic, GC_MAGIC, 8) != 0 || strncmp(g->boot_id, bid, sizeof(g->boot_id)) != 0) {
		/* G2: fresh file, or first use since a reboot. */
		__atomic_store_n(&g->ticket, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&g->synced, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&g->leader_syncs, 0, __ATOMIC_SEQ_CST);
		memset(g->inflight, 0, sizeof(g->inflight));
		__atomic_store_n(&g->ckpt_ticket, 0, __ATOMIC_SEQ_CST);
		__atomic_store_n(&g->gen, 0, __ATOMIC_SEQ_CST);
		memcpy(g->boot_id, bid, sizeof(g->boot_id));
		memcpy(g->magic, GC_MAGIC, 8);
	}
	flock(fd, LOCK_UN);
	c->shm_fd = fd;
	c->shm = g;
	buf_reset(&p);
	buf_printf(&p, "%s/user.db-wal", dir);
	c->wal_path = buf_steal(&p);
	buf_printf(&p, "%s/notify", dir);
	c->notify_path = buf_steal(&p);
	return 0;
}

void
store_commit_close(struct store_commit *c)
{
	if (c->shm != NULL)
		store_commit_leave(c);
	if (c->shm != NULL)
		munmap(c->shm, GC_SIZE);
	if (c->shm_fd >= 0)
		close(c->shm_fd);
	if (c->wal_fd >= 0)
		close(c->wal_fd);
	free(c->wal_path);
	free(c->notify_path);
	memset(c, 0, sizeof(*c));
	c->shm_fd = -1;
	c->wal_fd = -1;
	c->slot = -1;
}

void
store_commit_enter(struct store_commit *c)
{
	struct gc_shm *g = c->shm;
	uint32_t pid = (uint32_t)getpid();

	if (c->slot >= 0)
		return;
	for (int i = 0; i < GC_SLOTS; i++) {
		int k = (int)((pid + (uint32_t)i) % GC_SLOTS);
		uint32_t zero = 0;
		if (__atomic_compare_exchange_n(&g->inflight[k], &zero, pid, false, __ATOMIC_SEQ_CST,
			__ATOMIC_SEQ_CST)) {
			c->slot = k;
			return;
		}
	}
	/* all slots taken: no hint, nothing else changes */
}

void
store_commit_leave(struct store_commit *c)
{
	struct gc_shm *g = c->shm;

	if (c->slot < 0)
		return;
	__atomic_store_n(&g->inflight[c->slot], 0, __ATOMIC_SEQ_CST);
	c->slot = -1;
}

uint64_t
store_commit_ticket(struct store_commit *c)
{
	struct gc_shm *g = c->shm;
	uint64_t t = __atomic_add_fetch(&g->ticket, 1, __ATOMIC_SEQ_CST);

	store_commit_leave(c);
	return t;
}

/* Number of other processes in flight; clears slots of dead ones. */
static int
inflight_others(struct gc_shm *g, bool reap)
{
	uint32_t me = (uint32_t)getpid();
	int n = 0;

	for (int i = 0; i < GC_SLOTS; i++) {
		uint32_t pid = __atomic_load_n(&g->inflight[i], __ATOMIC_SEQ_CST);
		if (pid == 0 || pid == me)
			continue;
		if (reap && kill((pid_t)pid, 0) < 0 && errno == ESRCH) {
			__atomic_compare_exchange_n(&g->inflight[i], &pid, 0, false, __ATOMIC_SEQ_CST,
				__ATOMIC_SEQ_CST);
			continue;
		}
		n++;
	}
	return n;
}

/* Step 5: give writers about to commit a moment to join this fsync. */
static void
commit_delay(struct gc_shm *g)
{
	struct timespec t0, now;
	long waited;

	if (inflight_others(g, false) == 0)
		return;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct timespec ts = { 0, 50000 };
		nanosleep(&ts, NULL);
		clock_gettime(CLOCK_MONOTONIC, &now);
		waited = (now.tv_sec - t0.tv_sec) * 1000000L + (now.tv_nsec - t0.tv_nsec) / 1000;
		if (waited >= GC_DELAY_US) {
			(void)inflight_others(g, true);
			return;
		}
		if (inflight_others(g, false) == 0)
			return;
	}
}

/* G3: make sure wal_fd is the file now at wal_path. */
static int
wal_fd_check(struct store_commit *c, struct err *err)
{
	struct stat a, b;

	if (c->wal_fd >= 0) {
		if (stat(c->wal_path, &a) == 0 && fstat(c->wal_fd, &b) == 0 &&
		    a.st_ino == b.st_ino && a.st_dev == b.st_dev)
			return 0;
		close(c->wal_fd);
		c->wal_fd = -1;
	}
	c->wal_fd = open(c->wal_path, O_RDWR | O_CLOEXEC);
	if (c->wal_fd < 0)
		return err_errno(err, ERR_TEMP, "open %s", c->wal_path);
	return 0;
}

static void
futex_wait(uint32_t *addr, uint32_t val, long timeout_ns)
{
	struct timespec ts = { 0, timeout_ns };

	/* Shared (not FUTEX_PRIVATE): the word lives in a MAP_SHARED file. */
	(void)syscall(SYS_futex, addr, FUTEX_WAIT, val, &ts, NULL, 0);
}

static void
futex_wake_all(uint32_t *addr)
{
	(void)syscall(SYS_futex, addr, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

int
store_commit_barrier(struct store_commit *c, uint64_t ticket, struct err *err)
{
	struct gc_shm *g = c->shm;
	uint64_t target, cur;
	int rc = 0;

	for (;;) {
		uint32_t gen = __atomic_load_n(&g->gen, __ATOMIC_SEQ_CST);

		if (__atomic_load_n(&g->synced, __ATOMIC_SEQ_CST) >= ticket) {
			store_stats_g.shared_commits++;
			return 0;
		}
		if (flock(c->shm_fd, LOCK_EX | LOCK_NB) == 0)
			break;
		if (errno != EWOULDBLOCK && errno != EINTR)
			return err_errno(err, ERR_TEMP, "flock commit.shm");
		futex_wait(&g->gen, gen, 10 * 1000 * 1000);
	}
	/* leader */
	if (__atomic_load_n(&g->synced, __ATOMIC_SEQ_CST) >= ticket) {
		flock(c->shm_fd, LOCK_UN);
		store_stats_g.shared_commits++;
		return 0;
	}
	commit_delay(g);
	/* G1: everything up to target is in the WAL now. */
	target = __atomic_load_n(&g->ticket, __ATOMIC_SEQ_CST);
	if (wal_fd_check(c, err) < 0) {
		rc = -1;
	} else if (fdatasync(c->wal_fd) < 0) {
		rc = err_errno(err, ERR_TEMP, "fdatasync %s (durability unknown)", c->wal_path);
		log_error("WAL fdatasync failed path=%s errno=%d", log_q(c->wal_path), errno);
	} else {
		store_stats_g.wal_syncs++;
		__atomic_add_fetch(&g->leader_syncs, 1, __ATOMIC_SEQ_CST);
		cur = __atomic_load_n(&g->synced, __ATOMIC_SEQ_CST);
		while (cur < target &&
		       !__atomic_compare_exchange_n(&g->synced, &cur, target, false,
			       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST))
			;
	}
	__atomic_add_fetch(&g->gen, 1, __ATOMIC_SEQ_CST);
	flock(c->shm_fd, LOCK_UN);
	futex_wake_all(&g->gen);
	return rc;
}

void
store_commit_notify(struct store_commit *c)
{
	if (utimensat(AT_FDCWD, c->notify_path, NULL, 0) < 0 && errno == ENOENT) {
		int fd = open(c->notify_path, O_RDONLY | O_CREAT | O_CLOEXEC, 0640);
		if (fd >= 0)
			close(fd);
		(void)utimensat(AT_FDCWD, c->notify_path, NULL, 0);
	}
}

bool
store_commit_want_checkpoint(struct store_commit *c)
{
	struct gc_shm *g = c->shm;
	uint64_t t = __atomic_load_n(&g->ticket, __ATOMIC_SEQ_CST);
	uint64_t last = __atomic_load_n(&g->ckpt_ticket, __ATOMIC_SEQ_CST);

	if (t < last)   /* counters were reset */
		last = 0;
	if (t - last < GC_CKPT_EVERY)
		return false;
	return __atomic_compare_exchange_n(&g->ckpt_ticket, &last, t, false, __ATOMIC_SEQ_CST,
		__ATOMIC_SEQ_CST);
}
