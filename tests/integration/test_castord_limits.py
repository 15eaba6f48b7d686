"""castord's limits on its process pool (issue 20): maxchild and maxperip
refuse a client with the protocol's line instead of leaving it waiting,
idle children beyond prefork are trimmed after maxidle, and a graceful
stop with hundreds of children gives each child its own shutdown_timeout.
The service is echod (the test service on the same skeleton as
imapd/pop3d/lmtpd/syncd); every bound is multiplied by SLOW."""
import os
import re
import signal
import socket
import time

import pytest

from conftest import binpath, free_ports, wait_for
from castord_util import Castord, Client, comm, refused
from repl_util import SLOW

ECHO_REFUSAL = "* BYE too many connections"


def svc(port, extra="", name="echo", cmd="echod"):
    return f'  {name} cmd="{cmd}" listen="127.0.0.1:{port}" {extra}\n'


def services(*lines):
    return "SERVICES {\n" + "".join(lines) + "}\n"


def echod_children(c):
    return [p for p in c.children() if comm(p) == "echod"]


def connect_from(port, source, timeout=5):
    """A Client whose connection comes from the loopback address source."""
    cl = Client.__new__(Client)
    cl.s = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    cl.buf = b""
    return cl


def wait_available(c, service, n, timeout):
    """Wait until castord's status dump (SIGUSR1) shows n available children."""
    rx = re.compile(rf"status service={service} .*available={n} ")

    def seen():
        before = len(rx.findall(c.log()))
        c.signal(signal.SIGUSR1)
        return wait_for(lambda: "status phase=" in c.log(), timeout=timeout) and \
            len(rx.findall(c.log())) > before
    wait_for(seen, timeout=timeout, interval=0.1, what=f"{service}: {n} available")


def first_line(cl, timeout):
    """The first line the server sends, or None when it sends none in time."""
    try:
        return cl.line(timeout=timeout)
    except (TimeoutError, EOFError, ConnectionResetError):
        return None


def test_maxperip_refuses_one_address_and_serves_another(procs, tmp_path):
    """20 slow clients from 127.0.0.1 under maxchild=20 maxperip=5: five are
    served, fifteen are refused at once with the protocol's line; a 21st from
    127.0.0.2 is still served."""
    port = free_ports(1)
    c = Castord(procs, tmp_path, services(svc(port, "maxchild=20 maxperip=5")))
    slow, lines = [], []
    for _ in range(20):
        cl = Client(port)
        slow.append(cl)
        lines.append(first_line(cl, timeout=5 * SLOW))
    served = [ln for ln in lines if ln is not None and ln.startswith("+OK echod ready")]
    refusals = [ln for ln in lines if ln == ECHO_REFUSAL]
    assert len(served) == 5, lines
    assert len(refusals) == 15, lines
    for cl, ln in zip(slow, lines):
        if ln == ECHO_REFUSAL:
            assert cl.closed(timeout=2 * SLOW)
    # a client from elsewhere is not held up by them
    other = connect_from(port, "127.0.0.2")
    other.greeting(timeout=3 * SLOW)
    assert other.cmd("CONN").startswith("+OK peer=127.0.0.2:")
    # the served ones still work, and one leaving makes room for that address again
    assert len(echod_children(c)) <= 20
    keep = [cl for cl, ln in zip(slow, lines) if ln is not None and ln.startswith("+OK echod ready")]
    assert keep[0].cmd("QUIT") == "+OK bye"
    assert keep[0].closed(timeout=2 * SLOW)
    again = Client(port)
    again.greeting(timeout=3 * SLOW)
    # the decision is logged once, not once per refusal
    log = c.log()
    hits = re.findall(r"connection refused service=echo peer=127\.0\.0\.1 reason=maxperip maxperip=5 count=5",
                      log)
    assert len(hits) == 1, log
    for cl in slow + [other, again]:
        cl.close()


def test_maxchild_refuses_promptly_instead_of_hanging(procs, tmp_path):
    port = free_ports(1)
    c = Castord(procs, tmp_path, services(svc(port, "maxchild=3")))
    held = [Client(port) for _ in range(3)]
    for cl in held:
        cl.greeting(timeout=3 * SLOW)
    t0 = time.monotonic()
    over = Client(port)
    assert over.line(timeout=2 * SLOW) == ECHO_REFUSAL
    assert time.monotonic() - t0 < 2 * SLOW
    assert over.closed(timeout=2 * SLOW)
    more = [Client(port) for _ in range(5)]
    for cl in more:
        assert cl.line(timeout=2 * SLOW) == ECHO_REFUSAL
    c.wait_log(r"connection refused service=echo peer=127\.0\.0\.1 reason=maxchild maxchild=3 count=3")
    assert len(re.findall(r"reason=maxchild", c.log())) == 1  # rate-limited: one line per 10 s
    assert len(echod_children(c)) == 3
    # a free slot serves the next client again
    assert held[0].cmd("QUIT") == "+OK bye"
    wait_available(c, "echo", 1, timeout=3 * SLOW)
    nxt = Client(port)
    nxt.greeting(timeout=3 * SLOW)
    assert nxt.cmd("PING") == "+OK PONG"
    for cl in held + more + [over, nxt]:
        cl.close()


@pytest.mark.parametrize("name,extra,expected", [
    ("imapd", "", "* BYE [UNAVAILABLE] Too many connections, try again later"),
    ("pop3d", "", "-ERR [SYS/TEMP] Too many connections, try again later"),
    ("lmtpd", "", "421 4.3.2 Too many connections, try again later"),
    ("syncd", "", '* BYE [TEMP] "too many connections"'),
    ("wrapper", "proto=lmtp", "421 4.3.2 Too many connections, try again later"),
])
def test_refusal_line_follows_the_protocol(procs, tmp_path, name, extra, expected):
    """The refusal is the protocol's: by the program's name, or proto=.
    (echod under another name stands in for the real service.)"""
    port = free_ports(1)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(binpath("echod"), bindir / name)
    Castord(procs, tmp_path, services(svc(port, f"maxchild=1 {extra}", cmd=str(bindir / name))))
    held = Client(port)
    held.greeting(timeout=3 * SLOW)
    over = Client(port)
    assert over.line(timeout=2 * SLOW) == expected
    held.close()
    over.close()


def test_idle_children_beyond_prefork_are_trimmed(procs, tmp_path):
    """After a burst, idle children go back to prefork within maxidle; a
    service under the castor.conf default (60 s) keeps its own meanwhile."""
    port = free_ports(2)
    port2 = port + 1
    c = Castord(procs, tmp_path,
                services(svc(port, "prefork=2 maxidle=1"), svc(port2, "", name="echo2")),
                conf="shutdown_timeout: 3s\n")
    wait_for(lambda: len(echod_children(c)) == 2, timeout=10 * SLOW, what="2 preforked children")
    burst = [Client(port) for _ in range(30)] + [Client(port2) for _ in range(5)]
    pids = [cl.greeting(timeout=10 * SLOW) for cl in burst]
    for cl in burst:
        assert cl.cmd("QUIT") == "+OK bye"
        cl.close()
    t0 = time.monotonic()
    echo2 = set(pids[30:])
    # echo: back to its 2 preforked ones within maxidle (1 s) + margin
    wait_for(lambda: len(set(echod_children(c)) - echo2) == 2, timeout=1 + 4 * SLOW,
             what="idle echo children trimmed to prefork")
    assert time.monotonic() - t0 < 1 + 4 * SLOW
    c.wait_log(r"idle children trimmed service=echo count=\d+ maxidle_ms=1000")
    # echo2 (service_maxidle default 60 s) keeps its 5 idle children
    assert echo2 <= set(echod_children(c))
    assert "idle children trimmed service=echo2" not in c.log()
    # the trimmed ones exited cleanly, and the service still serves
    gone = [pid for pid in set(pids[:30]) if pid not in echod_children(c)]
    assert len(gone) >= len(set(pids[:30])) - 2
    wait_for(lambda: all(re.search(rf"exited pid={pid} service=echo status=0", c.log()) for pid in gone),
             timeout=3 * SLOW, what="trimmed children exited cleanly")
    cl = Client(port)
    cl.greeting(timeout=3 * SLOW)
    cl.close()
    c.signal(signal.SIGQUIT)
    assert c.wait_exit(timeout=10 * SLOW) == 0


def test_sigquit_with_300_children_gives_each_its_own_grace(procs, tmp_path):
    """A graceful stop with 300 children on a slow machine: castord takes
    1.5 s more between closing the listener and signalling the children
    (a failpoint standing in for thousands of children waking at once),
    longer than shutdown_timeout (1 s).  The listener is closed first,
    no child that ends after its own SIGQUIT is escalated, every client
    gets its goodbye and castord exits cleanly in time."""
    port = free_ports(1)
    n = 300
    c = Castord(procs, tmp_path, services(svc(port, f"prefork={n}")), conf="shutdown_timeout: 1s\n",
                env={"CASTOR_FAILPOINTS": "master.shutdown.before_quit=sleep(1500)"})
    wait_for(lambda: len(echod_children(c)) >= n, timeout=60 * SLOW, interval=0.2, what=f"{n} children")
    clients = [Client(port) for _ in range(20)]
    for cl in clients:
        cl.greeting(timeout=5 * SLOW)
    t0 = time.monotonic()
    c.signal(signal.SIGQUIT)
    # the listener goes first: refused while castord has not signalled anyone yet
    wait_for(lambda: refused(port, timeout=0.5), timeout=10 * SLOW, what="listener closed")
    for cl in clients:
        assert cl.line(timeout=20 * SLOW) == "* BYE echod shutting down"
    code = c.wait_exit(timeout=1.5 + 1 + 30 * SLOW)
    elapsed = time.monotonic() - t0
    log = c.log()
    assert code == 0, log[-3000:]
    assert "escalating" not in log
    assert "signal=SIGTERM" not in log
    m = re.search(r"graceful stop: listeners closed, SIGQUIT sent children=(\d+) "
                  r"shutdown_timeout_ms=1000 close_ms=(\d+) signal_ms=(\d+)", log)
    assert m and int(m.group(1)) >= 20, log[-3000:]
    # within the stop's own work (closing, signalling: slow on a loaded machine, and the
    # failpoint's 1.5 s) + shutdown_timeout + margin
    work = (int(m.group(2)) + int(m.group(3))) / 1000
    assert work >= 1.5
    assert elapsed < work + 1 + 5 * SLOW, (elapsed, work)
    assert "stopped cleanly" in log
    for cl in clients:
        cl.close()
