/*
 * store_crashdrv.c - test driver for the store's crash test
 * (tests/integration/test_store_crash.py).  Not installed.
 *
 *   store_crashdrv init ROOT USER
 *       create the server root (if needed) and the user
 *   store_crashdrv run ROOT USER OPS SEED
 *       OPS random operations on INBOX: appends of one message or a
 *       batch of 2-3 (sizes alternate between inline and file bodies)
 *       and expunges of earlier uids.  Before each operation it prints
 *       what it attempts, after each success what succeeded, flushing
 *       every line, so a SIGKILL (failpoint crash) leaves an exact
 *       history on stdout:
 *           TA <guid>...          attempting an append of these bodies
 *           A <uid> <guid>        append succeeded (durable)
 *           TE <uid>              attempting an expunge
 *           E <uid>               expunge succeeded
 *   store_crashdrv verify ROOT USER LOGFILE
 *       check the store against the history in LOGFILE: every A is
 *       present with its guid and a readable body whose SHA-1 matches,
 *       every E is a tombstone, no record holds a body never attempted,
 *       no tombstone was made by an expunge never attempted.  Then runs
 *       store_check and prints its report; exits 0 when the history
 *       holds (the report is judged by the caller), 1 otherwise.
 *   store_crashdrv check ROOT USER [repair]
 *       store_check, report on stdout; exit status = min(problems, 100).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/store.h"

static void
report_line(void *ctx, const char *line)
{
	(void)ctx;
	printf("%s\n", line);
}

static uint64_t rng;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint32_t)(rng >> 11);
}

static char *
make_body(uint64_t seed, int n, size_t size)
{
	struct buf b = BUF_INIT;

	buf_printf(&b, "From: crash@example.org\r\nTo: test@example.org\r\n"
		"Subject: crash test %llu/%d\r\nMessage-ID: <%llu.%d.%ld@crash>\r\n\r\n",
		(unsigned long long)seed, n, (unsigned long long)seed, n, (long)getpid());
	while (b.len < size)
		buf_printf(&b, "line %zu of message %d, seed %llu\r\n", b.len, n,
			(unsigned long long)seed);
	return buf_steal(&b);
}

static int
cmd_init(const char *root, const char *user)
{
	struct err e;
	struct store *st;
	char path[4096];

	snprintf(path, sizeof(path), "%s/db/users.db", root);
	if (access(path, F_OK) < 0 && store_create(root, "master", &e) < 0) {
		fprintf(stderr, "init: %s\n", e.msg);
		return 1;
	}
	st = store_open(root, NULL, &e);
	if (st == NULL) {
		fprintf(stderr, "open: %s\n", e.msg);
		return 1;
	}
	if (store_user_exists(st, user, &e) == 0 && store_user_add(st, user, "pw", &e) < 0) {
		fprintf(stderr, "user: %s\n", e.msg);
		store_close(&st);
		return 1;
	}
	store_close(&st);
	return 0;
}

static int
cmd_run(const char *root, const char *user, int ops, uint64_t seed)
{
	struct err e;
	struct store *st = store_open(root, NULL, &e);
	struct store_user *u = st ? store_user_open(st, user, &e) : NULL;
	struct store_mailbox inbox;
	uint32_t *uids = NULL;
	size_t nuids = 0;

	if (u == NULL || store_mailbox_get(u, "INBOX", &inbox, &e) < 0) {
		fprintf(stderr, "run: %s\n", e.msg);
		return 1;
	}
	rng = seed * 2654435761u + 1;
	setvbuf(stdout, NULL, _IOLBF, 0);
	for (int op = 0; op < ops; op++) {
		if (nuids > 0 && rnd() % 10 < 3) {
			size_t k = rnd() % nuids;
			struct store_range r = { uids[k], uids[k] };
			printf("TE %u\n", uids[k]);
			fflush(stdout);
			if (store_expunge(u, inbox.uniqueid, &r, 1, false, NULL, &e) < 0) {
				fprintf(stderr, "expunge: %s\n", e.msg);
				return 1;
			}
			printf("E %u\n", uids[k]);
			fflush(stdout);
			uids[k] = uids[--nuids];
		} else {
			size_t n = rnd() % 4 == 0 ? 2 + rnd() % 2 : 1;
			struct store_append_msg m[3];
			struct store_append_result res[3];
			char *bodies[3];
			char guid[STORE_GUID_LEN + 1];

			memset(m, 0, sizeof(m));
			printf("TA");
			for (size_t i = 0; i < n; i++) {
				/* alternate inline (2 KiB) and file (96 KiB) bodies */
				size_t size = (op + i) % 2 ? 96 * 1024 : 2048;
				bodies[i] = make_body(seed, op * 4 + (int)i, size);
				m[i].data = bodies[i];
				m[i].len = strlen(bodies[i]);
				m[i].sysflags = (rnd() % 2) ? STORE_FLAG_SEEN : 0;
				store_guid(m[i].data, m[i].len, guid);
				printf(" %s", guid);
			}
			printf("\n");
			fflush(stdout);
			if (store_append(u, inbox.uniqueid, m, n, res, NULL, &e) < 0) {
				fprintf(stderr, "append: %s\n", e.msg);
				return 1;
			}
			for (size_t i = 0; i < n; i++) {
				printf("A %u %s\n", res[i].uid, res[i].guid);
				uids = xreallocarray(uids, nuids + 1, sizeof(*uids));
				uids[nuids++] = res[i].uid;
				free(bodies[i]);
			}
			fflush(stdout);
		}
	}
	free(uids);
	store_user_close(&u);
	store_close(&st);
	return 0;
}

struct hist {
	char (*attempted)[STORE_GUID_LEN + 1];
	size_t natt;
	struct { uint32_t uid; char guid[STORE_GUID_LEN + 1]; bool expunged; } *acked;
	size_t nack;
	uint32_t *tried_exp;
	size_t ntried;
	struct store_user *u;
	const char *mbid;
	int bad;
	size_t seen;
};

static bool
hist_attempted(const struct hist *h, const char *guid)
{
	for (size_t i = 0; i < h->natt; i++)
		if (str_eq(h->attempted[i], guid))
			return true;
	return false;
}

static int
verify_rec(void *ctx, const struct store_record *r)
{
	struct hist *h = ctx;
	bool tried = false;

	h->seen++;
	if (!hist_attempted(h, r->guid)) {
		printf("FAIL uid %u holds body %s that was never appended\n", r->uid, r->guid);
		h->bad++;
	}
	if (r->expunged_modseq != 0) {
		bool acked_exp = false;
		for (size_t i = 0; i < h->nack; i++)
			if (h->acked[i].uid == r->uid && h->acked[i].expunged)
				acked_exp = true;
		for (size_t i = 0; i < h->ntried; i++)
			if (h->tried_exp[i] == r->uid)
				tried = true;
		if (!acked_exp && !tried) {
			printf("FAIL uid %u is expunged but no expunge was attempted\n", r->uid);
			h->bad++;
		}
	}
	return 0;
}

static int
cmd_verify(const char *root, const char *user, const char *logfile)
{
	struct err e;
	struct store *st = store_open(root, NULL, &e);
	struct store_user *u = st ? store_user_open(st, user, &e) : NULL;
	struct store_mailbox inbox;
	struct hist h;
	FILE *f;
	char line[4096];
	int problems;

	if (u == NULL || store_mailbox_get(u, "INBOX", &inbox, &e) < 0) {
		printf("FAIL open: %s\n", e.msg);
		return 1;
	}
	memset(&h, 0, sizeof(h));
	f = fopen(logfile, "r");
	if (f == NULL) {
		printf("FAIL cannot read %s\n", logfile);
		return 1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\n")] = '\0';
		if (str_has_prefix(line, "TA ")) {
			for (char *p = strtok(line + 3, " "); p; p = strtok(NULL, " ")) {
				h.attempted = xreallocarray(h.attempted, h.natt + 1, sizeof(*h.attempted));
				str_lcpy(h.attempted[h.natt++], p, STORE_GUID_LEN + 1);
			}
		} else if (str_has_prefix(line, "A ")) {
			unsigned uid;
			char g[64];
			if (sscanf(line, "A %u %63s", &uid, g) != 2)
				continue;
			h.acked = xreallocarray(h.acked, h.nack + 1, sizeof(*h.acked));
			h.acked[h.nack].uid = uid;
			str_lcpy(h.acked[h.nack].guid, g, sizeof(h.acked[0].guid));
			h.acked[h.nack].expunged = false;
			h.nack++;
		} else if (str_has_prefix(line, "TE ")) {
			unsigned uid;
			if (sscanf(line, "TE %u", &uid) == 1) {
				h.tried_exp = xreallocarray(h.tried_exp, h.ntried + 1, sizeof(*h.tried_exp));
				h.tried_exp[h.ntried++] = uid;
			}
		} else if (str_has_prefix(line, "E ")) {
			unsigned uid;
			if (sscanf(line, "E %u", &uid) == 1)
				for (size_t i = 0; i < h.nack; i++)
					if (h.acked[i].uid == uid)
						h.acked[i].expunged = true;
		}
	}
	fclose(f);
	/* every acknowledged append is there, with its body */
	for (size_t i = 0; i < h.nack; i++) {
		struct store_record_full rf;
		struct buf body = BUF_INIT;
		char g[STORE_GUID_LEN + 1];

		if (store_record_get(u, inbox.uniqueid, h.acked[i].uid, &rf, &e) < 0) {
			printf("FAIL acknowledged uid %u is missing: %s\n", h.acked[i].uid, e.msg);
			h.bad++;
			continue;
		}
		if (!str_eq(rf.rec.guid, h.acked[i].guid)) {
			printf("FAIL uid %u has guid %s, acknowledged %s\n", h.acked[i].uid, rf.rec.guid,
				h.acked[i].guid);
			h.bad++;
		}
		if (h.acked[i].expunged && rf.rec.expunged_modseq == 0) {
			printf("FAIL uid %u was expunged (acknowledged) but is live\n", h.acked[i].uid);
			h.bad++;
		}
		if (rf.rec.expunged_modseq == 0) {
			if (store_blob_read(u, rf.rec.guid, &body, &e) < 0) {
				printf("FAIL uid %u body unreadable: %s\n", h.acked[i].uid, e.msg);
				h.bad++;
			} else {
				store_guid(body.data ? body.data : "", body.len, g);
				if (!str_eq(g, rf.rec.guid)) {
					printf("FAIL uid %u body does not match its guid\n", h.acked[i].uid);
					h.bad++;
				}
			}
		}
		buf_free(&body);
		store_record_full_free(&rf);
	}
	h.u = u;
	h.mbid = inbox.uniqueid;
	if (store_records_since(u, inbox.uniqueid, 0, verify_rec, &h, &e) < 0) {
		printf("FAIL records: %s\n", e.msg);
		h.bad++;
	}
	store_user_close(&u);
	problems = store_check(st, user, false, report_line, NULL, &e);
	if (problems < 0) {
		printf("FAIL check: %s\n", e.msg);
		h.bad++;
	}
	printf("verified acked=%zu records=%zu bad=%d check_problems=%d\n", h.nack, h.seen, h.bad,
		problems);
	store_close(&st);
	free(h.attempted);
	free(h.acked);
	free(h.tried_exp);
	return h.bad ? 1 : 0;
}

static int
cmd_check(const char *root, const char *user, bool repair)
{
	struct err e;
	struct store *st = store_open(root, NULL, &e);
	int n;

	if (st == NULL) {
		fprintf(stderr, "%s\n", e.msg);
		return 100;
	}
	n = store_check(st, user, repair, report_line, NULL, &e);
	store_close(&st);
	if (n < 0) {
		fprintf(stderr, "%s\n", e.msg);
		return 100;
	}
	return n > 99 ? 99 : n;
}

int
main(int argc, char **argv)
{
	log_init("store_crashdrv", LOG_DEST_STDERR);
	if (failpoint_init() < 0)
		return 2;
	if (argc == 4 && str_eq(argv[1], "init"))
		return cmd_init(argv[2], argv[3]);
	if (argc == 6 && str_eq(argv[1], "run"))
		return cmd_run(argv[2], argv[3], atoi(argv[4]), strtoull(argv[5], NULL, 10));
	if (argc == 5 && str_eq(argv[1], "verify"))
		return cmd_verify(argv[2], argv[3], argv[4]);
	if ((argc == 4 || argc == 5) && str_eq(argv[1], "check"))
		return cmd_check(argv[2], argv[3], argc == 5 && str_eq(argv[4], "repair"));
	fprintf(stderr, "usage: store_crashdrv init|run|verify|check ROOT USER ...\n");
	return 2;
}
