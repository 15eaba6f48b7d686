/*
 * imapd.c - the IMAP service (RFC 3501 with the extensions listed in
 * docs/imap.md): service-skeleton glue, reading commands with their
 * literals, dispatching by state, reply helpers.
 *
 * One process serves one connection at a time (master/child.h).  The
 * main loop: flush, wait for input with child_wait_input() (pre-auth
 * timeout before login, autologout after), read one command with its
 * literals (imapd_read_command: synchronising literals get "+", LITERAL+
 * ones do not; anything over the limits is refused without buffering
 * it), parse it (imap_parse.c), run it, bring the selected mailbox
 * forward (imap_sel_sync), and check the quit checkpoint.
 *
 * Limits: a command line is at most imap_max_line octets (BAD, the
 * session goes on); a command other than APPEND holds at most
 * imap_max_line octets of lines and literals together; an APPEND
 * message at most the APPENDLIMIT (maxmessagesize, else the store's
 * maximum): larger literals get NO [TOOBIG] and are skipped unread
 * (LITERAL+) or never invited (synchronising).  Before login every
 * line and literal is held to preauth_max_line (8 KiB), and a LITERAL+
 * over 64 KiB ends the connection rather than being read and skipped.
 *
 * Deadlines (absolute: a byte arriving does not push them back): login
 * within imap_preauth_timeout of the greeting; each command, once its
 * first byte is in, within imap_command_timeout (plus 1 s per 64 KiB of
 * its literals); after login, autologout after imap_idle_timeout
 * without a command.  A missed deadline gets "* BYE" and a log line
 * "deadline passed service=imapd phase=login|command|idle".
 *
 * An APPEND message over IMAP_APPEND_STREAM_MIN (1 MiB) is not read into
 * the command buffer: it goes piece by piece to an unnamed file of the
 * store (store_blob_tmp) as it arrives, and the command keeps an empty
 * literal {0} in its place; imap_cmd_append then stores the file.
 */
#include "imap/imap_session.h"

#include <errno.h>
#include <malloc.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "castor_config.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "session/session_store.h"
#include "session/session_tls.h"
#include "sync/synchook.h"

struct imap_config imap_cfg;

/* ------------------------------------------------------------------ */
/* output                                                              */

void
imap_puts(struct imap_session *s, const char *str)
{
	conn_puts(s->conn, str);
}

void
imap_write(struct imap_session *s, const void *p, size_t n)
{
	conn_write(s->conn, p, n);
}

void
imap_printf(struct imap_session *s, const char *fmt, ...)
{
	va_list ap;

	buf_reset(&s->tmp);
	va_start(ap, fmt);
	buf_vprintf(&s->tmp, fmt, ap);
	va_end(ap);
	conn_write(s->conn, s->tmp.data, s->tmp.len);
}

void
imap_tagged(struct imap_session *s, const char *status, const char *code, const char *fmt, ...)
{
	va_list ap;
	const char *tag = s->cur != NULL && s->cur->tag != NULL ? s->cur->tag : "*";

	buf_reset(&s->tmp);
	buf_printf(&s->tmp, "%s %s ", tag, status);
	if (code != NULL && code[0] != '\0')
		buf_printf(&s->tmp, "[%s] ", code);
	va_start(ap, fmt);
	buf_vprintf(&s->tmp, fmt, ap);
	va_end(ap);
	/* a reason from below must not break the line */
	for (size_t i = 0; i < s->tmp.len; i++)
		if (s->tmp.data[i] == '\r' || s->tmp.data[i] == '\n' || s->tmp.data[i] == '\0')
			s->tmp.data[i] = ' ';
	buf_puts(&s->tmp, "\r\n");
	buf_reset(&s->tagline);
	buf_append(&s->tagline, s->tmp.data, s->tmp.len);
}

void
imap_tagged_send(struct imap_session *s)
{
	if (s->tagline.len == 0)
		return;
	conn_write(s->conn, s->tagline.data, s->tagline.len);
	buf_reset(&s->tagline);
}

void
imap_tagged_err(struct imap_session *s, const struct err *err, const char *what)
{
	const char *code = NULL;

	switch (err->kind) {
	case ERR_NOTFOUND: code = "NONEXISTENT"; break;
	case ERR_EXISTS: code = "ALREADYEXISTS"; break;
	case ERR_QUOTA: code = "OVERQUOTA"; break;
	case ERR_TOOBIG: code = "TOOBIG"; break;
	case ERR_INVALID: code = "CANNOT"; break;
	case ERR_PERM:
		code = store_is_read_only(imap_cfg.st) ? "READ-ONLY" : "NOPERM";
		break;
	case ERR_FENCED: code = "READ-ONLY"; break;
	case ERR_CORRUPT: code = "SERVERBUG"; break;
	case ERR_TEMP:
	case ERR_NOSPACE:
	case ERR_CONFLICT:
	case ERR_DAMAGED:
	case ERR_NONE:
		code = "UNAVAILABLE";
		break;
	}
	if (err->kind == ERR_CORRUPT || err->kind == ERR_TEMP || err->kind == ERR_NOSPACE)
		log_error("command failed user=%s command=%s error=%s", log_q(s->user), what,
			log_q(err->msg));
	imap_tagged(s, "NO", code, "%s failed: %s", what, err->msg);
}

bool
imap_flush(struct imap_session *s)
{
	struct err err;

	if (s->fatal)
		return false;
	if (conn_flush(s->conn, &err) < 0) {
		log_info("connection lost user=%s peer=%s error=%s", log_q(s->user), log_q(s->sc->peer),
			log_q(err.msg));
		s->fatal = true;
		return false;
	}
	return true;
}

static bool
imap_needs_literal(const char *str, size_t n)
{
	if (n > 1024)
		return true;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)str[i];
		if (c == '\r' || c == '\n' || c == '\0' || c >= 0x80)
			return true;
	}
	return false;
}

void
imap_put_string(struct buf *out, const char *str, size_t n)
{
	if (imap_needs_literal(str, n)) {
		buf_printf(out, "{%zu}\r\n", n);
		buf_append(out, str, n);
		return;
	}
	buf_putc(out, '"');
	for (size_t i = 0; i < n; i++) {
		if (str[i] == '"' || str[i] == '\\')
			buf_putc(out, '\\');
		buf_putc(out, str[i]);
	}
	buf_putc(out, '"');
}

/* ------------------------------------------------------------------ */
/* capabilities                                                        */

static bool
imapd_plaintext_ok(struct imap_session *s)
{
	return session_auth_plaintext_ok(&s->auth, imap_cfg.conf, conn_is_tls(s->conn));
}

void
imap_capabilities(struct imap_session *s, struct buf *out)
{
	buf_puts(out, "IMAP4rev1 IMAP4rev2 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE UNSELECT CHILDREN");
	if (s->state == IMAP_NOTAUTH) {
		if (imap_cfg.tls != NULL && !conn_is_tls(s->conn))
			buf_puts(out, " STARTTLS");
		if (imapd_plaintext_ok(s))
			buf_puts(out, " AUTH=PLAIN");
		else
			buf_puts(out, " LOGINDISABLED");
		return;
	}
	buf_puts(out, " UIDPLUS MOVE SPECIAL-USE CREATE-SPECIAL-USE LIST-EXTENDED LIST-STATUS"
		" ESEARCH CONDSTORE QRESYNC STATUS=SIZE UTF8=ACCEPT");
	buf_puts(out, " MULTIAPPEND CATENATE BINARY");
	buf_puts(out, " SORT SORT=DISPLAY ESORT THREAD=ORDEREDSUBJECT THREAD=REFERENCES");
	buf_puts(out, " QUOTA QUOTA=RES-STORAGE QUOTA=RES-MESSAGE");
	if (!conn_is_compressed(s->conn))
		buf_puts(out, " COMPRESS=DEFLATE");
	buf_printf(out, " APPENDLIMIT=%llu", (unsigned long long)imap_cfg.appendlimit);
}

/* ------------------------------------------------------------------ */
/* commands that need no other file                                     */

static void
imapd_cmd_capability(struct imap_session *s)
{
	struct buf b = BUF_INIT;

	imap_capabilities(s, &b);
	imap_printf(s, "* CAPABILITY %s\r\n", buf_cstr(&b));
	buf_free(&b);
	imap_tagged(s, "OK", NULL, "CAPABILITY completed");
}

static void
imapd_cmd_id(struct imap_session *s, struct imap_cmd *c)
{
	struct buf b = BUF_INIT;

	for (size_t i = 0; i + 1 < c->u.id.nkv; i += 2) {
		if (i > 0)
			buf_putc(&b, ' ');
		buf_printf(&b, "%s=%s", c->u.id.kv[i], c->u.id.kv[i + 1] ? c->u.id.kv[i + 1] : "NIL");
	}
	if (b.len > 0)
		log_info("client id peer=%s id=%s", log_q(s->sc->peer), log_q(buf_cstr(&b)));
	buf_free(&b);
	imap_puts(s, "* ID (\"name\" \"Castor\" \"version\" \"" CASTOR_VERSION "\")\r\n");
	imap_tagged(s, "OK", NULL, "ID completed");
}

static void
imapd_cmd_enable(struct imap_session *s, struct imap_cmd *c)
{
	struct buf b = BUF_INIT;

	for (size_t i = 0; i < c->u.enable.ncaps; i++) {
		const char *cap = c->u.enable.caps[i];

		if (str_eq_ci(cap, "CONDSTORE") && !s->condstore) {
			imap_condstore_enable(s);
			buf_puts(&b, " CONDSTORE");
		} else if (str_eq_ci(cap, "QRESYNC") && !s->qresync) {
			s->qresync = true;
			if (!s->condstore)
				buf_puts(&b, " CONDSTORE");
			imap_condstore_enable(s);
			buf_puts(&b, " QRESYNC");
		} else if (str_eq_ci(cap, "UTF8=ACCEPT") && !s->utf8) {
			s->utf8 = true;
			buf_puts(&b, " UTF8=ACCEPT");
		} else if (str_eq_ci(cap, "IMAP4rev2") && !s->rev2) {
			s->rev2 = true;
			buf_puts(&b, " IMAP4rev2");
		}
	}
	imap_printf(s, "* ENABLED%s\r\n", buf_cstr(&b));
	buf_free(&b);
	imap_tagged(s, "OK", NULL, "ENABLE completed");
}

static void
imapd_cmd_starttls(struct imap_session *s)
{
	struct err err;

	if (imap_cfg.tls == NULL) {
		imap_tagged(s, "NO", "UNAVAILABLE", "TLS is not configured on this server");
		return;
	}
	if (conn_is_tls(s->conn)) {
		imap_tagged(s, "BAD", NULL, "TLS is already active");
		return;
	}
	imap_tagged(s, "OK", NULL, "Begin TLS negotiation now");
	imap_tagged_send(s);
	if (conn_starttls(s->conn, imap_cfg.tls, NULL, &err) < 0) {
		log_notice("starttls failed peer=%s error=%s", log_q(s->sc->peer), log_q(err.msg));
		s->fatal = true;
		return;
	}
	log_debug("starttls peer=%s tls=%s", log_q(s->sc->peer), log_q(conn_tls_desc(s->conn)));
}

/* COMPRESS DEFLATE (RFC 4978): the tagged OK goes out uncompressed,
 * everything after it in both directions is raw DEFLATE (conn.h). */
static void
imapd_cmd_compress(struct imap_session *s, struct imap_cmd *c)
{
	struct err err;

	if (!str_eq_ci(c->u.compress.mech, "DEFLATE")) {
		imap_tagged(s, "NO", "CANNOT", "Unknown compression mechanism");
		return;
	}
	if (conn_is_compressed(s->conn)) {
		imap_tagged(s, "NO", "COMPRESSIONACTIVE", "DEFLATE is already active");
		return;
	}
	imap_tagged(s, "OK", NULL, "DEFLATE active");
	imap_tagged_send(s);
	if (conn_compress_start(s->conn, &err) < 0) {
		log_notice("compress failed user=%s peer=%s error=%s", log_q(s->user),
			log_q(s->sc->peer), log_q(err.msg));
		s->fatal = true;
		return;
	}
	log_debug("compress user=%s peer=%s", log_q(s->user), log_q(s->sc->peer));
}

/* ------------------------------------------------------------------ */
/* dispatch                                                            */

enum { IMAPD_ANY = 0, IMAPD_NOTAUTH, IMAPD_AUTH, IMAPD_SEL };

static int
imapd_cmd_state(enum imap_cmd_kind k)
{
	switch (k) {
	case IMAP_CMD_CAPABILITY:
	case IMAP_CMD_NOOP:
	case IMAP_CMD_LOGOUT:
	case IMAP_CMD_ID:
		return IMAPD_ANY;
	case IMAP_CMD_STARTTLS:
	case IMAP_CMD_AUTHENTICATE:
	case IMAP_CMD_LOGIN:
		return IMAPD_NOTAUTH;
	case IMAP_CMD_SELECT:
	case IMAP_CMD_EXAMINE:
	case IMAP_CMD_CREATE:
	case IMAP_CMD_DELETE:
	case IMAP_CMD_RENAME:
	case IMAP_CMD_SUBSCRIBE:
	case IMAP_CMD_UNSUBSCRIBE:
	case IMAP_CMD_LIST:
	case IMAP_CMD_LSUB:
	case IMAP_CMD_STATUS:
	case IMAP_CMD_APPEND:
	case IMAP_CMD_NAMESPACE:
	case IMAP_CMD_ENABLE:
	case IMAP_CMD_IDLE:
	case IMAP_CMD_GETQUOTA:
	case IMAP_CMD_GETQUOTAROOT:
	case IMAP_CMD_SETQUOTA:
	case IMAP_CMD_COMPRESS:
		return IMAPD_AUTH;
	default:
		return IMAPD_SEL;
	}
}

/* Does a CLOSE of the selected mailbox expunge anything (as far as this
 * session's snapshot knows)? */
static bool
imapd_close_expunges(const struct imap_session *s)
{
	const struct store_snapshot *snap = s->sel.snap;

	if (s->state != IMAP_SELECTED || s->sel.readonly || snap == NULL)
		return false;
	for (size_t i = 0; i < snap->n; i++)
		if (!snap->recs[i].expunged && (snap->recs[i].sysflags & STORE_FLAG_DELETED))
			return true;
	return false;
}

/* The commands a client asks to change the store with.  Strict semisync
 * admits them before they run; others change at most what nobody asked
 * for (autocreated folders at LOGIN, \Seen by FETCH). */
static bool
imapd_cmd_changes(const struct imap_session *s, const struct imap_cmd *c)
{
	switch (c->kind) {
	case IMAP_CMD_APPEND:
	case IMAP_CMD_STORE:
	case IMAP_CMD_EXPUNGE:
	case IMAP_CMD_UID_EXPUNGE:
	case IMAP_CMD_COPY:
	case IMAP_CMD_MOVE:
	case IMAP_CMD_CREATE:
	case IMAP_CMD_DELETE:
	case IMAP_CMD_RENAME:
	case IMAP_CMD_SUBSCRIBE:
	case IMAP_CMD_UNSUBSCRIBE:
		return true;
	case IMAP_CMD_CLOSE:
		return imapd_close_expunges(s);
	default:
		return false;
	}
}

/* Strict semisync with no live replica: refuse a change before it is
 * made (synchook_admit).  true when the command may run. */
static bool
imapd_admit(struct imap_session *s, const struct imap_cmd *c)
{
	struct err err;

	s->cmd_changes = imapd_cmd_changes(s, c);
	if (!s->cmd_changes || synchook_admit(imap_cfg.st, &err) == 0)
		return true;
	log_warn("change refused user=%s command=%s error=%s", log_q(s->user), c->name,
		log_q(err.msg));
	imap_tagged(s, "NO", "UNAVAILABLE", "Nothing changed: %s, try again later", err.msg);
	return false;
}

static void
imapd_dispatch(struct imap_session *s, struct imap_cmd *c)
{
	int need = imapd_cmd_state(c->kind);

	s->undo_mailbox[0] = '\0';
	s->undo_uids.n = 0;
	s->cmd_changes = false;
	if (need == IMAPD_NOTAUTH && s->state != IMAP_NOTAUTH) {
		imap_tagged(s, "BAD", NULL, "Already logged in");
		return;
	}
	if (need == IMAPD_AUTH && s->state == IMAP_NOTAUTH) {
		imap_tagged(s, "BAD", NULL, "Please log in first");
		return;
	}
	if (need == IMAPD_SEL && s->state != IMAP_SELECTED) {
		imap_tagged(s, "BAD", NULL, s->state == IMAP_NOTAUTH ? "Please log in first" :
			"No mailbox selected");
		return;
	}
	if (!imapd_admit(s, c))
		return;
	switch (c->kind) {
	case IMAP_CMD_CAPABILITY: imapd_cmd_capability(s); break;
	case IMAP_CMD_NOOP: imap_tagged(s, "OK", NULL, "NOOP completed"); break;
	case IMAP_CMD_CHECK: imap_tagged(s, "OK", NULL, "CHECK completed"); break;
	case IMAP_CMD_LOGOUT:
		imap_puts(s, "* BYE Castor IMAP server logging out\r\n");
		imap_tagged(s, "OK", NULL, "LOGOUT completed");
		s->state = IMAP_LOGOUT;
		break;
	case IMAP_CMD_ID: imapd_cmd_id(s, c); break;
	case IMAP_CMD_STARTTLS: imapd_cmd_starttls(s); break;
	case IMAP_CMD_LOGIN: imap_cmd_login(s, c); break;
	case IMAP_CMD_AUTHENTICATE: imap_cmd_authenticate(s, c); break;
	case IMAP_CMD_SELECT:
	case IMAP_CMD_EXAMINE: imap_cmd_select(s, c); break;
	case IMAP_CMD_CREATE: imap_cmd_create(s, c); break;
	case IMAP_CMD_DELETE: imap_cmd_delete(s, c); break;
	case IMAP_CMD_RENAME: imap_cmd_rename(s, c); break;
	case IMAP_CMD_SUBSCRIBE:
	case IMAP_CMD_UNSUBSCRIBE: imap_cmd_subscribe(s, c); break;
	case IMAP_CMD_LIST:
	case IMAP_CMD_LSUB: imap_cmd_list(s, c); break;
	case IMAP_CMD_STATUS: imap_cmd_status(s, c); break;
	case IMAP_CMD_APPEND: imap_cmd_append(s, c); break;
	case IMAP_CMD_NAMESPACE: imap_cmd_namespace(s, c); break;
	case IMAP_CMD_ENABLE: imapd_cmd_enable(s, c); break;
	case IMAP_CMD_IDLE: imap_cmd_idle(s, c); break;
	case IMAP_CMD_COMPRESS: imapd_cmd_compress(s, c); break;
	case IMAP_CMD_CLOSE: imap_cmd_close(s, c); break;
	case IMAP_CMD_UNSELECT: imap_cmd_unselect(s, c); break;
	case IMAP_CMD_EXPUNGE:
	case IMAP_CMD_UID_EXPUNGE: imap_cmd_expunge(s, c); break;
	case IMAP_CMD_SEARCH: imap_cmd_search(s, c); break;
	case IMAP_CMD_SORT: imap_cmd_sort(s, c); break;
	case IMAP_CMD_THREAD: imap_cmd_thread(s, c); break;
	case IMAP_CMD_FETCH: imap_cmd_fetch(s, c); break;
	case IMAP_CMD_STORE: imap_cmd_store(s, c); break;
	case IMAP_CMD_COPY:
	case IMAP_CMD_MOVE: imap_cmd_copy(s, c); break;
	case IMAP_CMD_GETQUOTA: imap_cmd_getquota(s, c); break;
	case IMAP_CMD_GETQUOTAROOT: imap_cmd_getquotaroot(s, c); break;
	case IMAP_CMD_SETQUOTA: imap_cmd_setquota(s, c); break;
	}
}

/* A refused APPEND: expunge what it stored (store_append_undo) and say
 * NO.  Should the undo fail, the message stays and the NO says so. */
static void
imapd_append_undo(struct imap_session *s, const struct err *why)
{
	struct err err;

	if (store_append_undo(s->u, s->undo_mailbox, s->undo_uids.v, s->undo_uids.n, &err) < 0) {
		log_error("append not confirmed, undo failed user=%s uid=%u count=%zu error=%s",
			log_q(s->user), s->undo_uids.v[0], s->undo_uids.n, log_q(err.msg));
		imap_tagged(s, "NO", "UNAVAILABLE", "Stored here but not confirmed by a replica: %s",
			why->msg);
		return;
	}
	log_warn("append not confirmed, undone user=%s uid=%u count=%zu error=%s", log_q(s->user),
		s->undo_uids.v[0], s->undo_uids.n, log_q(why->msg));
	imap_tagged(s, "NO", "UNAVAILABLE", "Not stored: %s, try again later", why->msg);
}

/* sync_mode semisync: a change is acknowledged only once a replica has
 * it (synchook.h).  Returns at once when this command changed nothing; in
 * async mode it may wait a little when the client was idle before the
 * command anyway (sync_async_wait).  What nobody asked to change
 * (autocreated folders, FETCH's \Seen) is not waited for.  When the
 * wait fails (strict semisync: the replica was live when the command
 * was admitted but did not confirm in time), see docs/decisions.md:
 * an APPEND is undone and answered NO [UNAVAILABLE]; any other change
 * loses no mail if a failover loses it, so it is kept and answered OK
 * after an untagged warning, never NO over a change that stays. */
static void
imapd_replication_wait(struct imap_session *s)
{
	struct err err;
	const char *sp;

	if (s->tagline.len == 0)
		return;
	sp = memchr(s->tagline.data, ' ', s->tagline.len);
	if (sp == NULL || strncmp(sp, " OK", 3) != 0)
		return;
	if (s->cur == NULL || !s->cmd_changes) {
		synchook_forget(imap_cfg.st);
		return;
	}
	synchook_idle_hint(imap_cfg.st, s->cmd_idle_us);
	if (synchook_wait(imap_cfg.st, &err) == 0)
		return;
	if (s->undo_mailbox[0] != '\0' && s->undo_uids.n > 0) {
		imapd_append_undo(s, &err);
		return;
	}
	log_warn("replication not confirmed, change kept user=%s command=%s error=%s",
		log_q(s->user), s->cur->name, log_q(err.msg));
	imap_puts(s, "* OK Change made here, not yet confirmed by a replica\r\n");
}

/* ------------------------------------------------------------------ */
/* reading a command                                                   */

enum { IMAPD_READ_EOF = 0, IMAPD_READ_CMD = 1, IMAPD_READ_HANDLED = 2, IMAPD_READ_FAIL = -1 };

static void
imapd_untagged_reply(struct imap_session *s, const char *tag, const char *status, const char *code,
	const char *text)
{
	imap_printf(s, "%s %s %s%s%s%s\r\n", tag, status, code ? "[" : "", code ? code : "",
		code ? "] " : "", text);
}

/* After refusing a command in the middle of its literals: read and drop
 * the rest of it (further LITERAL+ literals are skipped; a synchronising
 * one ends the command, since the client waits for a "+" it will not
 * get).  0, or -1 when the connection failed. */
static int
imapd_discard_rest(struct imap_session *s)
{
	const char *line;
	size_t len;
	uint64_t n;
	bool sync;
	struct err err;

	for (int i = 0; i < 1000; i++) {
		int rc = conn_read_line(s->conn, imap_cfg.max_line, &line, &len, &err);

		if (rc == 0)
			return -1;
		if (rc < 0 && err.kind != ERR_TOOBIG)
			return -1;
		if (rc < 0)
			continue;
		if (imap_parse_literal_tail(line, len, &n, &sync) != 1 || sync)
			return 0;
		if (conn_skip(s->conn, n, &err) < 0)
			return -1;
	}
	return -1;
}

/* The longest line (and non-APPEND command) the session's state allows. */
static size_t
imapd_max_line(const struct imap_session *s)
{
	return s->state == IMAP_NOTAUTH ? imap_cfg.preauth_max : imap_cfg.max_line;
}

/* The deadline reads of the current command run under. */
static int64_t
imapd_read_deadline(const struct imap_session *s)
{
	if (s->state == IMAP_NOTAUTH)
		return conn_deadline_min(s->login_deadline, s->cmd_deadline);
	return s->cmd_deadline;
}

/* A literal of n octets is coming: the command may take longer by what
 * n needs at IMAP_LITERAL_MIN_RATE (never past the login deadline). */
static void
imapd_literal_deadline(struct imap_session *s, uint64_t n)
{
	s->cmd_deadline += (int64_t)(n / IMAP_LITERAL_MIN_RATE) * 1000;
	conn_set_read_deadline(s->conn, imapd_read_deadline(s));
}

/* A deadline passed (phase login, command or idle): say BYE, log it. */
static void
imapd_deadline_bye(struct imap_session *s, const char *phase)
{
	if (strcmp(phase, "login") == 0)
		imap_puts(s, "* BYE Autologout; login not completed in time\r\n");
	else if (strcmp(phase, "idle") == 0)
		imap_puts(s, "* BYE Autologout; idle for too long\r\n");
	else
		imap_puts(s, "* BYE Command not completed in time\r\n");
	(void)imap_flush(s);
	log_notice("deadline passed service=imapd phase=%s peer=%s user=%s", phase,
		log_q(s->sc->peer), log_q(s->user));
}

/* Read the n octets of an APPEND message literal into a file of the
 * store instead of the command buffer, whose literal becomes {0}: one
 * over IMAP_APPEND_STREAM_MIN, or any once the buffer holds
 * IMAP_APPEND_MEM_MAX (MULTIAPPEND), but not a CATENATE TEXT part.
 * 1 streamed, 0 not possible (read it as usual), -1 connection lost. */
static bool
imapd_stream_wanted(const struct imap_session *s, uint64_t n)
{
	uint64_t mem_max = imap_cfg.appendlimit < IMAP_APPEND_MEM_MAX ? imap_cfg.appendlimit :
		IMAP_APPEND_MEM_MAX;

	return s->u != NULL && s->append_ntmp < IMAP_APPEND_TMP_MAX &&
	       (n >= IMAP_APPEND_STREAM_MIN || s->cmdbuf.len + n > mem_max) &&
	       !imap_parse_is_cat_text(s->cmdbuf.data, s->cmdbuf.len);
}

static int
imapd_stream_literal(struct imap_session *s, uint64_t n)
{
	struct err err;
	struct store_blob_tmp *t = NULL;
	char *brace;

	if (!imapd_stream_wanted(s, n))
		return 0;
	brace = memrchr(s->cmdbuf.data, '{', s->cmdbuf.len);
	if (brace == NULL)
		return 0;
	if (store_blob_tmp_open(s->u, &t, &err) < 0) {
		log_warn("large APPEND read into memory user=%s size=%llu error=%s", log_q(s->user),
			(unsigned long long)n, log_q(err.msg));
		return 0;
	}
	buf_truncate(&s->cmdbuf, (size_t)(brace - s->cmdbuf.data));
	buf_puts(&s->cmdbuf, "{0}\r\n");
	if (s->append_tmp == NULL)
		s->append_tmp = xcalloc(IMAP_APPEND_TMP_MAX, sizeof(*s->append_tmp));
	s->append_tmp[s->append_ntmp].tmp = t;
	s->append_tmp[s->append_ntmp++].off = s->cmdbuf.len;
	while (n > 0) {
		const char *p;
		size_t len;
		int rc = conn_read_some(s->conn, n < CONN_READ_CHUNK * 4 ? (size_t)n : CONN_READ_CHUNK * 4,
			&p, &len, &err);

		if (rc <= 0) {
			log_debug("literal read failed peer=%s error=%s", log_q(s->sc->peer),
				rc == 0 ? "end of input" : log_q(err.msg));
			return -1;
		}
		store_blob_tmp_write(t, p, len);
		n -= len;
	}
	return 1;
}

static int
imapd_read_command(struct imap_session *s)
{
	const char *line;
	size_t len;
	uint64_t n, limit, total_limit;
	bool sync, is_append = false, first = true;
	char tag[64] = "*";
	struct err err;
	size_t maxl = imapd_max_line(s);
	int rc;

	buf_reset(&s->cmdbuf);
	for (;;) {
		rc = conn_read_line(s->conn, maxl, &line, &len, &err);
		if (rc == 0)
			return IMAPD_READ_EOF;
		if (rc < 0) {
			if (err.kind != ERR_TOOBIG) {
				log_debug("read failed peer=%s error=%s", log_q(s->sc->peer), log_q(err.msg));
				return IMAPD_READ_FAIL;
			}
			if (first)
				imap_parse_peek_tag(line, len, tag, sizeof(tag));
			imapd_untagged_reply(s, tag, "BAD", NULL, "Command line too long");
			buf_reset(&s->cmdbuf);
			return IMAPD_READ_HANDLED;
		}
		if (first) {
			imap_parse_peek_tag(line, len, tag, sizeof(tag));
			/* the large APPEND allowance is for logged-in users only */
			is_append = s->state != IMAP_NOTAUTH && imap_parse_is_append(line, len);
			first = false;
		}
		buf_append(&s->cmdbuf, line, len);
		rc = imap_parse_literal_tail(line, len, &n, &sync);
		if (rc == 0)
			return IMAPD_READ_CMD;
		if (rc < 0) {
			if (sync) {
				imapd_untagged_reply(s, tag, "BAD", NULL, "Invalid literal size");
				return IMAPD_READ_HANDLED;
			}
			imap_puts(s, "* BYE Invalid literal size\r\n");
			return IMAPD_READ_FAIL;
		}
		limit = is_append ? imap_cfg.appendlimit : maxl;
		total_limit = is_append ? imap_cfg.appendlimit + maxl : maxl;
		if (n > limit ||
		    (s->cmdbuf.len + n > total_limit && !(is_append && imapd_stream_wanted(s, n)))) {
			imapd_untagged_reply(s, tag, "NO", "TOOBIG",
				is_append ? "Message too large" : "Literal too large");
			buf_reset(&s->cmdbuf);
			if (s->state == IMAP_NOTAUTH) {
				log_notice("literal refused before login service=imapd peer=%s size=%llu"
					" limit=%zu", log_q(s->sc->peer), (unsigned long long)n, maxl);
				if (!sync && n > IMAP_PREAUTH_SKIP_MAX) {
					/* too large to skip: not read at all, the connection ends */
					imap_puts(s, "* BYE Literal too large before login\r\n");
					return IMAPD_READ_FAIL;
				}
			}
			if (!sync) {
				if (conn_skip(s->conn, n, &err) < 0 || imapd_discard_rest(s) < 0)
					return IMAPD_READ_FAIL;
			}
			return IMAPD_READ_HANDLED;
		}
		if (sync && is_append && imap_append_refuse_early(s, tag)) {
			buf_reset(&s->cmdbuf);
			return IMAPD_READ_HANDLED;
		}
		if (sync) {
			imap_puts(s, "+ Ready for literal data\r\n");
			if (!imap_flush(s))
				return IMAPD_READ_FAIL;
		}
		imapd_literal_deadline(s, n);
		rc = is_append ? imapd_stream_literal(s, n) : 0;
		if (rc < 0)
			return IMAPD_READ_FAIL;
		if (rc > 0)
			continue;
		if (s->cmdbuf.len + n > total_limit) {
			/* meant for a file that could not be opened: not held either */
			imapd_untagged_reply(s, tag, "NO", "TOOBIG", "Message too large");
			buf_reset(&s->cmdbuf);
			if (conn_skip(s->conn, n, &err) < 0 || imapd_discard_rest(s) < 0)
				return IMAPD_READ_FAIL;
			return IMAPD_READ_HANDLED;
		}
		buf_append(&s->cmdbuf, "\r\n", 2);
		if (conn_read_exact(s->conn, (size_t)n, &s->cmdbuf, &err) < 0) {
			log_debug("literal read failed peer=%s error=%s", log_q(s->sc->peer),
				log_q(err.msg));
			return IMAPD_READ_FAIL;
		}
	}
}

/* ------------------------------------------------------------------ */
/* the connection                                                      */

static void
imapd_session_free(struct imap_session *s)
{
	if (s->state == IMAP_SELECTED)
		imap_sel_close(s);
	imap_append_tmp_free(s);
	store_uids_free(&s->undo_uids);
	if (s->u != NULL)
		store_user_close(&s->u);
	conn_free(&s->conn);
	buf_free(&s->cmdbuf);
	buf_free(&s->tmp);
	buf_free(&s->tagline);
	free(s);
}

static int
imapd_timeout(struct imap_session *s)
{
	return s->state == IMAP_NOTAUTH ? imap_cfg.preauth_ms : imap_cfg.idle_ms;
}

/* Give memory back between connections (a prefork child lives long). */
static void
imapd_trim(void)
{
	malloc_trim(0);
}

static enum child_end
imapd_handle(struct child_conn *sc)
{
	struct imap_session *s = xcalloc(1, sizeof(*s));
	struct err err;
	struct buf caps = BUF_INIT;
	enum child_end end = CHILD_END_DONE;
	int rfd, wfd;

	/* the skeleton closes sc's fds; the conn owns duplicates */
	rfd = dup(sc->rfd);
	wfd = sc->wfd == sc->rfd ? rfd : dup(sc->wfd);
	if (rfd < 0 || wfd < 0) {
		log_error("dup failed error=%s", log_q(strerror(errno)));
		if (rfd >= 0)
			close(rfd);
		free(s);
		return CHILD_END_DONE;
	}
	s->sc = sc;
	sc->ctx = s;
	s->conn = conn_new(rfd, wfd);
	conn_set_write_timeout(s->conn, IMAP_WRITE_TIMEOUT_MS);
	conn_set_read_timeout(s->conn, imap_cfg.preauth_ms);
	s->login_deadline = clock_mono_ms() + imap_cfg.preauth_ms;
	/* the TLS handshake of an implicit-TLS connection counts as login time */
	conn_set_read_deadline(s->conn, s->login_deadline);
	session_auth_init(&s->auth, "imapd", sc->peer, sc->loopback);

	if (session_store_check_role(imap_cfg.st, &err) < 0)
		log_warn("cannot read the server role error=%s", log_q(err.msg));
	if (sc->tls) {
		if (imap_cfg.tls == NULL) {
			log_notice("implicit TLS connection refused: no certificate peer=%s", log_q(sc->peer));
			goto out;
		}
		if (conn_starttls(s->conn, imap_cfg.tls, NULL, &err) < 0) {
			if (conn_read_deadline_passed(s->conn))
				log_notice("deadline passed service=imapd phase=login peer=%s in=tls-handshake",
					log_q(sc->peer));
			else
				log_notice("TLS handshake failed peer=%s error=%s", log_q(sc->peer),
					log_q(err.msg));
			goto out;
		}
	}
	imap_capabilities(s, &caps);
	imap_printf(s, "* OK [CAPABILITY %s] Castor IMAP4rev1 server ready\r\n", buf_cstr(&caps));
	buf_free(&caps);

	while (!s->fatal && s->state != IMAP_LOGOUT) {
		struct imap_cmd cmd;
		int rc;

		if (!imap_flush(s))
			break;
		imap_append_tmp_free(s);   /* the last command's, if any */
		if (s->cmdbuf.cap > 4 * imap_cfg.max_line) {
			/* do not keep an APPEND's buffer while idle */
			buf_free(&s->cmdbuf);
		}
		s->cmd_idle_us = 0;
		if (conn_pending_input(s->conn) == 0) {
			bool notauth = s->state == IMAP_NOTAUTH;
			int w = child_wait_input(conn_rfd(s->conn),
				notauth ? conn_ms_until(s->login_deadline) : imap_cfg.idle_ms);

			s->cmd_idle_us = child_last_wait_us();
			if (w == CHILD_WAIT_QUIT) {
				end = CHILD_END_QUIT;
				break;
			}
			if (w == CHILD_WAIT_TIMEOUT) {
				imapd_deadline_bye(s, notauth ? "login" : "idle");
				break;
			}
		}
		/* the command's first byte is in (or pipelined): its deadline runs */
		s->cmd_deadline = clock_mono_ms() + imap_cfg.command_ms;
		conn_set_read_deadline(s->conn, imapd_read_deadline(s));
		conn_set_read_timeout(s->conn, imapd_timeout(s));
		rc = imapd_read_command(s);
		if (rc == IMAPD_READ_EOF || rc == IMAPD_READ_FAIL)
			break;
		if (rc == IMAPD_READ_HANDLED)
			goto checkpoint;
		if (imap_parse_command(s->cmdbuf.data, s->cmdbuf.len, &cmd, &err) < 0) {
			char tag[64];

			if (cmd.tag != NULL)
				str_lcpy(tag, cmd.tag, sizeof(tag));
			else
				str_lcpy(tag, "*", sizeof(tag));
			imap_printf(s, "%s BAD %s\r\n", tag, err.msg);
			imap_cmd_free(&cmd);
			goto checkpoint;
		}
		s->cur = &cmd;
		s->ncommands++;
		imapd_dispatch(s, &cmd);
		imapd_replication_wait(s);
		if (s->state == IMAP_SELECTED && !s->fatal) {
			bool restrained = !cmd.uid && (cmd.kind == IMAP_CMD_FETCH ||
				cmd.kind == IMAP_CMD_STORE || cmd.kind == IMAP_CMD_SEARCH ||
				cmd.kind == IMAP_CMD_SORT || cmd.kind == IMAP_CMD_THREAD);
			imap_sel_sync(s, !restrained, NULL);
		}
		imap_tagged_send(s);
		s->cur = NULL;
		imap_cmd_free(&cmd);
		if (s->idle_timeout)
			break;
checkpoint:
		if (s->quit || child_quit_requested()) {
			end = CHILD_END_QUIT;
			break;
		}
	}
	if (end == CHILD_END_QUIT)
		return end;   /* imapd_goodbye says BYE and frees */
	if (conn_read_deadline_passed(s->conn))
		imapd_deadline_bye(s, s->state == IMAP_NOTAUTH &&
			s->login_deadline <= s->cmd_deadline ? "login" : "command");
	imap_flush(s);
out:
	log_debug("connection closed user=%s peer=%s commands=%llu", log_q(s->user), log_q(sc->peer),
		(unsigned long long)s->ncommands);
	sc->ctx = NULL;
	imapd_session_free(s);
	imapd_trim();
	return end;
}

static void
imapd_goodbye(struct child_conn *sc)
{
	struct imap_session *s = sc->ctx;

	if (s == NULL)
		return;
	if (!s->fatal) {
		conn_set_write_timeout(s->conn, 2000);
		imap_puts(s, "* BYE Server shutting down\r\n");
		imap_flush(s);
	}
	sc->ctx = NULL;
	imapd_session_free(s);
	imapd_trim();
}

static int
imapd_init(const struct conf *conf, struct err *err)
{
	struct err terr;
	uint64_t maxmsg;

	imap_cfg.conf = conf;
	/* Memory per connection: large buffers (snapshots of big mailboxes,
	 * APPEND literals) are mapped and unmapped rather than kept in the
	 * heap, and SQLite's page caches share a bound. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	mallopt(M_TRIM_THRESHOLD, 256 * 1024);
	sqlite3_soft_heap_limit64(IMAP_SQLITE_HEAP_LIMIT);
	/* SQLite's default lookaside is 120 KiB per database connection, and
	 * a session holds two (users.db, the user's): keep it small.  Only
	 * possible before SQLite initialises, which is why it is here. */
	sqlite3_config(SQLITE_CONFIG_LOOKASIDE, 64, 64);
	imap_cfg.preauth_ms = (int)conf_get_duration_ms(conf, "imap_preauth_timeout",
		IMAP_PREAUTH_TIMEOUT_MS);
	imap_cfg.idle_ms = (int)conf_get_duration_ms(conf, "imap_idle_timeout", IMAP_IDLE_TIMEOUT_MS);
	if (imap_cfg.preauth_ms <= 0)
		imap_cfg.preauth_ms = IMAP_PREAUTH_TIMEOUT_MS;
	if (imap_cfg.idle_ms <= 0)
		imap_cfg.idle_ms = IMAP_IDLE_TIMEOUT_MS;
	imap_cfg.command_ms = (int)conf_get_duration_ms(conf, "imap_command_timeout",
		IMAP_COMMAND_TIMEOUT_MS);
	if (imap_cfg.command_ms <= 0)
		imap_cfg.command_ms = IMAP_COMMAND_TIMEOUT_MS;
	imap_cfg.max_line = (size_t)conf_get_bytes(conf, "imap_max_line", IMAP_MAX_LINE_DEFAULT);
	if (imap_cfg.max_line < 1024)
		imap_cfg.max_line = 1024;
	imap_cfg.preauth_max = (size_t)conf_get_bytes(conf, "preauth_max_line", IMAP_PREAUTH_MAX_DEFAULT);
	if (imap_cfg.preauth_max < 1024)
		imap_cfg.preauth_max = 1024;
	if (imap_cfg.preauth_max > imap_cfg.max_line)
		imap_cfg.preauth_max = imap_cfg.max_line;
	maxmsg = conf_get_bytes(conf, "maxmessagesize", 0);
	imap_cfg.appendlimit = maxmsg == 0 || maxmsg > STORE_MESSAGE_MAX ? STORE_MESSAGE_MAX : maxmsg;
	if (conf_has(conf, "autocreate_folders")) {
		imap_cfg.autocreate = conf_get_list(conf, "autocreate_folders", &imap_cfg.nautocreate);
	} else {
		static const char *const def[] = { "Sent", "Drafts", "Trash", "Junk", "Archive" };

		imap_cfg.autocreate = xcalloc(6, sizeof(char *));
		for (size_t i = 0; i < 5; i++)
			imap_cfg.autocreate[i] = xstrdup(def[i]);
		imap_cfg.nautocreate = 5;
	}
	imap_cfg.st = session_store_open(conf, err);
	if (imap_cfg.st == NULL)
		return -1;
	imap_cfg.tls = session_tls_server_ctx(conf, &terr);
	if (imap_cfg.tls == NULL)
		log_warn("no TLS for imapd (STARTTLS not offered) error=%s", log_q(terr.msg));
	return 0;
}

static void
imapd_fini(void)
{
	if (imap_cfg.st != NULL)
		store_close(&imap_cfg.st);
	tls_ctx_free(&imap_cfg.tls);
	conf_list_free(imap_cfg.autocreate);
	imap_cfg.autocreate = NULL;
}

/* castord reloaded: a renewed certificate for the next connections. */
static void
imapd_reload(const struct conf *conf)
{
	session_tls_reload(&imap_cfg.tls, conf);
}

static const struct child_ops imapd_ops = {
	.name = "imapd",
	.init = imapd_init,
	.handle = imapd_handle,
	.goodbye = imapd_goodbye,
	.fini = imapd_fini,
	.reload = imapd_reload,
};

int
main(int argc, char **argv)
{
	return child_main(argc, argv, &imapd_ops);
}
