/*
 * base64.h - base64 (RFC 4648 section 4) encoding and decoding into bufs.
 *
 * Two decoders for two kinds of input:
 *   base64_decode       strict, for protocol data (SASL responses, sync
 *                       frames): only the 64 letters, '=' padding to a
 *                       multiple of 4 and only at the end, no white space,
 *                       zero unused bits in the last quantum.
 *   base64_decode_mime  lenient, for message bodies (RFC 2045 section 6.8):
 *                       characters outside the alphabet (line breaks,
 *                       spaces, garbage) are skipped; '=' ends a quantum;
 *                       decoding resumes after it (broken senders
 *                       concatenate encoded parts); a truncated last
 *                       quantum yields the whole bytes it holds.  Never
 *                       fails.
 */
#ifndef CASTOR_BASE64_H
#define CASTOR_BASE64_H

#include <stddef.h>

#include "lib/buf.h"
#include "lib/err.h"

/* Length of the encoding of n bytes (with padding, no line breaks). */
size_t base64_encoded_len(size_t n);
/* Append the encoding of in[0..n) to out (padding, no line breaks). */
void base64_encode(struct buf *out, const void *in, size_t n);
/* Strict decode of in[0..n), appended to out.  0, or -1 with ERR_INVALID
 * naming the offset of the first bad character (out is then restored to
 * its length before the call). */
int base64_decode(struct buf *out, const char *in, size_t n, struct err *err);
/* Lenient MIME decode, appended to out.  Returns the number of bytes
 * appended. */
size_t base64_decode_mime(struct buf *out, const char *in, size_t n);

#endif
