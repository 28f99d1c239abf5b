"""Several replicas and restarts act as one control plane: the deploy state lives in the
store (ZooKeeper, and the file store with the same interface), one leader per service
writes it, every replica renders the same filter config from it, and admission waits for
every Envoy in the quorum whichever replica it is connected to, but never for longer than
the ACK timeout."""

from __future__ import annotations

import json
import time

import pytest

from rollway.plane.control_plane import ControlPlane
from rollway.sources.serverset import member_json
from rollway.xds.cache import SnapshotCache
from rollway.xds.resources import EXTENSION, ListenerSpec
from rollway.xds.server import XdsThread

from ads_client import AdsClient
from conftest import wait_for
from envoy_harness import free_port
from harness import Replica

# Seconds each (servers, subprocesses, whole simulated deploys): not in `pytest -m unit`.
pytestmark = [pytest.mark.slow]

# Build ids like git commits: alphabetical order is the reverse of their age.
OLD, NEW = "f3e2d1c", "a1b2c3d"
PATH = "/discovery/web/prod"
ROUTEMAP = {"service": "web", "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": PATH}]}


class Replicas:
    """Control-plane replicas on one store, each with its own session, and a host agent."""

    def __init__(self, url: str, open_stores, **plane_options):
        self.url, self.open_stores = url, open_stores
        self.options = {"session_timeout": 2} if url.startswith("zk") else {"lease_seconds": 1}
        self.plane_options = {"debounce": 0.02, **plane_options}
        self.agent = open_stores(url, **self.options)   # the same lease: a file member lives as long
        self.replicas: dict[str, Replica] = {}
        self.planes: dict[str, ControlPlane] = {}
        self.xds: dict[str, XdsThread] = {}

    def start(self, name: str, xds_port: int | None = None) -> ControlPlane:
        replica = Replica(self.url, api=False, xds=xds_port is not None, xds_port=xds_port or 0,
                          store_options=self.options, replica_id=name, refresh_interval=0.2, **self.plane_options)
        self.replicas[name], self.planes[name] = replica, replica.plane
        if replica.xds is not None:
            self.xds[name] = replica.xds
        return replica.plane

    def stop(self, name: str) -> None:
        self.xds.pop(name, None)
        self.planes.pop(name)
        self.replicas.pop(name).close()

    def close(self) -> None:
        for name in list(self.planes):
            self.stop(name)


@pytest.fixture
def replicas(store_url, open_stores):
    made = []

    def make(**plane_options) -> Replicas:
        made.append(Replicas(store_url, open_stores, **plane_options))
        return made[-1]

    yield make
    for r in made:
        r.close()


def stage(plane: ControlPlane) -> dict:
    return plane.filter_config("web").to_json()["stages"][0]


def capacity(plane: ControlPlane) -> dict:
    return {v["name"]: v["capacity"] for v in stage(plane)["versions"]}


def admitted(plane: ControlPlane, version: str) -> bool:
    return any(v["name"] == version and v.get("admitted", True) for v in stage(plane)["versions"])


def test_a_replica_started_mid_deploy_after_old_hosts_re_registered_sends_identical_configs(replicas):
    r = replicas()
    a = r.start("a")
    a.push(json.dumps(ROUTEMAP), 0, "alice", "web")
    old = [r.agent.announce(PATH, member_json("10.0.0.1", 8000 + i, OLD)) for i in range(4)]
    wait_for(lambda: a.service("web").leading and capacity(a) == {OLD: 4}, what="replica a leads, 4 old hosts")
    new = []
    for step in range(2):
        old.pop(0).close()
        new.append(r.agent.announce(PATH, member_json("10.0.0.2", 9000 + step, NEW)))
        wait_for(lambda: capacity(a) == {OLD: 3 - step, NEW: 1 + step}, what=f"deploy step {step + 1}")
    assert stage(a)["direction"] == {"state": "forward", "target": NEW}
    # The old hosts' agent lost its ZooKeeper session: they register again, now with
    # sequence numbers after the new build's, one at a time.
    for i in range(len(old)):
        again = r.agent.announce(PATH, member_json("10.0.0.1", 8100 + i, OLD))
        old.pop(0).close()
        old.append(again)
    time.sleep(0.3)
    b = r.start("b")
    assert not b.service("web").leading
    same = lambda: b.filter_config("web").to_text() == a.filter_config("web").to_text()  # noqa: E731
    wait_for(same, what="replica b to render the same config as replica a")
    assert [v["name"] for v in stage(b)["versions"]] == [OLD, NEW]          # first seen, not by name
    assert stage(b)["direction"] == {"state": "forward", "target": NEW}
    assert b.filter_config("web").to_json()["generation"] == a.filter_config("web").to_json()["generation"]
    ecds_a = SnapshotCache(a).snapshot("web", 10000)
    ecds_b = SnapshotCache(b).snapshot("web", 10000)
    assert ecds_a.by_type[EXTENSION] == ecds_b.by_type[EXTENSION]         # byte-identical filter config
    assert ecds_a.versions == ecds_b.versions
    # The deploy goes on with replica b leading: the direction survives the handover.
    r.stop("a")
    wait_for(lambda: b.service("web").leading, timeout=20, what="replica b to take over")
    old.pop(0).close()
    new.append(r.agent.announce(PATH, member_json("10.0.0.2", 9002, NEW)))
    wait_for(lambda: capacity(b) == {OLD: 1, NEW: 3}, what="the next step through replica b")
    assert stage(b)["direction"] == {"state": "forward", "target": NEW}
    for h in old + new:
        h.close()


def test_a_restarted_replica_resumes_direction_and_admission(replicas):
    r = replicas(ack_timeout=30, startup_grace=5)
    port = free_port()
    a = r.start("a", xds_port=port)
    a.push(json.dumps(ROUTEMAP), 0, "alice", "web")
    hosts = [r.agent.announce(PATH, member_json("10.0.0.1", 8000 + i, OLD)) for i in range(3)]
    wait_for(lambda: capacity(a) == {OLD: 3}, what="3 old hosts")
    silent = AdsClient(f"127.0.0.1:{port}", "envoy-silent", mode="silent").start()
    try:
        wait_for(lambda: len(a.fleet_status("web")) == 1, what="the silent Envoy to join the quorum")
        hosts.pop(0).close()
        hosts.append(r.agent.announce(PATH, member_json("10.0.0.2", 9000, NEW)))
        wait_for(lambda: NEW in capacity(a), what="the new build announced")
        before = a.filter_config("web")
        assert not admitted(a, NEW)                     # the silent Envoy has not ACKed it
        assert stage(a)["direction"] == {"state": "forward", "target": NEW}
        state_before = a.service("web").deploy.to_json()
    finally:
        silent.stop()
    r.stop("a")
    a2 = r.start("a2", xds_port=port)
    # What it serves first comes from the record: same direction, same admission, same generation.
    assert a2.filter_config("web") == before
    assert a2.service("web").deploy.to_json() == state_before
    envoy = AdsClient(f"127.0.0.1:{port}", "envoy-back", mode="ack").start()
    try:
        wait_for(lambda: admitted(a2, NEW), timeout=20, what="the new build admitted once the fleet ACKs")
        assert stage(a2)["direction"] == {"state": "forward", "target": NEW}
    finally:
        envoy.stop()
    for h in hosts:
        h.close()


@pytest.mark.parametrize("mode", ["silent", "nack", "no-filter-config"])
def test_a_silent_or_nacking_envoy_holds_admission_no_longer_than_the_ack_timeout(replicas, mode):
    r = replicas(ack_timeout=2, startup_grace=0)
    port = free_port()
    a = r.start("a", xds_port=port)
    a.push(json.dumps(ROUTEMAP), 0, "alice", "web")
    hosts = [r.agent.announce(PATH, member_json("10.0.0.1", 8000, OLD))]
    wait_for(lambda: capacity(a) == {OLD: 1}, what="one old host")
    admitted_at: list[float] = []
    a.add_listener(lambda _: admitted_at.append(time.time()) if admitted(a, NEW) and not admitted_at else None)
    if mode == "no-filter-config":   # ACKs what it asks for, but never asks for the filter config
        bad = AdsClient(f"127.0.0.1:{port}", f"envoy-{mode}", mode="ack",
                        type_url="type.googleapis.com/envoy.config.listener.v3.Listener").start()
    else:
        bad = AdsClient(f"127.0.0.1:{port}", f"envoy-{mode}", mode=mode).start()
    good = AdsClient(f"127.0.0.1:{port}", "envoy-good", mode="ack").start()
    try:
        wait_for(lambda: len(a.fleet_status("web")) == 2, what="both Envoys connected")
        hosts.append(r.agent.announce(PATH, member_json("10.0.0.2", 9000, NEW)))
        wait_for(lambda: admitted_at, timeout=30, what="the new build admitted despite the broken Envoy")
        status = {e["node_id"]: e for e in a.fleet_status("web")}
        broken, healthy = status[f"envoy-{mode}"], status["envoy-good"]
        assert broken["stale"] and broken["stale_since"] > 0
        assert ("NACKed" if mode == "nack" else "no ACK") in broken["stale"]
        assert not healthy["stale"]
        # It held admission only until it left the quorum, never after.
        assert admitted_at[0] >= broken["stale_since"]
        from prometheus_client.parser import text_string_to_metric_families

        from rollway.api.dashboard import prometheus_text

        stale = [sample.labels for family in text_string_to_metric_families(prometheus_text(a, r.xds["a"].xds.cache))
                 if family.name == "rollway_envoy_stale" for sample in family.samples if sample.value == 1]
        assert [(s["service"], s["node"]) for s in stale] == [("web", f"envoy-{mode}")]
    finally:
        bad.stop()
        good.stop()
    for h in hosts:
        h.close()


def test_admission_waits_for_envoys_on_every_replica(replicas):
    """An Envoy connected to a follower holds admission on the leader (no pinning)."""
    r = replicas(ack_timeout=30, startup_grace=0)
    port_a, port_b = free_port(), free_port()
    a = r.start("a", xds_port=port_a)
    a.push(json.dumps(ROUTEMAP), 0, "alice", "web")
    wait_for(lambda: a.service("web").leading, what="replica a to lead")
    b = r.start("b", xds_port=port_b)
    hosts = [r.agent.announce(PATH, member_json("10.0.0.1", 8000, OLD))]
    wait_for(lambda: capacity(a) == {OLD: 1} and capacity(b) == {OLD: 1}, what="both replicas see the host")
    silent = AdsClient(f"127.0.0.1:{port_b}", "envoy-on-b", mode="silent").start()
    try:
        wait_for(lambda: [e["node_id"] for e in a.fleet_status("web")] == ["envoy-on-b"],
                 what="the leader to see the follower's Envoy")
        hosts.append(r.agent.announce(PATH, member_json("10.0.0.2", 9000, NEW)))
        wait_for(lambda: NEW in capacity(a), what="the new build announced")
        time.sleep(1.0)
        assert not admitted(a, NEW) and not admitted(b, NEW)
        converged, outstanding = b.service("web").converged()
        assert not converged and any("envoy-on-b" in o for o in outstanding), outstanding
    finally:
        silent.stop()
    for h in hosts:
        h.close()


def test_an_endpoint_only_change_reaches_the_envoys(replicas):
    """A host replaced by another of the same version and weight changes no filter config,
    but the endpoints Envoys route to must follow (and the deploy gate waits for them)."""
    # The swap (announce the new host, then withdraw the old) must land in one debounce
    # window: with the suite's 20 ms a loaded CI machine published the two-host moment in
    # between, a real capacity change, and the filter config moved with it.
    r = replicas(debounce=1.0)
    a = r.start("a")
    a.push(json.dumps(ROUTEMAP), 0, "alice", "web")
    old = r.agent.announce(PATH, member_json("10.0.0.1", 8000, OLD))
    wait_for(lambda: capacity(a) == {OLD: 1}, what="one host")
    cache = SnapshotCache(a)
    before = cache.snapshot("web", 10000)
    new = r.agent.announce(PATH, member_json("10.0.0.9", 8000, OLD))
    old.close()
    from rollway.xds.resources import ENDPOINT

    wait_for(lambda: cache.snapshot("web", 10000).versions[ENDPOINT] != before.versions[ENDPOINT],
             what="the new endpoint in EDS")
    assert cache.snapshot("web", 10000).versions[EXTENSION] == before.versions[EXTENSION]
    new.close()


def test_a_client_with_a_port_that_is_not_a_port_is_refused(replicas):
    r = replicas()
    port = free_port()
    a = r.start("a", xds_port=port)
    a.push(json.dumps(ROUTEMAP), 0, "alice", "web")
    bad = AdsClient(f"127.0.0.1:{port}", "envoy-bad-port", listen_port=1e12).start()
    try:
        wait_for(lambda: bad.closed or bad.task.done(), what="the stream to be closed")
        assert a.fleet_status("web") == [] and bad.responses == []
    finally:
        bad.stop()


def test_an_ack_of_a_config_that_is_no_longer_current_still_says_what_the_envoy_knows(replicas):
    """An Envoy whose updates lag behind a deploy ACKs configs that have since been
    replaced. Counting only ACKs of the current config starved admission whenever updates
    came faster than an Envoy's lag (found by rollway.tools.sim): the ACK counts for the
    config it names while the cache retains it."""
    from rollway.model.admission import known_versions
    from rollway.xds.ledger import EnvoyNode

    r = replicas()
    a = r.start("a")
    a.push(json.dumps(ROUTEMAP), 0, "alice", "web")
    first = r.agent.announce(PATH, member_json("10.0.0.1", 8000, OLD))
    wait_for(lambda: capacity(a) == {OLD: 1}, what="one host")
    cache = SnapshotCache(a)
    old = cache.snapshot("web", 10000)
    old_config = cache.configs[("web", ListenerSpec(port=10000))]
    second = r.agent.announce(PATH, member_json("10.0.0.2", 8000, NEW))
    wait_for(lambda: cache.snapshot("web", 10000).versions[EXTENSION] != old.versions[EXTENSION],
             what="a newer filter config")
    node = EnvoyNode("envoy-late", "web", 10000)
    cache.ledger.connect(node)
    cache.on_ack(node, EXTENSION, old.versions[EXTENSION])
    assert node.knows == frozenset(known_versions(old_config)) and node.generation == old_config.generation
    cache.on_ack(node, EXTENSION, "not-a-version-we-sent")        # unknown: counts only as an ACK
    assert node.knows == frozenset(known_versions(old_config))
    first.close()
    second.close()
