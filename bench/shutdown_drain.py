"""bench/shutdown_drain.py - graceful shutdown under load: how long the master
takes to exit on SIGQUIT, and whether the replica had every acknowledged
message at that moment.

Rolling replication on; two LMTP clients deliver back to back to one user
(bounded in count and time); after LOAD seconds the master's supervisor
(castord / cyrmaster) gets SIGQUIT.  Measured:
  exit       SIGQUIT -> the supervisor has exited
  acked      messages that got their 250 (the clients stop at the first error)
  replica    messages on the replica right after the exit (IMAP STATUS)
  unreplicated at exit = acked - replica (Castor must report 0: its SHUTDOWN
             section drains the sync log; Cyrus 3.6 leaves the log unplayed)
Each client must still be delivering when the signal is sent (it ends after
it, normally because the shutdown closes its connection): a client that
failed or stopped before the signal makes the run invalid (harness), since
the figures would describe an idle master.
Then the master is started again and we check that every acked message is on
it (lost acked = acked - master count, must be 0 for both) and how long the
replica takes to catch up.  Sizes: LOAD 3 s (full), 2 s (quick), 0.5 s (smoke).
Run alone: python3 bench/shutdown_drain.py [--quick] [--peers cyrus]
"""
import multiprocessing as mp
import os
import sys
import time

from common import (lmtp_connect, make_msg, now, pid_alive, replica_logins, try_status, wait_counts,
                    wait_pid_gone)

NAME = "shutdown_drain"
TITLE = "SIGQUIT under load: master exit time, acknowledged messages not on the replica at exit"
NEEDS = ("castord", "castorctl", "lmtpd", "imapd", "syncd", "sync-client")


def sizes(level):
    # bodies: distinct messages built up front, then reused with a new
    # Message-ID; smoke reuses from the 10th so that path runs in CI too
    return {"load_s": {"smoke": 0.5, "quick": 2.0, "full": 3.0}[level], "clients": 2, "max_per_client": 20000,
            "bodies": 10 if level == "smoke" else 200}


def _loader(port, rcpt, user, tag, maxn, nbodies, stop, q):
    """Deliver back to back until told to stop, the server goes away, or the
    bounds (maxn, 120 s).  Reports when it ended, so the run can tell a client
    the shutdown stopped from one that had stopped before the signal."""
    acked, err, why = 0, None, "limit"
    t_end = time.monotonic() + 120
    t_ack = None
    msgs = [make_msg(user, tag, i) for i in range(min(maxn, nbodies))]
    try:
        c = lmtp_connect(port, timeout=30)
        for i in range(maxn):
            if stop.is_set():
                why = "stop"
                break
            if time.monotonic() > t_end:
                why = "deadline"
                break
            # nbodies bodies reused, but every message has its own Message-ID:
            # a repeated one would be stored once (duplicate suppression)
            k = i % len(msgs)
            data = msgs[k] if i == k else msgs[k].replace(f"<{tag}.{k}.".encode(), f"<{tag}.{i}.".encode(), 1)
            c.sendmail("bench@localhost", [rcpt], data)
            acked += 1
            t_ack = now()
        c.quit()
    except Exception as e:  # noqa: BLE001 - what the client saw is the point
        err, why = repr(e)[:300], "error"
    q.put({"tag": tag, "acked": acked, "error": err, "why": why, "t_end": now(), "t_last_ack": t_ack})


def judge(r, t_sig):
    """How a loader ended, for the harness: "stopped" when it was still
    delivering at the signal and ended after it (the shutdown closing its
    connection is the expected end), anything else is a failed client."""
    if not r.get("t_end") or r.get("why") == "lost":
        return "lost"
    if r["t_end"] < t_sig:
        return "error" if r.get("error") else "early"      # stopped before the signal
    if not r.get("acked"):
        return "early"
    return "stopped"


def run_once(peer, ctx):
    from harness import client, fig
    s = ctx.sizes
    peer.prepare("default", repl=True)
    user = f"sd{ctx.rep}t{int(time.time()) % 100000}"
    peer.create_users([user])
    pw = peer.password(user)
    mpc = mp.get_context("fork")
    stop, q = mpc.Event(), mpc.Queue()
    ps = [mpc.Process(target=_loader, args=(peer.m_lmtp, peer.rcpt(user), user, f"sd{k}", s["max_per_client"],
                                            s["bodies"], stop, q), daemon=True) for k in range(s["clients"])]
    for p in ps:
        p.start()
    with ctx.measuring():
        time.sleep(s["load_s"])
        t_sig = now()
        pid = peer.signal_master(peer.SHUTDOWN_SIGNAL)
        exit_s = wait_pid_gone(pid, 90)
        t_exit = now()
    replica_at_exit = try_status(peer.r_imap, user, pw)
    stop.set()
    res = []
    for _ in ps:
        try:
            res.append(q.get(timeout=60))
        except Exception:  # noqa: BLE001
            res.append({"acked": 0, "error": "loader lost", "why": "lost"})
    for p in ps:
        p.join(5)
        if p.is_alive():
            p.kill()
    acked = sum(r["acked"] for r in res)
    master_alive = pid_alive(pid)
    # bring the master back: is every acked message there, and how fast does the replica catch up?
    peer.forget_master()
    # logged in to the replica before the restart: the catch-up holds no login
    rconns = replica_logins(peer.r_imap, [user], peer.password)
    t_up = now()
    peer.start("master", repl=True)
    on_master = try_status(peer.m_imap, user, pw)
    t_rep = wait_counts(peer.r_imap, {user: on_master or 0}, peer.password, timeout=90,
                        conns=rconns) if on_master else None
    if not on_master:
        for m in rconns.values():
            m.close()
    figs = [fig("exit_s", "SIGQUIT -> master exited", "s", "lower", exit_s),
            fig("acked", "messages acknowledged (250) before the exit", "msgs", None, acked)]
    if replica_at_exit is not None:
        figs.append(fig("unreplicated", "acknowledged but not on the replica at exit", "msgs", "lower",
                        max(0, acked - replica_at_exit)))
    if on_master is not None:
        figs.append(fig("lost", "acknowledged but missing on the master after restart", "msgs", "lower",
                        max(0, acked - on_master)))
    if t_rep:
        figs.append(fig("catchup_s", "replica complete after the master restarted", "s", "lower", t_rep - t_up))
    details = {"signal": "SIG" + peer.SHUTDOWN_SIGNAL, "exit_s": exit_s, "master_still_alive": master_alive,
               "acked": acked, "replica_at_exit": replica_at_exit, "master_after_restart": on_master,
               "status_on_replica_after_exit_s": now() - t_exit}
    clients = [client(f"loader{k}", r["acked"], r.get("error"), judge(r, t_sig),
                      ended_after_signal_s=(r["t_end"] - t_sig) if r.get("t_end") else None,
                      last_ack_before_signal_s=(t_sig - r["t_last_ack"]) if r.get("t_last_ack") else None)
               for k, r in enumerate(res)]
    if hasattr(peer, "syslog_tail"):
        details["log"] = peer.syslog_tail(15, r"shutdown|signal|exit|sync_client")
    return {"figures": figs, "details": details, "clients": clients}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    sys.exit(harness.main(["--only", NAME] + sys.argv[1:]))
