/*
 * synctestdrv.c - sync-testdrv, a test driver (not installed): makes
 * changes through the store with the sync hook attached and waits like a
 * service would (synchook_wait after every commit), so the replication
 * tests can exercise every kind of change before lmtpd/imapd exist.
 *
 *     sync-testdrv [-C castor.conf] [-o FILE] [COMMAND ARGS...]
 * Without a command, commands are read from stdin, one per line.  Each
 * prints one line: "ok ..." or "err <kind> <message>".
 *
 *   useradd USER [PASSWORD]        userdel USER         passwd USER PASSWORD
 *   quota USER BYTES MESSAGES      (-1 = server default)
 *   create USER MAILBOX [SPECIALUSE]   delete USER MAILBOX   rename USER OLD NEW
 *   subscribe USER MAILBOX         unsubscribe USER MAILBOX
 *   append USER MAILBOX SIZE SEED [FLAG...]      -> ok uid=N guid=G
 *   appendn USER MAILBOX COUNT SIZE SEED         COUNT messages in one transaction
 *   flags USER MAILBOX LO:HI +|-|= [FLAG...]
 *   expunge USER MAILBOX LO:HI     copy USER SRC LO:HI DST     move USER SRC LO:HI DST
 *   deliver USER MAILBOX COUNT SIZE SEED RATE    COUNT single deliveries, RATE per
 *                                  second (0 = as fast as possible), each acknowledged
 *                                  ("acked uid=N guid=G") only after synchook_wait
 *   deliverlag USER MAILBOX COUNT SIZE RATE CHAN   replication lag: from each
 *                                  commit until CHAN's ACK file covers it (p50..max)
 *   stats                          hook statistics
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/conf.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/priv.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/synchook.h"
#include "sync/syncstat.h"

#define ARGS_MAX 64

static struct store *st;
static FILE *ackout;                 /* -o FILE: acked lines go here too */
static volatile sig_atomic_t stop;   /* SIGQUIT/SIGTERM: finish the delivery in hand */

static void
on_stop(int sig)
{
	(void)sig;
	stop = 1;
}

static void
note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void
note(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	fflush(stdout);
	if (ackout != NULL) {
		va_start(ap, fmt);
		vfprintf(ackout, fmt, ap);
		va_end(ap);
		fflush(ackout);
	}
}

static void
make_message(struct buf *m, const char *user, size_t size, const char *seed, unsigned long n)
{
	unsigned long x = 5381;

	for (const char *p = seed; *p; p++)
		x = x * 33 + (unsigned char)*p;
	x += n * 2654435761u;
	buf_reset(m);
	buf_printf(m, "From: sender@example.org\r\nTo: %s@example.org\r\nSubject: test %s %lu\r\n"
		"Message-ID: <%s.%lu.%lx@example.org>\r\nDate: Thu, 27 Nov 2025 10:00:00 +0000\r\n"
		"\r\n", user, seed, n, seed, n, x);
	while (m->len + 2 < size) {
		char line[80];
		int k = snprintf(line, sizeof(line), "%08lx line of body text for %s number %lu\r\n",
			x, seed, n);
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		if (m->len + (size_t)k > size)
			k = (int)(size - m->len);
		buf_append(m, line, (size_t)k);
	}
	if (m->len < 2 || m->data[m->len - 1] != '\n')
		buf_puts(m, "\r\n");
}

static int
range_parse(const char *s, struct store_range *r)
{
	uint32_t lo, hi;
	char tmp[64];
	char *colon;

	if (str_lcpy(tmp, s, sizeof(tmp)) >= sizeof(tmp))
		return -1;
	colon = strchr(tmp, ':');
	if (colon == NULL) {
		if (str_to_u32(tmp, &lo) < 0)
			return -1;
		hi = lo;
	} else {
		*colon = '\0';
		if (str_to_u32(tmp, &lo) < 0)
			return -1;
		if (str_eq(colon + 1, "*"))
			hi = UINT32_MAX - 1;
		else if (str_to_u32(colon + 1, &hi) < 0)
			return -1;
	}
	if (lo == 0 || hi < lo)
		return -1;
	r->lo = lo;
	r->hi = hi;
	return 0;
}

static void
join_flags(char **v, int n, struct buf *out)
{
	buf_reset(out);
	for (int i = 0; i < n; i++) {
		if (i)
			buf_putc(out, ' ');
		buf_puts(out, v[i]);
	}
}

static int
wait_ack(struct err *err)
{
	return synchook_wait(st, err);
}

static struct store_user *
open_mbox(const char *user, const char *name, struct store_mailbox *mb, struct err *err)
{
	struct store_user *u = store_user_open(st, user, err);

	if (u == NULL)
		return NULL;
	if (name != NULL && store_mailbox_get(u, name, mb, err) < 0) {
		store_user_close(&u);
		return NULL;
	}
	return u;
}

static int
cmd_deliver(char **a, int n, struct err *err)
{
	struct store_mailbox mb;
	struct store_user *u;
	uint32_t count, size, rate;
	struct buf m = BUF_INIT;
	struct timespec t0;

	if (n != 7 || str_to_u32(a[3], &count) < 0 || str_to_u32(a[4], &size) < 0 ||
	    str_to_u32(a[6], &rate) < 0)
		return err_set(err, ERR_INVALID, "deliver USER MAILBOX COUNT SIZE SEED RATE");
	if ((u = open_mbox(a[1], a[2], &mb, err)) == NULL)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (uint32_t i = 0; i < count && !stop; i++) {
		struct store_append_msg msg;
		struct store_append_result res;

		uint64_t idle_us = 0;   /* a bulk load (rate 0) is a busy client */

		if (rate > 0) {
			struct timespec now, due;
			uint64_t at = (uint64_t)i * 1000000000ull / rate;
			due.tv_sec = t0.tv_sec + (time_t)(at / 1000000000ull);
			due.tv_nsec = t0.tv_nsec + (long)(at % 1000000000ull);
			if (due.tv_nsec >= 1000000000L) {
				due.tv_sec++;
				due.tv_nsec -= 1000000000L;
			}
			clock_gettime(CLOCK_MONOTONIC, &now);
			if (now.tv_sec < due.tv_sec || (now.tv_sec == due.tv_sec && now.tv_nsec < due.tv_nsec)) {
				idle_us = (uint64_t)(due.tv_sec - now.tv_sec) * 1000000 +
					(uint64_t)(due.tv_nsec / 1000) - (uint64_t)(now.tv_nsec / 1000);
				clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL);
			}
		}
		make_message(&m, a[1], size, a[5], i);
		memset(&msg, 0, sizeof(msg));
		msg.data = m.data;
		msg.len = m.len;
		if (store_append(u, mb.uniqueid, &msg, 1, &res, NULL, err) < 0) {
			note("failed n=%u error=%s\n", i, err->msg);
			continue;
		}
		synchook_idle_hint(st, idle_us);
		if (wait_ack(err) < 0) {
			note("unacked n=%u uid=%u guid=%s error=%s\n", i, res.uid, res.guid, err->msg);
			continue;
		}
		note("acked n=%u uid=%u guid=%s\n", i, res.uid, res.guid);
	}
	store_user_close(&u);
	buf_free(&m);
	return 0;
}

static int
u64_cmp(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;

	return a < b ? -1 : a > b;
}

/* deliverlag USER MAILBOX COUNT SIZE RATE CHAN: deliveries at RATE/s (async),
 * each timed from its commit until the channel's ACK file shows the
 * replica committed it; prints p50/p95/p99/max in microseconds. */
static int
cmd_deliverlag(char **a, int n, struct buf *reply, struct err *err)
{
	struct store_mailbox mb;
	struct store_user *u;
	uint32_t count, size, rate;
	struct buf m = BUF_INIT;
	uint64_t *lag, t0;
	size_t nlag = 0;
	int fd;

	if (n != 7 || str_to_u32(a[3], &count) < 0 || str_to_u32(a[4], &size) < 0 ||
	    str_to_u32(a[5], &rate) < 0 || count == 0 || rate == 0)
		return err_set(err, ERR_INVALID, "deliverlag USER MAILBOX COUNT SIZE RATE CHAN");
	fd = syncstat_ack_open(store_root(st), a[6], false, err);
	if (fd < 0)
		return -1;
	if ((u = open_mbox(a[1], a[2], &mb, err)) == NULL) {
		close(fd);
		return -1;
	}
	lag = calloc(count, sizeof(*lag));
	t0 = clock_mono_us();
	for (uint32_t i = 0; i < count && !stop; i++) {
		struct store_append_msg msg;
		struct store_append_result res;
		struct synchook_stats hs;
		uint64_t due = t0 + (uint64_t)i * 1000000 / rate, c;

		while (clock_mono_us() < due)
			usleep((useconds_t)(due - clock_mono_us() > 2000 ? 1000 : due - clock_mono_us()));
		make_message(&m, a[1], size, "lag", i);
		memset(&msg, 0, sizeof(msg));
		msg.data = m.data;
		msg.len = m.len;
		if (store_append(u, mb.uniqueid, &msg, 1, &res, NULL, err) < 0)
			break;
		c = clock_mono_us();
		synchook_stats(st, &hs);
		for (;;) {
			struct synclog_pos pos;
			uint64_t id;
			bool live;
			if (syncstat_ack_read(fd, &pos, &id, &live) == 1 && synclog_pos_cmp(&pos, &hs.last) >= 0)
				break;
			if (clock_mono_us() - c > 10000000)
				break;
			usleep(50);
		}
		lag[nlag++] = clock_mono_us() - c;
	}
	store_user_close(&u);
	close(fd);
	buf_free(&m);
	if (nlag == 0) {
		free(lag);
		return -1;
	}
	qsort(lag, nlag, sizeof(*lag), u64_cmp);
	buf_printf(reply, " n=%zu p50_us=%llu p95_us=%llu p99_us=%llu max_us=%llu", nlag,
		(unsigned long long)lag[nlag / 2], (unsigned long long)lag[nlag * 95 / 100],
		(unsigned long long)lag[nlag * 99 / 100], (unsigned long long)lag[nlag - 1]);
	free(lag);
	return 0;
}

static int
run(char **a, int n, struct buf *reply, struct err *err)
{
	struct store_mailbox mb, mb2;
	struct store_user *u = NULL;
	struct buf kw = BUF_INIT, m = BUF_INIT;
	int rc = -1;

	buf_reset(reply);
	if (n == 0)
		return 0;
	if (str_eq(a[0], "useradd") && (n == 2 || n == 3)) {
		rc = store_user_add(st, a[1], n == 3 ? a[2] : NULL, err);
	} else if (str_eq(a[0], "userdel") && n == 2) {
		rc = store_user_del(st, a[1], err);
	} else if (str_eq(a[0], "passwd") && n == 3) {
		rc = store_user_passwd(st, a[1], a[2], err);
	} else if (str_eq(a[0], "quota") && n == 4) {
		int64_t b, ms;
		if (str_to_i64_range(a[2], -1, INT64_MAX, &b) < 0 ||
		    str_to_i64_range(a[3], -1, INT64_MAX, &ms) < 0)
			return err_set(err, ERR_INVALID, "quota USER BYTES MESSAGES");
		rc = store_user_set_quota(st, a[1], b, ms, err);
	} else if (str_eq(a[0], "create") && (n == 3 || n == 4)) {
		if ((u = open_mbox(a[1], NULL, NULL, err)) != NULL)
			rc = store_mailbox_create(u, a[2], n == 4 ? a[3] : NULL, &mb, err);
		if (rc == 0)
			buf_printf(reply, " uniqueid=%s", mb.uniqueid);
	} else if (str_eq(a[0], "delete") && n == 3) {
		if ((u = open_mbox(a[1], NULL, NULL, err)) != NULL)
			rc = store_mailbox_delete(u, a[2], err);
	} else if (str_eq(a[0], "rename") && n == 4) {
		if ((u = open_mbox(a[1], NULL, NULL, err)) != NULL)
			rc = store_mailbox_rename(u, a[2], a[3], err);
	} else if ((str_eq(a[0], "subscribe") || str_eq(a[0], "unsubscribe")) && n == 3) {
		if ((u = open_mbox(a[1], NULL, NULL, err)) != NULL)
			rc = store_subscribe(u, a[2], str_eq(a[0], "subscribe"), err);
	} else if (str_eq(a[0], "append") && n >= 5) {
		struct store_append_msg msg;
		struct store_append_result res;
		uint32_t size, sys = 0;
		if (str_to_u32(a[3], &size) < 0)
			return err_set(err, ERR_INVALID, "append USER MAILBOX SIZE SEED [FLAG...]");
		join_flags(a + 5, n - 5, &m);
		if (store_flags_parse(buf_cstr(&m), &sys, &kw, err) < 0)
			goto out;
		if ((u = open_mbox(a[1], a[2], &mb, err)) == NULL)
			goto out;
		make_message(&m, a[1], size, a[4], 0);
		memset(&msg, 0, sizeof(msg));
		msg.data = m.data;
		msg.len = m.len;
		msg.sysflags = sys;
		msg.keywords = buf_cstr(&kw);
		rc = store_append(u, mb.uniqueid, &msg, 1, &res, NULL, err);
		if (rc == 0)
			buf_printf(reply, " uid=%u guid=%s", res.uid, res.guid);
	} else if (str_eq(a[0], "appendn") && n == 6) {
		uint32_t count, size;
		struct store_append_msg *msgs;
		struct store_append_result *res;
		struct buf *bodies;
		if (str_to_u32(a[3], &count) < 0 || str_to_u32(a[4], &size) < 0 || count == 0 ||
		    count > 100000)
			return err_set(err, ERR_INVALID, "appendn USER MAILBOX COUNT SIZE SEED");
		if ((u = open_mbox(a[1], a[2], &mb, err)) == NULL)
			goto out;
		msgs = xcalloc(count, sizeof(*msgs));
		res = xcalloc(count, sizeof(*res));
		bodies = xcalloc(count, sizeof(*bodies));
		for (uint32_t i = 0; i < count; i++) {
			make_message(&bodies[i], a[1], size, a[5], i);
			msgs[i].data = bodies[i].data;
			msgs[i].len = bodies[i].len;
		}
		rc = store_append(u, mb.uniqueid, msgs, count, res, NULL, err);
		if (rc == 0)
			buf_printf(reply, " first=%u last=%u", res[0].uid, res[count - 1].uid);
		for (uint32_t i = 0; i < count; i++)
			buf_free(&bodies[i]);
		free(bodies);
		free(msgs);
		free(res);
	} else if (str_eq(a[0], "flags") && n >= 5) {
		struct store_range r;
		enum store_flags_op op;
		uint32_t sys = 0;
		if (range_parse(a[3], &r) < 0 || strlen(a[4]) != 1 || strchr("+-=", a[4][0]) == NULL)
			return err_set(err, ERR_INVALID, "flags USER MAILBOX LO:HI +|-|= FLAG...");
		op = a[4][0] == '+' ? STORE_FLAGS_ADD : a[4][0] == '-' ? STORE_FLAGS_REMOVE :
			STORE_FLAGS_REPLACE;
		join_flags(a + 5, n - 5, &m);
		if (store_flags_parse(buf_cstr(&m), &sys, &kw, err) < 0)
			goto out;
		if ((u = open_mbox(a[1], a[2], &mb, err)) != NULL)
			rc = store_flags(u, mb.uniqueid, &r, 1, op, sys, buf_cstr(&kw), 0, NULL, NULL, NULL,
				err);
	} else if (str_eq(a[0], "expunge") && n == 4) {
		struct store_range r;
		if (range_parse(a[3], &r) < 0)
			return err_set(err, ERR_INVALID, "expunge USER MAILBOX LO:HI");
		if ((u = open_mbox(a[1], a[2], &mb, err)) != NULL)
			rc = store_expunge(u, mb.uniqueid, &r, 1, false, NULL, err);
	} else if ((str_eq(a[0], "copy") || str_eq(a[0], "move")) && n == 5) {
		struct store_range r;
		if (range_parse(a[3], &r) < 0)
			return err_set(err, ERR_INVALID, "copy USER SRC LO:HI DST");
		if ((u = open_mbox(a[1], a[2], &mb, err)) != NULL &&
		    store_mailbox_get(u, a[4], &mb2, err) == 0)
			rc = store_copy(u, mb.uniqueid, &r, 1, mb2.uniqueid, str_eq(a[0], "move"), NULL,
				NULL, NULL, err);
	} else if (str_eq(a[0], "deliver")) {
		rc = cmd_deliver(a, n, err);
	} else if (str_eq(a[0], "deliverlag")) {
		return cmd_deliverlag(a, n, reply, err);
	} else if (str_eq(a[0], "stats") && n == 1) {
		struct synchook_stats s;
		synchook_stats(st, &s);
		buf_printf(reply, " active=%d appended=%llu failures=%llu waits=%llu timeouts=%llu"
			" degraded=%d async_waits=%llu async_confirmed=%llu async_timeouts=%llu"
			" async_busy=%llu async_slow=%llu", synchook_active(st) ? 1 : 0,
			(unsigned long long)s.appended,
			(unsigned long long)s.append_failures, (unsigned long long)s.waits,
			(unsigned long long)s.wait_timeouts, s.degraded ? 1 : 0,
			(unsigned long long)s.async_waits, (unsigned long long)s.async_confirmed,
			(unsigned long long)s.async_timeouts, (unsigned long long)s.async_busy,
			(unsigned long long)s.async_slow);
		rc = 0;
	} else {
		return err_set(err, ERR_INVALID, "unknown command or wrong arguments: %s", a[0]);
	}
	if (rc == 0 && wait_ack(err) < 0)
		rc = -1;
out:
	store_user_close(&u);
	buf_free(&kw);
	buf_free(&m);
	return rc;
}

static int
split(char *line, char **a)
{
	int n = 0;

	for (char *p = strtok(line, " \t\r\n"); p != NULL && n < ARGS_MAX; p = strtok(NULL, " \t\r\n"))
		a[n++] = p;
	return n;
}

int
main(int argc, char **argv)
{
	const char *confpath = getenv("CASTOR_CONFIG");
	struct conf *conf;
	struct store_opts o;
	struct buf reply = BUF_INIT;
	struct err err;
	int first = 1, status = 0;

	log_init("sync-testdrv", LOG_DEST_STDERR);
	if (failpoint_init() < 0)
		return 64;
	if (argc >= first + 2 && str_eq(argv[first], "-C")) {
		confpath = argv[first + 1];
		first += 2;
	}
	if (argc >= first + 2 && str_eq(argv[first], "-o")) {
		ackout = fopen(argv[first + 1], "a");
		if (ackout == NULL) {
			fprintf(stderr, "sync-testdrv: %s: %s\n", argv[first + 1], strerror(errno));
			return 73;
		}
		first += 2;
	}
	signal(SIGQUIT, on_stop);
	signal(SIGTERM, on_stop);
	if (confpath == NULL) {
		fprintf(stderr, "usage: sync-testdrv -C castor.conf [COMMAND ARGS...]\n");
		return 64;
	}
	priv_umask();
	conf = conf_load(confpath, &err);
	if (conf == NULL || priv_drop_for_conf(conf, false, &err) < 0) {
		fprintf(stderr, "sync-testdrv: %s\n", err.msg);
		return 78;
	}
	store_opts_init(&o);
	st = store_open(conf_dir(conf), &o, &err);
	if (st == NULL || synchook_attach(st, conf, &err) < 0) {
		fprintf(stderr, "sync-testdrv: %s\n", err.msg);
		return 78;
	}
	if (first < argc) {
		if (run(argv + first, argc - first, &reply, &err) < 0) {
			printf("err %s %s\n", err_kind_name(err.kind), err.msg);
			status = 1;
		} else {
			printf("ok%s\n", buf_cstr(&reply));
		}
	} else {
		char *line = NULL;
		size_t cap = 0;
		while (!stop && getline(&line, &cap, stdin) > 0) {
			char *a[ARGS_MAX];
			int n = split(line, a);
			if (n == 0)
				continue;
			if (run(a, n, &reply, &err) < 0) {
				printf("err %s %s\n", err_kind_name(err.kind), err.msg);
				status = 1;
			} else {
				printf("ok%s\n", buf_cstr(&reply));
			}
			fflush(stdout);
		}
		free(line);
	}
	synchook_detach(st);
	store_close(&st);
	conf_free(conf);
	buf_free(&reply);
	return status;
}
