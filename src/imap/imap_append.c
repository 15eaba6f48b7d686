/*
 * imap_append.c - APPEND (RFC 3501 6.3.11) with UIDPLUS APPENDUID,
 * APPENDLIMIT (RFC 7889), MULTIAPPEND (RFC 3502), CATENATE (RFC 4469,
 * imap_catenate.c) and literal8 messages (BINARY, RFC 3516).
 *
 * Each message arrives as a literal that imapd has already read into the
 * command buffer (within the APPENDLIMIT: larger ones are refused before
 * a byte of them is buffered, see imapd.c); it is handed to the store
 * as it is, without a copy.  A message over 1 MiB, and any message once
 * the buffer holds IMAP_APPEND_MEM_MAX, was streamed to a file instead
 * (s->append_tmp[k], its literal left empty at a known offset) and the
 * store takes that file.  A CATENATE result is built in memory or, when
 * large, in a file the same way.
 *
 * All or nothing: every message is checked (flags, size, CATENATE URLs)
 * before anything is stored, and several messages are stored in one
 * store transaction (store_txn_begin ... commit), so a refusal leaves no
 * message behind; APPENDUID then carries the uid set.  The store makes
 * the messages durable, and logs them for the replicas, before we
 * answer OK.  A missing mailbox is NO [TRYCREATE], a full quota
 * NO [OVERQUOTA], a read-only replica NO [READ-ONLY].  With a
 * synchronising literal the missing mailbox is found before the "+"
 * (imap_append_refuse_early), so the message is never sent (RFC 3501
 * 7.5); a LITERAL+ message arrives anyway and is refused after.
 */
#include "imap/imap_session.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_catenate.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

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
imap_append_tmp_free(struct imap_session *s)
{
	for (size_t k = 0; k < s->append_ntmp; k++)
		store_blob_tmp_free(&s->append_tmp[k].tmp);
	s->append_ntmp = 0;
	free(s->append_tmp);
	s->append_tmp = NULL;
}

/* One message ready for the store. */
struct imap_append_one {
	struct store_append_msg msg;
	struct buf kw;
	struct store_blob_tmp *tmp;   /* the octets are in this file (streamed, or cat.tmp) */
	struct imap_cat_out cat;      /* a CATENATE result */
};

/* The streamed file whose empty literal is m's, or NULL. */
static struct store_blob_tmp *
imap_append_find_tmp(struct imap_session *s, const struct imap_append_msg *m, size_t *used)
{
	if (m->parts != NULL || m->len != 0)
		return NULL;
	for (size_t k = 0; k < s->append_ntmp; k++) {
		if (s->cmdbuf.data + s->append_tmp[k].off == m->data) {
			(*used)++;
			return s->append_tmp[k].tmp;
		}
	}
	return NULL;
}

/* Check message m and make it ready (o).  0, or -1 with the tagged
 * reply set. */
static int
imap_append_prepare(struct imap_session *s, const struct imap_append_msg *m,
	struct imap_append_one *o, size_t *used)
{
	uint32_t sys = 0;
	uint64_t len;
	struct err err;

	if (m->flags != NULL && store_flags_parse(m->flags, &sys, &o->kw, &err) < 0) {
		imap_tagged(s, "BAD", NULL, "Invalid flags: %s", err.msg);
		return -1;
	}
	if (m->parts != NULL) {
		if (imap_catenate_build(s, m, &o->cat) < 0)
			return -1;
		o->tmp = o->cat.tmp;
		o->msg.data = o->cat.mem.data;
		len = o->cat.len;
	} else {
		o->tmp = imap_append_find_tmp(s, m, used);
		o->msg.data = m->data;
		len = o->tmp != NULL ? store_blob_tmp_size(o->tmp) : m->len;
	}
	if (len == 0) {
		imap_tagged(s, "NO", "CANNOT", "Empty message");
		return -1;
	}
	if (len > imap_cfg.appendlimit) {
		imap_tagged(s, "NO", "TOOBIG", "Message too large");
		return -1;
	}
	o->msg.len = (size_t)len;
	o->msg.internaldate = m->has_date ? m->date : 0;
	if (m->has_date && o->msg.internaldate == 0)
		o->msg.internaldate = 1;   /* 0 would mean "now" */
	o->msg.sysflags = sys;
	o->msg.keywords = o->kw.len > 0 ? buf_cstr(&o->kw) : NULL;
	return 0;
}

static int
imap_append_store_one(struct imap_session *s, const struct store_mailbox *mb,
	struct imap_append_one *o, struct store_append_result *res, uint32_t *uidvalidity,
	struct err *err)
{
	if (o->tmp != NULL)
		return store_append_tmp(s->u, mb->uniqueid, &o->msg, o->tmp, res, uidvalidity, err);
	return store_append(s->u, mb->uniqueid, &o->msg, 1, res, uidvalidity, err);
}

/* Store every message: one call for one, one transaction for several
 * (MULTIAPPEND is all or nothing).  0, or -1 with err. */
static int
imap_append_store_all(struct imap_session *s, const struct store_mailbox *mb,
	struct imap_append_one *o, size_t n, struct store_append_result *res, uint32_t *uidvalidity,
	struct err *err)
{
	if (n == 1)
		return imap_append_store_one(s, mb, &o[0], &res[0], uidvalidity, err);
	if (store_txn_begin(s->u, err) < 0)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (imap_append_store_one(s, mb, &o[i], &res[i], uidvalidity, err) < 0) {
			store_txn_rollback(s->u);
			return -1;
		}
	}
	return store_txn_commit(s->u, err);
}

void
imap_cmd_append(struct imap_session *s, struct imap_cmd *c)
{
	const struct imap_append_args *a = &c->u.append;
	struct imap_append_one *o = xcalloc(a->nmsgs, sizeof(*o));
	struct store_append_result *res = xcalloc(a->nmsgs, sizeof(*res));
	struct buf name = BUF_INIT, code = BUF_INIT;
	struct store_mailbox mb;
	uint32_t uidvalidity = 0;
	struct err err;
	size_t used = 0, total = 0;

	if (imap_name_decode(s, &a->mailbox, &name, &err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", err.msg);
		goto out;
	}
	for (size_t i = 0; i < a->nmsgs; i++)
		if (imap_append_prepare(s, &a->msgs[i], &o[i], &used) < 0)
			goto out;
	if (used != s->append_ntmp) {
		/* a streamed literal must be a message's, left empty */
		imap_tagged(s, "BAD", NULL, "Invalid APPEND");
		goto out;
	}
	if (store_mailbox_get(s->u, buf_cstr(&name), &mb, &err) < 0) {
		if (err.kind == ERR_NOTFOUND)
			imap_tagged(s, "NO", "TRYCREATE", "No such mailbox");
		else
			imap_tagged_err(s, &err, "APPEND");
		goto out;
	}
	if (imap_append_store_all(s, &mb, o, a->nmsgs, res, &uidvalidity, &err) < 0) {
		imap_tagged_err(s, &err, "APPEND");
		goto out;
	}
	str_lcpy(s->undo_mailbox, mb.uniqueid, sizeof(s->undo_mailbox));
	s->undo_uids.n = 0;
	for (size_t i = 0; i < a->nmsgs; i++) {
		store_uids_add(&s->undo_uids, res[i].uid);
		total += o[i].msg.len;
	}
	log_debug("append user=%s mailbox=%s uid=%u count=%zu size=%zu", log_q(s->user),
		log_q(mb.name), res[0].uid, a->nmsgs, total);
	buf_printf(&code, "APPENDUID %u ", uidvalidity);
	imap_put_set(&code, s->undo_uids.v, s->undo_uids.n);
	imap_tagged(s, "OK", buf_cstr(&code), "APPEND completed");
out:
	buf_free(&code);
	for (size_t i = 0; i < a->nmsgs; i++) {
		buf_free(&o[i].kw);
		imap_cat_out_free(&o[i].cat);
	}
	free(o);
	free(res);
	buf_free(&name);
}
