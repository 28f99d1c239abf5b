"""The leader SIGKILLed mid-deploy: two `rollway serve` replicas, a real Envoy on each (with
the other replica as its fallback), browsers alternating between the two Envoys, and a
deploy tool paced by the deploy gate and draining old hosts. The surviving replica takes
over from the stored deploy state: the deploy completes with no bounce and at most one
reload per session, on ZooKeeper and on the file store."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys
import threading
import time

import grpc
import pytest

from rollway.envoy.bootstrap import ads_bootstrap
from rollway.proto import routemap_pb2 as pb
from rollway.proto import routemap_pb2_grpc as pb_grpc
from rollway.sources.store import RouteMapRecord
from rollway.tools.demo import AppHost, Browser
from rollway.tools.drain import drain

from conftest import wait_for
from envoy_harness import EnvoyProcess, free_port, stop_process

pytestmark = [pytest.mark.envoy]

PATH = "/discovery/web/prod"
ROUTEMAP = {"service": "web", "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": PATH}]}
HOSTS, BATCH, SESSIONS = 6, 2, 30


class Replica:
    def __init__(self, name: str, store_url: str, tmp_path):
        self.name = name
        self.api_port, self.xds_port, self.http_port = free_port(), free_port(), free_port()
        self.log = open(tmp_path / f"{name}.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rollway.cli.main", "serve", "--store", store_url, "--replica-id", name,
             "--api-port", str(self.api_port), "--xds-port", str(self.xds_port), "--http-port", str(self.http_port),
             "--session-timeout", "3", "--ack-timeout", "10", "--startup-grace", "1", "--debounce", "0.05"],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.stub = pb_grpc.RouteMapServiceStub(grpc.insecure_channel(f"127.0.0.1:{self.api_port}"))

    def status(self) -> pb.Status:
        stream = self.stub.WatchStatus(pb.WatchStatusRequest(service="web"), timeout=5)
        status = next(iter(stream))
        stream.cancel()
        return status

    def gate(self, timeout: float = 45.0):
        def wait() -> tuple[bool, list[str]]:
            r = self.stub.WaitConverged(pb.WaitConvergedRequest(service="web", timeout_seconds=timeout),
                                        timeout=timeout + 10)
            return r.converged, list(r.outstanding)
        return wait

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def _answers(replica: Replica) -> bool:
    """The operator API serves a config and the xDS port accepts connections (an Envoy
    started before that would fail over to the other replica at once)."""
    try:
        with socket.create_connection(("127.0.0.1", replica.xds_port), timeout=1):
            pass
        return bool(replica.status().filter_config)
    except (grpc.RpcError, OSError):
        return False


def test_the_leader_killed_mid_deploy_loses_no_step_and_bounces_no_session(store_url, open_stores, tmp_path):
    # The agent's session (ZooKeeper) or lease (file store) as the replicas': --session-timeout 3.
    agent = open_stores(store_url, **({"session_timeout": 3} if store_url.startswith("zk") else {"lease_seconds": 3}))
    agent.write_routemap(RouteMapRecord("web", 1, ROUTEMAP, "test", "web", time.time()), 0)
    hosts = [AppHost(agent, "prod", PATH, "v1", i) for i in range(HOSTS)]
    replicas = {name: Replica(name, store_url, tmp_path) for name in ("r1", "r2")}
    envoys, browsers, stop = [], [Browser() for _ in range(SESSIONS)], threading.Event()
    try:
        for r in replicas.values():
            wait_for(lambda r=r: _answers(r), timeout=30, what=f"replica {r.name} to serve")
        for primary, fallback in (("r1", "r2"), ("r2", "r1")):
            listen, admin = free_port(), free_port()
            bootstrap = ads_bootstrap(xds_host="127.0.0.1", xds_port=replicas[primary].xds_port,
                                      xds_fallback=[("127.0.0.1", replicas[fallback].xds_port)],
                                      node_id=f"envoy-{primary}", listen_port=listen, admin_port=admin)
            envoys.append(EnvoyProcess(bootstrap, tmp_path, listen, admin).start())
        wait_for(lambda: all(Browser().request(e.listen_port) == "v1" for e in envoys), timeout=30,
                 what="both Envoys routing")
        # Each Envoy on its own replica, and each replica sees both (the other's through its
        # fleet record, written at most every 100 ms).
        placement = {"envoy-r1": "r1", "envoy-r2": "r2"}
        for r in replicas.values():
            wait_for(lambda r=r: {e.node_id: e.replica for e in r.status().envoys} == placement, timeout=15,
                     what=f"replica {r.name} to see both Envoys on their own replicas")

        def browse(browser: Browser, rng: random.Random) -> None:
            turn = rng.randrange(2)
            while not stop.is_set():
                browser.request(envoys[turn].listen_port)   # every session alternates between the Envoys
                turn = 1 - turn
                stop.wait(rng.uniform(0.05, 0.2))
        threads = [threading.Thread(target=browse, args=(b, random.Random(i)), daemon=True)
                   for i, b in enumerate(browsers)]
        for thread in threads:
            thread.start()
        time.sleep(2)

        leader = replicas["r1"].status().leader
        survivor = replicas["r2" if leader == "r1" else "r1"]
        for step in range(HOSTS // BATCH):
            olds = [h for h in hosts if h.version == "v1"][:BATCH]
            hosts += [AppHost(agent, "prod", PATH, "v2", 10 + step * BATCH + i) for i in range(BATCH)]
            gate = replicas[leader].gate() if step == 0 else survivor.gate()
            assert gate()[0]
            if step == 1:
                # Mid-deploy: v1 and v2 both live, the direction forward. The leader dies hard.
                config = json.loads(survivor.status().filter_config)
                assert config["stages"][0]["direction"] == {"state": "forward", "target": "v2"}
                replicas[leader].process.send_signal(signal.SIGKILL)
                replicas[leader].process.wait(10)
                wait_for(lambda: survivor.status().leader == survivor.name, timeout=30,
                         what="the survivor to take over")
                gate = survivor.gate()
            drain(agent, PATH, [("127.0.0.1", h.port) for h in olds], gate)
            for h in olds:
                h.stop()
                hosts.remove(h)
            time.sleep(1)
        assert survivor.gate()()[0]
        time.sleep(4)                       # every session makes a few more requests
        stop.set()
        for thread in threads:
            thread.join(10)
        config = json.loads(survivor.status().filter_config)
        assert [v["name"] for v in config["stages"][0]["versions"]] == ["v2"]
        assert sum(b.bounces for b in browsers) == 0, [b for b in browsers if b.bounces]
        assert max(b.refreshes for b in browsers) <= 1
        assert {b.last for b in browsers} == {"v2"} and {b.app_version for b in browsers} == {"v2"}
        requests, errors = sum(b.requests for b in browsers), sum(b.errors for b in browsers)
        assert requests > 20 * SESSIONS and errors == 0, (requests, errors)
    finally:
        stop.set()
        for envoy in envoys:
            envoy.stop()
        for r in replicas.values():
            r.stop()
        for h in hosts:
            h.stop()
