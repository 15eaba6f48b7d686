/*
 * ctl_failover.h - what castorctl's failover commands share
 * (ctl_peer.c, ctl_server.c, ctl_promote.c, ctl_failover.c,
 * ctl_status.c): a small sync protocol client that talks to a peer
 * server's syncd (role and epoch at HELLO, GET USERS for the equality
 * check, PROMOTE), control of the local castord (pidfile, SIGQUIT, start),
 * and the failover state file.  docs/failover.md describes the commands.
 */
#ifndef CASTOR_CTL_FAILOVER_H
#define CASTOR_CTL_FAILOVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/err.h"

/* ------------------------------------------------------------------ */
/* The peer: a sync protocol session with the server of channel CHAN    */

struct ctl_peer;

#define CTL_PEER_CHANNELS_MAX 16

struct ctl_peer_hello {
	bool fenced;            /* HELLO answered NO [FENCED ...] */
	char role[16];          /* the peer's role from "* HELLO" ("" unknown) */
	uint64_t epoch;         /* the peer's epoch (from * HELLO or the FENCED detail) */
	char serverid[256];
	/* the peer's own sync_channels ("NAME=HOST:PORT", HELLO CHANNELS);
	 * nchannels -1: the peer did not say */
	int nchannels;
	char channels[CTL_PEER_CHANNELS_MAX][300];
};

/*
 * Connect to channel `chan` of conf (host, port, credentials, TLS as
 * sync-client uses them), read the greeting, STARTTLS when the channel
 * wants it, authenticate, and say HELLO as (my_role, my_epoch).  The
 * peer's answer is in *h.  A FENCED answer is not an error here: the
 * session is returned with h->fenced set (it can only LOGOUT).  NULL
 * with err: ERR_TEMP unreachable, ERR_PERM refused credentials or TLS,
 * ERR_INVALID configuration.
 */
struct ctl_peer *ctl_peer_open(const struct conf *conf, const char *chan, const char *my_role,
	uint64_t my_epoch, int timeout_ms, struct ctl_peer_hello *h, struct err *err);
void ctl_peer_close(struct ctl_peer **p);

/* GET USERS: fn(ctx, name, modseq, digest, has_digest) per user. */
typedef int (*ctl_peer_user_fn)(void *ctx, const char *name, uint64_t modseq, uint32_t digest,
	bool has_digest);
int ctl_peer_users(struct ctl_peer *p, ctl_peer_user_fn fn, void *ctx, struct err *err);

/* PROMOTE epoch.  0 (the peer is a master at that epoch now), -1 with
 * err (ERR_FENCED: the peer's epoch is not below `epoch`). */
int ctl_peer_promote(struct ctl_peer *p, uint64_t epoch, struct err *err);

/* ------------------------------------------------------------------ */
/* Comparing this server with a peer                                    */

struct ctl_compare {
	size_t users;           /* users compared */
	size_t differ;          /* users whose digest (or presence) differs */
	char first[512];        /* the first difference, for the message */
};

/* Compare every local user's digest (syncdigest.h) with the peer's GET
 * USERS answer.  The peer's sync account (`<chan>_sync_authname`) is not
 * a difference.  0 (the comparison ran: look at cmp->differ), -1 err. */
struct store;
int ctl_compare_with_peer(struct store *st, struct ctl_peer *p, const char *sync_account,
	struct ctl_compare *cmp, struct err *err);

/* ------------------------------------------------------------------ */
/* The local castord                                                    */

struct ctl_server_info {
	bool running;           /* the pidfile is locked by a live castord */
	pid_t pid;
	char pidfile[4096];
};

/* Where castord's pidfile is (castor.conf `pidfile`, else run/castord.pid)
 * and whether a castord holds it. */
void ctl_server_info(const struct conf *conf, struct ctl_server_info *si);

/* SIGQUIT castord and wait up to timeout_ms until it is gone (its
 * pidfile unlocked).  0 (also when it was not running), -1 ERR_TEMP. */
int ctl_server_stop(const struct conf *conf, int timeout_ms, struct err *err);

/* Start castord for conf (daemon; -L log_file when given, else its
 * output goes to /dev/null and it logs to syslog) and wait up to
 * timeout_ms for readiness (every listener open).  0 or -1 with err. */
int ctl_server_start(const struct conf *conf, const char *log_file, int timeout_ms, struct err *err);

/* Run a Castor program (looked up as castord looks up programs: the
 * directory castorctl runs from, its build-tree siblings, the libexec
 * directory, $PATH) with argv (argv[0] the bare name), stdout/stderr
 * inherited.  Returns its exit status (0..255), 128+signal, or -1 err. */
int ctl_run_program(char *const argv[], struct err *err);
/* Path of a program as above ("" when not found). */
void ctl_find_program(const char *name, char *out, size_t size);

/* ------------------------------------------------------------------ */
/* Failover state (<root>/run/failover.state)                          */

/* One line describing a failover in progress, "" when none. */
void ctl_failover_state_text(const char *root, struct buf *out);

/* The command families of these files. */
struct ctl;
int ctl_cmd_status(struct ctl *c, int argc, char **argv);
int ctl_cmd_promote(struct ctl *c, int argc, char **argv);
int ctl_cmd_demote(struct ctl *c, int argc, char **argv);
int ctl_cmd_peer_check(struct ctl *c, int argc, char **argv);
int ctl_cmd_failover(struct ctl *c, int argc, char **argv);

#endif
