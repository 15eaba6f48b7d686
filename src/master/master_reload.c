/*
 * master_reload.c - SIGHUP: reread castor.conf and services.conf and
 * apply the difference without dropping a live connection.
 *
 * The new files are loaded and checked completely first (syntax,
 * programs, addresses, and every new listener opened); any error
 * rejects the reload with a log line and the running configuration
 * stays as it was.  Then, by entry name:
 *   - a service whose cmd, listen, tls, maxuse and proto are unchanged
 *     (and maxperip still on, or still off) keeps its children and
 *     listener; prefork, maxchild, maxforkrate, maxperip and maxidle
 *     take effect at once;
 *   - a removed or changed service is retired: its children are told to
 *     finish the connection in hand and exit (RETIRE on the status
 *     channel), no new child is started for it; its listener is handed
 *     to a new service on the same address, or shut down and closed;
 *   - a DAEMON that is gone gets SIGQUIT and is not restarted; one whose
 *     command changed gets SIGQUIT and starts again with the new command
 *     when it has exited; a new one starts at once;
 *   - EVENTS are rescheduled (unchanged ones keep their next run time);
 *   - START and SHUTDOWN entries simply replace the old ones;
 *   - when castor.conf's bytes changed, every service child is retired
 *     (it finishes its connection and exits; prefork starts new ones,
 *     which read the new file), so every later connection sees the new
 *     settings;
 *   - every service child that stays is sent RELOAD: before its next
 *     accept it rereads castor.conf and renews its TLS certificates
 *     (docs/security.md, "TLS"); a connection in hand keeps its own.
 */
#include "master/master.h"

#include "lib/log.h"
#include "lib/net.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <signal.h>
#include <stdlib.h>

enum { MARK_NONE = 0, MARK_KEEP, MARK_CLAIMED };

static bool
master_reload_same_service(const struct mservice *s, const struct mentry *e)
{
	return master_conf_entry_same_cmd(&s->e, e) && str_eq(s->e.addr_key, e->addr_key) && s->e.tls == e->tls &&
	       s->e.maxuse == e->maxuse && (s->e.maxperip > 0) == (e->maxperip > 0) &&
	       str_eq(s->e.refuse, e->refuse);
}

static struct mservice *
master_reload_find_service(struct master *m, const char *name)
{
	struct mservice *s;

	for (s = m->services; s != NULL; s = s->next)
		if (!s->retired && str_eq(s->e.name, name))
			return s;
	return NULL;
}

static void
master_reload_tune(struct mservice *s, const struct mentry *e)
{
	if (s->e.maxforkrate != e->maxforkrate) {
		free(s->forks);
		s->forks = e->maxforkrate > 0 ? xcalloc((size_t)e->maxforkrate, sizeof(int64_t)) : NULL;
		s->fork_head = 0;
	}
	s->e.prefork = e->prefork;
	s->e.maxchild = e->maxchild;
	s->e.maxforkrate = e->maxforkrate;
	s->e.maxperip = e->maxperip;
	s->e.maxidle = e->maxidle;
	s->e.line = e->line;
}

static void
master_reload_retire_service(struct master *m, struct mservice *s)
{
	struct mchild *c;

	if (s->mark == MARK_CLAIMED)
		s->listen_fd = -1;  /* handed over to its successor */
	else
		master_listen_close(s);
	s->retired = true;
	for (c = m->children; c != NULL; c = c->next)
		if (c->svc == s)
			master_status_retire(m, c);
	log_info("service retiring service=%s children=%d", s->e.name, s->nchild);
}

/* Services: plan, open new listeners, then commit.  -1 (nothing changed) on error. */
static int
master_reload_services(struct master *m, const struct mconf *nc, int *added, int *removed, int *changed)
{
	struct mservice **fresh, *s, *next, **tail;
	struct err err = { 0 };
	size_t i;

	fresh = xcalloc(nc->n ? nc->n : 1, sizeof(*fresh));
	for (s = m->services; s != NULL; s = s->next)
		s->mark = MARK_NONE;
	for (i = 0; i < nc->n; i++) {
		const struct mentry *e = &nc->entries[i];

		if (e->section != SCONF_SERVICES)
			continue;
		s = master_reload_find_service(m, e->name);
		if (s != NULL && master_reload_same_service(s, e))
			s->mark = MARK_KEEP;
	}
	for (i = 0; i < nc->n; i++) {
		const struct mentry *e = &nc->entries[i];
		struct mservice *old = master_reload_find_service(m, e->name);

		if (e->section != SCONF_SERVICES || (old != NULL && old->mark == MARK_KEEP))
			continue;
		fresh[i] = master_avail_service_new(e);
		for (s = m->services; s != NULL; s = s->next) {
			if (!s->retired && s->mark == MARK_NONE && s->listen_fd >= 0 &&
			    str_eq(s->e.addr_key, e->addr_key)) {
				s->mark = MARK_CLAIMED;
				fresh[i]->listen_fd = s->listen_fd;
				break;
			}
		}
		if (fresh[i]->listen_fd < 0 && master_listen_open(fresh[i], &err) < 0) {
			log_error("reload rejected, running configuration kept error=%s", log_q(err.msg));
			for (i = 0; i < nc->n; i++) {
				if (fresh[i] == NULL)
					continue;
				for (s = m->services; s != NULL; s = s->next)
					if (s->mark == MARK_CLAIMED && s->listen_fd == fresh[i]->listen_fd)
						fresh[i]->listen_fd = -1;  /* not ours to close */
				master_listen_close(fresh[i]);
				master_avail_service_free(fresh[i]);
			}
			for (s = m->services; s != NULL; s = s->next)
				s->mark = MARK_NONE;
			free(fresh);
			return -1;
		}
	}
	/* commit */
	for (s = m->services; s != NULL; s = next) {
		next = s->next;
		if (s->retired)
			continue;
		if (s->mark == MARK_KEEP) {
			for (i = 0; i < nc->n; i++)
				if (nc->entries[i].section == SCONF_SERVICES && str_eq(nc->entries[i].name, s->e.name))
					master_reload_tune(s, &nc->entries[i]);
			continue;
		}
		bool renewed = false;

		for (i = 0; i < nc->n; i++)
			if (fresh[i] != NULL && str_eq(fresh[i]->e.name, s->e.name))
				renewed = true;
		if (renewed)
			(*changed)++;
		else
			(*removed)++;
		master_reload_retire_service(m, s);
		master_avail_service_release(m, s);
	}
	for (tail = &m->services; *tail != NULL; tail = &(*tail)->next)
		;
	for (i = 0; i < nc->n; i++) {
		if (fresh[i] == NULL)
			continue;
		*tail = fresh[i];
		tail = &fresh[i]->next;
		(*added)++;
	}
	*added -= *changed;  /* a changed service is counted once, as changed */
	free(fresh);
	return 0;
}

static const struct mentry *
master_reload_find_entry(const struct mconf *nc, enum svc_section sec, const char *name)
{
	size_t i;

	for (i = 0; i < nc->n; i++)
		if (nc->entries[i].section == sec && str_eq(nc->entries[i].name, name))
			return &nc->entries[i];
	return NULL;
}

static void
master_reload_daemons(struct master *m, const struct mconf *nc)
{
	struct mdaemon *d, *next, **tail;
	size_t i;

	for (d = m->daemons; d != NULL; d = next) {
		const struct mentry *e;
		struct mchild *c;

		next = d->next;
		if (d->removed)
			continue;
		e = master_reload_find_entry(nc, SCONF_DAEMON, d->e.name);
		c = d->pid ? master_spawn_find(m, d->pid) : NULL;
		if (e == NULL) {
			d->removed = true;
			if (c != NULL) {
				master_spawn_signal(m, c, SIGQUIT, "reload: daemon removed, stopping");
			} else {
				struct mdaemon **pp;

				for (pp = &m->daemons; *pp != d; pp = &(*pp)->next)
					;
				*pp = d->next;
				master_event_daemon_free(d);
			}
		} else if (!master_conf_entry_same_cmd(&d->e, e)) {
			master_conf_entry_clear(&d->e);
			master_conf_entry_copy(&d->e, e);
			d->delay_ms = 0;
			d->next_start = 0;
			if (c != NULL) {
				d->restart_now = true;
				master_spawn_signal(m, c, SIGQUIT, "reload: daemon changed, restarting");
			}
		} else {
			d->e.timeout = e->timeout;
		}
	}
	for (tail = &m->daemons; *tail != NULL; tail = &(*tail)->next)
		;
	for (i = 0; i < nc->n; i++) {
		const struct mentry *e = &nc->entries[i];
		bool have = false;

		if (e->section != SCONF_DAEMON)
			continue;
		for (d = m->daemons; d != NULL; d = d->next)
			if (!d->removed && str_eq(d->e.name, e->name))
				have = true;
		if (!have) {
			*tail = master_event_daemon_new(e);
			tail = &(*tail)->next;
		}
	}
}

static void
master_reload_events(struct master *m, const struct mconf *nc)
{
	struct mevent *list = NULL, **tail = &list, *old, **pp;
	size_t i;

	for (i = 0; i < nc->n; i++) {
		const struct mentry *e = &nc->entries[i];
		struct mevent *ev = NULL;

		if (e->section != SCONF_EVENTS)
			continue;
		for (pp = &m->events; *pp != NULL; pp = &(*pp)->next) {
			if (str_eq((*pp)->e.name, e->name)) {
				ev = *pp;
				*pp = ev->next;
				break;
			}
		}
		if (ev != NULL && (!master_conf_entry_same_cmd(&ev->e, e) || ev->e.period != e->period || ev->e.at != e->at)) {
			pid_t pid = ev->pid;

			master_event_free(ev);
			ev = master_event_new(e);
			ev->pid = pid;
		} else if (ev != NULL) {
			ev->e.timeout = e->timeout;
		} else {
			ev = master_event_new(e);
		}
		ev->next = NULL;
		*tail = ev;
		tail = &ev->next;
	}
	while ((old = m->events) != NULL) {
		m->events = old->next;
		master_event_free(old);
	}
	m->events = list;
	master_event_schedule(m);
}

/* castor.conf changed: every service child finishes the connection in
 * hand and exits (RETIRE), so every later connection is served by a
 * child that read the new file; prefork refills at once.  A child reads
 * its status channel before each accept, so none takes a client after
 * the RETIRE is queued. */
static void
master_reload_recycle(struct master *m)
{
	struct mchild *c;
	int n = 0;

	for (c = m->children; c != NULL; c = c->next) {
		if (c->kind != MCHILD_SERVICE || c->retired)
			continue;
		master_status_retire(m, c);
		n++;
	}
	log_info("castor.conf changed: service children recycled children=%d", n);
}

void
master_reload(struct master *m)
{
	struct err err = { 0 };
	struct mconf *nc;
	int added = 0, removed = 0, changed = 0;

	log_notice("reload requested file=%s", log_q(m->cfg->svc_path));
	master_notify("RELOADING=1");
	nc = master_conf_load(m->cfg->conf_path, m->cli_svc_path, &err);
	if (nc == NULL) {
		log_error("reload rejected, running configuration kept error=%s", log_q(err.msg));
		master_notify("READY=1");
		return;
	}
	if (master_reload_services(m, nc, &added, &removed, &changed) < 0) {
		master_conf_free(nc);
		master_notify("READY=1");
		return;
	}
	master_priv_reload_check(nc->conf);
	master_reload_daemons(m, nc);
	master_reload_events(m, nc);
	if (nc->conf_crc != m->cfg->conf_crc)
		master_reload_recycle(m);
	master_conf_free(m->cfg);
	m->cfg = nc;
	if (master_tls_load(m, nc->conf, nc->conf_path, true) == 0)
		master_status_reload(m);
	log_notice("reload done services_added=%d services_removed=%d services_changed=%d", added, removed,
		   changed);
	master_notify("READY=1");
}
