/*
 * imap_mailbox.c - mailbox-level commands: CREATE (with CREATE-SPECIAL-
 * USE), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST (RFC 3501 and
 * LIST-EXTENDED RFC 5258: selection options SUBSCRIBED, SPECIAL-USE,
 * RECURSIVEMATCH, REMOTE; return options SUBSCRIBED, CHILDREN,
 * SPECIAL-USE, STATUS (LIST-STATUS RFC 5819)), LSUB, STATUS, NAMESPACE;
 * and the conversion of names between the wire (modified UTF-7, or
 * UTF-8 after ENABLE UTF8=ACCEPT) and the store (UTF-8).
 *
 * One personal namespace, no prefix, '/' as the separator.  LIST always
 * reports \HasChildren / \HasNoChildren and the special-use attributes
 * (both are allowed without being asked for); a parent that does not
 * exist but has children is \Noselect (\NonExistent in extended LIST).
 */
#include "imap/imap_session.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "imap/imap_utf7.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/rfc2047.h"

/* ------------------------------------------------------------------ */
/* names                                                               */

int
imap_name_decode(struct imap_session *s, const struct imap_str *wire, struct buf *out,
	struct err *err)
{
	bool eight = false;

	buf_reset(out);
	if (memchr(wire->s, '\0', wire->len) != NULL)
		return err_set(err, ERR_INVALID, "NUL in mailbox name");
	for (size_t i = 0; i < wire->len; i++)
		if ((unsigned char)wire->s[i] >= 0x80)
			eight = true;
	if (s->utf8 || s->rev2 || eight) {
		/* UTF8=ACCEPT or IMAP4rev2, or a client that sends raw UTF-8 */
		if (!rfc2047_is_utf8(wire->s, wire->len))
			return err_set(err, ERR_INVALID, "mailbox name is not valid UTF-8");
		buf_append(out, wire->s, wire->len);
		return 0;
	}
	if (imap_utf7_decode(wire->s, wire->len, out) < 0)
		return err_set(err, ERR_INVALID, "mailbox name is not valid modified UTF-7");
	return 0;
}

void
imap_name_put(struct imap_session *s, struct buf *out, const char *name)
{
	size_t n = strlen(name);

	if (s->utf8 || s->rev2) {
		imap_put_string(out, name, n);
		return;
	}
	buf_reset(&s->tmp);
	if (imap_utf7_encode(name, n, &s->tmp) < 0) {
		/* the store validates names as UTF-8; never here */
		buf_reset(&s->tmp);
		buf_append(&s->tmp, name, n);
	}
	imap_put_string(out, s->tmp.data, s->tmp.len);
}

/* ------------------------------------------------------------------ */
/* CREATE DELETE RENAME SUBSCRIBE                                      */

void
imap_cmd_create(struct imap_session *s, struct imap_cmd *c)
{
	struct buf name = BUF_INIT;
	const char *use = c->u.create.specialuse;
	struct err err;

	if (imap_name_decode(s, &c->u.create.mailbox, &name, &err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", err.msg);
		goto out;
	}
	if (name.len > 0 && name.data[name.len - 1] == '/')
		buf_truncate(&name, name.len - 1);   /* "foo/" creates foo (RFC 3501) */
	if (name.len == 0) {
		imap_tagged(s, "NO", "CANNOT", "Empty mailbox name");
		goto out;
	}
	if (store_mailbox_create_parents(s->u, buf_cstr(&name), &err) < 0 ||
	    store_mailbox_create(s->u, buf_cstr(&name), use, NULL, &err) < 0) {
		if (err.kind == ERR_INVALID && use != NULL && use[0] != '\0')
			imap_tagged(s, "NO", "USEATTR", "CREATE failed: %s", err.msg);
		else
			imap_tagged_err(s, &err, "CREATE");
		goto out;
	}
	imap_tagged(s, "OK", NULL, "CREATE completed");
out:
	buf_free(&name);
}

void
imap_cmd_delete(struct imap_session *s, struct imap_cmd *c)
{
	struct buf name = BUF_INIT;
	struct store_mailbox mb;
	struct err err;

	if (imap_name_decode(s, &c->u.mailbox, &name, &err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", err.msg);
		goto out;
	}
	if (store_mailbox_get(s->u, buf_cstr(&name), &mb, &err) < 0) {
		imap_tagged_err(s, &err, "DELETE");
		goto out;
	}
	if (store_mailbox_delete(s->u, buf_cstr(&name), &err) < 0) {
		imap_tagged_err(s, &err, "DELETE");
		goto out;
	}
	if (s->state == IMAP_SELECTED && str_eq(s->sel.mailbox_id, mb.uniqueid)) {
		imap_sel_close(s);
		imap_puts(s, "* OK [CLOSED] The selected mailbox was deleted\r\n");
	}
	imap_tagged(s, "OK", NULL, "DELETE completed");
out:
	buf_free(&name);
}

void
imap_cmd_rename(struct imap_session *s, struct imap_cmd *c)
{
	struct buf from = BUF_INIT, to = BUF_INIT;
	struct store_mailbox mb;
	struct err err;

	if (imap_name_decode(s, &c->u.rename.from, &from, &err) < 0 ||
	    imap_name_decode(s, &c->u.rename.to, &to, &err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", err.msg);
		goto out;
	}
	if (to.len > 0 && to.data[to.len - 1] == '/')
		buf_truncate(&to, to.len - 1);
	if (store_mailbox_get(s->u, buf_cstr(&from), &mb, &err) < 0 ||
	    store_mailbox_create_parents(s->u, buf_cstr(&to), &err) < 0 ||
	    store_mailbox_rename(s->u, buf_cstr(&from), buf_cstr(&to), &err) < 0) {
		imap_tagged_err(s, &err, "RENAME");
		goto out;
	}
	if (s->state == IMAP_SELECTED &&
	    store_mailbox_get_id(s->u, s->sel.mailbox_id, false, &mb, &err) == 0)
		str_lcpy(s->sel.name, mb.name, sizeof(s->sel.name));
	imap_tagged(s, "OK", NULL, "RENAME completed");
out:
	buf_free(&from);
	buf_free(&to);
}

void
imap_cmd_subscribe(struct imap_session *s, struct imap_cmd *c)
{
	bool on = c->kind == IMAP_CMD_SUBSCRIBE;
	struct buf name = BUF_INIT;
	struct err err;

	if (imap_name_decode(s, &c->u.mailbox, &name, &err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", err.msg);
		goto out;
	}
	if (store_subscribe(s->u, buf_cstr(&name), on, &err) < 0) {
		imap_tagged_err(s, &err, c->name);
		goto out;
	}
	imap_tagged(s, "OK", NULL, "%s completed", c->name);
out:
	buf_free(&name);
}

void
imap_cmd_namespace(struct imap_session *s, struct imap_cmd *c)
{
	(void)c;
	imap_puts(s, "* NAMESPACE ((\"\" \"/\")) NIL NIL\r\n");
	imap_tagged(s, "OK", NULL, "NAMESPACE completed");
}

/* ------------------------------------------------------------------ */
/* STATUS                                                              */

/* "(MESSAGES n ...)" for the items asked. */
static void
imap_status_items(struct imap_session *s, struct buf *out, unsigned items,
	const struct store_status *st)
{
	bool first = true;

#define IMAP_ST_ITEM(bit, fmt, val) do { \
		if (items & (bit)) { \
			buf_printf(out, "%s" fmt, first ? "" : " ", val); \
			first = false; \
		} \
	} while (0)
	buf_putc(out, '(');
	IMAP_ST_ITEM(IMAP_ST_MESSAGES, "MESSAGES %u", st->messages);
	IMAP_ST_ITEM(IMAP_ST_RECENT, "RECENT %u", st->recent);
	IMAP_ST_ITEM(IMAP_ST_UIDNEXT, "UIDNEXT %u", st->uidnext);
	IMAP_ST_ITEM(IMAP_ST_UIDVALIDITY, "UIDVALIDITY %u", st->uidvalidity);
	IMAP_ST_ITEM(IMAP_ST_UNSEEN, "UNSEEN %u", st->unseen);
	IMAP_ST_ITEM(IMAP_ST_HIGHESTMODSEQ, "HIGHESTMODSEQ %llu", (unsigned long long)st->highestmodseq);
	IMAP_ST_ITEM(IMAP_ST_SIZE, "SIZE %llu", (unsigned long long)st->size);
	IMAP_ST_ITEM(IMAP_ST_APPENDLIMIT, "APPENDLIMIT %llu", (unsigned long long)imap_cfg.appendlimit);
#undef IMAP_ST_ITEM
	buf_putc(out, ')');
	(void)s;
}

void
imap_cmd_status(struct imap_session *s, struct imap_cmd *c)
{
	struct buf name = BUF_INIT, line = BUF_INIT;
	struct store_status st;
	struct err err;

	if (imap_name_decode(s, &c->u.status.mailbox, &name, &err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", err.msg);
		goto out;
	}
	if (store_mailbox_status(s->u, buf_cstr(&name), &st, &err) < 0) {
		imap_tagged_err(s, &err, "STATUS");
		goto out;
	}
	if (c->u.status.items & IMAP_ST_HIGHESTMODSEQ)
		imap_condstore_enable(s);
	buf_puts(&line, "* STATUS ");
	imap_name_put(s, &line, buf_cstr(&name));
	buf_putc(&line, ' ');
	imap_status_items(s, &line, c->u.status.items, &st);
	buf_puts(&line, "\r\n");
	imap_write(s, line.data, line.len);
	imap_tagged(s, "OK", NULL, "STATUS completed");
out:
	buf_free(&name);
	buf_free(&line);
}

/* ------------------------------------------------------------------ */
/* LIST / LSUB                                                         */

struct imap_list_ctx {
	struct imap_session *s;
	const struct imap_list_args *a;
	bool lsub;
	char **seen;           /* names already listed (several patterns) */
	size_t nseen;
	bool dedup;
	struct buf line;
	int rc;
	struct err err;
};

static void
imap_list_attr(struct buf *b, bool *first, const char *attr)
{
	buf_puts(b, *first ? "" : " ");
	buf_puts(b, attr);
	*first = false;
}

static int
imap_list_cb(void *vctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct imap_list_ctx *ctx = vctx;
	struct imap_session *s = ctx->s;
	const struct imap_list_args *a = ctx->a;
	struct buf *b = &ctx->line;
	bool first = true, nonexistent = (attrs & STORE_MBATTR_NONEXISTENT) || mb == NULL;

	if ((a->sel & IMAP_LSEL_SPECIALUSE) && (mb == NULL || mb->specialuse[0] == '\0'))
		return 0;
	if (ctx->dedup) {
		for (size_t i = 0; i < ctx->nseen; i++)
			if (str_eq(ctx->seen[i], name))
				return 0;
		ctx->seen = xreallocarray(ctx->seen, ctx->nseen + 1, sizeof(*ctx->seen));
		ctx->seen[ctx->nseen++] = xstrdup(name);
	}
	buf_reset(b);
	buf_puts(b, ctx->lsub ? "* LSUB (" : "* LIST (");
	if (ctx->lsub && !(attrs & STORE_MBATTR_SUBSCRIBED))
		/* not subscribed, but a subscribed child the pattern cut off (RFC 3501 6.3.9) */
		imap_list_attr(b, &first, "\\Noselect");
	else if (nonexistent)
		imap_list_attr(b, &first, a->extended ? "\\NonExistent" : "\\Noselect");
	if (!ctx->lsub) {
		if (attrs & STORE_MBATTR_HASCHILDREN)
			imap_list_attr(b, &first, "\\HasChildren");
		else if (attrs & STORE_MBATTR_HASNOCHILDREN)
			imap_list_attr(b, &first, "\\HasNoChildren");
		if ((attrs & STORE_MBATTR_SUBSCRIBED) &&
		    ((a->ret & IMAP_LRET_SUBSCRIBED) || (a->sel & IMAP_LSEL_SUBSCRIBED)))
			imap_list_attr(b, &first, "\\Subscribed");
		if (mb != NULL && mb->specialuse[0] != '\0')
			imap_list_attr(b, &first, mb->specialuse);
	}
	buf_puts(b, ") \"/\" ");
	imap_name_put(s, b, name);
	if (!ctx->lsub && (attrs & STORE_MBATTR_CHILDSUBSCRIBED))
		buf_puts(b, " (\"CHILDINFO\" (\"SUBSCRIBED\"))");   /* RFC 5258 3.5 */
	buf_puts(b, "\r\n");
	if ((a->ret & IMAP_LRET_STATUS) && mb != NULL && !nonexistent) {
		struct store_status st;

		if (store_mailbox_status_id(s->u, mb->uniqueid, &st, &ctx->err) == 0) {
			buf_puts(b, "* STATUS ");
			imap_name_put(s, b, name);
			buf_putc(b, ' ');
			imap_status_items(s, b, a->status_items, &st);
			buf_puts(b, "\r\n");
		}
	}
	imap_write(s, b->data, b->len);
	return 0;
}

void
imap_cmd_list(struct imap_session *s, struct imap_cmd *c)
{
	const struct imap_list_args *a = &c->u.list;
	struct imap_list_ctx ctx;
	struct buf ref = BUF_INIT, pat = BUF_INIT, full = BUF_INIT;
	bool lsub = c->kind == IMAP_CMD_LSUB;
	unsigned flags;
	int rc = 0;

	memset(&ctx, 0, sizeof(ctx));
	ctx.s = s;
	ctx.a = a;
	ctx.lsub = lsub;
	ctx.dedup = a->npatterns > 1;
	if ((a->ret & IMAP_LRET_STATUS) && (a->status_items & IMAP_ST_HIGHESTMODSEQ))
		imap_condstore_enable(s);
	if (imap_name_decode(s, &a->ref, &ref, &ctx.err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", ctx.err.msg);
		goto out;
	}
	flags = (lsub || (a->sel & IMAP_LSEL_SUBSCRIBED)) ? STORE_LIST_SUBSCRIBED : 0;
	if (lsub)
		flags |= STORE_LIST_NO_PARENTS | STORE_LIST_CHILDINFO;
	if ((a->sel & IMAP_LSEL_SUBSCRIBED) && (a->sel & IMAP_LSEL_RECURSIVEMATCH))
		flags |= STORE_LIST_CHILDINFO;
	for (size_t i = 0; i < a->npatterns; i++) {
		/* a pattern is no name: one that is not modified UTF-7 (or
		 * UTF-8) matches nothing, and says so with OK */
		if (imap_name_decode(s, &a->patterns[i], &pat, &ctx.err) < 0)
			continue;
		if (pat.len == 0 && !lsub && a->npatterns == 1) {
			/* the hierarchy delimiter and root (RFC 3501 6.3.8) */
			imap_puts(s, "* LIST (\\Noselect) \"/\" \"\"\r\n");
			continue;
		}
		buf_reset(&full);
		buf_append(&full, ref.data, ref.len);
		buf_append(&full, pat.data, pat.len);
		rc = store_mailbox_list(s->u, buf_cstr(&full), flags, imap_list_cb, &ctx, &ctx.err);
		if (rc < 0)
			break;
	}
	if (rc < 0)
		imap_tagged_err(s, &ctx.err, c->name);
	else
		imap_tagged(s, "OK", NULL, "%s completed", c->name);
out:
	for (size_t i = 0; i < ctx.nseen; i++)
		free(ctx.seen[i]);
	free(ctx.seen);
	buf_free(&ctx.line);
	buf_free(&ref);
	buf_free(&pat);
	buf_free(&full);
}
