"""imapd: mailbox commands - CREATE (with CREATE-SPECIAL-USE), DELETE, RENAME,
SUBSCRIBE, UNSUBSCRIBE, LIST (RFC 3501, LIST-EXTENDED, SPECIAL-USE,
LIST-STATUS, CHILDREN), LSUB, STATUS, autocreated special-use folders, and
modified UTF-7 names on the wire (UTF8=ACCEPT too)."""
import re

import pytest

from imap_helpers import PASSWORD, ImapServer, Raw, append, find, one


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    s = ImapServer(tmp_path_factory.mktemp("imapmbox"), users=("alice", "bob", "carol", "dave"))
    yield s
    s.stop()


def names(lines, kind=b"LIST"):
    out = {}
    for l in lines:
        m = re.match(rb'^\* ' + kind + rb' \(([^)]*)\) "/" (.*)$', l)
        if m:
            n = m.group(2)
            if n.startswith(b'"'):
                n = n[1:-1].replace(b'\\"', b'"').replace(b"\\\\", b"\\")
            out[n.decode()] = set(m.group(1).split())
    return out


def test_autocreated_special_use(srv):
    c = srv.client(user="bob")
    u, t = c.ok('LIST "" "*"')
    got = names(u)
    assert got["INBOX"] >= {b"\\HasNoChildren"}
    for name, use in [("Sent", b"\\Sent"), ("Drafts", b"\\Drafts"), ("Trash", b"\\Trash"),
                      ("Junk", b"\\Junk"), ("Archive", b"\\Archive")]:
        assert use in got[name], (name, got)
    u, t = c.ok('LIST (SPECIAL-USE) "" "*"')
    assert set(names(u)) == {"Sent", "Drafts", "Trash", "Junk", "Archive"}
    u, t = c.ok('LSUB "" "*"')
    assert {"Sent", "Trash"} <= set(names(u, b"LSUB"))
    # a user who deletes Trash does not get it back at the next login
    c.ok("DELETE Trash")
    c.ok("LOGOUT")
    c = srv.client(user="bob")
    u, t = c.ok('LIST "" "*"')
    assert "Trash" not in names(u)
    assert "Sent" in names(u)


def test_create_delete_rename(srv):
    c = srv.client(user="carol")
    c.ok("CREATE Work")
    c.no("CREATE Work", "ALREADYEXISTS")
    c.no("CREATE INBOX", "ALREADYEXISTS")
    c.ok("CREATE Projects/2024/Q1/")          # parents created, trailing separator dropped
    u, t = c.ok('LIST "" "Projects*"')
    got = names(u)
    assert set(got) == {"Projects", "Projects/2024", "Projects/2024/Q1"}
    assert b"\\HasChildren" in got["Projects"]
    assert b"\\HasNoChildren" in got["Projects/2024/Q1"]
    c.ok("CREATE MySent (USE (\\Sent))")
    u, t = c.ok('LIST "" MySent')
    assert b"\\Sent" in names(u)["MySent"]
    c.no("CREATE Odd (USE (\\Bogus))", "USEATTR")
    # RENAME takes the children along
    c.ok("RENAME Projects Archive2")
    u, t = c.ok('LIST "" "*"')
    got = names(u)
    assert "Archive2/2024/Q1" in got and "Projects" not in got
    c.no("RENAME Nope Other", "NONEXISTENT")
    c.no("RENAME Work Archive2", "ALREADYEXISTS")
    c.ok("RENAME Work New/Deep/Work")         # missing parents of the target are created
    assert "New/Deep/Work" in names(c.ok('LIST "" "*"')[0])
    # DELETE: a parent leaves its children; INBOX cannot go
    c.ok("DELETE Archive2/2024")
    u, t = c.ok('LIST "" "Archive2/%"')
    got = names(u)
    assert b"\\Noselect" in got["Archive2/2024"] and b"\\HasChildren" in got["Archive2/2024"]
    u, t = c.ok('LIST () "" "Archive2/%"')   # extended form says \NonExistent
    assert b"\\NonExistent" in names(u)["Archive2/2024"]
    c.no("DELETE INBOX")
    c.no("DELETE Nope", "NONEXISTENT")
    c.no("SELECT Archive2/2024", "NONEXISTENT")


def test_rename_inbox_moves_messages(srv):
    c = srv.client(user="dave")
    append(c, "INBOX", "Subject: one\n\nx\n")
    append(c, "INBOX", "Subject: two\n\ny\n")
    c.ok("RENAME INBOX Old")
    u, t = c.ok("STATUS INBOX (MESSAGES)")
    assert b"MESSAGES 0" in u[0]
    u, t = c.ok("STATUS Old (MESSAGES)")
    assert b"MESSAGES 2" in u[0]


def test_list_patterns_and_root(srv):
    c = srv.client()
    for n in ("a", "a/b", "a/b/c", "ab", "x/y"):
        c.ok(f"CREATE {n}")
    u, t = c.ok('LIST "" ""')
    assert u == [b'* LIST (\\Noselect) "/" ""']
    assert set(names(c.ok('LIST "" "a%"')[0])) == {"a", "ab"}
    assert set(names(c.ok('LIST "" "a/%"')[0])) == {"a/b"}
    assert set(names(c.ok('LIST "a/" "*"')[0])) == {"a/b", "a/b/c"}    # reference + pattern
    assert set(names(c.ok('LIST "" "inbox"')[0])) == {"INBOX"}         # INBOX case-insensitive
    assert set(names(c.ok('LIST "" (a ab "x/*")')[0])) == {"a", "ab", "x/y"}
    u, t = c.ok('LIST "" "%"')
    assert b"\\HasChildren" in names(u)["x"]      # CREATE x/y made its parent x
    c.ok("SELECT a/b")


def test_subscribe_lsub_and_list_subscribed(srv):
    c = srv.client()
    c.ok("CREATE sub1")
    c.ok("SUBSCRIBE sub1")
    c.ok("SUBSCRIBE ghost")                       # names need not exist
    u, t = c.ok('LSUB "" "*"')
    got = names(u, b"LSUB")
    assert "sub1" in got and b"\\Noselect" in got["ghost"]
    u, t = c.ok('LIST (SUBSCRIBED) "" "*"')
    got = names(u)
    assert b"\\Subscribed" in got["sub1"]
    assert {b"\\Subscribed", b"\\NonExistent"} <= got["ghost"]
    u, t = c.ok('LIST "" "sub1" RETURN (SUBSCRIBED CHILDREN)')
    assert b"\\Subscribed" in names(u)["sub1"]
    c.ok("UNSUBSCRIBE sub1")
    c.ok("UNSUBSCRIBE ghost")
    assert "sub1" not in names(c.ok('LSUB "" "*"')[0], b"LSUB")


def test_status_and_list_status(srv):
    c = srv.client()
    c.ok("CREATE st")
    append(c, "st", "Subject: a\n\nhello\n", flags="\\Seen")
    append(c, "st", "Subject: b\n\nworld\n")
    u, t = c.ok("STATUS st (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN HIGHESTMODSEQ SIZE APPENDLIMIT)")
    st = one(u, rb"^\* STATUS \"st\" ")
    assert b"MESSAGES 2" in st and b"UNSEEN 1" in st and b"UIDNEXT 3" in st
    assert re.search(rb"UIDVALIDITY \d+", st) and re.search(rb"HIGHESTMODSEQ \d+", st)
    assert re.search(rb"SIZE \d+", st) and re.search(rb"APPENDLIMIT \d+", st)
    c.no("STATUS nope (MESSAGES)", "NONEXISTENT")
    u, t = c.ok('LIST "" "st" RETURN (STATUS (MESSAGES UNSEEN))')
    assert u[0].startswith(b'* LIST (') and u[1] == b'* STATUS "st" (MESSAGES 2 UNSEEN 1)'


def test_modified_utf7_names(srv):
    c = srv.client()
    c.ok('CREATE "Entw&APw-rfe"')
    c.ok('CREATE "&ZeVnLIqe-/&U,BTFw-"')
    c.ok('CREATE "a&-b"')
    u, t = c.ok('LIST "" "*"')
    got = names(u)
    assert {"Entw&APw-rfe", "&ZeVnLIqe-/&U,BTFw-", "a&-b"} <= set(got)
    c.no('CREATE "bad&AGE-"', "CANNOT")      # encoded ASCII: not canonical
    c.no('CREATE "bad&AOk"', "CANNOT")       # unterminated
    assert re.search(rb'MESSAGES 0', c.ok('STATUS "Entw&APw-rfe" (MESSAGES)')[0][0])
    # the store holds UTF-8: castorctl lists the decoded name
    out = srv.ctl("mailbox", "list", "alice").stdout
    assert "Entwürfe" in out and "a&b" in out and "日本語/台北" in out
    # UTF8=ACCEPT: names travel as UTF-8
    c.ok("ENABLE UTF8=ACCEPT")
    u, t = c.ok('LIST "" "Entw*"')
    assert any("Entwürfe".encode() in l for l in u), u
    c.ok('SELECT "Entwürfe"'.encode())
