/*
 * master_status.c - what service children tell castord over their
 * status channel (READY, BUSY, EXITING; see proto.h), castord's RETIRE
 * request, the RELOAD notice after a reload, and the SIGUSR1 status dump.
 *
 * Every byte from a child is checked: an unknown one is logged and
 * ignored, end of file means the child is on its way out (its exit is
 * logged when it is reaped).  A PEER message (maxperip) is read into
 * the child's record across reads, checked (length, characters), and
 * answered ADMIT or DENY at once; a malformed one is logged and
 * admitted uncounted, so a bug costs the cap, never a client.
 */
#include "master/master.h"
#include "master/proto.h"

#include "lib/clock.h"
#include "lib/log.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void
master_status_set(struct mchild *c, enum mchild_state st)
{
	struct mservice *s = c->svc;
	bool was_avail = c->state == MCHILD_STARTING || c->state == MCHILD_READY;
	bool is_avail = st == MCHILD_STARTING || st == MCHILD_READY;

	if (was_avail && !is_avail)
		s->nready--;
	else if (!was_avail && is_avail)
		s->nready++;
	if (st == MCHILD_EXITING && c->state != MCHILD_EXITING)
		c->exiting_at = master_now();
	if (st == MCHILD_READY) {
		c->idle_since = master_now();
		c->was_ready = true;
		s->full_until = 0;
		s->fails = 0;
	}
	if (st == MCHILD_BUSY)
		s->served++;
	c->state = st;
}

static void
master_status_send(struct mchild *c, char byte)
{
	if (c->status_fd >= 0 && send(c->status_fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 && errno != EAGAIN)
		log_warn("cannot answer child pid=%ld service=%s error=%s", (long)c->pid, c->name,
			 log_q(strerror(errno)));
}

static bool
master_status_peer_ok(const char *p, size_t len)
{
	size_t i;

	if (len == 0 || len > PROTO_PEER_MAX)
		return false;
	for (i = 0; i < len; i++)
		if (strchr("0123456789abcdefABCDEF.:", p[i]) == NULL)
			return false;
	return true;
}

/* One byte of a PEER message; at its '\n' the verdict is sent. */
static void
master_status_peer_byte(struct master *m, struct mchild *c, char ch)
{
	bool ok;

	if (ch != '\n' && c->msg_len < sizeof(c->msg) - 1) {
		c->msg[c->msg_len++] = ch;
		return;
	}
	c->in_msg = false;
	ok = ch == '\n' && master_status_peer_ok(c->msg, c->msg_len);
	if (c->state != MCHILD_EXITING)
		master_status_set(c, MCHILD_BUSY);
	if (!ok) {
		log_warn("bad peer report pid=%ld service=%s length=%zu", (long)c->pid, c->name, c->msg_len);
		master_status_send(c, PROTO_ADMIT);
	} else {
		memcpy(c->peer, c->msg, c->msg_len);
		c->peer[c->msg_len] = '\0';
		if (master_avail_peer_admit(m, c->svc, c, master_now())) {
			master_status_send(c, PROTO_ADMIT);
		} else {
			c->peer[0] = '\0';
			master_status_send(c, PROTO_DENY);
		}
	}
	c->msg_len = 0;
}

void
master_status_read(struct master *m, struct mchild *c)
{
	char b[64];
	ssize_t n, i;
	int guard;

	for (guard = 0; guard < 64 && c->status_fd >= 0; guard++) {
		n = recv(c->status_fd, b, sizeof(b), MSG_DONTWAIT);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			close(c->status_fd);
			c->status_fd = -1;
			c->peer[0] = '\0';
			if (c->state != MCHILD_EXITING)
				master_status_set(c, MCHILD_EXITING);
			return;
		}
		for (i = 0; i < n; i++) {
			if (c->in_msg) {
				master_status_peer_byte(m, c, b[i]);
				continue;
			}
			switch (b[i]) {
			case PROTO_PEER:
				c->was_ready = true;
				c->in_msg = true;
				c->msg_len = 0;
				break;
			case PROTO_READY:
				c->peer[0] = '\0';  /* done with its client (a retired one keeps it) */
				/* a child that is exiting stays so */
				if (c->state != MCHILD_EXITING && !c->retired)
					master_status_set(c, MCHILD_READY);
				break;
			case PROTO_BUSY:
				c->was_ready = true;
				if (c->state != MCHILD_EXITING)
					master_status_set(c, MCHILD_BUSY);
				break;
			case PROTO_EXITING:
				c->peer[0] = '\0';
				master_status_set(c, MCHILD_EXITING);
				break;
			default:
				log_warn("bad status byte pid=%ld service=%s byte=%d", (long)c->pid, c->name,
					 (int)(unsigned char)b[i]);
				break;
			}
		}
	}
}

void
master_status_retire(struct master *m, struct mchild *c)
{
	char q = PROTO_RETIRE;

	(void)m;
	if (c->retired)
		return;
	c->retired = true;
	/* no longer available to the (replaced) service */
	if (c->state == MCHILD_STARTING || c->state == MCHILD_READY)
		master_status_set(c, MCHILD_EXITING);
	if (c->status_fd >= 0 && send(c->status_fd, &q, 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
	    errno != EAGAIN)
		log_warn("cannot retire child pid=%ld service=%s error=%s", (long)c->pid, c->name,
			 log_q(strerror(errno)));
}

/* RELOAD with the TLS bundle's descriptor attached. */
static int
master_status_send_reload(int sock, int tls_fd)
{
	char h = PROTO_RELOAD;
	struct iovec iov = { .iov_base = &h, .iov_len = 1 };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;

	memset(&u, 0, sizeof(u));
	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cm), &tls_fd, sizeof(int));
	return sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) == 1 ? 0 : -1;
}

void
master_status_reload(struct master *m)
{
	struct mchild *c;
	int n = 0;

	for (c = m->children; c != NULL; c = c->next) {
		if (c->kind != MCHILD_SERVICE || c->retired || c->status_fd < 0)
			continue;
		if (master_status_send_reload(c->status_fd, m->tls_fd) < 0)
			log_warn("cannot tell child to reload pid=%ld service=%s error=%s", (long)c->pid,
				 c->name, log_q(strerror(errno)));  /* it keeps its certificates */
		else
			n++;
	}
	log_info("reload sent to service children children=%d", n);
}

static const char *
master_status_phase_name(enum master_phase p)
{
	switch (p) {
	case PHASE_START: return "start";
	case PHASE_RUN: return "run";
	case PHASE_DRAIN: return "drain";
	case PHASE_SHUTDOWN: return "shutdown";
	case PHASE_FAST: return "fast_stop";
	case PHASE_EXIT: return "exit";
	}
	return "?";
}

static const char *
master_status_state_name(enum mchild_state s)
{
	switch (s) {
	case MCHILD_STARTING: return "starting";
	case MCHILD_READY: return "ready";
	case MCHILD_BUSY: return "busy";
	case MCHILD_EXITING: return "exiting";
	}
	return "?";
}

void
master_status_dump(struct master *m)
{
	const struct mservice *s;
	const struct mdaemon *d;
	const struct mevent *ev;
	const struct mchild *c;
	int64_t now = master_now(), wall = (int64_t)clock_wall_ms();

	log_info("status phase=%s children=%d", master_status_phase_name(m->phase), m->nchildren);
	for (s = m->services; s != NULL; s = s->next)
		log_info("status service=%s listen=%s children=%d available=%d prefork=%d maxchild=%d "
			 "spawned=%llu served=%llu refused=%llu%s", s->e.name, log_q(s->e.addr_key), s->nchild,
			 s->nready, s->e.prefork, s->e.maxchild, (unsigned long long)s->spawned,
			 (unsigned long long)s->served, (unsigned long long)s->refused, s->retired ? " retired=yes" : "");
	for (d = m->daemons; d != NULL; d = d->next)
		log_info("status daemon=%s pid=%ld restarts=%u%s", d->e.name, (long)d->pid, d->restarts,
			 d->removed ? " removed=yes" : "");
	for (ev = m->events; ev != NULL; ev = ev->next)
		log_info("status event=%s pid=%ld next_in_s=%lld", ev->e.name, (long)ev->pid,
			 (long long)((ev->next_run - wall) / 1000));
	for (c = m->children; c != NULL; c = c->next)
		log_info("status child pid=%ld %s=%s state=%s age_ms=%lld", (long)c->pid,
			 master_spawn_kind_name(c->kind), c->name, master_status_state_name(c->state),
			 (long long)(now - c->started));
}
