#!/usr/bin/python3
"""bench/peers/syslogcatch.py - a minimal /dev/log receiver for a machine without a
syslog daemon (Cyrus logs only through syslog).  Appends every datagram, with a
wall-clock timestamp, to OUTFILE.  Exits after MAX_SECONDS (default 4 h) so it can
never outlive a forgotten benchmark for long.
usage: syslogcatch.py OUTFILE [SOCKET] [MAX_SECONDS]"""
import os
import socket
import sys
import time

out = sys.argv[1]
path = sys.argv[2] if len(sys.argv) > 2 else "/dev/log"
limit = float(sys.argv[3]) if len(sys.argv) > 3 else 4 * 3600
try:
    os.unlink(path)
except FileNotFoundError:
    pass
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(path)
os.chmod(path, 0o666)
s.settimeout(5)
end = time.monotonic() + limit
with open(out, "a", buffering=1) as f:
    while time.monotonic() < end:
        try:
            data = s.recv(65536)
        except socket.timeout:
            continue
        t = time.time()
        msg = data.decode("utf-8", "replace").rstrip("\n\0")
        if msg.startswith("<"):
            msg = msg[msg.find(">") + 1:]
        if len(msg) > 16 and msg[3] == " " and msg[6] == " ":
            msg = msg[16:]
        f.write("%s.%03d %s\n" % (time.strftime("%H:%M:%S", time.localtime(t)), int(t * 1000) % 1000, msg))
try:
    os.unlink(path)
except OSError:
    pass
