/*
 * master_event.c - EVENTS (commands run on a schedule) and DAEMON
 * entries (long-running commands kept alive).
 *
 * EVENTS: period=N runs the command at start-up and then every N
 * minutes; at=HHMM runs it every day at that local time (at= wins when
 * both are given).  An event still running when its time comes again is
 * skipped, with a log line.  timeout= (default 60 s) SIGTERMs a run that
 * takes too long, SIGKILL 5 s later.
 *
 * DAEMON: started when castord is ready, restarted whenever it exits
 * while castord runs.  The delay before a restart doubles from 1 s up to
 * 60 s; a daemon that ran for 60 s or more before exiting starts again
 * from 1 s.  Every restart is logged with the delay.
 */
#include "master/master.h"

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>

#define DAEMON_BACKOFF_MIN_MS 1000
#define DAEMON_BACKOFF_MAX_MS 60000

struct mdaemon *
master_event_daemon_new(const struct mentry *e)
{
	struct mdaemon *d = xcalloc(1, sizeof(*d));

	master_conf_entry_copy(&d->e, e);
	return d;
}

void
master_event_daemon_free(struct mdaemon *d)
{
	if (d == NULL)
		return;
	master_conf_entry_clear(&d->e);
	free(d);
}

struct mevent *
master_event_new(const struct mentry *e)
{
	struct mevent *ev = xcalloc(1, sizeof(*ev));

	master_conf_entry_copy(&ev->e, e);
	return ev;
}

void
master_event_free(struct mevent *ev)
{
	if (ev == NULL)
		return;
	master_conf_entry_clear(&ev->e);
	free(ev);
}

void
master_event_daemons_start(struct master *m, int64_t now)
{
	struct mdaemon *d;

	for (d = m->daemons; d != NULL; d = d->next) {
		struct mchild *c;

		if (d->pid != 0 || d->removed || now < d->next_start)
			continue;
		c = master_spawn(m, MCHILD_DAEMON, &d->e, NULL);
		if (c == NULL) {
			d->next_start = now + DAEMON_BACKOFF_MIN_MS;
			continue;
		}
		d->pid = c->pid;
		d->started = now;
	}
}

static void
master_event_daemon_unlink(struct master *m, struct mdaemon *d)
{
	struct mdaemon **pp;

	for (pp = &m->daemons; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	}
	master_event_daemon_free(d);
}

void
master_event_daemon_exited(struct master *m, pid_t pid, int status, int64_t now)
{
	struct mdaemon *d;
	int64_t ran;

	for (d = m->daemons; d != NULL && d->pid != pid; d = d->next)
		;
	if (d == NULL)
		return;
	d->pid = 0;
	if (d->removed) {
		log_info("daemon removed name=%s", d->e.name);
		master_event_daemon_unlink(m, d);
		return;
	}
	if (m->phase != PHASE_RUN)
		return;
	if (d->restart_now) {
		d->restart_now = false;
		d->delay_ms = 0;
		d->next_start = now;
		log_info("daemon restarting with its new command name=%s", d->e.name);
		return;
	}
	ran = now - d->started;
	if (ran >= DAEMON_BACKOFF_MAX_MS || d->delay_ms == 0)
		d->delay_ms = DAEMON_BACKOFF_MIN_MS;
	else
		d->delay_ms = d->delay_ms * 2 > DAEMON_BACKOFF_MAX_MS ? DAEMON_BACKOFF_MAX_MS : d->delay_ms * 2;
	d->next_start = now + d->delay_ms;
	d->restarts++;
	log_warn("daemon died, restarting name=%s pid=%ld %s=%d ran_ms=%lld restart_in_ms=%lld restarts=%u",
		 d->e.name, (long)pid, WIFEXITED(status) ? "status" : "signal",
		 WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? WTERMSIG(status) : -1,
		 (long long)ran, (long long)d->delay_ms, d->restarts);
}

int64_t
master_event_next_at(const struct mentry *e, int64_t wall_now)
{
	time_t now = (time_t)(wall_now / 1000), t;
	struct tm tm;

	if (e->at < 0)
		return wall_now + (int64_t)e->period * 60000;
	localtime_r(&now, &tm);
	tm.tm_hour = e->at / 100;
	tm.tm_min = e->at % 100;
	tm.tm_sec = 0;
	tm.tm_isdst = -1;
	t = mktime(&tm);
	if (t <= now) {
		tm.tm_mday += 1;
		tm.tm_hour = e->at / 100;
		tm.tm_min = e->at % 100;
		tm.tm_sec = 0;
		tm.tm_isdst = -1;
		t = mktime(&tm);
	}
	return (int64_t)t * 1000;
}

void
master_event_schedule(struct master *m)
{
	struct mevent *ev;
	int64_t wall = (int64_t)clock_wall_ms();

	for (ev = m->events; ev != NULL; ev = ev->next)
		if (ev->next_run == 0)
			ev->next_run = ev->e.at >= 0 ? master_event_next_at(&ev->e, wall) : wall;
}

void
master_event_run(struct master *m, int64_t now)
{
	struct mevent *ev;
	int64_t wall = (int64_t)clock_wall_ms();

	(void)now;
	for (ev = m->events; ev != NULL; ev = ev->next) {
		if (ev->next_run <= 0 || wall < ev->next_run)
			continue;
		if (ev->pid != 0) {
			log_warn("event still running, this run skipped name=%s pid=%ld", ev->e.name, (long)ev->pid);
		} else {
			struct mchild *c = master_spawn(m, MCHILD_EVENT, &ev->e, NULL);

			if (c != NULL)
				ev->pid = c->pid;
		}
		if (ev->e.at >= 0) {
			ev->next_run = master_event_next_at(&ev->e, wall);
		} else if (ev->e.period <= 0) {
			ev->next_run = -1;  /* once only */
		} else {
			ev->next_run += (int64_t)ev->e.period * 60000;
			if (ev->next_run <= wall)
				ev->next_run = wall + (int64_t)ev->e.period * 60000;
		}
	}
}

void
master_event_exited(struct master *m, pid_t pid)
{
	struct mevent *ev;

	for (ev = m->events; ev != NULL; ev = ev->next)
		if (ev->pid == pid)
			ev->pid = 0;
}

int64_t
master_event_next_timer(const struct master *m, int64_t now)
{
	const struct mevent *ev;
	const struct mdaemon *d;
	int64_t next = -1, wall = (int64_t)clock_wall_ms(), t;

	for (ev = m->events; ev != NULL; ev = ev->next) {
		if (ev->next_run <= 0)
			continue;
		t = now + (ev->next_run > wall ? ev->next_run - wall : 0);
		if (next < 0 || t < next)
			next = t;
	}
	for (d = m->daemons; d != NULL; d = d->next) {
		if (d->pid != 0 || d->removed)
			continue;
		t = d->next_start > now ? d->next_start : now;
		if (next < 0 || t < next)
			next = t;
	}
	return next;
}
