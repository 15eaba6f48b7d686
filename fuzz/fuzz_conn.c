/* fuzz_conn.c - libFuzzer target for lib/conn.c's line reader and
 * literal reading.  The first two bytes pick the line limit (1..64) and
 * the read chunk (1..32, so buffers compact and grow constantly); the
 * rest goes through a socketpair and is read as an IMAP-like stream:
 * lines, and after a line ending in {n} or {n+} a literal of n bytes,
 * read whole, skipped, or streamed, depending on n.
 *
 * With bit 7 of the second byte set the stream goes through the DEFLATE
 * layer (conn_compress_start): a plain line "C", then the rest deflated
 * here with a sync flush every few dozen bytes (bit 6 set: sent as it
 * is, i.e. mostly a corrupt deflate stream).  The reader's guarantees
 * must hold the same over inflated input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/err.h"

#include <zlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

/* "{123}" or "{123+}" at the end of line; -1 if none. */
static long
literal_size(const char *line, size_t len)
{
	size_t i;
	long n = 0;

	if (len < 3 || line[len - 1] != '}')
		return -1;
	i = len - 1;
	if (line[i - 1] == '+')
		i--;
	if (i == 0 || line[i - 1] < '0' || line[i - 1] > '9')
		return -1;
	while (i > 0 && line[i - 1] >= '0' && line[i - 1] <= '9')
		i--;
	if (i == 0 || line[i - 1] != '{')
		return -1;
	for (; line[i] >= '0' && line[i] <= '9'; i++) {
		n = n * 10 + (line[i] - '0');
		if (n > 1000000)
			return -1;
	}
	return n;
}

/* "C\r\n" and data deflated (raw, windowBits -15) with a sync flush at
 * every `step` bytes, or data as it is when !deflate.  NULL on failure. */
static unsigned char *
wire_compressed(const uint8_t *data, size_t size, bool deflate_it, size_t step, size_t *len_r)
{
	size_t cap = 3 + size + size / 8 + 64 + (size / step + 1) * 16;
	unsigned char *w = malloc(cap);
	z_stream z;
	size_t off = 0;

	if (w == NULL)
		return NULL;
	memcpy(w, "C\r\n", 3);
	if (!deflate_it) {
		memcpy(w + 3, data, size);
		*len_r = 3 + size;
		return w;
	}
	memset(&z, 0, sizeof(z));
	if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
		free(w);
		return NULL;
	}
	z.next_out = w + 3;
	z.avail_out = (unsigned)(cap - 3);
	do {
		size_t n = size - off < step ? size - off : step;

		z.next_in = (unsigned char *)(uintptr_t)(data + off);
		z.avail_in = (unsigned)n;
		CHECK(deflate(&z, Z_SYNC_FLUSH) == Z_OK && z.avail_in == 0 && z.avail_out > 0);
		off += n;
	} while (off < size);
	*len_r = cap - z.avail_out;
	deflateEnd(&z);
	return w;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn *c;
	struct buf lit = BUF_INIT;
	struct err err;
	size_t max, chunk;
	int sv[2], iter;
	bool zmode, zgarbage;
	unsigned char *wire = NULL;
	size_t wlen;

	if (size < 2)
		return 0;
	max = 1 + data[0] % 64;
	chunk = 1 + data[1] % 32;
	zmode = (data[1] & 0x80) != 0;
	zgarbage = zmode && (data[1] & 0x40) != 0;
	data += 2;
	size -= 2;
	if (size > 60000)
		size = 60000; /* fits in the socket buffer: no writer thread needed */
	wlen = size;
	if (zmode) {
		wire = wire_compressed(data, size, !zgarbage, 16 + data[-2] % 64, &wlen);
		if (wire == NULL)
			return 0;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0) {
		free(wire);
		return 0;
	}
	if (wlen > 0 && write(sv[1], zmode ? wire : data, wlen) != (ssize_t)wlen) {
		close(sv[0]);
		close(sv[1]);
		free(wire);
		return 0;
	}
	free(wire);
	close(sv[1]);
	c = conn_new(sv[0], sv[0]);
	conn_set_read_chunk(c, chunk);
	conn_set_read_timeout(c, 5000);
	if (zmode) {
		const char *line;
		size_t len;

		CHECK(conn_read_line(c, 8, &line, &len, &err) == 1 && len == 1 && line[0] == 'C');
		CHECK(conn_compress_start(c, &err) == 0 && conn_is_compressed(c));
		CHECK(conn_compress_start(c, &err) < 0 && err.kind == ERR_INVALID);
	}
	for (iter = 0; iter < 100000; iter++) {
		const char *line, *p;
		size_t len, plen;
		long n;
		int r;

		if (iter % 7 == 0)
			CHECK(conn_wait_readable(c, 0, -1, &err) == CONN_READY_INPUT);
		r = conn_read_line(c, max, &line, &len, &err);
		if (r == 0)
			break;
		if (r < 0) {
			CHECK(err.kind == ERR_TOOBIG || err.kind == ERR_TEMP);
			if (zgarbage && err.kind == ERR_TEMP)
				break;   /* a corrupt stream: the read side is dead */
			if (err.kind == ERR_TOOBIG)
				CHECK(len == max);
			continue; /* TOOBIG: next line; TEMP: partial line at EOF, then 0 */
		}
		CHECK(len <= max);
		CHECK(line[len] == '\0');
		CHECK(memchr(line, '\n', len) == NULL);
		n = literal_size(line, len);
		if (n < 0)
			continue;
		if (n % 3 == 0) {
			buf_reset(&lit);
			r = conn_read_exact(c, (size_t)n, &lit, &err);
			CHECK(r == 0 || err.kind == ERR_TEMP);
			if (r < 0 && zgarbage)
				break;
			if (r == 0)
				CHECK(lit.len == (size_t)n);
		} else if (n % 3 == 1) {
			if (conn_skip(c, (uint64_t)n, &err) < 0) {
				CHECK(err.kind == ERR_TEMP);
				if (zgarbage)
					break;
			}
		} else {
			size_t got = 0;
			while (got < (size_t)n) {
				r = conn_read_some(c, (size_t)n - got, &p, &plen, &err);
				if (r <= 0)
					break;
				CHECK(plen >= 1 && plen <= (size_t)n - got);
				got += plen;
			}
		}
	}
	if (!zgarbage)
		CHECK(conn_bytes_in(c) == wlen);
	conn_free(&c);
	buf_free(&lit);
	return 0;
}
