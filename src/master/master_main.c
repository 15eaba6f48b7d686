/*
 * master_main.c - castord: the master process.
 *
 *     castord -C castor.conf [-M services.conf] [-D] [-p pidfile]
 *             [-L logfile] [--ready-fd N]
 *
 * Reads services.conf, runs its START entries to completion, opens the
 * SERVICES listeners, keeps children ready for them, runs DAEMONs and
 * EVENTS, and stops on SIGQUIT (graceful, then SHUTDOWN entries) or
 * SIGTERM/SIGINT (fast).  The signal contract is docs/signals.md.
 *
 * One thread, one poll(2) loop over: the signal self-pipe, the status
 * channel of every service child, and the listeners of services that
 * have no idle child.  Each turn first advances the phase (START, RUN,
 * DRAIN, SHUTDOWN, FAST, EXIT), then sleeps until a descriptor, a signal
 * or the nearest timer.
 *
 * Exit status: 0 after a clean stop; after a graceful stop the bits
 * 1 (a child had to be SIGTERMed/SIGKILLed or failed while draining) and
 * 2 (a SHUTDOWN entry failed); 1 after a fast stop that needed SIGKILL;
 * 64 usage; 69 start-up failure (listener, START entry, pidfile);
 * 78 configuration error.
 */
#include "master/master.h"

#include "lib/clock.h"
#include "lib/failpoint.h"
#include "lib/log.h"
#include "lib/priv.h"
#include "lib/signals.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include "castor_config.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int64_t
master_now(void)
{
	return clock_mono_ms();
}

static void
master_usage(FILE *f)
{
	fprintf(f, "usage: castord -C castor.conf [-M services.conf] [-D] [-p pidfile] [-L logfile] "
		   "[--ready-fd N]\n"
		   "  -C FILE       castor.conf (default: $CASTOR_CONFIG)\n"
		   "  -M FILE       services.conf (default: services_conf in castor.conf, or\n"
		   "                services.conf beside castor.conf)\n"
		   "  -D            stay in the foreground, log to stderr\n"
		   "  -p FILE       pidfile (default: pidfile in castor.conf, else\n"
		   "                <root>/run/castord.pid when <root>/run exists)\n"
		   "  -L FILE       append the log (castord's and its children's) to FILE\n"
		   "  --ready-fd N  write a newline to fd N when every listener is open\n"
		   "signals: QUIT graceful stop, TERM/INT fast stop, HUP reload, USR1 status to the log\n");
}

static void
master_build(struct master *m)
{
	struct mservice **st = &m->services;
	struct mdaemon **dt = &m->daemons;
	struct mevent **et = &m->events;
	size_t i;

	for (i = 0; i < m->cfg->n; i++) {
		const struct mentry *e = &m->cfg->entries[i];

		switch (e->section) {
		case SCONF_SERVICES:
			*st = master_avail_service_new(e);
			st = &(*st)->next;
			break;
		case SCONF_DAEMON:
			*dt = master_event_daemon_new(e);
			dt = &(*dt)->next;
			break;
		case SCONF_EVENTS:
			*et = master_event_new(e);
			et = &(*et)->next;
			break;
		default:
			break;
		}
	}
}

static void
master_begin_run(struct master *m)
{
	struct err err = { 0 };

	if (master_listen_open_all(m, &err) < 0) {
		log_error("cannot open listener error=%s", log_q(err.msg));
		m->exit_code = MASTER_EX_UNAVAILABLE;
		master_shutdown_fast_begin(m, "listen_failed");
		return;
	}
	m->phase = PHASE_RUN;
	master_event_schedule(m);
	master_notify_ready(m);
}

static void
master_start_next(struct master *m)
{
	while (m->start_next < m->cfg->n) {
		const struct mentry *e = &m->cfg->entries[m->start_next++];
		struct mchild *c;

		if (e->section != SCONF_START)
			continue;
		log_info("START entry starting name=%s", e->name);
		c = master_spawn(m, MCHILD_START, e, NULL);
		if (c == NULL) {
			master_shutdown_note_failed(m, "start", e->name);
			m->exit_code = MASTER_EX_UNAVAILABLE;
			master_shutdown_fast_begin(m, "start_failed");
			return;
		}
		m->step_pid = c->pid;
		return;
	}
	master_begin_run(m);
}

static void
master_step_phase(struct master *m, int64_t now)
{
	switch (m->phase) {
	case PHASE_START:
		if (m->step_pid == 0)
			master_start_next(m);
		break;
	case PHASE_RUN:
		master_event_daemons_start(m, now);
		master_event_run(m, now);
		master_avail_prefork(m, now);
		master_avail_trim(m, now);
		break;
	case PHASE_DRAIN:
	case PHASE_SHUTDOWN:
	case PHASE_FAST:
		master_shutdown_step(m, now);
		break;
	case PHASE_EXIT:
		break;
	}
}

/* Advance the phase until it settles (START -> RUN starts the services at once). */
static void
master_step(struct master *m, int64_t now)
{
	enum master_phase before;
	int guard = 0;

	do {
		before = m->phase;
		master_step_phase(m, now);
	} while (m->phase != before && ++guard < 8);
	master_shutdown_timeouts(m, now);
}

static int
master_timeout(const struct master *m, int64_t now)
{
	int64_t next = -1, t;

	t = master_shutdown_next_timer(m, now);
	if (t >= 0 && (next < 0 || t < next))
		next = t;
	if (m->phase == PHASE_RUN) {
		t = master_avail_next_timer(m, now);
		if (t >= 0 && (next < 0 || t < next))
			next = t;
		t = master_event_next_timer(m, now);
		if (t >= 0 && (next < 0 || t < next))
			next = t;
	}
	if (next < 0)
		return -1;
	if (next <= now)
		return 0;
	return next - now > 3600000 ? 3600000 : (int)(next - now);
}

static void
master_loop(struct master *m)
{
	struct pollfd *pfd = NULL;
	struct mchild **pc = NULL;
	struct mservice **ps = NULL;
	size_t cap = 0;

	while (m->phase != PHASE_EXIT) {
		int64_t now = master_now();
		struct mservice *s;
		struct mchild *c;
		size_t n = 0, need, i;
		int rc;

		master_step(m, now);
		if (m->phase == PHASE_EXIT)
			break;
		need = (size_t)m->nchildren + 1;
		for (s = m->services; s != NULL; s = s->next)
			need++;
		if (need > cap) {
			cap = need + 16;
			pfd = xreallocarray(pfd, cap, sizeof(*pfd));
			pc = xreallocarray(pc, cap, sizeof(*pc));
			ps = xreallocarray(ps, cap, sizeof(*ps));
		}
		pfd[n].fd = signals_fd();
		pfd[n].events = POLLIN;
		pc[n] = NULL;
		ps[n++] = NULL;
		for (c = m->children; c != NULL; c = c->next) {
			if (c->status_fd < 0)
				continue;
			pfd[n].fd = c->status_fd;
			pfd[n].events = POLLIN;
			pc[n] = c;
			ps[n++] = NULL;
		}
		if (m->phase == PHASE_RUN) {
			for (s = m->services; s != NULL; s = s->next) {
				if (!master_avail_want_listen(s, now))
					continue;
				pfd[n].fd = s->listen_fd;
				pfd[n].events = POLLIN;
				pc[n] = NULL;
				ps[n++] = s;
			}
		}
		for (i = 0; i < n; i++)
			pfd[i].revents = 0;
		rc = poll(pfd, (nfds_t)n, master_timeout(m, now));
		if (rc < 0 && errno != EINTR) {
			log_error("poll failed error=%s", log_q(strerror(errno)));
			master_shutdown_fast_begin(m, "poll_failed");
		}
		now = master_now();
		/* status first: nothing is freed until signals are dispatched */
		for (i = 1; rc > 0 && i < n; i++) {
			if (pfd[i].revents == 0)
				continue;
			if (pc[i] != NULL)
				master_status_read(m, pc[i]);
			else if (ps[i] != NULL && m->phase == PHASE_RUN && ps[i]->listen_fd >= 0)
				master_avail_listener_ready(m, ps[i], now);
		}
		master_sig_dispatch(m);
	}
	free(pfd);
	free(pc);
	free(ps);
}

static void
master_daemonize(void)
{
	pid_t pid = fork();
	int fd;

	if (pid < 0)
		log_fatal(MASTER_EX_UNAVAILABLE, "fork failed error=%s", log_q(strerror(errno)));
	if (pid > 0)
		_exit(0);
	setsid();
	if (chdir("/") < 0)
		log_warn("chdir / failed");
	fd = open("/dev/null", O_RDWR);
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		if (fcntl(STDOUT_FILENO, F_GETFD) < 0 || isatty(STDOUT_FILENO))
			dup2(fd, STDOUT_FILENO);
		if (fcntl(STDERR_FILENO, F_GETFD) < 0 || isatty(STDERR_FILENO))
			dup2(fd, STDERR_FILENO);
		if (fd > STDERR_FILENO)
			close(fd);
	}
}

static void
master_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

static char *
master_default_pidfile(const struct mconf *cfg)
{
	char run[4096];
	struct stat st;
	char *p;

	if (str_fmt(run, sizeof(run), "%s/run", conf_dir(cfg->conf)) < 0 || stat(run, &st) < 0 ||
	    !S_ISDIR(st.st_mode))
		return NULL;
	p = xmalloc(strlen(run) + sizeof("/castord.pid"));
	memcpy(p, run, strlen(run));
	memcpy(p + strlen(run), "/castord.pid", sizeof("/castord.pid"));
	return p;
}

/* A stop is not clean while the server holds damaged users (docs/store.md):
 * `castorctl status --damaged` names them ("USER<TAB>REASON" lines, which
 * we log) and exits 1: exit bit 4.  A child does it, so castord never links the
 * store; bounded by MASTER_DAMAGED_WAIT_MS. */
#define MASTER_DAMAGED_WAIT_MS 30000

static int
master_damaged_users(struct master *m)
{
	char *prog, out[8192];
	size_t got = 0;
	int fds[2], status = 0;
	int64_t deadline = master_now() + MASTER_DAMAGED_WAIT_MS;
	pid_t pid;
	struct err err;

	prog = master_conf_find_program(m->cfg->conf, "castorctl", &err);
	if (prog == NULL) {
		log_warn("damaged users not checked: %s", log_q(err.msg));
		return 0;
	}
	if (pipe2(fds, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		log_warn("damaged users not checked: %s", strerror(errno));
		free(prog);
		return 0;
	}
	if (pid == 0) {
		master_priv_child();
		dup2(fds[1], STDOUT_FILENO);
		execl(prog, "castorctl", "-q", "-C", m->cfg->conf_path, "status", "--damaged",
			(char *)NULL);
		_exit(127);
	}
	free(prog);
	close(fds[1]);
	for (;;) {
		struct pollfd pfd = { fds[0], POLLIN, 0 };
		int64_t left = deadline - master_now();
		ssize_t n;

		if (left <= 0 || poll(&pfd, 1, (int)left) <= 0) {
			kill(pid, SIGKILL);
			log_warn("damaged users not checked: castorctl status --damaged timed out");
			break;
		}
		n = read(fds[0], out + got, sizeof(out) - 1 - got);
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == sizeof(out) - 1)
			break;
	}
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	out[got] = '\0';
	for (char *line = strtok(out, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		char *why = strchr(line, '\t');

		if (why == NULL)
			continue;
		*why++ = '\0';
		log_error("damaged user user=%s reason=%s (castorctl restore-from CHAN %s, or castorctl"
			" user reset %s)", line, log_q(why), line, line);
		master_shutdown_note_failed(m, "damaged_user", line);
	}
	return WIFEXITED(status) && WEXITSTATUS(status) == 1 ? MASTER_EXIT_DAMAGED : 0;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "ready-fd", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct master m;
	struct err err = { 0 };
	const char *conf_path = getenv("CASTOR_CONFIG"), *logfile = NULL, *pidfile = NULL, *svc_path = NULL;
	int opt, code;
	int64_t v;

	memset(&m, 0, sizeof(m));
	m.ready_fd = -1;
	m.pidfile_fd = -1;
	m.tls_fd = -1;
	buf_init(&m.failed);
	while ((opt = getopt_long(argc, argv, "C:M:Dp:L:hV", longopts, NULL)) != -1) {
		switch (opt) {
		case 'C': conf_path = optarg; break;
		case 'M': svc_path = optarg; break;
		case 'D': m.foreground = true; break;
		case 'p': pidfile = optarg; break;
		case 'L': logfile = optarg; break;
		case 'R':
			if (str_to_i64_range(optarg, 0, 65535, &v) < 0 || fcntl((int)v, F_GETFD) < 0) {
				fprintf(stderr, "castord: --ready-fd %s is not an open descriptor\n", optarg);
				return 64;
			}
			m.ready_fd = (int)v;
			fcntl(m.ready_fd, F_SETFD, FD_CLOEXEC);
			break;
		case 'h': master_usage(stdout); return 0;
		case 'V': printf("castord %s\n", CASTOR_VERSION); return 0;
		default: master_usage(stderr); return 64;
		}
	}
	if (optind < argc || conf_path == NULL || conf_path[0] == '\0') {
		master_usage(stderr);
		return 64;
	}
	if (logfile != NULL) {
		int fd = open(logfile, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

		if (fd < 0) {
			fprintf(stderr, "castord: cannot open log file %s: %s\n", logfile, strerror(errno));
			return MASTER_EX_UNAVAILABLE;
		}
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		close(fd);
	}
	m.log_syslog = !m.foreground && logfile == NULL;
	log_init("castord", LOG_DEST_STDERR);
	if (failpoint_init() < 0)
		return 64;
	master_conf_set_self();
	priv_umask();

	m.cfg = master_conf_load(conf_path, svc_path, &err);
	if (m.cfg == NULL)
		log_fatal(MASTER_EX_CONFIG, "cannot load configuration error=%s", log_q(err.msg));
	setenv("CASTOR_CONFIG", m.cfg->conf_path, 1);
	if (svc_path != NULL)
		m.cli_svc_path = xstrdup(m.cfg->svc_path);  /* absolute: reloads work after chdir("/") */
	if (conf_has(m.cfg->conf, "log_level"))
		log_set_level((enum log_level)log_level_parse(conf_get_str(m.cfg->conf, "log_level", "info")));
	if (pidfile != NULL)
		m.pidfile = xstrdup(pidfile);
	else if ((m.pidfile = conf_get_path(m.cfg->conf, "pidfile", NULL)) == NULL)
		m.pidfile = master_default_pidfile(m.cfg);
	if (m.pidfile != NULL && m.pidfile[0] != '/') {
		char *abs = realpath(".", NULL);

		if (abs != NULL) {
			size_t len = strlen(abs) + strlen(m.pidfile) + 2;
			char *p = xmalloc(len);

			snprintf(p, len, "%s/%s", abs, m.pidfile);
			free(abs);
			free(m.pidfile);
			m.pidfile = p;
		}
	}
	if (master_priv_init(m.cfg, &err) < 0)
		log_fatal(MASTER_EX_CONFIG, "cannot start error=%s", log_q(err.msg));
	master_build(&m);

	if (!m.foreground)
		master_daemonize();
	if (m.log_syslog)
		log_init("castord", LOG_DEST_SYSLOG);
	if (master_notify_pidfile_open(&m, &err) < 0)
		log_fatal(MASTER_EX_UNAVAILABLE, "cannot start error=%s", log_q(err.msg));
	if (master_sig_init(&err) < 0)
		log_fatal(MASTER_EX_UNAVAILABLE, "cannot set up signals error=%s", log_q(err.msg));
	master_raise_nofile();
	log_notice("starting version=%s config=%s services=%s pid=%ld", CASTOR_VERSION, log_q(m.cfg->conf_path),
		   log_q(m.cfg->svc_path), (long)getpid());
	master_tls_load(&m, m.cfg->conf, m.cfg->conf_path, false);

	m.phase = PHASE_START;
	master_loop(&m);

	master_listen_close_all(&m);
	code = m.exit_code | master_damaged_users(&m);
	if (code == 0)
		log_notice("stopped cleanly");
	else
		log_error("stopped with failures status=%d failed=%s", code,
			  log_q(m.failed.len ? buf_cstr(&m.failed) : "-"));
	master_notify_pidfile_remove(&m);
	buf_free(&m.failed);
	{
		struct mservice *s;
		struct mdaemon *d;
		struct mevent *ev;

		while ((s = m.services) != NULL) {
			m.services = s->next;
			master_avail_service_free(s);
		}
		while ((d = m.daemons) != NULL) {
			m.daemons = d->next;
			master_event_daemon_free(d);
		}
		while ((ev = m.events) != NULL) {
			m.events = ev->next;
			master_event_free(ev);
		}
	}
	master_conf_free(m.cfg);
	free(m.pidfile);
	free(m.cli_svc_path);
	return code;
}
