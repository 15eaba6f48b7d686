/*
 * lmtpd.c - the LMTP delivery service (RFC 2033): process set-up on the
 * service skeleton.  The session is in lmtp_cmd.c, delivery into the
 * store in lmtp_deliver.c, the command parser in lmtp_parse.c.
 *
 * Settings read from castor.conf: servername, maxmessagesize,
 * virtdomains, duplicatesuppression, duplicate_days, tls_cert_file,
 * tls_key_file, quota_default_*, blob_inline_max, lmtp_command_timeout,
 * lmtp_idle_timeout.  See docs/lmtp.md and docs/security.md.
 */
#include "lmtp/lmtp.h"

#include "lib/conn.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/str.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "session/session_store.h"
#include "session/session_tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct lmtpd lmtpd_g;

static int
lmtpd_init(const struct conf *conf, struct err *err)
{
	struct err terr = { 0 };
	uint64_t max;

	lmtpd_g.conf = conf;
	if (conf_has(conf, "servername")) {
		str_lcpy(lmtpd_g.servername, conf_get_str(conf, "servername", "localhost"),
			sizeof(lmtpd_g.servername));
	} else if (gethostname(lmtpd_g.servername, sizeof(lmtpd_g.servername) - 1) < 0) {
		str_lcpy(lmtpd_g.servername, "localhost", sizeof(lmtpd_g.servername));
	}
	/* the name goes into replies and headers: no blanks or controls */
	for (char *p = lmtpd_g.servername; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			*p = '-';
	max = conf_get_bytes(conf, "maxmessagesize", 0);
	/* room for Return-Path: and Received: inside the store's limit */
	if (max == 0 || max > STORE_MESSAGE_MAX - 4096)
		max = STORE_MESSAGE_MAX - 4096;
	lmtpd_g.maxsize = max;
	lmtpd_g.virtdomains = conf_get_bool(conf, "virtdomains", false);
	lmtpd_g.dedup = conf_get_bool(conf, "duplicatesuppression", true);
	lmtpd_g.dedup_days = conf_get_int(conf, "duplicate_days", 3);
	if (lmtpd_g.dedup_days <= 0)
		lmtpd_g.dedup = false;

	lmtpd_g.idle_ms = (int)conf_get_duration_ms(conf, "lmtp_idle_timeout", LMTP_IDLE_MS);
	lmtpd_g.command_ms = (int)conf_get_duration_ms(conf, "lmtp_command_timeout", LMTP_COMMAND_MS);
	if (lmtpd_g.idle_ms <= 0)
		lmtpd_g.idle_ms = LMTP_IDLE_MS;
	if (lmtpd_g.command_ms <= 0)
		lmtpd_g.command_ms = LMTP_COMMAND_MS;
	lmtpd_g.st = session_store_open(conf, err);
	if (lmtpd_g.st == NULL)
		return -1;
	lmtpd_g.tls = session_tls_server_ctx(conf, &terr);
	if (lmtpd_g.tls == NULL)
		log_warn("no TLS: STARTTLS not offered error=%s", log_q(terr.msg));
	return 0;
}

static enum child_end
lmtpd_handle(struct child_conn *c)
{
	struct lmtp_sess *s = xcalloc(1, sizeof(*s));
	enum child_end end;
	int rfd = dup(c->rfd), wfd;

	if (rfd < 0) {
		log_error("dup failed peer=%s", log_q(c->peer));
		free(s);
		return CHILD_END_DONE;
	}
	wfd = c->wfd == c->rfd ? rfd : dup(c->wfd);
	if (wfd < 0) {
		close(rfd);
		free(s);
		return CHILD_END_DONE;
	}
	/* replies are small writes: no Nagle delay against the client's delayed ACK */
	(void)net_set_nodelay(wfd);
	s->sc = c;
	s->conn = conn_new(rfd, wfd);
	conn_set_read_timeout(s->conn, LMTP_DATA_TIMEOUT_MS);
	conn_set_write_timeout(s->conn, LMTP_DATA_TIMEOUT_MS);
	{
		/* microseconds and pid: one process serves many connections
		 * (maxuse), so seconds alone repeated within a second */
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		snprintf(s->id, sizeof(s->id), "%llx%05lx",
			(unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)(ts.tv_nsec / 1000),
			(unsigned long)getpid() & 0xfffff);
	}
	c->ctx = s;
	end = lmtp_session(s);
	if (end != CHILD_END_QUIT && conn_read_deadline_passed(s->conn)) {
		conn_printf(s->conn, "421 4.4.2 %s Command not completed in time\r\n", lmtpd_g.servername);
		log_notice("deadline passed service=lmtpd phase=command id=%s peer=%s", s->id,
			log_q(c->peer));
	}
	lmtp_user_release(s);
	free(s->rcpts);
	s->rcpts = NULL;
	buf_free(&s->msg);
	buf_free(&s->in);
	if (end != CHILD_END_QUIT) {
		struct err err = { 0 };

		conn_flush(s->conn, &err);
		conn_free(&s->conn);
		free(s);
		c->ctx = NULL;
	}
	return end;
}

static void
lmtpd_goodbye(struct child_conn *c)
{
	struct lmtp_sess *s = c->ctx;
	struct err err = { 0 };

	if (s == NULL)
		return;
	conn_printf(s->conn, "421 4.3.2 %s Service shutting down\r\n", lmtpd_g.servername);
	conn_flush(s->conn, &err);
	conn_free(&s->conn);
	free(s);
	c->ctx = NULL;
}

static void
lmtpd_fini(void)
{
	tls_ctx_free(&lmtpd_g.tls);
	session_store_close(&lmtpd_g.st);
}

/* castord reloaded: a renewed certificate for the next connections. */
static void
lmtpd_reload(const struct conf *conf)
{
	session_tls_reload(&lmtpd_g.tls, conf);
}

static const struct child_ops lmtpd_ops = {
	.name = "lmtpd",
	.init = lmtpd_init,
	.handle = lmtpd_handle,
	.goodbye = lmtpd_goodbye,
	.fini = lmtpd_fini,
	.reload = lmtpd_reload,
};

int
main(int argc, char **argv)
{
	return child_main(argc, argv, &lmtpd_ops);
}
