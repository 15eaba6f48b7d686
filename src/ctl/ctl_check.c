/*
 * ctl_check.c - castorctl check [--repair] USER|--all.
 *
 * Wraps store_check(): each problem is printed as "USER: problem" on
 * stdout, then one summary line per user.  Exit 0 when every user is
 * clean, 1 (CTL_EXIT_PROBLEMS) when anything is wrong.  With --repair
 * the store fixes what it can and each repaired user is checked again:
 * the exit code says whether problems remain after the repair.
 *
 * A damaged user (store_user_open: ERR_DAMAGED, docs/store.md) is a
 * problem --repair does not touch: the line names the way out
 * (restore-from, user reset).  With --all, a spool holding a user.db
 * but no users row is reported the same way.
 */
#include "ctl/ctl.h"

#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

struct ctl_check_report {
	const char *user;
	bool print;
};

static void
ctl_check_line(void *ctx, const char *line)
{
	const struct ctl_check_report *r = ctx;
	size_t n = strlen(r->user);

	if (!r->print)
		return;
	/* the store may already name the user: "user alice: ..." */
	if (str_has_prefix(line, "user ") && strncmp(line + 5, r->user, n) == 0 && line[5 + n] == ':')
		line += 5 + n + 1;
	while (*line == ' ')
		line++;
	printf("%s: %s\n", r->user, line);
}

static void
ctl_check_damaged(const char *user, const char *why)
{
	printf("%s: damaged: %s (castorctl restore-from CHAN %s, or castorctl user reset %s)\n",
	    user, why, user, user);
}

static int
ctl_check_orphan(void *ctx, const char *user)
{
	size_t *n = ctx;

	printf("%s: damaged: a user database without a users row (castorctl restore-from CHAN %s,"
	    " or castorctl user add %s to start afresh; both keep it in deleted/)\n", user, user,
	    user);
	(*n)++;
	return 0;
}

int
ctl_cmd_check(struct ctl *c, int argc, char **argv)
{
	bool repair = false, all = false;
	const struct ctl_opt opts[] = {
		{ "repair", 'r', NULL, NULL, &repair },
		{ "all", 'a', NULL, NULL, &all },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL, **users = NULL;
	int npos = 0, rc, exit_code = CTL_EXIT_OK;
	size_t i, bad_users = 0;
	struct err err;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl check [--repair] USER|--all\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	if ((rc = ctl_users_arg(c, all, pos, npos, "check [--repair] USER|--all", &users)) != 0)
		return rc;
	for (i = 0; users[i] != NULL; i++) {
		struct ctl_check_report r = { users[i], true };
		int found = store_check(c->store, users[i], repair, ctl_check_line, &r, &err);

		if (found < 0 && err.kind == ERR_DAMAGED) {
			const char *why = strstr(err.msg, "damaged: ");
			ctl_check_damaged(users[i], why != NULL ? why + 9 : err.msg);
			bad_users++;
			if (exit_code == CTL_EXIT_OK)
				exit_code = CTL_EXIT_PROBLEMS;
			continue;
		}
		if (found < 0) {
			/* one user's failure does not stop --all; the worst exit code wins */
			int code = ctl_fail(c, &err);
			if (exit_code == CTL_EXIT_OK || exit_code == CTL_EXIT_PROBLEMS)
				exit_code = code;
			bad_users++;
			continue;
		}
		if (found == 0) {
			if (!c->quiet)
				printf("%s: clean\n", users[i]);
			continue;
		}
		if (repair) {
			int left;

			r.print = false;
			left = store_check(c->store, users[i], false, ctl_check_line, &r, &err);
			if (left < 0) {
				int code = ctl_fail(c, &err);
				if (exit_code == CTL_EXIT_OK || exit_code == CTL_EXIT_PROBLEMS)
					exit_code = code;
				bad_users++;
				continue;
			}
			if (left == 0) {
				printf("%s: %d problem%s found and repaired\n", users[i], found, found == 1 ? "" : "s");
				continue;
			}
			printf("%s: %d problem%s found, %d left after repair\n", users[i], found,
			    found == 1 ? "" : "s", left);
		} else {
			printf("%s: %d problem%s found (castorctl check --repair %s)\n", users[i], found,
			    found == 1 ? "" : "s", users[i]);
		}
		bad_users++;
		if (exit_code == CTL_EXIT_OK)
			exit_code = CTL_EXIT_PROBLEMS;
	}
	if (all) {
		size_t orphans = 0;

		if (store_spool_orphans(c->store, ctl_check_orphan, &orphans, &err) < 0) {
			int code = ctl_fail(c, &err);
			if (exit_code == CTL_EXIT_OK || exit_code == CTL_EXIT_PROBLEMS)
				exit_code = code;
		}
		bad_users += orphans;
		if (orphans > 0 && exit_code == CTL_EXIT_OK)
			exit_code = CTL_EXIT_PROBLEMS;
	}
	if (all && !c->quiet)
		printf("checked %zu user%s: %zu with problems\n", i, i == 1 ? "" : "s", bad_users);
	ctl_list_free(users);
	return exit_code;
}
