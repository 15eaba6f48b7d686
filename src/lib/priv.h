/*
 * priv.h - the user Castor's processes run as (castor.conf run_user),
 * and switching to it from root.  docs/security.md "Privileges".
 *
 * Resolution: run_user names a user from the password database; without
 * run_user the user is the owner of the server root (the directory of
 * castor.conf).  priv_switch() is safe between fork() and exec(): it
 * only makes system calls on what priv_resolve() prepared.
 */
#ifndef CASTOR_PRIV_H
#define CASTOR_PRIV_H

#include <stdbool.h>
#include <sys/types.h>

#include "lib/conf.h"
#include "lib/err.h"

#define PRIV_UMASK 027   /* no world bits on anything Castor creates */
#define PRIV_NAME_MAX 64

struct priv_user {
	uid_t uid;
	gid_t gid;
	char name[PRIV_NAME_MAX];  /* "#UID" when the uid has no password entry */
	bool explicit_;            /* named by run_user (not the root's owner) */
	gid_t *groups;             /* supplementary groups, priv_user_free() */
	int ngroups;
};

/* umask(PRIV_UMASK). */
void priv_umask(void);
/* Fill *u from conf: run_user, else the owner of conf_dir(conf).  -1 with err
 * (ERR_NOTFOUND for an unknown run_user). */
int priv_resolve(const struct conf *conf, struct priv_user *u, struct err *err);
void priv_user_free(struct priv_user *u);
/* Fill *u for the user called name (explicit_ set).  ERR_NOTFOUND if there is none. */
int priv_user_by_name(const char *name, struct priv_user *u, struct err *err);
/* As root: setgroups, setgid, setuid to u, and check root cannot come back. */
int priv_switch(const struct priv_user *u, struct err *err);
/* For tools started by hand (castorctl, sync-client, a service run with -s):
 * when running as root and the configured user is not root, become that
 * user, so what they create belongs to the same owner as the rest of the
 * root.  0 when nothing was needed, 1 after a switch, -1 with err.
 * keep_root keeps root as the saved uid and gid only (real and effective
 * ids are the user's), for a tool that may have to start castord as root
 * again (castorctl failover): priv_regain_root() takes it back. */
int priv_drop_for_conf(const struct conf *conf, bool keep_root, struct err *err);
/* After priv_drop_for_conf(..., true): become root again (in a child that
 * execs castord).  0 also when there is no root to take back. */
int priv_regain_root(struct err *err);

#endif
