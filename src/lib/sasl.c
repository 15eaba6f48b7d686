/*
 * sasl.c - SASL PLAIN message parsing and encoding.  See sasl.h.
 */
#include "lib/sasl.h"
#include "lib/base64.h"

#include <stdbool.h>
#include <string.h>

#include <openssl/crypto.h>

void
sasl_plain_clear(struct sasl_plain *p)
{
	OPENSSL_cleanse(p, sizeof(*p));
}

/* Is p[0..n) valid UTF-8 (no overlongs, no surrogates, <= U+10FFFF)?  On
 * failure *bad_r is the offset of the first bad byte. */
static bool
sasl_utf8_valid(const unsigned char *p, size_t n, size_t *bad_r)
{
	size_t i = 0;

	while (i < n) {
		unsigned char c = p[i];
		size_t len, k;
		unsigned int cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			len = 2; cp = c & 0x1f; min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			len = 3; cp = c & 0x0f; min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			len = 4; cp = c & 0x07; min = 0x10000;
		} else {
			*bad_r = i;
			return false;
		}
		if (n - i < len) {
			*bad_r = i;
			return false;
		}
		for (k = 1; k < len; k++) {
			if ((p[i + k] & 0xc0) != 0x80) {
				*bad_r = i;
				return false;
			}
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
			*bad_r = i;
			return false;
		}
		i += len;
	}
	return true;
}

static int
sasl_part(const char *what, const char *p, size_t n, size_t max, bool ident, char *dst,
	struct err *err)
{
	size_t i, bad;

	if (n > max)
		return err_set(err, ERR_INVALID, "SASL PLAIN: %s longer than %zu bytes", what, max);
	if (!sasl_utf8_valid((const unsigned char *)p, n, &bad))
		return err_set(err, ERR_INVALID, "SASL PLAIN: %s is not valid UTF-8 (byte %zu)",
		    what, bad);
	if (ident) {
		for (i = 0; i < n; i++) {
			unsigned char c = (unsigned char)p[i];
			if (c < 0x20 || c == 0x7f)
				return err_set(err, ERR_INVALID,
				    "SASL PLAIN: %s contains a control character", what);
		}
	}
	memcpy(dst, p, n);
	dst[n] = '\0';
	return 0;
}

int
sasl_plain_parse(const char *msg, size_t len, struct sasl_plain *out, struct err *err)
{
	const char *nul1, *nul2, *end = msg + len;
	size_t zlen, clen, plen;

	memset(out, 0, sizeof(*out));
	nul1 = memchr(msg, '\0', len);
	if (nul1 == NULL)
		return err_set(err, ERR_INVALID, "SASL PLAIN: no NUL separator");
	nul2 = memchr(nul1 + 1, '\0', (size_t)(end - nul1 - 1));
	if (nul2 == NULL)
		return err_set(err, ERR_INVALID, "SASL PLAIN: only one NUL separator");
	if (memchr(nul2 + 1, '\0', (size_t)(end - nul2 - 1)) != NULL)
		return err_set(err, ERR_INVALID, "SASL PLAIN: more than two NUL separators");
	zlen = (size_t)(nul1 - msg);
	clen = (size_t)(nul2 - nul1 - 1);
	plen = (size_t)(end - nul2 - 1);
	if (clen == 0)
		return err_set(err, ERR_INVALID, "SASL PLAIN: empty authentication identity");
	if (plen == 0)
		return err_set(err, ERR_INVALID, "SASL PLAIN: empty password");
	if (sasl_part("authorization identity", msg, zlen, SASL_PLAIN_ID_MAX, true,
	        out->authzid, err) < 0 ||
	    sasl_part("authentication identity", nul1 + 1, clen, SASL_PLAIN_ID_MAX, true,
	        out->authcid, err) < 0 ||
	    sasl_part("password", nul2 + 1, plen, SASL_PLAIN_PASS_MAX, false,
	        out->passwd, err) < 0) {
		sasl_plain_clear(out);
		return -1;
	}
	return 0;
}

int
sasl_plain_decode(const char *b64, size_t len, struct sasl_plain *out, struct err *err)
{
	struct buf dec = BUF_INIT;
	int r;

	memset(out, 0, sizeof(*out));
	if (len > SASL_PLAIN_B64_MAX)
		return err_set(err, ERR_INVALID, "SASL PLAIN: response longer than %d bytes",
		    SASL_PLAIN_B64_MAX);
	if (base64_decode(&dec, b64, len, err) < 0) {
		err_prefix(err, "SASL PLAIN");
		buf_free(&dec);
		return -1;
	}
	r = sasl_plain_parse(dec.data != NULL ? dec.data : "", dec.len, out, err);
	if (dec.data != NULL)
		OPENSSL_cleanse(dec.data, dec.cap);
	buf_free(&dec);
	return r;
}

void
sasl_plain_encode(struct buf *out, const char *authzid, const char *authcid, const char *passwd)
{
	struct buf msg = BUF_INIT;

	if (authzid != NULL)
		buf_puts(&msg, authzid);
	buf_putc(&msg, '\0');
	buf_puts(&msg, authcid);
	buf_putc(&msg, '\0');
	buf_puts(&msg, passwd);
	base64_encode(out, msg.data, msg.len);
	OPENSSL_cleanse(msg.data, msg.cap);
	buf_free(&msg);
}
