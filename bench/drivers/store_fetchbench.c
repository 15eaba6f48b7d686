/*
 * store_fetchbench.c - measures the record reads behind IMAP FETCH
 * (FLAGS ENVELOPE BODYSTRUCTURE) on one mailbox (not installed).
 *
 *   store_fetchbench DIR [COUNT [CHUNK]]
 *
 * Creates a server root in DIR (which must not hold one), appends COUNT
 * (default 10000) multipart messages of about 4 KiB to a user's INBOX,
 * then reads every record's flags and strings three ways, each timed
 * best of three runs:
 *   get        store_record_get() per uid (one read transaction each)
 *   full       store_records_full() in chunks of CHUNK uids (default
 *              500), as imapd would call it, without the part tree
 *   full_parts the same with the part tree
 *   full_all   one store_records_full() call over 1:*
 * and prints one JSON object with microseconds per record.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "store/store.h"

struct fb_sum {
	uint64_t bytes;
	uint64_t n;
};

static int
fb_cb(void *ctx, const struct store_record_full *r)
{
	struct fb_sum *s = ctx;

	s->n++;
	s->bytes += r->rec.uid + strlen(r->keywords) + (r->envelope ? strlen(r->envelope) : 0) +
		(r->bodystructure ? strlen(r->bodystructure) : 0) + r->parts_len;
	return 0;
}

static double
fb_now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static char *
fb_message(long i)
{
	struct buf b = BUF_INIT;

	buf_printf(&b, "Return-Path: <sender@example.org>\r\n"
		"From: Sender Name <sender@example.org>\r\nTo: Bench User <bench@example.com>\r\n"
		"Cc: other@example.net, \"Third, Person\" <third@example.net>\r\n"
		"Subject: =?UTF-8?Q?benchmark_message_=C3=A9?= %ld\r\n"
		"Date: Mon, 2 Mar 2026 10:00:00 +0000\r\nMessage-ID: <%ld.fetchbench@example.org>\r\n"
		"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=\"b1\"\r\n\r\n"
		"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n", i, i);
	while (b.len < 2200)
		buf_puts(&b, "The quick brown fox jumps over the lazy dog.\r\n");
	buf_puts(&b, "--b1\r\nContent-Type: text/html; charset=utf-8\r\n"
		"Content-Transfer-Encoding: quoted-printable\r\n\r\n<p>");
	while (b.len < 4000)
		buf_puts(&b, "The quick brown fox jumps over the lazy dog.\r\n");
	buf_puts(&b, "</p>\r\n--b1--\r\n");
	return buf_steal(&b);
}

int
main(int argc, char **argv)
{
	struct store *st;
	struct store_user *u;
	struct store_mailbox inbox;
	struct err e;
	long count = 10000, chunk = 500;
	double best[4] = { 1e9, 1e9, 1e9, 1e9 };
	struct fb_sum sum[4];

	if (argc < 2) {
		fprintf(stderr, "usage: store_fetchbench DIR [COUNT [CHUNK]]\n");
		return 2;
	}
	log_init("store_fetchbench", LOG_DEST_STDERR);
	if (argc > 2)
		count = atol(argv[2]);
	if (argc > 3)
		chunk = atol(argv[3]);
	if (count <= 0 || chunk <= 0)
		return 2;
	if (store_create(argv[1], "master", &e) < 0 ||
	    (st = store_open(argv[1], NULL, &e)) == NULL ||
	    store_user_add(st, "bench", NULL, &e) < 0 ||
	    (u = store_user_open(st, "bench", &e)) == NULL ||
	    store_mailbox_get(u, "INBOX", &inbox, &e) < 0) {
		fprintf(stderr, "store_fetchbench: %s\n", e.msg);
		return 1;
	}
	for (long i = 0; i < count; i += 100) {
		struct store_append_msg m[100];
		char *d[100];
		long n = count - i < 100 ? count - i : 100;

		memset(m, 0, sizeof(m));
		for (long k = 0; k < n; k++) {
			d[k] = fb_message(i + k);
			m[k].data = d[k];
			m[k].len = strlen(d[k]);
			m[k].sysflags = (k % 3 == 0) ? STORE_FLAG_SEEN : 0;
			m[k].keywords = (k % 7 == 0) ? "$Important" : NULL;
		}
		if (store_append(u, inbox.uniqueid, m, (size_t)n, NULL, NULL, &e) < 0) {
			fprintf(stderr, "store_fetchbench: append: %s\n", e.msg);
			return 1;
		}
		for (long k = 0; k < n; k++)
			free(d[k]);
	}
	for (int run = 0; run < 3; run++) {
		double t0, t;

		/* get: what imapd does today, one call per message */
		memset(sum, 0, sizeof(sum));
		t0 = fb_now();
		for (long uid = 1; uid <= count; uid++) {
			struct store_record_full f;
			if (store_record_get(u, inbox.uniqueid, (uint32_t)uid, &f, &e) < 0) {
				fprintf(stderr, "store_fetchbench: get: %s\n", e.msg);
				return 1;
			}
			fb_cb(&sum[0], &f);
			store_record_full_free(&f);
		}
		t = fb_now() - t0;
		if (t < best[0])
			best[0] = t;
		/* full and full_parts: chunks of CHUNK uids */
		for (int w = 0; w < 2; w++) {
			t0 = fb_now();
			for (long lo = 1; lo <= count; lo += chunk) {
				struct store_range r = { (uint32_t)lo, (uint32_t)(lo + chunk - 1) };
				if (store_records_full(u, inbox.uniqueid, &r, 1, w == 1, fb_cb, &sum[1 + w],
					&e) < 0) {
					fprintf(stderr, "store_fetchbench: full: %s\n", e.msg);
					return 1;
				}
			}
			t = fb_now() - t0;
			if (t < best[1 + w])
				best[1 + w] = t;
		}
		/* full_all: 1:* in one call */
		t0 = fb_now();
		if (store_records_full(u, inbox.uniqueid, NULL, 0, false, fb_cb, &sum[3], &e) < 0) {
			fprintf(stderr, "store_fetchbench: full: %s\n", e.msg);
			return 1;
		}
		t = fb_now() - t0;
		if (t < best[3])
			best[3] = t;
		for (int k = 0; k < 4; k++) {
			if (sum[k].n != (uint64_t)count) {
				fprintf(stderr, "store_fetchbench: run %d way %d saw %llu records\n", run, k,
					(unsigned long long)sum[k].n);
				return 1;
			}
		}
	}
	printf("{\"records\": %ld, \"chunk\": %ld, \"us_per_record\": {\"get\": %.2f, \"full\": %.2f,"
		" \"full_parts\": %.2f, \"full_all\": %.2f}}\n", count, chunk, best[0] * 1e6 / (double)count,
		best[1] * 1e6 / (double)count, best[2] * 1e6 / (double)count,
		best[3] * 1e6 / (double)count);
	store_user_close(&u);
	store_close(&st);
	return 0;
}
