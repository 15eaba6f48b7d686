/*
 * store_record.c - message records: flags, append (with the MIME data
 * computed once), STORE flags with UNCHANGEDSINCE, EXPUNGE
 * (tombstones), COPY/MOVE without copying bodies, record reads and the
 * "changed since modseq N" queries.
 *
 * Durable state: the `records` table (format and invariants M1-M5 in
 * store_user.c).  Every function here that changes records also, in
 * the same transaction: stamps each changed record with the call's
 * modseq, raises the mailbox's highestmodseq and uidnext, XORs the
 * changed records' old/new CRCs into the mailbox's sync_crc, and
 * adjusts the user's quota usage.
 *
 * Append order (see store_blob.c for the file-body steps):
 *   SHA-1 + MIME parse + Message-ID (no lock) -> large bodies written and
 *   fsynced (blobs.lock shared) -> BEGIN IMMEDIATE -> quota check -> blob
 *   rows, record rows, mailbox counters, usage -> COMMIT -> change hook
 *   (sync log) -> group-commit WAL fdatasync -> notify -> return success.
 *
 * Duplicate suppression (store_append_dedup): the message-id index is
 * records.msgid (M7 in store_user.c), written with each record (append,
 * copy, replication).  The authoritative check runs inside the append's
 * BEGIN IMMEDIATE transaction, before each message's insert, so SQLite's
 * write lock serialises two deliveries of one message and the second
 * sees the first's record; with a batch the check sees the messages
 * inserted before it.  Before any lock a read-only probe marks likely
 * duplicates among the messages with file bodies, so those are not
 * written only to be removed again (one that is, because another
 * process won the race, is removed in the transaction: store_blob.c).
 * A call that finds a duplicate waits for the group-commit barrier even
 * when it changed nothing: the record it reports may be another
 * process's commit whose WAL fsync is still running.  Records written
 * before schema 2 have msgid NULL; the check computes theirs from the
 * bodies (within its time window) and stores them.
 */
#include "store/store.h"
#include "store/store_int.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <time.h>

#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/imapenv.h"
#include "store/mime.h"

#define REC_COLS "uid, guid, size, internaldate, sysflags, keywords, modseq, expunged_modseq"

/* ------------------------------------------------------------------ */
/* uid lists */

void
store_uids_add(struct store_uids *l, uint32_t uid)
{
	if (l == NULL)
		return;
	if (l->n == l->cap) {
		l->cap = l->cap ? l->cap * 2 : 16;
		l->v = xreallocarray(l->v, l->cap, sizeof(*l->v));
	}
	l->v[l->n++] = uid;
}

void
store_uids_free(struct store_uids *l)
{
	if (l == NULL)
		return;
	free(l->v);
	memset(l, 0, sizeof(*l));
}

/* ------------------------------------------------------------------ */
/* flags */

static bool
keyword_char_ok(unsigned char c)
{
	/* IMAP atom-char minus "]" (flag-keyword = atom). */
	if (c <= 0x20 || c >= 0x7f)
		return false;
	return strchr("(){%*\"\\]", c) == NULL;
}

static int
cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Split a keyword string into words (validated); caller frees words[i]
 * and words. */
static int
keywords_split(const char *in, char ***words_r, size_t *n_r, struct err *err)
{
	char **w = NULL;
	size_t n = 0;
	const char *p = in ? in : "";

	while (*p) {
		size_t len;
		bool dup = false;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		len = strcspn(p, " ");
		for (size_t i = 0; i < len; i++) {
			if (!keyword_char_ok((unsigned char)p[i])) {
				for (size_t k = 0; k < n; k++)
					free(w[k]);
				free(w);
				return err_set(err, ERR_INVALID, "invalid keyword %.*s",
					(int)(len > 64 ? 64 : len), p);
			}
		}
		for (size_t k = 0; k < n; k++)
			if (strlen(w[k]) == len && strncasecmp(w[k], p, len) == 0)
				dup = true;
		if (!dup) {
			w = xreallocarray(w, n + 1, sizeof(*w));
			w[n++] = xstrndup(p, len);
		}
		p += len;
	}
	*words_r = w;
	*n_r = n;
	return 0;
}

static void
words_free(char **w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(w[i]);
	free(w);
}

static int
words_join(char **w, size_t n, struct buf *out, struct err *err)
{
	if (n > 0)
		qsort(w, n, sizeof(*w), cmp_str);
	buf_reset(out);
	for (size_t i = 0; i < n; i++) {
		if (i)
			buf_putc(out, ' ');
		buf_puts(out, w[i]);
	}
	if (out->len > STORE_KEYWORDS_MAX)
		return err_set(err, ERR_INVALID, "too many keywords (more than %d bytes)",
			STORE_KEYWORDS_MAX);
	return 0;
}

int
store_keywords_canon(const char *in, struct buf *out, struct err *err)
{
	char **w;
	size_t n;
	int rc;

	if (keywords_split(in, &w, &n, err) < 0)
		return -1;
	rc = words_join(w, n, out, err);
	words_free(w, n);
	return rc;
}

static const struct {
	const char *name;
	uint32_t bit;
} sysflag_names[] = {
	{ "\\Answered", STORE_FLAG_ANSWERED },
	{ "\\Flagged", STORE_FLAG_FLAGGED },
	{ "\\Deleted", STORE_FLAG_DELETED },
	{ "\\Seen", STORE_FLAG_SEEN },
	{ "\\Draft", STORE_FLAG_DRAFT },
};

int
store_flags_parse(const char *s, uint32_t *sys_r, struct buf *kw_r, struct err *err)
{
	struct buf kws = BUF_INIT;
	const char *p = s ? s : "";
	uint32_t sys = 0;
	int rc;

	while (*p) {
		size_t len;
		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		len = strcspn(p, " ");
		if (*p == '\\') {
			size_t k;
			for (k = 0; k < sizeof(sysflag_names) / sizeof(sysflag_names[0]); k++)
				if (strlen(sysflag_names[k].name) == len &&
				    strncasecmp(sysflag_names[k].name, p, len) == 0)
					break;
			if (k < sizeof(sysflag_names) / sizeof(sysflag_names[0]))
				sys |= sysflag_names[k].bit;
			else if (!(len == 7 && strncasecmp(p, "\\Recent", 7) == 0)) {
				buf_free(&kws);
				return err_set(err, ERR_INVALID, "unknown system flag %.*s",
					(int)(len > 64 ? 64 : len), p);
			}
		} else {
			if (kws.len)
				buf_putc(&kws, ' ');
			buf_append(&kws, p, len);
		}
		p += len;
	}
	rc = store_keywords_canon(buf_cstr(&kws), kw_r, err);
	buf_free(&kws);
	if (rc == 0)
		*sys_r = sys;
	return rc;
}

void
store_flags_format(uint32_t sys, const char *keywords, struct buf *out)
{
	bool first = true;

	for (size_t k = 0; k < sizeof(sysflag_names) / sizeof(sysflag_names[0]); k++) {
		if (sys & sysflag_names[k].bit) {
			if (!first)
				buf_putc(out, ' ');
			buf_puts(out, sysflag_names[k].name);
			first = false;
		}
	}
	if (keywords != NULL && keywords[0] != '\0') {
		if (!first)
			buf_putc(out, ' ');
		buf_puts(out, keywords);
	}
}

uint32_t
store_record_crc(const struct store_record *r)
{
	struct buf b = BUF_INIT;
	uint32_t crc;

	buf_printf(&b, "%u %llu ", r->uid, (unsigned long long)r->modseq);
	store_flags_format(r->sysflags, r->keywords, &b);
	buf_putc(&b, ' ');
	buf_puts(&b, r->guid);
	crc = store_crc32(0, b.data, b.len);
	buf_free(&b);
	return crc;
}

/* ------------------------------------------------------------------ */
/* rows */

/* Fill r from REC_COLS at column `c`; r->keywords points into the statement. */
static void
rec_fill(sqlite3_stmt *s, int c, struct store_record *r)
{
	const char *g = (const char *)sqlite3_column_text(s, c + 1);
	const char *kw = (const char *)sqlite3_column_text(s, c + 5);

	memset(r, 0, sizeof(*r));
	r->uid = (uint32_t)sqlite3_column_int64(s, c);
	str_lcpy(r->guid, g ? g : "", sizeof(r->guid));
	r->size = (uint64_t)sqlite3_column_int64(s, c + 2);
	r->internaldate = sqlite3_column_int64(s, c + 3);
	r->sysflags = (uint32_t)sqlite3_column_int64(s, c + 4);
	r->keywords = kw ? kw : "";
	r->modseq = (uint64_t)sqlite3_column_int64(s, c + 6);
	r->expunged_modseq = (uint64_t)sqlite3_column_int64(s, c + 7);
}

/* An owned copy of a record (keywords duplicated). */
struct orec {
	struct store_record r;
	char *kw;
};

static void
orecs_free(struct orec *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i].kw);
	free(v);
}

/* Live records of a mailbox whose uid is in ranges (NULL = all). */
static int
load_live(struct store_user *u, int64_t mbid, const struct store_range *ranges, size_t nranges,
	struct orec **v_r, size_t *n_r, struct err *err)
{
	struct orec *v = NULL;
	size_t n = 0, cap = 0;
	struct store_range all = { 1, UINT32_MAX };
	int rc = 0;

	if (ranges == NULL) {
		ranges = &all;
		nranges = 1;
	}
	for (size_t i = 0; i < nranges && rc == 0; i++) {
		sqlite3_stmt *s = store_user_stmt(u, "SELECT " REC_COLS " FROM records WHERE mailbox = ?1"
			" AND uid BETWEEN ?2 AND ?3 AND expunged_modseq = 0 ORDER BY uid", err);
		if (s == NULL) {
			rc = -1;
			break;
		}
		sqlite3_bind_int64(s, 1, mbid);
		sqlite3_bind_int64(s, 2, ranges[i].lo);
		sqlite3_bind_int64(s, 3, ranges[i].hi);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			if (n == cap) {
				cap = cap ? cap * 2 : 32;
				v = xreallocarray(v, cap, sizeof(*v));
			}
			rec_fill(s, 0, &v[n].r);
			v[n].kw = xstrdup(v[n].r.keywords);
			v[n].r.keywords = v[n].kw;
			n++;
		}
		sqlite3_reset(s);
		rc = rc == SQLITE_DONE ? 0 : store_sql_err(u->db, rc, err, "records");
	}
	if (rc < 0) {
		orecs_free(v, n);
		return -1;
	}
	/* Overlapping ranges: sort and drop duplicates. */
	if (nranges > 1 && n > 1) {
		size_t k = 0;
		for (size_t i = 1; i < n; i++) {
			for (size_t j = i; j > 0 && v[j - 1].r.uid > v[j].r.uid; j--) {
				struct orec t = v[j];
				v[j] = v[j - 1];
				v[j - 1] = t;
			}
		}
		for (size_t i = 0; i < n; i++) {
			if (k > 0 && v[k - 1].r.uid == v[i].r.uid) {
				free(v[i].kw);
				continue;
			}
			v[k++] = v[i];
		}
		n = k;
	}
	*v_r = v;
	*n_r = n;
	return 0;
}

static int
ranges_check(const struct store_range *ranges, size_t nranges, struct err *err)
{
	if (ranges == NULL && nranges != 0)
		return err_set(err, ERR_INVALID, "no uid ranges");
	for (size_t i = 0; i < nranges; i++)
		if (ranges[i].lo == 0 || ranges[i].lo > ranges[i].hi)
			return err_set(err, ERR_INVALID, "bad uid range %u:%u", ranges[i].lo, ranges[i].hi);
	return 0;
}

int
store_record_insert(struct store_user *u, struct store_mbrow *row, const struct store_record *r,
	const char *envelope, const char *bodystructure, const void *parts,
	size_t parts_len, const char *msgid, struct err *err)
{
	/* body (FETCH BODY) is not stored: it is BODYSTRUCTURE without the
	 * extension data and is computed from the message when asked for
	 * (docs/decisions.md); rows written before keep theirs. */
	sqlite3_stmt *s = store_user_stmt(u,
		"INSERT INTO records(mailbox, uid, guid, size, internaldate, sysflags, keywords, modseq,"
		" expunged_modseq, envelope, bodystructure, body, parts, msgid)"
		" VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, NULL, ?12, ?13)", err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, row->id);
	sqlite3_bind_int64(s, 2, r->uid);
	sqlite3_bind_text(s, 3, r->guid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 4, (sqlite3_int64)r->size);
	sqlite3_bind_int64(s, 5, r->internaldate);
	sqlite3_bind_int64(s, 6, r->sysflags);
	sqlite3_bind_text(s, 7, r->keywords ? r->keywords : "", -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)r->modseq);
	sqlite3_bind_int64(s, 9, (sqlite3_int64)r->expunged_modseq);
	if (envelope)
		sqlite3_bind_text(s, 10, envelope, -1, SQLITE_STATIC);
	if (bodystructure)
		sqlite3_bind_text(s, 11, bodystructure, -1, SQLITE_STATIC);
	if (parts)
		sqlite3_bind_blob64(s, 12, parts, parts_len, SQLITE_STATIC);
	if (msgid)
		sqlite3_bind_text(s, 13, msgid, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		if ((rc & 0xff) == SQLITE_CONSTRAINT)
			return err_set(err, ERR_EXISTS, "uid %u already exists in %s", r->uid,
				log_q(row->mb.name));
		return store_sql_err(u->db, rc, err, "record insert");
	}
	if (r->expunged_modseq == 0)
		row->mb.sync_crc ^= store_record_crc(r);
	if (r->uid >= row->mb.uidnext)
		row->mb.uidnext = r->uid + 1;
	if (r->modseq > row->mb.highestmodseq)
		row->mb.highestmodseq = r->modseq;
	u->dirty = true;
	return 0;
}

/* ------------------------------------------------------------------ */
/* message-id index (duplicate suppression) */

/* A record the index found. */
struct msgid_hit {
	uint32_t uid;
	uint64_t modseq;
	char guid[STORE_GUID_LEN + 1];
};

struct msgid_todo {
	uint32_t uid;
	uint64_t modseq;
	char guid[STORE_GUID_LEN + 1];
};

static void
msgid_hit_take(struct msgid_hit *h, bool *found, uint32_t uid, uint64_t modseq,
	const char *guid)
{
	if (*found && h->uid <= uid)
		return;
	h->uid = uid;
	h->modseq = modseq;
	str_lcpy(h->guid, guid ? guid : "", sizeof(h->guid));
	*found = true;
}

/* Records of the mailbox written before the index (msgid NULL) with
 * internaldate >= since: compute each one's Message-ID from its body,
 * store it when `fill` (inside a write op), and take it as a hit when
 * it is msgid.  A record whose body is unreadable is left NULL. */
static int
msgid_backfill(struct store_user *u, int64_t mbid, const char *msgid, int64_t since, bool fill,
	struct msgid_hit *hit, bool *found, struct err *err)
{
	/* INDEXED BY: with ORDER BY uid (or statistics) the planner may
	 * prefer the primary key and scan the whole mailbox. */
	sqlite3_stmt *s = store_user_stmt(u, "SELECT uid, modseq, guid FROM records"
		" INDEXED BY records_msgid WHERE mailbox = ?1 AND msgid IS NULL AND internaldate >= ?2",
		err);
	struct msgid_todo *v = NULL;
	struct buf mid = BUF_INIT;
	size_t n = 0, cap = 0;
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mbid);
	sqlite3_bind_int64(s, 2, since);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *g = (const char *)sqlite3_column_text(s, 2);
		if (n == cap) {
			cap = cap ? cap * 2 : 16;
			v = xreallocarray(v, cap, sizeof(*v));
		}
		v[n].uid = (uint32_t)sqlite3_column_int64(s, 0);
		v[n].modseq = (uint64_t)sqlite3_column_int64(s, 1);
		str_lcpy(v[n].guid, g ? g : "", sizeof(v[n].guid));
		n++;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(v);
		return store_sql_err(u->db, rc, err, "message-id backfill");
	}
	rc = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct store_blob b;
		struct err e;

		if (store_blob_map(u, v[i].guid, &b, &e) < 0) {
			log_warn("message-id index: body unreadable user=%s uid=%u guid=%s error=%s",
				u->name, v[i].uid, v[i].guid, log_q(e.msg));
			continue;
		}
		store_message_id(b.data, b.len, &mid);
		store_blob_release(&b);
		if (str_eq(buf_cstr(&mid), msgid))
			msgid_hit_take(hit, found, v[i].uid, v[i].modseq, v[i].guid);
		if (!fill)
			continue;
		s = store_user_stmt(u, "UPDATE records SET msgid = ?3 WHERE mailbox = ?1 AND uid = ?2"
			" AND msgid IS NULL", err);
		if (s == NULL) {
			rc = -1;
			break;
		}
		sqlite3_bind_int64(s, 1, mbid);
		sqlite3_bind_int64(s, 2, v[i].uid);
		sqlite3_bind_text(s, 3, buf_cstr(&mid), -1, SQLITE_STATIC);
		rc = sqlite3_step(s);
		sqlite3_reset(s);
		rc = rc == SQLITE_DONE ? 0 : store_sql_err(u->db, rc, err, "message-id backfill");
	}
	buf_free(&mid);
	free(v);
	return rc;
}

/* 1 and *hit = the lowest-uid record of mailbox mbid (live or expunged)
 * with this Message-ID and internaldate >= since; 0 none; -1 error.
 * Must run inside a transaction (read or write). */
static int
msgid_lookup(struct store_user *u, int64_t mbid, const char *msgid, int64_t since, bool fill,
	struct msgid_hit *hit, struct err *err)
{
	sqlite3_stmt *s;
	bool found = false;
	int rc;

	if (msgid == NULL || msgid[0] == '\0')
		return 0;
	if (msgid_backfill(u, mbid, msgid, since, fill, hit, &found, err) < 0)
		return -1;
	/* Usually no row or one; the lowest uid is taken here rather than
	 * by ORDER BY, which could steer the planner off the index. */
	s = store_user_stmt(u, "SELECT uid, modseq, guid FROM records INDEXED BY records_msgid"
		" WHERE mailbox = ?1 AND msgid = ?2 AND internaldate >= ?3", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mbid);
	sqlite3_bind_text(s, 2, msgid, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, since);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW)
		msgid_hit_take(hit, &found, (uint32_t)sqlite3_column_int64(s, 0),
			(uint64_t)sqlite3_column_int64(s, 1), (const char *)sqlite3_column_text(s, 2));
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "message-id lookup");
	return found ? 1 : 0;
}

int
store_msgid_find(struct store_user *u, const char *mailbox_id, const char *msgid, int64_t since,
	uint32_t *uid_r, struct err *err)
{
	struct store_mbrow row;
	struct msgid_hit hit;
	int rc;

	if (uid_r)
		*uid_r = 0;
	if (store_user_read_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_id(u, mailbox_id, true, &row, err);
	if (rc == 0)
		rc = msgid_lookup(u, row.id, msgid, since, false, &hit, err);
	store_user_read_end(u);
	if (rc == 1 && uid_r)
		*uid_r = hit.uid;
	return rc;
}

static bool
dedup_wanted(const struct store_dedup *dedup, size_t i)
{
	return dedup != NULL && dedup[i].msgid != NULL && dedup[i].msgid[0] != '\0';
}

/* ------------------------------------------------------------------ */
/* append */

struct prep {
	char guid[STORE_GUID_LEN + 1];
	struct buf kw;
	struct imapenv env;
	struct buf msgid;         /* the message's own Message-ID ("" none): its index entry */
	bool prewritten;
	bool dup_hint;            /* looked like a duplicate before the transaction */
	bool dup;                 /* is one (found in the transaction) */
};

/* Before any lock: which messages whose bodies would be files already
 * look like duplicates (so their files are not written)?  Only a hint
 * (errors are ignored): the check that counts runs in the transaction.
 * Inline bodies cost nothing to skip there, so they are not probed. */
static void
append_dup_probe(struct store_user *u, const char *mailbox_id, const struct store_append_msg *msgs,
	const struct store_dedup *dedup, size_t n, struct prep *pp)
{
	struct store_mbrow row;
	struct msgid_hit hit;
	bool any = false;

	for (size_t i = 0; i < n; i++)
		any = any || (dedup_wanted(dedup, i) && !store_blob_is_inline(u, msgs[i].len));
	if (!any || store_user_read_begin(u, NULL) < 0)
		return;
	if (store_mailbox_load_id(u, mailbox_id, false, &row, NULL) == 0) {
		for (size_t i = 0; i < n; i++)
			if (dedup_wanted(dedup, i) && !store_blob_is_inline(u, msgs[i].len))
				pp[i].dup_hint = msgid_lookup(u, row.id, dedup[i].msgid, dedup[i].since,
					false, &hit, NULL) == 1;
	}
	store_user_read_end(u);
}

/* One append call: its arguments, the per-message preparation, and what
 * the transaction has done so far. */
struct append_op {
	struct store_user *u;
	const struct store_append_msg *msgs;
	const struct store_dedup *dedup;
	size_t n;
	struct store_append_result *res;
	struct store_blob_tmp *tmp;
	struct prep *pp;
	struct store_mbrow row;
	uint64_t m;               /* the op's modseq, 0 until a record is added */
	uint64_t added, nadded;   /* bytes and records added */
	bool any_dup;
};

/* The arguments are sane (no lock, nothing changed); *total_r = their bytes. */
static int
append_check(const struct store_user *u, const struct store_append_msg *msgs, size_t n,
	uint64_t *total_r, struct err *err)
{
	uint64_t total = 0;

	if (u->st->opts.read_only)
		return err_set(err, ERR_PERM, "read-only replica");
	if (n == 0 || msgs == NULL)
		return err_set(err, ERR_INVALID, "nothing to append");
	for (size_t i = 0; i < n; i++) {
		if (msgs[i].data == NULL && msgs[i].len != 0)
			return err_set(err, ERR_INVALID, "message %zu has no data", i);
		if (msgs[i].len > STORE_MESSAGE_MAX)
			return err_set(err, ERR_TOOBIG, "message of %zu bytes is over the limit of %u",
				msgs[i].len, STORE_MESSAGE_MAX);
		if (msgs[i].sysflags & ~STORE_FLAGS_ALL)
			return err_set(err, ERR_INVALID, "unknown system flag bits 0x%x", msgs[i].sysflags);
		if (msgs[i].internaldate < 0)
			return err_set(err, ERR_INVALID, "negative internal date");
		total += msgs[i].len;
	}
	*total_r = total;
	return 0;
}

/* Before any lock: canonical keywords, then each message's GUID, IMAP
 * envelope and body structure, and Message-ID (the expensive part). */
static int
append_prepare(struct append_op *op, struct err *err)
{
	const struct store_append_msg *msgs = op->msgs;
	struct prep *pp = op->pp;
	int rc = 0;

	for (size_t i = 0; i < op->n && rc == 0; i++)
		rc = store_keywords_canon(msgs[i].keywords, &pp[i].kw, err);
	if (rc < 0)
		return rc;
	for (size_t i = 0; i < op->n; i++) {
		const char *data = msgs[i].len ? msgs[i].data : "";
		if (op->tmp != NULL) {
			store_blob_tmp_guid(op->tmp, pp[i].guid);
			mime_release_map(data, msgs[i].len);
		} else {
			store_guid(data, msgs[i].len, pp[i].guid);
		}
		imapenv_build(data, msgs[i].len, &pp[i].env);
		mime_release_map(NULL, 0);
		store_message_id(data, msgs[i].len, &pp[i].msgid);
	}
	return rc;
}

/* Large bodies (not likely duplicates) written and fsynced before the
 * transaction, under blobs.lock shared; on failure the shared lock is
 * given back (outside a caller's transaction) and the markers from
 * ntmps on are kept. */
static int
append_prewrite(struct append_op *op, size_t ntmps, struct err *err)
{
	struct store_user *u = op->u;
	const struct store_append_msg *msgs = op->msgs;
	struct prep *pp = op->pp;
	bool any_file = false;
	int rc = 0;

	for (size_t i = 0; i < op->n; i++)
		if (!pp[i].dup_hint && !store_blob_is_inline(u, msgs[i].len))
			any_file = true;
	if (!any_file)
		return 0;
	/* Large bodies are written and fsynced before the transaction,
	 * so concurrent appenders sync their files in parallel. */
	if (store_blob_lock(u, false, err) < 0)
		return -1;
	for (size_t i = 0; i < op->n && rc == 0; i++) {
		if (pp[i].dup_hint || store_blob_is_inline(u, msgs[i].len))
			continue;
		if (op->tmp != NULL)
			rc = store_blob_prewrite_tmp(u, pp[i].guid, op->tmp, err);
		else
			rc = store_blob_prewrite(u, pp[i].guid, msgs[i].len ? msgs[i].data : "",
				msgs[i].len, err);
		pp[i].prewritten = rc == 0;
	}
	if (rc < 0) {
		if (!u->in_txn)
			store_blob_unlock_shared(u);
		store_blob_markers_keep(u, ntmps);
	}
	return rc;
}

/* In the transaction: is message i a duplicate (1, its result names the
 * record found), or not (0), or -1 error? */
static int
append_dup_found(struct append_op *op, size_t i, struct err *err)
{
	const struct store_dedup *d = &op->dedup[i];
	struct store_append_result *r = op->res != NULL ? &op->res[i] : NULL;
	struct msgid_hit hit;
	int rc;

	rc = msgid_lookup(op->u, op->row.id, d->msgid, d->since, true, &hit, err);
	if (rc != 1)
		return rc;
	op->any_dup = true;
	op->pp[i].dup = true;
	if (r != NULL) {
		r->uid = hit.uid;
		r->modseq = hit.modseq;
		memcpy(r->guid, hit.guid, sizeof(r->guid));
		r->duplicate = true;
	}
	return 1;
}

/* In the transaction: message i's blob row and record at the mailbox's
 * uidnext, with the op's modseq (taken at the first record). */
static int
append_record(struct append_op *op, size_t i, struct err *err)
{
	struct store_user *u = op->u;
	const struct store_append_msg *msg = &op->msgs[i];
	struct prep *p = &op->pp[i];
	struct store_mbrow *row = &op->row;
	const char *data = msg->len ? msg->data : "";
	struct store_record r;
	int rc;

	if (op->m == 0 && (rc = store_user_op_modseq(u, &op->m, err)) < 0)
		return rc;
	if (row->mb.uidnext == 0 || row->mb.uidnext == UINT32_MAX)
		return err_set(err, ERR_PERM, "mailbox %s has run out of uids", log_q(row->mb.name));
	rc = store_blob_put(u, p->guid, data, msg->len, p->prewritten, err);
	if (rc < 0)
		return rc;
	memset(&r, 0, sizeof(r));
	r.uid = row->mb.uidnext;
	memcpy(r.guid, p->guid, sizeof(r.guid));
	r.size = msg->len;
	r.internaldate = msg->internaldate ? msg->internaldate : (int64_t)time(NULL);
	r.sysflags = msg->sysflags;
	r.keywords = buf_cstr(&p->kw);
	r.modseq = op->m;
	rc = store_record_insert(u, row, &r, buf_cstr(&p->env.envelope),
		buf_cstr(&p->env.bodystructure), p->env.tree.data, p->env.tree.len, buf_cstr(&p->msgid), err);
	if (rc == 0 && op->res != NULL) {
		op->res[i].uid = r.uid;
		op->res[i].modseq = op->m;
		memcpy(op->res[i].guid, r.guid, sizeof(op->res[i].guid));
	}
	op->added += msg->len;
	op->nadded++;
	return rc;
}

/* In the transaction: each message, in order, found as a duplicate or
 * added; stops at the first error. */
static int
append_records(struct append_op *op, struct err *err)
{
	int rc = 0;

	for (size_t i = 0; i < op->n && rc == 0; i++) {
		if (op->res != NULL)
			memset(&op->res[i], 0, sizeof(op->res[i]));
		if (dedup_wanted(op->dedup, i)) {
			rc = append_dup_found(op, i, err);
			if (rc < 0)
				break;
			if (rc == 1) {
				rc = 0;
				continue;
			}
		}
		rc = append_record(op, i, err);
	}
	return rc;
}

/* In the transaction, after the records: orphan bodies dropped, quota,
 * usage, mailbox counters, the change event, and the commit ticket a
 * duplicate needs. */
static int
append_settle(struct append_op *op, struct err *err)
{
	struct store_user *u = op->u;
	struct prep *pp = op->pp;
	int rc = 0;

	/* A body prewritten for what turned out to be a duplicate (another
	 * process's delivery won the race) would be an orphan file. */
	for (size_t i = 0; i < op->n && rc == 0 && op->any_dup; i++)
		if (pp[i].prewritten && pp[i].dup)
			rc = store_blob_drop_unused(u, pp[i].guid, err);
	if (rc == 0 && op->dedup != NULL && op->nadded > 0)
		rc = store_user_quota_check(u, op->added, op->nadded, err);
	if (rc == 0 && op->nadded > 0)
		rc = store_user_usage_add(u, (int64_t)op->added, (int64_t)op->nadded, err);
	if (rc == 0 && op->nadded > 0)
		rc = store_mailbox_save_counters(u, &op->row, err);
	if (rc == 0 && op->nadded > 0)
		store_user_event(u, STORE_CHANGE_MAILBOX, op->row.mb.uniqueid);
	/* A duplicate is acknowledged only once the record it names is
	 * durable: take a ticket and pass the group-commit barrier. */
	if (rc == 0 && op->any_dup)
		u->dirty = true;
	return rc;
}

/* tmp (store_append_tmp, n == 1): msgs[0].data maps tmp's file; its
 * GUID is already hashed, the parser gives the mapping's pages back as
 * it goes, and the file is linked into place rather than written. */
static int
append_impl(struct store_user *u, const char *mailbox_id, const struct store_append_msg *msgs,
	const struct store_dedup *dedup, size_t n, struct store_append_result *res,
	uint32_t *uidvalidity_r, struct store_blob_tmp *tmp, struct err *err)
{
	struct append_op op = { .u = u, .msgs = msgs, .dedup = dedup, .n = n, .res = res, .tmp = tmp };
	uint64_t total = 0;
	size_t ntmps;
	int rc;

	rc = append_check(u, msgs, n, &total, err);
	if (rc < 0)
		return rc;
	/* In flight from here (store_commit.c): a group-commit leader waits
	 * briefly for appenders that are hashing and parsing, so that one
	 * fsync covers them too. */
	if (!u->in_txn)
		store_commit_enter(&u->commit);
	op.pp = xcalloc(n, sizeof(*op.pp));
	rc = append_prepare(&op, err);
	if (rc < 0)
		goto out;
	append_dup_probe(u, mailbox_id, msgs, dedup, n, op.pp);
	ntmps = u->nblob_tmps;
	rc = append_prewrite(&op, ntmps, err);
	if (rc < 0)
		goto out;
	if (store_user_op_begin(u, err) < 0) {
		if (!u->in_txn)
			store_blob_unlock_shared(u);
		store_blob_markers_keep(u, ntmps);
		rc = -1;
		goto out;
	}
	u->op_ntmps = ntmps;   /* this op's markers include its prewritten bodies */
	rc = store_mailbox_load_id(u, mailbox_id, false, &op.row, err);
	/* Without duplicate checks the quota is checked first, as always. */
	if (rc == 0 && dedup == NULL)
		rc = store_user_quota_check(u, total, n, err);
	if (rc == 0)
		rc = append_records(&op, err);
	if (rc == 0)
		rc = append_settle(&op, err);
	rc = store_user_op_end(u, rc, "store.append.before_commit", "store.append.after_commit", err);
	if (rc == 0) {
		store_stats_g.appended += op.nadded;
		if (uidvalidity_r)
			*uidvalidity_r = op.row.mb.uidvalidity;
	}
out:
	if (!u->in_txn)
		store_commit_leave(&u->commit);  /* no-op once the ticket was taken */
	for (size_t i = 0; i < n; i++) {
		buf_free(&op.pp[i].kw);
		buf_free(&op.pp[i].msgid);
		imapenv_free(&op.pp[i].env);
	}
	free(op.pp);
	return rc;
}

int
store_append(struct store_user *u, const char *mailbox_id, const struct store_append_msg *msgs,
	size_t n, struct store_append_result *res, uint32_t *uidvalidity_r, struct err *err)
{
	return append_impl(u, mailbox_id, msgs, NULL, n, res, uidvalidity_r, NULL, err);
}

int
store_append_tmp(struct store_user *u, const char *mailbox_id, const struct store_append_msg *msg,
	struct store_blob_tmp *t, struct store_append_result *res, uint32_t *uidvalidity_r,
	struct err *err)
{
	struct store_append_msg m = *msg;
	void *map;
	int rc;

	if (t->failed) {
		*err = t->err;
		return -1;
	}
	if (t->len == 0 || t->len > STORE_MESSAGE_MAX)
		return err_set(err, t->len == 0 ? ERR_INVALID : ERR_TOOBIG,
			"message of %llu bytes", (unsigned long long)t->len);
	map = mmap(NULL, (size_t)t->len, PROT_READ, MAP_SHARED, t->fd, 0);
	if (map == MAP_FAILED)
		return err_errno(err, ERR_TEMP, "mmap a message body");
	m.data = map;
	m.len = (size_t)t->len;
	rc = append_impl(u, mailbox_id, &m, NULL, 1, res, uidvalidity_r, t, err);
	munmap(map, (size_t)t->len);
	return rc;
}

int
store_append_dedup(struct store_user *u, const char *mailbox_id,
	const struct store_append_msg *msgs, const struct store_dedup *dedup, size_t n,
	struct store_append_result *res, uint32_t *uidvalidity_r, struct err *err)
{
	return append_impl(u, mailbox_id, msgs, dedup, n, res, uidvalidity_r, NULL, err);
}

/* ------------------------------------------------------------------ */
/* STORE */

/* New keyword string for op applied to old. */
static int
keywords_apply(const char *old, enum store_flags_op op, const char *arg, struct buf *out,
	struct err *err)
{
	char **a = NULL, **b = NULL;
	size_t na = 0, nb = 0;
	int rc = 0;

	if (op == STORE_FLAGS_REPLACE)
		return store_keywords_canon(arg, out, err);
	if (keywords_split(old, &a, &na, err) < 0)
		return -1;
	if (keywords_split(arg, &b, &nb, err) < 0) {
		words_free(a, na);
		return -1;
	}
	for (size_t j = 0; j < nb; j++) {
		size_t i;
		for (i = 0; i < na; i++)
			if (strcasecmp(a[i], b[j]) == 0)
				break;
		if (op == STORE_FLAGS_ADD && i == na) {
			a = xreallocarray(a, na + 1, sizeof(*a));
			a[na++] = b[j];
			b[j] = NULL;
		} else if (op == STORE_FLAGS_REMOVE && i < na) {
			free(a[i]);
			a[i] = a[--na];
		}
	}
	rc = words_join(a, na, out, err);
	words_free(a, na);
	words_free(b, nb);
	return rc;
}

static int
record_set_flags(struct store_user *u, int64_t mbid, uint32_t uid, uint32_t sys, const char *kw,
	uint64_t m, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, "UPDATE records SET sysflags = ?3, keywords = ?4,"
		" modseq = ?5 WHERE mailbox = ?1 AND uid = ?2", err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mbid);
	sqlite3_bind_int64(s, 2, uid);
	sqlite3_bind_int64(s, 3, sys);
	sqlite3_bind_text(s, 4, kw, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)m);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "flags update");
	return 0;
}

int
store_flags(struct store_user *u, const char *mailbox_id, const struct store_range *ranges,
	size_t nranges, enum store_flags_op op, uint32_t sysflags, const char *keywords,
	uint64_t unchangedsince, struct store_uids *changed_r, struct store_uids *failed_r,
	uint64_t *modseq_r, struct err *err)
{
	struct store_mbrow row;
	struct orec *v = NULL;
	size_t n = 0;
	struct buf kwarg = BUF_INIT, kwnew = BUF_INIT;
	uint64_t m = 0;
	int rc;

	if (modseq_r)
		*modseq_r = 0;
	if (op != STORE_FLAGS_ADD && op != STORE_FLAGS_REMOVE && op != STORE_FLAGS_REPLACE)
		return err_set(err, ERR_INVALID, "bad flags operation");
	if (sysflags & ~STORE_FLAGS_ALL)
		return err_set(err, ERR_INVALID, "unknown system flag bits 0x%x", sysflags);
	if (ranges == NULL || nranges == 0)
		return err_set(err, ERR_INVALID, "no uid ranges");
	if (ranges_check(ranges, nranges, err) < 0 || store_keywords_canon(keywords, &kwarg, err) < 0)
		return -1;
	if (store_user_op_begin(u, err) < 0) {
		buf_free(&kwarg);
		return -1;
	}
	rc = store_mailbox_load_id(u, mailbox_id, false, &row, err);
	if (rc == 0)
		rc = load_live(u, row.id, ranges, nranges, &v, &n, err);
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct store_record nr = v[i].r;
		uint32_t sys;

		if (unchangedsince != 0 && v[i].r.modseq > unchangedsince) {
			store_uids_add(failed_r, v[i].r.uid);
			continue;
		}
		sys = op == STORE_FLAGS_ADD ? (v[i].r.sysflags | sysflags) :
			op == STORE_FLAGS_REMOVE ? (v[i].r.sysflags & ~sysflags) : sysflags;
		rc = keywords_apply(v[i].r.keywords, op, buf_cstr(&kwarg), &kwnew, err);
		if (rc < 0)
			break;
		if (sys == v[i].r.sysflags && str_eq(buf_cstr(&kwnew), v[i].r.keywords))
			continue;
		rc = store_user_op_modseq(u, &m, err);
		if (rc < 0)
			break;
		nr.sysflags = sys;
		nr.keywords = buf_cstr(&kwnew);
		nr.modseq = m;
		rc = record_set_flags(u, row.id, nr.uid, sys, nr.keywords, m, err);
		if (rc < 0)
			break;
		row.mb.sync_crc ^= store_record_crc(&v[i].r) ^ store_record_crc(&nr);
		row.mb.highestmodseq = m;
		store_uids_add(changed_r, nr.uid);
	}
	if (rc == 0 && m != 0) {
		rc = store_mailbox_save_counters(u, &row, err);
		store_user_event(u, STORE_CHANGE_MAILBOX, row.mb.uniqueid);
	}
	orecs_free(v, n);
	buf_free(&kwarg);
	buf_free(&kwnew);
	rc = store_user_op_end(u, rc, "store.flags.before_commit", NULL, err);
	if (rc < 0) {
		if (changed_r)
			changed_r->n = 0;
		if (failed_r)
			failed_r->n = 0;
		return -1;
	}
	if (modseq_r)
		*modseq_r = m;
	return 0;
}

/* ------------------------------------------------------------------ */
/* EXPUNGE */

static int
record_tombstone(struct store_user *u, struct store_mbrow *row, const struct store_record *r,
	uint64_t m, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, "UPDATE records SET expunged_modseq = ?3, modseq = ?3"
		" WHERE mailbox = ?1 AND uid = ?2", err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, row->id);
	sqlite3_bind_int64(s, 2, r->uid);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)m);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "expunge");
	row->mb.sync_crc ^= store_record_crc(r);
	row->mb.highestmodseq = m;
	return store_user_usage_add(u, -(int64_t)r->size, -1, err);
}

/* Leave record uid of mailbox mbid out of the message-id index: an
 * undone append must not suppress the redelivery of its message.  ''
 * (as for a message without one), not NULL: a NULL is filled in again
 * from the body by the next duplicate check. */
static int
record_forget_msgid(struct store_user *u, int64_t mbid, uint32_t uid, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, "UPDATE records SET msgid = ''"
		" WHERE mailbox = ?1 AND uid = ?2", err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mbid);
	sqlite3_bind_int64(s, 2, uid);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : store_sql_err(u->db, rc, err, "message-id forget");
}

/* store_expunge and store_append_undo: forget also drops the expunged
 * records from the message-id index. */
static int
expunge_rows(struct store_user *u, const char *mailbox_id, const struct store_range *ranges,
	size_t nranges, bool only_deleted, bool forget, struct store_uids *expunged_r,
	struct err *err)
{
	struct store_mbrow row;
	struct orec *v = NULL;
	size_t n = 0, count = 0;
	uint64_t m = 0;
	int rc;

	if (ranges != NULL && (nranges == 0 || ranges_check(ranges, nranges, err) < 0))
		return err_set(err, ERR_INVALID, "bad uid ranges");
	if (store_user_op_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_id(u, mailbox_id, false, &row, err);
	if (rc == 0)
		rc = load_live(u, row.id, ranges, nranges, &v, &n, err);
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (only_deleted && !(v[i].r.sysflags & STORE_FLAG_DELETED))
			continue;
		rc = store_user_op_modseq(u, &m, err);
		if (rc == 0)
			rc = record_tombstone(u, &row, &v[i].r, m, err);
		if (rc == 0 && forget)
			rc = record_forget_msgid(u, row.id, v[i].r.uid, err);
		if (rc == 0) {
			store_uids_add(expunged_r, v[i].r.uid);
			count++;
		}
	}
	if (rc == 0 && count > 0) {
		rc = store_mailbox_save_counters(u, &row, err);
		store_user_event(u, STORE_CHANGE_MAILBOX, row.mb.uniqueid);
	}
	orecs_free(v, n);
	rc = store_user_op_end(u, rc, "store.expunge.before_commit", "store.expunge.after_commit", err);
	if (rc < 0 && expunged_r)
		expunged_r->n = 0;
	return rc;
}

int
store_expunge(struct store_user *u, const char *mailbox_id, const struct store_range *ranges,
	size_t nranges, bool only_deleted, struct store_uids *expunged_r, struct err *err)
{
	return expunge_rows(u, mailbox_id, ranges, nranges, only_deleted, false, expunged_r, err);
}

int
store_append_undo(struct store_user *u, const char *mailbox_id, const uint32_t *uids, size_t n,
	struct err *err)
{
	struct store_range *r;
	int rc;

	if (n == 0)
		return 0;
	r = xcalloc(n, sizeof(*r));
	for (size_t i = 0; i < n; i++)
		r[i].lo = r[i].hi = uids[i];
	rc = expunge_rows(u, mailbox_id, r, n, false, true, NULL, err);
	free(r);
	return rc;
}

/* ------------------------------------------------------------------ */
/* COPY / MOVE */

static int
copy_rows(struct store_user *u, struct store_mbrow *src, const struct store_range *ranges,
	size_t nranges, struct store_mbrow *dst, bool move, struct store_uids *src_r,
	struct store_uids *dst_r, struct err *err)
{
	struct orec *v = NULL;
	size_t n = 0;
	uint64_t m, total = 0;
	int rc;

	rc = load_live(u, src->id, ranges, nranges, &v, &n, err);
	if (rc < 0)
		return -1;
	if (n == 0) {
		orecs_free(v, n);
		return 0;
	}
	for (size_t i = 0; i < n; i++)
		total += v[i].r.size;
	if (!move)
		rc = store_user_quota_check(u, total, n, err);
	if (rc == 0)
		rc = store_user_op_modseq(u, &m, err);
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct store_record nr = v[i].r;
		sqlite3_stmt *s;

		if (dst->mb.uidnext == 0 || dst->mb.uidnext == UINT32_MAX) {
			rc = err_set(err, ERR_PERM, "mailbox %s has run out of uids", log_q(dst->mb.name));
			break;
		}
		nr.uid = dst->mb.uidnext;
		nr.modseq = m;
		nr.expunged_modseq = 0;
		s = store_user_stmt(u, "INSERT INTO records(mailbox, uid, guid, size, internaldate,"
			" sysflags, keywords, modseq, expunged_modseq, envelope, bodystructure, body, parts,"
			" msgid)"
			" SELECT ?1, ?2, guid, size, internaldate, sysflags, keywords, ?3, 0, envelope,"
			" bodystructure, body, parts, msgid FROM records WHERE mailbox = ?4 AND uid = ?5", err);
		if (s == NULL) {
			rc = -1;
			break;
		}
		sqlite3_bind_int64(s, 1, dst->id);
		sqlite3_bind_int64(s, 2, nr.uid);
		sqlite3_bind_int64(s, 3, (sqlite3_int64)m);
		sqlite3_bind_int64(s, 4, src->id);
		sqlite3_bind_int64(s, 5, v[i].r.uid);
		rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc != SQLITE_DONE) {
			rc = store_sql_err(u->db, rc, err, "copy");
			break;
		}
		rc = 0;
		dst->mb.uidnext = nr.uid + 1;
		dst->mb.highestmodseq = m;
		dst->mb.sync_crc ^= store_record_crc(&nr);
		rc = store_user_usage_add(u, (int64_t)nr.size, 1, err);
		if (rc == 0 && move)
			rc = record_tombstone(u, src, &v[i].r, m, err);
		store_uids_add(src_r, v[i].r.uid);
		store_uids_add(dst_r, nr.uid);
	}
	orecs_free(v, n);
	if (rc == 0 && src != dst)
		rc = store_mailbox_save_counters(u, src, err);
	if (rc == 0)
		rc = store_mailbox_save_counters(u, dst, err);
	if (rc == 0) {
		store_user_event(u, STORE_CHANGE_MAILBOX, dst->mb.uniqueid);
		if (move)
			store_user_event(u, STORE_CHANGE_MAILBOX, src->mb.uniqueid);
	}
	return rc;
}

int
store_record_move_all(struct store_user *u, struct store_mbrow *src, struct store_mbrow *dst,
	struct err *err)
{
	return copy_rows(u, src, NULL, 0, dst, true, NULL, NULL, err);
}

int
store_copy(struct store_user *u, const char *src_id, const struct store_range *ranges,
	size_t nranges, const char *dst_id, bool move, struct store_uids *src_r,
	struct store_uids *dst_r, uint32_t *dst_uidvalidity_r, struct err *err)
{
	struct store_mbrow src, dst;
	int rc;

	if (ranges == NULL || nranges == 0)
		return err_set(err, ERR_INVALID, "no uid ranges");
	if (ranges_check(ranges, nranges, err) < 0)
		return -1;
	if (store_user_op_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_id(u, src_id, false, &src, err);
	if (rc == 0)
		rc = store_mailbox_load_id(u, dst_id, false, &dst, err);
	if (rc == 0)
		rc = copy_rows(u, &src, ranges, nranges, src.id == dst.id ? &src : &dst, move, src_r,
			dst_r, err);
	rc = store_user_op_end(u, rc, move ? "store.move.before_commit" : "store.copy.before_commit",
		NULL, err);
	if (rc < 0) {
		if (src_r)
			src_r->n = 0;
		if (dst_r)
			dst_r->n = 0;
		return -1;
	}
	if (dst_uidvalidity_r)
		*dst_uidvalidity_r = dst.mb.uidvalidity;
	return 0;
}

/* ------------------------------------------------------------------ */
/* reads */

static char *
col_dup(sqlite3_stmt *s, int c)
{
	if (sqlite3_column_type(s, c) == SQLITE_NULL)
		return NULL;
	return xstrdup((const char *)sqlite3_column_text(s, c));
}

int
store_record_get(struct store_user *u, const char *mailbox_id, uint32_t uid,
	struct store_record_full *r, struct err *err)
{
	struct store_mbrow row;
	sqlite3_stmt *s;
	int rc;

	memset(r, 0, sizeof(*r));
	if (store_user_read_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_id(u, mailbox_id, true, &row, err);
	if (rc < 0)
		goto out;
	s = store_user_stmt(u, "SELECT " REC_COLS ", envelope, bodystructure, body, parts"
		" FROM records WHERE mailbox = ? AND uid = ?", err);
	if (s == NULL) {
		rc = -1;
		goto out;
	}
	sqlite3_bind_int64(s, 1, row.id);
	sqlite3_bind_int64(s, 2, uid);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		rec_fill(s, 0, &r->rec);
		r->keywords = xstrdup(r->rec.keywords);
		r->rec.keywords = r->keywords;
		r->envelope = col_dup(s, 8);
		r->bodystructure = col_dup(s, 9);
		r->body = col_dup(s, 10);
		if (sqlite3_column_type(s, 11) == SQLITE_BLOB) {
			r->parts_len = (size_t)sqlite3_column_bytes(s, 11);
			r->parts = xmemdup(sqlite3_column_blob(s, 11), r->parts_len);
		}
		rc = 0;
	} else if (rc == SQLITE_DONE) {
		rc = err_set(err, ERR_NOTFOUND, "no message with uid %u", uid);
	} else {
		rc = store_sql_err(u->db, rc, err, "record");
	}
	sqlite3_reset(s);
out:
	store_user_read_end(u);
	return rc;
}

void
store_record_full_free(struct store_record_full *r)
{
	free(r->keywords);
	free(r->envelope);
	free(r->bodystructure);
	free(r->body);
	free(r->parts);
	memset(r, 0, sizeof(*r));
}

/* ------------------------------------------------------------------ */
/* batched read (FETCH) */

static int
cmp_range(const void *a, const void *b)
{
	const struct store_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* Sorted, merged copy of ranges (overlapping and adjacent ones joined). */
static size_t
ranges_normalise(const struct store_range *ranges, size_t nranges, struct store_range **out)
{
	struct store_range *v = xreallocarray(NULL, nranges ? nranges : 1, sizeof(*v));
	size_t k = 0;

	memcpy(v, ranges, nranges * sizeof(*v));
	if (nranges > 1)
		qsort(v, nranges, sizeof(*v), cmp_range);
	for (size_t i = 0; i < nranges; i++) {
		if (k > 0 && (v[k - 1].hi == UINT32_MAX || v[i].lo <= v[k - 1].hi + 1)) {
			if (v[i].hi > v[k - 1].hi)
				v[k - 1].hi = v[i].hi;
			continue;
		}
		v[k++] = v[i];
	}
	*out = v;
	return k;
}

static const char *const full_sql[2] = {
	"SELECT " REC_COLS ", envelope, bodystructure, body, NULL"
	" FROM records WHERE mailbox = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid",
	"SELECT " REC_COLS ", envelope, bodystructure, body, parts"
	" FROM records WHERE mailbox = ?1 AND uid BETWEEN ?2 AND ?3 ORDER BY uid",
};

int
store_records_full(struct store_user *u, const char *mailbox_id,
	const struct store_range *ranges, size_t nranges, bool with_parts,
	store_record_full_fn fn, void *ctx, struct err *err)
{
	static const struct store_range all = { 1, UINT32_MAX };
	struct store_range *rv = NULL;
	struct store_mbrow row;
	sqlite3_stmt *s;
	size_t nr;
	int rc, r2 = 0, w = with_parts ? 1 : 0;

	if (fn == NULL)
		return err_set(err, ERR_INVALID, "no callback");
	if (ranges == NULL) {
		if (nranges != 0)
			return err_set(err, ERR_INVALID, "no uid ranges");
		ranges = &all;
		nranges = 1;
	}
	if (ranges_check(ranges, nranges, err) < 0)
		return -1;
	if (u->full_busy)
		return err_set(err, ERR_INVALID, "store_records_full re-entered from its callback");
	if (store_user_read_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_id(u, mailbox_id, true, &row, err);
	if (rc < 0)
		goto out;
	if (u->full_stmt[w] == NULL) {
		rc = sqlite3_prepare_v3(u->db, full_sql[w], -1, SQLITE_PREPARE_PERSISTENT,
			&u->full_stmt[w], NULL);
		if (rc != SQLITE_OK) {
			rc = store_sql_err(u->db, rc, err, "prepare");
			u->full_stmt[w] = NULL;
			goto out;
		}
	}
	s = u->full_stmt[w];
	nr = ranges_normalise(ranges, nranges, &rv);
	u->full_busy = true;
	rc = SQLITE_DONE;
	for (size_t i = 0; i < nr && r2 == 0 && rc == SQLITE_DONE; i++) {
		sqlite3_reset(s);
		sqlite3_bind_int64(s, 1, row.id);
		sqlite3_bind_int64(s, 2, rv[i].lo);
		sqlite3_bind_int64(s, 3, rv[i].hi);
		while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
			struct store_record_full f;

			memset(&f, 0, sizeof(f));
			rec_fill(s, 0, &f.rec);
			f.keywords = (char *)f.rec.keywords;
			f.envelope = (char *)sqlite3_column_text(s, 8);
			f.bodystructure = (char *)sqlite3_column_text(s, 9);
			f.body = (char *)sqlite3_column_text(s, 10);
			if (with_parts && sqlite3_column_type(s, 11) == SQLITE_BLOB) {
				f.parts = (void *)sqlite3_column_blob(s, 11);
				f.parts_len = (size_t)sqlite3_column_bytes(s, 11);
			}
			r2 = fn(ctx, &f);
			if (r2 != 0)
				break;
		}
	}
	u->full_busy = false;
	if (r2 != 0)
		rc = r2;
	else if (rc == SQLITE_DONE)
		rc = 0;
	else
		rc = store_sql_err(u->db, rc, err, "records");
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
out:
	store_user_read_end(u);
	free(rv);
	return rc;
}

int
store_records_since(struct store_user *u, const char *mailbox_id, uint64_t since,
	store_record_fn fn, void *ctx, struct err *err)
{
	struct store_mbrow row;
	sqlite3_stmt *s;
	struct store_record r;
	int rc, r2 = 0;

	if (store_user_read_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_load_id(u, mailbox_id, true, &row, err);
	if (rc < 0)
		goto out;
	s = store_user_stmt(u, "SELECT " REC_COLS " FROM records WHERE mailbox = ? AND modseq > ?"
		" ORDER BY uid", err);
	if (s == NULL) {
		rc = -1;
		goto out;
	}
	sqlite3_bind_int64(s, 1, row.id);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)since);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		rec_fill(s, 0, &r);
		r2 = fn(ctx, &r);
		if (r2 != 0)
			break;
	}
	if (r2 != 0)
		rc = r2;
	else if (rc == SQLITE_DONE)
		rc = 0;
	else
		rc = store_sql_err(u->db, rc, err, "records since");
	sqlite3_reset(s);
out:
	store_user_read_end(u);
	return rc;
}

int
store_changes_since(struct store_user *u, uint64_t since, store_change_fn fn, void *ctx,
	struct err *err)
{
	/* One query over the three modseq indexes, merged by modseq. */
	sqlite3_stmt *s;
	int rc, r2 = 0;

	if (store_user_read_begin(u, err) < 0)
		return -1;
	s = store_user_stmt(u,
		"SELECT 1 AS item, m.modseq AS ms, m.uniqueid, m.name, m.uidvalidity, m.uidnext,"
		"  m.highestmodseq, m.createdmodseq, m.deleted_modseq, m.specialuse, m.sync_crc,"
		"  0, NULL, 0, 0, 0, NULL, 0, 0"
		" FROM mailboxes m WHERE m.modseq > ?1"
		" UNION ALL "
		"SELECT 2, r.modseq, m.uniqueid, m.name, 0, 0, 0, 0, 0, NULL, 0,"
		"  r.uid, r.guid, r.size, r.internaldate, r.sysflags, r.keywords, r.expunged_modseq, 0"
		" FROM records r JOIN mailboxes m ON m.id = r.mailbox WHERE r.modseq > ?1"
		" UNION ALL "
		"SELECT 3, s.modseq, NULL, s.name, 0, 0, 0, 0, 0, NULL, 0, 0, NULL, 0, 0, 0, NULL, 0,"
		"  s.subscribed"
		" FROM subs s WHERE s.modseq > ?1"
		" ORDER BY ms, item", err);
	if (s == NULL) {
		store_user_read_end(u);
		return -1;
	}
	sqlite3_bind_int64(s, 1, (sqlite3_int64)since);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		struct store_change c;
		struct store_mailbox mb;
		struct store_record r;
		const char *t;

		memset(&c, 0, sizeof(c));
		c.item = (enum store_change_item)sqlite3_column_int(s, 0);
		c.modseq = (uint64_t)sqlite3_column_int64(s, 1);
		c.mailbox_id = (const char *)sqlite3_column_text(s, 2);
		if (c.item == STORE_ITEM_MAILBOX) {
			memset(&mb, 0, sizeof(mb));
			str_lcpy(mb.uniqueid, c.mailbox_id ? c.mailbox_id : "", sizeof(mb.uniqueid));
			t = (const char *)sqlite3_column_text(s, 3);
			str_lcpy(mb.name, t ? t : "", sizeof(mb.name));
			mb.uidvalidity = (uint32_t)sqlite3_column_int64(s, 4);
			mb.uidnext = (uint32_t)sqlite3_column_int64(s, 5);
			mb.highestmodseq = (uint64_t)sqlite3_column_int64(s, 6);
			mb.createdmodseq = (uint64_t)sqlite3_column_int64(s, 7);
			mb.deleted_modseq = (uint64_t)sqlite3_column_int64(s, 8);
			t = (const char *)sqlite3_column_text(s, 9);
			str_lcpy(mb.specialuse, t ? t : "", sizeof(mb.specialuse));
			mb.sync_crc = (uint32_t)sqlite3_column_int64(s, 10);
			mb.modseq = c.modseq;
			c.mb = &mb;
		} else if (c.item == STORE_ITEM_RECORD) {
			memset(&r, 0, sizeof(r));
			r.uid = (uint32_t)sqlite3_column_int64(s, 11);
			t = (const char *)sqlite3_column_text(s, 12);
			str_lcpy(r.guid, t ? t : "", sizeof(r.guid));
			r.size = (uint64_t)sqlite3_column_int64(s, 13);
			r.internaldate = sqlite3_column_int64(s, 14);
			r.sysflags = (uint32_t)sqlite3_column_int64(s, 15);
			t = (const char *)sqlite3_column_text(s, 16);
			r.keywords = t ? t : "";
			r.expunged_modseq = (uint64_t)sqlite3_column_int64(s, 17);
			r.modseq = c.modseq;
			c.rec = &r;
		} else {
			c.mailbox_id = NULL;
			c.sub_name = (const char *)sqlite3_column_text(s, 3);
			c.subscribed = sqlite3_column_int(s, 18) != 0;
		}
		r2 = fn(ctx, &c);
		if (r2 != 0)
			break;
	}
	if (r2 != 0)
		rc = r2;
	else if (rc == SQLITE_DONE)
		rc = 0;
	else
		rc = store_sql_err(u->db, rc, err, "changes since");
	sqlite3_reset(s);
	store_user_read_end(u);
	return rc;
}
