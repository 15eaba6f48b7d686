/*
 * net.h - sockets: listeners on a struct netaddr, connect with a
 * timeout, descriptor flags, peer addresses.
 *
 * Every descriptor returned here is O_CLOEXEC.  Listeners are
 * non-blocking (several processes poll and accept on one listener; the
 * losers get EAGAIN); connected sockets are blocking.
 */
#ifndef CASTOR_NET_H
#define CASTOR_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "lib/err.h"
#include "lib/netaddr.h"

/* Longest text net_sockaddr_format() writes: "[v6]:port" or a unix path. */
#define NET_ADDRSTR_MAX 128

/* Open a listening socket on `a` with SO_REUSEADDR: TCP on the address
 * (a host name is resolved, the first address that binds wins; "" binds
 * [::] dual-stack, or 0.0.0.0 where IPv6 is missing), or a unix-domain
 * socket at a.path (a stale socket file there is removed first; a file
 * of any other type is an error; mode 0666, the directory guards
 * access).  Returns the fd (non-blocking, close-on-exec) or -1 with err. */
int net_listen(const struct netaddr *a, int backlog, struct err *err);
/* Stop listening at once for every process that shares the listener
 * (shutdown(2): queued and new connections are refused), then close it.
 * A unix socket's path is unlinked when `unix_path` is not NULL. */
void net_listen_close(int fd, const char *unix_path);

/* Connect to `a` within timeout_ms (<= 0: no limit), trying each
 * resolved address in turn.  Returns a blocking, close-on-exec fd or -1
 * with err (ERR_TEMP: refused, unreachable, timed out). */
int net_connect(const struct netaddr *a, int timeout_ms, struct err *err);

int net_set_nonblock(int fd, bool on);
int net_set_cloexec(int fd, bool on);
int net_set_nodelay(int fd);

/* "127.0.0.1:143", "[::1]:143", "unix:/path" or "unix"; returns length or -1. */
int net_sockaddr_format(const struct sockaddr *sa, socklen_t len, char *buf, size_t size);
/* 127.0.0.0/8, ::1, ::ffff:127.0.0.0/104 and every unix-domain socket. */
bool net_sockaddr_is_loopback(const struct sockaddr *sa, socklen_t len);
/* The peer of a connected socket, formatted; -1 (and "unknown") when not a socket. */
int net_peer(int fd, char *buf, size_t size);
/* Is the peer of fd on this machine (see net_sockaddr_is_loopback)?
 * false when fd is not a socket (a pipe in stdin mode is not a peer). */
bool net_peer_is_loopback(int fd);

#endif
