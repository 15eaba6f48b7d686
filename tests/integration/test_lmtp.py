"""lmtpd (RFC 2033) driven by Python's smtplib.LMTP and raw sockets against a
castord started on a `castorctl init` root: every command and reply code,
per-recipient replies, +detail, virtual domains, size and quota limits,
PIPELINING, CHUNKING, STARTTLS, store failures and what is stored, byte for
byte (the GUID castorctl dump shows is the SHA-1 of the stored message)."""
import os
import re
import smtplib
import socket
import ssl

import pytest

from castor_mail import MailServer, Raw, fresh, lmtp_send, no_verify_ctx, sha1
from conftest import SLOW, wait_for

MSG = (b"From: Sender <sender@example.org>\r\nTo: alice@example.org\r\nSubject: test\r\n"
       b"Message-ID: <m1@example.org>\r\n\r\nHello Alice.\r\n")


@pytest.fixture
def srv(procs, tmp_path):
    return MailServer(procs, tmp_path)


def stored(srv, user, mailbox="INBOX"):
    """The stored messages of a mailbox as (guid, size)."""
    return [(r["guid"], r["size"]) for r in srv.dump(user).get(mailbox, [])]


def prefix_of(msg):
    """Our added lines: Return-Path: and the Received: field (with folds)."""
    m = re.match(rb"(Return-Path: [^\r\n]*\r\nReceived: [^\r\n]*\r\n(?:\t[^\r\n]*\r\n)*)", msg)
    assert m, msg[:300]
    return m.group(1)


# ---------------------------------------------------------------------------
# greeting, LHLO, simple commands

def test_greeting_and_lhlo_capabilities(srv):
    r = Raw(srv.lmtp_port)
    code, lines = r.reply()
    assert code == 220 and "LMTP" in lines[0] and "mx.test" in lines[0]
    r.send("LHLO client.test\r\n")
    code, lines = r.reply()
    assert code == 250
    assert lines[0] == "250-mx.test"
    caps = {ln[4:].split()[0] for ln in lines[1:]}
    assert {"PIPELINING", "ENHANCEDSTATUSCODES", "8BITMIME", "SIZE", "CHUNKING", "STARTTLS"} <= caps
    size = [ln for ln in lines if ln[4:].startswith("SIZE ")]
    assert int(size[0].split()[1]) > 100 * 1024 * 1024   # default: the store's limit
    r.send("QUIT\r\n")
    code, lines = r.reply()
    assert code == 221 and lines[0].startswith("221 2.0.0")
    assert r.closed()


def test_helo_and_ehlo_are_not_lmtp(srv):
    r = Raw(srv.lmtp_port)
    r.reply()
    for cmd in ("HELO client.test", "EHLO client.test"):
        r.send(cmd + "\r\n")
        code, lines = r.reply()
        assert code == 500 and lines[0].startswith("500 5.5.1"), lines
    r.send("LHLO\r\n")
    assert r.reply()[1][0].startswith("501 5.5.4")


def test_simple_commands(srv):
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send("LHLO c\r\n")
    r.reply()
    expect = [
        ("NOOP", "250 2.0.0"),
        ("NOOP anything at all", "250 2.0.0"),
        ("RSET", "250 2.0.0"),
        ("RSET now", "501 5.5.4"),
        ("VRFY alice", "252 2.5.2"),
        ("VRFY", "501 5.5.4"),
        ("EXPN staff", "502 5.5.1"),
        ("HELP", "214 2.0.0"),
        ("FROB", "500 5.5.2"),
        ("", "500 5.5.2"),
        ("DATA now", "501 5.5.4"),
        ("QUIT now", "501 5.5.4"),
    ]
    for cmd, want in expect:
        r.send(cmd + "\r\n")
        code, lines = r.reply()
        assert lines[-1].startswith(want), (cmd, lines)
    r.send("NOOP " + "x" * 5000 + "\r\nNOOP\r\n")
    assert r.reply()[1][0].startswith("500 5.5.6")   # line too long, and we are still in step
    assert r.reply()[1][0].startswith("250 2.0.0")


def test_bad_sequence(srv):
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send("MAIL FROM:<a@b.c>\r\n")
    assert r.reply()[1][0].startswith("503 5.5.1")     # LHLO first
    r.send("LHLO c\r\n")
    r.reply()
    for cmd in ("RCPT TO:<alice@x.y>", "DATA", "BDAT 0 LAST"):
        r.send(cmd + "\r\n")
        assert r.reply()[1][0].startswith("503 5.5.1"), cmd
    r.send("MAIL FROM:<a@b.c>\r\n")
    assert r.reply()[0] == 250
    r.send("MAIL FROM:<a@b.c>\r\n")
    assert r.reply()[1][0].startswith("503 5.5.1")     # nested
    r.send("RCPT TO:<nobody@x.y>\r\nDATA\r\n")
    assert r.reply()[1][0].startswith("550 5.1.1")
    assert r.reply()[1][0].startswith("503 5.5.1")     # no valid recipients
    r.send("RSET\r\nRCPT TO:<alice@x.y>\r\n")
    assert r.reply()[0] == 250
    assert r.reply()[1][0].startswith("503 5.5.1")     # RSET ended the transaction


def test_syntax_errors(srv):
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send("LHLO c\r\n")
    r.reply()
    cases = [
        ("MAIL FROM:a@b.c", "501 5.1.7"),
        ("MAIL FROM:<a b@c>", "501 5.1.7"),
        ("MAIL FROM:<a@b.c> FOO=1", "555 5.5.4"),
        ("MAIL FROM:<a@b.c> BODY=BINARYMIME", "555 5.5.4"),
        ("MAIL FROM:<a@b.c> SIZE=abc", "501 5.5.4"),
        ("MAIL TO:<a@b.c>", "501 5.5.4"),
        ("MAIL FROM:<a@b.c> SIZE=10 BODY=8BITMIME", "250 2.1.0"),
        ("RCPT TO:<>", "501 5.1.3"),
        ("RCPT TO:alice", "501 5.1.3"),
        ("RCPT TO:<alice@x.y> NOTIFY=NEVER", "555 5.5.4"),
        ("RCPT FROM:<alice@x.y>", "501 5.5.4"),
        ("RCPT TO:<alice@x..y>", "501 5.1.3"),
        ('RCPT TO:<"alice"@x.y>', "250 2.1.5"),
        ("RCPT TO:<@relay.example:bob@x.y>", "250 2.1.5"),   # source route ignored
        ("rcpt to: <ALICE@X.Y>", "250 2.1.5"),                # case, blank after colon
    ]
    for cmd, want in cases:
        r.send(cmd + "\r\n")
        code, lines = r.reply()
        assert lines[0].startswith(want), (cmd, lines)


def test_mail_from_null_sender_and_return_path(srv):
    c = srv.lmtp()
    assert lmtp_send(c, "", ["alice"], MSG)[0][0] == 250
    c.quit()
    msg = srv.fetch_all("alice")[0]
    assert msg.startswith(b"Return-Path: <>\r\nReceived: from client.test ([127.0.0.1])\r\n")


# ---------------------------------------------------------------------------
# delivery

def test_deliver_headers_and_exact_bytes(srv):
    c = srv.lmtp("lhlo.name.test")
    rep = lmtp_send(c, "sender@example.org", ["alice@example.org"], MSG)
    assert rep[0][0] == 250 and rep[0][1].startswith("2.0.0 <alice@example.org>"), rep
    c.quit()
    msg = srv.fetch_all("alice")[0]
    pre = prefix_of(msg)
    assert msg == pre + MSG
    lines = pre.decode().split("\r\n")
    assert lines[0] == "Return-Path: <sender@example.org>"
    assert lines[1] == "Received: from lhlo.name.test ([127.0.0.1])"
    assert re.match(r"\tby mx\.test \(Castor\) with LMTP id \S+$", lines[2]), lines
    assert re.match(r"\tfor <alice@example\.org>; \w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}$",
                    lines[3]), lines
    # the store's GUID is the SHA-1 of what it holds: byte-exact
    [(guid, size)] = stored(srv, "alice")
    assert guid == sha1(msg) and size == len(msg)


def test_transaction_ids_never_repeat(srv):
    """Each delivery's id (Received: ... id X, the log's id=) is its own,
    even over several connections to one lmtpd within one second (issue 21
    item 4: seconds + pid + a per-connection counter repeated)."""
    for n in range(4):
        c = srv.lmtp("lhlo.name.test")
        assert lmtp_send(c, "s@example.org", ["alice@example.org"],
                         MSG.replace(b"<m1@", b"<m1-%d@" % n, 1))[0][0] == 250
        c.quit()
    ids = []
    for msg in srv.fetch_all("alice"):
        m = re.search(rb"\tby mx\.test \(Castor\) with LMTP id (\S+)\r\n", msg)
        assert m, msg[:300]
        ids.append(m.group(1))
    assert len(ids) == 4 and len(set(ids)) == 4, ids


def test_message_bytes_as_received(srv):
    """Dot-stuffing is undone; long lines, bare CR, bare LF, NUL and 8-bit
    bytes are kept exactly; '.' after a bare LF is not an end marker."""
    body = (b"Subject: raw\r\n\r\n"
            b"..leading dot\r\n"
            b"...two dots\r\n"
            b"." + b"x" * 3000 + b"\r\n"
            b"bare\nLF then\n.\nnot the end\r\n"
            b"bare\rCR\r\n"
            b"nul\x00byte and 8bit \xc3\xa9\xff\r\n"
            b".\r\r\n"
            b"end\r\n")
    wire = body  # already stuffed as a client would send it
    unstuffed = (b"Subject: raw\r\n\r\n"
                 b".leading dot\r\n"
                 b"..two dots\r\n"
                 + b"x" * 3000 + b"\r\n"
                 b"bare\nLF then\n.\nnot the end\r\n"
                 b"bare\rCR\r\n"
                 b"nul\x00byte and 8bit \xc3\xa9\xff\r\n"
                 b"\r\r\n"
                 b"end\r\n")
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send("LHLO c\r\nMAIL FROM:<s@x.y> BODY=8BITMIME\r\nRCPT TO:<alice>\r\nDATA\r\n")
    assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    r.send(wire + b".\r\n")
    code, lines = r.reply()
    assert code == 250, lines
    [(guid, size)] = stored(srv, "alice")
    top = srv.fetch_headers("alice")[0]
    pre = prefix_of(top)
    assert guid == sha1(pre + unstuffed), "stored bytes differ from what was sent"
    assert size == len(pre) + len(unstuffed)


def test_empty_message(srv):
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send("LHLO c\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nDATA\r\n")
    assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
    r.send(".\r\n")
    assert r.reply()[0] == 250
    assert srv.count("alice") == 1


def test_multi_recipient_per_recipient_replies(srv):
    srv.ctl("user", "add", "carol", "--password", "x")
    c = srv.lmtp()
    rep = lmtp_send(c, "s@example.org", ["alice@example.org", "nobody@example.org", "bob@example.org",
                                         "alice+nosuchbox@example.org", "carol@example.org"], MSG)
    codes = [x[0] for x in rep]
    assert codes == [250, 550, 250, 250, 250], rep
    assert rep[1][1].startswith("5.1.1 <nobody@example.org>")
    # a second transaction on the same connection works (replies were all read)
    assert lmtp_send(c, "s@example.org", ["bob"], fresh(MSG))[0][0] == 250
    c.quit()
    # alice was named twice, both to INBOX: stored once
    assert srv.count("alice") == 1
    assert srv.count("bob") == 2
    assert srv.count("carol") == 1
    # recipients of different users share the message bytes except nothing: same GUID
    assert stored(srv, "alice")[0][0] == stored(srv, "carol")[0][0]


def test_unknown_and_invalid_users(srv):
    c = srv.lmtp()
    for rcpt in ("nobody@example.org", "Bad!Name@example.org", "x" * 100 + "@example.org", "+detail@x.y"):
        code, resp = c.rcpt(rcpt) if c.mail("s@x.y")[0] == 250 else (0, b"")
        assert code == 550 and resp.startswith(b"5.1.1"), (rcpt, code, resp)
        c.rset()
    c.quit()


def test_detail_delivery(srv):
    srv.ctl("mailbox", "create", "alice", "Lists")
    srv.ctl("mailbox", "create", "alice", "Work")
    srv.ctl("mailbox", "create", "alice", "Work/Reports")
    c = srv.lmtp()
    for rcpt in ("alice+Lists@x.y", "alice+lists@x.y", "alice+REPORTS@x.y", "alice+Work/Reports@x.y",
                 "alice+work@x.y", "alice+nosuch@x.y", "alice+@x.y", '"alice+../etc"@x.y'):
        assert lmtp_send(c, "s@x.y", [rcpt], MSG.replace(b"m1@", rcpt.encode() + b"@"))[0][0] == 250, rcpt
    c.quit()
    d = srv.dump("alice")
    assert len(d["Lists"]) == 2
    assert len(d["Work/Reports"]) == 2
    assert len(d["Work"]) == 1
    assert len(d["INBOX"]) == 3


def test_one_user_several_mailboxes_one_transaction(srv):
    srv.ctl("mailbox", "create", "alice", "Lists")
    c = srv.lmtp()
    rep = lmtp_send(c, "s@x.y", ["alice", "alice+lists", "bob", "alice+Lists"], MSG)
    assert [x[0] for x in rep] == [250, 250, 250, 250], rep
    c.quit()
    d = srv.dump("alice")
    assert len(d["INBOX"]) == 1 and len(d["Lists"]) == 1


def test_virtdomains_off_drops_domain(srv):
    c = srv.lmtp()
    assert lmtp_send(c, "s@x.y", ["ALICE@Example.COM", "alice@other.example"], MSG)[0][0] == 250
    c.quit()
    assert srv.count("alice") == 1


def test_virtdomains_on(procs, tmp_path):
    srv = MailServer(procs, tmp_path, users=(("alice@example.com", "pw"), ("alice", "pw2")),
                     conf="virtdomains: on\n")
    c = srv.lmtp()
    rep = lmtp_send(c, "s@x.y", ["alice@example.com", "Alice+x@EXAMPLE.com", "alice@other.example", "alice"],
                    MSG)
    assert [x[0] for x in rep] == [250, 250, 550, 250], rep
    c.quit()
    assert srv.count("alice@example.com") == 1
    assert srv.count("alice") == 1


# ---------------------------------------------------------------------------
# limits

def test_size_limit(procs, tmp_path):
    srv = MailServer(procs, tmp_path, conf="maxmessagesize: 10k\n")
    c = srv.lmtp()
    assert c.esmtp_features["size"] == "10240"
    code, resp = c.mail("s@x.y", ["SIZE=20000"])
    assert code == 552 and resp.startswith(b"5.3.4"), resp
    big = MSG + b"x" * 20000 + b"\r\n"
    rep = lmtp_send(c, "s@x.y", ["alice", "bob"], big)
    assert [x[0] for x in rep] == [552, 552], rep
    assert all(x[1].startswith("5.3.4") for x in rep)
    # exactly at the limit is fine; one byte more is not
    body = MSG + b"y" * (10240 - len(MSG) - 2) + b"\r\n"
    assert len(body) == 10240
    assert lmtp_send(c, "s@x.y", ["alice"], body)[0][0] == 250
    assert lmtp_send(c, "s@x.y", ["alice"], fresh(body)[:10240] + b"y\r\n")[0][0] == 552
    c.quit()
    assert srv.count("alice") == 1 and srv.count("bob") == 0


def test_quota_bytes(procs, tmp_path):
    srv = MailServer(procs, tmp_path, conf="quota_default_bytes: 3k\n")
    c = srv.lmtp()
    msg = MSG + b"z" * 1000 + b"\r\n"
    assert lmtp_send(c, "s@x.y", ["alice"], fresh(msg))[0][0] == 250
    # declared size would not fit: refused at RCPT
    code, _ = c.mail("s@x.y", ["SIZE=5000"])
    assert code == 250
    code, resp = c.rcpt("alice")
    assert code == 452 and resp.startswith(b"4.2.2"), resp
    c.rset()
    # fits at RCPT, not at DATA: per-recipient 452 4.2.2, the other one is delivered
    assert lmtp_send(c, "s@x.y", ["alice"], fresh(msg))[0][0] == 250
    rep = lmtp_send(c, "s@x.y", ["alice", "bob"], fresh(msg))
    assert [x[0] for x in rep] == [452, 250], rep
    assert rep[0][1].startswith("4.2.2")
    c.quit()
    assert srv.count("alice") == 2 and srv.count("bob") == 1


def test_quota_messages(procs, tmp_path):
    srv = MailServer(procs, tmp_path, conf="quota_default_messages: 2\n")
    c = srv.lmtp()
    for _ in range(2):
        assert lmtp_send(c, "s@x.y", ["alice"], fresh(MSG))[0][0] == 250
    rep = lmtp_send(c, "s@x.y", ["alice", "bob"], fresh(MSG))
    assert rep[0][0] == 452 and rep[0][1].startswith("4.2.2"), rep
    assert rep[1][0] == 250
    c.quit()
    assert srv.count("alice") == 2


def test_too_many_recipients(srv):
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send("LHLO c\r\nMAIL FROM:<s@x.y>\r\n" + "RCPT TO:<alice>\r\n" * 1001)
    r.reply()
    r.reply()
    codes = [r.reply()[0] for _ in range(1001)]
    assert codes[:1000] == [250] * 1000 and codes[1000] == 452


# ---------------------------------------------------------------------------
# PIPELINING, CHUNKING, STARTTLS

def test_pipelining_everything_in_one_write(srv):
    r = Raw(srv.lmtp_port)
    r.reply()
    msg2 = MSG.replace(b"m1@", b"m2@")
    # two whole transactions and QUIT in one write, commands behind the end marker
    r.send(b"LHLO c\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nRCPT TO:<nobody>\r\nRCPT TO:<bob>\r\nDATA\r\n"
           + MSG + b".\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<bob>\r\nDATA\r\n" + msg2 + b".\r\nQUIT\r\n")
    codes = [r.reply()[0] for _ in range(12)]
    assert codes == [250, 250, 250, 550, 250, 354, 250, 250, 250, 250, 354, 250], codes
    assert r.reply()[0] == 221
    assert srv.count("alice") == 1 and srv.count("bob") == 2


def test_pipelined_data_split_across_writes(srv):
    """The end marker and the next command arrive split over many writes."""
    r = Raw(srv.lmtp_port)
    r.reply()
    data = (b"LHLO c\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nDATA\r\n" + MSG +
            b".\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nDATA\r\n" + MSG.replace(b"m1", b"m2") + b".\r\nNOOP\r\n")
    for i in range(0, len(data), 3):
        r.send(data[i:i + 3])
        r.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    codes = [r.reply()[0] for _ in range(10)]
    assert codes == [250, 250, 250, 354, 250, 250, 250, 354, 250, 250], codes
    msgs = srv.fetch_all("alice")
    assert [m[len(prefix_of(m)):] for m in msgs] == [MSG, MSG.replace(b"m1", b"m2")]


def test_bdat(srv):
    r = Raw(srv.lmtp_port)
    r.reply()
    part1 = b"Subject: chunked\r\n\r\n.not stuffed\r\n"
    part2 = b"second chunk\r\n.\r\nstill message\r\n"
    r.send(b"LHLO c\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\n")
    assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 250]
    r.send(b"BDAT %d\r\n" % len(part1) + part1 + b"BDAT %d LAST\r\n" % len(part2) + part2)
    code, lines = r.reply()
    assert code == 250 and lines[0].startswith("250 2.0.0"), lines
    assert [r.reply()[0] for _ in range(2)] == [250, 250]    # per recipient after LAST
    # BDAT 0 LAST ends an empty message; DATA after BDAT is refused
    r.send(b"MAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nBDAT 5\r\nhelloDATA\r\nBDAT 0 LAST\r\n")
    assert [r.reply()[0] for _ in range(5)] == [250, 250, 250, 503, 250]
    # BDAT without a transaction: refused, and its bytes are skipped
    r.send(b"BDAT 12\r\nNOOP\r\nNOOP\r\nNOOP\r\n")
    assert r.reply()[1][0].startswith("503 5.5.1")
    assert r.reply()[0] == 250
    msg = srv.fetch_all("alice")[0]
    assert msg[len(prefix_of(msg)):] == part1 + part2
    # byte-exact for both recipients (two recipients: one Received: without "for")
    assert stored(srv, "bob")[0][0] == sha1(prefix_of(msg) + part1 + part2)
    assert stored(srv, "alice")[0][0] == sha1(prefix_of(msg) + part1 + part2)
    assert srv.count("alice") == 2
    # a BDAT whose size we cannot read puts us out of step: the server says so and closes
    r.send(b"BDAT x LAST\r\n")
    assert r.reply()[1][0].startswith("501 5.5.4")
    assert r.reply()[1][0].startswith("421")
    assert r.closed()


def test_bdat_size_limit(procs, tmp_path):
    srv = MailServer(procs, tmp_path, conf="maxmessagesize: 1k\n")
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send(b"LHLO c\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\n")
    [r.reply() for _ in range(4)]
    r.send(b"BDAT 800\r\n" + b"a" * 800 + b"BDAT 800\r\n" + b"b" * 800 + b"BDAT 10 LAST\r\n" + b"c" * 10
           + b"NOOP\r\n")
    assert r.reply()[0] == 250
    assert r.reply()[1][0].startswith("552 5.3.4")
    assert [r.reply()[1][0][:9] for _ in range(2)] == ["552 5.3.4"] * 2
    assert r.reply()[0] == 250     # NOOP: still in step
    assert srv.count("alice") == 0 and srv.count("bob") == 0


def test_starttls(srv):
    c = smtplib.LMTP("127.0.0.1", srv.lmtp_port, timeout=20 * SLOW)
    c.ehlo("c")
    assert c.has_extn("starttls")
    code, _ = c.starttls(context=no_verify_ctx())
    assert code == 220
    c.ehlo("c")
    assert not c.has_extn("starttls")
    assert lmtp_send(c, "s@x.y", ["alice"], MSG)[0][0] == 250
    c.quit()
    msg = srv.fetch_all("alice")[0]
    assert b"with LMTPS id" in prefix_of(msg)


def test_starttls_discards_pipelined_plaintext(srv):
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send("LHLO c\r\n")
    r.reply()
    r.send("STARTTLS\r\nMAIL FROM:<evil@x.y>\r\n")
    assert r.reply()[0] == 220
    r.starttls()
    r.send("MAIL FROM:<s@x.y>\r\n")
    assert r.reply()[1][0].startswith("503 5.5.1")   # LHLO again first, and no injected MAIL
    r.send("LHLO c\r\nMAIL FROM:<s@x.y>\r\nSTARTTLS\r\n")
    r.reply()
    assert r.reply()[0] == 250
    assert r.reply()[0] == 503                       # no second STARTTLS


def test_implicit_tls_listener(procs, tmp_path):
    port = None
    srv = MailServer(procs, tmp_path, start=False)
    from conftest import free_ports
    port = free_ports(1)
    svc = (srv.root / "services.conf").read_text()
    svc = svc.replace("SERVICES {\n", f'SERVICES {{\n  lmtps  cmd="lmtpd" listen="127.0.0.1:{port}" tls=yes\n', 1)
    (srv.root / "services.conf").write_text(svc)
    srv.start()
    s = no_verify_ctx().wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10 * SLOW))
    f = s.makefile("rb")
    assert f.readline().startswith(b"220 ")
    s.sendall(b"LHLO c\r\n")
    lines = []
    while True:
        ln = f.readline()
        lines.append(ln)
        if ln[3:4] == b" ":
            break
    assert not any(b"STARTTLS" in ln for ln in lines)
    s.sendall(b"MAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nDATA\r\n")
    assert [f.readline()[:3] for _ in range(3)] == [b"250", b"250", b"354"]
    s.sendall(MSG + b".\r\nQUIT\r\n")
    assert f.readline()[:3] == b"250"
    assert f.readline()[:3] == b"221"
    assert b"with LMTPS" in prefix_of(srv.fetch_all("alice")[0])


def test_unix_socket_listener(procs, tmp_path):
    """Cyrus's usual "lmtpunix": LMTP on a unix-domain socket."""
    sock = tmp_path / "lmtp.sock"
    srv = MailServer(procs, tmp_path, services_extra=f'  lmtpunix cmd="lmtpd" listen="{sock}"\n')
    c = smtplib.LMTP(str(sock), timeout=20 * SLOW)
    c.ehlo("local")
    assert lmtp_send(c, "s@x.y", ["alice"], MSG)[0][0] == 250
    c.quit()
    pre = prefix_of(srv.fetch_all("alice")[0])
    assert b"Received: from local (localhost)\r\n" in pre, pre


# ---------------------------------------------------------------------------
# store trouble, replica, concurrency

def test_store_failure_is_451_and_nothing_stored(procs, tmp_path):
    srv = MailServer(procs, tmp_path, env={"CASTOR_FAILPOINTS": "store.append.before_commit=error"})
    c = srv.lmtp()
    rep = lmtp_send(c, "s@x.y", ["alice", "bob"], MSG)
    assert [x[0] for x in rep] == [451, 451], rep
    assert all(x[1].startswith("4.3.0") for x in rep)
    c.quit()
    d = srv.dump("alice")
    assert d["INBOX"] == []
    assert srv.count("bob") == 0
    srv.ctl("check", "alice")   # nothing half-written
    assert re.search(r"delivery failed .*user=alice .*reply=\"?451 4\.3\.0", srv.log())


def test_blob_file_failure_nothing_stored(procs, tmp_path):
    """A large body (a blob file) whose fsync fails: 451, and no trace left."""
    srv = MailServer(procs, tmp_path, env={"CASTOR_FAILPOINTS": "store.append.after_blob_fsync=error"})
    c = srv.lmtp()
    big = MSG + (b"y" * 998 + b"\r\n") * 100     # over the 64k inline threshold
    assert lmtp_send(c, "s@x.y", ["alice"], big)[0][0] == 451
    c.quit()
    assert srv.count("alice") == 0
    srv.ctl("check", "alice")


def test_replica_refuses_with_4xx(procs, tmp_path):
    srv = MailServer(procs, tmp_path, role="replica", users=())
    c = smtplib.LMTP("127.0.0.1", srv.lmtp_port, timeout=20 * SLOW)
    c.ehlo("c")
    code, resp = c.mail("s@x.y")
    assert code == 451 and resp.startswith(b"4.3.0") and b"replica" in resp
    c.quit()


def test_concurrent_clients_one_user(srv):
    import threading
    errors = []

    def worker(k):
        try:
            c = srv.lmtp()
            for i in range(25):
                rep = lmtp_send(c, "s@x.y", ["alice", "bob"], MSG.replace(b"m1@", b"c%d-%d@" % (k, i)))
                if [x[0] for x in rep] != [250, 250]:
                    errors.append(rep)
            c.quit()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=120 * SLOW)
    assert not errors, errors[:3]
    for u in ("alice", "bob"):
        recs = srv.dump(u)["INBOX"]
        assert len(recs) == 100
        assert sorted(r["uid"] for r in recs) == list(range(1, 101))


def test_delivery_goes_into_the_sync_log(procs, tmp_path):
    """lmtpd attaches the sync hook (session_store_open): a master with a channel
    logs a MAILBOX record naming the user and the mailbox it delivered to."""
    from conftest import free_ports
    srv = MailServer(procs, tmp_path, init_args=["--channel", f"r1=127.0.0.1:{free_ports(1)}",
                                                 "--sync-password", "x"])
    logdir = srv.root / "sync" / "log"

    def logged():
        return b"".join(p.read_bytes() for p in sorted(logdir.glob("*.log")))

    before = logged()
    c = srv.lmtp()
    assert lmtp_send(c, "s@x.y", ["bob"], MSG)[0][0] == 250
    c.quit()
    after = logged()
    inbox = srv.ctl("dump", "bob").stdout.split('mailbox "INBOX" uniqueid=')[1].split()[0]
    new = after[len(before):]
    assert b"bob" in new and inbox.encode() in new, new


# ---------------------------------------------------------------------------
# swaks, the real third-party client

def test_swaks(srv, tmp_path):
    import shutil
    import subprocess
    swaks = shutil.which("swaks")
    assert swaks, "swaks not installed (scripts/deps.sh)"
    base = [swaks, "--protocol", "LMTP", "--server", f"127.0.0.1:{srv.lmtp_port}", "--from", "s@example.org",
            "--helo", "swaks.test", "--timeout", str(20 * SLOW)]
    cp = subprocess.run(base + ["--to", "alice@example.org,nobody@example.org,bob@example.org",
                                "--header", "Subject: via swaks"], capture_output=True, text=True,
                        timeout=60 * SLOW)
    out = cp.stdout + cp.stderr
    assert cp.returncode == 0, out
    assert re.search(r"<-\s+250 2\.0\.0 <alice@example\.org> Delivered", out), out
    assert re.search(r"<\*\*\s+550 5\.1\.1 <nobody@example\.org>", out), out
    assert re.search(r"<-\s+250 2\.0\.0 <bob@example\.org> Delivered", out), out
    # pipelining, and STARTTLS
    cp = subprocess.run(base + ["--to", "alice@example.org", "--pipeline"], capture_output=True, text=True,
                        timeout=60 * SLOW)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    cp = subprocess.run(base + ["--to", "bob@example.org", "-tls"], capture_output=True, text=True,
                        timeout=60 * SLOW)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "TLS started" in cp.stdout + cp.stderr
    assert srv.count("alice") == 2 and srv.count("bob") == 2
    msgs = srv.fetch_all("bob")
    assert b"Subject: via swaks" in msgs[0] and b"with LMTPS" in msgs[1]


# ---------------------------------------------------------------------------
# graceful shutdown (SIGQUIT to castord)

# castord logs this once it has sent SIGQUIT to every child
QUIT_SENT = r"graceful stop: listeners closed, SIGQUIT sent"

def test_sigquit_mid_data_completes_then_421(srv):
    busy = Raw(srv.lmtp_port)
    busy.reply()
    busy.send("LHLO c\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nRCPT TO:<bob>\r\nDATA\r\n")
    assert [busy.reply()[0] for _ in range(5)] == [250, 250, 250, 250, 354]
    half = len(MSG) // 2
    busy.send(MSG[:half])
    idle = Raw(srv.lmtp_port)          # a second client, between transactions
    idle.reply()
    idle.send("LHLO c\r\n")
    idle.reply()
    # both are where the test wants them: busy got its 354 (DATA has
    # begun), idle its LHLO reply (between transactions)
    srv.sigquit()
    # the idle client is told at once
    code, lines = idle.reply(timeout=5 * SLOW)
    assert code == 421 and lines[0].startswith("421 4.3.2"), lines
    assert idle.closed()
    srv.wait_log(QUIT_SENT)   # the busy child has its SIGQUIT too
    # the transaction whose DATA had begun completes, with a reply per recipient;
    # the new transaction pipelined behind it gets 421 4.3.2 and is not run
    busy.send(MSG[half:] + b".\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nDATA\r\n")
    codes = [busy.reply(timeout=10 * SLOW) for _ in range(3)]
    assert [c for c, _ in codes] == [250, 250, 421], codes
    assert codes[2][1][0].startswith("421 4.3.2")
    assert busy.closed()
    assert srv.proc.wait(timeout=20 * SLOW) == 0
    assert srv.count("alice") == 1 and srv.count("bob") == 1
    d = srv.dump("alice")["INBOX"]    # castord is down: castorctl reads the store
    assert d[0]["size"] > len(MSG)


def test_sigquit_between_transactions_of_a_pipelined_batch(srv):
    """Never store then answer 4xx: every stored message got its 250 before
    the 421, and every message that got 421 (or nothing) is not stored."""
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send("LHLO c\r\n")
    r.reply()
    n_ok = 0
    srv_quit_at = 5
    for i in range(20):
        if i == srv_quit_at:
            srv.sigquit()
            srv.wait_log(QUIT_SENT)   # lmtpd has its SIGQUIT before the next MAIL
        r.send(b"MAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nDATA\r\n")
        code, lines = r.reply()
        if code == 421:
            break
        assert code == 250
        assert r.reply()[0] == 250
        assert r.reply()[0] == 354
        r.send(MSG.replace(b"m1@", b"b%d@" % i) + b".\r\n")
        code, lines = r.reply()
        assert code == 250, lines
        n_ok += 1
    assert n_ok == srv_quit_at
    assert r.closed()
    assert srv.proc.wait(timeout=20 * SLOW) == 0
    assert srv.count("alice") == n_ok


def test_sigquit_between_bdat_chunks_completes(srv):
    """A BDAT transaction that has begun is a transaction whose data has
    begun: a shutdown waits for its LAST chunk, stores it, answers it."""
    r = Raw(srv.lmtp_port)
    r.reply()
    part1, part2 = b"Subject: chunks\r\n\r\none\r\n", b"two\r\n"
    r.send(b"LHLO c\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nBDAT %d\r\n" % len(part1) + part1)
    assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 250]
    srv.sigquit()
    srv.wait_log(QUIT_SENT)   # lmtpd has its SIGQUIT between the chunks
    r.send(b"BDAT %d LAST\r\n" % len(part2) + part2)
    code, lines = r.reply()
    assert code == 250 and "Delivered" in lines[0], lines
    code, lines = r.reply()
    assert code == 421 and lines[0].startswith("421 4.3.2"), lines
    assert srv.proc.wait(timeout=20 * SLOW) == 0
    assert srv.count("alice") == 1


def test_sigquit_refuses_new_connections(srv):
    import castord_util
    c = srv.lmtp()
    srv.sigquit()
    assert srv.proc.wait(timeout=20 * SLOW) == 0
    assert castord_util.refused(srv.lmtp_port)
    code, resp = c.noop()       # what waits for the idle client is the 421
    assert code == 421 and resp.startswith(b"4.3.2"), resp


# ---------------------------------------------------------------------------
# duplicate suppression (duplicatesuppression, duplicate_days)

def test_dedup_same_message_id_same_mailbox_stored_once(srv):
    c = srv.lmtp()
    first = lmtp_send(c, "s@x.y", ["alice"], MSG)
    assert first[0][0] == 250 and "duplicate" not in first[0][1]
    # a retry (another Received: line, same Message-ID) is accepted and not stored again
    again = lmtp_send(c, "s@x.y", ["alice", "bob"], MSG.replace(b"Subject: test", b"Subject: retry"))
    assert [x[0] for x in again] == [250, 250], again
    assert "duplicate suppressed" in again[0][1] and "duplicate" not in again[1][1]
    # another mailbox of the same user is another recipient mailbox
    srv.ctl("mailbox", "create", "alice", "Lists")
    assert "duplicate" not in lmtp_send(c, "s@x.y", ["alice+lists"], MSG)[0][1]
    assert "duplicate suppressed" in lmtp_send(c, "s@x.y", ["alice+lists"], MSG)[0][1]
    # Message-ID normalisation: white space and comments do not make it new
    folded = MSG.replace(b"Message-ID: <m1@example.org>", b"Message-ID: (c)\r\n <m1@example.org>")
    assert "duplicate suppressed" in lmtp_send(c, "s@x.y", ["alice"], folded)[0][1]
    c.quit()
    d = srv.dump("alice")
    assert len(d["INBOX"]) == 1 and len(d["Lists"]) == 1
    assert srv.count("bob") == 1
    assert re.search(r"delivered id=\S+ user=alice mailbox=INBOX uid=1 .*duplicate=1", srv.log())


def test_dedup_without_message_id_never_suppressed(srv):
    c = srv.lmtp()
    no_id = b"Subject: no id\r\n\r\nbody\r\n"
    for _ in range(3):
        rep = lmtp_send(c, "s@x.y", ["alice"], no_id)
        assert rep[0][0] == 250 and "duplicate" not in rep[0][1]
    c.quit()
    assert srv.count("alice") == 3


def test_dedup_after_expunge_still_suppressed(srv):
    """The index lives as long as the record, tombstones included: a retry
    after the user deleted the message does not bring it back."""
    c = srv.lmtp()
    assert lmtp_send(c, "s@x.y", ["alice"], MSG)[0][0] == 250
    p = srv.pop3()
    p.user("alice")
    p.pass_(srv.users["alice"])
    p.dele(1)
    p.quit()
    rep = lmtp_send(c, "s@x.y", ["alice"], MSG)
    assert rep[0][0] == 250 and "duplicate suppressed" in rep[0][1]
    c.quit()
    assert srv.count("alice") == 0


@pytest.mark.parametrize("conf", ["duplicatesuppression: no\n", "duplicate_days: 0\n"])
def test_dedup_off(procs, tmp_path, conf):
    srv = MailServer(procs, tmp_path, conf=conf)
    c = srv.lmtp()
    for _ in range(2):
        rep = lmtp_send(c, "s@x.y", ["alice"], MSG)
        assert rep[0][0] == 250 and "duplicate" not in rep[0][1]
    c.quit()
    assert srv.count("alice") == 2


def test_dedup_concurrent_deliveries_store_once(srv):
    """Four MTAs delivering the same message at the same moment: all get
    250, exactly one copy is stored (the check is inside the append)."""
    import threading
    barrier = threading.Barrier(4)
    results, errors = [], []

    def worker(k):
        try:
            r = Raw(srv.lmtp_port)
            r.reply()
            r.send("LHLO c\r\nMAIL FROM:<s@x.y>\r\nRCPT TO:<alice>\r\nDATA\r\n")
            assert [r.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
            barrier.wait(timeout=10 * SLOW)
            r.send(MSG + b".\r\n")
            results.append(r.reply())
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout=60 * SLOW)
    assert not errors, errors
    assert [code for code, _ in results] == [250] * 4
    assert sum("duplicate suppressed" in lines[0] for _, lines in results) == 3
    assert srv.count("alice") == 1


def test_sighup_applies_castor_conf_to_new_connections(procs, tmp_path):
    """A reload that changes castor.conf reaches every later connection
    (issue 21 item 2: quota_default_messages added and removed by SIGHUP
    had no effect until a restart)."""
    import signal

    srv = MailServer(procs, tmp_path)
    base_conf = srv.conf.read_text()

    def deliver_one():
        c = srv.lmtp()
        rep = lmtp_send(c, "s@x.y", ["alice"], fresh(MSG))[0]
        c.quit()
        return rep[0]

    def reload(text, n):
        srv.conf.write_text(text)
        os.kill(srv.pid, signal.SIGHUP)
        wait_for(lambda: srv.log().count("reload done") >= n, timeout=10 * SLOW, what="reload done")

    for _ in range(3):
        assert deliver_one() == 250
    reload(base_conf + "\nquota_default_messages: 3\n", 1)
    assert "castor.conf changed: service children recycled" in srv.log()
    assert deliver_one() == 452            # 3 stored: the new limit holds at once
    reload(base_conf, 2)
    assert deliver_one() == 250            # and is gone again
    assert srv.count("alice") == 4


# ---------------------------------------------------------------------------
# SMTPUTF8 (RFC 6531)

def test_smtputf8_delivery_stored_exactly_and_fetchable(srv):
    """Postfix sends UTF-8 envelopes and headers only to a server that
    offers SMTPUTF8 (else it bounces with 5.6.7): offered in LHLO, MAIL
    ... SMTPUTF8 accepted, a UTF-8 sender and a UTF-8 +detail delivered
    byte for byte, and the message is read back over IMAP with UTF8=ACCEPT."""
    from imap_helpers import Raw as ImapRaw

    srv.ctl("mailbox", "create", "alice", "B\u00fccher")
    c = srv.lmtp()
    assert c.has_extn("smtputf8")
    sender = "j\u00fcrgen@b\u00fccher.example"
    rcpt = "alice+B\u00fccher@example.org"
    msg = ("From: J\u00fcrgen <" + sender + ">\r\nTo: " + rcpt + "\r\n"
           "Subject: Gr\u00fc\u00dfe aus K\u00f6ln\r\nMessage-ID: <utf8-1@example.org>\r\n"
           "\r\nTsch\u00fc\u00df.\r\n").encode()
    assert c.sendmail(sender, [rcpt], msg, mail_options=["SMTPUTF8"]) == {}
    c.quit()
    d = srv.dump("alice")
    assert len(d["B\u00fccher"]) == 1 and not d.get("INBOX")
    r = ImapRaw(srv.base)
    r.ok('LOGIN alice "pw-alice"')
    r.ok("ENABLE UTF8=ACCEPT")
    r.ok('SELECT "B\u00fccher"'.encode())
    u, t = r.cmd("FETCH 1 BODY.PEEK[]")
    assert t.endswith(b"OK FETCH completed"), t
    m = re.match(rb"\* 1 FETCH \(BODY\[\] \{(\d+)\}\r\n", u[0])
    stored_msg = u[0][m.end():m.end() + int(m.group(1))]
    pre = prefix_of(stored_msg)
    assert stored_msg == pre + msg
    lines = pre.decode().split("\r\n")
    assert lines[0] == "Return-Path: <" + sender + ">"
    assert re.match(r"\tby mx\.test \(Castor\) with UTF8LMTP id \S+$", lines[2]), lines
    assert lines[3].startswith("\tfor <" + rcpt + ">; ")
    [(guid, size)] = [(x["guid"], x["size"]) for x in d["B\u00fccher"]]
    assert guid == sha1(stored_msg) and size == len(stored_msg)


def test_smtputf8_bad_utf8_address_refused(srv):
    r = Raw(srv.lmtp_port)
    r.reply()
    r.send(b"LHLO c\r\nMAIL FROM:<j\xfcrgen@example.org> SMTPUTF8\r\n"
           b"MAIL FROM:<a@example.org> SMTPUTF8=1\r\nQUIT\r\n")
    assert r.reply()[0] == 250
    code, lines = r.reply()
    assert code == 501 and lines[0].startswith("501 5.1.7"), lines
    code, lines = r.reply()
    assert code == 501 and lines[0].startswith("501 5.5.4"), lines
