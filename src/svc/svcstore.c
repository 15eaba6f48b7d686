/*
 * svcstore.c - open the store for a protocol service, with the sync
 * hook attached (see svcstore.h).
 */
#include "svc/svcstore.h"

#include "lib/log.h"
#include "lib/str.h"
#include "sync/synchook.h"

#include <stdint.h>

/* The configuration the store was opened with: svcstore_check_role()
 * needs it to attach the sync hook when a promotion makes this server a
 * master while the process runs (failover engineer, docs/failover.md). */
static const struct conf *svcstore_conf;

struct store *
svcstore_open(const struct conf *conf, struct err *err)
{
	struct store_opts opts;
	struct store *st;

	store_opts_from_conf(&opts, conf);
	st = store_open(conf_dir(conf), &opts, err);
	if (st == NULL)
		return NULL;
	svcstore_conf = conf;
	/* SYNCHOOK: the one place every protocol service attaches the
	 * replication hook (a no-op on a replica or without channels). */
	if (synchook_attach(st, conf, err) < 0) {
		store_close(&st);
		return NULL;
	}
	if (svcstore_check_role(st, err) < 0) {
		svcstore_close(&st);
		return NULL;
	}
	return st;
}

void
svcstore_close(struct store **st)
{
	if (*st == NULL)
		return;
	synchook_detach(*st);
	store_close(st);
}

int
svcstore_wait(struct store *st, struct err *err)
{
	return synchook_wait(st, err);
}

int
svcstore_check_role(struct store *st, struct err *err)
{
	const char *role = NULL;
	uint64_t epoch = 0;
	bool replica;

	if (store_server_get(st, &role, &epoch, err) < 0)
		return -1;
	replica = role != NULL && str_eq(role, "replica");
	if (replica != store_is_read_only(st)) {
		log_info("store mode role=%s epoch=%llu read_only=%d", role, (unsigned long long)epoch,
			(int)replica);
		store_set_read_only(st, replica);
	}
	/* promoted while this process ran (it opened the store as a replica,
	 * when attaching was a no-op): from now on its changes go into the
	 * sync log like every master's */
	if (!replica && svcstore_conf != NULL && !synchook_active(st) &&
	    synchook_attach(st, svcstore_conf, err) < 0)
		return -1;
	return replica ? 1 : 0;
}
