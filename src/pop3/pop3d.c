/*
 * pop3d.c - the POP3 service (RFC 1939, 2449, 2595, 5034): process
 * set-up on the service skeleton.  The session is in pop3_cmd.c, the
 * maildrop in pop3_drop.c, the command parser in pop3_parse.c.
 *
 * Settings read from castor.conf: servername, allowplaintext,
 * allowplaintext_loopback, auth_penalty*, virtdomains, tls_cert_file,
 * tls_key_file, pop3_preauth_timeout, pop3_command_timeout,
 * pop3_idle_timeout.  See docs/pop3.md and docs/security.md.
 */
#include "pop3/pop3.h"

#include "lib/conn.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/str.h"
#include "lib/tls.h"
#include "session/session_store.h"
#include "session/session_tls.h"

#include <stdlib.h>
#include <unistd.h>

struct pop3d pop3d_g;

static int
pop3d_init(const struct conf *conf, struct err *err)
{
	struct err terr = { 0 };

	pop3d_g.conf = conf;
	if (conf_has(conf, "servername"))
		str_lcpy(pop3d_g.servername, conf_get_str(conf, "servername", "localhost"),
			sizeof(pop3d_g.servername));
	else if (gethostname(pop3d_g.servername, sizeof(pop3d_g.servername) - 1) < 0)
		str_lcpy(pop3d_g.servername, "localhost", sizeof(pop3d_g.servername));
	for (char *p = pop3d_g.servername; *p; p++)
		if ((unsigned char)*p <= ' ' || *p == 0x7f)
			*p = '-';
	pop3d_g.preauth_ms = (int)conf_get_duration_ms(conf, "pop3_preauth_timeout", POP3_PREAUTH_MS);
	pop3d_g.command_ms = (int)conf_get_duration_ms(conf, "pop3_command_timeout", POP3_COMMAND_MS);
	pop3d_g.idle_ms = (int)conf_get_duration_ms(conf, "pop3_idle_timeout", POP3_IDLE_MS);
	if (pop3d_g.preauth_ms <= 0)
		pop3d_g.preauth_ms = POP3_PREAUTH_MS;
	if (pop3d_g.command_ms <= 0)
		pop3d_g.command_ms = POP3_COMMAND_MS;
	if (pop3d_g.idle_ms <= 0)
		pop3d_g.idle_ms = POP3_IDLE_MS;
	pop3d_g.st = session_store_open(conf, err);
	if (pop3d_g.st == NULL)
		return -1;
	pop3d_g.tls = session_tls_server_ctx(conf, &terr);
	if (pop3d_g.tls == NULL)
		log_warn("no TLS: STLS not offered error=%s", log_q(terr.msg));
	return 0;
}

static enum child_end
pop3d_handle(struct child_conn *c)
{
	struct conn *conn;
	enum child_end end;
	int rfd = dup(c->rfd), wfd;

	if (rfd < 0)
		return CHILD_END_DONE;
	wfd = c->wfd == c->rfd ? rfd : dup(c->wfd);
	if (wfd < 0) {
		close(rfd);
		return CHILD_END_DONE;
	}
	/* replies are small writes: no Nagle delay against the client's delayed ACK */
	(void)net_set_nodelay(wfd);
	conn = conn_new(rfd, wfd);
	conn_set_read_timeout(conn, POP3_IO_TIMEOUT_MS);
	conn_set_write_timeout(conn, POP3_IO_TIMEOUT_MS);
	c->ctx = conn;
	end = pop3_session(c, conn);
	if (end != CHILD_END_QUIT) {
		struct err err = { 0 };

		conn_flush(conn, &err);
		conn_free(&conn);
		c->ctx = NULL;
	}
	return end;
}

static void
pop3d_goodbye(struct child_conn *c)
{
	struct conn *conn = c->ctx;
	struct err err = { 0 };

	if (conn == NULL)
		return;
	conn_puts(conn, "-ERR [SYS/TEMP] Server shutting down, try again later\r\n");
	conn_flush(conn, &err);
	conn_free(&conn);
	c->ctx = NULL;
}

static void
pop3d_fini(void)
{
	tls_ctx_free(&pop3d_g.tls);
	session_store_close(&pop3d_g.st);
}

/* castord reloaded: a renewed certificate for the next connections. */
static void
pop3d_reload(const struct conf *conf)
{
	session_tls_reload(&pop3d_g.tls, conf);
}

static const struct child_ops pop3d_ops = {
	.name = "pop3d",
	.init = pop3d_init,
	.handle = pop3d_handle,
	.goodbye = pop3d_goodbye,
	.fini = pop3d_fini,
	.reload = pop3d_reload,
};

int
main(int argc, char **argv)
{
	return child_main(argc, argv, &pop3d_ops);
}
