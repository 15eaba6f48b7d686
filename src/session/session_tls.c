/*
 * session_tls.c - load and reload the server TLS context of a protocol
 * service (see session_tls.h): from the bundle castord hands down when there
 * is one (lib/tlsbundle.h), else from the files castor.conf names.
 */
#include "session/session_tls.h"

#include "lib/log.h"
#include "lib/str.h"
#include "lib/tlsbundle.h"

#include <stdint.h>

#include <stdlib.h>

/* castord's bundle descriptor (proto.h CASTOR_TLS_FD), or -1. */
static int
session_tls_bundle_fd(void)
{
	const char *v = getenv("CASTOR_TLS_FD");
	uint32_t fd;

	if (v == NULL || str_to_u32(v, &fd) < 0 || fd > INT32_MAX)
		return -1;
	return (int)fd;
}

struct tls_ctx *
session_tls_server_ctx(const struct conf *conf, struct err *err)
{
	struct tlsbundle *b = NULL;
	struct tls_ctx *ctx;
	int fd = session_tls_bundle_fd();

	if (conf == NULL) {
		err_set(err, ERR_NOTFOUND, "no castor.conf: no TLS certificate");
		return NULL;
	}
	if (fd >= 0 && (b = tlsbundle_from_fd(fd, err)) == NULL)
		return NULL;
	ctx = tls_server_ctx_from_conf(conf, b, err);
	tlsbundle_free(&b);
	return ctx;
}

int
session_tls_reload(struct tls_ctx **ctx, const struct conf *conf)
{
	struct err err = { 0 };
	struct tls_ctx *fresh = session_tls_server_ctx(conf, &err);

	if (fresh == NULL) {
		log_error("tls reload failed, previous certificate kept%s error=%s",
			  *ctx == NULL ? " (none: TLS stays off)" : "", log_q(err.msg));
		return -1;
	}
	tls_ctx_free(ctx);
	*ctx = fresh;
	log_info("tls reloaded sni_names=%zu", tls_ctx_sni_count(fresh));
	return 0;
}
