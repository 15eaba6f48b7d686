/*
 * store_msgid.c - the normalised Message-ID of a raw message, the key of
 * the message-id index that duplicate-delivery suppression uses
 * (store_append_dedup, store_msgid_find; the index itself is the
 * records.msgid column, see store_user.c and store_record.c).
 *
 * Normal form: the first Message-ID field of the top-level header (name
 * case-insensitive, continuation lines included); in its value the
 * first msg-id "<...>" outside comments and quoted strings, from '<' to
 * the first '>' not inside a quoted string, with every octet <= 0x20
 * (white space, line ends, NUL, controls) and DEL dropped.  A value
 * without a complete "<...>" (broken software writes "abc@host") is
 * used whole, comments and the same octets dropped.  No field, an empty
 * result, "<>" or more than STORE_MSGID_MAX octets: no Message-ID (never
 * suppressed).  Octets are compared as they are (no case folding: the
 * id-left of a msg-id is case-sensitive).
 *
 * Both ends of replication compute it here from the same octets, so a
 * replica's index equals its master's.
 */
#include "store/store.h"

#include <string.h>

#include "store/mime.h"

/* Append p[0..n) without white space, controls and DEL. */
static void
msgid_put_clean(struct buf *out, const char *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];

		if (c > 0x20 && c != 0x7f)
			buf_putc(out, (char)c);
	}
}

/* Index one past the quoted string starting at v[i] == '"'. */
static size_t
msgid_skip_quoted(const char *v, size_t n, size_t i)
{
	for (i++; i < n; i++) {
		if (v[i] == '\\')
			i++;
		else if (v[i] == '"')
			return i + 1;
	}
	return n;
}

/* Find "<...>" at the top level of v; true with [*lt, *gt] its brackets. */
static bool
msgid_find_angle(const char *v, size_t n, size_t *lt, size_t *gt)
{
	size_t i = 0;

	while (i < n) {
		if (v[i] == '(') {
			mime_skip_cfws(v, n, &i);
		} else if (v[i] == '"') {
			i = msgid_skip_quoted(v, n, i);
		} else if (v[i] == '<') {
			size_t j = i + 1;

			while (j < n && v[j] != '>') {
				if (v[j] == '"')
					j = msgid_skip_quoted(v, n, j);
				else
					j++;
			}
			if (j >= n)
				return false;
			*lt = i;
			*gt = j;
			return true;
		} else {
			i++;
		}
	}
	return false;
}

/* The whole value without comments (quoted strings kept). */
static void
msgid_put_whole(struct buf *out, const char *v, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (v[i] == '(') {
			mime_skip_cfws(v, n, &i);
		} else if (v[i] == '"') {
			size_t j = msgid_skip_quoted(v, n, i);
			msgid_put_clean(out, v + i, j - i);
			i = j;
		} else {
			msgid_put_clean(out, v + i, 1);
			i++;
		}
	}
}

int
store_message_id(const char *data, size_t len, struct buf *out)
{
	struct mime_field f;
	size_t pos = 0, lt, gt;
	const char *v;

	buf_reset(out);
	if (data == NULL)
		return 0;
	while (mime_header_next(data, len, &pos, &f)) {
		if (!mime_eq(data + f.name_off, f.name_len, "message-id"))
			continue;
		v = data + f.value_off;
		if (msgid_find_angle(v, f.value_len, &lt, &gt))
			msgid_put_clean(out, v + lt, gt - lt + 1);
		else
			msgid_put_whole(out, v, f.value_len);
		if (out->len == 0 || out->len > STORE_MSGID_MAX ||
		    (out->len == 2 && out->data[0] == '<' && out->data[1] == '>')) {
			buf_reset(out);
			return 0;
		}
		return 1;
	}
	return 0;
}
