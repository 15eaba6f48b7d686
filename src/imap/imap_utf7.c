/*
 * imap_utf7.c - modified UTF-7 mailbox names (RFC 3501 5.1.3); see
 * imap_utf7.h for the rules and what the decoder refuses.
 */
#include "imap/imap_utf7.h"

#include <stdint.h>

static const char imap_utf7_b64[] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+,";

static int
imap_utf7_b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == ',')
		return 63;
	return -1;
}

/* Decode one UTF-8 code point at in[*i]; -1 when invalid. */
static int32_t
imap_utf7_next_cp(const unsigned char *in, size_t n, size_t *i)
{
	unsigned char c = in[*i];
	uint32_t cp, min;
	size_t k, len;

	if (c < 0x80) {
		(*i)++;
		return c;
	}
	if ((c & 0xe0) == 0xc0) {
		len = 2;
		cp = c & 0x1f;
		min = 0x80;
	} else if ((c & 0xf0) == 0xe0) {
		len = 3;
		cp = c & 0x0f;
		min = 0x800;
	} else if ((c & 0xf8) == 0xf0) {
		len = 4;
		cp = c & 0x07;
		min = 0x10000;
	} else {
		return -1;
	}
	if (n - *i < len)
		return -1;
	for (k = 1; k < len; k++) {
		if ((in[*i + k] & 0xc0) != 0x80)
			return -1;
		cp = (cp << 6) | (in[*i + k] & 0x3f);
	}
	if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return -1;
	*i += len;
	return (int32_t)cp;
}

struct imap_utf7_bits {
	uint32_t acc;
	int nbits;
};

static void
imap_utf7_put16(struct buf *out, struct imap_utf7_bits *b, uint32_t unit)
{
	b->acc = (b->acc << 16) | unit;
	b->nbits += 16;
	while (b->nbits >= 6) {
		b->nbits -= 6;
		buf_putc(out, imap_utf7_b64[(b->acc >> b->nbits) & 0x3f]);
	}
	b->acc &= (1u << b->nbits) - 1;
}

int
imap_utf7_encode(const char *in, size_t n, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];

		if (c >= 0x20 && c <= 0x7e) {
			buf_putc(out, (char)c);
			if (c == '&')
				buf_putc(out, '-');
			i++;
			continue;
		}
		/* a run of characters that need encoding */
		struct imap_utf7_bits b = { 0, 0 };

		buf_putc(out, '&');
		while (i < n && !(p[i] >= 0x20 && p[i] <= 0x7e)) {
			int32_t cp = imap_utf7_next_cp(p, n, &i);

			if (cp < 0)
				return -1;
			if (cp >= 0x10000) {
				uint32_t v = (uint32_t)cp - 0x10000;
				imap_utf7_put16(out, &b, 0xd800 | (v >> 10));
				imap_utf7_put16(out, &b, 0xdc00 | (v & 0x3ff));
			} else {
				imap_utf7_put16(out, &b, (uint32_t)cp);
			}
		}
		if (b.nbits > 0)
			buf_putc(out, imap_utf7_b64[(b.acc << (6 - b.nbits)) & 0x3f]);
		buf_putc(out, '-');
	}
	return 0;
}

static void
imap_utf7_put_cp(struct buf *out, uint32_t cp)
{
	char u[4];

	if (cp < 0x80) {
		buf_putc(out, (char)cp);
	} else if (cp < 0x800) {
		u[0] = (char)(0xc0 | (cp >> 6));
		u[1] = (char)(0x80 | (cp & 0x3f));
		buf_append(out, u, 2);
	} else if (cp < 0x10000) {
		u[0] = (char)(0xe0 | (cp >> 12));
		u[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[2] = (char)(0x80 | (cp & 0x3f));
		buf_append(out, u, 3);
	} else {
		u[0] = (char)(0xf0 | (cp >> 18));
		u[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
		u[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
		u[3] = (char)(0x80 | (cp & 0x3f));
		buf_append(out, u, 4);
	}
}

int
imap_utf7_decode(const char *in, size_t n, struct buf *out)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i = 0;
	bool after_shift = false;   /* the previous thing was a shift sequence */

	while (i < n) {
		unsigned char c = p[i];

		if (c < 0x20 || c > 0x7e)
			return -1;
		if (c != '&') {
			buf_putc(out, (char)c);
			after_shift = false;
			i++;
			continue;
		}
		i++;
		if (i < n && p[i] == '-') {
			buf_putc(out, '&');
			after_shift = false;
			i++;
			continue;
		}
		if (after_shift)
			return -1;   /* "&AAA-&AAA-" must have been one sequence */
		uint32_t acc = 0, hi = 0;
		int nbits = 0;
		size_t units = 0;

		while (i < n && p[i] != '-') {
			int v = imap_utf7_b64val(p[i]);

			if (v < 0)
				return -1;
			acc = (acc << 6) | (uint32_t)v;
			nbits += 6;
			i++;
			if (nbits >= 16) {
				uint32_t unit;

				nbits -= 16;
				unit = (acc >> nbits) & 0xffff;
				acc &= (1u << nbits) - 1;
				units++;
				if (hi != 0) {
					if (unit < 0xdc00 || unit > 0xdfff)
						return -1;
					imap_utf7_put_cp(out, 0x10000 + ((hi - 0xd800) << 10) + (unit - 0xdc00));
					hi = 0;
				} else if (unit >= 0xd800 && unit <= 0xdbff) {
					hi = unit;
				} else if (unit >= 0xdc00 && unit <= 0xdfff) {
					return -1;
				} else if (unit >= 0x20 && unit <= 0x7e) {
					return -1;   /* printable ASCII must not be encoded */
				} else {
					imap_utf7_put_cp(out, unit);
				}
			}
		}
		if (i >= n)
			return -1;   /* no closing '-' */
		i++;
		if (units == 0 || hi != 0 || nbits >= 6 || acc != 0)
			return -1;
		after_shift = true;
	}
	return 0;
}
