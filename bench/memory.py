"""bench/memory.py - memory of the master process and per idle IMAP connection.

With the pair running and idle, the master's process tree (the supervisor and
every descendant) is measured from /proc/PID/status (RSS) and
/proc/PID/smaps_rollup (PSS); then N IMAP connections are opened to the
master, each logs in and SELECTs its (small) INBOX and stays idle; after 1 s
the tree is measured again.
  master RSS              the supervisor process (cyrmaster / castord), idle and at N
  PSS per idle connection (tree PSS at N - tree PSS idle) / N: what one more
                          idle client costs, whatever the process model
  PSS of a serving process   mean PSS of the processes that appeared (one per
                          connection when the server forks per connection)
Sizes: N = 200 (full, quick), 5 (smoke).
Run alone: python3 bench/memory.py [--quick] [--peers cyrus]
"""
import os
import sys
import time

from common import RawImap, descendants, mem_kb

NAME = "memory"
TITLE = "RSS of the master process, PSS per idle IMAP connection (200 connections)"
NEEDS = ("castord", "castorctl", "imapd")


def sizes(level):
    return {"connections": 5 if level == "smoke" else 200}


def tree(pid):
    pids = descendants(pid)
    mem = {p: mem_kb(p) for p in pids}
    return {p: m for p, m in mem.items() if m}


def run_once(peer, ctx):
    from harness import fig
    nconn = ctx.sizes["connections"]
    # a fresh pair every run: both systems keep a closed connection's
    # process as an idle worker, so a second run on the same pair would
    # count 200 idle workers in its baseline and measure almost nothing
    peer.prepare("default", repl=True, fresh=True)
    user = f"mem{ctx.rep}t{int(time.time()) % 100000}"
    peer.create_users([user], wait_replica=False)
    mpid = peer.master_pid()
    time.sleep(1.0)
    before = tree(mpid)
    conns = []
    err, ended = None, "done"
    try:
        t_end = time.monotonic() + 120
        for _ in range(nconn):
            if time.monotonic() > t_end:
                err, ended = f"opened only {len(conns)} of {nconn} connections in 120 s", "deadline"
                break
            c = RawImap(peer.m_imap, timeout=30)
            conns.append(c)
            c.login(user, peer.password(user))
            st, _ = c.cmd("SELECT INBOX")
            if st != "OK":
                raise RuntimeError("SELECT INBOX failed")
    except (OSError, RuntimeError, ConnectionError) as e:
        err, ended = repr(e)[:300], "error"
    try:
        time.sleep(1.0)
        after = tree(mpid)
    finally:
        for c in conns:
            c.close()
    pss_before = sum(m.get("pss_kb", 0) for m in before.values())
    pss_after = sum(m.get("pss_kb", 0) for m in after.values())
    new = [m for p, m in after.items() if p not in before]
    per_conn = (pss_after - pss_before) / nconn
    new_pss = [m.get("pss_kb", 0) for m in new]
    figs = [
        fig("master_rss_idle_kb", "master process RSS, idle", "kB", "lower", before.get(mpid, {}).get("rss_kb")),
        fig("master_rss_conn_kb", f"master process RSS, {nconn} connections", "kB", "lower",
            after.get(mpid, {}).get("rss_kb")),
        fig("pss_per_conn_kb", "PSS per idle IMAP connection (tree delta / N)", "kB", "lower", per_conn),
        fig("tree_pss_idle_kb", "whole master tree PSS, idle", "kB", "lower", pss_before),
    ]
    if new_pss:
        figs.append(fig("serving_proc_pss_kb", "PSS of one serving process (mean)", "kB", "lower",
                        sum(new_pss) / len(new_pss)))
    rp = peer.replica_pid()
    rt = tree(rp) if rp else {}
    if rp in rt:
        figs.append(fig("replica_master_rss_kb", "replica's master process RSS", "kB", "lower",
                        rt[rp].get("rss_kb")))
    return {"figures": figs,
            "clients": [{"role": "idle imap connections", "sent": len(conns), "error": err, "ended": ended}],
            "details": {"connections": nconn, "processes_before": len(before), "processes_after": len(after),
                        "new_processes": len(new), "tree_pss_before_kb": pss_before,
                        "tree_pss_after_kb": pss_after, "master": after.get(mpid),
                        "replica_tree_pss_kb": sum(m.get("pss_kb", 0) for m in rt.values())}}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    sys.exit(harness.main(["--only", NAME] + sys.argv[1:]))
