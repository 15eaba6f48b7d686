"""Crash tests: sync-client and syncd are killed (SIGKILL, by failpoint) at
each dangerous moment of a batch, repeatedly, while deliveries run.
Afterwards both sides are identical and every acknowledged delivery is
present exactly once on each."""
import signal
import subprocess
import time

import pytest

from conftest import binpath, wait_for
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
