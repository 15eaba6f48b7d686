#!/usr/bin/python3
"""bench/lmtp_sink.py - an LMTP server that stores nothing, or one durable write
per delivery: the two ceilings bench/limits.py measures with the very client
lmtp_deliver uses (common.deliver_parallel: smtplib, one process per
connection).

  lmtp_sink.py null              answer every command at once (LHLO, MAIL,
                                 RCPT, DATA -> one 250 per recipient, RSET,
                                 NOOP, QUIT); the client's own ceiling
  lmtp_sink.py fsync FILE        the same, but before its 250s each message is
                                 appended to FILE (O_APPEND, shared by every
                                 connection) and fdatasync'ed: one durable
                                 write per delivery, nothing else

One forked process per connection (as castord and cyrmaster serve LMTP), on
127.0.0.1, port chosen by the kernel; prints "PORT\\n" on stdout once it
listens, and serves until SIGTERM.  Bounded: at most 10,000,000 commands a
connection, lines of at most 64 KiB.  Python 3 standard library only.
"""
import os
import signal
import socket
import socketserver
import sys

MODE = "null"
FILE = None
MAX_CMDS = 10_000_000


class Sink(socketserver.StreamRequestHandler):
    wbufsize = 0

    def handle(self):
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fd = os.open(FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if MODE == "fsync" else None
        w, r = self.wfile, self.rfile
        w.write(b"220 sink LMTP ready\r\n")
        nrcpt = 0
        try:
            for _ in range(MAX_CMDS):
                line = r.readline(65536)
                if not line:
                    return
                cmd = line[:4].upper()
                if cmd == b"LHLO":
                    w.write(b"250-sink\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES\r\n")
                elif cmd == b"MAIL":
                    nrcpt = 0
                    w.write(b"250 2.1.0 ok\r\n")
                elif cmd == b"RCPT":
                    nrcpt += 1
                    w.write(b"250 2.1.5 ok\r\n")
                elif cmd == b"DATA":
                    w.write(b"354 go ahead\r\n")
                    parts = []
                    for _ in range(MAX_CMDS):
                        ln = r.readline(65536)
                        if not ln or ln == b".\r\n":
                            break
                        parts.append(ln)
                    if fd is not None:
                        os.write(fd, b"".join(parts))
                        os.fdatasync(fd)
                    w.write(b"250 2.0.0 ok\r\n" * max(1, nrcpt))
                    nrcpt = 0
                elif cmd == b"QUIT":
                    w.write(b"221 2.0.0 bye\r\n")
                    return
                else:
                    w.write(b"250 2.0.0 ok\r\n")
        except OSError:
            return
        finally:
            if fd is not None:
                os.close(fd)


class Server(socketserver.ForkingTCPServer):
    allow_reuse_address = True
    max_children = 64


def main(argv):
    global MODE, FILE
    if not argv or argv[0] not in ("null", "fsync") or (argv[0] == "fsync") != (len(argv) == 2):
        sys.stderr.write("usage: lmtp_sink.py null | lmtp_sink.py fsync FILE\n")
        return 2
    MODE = argv[0]
    FILE = argv[1] if MODE == "fsync" else None
    srv = Server(("127.0.0.1", 0), Sink)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(srv.server_address[1], flush=True)
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
