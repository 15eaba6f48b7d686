/*
 * child.c - the service skeleton: accept loop, status reports to
 * castord, use counting, the quit checkpoint, and asking castord about
 * a client's address when the service has maxperip (proto.h).  See
 * child.h and proto.h.
 */
#include "master/child.h"
#include "master/proto.h"

#include "lib/clock.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/priv.h"
#include "lib/signals.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHILD_EX_USAGE 64
#define CHILD_EX_OSERR 71
#define CHILD_EX_CONFIG 78

static struct {
	const struct child_ops *ops;
	struct conf *conf;
	char name[64];
	bool under_master;
	bool quit;            /* sticky: SIGQUIT seen or castord gone */
	bool master_gone;
	bool retire;          /* castord asked us not to accept again */
	bool reload;          /* castord reloaded: renew before the next accept */
	char *conf_path;      /* castor.conf, reread on reload */
	int tls_new;          /* TLS bundle that came with RELOAD, not yet in place */
	int listen_fd;
	int status_fd;
	unsigned maxuse;
	unsigned uses;
	bool maxperip;        /* report each client's address, wait for the verdict */
	char verdict;         /* PROTO_ADMIT / PROTO_DENY from castord, 0 while none */
} svc = { .listen_fd = -1, .status_fd = -1, .tls_new = -1 };

static void
child_status(char c)
{
	ssize_t w;

	if (svc.status_fd < 0)
		return;
	do
		w = write(svc.status_fd, &c, 1);
	while (w < 0 && errno == EINTR);
}

/* recv() that also takes a descriptor sent with the bytes (RELOAD). */
static ssize_t
child_recv_status(char *b, size_t size)
{
	struct iovec iov = { .iov_base = b, .iov_len = size };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(sizeof(int) * 4)];
	} u;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	struct cmsghdr *cm;
	ssize_t n;

	msg.msg_control = u.buf;
	msg.msg_controllen = sizeof(u.buf);
	n = recvmsg(svc.status_fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	if (n <= 0)
		return n;
	for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
		size_t nfd, i;

		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		nfd = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (i = 0; i < nfd; i++) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
			if (svc.tls_new >= 0)
				close(svc.tls_new);  /* the last one wins */
			svc.tls_new = fd;
		}
	}
	return n;
}

/* Read whatever castord sent (non-blocking). */
static void
child_read_status(void)
{
	char b[16];
	ssize_t n, i;

	if (svc.status_fd < 0)
		return;
	for (;;) {
		n = child_recv_status(b, sizeof(b));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (n <= 0) {
			if (!svc.master_gone)
				log_notice("master gone, exiting service=%s", svc.name);
			svc.master_gone = true;
			svc.quit = true;
			close(svc.status_fd);
			svc.status_fd = -1;
			return;
		}
		for (i = 0; i < n; i++) {
			if (b[i] == PROTO_RETIRE)
				svc.retire = true;
			else if (b[i] == PROTO_RELOAD)
				svc.reload = true;
			else if (b[i] == PROTO_ADMIT || b[i] == PROTO_DENY)
				svc.verdict = b[i];
			else
				log_warn("unknown status byte from master byte=%d", (int)(unsigned char)b[i]);
		}
	}
}

bool
child_quit_requested(void)
{
	if (signals_poll() && signals_pending(SIGQUIT))
		svc.quit = true;
	if (svc.quit && svc.listen_fd >= 0) {
		/* castord has shut the listener down; let go of our copy too */
		close(svc.listen_fd);
		svc.listen_fd = -1;
	}
	return svc.quit;
}

static uint64_t last_wait_us;

uint64_t
child_last_wait_us(void)
{
	return last_wait_us;
}

static int service_wait_input_1(int fd, int timeout_ms);

int
child_wait_input(int fd, int timeout_ms)
{
	uint64_t t0 = clock_mono_us();
	int w = service_wait_input_1(fd, timeout_ms);

	last_wait_us = clock_mono_us() - t0;
	return w;
}

static int
service_wait_input_1(int fd, int timeout_ms)
{
	struct pollfd p[3];
	int64_t deadline = timeout_ms >= 0 ? clock_mono_ms() + timeout_ms : -1;
	int n, rc;

	for (;;) {
		if (child_quit_requested())
			return CHILD_WAIT_QUIT;
		if (deadline >= 0) {
			int64_t left = deadline - clock_mono_ms();

			timeout_ms = left > 0 ? (left > INT32_MAX ? INT32_MAX : (int)left) : 0;
		}
		n = 0;
		p[n].fd = fd;
		p[n].events = POLLIN;
		p[n++].revents = 0;
		p[n].fd = signals_fd();
		p[n].events = POLLIN;
		p[n++].revents = 0;
		if (svc.status_fd >= 0) {
			p[n].fd = svc.status_fd;
			p[n].events = POLLIN;
			p[n++].revents = 0;
		}
		rc = poll(p, (nfds_t)n, timeout_ms);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return CHILD_WAIT_INPUT;  /* let read(2) report the trouble */
		if (rc == 0)
			return CHILD_WAIT_TIMEOUT;
		if (n > 2 && p[2].revents != 0)
			child_read_status();
		if (child_quit_requested())
			return CHILD_WAIT_QUIT;
		if (p[0].revents != 0)
			return CHILD_WAIT_INPUT;
	}
}

const struct conf *
child_conf(void)
{
	return svc.conf;
}

const char *
child_name(void)
{
	return svc.name;
}

bool
child_under_master(void)
{
	return svc.under_master;
}

static void
child_serve(struct child_conn *c)
{
	enum child_end end;

	end = svc.ops->handle(c);
	if (end == CHILD_END_QUIT || child_quit_requested()) {
		if (svc.ops->goodbye != NULL)
			svc.ops->goodbye(c);
		log_info("goodbye sent on quit service=%s peer=%s", svc.name, log_q(c->peer));
	}
}

static void
child_conn_init(struct child_conn *c, int rfd, int wfd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	const char *tls = getenv("CASTOR_TLS");

	memset(c, 0, sizeof(*c));
	c->rfd = rfd;
	c->wfd = wfd;
	c->tls = tls != NULL && str_eq(tls, "1");
	c->use = svc.uses;
	if (net_peer(rfd, c->peer, sizeof(c->peer)) < 0) {
		str_lcpy(c->peer, "stdin", sizeof(c->peer));
		str_lcpy(c->local, "stdin", sizeof(c->local));
		c->loopback = true;  /* a pipe or a terminal: a local user */
		return;
	}
	c->loopback = net_peer_is_loopback(rfd);
	memset(&ss, 0, sizeof(ss));
	if (getsockname(rfd, (struct sockaddr *)&ss, &len) < 0 ||
	    net_sockaddr_format((struct sockaddr *)&ss, len, c->local, sizeof(c->local)) < 0)
		str_lcpy(c->local, "unknown", sizeof(c->local));
}

/* Put the bundle castord sent where CASTOR_TLS_FD points (proto.h). */
static void
child_take_bundle(void)
{
	const char *v = getenv("CASTOR_TLS_FD");
	uint32_t cur;
	char num[16];

	if (v != NULL && str_to_u32(v, &cur) == 0 && cur <= INT32_MAX && (int)cur != svc.tls_new) {
		if (dup2(svc.tls_new, (int)cur) < 0)
			log_error("reload: cannot take the TLS bundle error=%s", log_q(strerror(errno)));
		close(svc.tls_new);
	} else if (str_fmt(num, sizeof(num), "%d", svc.tls_new) == 0) {
		setenv("CASTOR_TLS_FD", num, 1);  /* the first bundle: keep its number */
	}
	svc.tls_new = -1;
}

/* A RELOAD from castord: reread castor.conf and let the service renew
 * what it can.  A file that does not load changes nothing. */
static void
child_reload(void)
{
	struct err err = { 0 };
	struct conf *conf;

	svc.reload = false;
	if (svc.tls_new >= 0)
		child_take_bundle();
	if (svc.ops->reload == NULL || svc.conf_path == NULL)
		return;
	conf = conf_load(svc.conf_path, &err);
	if (conf == NULL) {
		log_error("reload: cannot load configuration, running one kept file=%s error=%s",
			  log_q(svc.conf_path), log_q(err.msg));
		return;
	}
	svc.ops->reload(conf);
	conf_free(conf);
}

/* maxperip: tell castord the client's address and wait for its verdict.
 * true to serve the client.  No answer in time (castord busy or gone):
 * serve it. */
static bool
child_peer_admitted(int fd)
{
	char msg[PROTO_PEER_MAX + 3];
	int64_t deadline = clock_mono_ms() + PROTO_VERDICT_WAIT_MS;
	size_t len;
	ssize_t w;

	msg[0] = PROTO_PEER;
	if (svc.status_fd < 0 || proto_peer_addr(fd, msg + 1, PROTO_PEER_MAX + 1) < 0) {
		child_status(PROTO_BUSY);
		return true;
	}
	len = strlen(msg);
	msg[len] = '\n';
	svc.verdict = 0;
	do
		w = write(svc.status_fd, msg, len + 1);
	while (w < 0 && errno == EINTR);
	msg[len] = '\0';
	while (svc.verdict == 0 && svc.status_fd >= 0) {
		struct pollfd p = { svc.status_fd, POLLIN, 0 };
		int64_t left = deadline - clock_mono_ms();

		if (left <= 0) {
			log_warn("no answer from master about a client service=%s peer=%s", svc.name, log_q(msg + 1));
			break;
		}
		if (poll(&p, 1, (int)left) > 0)
			child_read_status();
	}
	return svc.verdict != PROTO_DENY;
}

/* castord said no (maxperip): the protocol's refusal, then close. */
static void
child_refuse(int fd)
{
	const char *line = getenv("CASTOR_REFUSE"), *tls = getenv("CASTOR_TLS");
	char out[256];
	int n;

	if (line != NULL && line[0] != '\0' && !(tls != NULL && str_eq(tls, "1")) &&
	    (n = str_fmt(out, sizeof(out), "%s\r\n", line)) > 0 && send(fd, out, (size_t)n, MSG_NOSIGNAL) < 0)
		log_debug("refusal not sent service=%s error=%s", svc.name, log_q(strerror(errno)));
	close(fd);
}

/* The accept loop under castord.  Returns the exit status. */
static int
child_loop(void)
{
	struct pollfd p[3];
	int rc, fd;

	child_status(PROTO_READY);
	for (;;) {
		if (child_quit_requested() || svc.retire) {
			log_debug("idle child exiting service=%s uses=%u reason=%s", svc.name, svc.uses,
				  svc.retire ? "retire" : svc.master_gone ? "master_gone" : "quit");
			child_status(PROTO_EXITING);
			return 0;
		}
		if (svc.reload)
			child_reload();
		p[0].fd = svc.listen_fd;
		p[0].events = POLLIN;
		p[1].fd = signals_fd();
		p[1].events = POLLIN;
		p[2].fd = svc.status_fd;
		p[2].events = POLLIN;
		p[0].revents = p[1].revents = p[2].revents = 0;
		rc = poll(p, 3, -1);
		if (rc < 0 && errno != EINTR) {
			log_error("poll failed service=%s error=%s", svc.name, log_q(strerror(errno)));
			return CHILD_EX_OSERR;
		}
		if (rc <= 0)
			continue;
		if (p[2].revents != 0)
			child_read_status();
		if (child_quit_requested() || svc.retire || (p[0].revents & POLLIN) == 0)
			continue;
		/* a RELOAD sent before this client connected is seen before it is accepted */
		child_read_status();
		if (svc.reload)
			child_reload();
		if (svc.retire || svc.quit)
			continue;
		fd = accept4(svc.listen_fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
			    errno == ECONNABORTED || errno == EPROTO)
				continue;
			if (errno == EINVAL) {
				/* the listener was shut down by castord */
				svc.retire = true;
				continue;
			}
			log_error("accept failed service=%s error=%s", svc.name, log_q(strerror(errno)));
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				child_status(PROTO_EXITING);
				return CHILD_EX_OSERR;
			}
			continue;
		}
		if (!svc.maxperip) {
			child_status(PROTO_BUSY);
		} else if (!child_peer_admitted(fd)) {
			child_refuse(fd);
			if (!child_quit_requested() && !svc.retire)
				child_status(PROTO_READY);
			continue;
		}
		svc.uses++;
		{
			struct child_conn c;

			child_conn_init(&c, fd, fd);
			log_debug("connection service=%s peer=%s use=%u", svc.name, log_q(c.peer), svc.uses);
			child_serve(&c);
		}
		/* report before the close: a client that saw it can count on castord knowing */
		child_read_status();
		if (svc.maxuse > 0 && svc.uses >= svc.maxuse) {
			log_debug("maxuse reached service=%s uses=%u", svc.name, svc.uses);
			child_status(PROTO_EXITING);
			close(fd);
			return 0;
		}
		if (!child_quit_requested() && !svc.retire)
			child_status(PROTO_READY);
		close(fd);
	}
}

static void
child_usage(const struct child_ops *ops)
{
	fprintf(stderr, "usage: %s [-C castor.conf] [-s]%s%s\n", ops->name,
		ops->optstring ? " [service options: " : "", ops->optstring ? "]" : "");
}

static bool
child_fd_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

int
child_main(int argc, char **argv, const struct child_ops *ops)
{
	struct err err = { 0 };
	char optstring[128];
	const char *conf_path, *env, *logdest;
	bool stdin_mode = false;
	int opt, rc = 0;

	svc.ops = ops;
	xalloc_tune();
	priv_umask();
	env = getenv("CASTOR_SERVICE");
	str_lcpy(svc.name, env != NULL && env[0] ? env : ops->name, sizeof(svc.name));
	logdest = getenv("CASTOR_LOG");
	log_init(svc.name, logdest != NULL && str_eq(logdest, "syslog") ? LOG_DEST_SYSLOG : LOG_DEST_STDERR);
	if (failpoint_init() < 0)
		return CHILD_EX_USAGE;
	conf_path = getenv("CASTOR_CONFIG");
	if (str_fmt(optstring, sizeof(optstring), "+C:s%s", ops->optstring ? ops->optstring : "") < 0)
		return CHILD_EX_USAGE;
	while ((opt = getopt(argc, argv, optstring)) != -1) {
		if (opt == 'C') {
			conf_path = optarg;
		} else if (opt == 's') {
			stdin_mode = true;
		} else if (opt != '?' && ops->option != NULL) {
			if (ops->option(opt, optarg, &err) < 0) {
				fprintf(stderr, "%s: %s\n", ops->name, err.msg);
				return CHILD_EX_USAGE;
			}
		} else {
			child_usage(ops);
			return CHILD_EX_USAGE;
		}
	}
	if (optind < argc) {
		child_usage(ops);
		return CHILD_EX_USAGE;
	}

	if (signals_catch(SIGQUIT, SIGNALS_RESTART, &err) < 0 || signals_ignore(SIGPIPE, &err) < 0 ||
	    signals_ignore(SIGHUP, &err) < 0) {
		log_error("signal setup failed error=%s", log_q(err.msg));
		return CHILD_EX_OSERR;
	}
	{
		/* castord starts us with SIGQUIT blocked (proto.h): the handler is in place now */
		sigset_t quit;

		sigemptyset(&quit);
		sigaddset(&quit, SIGQUIT);
		sigprocmask(SIG_UNBLOCK, &quit, NULL);
	}

	svc.under_master = !stdin_mode && getenv("CASTOR_MASTER_PID") != NULL &&
			   child_fd_open(PROTO_LISTEN_FD) && child_fd_open(PROTO_STATUS_FD);
	if (svc.under_master) {
		uint32_t mpid = 0, maxuse = 0;

		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (str_to_u32(getenv("CASTOR_MASTER_PID"), &mpid) < 0 || (pid_t)mpid != getppid()) {
			log_notice("master gone before start, exiting service=%s", svc.name);
			return 0;
		}
		svc.listen_fd = PROTO_LISTEN_FD;
		svc.status_fd = PROTO_STATUS_FD;
		fcntl(svc.listen_fd, F_SETFD, FD_CLOEXEC);
		fcntl(svc.status_fd, F_SETFD, FD_CLOEXEC);
		env = getenv("CASTOR_MAXUSE");
		if (env != NULL && str_to_u32(env, &maxuse) == 0)
			svc.maxuse = maxuse;
		env = getenv("CASTOR_MAXPERIP");
		svc.maxperip = env != NULL && env[0] != '\0' && !str_eq(env, "0");
	} else if (!stdin_mode) {
		fprintf(stderr, "%s: not started by castord (no listener on fd 3 and status channel on fd 4); "
			"use -s to serve stdin/stdout\n", ops->name);
		return CHILD_EX_USAGE;
	}

	if (conf_path != NULL && conf_path[0] != '\0') {
		svc.conf_path = xstrdup(conf_path);
		svc.conf = conf_load(conf_path, &err);
		if (svc.conf == NULL) {
			log_error("cannot load configuration file=%s error=%s", log_q(conf_path), log_q(err.msg));
			child_status(PROTO_EXITING);
			return CHILD_EX_CONFIG;
		}
		/* run by hand as root (-s): become run_user, as castord's children are */
		if (priv_drop_for_conf(svc.conf, false, &err) < 0) {
			log_error("cannot switch user service=%s error=%s", svc.name, log_q(err.msg));
			child_status(PROTO_EXITING);
			return CHILD_EX_CONFIG;
		}
	} else if (!ops->conf_optional) {
		log_error("no configuration: give -C castor.conf or set CASTOR_CONFIG service=%s", svc.name);
		child_status(PROTO_EXITING);
		return CHILD_EX_CONFIG;
	}
	if (ops->init != NULL && ops->init(svc.conf, &err) < 0) {
		log_error("service init failed service=%s error=%s", svc.name, log_q(err.msg));
		child_status(PROTO_EXITING);
		if (svc.conf != NULL)
			conf_free(svc.conf);
		return CHILD_EX_CONFIG;
	}

	if (stdin_mode) {
		struct child_conn c;

		svc.uses = 1;
		child_conn_init(&c, STDIN_FILENO, STDOUT_FILENO);
		child_serve(&c);
	} else {
		rc = child_loop();
	}
	if (ops->fini != NULL)
		ops->fini();
	if (svc.conf != NULL)
		conf_free(svc.conf);
	svc.conf = NULL;
	free(svc.conf_path);
	svc.conf_path = NULL;
	return rc;
}
