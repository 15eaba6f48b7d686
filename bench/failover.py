"""bench/failover.py - Castor's soft failover under load: total time, and the
window during which deliveries were refused.

The master holds USERS users x MSGS messages; one LMTP client delivers at
RATE/s to those users, trying the master's LMTP port first and the other
server's when that one refuses (connection refused, 4xx); meanwhile
`castorctl -C master/castor.conf failover --to r1` runs.  Measured:
  failover      the command's wall time (exit 0 required)
  refused window   the longest gap between two successful deliveries while
                the command ran (what an MTA would see as deferrals)
  lost          acknowledged deliveries missing on the new master afterwards
Cyrus 3.6 and Dovecot 2.3 have no failover command: reported "n/a".
The mailboxes are filled with `castorctl import` and the replica is caught
up before the failover starts.
Sizes: full 100 users x 1,000 messages at 20/s (issue 9), quick 10 x 100,
smoke 2 x 5.  Leaves the roles swapped: the pair is laid out afresh after it.
Run alone: python3 bench/failover.py [--quick]
"""
import os
import smtplib
import sys
import threading
import time

from common import lmtp_connect, make_msg, now, try_status, wait_counts

NAME = "failover"
TITLE = "soft failover under 20 deliveries/s: total time, refused-delivery window (Castor only)"
NEEDS = ("castord", "castorctl", "lmtpd", "imapd", "syncd", "sync-client")
DIRTIES = True


def sizes(level):
    return {"smoke": {"users": 2, "msgs": 5, "rate": 20, "tail_s": 1},
            "quick": {"users": 10, "msgs": 100, "rate": 20, "tail_s": 2},
            "full": {"users": 100, "msgs": 1000, "rate": 20, "tail_s": 3}}[level]


def applies(peer):
    if peer.name != "castor":
        return "n/a (no failover command)"
    return None


def _load(peer, users, rate, stop, out):
    """Deliver at `rate`/s round-robin; record (t, ok, port, error)."""
    ports = [peer.m_lmtp, peer.r_lmtp]
    conns = {}
    i = 0
    t0 = now()
    while not stop.is_set() and i < 100000 and now() - t0 < 900:
        target = t0 + i / rate
        d = target - now()
        if d > 0:
            time.sleep(d)
        u = users[i % len(users)]
        data = make_msg(u, "fo", i)
        ok, err, used = False, None, None
        for port in ports:
            try:
                if port not in conns:
                    conns[port] = lmtp_connect(port, timeout=10)
                conns[port].sendmail("bench@localhost", [peer.rcpt(u)], data)
                ok, used = True, port
                break
            except (OSError, smtplib.SMTPException) as e:
                err = repr(e)[:200]
                c = conns.pop(port, None)
                if c:
                    try:
                        c.close()
                    except OSError:
                        pass
        out.append((now(), ok, used, err, u))
        i += 1
    for c in conns.values():
        try:
            c.quit()
        except (OSError, smtplib.SMTPException):
            pass


def _stop_restarted(root):
    """castorctl failover restarts the old master's castord as a daemon (the
    harness did not start it): stop it through its pidfile, whole group."""
    import fcntl
    import signal
    p = os.path.join(root, "run", "castord.pid")
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return          # nobody holds it
        except OSError:
            pass
        txt = os.read(fd, 64).decode().strip()
    finally:
        os.close(fd)
    if not txt.isdigit():
        return
    pid = int(txt)
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    end = time.monotonic() + 30
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _fill(peer, users, msgs):
    """Each user gets msgs messages of 4 KiB through `castorctl import` (one
    mbox, 500 messages a transaction; replicated by the rolling client like
    any change), then wait until the replica holds them all: the state
    before the failover is a master with its replica caught up.  (Through
    LMTP, 100,000 deliveries to 100 users took about 8 minutes a run.)"""
    from peers.base import run
    mbox = os.path.join(peer.base, "failover-fill.mbox")
    with open(mbox, "wb") as f:
        for i in range(msgs):
            f.write(b"From bench@localhost Thu Nov 26 12:00:00 2026\n")
            f.write(make_msg("fill", "fofill", i).replace(b"\r\n", b"\n"))
            f.write(b"\n")
    try:
        for u in users:
            run([peer.binpath("castorctl"), "-C", peer.conf("master"), "import", u, mbox], timeout=600)
    finally:
        os.unlink(mbox)
    if wait_counts(peer.r_imap, {u: msgs for u in users}, peer.password, timeout=600) is None:
        raise RuntimeError("the replica did not catch up with the fill in 600 s")


def run_once(peer, ctx):
    from harness import fig
    from peers.base import run
    s = ctx.sizes
    peer.prepare("default", repl=True, fresh=True)
    users = [f"fo{ctx.rep}u{k}" for k in range(s["users"])]
    peer.create_users(users)
    _fill(peer, users, s["msgs"])
    stop, out = threading.Event(), []
    th = threading.Thread(target=_load, args=(peer, users, s["rate"], stop, out), daemon=True)
    th.start()
    time.sleep(1.0)
    t0 = now()
    mroot = os.path.dirname(peer.conf("master"))
    with ctx.measuring():
        cp = run([peer.binpath("castorctl"), "-C", peer.conf("master"), "failover", "--to", "r1",
                  "--castord-log", os.path.join(mroot, "castord.log")], timeout=600, check=False)
        t1 = now()
    time.sleep(s["tail_s"])
    stop.set()
    th.join(30)
    # the load client must have been delivering before, during and after the
    # command (refusals in between are what is measured)
    ok_times = [t for t, ok, *_ in out if ok]
    if th.is_alive():
        ended, why = "lost", "load thread still running 30 s after stop"
    elif not ok_times or ok_times[0] > t0 or ok_times[-1] < t1:
        ended, why = "early", "no successful delivery before the command or after it"
    else:
        ended, why = "stopped", None
    load_client = {"role": "lmtp 20/s", "sent": len(ok_times), "error": why, "ended": ended,
                   "refused": sum(1 for _t, ok, *_ in out if not ok)}
    _stop_restarted(mroot)
    if cp.returncode != 0:
        raise RuntimeError(f"castorctl failover: exit {cp.returncode}: {(cp.stdout + cp.stderr)[-500:]}")
    oks = [t for t, ok, *_ in out if ok]
    during = [t for t in oks if t0 - 1 <= t <= t1 + s["tail_s"]]
    gaps = [b - a for a, b in zip(during, during[1:])]
    window = max(gaps) if gaps else (t1 - t0)
    refused = sum(1 for t, ok, *_ in out if not ok)
    # every acknowledged delivery must be on the new master (the old replica)
    acked = {}
    for _t, ok, _p, _e, u in out:
        if ok:
            acked[u] = acked.get(u, 0) + 1
    lost = 0
    for u in users:
        have = try_status(peer.r_imap, u, peer.password(u))
        want = s["msgs"] + acked.get(u, 0)
        if have is None or have < want:
            lost += want - (have or 0)
    figs = [fig("failover_s", "castorctl failover, total", "s", "lower", t1 - t0),
            fig("refused_window_s", "longest gap between successful deliveries", "s", "lower", window),
            fig("refused", "deliveries refused by both servers", "msgs", "lower", refused),
            fig("lost", "acknowledged deliveries missing on the new master", "msgs", "lower", lost)]
    return {"figures": figs, "clients": [load_client],
            "details": {"stdout": cp.stdout[-2000:], "acked": sum(acked.values()),
                                         "attempts": len(out)}}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    sys.exit(harness.main(["--only", NAME] + sys.argv[1:]))
