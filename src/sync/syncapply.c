/*
 * syncapply.c - the replica side of the sync protocol (syncapply.h):
 * authentication, HELLO and fencing, the GET commands, RESERVE/UPLOAD with
 * group commit, and the APPLY commands, each in one store transaction and
 * answered only after it committed.
 *
 * Rules kept here (docs/sync-protocol.md, docs/replication.md):
 *  1. Nothing is written before the session is authenticated as the sync
 *     identity and has said HELLO, and every write checks fencing again:
 *     this server is a replica and its stored epoch is not above the
 *     client's.
 *  2. An APPLY is all or nothing: any refusal rolls the whole command
 *     back.  Its OK is written only after store_txn_commit() returned 0.
 *  3. Deletion only by explicit tombstone (APPLY DELETE, APPLY UNUSER).
 *     syncapply_delete_check() is the hook where issue 8's thresholds go.
 *  4. A different GUID under an existing UID is never overwritten here:
 *     NO [CONFLICT guid UID] (the client's conflict policy decides).
 *  5. Every blob is checked against its GUID (store_repl_blob).
 */
#include "sync/syncapply.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "castor_config.h"
#include "lib/authpen.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/sasl.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/store_repl.h"
#include "sync/syncdigest.h"

#define GROUP_MAX_BYTES (32u * 1024 * 1024)
#define GROUP_MAX_COUNT 2000
#define AUTH_FAILURES_MAX 3

#define SYNCAPPLY_IDLE_USERS 16
#define SYNCAPPLY_DAMAGED_LOGGED 16

struct grp_entry {
	char *tag;
	size_t start, end;   /* the answer's bytes in out */
	bool ok;
};

struct syncapply {
	struct store *st;
	char servername[256];
	char authname[SASL_PLAIN_ID_MAX + 1];
	char *password;
	const char *const *channels;   /* syncapply_opts.channels */
	size_t nchannels;
	bool auth_allowed, starttls_possible, compress_allowed, tls;
	const char *auth_rule, *peer, *peer_addr;
	struct authpen *pen;
	struct syncproto_limits lim;

	bool authed, hello, compressed;
	unsigned auth_failures;
	uint64_t client_epoch;
	bool allow_deletes;
	char client_id[128];

	/* the user database in use (kept open across commands) */
	struct store_user *u;
	char uname[STORE_USER_NAME_MAX + 1];
	/* damaged users already logged by user_get (a ring: once each) */
	char damaged_logged[SYNCAPPLY_DAMAGED_LOGGED][STORE_USER_NAME_MAX + 1];
	size_t damaged_next;
	/* recently used ones, parked open: opening a user database and
	 * preparing its statements costs more than applying a delivery */
	struct {
		struct store_user *u;
		char name[STORE_USER_NAME_MAX + 1];
		uint64_t use;
	} idle[SYNCAPPLY_IDLE_USERS];
	uint64_t idle_clock;

	/* open upload group */
	bool grp_open;
	struct grp_entry *grp;
	size_t ngrp, capgrp;
	uint64_t grp_bytes;
	size_t grp_off;
	bool grp_marked;           /* an APPLY joined the group after a store_txn_mark */

	struct syncapply_stats stats;

	/* deletion thresholds */
	uint64_t dl_limit, dl_fraction_min, dl_user_limit;
	double dl_fraction;
	uint64_t dl_window_start;   /* unix seconds; the count restarts hourly */
	uint64_t dl_count;
	char dl_user[STORE_USER_NAME_MAX + 1];
	uint64_t dl_user_count, dl_user_live;
};

/* ------------------------------------------------------------------ */
/* Answers                                                             */

/* "<tag> <status> [<CODE> <detail>] <text>".  detail is raw protocol text
 * (atoms, numbers, quoted strings) built by the caller, or NULL. */
static void
reply(struct syncapply *a, struct buf *out, const char *tag, const char *status,
	enum err_kind kind, const char *detail, const char *text)
{
	struct syncproto_enc e;

	if (str_eq(status, "NO")) {
		a->stats.refused++;
		if (kind == ERR_FENCED)
			a->stats.fenced++;
		if (kind == ERR_CONFLICT)
			a->stats.conflicts++;
	}
	buf_puts(out, tag != NULL ? tag : "*");
	buf_putc(out, ' ');
	buf_puts(out, status);
	if (kind != ERR_NONE) {
		buf_puts(out, " [");
		buf_puts(out, syncproto_code_name(kind));
		if (detail != NULL && detail[0] != '\0') {
			buf_putc(out, ' ');
			buf_puts(out, detail);
		}
		buf_putc(out, ']');
	}
	if (text != NULL) {
		syncproto_enc_init(&e, out, 0);
		e.need_sp = true;
		syncproto_enc_string(&e, text, strlen(text));
	}
	buf_puts(out, "\r\n");
}

static void
reply_err(struct syncapply *a, struct buf *out, const char *tag, const struct err *err)
{
	enum err_kind k = err->kind == ERR_NONE ? ERR_TEMP : err->kind;

	log_debug("refused tag=%s error=%s", tag, log_q(err->msg));
	reply(a, out, tag, "NO", k, NULL, err->msg);
}

/* ------------------------------------------------------------------ */
/* Setup                                                               */

struct syncapply *
syncapply_new(struct store *st, const struct syncapply_opts *o)
{
	struct syncapply *a = xcalloc(1, sizeof(*a));

	a->st = st;
	str_lcpy(a->servername, o->servername != NULL ? o->servername : "castor", sizeof(a->servername));
	str_lcpy(a->authname, o->authname != NULL && o->authname[0] ? o->authname : "sync",
		sizeof(a->authname));
	a->password = o->password != NULL ? xstrdup(o->password) : NULL;
	a->auth_allowed = o->auth_allowed;
	a->auth_rule = o->auth_rule != NULL ? o->auth_rule : "loopback";
	a->pen = o->pen;
	a->peer = o->peer != NULL ? o->peer : "";
	a->peer_addr = o->peer_addr;
	a->channels = o->channels;
	a->nchannels = o->nchannels;
	a->starttls_possible = o->starttls_possible;
	a->compress_allowed = o->compress_allowed;
	if (o->limits != NULL)
		a->lim = *o->limits;
	else
		syncproto_limits_default(&a->lim);
	a->dl_limit = 50;
	a->dl_fraction = 0.5;
	a->dl_fraction_min = 4;
	a->dl_user_limit = 5;
	if (o->set_limits) {
		a->dl_limit = o->delete_limit;
		a->dl_fraction = o->delete_fraction;
		a->dl_fraction_min = o->delete_fraction_min;
		a->dl_user_limit = o->user_delete_limit;
	}
	return a;
}

static void
grp_clear(struct syncapply *a)
{
	for (size_t i = 0; i < a->ngrp; i++)
		free(a->grp[i].tag);
	a->ngrp = 0;
	a->grp_bytes = 0;
	a->grp_open = false;
	a->grp_marked = false;
}

void
syncapply_free(struct syncapply **ap)
{
	struct syncapply *a = *ap;

	if (a == NULL)
		return;
	if (a->grp_open && a->u != NULL)
		store_txn_rollback(a->u);
	grp_clear(a);
	free(a->grp);
	store_user_close(&a->u);
	for (size_t i = 0; i < SYNCAPPLY_IDLE_USERS; i++)
		store_user_close(&a->idle[i].u);
	if (a->password != NULL) {
		memset(a->password, 0, strlen(a->password));
		free(a->password);
	}
	free(a);
	*ap = NULL;
}

bool
syncapply_group_open(const struct syncapply *a)
{
	return a->grp_open;
}

bool
syncapply_authenticated(const struct syncapply *a)
{
	return a->authed;
}

void
syncapply_stats(const struct syncapply *a, struct syncapply_stats *s)
{
	*s = a->stats;
}

bool
syncapply_client(const struct syncapply *a, const char **id_r, uint64_t *epoch_r)
{
	*id_r = a->client_id;
	*epoch_r = a->client_epoch;
	return a->hello;
}

void
syncapply_greeting(struct syncapply *a, struct buf *out)
{
	buf_printf(out, "* OK [CASTOR-SYNC (VERSIONS (%d) STARTTLS %d AUTH (%s) COMPRESS (%s)"
		" MAXLINE %zu MAXLITERAL %zu MAXFRAME %zu MAXITEMS %zu MAXDEPTH %u)] ",
		SYNCPROTO_VERSION, a->starttls_possible && !a->tls ? 1 : 0,
		a->auth_allowed || a->tls ? "PLAIN" : "", a->compress_allowed ? "ZSTD" : "",
		a->lim.max_line, a->lim.max_literal, a->lim.max_frame, a->lim.max_items,
		a->lim.max_depth);
	buf_put_quoted(out, "castor " CASTOR_VERSION " syncd ready",
		strlen("castor " CASTOR_VERSION " syncd ready"));
	buf_puts(out, "\r\n");
}

void
syncapply_tls_started(struct syncapply *a, struct buf *out)
{
	a->tls = true;
	a->auth_allowed = true;
	a->starttls_possible = false;
	syncapply_greeting(a, out);
}

/* ------------------------------------------------------------------ */
/* Flags                                                               */

void
syncapply_enc_flags(struct syncproto_enc *e, uint32_t sysflags, const char *keywords)
{
	struct buf f = BUF_INIT;
	const char *p, *q;

	store_flags_format(sysflags, keywords, &f);
	syncproto_enc_open(e, '(');
	for (p = buf_cstr(&f); *p != '\0'; p = q) {
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		q = strchr(p, ' ');
		if (q == NULL)
			q = p + strlen(p);
		syncproto_enc_string(e, p, (size_t)(q - p));
	}
	syncproto_enc_close(e);
	buf_free(&f);
}

int
syncapply_parse_flags(const struct syncproto_value *list, uint32_t *sys_r, struct buf *kw_r,
	struct err *err)
{
	struct buf s = BUF_INIT;
	int rc;

	*sys_r = 0;
	buf_reset(kw_r);
	if (list == NULL || list->type != SYNCPROTO_LIST)
		return err_set(err, ERR_INVALID, "FLAGS is not a list");
	for (size_t i = 0; i < list->n; i++) {
		const char *w = syncproto_get_cstr(&list->items[i]);
		if (w == NULL || w[0] == '\0' || strchr(w, ' ') != NULL) {
			buf_free(&s);
			return err_set(err, ERR_INVALID, "FLAGS item %zu is not a flag", i + 1);
		}
		if (s.len)
			buf_putc(&s, ' ');
		buf_puts(&s, w);
	}
	rc = store_flags_parse(buf_cstr(&s), sys_r, kw_r, err);
	buf_free(&s);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

/* The user database for name, reusing the open one. */
/* Never a fresh database in a damaged user's place: the master's changes
 * for it are refused (NO [DAMAGED], naming the user) until an operator
 * runs castorctl user reset here.  Logged once per user and session. */
static void
damaged_note(struct syncapply *a, const char *name, const struct err *err)
{
	for (size_t i = 0; i < SYNCAPPLY_DAMAGED_LOGGED; i++)
		if (str_eq(a->damaged_logged[i], name))
			return;
	log_error("refusing changes for a damaged user user=%s error=%s", name, log_q(err->msg));
	str_lcpy(a->damaged_logged[a->damaged_next], name, sizeof(a->damaged_logged[0]));
	a->damaged_next = (a->damaged_next + 1) % SYNCAPPLY_DAMAGED_LOGGED;
}

static struct store_user *
user_get(struct syncapply *a, const char *name, struct err *err)
{
	size_t i, slot = 0;

	if (a->u != NULL && str_eq(a->uname, name))
		return a->u;
	if (a->u != NULL && !a->grp_open) {
		/* park the current handle in the least recently used slot */
		for (i = 0; i < SYNCAPPLY_IDLE_USERS; i++) {
			if (a->idle[i].u == NULL) {
				slot = i;
				break;
			}
			if (a->idle[i].use < a->idle[slot].use)
				slot = i;
		}
		store_user_close(&a->idle[slot].u);
		a->idle[slot].u = a->u;
		str_lcpy(a->idle[slot].name, a->uname, sizeof(a->idle[slot].name));
		a->idle[slot].use = ++a->idle_clock;
		a->u = NULL;
	}
	store_user_close(&a->u);
	a->uname[0] = '\0';
	for (i = 0; i < SYNCAPPLY_IDLE_USERS; i++) {
		if (a->idle[i].u != NULL && str_eq(a->idle[i].name, name)) {
			int rc = store_user_exists(a->st, name, err);

			if (rc <= 0) {
				/* deleted behind our back: drop the handle */
				store_user_close(&a->idle[i].u);
				if (rc == 0)
					err_set(err, ERR_NOTFOUND, "no such user %s", name);
				return NULL;
			}
			a->u = a->idle[i].u;
			a->idle[i].u = NULL;
			str_lcpy(a->uname, name, sizeof(a->uname));
			return a->u;
		}
	}
	a->u = store_user_open(a->st, name, err);
	if (a->u == NULL) {
		if (err != NULL && err->kind == ERR_DAMAGED)
			damaged_note(a, name, err);
		return NULL;
	}
	for (i = 0; i < SYNCAPPLY_DAMAGED_LOGGED; i++)
		if (str_eq(a->damaged_logged[i], name))
			a->damaged_logged[i][0] = '\0';
	str_lcpy(a->uname, name, sizeof(a->uname));
	return a->u;
}

/* After trouble, or before a user is deleted: close every handle. */
static void
user_forget(struct syncapply *a)
{
	store_user_close(&a->u);
	a->uname[0] = '\0';
	for (size_t i = 0; i < SYNCAPPLY_IDLE_USERS; i++)
		store_user_close(&a->idle[i].u);
}

/* May this session write?  0, or -1 with ERR_PERM / ERR_FENCED. */
static int
writable(struct syncapply *a, struct err *err)
{
	const char *role;
	uint64_t epoch;

	if (!a->hello)
		return err_set(err, ERR_PERM, "HELLO first");
	if (store_server_get(a->st, &role, &epoch, err) < 0)
		return -1;
	if (!str_eq(role, "replica"))
		return err_set(err, ERR_FENCED, "this server is a %s: it takes no changes", role);
	if (epoch > a->client_epoch)
		return err_set(err, ERR_FENCED, "epoch %llu is above the client's %llu",
			(unsigned long long)epoch, (unsigned long long)a->client_epoch);
	return 0;
}

static void
reply_fenced(struct syncapply *a, struct buf *out, const char *tag, const struct err *err)
{
	const char *role;
	uint64_t epoch = 0;
	char detail[64];
	struct err e2;

	if (err->kind != ERR_FENCED) {
		reply_err(a, out, tag, err);
		return;
	}
	if (store_server_get(a->st, &role, &epoch, &e2) == 0 && !str_eq(role, "replica"))
		str_lcpy(detail, "role", sizeof(detail));
	else
		snprintf(detail, sizeof(detail), "epoch %llu", (unsigned long long)epoch);
	log_warn("fenced client=%s reason=%s", log_q(a->client_id), log_q(err->msg));
	reply(a, out, tag, "NO", ERR_FENCED, detail, err->msg);
}

/* Deletion thresholds (issue 8): may this session delete this mailbox
 * (uniqueid) / this user (uniqueid NULL)?  0 allowed (and counted), -1
 * with ERR_PERM "delete-limit". */
static int
count_live_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	uint64_t *n = ctx;

	(void)name;
	if (mb != NULL && !(attrs & STORE_MBATTR_DELETED) && mb->deleted_modseq == 0)
		(*n)++;
	return 0;
}

/* Users deleted by the master in the last hour, from <root>/run/syncd-unuser
 * (one unix time per line); with add, the file is rewritten with now
 * appended.  Returns the count before adding. */
static uint64_t
unuser_window(struct syncapply *a, bool add)
{
	struct buf path = BUF_INIT, keep = BUF_INIT;
	char line[64];
	uint64_t now = (uint64_t)time(NULL), n = 0;
	FILE *f;

	buf_printf(&path, "%s/run/syncd-unuser", store_root(a->st));
	if ((f = fopen(buf_cstr(&path), "r")) != NULL) {
		while (fgets(line, sizeof(line), f) != NULL) {
			uint64_t t = strtoull(line, NULL, 10);
			if (t + 3600 > now && t <= now + 60) {
				n++;
				buf_printf(&keep, "%llu\n", (unsigned long long)t);
			}
		}
		fclose(f);
	}
	if (add) {
		buf_printf(&keep, "%llu\n", (unsigned long long)now);
		if ((f = fopen(buf_cstr(&path), "w")) != NULL) {
			fputs(buf_cstr(&keep), f);
			fclose(f);
		}
	}
	buf_free(&path);
	buf_free(&keep);
	return n;
}

static int
syncapply_delete_check(struct syncapply *a, const char *user, const char *uniqueid,
	struct err *err)
{
	uint64_t now = (uint64_t)time(NULL);

	if (uniqueid == NULL) {
		uint64_t n;
		if (a->allow_deletes || a->dl_user_limit == 0) {
			(void)unuser_window(a, true);
			return 0;
		}
		n = unuser_window(a, false);
		if (n + 1 > a->dl_user_limit) {
			log_error("DELETE LIMIT: refusing to delete user %s: %llu users deleted in the last"
				" hour (sync_user_delete_limit %llu); release with castorctl sync --allow-deletes",
				user, (unsigned long long)n, (unsigned long long)a->dl_user_limit);
			return err_set(err, ERR_PERM, "delete-limit: %llu users in the last hour"
				" (sync_user_delete_limit %llu)", (unsigned long long)n,
				(unsigned long long)a->dl_user_limit);
		}
		(void)unuser_window(a, true);
		return 0;
	}
	if (a->allow_deletes)
		return 0;
	if (a->dl_window_start == 0 || now >= a->dl_window_start + 3600) {
		a->dl_window_start = now;
		a->dl_count = 0;
	}
	if (!str_eq(a->dl_user, user)) {
		struct store_user *u = a->u;
		str_lcpy(a->dl_user, user, sizeof(a->dl_user));
		a->dl_user_count = 0;
		a->dl_user_live = 0;
		if (u != NULL)
			(void)store_mailbox_list(u, "*", STORE_LIST_NO_PARENTS, count_live_cb,
				&a->dl_user_live, err);
	}
	if (a->dl_limit > 0 && a->dl_count + 1 > a->dl_limit) {
		log_error("DELETE LIMIT: refusing to delete mailbox %s of user %s: %llu deleted in this"
			" session this hour (sync_delete_limit %llu)", uniqueid, user,
			(unsigned long long)a->dl_count, (unsigned long long)a->dl_limit);
		return err_set(err, ERR_PERM, "delete-limit: more than %llu mailboxes (sync_delete_limit)",
			(unsigned long long)a->dl_limit);
	}
	if (a->dl_fraction < 1.0 && a->dl_user_count + 1 > a->dl_fraction_min && a->dl_user_live > 0 &&
	    (double)(a->dl_user_count + 1) > a->dl_fraction * (double)a->dl_user_live) {
		log_error("DELETE LIMIT: refusing to delete mailbox %s of user %s: %llu of %llu"
			" mailboxes (sync_delete_fraction %.2f)", uniqueid, user,
			(unsigned long long)(a->dl_user_count + 1), (unsigned long long)a->dl_user_live,
			a->dl_fraction);
		return err_set(err, ERR_PERM, "delete-limit: %llu of %llu mailboxes of user %s"
			" (sync_delete_fraction)", (unsigned long long)(a->dl_user_count + 1),
			(unsigned long long)a->dl_user_live, user);
	}
	a->dl_count++;
	a->dl_user_count++;
	return 0;
}

static const char *
cmd_user(const struct syncproto_command *cmd)
{
	return syncproto_get_cstr(&cmd->args[0]);
}

/* ------------------------------------------------------------------ */
/* Upload groups                                                       */

void
syncapply_sync(struct syncapply *a, struct buf *out)
{
	struct err err;
	struct buf nb = BUF_INIT;

	if (!a->grp_open)
		return;
	if (FAILPOINT("syncd.upload.before_commit") < 0) {
		store_txn_rollback(a->u);
		err_set(&err, ERR_TEMP, "failpoint syncd.upload.before_commit");
		goto failed;
	}
	if (store_txn_commit(a->u, &err) < 0)
		goto failed;
	(void)FAILPOINT("syncd.upload.after_commit");
	a->stats.group_commits++;
	grp_clear(a);
	return;
failed:
	log_warn("upload group commit failed user=%s uploads=%zu error=%s", a->uname, a->ngrp,
		log_q(err.msg));
	/* The OKs written for the group were not final: rewrite them. */
	buf_append(&nb, out->data, a->grp_off);
	for (size_t i = 0; i < a->ngrp; i++) {
		if (a->grp[i].ok)
			reply(a, &nb, a->grp[i].tag, "NO", err.kind, NULL, err.msg);
		else
			buf_append(&nb, out->data + a->grp[i].start, a->grp[i].end - a->grp[i].start);
	}
	if (a->ngrp > 0)
		buf_append(&nb, out->data + a->grp[a->ngrp - 1].end, out->len - a->grp[a->ngrp - 1].end);
	buf_free(out);
	*out = nb;
	a->stats.uploads -= a->ngrp;
	grp_clear(a);
	user_forget(a);
}

/* The group's transaction was rolled back together with the APPLY that
 * joined it: its OK answers become NO [CONFLICT rolled-back] (the client
 * sends the bodies again with its next round). */
static void
grp_abort(struct syncapply *a, struct buf *out, const char *why)
{
	struct buf nb = BUF_INIT;

	buf_append(&nb, out->data, a->grp_off);
	for (size_t i = 0; i < a->ngrp; i++) {
		if (a->grp[i].ok)
			reply(a, &nb, a->grp[i].tag, "NO", ERR_CONFLICT, "rolled-back", why);
		else
			buf_append(&nb, out->data + a->grp[i].start, a->grp[i].end - a->grp[i].start);
	}
	if (a->ngrp > 0)
		buf_append(&nb, out->data + a->grp[a->ngrp - 1].end, out->len - a->grp[a->ngrp - 1].end);
	buf_free(out);
	*out = nb;
	a->stats.uploads -= a->ngrp;
	grp_clear(a);
}

static void
grp_note(struct syncapply *a, const char *tag, size_t start, size_t end, bool ok)
{
	if (a->ngrp == a->capgrp) {
		a->capgrp = a->capgrp ? 2 * a->capgrp : 64;
		a->grp = xreallocarray(a->grp, a->capgrp, sizeof(*a->grp));
	}
	a->grp[a->ngrp].tag = xstrdup(tag);
	a->grp[a->ngrp].start = start;
	a->grp[a->ngrp].end = end;
	a->grp[a->ngrp].ok = ok;
	a->ngrp++;
}

static void
cmd_upload(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	const char *guid = cmd->args[1].str;
	const struct syncproto_value *body = &cmd->args[2];
	struct store_user *u;
	struct err err;
	size_t start;

	if (a->grp_open && !str_eq(a->uname, user))
		syncapply_sync(a, out);
	if (!a->grp_open) {
		if (writable(a, &err) < 0) {
			reply_fenced(a, out, cmd->tag, &err);
			return;
		}
		if ((u = user_get(a, user, &err)) == NULL) {
			reply_err(a, out, cmd->tag, &err);
			return;
		}
		if (store_txn_begin(u, &err) < 0) {
			reply_err(a, out, cmd->tag, &err);
			return;
		}
		a->grp_open = true;
		a->grp_off = out->len;
	}
	start = out->len;
	if (store_repl_blob(a->u, guid, body->str, body->len, &err) < 0) {
		if (err.kind == ERR_CORRUPT)
			log_warn("upload refused user=%s guid=%s error=%s", user, guid, log_q(err.msg));
		reply(a, out, cmd->tag, "NO", err.kind, err.kind == ERR_CORRUPT ? guid : NULL, err.msg);
		grp_note(a, cmd->tag, start, out->len, false);
		return;
	}
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
	grp_note(a, cmd->tag, start, out->len, true);
	a->stats.uploads++;
	a->stats.upload_bytes += body->len;
	a->grp_bytes += body->len;
	if (a->grp_bytes >= GROUP_MAX_BYTES || a->ngrp >= GROUP_MAX_COUNT)
		syncapply_sync(a, out);
}

/* ------------------------------------------------------------------ */
/* Session commands                                                    */

/* Sleep ms (the penalty turn), whatever signals arrive. */
static void
auth_sleep(int64_t ms)
{
	struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };

	while (ms > 0 && nanosleep(&ts, &ts) < 0)
		;
}

/* Check a PLAIN response's identity and password, after taking a turn
 * in the shared penalty table.  1 ok, 0 refused, 2 throttled (not
 * checked); *penalty_ms gets the turn's wait. */
static int
auth_check(struct syncapply *a, const struct sasl_plain *p, int64_t *penalty_ms)
{
	struct authpen_turn t = { 0 };
	struct err err;
	bool ok = false;

	*penalty_ms = 0;
	if (a->pen != NULL && authpen_begin(a->pen, p->authcid, a->peer_addr, &t, &err) < 0) {
		log_warn("authentication penalty table unusable, not throttling (fail open) error=%s",
			log_q(err.msg));
		a->pen = NULL;
	}
	*penalty_ms = t.wait_ms;
	if (t.throttled)
		return 2;
	auth_sleep(t.wait_ms);
	if ((p->authzid[0] == '\0' || str_eq(p->authzid, p->authcid)) &&
	    str_eq(p->authcid, a->authname)) {
		if (a->password != NULL)
			ok = str_ct_eq(p->passwd, strlen(p->passwd), a->password, strlen(a->password));
		else
			ok = store_sync_auth_verify(a->st, p->authcid, p->passwd, &err) == 1;
	}
	if (a->pen != NULL)
		authpen_end(a->pen, p->authcid, a->peer_addr, ok);
	return ok ? 1 : 0;
}

static enum syncapply_action
cmd_authenticate(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *mech = cmd->args[0].str;
	const struct syncproto_value *resp = &cmd->args[1];
	struct sasl_plain p;
	struct err err;
	int64_t penalty_ms = 0;
	int rc = 0;
	char who[SASL_PLAIN_ID_MAX + 1] = "";

	if (a->authed) {
		reply(a, out, cmd->tag, "NO", ERR_PERM, NULL, "already authenticated");
		return SYNCAPPLY_CONTINUE;
	}
	if (!str_eq_ci(mech, "PLAIN")) {
		reply(a, out, cmd->tag, "NO", ERR_PERM, NULL, "only PLAIN");
		return SYNCAPPLY_CONTINUE;
	}
	if (!a->auth_allowed && !a->tls) {
		reply(a, out, cmd->tag, "NO", ERR_PERM, NULL, "TLS required");
		return SYNCAPPLY_CONTINUE;
	}
	if (sasl_plain_decode(resp->str, resp->len, &p, &err) == 0) {
		str_lcpy(who, p.authcid, sizeof(who));
		rc = auth_check(a, &p, &penalty_ms);
		sasl_plain_clear(&p);
	} else if (a->pen != NULL) {
		authpen_note(a->pen, a->peer_addr);
	}
	if (rc == 1) {
		log_info("authenticated authname=%s client=%s peer=%s plaintext_rule=%s", log_q(who),
			log_q(a->client_id), log_q(a->peer), a->tls ? "tls" : a->auth_rule);
		a->authed = true;
		reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, "authenticated");
		return SYNCAPPLY_CONTINUE;
	}
	a->auth_failures++;
	log_notice("auth failed service=syncd rip=%s user=%s peer=%s failures=%u penalty_ms=%lld"
		" delay_ms=0 reason=%s", log_q(a->peer_addr != NULL ? a->peer_addr : ""), log_q(who),
		log_q(a->peer), a->auth_failures, (long long)penalty_ms,
		rc == 2 ? "\"throttled: too many failures for this user or address\"" :
		"\"bad authname or password\"");
	if (rc == 2)
		reply(a, out, cmd->tag, "NO", ERR_TEMP, NULL, "too many failed logins, try again later");
	else
		reply(a, out, cmd->tag, "NO", ERR_PERM, NULL, "authentication failed");
	if (a->auth_failures >= AUTH_FAILURES_MAX) {
		buf_puts(out, "* BYE [PERM] \"too many authentication failures\"\r\n");
		return SYNCAPPLY_CLOSE;
	}
	return SYNCAPPLY_CONTINUE;
}

static void
cmd_hello(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const struct syncproto_value *kv = &cmd->args[0];
	uint64_t version = 0, epoch = 0, allow = 0, my_epoch;
	const char *role = NULL, *my_role, *sid = NULL, *chan = NULL;
	struct syncproto_enc e;
	struct err err;
	char detail[64];

	if (syncproto_kv_u64(kv, "VERSION", &version, &err) != 1 ||
	    syncproto_kv_u64(kv, "EPOCH", &epoch, &err) != 1 ||
	    syncproto_kv_cstr(kv, "ROLE", &role, &err) != 1) {
		reply(a, out, cmd->tag, "BAD", ERR_INVALID, NULL, "HELLO needs VERSION, ROLE and EPOCH");
		return;
	}
	(void)syncproto_kv_cstr(kv, "SERVERID", &sid, &err);
	(void)syncproto_kv_cstr(kv, "CHANNEL", &chan, &err);
	(void)syncproto_kv_u64(kv, "ALLOW-DELETES", &allow, &err);
	if (version != SYNCPROTO_VERSION) {
		reply(a, out, cmd->tag, "NO", ERR_PERM, NULL, "protocol version not supported");
		return;
	}
	if (store_server_get(a->st, &my_role, &my_epoch, &err) < 0) {
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	snprintf(a->client_id, sizeof(a->client_id), "%s/%s", sid ? sid : "?", chan ? chan : "?");
	if (str_eq(my_role, "replica") && epoch < my_epoch) {
		log_warn("fenced an old master client=%s epoch=%llu mine=%llu", log_q(a->client_id),
			(unsigned long long)epoch, (unsigned long long)my_epoch);
		snprintf(detail, sizeof(detail), "epoch %llu", (unsigned long long)my_epoch);
		reply(a, out, cmd->tag, "NO", ERR_FENCED, detail, "the client's epoch is below ours");
		a->stats.fenced++;
		return;
	}
	if (str_eq(my_role, "replica") && epoch > my_epoch) {
		if (store_server_set(a->st, "replica", epoch, &err) < 0) {
			reply_err(a, out, cmd->tag, &err);
			return;
		}
		log_notice("epoch raised by the master client=%s epoch=%llu was=%llu",
			log_q(a->client_id), (unsigned long long)epoch, (unsigned long long)my_epoch);
		my_epoch = epoch;
	}
	a->hello = true;
	a->client_epoch = epoch;
	a->allow_deletes = allow == 1;
	syncproto_enc_init(&e, out, 0);
	syncproto_enc_atom(&e, "*");
	syncproto_enc_atom(&e, "HELLO");
	syncproto_enc_open(&e, '(');
	syncproto_enc_key_u64(&e, "VERSION", SYNCPROTO_VERSION);
	syncproto_enc_atom(&e, "ROLE");
	syncproto_enc_atom(&e, my_role);
	syncproto_enc_key_u64(&e, "EPOCH", my_epoch);
	syncproto_enc_key_string(&e, "SERVERID", a->servername);
	syncproto_enc_atom(&e, "CHANNELS");
	syncproto_enc_open(&e, '(');
	for (size_t i = 0; i < a->nchannels; i++)
		syncproto_enc_cstring(&e, a->channels[i]);
	syncproto_enc_close(&e);
	{
		/* commits made here by anything but syncd (store_summary.c S5) */
		uint64_t gen = 0;
		struct err e2;
		if (store_local_gen(a->st, &gen, &e2) == 0)
			syncproto_enc_key_u64(&e, "LOCALGEN", gen);
	}
	syncproto_enc_close(&e);
	syncproto_enc_end(&e);
	log_info("hello client=%s role=%s epoch=%llu my_role=%s", log_q(a->client_id), log_q(role),
		(unsigned long long)epoch, my_role);
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
}

static void
cmd_promote(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	uint64_t want = cmd->args[0].num, epoch;
	const char *role;
	struct err err;
	char detail[64];

	if (store_server_get(a->st, &role, &epoch, &err) < 0) {
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	if (want <= epoch) {
		snprintf(detail, sizeof(detail), "epoch %llu", (unsigned long long)epoch);
		reply(a, out, cmd->tag, "NO", ERR_FENCED, detail, "PROMOTE needs an epoch above ours");
		return;
	}
	if (store_server_set(a->st, "master", want, &err) < 0) {
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	log_notice("promoted to master epoch=%llu was_role=%s was_epoch=%llu client=%s",
		(unsigned long long)want, role, (unsigned long long)epoch, log_q(a->client_id));
	buf_printf(out, "%s OK [EPOCH %llu]\r\n", cmd->tag, (unsigned long long)want);
}

/* ------------------------------------------------------------------ */
/* GET                                                                 */

static int
users_cb(void *ctx, const char *user, uint64_t modseq, uint32_t digest)
{
	struct buf *out = ctx;
	struct syncproto_enc e;

	syncproto_enc_init(&e, out, 0);
	syncproto_enc_atom(&e, "*");
	syncproto_enc_atom(&e, "USER");
	syncproto_enc_open(&e, '(');
	syncproto_enc_key_string(&e, "NAME", user);
	syncproto_enc_key_u64(&e, "HIGHESTMODSEQ", modseq);
	syncproto_enc_key_u64(&e, "DIGEST", digest);
	syncproto_enc_close(&e);
	syncproto_enc_end(&e);
	return 0;
}

static void
cmd_get_users(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	struct err err;
	size_t mark = out->len, opened = 0;

	/* from the users.db summaries: an unchanged user is not opened */
	if (syncdigest_users(a->st, users_cb, out, &opened, &err) < 0) {
		buf_truncate(out, mark);
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	log_info("users listed user_dbs_opened=%zu", opened);
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
}

static void
enc_mailbox(struct syncproto_enc *e, const struct store_mailbox *mb)
{
	syncproto_enc_open(e, '(');
	syncproto_enc_atom(e, "UNIQUEID");
	syncproto_enc_atom(e, mb->uniqueid);
	syncproto_enc_key_string(e, "NAME", mb->name);
	syncproto_enc_key_u64(e, "UIDVALIDITY", mb->uidvalidity);
	syncproto_enc_key_u64(e, "UIDNEXT", mb->uidnext);
	syncproto_enc_key_u64(e, "HIGHESTMODSEQ", mb->highestmodseq);
	syncproto_enc_key_u64(e, "CREATEDMODSEQ", mb->createdmodseq);
	syncproto_enc_key_u64(e, "MODSEQ", mb->modseq);
	syncproto_enc_key_u64(e, "DELETEDMODSEQ", mb->deleted_modseq);
	syncproto_enc_key_string(e, "SPECIALUSE", mb->specialuse);
	syncproto_enc_key_u64(e, "CHECKSUM", mb->sync_crc);
	syncproto_enc_close(e);
}

static int
mailboxes_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct buf *out = ctx;
	struct syncproto_enc e;

	(void)name;
	(void)attrs;
	if (mb == NULL)
		return 0;
	syncproto_enc_init(&e, out, 0);
	syncproto_enc_atom(&e, "*");
	syncproto_enc_atom(&e, "MAILBOX");
	enc_mailbox(&e, mb);
	syncproto_enc_end(&e);
	return 0;
}

static int
subs_cb(void *ctx, const struct store_change *c)
{
	struct buf *out = ctx;
	struct syncproto_enc e;

	if (c->item != STORE_ITEM_SUB)
		return 0;
	syncproto_enc_init(&e, out, 0);
	syncproto_enc_atom(&e, "*");
	syncproto_enc_atom(&e, "SUB");
	syncproto_enc_open(&e, '(');
	syncproto_enc_key_string(&e, "NAME", c->sub_name);
	syncproto_enc_key_u64(&e, "SUBSCRIBED", c->subscribed ? 1 : 0);
	syncproto_enc_key_u64(&e, "MODSEQ", c->modseq);
	syncproto_enc_close(&e);
	syncproto_enc_end(&e);
	return 0;
}

static void
cmd_get_user(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	struct store_userinfo ui;
	struct store_user *u;
	struct syncproto_enc e;
	uint64_t modseq;
	struct err err;
	size_t mark = out->len;
	char hex[65], *hash = NULL;

	if (syncdigest_userinfo(a->st, user, &ui, &hash, &err) < 0) {
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	syncproto_enc_init(&e, out, 0);
	syncproto_enc_atom(&e, "*");
	syncproto_enc_atom(&e, "USER");
	syncproto_enc_open(&e, '(');
	syncproto_enc_key_string(&e, "NAME", user);
	if ((u = user_get(a, user, &err)) == NULL || store_user_modseq(u, &modseq, &err) < 0)
		goto fail;
	syncproto_enc_key_u64(&e, "HIGHESTMODSEQ", modseq);
	syncproto_enc_key_quota(&e, "QUOTA-BYTES", ui.quota_bytes);
	syncproto_enc_key_quota(&e, "QUOTA-MESSAGES", ui.quota_messages);
	syncproto_enc_atom(&e, "PASSWORD-SHA256");
	if (hash != NULL) {
		syncproto_password_digest(hash, hex);
		syncproto_enc_atom(&e, hex);
	} else {
		syncproto_enc_nil(&e);
	}
	syncproto_enc_key_u64(&e, "CREATED", ui.created > 0 ? (uint64_t)ui.created : 0);
	syncproto_enc_close(&e);
	syncproto_enc_end(&e);
	if (store_mailbox_list(u, "*", STORE_LIST_DELETED | STORE_LIST_NO_PARENTS, mailboxes_cb, out,
		&err) < 0)
		goto fail;
	if (store_changes_since(u, 0, subs_cb, out, &err) < 0)
		goto fail;
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
	free(hash);
	return;
fail:
	free(hash);
	buf_truncate(out, mark);
	reply_err(a, out, cmd->tag, &err);
}

struct records_ctx {
	struct buf *out;
	uint64_t n;
};

static int
records_cb(void *ctx, const struct store_record *r)
{
	struct records_ctx *rc = ctx;
	struct syncproto_enc e;

	syncproto_enc_init(&e, rc->out, 0);
	syncproto_enc_atom(&e, "*");
	syncproto_enc_atom(&e, "RECORD");
	syncproto_enc_open(&e, '(');
	syncproto_enc_key_u64(&e, "UID", r->uid);
	syncproto_enc_key_u64(&e, "MODSEQ", r->modseq);
	syncproto_enc_atom(&e, "GUID");
	syncproto_enc_atom(&e, r->guid);
	if (r->expunged_modseq != 0)
		syncproto_enc_key_u64(&e, "EXPUNGEDMODSEQ", r->expunged_modseq);
	syncproto_enc_key_u64(&e, "SIZE", r->size);
	syncproto_enc_atom(&e, "INTERNALDATE");
	syncproto_enc_i64(&e, r->internaldate);
	syncproto_enc_atom(&e, "FLAGS");
	syncapply_enc_flags(&e, r->sysflags, r->keywords);
	syncproto_enc_close(&e);
	syncproto_enc_end(&e);
	rc->n++;
	return 0;
}

static void
cmd_get_records(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	const char *id = cmd->args[1].str;
	uint64_t since = cmd->args[2].num;
	struct store_mailbox mb;
	struct store_user *u;
	struct records_ctx rc = { out, 0 };
	struct err err;
	size_t mark = out->len;

	if ((u = user_get(a, user, &err)) == NULL ||
	    store_mailbox_get_id(u, id, true, &mb, &err) < 0 ||
	    store_records_since(u, id, since, records_cb, &rc, &err) < 0) {
		buf_truncate(out, mark);
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	buf_printf(out, "%s OK [MAILBOX HIGHESTMODSEQ %llu UIDNEXT %u CHECKSUM %u]\r\n", cmd->tag,
		(unsigned long long)mb.highestmodseq, mb.uidnext, mb.sync_crc);
}

static void
cmd_get_blob(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	const char *guid = cmd->args[1].str;
	struct store_user *u;
	struct store_blob b;
	struct syncproto_enc e;
	struct err err;

	if ((u = user_get(a, user, &err)) == NULL || store_blob_map(u, guid, &b, &err) < 0) {
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	syncproto_enc_init(&e, out, 0);
	syncproto_enc_atom(&e, "*");
	syncproto_enc_atom(&e, "BLOB");
	syncproto_enc_atom(&e, guid);
	syncproto_enc_literal(&e, b.data, b.len);
	syncproto_enc_end(&e);
	store_blob_release(&b);
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
}

static void
cmd_reserve(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	const struct syncproto_value *list = &cmd->args[1];
	struct store_user *u;
	struct syncproto_enc e;
	struct err err;
	size_t mark = out->len;
	int x;

	if (writable(a, &err) < 0) {
		reply_fenced(a, out, cmd->tag, &err);
		return;
	}
	u = user_get(a, user, &err);
	if (u == NULL && err.kind != ERR_NOTFOUND) {
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	syncproto_enc_init(&e, out, 0);
	syncproto_enc_atom(&e, "*");
	syncproto_enc_atom(&e, "MISSING");
	syncproto_enc_open(&e, '(');
	for (size_t i = 0; i < list->n; i++) {
		x = u != NULL ? store_blob_exists(u, list->items[i].str, &err) : 0;
		if (x < 0) {
			buf_truncate(out, mark);
			reply_err(a, out, cmd->tag, &err);
			return;
		}
		if (x == 0)
			syncproto_enc_atom(&e, list->items[i].str);
	}
	syncproto_enc_close(&e);
	syncproto_enc_end(&e);
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* APPLY MAILBOX                                                       */

struct apply_rec {
	struct store_record r;
	struct buf kw;
	bool live_fields;    /* SIZE, INTERNALDATE, FLAGS given */
	bool replace;
};

static int
parse_record(const struct syncproto_value *kv, struct apply_rec *ar, struct err *err)
{
	const struct syncproto_value *flags = NULL, *g;
	uint64_t uid = 0, n = 0;
	int64_t idate = 0;
	int got_size, got_date, got_flags;

	memset(&ar->r, 0, sizeof(ar->r));
	ar->live_fields = false;
	ar->replace = false;
	if (syncproto_kv_check(kv, err) < 0)
		return -1;
	if (syncproto_kv_u64(kv, "UID", &uid, err) != 1 || uid == 0 || uid >= UINT32_MAX)
		return err_set(err, ERR_INVALID, "record without a valid UID");
	ar->r.uid = (uint32_t)uid;
	if (syncproto_kv_u64(kv, "MODSEQ", &ar->r.modseq, err) != 1 || ar->r.modseq == 0)
		return err_set(err, ERR_INVALID, "record %u: MODSEQ missing", ar->r.uid);
	g = syncproto_kv_get(kv, "GUID");
	if (g == NULL || !syncproto_is_hex(g, STORE_GUID_LEN))
		return err_set(err, ERR_INVALID, "record %u: GUID missing or malformed", ar->r.uid);
	str_lcpy(ar->r.guid, g->str, sizeof(ar->r.guid));
	if (syncproto_kv_u64(kv, "EXPUNGEDMODSEQ", &ar->r.expunged_modseq, err) < 0)
		return -1;
	if ((got_size = syncproto_kv_u64(kv, "SIZE", &ar->r.size, err)) < 0 ||
	    (got_date = syncproto_kv_i64(kv, "INTERNALDATE", &idate, err)) < 0 ||
	    (got_flags = syncproto_kv_list(kv, "FLAGS", &flags, err)) < 0)
		return -1;
	ar->r.internaldate = idate;
	if (syncproto_kv_u64(kv, "REPLACE", &n, err) < 0)
		return -1;
	ar->replace = n == 1;
	ar->live_fields = got_size == 1 && got_date == 1 && got_flags == 1;
	if (!ar->live_fields && ar->r.expunged_modseq == 0)
		return err_set(err, ERR_INVALID, "record %u: a live record needs SIZE, INTERNALDATE, FLAGS",
			ar->r.uid);
	buf_reset(&ar->kw);
	if (flags != NULL && syncapply_parse_flags(flags, &ar->r.sysflags, &ar->kw, err) < 0) {
		err_prefix(err, "record %u", ar->r.uid);
		return -1;
	}
	ar->r.keywords = buf_cstr(&ar->kw);
	return 0;
}

struct apply_mb {
	const char *uniqueid, *name, *oldname, *specialuse;
	uint64_t uidvalidity, uidnext, hms, createdmodseq, modseq, deletedmodseq;
	uint64_t since_modseq, since_crc, crc_after;
	bool have_oldname, have_since_crc, since_crc_nil, have_crc_after;
	uint64_t undelete;        /* UNDELETE 1: a creation over our tombstone */
	uint64_t reset;           /* RESET 1: a creation over our copy of another uidvalidity */
	const struct syncproto_value *records;
};

static int
parse_apply_mailbox(const struct syncproto_value *kv, struct apply_mb *m, struct err *err)
{
	const struct syncproto_value *v;
	int r;

	memset(m, 0, sizeof(*m));
	v = syncproto_kv_get(kv, "UNIQUEID");
	if (v == NULL || !syncproto_is_hex(v, STORE_UNIQUEID_LEN))
		return err_set(err, ERR_INVALID, "UNIQUEID missing or malformed");
	m->uniqueid = v->str;
	if (syncproto_kv_cstr(kv, "NAME", &m->name, err) != 1)
		return err_set(err, ERR_INVALID, "NAME missing");
	if (syncproto_kv_u64(kv, "UIDVALIDITY", &m->uidvalidity, err) != 1 || m->uidvalidity == 0 ||
	    m->uidvalidity > UINT32_MAX)
		return err_set(err, ERR_INVALID, "UIDVALIDITY missing or out of range");
	if (syncproto_kv_u64(kv, "UIDNEXT", &m->uidnext, err) != 1 || m->uidnext == 0 ||
	    m->uidnext > UINT32_MAX)
		return err_set(err, ERR_INVALID, "UIDNEXT missing or out of range");
	if (syncproto_kv_u64(kv, "HIGHESTMODSEQ", &m->hms, err) != 1)
		return err_set(err, ERR_INVALID, "HIGHESTMODSEQ missing");
	if (syncproto_kv_u64(kv, "SINCE-MODSEQ", &m->since_modseq, err) != 1)
		return err_set(err, ERR_INVALID, "SINCE-MODSEQ missing");
	if (syncproto_kv_list(kv, "RECORDS", &m->records, err) != 1)
		return err_set(err, ERR_INVALID, "RECORDS missing");
	if (syncproto_kv_u64(kv, "CREATEDMODSEQ", &m->createdmodseq, err) < 0 ||
	    syncproto_kv_u64(kv, "MODSEQ", &m->modseq, err) < 0 ||
	    syncproto_kv_u64(kv, "DELETEDMODSEQ", &m->deletedmodseq, err) < 0)
		return -1;
	if (m->deletedmodseq != 0)
		return err_set(err, ERR_INVALID, "APPLY MAILBOX of a tombstone (use APPLY DELETE)");
	if ((r = syncproto_kv_cstr(kv, "SPECIALUSE", &m->specialuse, err)) < 0)
		return -1;
	if (r == 0)
		m->specialuse = NULL;
	if ((r = syncproto_kv_cstr(kv, "OLDNAME", &m->oldname, err)) < 0)
		return -1;
	m->have_oldname = r == 1;
	v = syncproto_kv_get(kv, "SINCE-CHECKSUM");
	if (v != NULL) {
		m->have_since_crc = true;
		if (v->type == SYNCPROTO_NIL)
			m->since_crc_nil = true;
		else if (syncproto_get_u64(v, &m->since_crc) < 0 || m->since_crc > UINT32_MAX)
			return err_set(err, ERR_INVALID, "SINCE-CHECKSUM is not a 32-bit number");
	}
	if ((r = syncproto_kv_u64(kv, "CHECKSUM", &m->crc_after, err)) < 0)
		return -1;
	if (syncproto_kv_u64(kv, "UNDELETE", &m->undelete, err) < 0 ||
	    syncproto_kv_u64(kv, "RESET", &m->reset, err) < 0)
		return -1;
	m->have_crc_after = r == 1;
	if (m->hms < m->since_modseq)
		return err_set(err, ERR_INVALID, "HIGHESTMODSEQ below SINCE-MODSEQ");
	if (m->modseq > m->hms)
		return err_set(err, ERR_INVALID, "MODSEQ above HIGHESTMODSEQ");
	return 0;
}

/* Apply one record inside the open transaction.  0, or -1 with err. */
static int
apply_record(struct store_user *u, const char *id, struct apply_rec *ar, uint64_t hms,
	struct err *err)
{
	struct store_record_full old;
	struct err e2;
	int x;

	if (ar->r.modseq > hms || ar->r.expunged_modseq > hms)
		return err_set(err, ERR_INVALID, "record %u: modseq above HIGHESTMODSEQ", ar->r.uid);
	if (ar->r.expunged_modseq != 0) {
		/* A tombstone: the body may be long gone on the master.  If we
		 * never had this record, there is nothing to expunge; fill in
		 * what the tombstone left out from our copy. */
		if (store_record_get(u, id, ar->r.uid, &old, &e2) < 0) {
			if (e2.kind != ERR_NOTFOUND) {
				*err = e2;
				return -1;
			}
			x = store_blob_exists(u, ar->r.guid, err);
			if (x < 0)
				return -1;
			if (x == 0 || !ar->live_fields)
				return 0;
		} else {
			if (!ar->live_fields) {
				ar->r.size = old.rec.size;
				ar->r.internaldate = old.rec.internaldate;
				ar->r.sysflags = old.rec.sysflags;
				buf_reset(&ar->kw);
				buf_puts(&ar->kw, old.keywords != NULL ? old.keywords : "");
				ar->r.keywords = buf_cstr(&ar->kw);
			}
			store_record_full_free(&old);
		}
	}
	if (ar->replace) {
		/* REPLACE 1 (split brain, issue 8): the message we hold under
		 * this UID loses; it goes to the quarantine before it is
		 * replaced or expunged, never just dropped */
		if (store_record_get(u, id, ar->r.uid, &old, &e2) == 0) {
			bool lose = old.rec.expunged_modseq == 0 &&
				(!str_eq(old.rec.guid, ar->r.guid) || ar->r.expunged_modseq != 0);
			store_record_full_free(&old);
			if (lose && store_repl_quarantine(u, id, ar->r.uid,
				ar->r.expunged_modseq != 0 ? "expunged-by-master" : "uid-replaced", err) < 0)
				return -1;
		} else if (e2.kind != ERR_NOTFOUND) {
			*err = e2;
			return -1;
		}
		return store_repl_record_replace(u, id, &ar->r, err);
	}
	if (store_repl_record(u, id, &ar->r, err) < 0)
		return -1;
	return 0;
}

/* Undo a refused APPLY.  When it had joined this user's upload group,
 * only the APPLY is undone: the bodies uploaded before it are committed
 * on their own and stay acknowledged, so the master's retry finds them
 * with RESERVE instead of sending them again (a full disk on the
 * replica must not cost a re-upload of everything per retry). */
static void
apply_rollback(struct syncapply *a, struct store_user *u, bool adopt, struct buf *out)
{
	if (adopt && a->grp_marked) {
		store_txn_rollback_to_mark(u);
		a->grp_marked = false;
		syncapply_sync(a, out);
		return;
	}
	store_txn_rollback(u);
	if (adopt)
		grp_abort(a, out, "the APPLY that followed was refused");
}

/* One APPLY MAILBOX in hand: what its steps share. */
struct apply_mb_run {
	struct syncapply *a;
	const struct syncproto_command *cmd;
	struct buf *out;
	const char *user;
	struct apply_mb m;
	struct store_mailbox cur, after;   /* our copy before, and after the write */
	struct store_user *u;
	struct apply_rec ar;
	struct err err;
	char detail[STORE_MBOX_NAME_MAX * 2 + 64];
	bool exists, adopt;
	struct buf d;
};

/* How a step of APPLY MAILBOX ended. */
enum apply_step {
	APPLY_NEXT,        /* go on with the next step */
	APPLY_ANSWERED,    /* rolled back and answered: stop */
	APPLY_CONFLICT,    /* refuse with NO [CONFLICT detail]: err and detail set */
	APPLY_FAIL,        /* refuse with err */
};

/* Parse, check fencing, then join this user's upload group or open a
 * transaction.  0 with the transaction open, or -1 answered. */
static int
apply_mb_begin(struct apply_mb_run *run)
{
	struct syncapply *a = run->a;

	if (parse_apply_mailbox(&run->cmd->args[1], &run->m, &run->err) < 0) {
		syncapply_sync(a, run->out);
		reply(a, run->out, run->cmd->tag, "BAD", ERR_INVALID, NULL, run->err.msg);
		return -1;
	}
	if (writable(a, &run->err) < 0) {
		syncapply_sync(a, run->out);
		reply_fenced(a, run->out, run->cmd->tag, &run->err);
		return -1;
	}
	/* UPLOADs for this user just before: one transaction, one fsync */
	run->adopt = a->grp_open && str_eq(a->uname, run->user);
	if (!run->adopt)
		syncapply_sync(a, run->out);
	if ((run->u = user_get(a, run->user, &run->err)) == NULL) {
		reply_err(a, run->out, run->cmd->tag, &run->err);
		return -1;
	}
	if (!run->adopt && store_txn_begin(run->u, &run->err) < 0) {
		user_forget(a);
		reply_err(a, run->out, run->cmd->tag, &run->err);
		return -1;
	}
	a->grp_marked = run->adopt && store_txn_mark(run->u, &run->err) == 0;
	return 0;
}

/* Our copy exists and is neither undeleted nor reset: it must be the
 * state the master's change starts from (same uidvalidity, name,
 * modseq and checksum). */
static enum apply_step
apply_mb_check_base(struct apply_mb_run *run)
{
	const struct apply_mb *m = &run->m;
	const struct store_mailbox *cur = &run->cur;

	if (m->since_crc_nil) {
		err_set(&run->err, ERR_CONFLICT, "mailbox %s exists here", m->uniqueid);
		str_lcpy(run->detail, "exists", sizeof(run->detail));
		return APPLY_CONFLICT;
	}
	if (cur->deleted_modseq != 0) {
		err_set(&run->err, ERR_CONFLICT, "mailbox %s is deleted here", m->uniqueid);
		str_lcpy(run->detail, "deleted", sizeof(run->detail));
		return APPLY_CONFLICT;
	}
	if (cur->uidvalidity != m->uidvalidity) {
		err_set(&run->err, ERR_CONFLICT, "uidvalidity %u here", cur->uidvalidity);
		snprintf(run->detail, sizeof(run->detail), "uidvalidity %u", cur->uidvalidity);
		return APPLY_CONFLICT;
	}
	if (!str_eq(cur->name, m->name) && !(m->have_oldname && str_eq(cur->name, m->oldname))) {
		char norm[STORE_MBOX_NAME_MAX + 1];
		struct err e3;
		if (!(store_mailbox_name_check(m->name, norm, &e3) == 0 && str_eq(norm, cur->name))) {
			err_set(&run->err, ERR_CONFLICT, "mailbox %s is named %s here", m->uniqueid,
				log_q(cur->name));
			buf_puts(&run->d, "name ");
			buf_put_quoted(&run->d, cur->name, strlen(cur->name));
			str_lcpy(run->detail, buf_cstr(&run->d), sizeof(run->detail));
			return APPLY_CONFLICT;
		}
	}
	if (cur->highestmodseq != m->since_modseq ||
	    (m->have_since_crc && cur->sync_crc != m->since_crc)) {
		err_set(&run->err, ERR_CONFLICT, "mailbox %s is at modseq %llu checksum %u here",
			m->uniqueid, (unsigned long long)cur->highestmodseq, cur->sync_crc);
		snprintf(run->detail, sizeof(run->detail), "checksum %u %llu", cur->sync_crc,
			(unsigned long long)cur->highestmodseq);
		return APPLY_CONFLICT;
	}
	return APPLY_NEXT;
}

/* Read our copy of the mailbox and decide whether the change applies to
 * it: a creation, an undeletion, a uidvalidity reset, or a change from
 * the state we hold. */
static enum apply_step
apply_mb_check(struct apply_mb_run *run)
{
	const struct apply_mb *m = &run->m;
	struct store_mailbox *cur = &run->cur;

	if (store_mailbox_get_id(run->u, m->uniqueid, true, cur, &run->err) == 0)
		run->exists = true;
	else if (run->err.kind == ERR_NOTFOUND)
		run->exists = false;
	else
		return APPLY_FAIL;
	if (!run->exists) {
		if (!m->since_crc_nil || m->since_modseq != 0) {
			err_set(&run->err, ERR_NOTFOUND, "no mailbox %s here", m->uniqueid);
			return APPLY_FAIL;
		}
	} else if (m->undelete == 1 && m->since_crc_nil && m->since_modseq == 0 &&
		   cur->deleted_modseq != 0 && m->modseq > cur->deleted_modseq &&
		   cur->uidvalidity == m->uidvalidity) {
		/* the master undeleted it after the deletion we hold: the
		 * tombstone comes back to life with every record it is sent */
		log_info("mailbox undeleted by the master user=%s mailbox=%s name=%s", run->user,
			m->uniqueid, log_q(m->name));
		store_deleted_forget(run->u, m->uniqueid);
	} else if (m->reset == 1 && m->since_crc_nil && m->since_modseq == 0 &&
		   cur->deleted_modseq == 0 && cur->uidvalidity != m->uidvalidity) {
		/* split brain case 4: the master's uidvalidity wins; ours is
		 * quarantined message by message, then the master's records
		 * arrive as for a creation */
		if (store_repl_mailbox_reset(run->u, m->uniqueid, "uidvalidity-reset", &run->err) < 0)
			return APPLY_FAIL;
		cur->uidnext = 1;
	} else {
		return apply_mb_check_base(run);
	}
	return APPLY_NEXT;
}

/* Write the mailbox row: the master's values, but uidnext never lowered
 * (but by a reset) and what the command leaves out kept from our copy. */
static enum apply_step
apply_mb_write(struct apply_mb_run *run)
{
	const struct apply_mb *m = &run->m;
	const struct store_mailbox *cur = &run->cur;
	bool exists = run->exists;
	struct store_mailbox mb;

	memset(&mb, 0, sizeof(mb));
	str_lcpy(mb.uniqueid, m->uniqueid, sizeof(mb.uniqueid));
	str_lcpy(mb.name, m->name, sizeof(mb.name));
	mb.uidvalidity = (uint32_t)m->uidvalidity;
	mb.uidnext = (uint32_t)m->uidnext;
	if (exists && cur->uidnext > mb.uidnext && m->reset != 1)
		mb.uidnext = cur->uidnext;    /* never lowered (but by a reset) */
	mb.highestmodseq = m->hms;
	mb.createdmodseq = m->createdmodseq ? m->createdmodseq : (exists ? cur->createdmodseq : m->hms);
	mb.modseq = m->modseq ? m->modseq : (exists ? cur->modseq : m->hms);
	if (mb.modseq > m->hms)
		mb.modseq = m->hms;
	mb.deleted_modseq = 0;
	str_lcpy(mb.specialuse, m->specialuse != NULL ? m->specialuse : (exists ? cur->specialuse : ""),
		sizeof(mb.specialuse));
	if (store_repl_mailbox(run->u, &mb, &run->err) == 0)
		return APPLY_NEXT;
	if (run->err.kind == ERR_EXISTS) {
		buf_reset(&run->d);
		buf_puts(&run->d, "name ");
		buf_put_quoted(&run->d, m->name, strlen(m->name));
		str_lcpy(run->detail, buf_cstr(&run->d), sizeof(run->detail));
		apply_rollback(run->a, run->u, run->adopt, run->out);
		reply(run->a, run->out, run->cmd->tag, "NO", ERR_EXISTS, run->detail, run->err.msg);
		return APPLY_ANSWERED;
	}
	if (run->err.kind == ERR_CONFLICT) {
		str_lcpy(run->detail, "state", sizeof(run->detail));
		return APPLY_CONFLICT;
	}
	return APPLY_FAIL;
}

/* Parse and apply each record; a malformed one is answered BAD, a body
 * we lack NO [NOTFOUND guid G]. */
static enum apply_step
apply_mb_records(struct apply_mb_run *run)
{
	struct syncapply *a = run->a;
	struct apply_rec *ar = &run->ar;

	for (size_t i = 0; i < run->m.records->n; i++) {
		if (parse_record(&run->m.records->items[i], ar, &run->err) < 0) {
			apply_rollback(a, run->u, run->adopt, run->out);
			reply(a, run->out, run->cmd->tag, "BAD", ERR_INVALID, NULL, run->err.msg);
			return APPLY_ANSWERED;
		}
		if (apply_record(run->u, run->m.uniqueid, ar, run->m.hms, &run->err) < 0) {
			if (run->err.kind == ERR_CONFLICT) {
				snprintf(run->detail, sizeof(run->detail), "guid %u", ar->r.uid);
				return APPLY_CONFLICT;
			}
			if (run->err.kind == ERR_NOTFOUND) {
				snprintf(run->detail, sizeof(run->detail), "guid %s", ar->r.guid);
				apply_rollback(a, run->u, run->adopt, run->out);
				reply(a, run->out, run->cmd->tag, "NO", ERR_NOTFOUND, run->detail,
					run->err.msg);
				return APPLY_ANSWERED;
			}
			if (run->err.kind == ERR_INVALID) {
				apply_rollback(a, run->u, run->adopt, run->out);
				reply(a, run->out, run->cmd->tag, "BAD", ERR_INVALID, NULL, run->err.msg);
				return APPLY_ANSWERED;
			}
			return APPLY_FAIL;
		}
		a->stats.records++;
	}
	return APPLY_NEXT;
}

/* Read the mailbox back and compare its checksum with the one the
 * master expects after the change. */
static enum apply_step
apply_mb_verify(struct apply_mb_run *run)
{
	if (store_mailbox_get_id(run->u, run->m.uniqueid, true, &run->after, &run->err) < 0)
		return APPLY_FAIL;
	if (run->m.have_crc_after && run->after.sync_crc != run->m.crc_after) {
		err_set(&run->err, ERR_CONFLICT, "checksum after the change is %u, not %llu",
			run->after.sync_crc, (unsigned long long)run->m.crc_after);
		snprintf(run->detail, sizeof(run->detail), "checksum-after %u", run->after.sync_crc);
		return APPLY_CONFLICT;
	}
	if (FAILPOINT("syncd.apply.before_commit") < 0) {
		err_set(&run->err, ERR_TEMP, "failpoint syncd.apply.before_commit");
		return APPLY_FAIL;
	}
	return APPLY_NEXT;
}

/* Commit (with the upload group, if joined), then answer OK with the
 * mailbox's new state: never before the commit returned. */
static void
apply_mb_commit(struct apply_mb_run *run)
{
	struct syncapply *a = run->a;

	if (store_txn_commit(run->u, &run->err) < 0) {
		if (run->adopt)
			grp_abort(a, run->out, "commit failed");
		user_forget(a);
		reply_err(a, run->out, run->cmd->tag, &run->err);
		return;
	}
	if (run->adopt) {
		a->stats.group_commits++;
		grp_clear(a);
	}
	(void)FAILPOINT("syncd.apply.after_commit");
	a->stats.applied++;
	buf_printf(run->out, "%s OK [MAILBOX HIGHESTMODSEQ %llu UIDNEXT %u CHECKSUM %u]\r\n",
		run->cmd->tag, (unsigned long long)run->after.highestmodseq, run->after.uidnext,
		run->after.sync_crc);
}

/* Roll back a refused APPLY MAILBOX and answer it: NO [CONFLICT detail]
 * (logged) or the error err carries. */
static void
apply_mb_refuse(struct apply_mb_run *run, enum apply_step why)
{
	struct syncapply *a = run->a;

	apply_rollback(a, run->u, run->adopt, run->out);
	if (why == APPLY_CONFLICT) {
		log_notice("apply refused user=%s mailbox=%s conflict=%s error=%s", run->user,
			run->m.uniqueid, log_q(run->detail), log_q(run->err.msg));
		reply(a, run->out, run->cmd->tag, "NO", ERR_CONFLICT, run->detail, run->err.msg);
	} else {
		reply_err(a, run->out, run->cmd->tag, &run->err);
	}
}

/* APPLY MAILBOX: one mailbox's state and records, all or nothing in one
 * transaction (rules 1, 2 and 4 above). */
static void
cmd_apply_mailbox(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	struct apply_mb_run run = { .a = a, .cmd = cmd, .out = out, .user = cmd_user(cmd),
		.d = BUF_INIT };
	enum apply_step s;

	if (apply_mb_begin(&run) < 0)
		return;
	s = apply_mb_check(&run);
	if (s == APPLY_NEXT)
		s = apply_mb_write(&run);
	if (s == APPLY_NEXT)
		s = apply_mb_records(&run);
	if (s == APPLY_NEXT)
		s = apply_mb_verify(&run);
	if (s == APPLY_NEXT)
		apply_mb_commit(&run);
	else if (s != APPLY_ANSWERED)
		apply_mb_refuse(&run, s);
	buf_free(&run.ar.kw);
	buf_free(&run.d);
}

/* ------------------------------------------------------------------ */
/* Other APPLY commands                                                */

static void
cmd_apply_rename(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	const struct syncproto_value *kv = &cmd->args[1], *v;
	const char *oldname = NULL, *name = NULL;
	char norm[STORE_MBOX_NAME_MAX + 1];
	struct store_mailbox cur, mb;
	struct store_user *u;
	struct err err;
	struct buf d = BUF_INIT;

	v = syncproto_kv_get(kv, "UNIQUEID");
	if (v == NULL || !syncproto_is_hex(v, STORE_UNIQUEID_LEN) ||
	    syncproto_kv_cstr(kv, "OLDNAME", &oldname, &err) != 1 ||
	    syncproto_kv_cstr(kv, "NAME", &name, &err) != 1) {
		reply(a, out, cmd->tag, "BAD", ERR_INVALID, NULL, "APPLY RENAME needs UNIQUEID OLDNAME NAME");
		return;
	}
	if (writable(a, &err) < 0) {
		reply_fenced(a, out, cmd->tag, &err);
		return;
	}
	if ((u = user_get(a, user, &err)) == NULL ||
	    store_mailbox_name_check(name, norm, &err) < 0 ||
	    store_mailbox_get_id(u, v->str, false, &cur, &err) < 0) {
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	if (str_eq(cur.name, norm)) {
		reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
		return;
	}
	if (!str_eq(cur.name, oldname)) {
		buf_puts(&d, "name ");
		buf_put_quoted(&d, cur.name, strlen(cur.name));
		reply(a, out, cmd->tag, "NO", ERR_CONFLICT, buf_cstr(&d), "named otherwise here");
		buf_free(&d);
		return;
	}
	/* Only the name changes: MODSEQ and HIGHESTMODSEQ follow with the
	 * next APPLY MAILBOX (raising them here would skip records). */
	mb = cur;
	str_lcpy(mb.name, norm, sizeof(mb.name));
	if (store_repl_mailbox(u, &mb, &err) < 0) {
		if (err.kind == ERR_EXISTS) {
			buf_puts(&d, "name ");
			buf_put_quoted(&d, norm, strlen(norm));
			reply(a, out, cmd->tag, "NO", ERR_EXISTS, buf_cstr(&d), err.msg);
			buf_free(&d);
			return;
		}
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	a->stats.applied++;
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
}

static void
cmd_apply_delete(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	const struct syncproto_value *kv = &cmd->args[1], *v;
	const char *name = NULL;
	uint64_t dm = 0;
	struct store_mailbox cur, mb;
	struct store_user *u;
	struct err err;
	struct buf d = BUF_INIT;

	v = syncproto_kv_get(kv, "UNIQUEID");
	if (v == NULL || !syncproto_is_hex(v, STORE_UNIQUEID_LEN) ||
	    syncproto_kv_cstr(kv, "NAME", &name, &err) != 1 ||
	    syncproto_kv_u64(kv, "DELETEDMODSEQ", &dm, &err) != 1 || dm == 0) {
		reply(a, out, cmd->tag, "BAD", ERR_INVALID, NULL,
			"APPLY DELETE needs UNIQUEID NAME DELETEDMODSEQ");
		return;
	}
	if (writable(a, &err) < 0) {
		reply_fenced(a, out, cmd->tag, &err);
		return;
	}
	if ((u = user_get(a, user, &err)) == NULL) {
		if (err.kind == ERR_NOTFOUND)
			reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, "no such user");
		else
			reply_err(a, out, cmd->tag, &err);
		return;
	}
	if (store_mailbox_get_id(u, v->str, true, &cur, &err) < 0) {
		if (err.kind == ERR_NOTFOUND)
			reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, "no such mailbox");
		else
			reply_err(a, out, cmd->tag, &err);
		return;
	}
	if (cur.deleted_modseq != 0) {
		reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, "deleted already");
		return;
	}
	if (!str_eq(cur.name, name)) {
		buf_puts(&d, "name ");
		buf_put_quoted(&d, cur.name, strlen(cur.name));
		reply(a, out, cmd->tag, "NO", ERR_CONFLICT, buf_cstr(&d), "named otherwise here");
		buf_free(&d);
		return;
	}
	if (syncapply_delete_check(a, user, v->str, &err) < 0) {
		reply(a, out, cmd->tag, "NO", ERR_PERM, "delete-limit", err.msg);
		return;
	}
	mb = cur;
	mb.deleted_modseq = dm;
	mb.modseq = dm > cur.modseq ? dm : cur.modseq;
	mb.highestmodseq = dm > cur.highestmodseq ? dm : cur.highestmodseq;
	if (FAILPOINT("syncd.apply.before_commit") < 0) {
		reply(a, out, cmd->tag, "NO", ERR_TEMP, NULL, "failpoint syncd.apply.before_commit");
		return;
	}
	if (store_repl_mailbox(u, &mb, &err) < 0) {
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	(void)FAILPOINT("syncd.apply.after_commit");
	if (store_deleted_note(u, &mb, (int64_t)time(NULL), &err) < 0)
		log_warn("cannot note the deletion user=%s mailbox=%s error=%s", user, v->str,
			log_q(err.msg));
	log_info("mailbox deleted by the master user=%s mailbox=%s name=%s", user, v->str,
		log_q(cur.name));
	a->stats.applied++;
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
}

static void
cmd_apply_sub(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	const struct syncproto_value *kv = &cmd->args[1];
	const char *name = NULL;
	uint64_t subd = 0, modseq = 0;
	struct store_user *u;
	struct err err;

	if (syncproto_kv_cstr(kv, "NAME", &name, &err) != 1 ||
	    syncproto_kv_u64(kv, "SUBSCRIBED", &subd, &err) != 1 ||
	    syncproto_kv_u64(kv, "MODSEQ", &modseq, &err) != 1 || subd > 1) {
		reply(a, out, cmd->tag, "BAD", ERR_INVALID, NULL, "APPLY SUB needs NAME SUBSCRIBED MODSEQ");
		return;
	}
	if (writable(a, &err) < 0) {
		reply_fenced(a, out, cmd->tag, &err);
		return;
	}
	if ((u = user_get(a, user, &err)) == NULL ||
	    store_repl_sub(u, name, subd == 1, modseq, &err) < 0) {
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	a->stats.applied++;
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
}

static int
quota_arg(const struct syncproto_value *kv, const char *key, int64_t cur, int64_t *out,
	struct err *err)
{
	const struct syncproto_value *v = syncproto_kv_get(kv, key);
	uint64_t n;

	if (v == NULL) {
		*out = cur;
		return 0;
	}
	if (v->type == SYNCPROTO_NIL) {
		*out = -1;
		return 0;
	}
	if (syncproto_get_u64(v, &n) < 0 || n > INT64_MAX)
		return err_set(err, ERR_INVALID, "%s is not a number or NIL", key);
	*out = (int64_t)n;
	return 0;
}

static void
cmd_apply_user(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	const struct syncproto_value *kv = &cmd->args[1];
	struct store_userinfo ui;
	struct store_user *u;
	uint64_t modseq = 0;
	int64_t qb, qm;
	struct err err;
	int x;

	if (syncproto_kv_u64(kv, "HIGHESTMODSEQ", &modseq, &err) < 0) {
		reply(a, out, cmd->tag, "BAD", ERR_INVALID, NULL, err.msg);
		return;
	}
	if (writable(a, &err) < 0) {
		reply_fenced(a, out, cmd->tag, &err);
		return;
	}
	x = store_user_exists(a->st, user, &err);
	if (x < 0)
		goto fail;
	if (x == 0) {
		if (!store_user_name_valid(user)) {
			reply(a, out, cmd->tag, "BAD", ERR_INVALID, NULL, "invalid user name");
			return;
		}
		if (store_user_add(a->st, user, NULL, &err) < 0 && err.kind != ERR_EXISTS)
			goto fail;
		log_info("user created by the master user=%s", user);
	}
	if (store_user_info(a->st, user, &ui, &err) < 0)
		goto fail;
	if (quota_arg(kv, "QUOTA-BYTES", ui.quota_bytes, &qb, &err) < 0 ||
	    quota_arg(kv, "QUOTA-MESSAGES", ui.quota_messages, &qm, &err) < 0) {
		reply(a, out, cmd->tag, "BAD", ERR_INVALID, NULL, err.msg);
		return;
	}
	if ((qb != ui.quota_bytes || qm != ui.quota_messages) &&
	    store_user_set_quota(a->st, user, qb, qm, &err) < 0)
		goto fail;
	if (modseq > 0) {
		if ((u = user_get(a, user, &err)) == NULL || store_repl_modseq(u, modseq, &err) < 0)
			goto fail;
	}
	a->stats.applied++;
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
	return;
fail:
	reply_err(a, out, cmd->tag, &err);
}

static void
cmd_apply_unuser(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	struct err err;

	if (writable(a, &err) < 0) {
		reply_fenced(a, out, cmd->tag, &err);
		return;
	}
	if (syncapply_delete_check(a, user, NULL, &err) < 0) {
		reply(a, out, cmd->tag, "NO", ERR_PERM, "delete-limit", err.msg);
		return;
	}
	user_forget(a);
	if (store_user_del(a->st, user, &err) < 0) {
		if (err.kind == ERR_NOTFOUND) {
			reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, "no such user");
			return;
		}
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	log_notice("user deleted by the master user=%s", user);
	a->stats.applied++;
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
}

static void
cmd_apply_password(struct syncapply *a, const struct syncproto_command *cmd, struct buf *out)
{
	const char *user = cmd_user(cmd);
	const struct syncproto_value *kv = &cmd->args[1], *v;
	const char *hash = NULL;
	struct err err;

	v = syncproto_kv_get(kv, "HASH");
	if (v == NULL || (v->type != SYNCPROTO_NIL && (hash = syncproto_get_cstr(v)) == NULL)) {
		reply(a, out, cmd->tag, "BAD", ERR_INVALID, NULL, "APPLY PASSWORD needs HASH");
		return;
	}
	if (writable(a, &err) < 0) {
		reply_fenced(a, out, cmd->tag, &err);
		return;
	}
	if (store_user_set_hash(a->st, user, hash, &err) < 0) {
		reply_err(a, out, cmd->tag, &err);
		return;
	}
	a->stats.applied++;
	reply(a, out, cmd->tag, "OK", ERR_NONE, NULL, NULL);
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */

void
syncapply_protocol_error(struct syncapply *a, const struct err *err, struct buf *out)
{
	syncapply_sync(a, out);
	reply(a, out, NULL, "BYE", err->kind == ERR_TOOBIG ? ERR_TOOBIG : ERR_INVALID, NULL, err->msg);
}

enum syncapply_action
syncapply_frame(struct syncapply *a, const struct syncproto_value *frame, struct buf *out)
{
	struct syncproto_command cmd;
	struct err err;

	a->stats.commands++;
	if (syncproto_command_parse(frame, &cmd, &err) < 0) {
		syncapply_sync(a, out);
		if (cmd.tag == NULL) {
			reply(a, out, NULL, "BAD", ERR_INVALID, NULL, err.msg);
			return SYNCAPPLY_CONTINUE;
		}
		reply(a, out, cmd.tag, "BAD", ERR_INVALID, NULL, err.msg);
		if (!a->authed) {
			buf_puts(out, "* BYE [PERM] \"authenticate first\"\r\n");
			return SYNCAPPLY_CLOSE;
		}
		return SYNCAPPLY_CONTINUE;
	}
	if (cmd.cmd != SYNCPROTO_CMD_UPLOAD && cmd.cmd != SYNCPROTO_CMD_APPLY_MAILBOX)
		syncapply_sync(a, out);

	switch (cmd.cmd) {
	case SYNCPROTO_CMD_NOOP:
		reply(a, out, cmd.tag, "OK", ERR_NONE, NULL, NULL);
		return SYNCAPPLY_CONTINUE;
	case SYNCPROTO_CMD_LOGOUT:
		buf_puts(out, "* BYE \"bye\"\r\n");
		reply(a, out, cmd.tag, "OK", ERR_NONE, NULL, NULL);
		return SYNCAPPLY_CLOSE;
	case SYNCPROTO_CMD_STARTTLS:
		if (a->tls || !a->starttls_possible) {
			reply(a, out, cmd.tag, "NO", ERR_PERM, NULL, "STARTTLS not possible");
			return SYNCAPPLY_CONTINUE;
		}
		if (a->authed) {
			reply(a, out, cmd.tag, "NO", ERR_PERM, NULL, "already authenticated");
			return SYNCAPPLY_CONTINUE;
		}
		reply(a, out, cmd.tag, "OK", ERR_NONE, NULL, "begin TLS");
		return SYNCAPPLY_STARTTLS;
	case SYNCPROTO_CMD_AUTHENTICATE:
		return cmd_authenticate(a, &cmd, out);
	default:
		break;
	}
	if (!a->authed) {
		reply(a, out, cmd.tag, "BAD", ERR_PERM, NULL, "authenticate first");
		buf_puts(out, "* BYE [PERM] \"authenticate first\"\r\n");
		return SYNCAPPLY_CLOSE;
	}
	switch (cmd.cmd) {
	case SYNCPROTO_CMD_COMPRESS:
		if (a->compressed || !a->compress_allowed || !syncproto_is_atom(&cmd.args[0], "ZSTD")) {
			reply(a, out, cmd.tag, "NO", ERR_PERM, NULL, "compression not available");
			return SYNCAPPLY_CONTINUE;
		}
		a->compressed = true;
		reply(a, out, cmd.tag, "OK", ERR_NONE, NULL, "zstd on");
		return SYNCAPPLY_COMPRESS;
	case SYNCPROTO_CMD_HELLO:
		cmd_hello(a, &cmd, out);
		return SYNCAPPLY_CONTINUE;
	case SYNCPROTO_CMD_PROMOTE:
		cmd_promote(a, &cmd, out);
		return SYNCAPPLY_CONTINUE;
	default:
		break;
	}
	if (!a->hello) {
		reply(a, out, cmd.tag, "NO", ERR_PERM, NULL, "HELLO first");
		return SYNCAPPLY_CONTINUE;
	}
	switch (cmd.cmd) {
	case SYNCPROTO_CMD_GET_USERS:
		cmd_get_users(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_GET_USER:
		cmd_get_user(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_GET_RECORDS:
		cmd_get_records(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_GET_BLOB:
		cmd_get_blob(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_RESERVE:
		cmd_reserve(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_UPLOAD:
		cmd_upload(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_APPLY_MAILBOX:
		cmd_apply_mailbox(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_APPLY_RENAME:
		cmd_apply_rename(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_APPLY_DELETE:
		cmd_apply_delete(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_APPLY_SUB:
		cmd_apply_sub(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_APPLY_USER:
		cmd_apply_user(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_APPLY_UNUSER:
		cmd_apply_unuser(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_APPLY_PASSWORD:
		cmd_apply_password(a, &cmd, out);
		break;
	case SYNCPROTO_CMD_APPLY_SEEN:
		reply(a, out, cmd.tag, "NO", ERR_PERM, "unsupported",
			"seen state travels in the records' flags");
		break;
	default:
		reply(a, out, cmd.tag, "BAD", ERR_INVALID, NULL, "command not allowed here");
		break;
	}
	return SYNCAPPLY_CONTINUE;
}
