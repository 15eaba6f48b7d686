/*
 * ctl.h - what the castorctl command files share: the option parser,
 * configuration and store opening, error reporting with exit codes,
 * password input.  Each command family lives in its own file
 * (ctl_init.c, ctl_user.c, ctl_mailbox.c, ctl_import.c, ctl_check.c,
 * ctl_dump.c) and exposes one entry point ctl_cmd_<family>().
 * Exit codes are enum ctl_exit, mapped from err kinds by ctl_exit_code();
 * docs/castorctl.md keeps the table for operators.
 */
#ifndef CASTOR_CTL_H
#define CASTOR_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/err.h"

enum ctl_exit {
	CTL_EXIT_OK = 0,
	CTL_EXIT_PROBLEMS = 1,   /* check: inconsistencies found (or left after --repair) */
	CTL_EXIT_USAGE = 2,      /* bad command line */
	CTL_EXIT_CONFIG = 3,     /* configuration missing/unreadable/invalid, not a server root */
	CTL_EXIT_NOTFOUND = 4,   /* unknown user, mailbox, file */
	CTL_EXIT_EXISTS = 5,     /* already exists (user, mailbox, non-empty init root) */
	CTL_EXIT_INVALID = 6,    /* malformed input: bad name, malformed mbox, bad flag */
	CTL_EXIT_PERM = 7,       /* refused: permission, policy, read-only replica, fenced */
	CTL_EXIT_TEMP = 8,       /* temporary: I/O error, lock timeout; try again */
	CTL_EXIT_SPACE = 9,      /* disk full, over quota, too big */
	CTL_EXIT_CORRUPT = 10,   /* damaged on-disk state */
	CTL_EXIT_CONFLICT = 11,  /* replication conflict */
};

struct ctl {
	const char *prog;        /* "castorctl" */
	const char *conf_path;   /* -C, else $CASTOR_CONFIG, else ./castor.conf */
	struct conf *conf;       /* loaded by ctl_open_store() */
	struct store *store;
	bool quiet;              /* -q: no progress lines */
	bool keep_root;          /* run as root: keep root to start castord (failover) */
};

/* Options.  An option with an argument stores it in *value (the last one
 * wins) or, with `list`, appends it to *list (a NULL-terminated vector).
 * A flag sets *flag.  -C/--config and -h/--help are handled for every
 * command. */
struct ctl_opt {
	const char *name;        /* long name, without "--" */
	char short_name;         /* 0 = none */
	const char **value;
	char ***list;
	bool *flag;
};

/* Parse argv[0..argc) (argv[0] is the first argument after the command
 * words).  Options and operands may be mixed; "--" ends options.  The
 * operands are returned in *pos_r (pointing into argv; free the vector).
 * Returns 0, or CTL_EXIT_USAGE after printing the reason; -1 when --help
 * was asked for (the caller prints usage and exits 0). */
int ctl_parse(struct ctl *c, int argc, char **argv, const struct ctl_opt *opts,
	char ***pos_r, int *npos_r);
void ctl_list_free(char **list);

/* Print "castorctl: <msg>" to stderr and return the exit code for the
 * error's kind. */
int ctl_fail(const struct ctl *c, const struct err *err);
int ctl_exit_code(enum err_kind kind);
/* Print "castorctl: usage: <text>" and return CTL_EXIT_USAGE. */
int ctl_usage_error(const struct ctl *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Load the configuration and open the store of its server root.  On
 * error prints and returns the exit code; 0 on success. */
int ctl_open_store(struct ctl *c);
void ctl_close(struct ctl *c);

/* Every user name in name order, as a NULL-terminated vector (ctl_list_free). */
int ctl_all_users(struct ctl *c, char ***users_r, struct err *err);
/* Resolve the "USER|--all" operand of check and dump: validate it, open
 * the store, and give the NULL-terminated user list (free each and the
 * array).  Always frees pos.  0, or the exit code to return (usage text
 * given for a usage error). */
int ctl_users_arg(struct ctl *c, bool all, char **pos, int npos, const char *usage, char ***users_r);

/* The user name as given, checked (clear message for invalid names). */
int ctl_check_user_name(const char *name, struct err *err);

/* Password from --password / --password-file (first line; "-" is stdin),
 * else from the terminal with echo off (asked twice when confirm), else
 * an error.  The result is put in out (NUL-terminated). */
int ctl_read_password(const char *pw, const char *file, bool confirm, struct buf *out,
	struct err *err);
/* Overwrite and free a buffer that held a secret. */
void ctl_wipe(struct buf *b);

/* Progress lines on stderr: at most one a second; on a terminal the
 * line is rewritten in place. */
struct ctl_progress {
	double start, last;
	bool tty, shown, enabled;
};
void ctl_progress_init(struct ctl_progress *p, bool enabled);
/* Print when a second has passed since the last line (or force). */
void ctl_progress(struct ctl_progress *p, bool force, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void ctl_progress_done(struct ctl_progress *p);
double ctl_now(void);

/* The command families. */
int ctl_cmd_init(struct ctl *c, int argc, char **argv);
int ctl_cmd_user(struct ctl *c, int argc, char **argv);
int ctl_cmd_sync_password(struct ctl *c, int argc, char **argv); /* ctl_user.c */
int ctl_cmd_mailbox(struct ctl *c, int argc, char **argv);
int ctl_cmd_import(struct ctl *c, int argc, char **argv);
int ctl_cmd_check(struct ctl *c, int argc, char **argv);
int ctl_cmd_tls_check(struct ctl *c, int argc, char **argv);     /* ctl_tls.c */
int ctl_cmd_dump(struct ctl *c, int argc, char **argv);

#endif
