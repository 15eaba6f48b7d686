/* test_session_auth.c - unit tests for src/session/session_auth.c: login-name folding
 * (virtdomains on and off), the plaintext rule, the growing delay, and
 * session_auth_login against a real store (good and bad passwords, unknown
 * users, proxy authzids, the give-up count). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/conf.h"
#include "lib/failpoint.h"
#include "session/session_auth.h"

static void
test_canon(void **state)
{
	char out[STORE_USER_NAME_MAX + 1];
	struct err err;

	(void)state;
	assert_int_equal(session_auth_user_canon("Alice", false, out, sizeof(out), &err), 0);
	assert_string_equal(out, "alice");
	assert_int_equal(session_auth_user_canon("Alice@Example.COM", false, out, sizeof(out), &err), 0);
	assert_string_equal(out, "alice");
	assert_int_equal(session_auth_user_canon("Alice@Example.COM", true, out, sizeof(out), &err), 0);
	assert_string_equal(out, "alice@example.com");
	assert_int_equal(session_auth_user_canon("a@b@c", false, out, sizeof(out), &err), 0);
	assert_string_equal(out, "a@b");     /* the last '@' starts the domain */
	assert_int_equal(session_auth_user_canon("", false, out, sizeof(out), &err), -1);
	assert_int_equal(session_auth_user_canon("@example.com", false, out, sizeof(out), &err), -1);
	assert_int_equal(session_auth_user_canon("bad name", false, out, sizeof(out), &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	assert_int_equal(session_auth_user_canon("../etc", false, out, sizeof(out), &err), -1);
	assert_int_equal(session_auth_user_canon("j\xc3\xbcrgen", false, out, sizeof(out), &err), -1);
	assert_int_equal(session_auth_user_canon("alice", false, out, 5, &err), -1);   /* does not fit */
}

static void
test_plaintext_rule(void **state)
{
	struct session_auth a;
	struct err err;
	struct conf *on = conf_parse("allowplaintext: yes\n", 20, "/tmp/x.conf", &err);
	struct conf *lo = conf_parse("allowplaintext_loopback: yes\n", 29, "/tmp/x.conf", &err);

	(void)state;
	assert_non_null(on);
	assert_non_null(lo);
	session_auth_init(&a, "test", "192.0.2.1:1", false);
	assert_string_equal(a.rip, "192.0.2.1");
	assert_false(session_auth_plaintext_ok(&a, NULL, false));
	assert_true(session_auth_plaintext_ok(&a, NULL, true));
	assert_string_equal(a.rule, "tls");
	assert_true(session_auth_plaintext_ok(&a, on, false));
	assert_string_equal(a.rule, "allowplaintext");
	assert_false(session_auth_plaintext_ok(&a, lo, false));   /* remote: loopback rule n/a */
	/* loopback is allowed only with allowplaintext_loopback (default no) */
	session_auth_init(&a, "test", "127.0.0.1:1", true);
	assert_false(session_auth_plaintext_ok(&a, NULL, false));
	assert_true(session_auth_plaintext_ok(&a, lo, false));
	assert_string_equal(a.rule, "loopback");
	/* the failpoint makes a loopback peer count as remote (for tests) */
	assert_int_equal(failpoint_set("session_auth.not_loopback=error"), 0);
	session_auth_init(&a, "test", "127.0.0.1:1", true);
	assert_false(session_auth_plaintext_ok(&a, lo, false));
	assert_int_equal(failpoint_set(""), 0);
	session_auth_init(&a, "test", "[::1]:143", true);
	assert_string_equal(a.rip, "::1");
	conf_free(on);
	conf_free(lo);
}

static void
test_delay(void **state)
{
	(void)state;
	assert_int_equal(session_auth_delay_ms(0), 0);
	assert_int_equal(session_auth_delay_ms(1), SVCAUTH_DELAY_BASE_MS);
	assert_int_equal(session_auth_delay_ms(2), 2 * SVCAUTH_DELAY_BASE_MS);
	assert_int_equal(session_auth_delay_ms(3), 4 * SVCAUTH_DELAY_BASE_MS);
	assert_int_equal(session_auth_delay_ms(5), SVCAUTH_DELAY_MAX_MS);
	assert_int_equal(session_auth_delay_ms(100), SVCAUTH_DELAY_MAX_MS);
	assert_int_equal(session_auth_delay_ms(4000000000u), SVCAUTH_DELAY_MAX_MS);
}

static double
now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
test_login(void **state)
{
	char root[] = "/tmp/test_session_auth.XXXXXX", cmd[128], user[STORE_USER_NAME_MAX + 1];
	struct store *st;
	struct session_auth a;
	struct err err;
	double t0, t1;

	(void)state;
	assert_non_null(mkdtemp(root));
	assert_int_equal(store_create(root, "master", &err), 0);
	st = store_open(root, NULL, &err);
	assert_non_null(st);
	assert_int_equal(store_user_add(st, "alice", "right", &err), 0);
	session_auth_init(&a, "test", "192.0.2.1:4711", false);

	assert_int_equal(session_auth_login(&a, st, NULL, NULL, "ALICE", "right", user, sizeof(user), &err), 1);
	assert_string_equal(user, "alice");
	assert_int_equal(a.failures, 0);
	assert_int_equal(session_auth_login(&a, st, NULL, "alice", "alice@example.org", "right", user,
		sizeof(user), &err), 1);

	t0 = now_s();
	assert_int_equal(session_auth_login(&a, st, NULL, NULL, "alice", "wrong", user, sizeof(user), &err), 0);
	t1 = now_s();
	assert_int_equal(a.failures, 1);
	assert_true(t1 - t0 >= SVCAUTH_DELAY_BASE_MS / 1000.0 - 0.01);
	/* a proxy login is refused, and counts */
	assert_int_equal(session_auth_login(&a, st, NULL, "bob", "alice", "right", user, sizeof(user), &err), 0);
	assert_int_equal(a.failures, 2);
	assert_true(now_s() - t1 >= 2 * SVCAUTH_DELAY_BASE_MS / 1000.0 - 0.01);
	assert_false(session_auth_give_up(&a));
	a.failures = SVCAUTH_MAX_FAILURES - 1;   /* (not sleeping through them all here) */
	assert_false(session_auth_give_up(&a));
	a.failures = SVCAUTH_MAX_FAILURES;
	assert_true(session_auth_give_up(&a));

	store_close(&st);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
	assert_int_equal(system(cmd), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_canon),
		cmocka_unit_test(test_plaintext_rule),
		cmocka_unit_test(test_delay),
		cmocka_unit_test(test_login),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
