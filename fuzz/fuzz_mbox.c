/*
 * fuzz_mbox.c - libFuzzer target for ctl/mboxread.c.
 *
 * The first input byte picks the format, the message size limit and a
 * chunk size; the rest is the mbox.  The input is parsed twice, whole and
 * in chunks, and both runs must agree (same messages, same error); every
 * message handed out must be non-empty, within the limit and made of
 * CRLF-terminated lines.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/mboxread.h"

struct run {
	uint64_t n;
	uint64_t hash;
	size_t max;
};

static int
fuzz_mbox_cb(const struct mboxread_msg *m, void *ctx, struct err *err)
{
	struct run *r = ctx;
	size_t i;

	(void)err;
	if (m->len < 2 || m->len > r->max || m->data[m->len - 1] != '\n' || m->data[m->len - 2] != '\r')
		abort();
	for (i = 0; i < m->len; i++)
		if (m->data[i] == '\n' && (i == 0 || m->data[i - 1] != '\r'))
			abort();
	if (m->index != r->n)
		abort();
	r->n++;
	for (i = 0; i < m->len; i++)
		r->hash = (r->hash ^ (unsigned char)m->data[i]) * 1099511628211ULL;
	r->hash = (r->hash ^ (uint64_t)m->date ^ m->line ^ (m->offset << 20)) * 1099511628211ULL;
	return 0;
}

static int
fuzz_mbox_run(const uint8_t *p, size_t n, size_t chunk, enum mboxread_format fmt, struct run *r,
    struct err *err)
{
	struct mboxread *rd = mboxread_new(fmt, r->max, fuzz_mbox_cb, r);
	size_t pos = 0;
	int rc = 0;

	while (pos < n && rc == 0) {
		size_t k = n - pos < chunk ? n - pos : chunk;
		rc = mboxread_feed(rd, p + pos, k, err);
		pos += k;
	}
	if (rc == 0)
		rc = mboxread_finish(rd, err);
	mboxread_free(&rd);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run a = { 0, 14695981039346656037ULL, 0 }, b;
	struct err ea, eb;
	enum mboxread_format fmt;
	size_t chunk;
	int ra, rb;

	if (size < 1)
		return 0;
	fmt = (data[0] & 1) ? MBOXREAD_MBOXO : MBOXREAD_MBOXRD;
	a.max = (data[0] & 2) ? 64 : 1 << 20;
	chunk = (size_t)(data[0] >> 2) + 1;
	b = a;
	ra = fuzz_mbox_run(data + 1, size - 1, size, fmt, &a, &ea);
	rb = fuzz_mbox_run(data + 1, size - 1, chunk, fmt, &b, &eb);
	if (ra != rb || a.n != b.n || a.hash != b.hash)
		abort();
	if (ra < 0 && (ea.kind != eb.kind || strcmp(ea.msg, eb.msg) != 0))
		abort();
	return 0;
}
