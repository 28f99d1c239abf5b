"""End to end: ZooKeeper -> control plane -> ADS -> two real Envoys -> HTTP backends."""

from __future__ import annotations

import json
import time

import pytest

from rollway.envoy import bootstrap as ec
from rollway.plane.control_plane import ControlPlane
from rollway.sources.serverset import member_json
from rollway.sources.store import open_store
from rollway.tools.session import BrowserSession
from rollway.xds.resources import ListenerSpec
from rollway.xds.server import XdsThread

from conftest import wait_for
from envoy_harness import Backends, EnvoyProcess, free_port
from harness import Replica
from lagging_link import LaggingLink

pytestmark = [pytest.mark.envoy]

HOSTS = 5
ROUTEMAP = {"service": "web", "stages": [
    {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/discovery/web/prod"}]}


class EnvoyPair:
    """ZooKeeper, a control plane with its xDS server, backends and two Envoys."""

    def __init__(self, zookeeper, tmp_path, delays=None, secrets_file=None, ack_timeout=30.0):
        self.tmp = tmp_path
        self.xds_port = free_port()          # fixed: a test restarts xDS on it
        self.replica = Replica(f"zk://{zookeeper.hosts}/e2e-{time.monotonic_ns()}", api=False, xds_port=self.xds_port,
                               secrets_file=secrets_file, ack_timeout=ack_timeout)
        self.store, self.plane, self.xds = self.replica.store, self.replica.plane, self.replica.xds
        self.agent = open_store(self.store.url)   # hosts announce through their own session
        self.agent.start()
        self.backends = Backends([f"{v}#{i}" for v in ("v1", "v2") for i in range(HOSTS)])
        self.members: dict[str, object] = {}
        # An Envoy given a delay hears every response that much late (a slow path to it).
        self.links = {node: LaggingLink(self.xds_port, delay) for node, delay in (delays or {}).items()}
        # Envoys report ready only once they hold a config: the route map comes first.
        self.plane.push(json.dumps(ROUTEMAP), 0, "alice", "web on ZooKeeper")
        self.set_hosts(0)
        self.envoys = {}
        for node in ("envoy-a", "envoy-b"):
            listen, admin = free_port(), free_port()
            port = self.links[node].port if node in self.links else self.xds_port
            bootstrap = ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=port, node_id=node,
                                         listen_port=listen, admin_port=admin, service="web")
            self.envoys[node] = EnvoyProcess(bootstrap, tmp_path, listen, admin).start()

    def set_hosts(self, v2_hosts: int) -> None:
        """The deploy tool: hosts 0..v2_hosts-1 run v2, the rest v1 (one member per host)."""
        for i in range(HOSTS):
            version = "v2" if i < v2_hosts else "v1"
            key = f"{version}#{i}"
            other = f"{'v1' if version == 'v2' else 'v2'}#{i}"
            if key not in self.members:
                self.members[key] = self.agent.announce("/discovery/web/prod",
                                                        member_json(*self.backends.address(key), version))
            if other in self.members:
                self.members.pop(other).close()

    def converged(self) -> bool:
        """Both Envoys ACKed the current snapshot of every type, with everything admitted."""
        status = {s["node_id"]: s for s in self.xds.xds.cache.envoy_status("web")}
        if set(status) != set(self.envoys):
            return False
        cache = self.xds.xds.cache
        for node, envoy_status in status.items():
            listener = ListenerSpec(port=self.envoys[node].listen_port, address="127.0.0.1")
            snapshot = cache.snapshot("web", listener)
            config = cache.configs[("web", listener)]
            if any(True for _ in config.announced()):
                return False
            if envoy_status["acked"] != {k.rsplit(".", 1)[-1]: v for k, v in snapshot.versions.items()}:
                return False
        return True

    def close(self) -> None:
        for envoy in self.envoys.values():
            envoy.stop()
        self.xds.stop()                     # a test may have restarted it: stop the one running
        for link in self.links.values():
            link.close()
        for member in self.members.values():
            member.close()
        self.agent.stop()
        self.replica.close()
        self.backends.close()


class Browser(BrowserSession):
    """A session (rollway.tools.session, the model the demo and the fleet test share) on
    either Envoy of the pair; every answer must be a 200."""

    def request(self, envoy: EnvoyProcess) -> str:
        response = envoy.get("/", self.headers())
        assert response.status == 200, response.body
        version = response.json["backend"].split("#")[0]
        self.answered(response.status, response.headers, version)
        return version


@pytest.fixture
def world(zookeeper, tmp_path):
    w = EnvoyPair(zookeeper, tmp_path, delays={"envoy-b": 0.4})  # envoy-b hears everything late
    yield w
    w.close()


def shares(world, browsers):
    counts = {}
    for i, b in enumerate(browsers):
        v = b.request(world.envoys["envoy-a" if i % 2 else "envoy-b"])
        counts[v] = counts.get(v, 0) + 1
    return {k: c / len(browsers) for k, c in counts.items()}


def moves(served: list[str]) -> list[tuple[str, str]]:
    return [(a, b) for a, b in zip(served, served[1:]) if a != b]


def test_a_rolling_deploy_through_two_envoys_never_bounces_a_session(world):
    wait_for(world.converged, timeout=30, what="both Envoys on the first config")
    browsers = [Browser() for _ in range(60)]
    for envoy in world.envoys.values():
        for b in browsers[:10]:
            assert b.request(envoy) == "v1"
    for step in range(1, HOSTS + 1):
        world.set_hosts(step)
        # Sessions keep alternating between the Envoys while they learn the step at
        # different times (envoy-b is 0.4 s behind).
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            for b in browsers:
                b.request(world.envoys["envoy-a"])
                b.request(world.envoys["envoy-b"])
        wait_for(world.converged, timeout=30, what=f"both Envoys on step {step}")
        got = shares(world, browsers * 4)
        expected = step / HOSTS
        assert abs(got.get("v2", 0) - expected) <= 0.25, (step, got)  # 60 sessions: coarse but real
    for b in browsers:
        assert all(m == ("v1", "v2") for m in moves(b.served)), b.served
        assert len(moves(b.served)) <= 1
        assert b.served[-1] == "v2"
    # ... and then a rollback, announced by the operator (capacity alone never turns a
    # deploy back), moves them back, once.
    world.plane.halt("web", "v2", True, "test", "rollback")
    for step in range(HOSTS - 1, -1, -1):
        world.set_hosts(step)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for b in browsers:
                b.request(world.envoys["envoy-a"])
                b.request(world.envoys["envoy-b"])
        wait_for(world.converged, timeout=30, what=f"both Envoys on rollback step {step}")
    for b in browsers:
        assert moves(b.served) in ([("v1", "v2"), ("v2", "v1")],), b.served
    assert all(s["nacks"] == 0 for s in world.xds.xds.cache.envoy_status("web"))


def test_endpoint_churn_moves_eds_and_ecds_but_not_the_listener(world):
    wait_for(world.converged, timeout=30, what="convergence")
    before = {s["node_id"]: dict(s["acked"]) for s in world.xds.xds.cache.envoy_status("web")}
    world.set_hosts(1)
    wait_for(lambda: any(v["name"] == "v2" for v in world.plane.filter_config("web").to_json()["stages"][0]["versions"]),
             what="the control plane to see v2")
    wait_for(world.converged, timeout=30, what="convergence after churn")
    after = {s["node_id"]: dict(s["acked"]) for s in world.xds.xds.cache.envoy_status("web")}
    # The operator API's status lists each connected Envoy with what it ACKed.
    from rollway.api.operator import status_message
    status = status_message(world.plane, "web")
    assert {e.node_id: dict(e.acked) for e in status.envoys} == after
    for node in before:
        assert after[node]["Listener"] == before[node]["Listener"]
        assert after[node]["RouteConfiguration"] == before[node]["RouteConfiguration"]
        assert after[node]["ClusterLoadAssignment"] != before[node]["ClusterLoadAssignment"]
        assert after[node]["TypedExtensionConfig"] != before[node]["TypedExtensionConfig"]


def test_a_config_the_filter_rejects_is_nacked_and_the_old_one_keeps_serving(zookeeper, tmp_path):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"rid-1": "a-routing-id-secret-of-enough-length"}))
    w = EnvoyPair(zookeeper, tmp_path, secrets_file=str(secrets))
    try:
        wait_for(w.converged, timeout=30, what="convergence")
        bad = json.loads(json.dumps(ROUTEMAP))
        bad["routing_id"] = {"signing_key_id": "rid-missing"}  # valid map, but no such key on the Envoys
        w.plane.push(json.dumps(bad), 1, "bob", "sign cookies with a key the Envoys lack")
        wait_for(lambda: all(s["nacks"] >= 1 for s in w.xds.xds.cache.envoy_status("web")), timeout=30,
                 what="both Envoys to NACK")
        status = w.xds.xds.cache.envoy_status("web")
        # Envoy's NACK carries its own summary; the module's reason, naming the field, is in
        # each Envoy's log.
        assert all("Failed to create filter config" in s["last_nack"] for s in status), status
        for envoy in w.envoys.values():
            assert "routing_id.signing_key_id: no secret named 'rid-missing'" in envoy.log_path.read_text()
        assert w.xds.xds.cache.nack_total >= 2
        for envoy in w.envoys.values():
            r = envoy.get("/")
            assert r.status == 200 and r.json["backend"].startswith("v1")
            assert len(r.set_cookies()["rw_rid"]) == 25  # the old, unsigned config still serves
    finally:
        w.close()


def test_envoys_keep_routing_without_the_control_plane_and_resync_when_it_returns(world):
    wait_for(world.converged, timeout=30, what="convergence")
    world.xds.stop()
    for _ in range(3):
        for envoy in world.envoys.values():
            assert envoy.get("/").json["backend"].startswith("v1")
    world.set_hosts(HOSTS)   # the deploy goes on while the control plane is away
    time.sleep(0.5)
    for envoy in world.envoys.values():
        assert envoy.get("/").json["backend"].startswith("v1")  # last config still serving
    world.xds = XdsThread(world.plane, world.xds_port)
    wait_for(world.converged, timeout=60, what="Envoys to reconnect and resync")
    for envoy in world.envoys.values():
        assert envoy.get("/").json["backend"].startswith("v2")


def test_two_replicas_on_one_zookeeper_behave_as_one(zookeeper):
    """Same ZooKeeper state -> the same snapshot versions on every replica (so an Envoy can
    move between replicas without spurious pushes), and a push on one reaches the other."""
    from rollway.xds.server import SnapshotCache

    url = f"zk://{zookeeper.hosts}/replicas"
    stores = [open_store(url) for _ in range(3)]
    for s in stores:
        s.start()
    a, b = ControlPlane(stores[0], debounce=0.02), ControlPlane(stores[1], debounce=0.02)
    a.start(refresh_interval=0.2)
    b.start(refresh_interval=0.2)
    try:
        a.push(json.dumps(ROUTEMAP), 0, "alice", "on replica a")
        hosts = [stores[2].announce("/discovery/web/prod", member_json("127.0.0.1", 9000 + i, "v1")) for i in range(3)]
        cache_a, cache_b = SnapshotCache(a), SnapshotCache(b)

        def same():
            try:
                return cache_a.snapshot("web", 10000).versions == cache_b.snapshot("web", 10000).versions and \
                    cache_a.configs[("web", ListenerSpec(port=10000))].stages[0].versions
            except Exception:
                return False
        wait_for(same, what="identical snapshots on both replicas")
        ramp = json.loads(json.dumps(ROUTEMAP))
        ramp["stages"][0]["weight"] = 3
        b.push(json.dumps(ramp), 1, "bob", "on replica b")
        wait_for(lambda: a.filter_config("web").to_json()["stages"][0]["weight"] == 3, what="replica a to follow b's push")
        wait_for(same, what="identical snapshots after the push")
        for h in hosts:
            h.close()
    finally:
        a.stop()
        b.stop()
        for s in stores:
            s.stop()


def test_deploy_wait_blocks_while_an_envoy_lags_and_returns_once_it_acks(zookeeper, tmp_path):
    import subprocess
    import sys

    from rollway.api.operator import serve_operator_api

    w = EnvoyPair(zookeeper, tmp_path, delays={"envoy-b": 2.0})   # envoy-b hears everything 2 s late
    api = serve_operator_api(w.plane, port=0, token=None)
    server = f"127.0.0.1:{api.rollway_port}"

    def deploy_wait(*args):
        return subprocess.run([sys.executable, "-m", "rollway.cli.main", "deploy", "wait", "web", "--server", server,
                               *args], capture_output=True, text=True, timeout=120)
    try:
        wait_for(w.converged, timeout=60, what="convergence")
        assert deploy_wait("--timeout", "5").returncode == 0
        w.set_hosts(1)                       # a deploy step: one host moves to v2
        early = deploy_wait("--timeout", "1")
        assert early.returncode == 1, early.stdout + early.stderr
        assert "envoy-b" in early.stderr and "not converged" in early.stderr
        done = deploy_wait("--timeout", "60", "--json")
        assert done.returncode == 0, done.stdout + done.stderr
        result = json.loads(done.stdout)
        assert result["converged"] is True and result["outstanding"] == []
        # What the gate promised: both Envoys hold the newest config, v2 admitted in it.
        generation = w.plane.filter_config("web").to_json()["generation"]
        assert result["generation"] == generation
        assert {e["node_id"]: e["generation"] for e in w.plane.fleet_status("web")} == \
            {"envoy-a": generation, "envoy-b": generation}
        assert all(v.get("admitted", True) for v in w.plane.filter_config("web").to_json()["stages"][0]["versions"])
    finally:
        api.stop(0)
        w.close()


def test_nacking_envoys_leave_the_quorum_after_the_ack_timeout_and_hold_admission_no_longer(zookeeper, tmp_path):
    secrets = tmp_path / "secrets.json"
    secrets.write_text(json.dumps({"rid-1": "a-routing-id-secret-of-enough-length"}))
    w = EnvoyPair(zookeeper, tmp_path, secrets_file=str(secrets), ack_timeout=3)
    try:
        wait_for(w.converged, timeout=30, what="convergence")
        bad = json.loads(json.dumps(ROUTEMAP))
        bad["routing_id"] = {"signing_key_id": "rid-missing"}   # both real Envoys reject this config
        w.plane.push(json.dumps(bad), 1, "bob", "a key the Envoys lack")
        wait_for(lambda: all(s["nacks"] >= 1 for s in w.plane.fleet_status("web")), timeout=30, what="NACKs")
        w.set_hosts(1)                                           # a new version while they NACK
        wait_for(lambda: any(v["name"] == "v2" for v in w.plane.filter_config("web").to_json()["stages"][0]["versions"]),
                 what="v2 announced")
        wait_for(lambda: all(v.get("admitted", True) for v in w.plane.filter_config("web").to_json()["stages"][0]["versions"]),
                 timeout=30, what="v2 admitted once the NACKing Envoys left the quorum")
        status = {e["node_id"]: e for e in w.plane.fleet_status("web")}
        assert set(status) == {"envoy-a", "envoy-b"}
        for e in status.values():
            assert e["stale"].startswith("NACKed") and e["stale_since"] > 0, e
        for envoy in w.envoys.values():      # they still serve, on the config they last accepted
            assert envoy.get("/").status == 200
    finally:
        w.close()


def test_a_route_map_naming_its_own_cluster_header_routes_through_envoy(world):
    """The route takes the cluster from the header the route map names (``headers.cluster``):
    with the route fixed to ``x-rw-cluster``, every request got Envoy's 503."""
    world.set_hosts(HOSTS)
    record = world.plane.get("web")
    world.plane.push(json.dumps({**ROUTEMAP, "headers": {"cluster": "x-edge-cluster"}}), record.revision, "alice",
                     "own cluster header")
    wait_for(world.converged, timeout=30)
    wait_for(lambda: served_header(world) == "x-edge-cluster", timeout=30)
    for envoy in world.envoys.values():
        response = envoy.get("/", [])
        assert response.status == 200 and response.json["backend"].startswith("v2#"), response.body


def served_header(world) -> str | None:
    config = world.xds.xds.cache.configs.get(("web", ListenerSpec(port=world.envoys["envoy-a"].listen_port,
                                                                  address="127.0.0.1")))
    return config.headers.get("cluster") if config else None
