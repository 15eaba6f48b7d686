/*
 * imap_rev2.c - what a session does differently once the client has
 * sent ENABLE IMAP4rev2 (RFC 9051).  The switches themselves are small
 * and live where the behaviour is (s->rev2): no RECENT responses and no
 * \Recent (imap_session.c), SEARCH answered with ESEARCH
 * (imap_search.c), mailbox names in UTF-8 (imap_mailbox.c).  This file
 * holds the one piece with code of its own: the LIST response a rev2
 * SELECT/EXAMINE must include.  docs/imap.md lists what of RFC 9051
 * appendix E is done and what is not.
 */
#include "imap/imap_session.h"

#include <string.h>

#include "lib/log.h"
#include "lib/str.h"

struct imap_rev2_list {
	struct imap_session *s;
	const char *name;
	struct buf line;
};

static int
imap_rev2_list_cb(void *vctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct imap_rev2_list *ctx = vctx;
	struct buf *b = &ctx->line;
	bool first = true;

	/* the name may hold '*' or '%': only the exact one counts */
	if (!str_eq(name, ctx->name) || mb == NULL)
		return 0;
	buf_reset(b);
	buf_puts(b, "* LIST (");
	if (attrs & STORE_MBATTR_HASCHILDREN) {
		buf_puts(b, "\\HasChildren");
		first = false;
	} else if (attrs & STORE_MBATTR_HASNOCHILDREN) {
		buf_puts(b, "\\HasNoChildren");
		first = false;
	}
	if (attrs & STORE_MBATTR_SUBSCRIBED) {
		buf_puts(b, first ? "\\Subscribed" : " \\Subscribed");
		first = false;
	}
	if (mb->specialuse[0] != '\0') {
		buf_puts(b, first ? "" : " ");
		buf_puts(b, mb->specialuse);
	}
	buf_puts(b, ") \"/\" ");
	imap_name_put(ctx->s, b, name);
	buf_puts(b, "\r\n");
	imap_write(ctx->s, b->data, b->len);
	return 0;
}

void
imap_rev2_select_list(struct imap_session *s)
{
	struct imap_rev2_list ctx = { s, s->sel.name, BUF_INIT };
	struct err err;

	/* a failure here costs the client one untagged line, not the SELECT */
	if (store_mailbox_list(s->u, s->sel.name, 0, imap_rev2_list_cb, &ctx, &err) < 0)
		log_warn("select: list failed user=%s mailbox=%s error=%s", log_q(s->user),
			log_q(s->sel.name), log_q(err.msg));
	buf_free(&ctx.line);
}
