/*
 * master_priv.c - who castord's children run as (docs/security.md
 * "Privileges").
 *
 * castord started as root stays root itself (it binds the listeners,
 * at start-up and on every SIGHUP, and writes its pidfile) and runs
 * every child - services, DAEMONs, EVENTS, START and SHUTDOWN entries -
 * as the run user: in the child after fork(), before exec().  The run
 * user is castor.conf's run_user, else the owner of the server root.
 * castord refuses to start when that would be root without run_user
 * naming root, and when the server root does not belong to a named
 * run_user.  Started unprivileged, castord and its children run as the
 * invoking user; a run_user naming someone else is an error.
 *
 * run_user is read at start-up only: a reload that changes it is logged
 * and takes effect at the next restart.
 *
 * castorctl run as root becomes the run user too, and must still be able
 * to stop castord (failover, promote): a root castord keeps real and
 * effective uid 0 but takes the run user as its saved uid, which lets the
 * run user signal it (kill(2) compares the sender's uid with the target's
 * real and saved ones), and gives its pidfile to the run user's group.
 * The run user owns every child and all the data already; signalling the
 * master adds nothing it could not do before.
 */
#include "master/master.h"

#include "lib/log.h"
#include "lib/priv.h"
#include "lib/str.h"

#include <errno.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct priv_user master_priv_user;
static bool master_priv_switch;         /* children must switch to master_priv_user */
static char master_priv_conf_user[PRIV_NAME_MAX];   /* run_user as read at start-up */

static int
master_priv_unprivileged(const struct conf *conf, struct err *err)
{
	const char *name = conf_get_str(conf, "run_user", NULL);
	struct passwd *pw;

	if (name == NULL || name[0] == '\0')
		return 0;
	pw = getpwnam(name);
	if (pw == NULL || pw->pw_uid != geteuid())
		return err_set(err, ERR_PERM, "run_user %s, but castord runs as uid %lu and cannot switch users "
			       "(start it as root, or as %s)", name, (unsigned long)geteuid(), name);
	return 0;
}

int
master_priv_init(const struct mconf *cfg, struct err *err)
{
	const char *root = conf_dir(cfg->conf);
	struct priv_user *u = &master_priv_user;
	struct stat st;

	str_lcpy(master_priv_conf_user, conf_get_str(cfg->conf, "run_user", ""), sizeof(master_priv_conf_user));
	if (geteuid() != 0)
		return master_priv_unprivileged(cfg->conf, err);
	if (priv_resolve(cfg->conf, u, err) < 0)
		return -1;
	if (u->uid == 0 && !u->explicit_)
		return err_set(err, ERR_PERM, "castord runs as root and the server root %s is root's: its children "
			       "would run as root. Set run_user: root to accept that, or chown -R castor: the root "
			       "and set run_user: castor", root);
	if (u->uid == 0) {
		log_warn("children run as root (run_user: root); docs/security.md");
		return 0;
	}
	if (stat(root, &st) < 0)
		return err_errno(err, ERR_TEMP, "server root %s", root);
	if (st.st_uid != u->uid)
		return err_set(err, ERR_PERM, "server root %s belongs to uid %lu, not to run_user %s "
			       "(chown -R %s: the root)", root, (unsigned long)st.st_uid, u->name, u->name);
	if (setresuid(0, 0, u->uid) < 0)
		return err_errno(err, ERR_PERM, "setresuid(0, 0, %s)", u->name);
	master_priv_switch = true;
	log_notice("children run as user=%s uid=%lu gid=%lu", u->name, (unsigned long)u->uid,
		   (unsigned long)u->gid);
	return 0;
}

void
master_priv_child(void)
{
	struct err err;

	if (!master_priv_switch)
		return;
	if (priv_switch(&master_priv_user, &err) < 0) {
		log_error("cannot switch user, child not started error=%s", log_q(err.msg));
		_exit(71);
	}
}

void
master_priv_pidfile(int fd)
{
	if (master_priv_switch && fchown(fd, (uid_t)-1, master_priv_user.gid) < 0)
		log_warn("pidfile: chgrp to run_user's group failed error=%s", log_q(strerror(errno)));
}

void
master_priv_reload_check(const struct conf *conf)
{
	const char *now = conf_get_str(conf, "run_user", "");

	if (!str_eq(now, master_priv_conf_user))
		log_warn("run_user changed from %s to %s: it takes effect at the next restart",
			 log_q(master_priv_conf_user[0] ? master_priv_conf_user : "-"), log_q(now[0] ? now : "-"));
}
