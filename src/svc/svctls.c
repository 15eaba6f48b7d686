/*
 * svctls.c - load and reload the server TLS context of a protocol
 * service (see svctls.h).
 */
#include "svc/svctls.h"

#include "lib/log.h"

#include <stdlib.h>

struct tls_ctx *
svctls_server_ctx(const struct conf *conf, struct err *err)
{
	struct tls_server_conf tc = { 0 };
	char *cert, *key, *sni;
	struct tls_ctx *ctx;

	if (conf == NULL) {
		err_set(err, ERR_NOTFOUND, "no castor.conf: no TLS certificate");
		return NULL;
	}
	cert = conf_get_path(conf, "tls_cert_file", "tls/cert.pem");
	key = conf_get_path(conf, "tls_key_file", "tls/key.pem");
	sni = conf_get_path(conf, "tls_sni_dir", NULL);
	tc.cert_file = cert;
	tc.key_file = key;
	tc.sni_dir = sni;
	tc.min_version = conf_get_str(conf, "tls_min_version", NULL);
	tc.ciphers = conf_get_str(conf, "tls_ciphers", NULL);
	tc.ciphersuites = conf_get_str(conf, "tls_ciphersuites", NULL);
	ctx = tls_server_ctx_new_conf(&tc, err);
	free(cert);
	free(key);
	free(sni);
	return ctx;
}

int
svctls_reload(struct tls_ctx **ctx, const struct conf *conf)
{
	struct err err = { 0 };
	struct tls_ctx *fresh = svctls_server_ctx(conf, &err);

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
