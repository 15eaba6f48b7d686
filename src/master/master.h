/*
 * master.h - castord's internal interfaces, shared by the master_*.c
 * files (split by concern, as Postfix's master is):
 *
 *   master_main.c      options, start-up, the event loop, phases
 *   master_conf.c      loading castor.conf + services.conf, finding programs
 *   master_spawn.c     the child table: fork/exec, reaping, exit logging
 *   master_avail.c     prefork, maxchild, maxforkrate, crash backoff
 *   master_listen.c    opening and retiring listeners
 *   master_status.c    status bytes from children; SIGUSR1 status dump
 *   master_sig.c       castord's signals and what each one starts
 *   master_shutdown.c  graceful drain, escalation, SHUTDOWN section, fast stop
 *   master_event.c     EVENTS schedule and DAEMON restarts with backoff
 *   master_reload.c    SIGHUP: apply a new configuration without dropping clients
 *   master_notify.c    pidfile, --ready-fd, sd_notify
 *   master_priv.c      run_user: the user every child runs as
 *
 * Times are milliseconds on CLOCK_MONOTONIC (master_now()) except EVENTS
 * at=, which follows the wall clock.
 */
#ifndef CASTOR_MASTER_H
#define CASTOR_MASTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/err.h"
#include "lib/netaddr.h"
#include "lib/servicesconf.h"

#define MASTER_EX_SOFTWARE 70
#define MASTER_EX_UNAVAILABLE 69
#define MASTER_EX_CONFIG 78
/* graceful stop exit bits */
#define MASTER_EXIT_STRAGGLERS 1   /* a child had to be SIGTERMed/SIGKILLed, or failed while draining */
#define MASTER_EXIT_SHUTDOWN 2     /* a SHUTDOWN command failed or timed out */
#define MASTER_EXIT_DAMAGED 4      /* the server holds damaged users (docs/store.md) */

#define MASTER_KILL_GRACE_MS 5000  /* SIGTERM to SIGKILL */
#define MASTER_FAST_WAIT_MS 2000   /* fast stop: SIGTERM, then SIGKILL after this */

/* One services.conf entry, resolved: the program found, the address parsed. */
struct mentry {
	enum svc_section section;
	char *name;
	char **argv;            /* NULL-terminated copy; argv[0] as written */
	char *path;             /* the program that will be exec'd */
	char *listen;           /* SERVICES: as written */
	struct netaddr addr;    /* SERVICES */
	char addr_key[300];     /* SERVICES: canonical form, to match listeners across reloads */
	bool tls;
	int prefork, maxchild, maxforkrate, maxuse;
	int maxperip;           /* SERVICES: 0 = no per-address cap */
	int maxidle;            /* SERVICES: seconds; -1 = castor.conf's service_maxidle */
	char refuse[96];        /* SERVICES: the refusal line (no CRLF) castord writes; "" = close only */
	int period, at, timeout;
	int line;
};

/* A loaded configuration (castor.conf + services.conf). */
struct mconf {
	struct conf *conf;
	char *conf_path;        /* absolute */
	char *svc_path;         /* absolute */
	struct mentry *entries; /* file order */
	size_t n;
	int64_t shutdown_timeout_ms;
	int64_t maxidle_ms;     /* service_maxidle: idle children beyond prefork exit after this; 0 never */
	uint32_t conf_crc;      /* CRC-32C of castor.conf's bytes: a reload that changes it recycles children */
};

struct mservice {
	struct mservice *next;
	struct mentry e;
	int listen_fd;          /* -1 once retired */
	bool retired;           /* removed or replaced: no new children; freed with its last child */
	int nchild;             /* children alive */
	int nready;             /* children idle or starting (counted as able to accept) */
	int64_t blocked_until;  /* maxforkrate or crash backoff */
	int64_t full_until;     /* at maxchild with a child on its way out: wait for it until then */
	int64_t *forks;         /* ring of the last maxforkrate fork times */
	int fork_head;
	int64_t rate_logged;
	int64_t refuse_logged;  /* last "connection refused" line (maxchild, maxperip) */
	unsigned refused_quiet; /* refusals since that line */
	uint64_t refused;
	int fails;              /* consecutive children that died before serving */
	uint64_t spawned, served;
	int mark;               /* master_reload() scratch */
};

struct mdaemon {
	struct mdaemon *next;
	struct mentry e;
	pid_t pid;              /* 0 when not running */
	bool removed;           /* dropped by a reload: not restarted; freed when it exits */
	bool restart_now;       /* changed by a reload: restart at once with the new command */
	int64_t next_start;     /* when pid == 0: restart time (0 = now) */
	int64_t delay_ms;       /* current backoff */
	int64_t started;
	unsigned restarts;
};

struct mevent {
	struct mevent *next;
	struct mentry e;
	pid_t pid;              /* running instance, 0 if none */
	int64_t next_run;       /* wall clock, milliseconds since the epoch */
};

enum mchild_kind { MCHILD_SERVICE, MCHILD_DAEMON, MCHILD_EVENT, MCHILD_START, MCHILD_SHUTDOWN };
enum mchild_state { MCHILD_STARTING, MCHILD_READY, MCHILD_BUSY, MCHILD_EXITING };

struct mchild {
	struct mchild *next;
	pid_t pid;
	enum mchild_kind kind;
	char *name;             /* the entry's name */
	struct mservice *svc;   /* MCHILD_SERVICE */
	int status_fd;          /* MCHILD_SERVICE: our end of the status channel, -1 at EOF */
	enum mchild_state state;
	int64_t started;
	int64_t term_at;        /* own timeout (START/EVENTS/SHUTDOWN): SIGTERM then */
	int64_t kill_at;        /* SIGKILL then */
	int last_signal;        /* the last signal castord sent it (0: none) */
	bool escalated;         /* castord had to SIGTERM/SIGKILL it during a stop or timeout */
	bool retired;           /* told to finish and exit (reload) */
	bool was_ready;         /* reported READY at least once */
	int64_t idle_since;     /* MCHILD_SERVICE: when it last reported READY */
	int64_t exiting_at;     /* MCHILD_SERVICE: when it became EXITING */
	char peer[48];          /* MCHILD_SERVICE: address of the client in hand (maxperip), "" if none */
	char msg[64];           /* MCHILD_SERVICE: a PEER message being read */
	size_t msg_len;
	bool in_msg;
	int64_t stop_term_at;   /* graceful stop: SIGTERM then (its own shutdown_timeout after its SIGQUIT) */
	int64_t stop_kill_at;   /* graceful stop: SIGKILL then */
};

enum master_phase {
	PHASE_START,     /* running START entries one at a time */
	PHASE_RUN,
	PHASE_DRAIN,     /* SIGQUIT: waiting for children, escalating */
	PHASE_SHUTDOWN,  /* running SHUTDOWN entries one at a time */
	PHASE_FAST,      /* SIGTERM/SIGINT: children SIGTERMed, then SIGKILLed */
	PHASE_EXIT,
};

struct master {
	struct mconf *cfg;
	char *cli_svc_path;             /* -M made absolute, or NULL */
	enum master_phase phase;
	struct mservice *services;
	struct mdaemon *daemons;
	struct mevent *events;
	struct mchild *children;
	int nchildren;
	size_t start_next;              /* index into cfg->entries */
	size_t shutdown_next;
	pid_t step_pid;                 /* the START/SHUTDOWN command running */
	int64_t drain_started;
	int64_t fast_kill_at;
	bool fast_killed;
	int exit_code;
	struct buf failed;              /* names that made a stop unclean */
	/* readiness */
	int ready_fd;
	char *pidfile;
	int pidfile_fd;
	bool foreground;
	bool log_syslog;
	bool announced;                 /* READY sent */
	int tls_fd;                     /* the last TLS bundle that loaded (master_tls.c), or -1 */
};

/* master_main.c */
int64_t master_now(void);       /* CLOCK_MONOTONIC, ms */

/* master_conf.c */
void master_conf_set_self(void);
/* Load castor.conf at conf_path and the services file (svc_path, or the
 * services_conf key, or services.conf beside castor.conf), resolving
 * every program.  NULL with err on any error. */
struct mconf *master_conf_load(const char *conf_path, const char *svc_path, struct err *err);
void master_conf_free(struct mconf *c);
void master_conf_entry_copy(struct mentry *dst, const struct mentry *src);
void master_conf_entry_clear(struct mentry *e);
bool master_conf_entry_same_cmd(const struct mentry *a, const struct mentry *b);
/* Look a program name up (see docs/signals.md "Finding programs"). */
char *master_conf_find_program(const struct conf *conf, const char *name, struct err *err);

/* master_tls.c */
/* Read the certificates conf (at conf_path) names and have castorctl
 * check them; on success they replace m->tls_fd (0), else the old set
 * stays and the error is logged (-1). */
int master_tls_load(struct master *m, const struct conf *conf, const char *conf_path, bool reload);

/* master_spawn.c */
struct mchild *master_spawn(struct master *m, enum mchild_kind kind, const struct mentry *e,
			    struct mservice *svc);
void master_spawn_reap(struct master *m);
void master_spawn_signal(struct master *m, struct mchild *c, int sig, const char *why);
struct mchild *master_spawn_find(struct master *m, pid_t pid);
const char *master_spawn_kind_name(enum mchild_kind kind);

/* master_avail.c */
void master_avail_prefork(struct master *m, int64_t now);
bool master_avail_want_listen(const struct mservice *s, int64_t now);
void master_avail_listener_ready(struct master *m, struct mservice *s, int64_t now);
int64_t master_avail_next_timer(const struct master *m, int64_t now);
void master_avail_child_gone(struct master *m, struct mservice *s, struct mchild *c, bool failed);
/* A child reported its client's address: true to admit, false over maxperip (logged). */
bool master_avail_peer_admit(struct master *m, struct mservice *s, struct mchild *c, int64_t now);
/* Ask idle children beyond prefork that have idled for maxidle to exit. */
void master_avail_trim(struct master *m, int64_t now);
/* Free a retired service once its last child is gone. */
void master_avail_service_release(struct master *m, struct mservice *s);
struct mservice *master_avail_service_new(const struct mentry *e);
void master_avail_service_free(struct mservice *s);

/* master_listen.c */
int master_listen_open(struct mservice *s, struct err *err);
int master_listen_open_all(struct master *m, struct err *err);
void master_listen_close(struct mservice *s);
void master_listen_close_all(struct master *m);

/* master_status.c */
void master_status_read(struct master *m, struct mchild *c);
void master_status_retire(struct master *m, struct mchild *c);
/* Tell every kept service child that castord reloaded, handing it the
 * new TLS bundle m->tls_fd (RELOAD, proto.h). */
void master_status_reload(struct master *m);
void master_status_dump(struct master *m);

/* master_sig.c */
int master_sig_init(struct err *err);
void master_sig_dispatch(struct master *m);

/* master_shutdown.c */
void master_shutdown_begin(struct master *m);
void master_shutdown_fast_begin(struct master *m, const char *why);
void master_shutdown_step(struct master *m, int64_t now);
int64_t master_shutdown_next_timer(const struct master *m, int64_t now);
void master_shutdown_timeouts(struct master *m, int64_t now);
void master_shutdown_note_failed(struct master *m, const char *what, const char *name);

/* master_event.c */
void master_event_daemons_start(struct master *m, int64_t now);
void master_event_daemon_exited(struct master *m, pid_t pid, int status, int64_t now);
void master_event_schedule(struct master *m);
void master_event_run(struct master *m, int64_t now);
void master_event_exited(struct master *m, pid_t pid);
int64_t master_event_next_timer(const struct master *m, int64_t now);
struct mdaemon *master_event_daemon_new(const struct mentry *e);
struct mevent *master_event_new(const struct mentry *e);
void master_event_daemon_free(struct mdaemon *d);
void master_event_free(struct mevent *ev);
int64_t master_event_next_at(const struct mentry *e, int64_t wall_now);

/* master_reload.c */
void master_reload(struct master *m);

/* master_notify.c */
int master_notify_pidfile_open(struct master *m, struct err *err);
void master_notify_pidfile_remove(struct master *m);
void master_notify_ready(struct master *m);
void master_notify(const char *state);

/* master_priv.c */
/* At start-up: decide who children run as (run_user); -1 with err refuses to start. */
int master_priv_init(const struct mconf *cfg, struct err *err);
/* In a child after fork(): become the run user, or _exit(71). */
void master_priv_child(void);
/* The pidfile just opened: readable by the run user's group (castorctl). */
void master_priv_pidfile(int fd);
/* On SIGHUP: log that a changed run_user waits for a restart. */
void master_priv_reload_check(const struct conf *conf);

#endif
