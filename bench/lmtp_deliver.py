"""bench/lmtp_deliver.py - LMTP delivery throughput on the master with rolling
replication on, and how long the replica takes to hold everything.

For each replication variant (slot) and each configuration USERS x CLIENTS:
N messages of 4 KiB (common.make_msg) are delivered round-robin to USERS fresh
users from CLIENTS concurrent LMTP connections (smtplib, one process each).
  msgs/s     N / (last 250 - first MAIL), at the client
  catch-up   last 250 -> every user's INBOX on the replica shows its count
             (IMAP STATUS polled every 50 ms)
A configuration "5rC" sends every message to 5 recipients at once (one LMTP
transaction, five 250s) from C clients; its figure counts messages, and
deliveries are 5x that.
Sizes: full 10,000 messages for 1x1, 1x4, 10x1 and 10x4 in [default], 2,000
for 5r1 and 5r4 (10,000 deliveries) and for 1x1 and 10x4 in [lowlag]; quick
2,000 for all; smoke 20.
Run alone: python3 bench/lmtp_deliver.py [--quick] [--peers cyrus]
"""
import os
import sys
import time

from common import deliver_parallel, now, wait_counts

NAME = "lmtp_deliver"
TITLE = "LMTP deliveries/s on the master with rolling replication, and replica catch-up"
NEEDS = ("castord", "castorctl", "lmtpd", "imapd", "syncd", "sync-client")


def sizes(level):
    if level == "smoke":
        return {"n": 20, "n_extra": 20, "configs": {"default": [[1, 1], [2, 2]], "lowlag": []}}
    # the four configurations the targets name run with N messages; the
    # 5-recipient ones (5 deliveries a message) and [lowlag] with 2,000,
    # which measures their rates as well and keeps the full run in its hour
    return {"n": 10000 if level == "full" else 2000, "n_extra": 2000,
            "configs": {"default": [[1, 1], [1, 4], [10, 1], [10, 4], ["5r", 1], ["5r", 4]],
                        "lowlag": [[1, 1], [10, 4]]}}


def run_once(peer, ctx):
    from harness import fig
    figs, details = [], []
    for slot, configs in ctx.sizes["configs"].items():
        if not configs or slot not in peer.SLOTS:
            continue
        peer.prepare(slot, repl=True)
        for nusers, nclients in configs:
            multi = nusers == "5r"
            n = ctx.sizes["n_extra"] if (multi or slot != "default") else ctx.sizes["n"]
            nu = 5 if multi else nusers
            tag = f"ld{ctx.rep}{slot[0]}{nusers}x{nclients}t{int(time.time()) % 100000}"
            users = [f"{tag}u{k}" for k in range(nu)]
            peer.create_users(users)
            time.sleep(0.3)
            r = deliver_parallel(peer.m_lmtp, [peer.rcpt(u) for u in users], users, nclients, n, tag,
                                 deadline_s=max(120, n / 5), all_rcpts=multi)
            if r["sent"] == 0:
                raise RuntimeError(f"no message delivered: {r['errors'][:3]}")
            if multi:
                expected = {u: r["sent"] for u in users}
            else:
                expected = {u: len(range(k, r["sent"], nusers)) for k, u in enumerate(users)}
            if r["errors"]:
                # a worker stopped early: count what the master really holds
                expected = None
            t_rep = None
            if expected:
                t_rep = wait_counts(peer.r_imap, expected, peer.password, timeout=max(60, n / 20))
            secs = r["end"] - r["start"]
            cfg = f"{nusers}u{nclients}c"
            if multi:
                lab = f"5 recipients per message × {nclients} client{'s' if nclients > 1 else ''}"
            else:
                lab = f"{nusers} user{'s' if nusers > 1 else ''} × {nclients} client{'s' if nclients > 1 else ''}"
            what = "messages/s (5 deliveries each)" if multi else "deliveries/s"
            figs.append(fig(f"msgs_s.{slot}.{cfg}", f"{what}, {lab} [{slot}]", "msgs/s", "higher",
                            r["sent"] / secs))
            if t_rep:
                figs.append(fig(f"catchup.{slot}.{cfg}", f"replica catch-up after last 250, {lab} [{slot}]",
                                "s", "lower", max(0.0, t_rep - r["end"])))
            details.append({"slot": slot, "variant": peer.SLOTS[slot], "users": nusers, "clients": nclients,
                            "n": n, "sent": r["sent"], "errors": r["errors"][:3], "seconds": secs,
                            "cpu_busy_pct": r["cpu_busy_pct"], "others_cpu_pct": r["others_cpu_pct"],
                            "replica_complete_from_start_s": (t_rep - r["start"]) if t_rep else None,
                            "replica_complete": bool(t_rep), "at": now()})
    return {"figures": figs, "details": details}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    sys.exit(harness.main(["--only", NAME] + sys.argv[1:]))
