/*
 * ctl_peer.c - castorctl's sync protocol client (ctl_failover.h): just
 * enough of docs/sync-protocol.md to learn a peer's role and epoch
 * (HELLO), compare every user with it (GET USERS, digests as the
 * anti-entropy pass compares them) and promote it (PROMOTE).  The
 * channel's settings are sync-client's (syncchan.h): same host, port,
 * credentials, STARTTLS rule.  Unlike sync-client it works whatever the
 * local role is: `castorctl peer-check` runs it on a server that may have
 * to learn it is no longer the master.
 */
#include "ctl/ctl_failover.h"

#include "lib/conn.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/netaddr.h"
#include "lib/sasl.h"
#include "lib/str.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/syncchan.h"
#include "sync/syncdigest.h"
#include "sync/syncproto.h"
#include "sync/syncsess.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ctl_peer {
	struct syncsess *sess;
	struct tls_ctx *tls;
	unsigned next_tag;
	bool fenced;
};

void
ctl_peer_close(struct ctl_peer **pp)
{
	struct ctl_peer *p = *pp;

	if (p == NULL)
		return;
	if (p->sess != NULL) {
		struct err err;
		buf_puts(syncsess_out(p->sess), "Z0 LOGOUT\r\n");
		(void)syncsess_flush(p->sess, &err);
		syncsess_free(&p->sess);
	}
	tls_ctx_free(&p->tls);
	free(p);
	*pp = NULL;
}

/* Next response; BYE and parse errors are errors. */
static int
ctl_peer_read(struct ctl_peer *p, struct syncproto_value **f, struct syncproto_response *r,
    struct err *err)
{
	return syncsess_read_response(p->sess, "the peer", f, r, err);
}

typedef int (*ctl_peer_data_fn)(void *ctx, const struct syncproto_response *r, struct err *err);

/* Send the line in out (tag prepended), read to its tagged answer;
 * untagged data to fn.  1 OK, 0 NO/BAD (*code_kind, text in err), -1. */
static int
ctl_peer_cmd(struct ctl_peer *p, const char *line, ctl_peer_data_fn fn, void *ctx,
    enum err_kind *code_kind, uint64_t *code_num, struct err *err)
{
	char tag[24];
	struct syncproto_value *f = NULL;
	struct syncproto_response r;

	snprintf(tag, sizeof(tag), "F%u", ++p->next_tag);
	buf_printf(syncsess_out(p->sess), "%s %s\r\n", tag, line);
	for (;;) {
		if (ctl_peer_read(p, &f, &r, err) < 0)
			return -1;
		if (r.tag != NULL && str_eq(r.tag, tag)) {
			int ok = r.kind == SYNCPROTO_RESP_OK;
			if (code_kind != NULL)
				*code_kind = r.code_kind;
			if (code_num != NULL) {
				*code_num = 0;
				if (r.code != NULL && r.code->n >= 3)
					(void)syncproto_get_u64(&r.code->items[2], code_num);
			}
			if (!ok)
				err_set(err, r.code_kind != ERR_NONE ? r.code_kind : ERR_PERM, "%s",
				    r.text ? r.text : "refused");
			syncproto_value_free(&f);
			return ok ? 1 : 0;
		}
		if (r.kind == SYNCPROTO_RESP_DATA && fn != NULL && fn(ctx, &r, err) < 0) {
			syncproto_value_free(&f);
			return -1;
		}
		syncproto_value_free(&f);
	}
}

struct ctl_greeting {
	bool starttls, plain, v1;
};

static int
ctl_peer_greeting(struct ctl_peer *p, struct ctl_greeting *g, struct err *err)
{
	struct syncproto_value *f = NULL;
	struct syncproto_response r;
	const struct syncproto_value *caps;
	size_t i, j;

	memset(g, 0, sizeof(*g));
	if (ctl_peer_read(p, &f, &r, err) < 0)
		return -1;
	if (r.kind != SYNCPROTO_RESP_OK || r.tag != NULL || r.code == NULL || r.code->n < 2 ||
	    !syncproto_is_atom(&r.code->items[0], "CASTOR-SYNC") ||
	    r.code->items[1].type != SYNCPROTO_LIST) {
		syncproto_value_free(&f);
		return err_set(err, ERR_TEMP, "not a Castor sync server");
	}
	caps = &r.code->items[1];
	for (i = 0; i + 1 < caps->n; i += 2) {
		const struct syncproto_value *k = &caps->items[i], *v = &caps->items[i + 1];
		if (syncproto_is_atom(k, "STARTTLS")) {
			uint64_t x = 0;
			g->starttls = syncproto_get_u64(v, &x) == 0 && x == 1;
		} else if (v->type == SYNCPROTO_LIST) {
			for (j = 0; j < v->n; j++) {
				uint64_t x = 0;
				if (syncproto_is_atom(k, "AUTH") && syncproto_is_atom(&v->items[j], "PLAIN"))
					g->plain = true;
				if (syncproto_is_atom(k, "VERSIONS") &&
				    syncproto_get_u64(&v->items[j], &x) == 0 && x == SYNCPROTO_VERSION)
					g->v1 = true;
			}
		}
	}
	syncproto_value_free(&f);
	if (!g->v1)
		return err_set(err, ERR_PERM, "the peer does not speak sync protocol version %d",
		    SYNCPROTO_VERSION);
	return 0;
}

static int
ctl_peer_hello_data(void *ctx, const struct syncproto_response *r, struct err *err)
{
	struct ctl_peer_hello *h = ctx;
	const struct syncproto_value *l = NULL;
	const char *s = NULL;
	uint64_t n = 0;

	if (!str_eq(r->data, "HELLO") || r->nargs != 1 || r->args[0].type != SYNCPROTO_LIST)
		return 0;
	if (syncproto_kv_cstr(&r->args[0], "ROLE", &s, err) == 1 && s != NULL)
		str_lcpy(h->role, s, sizeof(h->role));
	if (syncproto_kv_u64(&r->args[0], "EPOCH", &n, err) == 1)
		h->epoch = n;
	if (syncproto_kv_cstr(&r->args[0], "SERVERID", &s, err) == 1 && s != NULL)
		str_lcpy(h->serverid, s, sizeof(h->serverid));
	if (syncproto_kv_list(&r->args[0], "CHANNELS", &l, err) == 1) {
		h->nchannels = 0;
		for (size_t i = 0; i < l->n && h->nchannels < CTL_PEER_CHANNELS_MAX; i++)
			if (l->items[i].type == SYNCPROTO_STRING || l->items[i].type == SYNCPROTO_ATOM)
				str_lcpy(h->channels[h->nchannels++], l->items[i].str, sizeof(h->channels[0]));
	}
	return 0;
}

struct ctl_peer *
ctl_peer_open(const struct conf *conf, const char *chan, const char *my_role, uint64_t my_epoch,
    int timeout_ms, struct ctl_peer_hello *h, struct err *err)
{
	struct syncchan ch;
	struct netaddr a;
	struct ctl_peer *p;
	struct ctl_greeting g;
	struct conn *cn;
	struct buf b = BUF_INIT;
	enum err_kind kind = ERR_NONE;
	uint64_t num = 0;
	int fd, rc;

	memset(h, 0, sizeof(*h));
	h->nchannels = -1;
	memset(&ch, 0, sizeof(ch));
	if (syncchan_load(conf, chan, &ch, err) < 0)
		return NULL;
	memset(&a, 0, sizeof(a));
	a.kind = NETADDR_TCP;
	str_lcpy(a.host, ch.host, sizeof(a.host));
	if (a.host[0] == '[') {
		size_t n = strlen(a.host);
		memmove(a.host, a.host + 1, n);
		if (n > 1 && a.host[n - 2] == ']')
			a.host[n - 2] = '\0';
	}
	a.port = (uint16_t)ch.port;
	fd = net_connect(&a, timeout_ms, err);
	if (fd < 0) {
		err_prefix(err, "channel %s (%s:%u)", chan, ch.host, ch.port);
		syncchan_free(&ch);
		return NULL;
	}
	(void)net_set_nodelay(fd);
	cn = conn_new(fd, fd);
	conn_set_read_timeout(cn, timeout_ms);
	conn_set_write_timeout(cn, timeout_ms);
	p = xcalloc(1, sizeof(*p));
	p->sess = syncsess_new(cn, false, NULL);
	if (ctl_peer_greeting(p, &g, err) < 0)
		goto fail;
	if (ch.tls) {
		if (!g.starttls) {
			err_set(err, ERR_PERM, "the peer offers no STARTTLS (set %s_sync_tls: no on loopback)", chan);
			goto fail;
		}
		p->tls = tls_client_ctx_new(ch.ca_file != NULL, ch.ca_file, err);
		if (p->tls == NULL)
			goto fail;
		rc = ctl_peer_cmd(p, "STARTTLS", NULL, NULL, NULL, NULL, err);
		if (rc <= 0)
			goto fail;
		if (conn_starttls(syncsess_conn(p->sess), p->tls, ch.host, err) < 0)
			goto fail;
		if (ctl_peer_greeting(p, &g, err) < 0)
			goto fail;
	}
	if (!g.plain) {
		err_set(err, ERR_PERM, "the peer offers no authentication on this connection (TLS needed off loopback)");
		goto fail;
	}
	if (ch.password == NULL) {
		err_set(err, ERR_PERM, "no sync password configured for channel %s", chan);
		goto fail;
	}
	buf_puts(&b, "AUTHENTICATE PLAIN ");
	sasl_plain_encode(&b, NULL, ch.authname, ch.password);
	rc = ctl_peer_cmd(p, buf_cstr(&b), NULL, NULL, NULL, NULL, err);
	explicit_bzero(b.data, b.len);
	buf_reset(&b);
	if (rc == 0)
		err_set(err, ERR_PERM, "the peer refused the sync credentials (authname %s)", ch.authname);
	if (rc <= 0)
		goto fail;
	{
		struct syncproto_enc e;
		syncproto_enc_init(&e, &b, 0);
		syncproto_enc_atom(&e, "HELLO");
		syncproto_enc_open(&e, '(');
		syncproto_enc_key_u64(&e, "VERSION", SYNCPROTO_VERSION);
		syncproto_enc_atom(&e, "ROLE");
		syncproto_enc_atom(&e, my_role);
		syncproto_enc_key_u64(&e, "EPOCH", my_epoch);
		syncproto_enc_key_string(&e, "SERVERID", conf_get_str(conf, "servername", "castor"));
		syncproto_enc_key_string(&e, "CHANNEL", chan);
		syncproto_enc_close(&e);
	}
	rc = ctl_peer_cmd(p, buf_cstr(&b), ctl_peer_hello_data, h, &kind, &num, err);
	if (rc < 0)
		goto fail;
	if (rc == 0) {
		if (kind != ERR_FENCED)
			goto fail;
		h->fenced = true;
		p->fenced = true;
		if (num > h->epoch)
			h->epoch = num;
	}
	buf_free(&b);
	syncchan_free(&ch);
	return p;
fail:
	buf_free(&b);
	syncchan_free(&ch);
	ctl_peer_close(&p);
	return NULL;
}

struct ctl_users_ctx {
	ctl_peer_user_fn fn;
	void *ctx;
};

static int
ctl_peer_users_data(void *ctx, const struct syncproto_response *r, struct err *err)
{
	struct ctl_users_ctx *u = ctx;
	const char *name = NULL;
	uint64_t modseq = 0, digest = 0;
	int has;

	if (!str_eq(r->data, "USER") || r->nargs != 1 || r->args[0].type != SYNCPROTO_LIST)
		return 0;
	if (syncproto_kv_cstr(&r->args[0], "NAME", &name, err) != 1 || name == NULL ||
	    syncproto_kv_u64(&r->args[0], "HIGHESTMODSEQ", &modseq, err) != 1)
		return err_set(err, ERR_INVALID, "malformed USER in GET USERS");
	has = syncproto_kv_u64(&r->args[0], "DIGEST", &digest, err);
	return u->fn(u->ctx, name, modseq, (uint32_t)digest, has == 1);
}

int
ctl_peer_users(struct ctl_peer *p, ctl_peer_user_fn fn, void *ctx, struct err *err)
{
	struct ctl_users_ctx u = { fn, ctx };
	int rc;

	if (p->fenced)
		return err_set(err, ERR_FENCED, "the peer fenced this session");
	rc = ctl_peer_cmd(p, "GET USERS", ctl_peer_users_data, &u, NULL, NULL, err);
	return rc == 1 ? 0 : -1;
}

int
ctl_peer_promote(struct ctl_peer *p, uint64_t epoch, struct err *err)
{
	char line[64];
	int rc;

	if (p->fenced)
		return err_set(err, ERR_FENCED, "the peer fenced this session");
	snprintf(line, sizeof(line), "PROMOTE %llu", (unsigned long long)epoch);
	rc = ctl_peer_cmd(p, line, NULL, NULL, NULL, NULL, err);
	return rc == 1 ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* Comparison                                                           */

struct ctl_user_row {
	char *name;
	uint64_t modseq;
	uint32_t digest;
	bool has_digest;
};

struct ctl_user_rows {
	struct ctl_user_row *v;
	size_t n;
};

static int
ctl_rows_add(struct ctl_user_rows *rows, const char *name, uint64_t modseq, uint32_t digest,
    bool has_digest)
{
	rows->v = xreallocarray(rows->v, rows->n + 1, sizeof(*rows->v));
	rows->v[rows->n].name = xstrdup(name);
	rows->v[rows->n].modseq = modseq;
	rows->v[rows->n].digest = digest;
	rows->v[rows->n].has_digest = has_digest;
	rows->n++;
	return 0;
}

static int
ctl_rows_peer(void *ctx, const char *name, uint64_t modseq, uint32_t digest, bool has_digest)
{
	return ctl_rows_add(ctx, name, modseq, digest, has_digest);
}

static int
ctl_rows_local(void *ctx, const char *user, uint64_t modseq, uint32_t digest)
{
	return ctl_rows_add(ctx, user, modseq, digest, true);
}

static int
ctl_rows_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ctl_user_row *)a)->name, ((const struct ctl_user_row *)b)->name);
}

static void
ctl_rows_free(struct ctl_user_rows *rows)
{
	size_t i;

	for (i = 0; i < rows->n; i++)
		free(rows->v[i].name);
	free(rows->v);
	rows->v = NULL;
	rows->n = 0;
}

static void
ctl_compare_diff(struct ctl_compare *cmp, const char *what, const char *name, uint64_t a,
    uint64_t b)
{
	cmp->differ++;
	if (cmp->first[0] != '\0')
		return;
	if (str_eq(what, "here"))
		snprintf(cmp->first, sizeof(cmp->first), "user %s exists here (modseq %llu) but not on the peer",
		    name, (unsigned long long)a);
	else if (str_eq(what, "peer"))
		snprintf(cmp->first, sizeof(cmp->first), "user %s exists on the peer (modseq %llu) but not here",
		    name, (unsigned long long)a);
	else
		snprintf(cmp->first, sizeof(cmp->first), "user %s differs: %s %llu here, %llu on the peer",
		    name, what, (unsigned long long)a, (unsigned long long)b);
}

int
ctl_compare_with_peer(struct store *st, struct ctl_peer *p, const char *sync_account,
    struct ctl_compare *cmp, struct err *err)
{
	struct ctl_user_rows mine = { NULL, 0 }, theirs = { NULL, 0 };
	size_t i = 0, j = 0;
	int rc = -1;

	memset(cmp, 0, sizeof(*cmp));
	if (syncdigest_users(st, ctl_rows_local, &mine, NULL, err) < 0)
		goto out;
	if (ctl_peer_users(p, ctl_rows_peer, &theirs, err) < 0)
		goto out;
	if (mine.n > 1)
		qsort(mine.v, mine.n, sizeof(*mine.v), ctl_rows_cmp);
	if (theirs.n > 1)
		qsort(theirs.v, theirs.n, sizeof(*theirs.v), ctl_rows_cmp);
	while (i < mine.n || j < theirs.n) {
		int c = i >= mine.n ? 1 : j >= theirs.n ? -1 : strcmp(mine.v[i].name, theirs.v[j].name);

		if (c < 0) {
			/* ours only (the local sync account is not replicated either) */
			if (sync_account == NULL || !str_eq(mine.v[i].name, sync_account))
				ctl_compare_diff(cmp, "here", mine.v[i].name, mine.v[i].modseq, 0);
			i++;
			continue;
		}
		if (c > 0) {
			if (sync_account == NULL || !str_eq(theirs.v[j].name, sync_account))
				ctl_compare_diff(cmp, "peer", theirs.v[j].name, theirs.v[j].modseq, 0);
			j++;
			continue;
		}
		cmp->users++;
		if (theirs.v[j].has_digest && theirs.v[j].digest != mine.v[i].digest)
			ctl_compare_diff(cmp, "digest", mine.v[i].name, mine.v[i].digest, theirs.v[j].digest);
		else if (theirs.v[j].modseq < mine.v[i].modseq)
			ctl_compare_diff(cmp, "modseq", mine.v[i].name, mine.v[i].modseq, theirs.v[j].modseq);
		i++;
		j++;
	}
	rc = 0;
out:
	ctl_rows_free(&mine);
	ctl_rows_free(&theirs);
	return rc;
}
