"""bench/full_sync.py - full sync of one user to an empty replica, with the
channel's compression off and on, the same setting on every system.

Once per peer, with rolling replication OFF on the master, one user gets N
messages of 4 KiB spread over 10 folders (IMAP CREATE + APPEND, 2 clients).
Each run then, for compression off and then on: wipes the replica (a fresh,
empty instance), and times the system's one-shot user sync (Castor
`sync-client -u USER`, Cyrus `sync_client -u USER`) to its exit, checks that
the replica holds all N messages, and counts the bytes each way.  Every sync
goes through the same counting TCP relay (common.Relay) in front of the
replica's sync port, so the timed sync and the counted sync are one and the
same, and the relay's cost is the same for every system and setting.
  compression off: Castor `<chan>_sync_compress: no`; Cyrus's sync_client
    compresses whenever the replica offers COMPRESS DEFLATE, so the relay
    removes that line from the replica's greeting
  compression on: Castor `<chan>_sync_compress: yes` (zstd); Cyrus as it
    comes (DEFLATE)
What the client asked is checked on the wire (COMPRESS in its first bytes):
a run where the setting did not take is invalid.  Dovecot: off only.
Sizes: full 10,000 messages, quick 2,000, smoke 20 (2 folders).
Leaves the pair without rolling replication and with a partial replica: the
harness lays it out afresh for the next benchmark (DIRTIES).
Run alone: python3 bench/full_sync.py [--quick] [--peers cyrus]
"""
import imaplib
import multiprocessing as mp
import os
import socket
import sys
import time

from common import HOST, Relay, make_msg, now, try_status

NAME = "full_sync"
TITLE = "full sync of one user (N messages in 10 folders) to an empty replica: seconds, bytes on the wire"
NEEDS = ("castord", "castorctl", "imapd", "syncd", "sync-client")
DIRTIES = True


def sizes(level):
    return {"smoke": {"n": 20, "folders": 2}, "quick": {"n": 2000, "folders": 10},
            "full": {"n": 10000, "folders": 10}}[level]


def _appender(port, user, pw, jobs, q):
    """jobs: [(folder, i)]; APPEND each over one IMAP connection."""
    n, err = 0, None
    try:
        m = imaplib.IMAP4(HOST, port, timeout=60)
        # imaplib writes an APPEND's literal and its closing CRLF separately:
        # with Nagle that second write waits for the server's delayed ACK
        # (40 ms a message, either server)
        m.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        m.login(user, pw)
        t_end = time.monotonic() + 1800
        for folder, i in jobs:
            if time.monotonic() > t_end:
                err = "deadline"
                break
            typ, d = m.append(folder, None, None, make_msg(user, "full", i))
            if typ != "OK":
                err = f"APPEND {folder}: {d}"
                break
            n += 1
        m.logout()
    except Exception as e:  # noqa: BLE001
        err = repr(e)
    q.put((n, err))


def populate(peer, ctx, n, nfold):
    st = ctx.state
    if st.get("user") and st.get("peer_gen") == peer.generation and not peer.dirty:
        return st["user"], st["folders"]
    peer.prepare("default", repl=False)
    user = f"full{n}t{int(time.time()) % 100000}"
    peer.create_users([user], wait_replica=False)
    pw = peer.password(user)
    folders = [peer.folder(i) for i in range(nfold)]
    m = imaplib.IMAP4(HOST, peer.m_imap, timeout=60)
    m.login(user, pw)
    for f in folders:
        typ, d = m.create(f)
        if typ != "OK":
            raise RuntimeError(f"CREATE {f}: {d}")
    m.logout()
    jobs = [[], []]
    for i in range(n):
        jobs[(i % nfold) % 2].append((folders[i % nfold], i))
    ctx_mp = mp.get_context("fork")
    q = ctx_mp.Queue()
    t0 = now()
    ps = [ctx_mp.Process(target=_appender, args=(peer.m_imap, user, pw, j, q), daemon=True) for j in jobs]
    for p in ps:
        p.start()
    res = [q.get(timeout=1900) for _ in ps]
    for p in ps:
        p.join(10)
    errs = [e for _, e in res if e]
    if errs or sum(k for k, _ in res) != n:
        raise RuntimeError(f"APPEND: {sum(k for k, _ in res)} of {n}: {errs[:2]}")
    st.update(user=user, folders=folders, peer_gen=peer.generation, fill_msgs_s=n / (now() - t0),
              fill_clients=[{"role": f"append{k}", "sent": c, "error": e, "ended": "error" if e else "done"}
                            for k, (c, e) in enumerate(res)])
    return user, folders


def replica_total(peer, user, folders):
    tot = 0
    for f in folders:
        c = try_status(peer.r_imap, user, peer.password(user), f)
        if c is None:
            return None
        tot += c
    return tot


def one_sync(peer, ctx, user, folders, n, compress):
    """Wipe the replica, sync `user` through a counting relay with compression
    on or off; (seconds, wire dict, client dict)."""
    peer.reset_replica()
    relay = Relay(peer.replica_sync_port(), strip_s2c=None if compress else peer.COMPRESS_CAPA)
    try:
        with ctx.measuring():
            t0 = now()
            rc, out = peer.full_sync(user, relay_port=relay.port, compress=compress)
            secs = now() - t0
        relay.wait_done()
        asked = b"COMPRESS" in relay.c2s_head.upper()
        wire = {"c2s": relay.c2s, "s2c": relay.s2c, "client_asked_compress": asked,
                "greeting_lines_stripped": relay.stripped}
    finally:
        relay.close()
    got = replica_total(peer, user, folders)
    err = None
    if rc != 0 or got != n:
        err = f"exit {rc}, replica holds {got} of {n}: {out[-300:]}"
    elif asked != compress:
        err = f"compression {'on' if compress else 'off'} asked, the client {'did' if asked else 'did not'} send COMPRESS"
    mode = "on" if compress else "off"
    return secs, wire, {"role": f"sync compression {mode}", "sent": got, "error": err,
                        "ended": "error" if err else "done", "rc": rc}


def run_once(peer, ctx):
    from harness import fig
    n, nfold = ctx.sizes["n"], ctx.sizes["folders"]
    user, folders = populate(peer, ctx, n, nfold)
    peer.prepare("default", repl=False)
    figs, clients = [], list(ctx.state.get("fill_clients", []))
    details = {"n": n, "folders": nfold, "fill_msgs_s": ctx.state.get("fill_msgs_s")}
    for compress in getattr(peer, "COMPRESS_MODES", (False, True)):
        secs, wire, cl = one_sync(peer, ctx, user, folders, n, compress)
        clients.append(cl)
        mode = "on" if compress else "off"
        w = f"[compression {mode}]"
        details[f"compression_{mode}"] = dict(wire, seconds=secs, rc=cl["rc"], replica_messages=cl["sent"])
        figs += [fig(f"seconds.{mode}", f"full sync of {n} messages, {nfold} folders {w}", "s", "lower", secs),
                 fig(f"msgs_s.{mode}", f"full sync rate {w}", "msgs/s", "higher", n / secs),
                 fig(f"wire_c2s.{mode}", f"bytes on the wire, master -> replica {w}", "B", "lower", wire["c2s"]),
                 fig(f"wire_s2c.{mode}", f"bytes on the wire, replica -> master {w}", "B", "lower", wire["s2c"]),
                 fig(f"wire_per_msg.{mode}", f"bytes on the wire per message, master -> replica {w}", "B",
                     "lower", wire["c2s"] / n)]
    return {"figures": figs, "details": details, "clients": clients}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    sys.exit(harness.main(["--only", NAME] + sys.argv[1:]))
