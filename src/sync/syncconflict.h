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
 * (SYNCPUSH_R_MASTER, docs/replication.md "Flag merge").  Every other
 * kind is left alone on both sides under every policy for now: renumber
 * and replace need the record-level repair of issue 8 (fetch the
 * replica's message, append it here with a fresh UID, overwrite the
 * replica's UID), which is not built yet; nothing is ever deleted.
 *
 * File format (<root>/run/sync-<chan>.conflicts): text, one conflict a
 * line, "kind user mailbox uid master_guid replica_guid" ("-" for none),
 * appended, never rewritten.  Losing it only means one more warning.
 */
#ifndef CASTOR_SYNCCONFLICT_H
#define CASTOR_SYNCCONFLICT_H

#include <stddef.h>

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

/* The syncpush_conflict_fn: ctx is a struct syncconflict. */
enum syncpush_resolution syncconflict_hook(void *ctx, const struct syncpush_conflict *c);

/* Conflicts warned about (first time) since syncconflict_new. */
size_t syncconflict_warned(const struct syncconflict *c);

#endif
