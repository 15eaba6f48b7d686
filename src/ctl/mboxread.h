/*
 * mboxread.h - streaming reader for mbox files (mboxrd and mboxo).
 *
 * The reader is push-driven: feed it the file in chunks of any size
 * (one byte at a time gives the same result as the whole file at once)
 * and it calls back once per message.  It never holds more than the
 * current message and the current line, each bounded by `max_msg`.
 *
 * Format accepted (RFC 4155 and the de-facto variants):
 *   - a message starts with a separator line "From SENDER DATE";
 *     leading blank lines before the first separator are skipped, any
 *     other first line makes the file "not an mbox";
 *   - a later line starting with "From " is a separator when it parses
 *     as "From SENDER DATE" (asctime date), blank line before it or not;
 *     otherwise it is body text (an unquoted "From " in a body written
 *     by a careless program), as mutt and Dovecot read it;
 *   - the one blank line just before a separator, and the one at the
 *     end of the file, belong to the mbox framing, not the message;
 *   - quoting: mboxrd removes one '>' from lines matching ^>+From ;
 *     mboxo removes one '>' from lines matching ^>From  only;
 *   - lines end in LF or CRLF (mixed is fine).  Messages are handed out
 *     with every line ending in CRLF, the form IMAP serves and the form
 *     whose SHA-1 is the message GUID.
 *
 * Errors (the callback's error, or the reader's): ERR_INVALID "not an
 * mbox" / "empty message", ERR_TOOBIG when a message exceeds max_msg;
 * messages name the line number of the separator.
 */
#ifndef CASTOR_MBOXREAD_H
#define CASTOR_MBOXREAD_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/err.h"

enum mboxread_format {
	MBOXREAD_MBOXRD = 0,  /* default: ^>+From  loses one '>' */
	MBOXREAD_MBOXO,       /* only ^>From  loses its '>' */
};

struct mboxread_msg {
	const char *data;     /* the message, CRLF line endings, unquoted */
	size_t len;
	const char *sender;   /* from the separator line ("" if none) */
	time_t date;          /* from the separator line, UTC; -1 if unparsable */
	uint64_t line;        /* 1-based line number of the separator */
	uint64_t offset;      /* byte offset of the separator in the input */
	uint64_t index;       /* 0-based message number */
};

/* Called once per complete message; return 0 to go on, -1 (with err) to stop. */
typedef int mboxread_cb(const struct mboxread_msg *msg, void *ctx, struct err *err);

struct mboxread;

struct mboxread *mboxread_new(enum mboxread_format fmt, size_t max_msg, mboxread_cb *cb, void *ctx);
/* Feed the next chunk.  0 ok, -1 on error (the reader is then unusable). */
int mboxread_feed(struct mboxread *r, const void *data, size_t len, struct err *err);
/* End of input: flush the last message.  0 ok, -1 on error.  An input
 * with no message at all is ERR_INVALID ("no messages"), unless it is
 * completely empty (0 bytes), which is zero messages and fine. */
int mboxread_finish(struct mboxread *r, struct err *err);
/* Messages delivered so far, and bytes consumed. */
uint64_t mboxread_count(const struct mboxread *r);
uint64_t mboxread_offset(const struct mboxread *r);
void mboxread_free(struct mboxread **r);

/* Parse the rest of a separator line (after "From ") into sender and
 * date.  Returns 0 when a date was found (then *date_r is set), -1
 * otherwise.  sender_r receives the first word (bounded, NUL-terminated). */
int mboxread_parse_from(const char *s, size_t n, char *sender_r, size_t sender_size, time_t *date_r);

/* Read a whole mbox file through the reader: open, feed in 64 KiB
 * chunks, finish.  Convenience for the importer and the tests. */
int mboxread_file(const char *path, enum mboxread_format fmt, size_t max_msg,
    mboxread_cb *cb, void *ctx, struct err *err);

#endif
