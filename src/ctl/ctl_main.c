/*
 * ctl_main.c - castorctl: the administration command line.
 *
 *     castorctl [-C ROOT/castor.conf] [-q] COMMAND [ARGS...]
 *
 * main() reads the global options, picks the command family and hands
 * over.  This file also holds what every family shares (ctl.h): the
 * option parser, the mapping of error kinds to exit codes, and opening
 * the configuration and the store.  Every error ends the program with
 * one line "castorctl: reason" on stderr and a non-zero exit code.
 */
#include "ctl/ctl.h"
#include "ctl/ctl_failover.h"

#include "castor_config.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/priv.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/synchook.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void
ctl_help(FILE *f)
{
	fputs(
	    "usage: castorctl [-C ROOT/castor.conf] [-q] COMMAND [ARGS...]\n"
	    "       castorctl help [COMMAND]   (the command's synopsis, as in castorctl(8))\n"
	    "\n"
	    "  init ROOT --port-base N [--role master|replica] [--channel NAME=HOST:PORT ...] ...\n"
	    "  user add|passwd|del|reset|list|quota ...\n"
	    "  sync-password [--authname NAME] [--password-file F | --password PW]\n"
	    "  mailbox create|delete|rename|list ...\n"
	    "  undelete USER MAILBOX\n"
	    "  purge-deleted [--now SECONDS] USER|--all\n"
	    "  import USER MBOX-FILE|MAILDIR [--mailbox NAME] [--format mboxrd|mboxo] [--batch N]\n"
	    "  check [--repair] USER|--all\n"
	    "  dump [--for-compare] USER|--all\n"
	    "  verify [USER | --all] [--channel CHAN]\n"
	    "  status [--json] [CHAN...] | --damaged\n"
	    "  sync --allow-deletes|--release CHAN [USER] | --verify CHAN\n"
	    "  restore-from CHAN USER\n"
	    "  failover --to CHAN [--force] ... | --resume | --abort   (planned switch)\n"
	    "  promote [--force] [--epoch N]   (a replica whose master is gone becomes the master)\n"
	    "  demote --epoch N\n"
	    "  peer-check [--timeout SEC]\n"
	    "  tls-check [--bundle-fd N]   (do the TLS certificates castor.conf names load?)\n"
	    "\n"
	    "-C names the server's castor.conf (default $CASTOR_CONFIG, else ./castor.conf).\n"
	    "castorctl(8) and docs/castorctl.md describe every command and the exit codes.\n", f);
}

int
ctl_exit_code(enum err_kind kind)
{
	switch (kind) {
	case ERR_NONE: return CTL_EXIT_OK;
	case ERR_NOTFOUND: return CTL_EXIT_NOTFOUND;
	case ERR_EXISTS: return CTL_EXIT_EXISTS;
	case ERR_INVALID: return CTL_EXIT_INVALID;
	case ERR_PERM: return CTL_EXIT_PERM;
	case ERR_FENCED: return CTL_EXIT_PERM;
	case ERR_TEMP: return CTL_EXIT_TEMP;
	case ERR_NOSPACE: return CTL_EXIT_SPACE;
	case ERR_QUOTA: return CTL_EXIT_SPACE;
	case ERR_TOOBIG: return CTL_EXIT_SPACE;
	case ERR_CORRUPT: return CTL_EXIT_CORRUPT;
	case ERR_CONFLICT: return CTL_EXIT_CONFLICT;
	case ERR_DAMAGED: return CTL_EXIT_CORRUPT;
	}
	return CTL_EXIT_TEMP;
}

int
ctl_fail(const struct ctl *c, const struct err *err)
{
	fprintf(stderr, "%s: %s\n", c->prog, err->msg[0] ? err->msg : err_kind_name(err->kind));
	return ctl_exit_code(err->kind);
}

int
ctl_usage_error(const struct ctl *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: usage: ", c->prog);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (castorctl --help)\n");
	return CTL_EXIT_USAGE;
}

void
ctl_list_free(char **list)
{
	size_t i;

	if (list == NULL)
		return;
	for (i = 0; list[i] != NULL; i++)
		free(list[i]);
	free(list);
}

static void
ctl_list_add(char ***list, const char *v)
{
	size_t n = 0;

	if (*list != NULL)
		while ((*list)[n] != NULL)
			n++;
	*list = xreallocarray(*list, n + 2, sizeof(char *));
	(*list)[n] = xstrdup(v);
	(*list)[n + 1] = NULL;
}

static int
ctl_set_opt(struct ctl *c, const struct ctl_opt *o, const char *shown, const char *value)
{
	if (o->flag != NULL) {
		if (value != NULL)
			return ctl_usage_error(c, "option %s takes no value", shown);
		*o->flag = true;
		return 0;
	}
	if (value == NULL)
		return ctl_usage_error(c, "option %s needs a value", shown);
	if (o->list != NULL)
		ctl_list_add(o->list, value);
	else
		*o->value = value;
	return 0;
}

int
ctl_parse(struct ctl *c, int argc, char **argv, const struct ctl_opt *opts,
    char ***pos_r, int *npos_r)
{
	static const struct ctl_opt none[] = { { NULL, 0, NULL, NULL, NULL } };
	char **pos = xcalloc((size_t)argc + 1, sizeof(char *));
	int npos = 0, i, rc = 0;
	bool dashdash = false;

	if (opts == NULL)
		opts = none;
	for (i = 0; i < argc && rc == 0; i++) {
		const char *a = argv[i];
		const struct ctl_opt *o;

		if (dashdash || a[0] != '-' || a[1] == '\0') {
			pos[npos++] = argv[i];
			continue;
		}
		if (str_eq(a, "--")) {
			dashdash = true;
			continue;
		}
		if (str_eq(a, "-h") || str_eq(a, "--help")) {
			rc = -1;
			break;
		}
		if (a[1] == '-') {
			const char *name = a + 2, *eq = strchr(name, '=');
			size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
			const char *value = eq ? eq + 1 : NULL;

			if (nlen == 6 && memcmp(name, "config", 6) == 0) {
				if (value == NULL && i + 1 < argc)
					value = argv[++i];
				if (value == NULL)
					rc = ctl_usage_error(c, "option --config needs a value");
				else
					c->conf_path = value;
				continue;
			}
			for (o = opts; o->name != NULL; o++)
				if (strlen(o->name) == nlen && memcmp(o->name, name, nlen) == 0)
					break;
			if (o->name == NULL) {
				rc = ctl_usage_error(c, "unknown option --%.*s", (int)nlen, name);
				break;
			}
			if (o->flag == NULL && value == NULL && i + 1 < argc)
				value = argv[++i];
			rc = ctl_set_opt(c, o, a, value);
			continue;
		}
		/* short option: "-X", "-Xvalue" or "-X value" */
		if (a[1] == 'C') {
			const char *value = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
			if (value == NULL)
				rc = ctl_usage_error(c, "option -C needs a value");
			else
				c->conf_path = value;
			continue;
		}
		if (a[1] == 'q' && a[2] == '\0') {
			c->quiet = true;
			continue;
		}
		for (o = opts; o->name != NULL; o++)
			if (o->short_name != 0 && o->short_name == a[1])
				break;
		if (o->name == NULL) {
			rc = ctl_usage_error(c, "unknown option %s", a);
			break;
		}
		if (o->flag != NULL) {
			if (a[2] != '\0')
				rc = ctl_usage_error(c, "unknown option %s", a);
			else
				*o->flag = true;
			continue;
		}
		{
			const char *value = a[2] ? a + 2 : (i + 1 < argc ? argv[++i] : NULL);
			char shown[3] = { '-', a[1], '\0' };
			rc = ctl_set_opt(c, o, shown, value);
		}
	}
	if (rc != 0) {
		free(pos);
		return rc;
	}
	*pos_r = pos;
	*npos_r = npos;
	return 0;
}

static int
ctl_collect_user(void *ctx, const struct store_userinfo *ui)
{
	char ***list = ctx;
	size_t n = 0;

	while ((*list)[n] != NULL)
		n++;
	*list = xreallocarray(*list, n + 2, sizeof(char *));
	(*list)[n] = xstrdup(ui->name);
	(*list)[n + 1] = NULL;
	return 0;
}

int
ctl_all_users(struct ctl *c, char ***users_r, struct err *err)
{
	char **users = xcalloc(1, sizeof(char *));

	if (store_user_list(c->store, ctl_collect_user, &users, err) < 0) {
		ctl_list_free(users);
		return -1;
	}
	*users_r = users;
	return 0;
}

int
ctl_check_user_name(const char *name, struct err *err)
{
	if (!store_user_name_valid(name))
		return err_set(err, ERR_INVALID,
		    "invalid user name %s: 1-%d characters of a-z 0-9 . _ + @ -, starting with a letter or digit",
		    log_q(name), STORE_USER_NAME_MAX);
	return 0;
}

int
ctl_open_store(struct ctl *c)
{
	struct store_opts opts;
	struct err err;
	const char *path = c->conf_path;
	const char *role;
	uint64_t epoch;

	if (path == NULL || path[0] == '\0')
		path = getenv("CASTOR_CONFIG");
	if (path == NULL || path[0] == '\0')
		path = "castor.conf";
	if (access(path, R_OK) < 0) {
		fprintf(stderr, "%s: cannot read configuration %s: %s (give -C ROOT/castor.conf or set CASTOR_CONFIG)\n",
		    c->prog, path, strerror(errno));
		return CTL_EXIT_CONFIG;
	}
	c->conf = conf_load(path, &err);
	if (c->conf == NULL) {
		fprintf(stderr, "%s: bad configuration: %s\n", c->prog, err.msg);
		return CTL_EXIT_CONFIG;
	}
	/* as root: act as run_user, so what castorctl creates (user databases,
	 * the sync log) belongs to the user castord's children run as; failover
	 * keeps root in reserve to start castord again (ctl_server_start) */
	if (priv_drop_for_conf(c->conf, c->keep_root, &err) < 0) {
		fprintf(stderr, "%s: cannot switch to the server's user: %s\n", c->prog, err.msg);
		return CTL_EXIT_CONFIG;
	}
	store_opts_from_conf(&opts, c->conf);
	c->store = store_open(conf_dir(c->conf), &opts, &err);
	if (c->store == NULL) {
		if (err.kind == ERR_NOTFOUND) {
			fprintf(stderr, "%s: %s is not a server root (%s); create one with castorctl init\n",
			    c->prog, conf_dir(c->conf), err.msg);
			return CTL_EXIT_CONFIG;
		}
		return ctl_fail(c, &err);
	}
	/* A replica takes changes from its master only: castorctl must not
	 * make its data diverge.  Its store refuses writes (ERR_PERM). */
	if (store_server_get(c->store, &role, &epoch, &err) < 0)
		return ctl_fail(c, &err);
	if (str_eq(role, "replica"))
		store_set_read_only(c->store, true);
	/* castorctl's changes on a master enter the sync log at once, as a
	 * service's do (a no-op on a replica or without channels) */
	if (synchook_attach(c->store, c->conf, &err) < 0)
		return ctl_fail(c, &err);
	return 0;
}

void
ctl_close(struct ctl *c)
{
	if (c->store != NULL) {
		synchook_detach(c->store);
		store_close(&c->store);
	}
	if (c->conf != NULL) {
		conf_free(c->conf);
		c->conf = NULL;
	}
}

int ctl_cmd_sync(struct ctl *c, int argc, char **argv);   /* ctl_sync.c */
int ctl_cmd_verify(struct ctl *c, int argc, char **argv); /* ctl_verify.c */
int ctl_cmd_restore(struct ctl *c, int argc, char **argv); /* ctl_restore.c */
int ctl_cmd_undelete(struct ctl *c, int argc, char **argv); /* ctl_undelete.c */
int ctl_cmd_purge_deleted(struct ctl *c, int argc, char **argv); /* ctl_undelete.c */

int
main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(struct ctl *, int, char **);
	} cmds[] = {
		{ "init", ctl_cmd_init },
		{ "user", ctl_cmd_user },
		{ "sync-password", ctl_cmd_sync_password }, /* ctl_user.c */
		{ "mailbox", ctl_cmd_mailbox },
		{ "import", ctl_cmd_import },
		{ "check", ctl_cmd_check },
		{ "dump", ctl_cmd_dump },
		{ "sync", ctl_cmd_sync },
		{ "verify", ctl_cmd_verify },
		{ "restore-from", ctl_cmd_restore },
		{ "undelete", ctl_cmd_undelete },
		{ "purge-deleted", ctl_cmd_purge_deleted },
		{ "status", ctl_cmd_status },        /* ctl_status.c */
		{ "promote", ctl_cmd_promote },      /* ctl_promote.c */
		{ "demote", ctl_cmd_demote },
		{ "peer-check", ctl_cmd_peer_check },
		{ "failover", ctl_cmd_failover },    /* ctl_failover.c */
		{ "tls-check", ctl_cmd_tls_check },  /* ctl_tls.c */
	};
	struct ctl c;
	int i = 1, rc;
	size_t k;

	memset(&c, 0, sizeof(c));
	c.prog = "castorctl";
	priv_umask();
	log_init("castorctl", LOG_DEST_STDERR);
	if (getenv("CASTOR_LOG_LEVEL") == NULL)
		log_set_level(LOG_LVL_WARN);
	if (failpoint_init() < 0)
		return CTL_EXIT_USAGE;
	/* global options before the command */
	while (i < argc && argv[i][0] == '-') {
		const char *a = argv[i];
		if (str_eq(a, "-h") || str_eq(a, "--help")) {
			ctl_help(stdout);
			return 0;
		}
		if (str_eq(a, "--version")) {
			printf("castorctl %s\n", CASTOR_VERSION);
			return 0;
		}
		if (str_eq(a, "-q")) {
			c.quiet = true;
			i++;
			continue;
		}
		if (str_eq(a, "-C") || str_eq(a, "--config")) {
			if (i + 1 >= argc)
				return ctl_usage_error(&c, "option %s needs a value", a);
			c.conf_path = argv[i + 1];
			i += 2;
			continue;
		}
		if (str_has_prefix(a, "-C")) {
			c.conf_path = a + 2;
			i++;
			continue;
		}
		if (str_has_prefix(a, "--config=")) {
			c.conf_path = a + 9;
			i++;
			continue;
		}
		return ctl_usage_error(&c, "unknown option %s", a);
	}
	if (i >= argc) {
		ctl_help(stderr);
		return CTL_EXIT_USAGE;
	}
	if (str_eq(argv[i], "help")) {
		char *help_argv[] = { (char *)"--help", NULL };

		if (i + 1 >= argc) {
			ctl_help(stdout);
			return 0;
		}
		/* a command's own --help: the one synopsis the man page repeats */
		for (k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++)
			if (str_eq(argv[i + 1], cmds[k].name))
				return cmds[k].fn(&c, 1, help_argv);
		return ctl_usage_error(&c, "help: unknown command %s", log_q(argv[i + 1]));
	}
	for (k = 0; k < sizeof(cmds) / sizeof(cmds[0]); k++) {
		if (str_eq(argv[i], cmds[k].name)) {
			rc = cmds[k].fn(&c, argc - i - 1, argv + i + 1);
			ctl_close(&c);
			return rc;
		}
	}
	return ctl_usage_error(&c, "unknown command %s", log_q(argv[i]));
}
