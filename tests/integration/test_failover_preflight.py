"""castorctl failover refuses a pair that would not replicate back, and the
SHUTDOWN drain with nothing behind needs no connection (issue 16, item 8).
Real symmetric pairs (test_failover_util.Pair)."""
import re
import signal
import time

import pytest

from conftest import wait_for
from repl_util import SLOW
from test_failover import deliver, failover, subjects
from test_failover_util import Pair, converged


@pytest.fixture
def pair(procs, tmp_path):
    p = Pair(procs, tmp_path)
    yield p
    p.cleanup()


def status_file(node, chan):
    try:
        text = (node.root / "run" / f"sync-{chan}.status").read_text()
    except OSError:
        return {}
    return dict(l.split("=", 1) for l in text.splitlines() if "=" in l)


def drop_channels(node):
    """Make node what `castorctl init --role replica` without --channel
    makes: no sync_channels, no sync-client DAEMON entry."""
    conf = node.conf.read_text()
    conf = re.sub(r"(?m)^(sync_channels:.*|\w+_sync_\w+:.*)$", "", conf)
    node.conf.write_text(conf)
    svc = (node.root / "services.conf").read_text()
    svc = re.sub(r"(?m)^\s*sync_\w+\s+cmd=\"sync-client -r.*$", "", svc)
    (node.root / "services.conf").write_text(svc)


def test_failover_refuses_a_replica_with_no_channel_back(pair):
    drop_channels(pair.b)
    pair.start()
    a, b = pair.a, pair.b
    a.ctl("user", "add", "alice", "--password", "pw")
    assert deliver(a, "m1")[0] == 250
    converged(a, b)
    cp = failover(a, "--to", "b", check=False)
    assert cp.returncode != 0, cp.stdout
    assert "has no sync channel" in cp.stderr and "--force" in cp.stderr, cp.stderr
    assert "failover done" not in cp.stdout
    # nothing was changed: same roles, the master still serves, no state file
    assert a.server_row() == ("master", 1) and b.server_row() == ("replica", 1)
    assert not (a.root / "run" / "failover.state").exists()
    assert deliver(a, "m2")[0] == 250
    wait_for(lambda: subjects(b) == ["m1", "m2"], timeout=30 * SLOW, what="m2 on the replica")


def test_failover_accepts_the_symmetric_pair(pair):
    """The preflight's channel check passes on a pair made as docs/castorctl.md
    shows (each with a channel to the other)."""
    pair.start()
    a, b = pair.a, pair.b
    a.ctl("user", "add", "alice", "--password", "pw")
    assert deliver(a, "m1")[0] == 250
    cp = failover(a, "--to", "b")
    assert "[0/5] preflight" in cp.stdout and "--force" not in cp.stdout
    assert b.server_row()[0] == "master"
    # the new master replicates back to the old one
    assert deliver(b, "m2")[0] == 250
    wait_for(lambda: subjects(a) == ["m1", "m2"], timeout=30 * SLOW, what="m2 on the old master")


def test_drain_with_nothing_behind_exits_at_once(pair):
    """Both servers stopped at once, every record acknowledged: the master's
    SHUTDOWN drain finds its cursor at the log's end and exits 0 without a
    connection (it used to retry the stopping replica for 100 s)."""
    pair.start()
    a, b = pair.a, pair.b
    a.ctl("user", "add", "alice", "--password", "pw")
    for i in range(3):
        assert deliver(a, f"m{i}")[0] == 250
    converged(a, b)
    wait_for(lambda: status_file(a, "b").get("records_behind") == "0", timeout=30 * SLOW,
             what="nothing behind")
    t0 = time.monotonic()
    b.proc.send(signal.SIGQUIT)
    a.proc.send(signal.SIGQUIT)
    assert b.proc.wait(timeout=30 * SLOW) == 0, b.log()[-3000:]
    assert a.proc.wait(timeout=30 * SLOW) == 0, a.log()[-3000:]
    took = time.monotonic() - t0
    assert took < 20 * SLOW, took
    log = a.log()
    assert "SHUTDOWN entry failed" not in log, log[-3000:]
    assert re.search(r"drain complete channel=b .*nothing behind", log), log[-3000:]


def test_failover_force_goes_on_and_says_so(pair):
    drop_channels(pair.b)
    pair.start()
    a, b = pair.a, pair.b
    a.ctl("user", "add", "alice", "--password", "pw")
    assert deliver(a, "m1")[0] == 250
    cp = failover(a, "--to", "b", "--force")
    assert "--force: going on although" in cp.stdout and "has no sync channel" in cp.stdout, cp.stdout
    assert "failover done" in cp.stdout
    assert b.server_row()[0] == "master" and a.server_row()[0] == "replica"
