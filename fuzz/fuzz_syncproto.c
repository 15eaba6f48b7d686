/* fuzz_syncproto.c - libFuzzer target for sync/syncproto.c.
 *
 * The input is a byte stream from a peer.  It is decoded twice, once in
 * one piece and once byte by byte; both must give the same frames and
 * the same error (message and offset).  Every frame is checked as a
 * command and as a response (no crash, whatever the verdict), then
 * re-encoded: the encoding must decode again, and encoding that gives
 * the same bytes (the encoder's choices are stable). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/err.h"
#include "sync/syncproto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(x) do { if (!(x)) abort(); } while (0)

static void
encode_frame(const struct syncproto_value *f, struct buf *out)
{
	struct syncproto_enc e;

	syncproto_enc_init(&e, out, 0);
	for (size_t i = 0; i < f->n; i++)
		syncproto_enc_value(&e, &f->items[i]);
	syncproto_enc_end(&e);
}

static void
check_frame(const struct syncproto_value *f, struct buf *log)
{
	struct syncproto_command cmd;
	struct syncproto_response resp;
	struct syncproto_value *again;
	struct buf b1 = BUF_INIT, b2 = BUF_INIT;
	struct err err;

	CHECK(f->type == SYNCPROTO_LIST && f->n > 0);
	if (syncproto_command_parse(f, &cmd, &err) == 0) {
		CHECK(cmd.tag != NULL && cmd.name != NULL);
		for (size_t i = 0; i < cmd.nargs; i++)
			CHECK(cmd.args[i].type != 0);
	}
	if (syncproto_response_parse(f, &resp, &err) == 0 && resp.code != NULL)
		CHECK(resp.code->type == SYNCPROTO_CODE && resp.code->n > 0);
	for (size_t i = 0; i < f->n; i++)
		(void)syncproto_kv_check(&f->items[i], &err);

	encode_frame(f, &b1);
	buf_append(log, b1.data, b1.len);
	again = syncproto_decode_one(b1.data, b1.len, NULL, &err);
	CHECK(again != NULL);
	CHECK(again->n == f->n);
	encode_frame(again, &b2);
	CHECK(b1.len == b2.len && memcmp(b1.data, b2.data, b1.len) == 0);
	syncproto_value_free(&again);
	buf_free(&b1);
	buf_free(&b2);
}

/* Decode the stream, `step` bytes per feed (0: all at once).  The
 * re-encoded frames go to out, the final error (if any) to err. */
static int
run(const uint8_t *data, size_t size, size_t step, struct buf *out, struct err *err)
{
	struct syncproto_limits lim;
	struct syncproto_decoder *d;
	size_t at = 0;
	int rc = 0;

	syncproto_limits_default(&lim);
	lim.max_line = 4096;
	lim.max_literal = 4096;
	lim.max_frame = 16384;
	lim.max_items = 512;
	lim.max_depth = 8;
	d = syncproto_decoder_new(&lim);
	err_clear(err);
	while (at < size) {
		size_t n = step == 0 || step > size - at ? size - at : step, used;
		rc = syncproto_decoder_feed(d, data + at, n, &used, err);
		CHECK(used <= n);
		if (rc < 0)
			break;
		at += used;
		if (rc == SYNCPROTO_FRAME) {
			struct syncproto_value *f = syncproto_decoder_take(d);
			CHECK(f != NULL);
			check_frame(f, out);
			syncproto_value_free(&f);
		} else if (rc == SYNCPROTO_MORE) {
			CHECK(used == n);
		}
	}
	CHECK(rc >= 0 || syncproto_decoder_offset(d) <= size);
	syncproto_decoder_free(&d);
	return rc < 0 ? -1 : 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct buf whole = BUF_INIT, bytes = BUF_INIT;
	struct err e1, e2;
	int r1, r2;

	r1 = run(data, size, 0, &whole, &e1);
	r2 = run(data, size, 1, &bytes, &e2);
	CHECK(r1 == r2);
	CHECK(whole.len == bytes.len &&
	      (whole.len == 0 || memcmp(whole.data, bytes.data, whole.len) == 0));
	if (r1 < 0) {
		CHECK(e1.kind == e2.kind);
		CHECK(strcmp(e1.msg, e2.msg) == 0);
	}
	buf_free(&whole);
	buf_free(&bytes);
	return 0;
}
