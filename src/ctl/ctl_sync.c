/*
 * ctl_sync.c - castorctl sync: operator actions on a replication channel.
 *
 *     castorctl sync --allow-deletes CHAN [USER]
 *     castorctl sync --release CHAN [USER]
 *     castorctl sync --verify CHAN
 *
 * Releases the users the channel parked (a refused change: delete-limit,
 * INBOX cannot be deleted, a damaged user; docs/replication.md "Parked
 * users"), USER alone or every one, and lets their deletions past the
 * thresholds (sync_delete_limit, sync_delete_fraction,
 * sync_user_delete_limit) for that one re-sync.  It writes the marker
 * <root>/run/sync-<CHAN>.allow-deletes ("user=USER" when given); the
 * running sync-client notices it within a second, reconnects with HELLO
 * ALLOW-DELETES 1, re-syncs the released users in full (without USER:
 * then one anti-entropy pass), removes the marker and reconnects without
 * the allowance.  --release does the same without the allowance
 * ("deletes=no" in the marker): for a user parked because the replica
 * found it damaged, once `castorctl user reset` there made it whole.
 * Otherwise the marker's content is informational (the time and the pid
 * of castorctl).  --verify writes <root>/run/sync-<CHAN>.verify instead:
 * the running client takes it and runs one anti-entropy pass (the users
 * whose summaries differ are compared in full), e.g. after a user.db was
 * changed by hand and its summary reset.
 */
#include "ctl/ctl.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/str.h"
#include "lib/xalloc.h"

int ctl_cmd_sync(struct ctl *c, int argc, char **argv);

static void
ctl_sync_usage(FILE *f)
{
	fputs("usage: castorctl sync --allow-deletes|--release CHAN [USER]\n"
	      "       castorctl sync --verify CHAN\n"
	      "  release the parked users of CHAN (or USER alone) and re-sync them;\n"
	      "  --allow-deletes lets their deletions past the thresholds once;\n"
	      "  --verify runs one anti-entropy pass now\n", f);
}

int
ctl_cmd_sync(struct ctl *c, int argc, char **argv)
{
	bool allow = false, release = false, verify = false, known = false;
	const struct ctl_opt opts[] = {
		{ "allow-deletes", 0, NULL, NULL, &allow },
		{ "release", 0, NULL, NULL, &release },
		{ "verify", 0, NULL, NULL, &verify },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL, **names;
	int npos = 0, rc;
	size_t n = 0;
	struct buf path = BUF_INIT, body = BUF_INIT;
	struct err err;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		ctl_sync_usage(stdout);
		return 0;
	}
	if (rc != 0)
		return rc;
	if (allow + release + verify != 1 || npos < 1 || npos > (verify ? 1 : 2) ||
	    (npos == 2 && (pos[1][0] == '\0' || strlen(pos[1]) > 64 || strpbrk(pos[1], "\r\n\t ") != NULL))) {
		free(pos);
		return ctl_usage_error(c, "sync --allow-deletes|--release CHAN [USER]"
			" | --verify CHAN (exactly one of the three; USER a user name)");
	}
	if ((rc = ctl_open_store(c)) != 0) {
		free(pos);
		return rc;
	}
	names = conf_get_list(c->conf, "sync_channels", &n);
	for (size_t i = 0; names != NULL && i < n; i++)
		if (str_eq(names[i], pos[0]))
			known = true;
	conf_list_free(names);
	if (!known) {
		err_set(&err, ERR_NOTFOUND, "no channel %s in sync_channels", pos[0]);
		free(pos);
		return ctl_fail(c, &err);
	}
	buf_printf(&path, "%s/run", conf_dir(c->conf));
	(void)mkdir(buf_cstr(&path), 0750);
	buf_printf(&path, "/sync-%s.%s", pos[0], verify ? "verify" : "allow-deletes");
	buf_printf(&body, "time=%lld pid=%ld\n", (long long)time(NULL), (long)getpid());
	if (npos == 2)
		buf_printf(&body, "user=%s\n", pos[1]);
	if (release)
		buf_puts(&body, "deletes=no\n");
	if (atomicfile_write(buf_cstr(&path), body.data, body.len, 0640, &err) < 0) {
		buf_free(&path);
		buf_free(&body);
		free(pos);
		return ctl_fail(c, &err);
	}
	if (!c->quiet && verify)
		printf("channel %s: one anti-entropy pass asked for (%s)\n", pos[0], buf_cstr(&path));
	else if (!c->quiet && npos == 2)
		printf("channel %s: user %s is released and re-synced%s (%s)\n", pos[0], pos[1],
			release ? "" : ", deletions allowed once", buf_cstr(&path));
	else if (!c->quiet)
		printf("channel %s: parked users are released%s (%s)\n", pos[0],
			release ? " and re-synced" : " and the next pass may delete past the thresholds",
			buf_cstr(&path));
	buf_free(&path);
	buf_free(&body);
	free(pos);
	return CTL_EXIT_OK;
}
