"""Password guessing against a real castord (issue 20, points 4 and 6): the
penalty table shared by imapd, pop3d and syncd (run/authpen) keeps the
checked guesses against one user at 2/s or fewer however many connections
ask, a failure on one service delays the next attempt on another, the
"auth failed" line matches contrib/fail2ban (checked with fail2ban-regex
when it is installed), and allowplaintext_loopback decides whether a
loopback peer may send a password without TLS.

Sources other than 127.0.0.1 are other loopback addresses (127.0.0.2 ...),
which the kernel routes to lo: the per-address key sees distinct clients."""
import base64
import re
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

from castor_mail import MailServer
from conftest import wait_for
from repl_util import SLOW

ROOT = Path(__file__).resolve().parents[2]
FILTER = ROOT / "contrib" / "fail2ban" / "filter.d" / "castor.conf"
USERS = (("alice", "pw-alice"), ("bob", "pw-bob"), ("carol", "pw-carol"))
SYNC_PW = "sync-pw-right"


class Line:
    """A line-oriented client socket; .close() from another thread unblocks it."""

    def __init__(self, port, src="127.0.0.1"):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=60 * SLOW,
                                          source_address=(src, 0))
        self.f = self.s.makefile("rb")

    def line(self):
        return self.f.readline()

    def send(self, text):
        self.s.sendall(text.encode())

    def close(self):
        try:
            self.s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.s.close()


class Imap(Line):
    def __init__(self, port, src="127.0.0.1"):
        super().__init__(port, src)
        self.greeting = self.line()
        assert self.greeting.startswith(b"* OK"), self.greeting
        self.n = 0

    def cmd(self, text):
        self.n += 1
        tag = f"t{self.n}"
        self.send(f"{tag} {text}\r\n")
        untagged = []
        while True:
            ln = self.line()
            if not ln:
                return untagged, b""
            if ln.startswith(tag.encode() + b" "):
                return untagged, ln
            untagged.append(ln)

    def login(self, user, pw):
        _, t = self.cmd(f'LOGIN "{user}" "{pw}"')
        if not t:
            return "closed"
        if b" OK " in t:
            return "ok"
        if b"[UNAVAILABLE]" in t:
            return "throttled"
        assert b"[AUTHENTICATIONFAILED]" in t, t
        return "fail"


class Pop3(Line):
    def __init__(self, port, src="127.0.0.1"):
        super().__init__(port, src)
        assert self.line().startswith(b"+OK")

    def login(self, user, pw):
        self.send(f"USER {user}\r\nPASS {pw}\r\n")
        if not self.line().startswith(b"+OK"):
            return "closed"
        ln = self.line()
        if not ln:
            return "closed"
        if ln.startswith(b"+OK"):
            return "ok"
        if ln.startswith(b"-ERR [SYS/TEMP] Too many failed logins"):
            return "throttled"
        assert ln.startswith(b"-ERR [AUTH]"), ln
        return "fail"


class Sync(Line):
    def __init__(self, port, src="127.0.0.1"):
        super().__init__(port, src)
        g = self.line()
        assert g.startswith(b"* OK") and b"AUTH (PLAIN)" in g, g

    def login(self, user, pw):
        tok = base64.b64encode(f"\0{user}\0{pw}".encode()).decode()
        self.send(f"A1 AUTHENTICATE PLAIN {tok}\r\n")
        while True:
            ln = self.line()
            if not ln:
                return "closed"
            if ln.startswith(b"A1 OK"):
                return "ok"
            if ln.startswith(b"A1 NO [TEMP]"):
                return "throttled"
            if ln.startswith(b"A1 NO"):
                return "fail"


def server(procs, tmp_path, conf="", plain_loopback=None):
    """A castorctl-init'ed root; plain_loopback replaces the
    allowplaintext_loopback line init writes ("yes")."""
    s = MailServer(procs, tmp_path, users=USERS, conf=conf, start=False)
    if plain_loopback is not None:
        text = s.conf.read_text()
        assert "allowplaintext_loopback: yes\n" in text
        s.conf.write_text(text.replace("allowplaintext_loopback: yes\n",
                                       f"allowplaintext_loopback: {plain_loopback}\n"))
    s.start()
    s.imap_port = s.base
    s.syncd_port = s.base + 3
    return s


def attack(clients, user, seconds):
    """Each client (a (class, port) pair) guesses user's password in a loop
    on one connection, reconnecting when closed, for `seconds`.  Returns
    the answers (kind, time) received before the end."""
    end = time.monotonic() + seconds
    answers, conns, lock, stop = [], [], threading.Lock(), threading.Event()

    def run(cls, port, i):
        n = 0
        while not stop.is_set():
            try:
                c = cls(port)
            except (OSError, AssertionError):
                continue
            with lock:
                if stop.is_set():
                    c.close()
                    return
                conns.append(c)
            while not stop.is_set():
                n += 1
                try:
                    r = c.login(user, f"guess-{i}-{n}")
                except (OSError, ValueError):
                    r = "closed"
                if r == "closed":
                    break
                t = time.monotonic()
                if t <= end:
                    with lock:
                        answers.append((r, t))
            c.close()

    threads = [threading.Thread(target=run, args=(cls, port, i), daemon=True)
               for i, (cls, port) in enumerate(clients)]
    for t in threads:
        t.start()
    stop.wait(seconds)          # the measurement window, not a synchronisation
    stop.set()
    with lock:
        for c in conns:
            c.close()
    for t in threads:
        t.join(timeout=60 * SLOW)
        assert not t.is_alive(), "a guessing thread did not stop"
    return answers


def checked(answers):
    """Guesses whose password was checked: refused ones and successes."""
    return [a for a in answers if a[0] in ("fail", "ok")]


def test_16_connections_guess_at_most_2_per_second(procs, tmp_path):
    """8 IMAP and 8 POP3 connections guess alice's password for 10 s; a
    17th client tries the right one in the middle and must wait its turn."""
    srv = server(procs, tmp_path)
    clients = [(Imap, srv.imap_port)] * 8 + [(Pop3, srv.pop3_port)] * 8
    right = {}

    def right_password():
        c = Imap(srv.imap_port, src="127.0.0.9")
        t0 = time.monotonic()
        right["result"] = c.login("alice", "pw-alice")
        right["elapsed"] = time.monotonic() - t0
        c.close()

    timer = threading.Timer(3.0, right_password)
    timer.start()
    seconds = 10.0
    answers = attack(clients, "alice", seconds)
    timer.join(timeout=60 * SLOW)
    n = len(checked(answers))
    assert n / seconds <= 2.0, f"{n} checked guesses in {seconds} s: {answers}"
    assert any(r == "throttled" for r, _ in answers), "no attempt was throttled"
    # the right password did not get in at full speed during the attack
    assert right.get("result") in ("ok", "throttled"), right
    assert right["result"] == "throttled" or right["elapsed"] >= 1.0, right
    # both services logged the fail2ban line with the client's address
    log = srv.log()
    for svc in ("imapd", "pop3d"):
        assert re.search(rf"notice: auth failed service={svc} rip=127\.0\.0\.1 user=alice "
                         rf"peer=127\.0\.0\.1:\d+ failures=\d+ penalty_ms=\d+ ", log), svc
    assert re.search(r"auth failed service=\w+ rip=127\.0\.0\.1 user=alice .* reason=\"throttled", log)


def login_timed(cls, port, src, user, pw):
    c = cls(port, src=src)
    t0 = time.monotonic()
    r = c.login(user, pw)
    dt = time.monotonic() - t0
    c.close()
    return r, dt


def test_pop3_failures_delay_imap_for_that_user(procs, tmp_path):
    """The table is shared by services and keyed by user and by address:
    three POP3 failures for bob (from 127.0.0.2) delay bob's next IMAP
    attempt from another address (127.0.0.3), not carol's."""
    srv = server(procs, tmp_path)
    for _ in range(3):
        r, _ = login_timed(Pop3, srv.pop3_port, "127.0.0.2", "bob", "wrong")
        assert r == "fail"
    r, dt_bob = login_timed(Imap, srv.imap_port, "127.0.0.3", "bob", "wrong")
    assert r == "fail"
    r, dt_carol = login_timed(Imap, srv.imap_port, "127.0.0.4", "carol", "wrong")
    assert r == "fail"
    # bob waited for his turn (2 s after the third failure's) on top of the
    # connection's 0.5 s; carol only for the 0.5 s
    assert dt_bob >= 1.8, dt_bob
    assert dt_carol < dt_bob - 1.0, (dt_carol, dt_bob)
    log = srv.log()
    m = re.search(r"auth failed service=imapd rip=127\.0\.0\.3 user=bob \S+ failures=1 "
                  r"penalty_ms=(\d+) ", log)
    assert m and int(m.group(1)) >= 1000, log
    # the right password still works (after its turn), from yet another address
    r, _ = login_timed(Imap, srv.imap_port, "127.0.0.5", "bob", "pw-bob")
    assert r == "ok"
    # an address that failed for three names is held up for every user on it
    for name in ("nobody1", "nobody2", "nobody3"):
        assert login_timed(Pop3, srv.pop3_port, "127.0.0.10", name, "wrong")[0] == "fail"
    r, dt = login_timed(Imap, srv.imap_port, "127.0.0.10", "carol", "wrong")
    assert r == "fail" and dt >= 1.5, dt


def test_syncd_is_throttled(procs, tmp_path):
    """syncd takes turns in the same table: 8 connections guessing the sync
    password check at most 2 guesses/s, and a sync failure delays IMAP
    from the same address."""
    srv = server(procs, tmp_path, conf=f"sync_password: {SYNC_PW}\n")
    seconds = 8.0
    answers = attack([(Sync, srv.syncd_port)] * 8, "sync", seconds)
    n = len(checked(answers))
    assert n / seconds <= 2.0, f"{n} checked sync guesses in {seconds} s"
    assert any(r == "throttled" for r, _ in answers)
    log = srv.log()
    assert re.search(r"notice: auth failed service=syncd rip=127\.0\.0\.1 user=sync "
                     r"peer=127\.0\.0\.1:\d+ failures=\d+ penalty_ms=\d+ ", log), log
    # the address that guessed on syncd waits (or is refused) on IMAP as well
    r, dt = login_timed(Imap, srv.imap_port, "127.0.0.1", "carol", "wrong")
    assert r == "throttled" or dt >= 1.5, (r, dt)


def test_log_line_matches_the_fail2ban_filter(procs, tmp_path):
    srv = server(procs, tmp_path)
    for src, svc in (("127.0.0.6", Imap), ("127.0.0.7", Pop3)):
        r, _ = login_timed(svc, srv.imap_port if svc is Imap else srv.pop3_port, src,
                           "alice", "wrong")
        assert r == "fail"
    # a user name that tries to smuggle an address into the line
    r, _ = login_timed(Imap, srv.imap_port, "127.0.0.8", "x rip=6.6.6.6", "wrong")
    assert r == "fail"
    wait_for(lambda: srv.log().count("auth failed") >= 3, timeout=10 * SLOW, what="3 failures logged")
    logfile = tmp_path / "castord.log"
    logfile.write_text(srv.log())
    # the filter's regex as fail2ban uses it (<HOST> -> the address)
    text = FILTER.read_text()
    rx = re.search(r"^failregex = (.*)$", text, re.M).group(1)
    rx = rx.replace("<HOST>", r"(?P<host>[0-9a-fA-F.:]+)")
    hosts = []
    for line in logfile.read_text().splitlines():
        rest = re.sub(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?", "", line)
        m = re.search(rx, rest)
        if m:
            hosts.append(m.group("host"))
    assert sorted(hosts) == ["127.0.0.6", "127.0.0.7", "127.0.0.8"], hosts
    # fail2ban is in scripts/deps.sh's test packages: never skipped
    assert shutil.which("fail2ban-regex"), "fail2ban-regex missing (scripts/deps.sh installs fail2ban)"
    cp = subprocess.run(["fail2ban-regex", str(logfile), str(FILTER)], capture_output=True,
                        text=True, timeout=120 * SLOW)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert re.search(r"Failregex: 3 total", cp.stdout), cp.stdout


def test_allowplaintext_loopback_no(procs, tmp_path):
    srv = server(procs, tmp_path, plain_loopback="no")
    c = Imap(srv.imap_port)
    assert b"LOGINDISABLED" in c.greeting and b"AUTH=PLAIN" not in c.greeting, c.greeting
    u, t = c.cmd("CAPABILITY")
    assert b"LOGINDISABLED" in b"".join(u), u
    u, t = c.cmd('LOGIN alice "pw-alice"')
    assert b"NO [PRIVACYREQUIRED]" in t, t
    c.close()
    p = Pop3(srv.pop3_port)
    p.send("USER alice\r\n")
    assert p.line().startswith(b"-ERR [AUTH] Plaintext authentication disallowed")
    p.close()
    # syncd offers no plaintext AUTH on loopback either
    s = Line(srv.syncd_port)
    g = s.line()
    assert b"AUTH ()" in g, g
    s.close()
    assert "login service=" not in srv.log()


def test_allowplaintext_loopback_yes_logs_the_rule(procs, tmp_path):
    # castorctl init writes allowplaintext_loopback: yes
    srv = server(procs, tmp_path)
    assert "allowplaintext_loopback: yes" in srv.conf.read_text()
    assert login_timed(Imap, srv.imap_port, "127.0.0.1", "alice", "pw-alice")[0] == "ok"
    assert login_timed(Pop3, srv.pop3_port, "127.0.0.1", "bob", "pw-bob")[0] == "ok"
    srv.wait_log(r"info: login service=imapd peer=127\.0\.0\.1:\d+ user=alice plaintext_rule=loopback")
    srv.wait_log(r"info: login service=pop3d peer=127\.0\.0\.1:\d+ user=bob plaintext_rule=loopback")
