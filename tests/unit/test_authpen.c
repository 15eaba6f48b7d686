/* test_authpen.c - unit tests for src/lib/authpen.c: the gap series, turns
 * spaced per user and per address across two handles (two processes'
 * view of one file), throttling past max, a success taking back its own
 * count (user) or clearing (address), decay, and a damaged file rebuilt. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/authpen.h"

static char path[64];

static int
setup(void **state)
{
	(void)state;
	snprintf(path, sizeof(path), "/tmp/test_authpen.%ld", (long)getpid());
	unlink(path);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	unlink(path);
	return 0;
}

static void
test_gap(void **state)
{
	(void)state;
	assert_int_equal(authpen_gap_ms(0, 15000), 0);
	assert_int_equal(authpen_gap_ms(1, 15000), 0);
	assert_int_equal(authpen_gap_ms(2, 15000), 1000);
	assert_int_equal(authpen_gap_ms(3, 15000), 2000);
	assert_int_equal(authpen_gap_ms(5, 15000), 8000);
	assert_int_equal(authpen_gap_ms(6, 15000), 15000);
	assert_int_equal(authpen_gap_ms(4000000000u, 15000), 15000);
}

static void
test_turns(void **state)
{
	struct authpen *p1, *p2;
	struct authpen_turn t;
	struct err err;
	int64_t waits[8];

	(void)state;
	p1 = authpen_open(path, 15000, 60000, &err);
	p2 = authpen_open(path, 15000, 60000, &err);
	assert_non_null(p1);
	assert_non_null(p2);
	/* six parallel attempts on alice from six addresses, alternating handles */
	for (int i = 0; i < 6; i++) {
		char addr[32];
		snprintf(addr, sizeof(addr), "192.0.2.%d", i + 1);
		assert_int_equal(authpen_begin(i % 2 ? p2 : p1, "alice", addr, &t, &err), 0);
		assert_false(t.throttled);
		waits[i] = t.wait_ms;
	}
	/* turns: now, now, +1 s, +3 s, +7 s, +15 s (within a few ms) */
	assert_true(waits[0] <= 5 && waits[1] <= 5);
	assert_true(waits[2] >= 990 && waits[2] <= 1005);
	assert_true(waits[3] >= 2990 && waits[3] <= 3005);
	assert_true(waits[4] >= 6990 && waits[4] <= 7005);
	assert_true(waits[5] >= 14990 && waits[5] <= 15005);
	/* the seventh is more than 15 s away: throttled, and takes no turn */
	assert_int_equal(authpen_begin(p1, "alice", "192.0.2.99", &t, &err), 0);
	assert_true(t.throttled);
	assert_int_equal(authpen_begin(p2, "alice", "192.0.2.98", &t, &err), 0);
	assert_true(t.throttled);
	/* another user from a fresh address is not held up */
	assert_int_equal(authpen_begin(p2, "bob", "198.51.100.1", &t, &err), 0);
	assert_false(t.throttled);
	assert_true(t.wait_ms <= 5);
	/* ... but from an address that failed, it is */
	assert_int_equal(authpen_begin(p2, "carol", "198.51.100.1", &t, &err), 0);
	assert_int_equal(authpen_begin(p2, "dave", "198.51.100.1", &t, &err), 0);
	assert_true(t.wait_ms >= 990);
	/* a success clears the address */
	authpen_end(p1, "dave", "198.51.100.1", true);
	assert_int_equal(authpen_begin(p2, "erin", "198.51.100.1", &t, &err), 0);
	assert_true(t.wait_ms <= 5);
	authpen_end(p1, "erin", "198.51.100.1", true);
	/* a success takes back its own count from the user only */
	for (int i = 0; i < 4; i++) {
		assert_int_equal(authpen_begin(p1, "frank", "203.0.113.5", &t, &err), 0);
		authpen_end(p1, "frank", "203.0.113.5", true);
		assert_true(t.wait_ms <= 5);
	}
	authpen_close(&p1);
	authpen_close(&p2);
	assert_null(p1);
}

static void
test_decay(void **state)
{
	struct authpen *p;
	struct authpen_turn t;
	struct err err;

	(void)state;
	p = authpen_open(path, 15000, 1, &err);   /* halves every millisecond */
	assert_non_null(p);
	for (int i = 0; i < 4; i++)
		assert_int_equal(authpen_begin(p, "gina", NULL, &t, &err), 0);
	usleep(50 * 1000);
	assert_int_equal(authpen_begin(p, "gina", NULL, &t, &err), 0);
	assert_int_equal(t.failures, 1);
	authpen_close(&p);
}

static void
test_damaged_rebuilt(void **state)
{
	struct authpen *p;
	struct authpen_turn t;
	struct err err;
	FILE *f;

	(void)state;
	f = fopen(path, "w");
	assert_non_null(f);
	fputs("garbage", f);
	fclose(f);
	p = authpen_open(path, 15000, 60000, &err);
	assert_non_null(p);
	assert_int_equal(authpen_begin(p, "hank", "192.0.2.1", &t, &err), 0);
	assert_false(t.throttled);
	/* truncated under a live mapping: rebuilt at the next attempt, no SIGBUS */
	assert_int_equal(truncate(path, 10), 0);
	assert_int_equal(authpen_begin(p, "hank", "192.0.2.1", &t, &err), 0);
	assert_int_equal(t.failures, 1);
	authpen_close(&p);
	/* unopenable: NULL with a reason (callers fail open) */
	assert_null(authpen_open("/nonexistent-dir/authpen", 15000, 60000, &err));
	assert_int_equal(err.kind, ERR_TEMP);
}

static void
test_peer_addr(void **state)
{
	char out[64];

	(void)state;
	authpen_peer_addr("127.0.0.1:4711", out, sizeof(out));
	assert_string_equal(out, "127.0.0.1");
	authpen_peer_addr("[2001:db8::1]:143", out, sizeof(out));
	assert_string_equal(out, "2001:db8::1");
	authpen_peer_addr("unix", out, sizeof(out));
	assert_string_equal(out, "unix");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_gap),
		cmocka_unit_test_setup_teardown(test_turns, setup, teardown),
		cmocka_unit_test_setup_teardown(test_decay, setup, teardown),
		cmocka_unit_test_setup_teardown(test_damaged_rebuilt, setup, teardown),
		cmocka_unit_test(test_peer_addr),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
