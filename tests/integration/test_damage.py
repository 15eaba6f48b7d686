"""Damage is never a new user (issue 16 item 1).

A user that exists but whose user.db was removed, emptied, cut mid-page or
replaced by a database of another schema, or whose user.db has lost its
users.db row, is *damaged*: LMTP answers 451 4.3.0 naming nothing internal,
IMAP LOGIN answers NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP]; nothing is created
in its place; `castorctl status` and `castorctl check` list it; restore-from
(or user reset) brings it back, after which its deliveries replicate again.
On a replica the master's changes for a damaged user are refused by name,
never applied into a fresh database, and every other user keeps replicating.
"""
import hashlib
import imaplib
import poplib
import smtplib
import sqlite3
from pathlib import Path

from castor_mail import lmtp_send
from conftest import free_ports, wait_for
from repl_util import SLOW, converged, ctl, guids_in, pair

PW = "pw-damage"
KINDS = ["removed", "empty", "truncated", "schema", "rowless"]


def msg(user, n):
    return (f"From: s@example.org\r\nTo: {user}@example.org\r\nSubject: {user} {n}\r\n"
            f"Message-ID: <{user}-{n}@example.org>\r\n\r\nbody {user} {n}\r\n").encode()


def lmtp(port):
    c = smtplib.LMTP("127.0.0.1", port, timeout=20 * SLOW)
    c.ehlo("mta.test")
    return c


def deliver(port, user, n):
    c = lmtp(port)
    rep = lmtp_send(c, "s@example.org", [user], msg(user, n))
    c.quit()
    return rep[0]


def spool(server, user):
    return Path(server.root) / "spool" / user[0] / user


def fold_wal(db):
    """Checkpoint a user.db's WAL into it, as a clean stop leaves it."""
    c = sqlite3.connect(str(db))
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    c.close()


def damage(server, user, kind):
    """Damage a stopped server's user; returns a fingerprint of what is left."""
    d = spool(server, user)
    db = d / "user.db"
    if kind == "removed":
        for p in d.glob("user.db*"):
            p.unlink()
    elif kind == "empty":
        for p in d.glob("user.db*"):
            p.write_bytes(b"")
    elif kind == "truncated":
        fold_wal(db)
        (d / "user.db-wal").unlink(missing_ok=True)
        size = db.stat().st_size
        assert size >= 8192
        with open(db, "r+b") as f:
            f.truncate(size - 2048)
    elif kind == "schema":
        for p in d.glob("user.db*"):
            p.unlink()
        c = sqlite3.connect(str(db))
        c.execute("CREATE TABLE notes(x TEXT)")
        c.execute("INSERT INTO notes VALUES ('not a mail store')")
        c.commit()
        c.close()
    elif kind == "rowless":
        c = sqlite3.connect(str(Path(server.root) / "db" / "users.db"), timeout=30)
        c.execute("DELETE FROM users WHERE name = ?", (user,))
        c.commit()
        c.close()
    return fingerprint(server, user)


def fingerprint(server, user):
    db = spool(server, user) / "user.db"
    data = db.read_bytes() if db.exists() else None
    c = sqlite3.connect(str(Path(server.root) / "db" / "users.db"), timeout=30)
    row = c.execute("SELECT count(*) FROM users WHERE name = ?", (user,)).fetchone()[0]
    c.close()
    return (hashlib.sha1(data).hexdigest() if data is not None else None, row)


def add_services(server):
    base = free_ports(3)
    server.add_services(f'  lmtp cmd="lmtpd" listen="127.0.0.1:{base}"\n'
                        f'  imap cmd="imapd" listen="127.0.0.1:{base + 1}"\n'
                        f'  pop3 cmd="pop3d" listen="127.0.0.1:{base + 2}"', section="SERVICES")
    return base, base + 1, base + 2


def useradd(server, user):
    ctl(server.conf, "-q", "user", "add", user, "--password", PW)


def test_damage_on_master(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path, start=False)
    lport, iport, pport = add_services(m)
    r.start()
    m.start()
    victims = {f"v{i}": kind for i, kind in enumerate(KINDS)}
    for u in list(victims) + ["bob"]:
        useradd(m, u)
        for n in range(3):
            assert deliver(lport, u, n)[0] == 250
    converged(m, r)
    before = {u: r.dump(u) for u in victims}

    assert m.quit() == 0
    left = {u: damage(m, u, kind) for u, kind in victims.items()}
    m.start()

    for u, kind in victims.items():
        # LMTP: a temporary refusal that names nothing internal
        code, text = deliver(lport, u, 9)
        assert code == 451 and text.startswith("4.3.0"), (u, kind, code, text)
        assert "/" not in text and "user.db" not in text and "spool" not in text, text
        # IMAP and POP3: a temporary error at login
        im = imaplib.IMAP4("127.0.0.1", iport, timeout=20 * SLOW)
        try:
            im.login(u, PW)
            raise AssertionError(f"{u} ({kind}): LOGIN succeeded")
        except imaplib.IMAP4.error as e:
            assert "UNAVAILABLE" in str(e), (u, kind, e)
        im.logout()
        p = poplib.POP3("127.0.0.1", pport, timeout=20 * SLOW)
        p.user(u)
        try:
            p.pass_(PW)
            raise AssertionError(f"{u} ({kind}): PASS succeeded")
        except poplib.error_proto as e:
            assert b"[SYS/TEMP]" in e.args[0], (u, kind, e)
        p.quit()
        # nothing was created in its place
        assert fingerprint(m, u) == left[u], (u, kind)
        assert not (spool(m, u) / "user.db").exists() or kind != "removed"

    # a bystander is served and replicated as usual
    assert deliver(lport, "bob", 9)[0] == 250
    converged(m, r, user="bob")

    # status lists the damaged users it has seen, check lists them all
    st = ctl(m.conf, "status", check=False)
    assert st.returncode == 1, st.stdout
    for u, kind in victims.items():
        if kind != "rowless":
            assert f"DAMAGED user {u}:" in st.stdout, st.stdout
    ck = ctl(m.conf, "check", "--all", check=False)
    assert ck.returncode != 0, ck.stdout
    for u in victims:
        assert f"{u}: damaged:" in ck.stdout, ck.stdout
    assert "bob: clean" in ck.stdout
    # the master logged each refusal with the user's name
    log = m.log()
    for u in victims:
        assert f"user={u}" in log, u
    # and the replica still has each victim's messages, untouched
    for u in victims:
        assert r.dump(u) == before[u], u
    # a graceful stop is not a clean one while users are damaged (exit bit 4)
    assert m.quit() & 4
    for u, kind in victims.items():
        if kind != "rowless":
            assert f"damaged user user={u}" in m.log(), u
    m.start()

    # the ways out: restore-from the replica (for the rowless one it makes
    # the user, keeping the old spool aside, and a password is set after),
    # or user reset first
    for u, kind in victims.items():
        if kind == "empty":
            cp = ctl(m.conf, "user", "reset", u, check=False)
            assert cp.returncode == 0, cp.stderr
            assert (spool(m, u) / "user.db").stat().st_size > 0
        cp = ctl(m.conf, "restore-from", "r1", u, check=False)
        assert cp.returncode == 0, (u, kind, cp.stdout, cp.stderr)
        assert len(guids_in(m.dump(u))) == 3, (u, kind, m.dump(u))
        assert "before restore" not in m.dump(u), m.dump(u)
        if kind == "rowless":
            ctl(m.conf, "-q", "user", "passwd", u, "--password", PW)
    converged(m, r)
    st = ctl(m.conf, "status", check=False)
    assert "DAMAGED" not in st.stdout, st.stdout
    ck = ctl(m.conf, "check", "--all", check=False)
    assert ck.returncode == 0, ck.stdout

    # deliveries replicate again
    for u in victims:
        assert deliver(lport, u, 10)[0] == 250
    converged(m, r)
    for u in victims:
        assert len(guids_in(r.dump(u))) == 4, (u, r.dump(u))


def test_damage_on_replica(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path, start=False)
    lport, _, _ = add_services(m)
    r.start()
    m.start()
    victims = {f"w{i}": kind for i, kind in enumerate(KINDS[:4])}
    for u in list(victims) + ["bob", "rowless"]:
        useradd(m, u)
        assert deliver(lport, u, 0)[0] == 250
    converged(m, r)

    assert r.quit() == 0
    left = {u: damage(r, u, kind) for u, kind in victims.items()}
    damage(r, "rowless", "rowless")
    r.start()

    for u in list(victims) + ["bob", "rowless"]:
        assert deliver(lport, u, 1)[0] == 250
    # every other user keeps replicating
    converged(m, r, user="bob")
    # a user.db without its users row is not used: the replica does not know
    # the user, so the master's explicit creation makes it afresh (the old
    # files kept in deleted/) and fills it
    converged(m, r, user="rowless")
    kept = list((Path(r.root) / "deleted").glob("rowless.*/user.db"))
    assert kept, list((Path(r.root) / "deleted").iterdir())
    # the master's changes for each damaged user are refused by name ...
    wait_for(lambda: all(f"refusing changes for a damaged user user={u}" in r.log()
                         for u in victims), timeout=30 * SLOW, what="replica refusals")
    wait_for(lambda: all(f"user={u}" in m.log() and "damaged" in m.log() for u in victims),
             timeout=30 * SLOW, what="master logs the refusals")
    # ... and never applied into a fresh database
    for u, kind in victims.items():
        assert fingerprint(r, u) == left[u], (u, kind)
    # a later delivery to bob still flows
    assert deliver(lport, "bob", 2)[0] == 250
    converged(m, r, user="bob")

    # the replica's status and check list them
    st = ctl(r.conf, "status", check=False)
    assert st.returncode == 1, st.stdout
    for u in victims:
        assert f"DAMAGED user {u}:" in st.stdout, st.stdout
    ck = ctl(r.conf, "check", "--all", check=False)
    assert ck.returncode != 0
    for u in victims:
        assert f"{u}: damaged:" in ck.stdout, ck.stdout

    # the master parked each of them (one user's damage holds no one else back)
    st = m.status("r1")
    assert st.get("parked") == str(len(victims)), st
    # the way out on a replica: user reset, then release on the master
    # (without it, the master retries after sync_park_retry)
    for u in victims:
        cp = ctl(r.conf, "user", "reset", u, check=False)
        assert cp.returncode == 0, cp.stderr
        assert deliver(lport, u, 3)[0] == 250
    for u in victims:
        cp = ctl(m.conf, "sync", "--release", "r1", u, check=False)
        assert cp.returncode == 0, cp.stderr
        wait_for(lambda: f"user unparked channel=r1 user={u} " in m.log(),
                 timeout=15 * SLOW, what=f"{u} released")
    for u in victims:
        converged(m, r, user=u)
        assert len(guids_in(r.dump(u))) == 3, (u, r.dump(u))
