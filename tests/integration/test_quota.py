"""Per-user quota limits: `castorctl user quota` (set, show, clear, bad
input), their enforcement by LMTP (452 4.2.2) and IMAP APPEND (NO
[OVERQUOTA]) ahead of castor.conf's defaults, the IMAP QUOTA extension
(RFC 9208: GETQUOTAROOT, GETQUOTA, SETQUOTA refused), and the limits
replicated to a replica (castorctl and imapd there, across restarts)."""
import re

from castor_mail import MailServer, fresh, lmtp_send
from conftest import wait_for
from imap_helpers import Raw
from repl_util import SLOW, ctl, pair

MSG = (b"From: Sender <sender@example.org>\r\nTo: alice@example.org\r\nSubject: q\r\n"
       b"Message-ID: <q1@example.org>\r\n\r\nSome text.\r\n")


def show(srv, user):
    cp = srv.ctl("user", "quota", user)
    return cp.stdout.splitlines()


def imap(srv, user):
    c = Raw(srv.base, timeout=20 * SLOW)
    c.ok(f'LOGIN {user} "{srv.users[user]}"')
    return c


def used_bytes(srv, user):
    return sum(r["size"] for recs in srv.dump(user).values() for r in recs)


def append(c, size=200):
    body = b"Subject: a\r\n\r\n" + b"x" * (size - 16) + b"\r\n"
    return c.cmd(b"APPEND INBOX {%d+}\r\n%s" % (len(body), body))[1]


def kib(n):
    return (n + 1023) // 1024


def test_castorctl_user_quota(procs, tmp_path):
    srv = MailServer(procs, tmp_path, start=False,
                     conf="quota_default_bytes: 1m\nquota_default_messages: 50\n")
    assert show(srv, "alice") == ["alice storage used=0 limit=1048576 from=default",
                                  "alice messages used=0 limit=50 from=default"]
    cp = srv.ctl("user", "quota", "alice", "--storage", "10k", "--messages", "3")
    assert cp.stdout.splitlines() == ["alice storage used=0 limit=10240 from=user",
                                      "alice messages used=0 limit=3 from=user"]
    # one resource at a time; 0 = no limit even though a default exists
    srv.ctl("-q", "user", "quota", "alice", "--messages", "default")
    srv.ctl("-q", "user", "quota", "alice", "--storage", "0")
    assert show(srv, "alice") == ["alice storage used=0 limit=none from=user",
                                  "alice messages used=0 limit=50 from=default"]
    assert re.search(r"^alice password=yes quota_bytes=0 quota_messages=default ",
                     srv.ctl("user", "list", "--long").stdout, re.M)
    assert show(srv, "bob")[0] == "bob storage used=0 limit=1048576 from=default"
    srv.ctl("-q", "user", "quota", "alice", "--storage", "2g", "--messages", "7")
    # bad input: a usage error (2), a bad name (6), an unknown user (4); nothing changes
    for args, code in ((["--storage", "10x"], 2), (["--storage", "-1"], 2),
                       (["--storage", ""], 2), (["--messages", "1k"], 2),
                       (["--messages", "99999999999999999999"], 2),
                       (["--none", "--storage", "1k"], 2), (["--password", "x", "--none"], 2)):
        cp = srv.ctl("user", "quota", "alice", *args, check=False)
        assert cp.returncode == code, (args, cp.returncode, cp.stderr)
        assert cp.stderr.startswith("castorctl: usage: "), cp.stderr
    assert srv.ctl("user", "del", "bob", "--none", check=False).returncode == 2
    assert srv.ctl("user", "quota", "Bad/Name", "--none", check=False).returncode == 6
    assert srv.ctl("user", "quota", "alice", "bob", check=False).returncode == 2
    for args in ([], ["--none"], ["--messages", "5"]):
        cp = srv.ctl("user", "quota", "nosuch", *args, check=False)
        assert cp.returncode == 4 and "no such user" in cp.stderr, cp
    assert show(srv, "alice") == ["alice storage used=0 limit=2147483648 from=user",
                                  "alice messages used=0 limit=7 from=user"]
    # --none: the user's own limits are gone, the defaults apply again
    srv.ctl("-q", "user", "quota", "alice", "--none")
    assert show(srv, "alice") == ["alice storage used=0 limit=1048576 from=default",
                                  "alice messages used=0 limit=50 from=default"]


def test_own_limit_enforced_before_the_default(procs, tmp_path):
    srv = MailServer(procs, tmp_path, conf="quota_default_messages: 10\n")
    srv.ctl("user", "quota", "alice", "--messages", "2")
    c = srv.lmtp()
    for _ in range(2):
        assert [r[0] for r in lmtp_send(c, "s@x.y", ["alice", "bob"], fresh(MSG))] == [250, 250]
    rep = lmtp_send(c, "s@x.y", ["alice", "bob"], fresh(MSG))
    assert [r[0] for r in rep] == [452, 250] and rep[0][1].startswith("4.2.2"), rep
    c.quit()
    assert srv.count("alice") == 2 and srv.count("bob") == 3
    a, b = imap(srv, "alice"), imap(srv, "bob")
    t = append(a)
    assert t.split()[1:3] == [b"NO", b"[OVERQUOTA]"], t
    assert append(b).split()[1] == b"OK"
    assert srv.count("alice") == 2 and srv.count("bob") == 4
    # a storage limit of the user's own: room for what is there and 10 octets more
    used = used_bytes(srv, "alice")
    srv.ctl("user", "quota", "alice", "--messages", "0", "--storage", str(used + 10))
    t = append(a, 100)
    assert t.split()[1:3] == [b"NO", b"[OVERQUOTA]"], t
    c = srv.lmtp()
    rep = lmtp_send(c, "s@x.y", ["alice", "bob"], fresh(MSG))
    assert [r[0] for r in rep] == [452, 250] and rep[0][1].startswith("4.2.2"), rep
    c.quit()
    assert srv.count("alice") == 2
    # cleared: alice is back under the default of 10 messages
    srv.ctl("user", "quota", "alice", "--none")
    assert append(a).split()[1] == b"OK"
    assert srv.count("alice") == 3


def test_getquotaroot_getquota_setquota(procs, tmp_path):
    srv = MailServer(procs, tmp_path)
    pre = Raw(srv.base, timeout=20 * SLOW)
    pre.bad('GETQUOTA ""')
    c = imap(srv, "alice")
    u, _ = c.ok("CAPABILITY")
    caps = u[0].split()
    assert {b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"} <= set(caps), caps
    assert b"QUOTASET" not in caps
    # no limit at all: no quota root
    u, _ = c.ok("GETQUOTAROOT INBOX")
    assert u == [b'* QUOTAROOT "INBOX"']
    c.no('GETQUOTA ""', "NONEXISTENT")
    srv.ctl("user", "quota", "alice", "--storage", "10k", "--messages", "5")
    u, _ = c.ok("GETQUOTAROOT INBOX")
    assert u == [b'* QUOTAROOT "INBOX" ""', b'* QUOTA "" (STORAGE 0 10 MESSAGE 0 5)']
    u, _ = c.ok('GETQUOTA ""')
    assert u == [b'* QUOTA "" (STORAGE 0 10 MESSAGE 0 5)']
    lm = srv.lmtp()
    for _ in range(2):
        assert lmtp_send(lm, "s@x.y", ["alice"], fresh(MSG))[0][0] == 250
    lm.quit()
    k = kib(used_bytes(srv, "alice"))
    assert k >= 1
    u, _ = c.ok('GETQUOTA ""')
    assert u == [f'* QUOTA "" (STORAGE {k} 10 MESSAGE 2 5)'.encode()]
    c.ok("CREATE Work")
    u, _ = c.ok("GETQUOTAROOT Work")    # one root for every mailbox
    assert u == [b'* QUOTAROOT "Work" ""', f'* QUOTA "" (STORAGE {k} 10 MESSAGE 2 5)'.encode()]
    c.no("GETQUOTAROOT work", "NONEXISTENT")
    u, _ = c.ok("GETQUOTAROOT inbox")    # the name as the store has it
    assert u == [b'* QUOTAROOT "INBOX" ""', f'* QUOTA "" (STORAGE {k} 10 MESSAGE 2 5)'.encode()]
    c.no("GETQUOTAROOT Missing", "NONEXISTENT")
    c.no('GETQUOTA "user.alice"', "NONEXISTENT")
    # an expunge gives the room back
    c.ok("SELECT INBOX")
    c.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    c.ok("EXPUNGE")
    k1 = kib(used_bytes(srv, "alice"))
    u, _ = c.ok('GETQUOTA ""')
    assert u == [f'* QUOTA "" (STORAGE {k1} 10 MESSAGE 1 5)'.encode()]
    # a resource without a limit is left out
    srv.ctl("user", "quota", "alice", "--storage", "0")
    u, _ = c.ok('GETQUOTA ""')
    assert u == [b'* QUOTA "" (MESSAGE 1 5)']
    # SETQUOTA: the administrator's, refused whatever it asks; malformed is BAD
    for cmd in ('SETQUOTA "" (STORAGE 512)', 'SETQUOTA "" ()',
                'SETQUOTA "" (STORAGE 512 MESSAGE 1000)', "SETQUOTA other (MESSAGE 1)"):
        c.no(cmd, "NOPERM")
    for cmd in ('SETQUOTA "" (STORAGE)', 'SETQUOTA "" STORAGE 5', 'SETQUOTA ""',
                'SETQUOTA "" (STORAGE x)', "GETQUOTA", "GETQUOTAROOT", 'GETQUOTA "" x'):
        c.bad(cmd)
    u, _ = c.ok('GETQUOTA ""')
    assert u == [b'* QUOTA "" (MESSAGE 1 5)']
    assert show(srv, "alice")[1] == "alice messages used=1 limit=5 from=user"
    # bob has no limit of his own and there is no default
    b = imap(srv, "bob")
    u, _ = b.ok("GETQUOTAROOT INBOX")
    assert u == [b'* QUOTAROOT "INBOX"']


def _imap_service(server):
    server.add_services(f'  imap cmd="imapd" listen="127.0.0.1:{server.base}" prefork=1',
                        section="SERVICES")


def _getquota(port, pw):
    c = Raw(port, timeout=20 * SLOW)
    c.ok(f'LOGIN alice "{pw}"')
    u, _ = c.ok("GETQUOTAROOT INBOX")
    c.ok("LOGOUT")
    return u


def test_quota_replicates(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path, start=False)
    _imap_service(m)
    _imap_service(r)
    r.start()
    m.start()
    pw = "pw-alice"
    ctl(m.conf, "user", "add", "alice", "--password", pw)
    ctl(m.conf, "user", "quota", "alice", "--storage", "5m", "--messages", "100")
    c = Raw(m.base, timeout=20 * SLOW)
    c.ok(f'LOGIN alice "{pw}"')
    c.ok(b"APPEND INBOX {20+}\r\nSubject: x\r\n\r\nhello")
    c.ok("LOGOUT")
    want = ["alice storage used=20 limit=5242880 from=user",
            "alice messages used=1 limit=100 from=user"]
    assert ctl(m.conf, "user", "quota", "alice").stdout.splitlines() == want

    def replica_shows(lines):
        cp = ctl(r.conf, "user", "quota", "alice", check=False)
        return cp.returncode == 0 and cp.stdout.splitlines() == lines

    wait_for(lambda: replica_shows(want), timeout=30 * SLOW, what="the quota on the replica")
    quota = [b'* QUOTAROOT "INBOX" ""', b'* QUOTA "" (STORAGE 1 5120 MESSAGE 1 100)']
    assert _getquota(r.base, pw) == quota
    # a replica does not set limits of its own
    cp = ctl(r.conf, "user", "quota", "alice", "--none", check=False)
    assert cp.returncode == 7 and "replica" in cp.stderr, cp
    # both restarted (no failover): the limit is still there on the replica
    assert m.quit() == 0
    assert r.quit() == 0
    r.start()
    m.start()
    assert replica_shows(want)
    assert _getquota(r.base, pw) == quota
    # cleared on the master: cleared on the replica (whose defaults are none)
    ctl(m.conf, "user", "quota", "alice", "--none")
    wait_for(lambda: replica_shows(["alice storage used=20 limit=none from=default",
                                    "alice messages used=1 limit=none from=default"]),
             timeout=30 * SLOW, what="the cleared quota on the replica")
    assert _getquota(r.base, pw) == [b'* QUOTAROOT "INBOX"']
