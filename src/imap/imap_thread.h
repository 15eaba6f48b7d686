/*
 * imap_thread.h - the pure parts of SORT and THREAD (RFC 5256): the base
 * subject, the sent date, the fields of a stored ENVELOPE, message-ids,
 * and the two threading algorithms.  No I/O, no store: fuzzable on its
 * own (fuzz/fuzz_imap_thread.c); imap_sort.c feeds it the mailbox.
 */
#ifndef CASTOR_IMAP_THREAD_H
#define CASTOR_IMAP_THREAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"

/* Base subject (RFC 5256 section 2.1) of a raw Subject value: encoded
 * words decoded to UTF-8, white space runs made one space, reply and
 * forward markers, [blobs] and "(fwd)" trailers removed, then ASCII
 * lower-cased (the i;ascii-casemap comparator compares bytes of the
 * result).  Appends to out; returns true when a reply or forward marker
 * was removed. */
bool imap_thread_base_subject(const char *raw, size_t n, struct buf *out);

/* An RFC 5322 date-time ("Tue, 1 Jul 2003 10:52:37 +0200", day name,
 * seconds and zone optional, obsolete zone names understood) as UTC
 * unix seconds; false when it does not parse. */
bool imap_thread_sentdate(const char *s, size_t n, int64_t *t_r);

/* The next msg-id "<...>" in s[0..n) from *pos (the id without its
 * brackets in *id_r, *len_r); false when there is none. */
bool imap_thread_msgid_next(const char *s, size_t n, size_t *pos, const char **id_r,
	size_t *len_r);

/* The fields of an ENVELOPE as the store keeps it (imapenv.h).  NULL is
 * NIL.  For from, to and cc: the first address that is not a group
 * marker. */
struct imap_env_addr {
	const char *name, *mailbox, *host;
};
struct imap_env {
	const char *date, *subject, *in_reply_to, *message_id;
	struct imap_env_addr from, to, cc;
	struct buf strs;          /* the strings, unquoted */
};
/* 0, or -1 when env[0..n) is not an envelope (e is then all NIL).
 * Free with imap_env_free either way. */
int imap_env_parse(const char *env, size_t n, struct imap_env *e);
void imap_env_free(struct imap_env *e);

/* One message given to a threading algorithm; the array is in
 * sequence order (the index breaks ties). */
struct imap_thread_msg {
	uint32_t num;             /* printed: sequence number or uid */
	int64_t sent;             /* sent date, UTC seconds */
	const char *subject;      /* base subject (imap_thread_base_subject) */
	size_t subject_len;
	bool refwd;               /* the subject was a reply or forward */
	const char *msgid;        /* raw Message-ID value, or NULL */
	size_t msgid_len;
	const char *refs;         /* raw References value, or NULL */
	size_t refs_len;
	const char *irt;          /* raw In-Reply-To value, or NULL */
	size_t irt_len;
};

/* Append the THREAD response data ("(1 2)(3 (4)(5))") for m[0..n). */
void imap_thread_references(const struct imap_thread_msg *m, size_t n, struct buf *out);
void imap_thread_orderedsubject(const struct imap_thread_msg *m, size_t n, struct buf *out);

#endif
