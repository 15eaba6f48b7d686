/*
 * str.h - string helpers with explicit bounds.
 *
 * No strcpy/strcat/sprintf in Castor: use str_lcpy, buf_printf or
 * snprintf with a checked result.
 */
#ifndef CASTOR_STR_H
#define CASTOR_STR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Copy at most size-1 bytes and NUL-terminate; return strlen(src) (truncated if >= size). */
size_t str_lcpy(char *dst, const char *src, size_t size);
/* snprintf that returns -1 on truncation or error, else the length. */
int str_fmt(char *dst, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool str_has_prefix(const char *s, const char *prefix);
bool str_has_prefix_ci(const char *s, const char *prefix);
bool str_has_suffix(const char *s, const char *suffix);
bool str_eq(const char *a, const char *b);
bool str_eq_ci(const char *a, const char *b);
/* ASCII-only case folding (locale-independent). */
char str_lower_c(char c);
char str_upper_c(char c);
void str_lower(char *s);
void str_upper(char *s);
/* Strip leading/trailing ASCII white space in place; returns s. */
char *str_trim(char *s);
/* Parse a whole string as a number in [min,max]; 0 on success, -1 otherwise. */
int str_to_u64(const char *s, uint64_t *out);
int str_to_u32(const char *s, uint32_t *out);
int str_to_i64_range(const char *s, int64_t min, int64_t max, int64_t *out);
/* Lower-case hex of n bytes into out (2n+1 bytes). */
void str_hex(const unsigned char *in, size_t n, char *out);
/* Constant-time comparison of two byte strings. */
bool str_ct_eq(const void *a, size_t alen, const void *b, size_t blen);
/* Does [p, p+n) contain c? */
bool str_mem_has(const char *p, size_t n, char c);

#endif
