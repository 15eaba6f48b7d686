/*
 * conn.c - buffered bidirectional stream with a bounded line reader,
 * literal reads, output buffering, timeouts and STARTTLS.  See conn.h
 * for the contract of each function.
 *
 * Input buffer: bytes [ipos, ilen) of ibuf are received and unread.
 * `iscan` counts how many of them (from ipos) are already known to hold
 * no LF, so a line dribbled in one byte at a time costs O(n), not O(n^2).
 * The buffer grows only as far as one line of the caller's maximum plus
 * one read chunk needs.
 *
 * TLS runs over a BIO of our own whose read/write go to the same raw
 * functions as plaintext: byte counters see the wire, writes use
 * MSG_NOSIGNAL, and the rfd/wfd pair works under TLS too.  All fds are
 * non-blocking; every wait is a poll() bounded by the read or write
 * timeout.
 *
 * Layers, bottom up: the fds; TLS (optional); DEFLATE (optional,
 * conn_compress_start); the line/literal reader and the output buffer.
 * conn_recv_xport/conn_send_xport move bytes through the fds or TLS;
 * conn_recv/conn_send_all add the DEFLATE layer when it is on.
 * Compressed input waits in zibuf; inflate writes straight into the
 * caller's buffer.  When that buffer fills, one more byte is inflated
 * into `zstash`, so whether decompressed input is pending is always
 * known exactly (conn_pending_input must not claim input a read would
 * then wait for).  Output is deflated with Z_SYNC_FLUSH on every send,
 * i.e. at every conn_flush (a response boundary) and every large direct
 * write, so the peer never waits for bytes held in the compressor.
 */
#include "lib/conn.h"
#include "lib/clock.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/tls.h"
#include "lib/xalloc.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <zlib.h>

struct conn {
	int rfd, wfd;
	bool wsock;            /* wfd is a socket: send(MSG_NOSIGNAL) */
	int rtimeout, wtimeout;
	int64_t rdeadline;     /* clock_mono_ms() time reads must finish by; 0: none */
	bool rdeadline_hit;
	size_t chunk;

	char *ibuf;
	size_t ipos, ilen, icap;
	size_t iscan;
	bool ieof;
	bool rdead;
	struct err rerr;

	struct buf out;
	bool wdead;
	struct err werr;

	struct buf toobig;     /* head of the last overlong line */
	uint64_t bytes_in, bytes_out;

	SSL *ssl;
	char tlsdesc[96];

	/* DEFLATE layer (RFC 4978), NULL when off */
	z_stream *zin, *zout;
	char *zibuf;           /* compressed input: [zipos, zilen) not yet inflated */
	size_t zipos, zilen, zicap;
	char zstash;           /* one inflated byte not yet handed out */
	bool zhave_stash;
	bool zend;             /* the peer ended its deflate stream: end of input */
	char *zobuf;           /* deflate output, CONN_ZOUT_CHUNK bytes */
	size_t zmem;           /* bytes zlib holds (its windows and tables) */
};

#define CONN_ZOUT_CHUNK 16384

/* ---- raw fd I/O ---------------------------------------------------------- */

/* Wait until fd has `events`; 1 ready (or hung up / in error: the next
 * I/O call reports it), 0 timeout, -1 poll failure.  EINTR resumes with
 * the remaining time. */
static int
conn_poll(int fd, short events, int timeout_ms)
{
	struct pollfd pfd;
	int64_t deadline = timeout_ms < 0 ? 0 : clock_mono_ms() + timeout_ms;
	int wait = timeout_ms;

	for (;;) {
		int r;

		pfd.fd = fd;
		pfd.events = events;
		pfd.revents = 0;
		r = poll(&pfd, 1, wait);
		if (r > 0)
			return 1;
		if (r == 0)
			return 0;
		if (errno != EINTR)
			return -1;
		if (timeout_ms >= 0) {
			int64_t left = deadline - clock_mono_ms();
			wait = left > 0 ? (int)left : 0;
		}
	}
}

static ssize_t
conn_raw_read(struct conn *c, void *p, size_t n)
{
	ssize_t r;

	do
		r = read(c->rfd, p, n);
	while (r < 0 && errno == EINTR);
	if (r > 0)
		c->bytes_in += (uint64_t)r;
	return r;
}

static ssize_t
conn_raw_write(struct conn *c, const void *p, size_t n)
{
	ssize_t r;

	do {
		if (c->wsock)
			r = send(c->wfd, p, n, MSG_NOSIGNAL);
		else
			r = write(c->wfd, p, n);
	} while (r < 0 && errno == EINTR);
	if (r > 0)
		c->bytes_out += (uint64_t)r;
	return r;
}

/* ---- our BIO, so OpenSSL does its I/O through conn_raw_* ---------------- */

static BIO_METHOD *conn_bio_method;
static pthread_once_t conn_bio_once = PTHREAD_ONCE_INIT;

static int
conn_bio_read(BIO *b, char *p, int n)
{
	struct conn *c = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	if (n <= 0)
		return 0;
	r = conn_raw_read(c, p, (size_t)n);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_read(b);
	return (int)r;
}

static int
conn_bio_write(BIO *b, const char *p, int n)
{
	struct conn *c = BIO_get_data(b);
	ssize_t r;

	BIO_clear_retry_flags(b);
	if (n <= 0)
		return 0;
	r = conn_raw_write(c, p, (size_t)n);
	if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		BIO_set_retry_write(b);
	return (int)r;
}

static long
conn_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1; /* nothing buffered at this level */
	default:
		return 0;
	}
}

static int
conn_bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static void
conn_bio_init_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "castor conn");

	if (m == NULL)
		abort();
	BIO_meth_set_read(m, conn_bio_read);
	BIO_meth_set_write(m, conn_bio_write);
	BIO_meth_set_ctrl(m, conn_bio_ctrl);
	BIO_meth_set_create(m, conn_bio_create);
	conn_bio_method = m;
}

/* ---- DEFLATE layer -------------------------------------------------------- */

/* zlib allocates through these so conn_memory() can count its windows. */
struct conn_zblock {
	size_t size;
	max_align_t align[];
};

static void *
conn_zalloc(void *opaque, unsigned items, unsigned size)
{
	struct conn *c = opaque;
	struct conn_zblock *b = xmalloc(sizeof(*b) + (size_t)items * size);

	b->size = (size_t)items * size;
	c->zmem += b->size;
	return b->align;
}

static void
conn_zfree(void *opaque, void *p)
{
	struct conn *c = opaque;
	struct conn_zblock *b;

	if (p == NULL)
		return;
	b = (struct conn_zblock *)((char *)p - offsetof(struct conn_zblock, align));
	c->zmem -= b->size;
	free(b);
}

static void
conn_compress_end(struct conn *c)
{
	if (c->zin != NULL) {
		inflateEnd(c->zin);
		free(c->zin);
		c->zin = NULL;
	}
	if (c->zout != NULL) {
		deflateEnd(c->zout);
		free(c->zout);
		c->zout = NULL;
	}
	free(c->zibuf);
	free(c->zobuf);
	c->zibuf = c->zobuf = NULL;
	c->zipos = c->zilen = c->zicap = 0;
}

int
conn_compress_start(struct conn *c, struct err *err)
{
	size_t pending;

	if (c->zin != NULL)
		return err_set(err, ERR_INVALID, "compression is already active");
	if (conn_flush(c, err) < 0)
		return -1;
	c->zin = xcalloc(1, sizeof(*c->zin));
	c->zout = xcalloc(1, sizeof(*c->zout));
	c->zin->zalloc = c->zout->zalloc = conn_zalloc;
	c->zin->zfree = c->zout->zfree = conn_zfree;
	c->zin->opaque = c->zout->opaque = c;
	if (inflateInit2(c->zin, -15) != Z_OK ||
	    deflateInit2(c->zout, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8,
		Z_DEFAULT_STRATEGY) != Z_OK) {
		conn_compress_end(c);
		return err_set(err, ERR_TEMP, "zlib initialisation failed");
	}
	/* what the peer sent after the command is compressed already */
	pending = c->ilen - c->ipos;
	c->zicap = pending > c->chunk ? pending : c->chunk;
	c->zibuf = xmalloc(c->zicap);
	c->zobuf = xmalloc(CONN_ZOUT_CHUNK);
	memcpy(c->zibuf, c->ibuf + c->ipos, pending);
	c->zilen = pending;
	c->ipos = c->ilen = c->iscan = 0;
	return 0;
}

bool
conn_is_compressed(const struct conn *c)
{
	return c->zin != NULL;
}

/* ---- life cycle ---------------------------------------------------------- */

static void
conn_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl >= 0 && !(fl & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

struct conn *
conn_new(int rfd, int wfd)
{
	struct conn *c = xcalloc(1, sizeof(*c));
	struct stat st;

	c->rfd = rfd;
	c->wfd = wfd;
	c->wsock = fstat(wfd, &st) == 0 && S_ISSOCK(st.st_mode);
	c->rtimeout = -1;
	c->wtimeout = -1;
	c->chunk = CONN_READ_CHUNK;
	conn_nonblock(rfd);
	if (wfd != rfd)
		conn_nonblock(wfd);
	return c;
}

void
conn_free(struct conn **cp)
{
	struct conn *c;

	if (cp == NULL || *cp == NULL)
		return;
	c = *cp;
	if (c->ssl != NULL) {
		if (!c->wdead && SSL_is_init_finished(c->ssl))
			(void)SSL_shutdown(c->ssl); /* one non-blocking try */
		SSL_free(c->ssl);
		ERR_clear_error();
	}
	if (c->rfd >= 0)
		close(c->rfd);
	if (c->wfd >= 0 && c->wfd != c->rfd)
		close(c->wfd);
	conn_compress_end(c);
	free(c->ibuf);
	buf_free(&c->out);
	buf_free(&c->toobig);
	free(c);
	*cp = NULL;
}

void
conn_set_read_timeout(struct conn *c, int ms)
{
	c->rtimeout = ms < 0 ? -1 : ms;
}

void
conn_set_write_timeout(struct conn *c, int ms)
{
	c->wtimeout = ms < 0 ? -1 : ms;
}

void
conn_set_read_deadline(struct conn *c, int64_t at_ms)
{
	c->rdeadline = at_ms > 0 ? at_ms : 0;
}

bool
conn_read_deadline_passed(const struct conn *c)
{
	return c->rdeadline_hit;
}

int64_t
conn_deadline_min(int64_t a, int64_t b)
{
	if (a <= 0)
		return b > 0 ? b : 0;
	if (b <= 0)
		return a;
	return a < b ? a : b;
}

int
conn_ms_until(int64_t at_ms)
{
	int64_t left;

	if (at_ms <= 0)
		return -1;
	left = at_ms - clock_mono_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

/* How long a read may wait now: the read timeout, cut short by the
 * deadline; *by_deadline_r tells which one bounds it. */
static int
conn_read_wait_ms(const struct conn *c, bool *by_deadline_r)
{
	int left = conn_ms_until(c->rdeadline);

	*by_deadline_r = false;
	if (left < 0)
		return c->rtimeout;
	if (c->rtimeout < 0 || left <= c->rtimeout) {
		*by_deadline_r = true;
		return left;
	}
	return c->rtimeout;
}

void
conn_set_read_chunk(struct conn *c, size_t n)
{
	c->chunk = n == 0 ? 1 : n;
}

int
conn_rfd(const struct conn *c)
{
	return c->rfd;
}

int
conn_wfd(const struct conn *c)
{
	return c->wfd;
}

/* ---- reading ------------------------------------------------------------- */

/* Make the read direction dead with this reason; returns -1. */
static int
conn_rfail(struct conn *c, struct err *err, enum err_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int
conn_rfail(struct conn *c, struct err *err, enum err_kind kind, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err_setv(&c->rerr, kind, fmt, ap);
	va_end(ap);
	c->rdead = true;
	if (err != NULL)
		*err = c->rerr;
	return -1;
}

static int
conn_wfail(struct conn *c, struct err *err, enum err_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int
conn_wfail(struct conn *c, struct err *err, enum err_kind kind, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err_setv(&c->werr, kind, fmt, ap);
	va_end(ap);
	c->wdead = true;
	buf_reset(&c->out);
	if (err != NULL)
		*err = c->werr;
	return -1;
}

/* The read deadline has passed: the read side dies.  Returns -1. */
static int
conn_rdeadline_fail(struct conn *c, struct err *err)
{
	c->rdeadline_hit = true;
	return conn_rfail(c, err, ERR_TEMP, "read deadline passed");
}

/* Wait for a TLS want (read or write) with the given timeout (when
 * reading: the read timeout cut short by the read deadline); 0 when
 * ready, -1 with `what` in the message on timeout or poll failure. */
static int
conn_wait_io(struct conn *c, bool want_write, int timeout, bool reading, struct err *err)
{
	bool by_deadline = false;
	int r;
	const char *dir = reading ? "read" : "write";

	if (reading)
		timeout = conn_read_wait_ms(c, &by_deadline);
	r = want_write ? conn_poll(c->wfd, POLLOUT, timeout) : conn_poll(c->rfd, POLLIN, timeout);
	if (r > 0)
		return 0;
	if (r == 0) {
		if (reading && by_deadline)
			return conn_rdeadline_fail(c, err);
		if (reading)
			return conn_rfail(c, err, ERR_TEMP, "%s timeout (%d ms)", dir, timeout);
		return conn_wfail(c, err, ERR_TEMP, "%s timeout (%d ms)", dir, timeout);
	}
	if (reading)
		return conn_rfail(c, err, ERR_TEMP, "poll: %s", strerror(errno));
	return conn_wfail(c, err, ERR_TEMP, "poll: %s", strerror(errno));
}

/* Receive up to n bytes into p from the transport (plaintext or TLS),
 * waiting up to the read timeout.  >0 bytes, 0 end of input, -1 error
 * (read side now dead). */
static ssize_t
conn_recv_xport(struct conn *c, void *p, size_t n, struct err *err)
{
	if (c->rdead) {
		if (err != NULL)
			*err = c->rerr;
		return -1;
	}
	if (c->ieof)
		return 0;
	if (FAILPOINT("conn.read") < 0)
		return conn_rfail(c, err, ERR_TEMP, "failpoint conn.read");
	if (n > INT_MAX)
		n = INT_MAX;
	for (;;) {
		/* checked before every read, so a peer that keeps the socket
		 * always readable (a fast trickle) meets it too */
		if (c->rdeadline > 0 && clock_mono_ms() >= c->rdeadline)
			return conn_rdeadline_fail(c, err);
		if (c->ssl == NULL) {
			ssize_t r = conn_raw_read(c, p, n);
			if (r > 0)
				return r;
			if (r == 0) {
				c->ieof = true;
				return 0;
			}
			if (errno != EAGAIN && errno != EWOULDBLOCK)
				return conn_rfail(c, err, ERR_TEMP, "read: %s", strerror(errno));
			if (conn_wait_io(c, false, c->rtimeout, true, err) < 0)
				return -1;
		} else {
			int r, e;

			ERR_clear_error();
			errno = 0;
			r = SSL_read(c->ssl, p, (int)n);
			if (r > 0)
				return r;
			e = SSL_get_error(c->ssl, r);
			switch (e) {
			case SSL_ERROR_WANT_READ:
			case SSL_ERROR_WANT_WRITE:
				if (conn_wait_io(c, e == SSL_ERROR_WANT_WRITE, c->rtimeout, true, err) < 0)
					return -1;
				break;
			case SSL_ERROR_ZERO_RETURN:
				c->ieof = true;
				return 0;
			case SSL_ERROR_SYSCALL:
				if (errno == 0) {
					c->ieof = true;
					return 0;
				}
				return conn_rfail(c, err, ERR_TEMP, "TLS read: %s", strerror(errno));
			default: {
				char reasons[256];
				tls_errors(reasons, sizeof(reasons));
				return conn_rfail(c, err, ERR_TEMP, "TLS read: %s", reasons);
			}
			}
		}
	}
}

/* Inflate into p[0..n) what zibuf holds; refill zibuf from the
 * transport when it yields nothing.  >0 bytes, 0 end of input, -1 error
 * (a corrupt stream kills the read side). */
static ssize_t
conn_recv_inflate(struct conn *c, char *p, size_t n, struct err *err)
{
	z_stream *z = c->zin;

	if (c->rdead) {
		if (err != NULL)
			*err = c->rerr;
		return -1;
	}
	if (c->zhave_stash) {
		c->zhave_stash = false;
		p[0] = c->zstash;
		return 1;
	}
	if (n > UINT_MAX)
		n = UINT_MAX;
	for (;;) {
		ssize_t r;

		if (c->zend)
			return 0;
		if (c->zipos < c->zilen) {
			size_t got, before = c->zipos;
			int zr;

			z->next_in = (unsigned char *)c->zibuf + c->zipos;
			z->avail_in = (unsigned)(c->zilen - c->zipos);
			z->next_out = (unsigned char *)p;
			z->avail_out = (unsigned)n;
			zr = inflate(z, Z_SYNC_FLUSH);
			c->zipos = c->zilen - z->avail_in;
			got = n - z->avail_out;
			if (zr == Z_STREAM_END)
				c->zend = true;
			else if (zr != Z_OK && zr != Z_BUF_ERROR)
				return conn_rfail(c, err, ERR_TEMP, "inflate: %s",
				    z->msg != NULL ? z->msg : "corrupt stream");
			if (got == n && !c->zend) {
				/* the buffer is full: is there more?  Keep one byte. */
				z->next_out = (unsigned char *)&c->zstash;
				z->avail_out = 1;
				zr = inflate(z, Z_SYNC_FLUSH);
				c->zipos = c->zilen - z->avail_in;
				c->zhave_stash = z->avail_out == 0;
				if (zr == Z_STREAM_END)
					c->zend = true;
				else if (zr != Z_OK && zr != Z_BUF_ERROR)
					(void)conn_rfail(c, NULL, ERR_TEMP, "inflate: %s",
					    z->msg != NULL ? z->msg : "corrupt stream");
			}
			if (got > 0)
				return (ssize_t)got;
			if (c->zend)
				return 0;
			if (c->zipos == before)   /* zlib promises progress; never loop */
				return conn_rfail(c, err, ERR_TEMP, "inflate made no progress");
			if (c->zipos < c->zilen)
				continue;
		}
		c->zipos = c->zilen = 0;
		r = conn_recv_xport(c, c->zibuf, c->zicap, err);
		if (r <= 0)
			return r;
		c->zilen = (size_t)r;
	}
}

/* Receive up to n (plaintext) bytes into p through every layer. */
static ssize_t
conn_recv(struct conn *c, void *p, size_t n, struct err *err)
{
	if (c->zin != NULL)
		return conn_recv_inflate(c, p, n, err);
	return conn_recv_xport(c, p, n, err);
}

/* Read more input into ibuf.  1 got bytes, 0 end of input, -1 error. */
static int
conn_fill(struct conn *c, struct err *err)
{
	ssize_t r;

	if (c->ipos == c->ilen) {
		c->ipos = c->ilen = 0;
		c->iscan = 0;
	}
	if (c->icap - c->ilen < c->chunk) {
		if (c->ipos > 0) {
			memmove(c->ibuf, c->ibuf + c->ipos, c->ilen - c->ipos);
			c->ilen -= c->ipos;
			c->ipos = 0;
		}
		if (c->icap - c->ilen < c->chunk) {
			/* doubling keeps a dribbled long line O(n) */
			size_t cap = c->icap * 2;
			if (cap < c->ilen + c->chunk)
				cap = c->ilen + c->chunk;
			c->icap = cap;
			c->ibuf = xrealloc(c->ibuf, c->icap);
		}
	}
	r = conn_recv(c, c->ibuf + c->ilen, c->icap - c->ilen, err);
	if (r <= 0)
		return (int)r;
	c->ilen += (size_t)r;
	return 1;
}

/* Throw away input up to and including the next LF.  1 found, 0 end of
 * input, -1 error. */
static int
conn_discard_line(struct conn *c, struct err *err)
{
	for (;;) {
		char *lf;
		int r;

		c->ipos = c->ilen;
		c->iscan = 0;
		r = conn_fill(c, err);
		if (r <= 0)
			return r;
		lf = memchr(c->ibuf + c->ipos, '\n', c->ilen - c->ipos);
		if (lf != NULL) {
			c->ipos = (size_t)(lf - c->ibuf) + 1;
			return 1;
		}
	}
}

static void
conn_save_toobig(struct conn *c, size_t max, const char **line_r, size_t *len_r)
{
	buf_reset(&c->toobig);
	buf_append(&c->toobig, c->ibuf + c->ipos, max);
	*line_r = c->toobig.data;
	*len_r = c->toobig.len;
}

int
conn_read_line(struct conn *c, size_t max, const char **line_r, size_t *len_r, struct err *err)
{
	if (max == 0)
		max = 1;
	if (max > SIZE_MAX / 2)
		max = SIZE_MAX / 2;
	for (;;) {
		size_t avail = c->ilen - c->ipos;
		char *lf = NULL;
		int r;

		if (avail > c->iscan)
			lf = memchr(c->ibuf + c->ipos + c->iscan, '\n', avail - c->iscan);
		if (lf != NULL) {
			size_t start = c->ipos;
			size_t len = (size_t)(lf - (c->ibuf + start));
			size_t linelen = len;

			if (linelen > 0 && c->ibuf[start + linelen - 1] == '\r')
				linelen--;
			if (linelen > max) {
				conn_save_toobig(c, max, line_r, len_r);
				c->ipos = start + len + 1;
				c->iscan = 0;
				return err_set(err, ERR_TOOBIG, "line longer than %zu bytes", max);
			}
			c->ipos = start + len + 1;
			c->iscan = 0;
			c->ibuf[start + linelen] = '\0'; /* the CR or LF, consumed */
			*line_r = c->ibuf + start;
			*len_r = linelen;
			return 1;
		}
		c->iscan = avail;
		if (avail > max + 1) {
			/* No LF within max+2 bytes: the line is too long whatever
			 * follows.  Keep its head, drop the rest of it. */
			struct err derr;

			conn_save_toobig(c, max, line_r, len_r);
			r = conn_discard_line(c, &derr);
			if (r < 0) {
				if (err != NULL)
					*err = derr;
				return -1;
			}
			return err_set(err, ERR_TOOBIG, "line longer than %zu bytes", max);
		}
		r = conn_fill(c, err);
		if (r < 0)
			return -1;
		if (r == 0) {
			if (avail == 0)
				return 0;
			c->ipos = c->ilen;
			c->iscan = 0;
			return err_set(err, ERR_TEMP,
			    "connection closed in the middle of a line (%zu bytes)", avail);
		}
	}
}

int
conn_read_exact(struct conn *c, size_t n, struct buf *out, struct err *err)
{
	size_t want = n;

	while (n > 0) {
		size_t avail = c->ilen - c->ipos;
		ssize_t r;

		if (avail > 0) {
			size_t take = avail < n ? avail : n;
			buf_append(out, c->ibuf + c->ipos, take);
			c->ipos += take;
			c->iscan = 0;
			n -= take;
			continue;
		}
		/* buffer empty: read straight into out, a chunk at a time */
		{
			size_t step = n < c->chunk * 4 ? n : c->chunk * 4;
			buf_reserve(out, step);
			r = conn_recv(c, out->data + out->len, step, err);
		}
		if (r < 0)
			return -1;
		if (r == 0)
			return err_set(err, ERR_TEMP,
			    "connection closed in a literal (%zu of %zu bytes)", want - n, want);
		out->len += (size_t)r;
		out->data[out->len] = '\0';
		n -= (size_t)r;
	}
	return 0;
}

int
conn_read_some(struct conn *c, size_t max, const char **p_r, size_t *len_r, struct err *err)
{
	size_t avail, take;

	if (max == 0)
		max = 1;
	if (c->ipos == c->ilen) {
		int r = conn_fill(c, err);
		if (r <= 0)
			return r;
	}
	avail = c->ilen - c->ipos;
	take = avail < max ? avail : max;
	*p_r = c->ibuf + c->ipos;
	*len_r = take;
	c->ipos += take;
	c->iscan = 0;
	return 1;
}

int
conn_skip(struct conn *c, uint64_t n, struct err *err)
{
	uint64_t want = n;

	while (n > 0) {
		size_t avail = c->ilen - c->ipos;
		int r;

		if (avail > 0) {
			size_t take = (uint64_t)avail < n ? avail : (size_t)n;
			c->ipos += take;
			c->iscan = 0;
			n -= take;
			continue;
		}
		r = conn_fill(c, err);
		if (r < 0)
			return -1;
		if (r == 0)
			return err_set(err, ERR_TEMP,
			    "connection closed in a literal (%llu of %llu bytes)",
			    (unsigned long long)(want - n), (unsigned long long)want);
	}
	return 0;
}

size_t
conn_pending_input(const struct conn *c)
{
	size_t n = c->ilen - c->ipos;

	if (c->ssl != NULL)
		n += (size_t)SSL_pending(c->ssl);
	if (c->zin != NULL)
		n += (c->zilen - c->zipos) + (c->zhave_stash ? 1 : 0);
	return n;
}

int
conn_wait_readable(struct conn *c, int timeout_ms, int extra_fd, struct err *err)
{
	struct pollfd pfd[2];
	nfds_t nfds = 0;
	int r, mask = 0;
	bool have_input = c->rdead || c->ieof || c->ilen > c->ipos ||
	    (c->ssl != NULL && SSL_has_pending(c->ssl)) ||
	    (c->zin != NULL && (c->zhave_stash || c->zend || c->zilen > c->zipos));

	if (!have_input) {
		pfd[nfds].fd = c->rfd;
		pfd[nfds].events = POLLIN;
		pfd[nfds].revents = 0;
		nfds++;
	}
	if (extra_fd >= 0) {
		pfd[nfds].fd = extra_fd;
		pfd[nfds].events = POLLIN;
		pfd[nfds].revents = 0;
		nfds++;
	}
	if (nfds == 0)
		return CONN_READY_INPUT;
	r = poll(pfd, nfds, have_input ? 0 : timeout_ms);
	if (r < 0) {
		if (errno == EINTR)
			return have_input ? CONN_READY_INPUT : 0;
		return err_errno(err, ERR_TEMP, "poll");
	}
	if (have_input)
		mask |= CONN_READY_INPUT;
	else if (pfd[0].revents != 0)
		mask |= CONN_READY_INPUT;
	if (extra_fd >= 0 && pfd[nfds - 1].revents != 0)
		mask |= CONN_READY_EXTRA;
	return mask;
}

/* ---- writing ------------------------------------------------------------- */

/* Send n bytes from p through the transport (plaintext or TLS), waiting
 * as needed.  0 or -1 (write side dead). */
static int
conn_send_xport(struct conn *c, const char *p, size_t n, struct err *err)
{
	if (FAILPOINT("conn.write") < 0)
		return conn_wfail(c, err, ERR_TEMP, "failpoint conn.write");
	while (n > 0) {
		if (c->ssl == NULL) {
			ssize_t r = conn_raw_write(c, p, n);
			if (r > 0) {
				p += r;
				n -= (size_t)r;
				continue;
			}
			if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
				return conn_wfail(c, err, ERR_TEMP, "write: %s", strerror(errno));
			if (conn_wait_io(c, true, c->wtimeout, false, err) < 0)
				return -1;
		} else {
			int len = n > (1 << 30) ? (1 << 30) : (int)n;
			int r, e;

			ERR_clear_error();
			errno = 0;
			r = SSL_write(c->ssl, p, len);
			if (r > 0) {
				p += r;
				n -= (size_t)r;
				continue;
			}
			e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
				if (conn_wait_io(c, e == SSL_ERROR_WANT_WRITE, c->wtimeout, false, err) < 0)
					return -1;
				continue;
			}
			if (e == SSL_ERROR_SYSCALL && errno != 0)
				return conn_wfail(c, err, ERR_TEMP, "TLS write: %s", strerror(errno));
			{
				char reasons[256];
				tls_errors(reasons, sizeof(reasons));
				return conn_wfail(c, err, ERR_TEMP, "TLS write: %s", reasons);
			}
		}
	}
	return 0;
}

/* Deflate n bytes from p and send them, ending with a sync flush so
 * that everything given so far reaches the peer.  0 or -1. */
static int
conn_send_deflate(struct conn *c, const char *p, size_t n, struct err *err)
{
	z_stream *z = c->zout;

	do {
		size_t step = n > (1u << 30) ? (1u << 30) : n;

		z->next_in = (unsigned char *)(uintptr_t)p;
		z->avail_in = (unsigned)step;
		do {
			size_t have;
			int zr;

			z->next_out = (unsigned char *)c->zobuf;
			z->avail_out = CONN_ZOUT_CHUNK;
			zr = deflate(z, Z_SYNC_FLUSH);
			if (zr != Z_OK && zr != Z_BUF_ERROR)
				return conn_wfail(c, err, ERR_TEMP, "deflate: %s",
				    z->msg != NULL ? z->msg : "error");
			have = CONN_ZOUT_CHUNK - z->avail_out;
			if (have > 0 && conn_send_xport(c, c->zobuf, have, err) < 0)
				return -1;
		} while (z->avail_out == 0);
		p += step;
		n -= step;
	} while (n > 0);
	return 0;
}

/* Send n bytes from p through every layer.  0 or -1 (write side dead). */
static int
conn_send_all(struct conn *c, const char *p, size_t n, struct err *err)
{
	if (c->zout != NULL)
		return conn_send_deflate(c, p, n, err);
	return conn_send_xport(c, p, n, err);
}

int
conn_flush(struct conn *c, struct err *err)
{
	if (c->wdead) {
		if (err != NULL)
			*err = c->werr;
		return -1;
	}
	if (c->out.len == 0)
		return 0;
	if (conn_send_all(c, c->out.data, c->out.len, err) < 0)
		return -1;
	buf_reset(&c->out);
	return 0;
}

void
conn_write(struct conn *c, const void *p, size_t n)
{
	if (c->wdead || n == 0)
		return;
	if (c->out.len + n <= CONN_OUT_HIGH) {
		buf_append(&c->out, p, n);
		return;
	}
	if (conn_flush(c, NULL) < 0)
		return;
	if (n >= CONN_OUT_HIGH)
		(void)conn_send_all(c, p, n, NULL);
	else
		buf_append(&c->out, p, n);
}

void
conn_puts(struct conn *c, const char *s)
{
	conn_write(c, s, strlen(s));
}

void
conn_printf(struct conn *c, const char *fmt, ...)
{
	va_list ap;

	if (c->wdead)
		return;
	va_start(ap, fmt);
	buf_vprintf(&c->out, fmt, ap);
	va_end(ap);
	if (c->out.len >= CONN_OUT_HIGH)
		(void)conn_flush(c, NULL);
}

size_t
conn_pending_output(const struct conn *c)
{
	return c->out.len;
}

uint64_t
conn_bytes_in(const struct conn *c)
{
	return c->bytes_in;
}

uint64_t
conn_bytes_out(const struct conn *c)
{
	return c->bytes_out;
}

size_t
conn_memory(const struct conn *c)
{
	size_t z = 0;

	if (c->zin != NULL)
		z = 2 * sizeof(z_stream) + c->zicap + CONN_ZOUT_CHUNK + c->zmem;
	return sizeof(*c) + c->icap + c->out.cap + c->toobig.cap + z;
}

/* ---- TLS ----------------------------------------------------------------- */

static bool
conn_is_ip(const char *s)
{
	unsigned char a[16];

	return inet_pton(AF_INET, s, a) == 1 || inet_pton(AF_INET6, s, a) == 1;
}

/* Handshake failure: both directions die with the same reason. */
static int
conn_tls_fail(struct conn *c, struct err *err, enum err_kind kind, const char *msg)
{
	conn_rfail(c, NULL, kind, "TLS handshake: %s", msg);
	c->wdead = true;
	c->werr = c->rerr;
	buf_reset(&c->out);
	if (err != NULL)
		*err = c->rerr;
	return -1;
}

int
conn_starttls(struct conn *c, struct tls_ctx *ctx, const char *peer_host, struct err *err)
{
	bool server = tls_ctx_is_server(ctx);
	size_t discard;
	BIO *bio;

	if (c->ssl != NULL)
		return err_set(err, ERR_INVALID, "TLS is already active");
	if (c->zin != NULL)
		return err_set(err, ERR_INVALID, "TLS cannot start under compression");
	if (conn_flush(c, err) < 0)
		return -1;
	discard = c->ilen - c->ipos;
	if (discard > 0)
		log_warn("starttls discarded pipelined plaintext bytes=%zu", discard);
	c->ipos = c->ilen = c->iscan = 0;
	if (c->rdead) {
		if (err != NULL)
			*err = c->rerr;
		return -1;
	}

	pthread_once(&conn_bio_once, conn_bio_init_method);
	ERR_clear_error();
	c->ssl = SSL_new(tls_ctx_ssl_ctx(ctx));
	bio = BIO_new(conn_bio_method);
	if (c->ssl == NULL || bio == NULL) {
		char reasons[256];
		BIO_free(bio);
		tls_errors(reasons, sizeof(reasons));
		return conn_tls_fail(c, err, ERR_TEMP, reasons);
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	if (server) {
		SSL_set_accept_state(c->ssl);
	} else {
		SSL_set_connect_state(c->ssl);
		if (peer_host != NULL && *peer_host != '\0') {
			bool ip = conn_is_ip(peer_host);
			int ok = 1;

			if (!ip)
				ok = SSL_set_tlsext_host_name(c->ssl, peer_host);
			if (ok == 1 && tls_ctx_verifies(ctx)) {
				if (ip)
					ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), peer_host);
				else
					ok = SSL_set1_host(c->ssl, peer_host);
			}
			if (ok != 1) {
				char msg[400];
				snprintf(msg, sizeof(msg), "bad peer name %s", peer_host);
				return conn_tls_fail(c, err, ERR_INVALID, msg);
			}
		}
	}
	for (;;) {
		int r, e;

		ERR_clear_error();
		errno = 0;
		r = SSL_do_handshake(c->ssl);
		if (r == 1)
			break;
		e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
			bool w = e == SSL_ERROR_WANT_WRITE, by_deadline = false;
			int t = w ? c->wtimeout : conn_read_wait_ms(c, &by_deadline);
			int pr = w ? conn_poll(c->wfd, POLLOUT, t) : conn_poll(c->rfd, POLLIN, t);
			if (pr > 0)
				continue;
			if (pr == 0) {
				char msg[64];
				if (by_deadline) {
					c->rdeadline_hit = true;
					return conn_tls_fail(c, err, ERR_TEMP, "read deadline passed");
				}
				snprintf(msg, sizeof(msg), "timeout (%d ms)", t);
				return conn_tls_fail(c, err, ERR_TEMP, msg);
			}
			return conn_tls_fail(c, err, ERR_TEMP, strerror(errno));
		}
		if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
			if (ERR_peek_error() == 0)
				return conn_tls_fail(c, err, ERR_TEMP,
				    errno != 0 ? strerror(errno) : "connection closed by peer");
		}
		{
			char reasons[256], msg[400];
			long vr = server ? X509_V_OK : SSL_get_verify_result(c->ssl);

			tls_errors(reasons, sizeof(reasons));
			if (vr != X509_V_OK)
				snprintf(msg, sizeof(msg), "%s (certificate: %s)", reasons,
				    X509_verify_cert_error_string(vr));
			else
				str_lcpy(msg, reasons, sizeof(msg));
			return conn_tls_fail(c, err, ERR_INVALID, msg);
		}
	}
	snprintf(c->tlsdesc, sizeof(c->tlsdesc), "%s %s", SSL_get_version(c->ssl),
	    SSL_get_cipher_name(c->ssl));
	return 0;
}

bool
conn_is_tls(const struct conn *c)
{
	return c->ssl != NULL && c->tlsdesc[0] != '\0';
}

const char *
conn_tls_desc(const struct conn *c)
{
	return c->tlsdesc;
}
