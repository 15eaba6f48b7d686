/* test_signals.c - unit tests for lib/signals.c (self-pipe signals) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/err.h"
#include "lib/signals.h"

static bool
fd_readable(int fd, int ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };

	return poll(&p, 1, ms) == 1 && (p.revents & POLLIN);
}

static void
test_catch_mark_and_wake(void **state)
{
	struct err err = { 0 };

	(void)state;
	assert_int_equal(signals_catch(SIGUSR1, SIGNALS_RESTART, &err), 0);
	assert_int_equal(signals_catch(SIGUSR2, SIGNALS_RESTART, &err), 0);
	assert_true(signals_fd() >= 0);
	signals_poll();
	assert_false(signals_pending(SIGUSR1));
	assert_false(fd_readable(signals_fd(), 0));

	kill(getpid(), SIGUSR1);
	assert_true(fd_readable(signals_fd(), 1000));
	assert_true(signals_poll());
	/* the pipe is drained, the mark stays until taken */
	assert_false(fd_readable(signals_fd(), 0));
	assert_true(signals_pending(SIGUSR1));
	assert_true(signals_pending(SIGUSR1));
	assert_false(signals_pending(SIGUSR2));
	assert_true(signals_take(SIGUSR1));
	assert_false(signals_take(SIGUSR1));
	assert_false(signals_poll());
}

static void
test_coalesce(void **state)
{
	struct err err = { 0 };

	(void)state;
	assert_int_equal(signals_catch(SIGUSR1, SIGNALS_RESTART, &err), 0);
	signals_poll();
	kill(getpid(), SIGUSR1);
	kill(getpid(), SIGUSR1);
	kill(getpid(), SIGUSR2);
	assert_true(signals_poll());
	assert_true(signals_take(SIGUSR1));
	assert_false(signals_take(SIGUSR1));
	assert_true(signals_take(SIGUSR2));
}

static void
test_raise_and_ignore(void **state)
{
	struct err err = { 0 };

	(void)state;
	assert_int_equal(signals_catch(SIGUSR1, 0, &err), 0);
	signals_raise(SIGUSR1);
	assert_true(fd_readable(signals_fd(), 0));
	assert_true(signals_poll());
	assert_true(signals_pending(SIGUSR1));
	/* ignoring clears the mark and the signal no longer arrives */
	assert_int_equal(signals_ignore(SIGUSR1, &err), 0);
	assert_false(signals_pending(SIGUSR1));
	kill(getpid(), SIGUSR1);
	assert_false(signals_poll());
	assert_false(signals_pending(SIGUSR1));
}

static void
test_bad_signals(void **state)
{
	struct err err = { 0 };

	(void)state;
	assert_int_equal(signals_catch(SIGKILL, 0, &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	assert_int_equal(signals_catch(0, 0, &err), -1);
	assert_int_equal(signals_catch(100000, 0, &err), -1);
	assert_false(signals_pending(-1));
	assert_false(signals_take(100000));
	assert_string_equal(signals_name(SIGQUIT), "SIGQUIT");
	assert_string_equal(signals_name(SIGTERM), "SIGTERM");
	assert_true(strncmp(signals_name(SIGRTMIN + 1), "SIG", 3) == 0);
}

/* A child sends SIGUSR1 after 100 ms and writes "x" to the pipe after 300 ms. */
static pid_t
poke_later(int wfd)
{
	pid_t parent = getpid();
	pid_t pid = fork();

	if (pid == 0) {
		usleep(100 * 1000);
		kill(parent, SIGUSR1);
		usleep(200 * 1000);
		if (write(wfd, "x", 1) != 1)
			_exit(1);
		_exit(0);
	}
	return pid;
}

static void
test_no_restart_interrupts_read(void **state)
{
	struct err err = { 0 };
	int p[2];
	char c;
	ssize_t n;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(signals_catch(SIGUSR1, 0, &err), 0);
	signals_poll();
	pid = poke_later(p[1]);
	n = read(p[0], &c, 1);
	assert_int_equal(n, -1);
	assert_int_equal(errno, EINTR);
	assert_true(signals_poll());
	assert_true(signals_take(SIGUSR1));
	waitpid(pid, NULL, 0);
	close(p[0]);
	close(p[1]);
}

static void
test_restart_keeps_read_going(void **state)
{
	struct err err = { 0 };
	int p[2];
	char c = 0;
	ssize_t n;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(p), 0);
	assert_int_equal(signals_catch(SIGUSR1, SIGNALS_RESTART, &err), 0);
	signals_poll();
	pid = poke_later(p[1]);
	n = read(p[0], &c, 1);  /* the signal comes first, the read goes on to get "x" */
	assert_int_equal(n, 1);
	assert_int_equal(c, 'x');
	assert_true(signals_poll());
	assert_true(signals_take(SIGUSR1));
	waitpid(pid, NULL, 0);
	close(p[0]);
	close(p[1]);
}

static void
test_reset_child(void **state)
{
	struct err err = { 0 };
	int st = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(signals_catch(SIGUSR1, SIGNALS_RESTART, &err), 0);
	assert_int_equal(signals_ignore(SIGUSR2, &err), 0);
	pid = fork();
	if (pid == 0) {
		static const int dfl[] = { SIGUSR2, 0 };

		signals_reset_child(dfl);
		if (signals_fd() != -1)
			_exit(2);
		raise(SIGUSR1);  /* default action now: terminate */
		_exit(3);
	}
	assert_true(pid > 0);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFSIGNALED(st));
	assert_int_equal(WTERMSIG(st), SIGUSR1);
	/* the parent still has its handler and pipe */
	assert_true(signals_fd() >= 0);
	kill(getpid(), SIGUSR1);
	assert_true(signals_poll());
	assert_true(signals_take(SIGUSR1));
	assert_int_equal(signals_default(SIGUSR2, &err), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_catch_mark_and_wake),
		cmocka_unit_test(test_coalesce),
		cmocka_unit_test(test_raise_and_ignore),
		cmocka_unit_test(test_bad_signals),
		cmocka_unit_test(test_no_restart_interrupts_read),
		cmocka_unit_test(test_restart_keeps_read_going),
		cmocka_unit_test(test_reset_child),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
