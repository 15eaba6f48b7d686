/*
 * rfc2047.c - encoded-word decoding and charset conversion to UTF-8.
 * See rfc2047.h for the rules.
 */
#include "store/rfc2047.h"

#include "lib/base64.h"
#include "lib/qp.h"

#include <errno.h>
#include <iconv.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#define RFC2047_CS_MAX 64

bool
rfc2047_is_utf8(const char *in, size_t n)
{
	const unsigned char *s = (const unsigned char *)in;
	size_t i = 0;

	while (i < n) {
		unsigned c = s[i];
		size_t k, need;
		unsigned cp, min;

		if (c < 0x80) {
			i++;
			while (i + 8 <= n) {
				uint64_t w;

				memcpy(&w, s + i, 8);
				if (w & 0x8080808080808080ULL)
					break;
				i += 8;
			}
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf) {
			need = 1;
			cp = c & 0x1f;
			min = 0x80;
		} else if (c >= 0xe0 && c <= 0xef) {
			need = 2;
			cp = c & 0x0f;
			min = 0x800;
		} else if (c >= 0xf0 && c <= 0xf4) {
			need = 3;
			cp = c & 0x07;
			min = 0x10000;
		} else {
			return false;
		}
		if (n - i <= need)
			return false;
		for (k = 1; k <= need; k++) {
			if ((s[i + k] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (s[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += need + 1;
	}
	return true;
}

/* iconv from `from` to UTF-8; invalid input becomes U+FFFD.  -1 if the
 * converter does not exist. */
static int
rfc2047_iconv(const char *from, const char *in, size_t n, struct buf *out)
{
	iconv_t cd = iconv_open("UTF-8", from);
	char *ip = (char *)(uintptr_t)in;
	size_t ileft = n;

	if (cd == (iconv_t)-1)
		return -1;
	for (;;) {
		size_t room = ileft * 4 + 16, oleft = room, r;
		char *op;

		buf_reserve(out, room);
		op = out->data + out->len;
		r = iconv(cd, ileft > 0 ? &ip : NULL, ileft > 0 ? &ileft : NULL, &op, &oleft);
		out->len += room - oleft;
		out->data[out->len] = '\0';
		if (r != (size_t)-1) {
			if (ileft == 0) {
				/* flush a stateful converter's shift state */
				buf_reserve(out, 16);
				op = out->data + out->len;
				oleft = 16;
				iconv(cd, NULL, NULL, &op, &oleft);
				out->len += 16 - oleft;
				out->data[out->len] = '\0';
				break;
			}
			continue;
		}
		if (errno == E2BIG)
			continue;
		/* EILSEQ or EINVAL (cut short): replace one octet, go on */
		buf_append(out, "\xef\xbf\xbd", 3);
		if (ileft == 0)
			break;
		ip++;
		ileft--;
		if (ileft == 0)
			break;
	}
	iconv_close(cd);
	return 0;
}

void
rfc2047_utf8(const char *in, size_t n, struct buf *out)
{
	size_t i;

	if (rfc2047_is_utf8(in, n)) {
		/* copy runs between NULs */
		while (n > 0) {
			const char *z = memchr(in, '\0', n);
			size_t run = z != NULL ? (size_t)(z - in) : n;

			buf_append(out, in, run);
			if (z == NULL)
				break;
			in += run + 1;
			n -= run + 1;
		}
		return;
	}
	if (rfc2047_iconv("WINDOWS-1252", in, n, out) < 0) {
		/* cannot happen with glibc; keep ASCII at least */
		for (i = 0; i < n; i++)
			buf_putc(out, (unsigned char)in[i] < 0x80 ? in[i] : '?');
	}
}

/* Copy a charset name into name[]; lower case, RFC 2231 "*lang" cut off.
 * false if it is not a plausible charset name. */
static bool
rfc2047_cs_name(const char *cs, size_t n, char *name)
{
	size_t i;

	for (i = 0; i < n && cs[i] != '*'; i++) {
		char c = cs[i];

		if (i + 1 >= RFC2047_CS_MAX)
			return false;
		if (c >= 'A' && c <= 'Z')
			c = (char)(c + ('a' - 'A'));
		if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
		    c == '.' || c == ':' || c == '+'))
			return false;
		name[i] = c;
	}
	name[i] = '\0';
	return i > 0;
}

int
rfc2047_convert(const char *cs, size_t cslen, const char *in, size_t n, struct buf *out)
{
	char name[RFC2047_CS_MAX];
	size_t start = out->len;

	if (!rfc2047_cs_name(cs, cslen, name)) {
		rfc2047_utf8(in, n, out);
		return -1;
	}
	if (strcmp(name, "utf-8") == 0 || strcmp(name, "utf8") == 0 ||
	    strcmp(name, "us-ascii") == 0 || strcmp(name, "ascii") == 0 ||
	    strcmp(name, "iso-8859-1") == 0 || strcmp(name, "latin1") == 0 ||
	    strcmp(name, "iso_8859-1") == 0 || strcmp(name, "windows-1252") == 0 ||
	    strcmp(name, "cp1252") == 0) {
		if (strcmp(name, "utf-8") == 0 || strcmp(name, "utf8") == 0) {
			/* declared UTF-8: keep it even when broken, U+FFFD for the bad octets */
			if (!rfc2047_is_utf8(in, n) && rfc2047_iconv("UTF-8", in, n, out) == 0)
				return 0;
		}
		rfc2047_utf8(in, n, out);
		return 0;
	}
	if (rfc2047_iconv(name, in, n, out) < 0) {
		buf_truncate(out, start);
		rfc2047_utf8(in, n, out);
		return -1;
	}
	return 0;
}

/* Parse an encoded word at s[i] ("=?").  On success fill the parts and
 * return the offset after "?=".  *noend is the smallest offset known to
 * have no "?=" at or after it, so that a long header full of "=?" without
 * a terminator costs linear time, not quadratic. */
static size_t
rfc2047_word(const char *s, size_t n, size_t i, const char **cs, size_t *cslen, char *enc,
	const char **text, size_t *textlen, size_t *noend)
{
	size_t j = i + 2, k;

	*cs = s + j;
	while (j < n && s[j] != '?' && s[j] != ' ' && s[j] != '\t' && j - i < RFC2047_CS_MAX + 2)
		j++;
	if (j >= n || s[j] != '?' || j == i + 2)
		return 0;
	*cslen = (size_t)(s + j - *cs);
	if (j + 2 >= n || s[j + 2] != '?')
		return 0;
	*enc = s[j + 1];
	if (*enc != 'B' && *enc != 'b' && *enc != 'Q' && *enc != 'q')
		return 0;
	k = j + 3;
	*text = s + k;
	if (k >= *noend)
		return 0;
	while (k + 1 < n && !(s[k] == '?' && s[k + 1] == '='))
		k++;
	if (k + 1 >= n) {
		*noend = j + 3;
		return 0;
	}
	*textlen = (size_t)(s + k - *text);
	return k + 2;
}

void
rfc2047_decode(const char *s, size_t n, struct buf *out)
{
	struct buf pend = BUF_INIT;  /* decoded octets of adjacent encoded words */
	struct buf plain = BUF_INIT; /* text outside encoded words */
	const char *pcs = NULL;      /* charset of pend */
	size_t pcslen = 0, i = 0, noend = SIZE_MAX;
	bool after_word = false;

	while (i < n) {
		const char *cs, *text;
		size_t cslen, textlen, e = 0;
		char enc;

		if (s[i] == '=' && i + 1 < n && s[i + 1] == '?')
			e = rfc2047_word(s, n, i, &cs, &cslen, &enc, &text, &textlen, &noend);
		if (e == 0) {
			char c = s[i];

			if (c == '\r' || c == '\n' || c == '\0') {
				i++;
				continue;
			}
			if (after_word && (c == ' ' || c == '\t')) {
				/* white space after an encoded word: held back */
				buf_putc(&plain, c);
				i++;
				continue;
			}
			/* held white space, if any, was not between two words: kept */
			after_word = false;
			if (pend.len > 0) {
				rfc2047_convert(pcs, pcslen, pend.data, pend.len, out);
				buf_reset(&pend);
			}
			buf_putc(&plain, c);
			i++;
			continue;
		}
		/* an encoded word: flush plain text (held white space dropped) */
		if (after_word) {
			buf_reset(&plain);
		} else if (plain.len > 0) {
			rfc2047_utf8(plain.data, plain.len, out);
			buf_reset(&plain);
		}
		if (pend.len > 0 && !(pcslen == cslen && strncasecmp(pcs, cs, cslen) == 0)) {
			rfc2047_convert(pcs, pcslen, pend.data, pend.len, out);
			buf_reset(&pend);
		}
		pcs = cs;
		pcslen = cslen;
		if (enc == 'B' || enc == 'b')
			base64_decode_mime(&pend, text, textlen);
		else
			qp_decode_q(&pend, text, textlen);
		after_word = true;
		i = e;
	}
	if (pend.len > 0)
		rfc2047_convert(pcs, pcslen, pend.data, pend.len, out);
	if (plain.len > 0)
		rfc2047_utf8(plain.data, plain.len, out);
	buf_free(&pend);
	buf_free(&plain);
}
