/*
 * master_listen.c - castord's listening sockets.
 *
 * castord opens every SERVICES listener itself (after START, before
 * READY), hands it to each child of the service as fd 3, and never
 * accepts on it.  Closing a listener uses shutdown(2) first, which stops
 * it for the children's copies too: after a SIGQUIT or the removal of a
 * service, new connections are refused at once even while old children
 * still hold the descriptor.  A unix socket's file is removed.
 */
#include "master/master.h"

#include "lib/log.h"
#include "lib/net.h"

#define MASTER_LISTEN_BACKLOG 1024

int
master_listen_open(struct mservice *s, struct err *err)
{
	if (s->listen_fd >= 0)
		return 0;
	s->listen_fd = net_listen(&s->e.addr, MASTER_LISTEN_BACKLOG, err);
	if (s->listen_fd < 0) {
		err_prefix(err, "service %s", s->e.name);
		return -1;
	}
	log_info("listening service=%s listen=%s", s->e.name, log_q(s->e.addr_key));
	return 0;
}

int
master_listen_open_all(struct master *m, struct err *err)
{
	struct mservice *s;

	for (s = m->services; s != NULL; s = s->next)
		if (!s->retired && master_listen_open(s, err) < 0)
			return -1;
	return 0;
}

void
master_listen_close(struct mservice *s)
{
	if (s->listen_fd < 0)
		return;
	net_listen_close(s->listen_fd, s->e.addr.kind == NETADDR_UNIX ? s->e.addr.path : NULL);
	s->listen_fd = -1;
	log_info("listener closed service=%s listen=%s", s->e.name, log_q(s->e.addr_key));
}

void
master_listen_close_all(struct master *m)
{
	struct mservice *s;

	for (s = m->services; s != NULL; s = s->next)
		master_listen_close(s);
}
