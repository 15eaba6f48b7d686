/*
 * ctl_restore.c - castorctl restore-from: repair this server from its
 * replica.
 *
 *     castorctl restore-from CHAN USER
 *
 * For a master whose user database was damaged (rows lost, a truncated
 * user.db): after `castorctl check --repair USER` made the database
 * usable again, this copies every live mailbox of USER on the replica of
 * channel CHAN, with its UIDVALIDITY, UIDs, flags, modseqs and bodies,
 * back into this server (syncpush_restore_user: additive, nothing here is
 * deleted; a mailbox that holds a restored name is renamed "<name>
 * (before restore)").  Replication does not delete on the replica what
 * the master lost (docs/replication.md "Deletion safety"), so the replica
 * is the good copy.  A user damaged beyond --repair (user.db missing,
 * empty, cut short, another schema or identity: docs/store.md) needs no
 * check first: its spool goes to deleted/ and a fresh database is filled.
 * Run it on the master; a replica refuses writes.
 *
 * Exit: 0 restored; 11 (CTL_EXIT_CONFLICT) restored, but some UIDs name
 * other messages here (left alone, listed in the log); else the error's
 * code.
 */
#include "ctl/ctl.h"
#include "ctl/ctl_repl.h"

#include <stdlib.h>
#include <string.h>

#include "lib/atomicfile.h"
#include "lib/str.h"
#include "sync/synchook.h"

int ctl_cmd_restore(struct ctl *c, int argc, char **argv);

int
ctl_cmd_restore(struct ctl *c, int argc, char **argv)
{
	struct ctl_repl v;
	struct syncpush_restore res;
	char **pos = NULL;
	int npos = 0, rc;
	struct err err;

	memset(&v, 0, sizeof(v));
	rc = ctl_parse(c, argc, argv, NULL, &pos, &npos);
	if (rc < 0) {
		puts("usage: castorctl restore-from CHAN USER");
		return 0;
	}
	if (rc != 0)
		return rc;
	if (npos != 2) {
		free(pos);
		return ctl_usage_error(c, "restore-from CHAN USER");
	}
	if (ctl_check_user_name(pos[1], &err) < 0) {
		free(pos);
		return ctl_fail(c, &err);
	}
	if ((rc = ctl_open_store(c)) != 0)
		goto out;
	if (ctl_repl_connect(c, &v, pos[0], &err) < 0 ||
	    syncpush_restore_user(v.push, pos[1], &res, &err) < 0) {
		rc = ctl_fail(c, &err);
		goto out;
	}
	printf("restored user %s from channel %s: %zu mailboxes, %zu records, %zu bodies fetched",
		pos[1], pos[0], res.mailboxes, res.records, res.blobs);
	if (res.renamed > 0)
		printf(", %zu mailboxes renamed \"(before restore)\"", res.renamed);
	if (res.conflicts > 0)
		printf(", %zu UIDs left alone (they name other messages here)", res.conflicts);
	if (res.user_created)
		printf(" (user created without a password: set one with castorctl user passwd)");
	putchar('\n');
	{
		/* the store_repl_* writes bypass the sync log: have every
		 * channel compare this server with its replica again */
		struct buf mp = BUF_INIT;
		synchook_failed_marker(conf_dir(c->conf), &mp);
		if (atomicfile_write(buf_cstr(&mp), "restore-from\n", 13, 0640, &err) < 0)
			fprintf(stderr, "%s: warning: %s (run sync-client -A to replicate)\n", c->prog,
				err.msg);
		buf_free(&mp);
	}
	rc = res.conflicts > 0 ? CTL_EXIT_CONFLICT : CTL_EXIT_OK;
out:
	ctl_repl_close(&v);
	free(pos);
	return rc;
}
