/* fuzz_imap_thread.c - libFuzzer target for imap/imap_thread.c: base
 * subject extraction, sent dates, the ENVELOPE reader and both threading
 * algorithms.
 *
 * The whole input is read as an ENVELOPE.  Then each line is a message:
 * tab-separated Subject, Message-ID, References, In-Reply-To, Date
 * (missing fields are absent headers).  Both algorithms must print
 * every message number exactly once, in balanced parentheses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "imap/imap_thread.h"
#include "lib/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)
#define MAXMSG 512

static void
check_output(const struct buf *out, size_t n)
{
	unsigned char *seen = calloc(n + 1, 1);
	long depth = 0;

	for (size_t i = 0; i < out->len;) {
		char c = out->data[i];

		if (c == '(') {
			depth++;
			i++;
		} else if (c == ')') {
			CHECK(--depth >= 0);
			i++;
		} else if (c == ' ') {
			i++;
		} else {
			uint64_t v = 0;

			CHECK(c >= '1' && c <= '9');
			while (i < out->len && out->data[i] >= '0' && out->data[i] <= '9')
				v = v * 10 + (uint64_t)(out->data[i++] - '0');
			CHECK(v >= 1 && v <= n && !seen[v]);
			seen[v] = 1;
		}
	}
	CHECK(depth == 0);
	for (size_t v = 1; v <= n; v++)
		CHECK(seen[v]);
	free(seen);
}

static const char *
field(const char *p, const char *end, int k, size_t *len)
{
	for (int i = 0; i < k; i++) {
		const char *t = memchr(p, '\t', (size_t)(end - p));

		if (t == NULL)
			return NULL;
		p = t + 1;
	}
	const char *t = memchr(p, '\t', (size_t)(end - p));

	*len = (size_t)((t ? t : end) - p);
	return p;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *s = (const char *)data, *end = s + size, *p = s;
	struct imap_thread_msg *m = calloc(MAXMSG, sizeof(*m));
	struct buf *subj = calloc(MAXMSG, sizeof(*subj)), out = BUF_INIT;
	struct imap_env e;
	size_t n = 0;

	imap_env_parse(s, size, &e);
	imap_env_free(&e);
	while (p < end && n < MAXMSG) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *le = nl ? nl : end, *f;
		size_t len = 0;

		m[n].num = (uint32_t)n + 1;
		f = field(p, le, 0, &len);
		m[n].refwd = imap_thread_base_subject(f, len, &subj[n]);
		m[n].subject = subj[n].data ? subj[n].data : "";
		m[n].subject_len = subj[n].len;
		if ((f = field(p, le, 1, &len)) != NULL) {
			m[n].msgid = f;
			m[n].msgid_len = len;
		}
		if ((f = field(p, le, 2, &len)) != NULL) {
			m[n].refs = f;
			m[n].refs_len = len;
		}
		if ((f = field(p, le, 3, &len)) != NULL) {
			m[n].irt = f;
			m[n].irt_len = len;
		}
		if ((f = field(p, le, 4, &len)) == NULL || !imap_thread_sentdate(f, len, &m[n].sent))
			m[n].sent = (int64_t)n % 7;
		n++;
		p = nl ? nl + 1 : end;
	}
	imap_thread_references(m, n, &out);
	check_output(&out, n);
	buf_reset(&out);
	imap_thread_orderedsubject(m, n, &out);
	check_output(&out, n);
	for (size_t i = 0; i < n; i++)
		buf_free(&subj[i]);
	buf_free(&out);
	free(subj);
	free(m);
	return 0;
}
