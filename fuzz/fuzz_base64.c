/* fuzz_base64.c - libFuzzer target for lib/base64.c.  Properties: strict
 * decoding accepts only canonical input (re-encoding gives it back);
 * encoding then strict decoding is the identity; the lenient MIME
 * decoder never fails and never writes more than 3/4 of its input + 2. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base64.h"
#include "lib/buf.h"
#include "lib/err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf d = BUF_INIT, e = BUF_INIT, m = BUF_INIT;
	struct err err;
	const char *in = (const char *)data;

	if (base64_decode(&d, in, size, &err) == 0) {
		base64_encode(&e, d.data, d.len);
		CHECK(e.len == size && memcmp(e.data, in, size) == 0);
	} else {
		CHECK(err.kind == ERR_INVALID && d.len == 0);
	}
	buf_reset(&e);
	buf_reset(&d);
	base64_encode(&e, data, size);
	CHECK(e.len == base64_encoded_len(size));
	CHECK(base64_decode(&d, e.data, e.len, &err) == 0);
	CHECK(d.len == size && (size == 0 || memcmp(d.data, data, size) == 0));
	CHECK(base64_decode_mime(&m, in, size) == m.len);
	CHECK(m.len <= size / 4 * 3 + 2);
	buf_free(&d);
	buf_free(&e);
	buf_free(&m);
	return 0;
}
