"""The fault matrix (issue 20): a pair under a steady load while one kind
of fault is injected again and again, then the history check.

Rows (the crash soak, random SIGKILL on both sides, is the first row and
lives in test_crash_soak.py):
- disk_full_master / disk_full_replica: that server's root is a small
  tmpfs; a ballast file fills it to the last byte (ENOSPC on every write:
  databases, WAL, blobs, the sync log) for 1-4 s, then is deleted;
- blackhole / reset / refuse: the master's channel goes through a
  loopback TCP proxy (tcp_proxy.py) that, for 1-5 s at a time, forwards
  nothing while holding the sockets open, resets every connection (RST)
  once, or closes its listener (connect() refused);
- replica_restart: the replica's castord is stopped (SIGQUIT, graceful)
  or killed with all its children (SIGKILL to the group, a power cut) and
  started again, as an init system would.

The load is soak_util's (MTA-like LMTP clients that resend until a 250,
IMAP clients that APPEND and read), every answer recorded.  At the end,
every fault healed and the load stopped: both sides converge, every
acknowledged message is on both exactly once, an uncertain one at most
once, a refused one never, nothing else, and `castorctl check --all` is
clean on both.

Size: CASTOR_SOAK_SECONDS of load per row (default 30: the reduced form
CI runs; `make soak` sets it to several minutes), CASTOR_SOAK_SEED the
seed.  The disk-full rows need to mount a tmpfs (root); where mounting is
refused they are skipped with the reason."""
import errno
import os
import random
import signal
import subprocess
import threading

import pytest

from repl_util import SLOW
from soak_util import PW, USERS, Load, children, final_checks, restart, soak_seconds, soak_seed
from tcp_proxy import Proxy
from test_failover_util import Node, converged, low_ports

# heartbeats as in test_replication_liveness: a silent path is noticed in
# seconds, not minutes
# The heartbeat and the answer deadline are not stretched by SLOW: a
# blackhole is held 1-5 s, and under load the client is waiting for a
# batch's answer (sync_timeout), not idling on heartbeats; 3 s x SLOW (15 s
# under ASan) never saw a hold end (the row failed "no sign that the fault
# bit").  A deadline missed because the machine is slow only drops and
# reconnects the channel, which loses nothing.
HB = (f"sync_heartbeat: 500ms\nsync_heartbeat_timeout: 1500ms\n"
      f"sync_connect_timeout: {1000 * SLOW}ms\nsync_timeout: 2000ms\n")


class MiniPair:
    """Pair of test_failover_util, with the master's channel through an
    optional proxy."""

    def __init__(self, procs, tmp, proxy=False, conf_extra=""):
        ba = low_ports(5)
        bb = low_ports(5, avoid=(ba,))
        self.proxy = Proxy(bb + 3) if proxy else None
        a_to_b = self.proxy.port if proxy else bb + 3
        self.a = Node(procs, tmp, "a", "master", ba, "b", a_to_b, conf_extra)
        self.b = Node(procs, tmp, "b", "replica", bb, "a", ba + 3, conf_extra)

    def nodes(self):
        return (self.a, self.b)

    def cleanup(self):
        for n in self.nodes():
            n.stop_daemon()
        if self.proxy is not None:
            self.proxy.close()


@pytest.fixture
def mounts():
    """mount(path, mb): a tmpfs of mb MB at path (made here); skips the test
    when mounting is refused.  Unmounted after every process is gone (this
    fixture is set up before procs, so it is torn down after it)."""
    done = []

    def mount(path, mb):
        path.mkdir()
        try:
            cp = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={mb}m,mode=0755", "tmpfs", str(path)],
                                capture_output=True, text=True, timeout=30)
            err = cp.stderr.strip() if cp.returncode else ""
        except OSError as e:
            err = str(e)
        if err:
            pytest.skip(f"cannot mount a small filesystem here ({err}): the disk-full rows need "
                        "root and a kernel that lets it mount tmpfs")
        done.append(path)

    yield mount
    for p in reversed(done):
        if subprocess.run(["umount", str(p)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(p)], capture_output=True)


def fill(root):
    """Fill the filesystem of root to the last byte with root/ballast."""
    path = os.path.join(root, "ballast")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        st = os.statvfs(root)
        free = st.f_bavail * st.f_frsize
        try:
            os.posix_fallocate(fd, 0, max(free - (1 << 20), 1))
        except OSError:
            pass
        os.lseek(fd, 0, os.SEEK_END)
        chunk = b"\0" * 4096
        for _ in range(100_000):   # the last MB, a page at a time
            try:
                os.write(fd, chunk)
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
    finally:
        os.close(fd)


def unfill(root):
    try:
        os.unlink(os.path.join(root, "ballast"))
    except FileNotFoundError:
        pass


class Injector(threading.Thread):
    """Healthy for 1-3 s, faulty for `hold` s, again and again until stop;
    healed at the end.  self.injected counts the faults."""

    def __init__(self, kind, pair, seed, stop):
        super().__init__(daemon=True)
        self.kind, self.pair, self.stop, self.rnd = kind, pair, stop, random.Random(seed)
        self.injected = 0
        self.error = None

    def inject(self):
        a, b, px = self.pair.a, self.pair.b, self.pair.proxy
        k = self.kind
        if k == "disk_full_master":
            fill(a.root)
        elif k == "disk_full_replica":
            fill(b.root)
        elif k == "blackhole":
            px.blackhole()
        elif k == "reset":
            px.reset()
        elif k == "refuse":
            px.refuse()
        elif k == "replica_restart":
            old = children(b.proc.pid)
            if self.rnd.random() < 0.5:
                b.proc.send(signal.SIGQUIT)
            else:
                b.proc.kill_group()
            restart(b, old)
        self.injected += 1

    def heal(self):
        k = self.kind
        if k == "disk_full_master":
            unfill(self.pair.a.root)
        elif k == "disk_full_replica":
            unfill(self.pair.b.root)
        elif k in ("blackhole", "reset", "refuse"):
            self.pair.proxy.resume()

    def run(self):
        try:
            while not self.stop.wait(self.rnd.uniform(1, 3)):
                self.inject()
                if self.kind != "replica_restart":
                    self.stop.wait(self.rnd.uniform(1, 4 if self.kind.startswith("disk") else 5))
                self.heal()
        except Exception as e:   # noqa: BLE001 - reported by the test
            self.error = e
        finally:
            self.heal()


def fault_seen(kind, a, counts):
    """Did the fault reach Castor (so a row cannot pass for want of one)?"""
    if kind == "disk_full_master":
        return counts["refused"] + counts["lmtp_temp_refusals"] > 0
    if kind == "disk_full_replica":
        return "No space left on device" in a.log()
    if kind in ("blackhole", "reset", "refuse"):
        return "channel down" in a.log()
    return True


ROWS = ["disk_full_master", "disk_full_replica", "blackhole", "reset", "refuse", "replica_restart"]


@pytest.mark.parametrize("kind", ROWS)
def test_fault_matrix(kind, mounts, procs, tmp_path):
    seconds = soak_seconds(30)
    seed = soak_seed()
    print(f"fault matrix {kind}: seed {seed}, {seconds:.0f} s (CASTOR_SOAK_SEED={seed} replays it)")
    if kind.startswith("disk_full"):
        # room for the load (about 1 MB a second of it) and the databases;
        # the ballast takes whatever is left when it is the fault's turn
        mounts(tmp_path / ("a" if kind == "disk_full_master" else "b"), 128 + int(seconds))
    net = kind in ("blackhole", "reset", "refuse")
    pair = MiniPair(procs, tmp_path, proxy=net, conf_extra=HB if net else "")
    try:
        a, b = pair.nodes()
        b.start()
        a.start()
        for u in USERS:
            a.ctl("user", "add", u, "--password", PW)
        converged(a, b)
        rnd = random.Random(seed)
        load = Load(a, rnd.random())
        inj = Injector(kind, pair, rnd.random(), load.stop)
        load.start()
        inj.start()
        load.stop.wait(seconds)
        load.stop.set()
        inj.join(timeout=120 * SLOW)
        assert not inj.is_alive(), "the fault injector hung"
        assert inj.error is None, f"injecting {kind} failed: {inj.error!r}"
        load.finish()
        load.save(tmp_path / "history.jsonl")
        counts = load.counts()
        print(f"{kind}: {inj.injected} faults injected; load: {counts}")
        assert counts["acked"] > 20, f"the load did not run: {counts}"
        # a restart under ASan takes a good part of the reduced run
        assert inj.injected >= (1 if kind == "replica_restart" else 3), inj.injected
        assert fault_seen(kind, a, counts), f"{kind}: no sign that the fault bit"
        final_checks(a, b, load, seed)
    finally:
        pair.cleanup()
