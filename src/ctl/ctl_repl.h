/*
 * ctl_repl.h - what castorctl's replication commands (verify,
 * restore-from) share: a read-mostly sync session to a channel's replica,
 * logged in the way sync-client logs in (ctl_verify.c).
 */
#ifndef CASTOR_CTL_REPL_H
#define CASTOR_CTL_REPL_H

#include "ctl/ctl.h"
#include "sync/syncchan.h"
#include "sync/syncpush.h"
#include "sync/syncsess.h"

struct ctl_repl {
	struct syncchan ch;
	struct tls_ctx *tls;
	struct syncsess *sess;
	struct syncpush *push;
};

/* Connect to channel chan (NULL: the first of sync_channels) and log in.
 * c->store must be open.  0, or -1 with err. */
int ctl_repl_connect(struct ctl *c, struct ctl_repl *v, const char *chan, struct err *err);
/* LOGOUT and free (harmless on a zeroed or half-connected struct). */
void ctl_repl_close(struct ctl_repl *v);

#endif
