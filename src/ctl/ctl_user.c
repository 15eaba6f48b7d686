/*
 * ctl_user.c - castorctl user add|del|passwd|list|reset, and castorctl
 * sync-password (the replication credential this server's syncd
 * accepts: users.db sync_auth, not a user; store.c U3).
 *
 * `user quota USER [--storage SIZE] [--messages N] [--none]` sets a
 * user's own quota limits (users.db quota_bytes, quota_messages: -1 the
 * server's default, 0 none, else the limit); the change hook puts it in
 * the sync log and replicas apply it.  Without options it shows usage
 * and the limits that apply, on a replica too.
 *
 * `user reset USER` is the explicit way out for a damaged user
 * (docs/store.md): the spool moves to <root>/deleted/ and a fresh empty
 * database with a new identity takes its place.  It works on a replica
 * too: the master then fills the user again.
 *
 * Passwords come from --password-file (first line; "-" = stdin), from
 * --password, or from the terminal with echo off (asked twice).  They
 * are hashed by the store (yescrypt) and wiped from memory after use.
 */
#include "ctl/ctl.h"

#include "lib/log.h"
#include "lib/str.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int
ctl_user_print(void *ctx, const struct store_userinfo *ui)
{
	const bool *longform = ctx;

	if (!*longform) {
		printf("%s\n", ui->name);
		return 0;
	}
	{
		char when[32] = "-";
		time_t t = (time_t)ui->created;
		struct tm tm;
		char qb[32], qm[32];

		if (gmtime_r(&t, &tm) != NULL)
			strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (ui->quota_bytes < 0)
			str_lcpy(qb, "default", sizeof(qb));
		else
			snprintf(qb, sizeof(qb), "%lld", (long long)ui->quota_bytes);
		if (ui->quota_messages < 0)
			str_lcpy(qm, "default", sizeof(qm));
		else
			snprintf(qm, sizeof(qm), "%lld", (long long)ui->quota_messages);
		printf("%s password=%s quota_bytes=%s quota_messages=%s created=%s\n", ui->name,
		    ui->has_password ? "yes" : "no", qb, qm, when);
	}
	return 0;
}

/* A fresh empty database for USER; on a replica too (its master fills it). */
static int
ctl_user_reset(struct ctl *c, const char *user)
{
	bool ro = store_is_read_only(c->store);
	struct err err;
	int rc;

	store_set_read_only(c->store, false);
	rc = store_user_reset(c->store, user, &err);
	store_set_read_only(c->store, ro);
	if (rc < 0)
		return ctl_fail(c, &err);
	if (!c->quiet)
		printf("user %s reset: a fresh empty database (the old spool is in deleted/)%s\n", user,
		    ro ? "; the master fills it at the next sync" : "");
	return 0;
}

/* A --storage or --messages value: "default" (-1), else a size (k, m,
 * g, t: powers of 1024) or a count; 0 = no limit. */
static int
ctl_quota_arg(struct ctl *c, const char *opt, const char *v, bool size, int64_t *out)
{
	uint64_t n;
	int rc = size ? conf_parse_bytes(v, &n) : str_to_u64(v, &n);

	if (str_eq(v, "default")) {
		*out = -1;
		return 0;
	}
	if (rc < 0 || n > INT64_MAX)
		return ctl_usage_error(c, "--%s %s: expected %s, 0 (no limit) or default", opt, log_q(v),
		    size ? "a size such as 500m or 2g" : "a number of messages");
	*out = (int64_t)n;
	return 0;
}

static void
ctl_quota_line(const char *user, const char *what, uint64_t used, int64_t own, uint64_t limit)
{
	char lim[32] = "none";

	if (limit != 0)
		snprintf(lim, sizeof(lim), "%llu", (unsigned long long)limit);
	printf("%s %s used=%llu limit=%s from=%s\n", user, what, (unsigned long long)used, lim,
	    own < 0 ? "default" : "user");
}

/* Show the usage and the limits that apply (own, else the defaults). */
static int
ctl_user_quota_show(struct ctl *c, const char *user)
{
	struct store_userinfo ui;
	struct store_user *u;
	struct store_quota q;
	struct err err;
	int rc;

	if (store_user_info(c->store, user, &ui, &err) < 0)
		return ctl_fail(c, &err);
	if ((u = store_user_open(c->store, user, &err)) == NULL)
		return ctl_fail(c, &err);
	rc = store_quota_get(u, &q, &err);
	store_user_close(&u);
	if (rc < 0)
		return ctl_fail(c, &err);
	ctl_quota_line(user, "storage", q.used_bytes, ui.quota_bytes, q.limit_bytes);
	ctl_quota_line(user, "messages", q.used_messages, ui.quota_messages, q.limit_messages);
	return 0;
}

/* user quota USER [--storage SIZE] [--messages N] [--none] */
static int
ctl_user_quota(struct ctl *c, const char *user, const char *storage, const char *messages,
	bool none)
{
	struct store_userinfo ui;
	struct err err;
	int64_t qb, qm;
	int rc;

	if (none && (storage != NULL || messages != NULL))
		return ctl_usage_error(c, "user quota: --none clears both limits; give it alone");
	if (storage == NULL && messages == NULL && !none) {
		if ((rc = ctl_open_store(c)) != 0)
			return rc;
		return ctl_user_quota_show(c, user);
	}
	qb = qm = -1;
	if ((storage != NULL && ctl_quota_arg(c, "storage", storage, true, &qb) != 0) ||
	    (messages != NULL && ctl_quota_arg(c, "messages", messages, false, &qm) != 0))
		return CTL_EXIT_USAGE;
	if ((rc = ctl_open_store(c)) != 0)
		return rc;
	if (store_user_info(c->store, user, &ui, &err) < 0)
		return ctl_fail(c, &err);
	if (store_is_read_only(c->store)) {
		err_set(&err, ERR_PERM, "this server is a replica: change quotas on the master");
		return ctl_fail(c, &err);
	}
	if (!none) {
		if (storage == NULL)
			qb = ui.quota_bytes;
		if (messages == NULL)
			qm = ui.quota_messages;
	}
	if (store_user_set_quota(c->store, user, qb, qm, &err) < 0)
		return ctl_fail(c, &err);
	if (!c->quiet)
		return ctl_user_quota_show(c, user);
	return 0;
}

int
ctl_cmd_user(struct ctl *c, int argc, char **argv)
{
	const char *pw = NULL, *pwfile = NULL, *storage = NULL, *messages = NULL;
	bool longform = false, none = false;
	const struct ctl_opt opts[] = {
		{ "password", 'p', &pw, NULL, NULL },
		{ "password-file", 'P', &pwfile, NULL, NULL },
		{ "long", 'l', NULL, NULL, &longform },
		{ "storage", 0, &storage, NULL, NULL },
		{ "messages", 0, &messages, NULL, NULL },
		{ "none", 0, NULL, NULL, &none },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL;
	int npos = 0, rc;
	struct err err;
	const char *sub, *user;
	struct buf secret = BUF_INIT;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl user add USER [--password-file F | --password PW]\n"
		    "       castorctl user passwd USER [--password-file F | --password PW]\n"
		    "       castorctl user del USER\n"
		    "       castorctl user reset USER\n"
		    "       castorctl user list [--long]\n"
		    "       castorctl user quota USER [--storage SIZE] [--messages N] [--none]\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	if (npos < 1) {
		free(pos);
		return ctl_usage_error(c, "user add|del|passwd|list|reset|quota ...");
	}
	sub = pos[0];
	if (!str_eq(sub, "quota") && (storage != NULL || messages != NULL || none)) {
		free(pos);
		return ctl_usage_error(c, "--storage, --messages and --none go with user quota");
	}
	if (str_eq(sub, "list")) {
		if (npos != 1 || pw != NULL || pwfile != NULL) {
			free(pos);
			return ctl_usage_error(c, "user list [--long]");
		}
		free(pos);
		if ((rc = ctl_open_store(c)) != 0)
			return rc;
		if (store_user_list(c->store, ctl_user_print, &longform, &err) < 0)
			return ctl_fail(c, &err);
		return 0;
	}
	if (!str_eq(sub, "add") && !str_eq(sub, "del") && !str_eq(sub, "passwd") &&
	    !str_eq(sub, "reset") && !str_eq(sub, "quota")) {
		rc = ctl_usage_error(c, "unknown user command %s (add, del, passwd, list, reset, quota)",
		    log_q(sub));
		free(pos);
		return rc;
	}
	if (npos != 2) {
		rc = ctl_usage_error(c, "user %s USER", sub);
		free(pos);
		return rc;
	}
	user = pos[1];
	free(pos);
	if ((str_eq(sub, "del") || str_eq(sub, "reset") || str_eq(sub, "quota")) &&
	    (pw != NULL || pwfile != NULL))
		return ctl_usage_error(c, "user %s takes no password", sub);
	if (ctl_check_user_name(user, &err) < 0)
		return ctl_fail(c, &err);
	if (str_eq(sub, "quota"))
		return ctl_user_quota(c, user, storage, messages, none);
	if ((rc = ctl_open_store(c)) != 0)
		return rc;

	if (str_eq(sub, "del")) {
		if (store_user_del(c->store, user, &err) < 0)
			return ctl_fail(c, &err);
		if (!c->quiet)
			printf("user %s deleted\n", user);
		return 0;
	}
	if (str_eq(sub, "reset"))
		return ctl_user_reset(c, user);
	/* add / passwd: check the user before asking for a password */
	rc = store_user_exists(c->store, user, &err);
	if (rc < 0)
		return ctl_fail(c, &err);
	if (str_eq(sub, "add") && rc == 1) {
		err_set(&err, ERR_EXISTS, "user %s already exists", user);
		return ctl_fail(c, &err);
	}
	if (str_eq(sub, "passwd") && rc == 0) {
		err_set(&err, ERR_NOTFOUND, "no such user: %s", user);
		return ctl_fail(c, &err);
	}
	if (store_is_read_only(c->store)) {
		err_set(&err, ERR_PERM, "this server is a replica: change users on the master");
		return ctl_fail(c, &err);
	}
	if (ctl_read_password(pw, pwfile, true, &secret, &err) < 0) {
		ctl_wipe(&secret);
		return ctl_fail(c, &err);
	}
	if (str_eq(sub, "add"))
		rc = store_user_add(c->store, user, buf_cstr(&secret), &err);
	else
		rc = store_user_passwd(c->store, user, buf_cstr(&secret), &err);
	ctl_wipe(&secret);
	if (rc < 0)
		return ctl_fail(c, &err);
	if (!c->quiet)
		printf("user %s %s\n", user, str_eq(sub, "add") ? "added" : "password changed");
	return 0;
}

/* castorctl sync-password [--authname NAME] [--password PW | --password-file F]:
 * set the credential a master's sync-client must present to this
 * server's syncd.  Allowed on a replica (it is not replicated data);
 * sync_password / sync_password_file in castor.conf, when set, win. */
int
ctl_cmd_sync_password(struct ctl *c, int argc, char **argv)
{
	const char *pw = NULL, *pwfile = NULL, *authname = NULL;
	const struct ctl_opt opts[] = {
		{ "password", 'p', &pw, NULL, NULL },
		{ "password-file", 'P', &pwfile, NULL, NULL },
		{ "authname", 0, &authname, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL;
	int npos = 0, rc;
	struct err err;
	struct buf secret = BUF_INIT;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl sync-password [--authname NAME] [--password-file F | --password PW]\n");
		return 0;
	}
	free(pos);
	if (rc > 0)
		return rc;
	if (npos != 0)
		return ctl_usage_error(c, "sync-password takes no arguments");
	if ((rc = ctl_open_store(c)) != 0)
		return rc;
	if (authname == NULL)
		authname = conf_get_str(c->conf, "sync_authname", "sync");
	if (ctl_read_password(pw, pwfile, true, &secret, &err) < 0) {
		ctl_wipe(&secret);
		return ctl_fail(c, &err);
	}
	rc = store_sync_auth_set(c->store, authname, buf_cstr(&secret), &err);
	ctl_wipe(&secret);
	if (rc < 0)
		return ctl_fail(c, &err);
	if (!c->quiet) {
		printf("sync password set for authname %s\n", authname);
		if (conf_get_str(c->conf, "sync_password", NULL) != NULL ||
		    conf_has(c->conf, "sync_password_file"))
			printf("note: sync_password%s in castor.conf takes precedence while it is set\n",
			    conf_has(c->conf, "sync_password_file") ? "_file" : "");
	}
	return 0;
}
