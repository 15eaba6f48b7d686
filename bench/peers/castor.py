"""bench/peers/castor.py - Castor as a benchmark peer: a master and a replica
on 127.0.0.1 under <root>/castor, created with `castorctl init` and run by
`castord` from a build tree (--build, default build/).

  castorctl init ROOT --port-base N --role master|replica
                 [--channel r1=127.0.0.1:PORT] [--sync-password PW]
      imap N, pop3 N+1, lmtp N+2, syncd N+3, imaps N+4
  castorctl -C ROOT/castor.conf user add USER --password PW
  castord -C ROOT/castor.conf [-M services.conf] -D --ready-fd FD
      writes a newline on fd FD when every listener is open; SIGQUIT drains
  sync-client -C ROOT/castor.conf -u USER        one user's full sync

Variants (slots): "default" = `sync_mode: async`, "lowlag" = `sync_mode:
semisync`.  "Rolling replication off" starts the master with a copy of its
services.conf without the DAEMON section (no rolling sync-client).
Programs that are not built yet make `missing()` name them; the harness then
reports {"castor": "not built"} for the benchmarks that need them.
"""
import os
import re
import select
import shutil
import signal
import subprocess
import time

from common import dir_bytes, free_port_block, log, pid_alive, try_status, wait_pid_gone
from peers.base import Peer, PeerError, run, wait_until

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBDIRS = ("src/master", "src/ctl", "src/sync", "src/lmtp", "src/imap", "src/pop3", "src/store", "tests/helpers",
           "bench/drivers")
SYNC_PASSWORD = "bench-sync-secret"


class CastorPeer(Peer):
    name = "castor"
    SLOTS = {"default": "async", "lowlag": "semisync"}
    SHUTDOWN_SIGNAL = "QUIT"
    # the programs each capability needs (names as built under build/src/...)
    CORE = ("castord", "castorctl")

    def __init__(self, opts, root):
        super().__init__(opts, root)
        build = getattr(opts, "build", None) or os.path.join(TOP, "build")
        self.build = os.path.abspath(build)
        self.procs = {}          # "master"/"replica" -> Popen
        self.logs = {}
        self._bins = {}

    # -- programs
    def binpath(self, name):
        if name in self._bins:
            return self._bins[name]
        found = None
        for sub in SUBDIRS:
            p = os.path.join(self.build, sub, name)
            if os.path.isfile(p) and os.access(p, os.X_OK):
                found = p
                break
        self._bins[name] = found
        return found

    def missing(self, programs):
        return [p for p in programs if not self.binpath(p)]

    def unavailable(self):
        if not os.path.isdir(self.build):
            return f"not built (no build tree {self.build})"
        miss = self.missing(self.CORE)
        return f"not built ({', '.join(miss)} missing in {self.build})" if miss else None

    def version(self):
        try:
            cp = subprocess.run(["git", "-C", TOP, "describe", "--always", "--dirty"], capture_output=True,
                                text=True, timeout=10)
            rev = cp.stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            rev = ""
        return f"Castor {rev} ({self.build})"

    def ctl(self, inst, *args, timeout=120, check=True):
        return run([self.binpath("castorctl"), "-C", self.conf(inst), *args], timeout=timeout, check=check)

    def conf(self, inst):
        return os.path.join(self.base, inst, "castor.conf")

    # -- layout
    def layout(self, slot):
        if not self.m_imap:
            self.m_base = free_port_block(5)
            self.r_base = free_port_block(5)
            self.m_imap, self.m_lmtp = self.m_base, self.m_base + 2
            self.r_imap, self.r_lmtp, self.r_sync = self.r_base, self.r_base + 2, self.r_base + 3
        for inst in ("master", "replica"):
            shutil.rmtree(os.path.join(self.base, inst), ignore_errors=True)
        self._init("replica")
        self._init("master")
        self._set_mode(slot)

    def _init(self, inst):
        d = os.path.join(self.base, inst)
        ctl = self.binpath("castorctl")
        if inst == "master":
            argv = [ctl, "init", d, "--port-base", str(self.m_base), "--role", "master",
                    "--channel", f"r1=127.0.0.1:{self.r_sync}", "--sync-password", SYNC_PASSWORD]
        else:
            # the channel back to the master (docs/failover.md: the pair is
            # symmetric; castorctl failover refuses a replica without it)
            argv = [ctl, "init", d, "--port-base", str(self.r_base), "--role", "replica",
                    "--channel", f"m=127.0.0.1:{self.m_base + 3}", "--sync-password", SYNC_PASSWORD]
        run(argv, timeout=120)
        svc = os.path.join(d, "services.conf")
        if os.path.exists(svc):
            txt = open(svc).read()
            norepl = re.sub(r"(?ms)^DAEMON\s*\{.*?^\}\s*$", "", txt)
            with open(os.path.join(d, "services-norepl.conf"), "w") as f:
                f.write(norepl)

    def _set_mode(self, slot):
        """Set `sync_mode:` in the master's castor.conf (replacing any line)."""
        p = self.conf("master")
        txt = open(p).read()
        line = f"sync_mode: {self.SLOTS[slot]}"
        if re.search(r"(?m)^sync_mode:", txt):
            txt = re.sub(r"(?m)^sync_mode:.*$", line, txt)
        else:
            txt = txt.rstrip("\n") + "\n" + line + "\n"
        with open(p, "w") as f:
            f.write(txt)

    def reconfigure(self, slot):
        self._set_mode(slot)

    # -- processes
    def start(self, which="all", repl=True):
        for inst in (("replica", "master") if which == "all" else (which,)):
            if self.running(inst):
                continue
            self._start_one(inst, repl if inst == "master" else True)
        if which in ("all", "master"):
            self.repl = repl

    def _start_one(self, inst, repl):
        d = os.path.join(self.base, inst)
        rfd, wfd = os.pipe()
        argv = [self.binpath("castord"), "-C", self.conf(inst)]
        if inst == "master" and not repl:
            argv += ["-M", os.path.join(d, "services-norepl.conf")]
        argv += ["-D", "--ready-fd", str(wfd)]
        logp = os.path.join(d, "castord.log")
        logf = open(logp, "ab")
        try:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
                                 pass_fds=(wfd,), start_new_session=True)
        finally:
            os.close(wfd)
            logf.close()
        self.procs[inst] = p
        self.logs[inst] = logp
        ready = False
        end = time.monotonic() + 30
        while time.monotonic() < end and p.poll() is None:
            r, _, _ = select.select([rfd], [], [], 0.2)
            if r:
                ready = os.read(rfd, 64) != b""      # EOF without a newline: not ready
                break
        os.close(rfd)
        if not ready:
            tail = open(logp, errors="replace").read()[-1500:]
            self._kill(inst)
            raise PeerError(f"castor {inst} did not become ready (exit {p.poll()}):\n{tail}")

    def _kill(self, inst):
        p = self.procs.get(inst)
        if not p:
            return
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, which="all", sig="TERM"):
        for inst in (("master", "replica") if which == "all" else (which,)):
            p = self.procs.get(inst)
            if not p:
                continue
            if p.poll() is None:
                try:
                    p.send_signal(getattr(signal, "SIG" + sig))
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    log(f"castor {inst}: castord {p.pid} alive 30 s after SIG{sig}; SIGKILL")
            self._kill(inst)     # no child may outlive the benchmark
            self.procs.pop(inst, None)

    def running(self, which):
        p = self.procs.get(which)
        return bool(p and p.poll() is None)

    def master_pid(self):
        p = self.procs.get("master")
        return p.pid if p else None

    def replica_pid(self):
        p = self.procs.get("replica")
        return p.pid if p else None

    def forget_master(self):
        p = self.procs.get("master")
        if p and not pid_alive(p.pid):
            wait_pid_gone(p.pid, 1)
            self._kill("master")
            self.procs.pop("master", None)

    # -- users and names
    def password(self, user):
        return "pw-" + user

    def folder(self, i):
        return f"f{i}"

    def create_users(self, users, wait_replica=True, timeout=None):
        for u in users:
            self.ctl("master", "user", "add", u, "--password", self.password(u))
        timeout = timeout or self.user_timeout
        if not wait_replica:
            return
        for u in users:
            if wait_until(lambda: try_status(self.r_imap, u, self.password(u)) is not None, timeout, 0.05) is None:
                raise PeerError(f"castor: user {u} did not reach the replica in {timeout}s")

    # -- replication helpers
    def replica_sync_port(self):
        return self.r_sync

    def reset_replica(self):
        self.stop("replica")
        shutil.rmtree(os.path.join(self.base, "replica"), ignore_errors=True)
        self._init("replica")
        self.start("replica")

    def full_sync(self, user, relay_port=None, compress=None):
        conf = self.conf("master")
        if relay_port or compress is not None:
            txt = open(conf).read()
            if relay_port:
                txt = re.sub(r"(?m)^(\w+_sync_port):\s*\d+\s*$", rf"\g<1>: {relay_port}", txt)
            if compress is not None:
                # <chan>_sync_compress: zstd on the channel (default: yes off
                # loopback, no on loopback); set it explicitly either way
                txt = re.sub(r"(?m)^\w+_sync_compress:.*\n?", "", txt)
                for chan in re.findall(r"(?m)^(\w+)_sync_port:", txt):
                    txt = txt.rstrip("\n") + f"\n{chan}_sync_compress: {'yes' if compress else 'no'}\n"
            conf = os.path.join(self.base, "master", "castor-relay.conf")
            with open(conf, "w") as f:
                f.write(txt)
        cp = run([self.binpath("sync-client"), "-C", conf, "-u", user], timeout=1800, check=False)
        return cp.returncode, (cp.stdout + cp.stderr)[-1000:]

    def mailbox_disk(self, user):
        """Bytes of the user's directory on the master: spool/<h>/<user>/ (user.db,
        its WAL, blobs)."""
        spool = os.path.join(self.base, "master", "spool")
        for root, dirs, _files in os.walk(spool):
            if user in dirs:
                d = os.path.join(root, user)
                app, alloc, n = dir_bytes(d)
                blobs = os.path.join(d, "blobs")
                bapp, balloc, bn = dir_bytes(blobs) if os.path.isdir(blobs) else (0, 0, 0)
                return {"dir": d, "apparent": app, "allocated": alloc, "files": n,
                        "message_files_apparent": bapp, "message_files_allocated": balloc, "blob_files": bn}
            if root.count(os.sep) - spool.count(os.sep) > 3:
                dirs[:] = []
        return None

    def teardown(self):
        super().teardown()
        for inst in list(self.procs):
            self._kill(inst)
