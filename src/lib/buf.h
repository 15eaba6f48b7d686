/*
 * buf.h - growable byte buffers that carry their length.
 *
 * A buf always keeps a NUL after its last byte, so buf_cstr() can hand
 * it to functions that want a C string, but the contents may contain
 * NULs themselves: `len` is the truth.  Growth aborts on allocation
 * failure (see xalloc.h).  A zeroed struct buf is a valid empty buffer.
 */
#ifndef CASTOR_BUF_H
#define CASTOR_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
	char *data;
	size_t len;
	size_t cap;
};

#define BUF_INIT { NULL, 0, 0 }

void buf_init(struct buf *b);
void buf_free(struct buf *b);
/* Make room for at least n more bytes. */
void buf_reserve(struct buf *b, size_t n);
void buf_reset(struct buf *b);
void buf_truncate(struct buf *b, size_t len);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
void buf_printf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Remove the first n bytes (n <= len). */
void buf_consume(struct buf *b, size_t n);
/* NUL-terminated view of the contents (never NULL). */
const char *buf_cstr(const struct buf *b);
/* Hand the storage to the caller (NUL-terminated, free() it); b becomes empty. */
char *buf_steal(struct buf *b);
/* Append s as an IMAP/sync-protocol string: atom-safe quoted string, or a
 * literal {n}\r\n... when it contains CR, LF, NUL, 8-bit or is long. */
void buf_put_astring(struct buf *b, const char *s, size_t n);
/* Append s as a quoted string, escaping " and \ (caller ensures no CR/LF). */
void buf_put_quoted(struct buf *b, const char *s, size_t n);

#endif
