"""pop3d (RFC 1939, 2449, 2595, 5034) driven by Python's poplib, raw sockets
and fetchmail against castord on a `castorctl init` root: every command and
response code, [IN-USE] across processes, UPDATE all-or-nothing, the
plaintext rule, failed-login delays, STLS and implicit TLS, and a 500-message
fetch into an mbox compared byte for byte."""
import base64
import poplib
import re
import shutil
import socket
import subprocess
import time

import pytest

from castor_mail import MailServer, Raw, lmtp_send, no_verify_ctx, sha1, stuff
from conftest import SLOW, pid_alive, wait_for


def msg(i, extra=b""):
    return (b"From: s@example.org\r\nTo: alice@example.org\r\nSubject: message %d\r\n"
            b"Message-ID: <p%d@example.org>\r\n\r\nbody of %d\r\n" % (i, i, i)) + extra


def deliver(srv, user, msgs):
    c = srv.lmtp()
    for m in msgs:
        assert lmtp_send(c, "s@example.org", [user], m)[0][0] == 250
    c.quit()


@pytest.fixture
def srv(procs, tmp_path):
    s = MailServer(procs, tmp_path)
    deliver(s, "alice", [msg(i) for i in range(1, 4)])
    return s


def login(srv, user="alice"):
    p = srv.pop3()
    assert p.user(user).startswith(b"+OK")
    assert p.pass_(srv.users[user]).startswith(b"+OK")
    return p


def login_once_released(srv, user="alice"):
    """Log in as soon as the session that held the maildrop has let it go:
    the event is a PASS not answered [IN-USE] (any other refusal fails)."""
    def attempt():
        p = srv.pop3()
        assert p.user(user).startswith(b"+OK")
        try:
            assert p.pass_(srv.users[user]).startswith(b"+OK")
        except poplib.error_proto as e:
            p.close()
            if str(e).startswith("b'-ERR [IN-USE]"):
                return None
            raise
        return p
    return wait_for(attempt, timeout=10 * SLOW, interval=0.05, what=f"{user}'s maildrop released")


def raw(srv):
    r = Raw(srv.pop3_port)
    assert r.line().startswith("+OK")
    return r


def multiline(r):
    out = []
    while True:
        ln = r.line()
        if ln == ".":
            return out
        out.append(ln[1:] if ln.startswith("..") else ln)


# ---------------------------------------------------------------------------
# AUTHORIZATION

def test_greeting_and_capa(srv):
    p = srv.pop3()
    assert re.match(rb"\+OK mx\.test Castor POP3 server ready", p.getwelcome())
    caps = p.capa()
    for c in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "USER", "STLS"):
        assert c in caps, caps
    assert caps["SASL"] == ["PLAIN"]
    assert caps["EXPIRE"] == ["NEVER"]
    p.user("alice")
    p.pass_(srv.users["alice"])
    caps = p.capa()
    assert "USER" not in caps and "STLS" not in caps and "SASL" not in caps
    assert "TOP" in caps
    p.quit()


def test_user_pass_and_state_errors(srv):
    r = raw(srv)
    for cmd, want in [("STAT", "-ERR Not logged in"), ("RETR 1", "-ERR Not logged in"),
                      ("PASS x", "-ERR USER first"), ("FROB", "-ERR Unknown command"),
                      ("USER", "-ERR Syntax"), ("APOP alice 0123456789abcdef", "-ERR APOP"),
                      ("AUTH FOO", "-ERR Unsupported"), ("NOOP", "-ERR Not logged in"),
                      ("USER alice", "+OK"), ("PASS pw-alice", "+OK Logged in, 3 messages"),
                      ("USER alice", "-ERR Already logged in"), ("PASS x", "-ERR Already logged in"),
                      ("AUTH PLAIN", "-ERR Already logged in"), ("STLS", "-ERR Already logged in"),
                      ("NOOP", "+OK"), ("NOOP x", "-ERR Syntax"), ("QUIT", "+OK")]:
        r.send(cmd + "\r\n")
        ln = r.line()
        assert ln.startswith(want), (cmd, ln)
    assert r.closed()


def test_failed_login_delay_code_and_log(srv):
    r = raw(srv)
    t0 = time.monotonic()
    r.send("USER alice\r\nPASS wrong\r\n")
    assert r.line() == "+OK"
    assert r.line() == "-ERR [AUTH] Authentication failed"
    t1 = time.monotonic()
    r.send("USER nosuchuser\r\nPASS wrong\r\n")
    r.line()
    assert r.line() == "-ERR [AUTH] Authentication failed"
    t2 = time.monotonic()
    assert 0.45 <= t1 - t0 < 3.0 * SLOW, t1 - t0       # first failure: 0.5 s
    assert 0.95 <= t2 - t1 < 4.0 * SLOW, t2 - t1       # second: 1 s (growing)
    r.send("USER alice\r\nPASS pw-alice\r\n")   # still allowed to succeed
    r.line()
    assert r.line().startswith("+OK Logged in")
    log = srv.log()
    assert re.search(r"auth failed service=pop3d rip=127\.0\.0\.1 user=alice peer=127\.0\.0\.1:\d+"
                     r" failures=1 ", log), log
    assert re.search(r"auth failed service=pop3d rip=127\.0\.0\.1 user=nosuchuser"
                     r" peer=127\.0\.0\.1:\d+ failures=2 ", log)


def test_auth_plain(srv):
    def b64(s):
        return base64.b64encode(s).decode()

    r = raw(srv)
    r.send("AUTH\r\n")
    assert r.line() == "+OK"
    assert multiline(r) == ["PLAIN"]
    # continuation, then cancel
    r.send("AUTH PLAIN\r\n")
    assert r.line() == "+ "
    r.send("*\r\n")
    assert r.line().startswith("-ERR")
    # malformed response: an authentication failure with [AUTH]
    r.send("AUTH PLAIN !!!notbase64\r\n")
    assert r.line().startswith("-ERR [AUTH]")
    # a proxy login (authzid of another user) is refused
    r.send("AUTH PLAIN " + b64(b"bob\0alice\0pw-alice") + "\r\n")
    assert r.line() == "-ERR [AUTH] Authentication failed"
    # continuation with the right credentials
    r.send("AUTH PLAIN\r\n")
    assert r.line() == "+ "
    r.send(b64(b"\0alice\0pw-alice") + "\r\n")
    assert r.line().startswith("+OK Logged in, 3 messages")
    r.send("QUIT\r\n")
    r.line()
    # initial response (RFC 5034), authzid equal to the user is fine
    r = raw(srv)
    r.send("AUTH PLAIN " + b64(b"alice\0alice\0pw-alice") + "\r\n")
    assert r.line().startswith("+OK Logged in")


def test_login_name_folding(srv):
    r = raw(srv)
    r.send("USER ALICE@Example.ORG\r\nPASS pw-alice\r\n")
    r.line()
    assert r.line().startswith("+OK Logged in"), "virtdomains off: the domain is dropped, case folded"


# ---------------------------------------------------------------------------
# TRANSACTION

def test_stat_list_uidl_retr_top(srv):
    p = login(srv)
    n, size = p.stat()
    assert n == 3
    resp, lines, _ = p.list()
    assert resp.startswith(b"+OK 3 messages")
    sizes = [int(ln.split()[1]) for ln in lines]
    assert [int(ln.split()[0]) for ln in lines] == [1, 2, 3] and sum(sizes) == size
    assert p.list(2) == b"+OK 2 %d" % sizes[1]
    resp, uidls, _ = p.uidl()
    ids = [ln.split()[1].decode() for ln in uidls]
    assert all(re.fullmatch(r"\d+\.\d+", i) for i in ids)
    validity = {i.split(".")[0] for i in ids}
    assert len(validity) == 1 and [int(i.split(".")[1]) for i in ids] == [1, 2, 3]
    assert p.uidl(3) == b"+OK 3 " + ids[2].encode()
    resp, lines, octets = p.retr(2)
    m = b"\r\n".join(lines) + b"\r\n"
    assert resp == b"+OK %d octets" % sizes[1]
    assert len(m) == sizes[1]
    assert m.endswith(msg(2)[msg(2).index(b"From:"):])
    resp, lines, _ = p.top(2, 0)
    assert lines[-1] == b"" and b"Subject: message 2" in lines
    assert b"body of 2" not in lines
    resp, lines, _ = p.top(2, 1)
    assert lines[-1] == b"body of 2"
    p.quit()
    # UIDLs are stable across sessions
    p = login(srv)
    assert [ln.split()[1].decode() for ln in p.uidl()[1]] == ids
    p.quit()


def test_transaction_errors(srv):
    r = raw(srv)
    r.send("USER alice\r\nPASS pw-alice\r\n")
    r.line()
    r.line()
    for cmd, want in [("RETR 0", "-ERR No such message"), ("RETR 4", "-ERR No such message"),
                      ("RETR", "-ERR Syntax"), ("RETR x", "-ERR No such message"),
                      ("RETR 1 2", "-ERR Syntax"), ("TOP 1", "-ERR Syntax"), ("TOP 1 x", "-ERR Syntax"),
                      ("LIST 9", "-ERR No such message"), ("UIDL 0", "-ERR No such message"),
                      ("DELE 2", "+OK"), ("DELE 2", "-ERR Message 2 already deleted"),
                      ("RETR 2", "-ERR Message 2 already deleted"), ("LIST 2", "-ERR Message 2 already deleted"),
                      ("STAT", "+OK 2 "), ("RSET", "+OK 3 messages"), ("STAT", "+OK 3 "),
                      ("LIST 99999999999", "-ERR No such message"), ("list 1", "+OK 1 ")]:
        r.send(cmd + "\r\n")
        ln = r.line()
        assert ln.startswith(want), (cmd, ln)
    r.send("X" * 5000 + "\r\nNOOP\r\n")
    assert r.line() == "-ERR Line too long"
    assert r.line() == "+OK"


def test_dele_quit_update(srv):
    p = login(srv)
    ids = [ln.split()[1] for ln in p.uidl()[1]]
    p.dele(1)
    p.dele(3)
    resp, lines, _ = p.list()
    assert [ln.split()[0] for ln in lines] == [b"2"]          # deleted ones are not listed
    assert [ln.split()[1] for ln in p.uidl()[1]] == [ids[1]]
    assert p.quit() == b"+OK Logging out, 2 messages deleted"
    p = login(srv)
    assert p.stat()[0] == 1
    assert [ln.split()[1] for ln in p.uidl()[1]] == [ids[1]]
    assert p.retr(1)[1][-1] == b"body of 2"
    p.quit()
    d = srv.dump("alice")["INBOX"]
    assert [r["uid"] for r in d] == [2]


def test_no_update_without_quit_and_rset(srv):
    p = login(srv)
    p.dele(1)
    p.dele(2)
    p.close()                           # connection lost: no UPDATE state
    p = login_once_released(srv)        # its pop3d has seen the end of the session
    assert p.stat()[0] == 3
    p.dele(1)
    p.rset()
    assert p.quit() == b"+OK Logging out, 0 messages deleted"
    assert srv.count("alice") == 3


def test_update_is_all_or_nothing(procs, tmp_path):
    srv = MailServer(procs, tmp_path, env={"CASTOR_FAILPOINTS": "store.expunge.before_commit=error"})
    deliver(srv, "alice", [msg(i) for i in range(1, 6)])
    r = raw(srv)
    r.send("USER alice\r\nPASS pw-alice\r\nDELE 1\r\nDELE 3\r\nDELE 5\r\nQUIT\r\n")
    lines = [r.line() for _ in range(6)]
    assert lines[-1].startswith("-ERR [SYS/TEMP]"), lines
    assert r.closed()
    assert srv.count("alice") == 5
    assert re.search(r"update failed user=alice deleted=3", srv.log())


def test_in_use(srv):
    a = login(srv)
    b = srv.pop3()
    b.user("alice")
    with pytest.raises(poplib.error_proto) as e:
        b.pass_(srv.users["alice"])
    assert str(e.value).startswith("b'-ERR [IN-USE]")
    # bob is not affected
    c = login(srv, "bob")
    c.quit()
    a.dele(1)
    a.quit()
    # released at the end of the session: b may now log in (still connected)
    b.user("alice")
    assert b.pass_(srv.users["alice"]).startswith(b"+OK Logged in, 2 messages")
    b.quit()


def test_in_use_released_when_process_dies(srv):
    a = login(srv)
    # kill the pop3d serving a (a crash): the kernel drops the flock
    pids = [int(x) for x in re.findall(r"castor/pop3\[(\d+)\]: info: login service=pop3d", srv.log())]
    import os
    import signal
    os.kill(pids[-1], signal.SIGKILL)
    wait_for(lambda: not pid_alive(pids[-1]), timeout=5 * SLOW, what="pop3d gone")
    b = login(srv)
    assert b.stat()[0] == 3
    b.quit()
    a.close()


def test_dot_stuffing_in_retr(srv):
    body = b"Subject: dots\r\n\r\n.one\r\n..two\r\n.\r\nFrom the start\r\nlast line without CRLF"
    deliver(srv, "bob", [body])
    r = raw(srv)
    r.send("USER bob\r\nPASS pw-bob\r\nRETR 1\r\n")
    r.line()
    r.line()
    assert r.line().startswith("+OK")
    got = []
    while True:
        ln = r.line()
        if ln == ".":
            break
        got.append(ln)
    # on the wire every '.'-line is stuffed and the last line gets its CRLF
    assert got[-6:] == ["", "..one", "...two", "..", "From the start", "last line without CRLF"]


def test_plaintext_refused_off_loopback(procs, tmp_path):
    srv = MailServer(procs, tmp_path, env={"CASTOR_FAILPOINTS": "session_auth.not_loopback=error"})
    deliver(srv, "alice", [msg(1)])
    p = srv.pop3()
    caps = p.capa()
    assert "USER" not in caps and "SASL" not in caps and "STLS" in caps
    r = raw(srv)
    for cmd in ("USER alice", "PASS pw-alice", "AUTH PLAIN " + base64.b64encode(b"\0alice\0pw-alice").decode()):
        r.send(cmd + "\r\n")
        assert r.line().startswith("-ERR [AUTH] Plaintext authentication disallowed"), cmd
    # after STLS the same login works
    p.stls(context=no_verify_ctx())
    caps = p.capa()
    assert "USER" in caps and "STLS" not in caps
    p.user("alice")
    assert p.pass_("pw-alice").startswith(b"+OK Logged in, 1 messages")
    p.quit()


def test_allowplaintext_yes(procs, tmp_path):
    srv = MailServer(procs, tmp_path, conf="allowplaintext: yes\n",
                     env={"CASTOR_FAILPOINTS": "session_auth.not_loopback=error"})
    p = srv.pop3()
    assert "USER" in p.capa()
    p.user("alice")
    assert p.pass_("pw-alice").startswith(b"+OK")
    p.quit()


def test_stls_discards_pipelined_plaintext(srv):
    r = raw(srv)
    r.send("STLS\r\nUSER alice\r\nPASS pw-alice\r\n")
    assert r.line().startswith("+OK Begin TLS")
    r.starttls()
    r.send("STAT\r\n")
    assert r.line() == "-ERR Not logged in"
    r.send("STLS\r\n")
    assert r.line() == "-ERR TLS already active"


def test_implicit_tls(procs, tmp_path):
    from conftest import free_ports
    port = free_ports(1)
    srv = MailServer(procs, tmp_path,
                     services_extra=f'  pop3s  cmd="pop3d" listen="127.0.0.1:{port}" tls=yes\n')
    deliver(srv, "alice", [msg(1)])
    p = poplib.POP3_SSL("127.0.0.1", port, context=no_verify_ctx(), timeout=20 * SLOW)
    assert "STLS" not in p.capa()
    p.user("alice")
    p.pass_("pw-alice")
    assert p.stat()[0] == 1
    p.quit()


def test_sigquit_idle_session(srv):
    r = raw(srv)
    r.send("USER alice\r\nPASS pw-alice\r\nDELE 1\r\n")
    r.line()
    r.line()
    assert r.line().startswith("+OK")
    srv.sigquit()
    assert r.line(timeout=5 * SLOW).startswith("-ERR [SYS/TEMP]")
    assert r.closed()
    assert srv.proc.wait(timeout=20 * SLOW) == 0
    assert srv.count("alice") == 3      # no UPDATE: nothing removed


def test_pipelining(srv):
    r = raw(srv)
    r.send("USER alice\r\nPASS pw-alice\r\nSTAT\r\nLIST\r\nUIDL 1\r\nTOP 1 0\r\nNOOP\r\nQUIT\r\n")
    assert r.line() == "+OK"
    assert r.line().startswith("+OK Logged in")
    assert r.line().startswith("+OK 3 ")
    assert r.line().startswith("+OK 3 messages")
    assert len(multiline(r)) == 3
    assert r.line().startswith("+OK 1 ")
    assert r.line().startswith("+OK")
    assert "Subject: message 1" in multiline(r)
    assert r.line() == "+OK"
    assert r.line().startswith("+OK Logging out")


# ---------------------------------------------------------------------------
# fetchmail, the real third-party client

MDA = r"""#!/bin/sh
# mboxrd: one "From " separator line, ">" added before (>*)From lines
{ echo "From fetchmail Thu Jan  1 00:00:00 2026"; sed 's/^\(>*From \)/>\1/'; echo; } >> "$1"
"""


def parse_mboxrd(data):
    msgs = []
    for chunk in re.split(rb"(?m)^From fetchmail Thu Jan  1 00:00:00 2026\n", data)[1:]:
        assert chunk.endswith(b"\n\n")
        chunk = chunk[:-1]          # the blank line the MDA added
        chunk = re.sub(rb"(?m)^>(>*From )", rb"\1", chunk)
        msgs.append(chunk)
    return msgs


def test_fetchmail_500_messages_byte_for_byte(srv, tmp_path):
    fm = shutil.which("fetchmail")
    assert fm, "fetchmail not installed (scripts/deps.sh)"
    sent = []
    for i in range(500):
        body = b"".join(b"line %d of message %d\r\n" % (k, i) for k in range(i % 37))
        extra = b""
        if i % 7 == 0:
            extra += b".a line starting with a dot\r\n..and two\r\n.\r\n"
        if i % 11 == 0:
            extra += b"From the beginning of a line\r\n>From quoted already\r\n"
        if i % 13 == 0:
            extra += b"8bit \xc3\xa9t\xc3\xa9 \xff\r\n"
        if i % 97 == 0:
            extra += (b"z" * 998 + b"\r\n") * 80          # over 64k: a blob file
        sent.append(b"From: s@example.org\r\nTo: carol@example.org\r\nSubject: fetch %d\r\n"
                    b"Message-ID: <f%d@example.org>\r\n\r\n" % (i, i) + body + extra)
    srv.ctl("user", "add", "carol", "--password", "pw-carol")
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send("LHLO c\r\n")
    r.reply()
    for m in sent:
        r.send(b"MAIL FROM:<s@example.org>\r\nRCPT TO:<carol@example.org>\r\nDATA\r\n" + stuff(m) + b".\r\n")
        assert [r.reply()[0] for _ in range(4)] == [250, 250, 354, 250]
    r.send("QUIT\r\n")
    recs = srv.dump("carol")["INBOX"]
    assert len(recs) == 500

    mbox = tmp_path / "out.mbox"
    mda = tmp_path / "mda.sh"
    mda.write_text(MDA)
    mda.chmod(0o755)
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f"""set invisible
poll 127.0.0.1 service {srv.pop3_port} protocol pop3 auth password timeout 60
  user "carol" there with password "pw-carol" is "root" here
  sslproto ''
  no rewrite
  mda "{mda} {mbox}"
""")
    rc.chmod(0o600)
    cp = subprocess.run([fm, "--nosyslog", "-f", str(rc), "--pidfile", str(tmp_path / "fm.pid")],
                        capture_output=True, text=True, timeout=300 * SLOW, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert cp.returncode == 0, cp.stdout + cp.stderr
    got = parse_mboxrd(mbox.read_bytes())
    assert len(got) == 500
    for i, (g, m, rec) in enumerate(zip(got, sent, recs)):
        crlf = g.replace(b"\n", b"\r\n")
        # what fetchmail wrote is exactly what the store holds (its GUID is its SHA-1)...
        assert sha1(crlf) == rec["guid"], f"message {i} differs from the stored one"
        # ...which is our two trace fields followed by exactly what was sent
        assert crlf.endswith(m), f"message {i}"
        assert re.fullmatch(rb"Return-Path: <s@example\.org>\r\nReceived: from c \(\[127\.0\.0\.1\]\)\r\n"
                            rb"\tby mx\.test \(Castor\) with LMTP id \S+\r\n\tfor <carol@example\.org>; [^\r\n]+\r\n",
                            crlf[:-len(m)]), crlf[:300]
    # fetchmail deleted what it fetched (no "keep"): UPDATE removed all 500
    assert srv.count("carol") == 0


def test_dele_on_a_replica_is_refused_at_once(procs, tmp_path):
    """A replica cannot delete: DELE says so itself (issue 21 item 4), not
    QUIT after the client believed it, and nothing changes."""
    import smtplib
    from conftest import free_ports
    from repl_util import SLOW, converged, ctl, pair

    m, (r,) = pair(procs, tmp_path, start=False)
    lport = free_ports(1)
    m.add_services(f'  lmtp cmd="lmtpd" listen="127.0.0.1:{lport}"', section="SERVICES")
    pport = free_ports(1)
    r.add_services(f'  pop3 cmd="pop3d" listen="127.0.0.1:{pport}"', section="SERVICES")
    r.start()
    m.start()
    ctl(m.conf, "-q", "user", "add", "pat", "--password", "pw-pop")
    c = smtplib.LMTP("127.0.0.1", lport, timeout=20 * SLOW)
    c.ehlo("mta.test")
    for n in range(2):
        assert lmtp_send(c, "s@example.org", ["pat"],
                         f"Subject: r{n}\r\nMessage-ID: <r{n}@x>\r\n\r\nbody {n}\r\n".encode())[0][0] == 250
    c.quit()
    converged(m, r)
    p = poplib.POP3("127.0.0.1", pport, timeout=20 * SLOW)
    p.user("pat")
    p.pass_("pw-pop")
    assert p.stat()[0] == 2
    with pytest.raises(poplib.error_proto) as e:
        p.dele(1)
    assert e.value.args[0].startswith(b"-ERR [SYS/PERM]")
    assert p.stat()[0] == 2                     # not marked deleted
    assert p.quit().startswith(b"+OK")
    p = poplib.POP3("127.0.0.1", pport, timeout=20 * SLOW)
    p.user("pat")
    p.pass_("pw-pop")
    assert p.stat()[0] == 2
    p.quit()
