/*
 * ctl_promote.c - role changes by hand and at start-up:
 *
 *     castorctl promote [--force] [--epoch N]
 *         on a replica whose master is gone (hard failover): role master,
 *         epoch + 1 (above every epoch a reachable peer reports), stored
 *         durably in db/users.db.  The services read the role for every
 *         connection / transaction, so the server accepts writes at once.
 *         Refused when a peer answers as a live master (use `castorctl
 *         failover` on it), unless --force.
 *     castorctl demote --epoch N
 *         role replica at epoch N (at least the stored one): what the old
 *         master is told by hand after a hard failover if it cannot reach
 *         the new master to learn it itself.
 *     castorctl peer-check [--timeout SEC]
 *         a master asks each channel's peer for its role and epoch (HELLO)
 *         and, when a peer is a master with a higher epoch or fences it,
 *         demotes itself to a replica at that epoch.  Written into
 *         services.conf as a START entry (before any listener opens) and
 *         an EVENTS entry, so an old master that comes back after a hard
 *         failover stops accepting mail before its first delivery, or
 *         within a minute when it never stopped (a partition).  An
 *         unreachable peer is not an error (exit 0): the server starts as
 *         what it is.
 *
 * Invariant kept by all three: the epoch stored on a server never goes
 * down, and a server becomes master only with an epoch above every epoch
 * it has seen (store_server_set in users.db is the single durable write).
 */
#include "ctl/ctl.h"
#include "ctl/ctl_failover.h"

#include "lib/atomicfile.h"
#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/cursor.h"
#include "sync/syncchan.h"
#include "sync/syncstat.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

/* Nudge the local rolling clients: a client that idles because this
 * server was a replica retries only every 10 s; one SIGQUIT makes it
 * exit (its cursor saved) and castord restarts it at once as a master's
 * client.  Best effort. */
static void
ctl_promote_nudge_clients(const struct conf *conf)
{
	char **chans;
	size_t n = 0, i;

	chans = syncchan_names(conf, &n);
	for (i = 0; i < n; i++) {
		struct buf p = BUF_INIT;
		char *text = NULL, *line, *save = NULL;
		size_t len = 0;
		struct err err;
		uint64_t pid = 0;

		syncstat_status_path(conf_dir(conf), chans[i], &p);
		if (atomicfile_read_all(buf_cstr(&p), 65536, &text, &len, &err) == 0) {
			for (line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save))
				if (str_has_prefix(line, "pid="))
					(void)str_to_u64(line + 4, &pid);
			if (pid > 1 && pid < INT32_MAX && kill((pid_t)pid, 0) == 0)
				(void)kill((pid_t)pid, SIGQUIT);
		}
		free(text);
		buf_free(&p);
	}
	conf_list_free(chans);
}

int
ctl_cmd_promote(struct ctl *c, int argc, char **argv)
{
	bool force = false;
	const char *epoch_opt = NULL;
	const struct ctl_opt opts[] = {
		{ "force", 'f', NULL, NULL, &force },
		{ "epoch", 0, &epoch_opt, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL, **chans = NULL;
	int npos = 0, rc;
	const char *role;
	uint64_t epoch, want, highest;
	size_t n = 0, i;
	struct err err;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl promote [--force] [--epoch N]\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	free(pos);
	if (npos != 0)
		return ctl_usage_error(c, "promote takes no operands");
	rc = ctl_open_store(c);
	if (rc != 0)
		return rc;
	if (store_server_get(c->store, &role, &epoch, &err) < 0)
		return ctl_fail(c, &err);
	if (str_eq(role, "master")) {
		printf("already a master (epoch %llu): nothing to do\n", (unsigned long long)epoch);
		return 0;
	}
	highest = epoch;
	chans = syncchan_names(c->conf, &n);
	for (i = 0; i < n; i++) {
		struct ctl_peer_hello h;
		struct ctl_peer *p = ctl_peer_open(c->conf, chans[i], "replica", epoch, 2000, &h, &err);

		if (p == NULL) {
			if (!c->quiet)
				printf("peer %s: not reachable (%s)\n", chans[i], err.msg);
			continue;
		}
		ctl_peer_close(&p);
		if (h.epoch > highest)
			highest = h.epoch;
		if (!c->quiet)
			printf("peer %s: %s, epoch %llu\n", chans[i], h.role[0] ? h.role : "?",
			    (unsigned long long)h.epoch);
		if (str_eq(h.role, "master") && !force) {
			err_set(&err, ERR_PERM,
			    "peer %s is a live master (epoch %llu): a planned switch is `castorctl failover --to CHAN` on it;"
			    " promote --force only if it is cut off for good", chans[i], (unsigned long long)h.epoch);
			conf_list_free(chans);
			return ctl_fail(c, &err);
		}
	}
	want = highest + 1;
	if (epoch_opt != NULL) {
		uint64_t e;
		if (str_to_u64(epoch_opt, &e) < 0 || e < want) {
			conf_list_free(chans);
			return ctl_usage_error(c, "--epoch %s: must be a number of at least %llu", epoch_opt,
			    (unsigned long long)want);
		}
		want = e;
	}
	if (store_server_set(c->store, "master", want, &err) < 0) {
		conf_list_free(chans);
		return ctl_fail(c, &err);
	}
	log_notice("promoted to master epoch=%llu was_epoch=%llu by=castorctl", (unsigned long long)want,
	    (unsigned long long)epoch);
	store_set_read_only(c->store, false);
	ctl_promote_nudge_clients(c->conf);
	conf_list_free(chans);
	printf("promoted: role master, epoch %llu (was replica, epoch %llu); services accept writes now\n",
	    (unsigned long long)want, (unsigned long long)epoch);
	return 0;
}

int
ctl_cmd_demote(struct ctl *c, int argc, char **argv)
{
	const char *epoch_opt = NULL;
	const struct ctl_opt opts[] = {
		{ "epoch", 0, &epoch_opt, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL;
	int npos = 0, rc;
	const char *role;
	uint64_t epoch, want;
	struct err err;

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl demote --epoch N\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	free(pos);
	if (npos != 0 || epoch_opt == NULL)
		return ctl_usage_error(c, "demote --epoch N (the new master's epoch)");
	rc = ctl_open_store(c);
	if (rc != 0)
		return rc;
	if (store_server_get(c->store, &role, &epoch, &err) < 0)
		return ctl_fail(c, &err);
	if (str_to_u64(epoch_opt, &want) < 0 || want < epoch)
		return ctl_usage_error(c, "--epoch %s: must be a number of at least %llu (the stored epoch)",
		    epoch_opt, (unsigned long long)epoch);
	if (store_server_set(c->store, "replica", want, &err) < 0)
		return ctl_fail(c, &err);
	log_notice("demoted to replica epoch=%llu was_role=%s was_epoch=%llu by=castorctl",
	    (unsigned long long)want, role, (unsigned long long)epoch);
	printf("demoted: role replica, epoch %llu (was %s, epoch %llu)\n", (unsigned long long)want, role,
	    (unsigned long long)epoch);
	return 0;
}

int
ctl_cmd_peer_check(struct ctl *c, int argc, char **argv)
{
	const char *timeout_opt = NULL;
	const struct ctl_opt opts[] = {
		{ "timeout", 't', &timeout_opt, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	char **pos = NULL, **chans;
	int npos = 0, rc, timeout_ms = 2000;
	const char *role;
	uint64_t epoch, newest = 0;
	size_t n = 0, i;
	struct err err;
	char newer_chan[CURSOR_CHANNEL_MAX + 1] = "";

	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		printf("usage: castorctl peer-check [--timeout SEC]\n");
		return 0;
	}
	if (rc > 0)
		return rc;
	free(pos);
	if (timeout_opt != NULL) {
		uint32_t s;
		if (str_to_u32(timeout_opt, &s) < 0 || s < 1 || s > 600)
			return ctl_usage_error(c, "--timeout %s: seconds from 1 to 600", timeout_opt);
		timeout_ms = (int)s * 1000;
	}
	rc = ctl_open_store(c);
	if (rc != 0)
		return rc;
	if (store_server_get(c->store, &role, &epoch, &err) < 0)
		return ctl_fail(c, &err);
	if (!str_eq(role, "master")) {
		if (!c->quiet)
			printf("role %s, epoch %llu: nothing to check\n", role, (unsigned long long)epoch);
		return 0;
	}
	chans = syncchan_names(c->conf, &n);
	for (i = 0; i < n; i++) {
		struct ctl_peer_hello h;
		struct ctl_peer *p = ctl_peer_open(c->conf, chans[i], "master", epoch, timeout_ms, &h, &err);

		if (p == NULL) {
			log_info("peer-check: peer not reachable channel=%s error=%s", chans[i], log_q(err.msg));
			if (!c->quiet)
				printf("peer %s: not reachable (%s)\n", chans[i], err.msg);
			continue;
		}
		ctl_peer_close(&p);
		if (!c->quiet)
			printf("peer %s: %s, epoch %llu%s\n", chans[i], h.role[0] ? h.role : "?",
			    (unsigned long long)h.epoch, h.fenced ? " (fenced us)" : "");
		if ((h.fenced || str_eq(h.role, "master")) && h.epoch > epoch && h.epoch > newest) {
			newest = h.epoch;
			str_lcpy(newer_chan, chans[i], sizeof(newer_chan));
		}
	}
	conf_list_free(chans);
	if (newest == 0)
		return 0;
	if (store_server_set(c->store, "replica", newest, &err) < 0)
		return ctl_fail(c, &err);
	log_error("DEMOTED: the peer of channel %s is the master at epoch %llu, above ours (%llu):"
	    " this server is a replica from now on", newer_chan, (unsigned long long)newest,
	    (unsigned long long)epoch);
	printf("demoted: peer %s is the master at epoch %llu (ours was %llu); role replica, epoch %llu\n",
	    newer_chan, (unsigned long long)newest, (unsigned long long)epoch, (unsigned long long)newest);
	return 0;
}
