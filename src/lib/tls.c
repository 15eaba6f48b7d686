/*
 * tls.c - OpenSSL contexts (server and client) with Castor's TLS policy,
 * and self-signed certificate generation for `castorctl init` and
 * `make demo`.  The per-connection side (handshake, records) is in
 * conn.c.  See tls.h for the policy.
 */
#include "lib/tls.h"
#include "lib/atomicfile.h"
#include "lib/tlsbundle.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* One SNI name and the context holding its certificate. */
struct tls_sni {
	char *name;             /* lower case */
	SSL_CTX *ssl_ctx;
};

struct tls_ctx {
	SSL_CTX *ssl_ctx;
	bool server;
	bool verify;
	struct tls_sni *sni;    /* server only: per-name certificates */
	size_t nsni;
};

void
tls_errors(char *buf, size_t size)
{
	unsigned long e;
	size_t n = 0;

	if (size == 0)
		return;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		const char *reason = ERR_reason_error_string(e);
		char tmp[64];
		int w;

		if (reason == NULL) {
			snprintf(tmp, sizeof(tmp), "error %lx", e);
			reason = tmp;
		}
		if (n + 1 >= size)
			continue; /* keep draining the queue */
		w = snprintf(buf + n, size - n, "%s%s", n > 0 ? "; " : "", reason);
		if (w > 0)
			n += (size_t)w < size - n ? (size_t)w : size - n - 1;
	}
	if (buf[0] == '\0')
		str_lcpy(buf, "unknown OpenSSL error", size);
}

/* err_set with OpenSSL's queued reasons appended. */
static int
tls_fail(struct err *err, enum err_kind kind, const char *what)
{
	char reasons[256];

	tls_errors(reasons, sizeof(reasons));
	return err_set(err, kind, "%s: %s", what, reasons);
}

int
tls_parse_version(const char *s, int *version_r)
{
	static const struct { const char *name; int version; } v[] = {
		{ "1.0", TLS1_VERSION }, { "TLSv1", TLS1_VERSION }, { "TLSv1.0", TLS1_VERSION },
		{ "1.1", TLS1_1_VERSION }, { "TLSv1.1", TLS1_1_VERSION },
		{ "1.2", TLS1_2_VERSION }, { "TLSv1.2", TLS1_2_VERSION },
		{ "1.3", TLS1_3_VERSION }, { "TLSv1.3", TLS1_3_VERSION },
	};

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		if (s != NULL && str_eq(s, v[i].name)) {
			*version_r = v[i].version;
			return 0;
		}
	}
	return -1;
}

/* An SSL_CTX with Castor's policy, or with the server settings in tc
 * (NULL: the defaults). */
static SSL_CTX *
tls_ssl_ctx_new(bool server, const struct tls_server_conf *tc, struct err *err)
{
	const char *ciphers = tc != NULL && tc->ciphers != NULL ? tc->ciphers : TLS_DEFAULT_CIPHERS;
	int minv = TLS1_2_VERSION;
	SSL_CTX *s;

	if (tc != NULL && tc->min_version != NULL && tls_parse_version(tc->min_version, &minv) < 0) {
		err_set(err, ERR_INVALID, "tls_min_version %s: not one of 1.0 1.1 1.2 1.3", tc->min_version);
		return NULL;
	}
	ERR_clear_error();
	s = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (s == NULL) {
		tls_fail(err, ERR_TEMP, "SSL_CTX_new");
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(s, minv) != 1) {
		tls_fail(err, ERR_TEMP, "TLS context setup");
		SSL_CTX_free(s);
		return NULL;
	}
	if (SSL_CTX_set_cipher_list(s, ciphers) != 1) {
		tls_fail(err, ERR_INVALID, "tls_ciphers");
		SSL_CTX_free(s);
		return NULL;
	}
	if (tc != NULL && tc->ciphersuites != NULL && SSL_CTX_set_ciphersuites(s, tc->ciphersuites) != 1) {
		tls_fail(err, ERR_INVALID, "tls_ciphersuites");
		SSL_CTX_free(s);
		return NULL;
	}
	SSL_CTX_set_options(s, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
	    SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* conn.c writes from its own buffers and retries with the same
	 * arguments, but a large direct write may be retried from a moved
	 * position after a partial record: allow it. */
	SSL_CTX_set_mode(s, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	if (server) {
		SSL_CTX_set_dh_auto(s, 1);
		/* one process per connection: a server-side session cache is
		 * useless; tickets still allow resumption within a process. */
		SSL_CTX_set_session_cache_mode(s, SSL_SESS_CACHE_OFF);
	}
	return s;
}

static struct tls_ctx *
tls_ctx_common(bool server, struct err *err)
{
	struct tls_ctx *ctx;
	SSL_CTX *s = tls_ssl_ctx_new(server, NULL, err);

	if (s == NULL)
		return NULL;
	ctx = xcalloc(1, sizeof(*ctx));
	ctx->ssl_ctx = s;
	ctx->server = server;
	return ctx;
}

/* Put one pair of the bundle into s: the certificate, its chain, the key. */
static int
tls_use_pair(SSL_CTX *s, const struct tlsbundle_pair *p, struct err *err)
{
	char what[600];
	BIO *b = BIO_new_mem_buf(p->cert, (int)p->cert_len);
	X509 *x = NULL, *ca;
	EVP_PKEY *k = NULL;
	int rc = -1;

	ERR_clear_error();
	snprintf(what, sizeof(what), "TLS certificate %s", p->cert_path);
	if (b == NULL || (x = PEM_read_bio_X509_AUX(b, NULL, NULL, NULL)) == NULL ||
	    SSL_CTX_use_certificate(s, x) != 1 || SSL_CTX_clear_chain_certs(s) != 1)
		goto out;
	while ((ca = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (SSL_CTX_add0_chain_cert(s, ca) != 1) {
			X509_free(ca);
			goto out;
		}
	}
	if (ERR_GET_REASON(ERR_peek_last_error()) != PEM_R_NO_START_LINE)
		goto out;
	ERR_clear_error();  /* the end of the chain */
	BIO_free(b);
	snprintf(what, sizeof(what), "TLS key %s for certificate %s", p->key_path, p->cert_path);
	b = BIO_new_mem_buf(p->key, (int)p->key_len);
	if (b == NULL || (k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL)) == NULL ||
	    SSL_CTX_use_PrivateKey(s, k) != 1)
		goto out;
	snprintf(what, sizeof(what), "TLS key %s does not match certificate %s", p->key_path, p->cert_path);
	if (SSL_CTX_check_private_key(s) != 1)
		goto out;
	rc = 0;
out:
	if (rc < 0)
		tls_fail(err, ERR_INVALID, what);
	EVP_PKEY_free(k);
	X509_free(x);
	BIO_free(b);
	return rc;
}

/* The servername callback: switch to the name's certificate, if any. */
static int
tls_sni_select(SSL *ssl, int *alert, void *arg)
{
	const struct tls_ctx *ctx = arg;
	const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);

	(void)alert;
	if (name == NULL)
		return SSL_TLSEXT_ERR_NOACK;
	for (size_t i = 0; i < ctx->nsni; i++) {
		if (str_eq_ci(name, ctx->sni[i].name)) {
			if (SSL_set_SSL_CTX(ssl, ctx->sni[i].ssl_ctx) == NULL)
				return SSL_TLSEXT_ERR_ALERT_FATAL;
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;  /* the default certificate */
}

struct tls_ctx *
tls_server_ctx_from_bundle(const struct tlsbundle *b, const struct tls_server_conf *tc, struct err *err)
{
	struct tls_ctx *ctx;
	SSL_CTX *s;

	if (b->n == 0) {
		err_set(err, ERR_INVALID, "TLS: no certificate");
		return NULL;
	}
	s = tls_ssl_ctx_new(true, tc, err);
	if (s == NULL)
		return NULL;
	ctx = xcalloc(1, sizeof(*ctx));
	ctx->ssl_ctx = s;
	ctx->server = true;
	if (tls_use_pair(s, &b->pairs[0], err) < 0)
		goto fail;
	if (b->n > 1)
		ctx->sni = xcalloc(b->n - 1, sizeof(*ctx->sni));
	for (size_t i = 1; i < b->n; i++) {
		struct tls_sni *e = &ctx->sni[ctx->nsni];

		e->ssl_ctx = tls_ssl_ctx_new(true, tc, err);
		if (e->ssl_ctx == NULL)
			goto fail;
		e->name = xstrdup(b->pairs[i].name);
		ctx->nsni++;
		if (tls_use_pair(e->ssl_ctx, &b->pairs[i], err) < 0)
			goto fail;
	}
	if (ctx->nsni > 0) {
		SSL_CTX_set_tlsext_servername_callback(s, tls_sni_select);
		SSL_CTX_set_tlsext_servername_arg(s, ctx);
	}
	return ctx;
fail:
	tls_ctx_free(&ctx);
	return NULL;
}

struct tls_ctx *
tls_server_ctx_new_conf(const struct tls_server_conf *tc, struct err *err)
{
	struct tlsbundle *b = tlsbundle_read(tc, err);
	struct tls_ctx *ctx;

	if (b == NULL)
		return NULL;
	ctx = tls_server_ctx_from_bundle(b, tc, err);
	tlsbundle_free(&b);
	return ctx;
}

struct tls_ctx *
tls_server_ctx_from_conf(const struct conf *conf, const struct tlsbundle *b, struct err *err)
{
	struct tls_server_conf tc;
	struct tls_ctx *ctx;

	tlsbundle_conf(conf, &tc);
	ctx = b != NULL ? tls_server_ctx_from_bundle(b, &tc, err) : tls_server_ctx_new_conf(&tc, err);
	tlsbundle_conf_clear(&tc);
	return ctx;
}

struct tls_ctx *
tls_server_ctx_new(const char *cert_file, const char *key_file, struct err *err)
{
	struct tls_server_conf tc = { .cert_file = cert_file, .key_file = key_file };

	return tls_server_ctx_new_conf(&tc, err);
}

size_t
tls_ctx_sni_count(const struct tls_ctx *ctx)
{
	return ctx->nsni;
}

struct tls_ctx *
tls_client_ctx_new(bool verify, const char *ca_file, struct err *err)
{
	struct tls_ctx *ctx = tls_ctx_common(false, err);

	if (ctx == NULL)
		return NULL;
	ctx->verify = verify;
	if (!verify) {
		SSL_CTX_set_verify(ctx->ssl_ctx, SSL_VERIFY_NONE, NULL);
		return ctx;
	}
	SSL_CTX_set_verify(ctx->ssl_ctx, SSL_VERIFY_PEER, NULL);
	if (ca_file != NULL && *ca_file != '\0') {
		if (access(ca_file, R_OK) < 0) {
			err_errno(err, errno == ENOENT ? ERR_NOTFOUND : ERR_PERM, "TLS CA file %s", ca_file);
			tls_ctx_free(&ctx);
			return NULL;
		}
		if (SSL_CTX_load_verify_locations(ctx->ssl_ctx, ca_file, NULL) != 1) {
			char what[600];
			snprintf(what, sizeof(what), "TLS CA file %s", ca_file);
			tls_fail(err, ERR_INVALID, what);
			tls_ctx_free(&ctx);
			return NULL;
		}
	} else if (SSL_CTX_set_default_verify_paths(ctx->ssl_ctx) != 1) {
		tls_fail(err, ERR_TEMP, "TLS default trust store");
		tls_ctx_free(&ctx);
		return NULL;
	}
	return ctx;
}

int
tls_ctx_set_ciphers(struct tls_ctx *ctx, const char *ciphers, struct err *err)
{
	ERR_clear_error();
	if (SSL_CTX_set_cipher_list(ctx->ssl_ctx, ciphers) != 1)
		return tls_fail(err, ERR_INVALID, "TLS cipher list");
	return 0;
}

bool
tls_ctx_is_server(const struct tls_ctx *ctx)
{
	return ctx->server;
}

bool
tls_ctx_verifies(const struct tls_ctx *ctx)
{
	return ctx->verify;
}

void *
tls_ctx_ssl_ctx(struct tls_ctx *ctx)
{
	return ctx->ssl_ctx;
}

void
tls_ctx_free(struct tls_ctx **ctx)
{
	if (ctx == NULL || *ctx == NULL)
		return;
	SSL_CTX_free((*ctx)->ssl_ctx);
	for (size_t i = 0; i < (*ctx)->nsni; i++) {
		SSL_CTX_free((*ctx)->sni[i].ssl_ctx);
		free((*ctx)->sni[i].name);
	}
	free((*ctx)->sni);
	free(*ctx);
	*ctx = NULL;
}

/* Add one v3 extension given in openssl.cnf syntax. */
static int
tls_add_ext(X509 *cert, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	int ok;

	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (ext == NULL)
		return -1;
	ok = X509_add_ext(cert, ext, -1);
	X509_EXTENSION_free(ext);
	return ok == 1 ? 0 : -1;
}

/* PEM-encode into a malloc'd buffer via a memory BIO. */
static int
tls_bio_take(BIO *bio, char **data_r, size_t *len_r)
{
	char *p;
	long n = BIO_get_mem_data(bio, &p);

	if (n <= 0)
		return -1;
	*data_r = xmemdup(p, (size_t)n);
	*len_r = (size_t)n;
	return 0;
}

static bool
tls_is_ip(const char *s)
{
	unsigned char a[16];

	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

int
tls_make_selfsigned(const char *cert_path, const char *key_path, const char *common_name,
	struct err *err)
{
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	X509_NAME *name;
	BIGNUM *serial = NULL;
	BIO *kbio = NULL, *cbio = NULL;
	char *kdata = NULL, *cdata = NULL;
	size_t klen = 0, clen = 0;
	unsigned char rnd[16];
	char san[600];
	int ret = -1;

	if (common_name == NULL || *common_name == '\0' || strlen(common_name) > 64)
		return err_set(err, ERR_INVALID, "certificate common name must be 1 to 64 bytes");
	if (str_mem_has(common_name, strlen(common_name), ',') ||
	    strpbrk(common_name, " \t\r\n/\\\"") != NULL)
		return err_set(err, ERR_INVALID, "certificate common name %s: invalid characters",
		    common_name);
	ERR_clear_error();
	key = EVP_EC_gen("P-256");
	if (key == NULL) {
		tls_fail(err, ERR_TEMP, "generate EC P-256 key");
		goto out;
	}
	cert = X509_new();
	serial = BN_new();
	if (cert == NULL || serial == NULL || RAND_bytes(rnd, sizeof(rnd)) != 1) {
		tls_fail(err, ERR_TEMP, "certificate setup");
		goto out;
	}
	rnd[0] &= 0x7f; /* positive */
	rnd[0] |= 0x40; /* and full length */
	if (X509_set_version(cert, X509_VERSION_3) != 1 ||
	    BN_bin2bn(rnd, sizeof(rnd), serial) == NULL ||
	    BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert)) == NULL ||
	    X509_gmtime_adj(X509_getm_notBefore(cert), -3600) == NULL ||
	    X509_time_adj_ex(X509_getm_notAfter(cert), 3653, 0, NULL) == NULL ||
	    X509_set_pubkey(cert, key) != 1) {
		tls_fail(err, ERR_TEMP, "certificate fields");
		goto out;
	}
	name = X509_get_subject_name(cert);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
	        (const unsigned char *)common_name, -1, -1, 0) != 1 ||
	    X509_set_issuer_name(cert, name) != 1) {
		tls_fail(err, ERR_INVALID, "certificate name");
		goto out;
	}
	if (str_eq_ci(common_name, "localhost") || tls_is_ip(common_name))
		str_lcpy(san, "DNS:localhost,IP:127.0.0.1,IP:::1", sizeof(san));
	else
		snprintf(san, sizeof(san), "DNS:%s,DNS:localhost,IP:127.0.0.1,IP:::1", common_name);
	if (tls_add_ext(cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
	    tls_add_ext(cert, NID_key_usage, "critical,digitalSignature") < 0 ||
	    tls_add_ext(cert, NID_ext_key_usage, "serverAuth") < 0 ||
	    tls_add_ext(cert, NID_subject_key_identifier, "hash") < 0 ||
	    tls_add_ext(cert, NID_authority_key_identifier, "keyid:always") < 0 ||
	    tls_add_ext(cert, NID_subject_alt_name, san) < 0) {
		tls_fail(err, ERR_INVALID, "certificate extensions");
		goto out;
	}
	if (X509_sign(cert, key, EVP_sha256()) <= 0) {
		tls_fail(err, ERR_TEMP, "sign certificate");
		goto out;
	}
	kbio = BIO_new(BIO_s_secmem());
	cbio = BIO_new(BIO_s_mem());
	if (kbio == NULL || cbio == NULL ||
	    PEM_write_bio_PrivateKey(kbio, key, NULL, NULL, 0, NULL, NULL) != 1 ||
	    PEM_write_bio_X509(cbio, cert) != 1 ||
	    tls_bio_take(kbio, &kdata, &klen) < 0 || tls_bio_take(cbio, &cdata, &clen) < 0) {
		tls_fail(err, ERR_TEMP, "PEM encoding");
		goto out;
	}
	if (atomicfile_write(key_path, kdata, klen, 0600, err) < 0)
		goto out;
	if (atomicfile_write(cert_path, cdata, clen, 0644, err) < 0)
		goto out;
	ret = 0;
out:
	if (kdata != NULL) {
		OPENSSL_cleanse(kdata, klen);
		free(kdata);
	}
	free(cdata);
	BIO_free(kbio);
	BIO_free(cbio);
	BN_free(serial);
	X509_free(cert);
	EVP_PKEY_free(key);
	return ret;
}
