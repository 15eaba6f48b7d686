/*
 * ctl_undelete.c - castorctl undelete: bring a deleted mailbox back.
 *
 *     castorctl undelete USER MAILBOX
 *
 * A deleted mailbox stays in the user's database as a tombstone with its
 * records and bodies (store_mailbox_delete) until store_purge removes
 * it.  Undelete turns the newest tombstone named MAILBOX live again with
 * the same uniqueid, UIDVALIDITY, UIDs, flags and bodies, and a fresh
 * modseq (store_repl_mailbox), then lets store_check recompute the
 * derived values (checksum, quota usage).  Refused when a live mailbox
 * holds the name (ERR_EXISTS) or no tombstone of that name is left
 * (ERR_NOTFOUND, purged).  The replicas follow: the next sync pass sends
 * the mailbox whole with APPLY MAILBOX UNDELETE 1, and the replica's
 * tombstone comes back to life (docs/sync-protocol.md); this command
 * touches <root>/run/sync-append-failed so every channel runs that pass
 * at once.  A replica refuses (read-only store).
 */
#include "ctl/ctl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/atomicfile.h"
#include "lib/conf.h"
#include "lib/log.h"
#include "lib/str.h"
#include "store/store.h"
#include "store/store_repl.h"
#include "sync/synchook.h"

int ctl_cmd_undelete(struct ctl *c, int argc, char **argv);

struct ctl_undelete_find {
	const char *name;
	struct store_mailbox best;
	bool found, live;
};

static int
ctl_undelete_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct ctl_undelete_find *f = ctx;

	if (mb == NULL || !str_eq(name, f->name))
		return 0;
	if (!(attrs & STORE_MBATTR_DELETED) && mb->deleted_modseq == 0) {
		f->live = true;
		return 0;
	}
	if (!f->found || mb->deleted_modseq > f->best.deleted_modseq) {
		f->best = *mb;
		f->found = true;
	}
	return 0;
}

int
ctl_cmd_undelete(struct ctl *c, int argc, char **argv)
{
	struct ctl_undelete_find f;
	struct store_user *u = NULL;
	struct store_mailbox mb;
	char norm[STORE_MBOX_NAME_MAX + 1];
	char **pos = NULL;
	int npos = 0, rc;
	uint64_t m0 = 0;
	struct err err;

	rc = ctl_parse(c, argc, argv, NULL, &pos, &npos);
	if (rc < 0) {
		puts("usage: castorctl undelete USER MAILBOX");
		return 0;
	}
	if (rc != 0)
		return rc;
	if (npos != 2) {
		free(pos);
		return ctl_usage_error(c, "undelete USER MAILBOX");
	}
	if ((rc = ctl_open_store(c)) != 0)
		goto out;
	if (ctl_check_user_name(pos[0], &err) < 0 ||
	    store_mailbox_name_check(pos[1], norm, &err) < 0 ||
	    (u = store_user_open(c->store, pos[0], &err)) == NULL) {
		rc = ctl_fail(c, &err);
		goto out;
	}
	memset(&f, 0, sizeof(f));
	f.name = norm;
	if (store_mailbox_list(u, "*", STORE_LIST_DELETED | STORE_LIST_NO_PARENTS, ctl_undelete_cb,
	    &f, &err) < 0) {
		rc = ctl_fail(c, &err);
		goto out;
	}
	if (f.live) {
		err_set(&err, ERR_EXISTS, "a mailbox %s exists: rename it first", log_q(norm));
		rc = ctl_fail(c, &err);
		goto out;
	}
	if (!f.found) {
		err_set(&err, ERR_NOTFOUND, "no deleted mailbox %s of user %s is held (purged?)",
			log_q(norm), pos[0]);
		rc = ctl_fail(c, &err);
		goto out;
	}
	if (store_txn_begin(u, &err) < 0)
		goto fail;
	if (store_user_modseq(u, &m0, &err) < 0) {
		store_txn_rollback(u);
		goto fail;
	}
	mb = f.best;
	mb.deleted_modseq = 0;
	mb.modseq = m0 + 1;
	if (mb.highestmodseq < mb.modseq)
		mb.highestmodseq = mb.modseq;
	if (store_repl_mailbox(u, &mb, &err) < 0 || store_repl_modseq(u, m0 + 1, &err) < 0) {
		store_txn_rollback(u);
		goto fail;
	}
	if (store_txn_commit(u, &err) < 0)
		goto fail;
	store_deleted_forget(u, mb.uniqueid);
	store_user_close(&u);
	if (store_check(c->store, pos[0], true, NULL, NULL, &err) < 0)
		goto fail;
	{
		struct buf mp = BUF_INIT;
		synchook_failed_marker(conf_dir(c->conf), &mp);
		if (atomicfile_write(buf_cstr(&mp), "undelete\n", 9, 0640, &err) < 0)
			fprintf(stderr, "%s: warning: %s (replicas follow at the next anti-entropy pass)\n",
				c->prog, err.msg);
		buf_free(&mp);
	}
	if (!c->quiet)
		printf("undeleted mailbox %s of user %s (uniqueid %s)\n", norm, pos[0], mb.uniqueid);
	rc = CTL_EXIT_OK;
	goto out;
fail:
	rc = ctl_fail(c, &err);
out:
	store_user_close(&u);
	free(pos);
	return rc;
}

/*
 *     castorctl purge-deleted [--now SECONDS] USER|--all
 *
 * The EVENTS entry of delete_hold_days (default 7): removes every deleted
 * mailbox whose deletion note in <root>/deleted/<user>/ is at least that
 * many days old (store_purge_deleted); younger ones stay undeletable.
 * --now (tests) sets the clock.  Prints one line per user with something
 * purged or held unless -q.  A replica purges its own tombstones the same
 * way (its notes are written when APPLY DELETE arrives).
 */
int ctl_cmd_purge_deleted(struct ctl *c, int argc, char **argv);

int
ctl_cmd_purge_deleted(struct ctl *c, int argc, char **argv)
{
	bool all = false;
	const char *now_s = NULL;
	const struct ctl_opt opts[] = {
		{ "all", 0, NULL, NULL, &all },
		{ "now", 0, &now_s, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL, **users = NULL;
	int npos = 0, rc, exit_code = CTL_EXIT_OK;
	int64_t days, now = (int64_t)time(NULL);
	struct err err;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		puts("usage: castorctl purge-deleted [--now SECONDS] USER|--all");
		return 0;
	}
	if (rc > 0)
		return rc;
	if (now_s != NULL) {
		char *end;
		long long v = strtoll(now_s, &end, 10);
		if (*now_s == '\0' || *end != '\0' || v < 0) {
			free(pos);
			return ctl_usage_error(c, "--now takes unix seconds");
		}
		now = (int64_t)v;
	}
	if ((rc = ctl_users_arg(c, all, pos, npos, "purge-deleted [--now SECONDS] USER|--all",
		&users)) != 0)
		return rc;
	days = conf_get_int(c->conf, "delete_hold_days", 7);
	if (days < 0)
		days = 0;
	for (size_t i = 0; users[i] != NULL; i++) {
		struct store_user *u = store_user_open(c->store, users[i], &err);
		size_t purged = 0, held = 0;

		if (u == NULL || store_purge_deleted(u, days * 86400, now, &purged, &held, &err) < 0) {
			int code = ctl_fail(c, &err);
			if (exit_code == CTL_EXIT_OK)
				exit_code = code;
			store_user_close(&u);
			continue;
		}
		store_user_close(&u);
		if (!c->quiet && (purged > 0 || held > 0))
			printf("user %s: purged %zu deleted mailboxes, %zu held (delete_hold_days %lld)\n",
				users[i], purged, held, (long long)days);
	}
	ctl_list_free(users);
	return exit_code;
}
