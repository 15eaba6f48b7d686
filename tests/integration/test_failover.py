"""Failover (issue 9): `castorctl failover` (soft), `castorctl promote`
(hard), fencing of an old master, --resume/--abort after a failed step.
Real castord pairs made by `castorctl init` with symmetric channels
(test_failover_util.Pair); mail through lmtpd, reads through imapd."""
import imaplib
import os
import poplib
import re
import smtplib

import pytest

from castor_mail import lmtp_send
from conftest import wait_for
from repl_util import SLOW
from test_failover_util import Pair, converged

FO_LOG = "--castord-log"


def msg(tag):
    return (f"From: s@example.org\r\nTo: alice@example.org\r\nSubject: {tag}\r\n"
            f"Message-ID: <{tag}@failover.test>\r\n\r\nbody of {tag}\r\n").encode()


def deliver(node, tag, user="alice"):
    c = smtplib.LMTP("127.0.0.1", node.lmtp_port, timeout=30 * SLOW)
    try:
        c.ehlo("mta.test")
        return lmtp_send(c, "s@example.org", [user], msg(tag))[0]
    finally:
        try:
            c.quit()
        except Exception:
            pass


def mail_refused(node):
    """MAIL FROM on node: (code, text)."""
    c = smtplib.LMTP("127.0.0.1", node.lmtp_port, timeout=30 * SLOW)
    try:
        c.ehlo("mta.test")
        code, resp = c.mail("s@example.org")
        return code, resp.decode()
    finally:
        try:
            c.quit()
        except Exception:
            pass


def subjects(node, user="alice", pw="pw", mailbox="INBOX"):
    im = imaplib.IMAP4("127.0.0.1", node.imap_port, timeout=30 * SLOW)
    try:
        im.login(user, pw)
        typ, data = im.select(mailbox, readonly=True)
        assert typ == "OK", data
        typ, data = im.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])") if int(data[0]) else ("OK", [])
        out = []
        for item in data:
            if isinstance(item, tuple):
                m = re.search(rb"Subject: (\S+)", item[1])
                out.append(m.group(1).decode())
        return out
    finally:
        im.logout()


def failover(node, *args, check=True, env=None):
    from test_failover_util import ctl
    cp = ctl(node.conf, "failover", *args, check=False, env=env)
    if check:
        assert cp.returncode == 0, f"failover exited {cp.returncode}\n{cp.stdout}\n{cp.stderr}\n{node.log()[-3000:]}"
    return cp


@pytest.fixture
def pair(procs, tmp_path):
    p = Pair(procs, tmp_path)
    yield p
    p.cleanup()


def setup_users(p, users=("alice",)):
    for u in users:
        p.a.ctl("user", "add", u, "--password", "pw")


def test_soft_failover_switches_roles_and_mail_flows(pair):
    a, b = pair.start().nodes()
    setup_users(pair)
    for i in range(5):
        assert deliver(a, f"before{i}")[0] == 250
    converged(a, b)
    assert b.server_row() == ("replica", 1)
    code, text = mail_refused(b)
    assert code == 451 and text.startswith("4.3.0") and "a.test" in text, (code, text)

    cp = failover(a, "--to", "b", FO_LOG, str(a.log_path))
    out = cp.stdout
    # every step reports what it did and how long it took
    for step in range(1, 6):
        assert re.search(rf"^\[{step}/5\] \w+: .*: \d+\.\d\d s$", out, re.M), out
    assert re.search(r"^failover done: .* total \d+\.\d\d s$", out, re.M), out
    assert re.search(r"^deliveries were refused for \d+\.\d\d s", out, re.M), out
    assert not (a.root / "run" / "failover.state").exists()

    # roles and epochs are durable in users.db
    assert a.server_row() == ("replica", 2)
    assert b.server_row() == ("master", 2)
    assert a.castord_pid() is not None, "the old master runs again (as a replica)"

    # the new master takes mail at once; the old one refuses, naming its master
    assert deliver(b, "after0")[0] == 250
    code, text = mail_refused(a)
    assert code == 451 and text.startswith("4.3.0") and "b.test" in text, (code, text)
    # and the old master serves IMAP read-only
    im = imaplib.IMAP4("127.0.0.1", a.imap_port, timeout=30 * SLOW)
    im.login("alice", "pw")
    with pytest.raises(imaplib.IMAP4.readonly):   # SELECT answered [READ-ONLY]
        im.select("INBOX")
    im.shutdown()
    im = imaplib.IMAP4("127.0.0.1", a.imap_port, timeout=30 * SLOW)
    im.login("alice", "pw")
    im.is_readonly = True   # imaplib would refuse to send it after [READ-ONLY]
    typ, data = im.append("INBOX", None, None, msg("append-on-replica"))
    assert typ == "NO" and b"READ-ONLY" in data[0], data
    im.logout()
    # and POP3 read-only: a deletion is refused at DELE itself, nothing removed
    pop = poplib.POP3("127.0.0.1", a.pop3_port, timeout=30 * SLOW)
    pop.user("alice")
    pop.pass_("pw")
    with pytest.raises(poplib.error_proto, match="SYS/PERM"):
        pop.dele(1)
    assert pop.quit().startswith(b"+OK")

    # the new master's changes reach the old master
    converged(b, a)
    got = subjects(a)
    assert sorted(got) == sorted([f"before{i}" for i in range(5)] + ["after0"]), got


def test_failover_back_and_forth(pair):
    a, b = pair.start().nodes()
    setup_users(pair)
    assert deliver(a, "one")[0] == 250
    converged(a, b)
    failover(a, "--to", "b", FO_LOG, str(a.log_path))
    assert deliver(b, "two")[0] == 250
    converged(b, a)
    failover(b, "--to", "a", FO_LOG, str(b.log_path))
    assert a.server_row() == ("master", 3) and b.server_row() == ("replica", 3)
    assert deliver(a, "three")[0] == 250
    converged(a, b)
    assert sorted(subjects(b)) == ["one", "three", "two"]


def test_failover_refuses_on_a_replica_and_without_peer(pair):
    a, b = pair.start().nodes()
    cp = failover(b, "--to", "a", check=False)
    assert cp.returncode == 7 and "failover runs on the master" in cp.stderr, cp.stderr
    # the replica is unreachable: preflight fails, nothing changes
    assert b.proc is not None
    b.proc.stop()
    cp = failover(a, "--to", "b", check=False)
    assert cp.returncode != 0 and "nothing was changed" in cp.stderr, cp.stderr
    assert a.server_row() == ("master", 1) and a.castord_pid() is not None
    assert not (a.root / "run" / "failover.state").exists()


def test_failover_aborts_when_the_replica_differs(pair):
    """Step 3 finds a difference (made on the replica behind the master's
    back while castorctl pauses before the comparison): the failover is
    aborted and the master started again as it was."""
    a, b = pair.start().nodes()
    setup_users(pair)
    assert deliver(a, "x")[0] == 250
    converged(a, b)
    env = {"CASTOR_FAILPOINTS": "ctl.failover.step3=sleep(%d)" % (3000 * SLOW)}
    import subprocess
    from conftest import binpath
    fo = subprocess.Popen([binpath("castorctl"), "-C", str(a.conf), "failover", "--to", "b", FO_LOG,
                           str(a.log_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, **env})
    state = a.root / "run" / "failover.state"
    wait_for(lambda: state.exists() and "done=2" in state.read_text(errors="replace"),
             timeout=60 * SLOW, what="drain done")
    # a change on the replica only (as a split brain would leave)
    import sqlite3
    db = sqlite3.connect(str(b.root / "db" / "users.db"), timeout=30)
    db.execute("update server set role='master'")
    db.commit()
    b.ctl("user", "add", "mallory", "--password", "pw")
    db.execute("update server set role='replica'")
    db.commit()
    db.close()
    out, err = fo.communicate(timeout=120 * SLOW)
    assert fo.returncode == 11, (fo.returncode, out, err)
    assert "users differ" in err and "mallory" in err, err
    assert a.server_row() == ("master", 1) and b.server_row() == ("replica", 1)
    assert a.castord_pid() is not None, "the master was started again"
    assert not (a.root / "run" / "failover.state").exists()
    assert deliver(a, "still-master")[0] == 250


@pytest.mark.parametrize("step", [2, 4, 5])
def test_failover_resume_after_a_failed_step(pair, step):
    """A step fails (failpoint): the command explains the state, status
    shows it, and --resume completes the failover."""
    a, b = pair.start().nodes()
    setup_users(pair)
    assert deliver(a, "r")[0] == 250
    converged(a, b)
    cp = failover(a, "--to", "b", FO_LOG, str(a.log_path), check=False,
                  env={"CASTOR_FAILPOINTS": f"ctl.failover.step{step}=error"})
    assert cp.returncode == 8, cp.stdout + cp.stderr
    assert f"failover step {step} failed" in cp.stderr and "--resume" in cp.stderr, cp.stderr
    st = a.status()
    assert st["server"]["failover"].startswith("to b, steps done %d of 5" % (step - 1)), st
    assert a.castord_pid() is None, "no server accepts mail while the failover is stopped"
    if step == 2:
        # before the promotion an abort is still possible; here we resume
        pass
    cp = failover(a, "--resume", FO_LOG, str(a.log_path))
    assert "failover done" in cp.stdout, cp.stdout
    assert a.server_row() == ("replica", 2) and b.server_row() == ("master", 2)
    assert deliver(b, "r2")[0] == 250
    converged(b, a)


def test_failover_abort_restarts_the_master(pair):
    a, b = pair.start().nodes()
    setup_users(pair)
    cp = failover(a, "--to", "b", check=False, env={"CASTOR_FAILPOINTS": "ctl.failover.step3=error"})
    assert cp.returncode == 8, cp.stderr
    cp = failover(a, "--abort", FO_LOG, str(a.log_path))
    assert a.server_row() == ("master", 1) and b.server_row() == ("replica", 1)
    assert a.castord_pid() is not None
    assert deliver(a, "after-abort")[0] == 250
    converged(a, b)
    # once the peer is promoted, abort is refused
    cp = failover(a, "--to", "b", check=False, env={"CASTOR_FAILPOINTS": "ctl.failover.step5=error"})
    assert cp.returncode == 8, cp.stderr
    cp = failover(a, "--abort", check=False)
    assert cp.returncode == 7 and "too late to abort" in cp.stderr, cp.stderr
    failover(a, "--resume", FO_LOG, str(a.log_path))
    assert a.server_row() == ("replica", 2)


def test_failover_survives_castorctl_killed_mid_way(pair):
    """castorctl itself dies (SIGKILL) right before the promotion; --resume
    goes on from the durable state file."""
    a, b = pair.start().nodes()
    setup_users(pair)
    assert deliver(a, "k")[0] == 250
    converged(a, b)
    cp = failover(a, "--to", "b", check=False, env={"CASTOR_FAILPOINTS": "ctl.failover.step4=crash"})
    assert cp.returncode < 0 or cp.returncode == 137, cp.returncode
    assert "done=3" in (a.root / "run" / "failover.state").read_text()
    failover(a, "--resume", FO_LOG, str(a.log_path))
    assert b.server_row() == ("master", 2) and a.server_row() == ("replica", 2)


def test_fencing_old_master_started_with_old_configuration(pair):
    """After a soft failover the old master never takes a delivery again,
    even restarted with the configuration it had as a master: its role is
    in users.db; and even when its users.db is put back to `master` at the
    old epoch (a hard failover it slept through), peer-check at start finds
    the newer master and demotes it before any listener opens."""
    a, b = pair.start().nodes()
    setup_users(pair)
    assert deliver(a, "f0")[0] == 250
    converged(a, b)
    failover(a, "--to", "b", FO_LOG, str(a.log_path))
    a.stop_daemon(sig=15)
    assert a.castord_pid() is None
    # the old configuration (castor.conf still says `role: master`)
    assert re.search(r"^role: master$", a.conf.read_text(), re.M)
    a.start()
    code, text = mail_refused(a)
    assert code == 451, (code, text)

    # the hard case: users.db says master at the old epoch
    a.proc.stop()
    import sqlite3
    db = sqlite3.connect(str(a.root / "db" / "users.db"), timeout=30)
    db.execute("update server set role='master', epoch=1")
    db.commit()
    db.close()
    a.start()
    assert a.server_row() == ("replica", 2), "peer-check demoted it at start"
    code, text = mail_refused(a)
    assert code == 451 and "b.test" in text, (code, text)
    assert "DEMOTED" in a.log()
    # b never took anything from it: b is still the master at epoch 2
    assert b.server_row() == ("master", 2)
    assert deliver(b, "f1")[0] == 250
    converged(b, a)


def test_fencing_a_running_old_master_is_demoted_by_peer_check(pair):
    """Two masters (a partition healed): the older one demotes itself the
    next time peer-check runs (the EVENTS entry; here by hand) and its
    services refuse the very next delivery."""
    a, b = pair.start().nodes()
    setup_users(pair)
    converged(a, b)
    # the replica is promoted behind the master's back (hard failover)
    cp = b.ctl("promote", "--force")
    assert "promoted: role master, epoch 2" in cp.stdout, cp.stdout
    assert deliver(b, "on-b")[0] == 250
    # a still believes it is the master
    assert deliver(a, "on-a")[0] == 250
    cp = a.ctl("peer-check")
    assert "demoted" in cp.stdout, cp.stdout
    assert a.server_row() == ("replica", 2)
    code, text = mail_refused(a)
    assert code == 451, (code, text)


def test_promote_refuses_while_the_master_lives(pair):
    a, b = pair.start().nodes()
    cp = b.ctl("promote", check=False)
    assert cp.returncode == 7 and "live master" in cp.stderr, cp.stdout + cp.stderr
    assert b.server_row() == ("replica", 1)
