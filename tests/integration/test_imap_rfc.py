"""imapd: exact RFC behaviour found wrong by a conformance tester (issue
18, "Wrong today"): EXAMINE's RECENT, \\Recent in exactly one session,
FLAGS before a keyword's first FETCH, 4294967295 is not '*', SEARCH
FROM/TO/CC/BCC on parsed addresses, LIST patterns that are not modified
UTF-7, LSUB \\Noselect parents and LIST-EXTENDED RECURSIVEMATCH /
CHILDINFO, CONDSTORE enabled by FETCH MODSEQ and ESEARCH MIN/MAX MODSEQ,
APPEND refused before its synchronising literal, SEARCH BODY deep in a
message.  Each test checks the responses line by line over a raw socket."""
import re

import pytest

from imap_helpers import ImapServer, append, find, literal, one


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ImapServer(tmp_path_factory.mktemp("imaprfc"))
    yield s
    s.stop()


def msg(i):
    return literal(f"From: s{i}@example.com\nSubject: msg {i}\n\nbody {i}\n")


@pytest.fixture
def box(srv, request):
    """A fresh mailbox named after the test, and a logged-in session."""
    name = request.node.name.replace("_", "")[:40]
    c = srv.client()
    c.ok(f"CREATE {name}")
    return c, name


def matches(lines, patterns):
    """lines match the regexes one to one, in order."""
    assert len(lines) == len(patterns), (lines, patterns)
    for ln, p in zip(lines, patterns):
        assert re.fullmatch(p.encode() if isinstance(p, str) else p, ln), (ln, p, lines)


def uid_flags(c):
    u, t = c.ok("FETCH 1:* (UID FLAGS)")
    out = {}
    for ln in find(u, rb"^\* \d+ FETCH "):
        m = re.match(rb"^\* \d+ FETCH \(UID (\d+) FLAGS \((.*)\)\)$", ln)
        assert m, ln
        out[int(m.group(1))] = m.group(2).split()
    return out


# 1 ------------------------------------------------------------------

def test_examine_reports_recent(srv, box):
    c, name = box
    append(c, name, msg(1))
    append(c, name, msg(2))
    e = srv.client()
    u, t = e.ok(f"EXAMINE {name}")
    matches(u, [
        r"\* FLAGS \(\\Answered \\Flagged \\Deleted \\Seen \\Draft\)",
        r"\* OK \[PERMANENTFLAGS \(\)\] No permanent flags permitted",
        r"\* 2 EXISTS",
        r"\* 2 RECENT",
        r"\* OK \[UNSEEN 1\] First unseen",
        r"\* OK \[UIDVALIDITY \d+\] UIDs valid",
        r"\* OK \[UIDNEXT 3\] Predicted next UID",
        r"\* OK \[HIGHESTMODSEQ \d+\] Highest",
    ])
    assert t.endswith(b"OK [READ-ONLY] EXAMINE completed")
    assert uid_flags(e) == {1: [b"\\Recent"], 2: [b"\\Recent"]}
    # EXAMINE does not take them: STATUS and a later SELECT still see 2
    u, t = c.ok(f"STATUS {name} (RECENT)")
    assert u == [f"* STATUS \"{name}\" (RECENT 2)".encode()]
    s = srv.client()
    u, t = s.ok(f"SELECT {name}")
    one(u, rb"^\* 2 RECENT$")
    u, t = c.ok(f"STATUS {name} (RECENT)")
    assert u == [f"* STATUS \"{name}\" (RECENT 0)".encode()]
    u, t = e.ok(f"EXAMINE {name}")
    one(u, rb"^\* 0 RECENT$")


# 2 ------------------------------------------------------------------

def test_recent_in_exactly_one_session(srv, box):
    c, name = box
    s1, s2, s3 = srv.client(), srv.client(), srv.client()
    s1.ok(f"SELECT {name}")
    s2.ok(f"SELECT {name}")
    u, t = s2.cmd(f"APPEND {name} {{{len(msg(1))}+}}\r\n".encode() + msg(1))
    assert b"OK [APPENDUID" in t
    assert u == [b"* 1 EXISTS", b"* 1 RECENT"]
    u, t = s1.ok("NOOP")
    assert u == [b"* 1 EXISTS"]
    append(s3, name, msg(2))
    u, t = s1.ok("NOOP")
    assert u == [b"* 2 EXISTS", b"* 1 RECENT"]
    u, t = s2.ok("NOOP")
    assert u == [b"* 2 EXISTS"]
    assert uid_flags(s1) == {1: [], 2: [b"\\Recent"]}
    assert uid_flags(s2) == {1: [b"\\Recent"], 2: []}
    u, t = s1.ok("SEARCH RECENT")
    assert u == [b"* SEARCH 2"]
    u, t = s2.ok("SEARCH RECENT")
    assert u == [b"* SEARCH 1"]
    # several sessions racing for each new message: one gets it
    ss = [srv.client() for _ in range(5)]
    for s in ss:
        s.ok(f"SELECT {name}")
    for i in range(3, 23):
        append(s3, name, msg(i))
        for s in ss[i % 5:] + ss[:i % 5]:
            s.send(f"{s.tag()} NOOP\r\n")
        for s in ss:
            s.collect(f"t{s.n}")
    owners = {}
    for k, s in enumerate([s1, s2] + ss):
        for uid, fl in uid_flags(s).items():
            if b"\\Recent" in fl:
                assert uid not in owners, (uid, owners[uid], k)
                owners[uid] = k
    assert sorted(owners) == list(range(1, 23))


def test_recent_concurrent_sessions(srv, box):
    """10 sessions appending, polling and reselecting at once: at the end
    no uid is \\Recent in two of them."""
    import random
    import threading
    c, name = box
    sessions = [srv.client() for _ in range(10)]
    errors = []

    def work(k, s):
        rnd = random.Random(k)
        try:
            s.ok(f"SELECT {name}")
            for _ in range(30):
                op = rnd.random()
                if op < 0.3:
                    m = msg(k)
                    s.ok(f"APPEND {name} {{{len(m)}+}}\r\n".encode() + m)
                elif op < 0.9:
                    s.ok("NOOP")
                else:
                    s.ok(f"SELECT {name}")
            s.ok("NOOP")
        except Exception as e:          # reported below, with the session
            errors.append((k, e))

    threads = [threading.Thread(target=work, args=(k, s)) for k, s in enumerate(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    owners = {}
    for k, s in enumerate(sessions):
        for uid, fl in uid_flags(s).items():
            if b"\\Recent" in fl:
                assert uid not in owners, (uid, owners[uid], k)
                owners[uid] = k


# 3 ------------------------------------------------------------------

BASE = r"\\Answered \\Flagged \\Deleted \\Seen \\Draft"


def test_flags_announced_before_new_keyword(srv, box):
    c, name = box
    append(c, name, msg(1))
    append(c, name, msg(2))
    s1 = srv.client()
    u, t = s1.ok(f"SELECT {name}")
    one(u, rf"^\* FLAGS \({BASE}\)$")
    c.ok(f"SELECT {name}")
    c.ok("STORE 2 +FLAGS ($Label1 \\Deleted)")
    u, t = s1.ok("NOOP")
    matches(u, [
        rf"\* FLAGS \({BASE} \$Label1\)",
        rf"\* OK \[PERMANENTFLAGS \({BASE} \$Label1 \\\*\)\] Flags permitted",
        r"\* 2 FETCH \(FLAGS \(\\Deleted \\Recent \$Label1\)\)",
    ])
    # known now: no second announcement
    c.ok("STORE 1 +FLAGS ($Label1)")
    u, t = s1.ok("NOOP")
    assert u == [b"* 1 FETCH (FLAGS (\\Recent $Label1))"]
    # this session's own STORE of a new keyword
    u, t = s1.ok("STORE 1 +FLAGS (Work)")
    matches(u, [
        rf"\* FLAGS \({BASE} \$Label1 Work\)",
        rf"\* OK \[PERMANENTFLAGS \({BASE} \$Label1 Work \\\*\)\] Flags permitted",
        r"\* 1 FETCH \(FLAGS \(\\Recent \$Label1 Work\)\)",
    ])
    # a keyword another session set silently shows first in a FETCH
    c.ok("STORE 2 +FLAGS.SILENT (Later)")
    e = srv.client()
    e.ok(f"EXAMINE {name}")
    c.ok("STORE 1 +FLAGS.SILENT (Fresh)")
    u, t = e.ok("NOOP")
    matches(u, [
        rf"\* FLAGS \({BASE} \$Label1 Later Work Fresh\)",
        r"\* OK \[PERMANENTFLAGS \(\)\] No permanent flags permitted",
        r"\* 1 FETCH \(FLAGS \(\$Label1 Fresh Work\)\)",
    ])


# 4 ------------------------------------------------------------------

def test_max_uid_is_not_star(srv, box):
    c, name = box
    for i in range(1, 4):
        append(c, name, msg(i))
    c.ok(f"SELECT {name}")
    u, t = c.ok("UID SEARCH UID 4:4294967295")
    assert u == [b"* SEARCH"]
    u, t = c.ok("UID SEARCH UID 4294967295")
    assert u == [b"* SEARCH"]
    u, t = c.ok("UID FETCH 4:4294967295 (UID)")
    assert u == []
    u, t = c.ok("UID FETCH 3:4294967295 (UID)")
    assert u == [b"* 3 FETCH (UID 3)"]
    u, t = c.ok("UID FETCH 4294967295:2 (UID)")
    assert u == [b"* 2 FETCH (UID 2)", b"* 3 FETCH (UID 3)"]
    # '*' itself still names the last message, even above it (RFC 3501 errata)
    u, t = c.ok("UID FETCH 4:* (UID)")
    assert u == [b"* 3 FETCH (UID 3)"]
    u, t = c.ok("UID SEARCH UID 4:*")
    assert u == [b"* SEARCH 3"]
    c.bad("FETCH 4294967295 (UID)")
    u, t = c.ok("UID STORE 4:4294967295 +FLAGS (\\Seen)")
    assert u == []
    u, t = c.ok("UID EXPUNGE 4:4294967295")
    assert u == []


# 5 ------------------------------------------------------------------

def test_search_addresses_parsed(srv, box):
    c, name = box
    append(c, name, literal(
        "From: <user-from (comment)@ (comment) domain.org>\n"
        "To: \"Some One\" <user-to@\n (folded) domain.org>, other (x) @ example.net\n"
        "Cc: Group: user-cc (c)@domain.org;\n"
        "Bcc: user-bcc@ [127.0.0.1]\n"
        "Subject: addr\n\nbody\n"))
    append(c, name, msg(2))
    c.ok(f"SELECT {name}")
    for key, want in [
        ("FROM user-from@domain.org", b"* SEARCH 1"),
        ("FROM USER-FROM@DOMAIN.ORG", b"* SEARCH 1"),
        ("FROM comment", b"* SEARCH 1"),              # the raw text still counts
        ("TO user-to@domain.org", b"* SEARCH 1"),
        ("TO \"Some One\"", b"* SEARCH 1"),
        ("TO other@example.net", b"* SEARCH 1"),
        ("CC user-cc@domain.org", b"* SEARCH 1"),
        ("BCC user-bcc@[127.0.0.1]", b"* SEARCH 1"),
        ("FROM s2@example.com", b"* SEARCH 2"),
        ("FROM user-to@domain.org", b"* SEARCH"),
        ("TO user-from@domain.org", b"* SEARCH"),
    ]:
        u, t = c.ok(f"SEARCH {key}")
        assert u == [want], (key, u)


# 6 ------------------------------------------------------------------

def test_list_pattern_not_mutf7(srv, box):
    c, name = box
    u, t = c.ok("LIST \"\" !#$$&'+,-.0123456789:;<=>?@^_`|[}%*")
    assert u == []
    u, t = c.ok("LIST \"\" \"&AGE\"")
    assert u == []
    u, t = c.ok("LSUB \"\" &Jjo-%&")
    assert u == []
    u, t = c.ok(f"LIST \"\" ({name} \"&-&\")")
    assert u == [f"* LIST (\\HasNoChildren) \"/\" \"{name}\"".encode()]
    # a name (not a pattern) still has to be valid
    c.no("CREATE \"&AGE\"", "CANNOT")


# 7 ------------------------------------------------------------------

def test_lsub_noselect_parents(srv, box):
    c, name = box
    for m in ("a", "b/c", "d", "d/e"):
        c.ok(f"CREATE {name}/{m}")
    for m in ("a", "b/c", "d", "d/e"):
        c.ok(f"SUBSCRIBE {name}/{m}")
    u, t = c.ok(f"LSUB \"\" {name}/%")
    assert u == [
        f"* LSUB () \"/\" \"{name}/a\"".encode(),
        f"* LSUB (\\Noselect) \"/\" \"{name}/b\"".encode(),
        f"* LSUB () \"/\" \"{name}/d\"".encode(),
    ]
    u, t = c.ok(f"LSUB \"\" {name}/*")
    assert u == [f"* LSUB () \"/\" \"{name}/{m}\"".encode() for m in ("a", "b/c", "d", "d/e")]
    u, t = c.ok(f"LSUB \"\" %")
    assert f"* LSUB (\\Noselect) \"/\" \"{name}\"".encode() in u
    # a subscription without a mailbox still has parents
    c.ok(f"SUBSCRIBE {name}/x/y")
    u, t = c.ok(f"LSUB \"\" {name}/%")
    assert u[-1] == f"* LSUB (\\Noselect) \"/\" \"{name}/x\"".encode()


def test_list_extended_recursivematch(srv, box):
    c, name = box
    for m in ("a", "b/c", "d", "d/e"):
        c.ok(f"CREATE {name}/{m}")
    for m in ("a", "b/c", "d/e"):
        c.ok(f"SUBSCRIBE {name}/{m}")
    c.bad(f"LIST (RECURSIVEMATCH) \"\" {name}/%")
    c.bad(f"LIST (RECURSIVEMATCH REMOTE) \"\" {name}/%")
    u, t = c.ok(f"LIST (SUBSCRIBED) \"\" {name}/%")
    assert u == [f"* LIST (\\HasNoChildren \\Subscribed) \"/\" \"{name}/a\"".encode()]
    u, t = c.ok(f"LIST (SUBSCRIBED RECURSIVEMATCH) \"\" {name}/%")
    assert u == [
        f"* LIST (\\HasNoChildren \\Subscribed) \"/\" \"{name}/a\"".encode(),
        f"* LIST (\\HasChildren) \"/\" \"{name}/b\" (\"CHILDINFO\" (\"SUBSCRIBED\"))".encode(),
        f"* LIST (\\HasChildren) \"/\" \"{name}/d\" (\"CHILDINFO\" (\"SUBSCRIBED\"))".encode(),
    ]
    c.ok(f"SUBSCRIBE {name}/d")
    c.ok(f"DELETE {name}/b/c")
    c.ok(f"DELETE {name}/b")
    u, t = c.ok(f"LIST (SUBSCRIBED RECURSIVEMATCH) \"\" {name}/%")
    assert u == [
        f"* LIST (\\HasNoChildren \\Subscribed) \"/\" \"{name}/a\"".encode(),
        f"* LIST (\\NonExistent) \"/\" \"{name}/b\" (\"CHILDINFO\" (\"SUBSCRIBED\"))".encode(),
        f"* LIST (\\HasChildren \\Subscribed) \"/\" \"{name}/d\" (\"CHILDINFO\" (\"SUBSCRIBED\"))".encode(),
    ]
    # '*' reaches every subscribed name itself: no CHILDINFO
    u, t = c.ok(f"LIST (SUBSCRIBED RECURSIVEMATCH) \"\" {name}/*")
    assert not find(u, rb"CHILDINFO") and len(u) == 4, u


# 8 ------------------------------------------------------------------

def test_condstore_enabled_by_fetch_modseq(srv, box):
    c, name = box
    for i in range(1, 4):
        append(c, name, msg(i))
    u, t = c.ok(f"SELECT {name}")
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(u)).group(1))
    u, t = c.ok("FETCH 1 (FLAGS MODSEQ)")
    matches(u, [
        rf"\* OK \[HIGHESTMODSEQ {hms}\] Highest",
        r"\* 1 FETCH \(FLAGS \(\\Recent\) MODSEQ \(\d+\)\)",
    ])
    u, t = c.ok("FETCH 1 (MODSEQ)")
    matches(u, [r"\* 1 FETCH \(MODSEQ \(\d+\)\)"])
    # the same for SEARCH MODSEQ and STORE UNCHANGEDSINCE in a fresh session
    d = srv.client()
    d.ok(f"SELECT {name}")
    u, t = d.ok("SEARCH MODSEQ 1")
    matches(u, [rf"\* OK \[HIGHESTMODSEQ {hms}\] Highest", r"\* SEARCH 1 2 3 \(MODSEQ \d+\)"])
    e = srv.client()
    e.ok(f"SELECT {name}")
    u, t = e.ok(f"STORE 1 (UNCHANGEDSINCE {hms}) +FLAGS.SILENT (\\Seen)")
    assert u[0] == f"* OK [HIGHESTMODSEQ {hms}] Highest".encode(), u
    # ENABLE CONDSTORE while selected, too
    f = srv.client()
    u, t = f.ok(f"SELECT {name}")
    hms = int(re.search(rb"HIGHESTMODSEQ (\d+)", b"\n".join(u)).group(1))
    u, t = f.ok("ENABLE CONDSTORE")
    assert u == [f"* OK [HIGHESTMODSEQ {hms}] Highest".encode(), b"* ENABLED CONDSTORE"]
    u, t = f.ok("ENABLE CONDSTORE")
    assert u == [b"* ENABLED"]


def test_esearch_min_max_modseq(srv, box):
    c, name = box
    for i in range(1, 4):
        append(c, name, msg(i))
    c.ok(f"SELECT {name} (CONDSTORE)")
    c.ok("STORE 3 +FLAGS.SILENT (\\Answered)")
    c.ok("STORE 1 +FLAGS.SILENT (\\Answered)")
    c.ok("STORE 2 +FLAGS.SILENT (\\Answered)")
    u, t = c.ok("FETCH 1:3 (MODSEQ)")
    ms = {int(re.match(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)", l).group(1)):
          int(re.match(rb"\* (\d+) FETCH \(MODSEQ \((\d+)\)", l).group(2)) for l in u}
    assert ms[3] < ms[1] < ms[2]
    for ret, want in [
        ("MIN", f"MIN 1 MODSEQ {ms[1]}"),
        ("MAX", f"MAX 3 MODSEQ {ms[3]}"),
        ("MIN MAX", f"MIN 1 MAX 3 MODSEQ {ms[1]}"),
        ("COUNT", f"COUNT 3 MODSEQ {ms[2]}"),
        ("MIN ALL", f"MIN 1 ALL 1:3 MODSEQ {ms[2]}"),
    ]:
        u, t = c.cmd(f"SEARCH RETURN ({ret}) MODSEQ 1")
        assert u == [f"* ESEARCH (TAG \"t{c.n}\") {want}".encode()], (ret, u)
    u, t = c.cmd("UID SEARCH RETURN (MAX) MODSEQ 1")
    assert u == [f"* ESEARCH (TAG \"t{c.n}\") UID MAX 3 MODSEQ {ms[3]}".encode()]


# 9 ------------------------------------------------------------------

def test_append_trycreate_before_continuation(srv, box):
    c, name = box
    m = msg(1)
    c.send(f"a1 APPEND nosuch{name} (\\Seen) {{{len(m)}}}\r\n")
    ln = c.line()
    assert ln == b"a1 NO [TRYCREATE] No such mailbox", ln
    c.ok("NOOP")
    # the mailbox name itself as a literal: "+" for it, the refusal for the message
    mb = f"nosuch{name}".encode()
    c.send(f"a2 APPEND {{{len(mb)}}}\r\n")
    assert c.line().startswith(b"+ ")
    c.send(mb + f" {{{len(m)}}}\r\n".encode())
    assert c.line() == b"a2 NO [TRYCREATE] No such mailbox"
    c.ok("NOOP")
    # an existing mailbox gets the continuation and the message
    c.send(f"a3 APPEND {name} {{{len(m)}}}\r\n")
    assert c.line().startswith(b"+ ")
    c.send(m + b"\r\n")
    u, t = c.collect("a3")
    assert b"OK [APPENDUID" in t
    # LITERAL+ cannot be refused early: the message is read, then NO
    u, t = c.cmd(f"APPEND nosuch{name} {{{len(m)}+}}\r\n".encode() + m)
    assert t.endswith(b"NO [TRYCREATE] No such mailbox")


# 10 -----------------------------------------------------------------

def nested(depth, text):
    out = ["From: deep@example.com", "Subject: deep", "MIME-Version: 1.0"]
    for d in range(depth):
        out += [f"Content-Type: multipart/mixed; boundary=\"b{d}z\"", "", f"--b{d}z"]
    out += ["Content-Type: text/plain", "", text]
    for d in reversed(range(depth)):
        out += [f"--b{d}z--"]
    return literal("\n".join(out) + "\n")


def test_search_body_deeply_nested(srv, box):
    c, name = box
    append(c, name, nested(120, "the needle-deep-text is here"))
    append(c, name, nested(10, "shallow-text"))
    append(c, name, nested(2000, "very-deep-text"))
    c.ok(f"SELECT {name}")
    for key, want in [
        ("BODY needle-deep-text", b"* SEARCH 1"),
        ("TEXT needle-deep-text", b"* SEARCH 1"),
        ("BODY shallow-text", b"* SEARCH 2"),
        ("BODY very-deep-text", b"* SEARCH 3"),
        ("BODY nowhere-text", b"* SEARCH"),
    ]:
        u, t = c.ok(f"SEARCH {key}")
        assert u == [want], (key, u)
