/*
 * syncdigest.h - the anti-entropy key of a user.
 *
 * A user's modseq counter alone cannot prove two servers agree: the
 * replica's counter is raised by whatever record arrives last, so a lost
 * hint for one mailbox can hide behind a later change to another.  The
 * digest covers the replicated state itself: a CRC-32C over
 *   - every live mailbox, ordered by uniqueid: uniqueid, name,
 *     uidvalidity, highestmodseq, sync checksum, special-use;
 *   - the subscribed names, in name order;
 *   - the SHA-256 of the password hash ("" without a password);
 *   - the quota limits.
 * Tombstones are left out (a mailbox created and deleted between two
 * passes never reaches the replica).  Both sides compute it with this
 * code; GET USERS carries it as DIGEST (docs/sync-protocol.md).  The
 * first two parts are the user's summary in users.db (store_summary.c),
 * so listing every user's digest opens no user database.
 */
#ifndef CASTOR_SYNCDIGEST_H
#define CASTOR_SYNCDIGEST_H

#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"
#include "store/store.h"

/* hash: the user's password hash (NULL none); quota as stored. */
int syncdigest_user(struct store_user *u, const char *hash, int64_t quota_bytes,
	int64_t quota_messages, uint32_t *digest_r, struct err *err);

/* store_user_info() plus the password hash (*hash_r malloc'd or NULL).
 * (store_user_info() does not return the hash; store_user_list() does.) */
int syncdigest_userinfo(struct store *st, const char *name, struct store_userinfo *ui_r,
	char **hash_r, struct err *err);

/* Open the user, compute its modseq and digest from the database and
 * write its summary back to users.db (the summary disagreed or was
 * unknown). */
int syncdigest_user_fresh(struct store *st, const char *name, const char *hash,
	int64_t quota_bytes, int64_t quota_messages, uint64_t *modseq_r, uint32_t *digest_r,
	struct err *err);

/* Every user with its modseq counter and digest, in byte order of name
 * (strcmp), from the users.db summaries; *opened_r (may be NULL) = user
 * databases that had to be opened (unknown summaries).  A damaged user
 * (ERR_DAMAGED, or marked damaged in users.db) is listed with modseq 0
 * and digest 0, never left out. */
typedef int (*syncdigest_fn)(void *ctx, const char *user, uint64_t modseq, uint32_t digest);
int syncdigest_users(struct store *st, syncdigest_fn fn, void *ctx, size_t *opened_r,
	struct err *err);

/* The sorted merge of anti-entropy: a[na] and b[nb] are sorted by
 * strcmp without duplicates; fn is called once per distinct name, in
 * order, with its index in a and in b (SIZE_MAX where absent).  O(na +
 * nb).  Stops at and returns the first non-zero fn result. */
typedef int (*syncdigest_merge_fn)(void *ctx, size_t ia, size_t ib);
int syncdigest_merge(const char *const *a, size_t na, const char *const *b, size_t nb,
	syncdigest_merge_fn fn, void *ctx);

#endif
