/*
 * maildirread.h - reading a Maildir (or one Maildir++ folder) for import.
 *
 * A Maildir is a directory holding cur/ and new/ (tmp/ is ignored: a
 * file there is a delivery in progress).  Each message is one file
 * named "UNIQUE" (new/) or "UNIQUE:2,FLAGS" (cur/); '!' is accepted in
 * place of ':' as some systems cannot use ':' in names.  FLAGS are
 * letters: S seen, R replied (\Answered), F flagged, T trashed
 * (\Deleted), D draft, P passed ($Forwarded); lower-case a..z are
 * keywords numbered in the folder's "dovecot-keywords" file
 * ("N name" per line, N = letter - 'a').  Unknown letters are ignored.
 * The internal date is the file's mtime.  Files whose names start with
 * '.' and anything that is not a regular file are skipped.
 *
 * maildirread_open() lists the messages sorted by (mtime, name), so an
 * import assigns UIDs in delivery order; maildirread_load() reads one
 * file, converting bare LF line ends to CRLF.
 */
#ifndef CASTOR_MAILDIRREAD_H
#define CASTOR_MAILDIRREAD_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/err.h"

enum {
	MAILDIR_F_SEEN = 1 << 0,
	MAILDIR_F_ANSWERED = 1 << 1,
	MAILDIR_F_FLAGGED = 1 << 2,
	MAILDIR_F_DELETED = 1 << 3,
	MAILDIR_F_DRAFT = 1 << 4,
	MAILDIR_F_PASSED = 1 << 5,  /* no IMAP system flag: imported as keyword $Forwarded */
};

#define MAILDIR_KEYWORDS 26

struct maildir_msg {
	char *path;         /* full path of the file */
	const char *name;   /* file name, inside path */
	int is_new;         /* 1 when in new/ */
	time_t mtime;
	uint64_t size;      /* bytes on disk (before CRLF conversion) */
	unsigned flags;     /* MAILDIR_F_* */
	uint32_t keywords;  /* bit i: keyword letter 'a'+i present */
};

struct maildir {
	char *dir;
	struct maildir_msg *msgs;
	size_t n;
	char *keywords[MAILDIR_KEYWORDS];  /* from dovecot-keywords; NULL when unnamed */
};

/* List the messages of the Maildir at dir.  ERR_NOTFOUND when dir does
 * not exist, ERR_INVALID when it has neither cur/ nor new/. */
int maildirread_open(const char *dir, struct maildir **md_r, struct err *err);
void maildirread_free(struct maildir **md);

/* Parse the flags of a file name (the part after ":2," / "!2,").
 * Names without an info part have no flags. */
void maildirread_parse_name(const char *name, unsigned *flags_r, uint32_t *keywords_r);

/* Parse the text of a dovecot-keywords file into names (malloc'd; the
 * caller frees the non-NULL entries).  Malformed lines are skipped, as
 * Dovecot does; returns the number of keywords named. */
int maildirread_parse_keywords(const char *text, size_t len, char *names[MAILDIR_KEYWORDS]);

/* Is s a keyword an IMAP client could have set (atom, no '\\')? */
int maildirread_valid_keyword(const char *s, size_t n);

/* Read one message into out (reset first), LF -> CRLF.  ERR_TOOBIG when
 * the result would exceed max bytes. */
int maildirread_load(const struct maildir_msg *m, size_t max, struct buf *out, struct err *err);

/* Convert in[0..n) to CRLF line ends, appending to out; `cr_pending`
 * carries a trailing CR between calls (init 0). */
void maildirread_crlf(const char *in, size_t n, int *cr_pending, struct buf *out);

#endif
