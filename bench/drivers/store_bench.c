/*
 * store_bench.c - the C half of bench/store_append (not installed).
 *
 *   store_bench ROOT USER COUNT SIZE INLINE_MAX [BATCH]
 *
 * Appends COUNT messages of SIZE bytes to USER's INBOX (BATCH messages
 * per store_append call, default 1), with store_opts.inline_max =
 * INLINE_MAX, and prints one JSON object: count, seconds, the store's
 * per-process counters (commits, WAL syncs led, commits that shared
 * another process's sync, blob and directory syncs).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/log.h"
#include "store/store.h"

int
main(int argc, char **argv)
{
	struct store_opts o;
	struct store *st;
	struct store_user *u;
	struct store_mailbox inbox;
	struct store_stats s;
	struct timespec t0, t1;
	struct err e;
	long count, size, batch = 1;
	struct buf body = BUF_INIT;
	struct store_append_msg *m;

	if (argc < 6) {
		fprintf(stderr, "usage: store_bench ROOT USER COUNT SIZE INLINE_MAX [BATCH]\n");
		return 2;
	}
	log_init("store_bench", LOG_DEST_STDERR);
	count = atol(argv[3]);
	size = atol(argv[4]);
	if (argc > 6)
		batch = atol(argv[6]);
	if (count <= 0 || size <= 0 || batch <= 0)
		return 2;
	store_opts_init(&o);
	o.inline_max = strtoull(argv[5], NULL, 10);
	st = store_open(argv[1], &o, &e);
	u = st ? store_user_open(st, argv[2], &e) : NULL;
	if (u == NULL || store_mailbox_get(u, "INBOX", &inbox, &e) < 0) {
		fprintf(stderr, "store_bench: %s\n", e.msg);
		return 1;
	}
	m = calloc((size_t)batch, sizeof(*m));
	char **bodies = calloc((size_t)batch, sizeof(char *));
	store_stats_reset();
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (long i = 0; i < count; i += batch) {
		long n = count - i < batch ? count - i : batch;
		for (long k = 0; k < n; k++) {
			buf_reset(&body);
			buf_printf(&body, "From: bench@example.org\r\nTo: %s@example.org\r\n"
				"Subject: bench %ld pid %ld\r\n\r\n", argv[2], i + k, (long)getpid());
			while (body.len < (size_t)size)
				buf_puts(&body, "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ+/\r\n");
			buf_truncate(&body, (size_t)size);
			free(bodies[k]);
			bodies[k] = buf_steal(&body);
			m[k].data = bodies[k];
			m[k].len = (size_t)size;
		}
		if (store_append(u, inbox.uniqueid, m, (size_t)n, NULL, NULL, &e) < 0) {
			fprintf(stderr, "store_bench: append: %s\n", e.msg);
			return 1;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	store_stats_get(&s);
	printf("{\"count\": %ld, \"seconds\": %.6f, \"commits\": %llu, \"wal_syncs\": %llu,"
		" \"shared_commits\": %llu, \"blob_syncs\": %llu, \"dir_syncs\": %llu,"
		" \"sqlite_syncs\": %llu}\n", count,
		(double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9,
		(unsigned long long)s.commits, (unsigned long long)s.wal_syncs,
		(unsigned long long)s.shared_commits, (unsigned long long)s.blob_syncs,
		(unsigned long long)s.dir_syncs, (unsigned long long)s.sqlite_syncs);
	for (long k = 0; k < batch; k++)
		free(bodies[k]);
	free(bodies);
	free(m);
	store_user_close(&u);
	store_close(&st);
	return 0;
}
