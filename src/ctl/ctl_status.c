/*
 * ctl_status.c - castorctl status: what a server is doing about
 * replication, for operators (text) and machines (--json).
 *
 *     castorctl status [--json] [CHAN...]
 *
 * Server part: role and epoch (users.db), whether castord runs (its
 * pidfile is locked), the end of the sync log, the semisync-degraded
 * flag, the last failed log append, and a failover in progress
 * (<root>/run/failover.state, ctl_failover.c).
 *
 * Per channel of `sync_channels`: the rolling client's STATUS file
 * (<root>/run/sync-<chan>.status, syncstat.h) gives connected or not,
 * state, cursor, records and bytes behind, the age of the oldest
 * unreplicated change, the last error and the conflict counters (the file
 * may lag by a second; updated_ms says when it was written).  When no
 * client is alive (no file, or the pid in it is gone) the figures are
 * computed here from the durable cursor
 * (<root>/sync/cursor/<chan>) and the log instead ("source": "cursor"):
 * bytes behind exactly, records behind and the oldest change's age by
 * reading the log from the cursor (at most CTL_STATUS_SCAN_MAX records;
 * more is shown as a lower bound).
 *
 * Damaged users (docs/store.md): the users the last process to open them
 * found damaged (users.damaged), with the reason; `castorctl check --all`
 * looks at every user.
 *
 * Liveness: the STATUS file says when the replica last answered
 * (last_ack_ms) and after how long without an answer the client counts
 * the channel dead (dead_after_ms, sync_heartbeat_timeout).  A channel
 * whose last answer is older than that is shown "not live (silent)", and
 * a STATUS file older than that (or CTL_STATUS_STALE_MS, whichever is
 * more) is "stale": the client is stuck, and its figures are old.
 *
 * Parked users (<root>/sync/parked/<chan>, syncpark.h): each with the
 * reason, since when, and when it is retried.
 *
 * Exit status: 0; 1 when a channel is fenced, silent, has an error newer than
 * its last success, is disconnected with records behind, has parked
 * users, or a user is damaged (so a cron job can alert on it); the usual codes for
 * configuration errors.
 */
#include "ctl/ctl.h"

#include "ctl/ctl_failover.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/cursor.h"
#include "sync/syncchan.h"
#include "sync/synchook.h"
#include "sync/synclog.h"
#include "sync/syncpark.h"
#include "sync/syncstat.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CTL_STATUS_SCAN_MAX 1000000u
#define CTL_STATUS_STALE_MS 5000u   /* the client writes its file about once a second */

static const char *const ctl_status_conflicts[] = {
	"guid", "uid_above", "modseq_ahead", "uidvalidity", "name_clash", "deleted_on_replica",
	"replica_only_record", "replica_only_mailbox", "replica_only_user", "flags",
};

static const char *const ctl_status_counters[] = {
	"batches", "users", "mailboxes", "records", "uploads", "upload_bytes", "deletes",
	"renames", "repairs", "errors", "wire_in", "wire_out",
};

/* key=value pairs of one STATUS file */
struct ctl_kv {
	char **keys, **values;
	size_t n;
};

static void
ctl_kv_add(void *ctx, const char *key, const char *value)
{
	struct ctl_kv *kv = ctx;

	kv->keys = xreallocarray(kv->keys, kv->n + 1, sizeof(char *));
	kv->values = xreallocarray(kv->values, kv->n + 1, sizeof(char *));
	kv->keys[kv->n] = xstrdup(key);
	kv->values[kv->n] = xstrdup(value);
	kv->n++;
}

static const char *
ctl_kv_get(const struct ctl_kv *kv, const char *key)
{
	size_t i;

	for (i = kv->n; i-- > 0;)
		if (str_eq(kv->keys[i], key))
			return kv->values[i];
	return NULL;
}

static uint64_t
ctl_kv_u64(const struct ctl_kv *kv, const char *key)
{
	const char *v = ctl_kv_get(kv, key);
	uint64_t n = 0;

	if (v == NULL || str_to_u64(v, &n) < 0)
		return 0;
	return n;
}

static void
ctl_kv_free(struct ctl_kv *kv)
{
	size_t i;

	for (i = 0; i < kv->n; i++) {
		free(kv->keys[i]);
		free(kv->values[i]);
	}
	free(kv->keys);
	free(kv->values);
	memset(kv, 0, sizeof(*kv));
}

static bool
ctl_status_pid_alive(uint64_t pid)
{
	char path[64], stat[512], *rp;
	FILE *f;
	size_t n;

	if (pid == 0 || pid > INT32_MAX)
		return false;
	if (kill((pid_t)pid, 0) < 0 && errno != EPERM)
		return false;
	/* a zombie (killed, not yet reaped) is not alive */
	snprintf(path, sizeof(path), "/proc/%llu/stat", (unsigned long long)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return true;
	n = fread(stat, 1, sizeof(stat) - 1, f);
	fclose(f);
	stat[n] = '\0';
	rp = strrchr(stat, ')');
	return rp == NULL || rp[1] == '\0' || rp[2] != 'Z';
}

/* JSON string (UTF-8 passed through, control characters escaped). */
static void
ctl_json_str(struct buf *b, const char *s)
{
	buf_putc(b, '"');
	for (; s != NULL && *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			buf_printf(b, "\\%c", ch);
		else if (ch < 0x20)
			buf_printf(b, "\\u%04x", ch);
		else
			buf_putc(b, (char)ch);
	}
	buf_putc(b, '"');
}

static void
ctl_json_key(struct buf *b, bool *first, const char *key)
{
	if (!*first)
		buf_putc(b, ',');
	*first = false;
	ctl_json_str(b, key);
	buf_putc(b, ':');
}

/* The figures of one channel, from the client's file or the cursor. */
struct ctl_chan_status {
	char name[CURSOR_CHANNEL_MAX + 1];
	char host[256];
	unsigned port;
	bool configured;            /* syncchan_load worked */
	bool client_alive;
	bool from_client;           /* figures from the STATUS file */
	uint64_t client_pid;
	char state[32];
	bool connected;
	char cursor[48], cursor_saved[48], log_end[48];
	bool detached;
	uint64_t bytes_behind, records_behind;
	bool records_lower_bound;
	uint64_t oldest_ms;         /* 0: caught up */
	uint64_t updated_ms, state_since_ms;
	uint64_t last_ack_ms, dead_after_ms;
	bool stale;                 /* the STATUS file is old: its client is stuck */
	bool silent;                /* connected, but no answer for dead_after_ms */
	char last_error[512];
	uint64_t last_error_ms, last_ae_ms;
	uint64_t conflicts;
	uint64_t resolved[3];        /* renumbered, replaced, mailboxes */
	uint64_t conflict[sizeof(ctl_status_conflicts) / sizeof(ctl_status_conflicts[0])];
	uint64_t counter[sizeof(ctl_status_counters) / sizeof(ctl_status_counters[0])];
	struct syncpark park;        /* parked users (freed by the caller) */
	char park_error[256];        /* the parked-users file did not read */
};

/* Ages judged now: a live client whose file stopped changing, a
 * connection whose replica stopped answering. */
static void
ctl_status_liveness(const struct ctl_kv *kv, struct ctl_chan_status *cs)
{
	uint64_t now = clock_wall_ms(), stale_ms;

	cs->last_ack_ms = ctl_kv_u64(kv, "last_ack_ms");
	cs->dead_after_ms = ctl_kv_u64(kv, "dead_after_ms");
	stale_ms = cs->dead_after_ms > CTL_STATUS_STALE_MS ? cs->dead_after_ms : CTL_STATUS_STALE_MS;
	cs->stale = cs->updated_ms != 0 && now > cs->updated_ms && now - cs->updated_ms > stale_ms;
	cs->silent = cs->connected && cs->dead_after_ms != 0 &&
	    (cs->last_ack_ms == 0 || (now > cs->last_ack_ms && now - cs->last_ack_ms > cs->dead_after_ms));
}

/* Records after pos and the time of the first (bounded scan). */
static void
ctl_status_scan(const char *root, const struct cursor *cur, struct ctl_chan_status *cs)
{
	struct synclog_reader *rd;
	struct synclog_record recs[256];
	struct err err;
	size_t n;

	rd = synclog_reader_open(root, &cur->pos, cur->log_id, &err);
	if (rd == NULL)
		return;
	synclog_reader_set_torn_grace(rd, 0);
	while (cs->records_behind < CTL_STATUS_SCAN_MAX) {
		if (synclog_reader_next(rd, recs, sizeof(recs) / sizeof(recs[0]), 1u << 20, &n, &err) < 0 ||
		    n == 0)
			break;
		if (cs->oldest_ms == 0)
			cs->oldest_ms = recs[0].time_ms;
		cs->records_behind += n;
	}
	if (cs->records_behind >= CTL_STATUS_SCAN_MAX)
		cs->records_lower_bound = true;
	synclog_reader_close(&rd);
}

/* The figures a live client wrote in its STATUS file. */
static void
ctl_status_from_client(const struct ctl_kv *kv, struct ctl_chan_status *cs)
{
	const char *v;
	size_t i;

	cs->from_client = true;
	str_lcpy(cs->state, (v = ctl_kv_get(kv, "state")) ? v : "", sizeof(cs->state));
	cs->connected = ctl_kv_u64(kv, "connected") != 0 && cs->client_alive;
	str_lcpy(cs->cursor, (v = ctl_kv_get(kv, "cursor")) ? v : "", sizeof(cs->cursor));
	str_lcpy(cs->cursor_saved, (v = ctl_kv_get(kv, "cursor_saved")) ? v : "",
	    sizeof(cs->cursor_saved));
	str_lcpy(cs->log_end, (v = ctl_kv_get(kv, "log_end")) ? v : "", sizeof(cs->log_end));
	cs->detached = ctl_kv_u64(kv, "detached") != 0;
	cs->bytes_behind = ctl_kv_u64(kv, "bytes_behind");
	cs->records_behind = ctl_kv_u64(kv, "records_behind");
	cs->oldest_ms = ctl_kv_u64(kv, "oldest_unreplicated_ms");
	cs->state_since_ms = ctl_kv_u64(kv, "state_since_ms");
	ctl_status_liveness(kv, cs);
	if ((v = ctl_kv_get(kv, "last_error")) != NULL && v[0] != '\0')
		str_lcpy(cs->last_error, v, sizeof(cs->last_error));
	cs->last_error_ms = ctl_kv_u64(kv, "last_error_ms");
	cs->last_ae_ms = ctl_kv_u64(kv, "last_anti_entropy_ms");
	cs->conflicts = ctl_kv_u64(kv, "conflicts");
	cs->resolved[0] = ctl_kv_u64(kv, "resolved_renumbered");
	cs->resolved[1] = ctl_kv_u64(kv, "resolved_replaced");
	cs->resolved[2] = ctl_kv_u64(kv, "resolved_mailboxes");
	for (i = 0; i < sizeof(ctl_status_conflicts) / sizeof(ctl_status_conflicts[0]); i++) {
		char key[64];
		snprintf(key, sizeof(key), "conflict_%s", ctl_status_conflicts[i]);
		cs->conflict[i] = ctl_kv_u64(kv, key);
	}
	for (i = 0; i < sizeof(ctl_status_counters) / sizeof(ctl_status_counters[0]); i++)
		cs->counter[i] = ctl_kv_u64(kv, ctl_status_counters[i]);
}

/* No client alive: the durable cursor and the log say how far behind,
 * a dead client's file (kv, maybe empty) its last error. */
static void
ctl_status_from_cursor(const char *root, const char *name, const struct ctl_kv *kv,
    struct ctl_chan_status *cs)
{
	struct cursor cur;
	struct synclog_pos end;
	struct err err;
	int rc;

	str_lcpy(cs->state, cs->client_pid ? "not-running" : "never-ran", sizeof(cs->state));
	if (kv->n > 0) {
		const char *v = ctl_kv_get(kv, "last_error");
		if (v != NULL && v[0] != '\0')
			str_lcpy(cs->last_error, v, sizeof(cs->last_error));
		cs->last_error_ms = ctl_kv_u64(kv, "last_error_ms");
		cs->conflicts = ctl_kv_u64(kv, "conflicts");
	}
	memset(&cur, 0, sizeof(cur));
	rc = cursor_load(root, name, &cur, &err);
	if (rc == 1) {
		syncstat_pos_format(&cur.pos, cs->cursor, sizeof(cs->cursor));
		str_lcpy(cs->cursor_saved, cs->cursor, sizeof(cs->cursor_saved));
		cs->detached = (cur.flags & CURSOR_DETACHED) != 0;
	} else {
		str_lcpy(cs->cursor, "none", sizeof(cs->cursor));
		str_lcpy(cs->cursor_saved, "none", sizeof(cs->cursor_saved));
		memset(&cur, 0, sizeof(cur));
	}
	if (synclog_end(root, &end, &err) == 0)
		syncstat_pos_format(&end, cs->log_end, sizeof(cs->log_end));
	if (synclog_bytes_behind(root, &cur.pos, &cs->bytes_behind, &err) < 0)
		cs->bytes_behind = 0;
	if (cs->bytes_behind > 0)
		ctl_status_scan(root, &cur, cs);
}

/* One channel's figures: its configuration, then a live client's file or
 * the cursor, then its parked users. */
static void
ctl_status_channel(const struct conf *conf, const char *root, const char *name,
    struct ctl_chan_status *cs)
{
	struct syncchan ch;
	struct ctl_kv kv = { 0 };
	struct err err;

	memset(cs, 0, sizeof(*cs));
	str_lcpy(cs->name, name, sizeof(cs->name));
	memset(&ch, 0, sizeof(ch));
	if (syncchan_load(conf, name, &ch, &err) == 0) {
		cs->configured = true;
		str_lcpy(cs->host, ch.host, sizeof(cs->host));
		cs->port = ch.port;
		syncchan_free(&ch);
	} else {
		str_lcpy(cs->last_error, err.msg, sizeof(cs->last_error));
	}
	if (syncstat_read_kv(root, name, ctl_kv_add, &kv, &err) == 0) {
		cs->client_pid = ctl_kv_u64(&kv, "pid");
		cs->updated_ms = ctl_kv_u64(&kv, "updated_ms");
		cs->client_alive = ctl_status_pid_alive(cs->client_pid);
	}
	/* a live client's figures; once it is gone, the durable cursor's */
	if (kv.n > 0 && cs->client_alive)
		ctl_status_from_client(&kv, cs);
	if (!cs->from_client)
		ctl_status_from_cursor(root, name, &kv, cs);
	ctl_kv_free(&kv);
	if (syncpark_load(root, name, &cs->park, &err) < 0)
		str_lcpy(cs->park_error, err.msg, sizeof(cs->park_error));
}

/* Does this channel deserve an operator's attention? */
static bool
ctl_status_bad(const struct ctl_chan_status *cs, bool master)
{
	if (str_eq(cs->state, "fenced"))
		return true;
	if (cs->park.n > 0 || cs->park_error[0])
		return true;
	if (!master)
		return false;
	if (!cs->configured)
		return true;
	if (cs->from_client && (cs->stale || cs->silent))
		return true;
	return !cs->connected && cs->records_behind > 0;
}

static void
ctl_status_age(uint64_t now, uint64_t then, char *out, size_t size)
{
	uint64_t d;

	if (then == 0) {
		str_lcpy(out, "-", size);
		return;
	}
	d = now > then ? now - then : 0;
	if (d < 10000)
		snprintf(out, size, "%" PRIu64 " ms", d);
	else if (d < 3600 * 1000)
		snprintf(out, size, "%" PRIu64 " s", d / 1000);
	else
		snprintf(out, size, "%" PRIu64 " h %" PRIu64 " min", d / 3600000, d / 60000 % 60);
}

/* What this server receives: one run/sync-in-<CHAN>.status per channel a
 * master feeds it through syncd (syncd.c).  JSON: objects of an array the
 * caller opened; text: one paragraph each.  Returns how many there were. */
static size_t
ctl_status_incoming(const char *root, bool json, uint64_t now, struct buf *b)
{
	struct buf dir = BUF_INIT;
	DIR *d;
	struct dirent *e;
	size_t n = 0;

	buf_printf(&dir, "%s/run", root);
	d = opendir(buf_cstr(&dir));
	buf_free(&dir);
	while (d != NULL && (e = readdir(d)) != NULL) {
		size_t len = strlen(e->d_name);
		char name[128], since[64], change[64], upd[64];
		struct ctl_kv kv;
		struct err err;
		bool alive, f = true;

		if (!str_has_prefix(e->d_name, "sync-in-") || len < 16 || len - 12 >= sizeof(name) ||
		    strcmp(e->d_name + len - 7, ".status") != 0)
			continue;
		memcpy(name, e->d_name + 5, len - 12);      /* "in-CHAN" */
		name[len - 12] = '\0';
		memset(&kv, 0, sizeof(kv));
		if (syncstat_read_kv(root, name, ctl_kv_add, &kv, &err) < 0)
			continue;
		alive = str_eq(ctl_kv_get(&kv, "state") ? ctl_kv_get(&kv, "state") : "", "connected") &&
			ctl_status_pid_alive(ctl_kv_u64(&kv, "pid"));
		if (json) {
			buf_puts(b, n > 0 ? ",{" : "{");
			ctl_json_key(b, &f, "channel"); ctl_json_str(b, name + 3);
			ctl_json_key(b, &f, "master"); ctl_json_str(b, ctl_kv_get(&kv, "master"));
			ctl_json_key(b, &f, "peer"); ctl_json_str(b, ctl_kv_get(&kv, "peer"));
			ctl_json_key(b, &f, "epoch"); buf_printf(b, "%" PRIu64, ctl_kv_u64(&kv, "epoch"));
			ctl_json_key(b, &f, "connected"); buf_puts(b, alive ? "true" : "false");
			static const char *const nums[] = { "pid", "session_start_ms", "last_change_ms",
				"applied", "records", "uploads", "refused", "conflicts", "updated_ms" };
			for (size_t k = 0; k < sizeof(nums) / sizeof(nums[0]); k++) {
				ctl_json_key(b, &f, nums[k]);
				buf_printf(b, "%" PRIu64, ctl_kv_u64(&kv, nums[k]));
			}
			buf_putc(b, '}');
		} else {
			ctl_status_age(now, ctl_kv_u64(&kv, "session_start_ms"), since, sizeof(since));
			ctl_status_age(now, ctl_kv_u64(&kv, "last_change_ms"), change, sizeof(change));
			ctl_status_age(now, ctl_kv_u64(&kv, "updated_ms"), upd, sizeof(upd));
			buf_printf(b, "incoming %s <- %s (peer %s)  epoch %" PRIu64 "\n", name + 3,
				ctl_kv_get(&kv, "master") ? ctl_kv_get(&kv, "master") : "?",
				ctl_kv_get(&kv, "peer") ? ctl_kv_get(&kv, "peer") : "?", ctl_kv_u64(&kv, "epoch"));
			buf_printf(b, "  %s (syncd pid %" PRIu64 "), session started %s ago;"
				" last change applied %s%s\n", alive ? "connected" : "NOT connected",
				ctl_kv_u64(&kv, "pid"), since, change, ctl_kv_u64(&kv, "last_change_ms") ? " ago" : "");
			buf_printf(b, "  received: %" PRIu64 " applies, %" PRIu64 " records, %" PRIu64
				" uploads; refused %" PRIu64 ", conflicts %" PRIu64 "; status file %s old\n",
				ctl_kv_u64(&kv, "applied"), ctl_kv_u64(&kv, "records"), ctl_kv_u64(&kv, "uploads"),
				ctl_kv_u64(&kv, "refused"), ctl_kv_u64(&kv, "conflicts"), upd);
		}
		ctl_kv_free(&kv);
		n++;
	}
	if (d != NULL)
		closedir(d);
	return n;
}

struct ctl_damaged {
	struct buf *b;
	bool json;
	bool tsv;             /* status --damaged: "USER<TAB>REASON" lines, for castord */
	size_t n;
};

static int
ctl_status_damaged_one(void *ctx, const char *user, const char *why)
{
	struct ctl_damaged *d = ctx;

	if (d->tsv) {
		buf_printf(d->b, "%s\t%s\n", user, why);
	} else if (d->json) {
		bool f = true;
		if (d->n > 0)
			buf_putc(d->b, ',');
		buf_putc(d->b, '{');
		ctl_json_key(d->b, &f, "user"); ctl_json_str(d->b, user);
		ctl_json_key(d->b, &f, "reason"); ctl_json_str(d->b, why);
		buf_putc(d->b, '}');
	} else {
		buf_printf(d->b, "  DAMAGED user %s: %s (castorctl restore-from CHAN %s, or castorctl"
		    " user reset %s)\n", user, why, user, user);
	}
	d->n++;
	return 0;
}

/* The damaged users (text lines, or the members of a JSON list); 1 when
 * there is any. */
static int
ctl_status_damaged(struct ctl *c, bool json, struct buf *b)
{
	struct ctl_damaged d = { b, json, false, 0 };
	struct err err;

	if (store_user_damaged_list(c->store, ctl_status_damaged_one, &d, &err) < 0)
		log_warn("status: damaged users unreadable error=%s", log_q(err.msg));
	return d.n > 0;
}

/* "  last answer from the replica 800 ms ago; status file 300 ms old" with
 * the verdicts an operator acts on. */
static void
ctl_status_liveness_text(struct buf *b, const struct ctl_chan_status *cs, uint64_t now)
{
	char ack[64], upd[64];

	ctl_status_age(now, cs->last_ack_ms, ack, sizeof(ack));
	ctl_status_age(now, cs->updated_ms, upd, sizeof(upd));
	buf_printf(b, "\n  last answer from the replica: %s%s", ack, cs->last_ack_ms ? " ago" : " (none)");
	if (cs->silent)
		buf_printf(b, " (silent: not live, dead after %" PRIu64 " ms)", cs->dead_after_ms);
	buf_printf(b, "; status file %s old", upd);
	if (cs->stale)
		buf_puts(b, " (STALE: the sync-client is stuck; these figures are old)");
}

/* The server's own facts, gathered once for both output forms. */
struct ctl_status_server {
	const char *root;
	const char *role;
	uint64_t epoch;
	bool master;
	struct ctl_server_info si;
	char endtxt[48];            /* the end of the sync log, or "none" */
	bool degraded;              /* the semisync-degraded flag is set */
	uint64_t append_failed_ms;  /* the last failed log append, 0: none */
	char failed_when[64];
	struct buf fo;              /* a failover in progress, or empty */
};

/* status --damaged: castord's check at a graceful stop (docs/signals.md),
 * the damaged users alone, exit 1 when there is any. */
static int
ctl_status_damaged_only(struct ctl *c)
{
	struct buf b = BUF_INIT;
	struct ctl_damaged d = { &b, false, true, 0 };
	struct err err;

	if (store_user_damaged_list(c->store, ctl_status_damaged_one, &d, &err) < 0)
		return ctl_fail(c, &err);
	fputs(buf_cstr(&b), stdout);
	buf_free(&b);
	return d.n > 0 ? CTL_EXIT_PROBLEMS : CTL_EXIT_OK;
}

/* Role and epoch, castord, the log end, the degraded and failed-append
 * markers, a failover in progress. */
static int
ctl_status_gather(struct ctl *c, struct ctl_status_server *s, struct err *err)
{
	struct synclog_pos end = { 0, 0 };
	struct buf p = BUF_INIT;
	struct stat sb;

	s->root = conf_dir(c->conf);
	s->role = "?";
	if (store_server_get(c->store, &s->role, &s->epoch, err) < 0)
		return -1;
	s->master = str_eq(s->role, "master");
	ctl_server_info(c->conf, &s->si);
	if (synclog_end(s->root, &end, err) == 0 && end.seg != 0)
		syncstat_pos_format(&end, s->endtxt, sizeof(s->endtxt));
	syncstat_degraded_path(s->root, &p);
	s->degraded = stat(buf_cstr(&p), &sb) == 0;
	buf_reset(&p);
	synchook_failed_marker(s->root, &p);
	if (stat(buf_cstr(&p), &sb) == 0) {
		s->append_failed_ms = (uint64_t)sb.st_mtim.tv_sec * 1000 + (uint64_t)sb.st_mtim.tv_nsec / 1000000;
		ctl_status_age(clock_wall_ms(), s->append_failed_ms, s->failed_when, sizeof(s->failed_when));
	}
	buf_free(&p);
	ctl_failover_state_text(s->root, &s->fo);
	return 0;
}

/* The channels asked for (each must be in sync_channels), else all of
 * them; NULL with err set when one is unknown. */
static char **
ctl_status_chan_list(struct ctl *c, char **pos, int npos, size_t *nchan, struct err *err)
{
	char **chans;
	size_t i;

	for (i = 0; i < (size_t)npos; i++) {
		if (!syncchan_listed(c->conf, pos[i])) {
			err_set(err, ERR_NOTFOUND, "no channel %s: it is not in sync_channels (%s)", pos[i],
				conf_get_str(c->conf, "sync_channels", "none"));
			return NULL;
		}
	}
	if (npos == 0)
		return syncchan_names(c->conf, nchan);
	chans = xcalloc((size_t)npos + 1, sizeof(char *));
	for (i = 0; i < (size_t)npos; i++)
		chans[i] = xstrdup(pos[i]);
	*nchan = (size_t)npos;
	return chans;
}

/* JSON: the "server" object, "incoming", and the opening of "channels";
 * 1 when a user is damaged. */
static int
ctl_status_server_json(struct ctl *c, const struct ctl_status_server *s, uint64_t now, struct buf *b)
{
	bool f = true, f2 = true;
	int damaged;

	buf_putc(b, '{');
	ctl_json_key(b, &f, "server");
	buf_putc(b, '{');
	ctl_json_key(b, &f2, "root"); ctl_json_str(b, s->root);
	ctl_json_key(b, &f2, "servername"); ctl_json_str(b, conf_get_str(c->conf, "servername", ""));
	ctl_json_key(b, &f2, "role"); ctl_json_str(b, s->role);
	ctl_json_key(b, &f2, "epoch"); buf_printf(b, "%" PRIu64, s->epoch);
	ctl_json_key(b, &f2, "castord_running"); buf_puts(b, s->si.running ? "true" : "false");
	ctl_json_key(b, &f2, "castord_pid"); buf_printf(b, "%ld", (long)s->si.pid);
	ctl_json_key(b, &f2, "log_end"); ctl_json_str(b, s->endtxt);
	ctl_json_key(b, &f2, "semisync_degraded"); buf_puts(b, s->degraded ? "true" : "false");
	ctl_json_key(b, &f2, "last_append_failure_ms"); buf_printf(b, "%" PRIu64, s->append_failed_ms);
	ctl_json_key(b, &f2, "failover"); ctl_json_str(b, buf_cstr(&s->fo));
	ctl_json_key(b, &f2, "damaged_users");
	buf_putc(b, '[');
	damaged = ctl_status_damaged(c, true, b);
	buf_putc(b, ']');
	ctl_json_key(b, &f2, "now_ms"); buf_printf(b, "%" PRIu64, now);
	buf_putc(b, '}');
	ctl_json_key(b, &f, "incoming");
	buf_putc(b, '[');
	(void)ctl_status_incoming(s->root, true, now, b);
	buf_putc(b, ']');
	ctl_json_key(b, &f, "channels");
	buf_putc(b, '[');
	return damaged;
}

/* Text: the server paragraph, damaged users, what it receives; 1 when a
 * user is damaged. */
static int
ctl_status_server_text(struct ctl *c, const struct ctl_status_server *s, size_t nchan, uint64_t now,
    struct buf *b)
{
	int damaged;

	buf_printf(b, "server %s  root %s\n", conf_get_str(c->conf, "servername", "?"), s->root);
	buf_printf(b, "  role %s  epoch %" PRIu64 "  castord %s", s->role, s->epoch,
	    s->si.running ? "running" : "not running");
	if (s->si.running)
		buf_printf(b, " (pid %ld)", (long)s->si.pid);
	buf_printf(b, "\n  sync log end %s", s->endtxt);
	if (s->degraded)
		buf_puts(b, "  SEMISYNC DEGRADED");
	if (s->append_failed_ms)
		buf_printf(b, "  last failed log append %s ago", s->failed_when);
	buf_putc(b, '\n');
	if (s->fo.len > 0)
		buf_printf(b, "  failover in progress: %s (castorctl failover --resume | --abort)\n",
		    buf_cstr(&s->fo));
	damaged = ctl_status_damaged(c, false, b);
	if (ctl_status_incoming(s->root, false, now, b) == 0 && !s->master)
		buf_puts(b, "incoming: none yet (no master has connected to this replica)\n");
	if (nchan == 0)
		buf_puts(b, "  no sync channels\n");
	else if (!s->master)
		buf_printf(b, "  (a replica: its channels push only after a promotion)\n");
	return damaged;
}

/* JSON: a channel's "conflicts", "counters" and "parked" members. */
static void
ctl_status_chan_json_tail(struct buf *b, bool *f, const struct ctl_chan_status *cs)
{
	bool f2 = true;
	size_t k;

	ctl_json_key(b, f, "conflicts");
	buf_putc(b, '{');
	ctl_json_key(b, &f2, "total"); buf_printf(b, "%" PRIu64, cs->conflicts);
	ctl_json_key(b, &f2, "resolved_renumbered"); buf_printf(b, "%" PRIu64, cs->resolved[0]);
	ctl_json_key(b, &f2, "resolved_replaced"); buf_printf(b, "%" PRIu64, cs->resolved[1]);
	ctl_json_key(b, &f2, "resolved_mailboxes"); buf_printf(b, "%" PRIu64, cs->resolved[2]);
	for (k = 0; k < sizeof(ctl_status_conflicts) / sizeof(ctl_status_conflicts[0]); k++) {
		ctl_json_key(b, &f2, ctl_status_conflicts[k]);
		buf_printf(b, "%" PRIu64, cs->conflict[k]);
	}
	buf_putc(b, '}');
	ctl_json_key(b, f, "counters");
	buf_putc(b, '{');
	f2 = true;
	for (k = 0; k < sizeof(ctl_status_counters) / sizeof(ctl_status_counters[0]); k++) {
		ctl_json_key(b, &f2, ctl_status_counters[k]);
		buf_printf(b, "%" PRIu64, cs->counter[k]);
	}
	buf_putc(b, '}');
	ctl_json_key(b, f, "parked");
	buf_putc(b, '[');
	for (k = 0; k < cs->park.n; k++) {
		const struct syncpark_entry *e = &cs->park.v[k];
		bool f3 = true;
		buf_puts(b, k > 0 ? ",{" : "{");
		ctl_json_key(b, &f3, "user"); ctl_json_str(b, e->user);
		ctl_json_key(b, &f3, "reason"); ctl_json_str(b, e->reason);
		ctl_json_key(b, &f3, "since_ms"); buf_printf(b, "%" PRIu64, e->since_ms);
		ctl_json_key(b, &f3, "retry_ms"); buf_printf(b, "%" PRIu64, e->retry_ms);
		buf_putc(b, '}');
	}
	buf_puts(b, "]}");
}

/* JSON: one channel object (the i-th of the "channels" array). */
static void
ctl_status_chan_json(struct buf *b, const struct ctl_chan_status *cs, size_t i, uint64_t now)
{
	bool f = true;

	if (i > 0)
		buf_putc(b, ',');
	buf_putc(b, '{');
	ctl_json_key(b, &f, "name"); ctl_json_str(b, cs->name);
	ctl_json_key(b, &f, "host"); ctl_json_str(b, cs->host);
	ctl_json_key(b, &f, "port"); buf_printf(b, "%u", cs->port);
	ctl_json_key(b, &f, "source"); ctl_json_str(b, cs->from_client ? "client" : "cursor");
	ctl_json_key(b, &f, "client_pid"); buf_printf(b, "%" PRIu64, cs->client_pid);
	ctl_json_key(b, &f, "client_running"); buf_puts(b, cs->client_alive ? "true" : "false");
	ctl_json_key(b, &f, "state"); ctl_json_str(b, cs->state);
	ctl_json_key(b, &f, "state_since_ms"); buf_printf(b, "%" PRIu64, cs->state_since_ms);
	ctl_json_key(b, &f, "connected"); buf_puts(b, cs->connected ? "true" : "false");
	ctl_json_key(b, &f, "cursor"); ctl_json_str(b, cs->cursor);
	ctl_json_key(b, &f, "cursor_saved"); ctl_json_str(b, cs->cursor_saved);
	ctl_json_key(b, &f, "log_end"); ctl_json_str(b, cs->log_end);
	ctl_json_key(b, &f, "detached"); buf_puts(b, cs->detached ? "true" : "false");
	ctl_json_key(b, &f, "bytes_behind"); buf_printf(b, "%" PRIu64, cs->bytes_behind);
	ctl_json_key(b, &f, "records_behind"); buf_printf(b, "%" PRIu64, cs->records_behind);
	ctl_json_key(b, &f, "records_behind_is_lower_bound");
	buf_puts(b, cs->records_lower_bound ? "true" : "false");
	ctl_json_key(b, &f, "oldest_unreplicated_ms"); buf_printf(b, "%" PRIu64, cs->oldest_ms);
	ctl_json_key(b, &f, "oldest_unreplicated_age_ms");
	buf_printf(b, "%" PRIu64, cs->oldest_ms && now > cs->oldest_ms ? now - cs->oldest_ms : 0);
	ctl_json_key(b, &f, "updated_ms"); buf_printf(b, "%" PRIu64, cs->updated_ms);
	ctl_json_key(b, &f, "status_age_ms");
	buf_printf(b, "%" PRIu64, cs->updated_ms && now > cs->updated_ms ? now - cs->updated_ms : 0);
	ctl_json_key(b, &f, "stale"); buf_puts(b, cs->stale ? "true" : "false");
	ctl_json_key(b, &f, "last_ack_ms"); buf_printf(b, "%" PRIu64, cs->last_ack_ms);
	ctl_json_key(b, &f, "last_ack_age_ms");
	buf_printf(b, "%" PRIu64, cs->last_ack_ms && now > cs->last_ack_ms ? now - cs->last_ack_ms : 0);
	ctl_json_key(b, &f, "dead_after_ms"); buf_printf(b, "%" PRIu64, cs->dead_after_ms);
	ctl_json_key(b, &f, "live");
	buf_puts(b, cs->connected && !cs->silent && !cs->stale ? "true" : "false");
	ctl_json_key(b, &f, "last_error"); ctl_json_str(b, cs->last_error);
	ctl_json_key(b, &f, "last_error_ms"); buf_printf(b, "%" PRIu64, cs->last_error_ms);
	ctl_json_key(b, &f, "last_anti_entropy_ms"); buf_printf(b, "%" PRIu64, cs->last_ae_ms);
	ctl_status_chan_json_tail(b, &f, cs);
}

/* Text: a channel's parked users, with the way to release them. */
static void
ctl_status_parked_text(struct buf *b, const struct ctl_chan_status *cs, uint64_t now)
{
	size_t k;

	if (cs->park_error[0])
		buf_printf(b, "  parked users: unreadable (%s)\n", cs->park_error);
	if (cs->park.n > 0)
		buf_printf(b, "  PARKED USERS: %zu (changes held back; castorctl sync --allow-deletes"
		    " %s [USER] releases)\n", cs->park.n, cs->name);
	for (k = 0; k < cs->park.n; k++) {
		const struct syncpark_entry *e = &cs->park.v[k];
		char ago[64], in[64];
		ctl_status_age(now, e->since_ms, ago, sizeof(ago));
		if (e->retry_ms > now)
			ctl_status_age(e->retry_ms, now, in, sizeof(in));
		else
			str_lcpy(in, "0 ms", sizeof(in));
		buf_printf(b, "    parked user %s since %s ago (since_ms=%" PRIu64 "), retry in %s: %s\n",
		    e->user, ago, e->since_ms, in, e->reason);
	}
}

/* Text: a channel's last error, conflicts and what its client sent. */
static void
ctl_status_chan_text_tail(struct buf *b, const struct ctl_chan_status *cs, uint64_t now)
{
	size_t k;

	if (cs->last_error[0]) {
		char ago[64];
		ctl_status_age(now, cs->last_error_ms, ago, sizeof(ago));
		buf_printf(b, "  last error (%s ago): %s\n", ago, cs->last_error);
	} else if (cs->silent) {
		buf_puts(b, "  last error: none yet (the replica is not answering)\n");
	} else {
		buf_puts(b, "  last error: none\n");
	}
	buf_printf(b, "  conflicts: %" PRIu64, cs->conflicts);
	for (k = 0; k < sizeof(ctl_status_conflicts) / sizeof(ctl_status_conflicts[0]); k++)
		if (cs->conflict[k])
			buf_printf(b, "  %s=%" PRIu64, ctl_status_conflicts[k], cs->conflict[k]);
	if (cs->resolved[0] || cs->resolved[1] || cs->resolved[2])
		buf_printf(b, "  resolved: renumbered=%" PRIu64 " replaced=%" PRIu64 " mailboxes=%" PRIu64,
		    cs->resolved[0], cs->resolved[1], cs->resolved[2]);
	buf_putc(b, '\n');
	if (cs->from_client)
		buf_printf(b, "  sent: %" PRIu64 " batches, %" PRIu64 " records, %" PRIu64
		    " uploads (%" PRIu64 " bytes), %" PRIu64 " errors\n", cs->counter[0], cs->counter[3],
		    cs->counter[4], cs->counter[5], cs->counter[9]);
}

/* Text: one channel's paragraph (endtxt: the server's log end, shown
 * when the channel has none of its own). */
static void
ctl_status_chan_text(struct buf *b, const struct ctl_chan_status *cs, uint64_t now, const char *endtxt)
{
	char age[64], since[64];

	ctl_status_age(now, cs->oldest_ms, age, sizeof(age));
	ctl_status_age(now, cs->state_since_ms, since, sizeof(since));
	buf_printf(b, "channel %s -> %s:%u\n", cs->name, cs->host[0] ? cs->host : "?", cs->port);
	buf_printf(b, "  %s  state %s",
	    !cs->connected ? "NOT connected" : cs->silent ? "connected but NOT LIVE (silent)" :
	    cs->stale ? "connected (STALE)" : "connected",
	    cs->state[0] ? cs->state : "?");
	if (cs->state_since_ms)
		buf_printf(b, " for %s", since);
	if (cs->from_client)
		buf_printf(b, "  (sync-client pid %" PRIu64 "%s)", cs->client_pid,
		    cs->client_alive ? "" : ", not running");
	else
		buf_puts(b, "  (no sync-client running: figures from the saved cursor)");
	if (cs->from_client)
		ctl_status_liveness_text(b, cs, now);
	buf_printf(b, "\n  cursor %s (saved %s)  log end %s%s\n", cs->cursor, cs->cursor_saved,
	    cs->log_end[0] ? cs->log_end : endtxt, cs->detached ? "  DETACHED" : "");
	buf_printf(b, "  behind: %s%" PRIu64 " records, %" PRIu64 " bytes; oldest unreplicated change: %s%s\n",
	    cs->records_lower_bound ? ">=" : "", cs->records_behind, cs->bytes_behind, age,
	    cs->oldest_ms ? " ago" : "");
	ctl_status_chan_text_tail(b, cs, now);
	ctl_status_parked_text(b, cs, now);
}

int
ctl_cmd_status(struct ctl *c, int argc, char **argv)
{
	bool json = false;
	bool damaged_only = false;
	const struct ctl_opt opts[] = {
		{ "json", 'j', NULL, NULL, &json },
		{ "damaged", 0, NULL, NULL, &damaged_only },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL, **chans;
	int npos = 0, rc, exit_rc = 0;
	size_t nchan = 0, i;
	uint64_t now;
	struct err err;
	struct ctl_status_server s = { .endtxt = "none", .fo = BUF_INIT };
	struct buf b = BUF_INIT;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl status [--json] [CHAN...] | --damaged\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	rc = ctl_open_store(c);
	if (rc != 0 || damaged_only) {
		free(pos);
		return rc != 0 ? rc : ctl_status_damaged_only(c);
	}
	if (ctl_status_gather(c, &s, &err) < 0 ||
	    (chans = ctl_status_chan_list(c, pos, npos, &nchan, &err)) == NULL) {
		free(pos);
		buf_free(&s.fo);
		return ctl_fail(c, &err);
	}
	free(pos);
	now = clock_wall_ms();
	if (json ? ctl_status_server_json(c, &s, now, &b) : ctl_status_server_text(c, &s, nchan, now, &b))
		exit_rc = CTL_EXIT_PROBLEMS;
	for (i = 0; i < nchan; i++) {
		struct ctl_chan_status cs;

		ctl_status_channel(c->conf, s.root, chans[i], &cs);
		if (ctl_status_bad(&cs, s.master))
			exit_rc = CTL_EXIT_PROBLEMS;
		if (json)
			ctl_status_chan_json(&b, &cs, i, now);
		else
			ctl_status_chan_text(&b, &cs, now, s.endtxt);
		syncpark_clear(&cs.park);
	}
	if (json)
		buf_puts(&b, "]}\n");
	fwrite(b.data, 1, b.len, stdout);
	conf_list_free(chans);
	buf_free(&b);
	buf_free(&s.fo);
	return exit_rc;
}
