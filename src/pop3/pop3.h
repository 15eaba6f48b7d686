/*
 * pop3.h - pop3d internals shared by pop3d.c (process set-up),
 * pop3_cmd.c (the session) and pop3_drop.c (the maildrop: lock,
 * message list, UPDATE).
 */
#ifndef CASTOR_POP3_H
#define CASTOR_POP3_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/conf.h"
#include "lib/err.h"
#include "master/child.h"
#include "store/store.h"

#define POP3_IDLE_MS (600 * 1000)        /* RFC 1939: autologout at least 10 minutes */
#define POP3_IO_TIMEOUT_MS (300 * 1000)
#define POP3_PREAUTH_MS (60 * 1000)      /* pop3_preauth_timeout */
#define POP3_COMMAND_MS (300 * 1000)     /* pop3_command_timeout */

struct conn;
struct tls_ctx;

struct pop3d {
	const struct conf *conf;
	struct store *st;
	struct tls_ctx *tls;
	char servername[256];
	int preauth_ms;     /* deadline from the greeting to login */
	int command_ms;     /* deadline of a command line once it started */
	int idle_ms;        /* autologout after login */
};
extern struct pop3d pop3d_g;

struct pop3_msg {
	uint32_t uid;
	uint64_t size;
	char guid[STORE_GUID_LEN + 1];
	bool deleted;
};

/* A locked maildrop (the user's INBOX as it was at login). */
struct pop3_drop {
	struct store_user *u;
	char user[STORE_USER_NAME_MAX + 1];
	char mbox_id[STORE_UNIQUEID_LEN + 1];
	uint32_t uidvalidity;
	struct pop3_msg *m;
	size_t n;
	size_t ndeleted;
	uint64_t size_live;       /* octets of messages not marked deleted */
	int lock_fd;
};

/* Lock and load user's maildrop.  0; 1 when another session holds it
 * ([IN-USE]); -1 with err. */
int pop3_drop_open(struct pop3_drop *d, struct store *st, const char *user, struct err *err);
/* UPDATE: expunge the messages marked deleted, all or nothing.  0 with
 * *expunged_r the number removed, or -1 with err (nothing removed). */
int pop3_drop_update(struct pop3_drop *d, size_t *expunged_r, struct err *err);
/* Unlock and free (no UPDATE). */
void pop3_drop_close(struct pop3_drop *d);
/* The UIDL of message i: "<uidvalidity>.<uid>", the same on a replica. */
void pop3_drop_uidl(const struct pop3_drop *d, size_t i, char *out, size_t size);

/* pop3_cmd.c: serve one connection. */
struct pop3_sess;
enum child_end pop3_session(struct child_conn *sc, struct conn *conn);

#endif
