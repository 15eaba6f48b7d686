/*
 * svcauth.c - the plaintext rule, login-name folding, password
 * verification and the failed-login delay shared by the protocol
 * services (see svcauth.h).
 */
#include "svc/svcauth.h"

#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"

#include <errno.h>
#include <string.h>
#include <time.h>

void
svcauth_init(struct svcauth *a, const char *service, const char *peer, bool loopback)
{
	memset(a, 0, sizeof(*a));
	str_lcpy(a->service, service, sizeof(a->service));
	str_lcpy(a->peer, peer, sizeof(a->peer));
	a->loopback = loopback && FAILPOINT("svcauth.not_loopback") == 0;
}

bool
svcauth_plaintext_ok(const struct svcauth *a, const struct conf *conf, bool tls)
{
	if (tls || a->loopback)
		return true;
	return conf != NULL && conf_get_bool(conf, "allowplaintext", false);
}

int
svcauth_user_canon(const char *login, bool virtdomains, char *out, size_t size, struct err *err)
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
svcauth_delay_ms(unsigned n)
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
svcauth_sleep(int ms)
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

void
svcauth_failed(struct svcauth *a, const char *login, const char *reason)
{
	int ms;

	a->failures++;
	ms = svcauth_delay_ms(a->failures);
	log_notice("login failed service=%s peer=%s user=%s failures=%u delay_ms=%d reason=%s",
		a->service, log_q(a->peer), log_q(login != NULL ? login : ""), a->failures, ms,
		log_q(reason));
	svcauth_sleep(ms);
}

bool
svcauth_give_up(const struct svcauth *a)
{
	return a->failures >= SVCAUTH_MAX_FAILURES;
}

int
svcauth_login(struct svcauth *a, struct store *st, const struct conf *conf, const char *authzid,
	const char *login, const char *password, char *user_r, size_t size, struct err *err)
{
	bool virtdomains = conf != NULL && conf_get_bool(conf, "virtdomains", false);
	char user[STORE_USER_NAME_MAX + 1], zuser[STORE_USER_NAME_MAX + 1];
	struct err e2 = { 0 };
	int rc;

	if (svcauth_user_canon(login, virtdomains, user, sizeof(user), &e2) < 0) {
		svcauth_failed(a, login, "invalid user name");
		return 0;
	}
	if (authzid != NULL && authzid[0] != '\0') {
		if (svcauth_user_canon(authzid, virtdomains, zuser, sizeof(zuser), &e2) < 0 ||
		    !str_eq(zuser, user)) {
			svcauth_failed(a, login, "proxy login (authzid) not allowed");
			return 0;
		}
	}
	rc = store_user_verify(st, user, password, err);
	if (rc < 0) {
		log_error("login check failed service=%s peer=%s user=%s error=%s", a->service,
			log_q(a->peer), log_q(user), log_q(err->msg));
		return -1;
	}
	if (rc == 0) {
		svcauth_failed(a, user, "bad password or unknown user");
		return 0;
	}
	if (str_lcpy(user_r, user, size) >= size)
		return err_set(err, ERR_INVALID, "user name buffer too small");
	log_info("login service=%s peer=%s user=%s", a->service, log_q(a->peer), log_q(user));
	return 1;
}
