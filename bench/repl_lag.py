"""bench/repl_lag.py - replication lag: from the LMTP 250 on the master to the
message being visible on the replica.

One LMTP client delivers to one fresh user at a steady RATE (messages are sent
on a fixed schedule t0 + i/RATE; a late send is not made up by bursting) for
SECONDS.  A separate process polls IMAP STATUS INBOX on the replica every
1 ms over one logged-in connection and records, for each new message number,
the time the STATUS reply that first showed it arrived.  lag(k) = that time -
the time the k-th 250 arrived at the client.  Resolution: the 1 ms poll plus
one STATUS round trip; the lag is an upper bound (a message replicated before
its 250 shows a lag <= 0 only if a poll happened in between).
Why 1 ms: with the 5 ms polls of ../shared/anchors/cyrus, a system whose
replica holds every message before its 250 still measures a p99 of 5 ms
plus a round trip (the poll period itself); figures near the 5 ms target
would say more about the poller than about the system.
Figures per variant and rate: p50, p95, p99, max (ms), the rate achieved, and
the LMTP latency (MAIL..250) p50.  The paced client stopping at its send
deadline is part of the design (ended "stopped"); an error is a failed
client and makes the run invalid, as does a failed poller.
Sizes: full 30 s, quick 5 s, smoke 1 s at 20/s; rates 50/s and 200/s.
Run alone: python3 bench/repl_lag.py [--quick] [--peers cyrus]
"""
import os
import sys
import time

from common import ReplicaPoller, lmtp_connect, make_msg, now, pctl, try_status

NAME = "repl_lag"
TITLE = "replication lag, LMTP 250 on the master -> visible on the replica (IMAP STATUS, 1 ms polls)"
NEEDS = ("castord", "castorctl", "lmtpd", "imapd", "syncd", "sync-client")


def sizes(level):
    if level == "smoke":
        return {"rates": [20], "seconds": 1, "slots": ["default"], "poll_ms": 1}
    return {"rates": [50, 200], "seconds": 30 if level == "full" else 5, "slots": ["default", "lowlag"],
            "poll_ms": 1}


def one(peer, slot, rate, secs, poll_ms, rep, ctx):
    peer.prepare(slot, repl=True)
    user = f"lag{rep}{slot[0]}{rate}t{int(time.time()) % 100000}"
    peer.create_users([user])
    pw = peer.password(user)
    base = try_status(peer.r_imap, user, pw)
    if base is None:
        raise RuntimeError(f"cannot STATUS {user} on the replica")
    n = max(2, int(rate * secs))
    msgs = [make_msg(user, f"lag{rep}", i) for i in range(n)]
    poller = ReplicaPoller(peer.r_imap, user, pw, base, n, interval=poll_ms / 1000.0, max_s=secs * 3 + 60)
    t250, lat = {}, []
    err, ended = None, "done"
    with ctx.measuring():
        c = lmtp_connect(peer.m_lmtp)
        t0 = now()
        try:
            for i in range(n):
                target = t0 + i / rate
                d = target - now()
                if d > 0:
                    time.sleep(d)
                if now() - t0 > secs * 1.1 + 1:
                    # a system that cannot keep the rate sends fewer messages in
                    # the same time (the rate achieved says so), not the same
                    # number late
                    err, ended = "send deadline", "stopped"
                    break
                ts = now()
                c.sendmail("bench@localhost", [peer.rcpt(user)], msgs[i])
                t = now()
                t250[i + 1] = t
                lat.append(t - ts)
            c.quit()
        except Exception as e:  # noqa: BLE001
            err, ended = repr(e), "error"
    poller.total(len(t250))
    seen, perr = poller.result(timeout=secs * 3 + 80)
    lags = [(seen[k] - t250[k]) * 1000.0 for k in t250 if k in seen]
    if not lags:
        raise RuntimeError(f"no message seen on the replica (send error {err}, poll error {perr})")
    sent = len(t250)
    rate_got = (sent - 1) / (t250[sent] - t250[1]) if sent > 1 else None
    res = {"slot": slot, "variant": peer.SLOTS[slot], "rate": rate, "sent": sent, "seen": len(lags),
           "achieved_rate": rate_got, "send_error": err, "poll_error": perr,
           "p50_ms": pctl(lags, 50), "p95_ms": pctl(lags, 95), "p99_ms": pctl(lags, 99),
           "max_ms": max(lags), "min_ms": min(lags), "lmtp_latency_p50_ms": pctl(lat, 50) * 1000,
           "lmtp_latency_p99_ms": pctl(lat, 99) * 1000,
           "share_visible_at_250": sum(1 for x in lags if x <= 0) / len(lags),
           "client": {"role": f"lmtp {slot} {rate}/s", "sent": len(t250), "error": err, "ended": ended}}
    return res, lags


def run_once(peer, ctx):
    from harness import fig
    s = ctx.sizes
    figs, details, samples, clients = [], [], {}, []
    invalid = None
    for slot in s["slots"]:
        if slot not in peer.SLOTS:
            continue
        for rate in s["rates"]:
            res, lags = one(peer, slot, rate, s["seconds"], s["poll_ms"], ctx.rep, ctx)
            details.append(res)
            clients.append(res["client"])
            if res["poll_error"]:
                invalid = invalid or f"replica poller failed @{rate}/s [{slot}]: {res['poll_error']}"
            k = f"{slot}.{rate}"
            w = f"@{rate}/s [{slot}]"
            for q in ("p50", "p95", "p99", "max"):
                figs.append(fig(f"lag_{q}.{k}", f"lag {q} {w}", "ms", "lower", res[f"{q}_ms"]))
            figs.append(fig(f"rate.{k}", f"rate achieved {w}", "msgs/s", "higher", res["achieved_rate"]))
            figs.append(fig(f"lmtp_lat.{k}", f"LMTP latency p50 {w}", "ms", "lower", res["lmtp_latency_p50_ms"]))
            if res["seen"] < res["sent"]:
                figs.append(fig(f"unseen.{k}", f"messages never seen on replica {w}", "msgs", "lower",
                                res["sent"] - res["seen"]))
            samples[f"{rate}/s [{slot}]"] = lags
    return {"figures": figs, "details": details, "samples": samples, "clients": clients, "invalid": invalid}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    sys.exit(harness.main(["--only", NAME] + sys.argv[1:]))
