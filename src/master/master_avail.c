/*
 * master_avail.c - keeping service children available: prefork idle
 * children, a fork when a listener has a client and no child is idle,
 * and the limits on that (maxchild, maxforkrate, crash backoff).
 *
 * castord never accepts a connection itself.  A child counts as
 * available from its fork until it reports BUSY; castord polls a
 * service's listener only while none is available, so a waiting client
 * costs at most one fork.  At maxchild castord stops polling the
 * listener (clients wait in the kernel's backlog) until a child becomes
 * idle or exits, and logs that it did so, at most every 10 seconds.
 */
#include "master/master.h"

#include "lib/log.h"
#include "lib/xalloc.h"

#include <stdlib.h>

#define AVAIL_LOG_EVERY_MS 10000
#define AVAIL_FAILS_BEFORE_BACKOFF 3
#define AVAIL_BACKOFF_MAX_MS 60000

struct mservice *
master_avail_service_new(const struct mentry *e)
{
	struct mservice *s = xcalloc(1, sizeof(*s));

	master_conf_entry_copy(&s->e, e);
	s->listen_fd = -1;
	if (e->maxforkrate > 0)
		s->forks = xcalloc((size_t)e->maxforkrate, sizeof(int64_t));
	return s;
}

void
master_avail_service_free(struct mservice *s)
{
	if (s == NULL)
		return;
	master_conf_entry_clear(&s->e);
	free(s->forks);
	free(s);
}

static bool
master_avail_rate_ok(const struct mservice *s, int64_t now, int64_t *until_r)
{
	int64_t oldest;

	if (s->e.maxforkrate <= 0 || s->forks == NULL)
		return true;
	oldest = s->forks[s->fork_head];
	if (oldest != 0 && now - oldest < 1000) {
		if (until_r != NULL)
			*until_r = oldest + 1000;
		return false;
	}
	return true;
}

static void
master_avail_record_fork(struct mservice *s, int64_t now)
{
	if (s->e.maxforkrate <= 0 || s->forks == NULL)
		return;
	s->forks[s->fork_head] = now;
	s->fork_head = (s->fork_head + 1) % s->e.maxforkrate;
}

static bool
master_avail_room(const struct mservice *s)
{
	return s->e.maxchild < 0 || s->nchild < s->e.maxchild;
}

static bool
master_avail_can_fork(const struct mservice *s, int64_t now)
{
	return !s->retired && s->listen_fd >= 0 && master_avail_room(s) && now >= s->blocked_until &&
	       master_avail_rate_ok(s, now, NULL);
}

static bool
master_avail_fork(struct master *m, struct mservice *s, int64_t now)
{
	if (master_spawn(m, MCHILD_SERVICE, &s->e, s) == NULL) {
		s->blocked_until = now + 1000;
		return false;
	}
	master_avail_record_fork(s, now);
	return true;
}

void
master_avail_prefork(struct master *m, int64_t now)
{
	struct mservice *s;
	int guard;

	for (s = m->services; s != NULL; s = s->next) {
		for (guard = 0; guard < 1000 && s->nready < s->e.prefork && master_avail_can_fork(s, now); guard++)
			if (!master_avail_fork(m, s, now))
				break;
	}
}

bool
master_avail_want_listen(const struct mservice *s, int64_t now)
{
	return !s->retired && s->listen_fd >= 0 && s->nready == 0 && !s->full && now >= s->blocked_until;
}

void
master_avail_listener_ready(struct master *m, struct mservice *s, int64_t now)
{
	int64_t until = 0;

	if (s->nready > 0 || s->retired)
		return;
	if (!master_avail_room(s)) {
		if (s->maxchild_logged == 0 || now - s->maxchild_logged >= AVAIL_LOG_EVERY_MS) {
			log_warn("maxchild reached service=%s maxchild=%d children=%d: new connections wait",
				 s->e.name, s->e.maxchild, s->nchild);
			s->maxchild_logged = now;
		}
		s->full = true;
		return;
	}
	if (!master_avail_rate_ok(s, now, &until)) {
		if (s->rate_logged == 0 || now - s->rate_logged >= AVAIL_LOG_EVERY_MS) {
			log_warn("maxforkrate reached service=%s maxforkrate=%d: new connections wait ms=%lld",
				 s->e.name, s->e.maxforkrate, (long long)(until - now));
			s->rate_logged = now;
		}
		s->blocked_until = until;
		return;
	}
	if (now < s->blocked_until)
		return;
	master_avail_fork(m, s, now);
}

int64_t
master_avail_next_timer(const struct master *m, int64_t now)
{
	const struct mservice *s;
	int64_t next = -1;

	for (s = m->services; s != NULL; s = s->next) {
		if (s->retired || s->blocked_until <= now)
			continue;
		if (next < 0 || s->blocked_until < next)
			next = s->blocked_until;
	}
	return next;
}

void
master_avail_service_release(struct master *m, struct mservice *s)
{
	struct mservice **pp;

	if (!s->retired || s->nchild > 0)
		return;
	for (pp = &m->services; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			break;
		}
	}
	log_info("service retired service=%s", s->e.name);
	master_avail_service_free(s);
}

void
master_avail_child_gone(struct master *m, struct mservice *s, struct mchild *c, bool failed)
{
	int64_t now = master_now();

	s->nchild--;
	if (c->state == MCHILD_STARTING || c->state == MCHILD_READY)
		s->nready--;
	s->full = false;
	if (failed && !s->retired && m->phase == PHASE_RUN) {
		s->fails++;
		if (s->fails >= AVAIL_FAILS_BEFORE_BACKOFF) {
			int shift = s->fails - AVAIL_FAILS_BEFORE_BACKOFF;
			int64_t delay = 1000LL << (shift > 6 ? 6 : shift);

			if (delay > AVAIL_BACKOFF_MAX_MS)
				delay = AVAIL_BACKOFF_MAX_MS;
			s->blocked_until = now + delay;
			log_error("service children fail at start service=%s failures=%d: pausing spawns ms=%lld",
				  s->e.name, s->fails, (long long)delay);
		}
	}
	master_avail_service_release(m, s);
}
