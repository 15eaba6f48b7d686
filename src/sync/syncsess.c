/*
 * syncsess.c - the transport of a sync protocol connection (syncsess.h):
 * conn + frame decoder + optional zstd in both directions.
 *
 * Input path:  conn bytes -> [zstd decompress, at most ZCHUNK of plain
 * text at a time, so a small compressed input cannot balloon memory] ->
 * plain buffer -> syncproto decoder -> frames.  The decoder enforces the
 * protocol's limits before any frame is built.
 * Output path: frames encoded into `out` -> at flush [zstd with an
 * explicit flush, so the peer can decode everything sent so far] -> conn.
 */
#include "sync/syncsess.h"

#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#include "lib/xalloc.h"

#define READ_CHUNK (64u * 1024)
#define ZCHUNK (128u * 1024)

struct syncsess {
	struct conn *c;
	bool server;
	struct syncproto_decoder *dec;
	struct buf out;           /* plain output not yet sent */
	struct buf in;            /* plain input not yet fed to the decoder */
	size_t inpos;
	uint64_t partial;         /* plain bytes fed since the last complete frame */
	ZSTD_CStream *zc;
	ZSTD_DStream *zd;
	struct buf zin;           /* compressed input not yet decompressed */
	size_t zinpos;
	bool zmore;               /* the decompressor may hold more output */
	struct buf zout;
	uint64_t plain_in, plain_out;
	void (*answer_fn)(void *ctx);   /* syncsess_set_answer_hook */
	void *answer_ctx;
};

struct syncsess *
syncsess_new(struct conn *c, bool server, const struct syncproto_limits *lim)
{
	struct syncsess *s = xcalloc(1, sizeof(*s));

	s->c = c;
	s->server = server;
	s->dec = syncproto_decoder_new(lim);
	return s;
}

void
syncsess_free(struct syncsess **sp)
{
	struct syncsess *s = *sp;

	if (s == NULL)
		return;
	conn_free(&s->c);
	syncproto_decoder_free(&s->dec);
	buf_free(&s->out);
	buf_free(&s->in);
	buf_free(&s->zin);
	buf_free(&s->zout);
	if (s->zc != NULL)
		ZSTD_freeCStream(s->zc);
	if (s->zd != NULL)
		ZSTD_freeDStream(s->zd);
	free(s);
	*sp = NULL;
}

void
syncsess_set_limits(struct syncsess *s, const struct syncproto_limits *lim)
{
	syncproto_decoder_set_limits(s->dec, lim);
}

struct conn *
syncsess_conn(struct syncsess *s)
{
	return s->c;
}

struct buf *
syncsess_out(struct syncsess *s)
{
	return &s->out;
}

int
syncsess_flush(struct syncsess *s, struct err *err)
{
	if (s->out.len > 0) {
		s->plain_out += s->out.len;
		if (s->zc == NULL) {
			conn_write(s->c, s->out.data, s->out.len);
		} else {
			ZSTD_inBuffer zi = { s->out.data, s->out.len, 0 };
			size_t left;

			do {
				ZSTD_outBuffer zo;

				buf_reset(&s->zout);
				buf_reserve(&s->zout, ZSTD_CStreamOutSize());
				zo.dst = s->zout.data;
				zo.size = s->zout.cap - 1;
				zo.pos = 0;
				left = ZSTD_compressStream2(s->zc, &zo, &zi, ZSTD_e_flush);
				if (ZSTD_isError(left)) {
					buf_reset(&s->out);
					return err_set(err, ERR_TEMP, "zstd: %s", ZSTD_getErrorName(left));
				}
				conn_write(s->c, zo.dst, zo.pos);
			} while (left != 0 || zi.pos < zi.size);
		}
		buf_reset(&s->out);
	}
	return conn_flush(s->c, err);
}

/* Decompress some of zin into in.  0, or -1 with ERR_CORRUPT. */
static int
syncsess_inflate(struct syncsess *s, struct err *err)
{
	ZSTD_inBuffer zi = { s->zin.data + s->zinpos, s->zin.len - s->zinpos, 0 };
	ZSTD_outBuffer zo;
	size_t r;

	buf_reserve(&s->in, ZCHUNK);
	zo.dst = s->in.data + s->in.len;
	zo.size = ZCHUNK;
	zo.pos = 0;
	r = ZSTD_decompressStream(s->zd, &zo, &zi);
	if (ZSTD_isError(r))
		return err_set(err, ERR_CORRUPT, "zstd: %s", ZSTD_getErrorName(r));
	s->in.len += zo.pos;
	s->in.data[s->in.len] = '\0';
	s->zinpos += zi.pos;
	if (s->zinpos == s->zin.len) {
		buf_reset(&s->zin);
		s->zinpos = 0;
	}
	/* A full output buffer may leave output inside the decompressor. */
	s->zmore = zo.pos == zo.size;
	return 0;
}

bool
syncsess_pending(const struct syncsess *s)
{
	return s->inpos < s->in.len || s->zinpos < s->zin.len || s->zmore ||
		conn_pending_input(s->c) > 0;
}

int
syncsess_read(struct syncsess *s, struct syncproto_value **frame_r, struct err *err)
{
	*frame_r = NULL;
	for (;;) {
		const char *p;
		size_t n, used = 0;
		int rc;

		if (s->inpos < s->in.len) {
			rc = syncproto_decoder_feed(s->dec, s->in.data + s->inpos, s->in.len - s->inpos,
				&used, err);
			if (rc < 0)
				return -1;
			s->inpos += used;
			s->partial += used;
			s->plain_in += used;
			if (s->inpos == s->in.len) {
				buf_reset(&s->in);
				s->inpos = 0;
			}
			if (rc == SYNCPROTO_FRAME) {
				*frame_r = syncproto_decoder_take(s->dec);
				s->partial = 0;
				return 1;
			}
			if (rc == SYNCPROTO_CONTINUE) {
				if (s->server) {
					buf_puts(&s->out, "+ go\r\n");
					if (syncsess_flush(s, err) < 0)
						return -1;
				}
				continue;
			}
			if (s->inpos < s->in.len)
				continue;
		}
		if (s->zd != NULL && (s->zinpos < s->zin.len || s->zmore)) {
			if (syncsess_inflate(s, err) < 0)
				return -1;
			continue;
		}
		rc = conn_read_some(s->c, READ_CHUNK, &p, &n, err);
		if (rc < 0)
			return -1;
		if (rc == 0) {
			if (s->partial > 0)
				return err_set(err, ERR_TEMP, "connection closed inside a frame");
			return 0;
		}
		if (s->zd != NULL) {
			buf_append(&s->zin, p, n);
			if (syncsess_inflate(s, err) < 0)
				return -1;
		} else {
			buf_append(&s->in, p, n);
		}
	}
}

int
syncsess_compress_start(struct syncsess *s, int level, struct err *err)
{
	size_t r;

	if (s->zc != NULL)
		return err_set(err, ERR_PERM, "compression is already on");
	if (s->inpos < s->in.len)
		return err_set(err, ERR_INVALID, "input after COMPRESS before its answer");
	s->zc = ZSTD_createCStream();
	s->zd = ZSTD_createDStream();
	if (s->zc == NULL || s->zd == NULL)
		return err_set(err, ERR_TEMP, "zstd: out of memory");
	r = ZSTD_CCtx_setParameter(s->zc, ZSTD_c_compressionLevel, level);
	if (!ZSTD_isError(r))
		r = ZSTD_initDStream(s->zd);
	if (ZSTD_isError(r))
		return err_set(err, ERR_TEMP, "zstd: %s", ZSTD_getErrorName(r));
	/* Bytes the conn already buffered arrived after the switch: they are
	 * compressed and go through the decompressor on the next read. */
	return 0;
}

bool
syncsess_compressed(const struct syncsess *s)
{
	return s->zc != NULL;
}

uint64_t
syncsess_wire_in(const struct syncsess *s)
{
	return conn_bytes_in(s->c);
}

uint64_t
syncsess_wire_out(const struct syncsess *s)
{
	return conn_bytes_out(s->c);
}

uint64_t
syncsess_plain_in(const struct syncsess *s)
{
	return s->plain_in;
}

uint64_t
syncsess_plain_out(const struct syncsess *s)
{
	return s->plain_out;
}

int
syncsess_read_response(struct syncsess *s, const char *peer, struct syncproto_value **frame_r,
	struct syncproto_response *r, struct err *err)
{
	int rc;

	if (syncsess_out(s)->len > 0 && syncsess_flush(s, err) < 0)
		return -1;
	rc = syncsess_read(s, frame_r, err);
	if (rc == 0)
		return err_set(err, ERR_TEMP, "%s closed the connection", peer);
	if (rc < 0)
		return -1;
	if (syncproto_response_parse(*frame_r, r, err) < 0) {
		syncproto_value_free(frame_r);
		err->kind = ERR_TEMP;
		return -1;
	}
	if (s->answer_fn != NULL)
		s->answer_fn(s->answer_ctx);
	if (r->kind == SYNCPROTO_RESP_BYE) {
		err_set(err, r->code_kind == ERR_PERM ? ERR_PERM : ERR_TEMP, "%s said BYE: %s", peer,
			r->text ? r->text : "");
		syncproto_value_free(frame_r);
		return -1;
	}
	return 0;
}

void
syncsess_set_answer_hook(struct syncsess *s, void (*fn)(void *ctx), void *ctx)
{
	s->answer_fn = fn;
	s->answer_ctx = ctx;
}
