/* fuzz_pop3.c - libFuzzer target for src/pop3/pop3_parse.c.  The input is
 * parsed as a command line (accepted commands must satisfy the
 * documented limits) and encoded for RETR and TOP; the encoding followed
 * by ".\r\n" must decode (LMTP DATA decoder) to exactly the input with
 * CRLF line ends, or to its first lines for TOP, never ending early. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lmtp/lmtp_parse.h"
#include "pop3/pop3_parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void
check_cmd(const char *p, size_t n)
{
	struct pop3_cmd cmd;
	char why[160];

	memset(why, 0, sizeof(why));
	if (pop3_parse_command(p, n, &cmd, why, sizeof(why)) == 0) {
		CHECK(cmd.verb != POP3_UNKNOWN);
		if (cmd.has_msg)
			CHECK(cmd.msg >= 1 && cmd.msg <= POP3_MSGNUM_MAX);
		if (cmd.verb == POP3_RETR || cmd.verb == POP3_DELE || cmd.verb == POP3_TOP)
			CHECK(cmd.has_msg);
		if (cmd.arg_len > 0)
			CHECK(cmd.arg >= p && cmd.arg + cmd.arg_len <= p + n);
		if (cmd.arg2_len > 0)
			CHECK(cmd.arg2 >= p && cmd.arg2 + cmd.arg2_len <= p + n);
		for (size_t i = 0; i < cmd.arg_len; i++)
			CHECK((unsigned char)cmd.arg[i] >= 0x20 && cmd.arg[i] != 0x7f);
		if (cmd.verb == POP3_USER || cmd.verb == POP3_PASS)
			CHECK(cmd.arg_len > 0 && cmd.arg_len <= POP3_ARG_MAX);
	} else {
		CHECK(why[0] != '\0' && strchr(why, '\r') == NULL && strchr(why, '\n') == NULL);
	}
}

/* The message with every line ended by CRLF (a bare LF counts as a line
 * end, a CR right before it belongs to it); TOP keeps the header lines,
 * the empty line and `lines` body lines. */
static void
ref_lines(const char *p, size_t n, int64_t lines, struct buf *out)
{
	size_t i = 0;
	bool body = false;

	while (i < n) {
		const char *nl = memchr(p + i, '\n', n - i);
		size_t e = nl != NULL ? (size_t)(nl - p) : n, len = e - i;

		if (body && lines >= 0) {
			if (lines == 0)
				return;
			lines--;
		}
		if (len > 0 && p[i + len - 1] == '\r')
			len--;
		buf_append(out, p + i, len);
		buf_append(out, "\r\n", 2);
		if (len == 0)
			body = true;
		i = nl != NULL ? e + 1 : n;
	}
}

static void
check_encode(const char *p, size_t n, int64_t lines)
{
	struct buf enc = BUF_INIT, dec = BUF_INIT, ref = BUF_INIT;
	struct lmtp_data d;

	pop3_parse_encode(&enc, p, n, lines);
	buf_append(&enc, ".\r\n", 3);
	lmtp_data_init(&d);
	/* the terminator is found exactly at the end, never inside */
	CHECK(lmtp_data_feed(&d, enc.data, enc.len, &dec, SIZE_MAX) == enc.len);
	CHECK(d.done);
	ref_lines(p, n, lines, &ref);
	/* a bare CR before a CRLF in the input is kept, so compare what the
	 * decoder gives back with the reference */
	CHECK(dec.len == ref.len && (ref.len == 0 || memcmp(dec.data, ref.data, ref.len) == 0));
	buf_free(&enc);
	buf_free(&dec);
	buf_free(&ref);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	const uint8_t *nl;

	check_cmd(p, size);
	nl = size > 0 ? memchr(data, '\n', size) : NULL;
	if (nl != NULL) {
		size_t n = (size_t)(nl - data);
		if (n > 0 && data[n - 1] == '\r')
			n--;
		check_cmd(p, n);
	}
	check_encode(p, size, -1);
	check_encode(p, size, size > 0 ? data[0] % 5 : 0);
	return 0;
}
