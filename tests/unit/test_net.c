/* test_net.c - unit tests for lib/net.c (listeners, connect, peers) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "lib/net.h"
#include "lib/str.h"

static uint16_t
bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);

	assert_int_equal(getsockname(fd, (struct sockaddr *)&ss, &len), 0);
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* A listener on a free loopback port (tries a few random ones). */
static int
listen_loopback(const char *host, struct netaddr *a)
{
	struct err err = { 0 };
	int i, fd = -1;

	srand((unsigned)time(NULL) ^ (unsigned)getpid());
	for (i = 0; i < 50 && fd < 0; i++) {
		memset(a, 0, sizeof(*a));
		a->kind = NETADDR_TCP;
		str_lcpy(a->host, host, sizeof(a->host));
		a->port = (uint16_t)(20000 + rand() % 40000);
		fd = net_listen(a, 16, &err);
	}
	assert_true(fd >= 0);
	return fd;
}

static void
test_listen_connect_peer_v4(void **state)
{
	struct netaddr a;
	struct err err = { 0 };
	char peer[NET_ADDRSTR_MAX];
	int lfd, cfd, sfd, fl;

	(void)state;
	lfd = listen_loopback("127.0.0.1", &a);
	assert_int_equal(bound_port(lfd), a.port);
	fl = fcntl(lfd, F_GETFL);
	assert_true(fl & O_NONBLOCK);
	assert_true(fcntl(lfd, F_GETFD) & FD_CLOEXEC);
	/* nothing waiting: a non-blocking accept says so */
	assert_int_equal(accept(lfd, NULL, NULL), -1);
	assert_true(errno == EAGAIN || errno == EWOULDBLOCK);

	cfd = net_connect(&a, 2000, &err);
	assert_true(cfd >= 0);
	assert_false(fcntl(cfd, F_GETFL) & O_NONBLOCK);
	assert_true(fcntl(cfd, F_GETFD) & FD_CLOEXEC);
	sfd = accept(lfd, NULL, NULL);
	assert_true(sfd >= 0);
	assert_true(net_peer(sfd, peer, sizeof(peer)) > 0);
	assert_true(str_has_prefix(peer, "127.0.0.1:"));
	assert_true(net_peer_is_loopback(sfd));
	assert_true(net_peer_is_loopback(cfd));
	assert_int_equal(net_set_nodelay(cfd), 0);
	assert_int_equal(net_set_nonblock(cfd, true), 0);
	assert_true(fcntl(cfd, F_GETFL) & O_NONBLOCK);
	assert_int_equal(net_set_cloexec(cfd, false), 0);
	assert_false(fcntl(cfd, F_GETFD) & FD_CLOEXEC);
	close(sfd);
	close(cfd);

	/* after net_listen_close, connections are refused */
	net_listen_close(lfd, NULL);
	cfd = net_connect(&a, 1000, &err);
	assert_int_equal(cfd, -1);
	assert_int_equal(err.kind, ERR_TEMP);
}

static void
test_shutdown_stops_shared_listener(void **state)
{
	struct netaddr a;
	struct err err = { 0 };
	int lfd, copy, cfd;

	(void)state;
	lfd = listen_loopback("127.0.0.1", &a);
	copy = dup(lfd);  /* as a child process would hold it */
	net_listen_close(lfd, NULL);
	cfd = net_connect(&a, 1000, &err);
	assert_int_equal(cfd, -1);
	assert_int_equal(accept(copy, NULL, NULL), -1);
	close(copy);
}

static void
test_listen_v6(void **state)
{
	struct netaddr a;
	struct err err = { 0 };
	char peer[NET_ADDRSTR_MAX];
	int lfd, cfd, sfd, probe;

	(void)state;
	probe = socket(AF_INET6, SOCK_STREAM, 0);
	if (probe < 0) {
		skip();
		return;
	}
	close(probe);
	lfd = listen_loopback("::1", &a);
	cfd = net_connect(&a, 2000, &err);
	if (cfd < 0) {  /* no ::1 on this host */
		close(lfd);
		skip();
		return;
	}
	sfd = accept(lfd, NULL, NULL);
	assert_true(sfd >= 0);
	assert_true(net_peer(sfd, peer, sizeof(peer)) > 0);
	assert_true(str_has_prefix(peer, "[::1]:"));
	assert_true(net_peer_is_loopback(sfd));
	close(sfd);
	close(cfd);
	close(lfd);
}

static void
test_unix_listener(void **state)
{
	char dir[] = "/tmp/test_net.XXXXXX";
	struct netaddr a;
	struct err err = { 0 };
	char peer[NET_ADDRSTR_MAX];
	struct stat st;
	int lfd, lfd2, cfd, sfd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	memset(&a, 0, sizeof(a));
	a.kind = NETADDR_UNIX;
	snprintf(a.path, sizeof(a.path), "%s/s.sock", dir);
	lfd = net_listen(&a, 4, &err);
	assert_true(lfd >= 0);
	assert_int_equal(stat(a.path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	/* a live socket is not taken over */
	lfd2 = net_listen(&a, 4, &err);
	assert_int_equal(lfd2, -1);
	assert_int_equal(err.kind, ERR_EXISTS);
	cfd = net_connect(&a, 1000, &err);
	assert_true(cfd >= 0);
	sfd = accept(lfd, NULL, NULL);
	assert_true(sfd >= 0);
	assert_true(net_peer(sfd, peer, sizeof(peer)) > 0);
	assert_true(str_has_prefix(peer, "unix"));
	assert_true(net_peer_is_loopback(sfd));
	close(sfd);
	close(cfd);
	/* a stale socket file (nobody listening) is replaced */
	close(lfd);
	lfd = net_listen(&a, 4, &err);
	assert_true(lfd >= 0);
	net_listen_close(lfd, a.path);
	assert_int_equal(stat(a.path, &st), -1);
	/* a regular file is never removed */
	close(open(a.path, O_CREAT | O_WRONLY, 0600));
	assert_int_equal(net_listen(&a, 4, &err), -1);
	assert_int_equal(stat(a.path, &st), 0);
	unlink(a.path);
	rmdir(dir);
}

static void
test_loopback_classes(void **state)
{
	struct sockaddr_in s4;
	struct sockaddr_in6 s6;
	int pfd[2];

	(void)state;
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	inet_pton(AF_INET, "127.1.2.3", &s4.sin_addr);
	assert_true(net_sockaddr_is_loopback((struct sockaddr *)&s4, sizeof(s4)));
	inet_pton(AF_INET, "10.0.0.1", &s4.sin_addr);
	assert_false(net_sockaddr_is_loopback((struct sockaddr *)&s4, sizeof(s4)));
	inet_pton(AF_INET, "128.0.0.1", &s4.sin_addr);
	assert_false(net_sockaddr_is_loopback((struct sockaddr *)&s4, sizeof(s4)));

	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "::1", &s6.sin6_addr);
	assert_true(net_sockaddr_is_loopback((struct sockaddr *)&s6, sizeof(s6)));
	inet_pton(AF_INET6, "::ffff:127.0.0.9", &s6.sin6_addr);
	assert_true(net_sockaddr_is_loopback((struct sockaddr *)&s6, sizeof(s6)));
	inet_pton(AF_INET6, "::ffff:192.0.2.1", &s6.sin6_addr);
	assert_false(net_sockaddr_is_loopback((struct sockaddr *)&s6, sizeof(s6)));
	inet_pton(AF_INET6, "2001:db8::1", &s6.sin6_addr);
	assert_false(net_sockaddr_is_loopback((struct sockaddr *)&s6, sizeof(s6)));
	assert_false(net_sockaddr_is_loopback(NULL, 0));

	/* a pipe has no peer */
	assert_int_equal(pipe(pfd), 0);
	assert_false(net_peer_is_loopback(pfd[0]));
	close(pfd[0]);
	close(pfd[1]);
}

static void
test_format(void **state)
{
	struct sockaddr_in6 s6;
	struct sockaddr_in s4;
	char out[NET_ADDRSTR_MAX], tiny[6];

	(void)state;
	memset(&s4, 0, sizeof(s4));
	s4.sin_family = AF_INET;
	s4.sin_port = htons(143);
	inet_pton(AF_INET, "192.0.2.7", &s4.sin_addr);
	assert_int_equal(net_sockaddr_format((struct sockaddr *)&s4, sizeof(s4), out, sizeof(out)), 13);
	assert_string_equal(out, "192.0.2.7:143");
	assert_int_equal(net_sockaddr_format((struct sockaddr *)&s4, sizeof(s4), tiny, sizeof(tiny)), -1);
	memset(&s6, 0, sizeof(s6));
	s6.sin6_family = AF_INET6;
	s6.sin6_port = htons(993);
	inet_pton(AF_INET6, "2001:db8::2", &s6.sin6_addr);
	assert_true(net_sockaddr_format((struct sockaddr *)&s6, sizeof(s6), out, sizeof(out)) > 0);
	assert_string_equal(out, "[2001:db8::2]:993");
}

static void
test_connect_timeout_and_refused(void **state)
{
	struct netaddr a;
	struct err err = { 0 };
	int lfd, fd;

	(void)state;
	/* refused: a port that was just closed */
	lfd = listen_loopback("127.0.0.1", &a);
	close(lfd);
	fd = net_connect(&a, 500, &err);
	assert_int_equal(fd, -1);
	assert_non_null(strstr(err.msg, "refused"));
	/* unix path that does not exist */
	memset(&a, 0, sizeof(a));
	a.kind = NETADDR_UNIX;
	str_lcpy(a.path, "/nonexistent/dir/sock", sizeof(a.path));
	assert_int_equal(net_connect(&a, 500, &err), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_listen_connect_peer_v4),
		cmocka_unit_test(test_shutdown_stops_shared_listener),
		cmocka_unit_test(test_listen_v6),
		cmocka_unit_test(test_unix_listener),
		cmocka_unit_test(test_loopback_classes),
		cmocka_unit_test(test_format),
		cmocka_unit_test(test_connect_timeout_and_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
