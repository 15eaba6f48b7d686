"""Helpers for the replication tests: server roots made by `castorctl init`,
castord started with a readiness pipe, the sync-testdrv change driver, and
dumps compared the way an operator would (`castorctl dump --for-compare`)."""
import os
import re
import select
import signal
import time
from pathlib import Path

import castord_util  # noqa: F401  (patches conftest.Proc.output)
from conftest import SLOW, binpath, free_ports, run, wait_for  # noqa: F401 (SLOW: tests import it from here)

SYNC_PW = "s3cret-sync-pw"


def sanitized():
    return castord_util.sanitized(binpath("syncd"))


def ctl(conf, *args, check=True, timeout=300):
    return run([binpath("castorctl"), "-C", conf, *args], check=check, timeout=timeout)


def strip_user(dump_text, user):
    """Drop one user's block from a dump (the replica's sync account)."""
    out, skip = [], False
    for line in dump_text.splitlines():
        m = re.match(r"user (\S+)", line)
        if m:
            skip = m.group(1) == user
        if not skip:
            out.append(line)
    return "\n".join(out)


class Server:
    """A server root made by castorctl init, and its castord."""

    def __init__(self, procs, tmp, name, role="master", channels=(), conf_extra="",
                 daemons=True, shutdown=True):
        self.procs = procs
        self.tmp = Path(tmp)
        self.name = name
        self.role = role
        self.root = self.tmp / name
        self.base = free_ports(5)
        self.syncd_port = self.base + 3
        pw = self.tmp / "sync.pw"
        pw.write_text(SYNC_PW + "\n")
        args = ["init", self.root, "--port-base", self.base, "--sync-password-file", pw]
        if role == "replica":
            args += ["--role", "replica"]
        for cname, port in channels:
            args += ["--channel", f"{cname}=127.0.0.1:{port}"]
        run([binpath("castorctl"), "-q", *args])
        self.conf = self.root / "castor.conf"
        if conf_extra:
            with open(self.conf, "a") as f:
                f.write("\n" + conf_extra + "\n")
        svc = (self.root / "services.conf").read_text()
        if not daemons:
            svc = re.sub(r"(?m)^\s*sync_\S+\s+cmd=.*$", "", svc)
        if not shutdown:
            svc = re.sub(r"(?m)^\s*drain\s+cmd=.*$", "", svc)
        # only what replication needs: syncd (and the daemons above)
        svc = re.sub(r"(?m)^\s*#?\s*(imap|pop3|lmtp|imaps)\s+cmd=.*$", "", svc)
        (self.root / "services.conf").write_text(svc)
        self.proc = None

    def add_services(self, text, section="DAEMON"):
        p = self.root / "services.conf"
        svc = p.read_text()
        svc = svc.replace(section + " {\n", section + " {\n" + text + "\n", 1)
        p.write_text(svc)

    def start(self, env=None, wait=True):
        r, w = os.pipe()
        self.proc = self.procs.start([binpath("castord"), "-C", self.conf, "-D", "--ready-fd", w],
                                     log=self.root / "castord.log", env=env, pass_fds=(w,))
        os.close(w)
        if wait:
            rl, _, _ = select.select([r], [], [], 30 * SLOW)
            assert rl, "castord not ready:\n" + self.log()
            assert os.read(r, 16) == b"\n", self.log()
        os.close(r)
        return self

    def log(self):
        try:
            return (self.root / "castord.log").read_text(errors="replace")
        except OSError:
            return ""

    def pid(self):
        return self.proc.pid

    def quit(self, timeout=None):
        """SIGQUIT (graceful stop + SHUTDOWN drain); returns castord's exit status."""
        self.proc.send(signal.SIGQUIT)
        return self.proc.wait(timeout=timeout or 60 * SLOW)

    def kill(self):
        """SIGKILL castord and everything in its process group, at once."""
        self.proc.kill_group()

    def stop_group(self, sig):
        os.killpg(self.proc.pid, sig)

    def dump(self, user="--all", full=False):
        args = ["dump"] + ([] if full else ["--for-compare"]) + [user]
        for _ in range(50 * SLOW):   # a bounded poll: 2.5 s (times SLOW) of transient states
            cp = ctl(self.conf, *args, check=False)
            # a user the replica is creating right now has no database yet, and
            # dump reads the mailbox list and each mailbox's records in separate
            # transactions, so a mailbox replaced in between (the replica's own
            # first INBOX giving way to the master's uniqueid) is a moving target
            # (and --all may list a user whose row the replica commits a
            # moment later: "no such user")
            transient = ("no database yet" in cp.stderr or "no such mailbox" in cp.stderr or
                         "no such user" in cp.stderr)
            if cp.returncode == 0 or not transient:
                break
            time.sleep(0.05)
        assert cp.returncode == 0, cp.stderr
        text = cp.stdout
        if self.role == "replica":
            text = strip_user(text, "sync")
        return "\n".join(text.splitlines())

    def drv(self, script, env=None, check=True, timeout=None, out=None):
        argv = [binpath("sync-testdrv"), "-C", self.conf]
        if out is not None:
            argv += ["-o", out]
        cp = run(argv, input=script, env=env, check=False, timeout=timeout or 120 * SLOW)
        if check:
            bad = [l for l in cp.stdout.splitlines() if l.startswith("err")]
            assert cp.returncode == 0 and not bad, f"testdrv failed:\n{cp.stdout}\n{cp.stderr}"
        return cp

    def status(self, chan):
        p = self.root / "run" / f"sync-{chan}.status"
        try:
            text = p.read_text()
        except OSError:
            return {}
        return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)

    def server_row(self):
        import sqlite3
        c = sqlite3.connect(str(self.root / "db" / "users.db"))
        try:
            return tuple(c.execute("select role, epoch from server").fetchone())
        finally:
            c.close()

    def set_server_row(self, role, epoch):
        import sqlite3
        c = sqlite3.connect(str(self.root / "db" / "users.db"), timeout=30)
        try:
            c.execute("update server set role = ?, epoch = ?", (role, epoch))
            c.commit()
        finally:
            c.close()


def pair(procs, tmp, conf_extra="", replica_extra="", nreplicas=1, start=True, **kw):
    """A master with channels r1..rN to N replicas; all started."""
    reps = [Server(procs, tmp, f"replica{i + 1}", role="replica", conf_extra=replica_extra)
            for i in range(nreplicas)]
    chans = [(f"r{i + 1}", reps[i].syncd_port) for i in range(nreplicas)]
    master = Server(procs, tmp, "master", channels=chans, conf_extra=conf_extra, **kw)
    if start:
        for r in reps:
            r.start()
        master.start()
    return master, reps


def converged(master, replica, timeout=30, user="--all"):
    """Wait until both dumps are equal; return the time it took."""
    t0 = time.monotonic()
    last = {}

    def same():
        a, b = master.dump(user), replica.dump(user)
        last["a"], last["b"] = a, b
        return a == b

    try:
        wait_for(same, timeout=timeout * SLOW, interval=0.05, what="replica == master")
    except AssertionError:
        import difflib
        diff = "\n".join(difflib.unified_diff(last.get("a", "").splitlines(),
                                              last.get("b", "").splitlines(), "master", "replica",
                                              lineterm=""))
        raise AssertionError(f"replica did not converge:\n{diff[:4000]}\n--- master log tail:\n"
                             f"{master.log()[-3000:]}\n--- replica log tail:\n{replica.log()[-3000:]}")
    return time.monotonic() - t0


def guids_in(dump_text):
    return re.findall(r"guid=([0-9a-f]{40})", dump_text)


def acked_guids(path):
    try:
        text = Path(path).read_text()
    except OSError:
        return []
    return re.findall(r"^acked n=\d+ uid=\d+ guid=([0-9a-f]{40})$", text, re.M)
