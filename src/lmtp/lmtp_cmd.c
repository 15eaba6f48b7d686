/*
 * lmtp_cmd.c - one LMTP session: the input buffer, the command loop,
 * each command's checks and replies (RFC 2033, 5321, 2920 PIPELINING,
 * 2034 ENHANCEDSTATUSCODES, 6152 8BITMIME, 1870 SIZE, 3030 CHUNKING,
 * 3207 STARTTLS, 6531 SMTPUTF8: UTF-8 in addresses and headers is
 * delivered as received; the Received: field then says "with UTF8LMTP").
 *
 * Input goes through our own buffer (s->in) rather than conn's line
 * reader, because the DATA decoder must stop exactly after the end
 * marker and leave whatever the client pipelined behind it for the
 * next command, while keeping every byte of the message as received.
 *
 * Output is buffered and flushed only when no more input is waiting
 * (so pipelined commands get their replies in one write), before
 * reading a message (the client waits for 354), and before STARTTLS.
 *
 * Shutdown (child_quit_requested): checked after every command.  A
 * transaction whose DATA or first BDAT has been accepted runs to its
 * per-recipient replies before the check (between BDAT chunks the
 * session keeps reading instead of waiting on the quit flag); anything
 * after that, and a client waiting idle, gets "421 4.3.2"
 * (lmtpd_goodbye).  Replies for a message are sent only after the store
 * has committed it.
 *
 * Deadlines (absolute, docs/security.md): a command line must be in
 * within lmtp_command_timeout (RFC 5321's five minutes) of its first
 * byte, and so must a DATA body counted from the 354, and a BDAT
 * command with its chunk; a session with no command for
 * lmtp_idle_timeout is closed.  Both end with "421 4.4.2".
 */
#include "lmtp/lmtp.h"

#include "lib/clock.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "session/session_auth.h"
#include "session/session_store.h"
#include "sync/synchook.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define LMTP_READ 65536

static void
lmtp_say(struct lmtp_sess *s, const char *line)
{
	conn_puts(s->conn, line);
	conn_write(s->conn, "\r\n", 2);
}

static void lmtp_sayf(struct lmtp_sess *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
lmtp_sayf(struct lmtp_sess *s, const char *fmt, ...)
{
	char line[LMTP_REPLY_MAX + 64];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	lmtp_say(s, line);
}

/* The reply for a store error: the one mapper (lmtp_store_reply). */
static void
lmtp_say_err(struct lmtp_sess *s, const struct err *err)
{
	char reply[LMTP_REPLY_MAX];

	lmtp_store_reply(err, reply, sizeof(reply));
	lmtp_say(s, reply);
}

/* ------------------------------------------------------------------ */
/* Input                                                               */

static void
lmtp_in_consume(struct lmtp_sess *s)
{
	if (s->in_used > 0) {
		buf_consume(&s->in, s->in_used);
		s->in_used = 0;
	}
}

static bool
lmtp_in_pending(struct lmtp_sess *s)
{
	return s->in.len > s->in_used || conn_pending_input(s->conn) > 0;
}

/* Read more from the connection into s->in.  1 got some, 0 end, -1 error. */
static int
lmtp_in_fill(struct lmtp_sess *s, struct err *err)
{
	const char *p;
	size_t n;
	int r = conn_read_some(s->conn, LMTP_READ, &p, &n, err);

	if (r > 0)
		buf_append(&s->in, p, n);
	return r;
}

/*
 * The next command line (without CRLF / LF).  1 a line, 0 end of
 * input, -1 I/O error, 2 an overlong line was read and dropped.
 */
static int
lmtp_in_line(struct lmtp_sess *s, const char **line_r, size_t *len_r, struct err *err)
{
	size_t scan = 0;
	bool discard = false;

	lmtp_in_consume(s);
	for (;;) {
		char *lf = s->in.len > scan ? memchr(s->in.data + scan, '\n', s->in.len - scan) : NULL;
		int r;

		if (lf != NULL) {
			size_t n = (size_t)(lf - s->in.data);

			s->in_used = n + 1;
			if (discard)
				return 2;
			if (n > 0 && s->in.data[n - 1] == '\r')
				n--;
			if (n > LMTP_LINE_MAX)
				return 2;
			s->in.data[n] = '\0';
			*line_r = s->in.data;
			*len_r = n;
			return 1;
		}
		if (s->in.len > LMTP_LINE_MAX + 1) {
			/* keep nothing of a line that is too long anyway */
			discard = true;
			buf_reset(&s->in);
		}
		scan = s->in.len;
		r = lmtp_in_fill(s, err);
		if (r <= 0) {
			buf_reset(&s->in);
			return r;
		}
	}
}

/* ------------------------------------------------------------------ */
/* Transaction state                                                   */

static void
lmtp_txn_reset(struct lmtp_sess *s)
{
	s->mail = false;
	s->sender[0] = '\0';
	s->body = LMTP_BODY_NONE;
	s->smtputf8 = false;
	s->has_size = false;
	s->declared_size = 0;
	s->nrcpt = 0;
	s->bdat = false;
	buf_reset(&s->msg);
	s->hdr_len = 0;
	if (s->msg.cap > 4 * 1024 * 1024) {
		/* do not keep a huge buffer around for the next message */
		buf_free(&s->msg);
	}
	s->msg_size = 0;
}

/* After DATA or BDAT LAST: deliver and send one reply per recipient. */
static void
lmtp_finish_message(struct lmtp_sess *s, const char *how)
{
	s->ntxn++;
	if (s->msg_size > lmtpd_g.maxsize) {
		log_notice("message refused id=%s.%u reason=too_big size=%llu max=%llu", s->id, s->ntxn,
			(unsigned long long)s->msg_size, (unsigned long long)lmtpd_g.maxsize);
		for (size_t i = 0; i < s->nrcpt; i++)
			lmtp_say(s, "552 5.3.4 Message size exceeds fixed maximum message size");
	} else {
		lmtp_deliver(s);
		for (size_t i = 0; i < s->nrcpt; i++)
			lmtp_say(s, s->rcpts[i].reply);
	}
	log_debug("transaction done id=%s.%u via=%s rcpts=%zu size=%llu", s->id, s->ntxn, how,
		s->nrcpt, (unsigned long long)s->msg_size);
	lmtp_txn_reset(s);
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */

static void
lmtp_cmd_lhlo(struct lmtp_sess *s, const struct lmtp_cmd *cmd)
{
	lmtp_txn_reset(s);
	s->lhlo = true;
	snprintf(s->helo, sizeof(s->helo), "%.*s", (int)cmd->arg_len, cmd->arg);
	lmtp_sayf(s, "250-%s", lmtpd_g.servername);
	lmtp_say(s, "250-PIPELINING");
	lmtp_say(s, "250-ENHANCEDSTATUSCODES");
	lmtp_say(s, "250-8BITMIME");
	lmtp_sayf(s, "250-SIZE %llu", (unsigned long long)lmtpd_g.maxsize);
	lmtp_say(s, "250-CHUNKING");
	lmtp_say(s, "250-SMTPUTF8");
	if (lmtpd_g.tls != NULL && !conn_is_tls(s->conn))
		lmtp_say(s, "250-STARTTLS");
	lmtp_say(s, "250 HELP");
}

static void
lmtp_cmd_mail(struct lmtp_sess *s, const struct lmtp_cmd *cmd)
{
	struct err err = { 0 };
	int role;

	if (!s->lhlo) {
		lmtp_say(s, "503 5.5.1 Send LHLO first");
		return;
	}
	if (s->mail) {
		lmtp_say(s, "503 5.5.1 Nested MAIL command");
		return;
	}
	if (cmd->has_size && cmd->size > lmtpd_g.maxsize) {
		lmtp_say(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		return;
	}
	role = session_store_check_role(lmtpd_g.st, &err);
	if (role < 0) {
		log_error("role check failed error=%s", log_q(err.msg));
		lmtp_say_err(s, &err);
		return;
	}
	if (role == 1) {
		const char *master = conf_get_str(lmtpd_g.conf, "master_name", NULL);

		if (master != NULL)
			lmtp_sayf(s, "451 4.3.0 This server is a replica; deliver to %.200s", master);
		else
			lmtp_say(s, "451 4.3.0 This server is a replica; deliver to the master");
		return;
	}
	lmtp_txn_reset(s);
	s->mail = true;
	/* busy means back to back with our last transaction's answers; the
	 * first transaction of a connection follows none */
	s->txn_idle_us = s->ntxn == 0 ? SYNCHOOK_IDLE_UNKNOWN : s->cmd_idle_us;
	str_lcpy(s->sender, cmd->path, sizeof(s->sender));
	s->body = cmd->body;
	s->smtputf8 = cmd->smtputf8;
	s->has_size = cmd->has_size;
	s->declared_size = cmd->size;
	lmtp_say(s, "250 2.1.0 Sender OK");
}

static void
lmtp_cmd_rcpt(struct lmtp_sess *s, const struct lmtp_cmd *cmd)
{
	char login[LMTP_PATH_MAX + 1], detail[LMTP_LOCAL_MAX + 1];
	char user[STORE_USER_NAME_MAX + 1];
	struct store_user *u;
	struct lmtp_rcpt *r;
	struct err err = { 0 };
	int q;

	if (!s->mail) {
		lmtp_say(s, "503 5.5.1 Need MAIL command");
		return;
	}
	if (s->bdat) {
		lmtp_say(s, "503 5.5.1 RCPT after BDAT");
		return;
	}
	if (s->nrcpt >= LMTP_RCPT_MAX) {
		lmtp_say(s, "452 4.5.3 Too many recipients");
		return;
	}
	if (lmtp_parse_rcpt_split(cmd->local, cmd->domain, login, sizeof(login), detail,
		sizeof(detail)) < 0 ||
	    session_auth_user_canon(login, lmtpd_g.virtdomains, user, sizeof(user), &err) < 0) {
		log_info("recipient refused id=%s rcpt=%s reason=bad_user", s->id, log_q(cmd->path));
		lmtp_sayf(s, "550 5.1.1 <%.200s>: Recipient address rejected: User unknown", cmd->path);
		return;
	}
	u = lmtp_user_get(s, user, true, &err);
	if (u == NULL) {
		if (err.kind == ERR_NOTFOUND) {
			log_info("recipient refused id=%s rcpt=%s user=%s reason=unknown_user", s->id,
				log_q(cmd->path), log_q(user));
			lmtp_sayf(s, "550 5.1.1 <%.200s>: Recipient address rejected: User unknown",
				cmd->path);
		} else {
			log_error("recipient check failed id=%s user=%s error=%s", s->id, log_q(user),
				log_q(err.msg));
			lmtp_say_err(s, &err);
		}
		return;
	}
	q = lmtp_quota_check(u, s->has_size, s->declared_size, &err);
	if (q < 0) {
		log_error("quota check failed id=%s user=%s error=%s", s->id, log_q(user), log_q(err.msg));
		lmtp_say_err(s, &err);
		return;
	}
	if (q > 0) {
		log_info("recipient refused id=%s user=%s reason=over_quota", s->id, log_q(user));
		lmtp_sayf(s, "452 4.2.2 <%.200s>: Mailbox full", cmd->path);
		return;
	}
	if (s->nrcpt == s->caprcpt) {
		s->caprcpt = s->caprcpt ? s->caprcpt * 2 : 8;
		s->rcpts = xreallocarray(s->rcpts, s->caprcpt, sizeof(*s->rcpts));
	}
	r = &s->rcpts[s->nrcpt++];
	memset(r, 0, sizeof(*r));
	str_lcpy(r->path, cmd->path, sizeof(r->path));
	str_lcpy(r->user, user, sizeof(r->user));
	str_lcpy(r->detail, detail, sizeof(r->detail));
	lmtp_say(s, "250 2.1.5 Recipient OK");
}

/* Read the message after 354.  0 done, -1 connection lost. */
static int
lmtp_read_data(struct lmtp_sess *s)
{
	struct lmtp_data d;
	struct err err = { 0 };
	/* one byte more than allowed tells "too big" */
	size_t limit = s->hdr_len + (size_t)lmtpd_g.maxsize + 1;

	lmtp_data_init(&d);
	lmtp_in_consume(s);
	if (s->in.len > 0) {
		size_t used = lmtp_data_feed(&d, s->in.data, s->in.len, &s->msg, limit);
		buf_consume(&s->in, used);
	}
	while (!d.done) {
		const char *p;
		size_t n, used;
		int r = conn_read_some(s->conn, LMTP_READ, &p, &n, &err);

		if (r <= 0) {
			log_notice("connection lost in DATA id=%s peer=%s received=%llu error=%s", s->id,
				log_q(s->sc->peer), (unsigned long long)d.size,
				log_q(r == 0 ? "end of input" : err.msg));
			return -1;
		}
		used = lmtp_data_feed(&d, p, n, &s->msg, limit);
		if (used < n)
			buf_append(&s->in, p + used, n - used);
	}
	s->msg_size = d.size;
	return 0;
}

/* DATA.  0, or -1 when the connection is lost. */
static int
lmtp_cmd_data(struct lmtp_sess *s)
{
	struct err err = { 0 };

	if (!s->mail) {
		lmtp_say(s, "503 5.5.1 Need MAIL command");
		return 0;
	}
	if (s->bdat) {
		lmtp_say(s, "503 5.5.1 DATA after BDAT");
		return 0;
	}
	if (s->nrcpt == 0) {
		lmtp_say(s, "503 5.5.1 No valid recipients");
		return 0;
	}
	lmtp_say(s, "354 Start mail input; end with <CRLF>.<CRLF>");
	if (conn_flush(s->conn, &err) < 0)
		return -1;
	/* the body has a deadline of its own, from the 354 */
	conn_set_read_deadline(s->conn, clock_mono_ms() + lmtpd_g.command_ms);
	lmtp_deliver_prefix(s);
	if (lmtp_read_data(s) < 0)
		return -1;
	lmtp_finish_message(s, "DATA");
	return 0;
}

/* Take n bytes of a BDAT chunk: into s->msg while under the limit,
 * else thrown away.  0, or -1 when the connection is lost. */
static int
lmtp_bdat_take(struct lmtp_sess *s, uint64_t n, bool keep)
{
	struct err err = { 0 };
	size_t limit = s->hdr_len + (size_t)lmtpd_g.maxsize + 1;

	lmtp_in_consume(s);
	while (n > 0 && s->in.len > 0) {
		size_t take = (uint64_t)s->in.len < n ? s->in.len : (size_t)n;

		if (keep && s->msg.len < limit)
			buf_append(&s->msg, s->in.data, s->msg.len + take <= limit ? take : limit - s->msg.len);
		buf_consume(&s->in, take);
		n -= take;
		if (keep)
			s->msg_size += take;
	}
	if (n == 0)
		return 0;
	if (keep && s->msg.len + n <= limit) {
		if (conn_read_exact(s->conn, (size_t)n, &s->msg, &err) < 0)
			goto lost;
		s->msg_size += n;
		return 0;
	}
	if (keep)
		s->msg_size += n;
	if (conn_skip(s->conn, n, &err) < 0)
		goto lost;
	return 0;
lost:
	log_notice("connection lost in BDAT id=%s peer=%s error=%s", s->id, log_q(s->sc->peer),
		log_q(err.msg));
	return -1;
}

/* BDAT.  0, or -1 when the connection is lost (or cannot be resynchronised). */
static int
lmtp_cmd_bdat(struct lmtp_sess *s, const struct lmtp_cmd *cmd)
{
	const char *refuse = NULL;

	if (!s->mail)
		refuse = "503 5.5.1 Need MAIL command";
	else if (s->nrcpt == 0)
		refuse = "503 5.5.1 No valid recipients";
	if (refuse != NULL) {
		/* the chunk follows the command whatever we answer: skip it */
		if (lmtp_bdat_take(s, cmd->chunk, false) < 0)
			return -1;
		lmtp_say(s, refuse);
		return 0;
	}
	if (!s->bdat)
		lmtp_deliver_prefix(s);
	s->bdat = true;
	if (lmtp_bdat_take(s, cmd->chunk, true) < 0)
		return -1;
	if (!cmd->last) {
		if (s->msg_size > lmtpd_g.maxsize)
			lmtp_say(s, "552 5.3.4 Message size exceeds fixed maximum message size");
		else
			lmtp_sayf(s, "250 2.0.0 %llu octets received", (unsigned long long)cmd->chunk);
		return 0;
	}
	lmtp_finish_message(s, "BDAT");
	return 0;
}

/* STARTTLS.  0 fine (TLS on, or refused), -1 the connection is unusable. */
static int
lmtp_cmd_starttls(struct lmtp_sess *s)
{
	struct err err = { 0 };

	if (lmtpd_g.tls == NULL) {
		lmtp_say(s, "454 4.7.0 TLS not available");
		return 0;
	}
	if (conn_is_tls(s->conn)) {
		lmtp_say(s, "503 5.5.1 TLS already active");
		return 0;
	}
	if (s->mail) {
		lmtp_say(s, "503 5.5.1 STARTTLS inside a mail transaction");
		return 0;
	}
	lmtp_say(s, "220 2.0.0 Ready to start TLS");
	/* plaintext pipelined behind STARTTLS is discarded, ours and conn's */
	lmtp_in_consume(s);
	if (s->in.len > 0)
		log_notice("discarding input pipelined behind STARTTLS id=%s bytes=%zu", s->id,
			s->in.len);
	buf_reset(&s->in);
	if (conn_starttls(s->conn, lmtpd_g.tls, NULL, &err) < 0) {
		log_notice("TLS handshake failed id=%s peer=%s error=%s", s->id, log_q(s->sc->peer),
			log_q(err.msg));
		return -1;
	}
	/* RFC 3207 4.2: forget everything learnt before TLS */
	lmtp_txn_reset(s);
	s->lhlo = false;
	s->helo[0] = '\0';
	log_info("starttls id=%s peer=%s tls=%s", s->id, log_q(s->sc->peer),
		log_q(conn_tls_desc(s->conn)));
	return 0;
}

/* Run one command.  1 carry on, 0 the session is over (QUIT), -1 connection lost. */
static int
lmtp_command(struct lmtp_sess *s, const char *line, size_t len)
{
	struct lmtp_cmd cmd;
	char reply[LMTP_REPLY_MAX];

	if (lmtp_parse_command(line, len, &cmd, reply, sizeof(reply)) < 0) {
		if (cmd.verb == LMTP_BDAT) {
			/* a BDAT we cannot size leaves us out of step with the client */
			lmtp_say(s, reply);
			lmtp_say(s, "421 4.5.0 Cannot resynchronise after a bad BDAT; closing");
			return -1;
		}
		lmtp_say(s, reply);
		return 1;
	}
	switch (cmd.verb) {
	case LMTP_LHLO:
		lmtp_cmd_lhlo(s, &cmd);
		break;
	case LMTP_HELO:
	case LMTP_EHLO:
		lmtp_say(s, "500 5.5.1 This is LMTP: use LHLO");
		break;
	case LMTP_MAIL:
		lmtp_cmd_mail(s, &cmd);
		break;
	case LMTP_RCPT:
		lmtp_cmd_rcpt(s, &cmd);
		break;
	case LMTP_DATA:
		return lmtp_cmd_data(s) < 0 ? -1 : 1;
	case LMTP_BDAT:
		return lmtp_cmd_bdat(s, &cmd) < 0 ? -1 : 1;
	case LMTP_RSET:
		lmtp_txn_reset(s);
		lmtp_say(s, "250 2.0.0 OK");
		break;
	case LMTP_NOOP:
		lmtp_say(s, "250 2.0.0 OK");
		break;
	case LMTP_QUIT:
		lmtp_sayf(s, "221 2.0.0 %s Bye", lmtpd_g.servername);
		return 0;
	case LMTP_VRFY:
		lmtp_say(s, "252 2.5.2 Cannot VRFY user, but will accept message and attempt delivery");
		break;
	case LMTP_EXPN:
		lmtp_say(s, "502 5.5.1 EXPN not supported");
		break;
	case LMTP_HELP:
		lmtp_say(s, "214 2.0.0 Commands: LHLO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS");
		break;
	case LMTP_STARTTLS:
		return lmtp_cmd_starttls(s) < 0 ? -1 : 1;
	case LMTP_UNKNOWN:
		lmtp_say(s, "500 5.5.2 Syntax error, command unrecognized");
		break;
	}
	return 1;
}

enum child_end
lmtp_session(struct lmtp_sess *s)
{
	struct err err = { 0 };

	/* an implicit-TLS handshake is a command's worth of time */
	conn_set_read_deadline(s->conn, clock_mono_ms() + lmtpd_g.command_ms);
	if (s->sc->tls) {
		if (lmtpd_g.tls == NULL) {
			log_error("implicit TLS listener but no certificate peer=%s", log_q(s->sc->peer));
			return CHILD_END_DONE;
		}
		if (conn_starttls(s->conn, lmtpd_g.tls, NULL, &err) < 0) {
			/* a passed deadline is logged by lmtpd_handle */
			log_notice("TLS handshake failed peer=%s error=%s", log_q(s->sc->peer),
				log_q(err.msg));
			return CHILD_END_DONE;
		}
	}
	log_debug("connect id=%s peer=%s", s->id, log_q(s->sc->peer));
	lmtp_sayf(s, "220 %s LMTP Castor ready", lmtpd_g.servername);
	for (;;) {
		const char *line;
		size_t len;
		int r;

		s->cmd_idle_us = 0;
		if (!lmtp_in_pending(s)) {
			int w;

			if (conn_flush(s->conn, &err) < 0)
				return CHILD_END_DONE;
			/* between BDAT chunks a shutdown waits for the LAST one: the
			 * read below blocks (read timeout; castord's escalation) */
			w = s->bdat ? CHILD_WAIT_INPUT :
				child_wait_input(conn_rfd(s->conn), lmtpd_g.idle_ms);
			if (w == CHILD_WAIT_QUIT)
				return CHILD_END_QUIT;
			s->cmd_idle_us = child_last_wait_us();
			if (w == CHILD_WAIT_TIMEOUT) {
				lmtp_sayf(s, "421 4.4.2 %s Idle for too long, closing", lmtpd_g.servername);
				log_notice("deadline passed service=lmtpd phase=idle id=%s peer=%s", s->id,
					log_q(s->sc->peer));
				return CHILD_END_DONE;
			}
		}
		/* from its first byte a command (with a BDAT chunk) has its deadline;
		 * between BDAT chunks the wait above is skipped, so it runs from here */
		conn_set_read_deadline(s->conn, clock_mono_ms() + lmtpd_g.command_ms);
		r = lmtp_in_line(s, &line, &len, &err);
		if (r == 0)
			return CHILD_END_DONE;
		if (r < 0) {
			log_debug("read failed id=%s error=%s", s->id, log_q(err.msg));
			return CHILD_END_DONE;
		}
		if (r == 2) {
			lmtp_say(s, "500 5.5.6 Line too long");
		} else {
			r = lmtp_command(s, line, len);
			if (r <= 0)
				return CHILD_END_DONE;
		}
		/* the checkpoint; a BDAT transaction runs to its LAST chunk first */
		if (!s->bdat && child_quit_requested())
			return CHILD_END_QUIT;
	}
}
