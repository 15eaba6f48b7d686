/*
 * imapenv.h - IMAP ENVELOPE, BODYSTRUCTURE and BODY of a message, and the
 * compact serialised part tree the store keeps beside them.
 *
 * Computed once at append (imapenv_build) and stored; IMAP splices the
 * strings into FETCH responses as they are, and decodes the tree
 * (imapenv_tree_decode) to serve BODY[section] byte ranges with
 * mime_section() without reparsing the message.
 *
 * Rendering follows RFC 3501 7.4.2:
 *   - ENVELOPE (date subject from sender reply-to to cc bcc in-reply-to
 *     message-id).  Strings are the raw header values, unfolded, trimmed,
 *     NUL octets dropped, encoded words left encoded.  An absent header
 *     is NIL; sender and reply-to default to from when absent or empty.
 *     Addresses are (name adl mailbox host); a group is (NIL NIL "name" NIL)
 *     ... (NIL NIL NIL NIL).  An address without a domain gets host
 *     "MISSING_DOMAIN", without a local part mailbox "MISSING_MAILBOX"
 *     (as Dovecot); "<>" alone is dropped.  Without a display name the
 *     first comment is the name ("a@b (Ann)").
 *   - BODYSTRUCTURE / BODY: type, subtype, parameter names, encoding and
 *     disposition type in upper case (as RFC 3501's examples and Cyrus);
 *     parameter values, ids, descriptions as written.  No Content-Type
 *     (or an invalid one) is "TEXT" "PLAIN" ("CHARSET" "US-ASCII"); no
 *     Content-Transfer-Encoding is "7BIT".  Size is the raw body octets,
 *     lines the LF octets of the body.  BODYSTRUCTURE adds md5,
 *     disposition, language (always a list) and location to every part,
 *     and parameters, disposition, language, location to multiparts.
 *   - A string is a quoted string, or a literal {n}\r\n... when it holds
 *     CR, LF, 8-bit octets or is longer than 1024 octets.
 */
#ifndef CASTOR_STORE_IMAPENV_H
#define CASTOR_STORE_IMAPENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "store/mime.h"

struct imapenv {
	struct buf envelope;      /* "(...)" */
	struct buf bodystructure; /* extensible form, "(...)" */
	struct buf body;          /* non-extensible form (FETCH BODY), "(...)" */
	struct buf tree;          /* serialised part tree, binary (imapenv_tree_decode) */
};

/* Parse raw[0..len) and fill all four.  Never fails.  r need not be
 * initialised; free with imapenv_free(). */
void imapenv_build(const char *raw, size_t len, struct imapenv *r);
void imapenv_free(struct imapenv *r);

/* The pieces, for a tree from mime_parse() over the same raw octets. */
void imapenv_envelope(const struct mime_tree *t, const char *raw, uint32_t idx, struct buf *out);
void imapenv_bodystructure(const struct mime_tree *t, const char *raw, uint32_t idx,
	bool extended, struct buf *out);

/*
 * Serialised part tree, format version 1 (integers are unsigned LEB128
 * varints, at most 10 octets):
 *     'M' 0x01                      magic and version
 *     varint len                    octets of the message
 *     varint n                      entities, 1..MIME_MAX_PARTS
 *     n entries in pre-order:
 *         octet  kind | flags << 2  (enum mime_kind, MIME_PF_*)
 *         varint hdr_start
 *         varint body_start - hdr_start
 *         varint body_end - body_start
 *         varint nchildren
 * A valid tree: the root starts at 0 and ends at len; a leaf has no
 * children, a message exactly one, a multipart at least one; children lie
 * inside their parent's body, in order, not overlapping; nothing follows
 * the last entry.
 */
void imapenv_tree_encode(const struct mime_tree *t, struct buf *out);
/* Decode and validate; 0, or -1 with ERR_CORRUPT.  t->have_fields is
 * false (only the structure is stored).  Free with mime_tree_free(). */
int imapenv_tree_decode(const void *blob, size_t n, struct mime_tree *t, struct err *err);

/* The addresses of a From/To/Cc/Bcc value (raw, possibly folded) as
 * plain text for SEARCH: "name <mailbox@host>, ..." with comments and
 * folding removed and quoted strings unquoted ("a (c) @ b" is "<a@b>"),
 * a group as "name:" before its members.  Encoded words stay encoded. */
void imapenv_address_text(const char *value, size_t n, struct buf *out);

/* An IMAP string (quoted or literal), NUL octets dropped. */
void imapenv_put_string(struct buf *out, const char *s, size_t n);

#endif
