/*
 * syncpush_ae.c - anti-entropy: GET USERS, a sorted merge of the
 * replica's user summaries with ours (users.db, syncdigest.h), our own
 * database read only for users whose summaries differ (the summary is
 * a hint), and the differing users synced in slices of AE_SLICE with
 * the yield hook between slices (live log records are never queued
 * behind a pass).  Also the replica's user list (castorctl).
 */
#include "sync/syncpush_int.h"

#include <dirent.h>

#include "sync/syncdigest.h"
#include "sync/synclog.h"

struct lum {
	struct strv names;
	uint64_t *modseq;
	uint32_t *digest;
	size_t cap;
};

static int
lum_cb(void *ctx, const char *user, uint64_t modseq, uint32_t digest)
{
	struct lum *l = ctx;

	if (l->names.n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 256;
		l->modseq = xreallocarray(l->modseq, l->cap, sizeof(uint64_t));
		l->digest = xreallocarray(l->digest, l->cap, sizeof(uint32_t));
	}
	l->modseq[l->names.n] = modseq;
	l->digest[l->names.n] = digest;
	strv_add(&l->names, user);
	return 0;
}

/* Was this user deleted here (its spool held in <root>/deleted/<name>.<time>,
 * store_user_del)?  Then a user only the replica has is a deletion the
 * log lost (e.g. anti-entropy jumped past the UNUSER record), not a
 * replica-only user: it is sent as APPLY UNUSER (deletion thresholds
 * apply; the replica holds the spool in its own deleted/). */
static bool
user_deleted_here(struct syncpush *p, const char *name)
{
	struct buf d = BUF_INIT;
	DIR *dir;
	struct dirent *de;
	size_t n = strlen(name);
	bool found = false;

	buf_printf(&d, "%s/deleted", store_root(p->st));
	dir = opendir(buf_cstr(&d));
	buf_free(&d);
	if (dir == NULL)
		return false;
	while (!found && (de = readdir(dir)) != NULL) {
		const char *t = de->d_name + n + 1;
		if (strncmp(de->d_name, name, n) != 0 || de->d_name[n] != '.' || *t == '\0')
			continue;
		while (*t >= '0' && *t <= '9')
			t++;
		found = *t == '\0';
	}
	closedir(dir);
	return found;
}

static int
ix_cmp(const void *x, const void *y, void *ctx)
{
	const struct strv *n = ctx;

	return strcmp(n->v[*(const size_t *)x], n->v[*(const size_t *)y]);
}

/* An index of names in strcmp order, and the names in that order. */
static size_t *
sorted_index(const struct strv *names, const char ***sorted_r)
{
	size_t *ix = xcalloc(names->n + 1, sizeof(*ix));
	const char **v = xcalloc(names->n + 1, sizeof(*v));

	for (size_t k = 0; k < names->n; k++)
		ix[k] = k;
	qsort_r(ix, names->n, sizeof(*ix), ix_cmp, (void *)names);
	for (size_t k = 0; k < names->n; k++)
		v[k] = names->v[ix[k]];
	*sorted_r = v;
	return ix;
}

struct ae {
	struct syncpush *p;
	struct lum *l;
	const char **lnames;        /* our names, sorted */
	size_t *lix;                /* their index in l */
	const char **rnames;        /* replica names, sorted */
	size_t *rix;                /* their index in p->au_* */
	struct strv full;           /* users to sync: missing there, or checked here */
	struct strv check;          /* summaries differ: look at our database first */
	size_t *check_k;            /* their index in p->au_* */
	size_t ncheck_cap;
	struct strv unuser;         /* users deleted here */
	size_t compared, opened, differ;
	struct err *err;
};

#define AE_SLICE 8     /* differing users synced between two looks at the live log */

/* Both sides have the user: do the summaries agree? */
static bool
ae_differs(const struct syncpush *p, size_t k, uint64_t modseq, uint32_t digest)
{
	if (p->au_digest[k] < 0)
		return p->au_modseq[k] != modseq;
	return p->au_digest[k] != (int64_t)digest || p->au_modseq[k] < modseq;
}

static int
ae_pair(void *ctx, size_t i, size_t j)
{
	struct ae *a = ctx;
	struct syncpush *p = a->p;
	struct lum *l = a->l;

	a->compared++;
	if (i != SIZE_MAX)
		i = a->lix[i];
	if (j == SIZE_MAX) {
		strv_add(&a->full, l->names.v[i]);
		log_info("anti-entropy: user missing on the replica user=%s", l->names.v[i]);
		return 0;
	}
	if (i == SIZE_MAX) {
		size_t k = a->rix[j];
		const char *name = p->au_names.v[k];
		if (user_deleted_here(p, name)) {
			strv_add(&a->unuser, name);
			log_info("anti-entropy: user deleted here, present on the replica user=%s", name);
		} else {
			struct syncpush_conflict c;
			memset(&c, 0, sizeof(c));
			c.kind = SYNCPUSH_C_REPLICA_USER;
			c.user = name;
			c.replica_modseq = p->au_modseq[k];
			(void)syncpush_sess_conflict(p, &c);
		}
		return 0;
	}
	if (ae_differs(p, a->rix[j], l->modseq[i], l->digest[i])) {
		if (a->check.n == a->ncheck_cap) {
			a->ncheck_cap = a->ncheck_cap ? 2 * a->ncheck_cap : 64;
			a->check_k = xreallocarray(a->check_k, a->ncheck_cap, sizeof(*a->check_k));
		}
		a->check_k[a->check.n] = a->rix[j];
		strv_add(&a->check, l->names.v[i]);
	}
	return 0;
}

/* A user whose summaries differ: the summary is a hint and ours may be
 * stale (store_summary.c S1), so our database decides first.  1 when it
 * still differs (then the per-mailbox checksums decide), 0 when it
 * agrees, -1 with err when it cannot be read (the pass fails, as a
 * listing that cannot read a user does). */
static int
ae_confirm(struct syncpush *p, struct ae *a, const char *name, size_t k, struct err *err)
{
	struct store_userinfo ui;
	char *hash = NULL;
	uint64_t ms = 0;
	uint32_t dg = 0;
	bool fresh = false;
	int rc = syncdigest_userinfo(p->st, name, &ui, &hash, err);

	if (rc == 0) {
		a->opened++;
		rc = syncdigest_user_fresh(p->st, name, hash, ui.quota_bytes, ui.quota_messages,
			&ms, &dg, err);
		fresh = rc == 0;
	}
	free(hash);
	if (rc < 0 && err->kind != ERR_NOTFOUND) {
		log_warn("anti-entropy: cannot read user=%s error=%s", name, log_q(err->msg));
		return -1;
	}
	if (fresh && !ae_differs(p, k, ms, dg)) {
		log_info("anti-entropy: summary was stale, user agrees user=%s", name);
		return 0;
	}
	log_info("anti-entropy: user differs user=%s master_modseq=%llu replica_modseq=%llu"
		" digest=%s", name, (unsigned long long)ms, (unsigned long long)p->au_modseq[k],
		!fresh ? "unknown" : p->au_digest[k] != (int64_t)dg ? "differs" : "same");
	return 1;
}

/* Sync the users found differing, AE_SLICE at a time; between slices
 * the yield hook serves the live log (a pass never holds it back). */
static int
ae_run(struct syncpush *p, struct ae *a, struct err *err)
{
	size_t i = 0;

	if (a->unuser.n > 0) {
		struct syncpush_batch *b = syncpush_batch_new();
		for (size_t k = 0; k < a->unuser.n; k++)
			syncpush_batch_add(b, SYNCLOG_UNUSER, a->unuser.v[k], NULL);
		if (syncpush_run(p, b, err) < 0) {
			syncpush_batch_free(&b);
			return -1;
		}
		syncpush_batch_free(&b);
	}
	/* users missing there first, then those whose summaries differ */
	while (i < a->full.n + a->check.n) {
		struct syncpush_batch *b;
		size_t n = 0;
		int rc;
		if (p->ae_yield != NULL && p->ae_yield(p->ae_yield_ctx, err) < 0)
			return -1;
		b = syncpush_batch_new();
		for (; n < AE_SLICE && i < a->full.n + a->check.n; i++) {
			if (i < a->full.n) {
				syncpush_batch_add_full(b, a->full.v[i]);
			} else {
				size_t c = i - a->full.n;
				int r = ae_confirm(p, a, a->check.v[c], a->check_k[c], err);
				if (r < 0) {
					syncpush_batch_free(&b);
					return -1;
				}
				if (r == 0)
					continue;
				syncpush_batch_add_full(b, a->check.v[c]);
			}
			a->differ++;
			n++;
		}
		rc = syncpush_run(p, b, err);
		syncpush_batch_free(&b);
		if (rc < 0)
			return -1;
	}
	return 0;
}

int
syncpush_anti_entropy(struct syncpush *p, size_t *differ_r, struct err *err)
{
	struct syncproto_enc e;
	struct lum l = { { 0 }, NULL, NULL, 0 };
	struct ae a;
	size_t nr, opened = 0;
	int rc = -1;

	memset(&a, 0, sizeof(a));
	a.p = p;
	a.l = &l;
	a.err = err;
	p->ae_compared = p->ae_opened = 0;
	if (differ_r != NULL)
		*differ_r = 0;
	strv_free(&p->au_names);
	syncpush_sess_begin(p, PK_GET_USERS, &e);
	syncproto_enc_atom(&e, "GET");
	syncproto_enc_atom(&e, "USERS");
	if (syncpush_sess_end(p, &e, err) < 0 || syncpush_sess_wait(p, err) < 0)
		goto out;
	/* ours come from users.db in name order; only unknown summaries open
	 * a user database (counted) */
	if (syncdigest_users(p->st, lum_cb, &l, &opened, err) < 0)
		goto out;
	/* both lists in strcmp order (users.db lists ours so already; a
	 * replica may answer in any order) */
	a.lix = sorted_index(&l.names, &a.lnames);
	nr = p->au_names.n;
	a.rix = sorted_index(&p->au_names, &a.rnames);
	nr = p->au_names.n;
	for (size_t k = 1; k < nr; k++)
		if (str_eq(a.rnames[k - 1], a.rnames[k])) {
			err_set(err, ERR_INVALID, "GET USERS: user %s listed twice", log_q(a.rnames[k]));
			goto out;
		}
	(void)syncdigest_merge(a.lnames, l.names.n, a.rnames, nr, ae_pair, &a);
	rc = ae_run(p, &a, err);
	p->ae_compared = a.compared;
	p->ae_opened = opened + a.opened;
	if (differ_r != NULL)
		*differ_r = a.differ + a.unuser.n;
out:
	strv_free(&a.full);
	strv_free(&a.check);
	free(a.check_k);
	strv_free(&a.unuser);
	free(a.rix);
	free(a.rnames);
	free(a.lix);
	free(a.lnames);
	strv_free(&l.names);
	free(l.modseq);
	free(l.digest);
	strv_free(&p->au_names);
	return rc;
}

void
syncpush_ae_counts(const struct syncpush *p, size_t *compared_r, size_t *opened_r)
{
	*compared_r = p->ae_compared;
	*opened_r = p->ae_opened;
}

void
syncpush_set_ae_yield(struct syncpush *p, syncpush_yield_fn fn, void *ctx)
{
	p->ae_yield = fn;
	p->ae_yield_ctx = ctx;
}

int
syncpush_replica_users(struct syncpush *p, char ***names_r, size_t *n_r, struct err *err)
{
	struct syncproto_enc e;
	char **v;

	strv_free(&p->au_names);
	syncpush_sess_begin(p, PK_GET_USERS, &e);
	syncproto_enc_atom(&e, "GET");
	syncproto_enc_atom(&e, "USERS");
	if (syncpush_sess_end(p, &e, err) < 0 || syncpush_sess_wait(p, err) < 0)
		return -1;
	v = xcalloc(p->au_names.n + 1, sizeof(*v));
	for (size_t i = 0; i < p->au_names.n; i++)
		v[i] = xstrdup(p->au_names.v[i]);
	*names_r = v;
	*n_r = p->au_names.n;
	strv_free(&p->au_names);
	return 0;
}
