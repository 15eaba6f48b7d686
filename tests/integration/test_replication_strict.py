"""Strict semisync (sync_semisync_strict: yes): a refusal changes nothing.

With the replica stopped, every change an IMAP, LMTP or POP3 client asks
for is refused before it is made (NO [UNAVAILABLE], 451, -ERR), and the
mailbox stays exactly as it was; a user's first login still works (the
autocreated folders need no replica).  With the replica SIGSTOPped (its
connection open, nothing confirmed), an APPEND or a delivery that no
replica confirms in time is undone before the refusal, and the MTA's
retry is stored (once) when the replica is back."""
import imaplib
import poplib
import re
import signal
import smtplib

from castor_mail import lmtp_send
from conftest import wait_for
from repl_util import SLOW, converged, ctl, pair

imaplib.Commands.setdefault("MOVE", ("SELECTED",))

MSG = (b"From: s@example.org\r\nTo: ann@example.org\r\nSubject: strict\r\n"
       b"Message-ID: <strict-%d@example.org>\r\n\r\nbody %d\r\n")


def strict_pair(procs, tmp_path, timeout="300ms"):
    m, (r,) = pair(procs, tmp_path, start=False,
                   conf_extra=f"sync_mode: semisync\nsync_semisync_timeout: {timeout}\n"
                              "sync_semisync_strict: yes")
    m.imap_port, m.pop3_port, m.lmtp_port = m.base, m.base + 1, m.base + 2
    m.add_services(f'  imap cmd="imapd" listen="127.0.0.1:{m.imap_port}"\n'
                   f'  pop3 cmd="pop3d" listen="127.0.0.1:{m.pop3_port}"\n'
                   f'  lmtp cmd="lmtpd" listen="127.0.0.1:{m.lmtp_port}"', section="SERVICES")
    r.start()
    m.start()
    wait_for(lambda: m.status("r1").get("state") == "connected", timeout=20 * SLOW,
             what="connected")
    return m, r


def imap(m, user="ann", pw="pw"):
    c = imaplib.IMAP4("127.0.0.1", m.imap_port, timeout=30 * SLOW)
    c.login(user, pw)
    return c


def lmtp(m):
    c = smtplib.LMTP("127.0.0.1", m.lmtp_port, timeout=30 * SLOW)
    c.ehlo("mta.test")
    return c


def state(m, user="ann"):
    """What a client can see: mailboxes, and per mailbox its STATUS and
    every message's UID and FLAGS."""
    c = imap(m, user)
    try:
        typ, lst = c.list()
        assert typ == "OK", lst
        names = sorted(l.rsplit(b" ", 1)[-1].strip(b'"').decode() for l in lst)
        out = {}
        for n in names:
            typ, st = c.status(n, "(MESSAGES UIDNEXT UNSEEN)")
            assert typ == "OK", st
            typ, _ = c.select(n, readonly=True)
            assert typ == "OK"
            typ, f = c.uid("FETCH", "1:*", "(UID FLAGS)")
            out[n] = (st[0].decode(), sorted(x.decode() for x in f if x))
            c.close()
        return out
    finally:
        c.logout()


def not_connected(m):
    return m.status("r1").get("state") not in ("connected", None)


def seed(m, r):
    """ann: INBOX with 3 messages (uid 3 \\Deleted), and a folder Work."""
    ctl(m.conf, "user", "add", "ann", "--password", "pw")
    c = lmtp(m)
    for i in range(3):
        rep = lmtp_send(c, "s@example.org", ["ann"], MSG % (i, i))
        assert rep[0][0] == 250, rep
    c.quit()
    c = imap(m)
    assert c.create("Work")[0] == "OK"
    c.select("INBOX")
    assert c.uid("STORE", "3", "+FLAGS", r"(\Deleted)")[0] == "OK"
    c.logout()
    converged(m, r)


def expect_no(resp, code="UNAVAILABLE"):
    typ, data = resp
    assert typ == "NO" and code.encode() in b" ".join(d for d in data if isinstance(d, bytes)), resp


def test_no_replica_every_refusal_changes_nothing(procs, tmp_path):
    m, r = strict_pair(procs, tmp_path)
    seed(m, r)
    assert r.quit() == 0
    wait_for(lambda: not_connected(m), timeout=20 * SLOW, what="channel down")
    before = state(m)

    c = imap(m)
    for _ in range(2):   # a client that retries leaves no copy either
        expect_no(c.append("INBOX", None, None, MSG % (9, 9)))
    expect_no(c.create("New"))
    expect_no(c.rename("Work", "Play"))
    expect_no(c.delete("Work"))
    expect_no(c.subscribe("Work"))
    c.select("INBOX")
    expect_no(c.uid("STORE", "1", "+FLAGS", r"(\Deleted)"))
    expect_no(c.store("2", "+FLAGS", r"(\Seen)"))
    expect_no(c.expunge())
    expect_no(c.uid("EXPUNGE", "3"))
    expect_no(c.uid("COPY", "1", "Work"))
    expect_no(c.uid("MOVE", "1", "Work"))
    typ, data = c.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and b"body 0" in data[0][1], data
    expect_no(c.close())          # it would expunge uid 3: refused, still selected
    c.logout()

    c = lmtp(m)
    for _ in range(2):   # the MTA's retry: refused again, nothing stored
        rep = lmtp_send(c, "s@example.org", ["ann"], MSG % (8, 8))
        assert rep[0][0] == 451 and rep[0][1].startswith("4.4.0"), rep
    c.quit()

    p = poplib.POP3("127.0.0.1", m.pop3_port, timeout=30 * SLOW)
    p.user("ann")
    p.pass_("pw")
    assert p.dele(1).startswith(b"+OK")
    try:
        resp = p.quit()
    except poplib.error_proto as e:
        resp = e.args[0]
    assert resp.startswith(b"-ERR"), resp

    assert state(m) == before

    # a user's first login creates the folders without waiting for a replica
    ctl(m.conf, "user", "add", "bob", "--password", "pw-b")
    c = imap(m, "bob", "pw-b")
    typ, lst = c.list()
    assert typ == "OK" and b"INBOX" in b" ".join(lst), lst
    assert c.select("INBOX")[0] == "OK"
    c.logout()

    # the replica is back: changes are accepted again and replicate
    r.start()
    wait_for(lambda: m.status("r1").get("state") == "connected", timeout=20 * SLOW,
             what="connected")
    c = imap(m)
    assert c.append("INBOX", None, None, MSG % (7, 7))[0] == "OK"
    c.logout()
    converged(m, r)


def norm(st, unflag):
    def flags(f):
        if unflag:
            f = re.sub(r" ?\\Flagged", "", f).replace("( ", "(")
        return f
    return {n: (re.sub(r" ?UIDNEXT \d+", "", s), [flags(f) for f in fl])
            for n, (s, fl) in st.items()}


def test_replica_stalled_append_and_delivery_are_undone(procs, tmp_path):
    m, r = strict_pair(procs, tmp_path, timeout="500ms")
    seed(m, r)
    r.stop_group(signal.SIGSTOP)   # connected, but confirming nothing
    try:
        assert m.status("r1").get("state") == "connected"
        before = state(m)
        c = imap(m)
        for _ in range(2):
            expect_no(c.append("INBOX", None, None, MSG % (9, 9)))
        c.select("INBOX")
        # a flag change either is refused and left undone, or is kept and
        # answered OK (losing it on a failover loses no mail): never NO over it
        typ, _ = c.uid("STORE", "1", "+FLAGS", r"(\Flagged)")
        assert typ in ("OK", "NO")
        flagged = typ == "OK"
        if flagged:   # and says so
            assert any(b"not yet confirmed" in x for x in c.response("OK")[1] if x)
        c.logout()
        cl = lmtp(m)
        rep = lmtp_send(cl, "s@example.org", ["ann"], MSG % (5, 5))
        assert rep[0][0] == 451 and rep[0][1].startswith("4.4.0"), rep
        # two mailboxes of one user (one transaction): both undone
        rep = lmtp_send(cl, "s@example.org", ["ann", "ann+Work"], MSG % (6, 6))
        assert [x[0] for x in rep] == [451, 451], rep
        cl.quit()
        after = state(m)
        # the undone appends used uids: only UIDNEXT may have moved on
        # (and \Flagged on uid 1 if that STORE was answered OK)
        assert norm(after, flagged) == norm(before, False), (before, after)
        log = m.log()
        assert log.count("append not confirmed, undone") == 2, log[-3000:]
        assert log.count("delivery not confirmed, undone") == 3, log[-3000:]
        # POP3: a deletion is refused and left undone, or kept with +OK
        p = poplib.POP3("127.0.0.1", m.pop3_port, timeout=30 * SLOW)
        p.user("ann")
        p.pass_("pw")
        assert p.dele(2).startswith(b"+OK")
        try:
            resp = p.quit()
        except poplib.error_proto as e:
            resp = e.args[0]
        left = state(m)["INBOX"][1]
        if resp.startswith(b"-ERR"):
            assert left == after["INBOX"][1], (after, left)
        else:
            assert resp.startswith(b"+OK") and len(left) == len(after["INBOX"][1]) - 1, left
    finally:
        r.stop_group(signal.SIGCONT)
    converged(m, r)
    # the MTA's retry of the refused delivery is stored, once, not suppressed
    cl = lmtp(m)
    rep = lmtp_send(cl, "s@example.org", ["ann"], MSG % (5, 5))
    assert rep[0][0] == 250 and "duplicate" not in rep[0][1], rep
    rep = lmtp_send(cl, "s@example.org", ["ann"], MSG % (5, 5))
    assert rep[0][0] == 250 and "duplicate suppressed" in rep[0][1], rep
    cl.quit()
    converged(m, r)
    c = imap(m)
    c.select("INBOX", readonly=True)
    typ, data = c.search(None, "BODY", '"body 5"')
    assert typ == "OK" and len(data[0].split()) == 1, data
    c.logout()
