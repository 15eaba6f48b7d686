"""Helpers for the castord tests: write a server root, start castord with a
readiness pipe, talk to echod, find castord's children."""
import os
import re
import select
import socket
import time
from pathlib import Path

import conftest
from conftest import SLOW, binpath, wait_for, pid_alive


def _proc_output(self):
    """conftest.Proc.output() flushes a log file that stop() has closed, so the
    procs fixture's sanitizer scan fails at teardown; read the file instead."""
    if not self.logf.closed:
        self.logf.flush()
    try:
        return self.log.read_text(errors="replace")
    except OSError:
        return ""


conftest.Proc.output = _proc_output


def write_root(root, services, conf=""):
    """castor.conf and services.conf in root (a Path); returns castor.conf's path.
    Run as root, the root made here is root's, so castord would refuse to run
    its children as root without `run_user: root` (docs/security.md): say it,
    unless the conf names a run_user itself."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0 and not re.search(r"(?m)^\s*run_user\s*:", conf):
        conf = conf + ("" if conf.endswith("\n") or not conf else "\n") + "run_user: root\n"
    (root / "castor.conf").write_text(conf)
    (root / "services.conf").write_text(services)
    return root / "castor.conf"


class Castord:
    """A castord started with --ready-fd; .proc is the conftest Proc."""

    def __init__(self, procs, root, services, conf="shutdown_timeout: 3s\n", args=(), env=None,
                 wait_ready=True):
        self.root = Path(root)
        self.conf = write_root(self.root, services, conf)
        r, w = os.pipe()
        self.proc = procs.start([binpath("castord"), "-C", self.conf, "-D", "--ready-fd", w, *args],
                                log=self.root / "castord.log", env=env, pass_fds=(w,))
        os.close(w)
        self.ready_r = r
        self.pid = self.proc.pid
        if wait_ready:
            self.wait_ready()

    def wait_ready(self, timeout=10 * SLOW):
        rl, _, _ = select.select([self.ready_r], [], [], timeout)
        assert rl, "castord not ready in time:\n" + self.log()
        data = os.read(self.ready_r, 16)
        os.close(self.ready_r)
        assert data == b"\n", f"ready fd got {data!r}:\n" + self.log()

    def log(self):
        return self.proc.output()

    def wait_log(self, pattern, timeout=10 * SLOW, count=1):
        rx = re.compile(pattern)
        return wait_for(lambda: len(rx.findall(self.log())) >= count and rx.findall(self.log()),
                        timeout=timeout, what=f"log {pattern!r}")

    def signal(self, sig):
        os.kill(self.pid, sig)

    def wait_exit(self, timeout=20 * SLOW):
        return self.proc.wait(timeout=timeout)

    def children(self):
        return children_of(self.pid)


def children_of(pid):
    """Live (non-zombie) children of pid."""
    out = []
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            cands = [int(x) for x in f.read().split()]
    except OSError:
        return out
    for c in cands:
        if pid_alive(c):
            out.append(c)
    return out


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


class Client:
    """A line client for echod."""

    def __init__(self, port=None, path=None, timeout=5 * SLOW):
        if path:
            self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.s.settimeout(timeout)
            self.s.connect(str(path))
        else:
            self.s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def line(self, timeout=5 * SLOW):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line; have {self.buf!r}")
            self.s.settimeout(left)
            d = self.s.recv(4096)
            if not d:
                raise EOFError(f"connection closed; have {self.buf!r}")
            self.buf += d
        ln, self.buf = self.buf.split(b"\n", 1)
        return ln.rstrip(b"\r").decode()

    def greeting(self, timeout=5 * SLOW):
        g = self.line(timeout)
        assert g.startswith("+OK echod ready"), g
        return int(g.rsplit("pid=", 1)[1])

    def send(self, text):
        self.s.sendall(text.encode() + b"\r\n")

    def cmd(self, text, timeout=5 * SLOW):
        self.send(text)
        return self.line(timeout)

    def closed(self, timeout=5 * SLOW):
        """True when the server closes the connection (after any pending lines)."""
        self.s.settimeout(timeout)
        try:
            return self.s.recv(4096) == b""
        except (ConnectionResetError, socket.timeout):
            return False

    def close(self):
        self.s.close()


def refused(port, timeout=1.0 * SLOW):
    """True when a TCP connection to port is refused (or reset before any greeting)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except (ConnectionRefusedError, socket.timeout, OSError):
        return True
    try:
        s.settimeout(timeout)
        try:
            d = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            return True
        return d == b""
    finally:
        s.close()


def sanitized(path):
    """Was the program built with a sanitizer (memory figures mean nothing then)?"""
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__ubsan_handle" in data


def proc_kb(pid, field, fname="status"):
    with open(f"/proc/{pid}/{fname}") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)
