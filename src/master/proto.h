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
 * hand, then exit; do not accept again), RELOAD (castord reloaded its
 * configuration and the TLS certificates loaded: the byte carries the new
 * bundle's descriptor (SCM_RIGHTS), which takes the old one's place;
 * before accepting again, reread castor.conf and renew the TLS context).  End of file on the channel
 * means the other side is gone: a child whose castord vanished exits.
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

#endif
