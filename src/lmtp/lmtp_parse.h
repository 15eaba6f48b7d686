/*
 * lmtp_parse.h - the LMTP command parser (RFC 2033 / 5321 / 1870 /
 * 6152 / 3030 / 6531), the DATA decoder and recipient-address splitting.
 * Pure functions without I/O, so they can be unit tested byte by byte
 * and fuzzed (fuzz/fuzz_lmtp.c).
 *
 * Commands are case-insensitive verbs followed by arguments:
 *     LHLO domain            MAIL FROM:<path> [SIZE=n] [BODY=7BIT|8BITMIME] [SMTPUTF8]
 *     RCPT TO:<path>         DATA   BDAT n [LAST]   RSET   NOOP [x]
 *     QUIT   VRFY x   STARTTLS   HELP [x]   (HELO/EHLO/EXPN are recognised
 *     so they can be refused with the right reply)
 * A path is "<" [source-route ":"] mailbox ">" ; "<>" is the null path
 * (MAIL only).  A blank after the colon ("MAIL FROM: <a@b>") is
 * tolerated, as Postfix and Cyrus do.  The mailbox is kept as written
 * (quotes included) in `path`, and as local part (unquoted) and domain.
 */
#ifndef CASTOR_LMTP_PARSE_H
#define CASTOR_LMTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define LMTP_LINE_MAX 2048       /* longest command line we read (RFC 5321 wants 512) */
#define LMTP_LOCAL_MAX 256       /* local part, unquoted */
#define LMTP_DOMAIN_MAX 255
#define LMTP_PATH_MAX (LMTP_LOCAL_MAX + LMTP_DOMAIN_MAX + 8)

enum lmtp_verb {
	LMTP_UNKNOWN = 0,
	LMTP_LHLO,
	LMTP_HELO,
	LMTP_EHLO,
	LMTP_MAIL,
	LMTP_RCPT,
	LMTP_DATA,
	LMTP_BDAT,
	LMTP_RSET,
	LMTP_NOOP,
	LMTP_QUIT,
	LMTP_VRFY,
	LMTP_EXPN,
	LMTP_HELP,
	LMTP_STARTTLS,
};

enum lmtp_body { LMTP_BODY_NONE = 0, LMTP_BODY_7BIT, LMTP_BODY_8BITMIME };

struct lmtp_cmd {
	enum lmtp_verb verb;
	/* LHLO domain, VRFY/EXPN/HELP/NOOP argument: points into the line */
	const char *arg;
	size_t arg_len;
	/* MAIL, RCPT */
	char path[LMTP_PATH_MAX + 1];     /* mailbox as written, "" for <> */
	char local[LMTP_LOCAL_MAX + 1];   /* local part, quotes removed */
	char domain[LMTP_DOMAIN_MAX + 1]; /* "" when the mailbox had none (<postmaster>) */
	bool has_size;
	uint64_t size;                    /* MAIL SIZE= */
	enum lmtp_body body;              /* MAIL BODY= */
	bool smtputf8;                    /* MAIL SMTPUTF8 (RFC 6531) */
	/* BDAT */
	uint64_t chunk;
	bool last;
};

/*
 * Parse one command line (without CRLF; it may hold any bytes).
 * Addresses may hold UTF-8 (RFC 6531, with or without SMTPUTF8 on MAIL:
 * we accept what a legacy client sends); 8-bit bytes that are not valid
 * UTF-8 make the address bad (501 5.1.7 / 5.1.3).
 * Returns 0 with *cmd filled, or -1 with the whole reply to send in
 * reply (code, enhanced code and text, no CRLF), e.g.
 *     500 5.5.2 Syntax error, command unrecognized
 *     501 5.5.4 Syntax: MAIL FROM:<address> [SIZE=n] [BODY=7BIT|8BITMIME]
 *     501 5.1.7 Bad sender address syntax
 *     501 5.1.3 Bad recipient address syntax
 *     555 5.5.4 Unsupported parameter ...
 * For BDAT, a failure with *cmd->verb == LMTP_BDAT and cmd->chunk
 * valid means "refuse but skip chunk bytes"; a BDAT whose size did
 * not parse leaves verb LMTP_BDAT and chunk UINT64_MAX.
 */
int lmtp_parse_command(const char *line, size_t len, struct lmtp_cmd *cmd, char *reply,
	size_t reply_size);

/*
 * DATA decoder: takes the bytes that follow "354" and yields the
 * message with dot-stuffing removed, stopping after the end marker
 * CRLF "." CRLF.  Only CRLF ends a line: a bare LF or CR is message
 * content (accepted as received), and ".\n" is not the end (no SMTP
 * smuggling).  Bytes beyond `limit` are counted but not stored, so an
 * oversized message is read to its end in bounded memory.
 */
struct lmtp_data {
	int state;
	uint64_t size;   /* message bytes decoded so far (stored or not) */
	bool done;       /* the end marker has been consumed */
};
void lmtp_data_init(struct lmtp_data *d);
/* Feed p[0..n): returns the number of bytes consumed (less than n
 * only when the end marker was reached: the rest belongs to the next
 * command).  Decoded bytes go to out while out->len < limit. */
size_t lmtp_data_feed(struct lmtp_data *d, const char *p, size_t n, struct buf *out, size_t limit);

/*
 * Split a recipient mailbox into login and detail: local part
 * "alice+lists" and domain "example.com" give login
 * "alice@example.com" and detail "lists" (the first '+' separates; no
 * '+' gives detail "").  The login then goes through
 * session_auth_user_canon(), which applies virtdomains and case folding, as
 * for a password login.  0, or -1 when a result does not fit.
 */
int lmtp_parse_rcpt_split(const char *local, const char *domain, char *login, size_t login_size,
	char *detail, size_t detail_size);

const char *lmtp_verb_name(enum lmtp_verb v);

#endif
