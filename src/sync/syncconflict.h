/*
 * syncconflict.h - the conflict policy of a channel (issue 8,
 * `sync_conflict: renumber | keep | replace`), plugged into syncpush as
 * its conflict hook by sync-client.
 *
 * What this version resolves: every conflict is logged once (user,
 * mailbox, UID, both GUIDs and modseqs, the policy and the action) and
 * remembered in <root>/run/sync-<chan>.conflicts so a later pass that
 * meets the same conflict logs it at debug level only ("warned once per
 * message").  Flags changed on both sides: the master's record is sent
 * (SYNCPUSH_R_MASTER, docs/replication.md "Flag merge").  Record-level
 * conflicts (guid, uid_above, replica_only_record, modseq_ahead) are
 * resolved by syncpush under renumber (the replica's messages appended
 * on the master, the replica made an exact copy) and replace (master
 * wins, losers quarantined on the replica); keep leaves them.  Name
 * clashes and uidvalidity follow the same policies; users and mailboxes
 * only the replica has are left alone under every policy; nothing is
 * ever deleted without a copy kept.
 *
 * File format (<root>/run/sync-<chan>.conflicts): text, one conflict a
 * line, "kind user mailbox uid master_guid replica_guid" ("-" for none),
 * appended, never rewritten.  Losing it only means one more warning.
 */
#ifndef CASTOR_SYNCCONFLICT_H
#define CASTOR_SYNCCONFLICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

#include "sync/syncpush.h"

enum syncconflict_policy {
	SYNCCONFLICT_RENUMBER = 0,
	SYNCCONFLICT_KEEP,
	SYNCCONFLICT_REPLACE,
};

/* "renumber" | "keep" | "replace" (NULL or "": renumber).  0, or -1 for
 * anything else. */
int syncconflict_parse_policy(const char *s, enum syncconflict_policy *p);
const char *syncconflict_policy_name(enum syncconflict_policy p);

struct syncconflict;
/* Loads the remembered conflicts of the channel (a missing file is
 * empty). */
struct syncconflict *syncconflict_new(const char *root, const char *channel,
	enum syncconflict_policy policy);
void syncconflict_free(struct syncconflict **c);

/* What policy p does with a conflict of kind k: FLAGS -> MERGE;
 * GUID, UID_ABOVE, REPLICA_RECORD, MODSEQ_AHEAD, NAME_CLASH, UIDVALIDITY ->
 * RENUMBER (renumber),
 * REPLACE (replace), LEAVE (keep); every other kind -> LEAVE. */
enum syncpush_resolution syncconflict_resolution(enum syncconflict_policy p,
	enum syncpush_conflict_kind k);
const char *syncconflict_action_name(enum syncpush_resolution r);

/*
 * Case 3, the flag merge of one message changed on both sides (docs/
 * replication.md "Flag merge").  base is the highest modseq at which
 * the two sides are known to have agreed (syncpush estimates it as the
 * highest modseq of the records that are identical on both sides): a
 * side whose record modseq is above it changed the record since.
 *   - only one side changed: its flags win whole;
 *   - both changed: flag by flag, a flag both sides have (or neither)
 *     stays so; a flag only one side has is one side's add against the
 *     other's removal, and the side whose record has the higher modseq
 *     wins it, the master on a tie.
 * Keywords are space separated (any order); *kw_r gets the result's
 * keywords (reset first).  Returns true when the result differs from
 * the master's flags (the master must write it).
 */
bool syncconflict_merge_flags(uint32_t m_sys, const char *m_kw, uint64_t m_modseq,
	uint32_t r_sys, const char *r_kw, uint64_t r_modseq, uint64_t base, uint32_t *sys_r,
	struct buf *kw_r);

/* The syncpush_conflict_fn: ctx is a struct syncconflict. */
enum syncpush_resolution syncconflict_hook(void *ctx, const struct syncpush_conflict *c);

/* Conflicts warned about (first time) since syncconflict_new. */
size_t syncconflict_warned(const struct syncconflict *c);

#endif
