/*
 * syncpark.c - the per-channel list of parked users (syncpark.h).
 *
 * Invariants: the file always holds a complete list (atomicfile: write,
 * fsync, rename, fsync dir); a user appears at most once; an entry is
 * removed only after its user was re-synced in full, so a crash between
 * the re-sync and the save parks it again (harmless: one more retry).
 */
#include "sync/syncpark.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#define PARK_MAGIC "castor-parked 1"
#define PARK_FILE_MAX (16 * 1024 * 1024)

void
syncpark_path(const char *root, const char *chan, struct buf *out)
{
	buf_reset(out);
	buf_printf(out, "%s/sync/parked/%s", root, chan);
}

static char *
clean_reason(const char *s)
{
	char *r = xstrdup(s != NULL ? s : "");

	for (char *q = r; *q; q++)
		if (*q == '\t' || *q == '\r' || *q == '\n')
			*q = ' ';
	return r;
}

void
syncpark_clear(struct syncpark *pk)
{
	for (size_t i = 0; i < pk->n; i++) {
		free(pk->v[i].user);
		free(pk->v[i].reason);
	}
	free(pk->v);
	memset(pk, 0, sizeof(*pk));
}

struct syncpark_entry *
syncpark_find(struct syncpark *pk, const char *user)
{
	for (size_t i = 0; i < pk->n; i++)
		if (str_eq(pk->v[i].user, user))
			return &pk->v[i];
	return NULL;
}

struct syncpark_entry *
syncpark_add(struct syncpark *pk, const char *user, const char *reason, uint64_t now_ms,
	uint64_t backoff_ms, bool *added_r)
{
	struct syncpark_entry *e = syncpark_find(pk, user);

	*added_r = e == NULL;
	if (e != NULL)
		return e;
	if (pk->n == pk->cap) {
		pk->cap = pk->cap ? 2 * pk->cap : 8;
		pk->v = xreallocarray(pk->v, pk->cap, sizeof(*pk->v));
	}
	e = &pk->v[pk->n++];
	memset(e, 0, sizeof(*e));
	e->user = xstrdup(user);
	e->reason = clean_reason(reason);
	e->since_ms = now_ms;
	e->backoff_ms = backoff_ms;
	e->retry_ms = now_ms + backoff_ms;
	return e;
}

void
syncpark_set_reason(struct syncpark_entry *e, const char *reason)
{
	free(e->reason);
	e->reason = clean_reason(reason);
}

void
syncpark_remove(struct syncpark *pk, const char *user)
{
	struct syncpark_entry *e = syncpark_find(pk, user);

	if (e == NULL)
		return;
	free(e->user);
	free(e->reason);
	*e = pk->v[--pk->n];
}

/* One "USER\tSINCE\tRETRY\tBACKOFF\tREASON" line; 0 or -1. */
static int
parse_line(struct syncpark *pk, char *line)
{
	char *f[5];
	uint64_t n[3];
	bool added;
	struct syncpark_entry *e;

	for (int i = 0; i < 4; i++) {
		char *t = strchr(line, '\t');
		if (t == NULL)
			return -1;
		*t = '\0';
		f[i] = line;
		line = t + 1;
	}
	f[4] = line;
	if (f[0][0] == '\0')
		return -1;
	for (int i = 0; i < 3; i++)
		if (str_to_u64(f[i + 1], &n[i]) < 0)
			return -1;
	e = syncpark_add(pk, f[0], f[4], n[0], n[2], &added);
	e->retry_ms = n[1];
	return 0;
}

int
syncpark_load(const char *root, const char *chan, struct syncpark *pk, struct err *err)
{
	struct buf p = BUF_INIT;
	char *data = NULL, *line, *next;
	size_t len = 0;
	int rc = 0;

	memset(pk, 0, sizeof(*pk));
	syncpark_path(root, chan, &p);
	if (atomicfile_read_all(buf_cstr(&p), PARK_FILE_MAX, &data, &len, err) < 0) {
		rc = access(buf_cstr(&p), F_OK) < 0 && errno == ENOENT ? 0 : -1;
		buf_free(&p);
		return rc;
	}
	line = data;
	next = strchr(line, '\n');
	if (next == NULL || (*next = '\0', !str_eq(line, PARK_MAGIC))) {
		rc = err_set(err, ERR_CORRUPT, "%s: not a parked-users file", buf_cstr(&p));
		goto out;
	}
	for (line = next + 1; *line; line = next + 1) {
		next = strchr(line, '\n');
		if (next == NULL) {
			rc = err_set(err, ERR_CORRUPT, "%s: last line incomplete", buf_cstr(&p));
			break;
		}
		*next = '\0';
		if (parse_line(pk, line) < 0) {
			rc = err_set(err, ERR_CORRUPT, "%s: bad line", buf_cstr(&p));
			break;
		}
	}
out:
	if (rc < 0)
		syncpark_clear(pk);
	free(data);
	buf_free(&p);
	return rc;
}

int
syncpark_save(const char *root, const char *chan, const struct syncpark *pk, struct err *err)
{
	struct buf p = BUF_INIT, b = BUF_INIT;
	int rc = 0;

	syncpark_path(root, chan, &p);
	if (pk->n == 0) {
		if (unlink(buf_cstr(&p)) < 0 && errno != ENOENT)
			rc = err_errno(err, ERR_TEMP, "%s", buf_cstr(&p));
		else
			(void)atomicfile_fsync_parent_dir(buf_cstr(&p), err);
		buf_free(&p);
		return rc;
	}
	buf_printf(&b, "%s/sync/parked", root);
	if (atomicfile_mkdir_p(buf_cstr(&b), 0755, err) < 0) {
		buf_free(&b);
		buf_free(&p);
		return -1;
	}
	buf_reset(&b);
	buf_printf(&b, "%s\n", PARK_MAGIC);
	for (size_t i = 0; i < pk->n; i++)
		buf_printf(&b, "%s\t%llu\t%llu\t%llu\t%s\n", pk->v[i].user,
			(unsigned long long)pk->v[i].since_ms, (unsigned long long)pk->v[i].retry_ms,
			(unsigned long long)pk->v[i].backoff_ms, pk->v[i].reason);
	rc = atomicfile_write(buf_cstr(&p), b.data, b.len, 0644, err);
	buf_free(&b);
	buf_free(&p);
	return rc;
}
