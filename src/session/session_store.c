/*
 * session_store.c - open the store for a protocol service, with the sync
 * hook attached (see session_store.h).
 */
#include "session/session_store.h"

#include "lib/log.h"
#include "lib/str.h"
#include "sync/synchook.h"

#include <stdint.h>

/* The configuration the store was opened with: session_store_check_role()
 * needs it to attach the sync hook when a promotion makes this server a
 * master while the process runs (failover engineer, docs/failover.md). */
static const struct conf *session_store_conf;

struct store *
session_store_open(const struct conf *conf, struct err *err)
{
	struct store_opts opts;
	struct store *st;

	store_opts_from_conf(&opts, conf);
	st = store_open(conf_dir(conf), &opts, err);
	if (st == NULL)
		return NULL;
	session_store_conf = conf;
	/* SYNCHOOK: the one place every protocol service attaches the
	 * replication hook (a no-op on a replica or without channels). */
	if (synchook_attach(st, conf, err) < 0) {
		store_close(&st);
		return NULL;
	}
	if (session_store_check_role(st, err) < 0) {
		session_store_close(&st);
		return NULL;
	}
	return st;
}

void
session_store_close(struct store **st)
{
	if (*st == NULL)
		return;
	synchook_detach(*st);
	store_close(st);
}

int
session_store_wait(struct store *st, struct err *err)
{
	return synchook_wait(st, err);
}

int
session_store_check_role(struct store *st, struct err *err)
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
	if (!replica && session_store_conf != NULL && !synchook_active(st) &&
	    synchook_attach(st, session_store_conf, err) < 0)
		return -1;
	return replica ? 1 : 0;
}
