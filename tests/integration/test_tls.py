"""TLS as a client on the internet sees it (docs/security.md, "TLS"):
protocol versions refused and accepted (checked with `openssl s_client`, the
way testssl.sh probes), tls_ciphers, one certificate per SNI name, and
certificates renewed by castord's SIGHUP without dropping a connection."""
import os
import re
import signal
import socket
import ssl
import subprocess
from pathlib import Path

from conftest import binpath, free_ports, run, wait_for
from repl_util import SLOW
import castord_util  # noqa: F401  (patches conftest.Proc.output)


def make_cert(directory, name, cn):
    """A self-signed EC certificate with CN=cn: (cert path, key path)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / f"{name}.crt", d / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-subj", f"/CN={cn}", "-days", "2"],
                   check=True, capture_output=True, timeout=30 * SLOW)
    return cert, key


class TlsServer:
    """A root made by castorctl init with its own certificate (CN=default.test),
    run by castord; ports: imap, pop3, lmtp, syncd, imaps from .base."""

    def __init__(self, procs, tmp, conf_extra=""):
        self.procs = procs
        self.root = Path(tmp) / "srv"
        self.base = free_ports(5)
        run([binpath("castorctl"), "-q", "init", self.root, "--port-base", self.base])
        self.conf = self.root / "castor.conf"
        self.cert = self.root / "tls" / "cert.pem"
        self.key = self.root / "tls" / "key.pem"
        self.install_cert("default.test")
        with open(self.conf, "a") as f:
            f.write("\n" + conf_extra + "\n")
        self.imap, self.pop3, self.lmtp, self.imaps = (self.base, self.base + 1, self.base + 2,
                                                         self.base + 4)
        self.castord = None

    def install_cert(self, cn):
        """Replace tls/cert.pem and tls/key.pem with a new pair for cn."""
        c, k = make_cert(self.root / "gen", cn, cn)
        self.key.write_bytes(k.read_bytes())
        self.cert.write_bytes(c.read_bytes())

    def start(self):
        # Castord writes the two files back as they are
        self.castord = castord_util.Castord(
            self.procs, self.root, (self.root / "services.conf").read_text(),
            conf=self.conf.read_text(), wait_ready=False)
        self.castord.wait_ready(timeout=30 * SLOW)
        return self

    def log(self):
        return self.castord.log()

    def reload(self, child_pattern, count=1):
        """SIGHUP castord; wait until it has told its children and `count`
        children logged child_pattern (more than the lines already there)."""
        done = len(re.findall(r"reload done", self.log()))
        seen = len(re.findall(child_pattern, self.log()))
        self.castord.signal(signal.SIGHUP)
        self.castord.wait_log(r"reload done", timeout=20 * SLOW, count=done + 1)
        self.castord.wait_log(child_pattern, timeout=20 * SLOW, count=seen + count)


def s_client(port, *args, starttls=None, timeout=None):
    """Run openssl s_client against 127.0.0.1:port; (ok, output)."""
    argv = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", *args]
    if starttls:
        argv += ["-starttls", starttls]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=timeout or 30 * SLOW)
    out = p.stdout + p.stderr
    ok = p.returncode == 0 and re.search(r"(?m)^New, TLSv[0-9.]+, Cipher is ", out) is not None
    return ok, out


def subject_cn(out):
    m = re.search(r"(?m)^subject=.*CN\s*=\s*([^,\s/]+)", out)
    assert m, out
    return m.group(1)


def served_cn(port, servername=None, starttls=None):
    args = ["-servername", servername] if servername else ["-noservername"]
    ok, out = s_client(port, *args, starttls=starttls)
    assert ok, out
    return subject_cn(out)


def protocol_ok(port, flag):
    """Can a client that allows everything (SECLEVEL=0, so that a refusal is
    the server's) speak exactly this version?"""
    return s_client(port, flag, "-cipher", "DEFAULT@SECLEVEL=0")


# Allow the old protocols' ciphers on the server, so that only
# tls_min_version decides whether TLS 1.0 / 1.1 are spoken.
WEAK_CIPHERS = "tls_ciphers: DEFAULT@SECLEVEL=0"


def test_old_protocols_refused_by_default(procs, tmp_path):
    srv = TlsServer(procs, tmp_path / "a", WEAK_CIPHERS).start()
    for flag in ("-tls1", "-tls1_1"):
        ok, out = protocol_ok(srv.imaps, flag)
        assert not ok, out
        assert re.search(r"alert protocol version|unsupported protocol|no protocols available",
                         out), out
    for flag in ("-tls1_2", "-tls1_3"):
        ok, out = protocol_ok(srv.imaps, flag)
        assert ok, out
    # STARTTLS takes the same context
    ok, out = s_client(srv.pop3, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0", starttls="pop3")
    assert not ok, out
    ok, out = s_client(srv.lmtp, "-tls1_2", starttls="lmtp")
    assert ok, out

    # The control: with tls_min_version lowered the same clients succeed,
    # so the refusal above was the server's setting, not the client's.
    low = TlsServer(procs, tmp_path / "b", WEAK_CIPHERS + "\ntls_min_version: TLSv1\n").start()
    for flag in ("-tls1", "-tls1_1", "-tls1_2", "-tls1_3"):
        ok, out = protocol_ok(low.imaps, flag)
        assert ok, (flag, out)


def test_min_version_13_and_ciphers(procs, tmp_path):
    srv = TlsServer(procs, tmp_path, "tls_min_version: 1.3\n"
                    "tls_ciphersuites: TLS_CHACHA20_POLY1305_SHA256\n").start()
    ok, out = protocol_ok(srv.imaps, "-tls1_2")
    assert not ok, out
    ok, out = s_client(srv.imaps, "-tls1_3")
    assert ok and "TLS_CHACHA20_POLY1305_SHA256" in out, out
    ok, out = s_client(srv.imaps, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
    assert not ok, out


def test_ciphers_setting(procs, tmp_path):
    srv = TlsServer(procs, tmp_path, "tls_ciphers: ECDHE-ECDSA-AES256-GCM-SHA384\n").start()
    ok, out = s_client(srv.imaps, "-tls1_2")
    assert ok and "ECDHE-ECDSA-AES256-GCM-SHA384" in out, out
    ok, out = s_client(srv.imaps, "-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256")
    assert not ok, out


def test_bad_cipher_list_keeps_tls_off_and_says_so(procs, tmp_path):
    srv = TlsServer(procs, tmp_path, "tls_ciphers: NO-SUCH-CIPHER\n").start()
    srv.castord.wait_log(r"no TLS.*tls_ciphers", timeout=20 * SLOW)


def test_sni_certificate_per_name(procs, tmp_path):
    srv = TlsServer(procs, tmp_path, "tls_sni_dir: tls/sni\n")
    sni = srv.root / "tls" / "sni"
    # mail.a.test: chain and key in one file; mail.b.test: key beside it
    c, k = make_cert(srv.root / "gen", "a", "mail.a.test")
    sni.mkdir()
    (sni / "mail.a.test.pem").write_bytes(c.read_bytes() + k.read_bytes())
    c, k = make_cert(srv.root / "gen", "b", "mail.b.test")
    (sni / "Mail.B.test.pem").write_bytes(c.read_bytes())
    (sni / "Mail.B.test.key").write_bytes(k.read_bytes())
    (sni / "README").write_text("not a certificate\n")
    srv.start()
    assert served_cn(srv.imaps, "mail.a.test") == "mail.a.test"
    assert served_cn(srv.imaps, "MAIL.b.test") == "mail.b.test"
    assert served_cn(srv.imaps, "other.test") == "default.test"
    assert served_cn(srv.imaps) == "default.test"
    assert served_cn(srv.imap, "mail.a.test", starttls="imap") == "mail.a.test"
    assert served_cn(srv.lmtp, "mail.b.test", starttls="lmtp") == "mail.b.test"


def open_imaps(port):
    """An implicit-TLS IMAP connection, greeting read; (ssl socket, file)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    s = ctx.wrap_socket(raw)
    f = s.makefile("rb")
    assert f.readline().startswith(b"* OK"), "no greeting"
    return s, f


def sync_cn(port):
    """STARTTLS on the sync protocol (docs/sync-protocol.md): the CN served."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW)
    f = raw.makefile("rb")
    assert b"STARTTLS 1" in f.readline()
    raw.sendall(b"t1 STARTTLS\r\n")
    assert f.readline().startswith(b"t1 OK")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    s = ctx.wrap_socket(raw)
    pem = ssl.DER_cert_to_PEM_cert(s.getpeercert(binary_form=True))
    s.close()
    out = subprocess.run(["openssl", "x509", "-noout", "-subject"], input=pem, text=True,
                         capture_output=True, check=True, timeout=30 * SLOW).stdout
    return subject_cn(out)


def test_sighup_renews_certificate(procs, tmp_path):
    srv = TlsServer(procs, tmp_path).start()
    syncd = srv.base + 3
    assert served_cn(srv.imaps) == "default.test"
    assert sync_cn(syncd) == "default.test"
    before, f = open_imaps(srv.imaps)
    old_der = before.getpeercert(binary_form=True)
    # a sync connection held open across the reload, before STARTTLS
    held = socket.create_connection(("127.0.0.1", syncd), timeout=10 * SLOW)
    hf = held.makefile("rb")
    assert b"STARTTLS 1" in hf.readline()
    m = srv.castord.wait_log(r"syncd\[(\d+)\]: info: session start peer=127\.0\.0\.1:%d "
                             % held.getsockname()[1], timeout=10 * SLOW)
    held_pid = m[0]

    srv.install_cert("renewed.test")
    srv.reload(r"tls reloaded")
    # new connections, on every TLS-serving service, get the new certificate
    assert served_cn(srv.imaps) == "renewed.test"
    assert served_cn(srv.imap, starttls="imap") == "renewed.test"
    assert served_cn(srv.pop3, starttls="pop3") == "renewed.test"
    assert served_cn(srv.lmtp, starttls="lmtp") == "renewed.test"
    assert sync_cn(syncd) == "renewed.test"
    # a sync session accepted before the reload still starts TLS, on the
    # certificate its process had; its process renews once it is free
    held.sendall(b"t1 STARTTLS\r\n")
    assert hf.readline().startswith(b"t1 OK")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    hs = ctx.wrap_socket(held)
    assert hs.getpeercert(binary_form=True) == old_der
    hs.close()
    srv.castord.wait_log(r"syncd\[%s\]: info: tls reloaded" % held_pid, timeout=20 * SLOW)
    # the connection opened before still works, on its certificate
    before.sendall(b"a1 NOOP\r\n")
    assert f.readline().startswith(b"a1 OK")
    assert before.getpeercert(binary_form=True) == old_der
    before.sendall(b"a2 LOGOUT\r\n")
    assert f.readline().startswith(b"* BYE")
    before.close()


def test_sighup_bad_certificate_keeps_old(procs, tmp_path):
    srv = TlsServer(procs, tmp_path)
    # every imaps connection is served by a fresh child: the ones started
    # after a bad reload must get the last good certificate too
    svc = srv.root / "services.conf"
    svc.write_text(re.sub(r"(?m)^(\s*imaps\s.*)$", r"\1 maxuse=1", svc.read_text()))
    srv.start()
    assert served_cn(srv.imaps) == "default.test"
    good_key = srv.key.read_bytes()
    # a truncated certificate
    srv.cert.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n")
    srv.reload(r"tls reload failed, previous certificate kept.*TLS certificate "
               + re.escape(str(srv.cert)))
    spawned = len(re.findall(r"spawned pid=\d+ service=imaps", srv.log()))
    for _ in range(3):
        assert served_cn(srv.imaps) == "default.test"
    assert len(re.findall(r"spawned pid=\d+ service=imaps", srv.log())) >= spawned + 2
    assert served_cn(srv.pop3, starttls="pop3") == "default.test"
    # a certificate whose key is not the one configured
    c, _ = make_cert(srv.root / "gen", "other", "mismatch.test")
    srv.cert.write_bytes(c.read_bytes())
    assert srv.key.read_bytes() == good_key
    srv.reload(r"tls reload failed, previous certificate kept.*TLS key \S+ for certificate "
               + re.escape(str(srv.cert)))
    assert served_cn(srv.imaps) == "default.test"
    assert served_cn(srv.imaps) == "default.test"
    # fixed: the next reload takes it
    srv.install_cert("fixed.test")
    srv.reload(r"tls reloaded")
    assert served_cn(srv.imaps) == "fixed.test"
    assert served_cn(srv.imaps) == "fixed.test"


def test_sighup_picks_up_new_sni_name(procs, tmp_path):
    srv = TlsServer(procs, tmp_path, "tls_sni_dir: tls/sni\n")
    (srv.root / "tls" / "sni").mkdir()
    srv.start()
    assert served_cn(srv.imaps, "mail.c.test") == "default.test"
    c, k = make_cert(srv.root / "gen", "c", "mail.c.test")
    (srv.root / "tls" / "sni" / "mail.c.test.pem").write_bytes(c.read_bytes() + k.read_bytes())
    srv.reload(r"tls reloaded sni_names=1")
    assert served_cn(srv.imaps, "mail.c.test") == "mail.c.test"
    assert served_cn(srv.imaps, "x.test") == "default.test"


def test_tls_check_command(tmp_path):
    """`castorctl tls-check`: what castord runs before handing certificates
    to its children, and what an operator runs before a reload."""
    srv = TlsServer(None, tmp_path, "tls_sni_dir: tls/sni\n")
    (srv.root / "tls" / "sni").mkdir()
    c, k = make_cert(srv.root / "gen", "d", "mail.d.test")
    (srv.root / "tls" / "sni" / "mail.d.test.pem").write_bytes(c.read_bytes() + k.read_bytes())
    ctl = [binpath("castorctl"), "-C", srv.conf, "tls-check"]
    p = subprocess.run(ctl, capture_output=True, text=True, timeout=30 * SLOW)
    assert p.returncode == 0 and p.stdout.strip() == "tls ok sni_names=1", p
    (srv.root / "tls" / "sni" / "mail.d.test.pem").write_bytes(c.read_bytes())  # key gone
    p = subprocess.run(ctl, capture_output=True, text=True, timeout=30 * SLOW)
    assert p.returncode != 0, p
    assert "mail.d.test.pem" in p.stderr, p
    with open(srv.conf, "a") as f:
        f.write("tls_ciphers: NOT-A-CIPHER\n")
    (srv.root / "tls" / "sni" / "mail.d.test.pem").unlink()
    p = subprocess.run(ctl, capture_output=True, text=True, timeout=30 * SLOW)
    assert p.returncode != 0 and "tls_ciphers" in p.stderr, p


def test_sync_client_rereads_its_ca_file(procs, tmp_path):
    """A replica renewed with a new self-signed certificate: once the
    master's copy in r1_sync_ca_file is replaced, the next connection
    verifies against it, without restarting sync-client."""
    from repl_util import converged, pair
    m, (r,) = pair(procs, tmp_path, conf_extra="r1_sync_tls: yes\nr1_sync_ca_file: ca.pem",
                   start=False)
    ca = m.root / "ca.pem"
    ca.write_bytes((r.root / "tls" / "cert.pem").read_bytes())
    r.start()
    m.start()
    m.drv("useradd tia\nappend tia INBOX 100 one\n")
    converged(m, r)
    assert re.search(r"connected channel=r1 .*tls=1", m.log()), m.log()[-2000:]

    # renew the replica's certificate (castord's SIGHUP)
    d = r.root / "gen"
    d.mkdir()
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", str(d / "k"), "-out",
                    str(d / "c"), "-subj", "/CN=replica-renewed", "-days", "2",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30 * SLOW)
    (r.root / "tls" / "key.pem").write_bytes((d / "k").read_bytes())
    (r.root / "tls" / "cert.pem").write_bytes((d / "c").read_bytes())
    r.proc.send(signal.SIGHUP)
    wait_for(lambda: "tls certificates reloaded" in r.log(), timeout=20 * SLOW,
             what="replica reloaded")
    ca.write_bytes((d / "c").read_bytes())
    # drop the channel: the replica's syncd children go, sync-client reconnects
    connected = len(re.findall(r"connected channel=r1 ", m.log()))
    for pid in castord_util.children_of(r.pid()):
        if castord_util.comm(pid) == "syncd":
            os.kill(pid, signal.SIGKILL)
    wait_for(lambda: "sync CA file reloaded channel=r1" in m.log(), timeout=30 * SLOW,
             what="CA file reloaded")
    wait_for(lambda: len(re.findall(r"connected channel=r1 .*tls=1", m.log())) > connected,
             timeout=30 * SLOW, what="reconnected with TLS")
    m.drv("append tia INBOX 100 two\n")
    converged(m, r)
