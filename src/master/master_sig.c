/*
 * master_sig.c - castord's signals.  The handlers (lib/signals.c) only
 * mark and wake; master_sig_dispatch() runs in the event loop and
 * starts what each signal means (the contract is docs/signals.md):
 *
 *   SIGQUIT          graceful stop (master_shutdown_begin)
 *   SIGTERM, SIGINT  fast stop (master_shutdown_fast_begin); a second one during
 *                    a graceful stop turns it into a fast stop
 *   SIGHUP           reload (only while running)
 *   SIGUSR1          log the status table
 *   SIGCHLD          reap
 *   SIGPIPE          ignored
 */
#include "master/master.h"

#include "lib/log.h"
#include "lib/signals.h"

int
master_sig_init(struct err *err)
{
	static const int caught[] = { SIGQUIT, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGCHLD };
	size_t i;

	if (signals_init(err) < 0 || signals_ignore(SIGPIPE, err) < 0)
		return -1;
	for (i = 0; i < sizeof(caught) / sizeof(caught[0]); i++)
		if (signals_catch(caught[i], SIGNALS_RESTART | SIGNALS_NOCLDSTOP, err) < 0)
			return -1;
	return 0;
}

void
master_sig_dispatch(struct master *m)
{
	signals_poll();
	if (signals_take(SIGCHLD))
		master_spawn_reap(m);
	if (signals_take(SIGTERM) || signals_take(SIGINT)) {
		if (m->phase != PHASE_FAST && m->phase != PHASE_EXIT) {
			log_notice("fast stop requested signal=SIGTERM/SIGINT");
			master_shutdown_fast_begin(m, "signal");
		}
	}
	if (signals_take(SIGQUIT)) {
		if (m->phase == PHASE_START || m->phase == PHASE_RUN) {
			log_notice("graceful stop requested signal=SIGQUIT");
			master_shutdown_begin(m);
		} else {
			log_info("SIGQUIT ignored: already stopping");
		}
	}
	if (signals_take(SIGHUP)) {
		if (m->phase == PHASE_RUN)
			master_reload(m);
		else
			log_notice("SIGHUP ignored: not running");
	}
	if (signals_take(SIGUSR1))
		master_status_dump(m);
}
