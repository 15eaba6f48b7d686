/*
 * imap_auth.c - LOGIN and AUTHENTICATE PLAIN (with SASL-IR), and what
 * happens at login: the user database is opened and the special-use
 * folders of autocreate_folders are created when missing.
 *
 * The plaintext rule, name folding, verification and the growing delay
 * after failures are session_auth's (src/session/session_auth.h), shared with pop3d.
 * Plaintext passwords are refused on connections that are not TLS
 * unless allowplaintext is on, or allowplaintext_loopback is on and the
 * peer is local: LOGIN then answers NO [PRIVACYREQUIRED] and CAPABILITY
 * says LOGINDISABLED.  A login the shared penalty throttled (its
 * password not checked) answers NO [UNAVAILABLE].
 *
 * Autocreate: a folder of the list is created (with its special-use
 * attribute when its name is one of Sent Drafts Trash Junk Archive, and
 * subscribed) when no mailbox of that name exists and none was ever
 * deleted under that name (a tombstone), so a user who deleted Trash
 * does not get it back at the next login.  Nothing is created on a
 * read-only replica.
 */
#include "imap/imap_session.h"

#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/sasl.h"
#include "lib/str.h"

static const char *
imap_auth_specialuse(const char *name)
{
	static const struct {
		const char *name, *use;
	} map[] = {
		{ "Sent", "\\Sent" }, { "Drafts", "\\Drafts" }, { "Trash", "\\Trash" },
		{ "Junk", "\\Junk" }, { "Archive", "\\Archive" }, { "Spam", "\\Junk" },
		{ "All", "\\All" }, { "Flagged", "\\Flagged" },
	};

	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (str_eq_ci(name, map[i].name))
			return map[i].use;
	return NULL;
}

struct imap_auth_seen {
	const char *want;
	bool found;
};

static int
imap_auth_list_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct imap_auth_seen *seen = ctx;

	(void)attrs;
	(void)mb;
	if (str_eq(name, seen->want))
		seen->found = true;
	return 0;
}

static void
imap_auth_autocreate(struct imap_session *s)
{
	struct err err;

	if (store_is_read_only(imap_cfg.st))
		return;
	for (size_t i = 0; i < imap_cfg.nautocreate; i++) {
		const char *name = imap_cfg.autocreate[i];
		struct imap_auth_seen seen = { name, false };
		struct store_mailbox mb;

		if (store_mailbox_get(s->u, name, &mb, &err) == 0)
			continue;
		if (err.kind != ERR_NOTFOUND)
			goto fail;
		/* a tombstone of that name: the user deleted it, leave it */
		if (store_mailbox_list(s->u, name, STORE_LIST_DELETED | STORE_LIST_NO_PARENTS,
			imap_auth_list_cb, &seen, &err) < 0)
			goto fail;
		if (seen.found)
			continue;
		if (store_mailbox_create(s->u, name, imap_auth_specialuse(name), NULL, &err) < 0) {
			if (err.kind == ERR_EXISTS)
				continue;
			goto fail;
		}
		if (store_subscribe(s->u, name, true, &err) < 0)
			goto fail;
		log_info("autocreated mailbox user=%s mailbox=%s", log_q(s->user), log_q(name));
		continue;
fail:
		log_warn("autocreate failed user=%s mailbox=%s error=%s", log_q(s->user), log_q(name),
			log_q(err.msg));
	}
}

int
imap_auth_finish(struct imap_session *s, const char *user, struct err *err)
{
	struct store_quota q;
	struct err qerr;

	s->u = store_user_open(imap_cfg.st, user, err);
	if (s->u == NULL)
		return -1;
	str_lcpy(s->user, user, sizeof(s->user));
	s->state = IMAP_AUTH;
	imap_auth_autocreate(s);
	if (store_is_read_only(imap_cfg.st))
		imap_puts(s, "* OK [ALERT] This server is a read-only replica: changes are refused\r\n");
	if (store_quota_get(s->u, &q, &qerr) == 0 &&
	    ((q.limit_bytes > 0 && q.used_bytes >= q.limit_bytes / 10 * 9) ||
	     (q.limit_messages > 0 && q.used_messages >= q.limit_messages / 10 * 9)))
		imap_puts(s, "* OK [ALERT] Your mailbox is over 90% of its quota\r\n");
	conn_set_read_timeout(s->conn, imap_cfg.idle_ms);
	return 0;
}

/* Common tail of LOGIN and AUTHENTICATE. */
static void
imap_auth_try(struct imap_session *s, const char *authzid, const char *login, const char *pass,
	const char *what)
{
	char user[STORE_USER_NAME_MAX + 1];
	struct err err;
	struct buf caps = BUF_INIT;
	int rc;

	rc = session_auth_login(&s->auth, imap_cfg.st, imap_cfg.conf, authzid, login, pass, user,
		sizeof(user), &err);
	if (rc < 0) {
		imap_tagged(s, "NO", "UNAVAILABLE", "Temporary failure, try again later");
		return;
	}
	if (rc == 0) {
		if (session_auth_give_up(&s->auth)) {
			imap_puts(s, "* BYE Too many failed logins\r\n");
			s->state = IMAP_LOGOUT;   /* ends the connection after the reply */
		}
		if (s->auth.throttled)        /* the password was not checked */
			imap_tagged(s, "NO", "UNAVAILABLE", "Too many failed logins, try again later");
		else if (s->state == IMAP_LOGOUT)
			imap_tagged(s, "NO", "AUTHENTICATIONFAILED", "%s failed", what);
		else
			imap_tagged(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
		return;
	}
	if (imap_auth_finish(s, user, &err) < 0) {
		log_error("cannot open user user=%s error=%s", log_q(user), log_q(err.msg));
		imap_tagged(s, "NO", "UNAVAILABLE", "Cannot open your mailboxes, try again later");
		return;
	}
	imap_capabilities(s, &caps);
	imap_tagged(s, "OK", NULL, "[CAPABILITY %s] Logged in", buf_cstr(&caps));
	buf_free(&caps);
}

void
imap_cmd_login(struct imap_session *s, struct imap_cmd *c)
{
	if (!session_auth_plaintext_ok(&s->auth, imap_cfg.conf, conn_is_tls(s->conn))) {
		imap_tagged(s, "NO", "PRIVACYREQUIRED", "Plaintext login is disabled: use STARTTLS");
		return;
	}
	if (strlen(c->u.login.user.s) != c->u.login.user.len ||
	    strlen(c->u.login.pass.s) != c->u.login.pass.len) {
		session_auth_failed(&s->auth, "", "NUL in LOGIN arguments");
		imap_tagged(s, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
		return;
	}
	imap_auth_try(s, NULL, c->u.login.user.s, c->u.login.pass.s, "LOGIN");
}

void
imap_cmd_authenticate(struct imap_session *s, struct imap_cmd *c)
{
	struct sasl_plain sp;
	struct err err;
	const char *resp = c->u.auth.ir;
	size_t rlen = resp ? strlen(resp) : 0;

	if (!str_eq_ci(c->u.auth.mech, "PLAIN")) {
		imap_tagged(s, "NO", "CANNOT", "Unsupported authentication mechanism");
		return;
	}
	if (!session_auth_plaintext_ok(&s->auth, imap_cfg.conf, conn_is_tls(s->conn))) {
		imap_tagged(s, "NO", "PRIVACYREQUIRED", "Plaintext authentication is disabled: use STARTTLS");
		return;
	}
	if (resp == NULL) {
		const char *line;
		size_t len;
		int rc;

		imap_puts(s, "+ \r\n");
		if (!imap_flush(s))
			return;
		rc = conn_read_line(s->conn, SASL_PLAIN_B64_MAX + 16, &line, &len, &err);
		if (rc == 0 || (rc < 0 && err.kind != ERR_TOOBIG)) {
			s->fatal = true;
			return;
		}
		if (rc < 0) {
			imap_tagged(s, "BAD", NULL, "Authentication response too long");
			return;
		}
		if (len == 1 && line[0] == '*') {
			imap_tagged(s, "BAD", NULL, "Authentication cancelled");
			return;
		}
		buf_reset(&s->tmp);
		buf_append(&s->tmp, line, len);
		resp = buf_cstr(&s->tmp);
		rlen = len;
	}
	if (rlen == 1 && resp[0] == '=')
		rlen = 0;
	if (sasl_plain_decode(resp, rlen, &sp, &err) < 0) {
		session_auth_failed(&s->auth, "", err.msg);
		if (session_auth_give_up(&s->auth)) {
			imap_puts(s, "* BYE Too many failed logins\r\n");
			s->state = IMAP_LOGOUT;
		}
		imap_tagged(s, "NO", "AUTHENTICATIONFAILED", "Malformed PLAIN response");
		return;
	}
	imap_auth_try(s, sp.authzid, sp.authcid, sp.passwd, "AUTHENTICATE");
	sasl_plain_clear(&sp);
}
