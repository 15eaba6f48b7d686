/*
 * master_tls.c - castord's copy of the service certificates: read at
 * start and on each reload (SIGHUP), checked by `castorctl tls-check`,
 * kept as a sealed memfd (lib/tlsbundle.h) that every service child gets
 * on fd 5 when started and with the RELOAD byte after a reload (proto.h).
 * castord itself does not link OpenSSL: the check runs in castorctl,
 * which builds the context exactly as a service does.
 *
 * A set that does not load (a missing or truncated file, a key that does
 * not match, a bad tls_ciphers) is not handed down: the children keep
 * the certificates they have, new children get the last set that loaded,
 * and the error, naming the file, is logged once here.  Without any good
 * set yet (none at start), children read the files themselves.
 */
#include "master/master.h"
#include "master/proto.h"

#include "lib/log.h"
#include "lib/str.h"
#include "lib/tlsbundle.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MASTER_TLS_CHECK_MS 10000

/* Run `castorctl tls-check --bundle-fd 3` on the memfd fd; 0 when it
 * loads, else -1 with what castorctl said in err. */
static int
master_tls_check(struct master *m, const struct conf *conf, const char *conf_path, int fd,
		 struct err *err)
{
	char *prog, out[1024];
	size_t got = 0;
	int pfd[2], status = 0;
	int64_t deadline = master_now() + MASTER_TLS_CHECK_MS;
	pid_t pid;

	(void)m;
	if ((prog = master_conf_find_program(conf, "castorctl", err)) == NULL)
		return -1;
	if (pipe2(pfd, O_CLOEXEC) < 0 || (pid = fork()) < 0) {
		free(prog);
		return err_errno(err, ERR_TEMP, "castorctl tls-check");
	}
	if (pid == 0) {
		int b = fcntl(fd, F_DUPFD, 10);

		if (b < 0 || dup2(b, 3) < 0 || dup2(pfd[1], STDOUT_FILENO) < 0 ||
		    dup2(pfd[1], STDERR_FILENO) < 0)
			_exit(127);
		execl(prog, "castorctl", "-q", "-C", conf_path, "tls-check", "--bundle-fd", "3", (char *)NULL);
		_exit(127);
	}
	free(prog);
	close(pfd[1]);
	for (;;) {
		struct pollfd p = { pfd[0], POLLIN, 0 };
		int64_t left = deadline - master_now();
		ssize_t n;

		if (left <= 0 || (poll(&p, 1, (int)left) < 0 && errno != EINTR) ||
		    master_now() >= deadline) {
			kill(pid, SIGKILL);
			str_lcpy(out, "castorctl tls-check timed out", sizeof(out));
			got = strlen(out);
			break;
		}
		n = read(pfd[0], out + got, sizeof(out) - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || (got += (size_t)n) == sizeof(out) - 1)
			break;
	}
	close(pfd[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	out[got] = '\0';
	while (got > 0 && (out[got - 1] == '\n' || out[got - 1] == '\r'))
		out[--got] = '\0';
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	return err_set(err, ERR_INVALID, "%s", str_has_prefix(out, "castorctl: ") ? out + 11 : out);
}

int
master_tls_load(struct master *m, const struct conf *conf, const char *conf_path, bool reload)
{
	struct err err = { 0 };
	struct tls_server_conf tc;
	struct tlsbundle *b;
	size_t nsni = 0;
	int fd = -1;

	tlsbundle_conf(conf, &tc);
	b = tlsbundle_read(&tc, &err);
	tlsbundle_conf_clear(&tc);
	if (b != NULL) {
		nsni = b->n - 1;
		fd = tlsbundle_memfd(b, &err);
		tlsbundle_free(&b);
		if (fd >= 0 && master_tls_check(m, conf, conf_path, fd, &err) < 0) {
			close(fd);
			fd = -1;
		}
	} else if (m->tls_fd < 0 && err.kind == ERR_NOTFOUND) {
		log_info("no TLS certificate error=%s", log_q(err.msg));
		return -1;
	}
	if (fd < 0) {
		if (m->tls_fd < 0)
			log_warn("TLS certificates do not load, services read them themselves error=%s",
				 log_q(err.msg));
		else
			log_error("tls reload failed, previous certificate kept error=%s", log_q(err.msg));
		return -1;
	}
	if (m->tls_fd >= 0)
		close(m->tls_fd);
	m->tls_fd = fd;
	log_info("tls certificates %s sni_names=%zu", reload ? "reloaded" : "loaded", nsni);
	return 0;
}
