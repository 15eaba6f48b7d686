/*
 * imap_idle.c - IDLE (RFC 2177).
 *
 * While idling the session sleeps in child_wait_input() on an epoll
 * descriptor that holds the client socket and the user's change
 * notification fd (store_user_watch_fd: inotify on a file every
 * committer touches after a durable commit).  A delivery, flag change or
 * expunge by any process wakes it at once; it then brings the selected
 * mailbox forward and sends EXISTS / EXPUNGE / FETCH.  No timer polls.
 * A quit request (SIGQUIT) ends IDLE with "* BYE"; the autologout
 * timeout (imap_idle_timeout) too.
 */
#include "imap/imap_session.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "lib/str.h"

static int
imap_idle_epoll(int a, int b)
{
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev;

	if (ep < 0)
		return -1;
	memset(&ev, 0, sizeof(ev));
	ev.events = EPOLLIN;
	ev.data.fd = a;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, a, &ev) < 0)
		goto fail;
	if (b >= 0) {
		ev.data.fd = b;
		if (epoll_ctl(ep, EPOLL_CTL_ADD, b, &ev) < 0)
			goto fail;
	}
	return ep;
fail:
	close(ep);
	return -1;
}

void
imap_cmd_idle(struct imap_session *s, struct imap_cmd *c)
{
	struct err err;
	int wfd, ep;
	const char *line;
	size_t len;

	(void)c;
	wfd = store_user_watch_fd(s->u, &err);
	if (wfd < 0) {
		log_warn("idle: no change notification user=%s error=%s", log_q(s->user), log_q(err.msg));
		imap_tagged(s, "NO", "UNAVAILABLE", "IDLE is unavailable");
		return;
	}
	ep = imap_idle_epoll(conn_rfd(s->conn), wfd);
	if (ep < 0) {
		log_warn("idle: epoll failed error=%s", log_q(strerror(errno)));
		imap_tagged(s, "NO", "UNAVAILABLE", "IDLE is unavailable");
		return;
	}
	store_user_watch_ack(s->u);
	imap_puts(s, "+ idling\r\n");
	for (;;) {
		int w;

		if (s->state == IMAP_SELECTED && imap_sel_sync(s, true, NULL) < 0)
			break;
		if (!imap_flush(s))
			break;
		if (conn_pending_input(s->conn) == 0) {
			w = child_wait_input(ep, imap_cfg.idle_ms);
			if (w == CHILD_WAIT_QUIT) {
				s->quit = true;
				break;
			}
			if (w == CHILD_WAIT_TIMEOUT) {
				imap_puts(s, "* BYE Autologout; idle for too long\r\n");
				s->idle_timeout = true;
				log_info("autologout in IDLE user=%s", log_q(s->user));
				break;
			}
			store_user_watch_ack(s->u);
			if (!(conn_wait_readable(s->conn, 0, -1, &err) & CONN_READY_INPUT))
				continue;   /* only the store changed */
		}
		/* DONE is a new line from the client: a fresh command deadline */
		conn_set_read_deadline(s->conn, clock_mono_ms() + imap_cfg.command_ms);
		int rc = conn_read_line(s->conn, 64, &line, &len, &err);

		if (rc == 0 || (rc < 0 && err.kind != ERR_TOOBIG)) {
			s->fatal = true;
			break;
		}
		if (rc > 0 && len == 4 && strncasecmp(line, "DONE", 4) == 0) {
			imap_tagged(s, "OK", NULL, "IDLE terminated");
			break;
		}
		imap_tagged(s, "BAD", NULL, "Expected DONE");
		break;
	}
	close(ep);
}
