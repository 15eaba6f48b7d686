"""A loopback TCP proxy for fault injection (no tests here):
127.0.0.1:port -> 127.0.0.1:upstream, one thread.

- blackhole(): nothing is forwarded either way and new connections are
  accepted and held (the sockets stay open: a path that silently drops);
- reset(): every open connection is closed with a RST on both sides (new
  ones are forwarded as usual);
- refuse(): the listener is closed (connect() is refused) and every open
  connection is reset;
- resume(): forwarding again, including what queued meanwhile."""
import selectors
import socket
import struct
import threading
import time

from conftest import free_ports


class Proxy:
    def __init__(self, upstream, port=None):
        self.upstream = upstream
        self.port = port or free_ports(1)
        self.sel = selectors.DefaultSelector()
        self.lsock = None
        self._listen()
        self.peer = {}
        self.holes = threading.Event()
        self.stop = threading.Event()
        self.accepted = 0
        self.lock = threading.Lock()
        self.todo = []          # "reset" / "refuse" / "listen", done by the thread
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _listen(self):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(200):
            try:
                s.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.05)
        else:
            raise OSError(f"proxy: cannot listen on {self.port} again")
        s.listen(16)
        self.lsock = s
        self.sel.register(s, selectors.EVENT_READ, None)

    def blackhole(self):
        self.holes.set()

    def reset(self):
        with self.lock:
            self.todo.append("reset")

    def refuse(self):
        with self.lock:
            self.todo.append("refuse")

    def resume(self):
        with self.lock:
            self.todo.append("listen")
        self.holes.clear()

    def close(self):
        self.stop.set()
        self.t.join(5)
        for s in list(self.peer):
            s.close()
        if self.lsock is not None:
            self.lsock.close()

    def _drop(self, s, rst=False):
        o = self.peer.pop(s, None)
        for x in (s, o):
            if x is None:
                continue
            try:
                self.sel.unregister(x)
            except (KeyError, ValueError):
                pass
            if rst:
                x.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            x.close()
        if o is not None:
            self.peer.pop(o, None)

    def _control(self):
        with self.lock:
            todo, self.todo = self.todo, []
        for what in todo:
            if what in ("reset", "refuse"):
                for s in list(self.peer):
                    if s in self.peer:
                        self._drop(s, rst=True)
            if what == "refuse" and self.lsock is not None:
                self.sel.unregister(self.lsock)
                self.lsock.close()
                self.lsock = None
            if what == "listen" and self.lsock is None:
                self._listen()

    def _run(self):
        while not self.stop.is_set():
            self._control()
            for key, _ in self.sel.select(0.05):
                s = key.fileobj
                if s is self.lsock:
                    c, _ = self.lsock.accept()
                    with self.lock:
                        self.accepted += 1
                    try:
                        u = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
                        u.settimeout(None)
                    except OSError:
                        c.close()   # the upstream is down: so is the path
                        continue
                    self.peer[c], self.peer[u] = u, c
                    self.sel.register(c, selectors.EVENT_READ, None)
                    self.sel.register(u, selectors.EVENT_READ, None)
                    continue
                if self.holes.is_set() or s not in self.peer:
                    continue   # leave it unread: it queues in the kernel
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    self._drop(s)
                    continue
                try:
                    self.peer[s].sendall(data)
                except OSError:
                    self._drop(s)
            if self.holes.is_set():
                time.sleep(0.02)   # readable sockets stay readable: do not spin
