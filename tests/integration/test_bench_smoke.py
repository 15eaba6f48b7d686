"""bench/run --smoke: the benchmark harness works end to end (tiny sizes,
Castor only).  It must exit 0, print one JSON document naming every
benchmark, measure the machine's limits, and for each Castor benchmark
either report figures, or say "not built" and name the missing programs.
A failure inside the harness's own code (a Python TypeError, KeyError ...)
fails this test; a server that misbehaves is reported in the JSON, which is
the benchmarks' job, and shown here as a warning.  Timing is never asserted.

Load clients: every run of every benchmark reports its load clients
(role, sent, error, ended).  A client that raised, or stopped before the
benchmark meant it to (e.g. shutdown_drain's loaders before SIGQUIT), makes
the run invalid and fails this test: figures from such a run describe a
server that was not under the load the benchmark claims (issue 17: a
TypeError at message 200 went unseen that way).
"""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

from conftest import BUILD, TOP

OK_ENDINGS = ("done", "stopped")
HARNESS_BUGS = ("TypeError", "KeyError", "AttributeError", "NameError", "IndexError", "ValueError",
                "ZeroDivisionError", "ImportError", "ModuleNotFoundError", "UnboundLocalError", "SyntaxError")


def test_bench_smoke(tmp_path):
    out = tmp_path / "results"
    cp = subprocess.run([sys.executable, str(TOP / "bench" / "run"), "--smoke", "--json",
                         "--build", str(BUILD), "--out", str(out), "--tmp", str(tmp_path)],
                        capture_output=True, text=True, timeout=900)
    assert cp.returncode == 0, f"bench/run --smoke exited {cp.returncode}\n{cp.stderr[-4000:]}"
    doc = json.loads(cp.stdout)
    assert doc["level"] == "smoke" and doc["runs"] == 1
    assert list(doc["peers"]) == ["castor"]
    files = list(out.glob("*-smoke.json"))
    assert len(files) == 1 and json.loads(files[0].read_text())["level"] == "smoke"

    benches = doc["benchmarks"]
    assert set(benches) == {"limits", "lmtp_deliver", "repl_lag", "imap_fetch", "memory", "full_sync",
                            "shutdown_drain", "failover", "scale"}
    lim = benches["limits"]["figures"]
    for key in ("fdatasync_s", "create_fsync_s", "sha1_mb_s", "loopback_mb_s", "sink_null.1u1c",
                "sink_fsync.1u1c"):
        assert lim[key]["values"]["machine"]["median"] > 0, key

    for name, b in benches.items():
        for r in b["runs"]:
            if "error" in r:
                continue          # an exception: reported below (harness bug) or as a warning
            where = f"{name} {r['peer']} run {r['rep']}"
            assert isinstance(r.get("clients"), list) and r["clients"], f"{where}: no load-client results"
            for c in r["clients"]:
                assert {"role", "sent", "error", "ended"} <= set(c), f"{where}: client fields missing: {c}"
                assert c["ended"] in OK_ENDINGS, f"{where}: load client {c['role']} ended {c['ended']}: {c['error']}"
            assert not r.get("invalid"), f"{where}: invalid run: {r['invalid']}"

    for name, b in benches.items():
        if name == "limits":
            continue
        st = b["status"].get("castor")
        assert st, f"{name}: no status for castor"
        for r in b["runs"]:
            assert r.get("error_type") not in HARNESS_BUGS, \
                f"{name}: harness bug: {r.get('error')}\n{r.get('traceback')}"
        if st == "ok":
            vals = [f["values"].get("castor") for f in b["figures"].values()]
            assert vals and all(isinstance(v, dict) and "median" in v for v in vals), name
        elif st.startswith("not built"):
            assert "(" in st, f"{name}: 'not built' must name the missing programs: {st}"
            assert not any(r["peer"] == "castor" for r in b["runs"]), name
        else:
            warnings.warn(f"bench smoke: {name}: castor: {st}")
    # nothing left running from the temporary roots
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout.split()
    assert not leftovers, f"processes left running: {leftovers}"
    assert not [p for p in Path(tmp_path).iterdir() if p.name.startswith("castor-bench-")], "temp root not removed"
    assert os.path.isdir(out)


def test_bench_comparison_rules():
    """The comparison column's rules (bench/harness.py): overlapping ranges are
    "no difference"; a ratio only when both ranges are above zero, else the
    difference; repeated commands are compared on p10-p90; single values are
    marked; a run with a failed or early client is invalid."""
    sys.path.insert(0, str(TOP / "bench"))
    try:
        import harness
        from common import summary
    finally:
        sys.path.pop(0)
    c = harness.compare(summary([1.0, 2.0, 3.0]), summary([2.5, 4.0, 5.0]))
    assert c["overlap"] and c["text"] == "no difference"
    c = harness.compare(summary([1.0, 1.1, 1.2]), summary([2.0, 2.1, 2.2]))
    assert not c["overlap"] and c["text"] == f"{1.1 / 2.1:.2f}×"
    c = harness.compare(summary([-0.9, -0.8, -0.7]), summary([590.0, 596.0, 607.0]))
    assert "ratio" not in c and c["text"].startswith("Δ ")
    c = harness.compare(summary([3.0]), summary([6.0]))
    assert c["single"] and c["text"].endswith("(1 run)")
    # 20 repetitions: compared on p10-p90, whatever the extremes
    a = summary([1.0], [0.5] + [2.0] * 18 + [30.0])
    b = summary([1.0], [0.1] + [3.0] * 18 + [40.0])
    assert a["n"] == 20 and a["median"] == 2.0 and a["min"] == 0.5 and a["max"] == 30.0
    c = harness.compare(a, b)
    assert not c["single"] and c["overlap"] is False and c["text"] == f"{2.0 / 3.0:.2f}×"
    assert harness.client_problem([harness.client("x", 5, None, "done")]) is None
    assert harness.client_problem([harness.client("x", 5, None, "stopped")]) is None
    assert "early" in harness.client_problem([harness.client("x", 5, None, "early")])
    assert "TypeError" in harness.client_problem([harness.client("x", 199, "TypeError()", "error")])
    assert harness.client_problem(None)
