"""imapd: CONDSTORE and QRESYNC (RFC 7162) - HIGHESTMODSEQ, FETCH MODSEQ and
CHANGEDSINCE, STORE UNCHANGEDSINCE and MODIFIED, SEARCH MODSEQ, STATUS
HIGHESTMODSEQ, SELECT (QRESYNC ...) with VANISHED (EARLIER), UID FETCH
(CHANGEDSINCE n VANISHED), VANISHED instead of EXPUNGE, [CLOSED]; and a
replica serving read-only ([READ-ONLY], NO [READ-ONLY] for writes)."""
import re

import pytest

from imap_helpers import ImapServer, append, find, literal, one


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ImapServer(tmp_path_factory.mktemp("imapcond"), users=("alice", "rita"))
    yield s
    s.stop()


def msg(i):
    return literal(f"From: s{i}@example.com\nSubject: msg {i}\n\nbody {i}\n")


@pytest.fixture
def box(srv, request):
    name = request.node.name.replace("_", "")[:40]
    c = srv.client()
    c.ok(f"CREATE {name}")
    for i in range(1, 6):
        append(c, name, msg(i))
    return c, name


def hms(lines):
    return int(re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(lines)).group(1))


def modseqs(lines):
    out = {}
    for l in lines:
        m = re.match(rb"^\* (\d+) FETCH \(.*MODSEQ \((\d+)\)", l)
        if m:
            out[int(m.group(1))] = int(m.group(2))
    return out


def test_condstore_basics(srv, box):
    c, name = box
    u, t = c.ok(f"SELECT {name} (CONDSTORE)")
    h0 = hms(u)
    u, t = c.ok("FETCH 1:* (FLAGS MODSEQ)")
    ms = modseqs(u)
    assert sorted(ms) == [1, 2, 3, 4, 5] and max(ms.values()) <= h0
    # STORE with UNCHANGEDSINCE: passes, then fails for a stale value
    u, t = c.ok(f"STORE 2 (UNCHANGEDSINCE {ms[2]}) +FLAGS (\\Seen)")
    new2 = modseqs(u)[2]
    assert new2 > h0
    u, t = c.ok(f"STORE 2,3 (UNCHANGEDSINCE {ms[3]}) +FLAGS (\\Flagged)")
    assert b"[MODIFIED 2]" in t
    assert modseqs(u).keys() == {3}                     # 3 changed, 2 refused
    u, t = c.ok(f"UID STORE 1:5 (UNCHANGEDSINCE 0) +FLAGS (\\Draft)")
    assert b"[MODIFIED 1:5]" in t
    # .SILENT still reports MODSEQ once CONDSTORE is on
    u, t = c.ok("UID STORE 4 +FLAGS.SILENT (\\Answered)")
    assert len(u) == 1 and re.match(rb"^\* 4 FETCH \(UID 4 MODSEQ \(\d+\)\)$", u[0]), u
    # CHANGEDSINCE: only what changed after h0, with MODSEQ
    u, t = c.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {h0})")
    assert sorted(modseqs(u)) == [2, 3, 4]
    u, t = c.ok(f"UID FETCH 1:* (UID) (CHANGEDSINCE {new2})")
    assert sorted(modseqs(u)) == [3, 4]
    # SEARCH MODSEQ answers with the highest modseq of the matches
    u, t = c.ok(f"SEARCH MODSEQ {new2}")
    m = re.match(rb"^\* SEARCH 2 3 4 \(MODSEQ (\d+)\)$", u[0])
    assert m, u
    u, t = c.ok(f'SEARCH MODSEQ "/flags/\\\\seen" all {new2 + 1}')
    assert re.match(rb"^\* SEARCH 3 4 \(MODSEQ \d+\)$", u[0]), u
    u, t = c.ok(f"STATUS {name} (HIGHESTMODSEQ)")
    assert int(re.search(rb"HIGHESTMODSEQ (\d+)", u[0]).group(1)) == int(m.group(1))


def test_unsolicited_fetch_carries_modseq(srv, box):
    c, name = box
    c.ok("ENABLE CONDSTORE")
    c.ok(f"SELECT {name}")
    d = srv.client()
    d.ok(f"SELECT {name}")
    d.ok("STORE 1 +FLAGS (\\Flagged)")
    u, t = c.ok("NOOP")
    assert len(u) == 1 and re.match(rb"^\* 1 FETCH \(FLAGS \(\\Flagged[^)]*\) MODSEQ \(\d+\)\)$", u[0]), u


def test_qresync(srv, box):
    c, name = box
    u, t = c.ok(f"SELECT {name} (CONDSTORE)")
    uv = int(re.search(rb"UIDVALIDITY (\d+)", b"\n".join(u)).group(1))
    h0 = hms(u)
    c.bad(f"SELECT {name} (QRESYNC ({uv} {h0}))")      # not enabled yet
    c.ok(f"SELECT {name}")
    # changes while "offline": flag 2, expunge 3 and 5, add 6
    d = srv.client()
    d.ok(f"SELECT {name}")
    d.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
    d.ok("STORE 3,5 +FLAGS.SILENT (\\Deleted)")
    d.ok("EXPUNGE")
    append(d, name, msg(6))
    c.ok("ENABLE QRESYNC")
    u, t = c.ok(f"SELECT {name} (QRESYNC ({uv} {h0}))")
    assert find(u, rb"^\* OK \[CLOSED\]")                # the previous selection ended
    assert one(u, rb"^\* VANISHED \(EARLIER\) 3,5$")
    fetched = {int(re.search(rb"UID (\d+)", l).group(1)): l for l in find(u, rb"^\* \d+ FETCH")}
    assert set(fetched) == {2, 6}
    assert re.search(rb"FLAGS \(\\Seen", fetched[2]) and b"MODSEQ (" in fetched[2]
    # with known uids: the server may answer from them
    u, t = c.ok(f"SELECT {name} (QRESYNC ({uv} {h0} 1:5))")
    assert one(u, rb"^\* VANISHED \(EARLIER\) 3,5$")
    # a wrong uidvalidity gets no resync data
    u, t = c.ok(f"SELECT {name} (QRESYNC ({uv + 1} {h0}))")
    assert not find(u, rb"VANISHED") and not find(u, rb"FETCH")
    # UID FETCH CHANGEDSINCE VANISHED
    u, t = c.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {h0} VANISHED)")
    assert u[0] == b"* VANISHED (EARLIER) 3,5"
    assert {int(re.search(rb"UID (\d+)", l).group(1)) for l in u[1:]} == {2, 6}
    c.bad(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {h0} VANISHED)")   # UID FETCH only
    # expunges by others now arrive as VANISHED
    d.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    d.ok("EXPUNGE")
    u, t = c.ok("NOOP")
    assert find(u, rb"VANISHED|EXPUNGE") == [b"* VANISHED 1"]
    # unsolicited FETCH carries UID once QRESYNC is on
    d.ok("UID STORE 2 -FLAGS.SILENT (\\Seen)")
    u, t = c.ok("NOOP")
    assert re.match(rb"^\* 1 FETCH \(UID 2 FLAGS \(.*\) MODSEQ \(\d+\)\)$", u[0]), u


def test_replica_is_read_only(srv):
    c = srv.client(user="rita")
    c.ok("CREATE Keep")
    append(c, "Keep", msg(1))
    c.ok("LOGOUT")
    srv.set_role("replica")
    try:
        c = srv.client(user="rita")
        u, t = c.ok("NOOP")
        c2 = srv.client(login=False, user="rita")
        u, t = c2.ok('LOGIN rita "s3cret pw"')
        assert find(u, rb"^\* OK \[ALERT\].*read-only"), u
        u, t = c.ok("SELECT Keep")
        assert b"[READ-ONLY]" in t
        c.no("STORE 1 +FLAGS (\\Seen)", "READ-ONLY")
        c.no("EXPUNGE", "READ-ONLY")
        c.no("CREATE New", "READ-ONLY")
        c.no("DELETE Keep", "READ-ONLY")
        c.no("RENAME Keep Other", "READ-ONLY")
        c.no("SUBSCRIBE Keep", "READ-ONLY")
        c.no("COPY 1 INBOX", "READ-ONLY")
        c.no("MOVE 1 INBOX", "READ-ONLY")
        m = msg(2)
        c.no(b"APPEND Keep {%d+}\r\n%s" % (len(m), m), "READ-ONLY")
        u, t = c.ok("FETCH 1 (BODY[TEXT] FLAGS)")              # no \Seen on a replica
        assert b"\\Seen" not in u[0]
        u, t = c.ok("SEARCH BODY body")
        assert u == [b"* SEARCH 1"]
    finally:
        srv.set_role("master")
    c = srv.client(user="rita")
    u, t = c.ok("SELECT Keep")
    assert b"[READ-WRITE]" in t
    c.ok("STORE 1 +FLAGS (\\Seen)")
