"""Seeded crash soak (issue 16), the first row of the fault matrix (issue
20, the others are in test_fault_matrix.py): every Castor process on both
sides of a pair is SIGKILLed at random while LMTP and IMAP clients load
the master.

The load and the checks are soak_util's: MTA-like LMTP clients (resent
until a 250) and IMAP APPENDs, every answer in a history; at the end the
two sides converge, every acknowledged message is present exactly once on
both, an uncertain one at most once, nothing that no client sent, and
`castorctl check --all` is clean on both without --repair (leftovers of a
crash, such as a blob's .tmp file, are cleaned at start, not damage).

A killer thread, driven by a seeded random generator, picks a victim
every 0.2-0.8 s among the processes of both servers: castord itself, or
one of its children (lmtpd, imapd, pop3d, syncd, sync-client, whatever
runs at that moment).  A castord that was killed is started again once
its children have gone, as an init system would.

CASTOR_SOAK_SECONDS (default 60) sets the length of the load, and
CASTOR_SOAK_SEED the seed (default: random, printed; a failing run is
replayed by setting it).  `make soak` runs it at full size."""
import random
from collections import Counter

from soak_util import USERS, PW, Killer, Load, final_checks, soak_seconds, soak_seed
from repl_util import SLOW
from test_failover_util import Pair, converged


def test_crash_soak(procs, tmp_path):
    seconds = soak_seconds(60)
    seed = soak_seed()
    print(f"crash soak: seed {seed}, {seconds:.0f} s (CASTOR_SOAK_SEED={seed} replays it)")
    pair = Pair(procs, tmp_path)
    try:
        a, b = pair.start().nodes()
        for u in USERS:
            a.ctl("user", "add", u, "--password", PW)
        converged(a, b)
        rnd = random.Random(seed)
        load = Load(a, rnd.random())
        killer = Killer(pair.nodes(), rnd.random(), load.stop)
        load.start()
        killer.start()
        load.stop.wait(seconds)
        load.stop.set()
        killer.join(timeout=120 * SLOW)
        assert not killer.is_alive(), "the killer hung"
        assert killer.error is None, f"restarting a killed castord failed: {killer.error!r}"
        load.finish()
        load.save(tmp_path / "history.jsonl")
        print(f"kills {len(killer.kills)}: {dict(Counter(killer.kills))}")
        print(f"load: {load.counts()}")
        assert load.counts()["acked"] > 20, "the load did not run"
        assert len(killer.kills) >= 10, killer.kills
        final_checks(a, b, load, seed)
    finally:
        pair.cleanup()
