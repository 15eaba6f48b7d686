/*
 * syncapply.h - the replica side of the sync protocol ("brain"): takes
 * decoded command frames, applies them to the local store and writes the
 * answers.  No I/O of its own: syncd feeds it frames from a syncsess and
 * sends what it writes; unit tests and the fuzzer feed it directly.
 *
 * Session states: greeting -> (STARTTLS) -> AUTHENTICATE -> (COMPRESS) ->
 * HELLO -> commands.  Fencing (docs/sync-protocol.md section 5): every
 * RESERVE, UPLOAD and APPLY first checks that this server is a replica
 * whose stored epoch is not above the epoch the client announced.
 *
 * Group commit: consecutive UPLOADs for one user share one store
 * transaction.  Their OK answers are written to `out` at once but are not
 * final until syncapply_sync() committed the group: the caller must call
 * it before sending `out` (syncd does so whenever it is about to wait for
 * input).  If the commit fails, syncapply_sync() rewrites those answers
 * into NO.  An APPLY MAILBOX for the same user joins the group's
 * transaction (the bodies and the records they belong to: one commit, one
 * fsync); if that APPLY is refused, the APPLY alone is undone (savepoint)
 * and the group commits on its own, keeping its OKs; only when a commit
 * fails are its UPLOADs answered NO (CONFLICT rolled-back, or the commit's
 * error), to be sent again.  Every other command
 * commits an open group first.
 *
 * Failpoints (CASTOR_FAILPOINTS): syncd.upload.before_commit,
 * syncd.upload.after_commit, syncd.apply.before_commit,
 * syncd.apply.after_commit (after the commit, before the answer exists).
 */
#ifndef CASTOR_SYNCAPPLY_H
#define CASTOR_SYNCAPPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "store/store.h"
#include "sync/syncproto.h"

struct syncapply_opts {
	const char *servername;   /* SERVERID in HELLO (may be NULL) */
	const char *authname;     /* the only identity allowed in (NULL: "sync") */
	const char *password;     /* NULL: authname's users.db sync_auth credential */
	bool auth_allowed;        /* TLS, or loopback with allowplaintext_loopback */
	const char *auth_rule;    /* what allowed it, for the log ("tls", "loopback") */
	/* The shared authentication penalty (lib/authpen.h; NULL: none) and
	 * the peer, for its address key and the "auth failed" log line that
	 * contrib/fail2ban matches.  Not copied: must outlive the syncapply. */
	struct authpen *pen;
	const char *peer;         /* "192.0.2.1:4711" */
	const char *peer_addr;    /* "192.0.2.1" */
	bool starttls_possible;   /* a server TLS context exists and TLS is not on */
	bool compress_allowed;    /* COMPRESS ZSTD is offered */
	const struct syncproto_limits *limits; /* announced in the greeting (NULL: defaults) */
	/* This server's own sync_channels as "NAME=HOST:PORT", announced in
	 * the HELLO answer as CHANNELS (castorctl failover's preflight: a
	 * replica with no channel back would replicate to nobody once
	 * promoted).  Not copied: must outlive the syncapply. */
	const char *const *channels;
	size_t nchannels;
	/* Deletion thresholds (issue 8), the replica's backstop behind the
	 * master's own check (syncpush_set_delete_limits): within one session
	 * and one hour at most delete_limit mailbox deletions; per user at
	 * most delete_fraction of its live mailboxes once more than
	 * delete_fraction_min of them went; at most user_delete_limit users
	 * per hour over all sessions (<root>/run/syncd-unuser).  Refused with
	 * NO [PERM delete-limit] unless HELLO said ALLOW-DELETES 1.
	 * All 0: the defaults 50, 0.5, 4, 5; set_limits false keeps them. */
	bool set_limits;
	uint64_t delete_limit;
	double delete_fraction;
	uint64_t delete_fraction_min;
	uint64_t user_delete_limit;
};

enum syncapply_action {
	SYNCAPPLY_CONTINUE = 0,   /* carry on reading */
	SYNCAPPLY_CLOSE,          /* send out and close the connection (a BYE was written) */
	SYNCAPPLY_STARTTLS,       /* send out, run the TLS handshake, then syncapply_tls_started() */
	SYNCAPPLY_COMPRESS,       /* send out, then switch the session to zstd */
};

struct syncapply_stats {
	uint64_t commands;
	uint64_t uploads;          /* bodies stored */
	uint64_t upload_bytes;
	uint64_t applied;          /* APPLY commands that committed */
	uint64_t records;          /* records written by APPLY MAILBOX */
	uint64_t refused;          /* NO answers */
	uint64_t fenced;           /* NO [FENCED] answers */
	uint64_t conflicts;        /* NO [CONFLICT] answers */
	uint64_t group_commits;    /* upload groups committed */
};

struct syncapply;

/* The store must be writable (syncd opens it read-write even on a
 * replica: it is the one writer there).  opts is copied. */
struct syncapply *syncapply_new(struct store *st, const struct syncapply_opts *opts);
void syncapply_free(struct syncapply **a);

/* The greeting line ("* OK [CASTOR-SYNC (...)] ..."). */
void syncapply_greeting(struct syncapply *a, struct buf *out);

/* Handle one frame from the client; append the answers to out. */
enum syncapply_action syncapply_frame(struct syncapply *a, const struct syncproto_value *frame,
	struct buf *out);

/* A frame could not be decoded (err from syncsess_read/the decoder):
 * commit what is pending and write "* BYE [INVALID|TOOBIG] ...". */
void syncapply_protocol_error(struct syncapply *a, const struct err *err, struct buf *out);

/* Make every answer in out final: commit an open upload group. */
void syncapply_sync(struct syncapply *a, struct buf *out);
/* Is an upload group open (answers in out not final yet)?  A transport
 * whose input ran dry may wait a moment for more UPLOADs before it
 * calls syncapply_sync: bigger groups, fewer fsyncs. */
bool syncapply_group_open(const struct syncapply *a);

/* TLS is up: authentication becomes possible, the greeting is written
 * again (into out). */
void syncapply_tls_started(struct syncapply *a, struct buf *out);

/* Is the session authenticated / past HELLO (for logs and tests). */
bool syncapply_authenticated(const struct syncapply *a);
void syncapply_stats(const struct syncapply *a, struct syncapply_stats *s);
/* After a successful HELLO: true, the client's "SERVERID/CHANNEL" and
 * epoch; false before. */
bool syncapply_client(const struct syncapply *a, const char **id_r, uint64_t *epoch_r);

/* Render a flag word list for FLAGS: store's canonical string split into
 * values (shared with the client side). */
void syncapply_enc_flags(struct syncproto_enc *e, uint32_t sysflags, const char *keywords);
/* Parse a FLAGS list into system flags and canonical keywords.  0, or -1
 * with ERR_INVALID. */
int syncapply_parse_flags(const struct syncproto_value *list, uint32_t *sys_r, struct buf *kw_r,
	struct err *err);

#endif
