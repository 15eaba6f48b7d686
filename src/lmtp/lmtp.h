/*
 * lmtp.h - lmtpd internals shared by lmtpd.c (process set-up),
 * lmtp_cmd.c (the session: commands and replies) and lmtp_deliver.c
 * (putting a message into the store).
 */
#ifndef CASTOR_LMTP_H
#define CASTOR_LMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/conf.h"
#include "lmtp/lmtp_parse.h"
#include "master/child.h"
#include "store/store.h"

#define LMTP_RCPT_MAX 1000         /* recipients per transaction */
#define LMTP_IDLE_MS (300 * 1000)  /* wait for a command (RFC 5321 4.5.3.2.7: 5 min) */
#define LMTP_COMMAND_MS (300 * 1000) /* lmtp_command_timeout: a command, or a message body */
#define LMTP_DATA_TIMEOUT_MS (600 * 1000)
#define LMTP_UCACHE 16             /* open user databases kept per session */
#define LMTP_REPLY_MAX 300

struct conn;
struct tls_ctx;

/* Process-wide state, set up once by lmtpd_init. */
struct lmtpd {
	const struct conf *conf;
	struct store *st;
	struct tls_ctx *tls;       /* NULL: no STARTTLS, no implicit TLS */
	char servername[256];
	uint64_t maxsize;          /* largest message accepted (as received) */
	bool virtdomains;
	bool dedup;                /* duplicatesuppression */
	int64_t dedup_days;
	int idle_ms;               /* lmtp_idle_timeout: no command for this long */
	int command_ms;            /* lmtp_command_timeout: deadline of a line or a body */
};
extern struct lmtpd lmtpd_g;

struct lmtp_rcpt {
	char path[LMTP_PATH_MAX + 1];          /* as written in RCPT TO */
	char user[STORE_USER_NAME_MAX + 1];
	char detail[LMTP_LOCAL_MAX + 1];
	char reply[LMTP_REPLY_MAX];            /* the reply after DATA/BDAT LAST */
	/* what this recipient's delivery newly stored (uid 0: nothing),
	 * undone when strict semisync refuses it after the commit */
	char stored_mbox[STORE_UNIQUEID_LEN + 1];
	uint32_t stored_uid;
};

struct lmtp_ucache {
	char name[STORE_USER_NAME_MAX + 1];
	struct store_user *u;
	unsigned last_use;
};

struct lmtp_sess {
	struct child_conn *sc;
	struct conn *conn;
	struct buf in;             /* received, not yet used */
	size_t in_used;            /* bytes of `in` the current line occupies */
	char id[32];               /* session id for logs and Received: */
	unsigned ntxn;
	uint64_t cmd_idle_us;      /* the client's idle time before the current command */
	bool lhlo;
	char helo[256];

	/* the transaction */
	bool mail;
	uint64_t txn_idle_us;      /* the client's idle time before MAIL (synchook_idle_hint) */
	char sender[LMTP_PATH_MAX + 1];
	enum lmtp_body body;
	bool smtputf8;             /* MAIL SMTPUTF8 (RFC 6531): Received: says UTF8LMTP */
	bool has_size;
	uint64_t declared_size;
	struct lmtp_rcpt *rcpts;
	size_t nrcpt, caprcpt;
	bool bdat;                 /* BDAT chunks have begun */
	struct buf msg;            /* Return-Path:, Received:, then the message as received */
	size_t hdr_len;            /* bytes of msg that are our added header lines */
	uint64_t msg_size;         /* message bytes received, stored or not */

	struct lmtp_ucache cache[LMTP_UCACHE];
	unsigned use_clock;
};

/* lmtp_cmd.c: serve one connection. */
enum child_end lmtp_session(struct lmtp_sess *s);

/* lmtp_deliver.c */
/* An open handle for user (cached for the session); NULL with err
 * (ERR_NOTFOUND for an unknown user).  recheck: confirm the user still
 * exists in users.db even when a handle is cached. */
struct store_user *lmtp_user_get(struct lmtp_sess *s, const char *user, bool recheck,
	struct err *err);
/* Close every cached handle. */
void lmtp_user_release(struct lmtp_sess *s);
/* RCPT-time quota check: 0 fine, 1 over quota, -1 error. */
int lmtp_quota_check(struct store_user *u, bool has_size, uint64_t size, struct err *err);
/* Start s->msg with the Return-Path: and Received: lines (at DATA or
 * the first BDAT, when sender and recipients are known). */
void lmtp_deliver_prefix(struct lmtp_sess *s);
/* Deliver s->msg to every recipient; fills each rcpt's reply. */
void lmtp_deliver(struct lmtp_sess *s);
/* The reply for a store error kind ("451 4.3.0 ..."). */
void lmtp_store_reply(const struct err *err, char *reply, size_t size);

#endif
