/*
 * syncproto.h - wire codec of the sync protocol (docs/sync-protocol.md).
 *
 * Decoder: bytes in, frames out.  A frame is one line with its literals,
 * returned as a tree of values (a SYNCPROTO_LIST of the line's top-level
 * values).  The decoder is incremental: it accepts its input split at any
 * byte, holds no socket and does no I/O, so the same code serves syncd,
 * sync-client, unit tests and the fuzzer.  Hard limits (line, literal,
 * frame, items, depth) are checked while reading, before anything is
 * built from the bytes; a frame that breaks the syntax or a limit is an
 * error with its exact byte offset, after which the decoder is dead (the
 * session ends: there is no knowing where the next frame starts).
 *
 * Encoder: values appended to a struct buf with the spacing rules of the
 * protocol, choosing atom, quoted string or literal for each string.
 *
 * Validation: command frames (client to server) and response frames
 * (server to client) are checked for shape before use: tag, command
 * name, argument types, kv-lists.
 */
#ifndef CASTOR_SYNCPROTO_H
#define CASTOR_SYNCPROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/err.h"

#define SYNCPROTO_VERSION 1

enum syncproto_type {
	SYNCPROTO_ATOM = 1,
	SYNCPROTO_NUMBER,    /* digits, optionally '-': num/neg hold it, str its text */
	SYNCPROTO_STRING,    /* quoted */
	SYNCPROTO_LITERAL,   /* {n} or {n+}; may contain NUL */
	SYNCPROTO_NIL,
	SYNCPROTO_LIST,      /* ( ... ) */
	SYNCPROTO_CODE,      /* [ ... ] */
};

struct syncproto_value {
	enum syncproto_type type;
	char *str;      /* ATOM NUMBER STRING LITERAL: the text, NUL-terminated */
	size_t len;     /* its length (the truth for literals) */
	uint64_t num;   /* NUMBER: magnitude */
	bool neg;       /* NUMBER: negative (value is -num, fits int64) */
	struct syncproto_value *items;   /* LIST CODE */
	size_t n, cap;
};

struct syncproto_limits {
	size_t max_line;      /* bytes of a frame outside literal data */
	size_t max_literal;   /* bytes of one literal */
	size_t max_frame;     /* bytes of a frame including literals */
	size_t max_items;     /* values in a frame (lists count) */
	unsigned max_depth;   /* nesting of lists and codes (at most 64) */
};

#define SYNCPROTO_MAX_LINE_DEFAULT (1024u * 1024)
#define SYNCPROTO_MAX_LITERAL_DEFAULT (256u * 1024 * 1024)
#define SYNCPROTO_MAX_FRAME_DEFAULT (SYNCPROTO_MAX_LITERAL_DEFAULT + 16u * 1024 * 1024)
#define SYNCPROTO_MAX_ITEMS_DEFAULT 200000u
#define SYNCPROTO_MAX_DEPTH_DEFAULT 16u
#define SYNCPROTO_TAG_MAX 64

void syncproto_limits_default(struct syncproto_limits *lim);

/* ------------------------------------------------------------------ */
/* Decoder                                                             */

struct syncproto_decoder;

/* lim NULL: the defaults.  Never fails. */
struct syncproto_decoder *syncproto_decoder_new(const struct syncproto_limits *lim);
void syncproto_decoder_free(struct syncproto_decoder **d);
/* Change the limits between frames (syncd raises them after login); the
 * nesting depth stays what the decoder was made with. */
void syncproto_decoder_set_limits(struct syncproto_decoder *d, const struct syncproto_limits *lim);

enum {
	SYNCPROTO_MORE = 0,      /* all input consumed, no frame complete yet */
	SYNCPROTO_FRAME = 1,     /* a frame is complete: syncproto_decoder_take() */
	SYNCPROTO_CONTINUE = 2,  /* a synchronising literal {n} was announced: the
	                            receiver sends a continuation ("+ ...") if it
	                            accepts it, then feeds the rest */
};

/*
 * Feed bytes.  Consumes input up to the end of the next frame (or of a
 * synchronising literal header) and stops there; *used_r gets the bytes
 * consumed, and the caller feeds the rest again after taking the frame.
 * Returns SYNCPROTO_MORE, SYNCPROTO_FRAME, SYNCPROTO_CONTINUE, or -1 with
 * err (ERR_INVALID syntax, ERR_TOOBIG a limit) saying what is wrong and
 * at which stream offset; after -1 every call fails the same way.  While
 * a complete frame waits to be taken, feed consumes nothing and returns
 * SYNCPROTO_FRAME again.
 */
int syncproto_decoder_feed(struct syncproto_decoder *d, const void *data, size_t len,
	size_t *used_r, struct err *err);

/* Take the completed frame (a SYNCPROTO_LIST; free it with
 * syncproto_value_free).  NULL when no frame is complete. */
struct syncproto_value *syncproto_decoder_take(struct syncproto_decoder *d);

/* Bytes consumed since the decoder was made (error offsets count from 0). */
uint64_t syncproto_decoder_offset(const struct syncproto_decoder *d);

/* Decode exactly one frame from a buffer that must hold it whole
 * (tests, tools).  NULL with err on error or trailing bytes. */
struct syncproto_value *syncproto_decode_one(const void *data, size_t len,
	const struct syncproto_limits *lim, struct err *err);

void syncproto_value_free(struct syncproto_value **v);

/* ------------------------------------------------------------------ */
/* Looking at values                                                   */

/* ATOM whose text equals word (case-insensitive). */
bool syncproto_is_atom(const struct syncproto_value *v, const char *word);
/* ATOM, NUMBER, STRING or LITERAL: something with a text. */
bool syncproto_is_text(const struct syncproto_value *v);
/* 0 and *out for a non-negative NUMBER, else -1. */
int syncproto_get_u64(const struct syncproto_value *v, uint64_t *out);
/* 0 and *out for a NUMBER that fits int64, else -1. */
int syncproto_get_i64(const struct syncproto_value *v, int64_t *out);
/* Text of a text value without NUL bytes; NULL otherwise. */
const char *syncproto_get_cstr(const struct syncproto_value *v);
/* n lower-case hex digits (a UNIQUEID is 32, a GUID 40)? */
bool syncproto_is_hex(const struct syncproto_value *v, size_t n);

/* A kv-list: a LIST of an even number of items, keys ATOMs, no key twice
 * (case-insensitive).  0, or -1 with ERR_INVALID saying what is wrong. */
int syncproto_kv_check(const struct syncproto_value *kv, struct err *err);
/* The value of key in a kv-list (first match, case-insensitive), NULL
 * when absent.  A NIL value is returned as such. */
const struct syncproto_value *syncproto_kv_get(const struct syncproto_value *kv, const char *key);
/* Typed lookups: 1 found, 0 absent or NIL, -1 present with the wrong type
 * (ERR_INVALID naming the key). */
int syncproto_kv_u64(const struct syncproto_value *kv, const char *key, uint64_t *out,
	struct err *err);
int syncproto_kv_i64(const struct syncproto_value *kv, const char *key, int64_t *out,
	struct err *err);
int syncproto_kv_cstr(const struct syncproto_value *kv, const char *key, const char **out,
	struct err *err);
int syncproto_kv_list(const struct syncproto_value *kv, const char *key,
	const struct syncproto_value **out, struct err *err);

/* Error codes on the wire: the err_kind names upper-cased ("TEMP",
 * "CONFLICT", ...).  NULL for ERR_NONE; ERR_NONE for an unknown name. */
const char *syncproto_code_name(enum err_kind kind);
enum err_kind syncproto_code_kind(const char *name);

/* ------------------------------------------------------------------ */
/* Commands (client to server)                                         */

enum syncproto_cmd {
	SYNCPROTO_CMD_NOOP = 1,
	SYNCPROTO_CMD_LOGOUT,
	SYNCPROTO_CMD_STARTTLS,
	SYNCPROTO_CMD_AUTHENTICATE,   /* mechanism, initial response */
	SYNCPROTO_CMD_COMPRESS,       /* algorithm */
	SYNCPROTO_CMD_HELLO,          /* kv */
	SYNCPROTO_CMD_GET_USERS,
	SYNCPROTO_CMD_GET_USER,       /* user */
	SYNCPROTO_CMD_GET_RECORDS,    /* user, uniqueid, since */
	SYNCPROTO_CMD_GET_BLOB,       /* user, guid */
	SYNCPROTO_CMD_RESERVE,        /* user, (guid ...) */
	SYNCPROTO_CMD_UPLOAD,         /* user, guid, body */
	SYNCPROTO_CMD_APPLY_MAILBOX,  /* user, kv */
	SYNCPROTO_CMD_APPLY_RENAME,   /* user, kv */
	SYNCPROTO_CMD_APPLY_DELETE,   /* user, kv */
	SYNCPROTO_CMD_APPLY_SEEN,     /* user, kv */
	SYNCPROTO_CMD_APPLY_SUB,      /* user, kv */
	SYNCPROTO_CMD_APPLY_USER,     /* user, kv */
	SYNCPROTO_CMD_APPLY_UNUSER,   /* user, kv */
	SYNCPROTO_CMD_APPLY_PASSWORD, /* user, kv */
	SYNCPROTO_CMD_PROMOTE,        /* epoch */
};

struct syncproto_command {
	const char *tag;                       /* NULL if the frame had no usable tag */
	enum syncproto_cmd cmd;
	const char *name;                      /* "APPLY MAILBOX" */
	const struct syncproto_value *args;    /* the arguments after the name */
	size_t nargs;
};

/*
 * Check a client frame: a tag (an atom or number of at most
 * SYNCPROTO_TAG_MAX bytes, not "*" or "+"), a known command, and
 * arguments of the right number and types (user names 1..255 bytes
 * without control characters, UNIQUEIDs 32 and GUIDs 40 lower-case hex
 * digits, numbers non-negative, kv-lists well formed, GUID lists at most
 * max_items long).  0 with *cmd filled (pointing into frame), or -1 with
 * ERR_INVALID; cmd->tag is then still set when the tag was usable, so the
 * answer can be "tag BAD [INVALID] ...".
 */
int syncproto_command_parse(const struct syncproto_value *frame, struct syncproto_command *cmd,
	struct err *err);

/* ------------------------------------------------------------------ */
/* Responses (server to client)                                        */

enum syncproto_resp {
	SYNCPROTO_RESP_OK = 1,
	SYNCPROTO_RESP_NO,
	SYNCPROTO_RESP_BAD,
	SYNCPROTO_RESP_BYE,
	SYNCPROTO_RESP_DATA,       /* untagged data: "* NAME args..." */
	SYNCPROTO_RESP_CONTINUE,   /* "+ ..." */
};

struct syncproto_response {
	enum syncproto_resp kind;
	const char *tag;                       /* NULL when untagged or continuation */
	const struct syncproto_value *code;    /* the [ ] code, or NULL */
	enum err_kind code_kind;               /* its first atom as an error kind, or ERR_NONE */
	const char *text;                      /* human text, or NULL */
	const char *data;                      /* DATA: the name ("MAILBOX") */
	const struct syncproto_value *args;    /* DATA: values after the name */
	size_t nargs;
};

/* Check a server frame and classify it.  0, or -1 with ERR_INVALID. */
int syncproto_response_parse(const struct syncproto_value *frame, struct syncproto_response *r,
	struct err *err);

/* ------------------------------------------------------------------ */
/* Encoder                                                             */

#define SYNCPROTO_ENC_LITERAL_PLUS 0x1u   /* write {n+} (client) instead of {n} */

struct syncproto_enc {
	struct buf *out;
	unsigned flags;
	unsigned depth;       /* open lists (at most 64) */
	uint64_t brackets;    /* bit i set: level i was opened with '[' */
	bool need_sp;
};

void syncproto_enc_init(struct syncproto_enc *e, struct buf *out, unsigned flags);
/* An atom as given; the caller guarantees atom characters only (asserts). */
void syncproto_enc_atom(struct syncproto_enc *e, const char *atom);
void syncproto_enc_u64(struct syncproto_enc *e, uint64_t n);
void syncproto_enc_i64(struct syncproto_enc *e, int64_t n);
void syncproto_enc_nil(struct syncproto_enc *e);
/* A string: an atom when atom-safe, at most 1024 bytes and not NIL or
 * number-like; a quoted string when free of NUL/CR/LF and at most 4096
 * bytes; else a literal. */
void syncproto_enc_string(struct syncproto_enc *e, const char *s, size_t n);
void syncproto_enc_cstring(struct syncproto_enc *e, const char *s);
/* Always a literal (message bodies). */
void syncproto_enc_literal(struct syncproto_enc *e, const void *p, size_t n);
/* '(' or '[' opens, close ends the innermost. */
void syncproto_enc_open(struct syncproto_enc *e, char bracket);
void syncproto_enc_close(struct syncproto_enc *e);
/* Key and value of a kv-list. */
void syncproto_enc_key_u64(struct syncproto_enc *e, const char *key, uint64_t n);
void syncproto_enc_key_string(struct syncproto_enc *e, const char *key, const char *s);
/* A quota limit: the number, or NIL for "the server's default" (q < 0). */
void syncproto_enc_key_quota(struct syncproto_enc *e, const char *key, int64_t q);
/* PASSWORD-SHA256: hex of SHA-256 over a stored password hash, so the two
 * sides compare hashes without sending them (65 bytes with the NUL). */
void syncproto_password_digest(const char *hash, char hex[65]);
/* A decoded value, re-encoded (its text for numbers and atoms; strings by
 * the rules of syncproto_enc_string). */
void syncproto_enc_value(struct syncproto_enc *e, const struct syncproto_value *v);
/* End the frame: CRLF.  All lists must be closed. */
void syncproto_enc_end(struct syncproto_enc *e);

/* A whole status line: "<tag|*> <status> [<CODE> <detail>] <text>\r\n".
 * kind ERR_NONE: no code; detail NULL: none; text NULL: none. */
void syncproto_put_status(struct buf *out, const char *tag, const char *status,
	enum err_kind kind, const char *detail, const char *text);

#endif
