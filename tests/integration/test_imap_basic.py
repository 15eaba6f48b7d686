"""imapd: the connection, its states, authentication, TLS, syntax errors,
literals and limits (RFC 3501 sections 6.1, 6.2, 7.1; LITERAL+, SASL-IR,
LOGINDISABLED, STARTTLS, implicit TLS, TOOBIG)."""
import base64
import imaplib
import signal
import socket
import ssl
import time

import pytest

from conftest import SLOW
from imap_helpers import PASSWORD, ImapServer, Raw, find, one


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ImapServer(tmp_path_factory.mktemp("imapbasic"))
    yield s
    s.stop()


@pytest.fixture(scope="module")
def limits(tmp_path_factory):
    """Small limits and short timeouts."""
    s = ImapServer(tmp_path_factory.mktemp("imaplimits"), conf_extra="""
imap_max_line: 2k
maxmessagesize: 10k
imap_preauth_timeout: 1s
imap_idle_timeout: 2s
quota_default_messages: 4
""")
    yield s
    s.stop()


def caps(line):
    return set(line.split(b"[CAPABILITY ", 1)[1].split(b"]", 1)[0].split())


def test_greeting_capability_noop_logout(srv):
    c = Raw(srv.port)
    assert c.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    pre = caps(c.greeting)
    assert {b"LITERAL+", b"SASL-IR", b"STARTTLS", b"AUTH=PLAIN", b"IDLE", b"ID", b"ENABLE"} <= pre
    assert b"LOGINDISABLED" not in pre   # loopback may send passwords
    u, t = c.ok("CAPABILITY")
    assert set(one(u, rb"^\* CAPABILITY ").split()[2:]) == pre
    c.ok("NOOP")
    u, t = c.ok(f'LOGIN alice "{PASSWORD}"')
    post = caps(t)
    for cap in (b"UIDPLUS", b"MOVE", b"CONDSTORE", b"QRESYNC", b"SPECIAL-USE", b"LIST-STATUS",
                b"ESEARCH", b"NAMESPACE", b"UNSELECT", b"CHILDREN", b"LIST-EXTENDED"):
        assert cap in post, cap
    assert any(x.startswith(b"APPENDLIMIT=") for x in post)
    assert b"STARTTLS" not in post and b"AUTH=PLAIN" not in post
    u, t = c.ok("LOGOUT")
    assert one(u, rb"^\* BYE ")
    assert c.closed()


def test_imaplib_login_and_logout(srv):
    m = imaplib.IMAP4("127.0.0.1", srv.port)
    typ, data = m.login("alice", PASSWORD)
    assert typ == "OK"
    assert m.noop()[0] == "OK"
    assert m.logout()[0] == "BYE"


def test_login_failures(srv):
    c = Raw(srv.port)
    t0 = time.monotonic()
    c.no(f'LOGIN alice "wrong"', "AUTHENTICATIONFAILED")
    c.no(f'LOGIN nosuchuser "{PASSWORD}"', "AUTHENTICATIONFAILED")
    assert time.monotonic() - t0 >= 1.4   # 0.5 s then 1 s: the growing delay
    # still usable, and a good login works after failures
    c.ok(f'LOGIN ALICE@example.com "{PASSWORD}"')   # folded, domain dropped
    c.bad(f'LOGIN alice "{PASSWORD}"')              # already logged in
    assert "auth failed service=imapd rip=127.0.0.1 user=alice" in srv.log()


def test_authenticate_plain(srv):
    ir = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    c = Raw(srv.port)
    c.ok(f"AUTHENTICATE PLAIN {ir}")           # SASL-IR
    c.ok("SELECT INBOX")
    c = Raw(srv.port)
    tag = c.tag()
    c.send(f"{tag} AUTHENTICATE PLAIN\r\n")
    assert c.rawline().startswith(b"+")
    c.send(ir + "\r\n")
    u, t = c.collect(tag)
    assert t.startswith(f"{tag} OK".encode()), t
    # cancel, then a malformed response, then a proxy authzid
    c = Raw(srv.port)
    tag = c.tag()
    c.send(f"{tag} AUTHENTICATE PLAIN\r\n")
    assert c.rawline().startswith(b"+")
    c.send("*\r\n")
    u, t = c.collect(tag)
    assert b" BAD " in t
    c.no("AUTHENTICATE PLAIN bm90IHZhbGlk", "AUTHENTICATIONFAILED")
    proxy = base64.b64encode(f"bob\0alice\0{PASSWORD}".encode()).decode()
    c.no(f"AUTHENTICATE PLAIN {proxy}", "AUTHENTICATIONFAILED")
    c.no("AUTHENTICATE CRAM-MD5", "CANNOT")


def test_wrong_state(srv):
    c = Raw(srv.port)
    for cmd in ("SELECT INBOX", "LIST \"\" *", "CREATE x", "STATUS INBOX (MESSAGES)", "ENABLE QRESYNC",
                "IDLE", "NAMESPACE", "APPEND INBOX {1+}\r\nx"):
        u, t = c.bad(cmd)
        assert b"log in" in t
    for cmd in ("FETCH 1 FLAGS", "CLOSE", "EXPUNGE", "UID SEARCH ALL", "STORE 1 FLAGS ()",
                "COPY 1 x", "UNSELECT", "CHECK"):
        c.bad(cmd)
    c.ok(f'LOGIN alice "{PASSWORD}"')
    for cmd in ("FETCH 1 FLAGS", "CLOSE", "EXPUNGE", "UID FETCH 1 UID", "MOVE 1 x", "UID EXPUNGE 1"):
        u, t = c.bad(cmd)
        assert b"No mailbox selected" in t
    c.bad("STARTTLS")
    c.ok("NOOP")


def test_bad_syntax_keeps_session(srv):
    c = srv.client()
    c.ok("SELECT INBOX")
    for cmd, why in [("FROBNICATE", b"unknown command"), ("FETCH 1 (FLAGS", b"expected ')'"),
                     ("SEARCH FOO", b"unknown search key"), ("LIST", b"expected a space"),
                     ("STORE 1 FLAGS (\\Bogus)", b"Invalid flags"),
                     ("UID FETCH 1:x FLAGS", b"sequence set"), ("NOOP junk", b"unexpected")]:
        u, t = c.bad(cmd)
        assert why in t, (cmd, t)
    # no tag at all, and an empty line
    c.send("\r\n")
    assert c.line().startswith(b"* BAD")
    c.send("+x NOOP\r\n")
    assert c.line().startswith(b"* BAD")
    c.ok("NOOP")
    c.ok("CHECK")


def test_id_enable_namespace(srv):
    c = srv.client()
    u, t = c.ok('ID ("name" "pytest" "version" "1")')
    assert one(u, rb'^\* ID \("name" "Castor"')
    u, t = c.ok("ID NIL")
    u, t = c.ok("ENABLE CONDSTORE QRESYNC X-UNKNOWN")
    assert one(u, rb"^\* ENABLED CONDSTORE QRESYNC$")
    u, t = c.ok("ENABLE CONDSTORE")
    assert one(u, rb"^\* ENABLED$")
    u, t = c.ok("NAMESPACE")
    assert one(u, rb'^\* NAMESPACE \(\(\"\" \"/\"\)\) NIL NIL$')


def test_literals_sync_and_nonsync(srv):
    c = Raw(srv.port)
    tag = c.tag()
    c.send(f"{tag} LOGIN {{5}}\r\n")
    assert c.rawline().startswith(b"+ ")          # synchronising: invited
    c.send("alice")
    c.send(f" {{{len(PASSWORD)}}}\r\n")
    assert c.rawline().startswith(b"+ ")
    c.send(PASSWORD + "\r\n")
    u, t = c.collect(tag)
    assert t.startswith(f"{tag} OK".encode()), t
    # LITERAL+: no continuation, everything in one go
    msg = b"Subject: lit\r\n\r\nbody\r\n"
    c.ok(b"SELECT {5+}\r\nINBOX")
    u, t = c.ok(b"APPEND INBOX (\\Seen) {%d+}\r\n%s" % (len(msg), msg))
    assert b"APPENDUID" in t
    u, t = c.ok(b"UID SEARCH SUBJECT {3+}\r\nlit")
    assert len(one(u, rb"^\* SEARCH").split()) == 3
    # pipelined commands after a literal
    c.send(b"p1 NOOP\r\np2 SEARCH SUBJECT {3+}\r\nlit\r\np3 NOOP\r\n")
    c.collect("p1")
    u, t = c.collect("p2")
    assert t.startswith(b"p2 OK")
    c.collect("p3")


def test_line_and_literal_limits(limits):
    c = limits.client()
    c.ok("SELECT INBOX")
    # an over-long command line: BAD, session goes on
    u, t = c.cmd("NOOP " + "x" * 3000)
    assert t.startswith(b"t") and b" BAD " in t and b"too long" in t
    c.ok("NOOP")
    # a synchronising literal over the limit is refused before it is sent
    tag = c.tag()
    c.send(f"{tag} SEARCH TEXT {{5000}}\r\n")
    ln = c.line()
    assert ln.startswith(f"{tag} NO [TOOBIG]".encode()), ln
    c.ok("NOOP")
    # a LITERAL+ one is read and dropped, then NO [TOOBIG]
    u, t = c.cmd(b"SEARCH TEXT {5000+}\r\n" + b"y" * 5000)
    assert b"NO [TOOBIG]" in t
    c.ok("NOOP")
    # APPEND over maxmessagesize (10k): APPENDLIMIT says so
    u, t = c.ok("CAPABILITY")
    assert b"APPENDLIMIT=10240" in one(u, rb"CAPABILITY")
    big = b"Subject: big\r\n\r\n" + b"z" * 12000
    u, t = c.cmd(b"APPEND INBOX {%d+}\r\n%s" % (len(big), big))
    assert b"NO [TOOBIG]" in t
    tag = c.tag()
    c.send(f"{tag} APPEND INBOX {{{len(big)}}}\r\n")
    assert c.line().startswith(f"{tag} NO [TOOBIG]".encode())
    u, t = c.ok("STATUS INBOX (MESSAGES APPENDLIMIT)")
    assert b"MESSAGES 0" in u[0] and b"APPENDLIMIT 10240" in u[0]
    small = b"Subject: ok\r\n\r\nsmall\r\n"
    c.ok(b"APPEND INBOX {%d+}\r\n%s" % (len(small), small))


def test_preauth_append_is_not_buffered(limits):
    """Before login an APPEND gets no more room than any command."""
    c = Raw(limits.port)
    tag = c.tag()
    c.send(f"{tag} APPEND INBOX {{5000}}\r\n")
    assert c.line().startswith(f"{tag} NO [TOOBIG]".encode())
    u, t = c.cmd(b"APPEND INBOX {3000+}\r\n" + b"x" * 3000)
    assert b"NO [TOOBIG]" in t
    c.ok("NOOP")


def test_overquota_and_alert(limits):
    c = limits.client(user="bob")
    m = b"Subject: q\r\n\r\nquota\r\n"
    for i in range(4):
        c.ok(b"APPEND INBOX {%d+}\r\n%s" % (len(m), m))
    c.no(b"APPEND INBOX {%d+}\r\n%s" % (len(m), m), "OVERQUOTA")
    c.ok("SELECT INBOX")
    c.no("COPY 1 Sent", "OVERQUOTA")
    c2 = Raw(limits.port)
    u, t = c2.ok(f'LOGIN bob "{PASSWORD}"')
    assert find(u, rb"^\* OK \[ALERT\].*quota"), u


def test_preauth_and_idle_timeouts(limits):
    c = Raw(limits.port)
    t0 = time.monotonic()
    ln = c.line(timeout=10 * SLOW)
    assert ln.startswith(b"* BYE") and b"Autologout" in ln, ln
    assert 0.8 <= time.monotonic() - t0 < 6 * SLOW
    assert c.closed()
    c = limits.client()
    t0 = time.monotonic()
    ln = c.line(timeout=10 * SLOW)
    assert ln.startswith(b"* BYE"), ln
    assert 1.5 <= time.monotonic() - t0 < 8 * SLOW


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """Every peer counts as remote (failpoint), plaintext not allowed."""
    s = ImapServer(tmp_path_factory.mktemp("imapremote"))
    s.restart(env={"CASTOR_FAILPOINTS": "session_auth.not_loopback=error"})
    yield s
    s.stop()


def test_logindisabled_and_starttls(remote):
    c = Raw(remote.port)
    pre = caps(c.greeting)
    assert b"LOGINDISABLED" in pre and b"STARTTLS" in pre and b"AUTH=PLAIN" not in pre
    c.no(f'LOGIN alice "{PASSWORD}"', "PRIVACYREQUIRED")
    ir = base64.b64encode(f"\0alice\0{PASSWORD}".encode()).decode()
    c.no(f"AUTHENTICATE PLAIN {ir}", "PRIVACYREQUIRED")
    # plaintext pipelined behind STARTTLS must be ignored
    tag = c.tag()
    c.send(f"{tag} STARTTLS\r\nx1 LOGIN alice \"{PASSWORD}\"\r\n")
    u, t = c.collect(tag)
    assert t.startswith(f"{tag} OK".encode())
    c.buf = b""
    c.starttls(remote.cafile)
    u, t = c.ok("CAPABILITY")
    after = set(one(u, rb"^\* CAPABILITY").split()[2:])
    assert b"STARTTLS" not in after and b"LOGINDISABLED" not in after and b"AUTH=PLAIN" in after
    c.ok(f'LOGIN alice "{PASSWORD}"')
    c.bad("STARTTLS")
    c.ok("SELECT INBOX")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_implicit_tls(remote):
    ctx = ssl.create_default_context(cafile=remote.cafile)
    m = imaplib.IMAP4_SSL("127.0.0.1", remote.tls_port, ssl_context=ctx)
    assert "AUTH=PLAIN" in m.capabilities and "STARTTLS" not in m.capabilities
    assert m.login("alice", PASSWORD)[0] == "OK"
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    # TLS 1.1 is refused (1.2 minimum)
    ctx11 = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx11.check_hostname = False
    ctx11.verify_mode = ssl.CERT_NONE
    try:
        ctx11.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx11.minimum_version = ssl.TLSVersion.TLSv1
    except (ValueError, AttributeError):
        pytest.skip("this Python cannot offer TLS 1.1")
    with socket.create_connection(("127.0.0.1", remote.tls_port), timeout=10) as s:
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):
            with ctx11.wrap_socket(s) as t:
                t.recv(100)


def test_sigquit_says_bye(tmp_path):
    s = ImapServer(tmp_path)
    try:
        c = s.client()
        c.ok("SELECT INBOX")
        s.proc.send(signal.SIGQUIT)
        ln = c.line(timeout=10)
        assert ln.startswith(b"* BYE"), ln
        assert c.closed()
        s.proc.wait(timeout=20)
    finally:
        s.stop()


def test_large_message_over_tls(remote):
    """A 3 MB message in and out over implicit TLS, exact bytes, partial too."""
    c = Raw(remote.tls_port, tls=True, cafile=remote.cafile)
    c.ok(f'LOGIN alice "{PASSWORD}"')
    body = b"".join(b"%07d 0123456789abcdefghijklmnopqrstuvwxyz\r\n" % i for i in range(64000))
    msg = b"From: big@example.com\r\nSubject: big\r\n\r\n" + body
    tag = c.tag()
    c.send(f"{tag} APPEND INBOX {{{len(msg)}}}\r\n")
    assert c.rawline().startswith(b"+ ")
    c.send(msg + b"\r\n")
    u, t = c.collect(tag)
    assert b"APPENDUID" in t, t
    c.ok("SELECT INBOX")
    u, t = c.ok("UID FETCH * (RFC822.SIZE BODY.PEEK[] BODY.PEEK[TEXT]<1000000.48>)", timeout=60)
    r = u[0]
    assert b"RFC822.SIZE %d" % len(msg) in r
    i = r.index(b"BODY[] {%d}\r\n" % len(msg))
    start = i + len(b"BODY[] {%d}\r\n" % len(msg))
    assert r[start:start + len(msg)] == msg
    assert r.endswith(b"BODY[TEXT]<1000000> {48}\r\n" + body[1000000:1000048] + b")")
