/*
 * imap_store.c - STORE / UID STORE (with CONDSTORE's UNCHANGEDSINCE and
 * the MODIFIED response code), COPY / UID COPY and MOVE / UID MOVE
 * (UIDPLUS COPYUID, RFC 6851), and flag list formatting.
 *
 * STORE changes flags in the store (one transaction), then refreshes the
 * snapshot without expunging: the refresh reports every record whose
 * flags or modseq moved, ours and other sessions' alike.  Non-silent
 * STORE answers with FETCH FLAGS for every message of the set; .SILENT
 * answers only others' changes, plus "FETCH (MODSEQ (n))" for our own
 * when CONDSTORE is enabled (RFC 7162 3.2).
 */
#include "imap/imap_session.h"

#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

void
imap_flags_put(struct buf *out, uint32_t sys, const char *keywords, bool recent)
{
	size_t start = out->len + 1;

	buf_putc(out, '(');
	if (sys & STORE_FLAG_ANSWERED)
		buf_puts(out, " \\Answered");
	if (sys & STORE_FLAG_FLAGGED)
		buf_puts(out, " \\Flagged");
	if (sys & STORE_FLAG_DELETED)
		buf_puts(out, " \\Deleted");
	if (sys & STORE_FLAG_SEEN)
		buf_puts(out, " \\Seen");
	if (sys & STORE_FLAG_DRAFT)
		buf_puts(out, " \\Draft");
	if (recent)
		buf_puts(out, " \\Recent");
	if (keywords != NULL && keywords[0] != '\0') {
		buf_putc(out, ' ');
		buf_puts(out, keywords);
	}
	if (out->len > start) {
		/* drop the space after '(' */
		memmove(out->data + start, out->data + start + 1, out->len - start - 1);
		out->len--;
		out->data[out->len] = '\0';
	}
	buf_putc(out, ')');
}

static int
imap_u32_cmp(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

static bool
imap_uids_has(const struct store_uids *l, uint32_t v)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (l->v[mid] < v)
			lo = mid + 1;
		else if (l->v[mid] > v)
			hi = mid;
		else
			return true;
	}
	return false;
}

static void
imap_uids_sort(struct store_uids *l)
{
	if (l->n > 1)
		qsort(l->v, l->n, sizeof(*l->v), imap_u32_cmp);
}

void
imap_cmd_store(struct imap_session *s, struct imap_cmd *c)
{
	const struct imap_store_args *a = &c->u.store;
	struct imap_range *idx = NULL;
	struct store_range *ranges = NULL;
	struct store_uids changed = { 0 }, failed = { 0 }, others = { 0 };
	struct buf kw = BUF_INIT;
	uint32_t sys = 0;
	enum store_flags_op op;
	uint64_t modseq = 0;
	struct err err;
	size_t n;

	if (s->sel.readonly) {
		imap_tagged(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	if (store_flags_parse(a->flags, &sys, &kw, &err) < 0) {
		imap_tagged(s, "BAD", NULL, "Invalid flags: %s", err.msg);
		goto out;
	}
	if (imap_sel_indexes(s, &a->set, c->uid, &idx, &n) < 0)
		goto out;
	if (a->has_unchangedsince)
		imap_condstore_enable(s);
	op = a->op == IMAP_STORE_ADD ? STORE_FLAGS_ADD : a->op == IMAP_STORE_REMOVE ?
		STORE_FLAGS_REMOVE : STORE_FLAGS_REPLACE;
	if (n > 0) {
		ranges = xcalloc(n, sizeof(*ranges));
		imap_sel_uid_ranges(s, idx, n, ranges);
		if (a->has_unchangedsince && a->unchangedsince == 0) {
			/* UNCHANGEDSINCE 0 fails for every message (RFC 7162 3.2);
			 * the store reads 0 as "no condition", so do it here */
			for (size_t r = 0; r < n; r++)
				for (size_t i = idx[r].lo; i < idx[r].hi; i++)
					store_uids_add(&failed, s->sel.snap->recs[i].uid);
		} else if (store_flags(s->u, s->sel.mailbox_id, ranges, n, op, sys, buf_cstr(&kw),
			a->has_unchangedsince ? a->unchangedsince : 0, &changed, &failed, &modseq,
			&err) < 0) {
			imap_tagged_err(s, &err, c->name);
			goto out;
		}
	}
	imap_uids_sort(&changed);
	imap_uids_sort(&failed);
	/* bring flags forward; the seqs of every change come back */
	if (imap_sel_sync(s, false, &others) < 0)
		goto out;
	{
		const struct store_snapshot *snap = s->sel.snap;
		bool *done = xcalloc(snap->n + 1, sizeof(bool));

		for (size_t r = 0; r < n; r++) {
			for (size_t i = idx[r].lo; i < idx[r].hi && i < snap->n; i++) {
				const struct store_snaprec *rec = &snap->recs[i];

				if (rec->expunged || imap_uids_has(&failed, rec->uid))
					continue;
				if (!a->silent) {
					imap_sel_send_flags(s, i, c->uid);
					done[i] = true;
				} else if (s->condstore && imap_uids_has(&changed, rec->uid)) {
					buf_reset(&s->tmp);
					buf_printf(&s->tmp, "* %zu FETCH (", i + 1);
					if (c->uid || s->qresync)
						buf_printf(&s->tmp, "UID %u ", rec->uid);
					buf_printf(&s->tmp, "MODSEQ (%llu))\r\n", (unsigned long long)rec->modseq);
					imap_write(s, s->tmp.data, s->tmp.len);
					done[i] = true;
				} else if (imap_uids_has(&changed, rec->uid)) {
					done[i] = true;   /* ours, and silent */
				}
			}
		}
		for (size_t k = 0; k < others.n; k++) {
			uint32_t seq = others.v[k];

			if (seq >= 1 && seq <= snap->n && !done[seq - 1])
				imap_sel_send_flags(s, seq - 1, c->uid);
		}
		free(done);
	}
	if (failed.n > 0) {
		struct buf code = BUF_INIT;

		buf_puts(&code, "MODIFIED ");
		if (c->uid) {
			imap_put_set(&code, failed.v, failed.n);
		} else {
			struct store_uids seqs = { 0 };

			for (size_t k = 0; k < failed.n; k++) {
				ssize_t i = imap_sel_find_uid(s, failed.v[k]);
				if (i >= 0)
					store_uids_add(&seqs, (uint32_t)i + 1);
			}
			imap_put_set(&code, seqs.v, seqs.n);
			store_uids_free(&seqs);
		}
		imap_tagged(s, "OK", buf_cstr(&code), "Conditional %s failed for some messages", c->name);
		buf_free(&code);
	} else {
		imap_tagged(s, "OK", NULL, "%s completed", c->name);
	}
out:
	free(idx);
	free(ranges);
	store_uids_free(&changed);
	store_uids_free(&failed);
	store_uids_free(&others);
	buf_free(&kw);
}

void
imap_cmd_copy(struct imap_session *s, struct imap_cmd *c)
{
	bool move = c->kind == IMAP_CMD_MOVE;
	struct imap_range *idx = NULL;
	struct store_range *ranges = NULL;
	struct store_uids src = { 0 }, dst = { 0 };
	struct buf name = BUF_INIT, code = BUF_INIT;
	struct store_mailbox mb;
	uint32_t uidvalidity = 0;
	struct err err;
	size_t n;

	if (move && s->sel.readonly) {
		imap_tagged(s, "NO", "READ-ONLY", "Mailbox is read-only");
		return;
	}
	if (imap_name_decode(s, &c->u.copy.mailbox, &name, &err) < 0) {
		imap_tagged(s, "NO", "CANNOT", "%s", err.msg);
		goto out;
	}
	if (store_mailbox_get(s->u, buf_cstr(&name), &mb, &err) < 0) {
		if (err.kind == ERR_NOTFOUND)
			imap_tagged(s, "NO", "TRYCREATE", "No such mailbox");
		else
			imap_tagged_err(s, &err, c->name);
		goto out;
	}
	if (imap_sel_indexes(s, &c->u.copy.set, c->uid, &idx, &n) < 0)
		goto out;
	if (n == 0) {
		imap_tagged(s, "OK", NULL, "%s completed (no messages)", c->name);
		goto out;
	}
	ranges = xcalloc(n, sizeof(*ranges));
	imap_sel_uid_ranges(s, idx, n, ranges);
	if (store_copy(s->u, s->sel.mailbox_id, ranges, n, mb.uniqueid, move, &src, &dst,
		&uidvalidity, &err) < 0) {
		imap_tagged_err(s, &err, c->name);
		goto out;
	}
	if (src.n > 0) {
		buf_printf(&code, "COPYUID %u ", uidvalidity);
		imap_put_set(&code, src.v, src.n);
		buf_putc(&code, ' ');
		imap_put_set(&code, dst.v, dst.n);
	}
	if (move) {
		/* RFC 6851: COPYUID in an untagged OK before the expunges */
		if (code.len > 0)
			imap_printf(s, "* OK [%s] Moved\r\n", buf_cstr(&code));
		imap_tagged(s, "OK", NULL, "%s completed", c->name);
	} else {
		imap_tagged(s, "OK", code.len > 0 ? buf_cstr(&code) : NULL, "%s completed", c->name);
	}
out:
	free(idx);
	free(ranges);
	store_uids_free(&src);
	store_uids_free(&dst);
	buf_free(&name);
	buf_free(&code);
}
