/*
 * sasl.h - SASL PLAIN (RFC 4616) messages.
 *
 * The decoded message is  [authzid] NUL authcid NUL passwd.  Parsing
 * rejects, each with its own reason (ERR_INVALID):
 *   - fewer or more than two NUL separators (a NUL inside a part);
 *   - an empty authcid or an empty password;
 *   - a part longer than its limit (SASL_PLAIN_ID_MAX for the
 *     identities, SASL_PLAIN_PASS_MAX for the password);
 *   - a part that is not valid UTF-8 (RFC 4616 requires UTF-8);
 *   - control characters (below 0x20, or 0x7f) in the identities, so a
 *     user name never carries CR/LF into a log line or a protocol reply.
 * The password may hold any non-NUL byte sequence that is valid UTF-8.
 *
 * An empty authzid, or one equal to authcid, means "act as authcid";
 * anything else is a proxy request that the caller must authorise.
 */
#ifndef CASTOR_SASL_H
#define CASTOR_SASL_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/err.h"

#define SASL_PLAIN_ID_MAX 255
#define SASL_PLAIN_PASS_MAX 1024
/* Longest base64 PLAIN response worth decoding (identities, password,
 * separators, encoded); protocol code may refuse longer lines early. */
#define SASL_PLAIN_B64_MAX (((2 * SASL_PLAIN_ID_MAX + SASL_PLAIN_PASS_MAX + 2) + 2) / 3 * 4)

struct sasl_plain {
	char authzid[SASL_PLAIN_ID_MAX + 1];  /* "" when absent */
	char authcid[SASL_PLAIN_ID_MAX + 1];
	char passwd[SASL_PLAIN_PASS_MAX + 1];
};

/* Parse a decoded PLAIN message msg[0..len) into *out (NUL-terminated
 * copies).  0, or -1 with ERR_INVALID and a reason; *out is wiped then. */
int sasl_plain_parse(const char *msg, size_t len, struct sasl_plain *out, struct err *err);

/* Strict-base64-decode b64[0..len) (an AUTHENTICATE response or initial
 * response) and parse it.  The decoded copy is wiped before returning.
 * 0, or -1 with ERR_INVALID. */
int sasl_plain_decode(const char *b64, size_t len, struct sasl_plain *out, struct err *err);

/* Append the base64 PLAIN response for these credentials to out (the
 * client side: sync-client, tests).  authzid may be NULL or "". */
void sasl_plain_encode(struct buf *out, const char *authzid, const char *authcid,
	const char *passwd);

/* Wipe the password (and the rest) from memory. */
void sasl_plain_clear(struct sasl_plain *p);

#endif
