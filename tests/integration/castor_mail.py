"""Helpers for the LMTP and POP3 tests (test_lmtp*.py, test_pop3*.py): a
castorctl-init'ed server root with users, castord started on it, LMTP
transactions with one reply per recipient, and reading what was stored.
"""
import hashlib
import os
import re
import select
import signal
import smtplib
import socket
import ssl
import time
from pathlib import Path

import castord_util  # noqa: F401  (fixes conftest.Proc.output after stop)
from conftest import SLOW, binpath, free_ports, run, wait_for


class MailServer:
    """A server root made by `castorctl init` (imap N, pop3 N+1, lmtp N+2,
    imaps N+4) with users, and castord running on it."""

    def __init__(self, procs, tmp, users=(("alice", "pw-alice"), ("bob", "pw-bob")), conf="",
                 services_extra="", env=None, role=None, start=True, name="root", init_args=()):
        self.procs = procs
        self.root = Path(tmp) / name
        self.base = free_ports(8)
        argv = [binpath("castorctl"), "init", self.root, "--port-base", self.base,
                "--servername", "mx.test"]
        if role:
            argv += ["--role", role]
        run(argv + list(init_args))
        self.conf = self.root / "castor.conf"
        with open(self.conf, "a") as f:
            f.write("shutdown_timeout: 5s\n" + conf)
        svc = (self.root / "services.conf").read_text()
        # the programs under test must be there, not commented out
        for prog in ("lmtpd", "pop3d"):
            assert re.search(rf'^\s+\w+\s+cmd="{prog}"', svc, re.M), f"{prog} missing:\n{svc}"
        if services_extra:
            svc = svc.replace("SERVICES {\n", "SERVICES {\n" + services_extra, 1)
            (self.root / "services.conf").write_text(svc)
        self.pop3_port = self.base + 1
        self.lmtp_port = self.base + 2
        self.env = env or {}
        self.users = dict(users)
        for u, pw in users:
            self.ctl("user", "add", u, "--password", pw)
        self.proc = None
        if start:
            self.start()

    def ctl(self, *args, check=True):
        return run([binpath("castorctl"), "-C", self.conf, *args], check=check)

    def start(self):
        r, w = os.pipe()
        self.proc = self.procs.start([binpath("castord"), "-C", self.conf, "-D", "--ready-fd", w],
                                     log=self.root / "castord.log", env=self.env, pass_fds=(w,))
        os.close(w)
        rl, _, _ = select.select([r], [], [], 15 * SLOW)
        assert rl, "castord not ready:\n" + self.log()
        assert os.read(r, 16) == b"\n", self.log()
        os.close(r)
        self.pid = self.proc.pid

    def log(self):
        return self.proc.output() if self.proc else ""

    def wait_log(self, pattern, timeout=10 * SLOW):
        rx = re.compile(pattern)
        return wait_for(lambda: rx.search(self.log()), timeout=timeout, what=f"log {pattern!r}")

    def sigquit(self):
        os.kill(self.pid, signal.SIGQUIT)

    def lmtp(self, lhlo="client.test"):
        c = smtplib.LMTP("127.0.0.1", self.lmtp_port, timeout=20 * SLOW)
        code, _ = c.ehlo(lhlo)
        assert code == 250
        return c

    def pop3(self):
        import poplib
        return poplib.POP3("127.0.0.1", self.pop3_port, timeout=20 * SLOW)

    def dump(self, user):
        """castorctl dump USER parsed: {mailbox name: [live record dicts]}."""
        out = self.ctl("dump", user).stdout
        boxes, cur = {}, None
        for line in out.splitlines():
            m = re.match(r'mailbox "((?:[^"\\]|\\.)*)"', line)
            if m:
                cur = m.group(1)
                boxes[cur] = []
                continue
            m = re.match(r"\s+record uid=(\d+) guid=([0-9a-f]+) size=(\d+)", line)
            if m and cur is not None and "expunged_modseq=" not in line:
                boxes[cur].append({"uid": int(m.group(1)), "guid": m.group(2), "size": int(m.group(3))})
        return boxes

    def count(self, user, mailbox="INBOX"):
        return len(self.dump(user).get(mailbox, []))

    def fetch_all(self, user):
        """Every INBOX message of user as bytes, read over POP3 (CRLF line ends)."""
        p = self.pop3()
        p.user(user)
        p.pass_(self.users[user])
        n, _ = p.stat()
        msgs = [b"\r\n".join(p.retr(i)[1]) + b"\r\n" for i in range(1, n + 1)]
        p.quit()
        return msgs

    def fetch_headers(self, user):
        """The header section (TOP n 0) of every INBOX message of user."""
        p = self.pop3()
        p.user(user)
        p.pass_(self.users[user])
        n, _ = p.stat()
        msgs = [b"\r\n".join(p.top(i, 0)[1]) + b"\r\n" for i in range(1, n + 1)]
        p.quit()
        return msgs


def lmtp_send(c, sender, rcpts, msg, mail_opts=()):
    """One LMTP transaction with smtplib: returns [(code, text)] per recipient
    in RCPT order (RCPT refusals included, DATA replies for the accepted ones,
    one each, as RFC 2033 says)."""
    code, resp = c.mail(sender, list(mail_opts))
    if code != 250:
        c.rset()
        return [(code, resp.decode())] * len(rcpts)
    out, accepted = [], []
    for r in rcpts:
        code, resp = c.rcpt(r)
        out.append((code, resp.decode()))
        if code == 250:
            accepted.append(len(out) - 1)
    if not accepted:
        c.rset()
        return out
    if isinstance(msg, str):
        msg = msg.encode()
    code, resp = c.data(msg)
    replies = [(code, resp.decode())]
    for _ in accepted[1:]:
        code, resp = c.getreply()
        replies.append((code, resp.decode()))
    for i, rep in zip(accepted, replies):
        out[i] = rep
    return out


class Raw:
    """A raw line client (for pipelining, BDAT and byte-exact tests)."""

    def __init__(self, port, timeout=10 * SLOW):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def line(self, timeout=10 * SLOW):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line; have {self.buf!r}")
            self.s.settimeout(left)
            d = self.s.recv(65536)
            if not d:
                raise EOFError(f"closed; have {self.buf!r}")
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r").decode(errors="replace")

    def reply(self, timeout=10 * SLOW):
        """A whole SMTP reply: (code, [lines])."""
        lines = []
        while True:
            ln = self.line(timeout)
            lines.append(ln)
            if len(ln) < 4 or ln[3] != "-":
                return int(ln[:3]), lines

    def closed(self, timeout=5 * SLOW):
        self.s.settimeout(timeout)
        try:
            return self.buf == b"" and self.s.recv(4096) == b""
        except (ConnectionResetError, socket.timeout):
            return False

    def starttls(self):
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        self.s = ctx.wrap_socket(self.s)
        self.buf = b""

    def close(self):
        self.s.close()


_fresh_n = [0]


def fresh(msg):
    """msg with a Message-ID never used before (duplicate suppression would
    store a second copy of the same Message-ID only once)."""
    _fresh_n[0] += 1
    new = b"Message-ID: <fresh%d.%d@example.org>" % (os.getpid(), _fresh_n[0])
    out, n = re.subn(rb"(?im)^Message-ID:[^\r\n]*", new, msg, count=1)
    return out if n else new + b"\r\n" + msg


def stuff(msg):
    """Dot-stuff a message for DATA (RFC 5321 4.5.2)."""
    return re.sub(rb"(?m)^\.", b"..", msg)


def sha1(b):
    return hashlib.sha1(b).hexdigest()


def no_verify_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
