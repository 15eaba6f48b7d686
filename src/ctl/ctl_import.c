/*
 * ctl_import.c - castorctl import USER MBOX-FILE|MAILDIR [--mailbox NAME].
 *
 * A regular file is read as an mbox (mboxrd unquoting by default,
 * --format mboxo (or --mboxo) for the older convention), a directory as a Maildir (cur/ and
 * new/, flags from the ":2,FLAGS" suffix, internal date from the file's
 * mtime).  Messages are stored with CRLF line ends, so a message's GUID
 * is the SHA-1 of what IMAP serves and of what LMTP would have stored.
 *
 * Two passes.  The first reads the whole source without storing
 * anything and rejects it if any message is malformed or too big: a bad
 * source changes nothing.  The second appends in batches (--batch
 * messages or 16 MiB, whichever comes first), each batch one store
 * transaction, with a progress line on stderr about once a second.
 * Memory: one batch, plus one message being read; never the whole file.
 * If the store refuses a batch (quota, disk full) the batches before it
 * stay imported and the error says how many messages that was.
 */
#include "ctl/ctl.h"

#include "ctl/maildirread.h"
#include "ctl/mboxread.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CTL_IMPORT_BATCH_BYTES (16u << 20)
#define CTL_IMPORT_BATCH_DEFAULT 500

struct ctl_import {
	struct ctl *c;
	struct store_user *u;
	char mailbox_id[STORE_UNIQUEID_LEN + 1];
	const char *mailbox;

	/* the batch: message bytes and keyword strings in `data`, located by offset */
	struct buf data;
	struct store_append_msg *msgs;
	size_t *off, *kwoff;
	size_t n, max_n;

	uint64_t total;         /* messages in the source (first pass) */
	uint64_t total_bytes;
	uint64_t done;          /* appended */
	uint64_t done_bytes;
	size_t max_msg;
	struct ctl_progress progress;
};

/* ---- batching ------------------------------------------------------ */

static void
ctl_import_show(struct ctl_import *im, bool force)
{
	ctl_progress(&im->progress, force, "import: %llu/%llu messages (%.0f%%), %.1f MiB, %.0f msg/s",
	    (unsigned long long)im->done, (unsigned long long)im->total,
	    im->total ? 100.0 * (double)im->done / (double)im->total : 100.0,
	    (double)im->done_bytes / 1048576.0,
	    (double)im->done / (ctl_now() - im->progress.start + 1e-9));
}

static int
ctl_import_flush(struct ctl_import *im, struct err *err)
{
	struct store_append_result *res;
	size_t i, bytes = 0;
	int rc;

	if (im->n == 0)
		return 0;
	for (i = 0; i < im->n; i++) {
		im->msgs[i].data = im->data.data + im->off[i];
		im->msgs[i].keywords = im->kwoff[i] == (size_t)-1 ? NULL : im->data.data + im->kwoff[i];
		bytes += im->msgs[i].len;
	}
	res = xcalloc(im->n, sizeof(*res));
	rc = store_append(im->u, im->mailbox_id, im->msgs, im->n, res, NULL, err);
	free(res);
	if (rc < 0) {
		err_prefix(err, "imported %llu of %llu messages, then",
		    (unsigned long long)im->done, (unsigned long long)im->total);
		return -1;
	}
	im->done += im->n;
	im->done_bytes += bytes;
	im->n = 0;
	buf_reset(&im->data);
	ctl_import_show(im, false);
	return 0;
}

static int
ctl_import_add(struct ctl_import *im, const char *data, size_t len, int64_t date, uint32_t sysflags,
    const char *keywords, struct err *err)
{
	if (im->n > 0 && (im->n == im->max_n || im->data.len + len > CTL_IMPORT_BATCH_BYTES))
		if (ctl_import_flush(im, err) < 0)
			return -1;
	im->off[im->n] = im->data.len;
	buf_append(&im->data, data, len);
	if (keywords != NULL && keywords[0] != '\0') {
		im->kwoff[im->n] = im->data.len;
		buf_append(&im->data, keywords, strlen(keywords) + 1);
	} else {
		im->kwoff[im->n] = (size_t)-1;
	}
	im->msgs[im->n].len = len;
	im->msgs[im->n].internaldate = date > 0 ? date : 0;
	im->msgs[im->n].sysflags = sysflags;
	im->n++;
	return 0;
}

/* ---- mbox ---------------------------------------------------------- */

static int
ctl_import_mbox_count(const struct mboxread_msg *m, void *ctx, struct err *err)
{
	struct ctl_import *im = ctx;

	(void)err;
	im->total++;
	im->total_bytes += m->len;
	ctl_progress(&im->progress, false, "import: checking the mbox: %llu messages so far",
	    (unsigned long long)im->total);
	return 0;
}

static int
ctl_import_mbox_msg(const struct mboxread_msg *m, void *ctx, struct err *err)
{
	struct ctl_import *im = ctx;

	return ctl_import_add(im, m->data, m->len, m->date > 0 ? (int64_t)m->date : 0, 0, NULL, err);
}

/* ---- Maildir ------------------------------------------------------- */

static uint32_t
ctl_import_maildir_flags(const struct maildir *md, const struct maildir_msg *m, struct buf *kw)
{
	uint32_t sys = 0;
	int i;

	buf_reset(kw);
	if (m->flags & MAILDIR_F_SEEN)
		sys |= STORE_FLAG_SEEN;
	if (m->flags & MAILDIR_F_ANSWERED)
		sys |= STORE_FLAG_ANSWERED;
	if (m->flags & MAILDIR_F_FLAGGED)
		sys |= STORE_FLAG_FLAGGED;
	if (m->flags & MAILDIR_F_DELETED)
		sys |= STORE_FLAG_DELETED;
	if (m->flags & MAILDIR_F_DRAFT)
		sys |= STORE_FLAG_DRAFT;
	if (m->flags & MAILDIR_F_PASSED)
		buf_puts(kw, "$Forwarded");
	for (i = 0; i < MAILDIR_KEYWORDS; i++) {
		if (!(m->keywords & ((uint32_t)1 << i)) || md->keywords[i] == NULL)
			continue;
		if (kw->len)
			buf_putc(kw, ' ');
		buf_puts(kw, md->keywords[i]);
	}
	return sys;
}

static int
ctl_import_maildir(struct ctl_import *im, struct maildir *md, struct err *err)
{
	struct buf msg = BUF_INIT, kw = BUF_INIT;
	size_t i;
	int rc = 0;

	for (i = 0; i < md->n && rc == 0; i++) {
		const struct maildir_msg *m = &md->msgs[i];
		uint32_t sys;

		if (maildirread_load(m, im->max_msg, &msg, err) < 0) {
			err_prefix(err, "imported %llu of %llu messages, then",
			    (unsigned long long)im->done, (unsigned long long)im->total);
			rc = -1;
			break;
		}
		sys = ctl_import_maildir_flags(md, m, &kw);
		rc = ctl_import_add(im, msg.data, msg.len, (int64_t)m->mtime, sys, buf_cstr(&kw), err);
	}
	buf_free(&msg);
	buf_free(&kw);
	return rc;
}

/* First pass over a Maildir: sizes and flags are known from the listing. */
static int
ctl_import_maildir_check(struct ctl_import *im, struct maildir *md, struct err *err)
{
	size_t i;

	for (i = 0; i < md->n; i++) {
		const struct maildir_msg *m = &md->msgs[i];
		if (m->size == 0)
			return err_set(err, ERR_INVALID, "%s: empty message file", m->path);
		/* CRLF conversion can double the size at most */
		if (m->size > im->max_msg)
			return err_set(err, ERR_TOOBIG, "%s is larger than %zu bytes", m->path, im->max_msg);
		im->total_bytes += m->size;
	}
	im->total = md->n;
	return 0;
}

/* ---- command ------------------------------------------------------- */

int
ctl_cmd_import(struct ctl *c, int argc, char **argv)
{
	const char *mailbox = "INBOX", *batch = NULL, *format = NULL;
	bool mboxo = false;
	const struct ctl_opt opts[] = {
		{ "mailbox", 'm', &mailbox, NULL, NULL },
		{ "batch", 'b', &batch, NULL, NULL },
		{ "format", 0, &format, NULL, NULL },
		{ "mboxo", 0, NULL, NULL, &mboxo },     /* = --format mboxo */
		{ NULL, 0, NULL, NULL, NULL },
	};
	char norm[STORE_MBOX_NAME_MAX + 1];
	struct ctl_import im;
	struct maildir *md = NULL;
	struct store_mailbox mb;
	struct err err;
	struct stat st;
	char **pos = NULL;
	int npos = 0, rc;
	uint32_t nbatch = CTL_IMPORT_BATCH_DEFAULT;
	const char *user, *src;
	bool is_dir, created = false;
	double t0;
	uint64_t maxsize;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl import USER MBOX-FILE|MAILDIR [--mailbox NAME] [--format mboxrd|mboxo]"
		    " [--batch N]\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	if (npos != 2) {
		free(pos);
		return ctl_usage_error(c, "import USER MBOX-FILE|MAILDIR [--mailbox NAME]");
	}
	user = pos[0];
	src = pos[1];
	free(pos);
	if (format != NULL) {
		if (str_eq(format, "mboxo"))
			mboxo = true;
		else if (!str_eq(format, "mboxrd"))
			return ctl_usage_error(c, "--format wants mboxrd or mboxo");
	}
	if (batch != NULL && (str_to_u32(batch, &nbatch) < 0 || nbatch < 1 || nbatch > 100000))
		return ctl_usage_error(c, "--batch wants a number from 1 to 100000");
	if (ctl_check_user_name(user, &err) < 0)
		return ctl_fail(c, &err);
	if (store_mailbox_name_check(mailbox, norm, &err) < 0)
		return ctl_fail(c, &err);
	if (stat(src, &st) < 0) {
		err_errno(&err, errno == ENOENT ? ERR_NOTFOUND : ERR_PERM, "%s", src);
		return ctl_fail(c, &err);
	}
	is_dir = S_ISDIR(st.st_mode);
	if (!is_dir && !S_ISREG(st.st_mode)) {
		err_set(&err, ERR_INVALID, "%s is neither an mbox file nor a Maildir directory", src);
		return ctl_fail(c, &err);
	}
	if ((rc = ctl_open_store(c)) != 0)
		return rc;

	memset(&im, 0, sizeof(im));
	im.c = c;
	im.mailbox = norm;
	im.max_n = nbatch;
	im.msgs = xcalloc(nbatch, sizeof(*im.msgs));
	im.off = xcalloc(nbatch, sizeof(*im.off));
	im.kwoff = xcalloc(nbatch, sizeof(*im.kwoff));
	maxsize = conf_get_bytes(c->conf, "maxmessagesize", 0);
	im.max_msg = maxsize == 0 || maxsize > STORE_MESSAGE_MAX ? STORE_MESSAGE_MAX : (size_t)maxsize;
	ctl_progress_init(&im.progress, !c->quiet);
	t0 = ctl_now();

	im.u = store_user_open(c->store, user, &err);
	if (im.u == NULL)
		goto fail;
	if (store_is_read_only(c->store)) {
		err_set(&err, ERR_PERM, "this server is a replica: import on the master");
		goto fail;
	}
	/* pass 1: read everything, store nothing */
	if (is_dir) {
		if (maildirread_open(src, &md, &err) < 0 || ctl_import_maildir_check(&im, md, &err) < 0)
			goto fail;
	} else {
		if (mboxread_file(src, mboxo ? MBOXREAD_MBOXO : MBOXREAD_MBOXRD, im.max_msg,
		    ctl_import_mbox_count, &im, &err) < 0) {
			err_prefix(&err, "%s", src);
			goto fail;
		}
	}
	/* the target mailbox, created when missing */
	if (store_mailbox_get(im.u, norm, &mb, &err) < 0) {
		if (err.kind != ERR_NOTFOUND)
			goto fail;
		if (store_mailbox_create(im.u, norm, NULL, &mb, &err) < 0)
			goto fail;
		created = true;
	}
	str_lcpy(im.mailbox_id, mb.uniqueid, sizeof(im.mailbox_id));
	/* pass 2: append */
	if (is_dir) {
		if (ctl_import_maildir(&im, md, &err) < 0)
			goto fail;
	} else {
		if (mboxread_file(src, mboxo ? MBOXREAD_MBOXO : MBOXREAD_MBOXRD, im.max_msg,
		    ctl_import_mbox_msg, &im, &err) < 0) {
			if (!str_has_prefix(err.msg, "imported "))
				err_prefix(&err, "%s: imported %llu of %llu messages, then", src,
				    (unsigned long long)im.done, (unsigned long long)im.total);
			goto fail;
		}
	}
	if (ctl_import_flush(&im, &err) < 0)
		goto fail;
	ctl_import_show(&im, true);
	ctl_progress_done(&im.progress);
	if (!c->quiet) {
		double secs = ctl_now() - t0;
		printf("imported %llu message%s (%.1f MiB) into %s/%s%s in %.1f s (%.0f msg/s)\n",
		    (unsigned long long)im.done, im.done == 1 ? "" : "s",
		    (double)im.done_bytes / 1048576.0, user, norm,
		    created ? " (created)" : "", secs, (double)im.done / (secs + 1e-9));
	}
	rc = 0;
	goto out;
fail:
	ctl_progress_done(&im.progress);
	rc = ctl_fail(c, &err);
out:
	maildirread_free(&md);
	if (im.u != NULL)
		store_user_close(&im.u);
	buf_free(&im.data);
	free(im.msgs);
	free(im.off);
	free(im.kwoff);
	return rc;
}
