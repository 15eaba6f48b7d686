/*
 * syncdigest.c - the anti-entropy key of a user (syncdigest.h): the
 * user's summary kept in users.db (store_summary.c) continued with its
 * password hash and quota limits.  Reading it opens no user database;
 * a user whose summary is unknown is opened once and its summary
 * written back.
 */
#include "sync/syncdigest.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/crc32c.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "sync/synclog.h"

/* Continue a user's store summary (store_summary.c: mailboxes and
 * subscriptions) with what users.db holds: the password hash and the
 * quota limits. */
static uint32_t
digest_finish(uint32_t crc, const char *hash, int64_t quota_bytes, int64_t quota_messages)
{
	char line[128];

	if (hash != NULL) {
		unsigned char md[32];
		unsigned int n = 0;
		char hex[65];
		EVP_Digest(hash, strlen(hash), md, &n, EVP_sha256(), NULL);
		str_hex(md, n, hex);
		crc = crc32c(crc, hex, strlen(hex));
	}
	snprintf(line, sizeof(line), "\nquota %lld %lld\n", (long long)quota_bytes,
		(long long)quota_messages);
	return crc32c(crc, line, strlen(line));
}

int
syncdigest_user(struct store_user *u, const char *hash, int64_t quota_bytes,
	int64_t quota_messages, uint32_t *digest_r, struct err *err)
{
	uint64_t modseq;
	uint32_t crc;

	if (store_user_summary(u, &modseq, &crc, err) < 0)
		return -1;
	*digest_r = digest_finish(crc, hash, quota_bytes, quota_messages);
	return 0;
}

int
syncdigest_user_fresh(struct store *st, const char *name, const char *hash, int64_t quota_bytes,
	int64_t quota_messages, uint64_t *modseq_r, uint32_t *digest_r, struct err *err)
{
	struct store_user *u = store_user_open(st, name, err);
	uint32_t crc;
	int rc;

	if (u == NULL)
		return -1;
	rc = store_user_summary_refresh(u, modseq_r, &crc, err);
	store_user_close(&u);
	if (rc == 0)
		*digest_r = digest_finish(crc, hash, quota_bytes, quota_messages);
	return rc;
}

struct uent {
	char *name;
	char *hash;
	int64_t qb, qm;
	bool known;
	bool damaged;
	uint64_t modseq;
	uint32_t crc;
};

struct ulist {
	struct uent *v;
	size_t n, cap;
};

static int
sum_cb(void *ctx, const struct store_summary *sm)
{
	struct ulist *l = ctx;
	struct uent *e;

	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 64;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	e = &l->v[l->n++];
	e->name = xstrdup(sm->name);
	e->hash = sm->hash != NULL ? xstrdup(sm->hash) : NULL;
	e->qb = sm->quota_bytes;
	e->qm = sm->quota_messages;
	e->known = sm->known;
	e->damaged = sm->damaged;
	e->modseq = sm->modseq;
	e->crc = sm->crc;
	return 0;
}

int
syncdigest_users(struct store *st, syncdigest_fn fn, void *ctx, size_t *opened_r,
	struct err *err)
{
	struct ulist l = { NULL, 0, 0 };
	size_t opened = 0;
	int rc = 0;

	/* the whole list first: no users.db statement stays open while a
	 * summary is refreshed below */
	if (store_user_summary_list(st, sum_cb, &l, err) < 0)
		rc = -1;
	for (size_t i = 0; rc == 0 && i < l.n; i++) {
		struct uent *e = &l.v[i];
		uint64_t modseq = e->modseq;
		uint32_t digest = 0;

		if (e->damaged) {
			/* listed, never left out (a user left out looks deleted
			 * or new to the other side): modseq 0 and digest 0
			 * differ from any real state, so the user is compared
			 * in full and refused there, by name */
			rc = fn(ctx, e->name, 0, 0);
			continue;
		}
		if (e->known) {
			digest = digest_finish(e->crc, e->hash, e->qb, e->qm);
		} else {
			/* unknown summary: open the user once, and remember it */
			opened++;
			if (syncdigest_user_fresh(st, e->name, e->hash, e->qb, e->qm, &modseq, &digest,
				err) < 0) {
				if (err->kind == ERR_NOTFOUND)
					continue;   /* deleted meanwhile */
				if (err->kind == ERR_DAMAGED) {
					rc = fn(ctx, e->name, 0, 0);
					continue;
				}
				rc = -1;
				break;
			}
		}
		rc = fn(ctx, e->name, modseq, digest);
	}
	for (size_t i = 0; i < l.n; i++) {
		free(l.v[i].name);
		free(l.v[i].hash);
	}
	free(l.v);
	if (opened_r != NULL)
		*opened_r = opened;
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

int
syncdigest_merge(const char *const *a, size_t na, const char *const *b, size_t nb,
	syncdigest_merge_fn fn, void *ctx)
{
	size_t i = 0, k = 0;

	while (i < na || k < nb) {
		int c = i == na ? 1 : k == nb ? -1 : strcmp(a[i], b[k]);
		int r;

		if (c < 0)
			r = fn(ctx, i++, SIZE_MAX);
		else if (c > 0)
			r = fn(ctx, SIZE_MAX, k++);
		else
			r = fn(ctx, i++, k++);
		if (r != 0)
			return r;
	}
	return 0;
}
