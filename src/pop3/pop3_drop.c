/*
 * pop3_drop.c - the POP3 maildrop: an exclusive lock per user across
 * processes, the message list taken at login, and UPDATE.
 *
 * Lock: flock(LOCK_EX | LOCK_NB) on <root>/run/pop3/<user>.lock, held
 * for the whole session and released by the kernel when the process
 * ends however it ends, so a crashed session never leaves a stale
 * lock.  A second POP3 session for the same user gets [IN-USE] (RFC
 * 2449).  IMAP sessions are not excluded: they see the store directly.
 *
 * Message list: a store snapshot of INBOX taken after the lock, so
 * message numbers are stable for the session (RFC 1939).  Messages
 * IMAP expunges meanwhile stay listed; their bodies stay readable until
 * the store purges them.
 *
 * UPDATE: one store_expunge() of exactly the uids marked deleted: the
 * store commits it as one transaction, so either every DELE'd message
 * is gone or none is (RFC 1939 section 6).
 *
 * UIDL: "<uidvalidity>.<uid>" (as Cyrus).  Both numbers are replicated
 * verbatim, so after a failover the replica gives the same UIDLs and
 * clients that "leave mail on server" download nothing twice.
 */
#include "pop3/pop3.h"

#include "lib/atomicfile.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

static int
pop3_drop_lock(struct pop3_drop *d, struct store *st, const char *user, struct err *err)
{
	struct buf p = BUF_INIT;
	int fd;

	buf_printf(&p, "%s/run/pop3", store_root(st));
	if (atomicfile_mkdir_p(buf_cstr(&p), 0750, err) < 0) {
		buf_free(&p);
		return -1;
	}
	buf_printf(&p, "/%s.lock", user);
	fd = open(buf_cstr(&p), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0640);
	if (fd < 0) {
		err_errno(err, ERR_TEMP, "open %s", buf_cstr(&p));
		buf_free(&p);
		return -1;
	}
	buf_free(&p);
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno == EINTR)
			continue;
		close(fd);
		if (errno == EWOULDBLOCK)
			return 1;
		return err_errno(err, ERR_TEMP, "flock maildrop lock");
	}
	d->lock_fd = fd;
	return 0;
}

int
pop3_drop_open(struct pop3_drop *d, struct store *st, const char *user, struct err *err)
{
	struct store_mailbox mb;
	struct store_snapshot *snap = NULL;
	int rc;

	memset(d, 0, sizeof(*d));
	d->lock_fd = -1;
	str_lcpy(d->user, user, sizeof(d->user));
	rc = pop3_drop_lock(d, st, user, err);
	if (rc != 0)
		return rc;
	d->u = store_user_open(st, user, err);
	if (d->u == NULL)
		goto fail;
	if (store_mailbox_get(d->u, "INBOX", &mb, err) < 0)
		goto fail;
	str_lcpy(d->mbox_id, mb.uniqueid, sizeof(d->mbox_id));
	if (store_snapshot_open(d->u, d->mbox_id, STORE_SNAP_META, &snap, err) < 0)
		goto fail;
	d->uidvalidity = snap->uidvalidity;
	d->m = xcalloc(snap->n ? snap->n : 1, sizeof(*d->m));
	for (size_t i = 0; i < snap->n; i++) {
		if (snap->recs[i].expunged)
			continue;
		d->m[d->n].uid = snap->recs[i].uid;
		d->m[d->n].size = snap->recs[i].size;
		memcpy(d->m[d->n].guid, snap->recs[i].guid, sizeof(d->m[d->n].guid));
		d->size_live += snap->recs[i].size;
		d->n++;
	}
	store_snapshot_free(&snap);
	return 0;
fail:
	pop3_drop_close(d);
	return -1;
}

void
pop3_drop_uidl(const struct pop3_drop *d, size_t i, char *out, size_t size)
{
	snprintf(out, size, "%u.%u", d->uidvalidity, d->m[i].uid);
}

int
pop3_drop_update(struct pop3_drop *d, size_t *expunged_r, struct err *err)
{
	struct store_range *r;
	struct store_uids done = { 0 };
	size_t nr = 0;
	int rc;

	*expunged_r = 0;
	if (d->ndeleted == 0)
		return 0;
	/* the list is in uid order: coalesce runs into ranges */
	r = xcalloc(d->ndeleted, sizeof(*r));
	for (size_t i = 0; i < d->n; i++) {
		if (!d->m[i].deleted)
			continue;
		if (nr > 0 && r[nr - 1].hi + 1 == d->m[i].uid) {
			r[nr - 1].hi = d->m[i].uid;
		} else {
			r[nr].lo = r[nr].hi = d->m[i].uid;
			nr++;
		}
	}
	rc = store_expunge(d->u, d->mbox_id, r, nr, false, &done, err);
	if (rc == 0)
		*expunged_r = done.n;
	store_uids_free(&done);
	free(r);
	return rc;
}

void
pop3_drop_close(struct pop3_drop *d)
{
	store_user_close(&d->u);
	free(d->m);
	d->m = NULL;
	d->n = 0;
	if (d->lock_fd >= 0)
		close(d->lock_fd);
	d->lock_fd = -1;
}
