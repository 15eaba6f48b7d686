"""castorctl status (issue 7 "Status", used by failover): per channel
connected or not, cursor, records and bytes behind, age of the oldest
unreplicated change, last error, conflict counters; --json for machines.
Every figure is checked against what the test did."""
import json
import signal
import sqlite3

from conftest import wait_for
from repl_util import SLOW
from test_failover import deliver
from test_failover_util import Pair, converged, ctl


def test_status_caught_up_then_behind_then_from_cursor(procs, tmp_path):
    p = Pair(procs, tmp_path)
    try:
        a, b = p.start().nodes()
        a.ctl("user", "add", "alice", "--password", "pw")
        for i in range(3):
            assert deliver(a, f"s{i}")[0] == 250
        converged(a, b)
        # the client rewrites its status file at most once a second: wait for
        # one written after the uploads, not just for the cursor to catch up
        wait_for(lambda: a.status()["channels"][0]["connected"] and
                 a.status()["channels"][0]["bytes_behind"] == 0 and
                 a.status()["channels"][0]["counters"]["uploads"] >= 1, timeout=20 * SLOW,
                 what="caught up")
        st = a.status()
        assert st["server"]["role"] == "master" and st["server"]["epoch"] == 1
        assert st["server"]["castord_running"] and st["server"]["castord_pid"] > 0
        ch = st["channels"][0]
        assert ch["name"] == "b" and ch["port"] == b.syncd_port and ch["source"] == "client"
        assert ch["records_behind"] == 0 and ch["oldest_unreplicated_ms"] == 0
        assert ch["counters"]["uploads"] >= 1 and ch["conflicts"]["total"] == 0
        cp = a.ctl("status")
        assert cp.returncode == 0
        assert "role master  epoch 1" in cp.stdout and "\n  connected  state connected" in cp.stdout, cp.stdout
        assert "behind: 0 records, 0 bytes" in cp.stdout, cp.stdout
        # the replica's own view
        rb = b.status()
        assert rb["server"]["role"] == "replica"

        # the replica goes away: deliveries pile up
        b.proc.send(signal.SIGTERM)
        b.proc.wait(timeout=30 * SLOW)
        for i in range(4):
            assert deliver(a, f"late{i}")[0] == 250
        wait_for(lambda: not a.status()["channels"][0]["connected"] and
                 a.status()["channels"][0]["records_behind"] >= 4, timeout=20 * SLOW,
                 what="status shows the backlog")
        ch = a.status()["channels"][0]
        assert ch["bytes_behind"] > 0 and ch["last_error"], ch
        assert ch["oldest_unreplicated_ms"] > 0 and ch["oldest_unreplicated_age_ms"] >= 0
        cp = a.ctl("status", check=False)
        assert cp.returncode == 1, "a disconnected channel with a backlog needs attention"
        assert "NOT connected" in cp.stdout and "last error (" in cp.stdout, cp.stdout
        assert "oldest unreplicated change: " in cp.stdout and " ago" in cp.stdout, cp.stdout

        # castord gone: the figures come from the saved cursor and the log
        a.kill()
        wait_for(lambda: a.status()["channels"][0]["source"] == "cursor", timeout=10 * SLOW,
                 what="the client is gone")
        st = a.status()
        assert not st["server"]["castord_running"]
        ch = st["channels"][0]
        assert ch["source"] == "cursor" and not ch["connected"]
        assert ch["records_behind"] >= 4 and ch["bytes_behind"] > 0, ch
        assert "no sync-client running" in a.ctl("status", check=False).stdout
    finally:
        p.cleanup()


def test_status_counts_conflicts(procs, tmp_path):
    """A user that exists only on the replica is a conflict the master
    reports (and leaves alone); status counts it."""
    p = Pair(procs, tmp_path, conf_extra="sync_verify_interval: 2s\n")
    try:
        a, b = p.start().nodes()
        a.ctl("user", "add", "alice", "--password", "pw")
        converged(a, b)
        # make a replica-only user behind the master's back
        db = sqlite3.connect(str(b.root / "db" / "users.db"), timeout=30)
        db.execute("update server set role='master'")
        db.commit()
        b.ctl("user", "add", "zed", "--password", "pw")
        db.execute("update server set role='replica'")
        db.commit()
        db.close()
        # the periodic anti-entropy pass (every 2 s here) finds it
        wait_for(lambda: a.status()["channels"][0]["conflicts"]["replica_only_user"] >= 1,
                 timeout=30 * SLOW, what="conflict counted")
        ch = a.status()["channels"][0]
        assert ch["conflicts"]["total"] >= 1
        assert "replica_only_user=" in a.ctl("status", check=False).stdout
        # left alone: the user is still on the replica
        assert "user zed" in b.ctl("dump", "--for-compare", "--all").stdout
    finally:
        p.cleanup()


def test_status_usage_and_json_is_valid(procs, tmp_path):
    p = Pair(procs, tmp_path)
    try:
        a, _ = p.nodes()
        # nothing running: still answers
        cp = ctl(a.conf, "status", "--json", check=False)
        doc = json.loads(cp.stdout)
        assert doc["server"]["castord_running"] is False
        assert doc["channels"][0]["state"] == "never-ran"
        assert ctl(a.conf, "status", "--bogus", check=False).returncode == 2
        # a channel that is not configured is an error, not an empty row
        cp = ctl(a.conf, "status", "nosuch", check=False)
        assert cp.returncode == 4 and cp.stdout == ""
        assert "no channel nosuch: it is not in sync_channels" in cp.stderr
        # and failover to one says so, not which key is missing
        cp = ctl(a.conf, "failover", "--to", "bogus", check=False)
        assert cp.returncode == 4 and "no channel bogus" in cp.stderr and "_sync_host" not in cp.stderr
    finally:
        p.cleanup()


def test_replica_status_shows_incoming_replication(procs, tmp_path):
    """castorctl status on a replica says what it receives: from which
    master and channel, at which epoch, connected or not, when the last
    change was applied (issue 21 item 4: it said nothing of this)."""
    import smtplib

    from castor_mail import lmtp_send
    from conftest import free_ports
    from repl_util import converged, pair

    m, (r,) = pair(procs, tmp_path, start=False)
    lport = free_ports(1)
    m.add_services(f'  lmtp cmd="lmtpd" listen="127.0.0.1:{lport}"', section="SERVICES")
    cp = ctl(r.conf, "status", check=False)
    assert "incoming: none yet" in cp.stdout
    r.start()
    m.start()
    ctl(m.conf, "-q", "user", "add", "ivy", "--password", "pw-in")
    c = smtplib.LMTP("127.0.0.1", lport, timeout=20 * SLOW)
    c.ehlo("mta.test")
    assert lmtp_send(c, "s@example.org", ["ivy"], b"Subject: in\r\n\r\nx\r\n")[0][0] == 250
    c.quit()
    converged(m, r)

    def incoming():
        doc = json.loads(ctl(r.conf, "status", "--json", check=False).stdout)
        inc = doc["incoming"]
        return inc[0] if len(inc) == 1 and inc[0]["connected"] and inc[0]["uploads"] >= 1 else None
    wait_for(incoming, timeout=20 * SLOW, what="incoming status with the upload")
    inc = incoming()
    assert inc["channel"] == "r1" and inc["master"].endswith("/r1")
    assert inc["epoch"] == 1 and inc["last_change_ms"] > 0 and inc["applied"] >= 1
    text = ctl(r.conf, "status", check=False).stdout
    assert "incoming r1 <- " in text and "  connected (syncd pid" in text
    assert "last change applied" in text and "incoming: none yet" not in text
    # the master's own status has no incoming side
    assert json.loads(ctl(m.conf, "status", "--json", check=False).stdout)["incoming"] == []
