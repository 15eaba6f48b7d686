/*
 * echod.c - a trivial line-based service that proves the skeleton and
 * castord before the real protocols exist (used by the tests).
 *
 *     S: +OK echod ready pid=<pid>
 *     C: PING          S: +OK PONG
 *     C: PID           S: +OK <pid>
 *     C: SLEEP <sec>   S: +OK slept <sec>     (finishes even when asked to quit)
 *     C: ENV <name>    S: +OK <value>         (the child's environment)
 *     C: CONN          S: +OK peer=.. local=.. loopback=0|1 tls=0|1 use=N
 *     C: QUIT          S: +OK bye             (connection closed)
 *     C: <other>       S: +OK <other>         (echo)
 * On a quit request: "* BYE echod shutting down".
 *
 * Options: -i ignore SIGQUIT and SIGTERM (a "crazy child" for the
 * escalation tests); -t SECONDS idle timeout (default 600).
 */
#include "master/child.h"

#include "lib/log.h"
#include "lib/signals.h"
#include "lib/str.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define ECHOD_LINE_MAX 1024

static bool echod_ignore;
static int echod_idle_ms = 600 * 1000;

struct echod_conn {
	char in[ECHOD_LINE_MAX];
	size_t len;
};

static int
echod_option(int opt, const char *arg, struct err *err)
{
	int64_t v;

	switch (opt) {
	case 'i':
		echod_ignore = true;
		return 0;
	case 't':
		if (str_to_i64_range(arg, 1, 86400, &v) < 0)
			return err_set(err, ERR_INVALID, "-t wants seconds, got %s", arg);
		echod_idle_ms = (int)(v * 1000);
		return 0;
	default:
		return err_set(err, ERR_INVALID, "unknown option -%c", opt);
	}
}

static int
echod_init(const struct conf *conf, struct err *err)
{
	(void)conf;
	if (echod_ignore) {
		if (signals_ignore(SIGQUIT, err) < 0 || signals_ignore(SIGTERM, err) < 0)
			return -1;
		log_info("ignoring SIGQUIT and SIGTERM");
	}
	return 0;
}

static int
echod_write(struct child_conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int
echod_write(struct child_conn *c, const char *fmt, ...)
{
	char line[ECHOD_LINE_MAX + 64];
	va_list ap;
	int n;
	size_t off = 0;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n > sizeof(line) - 3)
		n = (int)(sizeof(line) - 3);
	line[n++] = '\r';
	line[n++] = '\n';
	while (off < (size_t)n) {
		ssize_t w = write(c->wfd, line + off, (size_t)n - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		off += (size_t)w;
	}
	return 0;
}

/* Sleep the whole time, whatever signals arrive: the command in hand finishes. */
static void
echod_sleep(int64_t ms)
{
	struct timespec until;

	clock_gettime(CLOCK_MONOTONIC, &until);
	until.tv_sec += (time_t)(ms / 1000);
	until.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
		;
}

/* One line into line[] (without CR LF).  1 got one, 0 EOF/error, -1 too long. */
static int
echod_read_line(struct child_conn *c, struct echod_conn *e, char *line, size_t size, bool *need_wait)
{
	for (;;) {
		char *nl = memchr(e->in, '\n', e->len);
		ssize_t n;

		if (nl != NULL) {
			size_t l = (size_t)(nl - e->in);
			size_t take = l;

			if (take > 0 && e->in[take - 1] == '\r')
				take--;
			if (take >= size)
				take = size - 1;
			memcpy(line, e->in, take);
			line[take] = '\0';
			memmove(e->in, nl + 1, e->len - l - 1);
			e->len -= l + 1;
			*need_wait = e->len == 0;
			return 1;
		}
		if (e->len == sizeof(e->in))
			return -1;
		if (*need_wait)
			return 2;  /* ask the caller to wait for input first */
		n = read(c->rfd, e->in + e->len, sizeof(e->in) - e->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return 0;
		e->len += (size_t)n;
		*need_wait = false;
	}
}

static enum child_end
echod_handle(struct child_conn *c)
{
	struct echod_conn e;
	char line[ECHOD_LINE_MAX];
	bool need_wait = true;
	int64_t secs;

	memset(&e, 0, sizeof(e));
	if (echod_write(c, "+OK echod ready pid=%ld", (long)getpid()) < 0)
		return CHILD_END_DONE;
	for (;;) {
		int r = echod_read_line(c, &e, line, sizeof(line), &need_wait);

		if (r == 2) {
			int w = child_wait_input(c->rfd, echod_idle_ms);

			if (w == CHILD_WAIT_QUIT)
				return CHILD_END_QUIT;
			if (w == CHILD_WAIT_TIMEOUT) {
				echod_write(c, "* BYE idle for too long");
				return CHILD_END_DONE;
			}
			need_wait = false;
			continue;
		}
		if (r == 0)
			return CHILD_END_DONE;
		if (r < 0) {
			echod_write(c, "-ERR line too long");
			return CHILD_END_DONE;
		}
		if (str_eq_ci(line, "QUIT")) {
			echod_write(c, "+OK bye");
			return CHILD_END_DONE;
		} else if (str_eq_ci(line, "PING")) {
			echod_write(c, "+OK PONG");
		} else if (str_eq_ci(line, "PID")) {
			echod_write(c, "+OK %ld", (long)getpid());
		} else if (str_has_prefix_ci(line, "ENV ")) {
			const char *v = getenv(line + 4);

			echod_write(c, "+OK %s", v != NULL ? v : "(unset)");
		} else if (str_eq_ci(line, "CONN")) {
			echod_write(c, "+OK peer=%s local=%s loopback=%d tls=%d use=%u", c->peer, c->local,
				    (int)c->loopback, (int)c->tls, c->use);
		} else if (str_has_prefix_ci(line, "SLEEP ")) {
			if (str_to_i64_range(line + 6, 0, 3600, &secs) < 0) {
				echod_write(c, "-ERR SLEEP wants seconds");
			} else {
				/* the tests wait for this line: "the command is in hand" */
				log_info("sleeping secs=%lld", (long long)secs);
				echod_sleep(secs * 1000);
				echod_write(c, "+OK slept %lld", (long long)secs);
			}
		} else {
			echod_write(c, "+OK %s", line);
		}
		if (child_quit_requested())
			return CHILD_END_QUIT;
	}
}

static void
echod_goodbye(struct child_conn *c)
{
	echod_write(c, "* BYE echod shutting down");
}

static const struct child_ops echod_ops = {
	.name = "echod",
	.optstring = "it:",
	.option = echod_option,
	.conf_optional = true,
	.init = echod_init,
	.handle = echod_handle,
	.goodbye = echod_goodbye,
};

int
main(int argc, char **argv)
{
	return child_main(argc, argv, &echod_ops);
}
