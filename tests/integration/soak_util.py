"""Shared machinery of the soaks (test_crash_soak.py, test_fault_matrix.py):
a load that behaves like real clients and records every answer in a
history, a killer of random Castor processes, and the checks made at the
end of every soak.

The load: LMTP clients that behave like an MTA (a message is resent until
it gets a 250; the same Message-ID, so a resend after a fault must not
make a second copy) and IMAP clients that APPEND (never resent: an APPEND
whose answer was lost is "uncertain", one answered NO is "refused").

The checks, with both servers up and the load stopped:
- master and replica converge (`castorctl dump --for-compare`);
- on both, every acknowledged message is present exactly once, an
  uncertain one at most once, a refused one never, and nothing that no
  client sent;
- `castorctl check --all` is clean on both without --repair.

Knobs (environment): CASTOR_SOAK_SECONDS, the length of the load of one
soak; CASTOR_SOAK_SEED, the seed (default random, printed; a failing run
is replayed by setting it); CASTOR_SOAK_RATE, the most messages a second
one client sends (default 10: five clients, at most 50 a second, so the
count of messages stays bounded by the length and not by how fast the
build is)."""
import imaplib
import json
import os
import random
import signal
import smtplib
import socket
import threading
import time
import zlib
from collections import Counter

from castor_mail import lmtp_send
from conftest import pid_alive, wait_for
from repl_util import SLOW
from test_failover_soak import History, fetch_all
from test_failover_soak import msg as small_msg

USERS = ("u0", "u1", "u2")
PW = "pw"


def soak_seconds(default):
    return float(os.environ.get("CASTOR_SOAK_SECONDS") or default)


def soak_seed():
    return int(os.environ.get("CASTOR_SOAK_SEED") or random.randrange(1 << 30))


def soak_rate():
    return float(os.environ.get("CASTOR_SOAK_RATE") or 10)


def pace(t0, rnd):
    """Sleep so that one client sends at most soak_rate() messages a second
    (t0: when it started on this message)."""
    left = 1.0 / soak_rate() - (time.monotonic() - t0)
    time.sleep(max(0.0, left) + rnd.uniform(0, 0.005))


def msg(user, tag):
    """One message in eight is large enough (100 KB) to live in a blob file
    of its own rather than inside the user database (chosen by the tag, so
    a resend is the same message)."""
    m = small_msg(user, tag)
    if zlib.crc32(tag.encode()) % 8 == 0:
        line = (tag + " ").encode() * (76 // (len(tag) + 1)) + b"\r\n"
        m += line * (100_000 // len(line))
    return m


def children(pid):
    """Every descendant of pid (from /proc's children lists)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def ports_free(base, n):
    """Can a listener bind each of base..base+n-1 (as castord does, with
    SO_REUSEADDR)?"""
    for port in range(base, base + n):
        sk = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sk.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sk.bind(("127.0.0.1", port))
        except OSError:
            return False
        finally:
            sk.close()
    return True


def comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return "?"


def restart(node, old_pids):
    """An init system's restart of a castord that was killed or stopped:
    wait for its children to go (they exit when the status pipe closes,
    at their next checkpoint) and for its ports to be free (a child
    forked just before the kill is in no list we read), then start it."""
    node.proc.wait(timeout=60 * SLOW)
    wait_for(lambda: not any(pid_alive(p) for p in old_pids), timeout=30 * SLOW,
             what=f"children of the stopped castord {node.name} gone")
    wait_for(lambda: ports_free(node.base, 5), timeout=60 * SLOW,
             what=f"the ports of {node.name} free")
    node.start()


class Killer(threading.Thread):
    """Kills one random Castor process of the given nodes at a time (castord
    itself one time in eight, a child otherwise); restarts a killed
    castord.  Records what it killed in self.kills."""

    def __init__(self, nodes, seed, stop):
        super().__init__(daemon=True)
        self.nodes, self.stop, self.rnd = tuple(nodes), stop, random.Random(seed)
        self.kills = []
        self.error = None

    def victims(self):
        out = []
        for node in self.nodes:
            if node.proc is None or not node.proc.alive():
                continue
            out.append((node, node.proc.pid, True))
            out += [(node, c, False) for c in children(node.proc.pid)]
        return out

    def run(self):
        try:
            while not self.stop.wait(self.rnd.uniform(0.2, 0.8)):
                vs = self.victims()
                if not vs:
                    continue
                masters = [v for v in vs if v[2]]
                kids = [v for v in vs if not v[2]]
                pool = masters if (not kids or self.rnd.random() < 0.125) else kids
                node, pid, is_castord = self.rnd.choice(pool)
                name = comm(pid)
                old = children(pid) if is_castord else []
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                self.kills.append(f"{node.name}:{name}")
                if is_castord:
                    restart(node, old)
        except Exception as e:   # noqa: BLE001 - reported by the test
            self.error = e


def lmtp_worker(node, hist, stop, wid, rnd):
    """An MTA: each message is resent until it is accepted, for as long as
    the soak runs and a while after (the retry loop is bounded)."""
    n = 0
    while not stop.is_set():
        user = rnd.choice(USERS)
        tag = f"L{wid}x{n}"
        n += 1
        t0 = time.monotonic()
        deadline = time.monotonic() + 120 * SLOW
        while time.monotonic() < deadline:
            try:
                c = smtplib.LMTP("127.0.0.1", node.lmtp_port, timeout=30 * SLOW)
            except OSError:
                time.sleep(0.05)
                continue
            try:
                c.ehlo("mta.test")
                code, text = lmtp_send(c, "load@example.org", [user], msg(user, tag))[0]
            except (smtplib.SMTPException, OSError):
                hist.set_inbox(user, tag, "uncertain")
                time.sleep(0.02)
                continue
            finally:
                try:
                    c.close()
                except Exception:   # noqa: BLE001
                    pass
            if code == 250:
                hist.set_inbox(user, tag, "acked")
                break
            if code >= 500:
                with hist.lock:
                    hist.errors.append(f"LMTP-PERM {tag}: {code} {text}")
                hist.set_inbox(user, tag, "uncertain")
                break
            with hist.lock:
                hist.lmtp_temp = getattr(hist, "lmtp_temp", 0) + 1
            time.sleep(0.05)
        pace(t0, rnd)


def append_worker(node, hist, stop, wid, rnd):
    """An IMAP client that APPENDs to INBOX and now and then reads what it
    has (SELECT + FETCH of the newest few)."""
    im = None
    n = 0
    user = USERS[wid % len(USERS)]
    while not stop.is_set():
        if im is None:
            try:
                im = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=30 * SLOW)
                im.login(user, PW)
            except (OSError, imaplib.IMAP4.error, imaplib.IMAP4.abort):
                im = None
                time.sleep(0.05)
                continue
        tag = f"A{wid}x{n}"
        n += 1
        t0 = time.monotonic()
        try:
            typ, data = im.append("INBOX", None, None, msg(user, tag))
        except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error):
            hist.set_inbox(user, tag, "uncertain")
            im = None
            continue
        if typ == "OK":
            hist.set_inbox(user, tag, "acked")
        else:
            # a NO changes nothing (issue 16): not stored, never resent
            hist.set_inbox(user, tag, "refused")
        if n % 20 == 0:
            try:
                im.select("INBOX", readonly=True)
                im.fetch("1:*", "(UID FLAGS RFC822.SIZE)")
                im.close()
            except (OSError, imaplib.IMAP4.abort, imaplib.IMAP4.error):
                im = None
        pace(t0, rnd)


class Load:
    """n_lmtp MTA clients and n_imap APPEND clients against node, each
    recording into one History."""

    def __init__(self, node, seed, n_lmtp=3, n_imap=2):
        rnd = random.Random(seed)
        self.hist = History()
        self.stop = threading.Event()
        self.workers = [threading.Thread(target=lmtp_worker,
                                         args=(node, self.hist, self.stop, i, random.Random(rnd.random())),
                                         daemon=True) for i in range(n_lmtp)]
        self.workers += [threading.Thread(target=append_worker,
                                          args=(node, self.hist, self.stop, i, random.Random(rnd.random())),
                                          daemon=True) for i in range(n_imap)]

    def start(self):
        for w in self.workers:
            w.start()
        return self

    def finish(self):
        """Stop and wait for every client (an MTA retries what it holds)."""
        self.stop.set()
        for w in self.workers:
            w.join(timeout=240 * SLOW)
            assert not w.is_alive(), "a load client hung"

    def counts(self):
        c = Counter(self.hist.inbox.values())
        return {"acked": c["acked"], "uncertain": c["uncertain"], "refused": c["refused"],
                "lmtp_temp_refusals": getattr(self.hist, "lmtp_temp", 0)}

    def save(self, path):
        """The history, for a post-mortem (one line per message)."""
        with open(path, "w") as f:
            for (user, tag), how in sorted(self.hist.inbox.items()):
                f.write(json.dumps({"user": user, "tag": tag, "outcome": how}) + "\n")


def check_history(hist, node):
    """Each acknowledged message once, an uncertain one at most once, a
    refused one never, and nothing that no client sent."""
    problems = []
    for user in USERS:
        counts = {}
        for subj, _ in fetch_all(node, user, "INBOX"):
            counts[subj] = counts.get(subj, 0) + 1
        for (u, tag), how in hist.inbox.items():
            if u != user:
                continue
            n = counts.pop(tag, 0)
            want = {"acked": (1, 1), "uncertain": (0, 1), "refused": (0, 0)}[how]
            if not want[0] <= n <= want[1]:
                problems.append(f"{node.name}: {user} {how} {tag} present {n} times")
        problems += [f"{node.name}: {user} holds {t} x{n} that no client sent" for t, n in counts.items()]
    return problems


def check_clean(node):
    cp = node.ctl("check", "--all", check=False)
    assert cp.returncode == 0, (f"castorctl check --all on {node.name}: {cp.returncode}\n{cp.stdout}\n"
                                f"{cp.stderr}\n{node.log()[-3000:]}")


def final_checks(a, b, load, seed, converge_timeout=120):
    """Both up, converged, the history holds on both sides, both clean."""
    from test_failover_util import converged
    for n in (a, b):
        if n.proc is None or not n.proc.alive():
            n.start()
    assert not [e for e in load.hist.errors if e.startswith("LMTP-PERM")], load.hist.errors
    converged(a, b, timeout=converge_timeout)
    problems = check_history(load.hist, a) + check_history(load.hist, b)
    assert not problems, f"seed {seed}:\n" + "\n".join(problems[:40])
    check_clean(a)
    check_clean(b)
