/* test_conn.c - unit tests for lib/conn.c (plaintext streams): the line
 * reader fed byte by byte, line-length limits, literals, EOF, timeouts,
 * the wait primitive and output flushing against a slow or stuck peer;
 * the DEFLATE layer against zlib on the peer's side.
 * The peer is the other end of a socketpair (or pipes) driven by a thread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/err.h"
#include "lib/failpoint.h"

#include <zlib.h>

/* ---- a peer thread that writes a script, step bytes at a time ---------- */

struct writer {
	int fd;
	const char *data;
	size_t len;
	size_t step;        /* bytes per write() */
	int pause_us;       /* sleep between writes (0: none) */
	bool close_after;   /* close fd when done (EOF for the reader) */
	pthread_t tid;
};

static void *
writer_main(void *arg)
{
	struct writer *w = arg;
	size_t off = 0;

	while (off < w->len) {
		size_t n = w->len - off < w->step ? w->len - off : w->step;
		ssize_t r = write(w->fd, w->data + off, n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		off += (size_t)r;
		if (w->pause_us > 0)
			usleep((useconds_t)w->pause_us);
		else if (w->step < 16)
			sched_yield();
	}
	if (w->close_after)
		close(w->fd);
	return NULL;
}

static void
writer_start(struct writer *w, int fd, const char *data, size_t len, size_t step, bool close_after)
{
	memset(w, 0, sizeof(*w));
	w->fd = fd;
	w->data = data;
	w->len = len;
	w->step = step;
	w->close_after = close_after;
	assert_int_equal(pthread_create(&w->tid, NULL, writer_main, w), 0);
}

static void
writer_join(struct writer *w)
{
	pthread_join(w->tid, NULL);
}

/* A conn on one end of a socketpair; *peer gets the other end. */
static struct conn *
pair(int *peer)
{
	int sv[2];

	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	*peer = sv[1];
	return conn_new(sv[0], sv[0]);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
expect_line(struct conn *c, size_t max, const char *want, size_t wantlen)
{
	const char *line = NULL;
	size_t len = 0;
	struct err err = { 0 };
	int r = conn_read_line(c, max, &line, &len, &err);

	if (r != 1)
		fail_msg("expected line \"%.*s\", got r=%d err=%s", (int)wantlen, want, r, err.msg);
	assert_int_equal(len, wantlen);
	assert_memory_equal(line, want, wantlen);
	assert_int_equal(line[len], '\0');
}

static void
expect_eof(struct conn *c)
{
	const char *line;
	size_t len;
	struct err err = { 0 };

	assert_int_equal(conn_read_line(c, 100, &line, &len, &err), 0);
}

/* ---- tests ---------------------------------------------------------------- */

static void
test_lines_crlf_lf_nul(void **state)
{
	static const char in[] = "a1 NOOP\r\nbare lf\n\r\n\nnul\0inside\r\ncr\rinside\r\nlast\r\n";
	struct writer w;
	struct conn *c;
	int peer;

	(void)state;
	c = pair(&peer);
	writer_start(&w, peer, in, sizeof(in) - 1, sizeof(in), true);
	expect_line(c, 100, "a1 NOOP", 7);
	expect_line(c, 100, "bare lf", 7);
	expect_line(c, 100, "", 0);
	expect_line(c, 100, "", 0);
	expect_line(c, 100, "nul\0inside", 10);
	expect_line(c, 100, "cr\rinside", 9);
	expect_line(c, 100, "last", 4);
	expect_eof(c);
	expect_eof(c);
	writer_join(&w);
	assert_int_equal(conn_bytes_in(c), sizeof(in) - 1);
	conn_free(&c);
	assert_null(c);
}

/* Many lines of varied length, a CR split from its LF, dribbled one byte
 * per write, read through a tiny read chunk so the buffer compacts and
 * grows all the time. */
static void
test_dribble_byte_by_byte(void **state)
{
	struct buf in = BUF_INIT;
	struct writer w;
	struct conn *c;
	int peer, i;

	(void)state;
	for (i = 0; i < 300; i++) {
		int k;
		buf_printf(&in, "L%d ", i);
		for (k = 0; k < (i * 7) % 90; k++)
			buf_putc(&in, (char)('a' + k % 26));
		buf_puts(&in, i % 3 == 0 ? "\n" : "\r\n");
	}
	c = pair(&peer);
	conn_set_read_chunk(c, 5);
	conn_set_read_timeout(c, 10000);
	writer_start(&w, peer, in.data, in.len, 1, true);
	for (i = 0; i < 300; i++) {
		char want[200];
		int k, n = snprintf(want, sizeof(want), "L%d ", i);
		for (k = 0; k < (i * 7) % 90; k++)
			want[n++] = (char)('a' + k % 26);
		expect_line(c, 128, want, (size_t)n);
	}
	expect_eof(c);
	writer_join(&w);
	conn_free(&c);
	buf_free(&in);
}

/* A line of exactly max bytes passes; max+1 is refused with ERR_TOOBIG
 * and the head of the line; the session continues with the next line.
 * Run with the whole input at once and dribbled, with CRLF and bare LF. */
static void
run_limit(size_t step, size_t chunk)
{
	struct buf in = BUF_INIT;
	struct writer w;
	struct conn *c;
	struct err err = { 0 };
	const char *line;
	size_t len, i;
	int peer;

	for (i = 0; i < 64; i++)
		buf_putc(&in, 'x');
	buf_puts(&in, "\r\n");                   /* 64: ok */
	for (i = 0; i < 65; i++)
		buf_putc(&in, 'y');
	buf_puts(&in, "\r\n");                   /* 65: too big, complete in buffer */
	buf_puts(&in, "ok1\n");
	for (i = 0; i < 64; i++)
		buf_putc(&in, 'z');
	buf_puts(&in, "\n");                     /* 64 + bare LF: ok */
	for (i = 0; i < 100000; i++)
		buf_putc(&in, (char)('A' + i % 26));
	buf_puts(&in, "{5}\r\n");               /* long: discarded across many reads */
	buf_puts(&in, "ok2\r\n");
	for (i = 0; i < 64; i++)
		buf_putc(&in, 'w');
	buf_puts(&in, "\r\r\n");                 /* 64 + CR + CRLF = 65: too big */
	buf_puts(&in, "ok3\r\n");

	c = pair(&peer);
	conn_set_read_chunk(c, chunk);
	conn_set_read_timeout(c, 10000);
	writer_start(&w, peer, in.data, in.len, step, true);

	assert_int_equal(conn_read_line(c, 64, &line, &len, &err), 1);
	assert_int_equal(len, 64);
	assert_int_equal(conn_read_line(c, 64, &line, &len, &err), -1);
	assert_int_equal(err.kind, ERR_TOOBIG);
	assert_int_equal(len, 64);
	assert_int_equal(line[0], 'y');
	expect_line(c, 64, "ok1", 3);
	assert_int_equal(conn_read_line(c, 64, &line, &len, &err), 1);
	assert_int_equal(len, 64);
	assert_int_equal(line[63], 'z');
	err.kind = ERR_NONE;
	assert_int_equal(conn_read_line(c, 64, &line, &len, &err), -1);
	assert_int_equal(err.kind, ERR_TOOBIG);
	assert_non_null(strstr(err.msg, "longer than 64"));
	assert_int_equal(len, 64);
	assert_memory_equal(line, "ABCDEFGHIJ", 10);
	expect_line(c, 64, "ok2", 3);
	err.kind = ERR_NONE;
	assert_int_equal(conn_read_line(c, 64, &line, &len, &err), -1);
	assert_int_equal(err.kind, ERR_TOOBIG);
	expect_line(c, 64, "ok3", 3);
	expect_eof(c);
	writer_join(&w);
	conn_free(&c);
	buf_free(&in);
}

static void
test_line_limit_at_once(void **state)
{
	(void)state;
	run_limit(1 << 20, CONN_READ_CHUNK);
}

static void
test_line_limit_dribbled(void **state)
{
	(void)state;
	run_limit(1, 3);
	run_limit(7, 64);
	run_limit(4096, 100);
}

/* The input buffer must not grow with an endless line: read 8 MiB of
 * line with max 1000 and check the whole thing was consumed (the
 * process would need 8 MiB otherwise; ASan builds would still pass, so
 * we check behaviour: TOOBIG, then the next line). */
static void
test_toobig_huge(void **state)
{
	size_t n = 8u << 20;
	char *in = malloc(n + 10);
	struct writer w;
	struct conn *c;
	struct err err = { 0 };
	const char *line;
	size_t len;
	int peer;

	(void)state;
	memset(in, 'q', n);
	memcpy(in + n, "\nnext\n", 6);
	c = pair(&peer);
	writer_start(&w, peer, in, n + 6, 65536, true);
	assert_int_equal(conn_read_line(c, 1000, &line, &len, &err), -1);
	assert_int_equal(err.kind, ERR_TOOBIG);
	/* bounded by 2 * (max + read chunk) plus small change */
	assert_true(conn_memory(c) < 2 * (1000 + CONN_READ_CHUNK) + 4096);
	expect_line(c, 1000, "next", 4);
	expect_eof(c);
	assert_int_equal(conn_bytes_in(c), n + 6);
	writer_join(&w);
	conn_free(&c);
	free(in);
}

static void
test_eof_mid_line(void **state)
{
	static const char in[] = "whole\r\npartial";
	struct writer w;
	struct conn *c;
	struct err err = { 0 };
	const char *line;
	size_t len;
	int peer;

	(void)state;
	c = pair(&peer);
	writer_start(&w, peer, in, sizeof(in) - 1, 1, true);
	expect_line(c, 100, "whole", 5);
	assert_int_equal(conn_read_line(c, 100, &line, &len, &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	assert_non_null(strstr(err.msg, "middle of a line (7 bytes)"));
	expect_eof(c);
	writer_join(&w);
	conn_free(&c);
}

static void
test_eof_in_toobig_line(void **state)
{
	char in[500];
	struct writer w;
	struct conn *c;
	struct err err = { 0 };
	const char *line;
	size_t len;
	int peer;

	(void)state;
	memset(in, 'k', sizeof(in));
	c = pair(&peer);
	writer_start(&w, peer, in, sizeof(in), 50, true);
	assert_int_equal(conn_read_line(c, 100, &line, &len, &err), -1);
	assert_int_equal(err.kind, ERR_TOOBIG);
	expect_eof(c);
	writer_join(&w);
	conn_free(&c);
}

/* IMAP-style literal larger than every internal buffer, partly already
 * buffered behind its command line, then the rest of the command. */
static void
test_literal_large(void **state)
{
	size_t n = 3u << 20, i;
	struct buf in = BUF_INIT, got = BUF_INIT;
	struct writer w;
	struct conn *c;
	struct err err = { 0 };
	const char *line;
	size_t len;
	unsigned long long lit;
	int peer;

	(void)state;
	buf_printf(&in, "A1 APPEND INBOX {%zu}\r\n", n);
	for (i = 0; i < n; i++)
		buf_putc(&in, (char)(i * 131 % 251)); /* includes NUL, CR, LF */
	buf_puts(&in, " FLAGS\r\nA2 NOOP\r\n");
	c = pair(&peer);
	conn_set_read_timeout(c, 10000);
	writer_start(&w, peer, in.data, in.len, 100000, true);
	assert_int_equal(conn_read_line(c, 200, &line, &len, &err), 1);
	assert_int_equal(sscanf(strchr(line, '{'), "{%llu}", &lit), 1);
	assert_int_equal(lit, n);
	buf_puts(&got, "prefix");
	assert_int_equal(conn_read_exact(c, n, &got, &err), 0);
	assert_int_equal(got.len, 6 + n);
	assert_memory_equal(got.data + 6, in.data + in.len - n - 17, n);
	assert_int_equal(got.data[got.len], '\0');
	expect_line(c, 200, " FLAGS", 6);
	expect_line(c, 200, "A2 NOOP", 7);
	expect_eof(c);
	writer_join(&w);
	conn_free(&c);
	buf_free(&in);
	buf_free(&got);
}

static void
test_literal_skip_and_read_some(void **state)
{
	size_t n = 500000, i, total = 0;
	struct buf in = BUF_INIT;
	struct writer w;
	struct conn *c;
	struct err err = { 0 };
	const char *p;
	size_t len;
	uint32_t sum = 0, want = 0;
	int peer, r;

	(void)state;
	buf_puts(&in, "skip {500000}\r\n");
	for (i = 0; i < n; i++)
		buf_putc(&in, 'S');
	buf_puts(&in, "stream\r\n");
	for (i = 0; i < n; i++) {
		buf_putc(&in, (char)(i % 256));
		want = want * 31 + (uint32_t)(i % 256);
	}
	c = pair(&peer);
	writer_start(&w, peer, in.data, in.len, 3333, true);
	expect_line(c, 100, "skip {500000}", 13);
	assert_int_equal(conn_skip(c, n, &err), 0);
	expect_line(c, 100, "stream", 6);
	while (total < n) {
		r = conn_read_some(c, 1000, &p, &len, &err);
		assert_int_equal(r, 1);
		assert_true(len >= 1 && len <= 1000);
		for (i = 0; i < len; i++)
			sum = sum * 31 + (unsigned char)p[i];
		total += len;
	}
	assert_int_equal(total, n);
	assert_int_equal(sum, want);
	assert_int_equal(conn_read_some(c, 1000, &p, &len, &err), 0);
	writer_join(&w);
	conn_free(&c);
	buf_free(&in);
}

static void
test_eof_in_literal(void **state)
{
	static const char in[] = "x {100}\r\nonly twenty bytes...";
	struct buf got = BUF_INIT;
	struct writer w;
	struct conn *c;
	struct err err = { 0 };
	int peer;

	(void)state;
	c = pair(&peer);
	writer_start(&w, peer, in, sizeof(in) - 1, 4, true);
	expect_line(c, 100, "x {100}", 7);
	assert_int_equal(conn_read_exact(c, 100, &got, &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	assert_non_null(strstr(err.msg, "20 of 100"));
	writer_join(&w);
	conn_free(&c);
	buf_free(&got);

	c = pair(&peer);
	writer_start(&w, peer, in, sizeof(in) - 1, 4, true);
	expect_line(c, 100, "x {100}", 7);
	assert_int_equal(conn_skip(c, 100, &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	writer_join(&w);
	conn_free(&c);
}

static void
test_read_timeout(void **state)
{
	struct conn *c;
	struct err err = { 0 };
	const char *line;
	size_t len;
	int peer;
	int64_t t0;

	(void)state;
	c = pair(&peer);
	assert_int_equal(write(peer, "half", 4), 4);
	conn_set_read_timeout(c, 150);
	t0 = now_ms();
	assert_int_equal(conn_read_line(c, 100, &line, &len, &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	assert_non_null(strstr(err.msg, "read timeout"));
	assert_true(now_ms() - t0 >= 140);
	assert_true(now_ms() - t0 < 3000);
	/* the read side stays dead, even if data arrives later */
	assert_int_equal(write(peer, "\r\n", 2), 2);
	err.kind = ERR_NONE;
	assert_int_equal(conn_read_line(c, 100, &line, &len, &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	assert_non_null(strstr(err.msg, "read timeout"));
	conn_free(&c);
	close(peer);
}

/* A peer that dribbles a byte every 20 ms never trips the 150 ms read
 * timeout, but the absolute deadline ends the line read, and a literal
 * read, all the same. */
static void
test_read_deadline(void **state)
{
	static const char drip[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
	struct writer w;
	struct conn *c;
	struct err err = { 0 };
	struct buf lit = BUF_INIT;
	const char *line;
	size_t len;
	int peer;
	int64_t t0;

	(void)state;
	for (int round = 0; round < 2; round++) {
		c = pair(&peer);
		conn_set_read_timeout(c, 150);
		memset(&w, 0, sizeof(w));
		w.fd = peer;
		w.data = drip;
		w.len = sizeof(drip) - 1;
		w.step = 1;
		w.pause_us = 20000;
		assert_int_equal(pthread_create(&w.tid, NULL, writer_main, &w), 0);
		t0 = now_ms();
		conn_set_read_deadline(c, t0 + 200);
		assert_false(conn_read_deadline_passed(c));
		if (round == 0)
			assert_int_equal(conn_read_line(c, 100, &line, &len, &err), -1);
		else
			assert_int_equal(conn_read_exact(c, 100, &lit, &err), -1);
		assert_int_equal(err.kind, ERR_TEMP);
		assert_non_null(strstr(err.msg, "read deadline passed"));
		assert_true(conn_read_deadline_passed(c));
		assert_true(now_ms() - t0 >= 190);
		assert_true(now_ms() - t0 < 600);
		writer_join(&w);
		conn_free(&c);
		close(peer);
		buf_reset(&lit);
	}
	buf_free(&lit);
	/* helpers */
	assert_int_equal(conn_deadline_min(0, 0), 0);
	assert_int_equal(conn_deadline_min(0, 5), 5);
	assert_int_equal(conn_deadline_min(7, 5), 5);
	assert_int_equal(conn_ms_until(0), -1);
	assert_int_equal(conn_ms_until(1), 0);
}

static void
test_wait_readable(void **state)
{
	struct conn *c;
	struct err err = { 0 };
	int peer, pfd[2];
	int64_t t0;

	(void)state;
	assert_int_equal(pipe(pfd), 0);
	c = pair(&peer);
	/* nothing: times out */
	t0 = now_ms();
	assert_int_equal(conn_wait_readable(c, 80, pfd[0], &err), 0);
	assert_true(now_ms() - t0 >= 70);
	/* the extra fd (a signal self-pipe) wakes it */
	assert_int_equal(write(pfd[1], "s", 1), 1);
	assert_int_equal(conn_wait_readable(c, 5000, pfd[0], &err), CONN_READY_EXTRA);
	{
		char ch;
		assert_int_equal(read(pfd[0], &ch, 1), 1);
	}
	/* input */
	assert_int_equal(write(peer, "one\r\ntwo\r\n", 10), 10);
	assert_int_equal(conn_wait_readable(c, 5000, pfd[0], &err), CONN_READY_INPUT);
	expect_line(c, 100, "one", 3);
	/* "two" is buffered now: ready at once without touching the fd */
	assert_true(conn_pending_input(c) == 5);
	t0 = now_ms();
	assert_int_equal(conn_wait_readable(c, 5000, -1, &err), CONN_READY_INPUT);
	assert_true(now_ms() - t0 < 1000);
	/* buffered input and a signal at the same time: both reported */
	assert_int_equal(write(pfd[1], "s", 1), 1);
	assert_int_equal(conn_wait_readable(c, 5000, pfd[0], &err),
	    CONN_READY_INPUT | CONN_READY_EXTRA);
	expect_line(c, 100, "two", 3);
	assert_int_equal(conn_pending_input(c), 0);
	/* end of input counts as readable */
	close(peer);
	assert_int_equal(conn_wait_readable(c, 5000, -1, &err), CONN_READY_INPUT);
	expect_eof(c);
	assert_int_equal(conn_wait_readable(c, 5000, -1, &err), CONN_READY_INPUT);
	conn_free(&c);
	close(pfd[0]);
	close(pfd[1]);
}

/* Output through a peer that reads slowly in small pieces: buffering,
 * auto-flush past CONN_OUT_HIGH, a large direct write, partial writes and
 * EAGAIN all end with every byte delivered in order. */
struct reader {
	int fd;
	struct buf got;
	pthread_t tid;
};

static void *
reader_main(void *arg)
{
	struct reader *r = arg;
	char tmp[777];
	int k = 0;

	for (;;) {
		ssize_t n = read(r->fd, tmp, sizeof(tmp));
		if (n <= 0)
			break;
		buf_append(&r->got, tmp, (size_t)n);
		if (++k % 64 == 0)
			usleep(1000);
	}
	return NULL;
}

static void
test_write_slow_reader(void **state)
{
	struct reader rd;
	struct buf want = BUF_INIT;
	struct conn *c;
	struct err err = { 0 };
	char *big;
	size_t bign = 2u << 20, i;
	int peer, sb = 4096;

	(void)state;
	c = pair(&peer);
	setsockopt(conn_wfd(c), SOL_SOCKET, SO_SNDBUF, &sb, sizeof(sb));
	memset(&rd, 0, sizeof(rd));
	rd.fd = peer;
	assert_int_equal(pthread_create(&rd.tid, NULL, reader_main, &rd), 0);
	conn_set_write_timeout(c, 20000);
	for (i = 0; i < 20000; i++) {
		conn_printf(c, "* %zu FETCH (FLAGS (\\Seen))\r\n", i);
		buf_printf(&want, "* %zu FETCH (FLAGS (\\Seen))\r\n", i);
	}
	assert_true(conn_pending_output(c) <= CONN_OUT_HIGH);
	big = malloc(bign);
	for (i = 0; i < bign; i++)
		big[i] = (char)(i % 253);
	conn_puts(c, "literal follows\r\n");
	buf_puts(&want, "literal follows\r\n");
	conn_write(c, big, bign);
	buf_append(&want, big, bign);
	conn_puts(c, "tail\r\n");
	buf_puts(&want, "tail\r\n");
	assert_int_equal(conn_flush(c, &err), 0);
	assert_int_equal(conn_pending_output(c), 0);
	assert_int_equal(conn_bytes_out(c), want.len);
	conn_free(&c);
	pthread_join(rd.tid, NULL);
	close(peer);
	assert_int_equal(rd.got.len, want.len);
	assert_memory_equal(rd.got.data, want.data, want.len);
	buf_free(&rd.got);
	buf_free(&want);
	free(big);
}

/* A peer that never reads: the flush gives up after the write timeout,
 * and the error sticks. */
static void
test_write_timeout(void **state)
{
	struct conn *c;
	struct err err = { 0 };
	char *big;
	size_t bign = 4u << 20;
	int peer;
	int64_t t0;

	(void)state;
	c = pair(&peer);
	conn_set_write_timeout(c, 200);
	big = calloc(1, bign);
	t0 = now_ms();
	conn_write(c, big, bign);   /* direct write: blocks, times out */
	assert_true(now_ms() - t0 >= 190);
	assert_true(now_ms() - t0 < 5000);
	conn_puts(c, "dropped\r\n");
	assert_int_equal(conn_pending_output(c), 0);
	assert_int_equal(conn_flush(c, &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	assert_non_null(strstr(err.msg, "write timeout"));
	conn_free(&c);
	close(peer);
	free(big);
}

/* A peer that went away: the flush fails with an I/O error, no SIGPIPE. */
static void
test_write_peer_closed(void **state)
{
	struct conn *c;
	struct err err = { 0 };
	int peer, i;

	(void)state;
	c = pair(&peer);
	close(peer);
	for (i = 0; i < 3; i++) {
		conn_puts(c, "* BYE\r\n");
		if (conn_flush(c, &err) < 0)
			break;
	}
	assert_int_equal(err.kind, ERR_TEMP);
	assert_non_null(strstr(err.msg, "write"));
	conn_free(&c);
}

/* Separate read and write fds, as a service on stdin/stdout. */
static void
test_fd_pair_pipes(void **state)
{
	int in[2], out[2];
	struct conn *c;
	struct err err = { 0 };
	char got[64];
	ssize_t n;

	(void)state;
	assert_int_equal(pipe(in), 0);
	assert_int_equal(pipe(out), 0);
	c = conn_new(in[0], out[1]);
	assert_int_equal(write(in[1], "HELO x\r\n", 8), 8);
	close(in[1]);
	expect_line(c, 100, "HELO x", 6);
	expect_eof(c);
	conn_printf(c, "250 %s\r\n", "ok");
	assert_int_equal(conn_flush(c, &err), 0);
	n = read(out[0], got, sizeof(got));
	assert_int_equal(n, 8);
	assert_memory_equal(got, "250 ok\r\n", 8);
	conn_free(&c);
	/* conn_free closed out[1]: the reader sees EOF */
	assert_int_equal(read(out[0], got, sizeof(got)), 0);
	close(out[0]);
}

/* Injected I/O failures at a chosen read / write. */
static void
test_failpoints(void **state)
{
	static const char in[] = "one\r\ntwo\r\n";
	struct conn *c;
	struct err err = { 0 };
	const char *line;
	size_t len;
	int peer;

	(void)state;
	c = pair(&peer);
	conn_set_read_chunk(c, 5); /* "one\r\n" is exactly the first read */
	assert_int_equal(write(peer, in, sizeof(in) - 1), (ssize_t)sizeof(in) - 1);
	assert_int_equal(failpoint_set("conn.read=2*error,conn.write=error"), 0);
	expect_line(c, 100, "one", 3);
	assert_int_equal(conn_read_line(c, 100, &line, &len, &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	assert_non_null(strstr(err.msg, "failpoint conn.read"));
	conn_puts(c, "* OK\r\n");
	assert_int_equal(conn_flush(c, &err), -1);
	assert_non_null(strstr(err.msg, "failpoint conn.write"));
	assert_int_equal(failpoint_set(""), 0);
	conn_free(&c);
	close(peer);
}

/* ---- DEFLATE layer ------------------------------------------------------ */

/* Raw-deflate n bytes of p into out with a sync flush; returns its length. */
static size_t
zpack(z_stream *z, const char *p, size_t n, unsigned char *out, size_t cap)
{
	z->next_in = (unsigned char *)(uintptr_t)p;
	z->avail_in = (unsigned)n;
	z->next_out = out;
	z->avail_out = (unsigned)cap;
	assert_int_equal(deflate(z, Z_SYNC_FLUSH), Z_OK);
	assert_int_equal(z->avail_in, 0);
	assert_true(z->avail_out > 0);
	return cap - z->avail_out;
}

static void
test_compress(void **state)
{
	static unsigned char wire[300000], back[300000];
	static char big[200000];
	int peer;
	struct conn *c = pair(&peer);
	struct err err;
	z_stream zo, zi;
	size_t n, mem0, got = 0;

	(void)state;
	memset(&zo, 0, sizeof(zo));
	memset(&zi, 0, sizeof(zi));
	assert_int_equal(deflateInit2(&zo, 6, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY), Z_OK);
	assert_int_equal(inflateInit2(&zi, -15), Z_OK);
	/* a plain line, then compressed ones in the same write: what follows
	 * the command in the input buffer is taken as compressed */
	memcpy(wire, "C\r\n", 3);
	n = 3 + zpack(&zo, "one\r\ntwo\r\n", 10, wire + 3, sizeof(wire) - 3);
	assert_int_equal(write(peer, wire, n), (ssize_t)n);
	expect_line(c, 100, "C", 1);
	mem0 = conn_memory(c);
	assert_false(conn_is_compressed(c));
	assert_int_equal(conn_compress_start(c, &err), 0);
	assert_true(conn_is_compressed(c));
	assert_true(conn_memory(c) > mem0 + 200 * 1024);   /* zlib's windows are counted */
	assert_int_equal(conn_compress_start(c, &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	expect_line(c, 100, "one", 3);
	expect_line(c, 100, "two", 3);
	/* nothing left: no pending input claimed, a wait times out */
	assert_int_equal(conn_pending_input(c), 0);
	assert_int_equal(conn_wait_readable(c, 0, -1, &err), 0);
	/* a line dribbled in one compressed byte at a time */
	n = zpack(&zo, "three\r\n", 7, wire, sizeof(wire));
	for (size_t i = 0; i < n; i++)
		assert_int_equal(write(peer, wire + i, 1), 1);
	expect_line(c, 100, "three", 5);
	/* output: each flush is a complete sync-flushed block */
	conn_puts(c, "* OK hello\r\n");
	assert_int_equal(conn_flush(c, &err), 0);
	n = (size_t)read(peer, wire, sizeof(wire));
	zi.next_in = wire;
	zi.avail_in = (unsigned)n;
	zi.next_out = back;
	zi.avail_out = sizeof(back);
	assert_int_equal(inflate(&zi, Z_SYNC_FLUSH), Z_OK);
	assert_int_equal(sizeof(back) - zi.avail_out, 12);
	assert_memory_equal(back, "* OK hello\r\n", 12);
	/* a large direct write, read back whole after the flush */
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)('a' + (i * 7919) % 26);
	conn_write(c, big, sizeof(big));
	assert_int_equal(conn_flush(c, &err), 0);
	zi.next_out = back;
	zi.avail_out = sizeof(back);
	while (got < sizeof(big)) {
		ssize_t r = read(peer, wire, sizeof(wire));

		assert_true(r > 0);
		zi.next_in = wire;
		zi.avail_in = (unsigned)r;
		assert_int_equal(inflate(&zi, Z_SYNC_FLUSH), Z_OK);
		got = sizeof(back) - zi.avail_out;
	}
	assert_int_equal(got, sizeof(big));
	assert_memory_equal(back, big, sizeof(big));
	/* a corrupt stream kills the read side */
	assert_int_equal(write(peer, "\xff\xff\xff\xff\xff\xff\r\n", 8), 8);
	{
		const char *line;
		size_t len;

		assert_int_equal(conn_read_line(c, 100, &line, &len, &err), -1);
		assert_int_equal(err.kind, ERR_TEMP);
		assert_non_null(strstr(err.msg, "inflate"));
	}
	deflateEnd(&zo);
	inflateEnd(&zi);
	close(peer);
	conn_free(&c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lines_crlf_lf_nul),
		cmocka_unit_test(test_dribble_byte_by_byte),
		cmocka_unit_test(test_line_limit_at_once),
		cmocka_unit_test(test_line_limit_dribbled),
		cmocka_unit_test(test_toobig_huge),
		cmocka_unit_test(test_eof_mid_line),
		cmocka_unit_test(test_eof_in_toobig_line),
		cmocka_unit_test(test_literal_large),
		cmocka_unit_test(test_literal_skip_and_read_some),
		cmocka_unit_test(test_eof_in_literal),
		cmocka_unit_test(test_read_timeout),
		cmocka_unit_test(test_read_deadline),
		cmocka_unit_test(test_wait_readable),
		cmocka_unit_test(test_write_slow_reader),
		cmocka_unit_test(test_write_timeout),
		cmocka_unit_test(test_write_peer_closed),
		cmocka_unit_test(test_fd_pair_pipes),
		cmocka_unit_test(test_failpoints),
		cmocka_unit_test(test_compress),
	};

	/* SIGPIPE is left at its default: a socket write must never raise it */
	return cmocka_run_group_tests(tests, NULL, NULL);
}
