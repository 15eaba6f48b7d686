/*
 * base64.c - base64 encoding and strict / lenient decoding.  See base64.h.
 */
#include "lib/base64.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

static const char base64_alpha[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* value of each byte, or -1 when it is not in the alphabet */
static const signed char base64_val[256] = {
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 62, -1, -1, -1, 63,
	52, 53, 54, 55, 56, 57, 58, 59, 60, 61, -1, -1, -1, -1, -1, -1,
	-1, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14,
	15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, -1, -1, -1, -1, -1,
	-1, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40,
	41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
	-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1,
};

size_t
base64_encoded_len(size_t n)
{
	if (n / 3 >= ((size_t)-1) / 4)
		abort();
	return (n + 2) / 3 * 4;
}

void
base64_encode(struct buf *out, const void *in, size_t n)
{
	const unsigned char *p = in;
	char *o;
	size_t i;

	buf_reserve(out, base64_encoded_len(n));
	o = out->data + out->len;
	for (i = 0; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = base64_alpha[v >> 18];
		*o++ = base64_alpha[(v >> 12) & 63];
		*o++ = base64_alpha[(v >> 6) & 63];
		*o++ = base64_alpha[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		*o++ = base64_alpha[v >> 18];
		*o++ = base64_alpha[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*o++ = base64_alpha[v >> 18];
		*o++ = base64_alpha[(v >> 12) & 63];
		*o++ = base64_alpha[(v >> 6) & 63];
		*o++ = '=';
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
}

int
base64_decode(struct buf *out, const char *in, size_t n, struct err *err)
{
	size_t start = out->len;
	size_t i;
	char *o;

	if (n % 4 != 0)
		return err_set(err, ERR_INVALID, "base64: length %zu is not a multiple of 4", n);
	buf_reserve(out, n / 4 * 3);
	o = out->data + out->len;
	for (i = 0; i < n; i += 4) {
		const unsigned char *q = (const unsigned char *)in + i;
		int a = base64_val[q[0]], b = base64_val[q[1]];
		int c = base64_val[q[2]], d = base64_val[q[3]];
		size_t bad = 0;
		bool last = i + 4 == n;

		if (a < 0)
			bad = i + 1;
		else if (b < 0)
			bad = i + 2;
		else if (c < 0 && !(last && q[2] == '=' && q[3] == '='))
			bad = i + 3;
		else if (d < 0 && !(last && q[3] == '='))
			bad = i + 4;
		if (bad != 0) {
			buf_truncate(out, start);
			return err_set(err, ERR_INVALID, "base64: invalid character at offset %zu",
			    bad - 1);
		}
		*o++ = (char)(a << 2 | b >> 4);
		if (c < 0) {
			if (b & 15)
				goto noncanon;
			break;
		}
		*o++ = (char)((b & 15) << 4 | c >> 2);
		if (d < 0) {
			if (c & 3)
				goto noncanon;
			break;
		}
		*o++ = (char)((c & 3) << 6 | d);
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
	return 0;
noncanon:
	buf_truncate(out, start);
	return err_set(err, ERR_INVALID, "base64: non-zero padding bits at offset %zu", i);
}

size_t
base64_decode_mime(struct buf *out, const char *in, size_t n)
{
	size_t start = out->len;
	uint32_t acc = 0;
	int bits = 0;  /* number of 6-bit groups in acc: 0..3 */
	size_t i;
	char *o;

	buf_reserve(out, n / 4 * 3 + 3);
	o = out->data + out->len;
	for (i = 0; i < n; i++) {
		int v = base64_val[(unsigned char)in[i]];

		if (v < 0) {
			if (in[i] == '=') {
				/* end of a quantum: flush the whole bytes it holds */
				if (bits == 2)
					*o++ = (char)(acc >> 4);
				else if (bits == 3) {
					*o++ = (char)(acc >> 10);
					*o++ = (char)(acc >> 2);
				}
				acc = 0;
				bits = 0;
			}
			continue;
		}
		acc = acc << 6 | (uint32_t)v;
		if (++bits == 4) {
			*o++ = (char)(acc >> 16);
			*o++ = (char)(acc >> 8);
			*o++ = (char)acc;
			acc = 0;
			bits = 0;
		}
	}
	if (bits == 2)
		*o++ = (char)(acc >> 4);
	else if (bits == 3) {
		*o++ = (char)(acc >> 10);
		*o++ = (char)(acc >> 2);
	}
	out->len = (size_t)(o - out->data);
	out->data[out->len] = '\0';
	return out->len - start;
}
