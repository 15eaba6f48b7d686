/*
 * syncd.c - the replica side of replication: a castord service (SERVICES
 * entry "syncd", port base+3) that speaks the sync protocol
 * (docs/sync-protocol.md) to a master's sync-client and applies what it
 * sends (syncapply.c).  One connection per process; a sync-client keeps
 * its connection for as long as it runs.
 *
 *     syncd [-C castor.conf] [-s]
 *
 * The loop: answer every frame that is already buffered, then make the
 * answers final (syncapply_sync: commits the upload group), send them,
 * and only then wait for more input, in child_wait_input() so a SIGQUIT
 * from castord is seen at once.  A SIGQUIT while a burst is being
 * processed is honoured after the command in hand (the checkpoint): the
 * client gets "* BYE" and reconnects after its backoff.
 *
 * A master heartbeats an idle session (NOOP every sync_heartbeat, a few
 * seconds); a session with no command for sync_idle_timeout (default
 * 5 min) is a master that went away without closing (a half-open
 * connection, a blackholed path): it gets "* BYE [TEMP]" and the process
 * is freed for the next connection.
 *
 * Login: AUTHENTICATE PLAIN without TLS only from a local peer and with
 * allowplaintext_loopback: yes; every attempt takes a turn in the
 * shared authentication penalty table (lib/authpen.h) like imapd's and
 * pop3d's, keyed by the authname and the peer's address.
 *
 * Limits before login (docs/security.md): frames are held to
 * preauth_max_line (8 KiB) for a line or a literal, so an unauthenticated
 * peer announcing a large literal gets "* BYE [TOOBIG]" instead of
 * "+ go"; the login must complete within sync_preauth_timeout of the
 * greeting; every frame, once started, within sync_command_timeout.
 * These deadlines are absolute: bytes arriving do not push them back.
 */
#include "master/child.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/authpen.h"
#include "lib/clock.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "session/session_tls.h"
#include "sync/syncapply.h"
#include "sync/syncchan.h"
#include "sync/syncsess.h"
#include "sync/syncstat.h"

#define SYNCD_IDLE_MS (5 * 60 * 1000)
#define SYNCD_IO_MS (5 * 60 * 1000)
#define SYNCD_OUT_HIGH (256u * 1024)
#define SYNCD_ZSTD_LEVEL 3
#define SYNCD_GROUP_WAIT_MS 3    /* input ran dry inside an upload group */
#define SYNCD_PREAUTH_MS (60 * 1000)          /* sync_preauth_timeout */
#define SYNCD_COMMAND_MS (10 * 60 * 1000)     /* sync_command_timeout */
#define SYNCD_PREAUTH_MAX_DEFAULT (8u * 1024) /* preauth_max_line */

static struct store *syncd_store;
static struct tls_ctx *syncd_tls;
static char *syncd_password;
static const char *syncd_authname = "sync";
static const char *syncd_servername = "castor";
static int syncd_idle_ms = SYNCD_IDLE_MS;
static struct authpen *syncd_pen;          /* ROOT/run/authpen (NULL: not throttling) */
static bool syncd_plain_loopback;         /* allowplaintext_loopback */
static int syncd_preauth_ms = SYNCD_PREAUTH_MS;
static int syncd_command_ms = SYNCD_COMMAND_MS;
static struct syncproto_limits syncd_preauth_lim;   /* frames before login */
static struct syncapply_opts syncd_dl;   /* deletion thresholds from the configuration */
static char **syncd_channels;            /* sync_channels as NAME=HOST:PORT (HELLO CHANNELS) */
static size_t syncd_nchannels;

/* This server's own channels, for the HELLO answer. */
static void
syncd_load_channels(const struct conf *conf)
{
	size_t n = 0;
	char **names = syncchan_names(conf, &n);

	syncd_channels = xcalloc(n + 1, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		struct syncchan ch;
		struct err e2;
		char line[600];
		memset(&ch, 0, sizeof(ch));
		if (syncchan_load(conf, names[i], &ch, &e2) < 0) {
			log_warn("channel not announced channel=%s error=%s", names[i], log_q(e2.msg));
			continue;
		}
		snprintf(line, sizeof(line), "%s=%s:%u", ch.name, ch.host, ch.port);
		syncd_channels[syncd_nchannels++] = xstrdup(line);
		syncchan_free(&ch);
	}
	conf_list_free(names);
}

static int
syncd_init(const struct conf *conf, struct err *err)
{
	struct store_opts opts;
	char *cert, *key, *pwfile;
	const char *pw;

	store_opts_from_conf(&opts, conf);
	/* a replica stores what its master accepted: no quota of its own */
	opts.quota_default_bytes = 0;
	opts.quota_default_messages = 0;
	syncd_store = store_open(conf_dir(conf), &opts, err);
	if (syncd_store == NULL)
		return -1;
	store_set_sync_apply(syncd_store, true);
	syncd_authname = conf_get_str(conf, "sync_authname", "sync");
	syncd_servername = conf_get_str(conf, "servername", "castor");
	{
		int64_t idle = conf_get_duration_ms(conf, "sync_idle_timeout", SYNCD_IDLE_MS);
		if (idle < 1000 || idle > 24 * 3600 * 1000)
			return err_set(err, ERR_INVALID, "sync_idle_timeout must be between 1s and 24h");
		syncd_idle_ms = (int)idle;
	}
	{
		int64_t pre = conf_get_duration_ms(conf, "sync_preauth_timeout", SYNCD_PREAUTH_MS);
		int64_t cmd = conf_get_duration_ms(conf, "sync_command_timeout", SYNCD_COMMAND_MS);
		uint64_t maxl = conf_get_bytes(conf, "preauth_max_line", SYNCD_PREAUTH_MAX_DEFAULT);

		if (pre < 1000 || pre > 24 * 3600 * 1000 || cmd < 1000 || cmd > 24 * 3600 * 1000)
			return err_set(err, ERR_INVALID,
				"sync_preauth_timeout and sync_command_timeout must be between 1s and 24h");
		syncd_preauth_ms = (int)pre;
		syncd_command_ms = (int)cmd;
		if (maxl < 1024)
			maxl = 1024;
		if (maxl > SYNCPROTO_MAX_LINE_DEFAULT)
			maxl = SYNCPROTO_MAX_LINE_DEFAULT;
		syncproto_limits_default(&syncd_preauth_lim);
		syncd_preauth_lim.max_line = (size_t)maxl;
		syncd_preauth_lim.max_literal = (size_t)maxl;
		syncd_preauth_lim.max_frame = 2 * (size_t)maxl;
		syncd_preauth_lim.max_items = 256;
	}
	syncd_dl.set_limits = true;
	syncd_dl.delete_limit = (uint64_t)conf_get_int(conf, "sync_delete_limit", 50);
	syncd_dl.delete_fraction = conf_get_double(conf, "sync_delete_fraction", 0.5);
	syncd_dl.delete_fraction_min = (uint64_t)conf_get_int(conf, "sync_delete_fraction_min", 4);
	syncd_dl.user_delete_limit = (uint64_t)conf_get_int(conf, "sync_user_delete_limit", 5);
	syncd_load_channels(conf);
	pw = conf_get_str(conf, "sync_password", NULL);
	if (pw != NULL && pw[0] != '\0') {
		syncd_password = xstrdup(pw);
	} else if ((pwfile = conf_get_path(conf, "sync_password_file", NULL)) != NULL) {
		int rc = syncchan_read_password_file(pwfile, &syncd_password, err);
		free(pwfile);
		if (rc < 0)
			return -1;
	}
	syncd_plain_loopback = conf_get_bool(conf, "allowplaintext_loopback", false);
	if (conf_get_bool(conf, "auth_penalty", true)) {
		struct err e2;
		struct buf path = BUF_INIT;
		buf_printf(&path, "%s/run/authpen", conf_dir(conf));
		syncd_pen = authpen_open(buf_cstr(&path), conf_get_duration_ms(conf, "auth_penalty_max",
			15000), conf_get_duration_ms(conf, "auth_penalty_decay", 60000), &e2);
		if (syncd_pen == NULL)
			log_warn("authentication penalty table unavailable, failed logins are not"
				" throttled across connections (fail open) error=%s", log_q(e2.msg));
		buf_free(&path);
	}
	cert = conf_get_path(conf, "tls_cert_file", "tls/cert.pem");
	key = conf_get_path(conf, "tls_key_file", "tls/key.pem");
	if (access(cert, R_OK) == 0 && access(key, R_OK) == 0) {
		struct err e2;
		syncd_tls = session_tls_server_ctx(conf, &e2);
		if (syncd_tls == NULL)
			log_warn("no TLS on the sync service error=%s", log_q(e2.msg));
	}
	free(cert);
	free(key);
	return 0;
}

/* castord reloaded: a renewed certificate for the next connections (a
 * channel already up keeps the one it started with). */
static void
syncd_reload(const struct conf *conf)
{
	session_tls_reload(&syncd_tls, conf);
}

static void
syncd_fini(void)
{
	tls_ctx_free(&syncd_tls);
	authpen_close(&syncd_pen);
	store_close(&syncd_store);
	free(syncd_password);
	for (size_t i = 0; i < syncd_nchannels; i++)
		free(syncd_channels[i]);
	free(syncd_channels);
}

struct syncd_conn {
	struct syncsess *sess;
	struct syncapply *app;
	const char *peer;
	int64_t started_ms;          /* wall clock, unix ms */
	int64_t status_ms;           /* monotonic: last incoming status written */
	int64_t last_change_ms;      /* wall clock: last APPLY or upload that committed */
	uint64_t seen_changes;       /* applied + uploads at the last look */
};

/* The incoming side of replication, for castorctl status on a replica:
 * run/sync-in-<CHANNEL>.status (key=value lines, syncstat's format),
 * rewritten at most once a second while changes arrive, and at the end
 * of the session.  Not durable: a report, not state. */
static void
syncd_incoming_status(struct syncd_conn *sc, bool ended)
{
	struct syncapply_stats st;
	const char *id, *chan;
	uint64_t epoch;
	int64_t now = clock_mono_ms();
	char name[160];
	struct buf t = BUF_INIT;
	struct err err;

	if (!syncapply_client(sc->app, &id, &epoch))
		return;
	syncapply_stats(sc->app, &st);
	if (st.applied + st.uploads != sc->seen_changes) {
		sc->seen_changes = st.applied + st.uploads;
		sc->last_change_ms = (int64_t)clock_wall_ms();
	}
	if (!ended && sc->status_ms != 0 && now - sc->status_ms < 1000)
		return;
	sc->status_ms = now;
	chan = strrchr(id, '/');
	chan = chan != NULL && chan[1] != '\0' && chan[1] != '?' ? chan + 1 : "unknown";
	snprintf(name, sizeof(name), "in-%s", chan);
	buf_printf(&t, "master=%s\nepoch=%llu\npeer=%s\npid=%ld\nstate=%s\nsession_start_ms=%lld\n"
		"last_change_ms=%lld\napplied=%llu\nrecords=%llu\nuploads=%llu\nrefused=%llu\n"
		"conflicts=%llu\nupdated_ms=%lld\n", id, (unsigned long long)epoch, sc->peer,
		(long)getpid(), ended ? "ended" : "connected", (long long)sc->started_ms,
		(long long)sc->last_change_ms, (unsigned long long)st.applied,
		(unsigned long long)st.records, (unsigned long long)st.uploads,
		(unsigned long long)st.refused, (unsigned long long)st.conflicts,
		(long long)(int64_t)clock_wall_ms());
	if (syncstat_status_write(store_root(syncd_store), name, buf_cstr(&t), &err) < 0)
		log_debug("incoming status not written error=%s", log_q(err.msg));
	buf_free(&t);
}

static int
syncd_send(struct syncd_conn *sc)
{
	struct err err;

	syncapply_sync(sc->app, syncsess_out(sc->sess));
	if (syncsess_flush(sc->sess, &err) < 0) {
		log_info("sync client gone error=%s", log_q(err.msg));
		return -1;
	}
	return 0;
}

static void
syncd_close(struct child_conn *c, struct syncd_conn *sc)
{
	struct syncapply_stats st;

	syncd_incoming_status(sc, true);
	syncapply_stats(sc->app, &st);
	log_info("session end peer=%s commands=%llu applied=%llu records=%llu uploads=%llu"
		" upload_bytes=%llu group_commits=%llu refused=%llu conflicts=%llu wire_in=%llu wire_out=%llu",
		log_q(c->peer), (unsigned long long)st.commands, (unsigned long long)st.applied,
		(unsigned long long)st.records, (unsigned long long)st.uploads,
		(unsigned long long)st.upload_bytes, (unsigned long long)st.group_commits,
		(unsigned long long)st.refused,
		(unsigned long long)st.conflicts, (unsigned long long)syncsess_wire_in(sc->sess),
		(unsigned long long)syncsess_wire_out(sc->sess));
	syncapply_free(&sc->app);
	/* the conn owns the fds, but the skeleton closes them: hand back */
	syncsess_free(&sc->sess);
	free(sc);
	c->ctx = NULL;
}

/* A deadline passed (phase login or command): BYE, log.  The idle one
 * is the "master silent" case in the loop. */
static void
syncd_deadline_bye(struct child_conn *c, struct syncd_conn *sc, const char *phase)
{
	log_notice("deadline passed service=syncd phase=%s peer=%s", phase, log_q(c->peer));
	buf_puts(syncsess_out(sc->sess), strcmp(phase, "login") == 0 ?
		"* BYE [TEMP] \"login not completed in time\"\r\n" :
		"* BYE [TEMP] \"command not completed in time\"\r\n");
	(void)syncd_send(sc);
}

/* The connection: its own fds, timeouts, the login deadline, and the
 * handshake of an implicit-TLS port.  NULL when it fails (logged). */
static struct syncd_conn *
syncd_open(struct child_conn *c, int64_t login_deadline)
{
	struct syncd_conn *sc = xcalloc(1, sizeof(*sc));
	struct conn *cn;
	struct err err;
	int rfd = dup(c->rfd), wfd = c->wfd == c->rfd ? rfd : dup(c->wfd);

	if (rfd < 0 || wfd < 0) {
		log_error("dup failed");
		free(sc);
		return NULL;
	}
	cn = conn_new(rfd, wfd);
	conn_set_read_timeout(cn, SYNCD_IO_MS);
	conn_set_write_timeout(cn, SYNCD_IO_MS);
	conn_set_read_deadline(cn, login_deadline);   /* an implicit-TLS handshake too */
	c->ctx = sc;
	if (c->tls) {
		if (syncd_tls == NULL || conn_starttls(cn, syncd_tls, NULL, &err) < 0) {
			if (conn_read_deadline_passed(cn))
				log_notice("deadline passed service=syncd phase=login peer=%s in=tls-handshake",
					log_q(c->peer));
			else
				log_info("TLS failed peer=%s", log_q(c->peer));
			conn_free(&cn);
			free(sc);
			c->ctx = NULL;
			return NULL;
		}
	}
	sc->sess = syncsess_new(cn, true, &syncd_preauth_lim);
	return sc;
}

/* The applier of this session, with what the connection may do, and
 * its greeting (or the TLS-started banner). */
static void
syncd_start(struct child_conn *c, struct syncd_conn *sc)
{
	struct syncapply_opts o;
	static char peer_addr[64];   /* one connection per process; outlives the syncapply */

	sc->peer = c->peer;
	sc->started_ms = (int64_t)clock_wall_ms();
	o = syncd_dl;
	o.servername = syncd_servername;
	o.authname = syncd_authname;
	o.password = syncd_password;
	o.auth_allowed = (c->loopback && syncd_plain_loopback) || c->tls;
	o.auth_rule = c->tls ? "tls" : "loopback";
	o.pen = syncd_pen;
	o.peer = c->peer;
	authpen_peer_addr(c->peer, peer_addr, sizeof(peer_addr));
	o.peer_addr = peer_addr;
	o.starttls_possible = syncd_tls != NULL && !c->tls;
	o.compress_allowed = true;
	o.channels = (const char *const *)syncd_channels;
	o.nchannels = syncd_nchannels;
	sc->app = syncapply_new(syncd_store, &o);
	if (c->tls)
		syncapply_tls_started(sc->app, syncsess_out(sc->sess));
	else
		syncapply_greeting(sc->app, syncsess_out(sc->sess));
	log_info("session start peer=%s tls=%d", log_q(c->peer), c->tls ? 1 : 0);
}

/* Nothing buffered: keep an upload group open while more comes, else
 * send the answers and wait for input.  false: end the session (*end
 * says how). */
static bool
syncd_wait(struct child_conn *c, struct syncd_conn *sc, bool authed, int64_t login_deadline,
	enum child_end *end)
{
	struct conn *cn = syncsess_conn(sc->sess);
	int rc;

	if (!syncsess_pending(sc->sess) && syncapply_group_open(sc->app) &&
	    child_wait_input(conn_rfd(cn), SYNCD_GROUP_WAIT_MS) == CHILD_WAIT_INPUT)
		; /* more UPLOADs on their way: keep the group open */
	else if (!syncsess_pending(sc->sess)) {
		if (syncd_send(sc) < 0)
			return false;
		int left = authed ? syncd_idle_ms : conn_ms_until(login_deadline);

		rc = child_wait_input(conn_rfd(cn), left < syncd_idle_ms ? left : syncd_idle_ms);
		if (rc == CHILD_WAIT_QUIT) {
			*end = CHILD_END_QUIT;
			return false;
		}
		if (rc == CHILD_WAIT_TIMEOUT && !authed && left < syncd_idle_ms) {
			syncd_deadline_bye(c, sc, "login");
			return false;
		}
		if (rc == CHILD_WAIT_TIMEOUT) {
			log_info("master silent peer=%s: no command for %d ms (sync_idle_timeout),"
				" closing service=syncd phase=idle", log_q(c->peer), syncd_idle_ms);
			buf_puts(syncsess_out(sc->sess), "* BYE [TEMP] \"idle too long\"\r\n");
			(void)syncd_send(sc);
			return false;
		}
	}
	return true;
}

/* Read one frame under its deadline.  NULL: end the session (EOF, a
 * deadline, a protocol error answered, a read error; logged). */
static struct syncproto_value *
syncd_read(struct child_conn *c, struct syncd_conn *sc, bool authed, int64_t login_deadline)
{
	struct conn *cn = syncsess_conn(sc->sess);
	struct syncproto_value *frame = NULL;
	struct err err;
	int64_t cmd_deadline;
	int rc;

	/* one frame per read: it has its deadline from here */
	cmd_deadline = clock_mono_ms() + syncd_command_ms;
	conn_set_read_deadline(cn, authed ? cmd_deadline :
		conn_deadline_min(login_deadline, cmd_deadline));
	rc = syncsess_read(sc->sess, &frame, &err);
	if (rc == 0)
		return NULL;
	if (rc < 0 && conn_read_deadline_passed(cn)) {
		syncapply_sync(sc->app, syncsess_out(sc->sess));
		syncd_deadline_bye(c, sc, !authed && login_deadline <= cmd_deadline ?
			"login" : "command");
		return NULL;
	}
	if (rc < 0) {
		if (err.kind == ERR_INVALID || err.kind == ERR_TOOBIG || err.kind == ERR_CORRUPT) {
			log_warn("protocol error peer=%s error=%s", log_q(c->peer), log_q(err.msg));
			syncapply_protocol_error(sc->app, &err, syncsess_out(sc->sess));
			(void)syncd_send(sc);
		} else {
			syncapply_sync(sc->app, syncsess_out(sc->sess));
			log_info("read failed peer=%s error=%s", log_q(c->peer), log_q(err.msg));
		}
		return NULL;
	}
	return frame;
}

/* Carry out what the applier asked after a frame: close, STARTTLS,
 * COMPRESS.  -1: end the session; 1: done, read the next frame; 0: go on. */
static int
syncd_act(struct child_conn *c, struct syncd_conn *sc, enum syncapply_action act)
{
	struct err err;

	if (act == SYNCAPPLY_CLOSE) {
		(void)syncd_send(sc);
		return -1;
	}
	if (act == SYNCAPPLY_STARTTLS) {
		if (syncd_send(sc) < 0 ||
		    conn_starttls(syncsess_conn(sc->sess), syncd_tls, NULL, &err) < 0) {
			log_info("STARTTLS failed peer=%s", log_q(c->peer));
			return -1;
		}
		syncapply_tls_started(sc->app, syncsess_out(sc->sess));
		return 1;
	}
	if (act == SYNCAPPLY_COMPRESS) {
		if (syncd_send(sc) < 0 ||
		    syncsess_compress_start(sc->sess, SYNCD_ZSTD_LEVEL, &err) < 0) {
			log_warn("COMPRESS failed peer=%s", log_q(c->peer));
			return -1;
		}
		return 1;
	}
	return 0;
}

static enum child_end
syncd_handle(struct child_conn *c)
{
	int64_t login_deadline = clock_mono_ms() + syncd_preauth_ms;
	bool authed = false;
	struct syncd_conn *sc;
	enum child_end end = CHILD_END_DONE;

	sc = syncd_open(c, login_deadline);
	if (sc == NULL)
		return CHILD_END_DONE;
	syncd_start(c, sc);
	for (;;) {
		struct syncproto_value *frame;
		enum syncapply_action act;
		int rc;

		if (!syncd_wait(c, sc, authed, login_deadline, &end))
			break;
		frame = syncd_read(c, sc, authed, login_deadline);
		if (frame == NULL)
			break;
		act = syncapply_frame(sc->app, frame, syncsess_out(sc->sess));
		syncproto_value_free(&frame);
		syncd_incoming_status(sc, false);
		if (!authed && syncapply_authenticated(sc->app)) {
			/* logged in: the protocol's own limits from the next frame on */
			struct syncproto_limits lim;

			syncproto_limits_default(&lim);
			syncsess_set_limits(sc->sess, &lim);
			authed = true;
		}
		rc = syncd_act(c, sc, act);
		if (rc < 0)
			break;
		if (rc > 0)
			continue;
		if (syncsess_out(sc->sess)->len >= SYNCD_OUT_HIGH && syncd_send(sc) < 0)
			break;
		if (child_quit_requested()) {
			end = CHILD_END_QUIT;
			break;
		}
	}
	if (end == CHILD_END_QUIT) {
		/* commit and send what is answered; goodbye() adds the BYE */
		(void)syncd_send(sc);
		return end;
	}
	syncd_close(c, sc);
	return end;
}

static void
syncd_goodbye(struct child_conn *c)
{
	struct syncd_conn *sc = c->ctx;

	if (sc == NULL)
		return;
	buf_puts(syncsess_out(sc->sess), "* BYE [TEMP] \"server shutting down\"\r\n");
	(void)syncd_send(sc);
	syncd_close(c, sc);
}

static const struct child_ops syncd_ops = {
	.name = "syncd",
	.init = syncd_init,
	.handle = syncd_handle,
	.goodbye = syncd_goodbye,
	.fini = syncd_fini,
	.reload = syncd_reload,
};

int
main(int argc, char **argv)
{
	return child_main(argc, argv, &syncd_ops);
}
