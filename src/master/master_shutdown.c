/*
 * master_shutdown.c - stopping: the graceful drain (SIGQUIT) with its
 * escalation, the SHUTDOWN section, the fast stop (SIGTERM/SIGINT), and
 * the per-child timeouts of START, EVENTS and SHUTDOWN commands.
 *
 * Graceful stop, in order:
 *   1. every listener is shut down and closed (new clients are refused),
 *      all of them before any child is signalled;
 *   2. every child gets SIGQUIT: services finish the command in hand,
 *      say goodbye and exit; daemons and events stop as they see fit;
 *   3. each child's shutdown_timeout starts when that child is sent its
 *      SIGQUIT (with thousands of children, signalling them all takes
 *      a while on a loaded machine); a child still alive when its own
 *      timeout passes gets SIGTERM, and SIGKILL 5 s after that; each
 *      one logged with its pid and service.  A child that ends within
 *      its time is never escalated;
 *   4. when the last child is gone, the SHUTDOWN entries run one at a
 *      time in file order, each with its timeout= (SIGTERM, then SIGKILL
 *      5 s later);
 *   5. exit status: 0 when every child ended on its own (exit 0, or
 *      killed by our SIGQUIT) and every SHUTDOWN entry exited 0; else
 *      MASTER_EXIT_STRAGGLERS | MASTER_EXIT_SHUTDOWN, and a log line
 *      naming what failed.
 */
#include "master/master.h"

#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/signals.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

void
master_shutdown_note_failed(struct master *m, const char *what, const char *name)
{
	char item[200];

	snprintf(item, sizeof(item), "%s:%s", what, name);
	if (m->failed.len > 0) {
		const char *p = buf_cstr(&m->failed);
		size_t il = strlen(item);

		while ((p = strstr(p, item)) != NULL) {
			if ((p == buf_cstr(&m->failed) || p[-1] == ',') && (p[il] == ',' || p[il] == '\0'))
				return;
			p += il;
		}
		buf_putc(&m->failed, ',');
	}
	buf_puts(&m->failed, item);
}

static void
master_shutdown_signal_all(struct master *m, int sig, const char *why)
{
	struct mchild *c;
	int n = 0;

	for (c = m->children; c != NULL; c = c->next) {
		master_spawn_signal(m, c, sig, why);
		n++;
	}
	log_info("signalled children signal=%s count=%d", signals_name(sig), n);
}

void
master_shutdown_begin(struct master *m)
{
	int64_t t0 = master_now(), t1, now;
	struct mchild *c;
	int n = 0;

	m->phase = PHASE_DRAIN;
	master_notify("STOPPING=1");
	master_listen_close_all(m);
	t1 = master_now();
	/* sleep(MS): a machine slowed down by thousands of waking children, for the tests */
	FAILPOINT("master.shutdown.before_quit");
	for (c = m->children; c != NULL; c = c->next) {
		master_spawn_signal(m, c, SIGQUIT, NULL);
		now = master_now();
		c->stop_term_at = now + m->cfg->shutdown_timeout_ms;
		c->stop_kill_at = 0;
		n++;
	}
	m->drain_started = t0;
	log_notice("graceful stop: listeners closed, SIGQUIT sent children=%d shutdown_timeout_ms=%lld "
		   "close_ms=%lld signal_ms=%lld", n, (long long)m->cfg->shutdown_timeout_ms,
		   (long long)(t1 - t0), (long long)(master_now() - t1));
}

void
master_shutdown_fast_begin(struct master *m, const char *why)
{
	m->phase = PHASE_FAST;
	master_notify("STOPPING=1");
	master_listen_close_all(m);
	log_notice("fast stop reason=%s children=%d", why, m->nchildren);
	master_shutdown_signal_all(m, SIGTERM, NULL);
	m->fast_kill_at = master_now() + MASTER_FAST_WAIT_MS;
	m->fast_killed = false;
}

static void
master_shutdown_escalate(struct master *m, struct mchild *c, int sig, const char *why)
{
	c->escalated = true;
	master_spawn_signal(m, c, sig, why);
}

static void
master_shutdown_next(struct master *m)
{
	const struct mentry *e;

	while (m->shutdown_next < m->cfg->n) {
		struct mchild *c;

		e = &m->cfg->entries[m->shutdown_next++];
		if (e->section != SCONF_SHUTDOWN)
			continue;
		log_info("SHUTDOWN entry starting name=%s timeout_s=%d", e->name, e->timeout);
		c = master_spawn(m, MCHILD_SHUTDOWN, e, NULL);
		if (c == NULL) {
			master_shutdown_note_failed(m, "shutdown", e->name);
			m->exit_code |= MASTER_EXIT_SHUTDOWN;
			continue;
		}
		m->step_pid = c->pid;
		return;
	}
	m->phase = PHASE_EXIT;
}

/* Is a draining child past its own deadline? */
static bool
master_shutdown_overdue(const struct master *m, int64_t now)
{
	const struct mchild *c;

	for (c = m->children; c != NULL; c = c->next)
		if ((c->stop_kill_at > 0 && now >= c->stop_kill_at) || (c->stop_term_at > 0 && now >= c->stop_term_at))
			return true;
	return false;
}

void
master_shutdown_step(struct master *m, int64_t now)
{
	struct mchild *c;

	switch (m->phase) {
	case PHASE_DRAIN:
		/* a child that ended in time but is not reaped yet is not escalated */
		if (master_shutdown_overdue(m, now))
			master_spawn_reap(m);
		if (m->nchildren == 0) {
			log_notice("all children gone drain_ms=%lld", (long long)(now - m->drain_started));
			m->phase = PHASE_SHUTDOWN;
			m->shutdown_next = 0;
			m->step_pid = 0;
			master_shutdown_next(m);
			break;
		}
		for (c = m->children; c != NULL; c = c->next) {
			if (c->stop_kill_at > 0 && now >= c->stop_kill_at) {
				c->stop_kill_at = 0;
				if (c->last_signal != SIGKILL)
					master_shutdown_escalate(m, c, SIGKILL, "SIGTERM ignored: escalating");
			} else if (c->stop_term_at > 0 && now >= c->stop_term_at) {
				c->stop_term_at = 0;
				c->stop_kill_at = now + MASTER_KILL_GRACE_MS;
				master_shutdown_escalate(m, c, SIGTERM, "shutdown_timeout passed: escalating");
			}
		}
		break;
	case PHASE_SHUTDOWN:
		if (m->step_pid == 0)
			master_shutdown_next(m);
		break;
	case PHASE_FAST:
		if (m->nchildren == 0) {
			m->phase = PHASE_EXIT;
		} else if (!m->fast_killed && now >= m->fast_kill_at) {
			for (c = m->children; c != NULL; c = c->next)
				master_shutdown_escalate(m, c, SIGKILL, "fast stop: SIGTERM ignored, escalating");
			m->fast_killed = true;
			if (m->exit_code == 0)
				m->exit_code = MASTER_EXIT_STRAGGLERS;
		}
		break;
	default:
		break;
	}
}

void
master_shutdown_timeouts(struct master *m, int64_t now)
{
	struct mchild *c;

	for (c = m->children; c != NULL; c = c->next) {
		if (c->term_at > 0 && now >= c->term_at) {
			c->term_at = 0;
			c->kill_at = now + MASTER_KILL_GRACE_MS;
			master_shutdown_escalate(m, c, SIGTERM, "timeout passed: terminating");
		} else if (c->kill_at > 0 && now >= c->kill_at) {
			c->kill_at = 0;
			master_shutdown_escalate(m, c, SIGKILL, "SIGTERM ignored: killing");
		}
	}
}

static void
master_shutdown_min(int64_t *next, int64_t t)
{
	if (t > 0 && t != INT64_MAX && (*next < 0 || t < *next))
		*next = t;
}

int64_t
master_shutdown_next_timer(const struct master *m, int64_t now)
{
	const struct mchild *c;
	int64_t next = -1;

	(void)now;
	if (m->phase == PHASE_FAST && !m->fast_killed)
		master_shutdown_min(&next, m->fast_kill_at);
	for (c = m->children; c != NULL; c = c->next) {
		master_shutdown_min(&next, c->term_at);
		master_shutdown_min(&next, c->kill_at);
		if (m->phase == PHASE_DRAIN) {
			master_shutdown_min(&next, c->stop_term_at);
			master_shutdown_min(&next, c->stop_kill_at);
		}
	}
	return next;
}
