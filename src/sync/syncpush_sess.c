/*
 * syncpush_sess.c - the session of the master side of replication: the
 * life of struct syncpush and its settings (hooks, deletion thresholds,
 * counters), the login (greeting, STARTTLS, AUTHENTICATE, COMPRESS,
 * HELLO), NOOP and LOGOUT, the conflict hook's call, the small LRU of
 * open local user databases, and the command pipeline: a ring of
 * tagged commands in flight (at most WINDOW, RULES 6 in
 * syncpush_round.c), read_one matching each tagged answer to its
 * command and handing it to syncpush_answer_handle().
 */
#include "sync/syncpush_int.h"

#include "lib/conn.h"
#include "lib/sasl.h"

#define WINDOW 1000
#define OUT_FLUSH (1024u * 1024)
#define ZSTD_LEVEL 3

const char *
syncpush_conflict_name(enum syncpush_conflict_kind k)
{
	static const char *const names[SYNCPUSH_C_COUNT] = {
		"guid", "uid_above", "modseq_ahead", "uidvalidity", "name_clash",
		"deleted_on_replica", "replica_only_record", "replica_only_mailbox",
		"replica_only_user", "flags",
	};

	return (unsigned)k < SYNCPUSH_C_COUNT ? names[k] : "unknown";
}

static enum syncpush_resolution
default_conflict(void *ctx, const struct syncpush_conflict *c)
{
	(void)ctx;
	log_warn("sync conflict kind=%s user=%s mailbox=%s name=%s uid=%u master_guid=%s"
		" replica_guid=%s master_modseq=%llu replica_modseq=%llu action=%s",
		syncpush_conflict_name(c->kind), c->user, c->mailbox_id ? c->mailbox_id : "-",
		log_q(c->mailbox_name ? c->mailbox_name : "-"), c->uid,
		c->master_guid ? c->master_guid : "-", c->replica_guid ? c->replica_guid : "-",
		(unsigned long long)c->master_modseq, (unsigned long long)c->replica_modseq,
		c->kind == SYNCPUSH_C_FLAGS ? "master" : "leave");
	return c->kind == SYNCPUSH_C_FLAGS ? SYNCPUSH_R_MASTER : SYNCPUSH_R_LEAVE;
}

enum syncpush_resolution
syncpush_sess_conflict(struct syncpush *p, const struct syncpush_conflict *c)
{
	p->stats.conflicts[c->kind]++;
	snprintf(p->last_problem, sizeof(p->last_problem), "conflict %s user %s mailbox %s uid %u",
		syncpush_conflict_name(c->kind), c->user, c->mailbox_name ? c->mailbox_name : "-",
		c->uid);
	return p->conflict_fn(p->conflict_ctx, c);
}

struct syncpush *
syncpush_new(struct store *st, struct syncsess *sess)
{
	struct syncpush *p = xcalloc(1, sizeof(*p));

	p->st = st;
	p->sess = sess;
	p->next_tag = 1;
	p->conflict_fn = default_conflict;
	syncpush_delete_limits_default(&p->dl);
	return p;
}

void
syncpush_delete_limits_default(struct syncpush_delete_limits *l)
{
	l->limit = 50;
	l->fraction = 0.5;
	l->fraction_min = 4;
	l->user_limit = 5;
}

void
syncpush_set_delete_limits(struct syncpush *p, const struct syncpush_delete_limits *l)
{
	p->dl = *l;
}

static void
untagged_clear(struct syncpush *p)
{
	for (size_t i = 0; i < p->nun; i++)
		syncproto_value_free(&p->un[i]);
	p->nun = 0;
}

void
syncpush_free(struct syncpush **pp)
{
	struct syncpush *p = *pp;

	if (p == NULL)
		return;
	untagged_clear(p);
	free(p->un);
	free(p->q);
	cache_clear(&p->cache);
	for (size_t i = 0; i < LOCAL_USERS; i++)
		store_user_close(&p->lus[i].u);
	strv_free(&p->au_names);
	free(p->au_modseq);
	free(p->au_digest);
	free(p);
	*pp = NULL;
}

void
syncpush_set_conflict_hook(struct syncpush *p, syncpush_conflict_fn fn, void *ctx)
{
	p->conflict_fn = fn != NULL ? fn : default_conflict;
	p->conflict_ctx = ctx;
}

void
syncpush_set_park_hook(struct syncpush *p, syncpush_park_fn park, syncpush_skip_fn skip, void *ctx)
{
	p->park_fn = park;
	p->skip_fn = skip;
	p->park_ctx = ctx;
}

void
syncpush_stats(const struct syncpush *p, struct syncpush_stats *s)
{
	*s = p->stats;
}

const char *
syncpush_last_problem(const struct syncpush *p)
{
	return p->last_problem;
}

void
syncpush_forget(struct syncpush *p)
{
	cache_clear(&p->cache);
}

/* A local user database, kept open for a while (LRU of a few). */
struct store_user *
syncpush_sess_user(struct syncpush *p, const char *name, struct err *err)
{
	size_t victim = 0;

	for (size_t i = 0; i < LOCAL_USERS; i++) {
		if (p->lus[i].u != NULL && str_eq(p->lus[i].name, name)) {
			p->lus[i].used = ++p->luse;
			return p->lus[i].u;
		}
		if (p->lus[i].used < p->lus[victim].used)
			victim = i;
	}
	store_user_close(&p->lus[victim].u);
	p->lus[victim].u = store_user_open(p->st, name, err);
	if (p->lus[victim].u == NULL)
		return NULL;
	str_lcpy(p->lus[victim].name, name, sizeof(p->lus[victim].name));
	p->lus[victim].used = ++p->luse;
	return p->lus[victim].u;
}

void
syncpush_sess_user_forget(struct syncpush *p, const char *name)
{
	for (size_t i = 0; i < LOCAL_USERS; i++)
		if (p->lus[i].u != NULL && str_eq(p->lus[i].name, name)) {
			store_user_close(&p->lus[i].u);
			p->lus[i].used = 0;
		}
}

void
syncpush_sess_fatal(struct syncpush *p, enum err_kind kind, const char *fmt, const char *msg)
{
	if (p->fatal)
		return;
	p->fatal = true;
	err_set(&p->fatal_err, kind, fmt, msg);
}

struct pcmd *
syncpush_sess_begin(struct syncpush *p, enum pk kind, struct syncproto_enc *e)
{
	struct pcmd *c;
	char tag[24];

	if (p->qlen == p->qcap) {
		/* grow the ring, unrolling it */
		size_t nc = p->qcap ? 2 * p->qcap : 256;
		struct pcmd *nq = xcalloc(nc, sizeof(*nq));
		for (size_t i = 0; i < p->qlen; i++)
			nq[i] = p->q[(p->qhead + i) % p->qcap];
		free(p->q);
		p->q = nq;
		p->qcap = nc;
		p->qhead = 0;
	}
	c = &p->q[(p->qhead + p->qlen) % p->qcap];
	p->qlen++;
	memset(c, 0, sizeof(*c));
	c->tag = p->next_tag++;
	c->kind = kind;
	snprintf(tag, sizeof(tag), "T%llu", (unsigned long long)c->tag);
	syncproto_enc_init(e, syncsess_out(p->sess), SYNCPROTO_ENC_LITERAL_PLUS);
	syncproto_enc_atom(e, tag);
	return c;
}

static int read_one(struct syncpush *p, struct err *err);

/* End a command's frame; keep the pipeline within its window. */
int
syncpush_sess_end(struct syncpush *p, struct syncproto_enc *e, struct err *err)
{
	syncproto_enc_end(e);
	if (syncsess_out(p->sess)->len >= OUT_FLUSH && syncsess_flush(p->sess, err) < 0)
		return -1;
	while (p->qlen >= WINDOW)
		if (read_one(p, err) < 0)
			return -1;
	return 0;
}

int
syncpush_sess_drain(struct syncpush *p, struct err *err)
{
	while (p->qlen > 0)
		if (read_one(p, err) < 0)
			return -1;
	return 0;
}

static int
read_one(struct syncpush *p, struct err *err)
{
	struct syncproto_value *f = NULL;
	struct syncproto_response r;
	struct pcmd *c;
	char want[24];
	int rc;

	if (p->qlen == 0)
		return 0;
	if (syncsess_out(p->sess)->len > 0 && syncsess_flush(p->sess, err) < 0)
		return -1;
	c = &p->q[p->qhead];
	snprintf(want, sizeof(want), "T%llu", (unsigned long long)c->tag);
	for (;;) {
		rc = syncsess_read(p->sess, &f, err);
		if (rc == 0)
			return err_set(err, ERR_TEMP, "the replica closed the connection");
		if (rc < 0)
			return -1;
		if (syncproto_response_parse(f, &r, err) < 0) {
			syncproto_value_free(&f);
			err->kind = ERR_TEMP;
			err_prefix(err, "bad answer from the replica");
			return -1;
		}
		if (r.kind == SYNCPROTO_RESP_BYE) {
			err_set(err, r.code_kind == ERR_FENCED ? ERR_FENCED : ERR_TEMP,
				"the replica said BYE: %s", r.text ? r.text : "");
			syncproto_value_free(&f);
			return -1;
		}
		if (r.kind == SYNCPROTO_RESP_DATA || r.kind == SYNCPROTO_RESP_CONTINUE ||
		    r.tag == NULL) {
			if (r.kind == SYNCPROTO_RESP_CONTINUE) {
				syncproto_value_free(&f);
				continue;
			}
			if (p->nun == p->capun) {
				p->capun = p->capun ? 2 * p->capun : 64;
				p->un = xreallocarray(p->un, p->capun, sizeof(*p->un));
			}
			p->un[p->nun++] = f;
			f = NULL;
			continue;
		}
		if (!str_eq(r.tag, want)) {
			syncproto_value_free(&f);
			return err_set(err, ERR_TEMP, "answer out of order: %s for %s", r.tag, want);
		}
		break;
	}
	p->qhead = (p->qhead + 1) % p->qcap;
	p->qlen--;
	syncpush_answer_handle(p, c, &r, r.code);
	untagged_clear(p);
	syncproto_value_free(&f);
	return 0;
}

/* Read one frame that must be a response; 0, or -1. */
static int
read_resp(struct syncpush *p, struct syncproto_value **f, struct syncproto_response *r,
	struct err *err)
{
	return syncsess_read_response(p->sess, "the replica", f, r, err);
}

/* Send a one-line command and wait for its tagged answer; untagged data
 * goes to on_data.  1 OK, 0 NO/BAD (*r holds it, valid until *f freed). */
int
syncpush_sess_simple(struct syncpush *p, const char *line, struct syncproto_value **f,
	struct syncproto_response *r, struct syncproto_value **data, struct err *err)
{
	char tag[24];

	snprintf(tag, sizeof(tag), "L%llu", (unsigned long long)p->next_tag++);
	buf_printf(syncsess_out(p->sess), "%s %s\r\n", tag, line);
	if (data != NULL)
		*data = NULL;
	for (;;) {
		if (read_resp(p, f, r, err) < 0)
			return -1;
		if (r->tag != NULL && str_eq(r->tag, tag))
			return r->kind == SYNCPROTO_RESP_OK ? 1 : 0;
		if (data != NULL && *data == NULL && r->kind == SYNCPROTO_RESP_DATA) {
			*data = *f;
			*f = NULL;
			continue;
		}
		syncproto_value_free(f);
	}
}

struct greeting {
	bool starttls, plain, zstd, v1;
};

static int
read_greeting(struct syncpush *p, struct greeting *g, struct err *err)
{
	struct syncproto_value *f = NULL;
	struct syncproto_response r;
	const struct syncproto_value *caps;

	memset(g, 0, sizeof(*g));
	if (read_resp(p, &f, &r, err) < 0)
		return -1;
	if (r.kind != SYNCPROTO_RESP_OK || r.tag != NULL || r.code == NULL || r.code->n < 2 ||
	    !syncproto_is_atom(&r.code->items[0], "CASTOR-SYNC") ||
	    r.code->items[1].type != SYNCPROTO_LIST) {
		syncproto_value_free(&f);
		return err_set(err, ERR_TEMP, "not a Castor sync server");
	}
	caps = &r.code->items[1];
	for (size_t i = 0; i + 1 < caps->n; i += 2) {
		const struct syncproto_value *k = &caps->items[i], *v = &caps->items[i + 1];
		if (syncproto_is_atom(k, "STARTTLS")) {
			uint64_t x = 0;
			g->starttls = syncproto_get_u64(v, &x) == 0 && x == 1;
		} else if (v->type == SYNCPROTO_LIST) {
			for (size_t j = 0; j < v->n; j++) {
				if (syncproto_is_atom(k, "AUTH") && syncproto_is_atom(&v->items[j], "PLAIN"))
					g->plain = true;
				if (syncproto_is_atom(k, "COMPRESS") && syncproto_is_atom(&v->items[j], "ZSTD"))
					g->zstd = true;
				if (syncproto_is_atom(k, "VERSIONS")) {
					uint64_t x = 0;
					if (syncproto_get_u64(&v->items[j], &x) == 0 && x == SYNCPROTO_VERSION)
						g->v1 = true;
				}
			}
		}
	}
	syncproto_value_free(&f);
	if (!g->v1)
		return err_set(err, ERR_PERM, "the replica does not speak sync protocol version %d",
			SYNCPROTO_VERSION);
	return 0;
}

/* STARTTLS, then the greeting again over TLS.  0 or -1 (ERR_PERM: TLS
 * refused or not offered). */
static int
login_starttls(struct syncpush *p, const struct syncpush_login *l, struct greeting *g,
	struct err *err)
{
	struct syncproto_value *f = NULL;
	struct syncproto_response r;
	int rc;

	if (!g->starttls)
		return err_set(err, ERR_PERM, "the replica offers no STARTTLS (set %s_sync_tls: no on loopback)",
			l->channel ? l->channel : "CHAN");
	rc = syncpush_sess_simple(p, "STARTTLS", &f, &r, NULL, err);
	syncproto_value_free(&f);
	if (rc < 0)
		return -1;
	if (rc == 0)
		return err_set(err, ERR_PERM, "the replica refused STARTTLS");
	if (conn_starttls(syncsess_conn(p->sess), l->tls_ctx, l->host, err) < 0) {
		if (err->kind == ERR_INVALID)
			err->kind = ERR_PERM;
		return -1;
	}
	return read_greeting(p, g, err);
}

/* HELLO with our role and epoch; its answer gives the replica's role,
 * epoch and LOCALGEN.  0 or -1 (ERR_FENCED: the replica refuses us). */
static int
login_hello(struct syncpush *p, const struct syncpush_login *l, uint64_t epoch, struct err *err)
{
	struct syncproto_value *f = NULL, *data = NULL;
	struct syncproto_response r;
	struct syncproto_enc e;
	struct buf b = BUF_INIT;
	int rc;

	syncproto_enc_init(&e, &b, 0);
	syncproto_enc_atom(&e, "HELLO");
	syncproto_enc_open(&e, '(');
	syncproto_enc_key_u64(&e, "VERSION", SYNCPROTO_VERSION);
	syncproto_enc_atom(&e, "ROLE");
	syncproto_enc_atom(&e, "master");
	syncproto_enc_key_u64(&e, "EPOCH", epoch);
	syncproto_enc_key_string(&e, "SERVERID", l->servername ? l->servername : "castor");
	if (l->channel != NULL)
		syncproto_enc_key_string(&e, "CHANNEL", l->channel);
	if (l->allow_deletes)
		syncproto_enc_key_u64(&e, "ALLOW-DELETES", 1);
	syncproto_enc_close(&e);
	rc = syncpush_sess_simple(p, buf_cstr(&b), &f, &r, &data, err);
	buf_free(&b);
	if (rc == 0) {
		if (r.code_kind == ERR_FENCED)
			err_set(err, ERR_FENCED, "the replica fenced us (epoch %llu): %s",
				(unsigned long long)epoch, r.text ? r.text : "");
		else
			err_set(err, ERR_PERM, "HELLO refused: %s", r.text ? r.text : "");
		syncproto_value_free(&f);
		syncproto_value_free(&data);
		return -1;
	}
	syncproto_value_free(&f);
	if (rc < 0) {
		syncproto_value_free(&data);
		return -1;
	}
	if (data != NULL) {
		struct syncproto_response d;
		const char *rrole = NULL;
		bool parsed = syncproto_response_parse(data, &d, err) == 0;
		if (parsed && d.nargs == 1 &&
		    syncproto_kv_cstr(&d.args[0], "ROLE", &rrole, err) == 1 && !str_eq(rrole, "replica")) {
			err_set(err, ERR_FENCED, "the peer is a %s, not a replica", rrole);
			syncproto_value_free(&data);
			return -1;
		}
		if (parsed && d.nargs == 1 &&
		    syncproto_kv_u64(&d.args[0], "EPOCH", &p->peer_epoch, err) != 1)
			p->peer_epoch = 0;
		if (parsed && d.nargs == 1 &&
		    syncproto_kv_u64(&d.args[0], "LOCALGEN", &p->peer_local_gen, err) != 1)
			p->peer_local_gen = 0;
	}
	syncproto_value_free(&data);
	return 0;
}

int
syncpush_login(struct syncpush *p, const struct syncpush_login *l, struct err *err)
{
	struct syncproto_value *f = NULL;
	struct syncproto_response r;
	struct greeting g;
	struct buf b = BUF_INIT;
	const char *role;
	uint64_t epoch;
	int rc;

	if (store_server_get(p->st, &role, &epoch, err) < 0)
		return -1;
	if (!str_eq(role, "master"))
		return err_set(err, ERR_FENCED, "this server is a %s, not a master: nothing to push",
			role);
	p->allow_deletes = l->allow_deletes;
	if (read_greeting(p, &g, err) < 0)
		return -1;
	if (l->tls && login_starttls(p, l, &g, err) < 0)
		return -1;
	if (!g.plain)
		return err_set(err, ERR_PERM, "the replica offers no authentication on this connection"
			" (TLS needed off loopback)");
	if (l->password == NULL)
		return err_set(err, ERR_PERM, "no sync password configured for channel %s",
			l->channel ? l->channel : "?");
	buf_puts(&b, "AUTHENTICATE PLAIN ");
	sasl_plain_encode(&b, NULL, l->authname, l->password);
	rc = syncpush_sess_simple(p, buf_cstr(&b), &f, &r, NULL, err);
	explicit_bzero(b.data, b.len);
	buf_free(&b);
	if (rc == 0) {
		syncproto_value_free(&f);
		return err_set(err, ERR_PERM, "the replica refused the sync credentials (authname %s)",
			l->authname);
	}
	syncproto_value_free(&f);
	if (rc < 0)
		return -1;
	if (l->compress && g.zstd) {
		rc = syncpush_sess_simple(p, "COMPRESS ZSTD", &f, &r, NULL, err);
		syncproto_value_free(&f);
		if (rc < 0)
			return -1;
		if (rc == 1 && syncsess_compress_start(p->sess, ZSTD_LEVEL, err) < 0)
			return -1;
	}
	return login_hello(p, l, epoch, err);
}

int
syncpush_noop(struct syncpush *p, struct err *err)
{
	struct syncproto_enc e;

	syncpush_sess_begin(p, PK_NOOP, &e);
	syncproto_enc_atom(&e, "NOOP");
	if (syncpush_sess_end(p, &e, err) < 0)
		return -1;
	return syncpush_sess_wait(p, err);
}

void
syncpush_logout(struct syncpush *p)
{
	struct syncproto_enc e;
	struct err err;

	if (p->fatal)
		return;
	syncpush_sess_begin(p, PK_LOGOUT, &e);
	syncproto_enc_atom(&e, "LOGOUT");
	if (syncpush_sess_end(p, &e, &err) == 0)
		(void)syncpush_sess_drain(p, &err);
}

int
syncpush_sess_fail(struct syncpush *p, struct err *err)
{
	if (p->fatal) {
		*err = p->fatal_err;
		p->fatal = false;
	}
	return -1;
}

uint64_t
syncpush_peer_epoch(const struct syncpush *p)
{
	return p->peer_epoch;
}

uint64_t
syncpush_peer_local_gen(const struct syncpush *p)
{
	return p->peer_local_gen;
}

/* Send what is queued and wait for every answer.  0, or -1 when the
 * session cannot go on (a fatal answer's error in err). */
int
syncpush_sess_wait(struct syncpush *p, struct err *err)
{
	if (syncpush_sess_drain(p, err) < 0)
		return -1;
	if (p->fatal)
		return syncpush_sess_fail(p, err);
	return 0;
}
