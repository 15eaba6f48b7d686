/*
 * store_snapshot.c - the view of a mailbox an IMAP session holds while
 * it has the mailbox selected: uids, flags, modseqs at one point, and
 * the way forward ("what changed since my snapshot's modseq").
 *
 * A snapshot is read in one SQLite read transaction, so an append
 * committed by another process is either entirely in it or entirely
 * out.  A refresh asks for records with modseq > snap->modseq (index
 * records_mbox_modseq), so its cost follows the changes, not the
 * mailbox size.  \Recent: the mailbox row's recentuid is the first uid
 * no session has claimed; a SELECT claims (uids >= recentuid become
 * this session's \Recent) by raising it to uidnext in a small write
 * that is not made durable (it is not replicated state).  The raise is a
 * compare-and-swap (WHERE recentuid = the value read), so of two sessions
 * racing for the same uids exactly one gets them; each record carries its
 * own recent bit, since a session's \Recent uids need not be a tail (S1
 * may hold uid 1 and S2 uid 2).  EXAMINE (STORE_SNAP_PEEK_RECENT) shows
 * the unclaimed records as \Recent without taking them.
 *
 * A SELECT reads only uid, flags, modseq and keywords, from the narrow
 * index records_snap (one scan, no table row per message: the rows also
 * hold the cached ENVELOPE and BODYSTRUCTURE and are ten times wider).
 * guid, size and internaldate are read by store_snapshot_meta for the
 * records a command needs them for (FETCH of a body or its size, SEARCH
 * by date or size or text); records a refresh brings in carry them.
 */
#include "store/store.h"
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#define SNAP_COLS "uid, guid, size, internaldate, sysflags, keywords, modseq, expunged_modseq"
/* what records_snap holds (its WHERE is the query's expunged_modseq = 0) */
#define SNAP_NARROW_SQL "SELECT uid, sysflags, modseq, keywords FROM records" \
	" WHERE mailbox = ? AND expunged_modseq = 0 ORDER BY uid"

static const char empty_kw[] = "";

struct snap_priv {
	size_t cap;
	unsigned flags;
	int64_t mbid;       /* the mailbox's row id, for store_snapshot_meta */
};

static void
snaprec_set_kw(struct store_snaprec *r, const char *kw)
{
	if (r->keywords != NULL && r->keywords != empty_kw)
		free((char *)r->keywords);
	r->keywords = (kw == NULL || kw[0] == '\0') ? empty_kw : xstrdup(kw);
}

static void
snaprec_fill(sqlite3_stmt *s, struct store_snaprec *r)
{
	const char *g = (const char *)sqlite3_column_text(s, 1);

	r->uid = (uint32_t)sqlite3_column_int64(s, 0);
	str_lcpy(r->guid, g ? g : "", sizeof(r->guid));
	r->size = (uint64_t)sqlite3_column_int64(s, 2);
	r->internaldate = sqlite3_column_int64(s, 3);
	r->sysflags = (uint32_t)sqlite3_column_int64(s, 4);
	snaprec_set_kw(r, (const char *)sqlite3_column_text(s, 5));
	r->modseq = (uint64_t)sqlite3_column_int64(s, 6);
	r->expunged = sqlite3_column_int64(s, 7) != 0;
	r->meta = true;
}

/* A row of SNAP_NARROW_SQL: guid, size, internaldate left for later. */
static void
snaprec_fill_narrow(sqlite3_stmt *s, struct store_snaprec *r)
{
	r->uid = (uint32_t)sqlite3_column_int64(s, 0);
	r->sysflags = (uint32_t)sqlite3_column_int64(s, 1);
	r->modseq = (uint64_t)sqlite3_column_int64(s, 2);
	snaprec_set_kw(r, (const char *)sqlite3_column_text(s, 3));
}

static struct store_snaprec *
snap_push(struct store_snapshot *snap)
{
	struct snap_priv *p = snap->priv;

	if (snap->n == p->cap) {
		p->cap = p->cap ? p->cap * 2 : 64;
		snap->recs = xreallocarray(snap->recs, p->cap, sizeof(*snap->recs));
	}
	memset(&snap->recs[snap->n], 0, sizeof(snap->recs[0]));
	return &snap->recs[snap->n++];
}

/* Size the record array once, from the mailbox's live count (M8), so a
 * large SELECT neither reallocates nor copies. */
static void
snap_reserve(struct store_user *u, struct store_snapshot *snap, int64_t mbid)
{
	struct snap_priv *p = snap->priv;
	sqlite3_stmt *s = store_user_stmt(u, "SELECT c_exists FROM mailboxes WHERE id = ?", NULL);
	int64_t n = 0;

	if (s == NULL)
		return;
	sqlite3_bind_int64(s, 1, mbid);
	if (sqlite3_step(s) == SQLITE_ROW)
		n = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	if (n <= 0 || n > 100000000)
		return;
	p->cap = (size_t)n + 16;
	snap->recs = xreallocarray(snap->recs, p->cap, sizeof(*snap->recs));
}

static size_t snap_lower(const struct store_snapshot *snap, uint32_t uid);

/* Mark the live records with uid in [from, to) \Recent; returns how many
 * were not already. */
static uint32_t
snap_mark_recent(struct store_snapshot *snap, uint32_t from, uint32_t to)
{
	uint32_t n = 0;

	for (size_t i = snap_lower(snap, from); i < snap->n && snap->recs[i].uid < to; i++) {
		struct store_snaprec *r = &snap->recs[i];

		if (r->recent || r->expunged)
			continue;
		r->recent = true;
		n++;
		if (snap->first_recent == 0 || r->uid < snap->first_recent)
			snap->first_recent = r->uid;
	}
	snap->nrecent += n;
	return n;
}

/* Raise recentuid to uidnext; returns the old value when this session
 * got the claim, 0 otherwise.  Best effort: not durable, not an op. */
static uint32_t
claim_recent(struct store_user *u, int64_t mbid, uint32_t from, uint32_t uidnext)
{
	sqlite3_stmt *s;
	uint32_t got = 0;

	if (u->st->opts.read_only || u->in_txn || u->op_open || from >= uidnext)
		return 0;
	if (sqlite3_exec(u->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
		return 0;
	s = store_user_stmt(u, "UPDATE mailboxes SET recentuid = ?3 WHERE id = ?1 AND recentuid = ?2",
		NULL);
	if (s != NULL) {
		sqlite3_bind_int64(s, 1, mbid);
		sqlite3_bind_int64(s, 2, from);
		sqlite3_bind_int64(s, 3, uidnext);
		if (sqlite3_step(s) == SQLITE_DONE && sqlite3_changes(u->db) == 1)
			got = from;
		sqlite3_reset(s);
	}
	if (sqlite3_exec(u->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
		sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
		got = 0;
	}
	return got;
}

int
store_snapshot_open(struct store_user *u, const char *mailbox_id, unsigned flags,
	struct store_snapshot **snap_r, struct err *err)
{
	struct store_snapshot *snap;
	struct store_mbrow row;
	sqlite3_stmt *s;
	int rc;

	*snap_r = NULL;
	if (store_user_read_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_id(u, mailbox_id, false, &row, err);
	if (rc < 0) {
		store_user_read_end(u);
		return -1;
	}
	snap = xcalloc(1, sizeof(*snap));
	snap->priv = xcalloc(1, sizeof(struct snap_priv));
	((struct snap_priv *)snap->priv)->flags = flags;
	((struct snap_priv *)snap->priv)->mbid = row.id;
	snap_reserve(u, snap, row.id);
	memcpy(snap->mailbox_id, row.mb.uniqueid, sizeof(snap->mailbox_id));
	snap->uidvalidity = row.mb.uidvalidity;
	snap->uidnext = row.mb.uidnext;
	snap->modseq = row.mb.highestmodseq;
	if (flags & STORE_SNAP_META)
		s = store_user_stmt(u, "SELECT " SNAP_COLS " FROM records WHERE mailbox = ?"
			" AND expunged_modseq = 0 ORDER BY uid", err);
	else
		s = store_user_stmt(u, SNAP_NARROW_SQL, err);
	if (s == NULL) {
		rc = -1;
	} else {
		sqlite3_bind_int64(s, 1, row.id);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			if (flags & STORE_SNAP_META)
				snaprec_fill(s, snap_push(snap));
			else
				snaprec_fill_narrow(s, snap_push(snap));
		}
		rc = rc == SQLITE_DONE ? 0 : store_sql_err(u->db, rc, err, "snapshot");
		sqlite3_reset(s);
	}
	store_user_read_end(u);
	if (rc < 0) {
		store_snapshot_free(&snap);
		return -1;
	}
	if (flags & STORE_SNAP_CLAIM_RECENT) {
		uint32_t got = claim_recent(u, row.id, row.recentuid, snap->uidnext);

		if (got != 0)
			snap_mark_recent(snap, got, snap->uidnext);
	} else if (flags & STORE_SNAP_PEEK_RECENT) {
		snap_mark_recent(snap, row.recentuid, snap->uidnext);
	}
	*snap_r = snap;
	return 0;
}

void
store_snapshot_free(struct store_snapshot **snapp)
{
	struct store_snapshot *snap = *snapp;

	if (snap == NULL)
		return;
	for (size_t i = 0; i < snap->n; i++)
		snaprec_set_kw(&snap->recs[i], NULL);
	free(snap->recs);
	free(snap->priv);
	free(snap);
	*snapp = NULL;
}

static ssize_t snap_find(const struct store_snapshot *snap, uint32_t uid);

int
store_snapshot_meta(struct store_user *u, struct store_snapshot *snap, size_t lo, size_t hi,
	struct err *err)
{
	struct snap_priv *p = snap->priv;
	sqlite3_stmt *s;
	int rc;

	if (hi > snap->n)
		hi = snap->n;
	while (lo < hi && snap->recs[lo].meta)
		lo++;
	while (hi > lo && snap->recs[hi - 1].meta)
		hi--;
	if (lo >= hi)
		return 0;
	if (store_user_read_begin(u, err) < 0)
		return -1;
	s = store_user_stmt(u, "SELECT uid, guid, size, internaldate FROM records"
		" WHERE mailbox = ?1 AND uid BETWEEN ?2 AND ?3", err);
	if (s == NULL) {
		store_user_read_end(u);
		return -1;
	}
	sqlite3_bind_int64(s, 1, p->mbid);
	sqlite3_bind_int64(s, 2, snap->recs[lo].uid);
	sqlite3_bind_int64(s, 3, snap->recs[hi - 1].uid);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		ssize_t i = snap_find(snap, (uint32_t)sqlite3_column_int64(s, 0));
		struct store_snaprec *r;
		const char *g;

		if (i < 0 || snap->recs[i].meta)
			continue;
		r = &snap->recs[i];
		g = (const char *)sqlite3_column_text(s, 1);
		str_lcpy(r->guid, g ? g : "", sizeof(r->guid));
		r->size = (uint64_t)sqlite3_column_int64(s, 2);
		r->internaldate = sqlite3_column_int64(s, 3);
		r->meta = true;
	}
	rc = rc == SQLITE_DONE ? 0 : store_sql_err(u->db, rc, err, "snapshot meta");
	sqlite3_reset(s);
	store_user_read_end(u);
	return rc;
}

/* First index whose uid >= uid. */
static size_t
snap_lower(const struct store_snapshot *snap, uint32_t uid)
{
	size_t lo = 0, hi = snap->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (snap->recs[mid].uid < uid)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static ssize_t
snap_find(const struct store_snapshot *snap, uint32_t uid)
{
	size_t lo = snap_lower(snap, uid);

	if (lo < snap->n && snap->recs[lo].uid == uid)
		return (ssize_t)lo;
	return -1;
}

int
store_snapshot_refresh(struct store_user *u, struct store_snapshot *snap, unsigned flags,
	struct store_snapdiff *d, struct err *err)
{
	struct snap_priv *p = snap->priv;
	struct store_mbrow row;
	sqlite3_stmt *s;
	struct store_snaprec tmp;
	bool *changed = NULL;
	size_t old_n = snap->n, changed_cap = 0;
	uint32_t first_new_uid = 0;
	int rc;
	struct err e;

	memset(d, 0, sizeof(*d));
	memset(&tmp, 0, sizeof(tmp));
	if (store_user_read_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_id(u, snap->mailbox_id, true, &row, &e);
	if (rc < 0) {
		store_user_read_end(u);
		if (e.kind == ERR_NOTFOUND) {
			d->mailbox_gone = true;
			return 0;
		}
		if (err)
			*err = e;
		return -1;
	}
	if (row.mb.deleted_modseq != 0) {
		store_user_read_end(u);
		d->mailbox_gone = true;
		return 0;
	}
	if (row.mb.uidvalidity != snap->uidvalidity) {
		store_user_read_end(u);
		d->uidvalidity_changed = true;
		return 0;
	}
	changed_cap = snap->n;
	changed = xcalloc(changed_cap + 1, sizeof(bool));
	s = store_user_stmt(u, "SELECT " SNAP_COLS " FROM records WHERE mailbox = ? AND modseq > ?"
		" ORDER BY uid", err);
	if (s == NULL) {
		rc = -1;
	} else {
		sqlite3_bind_int64(s, 1, row.id);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)snap->modseq);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			uint32_t uid = (uint32_t)sqlite3_column_int64(s, 0);
			ssize_t i = uid < snap->uidnext ? snap_find(snap, uid) : -1;

			if (i >= 0) {
				struct store_snaprec *r = &snap->recs[i];
				if (r->expunged)
					continue;
				snaprec_fill(s, r);
				if (!r->expunged && (size_t)i < changed_cap)
					changed[i] = true;
			} else if (uid >= snap->uidnext && sqlite3_column_int64(s, 7) == 0) {
				struct store_snaprec *r = snap_push(snap);
				snaprec_fill(s, r);
				if (first_new_uid == 0)
					first_new_uid = uid;
			}
		}
		rc = rc == SQLITE_DONE ? 0 : store_sql_err(u->db, rc, err, "refresh");
		sqlite3_reset(s);
	}
	store_user_read_end(u);
	if (rc < 0) {
		free(changed);
		return -1;
	}
	snap->modseq = row.mb.highestmodseq;
	if (row.mb.uidnext > snap->uidnext)
		snap->uidnext = row.mb.uidnext;
	/* Claim what nobody has (new records, or ones a session with an older
	 * view left unclaimed); only the CAS winner marks them. */
	if ((p->flags & STORE_SNAP_CLAIM_RECENT) && row.recentuid < snap->uidnext) {
		uint32_t got = claim_recent(u, row.id, row.recentuid, snap->uidnext);

		if (got != 0)
			d->new_recent = snap_mark_recent(snap, got, snap->uidnext);
	}
	if (flags & STORE_REFRESH_EXPUNGE) {
		size_t k = 0, removed = 0;
		for (size_t i = 0; i < snap->n; i++) {
			if (snap->recs[i].expunged) {
				store_uids_add(&d->expunged_seq, (uint32_t)(i + 1 - removed));
				removed++;
				if (snap->recs[i].recent)
					snap->nrecent--;
				snaprec_set_kw(&snap->recs[i], NULL);
				continue;
			}
			if (i < changed_cap && changed[i] && i < old_n)
				changed[k] = true;
			else if (k < changed_cap)
				changed[k] = false;
			snap->recs[k++] = snap->recs[i];
		}
		snap->n = k;
	}
	for (size_t i = 0; i < snap->n && i < old_n; i++)
		if (i < changed_cap && changed[i] && !snap->recs[i].expunged)
			store_uids_add(&d->changed_seq, (uint32_t)(i + 1));
	if (first_new_uid != 0)
		d->new_exists = (uint32_t)snap->n;
	free(changed);
	return 0;
}

void
store_snapdiff_free(struct store_snapdiff *d)
{
	store_uids_free(&d->expunged_seq);
	store_uids_free(&d->changed_seq);
}
