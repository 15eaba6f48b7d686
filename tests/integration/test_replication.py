"""Replication end to end: real castord pairs (castorctl init roots), the
rolling sync-client as castord's DAEMON, syncd as the replica's service,
changes made through the store by sync-testdrv (the sync hook attached, as
in every service), and both sides compared with `castorctl dump
--for-compare` (the replica's sync account left out)."""
import os
import re
import signal
import socket
import time

import pytest

from conftest import binpath, run, wait_for
from repl_util import (SLOW, SYNC_PW, Server, acked_guids, converged, ctl, guids_in, pair,
                       sanitized)


def test_every_kind_of_change_replicates(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd alice pw-one\n"
          "create alice Work\n"
          "create alice Work/2024\n"
          "create alice Sent \\Sent\n"
          "append alice INBOX 3000 a1\n"
          "append alice INBOX 4000 a2 \\Seen $Forwarded\n"
          "append alice Work 5000 w1\n"
          "append alice Work/2024 6000 w2 \\Flagged\n"
          "subscribe alice Work\n"
          "subscribe alice Sent\n")
    converged(m, r)
    # flags, expunge, copy/move, rename with children, delete, unsubscribe,
    # password, quota, a second user, a user deletion
    m.drv("flags alice INBOX 1:2 + \\Answered kw1\n"
          "flags alice INBOX 2 - \\Seen\n"
          "append alice INBOX 1000 a3\n"
          "expunge alice INBOX 1\n"
          "copy alice INBOX 2:3 Work\n"
          "move alice Work/2024 1 INBOX\n"
          "rename alice Work Archive/Work\n"
          "create alice Trash\n"
          "append alice Trash 1000 t1\n"
          "delete alice Trash\n"
          "unsubscribe alice Sent\n"
          "passwd alice pw-two\n"
          "quota alice 10000000 5000\n"
          "useradd bob\n"
          "appendn bob INBOX 120 2500 b\n"
          "useradd carol pw\n"
          "append carol INBOX 500 c1\n")
    converged(m, r)
    m.drv("userdel carol\n")
    converged(m, r)
    d = r.dump()
    assert 'mailbox "Archive/Work"' in d and 'mailbox "Archive/Work/2024"' in d
    assert 'mailbox "Work"' not in d and "user carol" not in d
    assert len(re.findall(r"^  record .*", d, re.M)) == len(re.findall(r"^  record .*", m.dump(), re.M))
    # the tombstone of Trash reached the replica as a tombstone
    full = r.dump("alice", full=True)
    assert re.search(r'mailbox "Trash" .*deleted_modseq=[1-9]', full) or 'mailbox "Trash"' not in full
    # the password travelled as its hash: the same fingerprint
    fp = lambda t: re.search(r"user alice password=(\S+)", t).group(1)
    assert fp(m.dump("alice")) == fp(r.dump("alice")) != "none"
    wait_for(lambda: m.status("r1").get("bytes_behind") == "0" and
             int(m.status("r1").get("uploads", "0")) > 0, timeout=10 * SLOW,
             what="status file shows the channel caught up")
    st = m.status("r1")
    assert st["state"] == "connected", st
    assert int(st["uploads"]) > 0 and st["conflicts"] == "0", st


def test_idempotent_full_resync(procs, tmp_path):
    """-u and -A against a replica that already has everything change nothing."""
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd dave\nappendn dave INBOX 30 3000 d\ncreate dave X\nappend dave X 100 x\n")
    converged(m, r)
    before = r.dump(full=True)
    cp = run([binpath("sync-client"), "-C", m.conf, "-n", "r1", "-u", "dave"])
    assert "records=0 uploads=0" in cp.stdout, cp.stdout
    cp = run([binpath("sync-client"), "-C", m.conf, "-A"])
    assert "records=0 uploads=0" in cp.stdout, cp.stdout
    cp = run([binpath("sync-client"), "-C", m.conf, "-n", "r1", "-m", "dave", "X"])
    assert "records=0 uploads=0" in cp.stdout, cp.stdout
    assert r.dump(full=True) == before
    # one-shot modes work without the rolling client too
    cp = run([binpath("sync-client"), "-C", m.conf, "-n", "nosuch", "-A"], check=False)
    assert cp.returncode == 78 and "nosuch" in cp.stderr, (cp.returncode, cp.stderr)


def test_two_replicas_one_paused(procs, tmp_path):
    m, (r1, r2) = pair(procs, tmp_path, nreplicas=2)
    m.drv("useradd eve\nappend eve INBOX 100 e0\n")
    converged(m, r1)
    converged(m, r2)
    r2.stop_group(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        m.drv("deliver eve INBOX 200 2000 p 0\nflags eve INBOX 1:50 + \\Seen\n")
        # the paused replica does not hold the other one back
        converged(m, r1, timeout=20)
        assert time.monotonic() - t0 < 20 * SLOW
        # ... while the paused one is behind
        assert len(guids_in(r2.dump("eve"))) < len(guids_in(m.dump("eve")))
    finally:
        r2.stop_group(signal.SIGCONT)
    converged(m, r2, timeout=60)
    converged(m, r1)


def test_offline_replica_catches_up_from_cursor(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd fred\nappend fred INBOX 100 f0\n")
    converged(m, r)
    # the changes may have reached the replica through the start-up
    # anti-entropy pass before the client's first batch: wait for a status
    # written after the log has records (log_end past "0:0")
    wait_for(lambda: m.status("r1").get("log_end", "0:0") != "0:0" and
             m.status("r1").get("bytes_behind") == "0" and
             m.status("r1").get("cursor_saved") == m.status("r1").get("log_end"),
             timeout=10 * SLOW, what="cursor saved at the log end")
    cursor_before = m.status("r1")["cursor_saved"]
    assert r.quit() == 0
    # a lot of changes while it is away (an hour's worth, by count)
    m.drv("deliver fred INBOX 600 1500 off 0\n"
          "flags fred INBOX 1:300 + \\Seen\n"
          "expunge fred INBOX 2:50\n"
          "create fred Lists\nappendn fred Lists 200 1000 l\n")
    wait_for(lambda: m.status("r1").get("state") != "connected", timeout=10 * SLOW,
             what="master notices the replica is gone")
    assert int(m.status("r1")["records_behind"]) > 0
    assert m.status("r1")["cursor_saved"] == cursor_before
    r.start()
    t_back = time.monotonic()
    wait_for(lambda: m.status("r1").get("state") == "connected" and
             m.status("r1").get("bytes_behind") == "0", timeout=30 * SLOW, interval=0.02,
             what="caught up")
    took = time.monotonic() - t_back
    converged(m, r)
    # Cyrus: 12.4 s here; the issue: within 2 s of its return
    assert took < 2.0 * SLOW, f"caught up in {took:.2f}s"


def test_sigquit_drains_a_burst(procs, tmp_path):
    """SIGQUIT on the master during a burst: castord exits 0 only after the
    SHUTDOWN drain, and the replica then holds every acknowledged message."""
    m, (r,) = pair(procs, tmp_path, start=False)
    out = tmp_path / "acked.txt"
    m.add_services(f'  load cmd="{binpath("sync-testdrv")} -o {out} deliver gina INBOX 1000000 1500 burst 0"')
    r.start()
    m.start()
    # the load (restarted by castord until its user exists) needs its user
    m.drv("useradd gina\n")
    wait_for(lambda: len(acked_guids(out)) >= 200, timeout=30 * SLOW, what="200 deliveries")
    status = m.quit(timeout=120 * SLOW)
    log = m.log()
    assert status == 0, log[-4000:]
    assert "SHUTDOWN entry done name=drain" in log
    acked = acked_guids(out)
    assert len(acked) >= 200
    have = r.dump("gina")
    missing = [g for g in acked if g not in have]
    assert not missing, f"{len(missing)} acknowledged messages not on the replica"
    # every message exactly once, and the replica is the master's copy
    assert len(set(guids_in(have))) == len(guids_in(have))
    assert have == m.dump("gina")


def test_master_sigkill_restart_replicates_without_new_mail(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd hank\nuseradd ivy\nappend hank INBOX 100 h0\n")
    converged(m, r)
    assert r.quit() == 0
    m.drv("appendn hank INBOX 40 2000 h\nappend ivy INBOX 300 i1\nflags hank INBOX 1 + \\Deleted\n")
    m.kill()
    r.start()
    m.start()
    # no new mail: the restart alone must find hank and ivy
    converged(m, r, timeout=30)


def test_lost_log_converges_by_anti_entropy(procs, tmp_path):
    """Deleting the log by hand, or an append that fails, costs time, not mail."""
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd jack\nappend jack INBOX 100 j0\n")
    converged(m, r)
    # an append that fails: the change is committed, the record is not written
    cp = m.drv("append jack INBOX 700 lost1\nstats\n",
               env={"CASTOR_FAILPOINTS": "synclog.append=error"})
    assert "failures=1" in cp.stdout, cp.stdout
    converged(m, r, timeout=30)
    # the whole log deleted while the master is down
    assert m.quit() == 0
    m.drv("append jack INBOX 900 lost2\ncreate jack New\nappend jack New 100 n\n")
    for f in (m.root / "sync" / "log").glob("*.log"):
        f.unlink()
    m.start()
    converged(m, r, timeout=30)


def test_fencing(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd kim\nappend kim INBOX 100 k0\n")
    converged(m, r)
    # the replica moved to a higher epoch (a promotion elsewhere): our old
    # master is refused at HELLO and stops the channel without retrying
    assert r.quit() == 0
    r.set_server_row("replica", 7)
    r.start()
    m.drv("append kim INBOX 200 k1\n")
    wait_for(lambda: m.status("r1").get("state") == "fenced", timeout=20 * SLOW, what="fenced")
    assert "CHANNEL FENCED" in m.log()
    wait_for(lambda: "fenced an old master" in r.log(), timeout=10 * SLOW, what="replica refused the HELLO")
    time.sleep(0.5 * SLOW)   # an observation window: a fenced master must not slip k1 in later
    assert "k1" not in r.dump("kim") and len(guids_in(r.dump("kim"))) == 1
    assert r.server_row() == ("replica", 7)
    # a master with a higher epoch raises the replica's epoch and is served
    m.proc.kill_group()
    m.set_server_row("master", 9)
    m.start()
    converged(m, r)
    assert r.server_row() == ("replica", 9)
    # a replica promoted (PROMOTE over the protocol) refuses all changes
    s = socket.create_connection(("127.0.0.1", r.syncd_port), timeout=10 * SLOW)
    f = s.makefile("rwb")
    assert f.readline().startswith(b"* OK [CASTOR-SYNC")
    import base64
    tok = base64.b64encode(b"\0sync\0" + SYNC_PW.encode()).decode()
    f.write(f"a AUTHENTICATE PLAIN {tok}\r\nb PROMOTE 5\r\nc PROMOTE 10\r\nd LOGOUT\r\n".encode())
    f.flush()
    lines = [f.readline() for _ in range(5)]
    s.close()
    assert lines[0].startswith(b"a OK"), lines
    assert lines[1].startswith(b"b NO [FENCED epoch 9]"), lines
    assert lines[2].startswith(b"c OK [EPOCH 10]"), lines
    assert r.server_row() == ("master", 10)
    m.drv("append kim INBOX 300 k2\n")
    wait_for(lambda: m.status("r1").get("state") == "fenced", timeout=20 * SLOW, what="fenced")


def test_conflicts_are_detected_and_left_alone(procs, tmp_path):
    """Split brain: the same UID with different messages, and UIDs above the
    master's on the replica.  Nothing is overwritten; each is counted."""
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd lee\nappend lee INBOX 100 l0\ncreate lee Box\nappend lee Box 100 b0\n")
    converged(m, r)
    assert r.quit() == 0
    # mail accepted on the replica while it acted alone (its store is writable
    # to the driver; the hook does not attach on a replica)
    r.drv("append lee INBOX 222 replica-only\nappend lee Box 333 rep-b1\nappend lee Box 334 rep-b2\n")
    m.drv("append lee INBOX 444 master-only\nappend lee Box 555 mas-b1\n")
    rep_before = r.dump("lee")
    r.start()
    wait_for(lambda: int(m.status("r1").get("conflicts", "0")) >= 2, timeout=30 * SLOW,
             what="conflicts counted")
    st = m.status("r1")
    assert int(st["conflict_guid"]) + int(st["conflict_uid_above"]) >= 2, st
    # nothing was overwritten on either side
    after = r.dump("lee")
    for g in guids_in(rep_before):
        assert g in after
    assert "sync conflict kind=" in m.log()


def test_tls_and_compression_on_loopback(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path, conf_extra="r1_sync_tls: yes\nr1_sync_compress: yes")
    m.drv("useradd mia\nappendn mia INBOX 100 4000 z\n")
    converged(m, r)
    assert re.search(r"connected channel=r1 .*tls=1 compress=1", m.log()), m.log()[-2000:]
    wait_for(lambda: int(m.status("r1").get("upload_bytes", "0")) > 0, timeout=10 * SLOW,
             what="status written")
    st = m.status("r1")
    # compressible text: fewer bytes on the wire than bodies uploaded
    assert int(st["wire_out"]) < int(st["upload_bytes"]), st


def test_status_file_while_replica_down(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd ned\n")
    converged(m, r)
    assert r.quit() == 0
    m.drv("appendn ned INBOX 10 100 s\nappend ned INBOX 100 s2\n")
    wait_for(lambda: m.status("r1").get("state") in ("disconnected", "connecting") and
             int(m.status("r1").get("records_behind", "0")) >= 2, timeout=20 * SLOW,
             what="status shows the backlog")
    st = m.status("r1")
    assert int(st["bytes_behind"]) > 0 and int(st["lag_ms"]) >= 0
    assert "Connection refused" in st["last_error"] or st["last_error"], st
    assert int(st["oldest_unreplicated_ms"]) > 0, st
    r.start()
    wait_for(lambda: m.status("r1").get("bytes_behind") == "0" and
             m.status("r1").get("records_behind") == "0", timeout=20 * SLOW, what="caught up")


def test_channel_detached_past_max_bytes_recovers(procs, tmp_path):
    """A channel further behind than sync_log_max_bytes is detached (it no
    longer holds log segments) and catches up by anti-entropy."""
    m, (r,) = pair(procs, tmp_path,
                   conf_extra="sync_log_max_bytes: 4k\nsync_log_segment_size: 1k")
    m.drv("useradd olga\n")
    converged(m, r)
    assert r.quit() == 0
    m.drv("".join(f"append olga INBOX 200 d{i}\n" for i in range(80)))
    wait_for(lambda: m.status("r1").get("detached") == "1", timeout=20 * SLOW, what="detached")
    assert "CHANNEL DETACHED" in m.log()
    # the detached channel holds nothing back: old segments are gone
    wait_for(lambda: len(list((m.root / "sync" / "log").glob("*.log"))) <= 2,
             timeout=20 * SLOW, what="segments reclaimed")
    r.start()
    converged(m, r, timeout=30)
    wait_for(lambda: m.status("r1").get("detached") == "0", timeout=20 * SLOW, what="reattached")
    m.drv("append olga INBOX 100 after\n")
    converged(m, r)
