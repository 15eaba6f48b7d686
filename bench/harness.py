"""bench/harness.py - the driver behind bench/run.

Starts the peers (Castor always, plus those named by --peers), runs each
selected benchmark against each peer, alternating the order every repetition
(A B, B A, A B ...), and writes bench/results/<date>[-quick|-smoke].json, a
Markdown table on stdout (median [min-max] per figure and per system, and the
ratio Castor/peer), and PNG plots next to the JSON when matplotlib is there.

A benchmark module (bench/<name>.py) provides:
  NAME, TITLE
  NEEDS         Castor programs it needs; missing ones -> {"castor": "not built"}
  MACHINE       True for benchmarks of the machine itself (limits): run once per
                repetition with peer=None
  sizes(level)  dict of sizes for "smoke" | "quick" | "full"
  run_once(peer, ctx) -> {"figures": [fig(...)...], "details": {...},
                          "clients": [client(...)...],
                          "invalid": "reason" (optional),
                          "samples": {key: [values]} (optional, for plots)}
ctx has .sizes (this benchmark's), .level, .rep, .runs, .tmp, .state (a dict
kept per benchmark and peer across repetitions), .opts, and .measuring(), a
context manager around each measurement window (the "other work" estimate
covers those windows only, not the setup around them).

Invalid runs.  Every load client of a run is reported by client(): its role,
what it sent, its error and how it ended ("done": finished its work;
"stopped": stopped where the benchmark meant it to stop, e.g. by the
server's shutdown after the signal; anything else, e.g. "error", "early",
"deadline", "lost", is a failure).  A run with a failed client, or one the
benchmark itself declares invalid, is recorded with "invalid": reason and no
figures: nothing measured by it is quoted.  A peer whose runs are all
invalid gets the status "invalid: <reason>".

Comparisons.  A figure's value may be a list: the repetitions of a short
command inside the run (at least 20); the table then shows the median of all
repetitions and their p10-p90 spread.  Castor and a peer are compared on the
ranges the table shows (p10-p90 for repeated commands, min-max over the
runs otherwise): ranges that overlap are reported as "no difference"; a
ratio is given only when both ranges are above zero (lags can be negative:
their difference is given instead); "(1 run)" marks a comparison of single
values without any spread.

Every peer is always torn down (stopped, temp dirs removed unless --keep),
also on an exception or SIGTERM/SIGINT.
"""
import argparse
import contextlib
import datetime
import importlib
import json
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import time
import traceback

import common
from common import OthersMeter, cpu_busy, cpu_jiffies, log, pctl, summary

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
BENCHMARKS = ["limits", "lmtp_deliver", "repl_lag", "imap_fetch", "memory", "full_sync",
              "shutdown_drain", "failover", "scale"]
SLOT_LEGEND = {
    "default": "Castor `sync_mode: async`; Cyrus default rolling replication (sync_repeat_interval 1 s)",
    "lowlag": "Castor `sync_mode: semisync`; Cyrus `sync_rightnow_channel` (push before answering)",
}


def background(opts):
    """CPU busy % over 0.5 s and the load average just before a run: other work
    on the machine changes every figure (fsync latency first), so each run
    records it.  With --quiet-wait S, wait up to S seconds for busy < 25 %."""
    end = time.monotonic() + (opts.quiet_wait or 0)
    while True:
        c0 = cpu_jiffies()
        time.sleep(0.5)
        busy = cpu_busy(c0, cpu_jiffies())
        if busy < 25 or time.monotonic() >= end:
            break
    with open("/proc/loadavg") as f:
        la = f.read().split()[:3]
    return {"cpu_busy_pct": round(busy, 1), "loadavg": [float(x) for x in la]}


def fig(key, label, unit, better, value):
    """One figure of one run.  better: "higher" | "lower" | None (informational).
    value: a number, or a list of the repetitions of a short command."""
    return {"key": key, "label": label, "unit": unit, "better": better, "value": value}


OK_ENDINGS = ("done", "stopped")


def client(role, sent, error, ended, **more):
    """One load client's result, as every benchmark reports it (see the top)."""
    return dict(role=role, sent=sent, error=error, ended=ended, **more)


def client_problem(clients):
    """None when every load client ran as the benchmark meant, else why the run
    is invalid.  A run that reports no clients at all is invalid too: a
    benchmark must say what its load did."""
    if clients is None:
        return "no load-client results reported"
    for k, c in enumerate(clients):
        if c.get("ended") not in OK_ENDINGS:
            return (f"load client {c.get('role', k)} ended {c.get('ended') or '(not recorded)'} "
                    f"after {c.get('sent')} sent: {c.get('error')}")
    return None


class Ctx:
    def __init__(self, opts, level, runs, tmp):
        self.opts = opts
        self.level = level
        self.runs = runs
        self.tmp = tmp
        self.rep = 0
        self.sizes = {}
        self._state = {}
        self.windows = []

    @contextlib.contextmanager
    def measuring(self):
        """Around one measurement window: what other work used of the machine
        in it (OthersMeter), so setup between windows is charged to nobody."""
        meter, c0, t0 = OthersMeter().start(), cpu_jiffies(), time.monotonic()
        try:
            yield
        finally:
            el = time.monotonic() - t0
            busy = cpu_busy(c0, cpu_jiffies())
            self.windows.append((el, min(meter.stop(), round(busy, 1)), busy))

    def window_load(self):
        """(others %, busy %, seconds) over the windows so far, time-weighted."""
        tot = sum(w[0] for w in self.windows)
        if not tot:
            return None
        return (round(sum(w[0] * w[1] for w in self.windows) / tot, 1),
                round(sum(w[0] * w[2] for w in self.windows) / tot, 1), round(tot, 3))

    def state_for(self, bench, peer):
        return self._state.setdefault((bench, peer), {})


def load_peers(names, opts, root):
    from peers.castor import CastorPeer
    peers = [CastorPeer(opts, root)]
    for n in names:
        if n == "cyrus":
            from peers.cyrus import CyrusPeer
            peers.append(CyrusPeer(opts, root))
        elif n == "dovecot":
            from peers.dovecot import DovecotPeer
            peers.append(DovecotPeer(opts, root))
        elif n:
            raise SystemExit(f"bench: unknown peer {n!r} (cyrus, dovecot)")
    return peers


def parse_args(argv):
    ap = argparse.ArgumentParser(prog="bench/run", description="Castor benchmarks side by side with Cyrus 3.6")
    ap.add_argument("--only", default="", help="comma-separated benchmarks: " + ",".join(BENCHMARKS))
    ap.add_argument("--quick", action="store_true", help="reduced sizes, 1 repetition (under 10 minutes)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, Castor only: checks the harness works")
    ap.add_argument("--peers", default=None, help="comparison systems (default cyrus; none with --smoke)")
    ap.add_argument("--runs", type=int, default=0, help="repetitions (default 3; 1 with --quick/--smoke)")
    ap.add_argument("--build", default=os.path.join(TOP, "build"), help="Castor build tree (default build/)")
    ap.add_argument("--out", default=None, help="directory for the JSON and plots (default bench/results)")
    ap.add_argument("--tmp", default=None, help="parent of the temporary server roots (default $TMPDIR)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary server roots (debugging)")
    ap.add_argument("--json", action="store_true", help="print the JSON document on stdout (table on stderr)")
    ap.add_argument("--no-plots", action="store_true")
    ap.add_argument("--quiet-wait", type=float, default=0,
                    help="before each run wait up to S seconds for the machine to be idle (< 25%% CPU)")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return ap.parse_args(argv)


def fmt(v):
    if v is None:
        return "-"
    a = abs(v)
    if a == 0:
        return "0"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 10:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def cell(s):
    if isinstance(s, dict) and "median" in s:
        if s.get("p10") is not None:
            return f"**{fmt(s['median'])}** [p10–p90 {fmt(s['p10'])}–{fmt(s['p90'])}, n {s['n']}]"
        if s["min"] == s["max"]:
            return f"**{fmt(s['median'])}**"
        return f"**{fmt(s['median'])}** [{fmt(s['min'])}–{fmt(s['max'])}]"
    if s is None:
        return "-"
    return str(s)


def short(status):
    """A status for a table cell: "not built", "error", "n/a" ..."""
    if not isinstance(status, str):
        return status
    return status.split(" (")[0].split(":")[0]


def spread(s):
    """The range a cell shows: p10-p90 of repeated commands, else min-max over runs."""
    if s.get("p10") is not None:
        return s["p10"], s["p90"]
    return s["min"], s["max"]


def compare(a, b):
    """Castor's summary `a` against a peer's `b`: {"text", "overlap", "difference",
    "ratio" (only when both ranges are above zero), "single"} or None."""
    if not (isinstance(a, dict) and isinstance(b, dict)) or a.get("median") is None or b.get("median") is None:
        return None
    alo, ahi = spread(a)
    blo, bhi = spread(b)
    single = (a.get("n") is None and len(a.get("runs", [])) < 2) or \
        (b.get("n") is None and len(b.get("runs", [])) < 2)
    out = {"overlap": alo <= bhi and blo <= ahi, "difference": a["median"] - b["median"], "single": single}
    if min(alo, blo) > 0:
        out["ratio"] = a["median"] / b["median"]
    if out["overlap"]:
        out["text"] = "no difference"
    elif "ratio" in out:
        out["text"] = f"{out['ratio']:.2f}×"
    else:
        out["text"] = f"Δ {'+' if out['difference'] > 0 else ''}{fmt(out['difference'])}"
    if single:
        out["text"] += " (1 run)"
    return out


def markdown(doc):
    peers = [p for p in doc["peers"]]
    others = [p for p in peers if p != "castor"]
    out = []
    mach = doc["benchmarks"].get("limits")
    if mach:
        out.append("Machine limits (same run):\n")
        out.append("| figure | unit | value |")
        out.append("|---|---|---|")
        for f in mach["figures"].values():
            out.append(f"| {f['label']} | {f['unit']} | {cell(f['values'].get('machine'))} |")
        out.append("")
    hdr = "| benchmark | figure | unit | " + " | ".join(p.capitalize() for p in peers)
    hdr += "".join(f" | Castor/{p.capitalize()}" for p in others) + " |"
    out.append(hdr)
    out.append("|" + "---|" * (3 + len(peers) + len(others)))
    for bname, b in doc["benchmarks"].items():
        if bname == "limits":
            continue
        if not b["figures"]:
            st = "; ".join(f"{p}: {short(v)}" for p, v in b.get("status", {}).items()) or "skipped"
            out.append(f"| {bname} | ({st}) | |" + " |" * (len(peers) + len(others)))
            continue
        for f in b["figures"].values():
            row = f"| {bname} | {f['label']} | {f['unit']} | "
            row += " | ".join(cell(f["values"].get(p)) if p in f["values"] or
                              b.get("status", {}).get(p, "").startswith("ok")
                              else short(b.get("status", {}).get(p, "-")) for p in peers)
            for p in others:
                c = (f.get("compare") or {}).get(p)
                row += f" | {c['text']}" if c else " | -"
            out.append(row + " |")
    notes = []
    for bname, b in doc["benchmarks"].items():
        for p, st in b.get("status", {}).items():
            if st != "ok" and not st.startswith("n/a"):
                notes.append(f"- {bname}: {p}: {st}")
    out.append("")
    out.append("[default] = " + SLOT_LEGEND["default"] + ".  ")
    out.append("[lowlag] = " + SLOT_LEGEND["lowlag"] + ".")
    load = []
    for bname, b in doc["benchmarks"].items():
        per, whole = {}, False
        for r in b.get("runs", []):
            bg = r.get("background") or {}
            if "during_others_pct" in bg:
                per.setdefault(r["peer"], []).append(bg["during_others_pct"])
                whole = whole or bg.get("during_scope") != "measurement windows"
        if per:
            load.append(f"{bname}{'*' if whole else ''} " +
                        ", ".join(f"{p} {max(v):.0f}%" for p, v in per.items()))
    if load:
        out.append("")
        out.append("Machine CPU used by other work during the measurement windows (estimate, worst run "
                   "per system; 100% = both cores; * = whole run, setup included): " + "; ".join(load) + ".")
    if notes:
        out.append("")
        out += notes
    return "\n".join(out) + "\n"


def run_benchmarks(opts, level, runs, benches, peers, ctx, doc, samples):
    for bname in benches:
        mod = importlib.import_module(bname)
        ctx.sizes = mod.sizes(level)
        b = doc["benchmarks"][bname] = {"title": mod.TITLE, "sizes": ctx.sizes, "figures": {},
                                        "status": {}, "runs": []}
        log(f"=== {bname} ({level}, {runs} run(s))")
        targets = [None] if getattr(mod, "MACHINE", False) else peers
        vals = {}         # key -> peer -> [values]
        rsamples = {}     # key -> peer -> [repetitions of a short command, every run]
        oks, errs, bad = {}, {}, {}   # peer -> runs that worked / error strings / invalid reasons
        for rep in range(runs):
            ctx.rep = rep
            order = targets if rep % 2 == 0 else list(reversed(targets))
            for peer in order:
                pname = peer.name if peer else "machine"
                if peer is not None:
                    why = peer.unavailable()
                    only = getattr(peer, "BENCHMARKS", None)
                    if not why and only is not None and bname not in only:
                        why = "n/a (not measured for this system)"
                    if not why and hasattr(mod, "applies"):
                        why = mod.applies(peer)
                    if not why and peer.name == "castor":
                        miss = peer.missing(mod.NEEDS)
                        if miss:
                            why = "not built (" + ", ".join(miss) + ")"
                    if why:
                        b["status"][pname] = why
                        continue
                ctx.state = ctx.state_for(bname, pname)
                ctx.windows = []
                bg = background(opts)
                t0 = time.monotonic()
                c0, meter = cpu_jiffies(), OthersMeter().start()
                try:
                    r = mod.run_once(peer, ctx)
                except Exception as e:  # noqa: BLE001 - a failed run is reported, the others go on
                    log(f"{bname} {pname}: run {rep} failed: {e!r}")
                    b["runs"].append({"peer": pname, "rep": rep, "background": bg, "error": repr(e)[:2000],
                                      "error_type": type(e).__name__,
                                      "traceback": traceback.format_exc()[-3000:]})
                    errs.setdefault(pname, []).append(repr(e)[:300])
                    if peer is not None:
                        peer.mark_dirty()
                    continue
                secs = time.monotonic() - t0
                busy = cpu_busy(c0, cpu_jiffies())
                run_others = min(meter.stop(), round(busy, 1))
                win = ctx.window_load()
                if win:
                    bg.update(during_others_pct=win[0], during_busy_pct=win[1], during_window_s=win[2],
                              during_scope="measurement windows", run_others_pct=run_others)
                else:
                    bg.update(during_busy_pct=round(busy, 1), during_others_pct=run_others,
                              during_scope="whole run")
                rec = {"peer": pname, "rep": rep, "seconds": round(secs, 2), "background": bg,
                       "clients": r.get("clients"), "details": r.get("details", {})}
                why = r.get("invalid") or client_problem(r.get("clients"))
                if why:
                    # nothing measured by this run is quoted: its figures stay out of
                    # the summaries (the details keep what happened)
                    rec["invalid"] = why
                    b["runs"].append(rec)
                    bad.setdefault(pname, []).append(why[:300])
                    log(f"{bname} {pname}: run {rep} invalid: {why}")
                    continue
                figs = {}
                for f in r.get("figures", []):
                    meta = b["figures"].setdefault(f["key"], {k: f[k] for k in ("label", "unit", "better")})
                    meta.setdefault("values", {})
                    v = f["value"]
                    if isinstance(v, list):
                        rsamples.setdefault(f["key"], {}).setdefault(pname, []).extend(v)
                        v = statistics.median(v) if v else None
                    vals.setdefault(f["key"], {}).setdefault(pname, []).append(v)
                    figs[f["key"]] = v
                for k, xs in (r.get("samples") or {}).items():
                    samples.setdefault((bname, k), {}).setdefault(pname, []).extend(xs)
                rec["figures"] = figs
                b["runs"].append(rec)
                oks[pname] = oks.get(pname, 0) + 1
                log(f"{bname} {pname} run {rep}: " + json.dumps(figs, default=str)[:600])
        for pname in set(oks) | set(errs) | set(bad):
            e, v, n_ok = errs.get(pname, []), bad.get(pname, []), oks.get(pname, 0)
            if not n_ok:
                b["status"][pname] = ("invalid: " + v[-1]) if v else ("error: " + e[-1])
            elif e or v:
                b["status"][pname] = (f"ok ({len(e) + len(v)} of {len(e) + len(v) + n_ok} runs "
                                      f"{'invalid' if v else 'failed'}: {(v or e)[-1]})")
            else:
                b["status"][pname] = "ok"
        if getattr(mod, "DIRTIES", False):
            for p in peers:
                p.mark_dirty()
        for key, per in vals.items():
            for pname, xs in per.items():
                b["figures"][key]["values"][pname] = summary(xs, rsamples.get(key, {}).get(pname))
            cv = b["figures"][key]["values"]
            b["figures"][key]["compare"] = {p.name: compare(cv.get("castor"), cv.get(p.name))
                                            for p in peers if p.name != "castor" and cv.get(p.name)}
        # sample distributions, compact (every 5th percentile), for the record
        for (bn, k), per in samples.items():
            if bn != bname:
                continue
            b.setdefault("distributions", {})[k] = {
                p: {"n": len(xs), "pctl_5": [round(pctl(xs, q), 6) for q in range(0, 101, 5)]}
                for p, xs in per.items() if xs}


def plots(doc, samples, stem):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:  # noqa: BLE001 - plots are optional
        log("matplotlib not available: no plots (scripts/deps.sh bench installs python3-matplotlib)")
        return []
    made = []
    lag = {k: v for (bn, k), v in samples.items() if bn == "repl_lag"}
    if lag:
        def parse(k):       # "50/s [default]" -> ("default", 50)
            rate, _, slot = k.partition(" ")
            return slot.strip("[]"), int(rate.split("/")[0]) if rate.split("/")[0].isdigit() else 0
        slots = sorted({parse(k)[0] for k in lag}, key=lambda x: (x != "default", x))
        rates = sorted({parse(k)[1] for k in lag})
        fig, axes = plt.subplots(len(slots), len(rates), figsize=(5.5 * len(rates), 3.8 * len(slots)),
                                 squeeze=False)
        cells = {parse(k): k for k in lag}
        grid = [(i, j, sl, r) for i, sl in enumerate(slots) for j, r in enumerate(rates)]
        for i, j, slot, rate in grid:
            ax = axes[i][j]
            k = cells.get((slot, rate))
            if k is None:
                ax.axis("off")
                continue
            for pname, xs in sorted(lag[k].items()):
                xs = sorted(xs)
                if not xs:
                    continue
                ys = [(n + 1) / len(xs) for n in range(len(xs))]
                ax.plot(xs, ys, label=f"{pname} (p99 {pctl(xs, 99):.1f} ms)")
            ax.set_xscale("symlog", linthresh=1)
            ax.set_title(k)
            ax.set_xlabel("lag, ms (LMTP 250 -> visible on replica)")
            ax.set_ylabel("fraction of messages")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        p = stem + "-lag.png"
        fig.savefig(p, dpi=90)
        plt.close(fig)
        made.append(p)
    tp = doc["benchmarks"].get("lmtp_deliver")
    if tp and tp["figures"]:
        rows = [(k, f) for k, f in tp["figures"].items() if f["unit"] == "msgs/s"]
        pnames = [pn for pn in doc["peers"] if any(isinstance(f["values"].get(pn), dict) for _k, f in rows)]
        if rows and pnames:
            fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(rows)), 4))
            w = 0.8 / max(1, len(pnames))
            for j, pn in enumerate(pnames):
                xs, ys, lo, hi = [], [], [], []
                for i, (_k, f) in enumerate(rows):
                    s = f["values"].get(pn)
                    if isinstance(s, dict):
                        xs.append(i + j * w)
                        ys.append(s["median"])
                        lo.append(s["median"] - s["min"])
                        hi.append(s["max"] - s["median"])
                if xs:
                    ax.bar(xs, ys, w, yerr=[lo, hi], label=pn, capsize=3)
            ax.set_xticks([i + w * (len(pnames) - 1) / 2 for i in range(len(rows))])
            ax.set_xticklabels([f["label"].replace("deliveries/s, ", "") for _k, f in rows],
                               rotation=30, ha="right", fontsize=8)
            ax.set_ylabel("messages/s (median, min-max)")
            ax.set_title("LMTP delivery with rolling replication")
            ax.legend()
            ax.grid(True, axis="y", alpha=0.3)
            fig.tight_layout()
            p = stem + "-throughput.png"
            fig.savefig(p, dpi=90)
            plt.close(fig)
            made.append(p)
    return made


def main(argv=None):
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    if opts.list:
        for b in BENCHMARKS:
            print(b, "-", importlib.import_module(b).TITLE)
        return 0
    level = "smoke" if opts.smoke else "quick" if opts.quick else "full"
    runs = opts.runs or (3 if level == "full" else 1)
    benches = [b.strip() for b in opts.only.split(",") if b.strip()] or list(BENCHMARKS)
    for b in benches:
        if b not in BENCHMARKS:
            raise SystemExit(f"bench: unknown benchmark {b!r}; one of {', '.join(BENCHMARKS)}")
    benches = [b for b in BENCHMARKS if b in benches]
    peer_names = opts.peers if opts.peers is not None else ("" if opts.smoke else "cyrus")
    peer_names = [p.strip() for p in peer_names.split(",") if p.strip()]
    outdir = opts.out or os.path.join(HERE, "results")
    root = tempfile.mkdtemp(prefix="castor-bench-", dir=opts.tmp)
    os.chmod(root, 0o755)

    def on_signal(signum, _frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, on_signal)

    stamp = datetime.datetime.now()
    doc = {"date": stamp.isoformat(timespec="seconds"), "level": level, "runs": runs,
           "argv": sys.argv[1:] if argv is None else argv,
           "host": {"machine": platform.machine(), "kernel": platform.release(), "cpus": os.cpu_count(),
                    "python": platform.python_version()},
           "peers": {}, "slots": SLOT_LEGEND, "benchmarks": {}}
    common.ROOT = root
    peers = load_peers(peer_names, opts, root)
    for p in peers:
        p.user_timeout = 20 if level == "smoke" else 60
    ctx = Ctx(opts, level, runs, root)
    samples = {}
    rc = 0
    try:
        for p in peers:
            why = p.unavailable()
            doc["peers"][p.name] = {"status": why or "ok", "version": None if why else p.version(),
                                    "slots": p.SLOTS}
            log(f"peer {p.name}: {why or 'ok'}")
        run_benchmarks(opts, level, runs, benches, peers, ctx, doc, samples)
    except KeyboardInterrupt as e:
        log(f"interrupted ({e}); tearing down")
        doc["interrupted"] = str(e)
        rc = 130
    finally:
        for p in peers:
            try:
                p.teardown()
            except Exception as e:  # noqa: BLE001 - tear the others down all the same
                log(f"{p.name}: teardown failed: {e!r}")
        if opts.keep:
            log(f"kept {root}")
        else:
            for _ in range(5):
                shutil.rmtree(root, ignore_errors=True)
                if not os.path.exists(root):
                    break
                time.sleep(0.5)
    os.makedirs(outdir, exist_ok=True)
    suffix = "" if level == "full" else "-" + level
    stem = os.path.join(outdir, stamp.strftime("%Y-%m-%d") + suffix)
    with open(stem + ".json", "w") as f:
        json.dump(doc, f, indent=1, default=str)
    table = markdown(doc)
    made = [] if opts.no_plots else plots(doc, samples, stem)
    doc["files"] = [stem + ".json"] + made
    with open(stem + ".json", "w") as f:
        json.dump(doc, f, indent=1, default=str)
    if opts.json:
        sys.stderr.write(table)
        json.dump(doc, sys.stdout, indent=1, default=str)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(table)
        print(f"\nresults: {stem}.json" + "".join(f"\nplot: {m}" for m in made))
    return rc
