"""bench/peers - one module per system under test.  Each exposes a Peer subclass
that lays out a master + replica pair on loopback under a temporary directory,
starts, reconfigures and stops it, and answers the few system-specific
questions a benchmark asks (recipient names, folder names, how to run a full
sync, which pid is the master).  See base.py for the interface."""
