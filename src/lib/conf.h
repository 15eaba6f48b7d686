/*
 * conf.h - castor.conf: settings as "key: value" lines (like imapd.conf).
 *
 * Grammar: one setting per line, "key: value".  Blank lines and lines
 * whose first non-blank character is '#' are ignored.  Keys are
 * [a-z0-9_]+ (case-insensitive, stored lower-case); the value is the
 * rest of the line with surrounding blanks removed (may be empty).
 * A key given twice is an error.  Any syntax error rejects the whole
 * file with "FILE:LINE:COL: reason".
 *
 * Known keys are listed in conf_keys.c with their type; a known key
 * whose value does not parse as its type is an error at load time, an
 * unknown key is logged as a warning (but kept, so getters still see
 * it).  Per-channel keys such as "<chan>_sync_host" are matched by
 * suffix.
 *
 * Relative paths from conf_get_path() are resolved against the
 * directory of the configuration file (the server root).
 */
#ifndef CASTOR_CONF_H
#define CASTOR_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

struct conf;

enum conf_type {
	CONF_STRING,
	CONF_INT,      /* signed decimal */
	CONF_BOOL,     /* yes/no, on/off, true/false, 1/0 */
	CONF_DURATION, /* "10" (seconds), "500ms", "10s", "5m", "2h", "7d" */
	CONF_BYTES,    /* "1024", "64k", "64M", "1G" (powers of 1024) */
	CONF_PATH,     /* string; relative to the config directory */
	CONF_ENUM,     /* one of a '|'-separated list in `choices` */
	CONF_LIST,     /* blank-separated words */
	CONF_FLOAT,    /* decimal number: "0.5", "2", "-1.25" (no exponent) */
};

struct conf_key {
	const char *name;        /* "sync_mode"; "*_sync_host" matches by suffix */
	enum conf_type type;
	const char *choices;     /* CONF_ENUM only: "async|semisync" */
	const char *help;        /* one line, for docs and warnings */
};

/* The table of known keys (conf_keys.c), terminated by a {NULL} entry. */
extern const struct conf_key conf_known_keys[];

/* Load and validate a file.  NULL and err filled ("FILE:LINE:COL: reason") on error. */
struct conf *conf_load(const char *path, struct err *err);
/* Same, from memory; `name` is used in messages in place of the file name,
 * and as the base directory for relative paths (its dirname). */
struct conf *conf_parse(const char *text, size_t len, const char *name, struct err *err);
void conf_free(struct conf *conf);

/* The file it came from, and its directory (the server root). */
const char *conf_filename(const struct conf *conf);
const char *conf_dir(const struct conf *conf);

bool conf_has(const struct conf *conf, const char *key);
/* Getters return `def` when the key is absent.  Values of known keys were
 * validated at load; for an unknown or mistyped key the default is returned
 * and a warning logged once. */
const char *conf_get_str(const struct conf *conf, const char *key, const char *def);
int64_t conf_get_int(const struct conf *conf, const char *key, int64_t def);
bool conf_get_bool(const struct conf *conf, const char *key, bool def);
/* Duration in milliseconds. */
int64_t conf_get_duration_ms(const struct conf *conf, const char *key, int64_t def_ms);
uint64_t conf_get_bytes(const struct conf *conf, const char *key, uint64_t def);
/* Returns a malloc'd absolute path (def resolved the same way), or NULL if
 * absent and def is NULL.  An empty value counts as absent. */
char *conf_get_path(const struct conf *conf, const char *key, const char *def);

/* Iterate over all settings in file order: i from 0 until it returns false. */
bool conf_iter(const struct conf *conf, size_t i, const char **key_r, const char **value_r);

/* Value parsers shared with other readers (0 ok, -1 malformed). */
int conf_parse_bool(const char *s, bool *out);
int conf_parse_duration_ms(const char *s, int64_t *out);
int conf_parse_bytes(const char *s, uint64_t *out);

/* --- additions --- */

/* CONF_FLOAT getter and parser (0 ok, -1 malformed). */
double conf_get_double(const struct conf *conf, const char *key, double def);
int conf_parse_double(const char *s, double *out);
/* CONF_LIST getter: the value split on blanks, as a NULL-terminated
 * malloc'd vector (never NULL; empty when the key is absent).  *n_r (if
 * not NULL) gets the count.  Free with conf_list_free(). */
char **conf_get_list(const struct conf *conf, const char *key, size_t *n_r);
void conf_list_free(char **list);
/* The row of conf_known_keys[] that describes `key` (exact name first,
 * then "*_suffix" rows), or NULL for an unknown key. */
const struct conf_key *conf_key_lookup(const char *key);

/* Limits and helpers shared by the config readers (conf.c, servicesconf.c). */
#define CONF_LINE_MAX 4096              /* bytes per line, without the newline */
#define CONF_FILE_MAX (16u * 1024 * 1024)
/* Check the bytes of one line (without its newline): no NUL, no control
 * characters but tab, valid UTF-8, at most CONF_LINE_MAX bytes.  0 if
 * fine; else -1 with *off_r the offset of the offending byte and a reason
 * in `why`. */
int conf_line_check(const char *line, size_t len, size_t *off_r, char *why, size_t why_size);
/* Read a whole regular file (at most CONF_FILE_MAX bytes) into a malloc'd,
 * NUL-terminated buffer.  0 ok; -1 with err ("FILE: reason"). */
int conf_read_file(const char *path, char **data_r, size_t *len_r, struct err *err);
/* Render p[0..n) for an error message: printable ASCII as is, other bytes
 * as \xNN, cut at 40 bytes with "...".  Returns out. */
const char *conf_show(const char *p, size_t n, char *out, size_t size);

#endif
