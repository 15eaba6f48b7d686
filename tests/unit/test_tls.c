/* test_tls.c - unit tests for lib/tls.c and the TLS side of lib/conn.c:
 * self-signed certificates, handshakes over a socketpair (the client
 * verifying the server with its certificate as CA), verification
 * failures, TLS 1.2 minimum, STARTTLS discarding pipelined plaintext,
 * handshake timeouts and end of input without close_notify; the
 * certificate bundle castord hands to its children (lib/tlsbundle.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/err.h"
#include "lib/tls.h"
#include "lib/tlsbundle.h"

#include <sys/mman.h>

static char dir[64];
static char cert[128], key[128], cert2[128], key2[128];

static int
setup(void **state)
{
	struct err err = { 0 };

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/test_tls.XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	snprintf(cert2, sizeof(cert2), "%s/other.pem", dir);
	snprintf(key2, sizeof(key2), "%s/other.key", dir);
	if (tls_make_selfsigned(cert, key, "localhost", &err) < 0 ||
	    tls_make_selfsigned(cert2, key2, "mx.example.net", &err) < 0) {
		fprintf(stderr, "selfsigned: %s\n", err.msg);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a server running in a thread ------------------------------------- */

struct server {
	struct conn *c;
	struct tls_ctx *ctx;
	int rc;              /* conn_starttls result */
	struct err err;
	bool echo;           /* after the handshake: echo lines, answer literals */
	bool starttls_cmd;   /* first read one plaintext line (STARTTLS) */
	struct buf lines;    /* every line read, "|" separated */
	pthread_t tid;
};

static void *
server_main(void *arg)
{
	struct server *s = arg;
	const char *line;
	size_t len;
	struct err err = { 0 };

	if (s->starttls_cmd) {
		if (conn_read_line(s->c, 100, &line, &len, &err) != 1)
			return NULL;
		buf_append(&s->lines, line, len);
		buf_putc(&s->lines, '|');
		conn_puts(s->c, "a OK Begin TLS\r\n");
	}
	s->rc = conn_starttls(s->c, s->ctx, NULL, &s->err);
	if (s->rc < 0 || !s->echo)
		return NULL;
	for (;;) {
		unsigned long long n;
		int r = conn_read_line(s->c, 1000, &line, &len, &err);

		if (r <= 0) {
			buf_puts(&s->lines, r == 0 ? "EOF" : "ERR");
			break;
		}
		buf_append(&s->lines, line, len);
		buf_putc(&s->lines, '|');
		if (len > 2 && line[len - 1] == '}' && sscanf(strrchr(line, '{'), "{%llu}", &n) == 1) {
			struct buf lit = BUF_INIT;
			uint32_t sum = 0;
			size_t i;

			if (conn_read_exact(s->c, (size_t)n, &lit, &err) < 0)
				break;
			for (i = 0; i < lit.len; i++)
				sum = sum * 31 + (unsigned char)lit.data[i];
			conn_printf(s->c, "sum %u\r\n", sum);
			/* and send it back, as a FETCH would */
			conn_printf(s->c, "{%zu}\r\n", lit.len);
			conn_write(s->c, lit.data, lit.len);
			conn_puts(s->c, "\r\n");
			buf_free(&lit);
		} else {
			conn_puts(s->c, "got ");
			conn_write(s->c, line, len);
			conn_puts(s->c, "\r\n");
		}
		if (conn_flush(s->c, &err) < 0)
			break;
	}
	return NULL;
}

/* Start a server on one end of a socketpair; returns the client's fd. */
static int
server_start(struct server *s, struct tls_ctx *ctx, bool echo, bool starttls_cmd)
{
	int sv[2];

	memset(s, 0, sizeof(*s));
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	s->c = conn_new(sv[0], sv[0]);
	conn_set_read_timeout(s->c, 10000);
	conn_set_write_timeout(s->c, 10000);
	s->ctx = ctx;
	s->echo = echo;
	s->starttls_cmd = starttls_cmd;
	assert_int_equal(pthread_create(&s->tid, NULL, server_main, s), 0);
	return sv[1];
}

static void
server_join(struct server *s)
{
	pthread_join(s->tid, NULL);
	conn_free(&s->c);
}

static struct tls_ctx *
server_ctx(void)
{
	struct err err = { 0 };
	struct tls_ctx *ctx = tls_server_ctx_new(cert, key, &err);

	if (ctx == NULL)
		fail_msg("server ctx: %s", err.msg);
	return ctx;
}

static struct tls_ctx *
client_ctx(bool verify, const char *ca)
{
	struct err err = { 0 };
	struct tls_ctx *ctx = tls_client_ctx_new(verify, ca, &err);

	if (ctx == NULL)
		fail_msg("client ctx: %s", err.msg);
	return ctx;
}

static void
expect_line(struct conn *c, const char *want)
{
	const char *line = NULL;
	size_t len = 0;
	struct err err = { 0 };
	int r = conn_read_line(c, 100000, &line, &len, &err);

	if (r != 1)
		fail_msg("expected \"%s\", got r=%d err=%s", want, r, err.msg);
	if (len != strlen(want) || memcmp(line, want, len) != 0)
		fail_msg("expected \"%s\", got \"%.*s\"", want, (int)len, line);
}

/* ---- tests ---------------------------------------------------------------- */

static void
test_selfsigned_files(void **state)
{
	struct stat st;
	FILE *f;
	X509 *x;
	GENERAL_NAMES *san;
	char cn[100];
	int i, n, have_ip4 = 0, have_ip6 = 0, have_dns = 0, days = 0, secs = 0;

	(void)state;
	assert_int_equal(stat(key, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(stat(cert, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0644);
	f = fopen(cert, "r");
	assert_non_null(f);
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	assert_int_equal(X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName,
	    cn, sizeof(cn)), 9);
	assert_string_equal(cn, "localhost");
	assert_int_equal(X509_NAME_cmp(X509_get_subject_name(x), X509_get_issuer_name(x)), 0);
	san = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(san);
	n = sk_GENERAL_NAME_num(san);
	for (i = 0; i < n; i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(san, i);
		if (g->type == GEN_IPADD && g->d.ip->length == 4 &&
		    memcmp(g->d.ip->data, "\x7f\0\0\x01", 4) == 0)
			have_ip4 = 1;
		if (g->type == GEN_IPADD && g->d.ip->length == 16 &&
		    memcmp(g->d.ip->data, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\x01", 16) == 0)
			have_ip6 = 1;
		if (g->type == GEN_DNS && ASN1_STRING_length(g->d.dNSName) == 9 &&
		    memcmp(ASN1_STRING_get0_data(g->d.dNSName), "localhost", 9) == 0)
			have_dns = 1;
	}
	GENERAL_NAMES_free(san);
	assert_true(have_ip4 && have_ip6 && have_dns);
	assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)), 1);
	assert_true(days >= 3650 && days <= 3660);
	assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
	X509_free(x);
	/* no temporary files left behind */
	{
		char cmd[200];
		snprintf(cmd, sizeof(cmd), "ls %s | grep -q tmp", dir);
		assert_int_not_equal(system(cmd), 0);
	}
}

static void
test_selfsigned_bad_args(void **state)
{
	struct err err = { 0 };
	char c2[160], k2[160];

	(void)state;
	snprintf(c2, sizeof(c2), "%s/x.pem", dir);
	snprintf(k2, sizeof(k2), "%s/x.key", dir);
	assert_int_equal(tls_make_selfsigned(c2, k2, "", &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	assert_int_equal(tls_make_selfsigned(c2, k2, "a,b", &err), -1);
	assert_int_equal(tls_make_selfsigned(c2, "/nonexistent/dir/k", "localhost", &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	assert_int_equal(access(c2, F_OK), -1);
}

/* Handshake, verified by the client with the self-signed cert as CA; lines
 * and a literal larger than every buffer both ways; close_notify at the end. */
static void
test_handshake_echo(void **state)
{
	struct tls_ctx *sctx = server_ctx(), *cctx = client_ctx(true, cert);
	struct server s;
	struct conn *c;
	struct err err = { 0 };
	struct buf lit = BUF_INIT, back = BUF_INIT;
	uint32_t sum = 0;
	size_t i, n = 1500000;
	char want[64];

	(void)state;
	{
		int fd = server_start(&s, sctx, true, false);
		c = conn_new(fd, fd);
	}
	conn_set_read_timeout(c, 10000);
	conn_set_write_timeout(c, 10000);
	assert_false(conn_is_tls(c));
	assert_string_equal(conn_tls_desc(c), "");
	if (conn_starttls(c, cctx, "localhost", &err) < 0)
		fail_msg("client handshake: %s", err.msg);
	assert_true(conn_is_tls(c));
	assert_true(strncmp(conn_tls_desc(c), "TLSv1.3 ", 8) == 0);
	conn_puts(c, "a1 NOOP\r\nb2 CAPABILITY\r\n");
	assert_int_equal(conn_flush(c, &err), 0);
	expect_line(c, "got a1 NOOP");
	expect_line(c, "got b2 CAPABILITY");
	for (i = 0; i < n; i++) {
		char ch = (char)(i * 7 % 256);
		buf_putc(&lit, ch);
		sum = sum * 31 + (unsigned char)ch;
	}
	conn_printf(c, "c3 APPEND {%zu}\r\n", n);
	conn_write(c, lit.data, lit.len);
	assert_int_equal(conn_flush(c, &err), 0);
	snprintf(want, sizeof(want), "sum %u", sum);
	expect_line(c, want);
	snprintf(want, sizeof(want), "{%zu}", n);
	expect_line(c, want);
	assert_int_equal(conn_read_exact(c, n, &back, &err), 0);
	assert_memory_equal(back.data, lit.data, n);
	expect_line(c, "");
	/* TLS adds record overhead: the wire carries more than the plaintext */
	assert_true(conn_bytes_out(c) > n + 40);
	conn_free(&c); /* sends close_notify */
	server_join(&s);
	assert_int_equal(s.rc, 0);
	buf_putc(&s.lines, '\0');
	assert_non_null(strstr(s.lines.data, "a1 NOOP|b2 CAPABILITY|c3 APPEND {1500000}|EOF"));
	buf_free(&s.lines);
	buf_free(&lit);
	buf_free(&back);
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
	assert_null(sctx);
}

/* Run one client handshake against a fresh server; returns its result. */
static int
try_client(struct tls_ctx *sctx, struct tls_ctx *cctx, const char *host, struct err *err,
	struct server *s_r)
{
	int fd = server_start(s_r, sctx, false, false);
	struct conn *c = conn_new(fd, fd);
	int r;

	conn_set_read_timeout(c, 10000);
	r = conn_starttls(c, cctx, host, err);
	conn_free(&c);
	server_join(s_r);
	return r;
}

static void
test_verify_names(void **state)
{
	struct tls_ctx *sctx = server_ctx(), *cctx = client_ctx(true, cert);
	struct server s;
	struct err err = { 0 };

	(void)state;
	assert_int_equal(try_client(sctx, cctx, "127.0.0.1", &err, &s), 0);
	assert_int_equal(try_client(sctx, cctx, "::1", &err, &s), 0);
	assert_int_equal(try_client(sctx, cctx, "LOCALHOST", &err, &s), 0);
	assert_int_equal(try_client(sctx, cctx, "mail.example.org", &err, &s), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	assert_non_null(strstr(err.msg, "hostname mismatch"));
	assert_int_equal(s.rc, -1); /* the server saw the client's alert */
	assert_int_equal(try_client(sctx, cctx, "10.1.2.3", &err, &s), -1);
	assert_non_null(strstr(err.msg, "IP address mismatch"));
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
}

static void
test_verify_wrong_ca(void **state)
{
	struct tls_ctx *sctx = server_ctx(), *cctx = client_ctx(true, cert2);
	struct tls_ctx *nctx = client_ctx(false, NULL);
	struct server s;
	struct err err = { 0 };

	(void)state;
	assert_int_equal(try_client(sctx, cctx, "localhost", &err, &s), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	assert_non_null(strstr(err.msg, "certificate verify failed"));
	assert_non_null(strstr(err.msg, "self-signed certificate"));
	/* without verification the same server is accepted */
	assert_int_equal(try_client(sctx, nctx, "localhost", &err, &s), 0);
	assert_int_equal(s.rc, 0);
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
	tls_ctx_free(&nctx);
}

static void
test_tls12_minimum(void **state)
{
	struct tls_ctx *sctx = server_ctx(), *cctx = client_ctx(true, cert);
	SSL_CTX *raw = tls_ctx_ssl_ctx(cctx);
	struct server s;
	struct err err = { 0 };
	int fd;
	struct conn *c;

	(void)state;
	/* a TLS 1.1 client is refused by the server */
	SSL_CTX_set_min_proto_version(raw, TLS1_VERSION);
	SSL_CTX_set_max_proto_version(raw, TLS1_1_VERSION);
	SSL_CTX_set_security_level(raw, 0);
	SSL_CTX_set_cipher_list(raw, "ALL:@SECLEVEL=0");
	assert_int_equal(try_client(sctx, cctx, "localhost", &err, &s), -1);
	assert_int_equal(s.rc, -1);
	assert_int_equal(s.err.kind, ERR_INVALID);
	assert_non_null(strstr(s.err.msg, "unsupported protocol"));
	/* a TLS 1.2 client gets an ECDHE AEAD suite */
	SSL_CTX_set_max_proto_version(raw, TLS1_2_VERSION);
	SSL_CTX_set_security_level(raw, 1);
	fd = server_start(&s, sctx, false, false);
	c = conn_new(fd, fd);
	assert_int_equal(conn_starttls(c, cctx, "localhost", &err), 0);
	/* the client offers everything (ALL): the server picks from its list */
	assert_true(strncmp(conn_tls_desc(c), "TLSv1.2 ECDHE-ECDSA-", 20) == 0);
	assert_non_null(strstr(conn_tls_desc(c), "GCM"));
	conn_free(&c);
	server_join(&s);
	/* a client offering only non-AEAD TLS 1.2 suites is refused */
	SSL_CTX_set_cipher_list(raw, "ECDHE-ECDSA-AES128-SHA256:AES128-SHA");
	assert_int_equal(try_client(sctx, cctx, "localhost", &err, &s), -1);
	assert_int_equal(s.rc, -1);
	assert_non_null(strstr(s.err.msg, "no shared cipher"));
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
}

/* RFC 3207 4.2 / CVE-2011-0411: plaintext pipelined behind STARTTLS must
 * not be executed as if it had arrived over TLS. */
static void
test_starttls_discards_pipelined(void **state)
{
	struct tls_ctx *sctx = server_ctx(), *cctx = client_ctx(true, cert);
	struct server s;
	struct err err = { 0 };
	struct conn *c;
	int fd;

	(void)state;
	fd = server_start(&s, sctx, true, true);
	c = conn_new(fd, fd);
	conn_set_read_timeout(c, 10000);
	/* the attacker's injection travels in the same packet as STARTTLS */
	conn_puts(c, "a STARTTLS\r\nb INJECTED\r\n");
	assert_int_equal(conn_flush(c, &err), 0);
	expect_line(c, "a OK Begin TLS");
	if (conn_starttls(c, cctx, "localhost", &err) < 0)
		fail_msg("client handshake: %s", err.msg);
	conn_puts(c, "c NOOP\r\n");
	assert_int_equal(conn_flush(c, &err), 0);
	expect_line(c, "got c NOOP");
	conn_free(&c);
	server_join(&s);
	assert_int_equal(s.rc, 0);
	buf_putc(&s.lines, '\0');
	assert_string_equal(s.lines.data, "a STARTTLS|c NOOP|EOF");
	buf_free(&s.lines);
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
}

/* The client side discards a server's pipelined plaintext the same way. */
static void
test_starttls_client_discards(void **state)
{
	struct tls_ctx *sctx = server_ctx(), *cctx = client_ctx(true, cert);
	struct server s;
	struct err err = { 0 };
	struct conn *c, *srv;
	int sv[2];
	const char *line;
	size_t len;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c = conn_new(sv[1], sv[1]);
	srv = conn_new(sv[0], sv[0]);
	conn_puts(srv, "220 go ahead\r\n250 FORGED\r\n");
	assert_int_equal(conn_flush(srv, &err), 0);
	assert_int_equal(conn_read_line(c, 100, &line, &len, &err), 1);
	assert_int_equal(conn_pending_input(c), 12);
	memset(&s, 0, sizeof(s));
	s.c = srv;
	s.ctx = sctx;
	s.echo = true;
	assert_int_equal(pthread_create(&s.tid, NULL, server_main, &s), 0);
	assert_int_equal(conn_starttls(c, cctx, "localhost", &err), 0);
	assert_int_equal(conn_pending_input(c), 0);
	conn_puts(c, "x\r\n");
	assert_int_equal(conn_flush(c, &err), 0);
	expect_line(c, "got x");
	conn_free(&c);
	server_join(&s);
	buf_free(&s.lines);
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
}

static void
test_handshake_timeout_and_close(void **state)
{
	struct tls_ctx *sctx = server_ctx();
	struct err err = { 0 };
	struct conn *c;
	int sv[2];
	int64_t t0;

	(void)state;
	/* the client never speaks */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	c = conn_new(sv[0], sv[0]);
	conn_set_read_timeout(c, 150);
	t0 = now_ms();
	assert_int_equal(conn_starttls(c, sctx, NULL, &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	assert_non_null(strstr(err.msg, "timeout"));
	assert_true(now_ms() - t0 >= 140 && now_ms() - t0 < 5000);
	/* the conn is dead afterwards */
	conn_puts(c, "x\r\n");
	assert_int_equal(conn_flush(c, &err), -1);
	assert_int_equal(conn_starttls(c, sctx, NULL, &err), -1);
	conn_free(&c);
	close(sv[1]);

	/* the client hangs up */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	c = conn_new(sv[0], sv[0]);
	assert_int_equal(conn_starttls(c, sctx, NULL, &err), -1);
	assert_int_equal(err.kind, ERR_TEMP);
	assert_non_null(strstr(err.msg, "closed"));
	conn_free(&c);

	/* the client speaks plaintext instead */
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	assert_int_equal(write(sv[1], "a LOGIN user pass\r\n", 19), 19);
	c = conn_new(sv[0], sv[0]);
	assert_int_equal(conn_starttls(c, sctx, NULL, &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	conn_free(&c);
	close(sv[1]);
	tls_ctx_free(&sctx);
}

/* Mail clients often drop TCP without close_notify: that is end of input,
 * not an error. */
static void
test_eof_without_close_notify(void **state)
{
	struct tls_ctx *sctx = server_ctx(), *cctx = client_ctx(true, cert);
	struct server s;
	struct err err = { 0 };
	struct conn *c;
	int fd;

	(void)state;
	fd = server_start(&s, sctx, true, false);
	c = conn_new(fd, fd);
	assert_int_equal(conn_starttls(c, cctx, "localhost", &err), 0);
	conn_puts(c, "one\r\ntwo\r\n");
	assert_int_equal(conn_flush(c, &err), 0);
	expect_line(c, "got one");
	expect_line(c, "got two");
	shutdown(fd, SHUT_RDWR); /* no close_notify can go out now */
	conn_free(&c);
	server_join(&s);
	buf_putc(&s.lines, '\0');
	assert_string_equal(s.lines.data, "one|two|EOF");
	buf_free(&s.lines);
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
}

/* Pipelined commands inside TLS: decrypted input counts as pending and
 * makes conn_wait_readable return at once. */
static void
test_tls_pending_input(void **state)
{
	struct tls_ctx *sctx = server_ctx(), *cctx = client_ctx(false, NULL);
	struct err err = { 0 };
	struct conn *c, *srv;
	int sv[2];
	struct server s;
	const char *line;
	size_t len;

	(void)state;
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	srv = conn_new(sv[0], sv[0]);
	c = conn_new(sv[1], sv[1]);
	memset(&s, 0, sizeof(s));
	s.c = srv;
	s.ctx = sctx;
	assert_int_equal(pthread_create(&s.tid, NULL, server_main, &s), 0);
	assert_int_equal(conn_starttls(c, cctx, NULL, &err), 0);
	pthread_join(s.tid, NULL);
	assert_int_equal(s.rc, 0);
	conn_puts(c, "p1 NOOP\r\np2 NOOP\r\n");
	assert_int_equal(conn_flush(c, &err), 0);
	assert_int_equal(conn_wait_readable(srv, 5000, -1, &err), CONN_READY_INPUT);
	assert_int_equal(conn_read_line(srv, 100, &line, &len, &err), 1);
	assert_true(conn_pending_input(srv) == 9);
	assert_int_equal(conn_wait_readable(srv, 0, -1, &err), CONN_READY_INPUT);
	assert_int_equal(conn_read_line(srv, 100, &line, &len, &err), 1);
	assert_int_equal(len, 7);
	assert_int_equal(conn_pending_input(srv), 0);
	assert_int_equal(conn_wait_readable(srv, 50, -1, &err), 0);
	conn_free(&c);
	conn_free(&srv);
	tls_ctx_free(&sctx);
	tls_ctx_free(&cctx);
}

static void
test_ctx_errors(void **state)
{
	struct err err = { 0 };
	struct tls_ctx *ctx;
	char junk[160];
	FILE *f;

	(void)state;
	assert_null(tls_server_ctx_new("/nonexistent/cert.pem", key, &err));
	assert_int_equal(err.kind, ERR_NOTFOUND);
	assert_non_null(strstr(err.msg, "/nonexistent/cert.pem"));
	assert_null(tls_server_ctx_new(cert, "/nonexistent/key.pem", &err));
	assert_int_equal(err.kind, ERR_NOTFOUND);
	assert_null(tls_server_ctx_new(cert, key2, &err));
	assert_int_equal(err.kind, ERR_INVALID);
	assert_non_null(strstr(err.msg, "key values mismatch"));
	assert_non_null(strstr(err.msg, key2));
	snprintf(junk, sizeof(junk), "%s/junk.pem", dir);
	f = fopen(junk, "w");
	assert_non_null(f);
	fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
	fclose(f);
	assert_null(tls_server_ctx_new(junk, key, &err));
	assert_int_equal(err.kind, ERR_INVALID);
	assert_null(tls_client_ctx_new(true, "/nonexistent/ca.pem", &err));
	assert_int_equal(err.kind, ERR_NOTFOUND);
	assert_null(tls_client_ctx_new(true, junk, &err));
	assert_int_equal(err.kind, ERR_INVALID);
	ctx = tls_client_ctx_new(true, NULL, &err); /* system store */
	assert_non_null(ctx);
	assert_false(tls_ctx_is_server(ctx));
	assert_true(tls_ctx_verifies(ctx));
	assert_int_equal(tls_ctx_set_ciphers(ctx, "NOSUCHCIPHER", &err), -1);
	assert_int_equal(err.kind, ERR_INVALID);
	assert_int_equal(tls_ctx_set_ciphers(ctx, "ECDHE-ECDSA-AES256-GCM-SHA384", &err), 0);
	tls_ctx_free(&ctx);
	tls_ctx_free(&ctx); /* NULL is fine */
}

/* A memfd holding text, as if castord had sent it. */
static int
memfd_with(const char *text, size_t len)
{
	int fd = memfd_create("test", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, text, len), (ssize_t)len);
	return fd;
}

static void
test_bundle_roundtrip(void **state)
{
	struct err err = { 0 };
	char sni[128], path[192], cmd[512];
	struct tls_server_conf tc = { .cert_file = cert, .key_file = key, .sni_dir = sni };
	struct tlsbundle *b, *b2;
	struct tls_ctx *ctx;
	int fd;

	(void)state;
	snprintf(sni, sizeof(sni), "%s/sni", dir);
	snprintf(cmd, sizeof(cmd), "mkdir -p %s && cp %s %s/MX.example.net.pem && cp %s %s/MX.example.net.key"
		 " && echo hello > %s/README", sni, cert2, sni, key2, sni, sni);
	assert_int_equal(system(cmd), 0);
	b = tlsbundle_read(&tc, &err);
	assert_non_null(b);
	assert_int_equal(b->n, 2);
	assert_string_equal(b->pairs[0].name, "");
	assert_string_equal(b->pairs[1].name, "mx.example.net");
	fd = tlsbundle_memfd(b, &err);
	assert_true(fd >= 0);
	/* sealed: nobody writes into it afterwards */
	assert_true(write(fd, "x", 1) < 0);
	b2 = tlsbundle_from_fd(fd, &err);
	assert_non_null(b2);
	assert_int_equal(b2->n, 2);
	assert_int_equal(b2->pairs[1].key_len, b->pairs[1].key_len);
	assert_memory_equal(b2->pairs[1].key, b->pairs[1].key, b->pairs[1].key_len);
	ctx = tls_server_ctx_from_bundle(b2, &tc, &err);
	assert_non_null(ctx);
	assert_int_equal(tls_ctx_sni_count(ctx), 1);
	tls_ctx_free(&ctx);
	tlsbundle_free(&b2);
	tlsbundle_free(&b);
	close(fd);
	/* an SNI file whose key does not match fails the whole set, naming it */
	snprintf(path, sizeof(path), "%s/MX.example.net.key", sni);
	snprintf(cmd, sizeof(cmd), "cp %s %s", key, path);
	assert_int_equal(system(cmd), 0);
	assert_null(tls_server_ctx_new_conf(&tc, &err));
	assert_non_null(strstr(err.msg, path));
	tc.min_version = "1.4";
	assert_null(tls_server_ctx_new_conf(&tc, &err));
	assert_non_null(strstr(err.msg, "tls_min_version"));
	snprintf(cmd, sizeof(cmd), "rm -rf %s", sni);
	assert_int_equal(system(cmd), 0);
}

static void
test_bundle_malformed(void **state)
{
	static const char *const bad[] = {
		"",
		"castor-tls-bundle 2\n",
		"castor-tls-bundle 1\n",
		"castor-tls-bundle 1\nend\n",                       /* no pair */
		"castor-tls-bundle 1\npair 0 1 1 1 5\nabcd",        /* short record */
		"castor-tls-bundle 1\npair 0 1 1 1 99999999999999999999\nabcde",
		"castor-tls-bundle 1\npair 0 1 1 1 18446744073709551615\nabcde",
		"castor-tls-bundle 1\npair x\n",
		"castor-tls-bundle 1\npair 0 1 1 1 1\nabcdend\ntrailing",
		"castor-tls-bundle 1\npair 0 1 1 1 1\nabcd",
	};
	struct err err = { 0 };

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int fd = memfd_with(bad[i], strlen(bad[i]));

		assert_null(tlsbundle_from_fd(fd, &err));
		close(fd);
	}
	/* the smallest good one */
	{
		const char *ok = "castor-tls-bundle 1\npair 0 1 1 1 1\nabcdend\n";
		int fd = memfd_with(ok, strlen(ok));
		struct tlsbundle *b = tlsbundle_from_fd(fd, &err);

		assert_non_null(b);
		assert_string_equal(b->pairs[0].cert_path, "a");
		assert_string_equal(b->pairs[0].key, "d");
		tlsbundle_free(&b);
		close(fd);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_selfsigned_files),
		cmocka_unit_test(test_selfsigned_bad_args),
		cmocka_unit_test(test_handshake_echo),
		cmocka_unit_test(test_verify_names),
		cmocka_unit_test(test_verify_wrong_ca),
		cmocka_unit_test(test_tls12_minimum),
		cmocka_unit_test(test_starttls_discards_pipelined),
		cmocka_unit_test(test_starttls_client_discards),
		cmocka_unit_test(test_handshake_timeout_and_close),
		cmocka_unit_test(test_eof_without_close_notify),
		cmocka_unit_test(test_tls_pending_input),
		cmocka_unit_test(test_ctx_errors),
		cmocka_unit_test(test_bundle_roundtrip),
		cmocka_unit_test(test_bundle_malformed),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
