/*
 * imap_utf7.h - modified UTF-7 (RFC 3501 5.1.3), the form mailbox names
 * take on the IMAP wire unless the client enabled UTF8=ACCEPT.
 *
 * Printable US-ASCII (0x20-0x7e) stands for itself except '&', written
 * "&-"; everything else is "&" + modified BASE64 (alphabet A-Z a-z 0-9
 * + ,, no padding) of the UTF-16BE form + "-".  The store keeps names in
 * UTF-8; imapd converts at the edge.
 *
 * The decoder is strict so that decode(encode(x)) == x and every name
 * has exactly one wire form: it refuses raw 8-bit or control octets,
 * a shift sequence that encodes printable ASCII, two shift sequences
 * back to back, leftover non-zero bits or a partial UTF-16 unit,
 * unpaired surrogates, and an unterminated shift.
 */
#ifndef CASTOR_IMAP_UTF7_H
#define CASTOR_IMAP_UTF7_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/buf.h"

/* Append the modified UTF-7 form of the UTF-8 string in[0..n) to out.
 * Returns 0, or -1 when in is not valid UTF-8 (out may hold a prefix). */
int imap_utf7_encode(const char *in, size_t n, struct buf *out);

/* Append the UTF-8 form of the modified UTF-7 string in[0..n) to out.
 * Returns 0, or -1 when in is not canonical modified UTF-7. */
int imap_utf7_decode(const char *in, size_t n, struct buf *out);

#endif
