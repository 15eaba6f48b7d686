/*
 * svcauth.h - what every protocol service (pop3d, imapd, ...) does
 * around a password login: the plaintext rule, login-name folding,
 * verification against users.db, and the failed-login policy.
 *
 *     struct svcauth a;
 *     svcauth_init(&a, "pop3d", c->peer, c->loopback);
 *     if (!svcauth_plaintext_ok(&a, conf, conn_is_tls(conn)))
 *             -> "-ERR [AUTH] Plaintext authentication disallowed ..."
 *     rc = svcauth_login(&a, st, conf, login, password, user, sizeof(user), &err);
 *     rc == 1: logged in as `user` (canonical store user name)
 *     rc == 0: refused; the failure has been logged with the peer and
 *              the growing delay slept; svcauth_give_up(&a) says whether
 *              to drop the connection now
 *     rc == -1: store trouble (err, ERR_TEMP): answer a temporary error
 *
 * Plaintext rule: a password may travel on a connection that is TLS,
 * or whose peer is on this machine (loopback or unix socket), or when
 * castor.conf says `allowplaintext: yes`.  For tests, the failpoint
 * "svcauth.not_loopback=error" makes every peer count as remote.
 *
 * Failed logins: the n-th failure on one connection is answered after
 * SVCAUTH_DELAY_BASE_MS * 2^(n-1) milliseconds (capped at
 * SVCAUTH_DELAY_MAX_MS); after SVCAUTH_MAX_FAILURES the service should
 * close the connection.  Each failure is logged at notice level as
 *     login failed service=pop3d peer=127.0.0.1:4711 user=alice failures=2 reason=...
 * A successful login is logged at info level.
 *
 * Login names: ASCII case is folded; with `virtdomains: off` an
 * "@domain" suffix is dropped ("Alice@Example.COM" -> "alice"), with
 * it on the whole address is the user ("alice@example.com").  LMTP
 * recipients go through the same function, so a user logs in under
 * the name mail is delivered to.
 */
#ifndef CASTOR_SVC_SVCAUTH_H
#define CASTOR_SVC_SVCAUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/conf.h"
#include "lib/err.h"
#include "store/store.h"

#define SVCAUTH_DELAY_BASE_MS 500
#define SVCAUTH_DELAY_MAX_MS 8000
#define SVCAUTH_MAX_FAILURES 5

struct svcauth {
	char service[32];
	char peer[128];
	bool loopback;          /* the skeleton's service_conn.loopback, after the failpoint */
	unsigned failures;      /* failed logins on this connection */
};

/* Start the per-connection state. */
void svcauth_init(struct svcauth *a, const char *service, const char *peer, bool loopback);

/* May a plaintext password be accepted on this connection now? */
bool svcauth_plaintext_ok(const struct svcauth *a, const struct conf *conf, bool tls);

/* Fold a login name or address into a store user name (see above).
 * 0 with out filled, or -1 with ERR_INVALID when the result is not a
 * valid store user name (store_user_name_valid) or does not fit. */
int svcauth_user_canon(const char *login, bool virtdomains, char *out, size_t size,
	struct err *err);

/* Verify login/password.  1 ok (user_r gets the canonical name), 0
 * refused (logged, delayed), -1 store error (err; not counted as a
 * failure).  `authzid` may be NULL; a non-empty authzid that is not the
 * same user is refused (no proxy logins). */
int svcauth_login(struct svcauth *a, struct store *st, const struct conf *conf,
	const char *authzid, const char *login, const char *password, char *user_r, size_t size,
	struct err *err);

/* Record a failed login that svcauth_login did not see (a malformed
 * SASL response, a refused mechanism): logs and sleeps the delay. */
void svcauth_failed(struct svcauth *a, const char *login, const char *reason);

/* The delay before answering the n-th failure (n >= 1), in ms. */
int svcauth_delay_ms(unsigned n);

/* true once the connection has had SVCAUTH_MAX_FAILURES failures. */
bool svcauth_give_up(const struct svcauth *a);

#endif
