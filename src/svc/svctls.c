/*
 * svctls.c - load the server TLS context of a protocol service (see svctls.h).
 */
#include "svc/svctls.h"

#include <stdlib.h>

struct tls_ctx *
svctls_server_ctx(const struct conf *conf, struct err *err)
{
	char *cert, *key;
	struct tls_ctx *ctx;

	if (conf == NULL) {
		err_set(err, ERR_NOTFOUND, "no castor.conf: no TLS certificate");
		return NULL;
	}
	cert = conf_get_path(conf, "tls_cert_file", "tls/cert.pem");
	key = conf_get_path(conf, "tls_key_file", "tls/key.pem");
	ctx = tls_server_ctx_new(cert, key, err);
	free(cert);
	free(key);
	return ctx;
}
