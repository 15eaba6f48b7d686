/*
 * tls.h - OpenSSL contexts for Castor's TLS (STARTTLS, implicit TLS, the
 * sync channel) and self-signed certificate generation.
 *
 * Policy, the same for every service: TLS 1.2 minimum; for TLS 1.2 only
 * ECDHE/DHE key exchange with AEAD ciphers (AES-GCM, ChaCha20-Poly1305,
 * the Mozilla "intermediate" list); TLS 1.3 with OpenSSL's default
 * suites; no compression, no renegotiation.  A peer that closes TCP
 * without close_notify is treated as end of input (mail clients do it).
 * A server context may change the minimum version and the cipher lists
 * (castor.conf tls_min_version, tls_ciphers, tls_ciphersuites) and hold
 * one certificate per SNI name besides its default one.
 *
 * A context is made once per process (or before forking) and used for
 * many connections through conn_starttls() (conn.h).  Replacing it (a
 * reload) does not disturb connections made from the old one: each SSL
 * holds its own reference.
 */
#ifndef CASTOR_TLS_H
#define CASTOR_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/err.h"

struct tls_ctx;

/* The cipher list used for TLS 1.2 unless tls_ctx_set_ciphers() says otherwise. */
#define TLS_DEFAULT_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:" \
	"DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"

/* Server context from PEM files: cert_file holds the certificate followed
 * by any intermediates, key_file the private key (may be the same file).
 * Fails (NULL, ERR_NOTFOUND / ERR_INVALID with the path and OpenSSL's
 * reason) when a file is missing or unreadable, or the key does not match. */
struct tls_ctx *tls_server_ctx_new(const char *cert_file, const char *key_file, struct err *err);

/* What a server context is made of; NULL fields take the policy above. */
struct tls_server_conf {
	const char *cert_file;      /* default certificate chain (PEM) */
	const char *key_file;       /* its private key */
	const char *min_version;    /* "1.0".."1.3" or "TLSv1".."TLSv1.3"; NULL: 1.2 */
	const char *ciphers;        /* OpenSSL cipher list for TLS <= 1.2 */
	const char *ciphersuites;   /* OpenSSL TLS 1.3 suites */
	const char *sni_dir;        /* NAME.pem files: certificate for server name NAME */
};

/* Server context from tc.  Every NAME.pem in sni_dir holds the
 * certificate chain served to clients asking for NAME (SNI, compared
 * without case), followed by its key unless NAME.key exists beside it;
 * other names get the default certificate.  Any file that does not load
 * fails the whole context (NULL, err names the file). */
struct tls_ctx *tls_server_ctx_new_conf(const struct tls_server_conf *tc, struct err *err);

/* The same from certificates already in memory (tlsbundle.h); tc gives
 * the policy only. */
struct tlsbundle;
struct tls_ctx *tls_server_ctx_from_bundle(const struct tlsbundle *b, const struct tls_server_conf *tc,
	struct err *err);

/* The server context castor.conf conf describes (tls_cert_file,
 * tls_key_file, tls_sni_dir, tls_min_version, tls_ciphers,
 * tls_ciphersuites), with the certificates and keys taken from b when it
 * is not NULL, else read from the files. */
struct conf;
struct tls_ctx *tls_server_ctx_from_conf(const struct conf *conf, const struct tlsbundle *b,
	struct err *err);

/* "1.2" / "TLSv1.2" ... to OpenSSL's version number: 0, or -1 if unknown. */
int tls_parse_version(const char *s, int *version_r);

/* How many SNI names a server context holds. */
size_t tls_ctx_sni_count(const struct tls_ctx *ctx);

/* Client context.  verify=true: the server's certificate must chain to a
 * CA in ca_file (PEM; a self-signed server certificate can be its own CA)
 * or, when ca_file is NULL, to the system's trust store; and must match
 * the peer_host given to conn_starttls().  verify=false accepts any
 * certificate (encryption without authentication). */
struct tls_ctx *tls_client_ctx_new(bool verify, const char *ca_file, struct err *err);

/* Replace the TLS 1.2 cipher list (OpenSSL syntax, e.g. from castor.conf
 * tls_ciphers).  -1 with ERR_INVALID if OpenSSL accepts none of it. */
int tls_ctx_set_ciphers(struct tls_ctx *ctx, const char *ciphers, struct err *err);

bool tls_ctx_is_server(const struct tls_ctx *ctx);
bool tls_ctx_verifies(const struct tls_ctx *ctx);

/* Free; *ctx becomes NULL (NULL is fine).  Connections made from it keep
 * their own reference and stay valid. */
void tls_ctx_free(struct tls_ctx **ctx);

/*
 * Generate a self-signed server certificate: EC P-256 key, SHA-256
 * signature, random 128-bit serial, valid from an hour ago for 10 years,
 * subject and issuer CN=common_name, subjectAltName DNS:common_name (when
 * it is not "localhost" and not an IP literal), DNS:localhost,
 * IP:127.0.0.1, IP:::1; basicConstraints CA:FALSE, keyUsage
 * digitalSignature, extendedKeyUsage serverAuth, key identifiers.
 * key_path is written first (mode 0600), then cert_path (mode 0644), each
 * atomically and durably (atomicfile_write).  A client can verify the
 * server with cert_path as its CA file.  0 or -1 with err.
 */
int tls_make_selfsigned(const char *cert_path, const char *key_path, const char *common_name,
	struct err *err);

/* Internal to conn.c: the OpenSSL SSL_CTX behind a tls_ctx (as void * so
 * that this header needs no OpenSSL includes). */
void *tls_ctx_ssl_ctx(struct tls_ctx *ctx);
/* Drain OpenSSL's error queue into a short "reason; reason" string. */
void tls_errors(char *buf, size_t size);

#endif
