/*
 * syncsess.h - one end of a sync protocol connection: a conn (socket or
 * fd pair, optionally TLS), the frame decoder (syncproto.h) and optional
 * zstd compression in both directions.  The same code serves syncd (the
 * replica), sync-client (the master) and the unit tests (a socketpair).
 *
 * Output is encoded by the caller into syncsess_out() and leaves with
 * syncsess_flush(); input arrives one decoded frame at a time from
 * syncsess_read().  With compression on, what is in syncsess_out() is
 * compressed at flush time (one zstd flush per burst of frames), and what
 * is read is decompressed before it reaches the decoder.
 */
#ifndef CASTOR_SYNCSESS_H
#define CASTOR_SYNCSESS_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/err.h"
#include "sync/syncproto.h"

struct syncsess;

/* Wrap c (taken over: syncsess_free frees it).  server: answer a
 * synchronising literal {n} with a continuation.  lim NULL: defaults. */
struct syncsess *syncsess_new(struct conn *c, bool server, const struct syncproto_limits *lim);
void syncsess_free(struct syncsess **s);

/* Change the decoder's limits; call between frames (syncproto.h). */
void syncsess_set_limits(struct syncsess *s, const struct syncproto_limits *lim);

struct conn *syncsess_conn(struct syncsess *s);
/* Where the caller encodes outgoing frames (plain text). */
struct buf *syncsess_out(struct syncsess *s);

/* Send everything in syncsess_out() (compressing it first when
 * compression is on).  0, or -1 with ERR_TEMP. */
int syncsess_flush(struct syncsess *s, struct err *err);

/*
 * Read the next frame.  Returns 1 with *frame_r (free with
 * syncproto_value_free), 0 at a clean end of input between frames, -1 on
 * error: ERR_TEMP (I/O, timeout, end of input inside a frame),
 * ERR_INVALID / ERR_TOOBIG (protocol error: the session must end; the
 * message names the byte offset), ERR_CORRUPT (compressed stream broken).
 * Blocks (up to the conn's read timeout) when no input is buffered.
 */
int syncsess_read(struct syncsess *s, struct syncproto_value **frame_r, struct err *err);
/* The client side's next response: flushes what is queued, reads one
 * frame and parses it.  EOF, a parse error and BYE are errors (ERR_TEMP,
 * ERR_PERM for BYE [PERM]) naming the peer ("the replica", "the peer").
 * 0 with *frame_r (owned by the caller) and *r pointing into it, or -1. */
int syncsess_read_response(struct syncsess *s, const char *peer, struct syncproto_value **frame_r,
	struct syncproto_response *r, struct err *err);

/* fn(ctx) is called for every well-formed response syncsess_read_response
 * reads (the peer is alive: sync-client's liveness clock, synccli.c). */
void syncsess_set_answer_hook(struct syncsess *s, void (*fn)(void *ctx), void *ctx);

/* True when input is buffered (in the decoder, the decompressor or the
 * conn): the next syncsess_read() will make progress without waiting. */
bool syncsess_pending(const struct syncsess *s);

/* Switch both directions to zstd from here on.  Call after the COMPRESS
 * exchange: the client after reading the OK, the server after flushing
 * it.  -1 with ERR_INVALID if input is already buffered (the peer sent
 * bytes it should not have), ERR_PERM if compression is already on. */
int syncsess_compress_start(struct syncsess *s, int level, struct err *err);
bool syncsess_compressed(const struct syncsess *s);

/* Bytes on the wire (after compression, before TLS framing: conn's
 * counters) and plain bytes before compression. */
uint64_t syncsess_wire_in(const struct syncsess *s);
uint64_t syncsess_wire_out(const struct syncsess *s);
uint64_t syncsess_plain_in(const struct syncsess *s);
uint64_t syncsess_plain_out(const struct syncsess *s);

#endif
