/*
 * store_check.c - consistency check (and repair) of one user's store:
 * what `castorctl check [--repair]` runs.
 *
 * Checks, in order (invariants M1-M6 of store_user.c, M5 of store_blob.c):
 *   1. SQLite's own quick_check.
 *   2. Bodies: each blobs row's inline size or file (present, right
 *      size, SHA-1 equal to its name); each record's guid has a row;
 *      rows no record names; files under blobs/ no row names (orphans
 *      of a crash between blob write and commit) and stray temporaries.
 *   3. Modseq: nothing above the user's counter; each mailbox's
 *      highestmodseq covers its records and itself; uid < uidnext.
 *   4. Sync checksums recomputed from the live records.
 *   5. Quota usage recomputed.
 *   6. INBOX exists; live names valid and normalised.
 * Repair fixes what has one right answer: orphans and temporaries are
 * removed, unreferenced rows dropped, a missing row restored from an
 * intact file, counters raised, checksums and usage rewritten, INBOX
 * recreated.  A record whose body is gone is reported and kept (its
 * metadata may still be recovered from a replica); nothing is dropped
 * silently.  The whole check runs with blobs.lock held exclusively, so
 * no append is between its blob write and its commit meanwhile, and
 * (with repair) in one write transaction.
 */
#include "store/store.h"
#include "store/store_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

struct ck {
	struct store_user *u;
	bool repair;
	store_report_fn report;
	void *ctx;
	int problems;
	int leftovers;        /* crash leftovers removed (not problems) */
	char **unlink;        /* files to remove after commit */
	size_t nunlink;
};

static void problem(struct ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
problem(struct ck *c, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;

	buf_printf(&b, "user %s: ", c->u->name);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (c->repair)
		buf_puts(&b, " [repaired]");
	c->problems++;
	if (c->report)
		c->report(c->ctx, buf_cstr(&b));
	buf_free(&b);
}

/* Report a problem that repair cannot fix. */
static void
problem_nofix(struct ck *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
problem_nofix(struct ck *c, const char *fmt, ...)
{
	struct buf b = BUF_INIT;
	va_list ap;

	buf_printf(&b, "user %s: ", c->u->name);
	va_start(ap, fmt);
	buf_vprintf(&b, fmt, ap);
	va_end(ap);
	if (c->repair)
		buf_puts(&b, " [not repairable]");
	c->problems++;
	if (c->report)
		c->report(c->ctx, buf_cstr(&b));
	buf_free(&b);
}

static int
exec_sql(struct ck *c, const char *sql, struct err *err)
{
	return store_sql_exec(c->u->db, sql, err);
}

/* SHA-1 of a file; 0 and hex in out, -1 if unreadable. */
static int
file_sha1(const char *path, uint64_t *size_r, char *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat sb;
	void *m = NULL;

	if (fd < 0)
		return -1;
	if (fstat(fd, &sb) < 0) {
		close(fd);
		return -1;
	}
	*size_r = (uint64_t)sb.st_size;
	if (sb.st_size > 0) {
		m = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (m == MAP_FAILED) {
			close(fd);
			return -1;
		}
	}
	store_guid(m ? m : "", (size_t)sb.st_size, out);
	if (m)
		munmap(m, (size_t)sb.st_size);
	close(fd);
	return 0;
}

static int
check_integrity(struct ck *c, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (sqlite3_prepare_v2(c->u->db, "PRAGMA quick_check", -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(c->u->db, SQLITE_ERROR, err, "quick_check");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *t = (const char *)sqlite3_column_text(s, 0);
		if (t && !str_eq(t, "ok"))
			problem_nofix(c, "database: %s", t);
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(c->u->db, rc, err, "quick_check");
	return 0;
}

static int
guid_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

struct named_ctx {
	char **rows;          /* sorted GUIDs of the blobs rows */
	size_t nrows;
};

static bool
guid_named(void *ctx, const char *guid)
{
	struct named_ctx *nc = ctx;
	const char *key = guid;

	return nc->nrows > 0 && bsearch(&key, nc->rows, nc->nrows, sizeof(*nc->rows), guid_cmp) != NULL;
}

/* Crash leftovers in one blobs/<gg>/ directory, before anything in it is
 * judged: each marker goes (with the body it linked, when no row names
 * it), so an uncommitted body is not taken for an orphan.  0, or -1. */
static int
sweep_markers(struct ck *c, const char *sub, char **rows, size_t nrows, struct err *err)
{
	struct named_ctx nc = { rows, nrows };
	DIR *sd = opendir(sub);
	int rc = 0;

	if (sd == NULL)
		return 0;   /* reported by the walk that follows */
	for (struct dirent *f; rc == 0 && (f = readdir(sd)) != NULL; ) {
		int r;

		if (!str_has_prefix(f->d_name, ".tmp."))
			continue;
		r = store_blob_leftover_clean(c->u, sub, f->d_name, guid_named, &nc, err);
		if (r < 0)
			rc = -1;
		else if (r > 0)
			c->leftovers++;
	}
	closedir(sd);
	return rc;
}

/* Remember a path to remove once the repair has committed. */
static void
unlink_after_commit(struct ck *c, char *path)
{
	c->unlink = xreallocarray(c->unlink, c->nunlink + 1, sizeof(*c->unlink));
	c->unlink[c->nunlink++] = path;
}

/* Add a copy of guid to the list of blobs rows. */
static void
rows_add(char ***rows, size_t *nrows, const char *guid)
{
	*rows = xreallocarray(*rows, *nrows + 1, sizeof(**rows));
	(*rows)[(*nrows)++] = xstrdup(guid);
}

/* 2a, an inline body: the row's data (inflated if compressed) has the
 * row's size and the SHA-1 its guid names. */
static void
check_blob_inline(struct ck *c, sqlite3_stmt *s, const char *g, uint64_t size)
{
	int n = sqlite3_column_bytes(s, 4);
	char *octets = NULL;
	char sha[STORE_GUID_LEN + 1];
	struct err zerr;

	if ((uint64_t)n != size) {
		/* a compressed body (store_blob.c) */
		if (store_blob_inflate(sqlite3_column_blob(s, 4), (size_t)n, size, &octets,
			&zerr) < 0) {
			problem_nofix(c, "inline body %s is damaged (%s)", g, zerr.msg);
			return;
		}
		store_guid(octets, (size_t)size, sha);
		free(octets);
		n = (int)size;
	} else {
		store_guid(n ? sqlite3_column_blob(s, 4) : "", (size_t)n, sha);
	}
	if ((uint64_t)n != size || !str_eq(sha, g))
		problem_nofix(c, "inline body %s is damaged (size %d, sha1 %s)", g, n, sha);
}

/* 2a: each blobs row, inline or a file, is intact; every row's guid is
 * added to rows.  0, or -1 with err. */
static int
check_blob_rows(struct ck *c, char ***rows, size_t *nrows, struct err *err)
{
	struct store_user *u = c->u;
	sqlite3_stmt *s = NULL;
	struct buf p = BUF_INIT;

	if (sqlite3_prepare_v2(u->db, "SELECT guid, size, data IS NULL, length(data), data FROM blobs"
		" ORDER BY guid", -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(u->db, SQLITE_ERROR, err, "blobs");
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *g = (const char *)sqlite3_column_text(s, 0);
		uint64_t size = (uint64_t)sqlite3_column_int64(s, 1);
		char sha[STORE_GUID_LEN + 1];

		rows_add(rows, nrows, g ? g : "");
		if (!store_guid_valid(g)) {
			problem_nofix(c, "body row with malformed guid %s", log_q(g ? g : ""));
			continue;
		}
		if (!sqlite3_column_int(s, 2)) {
			check_blob_inline(c, s, g, size);
			continue;
		}
		buf_reset(&p);
		store_blob_path(u, g, &p);
		uint64_t fsize = 0;
		if (file_sha1(buf_cstr(&p), &fsize, sha) < 0)
			problem_nofix(c, "body file %s is missing (%s)", g, strerror(errno));
		else if (fsize != size || !str_eq(sha, g))
			problem_nofix(c, "body file %s is damaged (size %llu of %llu, sha1 %s)", g,
				(unsigned long long)fsize, (unsigned long long)size, sha);
	}
	sqlite3_finalize(s);
	buf_free(&p);
	return 0;
}

/* 2b: records whose guid has no row.  An intact file gets its row back
 * (with repair; its guid joins rows), a missing body is reported and
 * kept.  0, or -1 with err. */
static int
check_blob_norow(struct ck *c, char ***rows, size_t *nrows, struct err *err)
{
	struct store_user *u = c->u;
	sqlite3_stmt *s = NULL;
	struct buf p = BUF_INIT;

	if (sqlite3_prepare_v2(u->db, "SELECT DISTINCT guid, size FROM records r WHERE NOT EXISTS"
		" (SELECT 1 FROM blobs b WHERE b.guid = r.guid)", -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(u->db, SQLITE_ERROR, err, "records");
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *g = (const char *)sqlite3_column_text(s, 0);
		uint64_t size = (uint64_t)sqlite3_column_int64(s, 1), fsize = 0;
		char sha[STORE_GUID_LEN + 1];
		bool restorable;

		buf_reset(&p);
		if (!store_guid_valid(g)) {
			problem_nofix(c, "record with malformed guid %s", log_q(g ? g : ""));
			continue;
		}
		store_blob_path(u, g, &p);
		restorable = file_sha1(buf_cstr(&p), &fsize, sha) == 0 && fsize == size && str_eq(sha, g);
		if (!restorable) {
			problem_nofix(c, "records name body %s, which is missing", g);
			continue;
		}
		problem(c, "body %s has no row but its file is intact", g);
		if (c->repair) {
			sqlite3_stmt *ins = NULL;
			if (sqlite3_prepare_v2(u->db, "INSERT INTO blobs(guid, size, data) VALUES (?, ?, NULL)",
				-1, &ins, NULL) == SQLITE_OK) {
				sqlite3_bind_text(ins, 1, g, -1, SQLITE_TRANSIENT);
				sqlite3_bind_int64(ins, 2, (sqlite3_int64)size);
				sqlite3_step(ins);
			}
			sqlite3_finalize(ins);
			rows_add(rows, nrows, g);
		}
	}
	sqlite3_finalize(s);
	buf_free(&p);
	return 0;
}

/* 2c: rows no record names; repair drops them (their files go after
 * the commit).  0, or -1 with err. */
static int
check_blob_unnamed(struct ck *c, struct err *err)
{
	struct store_user *u = c->u;
	sqlite3_stmt *s = NULL;
	struct buf p = BUF_INIT;

	if (sqlite3_prepare_v2(u->db, "SELECT guid, data IS NULL FROM blobs b WHERE NOT EXISTS"
		" (SELECT 1 FROM records r WHERE r.guid = b.guid)", -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(u->db, SQLITE_ERROR, err, "blobs");
	while (sqlite3_step(s) == SQLITE_ROW) {
		const char *g = (const char *)sqlite3_column_text(s, 0);
		problem(c, "body %s is named by no record", log_q(g ? g : ""));
		if (c->repair && g != NULL && store_guid_valid(g) && sqlite3_column_int(s, 1)) {
			buf_reset(&p);
			store_blob_path(u, g, &p);
			unlink_after_commit(c, buf_steal(&p));
		}
	}
	sqlite3_finalize(s);
	buf_free(&p);
	if (c->repair && exec_sql(c, "DELETE FROM blobs WHERE NOT EXISTS"
		" (SELECT 1 FROM records r WHERE r.guid = blobs.guid)", err) < 0)
		return -1;
	return 0;
}

/* 2d, one blobs/<gg>/ directory (markers already swept): stray
 * temporaries, orphan bodies (no row in the sorted rows), and files
 * that have no business there. */
static void
check_blob_subdir(struct ck *c, const char *sub, const char *gg, char **rows, size_t nrows)
{
	DIR *sd = opendir(sub);

	if (sd == NULL) {
		problem_nofix(c, "unexpected entry blobs/%s", gg);
		return;
	}
	for (struct dirent *f; (f = readdir(sd)) != NULL; ) {
		const char *nm = f->d_name;
		char *key = (char *)nm;
		bool orphan = false, tmp = false;

		if (str_eq(nm, ".") || str_eq(nm, ".."))
			continue;
		if (str_has_prefix(nm, ".tmp."))
			tmp = true;
		else if (store_guid_valid(nm) && strncmp(nm, gg, 2) == 0 && strlen(gg) == 2)
			orphan = nrows == 0 ||
				bsearch(&key, rows, nrows, sizeof(*rows), guid_cmp) == NULL;
		else {
			problem_nofix(c, "unexpected file blobs/%s/%s", gg, nm);
			continue;
		}
		if (!tmp && !orphan)
			continue;
		if (tmp)
			problem(c, "stray temporary file blobs/%s/%s", gg, nm);
		else
			problem(c, "orphan body file blobs/%s/%s (no record names it)", gg, nm);
		if (c->repair) {
			struct buf fp = BUF_INIT;
			buf_printf(&fp, "%s/%s", sub, nm);
			unlink_after_commit(c, buf_steal(&fp));
		}
	}
	closedir(sd);
}

/* 2d: files under blobs/ no row names, each subdirectory's crash
 * leftovers swept first.  Sorts rows.  0, or -1 with err. */
static int
check_blob_files(struct ck *c, char **rows, size_t nrows, struct err *err)
{
	struct buf p = BUF_INIT;
	DIR *d;
	int rc = 0;

	if (nrows > 0)
		qsort(rows, nrows, sizeof(*rows), guid_cmp);
	buf_printf(&p, "%s/blobs", c->u->dir);
	d = opendir(buf_cstr(&p));
	if (d == NULL) {
		if (errno != ENOENT)
			problem_nofix(c, "cannot read %s: %s", buf_cstr(&p), strerror(errno));
		buf_free(&p);
		return 0;
	}
	for (struct dirent *e; (e = readdir(d)) != NULL; ) {
		struct buf sub = BUF_INIT;

		if (e->d_name[0] == '.')
			continue;
		buf_printf(&sub, "%s/%s", buf_cstr(&p), e->d_name);
		if (sweep_markers(c, buf_cstr(&sub), rows, nrows, err) < 0) {
			buf_free(&sub);
			rc = -1;
			break;
		}
		check_blob_subdir(c, buf_cstr(&sub), e->d_name, rows, nrows);
		buf_free(&sub);
	}
	closedir(d);
	buf_free(&p);
	return rc;
}

/* Check 2, the bodies, in its four steps; stops at the first error. */
static int
check_blobs(struct ck *c, struct err *err)
{
	char **rows = NULL;   /* the guids of the blobs rows */
	size_t nrows = 0;
	int rc;

	rc = check_blob_rows(c, &rows, &nrows, err);
	if (rc == 0)
		rc = check_blob_norow(c, &rows, &nrows, err);
	if (rc == 0)
		rc = check_blob_unnamed(c, err);
	if (rc == 0)
		rc = check_blob_files(c, rows, nrows, err);
	for (size_t i = 0; i < nrows; i++)
		free(rows[i]);
	free(rows);
	return rc;
}

static int
query_u64(struct store_user *u, const char *sql, uint64_t *v, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (sqlite3_prepare_v2(u->db, sql, -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(u->db, SQLITE_ERROR, err, "check");
	rc = sqlite3_step(s);
	*v = rc == SQLITE_ROW ? (uint64_t)sqlite3_column_int64(s, 0) : 0;
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "check");
	return 0;
}

static int
check_modseq(struct ck *c, struct err *err)
{
	struct store_user *u = c->u;
	uint64_t counter, top;
	sqlite3_stmt *s = NULL;
	int rc;

	if (query_u64(u, "SELECT modseq FROM state WHERE id = 1", &counter, err) < 0 ||
	    query_u64(u, "SELECT max(coalesce((SELECT max(max(modseq, expunged_modseq)) FROM records), 0),"
		" coalesce((SELECT max(max(modseq, highestmodseq, deleted_modseq, createdmodseq))"
		" FROM mailboxes), 0), coalesce((SELECT max(modseq) FROM subs), 0))", &top, err) < 0)
		return -1;
	if (top > counter) {
		problem(c, "modseq counter %llu is below modseq %llu in use",
			(unsigned long long)counter, (unsigned long long)top);
		if (c->repair && exec_sql(c, "UPDATE state SET modseq = (SELECT max(coalesce((SELECT"
			" max(max(modseq, expunged_modseq)) FROM records), 0), coalesce((SELECT"
			" max(max(modseq, highestmodseq, deleted_modseq, createdmodseq)) FROM mailboxes), 0),"
			" coalesce((SELECT max(modseq) FROM subs), 0))) WHERE id = 1", err) < 0)
			return -1;
	}
	if (sqlite3_prepare_v2(u->db, "SELECT m.id, m.name, m.uniqueid, m.highestmodseq, m.modseq,"
		" m.uidnext, coalesce(max(r.modseq), 0), coalesce(max(r.uid), 0)"
		" FROM mailboxes m LEFT JOIN records r ON r.mailbox = m.id GROUP BY m.id", -1, &s,
		NULL) != SQLITE_OK)
		return store_sql_err(u->db, SQLITE_ERROR, err, "check");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(s, 0);
		const char *name = (const char *)sqlite3_column_text(s, 1);
		uint64_t hms = (uint64_t)sqlite3_column_int64(s, 3), ms = (uint64_t)sqlite3_column_int64(s, 4);
		uint64_t uidnext = (uint64_t)sqlite3_column_int64(s, 5);
		uint64_t rms = (uint64_t)sqlite3_column_int64(s, 6), maxuid = (uint64_t)sqlite3_column_int64(s, 7);
		char sql[256];

		if (hms < rms || hms < ms) {
			problem(c, "mailbox %s highestmodseq %llu is below %llu", log_q(name),
				(unsigned long long)hms, (unsigned long long)(rms > ms ? rms : ms));
			snprintf(sql, sizeof(sql), "UPDATE mailboxes SET highestmodseq = %llu WHERE id = %lld",
				(unsigned long long)(rms > ms ? rms : ms), (long long)id);
			if (c->repair && exec_sql(c, sql, err) < 0)
				break;
		}
		if (maxuid >= uidnext) {
			problem(c, "mailbox %s uidnext %llu is not above uid %llu", log_q(name),
				(unsigned long long)uidnext, (unsigned long long)maxuid);
			snprintf(sql, sizeof(sql), "UPDATE mailboxes SET uidnext = %llu WHERE id = %lld",
				(unsigned long long)(maxuid + 1), (long long)id);
			if (c->repair && exec_sql(c, sql, err) < 0)
				break;
		}
	}
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE && rc != SQLITE_ROW)
		return store_sql_err(u->db, rc, err, "check");
	return rc == SQLITE_ROW ? -1 : 0;
}

static int
check_crc(struct ck *c, struct err *err)
{
	struct store_user *u = c->u;
	sqlite3_stmt *m = NULL, *r = NULL;
	int rc = 0;

	if (sqlite3_prepare_v2(u->db, "SELECT id, name, sync_crc FROM mailboxes", -1, &m, NULL) !=
	    SQLITE_OK ||
	    sqlite3_prepare_v2(u->db, "SELECT uid, guid, sysflags, keywords, modseq FROM records"
		" WHERE mailbox = ? AND expunged_modseq = 0", -1, &r, NULL) != SQLITE_OK) {
		sqlite3_finalize(m);
		return store_sql_err(u->db, SQLITE_ERROR, err, "check");
	}
	while (sqlite3_step(m) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(m, 0);
		uint32_t stored = (uint32_t)sqlite3_column_int64(m, 2), crc = 0;

		sqlite3_reset(r);
		sqlite3_bind_int64(r, 1, id);
		while (sqlite3_step(r) == SQLITE_ROW) {
			struct store_record rec;
			const char *g = (const char *)sqlite3_column_text(r, 1);
			const char *k = (const char *)sqlite3_column_text(r, 3);
			memset(&rec, 0, sizeof(rec));
			rec.uid = (uint32_t)sqlite3_column_int64(r, 0);
			str_lcpy(rec.guid, g ? g : "", sizeof(rec.guid));
			rec.sysflags = (uint32_t)sqlite3_column_int64(r, 2);
			rec.keywords = k ? k : "";
			rec.modseq = (uint64_t)sqlite3_column_int64(r, 4);
			crc ^= store_record_crc(&rec);
		}
		if (crc != stored) {
			char sql[128];
			problem(c, "mailbox %s sync checksum %08x should be %08x",
				log_q((const char *)sqlite3_column_text(m, 1)), stored, crc);
			snprintf(sql, sizeof(sql), "UPDATE mailboxes SET sync_crc = %u WHERE id = %lld", crc,
				(long long)id);
			if (c->repair && exec_sql(c, sql, err) < 0) {
				rc = -1;
				break;
			}
		}
	}
	sqlite3_finalize(r);
	sqlite3_finalize(m);
	return rc;
}

static int
check_usage(struct ck *c, struct err *err)
{
	struct store_user *u = c->u;
	uint64_t ub, um, rb, rm;

	if (store_user_usage_get(u, &ub, &um, err) < 0 ||
	    query_u64(u, "SELECT coalesce(sum(r.size), 0) FROM records r JOIN mailboxes m"
		" ON m.id = r.mailbox WHERE r.expunged_modseq = 0 AND m.deleted_modseq = 0", &rb, err) < 0 ||
	    query_u64(u, "SELECT count(*) FROM records r JOIN mailboxes m"
		" ON m.id = r.mailbox WHERE r.expunged_modseq = 0 AND m.deleted_modseq = 0", &rm, err) < 0)
		return -1;
	if (ub != rb || um != rm) {
		char sql[160];
		problem(c, "quota usage %llu bytes / %llu messages should be %llu / %llu",
			(unsigned long long)ub, (unsigned long long)um, (unsigned long long)rb,
			(unsigned long long)rm);
		snprintf(sql, sizeof(sql), "UPDATE state SET used_bytes = %llu, used_messages = %llu"
			" WHERE id = 1", (unsigned long long)rb, (unsigned long long)rm);
		if (c->repair && exec_sql(c, sql, err) < 0)
			return -1;
	}
	return 0;
}

/* M8: the STATUS counters of every mailbox against its records. */
static int
check_counters(struct ck *c, struct err *err)
{
	struct store_user *u = c->u;
	uint64_t bad;

	if (query_u64(u, "SELECT count(*) FROM mailboxes m WHERE (m.c_exists, m.c_unseen, m.c_deleted,"
		" m.c_size) IS NOT (SELECT count(*), coalesce(sum((sysflags & 1) = 0), 0),"
		" coalesce(sum((sysflags & 8) != 0), 0), coalesce(sum(size), 0) FROM records r"
		" WHERE r.mailbox = m.id AND r.expunged_modseq = 0)", &bad, err) < 0)
		return -1;
	if (bad > 0) {
		problem(c, "STATUS counters of %llu mailbox(es) differ from their records",
			(unsigned long long)bad);
		if (c->repair && exec_sql(c, "UPDATE mailboxes SET (c_exists, c_unseen, c_deleted, c_size) ="
			" (SELECT count(*), coalesce(sum((sysflags & 1) = 0), 0),"
			" coalesce(sum((sysflags & 8) != 0), 0), coalesce(sum(size), 0) FROM records r"
			" WHERE r.mailbox = mailboxes.id AND r.expunged_modseq = 0)", err) < 0)
			return -1;
	}
	return 0;
}

static int
check_names(struct ck *c, struct err *err)
{
	struct store_user *u = c->u;
	sqlite3_stmt *s = NULL;
	bool inbox = false;
	int rc;

	if (sqlite3_prepare_v2(u->db, "SELECT name FROM mailboxes WHERE deleted_modseq = 0", -1, &s,
		NULL) != SQLITE_OK)
		return store_sql_err(u->db, SQLITE_ERROR, err, "check");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(s, 0);
		char norm[STORE_MBOX_NAME_MAX + 1];
		struct err e;

		if (name && str_eq(name, "INBOX"))
			inbox = true;
		if (store_mailbox_name_check(name ? name : "", norm, &e) < 0)
			problem_nofix(c, "mailbox name %s is invalid: %s", log_q(name ? name : ""), e.msg);
		else if (!str_eq(norm, name))
			problem_nofix(c, "mailbox name %s is not normalised (%s)", log_q(name), log_q(norm));
	}
	sqlite3_finalize(s);
	if (!inbox) {
		problem(c, "INBOX is missing");
		if (c->repair) {
			struct store_mbrow row;
			if (store_mailbox_create_row(u, "INBOX", NULL, &row, err) < 0)
				return -1;
		}
	}
	return 0;
}

int
store_check(struct store *st, const char *user, bool repair, store_report_fn report, void *ctx,
	struct err *err)
{
	struct ck c;
	struct store_user *u;
	int rc = 0;

	if (repair && st->opts.read_only)
		return err_set(err, ERR_PERM, "read-only replica: cannot repair");
	u = store_user_open(st, user, err);
	if (u == NULL)
		return -1;
	memset(&c, 0, sizeof(c));
	c.u = u;
	c.repair = repair;
	c.report = report;
	c.ctx = ctx;
	if (store_blob_lock(u, true, err) < 0) {
		store_user_close(&u);
		return -1;
	}
	if (check_integrity(&c, err) < 0) {
		rc = -1;
		goto out;
	}
	if (repair)
		rc = store_user_op_begin(u, err);
	else
		rc = store_user_read_begin(u, err);
	if (rc < 0)
		goto out;
	rc = check_blobs(&c, err);
	if (rc == 0 && c.leftovers > 0 && c.report != NULL) {
		/* cleaned, not a problem: the marker protocol of store_blob.c */
		char line[128];
		if (str_fmt(line, sizeof(line), "removed %d crash leftover%s (bodies of unfinished writes)",
			c.leftovers, c.leftovers == 1 ? "" : "s") > 0)
			c.report(c.ctx, line);
	}
	if (rc == 0)
		rc = check_modseq(&c, err);
	if (rc == 0)
		rc = check_crc(&c, err);
	if (rc == 0)
		rc = check_usage(&c, err);
	if (rc == 0)
		rc = check_counters(&c, err);
	if (rc == 0)
		rc = check_names(&c, err);
	if (repair) {
		u->dirty = true;
		rc = store_user_op_end(u, rc, NULL, NULL, err);
		if (rc == 0) {
			for (size_t i = 0; i < c.nunlink; i++)
				if (unlink(c.unlink[i]) < 0 && errno != ENOENT)
					log_warn("check: cannot remove path=%s", log_q(c.unlink[i]));
		}
	} else {
		store_user_read_end(u);
	}
out:
	store_blob_unlock(u);
	for (size_t i = 0; i < c.nunlink; i++)
		free(c.unlink[i]);
	free(c.unlink);
	store_user_close(&u);
	if (rc < 0)
		return -1;
	if (c.problems > 0)
		log_notice("store check user=%s problems=%d repair=%s", user, c.problems,
			repair ? "yes" : "no");
	return c.problems;
}
