"""Every writer bounds its write-ahead log (issue 16, item 9).

A bulk writer (castorctl import here; restore-from, a replica's full sync
and check --repair take the same commit path) leaves user.db-wal at most
STORE_WAL_MAX (4 MiB), and a WAL left over larger than that (made with the
bound off: the failpoint store.wal.unbounded, as versions before the bound
left it) is checkpointed and truncated by whichever process opens the user
next: castorctl, or castord's imapd."""
import imaplib
import random

from castor_mail import MailServer
from conftest import binpath, run

WAL_MAX = 4 * 1024 * 1024
UNBOUNDED = {"CASTOR_FAILPOINTS": "store.wal.unbounded=error"}


def write_mbox(path, n, seed):
    rnd = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            body = "\n".join("%032x %d" % (rnd.getrandbits(128), j) for j in range(30))
            f.write(f"From s{i}@example.com Mon Jan  5 01:02:03 2015\n"
                    f"From: s{i}@example.com\nTo: u@example.org\nSubject: m{i}\n"
                    f"Message-ID: <{seed}.{i}@wal.test>\n\n{body}\n\n")


def wal_bytes(srv, user):
    (db,) = srv.root.glob(f"spool/*/{user}/user.db")
    wal = db.with_name("user.db-wal")
    return wal.stat().st_size if wal.exists() else 0


def import_(srv, user, mbox, env=None):
    return run([binpath("castorctl"), "-C", srv.conf, "import", user, mbox], env=env, timeout=600)


def test_import_leaves_a_bounded_wal(procs, tmp_path):
    srv = MailServer(procs, tmp_path, start=False)
    mbox = tmp_path / "a.mbox"
    write_mbox(mbox, 4000, 1)
    cp = import_(srv, "alice", mbox)
    assert "imported 4000 messages" in cp.stdout, cp.stdout
    assert wal_bytes(srv, "alice") <= WAL_MAX


def test_a_leftover_wal_is_truncated_by_whoever_opens_the_user(procs, tmp_path):
    srv = MailServer(procs, tmp_path, start=False)
    mbox = tmp_path / "a.mbox"
    write_mbox(mbox, 4000, 2)
    for user in ("alice", "bob"):
        import_(srv, user, mbox, env=UNBOUNDED)
        # what an import left before the bound: far more than the bound
        assert wal_bytes(srv, user) > WAL_MAX, wal_bytes(srv, user)
    # castorctl opens alice
    cp = srv.ctl("check", "alice")
    assert cp.stdout.strip() == "alice: clean", cp.stdout
    assert wal_bytes(srv, "alice") <= WAL_MAX
    # castord's imapd serves bob
    srv.start()
    im = imaplib.IMAP4("127.0.0.1", srv.base, timeout=60)
    try:
        im.login("bob", "pw-bob")
        typ, data = im.select("INBOX", readonly=True)
        assert typ == "OK" and int(data[0]) == 4000, data
    finally:
        im.logout()
    assert wal_bytes(srv, "bob") <= WAL_MAX
    assert "wal checkpointed user=bob when=open" in srv.log()


def test_a_replica_applying_a_full_sync_bounds_its_wal(procs, tmp_path):
    """A guard rather than a reproduction: at this size syncd's checkpoint
    thread keeps up even with the bound off (its writes pause between
    rounds); the bound is what holds when it does not."""
    from repl_util import SLOW, converged, pair
    m, (r,) = pair(procs, tmp_path, start=False)
    mbox = tmp_path / "a.mbox"
    write_mbox(mbox, 4000, 3)
    m.drv("useradd carol pw-c\n")
    run([binpath("castorctl"), "-C", m.conf, "import", "carol", mbox], timeout=600)
    r.start()
    m.start()
    converged(m, r, timeout=120 * SLOW, user="carol")
    (db,) = r.root.glob("spool/*/carol/user.db")
    wal = db.with_name("user.db-wal")
    size = wal.stat().st_size if wal.exists() else 0
    assert r.dump("carol").count("guid=") == 4000
    assert size <= WAL_MAX
