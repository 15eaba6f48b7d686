/*
 * signals.h - signal handling through a self-pipe.
 *
 * A caught signal does two things in its handler and nothing else: it
 * marks the signal pending and writes one byte to a non-blocking pipe.
 * The program's main loop polls signals_fd() beside its other
 * descriptors, and acts on the pending marks at a point of its choosing
 * (the checkpoint), never inside the handler.
 *
 *     signals_init(&err);
 *     signals_catch(SIGQUIT, SIGNALS_RESTART, &err);
 *     ...
 *     poll({..., signals_fd(), ...});
 *     signals_poll();                     // drain the pipe
 *     if (signals_take(SIGHUP)) reload();
 *     if (signals_pending(SIGQUIT)) ...   // stays pending until taken
 *
 * SIGNALS_RESTART installs the handler with SA_RESTART, so slow system
 * calls (read(2) on a socket, SQLite, OpenSSL) are not interrupted with
 * EINTR; a program that must wake up on a signal while it waits polls
 * signals_fd() (see child_wait_input() in master/child.h).  Without
 * it, blocking calls fail with EINTR when the signal arrives.
 *
 * Pending marks coalesce: a signal delivered twice before it is taken is
 * taken once (as the kernel does).  The pipe is O_CLOEXEC, so programs
 * exec'd from a forked child do not inherit it.
 */
#ifndef CASTOR_SIGNALS_H
#define CASTOR_SIGNALS_H

#include <stdbool.h>
#include <signal.h>

#include "lib/err.h"

enum {
	SIGNALS_RESTART = 1,      /* SA_RESTART: slow system calls are restarted */
	SIGNALS_NOCLDSTOP = 2,    /* SIGCHLD only: not for stopped children */
};

/* Create the self-pipe.  Idempotent.  0, or -1 with err. */
int signals_init(struct err *err);
/* Catch sig (flags: SIGNALS_*).  Calls signals_init() if needed. */
int signals_catch(int sig, int flags, struct err *err);
/* Ignore sig / restore its default action (both clear its pending mark). */
int signals_ignore(int sig, struct err *err);
int signals_default(int sig, struct err *err);
/* Read end of the self-pipe: readable when a signal arrived since the
 * last signals_poll().  -1 before signals_init(). */
int signals_fd(void);
/* The checkpoint: drain the self-pipe; return true when any caught
 * signal is pending.  Async-signal-unsafe (call it from the main loop). */
bool signals_poll(void);
/* Is sig pending (caught and not yet taken)?  Does not clear it. */
bool signals_pending(int sig);
/* Test and clear sig's pending mark. */
bool signals_take(int sig);
/* Mark sig pending and wake the pipe as if it had been delivered. */
void signals_raise(int sig);
/* For a child after fork(), before exec or before installing its own
 * handlers: every caught signal back to SIG_DFL, the self-pipe closed,
 * pending marks cleared.  Ignored signals stay ignored unless listed in
 * `also_default` (a 0-terminated array, may be NULL). */
void signals_reset_child(const int *also_default);
/* "SIGTERM", "SIGQUIT", ... or "SIG<n>".  Static storage. */
const char *signals_name(int sig);

#endif
