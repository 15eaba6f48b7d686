"""imapd: MULTIAPPEND (RFC 3502), CATENATE (RFC 4469) and BINARY (RFC 3516),
with exact responses: several messages in one APPEND stored all or nothing
with an APPENDUID uid set; a message built from TEXT literals and URLs of
the user's own messages, BADURL for anything else; FETCH BINARY[part] and
BINARY.SIZE with the transfer encoding undone, UNKNOWN-CTE; literal8
APPEND.  A pair test: a MULTIAPPEND on the master reaches the replica."""
import base64
import re

import pytest

from conftest import free_ports, wait_for
from imap_helpers import ImapServer, Raw, literal
from repl_util import SLOW, converged, pair

M1 = literal("From: a@example.com\nSubject: one\n\nfirst body\n")
M2 = literal("From: b@example.com\nSubject: two\n\nsecond body\n")
M3 = literal("From: c@example.com\nSubject: three\n\nthird body\n")

SRC = literal("""From: src@example.com
Subject: source
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="B"

--B
Content-Type: text/plain

part one text
--B
Content-Type: text/plain

part two text
--B--
""")

BLOB = bytes(range(256)) * 3          # every octet value, NULs included
QP_TEXT = "Grüße aus München = 100%\r\n".encode("utf-8")
BIN_MSG = (literal("""From: bin@example.com
Subject: binary parts
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="Z"

--Z
Content-Type: application/octet-stream
Content-Transfer-Encoding: base64

""") + base64.encodebytes(BLOB).replace(b"\n", b"\r\n") + literal("""--Z
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: Quoted-Printable

Gr=C3=BC=C3=9Fe aus M=C3=BCnchen =3D 100%=
=0D=0A
--Z
Content-Type: application/octet-stream
Content-Transfer-Encoding: x-uuencode

begin 644 x
#86)C
`
end
--Z
Content-Type: text/plain
Content-Transfer-Encoding: 7bit

plain seven bit
--Z--
"""))


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ImapServer(tmp_path_factory.mktemp("appendext"))
    yield s
    s.stop()


@pytest.fixture
def c(srv, request):
    cl = srv.client()
    cl.box = request.node.name.replace("_", "")[:40]
    cl.ok(f"CREATE {cl.box}")
    yield cl
    cl.close()


def uidvalidity(c, box):
    u, _ = c.ok(f"STATUS {box} (UIDVALIDITY MESSAGES)")
    return int(re.search(rb"UIDVALIDITY (\d+)", u[0]).group(1))


def messages(c, box):
    u, _ = c.ok(f"STATUS {box} (MESSAGES)")
    return int(re.search(rb"MESSAGES (\d+)", u[0]).group(1))


def body(c, box, uid):
    c.ok(f"EXAMINE {box}")
    u, _ = c.ok(f"UID FETCH {uid} BODY.PEEK[]")
    m = re.match(rb"\* \d+ FETCH \(UID \d+ BODY\[\] \{(\d+)\}\r\n", u[0])
    n = int(m.group(1))
    return u[0][m.end():m.end() + n]


def lit(data):
    return f"{{{len(data)}+}}\r\n".encode() + data


def test_capability(srv):
    c = srv.client()
    u, _ = c.ok("CAPABILITY")
    caps = u[0].split()
    for w in (b"MULTIAPPEND", b"CATENATE", b"BINARY"):
        assert w in caps, u


def test_multiappend_three(c):
    uv = uidvalidity(c, c.box)
    cmd = (f"APPEND {c.box} (\\Seen) ".encode() + lit(M1) + b' (\\Flagged $Work) "01-Jan-2024 12:00:00 +0000" '
           + lit(M2) + b" " + lit(M3))
    u, t = c.cmd(cmd)
    assert t == f"t{c.n} OK [APPENDUID {uv} 1:3] APPEND completed".encode(), (u, t)
    c.ok(f"EXAMINE {c.box}")
    u, _ = c.ok("FETCH 1:3 (FLAGS INTERNALDATE)")
    assert u[0] == b'* 1 FETCH (FLAGS (\\Seen \\Recent) INTERNALDATE ' + u[0].split(b"INTERNALDATE ")[1]
    assert u[1] == b'* 2 FETCH (FLAGS (\\Flagged \\Recent $Work) INTERNALDATE "01-Jan-2024 12:00:00 +0000")'
    assert u[2].startswith(b"* 3 FETCH (FLAGS (\\Recent) ")
    assert [body(c, c.box, i) for i in (1, 2, 3)] == [M1, M2, M3]


def test_multiappend_synchronising_literals(c):
    """A client without LITERAL+: a '+' for each message's literal."""
    uv = uidvalidity(c, c.box)
    c.send(f"m1 APPEND {c.box} {{{len(M1)}}}\r\n")
    assert c.rawline().startswith(b"+ ")
    c.send(M1 + f" {{{len(M2)}}}\r\n".encode())
    assert c.rawline().startswith(b"+ ")
    c.send(M2 + b"\r\n")
    u, t = c.collect("m1")
    assert t == f"m1 OK [APPENDUID {uv} 1:2] APPEND completed".encode()
    assert [body(c, c.box, i) for i in (1, 2)] == [M1, M2]


def test_multiappend_one_bad_message_stores_nothing(c):
    _, t = c.cmd(f"APPEND {c.box} ".encode() + lit(M1) + b" " + lit(b"") + b" " + lit(M3))
    assert t == f"t{c.n} NO [CANNOT] Empty message".encode()
    _, t = c.cmd(f"APPEND {c.box} ".encode() + lit(M1) + b" (\\Bogus) " + lit(M2) + b" " + lit(M3))
    assert t.startswith(f"t{c.n} BAD Invalid flags".encode()), t
    _, t = c.cmd(f"APPEND {c.box} ".encode() + lit(M1) + b' "31-Feb-2024 99:00:00 +0000" ' + lit(M2))
    assert t.startswith(f"t{c.n} BAD ".encode()), t
    _, t = c.cmd(f"APPEND {c.box} ".encode() + lit(M1) + b" CATENATE (URL \"/nobox;UID=1\")")
    assert t == f"t{c.n} NO [BADURL /nobox;UID=1] CATENATE URL not usable".encode()
    assert messages(c, c.box) == 0
    # uids were not used up either: the next append gets uid 1
    uv = uidvalidity(c, c.box)
    _, t = c.cmd(f"APPEND {c.box} ".encode() + lit(M1) + b" " + lit(M2))
    assert t == f"t{c.n} OK [APPENDUID {uv} 1:2] APPEND completed".encode()


def test_multiappend_large_messages_streamed(c):
    """Two messages over 1 MiB each go to files as they come; both land intact."""
    big1 = literal("Subject: big1\n\n") + b"a" * (1200 * 1024) + b"\r\n"
    big2 = literal("Subject: big2\n\n") + b"b" * (1300 * 1024) + b"\r\n"
    uv = uidvalidity(c, c.box)
    _, t = c.cmd(f"APPEND {c.box} ".encode() + lit(big1) + b" " + lit(M1) + b" " + lit(big2),
                 timeout=60 * SLOW)
    assert t == f"t{c.n} OK [APPENDUID {uv} 1:3] APPEND completed".encode()
    assert [body(c, c.box, i) for i in (1, 2, 3)] == [big1, M1, big2]


def test_catenate_text_and_urls(c):
    src = c.box + "src"
    c.ok(f"CREATE {src}")
    suv = uidvalidity(c, src)
    _, t = c.cmd(f"APPEND {src} ".encode() + lit(SRC))
    assert t == f"t{c.n} OK [APPENDUID {suv} 1] APPEND completed".encode()
    uv = uidvalidity(c, c.box)
    head = literal("From: me@example.com\nSubject: forwarded\n\n")
    mid = literal("\n-- the whole source follows --\n")
    cmd = (f"APPEND {c.box} (\\Draft) CATENATE (TEXT ".encode() + lit(head)
           + f' URL "/{src};UIDVALIDITY={suv}/;UID=1/;SECTION=2" TEXT '.encode() + lit(mid)
           + f" URL /{src}/;UID=1".encode()
           + f' URL "/{src};UIDVALIDITY={suv}/;UID=1/;section=HEADER.FIELDS%20(Subject)")'.encode())
    _, t = c.cmd(cmd)
    assert t == f"t{c.n} OK [APPENDUID {uv} 1] APPEND completed".encode(), t
    want = head + b"part two text" + mid + SRC + b"Subject: source\r\n\r\n"
    assert body(c, c.box, 1) == want
    # CATENATE as one message of a MULTIAPPEND, and a PARTIAL
    cmd = (f"APPEND {c.box} ".encode() + lit(M1) + b" CATENATE (TEXT " + lit(head)
           + f" URL /{src};UIDVALIDITY={suv}/;UID=1/;SECTION=1/;PARTIAL=5.3)".encode())
    _, t = c.cmd(cmd)
    assert t == f"t{c.n} OK [APPENDUID {uv} 2:3] APPEND completed".encode(), t
    assert body(c, c.box, 2) == M1
    assert body(c, c.box, 3) == head + b"one"


def test_catenate_badurl(c, srv):
    src = c.box + "src"
    c.ok(f"CREATE {src}")
    suv = uidvalidity(c, src)
    c.cmd(f"APPEND {src} ".encode() + lit(SRC))
    bad = [
        f"imap://bob@otherhost/INBOX;UIDVALIDITY={suv}/;UID=1",     # another server/user
        f"imap://alice@localhost/{src};UIDVALIDITY={suv}/;UID=1",   # absolute: not taken
        f"/{src};UIDVALIDITY={suv + 1}/;UID=1",                      # wrong UIDVALIDITY
        f"/{src};UIDVALIDITY={suv}/;UID=7",                          # no such message
        f"/{src};UIDVALIDITY={suv}/;UID=1/;SECTION=9",               # no such part
        f"/{src};UIDVALIDITY={suv}/;UID=1/;URLAUTH=anonymous",       # URLAUTH
        f"/nosuchbox;UIDVALIDITY={suv}/;UID=1",
    ]
    for url in bad:
        _, t = c.cmd(f"APPEND {c.box} CATENATE (TEXT ".encode() + lit(b"x: y\r\n\r\n")
                     + f' URL "{url}")'.encode())
        assert t == f"t{c.n} NO [BADURL {url}] CATENATE URL not usable".encode(), (url, t)
    # bob's messages are not reachable as alice: his own INBOX uid 1 is alice's INBOX
    b = srv.client(user="bob")
    b.cmd(b"APPEND INBOX " + lit(M2))
    _, t = c.cmd(f"APPEND {c.box} CATENATE (URL \"/INBOX/;UID=1\")".encode())
    assert t == f"t{c.n} NO [BADURL /INBOX/;UID=1] CATENATE URL not usable".encode(), t
    assert messages(c, c.box) == 0


def fetch_items(line):
    """The FETCH response as bytes, literals inline (as Raw gives it)."""
    return line


def test_binary_fetch(c):
    _, t = c.cmd(f"APPEND {c.box} ".encode() + lit(BIN_MSG))
    assert b" OK " in t
    c.ok(f"SELECT {c.box}")
    u, t = c.ok("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1])")
    assert u == [b"* 1 FETCH (BINARY[1] ~{%d}\r\n" % len(BLOB) + BLOB
                 + b" BINARY.SIZE[1] %d)" % len(BLOB)]
    u, t = c.ok("FETCH 1 (BINARY.SIZE[2] BINARY.PEEK[2])")
    assert u == [b"* 1 FETCH (BINARY.SIZE[2] %d BINARY[2] {%d}\r\n" % (len(QP_TEXT), len(QP_TEXT))
                 + QP_TEXT + b")"]
    u, t = c.ok("FETCH 1 (BINARY.PEEK[1]<256.4> BINARY.SIZE[4] BINARY.PEEK[4])")
    assert u == [b"* 1 FETCH (BINARY[1]<256> ~{4}\r\n\x00\x01\x02\x03 BINARY.SIZE[4] 15 "
                 b"BINARY[4] {15}\r\nplain seven bit)"]
    # non-PEEK sets \Seen and says so
    u, t = c.ok("FETCH 1 (BINARY[2]<0.5>)")
    assert u == [b"* 1 FETCH (BINARY[2]<0> {5}\r\nGr\xc3\xbc\xc3 FLAGS (\\Seen \\Recent))"]
    # x-uuencode cannot be undone
    u, t = c.cmd("FETCH 1 (BINARY.PEEK[3])")
    assert (u, t) == ([], f"t{c.n} NO [UNKNOWN-CTE] Cannot decode the content transfer encoding".encode())
    u, t = c.cmd("FETCH 1 BINARY.SIZE[3]")
    assert t.startswith(f"t{c.n} NO [UNKNOWN-CTE] ".encode())
    # a single-part message: part 1 is its body, decoded by its own header
    one = literal("Subject: single\nContent-Transfer-Encoding: base64\n\nAAECAw==\n")
    c.cmd(f"APPEND {c.box} ".encode() + lit(one))
    c.ok("NOOP")
    u, t = c.ok("FETCH 2 (BINARY.SIZE[1] BINARY.PEEK[1] BINARY.SIZE[])")
    assert u == [b"* 2 FETCH (BINARY.SIZE[1] 4 BINARY[1] ~{4}\r\n\x00\x01\x02\x03 BINARY.SIZE[] %d)"
                 % len(one)]
    # grammar: a BINARY section is part numbers only
    c.bad("FETCH 1 BINARY[1.TEXT]")
    c.bad("FETCH 1 BINARY.SIZE[1]<0.5>")


def test_literal8_append(c):
    msg = literal("Subject: nul\nContent-Transfer-Encoding: binary\n\n") + b"a\x00b\x00c\r\n"
    uv = uidvalidity(c, c.box)
    _, t = c.cmd(f"APPEND {c.box} ~{{{len(msg)}+}}\r\n".encode() + msg)
    assert t == f"t{c.n} OK [APPENDUID {uv} 1] APPEND completed".encode()
    # synchronising literal8, then a MULTIAPPEND mixing both kinds
    c.send(f"s1 APPEND {c.box} ~{{{len(msg)}}}\r\n")
    assert c.rawline().startswith(b"+ ")
    c.send(msg + b" " + lit(M1) + b"\r\n")
    _, t = c.collect("s1")
    assert t == f"s1 OK [APPENDUID {uv} 2:3] APPEND completed".encode()
    c.ok(f"EXAMINE {c.box}")
    u, _ = c.ok("FETCH 1:2 BINARY.PEEK[]")
    assert u == [b"* %d FETCH (BINARY[] ~{%d}\r\n" % (i, len(msg)) + msg + b")" for i in (1, 2)]
    u, _ = c.ok("FETCH 1 BINARY.PEEK[1]")
    assert u == [b"* 1 FETCH (BINARY[1] ~{7}\r\na\x00b\x00c\r\n)"]


def test_multiappend_refused_on_replica(tmp_path):
    s = ImapServer(tmp_path)
    try:
        c = s.client()
        c.ok("CREATE ro")
        c.close()
        s.set_role("replica")
        c = s.client()
        _, t = c.cmd(b"APPEND ro " + lit(M1) + b" " + lit(M2))
        assert t.startswith(f"t{c.n} NO [READ-ONLY] ".encode()), t
        _, t = c.cmd(b"APPEND ro CATENATE (TEXT " + lit(M1) + b")")
        assert t.startswith(f"t{c.n} NO [READ-ONLY] ".encode()), t
        assert messages(c, "ro") == 0
    finally:
        s.stop()


def test_multiappend_reaches_replica(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path, start=False)
    mport = free_ports(2)
    rport = mport + 1
    m.add_services(f'  imap cmd="imapd" listen="127.0.0.1:{mport}"', section="SERVICES")
    r.add_services(f'  imap cmd="imapd" listen="127.0.0.1:{rport}"', section="SERVICES")
    r.start()
    m.start()
    m.drv("useradd ivan pw-i\n")
    converged(m, r)
    mc = Raw(mport, timeout=20 * SLOW)
    mc.ok('LOGIN ivan "pw-i"')
    _, t = mc.cmd(b"APPEND INBOX " + lit(M1) + b" (\\Seen) " + lit(M2))
    assert re.fullmatch(rb"t\d+ OK \[APPENDUID \d+ 1:2\] APPEND completed", t), t
    _, t = mc.cmd(b"APPEND INBOX CATENATE (TEXT " + lit(literal("Subject: cat\n\n"))
                  + b" URL \"/INBOX/;UID=1/;SECTION=TEXT\")")
    assert re.fullmatch(rb"t\d+ OK \[APPENDUID \d+ 3\] APPEND completed", t), t
    converged(m, r)
    rc = Raw(rport, timeout=20 * SLOW)
    rc.ok('LOGIN ivan "pw-i"')
    wait_for(lambda: messages(rc, "INBOX") == 3, timeout=20 * SLOW, what="3 messages on the replica")
    assert [body(rc, "INBOX", i) for i in (1, 2, 3)] == [
        M1, M2, literal("Subject: cat\n\n") + b"first body\r\n"]
    # and the replica refuses to take one itself
    _, t = rc.cmd(b"APPEND INBOX " + lit(M1) + b" " + lit(M2))
    assert b" NO [READ-ONLY] " in t, t


def test_multiappend_not_confirmed_is_undone_whole(procs, tmp_path):
    """Strict semisync with a replica that confirms nothing: every message
    of the MULTIAPPEND is taken back and the answer is NO [UNAVAILABLE]."""
    import signal
    from test_replication_strict import seed, strict_pair
    m, r = strict_pair(procs, tmp_path, timeout="500ms")
    seed(m, r)
    r.stop_group(signal.SIGSTOP)
    try:
        c = Raw(m.imap_port, timeout=30 * SLOW)
        c.ok('LOGIN ann "pw"')
        before = messages(c, "INBOX")
        _, t = c.cmd(b"APPEND INBOX " + lit(M1) + b" " + lit(M2) + b" " + lit(M3))
        assert t.startswith(f"t{c.n} NO [UNAVAILABLE] Not stored: ".encode()), t
        assert messages(c, "INBOX") == before
        assert "append not confirmed, undone user=ann uid=4 count=3" in m.log(), m.log()[-3000:]
    finally:
        r.stop_group(signal.SIGCONT)


def test_multiappend_many_messages_under_small_appendlimit(tmp_path):
    """Each message within the APPENDLIMIT, all of them far over it and
    over imap_max_line: they go to files, none is refused."""
    s = ImapServer(tmp_path, conf_extra="maxmessagesize: 10k\nimap_max_line: 16k")
    try:
        c = s.client()
        c.ok("CREATE many")
        uv = uidvalidity(c, "many")
        msgs = [literal(f"Subject: m{i}\n\n") + b"x" * 5000 + b"\r\n" for i in range(30)]
        _, t = c.cmd(b"APPEND many " + b" ".join(lit(m) for m in msgs))
        assert t == f"t{c.n} OK [APPENDUID {uv} 1:30] APPEND completed".encode(), t
        assert [body(c, "many", i) for i in (1, 17, 30)] == [msgs[0], msgs[16], msgs[29]]
        # one over the limit still refuses the whole command
        _, t = c.cmd(b"APPEND many " + lit(msgs[0]) + b" " + lit(b"y" * 11000))
        assert t == f"t{c.n} NO [TOOBIG] Message too large".encode(), t
        assert messages(c, "many") == 30
    finally:
        s.stop()
