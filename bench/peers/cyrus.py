"""bench/peers/cyrus.py - Debian 12's Cyrus IMAP 3.6 as a benchmark peer: a
master and a replica on 127.0.0.1 under <root>/cyrus, laid out, started and
stopped by cyrus-setup.sh / cyrus-start.sh / cyrus-stop.sh beside this file.

Variants (slots): "default" is Cyrus's default rolling replication
(sync_client -r, sync_repeat_interval 1 s); "lowlag" is
`sync_rightnow_channel: ""`, where every lmtpd/imapd pushes its own changes
to the replica before it answers.  Any password logs in
(sasl_pwcheck_method: alwaystrue); users are created by the admin `cyrus`
with IMAP CREATE user.<name> on the master, and reach the replica through
replication.  The facts behind this layout are in ../shared/anchors/cyrus/.
"""
import os
import re
import subprocess

from common import dir_bytes, free_port_block, imaplib_login, log, pid_alive, try_status
from peers.base import Peer, PeerError, run, wait_until

HERE = os.path.dirname(os.path.abspath(__file__))


class CyrusPeer(Peer):
    name = "cyrus"
    SLOTS = {"default": "default", "lowlag": "rightnow"}
    SHUTDOWN_SIGNAL = "QUIT"
    # sync_client sends COMPRESS DEFLATE whenever sync_server offers it
    # (sync_compress / -z only make a refusal fatal): compression off = the
    # relay hides this greeting line
    COMPRESS_CAPA = b"* COMPRESS DEFLATE\r\n"

    def __init__(self, opts, root):
        super().__init__(opts, root)
        self._installed = None
        self._install_err = ""
        self.xbin = None

    # -- availability
    def unavailable(self):
        if os.geteuid() != 0:
            return "needs root (cyrmaster runs as user cyrus; packages via apt-get)"
        if self._installed is None:
            cp = subprocess.run([os.path.join(HERE, "cyrus-setup.sh"), "install"],
                                capture_output=True, text=True, timeout=900)
            self._installed = cp.returncode == 0
            if not self._installed:
                self._install_err = (cp.stderr or cp.stdout)[-500:]
        return None if self._installed else "install failed: " + self._install_err

    def version(self):
        cp = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "cyrus-common"], capture_output=True, text=True)
        return "Cyrus IMAP " + cp.stdout.strip() if cp.returncode == 0 else None

    # -- layout
    def layout(self, slot):
        if not self.m_imap:
            b = free_port_block(5)
            self.m_imap, self.m_lmtp, self.r_imap, self.r_lmtp, self.r_sync = b, b + 1, b + 2, b + 3, b + 4
        os.makedirs(self.base, exist_ok=True)
        os.chmod(self.root, 0o755)
        os.chmod(self.base, 0o755)
        with open(os.path.join(self.base, "ports.env"), "w") as f:
            f.write(f"M_IMAP={self.m_imap}\nM_LMTP={self.m_lmtp}\nR_IMAP={self.r_imap}\n"
                    f"R_LMTP={self.r_lmtp}\nR_SYNC={self.r_sync}\n")
        run([os.path.join(HERE, "cyrus-setup.sh"), self.base, "all", self.SLOTS[slot]], timeout=900)
        self.xbin = self._paths()["XBIN"]

    def _paths(self):
        with open(os.path.join(self.base, "paths.env")) as f:
            return dict(ln.strip().split("=", 1) for ln in f if "=" in ln)

    def reconfigure(self, slot):
        run([os.path.join(HERE, "cyrus-setup.sh"), self.base, "conf", self.SLOTS[slot]])

    def start(self, which="all", repl=True):
        argv = [os.path.join(HERE, "cyrus-start.sh"), self.base, which]
        if not repl and which in ("all", "master"):
            argv.append("norepl")
        run(argv, timeout=60)
        if which in ("all", "master"):
            self.repl = repl

    def stop(self, which="all", sig="TERM"):
        if os.path.exists(os.path.join(self.base, "ports.env")):
            run([os.path.join(HERE, "cyrus-stop.sh"), self.base, which, sig], timeout=120, check=False)

    def _pid(self, inst):
        try:
            with open(os.path.join(self.base, inst, "run", "master.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    def running(self, which):
        return pid_alive(self._pid(which))

    def master_pid(self):
        return self._pid("master")

    def replica_pid(self):
        return self._pid("replica")

    def forget_master(self):
        """After the master exited on a signal: drop its stale pidfile."""
        p = os.path.join(self.base, "master", "run", "master.pid")
        if os.path.exists(p) and not pid_alive(self._pid("master")):
            os.unlink(p)

    # -- users and names
    def folder(self, i):
        return f"INBOX.f{i}"

    def create_users(self, users, wait_replica=True, timeout=None):
        m = imaplib_login(self.m_imap, "cyrus", "x")
        try:
            for u in users:
                typ, d = m.create(f"user.{u}")
                if typ != "OK" and b"exists" not in (d[0] or b""):
                    raise PeerError(f"cyrus: CREATE user.{u}: {d}")
        finally:
            m.logout()
        timeout = timeout or self.user_timeout
        if not wait_replica:
            return
        for u in users:
            if wait_until(lambda: try_status(self.r_imap, u, "x") is not None, timeout, 0.05) is None:
                raise PeerError(f"cyrus: user {u} did not reach the replica in {timeout}s")

    # -- replication helpers
    def replica_sync_port(self):
        return self.r_sync

    def reset_replica(self):
        self.stop("replica")
        run([os.path.join(HERE, "cyrus-setup.sh"), self.base, "replica", self.SLOTS[self.slot or "default"]])
        self.start("replica")

    def full_sync(self, user, relay_port=None, compress=None):
        conf = os.path.join(self.base, "master", "etc", "imapd.conf")
        if relay_port:
            txt = open(conf).read()
            txt = re.sub(r"^sync_port: \d+$", f"sync_port: {relay_port}", txt, flags=re.M)
            conf = os.path.join(self.base, "master", "etc", "imapd-relay.conf")
            with open(conf, "w") as f:
                f.write(txt)
            os.chmod(conf, 0o644)
        cp = run([os.path.join(self.xbin, "sync_client"), "-C", conf, "-u", user], timeout=1800, check=False)
        return cp.returncode, (cp.stdout + cp.stderr)[-1000:]

    def mailbox_disk(self, user):
        """Bytes of user.<user>'s INBOX directory on the master (messages and
        cyrus.* index files), and the number of message files."""
        cp = run(["/usr/lib/cyrus/bin/mbpath", "-C", os.path.join(self.base, "master", "etc", "imapd.conf"),
                  f"user.{user}"], check=False)
        d = cp.stdout.strip()
        if not d or not os.path.isdir(d):
            return None
        app, alloc, _ = dir_bytes(d)
        msgs = [f for f in os.listdir(d) if re.fullmatch(r"\d+\.", f)]
        mapp = sum(os.path.getsize(os.path.join(d, f)) for f in msgs)
        malloc = sum(os.stat(os.path.join(d, f)).st_blocks * 512 for f in msgs)
        return {"dir": d, "messages": len(msgs), "apparent": app, "allocated": alloc,
                "message_files_apparent": mapp, "message_files_allocated": malloc}

    def syslog_tail(self, n=40, pattern=None):
        p = os.path.join(self.base, "syslog", "cyrus.log")
        try:
            with open(p, errors="replace") as f:
                lines = f.read().splitlines()
        except OSError:
            return []
        if pattern:
            lines = [ln for ln in lines if re.search(pattern, ln)]
        return lines[-n:]

    def teardown(self):
        super().teardown()
        log("cyrus: stopped")

