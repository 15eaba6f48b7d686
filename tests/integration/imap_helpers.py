"""Helpers for the imapd tests (tests/integration/test_imap_*.py): a server
root made by `castorctl init` with castord running it, and a raw IMAP client
that shows every response line as it was sent (literals included), for
assertions imaplib would hide.
"""
import os
import re
import select
import socket
import sqlite3
import ssl
import time
from pathlib import Path

from conftest import Proc, binpath, free_ports, run, sanitizer_reports

PASSWORD = "s3cret pw"


class ImapServer:
    """A server root with users and a running castord (imap on .port,
    imaps on .tls_port).  stop() checks the log for sanitizer reports."""

    def __init__(self, tmp, conf_extra="", users=("alice", "bob")):
        self.tmp = Path(tmp)
        self.root = self.tmp / "root"
        self.base = free_ports(5)
        run([binpath("castorctl"), "init", self.root, "--port-base", self.base])
        self.conf = self.root / "castor.conf"
        if conf_extra:
            with open(self.conf, "a") as f:
                f.write("\n" + conf_extra.strip() + "\n")
        self.pwfile = self.tmp / "pw"
        self.pwfile.write_text(PASSWORD + "\n")
        for u in users:
            self.ctl("user", "add", u, "--password-file", self.pwfile)
        self.port = self.base
        self.tls_port = self.base + 4
        self.cafile = str(self.root / "tls" / "cert.pem")
        self.proc = None
        self.start()

    def ctl(self, *args, check=True):
        return run([binpath("castorctl"), "-C", self.conf, *args], check=check, timeout=300)

    def start(self, env=None):
        r, w = os.pipe()
        self.proc = Proc([binpath("castord"), "-C", self.conf, "-D", "--ready-fd", w],
                         self.root / "castord.log", env=env, pass_fds=(w,))
        os.close(w)
        rl, _, _ = select.select([r], [], [], 30)
        data = os.read(r, 16) if rl else b""
        os.close(r)
        assert data == b"\n", "castord not ready:\n" + self.log()

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None
        rep = sanitizer_reports(self.log())
        assert not rep, "sanitizer reports:\n" + "\n".join(rep[:20])

    def restart(self, env=None):
        self.stop()
        self.start(env=env)

    def log(self):
        try:
            return (self.root / "castord.log").read_text(errors="replace")
        except OSError:
            return ""

    def set_role(self, role):
        """Flip the stored role (what a failover does); imapd reads it per connection."""
        db = sqlite3.connect(self.root / "db" / "users.db", timeout=30)
        with db:
            db.execute("UPDATE server SET role = ?", (role,))
        db.close()

    def client(self, login=True, user="alice", **kw):
        c = Raw(self.port, **kw)
        if login:
            c.ok(f'LOGIN {user} "{PASSWORD}"')
        return c


class Raw:
    """A minimal IMAP client: cmd() sends one command and returns
    (untagged responses, tagged line).  A response that carries literals is
    returned as one bytes value with the literals inline."""

    def __init__(self, port, timeout=20, tls=False, cafile=None, host="127.0.0.1"):
        self.s = socket.create_connection((host, port), timeout=timeout)
        if tls:
            ctx = ssl.create_default_context(cafile=cafile)
            self.s = ctx.wrap_socket(self.s, server_hostname="localhost")
        self.timeout = timeout
        self.buf = b""
        self.n = 0
        self.greeting = self.line()

    def starttls(self, cafile):
        ctx = ssl.create_default_context(cafile=cafile)
        self.s = ctx.wrap_socket(self.s, server_hostname="localhost")

    def _fill(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no data from server; have {self.buf[:200]!r}")
            self.s.settimeout(left)
            d = self.s.recv(65536)
            if not d:
                raise EOFError(f"connection closed; have {self.buf[:200]!r}")
            self.buf += d
            return

    def rawline(self, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while b"\r\n" not in self.buf:
            self._fill(max(0.01, deadline - time.monotonic()))
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def read_exact(self, n, timeout=None):
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(max(0.01, deadline - time.monotonic()))
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def line(self, timeout=None):
        """One response, literals inline."""
        out = self.rawline(timeout)
        while True:
            m = re.search(rb"\{(\d+)\}$", out)
            if not m:
                return out
            out += b"\r\n" + self.read_exact(int(m.group(1)), timeout)
            out += self.rawline(timeout)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.s.sendall(data)

    def tag(self):
        self.n += 1
        return f"t{self.n}"

    def cmd(self, text, timeout=None):
        if isinstance(text, str):
            text = text.encode()
        tag = self.tag().encode()
        self.send(tag + b" " + text + b"\r\n")
        return self.collect(tag, timeout)

    def collect(self, tag, timeout=None):
        if isinstance(tag, str):
            tag = tag.encode()
        untagged = []
        while True:
            ln = self.line(timeout)
            if ln.startswith(tag + b" "):
                return untagged, ln
            untagged.append(ln)

    def ok(self, text, timeout=None):
        u, t = self.cmd(text, timeout)
        assert t.split(b" ")[1] == b"OK", f"{text!r} -> {t!r} ({u!r})"
        return u, t

    def no(self, text, code=None):
        u, t = self.cmd(text)
        assert t.split(b" ")[1] == b"NO", f"{text!r} -> {t!r}"
        if code:
            assert f"[{code}".encode() in t, f"{code} not in {t!r}"
        return u, t

    def bad(self, text):
        u, t = self.cmd(text)
        assert t.split(b" ")[1] == b"BAD", f"{text!r} -> {t!r}"
        return u, t

    def closed(self, timeout=5):
        self.s.settimeout(timeout)
        try:
            while True:
                d = self.s.recv(4096)
                if not d:
                    return True
                self.buf += d
        except (ConnectionResetError, socket.timeout, ssl.SSLError):
            return False

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


def find(lines, pattern):
    """The untagged lines matching a regex (bytes pattern or str)."""
    if isinstance(pattern, str):
        pattern = pattern.encode()
    return [l for l in lines if re.search(pattern, l)]


def one(lines, pattern):
    hits = find(lines, pattern)
    assert len(hits) == 1, f"{pattern!r}: {hits!r} in {lines!r}"
    return hits[0]


def literal(text):
    """An APPEND-ready message with CRLF line ends."""
    if isinstance(text, str):
        text = text.encode()
    return text.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def append(c, mailbox, msg, flags="", date=None):
    """APPEND over a LITERAL+ literal; returns the new uid."""
    msg = literal(msg)
    args = f"{mailbox}"
    if flags:
        args += f" ({flags})"
    if date:
        args += f' "{date}"'
    u, t = c.cmd(f"APPEND {args} {{{len(msg)}+}}\r\n".encode() + msg)
    assert b" OK " in t, t
    m = re.search(rb"APPENDUID (\d+) (\d+)", t)
    return int(m.group(2))


def mbox_file(path, msgs):
    """Write messages (bytes, LF or CRLF) as an mboxrd file."""
    with open(path, "wb") as f:
        for i, m in enumerate(msgs):
            m = m.replace(b"\r\n", b"\n")
            f.write(b"From sender@example.com Mon Mar  3 10:00:00 2025\n")
            for ln in m.split(b"\n"):
                if re.match(rb">*From ", ln):
                    ln = b">" + ln
                f.write(ln + b"\n")
            f.write(b"\n")
