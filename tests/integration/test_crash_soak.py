"""Seeded crash soak (issue 16): every Castor process on both sides of a
pair is SIGKILLed at random while LMTP and IMAP clients load the master.

The load: LMTP clients that behave like an MTA (a message is resent until
it gets a 250; the same Message-ID, so a resend after a crash must not
make a second copy) and IMAP clients that APPEND (never resent: an APPEND
whose answer was lost is "uncertain").  Every reply is written to a
history.  A killer thread, driven by a seeded random generator, picks a
victim every 0.2-0.8 s among the processes of both servers: castord
itself, or one of its children (lmtpd, imapd, pop3d, syncd, sync-client,
whatever runs at that moment).  A castord that was killed is started again
once its children have gone, as an init system would.

Afterwards, with both servers up and the load stopped:
- master and replica converge (`castorctl dump --for-compare`);
- on both, every acknowledged message is present exactly once, an
  uncertain one at most once, and nothing that no client sent;
- `castorctl check --all` is clean on both without --repair (leftovers of
  a crash, such as a blob's .tmp file, are cleaned at start, not damage).

CASTOR_SOAK_SECONDS (default 60) sets the length of the load, and
CASTOR_SOAK_SEED the seed (default: random, printed; a failing run is
replayed by setting it).  By hand: CASTOR_SOAK_SECONDS=900 for a long one.
"""
import imaplib
import os
import random
import signal
import smtplib
import socket
import threading
import time
import zlib

from castor_mail import lmtp_send
from conftest import pid_alive, wait_for
from repl_util import SLOW
from test_failover_soak import History, fetch_all
from test_failover_soak import msg as small_msg
from test_failover_util import Pair, converged

USERS = ("u0", "u1", "u2")
PW = "pw"


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


class Killer(threading.Thread):
    """Kills one random Castor process of either server at a time; restarts
    a killed castord.  Records what it killed."""

    def __init__(self, pair, seed, stop):
        super().__init__(daemon=True)
        self.pair, self.stop, self.rnd = pair, stop, random.Random(seed)
        self.kills = []
        self.error = None
        self.lock = threading.Lock()   # held while a castord is being restarted

    def victims(self):
        out = []
        for node in self.pair.nodes():
            if node.proc is None or not node.proc.alive():
                continue
            out.append((node, node.proc.pid, True))
            out += [(node, c, False) for c in children(node.proc.pid)]
        return out

    def restart(self, node, old_pids):
        """An init system's restart: wait for the killed castord's children
        to go (they exit when the status pipe closes, at their next
        checkpoint) and for its ports to be free (a child forked just
        before the kill is in no list we read), then start it."""
        node.proc.wait(timeout=30 * SLOW)
        wait_for(lambda: not any(pid_alive(p) for p in old_pids), timeout=30 * SLOW,
                 what=f"children of the killed castord {node.name} gone")
        wait_for(lambda: ports_free(node.base, 5), timeout=60 * SLOW,
                 what=f"the ports of {node.name} free")
        node.start()

    def run(self):
        try:
            while not self.stop.wait(self.rnd.uniform(0.2, 0.8)):
                vs = self.victims()
                if not vs:
                    continue
                # castord itself one time in eight; a child otherwise
                masters = [v for v in vs if v[2]]
                kids = [v for v in vs if not v[2]]
                pool = masters if (not kids or self.rnd.random() < 0.125) else kids
                node, pid, is_castord = self.rnd.choice(pool)
                name = comm(pid)
                with self.lock:
                    old = children(pid) if is_castord else []
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        continue
                    self.kills.append(f"{node.name}:{name}")
                    if is_castord:
                        self.restart(node, old)
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
            time.sleep(0.02)
        time.sleep(rnd.uniform(0, 0.01))


def append_worker(node, hist, stop, wid, rnd):
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
        time.sleep(rnd.uniform(0, 0.01))


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


def test_crash_soak(procs, tmp_path):
    seconds = float(os.environ.get("CASTOR_SOAK_SECONDS", "60"))
    seed = int(os.environ.get("CASTOR_SOAK_SEED") or random.randrange(1 << 30))
    print(f"crash soak: seed {seed}, {seconds:.0f} s (CASTOR_SOAK_SEED={seed} replays it)")
    pair = Pair(procs, tmp_path)
    try:
        a, b = pair.start().nodes()
        for u in USERS:
            a.ctl("user", "add", u, "--password", PW)
        converged(a, b)
        rnd = random.Random(seed)
        hist = History()
        stop = threading.Event()
        workers = [threading.Thread(target=lmtp_worker, args=(a, hist, stop, i, random.Random(rnd.random())),
                                    daemon=True) for i in range(3)]
        workers += [threading.Thread(target=append_worker, args=(a, hist, stop, i, random.Random(rnd.random())),
                                     daemon=True) for i in range(2)]
        killer = Killer(pair, rnd.random(), stop)
        for w in workers:
            w.start()
        killer.start()
        stop.wait(seconds)
        stop.set()
        killer.join(timeout=120 * SLOW)
        assert not killer.is_alive(), "the killer hung"
        assert killer.error is None, f"restarting a killed castord failed: {killer.error!r}"
        for w in workers:
            w.join(timeout=240 * SLOW)
            assert not w.is_alive(), "a load client hung"
        for n in (a, b):
            if n.proc is None or not n.proc.alive():
                n.start()
        acked = sum(1 for v in hist.inbox.values() if v == "acked")
        from collections import Counter
        print(f"kills {len(killer.kills)}: {dict(Counter(killer.kills))}")
        print(f"acknowledged {acked}, uncertain {sum(1 for v in hist.inbox.values() if v == 'uncertain')}")
        assert not [e for e in hist.errors if e.startswith("LMTP-PERM")], hist.errors
        assert acked > 20, "the load did not run"
        assert len(killer.kills) >= 10, killer.kills

        converged(a, b, timeout=120)
        problems = check_history(hist, a) + check_history(hist, b)
        assert not problems, f"seed {seed}:\n" + "\n".join(problems[:40])
        check_clean(a)
        check_clean(b)
    finally:
        pair.cleanup()
