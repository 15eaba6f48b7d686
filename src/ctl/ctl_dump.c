/*
 * ctl_dump.c - castorctl dump [--for-compare] USER|--all.
 *
 * A readable, stable listing of a user's store, one object per line,
 * meant to be diffed (replication tests compare master and replica):
 *
 *     user alice password=3f2a9c0d1e4b5a69 modseq=42
 *     mailbox "INBOX" uniqueid=... uidvalidity=... uidnext=3 highestmodseq=41 checksum=0c1d2e3f specialuse=""
 *       record uid=1 guid=... size=1234 modseq=40 internaldate=2025-11-27T00:28:00Z flags=(\Seen $Forwarded)
 *     subscribed "INBOX"
 *
 * Order: users by name, mailboxes by name (then uniqueid), records by
 * uid, subscriptions by name.  `password` is a fingerprint (the first
 * 16 hex digits of the SHA-1 of the stored hash), never the hash; "none"
 * when the user has no password.
 *
 * The full form also shows what is local to one server or not yet
 * purged: the user's modseq counter and quota usage, mailbox
 * createdmodseq and row modseq, deleted mailboxes (deleted_modseq=...)
 * and expunged records (expunged_modseq=...).  --for-compare leaves
 * those out and keeps only what two servers that are in sync must agree
 * on, so `diff` of two --for-compare dumps is empty exactly when they
 * hold the same mail.
 */
#include "ctl/ctl.h"

#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/store.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

struct ctl_dump {
	bool compare;
	struct store_mailbox *mbs;
	size_t n, cap;
	char **subs;
	size_t nsubs, capsubs;
	struct buf line;
	struct buf flags;
};

static void
ctl_dump_quoted(struct buf *b, const char *s)
{
	buf_put_quoted(b, s, strlen(s));
}

static int
ctl_dump_collect_mb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct ctl_dump *d = ctx;

	(void)name;
	if (mb == NULL)
		return 0;
	if (d->compare && ((attrs & STORE_MBATTR_DELETED) || mb->deleted_modseq != 0))
		return 0;
	if (d->n == d->cap) {
		d->cap = d->cap ? d->cap * 2 : 16;
		d->mbs = xreallocarray(d->mbs, d->cap, sizeof(*d->mbs));
	}
	d->mbs[d->n++] = *mb;
	return 0;
}

static int
ctl_dump_collect_sub(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct ctl_dump *d = ctx;

	(void)mb;
	if (!(attrs & STORE_MBATTR_SUBSCRIBED))
		return 0;
	if (d->nsubs == d->capsubs) {
		d->capsubs = d->capsubs ? d->capsubs * 2 : 16;
		d->subs = xreallocarray(d->subs, d->capsubs, sizeof(char *));
	}
	d->subs[d->nsubs++] = xstrdup(name);
	return 0;
}

static int
ctl_dump_mb_cmp(const void *a, const void *b)
{
	const struct store_mailbox *x = a, *y = b;
	int r = strcmp(x->name, y->name);

	return r ? r : strcmp(x->uniqueid, y->uniqueid);
}

static int
ctl_dump_str_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int
ctl_dump_record(void *ctx, const struct store_record *r)
{
	struct ctl_dump *d = ctx;
	char when[32] = "?";
	time_t t = (time_t)r->internaldate;
	struct tm tm;

	if (d->compare && r->expunged_modseq != 0)
		return 0;
	if (gmtime_r(&t, &tm) != NULL)
		strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	buf_reset(&d->flags);
	store_flags_format(r->sysflags, r->keywords, &d->flags);
	buf_reset(&d->line);
	buf_printf(&d->line, "  record uid=%u guid=%s size=%llu modseq=%llu internaldate=%s flags=(%s)",
	    r->uid, r->guid, (unsigned long long)r->size, (unsigned long long)r->modseq, when,
	    buf_cstr(&d->flags));
	if (r->expunged_modseq != 0)
		buf_printf(&d->line, " expunged_modseq=%llu", (unsigned long long)r->expunged_modseq);
	buf_putc(&d->line, '\n');
	fwrite(d->line.data, 1, d->line.len, stdout);
	return 0;
}

struct ctl_dump_fp {
	const char *user;
	char fp[STORE_GUID_LEN + 1];
	bool found;
};

/* store_user_info() does not hand out the hash (its statement is gone by
 * then); the list callback does. */
static int
ctl_dump_fp_cb(void *ctx, const struct store_userinfo *ui)
{
	struct ctl_dump_fp *f = ctx;

	if (!str_eq(ui->name, f->user))
		return 0;
	f->found = true;
	if (ui->hash != NULL)
		store_guid(ui->hash, strlen(ui->hash), f->fp);
	else
		str_lcpy(f->fp, "none", sizeof(f->fp));
	f->fp[16] = '\0';
	return 1;
}

/* 0 dumped, -1 with err; 1 the user is gone (deleted since it was
 * listed: --all skips it, a live replica deletes users as it applies). */
static int
ctl_dump_user(struct ctl *c, const char *user, bool compare, struct err *err)
{
	struct ctl_dump d;
	struct ctl_dump_fp fp = { user, "none", false };
	struct store_user *u;
	uint64_t modseq;
	size_t i;
	int rc = -1;

	memset(&d, 0, sizeof(d));
	d.compare = compare;
	if (store_user_list(c->store, ctl_dump_fp_cb, &fp, err) < 0)
		return -1;
	if (!fp.found) {
		err_set(err, ERR_NOTFOUND, "no such user: %s", user);
		return 1;
	}
	u = store_user_open(c->store, user, err);
	if (u == NULL) {
		struct err e2;

		fp.found = false;
		if (store_user_list(c->store, ctl_dump_fp_cb, &fp, &e2) == 0 && !fp.found)
			return 1;
		return -1;
	}
	buf_printf(&d.line, "user %s password=%s", user, fp.fp);
	if (!compare) {
		struct store_quota q;
		if (store_user_modseq(u, &modseq, err) < 0 || store_quota_get(u, &q, err) < 0)
			goto out;
		buf_printf(&d.line, " modseq=%llu used_bytes=%llu used_messages=%llu",
		    (unsigned long long)modseq, (unsigned long long)q.used_bytes,
		    (unsigned long long)q.used_messages);
	}
	buf_putc(&d.line, '\n');
	fwrite(d.line.data, 1, d.line.len, stdout);

	if (store_mailbox_list(u, "*", STORE_LIST_NO_PARENTS | (compare ? 0 : STORE_LIST_DELETED),
	    ctl_dump_collect_mb, &d, err) < 0)
		goto out;
	if (d.n > 1)
		qsort(d.mbs, d.n, sizeof(*d.mbs), ctl_dump_mb_cmp);
	for (i = 0; i < d.n; i++) {
		const struct store_mailbox *mb = &d.mbs[i];

		buf_reset(&d.line);
		buf_puts(&d.line, "mailbox ");
		ctl_dump_quoted(&d.line, mb->name);
		buf_printf(&d.line, " uniqueid=%s uidvalidity=%u uidnext=%u highestmodseq=%llu checksum=%08x specialuse=",
		    mb->uniqueid, mb->uidvalidity, mb->uidnext, (unsigned long long)mb->highestmodseq,
		    mb->sync_crc);
		ctl_dump_quoted(&d.line, mb->specialuse);
		if (!compare)
			buf_printf(&d.line, " createdmodseq=%llu modseq=%llu", (unsigned long long)mb->createdmodseq,
			    (unsigned long long)mb->modseq);
		if (mb->deleted_modseq != 0)
			buf_printf(&d.line, " deleted_modseq=%llu", (unsigned long long)mb->deleted_modseq);
		buf_putc(&d.line, '\n');
		fwrite(d.line.data, 1, d.line.len, stdout);
		if (store_records_since(u, mb->uniqueid, 0, ctl_dump_record, &d, err) < 0)
			goto out;
	}
	if (store_mailbox_list(u, "*", STORE_LIST_SUBSCRIBED | STORE_LIST_NO_PARENTS,
	    ctl_dump_collect_sub, &d, err) < 0)
		goto out;
	if (d.nsubs > 1)
		qsort(d.subs, d.nsubs, sizeof(char *), ctl_dump_str_cmp);
	for (i = 0; i < d.nsubs; i++) {
		buf_reset(&d.line);
		buf_puts(&d.line, "subscribed ");
		ctl_dump_quoted(&d.line, d.subs[i]);
		buf_putc(&d.line, '\n');
		fwrite(d.line.data, 1, d.line.len, stdout);
	}
	rc = 0;
out:
	store_user_close(&u);
	for (i = 0; i < d.nsubs; i++)
		free(d.subs[i]);
	free(d.subs);
	free(d.mbs);
	buf_free(&d.line);
	buf_free(&d.flags);
	return rc;
}

int
ctl_cmd_dump(struct ctl *c, int argc, char **argv)
{
	bool compare = false, all = false;
	const struct ctl_opt opts[] = {
		{ "for-compare", 0, NULL, NULL, &compare },
		{ "all", 'a', NULL, NULL, &all },
		{ NULL, 0, NULL, NULL, NULL },
	};
	static char outbuf[1 << 16];
	char **pos = NULL, **users = NULL;
	int npos = 0, rc;
	struct err err;
	size_t i;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl dump [--for-compare] USER|--all\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	if ((rc = ctl_users_arg(c, all, pos, npos, "dump [--for-compare] USER|--all", &users)) != 0)
		return rc;
	setvbuf(stdout, outbuf, _IOFBF, sizeof(outbuf));
	rc = 0;
	for (i = 0; users[i] != NULL; i++) {
		int r = ctl_dump_user(c, users[i], compare, &err);

		if (r < 0 || (r > 0 && !all)) {
			fflush(stdout);
			rc = ctl_fail(c, &err);
			break;
		}
	}
	if (fflush(stdout) != 0 && rc == 0) {
		err_errno(&err, ERR_TEMP, "write to stdout");
		rc = ctl_fail(c, &err);
	}
	ctl_list_free(users);
	return rc;
}
