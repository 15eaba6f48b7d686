"""Privilege separation (docs/security.md "Privileges"): castord started as
root runs every child as the unprivileged run user, what Castor creates has
no world bits, castord refuses to run children as root unless told, and a
castord started as the run user works on its own.

These tests need root (CI and the development machine run the suite as root);
`castorctl init` run as root creates the system user castor when it is missing.
"""
import imaplib
import os
import pwd
import re
import select
import stat
import subprocess
from pathlib import Path

import pytest

from castor_mail import MailServer
from castord_util import write_root
from conftest import binpath, free_ports, run, wait_for
import repl_util

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: castord must start as root")

RUN_USER = "castor"


def child_users(pid):
    """(user, pid, command) of every child of pid, as ps reports them."""
    cp = subprocess.run(["ps", "-o", "user=,pid=,comm=", "--ppid", str(pid)], capture_output=True,
                        text=True)
    return [tuple(line.split(None, 2)) for line in cp.stdout.splitlines() if line.strip()]


def assert_not_root(pid, want_min=1):
    # a child between fork() and exec() is still named castord (and for the
    # moment before it switches, root): wait for the listing to settle
    # (and until every preforked child has been started: want_min of them)
    kids = wait_for(lambda: (lambda k: k if len(k) >= want_min and all(c != "castord" for _, _, c in k)
                             else None)(child_users(pid)),
                    timeout=10 * repl_util.SLOW, what=f"{want_min} children exec'ed")
    assert len(kids) >= want_min, kids
    assert all(u != "root" for u, _, _ in kids), f"a child of castord runs as root: {kids}"
    assert all(u == RUN_USER for u, _, _ in kids), kids
    return kids


def world_bits(root, skip=("castord.log",), roots_own=("castord.pid",)):
    """Paths under root that any user may read, write or search, with their modes;
    and paths that do not belong to the run user (castord's pidfile is root's)."""
    uid = pwd.getpwnam(RUN_USER).pw_uid
    loose, foreign = [], []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            if name in skip:
                continue
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode) or stat.S_ISSOCK(st.st_mode):
                continue
            if st.st_mode & 0o007:
                loose.append((str(p), oct(st.st_mode & 0o777)))
            if st.st_uid != uid and name not in roots_own:
                foreign.append((str(p), st.st_uid))
    return loose, foreign


def test_root_start_runs_children_as_run_user(procs, tmp_path):
    s = MailServer(procs, tmp_path)
    assert re.search(r"(?m)^run_user: castor$", (s.root / "castor.conf").read_text())
    assert os.stat(s.root).st_uid == pwd.getpwnam(RUN_USER).pw_uid
    s.wait_log(r"children run as user=castor")
    # castord itself stays root: it binds, and binds again on SIGHUP
    assert Path(f"/proc/{s.pid}/status").read_text().count("Uid:\t0\t") == 1
    kids = assert_not_root(s.pid, want_min=3)
    assert {"imapd", "pop3d", "lmtpd"} <= {c for _, _, c in kids}

    # end to end: deliver, fetch over IMAP and POP3, as the run user's children
    c = s.lmtp()
    c.sendmail("sender@example.org", ["alice"], b"Subject: priv\r\n\r\nhello from root start\r\n")
    c.quit()
    im = imaplib.IMAP4("127.0.0.1", s.base, timeout=20)
    im.login("alice", "pw-alice")
    im.select("INBOX")
    typ, data = im.fetch("1", "(BODY[])")
    assert typ == "OK" and b"hello from root start" in data[0][1]
    im.append("INBOX", None, None, b"Subject: appended\r\n\r\nappended body\r\n")
    im.logout()
    msgs = s.fetch_all("alice")
    assert len(msgs) == 2 and b"hello from root start" in msgs[0]
    # every child that served (new ones included) is still not root
    assert_not_root(s.pid, want_min=3)

    # nothing Castor created (user.db, users.db, spool directories, run/) is open to the world,
    # and all of it belongs to the run user (castorctl run as root acts as run_user)
    assert (s.root / "db" / "users.db").exists()
    assert list(s.root.glob("spool/*/alice/user.db"))
    loose, foreign = world_bits(s.root)
    assert not loose, f"world bits: {loose}"
    assert not foreign, f"not the run user's: {foreign}"
    for p in [s.root / "db" / "users.db", *s.root.glob("spool/*/alice/user.db")]:
        assert stat.S_IMODE(p.stat().st_mode) in (0o600, 0o640), (p, oct(p.stat().st_mode))
    for d in s.root.glob("spool/**/"):
        assert stat.S_IMODE(d.stat().st_mode) & 0o007 == 0, d


def test_replication_children_unprivileged(procs, tmp_path):
    """A master and replica made by castorctl init as root: syncd, sync-client, the
    START/EVENTS castorctl entries all run as the run user; the sync log, cursors
    and status files have no world bits; the replica converges."""
    master, reps = repl_util.pair(procs, tmp_path)
    rep = reps[0]
    master.drv("useradd alice pw-one\nappend alice INBOX 100 a\n")
    repl_util.converged(master, rep)
    wait_for(lambda: master.status("r1").get("bytes_behind") == "0", timeout=30 * repl_util.SLOW,
             what="channel r1 caught up")
    for srv in (master, rep):
        assert_not_root(srv.pid())
    assert "sync-client" in {c for _, _, c in child_users(master.pid())}
    for srv in (master, rep):
        loose, foreign = world_bits(srv.root)
        assert not loose, f"world bits: {loose}"
        assert not foreign, f"not the run user's: {foreign}"
    assert list((master.root / "sync").rglob("*")), "no sync log written"


def test_root_owned_root_refused_without_run_user(procs, tmp_path):
    root = tmp_path / "rootowned"
    svc = 'SERVICES {\n  echo cmd="echod" listen="127.0.0.1:%d"\n}\n' % free_ports(1)
    conf = write_root(root, svc, "shutdown_timeout: 3s\nrun_user: root\n")
    # no run_user: the root's owner, root, would run the children
    (root / "castor.conf").write_text("shutdown_timeout: 3s\n")
    cp = subprocess.run([binpath("castord"), "-C", conf, "-D"], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 78, cp.stderr
    assert "its children would run as root" in cp.stderr and "run_user: root" in cp.stderr

    # a named run_user that does not own the root is refused too
    (root / "castor.conf").write_text("shutdown_timeout: 3s\nrun_user: castor\n")
    cp = subprocess.run([binpath("castord"), "-C", conf, "-D"], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 78 and "not to run_user castor" in cp.stderr, cp.stderr

    # said explicitly, root is accepted, with a warning
    (root / "castor.conf").write_text("shutdown_timeout: 3s\nrun_user: root\n")
    r, w = os.pipe()
    p = procs.start([binpath("castord"), "-C", conf, "-D", "--ready-fd", w], log=root / "castord.log",
                    pass_fds=(w,))
    os.close(w)
    assert select.select([r], [], [], 15)[0], p.output()
    os.close(r)
    assert "children run as root (run_user: root)" in p.output()


def test_unprivileged_start(procs, tmp_path):
    """castord started as the run user runs entirely as that user."""
    s = MailServer(procs, tmp_path, start=False)
    r, w = os.pipe()
    s.proc = procs.start(["setpriv", "--reuid", RUN_USER, "--regid", RUN_USER, "--init-groups",
                          binpath("castord"), "-C", s.conf, "-D", "--ready-fd", w],
                         log=tmp_path / "castord-unpriv.log", pass_fds=(w,))
    os.close(w)
    assert select.select([r], [], [], 15)[0], s.proc.output()
    os.close(r)
    s.pid = s.proc.pid
    assert "children run as" not in s.proc.output()
    assert Path(f"/proc/{s.pid}/status").read_text().split("Uid:\t")[1].split("\t")[0] == \
        str(pwd.getpwnam(RUN_USER).pw_uid)
    assert_not_root(s.pid, want_min=3)
    c = s.lmtp()
    c.sendmail("sender@example.org", ["bob"], b"Subject: unpriv\r\n\r\nunprivileged start\r\n")
    c.quit()
    assert b"unprivileged start" in s.fetch_all("bob")[0]
    loose, foreign = world_bits(s.root)
    assert not loose and not foreign, (loose, foreign)


def test_init_user_root_and_mismatch(tmp_path):
    """--user root keeps the root's files root's and says so in castor.conf; an
    unprivileged castord told another run_user refuses to start."""
    root = tmp_path / "asroot"
    run([binpath("castorctl"), "-q", "init", root, "--port-base", free_ports(5), "--user", "root"])
    assert re.search(r"(?m)^run_user: root$", (root / "castor.conf").read_text())
    assert os.stat(root / "db" / "users.db").st_uid == 0
    os.chmod(root, 0o755)
    os.chmod(root / "castor.conf", 0o644)
    os.chmod(root / "services.conf", 0o644)
    cp = subprocess.run(["setpriv", "--reuid", RUN_USER, "--regid", RUN_USER, "--init-groups",
                         binpath("castord"), "-C", root / "castor.conf", "-D"],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 78 and "cannot switch users" in cp.stderr, cp.stderr
    cp = run([binpath("castorctl"), "init", tmp_path / "nouser", "--port-base", free_ports(5), "--user",
              "no-such-user-here"], check=False)
    assert cp.returncode == 4 and "no such user" in cp.stderr, cp.stderr
    assert not (tmp_path / "nouser").exists()
    # a root below a directory the run user cannot search is refused and removed
    hidden = tmp_path / "hidden"
    hidden.mkdir(mode=0o700)
    cp = run([binpath("castorctl"), "init", hidden / "root", "--port-base", free_ports(5)], check=False)
    assert cp.returncode == 7 and "cannot reach" in cp.stderr, cp.stderr
    assert not (hidden / "root").exists()
    # missing parents are made searchable (0755), the root itself 0750
    run([binpath("castorctl"), "-q", "init", tmp_path / "p1" / "p2" / "root", "--port-base", free_ports(5)])
    assert stat.S_IMODE((tmp_path / "p1" / "p2").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "p1" / "p2" / "root").stat().st_mode) == 0o750


def test_failover_as_root_restarts_castord_as_root(procs, tmp_path):
    """castorctl failover run as root acts as the run user, yet stops the root
    castord (which the run user may signal) and starts it again as root, whose
    children run as the run user."""
    from test_failover import deliver, failover, setup_users
    from test_failover_util import Pair, converged
    p = Pair(procs, tmp_path)
    try:
        a, b = p.start().nodes()
        setup_users(p)
        assert deliver(a, "before")[0] == 250
        converged(a, b)
        pidfile = a.root / "run" / "castord.pid"
        assert pidfile.stat().st_uid == 0 and pidfile.stat().st_gid == pwd.getpwnam(RUN_USER).pw_gid
        assert stat.S_IMODE(pidfile.stat().st_mode) == 0o640
        failover(a, "--to", "b", "--castord-log", str(a.log_path))
        assert a.server_row() == ("replica", 2) and b.server_row() == ("master", 2)
        pid = a.castord_pid()
        assert pid is not None and pid != a.proc.pid
        assert Path(f"/proc/{pid}/status").read_text().split("Uid:\t")[1].split("\t")[0] == "0"
        assert_not_root(pid, want_min=2)
        assert deliver(b, "after")[0] == 250
        converged(b, a)
    finally:
        p.cleanup()
