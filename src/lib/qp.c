/*
 * qp.c - lenient quoted-printable decoding.  See qp.h for the rules.
 */
#include "lib/qp.h"

#include <stdbool.h>

static int
qp_hex(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static bool
qp_is_ws(char c)
{
	return c == ' ' || c == '\t';
}

/* Length of the line break at in[i] (CRLF 2, LF 1), 0 if none. */
static size_t
qp_eol(const char *in, size_t n, size_t i)
{
	if (i < n && in[i] == '\n')
		return 1;
	if (i + 1 < n && in[i] == '\r' && in[i + 1] == '\n')
		return 2;
	return 0;
}

static size_t
qp_decode_mode(struct buf *out, const char *in, size_t n, bool q)
{
	size_t start = out->len;
	size_t i = 0;
	char *o;

	buf_reserve(out, n);
	o = out->data + out->len;
	while (i < n) {
		char c = in[i];

		if (c == '=') {
			size_t j = i + 1, e;
			int hi, lo;

			if (j + 1 < n) {
				hi = qp_hex((unsigned char)in[j]);
				lo = qp_hex((unsigned char)in[j + 1]);
				if (hi >= 0 && lo >= 0) {
					*o++ = (char)(hi << 4 | lo);
					i = j + 2;
					continue;
				}
			}
			/* soft line break, possibly with (illegal) white space */
			while (j < n && qp_is_ws(in[j]))
				j++;
			if (j == n) {
				i = n; /* "=" at the end: a soft break cut short */
				continue;
			}
			e = qp_eol(in, n, j);
			if (e > 0) {
				i = j + e;
				continue;
			}
			*o++ = '='; /* undecodable: keep it */
			i++;
			continue;
		}
		if (qp_is_ws(c)) {
			/* drop a run of white space that ends the line or input */
			size_t j = i;
			while (j < n && qp_is_ws(in[j]))
				j++;
			if (qp_eol(in, n, j) > 0) {
				i = j;
				continue;
			}
			while (i < j)
				*o++ = in[i++];
			continue;
		}
		if (q && c == '_')
			c = ' ';
		*o++ = c;
		i++;
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
	return out->len - start;
}

size_t
qp_decode(struct buf *out, const char *in, size_t n)
{
	return qp_decode_mode(out, in, n, false);
}

size_t
qp_decode_q(struct buf *out, const char *in, size_t n)
{
	return qp_decode_mode(out, in, n, true);
}
