/*
 * fuzz_syncsess.c - libFuzzer target for a whole replica-side sync
 * session (issue 20): the input is the byte stream a master sends to
 * syncd after logging in, read through the real transport (syncsess.c:
 * frame decoder, "+ go" for synchronising literals, COMPRESS switching
 * the rest of the stream to zstd) and answered by the real command state
 * machine (syncapply.c: HELLO and fencing, GET, RESERVE / UPLOAD groups,
 * APPLY, PROMOTE, LOGOUT) on a real store, in the order syncd.c's loop
 * uses: answer what is buffered, make the answers final
 * (syncapply_sync) whenever the input runs dry, stop on LOGOUT / BYE.
 *
 * Unlike fuzz_syncapply (which keeps one store for ever), every input
 * starts from the same state: a store made once as a template ("replica",
 * a sync credential, user alice) is copied afresh into a work directory
 * on /dev/shm (tmpfs: no fsync cost) before each run.
 *
 * The input is cut into bursts at each "\n\0" (the LF stays, the NUL
 * goes): a burst reaches syncd's pipe only once the session has answered
 * everything before it, as a client that waits for answers would send it
 * (COMPRESS needs this: the compressed bytes must arrive after the OK).
 * A burst that ends inside a frame stalls the session, which gives up
 * after its read timeout (1 ms here), as syncd does after its own.  The
 * answers go to /dev/null (to stderr with CASTOR_FUZZ_ECHO set).
 *
 * Before the input: "L AUTHENTICATE PLAIN" with the known credential
 * (the password is configured, as sync_password would be, so no hash is
 * computed per input).  The corpus (fuzz/corpus/syncsess/) holds whole
 * sessions: HELLO, GET USER, RESERVE, UPLOAD, APPLY ..., LOGOUT.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/buf.h"
#include "lib/conn.h"
#include "lib/log.h"
#include "lib/sasl.h"
#include "store/store.h"
#include "sync/syncapply.h"
#include "sync/syncproto.h"
#include "sync/syncsess.h"

#define FUZZ_PW "fuzz-sync-pw"

static char top[256], tmpl[256], work[256];

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Remove the tree at path (files and directories; no symlinks are made). */
static void
rm_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;

	if (d == NULL) {
		(void)unlink(path);
		return;
	}
	while ((de = readdir(d)) != NULL) {
		char sub[512];
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		if (de->d_type == DT_DIR)
			rm_tree(sub);
		else
			(void)unlink(sub);
	}
	closedir(d);
	(void)rmdir(path);
}

/* Copy the tree at from into to (regular files and directories). */
static void
copy_tree(const char *from, const char *to)
{
	DIR *d = opendir(from);
	struct dirent *de;

	if (d == NULL || mkdir(to, 0700) < 0)
		abort();
	while ((de = readdir(d)) != NULL) {
		char a[512], b[512];
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		snprintf(a, sizeof(a), "%s/%s", from, de->d_name);
		snprintf(b, sizeof(b), "%s/%s", to, de->d_name);
		if (de->d_type == DT_DIR) {
			copy_tree(a, b);
		} else if (de->d_type == DT_REG) {
			int in = open(a, O_RDONLY), out = open(b, O_WRONLY | O_CREAT | O_EXCL, 0600);
			char chunk[65536];
			ssize_t n;
			if (in < 0 || out < 0)
				abort();
			while ((n = read(in, chunk, sizeof(chunk))) > 0)
				if (write(out, chunk, (size_t)n) != n)
					abort();
			close(in);
			close(out);
		}
	}
	closedir(d);
}

/* At exit: leave nothing behind in /dev/shm. */
static void
cleanup(void)
{
	rm_tree(work);
	rm_tree(top);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	struct store *st;
	struct err err;

	(void)argc;
	(void)argv;
	log_set_level(LOG_LVL_FATAL);
	snprintf(top, sizeof(top), "%s/castor-fuzz-syncsess-XXXXXX", base);
	if (mkdtemp(top) == NULL)
		abort();
	snprintf(work, sizeof(work), "%s.work", top);
	snprintf(tmpl, sizeof(tmpl), "%s/root", top);
	atexit(cleanup);
	if (store_create(tmpl, "replica", &err) < 0)
		abort();
	st = store_open(tmpl, NULL, &err);
	if (st == NULL || store_user_add(st, "alice", NULL, &err) < 0)
		abort();
	store_close(&st);
	return 0;
}

/* The client: the rest of the input, and the write end of syncd's pipe. */
struct feeder {
	const uint8_t *p;
	size_t n;
	int wfd;
};

/* Send the next non-empty burst, or close the pipe when none is left. */
static void
feed_next(struct feeder *f)
{
	while (f->n > 0 && f->wfd >= 0) {
		const uint8_t *sep = memmem(f->p, f->n, "\n\0", 2);
		size_t len = sep != NULL ? (size_t)(sep - f->p) + 1 : f->n;
		size_t skip = sep != NULL ? len + 1 : len;

		/* the pipe holds 1 MB; a larger burst is cut short */
		if (len > 0 && write(f->wfd, f->p, len) < 0)
			break;
		f->p += skip;
		f->n -= skip;
		if (len > 0)
			return;
	}
	if (f->wfd >= 0)
		close(f->wfd);
	f->wfd = -1;
}

/* syncd.c's loop without the service skeleton: no SIGQUIT, no idle wait,
 * no STARTTLS (not offered: no TLS context). */
static void
session(struct syncsess *s, struct syncapply *a, struct feeder *f)
{
	struct err err;

	for (;;) {
		struct syncproto_value *frame = NULL;
		enum syncapply_action act;
		int rc;

		if (!syncsess_pending(s)) {
			syncapply_sync(a, syncsess_out(s));
			if (syncsess_flush(s, &err) < 0)
				return;
			feed_next(f);
		}
		rc = syncsess_read(s, &frame, &err);
		if (rc == 0)
			break;
		if (rc < 0) {
			if (err.kind == ERR_INVALID || err.kind == ERR_TOOBIG || err.kind == ERR_CORRUPT)
				syncapply_protocol_error(a, &err, syncsess_out(s));
			else
				syncapply_sync(a, syncsess_out(s));
			break;
		}
		act = syncapply_frame(a, frame, syncsess_out(s));
		syncproto_value_free(&frame);
		if (act == SYNCAPPLY_CLOSE || act == SYNCAPPLY_STARTTLS)
			break;
		if (act == SYNCAPPLY_COMPRESS) {
			syncapply_sync(a, syncsess_out(s));
			if (syncsess_flush(s, &err) < 0 || syncsess_compress_start(s, 3, &err) < 0)
				break;
		}
	}
	syncapply_sync(a, syncsess_out(s));
	(void)syncsess_flush(s, &err);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct syncapply_opts o;
	struct syncproto_limits lim;
	struct syncapply *a;
	struct syncsess *s;
	struct store *st;
	struct buf pre = BUF_INIT;
	struct feeder f = { data, size, -1 };
	struct err err;
	int pfd[2], out;

	rm_tree(work);
	copy_tree(tmpl, work);
	st = store_open(work, NULL, &err);
	if (st == NULL)
		abort();
	store_set_sync_apply(st, true);

	buf_puts(&pre, "L AUTHENTICATE PLAIN ");
	sasl_plain_encode(&pre, NULL, "sync", FUZZ_PW);
	buf_puts(&pre, "\r\n");
	/* CASTOR_FUZZ_ECHO=1: the answers on stderr (to check a seed) */
	out = getenv("CASTOR_FUZZ_ECHO") != NULL ? dup(2) : open("/dev/null", O_WRONLY);
	if (out < 0 || pipe2(pfd, O_NONBLOCK) < 0)
		abort();
	(void)fcntl(pfd[1], F_SETPIPE_SZ, 1 << 20);
	if (write(pfd[1], pre.data, pre.len) != (ssize_t)pre.len)
		abort();
	f.wfd = pfd[1];
	buf_free(&pre);

	/* smaller limits than a real syncd so a literal cannot ask for 256 MB */
	syncproto_limits_default(&lim);
	lim.max_literal = 1u << 20;
	lim.max_frame = 2u << 20;
	memset(&o, 0, sizeof(o));
	o.servername = "fuzz";
	o.authname = "sync";
	o.password = FUZZ_PW;
	o.auth_allowed = true;
	o.compress_allowed = true;
	o.limits = &lim;
	s = syncsess_new(conn_new(pfd[0], out), true, &lim);
	conn_set_read_timeout(syncsess_conn(s), 1);
	a = syncapply_new(st, &o);
	syncapply_greeting(a, syncsess_out(s));
	session(s, a, &f);
	if (f.wfd >= 0)
		close(f.wfd);
	syncapply_free(&a);
	syncsess_free(&s);
	store_close(&st);
	return 0;
}
