"""castord's memory with 200 idle connections: castord under 4 MB RSS, each
idle service child under 2 MB PSS (Cyrus 3.6: cyrmaster 3.6 MB RSS, an idle
imapd 4.5 MB PSS).  The figures are printed (pytest -s shows them); the
limits are asserted only on a build without sanitizers."""
import json
import os
import resource

import pytest

from conftest import binpath, free_ports, wait_for
from castord_util import Castord, Client, comm, proc_kb, sanitized

N = 200


def test_memory_with_200_idle_connections(procs, tmp_path):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < N + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, N + 256), hard))
    port = free_ports(1)
    c = Castord(procs, tmp_path, f'SERVICES {{\n  echo cmd="echod" listen="127.0.0.1:{port}" prefork=1\n}}\n')
    clients = []
    try:
        for _ in range(N):
            cl = Client(port, timeout=10)
            cl.greeting(timeout=10)
            clients.append(cl)
        for cl in clients[:5]:
            assert cl.cmd("PING") == "+OK PONG"
        kids = wait_for(lambda: [p for p in c.children() if comm(p) == "echod"] if
                        len([p for p in c.children() if comm(p) == "echod"]) >= N else None,
                        timeout=10, what=f"{N} children")
        rss = proc_kb(c.pid, "VmRSS")
        hwm = proc_kb(c.pid, "VmHWM")
        pss = sorted(proc_kb(k, "Pss", "smaps_rollup") for k in kids)
        child_rss = sorted(proc_kb(k, "VmRSS") for k in kids)
        figures = {
            "connections": N,
            "castord_rss_kb": rss,
            "castord_hwm_kb": hwm,
            "child_pss_kb_median": pss[len(pss) // 2],
            "child_pss_kb_max": pss[-1],
            "child_rss_kb_median": child_rss[len(child_rss) // 2],
            "cyrus_cyrmaster_rss_kb": 3600,
            "cyrus_idle_imapd_pss_kb": 4500,
        }
        print("castord memory:", json.dumps(figures))
        (tmp_path / "memory.json").write_text(json.dumps(figures))
        if sanitized(binpath("castord")) or sanitized(binpath("echod")):
            pytest.skip("sanitizer build: memory figures not meaningful " + json.dumps(figures))
        assert rss < 4096, figures
        assert pss[-1] < 2048, figures
    finally:
        for cl in clients:
            cl.close()
