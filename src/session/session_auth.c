/*
 * session_auth.c - the plaintext rule, login-name folding, password
 * verification, the failed-login delay and the shared penalty table
 * (lib/authpen.h) as the protocol services use them (see session_auth.h).
 */
#include "session/session_auth.h"

#include "lib/authpen.h"
#include "lib/buf.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* This process's handle on ROOT/run/authpen, opened at first need. */
static struct authpen *session_auth_pen_g;
static bool session_auth_pen_tried;

static struct authpen *
session_auth_pen(const struct conf *conf)
{
	struct buf path = BUF_INIT;
	struct err err;

	if (session_auth_pen_tried || conf == NULL)
		return session_auth_pen_g;
	session_auth_pen_tried = true;
	if (!conf_get_bool(conf, "auth_penalty", true))
		return NULL;
	buf_printf(&path, "%s/run/authpen", conf_dir(conf));
	session_auth_pen_g = authpen_open(buf_cstr(&path),
		conf_get_duration_ms(conf, "auth_penalty_max", SVCAUTH_PENALTY_MAX_MS),
		conf_get_duration_ms(conf, "auth_penalty_decay", SVCAUTH_PENALTY_DECAY_MS), &err);
	if (session_auth_pen_g == NULL)
		log_warn("authentication penalty table unavailable, failed logins are not throttled"
			" across connections (fail open) error=%s", log_q(err.msg));
	buf_free(&path);
	return session_auth_pen_g;
}

void
session_auth_init(struct session_auth *a, const char *service, const char *peer, bool loopback)
{
	memset(a, 0, sizeof(*a));
	str_lcpy(a->service, service, sizeof(a->service));
	str_lcpy(a->peer, peer, sizeof(a->peer));
	authpen_peer_addr(peer, a->rip, sizeof(a->rip));
	a->loopback = loopback && FAILPOINT("session_auth.not_loopback") == 0;
}

bool
session_auth_plaintext_ok(struct session_auth *a, const struct conf *conf, bool tls)
{
	(void)session_auth_pen(conf);   /* open the table before the first failure */
	if (tls)
		a->rule = "tls";
	else if (a->loopback && conf != NULL && conf_get_bool(conf, "allowplaintext_loopback", false))
		a->rule = "loopback";
	else if (conf != NULL && conf_get_bool(conf, "allowplaintext", false))
		a->rule = "allowplaintext";
	else
		a->rule = NULL;
	return a->rule != NULL;
}

int
session_auth_user_canon(const char *login, bool virtdomains, char *out, size_t size, struct err *err)
{
	size_t n = strlen(login);
	const char *at;

	if (!virtdomains) {
		at = strrchr(login, '@');
		if (at != NULL)
			n = (size_t)(at - login);
	}
	if (n == 0 || n >= size || n > STORE_USER_NAME_MAX)
		return err_set(err, ERR_INVALID, "bad user name");
	for (size_t i = 0; i < n; i++)
		out[i] = str_lower_c(login[i]);
	out[n] = '\0';
	if (!store_user_name_valid(out)) {
		out[0] = '\0';
		return err_set(err, ERR_INVALID, "bad user name");
	}
	return 0;
}

int
session_auth_delay_ms(unsigned n)
{
	int64_t d = SVCAUTH_DELAY_BASE_MS;

	if (n == 0)
		return 0;
	for (unsigned i = 1; i < n && d < SVCAUTH_DELAY_MAX_MS; i++)
		d *= 2;
	return d > SVCAUTH_DELAY_MAX_MS ? SVCAUTH_DELAY_MAX_MS : (int)d;
}

/* Sleep ms whatever signals arrive (SA_RESTART does not restart nanosleep). */
static void
session_auth_sleep(int ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += ms / 1000;
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
		;
}

/* Count, log (the line contrib/fail2ban matches) and sleep a refusal. */
static void
session_auth_refused(struct session_auth *a, const char *login, const char *reason, int64_t penalty_ms)
{
	int ms;

	a->failures++;
	ms = session_auth_delay_ms(a->failures);
	log_notice("auth failed service=%s rip=%s user=%s peer=%s failures=%u penalty_ms=%lld"
		" delay_ms=%d reason=%s", a->service, log_q(a->rip),
		log_q(login != NULL ? login : ""), log_q(a->peer), a->failures,
		(long long)penalty_ms, ms, log_q(reason));
	session_auth_sleep(ms);
}

void
session_auth_failed(struct session_auth *a, const char *login, const char *reason)
{
	if (session_auth_pen_g != NULL)
		authpen_note(session_auth_pen_g, a->rip);
	session_auth_refused(a, login, reason, 0);
}

bool
session_auth_give_up(const struct session_auth *a)
{
	return a->failures >= SVCAUTH_MAX_FAILURES;
}

int
session_auth_login(struct session_auth *a, struct store *st, const struct conf *conf, const char *authzid,
	const char *login, const char *password, char *user_r, size_t size, struct err *err)
{
	bool virtdomains = conf != NULL && conf_get_bool(conf, "virtdomains", false);
	char user[STORE_USER_NAME_MAX + 1], zuser[STORE_USER_NAME_MAX + 1];
	struct err e2 = { 0 };
	struct authpen *pen = session_auth_pen(conf);
	struct authpen_turn turn = { 0 };
	int rc;

	a->throttled = false;
	if (session_auth_user_canon(login, virtdomains, user, sizeof(user), &e2) < 0) {
		session_auth_failed(a, login, "invalid user name");
		return 0;
	}
	if (authzid != NULL && authzid[0] != '\0') {
		if (session_auth_user_canon(authzid, virtdomains, zuser, sizeof(zuser), &e2) < 0 ||
		    !str_eq(zuser, user)) {
			session_auth_failed(a, login, "proxy login (authzid) not allowed");
			return 0;
		}
	}
	if (pen != NULL && authpen_begin(pen, user, a->rip, &turn, &e2) < 0) {
		log_warn("authentication penalty table unusable, not throttling (fail open)"
			" error=%s", log_q(e2.msg));
		pen = NULL;
	}
	if (pen != NULL && turn.throttled) {
		a->throttled = true;
		session_auth_refused(a, user, "throttled: too many failures for this user or address",
			turn.wait_ms);
		return 0;
	}
	if (pen != NULL && turn.wait_ms > 0)
		session_auth_sleep((int)turn.wait_ms);
	rc = store_user_verify(st, user, password, err);
	if (pen != NULL)
		authpen_end(pen, user, a->rip, rc == 1);
	if (rc < 0) {
		log_error("login check failed service=%s peer=%s user=%s error=%s", a->service,
			log_q(a->peer), log_q(user), log_q(err->msg));
		return -1;
	}
	if (rc == 0) {
		session_auth_refused(a, user, "bad password or unknown user", pen != NULL ? turn.wait_ms : 0);
		return 0;
	}
	if (str_lcpy(user_r, user, size) >= size)
		return err_set(err, ERR_INVALID, "user name buffer too small");
	log_info("login service=%s peer=%s user=%s plaintext_rule=%s", a->service, log_q(a->peer),
		log_q(user), a->rule != NULL ? a->rule : "none");
	return 1;
}
