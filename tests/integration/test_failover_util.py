"""Helpers for the failover tests (no tests here): a symmetric pair of
server roots made by `castorctl init` (each with a channel to the other,
docs/failover.md), castord started under the procs fixture, and the
castord that `castorctl failover` starts again (a daemon found through its
pidfile, stopped at teardown)."""
import os
import re
import select
import signal
import sqlite3
import time
from pathlib import Path

import castord_util  # noqa: F401  (patches conftest.Proc.output)
from conftest import binpath, free_ports, pid_alive, run, wait_for
from repl_util import SLOW, SYNC_PW, strip_user


def ctl(conf, *args, check=True, timeout=300, env=None):
    return run([binpath("castorctl"), "-C", conf, *args], check=check, timeout=timeout, env=env)


class Node:
    """One server root of a symmetric pair, with imap/pop3/lmtp/syncd."""

    def __init__(self, procs, tmp, name, role, base, peer, peer_syncd, conf_extra=""):
        self.procs = procs
        self.tmp = Path(tmp)
        self.name = name
        self.root = self.tmp / name
        self.base = base
        self.imap_port, self.pop3_port, self.lmtp_port, self.syncd_port = base, base + 1, base + 2, base + 3
        self.peer = peer
        pw = self.tmp / "sync.pw"
        pw.write_text(SYNC_PW + "\n")
        args = ["init", self.root, "--port-base", base, "--sync-password-file", pw, "--role", role,
                "--servername", name, "--channel", f"{peer}=127.0.0.1:{peer_syncd}"]
        run([binpath("castorctl"), "-q", *args])
        self.conf = self.root / "castor.conf"
        extra = f"shutdown_timeout: {5 * SLOW}s\nmaster_name: {peer}.test\n" + conf_extra
        with open(self.conf, "a") as f:
            f.write("\n" + extra + "\n")
        svc = (self.root / "services.conf").read_text()
        # every program is built in the test build: no entry may be commented out
        svc = re.sub(r"(?m)^# (\s*\S+\s+cmd=.*?)\s+# .* is not built yet.*$", r"  \1", svc)
        (self.root / "services.conf").write_text(svc)
        self.proc = None
        self.log_path = self.root / "castord.log"
        procs.watch_log(self.log_path)

    def start(self, env=None):
        r, w = os.pipe()
        self.proc = self.procs.start([binpath("castord"), "-C", self.conf, "-D", "--ready-fd", w],
                                     log=self.log_path, env=env, pass_fds=(w,))
        os.close(w)
        rl, _, _ = select.select([r], [], [], 60 * SLOW)
        assert rl, "castord not ready:\n" + self.log()
        assert os.read(r, 16) == b"\n", self.log()
        os.close(r)
        return self

    def log(self):
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def castord_pid(self):
        """The running castord's pid (pidfile locked), else None."""
        import fcntl
        p = self.root / "run" / "castord.pid"
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return None
            except OSError:
                pass
            txt = os.read(fd, 64).decode().strip()
            return int(txt) if txt.isdigit() else None
        finally:
            os.close(fd)

    def stop_daemon(self, sig=signal.SIGTERM, timeout=30 * SLOW):
        """Stop a castord that castorctl started (not under procs)."""
        pid = self.castord_pid()
        if pid is None:
            return
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + timeout
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid_alive(pid):
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    def kill(self):
        """SIGKILL castord and its children at once (hard failure)."""
        pid = self.castord_pid()
        if self.proc is not None and self.proc.alive():
            self.proc.kill_group()
        elif pid is not None:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
            wait_for(lambda: not pid_alive(pid), timeout=10 * SLOW, what="castord gone")

    def ctl(self, *args, check=True, timeout=300):
        return ctl(self.conf, *args, check=check, timeout=timeout)

    def server_row(self):
        c = sqlite3.connect(str(self.root / "db" / "users.db"), timeout=30)
        try:
            return tuple(c.execute("select role, epoch from server").fetchone())
        finally:
            c.close()

    def dump(self, user="--all"):
        for _ in range(100 * SLOW):   # a bounded poll: 5 s (times SLOW) of transient states
            cp = self.ctl("dump", "--for-compare", user, check=False)
            # a user or mailbox the sync is creating right now
            if cp.returncode == 0 or ("no database yet" not in cp.stderr and
                                      "no such mailbox" not in cp.stderr):
                break
            time.sleep(0.05)
        assert cp.returncode == 0, cp.stderr
        # the sync account exists on whichever server was made a replica by init
        return "\n".join(strip_user(cp.stdout, "sync").splitlines())

    def status(self, *chans):
        import json
        cp = self.ctl("status", "--json", *chans, check=False)
        assert cp.returncode in (0, 1), cp.stderr
        return json.loads(cp.stdout)


def low_ports(n, avoid=()):
    """A block of n free ports below the kernel's ephemeral range (32768+):
    castorctl restarts castord on the same ports while the load clients'
    outgoing connections take ephemeral ports, which must not collide."""
    import random
    import socket
    for _ in range(500):
        base = random.randint(10000, 32000 - n)
        if any(abs(base - x) < n for x in avoid):
            continue
        socks = []
        try:
            for i in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    return free_ports(n)


class Pair:
    def __init__(self, procs, tmp, conf_extra=""):
        ba = low_ports(5)
        bb = low_ports(5, avoid=(ba,))
        self.a = Node(procs, tmp, "a", "master", ba, "b", bb + 3, conf_extra)
        self.b = Node(procs, tmp, "b", "replica", bb, "a", ba + 3, conf_extra)

    def start(self):
        self.b.start()
        self.a.start()
        return self

    def nodes(self):
        return (self.a, self.b)

    def master(self):
        for n in self.nodes():
            if n.server_row()[0] == "master":
                return n
        return None

    def cleanup(self):
        for n in self.nodes():
            n.stop_daemon()


def converged(x, y, timeout=60, user="--all"):
    """Wait until both dumps are equal; return the dump."""
    last = {}

    def same():
        a, b = x.dump(user), y.dump(user)
        last["a"], last["b"] = a, b
        return a == b and a

    try:
        return wait_for(same, timeout=timeout * SLOW, interval=0.1, what=f"{x.name} == {y.name}")
    except AssertionError:
        import difflib
        diff = "\n".join(difflib.unified_diff(last.get("a", "").splitlines(),
                                              last.get("b", "").splitlines(), x.name, y.name,
                                              lineterm=""))
        raise AssertionError(f"did not converge:\n{diff[:4000]}\n--- {x.name} log:\n{x.log()[-3000:]}"
                             f"\n--- {y.name} log:\n{y.log()[-3000:]}")
