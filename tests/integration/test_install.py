"""An installed tree works (issue 21 items 4 and "Install"): `meson install`
into a staging directory gives bin/ and libexec/castor/ with no test
programs; castorctl init from it finds the services (beside it, in
../libexec/castor, or where $CASTOR_LIBEXECDIR says) and the castord from
it serves IMAP.  Before, init looked only at the compiled-in prefix, so
every service of a staged or moved tree was written commented out."""
import imaplib
import os
import shutil
import subprocess

from conftest import BUILD, free_ports, run, wait_for
from repl_util import SLOW


def staged(tmp_path):
    dest = tmp_path / "inst"
    run(["meson", "install", "-C", str(BUILD), "--destdir", str(dest), "--quiet"], timeout=300 * SLOW)
    bins = [p for p in dest.rglob("bin/castorctl")]
    assert len(bins) == 1, bins
    bindir = bins[0].parent
    libexec = bindir.parent / "libexec" / "castor"
    return bindir, libexec


def test_install_layout_has_no_test_programs(tmp_path):
    bindir, libexec = staged(tmp_path)
    assert {"castorctl", "castord"} <= {p.name for p in bindir.iterdir()}
    progs = {p.name for p in libexec.iterdir()}
    assert {"imapd", "pop3d", "lmtpd", "syncd", "sync-client"} <= progs
    assert not progs & {"echod", "sync-testdrv", "store_crashdrv", "store_bench", "store_fetchbench"}
    assert any(p.name == "castorctl.8" for p in (bindir.parent / "share").rglob("castorctl.8"))


def test_staged_tree_serves(procs, tmp_path):
    bindir, libexec = staged(tmp_path)
    root = tmp_path / "root"
    base = free_ports(5)
    run([str(bindir / "castorctl"), "-q", "init", str(root), "--port-base", str(base)])
    svc = (root / "services.conf").read_text()
    assert "\n  imap " in svc and "# imap" not in svc, svc
    r, w = os.pipe()
    procs.start([str(bindir / "castord"), "-C", str(root / "castor.conf"), "-D", "--ready-fd", str(w)],
                log=root / "castord.log", pass_fds=(w,))
    os.close(w)
    assert os.read(r, 16) == b"\n"
    os.close(r)
    run([str(bindir / "castorctl"), "-C", str(root / "castor.conf"), "-q", "user", "add", "ann",
         "--password", "pw-inst"])
    m = imaplib.IMAP4("127.0.0.1", base, timeout=20 * SLOW)
    assert m.login("ann", "pw-inst")[0] == "OK"
    m.logout()


def test_libexecdir_from_the_environment(tmp_path):
    bindir, libexec = staged(tmp_path)
    lone = tmp_path / "elsewhere"
    lone.mkdir()
    shutil.copy2(bindir / "castorctl", lone / "castorctl")    # no ../libexec beside it
    env = dict(os.environ, CASTOR_LIBEXECDIR="")
    root_a = tmp_path / "a"
    subprocess.run([str(lone / "castorctl"), "-q", "init", str(root_a), "--port-base",
                    str(free_ports(5))], check=True, env=env, timeout=60 * SLOW)
    assert "# imap " in (root_a / "services.conf").read_text()   # nothing found: commented out
    env["CASTOR_LIBEXECDIR"] = str(libexec)
    root_b = tmp_path / "b"
    subprocess.run([str(lone / "castorctl"), "-q", "init", str(root_b), "--port-base",
                    str(free_ports(5))], check=True, env=env, timeout=60 * SLOW)
    svc = (root_b / "services.conf").read_text()
    assert "\n  imap " in svc and "# imap " not in svc
    assert f"libexec_dir: {libexec.resolve()}" in (root_b / "castor.conf").read_text()
