/*
 * ctl_verify.c - castorctl verify: compare this master with a replica.
 *
 *     castorctl verify [USER | --all] [--channel CHAN]
 *
 * Connects to the channel's syncd like sync-client does (same login, the
 * session only reads: GET USERS / GET USER / GET RECORDS) and compares
 * user by user, mailbox by mailbox: the checksum, UIDNEXT, HIGHESTMODSEQ,
 * name and UIDVALIDITY first, the records only of mailboxes whose checksum
 * differs (syncpush_verify_user).  Every difference is one line on
 * stdout.  It may run while replication runs: a user that differs is
 * compared again a few times (a change in flight settles within a batch)
 * and reported only when the difference persists.
 *
 * Exit: 0 identical, 1 differences (CTL_EXIT_PROBLEMS), else the error's
 * code (no channel, replica unreachable: 8, fenced or refused: 7).
 * Without USER or --all, --all is meant.  The default channel is the
 * first of sync_channels.
 */
#include "ctl/ctl.h"
#include "ctl/ctl_repl.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/conn.h"
#include "lib/log.h"
#include "lib/net.h"
#include "lib/netaddr.h"
#include "lib/str.h"
#include "lib/tls.h"
#include "lib/xalloc.h"
#include "store/store.h"
#include "sync/syncchan.h"
#include "sync/syncpush.h"
#include "sync/syncsess.h"

int ctl_cmd_verify(struct ctl *c, int argc, char **argv);

#define VERIFY_CONNECT_MS 5000
#define VERIFY_IO_MS 60000
#define VERIFY_RECHECKS 10

void
ctl_repl_close(struct ctl_repl *v)
{
	if (v->push != NULL) {
		syncpush_logout(v->push);
		syncpush_free(&v->push);
	}
	if (v->sess != NULL)
		syncsess_free(&v->sess);
	if (v->tls != NULL)
		tls_ctx_free(&v->tls);
	syncchan_free(&v->ch);
}

int
ctl_repl_connect(struct ctl *c, struct ctl_repl *v, const char *chan, struct err *err)
{
	struct netaddr a;
	struct syncpush_login l;
	struct conn *cn;
	int fd;
	char **names = NULL;
	size_t nnames = 0;

	if (chan == NULL) {
		names = conf_get_list(c->conf, "sync_channels", &nnames);
		if (names == NULL || nnames == 0) {
			conf_list_free(names);
			return err_set(err, ERR_NOTFOUND, "no sync_channels configured");
		}
		fd = syncchan_load(c->conf, names[0], &v->ch, err);
		conf_list_free(names);
		if (fd < 0)
			return -1;
		chan = v->ch.name;
	} else if (syncchan_load(c->conf, chan, &v->ch, err) < 0) {
		return -1;
	}

	if (v->ch.tls && (v->tls = tls_client_ctx_new(v->ch.ca_file != NULL, v->ch.ca_file,
	    err)) == NULL)
		return -1;
	memset(&a, 0, sizeof(a));
	a.kind = NETADDR_TCP;
	str_lcpy(a.host, v->ch.host, sizeof(a.host));
	if (a.host[0] == '[') {
		size_t n = strlen(a.host);
		memmove(a.host, a.host + 1, n);
		if (n > 1 && a.host[n - 2] == ']')
			a.host[n - 2] = '\0';
	}
	a.port = (uint16_t)v->ch.port;
	fd = net_connect(&a, VERIFY_CONNECT_MS, err);
	if (fd < 0) {
		err_prefix(err, "channel %s (%s:%u)", chan, v->ch.host, v->ch.port);
		return -1;
	}
	cn = conn_new(fd, fd);
	conn_set_read_timeout(cn, VERIFY_IO_MS);
	conn_set_write_timeout(cn, VERIFY_IO_MS);
	v->sess = syncsess_new(cn, false, NULL);
	v->push = syncpush_new(c->store, v->sess);
	/* the sync credential is not a user (store.c U3): no name is skipped */
	memset(&l, 0, sizeof(l));
	l.host = v->ch.host;
	l.authname = v->ch.authname;
	l.password = v->ch.password;
	l.channel = v->ch.name;
	l.servername = conf_get_str(c->conf, "servername", "castor");
	l.tls = v->ch.tls;
	l.tls_ctx = v->tls;
	l.compress = v->ch.compress;
	return syncpush_login(v->push, &l, err);
}

static void
ctl_verify_pause(void)
{
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	nanosleep(&ts, NULL);
}

int
ctl_cmd_verify(struct ctl *c, int argc, char **argv)
{
	bool all = false;
	const char *chan = NULL;
	const struct ctl_opt opts[] = {
		{ "all", 0, NULL, NULL, &all },
		{ "channel", 0, &chan, NULL, NULL },
		{ NULL, 0, NULL, NULL, NULL },
	};
	struct ctl_repl v;
	char **pos = NULL, **users = NULL, **names = NULL, **rusers = NULL;
	int npos = 0, rc;
	size_t nnames = 0, nr = 0, total = 0, nusers = 0;
	struct err err;

	memset(&v, 0, sizeof(v));
	rc = ctl_parse(c, argc, argv, opts, &pos, &npos);
	if (rc < 0) {
		puts("usage: castorctl verify [USER | --all] [--channel CHAN]");
		return 0;
	}
	if (rc != 0)
		return rc;
	if (npos > 1 || (npos == 1 && all)) {
		free(pos);
		return ctl_usage_error(c, "verify [USER | --all] [--channel CHAN]");
	}
	if ((rc = ctl_open_store(c)) != 0)
		goto out;
	names = conf_get_list(c->conf, "sync_channels", &nnames);
	if (chan == NULL && nnames > 0)
		chan = names[0];
	if (chan == NULL) {
		err_set(&err, ERR_NOTFOUND, "no sync_channels configured: nothing to verify against");
		rc = ctl_fail(c, &err);
		goto out;
	}
	if (ctl_repl_connect(c, &v, chan, &err) < 0) {
		rc = ctl_fail(c, &err);
		goto out;
	}
	if (npos == 1) {
		users = xcalloc(2, sizeof(*users));
		users[0] = xstrdup(pos[0]);
	} else {
		if (ctl_all_users(c, &users, &err) < 0 ||
		    syncpush_replica_users(v.push, &rusers, &nr, &err) < 0) {
			rc = ctl_fail(c, &err);
			goto out;
		}
		for (size_t k = 0; k < nr; k++) {
			bool found = str_eq(rusers[k], v.ch.authname);
			size_t n = 0;
			for (; users[n] != NULL; n++)
				if (str_eq(users[n], rusers[k]))
					found = true;
			if (!found) {
				users = xreallocarray(users, n + 2, sizeof(*users));
				users[n] = xstrdup(rusers[k]);
				users[n + 1] = NULL;
			}
		}
	}
	for (size_t i = 0; users[i] != NULL; i++) {
		struct buf out = BUF_INIT;
		size_t nd = 0;
		nusers++;
		for (int attempt = 0; attempt < VERIFY_RECHECKS; attempt++) {
			buf_reset(&out);
			if (syncpush_verify_user(v.push, users[i], &out, &nd, &err) < 0) {
				buf_free(&out);
				rc = ctl_fail(c, &err);
				goto out;
			}
			if (nd == 0)
				break;
			ctl_verify_pause();
		}
		if (nd > 0)
			fputs(buf_cstr(&out), stdout);
		total += nd;
		buf_free(&out);
	}
	if (!c->quiet)
		fprintf(stderr, "verify: channel %s, %zu users, %zu differences\n", chan, nusers, total);
	rc = total == 0 ? CTL_EXIT_OK : CTL_EXIT_PROBLEMS;
out:
	ctl_repl_close(&v);
	if (users != NULL)
		ctl_list_free(users);
	if (rusers != NULL)
		ctl_list_free(rusers);
	if (names != NULL)
		conf_list_free(names);
	free(pos);
	return rc;
}
