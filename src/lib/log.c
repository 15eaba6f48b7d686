/*
 * log.c - logging with key=value fields.  See log.h.
 */
#include "lib/log.h"
#include "lib/str.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

static char log_svc[64] = "castor";
static enum log_dest log_to = LOG_DEST_STDERR;
static enum log_level log_min = LOG_LVL_INFO;

static const char *const level_names[] = { "debug", "info", "notice", "warn", "error", "fatal" };

void
log_init(const char *service, enum log_dest dest)
{
	const char *env;

	log_set_service(service);
	log_to = dest;
	if (dest == LOG_DEST_SYSLOG)
		openlog(log_svc, LOG_PID | LOG_NDELAY, LOG_MAIL);
	env = getenv("CASTOR_LOG_LEVEL");
	if (env != NULL && log_level_parse(env) >= 0)
		log_min = (enum log_level)log_level_parse(env);
}

void
log_set_service(const char *service)
{
	str_lcpy(log_svc, service, sizeof(log_svc));
}

const char *
log_service(void)
{
	return log_svc;
}

void
log_set_level(enum log_level level)
{
	log_min = level;
}

enum log_level
log_get_level(void)
{
	return log_min;
}

int
log_level_parse(const char *s)
{
	size_t i;

	for (i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++)
		if (str_eq_ci(s, level_names[i]))
			return (int)i;
	if (str_eq_ci(s, "warning"))
		return LOG_LVL_WARN;
	return -1;
}

void
log_vmsg(enum log_level level, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	if (level < log_min)
		return;
	n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	if (log_to == LOG_DEST_SYSLOG) {
		static const int prio[] = { LOG_DEBUG, LOG_INFO, LOG_NOTICE, LOG_WARNING, LOG_ERR, LOG_CRIT };
		syslog(prio[level], "%s: %s", level_names[level], line);
	} else {
		struct timeval tv;
		struct tm tm;
		char ts[32];
		char out[2200];
		int m;

		gettimeofday(&tv, NULL);
		localtime_r(&tv.tv_sec, &tm);
		strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
		m = snprintf(out, sizeof(out), "%s.%03ld castor/%s[%ld]: %s: %s\n", ts,
			     (long)(tv.tv_usec / 1000), log_svc, (long)getpid(), level_names[level], line);
		if (m > 0) {
			size_t len = (size_t)m < sizeof(out) ? (size_t)m : sizeof(out) - 1;
			if ((size_t)m >= sizeof(out))
				out[len - 1] = '\n';
			/* one write(2) per line so concurrent processes do not interleave */
			ssize_t w = write(STDERR_FILENO, out, len);
			(void)w;
		}
	}
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(level, fmt, ap);
	va_end(ap);
}

void
log_fatal(int code, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vmsg(LOG_LVL_FATAL, fmt, ap);
	va_end(ap);
	exit(code);
}

const char *
log_q(const char *value)
{
	static _Thread_local char ring[4][208];   /* per thread: the checkpoint thread logs too */
	static _Thread_local int next;
	char *out = ring[next];
	size_t i, o = 0;
	int needs = (value == NULL || *value == '\0');

	next = (next + 1) % 4;
	if (value == NULL)
		return "\"\"";
	for (i = 0; value[i]; i++)
		if (value[i] == ' ' || value[i] == '"' || value[i] == '=' || (unsigned char)value[i] < 0x20)
			needs = 1;
	if (!needs)
		return value;
	out[o++] = '"';
	for (i = 0; value[i] && o < 200; i++) {
		unsigned char c = (unsigned char)value[i];
		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c < 0x20) {
			out[o++] = '?';
		} else {
			out[o++] = (char)c;
		}
	}
	out[o++] = '"';
	out[o] = '\0';
	return out;
}
