"""Crash test of the mail store (issue 3, "Done when").

A driver (tests/helpers/store_crashdrv) appends and expunges in a loop and
prints, flushed, what it attempts and what succeeded.  For each failpoint
on the append and expunge paths it is killed with SIGKILL (failpoint
action `crash`) 20 times at a varying hit.  After every crash the store is
opened again and checked:
  - every append that returned success is present with its body (SHA-1),
    every acknowledged expunge is a tombstone, nothing appears that was
    never attempted (store_crashdrv verify);
  - store_check finds no inconsistency except the leftovers a crash between
    blob write and commit is allowed to leave (a temporary or orphan body
    file, never served), and `check --repair` removes those.
"""
import random
import signal

import pytest

from conftest import binpath, run

FAILPOINTS = [
    "store.append.after_blob_write",
    "store.append.after_blob_fsync",
    "store.append.before_commit",
    "store.append.after_commit",
    "store.expunge.before_commit",
    "store.expunge.after_commit",
]
CRASHES = 20
# What a crash may leave behind: bodies written but never committed.
BENIGN = ("stray temporary file", "orphan body file", "is named by no record")


def problems(stdout):
    return [line for line in stdout.splitlines() if line.startswith("user ")]


@pytest.mark.parametrize("fp", FAILPOINTS)
def test_sigkill_at_failpoint(tmp_path, fp):
    drv = binpath("store_crashdrv")
    root = tmp_path / "root"
    history = tmp_path / "history.log"
    run([drv, "init", root, "alice"])
    rng = random.Random(fp)
    for i in range(CRASHES):
        nth = rng.randint(1, 3)
        with open(history, "a") as out:
            out.flush()
            cp = run([drv, "run", root, "alice", "30", str(i + 1)], check=False, timeout=60,
                     env={"CASTOR_FAILPOINTS": f"{fp}={nth}*crash"})
            out.write(cp.stdout)
        assert cp.returncode == -signal.SIGKILL, \
            f"run {i}: expected a crash at {fp} (hit {nth}), exit {cp.returncode}\n{cp.stderr}"
        assert f"failpoint crash name={fp}" in cp.stderr
        v = run([drv, "verify", root, "alice", history], check=False, timeout=60)
        assert v.returncode == 0, f"after crash {i} at {fp}:\n{v.stdout}\n{v.stderr}"
        bad = [p for p in problems(v.stdout) if not any(b in p for b in BENIGN)]
        assert not bad, f"after crash {i} at {fp}, check found:\n" + "\n".join(bad)
    # the acknowledged history is long enough to mean something
    acked = [line for line in history.read_text().splitlines() if line.startswith("A ")]
    assert len(acked) >= 5
    # repair removes the leftovers; then the store is clean
    run([drv, "check", root, "alice", "repair"], check=False)
    cp = run([drv, "check", root, "alice"], check=False)
    assert cp.returncode == 0, cp.stdout
    v = run([drv, "verify", root, "alice", history], check=False)
    assert v.returncode == 0, v.stdout
    assert problems(v.stdout) == []
