/*
 * imap_quota.c - GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208).
 *
 * A user has one quota root, named "" (the empty string), that covers
 * every mailbox.  Its resources are STORAGE (in units of 1024 octets,
 * usage and limit each rounded up) and MESSAGE; the limits are the
 * user's own (castorctl user quota, users.db) or else castor.conf's
 * quota_default_bytes / quota_default_messages (store_quota_get).  A
 * resource without a limit is left out of the QUOTA response; a user
 * with no limit at all has no quota root: GETQUOTAROOT lists none and
 * GETQUOTA "" answers NO [NONEXISTENT].
 *
 * Limits are the administrator's: SETQUOTA is refused with NO [NOPERM]
 * (and QUOTASET is not advertised).  Nothing here writes, so all three
 * behave the same on a read-only replica.
 */
#include "imap/imap_session.h"

#include "lib/buf.h"

/* "(STORAGE used limit MESSAGE used limit)" for the limited resources;
 * false when there is none. */
static bool
imap_quota_list(const struct store_quota *q, struct buf *out)
{
	bool any = false;

	buf_putc(out, '(');
	if (q->limit_bytes != 0) {
		buf_printf(out, "STORAGE %llu %llu",
			(unsigned long long)((q->used_bytes + 1023) / 1024),
			(unsigned long long)((q->limit_bytes + 1023) / 1024));
		any = true;
	}
	if (q->limit_messages != 0) {
		buf_printf(out, "%sMESSAGE %llu %llu", any ? " " : "",
			(unsigned long long)q->used_messages,
			(unsigned long long)q->limit_messages);
		any = true;
	}
	buf_putc(out, ')');
	return any;
}

/* The untagged QUOTA response for root "", if the user has a limit.
 * Returns 1 sent, 0 no limit, -1 error (err set). */
static int
imap_quota_send(struct imap_session *s, struct err *err)
{
	struct store_quota q;
	struct buf line = BUF_INIT;
	int rc = 0;

	if (store_quota_get(s->u, &q, err) < 0)
		return -1;
	buf_puts(&line, "* QUOTA \"\" ");
	if (imap_quota_list(&q, &line)) {
		buf_puts(&line, "\r\n");
		imap_write(s, line.data, line.len);
		rc = 1;
	}
	buf_free(&line);
	return rc;
}

void
imap_cmd_getquota(struct imap_session *s, struct imap_cmd *c)
{
	struct err err;
	int rc;

	if (c->u.mailbox.len != 0) {
		imap_tagged(s, "NO", "NONEXISTENT", "No such quota root (the only one is \"\")");
		return;
	}
	rc = imap_quota_send(s, &err);
	if (rc < 0)
		imap_tagged_err(s, &err, "GETQUOTA");
	else if (rc == 0)
		imap_tagged(s, "NO", "NONEXISTENT", "No quota limit applies to this user");
	else
		imap_tagged(s, "OK", NULL, "GETQUOTA completed");
}

void
imap_cmd_getquotaroot(struct imap_session *s, struct imap_cmd *c)
{
	struct buf name = BUF_INIT, line = BUF_INIT;
	struct store_mailbox mb;
	struct store_quota q;
	struct buf list = BUF_INIT;
	struct err err;

	if (imap_name_decode(s, &c->u.mailbox, &name, &err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", err.msg);
		goto out;
	}
	if (store_mailbox_get(s->u, buf_cstr(&name), &mb, &err) < 0 ||
	    store_quota_get(s->u, &q, &err) < 0) {
		imap_tagged_err(s, &err, "GETQUOTAROOT");
		goto out;
	}
	buf_puts(&line, "* QUOTAROOT ");
	imap_name_put(s, &line, mb.name);
	buf_puts(&list, "* QUOTA \"\" ");
	if (imap_quota_list(&q, &list)) {
		buf_puts(&line, " \"\"\r\n");
		buf_puts(&list, "\r\n");
		buf_append(&line, list.data, list.len);
	} else {
		buf_puts(&line, "\r\n");
	}
	imap_write(s, line.data, line.len);
	imap_tagged(s, "OK", NULL, "GETQUOTAROOT completed");
out:
	buf_free(&name);
	buf_free(&line);
	buf_free(&list);
}

void
imap_cmd_setquota(struct imap_session *s, struct imap_cmd *c)
{
	(void)c;
	imap_tagged(s, "NO", "NOPERM",
		"Quota limits are set by the administrator (castorctl user quota)");
}
