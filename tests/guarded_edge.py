"""The bad-build guard's harness (tests/envoy/test_guard.py, benchmarks/guard.py): two
control-plane replicas on one store, a stock Envoy on each (its load reports go to its own
replica), app hosts per (stage, version) failing a share of requests, and browser sessions
that cross between the Envoys on every request."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time

from rollway.envoy import bootstrap as ec
from rollway.model.deploy_state import DeployState
from rollway.sources.serverset import member_json
from rollway.tools.session import BrowserSession

from envoy_harness import EnvoyProcess, FailingBackend, free_port
from harness import Replica, fleet_holds

TOKEN = "guard-operator-token"
SESSIONS = 200


class GuardedEdge:
    """Replicas cp-a and cp-b on one store, Envoy edge-1 on cp-a and edge-2 on cp-b, and app
    hosts per (stage, version) failing ``failing[version]`` requests in 100 (2 by default)."""

    def __init__(self, tmp_path, store_url: str, routemap: dict, failing: dict[str, int]):
        self.replicas = [Replica(store_url, token=TOKEN, replica_id=name, dashboard=True) for name in ("cp-a", "cp-b")]
        self.plane = self.replicas[0].plane
        self.plane.push(json.dumps(routemap), 0, "alice", "web with a guard")
        self.failing = failing
        self.first_error: dict[str, float] = {}     # version -> when it first answered a 500 (monotonic)
        self.hosts: dict[str, FailingBackend] = {}
        self.members: dict[str, object] = {}
        self.envoys = []
        for i, replica in enumerate(self.replicas):
            listen, admin = free_port(), free_port()
            bootstrap = ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=replica.xds.port, node_id=f"edge-{i + 1}",
                                         listen_port=listen, admin_port=admin)
            self.envoys.append(EnvoyProcess(bootstrap, tmp_path, listen, admin))

    def start(self) -> None:
        """The Envoys, once the first hosts are announced."""
        for envoy in self.envoys:
            envoy.start()

    def set_hosts(self, stage: str, counts: dict[str, int]) -> None:
        """The deploy tool: ``stage`` runs exactly counts[version] hosts of each version."""
        for version, count in counts.items():
            for i in range(8):
                key = f"{stage}.{version}#{i}"
                if i < count and key not in self.members:
                    if key not in self.hosts:
                        self.hosts[key] = FailingBackend(key, self.failing.get(version, 2))
                    self.members[key] = self.replicas[0].announce(
                        f"/d/{stage}", member_json("127.0.0.1", self.hosts[key].port, version))
                elif i >= count and key in self.members:
                    self.members.pop(key).close()

    def settled(self) -> bool:
        """Both Envoys ACKed the current config and nothing waits for admission."""
        return fleet_holds(self.plane, "web", envoys=2)

    def halted(self) -> dict:
        data, _ = self.plane.store.read_deploy_state("web")
        return DeployState.from_json(data).halts if data else {}

    def halt_reached(self, version: str) -> bool:
        """Every Envoy holds a config in which ``version`` is halted wherever it is live."""
        config = self.plane.filter_config("web")
        live = [v for s in config.rolling_stages() for v in s.versions if v.name == version]
        return bool(live) and all(v.halted for v in live) and self.settled()

    def visit(self, sessions: list[BrowserSession], log: dict, round_no: int) -> None:
        """One request per session, each through the Envoy the other one used last time."""
        for i, session in enumerate(sessions):
            envoy = self.envoys[(i + round_no) % 2]
            conn = http.client.HTTPConnection("127.0.0.1", envoy.listen_port, timeout=10)
            try:
                conn.request("GET", "/", headers=session.headers())
                response = conn.getresponse()
                body = response.read()
                headers = response.getheaders()
            finally:
                conn.close()
            backend = json.loads(body)["backend"] if response.status in (200, 500) else None
            stage, version = backend.split("#")[0].split(".") if backend else (None, None)
            if response.status == 500 and version is not None:
                self.first_error.setdefault(version, time.monotonic())
            refreshed = session.answered(response.status, headers, version)
            log.setdefault(id(session), []).append((stage, version, response.status, refreshed is not None))

    def visit_until_halted(self, sessions: list[BrowserSession], log: dict, rounds: int = 80) -> int:
        """Rounds of visits, from round 1, until the deploy state records a halt (at most
        ``rounds``); returns the next round's number."""
        round_no = 1
        while not self.halted() and round_no < rounds:
            self.visit(sessions, log, round_no)
            round_no += 1
        return round_no

    def metrics(self) -> str:
        """cp-a's /metrics."""
        import urllib.request

        url = f"http://127.0.0.1:{self.replicas[0].server.http_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read().decode()

    def rollway(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "rollway.cli.main", *args, "--server",
                               f"127.0.0.1:{self.replicas[0].server.api_port}"], capture_output=True, text=True,
                              timeout=60)

    def close(self) -> None:
        for envoy in self.envoys:
            envoy.stop()
        for member in self.members.values():
            member.close()
        for replica in reversed(self.replicas):
            replica.close()
        for host in self.hosts.values():
            host.close()


def rolling(name: str, weight: float, **extra) -> dict:
    return {"name": name, "weight": weight, "mode": "rolling", "serverset": f"/d/{name}", **extra}
