"""Hostile clients against the protocol limits (issue 20, points 1-3):
slowloris on every listener (one byte a second, no line end) is closed by an
absolute deadline that bytes do not push back, before and after login and
inside an LMTP DATA body; a literal over the pre-login cap is refused before
a byte of it is read (IMAP, syncd); and a 120 MB APPEND is stored, and
fetched back, while the serving imapd stays under 32 MB.

Deadlines in the test configuration are DL seconds (times SLOW); a
connection must be closed within its deadline + 1 s of the moment the
deadline started (the greeting, or the first byte of a command)."""
import base64
import hashlib
import os
import re
import select
import socket
import time

import pytest

from castor_mail import MailServer, Raw
from castord_util import proc_kb, sanitized
from conftest import binpath, wait_for
from repl_util import SLOW

DL = 3 * SLOW          # every deadline of the test configuration, seconds
GRACE = 1 * SLOW       # "within its deadline + 1 s"

CONF = f"""
imap_preauth_timeout: {DL}s
imap_command_timeout: {DL}s
pop3_preauth_timeout: {DL}s
pop3_command_timeout: {DL}s
lmtp_command_timeout: {DL}s
sync_preauth_timeout: {DL}s
sync_command_timeout: {DL}s
log_level: info
"""


@pytest.fixture
def srv(procs, tmp_path):
    return MailServer(procs, tmp_path, conf=CONF)


def dribble(r, t0, limit):
    """Send one byte a second (never a line end) until the server closes the
    connection; returns (seconds from t0 to the close, what it said).  Fails
    if the connection is still open `limit` seconds after t0."""
    said = r.buf
    r.buf = b""
    r.s.setblocking(True)
    while True:
        left = t0 + limit - time.monotonic()
        assert left > 0, f"still open {limit:.1f}s after the deadline started; said {said!r}"
        rl, _, _ = select.select([r.s], [], [], min(1.0, left))
        if rl:
            try:
                d = r.s.recv(65536)
            except ConnectionResetError:
                d = b""
            if not d:
                return time.monotonic() - t0, said
            said += d
            continue
        try:
            r.s.sendall(b"x")
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - t0, said


def deadline_logged(srv, service, phase):
    wait_for(lambda: re.search(rf"deadline passed service={service} phase={phase}", srv.log()),
             timeout=5 * SLOW, what=f"{service} {phase} deadline in the log")


# ---------------------------------------------------------------------------
# slowloris, before login

def test_slowloris_imap_before_login(srv):
    t0 = time.monotonic()
    r = Raw(srv.base)
    assert r.line().startswith("* OK")
    took, said = dribble(r, t0, DL + GRACE)
    assert took >= DL - 0.5, took
    assert b"* BYE" in said, said
    deadline_logged(srv, "imapd", "login")


def test_slowloris_pop3_before_login(srv):
    t0 = time.monotonic()
    r = Raw(srv.pop3_port)
    assert r.line().startswith("+OK")
    took, said = dribble(r, t0, DL + GRACE)
    assert took >= DL - 0.5, took
    assert said.startswith(b"-ERR"), said
    deadline_logged(srv, "pop3d", "login")


def test_slowloris_lmtp_command(srv):
    r = Raw(srv.lmtp_port)
    assert r.line().startswith("220")
    r.send("x")
    t0 = time.monotonic()
    took, said = dribble(r, t0, DL + GRACE)
    assert said.startswith(b"421 4.4.2"), said
    deadline_logged(srv, "lmtpd", "command")


def test_slowloris_syncd_before_login(srv):
    t0 = time.monotonic()
    r = Raw(srv.base + 3)
    assert r.line().startswith("* OK")
    took, said = dribble(r, t0, DL + GRACE)
    assert took >= DL - 0.5, took
    assert b"* BYE [TEMP]" in said, said
    deadline_logged(srv, "syncd", "login")


def test_slowloris_imaps_tls_handshake(srv):
    """A ClientHello that never completes: the login deadline covers the
    handshake of an implicit-TLS listener too."""
    t0 = time.monotonic()
    r = Raw(srv.base + 4)
    r.send(b"\x16\x03\x01\x02\x00")   # a handshake record of 512 octets, then a trickle
    took, said = dribble(r, t0, DL + GRACE)
    assert took >= DL - 0.5, took
    wait_for(lambda: re.search(r"deadline passed service=imapd phase=login peer=\S+ in=tls-handshake",
                               srv.log()), timeout=5 * SLOW, what="handshake deadline in the log")


# ---------------------------------------------------------------------------
# slowloris, after login: the command deadline

def test_slowloris_imap_command_after_login(srv):
    r = Raw(srv.base)
    assert r.line().startswith("* OK")
    r.send(f'a1 LOGIN alice "{srv.users["alice"]}"\r\n')
    while not r.line().startswith("a1 "):
        pass
    r.send("a2 NOOP")
    t0 = time.monotonic()
    took, said = dribble(r, t0, DL + GRACE)
    assert b"* BYE" in said, said
    deadline_logged(srv, "imapd", "command")


def test_slowloris_pop3_command_after_login(srv):
    r = Raw(srv.pop3_port)
    assert r.line().startswith("+OK")
    r.send("USER alice\r\n")
    assert r.line().startswith("+OK")
    r.send(f"PASS {srv.users['alice']}\r\n")
    assert r.line().startswith("+OK")
    r.send("NOOP")
    t0 = time.monotonic()
    took, said = dribble(r, t0, DL + GRACE)
    assert said.startswith(b"-ERR"), said
    deadline_logged(srv, "pop3d", "command")


def test_slowloris_lmtp_data_body(srv):
    r = Raw(srv.lmtp_port)
    assert r.line().startswith("220")
    for cmd in ("LHLO client.test", "MAIL FROM:<s@example.org>", "RCPT TO:<alice>", "DATA"):
        r.send(cmd + "\r\n")
        code, _ = r.reply()
        assert code in (250, 354), (cmd, code)
    t0 = time.monotonic()
    took, said = dribble(r, t0, DL + GRACE)
    assert said.startswith(b"421 4.4.2"), said
    deadline_logged(srv, "lmtpd", "command")


# ---------------------------------------------------------------------------
# pre-login literals and lines

def test_imap_preauth_literal_refused(srv):
    r = Raw(srv.base)
    assert r.line().startswith("* OK")
    # synchronising: refused without the "+", the session goes on
    r.send("a1 LOGIN {20000}\r\n")
    ln = r.line()
    assert ln.startswith("a1 NO [TOOBIG]"), ln
    r.send("a2 NOOP\r\n")
    assert r.line().startswith("a2 OK")
    # a line over the cap
    r.send("a3 LOGIN " + "x" * 20000 + "\r\n")
    ln = r.line()
    assert ln == "a3 BAD Command line too long", ln
    # LITERAL+ the client sends anyway: a small one is skipped, a large one
    # ends the connection unread
    r.send("a4 LOGIN {9000+}\r\n" + "x" * 9000 + "\r\n")
    assert r.line().startswith("a4 NO [TOOBIG]")
    r.send("a5 NOOP\r\n")
    assert r.line().startswith("a5 OK")
    r.send("a6 AUTHENTICATE PLAIN {268435455+}\r\n")
    assert r.line().startswith("a6 NO [TOOBIG]")
    assert r.line().startswith("* BYE")
    assert r.closed()
    assert "literal refused before login service=imapd" in srv.log()
    # after login the usual 64 KiB applies
    r = Raw(srv.base)
    assert r.line().startswith("* OK")
    r.send(f'b1 LOGIN alice "{srv.users["alice"]}"\r\n')
    while not r.line().startswith("b1 OK"):
        pass
    r.send("b2 SELECT {20000}\r\n")
    assert r.line().startswith("+ ")


def test_syncd_preauth_literal_refused(srv):
    r = Raw(srv.base + 3)
    assert r.line().startswith("* OK")
    r.send("p1 AUTHENTICATE PLAIN {268435455}\r\n")
    said = b""
    deadline = time.monotonic() + 5 * SLOW
    while time.monotonic() < deadline:
        try:
            said += r.line().encode() + b"\n"
        except EOFError:
            break
    assert b"+ go" not in said, said
    assert b"* BYE [TOOBIG]" in said, said
    assert "literal larger than 8192 bytes" in srv.log()


# ---------------------------------------------------------------------------
# a large APPEND streams

def conn_pid(server_port, client_sock, prog):
    """The pid of the `prog` process holding the server side of client_sock."""
    cport = client_sock.getsockname()[1]
    want = f"{cport:04X}"
    inode = None
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            p = line.split()
            local, remote = p[1], p[2]
            if local.endswith(f":{server_port:04X}") and remote.endswith(":" + want):
                inode = p[9]
    assert inode, "server socket not found"
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            if open(f"/proc/{pid}/comm").read().strip() != prog:
                continue
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                    return int(pid)
        except OSError:
            continue
    raise AssertionError("no process holds the connection")


SIZE = 120 * 1024 * 1024


def big_message():
    head = b"From: big@example.org\r\nTo: alice@example.org\r\nSubject: big\r\n\r\n"
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789\r\n"
    body = line * ((SIZE - len(head)) // len(line))
    msg = head + body
    return msg + b"x" * (SIZE - len(msg) - 2) + b"\r\n"


def test_large_append_streams(srv):
    msg = big_message()
    assert len(msg) == SIZE
    r = Raw(srv.base, timeout=120 * SLOW)
    assert r.line().startswith("* OK")
    r.send(f'a1 LOGIN alice "{srv.users["alice"]}"\r\n')
    while not r.line().startswith("a1 OK"):
        pass
    pid = conn_pid(srv.base, r.s, "imapd")
    r.send(b"a2 APPEND INBOX {%d}\r\n" % SIZE)
    assert r.line().startswith("+ ")
    r.send(msg)
    r.send(b"\r\n")
    while True:
        ln = r.line(timeout=120 * SLOW)
        if ln.startswith("a2 "):
            break
    assert ln.startswith("a2 OK"), ln
    hwm_append = proc_kb(pid, "VmHWM")
    r.send("a3 SELECT INBOX\r\n")
    while not r.line().startswith("a3 OK"):
        pass
    r.send("a4 FETCH 1 RFC822.SIZE\r\n")
    ln = r.line()
    assert f"RFC822.SIZE {SIZE}" in ln, ln
    while not r.line().startswith("a4 OK"):
        pass
    r.send("a5 FETCH 1 BODY.PEEK[]\r\n")
    ln = r.line(timeout=60 * SLOW)
    m = re.search(r"\{(\d+)\}$", ln)
    assert m and int(m.group(1)) == SIZE, ln
    got = hashlib.sha256()
    n = 0
    data = r.buf
    r.buf = b""
    while n < SIZE:
        if not data:
            r.s.settimeout(60 * SLOW)
            data = r.s.recv(1 << 20)
            assert data, "closed inside the literal"
        take = data[:SIZE - n]
        got.update(take)
        n += len(take)
        data = data[len(take):]
    r.buf = data
    assert got.hexdigest() == hashlib.sha256(msg).hexdigest()
    while not r.line(timeout=60 * SLOW).startswith("a5 OK"):
        pass
    # BODYSTRUCTURE was computed over the mapping given back a MiB at a time
    body = msg[msg.index(b"\r\n\r\n") + 4:]
    r.send("a6 FETCH 1 BODYSTRUCTURE\r\n")
    ln = r.line(timeout=30 * SLOW)
    lines = body.count(b"\n")
    assert f" {len(body)} {lines} " in ln, ln
    while not r.line().startswith("a6 OK"):
        pass
    hwm_fetch = proc_kb(pid, "VmHWM")
    # the body is a file of the store like any other: check finds nothing wrong
    chk = srv.ctl("check", "alice", check=False)
    assert chk.returncode == 0, chk.stdout + chk.stderr
    guid = hashlib.sha1(msg).hexdigest()
    assert list(srv.root.glob(f"spool/*/alice/blobs/{guid[:2]}/{guid}")), "no body file"
    print(f"imapd VmHWM after APPEND {hwm_append} kB, after FETCH {hwm_fetch} kB")
    if sanitized(binpath("imapd")):
        pytest.skip(f"sanitizer build: VmHWM {hwm_append}/{hwm_fetch} kB not meaningful")
    assert hwm_append < 32 * 1024, hwm_append
    assert hwm_fetch < 32 * 1024, hwm_fetch


# ---------------------------------------------------------------------------
# memory while many hostile clients run

def test_rss_under_50_hostile_clients(srv):
    """50 clients at once, each hostile in its own way (a pre-login literal
    announced far over the limit, a line that never ends, garbage, a
    pipelined flood of commands, a huge LMTP recipient list) on IMAP, POP3,
    LMTP and syncd: every Castor process stays under 32 MB resident
    (issue 20), and a well-behaved client is served afterwards."""
    import socket
    import threading

    from castord_util import children_of

    if sanitized(binpath("imapd")):
        pytest.skip("sanitizer build: resident sizes are not meaningful")
    ports = {"imap": srv.base, "pop3": srv.pop3_port, "lmtp": srv.lmtp_port, "syncd": srv.base + 3}
    payloads = [
        ("imap", b"a1 LOGIN {99999999}\r\n" + b"x" * 1000000),
        ("imap", b"a1 " + b"X" * 60000),
        ("imap", b"".join(b"a%d NOOP\r\n" % i for i in range(2000))),
        ("pop3", b"USER " + b"y" * 60000),
        ("pop3", bytes(range(256)) * 200),
        ("lmtp", b"LHLO x\r\nMAIL FROM:<a@b>\r\n" + b"RCPT TO:<nobody@x>\r\n" * 1500),
        ("lmtp", b"LHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice>\r\nDATA\r\n" + b"z" * 200000),
        ("syncd", b"p1 AUTHENTICATE PLAIN {268435455}\r\n" + b"x" * 1000000),
        ("syncd", b"\x00\xff" * 30000),
    ]
    stop = time.monotonic() + 6 * SLOW
    peak = {}
    errors = []

    def hostile(i):
        svc, data = payloads[i % len(payloads)]
        try:
            s = socket.create_connection(("127.0.0.1", ports[svc]), timeout=10 * SLOW)
            s.settimeout(0.2)
            while time.monotonic() < stop:
                try:
                    s.sendall(data)
                except OSError:
                    break
                try:
                    if s.recv(65536) == b"":
                        break
                except socket.timeout:
                    pass
                except OSError:
                    break
            s.close()
        except OSError as e:
            errors.append(f"{svc}: {e}")

    threads = [threading.Thread(target=hostile, args=(i,), daemon=True) for i in range(50)]
    for t in threads:
        t.start()
    while time.monotonic() < stop:
        for pid in [srv.pid] + children_of(srv.pid):
            try:
                kb = proc_kb(pid, "VmRSS")
            except (OSError, KeyError):
                continue
            peak[pid] = max(peak.get(pid, 0), kb)
        time.sleep(0.1)     # the sampling rate, not a synchronisation
    for t in threads:
        t.join(30 * SLOW)
    assert len(peak) >= 10, f"only {len(peak)} processes seen: {peak}"
    worst = max(peak.values())
    print(f"{len(peak)} processes, peak VmRSS {worst} kB")
    assert worst < 32 * 1024, f"a process reached {worst} kB: {sorted(peak.values())[-5:]}"
    import imaplib
    m = imaplib.IMAP4("127.0.0.1", srv.base, timeout=30 * SLOW)
    assert m.login("alice", "pw-alice")[0] == "OK"
    m.logout()
