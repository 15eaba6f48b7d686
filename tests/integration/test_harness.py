"""The harness itself: processes are started and always stopped."""
import signal
import subprocess
import sys

from conftest import Procs, free_ports, pid_alive, port_open, wait_for, sanitizer_reports


def test_procs_are_killed_with_their_children(tmp_path):
    ps = Procs(tmp_path)
    # a parent that forks a child which ignores SIGTERM
    p = ps.start([sys.executable, "-c",
                  "import os,signal,time\n"
                  "pid=os.fork()\n"
                  "if pid==0:\n"
                  "  signal.signal(signal.SIGTERM, signal.SIG_IGN); print(os.getpid(), flush=True); time.sleep(60)\n"
                  "else:\n"
                  "  time.sleep(60)\n"])
    child = int(wait_for(lambda: p.output().strip(), what="child pid"))
    assert pid_alive(child)
    ps.stop_all()
    wait_for(lambda: not pid_alive(child), timeout=5, what="child gone")


def test_free_ports_are_bindable():
    base = free_ports(5)
    assert 20000 <= base < 60000
    assert not port_open(base)


def test_sanitizer_marks_detected():
    assert sanitizer_reports("x\n==1==ERROR: AddressSanitizer: heap-use-after-free\n")
    assert not sanitizer_reports("all fine\n")
