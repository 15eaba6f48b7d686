/* test_failpoint.c - unit tests for lib/failpoint.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/failpoint.h"

static void
test_disarmed(void **state)
{
	(void)state;
	assert_int_equal(failpoint_set(""), 0);
	assert_false(failpoint_armed);
	assert_int_equal(FAILPOINT("x"), 0);
}

static void
test_error_and_nth(void **state)
{
	(void)state;
	assert_int_equal(failpoint_set("a=error, b=2*error"), 0);
	assert_true(failpoint_armed);
	assert_int_equal(FAILPOINT("a"), -1);
	assert_int_equal(FAILPOINT("a"), -1);
	assert_int_equal(FAILPOINT("c"), 0);
	assert_int_equal(FAILPOINT("b"), 0);
	assert_int_equal(FAILPOINT("b"), -1);
	assert_int_equal(FAILPOINT("b"), 0);
	assert_int_equal(failpoint_set("a=off"), 0);
	assert_int_equal(FAILPOINT("a"), 0);
}

static void
test_sleep(void **state)
{
	struct timespec t0, t1;
	long ms;

	(void)state;
	assert_int_equal(failpoint_set("s=sleep(50)"), 0);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(FAILPOINT("s"), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	assert_true(ms >= 45);
}

static void
test_crash(void **state)
{
	pid_t pid;
	int status;

	(void)state;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		failpoint_set("boom=crash");
		FAILPOINT("boom");
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	assert_int_equal(WTERMSIG(status), SIGKILL);
}

static void
test_malformed(void **state)
{
	(void)state;
	assert_int_equal(failpoint_set("noequals"), -1);
	assert_int_equal(failpoint_set("=crash"), -1);
	assert_int_equal(failpoint_set("a=explode"), -1);
	assert_int_equal(failpoint_set("a=sleep(x)"), -1);
	assert_int_equal(failpoint_set("a=0*crash"), -1);
	assert_int_equal(failpoint_set("a=sleep()"), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_disarmed),
		cmocka_unit_test(test_error_and_nth),
		cmocka_unit_test(test_sleep),
		cmocka_unit_test(test_crash),
		cmocka_unit_test(test_malformed),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
