/* fuzz_sasl.c - libFuzzer target for lib/sasl.c.  The input is tried both
 * as a decoded PLAIN message and as a base64 response.  An accepted
 * message must satisfy every documented rule, and re-encoding its parts
 * must parse back to the same parts. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "lib/sasl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void
check_ident(const char *s)
{
	size_t i, n = strlen(s);

	CHECK(n <= SASL_PLAIN_ID_MAX);
	for (i = 0; i < n; i++)
		CHECK((unsigned char)s[i] >= 0x20 && s[i] != 0x7f);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sasl_plain p, q;
	struct err err;
	struct buf b = BUF_INIT;

	if (sasl_plain_parse((const char *)data, size, &p, &err) == 0) {
		check_ident(p.authzid);
		check_ident(p.authcid);
		CHECK(p.authcid[0] != '\0' && p.passwd[0] != '\0');
		CHECK(strlen(p.passwd) <= SASL_PLAIN_PASS_MAX);
		CHECK(strlen(p.authzid) + strlen(p.authcid) + strlen(p.passwd) + 2 == size);
		sasl_plain_encode(&b, p.authzid, p.authcid, p.passwd);
		CHECK(sasl_plain_decode(b.data, b.len, &q, &err) == 0);
		CHECK(strcmp(p.authzid, q.authzid) == 0 && strcmp(p.authcid, q.authcid) == 0 &&
		    strcmp(p.passwd, q.passwd) == 0);
	} else {
		CHECK(err.kind == ERR_INVALID && p.passwd[0] == '\0');
	}
	if (sasl_plain_decode((const char *)data, size, &p, &err) == 0) {
		check_ident(p.authcid);
		CHECK(p.authcid[0] != '\0');
	}
	buf_free(&b);
	return 0;
}
