/*
 * master_notify.c - telling the world castord is up: the pidfile,
 * --ready-fd and systemd's notification socket.
 *
 * Pidfile: created (mode 0644) and locked with flock(LOCK_EX|LOCK_NB)
 * for castord's whole life, so a second castord on the same pidfile
 * refuses to start; holds "<pid>\n"; removed at exit.
 *
 * --ready-fd N: one "\n" is written to fd N when START is done and every
 * listener is open, then N is closed (s6's readiness protocol).
 *
 * sd_notify: when NOTIFY_SOCKET is set (a path, or "@name" for the
 * abstract namespace) a datagram "READY=1\nMAINPID=<pid>" is sent at
 * the same moment, "RELOADING=1" / "READY=1" around a reload and
 * "STOPPING=1" when a stop begins.  NOTIFY_SOCKET is removed from the
 * environment so children do not talk to systemd in castord's name.
 */
#include "master/master.h"

#include "lib/log.h"
#include "lib/str.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char *notify_path;

int
master_notify_pidfile_open(struct master *m, struct err *err)
{
	char line[32];
	int fd, n;

	if (m->pidfile == NULL)
		return 0;
	/* no symlink: run/ belongs to run_user, and castord may be root */
	fd = open(m->pidfile, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		return err_errno(err, ERR_PERM, "pidfile %s", m->pidfile);
	master_priv_pidfile(fd);
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t r = read(fd, line, sizeof(line) - 1);

		line[r > 0 ? r : 0] = '\0';
		close(fd);
		return err_set(err, ERR_EXISTS, "pidfile %s is locked: castord already running (pid %s)", m->pidfile,
			       str_trim(line));
	}
	n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, line, (size_t)n, 0) != n) {
		err_errno(err, ERR_TEMP, "pidfile %s", m->pidfile);
		close(fd);
		return -1;
	}
	m->pidfile_fd = fd;
	return 0;
}

void
master_notify_pidfile_remove(struct master *m)
{
	if (m->pidfile == NULL || m->pidfile_fd < 0)
		return;
	unlink(m->pidfile);
	close(m->pidfile_fd);
	m->pidfile_fd = -1;
}

void
master_notify(const char *state)
{
	struct sockaddr_un sun;
	socklen_t len;
	const char *env;
	size_t plen;
	int fd;

	if (notify_path == NULL) {
		env = getenv("NOTIFY_SOCKET");
		if (env == NULL || env[0] == '\0')
			return;
		notify_path = xstrdup(env);
		unsetenv("NOTIFY_SOCKET");
	}
	plen = strlen(notify_path);
	if ((notify_path[0] != '/' && notify_path[0] != '@') || plen >= sizeof(sun.sun_path))
		return;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, notify_path, plen);
	if (notify_path[0] == '@')
		sun.sun_path[0] = '\0';
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + plen);
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	if (sendto(fd, state, strlen(state), MSG_NOSIGNAL, (struct sockaddr *)&sun, len) < 0)
		log_warn("sd_notify failed socket=%s error=%s", log_q(notify_path), log_q(strerror(errno)));
	close(fd);
}

void
master_notify_ready(struct master *m)
{
	char msg[64];

	if (m->announced)
		return;
	m->announced = true;
	if (m->ready_fd >= 0) {
		if (write(m->ready_fd, "\n", 1) != 1)
			log_warn("ready fd write failed fd=%d error=%s", m->ready_fd, log_q(strerror(errno)));
		close(m->ready_fd);
		m->ready_fd = -1;
	}
	snprintf(msg, sizeof(msg), "READY=1\nMAINPID=%ld", (long)getpid());
	master_notify(msg);
	{
		const struct mservice *sv;
		int n = 0;

		for (sv = m->services; sv != NULL; sv = sv->next)
			n++;
		log_notice("ready services=%d pid=%ld", n, (long)getpid());
	}
}
