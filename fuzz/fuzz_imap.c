/* fuzz_imap.c - libFuzzer target for imap/imap_parse.c (and imap_utf7.c).
 *
 * The input is a client's byte stream.  It is cut into commands the way
 * imapd reads them: a line (LF-terminated, CR before it dropped); when
 * the line ends with a literal marker {n} / {n+} the next n octets
 * follow as the literal and reading goes on with the next line.  Each
 * assembled command is parsed; an accepted one is checked against the
 * parser's promises (sequence sets resolve into sorted disjoint ranges
 * within bounds, an APPEND message or CATENATE TEXT part points into the
 * input (MULTIAPPEND: each of them), mailbox names
 * survive a modified UTF-7 round trip when they decode). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_parse.h"
#include "imap/imap_utf7.h"
#include "lib/buf.h"
#include "lib/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void
check_set(const struct imap_seqset *set, uint32_t star)
{
	struct imap_range *r;
	size_t n;

	if (set->n == 0)
		return;
	r = malloc(set->n * sizeof(*r));
	n = imap_seqset_resolve(set, star, r);
	CHECK(n <= set->n);
	for (size_t i = 0; i < n; i++) {
		CHECK(r[i].lo >= 1 && r[i].lo <= r[i].hi && r[i].hi <= star);
		if (i > 0)
			CHECK(r[i].lo > r[i - 1].hi + 1);
	}
	free(r);
}

static void
check_name(const struct imap_str *s)
{
	struct buf u = BUF_INIT, w = BUF_INIT;

	if (s->s == NULL)
		return;
	if (imap_utf7_decode(s->s, s->len, &u) == 0) {
		CHECK(imap_utf7_encode(u.data ? u.data : "", u.len, &w) == 0);
		CHECK(w.len == s->len && memcmp(w.data ? w.data : "", s->s, s->len) == 0);
	}
	buf_free(&u);
	buf_free(&w);
}

static void
check_cmd(const struct imap_cmd *c, const char *buf, size_t len)
{
	CHECK(c->tag != NULL && c->tag[0] != '\0');
	switch (c->kind) {
	case IMAP_CMD_FETCH:
		check_set(&c->u.fetch.set, 1000);
		check_set(&c->u.fetch.set, 1);
		CHECK(c->u.fetch.natts > 0);
		for (size_t i = 0; i < c->u.fetch.natts; i++)
			CHECK(c->u.fetch.atts[i].name != NULL);
		break;
	case IMAP_CMD_STORE:
		check_set(&c->u.store.set, 77);
		CHECK(c->u.store.flags != NULL);
		break;
	case IMAP_CMD_COPY:
	case IMAP_CMD_MOVE:
		check_set(&c->u.copy.set, 5);
		check_name(&c->u.copy.mailbox);
		break;
	case IMAP_CMD_APPEND:
		CHECK(c->u.append.nmsgs >= 1 && c->u.append.nmsgs <= IMAP_APPEND_MAX_MSGS);
		for (size_t i = 0; i < c->u.append.nmsgs; i++) {
			const struct imap_append_msg *m = &c->u.append.msgs[i];

			if (m->parts == NULL) {
				CHECK(m->data >= buf && m->data + m->len <= buf + len);
				continue;
			}
			CHECK(m->nparts >= 1 && m->nparts <= IMAP_CATENATE_MAX_PARTS);
			for (size_t k = 0; k < m->nparts; k++) {
				CHECK(m->parts[k].s.s != NULL);
				if (!m->parts[k].url)   /* TEXT literals point into the input */
					CHECK(m->parts[k].s.s >= buf && m->parts[k].s.s + m->parts[k].s.len <= buf + len);
			}
		}
		check_name(&c->u.append.mailbox);
		break;
	case IMAP_CMD_SELECT:
	case IMAP_CMD_EXAMINE:
		check_name(&c->u.select.mailbox);
		check_set(&c->u.select.q_known_uids, 100);
		break;
	case IMAP_CMD_LIST:
	case IMAP_CMD_LSUB:
		CHECK(c->u.list.npatterns > 0);
		for (size_t i = 0; i < c->u.list.npatterns; i++)
			check_name(&c->u.list.patterns[i]);
		break;
	case IMAP_CMD_SEARCH:
		CHECK(c->u.search.key != NULL && c->u.search.key->nkids > 0);
		break;
	default:
		break;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data, *end = p + size;
	struct buf cmd = BUF_INIT;
	int guard = 0;

	while (p < end && guard++ < 256) {
		bool more = true;

		buf_reset(&cmd);
		while (more && p < end) {
			const char *nl = memchr(p, '\n', (size_t)(end - p));
			size_t len = nl ? (size_t)(nl - p) : (size_t)(end - p);
			uint64_t n;
			bool sync;

			const char *line = p;
			size_t ll = len > 0 && p[len - 1] == '\r' ? len - 1 : len;

			buf_append(&cmd, line, ll);
			p = nl ? nl + 1 : end;
			more = nl != NULL && imap_parse_literal_tail(line, ll, &n, &sync) == 1;
			if (more) {
				if (n > (uint64_t)(end - p))
					n = (uint64_t)(end - p);
				buf_append(&cmd, "\r\n", 2);
				buf_append(&cmd, p, (size_t)n);
				p += n;
			}
		}
		{
			struct imap_cmd c;
			struct err err;
			char tag[32];

			imap_parse_peek_tag(cmd.data ? cmd.data : "", cmd.len, tag, sizeof(tag));
			(void)imap_parse_is_append(cmd.data ? cmd.data : "", cmd.len);
			(void)imap_parse_is_cat_text(cmd.data ? cmd.data : "", cmd.len);
			{
				struct imap_arena a = { 0 };
				struct imap_fetch_att att;

				/* CATENATE URL sections go through this */
				(void)imap_parse_section(cmd.data ? cmd.data : "", cmd.len, &a, &att);
				imap_arena_free(&a);
			}
			if (imap_parse_command(cmd.data ? cmd.data : "", cmd.len, &c, &err) == 0)
				check_cmd(&c, cmd.data, cmd.len);
			else
				CHECK(err.kind == ERR_INVALID && err.msg[0] != '\0');
			imap_cmd_free(&c);
		}
	}
	buf_free(&cmd);
	return 0;
}
