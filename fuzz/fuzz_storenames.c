/* fuzz_storenames.c - libFuzzer target for the store's input parsers:
 * mailbox name validation (store_mailbox_name_check), IMAP flag lists
 * (store_flags_parse) and LIST pattern matching (store_list_match).
 * Input: "<name>\n<flags>\n<pattern>" (missing parts are empty).
 * Properties: a valid name normalises to a valid name of the same length
 * that matches "*" and itself; parsed flags format to a string that
 * parses back to the same flags. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in = xmalloc(size + 1), *parts[3] = { "", "", "" }, *p;
	char norm[STORE_MBOX_NAME_MAX + 1], norm2[STORE_MBOX_NAME_MAX + 1];
	struct buf kw = BUF_INIT, kw2 = BUF_INIT, fmt = BUF_INIT;
	uint32_t sys, sys2;
	struct err e;
	int k = 0;

	memcpy(in, data, size);
	in[size] = '\0';
	p = in;
	parts[k++] = p;
	while (k < 3 && (p = strchr(p, '\n')) != NULL) {
		*p++ = '\0';
		parts[k++] = p;
	}

	if (store_mailbox_name_check(parts[0], norm, &e) == 0) {
		CHECK(strlen(norm) == strlen(parts[0]));
		CHECK(store_mailbox_name_check(norm, norm2, &e) == 0);
		CHECK(str_eq(norm, norm2));
		CHECK(store_list_match("*", norm));
		CHECK(store_list_match(norm, norm));
	} else {
		CHECK(e.kind == ERR_INVALID);
	}

	if (store_flags_parse(parts[1], &sys, &kw, &e) == 0) {
		CHECK((sys & ~STORE_FLAGS_ALL) == 0);
		store_flags_format(sys, buf_cstr(&kw), &fmt);
		CHECK(store_flags_parse(buf_cstr(&fmt), &sys2, &kw2, &e) == 0);
		CHECK(sys2 == sys && str_eq(buf_cstr(&kw), buf_cstr(&kw2)));
	}

	(void)store_list_match(parts[2], parts[0]);
	buf_free(&kw);
	buf_free(&kw2);
	buf_free(&fmt);
	free(in);
	return 0;
}
