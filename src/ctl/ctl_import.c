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

/* What the command line asks for. */
struct ctl_import_req {
	const char *user, *src;
	const char *mailbox, *batch, *format;
	bool mboxo, is_dir;
	uint32_t nbatch;
	char norm[STORE_MBOX_NAME_MAX + 1];
};

/* Parses the options and arguments; false: stop with *rc_r (usage or error shown). */
static bool
ctl_import_parse(struct ctl *c, int argc, char **argv, struct ctl_import_req *q, int *rc_r)
{
	const struct ctl_opt opts[] = {
		{ "mailbox", 'm', &q->mailbox, NULL, NULL },
		{ "batch", 'b', &q->batch, NULL, NULL },
		{ "format", 0, &q->format, NULL, NULL },
		{ "mboxo", 0, NULL, NULL, &q->mboxo },     /* = --format mboxo */
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL;
	int npos = 0, rc;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl import USER MBOX-FILE|MAILDIR [--mailbox NAME] [--format mboxrd|mboxo]"
		    " [--batch N]\n");
		*rc_r = 0;
		return false;
	}
	*rc_r = rc;
	if (rc > 0)
		return false;
	if (npos != 2) {
		free(pos);
		*rc_r = ctl_usage_error(c, "import USER MBOX-FILE|MAILDIR [--mailbox NAME]");
		return false;
	}
	q->user = pos[0];
	q->src = pos[1];
	free(pos);
	if (q->format != NULL) {
		if (str_eq(q->format, "mboxo"))
			q->mboxo = true;
		else if (!str_eq(q->format, "mboxrd")) {
			*rc_r = ctl_usage_error(c, "--format wants mboxrd or mboxo");
			return false;
		}
	}
	if (q->batch != NULL && (str_to_u32(q->batch, &q->nbatch) < 0 || q->nbatch < 1 ||
	    q->nbatch > 100000)) {
		*rc_r = ctl_usage_error(c, "--batch wants a number from 1 to 100000");
		return false;
	}
	return true;
}

/* Checks the user and mailbox names (q->norm) and that the source is an mbox file or a Maildir. */
static int
ctl_import_check(struct ctl_import_req *q, struct err *err)
{
	struct stat st;

	if (ctl_check_user_name(q->user, err) < 0)
		return -1;
	if (store_mailbox_name_check(q->mailbox, q->norm, err) < 0)
		return -1;
	if (stat(q->src, &st) < 0)
		return err_errno(err, errno == ENOENT ? ERR_NOTFOUND : ERR_PERM, "%s", q->src);
	q->is_dir = S_ISDIR(st.st_mode);
	if (!q->is_dir && !S_ISREG(st.st_mode))
		return err_set(err, ERR_INVALID, "%s is neither an mbox file nor a Maildir directory",
			q->src);
	return 0;
}

/* Sets up the import state: the batch arrays, the message size limit, the progress line. */
static void
ctl_import_init(struct ctl_import *im, struct ctl *c, const struct ctl_import_req *q)
{
	uint64_t maxsize;

	memset(im, 0, sizeof(*im));
	im->c = c;
	im->mailbox = q->norm;
	im->max_n = q->nbatch;
	im->msgs = xcalloc(q->nbatch, sizeof(*im->msgs));
	im->off = xcalloc(q->nbatch, sizeof(*im->off));
	im->kwoff = xcalloc(q->nbatch, sizeof(*im->kwoff));
	maxsize = conf_get_bytes(c->conf, "maxmessagesize", 0);
	im->max_msg = maxsize == 0 || maxsize > STORE_MESSAGE_MAX ? STORE_MESSAGE_MAX : (size_t)maxsize;
	ctl_progress_init(&im->progress, !c->quiet);
}

/* Pass 1: reads the whole source, stores nothing (a Maildir stays open in *md). */
static int
ctl_import_scan(struct ctl_import *im, const struct ctl_import_req *q, struct maildir **md,
	struct err *err)
{
	if (q->is_dir)
		return maildirread_open(q->src, md, err) < 0 ||
			ctl_import_maildir_check(im, *md, err) < 0 ? -1 : 0;
	if (mboxread_file(q->src, q->mboxo ? MBOXREAD_MBOXO : MBOXREAD_MBOXRD, im->max_msg,
	    ctl_import_mbox_count, im, err) < 0) {
		err_prefix(err, "%s", q->src);
		return -1;
	}
	return 0;
}

/* The target mailbox, created when missing (*created then set). */
static int
ctl_import_target(struct ctl_import *im, const char *norm, bool *created, struct err *err)
{
	struct store_mailbox mb;

	if (store_mailbox_get(im->u, norm, &mb, err) < 0) {
		if (err->kind != ERR_NOTFOUND)
			return -1;
		if (store_mailbox_create(im->u, norm, NULL, &mb, err) < 0)
			return -1;
		*created = true;
	}
	str_lcpy(im->mailbox_id, mb.uniqueid, sizeof(im->mailbox_id));
	return 0;
}

/* Pass 2: appends every message in batches, the last one flushed. */
static int
ctl_import_append(struct ctl_import *im, const struct ctl_import_req *q, struct maildir *md,
	struct err *err)
{
	if (q->is_dir) {
		if (ctl_import_maildir(im, md, err) < 0)
			return -1;
	} else {
		if (mboxread_file(q->src, q->mboxo ? MBOXREAD_MBOXO : MBOXREAD_MBOXRD, im->max_msg,
		    ctl_import_mbox_msg, im, err) < 0) {
			if (!str_has_prefix(err->msg, "imported "))
				err_prefix(err, "%s: imported %llu of %llu messages, then", q->src,
				    (unsigned long long)im->done, (unsigned long long)im->total);
			return -1;
		}
	}
	return ctl_import_flush(im, err);
}

/* The final progress line and the summary (unless quiet). */
static void
ctl_import_report(struct ctl_import *im, const struct ctl_import_req *q, bool created, double t0)
{
	ctl_import_show(im, true);
	ctl_progress_done(&im->progress);
	if (!im->c->quiet) {
		double secs = ctl_now() - t0;
		printf("imported %llu message%s (%.1f MiB) into %s/%s%s in %.1f s (%.0f msg/s)\n",
		    (unsigned long long)im->done, im->done == 1 ? "" : "s",
		    (double)im->done_bytes / 1048576.0, q->user, q->norm,
		    created ? " (created)" : "", secs, (double)im->done / (secs + 1e-9));
	}
}

int
ctl_cmd_import(struct ctl *c, int argc, char **argv)
{
	struct ctl_import_req q;
	struct ctl_import im;
	struct maildir *md = NULL;
	struct err err;
	int rc;
	bool created = false;
	double t0;

	memset(&q, 0, sizeof(q));
	q.mailbox = "INBOX";
	q.nbatch = CTL_IMPORT_BATCH_DEFAULT;
	if (!ctl_import_parse(c, argc, argv, &q, &rc))
		return rc;
	if (ctl_import_check(&q, &err) < 0)
		return ctl_fail(c, &err);
	if ((rc = ctl_open_store(c)) != 0)
		return rc;
	ctl_import_init(&im, c, &q);
	t0 = ctl_now();

	im.u = store_user_open(c->store, q.user, &err);
	if (im.u == NULL)
		goto fail;
	if (store_is_read_only(c->store)) {
		err_set(&err, ERR_PERM, "this server is a replica: import on the master");
		goto fail;
	}
	if (ctl_import_scan(&im, &q, &md, &err) < 0 ||
	    ctl_import_target(&im, q.norm, &created, &err) < 0 ||
	    ctl_import_append(&im, &q, md, &err) < 0)
		goto fail;
	ctl_import_report(&im, &q, created, t0);
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
