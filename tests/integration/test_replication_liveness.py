"""Liveness of the sync channel is measured, not assumed (issue 16 item 4).

A TCP proxy between the master's sync-client and the replica's syncd is
told to blackhole (stop forwarding both ways, keep the sockets open): the
master must notice within a few heartbeats (status says silent / stale,
semisync stops waiting), and everything delivered meanwhile reaches the
replica once the proxy forwards again.  A peer that accepts and never
greets fails the login within sync_connect_timeout, and the client tries
again."""
import json
import re
import socket
import threading
import time

from conftest import free_ports, wait_for
from repl_util import SLOW, Server, converged, ctl
from tcp_proxy import Proxy

# short heartbeats, scaled like every other bound (a sanitizer build must
# not miss a heartbeat for being slow)
HB = (f"sync_heartbeat: {500 * SLOW}ms\nsync_heartbeat_timeout: {1500 * SLOW}ms\n"
      f"sync_connect_timeout: {1000 * SLOW}ms\nsync_timeout: {3000 * SLOW}ms\n")


def proxied_pair(procs, tmp, conf_extra="", replica_extra=""):
    r = Server(procs, tmp, "replica1", role="replica", conf_extra=replica_extra)
    proxy = Proxy(r.syncd_port)
    m = Server(procs, tmp, "master", channels=[("r1", proxy.port)], conf_extra=HB + conf_extra)
    r.start()
    m.start()
    return m, r, proxy


def status_text(m):
    return ctl(m.conf, "status", "r1", check=False).stdout


def status_json(m):
    ch = json.loads(ctl(m.conf, "status", "--json", "r1", check=False).stdout)["channels"][0]
    # a castorctl without the liveness keys judged by "connected" alone
    ch.setdefault("live", ch["connected"])
    ch.setdefault("stale", False)
    return ch


def test_idle_channel_heartbeats_and_stays_live(procs, tmp_path):
    """A healthy idle channel: the replica answers a heartbeat every
    sync_heartbeat, so the last answer keeps moving and status says live;
    the replica's idle timeout (2 s here) never fires on a heartbeating master."""
    m, r, proxy = proxied_pair(procs, tmp_path, replica_extra=f"sync_idle_timeout: {2 * SLOW}s")
    try:
        m.drv("useradd ann\n")
        converged(m, r)
        first = int(wait_for(lambda: m.status("r1").get("last_ack_ms", "0") != "0" and
                             m.status("r1")["last_ack_ms"], timeout=10 * SLOW, what="an answer"))
        # later the last answer has moved on, with no traffic, past the
        # replica's idle timeout
        wait_for(lambda: int(m.status("r1").get("last_ack_ms", "0")) >= first + 2500 * SLOW,
                 timeout=10 * SLOW, what="heartbeats answered")
        ch = status_json(m)
        assert ch["live"] and not ch["stale"] and ch["connected"], ch
        assert "silent" not in m.log() and "channel down" not in m.log(), m.log()[-2000:]
        assert "master silent" not in r.log(), r.log()[-2000:]
    finally:
        proxy.close()


def test_blackholed_replica_is_not_live_and_catches_up(procs, tmp_path):
    """The proxy stops forwarding: within a few heartbeats castorctl status
    no longer says `connected ... last error: none`; what was delivered
    meanwhile reaches the replica after the proxy forwards again."""
    m, r, proxy = proxied_pair(procs, tmp_path)
    try:
        m.drv("useradd bea\ndeliver bea INBOX 3 300 d 0\n")
        converged(m, r)
        wait_for(lambda: status_json(m)["live"], timeout=10 * SLOW, what="live")
        proxy.blackhole()
        t0 = time.monotonic()
        m.drv("deliver bea INBOX 5 300 d 0\n")

        # a batch is outstanding: the replica is silent within a few
        # heartbeats (sync_heartbeat_timeout), while the client still waits
        wait_for(lambda: not status_json(m)["live"], timeout=5 * SLOW, what="not live")
        took = time.monotonic() - t0
        text = status_text(m)
        assert ("NOT LIVE" in text or "NOT connected" in text), text
        assert "last answer from the replica" in text, text
        assert ctl(m.conf, "status", "r1", check=False).returncode == 1
        print(f"blackhole noticed after {took:.1f}s")
        # and the outstanding answer's deadline (sync_timeout) drops the channel
        wait_for(lambda: status_json(m)["last_error"] != "", timeout=10 * SLOW,
                 what="the channel dropped")
        text = status_text(m)
        assert "last error: none" not in text, text
        assert not re.search(r"(?m)^\s+connected\s+state", text), text
        # nothing got through meanwhile
        assert r.dump("bea") != m.dump("bea")
        proxy.resume()
        converged(m, r, timeout=30)
        wait_for(lambda: status_json(m)["live"], timeout=20 * SLOW, what="live again")
    finally:
        proxy.close()


def test_stuck_status_file_is_stale(procs, tmp_path):
    """A sync-client that stopped writing its status file (SIGSTOP here: a
    client stuck in a write) is shown stale, with the file's age, and the
    silent replica as not live."""
    m, r, proxy = proxied_pair(procs, tmp_path)
    try:
        m.drv("useradd cat\n")
        converged(m, r)
        wait_for(lambda: status_json(m)["live"], timeout=10 * SLOW, what="live")
        pid = int(m.status("r1")["pid"])
        import os
        import signal
        os.kill(pid, signal.SIGSTOP)
        try:
            wait_for(lambda: status_json(m)["stale"], timeout=15 * SLOW, what="stale")
            text = status_text(m)
            assert "STALE" in text and "NOT LIVE" in text, text
            assert ctl(m.conf, "status", "r1", check=False).returncode == 1
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_for(lambda: status_json(m)["live"], timeout=20 * SLOW, what="live again")
    finally:
        proxy.close()


def test_semisync_degrades_at_once_on_a_silent_replica(procs, tmp_path):
    """Non-strict semisync with the replica blackholed: at most a couple of
    deliveries wait the full sync_semisync_timeout, not all 40."""
    m, r, proxy = proxied_pair(procs, tmp_path,
                               f"sync_mode: semisync\nsync_semisync_timeout: {2 * SLOW}s\n")
    try:
        m.drv("useradd dan\n")
        converged(m, r)
        wait_for(lambda: status_json(m)["live"], timeout=10 * SLOW, what="live")
        cp = m.drv("deliver dan INBOX 2 300 d 0\nstats\n")
        assert "timeouts=0 " in cp.stdout, cp.stdout
        proxy.blackhole()
        t0 = time.monotonic()
        cp = m.drv("deliver dan INBOX 40 300 d 0\nstats\n")
        took = time.monotonic() - t0
        assert cp.stdout.count("acked") == 40, cp.stdout
        n = int(re.search(r"timeouts=(\d+) ", cp.stdout).group(1))
        print(f"semisync over a blackhole: {n} full waits of 40, {took:.1f}s")
        assert n <= 2, cp.stdout
        assert took < 12 * SLOW, took
        proxy.resume()
        converged(m, r, timeout=30)
        # a replica that answers again is waited for again
        cp = m.drv("deliver dan INBOX 1 300 d 0\nstats\n")
        wait_for(lambda: "DEGRADED" not in status_text(m), timeout=20 * SLOW,
                 what="semisync resumed")
    finally:
        proxy.close()


def test_peer_that_never_greets_fails_the_login_fast(procs, tmp_path):
    """A peer that accepts and never sends a greeting: the login fails
    within sync_connect_timeout and the client tries again."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = free_ports(1)
    ls.bind(("127.0.0.1", port))
    ls.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        ls.settimeout(0.1)
        while not stop.is_set():
            try:
                c, _ = ls.accept()
                held.append(c)
            except socket.timeout:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        m = Server(procs, tmp_path, "master", channels=[("r1", port)], conf_extra=HB)
        t0 = time.monotonic()
        m.start()
        # each login gives up after sync_connect_timeout (1 s), and the
        # client connects again after its backoff
        wait_for(lambda: len(re.findall(r"channel down channel=r1", m.log())) >= 3,
                 timeout=15 * SLOW, what="three failed logins")
        took = time.monotonic() - t0
        print(f"three failed logins on a mute peer in {took:.1f}s")
        assert len(held) >= 3
        assert "timeout" in m.log(), m.log()[-2000:]
        ch = status_json(m)
        assert not ch["connected"] and ch["last_error"], ch
    finally:
        stop.set()
        t.join(5)
        for c in held:
            c.close()
        ls.close()


def test_syncd_drops_a_silent_master(procs, tmp_path):
    """A master that greets nothing back and sends no heartbeat (a
    half-open connection) is dropped by syncd after sync_idle_timeout."""
    r = Server(procs, tmp_path, "replica1", role="replica", conf_extra="sync_idle_timeout: 1s")
    r.start()
    s = socket.create_connection(("127.0.0.1", r.syncd_port), timeout=10 * SLOW)
    try:
        t0 = time.monotonic()
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        took = time.monotonic() - t0
        assert b"* OK [CASTOR-SYNC" in got and b"* BYE [TEMP]" in got, got
        assert took < 5 * SLOW, took
        wait_for(lambda: "master silent" in r.log(), timeout=5 * SLOW, what="logged")
    finally:
        s.close()
