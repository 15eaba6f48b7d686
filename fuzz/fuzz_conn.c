/* fuzz_conn.c - libFuzzer target for lib/conn.c's line reader and
 * literal reading.  The first two bytes pick the line limit (1..64) and
 * the read chunk (1..32, so buffers compact and grow constantly); the
 * rest goes through a socketpair and is read as an IMAP-like stream:
 * lines, and after a line ending in {n} or {n+} a literal of n bytes,
 * read whole, skipped, or streamed, depending on n. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/err.h"

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

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct conn *c;
	struct buf lit = BUF_INIT;
	struct err err;
	size_t max, chunk;
	int sv[2], iter;

	if (size < 2)
		return 0;
	max = 1 + data[0] % 64;
	chunk = 1 + data[1] % 32;
	data += 2;
	size -= 2;
	if (size > 60000)
		size = 60000; /* fits in the socket buffer: no writer thread needed */
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return 0;
	if (size > 0 && write(sv[1], data, size) != (ssize_t)size) {
		close(sv[0]);
		close(sv[1]);
		return 0;
	}
	close(sv[1]);
	c = conn_new(sv[0], sv[0]);
	conn_set_read_chunk(c, chunk);
	conn_set_read_timeout(c, 5000);
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
			if (r == 0)
				CHECK(lit.len == (size_t)n);
		} else if (n % 3 == 1) {
			if (conn_skip(c, (uint64_t)n, &err) < 0)
				CHECK(err.kind == ERR_TEMP);
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
	CHECK(conn_bytes_in(c) == size);
	conn_free(&c);
	buf_free(&lit);
	return 0;
}
