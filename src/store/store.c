/*
 * store.c - the server root: db/users.db (users, password hashes,
 * quota limits, server role and epoch), the directory layout, SQLite
 * helpers shared by the store, the change hook and statistics.
 *
 * users.db format (SQLite, WAL, synchronous=FULL: writes are rare and
 * each is durable when its call returns):
 *     meta(key TEXT PRIMARY KEY, value TEXT)       "schema" = "1"
 *     users(name TEXT PRIMARY KEY, hash TEXT NULL, quota_bytes INTEGER,
 *           quota_messages INTEGER, created INTEGER)
 *         quota_*: -1 = server default, 0 = unlimited, else the limit
 *         hash: crypt(3) string ("$y$..." yescrypt), NULL = no password
 *     server(id = 1, role TEXT 'master'|'replica', epoch INTEGER)
 *     sync_auth(authname TEXT PRIMARY KEY, hash TEXT NOT NULL)
 *         the replication credential(s) this server's syncd accepts
 *         (crypt(3) hash); apart from users, never replicated
 *     users.sum_modseq, users.sum_crc: the per-user summary, see
 *         store_summary.c (added by its migration)
 *
 * Invariants:
 *   U1. A user exists iff its users row exists.  The spool directory
 *       and user.db are made by store_user_add before the row (and by
 *       store_user_reset), never on demand, and are moved away to
 *       <root>/deleted/ only after the row is gone, so a crash in
 *       store_user_add or store_user_del leaves a spool directory
 *       without a user (found by `castorctl check --all`, retired by
 *       the next add of that name), never a user without its mail.
 *       users.ident and users.damaged: store_damage.c.
 *   U2. server has exactly one row; epoch only grows (the caller's
 *       contract: fencing relies on it).
 *   U3. A sync_auth row is not a user: it has no spool, no mailbox, is
 *       not in the sync log and logs in nowhere but syncd.  A users
 *       row of the same name is an ordinary mail user and has no say
 *       in the sync login.  Older roots kept the replica's credential
 *       as the users row "sync"; the first store_open that creates
 *       sync_auth moves it there (sync_auth_migrate).
 */
#include "store/store.h"
#include "store/store_int.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/conf.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

struct store_stats store_stats_g;

static const char users_schema[] =
	"CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);"
	"CREATE TABLE IF NOT EXISTS users(name TEXT PRIMARY KEY, hash TEXT,"
	" quota_bytes INTEGER NOT NULL DEFAULT -1, quota_messages INTEGER NOT NULL DEFAULT -1,"
	" created INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS server(id INTEGER PRIMARY KEY CHECK (id = 1),"
	" role TEXT NOT NULL CHECK (role IN ('master','replica')), epoch INTEGER NOT NULL);"
	"CREATE TABLE IF NOT EXISTS sync_auth(authname TEXT PRIMARY KEY, hash TEXT NOT NULL);"
	"INSERT OR IGNORE INTO meta(key, value) VALUES ('schema', '1');";

/* ------------------------------------------------------------------ */
/* helpers */

int
store_sql_err(sqlite3 *db, int rc, struct err *err, const char *what)
{
	enum err_kind kind = ERR_TEMP;

	switch (rc & 0xff) {
	case SQLITE_FULL:
		kind = ERR_NOSPACE;
		break;
	case SQLITE_CORRUPT:
	case SQLITE_NOTADB:
		kind = ERR_CORRUPT;
		break;
	case SQLITE_READONLY:
	case SQLITE_PERM:
	case SQLITE_AUTH:
		kind = ERR_PERM;
		break;
	case SQLITE_CONSTRAINT:
		kind = ERR_EXISTS;
		break;
	default:
		break;
	}
	return err_set(err, kind, "%s: %s", what, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
}

int
store_sql_exec(sqlite3 *db, const char *sql, struct err *err)
{
	int rc = sqlite3_exec(db, sql, NULL, NULL, NULL);

	if (rc != SQLITE_OK)
		return store_sql_err(db, rc, err, "sqlite");
	return 0;
}

/* Busy handler: SQLite's own sleeps 1, 2, 5, 10, 15, 20, 25 ... ms
 * between attempts, which wastes most of a group-commit round when
 * several processes append to one user.  Ours retries every 50 us for
 * the first millisecond, then backs off to 1 ms, until the timeout. */
static int
busy_handler(void *ctx, int n)
{
	long timeout_us = (long)(intptr_t)ctx * 1000L;
	long waited, step;
	struct timespec ts;

	if (n < 20) {
		waited = 50L * n;
		step = 50;
	} else if (n < 100) {
		waited = 1000 + 200L * (n - 20);
		step = 200;
	} else {
		waited = 17000 + 1000L * (n - 100);
		step = 1000;
	}
	if (waited >= timeout_us)
		return 0;
	ts.tv_sec = 0;
	ts.tv_nsec = step * 1000;
	nanosleep(&ts, NULL);
	return 1;
}

void
store_db_busy_set(sqlite3 *db, int busy_ms)
{
	sqlite3_busy_handler(db, busy_handler, (void *)(intptr_t)(busy_ms > 0 ? busy_ms : 30000));
}

int
store_db_open(const char *path, bool create, int busy_ms, bool full_sync, sqlite3 **db_r,
	struct err *err)
{
	sqlite3 *db = NULL;
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (create ? SQLITE_OPEN_CREATE : 0);
	int rc, persist = 1;

	rc = sqlite3_open_v2(path, &db, flags, NULL);
	if (rc != SQLITE_OK) {
		if (!create && rc == SQLITE_CANTOPEN && access(path, F_OK) < 0)
			err_set(err, ERR_NOTFOUND, "%s: no such database", path);
		else
			store_sql_err(db, rc, err, path);
		sqlite3_close(db);
		return -1;
	}
	sqlite3_extended_result_codes(db, 1);
	store_db_busy_set(db, busy_ms);
	/* Keep the -wal file (never unlink it on close): the group commit
	 * fsyncs it by path and must always name the live file. */
	sqlite3_file_control(db, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
	/* Short-lived processes (lmtpd per delivery, castorctl) must not pay
	 * a checkpoint with its fsyncs on every close: the WAL is
	 * checkpointed by the auto-checkpoint of later commits instead. */
	sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)NULL);
	/* User databases: checkpoints are run by the group commit
	 * (store_commit.c), not by SQLite after every commit. */
	if (store_sql_exec(db, "PRAGMA journal_mode=WAL", err) < 0 ||
	    store_sql_exec(db, full_sync ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
		err) < 0 ||
	    (!full_sync && store_sql_exec(db, "PRAGMA wal_autocheckpoint=0", err) < 0) ||
	    /* services keep up to 16 user databases open: 512 KiB of page
	     * cache each, not SQLite's 2 MiB (a write by another process
	     * empties it anyway) */
	    (!full_sync && store_sql_exec(db, "PRAGMA cache_size=-512", err) < 0) ||
	    /* a WAL that grew (an import, a checkpoint held back by a
	     * reader) is cut back to 1 MiB when it next restarts */
	    store_sql_exec(db, "PRAGMA journal_size_limit=1048576", err) < 0 ||
	    store_sql_exec(db, "PRAGMA foreign_keys=OFF", err) < 0) {
		err_prefix(err, "%s", path);
		sqlite3_close(db);
		return -1;
	}
	*db_r = db;
	return 0;
}

void
store_random_hex(char *out, size_t nbytes)
{
	unsigned char b[64];

	if (nbytes > sizeof(b))
		nbytes = sizeof(b);
	if (RAND_bytes(b, (int)nbytes) != 1) {
		/* OpenSSL's CSPRNG failing is an environment bug: abort. */
		log_error("RAND_bytes failed");
		abort();
	}
	str_hex(b, nbytes, out);
}

uint32_t
store_crc32(uint32_t crc, const void *p, size_t n)
{
	static uint32_t table[256];
	static int ready;
	const unsigned char *s = p;

	if (!ready) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = (c & 1) ? 0xedb88320u ^ (c >> 1) : c >> 1;
			table[i] = c;
		}
		ready = 1;
	}
	crc = ~crc;
	while (n--)
		crc = table[(crc ^ *s++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

void
store_stats_get(struct store_stats *s)
{
	*s = store_stats_g;
}

void
store_stats_reset(void)
{
	memset(&store_stats_g, 0, sizeof(store_stats_g));
}

void
store_opts_init(struct store_opts *opts)
{
	memset(opts, 0, sizeof(*opts));
	opts->inline_max = STORE_INLINE_MAX_DEFAULT;
	opts->busy_timeout_ms = 30000;
	opts->compress = true;
}

void
store_opts_from_conf(struct store_opts *opts, const struct conf *conf)
{
	int64_t m;

	store_opts_init(opts);
	if (conf == NULL)
		return;
	opts->quota_default_bytes = conf_get_bytes(conf, "quota_default_bytes", 0);
	m = conf_get_int(conf, "quota_default_messages", 0);
	opts->quota_default_messages = m > 0 ? (uint64_t)m : 0;
	opts->inline_max = (size_t)conf_get_bytes(conf, "blob_inline_max", STORE_INLINE_MAX_DEFAULT);
	opts->compress = conf_get_bool(conf, "blob_compress", true);
}

/* ------------------------------------------------------------------ */
/* server root */

static int
role_valid(const char *role)
{
	return role != NULL && (str_eq(role, "master") || str_eq(role, "replica"));
}

int
store_create(const char *root, const char *role, struct err *err)
{
	static const char *const dirs[] = { "db", "spool", "sync", "sync/log", "sync/cursor", "run",
		"quarantine", "deleted" };
	struct buf p = BUF_INIT;
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int rc = -1;

	if (!role_valid(role))
		return err_set(err, ERR_INVALID, "role must be master or replica, not %s",
			role ? role : "(null)");
	if (atomicfile_mkdir_p(root, 0750, err) < 0)
		return -1;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		buf_reset(&p);
		buf_printf(&p, "%s/%s", root, dirs[i]);
		if (atomicfile_mkdir_p(buf_cstr(&p), 0750, err) < 0)
			goto out;
	}
	buf_reset(&p);
	buf_printf(&p, "%s/db/users.db", root);
	if (access(buf_cstr(&p), F_OK) == 0) {
		err_set(err, ERR_EXISTS, "%s already exists", buf_cstr(&p));
		goto out;
	}
	if (store_db_open(buf_cstr(&p), true, 30000, true, &db, err) < 0)
		goto out;
	if (store_sql_exec(db, "BEGIN IMMEDIATE", err) < 0)
		goto out;
	if (store_sql_exec(db, users_schema, err) < 0 ||
	    store_sql_exec(db, "INSERT INTO meta(key, value) VALUES ('sync_auth', '1')", err) < 0)
		goto rollback;
	if (sqlite3_prepare_v2(db, "INSERT INTO server(id, role, epoch) VALUES (1, ?, 1)", -1, &s,
		NULL) != SQLITE_OK) {
		store_sql_err(db, SQLITE_ERROR, err, "users.db");
		goto rollback;
	}
	sqlite3_bind_text(s, 1, role, -1, SQLITE_STATIC);
	if (sqlite3_step(s) != SQLITE_DONE) {
		store_sql_err(db, sqlite3_errcode(db), err, "users.db server");
		goto rollback;
	}
	if (store_sql_exec(db, "COMMIT", err) < 0)
		goto rollback;
	if (store_damage_migrate(db, err) < 0)
		goto out;
	buf_reset(&p);
	buf_printf(&p, "%s/db", root);
	if (atomicfile_fsync_dir(buf_cstr(&p), err) < 0)
		goto out;
	rc = 0;
	goto out;
rollback:
	sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
out:
	sqlite3_finalize(s);
	sqlite3_close(db);
	buf_free(&p);
	return rc;
}

static int sync_auth_migrate(struct store *st, struct err *err);

struct store *
store_open(const char *root, const struct store_opts *opts, struct err *err)
{
	struct store *st;
	struct buf p = BUF_INIT;
	sqlite3 *db = NULL;
	struct store_opts def;

	if (opts == NULL) {
		store_opts_init(&def);
		opts = &def;
	}
	buf_printf(&p, "%s/db/users.db", root);
	if (access(buf_cstr(&p), F_OK) < 0) {
		err_set(err, ERR_NOTFOUND, "%s: not a server root (no db/users.db)", root);
		buf_free(&p);
		return NULL;
	}
	if (store_db_open(buf_cstr(&p), false, opts->busy_timeout_ms, true, &db, err) < 0) {
		buf_free(&p);
		return NULL;
	}
	buf_free(&p);
	if (store_sql_exec(db, users_schema, err) < 0 || store_damage_migrate(db, err) < 0) {
		sqlite3_close(db);
		return NULL;
	}
	st = xcalloc(1, sizeof(*st));
	st->root = xstrdup(root);
	st->db = db;
	st->opts = *opts;
	if (st->opts.busy_timeout_ms <= 0)
		st->opts.busy_timeout_ms = 30000;
	if (sync_auth_migrate(st, err) < 0) {
		store_close(&st);
		return NULL;
	}
	if (store_summary_open(st, err) < 0) {
		err_prefix(err, "users.db summaries");
		store_close(&st);
		return NULL;
	}
	return st;
}

void
store_close(struct store **stp)
{
	struct store *st = *stp;

	if (st == NULL)
		return;
	if (st->nusers != 0)
		log_warn("store closed with open user handles count=%d", st->nusers);
	for (size_t i = 0; i < STORE_DB_STMTS; i++)
		sqlite3_finalize(st->stmts[i]);
	sqlite3_close(st->db);
	free(st->root);
	free(st);
	*stp = NULL;
}

const char *
store_root(const struct store *st)
{
	return st->root;
}

void
store_set_read_only(struct store *st, bool read_only)
{
	st->opts.read_only = read_only;
}

bool
store_is_read_only(const struct store *st)
{
	return st->opts.read_only;
}

void
store_set_change_hook(struct store *st, store_change_hook_fn fn, void *ctx)
{
	st->hook = fn;
	st->hook_ctx = ctx;
}

store_change_hook_fn
store_get_change_hook(const struct store *st, void **ctx_r)
{
	*ctx_r = st->hook_ctx;
	return st->hook;
}

static int
ro_refuse(const struct store *st, struct err *err)
{
	if (st->opts.read_only)
		return err_set(err, ERR_PERM, "read-only replica");
	return 0;
}

static void
hook_fire(struct store *st, const char *user, enum store_change_kind kind)
{
	if (st->hook != NULL)
		st->hook(st->hook_ctx, user, kind, NULL);
}

/* users.db statements used on every delivery or login, prepared once
 * per store and keyed by their SQL text's address (string literals).
 * Callers sqlite3_reset() them when done, never finalize. */
static sqlite3_stmt *
store_stmt(struct store *st, const char *sql)
{
	size_t i;

	for (i = 0; i < STORE_DB_STMTS && st->stmt_sql[i] != NULL; i++)
		if (st->stmt_sql[i] == sql)
			return st->stmts[i];
	if (i == STORE_DB_STMTS)
		return NULL;
	if (sqlite3_prepare_v3(st->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st->stmts[i], NULL) !=
	    SQLITE_OK) {
		st->stmts[i] = NULL;
		return NULL;
	}
	st->stmt_sql[i] = sql;
	return st->stmts[i];
}

static int64_t
server_data_version(struct store *st)
{
	sqlite3_stmt *s = NULL;
	int64_t v = -1;

	if ((s = store_stmt(st, "PRAGMA data_version")) == NULL)
		return -1;
	if (sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_reset(s);
	return v;
}

/* Role and epoch are read on every replicated change (fencing), so they
 * are cached; PRAGMA data_version tells whether another connection
 * (castorctl promote, another syncd) committed to users.db since, and
 * store_server_set drops the cache for changes through this one. */
int
store_server_get(struct store *st, const char **role_r, uint64_t *epoch_r, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int64_t dv = server_data_version(st);
	int rc;

	if (st->server_cached && dv >= 0 && dv == st->server_dv) {
		if (role_r)
			*role_r = st->server_replica ? "replica" : "master";
		if (epoch_r)
			*epoch_r = st->server_epoch;
		return 0;
	}
	st->server_cached = false;
	if ((s = store_stmt(st, "SELECT role, epoch FROM server WHERE id = 1")) == NULL)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *r = (const char *)sqlite3_column_text(s, 0);
		st->server_replica = r != NULL && str_eq(r, "replica");
		st->server_epoch = (uint64_t)sqlite3_column_int64(s, 1);
		sqlite3_reset(s);
		st->server_dv = dv;
		st->server_cached = dv >= 0;
		if (role_r)
			*role_r = st->server_replica ? "replica" : "master";
		if (epoch_r)
			*epoch_r = st->server_epoch;
		return 0;
	}
	sqlite3_reset(s);
	if (rc == SQLITE_DONE)
		return err_set(err, ERR_CORRUPT, "users.db has no server row");
	return store_sql_err(st->db, rc, err, "users.db server");
}

int
store_server_set(struct store *st, const char *role, uint64_t epoch, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (!role_valid(role))
		return err_set(err, ERR_INVALID, "role must be master or replica");
	st->server_cached = false;
	if (sqlite3_prepare_v2(st->db,
		"INSERT INTO server(id, role, epoch) VALUES (1, ?1, ?2)"
		" ON CONFLICT(id) DO UPDATE SET role = ?1, epoch = ?2", -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	sqlite3_bind_text(s, 1, role, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 2, (sqlite3_int64)epoch);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db server");
	return 0;
}

/* ------------------------------------------------------------------ */
/* users */

bool
store_user_name_valid(const char *name)
{
	size_t n;

	if (name == NULL)
		return false;
	n = strlen(name);
	if (n == 0 || n > STORE_USER_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
		if (i == 0 && !alnum)
			return false;
		if (!alnum && c != '.' && c != '_' && c != '+' && c != '@' && c != '-')
			return false;
	}
	return true;
}

void
store_user_dir(const struct store *st, const char *name, struct buf *out)
{
	buf_printf(out, "%s/spool/%c/%s", st->root, name[0], name);
}

static int
user_name_check(const char *name, struct err *err)
{
	if (!store_user_name_valid(name))
		return err_set(err, ERR_INVALID,
			"invalid user name %s (1-%d of a-z 0-9 . _ + @ -, starting with a letter or digit)",
			log_q(name ? name : ""), STORE_USER_NAME_MAX);
	return 0;
}

static int
hash_password(const char *password, char **hash_r, struct err *err)
{
	struct crypt_data *cd;
	char *salt, *h;

	salt = crypt_gensalt_ra("$y$", 0, NULL, 0);
	if (salt == NULL)
		return err_errno(err, ERR_TEMP, "crypt_gensalt");
	cd = xcalloc(1, sizeof(*cd));
	h = crypt_r(password, salt, cd);
	free(salt);
	if (h == NULL || h[0] == '*') {
		free(cd);
		return err_set(err, ERR_TEMP, "yescrypt hashing failed");
	}
	*hash_r = xstrdup(h);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return 0;
}

uint32_t
store_uidvalidity_floor(struct store *st)
{
	sqlite3_stmt *s = NULL;
	int64_t v = 0;

	if (sqlite3_prepare_v2(st->db, "SELECT CAST(value AS INTEGER) FROM meta"
		" WHERE key = 'uidvalidity_floor'", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	return v > 0 && v < UINT32_MAX ? (uint32_t)v : 0;
}

/* Before a user's spool goes: raise the floor to the highest UIDVALIDITY
 * its database handed out (or to now when it cannot be read: values are
 * creation times, a later one is only a few counts past its second). */
static void
uidvalidity_floor_raise(struct store *st, const char *name)
{
	struct buf p = BUF_INIT;
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;
	int64_t v = (int64_t)time(NULL);

	store_user_dir(st, name, &p);
	buf_puts(&p, "/user.db");
	if (access(buf_cstr(&p), F_OK) == 0 &&
	    sqlite3_open_v2(buf_cstr(&p), &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
	    sqlite3_prepare_v2(db, "SELECT max(last_uidvalidity, (SELECT coalesce(max(uidvalidity), 0)"
		" FROM mailboxes)) FROM state", -1, &s, NULL) == SQLITE_OK &&
	    sqlite3_step(s) == SQLITE_ROW && sqlite3_column_int64(s, 0) > v)
		v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	buf_free(&p);
	if (v <= (int64_t)store_uidvalidity_floor(st))
		return;
	if (sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO meta(key, value)"
		" VALUES ('uidvalidity_floor', ?1)", -1, &s, NULL) != SQLITE_OK ||
	    (sqlite3_bind_int64(s, 1, v), sqlite3_step(s)) != SQLITE_DONE)
		log_warn("uidvalidity floor not recorded user=%s error=%s", name,
			log_q(sqlite3_errmsg(st->db)));
	sqlite3_finalize(s);
}

/* Move a spool directory away into <root>/deleted/. */
static int
spool_retire(struct store *st, const char *name, struct err *err)
{
	struct buf from = BUF_INIT, to = BUF_INIT, d = BUF_INIT;
	int rc = 0;

	store_user_dir(st, name, &from);
	if (access(buf_cstr(&from), F_OK) < 0) {
		buf_free(&from);
		return 0;
	}
	buf_printf(&d, "%s/deleted", st->root);
	if (atomicfile_mkdir_p(buf_cstr(&d), 0750, err) < 0) {
		rc = -1;
		goto out;
	}
	for (int i = 0; i < 100; i++) {
		buf_reset(&to);
		buf_printf(&to, "%s/%s.%lld", buf_cstr(&d), name, (long long)time(NULL) + i);
		if (access(buf_cstr(&to), F_OK) < 0)
			break;
	}
	if (rename(buf_cstr(&from), buf_cstr(&to)) < 0) {
		rc = err_errno(err, ERR_TEMP, "rename %s", buf_cstr(&from));
		goto out;
	}
	/* the rename is durable only with both directories: a failure is
	 * reported (the user's row is already gone; the spool may come back
	 * at its old place after a crash, where check --all reports it) */
	if (atomicfile_fsync_parent_dir(buf_cstr(&from), err) < 0 || atomicfile_fsync_dir(buf_cstr(&d), err) < 0) {
		log_error("user spool moved but not made durable user=%s to=%s error=%s", name,
			log_q(buf_cstr(&to)), log_q(err != NULL ? err->msg : ""));
		rc = -1;
		goto out;
	}
	log_info("user spool retired user=%s to=%s", name, log_q(buf_cstr(&to)));
out:
	buf_free(&from);
	buf_free(&to);
	buf_free(&d);
	return rc;
}

int
store_user_add(struct store *st, const char *name, const char *password, struct err *err)
{
	char ident[STORE_IDENT_LEN + 1];
	sqlite3_stmt *s = NULL;
	char *hash = NULL;
	int rc;

	if (ro_refuse(st, err) < 0 || user_name_check(name, err) < 0)
		return -1;
	rc = store_user_exists(st, name, err);
	if (rc < 0)
		return -1;
	if (rc == 1)
		return err_set(err, ERR_EXISTS, "user %s already exists", name);
	if (password != NULL && hash_password(password, &hash, err) < 0)
		return -1;
	/* A leftover spool of a deleted user of the same name must not
	 * reappear as the new user's mail (U1); then user.db first, the row
	 * second (U1, D2). */
	store_damage_new_ident(ident);
	if (spool_retire(st, name, err) < 0 || store_user_create(st, name, ident, err) < 0) {
		free(hash);
		return -1;
	}
	if (sqlite3_prepare_v2(st->db,
		"INSERT INTO users(name, hash, created, ident) VALUES (?, ?, ?, ?)", -1, &s,
		NULL) != SQLITE_OK) {
		free(hash);
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	}
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (hash)
		sqlite3_bind_text(s, 2, hash, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, (sqlite3_int64)time(NULL));
	sqlite3_bind_text(s, 4, ident, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	free(hash);
	if (rc != SQLITE_DONE) {
		if ((rc & 0xff) == SQLITE_CONSTRAINT)
			return err_set(err, ERR_EXISTS, "user %s already exists", name);
		return store_sql_err(st->db, rc, err, "users.db insert");
	}
	hook_fire(st, name, STORE_CHANGE_USER);
	return 0;
}

int
store_spool_retire(struct store *st, const char *name, struct err *err)
{
	return spool_retire(st, name, err);
}

int
store_user_reset(struct store *st, const char *name, struct err *err)
{
	char ident[STORE_IDENT_LEN + 1];
	int rc;

	if (ro_refuse(st, err) < 0 || user_name_check(name, err) < 0)
		return -1;
	rc = store_user_exists(st, name, err);
	if (rc < 0)
		return -1;
	if (rc == 0)
		return err_set(err, ERR_NOTFOUND, "no such user %s", name);
	/* the old spool first, the fresh database, then the identity (D2) */
	store_damage_new_ident(ident);
	if (spool_retire(st, name, err) < 0 || store_user_create(st, name, ident, err) < 0 ||
	    store_damage_adopt(st, name, ident, true, err) < 0) {
		err_prefix(err, "user %s reset", name);
		return -1;
	}
	log_notice("user database reset user=%s: a fresh empty database", name);
	hook_fire(st, name, STORE_CHANGE_USER);
	return 0;
}

static int
user_update(struct store *st, const char *sql, const char *name, const char *text, int64_t a,
	int64_t b, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (text)
		sqlite3_bind_text(s, 2, text, -1, SQLITE_STATIC);
	else
		sqlite3_bind_null(s, 2);
	sqlite3_bind_int64(s, 3, a);
	sqlite3_bind_int64(s, 4, b);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db update");
	if (sqlite3_changes(st->db) == 0)
		return err_set(err, ERR_NOTFOUND, "no such user %s", name);
	return 0;
}

int
store_user_del(struct store *st, const char *name, struct err *err)
{
	if (ro_refuse(st, err) < 0 || user_name_check(name, err) < 0)
		return -1;
	if (user_update(st, "DELETE FROM users WHERE name = ?1 AND ?2 IS NULL AND ?3 = ?4",
		name, NULL, 0, 0, err) < 0)
		return -1;
	hook_fire(st, name, STORE_CHANGE_UNUSER);
	uidvalidity_floor_raise(st, name);
	if (spool_retire(st, name, err) < 0) {
		err_prefix(err, "user %s deleted but its spool was not moved", name);
		return -1;
	}
	return 0;
}

int
store_user_passwd(struct store *st, const char *name, const char *password, struct err *err)
{
	char *hash = NULL;
	int rc;

	if (ro_refuse(st, err) < 0 || user_name_check(name, err) < 0)
		return -1;
	if (password != NULL && hash_password(password, &hash, err) < 0)
		return -1;
	rc = user_update(st, "UPDATE users SET hash = ?2 WHERE name = ?1 AND ?3 = ?4", name, hash,
		0, 0, err);
	free(hash);
	if (rc == 0)
		hook_fire(st, name, STORE_CHANGE_PASSWORD);
	return rc;
}

int
store_user_set_hash(struct store *st, const char *name, const char *hash, struct err *err)
{
	if (ro_refuse(st, err) < 0 || user_name_check(name, err) < 0)
		return -1;
	if (hash != NULL && (hash[0] != '$' || strlen(hash) > 512 ||
	    str_mem_has(hash, strlen(hash), '\n')))
		return err_set(err, ERR_INVALID, "malformed password hash");
	if (user_update(st, "UPDATE users SET hash = ?2 WHERE name = ?1 AND ?3 = ?4", name, hash,
		0, 0, err) < 0)
		return -1;
	hook_fire(st, name, STORE_CHANGE_PASSWORD);
	return 0;
}

/* 1 when password matches the crypt(3) hash, else 0.  A NULL hash (no
 * such user or credential) is still hashed against, so the time taken does
 * not tell whether the name exists. */
static int
hash_check(const char *password, const char *hash)
{
	struct crypt_data *cd = xcalloc(1, sizeof(*cd));
	const char *h;
	int ok = 0;

	h = crypt_r(password, hash ? hash : "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7", cd);
	if (hash != NULL && h != NULL && h[0] != '*')
		ok = str_ct_eq(h, strlen(h), hash, strlen(hash));
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ok;
}

int
store_user_verify(struct store *st, const char *name, const char *password, struct err *err)
{
	sqlite3_stmt *s = NULL;
	char *hash = NULL;
	int rc, ok;

	if (!store_user_name_valid(name) || password == NULL)
		return 0;
	if ((s = store_stmt(st, "SELECT hash FROM users WHERE name = ?")) == NULL)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_TEXT)
		hash = xstrdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db");
	if (rc == SQLITE_DONE && store_damage_orphan(st, name))
		return err_set(err, ERR_DAMAGED, "user %s is damaged: a database without a users row",
			name);
	ok = hash_check(password, hash);
	free(hash);
	return ok;
}

int
store_user_exists(struct store *st, const char *name, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (!store_user_name_valid(name))
		return 0;
	if ((s = store_stmt(st, "SELECT 1 FROM users WHERE name = ?")) == NULL)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 1;
	if (rc == SQLITE_DONE)
		return 0;
	return store_sql_err(st->db, rc, err, "users.db");
}

int
store_user_set_quota(struct store *st, const char *name, int64_t bytes, int64_t messages,
	struct err *err)
{
	if (ro_refuse(st, err) < 0 || user_name_check(name, err) < 0)
		return -1;
	if (bytes < -1 || messages < -1)
		return err_set(err, ERR_INVALID, "quota limits must be -1 (default), 0 (unlimited) or positive");
	if (user_update(st,
		"UPDATE users SET quota_bytes = ?3, quota_messages = ?4 WHERE name = ?1 AND ?2 IS NULL",
		name, NULL, bytes, messages, err) < 0)
		return -1;
	hook_fire(st, name, STORE_CHANGE_USER);
	return 0;
}

/* Fill ui from a users row.  The hash is copied into ui->hash_buf; one
 * longer than STORE_HASH_MAX (never written by this store:
 * store_user_set_hash refuses it) is left pointing into the statement
 * when keep_stmt (the list callback), else NULL (store_user_hash reads
 * it whole). */
static void
userinfo_fill(sqlite3_stmt *s, struct store_userinfo *ui, bool keep_stmt)
{
	const char *h;
	size_t hlen;

	memset(ui, 0, sizeof(*ui));
	str_lcpy(ui->name, (const char *)sqlite3_column_text(s, 0), sizeof(ui->name));
	h = sqlite3_column_type(s, 1) == SQLITE_TEXT ? (const char *)sqlite3_column_text(s, 1) : NULL;
	ui->has_password = h != NULL;
	if (h != NULL) {
		hlen = (size_t)sqlite3_column_bytes(s, 1);
		if (hlen <= STORE_HASH_MAX) {
			memcpy(ui->hash_buf, h, hlen);
			ui->hash_buf[hlen] = '\0';
			ui->hash = ui->hash_buf;
		} else {
			ui->hash = keep_stmt ? h : NULL;
		}
	}
	ui->quota_bytes = sqlite3_column_int64(s, 2);
	ui->quota_messages = sqlite3_column_int64(s, 3);
	ui->created = sqlite3_column_int64(s, 4);
}

int
store_user_list(struct store *st, store_user_fn fn, void *ctx, struct err *err)
{
	sqlite3_stmt *s = NULL;
	struct store_userinfo ui;
	int rc, r = 0;

	if (sqlite3_prepare_v2(st->db,
		"SELECT name, hash, quota_bytes, quota_messages, created FROM users ORDER BY name",
		-1, &s, NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		userinfo_fill(s, &ui, true);
		r = fn(ctx, &ui);
		if (r != 0)
			break;
	}
	sqlite3_finalize(s);
	if (r != 0)
		return r;
	if (rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db list");
	return 0;
}

int
store_user_info(struct store *st, const char *name, struct store_userinfo *ui_r, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc;

	if (user_name_check(name, err) < 0)
		return -1;
	if ((s = store_stmt(st, "SELECT name, hash, quota_bytes, quota_messages, created FROM users WHERE name = ?")) == NULL)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		userinfo_fill(s, ui_r, false);  /* hash copied: the statement dies here */
		sqlite3_reset(s);
		return 0;
	}
	sqlite3_reset(s);
	if (rc == SQLITE_DONE)
		return err_set(err, ERR_NOTFOUND, "no such user %s", name);
	return store_sql_err(st->db, rc, err, "users.db");
}

int
store_user_hash(struct store *st, const char *name, struct buf *out, struct err *err)
{
	sqlite3_stmt *s = NULL;
	int rc, r;

	if (user_name_check(name, err) < 0)
		return -1;
	if ((s = store_stmt(st, "SELECT hash FROM users WHERE name = ?")) == NULL)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		r = 0;
		if (sqlite3_column_type(s, 0) == SQLITE_TEXT) {
			const char *h = (const char *)sqlite3_column_text(s, 0);
			buf_append(out, h, (size_t)sqlite3_column_bytes(s, 0));
			r = 1;
		}
		sqlite3_reset(s);
		return r;
	}
	sqlite3_reset(s);
	if (rc == SQLITE_DONE)
		return err_set(err, ERR_NOTFOUND, "no such user %s", name);
	return store_sql_err(st->db, rc, err, "users.db");
}

int
store_quota_limits(struct store *st, const char *user, uint64_t *bytes_r, uint64_t *msgs_r,
	struct err *err)
{
	struct store_userinfo ui;

	if (store_user_info(st, user, &ui, err) < 0)
		return -1;
	*bytes_r = ui.quota_bytes < 0 ? st->opts.quota_default_bytes : (uint64_t)ui.quota_bytes;
	*msgs_r = ui.quota_messages < 0 ? st->opts.quota_default_messages :
		(uint64_t)ui.quota_messages;
	return 0;
}

/* ------------------------------------------------------------------ */
/* The replication credential (U3)                                     */

/* Older roots kept a replica's sync credential as the users row "sync"
 * (castorctl init --role replica --sync-password).  Once per root
 * (meta "sync_auth"): its hash moves to sync_auth; on a replica the
 * row and its spool go (a mail user of that name, if the master has
 * one, comes back through replication as an ordinary user); on a
 * master the row stays, since it may be somebody's mail. */
static int
sync_auth_migrate(struct store *st, struct err *err)
{
	sqlite3_stmt *s = NULL;
	bool replica = false;
	int moved = 0, dropped = 0, rc;

	if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM meta WHERE key = 'sync_auth'", -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW)
		return 0;
	if (store_sql_exec(st->db, "BEGIN IMMEDIATE", err) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "SELECT role FROM server WHERE id = 1", -1, &s, NULL) != SQLITE_OK) {
		store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
		goto fail;
	}
	if (sqlite3_step(s) == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_TEXT)
		replica = str_eq((const char *)sqlite3_column_text(s, 0), "replica");
	sqlite3_finalize(s);
	/* re-read under the lock: another process may have done it */
	if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM meta WHERE key = 'sync_auth'", -1, &s, NULL) != SQLITE_OK) {
		store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
		goto fail;
	}
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	if (rc == SQLITE_ROW) {
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
		return 0;
	}
	if (store_sql_exec(st->db, "INSERT OR IGNORE INTO sync_auth(authname, hash)"
		" SELECT name, hash FROM users WHERE name = 'sync' AND hash IS NOT NULL", err) < 0)
		goto fail;
	moved = sqlite3_changes(st->db);
	if (replica) {
		if (store_sql_exec(st->db, "DELETE FROM users WHERE name = 'sync'", err) < 0)
			goto fail;
		dropped = sqlite3_changes(st->db);
	}
	if (store_sql_exec(st->db, "INSERT INTO meta(key, value) VALUES ('sync_auth', '1')", err) < 0 ||
	    store_sql_exec(st->db, "COMMIT", err) < 0)
		goto fail;
	if (moved > 0 || dropped > 0)
		log_info("sync credential moved out of the users user=sync role=%s kept_as_user=%s",
			replica ? "replica" : "master", dropped > 0 ? "no" : "yes");
	if (dropped > 0) {
		struct err e2;
		if (spool_retire(st, "sync", &e2) < 0)
			log_warn("sync account spool not moved user=sync error=%s", log_q(e2.msg));
	}
	return 0;
fail:
	sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
	err_prefix(err, "users.db: moving the sync credential out of the users");
	return -1;
}

int
store_sync_auth_set(struct store *st, const char *authname, const char *password, struct err *err)
{
	sqlite3_stmt *s = NULL;
	char *hash = NULL;
	int rc;

	if (authname == NULL || authname[0] == '\0' || strlen(authname) > 255 ||
	    str_mem_has(authname, strlen(authname), '\n'))
		return err_set(err, ERR_INVALID, "bad sync authname");
	if (password == NULL || password[0] == '\0')
		return err_set(err, ERR_INVALID, "empty sync password");
	if (hash_password(password, &hash, err) < 0)
		return -1;
	if (sqlite3_prepare_v2(st->db, "INSERT OR REPLACE INTO sync_auth(authname, hash) VALUES (?, ?)",
		-1, &s, NULL) != SQLITE_OK) {
		free(hash);
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	}
	sqlite3_bind_text(s, 1, authname, -1, SQLITE_STATIC);
	sqlite3_bind_text(s, 2, hash, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_finalize(s);
	explicit_bzero(hash, strlen(hash));
	free(hash);
	if (rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db sync_auth");
	log_info("sync credential set authname=%s", log_q(authname));
	return 0;
}

int
store_sync_auth_verify(struct store *st, const char *authname, const char *password, struct err *err)
{
	sqlite3_stmt *s = NULL;
	char *hash = NULL;
	int rc, ok;

	if (authname == NULL || password == NULL)
		return 0;
	if (sqlite3_prepare_v2(st->db, "SELECT hash FROM sync_auth WHERE authname = ?", -1, &s, NULL) != SQLITE_OK)
		return store_sql_err(st->db, SQLITE_ERROR, err, "users.db");
	sqlite3_bind_text(s, 1, authname, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_TEXT)
		hash = xstrdup((const char *)sqlite3_column_text(s, 0));
	sqlite3_finalize(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_err(st->db, rc, err, "users.db");
	ok = hash_check(password, hash);
	free(hash);
	return ok;
}
