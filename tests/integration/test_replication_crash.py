"""Crash tests: sync-client and syncd are killed (SIGKILL, by failpoint) at
each dangerous moment of a batch, repeatedly, while deliveries run.
Afterwards both sides are identical and every acknowledged delivery is
present exactly once on each."""
import signal
import smtplib
import subprocess
import time

import pytest

from conftest import binpath, free_ports, wait_for
from repl_util import SLOW, acked_guids, converged, guids_in, pair

# (failpoint, which process) - the moments of issue 7
POINTS = [
    ("sync.push.before_upload", "client"),       # before upload
    ("sync.push.after_upload", "client"),        # after upload, before apply
    ("syncd.apply.before_commit", "syncd"),      # before the apply commits
    ("syncd.apply.after_commit", "syncd"),       # after commit, before the ack
    ("sync.client.before_cursor_save", "client"),  # after the ack, before the cursor
]


@pytest.mark.parametrize("point,who", POINTS, ids=[p for p, _ in POINTS])
def test_crash_at_failpoint_under_load(procs, tmp_path, point, who):
    env_r = {"CASTOR_FAILPOINTS": f"{point}=2*crash"} if who == "syncd" else None
    m, (r,) = pair(procs, tmp_path, start=False, daemons=False)
    r.start(env=env_r)
    m.start()
    m.drv("useradd vic\ncreate vic Side\n")
    out = tmp_path / "acked.txt"
    load = subprocess.Popen([binpath("sync-testdrv"), "-C", str(m.conf), "-o", str(out),
                             "deliver", "vic", "INBOX", "150", "2000", "crash", "50"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    side = subprocess.Popen([binpath("sync-testdrv"), "-C", str(m.conf)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, text=True)
    crashes = 0
    client_env = {"CASTOR_FAILPOINTS": f"{point}=2*crash"} if who == "client" else {}
    deadline = time.monotonic() + 120 * SLOW
    i = 0
    try:
        while load.poll() is None and time.monotonic() < deadline:
            c = procs.start([binpath("sync-client"), "-C", m.conf, "-r", "-n", "r1"],
                            log=tmp_path / f"client{i}.log", env=client_env)
            i += 1
            # flag changes and expunges beside the deliveries
            if side.poll() is None:
                side.stdin.write(f"append vic Side 300 s{i}\nflags vic Side 1:* + \\Seen f{i}\n"
                                 f"expunge vic Side {i}\n")
                side.stdin.flush()
            while c.alive() and load.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            if c.alive():
                c.send(signal.SIGQUIT)   # the load is done: stop it cleanly
                c.wait(timeout=60 * SLOW)
            else:
                crashes += 1
        assert load.wait(timeout=120 * SLOW) == 0
    finally:
        if load.poll() is None:
            load.kill()
        side.stdin.close()
        side.wait(timeout=30)
    if who == "client":
        assert crashes >= 2, f"only {crashes} crashes at {point}"
    else:
        assert "service=syncd signal=SIGKILL" in r.log(), r.log()[-3000:]
    # a clean client to finish (syncd may still crash on every 2nd apply: it
    # gets restarted per connection and each session makes progress)
    final = procs.start([binpath("sync-client"), "-C", m.conf, "-r", "-n", "r1"],
                        log=tmp_path / "client-final.log")
    converged(m, r, timeout=60)
    final.send(signal.SIGQUIT)
    final.wait(timeout=30 * SLOW)
    acked = acked_guids(out)
    assert len(acked) == 150
    for side_name, srv in (("master", m), ("replica", r)):
        gs = guids_in(srv.dump("vic"))
        for g in acked:
            assert gs.count(g) == 1, f"{g} present {gs.count(g)} times on the {side_name}"


def test_master_crash_between_commit_and_wal_fsync(procs, tmp_path):
    """lmtpd is killed (SIGKILL) after its COMMIT and before the WAL fsync,
    on every third delivery of each process.  The client never saw a 250
    and sends the message again, as an MTA would.  The killed commit
    survives in the WAL (a process crash, not a power loss) and the sync
    log already names it, so the replica gets it at once rather than at
    the next anti-entropy pass (an hour away); the resend is suppressed as
    a duplicate and changes nothing.  Each message goes to its own user, so
    no later change to the same mailbox carries the killed one along.
    Every message is on both sides exactly once."""
    m, (r,) = pair(procs, tmp_path, start=False)
    lport = free_ports(1)
    m.add_services(f'  lmtp cmd="lmtpd" listen="127.0.0.1:{lport}"', section="SERVICES")
    r.start()
    m.start(env={"CASTOR_FAILPOINTS": "store.commit.before_fsync=3*crash"})
    n, resends = 12, 0
    m.drv("".join(f"useradd cora{i} pw-c\n" for i in range(n)))
    converged(m, r)
    for i in range(n):
        msg = (f"From: s@example.org\r\nTo: cora{i}\r\nMessage-ID: <fs{i}@example.org>\r\n"
               f"Subject: fsync window {i}\r\n\r\nbody {i}\r\n")
        for attempt in range(5):
            try:
                lm = smtplib.LMTP("127.0.0.1", lport, timeout=20 * SLOW)
                assert lm.sendmail("s@example.org", [f"cora{i}"], msg) == {}
                lm.quit()
                break
            except (smtplib.SMTPServerDisconnected, ConnectionError):
                resends += 1
                time.sleep(0.05)
        else:
            raise AssertionError(f"message {i} never acknowledged:\n{m.log()[-3000:]}")
    assert resends >= 2, f"the failpoint fired {resends} times"
    assert "failpoint crash name=store.commit.before_fsync" in m.log()
    converged(m, r, timeout=10)
    for side, srv in (("master", m), ("replica", r)):
        for i in range(n):
            # a resend carries its own Received: line, so a duplicate
            # would show as a second GUID
            gs = guids_in(srv.dump(f"cora{i}"))
            assert len(gs) == 1, f"{side}: cora{i} has {len(gs)} messages, want 1"
