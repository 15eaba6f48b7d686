/*
 * store_blob.c - message bodies, named by GUID (SHA-1 of the raw
 * message, 40 lower-case hex digits), deduplicated within a user.
 *
 * Placement: a body of at most opts.inline_max bytes is a row of the
 * user database (blobs.data), so the WAL fsync of its transaction makes
 * body and index durable together; a larger body is an immutable file
 * <userdir>/blobs/<gg>/<guid> (gg = first two hex digits) and its blobs
 * row has data NULL.  The choice and the figures behind it are in
 * docs/decisions.md.
 *
 * Compression (opts.compress, blob_compress: yes by default): an inline
 * body is stored as one zstd frame when that saves at least
 * BLOB_ZSTD_MIN_SAVING bytes, else as is.  blobs.size is always the
 * body's own size, so a row whose length(data) differs from size holds a
 * frame and one whose length equals it holds the octets (rows written
 * before compression existed, or with it off, read unchanged).
 * store_blob_map decompresses and checks the frame's content size; the
 * GUID (SHA-1) is always of the uncompressed octets.  Files are never
 * compressed: they are mmapped for partial FETCHes of large messages.
 *
 * Durability order for a file body (M5 in store_user.c):
 *   1. write <gg>/.tmp.<guid>.<pid>.<n>        (failpoint store.append.after_blob_write)
 *   2. fsync the temporary file                 (failpoint store.append.after_blob_fsync)
 *   3. link it to <gg>/<guid>; the .tmp name stays as a marker
 *   4. fsync <gg>/ (and blobs/ when <gg> was just created)
 *   5. INSERT the blobs row and the record in one transaction
 *   6. COMMIT + group-commit WAL fdatasync; only then is success returned
 *   7. unlink the marker (store_blob_markers_done), no fsync
 * So a committed blobs row always names a complete, durable file.
 *
 * Recovery: a process killed between 1 and 7 leaves a marker .tmp.<guid>.*
 * and perhaps <guid> (the same inode).  The marker says "this body's
 * transaction may not have committed", which tells a crash leftover from
 * damage: store_check, holding blobs.lock exclusively (writers hold it
 * shared from step 1 to COMMIT, so no transaction naming a marked body is
 * in flight), removes each marker, and the <guid> file linked to it when no
 * row names that GUID; neither is reported as a problem.  A <guid> file
 * that no row names and no marker explains is reported (an orphan: a lost
 * row, or a power loss that kept the link but not the marker) and removed
 * only by check --repair.  Orphans are never served: store_blob_map()
 * looks the GUID up in the blobs table first.  A file whose name matches
 * a GUID but which no row names is re-verified (fsynced again) before a
 * new row adopts it.  A transaction that rolls back keeps its markers (the
 * next check cleans them).
 *
 * A large APPEND (store_blob_tmp) arrives in an unnamed O_TMPFILE file in
 * blobs/, hashed as it is written; step 1 is then linkat() of that file
 * to the marker name instead of writing the octets again.  A crash before
 * that leaves nothing behind.
 *
 * Duplicate deliveries (store_append_dedup): a body prewritten for a
 * message that the transaction then finds to be a duplicate is removed
 * inside that transaction, when no row names it (store_blob_drop_unused).
 * That is safe because store_blob_put, also under SQLite's write lock,
 * checks that a prewritten file still exists and writes it again if a
 * concurrent appender of the same octets lost it that way; and the
 * removal's transaction, like any other, commits no row naming the file.
 */
#include "store/store.h"
#include "store/store_int.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/evp.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "lib/atomicfile.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

void
store_guid(const void *data, size_t len, char *guid)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_Digest(data, len, md, &mdlen, EVP_sha1(), NULL) != 1 || mdlen != 20) {
		log_error("SHA-1 failed");
		abort();
	}
	str_hex(md, 20, guid);
}

bool
store_guid_valid(const char *guid)
{
	if (guid == NULL)
		return false;
	for (int i = 0; i < STORE_GUID_LEN; i++) {
		char c = guid[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return guid[STORE_GUID_LEN] == '\0';
}

void
store_blob_path(const struct store_user *u, const char *guid, struct buf *out)
{
	buf_printf(out, "%s/blobs/%.2s/%s", u->dir, guid, guid);
}

bool
store_blob_is_inline(const struct store_user *u, size_t len)
{
	size_t max = u->st->opts.inline_max;

	return max > 0 && len <= max;
}

int
store_blob_lock(struct store_user *u, bool exclusive, struct err *err)
{
	if (u->blob_lock_held)
		return 0;
	if (u->blob_lock_fd < 0) {
		struct buf p = BUF_INIT;
		buf_printf(&p, "%s/blobs.lock", u->dir);
		u->blob_lock_fd = open(buf_cstr(&p), O_RDWR | O_CREAT | O_CLOEXEC, 0640);
		if (u->blob_lock_fd < 0) {
			err_errno(err, ERR_TEMP, "open %s", buf_cstr(&p));
			buf_free(&p);
			return -1;
		}
		buf_free(&p);
	}
	while (flock(u->blob_lock_fd, exclusive ? LOCK_EX : LOCK_SH) < 0) {
		if (errno != EINTR)
			return err_errno(err, ERR_TEMP, "flock blobs.lock");
	}
	u->blob_lock_held = true;
	u->blob_lock_excl = exclusive;
	return 0;
}

void
store_blob_unlock_shared(struct store_user *u)
{
	if (!u->blob_lock_excl)
		store_blob_unlock(u);
}

void
store_blob_unlock(struct store_user *u)
{
	if (u->blob_lock_held) {
		flock(u->blob_lock_fd, LOCK_UN);
		u->blob_lock_held = false;
		u->blob_lock_excl = false;
	}
}

static int
blob_row_exists(struct store_user *u, const char *guid, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, "SELECT 1 FROM blobs WHERE guid = ?", err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, guid, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return store_sql_err(u->db, rc, err, "blob lookup");
}

int
store_blob_exists(struct store_user *u, const char *guid, struct err *err)
{
	if (!store_guid_valid(guid))
		return err_set(err, ERR_INVALID, "malformed guid");
	return blob_row_exists(u, guid, err);
}

static int
fsync_path(const char *path, struct err *err)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return err_errno(err, ERR_TEMP, "open %s", path);
	if (fsync(fd) < 0) {
		err_errno(err, ERR_TEMP, "fsync %s", path);
		close(fd);
		return -1;
	}
	close(fd);
	store_stats_g.blob_syncs++;
	return 0;
}

/* Write the file durably (steps 1-4): the octets data[0..len), or, when
 * src is not NULL, its unnamed file linked to the marker name.  An
 * existing file of the right size is made durable again rather than
 * rewritten. */
static int
blob_file_write(struct store_user *u, const char *guid, const void *data, size_t len,
	struct store_blob_tmp *src, struct err *err)
{
	static unsigned long seq;
	struct buf dir = BUF_INIT, path = BUF_INIT, tmp = BUF_INIT;
	struct stat sb;
	int fd = -1, rc = -1;
	bool linked;

	buf_printf(&dir, "%s/blobs/%.2s", u->dir, guid);
	buf_printf(&path, "%s/%s", buf_cstr(&dir), guid);
	if (stat(buf_cstr(&path), &sb) == 0 && S_ISREG(sb.st_mode) && (size_t)sb.st_size == len) {
		/* Left by a crash or written by a concurrent appender: make sure
		 * it is durable before a row names it. */
		if (fsync_path(buf_cstr(&path), err) < 0 || atomicfile_fsync_dir(buf_cstr(&dir), err) < 0)
			goto out;
		store_stats_g.dir_syncs++;
		rc = 0;
		goto out;
	}
	if (mkdir(buf_cstr(&dir), 0750) == 0) {
		struct buf parent = BUF_INIT;
		buf_printf(&parent, "%s/blobs", u->dir);
		rc = atomicfile_fsync_dir(buf_cstr(&parent), err);
		buf_free(&parent);
		store_stats_g.dir_syncs++;
		if (rc < 0)
			goto out;
		rc = -1;
	} else if (errno != EEXIST) {
		err_errno(err, ERR_TEMP, "mkdir %s", buf_cstr(&dir));
		goto out;
	}
	buf_printf(&tmp, "%s/.tmp.%s.%ld.%lu", buf_cstr(&dir), guid, (long)getpid(), ++seq);
	if (src != NULL) {
		char proc[64];

		snprintf(proc, sizeof(proc), "/proc/self/fd/%d", src->fd);
		if (linkat(AT_FDCWD, proc, AT_FDCWD, buf_cstr(&tmp), AT_SYMLINK_FOLLOW) < 0) {
			err_errno(err, ERR_TEMP, "link %s", buf_cstr(&tmp));
			goto out;
		}
		fd = dup(src->fd);
		if (fd < 0) {
			err_errno(err, ERR_TEMP, "dup");
			goto unlink;
		}
	} else {
		fd = open(buf_cstr(&tmp), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
		if (fd < 0) {
			err_errno(err, ERR_TEMP, "create %s", buf_cstr(&tmp));
			goto out;
		}
		if (atomicfile_write_all(fd, data, len) < 0) {
			err_errno(err, ERR_TEMP, "write %s", buf_cstr(&tmp));
			goto unlink;
		}
	}
	if (FAILPOINT("store.append.after_blob_write") < 0) {
		err_set(err, ERR_TEMP, "failpoint store.append.after_blob_write");
		goto unlink;
	}
	if (fsync(fd) < 0) {
		err_errno(err, ERR_TEMP, "fsync %s", buf_cstr(&tmp));
		goto unlink;
	}
	store_stats_g.blob_syncs++;
	if (FAILPOINT("store.append.after_blob_fsync") < 0) {
		err_set(err, ERR_TEMP, "failpoint store.append.after_blob_fsync");
		goto unlink;
	}
	close(fd);
	fd = -1;
	linked = link(buf_cstr(&tmp), buf_cstr(&path)) == 0;
	if (!linked) {
		if (errno != EEXIST) {
			err_errno(err, ERR_TEMP, "link %s", buf_cstr(&tmp));
			goto unlink;
		}
		/* a concurrent appender of the same octets linked it first */
		unlink(buf_cstr(&tmp));
		if (fsync_path(buf_cstr(&path), err) < 0)
			goto out;
	}
	if (atomicfile_fsync_dir(buf_cstr(&dir), err) < 0)
		goto out;
	store_stats_g.dir_syncs++;
	if (linked) {   /* our marker stays until the COMMIT */
		u->blob_tmps = xreallocarray(u->blob_tmps, u->nblob_tmps + 1, sizeof(*u->blob_tmps));
		u->blob_tmps[u->nblob_tmps++] = buf_steal(&tmp);
	}
	rc = 0;
	goto out;
unlink:
	unlink(buf_cstr(&tmp));
out:
	if (fd >= 0)
		close(fd);
	buf_free(&dir);
	buf_free(&path);
	buf_free(&tmp);
	return rc;
}

void
store_blob_markers_done(struct store_user *u)
{
	for (size_t i = 0; i < u->nblob_tmps; i++) {
		if (unlink(u->blob_tmps[i]) < 0 && errno != ENOENT)
			log_warn("user=%s cannot remove marker path=%s: %s", log_q(u->name),
				log_q(u->blob_tmps[i]), strerror(errno));
		free(u->blob_tmps[i]);
	}
	free(u->blob_tmps);
	u->blob_tmps = NULL;
	u->nblob_tmps = 0;
}

void
store_blob_markers_keep(struct store_user *u, size_t n)
{
	for (size_t i = n; i < u->nblob_tmps; i++)
		free(u->blob_tmps[i]);
	if (n < u->nblob_tmps)
		u->nblob_tmps = n;
}

void
store_blob_markers_forget(struct store_user *u)
{
	store_blob_markers_keep(u, 0);
	free(u->blob_tmps);
	u->blob_tmps = NULL;
}

int
store_blob_leftover_clean(struct store_user *u, const char *dir, const char *name,
	bool (*named)(void *ctx, const char *guid), void *ctx, struct err *err)
{
	char guid[STORE_GUID_LEN + 1];
	struct buf tp = BUF_INIT, fp = BUF_INIT;
	struct stat ts, fs;
	int rc = 1;

	if (!str_has_prefix(name, ".tmp.") || strlen(name) < 5 + STORE_GUID_LEN + 1 ||
	    name[5 + STORE_GUID_LEN] != '.')
		return 0;
	memcpy(guid, name + 5, STORE_GUID_LEN);
	guid[STORE_GUID_LEN] = '\0';
	if (!store_guid_valid(guid))
		return 0;
	buf_printf(&tp, "%s/%s", dir, name);
	buf_printf(&fp, "%s/%s", dir, guid);
	if (lstat(buf_cstr(&tp), &ts) < 0) {
		rc = errno == ENOENT ? 1 : err_errno(err, ERR_TEMP, "stat %s", buf_cstr(&tp));
		goto out;
	}
	/* the body file goes only when it is the marker's own inode and no
	 * row names its GUID: its transaction never committed */
	if (!named(ctx, guid) && lstat(buf_cstr(&fp), &fs) == 0 && fs.st_ino == ts.st_ino &&
	    fs.st_dev == ts.st_dev && unlink(buf_cstr(&fp)) < 0 && errno != ENOENT) {
		rc = err_errno(err, ERR_TEMP, "unlink %s", buf_cstr(&fp));
		goto out;
	}
	if (unlink(buf_cstr(&tp)) < 0 && errno != ENOENT)
		rc = err_errno(err, ERR_TEMP, "unlink %s", buf_cstr(&tp));
	else
		log_info("user=%s crash leftover removed path=%s", log_q(u->name), log_q(buf_cstr(&tp)));
out:
	buf_free(&tp);
	buf_free(&fp);
	return rc;
}

int
store_blob_prewrite(struct store_user *u, const char *guid, const void *data, size_t len,
	struct err *err)
{
	int r;

	if (store_blob_is_inline(u, len))
		return 0;
	r = blob_row_exists(u, guid, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	return blob_file_write(u, guid, data, len, NULL, err);
}

int
store_blob_prewrite_tmp(struct store_user *u, const char *guid, struct store_blob_tmp *t,
	struct err *err)
{
	int r = blob_row_exists(u, guid, err);

	if (r != 0)
		return r < 0 ? -1 : 0;
	return blob_file_write(u, guid, NULL, (size_t)t->len, t, err);
}

int
store_blob_tmp_open(struct store_user *u, struct store_blob_tmp **t_r, struct err *err)
{
	struct store_blob_tmp *t;
	struct buf dir = BUF_INIT;
	int fd;

	*t_r = NULL;
	buf_printf(&dir, "%s/blobs", u->dir);
	if (mkdir(buf_cstr(&dir), 0750) < 0 && errno != EEXIST) {
		err_errno(err, ERR_TEMP, "mkdir %s", buf_cstr(&dir));
		buf_free(&dir);
		return -1;
	}
	fd = open(buf_cstr(&dir), O_TMPFILE | O_RDWR | O_CLOEXEC, 0640);
	if (fd < 0) {
		err_errno(err, ERR_TEMP, "unnamed file in %s", buf_cstr(&dir));
		buf_free(&dir);
		return -1;
	}
	buf_free(&dir);
	t = xcalloc(1, sizeof(*t));
	t->u = u;
	t->fd = fd;
	t->md = EVP_MD_CTX_new();
	if (t->md == NULL || EVP_DigestInit_ex(t->md, EVP_sha1(), NULL) != 1) {
		log_error("SHA-1 failed");
		abort();
	}
	*t_r = t;
	return 0;
}

void
store_blob_tmp_write(struct store_blob_tmp *t, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (EVP_DigestUpdate(t->md, p, n) != 1) {
		log_error("SHA-1 failed");
		abort();
	}
	t->len += n;
	if (!t->failed && atomicfile_write_all(t->fd, p, n) < 0) {
		err_errno(&t->err, ERR_TEMP, "write a message body");
		t->failed = true;
	}
}

uint64_t
store_blob_tmp_size(const struct store_blob_tmp *t)
{
	return t->len;
}

void
store_blob_tmp_guid(struct store_blob_tmp *t, char *guid)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;

	if (EVP_DigestFinal_ex(t->md, md, &mdlen) != 1 || mdlen != 20) {
		log_error("SHA-1 failed");
		abort();
	}
	str_hex(md, 20, guid);
}

void
store_blob_tmp_free(struct store_blob_tmp **tp)
{
	struct store_blob_tmp *t = *tp;

	if (t == NULL)
		return;
	if (t->fd >= 0)
		close(t->fd);
	EVP_MD_CTX_free(t->md);
	free(t);
	*tp = NULL;
}

#define BLOB_ZSTD_LEVEL 1
#define BLOB_ZSTD_MIN_SAVING 64

static __thread ZSTD_CCtx *cctx;
static __thread ZSTD_DCtx *dctx;

/* The zstd frame of data into *out when it saves BLOB_ZSTD_MIN_SAVING
 * bytes or more: its length, else 0 (store the octets). */
static size_t
blob_compress(const void *data, size_t len, void **out)
{
	size_t cap, n;

	*out = NULL;
	if (len <= BLOB_ZSTD_MIN_SAVING)
		return 0;
	/* one context per thread, kept: making one per call costs more than
	 * compressing a 4 KiB message */
	if (cctx == NULL && (cctx = ZSTD_createCCtx()) == NULL)
		return 0;
	cap = ZSTD_compressBound(len);
	*out = xmalloc(cap);
	n = ZSTD_compressCCtx(cctx, *out, cap, data, len, BLOB_ZSTD_LEVEL);
	if (ZSTD_isError(n) || n + BLOB_ZSTD_MIN_SAVING > len) {
		free(*out);
		*out = NULL;
		return 0;
	}
	return n;
}

/* A stored inline body back to its octets: frame (n bytes) of a body of
 * size bytes into a new NUL-terminated allocation.  0, or -1 with err
 * (ERR_CORRUPT: not a frame of exactly that size). */
int
store_blob_inflate(const void *frame, size_t n, uint64_t size, char **out, struct err *err)
{
	unsigned long long want = ZSTD_getFrameContentSize(frame, n);
	size_t got;

	*out = NULL;
	if (want == ZSTD_CONTENTSIZE_ERROR || want == ZSTD_CONTENTSIZE_UNKNOWN || want != size ||
	    size > SIZE_MAX - 1)
		return err_set(err, ERR_CORRUPT, "stored body is not a frame of %llu bytes",
			(unsigned long long)size);
	if (dctx == NULL && (dctx = ZSTD_createDCtx()) == NULL)
		return err_set(err, ERR_TEMP, "out of memory for a decompression context");
	*out = xmalloc((size_t)size + 1);
	got = ZSTD_decompressDCtx(dctx, *out, (size_t)size, frame, n);
	if (ZSTD_isError(got) || got != size) {
		free(*out);
		*out = NULL;
		return err_set(err, ERR_CORRUPT, "stored body does not decompress (%s)",
			ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short");
	}
	(*out)[size] = '\0';
	return 0;
}

int
store_blob_put(struct store_user *u, const char *guid, const void *data, size_t len,
	bool prewritten, struct err *err)
{
	sqlite3_stmt *s;
	void *frame = NULL;
	int r;

	r = blob_row_exists(u, guid, err);
	if (r != 0)
		return r < 0 ? -1 : 0;
	if (store_blob_is_inline(u, len)) {
		size_t n = u->st->opts.compress ? blob_compress(data, len, &frame) : 0;

		s = store_user_stmt(u, "INSERT INTO blobs(guid, size, data) VALUES (?, ?, ?)", err);
		if (s == NULL) {
			free(frame);
			return -1;
		}
		sqlite3_bind_text(s, 1, guid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)len);
		if (n > 0)
			sqlite3_bind_blob64(s, 3, frame, n, SQLITE_STATIC);
		else
			sqlite3_bind_blob64(s, 3, len ? data : "", len, SQLITE_STATIC);
	} else {
		if (prewritten) {
			/* A duplicate delivery of the same octets may have removed
			 * the file since (store_blob_drop_unused, also under the
			 * write lock): write it again then. */
			struct buf p = BUF_INIT;
			struct stat sb;
			store_blob_path(u, guid, &p);
			if (stat(buf_cstr(&p), &sb) < 0 && errno == ENOENT)
				prewritten = false;
			buf_free(&p);
		}
		if (!prewritten) {
			if (store_blob_lock(u, false, err) < 0 ||
			    blob_file_write(u, guid, data, len, NULL, err) < 0)
				return -1;
		}
		s = store_user_stmt(u, "INSERT INTO blobs(guid, size, data) VALUES (?, ?, NULL)", err);
		if (s == NULL)
			return -1;
		sqlite3_bind_text(s, 1, guid, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, (sqlite3_int64)len);
	}
	r = sqlite3_step(s);
	sqlite3_reset(s);
	free(frame);
	if (r != SQLITE_DONE)
		return store_sql_err(u->db, r, err, "blob insert");
	u->dirty = true;
	if (store_blob_is_inline(u, len) && FAILPOINT("store.append.after_blob_write") < 0)
		return err_set(err, ERR_TEMP, "failpoint store.append.after_blob_write");
	return 0;
}

int
store_blob_drop_unused(struct store_user *u, const char *guid, struct err *err)
{
	struct buf p = BUF_INIT;
	int r = blob_row_exists(u, guid, err);

	if (r != 0)
		return r < 0 ? -1 : 0;
	store_blob_path(u, guid, &p);
	if (unlink(buf_cstr(&p)) < 0 && errno != ENOENT)
		log_warn("cannot remove unused body path=%s errno=%d", log_q(buf_cstr(&p)), errno);
	buf_free(&p);
	return 0;
}

int
store_blob_map(struct store_user *u, const char *guid, struct store_blob *b, struct err *err)
{
	sqlite3_stmt *s;
	struct buf path = BUF_INIT;
	struct stat sb;
	int rc, fd;
	uint64_t size;

	memset(b, 0, sizeof(*b));
	if (!store_guid_valid(guid))
		return err_set(err, ERR_INVALID, "malformed guid");
	s = store_user_stmt(u, "SELECT size, data IS NULL, data FROM blobs WHERE guid = ?", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_text(s, 1, guid, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		if (rc == SQLITE_DONE)
			return err_set(err, ERR_NOTFOUND, "no message body %s", guid);
		return store_sql_err(u->db, rc, err, "blob");
	}
	size = (uint64_t)sqlite3_column_int64(s, 0);
	if (!sqlite3_column_int(s, 1)) {
		size_t n = (size_t)sqlite3_column_bytes(s, 2);

		if ((uint64_t)n != size) {
			/* a zstd frame (see the top of this file) */
			rc = store_blob_inflate(sqlite3_column_blob(s, 2), n, size, &b->priv_copy, err);
			sqlite3_reset(s);
			if (rc < 0) {
				log_error("damaged message body user=%s guid=%s error=%s", log_q(u->name),
					guid, log_q(err->msg));
				return -1;
			}
			b->data = b->priv_copy;
			b->len = (size_t)size;
			return 0;
		}
		b->priv_copy = xmalloc(n + 1);
		if (n)
			memcpy(b->priv_copy, sqlite3_column_blob(s, 2), n);
		b->priv_copy[n] = '\0';
		b->data = b->priv_copy;
		b->len = n;
		sqlite3_reset(s);
		return 0;
	}
	sqlite3_reset(s);
	store_blob_path(u, guid, &path);
	fd = open(buf_cstr(&path), O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		rc = err_errno(err, errno == ENOENT ? ERR_CORRUPT : ERR_TEMP,
			"message body %s missing", buf_cstr(&path));
		buf_free(&path);
		return rc;
	}
	if (fstat(fd, &sb) < 0 || (uint64_t)sb.st_size != size) {
		close(fd);
		rc = err_set(err, ERR_CORRUPT, "message body %s has the wrong size", buf_cstr(&path));
		buf_free(&path);
		return rc;
	}
	buf_free(&path);
	if (size == 0) {
		close(fd);
		b->data = "";
		return 0;
	}
	b->priv_map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (b->priv_map == MAP_FAILED) {
		b->priv_map = NULL;
		return err_errno(err, ERR_TEMP, "mmap message body");
	}
	b->priv_maplen = (size_t)size;
	b->data = b->priv_map;
	b->len = (size_t)size;
	return 0;
}

void
store_blob_done_with(struct store_blob *b, const char *p, size_t n)
{
	const char *map = b->priv_map;
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), a, e;

	if (map == NULL || p < map || n > b->priv_maplen || p - map > (ptrdiff_t)(b->priv_maplen - n))
		return;
	a = ((uintptr_t)p + pg - 1) & ~(pg - 1);
	e = ((uintptr_t)p + n) & ~(pg - 1);
	if (e > a)
		(void)madvise((void *)a, e - a, MADV_DONTNEED);
}

void
store_blob_release(struct store_blob *b)
{
	if (b->priv_map != NULL)
		munmap(b->priv_map, b->priv_maplen);
	free(b->priv_copy);
	memset(b, 0, sizeof(*b));
}

int
store_blob_read(struct store_user *u, const char *guid, struct buf *out, struct err *err)
{
	struct store_blob b;

	if (store_blob_map(u, guid, &b, err) < 0)
		return -1;
	buf_append(out, b.data, b.len);
	store_blob_release(&b);
	return 0;
}
