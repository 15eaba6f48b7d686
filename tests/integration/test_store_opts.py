"""Every program builds its store options from castor.conf the same way
(store_opts_from_conf): `blob_compress: no` holds for lmtpd, imapd,
castorctl import and the replica's syncd alike (issue 21 item 3; before,
only the unit tests called the shared builder and every daemon compressed
regardless).
"""
import imaplib
import smtplib
import sqlite3
from pathlib import Path

from castor_mail import lmtp_send
from conftest import free_ports
from repl_util import SLOW, converged, ctl, pair

PW = "pw-opts"
# compressible text: zstd would save far more than the 64 bytes it needs
BODY = "".join(f"line {i % 7} of a plain text message that repeats itself\r\n" for i in range(60))


def msg(n):
    return (f"From: s@example.org\r\nTo: ann@example.org\r\nSubject: opts {n}\r\n"
            f"Message-ID: <opts-{n}@example.org>\r\n\r\n{BODY}").encode()


def blob_rows(server, user):
    """(size, stored length) of every body kept inside the user's user.db."""
    db = Path(server.root) / "spool" / user[0] / user / "user.db"
    c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return c.execute("SELECT size, length(data) FROM blobs WHERE data IS NOT NULL").fetchall()
    finally:
        c.close()


def test_blob_compress_off_is_obeyed_everywhere(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path, conf_extra="blob_compress: no",
                   replica_extra="blob_compress: no", start=False)
    base = free_ports(2)
    m.add_services(f'  lmtp cmd="lmtpd" listen="127.0.0.1:{base}"\n'
                   f'  imap cmd="imapd" listen="127.0.0.1:{base + 1}"', section="SERVICES")
    r.start()
    m.start()
    ctl(m.conf, "-q", "user", "add", "ann", "--password", PW)

    c = smtplib.LMTP("127.0.0.1", base, timeout=20 * SLOW)
    c.ehlo("mta.test")
    for n in range(3):                                   # lmtpd
        assert lmtp_send(c, "s@example.org", ["ann"], msg(n))[0][0] == 250
    c.quit()
    im = imaplib.IMAP4("127.0.0.1", base + 1, timeout=20 * SLOW)
    im.login("ann", PW)
    assert im.append("INBOX", None, None, msg(10))[0] == "OK"    # imapd
    im.logout()
    mbox = tmp_path / "in.mbox"
    mbox.write_bytes(b"".join(b"From s@example.org Thu Nov 26 12:00:00 2026\n"
                              + msg(20 + n).replace(b"\r\n", b"\n") + b"\n" for n in range(2)))
    ctl(m.conf, "-q", "import", "ann", str(mbox))                 # castorctl
    converged(m, r)                                               # syncd

    for server in (m, r):
        rows = blob_rows(server, "ann")
        assert len(rows) == 6, (server.name, rows)
        assert all(size == stored for size, stored in rows), \
            f"{server.name}: bodies compressed although blob_compress: no: {rows}"


def test_blob_compress_default_compresses(procs, tmp_path):
    """The control: without the setting the same mail is compressed on both
    sides, so the test above shows the setting, not the message."""
    m, (r,) = pair(procs, tmp_path, start=False)
    base = free_ports(1)
    m.add_services(f'  lmtp cmd="lmtpd" listen="127.0.0.1:{base}"', section="SERVICES")
    r.start()
    m.start()
    ctl(m.conf, "-q", "user", "add", "ann", "--password", PW)
    c = smtplib.LMTP("127.0.0.1", base, timeout=20 * SLOW)
    c.ehlo("mta.test")
    assert lmtp_send(c, "s@example.org", ["ann"], msg(1))[0][0] == 250
    c.quit()
    converged(m, r)
    for server in (m, r):
        rows = blob_rows(server, "ann")
        assert len(rows) == 1 and rows[0][1] < rows[0][0] - 64, (server.name, rows)
