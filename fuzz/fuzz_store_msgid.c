/*
 * fuzz_store_msgid.c - libFuzzer target for store_message_id(), the
 * Message-ID normaliser behind duplicate-delivery suppression.
 * Input: a raw message (header and body, any octets).
 * Properties: a found id is 1..STORE_MSGID_MAX octets with no white
 * space, control octet or DEL, and is not "<>"; a plain id (no quote,
 * backslash, parenthesis, and angle brackets only first and last) is a
 * fixed point: a message whose Message-ID is that id yields it again.
 * (Ids built from quoted strings and comments need not be: removing
 * white space can change how a quoted string ends.)  Reads stay inside
 * the input (an exact-size copy, no NUL terminator).
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/xalloc.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static bool
plain(const struct buf *id)
{
	for (size_t i = 0; i < id->len; i++) {
		char c = id->data[i];
		if (c == '"' || c == '\\' || c == '(' || c == ')')
			return false;
		if (c == '<' && i != 0)
			return false;
		if (c == '>' && (i != id->len - 1 || id->data[0] != '<'))
			return false;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* an exact-size copy, so reading past the end is caught */
	char *in = xmalloc(size ? size : 1);
	struct buf id = BUF_INIT, again = BUF_INIT, msg = BUF_INIT;
	int r;

	if (size)
		memcpy(in, data, size);
	r = store_message_id(in, size, &id);
	CHECK(r == 0 || r == 1);
	if (r == 0) {
		CHECK(id.len == 0);
	} else {
		CHECK(id.len >= 1 && id.len <= STORE_MSGID_MAX);
		CHECK(!(id.len == 2 && id.data[0] == '<' && id.data[1] == '>'));
		for (size_t i = 0; i < id.len; i++) {
			unsigned char c = (unsigned char)id.data[i];
			CHECK(c > 0x20 && c != 0x7f);
		}
		if (plain(&id)) {
			buf_puts(&msg, "Message-ID: ");
			buf_append(&msg, id.data, id.len);
			buf_puts(&msg, "\r\n\r\n");
			CHECK(store_message_id(msg.data, msg.len, &again) == 1);
			CHECK(again.len == id.len && memcmp(again.data, id.data, id.len) == 0);
		}
	}
	buf_free(&id);
	buf_free(&again);
	buf_free(&msg);
	free(in);
	return 0;
}
