"""imapd: message commands - APPEND (APPENDUID, TRYCREATE), SELECT/EXAMINE and
their response codes, FETCH (every item, BODY[section]<partial> as exact
bytes, \\Seen by non-PEEK fetches), STORE, COPY (COPYUID), MOVE, EXPUNGE,
UID EXPUNGE, CLOSE, UNSELECT, SEARCH (every RFC 3501 key, CHARSET, decoded
BODY/TEXT) and ESEARCH."""
import base64
import re

import pytest

from imap_helpers import ImapServer, append, find, literal, one

MULTI = literal("""From: "Ann Example" <ann@example.com>
To: Bob <bob@example.org>, carol@example.net
Cc: dave@example.com
Subject: =?UTF-8?B?w6lsw6h2ZQ==?= report
Date: Wed, 5 Feb 2025 14:30:00 +0100
Message-ID: <abc@example.com>
X-Folded: first
 second
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="XX"

preamble
--XX
Content-Type: text/plain; charset=iso-8859-1
Content-Transfer-Encoding: quoted-printable

Gr=FC=DFe aus M=FCnchen
--XX
Content-Type: text/html; charset=utf-8
Content-Transfer-Encoding: base64

PGI+QmFzZTY0IGjDqWxsbzwvYj4=
--XX
Content-Type: message/rfc822

From: inner@example.com
Subject: inner subject

inner body text
--XX--
""")

PLAIN = literal("""From: Zed <zed@example.com>
To: alice@example.com
Subject: plain one
Date: Mon, 1 Jan 2024 08:00:00 +0000

just some text, nothing more
""")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ImapServer(tmp_path_factory.mktemp("imapmsg"))
    yield s
    s.stop()


@pytest.fixture
def box(srv, request):
    """A fresh mailbox named after the test, with MULTI (uid 1, \\Flagged,
    internal date 3-Mar-2025) and PLAIN (uid 2, \\Seen $Work, 1-Jan-2024)."""
    c = srv.client()
    name = request.node.name.replace("_", "")[:40]
    c.ok(f"CREATE {name}")
    append(c, name, MULTI, flags="\\Flagged", date="03-Mar-2025 10:00:00 +0000")
    append(c, name, PLAIN, flags="\\Seen $Work", date="01-Jan-2024 12:00:00 +0200")
    return c, name


def fetch1(c, cmd):
    u, t = c.ok(cmd)
    assert len(u) == 1, u
    return u[0]


def section(resp, name):
    """The literal (or quoted) value of item `name` in a FETCH response."""
    i = resp.index(name.encode() + b" ")
    rest = resp[i + len(name) + 1:]
    m = re.match(rb"\{(\d+)\}\r\n", rest)
    if m:
        return rest[m.end():m.end() + int(m.group(1))]
    assert rest.startswith(b'""'), rest[:40]
    return b""


def test_append_and_select_codes(srv, box):
    c, name = box
    u, t = c.ok(f"SELECT {name}")
    assert t.startswith(b"t") and b"[READ-WRITE]" in t
    assert one(u, rb"^\* 2 EXISTS$")
    assert one(u, rb"^\* 2 RECENT$")
    assert one(u, rb"^\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft \$Work\)$")
    assert one(u, rb"^\* OK \[PERMANENTFLAGS \(.*\\\*\)\]")
    assert one(u, rb"^\* OK \[UNSEEN 1\]")
    uv = int(re.search(rb"\[UIDVALIDITY (\d+)\]", b"\n".join(u)).group(1))
    assert one(u, rb"^\* OK \[UIDNEXT 3\]")
    assert one(u, rb"^\* OK \[HIGHESTMODSEQ \d+\]")
    # a second session sees no \Recent any more; EXAMINE is read-only
    c2 = srv.client()
    u, t = c2.ok(f"EXAMINE {name}")
    assert b"[READ-ONLY]" in t and one(u, rb"^\* 0 RECENT$")
    assert one(u, rb"^\* OK \[PERMANENTFLAGS \(\)\]")
    c2.no("STORE 1 +FLAGS (\\Seen)", "READ-ONLY")
    c2.no("EXPUNGE", "READ-ONLY")
    # APPEND: APPENDUID, TRYCREATE, bad flags / date
    u, t = c.ok(b"APPEND %s {%d+}\r\n%s" % (name.encode(), len(PLAIN), PLAIN))
    assert re.search(rb"\[APPENDUID %d 3\]" % uv, t)
    assert one(u, rb"^\* 3 EXISTS$")       # our own append to the selected mailbox
    c.no(b"APPEND NoSuchBox {%d+}\r\n%s" % (len(PLAIN), PLAIN), "TRYCREATE")
    c.bad(b"APPEND %s (\\Bogus) {%d+}\r\n%s" % (name.encode(), len(PLAIN), PLAIN))
    c.bad(b'APPEND %s "32-Jan-2020 00:00:00 +0000" {%d+}\r\n%s' % (name.encode(), len(PLAIN), PLAIN))
    c.no(b"APPEND %s {0+}\r\n" % name.encode())
    u, t = c.ok("NOOP")
    assert u == []
    # SELECT of a missing mailbox leaves the session unselected
    c.no("SELECT NoSuchBox", "NONEXISTENT")
    c.bad("FETCH 1 FLAGS")


def test_fetch_items(srv, box):
    c, name = box
    c.ok(f"SELECT {name}")        # takes \Recent, which EXAMINE would show
    c.ok(f"EXAMINE {name}")
    r = fetch1(c, "FETCH 1 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE)")
    assert r.startswith(b"* 1 FETCH (UID 1 FLAGS (\\Flagged) ")
    assert b'INTERNALDATE "03-Mar-2025 10:00:00 +0000"' in r
    assert b"RFC822.SIZE %d" % len(MULTI) in r
    assert (b'ENVELOPE ("Wed, 5 Feb 2025 14:30:00 +0100" "=?UTF-8?B?w6lsw6h2ZQ==?= report" '
            b'(("Ann Example" NIL "ann" "example.com"))') in r
    assert b'"<abc@example.com>")' in r
    r = fetch1(c, "FETCH 2 INTERNALDATE")
    assert b'INTERNALDATE "01-Jan-2024 10:00:00 +0000"' in r   # stored in UTC
    r = fetch1(c, "FETCH 1 BODYSTRUCTURE")
    assert r.startswith(b'* 1 FETCH (BODYSTRUCTURE (("TEXT" "PLAIN" ("CHARSET" "iso-8859-1") NIL NIL '
                        b'"QUOTED-PRINTABLE" 23 0')
    assert b'"MESSAGE" "RFC822"' in r and b'"MIXED" ("BOUNDARY" "XX")' in r
    r = fetch1(c, "FETCH 1 BODY")
    assert r.startswith(b'* 1 FETCH (BODY (("TEXT" "PLAIN"') and b'"BOUNDARY"' not in r
    # macros
    r = fetch1(c, "FETCH 2 FAST")
    assert re.match(rb'^\* 2 FETCH \(FLAGS \(\\Seen \$Work\) INTERNALDATE "[^"]+" RFC822.SIZE \d+\)$', r)
    r = fetch1(c, "FETCH 2 ALL")
    assert b"ENVELOPE (" in r and b"BODY (" not in r
    r = fetch1(c, "FETCH 2 FULL")
    assert b"ENVELOPE (" in r and b"BODY (" in r
    # UID FETCH adds UID; sequence numbers out of range are BAD
    u, t = c.ok("UID FETCH 2 FLAGS")
    assert u == [b"* 2 FETCH (UID 2 FLAGS (\\Seen $Work))"]
    u, t = c.ok("UID FETCH 100:200 FLAGS")        # no such uids: nothing, OK
    assert u == []
    u, t = c.ok("UID FETCH 5:* FLAGS")           # n:* always includes the last
    assert u == [b"* 2 FETCH (UID 2 FLAGS (\\Seen $Work))"]
    c.bad("FETCH 3 FLAGS")
    c.bad("FETCH 1:5 FLAGS")


def test_fetch_sections_exact_bytes(srv, box):
    c, name = box
    c.ok(f"SELECT {name}")        # takes \Recent, which EXAMINE would show
    c.ok(f"EXAMINE {name}")
    r = fetch1(c, "FETCH 1 (BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT])")
    full = section(r, "BODY[]")
    assert full == MULTI
    hdr_end = MULTI.index(b"\r\n\r\n") + 4
    assert section(r, "BODY[HEADER]") == MULTI[:hdr_end]
    assert section(r, "BODY[TEXT]") == MULTI[hdr_end:]
    checks = {
        "BODY[1]": b"Gr=FC=DFe aus M=FCnchen",
        "BODY[1.MIME]": b"Content-Type: text/plain; charset=iso-8859-1\r\n"
                        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n",
        "BODY[2]": b"PGI+QmFzZTY0IGjDqWxsbzwvYj4=",
        "BODY[3.HEADER]": b"From: inner@example.com\r\nSubject: inner subject\r\n\r\n",
        "BODY[3.TEXT]": b"inner body text",
        "BODY[3.1]": b"inner body text",
        "BODY[4]": b"",
        "BODY[1.2]": b"",
    }
    for sec, want in checks.items():
        r = fetch1(c, f"FETCH 1 BODY.PEEK[{sec[5:-1]}]")
        assert section(r, sec) == want, (sec, r)
    r = fetch1(c, "FETCH 1 BODY.PEEK[HEADER.FIELDS (subject X-FOLDED nope)]")
    assert section(r, "BODY[HEADER.FIELDS (subject X-FOLDED nope)]") == \
        b"Subject: =?UTF-8?B?w6lsw6h2ZQ==?= report\r\nX-Folded: first\r\n second\r\n\r\n"
    r = fetch1(c, "FETCH 1 BODY.PEEK[HEADER.FIELDS.NOT (From To Cc Subject Date Message-ID X-Folded)]")
    assert section(r, "BODY[HEADER.FIELDS.NOT (FROM TO CC SUBJECT DATE MESSAGE-ID X-FOLDED)]".replace(
        "FROM TO CC SUBJECT DATE MESSAGE-ID X-FOLDED", "From To Cc Subject Date Message-ID X-Folded")) == \
        b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="XX"\r\n\r\n'
    r = fetch1(c, "FETCH 1 BODY.PEEK[3.HEADER.FIELDS (SUBJECT)]")
    assert section(r, "BODY[3.HEADER.FIELDS (SUBJECT)]") == b"Subject: inner subject\r\n\r\n"
    # partial: origin echoed, bytes exact, past the end empty
    r = fetch1(c, "FETCH 1 (BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<5.7> BODY.PEEK[1]<100000.5>)")
    assert section(r, "BODY[]<0>") == MULTI[:10]
    assert section(r, "BODY[TEXT]<5>") == MULTI[hdr_end + 5:hdr_end + 12]
    assert section(r, "BODY[1]<100000>") == b""
    r = fetch1(c, "FETCH 2 (RFC822.HEADER RFC822.SIZE)")
    assert section(r, "RFC822.HEADER") == PLAIN[:PLAIN.index(b"\r\n\r\n") + 4]
    # EXAMINE: non-peek fetches do not set \Seen
    r = fetch1(c, "FETCH 1 (BODY[1] FLAGS)")
    assert b"FLAGS (\\Flagged)" in r


def test_fetch_sets_seen(srv, box):
    c, name = box
    c.ok(f"SELECT {name}")
    r = fetch1(c, "FETCH 1 BODY.PEEK[TEXT]")
    assert b"\\Seen" not in r
    u, t = c.ok("FETCH 1 FLAGS")
    assert b"\\Seen" not in u[0]
    r = fetch1(c, "FETCH 1 BODY[1]")         # non-peek: \Seen set, FLAGS reported
    assert section(r, "BODY[1]") == b"Gr=FC=DFe aus M=FCnchen"
    assert re.search(rb"FLAGS \([^)]*\\Seen", r), r
    u, t = c.ok("FETCH 1 FLAGS")
    assert b"\\Seen" in u[0]
    c.ok("STORE 1 -FLAGS.SILENT (\\Seen)")
    r = fetch1(c, "FETCH 1 RFC822")
    assert section(r, "RFC822") == MULTI and b"\\Seen" in r
    c.ok("STORE 1 -FLAGS.SILENT (\\Seen)")
    r = fetch1(c, "FETCH 1 RFC822.TEXT")
    assert b"\\Seen" in r


def test_store(srv, box):
    c, name = box
    c.ok(f"SELECT {name}")
    u, t = c.ok("STORE 1:2 +FLAGS (\\Answered $Label)")
    # $Label is new to the session: FLAGS names it before a FETCH carries it
    assert u[:2] == [b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work $Label)",
                     b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work $Label"
                     b" \\*)] Flags permitted"]
    u = u[2:]
    assert u == [b"* 1 FETCH (FLAGS (\\Answered \\Flagged \\Recent $Label))",
                 b"* 2 FETCH (FLAGS (\\Answered \\Seen \\Recent $Label $Work))"]
    u, t = c.ok("STORE 2 -FLAGS (\\Answered $Work)")
    assert u == [b"* 2 FETCH (FLAGS (\\Seen \\Recent $Label))"]
    u, t = c.ok("STORE 1 FLAGS (\\Draft)")
    assert u == [b"* 1 FETCH (FLAGS (\\Draft \\Recent))"]
    u, t = c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert u == []
    u, t = c.ok("UID STORE 2 +FLAGS \\Flagged \\Deleted")
    assert u == [b"* 2 FETCH (UID 2 FLAGS (\\Flagged \\Deleted \\Seen \\Recent $Label))"]
    u, t = c.ok("STORE 1 +FLAGS (\\Recent)")       # \Recent cannot be set: ignored
    c.bad("STORE 1 +FLAGS (\\Unknown)")
    c.bad("STORE 1 +FLAGS (bad\"kw)")


def test_copy_move_expunge(srv, box):
    c, name = box
    c.ok(f"CREATE {name}Dst")
    c.ok(f"SELECT {name}")
    u, t = c.ok(f"COPY 1:2 {name}Dst")
    m = re.search(rb"\[COPYUID (\d+) 1:2 1:2\]", t)
    assert m, t
    c.no(f"COPY 1 {name}Nope", "TRYCREATE")
    u, t = c.ok(f"UID MOVE 2 {name}Dst")
    assert find(u, rb"^\* OK \[COPYUID \d+ 2 3\]")
    assert find(u, rb"^\* 2 EXPUNGE$")
    assert u.index(find(u, rb"COPYUID")[0]) < u.index(b"* 2 EXPUNGE")
    u, t = c.ok(f"STATUS {name}Dst (MESSAGES)")
    assert b"MESSAGES 3" in u[0]
    # EXPUNGE and UID EXPUNGE only remove \Deleted messages, and only those named
    append(c, name, PLAIN)
    append(c, name, PLAIN)
    u, t = c.ok("FETCH 3 UID")
    assert u == [b"* 3 FETCH (UID 4)"]
    c.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    u, t = c.ok("UID EXPUNGE 3")
    assert find(u, rb"EXPUNGE|EXISTS") == [b"* 2 EXPUNGE"]   # a RECENT update may follow
    u, t = c.ok("UID SEARCH ALL")
    assert u == [b"* SEARCH 1 4"]
    c.ok("STORE 1 -FLAGS.SILENT (\\Deleted)")
    u, t = c.ok("EXPUNGE")
    assert find(u, rb"EXPUNGE|EXISTS") == [b"* 2 EXPUNGE"]
    # CLOSE expunges silently; UNSELECT does not expunge
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("UNSELECT")
    u, t = c.ok(f"STATUS {name} (MESSAGES)")
    assert b"MESSAGES 1" in u[0]
    c.ok(f"SELECT {name}")
    u, t = c.ok("CLOSE")
    assert u == []
    u, t = c.ok(f"STATUS {name} (MESSAGES)")
    assert b"MESSAGES 0" in u[0]
    c.bad("FETCH 1 FLAGS")


def search(c, q):
    u, t = c.ok(q)
    line = one(u, rb"^\* SEARCH")
    return [int(x) for x in line.split()[2:] if x.isdigit()]


def test_search_keys(srv, box):
    c, name = box
    append(c, name, literal("From: x@example.com\nSubject: third\n\nplain\n"), flags="\\Draft \\Deleted",
           date="10-Mar-2025 00:00:00 +0000")
    c.ok(f"SELECT {name}")
    c.ok("STORE 3 +FLAGS.SILENT (\\Answered)")
    cases = {
        "ALL": [1, 2, 3], "ANSWERED": [3], "UNANSWERED": [1, 2], "DELETED": [3], "UNDELETED": [1, 2],
        "DRAFT": [3], "UNDRAFT": [1, 2], "FLAGGED": [1], "UNFLAGGED": [2, 3], "SEEN": [2],
        "UNSEEN": [1, 3], "KEYWORD $Work": [2], "UNKEYWORD $work": [1, 3], "RECENT": [1, 2, 3],
        "NEW": [1, 3], "OLD": [], "BEFORE 3-Mar-2025": [2], "ON 3-Mar-2025": [1],
        "SINCE 3-Mar-2025": [1, 3], "SENTBEFORE 1-Feb-2025": [2], "SENTON 5-Feb-2025": [1],
        "SENTSINCE 1-Feb-2025": [1, 3], "LARGER 500": [1], "SMALLER 200": [2, 3] if len(PLAIN) < 200 else [3],
        "FROM ann": [1], "FROM \"ANN EXAMPLE\"": [1], "TO carol": [1], "CC dave": [1], "BCC x": [],
        "SUBJECT report": [1], "SUBJECT PLAIN": [2], "HEADER Message-ID <abc@": [1],
        "HEADER X-Folded \"first second\"": [1],  "HEADER X-Folded second": [1], "HEADER X-Folded \"\"": [1],
        "BODY nothing": [2], "BODY subject": [1], "TEXT zed": [2], "BODY zed": [],
        "2:3": [2, 3], "*": [3], "UID 1,3": [1, 3], "UID 2:*": [2, 3],
        "NOT SEEN": [1, 3], "OR FLAGGED SEEN": [1, 2], "OR (FLAGGED SEEN) DRAFT": [3],
        "(OR FROM ann FROM zed) NOT SUBJECT report": [2], "NOT (1:2)": [3],
        "OR NOT FLAGGED NOT SEEN 1:2": [1, 2],
    }
    for q, want in cases.items():
        assert search(c, f"SEARCH {q}") == want, q
    # UID SEARCH gives uids
    assert search(c, "UID SEARCH UNSEEN") == [1, 3]


def test_search_decoding_and_charset(srv, box):
    c, name = box
    c.ok(f"EXAMINE {name}")
    # quoted-printable ISO-8859-1 body, case-insensitively over Unicode
    assert search(c, 'SEARCH CHARSET UTF-8 BODY "MÜNCHEN"'.encode()) == [1]
    assert search(c, b'SEARCH CHARSET UTF-8 BODY {4+}\r\nGr\xc3\xbc') == [1]
    # base64 UTF-8 html part
    assert search(c, 'SEARCH CHARSET UTF-8 TEXT "héllo"'.encode()) == [1]
    assert search(c, "SEARCH BODY QmFzZTY0") == []          # encoded form does not match
    # RFC 2047 subject
    assert search(c, 'SEARCH CHARSET UTF-8 SUBJECT "ÉLÈVE"'.encode()) == [1]
    # the encapsulated message's body and header count for BODY
    assert search(c, "SEARCH BODY \"inner body\"") == [1]
    assert search(c, "SEARCH CHARSET US-ASCII TEXT inner") == [1]
    c.no("SEARCH CHARSET ISO-8859-1 TEXT x", "BADCHARSET")


def test_esearch(srv, box):
    c, name = box
    c.ok(f"EXAMINE {name}")
    u, t = c.ok("UID SEARCH RETURN (MIN MAX COUNT ALL) ALL")
    tag = t.split()[0].decode()
    assert u == [f'* ESEARCH (TAG "{tag}") UID MIN 1 MAX 2 COUNT 2 ALL 1:2'.encode()]
    u, t = c.ok("SEARCH RETURN () SEEN")
    tag = t.split()[0].decode()
    assert u == [f'* ESEARCH (TAG "{tag}") ALL 2'.encode()]
    u, t = c.ok("SEARCH RETURN (COUNT MIN) DRAFT")
    tag = t.split()[0].decode()
    assert u == [f'* ESEARCH (TAG "{tag}") COUNT 0'.encode()]
