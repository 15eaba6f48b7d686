/*
 * authpen.h - the authentication penalty table: a small fixed-size file
 * shared by every process of a server (imapd, pop3d, syncd), mapped into
 * each, that spaces out password attempts per user name and per client
 * address after failures.  No daemon: each process locks the file for
 * a few microseconds to take its turn, and sleeps without the lock.
 *
 *     struct authpen *p = authpen_open("ROOT/run/authpen", max_ms, decay_ms, &err);
 *     struct authpen_turn t;
 *     authpen_begin(p, "alice", "192.0.2.7", &t, &err);
 *     t.throttled: refuse without checking the password
 *     else sleep t.wait_ms, check the password, then
 *     authpen_end(p, "alice", "192.0.2.7", ok);
 *
 * The rule, per key (a user name, an address): every attempt counts as a
 * failure when it begins (so 16 parallel attempts cannot all start with
 * a clean record) and takes the next turn: the previous turn plus a gap
 * of 0 ms while fewer than 2 failures are recorded, then 1 s, 2 s, 4 s
 * ... up to max_ms.  An attempt whose turn is more than max_ms away is
 * throttled: refused at once, without a turn and without checking the
 * password, so the checked guesses against one key are never more than
 * one per gap however many connections ask.  A success takes its own
 * count back from the user's key (a user logging in between an
 * attacker's guesses does not reset the attacker's backoff) and clears
 * the address's key.  Counts halve for every decay_ms without a new
 * attempt on the key.
 *
 * File format (native byte order; the file never leaves the machine):
 * a 64-byte header (magic "CASTORAP", version, slot count, a random salt
 * for the key hash) and AUTHPEN_SLOTS slots of 32 bytes in buckets of
 * AUTHPEN_WAYS; a key lives in the bucket its salted 64-bit hash names,
 * and a new key replaces the bucket's least recently used slot.  The
 * table is soft state: a file whose header is wrong is rebuilt empty
 * (with a warning), and a process that cannot open or map it goes on
 * without shared penalties (fail open, docs/decisions.md).
 *
 * Invariants: the slots are only read or written while holding an OFD
 * write lock on the whole file; no caller sleeps with the lock held.
 */
#ifndef CASTOR_AUTHPEN_H
#define CASTOR_AUTHPEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define AUTHPEN_SLOTS 4096
#define AUTHPEN_WAYS 8
#define AUTHPEN_GAP_BASE_MS 1000

struct authpen;

struct authpen_turn {
	int64_t wait_ms;      /* sleep this long before checking (not throttled) */
	unsigned failures;    /* the larger count of the two keys, this attempt included */
	bool throttled;       /* refused: the turn is more than max_ms away */
};

/* Open (creating it, mode 0600) and map the table at path; max_ms and
 * decay_ms are the policy above.  NULL with err (ERR_TEMP) when it cannot. */
struct authpen *authpen_open(const char *path, int64_t max_ms, int64_t decay_ms, struct err *err);
void authpen_close(struct authpen **p);

/* Take a turn for an attempt on user and/or addr (either may be NULL).
 * 0, or -1 with err when the lock cannot be taken (t says: no wait). */
int authpen_begin(struct authpen *p, const char *user, const char *addr, struct authpen_turn *t,
	struct err *err);
/* The attempt begun on user/addr ended: ok = the password was right. */
void authpen_end(struct authpen *p, const char *user, const char *addr, bool ok);
/* A failure that checked no password (a malformed SASL response): one
 * more on the address's key, no turn taken. */
void authpen_note(struct authpen *p, const char *addr);

/* The address part of a peer as the service skeleton writes it
 * ("192.0.2.1:4711" -> "192.0.2.1", "[::1]:4711" -> "::1", "unix"). */
void authpen_peer_addr(const char *peer, char *out, size_t size);

/* The gap after the n-th recorded failure (n failures so far), in ms. */
int64_t authpen_gap_ms(unsigned n, int64_t max_ms);

#endif
