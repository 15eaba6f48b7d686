/*
 * net.c - sockets: listeners, connect with a timeout, flags, peers.
 * See net.h.  Uses only the fields of struct netaddr (no netaddr_*
 * calls), so it links without the parser.
 */
#include "lib/net.h"
#include "lib/clock.h"
#include "lib/str.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int
net_set_nonblock(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	fl = on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK);
	return fcntl(fd, F_SETFL, fl) < 0 ? -1 : 0;
}

int
net_set_cloexec(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFD);

	if (fl < 0)
		return -1;
	fl = on ? (fl | FD_CLOEXEC) : (fl & ~FD_CLOEXEC);
	return fcntl(fd, F_SETFD, fl) < 0 ? -1 : 0;
}

int
net_set_nodelay(int fd)
{
	int one = 1;

	return setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static const char *
net_host_text(const struct netaddr *a)
{
	return a->host[0] ? a->host : "*";
}

static int
net_listen_unix(const struct netaddr *a, int backlog, struct err *err)
{
	struct sockaddr_un sun;
	struct stat st;
	int fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (str_lcpy(sun.sun_path, a->path, sizeof(sun.sun_path)) >= sizeof(sun.sun_path))
		return err_set(err, ERR_INVALID, "unix socket path too long: %s", a->path);
	if (lstat(a->path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode))
			return err_set(err, ERR_EXISTS, "%s exists and is not a socket", a->path);
		/* a socket nobody listens on is stale; a live one is in use */
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
			close(fd);
			return err_set(err, ERR_EXISTS, "%s: another process is listening there", a->path);
		}
		if (fd >= 0)
			close(fd);
		if (unlink(a->path) < 0 && errno != ENOENT)
			return err_errno(err, ERR_PERM, "unlink stale socket %s", a->path);
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err_errno(err, ERR_TEMP, "socket(AF_UNIX)");
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		err_errno(err, ERR_TEMP, "bind %s", a->path);
		close(fd);
		return -1;
	}
	if (chmod(a->path, 0666) < 0 || listen(fd, backlog) < 0) {
		err_errno(err, ERR_TEMP, "listen %s", a->path);
		close(fd);
		unlink(a->path);
		return -1;
	}
	return fd;
}

static int
net_listen_one(const struct sockaddr *sa, socklen_t len, int backlog, bool dual, struct err *err)
{
	int fd, one = 1, zero = 0;

	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return err_errno(err, ERR_TEMP, "socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (sa->sa_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, dual ? &zero : &one, sizeof(int));
	if (bind(fd, sa, len) < 0 || listen(fd, backlog) < 0) {
		err_errno(err, errno == EACCES ? ERR_PERM : ERR_TEMP, "bind");
		close(fd);
		return -1;
	}
	return fd;
}

int
net_listen(const struct netaddr *a, int backlog, struct err *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[8];
	int fd = -1, rc;

	if (a->kind == NETADDR_UNIX)
		return net_listen_unix(a, backlog, err);
	if (a->kind != NETADDR_TCP)
		return err_set(err, ERR_INVALID, "bad address kind");
	if (backlog <= 0)
		backlog = 128;
	snprintf(port, sizeof(port), "%u", (unsigned)a->port);
	if (a->host[0] == '\0') {
		struct sockaddr_in6 s6;
		struct sockaddr_in s4;

		memset(&s6, 0, sizeof(s6));
		s6.sin6_family = AF_INET6;
		s6.sin6_addr = in6addr_any;
		s6.sin6_port = htons(a->port);
		fd = net_listen_one((struct sockaddr *)&s6, sizeof(s6), backlog, true, err);
		if (fd >= 0)
			return fd;
		memset(&s4, 0, sizeof(s4));
		s4.sin_family = AF_INET;
		s4.sin_addr.s_addr = htonl(INADDR_ANY);
		s4.sin_port = htons(a->port);
		fd = net_listen_one((struct sockaddr *)&s4, sizeof(s4), backlog, false, err);
		if (fd < 0)
			err_prefix(err, "listen *:%s", port);
		return fd;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(a->host, port, &hints, &res);
	if (rc != 0)
		return err_set(err, ERR_TEMP, "listen %s:%s: %s", a->host, port, gai_strerror(rc));
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = net_listen_one(ai->ai_addr, ai->ai_addrlen, backlog, false, err);
		if (fd >= 0)
			break;
	}
	freeaddrinfo(res);
	if (fd < 0)
		err_prefix(err, "listen %s:%s", net_host_text(a), port);
	return fd;
}

void
net_listen_close(int fd, const char *unix_path)
{
	if (fd < 0)
		return;
	/* children hold copies of the listener: shutdown stops it for all */
	shutdown(fd, SHUT_RDWR);
	close(fd);
	if (unix_path != NULL && unix_path[0] != '\0')
		unlink(unix_path);
}

/* 0 connected, -1 failed (errno set). */
static int
net_connect_one(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms)
{
	struct pollfd pfd;
	long deadline;
	socklen_t elen = sizeof(int);
	int e = 0, rc;

	if (timeout_ms <= 0) {
		do
			rc = connect(fd, sa, len);
		while (rc < 0 && errno == EINTR);
		/* an interrupted connect goes on in the background: wait for it */
		if (rc < 0 && errno != EALREADY && errno != EINPROGRESS)
			return -1;
		if (rc == 0)
			return 0;
		timeout_ms = -1;
	} else {
		if (net_set_nonblock(fd, true) < 0)
			return -1;
		if (connect(fd, sa, len) == 0)
			return net_set_nonblock(fd, false);
		if (errno != EINPROGRESS && errno != EINTR)
			return -1;
	}
	deadline = timeout_ms < 0 ? 0 : clock_mono_ms() + timeout_ms;
	for (;;) {
		int left = -1;

		if (timeout_ms >= 0) {
			left = (int)(deadline - clock_mono_ms());
			if (left <= 0) {
				errno = ETIMEDOUT;
				return -1;
			}
		}
		pfd.fd = fd;
		pfd.events = POLLOUT;
		pfd.revents = 0;
		rc = poll(&pfd, 1, left);
		if (rc < 0 && errno == EINTR)
			continue;
		if (rc < 0)
			return -1;
		if (rc > 0)
			break;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &elen) < 0)
		return -1;
	if (e != 0) {
		errno = e;
		return -1;
	}
	return net_set_nonblock(fd, false);
}

int
net_connect(const struct netaddr *a, int timeout_ms, struct err *err)
{
	struct addrinfo hints, *res = NULL, *ai;
	char port[8];
	int fd = -1, rc;

	if (a->kind == NETADDR_UNIX) {
		struct sockaddr_un sun;

		memset(&sun, 0, sizeof(sun));
		sun.sun_family = AF_UNIX;
		if (str_lcpy(sun.sun_path, a->path, sizeof(sun.sun_path)) >= sizeof(sun.sun_path))
			return err_set(err, ERR_INVALID, "unix socket path too long: %s", a->path);
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0)
			return err_errno(err, ERR_TEMP, "socket(AF_UNIX)");
		if (net_connect_one(fd, (struct sockaddr *)&sun, sizeof(sun), timeout_ms) < 0) {
			err_errno(err, ERR_TEMP, "connect %s", a->path);
			close(fd);
			return -1;
		}
		return fd;
	}
	if (a->kind != NETADDR_TCP)
		return err_set(err, ERR_INVALID, "bad address kind");
	snprintf(port, sizeof(port), "%u", (unsigned)a->port);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	rc = getaddrinfo(a->host[0] ? a->host : "localhost", port, &hints, &res);
	if (rc != 0)
		return err_set(err, ERR_TEMP, "connect %s:%s: %s", net_host_text(a), port, gai_strerror(rc));
	err_set(err, ERR_TEMP, "connect %s:%s: no address", net_host_text(a), port);
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err_errno(err, ERR_TEMP, "socket");
			continue;
		}
		if (net_connect_one(fd, ai->ai_addr, ai->ai_addrlen, timeout_ms) == 0)
			break;
		err_errno(err, ERR_TEMP, "connect %s:%s", net_host_text(a), port);
		close(fd);
		fd = -1;
	}
	freeaddrinfo(res);
	if (fd >= 0)
		err_clear(err);
	return fd;
}

int
net_sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size)
{
	char host[INET6_ADDRSTRLEN];

	if (size == 0)
		return -1;
	buf[0] = '\0';
	if (sa == NULL || len < (socklen_t)sizeof(sa->sa_family))
		return str_fmt(buf, size, "unknown");
	switch (sa->sa_family) {
	case AF_INET: {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		if (inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host)) == NULL)
			return -1;
		return str_fmt(buf, size, "%s:%u", host, (unsigned)ntohs(s4->sin_port));
	}
	case AF_INET6: {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;

		if (inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host)) == NULL)
			return -1;
		return str_fmt(buf, size, "[%s]:%u", host, (unsigned)ntohs(s6->sin6_port));
	}
	case AF_UNIX: {
		const struct sockaddr_un *su = (const struct sockaddr_un *)sa;
		size_t off = offsetof(struct sockaddr_un, sun_path);

		if ((size_t)len > off && su->sun_path[0] != '\0')
			return str_fmt(buf, size, "unix:%.*s", (int)((size_t)len - off), su->sun_path);
		return str_fmt(buf, size, "unix");
	}
	default:
		return str_fmt(buf, size, "af%d", sa->sa_family);
	}
}

bool
net_sockaddr_is_loopback(const struct sockaddr *sa, socklen_t len)
{
	if (sa == NULL || len < (socklen_t)sizeof(sa->sa_family))
		return false;
	switch (sa->sa_family) {
	case AF_UNIX:
		return true;
	case AF_INET: {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;

		return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	}
	case AF_INET6: {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		const unsigned char *b = s6->sin6_addr.s6_addr;

		if (IN6_IS_ADDR_LOOPBACK(&s6->sin6_addr))
			return true;
		return IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr) && b[12] == 127;
	}
	default:
		return false;
	}
}

int
net_peer(int fd, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) {
		if (size > 0)
			str_lcpy(buf, "unknown", size);
		return -1;
	}
	return net_sockaddr_format((struct sockaddr *)&ss, len, buf, size);
}

bool
net_peer_is_loopback(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return false;
	return net_sockaddr_is_loopback((struct sockaddr *)&ss, len);
}
