/*
 * master_spawn.c - the child table: fork and exec every kind of child,
 * reap them, log each spawn and each exit.
 *
 * Children are started with every signal blocked across fork(); the
 * child resets castord's handlers, asks the kernel for SIGTERM if
 * castord dies (PR_SET_PDEATHSIG), checks castord is still its parent,
 * arranges its descriptors (proto.h) and execs.  castord keeps one
 * record per child until waitpid() returns it.
 */
#include "master/master.h"
#include "master/proto.h"

#include "lib/log.h"
#include "lib/signals.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

const char *
master_spawn_kind_name(enum mchild_kind kind)
{
	switch (kind) {
	case MCHILD_SERVICE: return "service";
	case MCHILD_DAEMON: return "daemon";
	case MCHILD_EVENT: return "event";
	case MCHILD_START: return "start";
	case MCHILD_SHUTDOWN: return "shutdown";
	}
	return "?";
}

struct mchild *
master_spawn_find(struct master *m, pid_t pid)
{
	struct mchild *c;

	for (c = m->children; c != NULL; c = c->next)
		if (c->pid == pid)
			return c;
	return NULL;
}

static void
master_spawn_setenv(const char *k, const char *v)
{
	if (v != NULL)
		setenv(k, v, 1);
	else
		unsetenv(k);
}

/* In the child, after fork(): never returns. */
static void
master_spawn_child(struct master *m, pid_t master_pid, enum mchild_kind kind, const struct mentry *e,
		   const struct mservice *svc, int status_fd)
{
	static const int dfl[] = { SIGPIPE, SIGHUP, SIGQUIT, SIGTERM, SIGINT, SIGUSR1, SIGCHLD, 0 };
	char num[32];
	sigset_t none;
	int lfd = -1, sfd = -1, devnull, first;

	signals_reset_child(dfl);
	master_priv_child();  /* first: a uid change clears the parent-death signal */
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != master_pid)
		_exit(0);

	snprintf(num, sizeof(num), "%ld", (long)master_pid);
	master_spawn_setenv("CASTOR_MASTER_PID", num);
	master_spawn_setenv("CASTOR_SERVICE", e->name);
	master_spawn_setenv("CASTOR_LOG", m->log_syslog ? "syslog" : "stderr");
	if (kind == MCHILD_SERVICE) {
		master_spawn_setenv("CASTOR_LISTEN", e->listen);
		master_spawn_setenv("CASTOR_TLS", e->tls ? "1" : NULL);
		snprintf(num, sizeof(num), "%d", e->maxuse);
		master_spawn_setenv("CASTOR_MAXUSE", num);
		snprintf(num, sizeof(num), "%d", e->maxperip);
		master_spawn_setenv("CASTOR_MAXPERIP", e->maxperip > 0 ? num : NULL);
		master_spawn_setenv("CASTOR_REFUSE", e->refuse);
		/* out of the way of 3 and 4 first, then into place */
		lfd = fcntl(svc->listen_fd, F_DUPFD_CLOEXEC, 10);
		sfd = fcntl(status_fd, F_DUPFD_CLOEXEC, 10);
		if (lfd < 0 || sfd < 0 || dup2(lfd, PROTO_LISTEN_FD) < 0 || dup2(sfd, PROTO_STATUS_FD) < 0)
			_exit(71);
		if (m->tls_fd >= 0) {
			int tfd = fcntl(m->tls_fd, F_DUPFD_CLOEXEC, 10);

			if (tfd < 0 || dup2(tfd, PROTO_TLS_FD) < 0)
				_exit(71);
			snprintf(num, sizeof(num), "%d", PROTO_TLS_FD);
			master_spawn_setenv("CASTOR_TLS_FD", num);
		} else {
			master_spawn_setenv("CASTOR_TLS_FD", NULL);
		}
	} else {
		master_spawn_setenv("CASTOR_TLS_FD", NULL);
		master_spawn_setenv("CASTOR_LISTEN", NULL);
		master_spawn_setenv("CASTOR_TLS", NULL);
		master_spawn_setenv("CASTOR_MAXUSE", NULL);
		master_spawn_setenv("CASTOR_MAXPERIP", NULL);
		master_spawn_setenv("CASTOR_REFUSE", NULL);
	}
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull >= 0 && devnull != STDIN_FILENO) {
		dup2(devnull, STDIN_FILENO);
		close(devnull);
	}
	/* everything above the inherited ones goes */
	first = kind != MCHILD_SERVICE ? 3 : m->tls_fd >= 0 ? PROTO_TLS_FD + 1 : PROTO_TLS_FD;
	if (close_range((unsigned)first, ~0U, 0) < 0) {
		int fd;

		for (fd = first; fd < 1024; fd++)
			close(fd);
	}
	/* a service child gets SIGQUIT blocked: the skeleton unblocks it once
	 * its handler is in place, so an early SIGQUIT is not lost or fatal */
	sigemptyset(&none);
	if (kind == MCHILD_SERVICE)
		sigaddset(&none, SIGQUIT);
	sigprocmask(SIG_SETMASK, &none, NULL);
	execv(e->path, e->argv);
	log_error("exec failed service=%s path=%s error=%s", e->name, log_q(e->path), log_q(strerror(errno)));
	_exit(127);
}

struct mchild *
master_spawn(struct master *m, enum mchild_kind kind, const struct mentry *e, struct mservice *svc)
{
	sigset_t all, old;
	int sv[2] = { -1, -1 };
	pid_t pid, me = getpid();
	struct mchild *c;

	if (kind == MCHILD_SERVICE) {
		if (svc->listen_fd < 0)
			return NULL;
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
			log_error("socketpair failed service=%s error=%s", e->name, log_q(strerror(errno)));
			return NULL;
		}
	}
	sigfillset(&all);
	sigprocmask(SIG_SETMASK, &all, &old);
	pid = fork();
	if (pid == 0)
		master_spawn_child(m, me, kind, e, svc, sv[1]);
	sigprocmask(SIG_SETMASK, &old, NULL);
	if (sv[1] >= 0)
		close(sv[1]);
	if (pid < 0) {
		log_error("fork failed service=%s error=%s", e->name, log_q(strerror(errno)));
		if (sv[0] >= 0)
			close(sv[0]);
		return NULL;
	}
	c = xcalloc(1, sizeof(*c));
	c->pid = pid;
	c->kind = kind;
	c->name = xstrdup(e->name);
	c->svc = svc;
	c->status_fd = sv[0];
	c->state = MCHILD_STARTING;
	c->started = master_now();
	if (sv[0] >= 0)
		fcntl(sv[0], F_SETFL, O_NONBLOCK);
	if ((kind == MCHILD_START || kind == MCHILD_SHUTDOWN || kind == MCHILD_EVENT) && e->timeout > 0)
		c->term_at = c->started + (int64_t)e->timeout * 1000;
	c->next = m->children;
	m->children = c;
	m->nchildren++;
	if (svc != NULL) {
		svc->nchild++;
		svc->nready++;
		svc->spawned++;
	}
	log_info("spawned pid=%ld %s=%s cmd=%s", (long)pid, master_spawn_kind_name(kind), e->name, log_q(e->path));
	return c;
}

void
master_spawn_signal(struct master *m, struct mchild *c, int sig, const char *why)
{
	(void)m;
	if (kill(c->pid, sig) < 0 && errno != ESRCH) {
		log_warn("kill failed pid=%ld signal=%s error=%s", (long)c->pid, signals_name(sig),
			 log_q(strerror(errno)));
		return;
	}
	c->last_signal = sig;
	if (why != NULL)
		log_notice("%s pid=%ld %s=%s signal=%s", why, (long)c->pid, master_spawn_kind_name(c->kind), c->name,
			   signals_name(sig));
}

static void
master_spawn_free(struct master *m, struct mchild *c)
{
	struct mchild **pp;

	for (pp = &m->children; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == c) {
			*pp = c->next;
			break;
		}
	}
	m->nchildren--;
	if (c->status_fd >= 0)
		close(c->status_fd);
	free(c->name);
	free(c);
}

/* Did the child end the way castord asked, or on its own with success? */
static bool
master_spawn_clean(const struct mchild *c, int status)
{
	if (c->escalated)
		return false;
	if (WIFEXITED(status))
		return WEXITSTATUS(status) == 0;
	/* a child that dies of the SIGQUIT we sent ended as asked */
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGQUIT && c->last_signal == SIGQUIT;
}

static void
master_spawn_exited(struct master *m, struct mchild *c, int status)
{
	int64_t now = master_now();
	char how[64];
	bool clean = master_spawn_clean(c, status);
	enum log_level lvl = LOG_LVL_INFO;

	if (WIFEXITED(status)) {
		snprintf(how, sizeof(how), "status=%d", WEXITSTATUS(status));
		if (WEXITSTATUS(status) != 0)
			lvl = LOG_LVL_WARN;
	} else if (WIFSIGNALED(status)) {
		snprintf(how, sizeof(how), "signal=%s%s", signals_name(WTERMSIG(status)),
			 WCOREDUMP(status) ? " core=yes" : "");
		if (WTERMSIG(status) != c->last_signal)
			lvl = LOG_LVL_WARN;
	} else {
		snprintf(how, sizeof(how), "status=0x%x", (unsigned)status);
	}
	log_msg(lvl, "exited pid=%ld %s=%s %s ran_ms=%lld", (long)c->pid, master_spawn_kind_name(c->kind), c->name,
		how, (long long)(now - c->started));

	switch (c->kind) {
	case MCHILD_SERVICE: {
		/* died before ever reporting READY, not at our request: a start-up failure */
		bool failed = !clean && !c->was_ready && c->last_signal == 0;

		master_avail_child_gone(m, c->svc, c, failed);
		break;
	}
	case MCHILD_DAEMON:
		master_event_daemon_exited(m, c->pid, status, now);
		break;
	case MCHILD_EVENT:
		master_event_exited(m, c->pid);
		break;
	case MCHILD_START:
		m->step_pid = 0;
		if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
			log_error("START entry failed: not starting name=%s %s", c->name, how);
			master_shutdown_note_failed(m, "start", c->name);
			if (m->phase == PHASE_START)
				master_shutdown_fast_begin(m, "start_failed");
			m->exit_code = MASTER_EX_UNAVAILABLE;
		}
		break;
	case MCHILD_SHUTDOWN:
		m->step_pid = 0;
		if (!(WIFEXITED(status) && WEXITSTATUS(status) == 0) || c->escalated) {
			log_error("SHUTDOWN entry failed name=%s %s", c->name, how);
			master_shutdown_note_failed(m, "shutdown", c->name);
			m->exit_code |= MASTER_EXIT_SHUTDOWN;
		} else {
			log_info("SHUTDOWN entry done name=%s", c->name);
		}
		break;
	}
	if ((m->phase == PHASE_DRAIN || m->phase == PHASE_SHUTDOWN) && c->kind != MCHILD_SHUTDOWN &&
	    c->kind != MCHILD_START && !clean) {
		master_shutdown_note_failed(m, master_spawn_kind_name(c->kind), c->name);
		m->exit_code |= MASTER_EXIT_STRAGGLERS;
	}
	master_spawn_free(m, c);
}

void
master_spawn_reap(struct master *m)
{
	int status, guard;
	pid_t pid;

	for (guard = 0; guard < 100000; guard++) {
		struct mchild *c;

		pid = waitpid(-1, &status, WNOHANG);
		if (pid <= 0)
			break;
		c = master_spawn_find(m, pid);
		if (c == NULL) {
			log_warn("reaped unknown child pid=%ld", (long)pid);
			continue;
		}
		master_spawn_exited(m, c, status);
	}
}
