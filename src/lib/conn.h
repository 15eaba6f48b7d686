/*
 * conn.h - buffered bidirectional byte stream over a socket or fd pair,
 * with a bounded line reader, literal reading and optional TLS.
 *
 * Every protocol service (IMAP, POP3, LMTP) and the sync channel talk to
 * their peer through a struct conn.  It wraps a read fd and a write fd
 * (the same socket twice, or stdin/stdout so a service can run under
 * inetd or in a test) and provides:
 *
 *   - a line reader with a hard length limit that survives an overlong
 *     line (the rest of it is read and thrown away, so the session can
 *     answer BAD and carry on);
 *   - exact-size reads for IMAP-style literals {n}, appended to a buf in
 *     chunks or handed out piece by piece for streaming to a file, and a
 *     skip for refused literals;
 *   - buffered output with a write timeout;
 *   - a wait that also wakes on an extra fd (the signal self-pipe), for
 *     IDLE and for the main-loop checkpoint;
 *   - STARTTLS / implicit TLS through OpenSSL (see tls.h), discarding any
 *     plaintext the peer pipelined behind the STARTTLS command;
 *   - DEFLATE compression (IMAP COMPRESS, RFC 4978) above TLS.
 *
 * Timeouts are "no progress" timeouts: a read (write) fails with ERR_TEMP
 * when no byte at all arrived (left) for the configured time while the
 * call was waiting.  A negative timeout waits forever (the default).
 * A read deadline is absolute: bytes arriving do not push it back, so a
 * peer sending one byte at a time cannot hold a read open past it (the
 * services set one per phase: login, each command, see docs/security.md).
 *
 * The conn owns its fds: conn_new() makes them non-blocking and
 * conn_free() closes them.  Writes never raise SIGPIPE on sockets
 * (MSG_NOSIGNAL); a process that writes to pipes should ignore SIGPIPE
 * (the service skeleton does).
 *
 * Errors: functions that can fail take a struct err and return -1 with
 * ERR_TEMP for I/O trouble, timeouts and a peer that went away, ERR_TOOBIG
 * for an overlong line, ERR_INVALID for a TLS handshake the peer botched.
 * After an I/O error or a timeout the direction that failed is dead:
 * further reads (or flushes) fail at once with the same message.
 *
 * Failpoints (failpoint.h): "conn.read" fails the next read from the fd
 * (or TLS) with ERR_TEMP, "conn.write" the next send; "N*error" picks
 * the N-th one, to test a protocol's handling of a peer lost mid-command.
 *
 * Not thread-safe: one conn belongs to one thread at a time.
 */
#ifndef CASTOR_CONN_H
#define CASTOR_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/buf.h"
#include "lib/err.h"

struct conn;
struct tls_ctx;

/* Default size of a read from the kernel; the input buffer grows past it
 * only to hold one line of up to the caller's maximum. */
#define CONN_READ_CHUNK 16384
/* conn_write() flushes by itself once this much output is buffered. */
#define CONN_OUT_HIGH 65536

/* Wrap rfd (read) and wfd (write); they may be equal.  Takes ownership:
 * both are set O_NONBLOCK and closed by conn_free().  Never fails. */
struct conn *conn_new(int rfd, int wfd);
/* Close the fds and free everything; *c becomes NULL (NULL is fine).
 * Buffered output that was not flushed is dropped.  On a TLS stream a
 * close_notify is sent if the socket takes it without blocking. */
void conn_free(struct conn **c);

/* Timeouts in milliseconds; negative = wait forever (default). */
void conn_set_read_timeout(struct conn *c, int ms);
void conn_set_write_timeout(struct conn *c, int ms);
/* Absolute deadline for reading, in clock_mono_ms() time (<= 0: none,
 * the default).  Every read, and the read side of a TLS handshake, fails
 * with ERR_TEMP "read deadline passed" once it is past, however steadily
 * bytes arrive; the read side is then dead and
 * conn_read_deadline_passed() is true.  The read timeout still applies
 * while the deadline is further away. */
void conn_set_read_deadline(struct conn *c, int64_t at_ms);
bool conn_read_deadline_passed(const struct conn *c);
/* The earlier of two deadlines (<= 0 meaning none; 0 if both are none). */
int64_t conn_deadline_min(int64_t a, int64_t b);
/* Milliseconds from now until at_ms: 0 if past, -1 if at_ms <= 0 (none);
 * a poll() timeout. */
int conn_ms_until(int64_t at_ms);
/* Size of one read from the kernel (default CONN_READ_CHUNK, minimum 1).
 * Only tests and fuzzers need a different value. */
void conn_set_read_chunk(struct conn *c, size_t n);

int conn_rfd(const struct conn *c);
int conn_wfd(const struct conn *c);

/*
 * Read one line.  Returns
 *    1  a line: *line_r, *len_r hold it without its LF and without a CR
 *       right before that LF (a bare LF also ends a line).  The line may
 *       contain NUL bytes (len is the truth); it is NUL-terminated for
 *       convenience.  Valid until the next call that reads from c
 *       (conn_read_line/_exact/_some, conn_skip, conn_wait_readable,
 *       conn_starttls).
 *    0  clean end of input before the first byte of a line.
 *   -1  error:
 *       ERR_TOOBIG: the line (without CRLF) is longer than max bytes.  The
 *           rest of it has been read and discarded up to and including
 *           its LF, so the next call reads the next line.  *line_r, *len_r
 *           hold its first max bytes (for the caller to find a tag in).
 *           If the input ended inside the overlong line the next call
 *           returns 0.
 *       ERR_TEMP: I/O error, read timeout, or input ended in the middle
 *           of a line (the partial line is dropped; the next call
 *           returns 0).
 *           (An I/O error while discarding is reported as ERR_TEMP.)
 * max must be at least 1.  The input buffer stays below 2 * (max + read
 * chunk) bytes whatever the peer sends.
 */
int conn_read_line(struct conn *c, size_t max, const char **line_r, size_t *len_r, struct err *err);

/* Read exactly n bytes (a literal) and append them to out, in chunks; no
 * other buffer of size n is needed.  0 on success; -1 with ERR_TEMP on
 * I/O error, timeout, or end of input before n bytes (out then holds
 * whatever part arrived; the caller drops it). */
int conn_read_exact(struct conn *c, size_t n, struct buf *out, struct err *err);

/* Hand out the next 1..max buffered input bytes, reading (and waiting)
 * if none are buffered; for streaming a large literal to a file without
 * holding it in memory.  Returns 1 with *p_r, *len_r (valid until the next
 * reading call), 0 at end of input, -1 with ERR_TEMP on error/timeout. */
int conn_read_some(struct conn *c, size_t max, const char **p_r, size_t *len_r, struct err *err);

/* Read and discard exactly n bytes (a literal the server refused).
 * 0 on success, -1 with ERR_TEMP as conn_read_exact. */
int conn_skip(struct conn *c, uint64_t n, struct err *err);

/* Number of input bytes already received and not yet consumed
 * (including decrypted bytes OpenSSL holds).  Non-zero means the peer
 * pipelined: a reader will not block for them. */
size_t conn_pending_input(const struct conn *c);

#define CONN_READY_INPUT 1 /* a read would not block (data, EOF or error) */
#define CONN_READY_EXTRA 2 /* extra_fd is readable (or hung up) */

/* Wait up to timeout_ms (negative: forever) until input is available on c
 * or extra_fd (pass -1 for none) is readable.  Buffered input counts as
 * available at once, so does end of input.  Returns a mask of
 * CONN_READY_INPUT | CONN_READY_EXTRA (both may be set), 0 on timeout,
 * -1 with ERR_TEMP if poll() fails.  An interrupting signal makes it
 * return 0 early (the caller's loop checks its signal flags), unless a
 * self-pipe passed as extra_fd reports it first.  On TLS, readable raw
 * bytes count as input even if they turn out to be only part of a
 * record; the following read then waits (read timeout) for the rest. */
int conn_wait_readable(struct conn *c, int timeout_ms, int extra_fd, struct err *err);

/* Buffer output.  When CONN_OUT_HIGH bytes are buffered they are flushed
 * (waiting up to the write timeout); large writes go out directly without
 * a copy.  These never fail: a write error is remembered, later output is
 * dropped, and the next conn_flush() reports it. */
void conn_write(struct conn *c, const void *p, size_t n);
void conn_puts(struct conn *c, const char *s);
void conn_printf(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Send everything buffered; handles partial writes and EAGAIN by waiting
 * for the fd (write timeout).  0 when all is on its way to the peer; -1
 * with ERR_TEMP on error, timeout or an earlier remembered write error. */
int conn_flush(struct conn *c, struct err *err);
/* Bytes of output buffered and not yet sent. */
size_t conn_pending_output(const struct conn *c);

/* Bytes read from / written to the fds ("on the wire": with TLS this
 * counts records, headers and handshakes, not plaintext). */
uint64_t conn_bytes_in(const struct conn *c);
uint64_t conn_bytes_out(const struct conn *c);
/* Bytes of memory the conn holds for its buffers (not counting OpenSSL's
 * per-connection state): for memory-per-connection reports and tests. */
size_t conn_memory(const struct conn *c);

/*
 * Switch the stream to TLS and run the handshake; the role (server or
 * client) comes from ctx (tls_server_ctx_new / tls_client_ctx_new).
 * Pending output is flushed first (so "OK Begin TLS" goes out in the
 * clear) and any input already buffered is DISCARDED: plaintext pipelined
 * behind STARTTLS must never be read as if it had come through TLS
 * (RFC 3207 section 4.2, CVE-2011-0411).  Discarded bytes are logged.
 * peer_host (client side, may be NULL) is sent as SNI when it is a name
 * and, when ctx verifies, must match the certificate (DNS name or IP
 * address literal).  Server side: pass NULL.
 * Returns 0 when the handshake completed; -1 with ERR_TEMP (I/O, timeout,
 * peer closed) or ERR_INVALID (handshake or verification failure, with
 * OpenSSL's reason).  After a failure the conn is unusable.  Calling it
 * on a conn that is already TLS fails with ERR_INVALID.
 */
int conn_starttls(struct conn *c, struct tls_ctx *ctx, const char *peer_host, struct err *err);
bool conn_is_tls(const struct conn *c);
/* "TLSv1.3 TLS_AES_256_GCM_SHA384" once TLS is up, else "" (for logs:
 * log_info("login user=%s tls=%s", u, log_q(conn_tls_desc(c)))). */
const char *conn_tls_desc(const struct conn *c);

/*
 * Switch both directions to raw DEFLATE (RFC 1951, zlib windowBits -15),
 * above TLS when TLS is on.  Pending output is flushed uncompressed
 * first (the tagged OK of COMPRESS); input already buffered came after
 * the command and is taken as compressed.  From then on every send ends
 * with a sync flush (Z_SYNC_FLUSH), so each conn_flush() delivers whole
 * responses.  A corrupt input stream is a read error (ERR_TEMP); the end
 * of the peer's deflate stream is end of input.  TLS cannot start after
 * this.  0, or -1 with ERR_INVALID when compression is already on,
 * ERR_TEMP on a flush failure.
 */
int conn_compress_start(struct conn *c, struct err *err);
bool conn_is_compressed(const struct conn *c);

#endif
