/*
 * session_store.h - how a protocol service opens the mail store: options
 * from castor.conf, the replication hook, the server's role.
 *
 * Every process that mutates the store must have its changes go into
 * the sync log; session_store_open() is the one place the protocol services
 * (lmtpd, pop3d, imapd) open the store, so the hook is attached here
 * for all of them.
 */
#ifndef CASTOR_SESSION_SESSION_STORE_H
#define CASTOR_SESSION_SESSION_STORE_H

#include <stdbool.h>

#include "lib/conf.h"
#include "lib/err.h"
#include "store/store.h"

/* Open the server root that conf lives in (conf_dir), with
 * quota_default_bytes, quota_default_messages and blob_inline_max from
 * conf, attach the sync hook (synchook_attach: every commit then goes
 * into the sync log), and set read-only mode from the stored role.
 * NULL with err on failure.  Close with session_store_close(). */
struct store *session_store_open(const struct conf *conf, struct err *err);

/* Detach the sync hook and close the store; *st becomes NULL. */
void session_store_close(struct store **st);

/* Before acknowledging a change (LMTP 250, IMAP OK): in sync_mode
 * semisync, wait until a replica has committed what this process
 * changed (synchook_wait).  0, or -1 with ERR_TEMP when strict semisync
 * timed out: the change is committed here but not confirmed. */
int session_store_wait(struct store *st, struct err *err);

/* Re-read the stored role (it changes at failover) and set the store's
 * read-only mode to match.  1 replica, 0 master, -1 error (err). */
int session_store_check_role(struct store *st, struct err *err);

#endif
