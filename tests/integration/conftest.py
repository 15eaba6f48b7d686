"""Shared fixtures for Castor's integration tests.

Tests start real processes from the build tree named by $CASTOR_BUILD
(default: <top>/build), on free loopback ports, in temporary directories,
and always stop them by pid (whole process group) when the test ends,
pass or fail.  Every log a process writes is scanned for sanitizer
reports at teardown: an ASan/UBSan report fails the test.

Time, the rule for every test here:
- Wait for the event, never for a while.  A test that needs "the server
  has the command in hand", "castord has signalled its children", "the
  lock is released" waits for what shows it: a log line (castord and every
  service log one for most events), a status file, a port, a reply, a pid
  gone -- with wait_for() below, or a helper's wait_log().  time.sleep()
  as synchronisation is a race that a loaded machine loses.
- Every time bound is multiplied by SLOW: timeouts, deadlines and the
  upper end of a measured duration ("< 1.0 * SLOW").  A lower bound that
  checks the server waited long enough (a backoff, a deadline) is not
  scaled.  SLOW is 5 for a sanitizer build (what CI runs) and 1 otherwise.
- A sleep that paces the test's own load (one byte a second, a delivery
  every 50 ms) or opens an observation window for something that must NOT
  happen stays a sleep; say which it is beside it, scale a window by SLOW,
  and keep the assertion around it independent of exact timing.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("CASTOR_BUILD") or TOP / "build").resolve()

SANITIZER_MARKS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer",
                   "ERROR: UndefinedBehaviorSanitizer")


# Run as root, `castorctl init` gives each server root to the unprivileged
# user castor, and castord runs its children as that user
# (docs/security.md "Privileges"): the user must be able to walk down to the
# root.  pytest makes /tmp/pytest-of-root and every temporary directory 0700,
# so a root session gets its own base directory instead (0711: searchable, not
# listable), and every directory pytest makes in it is open to every user, as
# /tmp is (1777: a child running as castor may write a test's files there).
# A session that passes --basetemp keeps it; its parents must be searchable
# by castor.
_own_base = None


def pytest_configure(config):
    global _own_base
    if os.geteuid() == 0 and not config.option.basetemp:
        _own_base = tempfile.mkdtemp(prefix="castor-pytest-")
        os.chmod(_own_base, 0o711)
        config.option.basetemp = os.path.join(_own_base, "t")


def pytest_sessionfinish(session, exitstatus):
    if _own_base is not None and exitstatus == 0:
        shutil.rmtree(_own_base, ignore_errors=True)


_orig_mktemp = pytest.TempPathFactory.mktemp


def _searchable_mktemp(self, basename, numbered=True):
    p = _orig_mktemp(self, basename, numbered)
    if os.geteuid() == 0:
        os.chmod(self.getbasetemp(), 0o711)
        os.chmod(p, 0o1777)
    return p


pytest.TempPathFactory.mktemp = _searchable_mktemp


def binpath(name):
    """Path of a built program (castord, castorctl, lmtpd, ...) in the build tree."""
    for sub in ("src/master", "src/ctl", "src/lmtp", "src/pop3", "src/imap", "src/sync",
                "src/store", "tests/helpers"):
        p = BUILD / sub / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    hits = [p for p in BUILD.rglob(name) if p.is_file() and os.access(p, os.X_OK)]
    if not hits:
        raise FileNotFoundError(f"{name} not built in {BUILD}")
    return str(hits[0])


def _sanitized_build():
    """Was the build under test made with ASan/UBSan?  (It runs several times slower.)"""
    try:
        path = binpath("syncd")
    except FileNotFoundError:
        return False
    with open(path, "rb") as f:
        data = f.read()
    return b"__asan_init" in data or b"__ubsan_handle" in data


# The slow-machine factor for every time bound in the tests (see the top).
SLOW = 5 if _sanitized_build() else 1


def free_ports(n=1, start=None):
    """Return a base port such that base..base+n-1 are all free on 127.0.0.1."""
    import random
    for _ in range(200):
        base = start or random.randint(20000, 60000 - n)
        start = None
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
    raise RuntimeError("no free port block")


def wait_for(pred, timeout=10.0, interval=0.02, what="condition"):
    """Poll pred() until it returns a true value; return it, or fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def port_open(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def sanitizer_reports(text):
    return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKS)]


class Proc:
    """A started process with its own process group and a log file."""

    def __init__(self, argv, log, env=None, cwd=None, stdin=subprocess.DEVNULL, **kw):
        self.argv = [str(a) for a in argv]
        self.log = Path(log)
        self.logf = open(self.log, "ab")
        e = dict(os.environ)
        if env:
            e.update({k: str(v) for k, v in env.items()})
        self.p = subprocess.Popen(self.argv, stdout=self.logf, stderr=subprocess.STDOUT, stdin=stdin,
                                  env=e, cwd=cwd, start_new_session=True, **kw)
        self.pid = self.p.pid

    def alive(self):
        return self.p.poll() is None

    def send(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout=None):
        return self.p.wait(timeout=timeout)

    def kill_group(self):
        """SIGKILL the whole process group (children included)."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def stop(self, sig=signal.SIGTERM, timeout=10):
        if self.alive():
            try:
                os.kill(self.pid, sig)
                self.p.wait(timeout=timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                pass
        self.kill_group()
        self.logf.close()

    def output(self):
        if not self.logf.closed:
            self.logf.flush()
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""


class Procs:
    """Every process a test starts; all of them are stopped at teardown."""

    def __init__(self, tmp):
        self.tmp = Path(tmp)
        self.all = []
        self.extra_logs = []

    def start(self, argv, log=None, **kw):
        log = log or self.tmp / f"proc{len(self.all)}-{Path(str(argv[0])).name}.log"
        p = Proc(argv, log, **kw)
        self.all.append(p)
        return p

    def watch_log(self, path):
        """Scan another log file for sanitizer reports at teardown."""
        self.extra_logs.append(Path(path))

    def stop_all(self):
        for p in reversed(self.all):
            p.stop()

    def reports(self):
        out = []
        for p in self.all:
            out += sanitizer_reports(p.output())
        for path in self.extra_logs:
            if path.exists():
                out += sanitizer_reports(path.read_text(errors="replace"))
        return out


@pytest.fixture
def procs(tmp_path):
    ps = Procs(tmp_path)
    yield ps
    ps.stop_all()
    rep = ps.reports()
    assert not rep, "sanitizer reports:\n" + "\n".join(rep[:20])


def run(argv, check=True, timeout=120, input=None, env=None):
    """Run a command to completion; return CompletedProcess with text output."""
    e = dict(os.environ)
    if env:
        e.update({k: str(v) for k, v in env.items()})
    cp = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout,
                        input=input, env=e)
    if check and cp.returncode != 0:
        raise AssertionError(f"{argv} exited {cp.returncode}\nstdout:\n{cp.stdout}\nstderr:\n{cp.stderr}")
    rep = sanitizer_reports(cp.stderr)
    assert not rep, "sanitizer reports:\n" + "\n".join(rep[:20])
    return cp
