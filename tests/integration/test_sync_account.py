"""The replication credential is not a mail user (issue 16, item 7).

The credential a master's sync-client presents lives in users.db
sync_auth (castorctl init --sync-password, castorctl sync-password), apart
from the users: it logs in nowhere but syncd, and a mail user named like it
is an ordinary mail user, replicated like any other, with no say in the
sync login.  Real symmetric pairs (test_failover_util.Pair)."""
import imaplib
import poplib
import signal
import socket
import sqlite3
import base64

import pytest

from conftest import binpath, run, wait_for
from repl_util import SLOW, SYNC_PW
from test_failover import deliver, subjects
from test_failover_util import Pair, ctl

X_PW = "mail-user-pw"


@pytest.fixture
def pair(procs, tmp_path):
    p = Pair(procs, tmp_path)
    yield p
    p.cleanup()


def imap_login_ok(node, user, pw):
    im = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=30 * SLOW)
    try:
        im.login(user, pw)
        return True
    except imaplib.IMAP4.error:
        return False
    finally:
        try:
            im.logout()
        except Exception:
            pass


def pop3_login_ok(node, user, pw):
    p = poplib.POP3("127.0.0.1", node.pop3_port, timeout=30 * SLOW)
    try:
        p.user(user)
        p.pass_(pw)
        return True
    except poplib.error_proto:
        return False
    finally:
        try:
            p.quit()
        except Exception:
            pass


def sync_auth_ok(node, authname, pw):
    """AUTHENTICATE PLAIN on node's syncd (loopback: no TLS needed)."""
    s = socket.create_connection(("127.0.0.1", node.syncd_port), timeout=30 * SLOW)
    try:
        f = s.makefile("rb")
        greeting = f.readline()
        assert greeting.startswith(b"* OK"), greeting
        tok = base64.b64encode(b"\0" + authname.encode() + b"\0" + pw.encode()).decode()
        s.sendall(f"A1 AUTHENTICATE PLAIN {tok}\r\n".encode())
        for _ in range(20):
            line = f.readline()
            if line.startswith(b"A1 "):
                return line.startswith(b"A1 OK")
            assert line, "syncd closed without answering"
        raise AssertionError("no tagged answer to AUTHENTICATE")
    finally:
        s.close()


def restart(node):
    node.proc.send(signal.SIGQUIT)
    node.proc.wait(timeout=60 * SLOW)
    node.start()


def test_sync_credential_is_not_a_mail_user(pair):
    p = pair.start()
    a, b = p.a, p.b
    # the replica's credential opens a sync session and nothing else
    assert sync_auth_ok(b, "sync", SYNC_PW)
    assert ctl(b.conf, "user", "list").stdout.split() == []
    for node in (a, b):
        assert not imap_login_ok(node, "sync", SYNC_PW), node.name
        assert not pop3_login_ok(node, "sync", SYNC_PW), node.name

    # a mail user of the same name is just a mail user, replicated as one
    ctl(a.conf, "user", "add", "sync", "--password", X_PW)
    ctl(a.conf, "user", "add", "alice", "--password", "pw")
    assert deliver(a, "to-sync-1", user="sync")[0] == 250
    wait_for(lambda: subjects(b, user="sync", pw=X_PW) == ["to-sync-1"], timeout=30 * SLOW,
             what="the mail user sync on the replica")
    assert ctl(b.conf, "user", "list").stdout.split() == ["alice", "sync"]
    # its password opens no sync session; the credential still does
    assert not sync_auth_ok(b, "sync", X_PW)
    assert sync_auth_ok(b, "sync", SYNC_PW)
    assert not imap_login_ok(b, "sync", SYNC_PW)

    # replication survives the replica's restart (a new sync login)
    restart(b)
    assert deliver(a, "after-restart") [0] == 250
    assert deliver(a, "to-sync-2", user="sync")[0] == 250
    wait_for(lambda: subjects(b) == ["after-restart"], timeout=30 * SLOW,
             what="delivery after the replica's restart on the replica")
    wait_for(lambda: subjects(b, user="sync", pw=X_PW) == ["to-sync-1", "to-sync-2"],
             timeout=30 * SLOW, what="the mail user sync after the restart")
    assert "auth failed service=syncd" not in a.log()


def test_castorctl_sync_password_replaces_the_credential(tmp_path):
    pwf = tmp_path / "pw"
    pwf.write_text("first\n")
    root = tmp_path / "r"
    from conftest import free_ports
    run([binpath("castorctl"), "-q", "init", root, "--port-base", free_ports(5), "--role", "replica",
         "--sync-password-file", pwf])
    conf = root / "castor.conf"
    db = sqlite3.connect(str(root / "db" / "users.db"))
    h1 = db.execute("select hash from sync_auth where authname = 'sync'").fetchone()[0]
    assert db.execute("select count(*) from users").fetchone()[0] == 0
    db.close()
    cp = ctl(conf, "sync-password", "--password", "second")
    assert "authname sync" in cp.stdout
    db = sqlite3.connect(str(root / "db" / "users.db"))
    h2 = db.execute("select hash from sync_auth where authname = 'sync'").fetchone()[0]
    db.close()
    assert h2 != h1 and h2.startswith("$y$")


def test_old_root_moves_its_sync_account_out_of_the_users(tmp_path):
    """A replica made before sync_auth kept its credential as the users row
    "sync": the first open moves the hash and retires the row and spool."""
    pwf = tmp_path / "pw"
    pwf.write_text(SYNC_PW + "\n")
    root = tmp_path / "r"
    from conftest import free_ports
    run([binpath("castorctl"), "-q", "init", root, "--port-base", free_ports(5), "--role", "replica",
         "--sync-password-file", pwf])
    db = sqlite3.connect(str(root / "db" / "users.db"))
    h = db.execute("select hash from sync_auth").fetchone()[0]
    # the old layout: no sync_auth table, the credential a users row
    db.execute("drop table sync_auth")
    db.execute("delete from meta where key = 'sync_auth'")
    db.execute("insert into users(name, hash, created) values ('sync', ?, 0)", (h,))
    db.commit()
    db.close()
    (root / "spool").mkdir(exist_ok=True)
    conf = root / "castor.conf"
    assert ctl(conf, "user", "list").stdout.split() == []
    db = sqlite3.connect(str(root / "db" / "users.db"))
    assert db.execute("select hash from sync_auth where authname = 'sync'").fetchone()[0] == h
    # and only once: a mail user named sync replicated later stays a user
    db.execute("insert into users(name, hash, created) values ('sync', 'x', 0)")
    db.commit()
    db.close()
    assert ctl(conf, "user", "list").stdout.split() == ["sync"]
