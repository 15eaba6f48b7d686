/*
 * rfc2047.h - header text to UTF-8: RFC 2047 encoded words, and charset
 * conversion (glibc iconv) shared with the body decoder.
 *
 * For SEARCH and display.  Lenient as readers of real mail must be:
 *   - "=?charset[*lang]?B|Q?text?=" is decoded wherever it occurs, also
 *     inside a word; white space between two encoded words is dropped;
 *     adjacent words in the same charset are joined before conversion,
 *     so a character split across two words survives.
 *   - an encoded word that does not parse is kept as it is.
 *   - text outside encoded words is kept if it is valid UTF-8, otherwise
 *     read as windows-1252 (raw 8-bit Latin-1 headers are common).
 *   - an unknown charset is read like that too; invalid sequences in a
 *     known charset become U+FFFD.
 *   - line ends (folding) are dropped; NUL octets are dropped.
 */
#ifndef CASTOR_STORE_RFC2047_H
#define CASTOR_STORE_RFC2047_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

/* Append the decoded UTF-8 form of the header value s[0..n) to out. */
void rfc2047_decode(const char *s, size_t n, struct buf *out);

/* Append in[0..n), in charset cs[0..cslen), converted to UTF-8.  ISO-8859-1
 * and US-ASCII are read as windows-1252 when not valid UTF-8.  Returns 0,
 * or -1 when the charset is unknown (the octets are then appended as by
 * rfc2047_utf8(); out is still usable). */
int rfc2047_convert(const char *cs, size_t cslen, const char *in, size_t n, struct buf *out);

/* Append in[0..n): as it is when valid UTF-8, else read as windows-1252. */
void rfc2047_utf8(const char *in, size_t n, struct buf *out);

/* Is in[0..n) valid UTF-8 (no overlongs, surrogates or > U+10FFFF)? */
bool rfc2047_is_utf8(const char *in, size_t n);

#endif
