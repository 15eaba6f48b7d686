/*
 * ctl_failover.c - castorctl failover: the planned (soft) switch of roles
 * between this master and one of its replicas, with nothing acknowledged
 * left behind.
 *
 *     castorctl failover --to CHAN [--castord-log FILE] [--no-start] [--force]
 *                        [--stop-timeout SEC] [--drain-timeout SEC]
 *     castorctl failover --resume | --abort
 *
 * Steps (each prints what it did and how long it took):
 *   0 preflight  the peer of CHAN answers HELLO as a replica whose epoch is
 *                not above ours, and has a channel back to this server's
 *                syncd (its HELLO CHANNELS; a port must match ours), or
 *                once promoted it would replicate to nobody (--force
 *                skips that check); nothing is changed when this fails
 *   1 stop       SIGQUIT castord (listeners closed at once, children finish
 *                the command in hand; its SHUTDOWN section drains), wait
 *                until it has exited (its pidfile lock is released)
 *   2 drain      `sync-client --drain -n CHAN`: with no writer left this
 *                replays whatever the log still holds and exits 0 only when
 *                the channel's cursor is at the log's end (a no-op after
 *                castord's own SHUTDOWN drain; castorctl cannot read
 *                castord's exit status, so it checks here)
 *   3 verify     every user's digest here and on the peer (GET USERS, the
 *                anti-entropy comparison: per-mailbox highestmodseq and
 *                sync checksum, subscriptions, password, quota) must be
 *                equal; otherwise the failover is aborted: castord is
 *                started again as the master it was
 *   4 promote    PROMOTE epoch+1 on the peer: it is the master from that
 *                moment (its services read the role per transaction)
 *   5 rejoin     this server: role replica, the new epoch (db/users.db),
 *                castord started again; its syncd accepts the new master
 *
 * State file <root>/run/failover.state (written atomically and durably
 * before each step that changes something, removed at the end), text:
 *     castor-failover 1
 *     target=CHAN  done=K (steps 1..K completed)  old_epoch=E  new_epoch=N
 *     promote_sent=0|1  was_running=0|1  started_ms=T  log=FILE  nostart=0|1
 * Invariants: while the file exists, this server's role is unchanged
 * (master) unless done >= 4; PROMOTE is sent only after done >= 3 and
 * promote_sent=1 is durable; --abort never runs once the peer is master.
 *
 * Exit: 0 done; 11 (conflict) the replica differed: aborted, master
 * restarted; 8 (temp) a step failed: the state file says where, and
 * --resume / --abort finish it; 7 (perm) refused (not a master, fenced).
 */
#include "ctl/ctl.h"
#include "ctl/ctl_failover.h"

#include "lib/atomicfile.h"
#include "lib/clock.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/servicesconf.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/cursor.h"
#include "sync/syncchan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct ctl_fo {
	char target[CURSOR_CHANNEL_MAX + 1];
	int done;
	uint64_t old_epoch, new_epoch;
	bool promote_sent, was_running, nostart;
	uint64_t started_ms;
	char log[1024];
	char sync_account[256];
	int stop_timeout_s, drain_timeout_s;
	double t0, refused_from, refused_until;
	struct ctl_peer *peer;      /* step 3's session, reused by step 4 */
};

static void
ctl_fo_path(const char *root, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/run/failover.state", root);
}

static int
ctl_fo_save(const char *root, const struct ctl_fo *fo, struct err *err)
{
	struct buf p = BUF_INIT, t = BUF_INIT, d = BUF_INIT;
	int rc;

	buf_printf(&d, "%s/run", root);
	if (atomicfile_mkdir_p(buf_cstr(&d), 0755, err) < 0) {
		buf_free(&d);
		return -1;
	}
	ctl_fo_path(root, &p);
	buf_printf(&t, "castor-failover 1\ntarget=%s\ndone=%d\nold_epoch=%llu\nnew_epoch=%llu\n"
	    "promote_sent=%d\nwas_running=%d\nstarted_ms=%llu\nlog=%s\nnostart=%d\n",
	    fo->target, fo->done, (unsigned long long)fo->old_epoch, (unsigned long long)fo->new_epoch,
	    fo->promote_sent ? 1 : 0, fo->was_running ? 1 : 0, (unsigned long long)fo->started_ms,
	    fo->log, fo->nostart ? 1 : 0);
	rc = atomicfile_write(buf_cstr(&p), t.data, t.len, 0644, err);
	buf_free(&p);
	buf_free(&t);
	buf_free(&d);
	return rc;
}

/* 1 loaded, 0 none, -1 err (unreadable / damaged). */
static int
ctl_fo_load(const char *root, struct ctl_fo *fo, struct err *err)
{
	struct buf p = BUF_INIT;
	char *text = NULL, *line, *save = NULL;
	size_t len = 0;
	int rc;
	bool magic = false;

	memset(fo, 0, sizeof(*fo));
	fo->done = -1;
	ctl_fo_path(root, &p);
	if (access(buf_cstr(&p), F_OK) < 0) {
		buf_free(&p);
		return 0;
	}
	rc = atomicfile_read_all(buf_cstr(&p), 65536, &text, &len, err);
	buf_free(&p);
	if (rc < 0)
		return -1;
	for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *eq = strchr(line, '=');
		uint64_t v = 0;
		if (str_eq(line, "castor-failover 1")) {
			magic = true;
			continue;
		}
		if (eq == NULL)
			continue;
		*eq++ = '\0';
		if (str_eq(line, "target"))
			str_lcpy(fo->target, eq, sizeof(fo->target));
		else if (str_eq(line, "log"))
			str_lcpy(fo->log, eq, sizeof(fo->log));
		else if (str_to_u64(eq, &v) < 0)
			continue;
		else if (str_eq(line, "done"))
			fo->done = (int)v;
		else if (str_eq(line, "old_epoch"))
			fo->old_epoch = v;
		else if (str_eq(line, "new_epoch"))
			fo->new_epoch = v;
		else if (str_eq(line, "promote_sent"))
			fo->promote_sent = v != 0;
		else if (str_eq(line, "was_running"))
			fo->was_running = v != 0;
		else if (str_eq(line, "started_ms"))
			fo->started_ms = v;
		else if (str_eq(line, "nostart"))
			fo->nostart = v != 0;
	}
	free(text);
	if (!magic || fo->target[0] == '\0' || fo->done < 0 || fo->done > 5)
		return err_set(err, ERR_CORRUPT, "%s/run/failover.state is damaged: remove it after checking"
		    " both servers' roles (castorctl status)", root);
	return 1;
}

static void
ctl_fo_remove(const char *root)
{
	struct buf p = BUF_INIT;
	struct err err;

	ctl_fo_path(root, &p);
	(void)unlink(buf_cstr(&p));
	(void)atomicfile_fsync_parent_dir(buf_cstr(&p), &err);
	buf_free(&p);
}

void
ctl_failover_state_text(const char *root, struct buf *out)
{
	struct ctl_fo fo;
	struct err err;
	int rc = ctl_fo_load(root, &fo, &err);

	buf_reset(out);
	if (rc < 0)
		buf_puts(out, err.msg);
	else if (rc == 1)
		buf_printf(out, "to %s, steps done %d of 5, epoch %llu -> %llu", fo.target, fo.done,
		    (unsigned long long)fo.old_epoch, (unsigned long long)fo.new_epoch);
}

static void ctl_fo_say(const struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
ctl_fo_say(const struct ctl *c, const char *fmt, ...)
{
	va_list ap;

	if (c->quiet)
		return;
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

/* Start castord again (after an abort or as the new replica). */
static int
ctl_fo_start(struct ctl *c, const struct ctl_fo *fo, const char *what, struct err *err)
{
	double t = clock_mono_s();
	struct ctl_server_info si;

	if (fo->nostart || !fo->was_running) {
		ctl_fo_say(c, "       castord not started (%s): start it as usual", fo->nostart ? "--no-start" :
		    "it was not running before");
		return 0;
	}
	ctl_server_info(c->conf, &si);
	if (si.running) {
		ctl_fo_say(c, "       castord already running (pid %ld)", (long)si.pid);
		return 0;
	}
	if (ctl_server_start(c->conf, fo->log[0] ? fo->log : NULL, 120000, err) < 0)
		return -1;
	ctl_server_info(c->conf, &si);
	ctl_fo_say(c, "       castord started again %s (pid %ld): %.2f s", what, (long)si.pid, clock_mono_s() - t);
	return 0;
}

/* Put this server back as the master it was; the peer was not promoted. */
static int
ctl_fo_abort_now(struct ctl *c, struct ctl_fo *fo)
{
	struct err err;

	ctl_fo_say(c, "abort: this server stays the master (epoch %llu)", (unsigned long long)fo->old_epoch);
	if (ctl_fo_start(c, fo, "as the master", &err) < 0) {
		fprintf(stderr, "%s: abort: %s (the state is kept: run castorctl failover --abort again)\n",
		    c->prog, err.msg);
		return ctl_exit_code(err.kind);
	}
	ctl_fo_remove(conf_dir(c->conf));
	return 0;
}

/* Open the target, as a master at our epoch. */
static struct ctl_peer *
ctl_fo_peer(struct ctl *c, const struct ctl_fo *fo, struct ctl_peer_hello *h, struct err *err)
{
	return ctl_peer_open(c->conf, fo->target, "master", fo->old_epoch, 30000, h, err);
}

static int
ctl_fo_fail(struct ctl *c, const struct ctl_fo *fo, int step, const struct err *err)
{
	fprintf(stderr, "%s: failover step %d failed: %s\n", c->prog, step, err->msg);
	fprintf(stderr, "%s: state: steps 1..%d done; %s; run `castorctl failover --resume` to go on or"
	    " `castorctl failover --abort` to restart this server as the master%s\n", c->prog, fo->done,
	    fo->done >= 1 ? "castord is stopped, no server accepts mail" : "nothing changed yet",
	    fo->done >= 4 ? " (not possible any more: the peer is the master, --resume)" : "");
	return err->kind == ERR_FENCED || err->kind == ERR_PERM ? CTL_EXIT_PERM : CTL_EXIT_TEMP;
}

/* Failpoints ctl.failover.step1 .. step5, evaluated before each step
 * (tests: crash = castorctl dies there, error = the step fails). */
static int
ctl_fo_failpoint(int step, struct err *err)
{
	static const char *const names[] = { "", "ctl.failover.step1", "ctl.failover.step2",
		"ctl.failover.step3", "ctl.failover.step4", "ctl.failover.step5" };

	if (FAILPOINT(names[step]) < 0)
		return err_set(err, ERR_TEMP, "failpoint %s", names[step]);
	return 0;
}

/* Step 1: SIGQUIT castord and wait until it has exited. */
static int
ctl_fo_stop(struct ctl *c, struct ctl_fo *fo)
{
	const char *root = conf_dir(c->conf);
	struct ctl_server_info si;
	struct err err;
	double t;

	if (ctl_fo_failpoint(1, &err) < 0)
		return ctl_fo_fail(c, fo, 1, &err);
	t = clock_mono_s();
	ctl_server_info(c->conf, &si);
	fo->refused_from = t;
	if (ctl_server_stop(c->conf, fo->stop_timeout_s * 1000, &err) < 0)
		return ctl_fo_fail(c, fo, 1, &err);
	fo->done = 1;
	if (ctl_fo_save(root, fo, &err) < 0)
		return ctl_fo_fail(c, fo, 1, &err);
	if (si.running)
		ctl_fo_say(c, "[1/5] stop: SIGQUIT to castord pid %ld; listeners closed, children finished,"
		    " SHUTDOWN section ran; castord gone: %.2f s", (long)si.pid, clock_mono_s() - t);
	else
		ctl_fo_say(c, "[1/5] stop: castord was not running: %.2f s", clock_mono_s() - t);
	return 0;
}

/* Step 2: drain the target channel (confirms castord's SHUTDOWN drain). */
static int
ctl_fo_drain(struct ctl *c, struct ctl_fo *fo)
{
	const char *root = conf_dir(c->conf);
	char tmo[16], conf_path[4096];
	char *argv[9];
	struct err err;
	double t;
	int rc;

	if (ctl_fo_failpoint(2, &err) < 0)
		return ctl_fo_fail(c, fo, 2, &err);

	t = clock_mono_s();
	snprintf(tmo, sizeof(tmo), "%d", fo->drain_timeout_s);
	str_lcpy(conf_path, conf_filename(c->conf), sizeof(conf_path));
	argv[0] = (char *)"sync-client";
	argv[1] = (char *)"-C";
	argv[2] = conf_path;
	argv[3] = (char *)"--drain";
	argv[4] = (char *)"-n";
	argv[5] = fo->target;
	argv[6] = (char *)"--timeout";
	argv[7] = tmo;
	argv[8] = NULL;
	rc = ctl_run_program(argv, &err);
	if (rc != 0) {
		if (rc > 0)
			err_set(&err, rc == 2 ? ERR_FENCED : ERR_TEMP,
			    "sync-client --drain -n %s exited %d: the replica does not hold everything yet",
			    fo->target, rc);
		return ctl_fo_fail(c, fo, 2, &err);
	}
	fo->done = 2;
	if (ctl_fo_save(root, fo, &err) < 0)
		return ctl_fo_fail(c, fo, 2, &err);
	ctl_fo_say(c, "[2/5] drain: channel %s cursor at the end of the sync log: %.2f s", fo->target,
	    clock_mono_s() - t);
	return 0;
}

/* Step 3: every user's digest equal on the peer, or abort (master again);
 * on success the session is kept in fo->peer for step 4. */
static int
ctl_fo_verify(struct ctl *c, struct ctl_fo *fo)
{
	const char *root = conf_dir(c->conf);
	struct ctl_peer_hello h;
	struct ctl_compare cmp;
	struct ctl_peer *p;
	struct err err;
	double t;

	if (ctl_fo_failpoint(3, &err) < 0)
		return ctl_fo_fail(c, fo, 3, &err);
	t = clock_mono_s();
	p = ctl_fo_peer(c, fo, &h, &err);
	if (p == NULL)
		return ctl_fo_fail(c, fo, 3, &err);
	if (h.fenced || !str_eq(h.role, "replica")) {
		ctl_peer_close(&p);
		err_set(&err, ERR_FENCED, "the peer is %s at epoch %llu%s", h.role[0] ? h.role : "?",
		    (unsigned long long)h.epoch, h.fenced ? " and fenced us" : "");
		return ctl_fo_fail(c, fo, 3, &err);
	}
	if (ctl_compare_with_peer(c->store, p, NULL, &cmp, &err) < 0) {
		ctl_peer_close(&p);
		return ctl_fo_fail(c, fo, 3, &err);
	}
	if (cmp.differ > 0) {
		ctl_peer_close(&p);
		int rc;
		fprintf(stderr, "%s: [3/5] verify: %zu users differ on the replica (%s): the failover is"
		    " aborted\n", c->prog, cmp.differ, cmp.first);
		rc = ctl_fo_abort_now(c, fo);
		return rc != 0 ? rc : CTL_EXIT_CONFLICT;
	}
	if (h.epoch > fo->old_epoch)
		fo->old_epoch = h.epoch;
	fo->new_epoch = fo->old_epoch + 1;
	fo->done = 3;
	if (ctl_fo_save(root, fo, &err) < 0) {
		ctl_peer_close(&p);
		return ctl_fo_fail(c, fo, 3, &err);
	}
	fo->peer = p;   /* step 4 promotes on this session: one login less */
	ctl_fo_say(c, "[3/5] verify: %zu users identical on %s (per-user digests of every mailbox): %.2f s",
	    cmp.users, fo->target, clock_mono_s() - t);
	return 0;
}

/* Step 4: PROMOTE new_epoch on the peer (once promote_sent=1 is durable). */
static int
ctl_fo_promote(struct ctl *c, struct ctl_fo *fo)
{
	const char *root = conf_dir(c->conf);
	struct ctl_peer_hello h;
	struct ctl_peer *p;
	struct err err;
	double t;

	if (ctl_fo_failpoint(4, &err) < 0) {
		ctl_peer_close(&fo->peer);
		return ctl_fo_fail(c, fo, 4, &err);
	}
	t = clock_mono_s();
	fo->promote_sent = true;
	if (ctl_fo_save(root, fo, &err) < 0) {
		ctl_peer_close(&fo->peer);
		return ctl_fo_fail(c, fo, 4, &err);
	}
	if (fo->peer != NULL) {
		/* verified a moment ago on this session: a replica */
		p = fo->peer;
		fo->peer = NULL;
		memset(&h, 0, sizeof(h));
		str_lcpy(h.role, "replica", sizeof(h.role));
	} else {
		p = ctl_fo_peer(c, fo, &h, &err);
	}
	if (p == NULL)
		return ctl_fo_fail(c, fo, 4, &err);
	if (str_eq(h.role, "master") && h.epoch == fo->new_epoch) {
		/* a resumed failover whose PROMOTE arrived */
		ctl_peer_close(&p);
	} else if (h.fenced || !str_eq(h.role, "replica")) {
		ctl_peer_close(&p);
		err_set(&err, ERR_FENCED, "the peer is %s at epoch %llu", h.role[0] ? h.role : "?",
		    (unsigned long long)h.epoch);
		return ctl_fo_fail(c, fo, 4, &err);
	} else if (ctl_peer_promote(p, fo->new_epoch, &err) < 0) {
		ctl_peer_close(&p);
		return ctl_fo_fail(c, fo, 4, &err);
	} else {
		ctl_peer_close(&p);
	}
	fo->refused_until = clock_mono_s();
	fo->done = 4;
	if (ctl_fo_save(root, fo, &err) < 0)
		return ctl_fo_fail(c, fo, 4, &err);
	ctl_fo_say(c, "[4/5] promote: %s is the master now, epoch %llu; it accepts mail: %.2f s", fo->target,
	    (unsigned long long)fo->new_epoch, clock_mono_s() - t);
	return 0;
}

/* Step 5: this server becomes the new master's replica, castord started. */
static int
ctl_fo_rejoin(struct ctl *c, struct ctl_fo *fo)
{
	const char *root = conf_dir(c->conf);
	const char *role;
	uint64_t epoch;
	struct err err;
	double t;

	if (ctl_fo_failpoint(5, &err) < 0)
		return ctl_fo_fail(c, fo, 5, &err);
	t = clock_mono_s();
	if (store_server_get(c->store, &role, &epoch, &err) < 0)
		return ctl_fo_fail(c, fo, 5, &err);
	if (!str_eq(role, "replica") || epoch < fo->new_epoch) {
		if (store_server_set(c->store, "replica", fo->new_epoch > epoch ? fo->new_epoch : epoch,
		    &err) < 0)
			return ctl_fo_fail(c, fo, 5, &err);
	}
	store_set_read_only(c->store, true);
	log_notice("failover: demoted to replica epoch=%llu new_master_channel=%s",
	    (unsigned long long)fo->new_epoch, fo->target);
	if (ctl_fo_start(c, fo, "as a replica", &err) < 0) {
		fo->done = 4;
		return ctl_fo_fail(c, fo, 5, &err);
	}
	fo->done = 5;
	ctl_fo_remove(root);
	ctl_fo_say(c, "[5/5] rejoin: this server is a replica of %s at epoch %llu: %.2f s", fo->target,
	    (unsigned long long)fo->new_epoch, clock_mono_s() - t);
	return 0;
}

/* Steps 1..5, from the first not done yet; 0 done, else the exit code. */
static int
ctl_fo_run(struct ctl *c, struct ctl_fo *fo)
{
	int rc;

	if (fo->done < 1 && (rc = ctl_fo_stop(c, fo)) != 0)
		return rc;
	if (fo->done < 2 && (rc = ctl_fo_drain(c, fo)) != 0)
		return rc;
	if (fo->done < 3 && (rc = ctl_fo_verify(c, fo)) != 0)
		return rc;
	if (fo->done < 4 && (rc = ctl_fo_promote(c, fo)) != 0)
		return rc;
	if (fo->done < 5 && (rc = ctl_fo_rejoin(c, fo)) != 0)
		return rc;
	return 0;
}

/* The port of this server's syncd (the SERVICES entry running syncd), 0
 * when it runs none. */
static unsigned
ctl_fo_syncd_port(const struct conf *conf)
{
	char *path = conf_get_path(conf, "services_conf", "services.conf");
	struct servicesconf *sc = NULL;
	struct err e2;
	unsigned port = 0;

	if (path != NULL && servicesconf_load(path, &sc, &e2) == 0) {
		for (size_t i = 0; i < sc->n && port == 0; i++) {
			const struct servicesconf_entry *se = &sc->entries[i];
			const char *prog, *colon;
			uint32_t v;
			if (se->section != SCONF_SERVICES || se->argc < 1 || se->listen == NULL)
				continue;
			prog = strrchr(se->argv[0], '/');
			prog = prog != NULL ? prog + 1 : se->argv[0];
			colon = strrchr(se->listen, ':');
			if (str_eq(prog, "syncd") && str_to_u32(colon != NULL ? colon + 1 : se->listen, &v) == 0 &&
			    v > 0 && v < 65536)
				port = v;
		}
		servicesconf_free(sc);
	}
	free(path);
	return port;
}

/* Preflight: once promoted, the peer must replicate back to this server,
 * or mail delivered to it would never reach us.  Its HELLO lists its own
 * channels; one must name our syncd's port (host names differ with the
 * point of view, so the port is what is compared).  0, or -1 with err
 * saying what is missing. */
static int
ctl_fo_check_channel_back(const struct conf *conf, const char *to, const struct ctl_peer_hello *h,
    struct err *err)
{
	unsigned port = ctl_fo_syncd_port(conf);
	char theirs[1024] = "";
	size_t used = 0;

	if (h->nchannels < 0)
		return err_set(err, ERR_PERM, "preflight: %s does not say which sync channels it has (an older"
		    " castor?), so it cannot be told whether it would replicate back to this server; nothing"
		    " was changed (--force skips this check)", to);
	if (h->nchannels == 0)
		return err_set(err, ERR_PERM, "preflight: %s has no sync channel (sync_channels is empty in its"
		    " castor.conf): once promoted it would replicate to nobody and mail delivered to it would"
		    " never reach this server; give it a channel back to this server's syncd (port %u) and a"
		    " sync-client DAEMON entry (docs/failover.md), restart it, and try again; nothing was"
		    " changed (--force skips this check)", to, port);
	if (port == 0)
		return err_set(err, ERR_PERM, "preflight: this server runs no syncd (services.conf), so it cannot"
		    " be the replica of %s; nothing was changed (--force skips this check)", to);
	for (int i = 0; i < h->nchannels; i++) {
		const char *colon = strrchr(h->channels[i], ':');
		uint32_t v;
		if (colon != NULL && str_to_u32(colon + 1, &v) == 0 && v == port)
			return 0;
		if (used < sizeof(theirs))
			used += (size_t)snprintf(theirs + used, sizeof(theirs) - used, "%s%s", i ? " " : "",
			    h->channels[i]);
	}
	return err_set(err, ERR_PERM, "preflight: none of %s's sync channels (%s) points at this server's"
	    " syncd port %u: once promoted it would not replicate to this server; fix its castor.conf,"
	    " restart it, and try again; nothing was changed (--force skips this check)", to, theirs, port);
}

/* castorctl failover's command line. */
struct ctl_fo_args {
	const char *to, *log_file, *stop_s, *drain_s;
	bool resume, abort_, nostart, force;
};

/* --stop-timeout and --drain-timeout (defaults 300 and 120 s) into fo;
 * 0, or the usage error's exit code. */
static int
ctl_fo_timeouts(struct ctl *c, const struct ctl_fo_args *a, struct ctl_fo *fo)
{
	uint32_t v;

	fo->stop_timeout_s = 300;
	fo->drain_timeout_s = 120;
	if (a->stop_s != NULL) {
		if (str_to_u32(a->stop_s, &v) < 0 || v < 1)
			return ctl_usage_error(c, "--stop-timeout %s: seconds", a->stop_s);
		fo->stop_timeout_s = (int)v;
	}
	if (a->drain_s != NULL) {
		if (str_to_u32(a->drain_s, &v) < 0 || v < 1)
			return ctl_usage_error(c, "--drain-timeout %s: seconds", a->drain_s);
		fo->drain_timeout_s = (int)v;
	}
	return 0;
}

/* Step 0: the peer of `to` answers as a replica and has a channel back
 * to us (unless --force); the state file is written.  Nothing changes
 * when it fails.  t: when the command started its checks. */
static int
ctl_fo_preflight(struct ctl *c, struct ctl_fo *fo, const char *to, bool force, double t)
{
	struct ctl_peer_hello h;
	struct ctl_peer *p;
	struct err err;

	p = ctl_fo_peer(c, fo, &h, &err);
	if (p == NULL) {
		err_prefix(&err, "preflight: the replica is not reachable, nothing was changed");
		return ctl_fail(c, &err);
	}
	ctl_peer_close(&p);
	if (h.fenced || !str_eq(h.role, "replica")) {
		err_set(&err, ERR_FENCED, "preflight: the peer of %s is %s at epoch %llu%s; nothing was changed",
		    to, h.role[0] ? h.role : "?", (unsigned long long)h.epoch,
		    h.fenced ? " and fences us" : "");
		return ctl_fail(c, &err);
	}
	if (ctl_fo_check_channel_back(c->conf, to, &h, &err) < 0) {
		if (!force)
			return ctl_fail(c, &err);
		ctl_fo_say(c, "[0/5] --force: going on although %s", err.msg);
	}
	if (ctl_fo_save(conf_dir(c->conf), fo, &err) < 0)
		return ctl_fail(c, &err);
	ctl_fo_say(c, "[0/5] preflight: %s (%s) is a replica at epoch %llu, we are master at %llu: %.2f s",
	    to, h.serverid[0] ? h.serverid : "?", (unsigned long long)h.epoch,
	    (unsigned long long)fo->old_epoch, clock_mono_s() - t);
	return 0;
}

/* --to CHAN: a new failover from this master (role at epoch), none in
 * progress (have == 0); fills fo and runs the preflight. */
static int
ctl_fo_begin(struct ctl *c, struct ctl_fo *fo, const struct ctl_fo_args *a, int have, const char *role,
    uint64_t epoch)
{
	struct syncchan ch;
	struct ctl_server_info si;
	struct err err;
	double t = clock_mono_s();

	if (have == 1) {
		err_set(&err, ERR_PERM, "a failover to %s is in progress (steps 1..%d done):"
		    " castorctl failover --resume or --abort", fo->target, fo->done);
		return ctl_fail(c, &err);
	}
	if (!str_eq(role, "master")) {
		err_set(&err, ERR_PERM, "this server is a %s (epoch %llu): failover runs on the master",
		    role, (unsigned long long)epoch);
		return ctl_fail(c, &err);
	}
	memset(&ch, 0, sizeof(ch));
	if (syncchan_load(c->conf, a->to, &ch, &err) < 0)
		return ctl_fail(c, &err);
	str_lcpy(fo->target, a->to, sizeof(fo->target));
	str_lcpy(fo->sync_account, ch.authname, sizeof(fo->sync_account));
	syncchan_free(&ch);
	fo->old_epoch = epoch;
	fo->done = 0;
	fo->nostart = a->nostart;
	if (a->log_file != NULL)
		str_lcpy(fo->log, a->log_file, sizeof(fo->log));
	fo->started_ms = clock_wall_ms();
	ctl_server_info(c->conf, &si);
	fo->was_running = si.running;
	return ctl_fo_preflight(c, fo, a->to, a->force, t);
}

/* --resume / --abort: the loaded state fo gets what the state file does
 * not keep (the sync account, --castord-log), and says where it stands. */
static void
ctl_fo_reload(struct ctl *c, struct ctl_fo *fo, const struct ctl_fo_args *a)
{
	char sa[256] = "sync";
	struct syncchan ch;
	struct err err;

	memset(&ch, 0, sizeof(ch));
	if (syncchan_load(c->conf, fo->target, &ch, &err) == 0) {
		str_lcpy(sa, ch.authname, sizeof(sa));
		syncchan_free(&ch);
	}
	str_lcpy(fo->sync_account, sa, sizeof(fo->sync_account));
	if (a->log_file != NULL)
		str_lcpy(fo->log, a->log_file, sizeof(fo->log));
	ctl_fo_say(c, "failover to %s: steps 1..%d were done%s", fo->target, fo->done,
	    fo->promote_sent && fo->done < 4 ? "; PROMOTE may have been sent" : "");
}

/* --abort: refused once the peer is (or may be) the master; else this
 * server is started again as the master. */
static int
ctl_fo_abort(struct ctl *c, struct ctl_fo *fo)
{
	struct err err;

	if (fo->done >= 4) {
		err_set(&err, ERR_PERM, "the peer %s was promoted (epoch %llu): too late to abort;"
		    " castorctl failover --resume makes this server its replica", fo->target,
		    (unsigned long long)fo->new_epoch);
		return ctl_fail(c, &err);
	}
	if (fo->promote_sent) {
		struct ctl_peer_hello h;
		struct ctl_peer *p = ctl_fo_peer(c, fo, &h, &err);
		if (p == NULL) {
			err_prefix(&err, "cannot tell whether %s was promoted (abort needs to know)", fo->target);
			return ctl_fail(c, &err);
		}
		ctl_peer_close(&p);
		if (str_eq(h.role, "master") || h.fenced) {
			err_set(&err, ERR_PERM, "the peer %s is the master now (epoch %llu): too late to abort;"
			    " castorctl failover --resume", fo->target, (unsigned long long)h.epoch);
			return ctl_fail(c, &err);
		}
	}
	return ctl_fo_abort_now(c, fo);
}

/* The last lines of a failover that went through: totals since t_all. */
static void
ctl_fo_say_done(const struct ctl *c, const struct ctl_fo *fo, double t_all)
{
	ctl_fo_say(c, "failover done: %s is the master (epoch %llu), this server its replica; total %.2f s",
	    fo->target, (unsigned long long)fo->new_epoch, clock_mono_s() - t_all);
	if (fo->refused_from > 0 && fo->refused_until > fo->refused_from)
		ctl_fo_say(c, "deliveries were refused for %.2f s (from the stop of castord to the promotion)",
		    fo->refused_until - fo->refused_from);
}

int
ctl_cmd_failover(struct ctl *c, int argc, char **argv)
{
	struct ctl_fo_args a = { 0 };
	const struct ctl_opt opts[] = {
		{ "to", 't', &a.to, NULL, NULL },
		{ "resume", 0, NULL, NULL, &a.resume },
		{ "abort", 0, NULL, NULL, &a.abort_ },
		{ "castord-log", 0, &a.log_file, NULL, NULL },
		{ "no-start", 0, NULL, NULL, &a.nostart },
		{ "force", 0, NULL, NULL, &a.force },
		{ "stop-timeout", 0, &a.stop_s, NULL, NULL },
		{ "drain-timeout", 0, &a.drain_s, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL;
	int npos = 0, rc;
	const char *role, *root;
	uint64_t epoch;
	struct err err;
	struct ctl_fo fo;
	int have;
	double t_all;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl failover --to CHAN [--castord-log FILE] [--no-start] [--force]\n"
		    "                          [--stop-timeout SEC] [--drain-timeout SEC]\n"
		    "       castorctl failover --resume | --abort\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	free(pos);
	if (npos != 0 || (a.to != NULL) + a.resume + a.abort_ != 1)
		return ctl_usage_error(c, "failover --to CHAN | --resume | --abort");
	c->keep_root = true;  /* castord is started again as root, to bind what it binds */
	rc = ctl_open_store(c);
	if (rc != 0)
		return rc;
	root = conf_dir(c->conf);
	if (store_server_get(c->store, &role, &epoch, &err) < 0)
		return ctl_fail(c, &err);
	have = ctl_fo_load(root, &fo, &err);
	if (have < 0)
		return ctl_fail(c, &err);
	t_all = clock_mono_s();
	fo.t0 = t_all;
	rc = ctl_fo_timeouts(c, &a, &fo);
	if (rc != 0)
		return rc;

	if (a.to != NULL) {
		rc = ctl_fo_begin(c, &fo, &a, have, role, epoch);
		if (rc != 0)
			return rc;
	} else if (have == 0) {
		err_set(&err, ERR_NOTFOUND, "no failover in progress (%s/run/failover.state)", root);
		return ctl_fail(c, &err);
	} else {
		ctl_fo_reload(c, &fo, &a);
	}
	if (a.abort_)
		return ctl_fo_abort(c, &fo);
	fo.peer = NULL;
	rc = ctl_fo_run(c, &fo);
	ctl_peer_close(&fo.peer);
	if (rc == 0)
		ctl_fo_say_done(c, &fo, t_all);
	return rc;
}
