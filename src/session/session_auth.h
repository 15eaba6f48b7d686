/*
 * session_auth.h - what every protocol service (pop3d, imapd, ...) does
 * around a password login: the plaintext rule, login-name folding,
 * verification against users.db, and the failed-login policy.
 *
 *     struct session_auth a;
 *     session_auth_init(&a, "pop3d", c->peer, c->loopback);
 *     if (!session_auth_plaintext_ok(&a, conf, conn_is_tls(conn)))
 *             -> "-ERR [AUTH] Plaintext authentication disallowed ..."
 *     rc = session_auth_login(&a, st, conf, login, password, user, sizeof(user), &err);
 *     rc == 1: logged in as `user` (canonical store user name)
 *     rc == 0: refused; the failure has been logged with the peer and
 *              the growing delay slept; session_auth_give_up(&a) says whether
 *              to drop the connection now; a.throttled says the password
 *              was not even checked (shared penalty, below): answer a
 *              temporary error
 *     rc == -1: store trouble (err, ERR_TEMP): answer a temporary error
 *
 * Plaintext rule: a password may travel on a connection that is TLS
 * (rule tls), or whose peer is on this machine (loopback or unix
 * socket) when castor.conf says `allowplaintext_loopback: yes` (rule
 * loopback; castorctl init writes it, the built-in default is no), or
 * on any connection when it says `allowplaintext: yes` (rule
 * allowplaintext).  The rule that allowed a login is in its log line
 * (plaintext_rule=).  For tests, the failpoint
 * "session_auth.not_loopback=error" makes every peer count as remote.
 *
 * Failed logins, per connection: the n-th failure on one connection is
 * answered after SVCAUTH_DELAY_BASE_MS * 2^(n-1) milliseconds (capped
 * at SVCAUTH_DELAY_MAX_MS); after SVCAUTH_MAX_FAILURES the service
 * should close the connection.
 *
 * Failed logins, across connections, processes and services: with
 * `auth_penalty: yes` (default) every password check first takes a
 * turn in ROOT/run/authpen (lib/authpen.h) for the user name and the
 * client address, and sleeps until it (without any lock held).  A turn
 * further than auth_penalty_max away is refused unchecked (throttled).
 * A table that cannot be opened is logged and skipped (fail open).
 *
 * Each failure is logged at notice level as one line operators feed to
 * fail2ban (contrib/fail2ban/, docs/security.md):
 *     auth failed service=pop3d rip=127.0.0.1 user=alice peer=127.0.0.1:4711
 *         failures=2 penalty_ms=1000 delay_ms=1000 reason=...
 * A successful login is logged at info level with plaintext_rule=.
 *
 * Login names: ASCII case is folded; with `virtdomains: off` an
 * "@domain" suffix is dropped ("Alice@Example.COM" -> "alice"), with
 * it on the whole address is the user ("alice@example.com").  LMTP
 * recipients go through the same function, so a user logs in under
 * the name mail is delivered to.
 */
#ifndef CASTOR_SESSION_SESSION_AUTH_H
#define CASTOR_SESSION_SESSION_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/conf.h"
#include "lib/err.h"
#include "store/store.h"

#define SVCAUTH_DELAY_BASE_MS 500
#define SVCAUTH_DELAY_MAX_MS 8000
#define SVCAUTH_MAX_FAILURES 5
#define SVCAUTH_PENALTY_MAX_MS 15000     /* auth_penalty_max */
#define SVCAUTH_PENALTY_DECAY_MS 60000   /* auth_penalty_decay */

struct session_auth {
	char service[32];
	char peer[128];
	char rip[64];           /* the address part of peer: the penalty key, rip= in logs */
	bool loopback;          /* the skeleton's child_conn.loopback, after the failpoint */
	unsigned failures;      /* failed logins on this connection */
	const char *rule;       /* what allowed plaintext at the last check, or NULL */
	bool throttled;         /* the last refusal was the shared penalty's */
};

/* Start the per-connection state. */
void session_auth_init(struct session_auth *a, const char *service, const char *peer, bool loopback);

/* May a plaintext password be accepted on this connection now?  Records
 * the rule that allows it (tls, loopback, allowplaintext) for the log. */
bool session_auth_plaintext_ok(struct session_auth *a, const struct conf *conf, bool tls);

/* Fold a login name or address into a store user name (see above).
 * 0 with out filled, or -1 with ERR_INVALID when the result is not a
 * valid store user name (store_user_name_valid) or does not fit. */
int session_auth_user_canon(const char *login, bool virtdomains, char *out, size_t size,
	struct err *err);

/* Verify login/password.  1 ok (user_r gets the canonical name), 0
 * refused (logged, delayed), -1 store error (err; not counted as a
 * failure).  `authzid` may be NULL; a non-empty authzid that is not the
 * same user is refused (no proxy logins). */
int session_auth_login(struct session_auth *a, struct store *st, const struct conf *conf,
	const char *authzid, const char *login, const char *password, char *user_r, size_t size,
	struct err *err);

/* Record a failed login that session_auth_login did not see (a malformed
 * SASL response, a refused mechanism): logs, counts one failure on the
 * address's shared key, and sleeps the delay. */
void session_auth_failed(struct session_auth *a, const char *login, const char *reason);

/* The delay before answering the n-th failure (n >= 1), in ms. */
int session_auth_delay_ms(unsigned n);

/* true once the connection has had SVCAUTH_MAX_FAILURES failures. */
bool session_auth_give_up(const struct session_auth *a);

#endif
