/*
 * mimedecode.h - decoded UTF-8 text of a message, for IMAP SEARCH.
 *
 * SEARCH BODY/TEXT match against what a person reads, not the transfer
 * encoding: each text/... part is decoded from base64 or quoted-printable
 * and converted from its charset to UTF-8 (rfc2047_convert), headers
 * are unfolded and their encoded words decoded.  Non-text parts
 * (images, application/...) contribute nothing.  What mime_parse left
 * unsplit at its depth or part-count cap (MIME_PF_CAPPED) contributes
 * its raw octets, flat and undecoded: parsing stays bounded, yet text
 * nested deeper than MIME_MAX_DEPTH is still found.  Matching itself
 * (case-insensitive substring) is the caller's.
 */
#ifndef CASTOR_STORE_MIMEDECODE_H
#define CASTOR_STORE_MIMEDECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "store/mime.h"

/* Append the decoded UTF-8 body of part idx to out.  Returns 1 if the
 * part is text/... (and was appended), 0 otherwise (nothing appended).
 * t must come from mime_parse() over raw. */
int mimedecode_part(const char *raw, const struct mime_tree *t, uint32_t idx, struct buf *out);

/* Append the header raw[off..off+len) as "Name: decoded value\n" lines
 * (unfolded, RFC 2047 decoded). */
void mimedecode_header(const char *raw, size_t off, size_t len, struct buf *out);

/* Append the searchable text of the message raw[0..len): the decoded body
 * of every text/... part and the decoded header of every encapsulated
 * message (SEARCH BODY); with_header, the message's own header first
 * (SEARCH TEXT).  Pieces are separated by "\n". */
void mimedecode_text(const char *raw, size_t len, bool with_header, struct buf *out);

/* Same, over a tree already parsed from raw. */
void mimedecode_tree_text(const char *raw, const struct mime_tree *t, bool with_header,
	struct buf *out);

#endif
