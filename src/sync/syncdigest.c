/*
 * syncdigest.c - the anti-entropy key of a user (syncdigest.h).
 */
#include "sync/syncdigest.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

#include "lib/str.h"
#include "lib/xalloc.h"
#include "sync/synclog.h"

struct dmb {
	char uniqueid[STORE_UNIQUEID_LEN + 1];
	char *line;
};

struct dctx {
	struct dmb *v;
	size_t n, cap;
	struct buf subs;
};

static int
dmb_cmp(const void *a, const void *b)
{
	return strcmp(((const struct dmb *)a)->uniqueid, ((const struct dmb *)b)->uniqueid);
}

static int
mb_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct dctx *d = ctx;
	struct buf l = BUF_INIT;

	(void)name;
	(void)attrs;
	if (mb == NULL || mb->deleted_modseq != 0)
		return 0;
	if (d->n == d->cap) {
		d->cap = d->cap ? 2 * d->cap : 16;
		d->v = xreallocarray(d->v, d->cap, sizeof(*d->v));
	}
	buf_printf(&l, "%s\n%s\n%u %llu %u %s\n", mb->uniqueid, mb->name, mb->uidvalidity,
		(unsigned long long)mb->highestmodseq, mb->sync_crc, mb->specialuse);
	str_lcpy(d->v[d->n].uniqueid, mb->uniqueid, sizeof(d->v[d->n].uniqueid));
	d->v[d->n].line = buf_steal(&l);
	d->n++;
	return 0;
}

static int
sub_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct dctx *d = ctx;

	(void)mb;
	if (attrs & STORE_MBATTR_SUBSCRIBED) {
		buf_puts(&d->subs, name);
		buf_putc(&d->subs, '\n');
	}
	return 0;
}

int
syncdigest_user(struct store_user *u, const char *hash, int64_t quota_bytes,
	int64_t quota_messages, uint32_t *digest_r, struct err *err)
{
	struct dctx d;
	uint32_t crc = 0;
	char line[128];
	int rc = -1;

	memset(&d, 0, sizeof(d));
	if (store_mailbox_list(u, "*", STORE_LIST_NO_PARENTS, mb_cb, &d, err) < 0)
		goto out;
	if (store_mailbox_list(u, "*", STORE_LIST_SUBSCRIBED, sub_cb, &d, err) < 0)
		goto out;
	if (d.n > 1)
		qsort(d.v, d.n, sizeof(*d.v), dmb_cmp);
	for (size_t i = 0; i < d.n; i++)
		crc = synclog_crc32c(crc, d.v[i].line, strlen(d.v[i].line));
	crc = synclog_crc32c(crc, "subs\n", 5);
	crc = synclog_crc32c(crc, d.subs.data ? d.subs.data : "", d.subs.len);
	if (hash != NULL) {
		unsigned char md[32];
		unsigned int n = 0;
		char hex[65];
		EVP_Digest(hash, strlen(hash), md, &n, EVP_sha256(), NULL);
		str_hex(md, n, hex);
		crc = synclog_crc32c(crc, hex, strlen(hex));
	}
	snprintf(line, sizeof(line), "\nquota %lld %lld\n", (long long)quota_bytes,
		(long long)quota_messages);
	crc = synclog_crc32c(crc, line, strlen(line));
	*digest_r = crc;
	rc = 0;
out:
	for (size_t i = 0; i < d.n; i++)
		free(d.v[i].line);
	free(d.v);
	buf_free(&d.subs);
	return rc;
}

struct uent {
	char *name;
	char *hash;
	int64_t qb, qm;
};

struct ulist {
	struct uent *v;
	size_t n, cap;
};

static int
name_cb(void *ctx, const struct store_userinfo *ui)
{
	struct ulist *l = ctx;

	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n].name = xstrdup(ui->name);
	l->v[l->n].hash = ui->hash != NULL ? xstrdup(ui->hash) : NULL;
	l->v[l->n].qb = ui->quota_bytes;
	l->v[l->n].qm = ui->quota_messages;
	l->n++;
	return 0;
}

int
syncdigest_users(struct store *st, syncdigest_fn fn, void *ctx, struct err *err)
{
	struct ulist l = { NULL, 0, 0 };
	int rc = 0;

	if (store_user_list(st, name_cb, &l, err) < 0)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		struct store_user *u = store_user_open(st, l.v[i].name, err);
		uint64_t modseq = 0;
		uint32_t digest = 0;

		if (u == NULL) {
			if (err->kind == ERR_NOTFOUND)
				continue;   /* deleted meanwhile */
			if (err->kind == ERR_DAMAGED) {
				/* listed, never left out (a user left out looks deleted
				 * or new to the other side): modseq 0 and digest 0
				 * differ from any real state, so the user is compared
				 * in full and refused there, by name */
				rc = fn(ctx, l.v[i].name, 0, 0);
				continue;
			}
			rc = -1;
			break;
		}
		if (store_user_modseq(u, &modseq, err) < 0 ||
		    syncdigest_user(u, l.v[i].hash, l.v[i].qb, l.v[i].qm, &digest, err) < 0)
			rc = -1;
		store_user_close(&u);
		if (rc == 0)
			rc = fn(ctx, l.v[i].name, modseq, digest);
	}
	for (size_t i = 0; i < l.n; i++) {
		free(l.v[i].name);
		free(l.v[i].hash);
	}
	free(l.v);
	return rc;
}

struct one {
	const char *name;
	struct store_userinfo *ui;
	char **hash;
	bool found;
};

static int
one_cb(void *ctx, const struct store_userinfo *ui)
{
	struct one *o = ctx;

	if (!str_eq(ui->name, o->name))
		return 0;
	*o->ui = *ui;
	o->ui->hash = NULL;
	*o->hash = ui->hash != NULL ? xstrdup(ui->hash) : NULL;
	o->found = true;
	return 1;
}

int
syncdigest_userinfo(struct store *st, const char *name, struct store_userinfo *ui_r,
	char **hash_r, struct err *err)
{
	struct one o = { name, ui_r, hash_r, false };

	*hash_r = NULL;
	if (store_user_info(st, name, ui_r, err) < 0)
		return -1;
	if (store_user_list(st, one_cb, &o, err) < 0)
		return -1;
	return 0;
}
