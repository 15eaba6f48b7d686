/*
 * err.c - error reports that carry a kind and a message.  See err.h.
 */
#include "lib/err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

int
err_setv(struct err *err, enum err_kind kind, const char *fmt, va_list ap)
{
	if (err == NULL)
		return -1;
	err->kind = kind;
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	return -1;
}

int
err_set(struct err *err, enum err_kind kind, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	err_setv(err, kind, fmt, ap);
	va_end(ap);
	return -1;
}

int
err_errno(struct err *err, enum err_kind kind, const char *fmt, ...)
{
	int saved = errno;
	va_list ap;
	size_t n;

	if (err == NULL)
		return -1;
	if (saved == ENOSPC || saved == EDQUOT)
		kind = ERR_NOSPACE;
	va_start(ap, fmt);
	err_setv(err, kind, fmt, ap);
	va_end(ap);
	n = strlen(err->msg);
	snprintf(err->msg + n, sizeof(err->msg) - n, ": %s", strerror(saved));
	errno = saved;
	return -1;
}

void
err_clear(struct err *err)
{
	if (err == NULL)
		return;
	err->kind = ERR_NONE;
	err->msg[0] = '\0';
}

void
err_prefix(struct err *err, const char *fmt, ...)
{
	char old[ERR_MSG_MAX];
	char pre[ERR_MSG_MAX];
	va_list ap;

	if (err == NULL)
		return;
	memcpy(old, err->msg, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(pre, sizeof(pre), fmt, ap);
	va_end(ap);
	snprintf(err->msg, sizeof(err->msg), "%s: %s", pre, old);
}

const char *
err_kind_name(enum err_kind kind)
{
	switch (kind) {
	case ERR_NONE: return "none";
	case ERR_TEMP: return "temp";
	case ERR_PERM: return "perm";
	case ERR_NOTFOUND: return "notfound";
	case ERR_EXISTS: return "exists";
	case ERR_INVALID: return "invalid";
	case ERR_NOSPACE: return "nospace";
	case ERR_QUOTA: return "quota";
	case ERR_TOOBIG: return "toobig";
	case ERR_CORRUPT: return "corrupt";
	case ERR_FENCED: return "fenced";
	case ERR_CONFLICT: return "conflict";
	case ERR_DAMAGED: return "damaged";
	}
	return "unknown";
}
