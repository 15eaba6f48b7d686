/*
 * store_repl.h - the split-brain primitives of replication (issue 8),
 * beside store_repl_record() of store.h: replacing a record whose UID
 * names another message, and keeping the losing message in
 * <root>/quarantine/ first.
 *
 * Quarantine format: the body as <root>/quarantine/<user>/<guid>
 * (written atomically, fsynced), and one line appended (fsynced) to
 * <root>/quarantine/manifest per message:
 *   time=<UTC ISO 8601> user=<u> mailbox=<uniqueid> name="<name>" uid=<n>
 *   guid=<sha1> size=<n> reason=<word>
 * Nothing ever removes either: an operator does, after looking.
 */
#ifndef CASTOR_STORE_REPL_H
#define CASTOR_STORE_REPL_H

#include <stdint.h>

#include "lib/err.h"
#include "store/store.h"

/* store_repl_record(), except that a different guid under an existing
 * uid replaces that record (the caller kept the old message: quarantine
 * or a fresh UID).  Checksum and quota usage stay exact. */
int store_repl_record_replace(struct store_user *u, const char *mailbox_id,
	const struct store_record *r, struct err *err);

/* Copy the live message under uid of the mailbox into the quarantine
 * (format above) and log it.  0 also when there is no live record under
 * that uid (nothing to keep); -1 with err. */
int store_repl_quarantine(struct store_user *u, const char *mailbox_id, uint32_t uid,
	const char *reason, struct err *err);

/* Case 4 (the same uniqueid, another uidvalidity on the master): every
 * live message of the mailbox is quarantined (store_repl_quarantine,
 * reason), then every record row is removed, so that store_repl_mailbox
 * may set the master's uidvalidity and the master's records follow as
 * for a creation.  0, or -1 with err (nothing removed). */
int store_repl_mailbox_reset(struct store_user *u, const char *mailbox_id, const char *reason,
	struct err *err);

/*
 * Delayed deletion (delete_hold_days).  A deleted mailbox stays in the
 * user's database as a tombstone with its records and bodies (what
 * castorctl undelete brings back); the deletion is noted in
 * <root>/deleted/<user>/<uniqueid>, one line:
 *   time=<unix seconds> user=<u> mailbox=<uniqueid> name="<name>"
 *   uidvalidity=<n> deleted_modseq=<n>
 * store_deleted_note writes it (atomically; every deletion path calls
 * it after its commit); store_deleted_forget removes it (undelete).  store_purge_deleted removes, for one user, every
 * tombstoned mailbox whose note is at least hold_seconds old (its
 * records, its row, bodies nothing else names, the note); a tombstone
 * without a note gets one dated now (its hold starts).  *purged_r and
 * *held_r count.  0, or -1 with err.
 */
int store_deleted_note(struct store_user *u, const struct store_mailbox *mb, int64_t when,
	struct err *err);
void store_deleted_forget(struct store_user *u, const char *uniqueid);
int store_purge_deleted(struct store_user *u, int64_t hold_seconds, int64_t now,
	size_t *purged_r, size_t *held_r, struct err *err);

#endif
