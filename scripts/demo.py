#!/usr/bin/python3
"""make demo: a Castor master + replica pair on loopback, with a demo user.

Creates demo/master and demo/replica with `castorctl init`, starts castord
on each, delivers a few messages over LMTP to the master, waits until the
replica holds them (comparing `castorctl dump --for-compare` of both
sides), reads them back over IMAP from the replica, then runs a soft
failover (`castorctl failover --to r1`), delivers to the new master, waits
until the old master (now its replica) holds it, prints `castorctl status`
on both, and leaves both servers running.  `make demo-stop` (scripts/demo.py stop) stops them with
SIGQUIT, which drains the sync log to the replica first.
"""
import imaplib
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[1]
BUILD = Path(os.environ.get("CASTOR_BUILD") or TOP / "build")
DEMO = TOP / "demo"
USER, PASSWORD = "demo", "demo-password"


def prog(name):
    for p in BUILD.glob(f"src/*/{name}"):
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    sys.exit(f"demo: {name} is not built in {BUILD} (run make)")


def ctl(root, *args, check=True):
    cp = subprocess.run([prog("castorctl"), "-C", str(root / "castor.conf"), *args],
                        capture_output=True, text=True)
    if check and cp.returncode != 0:
        sys.exit(f"demo: castorctl {' '.join(args)} failed: {cp.stderr.strip()}")
    return cp.stdout


def free_base(n=5):
    for base in list(range(14300, 20000, 100)):
        ok = True
        for p in range(base, base + n):
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                ok = False
            finally:
                s.close()
        if ok:
            return base
    sys.exit("demo: no free ports")


def wait_port(port, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    sys.exit(f"demo: nothing listens on 127.0.0.1:{port} (see {DEMO}/*.log)")


def pid_of(root):
    try:
        return int((root / "run" / "castord.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def stop():
    for name in ("master", "replica"):
        root = DEMO / name
        pid = pid_of(root)
        if pid and alive(pid):
            print(f"demo: SIGQUIT to castord ({name}, pid {pid})")
            os.kill(pid, signal.SIGQUIT)
            for _ in range(300):
                if not alive(pid):
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGTERM)
    print("demo: stopped")


def start(root, log):
    subprocess.Popen([prog("castord"), "-C", str(root / "castor.conf"), "-D", "-L", str(log)],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True)


def failover(master, replica, mbase, rbase):
    """Soft failover: the replica becomes the master, mail goes on."""
    print("\ndemo: soft failover: castorctl failover --to r1 (on the master)")
    cp = subprocess.run([prog("castorctl"), "-C", str(master / "castor.conf"), "failover", "--to", "r1",
                         "--castord-log", str(DEMO / "master.log")], capture_output=True, text=True)
    for line in cp.stdout.splitlines():
        print("   ", line)
    if cp.returncode != 0:
        sys.exit(f"demo: failover failed: {cp.stderr.strip()}")
    lm = smtplib.LMTP("127.0.0.1", rbase + 2)
    msg = (f"From: alice@example.org\r\nTo: {USER}@example.org\r\nSubject: demo message 4\r\n"
           f"Message-ID: <demo-4-{time.time()}@example.org>\r\n\r\nDelivered after the failover.\r\n")
    refused = lm.sendmail("alice@example.org", [USER], msg)
    lm.quit()
    print(f"demo: LMTP delivered message 4 to the new master (old replica): "
          f"{'refused ' + str(refused) if refused else '250 OK'}")
    try:
        lm = smtplib.LMTP("127.0.0.1", mbase + 2)
        lm.ehlo("demo")
        code, text = lm.mail("alice@example.org")
        lm.quit()
        print(f"demo: LMTP to the old master now: {code} {text.decode()}")
    except (OSError, smtplib.SMTPException) as e:
        print(f"demo: LMTP to the old master now: {e}")
    t0 = time.monotonic()
    while True:
        n = ctl(replica, "dump", USER, "--for-compare")
        o = ctl(master, "dump", USER, "--for-compare", check=False)
        if n == o:
            break
        if time.monotonic() - t0 > 30:
            sys.exit("demo: the old master did not catch up within 30 s (see demo/*.log)")
        time.sleep(0.1)
    print(f"demo: old master identical to the new one after {(time.monotonic() - t0) * 1000:.0f} ms")
    for name, root in (("new master (demo/replica)", replica), ("new replica (demo/master)", master)):
        cp = subprocess.run([prog("castorctl"), "-C", str(root / "castor.conf"), "status"],
                            capture_output=True, text=True)
        print(f"\ndemo: castorctl status on the {name}:")
        for line in cp.stdout.splitlines():
            print("   ", line)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "stop":
        stop()
        return
    stop()
    subprocess.run(["rm", "-rf", str(DEMO)], check=True)
    DEMO.mkdir()
    mbase, rbase = free_base(), None
    rbase = mbase + 100
    master, replica = DEMO / "master", DEMO / "replica"
    # symmetric: the replica has a channel back to the master (m1), used
    # once a failover makes it the master (docs/failover.md)
    subprocess.run([prog("castorctl"), "init", str(replica), "--port-base", str(rbase), "--role", "replica",
                    "--channel", f"m1=127.0.0.1:{mbase + 3}", "--sync-password", "sync-secret"], check=True)
    subprocess.run([prog("castorctl"), "init", str(master), "--port-base", str(mbase), "--role", "master",
                    "--channel", f"r1=127.0.0.1:{rbase + 3}", "--sync-password", "sync-secret"], check=True)
    ctl(master, "user", "add", USER, "--password", PASSWORD)
    start(replica, DEMO / "replica.log")
    start(master, DEMO / "master.log")
    wait_port(rbase + 3)
    wait_port(mbase + 2)
    print(f"\ndemo: master  imap 127.0.0.1:{mbase}  pop3 :{mbase + 1}  lmtp :{mbase + 2}")
    print(f"demo: replica imap 127.0.0.1:{rbase}  pop3 :{rbase + 1}  (read-only)")

    lm = smtplib.LMTP("127.0.0.1", mbase + 2)
    for i in range(1, 4):
        msg = (f"From: alice@example.org\r\nTo: {USER}@example.org\r\nSubject: demo message {i}\r\n"
               f"Message-ID: <demo-{i}-{time.time()}@example.org>\r\n\r\nHello from the demo, message {i}.\r\n")
        refused = lm.sendmail("alice@example.org", [USER], msg)
        print(f"demo: LMTP delivered message {i} to the master: {'refused ' + str(refused) if refused else '250 OK'}")
    lm.quit()

    t0 = time.monotonic()
    while True:
        m = ctl(master, "dump", USER, "--for-compare")
        r = ctl(replica, "dump", USER, "--for-compare", check=False)
        if m == r:
            break
        if time.monotonic() - t0 > 20:
            sys.exit("demo: the replica did not catch up within 20 s (see demo/*.log)")
        time.sleep(0.05)
    print(f"demo: replica identical to the master after {(time.monotonic() - t0) * 1000:.0f} ms "
          "(castorctl dump --for-compare)")

    im = imaplib.IMAP4("127.0.0.1", rbase)
    im.login(USER, PASSWORD)
    typ, data = im.select("INBOX", readonly=True)
    typ, hdrs = im.fetch("1:*", "(UID BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    print(f"demo: IMAP on the replica, INBOX has {data[0].decode()} messages:")
    for item in hdrs:
        if isinstance(item, tuple):
            print("   ", item[1].decode().strip())
    im.logout()

    failover(master, replica, mbase, rbase)

    print("\ndemo: both servers keep running; logs in demo/master.log and demo/replica.log")
    print(f"demo: try: python3 -c \"import imaplib; m=imaplib.IMAP4('127.0.0.1',{mbase}); "
          f"m.login('{USER}','{PASSWORD}'); print(m.select())\"")
    print("demo: after the failover demo/replica is the master and demo/master its replica")
    print("demo: stop with: make demo-stop (SIGQUIT: the master drains its sync log first)")


if __name__ == "__main__":
    main()
