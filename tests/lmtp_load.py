#!/usr/bin/python3
"""tests/lmtp_load.py - bounded LMTP load generator for lmtpd.

Delivers N messages of SIZE bytes from C concurrent client processes, each
message to R recipients (users given with --users, cycled), over raw sockets
with PIPELINING (MAIL, RCPT..., DATA in one write; the message and its end
marker in one write), and prints one JSON line:
  {"messages": N, "clients": C, "rcpts": R, "seconds": s, "msgs_per_s": x,
   "deliveries_per_s": x*R, "errors": [...]}
Every reply is checked: a message counts only when each recipient got 250.

  python3 tests/lmtp_load.py --port 31002 --users u1,u2,u3,u4,u5 \
      --messages 10000 --clients 4 --rcpts 5
Bounded: --timeout (default 600 s) stops every client.
"""
import argparse
import json
import multiprocessing as mp
import os
import socket
import sys
import time


def make_msg(i, size, tag):
    head = (f"From: load@example.org\r\nTo: rcpt@example.org\r\nSubject: load {tag} {i}\r\n"
            f"Message-ID: <{tag}.{i}@load.example.org>\r\nDate: Thu, 1 Jan 2026 00:00:00 +0000\r\n\r\n")
    body_len = max(0, size - len(head))
    line = ("x" * 74 + "\r\n")
    body = (line * (body_len // len(line) + 1))[:body_len]
    if not body.endswith("\r\n"):
        body = body[:-2] + "\r\n" if len(body) >= 2 else "\r\n"
    return (head + body).encode()


class Reader:
    def __init__(self, s):
        self.s = s
        self.buf = b""

    def reply(self, deadline):
        """One complete reply (possibly multi-line): (code, text of last line)."""
        lines = []
        while True:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no reply")
                self.s.settimeout(left)
                d = self.s.recv(65536)
                if not d:
                    raise EOFError("connection closed")
                self.buf += d
            ln, self.buf = self.buf.split(b"\n", 1)
            ln = ln.rstrip(b"\r")
            lines.append(ln)
            if len(ln) < 4 or ln[3:4] != b"-":
                return int(ln[:3]), ln.decode(errors="replace")


def client(k, port, users, rcpts, first, count, size, tag, deadline, q):
    errors = []
    ok = 0
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=30)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        r = Reader(s)
        code, _ = r.reply(deadline)
        assert code == 220
        s.sendall(b"LHLO load.example.org\r\n")
        code, _ = r.reply(deadline)
        assert code == 250
        for i in range(first, first + count):
            if time.monotonic() > deadline:
                errors.append("deadline")
                break
            rc = [users[(i * rcpts + j) % len(users)] for j in range(rcpts)]
            cmds = b"MAIL FROM:<load@example.org>\r\n" + b"".join(
                b"RCPT TO:<%s@example.org>\r\n" % u.encode() for u in rc) + b"DATA\r\n"
            s.sendall(cmds)
            codes = [r.reply(deadline)[0] for _ in range(rcpts + 2)]
            if codes[0] != 250 or any(c != 250 for c in codes[1:-1]) or codes[-1] != 354:
                errors.append(f"msg {i}: {codes}")
                s.sendall(b".\r\nRSET\r\n")
                r.reply(deadline)
                r.reply(deadline)
                continue
            s.sendall(make_msg(i, size, tag) + b".\r\n")
            res = [r.reply(deadline) for _ in range(rcpts)]
            if all(c == 250 for c, _ in res):
                ok += 1
            else:
                errors.append(f"msg {i}: {res}")
        s.sendall(b"QUIT\r\n")
        s.close()
    except Exception as e:  # noqa: BLE001 - reported to the parent
        errors.append(f"client {k}: {e!r}")
    q.put((ok, errors[:5]))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--users", required=True, help="comma-separated user names")
    ap.add_argument("--messages", type=int, default=10000)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--rcpts", type=int, default=1)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--timeout", type=float, default=600)
    a = ap.parse_args(argv)
    users = a.users.split(",")
    tag = f"t{os.getpid()}x{int(time.time())}"
    q = mp.Queue()
    per = [a.messages // a.clients + (1 if k < a.messages % a.clients else 0) for k in range(a.clients)]
    start = time.monotonic()
    deadline = start + a.timeout
    ps, first = [], 0
    for k in range(a.clients):
        p = mp.Process(target=client, args=(k, a.port, users, a.rcpts, first, per[k], a.size, tag, deadline, q))
        first += per[k]
        p.start()
        ps.append(p)
    ok, errors = 0, []
    for _ in ps:
        o, e = q.get(timeout=a.timeout + 30)
        ok += o
        errors += e
    secs = time.monotonic() - start
    for p in ps:
        p.join(timeout=10)
    out = {"messages": ok, "clients": a.clients, "rcpts": a.rcpts, "size": a.size,
           "seconds": round(secs, 3), "msgs_per_s": round(ok / secs, 1),
           "deliveries_per_s": round(ok * a.rcpts / secs, 1), "errors": errors[:10]}
    print(json.dumps(out))
    return 0 if ok == a.messages else 1


if __name__ == "__main__":
    sys.exit(main())
