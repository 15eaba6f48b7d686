"""Split-brain matrix (issue 8): two real servers, changes on both sides
while replication is stopped (the replica's castord down, the replica's
store written directly as a promoted replica would have been), then the
replica comes back and the master's sync-client meets the split brain.
Each record-level case is run under each policy and the documented
outcome is asserted (docs/replication.md "Conflicts"):

  renumber  every message either side acknowledged is on both, once,
            byte-identical (same GUID = SHA-1 of the body), the two dumps
            equal, `castorctl verify` exits 0
  replace   the master's state wins; every message only the replica had
            is in the replica's <root>/quarantine/ (body + manifest line)
  keep      the replica keeps its messages, nothing is overwritten,
            verify reports the difference (exit 1)
"""
import hashlib
import re

import pytest

from conftest import wait_for
from repl_util import SLOW, converged, ctl, guids_in, pair

POLICIES = ("renumber", "replace", "keep")

# what each side does while apart (sync-testdrv scripts)
CASES = {
    # case 1: the same next UID names different messages
    "guid": ("append kim INBOX 222 replica-a\n",
             "append kim INBOX 444 master-a\n"),
    # case 2: the replica holds UIDs above the master's last UID (and one clashes)
    "uid_above": ("append kim INBOX 222 replica-a\nappend kim INBOX 223 replica-b\n"
                  "append kim INBOX 224 replica-c \\Flagged\n",
                  "append kim INBOX 444 master-a\n"),
    # case 2 without a clash: only the replica took mail, in two mailboxes
    "replica_only": ("append kim INBOX 222 replica-a\nappend kim Work 223 replica-w\n",
                     ""),
}


def mailboxes(dump_text):
    """{mailbox name: [guid, ...]} of a dump."""
    out, cur = {}, None
    for line in dump_text.splitlines():
        m = re.match(r'^mailbox "([^"]*)"', line)
        if m:
            cur = out.setdefault(m.group(1), [])
            continue
        m = re.search(r"^\s+record uid=\d+ guid=([0-9a-f]{40})", line)
        if m and cur is not None:
            cur.append(m.group(1))
    return out


def split(procs, tmp_path, policy, case):
    m, (r,) = pair(procs, tmp_path, conf_extra=f"sync_conflict: {policy}")
    m.drv("useradd kim\ncreate kim Work\nappend kim INBOX 100 base0\n"
          "append kim INBOX 100 base1\nappend kim Work 100 basew\n")
    converged(m, r)
    assert r.quit() == 0
    on_r, on_m = CASES[case]
    if on_r:
        r.drv(on_r)
    if on_m:
        m.drv(on_m)
    rep, mas = r.dump("kim"), m.dump("kim")
    assert rep != mas
    r.start()
    return m, r, rep, mas


def only_on_replica(rep, mas):
    return set(guids_in(rep)) - set(guids_in(mas))


@pytest.mark.parametrize("case", sorted(CASES))
def test_renumber_union_on_both_sides(procs, tmp_path, case):
    m, r, rep, mas = split(procs, tmp_path, "renumber", case)
    union = set(guids_in(rep)) | set(guids_in(mas))
    converged(m, r, timeout=60)
    final = m.dump("kim")
    assert set(guids_in(final)) == union, final
    # once per mailbox: nothing was delivered twice, so no GUID repeats
    want = {}
    for d in (rep, mas):
        for name, gs in mailboxes(d).items():
            want.setdefault(name, set()).update(gs)
    got = mailboxes(final)
    for name, gs in got.items():
        assert len(gs) == len(set(gs)), (name, gs)
        assert set(gs) == want[name], (name, gs, want[name])
    # the replica's flags travelled with its messages
    if case == "uid_above":
        assert re.search(r"flags=\(\\Flagged\)", final), final
    cp = ctl(m.conf, "verify", "kim", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    log = m.log()
    assert "sync conflict resolved policy=renumber user=kim" in log
    assert re.search(r"replica_uid=\d+ uid=\d+ guid=[0-9a-f]{40} action=(fresh|same)-uid", log)
    # a later pass finds nothing left to do
    n = len(re.findall("sync conflict resolved", m.log()))
    assert r.quit() == 0
    r.start()
    converged(m, r, timeout=60)
    assert ctl(m.conf, "verify", "kim", check=False).returncode == 0
    assert len(re.findall("sync conflict resolved", m.log())) == n


@pytest.mark.parametrize("case", sorted(CASES))
def test_replace_master_wins_losers_quarantined(procs, tmp_path, case):
    m, r, rep, mas = split(procs, tmp_path, "replace", case)
    losers = only_on_replica(rep, mas)
    assert losers
    converged(m, r, timeout=60)
    final = m.dump("kim")
    assert set(guids_in(final)) == set(guids_in(mas)), final
    assert ctl(m.conf, "verify", "kim", check=False).returncode == 0
    manifest = (r.root / "quarantine" / "manifest").read_text()
    for g in losers:
        body = (r.root / "quarantine" / "kim" / g).read_bytes()
        assert hashlib.sha1(body).hexdigest() == g
        assert re.search(rf"^time=\S+ user=kim mailbox=[0-9a-f]{{32}} name=\"[^\"]+\" uid=\d+ "
                         rf"guid={g} size={len(body)} reason=\S+$", manifest, re.M), manifest
    assert "sync conflict resolved policy=replace user=kim" in m.log()


@pytest.mark.parametrize("case", sorted(CASES))
def test_keep_replica_messages_stay(procs, tmp_path, case):
    m, r, rep, mas = split(procs, tmp_path, "keep", case)
    wait_for(lambda: int(m.status("r1").get("conflicts", "0")) >= 1, timeout=30 * SLOW,
             what="conflict counted")
    # nothing the replica acknowledged is gone, nothing quarantined
    assert set(guids_in(rep)) <= set(guids_in(r.dump("kim")))
    assert set(guids_in(mas)) == set(guids_in(m.dump("kim")))
    assert not (r.root / "quarantine" / "manifest").exists()
    cp = ctl(m.conf, "verify", "kim", check=False)
    assert cp.returncode == 1, cp.stdout
    warned = [l for l in m.log().splitlines() if "sync conflict kind=" in l and "policy=keep" in l]
    assert warned and all("action=leave" in l for l in warned), warned


def flags_of(dump_text):
    """{(mailbox, uid): flags string} of a dump."""
    out, cur = {}, None
    for line in dump_text.splitlines():
        m = re.match(r'^mailbox "([^"]*)"', line)
        if m:
            cur = m.group(1)
            continue
        m = re.search(r"^\s+record uid=(\d+) .* flags=\(([^)]*)\)", line)
        if m:
            out[(cur, int(m.group(1)))] = m.group(2)
    return out


@pytest.mark.parametrize("policy", POLICIES)
def test_flags_changed_on_both_sides_merged(procs, tmp_path, policy):
    """Case 3: each side changed the flags of a different message while
    apart (each change is the only one since the split: it wins whole),
    and one message was changed on both sides (flag by flag: the side
    with the higher modseq wins the flags the two disagree on)."""
    m, (r,) = pair(procs, tmp_path, conf_extra=f"sync_conflict: {policy}")
    m.drv("useradd kim\nappend kim INBOX 100 base0\nappend kim INBOX 100 base1\n"
          "append kim INBOX 100 base2 \\Answered\n")
    converged(m, r)
    assert r.quit() == 0
    m.drv("flags kim INBOX 1:1 + \\Flagged\nflags kim INBOX 3:3 + \\Seen\n")
    r.drv("flags kim INBOX 2:2 + \\Seen $Work\nflags kim INBOX 3:3 + \\Deleted\n")
    r.start()
    converged(m, r, timeout=60)
    final = flags_of(m.dump("kim"))
    assert final[("INBOX", 1)] == "\\Flagged", final
    assert final[("INBOX", 2)] in ("\\Seen $Work", "$Work \\Seen"), final
    # both changed uid 3: \Answered (common) stays; \Seen vs \Deleted goes to one side
    assert "\\Answered" in final[("INBOX", 3)], final
    assert ("\\Seen" in final[("INBOX", 3)]) != ("\\Deleted" in final[("INBOX", 3)]), final
    assert ctl(m.conf, "verify", "kim", check=False).returncode == 0
    assert "action=flags-merged" in m.log()


MAILBOX_CASES = {
    # case 5: the same name created on both sides (different uniqueids)
    "name_clash": ("create kim Shared\nappend kim Shared 222 replica-s\n",
                   "create kim Shared\nappend kim Shared 444 master-s\n"),
    # case 6: renamed here while mail arrived there
    "renamed_master": ("append kim Work 222 replica-w\n",
                       "rename kim Work Projects\n"),
    # case 6, the other way round: renamed there while mail arrived here
    "renamed_replica": ("rename kim Work Projects\n",
                        "append kim Work 444 master-w\n"),
    # case 7: deleted here while mail arrived there
    "deleted_master": ("append kim Work 222 replica-w\n",
                       "delete kim Work\n"),
}


def mailbox_split(procs, tmp_path, policy, case):
    m, (r,) = pair(procs, tmp_path, conf_extra=f"sync_conflict: {policy}")
    m.drv("useradd kim\ncreate kim Work\nappend kim INBOX 100 base0\nappend kim Work 100 basew\n")
    converged(m, r)
    before = m.dump("kim")
    assert r.quit() == 0
    on_r, on_m = MAILBOX_CASES[case]
    r.drv(on_r)
    m.drv(on_m)
    rep, mas = r.dump("kim"), m.dump("kim")
    r.start()
    return m, r, before, rep, mas


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("case", sorted(MAILBOX_CASES))
def test_mailbox_level(procs, tmp_path, case, policy):
    m, r, before, rep, mas = mailbox_split(procs, tmp_path, policy, case)
    new_on_r = set(guids_in(rep)) - set(guids_in(before))
    if policy == "keep" and case in ("name_clash", "deleted_master", "renamed_master"):
        # left alone on both sides, reported; nothing the replica took is gone
        wait_for(lambda: int(m.status("r1").get("conflicts", "0")) >= 1, timeout=30 * SLOW,
                 what="conflict counted")
        assert set(guids_in(rep)) <= set(guids_in(r.dump("kim")))
        assert ctl(m.conf, "verify", "kim", check=False).returncode == 1
        return
    converged(m, r, timeout=60)
    final = m.dump("kim")
    boxes = mailboxes(final)
    # every message either side acknowledged is on both (the dumps are
    # equal), or under replace the replica's losers are in its quarantine
    if policy == "replace" and case == "renamed_master":
        manifest = (r.root / "quarantine" / "manifest").read_text()
        assert all(g in manifest for g in new_on_r), manifest
        new_on_r = set()
    assert new_on_r <= set(guids_in(final)), (new_on_r, final)
    assert set(guids_in(mas)) <= set(guids_in(final))
    assert ctl(m.conf, "verify", "kim", check=False).returncode == 0
    if case == "name_clash":
        clash = [n for n in boxes if re.fullmatch(r"Shared \(conflict \d{4}-\d\d-\d\d\)", n)]
        assert len(clash) == 1, boxes
        assert set(boxes[clash[0]]) == set(mailboxes(rep)["Shared"])
        assert set(boxes["Shared"]) == set(mailboxes(mas)["Shared"])
    elif case == "deleted_master":
        assert "Work" not in boxes, boxes
        assert set(boxes["Recovered/Work"]) == new_on_r, boxes
    elif case == "renamed_master":
        # the master's name stands; the mail that arrived there is in it
        assert "Work" not in boxes and new_on_r <= set(boxes["Projects"]), boxes
    elif case == "renamed_replica":
        # the master's name stands; the mail that arrived here is in it
        assert set(mailboxes(mas)["Work"]) <= set(boxes["Work"]), boxes


@pytest.mark.parametrize("policy", POLICIES)
def test_uidvalidity_differs(procs, tmp_path, policy):
    """Case 4: the same mailbox (uniqueid) has another UIDVALIDITY on the
    replica (its row rewritten with sqlite3 while it was down), and each
    side took a message.  renumber: the replica's message comes here under
    a fresh UID, the replica's copy is rebuilt as ours (its messages
    quarantined first); replace: ours wins, theirs quarantined; keep: left."""
    import sqlite3
    m, (r,) = pair(procs, tmp_path, conf_extra=f"sync_conflict: {policy}")
    m.drv("useradd kim\ncreate kim Work\nappend kim Work 100 basew\n")
    converged(m, r)
    assert r.quit() == 0
    r.drv("append kim Work 222 replica-w\n")
    m.drv("append kim Work 444 master-w\n")
    dbs = [p for p in r.root.rglob("user.db") if "kim" in p.parent.name]
    assert len(dbs) == 1
    con = sqlite3.connect(dbs[0])
    con.execute("UPDATE mailboxes SET uidvalidity = uidvalidity + 7 WHERE name = 'Work'")
    con.commit()
    con.close()
    rep, mas = r.dump("kim"), m.dump("kim")
    new_on_r = only_on_replica(rep, mas)
    assert len(new_on_r) == 1
    r.start()
    if policy == "keep":
        wait_for(lambda: int(m.status("r1").get("conflict_uidvalidity", "0")) >= 1,
                 timeout=30 * SLOW, what="conflict counted")
        assert set(guids_in(rep)) <= set(guids_in(r.dump("kim")))
        assert ctl(m.conf, "verify", "kim", check=False).returncode == 1
        return
    converged(m, r, timeout=60)
    final = m.dump("kim")
    uv = re.search(r'mailbox "Work" uniqueid=\S+ uidvalidity=(\d+)', final).group(1)
    assert f"uidvalidity={uv}" in mas   # the master's uidvalidity stands
    assert ctl(m.conf, "verify", "kim", check=False).returncode == 0
    manifest = (r.root / "quarantine" / "manifest").read_text()
    g = next(iter(new_on_r))
    assert g in manifest and "reason=uidvalidity-reset" in manifest, manifest
    if policy == "renumber":
        assert set(guids_in(final)) == set(guids_in(rep)) | set(guids_in(mas)), final
    else:
        assert set(guids_in(final)) == set(guids_in(mas)), final
