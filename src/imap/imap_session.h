/*
 * imap_session.h - imapd's internal interface: the per-connection
 * session, the process-wide configuration, reply helpers, and the
 * command handlers each imap_*.c file provides.
 *
 * State (RFC 3501 section 3): NOTAUTH -> AUTH (LOGIN/AUTHENTICATE) ->
 * SELECTED (SELECT/EXAMINE) -> AUTH (CLOSE/UNSELECT/failed SELECT) ...
 * LOGOUT ends the connection.  In SELECTED the session holds a store
 * snapshot of the mailbox (sequence numbers = snapshot index + 1) and
 * moves it forward only at the points RFC 3501 allows: imap_sel_sync()
 * after each command, with expunges reported (EXPUNGE / VANISHED) only
 * when the command was not FETCH, STORE or SEARCH.
 */
#ifndef CASTOR_IMAP_SESSION_H
#define CASTOR_IMAP_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "imap/imap_parse.h"
#include "lib/buf.h"
#include "lib/conf.h"
#include "lib/conn.h"
#include "lib/err.h"
#include "master/child.h"
#include "store/store.h"
#include "session/session_auth.h"

struct tls_ctx;

/* Defaults (castor.conf keys in parentheses). */
#define IMAP_PREAUTH_TIMEOUT_MS (60 * 1000)        /* imap_preauth_timeout */
#define IMAP_IDLE_TIMEOUT_MS (30 * 60 * 1000)      /* imap_idle_timeout */
#define IMAP_MAX_LINE_DEFAULT (64 * 1024)          /* imap_max_line */
#define IMAP_PREAUTH_MAX_DEFAULT (8 * 1024)        /* preauth_max_line */
#define IMAP_PREAUTH_SKIP_MAX (64 * 1024)          /* a larger refused LITERAL+ ends the session */
#define IMAP_COMMAND_TIMEOUT_MS (5 * 60 * 1000)    /* imap_command_timeout */
#define IMAP_LITERAL_MIN_RATE (64 * 1024)          /* bytes/s a literal's deadline allows */
#define IMAP_APPEND_STREAM_MIN (1024 * 1024)       /* larger APPEND messages go to a file as they come */
#define IMAP_APPEND_MEM_MAX (4 * 1024 * 1024)      /* MULTIAPPEND: buffered octets past which messages are streamed */
#define IMAP_APPEND_TMP_MAX 256                    /* streamed messages of one APPEND (open files) */
#define IMAP_WRITE_TIMEOUT_MS (5 * 60 * 1000)
#define IMAP_SQLITE_HEAP_LIMIT (1024 * 1024)       /* soft limit on SQLite's heap per process */

/* Process-wide settings, read once at start (imapd.c). */
struct imap_config {
	const struct conf *conf;
	struct store *st;
	struct tls_ctx *tls;            /* NULL: no STARTTLS, implicit TLS refused */
	int preauth_ms;                 /* deadline from the greeting to login */
	int idle_ms;
	int command_ms;                 /* deadline of one command's lines and literals */
	size_t max_line;                /* a command line, and a non-APPEND command in all */
	size_t preauth_max;             /* the same before login */
	uint64_t appendlimit;           /* largest APPEND message */
	char **autocreate;              /* folder names created at login */
	size_t nautocreate;
};
extern struct imap_config imap_cfg;

enum imap_state {
	IMAP_NOTAUTH = 0,
	IMAP_AUTH,
	IMAP_SELECTED,
	IMAP_LOGOUT,
};

struct imap_sel {
	struct store_snapshot *snap;
	char mailbox_id[STORE_UNIQUEID_LEN + 1];
	char name[STORE_MBOX_NAME_MAX + 1];   /* UTF-8, as the store knows it */
	bool readonly;                        /* EXAMINE, or a read-only store */
	uint32_t exists_sent;                 /* EXISTS count the client knows */
	uint32_t recent_sent;
	struct buf kw;                        /* keywords the last FLAGS named, space-separated */
};

struct imap_session {
	struct child_conn *sc;
	struct conn *conn;
	enum imap_state state;
	struct session_auth auth;
	char user[STORE_USER_NAME_MAX + 1];
	struct store_user *u;
	struct imap_sel sel;
	bool condstore;                 /* CONDSTORE enabled (RFC 7162 3.1) */
	bool qresync;                   /* QRESYNC enabled */
	bool utf8;                      /* UTF8=ACCEPT enabled */
	bool rev2;                      /* IMAP4rev2 enabled (RFC 9051; docs/imap.md) */
	bool idle_timeout;              /* set by IDLE when it hit the autologout */
	bool quit;                      /* a quit was requested inside a command */
	bool fatal;                     /* the connection is unusable: end it */
	struct buf cmdbuf;              /* the command being read */
	struct buf tmp;
	struct buf tagline;             /* the tagged reply, sent after the untagged updates */
	const struct imap_cmd *cur;     /* the command running */
	uint64_t ncommands;
	int64_t login_deadline;         /* clock_mono_ms(): login by then (NOTAUTH) */
	int64_t cmd_deadline;           /* the command being read must be in by then */
	uint64_t cmd_idle_us;           /* the client's idle time before the current command */
	bool cmd_changes;               /* the current command asks to change the store */
	/* APPEND messages streamed to files: each literal in cmdbuf is {0},
	 * its (empty) data at cmdbuf offset off */
	struct imap_append_tmp { struct store_blob_tmp *tmp; size_t off; } *append_tmp;
	size_t append_ntmp;
	/* the APPEND of the current command (all its messages), undone if no
	 * replica confirms it */
	char undo_mailbox[STORE_UNIQUEID_LEN + 1];
	struct store_uids undo_uids;
};

/* ---- output (imapd.c) ---- */
void imap_puts(struct imap_session *s, const char *str);
void imap_write(struct imap_session *s, const void *p, size_t n);
void imap_printf(struct imap_session *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "tag OK|NO|BAD [code] text\r\n"; code may be NULL.  The line is held
 * and written after the end-of-command updates (imap_tagged_send). */
void imap_tagged(struct imap_session *s, const char *status, const char *code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* Write the held tagged line now (STARTTLS; the main loop). */
void imap_tagged_send(struct imap_session *s);
/* A failed store call: tagged NO with the response code its kind maps to. */
void imap_tagged_err(struct imap_session *s, const struct err *err, const char *what);
/* The capability list for the current state (no leading/trailing space). */
void imap_capabilities(struct imap_session *s, struct buf *out);
/* Flush; false when the connection failed (s->fatal set). */
bool imap_flush(struct imap_session *s);
/* An IMAP string for s[0..n): quoted when it can be, else a literal. */
void imap_put_string(struct buf *out, const char *str, size_t n);

/* ---- names (imap_mailbox.c) ---- */
/* Wire name (modified UTF-7, or UTF-8 with UTF8=ACCEPT) to the store's
 * UTF-8; 0, or -1 with a reason in err. */
int imap_name_decode(struct imap_session *s, const struct imap_str *wire, struct buf *out,
	struct err *err);
/* Append a store name as it goes on the wire (astring). */
void imap_name_put(struct imap_session *s, struct buf *out, const char *name);

/* ---- flags (imap_store.c) ---- */
/* "(\Seen \Recent kw ...)" */
void imap_flags_put(struct buf *out, uint32_t sys, const char *keywords, bool recent);

/* ---- IMAP4rev2 (imap_rev2.c) ---- */
/* The untagged LIST of the mailbox just selected (RFC 9051 6.3.2). */
void imap_rev2_select_list(struct imap_session *s);

/* ---- selected state (imap_session.c) ---- */
bool imap_sel_is_recent(const struct imap_session *s, const struct store_snaprec *r);
uint32_t imap_sel_recent_count(const struct imap_session *s);
/* Bring the snapshot forward and send what changed (EXISTS, RECENT,
 * FETCH for others' flag changes, EXPUNGE/VANISHED when allow_expunge).
 * changed_r (may be NULL) receives the sequence numbers whose flags
 * changed instead of sending FETCH for them.  -1 when the mailbox is
 * gone (BYE sent, s->fatal). */
int imap_sel_sync(struct imap_session *s, bool allow_expunge, struct store_uids *changed_r);
/* Before a FETCH that carries these keywords (space-separated): send
 * FLAGS and PERMANENTFLAGS again if one of them is new to the session
 * (RFC 3501 7.2.6: a client trusts FLAGS for the flags in use). */
void imap_sel_announce(struct imap_session *s, const char *keywords);
/* CONDSTORE enabled by a command (FETCH MODSEQ, SEARCH MODSEQ ...): with
 * a mailbox selected, say its HIGHESTMODSEQ once (RFC 7162 3.1). */
void imap_condstore_enable(struct imap_session *s);
/* Send "* n FETCH (FLAGS ...)" for snapshot index i (UID/MODSEQ when
 * CONDSTORE/QRESYNC want them). */
void imap_sel_send_flags(struct imap_session *s, size_t i, bool with_uid);
/* Leave the selected state (no expunge). */
void imap_sel_close(struct imap_session *s);
/* Resolve a command's set into snapshot indexes [lo, hi) ranges.  For
 * sequence sets a number above the message count is an error (BAD sent,
 * returns -1); UID sets are clipped.  *out is malloc'd (free it). */
int imap_sel_indexes(struct imap_session *s, const struct imap_seqset *set, bool uid,
	struct imap_range **out, size_t *n_r);
/* Snapshot index ranges [lo, hi) -> uid ranges for the store. */
size_t imap_sel_uid_ranges(struct imap_session *s, const struct imap_range *idx, size_t n,
	struct store_range *out);
/* Index of the record with this uid, or -1. */
ssize_t imap_sel_find_uid(const struct imap_session *s, uint32_t uid);
/* Append a compact set "1:3,5" of the sorted values v[0..n). */
void imap_put_set(struct buf *out, const uint32_t *v, size_t n);

/* ---- command handlers ---- */
void imap_cmd_login(struct imap_session *s, struct imap_cmd *c);           /* imap_auth.c */
void imap_cmd_authenticate(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_select(struct imap_session *s, struct imap_cmd *c);          /* imap_session.c */
void imap_cmd_close(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_unselect(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_expunge(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_create(struct imap_session *s, struct imap_cmd *c);          /* imap_mailbox.c */
void imap_cmd_delete(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_rename(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_subscribe(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_list(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_status(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_namespace(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_append(struct imap_session *s, struct imap_cmd *c);          /* imap_append.c */
/* s->cmdbuf holds an APPEND up to a synchronising literal: if that is the
 * message and the mailbox does not exist, answer "tag NO [TRYCREATE]"
 * now (instead of "+") and return true. */
bool imap_append_refuse_early(struct imap_session *s, const char *tag);
/* Drop the streamed messages of the last APPEND (s->append_tmp). */
void imap_append_tmp_free(struct imap_session *s);
void imap_cmd_fetch(struct imap_session *s, struct imap_cmd *c);           /* imap_fetch.c */
void imap_cmd_search(struct imap_session *s, struct imap_cmd *c);          /* imap_search.c */
int imap_search_indexes(struct imap_session *s, struct imap_cmd *c, struct imap_search *q,
	struct store_uids *idx_r);
void imap_cmd_sort(struct imap_session *s, struct imap_cmd *c);            /* imap_sort.c */
void imap_cmd_thread(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_store(struct imap_session *s, struct imap_cmd *c);           /* imap_store.c */
void imap_cmd_copy(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_idle(struct imap_session *s, struct imap_cmd *c);            /* imap_idle.c */
void imap_cmd_getquota(struct imap_session *s, struct imap_cmd *c);        /* imap_quota.c */
void imap_cmd_getquotaroot(struct imap_session *s, struct imap_cmd *c);
void imap_cmd_setquota(struct imap_session *s, struct imap_cmd *c);

/* Login done: open the user, autocreate folders (imap_auth.c). */
int imap_auth_finish(struct imap_session *s, const char *user, struct err *err);

/* Dates (imap_fetch.c): "dd-Mon-yyyy hh:mm:ss +0000" */
void imap_put_internaldate(struct buf *out, int64_t t);

#endif
