/* test_syncproto.c - unit tests for sync/syncproto.c: the frame decoder
 * (whole and byte by byte), its limits and error offsets, the encoder,
 * and the command and response checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/buf.h"
#include "sync/syncproto.h"

static struct syncproto_value *
dec(const char *s, struct err *e)
{
	return syncproto_decode_one(s, strlen(s), NULL, e);
}

static void
encode_frame(const struct syncproto_value *f, struct buf *out)
{
	struct syncproto_enc e;

	syncproto_enc_init(&e, out, 0);
	for (size_t i = 0; i < f->n; i++)
		syncproto_enc_value(&e, &f->items[i]);
	syncproto_enc_end(&e);
}

/* Decode a stream into re-encoded frames, feeding `step` bytes at a time
 * (0: everything at once).  Returns the number of frames; out gets them. */
static int
decode_stream(const char *s, size_t len, size_t step, struct buf *out, struct err *err,
	int *continues)
{
	struct syncproto_decoder *d = syncproto_decoder_new(NULL);
	size_t at = 0;
	int frames = 0;

	*continues = 0;
	while (at < len) {
		size_t n = step == 0 || step > len - at ? len - at : step, used;
		int rc = syncproto_decoder_feed(d, s + at, n, &used, err);
		if (rc < 0) {
			syncproto_decoder_free(&d);
			return -1;
		}
		at += used;
		if (rc == SYNCPROTO_FRAME) {
			struct syncproto_value *f = syncproto_decoder_take(d);
			assert_non_null(f);
			encode_frame(f, out);
			syncproto_value_free(&f);
			frames++;
		} else if (rc == SYNCPROTO_CONTINUE) {
			(*continues)++;
		} else {
			assert_int_equal(used, n);
		}
	}
	syncproto_decoder_free(&d);
	return frames;
}

static void
test_value_types(void **state)
{
	static const char s[] = "* MAILBOX (UNIQUEID 6f1c0e9a2b7d4c31a0e5f8d2c4b6a913 "
		"NAME \"a \\\"b\\\" \\\\c\" N 18446744073709551615 M -9223372036854775808 "
		"BIG 123456789012345678901 Z nil E () L {5}\r\nhe\0lo P {3+}\r\nabc [X 1]) "
		"\\Seen $Junk\r\n";
	struct syncproto_value *f, *kv;
	struct err e;
	int64_t i64;
	uint64_t u;

	(void)state;
	/* cut inside the literal (at its NUL): incomplete */
	assert_null(syncproto_decode_one(s, strlen(s), NULL, &e));
	f = syncproto_decode_one(s, sizeof(s) - 1, NULL, &e);
	assert_non_null(f);
	assert_int_equal(f->type, SYNCPROTO_LIST);
	assert_int_equal(f->n, 5);
	assert_true(syncproto_is_atom(&f->items[0], "*"));
	assert_true(syncproto_is_atom(&f->items[1], "mailbox"));
	assert_true(syncproto_is_atom(&f->items[3], "\\Seen"));
	assert_true(syncproto_is_atom(&f->items[4], "$Junk"));
	kv = &f->items[2];
	assert_int_equal(kv->type, SYNCPROTO_LIST);
	assert_int_equal(syncproto_kv_check(kv, &e), -1);   /* the [X 1] item has no key */
	assert_true(syncproto_is_hex(syncproto_kv_get(kv, "uniqueid"), 32));
	assert_int_equal(syncproto_kv_get(kv, "NAME")->type, SYNCPROTO_STRING);
	assert_string_equal(syncproto_kv_get(kv, "NAME")->str, "a \"b\" \\c");
	assert_int_equal(syncproto_kv_u64(kv, "N", &u, &e), 1);
	assert_true(u == UINT64_MAX);
	assert_int_equal(syncproto_kv_u64(kv, "M", &u, &e), -1);
	assert_int_equal(syncproto_kv_i64(kv, "M", &i64, &e), 1);
	assert_true(i64 == INT64_MIN);
	assert_int_equal(syncproto_kv_i64(kv, "N", &i64, &e), -1);   /* does not fit int64 */
	assert_int_equal(syncproto_kv_get(kv, "BIG")->type, SYNCPROTO_ATOM);
	assert_int_equal(syncproto_kv_get(kv, "Z")->type, SYNCPROTO_NIL);
	assert_int_equal(syncproto_kv_u64(kv, "Z", &u, &e), 0);     /* NIL reads as absent */
	assert_int_equal(syncproto_kv_u64(kv, "NOPE", &u, &e), 0);
	assert_int_equal(syncproto_kv_get(kv, "E")->type, SYNCPROTO_LIST);
	assert_int_equal(syncproto_kv_get(kv, "E")->n, 0);
	assert_int_equal(syncproto_kv_get(kv, "L")->type, SYNCPROTO_LITERAL);
	assert_int_equal(syncproto_kv_get(kv, "L")->len, 5);
	assert_memory_equal(syncproto_kv_get(kv, "L")->str, "he\0lo", 5);
	assert_null(syncproto_get_cstr(syncproto_kv_get(kv, "L")));   /* has a NUL */
	assert_string_equal(syncproto_kv_get(kv, "P")->str, "abc");
	assert_int_equal(kv->items[kv->n - 1].type, SYNCPROTO_CODE);
	syncproto_value_free(&f);
}

/* A stream of frames, fed whole, in random-ish pieces and byte by byte,
 * gives the same frames. */
static void
test_byte_by_byte(void **state)
{
	static const char stream[] =
		"A1 GET USER \"alice\"\r\n"
		"A2 UPLOAD alice 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 {12}\r\nhello\r\nworld\r\n"
		"A3 UPLOAD alice 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 {3+}\r\n(x)\r\n"
		"* OK [CASTOR-SYNC (VERSIONS (1) AUTH (PLAIN))] \"ready\"\n"
		"A4 APPLY MAILBOX alice (RECORDS ((UID 1 FLAGS (\\Seen)) (UID 2 FLAGS ())) X {0}\r\n)\r\n"
		"+ go\r\n";
	size_t len = sizeof(stream) - 1;
	struct buf whole = BUF_INIT, piece = BUF_INIT;
	struct err e;
	int cont, cont2;

	(void)state;
	assert_int_equal(decode_stream(stream, len, 0, &whole, &e, &cont), 6);
	assert_int_equal(cont, 1);   /* the one synchronising literal with data */
	for (size_t step = 1; step <= 17; step++) {
		buf_reset(&piece);
		assert_int_equal(decode_stream(stream, len, step, &piece, &e, &cont2), 6);
		assert_int_equal(cont2, 1);
		assert_int_equal(piece.len, whole.len);
		assert_memory_equal(piece.data, whole.data, whole.len);
	}
	/* the canonical re-encoding */
	assert_non_null(strstr(buf_cstr(&whole), "A2 UPLOAD alice 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
		" {12}\r\nhello\r\nworld\r\n"));
	assert_non_null(strstr(buf_cstr(&whole), "A1 GET USER alice\r\n"));
	assert_non_null(strstr(buf_cstr(&whole), "A3 UPLOAD alice 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
		" \"(x)\"\r\n"));
	assert_non_null(strstr(buf_cstr(&whole), "X \"\")\r\n"));
	buf_free(&whole);
	buf_free(&piece);
}

static void
test_continue_stops(void **state)
{
	static const char s[] = "A1 UPLOAD u 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 {5}\r\nhelloA2 NOOP\r\n";
	struct syncproto_decoder *d = syncproto_decoder_new(NULL);
	struct syncproto_value *f;
	size_t used, at;
	struct err e;

	(void)state;
	/* stops right after the literal header so the receiver can say "+" */
	assert_int_equal(syncproto_decoder_feed(d, s, sizeof(s) - 1, &used, &e), SYNCPROTO_CONTINUE);
	assert_int_equal(used, strchr(s, '}') - s + 3);
	at = used;
	/* literal data and end: the frame; the next frame's bytes are not eaten */
	assert_int_equal(syncproto_decoder_feed(d, s + at, sizeof(s) - 1 - at, &used, &e), -1);
	/* "helloA2" : after the literal a space or end of line must follow */
	assert_non_null(strstr(e.msg, "offset 63 "));
	syncproto_decoder_free(&d);

	d = syncproto_decoder_new(NULL);
	{
		static const char t[] = "A1 NOOP\r\nA2 LOGOUT\r\n";
		assert_int_equal(syncproto_decoder_feed(d, t, sizeof(t) - 1, &used, &e), SYNCPROTO_FRAME);
		assert_int_equal(used, 9);
		/* an untaken frame blocks further input */
		assert_int_equal(syncproto_decoder_feed(d, t + 9, sizeof(t) - 10, &at, &e),
			SYNCPROTO_FRAME);
		assert_int_equal(at, 0);
		f = syncproto_decoder_take(d);
		assert_true(syncproto_is_atom(&f->items[1], "NOOP"));
		syncproto_value_free(&f);
		assert_null(syncproto_decoder_take(d));
		assert_int_equal(syncproto_decoder_feed(d, t + 9, sizeof(t) - 10, &at, &e),
			SYNCPROTO_FRAME);
		assert_int_equal(at, 11);
		assert_int_equal(syncproto_decoder_offset(d), 20);
		f = syncproto_decoder_take(d);
		assert_true(syncproto_is_atom(&f->items[1], "LOGOUT"));
		syncproto_value_free(&f);
	}
	syncproto_decoder_free(&d);
}

struct bad_case {
	const char *in;
	size_t offset;       /* where the error is */
	enum err_kind kind;
};

static void
test_errors_and_offsets(void **state)
{
	static const struct bad_case cases[] = {
		{ "\r\n", 0, ERR_INVALID },                 /* empty line */
		{ " A1 NOOP\r\n", 0, ERR_INVALID },         /* leading space */
		{ "A1  NOOP\r\n", 3, ERR_INVALID },         /* two spaces */
		{ "A1 NOOP \r\n", 8, ERR_INVALID },         /* trailing space */
		{ "A1 (a b\r\n", 7, ERR_INVALID },          /* list open at end of line */
		{ "A1 (a )\r\n", 6, ERR_INVALID },          /* space before ')' */
		{ "A1 ( a)\r\n", 4, ERR_INVALID },          /* space after '(' */
		{ "A1 a)\r\n", 4, ERR_INVALID },            /* ')' without '(' */
		{ "A1 (a]\r\n", 5, ERR_INVALID },           /* mismatched */
		{ "A1 )\r\n", 3, ERR_INVALID },             /* ')' in a value slot */
		{ "A1 \"a\\nb\"\r\n", 6, ERR_INVALID },     /* bad escape */
		{ "A1 \"ab\r\n", 6, ERR_INVALID },          /* CR inside quoted */
		{ "A1 {}\r\n", 4, ERR_INVALID },            /* literal without size */
		{ "A1 {3x}\r\n", 5, ERR_INVALID },          /* bad byte in size */
		{ "A1 {3+x\r\n", 6, ERR_INVALID },          /* '+' not followed by '}' */
		{ "A1 {3} abc\r\n", 6, ERR_INVALID },       /* no CRLF after size */
		{ "A1 {3}\rabc\r\n", 7, ERR_INVALID },      /* CR without LF */
		{ "A1 NOOP\rX", 8, ERR_INVALID },           /* CR without LF at end */
		{ "A1 \x01\r\n", 3, ERR_INVALID },          /* control byte */
		{ "A1 a\"b\r\n", 4, ERR_INVALID },          /* quote inside an atom */
		{ "A1 {99999999999999999999999}\r\n", 12, ERR_TOOBIG },
		{ "A1 {300000000}\r\n", 12, ERR_TOOBIG },   /* over max_literal */
	};
	struct err e;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct syncproto_decoder *d = syncproto_decoder_new(NULL);
		char want[64];
		size_t used;
		int rc = 0;

		/* byte by byte, so the offset is exact whatever the chunking */
		for (size_t k = 0; cases[i].in[k] != '\0' && rc >= 0; k++) {
			rc = syncproto_decoder_feed(d, cases[i].in + k, 1, &used, &e);
			if (rc == SYNCPROTO_FRAME)
				syncproto_value_free(&(struct syncproto_value *){ syncproto_decoder_take(d) });
		}
		if (rc != -1)
			fail_msg("case %zu (%s) was accepted", i, cases[i].in);
		snprintf(want, sizeof(want), "offset %zu ", cases[i].offset);
		if (strstr(e.msg, want) == NULL)
			fail_msg("case %zu: want %s got %s", i, want, e.msg);
		assert_int_equal(e.kind, cases[i].kind);
		/* dead: it stays dead */
		assert_int_equal(syncproto_decoder_feed(d, "A1 NOOP\r\n", 9, &used, &e), -1);
		assert_int_equal(used, 0);
		syncproto_decoder_free(&d);
	}
	/* a bare LF ends a line too */
	{
		struct syncproto_value *f = dec("A1 NOOP\n", &e);
		assert_non_null(f);
		syncproto_value_free(&f);
	}
	/* trailing bytes, incomplete frames */
	assert_null(dec("A1 NOOP\r\nA2", &e));
	assert_null(dec("A1 NOOP", &e));
	assert_null(dec("A1 {5}\r\nabc", &e));
}

static void
test_limits(void **state)
{
	struct syncproto_limits lim;
	struct syncproto_value *f;
	struct buf b = BUF_INIT;
	struct err e;

	(void)state;
	syncproto_limits_default(&lim);
	lim.max_line = 20;
	lim.max_literal = 10;
	lim.max_frame = 40;
	lim.max_items = 6;
	lim.max_depth = 3;

	/* exactly at max_line (20 bytes with CRLF) passes, one more fails */
	f = syncproto_decode_one("A1 aaaaaaaaaaaaaaa\r\n", 20, &lim, &e);
	assert_non_null(f);
	syncproto_value_free(&f);
	assert_null(syncproto_decode_one("A1 aaaaaaaaaaaaaaaa\r\n", 21, &lim, &e));
	assert_int_equal(e.kind, ERR_TOOBIG);
	assert_non_null(strstr(e.msg, "offset 20 "));
	/* literal size */
	f = syncproto_decode_one("A1 {10}\r\n0123456789\r\n", 21, &lim, &e);
	assert_non_null(f);
	syncproto_value_free(&f);
	assert_null(syncproto_decode_one("A1 {11}\r\n01234567890\r\n", 22, &lim, &e));
	assert_int_equal(e.kind, ERR_TOOBIG);
	/* frame size: literals count (checked at the literal's header) */
	{
		struct syncproto_limits l2 = lim;
		l2.max_frame = 30;
		assert_null(syncproto_decode_one("A1 {10}\r\n0123456789 {10}\r\n0123456789\r\n", 38,
			&l2, &e));
		assert_int_equal(e.kind, ERR_TOOBIG);
		assert_non_null(strstr(e.msg, "frame larger"));
		assert_non_null(strstr(e.msg, "offset 25 "));
	}
	/* items: 6 values pass, 7 fail (lists count) */
	f = syncproto_decode_one("A (b c) d e\r\n", 13, &lim, &e);
	assert_non_null(f);
	syncproto_value_free(&f);
	assert_null(syncproto_decode_one("A (b c) d e f\r\n", 15, &lim, &e));
	assert_int_equal(e.kind, ERR_TOOBIG);
	/* depth */
	f = syncproto_decode_one("A (((x)))\r\n", 11, &lim, &e);
	assert_non_null(f);
	syncproto_value_free(&f);
	assert_null(syncproto_decode_one("A ((((x))))\r\n", 13, &lim, &e));
	assert_int_equal(e.kind, ERR_TOOBIG);
	assert_non_null(strstr(e.msg, "offset 5 "));

	/* default limits: a list of 1,000 records of the APPLY MAILBOX kind fits */
	{
		struct syncproto_enc enc;
		syncproto_enc_init(&enc, &b, SYNCPROTO_ENC_LITERAL_PLUS);
		syncproto_enc_atom(&enc, "A9");
		syncproto_enc_atom(&enc, "APPLY");
		syncproto_enc_atom(&enc, "MAILBOX");
		syncproto_enc_cstring(&enc, "alice");
		syncproto_enc_open(&enc, '(');
		syncproto_enc_atom(&enc, "RECORDS");
		syncproto_enc_open(&enc, '(');
		for (int i = 1; i <= 1000; i++) {
			syncproto_enc_open(&enc, '(');
			syncproto_enc_key_u64(&enc, "UID", (uint64_t)i);
			syncproto_enc_key_u64(&enc, "MODSEQ", (uint64_t)i + 1000);
			syncproto_enc_key_string(&enc, "GUID", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12");
			syncproto_enc_key_u64(&enc, "SIZE", 4096);
			syncproto_enc_key_u64(&enc, "INTERNALDATE", 1712000000);
			syncproto_enc_atom(&enc, "FLAGS");
			syncproto_enc_open(&enc, '(');
			syncproto_enc_atom(&enc, "\\Seen");
			syncproto_enc_close(&enc);
			syncproto_enc_close(&enc);
		}
		syncproto_enc_close(&enc);
		syncproto_enc_close(&enc);
		syncproto_enc_end(&enc);
		f = syncproto_decode_one(b.data, b.len, NULL, &e);
		assert_non_null(f);
		{
			struct syncproto_command cmd;
			const struct syncproto_value *recs;
			assert_int_equal(syncproto_command_parse(f, &cmd, &e), 0);
			assert_int_equal(cmd.cmd, SYNCPROTO_CMD_APPLY_MAILBOX);
			assert_int_equal(syncproto_kv_list(&cmd.args[1], "RECORDS", &recs, &e), 1);
			assert_int_equal(recs->n, 1000);
		}
		syncproto_value_free(&f);
	}
	buf_free(&b);
}

static void
test_encoder(void **state)
{
	struct buf b = BUF_INIT;
	struct syncproto_enc e;
	struct syncproto_value *f;
	struct err err;
	char big[5000];

	(void)state;
	memset(big, 'x', sizeof(big));
	syncproto_enc_init(&e, &b, 0);
	syncproto_enc_atom(&e, "*");
	syncproto_enc_cstring(&e, "plain");
	syncproto_enc_cstring(&e, "NIL");          /* a string, not NIL */
	syncproto_enc_cstring(&e, "123");          /* a string, not a number */
	syncproto_enc_cstring(&e, "-5");
	syncproto_enc_cstring(&e, "");
	syncproto_enc_cstring(&e, "two words");
	syncproto_enc_cstring(&e, "q\"b\\s");
	syncproto_enc_cstring(&e, "Entw\xc3\xbcrfe");  /* UTF-8: quoted */
	syncproto_enc_cstring(&e, "line\r\nbreak");
	syncproto_enc_string(&e, big, sizeof(big));
	syncproto_enc_nil(&e);
	syncproto_enc_i64(&e, -42);
	syncproto_enc_u64(&e, UINT64_MAX);
	syncproto_enc_open(&e, '[');
	syncproto_enc_atom(&e, "CODE");
	syncproto_enc_open(&e, '(');
	syncproto_enc_close(&e);
	syncproto_enc_close(&e);
	syncproto_enc_end(&e);
	assert_int_equal(strncmp(buf_cstr(&b), "* plain \"NIL\" \"123\" \"-5\" \"\" \"two words\" "
		"\"q\\\"b\\\\s\" \"Entw\xc3\xbcrfe\" {11}\r\nline\r\nbreak {5000}\r\nxxx", 74), 0);
	f = syncproto_decode_one(b.data, b.len, NULL, &err);
	assert_non_null(f);
	assert_int_equal(f->n, 15);
	assert_int_equal(f->items[1].type, SYNCPROTO_ATOM);
	assert_int_equal(f->items[2].type, SYNCPROTO_STRING);
	assert_string_equal(f->items[2].str, "NIL");
	assert_int_equal(f->items[3].type, SYNCPROTO_STRING);
	assert_int_equal(f->items[4].type, SYNCPROTO_STRING);
	assert_int_equal(f->items[5].type, SYNCPROTO_STRING);
	assert_int_equal(f->items[5].len, 0);
	assert_string_equal(f->items[6].str, "two words");
	assert_string_equal(f->items[7].str, "q\"b\\s");
	assert_int_equal(f->items[8].type, SYNCPROTO_STRING);
	assert_int_equal(f->items[9].type, SYNCPROTO_LITERAL);
	assert_string_equal(f->items[9].str, "line\r\nbreak");
	assert_int_equal(f->items[10].type, SYNCPROTO_LITERAL);
	assert_int_equal(f->items[10].len, sizeof(big));
	assert_int_equal(f->items[11].type, SYNCPROTO_NIL);
	{
		int64_t v;
		uint64_t u;
		assert_int_equal(syncproto_get_i64(&f->items[12], &v), 0);
		assert_true(v == -42);
		assert_int_equal(syncproto_get_u64(&f->items[13], &u), 0);
		assert_true(u == UINT64_MAX);
	}
	assert_int_equal(f->items[14].type, SYNCPROTO_CODE);
	assert_int_equal(f->items[14].items[1].type, SYNCPROTO_LIST);
	/* re-encoding a decoded frame gives the same bytes */
	{
		struct buf again = BUF_INIT;
		encode_frame(f, &again);
		assert_int_equal(again.len, b.len);
		assert_memory_equal(again.data, b.data, b.len);
		buf_free(&again);
	}
	syncproto_value_free(&f);

	/* literal+ for clients */
	buf_reset(&b);
	syncproto_enc_init(&e, &b, SYNCPROTO_ENC_LITERAL_PLUS);
	syncproto_enc_atom(&e, "A1");
	syncproto_enc_literal(&e, "ab", 2);
	syncproto_enc_end(&e);
	assert_string_equal(buf_cstr(&b), "A1 {2+}\r\nab\r\n");

	/* status lines */
	buf_reset(&b);
	syncproto_put_status(&b, "A7", "NO", ERR_CONFLICT, "checksum", "expected 12, have 13");
	assert_string_equal(buf_cstr(&b), "A7 NO [CONFLICT checksum] \"expected 12, have 13\"\r\n");
	buf_reset(&b);
	syncproto_put_status(&b, "*", "BYE", ERR_TOOBIG, NULL, "line\r\ntoo long");
	assert_string_equal(buf_cstr(&b), "* BYE [TOOBIG] {14}\r\nline\r\ntoo long\r\n");
	buf_reset(&b);
	syncproto_put_status(&b, "A1", "OK", ERR_NONE, NULL, NULL);
	assert_string_equal(buf_cstr(&b), "A1 OK\r\n");
	buf_free(&b);
}

struct cmd_case {
	const char *in;
	int ok;
	enum syncproto_cmd cmd;
};

static void
test_commands(void **state)
{
	static const struct cmd_case cases[] = {
		{ "A1 NOOP\r\n", 1, SYNCPROTO_CMD_NOOP },
		{ "7 logout\r\n", 1, SYNCPROTO_CMD_LOGOUT },
		{ "S1 STARTTLS\r\n", 1, SYNCPROTO_CMD_STARTTLS },
		{ "S2 AUTHENTICATE PLAIN AHN5bmMAc2VjcmV0\r\n", 1, SYNCPROTO_CMD_AUTHENTICATE },
		{ "S2 AUTHENTICATE PLAIN \"AGNh\"\r\n", 1, SYNCPROTO_CMD_AUTHENTICATE },
		{ "S3 COMPRESS ZSTD\r\n", 1, SYNCPROTO_CMD_COMPRESS },
		{ "S4 HELLO (VERSION 1 ROLE master EPOCH 7)\r\n", 1, SYNCPROTO_CMD_HELLO },
		{ "A1 GET USERS\r\n", 1, SYNCPROTO_CMD_GET_USERS },
		{ "A2 GET USER \"alice\"\r\n", 1, SYNCPROTO_CMD_GET_USER },
		{ "A3 GET RECORDS alice 6f1c0e9a2b7d4c31a0e5f8d2c4b6a913 1200\r\n", 1,
		  SYNCPROTO_CMD_GET_RECORDS },
		{ "A4 GET BLOB alice 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12\r\n", 1,
		  SYNCPROTO_CMD_GET_BLOB },
		{ "A5 RESERVE alice (2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 "
		  "de9f2c7fd25e1b3afad3e85a0bd17d9b100db4b3)\r\n", 1, SYNCPROTO_CMD_RESERVE },
		{ "A5 RESERVE alice ()\r\n", 1, SYNCPROTO_CMD_RESERVE },
		{ "A6 UPLOAD alice de9f2c7fd25e1b3afad3e85a0bd17d9b100db4b3 {3+}\r\nabc\r\n", 1,
		  SYNCPROTO_CMD_UPLOAD },
		{ "A7 APPLY MAILBOX alice (UNIQUEID 6f1c0e9a2b7d4c31a0e5f8d2c4b6a913 RECORDS ())\r\n", 1,
		  SYNCPROTO_CMD_APPLY_MAILBOX },
		{ "A8 apply rename alice (NAME x)\r\n", 1, SYNCPROTO_CMD_APPLY_RENAME },
		{ "A9 APPLY DELETE alice ()\r\n", 1, SYNCPROTO_CMD_APPLY_DELETE },
		{ "A9 APPLY SEEN alice ()\r\n", 1, SYNCPROTO_CMD_APPLY_SEEN },
		{ "A9 APPLY SUB alice ()\r\n", 1, SYNCPROTO_CMD_APPLY_SUB },
		{ "A9 APPLY USER alice ()\r\n", 1, SYNCPROTO_CMD_APPLY_USER },
		{ "A9 APPLY UNUSER alice ()\r\n", 1, SYNCPROTO_CMD_APPLY_UNUSER },
		{ "A9 APPLY PASSWORD alice (HASH NIL)\r\n", 1, SYNCPROTO_CMD_APPLY_PASSWORD },
		{ "P1 PROMOTE 8\r\n", 1, SYNCPROTO_CMD_PROMOTE },
		/* bad ones */
		{ "* NOOP\r\n", 0, 0 },                                  /* reserved tag */
		{ "(x) NOOP\r\n", 0, 0 },                                /* tag not an atom */
		{ "A1\r\n", 0, 0 },                                      /* no command */
		{ "A1 \"NOOP\"\r\n", 0, 0 },                             /* command not an atom */
		{ "A1 FROB\r\n", 0, 0 },
		{ "A1 GET FROB\r\n", 0, 0 },
		{ "A1 GET\r\n", 0, 0 },
		{ "A1 NOOP x\r\n", 0, SYNCPROTO_CMD_NOOP },               /* extra argument */
		{ "A2 GET USER\r\n", 0, SYNCPROTO_CMD_GET_USER },
		{ "A2 GET USER \"\"\r\n", 0, SYNCPROTO_CMD_GET_USER },      /* empty user */
		{ "A2 GET USER {3+}\r\na\nb\r\n", 0, SYNCPROTO_CMD_GET_USER },  /* control char */
		{ "A2 GET USER (alice)\r\n", 0, SYNCPROTO_CMD_GET_USER },
		{ "A3 GET RECORDS alice 6F1C0E9A2B7D4C31A0E5F8D2C4B6A913 1\r\n", 0,
		  SYNCPROTO_CMD_GET_RECORDS },                            /* upper-case hex */
		{ "A3 GET RECORDS alice 6f1c 1\r\n", 0, SYNCPROTO_CMD_GET_RECORDS },
		{ "A3 GET RECORDS alice 6f1c0e9a2b7d4c31a0e5f8d2c4b6a913 -1\r\n", 0,
		  SYNCPROTO_CMD_GET_RECORDS },
		{ "A3 GET RECORDS alice 6f1c0e9a2b7d4c31a0e5f8d2c4b6a913 x\r\n", 0,
		  SYNCPROTO_CMD_GET_RECORDS },
		{ "A4 GET BLOB alice 2fd4e1c67a2d28fced849ee1bb76e7391b93eb1\r\n", 0,
		  SYNCPROTO_CMD_GET_BLOB },
		{ "A5 RESERVE alice (2fd4e1c67a2d28fced849ee1bb76e7391b93eb12 x)\r\n", 0,
		  SYNCPROTO_CMD_RESERVE },
		{ "A5 RESERVE alice 2fd4e1c67a2d28fced849ee1bb76e7391b93eb12\r\n", 0,
		  SYNCPROTO_CMD_RESERVE },
		{ "A6 UPLOAD alice de9f2c7fd25e1b3afad3e85a0bd17d9b100db4b3 NIL\r\n", 0,
		  SYNCPROTO_CMD_UPLOAD },
		{ "A7 APPLY MAILBOX alice (UID)\r\n", 0, SYNCPROTO_CMD_APPLY_MAILBOX },
		{ "A7 APPLY MAILBOX alice (UID 1 uid 2)\r\n", 0, SYNCPROTO_CMD_APPLY_MAILBOX },
		{ "A7 APPLY MAILBOX alice (\"UID\" 1)\r\n", 0, SYNCPROTO_CMD_APPLY_MAILBOX },
		{ "A7 APPLY MAILBOX alice [UID 1]\r\n", 0, SYNCPROTO_CMD_APPLY_MAILBOX },
		{ "P1 PROMOTE NIL\r\n", 0, SYNCPROTO_CMD_PROMOTE },
	};
	struct err e;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct syncproto_value *f = dec(cases[i].in, &e);
		struct syncproto_command cmd;
		int rc;

		if (f == NULL)
			fail_msg("case %zu did not decode: %s", i, e.msg);
		rc = syncproto_command_parse(f, &cmd, &e);
		if (cases[i].ok && rc != 0)
			fail_msg("case %zu (%s) refused: %s", i, cases[i].in, e.msg);
		if (!cases[i].ok && rc == 0)
			fail_msg("case %zu (%s) accepted", i, cases[i].in);
		if (cases[i].cmd != 0)
			assert_int_equal(cmd.cmd, cases[i].cmd);
		if (!cases[i].ok) {
			assert_int_equal(e.kind, ERR_INVALID);
			/* the tag survives for "tag BAD ..." when it was usable */
			if (cases[i].in[0] == 'A' || cases[i].in[0] == 'P')
				assert_non_null(cmd.tag);
		}
		syncproto_value_free(&f);
	}
	{
		struct syncproto_value *f = dec("A3 GET RECORDS alice 6f1c0e9a2b7d4c31a0e5f8d2c4b6a913 12\r\n",
			&e);
		struct syncproto_command cmd;
		uint64_t since;
		assert_int_equal(syncproto_command_parse(f, &cmd, &e), 0);
		assert_string_equal(cmd.tag, "A3");
		assert_string_equal(cmd.name, "GET RECORDS");
		assert_int_equal(cmd.nargs, 3);
		assert_string_equal(syncproto_get_cstr(&cmd.args[0]), "alice");
		assert_int_equal(syncproto_get_u64(&cmd.args[2], &since), 0);
		assert_int_equal(since, 12);
		syncproto_value_free(&f);
	}
}

static void
test_responses(void **state)
{
	struct syncproto_response r;
	struct syncproto_value *f;
	struct err e;

	(void)state;
	f = dec("* OK [CASTOR-SYNC (VERSIONS (1) AUTH (PLAIN) MAXLINE 1048576)] \"castor ready\"\r\n", &e);
	assert_int_equal(syncproto_response_parse(f, &r, &e), 0);
	assert_int_equal(r.kind, SYNCPROTO_RESP_OK);
	assert_null(r.tag);
	assert_non_null(r.code);
	assert_true(syncproto_is_atom(&r.code->items[0], "CASTOR-SYNC"));
	assert_int_equal(r.code_kind, ERR_NONE);
	assert_string_equal(r.text, "castor ready");
	assert_int_equal(syncproto_kv_check(&r.code->items[1], &e), 0);
	syncproto_value_free(&f);

	f = dec("A7 NO [CONFLICT checksum 305419896 1230] \"mismatch\"\r\n", &e);
	assert_int_equal(syncproto_response_parse(f, &r, &e), 0);
	assert_int_equal(r.kind, SYNCPROTO_RESP_NO);
	assert_string_equal(r.tag, "A7");
	assert_int_equal(r.code_kind, ERR_CONFLICT);
	assert_int_equal(r.code->n, 4);
	syncproto_value_free(&f);

	f = dec("S4 NO [FENCED epoch 8]\r\n", &e);
	assert_int_equal(syncproto_response_parse(f, &r, &e), 0);
	assert_int_equal(r.code_kind, ERR_FENCED);
	assert_null(r.text);
	syncproto_value_free(&f);

	f = dec("A1 BAD [INVALID] {3}\r\nx\ny\r\n", &e);
	assert_int_equal(syncproto_response_parse(f, &r, &e), 0);
	assert_int_equal(r.kind, SYNCPROTO_RESP_BAD);
	assert_string_equal(r.text, "x\ny");
	syncproto_value_free(&f);

	f = dec("* BYE \"bye\"\r\n", &e);
	assert_int_equal(syncproto_response_parse(f, &r, &e), 0);
	assert_int_equal(r.kind, SYNCPROTO_RESP_BYE);
	syncproto_value_free(&f);

	f = dec("* MAILBOX (UNIQUEID 6f1c0e9a2b7d4c31a0e5f8d2c4b6a913 NAME \"INBOX\")\r\n", &e);
	assert_int_equal(syncproto_response_parse(f, &r, &e), 0);
	assert_int_equal(r.kind, SYNCPROTO_RESP_DATA);
	assert_string_equal(r.data, "MAILBOX");
	assert_int_equal(r.nargs, 1);
	syncproto_value_free(&f);

	f = dec("+ \"go ahead\"\r\n", &e);
	assert_int_equal(syncproto_response_parse(f, &r, &e), 0);
	assert_int_equal(r.kind, SYNCPROTO_RESP_CONTINUE);
	assert_string_equal(r.text, "go ahead");
	syncproto_value_free(&f);

	{
		static const char *const bad[] = {
			"A1 FROB\r\n",             /* tagged, not a status */
			"A1\r\n",
			"A1 OK [] x\r\n",          /* empty code */
			"A1 OK [1] x\r\n",         /* code name not an atom */
			"A1 OK x y\r\n",           /* two texts */
			"A1 OK (x)\r\n",           /* text not a string */
			"A1 OK 5\r\n",
			"+ a b\r\n",
			"(A1) OK\r\n",
			"* (X)\r\n",
		};
		for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
			f = dec(bad[i], &e);
			assert_non_null(f);
			if (syncproto_response_parse(f, &r, &e) == 0)
				fail_msg("accepted %s", bad[i]);
			syncproto_value_free(&f);
		}
	}
}

static void
test_codes(void **state)
{
	(void)state;
	assert_null(syncproto_code_name(ERR_NONE));
	assert_string_equal(syncproto_code_name(ERR_FENCED), "FENCED");
	assert_string_equal(syncproto_code_name(ERR_CONFLICT), "CONFLICT");
	for (int k = ERR_TEMP; k <= ERR_CONFLICT; k++)
		assert_int_equal(syncproto_code_kind(syncproto_code_name((enum err_kind)k)), k);
	assert_int_equal(syncproto_code_kind("notfound"), ERR_NOTFOUND);
	assert_int_equal(syncproto_code_kind("CASTOR-SYNC"), ERR_NONE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_value_types),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_continue_stops),
		cmocka_unit_test(test_errors_and_offsets),
		cmocka_unit_test(test_limits),
		cmocka_unit_test(test_encoder),
		cmocka_unit_test(test_commands),
		cmocka_unit_test(test_responses),
		cmocka_unit_test(test_codes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
