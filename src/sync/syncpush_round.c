/*
 * syncpush_round.c - the runs of the master side of replication
 * (syncpush.h): batches of hints coalesced per user, and rounds over
 * those users, each pipelined in waves: A GET USER (users not in the
 * cache), the plan (syncpush_plan.c), A2 GET RECORDS for repairs, B
 * RESERVE, the deletion thresholds, C UPLOAD and APPLY, C2 APPLY USER
 * HIGHESTMODSEQ; users whose answers asked for fresh state go to the
 * next round.  The pieces it drives are listed in syncpush_int.h.
 *
 * RULES
 *  1. State based: what is sent is read from the store at the time of
 *     sending, never taken from the log.  Replaying a hint twice is
 *     harmless.
 *  2. Every APPLY MAILBOX carries what the client believes the replica
 *     holds (SINCE-MODSEQ, SINCE-CHECKSUM); a replica elsewhere refuses,
 *     and the next round starts from a fresh GET USER.  So a stale cache
 *     costs a round trip, never a wrong state.
 *  3. A mailbox's records and its HIGHESTMODSEQ are read so that every
 *     record change up to the HIGHESTMODSEQ sent is among the records
 *     sent (mailbox row read before the records; commits are serialised
 *     in modseq order), and CHECKSUM is sent only when the row did not
 *     move while the records were read.
 *  4. Deletion only from a tombstone here: a deleted mailbox row
 *     (APPLY DELETE) or a user that is gone after an UNUSER hint
 *     (APPLY UNUSER).  Anything the replica has and we lack is reported
 *     through the conflict hook and left alone.
 *  5. A user's replica modseq counter is raised to ours (APPLY USER
 *     HIGHESTMODSEQ, the anti-entropy key) only after every other answer
 *     for that user in the round was OK and nothing was left in conflict.
 *  6. Commands are pipelined (syncpush_sess.c); at most WINDOW are
 *     unanswered at a time.  The answers to that many small commands fit
 *     in the socket buffers, so neither side can block the other; the
 *     replica commits a group of UPLOADs at the latest when the window
 *     makes us wait.
 */
#include "sync/syncpush_int.h"

#include "sync/synclog.h"

#define USERS_PER_WAVE 64
#define MAX_ROUNDS 4

struct syncpush_batch *
syncpush_batch_new(void)
{
	return xcalloc(1, sizeof(struct syncpush_batch));
}

void
syncpush_batch_clear(struct syncpush_batch *b)
{
	for (size_t i = 0; i < b->n; i++) {
		free(b->u[i].name);
		strv_free(&b->u[i].mbids);
	}
	b->n = 0;
}

void
syncpush_batch_free(struct syncpush_batch **bp)
{
	if (*bp == NULL)
		return;
	syncpush_batch_clear(*bp);
	free((*bp)->u);
	free(*bp);
	*bp = NULL;
}

static struct bu *
batch_user(struct syncpush_batch *b, const char *user)
{
	for (size_t i = b->n; i > 0; i--)
		if (str_eq(b->u[i - 1].name, user))
			return &b->u[i - 1];
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 16;
		b->u = xreallocarray(b->u, b->cap, sizeof(*b->u));
	}
	memset(&b->u[b->n], 0, sizeof(b->u[b->n]));
	b->u[b->n].name = xstrdup(user);
	return &b->u[b->n++];
}

void
syncpush_batch_add(struct syncpush_batch *b, unsigned type, const char *user, const char *uniqueid)
{
	struct bu *u;

	if (user == NULL || user[0] == '\0')
		return;
	u = batch_user(b, user);
	switch (type) {
	case SYNCLOG_MAILBOX:
	case SYNCLOG_SEEN:
		if (uniqueid != NULL && strlen(uniqueid) == STORE_UNIQUEID_LEN) {
			if (u->mbids.n < 10000)
				strv_add_uniq(&u->mbids, uniqueid);
			else
				u->flags |= PU_FULL;
		} else {
			u->flags |= PU_FULL;
		}
		break;
	case SYNCLOG_SUB:
		u->flags |= PU_SUB;
		break;
	case SYNCLOG_PASSWORD:
		u->flags |= PU_PASSWORD;
		break;
	case SYNCLOG_UNUSER:
		u->flags |= PU_UNUSER;
		break;
	case SYNCLOG_QUOTA:
		u->flags |= PU_USER;
		break;
	case SYNCLOG_USER:
	default:
		u->flags |= PU_FULL | PU_USER;
		break;
	}
}

void
syncpush_batch_add_full(struct syncpush_batch *b, const char *user)
{
	batch_user(b, user)->flags |= PU_FULL | PU_USER;
}

size_t
syncpush_batch_users(const struct syncpush_batch *b)
{
	return b->n;
}

bool
syncpush_batch_empty(const struct syncpush_batch *b)
{
	return b->n == 0;
}

/* Deletions this round's plan sends for u. */
static uint64_t
planned_deletes(const struct pu *u)
{
	uint64_t del = 0;

	for (size_t k = 0; k < u->npm; k++)
		if (u->pms[k].act == PM_DELETE)
			del++;
	return del;
}

/* A threshold was crossed: with a park hook the users that would delete
 * (mailboxes, or whole users when unusers) are parked with the reason and
 * the round goes on for the others; without one the round fails with
 * ERR_PERM (nothing was sent yet).  0 or -1. */
static int
delete_limit_hit(struct syncpush *p, struct pu **us, size_t n, struct pu *only, bool unusers,
	const char *reason, struct err *err)
{
	if (p->park_fn == NULL)
		return err_set(err, ERR_PERM, "%s", reason);
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		if (u->parked || (only != NULL && u != only))
			continue;
		if (only != NULL || (unusers ? u->send_unuser : !u->failed && planned_deletes(u) > 0))
			syncpush_answer_park(u, NULL, reason);
	}
	return 0;
}

/* The deletion thresholds over the plan of one round (before wave C):
 * 0 (users over a threshold parked, when there is a park hook), or -1
 * with ERR_PERM "delete-limit ..." (nothing was sent yet). */
static int
check_delete_limits(struct syncpush *p, struct pu **us, size_t n, struct err *err)
{
	uint64_t total = 0, users = 0;
	char why[ERR_MSG_MAX];

	if (p->allow_deletes)
		return 0;
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		uint64_t del, live = 0;
		if (u->parked)
			continue;
		if (u->send_unuser)
			users++;
		if (u->failed && !u->send_unuser)
			continue;
		del = planned_deletes(u);
		total += del;
		if (u->r != NULL)
			for (size_t k = 0; k < u->r->nmbs; k++)
				if (u->r->mbs[k].deletedmodseq == 0)
					live++;
		if (del > p->dl.fraction_min && p->dl.fraction < 1.0 && live > 0 &&
		    (double)del > p->dl.fraction * (double)live) {
			log_error("DELETE LIMIT: refusing to delete %llu of %llu mailboxes of user %s "
				"(sync_delete_fraction %.2f); replica left untouched; release with "
				"castorctl sync --allow-deletes CHAN [USER]",
				(unsigned long long)del, (unsigned long long)live, u->name, p->dl.fraction);
			snprintf(why, sizeof(why), "delete-limit: %llu of %llu mailboxes of user %s "
				"(sync_delete_fraction %.2f)", (unsigned long long)del,
				(unsigned long long)live, u->name, p->dl.fraction);
			if (delete_limit_hit(p, us, n, u, false, why, err) < 0)
				return -1;
			total -= del;
		}
	}
	if (p->dl.limit > 0 && total > p->dl.limit) {
		log_error("DELETE LIMIT: refusing to delete %llu mailboxes in one pass "
			"(sync_delete_limit %llu); replica left untouched; release with "
			"castorctl sync --allow-deletes CHAN [USER]",
			(unsigned long long)total, (unsigned long long)p->dl.limit);
		snprintf(why, sizeof(why), "delete-limit: %llu mailboxes in one pass (sync_delete_limit %llu)",
			(unsigned long long)total, (unsigned long long)p->dl.limit);
		if (delete_limit_hit(p, us, n, NULL, false, why, err) < 0)
			return -1;
	}
	if (p->dl.user_limit > 0 && users > p->dl.user_limit) {
		log_error("DELETE LIMIT: refusing to delete %llu users in one pass "
			"(sync_user_delete_limit %llu); replica left untouched; release with "
			"castorctl sync --allow-deletes CHAN [USER]",
			(unsigned long long)users, (unsigned long long)p->dl.user_limit);
		snprintf(why, sizeof(why), "delete-limit: %llu users in one pass (sync_user_delete_limit %llu)",
			(unsigned long long)users, (unsigned long long)p->dl.user_limit);
		if (delete_limit_hit(p, us, n, NULL, true, why, err) < 0)
			return -1;
	}
	return 0;
}

/* Wave A: GET USER for the users the cache cannot serve (the fast path
 * wants mailbox hints only, each of them cached). */
static int
round_get_users(struct syncpush *p, struct pu **us, size_t n, struct err *err)
{
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		u->fast = !u->no_fast && u->flags == 0 && u->force_repair.n == 0;
		for (size_t k = 0; u->fast && k < u->mbids.n; k++)
			if (cache_get(&p->cache, u->name, u->mbids.v[k]) == NULL)
				u->fast = false;
		if (!u->fast && !((u->flags & PU_UNUSER) && store_user_exists(p->st, u->name, err) == 0) &&
		    syncpush_send_get_user(p, u, err) < 0)
			return -1;
	}
	return 0;
}

/* Plan one user, after the mailbox-level conflicts the policy resolves,
 * and ask for the records of its mailboxes to repair (wave A2).  0, or
 * -1 when the session cannot go on; a user that cannot be planned is
 * marked failed (and for another round when that may help). */
static int
round_plan_user(struct syncpush *p, struct pu *u, struct err *err)
{
	struct err e2;
	int rc = syncpush_resolve_mailboxes(p, u, &e2);

	if (p->fatal)
		return syncpush_sess_fail(p, err);
	if (rc != 0) {
		/* resolved here (or failed): plan again with fresh state */
		if (rc < 0) {
			p->stats.errors++;
			snprintf(p->last_problem, sizeof(p->last_problem), "user %s: %s", u->name,
				e2.msg);
			log_error("split-brain resolution failed user=%s error=%s", u->name,
				log_q(e2.msg));
		}
		u->failed = true;
		u->retry = true;
		return 0;
	}
	if (syncpush_plan_user(p, u, &e2) < 0) {
		p->stats.errors++;
		snprintf(p->last_problem, sizeof(p->last_problem), "user %s: %s", u->name, e2.msg);
		log_error("cannot read local state user=%s error=%s", u->name, log_q(e2.msg));
		u->failed = true;
		if (e2.kind == ERR_TEMP)
			u->retry = true;
		return 0;
	}
	for (size_t k = 0; k < u->npm; k++)
		if (u->pms[k].act == PM_REPAIR && syncpush_send_get_records(p, u, k, err) < 0)
			return -1;
	return 0;
}

/* After A2: the repairs' plans, temporary names for renames, and the
 * bodies to ask about (wave B, RESERVE) or to send without asking. */
static int
round_reserve_user(struct syncpush *p, struct pu *u, struct err *err)
{
	for (size_t k = 0; k < u->npm; k++) {
		struct pm *m = &u->pms[k];
		if (m->act == PM_REPAIR) {
			struct store_user *lu;
			struct err e2;
			if (!m->got_rrecs || (lu = syncpush_sess_user(p, u->name, &e2)) == NULL ||
			    syncpush_repair_plan(p, u, lu, m, &e2) < 0) {
				m->act = PM_NONE;
				u->failed = true;
				continue;
			}
		}
		if (m->act == PM_UPDATE)
			for (size_t g = 0; g < m->guids.n; g++)
				strv_add(&u->need, m->guids.v[g]);
		if (m->act == PM_UPDATE)
			for (size_t g = 0; g < m->push.n; g++)
				strv_add(&u->missing, m->push.v[g]);
	}
	syncpush_plan_renames(u);
	if (u->need.n > 0 && (!u->fast && u->r != NULL && !u->r->exists)) {
		/* a new user has no bodies: everything is missing */
		strv_sort_uniq(&u->need);
		for (size_t g = 0; g < u->need.n; g++)
			strv_add(&u->missing, u->need.v[g]);
	} else if (u->need.n > 0 && syncpush_send_reserve(p, u, err) < 0) {
		return -1;
	}
	return 0;
}

/* Wave C2: the user's modseq counter raised on the replica when all of
 * the round was clean (RULES 5); a changed quota goes in any case. */
static int
round_final_user(struct syncpush *p, struct pu *u, struct err *err)
{
	bool clean = !u->failed && !u->retry && !u->conflicted;

	for (size_t k = 0; k < u->npm && clean; k++)
		if (u->pms[k].diverged || (u->pms[k].act == PM_UPDATE && !u->pms[k].ok))
			clean = false;
	if ((u->final_user && clean) || u->send_quota)
		return syncpush_send_apply_user(p, u, u->send_quota,
			clean && u->final_user ? u->m0 : 0, true, err);
	return 0;
}

/* One round over users[0..n): waves A (GET USER), A2 (GET RECORDS for
 * repairs), B (RESERVE), C (UPLOAD + APPLY), C2 (APPLY USER modseq). */
static int
round_users(struct syncpush *p, struct pu **us, size_t n, struct err *err)
{
	p->stats.rounds++;
	if (round_get_users(p, us, n, err) < 0 || syncpush_sess_wait(p, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!us[i]->failed && round_plan_user(p, us[i], err) < 0)
			return -1;
	if (syncpush_sess_wait(p, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (!us[i]->failed && us[i]->local_exists && round_reserve_user(p, us[i], err) < 0)
			return -1;
	if (syncpush_sess_wait(p, err) < 0 || check_delete_limits(p, us, n, err) < 0)
		return -1;
	/* C */
	for (size_t i = 0; i < n; i++) {
		struct pu *u = us[i];
		if (u->parked || (u->failed && !u->send_unuser))
			continue;
		strv_sort_uniq(&u->missing);
		if (syncpush_send_user_cmds(p, u, err) < 0)
			return -1;
	}
	if (syncpush_sess_wait(p, err) < 0)
		return -1;
	/* C2 */
	for (size_t i = 0; i < n; i++)
		if (us[i]->local_exists && !us[i]->failed && round_final_user(p, us[i], err) < 0)
			return -1;
	return syncpush_sess_wait(p, err);
}

/* Run rounds over a list of users until nothing asks for a retry. */
static int
run_users(struct syncpush *p, struct pu *us, size_t n, struct err *err)
{
	struct pu **cur = xcalloc(n + 1, sizeof(*cur));
	size_t ncur = n;
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		cur[i] = &us[i];
	for (int round = 0; ncur > 0; round++) {
		size_t nnext = 0;

		for (size_t i = 0; i < ncur; i += USERS_PER_WAVE) {
			size_t w = ncur - i < USERS_PER_WAVE ? ncur - i : USERS_PER_WAVE;
			if (round_users(p, cur + i, w, err) < 0) {
				rc = -1;
				goto out;
			}
		}
		for (size_t i = 0; i < ncur; i++) {
			struct pu *u = cur[i];
			struct strv fr = { 0 };
			if (!u->retry || u->parked)
				continue;
			if (round + 1 >= MAX_ROUNDS) {
				p->stats.errors++;
				snprintf(p->last_problem, sizeof(p->last_problem),
					"user %s did not converge in %d rounds", u->name, MAX_ROUNDS);
				log_error("sync did not converge user=%s rounds=%d (anti-entropy will retry)",
					u->name, MAX_ROUNDS);
				continue;
			}
			for (size_t k = 0; k < u->npm; k++)
				if (u->pms[k].force_repair)
					strv_add_uniq(&fr, u->pms[k].id);
			pu_reset_plan(u);
			strv_free(&u->force_repair);
			u->force_repair = fr;
			/* fresh state: GET USER, and every hinted mailbox again */
			u->no_fast = true;
			cur[nnext++] = u;
		}
		ncur = nnext;
	}
out:
	free(cur);
	return rc;
}

int
syncpush_run(struct syncpush *p, struct syncpush_batch *b, struct err *err)
{
	struct pu *us;
	size_t n = 0;
	int rc;

	if (b->n == 0)
		return 0;
	us = xcalloc(b->n, sizeof(*us));
	for (size_t i = 0; i < b->n; i++) {
		if (p->skip_fn != NULL && p->skip_fn(p->park_ctx, b->u[i].name))
			continue;   /* parked: its hints are dropped (re-synced in full on release) */
		us[n].name = xstrdup(b->u[i].name);
		us[n].flags = b->u[i].flags;
		for (size_t k = 0; k < b->u[i].mbids.n; k++)
			strv_add(&us[n].mbids, b->u[i].mbids.v[k]);
		n++;
	}
	rc = n > 0 ? run_users(p, us, n, err) : 0;
	for (size_t i = 0; i < n; i++) {
		if (us[i].parked)
			p->park_fn(p->park_ctx, us[i].name, us[i].park_reason);
		pu_free(&us[i]);
	}
	free(us);
	if (rc < 0) {
		/* whatever we believed about the replica may be stale now */
		cache_clear(&p->cache);
		for (size_t i = 0; i < LOCAL_USERS; i++)
			store_user_close(&p->lus[i].u);
	}
	return rc;
}

static int
all_cb(void *ctx, const struct store_userinfo *ui)
{
	syncpush_batch_add_full(ctx, ui->name);
	return 0;
}

int
syncpush_all_users(struct syncpush *p, struct err *err)
{
	struct syncpush_batch *b = syncpush_batch_new();
	int rc;

	if (store_user_list(p->st, all_cb, b, err) < 0) {
		syncpush_batch_free(&b);
		return -1;
	}
	rc = syncpush_run(p, b, err);
	syncpush_batch_free(&b);
	return rc;
}
