/*
 * child.h - the skeleton every protocol service (imapd, pop3d, lmtpd,
 * syncd) runs on: a service is a few callbacks, the skeleton owns the
 * process.
 *
 *     static enum child_end
 *     pop3_handle(struct child_conn *c)
 *     {
 *             greet(c);
 *             for (;;) {
 *                     if (nothing buffered) {
 *                             int w = child_wait_input(c->rfd, 600 * 1000);
 *                             if (w == CHILD_WAIT_QUIT)
 *                                     return CHILD_END_QUIT;   // goodbye() follows
 *                             if (w == CHILD_WAIT_TIMEOUT)
 *                                     return CHILD_END_DONE;   // say so first
 *                     }
 *                     read and run one command; if it was QUIT return CHILD_END_DONE;
 *                     if (child_quit_requested())          // the checkpoint
 *                             return CHILD_END_QUIT;
 *             }
 *     }
 *     static const struct child_ops ops = {
 *             .name = "pop3d", .init = pop3_init, .handle = pop3_handle,
 *             .goodbye = pop3_goodbye,    // "-ERR server shutting down\r\n"
 *     };
 *     int main(int argc, char **argv) { return child_main(argc, argv, &ops); }
 *
 * What the skeleton does (see proto.h for the contract with castord):
 *   - options: -C FILE (castor.conf; default $CASTOR_CONFIG), -s (serve
 *     one connection on stdin/stdout and exit: tests, inetd), plus the
 *     service's own ops->optstring;
 *   - log_init(CASTOR_SERVICE or ops->name), failpoint_init(), loads
 *     castor.conf (conf_load), calls ops->init once;
 *   - signals: SIGQUIT is caught (SA_RESTART: no EINTR surprises in the
 *     service's code) and only marks "quit requested"; SIGPIPE and SIGHUP
 *     are ignored; SIGTERM keeps its default action (immediate death:
 *     that is castord's escalation and fast stop);
 *   - PR_SET_PDEATHSIG(SIGTERM), and a child whose castord is already
 *     gone exits at once;
 *   - under castord: reports READY, waits in poll(2) on the listener
 *     (fd 3), the status channel (fd 4) and the signal pipe; accepts,
 *     reports BUSY, calls ops->handle, closes the connection; after
 *     maxuse connections reports EXITING and exits 0; exits 0 on SIGQUIT
 *     while idle, on a RETIRE from castord, or when castord's end of the
 *     channel closes ("master gone"); after a RELOAD from castord it
 *     rereads castor.conf and calls ops->reload before the next accept
 *     (a connection in hand is finished first, on what it started with);
 *   - when ops->handle returns CHILD_END_QUIT, calls ops->goodbye (the
 *     protocol's farewell: IMAP "* BYE", POP3 "-ERR", LMTP "421 4.3.2")
 *     and exits 0.
 *
 * Rules for a service:
 *   - never block in read(2) for the *next command* without
 *     child_wait_input() first (check your own input buffer and
 *     SSL_pending() before calling it): that is how an idle client gets
 *     its goodbye at once when castord asks the service to stop;
 *   - call child_quit_requested() after each command (the checkpoint)
 *     and return CHILD_END_QUIT when it is true;
 *   - a command in progress is finished, whatever arrives meanwhile;
 *   - write to conn->wfd, read from conn->rfd (equal on a socket).
 */
#ifndef CASTOR_MASTER_CHILD_H
#define CASTOR_MASTER_CHILD_H

#include <stdbool.h>

#include "lib/conf.h"
#include "lib/err.h"
#include "lib/net.h"

struct child_conn {
	int rfd;                        /* read the client here */
	int wfd;                        /* write to the client here (== rfd on a socket) */
	char peer[NET_ADDRSTR_MAX];     /* "127.0.0.1:40312", "[::1]:40312", "unix", "stdin" */
	char local[NET_ADDRSTR_MAX];    /* the address the client connected to, or "stdin" */
	bool loopback;                  /* peer is on this machine (stdin mode: true) */
	bool tls;                       /* the listener has tls=yes: start TLS before greeting */
	unsigned use;                   /* 1 for the first connection this process serves */
	void *ctx;                      /* the service's own state, NULL at start */
};

enum child_end {
	CHILD_END_DONE = 0,   /* the client logged out or went away (or idle timeout) */
	CHILD_END_QUIT = 1,   /* stopped at a checkpoint because a quit was requested */
};

/* child_wait_input() results */
enum {
	CHILD_WAIT_QUIT = -1,    /* a quit was requested (SIGQUIT, or castord is gone) */
	CHILD_WAIT_TIMEOUT = 0,
	CHILD_WAIT_INPUT = 1,    /* readable (data, EOF or an error for read(2) to report) */
};

struct child_ops {
	const char *name;              /* program name for the log ("imapd") */
	const char *optstring;         /* the service's own getopt letters, or NULL */
	/* One of the service's own options; 0, or -1 with err (usage error, exit 64). */
	int (*option)(int opt, const char *arg, struct err *err);
	bool conf_optional;            /* run without castor.conf (conf is then NULL) */
	/* Once, before any connection.  0, or -1 with err (exit 78). */
	int (*init)(const struct conf *conf, struct err *err);
	/* Serve one client to the end. */
	enum child_end (*handle)(struct child_conn *conn);
	/* Say the protocol's goodbye; called after handle returned CHILD_END_QUIT. */
	void (*goodbye)(struct child_conn *conn);
	/* Once, before the process exits normally (may be NULL). */
	void (*fini)(void);
	/* castord reloaded: renew what can be renewed in place (the TLS
	 * context) from conf, castor.conf as it is now, which is freed after
	 * the call.  Called between connections only.  May be NULL. */
	void (*reload)(const struct conf *conf);
};

/* Run the service; returns the process exit status (0 normal, 64 usage,
 * 78 configuration, 71 system error).  main() returns it. */
int child_main(int argc, char **argv, const struct child_ops *ops);

/* The checkpoint: true once a quit has been requested (SIGQUIT, or
 * castord gone).  Sticky.  Cheap: call it after every command. */
bool child_quit_requested(void);
/* Wait until fd is readable, timeout_ms passes (< 0: no limit) or a quit
 * is requested: CHILD_WAIT_INPUT / _TIMEOUT / _QUIT.  A quit already
 * requested returns _QUIT at once. */
int child_wait_input(int fd, int timeout_ms);
/* How long the last child_wait_input() blocked, in microseconds: the
 * client's idle time before the input it returned for. */
uint64_t child_last_wait_us(void);
/* castor.conf as loaded at start (NULL when conf_optional and none given). */
const struct conf *child_conf(void);
/* The entry name from services.conf (CASTOR_SERVICE), or ops->name. */
const char *child_name(void);
/* true when running under castord (not -s). */
bool child_under_master(void);

#endif
