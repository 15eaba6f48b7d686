/*
 * syncpush_answer.c - the replica's answers to the pipelined commands:
 * parsing the data it sends (GET USER, GET RECORDS, RESERVE, GET USERS),
 * and what each tagged answer does: fill the replica's state and the
 * cache, mark a mailbox or user for another round (a stale picture of
 * the replica), park the user (a refusal that belongs to it alone), or
 * end the session (fenced, temporary, or policy without a park hook).
 */
#include "sync/syncpush_int.h"

#include "sync/syncapply.h"

/* The n-th value of a code after its name, or NULL. */
static const struct syncproto_value *
code_arg(const struct syncproto_value *code, size_t n)
{
	if (code == NULL || code->n <= n)
		return NULL;
	return &code->items[n];
}

static bool
code_word(const struct syncproto_value *code, const char *w)
{
	const struct syncproto_value *v = code_arg(code, 1);

	return v != NULL && syncproto_get_cstr(v) != NULL && str_eq_ci(v->str, w);
}

/* OK [MAILBOX HIGHESTMODSEQ h UIDNEXT n CHECKSUM c] */
static bool
code_mailbox(const struct syncproto_value *code, uint64_t *hms, uint32_t *uidnext, uint32_t *crc)
{
	uint64_t h = 0, n = 0, c = 0;
	int got = 0;

	if (code == NULL || code->n < 7 || !syncproto_is_atom(&code->items[0], "MAILBOX"))
		return false;
	for (size_t i = 1; i + 1 < code->n; i += 2) {
		const struct syncproto_value *k = &code->items[i], *v = &code->items[i + 1];
		uint64_t x;
		if (syncproto_get_u64(v, &x) < 0)
			return false;
		if (syncproto_is_atom(k, "HIGHESTMODSEQ"))
			h = x, got |= 1;
		else if (syncproto_is_atom(k, "UIDNEXT"))
			n = x, got |= 2;
		else if (syncproto_is_atom(k, "CHECKSUM"))
			c = x, got |= 4;
	}
	if (got != 7 || n > UINT32_MAX || c > UINT32_MAX)
		return false;
	*hms = h;
	*uidnext = (uint32_t)n;
	*crc = (uint32_t)c;
	return true;
}

/* Set one user aside: the replica refused a change of this user alone
 * (the first reason counts).  Nothing more is sent for it in this run. */
void
syncpush_answer_park(struct pu *u, const char *what, const char *text)
{
	u->parked = true;
	u->failed = true;
	u->retry = false;
	if (u->park_reason == NULL) {
		struct buf b = BUF_INIT;
		if (what != NULL)
			buf_printf(&b, "%s: ", what);
		buf_puts(&b, text != NULL && text[0] ? text : "refused");
		u->park_reason = buf_steal(&b);
	}
}

/* Does this refusal belong to one user (park it) rather than to the
 * session?  PERM (delete-limit, INBOX cannot be deleted, out of UIDs),
 * DAMAGED (a damaged user on the replica, answered NO [DAMAGED]), and
 * any answer whose code names "damaged" as its argument.  A plain CORRUPT (one body that does not match its GUID) is
 * counted as an error as before: it should not hold the user's other
 * mail back. */
static bool
user_refusal(const struct syncproto_response *r)
{
	return r->code_kind == ERR_PERM || r->code_kind == ERR_DAMAGED ||
		code_word(r->code, "damaged");
}

/* A refusal that ends the session (or the channel), or that parks the
 * user u (when a park hook is set; u is NULL for session commands).
 * true: handled, the caller stops looking at the answer. */
static bool
fatal_no(struct syncpush *p, struct pu *u, const struct syncproto_response *r, const char *what)
{
	enum err_kind k = r->code_kind;

	if (r->kind == SYNCPROTO_RESP_OK)
		return false;
	if (u != NULL && p->park_fn != NULL && k != ERR_FENCED && user_refusal(r)) {
		syncpush_answer_park(u, what, r->text);
		return true;
	}
	if (k == ERR_FENCED) {
		syncpush_sess_fatal(p, ERR_FENCED, "fenced by the replica: %s", r->text ? r->text : what);
		return true;
	}
	if (k == ERR_TEMP || k == ERR_NOSPACE || k == ERR_NONE) {
		syncpush_sess_fatal(p, ERR_TEMP, "replica: %s", r->text ? r->text : what);
		return true;
	}
	if (k == ERR_PERM) {
		syncpush_sess_fatal(p, ERR_PERM, "refused by the replica: %s", r->text ? r->text : what);
		return true;
	}
	return false;
}

static void
note_error(struct syncpush *p, const char *user, const char *what, const struct syncproto_response *r)
{
	p->stats.errors++;
	snprintf(p->last_problem, sizeof(p->last_problem), "%s user %s: %s", what, user,
		r->text ? r->text : "refused");
	log_error("sync refused what=%s user=%s error=%s", what, user, log_q(r->text ? r->text : ""));
}

static int
parse_rmb(const struct syncproto_value *kv, struct rmb *m)
{
	const struct syncproto_value *v;
	const char *name = NULL, *su = NULL;
	uint64_t x;
	struct err err;

	memset(m, 0, sizeof(*m));
	if (syncproto_kv_check(kv, &err) < 0)
		return -1;
	v = syncproto_kv_get(kv, "UNIQUEID");
	if (v == NULL || !syncproto_is_hex(v, STORE_UNIQUEID_LEN) ||
	    syncproto_kv_cstr(kv, "NAME", &name, &err) != 1)
		return -1;
	str_lcpy(m->uniqueid, v->str, sizeof(m->uniqueid));
	if (syncproto_kv_u64(kv, "UIDVALIDITY", &x, &err) != 1 || x > UINT32_MAX)
		return -1;
	m->uidvalidity = (uint32_t)x;
	if (syncproto_kv_u64(kv, "UIDNEXT", &x, &err) != 1 || x > UINT32_MAX)
		return -1;
	m->uidnext = (uint32_t)x;
	if (syncproto_kv_u64(kv, "HIGHESTMODSEQ", &m->hms, &err) != 1)
		return -1;
	if (syncproto_kv_u64(kv, "CHECKSUM", &x, &err) != 1 || x > UINT32_MAX)
		return -1;
	m->crc = (uint32_t)x;
	(void)syncproto_kv_u64(kv, "MODSEQ", &m->modseq, &err);
	(void)syncproto_kv_u64(kv, "CREATEDMODSEQ", &m->createdmodseq, &err);
	(void)syncproto_kv_u64(kv, "DELETEDMODSEQ", &m->deletedmodseq, &err);
	if (syncproto_kv_cstr(kv, "SPECIALUSE", &su, &err) == 1)
		str_lcpy(m->specialuse, su, sizeof(m->specialuse));
	m->name = xstrdup(name);
	return 0;
}

static int
parse_quota(const struct syncproto_value *kv, const char *key, int64_t *q)
{
	const struct syncproto_value *v = syncproto_kv_get(kv, key);
	uint64_t x;

	*q = -1;
	if (v == NULL || v->type == SYNCPROTO_NIL)
		return 0;
	if (syncproto_get_u64(v, &x) < 0 || x > INT64_MAX)
		return -1;
	*q = (int64_t)x;
	return 0;
}

static struct ruser *
parse_ruser(struct syncpush *p)
{
	struct ruser *r = xcalloc(1, sizeof(*r));
	struct err err;

	r->exists = true;
	r->quota_bytes = r->quota_messages = -1;
	for (size_t i = 0; i < p->nun; i++) {
		struct syncproto_response d;
		const struct syncproto_value *kv;

		if (syncproto_response_parse(p->un[i], &d, &err) < 0 || d.kind != SYNCPROTO_RESP_DATA ||
		    d.nargs != 1)
			continue;
		kv = &d.args[0];
		if (str_eq_ci(d.data, "USER")) {
			const struct syncproto_value *v;
			if (syncproto_kv_check(kv, &err) < 0)
				goto bad;
			if (syncproto_kv_u64(kv, "HIGHESTMODSEQ", &r->modseq, &err) != 1 ||
			    parse_quota(kv, "QUOTA-BYTES", &r->quota_bytes) < 0 ||
			    parse_quota(kv, "QUOTA-MESSAGES", &r->quota_messages) < 0)
				goto bad;
			v = syncproto_kv_get(kv, "PASSWORD-SHA256");
			if (v != NULL && syncproto_get_cstr(v) != NULL)
				str_lcpy(r->pwsha, v->str, sizeof(r->pwsha));
		} else if (str_eq_ci(d.data, "MAILBOX")) {
			if (r->nmbs == r->capmbs) {
				r->capmbs = r->capmbs ? 2 * r->capmbs : 16;
				r->mbs = xreallocarray(r->mbs, r->capmbs, sizeof(*r->mbs));
			}
			if (parse_rmb(kv, &r->mbs[r->nmbs]) < 0)
				goto bad;
			r->nmbs++;
		} else if (str_eq_ci(d.data, "SUB")) {
			const char *name = NULL;
			uint64_t s = 0, m = 0;
			if (syncproto_kv_check(kv, &err) < 0 ||
			    syncproto_kv_cstr(kv, "NAME", &name, &err) != 1 ||
			    syncproto_kv_u64(kv, "SUBSCRIBED", &s, &err) != 1 ||
			    syncproto_kv_u64(kv, "MODSEQ", &m, &err) != 1)
				goto bad;
			if (r->nsubs == r->capsubs) {
				r->capsubs = r->capsubs ? 2 * r->capsubs : 16;
				r->subs = xreallocarray(r->subs, r->capsubs, sizeof(*r->subs));
			}
			r->subs[r->nsubs].name = xstrdup(name);
			r->subs[r->nsubs].subscribed = s == 1;
			r->subs[r->nsubs].modseq = m;
			r->nsubs++;
		}
	}
	return r;
bad:
	ruser_free(r);
	return NULL;
}

static int
parse_rrecord(const struct syncproto_value *kv, struct store_record *rec, struct buf *kw)
{
	const struct syncproto_value *g, *flags = NULL;
	uint64_t uid = 0;
	int64_t idate = 0;
	struct err err;

	memset(rec, 0, sizeof(*rec));
	if (syncproto_kv_check(kv, &err) < 0 ||
	    syncproto_kv_u64(kv, "UID", &uid, &err) != 1 || uid == 0 || uid > UINT32_MAX ||
	    syncproto_kv_u64(kv, "MODSEQ", &rec->modseq, &err) != 1)
		return -1;
	rec->uid = (uint32_t)uid;
	g = syncproto_kv_get(kv, "GUID");
	if (g == NULL || !syncproto_is_hex(g, STORE_GUID_LEN))
		return -1;
	str_lcpy(rec->guid, g->str, sizeof(rec->guid));
	if (syncproto_kv_u64(kv, "EXPUNGEDMODSEQ", &rec->expunged_modseq, &err) < 0 ||
	    syncproto_kv_u64(kv, "SIZE", &rec->size, &err) < 0 ||
	    syncproto_kv_i64(kv, "INTERNALDATE", &idate, &err) < 0 ||
	    syncproto_kv_list(kv, "FLAGS", &flags, &err) < 0)
		return -1;
	rec->internaldate = idate;
	buf_reset(kw);
	if (flags != NULL && syncapply_parse_flags(flags, &rec->sysflags, kw, &err) < 0)
		return -1;
	rec->keywords = buf_cstr(kw);
	return 0;
}

static void
handle_get_user(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r)
{
	struct pu *u = c->u;

	if (r->kind == SYNCPROTO_RESP_OK) {
		u->r = parse_ruser(p);
		if (u->r == NULL) {
			syncpush_sess_fatal(p, ERR_TEMP, "bad GET USER answer for %s", u->name);
			return;
		}
		u->got_r = true;
		for (size_t i = 0; i < u->r->nmbs; i++)
			if (u->r->mbs[i].deletedmodseq == 0)
				cache_put(&p->cache, u->name, &u->r->mbs[i]);
			else
				cache_del(&p->cache, u->name, u->r->mbs[i].uniqueid);
		return;
	}
	if (r->code_kind == ERR_NOTFOUND) {
		u->r = xcalloc(1, sizeof(*u->r));
		u->r->exists = false;
		u->r->quota_bytes = u->r->quota_messages = -1;
		u->got_r = true;
		return;
	}
	if (!fatal_no(p, u, r, "GET USER"))
		note_error(p, u->name, "GET USER", r);
	u->failed = true;
}

static void
handle_get_records(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r)
{
	struct pm *m = &c->u->pms[c->mi];
	struct buf kw = BUF_INIT;
	struct err err;

	if (r->kind != SYNCPROTO_RESP_OK) {
		if (!fatal_no(p, c->u, r, "GET RECORDS")) {
			m->retry = true;
			c->u->retry = true;
		}
		m->act = PM_NONE;
		return;
	}
	if (!code_mailbox(r->code, &m->r_hms, &m->r_uidnext, &m->r_crc)) {
		syncpush_sess_fatal(p, ERR_TEMP, "bad GET RECORDS answer for %s", c->u->name);
		return;
	}
	for (size_t i = 0; i < p->nun; i++) {
		struct syncproto_response d;
		struct store_record rec;

		if (syncproto_response_parse(p->un[i], &d, &err) < 0 || d.kind != SYNCPROTO_RESP_DATA ||
		    !str_eq_ci(d.data, "RECORD") || d.nargs != 1)
			continue;
		if (parse_rrecord(&d.args[0], &rec, &kw) < 0) {
			syncpush_sess_fatal(p, ERR_TEMP, "bad RECORD from the replica for %s", c->u->name);
			break;
		}
		precs_add(&m->rrecs, &rec);
	}
	buf_free(&kw);
	m->got_rrecs = true;
}

static void
handle_reserve(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r)
{
	struct pu *u = c->u;
	struct err err;

	if (r->kind != SYNCPROTO_RESP_OK) {
		if (!fatal_no(p, u, r, "RESERVE"))
			note_error(p, u->name, "RESERVE", r);
		u->failed = true;
		return;
	}
	for (size_t i = 0; i < p->nun; i++) {
		struct syncproto_response d;

		if (syncproto_response_parse(p->un[i], &d, &err) < 0 || d.kind != SYNCPROTO_RESP_DATA ||
		    !str_eq_ci(d.data, "MISSING") || d.nargs != 1 || d.args[0].type != SYNCPROTO_LIST)
			continue;
		for (size_t k = 0; k < d.args[0].n; k++)
			if (syncproto_is_hex(&d.args[0].items[k], STORE_GUID_LEN))
				strv_add(&u->missing, d.args[0].items[k].str);
	}
}

static void
handle_apply_mailbox(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r)
{
	struct pu *u = c->u;
	struct pm *m = &u->pms[c->mi];

	if (m->failed)
		return;      /* the first refusal of a chain is the one that counts */
	if (r->kind == SYNCPROTO_RESP_OK) {
		if (c->last) {
			struct rmb nm;

			if (!code_mailbox(r->code, &m->ok_hms, &m->ok_uidnext, &m->ok_crc)) {
				syncpush_sess_fatal(p, ERR_TEMP, "bad APPLY MAILBOX answer for %s", u->name);
				return;
			}
			m->ok = true;
			memset(&nm, 0, sizeof(nm));
			str_lcpy(nm.uniqueid, m->id, sizeof(nm.uniqueid));
			nm.name = m->L.name;
			nm.uidvalidity = m->L.uidvalidity;
			nm.uidnext = m->ok_uidnext;
			nm.hms = m->ok_hms;
			nm.crc = m->ok_crc;
			nm.diverged = m->diverged;
			str_lcpy(nm.specialuse, m->L.specialuse, sizeof(nm.specialuse));
			cache_put(&p->cache, u->name, &nm);
			p->stats.mailboxes++;
		}
		return;
	}
	m->failed = true;
	u->failed = true;
	cache_del(&p->cache, u->name, m->id);
	if (fatal_no(p, u, r, "APPLY MAILBOX"))
		return;
	switch (r->code_kind) {
	case ERR_CONFLICT:
		if (code_word(r->code, "checksum") || code_word(r->code, "checksum-after") ||
		    code_word(r->code, "guid") || code_word(r->code, "state"))
			m->force_repair = true;
		m->retry = true;
		u->retry = true;
		log_info("replica state differs user=%s mailbox=%s answer=%s: comparing again",
			u->name, m->id, log_q(r->text ? r->text : ""));
		break;
	case ERR_EXISTS:
	case ERR_NOTFOUND:
		if (code_word(r->code, "guid"))
			m->force_repair = true;
		m->retry = true;
		u->retry = true;
		break;
	default:
		note_error(p, u->name, "APPLY MAILBOX", r);
		break;
	}
}

static void
handle_simple(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r,
	const char *what)
{
	struct pu *u = c->u;

	if (r->kind == SYNCPROTO_RESP_OK)
		return;
	u->failed = true;
	if (c->kind == PK_APPLY_RENAME || c->kind == PK_APPLY_DELETE) {
		u->pms[c->mi].failed = true;
		cache_del(&p->cache, u->name, u->pms[c->mi].id);
	}
	if (fatal_no(p, u, r, what))
		return;
	if (r->code_kind == ERR_CONFLICT || r->code_kind == ERR_EXISTS ||
	    r->code_kind == ERR_NOTFOUND) {
		u->retry = true;
		return;
	}
	note_error(p, u->name, what, r);
}

/* GET USERS: the replica's users and their summaries, into p->au_*. */
static void
handle_get_users(struct syncpush *p, const struct syncproto_response *r)
{
	struct err err;

	if (r->kind != SYNCPROTO_RESP_OK) {
		if (!fatal_no(p, NULL, r, "GET USERS"))
			syncpush_sess_fatal(p, ERR_TEMP, "GET USERS refused: %s", r->text ? r->text : "");
		return;
	}
	for (size_t i = 0; i < p->nun; i++) {
		struct syncproto_response d;
		const char *name = NULL;
		uint64_t ms = 0, dg = 0;
		if (syncproto_response_parse(p->un[i], &d, &err) < 0 ||
		    d.kind != SYNCPROTO_RESP_DATA || !str_eq_ci(d.data, "USER") ||
		    d.nargs != 1 || syncproto_kv_check(&d.args[0], &err) < 0 ||
		    syncproto_kv_cstr(&d.args[0], "NAME", &name, &err) != 1 ||
		    syncproto_kv_u64(&d.args[0], "HIGHESTMODSEQ", &ms, &err) != 1)
			continue;
		if (p->au_names.n == p->au_cap) {
			p->au_cap = p->au_cap ? 2 * p->au_cap : 256;
			p->au_modseq = xreallocarray(p->au_modseq, p->au_cap, sizeof(uint64_t));
			p->au_digest = xreallocarray(p->au_digest, p->au_cap, sizeof(int64_t));
		}
		p->au_modseq[p->au_names.n] = ms;
		p->au_digest[p->au_names.n] =
			syncproto_kv_u64(&d.args[0], "DIGEST", &dg, &err) == 1 && dg <= UINT32_MAX ?
			(int64_t)dg : -1;
		strv_add(&p->au_names, name);
	}
}

/* One tagged answer c got: what it does to c's user, mailbox, or the
 * session (read_one, syncpush_sess.c). */
void
syncpush_answer_handle(struct syncpush *p, struct pcmd *c, const struct syncproto_response *r,
	const struct syncproto_value *code)
{
	(void)code;
	switch (c->kind) {
	case PK_GET_USER:
		handle_get_user(p, c, r);
		break;
	case PK_GET_RECORDS:
		handle_get_records(p, c, r);
		break;
	case PK_RESERVE:
		handle_reserve(p, c, r);
		break;
	case PK_UPLOAD:
		if (r->kind != SYNCPROTO_RESP_OK) {
			c->u->failed = true;
			if (r->code_kind == ERR_CONFLICT) {
				/* rolled back with a refused APPLY: again next round */
				c->u->retry = true;
			} else if (!fatal_no(p, c->u, r, "UPLOAD")) {
				note_error(p, c->u->name, "UPLOAD", r);
			}
		}
		break;
	case PK_APPLY_MAILBOX:
		handle_apply_mailbox(p, c, r);
		break;
	case PK_APPLY_RENAME:
		if (r->kind == SYNCPROTO_RESP_OK)
			p->stats.renames++;
		handle_simple(p, c, r, "APPLY RENAME");
		break;
	case PK_APPLY_DELETE:
		if (r->kind == SYNCPROTO_RESP_OK) {
			p->stats.deletes++;
			cache_del(&p->cache, c->u->name, c->u->pms[c->mi].id);
		}
		handle_simple(p, c, r, "APPLY DELETE");
		break;
	case PK_APPLY_SUB:
		handle_simple(p, c, r, "APPLY SUB");
		break;
	case PK_APPLY_USER:
		handle_simple(p, c, r, "APPLY USER");
		break;
	case PK_APPLY_UNUSER:
		if (r->kind == SYNCPROTO_RESP_OK)
			cache_forget_user(&p->cache, c->u->name);
		handle_simple(p, c, r, "APPLY UNUSER");
		break;
	case PK_APPLY_PASSWORD:
		handle_simple(p, c, r, "APPLY PASSWORD");
		break;
	case PK_GET_USERS:
		handle_get_users(p, r);
		break;
	case PK_NOOP:
	case PK_LOGOUT:
	case PK_LOGIN:
		if (r->kind != SYNCPROTO_RESP_OK && c->kind == PK_NOOP)
			(void)fatal_no(p, NULL, r, "NOOP");
		break;
	}
}
