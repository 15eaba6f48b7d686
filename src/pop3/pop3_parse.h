/*
 * pop3_parse.h - the POP3 command parser (RFC 1939, 2449, 2595, 5034)
 * and the message encoder for RETR/TOP.  Pure functions without I/O,
 * unit tested byte by byte and fuzzed (fuzz/fuzz_pop3.c).
 *
 * A command is a case-insensitive keyword, then arguments separated by
 * single blanks (several are tolerated).  Message numbers are decimal
 * digits only, 1 .. POP3_MSGNUM_MAX; TOP's line count is any decimal
 * (capped at UINT32_MAX).  PASS takes the rest of the line (a password
 * may contain blanks; RFC 1939 section 7 allows it).
 */
#ifndef CASTOR_POP3_PARSE_H
#define CASTOR_POP3_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#define POP3_LINE_MAX 4096          /* longest command line we read (AUTH responses) */
#define POP3_ARG_MAX 1024           /* USER name, PASS password */
#define POP3_MSGNUM_MAX 2147483647u

enum pop3_verb {
	POP3_UNKNOWN = 0,
	POP3_USER,
	POP3_PASS,
	POP3_APOP,
	POP3_AUTH,
	POP3_CAPA,
	POP3_STLS,
	POP3_STAT,
	POP3_LIST,
	POP3_UIDL,
	POP3_RETR,
	POP3_TOP,
	POP3_DELE,
	POP3_RSET,
	POP3_NOOP,
	POP3_QUIT,
};

struct pop3_cmd {
	enum pop3_verb verb;
	bool has_msg;             /* LIST/UIDL with an argument; always for RETR/TOP/DELE */
	uint32_t msg;             /* message number, >= 1 */
	uint32_t lines;           /* TOP */
	/* USER name, PASS password, AUTH mechanism: point into the line */
	const char *arg;
	size_t arg_len;
	/* AUTH initial response ("" absent; "=" is an empty response) */
	const char *arg2;
	size_t arg2_len;
};

/* Parse one line (without CRLF).  0 with *cmd filled, or -1 with the
 * text of an -ERR reply in why (without "-ERR "). */
int pop3_parse_command(const char *line, size_t len, struct pop3_cmd *cmd, char *why,
	size_t why_size);

const char *pop3_verb_name(enum pop3_verb v);

/*
 * Encode a stored message for RETR (body_lines < 0) or TOP n (the
 * header section, the empty line, then at most n body lines): lines are
 * sent with CRLF (a bare LF becomes CRLF), a line starting with '.'
 * gets another '.', a last line without line end gets one.  The
 * terminating ".\r\n" is NOT appended.  Output is appended to out.
 */
void pop3_parse_encode(struct buf *out, const char *msg, size_t len, int64_t body_lines);

#endif
