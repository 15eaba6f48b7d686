/*
 * lmtp_deliver.c - putting an accepted message into the store for each
 * recipient, and the per-recipient replies.
 *
 * Rules:
 *   - one store operation per user: recipients of the same user that
 *     resolve to one mailbox get one append; several mailboxes of one
 *     user are appended in one explicit transaction (one WAL fsync);
 *     the same mailbox named twice is stored once and both recipients
 *     get 250;
 *   - a recipient's reply is 250 only after store_append (or the
 *     transaction commit) returned 0, i.e. the message is durable
 *     (store.h, Durability); any failure leaves nothing of this message
 *     for that user (the store rolls the operation back) and maps to a
 *     4xx/5xx by error kind (lmtp_store_reply);
 *   - "user+detail" delivers to the mailbox named detail when one
 *     exists (exact name, else a case-insensitive match on the whole
 *     name, else on the last component), else to INBOX;
 *   - duplicate suppression (duplicatesuppression, duplicate_days): the
 *     append is store_append_dedup with the message's normalised
 *     Message-ID; the store checks its message-id index inside the
 *     append transaction, so concurrent deliveries of one message store
 *     it once, and a replica (whose records carry the same index) does
 *     the same after a failover.  A duplicate is answered 250;
 *   - strict semisync: no live replica refuses the transaction (451)
 *     before anything is stored; a replica that was live but did not
 *     confirm in time gets what was stored undone before the 451, so a
 *     4xx never leaves a message behind (docs/decisions.md).
 */
#include "lmtp/lmtp.h"

#include "lib/conn.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "session/session_store.h"
#include "sync/synchook.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------ */
/* User handles                                                        */

static void
lmtp_user_evict(struct lmtp_ucache *e)
{
	store_user_close(&e->u);
	e->name[0] = '\0';
	e->last_use = 0;
}

struct store_user *
lmtp_user_get(struct lmtp_sess *s, const char *user, bool recheck, struct err *err)
{
	struct lmtp_ucache *slot = NULL;
	size_t i;

	for (i = 0; i < LMTP_UCACHE; i++) {
		struct lmtp_ucache *e = &s->cache[i];

		if (e->u != NULL && str_eq(e->name, user)) {
			if (recheck) {
				int rc = store_user_exists(lmtpd_g.st, user, err);

				if (rc < 0)
					return NULL;
				if (rc == 0) {
					lmtp_user_evict(e);
					err_set(err, ERR_NOTFOUND, "no such user %s", user);
					return NULL;
				}
			}
			e->last_use = ++s->use_clock;
			return e->u;
		}
		if (slot == NULL || e->u == NULL || (slot->u != NULL && e->last_use < slot->last_use))
			slot = e;
	}
	if (slot->u != NULL)
		lmtp_user_evict(slot);
	slot->u = store_user_open(lmtpd_g.st, user, err);
	if (slot->u == NULL)
		return NULL;
	str_lcpy(slot->name, user, sizeof(slot->name));
	slot->last_use = ++s->use_clock;
	return slot->u;
}

/* Drop a handle after trouble (a failed fsync makes it refuse writes). */
static void
lmtp_user_drop(struct lmtp_sess *s, const char *user)
{
	for (size_t i = 0; i < LMTP_UCACHE; i++)
		if (s->cache[i].u != NULL && str_eq(s->cache[i].name, user))
			lmtp_user_evict(&s->cache[i]);
}

void
lmtp_user_release(struct lmtp_sess *s)
{
	for (size_t i = 0; i < LMTP_UCACHE; i++)
		if (s->cache[i].u != NULL)
			lmtp_user_evict(&s->cache[i]);
}

int
lmtp_quota_check(struct store_user *u, bool has_size, uint64_t size, struct err *err)
{
	struct store_quota q;

	if (store_quota_get(u, &q, err) < 0)
		return -1;
	if (q.limit_bytes > 0 &&
	    (q.used_bytes >= q.limit_bytes || (has_size && size > q.limit_bytes - q.used_bytes)))
		return 1;
	if (q.limit_messages > 0 && q.used_messages >= q.limit_messages)
		return 1;
	return 0;
}

void
lmtp_store_reply(const struct err *err, char *reply, size_t size)
{
	switch (err->kind) {
	case ERR_QUOTA:
		str_lcpy(reply, "452 4.2.2 Mailbox full", size);
		break;
	case ERR_TOOBIG:
		str_lcpy(reply, "552 5.3.4 Message size exceeds fixed maximum message size", size);
		break;
	case ERR_NOSPACE:
		str_lcpy(reply, "452 4.3.1 Insufficient system storage", size);
		break;
	case ERR_PERM:
		str_lcpy(reply, "451 4.3.0 Mailbox is read-only here, try again later", size);
		break;
	default:
		str_lcpy(reply, "451 4.3.0 Temporary server error, try again later", size);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Header lines                                                        */

/* "127.0.0.1:4711" -> "127.0.0.1", "[::1]:4711" -> "::1", others as they are. */
static void
lmtp_peer_addr(const char *peer, char *out, size_t size)
{
	const char *colon;

	if (peer[0] == '[') {
		const char *rb = strchr(peer, ']');
		size_t n = rb != NULL ? (size_t)(rb - peer - 1) : strlen(peer + 1);

		snprintf(out, size, "%.*s", (int)n, peer + 1);
		return;
	}
	colon = strrchr(peer, ':');
	if (colon != NULL && strchr(peer, ':') == colon && !str_has_prefix(peer, "unix"))
		snprintf(out, size, "%.*s", (int)(colon - peer), peer);
	else
		str_lcpy(out, peer, size);
}

void
lmtp_deliver_prefix(struct lmtp_sess *s)
{
	char date[64], addr[NET_ADDRSTR_MAX];
	time_t now = time(NULL);
	bool ip;
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S %z", &tm);
	lmtp_peer_addr(s->sc->peer, addr, sizeof(addr));
	ip = strchr(addr, '.') != NULL || strchr(addr, ':') != NULL;
	if (!ip)
		str_lcpy(addr, "localhost", sizeof(addr));   /* a unix socket or stdin */
	buf_reset(&s->msg);
	buf_printf(&s->msg, "Return-Path: <%s>\r\n", s->sender);
	buf_printf(&s->msg, "Received: from %s (%s%s%s)\r\n\tby %s (Castor) with %s id %s.%u\r\n",
		s->helo[0] ? s->helo : "unknown", ip ? "[" : "", addr, ip ? "]" : "", lmtpd_g.servername,
		s->smtputf8 ? (conn_is_tls(s->conn) ? "UTF8LMTPS" : "UTF8LMTP") :
		(conn_is_tls(s->conn) ? "LMTPS" : "LMTP"), s->id, s->ntxn + 1);
	if (s->nrcpt == 1)
		buf_printf(&s->msg, "\tfor <%s>; %s\r\n", s->rcpts[0].path, date);
	else
		buf_printf(&s->msg, "\t; %s\r\n", date);
	s->hdr_len = s->msg.len;
}

/* ------------------------------------------------------------------ */
/* Mailbox resolution                                                  */

struct lmtp_find {
	const char *detail;
	char whole[STORE_UNIQUEID_LEN + 1];  /* case-insensitive match on the whole name */
	char last[STORE_UNIQUEID_LEN + 1];   /* ... on the last component */
	char whole_name[STORE_MBOX_NAME_MAX + 1];
	char last_name[STORE_MBOX_NAME_MAX + 1];
};

static int
lmtp_find_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct lmtp_find *f = ctx;
	const char *slash;

	(void)attrs;
	if (mb == NULL)
		return 0;
	if (f->whole[0] == '\0' && str_eq_ci(name, f->detail)) {
		str_lcpy(f->whole, mb->uniqueid, sizeof(f->whole));
		str_lcpy(f->whole_name, name, sizeof(f->whole_name));
	}
	slash = strrchr(name, '/');
	if (f->last[0] == '\0' && str_eq_ci(slash != NULL ? slash + 1 : name, f->detail)) {
		str_lcpy(f->last, mb->uniqueid, sizeof(f->last));
		str_lcpy(f->last_name, name, sizeof(f->last_name));
	}
	return 0;
}

/* The mailbox for detail ("" = INBOX): uniqueid and name.  0 or -1 with err. */
static int
lmtp_resolve(struct store_user *u, const char *detail, char *id, char *name, struct err *err)
{
	struct store_mailbox mb;
	struct err e2 = { 0 };
	char norm[STORE_MBOX_NAME_MAX + 1];

	if (detail[0] != '\0' && store_mailbox_name_check(detail, norm, &e2) == 0) {
		if (store_mailbox_get(u, norm, &mb, &e2) == 0) {
			str_lcpy(id, mb.uniqueid, STORE_UNIQUEID_LEN + 1);
			str_lcpy(name, mb.name, STORE_MBOX_NAME_MAX + 1);
			return 0;
		}
		if (e2.kind != ERR_NOTFOUND) {
			*err = e2;
			return -1;
		}
	}
	if (detail[0] != '\0' && strlen(detail) <= STORE_MBOX_NAME_MAX) {
		struct lmtp_find f;

		memset(&f, 0, sizeof(f));
		f.detail = detail;
		if (store_mailbox_list(u, "*", STORE_LIST_NO_PARENTS, lmtp_find_cb, &f, err) < 0)
			return -1;
		if (f.whole[0] != '\0' || f.last[0] != '\0') {
			bool w = f.whole[0] != '\0';

			str_lcpy(id, w ? f.whole : f.last, STORE_UNIQUEID_LEN + 1);
			str_lcpy(name, w ? f.whole_name : f.last_name, STORE_MBOX_NAME_MAX + 1);
			return 0;
		}
	}
	if (store_mailbox_get(u, "INBOX", &mb, err) < 0)
		return -1;
	str_lcpy(id, mb.uniqueid, STORE_UNIQUEID_LEN + 1);
	str_lcpy(name, mb.name, STORE_MBOX_NAME_MAX + 1);
	return 0;
}

/* ------------------------------------------------------------------ */
/* Delivery                                                            */

struct lmtp_target {
	size_t rcpt;                                 /* index into s->rcpts */
	char mbox_id[STORE_UNIQUEID_LEN + 1];        /* "" when resolution failed */
	char mbox_name[STORE_MBOX_NAME_MAX + 1];
	bool first;                                  /* first target of its mailbox */
};

static void
lmtp_set_ok(struct lmtp_sess *s, struct lmtp_target *t, const struct store_append_result *res,
	const char *msgid, bool duplicate)
{
	struct lmtp_rcpt *r = &s->rcpts[t->rcpt];

	snprintf(r->reply, sizeof(r->reply), "250 2.0.0 <%.200s> %s", r->path,
		duplicate ? "Delivered (duplicate suppressed)" : "Delivered");
	if (!t->first)
		return;
	if (res != NULL && !duplicate) {
		str_lcpy(r->stored_mbox, t->mbox_id, sizeof(r->stored_mbox));
		r->stored_uid = res->uid;
	}
	log_info("delivered id=%s.%u user=%s mailbox=%s uid=%u size=%zu msgid=%s%s", s->id, s->ntxn,
		log_q(r->user), log_q(t->mbox_name), res != NULL ? res->uid : 0, s->msg.len,
		log_q(msgid[0] ? msgid : "-"), duplicate ? " duplicate=1" : "");
}

static void
lmtp_set_err(struct lmtp_sess *s, struct lmtp_target *t, const struct err *err)
{
	struct lmtp_rcpt *r = &s->rcpts[t->rcpt];

	lmtp_store_reply(err, r->reply, sizeof(r->reply));
	if (t->first)
		log_notice("delivery failed id=%s.%u user=%s mailbox=%s reply=%s error=%s", s->id, s->ntxn,
			log_q(r->user), log_q(t->mbox_name[0] ? t->mbox_name : "-"), log_q(r->reply),
			log_q(err->msg));
}

/* Deliver to the recipients rcpt[idx[0..n)] of one user. */
static void
lmtp_deliver_user(struct lmtp_sess *s, const size_t *idx, size_t n, const char *msgid)
{
	const char *user = s->rcpts[idx[0]].user;
	struct lmtp_target *t = xcalloc(n, sizeof(*t));
	struct store_append_msg m;
	struct store_append_result res;
	struct store_dedup dd;
	struct store_user *u;
	struct err err = { 0 };
	size_t nmbox = 0;

	u = lmtp_user_get(s, user, false, &err);
	if (u == NULL) {
		for (size_t k = 0; k < n; k++) {
			struct lmtp_rcpt *r = &s->rcpts[idx[k]];

			if (err.kind == ERR_NOTFOUND)
				snprintf(r->reply, sizeof(r->reply),
					"550 5.1.1 <%.200s>: Recipient address rejected: User unknown", r->path);
			else
				lmtp_store_reply(&err, r->reply, sizeof(r->reply));
		}
		log_notice("delivery failed id=%s.%u user=%s error=%s", s->id, s->ntxn, log_q(user),
			log_q(err.msg));
		free(t);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		t[k].rcpt = idx[k];
		if (lmtp_resolve(u, s->rcpts[idx[k]].detail, t[k].mbox_id, t[k].mbox_name, &err) < 0) {
			t[k].mbox_id[0] = '\0';
			t[k].first = true;
			lmtp_set_err(s, &t[k], &err);
			continue;
		}
		t[k].first = true;
		for (size_t j = 0; j < k; j++)
			if (t[j].mbox_id[0] != '\0' && str_eq(t[j].mbox_id, t[k].mbox_id))
				t[k].first = false;
		if (t[k].first)
			nmbox++;
	}

	memset(&m, 0, sizeof(m));
	m.data = s->msg.data;
	m.len = s->msg.len;
	m.internaldate = 0;   /* now: also the time the message-id index remembers */
	memset(&dd, 0, sizeof(dd));
	if (lmtpd_g.dedup && msgid[0] != '\0') {
		dd.msgid = msgid;
		dd.since = (int64_t)time(NULL) - lmtpd_g.dedup_days * 86400;
	}
	if (nmbox == 1) {
		/* the common case: one mailbox, one append, one commit */
		size_t k0 = 0;

		while (t[k0].mbox_id[0] == '\0' || !t[k0].first)
			k0++;
		err_clear(&err);
		if (store_append_dedup(u, t[k0].mbox_id, &m, &dd, 1, &res, NULL, &err) == 0) {
			for (size_t k = 0; k < n; k++)
				if (t[k].mbox_id[0] != '\0')
					lmtp_set_ok(s, &t[k], &res, msgid, res.duplicate);
		} else {
			for (size_t k = 0; k < n; k++)
				if (t[k].mbox_id[0] != '\0')
					lmtp_set_err(s, &t[k], &err);
			if (err.kind == ERR_TEMP)
				lmtp_user_drop(s, user);
		}
	} else if (nmbox > 1) {
		/* several mailboxes of one user: one transaction */
		struct store_append_result *rv = xcalloc(n, sizeof(*rv));
		bool *ok = xcalloc(n, sizeof(*ok));

		err_clear(&err);
		if (store_txn_begin(u, &err) < 0) {
			for (size_t k = 0; k < n; k++)
				if (t[k].mbox_id[0] != '\0')
					lmtp_set_err(s, &t[k], &err);
			lmtp_user_drop(s, user);
		} else {
			for (size_t k = 0; k < n; k++) {
				if (t[k].mbox_id[0] == '\0' || !t[k].first)
					continue;
				err_clear(&err);
				if (store_append_dedup(u, t[k].mbox_id, &m, &dd, 1, &rv[k], NULL, &err) == 0)
					ok[k] = true;
				else
					lmtp_set_err(s, &t[k], &err);
			}
			err_clear(&err);
			if (store_txn_commit(u, &err) < 0) {
				for (size_t k = 0; k < n; k++) {
					if (t[k].mbox_id[0] != '\0' && t[k].first && ok[k]) {
						ok[k] = false;
						lmtp_set_err(s, &t[k], &err);
					}
				}
				lmtp_user_drop(s, user);
			}
			/* the others follow the first target of their mailbox */
			for (size_t k = 0; k < n; k++) {
				size_t f = k;

				if (t[k].mbox_id[0] == '\0')
					continue;
				for (size_t j = 0; j < n; j++)
					if (t[j].first && t[j].mbox_id[0] != '\0' &&
					    str_eq(t[j].mbox_id, t[k].mbox_id)) {
						f = j;
						break;
					}
				if (ok[f])
					lmtp_set_ok(s, &t[k], &rv[f], msgid, rv[f].duplicate);
				else if (f != k)
					str_lcpy(s->rcpts[t[k].rcpt].reply, s->rcpts[t[f].rcpt].reply,
						sizeof(s->rcpts[t[k].rcpt].reply));
			}
		}
		free(rv);
		free(ok);
	}
	free(t);
}

/* Strict semisync refused the transaction after its commit: expunge
 * what it stored (store_append_undo also drops it from the message-id
 * index, so the MTA's retry is stored, not suppressed).  false when an
 * undo failed: that message stays, and a retry is suppressed as its
 * duplicate (stored once). */
static bool
lmtp_deliver_undo(struct lmtp_sess *s)
{
	bool all = true;

	for (size_t i = 0; i < s->nrcpt; i++) {
		struct lmtp_rcpt *r = &s->rcpts[i];
		struct store_user *u;
		struct err err = { 0 };

		if (r->stored_uid == 0)
			continue;
		u = lmtp_user_get(s, r->user, false, &err);
		if (u == NULL || store_append_undo(u, r->stored_mbox, &r->stored_uid, 1, &err) < 0) {
			log_error("delivery not confirmed, undo failed id=%s.%u user=%s uid=%u error=%s",
				s->id, s->ntxn, log_q(r->user), r->stored_uid, log_q(err.msg));
			all = false;
			continue;
		}
		log_notice("delivery not confirmed, undone id=%s.%u user=%s uid=%u", s->id, s->ntxn,
			log_q(r->user), r->stored_uid);
	}
	return all;
}

/*
 * sync_mode semisync: a 250 waits until a replica has committed the
 * message too (one wait covers every user of the transaction).  In async
 * mode it may wait a little when the client was idle before MAIL anyway
 * (sync_async_wait, synchook.h).  When strict semisync gives up (the
 * replica was live when the transaction was admitted but did not confirm
 * in time), what was stored is undone and the recipients get 451 4.4.0:
 * the MTA keeps the message and its retry is stored once.
 */
static void
lmtp_deliver_confirm(struct lmtp_sess *s)
{
	struct err err = { 0 };
	bool any = false;

	for (size_t i = 0; i < s->nrcpt && !any; i++)
		any = str_has_prefix(s->rcpts[i].reply, "250");
	if (!any)
		return;
	synchook_idle_hint(lmtpd_g.st, s->txn_idle_us);
	if (session_store_wait(lmtpd_g.st, &err) == 0)
		return;
	log_warn("replication not confirmed id=%s.%u error=%s", s->id, s->ntxn, log_q(err.msg));
	(void)lmtp_deliver_undo(s);
	for (size_t i = 0; i < s->nrcpt; i++) {
		struct lmtp_rcpt *r = &s->rcpts[i];

		if (str_has_prefix(r->reply, "250"))
			snprintf(r->reply, sizeof(r->reply),
				"451 4.4.0 <%.200s> Not confirmed by a replica, try again later", r->path);
	}
}

/* Strict semisync with no live replica: refuse every recipient before
 * anything is stored.  true when the delivery may go ahead. */
static bool
lmtp_deliver_admit(struct lmtp_sess *s)
{
	struct err err = { 0 };

	if (synchook_admit(lmtpd_g.st, &err) == 0)
		return true;
	log_warn("delivery refused id=%s.%u recipients=%zu error=%s", s->id, s->ntxn, s->nrcpt,
		log_q(err.msg));
	for (size_t i = 0; i < s->nrcpt; i++)
		snprintf(s->rcpts[i].reply, sizeof(s->rcpts[i].reply),
			"451 4.4.0 <%.200s> No replica is connected, try again later", s->rcpts[i].path);
	return false;
}

void
lmtp_deliver(struct lmtp_sess *s)
{
	struct buf msgid = BUF_INIT;
	bool *done = xcalloc(s->nrcpt, sizeof(*done));
	size_t *idx = xcalloc(s->nrcpt, sizeof(*idx));

	for (size_t i = 0; i < s->nrcpt; i++)
		s->rcpts[i].stored_uid = 0;
	if (!lmtp_deliver_admit(s)) {
		free(done);
		free(idx);
		return;
	}
	/* the key of duplicate suppression, normalised as the store indexes it */
	store_message_id(s->msg.data + s->hdr_len, s->msg.len - s->hdr_len, &msgid);
	for (size_t i = 0; i < s->nrcpt; i++) {
		size_t n = 0;

		if (done[i])
			continue;
		for (size_t j = i; j < s->nrcpt; j++) {
			if (!done[j] && str_eq(s->rcpts[j].user, s->rcpts[i].user)) {
				idx[n++] = j;
				done[j] = true;
			}
		}
		lmtp_deliver_user(s, idx, n, buf_cstr(&msgid));
	}
	free(done);
	free(idx);
	buf_free(&msgid);
	lmtp_deliver_confirm(s);
}
