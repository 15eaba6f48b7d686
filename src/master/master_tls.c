/*
 * master_tls.c - castord's copy of the service certificates: read and
 * checked at start and on each reload (SIGHUP), kept as a sealed memfd
 * (lib/tlsbundle.h) that every service child gets on fd 5 when started
 * and with the RELOAD byte after a reload (proto.h).
 *
 * A set that does not load (a missing or truncated file, a key that does
 * not match, a bad tls_ciphers) is not handed down: the children keep
 * the certificates they have, new children get the last set that loaded,
 * and the error, naming the file, is logged once here.  Without any good
 * set yet (none at start), children read the files themselves.
 */
#include "master/master.h"

#include "lib/log.h"
#include "lib/tlsbundle.h"

#include <unistd.h>

int
master_tls_load(struct master *m, const struct conf *conf, bool reload)
{
	struct err err = { 0 };
	struct tlsbundle *b;
	struct tls_ctx *ctx = NULL;
	struct tls_server_conf tc;
	int fd = -1;

	tlsbundle_conf(conf, &tc);
	b = tlsbundle_read(&tc, &err);
	tlsbundle_conf_clear(&tc);
	if (b != NULL && (ctx = tlsbundle_server_ctx(conf, b, &err)) != NULL)
		fd = tlsbundle_memfd(b, &err);
	tls_ctx_free(&ctx);
	if (fd < 0) {
		if (m->tls_fd < 0 && (b == NULL && err.kind == ERR_NOTFOUND))
			log_info("no TLS certificate error=%s", log_q(err.msg));
		else if (m->tls_fd < 0)
			log_warn("TLS certificates do not load, services read them themselves error=%s",
				 log_q(err.msg));
		else
			log_error("tls reload failed, previous certificate kept error=%s", log_q(err.msg));
		tlsbundle_free(&b);
		return -1;
	}
	if (m->tls_fd >= 0)
		close(m->tls_fd);
	m->tls_fd = fd;
	log_info("tls certificates %s sni_names=%zu", reload ? "reloaded" : "loaded", b->n - 1);
	tlsbundle_free(&b);
	return 0;
}
