"""Semi-synchronous replication: a change is acknowledged only after a
replica committed it; degradation to async (logged, flagged) or refusal
(sync_semisync_strict) when no replica answers in time."""
import re
import signal
import subprocess
import time

from conftest import binpath, wait_for
from repl_util import SLOW, acked_guids, converged, pair


def start_load(m, tmp_path, user, count, rate=0, name="acked.txt"):
    out = tmp_path / name
    p = subprocess.Popen([binpath("sync-testdrv"), "-C", str(m.conf), "-o", str(out),
                          "deliver", user, "INBOX", str(count), "1500", "semi", str(rate)],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         start_new_session=True)
    return p, out


def test_semisync_acknowledged_is_on_the_replica(procs, tmp_path):
    """SIGKILL the master in the middle of a burst: every delivery that was
    acknowledged is already on the replica."""
    m, (r,) = pair(procs, tmp_path, conf_extra="sync_mode: semisync\nsync_semisync_timeout: 30s")
    m.drv("useradd sam\n")
    converged(m, r)
    load, out = start_load(m, tmp_path, "sam", 100000)
    try:
        wait_for(lambda: len(acked_guids(out)) >= 150, timeout=60 * SLOW, what="150 acknowledged")
        t0 = time.monotonic()
        n0 = len(acked_guids(out))
        time.sleep(1.0)   # a measuring window for the printed rate, not a synchronisation
        rate = (len(acked_guids(out)) - n0) / (time.monotonic() - t0)
        m.kill()
    finally:
        load.kill()
        load.wait()
    acked = acked_guids(out)
    have = r.dump("sam")
    missing = [g for g in acked if g not in have]
    assert not missing, f"{len(missing)} of {len(acked)} acknowledged deliveries not on the replica"
    print(f"semisync: {rate:.0f} acknowledged deliveries/s (1 client)")
    assert "DEGRADED" not in m.log()


def test_semisync_degrades_to_async_when_no_replica_answers(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path, conf_extra="sync_mode: semisync\nsync_semisync_timeout: 500ms")
    wait_for(lambda: m.status("r1").get("state") == "connected", timeout=20 * SLOW, what="connected")
    m.drv("useradd tom\n")
    converged(m, r)
    assert r.quit() == 0
    t0 = time.monotonic()
    cp = m.drv("deliver tom INBOX 20 500 d 0\nstats\n")
    took = time.monotonic() - t0
    assert cp.stdout.count("acked") == 20, cp.stdout
    # at most one timeout (none if an earlier process already flagged it)
    assert re.search(r"timeouts=[01] ", cp.stdout) and "degraded=1" in cp.stdout, cp.stdout
    # one timeout, then asynchronous: not 20 timeouts (timeouts= above counts
    # them; the clock agrees on a machine of normal speed)
    assert took < 0.5 * 20 * SLOW, took
    flag = m.root / "run" / "semisync.degraded"
    assert flag.exists()
    # another process sees the flag and does not wait at all
    t0 = time.monotonic()
    cp = m.drv("deliver tom INBOX 5 500 e 0\nstats\n")
    assert "timeouts=0" in cp.stdout, cp.stdout
    assert time.monotonic() - t0 < 5 * SLOW
    r.start()
    converged(m, r)
    wait_for(lambda: m.status("r1").get("bytes_behind") == "0", timeout=20 * SLOW, what="caught up")
    cp = m.drv("deliver tom INBOX 3 500 f 0\nstats\n")
    assert "timeouts=0" in cp.stdout and "degraded=0" in cp.stdout, cp.stdout
    assert not flag.exists()


def test_semisync_strict_refuses(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path,
                   conf_extra="sync_mode: semisync\nsync_semisync_timeout: 300ms\nsync_semisync_strict: yes")
    wait_for(lambda: m.status("r1").get("state") == "connected", timeout=20 * SLOW, what="connected")
    m.drv("useradd ursula\n")
    converged(m, r)
    assert r.quit() == 0
    cp = m.drv("deliver ursula INBOX 3 500 s 0\n", check=False)
    assert cp.stdout.count("unacked") == 3, cp.stdout
    assert "acked n=" not in re.sub(r"unacked", "", cp.stdout)
    cp = m.drv("append ursula INBOX 100 x\n", check=False)
    assert cp.stdout.lower().startswith("err temp"), cp.stdout
    r.start()
    converged(m, r)
    wait_for(lambda: m.status("r1").get("bytes_behind") == "0", timeout=20 * SLOW, what="caught up")
    cp = m.drv("deliver ursula INBOX 2 500 t 0\n")
    assert cp.stdout.count("acked") == 2 and "unacked" not in cp.stdout, cp.stdout
