/*
 * priv.c - run_user: which user Castor's processes run as, and the
 * switch from root to it (see priv.h and docs/security.md).
 */
#include "lib/priv.h"

#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void
priv_umask(void)
{
	umask(PRIV_UMASK);
}

void
priv_user_free(struct priv_user *u)
{
	free(u->groups);
	u->groups = NULL;
	u->ngroups = 0;
}

static void
priv_groups(struct priv_user *u, bool named)
{
	int n = 32;

	u->groups = xcalloc((size_t)n, sizeof(gid_t));
	if (!named) {
		u->groups[0] = u->gid;
		u->ngroups = 1;
		return;
	}
	for (int guard = 0; guard < 8; guard++) {
		int want = n;

		if (getgrouplist(u->name, u->gid, u->groups, &want) >= 0) {
			u->ngroups = want;
			return;
		}
		n = want > n ? want : n * 2;
		u->groups = xreallocarray(u->groups, (size_t)n, sizeof(gid_t));
	}
	u->groups[0] = u->gid;
	u->ngroups = 1;
}

static int
priv_fill(struct priv_user *u, const struct passwd *pw, struct err *err)
{
	u->uid = pw->pw_uid;
	u->gid = pw->pw_gid;
	if (str_lcpy(u->name, pw->pw_name, sizeof(u->name)) >= sizeof(u->name))
		return err_set(err, ERR_INVALID, "user name %s is too long", pw->pw_name);
	priv_groups(u, true);
	return 0;
}

int
priv_user_by_name(const char *name, struct priv_user *u, struct err *err)
{
	struct passwd *pw;

	memset(u, 0, sizeof(*u));
	pw = getpwnam(name);
	if (pw == NULL)
		return err_set(err, ERR_NOTFOUND, "user %s: no such user (castorctl init creates castor as "
			       "root; or useradd --system --home-dir ROOT --shell /usr/sbin/nologin %s)", name, name);
	u->explicit_ = true;
	return priv_fill(u, pw, err);
}

int
priv_resolve(const struct conf *conf, struct priv_user *u, struct err *err)
{
	const char *name = conf_get_str(conf, "run_user", NULL);
	struct passwd *pw;
	struct stat st;

	if (name != NULL && name[0] != '\0') {
		if (priv_user_by_name(name, u, err) < 0) {
			err_prefix(err, "run_user");
			return -1;
		}
		return 0;
	}
	memset(u, 0, sizeof(*u));
	if (stat(conf_dir(conf), &st) < 0)
		return err_errno(err, ERR_TEMP, "server root %s", conf_dir(conf));
	pw = getpwuid(st.st_uid);
	if (pw != NULL)
		return priv_fill(u, pw, err);
	u->uid = st.st_uid;
	u->gid = st.st_gid;
	snprintf(u->name, sizeof(u->name), "#%lu", (unsigned long)st.st_uid);
	priv_groups(u, false);
	return 0;
}

int
priv_switch(const struct priv_user *u, struct err *err)
{
	if (setgroups((size_t)u->ngroups, u->groups) < 0)
		return err_errno(err, ERR_PERM, "setgroups for user %s", u->name);
	if (setresgid(u->gid, u->gid, u->gid) < 0)
		return err_errno(err, ERR_PERM, "setgid %lu for user %s", (unsigned long)u->gid, u->name);
	if (setresuid(u->uid, u->uid, u->uid) < 0)
		return err_errno(err, ERR_PERM, "setuid %lu for user %s", (unsigned long)u->uid, u->name);
	if (u->uid != 0 && (setuid(0) == 0 || geteuid() == 0))
		return err_set(err, ERR_PERM, "still able to become root after switching to user %s", u->name);
	return 0;
}

/* Real and effective ids the user's, saved ids root's. */
static int
priv_switch_keep(const struct priv_user *u, struct err *err)
{
	if (setgroups((size_t)u->ngroups, u->groups) < 0)
		return err_errno(err, ERR_PERM, "setgroups for user %s", u->name);
	if (setresgid(u->gid, u->gid, 0) < 0)
		return err_errno(err, ERR_PERM, "setgid %lu for user %s", (unsigned long)u->gid, u->name);
	if (setresuid(u->uid, u->uid, 0) < 0)
		return err_errno(err, ERR_PERM, "setuid %lu for user %s", (unsigned long)u->uid, u->name);
	return 0;
}

int
priv_drop_for_conf(const struct conf *conf, bool keep_root, struct err *err)
{
	struct priv_user u;
	int rc = 0;

	if (geteuid() != 0)
		return 0;
	if (priv_resolve(conf, &u, err) < 0)
		return -1;
	if (u.uid != 0)
		rc = (keep_root ? priv_switch_keep(&u, err) : priv_switch(&u, err)) < 0 ? -1 : 1;
	priv_user_free(&u);
	return rc;
}

int
priv_regain_root(struct err *err)
{
	uid_t r, e, s;

	if (getresuid(&r, &e, &s) < 0 || s != 0 || (r == 0 && e == 0))
		return 0;
	if (setresuid(0, 0, 0) < 0 || setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0)
		return err_errno(err, ERR_PERM, "cannot become root again");
	return 0;
}
