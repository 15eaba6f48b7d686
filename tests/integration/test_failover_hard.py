"""Hard failover (issue 9): the master dies (SIGKILL) with acknowledged
messages its replica does not have yet, the replica is promoted with
`castorctl promote`, takes more mail, and the old master comes back with
its old configuration: peer-check (a START entry) finds the newer master
and demotes it before any listener opens, so it never accepts a delivery;
it joins as a replica; nothing either server acknowledged is overwritten.

Every message lands on both sides through the split-brain policy
`sync_conflict: renumber` (the default, issue 8): the new master pulls the
old master's unreplicated messages, appends them under fresh UIDs, and the
old master becomes its exact copy (its losing UIDs quarantined first)."""
import signal

import pytest

from conftest import wait_for
from repl_util import SLOW
from test_failover import deliver, mail_refused, subjects
from test_failover_util import Pair, converged


@pytest.fixture
def pair(procs, tmp_path):
    p = Pair(procs, tmp_path)
    yield p
    p.cleanup()


def crash_with_unreplicated(pair):
    """a acknowledges m0..m4 (replicated), then s0..s2 while b's castord is
    stopped (acknowledged, not replicated); a is SIGKILLed; b comes back and
    is promoted.  Returns the tags each side acknowledged."""
    a, b = pair.start().nodes()
    a.ctl("user", "add", "alice", "--password", "pw")
    on_a = []
    for i in range(5):
        assert deliver(a, f"m{i}")[0] == 250
        on_a.append(f"m{i}")
    converged(a, b)
    # the replica goes away; a keeps acknowledging mail it cannot replicate
    b.proc.send(signal.SIGTERM)
    b.proc.wait(timeout=30 * SLOW)
    for i in range(3):
        assert deliver(a, f"s{i}")[0] == 250
        on_a.append(f"s{i}")
    wait_for(lambda: a.status("b")["channels"][0]["records_behind"] >= 3, timeout=20 * SLOW,
             what="status shows the unreplicated deliveries")
    assert not a.status("b")["channels"][0]["connected"]
    # the master dies hard
    a.kill()
    # the replica comes back and is promoted by hand
    b.start()
    cp = b.ctl("promote")
    assert "promoted: role master, epoch 2" in cp.stdout, cp.stdout + cp.stderr
    assert b.server_row() == ("master", 2)
    # writable at once
    on_b = []
    for i in range(3):
        code, text = deliver(b, f"n{i}")
        assert code == 250, text
        on_b.append(f"n{i}")
    return on_a, on_b


def bring_back_old_master(pair):
    a, b = pair.nodes()
    a.start()   # its old configuration: castor.conf says master, users.db said master epoch 1
    assert a.server_row() == ("replica", 2), "peer-check demoted the old master before it listened"
    code, text = mail_refused(a)
    assert code == 451 and text.startswith("4.3.0"), (code, text)
    assert "DEMOTED" in a.log()


def test_hard_failover_old_master_rejoins_as_replica(pair):
    on_a, on_b = crash_with_unreplicated(pair)
    a, b = pair.nodes()
    bring_back_old_master(pair)
    # the new master's client reaches it and finds the split brain (the
    # same UIDs name different messages): reported as conflicts ...
    wait_for(lambda: b.status("a")["channels"][0]["conflicts"]["total"] >= 1, timeout=60 * SLOW,
             what="the new master reports the split brain")
    # ... and nothing acknowledged is overwritten on either side
    assert set(on_a) <= set(subjects(a)), subjects(a)
    assert set(on_a[:5] + on_b) <= set(subjects(b)), subjects(b)
    # no subject appears twice anywhere
    for n in (a, b):
        got = subjects(n)
        assert len(got) == len(set(got)), (n.name, got)
    # the old master stays fenced: it never takes a delivery
    code, _ = mail_refused(a)
    assert code == 451
    assert b.server_row() == ("master", 2)


def test_hard_failover_every_acknowledged_message_on_both_sides(pair):
    on_a, on_b = crash_with_unreplicated(pair)
    a, b = pair.nodes()
    bring_back_old_master(pair)
    want = sorted(on_a + on_b)
    wait_for(lambda: sorted(subjects(b)) == want and sorted(subjects(a)) == want,
             timeout=20, what="every acknowledged message on both servers")
    converged(b, a)
    # the new master's view of its replica: identical, mailbox by mailbox
    cp = b.ctl("verify", "--all", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    # the old master's losing UIDs were kept: each body in its quarantine
    manifest = (a.root / "quarantine" / "manifest").read_text()
    assert manifest.count("reason=uid-replaced") == 3, manifest
