"""bench/peers/base.py - the interface every system under test implements.

A Peer owns one master + replica pair under `root` (a temporary directory the
harness removes), on ports it picked as free on 127.0.0.1.  Benchmarks call:

  prepare(slot, repl)   make sure both instances run, the master in the
                        replication variant named by `slot` ("default" or
                        "lowlag"; SLOTS maps it to the system's own name) and
                        with rolling replication on or off
  create_users(users)   users exist on the master (and, unless told not to
                        wait, are visible on the replica)
  rcpt(user), password(user), folder(i)
  m_imap m_lmtp r_imap r_lmtp   ports
  master_pid()          the pid of the master's supervisor process
  signal_master(sig)    send it a signal (shutdown_drain)
  reset_replica()       stop, wipe and restart an empty replica
  full_sync(user, relay_port=None, compress=None) -> (rc, output)   one-shot full
                        sync of a user; compress True/False sets the channel's
                        compression where a setting exists (None: the default)
  COMPRESS_CAPA         bytes the relay strips from the replica's greeting to
                        turn compression off where no setting does (Cyrus)
  mailbox_disk(user)    (apparent, allocated, files) of the user's storage on the master
  teardown()            stop everything (always called by the harness)

After something that leaves the pair in an unknown state (a benchmark error,
a shutdown, a replica wiped), the benchmark calls mark_dirty(): the next
prepare() lays both instances out afresh.
"""
import os
import signal
import subprocess
import time

from common import log


class PeerError(RuntimeError):
    pass


class Peer:
    name = "?"
    SLOTS = {"default": "default"}       # slot -> this system's variant name
    SHUTDOWN_SIGNAL = "QUIT"
    BENCHMARKS = None                     # None: every benchmark; else the names it takes part in
    COMPRESS_CAPA = None

    def __init__(self, opts, root):
        self.opts = opts
        self.root = root
        self.base = os.path.join(root, self.name)
        self.laid_out = False
        self.dirty = False
        self.user_timeout = 60    # seconds a new user may take to reach the replica
        self.generation = 0       # +1 at every fresh layout: data made before is gone
        self.slot = None
        self.repl = None
        self.m_imap = self.m_lmtp = self.r_imap = self.r_lmtp = None

    # -- availability
    def unavailable(self):
        """None when the peer can run, else a short reason ("not built", ...)."""
        return None

    def missing(self, programs):
        """The programs of `programs` this peer lacks (Castor: not built yet)."""
        return []

    def version(self):
        return None

    # -- lifecycle, to be implemented
    def layout(self, slot):
        raise NotImplementedError

    def start(self, which="all", repl=True):
        raise NotImplementedError

    def stop(self, which="all", sig="TERM"):
        raise NotImplementedError

    def reconfigure(self, slot):
        """Rewrite the master's configuration for `slot` (master stopped)."""
        raise NotImplementedError

    def teardown(self):
        try:
            self.stop("all")
        except Exception as e:  # noqa: BLE001
            log(f"{self.name}: teardown: {e!r}")

    def mark_dirty(self):
        self.dirty = True

    def prepare(self, slot="default", repl=True, fresh=False):
        if slot not in self.SLOTS:
            raise PeerError(f"{self.name} has no '{slot}' variant")
        if fresh or self.dirty or not self.laid_out:
            self.stop("all")
            os.makedirs(self.base, exist_ok=True)
            self.layout(slot)
            self.laid_out = True
            self.generation += 1
            self.start("replica")
            self.start("master", repl=repl)
            self.slot, self.repl, self.dirty = slot, repl, False
            return
        if self.slot != slot:
            self.stop("master")
            self.reconfigure(slot)
            self.start("master", repl=repl)
        elif self.repl != repl or not self.running("master"):
            self.stop("master")
            self.start("master", repl=repl)
        if not self.running("replica"):
            self.start("replica")
        self.slot, self.repl = slot, repl

    def running(self, which):
        raise NotImplementedError

    # -- questions benchmarks ask
    def rcpt(self, user):
        return user

    def password(self, user):
        return "x"

    def folder(self, i):
        return f"f{i}"

    def master_pid(self):
        raise NotImplementedError

    def replica_pid(self):
        raise NotImplementedError

    def signal_master(self, sig):
        pid = self.master_pid()
        os.kill(pid, getattr(signal, "SIG" + sig))
        return pid

    def create_users(self, users, wait_replica=True, timeout=None):
        raise NotImplementedError

    def reset_replica(self):
        raise NotImplementedError

    def full_sync(self, user, relay_port=None, compress=None):
        raise NotImplementedError

    def mailbox_disk(self, user):
        return None

    def replica_sync_port(self):
        raise NotImplementedError


def run(argv, timeout=300, check=True, env=None, input=None):
    """Run a command to completion (bounded); CompletedProcess with text output."""
    e = dict(os.environ)
    if env:
        e.update(env)
    try:
        cp = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                            env=e, input=input)
    except subprocess.TimeoutExpired as ex:
        raise PeerError(f"{argv[0]} timed out after {timeout}s") from ex
    if check and cp.returncode != 0:
        raise PeerError(f"{' '.join(map(str, argv))}: exit {cp.returncode}\n{cp.stdout[-2000:]}\n{cp.stderr[-2000:]}")
    return cp


def wait_until(pred, timeout, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    return None
