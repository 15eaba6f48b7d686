/*
 * ctl_server.c - castorctl's control of the local castord and of the
 * Castor programs it runs (ctl_failover.h).
 *
 * castord is found through its pidfile (castor.conf `pidfile`, default
 * <root>/run/castord.pid), which a running castord holds locked
 * (flock LOCK_EX) and removes as its very last act: "running" means
 * "the lock is held", which stays true while castord is in its SHUTDOWN
 * section and becomes false the moment it has exited (a zombie that its
 * parent has not reaped yet holds no lock).  castorctl is not castord's
 * parent, so it cannot read castord's exit status; the failover command
 * confirms the drain on its own instead (ctl_failover.c).
 *
 * Programs are looked up as castord looks up `cmd=` programs
 * (docs/signals.md "Finding programs"): $CASTOR_LIBEXECDIR... see
 * ctl_find_program.
 */
#include "ctl/ctl_failover.h"

#include "castor_config.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/priv.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void
ctl_server_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	nanosleep(&ts, NULL);
}

void
ctl_server_info(const struct conf *conf, struct ctl_server_info *si)
{
	char *p = conf_get_path(conf, "pidfile", NULL);
	char buf[64];
	ssize_t n;
	int fd;

	memset(si, 0, sizeof(si[0]));
	if (p != NULL) {
		str_lcpy(si->pidfile, p, sizeof(si->pidfile));
		free(p);
	} else {
		snprintf(si->pidfile, sizeof(si->pidfile), "%s/run/castord.pid", conf_dir(conf));
	}
	fd = open(si->pidfile, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
		/* nobody holds it: a stale file */
		close(fd);
		return;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	si->running = true;
	if (n > 0) {
		uint64_t pid = 0;
		buf[n] = '\0';
		str_trim(buf);
		if (str_to_u64(buf, &pid) == 0 && pid > 0 && pid < INT32_MAX)
			si->pid = (pid_t)pid;
	}
}

int
ctl_server_stop(const struct conf *conf, int timeout_ms, struct err *err)
{
	struct ctl_server_info si;
	double until = clock_mono_s() + timeout_ms / 1000.0;

	ctl_server_info(conf, &si);
	if (!si.running)
		return 0;
	if (si.pid <= 0)
		return err_set(err, ERR_TEMP, "castord holds %s but it names no pid", si.pidfile);
	if (kill(si.pid, SIGQUIT) < 0 && errno != ESRCH)
		return err_errno(err, ERR_PERM, "cannot signal castord pid %ld", (long)si.pid);
	for (;;) {
		ctl_server_info(conf, &si);
		if (!si.running)
			return 0;
		if (clock_mono_s() >= until)
			return err_set(err, ERR_TEMP, "castord (pid %ld) still running %d s after SIGQUIT",
			    (long)si.pid, timeout_ms / 1000);
		ctl_server_sleep_ms(20);
	}
}

static bool
ctl_is_exec(const char *path)
{
	struct stat st;

	return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

void
ctl_find_program(const char *name, char *out, size_t size)
{
	static const char *const siblings[] = { "master", "sync", "ctl", "lmtp", "imap", "pop3" };
	char self[PATH_MAX], path[PATH_MAX + 128];
	const char *env, *pathvar;
	ssize_t n;
	size_t i;

	out[0] = '\0';
	env = getenv("CASTOR_LIBEXECDIR");
	if (env != NULL && env[0] != '\0' && str_fmt(path, sizeof(path), "%s/%s", env, name) > 0 &&
	    ctl_is_exec(path)) {
		str_lcpy(out, path, size);
		return;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		char *slash;
		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash != NULL) {
			*slash = '\0';
			if (str_fmt(path, sizeof(path), "%s/%s", self, name) > 0 && ctl_is_exec(path)) {
				str_lcpy(out, path, size);
				return;
			}
			for (i = 0; i < sizeof(siblings) / sizeof(siblings[0]); i++)
				if (str_fmt(path, sizeof(path), "%s/../%s/%s", self, siblings[i], name) > 0 &&
				    ctl_is_exec(path)) {
					str_lcpy(out, path, size);
					return;
				}
		}
	}
	if (str_fmt(path, sizeof(path), "%s/%s", CASTOR_LIBEXECDIR, name) > 0 && ctl_is_exec(path)) {
		str_lcpy(out, path, size);
		return;
	}
	pathvar = getenv("PATH");
	if (pathvar == NULL)
		pathvar = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	while (*pathvar) {
		const char *colon = strchr(pathvar, ':');
		size_t len = colon ? (size_t)(colon - pathvar) : strlen(pathvar);
		if (len > 0 && str_fmt(path, sizeof(path), "%.*s/%s", (int)len, pathvar, name) > 0 &&
		    ctl_is_exec(path)) {
			str_lcpy(out, path, size);
			return;
		}
		pathvar += len;
		if (*pathvar == ':')
			pathvar++;
	}
}

int
ctl_run_program(char *const argv[], struct err *err)
{
	char path[PATH_MAX + 128];
	pid_t pid, w;
	int status;

	ctl_find_program(argv[0], path, sizeof(path));
	if (path[0] == '\0')
		return err_set(err, ERR_NOTFOUND, "program %s not found (set CASTOR_LIBEXECDIR)", argv[0]);
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0)
		return err_errno(err, ERR_TEMP, "fork");
	if (pid == 0) {
		execv(path, argv);
		_exit(127);
	}
	do
		w = waitpid(pid, &status, 0);
	while (w < 0 && errno == EINTR);
	if (w < 0)
		return err_errno(err, ERR_TEMP, "waitpid");
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int
ctl_server_start(const struct conf *conf, const char *log_file, int timeout_ms, struct err *err)
{
	char path[PATH_MAX + 128], fdtxt[16];
	const char *argv[10];
	int pfd[2], argc = 0, status;
	pid_t pid;
	double until;
	char c = 0;
	bool ready = false;

	ctl_find_program("castord", path, sizeof(path));
	if (path[0] == '\0')
		return err_set(err, ERR_NOTFOUND, "castord not found (set CASTOR_LIBEXECDIR)");
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return err_errno(err, ERR_TEMP, "pipe");
	snprintf(fdtxt, sizeof(fdtxt), "%d", pfd[1]);
	argv[argc++] = "castord";
	argv[argc++] = "-C";
	argv[argc++] = conf_filename(conf);
	if (log_file != NULL) {
		argv[argc++] = "-L";
		argv[argc++] = log_file;
	}
	argv[argc++] = "--ready-fd";
	argv[argc++] = fdtxt;
	argv[argc] = NULL;
	fflush(stdout);
	fflush(stderr);
	pid = fork();
	if (pid < 0) {
		close(pfd[0]);
		close(pfd[1]);
		return err_errno(err, ERR_TEMP, "fork");
	}
	if (pid == 0) {
		int nul = open("/dev/null", O_RDWR);
		/* castord must not hold castorctl's stdout/stderr: whoever reads
		 * them would wait for castord to exit */
		if (nul >= 0) {
			dup2(nul, 0);
			dup2(nul, 1);
			dup2(nul, 2);
		}
		fcntl(pfd[1], F_SETFD, 0);
		/* castorctl failover run as root starts castord as root (it binds,
		 * then runs its children as run_user) */
		(void)priv_regain_root(NULL);
		execv(path, (char *const *)argv);
		_exit(127);
	}
	close(pfd[1]);
	/* castord daemonises: the first process exits at once */
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	until = clock_mono_s() + timeout_ms / 1000.0;
	for (;;) {
		struct pollfd p = { pfd[0], POLLIN, 0 };
		int left = (int)((until - clock_mono_s()) * 1000);
		ssize_t n;

		if (left <= 0)
			break;
		if (poll(&p, 1, left) <= 0)
			continue;
		n = read(pfd[0], &c, 1);
		if (n < 0 && errno == EINTR)
			continue;
		ready = n == 1 && c == '\n';
		break;
	}
	close(pfd[0]);
	if (!ready)
		return err_set(err, ERR_TEMP, "castord did not become ready%s (see its log%s%s)",
		    clock_mono_s() >= until ? " in time" : "", log_file ? " " : "", log_file ? log_file : "");
	return 0;
}
