"""Deletion safety (issue 8): a sync pass that would delete too much parks
the users concerned (issue 16) with the replica untouched until `castorctl
sync --allow-deletes CHAN` releases them for that one pass; a mailbox missing on the
master without a tombstone is never deleted on the replica."""
import re
import sqlite3

from conftest import binpath, run, wait_for
from repl_util import SLOW, converged, ctl, pair


def _mailboxes(dump_text, user):
    out, cur = set(), None
    for line in dump_text.splitlines():
        if line.startswith("user "):
            cur = line.split()[1]
        elif cur == user and line.startswith("mailbox "):
            out.add(line.split()[1].strip('"'))
    return out


def _refused(m, chan="r1"):
    """The users over a threshold are parked (issue 16: per user, the
    channel goes on)."""
    st = m.status(chan)
    return int(st.get("parked", "0")) > 0 and "delete-limit" in st.get("last_error", "")


def _release_and_converge(m, r):
    cp = ctl(m.conf, "sync", "--allow-deletes", "r1")
    assert cp.returncode == 0, cp.stderr
    marker = m.root / "run" / "sync-r1.allow-deletes"
    converged(m, r, timeout=60)
    wait_for(lambda: not marker.exists(), timeout=20 * SLOW, what="allow-deletes marker consumed")
    wait_for(lambda: m.status("r1").get("state") == "connected", timeout=20 * SLOW,
             what="channel connected again")


def test_sixty_deletions_stop_the_channel_until_allowed(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    script = []
    for u in ("ann", "bob", "cat"):
        script.append(f"useradd {u}")
        script.append(f"append {u} INBOX 100 {u}0")
        for i in range(40):
            script.append(f"create {u} F{i:02d}")
        script.append(f"append {u} F00 100 {u}f")
    m.drv("\n".join(script) + "\n")
    converged(m, r, timeout=60)
    assert r.quit() == 0
    # 3 x 20 = 60 mailbox deletions > sync_delete_limit 50 (each user loses
    # 20 of 41: under sync_delete_fraction 0.5)
    m.drv("".join(f"delete {u} F{i:02d}\n" for u in ("ann", "bob", "cat") for i in range(20)))
    before = r.dump()
    r.start()
    wait_for(lambda: _refused(m), timeout=30 * SLOW, what="channel stopped by delete-limit")
    st = m.status("r1")
    assert "sync_delete_limit" in st["last_error"], st
    # refused where it was decided: by the master's pass, or (resuming
    # from the cursor, the records replayed) by the replica's own limit
    assert "DELETE LIMIT" in m.log() + r.log()
    # the replica is untouched
    assert r.dump() == before
    assert len(_mailboxes(before, "ann")) == 41
    # a later retry is refused again (no silent release)
    _release_and_converge(m, r)
    assert len(_mailboxes(r.dump(), "ann")) == 21
    # the allowance was for one pass: the thresholds apply again
    assert r.quit() == 0
    m.drv("".join(f"delete {u} F{i:02d}\n" for u in ("ann", "bob", "cat") for i in range(20, 38)))
    before = r.dump()
    r.start()
    wait_for(lambda: _refused(m), timeout=30 * SLOW, what="stopped again")
    assert r.dump() == before
    _release_and_converge(m, r)


def test_fraction_of_one_users_mailboxes(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd dan\n" + "".join(f"create dan G{i}\n" for i in range(9)))
    converged(m, r)
    assert r.quit() == 0
    # 6 of dan's 10 mailboxes: more than half
    m.drv("".join(f"delete dan G{i}\n" for i in range(6)))
    before = r.dump()
    r.start()
    wait_for(lambda: _refused(m), timeout=30 * SLOW, what="stopped by sync_delete_fraction")
    assert "sync_delete_fraction" in m.status("r1")["last_error"]
    assert r.dump() == before
    _release_and_converge(m, r)
    assert _mailboxes(r.dump(), "dan") == {"INBOX", "G6", "G7", "G8"}


def test_user_deletions_per_pass(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    m.drv("".join(f"useradd u{i}\nappend u{i} INBOX 100 u{i}\n" for i in range(7)))
    converged(m, r)
    assert r.quit() == 0
    m.drv("".join(f"userdel u{i}\n" for i in range(6)))   # 6 > sync_user_delete_limit 5
    before = r.dump()
    r.start()
    wait_for(lambda: _refused(m), timeout=30 * SLOW, what="stopped by sync_user_delete_limit")
    assert "sync_user_delete_limit" in m.status("r1")["last_error"]
    assert r.dump() == before
    _release_and_converge(m, r)


def test_mailbox_missing_on_master_without_tombstone_is_left_alone(procs, tmp_path):
    """Mailbox-list corruption on the master: rows removed by hand (no
    tombstone).  The replica keeps the mailbox and its messages, and the
    master reports a master-side inconsistency."""
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd eve\ncreate eve Keep\nappend eve Keep 100 k1\nappend eve Keep 100 k2\n"
          "create eve Also\nappend eve INBOX 100 i1\n")
    converged(m, r)
    dbs = [p for p in m.root.rglob("user.db") if "eve" in str(p.parent)]
    assert len(dbs) == 1, list(m.root.rglob("user.db"))
    db = sqlite3.connect(str(dbs[0]), timeout=30)
    try:
        db.execute("delete from mailboxes where name in ('Keep', 'Also')")
        db.commit()
    finally:
        db.close()
    before = r.dump("eve")
    assert {"Keep", "Also"} <= _mailboxes(before, "eve")
    # a full pass over eve: nothing may be deleted on the replica
    cp = run([binpath("sync-client"), "-C", m.conf, "-n", "r1", "-u", "eve"], check=False)
    assert cp.returncode == 1, cp.stderr
    assert cp.stderr.count("kind=replica_only_mailbox") >= 2, cp.stderr
    after = r.dump("eve")
    assert after == before


def _user_db(server, user):
    dbs = [p for p in server.root.rglob("user.db") if user in p.parent.name]
    assert len(dbs) == 1, list(server.root.rglob("user.db"))
    return dbs[0]


def _fill(m, user):
    m.drv(f"useradd {user}\nappend {user} INBOX 300 {user}i1\nappend {user} INBOX 400 {user}i2\n"
          f"flags {user} INBOX 2:2 + \\Seen\ncreate {user} Work\nappend {user} Work 500 {user}w1\n"
          f"create {user} Work/Old\nappend {user} Work/Old 200 {user}o1\n")


def test_mboxlist_rows_removed_then_restored_from_replica(procs, tmp_path):
    """Rows removed from the master's user.db with sqlite3 (no tombstones):
    replication deletes nothing on the replica and reports it; check
    --repair plus restore-from brings the master back from its replica."""
    m, (r,) = pair(procs, tmp_path)
    _fill(m, "fay")
    converged(m, r)
    good = r.dump("fay")
    db = sqlite3.connect(str(_user_db(m, "fay")), timeout=30)
    try:
        db.execute("delete from mailboxes where name in ('Work', 'Work/Old')")
        db.commit()
    finally:
        db.close()
    m.drv("append fay INBOX 100 after\n")   # the master goes on working
    cp = run([binpath("sync-client"), "-C", m.conf, "-n", "r1", "-u", "fay"], check=False)
    assert cp.returncode == 1 and "kind=replica_only_mailbox" in cp.stderr, cp.stderr
    rd = r.dump("fay")
    assert {"Work", "Work/Old"} <= _mailboxes(rd, "fay")
    for line in good.splitlines():
        if "guid=" in line:
            assert line in rd or "INBOX" in line
    ctl(m.conf, "check", "--repair", "fay", check=False)
    cp = ctl(m.conf, "restore-from", "r1", "fay", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    assert "restored user fay" in cp.stdout
    converged(m, r, user="fay")
    assert {"INBOX", "Work", "Work/Old"} <= _mailboxes(m.dump("fay"), "fay")
    cp = ctl(m.conf, "verify", "fay", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_truncated_user_db_deletes_nothing_and_restores(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    _fill(m, "gus")
    converged(m, r)
    good = r.dump("gus")
    path = _user_db(m, "gus")
    for extra in ("-wal", "-shm"):
        p = path.with_name(path.name + extra)
        if p.exists():
            p.unlink()
    with open(path, "r+b") as f:
        f.truncate(4096)
    cp = run([binpath("sync-client"), "-C", m.conf, "-n", "r1", "-u", "gus"], check=False)
    assert cp.returncode != 0, cp.stderr
    assert "gus" in cp.stderr
    assert r.dump("gus") == good          # nothing deleted on the replica
    cp = ctl(m.conf, "check", "--repair", "gus", check=False)
    cp = ctl(m.conf, "restore-from", "r1", "gus", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    converged(m, r, user="gus")
    md = m.dump("gus")
    for g in re.findall(r"guid=([0-9a-f]{40})", good):
        assert g in md
    cp = ctl(m.conf, "verify", "gus", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_undelete_restores_messages_and_uids_on_both_sides(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path)
    m.drv("useradd hal\ncreate hal Keep\nappend hal Keep 300 h1\nappend hal Keep 300 h2\n"
          "append hal Keep 300 h3\nexpunge hal Keep 2:2\nflags hal Keep 3:3 + \\Flagged\n")
    converged(m, r)
    before = m.dump("hal")
    keep_lines = [l for l in before.splitlines() if "record uid=" in l]
    m.drv("delete hal Keep\n")
    converged(m, r)
    assert "Keep" not in _mailboxes(r.dump("hal"), "hal")
    cp = ctl(m.conf, "undelete", "hal", "Keep", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    converged(m, r, user="hal")
    after_m, after_r = m.dump("hal"), r.dump("hal")
    assert "Keep" in _mailboxes(after_m, "hal") and "Keep" in _mailboxes(after_r, "hal")
    # the same messages under the same UIDs, flags kept, on both sides
    for line in keep_lines:
        uid_guid = re.search(r"uid=\d+ guid=[0-9a-f]{40}", line).group(0)
        assert uid_guid in after_m and uid_guid in after_r, (line, after_r)
    assert re.search(r"record uid=3 .*flags=\(\\Flagged\)", after_r), after_r
    # a second undelete is refused: the name is live
    cp = ctl(m.conf, "undelete", "hal", "Keep", check=False)
    assert cp.returncode == 5, cp.stderr
    cp = ctl(m.conf, "undelete", "hal", "Nope", check=False)
    assert cp.returncode == 4, cp.stderr
    cp = ctl(m.conf, "verify", "hal", check=False)
    assert cp.returncode == 0, cp.stdout + cp.stderr


def test_deleted_mailbox_held_on_both_sides_then_purged(procs, tmp_path):
    """delete_hold_days: a deletion is noted in <root>/deleted/<user>/ on
    the master and, when APPLY DELETE arrives, on the replica; the purge
    (castorctl purge-deleted, the EVENTS entry) removes it only after the
    hold, and undelete works until then."""
    m, (r,) = pair(procs, tmp_path, conf_extra="delete_hold_days: 2")
    m.drv("useradd kim\ncreate kim Old\nappend kim Old 100 o0\n")
    converged(m, r)
    uid = re.search(r'mailbox "Old" uniqueid=([0-9a-f]{32})', m.dump("kim")).group(1)
    m.drv("delete kim Old\n")
    converged(m, r)
    notes = [n.root / "deleted" / "kim" / uid for n in (m, r)]
    wait_for(lambda: all(p.exists() for p in notes), timeout=10 * SLOW, what="deletion notes")
    for p in notes:
        assert re.match(rf'^time=\d+ user=kim mailbox={uid} name="Old" uidvalidity=\d+ '
                        r'deleted_modseq=\d+\n$', p.read_text()), p.read_text()
    t0 = int(notes[0].read_text().split()[0].split("=")[1])
    # within the hold: nothing purged, still undeletable
    cp = ctl(m.conf, "purge-deleted", "--now", str(t0 + 86400), "--all")
    assert "purged 0 deleted mailboxes, 1 held" in cp.stdout, cp.stdout
    assert notes[0].exists()
    # after it: the tombstone and its note are gone; undelete has nothing left
    cp = ctl(m.conf, "purge-deleted", "--now", str(t0 + 3 * 86400), "--all")
    assert "purged 1 deleted mailboxes, 0 held" in cp.stdout, cp.stdout
    assert not notes[0].exists()
    cp = ctl(m.conf, "undelete", "kim", "Old", check=False)
    assert cp.returncode == 4, cp.stderr
