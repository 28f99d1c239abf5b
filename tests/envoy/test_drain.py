"""Draining long-lived connections (issue 29) on real parts: a stock Envoy over ADS reporting
its load to the control plane, an app host holding a WebSocket opened through Envoy, and
``rollway serverset drain`` as a deploy tool runs it. The host's member is marked STOPPING
(no new request goes to it: Envoy holds it as DRAINING), the fleet converges, and the member
stays until no Envoy has anything open to the host (Envoy's load reports, per endpoint), or
until ``--drain-timeout`` passes."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from rollway.envoy import bootstrap as ec
from rollway.sources.serverset import member_json

from conftest import wait_for
from envoy_harness import Backends, EnvoyProcess, WebSocketBackend, free_port, open_websocket
from harness import Replica, fleet_holds

pytestmark = [pytest.mark.envoy]
PATH = "/d/prod"


class Edge:
    """One replica on the file store, one Envoy, the WebSocket host (v1) and two plain hosts
    (v1, v2)."""

    def __init__(self, tmp_path):
        self.store_url = f"file://{tmp_path}/store"
        self.replica = Replica(self.store_url)
        self.plane = self.replica.plane
        self.plane.push(json.dumps({"service": "web", "stages": [
            {"name": "prod", "weight": 1, "mode": "rolling", "serverset": PATH}]}), 0, "alice", "drains")
        self.ws = WebSocketBackend("v1#ws")
        self.plain = Backends(["v1#1", "v2#0"])
        self.members = {"ws": self.replica.announce(PATH, member_json("127.0.0.1", self.ws.port, "v1"))}
        listen, admin = free_port(), free_port()
        self.envoy = EnvoyProcess(ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=self.replica.xds.port,
                                                   node_id="edge-1", listen_port=listen, admin_port=admin),
                                  tmp_path, listen, admin).start()

    def add_hosts(self) -> None:
        for name in ("v1#1", "v2#0"):
            self.members[name] = self.replica.announce(PATH, member_json(*self.plain.address(name),
                                                                         name.split("#")[0]))
        wait_for(lambda: self.holds({"v1": 2.0, "v2": 1.0}), timeout=30,
                 what="v1 on two hosts and v2 on one, on the Envoy")

    def holds(self, capacity: dict[str, float]) -> bool:
        return fleet_holds(self.plane, "web", capacity, envoys=1)

    def ws_member_present(self) -> bool:
        return any(json.loads(d)["serviceEndpoint"]["port"] == self.ws.port
                   for d in self.replica.store.read_members(PATH).values())

    def drain(self, *extra: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "rollway.cli.main", "serverset", "drain", "--store",
                                 self.store_url, "--path", PATH, "--host", "127.0.0.1", "--port", str(self.ws.port),
                                 "--service", "web", "--server", f"127.0.0.1:{self.replica.server.api_port}",
                                 "--json", *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def close(self) -> None:
        self.envoy.stop()
        for member in self.members.values():
            member.close()
        self.replica.close()
        self.ws.close()
        self.plain.close()


@pytest.fixture
def edge(tmp_path):
    made = Edge(tmp_path)
    yield made
    made.close()


def open_on_the_ws_host(edge: Edge):
    """A WebSocket through Envoy while the WebSocket host is v1's only host."""
    wait_for(lambda: edge.holds({"v1": 1.0}), timeout=30, what="v1 on the WebSocket host")
    sock = open_websocket(edge.envoy.listen_port)
    sock.sendall(b"ping")
    assert sock.recv(16) == b"ping"           # through Envoy to the host, and back
    assert edge.ws.open == 1
    return sock


def test_a_drain_waits_for_the_open_websocket_and_removes_the_member_once_it_closes(edge):
    sock = open_on_the_ws_host(edge)
    edge.add_hosts()
    wait_for(lambda: edge.plane.open_requests("web", [("127.0.0.1", edge.ws.port)])[0][("127.0.0.1", edge.ws.port)]
             == 1, timeout=15, what="the Envoy's load report to show the open WebSocket")
    drain = edge.drain("--drain-timeout", "120")
    try:
        # Marked STOPPING, the fleet converged (no new request goes to the host) ...
        wait_for(lambda: edge.holds({"v1": 1.0, "v2": 1.0}), timeout=30, what="the WebSocket host out of capacity")
        for _ in range(20):                    # ... requests go elsewhere, and the socket stays
            response = edge.envoy.get("/")
            assert response.status == 200 and response.json["backend"] != "v1#ws"
        time.sleep(8)                          # longer than the drain's wait for fresh reports
        assert drain.poll() is None and edge.ws_member_present(), "the member went while a WebSocket was open"
        # The DRAINING host is still in Envoy's cluster, so its load reports still count the socket.
        assert edge.plane.open_requests("web", [("127.0.0.1", edge.ws.port)]) == ({("127.0.0.1", edge.ws.port): 1}, [])
        sock.sendall(b"still")
        assert sock.recv(16) == b"still"       # the connection lives on through the drain
    finally:
        sock.close()
    out, err = drain.communicate(timeout=60)
    assert drain.returncode == 0, err
    result = json.loads(out)
    assert result["open_at_removal"] == 0 and result["unreported"] == [] and result["waited_seconds"] >= 8
    assert not edge.ws_member_present()
    assert edge.ws.accepted == 1               # no new connection ever reached the draining host


def test_a_drain_removes_the_member_at_its_deadline_with_the_socket_still_open(edge):
    sock = open_on_the_ws_host(edge)
    edge.add_hosts()
    wait_for(lambda: edge.plane.open_requests("web", [("127.0.0.1", edge.ws.port)])[0][("127.0.0.1", edge.ws.port)]
             == 1, timeout=15, what="the Envoy's load report to show the open WebSocket")
    try:
        started = time.monotonic()
        drain = edge.drain("--drain-timeout", "6")
        out, err = drain.communicate(timeout=90)
        assert drain.returncode == 0, err
        result = json.loads(out)
        assert result["open_at_removal"] == 1, result          # what the deadline cut short, said
        assert time.monotonic() - started >= 6
        assert not edge.ws_member_present()
        assert edge.ws.open == 1                              # the host may now stop; it is not stopped for it
    finally:
        sock.close()


def test_drain_timeout_zero_removes_the_member_after_the_gate_and_a_bad_timeout_is_refused(edge):
    sock = open_on_the_ws_host(edge)
    edge.add_hosts()
    try:
        refused = edge.drain("--drain-timeout", "-1")
        _, err = refused.communicate(timeout=30)
        assert refused.returncode == 2 and "--drain-timeout" in err
        assert edge.ws_member_present()                         # nothing changed
        quick = edge.drain("--drain-timeout", "0")
        out, err = quick.communicate(timeout=60)
        assert quick.returncode == 0, err
        assert json.loads(out)["waited_seconds"] == 0.0
        assert not edge.ws_member_present()
    finally:
        sock.close()
