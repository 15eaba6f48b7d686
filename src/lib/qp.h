/*
 * qp.h - quoted-printable decoding (RFC 2045 section 6.7), and the "Q"
 * variant of RFC 2047 encoded words.
 *
 * Lenient, as readers of real mail must be: what cannot be decoded is
 * kept as it is rather than rejected.
 *   "=XX" (hex digits, either case)   the byte XX
 *   "=" + spaces/tabs + line break    soft line break: all of it removed
 *   "=" at the very end of the input  removed (a soft break cut short)
 *   "=" followed by anything else     kept literally ("=" and what follows)
 *   spaces/tabs before a line break   removed (RFC 2045 rule 3: trailing
 *                                     white space was added in transport)
 *   line breaks (CRLF or bare LF)     kept as they are
 *   everything else, 8-bit included   kept
 */
#ifndef CASTOR_QP_H
#define CASTOR_QP_H

#include <stddef.h>

#include "lib/buf.h"

/* Decode a quoted-printable body; appends to out and returns the number
 * of bytes appended (never more than n). */
size_t qp_decode(struct buf *out, const char *in, size_t n);
/* Decode the text of an RFC 2047 "Q" encoded word: as qp_decode, and
 * '_' stands for a space (0x20); no line breaks are expected. */
size_t qp_decode_q(struct buf *out, const char *in, size_t n);

#endif
