"""LMTP across a failover: a master and a replica (castorctl init roots,
rolling sync-client, syncd) with lmtpd on both.  A message delivered to the
master replicates with its place in the message-id index, so when the MTA
retries it against the promoted replica it is accepted and stored once;
while still a replica, lmtpd refuses with 4xx."""
import smtplib

from castor_mail import lmtp_send
from conftest import free_ports
from repl_util import SLOW, converged, pair

MSG = (b"From: s@example.org\r\nTo: alice@example.org\r\nSubject: failover\r\n"
       b"Message-ID: <retry-after-failover@example.org>\r\n\r\nbody\r\n")


def lmtp(port):
    c = smtplib.LMTP("127.0.0.1", port, timeout=20 * SLOW)
    c.ehlo("mta.test")
    return c


def test_duplicate_suppression_survives_failover(procs, tmp_path):
    m, (r,) = pair(procs, tmp_path, start=False)
    mport = free_ports(2)
    rport = mport + 1
    m.add_services(f'  lmtp cmd="lmtpd" listen="127.0.0.1:{mport}"', section="SERVICES")
    r.add_services(f'  lmtp cmd="lmtpd" listen="127.0.0.1:{rport}"', section="SERVICES")
    r.start()
    m.start()
    m.drv("useradd alice pw\n")
    c = lmtp(mport)
    assert lmtp_send(c, "s@example.org", ["alice"], MSG)[0][0] == 250
    c.quit()
    converged(m, r)

    # the replica refuses deliveries with a temporary error
    c = lmtp(rport)
    code, resp = c.mail("s@example.org")
    assert code == 451 and resp.startswith(b"4.3.0"), resp
    c.quit()

    # failover: the master is gone, the replica is promoted (a higher epoch)
    assert m.quit() == 0
    _, epoch = r.server_row()
    r.set_server_row("master", epoch + 1)

    # the MTA retries the same message against the new master: 250, stored once
    c = lmtp(rport)
    rep = lmtp_send(c, "s@example.org", ["alice"], MSG.replace(b"Subject: failover", b"Subject: retried"))
    assert rep[0][0] == 250 and "duplicate suppressed" in rep[0][1], rep
    # a new message is delivered normally on the promoted server
    rep = lmtp_send(c, "s@example.org", ["alice"], MSG.replace(b"retry-after-failover", b"new"))
    assert rep[0][0] == 250 and "duplicate" not in rep[0][1], rep
    c.quit()
    d = r.dump("alice", full=True)
    assert d.count("  record uid=") == 2, d
