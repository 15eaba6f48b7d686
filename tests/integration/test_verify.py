"""castorctl verify (issue 8): compares master and replica over the sync
protocol; exit 0 only when identical, one readable line per difference."""
from conftest import wait_for
from repl_util import SLOW, converged, ctl, pair


def test_verify_identical_then_differences(procs, tmp_path):
    # keep: the divergence stays for verify to show (renumber would heal it)
    m, (r,) = pair(procs, tmp_path, conf_extra="sync_conflict: keep")
    m.drv("useradd vic\nappend vic INBOX 300 v1\nappend vic INBOX 300 v2\n"
          "create vic Box\nappend vic Box 200 b1\nflags vic INBOX 1:1 + \\Seen\n"
          "useradd wes\nappend wes INBOX 100 w1\n")
    converged(m, r)
    cp = ctl(m.conf, "verify", "--all", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert cp.stdout == ""
    assert "2 users, 0 differences" in cp.stderr
    cp = ctl(m.conf, "verify", "vic", "--channel", "r1", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr

    # diverge: mail on the replica alone (left alone by sync under keep)
    assert r.quit() == 0
    r.drv("append vic Box 222 replica-only\nuseradd zed\n")
    r.start()
    wait_for(lambda: m.status("r1").get("state") == "connected", timeout=30 * SLOW,
             what="channel connected")
    cp = ctl(m.conf, "verify", "--all", check=False)
    assert cp.returncode == 1, cp.stdout + cp.stderr
    out = cp.stdout
    assert 'user vic mailbox "Box": uid 2 guid ' in out and "only on the replica" in out, out
    assert "user zed: user only on the replica" in out, out
    # wes is identical: nothing printed for it
    assert "user wes" not in out
    cp = ctl(m.conf, "verify", "wes", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_verify_without_replica_fails_cleanly(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd amy\n")
    converged(m, r)
    assert r.quit() == 0
    cp = ctl(m.conf, "verify", "--all", check=False)
    assert cp.returncode not in (0, 1), cp.stdout + cp.stderr
    assert "castorctl:" in cp.stderr
