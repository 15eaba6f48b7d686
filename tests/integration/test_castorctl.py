"""castorctl, the admin CLI, driven as an operator would: init a server
root, manage users and mailboxes, import mbox and Maildir, check, dump.

Every error case asserts three things: a non-zero exit code of the kind
documented in docs/castorctl.md, a one-line message that says what is
wrong, and that nothing changed (the `dump` before and after is equal).
"""
import hashlib
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import BUILD, binpath, free_ports, run

# exit codes (docs/castorctl.md)
EXIT_PROBLEMS, EXIT_USAGE, EXIT_CONFIG, EXIT_NOTFOUND, EXIT_EXISTS, EXIT_INVALID, EXIT_PERM = 1, 2, 3, 4, 5, 6, 7
EXIT_SPACE = 9

CTL = None


def ctl_bin():
    global CTL
    if CTL is None:
        CTL = binpath("castorctl")
    return CTL


def castorctl(*args, conf=None, check=True, input="", env=None, timeout=600):
    argv = [ctl_bin()]
    if conf is not None:
        argv += ["-C", str(conf)]
    argv += [str(a) for a in args]
    return run(argv, check=check, input=input, env=env, timeout=timeout)


def fails(cp, code, pattern):
    """cp exited with `code` and printed one clear line matching pattern."""
    assert cp.returncode == code, f"exit {cp.returncode}, wanted {code}\nstdout:{cp.stdout}\nstderr:{cp.stderr}"
    lines = [l for l in cp.stderr.splitlines() if l.strip()]
    assert len(lines) == 1, f"want one error line, got: {cp.stderr!r}"
    assert lines[0].startswith("castorctl: "), lines[0]
    assert re.search(pattern, lines[0], re.I), f"{pattern!r} not in {lines[0]!r}"


def make_root(tmp_path, name="root", *extra):
    base = free_ports(5)
    root = tmp_path / name
    cp = castorctl("init", root, "--port-base", base, *extra)
    assert "created server root" in cp.stdout
    return root, root / "castor.conf", base


@pytest.fixture
def srv(tmp_path):
    """A fresh server root with users alice and bob."""
    root, conf, base = make_root(tmp_path)
    pw = tmp_path / "pw"
    pw.write_text("secret-1\n")
    castorctl("user", "add", "alice", "--password-file", pw, conf=conf)
    castorctl("user", "add", "bob", "--password-file", pw, conf=conf)
    return conf


def dump(conf, user="--all", *extra):
    return castorctl("dump", *extra, user, conf=conf).stdout


def records(dump_text):
    """[(mailbox, {uid, guid, size, modseq, internaldate, flags})] from a dump."""
    out = []
    mailbox = None
    for line in dump_text.splitlines():
        m = re.match(r'mailbox "((?:[^"\\]|\\.)*)"', line)
        if m:
            mailbox = m.group(1)
            continue
        m = re.match(r"  record uid=(\d+) guid=([0-9a-f]{40}) size=(\d+) modseq=(\d+) "
                     r"internaldate=(\S+) flags=\(([^)]*)\)", line)
        if m:
            out.append((mailbox, dict(uid=int(m.group(1)), guid=m.group(2), size=int(m.group(3)),
                                      modseq=int(m.group(4)), internaldate=m.group(5),
                                      flags=m.group(6))))
    return out


# ---------------------------------------------------------------- init

def test_init_creates_a_server_root(tmp_path):
    root, conf, base = make_root(tmp_path)
    for f in ("castor.conf", "services.conf", "tls/cert.pem", "tls/key.pem", "db/users.db"):
        assert (root / f).is_file(), f
    assert stat.S_IMODE((root / "tls/key.pem").stat().st_mode) == 0o600
    text = conf.read_text()
    assert re.search(r"^role: master$", text, re.M)
    assert re.search(r"^tls_cert_file: tls/cert.pem$", text, re.M)
    assert "sync_channels" not in text
    svc = (root / "services.conf").read_text()
    # each service on its port, active exactly when its program is built
    for i, (name, prog) in enumerate([("imap", "imapd"), ("pop3", "pop3d"), ("lmtp", "lmtpd"),
                                      ("syncd", "syncd"), ("imaps", "imapd")]):
        m = re.search(rf'^(#?)\s*{name}\s+cmd="{prog}" listen="127\.0\.0\.1:{base + i}"', svc, re.M)
        assert m, f"{name} missing from services.conf:\n{svc}"
        try:
            binpath(prog)
            built = True
        except FileNotFoundError:
            built = False
        assert (m.group(1) == "") == built, f"{name}: built={built} but line is {m.group(0)!r}"
    assert re.search(r'imaps .*tls=yes', svc)
    # a master without channels has no sync entries
    assert "sync-client" not in svc
    # the certificate is a real one, for this host
    out = subprocess.run(["openssl", "x509", "-in", root / "tls/cert.pem", "-noout", "-subject", "-dates"],
                         capture_output=True, text=True, check=True).stdout
    assert "CN" in out
    # the store is usable: no users yet, role/epoch recorded
    assert castorctl("user", "list", conf=conf).stdout == ""


def test_init_master_with_channels(tmp_path):
    pwf = tmp_path / "syncpw"
    pwf.write_text("s3cret sync\n")
    p1, p2 = free_ports(1), free_ports(1)
    root, conf, base = make_root(tmp_path, "m", "--channel", f"r1=127.0.0.1:{p1}",
                                 "--channel", f"r2=[::1]:{p2}", "--sync-password-file", pwf)
    text = conf.read_text()
    assert re.search(r"^sync_channels: r1 r2$", text, re.M)
    assert re.search(rf"^r1_sync_host: 127\.0\.0\.1$\n^r1_sync_port: {p1}$", text, re.M)
    assert re.search(rf"^r2_sync_host: ::1$\n^r2_sync_port: {p2}$", text, re.M)
    assert re.search(r"^r1_sync_authname: sync$", text, re.M)
    assert re.search(r"^r2_sync_password: s3cret sync$", text, re.M)
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600, "castor.conf holds a password"
    svc = (root / "services.conf").read_text()
    try:
        binpath("sync-client")
        mark = ""
    except FileNotFoundError:
        mark = "#"
    assert re.search(rf'^{mark}\s*sync_r1\s+cmd="sync-client -r -n r1"', svc, re.M), svc
    assert re.search(rf'^{mark}\s*sync_r2\s+cmd="sync-client -r -n r2"', svc, re.M), svc
    assert re.search(rf'^{mark}\s*drain\s+cmd="sync-client --drain" timeout=\d+', svc, re.M), svc


def test_init_replica_listen_and_sync_account(tmp_path):
    root, conf, base = make_root(tmp_path, "r", "--role", "replica", "--listen", "::1",
                                 "--sync-password", "pw-for-sync")
    assert re.search(r"^role: replica$", conf.read_text(), re.M)
    svc = (root / "services.conf").read_text()
    assert f'listen="[::1]:{base}"' in svc and f'listen="[::1]:{base + 4}"' in svc
    assert "sync-client" not in svc, "a replica runs no sync client"
    # the credential the master's channel logs in with is not a mail user
    assert castorctl("user", "list", conf=conf).stdout.split() == []
    # a replica takes changes only from its master
    pw = tmp_path / "pw"
    pw.write_text("x\n")
    fails(castorctl("user", "add", "carol", "--password-file", pw, conf=conf, check=False),
          EXIT_PERM, "replica")
    assert castorctl("user", "list", conf=conf).stdout.split() == []


def test_init_refuses_a_non_empty_root(tmp_path):
    root = tmp_path / "busy"
    root.mkdir()
    (root / "precious").write_text("keep me")
    cp = castorctl("init", root, "--port-base", free_ports(5), check=False)
    fails(cp, EXIT_EXISTS, "not empty")
    assert sorted(os.listdir(root)) == ["precious"]
    assert (root / "precious").read_text() == "keep me"
    # an existing empty directory is fine
    empty = tmp_path / "empty"
    empty.mkdir()
    castorctl("init", empty, "--port-base", free_ports(5))
    assert (empty / "castor.conf").is_file()
    # and a second init on it is refused
    fails(castorctl("init", empty, "--port-base", free_ports(5), check=False), EXIT_EXISTS, "not empty")


@pytest.mark.parametrize("args,code,pattern", [
    ([], EXIT_USAGE, "--port-base"),
    (["--port-base", "abc"], EXIT_USAGE, "port"),
    (["--port-base", "65533"], EXIT_USAGE, "port"),
    (["--port-base", "2000", "--role", "boss"], EXIT_USAGE, "master or replica"),
    (["--port-base", "2000", "--channel", "r1=127.0.0.1:2003"], EXIT_USAGE, "sync-password"),
    (["--port-base", "2000", "--channel", "r1", "--sync-password", "x"], EXIT_INVALID, "NAME=HOST:PORT"),
    (["--port-base", "2000", "--channel", "R_1=h:1", "--sync-password", "x"], EXIT_INVALID, "a-z"),
    (["--port-base", "2000", "--channel", "r1=127.0.0.1:99999", "--sync-password", "x"], EXIT_INVALID, "r1"),
    (["--port-base", "2000", "--channel", "r1=h:1", "--channel", "r1=h:2", "--sync-password", "x"],
     EXIT_INVALID, "twice"),
    (["--port-base", "2000", "--listen", "not a host"], EXIT_INVALID, "listen"),
    (["--port-base", "2000", "--bogus"], EXIT_USAGE, "unknown option --bogus"),
])
def test_init_bad_arguments_create_nothing(tmp_path, args, code, pattern):
    root = tmp_path / "root"
    fails(castorctl("init", root, *args, check=False), code, pattern)
    assert not root.exists()


# ---------------------------------------------------------------- -C

def test_config_path(tmp_path, srv):
    # a bad -C path
    cp = castorctl("user", "list", conf=tmp_path / "nope" / "castor.conf", check=False)
    fails(cp, EXIT_CONFIG, r"cannot read configuration .*nope/castor\.conf")
    # a file that is not a castor.conf
    bad = tmp_path / "bad.conf"
    bad.write_text("servername: x\nno colon here\n")
    fails(castorctl("user", "list", conf=bad, check=False), EXIT_CONFIG, r"bad\.conf:2")
    # a valid castor.conf in a directory that is not a server root
    other = tmp_path / "other"
    other.mkdir()
    (other / "castor.conf").write_text("servername: x\n")
    fails(castorctl("user", "list", conf=other / "castor.conf", check=False), EXIT_CONFIG,
          "not a server root")
    assert not (other / "db").exists()
    # $CASTOR_CONFIG, then ./castor.conf
    assert castorctl("user", "list", env={"CASTOR_CONFIG": srv}).stdout.split() == ["alice", "bob"]
    cp = subprocess.run([ctl_bin(), "user", "list"], cwd=srv.parent, capture_output=True, text=True,
                        env={k: v for k, v in os.environ.items() if k != "CASTOR_CONFIG"})
    assert cp.returncode == 0 and cp.stdout.split() == ["alice", "bob"], cp.stderr
    cp = subprocess.run([ctl_bin(), "user", "list"], cwd=tmp_path, capture_output=True, text=True,
                        env={k: v for k, v in os.environ.items() if k != "CASTOR_CONFIG"})
    assert cp.returncode == EXIT_CONFIG and "castor.conf" in cp.stderr
    # -C after the command words works too
    assert castorctl("user", "list", "-C", srv).stdout.split() == ["alice", "bob"]


def test_usage_errors(srv):
    fails(castorctl("frobnicate", conf=srv, check=False), EXIT_USAGE, "unknown command")
    fails(castorctl("user", conf=srv, check=False), EXIT_USAGE, "user add")
    fails(castorctl("user", "add", conf=srv, check=False), EXIT_USAGE, "USER")
    fails(castorctl("mailbox", "rename", "alice", "x", conf=srv, check=False), EXIT_USAGE, "OLD NEW")
    fails(castorctl("check", conf=srv, check=False), EXIT_USAGE, "--all")
    fails(castorctl("import", "alice", conf=srv, check=False), EXIT_USAGE, "import USER")
    fails(castorctl("dump", "alice", "--bogus", conf=srv, check=False), EXIT_USAGE, "--bogus")
    assert castorctl("--help").stdout.startswith("usage: castorctl")
    assert "user add" in castorctl("user", "--help").stdout
    assert castorctl("--version").stdout.startswith("castorctl ")


# ---------------------------------------------------------------- users

def password_fp(conf, user):
    m = re.search(rf"^user {user} password=(\S+)", dump(conf, user), re.M)
    return m.group(1)


def test_user_add_list_passwd_del(tmp_path, srv):
    pw = tmp_path / "pw2"
    pw.write_text("another-one\r\n")
    assert castorctl("user", "list", conf=srv).stdout == "alice\nbob\n"
    longform = castorctl("user", "list", "--long", conf=srv).stdout
    assert re.search(r"^alice password=yes quota_bytes=default", longform, re.M)
    # password from stdin
    castorctl("user", "add", "carol@example.com", "--password-file", "-", conf=srv, input="pw\n")
    assert castorctl("user", "list", conf=srv).stdout.split() == ["alice", "bob", "carol@example.com"]
    fp = password_fp(srv, "alice")
    assert re.fullmatch(r"[0-9a-f]{16}", fp)
    castorctl("user", "passwd", "alice", "--password-file", pw, conf=srv)
    fp2 = password_fp(srv, "alice")
    assert fp2 != fp
    castorctl("user", "passwd", "alice", "--password", "third", conf=srv)
    assert password_fp(srv, "alice") not in (fp, fp2)
    # every user gets an INBOX
    assert re.search(r'^mailbox "INBOX" ', dump(srv, "carol@example.com"), re.M)
    castorctl("user", "del", "carol@example.com", conf=srv)
    assert castorctl("user", "list", conf=srv).stdout.split() == ["alice", "bob"]


def on_terminal(argv, answers, timeout=30):
    """Run argv with a pseudo-terminal as its controlling terminal; answer
    each (prompt, reply) in turn; return (exit code, everything it wrote)."""
    import pty
    import select
    pid, fd = pty.fork()
    if pid == 0:
        try:
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + timeout

    def read_until(marker):
        nonlocal out
        while marker is None or marker not in out:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out waiting for {marker!r}; got {out!r}"
            r, _, _ = select.select([fd], [], [], min(left, 1.0))
            if r:
                try:
                    chunk = os.read(fd, 1024)
                except OSError:
                    chunk = b""
                if not chunk:
                    assert marker is None, f"EOF before {marker!r}; got {out!r}"
                    return
                out += chunk
    try:
        for prompt, reply in answers:
            read_until(prompt)
            os.write(fd, reply)
        read_until(None)
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def test_user_add_prompts_on_a_terminal_with_echo_off(srv):
    argv = [ctl_bin(), "-C", str(srv), "user", "add", "dave"]
    code, out = on_terminal(argv, [(b"Password: ", b"tty-secret-1\n"), (b"Again: ", b"tty-secret-1\n")])
    assert code == 0, out
    assert b"user dave added" in out
    assert b"tty-secret-1" not in out, "the password was echoed"
    fp = password_fp(srv, "dave")
    assert fp != "none"
    # a typo in the second answer changes nothing
    argv = [ctl_bin(), "-C", str(srv), "user", "passwd", "dave"]
    code, out = on_terminal(argv, [(b"Password: ", b"one\n"), (b"Again: ", b"two\n")])
    assert code == EXIT_INVALID and b"do not match" in out, out
    assert password_fp(srv, "dave") == fp


def test_user_errors_change_nothing(tmp_path, srv):
    pw = tmp_path / "pw"
    before = dump(srv)
    cases = [
        (["user", "add", "alice", "--password-file", pw], EXIT_EXISTS, "already exists"),
        (["user", "add", "Bad User", "--password-file", pw], EXIT_INVALID, "invalid user name"),
        (["user", "add", "-x", "--password-file", pw], EXIT_USAGE, "unknown option"),
        (["user", "add", "dave"], EXIT_INVALID, "no password given"),
        (["user", "add", "dave", "--password", "a", "--password-file", pw], EXIT_INVALID, "not both"),
        (["user", "add", "dave", "--password-file", pw.parent / "missing"], EXIT_NOTFOUND, "missing"),
        (["user", "add", "dave", "--password", ""], EXIT_INVALID, "empty password"),
        (["user", "del", "nobody"], EXIT_NOTFOUND, "nobody"),
        (["user", "passwd", "nobody", "--password-file", pw], EXIT_NOTFOUND, "no such user"),
        (["user", "rename", "alice"], EXIT_USAGE, "unknown user command"),
        (["user", "del", "alice", "--password", "x"], EXIT_USAGE, "no password"),
    ]
    for args, code, pattern in cases:
        fails(castorctl(*args, conf=srv, check=False), code, pattern)
    assert dump(srv) == before


# ---------------------------------------------------------------- mailboxes

def list_ids(text):
    """{name: uniqueid} from a `mailbox list` listing (names with blanks are quoted)."""
    out = {}
    for m in re.finditer(r'^("(?:[^"\\]|\\.)*"|\S+) uniqueid=([0-9a-f]{32})', text, re.M):
        name = m.group(1)
        if name.startswith('"'):
            name = re.sub(r'\\(.)', r'\1', name[1:-1])
        out[name] = m.group(2)
    return out


def mailbox_names(conf, user="alice", *pattern):
    return list(list_ids(castorctl("mailbox", "list", user, *pattern, conf=conf).stdout))


def test_mailbox_create_rename_delete_list(srv):
    castorctl("mailbox", "create", "alice", "Work", conf=srv)
    castorctl("mailbox", "create", "alice", "Work/2024", conf=srv)
    castorctl("mailbox", "create", "alice", "Sent", "--special-use", "\\Sent", conf=srv)
    castorctl("mailbox", "create", "alice", "Café ☕", conf=srv)
    assert mailbox_names(srv) == ["Café ☕", "INBOX", "Sent", "Work", "Work/2024"]
    listing = castorctl("mailbox", "list", "alice", conf=srv).stdout
    assert re.search(r"^Sent uniqueid=[0-9a-f]{32} messages=0 .*specialuse=", listing, re.M)
    assert '"Café ☕" uniqueid=' in listing
    ids = list_ids(listing)
    # a pattern
    assert mailbox_names(srv, "alice", "Work/%") == ["Work/2024"]
    # rename takes the children along and keeps uniqueids
    castorctl("mailbox", "rename", "alice", "Work", "Archive/Work", conf=srv)
    new_ids = list_ids(castorctl("mailbox", "list", "alice", conf=srv).stdout)
    assert "Work" not in new_ids and "Work/2024" not in new_ids
    assert new_ids["Archive/Work"] == ids["Work"]
    assert new_ids["Archive/Work/2024"] == ids["Work/2024"]
    castorctl("mailbox", "delete", "alice", "Archive/Work/2024", conf=srv)
    assert "Archive/Work/2024" not in mailbox_names(srv)
    # the deleted mailbox stays as a tombstone in the full dump only
    full = dump(srv, "alice")
    assert re.search(r'^mailbox "Archive/Work/2024" .* deleted_modseq=\d+', full, re.M)
    assert "Archive/Work/2024" not in dump(srv, "alice", "--for-compare")
    # bob is untouched
    assert mailbox_names(srv, "bob") == ["INBOX"]
    # missing parents are created, as IMAP CREATE and RENAME do
    castorctl("mailbox", "create", "bob", "A/B/C", conf=srv)
    assert mailbox_names(srv, "bob") == ["A", "A/B", "A/B/C", "INBOX"]
    castorctl("mailbox", "rename", "bob", "A/B/C", "X/Y/Z", conf=srv)
    assert mailbox_names(srv, "bob") == ["A", "A/B", "INBOX", "X", "X/Y", "X/Y/Z"]


def test_mailbox_errors_change_nothing(srv):
    castorctl("mailbox", "create", "alice", "Work", conf=srv)
    castorctl("mailbox", "create", "alice", "Work/Sub", conf=srv)
    before = dump(srv)
    cases = [
        (["mailbox", "create", "alice", "Work"], EXIT_EXISTS, "exists"),
        (["mailbox", "create", "alice", "inbox"], EXIT_EXISTS, "exists"),
        (["mailbox", "create", "alice", "a//b"], EXIT_INVALID, ""),
        (["mailbox", "create", "alice", "../escape"], EXIT_INVALID, ""),
        (["mailbox", "create", "alice", "a/../b"], EXIT_INVALID, ""),
        (["mailbox", "create", "alice", "trailing/"], EXIT_INVALID, ""),
        (["mailbox", "create", "alice", "ctl\x01char"], EXIT_INVALID, ""),
        (["mailbox", "create", "alice", ""], EXIT_INVALID, ""),
        (["mailbox", "create", "alice", "x", "--special-use", "\\Bogus"], EXIT_INVALID, ""),
        (["mailbox", "create", "nobody", "x"], EXIT_NOTFOUND, "nobody"),
        (["mailbox", "rename", "alice", "Work", "Work/Sub/Deeper"], EXIT_PERM, ""),
        (["mailbox", "rename", "alice", "Work", "Work/New"], EXIT_PERM, ""),
        (["mailbox", "rename", "alice", "Nope", "Other"], EXIT_NOTFOUND, ""),
        (["mailbox", "rename", "alice", "Nope", "New/Parent/Other"], EXIT_NOTFOUND, ""),
        (["mailbox", "rename", "alice", "Work/Sub", "Work"], EXIT_EXISTS, ""),
        (["mailbox", "rename", "alice", "Work", "bad//name"], EXIT_INVALID, ""),
        (["mailbox", "delete", "alice", "INBOX"], EXIT_PERM, "INBOX"),
        (["mailbox", "delete", "alice", "Nope"], EXIT_NOTFOUND, ""),
        (["mailbox", "delete", "nobody", "Work"], EXIT_NOTFOUND, "nobody"),
        (["mailbox", "list", "nobody"], EXIT_NOTFOUND, "nobody"),
        (["mailbox", "move", "alice", "Work"], EXIT_USAGE, "unknown mailbox command"),
    ]
    for args, code, pattern in cases:
        fails(castorctl(*args, conf=srv, check=False), code, pattern)
    assert dump(srv) == before


# ---------------------------------------------------------------- import

FROM_DATE = "Thu Nov 27 00:28:00 2025"
FROM_EPOCH_ISO = "2025-11-27T00:28:00Z"


def gen_message(i, rnd):
    """A raw message (CRLF) and how it is written into an mbox (LF or CRLF,
    with mboxrd quoting)."""
    lines = [f"From: Sender {i} <s{i}@example.com>", "To: alice@example.com",
             f"Subject: message {i}", f"Message-ID: <{i}.{rnd.getrandbits(32)}@example.com>", ""]
    nbody = rnd.randint(1, 30)
    for j in range(nbody):
        r = rnd.random()
        if r < 0.05:
            lines.append(f"From the desk of {i}, line {j}")          # quoted in the mbox
        elif r < 0.08:
            lines.append(f">From already quoted {j}")                # quoted once more
        elif r < 0.12:
            lines.append("")
        else:
            lines.append("x" * rnd.randint(0, 120) + f" {i}.{j}")
    if i % 2000 == 7:
        lines.append("y" * 70000)                                     # big: a blob file
    if i % 13 == 0:
        lines += ["", ""]                                             # ends in blank lines
    raw = "".join(l + "\r\n" for l in lines).encode()
    eol = "\r\n" if i % 7 == 0 else "\n"
    body = []
    for l in lines:
        if re.match(r"^>*From ", l):
            l = ">" + l
        body.append(l + eol)
    mbox = f"From s{i}@example.com {FROM_DATE}{eol}" + "".join(body) + eol
    return raw, mbox.encode()


def test_import_10000_message_mbox(tmp_path, srv):
    import random
    rnd = random.Random(3)
    path = tmp_path / "big.mbox"
    guids = []
    sizes = []
    with open(path, "wb") as f:
        for i in range(10000):
            raw, mb = gen_message(i, rnd)
            guids.append(hashlib.sha1(raw).hexdigest())
            sizes.append(len(raw))
            f.write(mb)
    t0 = time.monotonic()
    cp = castorctl("import", "alice", path, conf=srv)
    secs = time.monotonic() - t0
    assert re.search(r"imported 10000 messages .* into alice/INBOX", cp.stdout), cp.stdout
    assert "import: 10000/10000 messages (100%)" in cp.stderr, cp.stderr
    print(f"imported 10000 messages in {secs:.2f} s")
    chk = castorctl("check", "alice", conf=srv)
    assert chk.stdout.strip() == "alice: clean"
    recs = records(dump(srv, "alice"))
    assert len(recs) == 10000
    assert all(mb == "INBOX" for mb, _ in recs)
    assert [r["uid"] for _, r in recs] == list(range(1, 10001))
    assert [r["guid"] for _, r in recs] == guids
    assert [r["size"] for _, r in recs] == sizes
    assert all(r["internaldate"] == FROM_EPOCH_ISO for _, r in recs)
    assert all(r["flags"] == "" for _, r in recs)
    # dump is stable
    assert dump(srv, "alice") == dump(srv, "alice")
    # the listing agrees
    assert re.search(r"^INBOX .*messages=10000 ", castorctl("mailbox", "list", "alice", conf=srv).stdout, re.M)


def test_import_quoting_and_line_ends(tmp_path, srv):
    mbox = (b"From a@b Mon Jan  5 01:02:03 2015\n"
            b"Subject: q\n\n>From one\n>>From two\nFrom unquoted but not a separator\n\n"
            b"From c@d Tue Jan  6 01:02:03 2015\r\nSubject: crlf\r\n\r\nbody\r\n")
    msgs = [b"Subject: q\r\n\r\nFrom one\r\n>From two\r\nFrom unquoted but not a separator\r\n",
            b"Subject: crlf\r\n\r\nbody\r\n"]
    path = tmp_path / "q.mbox"
    path.write_bytes(mbox)
    castorctl("import", "bob", path, "--mailbox", "Old", conf=srv)
    recs = records(dump(srv, "bob"))
    assert [(mb, r["guid"], r["internaldate"]) for mb, r in recs] == [
        ("Old", hashlib.sha1(msgs[0]).hexdigest(), "2015-01-05T01:02:03Z"),
        ("Old", hashlib.sha1(msgs[1]).hexdigest(), "2015-01-06T01:02:03Z")]
    # --mboxo leaves ">>From" alone
    castorctl("import", "bob", path, "--mailbox", "Older", "--mboxo", conf=srv)
    recs = records(dump(srv, "bob"))
    older = [r["guid"] for mb, r in recs if mb == "Older"]
    assert older[0] == hashlib.sha1(msgs[0].replace(b"\r\n>From two", b"\r\n>>From two")).hexdigest()
    # so does --format mboxo; a bad --format is a usage error that imports nothing
    castorctl("import", "bob", path, "--mailbox", "Oldest", "--format", "mboxo", conf=srv)
    recs = records(dump(srv, "bob"))
    assert [r["guid"] for mb, r in recs if mb == "Oldest"] == older
    cp = castorctl("import", "bob", path, "--mailbox", "Bad", "--format", "mbox", conf=srv, check=False)
    assert cp.returncode == 2 and "--format" in cp.stderr
    assert "Bad" not in mailbox_names(srv, "bob")
    assert castorctl("check", "bob", conf=srv).returncode == 0


def test_import_from_line_after_blank_is_body(tmp_path, srv):
    """A message ends only at a well-formed "From SENDER DATE" line (as mutt
    and Dovecot read mbox): an unquoted "From " sentence after a blank line
    is body text (issue 21 item 4; it used to split the message)."""
    body = b"Subject: one\n\nfirst paragraph\n\nFrom here on, the plan changes.\nend\n"
    path = tmp_path / "b.mbox"
    path.write_bytes(b"From a@b Mon Jan  5 01:02:03 2015\n" + body + b"\n"
                     b"From c@d Tue Jan  6 01:02:03 2015\nSubject: two\n\nx\n")
    castorctl("import", "bob", path, "--mailbox", "Plan", conf=srv)
    recs = [r for mb, r in records(dump(srv, "bob")) if mb == "Plan"]
    assert len(recs) == 2
    assert recs[0]["guid"] == hashlib.sha1(body.replace(b"\n", b"\r\n")).hexdigest()


def test_import_bad_input_changes_nothing(tmp_path, srv):
    castorctl("mailbox", "create", "alice", "Keep", conf=srv)
    before = dump(srv)
    notmbox = tmp_path / "notmbox"
    notmbox.write_text("Subject: I am a single message\n\nnot an mbox\n")
    empty_msg = tmp_path / "empty.mbox"
    empty_msg.write_text(f"From a {FROM_DATE}\nSubject: fine\n\nx\n\nFrom b {FROM_DATE}\n\n"
                         f"From c {FROM_DATE}\nSubject: after\n\ny\n")
    binary = tmp_path / "binary"
    binary.write_bytes(bytes(range(256)) * 100)
    notmaildir = tmp_path / "notmaildir"
    notmaildir.mkdir()
    (notmaildir / "somefile").write_text("x")
    cases = [
        (["import", "alice", notmbox], EXIT_INVALID, r"notmbox: not an mbox: line 1"),
        (["import", "alice", notmbox, "--mailbox", "New"], EXIT_INVALID, "not an mbox"),
        (["import", "alice", empty_msg, "--mailbox", "New"], EXIT_INVALID, r"empty message 2 at line 6"),
        (["import", "alice", binary], EXIT_INVALID, "not an mbox"),
        (["import", "alice", notmaildir], EXIT_INVALID, "not a Maildir"),
        (["import", "alice", tmp_path / "missing.mbox"], EXIT_NOTFOUND, "missing.mbox"),
        (["import", "nobody", notmbox], EXIT_NOTFOUND, "nobody"),
        (["import", "alice", notmbox, "--mailbox", "bad//name"], EXIT_INVALID, ""),
        (["import", "alice", "/dev/null", "--batch", "0"], EXIT_USAGE, "batch"),
        (["import", "alice", "/dev/null"], EXIT_INVALID, "neither an mbox file nor a Maildir"),
    ]
    for args, code, pattern in cases:
        fails(castorctl(*args, conf=srv, check=False), code, pattern)
    assert dump(srv) == before


def test_import_too_big_message_changes_nothing(tmp_path, srv):
    with open(srv, "a") as f:
        f.write("maxmessagesize: 4k\n")
    before = dump(srv)
    path = tmp_path / "big.mbox"
    path.write_text(f"From a {FROM_DATE}\nSubject: small\n\nx\n\nFrom b {FROM_DATE}\nSubject: big\n\n"
                    + ("z" * 99 + "\n") * 50)
    fails(castorctl("import", "alice", path, conf=srv, check=False), EXIT_SPACE,
          r"message 2 \(line 6\) is larger than 4096 bytes")
    assert dump(srv) == before


def test_import_maildir_with_flags(tmp_path, srv):
    md = tmp_path / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (md / sub).mkdir(parents=True)
    (md / "dovecot-keywords").write_text("0 Work\n1 $Label2\n")
    msgs = [  # (subdir, name, body, mtime, expected flags)
        ("cur", "1700000003.M3P1.host:2,S", "Subject: three\n\nseen\n", 1700000003, "\\Seen"),
        ("cur", "1700000001.M1P1.host:2,FRa", "Subject: one\r\n\r\nflagged\r\n", 1700000001,
         "\\Answered \\Flagged Work"),
        ("new", "1700000004.M4P1.host", "Subject: four\n\nnew\n", 1700000004, ""),
        ("cur", "1700000002.M2P1.host:2,DPTb", "Subject: two\n\ndraft\n", 1700000002,
         "\\Deleted \\Draft $Forwarded $Label2"),
        ("tmp", "1700000000.M0P1.host", "Subject: in flight\n\n", 1700000000, None),
    ]
    for sub, name, body, mtime, _ in msgs:
        p = md / sub / name
        p.write_bytes(body.encode())
        os.utime(p, (mtime, mtime))
    cp = castorctl("import", "alice", md, "--mailbox", "Imported", conf=srv)
    assert "imported 4 messages" in cp.stdout
    recs = [r for mb, r in records(dump(srv, "alice")) if mb == "Imported"]
    want = sorted([m for m in msgs if m[4] is not None], key=lambda m: m[3])
    assert len(recs) == 4
    for r, (sub, name, body, mtime, flags) in zip(recs, want):
        raw = body.replace("\r\n", "\n").replace("\n", "\r\n").encode()
        assert r["guid"] == hashlib.sha1(raw).hexdigest()
        assert r["internaldate"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime))
        assert sorted(r["flags"].split()) == sorted(flags.split()), (name, r["flags"])
    assert castorctl("check", "alice", conf=srv).returncode == 0


# ---------------------------------------------------------------- check and dump

def spool(conf, user):
    root = Path(conf).parent
    return root / "spool" / user[0] / user


def test_check_finds_and_repairs_an_orphan_blob(tmp_path, srv):
    path = tmp_path / "one.mbox"
    path.write_text(f"From a {FROM_DATE}\nSubject: big\n\n" + ("b" * 99 + "\n") * 1000)
    castorctl("import", "alice", path, conf=srv)
    assert castorctl("check", "--all", conf=srv).returncode == 0
    blobs = [p for p in (spool(srv, "alice") / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 1, blobs
    orphan_guid = "ab" + "0" * 38
    orphan = spool(srv, "alice") / "blobs" / "ab" / orphan_guid
    orphan.parent.mkdir(exist_ok=True)
    orphan.write_text("left by a crash")
    # left by the server: its run user's, as the spool is (docs/security.md)
    owner = spool(srv, "alice").stat()
    os.chown(orphan.parent, owner.st_uid, owner.st_gid)
    os.chown(orphan, owner.st_uid, owner.st_gid)
    cp = castorctl("check", "alice", conf=srv, check=False)
    assert cp.returncode == EXIT_PROBLEMS, cp.stdout + cp.stderr
    assert re.search(rf"^alice: .*{orphan_guid}", cp.stdout, re.M), cp.stdout
    assert re.search(r"^alice: 1 problem found", cp.stdout, re.M)
    # --all reports it too, and bob is clean
    cp = castorctl("check", "--all", conf=srv, check=False)
    assert cp.returncode == EXIT_PROBLEMS
    assert "bob: clean" in cp.stdout and "checked 2 users: 1 with problems" in cp.stdout
    cp = castorctl("check", "--repair", "alice", conf=srv)
    assert "repaired" in cp.stdout
    assert not orphan.exists()
    assert castorctl("check", "alice", conf=srv).stdout.strip() == "alice: clean"
    # the real message is still there
    assert len(records(dump(srv, "alice"))) == 1


def test_check_reports_a_missing_blob_and_keeps_the_record(tmp_path, srv):
    path = tmp_path / "one.mbox"
    path.write_text(f"From a {FROM_DATE}\nSubject: big\n\n" + ("b" * 99 + "\n") * 1000)
    castorctl("import", "alice", path, conf=srv)
    blob = [p for p in (spool(srv, "alice") / "blobs").rglob("*") if p.is_file()][0]
    blob.unlink()
    cp = castorctl("check", "alice", conf=srv, check=False)
    assert cp.returncode == EXIT_PROBLEMS
    assert blob.name in cp.stdout
    cp = castorctl("check", "--repair", "alice", conf=srv, check=False)
    assert cp.returncode == EXIT_PROBLEMS, "a missing body cannot be repaired"
    assert "left after repair" in cp.stdout
    assert len(records(dump(srv, "alice"))) == 1, "never silently dropped"


def test_check_and_dump_errors(srv):
    fails(castorctl("check", "nobody", conf=srv, check=False), EXIT_NOTFOUND, "nobody")
    fails(castorctl("dump", "nobody", conf=srv, check=False), EXIT_NOTFOUND, "nobody")
    fails(castorctl("check", "alice", "--all", conf=srv, check=False), EXIT_USAGE, "--all")
    fails(castorctl("dump", "Not Valid", conf=srv, check=False), EXIT_INVALID, "invalid user name")


def test_dump_format_and_for_compare(tmp_path, srv):
    path = tmp_path / "m.mbox"
    path.write_text(f"From a {FROM_DATE}\nSubject: one\n\n1\n\nFrom b {FROM_DATE}\nSubject: two\n\n2\n")
    castorctl("import", "alice", path, conf=srv)
    castorctl("mailbox", "create", "alice", "Gone", conf=srv)
    castorctl("mailbox", "delete", "alice", "Gone", conf=srv)
    full = dump(srv, "alice")
    lines = full.splitlines()
    assert re.fullmatch(r"user alice password=[0-9a-f]{16} modseq=\d+ used_bytes=\d+ used_messages=2", lines[0])
    assert re.search(r'^mailbox "INBOX" uniqueid=[0-9a-f]{32} uidvalidity=\d+ uidnext=3 '
                     r'highestmodseq=\d+ checksum=[0-9a-f]{8} specialuse="" createdmodseq=\d+ modseq=\d+$',
                     full, re.M)
    assert re.search(r'^mailbox "Gone" .* deleted_modseq=\d+$', full, re.M)
    cmp_ = dump(srv, "alice", "--for-compare")
    assert "Gone" not in cmp_ and "modseq=" in cmp_ and "used_bytes" not in cmp_
    assert re.fullmatch(r"user alice password=[0-9a-f]{16}", cmp_.splitlines()[0])
    assert len(records(cmp_)) == 2
    # --all is the users' dumps one after the other, in name order
    assert dump(srv, "--all") == dump(srv, "alice") + dump(srv, "bob")
    # two servers with the same users but different histories of deleted
    # mailboxes compare equal except for uniqueids/uidvalidity
    assert dump(srv, "alice", "--for-compare") == dump(srv, "alice", "--for-compare")


@pytest.mark.parametrize("args,code,pattern", [
    (("sync", "r1"), 2, r"usage: sync --allow-deletes"),
    (("sync", "--release", "--allow-deletes", "r1"), 2, r"usage: sync --allow-deletes"),
    (("sync", "--verify", "r1", "alice"), 2, r"usage: sync --allow-deletes"),
    (("sync", "--release", "r1", "bad user"), 2, r"usage: sync --allow-deletes"),
    (("sync", "--release", "nochan"), 4, r"no channel nochan"),
])
def test_sync_bad_arguments_write_nothing(tmp_path, args, code, pattern):
    """castorctl sync: a wrong combination or an unknown channel is a clear
    error, and no marker is left for a sync-client to act on."""
    p1 = free_ports(1)
    root, conf, _ = make_root(tmp_path, "m", "--channel", f"r1=127.0.0.1:{p1}",
                              "--sync-password", "pw")
    cp = castorctl("-C", conf, *args, check=False)
    fails(cp, code, pattern)
    assert not list(root.glob("run/sync-*.allow-deletes")) + list(root.glob("run/sync-*.verify"))
