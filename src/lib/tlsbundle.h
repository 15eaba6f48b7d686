/*
 * tlsbundle.h - the certificates and keys of a server TLS context, read
 * into memory once: castord reads and checks them at start and on each
 * reload, and hands the last set that loaded to its service children as
 * a sealed memfd (proto.h, CASTOR_TLS_FD).  A child builds its context
 * from that, so a certificate broken on disk never reaches a child and
 * the children never need to read the private key files themselves.
 * This file does not use OpenSSL (castord does not link it): castord has
 * `castorctl tls-check` check a bundle (tls.c builds the contexts).
 *
 * Memfd layout (all numbers decimal ASCII):
 *     "castor-tls-bundle 1\n"
 *     per pair: "pair <namelen> <certpathlen> <keypathlen> <certlen> <keylen>\n"
 *               then the name (empty for the default certificate), the
 *               two paths and the two PEM texts, back to back;
 *     "end\n"
 * The default pair comes first.  Total at most TLSBUNDLE_MAX bytes.
 */
#ifndef CASTOR_TLSBUNDLE_H
#define CASTOR_TLSBUNDLE_H

#include <stddef.h>

#include "lib/conf.h"
#include "lib/err.h"
#include "lib/tls.h"

#define TLSBUNDLE_MAX (64u * 1024 * 1024)

struct tlsbundle_pair {
	char *name;               /* SNI name in lower case; "" for the default */
	char *cert_path;          /* where it was read (for messages) */
	char *key_path;
	char *cert;               /* PEM: certificate, then its chain */
	size_t cert_len;
	char *key;                /* PEM private key (may hold the certificate too) */
	size_t key_len;
};

struct tlsbundle {
	struct tlsbundle_pair *pairs;   /* [0]: the default certificate */
	size_t n;
};

/* Read tc->cert_file/key_file and every NAME.pem of tc->sni_dir (key in
 * NAME.key when that exists, else in NAME.pem).  NULL with err naming
 * the file that could not be read. */
struct tlsbundle *tlsbundle_read(const struct tls_server_conf *tc, struct err *err);
/* castor.conf's tls_* keys into *tc; the three paths are malloc'd (free
 * them with tlsbundle_conf_clear), the other strings belong to conf. */
void tlsbundle_conf(const struct conf *conf, struct tls_server_conf *tc);
void tlsbundle_conf_clear(struct tls_server_conf *tc);
/* The bundle in a new sealed memfd (close-on-exec): the fd, or -1 with err. */
int tlsbundle_memfd(const struct tlsbundle *b, struct err *err);
/* A bundle from a memfd made by tlsbundle_memfd (read with pread: the
 * offset is shared with other processes).  NULL with err if malformed. */
struct tlsbundle *tlsbundle_from_fd(int fd, struct err *err);
/* Free (the keys are wiped first); *b becomes NULL. */
void tlsbundle_free(struct tlsbundle **b);

#endif
