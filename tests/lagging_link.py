"""A TCP link that delivers what the server sends ``delay`` seconds late, in order: an
Envoy behind it hears every xDS response late while its ACKs go out at once, as over a
slow or congested path. The control plane under test runs unchanged (no test-only hooks).

Usage::

    link = LaggingLink(upstream_port=xds_port, delay=0.4)
    bootstrap = ads_bootstrap(xds_port=link.port, ...)
    link.close()
"""

from __future__ import annotations

import queue
import socket
import threading
import time


class LaggingLink:
    def __init__(self, upstream_port: int, delay: float, host: str = "127.0.0.1"):
        self.upstream, self.delay = (host, upstream_port), delay
        self.listener = socket.create_server((host, 0))
        self.port = self.listener.getsockname()[1]
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, name="lagging-link", daemon=True).start()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()          # the control plane is down: the Envoy retries
                continue
            server.settimeout(None)
            self.sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()
            due: queue.Queue = queue.Queue()
            threading.Thread(target=self._read_late, args=(server, due), daemon=True).start()
            threading.Thread(target=self._write_late, args=(due, client), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shut(sink)

    def _read_late(self, source: socket.socket, due: queue.Queue) -> None:
        try:
            while data := source.recv(65536):
                due.put((time.monotonic() + self.delay, data))
        except OSError:
            pass
        finally:
            due.put((time.monotonic() + self.delay, b""))

    @staticmethod
    def _write_late(due: queue.Queue, sink: socket.socket) -> None:
        while True:
            when, data = due.get()
            time.sleep(max(0.0, when - time.monotonic()))
            if not data:
                _shut(sink)
                return
            try:
                sink.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for sock in self.sockets:
            _shut(sock)
            sock.close()


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
