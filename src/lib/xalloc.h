/*
 * xalloc.h - allocation that never returns NULL.
 *
 * Allocation failure is not a run-time condition we handle: the process
 * logs and aborts, and castord restarts the service.  Every allocation in
 * Castor goes through these.
 */
#ifndef CASTOR_XALLOC_H
#define CASTOR_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
/* realloc of an array, checking nmemb*size for overflow */
void *xreallocarray(void *p, size_t nmemb, size_t size);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
void *xmemdup(const void *p, size_t n);

/* Called once at start by long-running processes: keep freed heap
 * instead of giving it back to the kernel after every message (brk
 * shrink and grow per delivery cost TLB shootdowns on every core). */
void xalloc_tune(void);

#endif
