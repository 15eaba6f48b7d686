"""bench/limits.py - the machine's own ceilings, measured in the same run, so
every other figure can be read against a physical limit (deliveries/s against
fsyncs/s, full-sync MB/s against SHA-1 and loopback MB/s).

  fdatasync/s   rewrite 4 KiB at offset 0 of one file and fdatasync it, in a loop
  create+fsync/s   the delivery pattern of a file-per-message store: create a
                new 4 KiB file, fsync it, fsync its directory
  mmap/s        map a 64 KiB file, touch its 16 pages, unmap (what Cyrus does
                to its index files per message; in a VM its cost follows the host's load)
  SHA-1 MB/s    hashlib over 4 KiB messages (the GUID of every message)
  loopback MB/s one TCP stream over 127.0.0.1 (1 MiB writes)
  LMTP sinks    the delivery ceilings, with the SAME client as lmtp_deliver
                (common.deliver_parallel, same messages, same USERS x CLIENTS):
                "null sink" answers without storing (the client's own
                ceiling), "fdatasync sink" appends each message to one file
                and fdatasyncs it before its 250 (one durable write per
                delivery).  bench/lmtp_sink.py, one process per connection;
                the CPU the sink and the clients used per message is in the
                details, to tell which of them is the ceiling.

All on the directory the servers' data live in (the run's temp dir).  Each
loop is bounded by a count and a time.  Run alone: python3 bench/limits.py
"""
import hashlib
import mmap
import os
import socket
import sys
import threading
import time

NAME = "limits"
TITLE = "machine ceilings: fsyncs/s on the data directory, SHA-1 MB/s, loopback TCP MB/s"
MACHINE = True
NEEDS = ()


def sizes(level):
    sink = {"sink_n": {"smoke": 20, "quick": 2000, "full": 5000}[level], "sink_configs": [[1, 1], [10, 4]]}
    return dict({"smoke": {"seconds": 0.2}, "quick": {"seconds": 1.0}, "full": {"seconds": 2.0}}[level], **sink)


def _proc_cpu(pid):
    """utime+stime+cutime+cstime of pid, seconds (its reaped children included)."""
    with open(f"/proc/{pid}/stat") as f:
        st = f.read()
    v = st[st.rfind(")") + 2:].split()
    return sum(int(x) for x in v[11:15]) / os.sysconf("SC_CLK_TCK")


def _sink_rate(d, mode, nusers, nclients, n, ctx):
    """Deliver n messages to a sink with the benchmark client; (msgs/s, details, clients)."""
    import subprocess
    from common import deliver_parallel
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(d, "limits-sink.mbox")
    argv = [sys.executable, os.path.join(here, "lmtp_sink.py"), mode] + ([path] if mode == "fsync" else [])
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    try:
        port = int(p.stdout.readline().strip() or 0)
        if not port:
            raise RuntimeError(f"lmtp_sink.py {mode} did not start (exit {p.poll()})")
        users = [f"sink{k}" for k in range(nusers)]
        cpu0, t0 = _proc_cpu(p.pid), os.times()
        with ctx.measuring():
            r = deliver_parallel(port, users, users, nclients, n, f"sink{mode}", deadline_s=max(60, n / 20))
        # the sink reaps each connection's process in its serve loop; its CPU
        # shows in the sink's cutime only then
        from common import children_of
        end = time.monotonic() + 5
        while children_of(p.pid) and time.monotonic() < end:
            time.sleep(0.02)
        cpu1, t1 = _proc_cpu(p.pid), os.times()
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        if os.path.exists(path):
            os.unlink(path)
    secs = r["end"] - r["start"]
    sent = max(1, r["sent"])
    det = {"mode": mode, "users": nusers, "clients": nclients, "n": n, "sent": r["sent"], "seconds": secs,
           "sink_cpu_ms_per_msg": (cpu1 - cpu0) * 1000 / sent,
           "client_cpu_ms_per_msg": ((t1.children_user + t1.children_system) -
                                     (t0.children_user + t0.children_system)) * 1000 / sent,
           "wall_ms_per_msg": secs * 1000 / sent * nclients}
    clients = [dict(c, role=f"sink {mode} {nusers}x{nclients} {c['role']}") for c in r["clients"]]
    return r["sent"] / secs, det, clients


def _fdatasync_rate(d, secs, maxn=200000):
    p = os.path.join(d, "limits-fdatasync")
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    block = b"x" * 4096
    n = 0
    t0 = time.monotonic()
    try:
        while n < maxn and time.monotonic() - t0 < secs:
            os.pwrite(fd, block, 0)
            os.fdatasync(fd)
            n += 1
    finally:
        os.close(fd)
        os.unlink(p)
    return n / (time.monotonic() - t0)


def _create_fsync_rate(d, secs, maxn=100000):
    sub = os.path.join(d, "limits-files")
    os.makedirs(sub, exist_ok=True)
    dfd = os.open(sub, os.O_RDONLY | os.O_DIRECTORY)
    block = b"y" * 4096
    n = 0
    t0 = time.monotonic()
    try:
        while n < maxn and time.monotonic() - t0 < secs:
            fd = os.open(os.path.join(sub, f"m{n}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            os.write(fd, block)
            os.fsync(fd)
            os.close(fd)
            os.fsync(dfd)
            n += 1
    finally:
        rate = n / (time.monotonic() - t0)
        os.close(dfd)
        for f in os.listdir(sub):
            os.unlink(os.path.join(sub, f))
        os.rmdir(sub)
    return rate


def _mmap_rate(d, secs, maxn=1_000_000):
    """map a 64 KiB file, touch every page, unmap: Cyrus does this to its index
    and cache files for every message; in a VM each munmap may cost a TLB
    shootdown IPI, whose price depends on how busy the host is."""
    p = os.path.join(d, "limits-mmap")
    with open(p, "wb") as f:
        f.write(b"m" * 65536)
    fd = os.open(p, os.O_RDONLY)
    n = 0
    t0 = time.monotonic()
    try:
        while n < maxn and time.monotonic() - t0 < secs:
            mm = mmap.mmap(fd, 65536, mmap.MAP_SHARED, mmap.PROT_READ)
            for off in range(0, 65536, 4096):
                mm[off]
            mm.close()
            n += 1
    finally:
        os.close(fd)
        os.unlink(p)
    return n / (time.monotonic() - t0)


def _sha1_rate(secs, maxn=10_000_000):
    msg = os.urandom(4096)
    n = 0
    t0 = time.monotonic()
    while n < maxn and time.monotonic() - t0 < secs:
        for _ in range(256):
            hashlib.sha1(msg).digest()
        n += 256
    return n * 4096 / (time.monotonic() - t0) / 1e6


def _loopback_rate(secs):
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(1)
    ls.settimeout(10)
    port = ls.getsockname()[1]
    got = [0]

    def sink():
        c, _ = ls.accept()
        c.settimeout(secs + 10)
        try:
            while True:
                d = c.recv(1 << 20)
                if not d:
                    break
                got[0] += len(d)
        except OSError:
            pass
        c.close()

    th = threading.Thread(target=sink, daemon=True)
    th.start()
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    chunk = b"\0" * (1 << 20)
    t0 = time.monotonic()
    sent = 0
    while time.monotonic() - t0 < secs and sent < (64 << 30):
        s.sendall(chunk)
        sent += len(chunk)
    s.shutdown(socket.SHUT_WR)
    th.join(secs + 15)
    el = time.monotonic() - t0
    s.close()
    ls.close()
    return got[0] / el / 1e6


def run_once(_peer, ctx):
    from harness import fig
    secs = ctx.sizes["seconds"]
    d = ctx.tmp
    r = {
        "fdatasync": _fdatasync_rate(d, secs),
        "create_fsync": _create_fsync_rate(d, secs),
        "mmap": _mmap_rate(d, secs),
        "sha1": _sha1_rate(secs),
        "loopback": _loopback_rate(secs),
    }
    figs, sinks, clients = [], [], []
    for mode, what in (("null", "LMTP null sink (no storage)"),
                       ("fsync", "LMTP fdatasync sink (append + fdatasync per message)")):
        for nu, nc in ctx.sizes["sink_configs"]:
            rate, det, cl = _sink_rate(d, mode, nu, nc, ctx.sizes["sink_n"], ctx)
            sinks.append(det)
            clients += cl
            figs.append(fig(f"sink_{mode}.{nu}u{nc}c", f"{what}, lmtp_deliver's client, {nu} user{'s' if nu > 1 else ''}"
                            f" × {nc} client{'s' if nc > 1 else ''}", "msgs/s", "higher", rate))
    return {"clients": clients, "figures": [
        fig("fdatasync_s", "fdatasync/s (4 KiB rewrite)", "1/s", "higher", r["fdatasync"]),
        fig("create_fsync_s", "new file + fsync + dir fsync /s", "1/s", "higher", r["create_fsync"]),
        fig("mmap_s", "mmap + touch 16 pages + munmap /s", "1/s", "higher", r["mmap"]),
        fig("sha1_mb_s", "SHA-1", "MB/s", "higher", r["sha1"]),
        fig("loopback_mb_s", "loopback TCP, one stream", "MB/s", "higher", r["loopback"]),
    ] + figs, "details": {"data_dir": d, "sinks": sinks}}


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import harness
    sys.exit(harness.main(["--only", NAME] + sys.argv[1:]))
