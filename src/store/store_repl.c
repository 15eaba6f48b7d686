/*
 * store_repl.c - applying replicated state with explicit values (the
 * replica side of the sync protocol), and purging tombstones once
 * every channel has seen them.
 *
 * The store keeps its invariants (store_user.c M1-M6) whatever the
 * caller sends: the user's modseq counter is raised to cover every
 * explicit modseq, uidnext is kept above every uid, the sync checksum
 * and quota usage follow the records.  Values that would break them
 * are refused with ERR_CONFLICT for the caller's conflict policy
 * (issue 8) to resolve; nothing here guesses.
 *
 * The message-id index (records.msgid, duplicate suppression) is not
 * sent: a record inserted here gets it from its body, as on the master,
 * so duplicates are suppressed the same way after a failover.
 *
 * INBOX adoption: every user database is born with an INBOX of its own
 * uniqueid.  When a replica receives the master's INBOX and its own is
 * untouched (no record ever: uidnext = 1), it takes the master's
 * uniqueid instead of reporting a name clash.
 */
#include "store/store.h"
#include "store/store_int.h"
#include "store/store_repl.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/atomicfile.h"
#include "lib/buf.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/imapenv.h"

static bool
uniqueid_valid(const char *id)
{
	if (id == NULL || strlen(id) != STORE_UNIQUEID_LEN)
		return false;
	for (int i = 0; i < STORE_UNIQUEID_LEN; i++)
		if (!((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return true;
}

static int
raise_modseq(struct store_user *u, uint64_t m, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, "UPDATE state SET modseq = max(modseq, ?) WHERE id = 1",
		err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)m);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "modseq");
	u->dirty = true;
	return 0;
}

/* Highest UID and modseq of a mailbox's records: two index probes
 * (records' primary key and records_mbox_modseq), not a scan. */
static int
mailbox_max(struct store_user *u, int64_t id, uint32_t *maxuid, uint64_t *maxmodseq,
	struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, "SELECT coalesce((SELECT max(uid) FROM records WHERE mailbox = ?1), 0),"
		" coalesce((SELECT max(modseq) FROM records WHERE mailbox = ?1), 0)",
		err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return store_sql_err(u->db, rc, err, "mailbox max");
	}
	*maxuid = (uint32_t)sqlite3_column_int64(s, 0);
	*maxmodseq = (uint64_t)sqlite3_column_int64(s, 1);
	sqlite3_reset(s);
	return 0;
}

/* Bytes and messages of a mailbox's live records (a scan: only when the
 * mailbox goes from live to deleted or back). */
static int
mailbox_live_usage(struct store_user *u, int64_t id, int64_t *bytes, int64_t *msgs,
	struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, "SELECT coalesce(sum(size), 0), count(*) FROM records"
		" WHERE mailbox = ? AND expunged_modseq = 0", err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		return store_sql_err(u->db, rc, err, "usage");
	}
	*bytes = sqlite3_column_int64(s, 0);
	*msgs = sqlite3_column_int64(s, 1);
	sqlite3_reset(s);
	return 0;
}

static int
repl_mailbox_apply(struct store_user *u, const struct store_mailbox *mb, const char *norm,
	const char *su, struct err *err)
{
	struct store_mbrow row, other;
	struct err e;
	sqlite3_stmt *s;
	int64_t bytes = 0, msgs = 0;
	uint32_t maxuid = 0;
	uint64_t top, maxmodseq = 0;
	bool exists, live_now = mb->deleted_modseq == 0;
	int rc;

	rc = store_mailbox_load_id(u, mb->uniqueid, true, &row, &e);
	if (rc < 0 && e.kind != ERR_NOTFOUND) {
		if (err)
			*err = e;
		return -1;
	}
	exists = rc == 0;
	if (live_now && store_mailbox_load_name(u, norm, &other, &e) == 0 &&
	    !str_eq(other.mb.uniqueid, mb->uniqueid)) {
		if (!exists && str_eq(norm, "INBOX") && other.mb.uidnext == 1) {
			/* INBOX adoption (see top of file). */
			s = store_user_stmt(u, "UPDATE mailboxes SET uniqueid = ?2 WHERE id = ?1", err);
			if (s == NULL)
				return -1;
			sqlite3_bind_int64(s, 1, other.id);
			sqlite3_bind_text(s, 2, mb->uniqueid, -1, SQLITE_STATIC);
			rc = sqlite3_step(s);
			sqlite3_reset(s);
			if (rc != SQLITE_DONE)
				return store_sql_err(u->db, rc, err, "inbox adopt");
			row = other;
			str_lcpy(row.mb.uniqueid, mb->uniqueid, sizeof(row.mb.uniqueid));
			exists = true;
		} else {
			return err_set(err, ERR_EXISTS, "mailbox name %s is held by another uniqueid %s",
				log_q(norm), other.mb.uniqueid);
		}
	}
	if (exists) {
		if (mailbox_max(u, row.id, &maxuid, &maxmodseq, err) < 0)
			return -1;
		if ((row.mb.deleted_modseq == 0) != live_now &&
		    mailbox_live_usage(u, row.id, &bytes, &msgs, err) < 0)
			return -1;
		if (mb->uidvalidity != row.mb.uidvalidity && maxuid != 0)
			return err_set(err, ERR_CONFLICT, "mailbox %s: uidvalidity %u differs from %u",
				mb->uniqueid, mb->uidvalidity, row.mb.uidvalidity);
		if (mb->uidnext <= maxuid)
			return err_set(err, ERR_CONFLICT, "mailbox %s: uidnext %u is not above uid %u",
				mb->uniqueid, mb->uidnext, maxuid);
		s = store_user_stmt(u, "UPDATE mailboxes SET name = ?2, uidvalidity = ?3, uidnext = ?4,"
			" highestmodseq = ?5, createdmodseq = ?6, modseq = ?7, deleted_modseq = ?8,"
			" specialuse = ?9 WHERE id = ?1", err);
		if (s == NULL)
			return -1;
		sqlite3_bind_int64(s, 1, row.id);
	} else {
		s = store_user_stmt(u, "INSERT INTO mailboxes(uniqueid, name, uidvalidity, uidnext,"
			" highestmodseq, createdmodseq, modseq, deleted_modseq, specialuse, recentuid, sync_crc)"
			" VALUES (?10, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 1, 0)", err);
		if (s == NULL)
			return -1;
		sqlite3_bind_text(s, 10, mb->uniqueid, -1, SQLITE_STATIC);
	}
	sqlite3_bind_text(s, 2, norm, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, mb->uidvalidity);
	sqlite3_bind_int64(s, 4, mb->uidnext ? mb->uidnext : 1);
	top = mb->highestmodseq;
	if (mb->modseq > top)
		top = mb->modseq;
	if (mb->deleted_modseq > top)
		top = mb->deleted_modseq;
	if (maxmodseq > top)
		top = maxmodseq;
	/* M2: highestmodseq covers the row's own changes and its records */
	sqlite3_bind_int64(s, 5, (sqlite3_int64)top);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)mb->createdmodseq);
	sqlite3_bind_int64(s, 7, (sqlite3_int64)mb->modseq);
	sqlite3_bind_int64(s, 8, (sqlite3_int64)mb->deleted_modseq);
	sqlite3_bind_text(s, 9, su, -1, SQLITE_STATIC);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		if ((rc & 0xff) == SQLITE_CONSTRAINT)
			return err_set(err, ERR_EXISTS, "mailbox %s already exists", log_q(norm));
		return store_sql_err(u->db, rc, err, "repl mailbox");
	}
	/* Quota usage follows live/deleted transitions. */
	if (exists && row.mb.deleted_modseq == 0 && !live_now)
		rc = store_user_usage_add(u, -bytes, -msgs, err);
	else if (exists && row.mb.deleted_modseq != 0 && live_now)
		rc = store_user_usage_add(u, bytes, msgs, err);
	else
		rc = 0;
	if (rc < 0)
		return -1;
	if (raise_modseq(u, top, err) < 0)
		return -1;
	store_user_event(u, STORE_CHANGE_MAILBOX, mb->uniqueid);
	return 0;
}

int
store_repl_mailbox(struct store_user *u, const struct store_mailbox *mb, struct err *err)
{
	char norm[STORE_MBOX_NAME_MAX + 1], su[STORE_SPECIALUSE_MAX + 1];
	int rc;

	if (mb == NULL || !uniqueid_valid(mb->uniqueid))
		return err_set(err, ERR_INVALID, "malformed mailbox uniqueid");
	if (store_mailbox_name_check(mb->name, norm, err) < 0 ||
	    store_mailbox_specialuse_check(mb->specialuse, su, sizeof(su), err) < 0)
		return -1;
	if (mb->uidvalidity == 0)
		return err_set(err, ERR_INVALID, "uidvalidity 0");
	if (str_eq(norm, "INBOX") && mb->deleted_modseq != 0)
		return err_set(err, ERR_PERM, "INBOX cannot be deleted");
	if (store_user_op_begin(u, err) < 0)
		return -1;
	rc = repl_mailbox_apply(u, mb, norm, su, err);
	return store_user_op_end(u, rc, "store.repl.before_commit", NULL, err);
}

/* Reads the row at (mailbox, uid) into *old (keywords in *oldkw, the
 * caller's to free): 1 found, 0 none, -1 error. */
static int
repl_record_old(struct store_user *u, int64_t mbrow, uint32_t uid, struct store_record *old,
	char **oldkw, struct err *err)
{
	sqlite3_stmt *s;
	bool found = false;
	int rc;

	s = store_user_stmt(u, "SELECT uid, guid, size, internaldate, sysflags, keywords, modseq,"
		" expunged_modseq FROM records WHERE mailbox = ? AND uid = ?", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, mbrow);
	sqlite3_bind_int64(s, 2, uid);
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW) {
		const char *k = (const char *)sqlite3_column_text(s, 5);
		memset(old, 0, sizeof(*old));
		old->uid = uid;
		str_lcpy(old->guid, (const char *)sqlite3_column_text(s, 1), sizeof(old->guid));
		old->size = (uint64_t)sqlite3_column_int64(s, 2);
		old->internaldate = sqlite3_column_int64(s, 3);
		old->sysflags = (uint32_t)sqlite3_column_int64(s, 4);
		*oldkw = xstrdup(k ? k : "");
		old->keywords = *oldkw;
		old->modseq = (uint64_t)sqlite3_column_int64(s, 6);
		old->expunged_modseq = (uint64_t)sqlite3_column_int64(s, 7);
		found = true;
	}
	sqlite3_reset(s);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "record");
	return found ? 1 : 0;
}

/* Replace: the caller kept the old message elsewhere (quarantine, or a
 * fresh UID): drop its row, take it out of the checksum and the usage. */
static int
repl_record_drop(struct store_user *u, struct store_mbrow *row, const struct store_record *old,
	bool mb_live, struct err *err)
{
	sqlite3_stmt *s;
	int rc;

	s = store_user_stmt(u, "DELETE FROM records WHERE mailbox = ?1 AND uid = ?2", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, row->id);
	sqlite3_bind_int64(s, 2, old->uid);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "replace record");
	if (old->expunged_modseq == 0) {
		row->mb.sync_crc ^= store_record_crc(old);
		if (mb_live && store_user_usage_add(u, -(int64_t)old->size, -1, err) < 0)
			return -1;
	}
	u->dirty = true;
	return 0;
}

/* Same message at the uid: its flags, keywords, modseqs and date take the
 * sent values; checksum, usage and counters follow.  Another message
 * there is a conflict. */
static int
repl_record_update(struct store_user *u, struct store_mbrow *row, const struct store_record *old,
	struct store_record *nr, bool mb_live, const char *mailbox_id, struct err *err)
{
	sqlite3_stmt *s;
	int rc;

	if (!str_eq(old->guid, nr->guid))
		return err_set(err, ERR_CONFLICT, "uid %u of %s is %s here, not %s", nr->uid,
			mailbox_id, old->guid, nr->guid);
	s = store_user_stmt(u, "UPDATE records SET sysflags = ?3, keywords = ?4, modseq = ?5,"
		" expunged_modseq = ?6, internaldate = ?7 WHERE mailbox = ?1 AND uid = ?2", err);
	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, row->id);
	sqlite3_bind_int64(s, 2, nr->uid);
	sqlite3_bind_int64(s, 3, nr->sysflags);
	sqlite3_bind_text(s, 4, nr->keywords, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 5, (sqlite3_int64)nr->modseq);
	sqlite3_bind_int64(s, 6, (sqlite3_int64)nr->expunged_modseq);
	sqlite3_bind_int64(s, 7, nr->internaldate);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "repl record");
	nr->size = old->size;
	if (old->expunged_modseq == 0)
		row->mb.sync_crc ^= store_record_crc(old);
	if (nr->expunged_modseq == 0)
		row->mb.sync_crc ^= store_record_crc(nr);
	if (mb_live && old->expunged_modseq == 0 && nr->expunged_modseq != 0)
		rc = store_user_usage_add(u, -(int64_t)old->size, -1, err);
	else if (mb_live && old->expunged_modseq != 0 && nr->expunged_modseq == 0)
		rc = store_user_usage_add(u, (int64_t)old->size, 1, err);
	else
		rc = 0;
	if (rc < 0)
		return -1;
	u->dirty = true;
	if (nr->uid >= row->mb.uidnext)
		row->mb.uidnext = nr->uid + 1;
	if (nr->modseq > row->mb.highestmodseq)
		row->mb.highestmodseq = nr->modseq;
	return 0;
}

/* A uid new here: insert the record with the strings and message-id
 * index computed from its body, as the master did (M7). */
static int
repl_record_insert(struct store_user *u, struct store_mbrow *row, struct store_record *nr,
	bool mb_live, struct err *err)
{
	struct store_blob blob;
	struct imapenv env;
	struct buf mid = BUF_INIT;
	int rc;

	if (store_blob_map(u, nr->guid, &blob, err) < 0)
		return -1;
	nr->size = blob.len;
	imapenv_build(blob.data, blob.len, &env);
	/* the message-id index, as the master computed it (M7) */
	store_message_id(blob.data, blob.len, &mid);
	store_blob_release(&blob);
	rc = store_record_insert(u, row, nr, buf_cstr(&env.envelope),
		buf_cstr(&env.bodystructure), env.tree.data, env.tree.len,
		buf_cstr(&mid), err);
	buf_free(&mid);
	imapenv_free(&env);
	if (rc < 0)
		return -1;
	if (mb_live && nr->expunged_modseq == 0 &&
	    store_user_usage_add(u, (int64_t)nr->size, 1, err) < 0)
		return -1;
	return 0;
}

static int
repl_record_apply(struct store_user *u, const char *mailbox_id, const struct store_record *r,
	const char *kw, bool replace, struct err *err)
{
	struct store_mbrow row;
	struct store_record old, nr = *r;
	bool have_old, mb_live;
	int rc, b;
	char *oldkw = NULL;

	nr.keywords = kw;
	if (store_mailbox_load_id(u, mailbox_id, true, &row, err) < 0)
		return -1;
	mb_live = row.mb.deleted_modseq == 0;
	b = store_blob_exists(u, r->guid, err);
	if (b < 0)
		return -1;
	if (b == 0)
		return err_set(err, ERR_NOTFOUND, "message body %s not present", r->guid);
	rc = repl_record_old(u, row.id, r->uid, &old, &oldkw, err);
	if (rc < 0)
		return rc;
	have_old = rc > 0;
	if (have_old && !str_eq(old.guid, r->guid) && replace) {
		rc = repl_record_drop(u, &row, &old, mb_live, err);
		free(oldkw);
		oldkw = NULL;
		if (rc < 0)
			return rc;
		have_old = false;
	}
	if (have_old) {
		rc = repl_record_update(u, &row, &old, &nr, mb_live, mailbox_id, err);
		free(oldkw);
		if (rc < 0)
			return rc;
	} else if (repl_record_insert(u, &row, &nr, mb_live, err) < 0) {
		return -1;
	}
	if (store_mailbox_save_counters(u, &row, err) < 0)
		return -1;
	if (raise_modseq(u, r->expunged_modseq > r->modseq ? r->expunged_modseq : r->modseq, err) < 0)
		return -1;
	store_user_event(u, STORE_CHANGE_MAILBOX, row.mb.uniqueid);
	return 0;
}

static int
repl_record(struct store_user *u, const char *mailbox_id, const struct store_record *r,
	bool replace, struct err *err)
{
	struct buf kw = BUF_INIT;
	int rc;

	if (r == NULL || r->uid == 0 || r->uid == UINT32_MAX || !store_guid_valid(r->guid))
		return err_set(err, ERR_INVALID, "malformed record (uid or guid)");
	if (r->sysflags & ~STORE_FLAGS_ALL)
		return err_set(err, ERR_INVALID, "unknown system flag bits 0x%x", r->sysflags);
	if (r->modseq == 0)
		return err_set(err, ERR_INVALID, "record modseq 0");
	if (store_keywords_canon(r->keywords, &kw, err) < 0)
		return -1;
	if (store_user_op_begin(u, err) < 0) {
		buf_free(&kw);
		return -1;
	}
	rc = repl_record_apply(u, mailbox_id, r, buf_cstr(&kw), replace, err);
	buf_free(&kw);
	return store_user_op_end(u, rc, "store.repl.before_commit", NULL, err);
}

int
store_repl_record(struct store_user *u, const char *mailbox_id, const struct store_record *r,
	struct err *err)
{
	return repl_record(u, mailbox_id, r, false, err);
}

int
store_repl_record_replace(struct store_user *u, const char *mailbox_id,
	const struct store_record *r, struct err *err)
{
	return repl_record(u, mailbox_id, r, true, err);
}

int
store_repl_quarantine(struct store_user *u, const char *mailbox_id, uint32_t uid,
	const char *reason, struct err *err)
{
	struct store_record_full old;
	struct store_mailbox mb;
	struct buf dir = BUF_INIT, path = BUF_INIT, body = BUF_INIT, line = BUF_INIT;
	struct err e2;
	char when[32];
	time_t now = time(NULL);
	struct tm tm;
	int fd = -1, rc = -1;

	if (store_record_get(u, mailbox_id, uid, &old, &e2) < 0) {
		if (e2.kind == ERR_NOTFOUND)
			return 0;
		if (err)
			*err = e2;
		return -1;
	}
	if (old.rec.expunged_modseq != 0) {
		store_record_full_free(&old);
		return 0;
	}
	if (store_mailbox_get_id(u, mailbox_id, true, &mb, err) < 0)
		goto out;
	buf_printf(&dir, "%s/quarantine/%s", u->st->root, u->name);
	if (atomicfile_mkdir_p(buf_cstr(&dir), 0700, err) < 0)
		goto out;
	buf_printf(&path, "%s/%s", buf_cstr(&dir), old.rec.guid);
	if (store_blob_read(u, old.rec.guid, &body, err) < 0)
		goto out;
	if (atomicfile_write(buf_cstr(&path), body.data, body.len, 0600, err) < 0)
		goto out;
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	buf_printf(&line, "time=%s user=%s mailbox=%s name=", when, u->name, mailbox_id);
	buf_put_quoted(&line, mb.name, strlen(mb.name));
	buf_printf(&line, " uid=%u guid=%s size=%llu reason=%s\n", uid, old.rec.guid,
		(unsigned long long)old.rec.size, reason);
	buf_reset(&path);
	buf_printf(&path, "%s/quarantine/manifest", u->st->root);
	fd = open(buf_cstr(&path), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0) {
		err_errno(err, ERR_TEMP, "open %s", buf_cstr(&path));
		goto out;
	}
	if (atomicfile_write_all(fd, line.data, line.len) < 0 || fsync(fd) < 0) {
		err_errno(err, ERR_TEMP, "write %s", buf_cstr(&path));
		goto out;
	}
	if (atomicfile_fsync_parent_dir(buf_cstr(&path), err) < 0)
		goto out;
	log_warn("message quarantined user=%s mailbox=%s name=%s uid=%u guid=%s reason=%s path=%s/%s",
		u->name, mailbox_id, log_q(mb.name), uid, old.rec.guid, reason, buf_cstr(&dir),
		old.rec.guid);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	store_record_full_free(&old);
	buf_free(&dir);
	buf_free(&path);
	buf_free(&body);
	buf_free(&line);
	return rc;
}

int
store_repl_blob(struct store_user *u, const char *guid, const void *data, size_t len,
	struct err *err)
{
	char g[STORE_GUID_LEN + 1];
	int rc;

	if (!store_guid_valid(guid))
		return err_set(err, ERR_INVALID, "malformed guid");
	if (len > STORE_MESSAGE_MAX)
		return err_set(err, ERR_TOOBIG, "message body over the size limit");
	store_guid(len ? data : "", len, g);
	if (!str_eq(g, guid))
		return err_set(err, ERR_CORRUPT, "body does not match its guid %s (sha1 %s)", guid, g);
	if (store_user_op_begin(u, err) < 0)
		return -1;
	rc = store_blob_put(u, guid, len ? data : "", len, false, err);
	return store_user_op_end(u, rc, "store.repl.blob_before_commit", NULL, err);
}

int
store_repl_sub(struct store_user *u, const char *name, bool subscribed, uint64_t modseq,
	struct err *err)
{
	char norm[STORE_MBOX_NAME_MAX + 1];
	int rc;

	if (store_mailbox_name_check(name, norm, err) < 0)
		return -1;
	if (modseq == 0)
		return err_set(err, ERR_INVALID, "subscription modseq 0");
	if (store_user_op_begin(u, err) < 0)
		return -1;
	rc = store_mailbox_sub_set(u, norm, subscribed, modseq, err);
	if (rc == 0)
		rc = raise_modseq(u, modseq, err);
	return store_user_op_end(u, rc, NULL, NULL, err);
}

int
store_repl_modseq(struct store_user *u, uint64_t modseq, struct err *err)
{
	int rc;

	if (store_user_op_begin(u, err) < 0)
		return -1;
	rc = raise_modseq(u, modseq, err);
	return store_user_op_end(u, rc, NULL, NULL, err);
}

/* ------------------------------------------------------------------ */
/* purge */

static int64_t
exec_changes(struct store_user *u, const char *sql, uint64_t upto, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, sql, err);
	int rc;

	if (s == NULL)
		return -1;
	sqlite3_bind_int64(s, 1, (sqlite3_int64)upto);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc != SQLITE_DONE)
		return store_sql_err(u->db, rc, err, "purge");
	return sqlite3_changes(u->db);
}

/* Inside a write operation: list the file bodies no record names any
 * more (their guids into *files), then drop every blobs row no record
 * names. */
static int
orphans_drop(struct store_user *u, char ***files, size_t *nfiles, struct err *err)
{
	sqlite3_stmt *s = store_user_stmt(u, "SELECT guid FROM blobs WHERE data IS NULL AND NOT EXISTS"
		" (SELECT 1 FROM records WHERE records.guid = blobs.guid)", err);

	if (s == NULL)
		return -1;
	while (sqlite3_step(s) == SQLITE_ROW) {
		*files = xreallocarray(*files, *nfiles + 1, sizeof(**files));
		(*files)[(*nfiles)++] = xstrdup((const char *)sqlite3_column_text(s, 0));
	}
	sqlite3_reset(s);
	return exec_changes(u, "DELETE FROM blobs WHERE ?1 = ?1 AND NOT EXISTS"
		" (SELECT 1 FROM records WHERE records.guid = blobs.guid)", 0, err) < 0 ? -1 : 0;
}

/* After the operation: remove the files orphans_drop listed once their
 * rows are durably gone (committed), then release the blob lock. */
static void
orphans_unlink(struct store_user *u, char **files, size_t nfiles, bool committed)
{
	for (size_t i = 0; committed && i < nfiles; i++) {
		struct buf p = BUF_INIT;
		store_blob_path(u, files[i], &p);
		if (unlink(buf_cstr(&p)) < 0)
			log_warn("purge: cannot remove body path=%s", log_q(buf_cstr(&p)));
		buf_free(&p);
	}
	store_blob_unlock(u);
	for (size_t i = 0; i < nfiles; i++)
		free(files[i]);
	free(files);
}

int64_t
store_purge(struct store_user *u, uint64_t upto, struct err *err)
{
	char **files = NULL;
	size_t nfiles = 0;
	int64_t removed = 0, r;
	int rc = 0;

	if (u->in_txn)
		return err_set(err, ERR_INVALID, "purge inside a transaction");
	if (u->st->opts.read_only)
		return err_set(err, ERR_PERM, "read-only replica");
	/* Exclusive blobs.lock: no append may adopt a body we are about to
	 * unlink (store_blob.c). */
	if (store_blob_lock(u, true, err) < 0)
		return -1;
	if (store_user_op_begin(u, err) < 0) {
		store_blob_unlock(u);
		return -1;
	}
	r = exec_changes(u, "DELETE FROM records WHERE expunged_modseq != 0 AND expunged_modseq <= ?",
		upto, err);
	if (r < 0)
		rc = -1;
	else
		removed += r;
	if (rc == 0) {
		r = exec_changes(u, "DELETE FROM records WHERE mailbox IN (SELECT id FROM mailboxes"
			" WHERE deleted_modseq != 0 AND deleted_modseq <= ?)", upto, err);
		if (r < 0)
			rc = -1;
		else
			removed += r;
	}
	if (rc == 0 && exec_changes(u, "DELETE FROM mailboxes WHERE deleted_modseq != 0"
		" AND deleted_modseq <= ?", upto, err) < 0)
		rc = -1;
	if (rc == 0 && exec_changes(u, "DELETE FROM subs WHERE subscribed = 0 AND modseq <= ?",
		upto, err) < 0)
		rc = -1;
	if (rc == 0 && orphans_drop(u, &files, &nfiles, err) < 0)
		rc = -1;
	u->dirty = true;  /* the rows must be gone durably before the files go */
	rc = store_user_op_end(u, rc, NULL, NULL, err);
	orphans_unlink(u, files, nfiles, rc == 0);
	return rc < 0 ? -1 : removed;
}

/* ------------------------------------------------------------------ */
/* delete_hold_days: deleted/ notes and the purge of held mailboxes    */

static void
deleted_path(struct store_user *u, const char *uniqueid, struct buf *out)
{
	buf_printf(out, "%s/deleted/%s/%s", u->st->root, u->name, uniqueid);
}

int
store_deleted_note(struct store_user *u, const struct store_mailbox *mb, int64_t when,
	struct err *err)
{
	struct buf p = BUF_INIT, d = BUF_INIT, line = BUF_INIT;
	int rc = -1;

	buf_printf(&d, "%s/deleted/%s", u->st->root, u->name);
	deleted_path(u, mb->uniqueid, &p);
	if (atomicfile_mkdir_p(buf_cstr(&d), 0700, err) < 0)
		goto out;
	buf_printf(&line, "time=%lld user=%s mailbox=%s name=", (long long)when, u->name,
		mb->uniqueid);
	buf_put_quoted(&line, mb->name, strlen(mb->name));
	buf_printf(&line, " uidvalidity=%u deleted_modseq=%llu\n", mb->uidvalidity,
		(unsigned long long)mb->deleted_modseq);
	rc = atomicfile_write(buf_cstr(&p), line.data, line.len, 0600, err);
out:
	buf_free(&p);
	buf_free(&d);
	buf_free(&line);
	return rc;
}

void
store_deleted_forget(struct store_user *u, const char *uniqueid)
{
	struct buf p = BUF_INIT;

	deleted_path(u, uniqueid, &p);
	(void)unlink(buf_cstr(&p));
	buf_free(&p);
}

/* Remove one tombstoned mailbox, its records and the bodies nothing else
 * names.  0, or -1. */
static int
purge_mailbox(struct store_user *u, const char *uniqueid, struct err *err)
{
	struct store_mbrow row;
	char **files = NULL;
	size_t nfiles = 0;
	sqlite3_stmt *s;
	int rc = 0;

	if (store_blob_lock(u, true, err) < 0)
		return -1;
	if (store_user_op_begin(u, err) < 0) {
		store_blob_unlock(u);
		return -1;
	}
	if (store_mailbox_load_id(u, uniqueid, true, &row, err) < 0)
		rc = -1;
	else if (row.mb.deleted_modseq == 0)
		rc = err_set(err, ERR_INVALID, "mailbox %s is live", uniqueid);
	if (rc == 0) {
		s = store_user_stmt(u, "DELETE FROM records WHERE mailbox = ?", err);
		if (s == NULL) {
			rc = -1;
		} else {
			sqlite3_bind_int64(s, 1, row.id);
			if (sqlite3_step(s) != SQLITE_DONE)
				rc = store_sql_err(u->db, SQLITE_ERROR, err, "purge records");
			sqlite3_reset(s);
		}
	}
	if (rc == 0) {
		s = store_user_stmt(u, "DELETE FROM mailboxes WHERE id = ?", err);
		if (s == NULL) {
			rc = -1;
		} else {
			sqlite3_bind_int64(s, 1, row.id);
			if (sqlite3_step(s) != SQLITE_DONE)
				rc = store_sql_err(u->db, SQLITE_ERROR, err, "purge mailbox");
			sqlite3_reset(s);
		}
	}
	if (rc == 0 && orphans_drop(u, &files, &nfiles, err) < 0)
		rc = -1;
	u->dirty = true;
	rc = store_user_op_end(u, rc, NULL, NULL, err);
	orphans_unlink(u, files, nfiles, rc == 0);
	return rc;
}

struct held {
	struct store_mailbox *v;
	size_t n;
};

static int
held_cb(void *ctx, const char *name, unsigned attrs, const struct store_mailbox *mb)
{
	struct held *h = ctx;

	(void)name;
	(void)attrs;
	if (mb == NULL || mb->deleted_modseq == 0)
		return 0;
	h->v = xreallocarray(h->v, h->n + 1, sizeof(*h->v));
	h->v[h->n++] = *mb;
	return 0;
}

int
store_purge_deleted(struct store_user *u, int64_t hold_seconds, int64_t now, size_t *purged_r,
	size_t *held_r, struct err *err)
{
	struct held h = { NULL, 0 };
	int rc = 0;

	*purged_r = *held_r = 0;
	if (store_mailbox_list(u, "*", STORE_LIST_DELETED | STORE_LIST_NO_PARENTS, held_cb, &h,
		err) < 0)
		return -1;
	for (size_t i = 0; i < h.n && rc == 0; i++) {
		struct buf p = BUF_INIT;
		char *data = NULL;
		size_t len = 0;
		long long t = -1;
		struct err e2;

		deleted_path(u, h.v[i].uniqueid, &p);
		if (atomicfile_read_all(buf_cstr(&p), 4096, &data, &len, &e2) < 0 ||
		    sscanf(data, "time=%lld", &t) != 1) {
			/* deleted before notes were written (or the note is
			 * damaged): the hold starts now */
			free(data);
			buf_free(&p);
			if (store_deleted_note(u, &h.v[i], now, err) < 0)
				rc = -1;
			(*held_r)++;
			continue;
		}
		free(data);
		if (t + hold_seconds > now) {
			(*held_r)++;
			buf_free(&p);
			continue;
		}
		if (purge_mailbox(u, h.v[i].uniqueid, err) < 0) {
			rc = -1;
		} else {
			(*purged_r)++;
			log_notice("deleted mailbox purged after the hold user=%s mailbox=%s name=%s"
				" deleted_at=%lld", u->name, h.v[i].uniqueid, log_q(h.v[i].name), t);
			if (unlink(buf_cstr(&p)) < 0)
				log_warn("purge: cannot remove note path=%s", log_q(buf_cstr(&p)));
		}
		buf_free(&p);
	}
	free(h.v);
	return rc;
}

/* ------------------------------------------------------------------ */
/* uidvalidity reset (split brain, issue 8 case 4)                     */

struct reset_uids {
	uint32_t *v;
	size_t n;
};

static int
reset_cb(void *ctx, const struct store_record *r)
{
	struct reset_uids *x = ctx;

	if (r->expunged_modseq == 0) {
		x->v = xreallocarray(x->v, x->n + 1, sizeof(*x->v));
		x->v[x->n++] = r->uid;
	}
	return 0;
}

int
store_repl_mailbox_reset(struct store_user *u, const char *mailbox_id, const char *reason,
	struct err *err)
{
	struct reset_uids x = { NULL, 0 };
	struct store_mbrow row;
	int64_t bytes = 0, msgs = 0;
	sqlite3_stmt *s;
	int rc = 0;

	if (store_records_since(u, mailbox_id, 0, reset_cb, &x, err) < 0)
		return -1;
	for (size_t i = 0; i < x.n && rc == 0; i++)
		rc = store_repl_quarantine(u, mailbox_id, x.v[i], reason, err);
	free(x.v);
	if (rc < 0)
		return -1;
	if (store_user_op_begin(u, err) < 0)
		return -1;
	if (store_mailbox_load_id(u, mailbox_id, false, &row, err) < 0 ||
	    mailbox_live_usage(u, row.id, &bytes, &msgs, err) < 0)
		rc = -1;
	if (rc == 0) {
		s = store_user_stmt(u, "DELETE FROM records WHERE mailbox = ?", err);
		if (s == NULL) {
			rc = -1;
		} else {
			sqlite3_bind_int64(s, 1, row.id);
			if (sqlite3_step(s) != SQLITE_DONE)
				rc = store_sql_err(u->db, SQLITE_ERROR, err, "reset records");
			sqlite3_reset(s);
		}
	}
	if (rc == 0)
		rc = store_user_usage_add(u, -bytes, -msgs, err);
	if (rc == 0) {
		row.mb.sync_crc = 0;
		rc = store_mailbox_save_counters(u, &row, err);
	}
	if (rc == 0) {
		u->dirty = true;
		log_warn("mailbox reset for another uidvalidity user=%s mailbox=%s name=%s messages=%lld"
			" reason=%s (each quarantined first)", u->name, mailbox_id, log_q(row.mb.name),
			(long long)msgs, reason);
	}
	return store_user_op_end(u, rc, NULL, NULL, err);
}
