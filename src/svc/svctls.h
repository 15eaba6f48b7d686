/*
 * svctls.h - the server TLS context of a protocol service, from
 * castor.conf tls_cert_file / tls_key_file (defaults tls/cert.pem and
 * tls/key.pem in the server root, as castorctl init writes them).
 */
#ifndef CASTOR_SVC_SVCTLS_H
#define CASTOR_SVC_SVCTLS_H

#include "lib/conf.h"
#include "lib/err.h"
#include "lib/tls.h"

/* The context, or NULL with err when the files are missing or bad (the
 * service then offers no STARTTLS and refuses implicit-TLS clients). */
struct tls_ctx *svctls_server_ctx(const struct conf *conf, struct err *err);

#endif
