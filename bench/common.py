"""bench/common.py - what every benchmark shares: the deterministic test message,
LMTP and IMAP clients, parallel delivery workers, replica pollers, statistics,
a counting TCP relay, and /proc readers for CPU and memory.

Python 3 standard library only.  Every loop here is bounded in count and in
time, and every socket goes to 127.0.0.1.  Times are time.monotonic() (one
clock for every process on the machine, so the replica poller in a child
process and the LMTP sender in the parent can be compared directly).
"""
import base64
import imaplib
import multiprocessing as mp
import os
import random
import re
import smtplib
import socket
import statistics
import sys
import threading
import time

HOST = "127.0.0.1"
MSG_SIZE = 4096
NEEDLE = "castorneedle"       # the word UID SEARCH TEXT looks for (1 message in 100)


def log(*a):
    try:
        print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)
    except (OSError, ValueError):     # a closed stderr must never stop a teardown
        pass


def now():
    return time.monotonic()


# ---------------------------------------------------------------- messages
def make_msg(user, tag, i, size=MSG_SIZE):
    """The i-th test message of series `tag` for `user`: exactly `size` bytes as
    sent (CRLF line ends), headers plus a base64 text body drawn from a random
    generator seeded by (tag, i), so a run is reproducible and the body
    compresses like real text attachments do (not at all beyond base64's 3/4).
    One message in 100 (i % 100 == 7) carries NEEDLE in its body."""
    hdr = (f"From: bench@localhost\r\nTo: {user}@localhost\r\n"
           f"Subject: {tag} {i}\r\nMessage-ID: <{tag}.{i}.{user}@bench>\r\n"
           f"Date: Thu, 26 Nov 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
           f"Content-Type: text/plain; charset=us-ascii\r\n\r\n")
    rng = random.Random(f"{tag}/{i}")
    nlines = (size - len(hdr)) // 78
    raw = base64.b64encode(rng.randbytes(57 * nlines)).decode()
    lines = [raw[k:k + 76] for k in range(0, len(raw), 76)]
    if i % 100 == 7 and lines:
        lines[len(lines) // 2] = (NEEDLE + " " + lines[len(lines) // 2])[:76]
    body = "".join(ln + "\r\n" for ln in lines)
    pad = size - len(hdr) - len(body) - 2
    body += "z" * max(0, pad) + "\r\n"
    data = (hdr + body).encode()
    return data[:size - 2] + b"\r\n" if len(data) > size else data


# ---------------------------------------------------------------- statistics
def pctl(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p / 100.0
    f = int(k)
    c = min(f + 1, len(xs) - 1)
    return xs[f] + (xs[c] - xs[f]) * (k - f)


def summary(xs, samples=None):
    """Median [min-max] of one figure's per-run values.  With `samples` (every
    repetition of a short command, pooled over the runs) the median and the
    spread are the samples' own: p10-p90 beside min-max, n the count."""
    xs = [x for x in xs if isinstance(x, (int, float))]
    if not xs:
        return None
    s = {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "runs": xs}
    ys = [y for y in (samples or []) if isinstance(y, (int, float))]
    if ys:
        s.update(median=statistics.median(ys), min=min(ys), max=max(ys), p10=pctl(ys, 10), p90=pctl(ys, 90),
                 n=len(ys))
    return s


def cpu_jiffies():
    with open("/proc/stat") as f:
        v = list(map(int, f.readline().split()[1:]))
    return sum(v), v[3] + v[4]


def cpu_busy(a, b):
    tot = b[0] - a[0]
    return 100.0 * (1 - (b[1] - a[1]) / tot) if tot else 0.0


# ---------------------------------------------------------------- processes
def children_of(ppid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            if int(st[st.rfind(")") + 2:].split()[1]) == ppid:
                out.append(int(p))
        except (OSError, ValueError, IndexError):
            pass
    return out


def descendants(pid, limit=5000):
    """pid's whole process tree (pid included), breadth first, at most `limit`."""
    out, todo = [], [pid]
    while todo and len(out) < limit:
        p = todo.pop(0)
        out.append(p)
        todo.extend(children_of(p))
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline") as f:
            return f.read().replace("\0", " ").strip()
    except OSError:
        return ""


def mem_kb(pid):
    """{"rss_kb", "pss_kb", "private_dirty_kb"} of one process (missing keys if gone)."""
    r = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for ln in f:
                if ln.startswith("VmRSS:"):
                    r["rss_kb"] = int(ln.split()[1])
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for ln in f:
                if ln.startswith("Pss:"):
                    r["pss_kb"] = int(ln.split()[1])
                elif ln.startswith("Private_Dirty:"):
                    r["private_dirty_kb"] = int(ln.split()[1])
    except (OSError, ValueError):
        pass
    return r


def pid_alive(pid):
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            st = f.read()
        return st[st.rfind(")") + 2] != "Z"
    except OSError:
        return False


def wait_pid_gone(pid, timeout):
    """Wait until pid has exited (or is a zombie); return seconds waited or None."""
    t0 = now()
    while now() - t0 < timeout:
        if not pid_alive(pid):
            return now() - t0
        time.sleep(0.005)
    return None


# ---------------------------------------------------------------- sockets
def free_port_block(n, lo=20000, hi=60000, tries=200):
    """A base port such that base..base+n-1 are all bindable on 127.0.0.1 now."""
    rng = random.Random()
    for _ in range(tries):
        base = rng.randint(lo, hi - n)
        socks = []
        try:
            for i in range(n):
                s = socket.socket()
                s.bind((HOST, base + i))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free block of %d ports" % n)


def port_open(port, host=HOST):
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_port(port, timeout=20.0):
    t0 = now()
    while now() - t0 < timeout:
        if port_open(port):
            return True
        time.sleep(0.05)
    return False


# ---------------------------------------------------------------- IMAP
class RawImap:
    """A minimal IMAP client on a plain socket, for timing (no parsing cost
    beyond finding the tagged reply) and fast STATUS polling."""

    def __init__(self, port, timeout=30.0):
        self.s = socket.create_connection((HOST, port), timeout=timeout)
        self.n = 0
        self.buf = b""
        self.greeting = self._line()

    def _line(self):
        while b"\r\n" not in self.buf:
            d = self.s.recv(65536)
            if not d:
                raise ConnectionError("IMAP server closed the connection")
            self.buf += d
        ln, self.buf = self.buf.split(b"\r\n", 1)
        return ln

    def cmd(self, text, max_bytes=1 << 31):
        """Send `TAG text`, read to the tagged reply; return (status, bytes read).
        Literals are skipped by counting, so their content cannot fake a tag."""
        self.n += 1
        tag = b"b%d" % self.n
        self.s.sendall(tag + b" " + text.encode() + b"\r\n")
        out = []
        total = 0
        while total < max_bytes:
            ln = self._line()
            total += len(ln) + 2
            if ln.startswith(tag + b" "):
                out.append(ln)
                return ln.split(b" ", 2)[1].decode(errors="replace"), b"\r\n".join(out)
            m = re.search(rb"\{(\d+)\+?\}$", ln)
            out.append(ln)
            if m:
                need = int(m.group(1))
                while len(self.buf) < need:
                    d = self.s.recv(max(65536, need - len(self.buf)))
                    if not d:
                        raise ConnectionError("closed inside a literal")
                    self.buf += d
                out.append(self.buf[:need])
                total += need
                self.buf = self.buf[need:]
        raise RuntimeError("IMAP reply larger than max_bytes")

    def login(self, user, password):
        st, data = self.cmd(f'LOGIN "{user}" "{password}"')
        if st != "OK":
            raise RuntimeError(f"LOGIN {user}: {data[-200:]!r}")

    def status_count(self, mailbox="INBOX"):
        st, data = self.cmd(f'STATUS "{mailbox}" (MESSAGES)')
        if st != "OK":
            return None
        m = re.search(rb"MESSAGES (\d+)", data)
        return int(m.group(1)) if m else None

    def close(self):
        try:
            self.s.sendall(b"z LOGOUT\r\n")
        except OSError:
            pass
        self.s.close()


def imap_login(port, user, password, timeout=30.0):
    m = RawImap(port, timeout)
    m.login(user, password)
    return m


def try_status(port, user, password, mailbox="INBOX"):
    """MESSAGES of a mailbox, or None when login or STATUS fails."""
    try:
        m = imap_login(port, user, password, timeout=5)
        try:
            return m.status_count(mailbox)
        finally:
            m.close()
    except (OSError, RuntimeError, ConnectionError):
        return None


def imaplib_login(port, user, password):
    m = imaplib.IMAP4(HOST, port, timeout=60)
    m.login(user, password)
    return m


# ---------------------------------------------------------------- LMTP
def lmtp_connect(port, timeout=60):
    return smtplib.LMTP(HOST, port, timeout=timeout)


def _lmtp_worker(cid, port, jobs, go, q, deadline_s, record):
    """jobs: [(rcpt, user, tag, i)], sent over ONE LMTP connection once `go` is set;
    rcpt may be a list (one message to several recipients).  With `record`,
    the time of each 250 is kept per recipient (index into the rcpt list
    deliver_parallel was given)."""
    msgs = [(rcpt if isinstance(rcpt, list) else [rcpt], make_msg(user, tag, i))
            for rcpt, user, tag, i in jobs]
    go.wait(120)
    t0 = now()
    n, err, ended = 0, None, "done"
    acks = []
    try:
        c = lmtp_connect(port)
        for rcpt, data in msgs:
            if now() - t0 > deadline_s:
                err, ended = "deadline", "deadline"
                break
            if len(rcpt) == 1:
                c.sendmail("bench@localhost", rcpt, data)
            else:
                # smtplib.LMTP.sendmail reads one reply after DATA; LMTP
                # sends one per recipient (RFC 2033), so read them here
                c.ehlo_or_helo_if_needed()
                code, msg = c.mail("bench@localhost")
                if code != 250:
                    raise RuntimeError(f"MAIL: {code} {msg!r}")
                for r in rcpt:
                    code, msg = c.rcpt(r)
                    if code != 250:
                        raise RuntimeError(f"RCPT {r}: {code} {msg!r}")
                code, msg = c.data(data)
                codes = [code] + [c.getreply()[0] for _ in rcpt[1:]]
                if any(x != 250 for x in codes):
                    raise RuntimeError(f"DATA replies {codes}")
            if record:
                t = now()
                acks.extend((r, t) for r in rcpt)
            n += 1
        c.quit()
    except Exception as e:  # noqa: BLE001 - reported, not hidden
        err, ended = repr(e), "error"
    q.put({"client": cid, "t0": t0, "t1": now(), "sent": n, "error": err, "ended": ended, "acks": acks})


def deliver_parallel(port, rcpts, users, nclients, n, tag, deadline_s=900, all_rcpts=False, record=False):
    """Deliver n messages round-robin over `users` (rcpts[k] is users[k]'s LMTP
    recipient) from nclients concurrent LMTP connections; with all_rcpts every
    message goes to every recipient at once.  Returns a dict with
    start, end (monotonic), sent, errors, machine CPU busy %, the part of
    it other work used (OthersMeter), "clients" (one harness.client() dict
    per connection) and, with record, "acks": {user: [time of each 250]}."""
    meter = OthersMeter()
    jobs = [[] for _ in range(nclients)]
    for j in range(n):
        k = j % len(users)
        jobs[j % nclients].append((list(rcpts) if all_rcpts else rcpts[k], users[k], tag, j))
    ctx = mp.get_context("fork")
    go = ctx.Event()
    q = ctx.Queue()
    ps = [ctx.Process(target=_lmtp_worker, args=(c, port, jobs[c], go, q, deadline_s, record), daemon=True)
          for c in range(nclients)]
    for p in ps:
        p.start()
    time.sleep(0.3 + n * 0.00002)      # let the workers build their messages
    c0 = cpu_jiffies()
    meter.start()
    t0 = now()
    go.set()
    res = []
    for _ in ps:
        try:
            res.append(q.get(timeout=deadline_s + 60))
        except Exception:  # noqa: BLE001
            res.append({"client": None, "t0": t0, "t1": now(), "sent": 0, "error": "worker lost",
                        "ended": "lost", "acks": []})
    t1 = max(r["t1"] for r in res)
    c1 = cpu_jiffies()
    others = meter.stop()
    for p in ps:
        p.join(10)
        if p.is_alive():
            p.kill()
    acks = {}
    for r in res:
        for k, t in r["acks"]:
            acks.setdefault(users[rcpts.index(k)] if k in rcpts else k, []).append(t)
    clients = [{"role": f"lmtp{r['client']}", "sent": r["sent"], "error": r["error"], "ended": r["ended"],
                "seconds": round(r["t1"] - r["t0"], 4)} for r in res]
    return {"start": t0, "end": t1, "sent": sum(r["sent"] for r in res),
            "errors": [r["error"] for r in res if r["error"]], "cpu_busy_pct": cpu_busy(c0, c1),
            "others_cpu_pct": min(others, cpu_busy(c0, c1)), "clients": clients,
            "acks": {u: sorted(ts) for u, ts in acks.items()}}


def wait_counts(port, expected, password_of, timeout=300, interval=0.05, conns=None):
    """expected: {user: count}.  Poll STATUS on `port` until every user's INBOX
    holds at least its count; return the monotonic time it happened, or None.
    conns: {user: RawImap} logged in beforehand (replica_logins), so that a
    catch-up time holds no login (Castor hashes passwords with yescrypt,
    about 90 ms a login); they are closed at the end."""
    conns = dict(conns or {})
    done = {}
    deadline = now() + timeout
    try:
        while now() < deadline and len(done) < len(expected):
            for u, want in expected.items():
                if u in done:
                    continue
                try:
                    if u not in conns:
                        conns[u] = imap_login(port, u, password_of(u), timeout=10)
                    c = conns[u].status_count()
                except (OSError, RuntimeError, ConnectionError):
                    conns.pop(u, None)
                    c = None
                if c is not None and c >= want:
                    done[u] = now()
            if len(done) < len(expected):
                time.sleep(interval)
    finally:
        for m in conns.values():
            m.close()
    return max(done.values()) if len(done) == len(expected) else None


def replica_logins(port, users, password_of):
    """{user: RawImap} logged in to `port` now, for wait_counts(conns=...)."""
    return {u: imap_login(port, u, password_of(u), timeout=10) for u in users}


# ---------------------------------------------------------------- replica poller
def _poll_worker(port, user, password, base, n, interval, max_s, conn):
    """Child process: STATUS INBOX every `interval` s; for each new message
    number k record the monotonic time the STATUS reply that first showed it
    arrived.  Sends {k: t} back when n messages were seen or after max_s; the
    parent may lower n once it knows how many it really sent (("total", k))."""
    seen = {}
    err = None
    try:
        m = imap_login(port, user, password, timeout=10)
        last = base
        conn.send("ready")
        end = now() + max_s
        while now() < end and last - base < n:
            if conn.poll():
                msg = conn.recv()
                if msg == "stop":
                    break
                if isinstance(msg, tuple) and msg[0] == "total":
                    n = msg[1]
                    continue
            c = m.status_count()
            t = now()
            if c is not None and c > last:
                for k in range(last + 1, c + 1):
                    seen[k - base] = t
                last = c
            time.sleep(interval)
        m.close()
    except Exception as e:  # noqa: BLE001
        err = repr(e)
        try:
            conn.send("ready")
        except OSError:
            pass
    conn.send({"seen": seen, "error": err})


class ReplicaPoller:
    """Runs _poll_worker in a forked process, so polling never competes with
    the sender for Python's GIL."""

    def __init__(self, port, user, password, base, n, interval=0.005, max_s=120):
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.p = ctx.Process(target=_poll_worker,
                             args=(port, user, password, base, n, interval, max_s, child), daemon=True)
        self.p.start()
        if not self.conn.poll(20):
            raise RuntimeError("replica poller did not start")
        self.conn.recv()
        self.max_s = max_s

    def total(self, k):
        """The sender is done and sent k messages: stop once k are seen."""
        try:
            self.conn.send(("total", k))
        except OSError:
            pass

    def result(self, timeout=None):
        """Wait (bounded) for the poller; returns ({k: t}, error)."""
        t = timeout if timeout is not None else self.max_s + 20
        if not self.conn.poll(t):
            self.conn.send("stop")
            self.conn.poll(10)
        try:
            r = self.conn.recv() if self.conn.poll(0) else {"seen": {}, "error": "poller timeout"}
        except EOFError:
            r = {"seen": {}, "error": "poller died"}
        self.p.join(5)
        if self.p.is_alive():
            self.p.kill()
        return r["seen"], r["error"]


# ---------------------------------------------------------------- counting relay
class Relay:
    """TCP relay 127.0.0.1:<port> -> 127.0.0.1:rport counting bytes each way.
    Threads are daemons; close() stops accepting and closes every socket.
    strip_s2c: bytes removed from the server's stream (a capability line the
    client must not see, e.g. Cyrus's "* COMPRESS DEFLATE": its sync_client
    compresses whenever the server offers it, and no setting turns that off).
    c2s_head keeps the first 4 KiB the client sent, to check what it asked."""

    def __init__(self, rport, strip_s2c=None):
        self.c2s = self.s2c = 0
        self.strip = strip_s2c
        self.stripped = 0
        self.c2s_head = b""
        self.lock = threading.Lock()
        self.done = threading.Condition(self.lock)
        self.pumps = 0              # directions still copying
        self.ls = socket.socket()
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((HOST, 0))
        self.ls.listen(16)
        self.ls.settimeout(0.5)
        self.port = self.ls.getsockname()[1]
        self.rport = rport
        self.closed = False
        self.socks = []
        self.conns = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed and self.conns < 1000:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                srv = socket.create_connection((HOST, self.rport), timeout=10)
            except OSError:
                c.close()
                continue
            c.settimeout(None)
            srv.settimeout(None)
            with self.lock:
                self.conns += 1
                self.pumps += 2
            self.socks += [c, srv]
            threading.Thread(target=self._pump, args=(c, srv, "c2s"), daemon=True).start()
            threading.Thread(target=self._pump, args=(srv, c, "s2c"), daemon=True).start()

    def _pump(self, a, b, d):
        try:
            self._copy(a, b, d)
        finally:
            with self.lock:
                self.pumps -= 1
                self.done.notify_all()

    def wait_done(self, timeout=30):
        """Wait until every relayed connection has ended both ways (its byte
        counts are final); False on timeout."""
        with self.lock:
            return self.done.wait_for(lambda: self.conns > 0 and self.pumps == 0, timeout)

    def _copy(self, a, b, d):
        while True:
            try:
                data = a.recv(262144)
            except OSError:
                data = b""
            if not data:
                try:
                    b.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            with self.lock:
                if d == "c2s":
                    self.c2s += len(data)
                    if len(self.c2s_head) < 4096:
                        self.c2s_head += data[:4096 - len(self.c2s_head)]
                else:
                    if self.strip and self.strip in data:
                        self.stripped += data.count(self.strip)
                        data = data.replace(self.strip, b"")
                    self.s2c += len(data)
            try:
                b.sendall(data)
            except OSError:
                return

    def close(self):
        self.closed = True
        for s in [self.ls] + self.socks:
            try:
                s.close()
            except OSError:
                pass


# ---------------------------------------------------------------- disk
def dir_bytes(path, exclude=()):
    """(apparent bytes, allocated bytes, files) under path."""
    app = alloc = n = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            if any(re.search(x, f) for x in exclude):
                continue
            try:
                st = os.lstat(os.path.join(root, f))
            except OSError:
                continue
            app += st.st_size
            alloc += st.st_blocks * 512
            n += 1
    return app, alloc, n


# ---------------------------------------------------------------- other work on the machine
ROOT = None     # the run's temporary directory, set by the harness: servers whose
                # command line names it are ours
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _proc_snapshot():
    """pid -> (ppid, sid, cpu ticks incl. reaped children, command line)."""
    snap = {}
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            v = st[st.rfind(")") + 2:].split()
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read(4096)
        except OSError:
            continue
        snap[int(p)] = (int(v[1]), int(v[3]), int(v[11]) + int(v[12]) + int(v[13]) + int(v[14]), cmd)
    return snap


def _ours(snap):
    me = os.getpid()
    root = ROOT.encode() if ROOT else None
    sids = {s for (_pp, s, _t, cmd) in snap.values() if root and root in cmd}
    ours = set()
    for pid, (pp, sid, _t, cmd) in snap.items():
        if sid in sids or (root and root in cmd):
            ours.add(pid)
            continue
        q, n = pid, 0
        while q > 1 and n < 64:
            if q == me:
                ours.add(pid)
                break
            q = snap.get(q, (0,))[0]
            n += 1
    return ours


class OthersMeter:
    """Estimates the CPU that processes other than the benchmark's (its clients,
    the servers under ROOT) used between start() and stop(), as % of the
    machine.  Processes are compared by (utime+stime+cutime+cstime), so work
    done by short-lived children is seen once their long-lived parent (make,
    ninja, pytest) reaps them; an estimate, recorded beside each run."""

    def start(self):
        self.t0 = now()
        self.s0 = _proc_snapshot()
        return self

    def stop(self):
        el = now() - self.t0
        s1 = _proc_snapshot()
        ours = _ours(s1) | _ours(self.s0)
        # a child that existed at start and was reaped since: its parent's cutime
        # grew by the child's whole life; take off the part before start
        before = {}
        for pid, (pp, _sid, t, _cmd) in self.s0.items():
            if pid not in s1 and pp in s1:
                before[pp] = before.get(pp, 0) + t
        ticks = 0
        for pid, (_pp, _sid, t, _cmd) in s1.items():
            if pid in ours:
                continue
            old = self.s0.get(pid)
            d = t - old[2] if old and old[2] <= t else t
            ticks += max(0, d - before.get(pid, 0))
        cpus = os.cpu_count() or 1
        return round(min(100.0, 100.0 * ticks / CLK_TCK / max(el, 1e-3) / cpus), 1)


# ---------------------------------------------------------------- replica watch (several users)
def _watch_worker(port, creds, interval, max_s, conn):
    """Child process: one logged-in connection per user (made before the
    load starts, so no login is timed); STATUS INBOX of every user in turn,
    then `interval` s of sleep, until told the totals and every user reached
    its total, or "stop", or max_s.  For each user and each new message
    number k, the time the reply that first showed it arrived."""
    seen = {u: {} for u, _pw in creds}
    err, polls, t_first, t_last = None, 0, None, None
    conns, base, last = {}, {}, {}
    try:
        for u, pw in creds:
            conns[u] = imap_login(port, u, pw, timeout=10)
            base[u] = last[u] = conns[u].status_count() or 0
        conn.send("ready")
        totals = None
        end = now() + max_s
        while now() < end:
            if conn.poll():
                msg = conn.recv()
                if msg == "stop":
                    break
                if isinstance(msg, tuple) and msg[0] == "totals":
                    totals = msg[1]
            for u, m in conns.items():
                if totals is not None and last[u] - base[u] >= totals.get(u, 0):
                    continue
                c = m.status_count()
                t = now()
                if c is not None and c > last[u]:
                    for k in range(last[u] + 1, c + 1):
                        seen[u][k - base[u]] = t
                    last[u] = c
            polls += 1
            t_first = t_first or now()
            t_last = now()
            if totals is not None and all(last[u] - base[u] >= totals.get(u, 0) for u in conns):
                break
            time.sleep(interval)
    except Exception as e:  # noqa: BLE001
        err = repr(e)
        try:
            conn.send("ready")
        except OSError:
            pass
    for m in conns.values():
        try:
            m.close()
        except OSError:
            pass
    period = (t_last - t_first) / (polls - 1) if polls > 1 and t_first else None
    conn.send({"seen": seen, "error": err, "polls": polls, "period_s": period})


class ReplicaWatch:
    """Watches several users' INBOX counts on the replica from one forked
    process (so polling never competes with the senders for Python's GIL),
    over connections logged in before the load starts.  lags() pairs the
    c-th 250 a user got with the moment the replica first showed c messages
    for that user; catch_up() is when every user had its total."""

    def __init__(self, port, users, password_of, interval=0.001, max_s=300):
        ctx = mp.get_context("fork")
        self.conn, child = ctx.Pipe()
        creds = [(u, password_of(u)) for u in users]
        self.p = ctx.Process(target=_watch_worker, args=(port, creds, interval, max_s, child), daemon=True)
        self.p.start()
        if not self.conn.poll(30 + 2 * len(users)):
            self.p.kill()
            raise RuntimeError("replica watch did not start")
        self.conn.recv()
        self.max_s = max_s
        self.r = None

    def finish(self, totals, timeout):
        """The senders are done: {user: messages acknowledged}.  Waits (bounded)
        until the replica showed them all or `timeout`; returns self."""
        try:
            self.conn.send(("totals", totals))
        except OSError:
            pass
        if not self.conn.poll(timeout):
            try:
                self.conn.send("stop")
            except OSError:
                pass
            self.conn.poll(10)
        try:
            self.r = self.conn.recv() if self.conn.poll(0) else None
        except EOFError:
            self.r = None
        self.r = self.r or {"seen": {}, "error": "watch lost", "polls": 0, "period_s": None}
        self.p.join(5)
        if self.p.is_alive():
            self.p.kill()
        self.totals = totals
        return self

    def catch_up(self):
        """Monotonic time every user's total was first seen, or None."""
        ts = []
        for u, n in self.totals.items():
            if n == 0:
                continue
            t = self.r["seen"].get(u, {}).get(n)
            if t is None:
                return None
            ts.append(t)
        return max(ts) if ts else None

    def lags(self, acks):
        """acks: {user: sorted times of its 250s}.  Lag (ms) of every message
        the replica showed, and how many it never showed."""
        out, unseen = [], 0
        for u, ts in acks.items():
            seen = self.r["seen"].get(u, {})
            for c, t in enumerate(ts, 1):
                if c in seen:
                    out.append((seen[c] - t) * 1000.0)
                else:
                    unseen += 1
        return out, unseen
