"""Stopping an xDS server under live ADS streams (what every benchmark and `rollway serve`
does at exit) finishes its tasks before closing its loop: the process ends without
"Task was destroyed but it is pending!" or "Event loop is closed" tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow]

SCRIPT = """
import sys, time, tempfile
sys.path.insert(0, {tests!r})
from rollway.plane.control_plane import ControlPlane
from rollway.sources.serverset import member_json
from rollway.sources.store import open_store
from rollway.xds.server import XdsThread
from ads_client import AdsClient
store = open_store(f"file://{{tempfile.mkdtemp()}}/store"); store.start()
plane = ControlPlane(store, debounce=0.02); plane.start()
plane.push({{"service": "web", "stages": [{{"name": "prod", "weight": 1, "mode": "rolling",
            "serverset": "/discovery/web/prod"}}]}}, 0, "t", "t")
store.announce("/discovery/web/prod", member_json("127.0.0.1", 9000, "v1"))
xds = XdsThread(plane, 0)
clients = [AdsClient(f"127.0.0.1:{{xds.port}}", f"e{{i}}", mode="ack").start() for i in range(5)]
deadline = time.monotonic() + 20
while time.monotonic() < deadline and not all(c.responses for c in clients):
    time.sleep(0.05)
assert all(c.responses for c in clients), "every client got a config"
xds.stop()          # the clients are still connected
plane.stop(); store.stop()
print("stopped", flush=True)
"""


def test_an_xds_server_stopped_under_live_streams_exits_quietly():
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(tests=str(Path(__file__).parents[1]))],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "stopped" in out.stdout, out.stderr[-3000:]
    for noise in ("Traceback", "Task was destroyed", "Event loop is closed"):
        assert noise not in out.stderr, out.stderr[-3000:]
