/*
 * imap_append.c - APPEND (RFC 3501 6.3.11) with UIDPLUS APPENDUID and
 * APPENDLIMIT (RFC 7889).
 *
 * The message arrives as a literal that imapd has already read into the
 * command buffer (within the APPENDLIMIT: larger ones are refused before
 * a byte of them is buffered, see imapd.c); it is handed to the store
 * as it is, without a copy.  A message over 1 MiB was streamed to a file
 * instead (s->append_tmp, its literal left empty) and the store takes
 * that file.  The store makes it durable before we
 * answer OK.  A missing mailbox is NO [TRYCREATE], a full quota
 * NO [OVERQUOTA], a read-only replica NO [READ-ONLY].  With a
 * synchronising literal the missing mailbox is found before the "+"
 * (imap_append_refuse_early), so the message is never sent (RFC 3501
 * 7.5); a LITERAL+ message arrives anyway and is refused after.
 */
#include "imap/imap_session.h"

#include <stdio.h>

#include "lib/log.h"
#include "lib/str.h"

bool
imap_append_refuse_early(struct imap_session *s, const char *tag)
{
	struct imap_arena a = { 0 };
	struct imap_str mbox;
	struct buf name = BUF_INIT;
	struct store_mailbox mb;
	struct err err;
	bool refused = false;

	if (s->u == NULL || s->state == IMAP_NOTAUTH)
		return false;
	if (imap_parse_append_mailbox(s->cmdbuf.data, s->cmdbuf.len, &a, &mbox) == 1 &&
	    imap_name_decode(s, &mbox, &name, &err) == 0 &&
	    store_mailbox_get(s->u, buf_cstr(&name), &mb, &err) < 0 && err.kind == ERR_NOTFOUND) {
		imap_printf(s, "%s NO [TRYCREATE] No such mailbox\r\n", tag);
		refused = true;
	}
	imap_arena_free(&a);
	buf_free(&name);
	return refused;
}

void
imap_cmd_append(struct imap_session *s, struct imap_cmd *c)
{
	const struct imap_append_args *a = &c->u.append;
	struct buf name = BUF_INIT, kw = BUF_INIT;
	struct store_mailbox mb;
	struct store_append_msg msg;
	struct store_append_result res;
	uint32_t sys = 0, uidvalidity = 0;
	struct err err;
	size_t len = a->len;

	if (s->append_tmp != NULL) {
		/* the streamed literal must be the message's, left empty */
		if (a->len != 0) {
			imap_tagged(s, "BAD", NULL, "Invalid APPEND");
			goto out;
		}
		len = (size_t)store_blob_tmp_size(s->append_tmp);
	}
	if (imap_name_decode(s, &a->mailbox, &name, &err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", err.msg);
		goto out;
	}
	if (a->flags != NULL && store_flags_parse(a->flags, &sys, &kw, &err) < 0) {
		imap_tagged(s, "BAD", NULL, "Invalid flags: %s", err.msg);
		goto out;
	}
	if (len == 0) {
		imap_tagged(s, "NO", "CANNOT", "Empty message");
		goto out;
	}
	if (len > imap_cfg.appendlimit) {
		imap_tagged(s, "NO", "TOOBIG", "Message too large");
		goto out;
	}
	if (store_mailbox_get(s->u, buf_cstr(&name), &mb, &err) < 0) {
		if (err.kind == ERR_NOTFOUND)
			imap_tagged(s, "NO", "TRYCREATE", "No such mailbox");
		else
			imap_tagged_err(s, &err, "APPEND");
		goto out;
	}
	msg.data = a->data;
	msg.len = len;
	msg.internaldate = a->has_date ? a->date : 0;
	if (a->has_date && msg.internaldate == 0)
		msg.internaldate = 1;   /* 0 would mean "now" */
	msg.sysflags = sys;
	msg.keywords = kw.len > 0 ? buf_cstr(&kw) : NULL;
	if ((s->append_tmp != NULL ?
	     store_append_tmp(s->u, mb.uniqueid, &msg, s->append_tmp, &res, &uidvalidity, &err) :
	     store_append(s->u, mb.uniqueid, &msg, 1, &res, &uidvalidity, &err)) < 0) {
		imap_tagged_err(s, &err, "APPEND");
		goto out;
	}
	log_debug("append user=%s mailbox=%s uid=%u size=%zu", log_q(s->user), log_q(mb.name),
		res.uid, len);
	{
		char code[64];

		str_lcpy(s->undo_mailbox, mb.uniqueid, sizeof(s->undo_mailbox));
		s->undo_uid = res.uid;
		snprintf(code, sizeof(code), "APPENDUID %u %u", uidvalidity, res.uid);
		imap_tagged(s, "OK", code, "APPEND completed");
	}
out:
	buf_free(&name);
	buf_free(&kw);
}
