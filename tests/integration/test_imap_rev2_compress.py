"""imapd: COMPRESS=DEFLATE (RFC 4978) and IMAP4rev2 (RFC 9051) beside
IMAP4rev1.

COMPRESS is driven by a client of our own on Python's zlib (raw DEFLATE,
wbits=-15, a sync flush after every command): commands and responses
round-trip, the bytes on the wire are not the plaintext, a large FETCH and
a large APPEND (streamed to a file by imapd) come through exactly, IDLE
reports news at once (the server flushes its compressor at every
response), commands pipelined right behind COMPRESS are read as
compressed, a second COMPRESS is NO [COMPRESSIONACTIVE], and all of it
over implicit TLS and STARTTLS too.  IMAP4rev2: advertised, enabled with
ENABLE, then no RECENT and no \\Recent, SEARCH answered with ESEARCH,
SELECT gives the mailbox's LIST line, mailbox names in UTF-8; an
IMAP4rev1 session beside it keeps the old answers."""
import re
import socket
import time
import zlib

import pytest

from imap_helpers import PASSWORD, ImapServer, Raw, append, literal, one
from repl_util import SLOW, converged, ctl, pair


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ImapServer(tmp_path_factory.mktemp("imaprev2"))
    yield s
    s.stop()


class ZRaw(Raw):
    """Raw with a DEFLATE layer once compress() succeeded; .wire_in counts
    the compressed bytes received, .plain_in what they inflated to."""

    zin = None
    zout = None
    wire_in = 0
    plain_in = 0

    def compress(self):
        u, t = self.cmd("COMPRESS DEFLATE")
        assert u == [] and t == f"t{self.n} OK DEFLATE active".encode(), (u, t)
        self._start(self.buf)

    def _start(self, rest):
        self.zin = zlib.decompressobj(wbits=-15)
        self.zout = zlib.compressobj(wbits=-15)
        self.buf = self.zin.decompress(rest)

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        if self.zout is not None:
            data = self.zout.compress(data) + self.zout.flush(zlib.Z_SYNC_FLUSH)
        self.s.sendall(data)

    def _fill(self, timeout):
        if self.zin is None:
            return Raw._fill(self, timeout)
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no data from server; have {self.buf[:200]!r}")
            self.s.settimeout(left)
            d = self.s.recv(65536)
            if not d:
                raise EOFError(f"connection closed; have {self.buf[:200]!r}")
            self.wire_in += len(d)
            plain = self.zin.decompress(d)
            self.plain_in += len(plain)
            self.buf += plain
            if plain:
                return


def zclient(srv, port=None, **kw):
    c = ZRaw(port or srv.port, **kw)
    c.ok(f'LOGIN alice "{PASSWORD}"')
    return c


def caps(line):
    return set(re.search(rb"CAPABILITY ([^\]]*)", line).group(1).split())


def test_compress_round_trip(srv):
    c = zclient(srv)
    u, _ = c.ok("CAPABILITY")
    assert b"COMPRESS=DEFLATE" in caps(u[0])
    c.compress()
    u, t = c.cmd("CAPABILITY")
    assert t == b"t4 OK CAPABILITY completed"
    assert b"COMPRESS=DEFLATE" not in caps(u[0]) and b"IMAP4rev1" in caps(u[0])
    # what came over the wire was compressed, not the plaintext
    assert c.wire_in > 0 and c.plain_in > 0
    u, t = c.cmd("COMPRESS DEFLATE")
    assert u == [] and t == b"t5 NO [COMPRESSIONACTIVE] DEFLATE is already active"
    c.ok("CREATE Zbox")
    u, t = c.cmd("SELECT Zbox")
    assert t == b"t7 OK [READ-WRITE] SELECT completed" and b"* 0 EXISTS" in u
    u, t = c.cmd("LOGOUT")
    assert u == [b"* BYE Castor IMAP server logging out"] and t == b"t8 OK LOGOUT completed"


def test_compress_before_login_and_unknown_mechanism(srv):
    c = ZRaw(srv.port)
    u, t = c.cmd("COMPRESS DEFLATE")
    assert t == b"t1 BAD Please log in first"
    c.ok(f'LOGIN alice "{PASSWORD}"')
    u, t = c.cmd("COMPRESS LZW")
    assert t == b"t3 NO [CANNOT] Unknown compression mechanism"
    c.bad("COMPRESS")
    c.compress()
    c.ok("NOOP")


def test_large_append_and_fetch_over_compression(srv):
    c = zclient(srv)
    c.ok("CREATE Big")
    c.compress()
    # 2.5 MB: above the 1 MiB at which imapd streams an APPEND to a file
    body = b"".join(b"%07d abcdefghijklmnopqrstuvwxyz %08x\r\n" % (i, i * 2654435761 % 2**32)
                    for i in range(60000))
    msg = b"From: big@example.com\r\nSubject: big\r\n\r\n" + body
    tag = c.tag()
    c.send(f"{tag} APPEND Big {{{len(msg)}}}\r\n")
    assert c.rawline().startswith(b"+ ")
    c.send(msg + b"\r\n")
    u, t = c.collect(tag, timeout=60 * SLOW)
    assert re.match(rb"t\d+ OK \[APPENDUID \d+ 1\] APPEND completed", t), t
    # and some small ones, LITERAL+
    for i in range(20):
        append(c, "Big", f"From: x{i}@example.com\nSubject: small {i}\n\nbody {i}\n")
    c.ok("SELECT Big")
    u, t = c.cmd("UID FETCH 1 BODY.PEEK[]", timeout=60 * SLOW)
    assert t.endswith(b"OK UID FETCH completed"), t
    got = u[0]
    head = b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % len(msg)
    assert got.startswith(head) and got[len(head):len(head) + len(msg)] == msg
    assert c.wire_in < c.plain_in / 3, (c.wire_in, c.plain_in)
    u, t = c.cmd("FETCH 1:* (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert len(u) == 21 and t.endswith(b"OK FETCH completed")
    assert u[20] == (b"* 21 FETCH (UID 21 RFC822.SIZE %d BODY[HEADER.FIELDS (SUBJECT)] {21}"
                     b"\r\nSubject: small 19\r\n\r\n)" % len(literal(
        "From: x19@example.com\nSubject: small 19\n\nbody 19\n")))


def test_idle_over_compression(srv):
    """IDLE's news arrive at once: the server flushes its compressor."""
    c = zclient(srv)
    c.ok("CREATE Idlebox")
    c.compress()
    c.ok("SELECT Idlebox")
    tag = c.tag()
    c.send(f"{tag} IDLE\r\n")
    assert c.rawline().startswith(b"+ ")
    other = srv.client()
    append(other, "Idlebox", "From: a@example.com\nSubject: news\n\nnews\n")
    assert c.rawline(timeout=10 * SLOW) == b"* 1 EXISTS"
    c.send("DONE\r\n")
    u, t = c.collect(tag)
    assert t == f"{tag} OK IDLE terminated".encode()
    other.ok("LOGOUT")


def test_pipelined_behind_compress(srv):
    """Bytes the client sends right behind COMPRESS are compressed ones."""
    c = zclient(srv)
    zout = zlib.compressobj(wbits=-15)
    tail = zout.compress(b"p2 NOOP\r\n") + zout.flush(zlib.Z_SYNC_FLUSH)
    c.s.sendall(b"p1 COMPRESS DEFLATE\r\n" + tail)
    assert c.rawline() == b"p1 OK DEFLATE active"
    rest, c.buf = c.buf, b""
    c._start(rest)
    c.zout = zout
    assert c.rawline() == b"p2 OK NOOP completed"
    c.ok("NOOP")


def test_corrupt_stream_ends_the_connection(srv):
    c = zclient(srv)
    c.compress()
    c.s.sendall(b"\xff\xff\xff\xff not deflate at all \r\n")
    assert c.closed(timeout=10 * SLOW)


@pytest.mark.parametrize("how", ["imaps", "starttls"])
def test_compress_inside_tls(srv, how):
    if how == "imaps":
        c = ZRaw(srv.tls_port, tls=True, cafile=srv.cafile)
    else:
        c = ZRaw(srv.port)
        c.ok("STARTTLS")
        c.starttls(srv.cafile)
    c.ok(f'LOGIN alice "{PASSWORD}"')
    c.compress()
    c.ok("CREATE Tls" + how)
    msg = literal("From: t@example.com\nSubject: tls " + how + "\n\n" + "x" * 100000 + "\n")
    append(c, "Tls" + how, msg)
    c.ok("SELECT Tls" + how)
    u, t = c.cmd("FETCH 1 BODY.PEEK[]")
    assert u[0] == b"* 1 FETCH (BODY[] {%d}\r\n" % len(msg) + msg + b")"
    u, t = c.cmd("COMPRESS DEFLATE")
    assert t.endswith(b"NO [COMPRESSIONACTIVE] DEFLATE is already active")
    c.ok("LOGOUT")


# ---------------------------------------------------------------- IMAP4rev2


def test_pair_master_writes_replica_reads_compressed_rev2(procs, tmp_path):
    """On a pair: an APPEND and a STORE made over COMPRESS on the master
    replicate; the read-only replica serves COMPRESS and IMAP4rev2."""
    m, (r,) = pair(procs, tmp_path, start=False)
    for srvr in (m, r):
        srvr.add_services(f'  imap cmd="imapd" listen="127.0.0.1:{srvr.base}" prefork=1',
                          section="SERVICES")
    r.start()
    m.start()
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    ctl(m.conf, "user", "add", "alice", "--password-file", pw)
    c = zclient(None, port=m.base, timeout=20 * SLOW)
    c.compress()
    msg = literal("From: p@example.com\nSubject: pair\n\n" + "pair " * 5000 + "\n")
    append(c, "INBOX", msg)
    c.ok("SELECT INBOX")
    c.ok("STORE 1 +FLAGS (\\Flagged)")
    c.ok("LOGOUT")
    converged(m, r)
    c = zclient(None, port=r.base, timeout=20 * SLOW)
    c.compress()
    c.ok("ENABLE IMAP4rev2")
    u, t = c.cmd("SELECT INBOX")
    assert b"[READ-ONLY]" in t and not [l for l in u if b"RECENT" in l], (u, t)
    u, t = c.cmd("SEARCH FLAGGED")
    assert u == [f'* ESEARCH (TAG "t{c.n}") ALL 1'.encode()]
    u, t = c.cmd("FETCH 1 (FLAGS BODY.PEEK[])")
    assert u[0] == b"* 1 FETCH (FLAGS (\\Flagged) BODY[] {%d}\r\n" % len(msg) + msg + b")"
    c.ok("LOGOUT")


def test_rev2_advertised_and_enabled(srv):
    c = Raw(srv.port)
    assert b"IMAP4rev2" in caps(c.greeting) and b"IMAP4rev1" in caps(c.greeting)
    c.ok(f'LOGIN alice "{PASSWORD}"')
    u, t = c.cmd("ENABLE IMAP4rev2")
    assert u == [b"* ENABLED IMAP4rev2"] and t == b"t2 OK ENABLE completed"
    u, t = c.cmd("ENABLE IMAP4rev2")
    assert u == [b"* ENABLED"]


def test_rev2_select_search_fetch(srv):
    d = srv.client()
    d.ok('CREATE "Rev2"')
    append(d, "Rev2", "From: a@example.com\nSubject: one\n\none\n")
    append(d, "Rev2", "From: b@example.com\nSubject: two\n\ntwo\n", flags="\\Seen")
    d.ok("LOGOUT")

    c = srv.client()
    c.ok("ENABLE IMAP4rev2")
    u, t = c.cmd("SELECT Rev2")
    assert t == b"t3 OK [READ-WRITE] SELECT completed"
    assert not [l for l in u if b"RECENT" in l], u
    assert one(u, rb"^\* LIST ") == b'* LIST (\\HasNoChildren) "/" "Rev2"'
    assert b"* 2 EXISTS" in u
    # the messages are this session's recent ones, but rev2 has no \Recent
    u, t = c.cmd("FETCH 1:2 FLAGS")
    assert u == [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS (\\Seen))"]
    u, t = c.cmd("SEARCH ALL")
    assert u == [b'* ESEARCH (TAG "t5") ALL 1:2'] and t == b"t5 OK SEARCH completed (2 matches)"
    u, t = c.cmd("UID SEARCH UNSEEN")
    assert u == [b'* ESEARCH (TAG "t6") UID ALL 1']
    u, t = c.cmd("SEARCH SUBJECT nothing-like-this")
    assert u == [b'* ESEARCH (TAG "t7")']
    u, t = c.cmd("SEARCH RETURN (COUNT) ALL")
    assert u == [b'* ESEARCH (TAG "t8") COUNT 2']
    # news while selected: EXISTS, no RECENT
    other = srv.client()
    append(other, "Rev2", "From: c@example.com\nSubject: three\n\nthree\n")
    other.ok("LOGOUT")
    u, t = c.cmd("NOOP")
    assert u == [b"* 3 EXISTS"], u
    c.ok("LOGOUT")


def test_rev1_session_keeps_rev1_answers(srv):
    d = srv.client()
    d.ok('CREATE "Rev1"')
    append(d, "Rev1", "From: a@example.com\nSubject: one\n\none\n")
    d.ok("LOGOUT")
    c = srv.client()
    u, t = c.cmd("SELECT Rev1")
    assert b"* 1 RECENT" in u and not [l for l in u if l.startswith(b"* LIST")]
    u, t = c.cmd("SEARCH ALL")
    assert u == [b"* SEARCH 1"]
    u, t = c.cmd("FETCH 1 FLAGS")
    assert u == [b"* 1 FETCH (FLAGS (\\Recent))"]


def test_rev2_mailbox_names_in_utf8(srv):
    cafe, menu = "Caf\u00e9".encode(), "Caf\u00e9/Men\u00fc".encode()
    c = srv.client()
    c.ok("ENABLE IMAP4rev2")
    c.ok(b'CREATE "' + menu + b'"')
    u, t = c.cmd('LIST "" "Caf*"')
    assert u == [b'* LIST (\\HasChildren) "/" {5}\r\n' + cafe,
                 b'* LIST (\\HasNoChildren) "/" {11}\r\n' + menu], u
    u, t = c.cmd(b'SELECT "' + menu + b'"')
    assert one(u, rb"^\* LIST ") == b'* LIST (\\HasNoChildren) "/" {11}\r\n' + menu
    c.ok("LOGOUT")
    # the same names as an IMAP4rev1 client sees them: modified UTF-7
    r = srv.client()
    u, t = r.cmd('LIST "" "Caf*"')
    assert u == [b'* LIST (\\HasChildren) "/" "Caf&AOk-"',
                 b'* LIST (\\HasNoChildren) "/" "Caf&AOk-/Men&APw-"'], u
