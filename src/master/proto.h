/*
 * proto.h - what castord and a service child agree on: inherited
 * descriptors, environment and the status-socket bytes.
 *
 * A SERVICES child is exec'd with
 *     fd 0          /dev/null
 *     fd 1, 2       castord's stdout/stderr (the log when -D or -L)
 *     fd 3          the listening socket (non-blocking, shared by every
 *                   child of the service; accept(2) races are expected)
 *     fd 4          its end of a private AF_UNIX stream socketpair with
 *                   castord: the status channel
 *     fd 5          when CASTOR_TLS_FD says so: a sealed memfd holding the
 *                   TLS certificates and keys castord last read and
 *                   checked (lib/tlsbundle.h)
 * and these environment variables:
 *     CASTOR_CONFIG      absolute path of castor.conf (every child, every kind)
 *     CASTOR_SERVICE     the services.conf entry name ("imap", "imaps")
 *     CASTOR_LISTEN      the listen= address as written
 *     CASTOR_TLS         "1" when the entry has tls=yes
 *     CASTOR_TLS_FD      "5" when fd 5 is the TLS bundle (absent: none yet;
 *                        the service reads the files castor.conf names)
 *     CASTOR_MAXUSE      connections to serve before exiting
 *     CASTOR_MASTER_PID  castord's pid (a child whose parent differs exits)
 *     CASTOR_LOG         "stderr" or "syslog": where castord itself logs
 *     CASTOR_MAXPERIP    set (> 0) when the entry has maxperip=: report each
 *                        client's address and wait for castord's verdict
 *     CASTOR_REFUSE      the protocol's refusal line (no CRLF), "" for none
 * and SIGQUIT blocked (the skeleton unblocks it once its handler is
 * installed, so a SIGQUIT sent during start-up is held, not lost).
 * START, EVENTS, DAEMON and SHUTDOWN children get fd 0-2, an empty
 * signal mask, default signal actions, and the
 * CASTOR_CONFIG/CASTOR_SERVICE/CASTOR_MASTER_PID/CASTOR_LOG variables
 * only.
 *
 * Status channel: single bytes.  Child to castord: READY (idle, waiting
 * in accept), BUSY (took a connection), EXITING (will not accept again:
 * maxuse reached or asked to quit).  castord to child: RETIRE (the
 * service was changed or removed by a reload: finish the connection in
 * hand, then exit; do not accept again; also sent to an idle child
 * trimmed after maxidle), RELOAD (castord reloaded its configuration and
 * the TLS certificates loaded: the byte carries the new bundle's
 * descriptor (SCM_RIGHTS), which takes the old one's place; before
 * accepting again, reread castor.conf and renew the TLS context).  End of
 * file on the channel means the other side is gone: a child whose castord
 * vanished exits.
 *
 * Per-address caps (CASTOR_MAXPERIP set): after accept(2) on a TCP
 * client the child sends PEER, the address (proto_peer_addr(), at most
 * PROTO_PEER_MAX bytes of [0-9a-fA-F.:]) and '\n' instead of BUSY
 * (castord counts it as BUSY), then waits for ADMIT (serve it) or DENY
 * (write CASTOR_REFUSE and CRLF unless the listener is tls=yes, close,
 * report READY again).  A child that has no answer within
 * PROTO_VERDICT_WAIT_MS serves the client.  Other bytes (RETIRE) may
 * arrive before the answer.  A child sends READY or EXITING after a
 * client *before* it closes that connection, so a client that has seen
 * the close can rely on castord knowing the slot is free (castord also
 * peeks for such an unread byte before it counts a child against a cap).
 */
#ifndef CASTOR_MASTER_PROTO_H
#define CASTOR_MASTER_PROTO_H

#define PROTO_LISTEN_FD 3
#define PROTO_STATUS_FD 4
#define PROTO_TLS_FD 5

#define PROTO_READY   'R'
#define PROTO_BUSY    'B'
#define PROTO_EXITING 'X'
#define PROTO_RETIRE  'Q'
#define PROTO_RELOAD  'H'
#define PROTO_PEER    'P'
#define PROTO_ADMIT   'A'
#define PROTO_DENY    'D'

#define PROTO_PEER_MAX 46          /* INET6_ADDRSTRLEN */
#define PROTO_VERDICT_WAIT_MS 5000

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>

/* The numeric address of fd's peer ("192.0.2.7", "2001:db8::1"; an
 * IPv4-mapped IPv6 address as IPv4): 0, or -1 for anything but TCP/IP. */
static inline int
proto_peer_addr(int fd, char *buf, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	const void *a;
	int af;

	memset(&ss, 0, sizeof(ss));
	if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0)
		return -1;
	if (ss.ss_family == AF_INET) {
		af = AF_INET;
		a = &((struct sockaddr_in *)&ss)->sin_addr;
	} else if (ss.ss_family == AF_INET6) {
		const struct in6_addr *a6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;

		af = AF_INET6;
		a = a6;
		if (IN6_IS_ADDR_V4MAPPED(a6)) {
			af = AF_INET;
			a = &a6->s6_addr[12];
		}
	} else {
		return -1;
	}
	return inet_ntop(af, a, buf, (socklen_t)size) != NULL ? 0 : -1;
}

#endif
