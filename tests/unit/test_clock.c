/* test_clock.c - unit tests for lib/clock.c */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <time.h>

#include "lib/clock.h"

/* The three units read one clock: they agree, and never go back. */
static void
test_units_agree_and_never_go_back(void **state)
{
	int64_t ms0 = clock_mono_ms(), ms;
	uint64_t us0 = clock_mono_us(), us, prev_us = us0;
	double s0 = clock_mono_s(), s;

	(void)state;
	for (int i = 0; i < 10000; i++) {
		us = clock_mono_us();
		assert_true(us >= prev_us);
		prev_us = us;
	}
	ms = clock_mono_ms();
	s = clock_mono_s();
	assert_true(ms >= ms0);
	assert_true(s >= s0);
	/* the same instant in three units: within a few milliseconds */
	assert_true(ms0 - (int64_t)(us0 / 1000) <= 5 && (int64_t)(us0 / 1000) - ms0 <= 5);
	assert_true(s0 * 1000.0 - (double)ms0 < 5.0 && (double)ms0 - s0 * 1000.0 < 5.0);
}

/* A 20 ms sleep shows as at least 20 ms in every unit. */
static void
test_sleep_is_measured(void **state)
{
	struct timespec ts = { 0, 20 * 1000 * 1000 };
	int64_t ms0 = clock_mono_ms();
	uint64_t us0 = clock_mono_us();
	double s0 = clock_mono_s();

	(void)state;
	while (nanosleep(&ts, &ts) != 0)
		;
	assert_true(clock_mono_ms() - ms0 >= 19);
	assert_true(clock_mono_us() - us0 >= 20000);
	assert_true(clock_mono_s() - s0 >= 0.020);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_units_agree_and_never_go_back),
		cmocka_unit_test(test_sleep_is_measured),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
