"""castord with real processes: readiness, the graceful stop (SIGQUIT) and its
escalation, the SHUTDOWN section, fast stop, reload, daemons, prefork,
maxchild, maxuse, no child outliving castord.  The service is echod (the
test service built on the same skeleton as imapd/pop3d/lmtpd/syncd)."""
import os
import re
import signal
import socket
import subprocess
import time


from conftest import SLOW, binpath, free_ports, pid_alive, wait_for
from castord_util import Castord, Client, children_of, comm, refused


def svc(port, extra="", name="echo", cmd="echod"):
    return f'SERVICES {{\n  {name} cmd="{cmd}" listen="127.0.0.1:{port}" {extra}\n}}\n'


def echod_children(c):
    return [p for p in c.children() if comm(p) == "echod"]


def test_ready_fd_pidfile_notify_and_echo(procs, tmp_path):
    port = free_ports(1)
    nsock = tmp_path / "notify.sock"
    ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    ns.bind(str(nsock))
    ns.settimeout(5 * SLOW)
    c = Castord(procs, tmp_path, svc(port, "prefork=1"),
                args=("-p", tmp_path / "castord.pid"), env={"NOTIFY_SOCKET": nsock})
    assert ns.recv(200).startswith(b"READY=1\nMAINPID=%d" % c.pid)
    assert (tmp_path / "castord.pid").read_text() == f"{c.pid}\n"
    cl = Client(port)
    pid = cl.greeting()
    assert cl.cmd("PING") == "+OK PONG"
    assert cl.cmd("hello world") == "+OK hello world"
    assert cl.cmd("PID") == f"+OK {pid}"
    assert pid in c.children()
    assert cl.cmd("QUIT") == "+OK bye"
    # a second castord on the same pidfile refuses to start
    other = procs.start([binpath("castord"), "-C", c.conf, "-D", "-p", tmp_path / "castord.pid"],
                        log=tmp_path / "second.log")
    assert other.wait(timeout=10 * SLOW) == 69
    assert "already running" in other.output()
    c.signal(signal.SIGQUIT)
    assert ns.recv(200) == b"STOPPING=1"
    assert c.wait_exit() == 0
    assert not (tmp_path / "castord.pid").exists()
    log = c.log()
    assert re.search(r"spawned pid=\d+ service=echo", log)
    assert re.search(r"exited pid=\d+ service=echo status=0", log)
    assert "stopped cleanly" in log


def test_sigquit_refuses_new_finishes_command_then_goodbye(procs, tmp_path):
    port = free_ports(1)
    c = Castord(procs, tmp_path, svc(port, "prefork=2"))
    busy = Client(port)
    busy_pid = busy.greeting()
    idle = Client(port)
    idle.greeting()
    assert idle.cmd("PING") == "+OK PONG"
    busy.send("SLEEP 2")   # shorter than shutdown_timeout (3 s): no escalation
    c.wait_log(rf"\[{busy_pid}\]: info: sleeping secs=")  # the command is in hand
    t0 = time.monotonic()
    c.signal(signal.SIGQUIT)
    # the idle client is told goodbye at once, not at its next command
    assert idle.line(timeout=2 * SLOW) == "* BYE echod shutting down"
    assert time.monotonic() - t0 < 1.0 * SLOW
    assert idle.closed()
    # new connections are refused while the busy child still works
    wait_for(lambda: refused(port), timeout=2 * SLOW, what="listener closed")
    assert refused(port)
    # the command in hand completes, then the goodbye, then the close
    assert busy.line(timeout=5 * SLOW) == "+OK slept 2"
    assert busy.line(timeout=2 * SLOW) == "* BYE echod shutting down"
    assert busy.closed()
    assert c.wait_exit(timeout=10 * SLOW) == 0
    log = c.log()
    assert "escalat" not in log
    assert "stopped cleanly" in log


def test_sigquit_escalates_to_sigterm_then_sigkill(procs, tmp_path):
    port = free_ports(1)
    services = (svc(port, "prefork=1", cmd="echod -i") +
                'DAEMON {\n  stubborn cmd="sh -c \'trap \\"\\" QUIT; exec sleep 60\'"\n}\n')
    c = Castord(procs, tmp_path, services, conf="shutdown_timeout: 1s\n")
    cl = Client(port)
    child = cl.greeting()
    c.wait_log(r"spawned pid=\d+ daemon=stubborn")
    wait_for(lambda: any(comm(p) == "sleep" for p in c.children()), what="daemon running")
    daemon = [p for p in c.children() if comm(p) == "sleep"][0]
    t0 = time.monotonic()
    c.signal(signal.SIGQUIT)
    c.wait_log(rf"shutdown_timeout passed: escalating pid={child} service=echo signal=SIGTERM",
               timeout=4 * SLOW)
    c.wait_log(rf"shutdown_timeout passed: escalating pid={daemon} daemon=stubborn signal=SIGTERM")
    t_term = time.monotonic() - t0
    assert 0.9 <= t_term < 3 * SLOW, t_term
    # the daemon obeys SIGTERM; echod -i ignores it too and gets SIGKILL 5 s later
    c.wait_log(rf"exited pid={daemon} daemon=stubborn signal=SIGTERM")
    c.wait_log(rf"SIGTERM ignored: escalating pid={child} service=echo signal=SIGKILL", timeout=8 * SLOW)
    t_kill = time.monotonic() - t0
    assert 5.5 <= t_kill < 9 * SLOW, t_kill
    c.wait_log(rf"exited pid={child} service=echo signal=SIGKILL")
    code = c.wait_exit(timeout=5 * SLOW)
    assert code & 1, code  # not a clean stop
    assert re.search(r"stopped with failures status=\d+ failed=\S*service:echo", c.log())
    cl.close()


def test_shutdown_section_runs_after_last_child_in_order(procs, tmp_path):
    port = free_ports(1)
    out = tmp_path / "order"
    services = svc(port) + f"""SHUTDOWN {{
  first  cmd="sh -c 'echo first $$ $(cat /proc/$PPID/task/$PPID/children) >> {out}'"
  second cmd="sh -c 'echo second >> {out}; exit 3'"
  third  cmd="sh -c 'echo third >> {out}'"
  slow   cmd="sh -c 'echo slow >> {out}; exec sleep 30'" timeout=1
}}
"""
    c = Castord(procs, tmp_path, services)
    cl = Client(port)
    kid = cl.greeting()
    cl.send("SLEEP 1")
    c.wait_log(rf"\[{kid}\]: info: sleeping secs=1")  # the command is in hand
    c.signal(signal.SIGQUIT)
    assert cl.line(timeout=5 * SLOW) == "+OK slept 1"
    t_answer = time.time()
    assert cl.line() == "* BYE echod shutting down"
    code = c.wait_exit(timeout=15 * SLOW)
    lines = out.read_text().splitlines()
    assert [ln.split()[0] for ln in lines] == ["first", "second", "third", "slow"]
    # when the first SHUTDOWN entry ran, castord's only child was that entry itself
    first = lines[0].split()  # "first <its pid> <castord's children>"
    assert first[2:] == [first[1]], lines[0]
    assert out.stat().st_mtime >= t_answer - 0.5
    log = c.log()
    assert log.index("all children gone") < log.index("SHUTDOWN entry starting name=first")
    assert "SHUTDOWN entry failed name=second status=3" in log
    assert re.search(r"timeout passed: terminating pid=\d+ shutdown=slow signal=SIGTERM", log)
    assert "SHUTDOWN entry failed name=slow" in log
    assert code == 2, code  # children were clean, SHUTDOWN failed
    assert "failed=shutdown:second,shutdown:slow" in log


def test_shutdown_success_exits_zero_only_when_all_succeed(procs, tmp_path):
    port = free_ports(1)
    services = svc(port) + 'SHUTDOWN {\n  ok cmd="true"\n  ok2 cmd="sh -c \'exit 0\'"\n}\n'
    c = Castord(procs, tmp_path, services)
    c.signal(signal.SIGQUIT)
    assert c.wait_exit() == 0
    assert "SHUTDOWN entry done name=ok2" in c.log()


def test_sigterm_fast_stop_skips_shutdown(procs, tmp_path):
    port = free_ports(1)
    marker = tmp_path / "shutdown-ran"
    services = svc(port, "prefork=2") + f'SHUTDOWN {{\n  s cmd="touch {marker}"\n}}\n'
    c = Castord(procs, tmp_path, services)
    cl = Client(port)
    kid = cl.greeting()
    cl.send("SLEEP 10")
    c.wait_log(rf"\[{kid}\]: info: sleeping secs=10")  # the command is in hand
    t0 = time.monotonic()
    c.signal(signal.SIGTERM)
    assert c.wait_exit(timeout=5 * SLOW) == 0
    assert time.monotonic() - t0 < 2.5 * SLOW
    assert not marker.exists()
    assert cl.closed()
    assert "fast stop" in c.log()


def test_sigint_fast_stop_kills_sigterm_ignorers(procs, tmp_path):
    port = free_ports(1)
    c = Castord(procs, tmp_path, svc(port, cmd="echod -i"))
    cl = Client(port)
    kid = cl.greeting()  # past its init: it ignores SIGTERM now
    c.signal(signal.SIGINT)
    assert c.wait_exit(timeout=6 * SLOW) == 1
    assert re.search(rf"fast stop: SIGTERM ignored, escalating pid={kid} service=echo signal=SIGKILL", c.log())
    assert not pid_alive(kid)


def test_sighup_adds_and_removes_services_keeping_live_connections(procs, tmp_path):
    p1, p2 = free_ports(1), free_ports(1)
    c = Castord(procs, tmp_path, svc(p1, name="one"))
    old = Client(p1)
    old_pid = old.greeting()
    assert old.cmd("PING") == "+OK PONG"
    # remove "one", add "two"
    (tmp_path / "services.conf").write_text(svc(p2, name="two"))
    c.signal(signal.SIGHUP)
    c.wait_log(r"reload done services_added=1 services_removed=1 services_changed=0")
    assert refused(p1)
    new = Client(p2)
    new_pid = new.greeting()
    assert new_pid != old_pid
    assert new.cmd("PING") == "+OK PONG"
    # the old connection still works, and its child exits when it is done
    assert old.cmd("hello") == "+OK hello"
    assert pid_alive(old_pid)
    assert old.cmd("QUIT") == "+OK bye"
    wait_for(lambda: not pid_alive(old_pid), timeout=5 * SLOW, what="retired child gone")
    c.wait_log(r"service retired service=one")

    # a broken file is rejected and the running configuration stays
    (tmp_path / "services.conf").write_text("SERVICES {\n  two cmd=\"echod\" listen=\n")
    c.signal(signal.SIGHUP)
    c.wait_log(r"reload rejected, running configuration kept")
    assert new.cmd("still") == "+OK still"
    n2 = Client(p2)
    n2.greeting()
    n2.close()
    # a program that does not exist is rejected too
    (tmp_path / "services.conf").write_text(svc(p2, name="two", cmd="no-such-program-xyz"))
    c.signal(signal.SIGHUP)
    c.wait_log(r"reload rejected.*no-such-program-xyz")

    # change the command of "two" while a connection is open: it stays open
    (tmp_path / "services.conf").write_text(svc(p2, name="two", cmd="echod -t 100"))
    c.signal(signal.SIGHUP)
    c.wait_log(r"reload done services_added=0 services_removed=0 services_changed=1")
    assert new.cmd("after change") == "+OK after change"
    n3 = Client(p2)
    assert n3.greeting() not in (new_pid, old_pid)
    n3.close()
    assert new.cmd("QUIT") == "+OK bye"
    wait_for(lambda: not pid_alive(new_pid), timeout=5 * SLOW, what="old child of changed service gone")
    c.signal(signal.SIGQUIT)
    assert c.wait_exit() == 0


def test_daemon_restarted_with_backoff(procs, tmp_path):
    port = free_ports(1)
    starts = tmp_path / "starts"
    services = svc(port) + f'DAEMON {{\n  crashy cmd="sh -c \'date +%s.%N >> {starts}; exit 1\'"\n}}\n'
    c = Castord(procs, tmp_path, services)
    wait_for(lambda: starts.exists() and len(starts.read_text().split()) >= 3, timeout=8 * SLOW,
             what="three starts")
    t = [float(x) for x in starts.read_text().split()[:3]]
    assert 0.9 <= t[1] - t[0] < 2.5 * SLOW, t
    assert 1.9 <= t[2] - t[1] < 4.0 * SLOW, t
    log = c.log()
    assert re.search(r"daemon died, restarting name=crashy pid=\d+ status=1 ran_ms=\d+ restart_in_ms=1000 restarts=1", log)
    assert re.search(r"restart_in_ms=2000 restarts=2", log)
    c.signal(signal.SIGQUIT)
    c.wait_exit()


def test_prefork_keeps_idle_children(procs, tmp_path):
    port = free_ports(1)
    c = Castord(procs, tmp_path, svc(port, "prefork=3"))
    wait_for(lambda: len(echod_children(c)) == 3, what="3 preforked children")
    time.sleep(0.3 * SLOW)  # an observation window: no fourth child may appear in it
    assert len(echod_children(c)) == 3  # no more than asked
    cl = Client(port)
    busy = cl.greeting()
    # one took the client: castord forks another so three stay idle
    wait_for(lambda: len(echod_children(c)) == 4, what="replacement idle child")
    idle = [p for p in echod_children(c) if p != busy]
    os.kill(idle[0], signal.SIGKILL)
    wait_for(lambda: not pid_alive(idle[0]) and len(echod_children(c)) == 4, what="killed idle child replaced")
    assert re.search(rf"exited pid={idle[0]} service=echo signal=SIGKILL", c.log())
    cl.close()


def test_maxchild_enforced_with_log_line(procs, tmp_path):
    port = free_ports(1)
    c = Castord(procs, tmp_path, svc(port, "maxchild=2"))
    a, b = Client(port), Client(port)
    a.greeting()
    b.greeting()
    over = Client(port)  # refused by castord itself (test_castord_limits.py has more)
    assert over.line(timeout=2 * SLOW) == "* BYE too many connections"
    c.wait_log(r"connection refused service=echo peer=127.0.0.1 reason=maxchild maxchild=2 count=2")
    assert len(echod_children(c)) == 2
    assert a.cmd("QUIT") == "+OK bye"
    assert b.cmd("PING") == "+OK PONG"
    assert len(echod_children(c)) <= 2


def test_maxuse_child_exits_after_n_connections(procs, tmp_path):
    port = free_ports(1)
    c = Castord(procs, tmp_path, svc(port, "maxchild=1 maxuse=2"))
    pids = []
    for _ in range(3):
        cl = Client(port)
        pids.append(cl.greeting())
        assert cl.cmd("QUIT") == "+OK bye"
        assert cl.closed()  # the child has told castord it is free (or leaving) by now
        cl.close()
    assert pids[0] == pids[1] and pids[2] != pids[0], pids
    wait_for(lambda: not pid_alive(pids[0]), what="used-up child gone")
    assert re.search(rf"exited pid={pids[0]} service=echo status=0", c.log())


def test_castord_sigkill_leaves_no_child(procs, tmp_path):
    port = free_ports(1)
    services = svc(port, "prefork=2") + 'DAEMON {\n  sleeper cmd="sleep 60"\n}\n'
    c = Castord(procs, tmp_path, services)
    busy, idle = Client(port), Client(port)
    busy.greeting()
    idle.greeting()
    busy.send("SLEEP 30")
    wait_for(lambda: len(c.children()) >= 5, what="children up")  # 2 clients, 2 idle, daemon
    kids = c.children()
    os.kill(c.pid, signal.SIGKILL)
    c.proc.wait(timeout=5 * SLOW)
    wait_for(lambda: not any(pid_alive(k) for k in kids), timeout=1.0 * SLOW,
             what="every child gone within 1 s (times SLOW)")


def test_start_entries_run_before_listeners_and_failure_stops(procs, tmp_path):
    port = free_ports(1)
    mark = tmp_path / "started"
    services = f'START {{\n  prep cmd="sh -c \'sleep 0.3; echo ok > {mark}\'"\n}}\n' + svc(port)
    c = Castord(procs, tmp_path / "a", services)
    assert mark.read_text() == "ok\n"  # done before READY
    log = c.log()
    assert log.index("exited pid=") < log.index("listening service=echo")
    c.signal(signal.SIGQUIT)
    assert c.wait_exit() == 0

    bad = f'START {{\n  prep cmd="sh -c \'exit 4\'"\n}}\n' + svc(port)
    c2 = Castord(procs, tmp_path / "b", bad, wait_ready=False)
    assert c2.wait_exit() == 69
    assert "START entry failed: not starting name=prep status=4" in c2.log()
    assert "listening" not in c2.log()


def test_bad_configuration_is_fatal_with_line_number(procs, tmp_path):
    (tmp_path / "castor.conf").write_text("")
    (tmp_path / "services.conf").write_text("SERVICES {\n  x cmd=\"echod\"\n}\n")
    p = procs.start([binpath("castord"), "-C", tmp_path / "castor.conf", "-D"], log=tmp_path / "c.log")
    assert p.wait(timeout=10 * SLOW) == 78
    assert "services.conf:2" in p.output()


def test_unix_listener_and_sigusr1_status(procs, tmp_path):
    sock = tmp_path / "echo.sock"
    c = Castord(procs, tmp_path, f'SERVICES {{\n  local cmd="echod" listen="{sock}"\n}}\n'
                                 'EVENTS {\n  tick cmd="sh -c \'echo tick >> ' + str(tmp_path / "ticks") +
                                 '\'" period=60\n}\n')
    cl = Client(path=sock)
    cl.greeting()
    assert cl.cmd("PING") == "+OK PONG"
    c.signal(signal.SIGUSR1)
    c.wait_log(r"status service=local listen=\S+echo.sock children=1 available=0")
    c.wait_log(r"status event=tick")
    # EVENTS with period= run once at start-up
    wait_for(lambda: (tmp_path / "ticks").exists(), what="event ran")
    cl.close()
    c.signal(signal.SIGQUIT)
    assert c.wait_exit() == 0
    assert not sock.exists()


def test_echod_stdin_mode():
    cp = subprocess.run([binpath("echod"), "-s"], input=b"PING\r\nSLEEP 0\r\nQUIT\r\n",
                        capture_output=True, timeout=10 * SLOW)
    assert cp.returncode == 0
    lines = cp.stdout.decode().splitlines()
    assert lines[0].startswith("+OK echod ready")
    assert lines[1:] == ["+OK PONG", "+OK slept 0", "+OK bye"]


def test_service_without_castord_refuses_to_run():
    cp = subprocess.run([binpath("echod")], capture_output=True, timeout=10 * SLOW)
    assert cp.returncode == 64
    assert b"not started by castord" in cp.stderr


def test_maxforkrate_spaces_out_forks(procs, tmp_path):
    port = free_ports(1)
    c = Castord(procs, tmp_path, svc(port, "maxforkrate=2"))
    t0 = time.monotonic()
    clients = [Client(port) for _ in range(5)]
    times = []
    for cl in clients:
        cl.greeting(timeout=6 * SLOW)
        times.append(time.monotonic() - t0)
    times.sort()
    # 2 forks per second: the fifth child cannot start before 2 s have passed
    assert times[4] >= 1.8, times
    assert times[4] < 4.5 * SLOW, times
    c.wait_log(r"maxforkrate reached service=echo maxforkrate=2: new connections wait")


def test_services_file_option_environment_and_connection_info(procs, tmp_path):
    port = free_ports(1)
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "svc.conf").write_text(svc(port, "tls=yes", name="secure"))
    c = Castord(procs, tmp_path, "# not this one\n", args=("-M", other / "svc.conf"))
    cl = Client(port)
    cl.greeting()
    assert cl.cmd("ENV CASTOR_CONFIG") == f"+OK {tmp_path / 'castor.conf'}"
    assert cl.cmd("ENV CASTOR_SERVICE") == "+OK secure"
    assert cl.cmd("ENV CASTOR_TLS") == "+OK 1"
    assert cl.cmd("ENV CASTOR_MAXUSE") == "+OK 250"
    info = cl.cmd("CONN")
    assert re.match(rf"\+OK peer=127\.0\.0\.1:\d+ local=127\.0\.0\.1:{port} loopback=1 tls=1 use=1$", info), info
    cl.close()
    c.signal(signal.SIGQUIT)
    assert c.wait_exit() == 0


def test_service_failing_at_start_is_backed_off(procs, tmp_path):
    port = free_ports(1)
    c = Castord(procs, tmp_path, svc(port, "prefork=1", cmd="echod -Z"))
    # not a fork loop: failed starts, a pause of 1 s, then spawns again.  The
    # log lines are the events; their own time stamps show the pause held
    # (a lower bound: a slow machine only lengthens it).
    stamp = r"(?m)^\S+T(\d\d):(\d\d):(\d\d\.\d+) \S+ "
    spawned = stamp + r"info: spawned pid=\d+ service=echo"
    first = "service children fail at start service=echo failures=3: pausing spawns ms=1000"

    def resumed():
        log = c.log()
        paused = re.search(stamp + r".*" + re.escape(first), log)
        again = paused and re.compile(spawned).search(log, paused.end())
        return again and (log, paused, again)
    log, paused, again = wait_for(resumed, timeout=5 * SLOW, what="spawning resumed after the pause")
    spawns = len(re.findall(spawned, log[:again.end()]))
    assert 3 <= spawns <= 6, spawns

    def secs(m):
        return int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
    assert (secs(again) - secs(paused)) % 86400 >= 0.9, (paused.group(0), again.group(0))
    c.signal(signal.SIGQUIT)
    assert c.wait_exit() in (0, 1)  # 1 when a failing child was exiting during the drain


def test_service_idle_timeout_wakes_without_signal(procs, tmp_path):
    port = free_ports(1)
    c = Castord(procs, tmp_path, svc(port, cmd="echod -t 1"))
    cl = Client(port)
    cl.greeting()
    t0 = time.monotonic()
    assert cl.line(timeout=4 * SLOW) == "* BYE idle for too long"
    assert 0.9 <= time.monotonic() - t0 < 3 * SLOW
    assert cl.closed()
    c.signal(signal.SIGQUIT)
    assert c.wait_exit() == 0
