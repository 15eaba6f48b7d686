"""imapd: SORT, THREAD and ESORT (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO,
RFC 5267 SORT RETURN) with exact responses on a crafted mailbox: subjects
with Re:/Fwd:/[tags]/(fwd) and encoded words, a missing Date (the internal
date stands in), equal keys (sequence order breaks the tie), a reply chain
by References and In-Reply-To, a missing parent (a dummy); the UID forms;
a read-only replica of a pair answering the same; and a webmail-style
session (SORT + THREAD + ESEARCH + FETCH + STORE) whose writes replicate."""
import re

import pytest

from conftest import binpath, run
from imap_helpers import PASSWORD, ImapServer, Raw, append, literal
from repl_util import SLOW, converged, ctl, pair

# (headers, internal date).  Sent dates in UTC:
#   1 Mar 4 09:00, 2 Mar 4 09:00 (the same instant in +0100), 3 none (internal
#   Mar 1 12:00), 4 Mar 2 13:00, 5 Mar 5, 6 Mar 6, 7 Mar 7 12:00, 8 Mar 1 00:00.
# Base subjects: 1 2 4 7 "meeting", 5 6 "lost thread", 3 8 "cafe plans".
MSGS = [
    ("From: Ann <ann@a.org>\nTo: zed@z.org\nSubject: Meeting\n"
     "Date: Tue, 4 Mar 2025 09:00:00 +0000\nMessage-ID: <1@t>\n", "10-Mar-2025 10:00:00 +0000"),
    ("From: \"Bob\" <bob@b.org>\nTo: ann@a.org\nCc: yan@y.org\nSubject: Re: Meeting\n"
     "Date: Tue, 4 Mar 2025 10:00:00 +0100\nMessage-ID: <2@t>\nIn-Reply-To: <1@t>\n"
     "References: <1@t>\n", "09-Mar-2025 10:00:00 +0000"),
    ("From: carl@c.org\nTo: =?UTF-8?B?w4lsaXNl?= <elise@e.org>\n"
     "Subject: =?UTF-8?Q?Caf=C3=A9?= plans\nMessage-ID: <3@t>\n", "01-Mar-2025 12:00:00 +0000"),
    ("From: dave@d.org\nTo: \"ann\" <ann@a.org>\nSubject: [list] Fwd: Meeting (fwd)\n"
     "Date: Sun, 2 Mar 2025 08:00:00 -0500\nMessage-ID: <4@t>\n", "08-Mar-2025 10:00:00 +0000"),
    ("From: Xavier <eve@e.org>\nSubject: Re: Lost thread\nDate: Wed, 5 Mar 2025 00:00:00 +0000\n"
     "Message-ID: <5@t>\nReferences: <gone@t>\n", "08-Mar-2025 10:00:00 +0000"),
    ("From: Frank <frank@f.org>\nSubject: Re: Lost thread\nDate: Thu, 6 Mar 2025 00:00:00 +0000\n"
     "Message-ID: <6@t>\nReferences: <gone@t>\n", "11-Mar-2025 10:00:00 +0000"),
    ("From: ANN@a.org\nTo: bob@b.org\nSubject: Re: Re: meeting\n"
     "Date: Fri, 7 Mar 2025 12:00:00 +0000\nMessage-ID: <7@t>\nReferences: <1@t>\n <2@t>\n",
     "12-Mar-2025 10:00:00 +0000"),
    ("From: \"Zed\" <zed@z.org>\nSubject: [fwd: =?UTF-8?Q?Caf=C3=A9?= plans]\n"
     "Date: Sat, 1 Mar 2025 00:00:00 +0000\n", "02-Mar-2025 10:00:00 +0000"),
]


def message(i):
    hdr, _ = MSGS[i]
    return (hdr + "\nbody of message %d\n" % (i + 1) + "x" * (37 * ((i * 5) % 8)) + "\n").encode()


def fill(c, mailbox):
    """The crafted mailbox, after one expunged message: uid = seq + 1."""
    if mailbox != "INBOX":
        c.ok(f"CREATE {mailbox}")
    append(c, mailbox, b"Subject: junk\n\njunk\n")
    for i, (_, date) in enumerate(MSGS):
        append(c, mailbox, message(i), date=date)
    c.ok(f"SELECT {mailbox}")
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")


# (command, expected untagged response) for the mailbox above
SORTS = [
    ("SORT (ARRIVAL) UTF-8 ALL", "* SORT 3 8 4 5 2 1 6 7"),
    ("SORT (DATE) UTF-8 ALL", "* SORT 8 3 4 1 2 5 6 7"),
    ("SORT (REVERSE DATE) UTF-8 ALL", "* SORT 7 6 5 1 2 4 3 8"),
    ("SORT (SUBJECT) UTF-8 ALL", "* SORT 3 8 5 6 1 2 4 7"),
    ("SORT (SUBJECT DATE) UTF-8 ALL", "* SORT 8 3 5 6 4 1 2 7"),
    ("SORT (REVERSE SUBJECT FROM) UTF-8 ALL", "* SORT 1 7 2 4 5 6 3 8"),
    ("SORT (FROM) UTF-8 ALL", "* SORT 1 7 2 3 4 5 6 8"),
    ("SORT (TO) UTF-8 ALL", "* SORT 5 6 8 2 4 7 3 1"),
    ("SORT (CC) US-ASCII ALL", "* SORT 1 3 4 5 6 7 8 2"),
    ("SORT (DISPLAYFROM) UTF-8 ALL", "* SORT 1 7 2 3 4 6 5 8"),
    ("SORT (DISPLAYTO) UTF-8 ALL", "* SORT 5 6 8 4 2 7 1 3"),
    ("SORT (SUBJECT) UTF-8 FROM ann", "* SORT 1 7"),
    ("SORT (DATE) UTF-8 NOT ALL", "* SORT"),
    ("UID SORT (DATE) UTF-8 ALL", "* SORT 9 4 5 2 3 6 7 8"),
    ("UID SORT (ARRIVAL) UTF-8 UID 4:6", "* SORT 4 5 6"),
]

THREADS = [
    ("THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (8 3)(4 (1)(2)(7))(5 6)"),
    ("THREAD REFERENCES UTF-8 ALL", "* THREAD (3 8)(1 (4)(2 7))((5)(6))"),
    # the parent of 7 (message 2) not among the matches: a dummy, pruned
    ("THREAD REFERENCES UTF-8 FROM ann", "* THREAD (1 7)"),
    # one child left under the missing <gone@t>: it becomes a root
    ("THREAD REFERENCES UTF-8 NOT 6", "* THREAD (3 8)(1 (4)(2 7))(5)"),
    ("THREAD REFERENCES UTF-8 NOT ALL", "* THREAD"),
    ("UID THREAD REFERENCES UTF-8 ALL", "* THREAD (4 9)(2 (5)(3 8))((6)(7))"),
    ("UID THREAD ORDEREDSUBJECT UTF-8 ALL", "* THREAD (9 4)(5 (2)(3)(8))(6 7)"),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ImapServer(tmp_path_factory.mktemp("imapsort"))
    c = s.client()
    fill(c, "Sorted")
    c.ok("LOGOUT")
    yield s
    s.stop()


def test_capability(srv):
    c = srv.client()
    u, _ = c.ok("CAPABILITY")
    caps = u[0].split()
    for cap in (b"SORT", b"SORT=DISPLAY", b"ESORT", b"THREAD=REFERENCES", b"THREAD=ORDEREDSUBJECT"):
        assert cap in caps, u


@pytest.mark.parametrize("cmd,expect", SORTS + THREADS)
def test_sort_thread_exact(srv, cmd, expect):
    c = srv.client()
    c.ok("EXAMINE Sorted")
    u, t = c.ok(cmd)
    assert u == [expect.encode()], (cmd, u)


def test_size(srv):
    c = srv.client()
    c.ok("EXAMINE Sorted")
    sizes = [len(literal(message(i))) for i in range(len(MSGS))]
    order = sorted(range(1, len(MSGS) + 1), key=lambda s: (sizes[s - 1], s))
    u, _ = c.ok("SORT (SIZE) UTF-8 ALL")
    assert u == [b"* SORT " + " ".join(map(str, order)).encode()]
    u, _ = c.ok("SORT (REVERSE SIZE) UTF-8 ALL")
    rev = sorted(range(1, len(MSGS) + 1), key=lambda s: (-sizes[s - 1], s))
    assert u == [b"* SORT " + " ".join(map(str, rev)).encode()]


def test_esort_return(srv):
    c = srv.client()
    c.ok("EXAMINE Sorted")
    u, t = c.cmd("SORT RETURN (MIN MAX COUNT ALL) (DATE) UTF-8 ALL")
    tag = t.split()[0].decode()
    assert u == [f'* ESEARCH (TAG "{tag}") MIN 8 MAX 7 COUNT 8 ALL 8,3:4,1:2,5:7'.encode()]
    u, t = c.cmd("UID SORT RETURN (ALL PARTIAL 2:4 COUNT) (DATE) UTF-8 ALL")
    tag = t.split()[0].decode()
    assert u == [f'* ESEARCH (TAG "{tag}") UID COUNT 8 ALL 9,4:5,2:3,6:8 PARTIAL (2:4 4:5,2)'
                 .encode()]
    u, t = c.cmd("SORT RETURN () (SUBJECT) UTF-8 NOT ALL")
    assert u == [f'* ESEARCH (TAG "{t.split()[0].decode()}")'.encode()]
    u, t = c.cmd("SORT RETURN (COUNT PARTIAL 100:200) (SUBJECT) UTF-8 ALL")
    assert u == [f'* ESEARCH (TAG "{t.split()[0].decode()}") COUNT 8 PARTIAL (100:200 NIL)'
                 .encode()]


def test_bad_input(srv):
    c = srv.client()
    c.bad("SORT (DATE) UTF-8 ALL")            # not selected
    c.ok("EXAMINE Sorted")
    c.bad("SORT (FOO) UTF-8 ALL")
    c.bad("SORT () UTF-8 ALL")
    c.bad("SORT (DATE) ALL")                  # the charset is required
    c.bad("SORT (DATE REVERSE) UTF-8 ALL")
    c.bad("SORT RETURN (PARTIAL 0:5) (DATE) UTF-8 ALL")
    c.bad("THREAD FOO UTF-8 ALL")
    c.bad("THREAD REFERENCES UTF-8")
    c.no("SORT (DATE) KOI8-R ALL", "BADCHARSET")
    c.no("THREAD REFERENCES KOI8-R ALL", "BADCHARSET")
    u, _ = c.ok("SORT (DATE) UTF-8 ALL")      # the session is fine after all that
    assert u == [b"* SORT 8 3 4 1 2 5 6 7"]


def test_no_expunge_during_sort(srv):
    """SORT and THREAD use sequence numbers: another session's EXPUNGE is
    held back (RFC 3501 7.4.1 as for SEARCH), UID SORT may report it."""
    a = srv.client()
    a.ok("CREATE Moving")
    append(a, "Moving", message(0))
    append(a, "Moving", message(1))
    a.ok("SELECT Moving")
    b = srv.client()
    b.ok("SELECT Moving")
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    u, _ = a.ok("SORT (DATE) UTF-8 ALL")
    assert not [x for x in u if x.endswith(b"EXPUNGE")], u
    u, _ = a.ok("THREAD REFERENCES UTF-8 ALL")
    assert not [x for x in u if x.endswith(b"EXPUNGE")], u
    u, _ = a.ok("UID SORT (DATE) UTF-8 ALL")
    assert b"* 1 EXPUNGE" in u, u


def _imap(server, port):
    server.add_services(f'  imap cmd="imapd" listen="127.0.0.1:{port}" prefork=1',
                        section="SERVICES")


def test_replica_and_webmail_flow(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path, start=False)
    _imap(m, m.base)
    _imap(r, r.base)
    r.start()
    m.start()
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD + "\n")
    ctl(m.conf, "user", "add", "alice", "--password-file", pw)
    c = Raw(m.base, timeout=20 * SLOW)
    c.ok(f'LOGIN alice "{PASSWORD}"')
    fill(c, "INBOX")
    # a webmail page: capabilities, a sorted UID list, the first page's
    # headers, the thread view, the unseen count
    u, _ = c.ok("CAPABILITY")
    assert b" SORT " in u[0] and b" ESORT" in u[0] and b"THREAD=REFERENCES" in u[0]
    c.ok("SELECT INBOX")
    u, t = c.ok("UID SORT RETURN (ALL COUNT) (REVERSE DATE) UTF-8 ALL")
    tag = t.split()[0].decode()
    assert u == [f'* ESEARCH (TAG "{tag}") UID COUNT 8 ALL 8,7,6,2:3,5,4,9'.encode()]
    u, _ = c.ok("UID FETCH 8,7,6 (UID FLAGS RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert len([x for x in u if b" FETCH " in x]) == 3, u
    u, _ = c.ok("UID THREAD REFERENCES UTF-8 ALL")
    assert u == [b"* THREAD (4 9)(2 (5)(3 8))((6)(7))"]
    u, t = c.ok("UID SEARCH RETURN (COUNT) UNSEEN")
    assert u == [f'* ESEARCH (TAG "{t.split()[0].decode()}") UID COUNT 8'.encode()]
    # reading a thread marks it seen; the unseen view sorts what is left
    c.ok("UID STORE 2,5,8 +FLAGS.SILENT (\\Seen)")
    u, _ = c.ok("UID SORT (ARRIVAL) UTF-8 UNSEEN")
    assert u == [b"* SORT 4 9 6 3 7"]
    c.ok("LOGOUT")
    converged(m, r)
    # the replica: read-only, the same answers, the seen flags replicated
    c = Raw(r.base, timeout=20 * SLOW)
    c.ok(f'LOGIN alice "{PASSWORD}"')
    u, t = c.ok("SELECT INBOX")
    assert b"[READ-ONLY]" in t, t
    for cmd, expect in SORTS + THREADS:
        u, _ = c.ok(cmd)
        assert u == [expect.encode()], (cmd, u)
    u, _ = c.ok("UID SORT (ARRIVAL) UTF-8 UNSEEN")
    assert u == [b"* SORT 4 9 6 3 7"]
    u, t = c.ok("UID SORT RETURN (MIN MAX) (REVERSE DATE) UTF-8 SEEN")
    assert u == [f'* ESEARCH (TAG "{t.split()[0].decode()}") UID MIN 8 MAX 5'.encode()]
    c.ok("LOGOUT")
