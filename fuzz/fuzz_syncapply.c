/*
 * fuzz_syncapply.c - libFuzzer target for the replica's command
 * dispatcher (sync/syncapply.c): the kv-lists of APPLY MAILBOX / RENAME /
 * DELETE / SUB / USER / PASSWORD, RECORD lists, FLAGS lists, RESERVE and
 * UPLOAD, applied to a real store.  The session is authenticated and past
 * HELLO before the input's frames arrive, so the fuzzer reaches the
 * parsers behind them.  The store lives in a temporary directory made
 * once; state accumulates across inputs (the dispatcher must cope with
 * any prior state too).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "lib/sasl.h"
#include "lib/str.h"
#include "store/store.h"
#include "sync/syncapply.h"
#include "sync/syncproto.h"

static struct store *st;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static char root[] = "/tmp/castor-fuzz-syncapply-XXXXXX";
	struct err err;

	(void)argc;
	(void)argv;
	log_set_level(LOG_LVL_FATAL);
	if (mkdtemp(root) == NULL || store_create(root, "replica", &err) < 0)
		abort();
	st = store_open(root, NULL, &err);
	if (st == NULL || store_sync_auth_set(st, "sync", "pw", &err) < 0 ||
	    store_user_add(st, "alice", NULL, &err) < 0)
		abort();
	return 0;
}

static void
feed(struct syncapply *a, struct syncproto_decoder *d, const void *p, size_t n, struct buf *out)
{
	size_t off = 0;

	while (off < n) {
		size_t used = 0;
		struct err err;
		int rc = syncproto_decoder_feed(d, (const char *)p + off, n - off, &used, &err);
		if (rc < 0) {
			syncapply_protocol_error(a, &err, out);
			return;
		}
		off += used;
		if (rc == SYNCPROTO_FRAME) {
			struct syncproto_value *f = syncproto_decoder_take(d);
			enum syncapply_action act = syncapply_frame(a, f, out);
			syncproto_value_free(&f);
			if (act == SYNCAPPLY_CLOSE)
				return;
		}
		if (used == 0 && rc != SYNCPROTO_FRAME)
			return;
		if (out->len > (1u << 20)) {
			syncapply_sync(a, out);
			buf_reset(out);
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct syncapply_opts o;
	struct syncapply *a;
	struct syncproto_decoder *d;
	struct syncproto_limits lim;
	struct buf out = BUF_INIT, pre = BUF_INIT;

	memset(&o, 0, sizeof(o));
	o.auth_allowed = true;
	o.compress_allowed = true;
	a = syncapply_new(st, &o);
	syncproto_limits_default(&lim);
	lim.max_literal = 1u << 20;
	lim.max_frame = 2u << 20;
	d = syncproto_decoder_new(&lim);
	buf_puts(&pre, "a AUTHENTICATE PLAIN ");
	sasl_plain_encode(&pre, NULL, "sync", "pw");
	buf_puts(&pre, "\r\nb HELLO (VERSION 1 ROLE master EPOCH 1)\r\n");
	feed(a, d, pre.data, pre.len, &out);
	feed(a, d, data, size, &out);
	syncapply_sync(a, &out);
	syncproto_decoder_free(&d);
	syncapply_free(&a);
	buf_free(&out);
	buf_free(&pre);
	return 0;
}
