"""Shell examples in docs/*.md that are marked runnable do what they say.

A fenced block whose previous non-blank line is `<!-- runnable -->` is
run: the runnable blocks of one document, in order, as one bash script
(`set -euo pipefail`) in a fresh directory, with the build's programs
first on PATH and PORT_BASE set to 20 free loopback ports.  The script
must exit 0 and print what the document says it prints when it says so
(a block ending in `&& echo identical` must print "identical").  Any
castord a script leaves running is stopped by pid file afterwards.
"""
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import BUILD, TOP, free_ports, wait_for
from repl_util import SLOW

FENCE = re.compile(r"<!-- runnable -->\s*\n```(?:bash|sh)\n(.*?)\n```", re.S)


def runnable_docs():
    out = []
    for p in sorted((TOP / "docs").glob("*.md")):
        blocks = FENCE.findall(p.read_text())
        if blocks:
            out.append(pytest.param(p.name, blocks, id=p.name))
    return out


def test_some_examples_are_runnable():
    assert runnable_docs(), "no block in docs/ is marked <!-- runnable -->"


@pytest.mark.parametrize("doc,blocks", runnable_docs())
def test_runnable_examples(doc, blocks, tmp_path):
    dirs = [str(BUILD / d) for d in ("src/ctl", "src/master", "src/sync", "src/imap", "src/lmtp",
                                     "src/pop3")]
    env = dict(os.environ, PATH=":".join(dirs + [os.environ.get("PATH", "/usr/bin:/bin")]),
               PORT_BASE=str(free_ports(20)), CASTOR_CONFIG="")
    script = "set -euo pipefail\n" + "\n".join(blocks) + "\n"
    (tmp_path / "example.sh").write_text(script)
    try:
        cp = subprocess.run(["bash", str(tmp_path / "example.sh")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=180 * SLOW)
        assert cp.returncode == 0, f"{doc}: exit {cp.returncode}\n{cp.stdout}\n{cp.stderr}"
        if "&& echo identical" in script:
            assert "identical" in cp.stdout.splitlines(), f"{doc}: {cp.stdout}\n{cp.stderr}"
    finally:
        # a graceful stop the script asked for is waited for; anything left is stopped
        for pidfile in tmp_path.rglob("run/castord.pid"):
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            try:
                wait_for(lambda: not Path(f"/proc/{pid}").exists(), timeout=30 * SLOW,
                         what=f"castord {pid} of {doc} to stop")
            except AssertionError:
                try:
                    os.kill(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
