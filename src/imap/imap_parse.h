/*
 * imap_parse.h - the IMAP command parser: one complete command (its
 * lines and literals, as received) in, one struct imap_cmd out.  No I/O,
 * no store: fuzzable on its own (fuzz/fuzz_imap.c).
 *
 * Input format.  imapd reads a command line; when the line ends with a
 * literal marker {n} or {n+} it appends the line, "\r\n", the n literal
 * octets, and reads the next line, until a line without a marker.  The
 * parser gets exactly that: the command as it was on the wire without
 * its final CRLF.  imap_parse_literal_tail() finds the marker.
 *
 * Grammar: RFC 3501 section 9, plus the extensions imapd implements:
 * LITERAL+ (RFC 7888), UIDPLUS (UID EXPUNGE), MOVE, ENABLE, ID,
 * UNSELECT, NAMESPACE, IDLE, LIST-EXTENDED/LIST-STATUS/SPECIAL-USE
 * (LIST selection and return options, CREATE (USE (...))), ESEARCH
 * (SEARCH RETURN (...)), CONDSTORE/QRESYNC (SELECT parameters, FETCH
 * (CHANGEDSINCE n [VANISHED]), STORE (UNCHANGEDSINCE n), SEARCH MODSEQ,
 * STATUS HIGHESTMODSEQ), STATUS SIZE, APPENDLIMIT, SORT and THREAD
 * (RFC 5256, DISPLAYFROM/DISPLAYTO of RFC 5957, SORT RETURN (...) of
 * ESORT, RFC 5267), GETQUOTA/GETQUOTAROOT/SETQUOTA (RFC 9208), MULTIAPPEND
 * (RFC 3502), CATENATE (RFC 4469), BINARY (RFC 3516: literal8 in APPEND,
 * FETCH BINARY[...], BINARY.SIZE) and COMPRESS (RFC 4978).
 *
 * Everything the result points to lives in the command's arena (or, for
 * literals, in the input buffer, which must outlive the command).
 * Limits: nesting of search keys and parentheses at most
 * IMAP_PARSE_MAX_DEPTH; the arena is bounded by the input size (a small
 * constant factor), so a command costs memory proportional to its size.
 *
 * Errors: imap_parse_command() returns -1 with a human-readable reason
 * (for "tag BAD reason"); *tag_r is set whenever a tag could be read, so
 * the BAD can carry it.
 */
#ifndef CASTOR_IMAP_PARSE_H
#define CASTOR_IMAP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/err.h"

#define IMAP_PARSE_MAX_DEPTH 32
#define IMAP_STAR 0                /* '*' in a sequence set (numbers are non-zero;
                                      4294967295 is a number, not '*') */
#define IMAP_SECTION_MAX_PARTS 64  /* BODY[1.2.3...] depth */

/* ---- arena ---- */

struct imap_arena_chunk;
struct imap_arena {
	struct imap_arena_chunk *head;
	size_t used;     /* bytes handed out, for limits and tests */
};
void *imap_arena_alloc(struct imap_arena *a, size_t n);
char *imap_arena_strndup(struct imap_arena *a, const char *s, size_t n);
void imap_arena_free(struct imap_arena *a);

/* ---- values ---- */

struct imap_range {
	uint32_t lo, hi;       /* as written: lo may exceed hi; IMAP_STAR for '*' */
};
struct imap_seqset {
	struct imap_range *r;
	size_t n;
};

/* A string argument: NUL-terminated (may also contain NULs when it came
 * as a literal: len is the truth). */
struct imap_str {
	const char *s;
	size_t len;
};

/* ---- search ---- */

enum imap_skey {
	IMAP_SK_AND = 0,       /* kids: all must match (the top level, parentheses) */
	IMAP_SK_OR,            /* kids[0] or kids[1] */
	IMAP_SK_NOT,           /* kids[0] */
	IMAP_SK_ALL,
	IMAP_SK_SEQSET,        /* set */
	IMAP_SK_UID,           /* set */
	IMAP_SK_ANSWERED, IMAP_SK_DELETED, IMAP_SK_DRAFT, IMAP_SK_FLAGGED, IMAP_SK_SEEN,
	IMAP_SK_UNANSWERED, IMAP_SK_UNDELETED, IMAP_SK_UNDRAFT, IMAP_SK_UNFLAGGED, IMAP_SK_UNSEEN,
	IMAP_SK_NEW, IMAP_SK_OLD, IMAP_SK_RECENT,
	IMAP_SK_KEYWORD,       /* str (a flag keyword) */
	IMAP_SK_UNKEYWORD,
	IMAP_SK_BEFORE,        /* date: internal date */
	IMAP_SK_ON,
	IMAP_SK_SINCE,
	IMAP_SK_SENTBEFORE,    /* date: Date: header */
	IMAP_SK_SENTON,
	IMAP_SK_SENTSINCE,
	IMAP_SK_LARGER,        /* num */
	IMAP_SK_SMALLER,
	IMAP_SK_HEADER,        /* field, str (in header field `field`) */
	IMAP_SK_BCC, IMAP_SK_CC, IMAP_SK_FROM, IMAP_SK_SUBJECT, IMAP_SK_TO, /* str */
	IMAP_SK_BODY,          /* str: decoded body text */
	IMAP_SK_TEXT,          /* str: decoded header and body */
	IMAP_SK_MODSEQ,        /* num (RFC 7162) */
};

struct imap_search_key {
	enum imap_skey kind;
	struct imap_search_key **kids;
	size_t nkids;
	struct imap_seqset set;
	struct imap_str str;
	const char *field;     /* HEADER */
	uint64_t num;
	int64_t date;          /* days since 1970-01-01 */
};

/* ESEARCH RETURN options (RFC 4731) */
#define IMAP_SRET_MIN   0x01
#define IMAP_SRET_MAX   0x02
#define IMAP_SRET_ALL   0x04
#define IMAP_SRET_COUNT 0x08

struct imap_search {
	bool esearch;          /* RETURN (...) was given: answer with ESEARCH */
	unsigned ret;          /* IMAP_SRET_*; RETURN () means ALL */
	const char *charset;   /* NULL when none given */
	struct imap_search_key *key;   /* an AND node */
	bool has_modseq;       /* a MODSEQ key occurs (reply carries (MODSEQ n)) */
};

/* ---- sort / thread (RFC 5256, 5267, 5957) ---- */

enum imap_sort_key {
	IMAP_SORT_ARRIVAL = 1, IMAP_SORT_CC, IMAP_SORT_DATE, IMAP_SORT_FROM, IMAP_SORT_SIZE,
	IMAP_SORT_SUBJECT, IMAP_SORT_TO, IMAP_SORT_DISPLAYFROM, IMAP_SORT_DISPLAYTO,
};
#define IMAP_SORT_MAX_KEYS 16
#define IMAP_SRET_PARTIAL 0x10   /* SORT RETURN (PARTIAL lo:hi) only */

enum imap_thread_algo { IMAP_THREAD_ORDEREDSUBJECT = 1, IMAP_THREAD_REFERENCES };

struct imap_sort_args {
	struct imap_search search;   /* charset (always given), keys; esearch/ret: RETURN */
	unsigned char keys[IMAP_SORT_MAX_KEYS];   /* enum imap_sort_key */
	bool reverse[IMAP_SORT_MAX_KEYS];
	size_t nkeys;
	uint32_t partial_lo, partial_hi;          /* PARTIAL: 1 <= lo <= hi */
	enum imap_thread_algo algo;               /* THREAD */
};

/* ---- fetch ---- */

enum imap_fatt_kind {
	IMAP_FA_FLAGS,
	IMAP_FA_INTERNALDATE,
	IMAP_FA_RFC822_SIZE,
	IMAP_FA_ENVELOPE,
	IMAP_FA_BODY,            /* BODY without a section: non-extensible structure */
	IMAP_FA_BODYSTRUCTURE,
	IMAP_FA_UID,
	IMAP_FA_MODSEQ,
	IMAP_FA_RFC822,          /* = BODY[], sets \Seen, reply name RFC822 */
	IMAP_FA_RFC822_HEADER,   /* = BODY.PEEK[HEADER] */
	IMAP_FA_RFC822_TEXT,     /* = BODY[TEXT], sets \Seen */
	IMAP_FA_SECTION,         /* BODY[...] / BODY.PEEK[...] */
	IMAP_FA_BINARY,          /* BINARY[part] / BINARY.PEEK[part] (RFC 3516): path, partial */
	IMAP_FA_BINARY_SIZE,     /* BINARY.SIZE[part] */
};

enum imap_sec {
	IMAP_SEC_BODY,           /* [] or [1.2] */
	IMAP_SEC_HEADER,
	IMAP_SEC_HEADER_FIELDS,
	IMAP_SEC_HEADER_FIELDS_NOT,
	IMAP_SEC_TEXT,
	IMAP_SEC_MIME,
};

struct imap_fetch_att {
	enum imap_fatt_kind kind;
	bool peek;
	enum imap_sec sec;
	uint32_t *path;
	size_t npath;
	const char **fields;     /* HEADER.FIELDS (.NOT) names */
	size_t nfields;
	bool partial;
	uint32_t p_off, p_len;
	const char *name;        /* the item as echoed in the reply: "BODY[1.HEADER.FIELDS (From)]" */
};

struct imap_fetch {
	struct imap_seqset set;
	struct imap_fetch_att *atts;
	size_t natts;
	uint64_t changedsince;   /* 0 = none */
	bool has_changedsince;
	bool vanished;
};

/* ---- store / append / list ... ---- */

enum imap_store_op { IMAP_STORE_ADD, IMAP_STORE_REMOVE, IMAP_STORE_REPLACE };

struct imap_store_args {
	struct imap_seqset set;
	enum imap_store_op op;
	bool silent;
	bool has_unchangedsince;
	uint64_t unchangedsince;
	const char *flags;       /* space-separated flags as given ("\Seen $Junk") */
};

/* CATENATE (RFC 4469): a part is TEXT (a literal or literal8, pointing
 * into the input buffer) or URL (the IMAP URL as given, copied). */
struct imap_cat_part {
	bool url;
	struct imap_str s;
};
#define IMAP_APPEND_MAX_MSGS 1000     /* messages in one MULTIAPPEND */
#define IMAP_CATENATE_MAX_PARTS 256   /* parts of one CATENATE */

/* One message of an APPEND (MULTIAPPEND, RFC 3502: one or more). */
struct imap_append_msg {
	const char *flags;       /* NULL: none given */
	int64_t date;            /* unix time */
	bool has_date;
	const char *data;        /* the literal: points into the input buffer */
	size_t len;
	bool literal8;           /* ~{n} (RFC 3516) */
	struct imap_cat_part *parts;   /* CATENATE: non-NULL, nparts >= 1 */
	size_t nparts;
};

struct imap_append_args {
	struct imap_str mailbox;
	/* the first message, as before MULTIAPPEND (= msgs[0]) */
	const char *flags;       /* NULL: none given */
	int64_t date;            /* unix time; 0: none given */
	bool has_date;
	const char *data;        /* points into the input buffer */
	size_t len;
	struct imap_append_msg *msgs;   /* every message, in order */
	size_t nmsgs;
};

#define IMAP_LSEL_SUBSCRIBED     0x01
#define IMAP_LSEL_REMOTE         0x02
#define IMAP_LSEL_RECURSIVEMATCH 0x04
#define IMAP_LSEL_SPECIALUSE     0x08
#define IMAP_LRET_SUBSCRIBED     0x01
#define IMAP_LRET_CHILDREN       0x02
#define IMAP_LRET_SPECIALUSE     0x04
#define IMAP_LRET_STATUS         0x08

/* STATUS items */
#define IMAP_ST_MESSAGES      0x01
#define IMAP_ST_RECENT        0x02
#define IMAP_ST_UIDNEXT       0x04
#define IMAP_ST_UIDVALIDITY   0x08
#define IMAP_ST_UNSEEN        0x10
#define IMAP_ST_HIGHESTMODSEQ 0x20
#define IMAP_ST_SIZE          0x40
#define IMAP_ST_APPENDLIMIT   0x80

struct imap_list_args {
	bool extended;           /* selection or return options, or several patterns */
	unsigned sel;            /* IMAP_LSEL_* */
	unsigned ret;            /* IMAP_LRET_* */
	unsigned status_items;   /* IMAP_ST_* with RETURN (STATUS (...)) */
	struct imap_str ref;
	struct imap_str *patterns;
	size_t npatterns;
};

struct imap_select_args {
	struct imap_str mailbox;
	bool condstore;
	bool qresync;
	uint32_t q_uidvalidity;
	uint64_t q_modseq;
	struct imap_seqset q_known_uids;       /* n == 0: none */
	struct imap_seqset q_seq_match;        /* known-sequence-set */
	struct imap_seqset q_uid_match;
};

/* ---- the command ---- */

enum imap_cmd_kind {
	IMAP_CMD_CAPABILITY = 1, IMAP_CMD_NOOP, IMAP_CMD_LOGOUT, IMAP_CMD_ID,
	IMAP_CMD_STARTTLS, IMAP_CMD_AUTHENTICATE, IMAP_CMD_LOGIN,
	IMAP_CMD_SELECT, IMAP_CMD_EXAMINE, IMAP_CMD_CREATE, IMAP_CMD_DELETE, IMAP_CMD_RENAME,
	IMAP_CMD_SUBSCRIBE, IMAP_CMD_UNSUBSCRIBE, IMAP_CMD_LIST, IMAP_CMD_LSUB, IMAP_CMD_STATUS,
	IMAP_CMD_APPEND, IMAP_CMD_NAMESPACE, IMAP_CMD_ENABLE, IMAP_CMD_IDLE,
	IMAP_CMD_CHECK, IMAP_CMD_CLOSE, IMAP_CMD_UNSELECT, IMAP_CMD_EXPUNGE,
	IMAP_CMD_SEARCH, IMAP_CMD_FETCH, IMAP_CMD_STORE, IMAP_CMD_COPY, IMAP_CMD_MOVE,
	IMAP_CMD_UID_EXPUNGE, IMAP_CMD_SORT, IMAP_CMD_THREAD,
	IMAP_CMD_GETQUOTA, IMAP_CMD_GETQUOTAROOT, IMAP_CMD_SETQUOTA,   /* RFC 9208 */
	IMAP_CMD_COMPRESS,
};

struct imap_cmd {
	struct imap_arena arena;
	const char *tag;
	enum imap_cmd_kind kind;
	const char *name;          /* "FETCH", "UID FETCH" ... (upper case, static) */
	bool uid;                  /* UID FETCH/STORE/COPY/MOVE/SEARCH/EXPUNGE/SORT/THREAD */
	union {
		struct { struct imap_str user, pass; } login;
		struct { const char *mech; const char *ir; } auth;   /* ir NULL: none */
		struct imap_select_args select;
		struct { struct imap_str mailbox; const char *specialuse; } create;
		struct imap_str mailbox;                 /* DELETE SUBSCRIBE UNSUBSCRIBE GETQUOTAROOT;
		                                            GETQUOTA SETQUOTA: the quota root (SETQUOTA's
		                                            resource list is checked, not kept) */
		struct { struct imap_str from, to; } rename;
		struct imap_list_args list;              /* LIST and LSUB */
		struct { struct imap_str mailbox; unsigned items; } status;
		struct imap_append_args append;
		struct { const char **caps; size_t ncaps; } enable;
		struct { const char **kv; size_t nkv; } id;  /* 2 * pairs; values may be NULL */
		struct imap_search search;
		struct imap_fetch fetch;
		struct imap_store_args store;
		struct { struct imap_seqset set; struct imap_str mailbox; } copy;  /* COPY MOVE */
		struct imap_seqset expunge;              /* UID EXPUNGE */
		struct imap_sort_args sort;              /* SORT THREAD */
		struct { const char *mech; } compress;   /* COMPRESS (RFC 4978) */
	} u;
};

/* Parse buf[0..len) into *cmd (initialised here; free with
 * imap_cmd_free even on failure).  Returns 0, or -1 with a reason in err
 * (ERR_INVALID).  cmd->tag is set (or NULL when the tag itself was bad). */
int imap_parse_command(const char *buf, size_t len, struct imap_cmd *cmd, struct err *err);
void imap_cmd_free(struct imap_cmd *cmd);

/* Does the line end with a literal marker?  Returns 1 and sets *n_r and
 * *sync_r (false for {n+}), 0 when it does not, -1 when the marker is
 * there but the number is malformed or above UINT32_MAX. */
int imap_parse_literal_tail(const char *line, size_t len, uint64_t *n_r, bool *sync_r);

/* An APPEND being read: buf[0..len) is the command so far (lines and
 * literals), ending with a literal marker.  Returns 1 and the mailbox
 * argument (in a) when that literal is the first message (or the first
 * TEXT part of its CATENATE), 0 when it is
 * something else (the mailbox name itself) or the command does not parse
 * that far (the full parse will say why).  Lets imapd refuse an APPEND
 * to a missing mailbox before it asks for the message. */
int imap_parse_append_mailbox(const char *buf, size_t len, struct imap_arena *a,
	struct imap_str *mailbox_r);

/* The tag at the start of a line (for BAD replies to lines that do not
 * parse): copies at most size-1 octets of a valid tag into out; returns
 * false (out = "*") when there is none. */
bool imap_parse_peek_tag(const char *line, size_t len, char *out, size_t size);
/* Does the line look like "tag APPEND ..."? (chooses the literal limit) */
bool imap_parse_is_append(const char *line, size_t len);
/* A section as in BODY[...], brackets included ("[1.2.HEADER]"), for
 * CATENATE URLs: 0 and *att (kind IMAP_FA_SECTION, in a), or -1. */
int imap_parse_section(const char *spec, size_t n, struct imap_arena *a,
	struct imap_fetch_att *att);
/* Does the line, ending with a literal marker, announce a CATENATE TEXT
 * part ("TEXT {n}", "TEXT ~{n+}" ...)? (such a literal is not streamed) */
bool imap_parse_is_cat_text(const char *line, size_t len);

/* Sequence sets: resolve '*' to star, order each range, clip to
 * [1, star] (a range entirely above star is dropped; "n:*" with n > star
 * is "star:star", RFC 3501 errata 4 for UIDs), then sort and merge into
 * ascending, disjoint ranges.  Returns how many were written to out
 * (capacity set->n). */
size_t imap_seqset_resolve(const struct imap_seqset *set, uint32_t star, struct imap_range *out);
bool imap_seqset_contains(const struct imap_range *r, size_t n, uint32_t v);

/* Dates */
/* "1-Feb-1994" / "01-Feb-1994": days since 1970-01-01, or -1. */
int64_t imap_parse_date(const char *s, size_t n);
/* "17-Jul-1996 02:44:25 -0700": unix time, or -1 (INT64_MIN-safe). */
int imap_parse_datetime(const char *s, size_t n, int64_t *t_r);

#endif
