/*
 * pop3_cmd.c - one POP3 session: AUTHORIZATION (USER/PASS, AUTH PLAIN,
 * STLS, CAPA), TRANSACTION (STAT LIST UIDL RETR TOP DELE RSET NOOP) and
 * UPDATE (QUIT), with the response codes of RFC 2449 and 3206
 * ([IN-USE], [AUTH], [SYS/TEMP], [SYS/PERM]).
 *
 * Output is buffered and flushed when no pipelined input is waiting.
 * After every command the quit checkpoint runs: on a shutdown the
 * client gets "-ERR [SYS/TEMP]" (pop3d_goodbye) and nothing DELE'd is
 * removed (there was no UPDATE state).  A connection that ends without
 * QUIT likewise removes nothing.
 *
 * Deadlines (absolute; docs/security.md): login within
 * pop3_preauth_timeout of the greeting, each command line (with an AUTH
 * continuation) within pop3_command_timeout of its first byte, and
 * autologout after pop3_idle_timeout without a command.  A missed one
 * gets "-ERR" and a "deadline passed service=pop3d phase=..." log line.
 */
#include "pop3/pop3.h"
#include "pop3/pop3_parse.h"

#include "lib/buf.h"
#include "lib/clock.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/sasl.h"
#include "lib/str.h"
#include "session/session_auth.h"
#include "session/session_store.h"
#include "sync/synchook.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum pop3_state { POP3_AUTHORIZATION, POP3_TRANSACTION };

struct pop3_sess {
	struct child_conn *sc;
	struct conn *conn;
	enum pop3_state state;
	struct session_auth auth;
	char user_given[POP3_ARG_MAX + 1];   /* after USER, before PASS */
	bool have_user;
	struct pop3_drop drop;
	bool have_drop;
	bool done;                           /* QUIT seen or the connection must end */
};

static void pop3_say(struct pop3_sess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
pop3_say(struct pop3_sess *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	conn_puts(s->conn, line);
	conn_write(s->conn, "\r\n", 2);
}

static bool
pop3_plaintext_ok(struct pop3_sess *s)
{
	return session_auth_plaintext_ok(&s->auth, pop3d_g.conf, conn_is_tls(s->conn));
}

static void
pop3_cmd_capa(struct pop3_sess *s)
{
	pop3_say(s, "+OK Capability list follows");
	pop3_say(s, "TOP");
	pop3_say(s, "UIDL");
	pop3_say(s, "RESP-CODES");
	pop3_say(s, "AUTH-RESP-CODE");
	pop3_say(s, "PIPELINING");
	pop3_say(s, "EXPIRE NEVER");
	pop3_say(s, "IMPLEMENTATION Castor");
	if (s->state == POP3_AUTHORIZATION) {
		if (pop3_plaintext_ok(s)) {
			pop3_say(s, "USER");
			pop3_say(s, "SASL PLAIN");
		}
		if (pop3d_g.tls != NULL && !conn_is_tls(s->conn))
			pop3_say(s, "STLS");
	}
	pop3_say(s, ".");
}

/* After a good password: lock and load the maildrop. */
static void
pop3_enter_transaction(struct pop3_sess *s, const char *user)
{
	struct err err = { 0 };
	int rc;

	if (session_store_check_role(pop3d_g.st, &err) < 0) {
		log_error("role check failed error=%s", log_q(err.msg));
		pop3_say(s, "-ERR [SYS/TEMP] Temporary server error, try again later");
		return;
	}
	rc = pop3_drop_open(&s->drop, pop3d_g.st, user, &err);
	if (rc == 1) {
		log_notice("maildrop in use user=%s peer=%s", log_q(user), log_q(s->sc->peer));
		pop3_say(s, "-ERR [IN-USE] Mailbox is locked by another POP3 session");
		return;
	}
	if (rc < 0) {
		log_error("maildrop open failed user=%s error=%s", log_q(user), log_q(err.msg));
		pop3_say(s, "-ERR [SYS/TEMP] Cannot open the mailbox, try again later");
		return;
	}
	s->have_drop = true;
	s->state = POP3_TRANSACTION;
	pop3_say(s, "+OK Logged in, %zu messages (%llu octets)", s->drop.n,
		(unsigned long long)s->drop.size_live);
}

/* A password login (PASS or AUTH PLAIN): check, count, delay, answer. */
static void
pop3_login(struct pop3_sess *s, const char *authzid, const char *login, const char *password)
{
	char user[STORE_USER_NAME_MAX + 1];
	struct err err = { 0 };
	int rc;

	rc = session_auth_login(&s->auth, pop3d_g.st, pop3d_g.conf, authzid, login, password, user,
		sizeof(user), &err);
	if (rc < 0) {
		pop3_say(s, "-ERR [SYS/TEMP] Temporary server error, try again later");
		return;
	}
	if (rc == 0) {
		if (s->auth.throttled) {    /* the password was not checked */
			pop3_say(s, "-ERR [SYS/TEMP] Too many failed logins, try again later");
			s->done = session_auth_give_up(&s->auth);
		} else if (session_auth_give_up(&s->auth)) {
			pop3_say(s, "-ERR [AUTH] Too many authentication failures");
			s->done = true;
		} else {
			pop3_say(s, "-ERR [AUTH] Authentication failed");
		}
		return;
	}
	pop3_enter_transaction(s, user);
}

static void
pop3_cmd_pass(struct pop3_sess *s, const struct pop3_cmd *cmd)
{
	char pw[POP3_ARG_MAX + 1];

	if (!s->have_user) {
		pop3_say(s, "-ERR USER first");
		return;
	}
	s->have_user = false;
	snprintf(pw, sizeof(pw), "%.*s", (int)cmd->arg_len, cmd->arg);
	pop3_login(s, NULL, s->user_given, pw);
	explicit_bzero(pw, sizeof(pw));
}

static void
pop3_cmd_auth(struct pop3_sess *s, const struct pop3_cmd *cmd)
{
	struct sasl_plain sp;
	struct err err = { 0 };
	const char *resp = cmd->arg2;
	size_t resp_len = cmd->arg2_len;

	if (cmd->arg_len == 0) {
		/* RFC 1734: AUTH without a mechanism lists them */
		pop3_say(s, "+OK");
		if (pop3_plaintext_ok(s))
			pop3_say(s, "PLAIN");
		pop3_say(s, ".");
		return;
	}
	if (cmd->arg_len != 5 || !str_has_prefix_ci(cmd->arg, "PLAIN")) {
		pop3_say(s, "-ERR Unsupported authentication mechanism");
		return;
	}
	if (!pop3_plaintext_ok(s)) {
		pop3_say(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections");
		return;
	}
	if (resp_len == 0) {
		const char *line;
		size_t len;
		int r;

		pop3_say(s, "+ ");
		if (conn_flush(s->conn, &err) < 0) {
			s->done = true;
			return;
		}
		r = conn_read_line(s->conn, POP3_LINE_MAX, &line, &len, &err);
		if (r <= 0) {
			if (r < 0 && err.kind == ERR_TOOBIG) {
				pop3_say(s, "-ERR Response too long");
				return;
			}
			s->done = true;
			return;
		}
		if (len == 1 && line[0] == '*') {
			pop3_say(s, "-ERR Authentication cancelled");
			return;
		}
		resp = line;
		resp_len = len;
	} else if (resp_len == 1 && resp[0] == '=') {
		resp_len = 0;  /* RFC 5034: "=" is an empty initial response */
	}
	if (sasl_plain_decode(resp, resp_len, &sp, &err) < 0) {
		session_auth_failed(&s->auth, NULL, err.msg);
		if (session_auth_give_up(&s->auth)) {
			pop3_say(s, "-ERR [AUTH] Too many authentication failures");
			s->done = true;
		} else {
			pop3_say(s, "-ERR [AUTH] Invalid SASL PLAIN response");
		}
		return;
	}
	pop3_login(s, sp.authzid, sp.authcid, sp.passwd);
	sasl_plain_clear(&sp);
}

static void
pop3_cmd_stls(struct pop3_sess *s)
{
	struct err err = { 0 };

	if (pop3d_g.tls == NULL) {
		pop3_say(s, "-ERR STLS not available");
		return;
	}
	if (conn_is_tls(s->conn)) {
		pop3_say(s, "-ERR TLS already active");
		return;
	}
	pop3_say(s, "+OK Begin TLS negotiation");
	if (conn_starttls(s->conn, pop3d_g.tls, NULL, &err) < 0) {
		log_notice("TLS handshake failed peer=%s error=%s", log_q(s->sc->peer), log_q(err.msg));
		s->done = true;
		return;
	}
	s->have_user = false;  /* forget what was said in the clear */
	log_info("stls peer=%s tls=%s", log_q(s->sc->peer), log_q(conn_tls_desc(s->conn)));
}

/* Message number n (1-based) -> index, answering the error itself. */
static bool
pop3_msg_index(struct pop3_sess *s, uint32_t n, size_t *i_r)
{
	if (n == 0 || n > s->drop.n) {
		pop3_say(s, "-ERR No such message");
		return false;
	}
	if (s->drop.m[n - 1].deleted) {
		pop3_say(s, "-ERR Message %u already deleted", n);
		return false;
	}
	*i_r = n - 1;
	return true;
}

static void
pop3_cmd_list(struct pop3_sess *s, const struct pop3_cmd *cmd, bool uidl)
{
	char id[64];
	size_t i;

	if (cmd->has_msg) {
		if (!pop3_msg_index(s, cmd->msg, &i))
			return;
		if (uidl) {
			pop3_drop_uidl(&s->drop, i, id, sizeof(id));
			pop3_say(s, "+OK %u %s", cmd->msg, id);
		} else {
			pop3_say(s, "+OK %u %llu", cmd->msg, (unsigned long long)s->drop.m[i].size);
		}
		return;
	}
	if (uidl)
		pop3_say(s, "+OK Unique-ID listing follows");
	else
		pop3_say(s, "+OK %zu messages (%llu octets)", s->drop.n - s->drop.ndeleted,
			(unsigned long long)s->drop.size_live);
	for (i = 0; i < s->drop.n; i++) {
		if (s->drop.m[i].deleted)
			continue;
		if (uidl) {
			pop3_drop_uidl(&s->drop, i, id, sizeof(id));
			pop3_say(s, "%zu %s", i + 1, id);
		} else {
			pop3_say(s, "%zu %llu", i + 1, (unsigned long long)s->drop.m[i].size);
		}
	}
	pop3_say(s, ".");
}

static void
pop3_cmd_retr(struct pop3_sess *s, const struct pop3_cmd *cmd, bool top)
{
	struct store_blob b;
	struct buf out = BUF_INIT;
	struct err err = { 0 };
	size_t i;

	if (!pop3_msg_index(s, cmd->msg, &i))
		return;
	if (store_blob_map(s->drop.u, s->drop.m[i].guid, &b, &err) < 0) {
		log_error("message read failed user=%s uid=%u error=%s", log_q(s->drop.user),
			s->drop.m[i].uid, log_q(err.msg));
		pop3_say(s, "-ERR [SYS/TEMP] Cannot read the message, try again later");
		return;
	}
	pop3_parse_encode(&out, b.data, b.len, top ? (int64_t)cmd->lines : -1);
	store_blob_release(&b);
	if (top)
		pop3_say(s, "+OK Top of message follows");
	else
		pop3_say(s, "+OK %llu octets", (unsigned long long)s->drop.m[i].size);
	conn_write(s->conn, out.data, out.len);
	conn_write(s->conn, ".\r\n", 3);
	buf_free(&out);
}

static void
pop3_cmd_dele(struct pop3_sess *s, const struct pop3_cmd *cmd)
{
	size_t i;

	if (!pop3_msg_index(s, cmd->msg, &i))
		return;
	/* a replica could only refuse the deletion at QUIT, after the client
	 * believed it (fetchmail would fetch the message again next time):
	 * say so now, while the client can still keep it */
	if (store_is_read_only(pop3d_g.st)) {
		pop3_say(s, "-ERR [SYS/PERM] This server is a read-only replica: messages cannot be deleted here");
		return;
	}
	s->drop.m[i].deleted = true;
	s->drop.ndeleted++;
	s->drop.size_live -= s->drop.m[i].size;
	pop3_say(s, "+OK Message %u deleted", cmd->msg);
}

static void
pop3_cmd_rset(struct pop3_sess *s)
{
	for (size_t i = 0; i < s->drop.n; i++) {
		if (s->drop.m[i].deleted) {
			s->drop.m[i].deleted = false;
			s->drop.size_live += s->drop.m[i].size;
		}
	}
	s->drop.ndeleted = 0;
	pop3_say(s, "+OK %zu messages (%llu octets)", s->drop.n, (unsigned long long)s->drop.size_live);
}

/* QUIT in TRANSACTION: the UPDATE state. */
static void
pop3_cmd_quit_update(struct pop3_sess *s)
{
	struct err err = { 0 };
	size_t n = 0;

	if (s->drop.ndeleted > 0 && synchook_admit(pop3d_g.st, &err) < 0) {
		/* strict semisync, no live replica: delete nothing */
		log_warn("update refused user=%s deleted=%zu error=%s", log_q(s->drop.user),
			s->drop.ndeleted, log_q(err.msg));
		pop3_say(s, "-ERR [SYS/TEMP] No replica is connected: messages not deleted");
		return;
	}
	if (pop3_drop_update(&s->drop, &n, &err) < 0) {
		log_error("update failed user=%s deleted=%zu error=%s", log_q(s->drop.user),
			s->drop.ndeleted, log_q(err.msg));
		if (err.kind == ERR_PERM)
			pop3_say(s, "-ERR [SYS/PERM] Messages not deleted: %s", err.msg);
		else
			pop3_say(s, "-ERR [SYS/TEMP] Messages not deleted, try again later");
		return;
	}
	if (n > 0 && session_store_wait(pop3d_g.st, &err) < 0) {
		/* strict semisync, the replica was live but did not confirm in
		 * time: the deletion stays (losing it on a failover loses no
		 * mail) and is answered +OK, never -ERR over a change made
		 * (docs/decisions.md) */
		log_warn("replication not confirmed, deletion kept user=%s expunged=%zu error=%s",
			log_q(s->drop.user), n, log_q(err.msg));
	}
	log_info("logout user=%s peer=%s expunged=%zu", log_q(s->drop.user), log_q(s->sc->peer), n);
	pop3_say(s, "+OK Logging out, %zu messages deleted", n);
}

static void
pop3_command(struct pop3_sess *s, const char *line, size_t len)
{
	struct pop3_cmd cmd;
	char why[160];

	if (pop3_parse_command(line, len, &cmd, why, sizeof(why)) < 0) {
		pop3_say(s, "-ERR %s", why);
		return;
	}
	if (cmd.verb == POP3_QUIT) {
		s->done = true;
		if (s->state == POP3_TRANSACTION)
			pop3_cmd_quit_update(s);
		else
			pop3_say(s, "+OK Bye");
		return;
	}
	if (cmd.verb == POP3_CAPA) {
		pop3_cmd_capa(s);
		return;
	}
	if (s->state == POP3_AUTHORIZATION) {
		switch (cmd.verb) {
		case POP3_USER:
			if (!pop3_plaintext_ok(s)) {
				pop3_say(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections");
				return;
			}
			snprintf(s->user_given, sizeof(s->user_given), "%.*s", (int)cmd.arg_len, cmd.arg);
			s->have_user = true;
			pop3_say(s, "+OK");
			return;
		case POP3_PASS:
			if (!pop3_plaintext_ok(s)) {
				pop3_say(s, "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections");
				return;
			}
			pop3_cmd_pass(s, &cmd);
			return;
		case POP3_AUTH:
			pop3_cmd_auth(s, &cmd);
			return;
		case POP3_STLS:
			pop3_cmd_stls(s);
			return;
		case POP3_APOP:
			pop3_say(s, "-ERR APOP not supported");
			return;
		default:
			pop3_say(s, "-ERR Not logged in");
			return;
		}
	}
	switch (cmd.verb) {
	case POP3_STAT:
		pop3_say(s, "+OK %zu %llu", s->drop.n - s->drop.ndeleted,
			(unsigned long long)s->drop.size_live);
		return;
	case POP3_LIST:
		pop3_cmd_list(s, &cmd, false);
		return;
	case POP3_UIDL:
		pop3_cmd_list(s, &cmd, true);
		return;
	case POP3_RETR:
		pop3_cmd_retr(s, &cmd, false);
		return;
	case POP3_TOP:
		pop3_cmd_retr(s, &cmd, true);
		return;
	case POP3_DELE:
		pop3_cmd_dele(s, &cmd);
		return;
	case POP3_RSET:
		pop3_cmd_rset(s);
		return;
	case POP3_NOOP:
		pop3_say(s, "+OK");
		return;
	default:
		pop3_say(s, "-ERR Already logged in");
		return;
	}
}

/* A deadline passed (phase login, command or idle): say so, log it. */
static void
pop3_deadline_end(struct pop3_sess *s, const char *phase)
{
	if (strcmp(phase, "idle") == 0)
		pop3_say(s, "-ERR Autologout; idle for too long");
	else if (strcmp(phase, "login") == 0)
		pop3_say(s, "-ERR Login not completed in time");
	else
		pop3_say(s, "-ERR Command not completed in time");
	log_notice("deadline passed service=pop3d phase=%s peer=%s user=%s", phase, log_q(s->sc->peer),
		log_q(s->have_drop ? s->drop.user : ""));
}

enum child_end
pop3_session(struct child_conn *sc, struct conn *conn)
{
	int64_t login_deadline = clock_mono_ms() + pop3d_g.preauth_ms, cmd_deadline = 0;
	struct pop3_sess s;
	struct err err = { 0 };
	enum child_end end = CHILD_END_DONE;

	memset(&s, 0, sizeof(s));
	s.sc = sc;
	s.conn = conn;
	s.drop.lock_fd = -1;
	session_auth_init(&s.auth, "pop3d", sc->peer, sc->loopback);
	conn_set_read_deadline(conn, login_deadline);   /* an implicit-TLS handshake too */
	if (sc->tls) {
		if (pop3d_g.tls == NULL) {
			log_error("implicit TLS listener but no certificate peer=%s", log_q(sc->peer));
			return CHILD_END_DONE;
		}
		if (conn_starttls(conn, pop3d_g.tls, NULL, &err) < 0) {
			if (conn_read_deadline_passed(conn))
				log_notice("deadline passed service=pop3d phase=login peer=%s in=tls-handshake",
					log_q(sc->peer));
			else
				log_notice("TLS handshake failed peer=%s error=%s", log_q(sc->peer),
					log_q(err.msg));
			return CHILD_END_DONE;
		}
	}
	pop3_say(&s, "+OK %s Castor POP3 server ready", pop3d_g.servername);
	while (!s.done) {
		const char *line;
		size_t len;
		int r;

		if (conn_pending_input(conn) == 0) {
			int w;

			if (conn_flush(conn, &err) < 0)
				break;
			w = child_wait_input(conn_rfd(conn), s.state == POP3_AUTHORIZATION ?
				conn_ms_until(login_deadline) : pop3d_g.idle_ms);
			if (w == CHILD_WAIT_QUIT) {
				end = CHILD_END_QUIT;
				break;
			}
			if (w == CHILD_WAIT_TIMEOUT) {
				pop3_deadline_end(&s, s.state == POP3_AUTHORIZATION ? "login" : "idle");
				break;
			}
		}
		cmd_deadline = clock_mono_ms() + pop3d_g.command_ms;
		conn_set_read_deadline(conn, s.state == POP3_AUTHORIZATION ?
			conn_deadline_min(login_deadline, cmd_deadline) : cmd_deadline);
		r = conn_read_line(conn, POP3_LINE_MAX, &line, &len, &err);
		if (r == 0)
			break;
		if (r < 0) {
			if (err.kind != ERR_TOOBIG)
				break;
			pop3_say(&s, "-ERR Line too long");
		} else {
			pop3_command(&s, line, len);
		}
		if (!s.done && child_quit_requested()) {
			end = CHILD_END_QUIT;
			break;
		}
	}
	if (conn_read_deadline_passed(conn))
		pop3_deadline_end(&s, s.state == POP3_AUTHORIZATION && login_deadline <= cmd_deadline ?
			"login" : "command");
	if (s.have_drop)
		pop3_drop_close(&s.drop);
	explicit_bzero(s.user_given, sizeof(s.user_given));
	return end;
}
