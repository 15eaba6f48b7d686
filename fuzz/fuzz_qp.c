/* fuzz_qp.c - libFuzzer target for lib/qp.c: both decoders on arbitrary
 * input; the output is never longer than the input, and input without
 * '=', white space or '_' decodes to itself. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/qp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf a = BUF_INIT, b = BUF_INIT;
	const char *in = (const char *)data;

	CHECK(qp_decode(&a, in, size) == a.len);
	CHECK(a.len <= size);
	CHECK(qp_decode_q(&b, in, size) == b.len);
	CHECK(b.len == a.len);
	if (size > 0 && memchr(in, '=', size) == NULL && memchr(in, ' ', size) == NULL &&
	    memchr(in, '\t', size) == NULL)
		CHECK(a.len == size && memcmp(a.data, in, size) == 0);
	buf_free(&a);
	buf_free(&b);
	return 0;
}
