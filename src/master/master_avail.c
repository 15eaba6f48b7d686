/*
 * master_avail.c - keeping service children available: prefork idle
 * children, a fork when a listener has a client and no child is idle,
 * the limits on that (maxchild, maxperip, maxforkrate, crash backoff),
 * and trimming idle children beyond prefork (maxidle).
 *
 * Children accept their clients themselves.  A child counts as
 * available from its fork until it reports BUSY; castord polls a
 * service's listener only while none is available, so a waiting client
 * costs at most one fork.  At maxchild, with no child available,
 * castord accepts each new client itself, writes the protocol's refusal
 * (mentry.refuse) and closes it, so a client is never left waiting
 * without a word; only a child that became EXITING less than
 * AVAIL_EXIT_WAIT_MS ago (maxuse reached, trimmed) makes it wait for
 * that child's slot instead.  With maxperip a child reports its client's address
 * before serving it (proto.h) and castord admits or denies it by the
 * number of that service's children serving the same address.
 * Refusals are logged at most every 10 seconds per service, with the
 * count of those not logged.
 *
 * An idle child (READY) beyond the service's prefork that has been idle
 * for maxidle (castor.conf service_maxidle, default 60 s; maxidle= per
 * service) is sent RETIRE and exits; one that took a client meanwhile
 * serves it first.
 */
#include "master/master.h"
#include "master/proto.h"

#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define AVAIL_REFUSE_BATCH 64
#define AVAIL_EXIT_WAIT_MS 1000
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
	return !s->retired && s->listen_fd >= 0 && s->nready == 0 && now >= s->blocked_until &&
	       now >= s->full_until;
}

/* At maxchild: until when to wait for a child that is on its way out, 0 for none. */
static int64_t
master_avail_exit_soon(const struct master *m, const struct mservice *s, int64_t now)
{
	const struct mchild *c;
	int64_t until = 0;

	for (c = m->children; c != NULL; c = c->next)
		if (c->svc == s && c->state == MCHILD_EXITING && now - c->exiting_at < AVAIL_EXIT_WAIT_MS &&
		    (until == 0 || c->exiting_at + AVAIL_EXIT_WAIT_MS < until))
			until = c->exiting_at + AVAIL_EXIT_WAIT_MS;
	return until;
}

/* Log a refusal, at most every AVAIL_LOG_EVERY_MS per service. */
static void
master_avail_refuse_log(struct mservice *s, const char *peer, const char *reason, int limit, int count,
			int64_t now)
{
	s->refused++;
	if (s->refuse_logged != 0 && now - s->refuse_logged < AVAIL_LOG_EVERY_MS) {
		s->refused_quiet++;
		return;
	}
	log_warn("connection refused service=%s peer=%s reason=%s %s=%d count=%d not_logged=%u", s->e.name,
		 log_q(peer), reason, reason, limit, count, s->refused_quiet);
	s->refuse_logged = now;
	s->refused_quiet = 0;
}

/* At maxchild with no child available: accept waiting clients, say no, close. */
static void
master_avail_refuse(struct mservice *s, int64_t now)
{
	char line[sizeof(s->e.refuse) + 2], peer[PROTO_PEER_MAX + 1];
	size_t len = 0;
	int i, fd;

	if (s->e.refuse[0] != '\0' && !s->e.tls && (i = str_fmt(line, sizeof(line), "%s\r\n", s->e.refuse)) > 0)
		len = (size_t)i;
	for (i = 0; i < AVAIL_REFUSE_BATCH; i++) {
		fd = accept4(s->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
				log_warn("accept failed service=%s error=%s", s->e.name, log_q(strerror(errno)));
			return;
		}
		if (len > 0 && send(fd, line, len, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
			log_debug("refusal not sent service=%s error=%s", s->e.name, log_q(strerror(errno)));
		if (proto_peer_addr(fd, peer, sizeof(peer)) < 0)
			str_lcpy(peer, "unix", sizeof(peer));
		close(fd);
		master_avail_refuse_log(s, peer, "maxchild", s->e.maxchild, s->nchild, now);
	}
}

/* Has child o already said (unread yet) that it is done with its client? */
static bool
master_avail_done_unread(const struct mchild *o)
{
	char b;

	return o->status_fd >= 0 && recv(o->status_fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 1 &&
	       (b == PROTO_READY || b == PROTO_EXITING);
}

bool
master_avail_peer_admit(struct master *m, struct mservice *s, struct mchild *c, int64_t now)
{
	const struct mchild *o;
	int n = 0;

	if (s->e.maxperip <= 0 || c->peer[0] == '\0')
		return true;
	for (o = m->children; o != NULL; o = o->next)
		if (o->svc == s && o->peer[0] != '\0' && str_eq(o->peer, c->peer) &&
		    (o == c || !master_avail_done_unread(o)))
			n++;
	if (n <= s->e.maxperip)
		return true;
	master_avail_refuse_log(s, c->peer, "maxperip", s->e.maxperip, n - 1, now);
	return false;
}

static int64_t
master_avail_maxidle_ms(const struct master *m, const struct mservice *s)
{
	return s->e.maxidle >= 0 ? (int64_t)s->e.maxidle * 1000 : m->cfg->maxidle_ms;
}

void
master_avail_trim(struct master *m, int64_t now)
{
	struct mservice *s;
	struct mchild *c;

	for (s = m->services; s != NULL; s = s->next) {
		int64_t idle = master_avail_maxidle_ms(m, s);
		int n = 0;

		if (s->retired || idle <= 0 || s->nready <= s->e.prefork)
			continue;
		for (c = m->children; c != NULL && s->nready > s->e.prefork; c = c->next) {
			if (c->svc != s || c->state != MCHILD_READY || c->retired || now - c->idle_since < idle)
				continue;
			master_status_retire(m, c);
			n++;
		}
		if (n > 0)
			log_info("idle children trimmed service=%s count=%d maxidle_ms=%lld children=%d", s->e.name,
				 n, (long long)idle, s->nchild);
	}
}

void
master_avail_listener_ready(struct master *m, struct mservice *s, int64_t now)
{
	int64_t until = 0;

	if (s->nready > 0 || s->retired)
		return;
	if (!master_avail_room(s)) {
		if ((until = master_avail_exit_soon(m, s, now)) > 0)
			s->full_until = until;
		else
			master_avail_refuse(s, now);
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

	const struct mchild *c;

	for (s = m->services; s != NULL; s = s->next) {
		if (s->retired)
			continue;
		if (s->blocked_until > now && (next < 0 || s->blocked_until < next))
			next = s->blocked_until;
		if (s->full_until > now && (next < 0 || s->full_until < next))
			next = s->full_until;
	}
	for (c = m->children; c != NULL; c = c->next) {
		int64_t idle, t;

		if (c->kind != MCHILD_SERVICE || c->state != MCHILD_READY || c->retired || c->svc->retired ||
		    c->svc->nready <= c->svc->e.prefork || (idle = master_avail_maxidle_ms(m, c->svc)) <= 0)
			continue;
		t = c->idle_since + idle;
		if (next < 0 || t < next)
			next = t;
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
	s->full_until = 0;
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
