/*
 * clock.c - the monotonic clock.  See clock.h.
 */
#include "lib/clock.h"

#include <time.h>

static struct timespec
mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts;
}

int64_t
clock_mono_ms(void)
{
	struct timespec ts = mono();

	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
clock_mono_us(void)
{
	struct timespec ts = mono();

	return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

double
clock_mono_s(void)
{
	struct timespec ts = mono();

	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

uint64_t
clock_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}
