/*
 * session_tls.h - the server TLS context of a protocol service, from
 * castor.conf tls_cert_file / tls_key_file (defaults tls/cert.pem and
 * tls/key.pem in the server root, as castorctl init writes them),
 * tls_min_version, tls_ciphers, tls_ciphersuites and tls_sni_dir; and
 * its replacement when castord reloads (docs/security.md, "TLS").  Under
 * castord the certificates and keys come from the bundle castord read and
 * checked (CASTOR_TLS_FD, master/proto.h), not from the files.
 */
#ifndef CASTOR_SESSION_SESSION_TLS_H
#define CASTOR_SESSION_SESSION_TLS_H

#include "lib/conf.h"
#include "lib/err.h"
#include "lib/tls.h"

/* The context, or NULL with err when the files are missing or bad (the
 * service then offers no STARTTLS and refuses implicit-TLS clients). */
struct tls_ctx *session_tls_server_ctx(const struct conf *conf, struct err *err);

/* Build a new context from conf (castor.conf as it is now) and the
 * current bundle, and put it in *ctx in place of the old one; logs the
 * outcome.  When the new one does not load, *ctx is kept as it was and
 * the error, naming the file, is logged: 0 replaced, -1 kept.  Call it
 * only between connections. */
int session_tls_reload(struct tls_ctx **ctx, const struct conf *conf);

#endif
