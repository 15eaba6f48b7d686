/* fuzz_lmtp.c - libFuzzer target for src/lmtp/lmtp_parse.c.  The input is
 * parsed as a command line (an accepted command must satisfy the
 * documented limits, a refused one must come with a 4xx/5xx reply), run
 * through the DATA decoder whole and in pieces of sizes taken from the
 * input (the results must agree with each other and with a naive
 * reference decoder). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lmtp/lmtp_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

/* memcmp that allows empty (NULL) buffers */
static bool
same(const struct buf *a, const struct buf *b, size_t n)
{
	return n == 0 || memcmp(a->data, b->data, n) == 0;
}

static void
check_cmd(const char *p, size_t n)
{
	struct lmtp_cmd cmd;
	char reply[256];
	char login[LMTP_PATH_MAX + 1], detail[LMTP_LOCAL_MAX + 1];

	memset(reply, 0, sizeof(reply));
	if (lmtp_parse_command(p, n, &cmd, reply, sizeof(reply)) == 0) {
		CHECK(cmd.verb != LMTP_UNKNOWN);
		CHECK(cmd.arg >= p && cmd.arg + cmd.arg_len <= p + n);
		CHECK(strlen(cmd.path) <= LMTP_PATH_MAX);
		CHECK(strlen(cmd.local) <= LMTP_LOCAL_MAX);
		CHECK(strlen(cmd.domain) <= LMTP_DOMAIN_MAX);
		/* no line end ever; '<' and '>' only inside a quoted local part
		 * (RFC 5321 qtextSMTP allows them: <"jo<"@x> is a valid path) */
		for (const char *s = cmd.path; *s; s++)
			CHECK(*s != '\r' && *s != '\n' &&
			      (cmd.path[0] == '"' || (*s != '<' && *s != '>')));
		if (cmd.verb == LMTP_RCPT)
			CHECK(cmd.local[0] != '\0');
		if (cmd.verb == LMTP_MAIL || cmd.verb == LMTP_RCPT) {
			if (lmtp_parse_rcpt_split(cmd.local, cmd.domain, login, sizeof(login), detail,
				sizeof(detail)) == 0)
				CHECK(strchr(login, '+') == NULL);
		}
	} else {
		CHECK(reply[0] == '4' || reply[0] == '5');
		CHECK(reply[1] >= '0' && reply[1] <= '9' && reply[2] >= '0' && reply[2] <= '9');
		CHECK(reply[3] == ' ' && reply[5] == '.');
		CHECK(strchr(reply, '\r') == NULL && strchr(reply, '\n') == NULL);
	}
}

/* The obvious decoder: at each line start (start of input, or after CR LF)
 * a '.' is dropped, and ". CR LF" there ends the message. */
static void
ref_decode(const char *p, size_t n, struct buf *out, size_t *used, bool *done)
{
	bool bol = true;
	size_t i = 0;

	*done = false;
	while (i < n) {
		if (bol && p[i] == '.') {
			if (i + 2 < n && p[i + 1] == '\r' && p[i + 2] == '\n') {
				*done = true;
				*used = i + 3;
				return;
			}
			if (i + 1 == n || (i + 2 == n && p[i + 1] == '\r')) {
				*used = n;   /* held back until more arrives */
				return;
			}
			i++;
			bol = false;
			continue;
		}
		buf_putc(out, p[i]);
		bol = p[i] == '\n' && out->len >= 2 && out->data[out->len - 2] == '\r';
		i++;
	}
	*used = n;
}

static void
check_data(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	struct buf whole = BUF_INIT, parts = BUF_INIT, ref = BUF_INIT, lim = BUF_INIT;
	struct lmtp_data d1, d2, d3;
	size_t u1, u2 = 0, ur, limit;
	bool rdone;
	unsigned k = 0;

	lmtp_data_init(&d1);
	u1 = lmtp_data_feed(&d1, p, size, &whole, SIZE_MAX);
	CHECK(u1 <= size);
	CHECK(d1.size == whole.len);
	CHECK(whole.len <= size);
	if (!d1.done)
		CHECK(u1 == size);

	lmtp_data_init(&d2);
	while (u2 < size && !d2.done) {
		size_t step = 1 + (data[k++ % size] % 7);
		size_t u;

		if (step > size - u2)
			step = size - u2;
		u = lmtp_data_feed(&d2, p + u2, step, &parts, SIZE_MAX);
		CHECK(u == step || d2.done);
		u2 += u;
	}
	CHECK(u2 == u1 && d2.done == d1.done);
	CHECK(parts.len == whole.len && same(&parts, &whole, whole.len));

	ref_decode(p, size, &ref, &ur, &rdone);
	CHECK(rdone == d1.done && ur == u1);
	CHECK(ref.len == whole.len && same(&ref, &whole, whole.len));

	/* a limit stores a prefix, counts everything */
	limit = size > 0 ? data[0] % 16 : 0;
	lmtp_data_init(&d3);
	CHECK(lmtp_data_feed(&d3, p, size, &lim, limit) == u1);
	CHECK(d3.size == d1.size && lim.len == (whole.len < limit ? whole.len : limit));
	CHECK(same(&lim, &whole, lim.len));

	buf_free(&whole);
	buf_free(&parts);
	buf_free(&ref);
	buf_free(&lim);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	const uint8_t *nl;

	check_cmd(p, size);
	/* each line of a pipelined batch, as the session would see them */
	nl = size > 0 ? memchr(data, '\n', size) : NULL;
	if (nl != NULL) {
		size_t n = (size_t)(nl - data);
		if (n > 0 && data[n - 1] == '\r')
			n--;
		check_cmd(p, n);
	}
	check_data(data, size);
	return 0;
}
