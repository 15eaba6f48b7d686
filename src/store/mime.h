/*
 * mime.h - the MIME part tree of a raw message, with exact octet offsets.
 *
 * mime_parse() scans a raw RFC 5322 / MIME message once and records every
 * entity (a header plus a body) in pre-order: the message itself, the
 * parts of each multipart, and the message encapsulated in each
 * message/rfc822 part.  Offsets index the raw octets as given, so IMAP
 * serves BODY[1.2], BODY[1.2.MIME], BODY[2.HEADER] ... as exact byte
 * ranges of the original without reparsing (see mime_section()).
 *
 * It never fails: malformed input (no blank line after the header, a
 * missing or never-seen boundary, a missing close delimiter, bare LF line
 * ends, NUL and 8-bit octets, absurd nesting) always yields a tree whose
 * ranges nest and lie inside the message.  The rules:
 *   - Line ends are LF with or without a CR before it.
 *   - A header ends after its first empty line; without one, at a
 *     delimiter line of an enclosing multipart or at the end of the data.
 *     Every other line before that belongs to the header.
 *   - A delimiter line starts with "--" + a boundary of any enclosing
 *     multipart (prefix match as Dovecot and Cyrus do; the longest
 *     boundary wins; "--" after it makes it a close delimiter).  The line
 *     end before a delimiter belongs to the delimiter (RFC 2046 5.1.1), so
 *     a part's body stops before that CRLF.
 *   - An outer delimiter, or the end of the data, ends every inner part
 *     (the inner multipart is flagged MIME_PF_TRUNCATED).
 *   - A multipart without a usable boundary parameter, or in which no
 *     delimiter of its own occurs, is a leaf with the RFC 2045 default
 *     type text/plain; charset=us-ascii (MIME_PF_CT_DEFAULT).
 *   - message/rfc822 with a base64/quoted-printable/unknown encoding, and
 *     a multipart or message/rfc822 below MIME_MAX_DEPTH or past
 *     MIME_MAX_PARTS, is an opaque leaf (application/octet-stream,
 *     MIME_PF_CT_OPAQUE).
 *   - The parts of a multipart/digest default to message/rfc822.
 *
 * Lines are counted as LF octets in the body range (what Cyrus and
 * Dovecot report as body-fld-lines); mime_count_lf() does it.
 */
#ifndef CASTOR_STORE_MIME_H
#define CASTOR_STORE_MIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define MIME_NONE UINT32_MAX
/* Entities below this depth (root = 0) are not descended into. */
#define MIME_MAX_DEPTH 50
/* At most this many entities per message; the rest is left unsplit. */
#define MIME_MAX_PARTS 10000

enum mime_kind {
	MIME_KIND_LEAF = 0,      /* anything not split further */
	MIME_KIND_MULTIPART = 1, /* children: its body parts, >= 1 */
	MIME_KIND_MESSAGE = 2,   /* message/rfc822: one child, the encapsulated message */
};

/* Part flags (stored in the serialised tree, 6 bits). */
#define MIME_PF_CT_DEFAULT 0x01 /* render as text/plain; charset=us-ascii */
#define MIME_PF_CT_DIGEST 0x02  /* no Content-Type in a multipart/digest: message/rfc822 */
#define MIME_PF_CT_OPAQUE 0x04  /* render as application/octet-stream */
#define MIME_PF_TRUNCATED 0x08  /* multipart without its close delimiter */
#define MIME_PF_CAPPED 0x10     /* depth or part-count cap applied here */

/* Header fields the scanner remembers (first occurrence of each). */
enum mime_hdr {
	MIME_H_CONTENT_TYPE = 0,
	MIME_H_CONTENT_TRANSFER_ENCODING,
	MIME_H_CONTENT_ID,
	MIME_H_CONTENT_DESCRIPTION,
	MIME_H_CONTENT_MD5,
	MIME_H_CONTENT_DISPOSITION,
	MIME_H_CONTENT_LANGUAGE,
	MIME_H_CONTENT_LOCATION,
	MIME_H_DATE,
	MIME_H_SUBJECT,
	MIME_H_FROM,
	MIME_H_SENDER,
	MIME_H_REPLY_TO,
	MIME_H_TO,
	MIME_H_CC,
	MIME_H_BCC,
	MIME_H_IN_REPLY_TO,
	MIME_H_MESSAGE_ID,
	MIME_H_COUNT
};

/* Raw value of a header field: the octets after the colon up to the end
 * of its last (continuation) line, without that line end. */
struct mime_span {
	size_t off;
	size_t len;
};

struct mime_part {
	size_t hdr_start;    /* first octet of the header */
	size_t body_start;   /* first octet of the body = end of the header (blank line included) */
	size_t body_end;     /* one past the last octet of the body */
	uint32_t parent;     /* index, MIME_NONE for the root */
	uint32_t first_child, last_child, next; /* indexes or MIME_NONE */
	uint32_t nchildren;
	uint16_t depth;      /* root = 0 */
	uint8_t kind;        /* enum mime_kind */
	uint8_t flags;       /* MIME_PF_* */
	uint32_t hdr_present; /* bit (1 << enum mime_hdr) when hdr[] is set */
	struct mime_span hdr[MIME_H_COUNT];
};

struct mime_tree {
	struct mime_part *parts; /* pre-order; parts[0] is the message */
	uint32_t nparts;
	uint32_t cap;
	size_t len;              /* length of the raw message */
	bool have_fields;        /* hdr[] filled (mime_parse), not (tree decoded from storage) */
};

/* Scan raw[0..len).  Never fails; t must be freed with mime_tree_free().
 * raw is not kept: pass the same octets to the functions that take raw. */
void mime_parse(struct mime_tree *t, const char *raw, size_t len);
void mime_tree_free(struct mime_tree *t);
/* Append a part (used by the tree decoder); returns its index. */
uint32_t mime_tree_add(struct mime_tree *t, uint32_t parent);

/* Is this entity's header an RFC 5322 message header (the root or the
 * message inside a message/rfc822 part) rather than a MIME part header? */
bool mime_is_message_level(const struct mime_tree *t, uint32_t idx);

/* ---- sections (RFC 3501 6.4.5 BODY[section]) ---- */

enum mime_sec {
	MIME_SEC_BODY,   /* BODY[] (empty path) or BODY[1.2] */
	MIME_SEC_HEADER, /* BODY[HEADER], BODY[2.HEADER]; also for HEADER.FIELDS (.NOT) */
	MIME_SEC_TEXT,   /* BODY[TEXT], BODY[2.TEXT] */
	MIME_SEC_MIME,   /* BODY[1.2.MIME] (path must not be empty) */
};

struct mime_range {
	size_t off;
	size_t len;
	uint32_t part; /* the entity the range belongs to */
};

/* Resolve a section: path = the part numbers (each >= 1), npath of them.
 * BODY with an empty path is the whole message; HEADER/TEXT with an
 * empty path are the message's own header/body; with a path they need
 * the part to be message/rfc822 and name the encapsulated message's
 * header/body.  Part 1 of a non-multipart message (top-level or
 * encapsulated) is that message's body.  Returns 0 and fills *r, or -1
 * when the part does not exist (IMAP then answers an empty string). */
int mime_section(const struct mime_tree *t, const uint32_t *path, size_t npath,
	enum mime_sec what, struct mime_range *r);

/* ---- header helpers ---- */

struct mime_field {
	size_t start;      /* first octet of the field line */
	size_t end;        /* one past its last line end (continuations included) */
	size_t name_off, name_len;   /* field name, trailing white space trimmed */
	size_t value_off, value_len; /* as struct mime_span */
};

/* Iterate the fields of the header hdr[0..len) (offsets relative to hdr),
 * stopping at the blank line.  Lines without a colon are skipped.
 * *pos starts at 0; returns false at the end. */
bool mime_header_next(const char *hdr, size_t len, size_t *pos, struct mime_field *f);

/* HEADER.FIELDS / HEADER.FIELDS.NOT: append to out the fields of the
 * header hdr[0..len) whose names are (exclude: are not) among names[0..n)
 * (case-insensitive), each with its continuation lines and original line
 * ends, then the blank line "\r\n" (RFC 3501 6.4.5). */
void mime_header_filter(const char *hdr, size_t len, const char *const *names, size_t n,
	bool exclude, struct buf *out);

/* Unfold a header value: drop the line ends of folded lines (CR LF or LF
 * followed by white space), NUL octets, and leading/trailing white space. */
void mime_unfold(const char *v, size_t n, struct buf *out);

/* ---- RFC 2045 structured values (Content-Type, Content-Disposition) ---- */

/* Skip white space, line ends and (nested) comments from *pos. */
void mime_skip_cfws(const char *v, size_t n, size_t *pos);
/* A token (RFC 2045, 8-bit octets tolerated) at *pos; false if none. */
bool mime_token(const char *v, size_t n, size_t *pos, size_t *off, size_t *len);

struct mime_ctype {
	const char *type;
	size_t type_len;
	const char *subtype;
	size_t subtype_len;
	size_t params_off; /* where the parameters start in the value */
};
/* Parse "type/subtype" at the start of a Content-Type value; false when it
 * is not there (RFC 2045 then says: text/plain; charset=us-ascii). */
bool mime_ctype_parse(const char *v, size_t n, struct mime_ctype *ct);

struct mime_param {
	const char *name;
	size_t name_len;
	const char *value; /* raw: inside the quotes when quoted, escapes kept */
	size_t value_len;
	bool quoted;
};
/* Next ";name=value" parameter from *pos (start at params_off, or after
 * the disposition type).  Tolerates junk (skipped to the next ';').
 * RFC 2231 names (name*, name*0*) are returned as they are. */
bool mime_param_next(const char *v, size_t n, size_t *pos, struct mime_param *p);
/* Append a parameter's value, unescaped when quoted; NULs dropped. */
void mime_param_value(const struct mime_param *p, struct buf *out);

/* Case-insensitive ASCII comparison of s[0..n) with the C string lit. */
bool mime_eq(const char *s, size_t n, const char *lit);
/* Number of LF octets in p[0..n). */
size_t mime_count_lf(const char *p, size_t n);

/* A caller that parses a message held in a read-only file mapping (a
 * large APPEND, store_append_tmp) declares it here; the body scanners
 * (mime_count_lf and the delimiter search) then give back the pages
 * behind them every MIME_RELEASE_STEP octets with MADV_DONTNEED, which
 * on a file mapping only drops them from the process (they are read
 * again from the page cache if needed), so the resident size stays
 * bounded whatever the size of the message.  Never declare anonymous
 * memory: it would be zeroed.  Per thread; mime_release_map(NULL, 0)
 * ends it. */
#define MIME_RELEASE_STEP (1024 * 1024)
void mime_release_map(const char *base, size_t len);

#endif
