"""imapd with a real third-party client: mbsync (isync) pulls a 2,000-message
account in 10 folders into a Maildir; a second run changes nothing; flags
set and messages deleted in the Maildir reach the server; a message written
into the Maildir appears on the server with the same bytes (mbsync stores
LF line ends locally, sends CRLF as IMAP requires, and marks what it
propagates with an X-TUID header line)."""
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from imap_helpers import PASSWORD, ImapServer, mbox_file

MBSYNC = shutil.which("mbsync")
FOLDERS = ["INBOX"] + [f"Folder{i}" for i in range(1, 10)]
PER_FOLDER = 200


def message(folder, i):
    body = "\n".join(f"line {k} of message {i} in {folder}: lorem ipsum dolor sit amet" for k in range(30))
    return (f"From: Sender {i} <s{i}@example.com>\nTo: alice@example.com\n"
            f"Subject: {folder} message {i}\nDate: Mon, 3 Mar 2025 10:{i % 60:02d}:00 +0000\n"
            f"Message-ID: <{folder}.{i}@example.com>\n\n{body}\n").encode()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    if MBSYNC is None:
        pytest.skip("mbsync (isync) is not installed (scripts/deps.sh installs it)")
    tmp = tmp_path_factory.mktemp("mbsync")
    s = ImapServer(tmp, users=("alice",))
    for f in FOLDERS:
        src = tmp / f"{f}.mbox"
        mbox_file(src, [message(f, i) for i in range(PER_FOLDER)])
        s.ctl("-q", "import", "alice", src, "--mailbox", f)
    maildir = tmp / "Mail"
    maildir.mkdir()
    rc = tmp / "mbsyncrc"
    # FSync no: the client's own fsync per Maildir file is not what we test
    rc.write_text(f"""FSync no

IMAPAccount castor
Host 127.0.0.1
Port {s.port}
User alice
Pass "{PASSWORD}"
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account castor

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel all
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
SyncState *
""")
    yield s, maildir, rc
    s.stop()


def mbsync(rc, home):
    t0 = time.monotonic()
    cp = subprocess.run([MBSYNC, "-c", str(rc), "-a"], capture_output=True, text=True, timeout=600,
                        env={**os.environ, "HOME": str(home)})
    took = time.monotonic() - t0
    assert cp.returncode == 0, f"mbsync failed ({cp.returncode}):\n{cp.stdout}\n{cp.stderr}"
    return cp, took


def maildir_files(maildir):
    out = {}
    for p in sorted(maildir.rglob("*")):
        if p.is_file() and p.parent.name in ("cur", "new"):
            out[str(p.relative_to(maildir))] = p
    return out


def msgid(path):
    m = re.search(rb"^Message-ID: (<[^>]+>)", path.read_bytes(), re.M | re.I)
    return m.group(1).decode() if m else None


def strip_tuid(data):
    """mbsync marks the copies it stores with an X-TUID: header line."""
    return re.sub(rb"^X-TUID: [^\n]*\n", b"", data, count=1, flags=re.M)


def status_all(c):
    u, t = c.ok('LIST "" "*" RETURN (STATUS (MESSAGES HIGHESTMODSEQ UIDNEXT))')
    return sorted(l for l in u if l.startswith(b"* STATUS"))


def test_mbsync_end_to_end(env):
    s, maildir, rc = env
    home = maildir.parent
    # 1. the first run pulls everything
    cp, took = mbsync(rc, home)
    files = maildir_files(maildir)
    per = {}
    for rel in files:
        per.setdefault(rel.split("/")[0], []).append(rel)
    for f in FOLDERS:
        assert len(per.get(f, [])) == PER_FOLDER, (f, len(per.get(f, [])))
    assert sum(len(v) for k, v in per.items() if k in FOLDERS) == 2000
    # the bytes are the server's (with LF line ends in the Maildir)
    c = s.client()
    c.ok("EXAMINE Folder3")
    u, t = c.ok("UID FETCH 17 BODY.PEEK[]")
    server_bytes = u[0].split(b"}\r\n", 1)[1].rsplit(b")", 1)[0]
    local = [p for p in (maildir / "Folder3").rglob("*") if p.is_file() and msgid(p) == "<Folder3.16@example.com>"]
    assert len(local) == 1
    assert strip_tuid(local[0].read_bytes()).replace(b"\n", b"\r\n") == server_bytes
    before = status_all(c)
    c.ok("LOGOUT")

    # 2. a second run is a no-op on both sides
    cp, took2 = mbsync(rc, home)
    assert maildir_files(maildir).keys() == files.keys()
    c = s.client()
    assert status_all(c) == before
    c.ok("LOGOUT")

    # 3. flags and deletions made in the Maildir go back to the server
    inbox = sorted(p for p in maildir_files(maildir).values() if p.parts[-3] == "INBOX")
    flagged = inbox[:5]
    deleted = inbox[5:8]
    flagged_ids = {msgid(p) for p in flagged}
    deleted_ids = {msgid(p) for p in deleted}
    for p in flagged:
        base, _, fl = p.name.partition(":2,")
        p.rename(p.parent.parent / "cur" / f"{base}:2,{''.join(sorted(set(fl + 'FS')))}")
    for p in deleted:
        p.unlink()
    # 4. a message written into the Maildir is uploaded
    new = (b"From: Local <local@example.com>\nTo: alice@example.com\nSubject: written locally\n"
           b"Message-ID: <local.1@example.com>\n\nhello from the Maildir\n")
    (maildir / "Folder1" / "new" / "1700000000.M1P1.local").write_bytes(new)
    cp, took3 = mbsync(rc, home)

    c = s.client()
    c.ok("EXAMINE INBOX")
    u, t = c.ok("UID SEARCH FLAGGED")
    flagged_uids = u[0].split()[2:]
    assert len(flagged_uids) == 5
    got = set()
    for uid in flagged_uids:
        u, t = c.ok(f"UID FETCH {uid.decode()} (FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        assert b"\\Seen" in u[0]
        got.add(re.search(rb"<[^>]+>", u[0]).group(0).decode())
    assert got == flagged_ids
    u, t = c.ok("STATUS INBOX (MESSAGES)")
    assert b"MESSAGES 197" in u[0]
    for mid in deleted_ids:
        u, t = c.ok(f"SEARCH HEADER Message-ID {mid}")
        assert u == [b"* SEARCH"], (mid, u)
    c.ok("EXAMINE Folder1")
    u, t = c.ok("SEARCH HEADER Message-ID <local.1@example.com>")
    seq = u[0].split()[2].decode()
    u, t = c.ok(f"FETCH {seq} BODY.PEEK[]")
    server_bytes = u[0].split(b"}\r\n", 1)[1].rsplit(b")", 1)[0]
    # what mbsync sent (our file, CRLF, plus the X-TUID line it adds to
    # every message it propagates) is what the server keeps
    assert re.search(rb"^X-TUID: \S+\r$", server_bytes, re.M)
    assert strip_tuid(server_bytes.replace(b"\r\n", b"\n")).replace(b"\n", b"\r\n") == \
        new.replace(b"\n", b"\r\n")
    c.ok("LOGOUT")
    print(f"mbsync: first run {took:.1f}s, no-op run {took2:.1f}s, push run {took3:.1f}s")
