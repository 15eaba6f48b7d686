/*
 * syncpark.h - the users a replication channel has set aside ("parked").
 *
 * A change the replica refuses for one user (delete-limit, INBOX cannot
 * be deleted, a damaged user) parks that user: its log records are
 * skipped while every other user goes on, and the user is re-synced in
 * full when released (castorctl sync --allow-deletes CHAN [USER]) or when
 * a retry with backoff succeeds.  The list survives restarts in
 * <root>/sync/parked/<chan>, replaced atomically (lib/atomicfile) at
 * every change; sync-client writes it, castorctl status reads it.
 *
 * Format: a first line "castor-parked 1", then one line per user:
 *     USER TAB SINCE_MS TAB RETRY_MS TAB BACKOFF_MS TAB REASON
 * (times in unix milliseconds; REASON has no TAB, CR or LF).  A file that
 * does not parse is reported (ERR_CORRUPT) and treated as empty by
 * sync-client: the users in it are caught by the next anti-entropy pass.
 */
#ifndef CASTOR_SYNCPARK_H
#define CASTOR_SYNCPARK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/err.h"

struct syncpark_entry {
	char *user;
	char *reason;
	uint64_t since_ms;       /* parked since */
	uint64_t retry_ms;       /* next retry due */
	uint64_t backoff_ms;     /* the wait before that retry */
	bool trying;             /* a retry or release runs for it right now (not saved) */
};

struct syncpark {
	struct syncpark_entry *v;
	size_t n, cap;
};

void syncpark_path(const char *root, const char *chan, struct buf *out);
/* 0 (a missing file is an empty list), or -1 with err (*pk left empty). */
int syncpark_load(const char *root, const char *chan, struct syncpark *pk, struct err *err);
/* Replace the file (removed when the list is empty).  0 or -1. */
int syncpark_save(const char *root, const char *chan, const struct syncpark *pk, struct err *err);
struct syncpark_entry *syncpark_find(struct syncpark *pk, const char *user);
/* Add (or return the existing entry untouched; *added_r tells which). */
struct syncpark_entry *syncpark_add(struct syncpark *pk, const char *user, const char *reason,
	uint64_t now_ms, uint64_t backoff_ms, bool *added_r);
void syncpark_set_reason(struct syncpark_entry *e, const char *reason);
void syncpark_remove(struct syncpark *pk, const char *user);
void syncpark_clear(struct syncpark *pk);

#endif
