/*
 * fuzz_maildir.c - libFuzzer target for the parsers in ctl/maildirread.c:
 * the dovecot-keywords file, the ":2,FLAGS" file-name suffix and the
 * LF -> CRLF conversion (whole and byte by byte must agree, and the
 * result never holds a bare LF).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctl/maildirread.h"
#include "lib/xalloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *names[MAILDIR_KEYWORDS] = { NULL };
	struct buf a = BUF_INIT, b = BUF_INIT;
	char *name;
	unsigned flags;
	uint32_t kw;
	int cra = 0, crb = 0, n, i, named = 0;
	size_t k;

	n = maildirread_parse_keywords((const char *)data, size, names);
	for (i = 0; i < MAILDIR_KEYWORDS; i++) {
		if (names[i] != NULL) {
			named++;
			if (!maildirread_valid_keyword(names[i], strlen(names[i])))
				abort();
		}
		free(names[i]);
	}
	if (n != named)
		abort();

	name = xstrndup((const char *)data, size);
	maildirread_parse_name(name, &flags, &kw);
	if (flags & ~0x3fu)
		abort();
	free(name);

	maildirread_crlf((const char *)data, size, &cra, &a);
	for (k = 0; k < size; k++)
		maildirread_crlf((const char *)data + k, 1, &crb, &b);
	if (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len) != 0))
		abort();
	for (k = 0; k < a.len; k++)
		if (a.data[k] == '\n' && (k == 0 || a.data[k - 1] != '\r'))
			abort();
	buf_free(&a);
	buf_free(&b);
	return 0;
}
