"""bench/lmtp_deliver.py - LMTP delivery throughput on the master with rolling
replication on, the replication lag measured during the same flood, and how
long the replica takes to hold everything.

For each replication variant (slot) and each configuration USERS x CLIENTS:
N messages of 4 KiB (common.make_msg) are delivered round-robin to USERS fresh
users from CLIENTS concurrent LMTP connections (smtplib, one process each).
Before the load starts, one process logs in to the replica once per user
(common.ReplicaWatch) and keeps the connections: no login is ever timed
(Castor hashes passwords with yescrypt, about 90 ms a login).
  msgs/s     N / (last 250 - first MAIL), at the client
  lag        in the configurations the lag targets name (1x1, 1x4, 10x4), the
             watch polls STATUS of every user in turn, then sleeps 1 ms,
             DURING the flood; the c-th 250 a user got is paired with the
             first reply that showed c messages in that user's INBOX:
             p50/p99/max over every message, beside the rate of the same
             flood.  Resolution: one round of STATUS over the users plus
             1 ms (details: poll_period_ms).  The polling costs the machine
             CPU during the flood, the same for every system.
  catch-up   last 250 -> every user's INBOX on the replica shows its count
             (the same watch: 1 ms polls where lag is measured, 50 ms elsewhere)
A configuration "5rC" sends every message to 5 recipients at once (one LMTP
transaction, five 250s) from C clients; its figure counts messages, and
deliveries are 5x that.
Sizes: full N = 10,000 messages for every configuration of both slots (so
[lowlag] is compared with [default] at the same N), 2,000 messages for
5r1 and 5r4 (10,000 deliveries); quick N = 2,000; smoke 20.
Run alone: python3 bench/lmtp_deliver.py [--quick] [--peers cyrus]
"""
import os
import sys
import time

from common import ReplicaWatch, deliver_parallel, now, pctl

NAME = "lmtp_deliver"
TITLE = "LMTP deliveries/s on the master with rolling replication, and replica catch-up"
NEEDS = ("castord", "castorctl", "lmtpd", "imapd", "syncd", "sync-client")


def sizes(level):
    if level == "smoke":
        return {"n": 20, "n_extra": 20, "configs": {"default": [[1, 1], [2, 2]], "lowlag": []},
                "lag_configs": [[1, 1], [2, 2]]}
    # every USERS x CLIENTS configuration of both slots runs with N messages
    # (semisync is compared with the default at the same N); the
    # 5-recipient ones with 2,000 messages, 10,000 deliveries
    return {"n": 10000 if level == "full" else 2000, "n_extra": 2000,
            "configs": {"default": [[1, 1], [1, 4], [10, 1], [10, 4], ["5r", 1], ["5r", 4]],
                        "lowlag": [[1, 1], [10, 4]]},
            "lag_configs": [[1, 1], [1, 4], [10, 4]]}


def run_once(peer, ctx):
    from harness import fig
    figs, details, clients, samples = [], [], [], {}
    for slot, configs in ctx.sizes["configs"].items():
        if not configs or slot not in peer.SLOTS:
            continue
        peer.prepare(slot, repl=True)
        for nusers, nclients in configs:
            multi = nusers == "5r"
            n = ctx.sizes["n_extra"] if multi else ctx.sizes["n"]
            nu = 5 if multi else nusers
            with_lag = [nusers, nclients] in ctx.sizes["lag_configs"]
            tag = f"ld{ctx.rep}{slot[0]}{nusers}x{nclients}t{int(time.time()) % 100000}"
            users = [f"{tag}u{k}" for k in range(nu)]
            peer.create_users(users)
            watch = ReplicaWatch(peer.r_imap, users, peer.password, interval=0.001 if with_lag else 0.05,
                                 max_s=max(120, n / 5) + max(60, n / 20))
            time.sleep(0.3)
            with ctx.measuring():
                r = deliver_parallel(peer.m_lmtp, [peer.rcpt(u) for u in users], users, nclients, n, tag,
                                     deadline_s=max(120, n / 5), all_rcpts=multi, record=True)
            cfg = f"{nusers}u{nclients}c"
            clients += [dict(c, config=f"{slot}.{cfg}") for c in r["clients"]]
            totals = {u: len(r["acks"].get(u, [])) for u in users}
            watch.finish(totals, timeout=max(60, n / 20))
            t_rep = watch.catch_up()
            secs = r["end"] - r["start"]
            if multi:
                lab = f"5 recipients per message × {nclients} client{'s' if nclients > 1 else ''}"
            else:
                lab = f"{nusers} user{'s' if nusers > 1 else ''} × {nclients} client{'s' if nclients > 1 else ''}"
            what = "messages/s (5 deliveries each)" if multi else "deliveries/s"
            figs.append(fig(f"msgs_s.{slot}.{cfg}", f"{what}, {lab} [{slot}]", "msgs/s", "higher",
                            r["sent"] / secs))
            d = {"slot": slot, "variant": peer.SLOTS[slot], "users": nusers, "clients": nclients,
                 "n": n, "sent": r["sent"], "errors": r["errors"][:3], "seconds": secs,
                 "cpu_busy_pct": r["cpu_busy_pct"], "others_cpu_pct": r["others_cpu_pct"],
                 "replica_complete_from_start_s": (t_rep - r["start"]) if t_rep else None,
                 "replica_complete": bool(t_rep), "watch_error": watch.r["error"],
                 "poll_period_ms": watch.r["period_s"] * 1000 if watch.r["period_s"] else None, "at": now()}
            if with_lag:
                lags, unseen = watch.lags(r["acks"])
                if lags:
                    for q, v in (("p50", pctl(lags, 50)), ("p99", pctl(lags, 99)), ("max", max(lags))):
                        figs.append(fig(f"flood_lag_{q}.{slot}.{cfg}", f"lag {q} during the flood, {lab} [{slot}]",
                                        "ms", "lower", v))
                    samples[f"flood {cfg} [{slot}]"] = lags
                if unseen:
                    figs.append(fig(f"flood_unseen.{slot}.{cfg}", f"messages never seen on replica, {lab} [{slot}]",
                                    "msgs", "lower", unseen))
                d.update(lag_p50_ms=pctl(lags, 50), lag_p99_ms=pctl(lags, 99), lag_max_ms=max(lags) if lags else None,
                         lag_unseen=unseen, share_visible_at_250=(sum(1 for x in lags if x <= 0) / len(lags))
                         if lags else None)
            if t_rep:
                figs.append(fig(f"catchup.{slot}.{cfg}", f"replica catch-up after last 250, {lab} [{slot}]",
                                "s", "lower", max(0.0, t_rep - r["end"])))
            details.append(d)
    return {"figures": figs, "details": details, "clients": clients, "samples": samples}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    sys.exit(harness.main(["--only", NAME] + sys.argv[1:]))
