"""imapd: what one session sees of another's changes, and when (RFC 3501
5.2, 7.4.1: no EXPUNGE while answering FETCH, STORE or SEARCH; sequence
numbers never shift under a command), IDLE woken within a second by any
process's commit without polling, and the end of a selected mailbox."""
import re
import signal
import subprocess
import time

import pytest

from conftest import SLOW, binpath
from imap_helpers import ImapServer, Raw, append, find, literal, mbox_file, one


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ImapServer(tmp_path_factory.mktemp("imapsess"))
    yield s
    s.stop()


def msg(i):
    return literal(f"From: s{i}@example.com\nSubject: msg {i}\n\nbody {i}\n")


@pytest.fixture
def pair(srv, request):
    """Two sessions of alice; A has a fresh 3-message mailbox selected."""
    name = request.node.name.replace("_", "")[:40]
    b = srv.client()
    b.ok(f"CREATE {name}")
    for i in range(1, 4):
        append(b, name, msg(i))
    a = srv.client()
    a.ok(f"SELECT {name}")
    b.ok(f"SELECT {name}")
    return a, b, name


def test_exists_fetch_expunge_reach_other_session(pair):
    a, b, name = pair
    append(b, name, msg(4))
    u, t = a.ok("NOOP")
    assert one(u, rb"^\* 4 EXISTS$")
    u, t = a.ok("NOOP")
    assert u == []                                   # said once
    b.ok("STORE 1 +FLAGS (\\Flagged)")
    u, t = a.ok("NOOP")
    assert len(u) == 1 and re.match(rb"^\* 1 FETCH \(FLAGS \(\\Flagged( \\Recent)?\)\)$", u[0]), u
    # b expunges message 2: a keeps its numbering through FETCH/STORE/SEARCH
    b.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    u, t = a.ok("FETCH 1:4 (UID FLAGS)")
    assert not find(u, rb"EXPUNGE")
    assert [l.split()[1] for l in find(u, rb"^\* \d+ FETCH \(UID")] == [b"1", b"2", b"3", b"4"]
    u, t = a.ok("SEARCH ALL")
    assert not find(u, rb"EXPUNGE") and one(u, rb"^\* SEARCH 1 2 3 4$")
    u, t = a.ok("STORE 3 +FLAGS (\\Seen)")
    assert not find(u, rb"EXPUNGE") and one(u, rb"^\* 3 FETCH \(FLAGS \(\\Seen")
    u, t = a.ok("NOOP")                              # now it may be told
    assert find(u, rb"EXPUNGE|EXISTS") == [b"* 2 EXPUNGE"]
    u, t = a.ok("FETCH 1:* UID")
    assert [l for l in u] == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 3)", b"* 3 FETCH (UID 4)"]


def test_uid_commands_may_carry_expunge(pair):
    a, b, name = pair
    b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    b.ok("EXPUNGE")
    u, t = a.ok("UID FETCH 1:* FLAGS")
    # the data first, under the old numbering, then the EXPUNGE
    fetches = find(u, rb"FETCH")
    assert [l.split()[1] + b" " + l.split()[4] for l in fetches] == [b"1 1", b"2 2", b"3 3"], u
    assert find(u, rb"EXPUNGE") == [b"* 1 EXPUNGE"]
    assert u.index(b"* 1 EXPUNGE") > u.index(fetches[-1])


def test_own_store_and_others_flags_in_store_reply(pair):
    a, b, name = pair
    b.ok("STORE 3 +FLAGS (\\Answered)")
    u, t = a.ok("STORE 1 +FLAGS (\\Seen)")
    assert one(u, rb"^\* 1 FETCH \(FLAGS \(\\Seen( \\Recent)?\)\)$")
    assert one(u, rb"^\* 3 FETCH \(FLAGS \(\\Answered( \\Recent)?\)\)$")   # b's change, told now
    u, t = a.ok("STORE 2 +FLAGS.SILENT (\\Seen)")
    assert u == []


def test_idle_wakes_within_a_second(srv, pair):
    a, b, name = pair
    tag = a.tag()
    a.send(f"{tag} IDLE\r\n")
    assert a.rawline().startswith(b"+ ")

    def until(pattern, t0, limit):
        """Read untagged lines until one matches; it must come within limit s."""
        while True:
            ln = a.line(timeout=5 * SLOW)
            if re.search(pattern, ln):
                took = time.monotonic() - t0
                assert took < limit * SLOW, f"IDLE took {took:.2f}s to report {ln!r}"
                return ln
            assert re.match(rb"^\* \d+ (RECENT|FETCH)", ln), ln   # nothing else on the way

    def wait_line(pattern, action):
        # the clock starts when the other session's change is committed
        # (its tagged OK): what we measure is commit -> notification
        action()
        return until(pattern, time.monotonic(), 1.0)

    wait_line(rb"^\* 4 EXISTS$", lambda: append(b, name, msg(4)))
    wait_line(rb"^\* 2 FETCH \(FLAGS \(\\Flagged( \\Recent)?\)\)$",
              lambda: b.ok("STORE 2 +FLAGS.SILENT (\\Flagged)"))

    def expunge():
        b.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
        b.ok("EXPUNGE")
    wait_line(rb"^\* 1 EXPUNGE$", expunge)   # (a FETCH for \Deleted may come first)
    # another process (castorctl import) wakes it too
    src = srv.tmp / "idle.mbox"
    mbox_file(src, [msg(9)])
    t0 = time.monotonic()
    srv.ctl("-q", "import", "alice", src, "--mailbox", name)
    until(rb"^\* 4 EXISTS$", t0, 3.0)
    a.send("DONE\r\n")
    u, t = a.collect(tag)
    assert t == f"{tag} OK IDLE terminated".encode()
    a.ok("NOOP")


def server_pid(port, client):
    lport = client.s.getsockname()[1]
    out = subprocess.run(["ss", "-tnpH", "state", "established"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 4 and cols[3] == f"127.0.0.1:{lport}" and "pid=" in line:
            return int(re.search(r"pid=(\d+)", line).group(1))
    pytest.skip("cannot find the serving process (ss)")


def test_idle_does_not_poll(srv, pair):
    a, b, name = pair
    pid = server_pid(srv.port, a)
    tag = a.tag()
    a.send(f"{tag} IDLE\r\n")
    assert a.rawline().startswith(b"+ ")

    def switches():
        with open(f"/proc/{pid}/status") as f:
            return sum(int(l.split()[1]) for l in f if "ctxt_switches" in l)
    # the command's own tail (after the "+") may still run: start counting
    # once the process has been asleep for 0.3 s (at most 3 s of waiting,
    # times SLOW); the event is "no context switch in a 0.3 s step"
    before, settle_end = switches(), time.monotonic() + 3.0 * SLOW
    while time.monotonic() < settle_end:
        time.sleep(0.3)
        now = switches()
        if now == before:
            break
        before = now
    time.sleep(2.0)   # an observation window: the idling imapd must not wake in it
    assert switches() == before, "an idling imapd woke up with nothing to do"
    a.send("DONE\r\n")
    a.collect(tag)


def test_bad_idle_continuation(pair):
    a, b, name = pair
    tag = a.tag()
    a.send(f"{tag} IDLE\r\n")
    assert a.rawline().startswith(b"+ ")
    a.send("NOTDONE\r\n")
    u, t = a.collect(tag)
    assert b" BAD " in t
    a.ok("NOOP")


def test_selected_mailbox_deleted_by_other(pair):
    a, b, name = pair
    b.ok("UNSELECT")
    b.ok(f"DELETE {name}")
    tag = a.tag()
    a.send(f"{tag} NOOP\r\n")
    ln = a.line()
    assert ln.startswith(b"* BYE"), ln
    assert a.closed()


def test_sigquit_during_idle(tmp_path):
    s = ImapServer(tmp_path, users=("alice",))
    try:
        a = s.client()
        a.ok("SELECT INBOX")
        tag = a.tag()
        a.send(f"{tag} IDLE\r\n")
        assert a.rawline().startswith(b"+ ")
        t0 = time.monotonic()
        s.proc.send(signal.SIGQUIT)
        ln = a.line(timeout=10 * SLOW)
        assert ln.startswith(b"* BYE"), ln
        assert time.monotonic() - t0 < 3 * SLOW
        assert a.closed()
        assert s.proc.wait(timeout=20 * SLOW) == 0
    finally:
        s.stop()
