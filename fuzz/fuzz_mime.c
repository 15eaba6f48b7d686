/*
 * fuzz_mime.c - libFuzzer target for the MIME scanner and everything built
 * on it: part tree invariants, ENVELOPE/BODYSTRUCTURE syntax, the
 * serialised tree (round trip, and the decoder fed raw bytes), section
 * ranges, header filtering, SEARCH text decoding, encoded words.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "store/imapenv.h"
#include "store/mime.h"
#include "store/mimedecode.h"
#include "store/rfc2047.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c) do { if (!(c)) abort(); } while (0)

/* Balanced parentheses outside quoted strings and literals. */
static void
check_imap_syntax(const struct buf *b)
{
	const char *s = b->data;
	size_t i, n = b->len;
	long depth = 0;

	CHECK(n > 0 && s[0] == '(' && s[n - 1] == ')');
	for (i = 0; i < n; i++) {
		if (s[i] == '"') {
			for (i++; i < n && s[i] != '"'; i++) {
				CHECK(s[i] != '\r' && s[i] != '\n' && (unsigned char)s[i] < 0x80);
				if (s[i] == '\\') {
					i++;
					CHECK(i < n && (s[i] == '"' || s[i] == '\\'));
				}
			}
			CHECK(i < n);
		} else if (s[i] == '{') {
			char *end;
			unsigned long len = strtoul(s + i + 1, &end, 10);

			CHECK(*end == '}' && end[1] == '\r' && end[2] == '\n');
			i = (size_t)(end - s) + 2 + len;
			CHECK(i < n);
			CHECK(memchr(end + 3, '\0', len) == NULL);
		} else if (s[i] == '(') {
			depth++;
		} else if (s[i] == ')') {
			CHECK(--depth >= 0);
		}
	}
	CHECK(depth == 0);
}

static void
check_tree(const struct mime_tree *t)
{
	uint32_t i;

	CHECK(t->nparts >= 1 && t->nparts <= MIME_MAX_PARTS);
	CHECK(t->parts[0].hdr_start == 0 && t->parts[0].body_end == t->len);
	for (i = 0; i < t->nparts; i++) {
		const struct mime_part *p = &t->parts[i];
		size_t floor = p->body_start;
		uint32_t c, n = 0;

		CHECK(p->hdr_start <= p->body_start && p->body_start <= p->body_end && p->body_end <= t->len);
		CHECK(p->depth <= MIME_MAX_DEPTH);
		if (p->kind == MIME_KIND_LEAF)
			CHECK(p->nchildren == 0);
		if (p->kind == MIME_KIND_MESSAGE)
			CHECK(p->nchildren == 1);
		if (p->kind == MIME_KIND_MULTIPART)
			CHECK(p->nchildren >= 1);
		for (c = p->first_child; c != MIME_NONE; c = t->parts[c].next) {
			CHECK(c > i && t->parts[c].parent == i);
			CHECK(t->parts[c].hdr_start >= floor && t->parts[c].body_end <= p->body_end);
			floor = t->parts[c].body_end;
			n++;
		}
		CHECK(n == p->nchildren);
	}
}

/* Resolve a few paths taken from the input; ranges must lie inside. */
static void
check_sections(const struct mime_tree *t, const uint8_t *data, size_t size)
{
	uint32_t path[4];
	size_t k, npath;

	for (k = 0; k + 4 <= size && k < 64; k += 4) {
		enum mime_sec what = (enum mime_sec)(data[k] & 3);
		struct mime_range r;

		npath = data[k + 1] % 5;
		path[0] = 1 + data[k + 1] % 3;
		path[1] = 1 + data[k + 2] % 3;
		path[2] = 1 + data[k + 3] % 3;
		path[3] = 1;
		if (mime_section(t, path, npath, what, &r) == 0)
			CHECK(r.off <= t->len && r.len <= t->len - r.off && r.part < t->nparts);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *raw = (const char *)data;
	struct mime_tree t, d;
	struct imapenv e;
	struct err err;
	struct buf out = BUF_INIT;
	static const char *const names[] = { "subject", "from", "content-type" };

	mime_parse(&t, raw, size);
	check_tree(&t);
	check_sections(&t, data, size);

	imapenv_build(raw, size, &e);
	check_imap_syntax(&e.envelope);
	check_imap_syntax(&e.bodystructure);
	check_imap_syntax(&e.body);
	CHECK(imapenv_tree_decode(e.tree.data, e.tree.len, &d, &err) == 0);
	CHECK(d.nparts == t.nparts);
	for (uint32_t i = 0; i < t.nparts; i++) {
		CHECK(d.parts[i].hdr_start == t.parts[i].hdr_start);
		CHECK(d.parts[i].body_start == t.parts[i].body_start);
		CHECK(d.parts[i].body_end == t.parts[i].body_end);
		CHECK(d.parts[i].kind == t.parts[i].kind && d.parts[i].flags == t.parts[i].flags);
	}
	mime_tree_free(&d);
	imapenv_free(&e);

	mime_header_filter(raw, t.parts[0].body_start, names, 3, false, &out);
	mime_header_filter(raw, t.parts[0].body_start, names, 3, true, &out);
	buf_reset(&out);
	mimedecode_tree_text(raw, &t, true, &out);
	buf_reset(&out);
	rfc2047_decode(raw, size < 2048 ? size : 2048, &out);
	mime_tree_free(&t);

	/* the stored-tree decoder must reject or accept any bytes safely */
	if (imapenv_tree_decode(data, size, &d, &err) == 0) {
		check_tree(&d);
		check_sections(&d, data, size);
		mime_tree_free(&d);
	}
	buf_free(&out);
	return 0;
}
