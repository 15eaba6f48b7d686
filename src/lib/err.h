/*
 * err.h - error reports that carry a kind and a message.
 *
 * Run-time failures are returned, never printed deep in the library:
 * a function that can fail takes a `struct err *err` as its last
 * argument, returns -1 (or NULL) and fills it with err_set().  The
 * caller decides whether to log, retry or answer the client.  The kind
 * maps mechanically onto protocol replies (IMAP NO [...], LMTP 4xx/5xx).
 */
#ifndef CASTOR_ERR_H
#define CASTOR_ERR_H

#include <stdarg.h>
#include <stddef.h>

enum err_kind {
	ERR_NONE = 0,
	ERR_TEMP,      /* try again later: I/O trouble, lock timeout, peer down */
	ERR_PERM,      /* will never work: permission, policy, read-only */
	ERR_NOTFOUND,  /* named object does not exist */
	ERR_EXISTS,    /* object already exists */
	ERR_INVALID,   /* malformed input from a client or file */
	ERR_NOSPACE,   /* disk full */
	ERR_QUOTA,     /* user over quota */
	ERR_TOOBIG,    /* over a size limit */
	ERR_CORRUPT,   /* on-disk state is inconsistent */
	ERR_FENCED,    /* refused by role/epoch fencing */
	ERR_CONFLICT,  /* optimistic check failed (modseq, checksum) */
	ERR_DAMAGED,   /* a user that exists but whose database is missing, empty, unreadable
	                  or not its own: refused for now, never recreated (docs/store.md) */
};

#define ERR_MSG_MAX 512

struct err {
	enum err_kind kind;
	char msg[ERR_MSG_MAX];
};

/* Fill *err (if not NULL) and return -1, so that `return err_set(...)` works. */
int err_set(struct err *err, enum err_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
int err_setv(struct err *err, enum err_kind kind, const char *fmt, va_list ap);
/* Like err_set, appending ": strerror(errno)" and choosing ERR_NOSPACE for ENOSPC/EDQUOT. */
int err_errno(struct err *err, enum err_kind kind, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void err_clear(struct err *err);
/* Prefix the existing message with "what: " (keeps the kind). */
void err_prefix(struct err *err, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
const char *err_kind_name(enum err_kind kind);

#endif
