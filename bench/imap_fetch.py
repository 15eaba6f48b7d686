"""bench/imap_fetch.py - IMAP read path on a large mailbox, and disk per message.

One user's INBOX is filled once per peer (N messages of 4 KiB over LMTP, 4
clients); each run then opens a fresh IMAP connection and times, at the
client, from sending the command to its tagged OK, REPEATS (20) times each
in turn (SELECT, FETCH, SEARCH, SELECT, ...), reported as the median and
p10-p90 of the repetitions (one command of about 30 ms is no result):
  SELECT INBOX
  FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)    (also: bytes of the response)
  UID SEARCH TEXT castorneedle                (1 message in 100 has the word
                                               in its body; the hit count is checked)
and reads the size of the user's storage on the master (messages + indexes)
per message, at rest (2 s or more after the fill's last delivery).  Sizes: full 10,000 messages, quick 2,000, smoke 20.
Run alone: python3 bench/imap_fetch.py [--quick] [--peers cyrus]
"""
import os
import re
import sys
import time

from common import NEEDLE, RawImap, deliver_parallel, now, try_status

NAME = "imap_fetch"
TITLE = "IMAP SELECT, FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE), UID SEARCH TEXT on one large mailbox"
NEEDS = ("castord", "castorctl", "lmtpd", "imapd")


def sizes(level):
    return {"n": {"smoke": 20, "quick": 2000, "full": 10000}[level], "repeats": 20}


def populate(peer, ctx, n):
    st = ctx.state
    if st.get("user") and st.get("peer_gen") == getattr(peer, "generation", 0) and not peer.dirty:
        return st["user"]
    peer.prepare("default", repl=True)
    user = f"fetch{n}t{int(time.time()) % 100000}"
    peer.create_users([user], wait_replica=False)
    r = deliver_parallel(peer.m_lmtp, [peer.rcpt(user)], [user], 4, n, "fetch", deadline_s=max(120, n / 5))
    if r["errors"] or r["sent"] != n:
        raise RuntimeError(f"filling the mailbox: sent {r['sent']} of {n}: {r['errors'][:3]}")
    st.update(user=user, peer_gen=getattr(peer, "generation", 0), fill_msgs_s=n / (r["end"] - r["start"]),
              fill_end=now(), fill_clients=[dict(c, role="fill " + c["role"]) for c in r["clients"]])
    return user


def run_once(peer, ctx):
    from harness import fig
    n = ctx.sizes["n"]
    user = populate(peer, ctx, n)
    peer.prepare("default", repl=True)
    have = try_status(peer.m_imap, user, peer.password(user))
    if have != n:
        raise RuntimeError(f"{user} holds {have} messages, not {n}")
    m = RawImap(peer.m_imap)
    m.login(user, peer.password(user))
    want_hits = len([i for i in range(n) if i % 100 == 7])
    t_sel, t_fetch, t_search, rate = [], [], [], []
    nfetched = fetch_bytes = hits = 0
    err, ended = None, "done"
    try:
        with ctx.measuring():
            for _ in range(ctx.sizes["repeats"]):
                t0 = now()
                st, sel = m.cmd("SELECT INBOX")
                t_sel.append((now() - t0) * 1000)
                if st != "OK":
                    raise RuntimeError(f"SELECT: {sel[-200:]!r}")
                t0 = now()
                st, data = m.cmd("FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)")
                t_fetch.append(now() - t0)
                if st != "OK":
                    raise RuntimeError(f"FETCH: {data[-200:]!r}")
                nfetched = len(re.findall(rb"^\* \d+ FETCH", data, flags=re.M))
                fetch_bytes = len(data)
                if nfetched != n:
                    raise RuntimeError(f"FETCH 1:* returned {nfetched} of {n} messages")
                rate.append(nfetched / t_fetch[-1])
                t0 = now()
                st, sdata = m.cmd(f"UID SEARCH TEXT {NEEDLE}")
                t_search.append((now() - t0) * 1000)
                hits = 0
                for ln in sdata.split(b"\r\n"):
                    if ln.startswith(b"* SEARCH"):
                        hits += len(ln.split()) - 2
                if st != "OK" or hits != want_hits:
                    raise RuntimeError(f"UID SEARCH: {st}, {hits} hits of {want_hits}")
    except (OSError, RuntimeError, ConnectionError) as e:
        err, ended = repr(e)[:300], "error"
    m.close()
    clients = ctx.state.get("fill_clients", []) + [
        {"role": "imap", "sent": len(t_search), "error": err, "ended": ended}]
    figs = [
        fig("select_ms", "SELECT INBOX", "ms", "lower", t_sel),
        fig("fetch_s", "FETCH 1:* (FLAGS ENVELOPE BODYSTRUCTURE)", "s", "lower", t_fetch),
        fig("fetch_msgs_s", "FETCH ... messages/s", "msgs/s", "higher", rate),
        fig("search_ms", f"UID SEARCH TEXT {NEEDLE}", "ms", "lower", t_search),
    ]
    # disk at rest: a mailbox nobody writes to.  Castor empties its WAL
    # after a second without writes; Cyrus's files do not change.  Both
    # are read at least 2 s after the fill's last delivery.
    rest = ctx.state.get("fill_end", 0) + 2.0 - now()
    if rest > 0:
        time.sleep(rest)
    disk = peer.mailbox_disk(user)
    if disk:
        figs.append(fig("disk_per_msg", "disk per message on the master (messages + index)", "B", "lower",
                        disk["apparent"] / n))
        figs.append(fig("disk_alloc_per_msg", "disk allocated per message on the master", "B", "lower",
                        disk["allocated"] / n))
    return {"figures": figs, "clients": clients,
            "details": {"n": n, "repeats": ctx.sizes["repeats"], "fetched": nfetched,
                        "fetch_response_bytes": fetch_bytes,
                        "search_hits": hits, "search_hits_expected": want_hits,
                        "fill_msgs_s": ctx.state.get("fill_msgs_s"), "disk": disk}}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    sys.exit(harness.main(["--only", NAME] + sys.argv[1:]))
