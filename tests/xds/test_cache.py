"""The snapshot cache (rollway.xds.cache), with a real control plane on the file store and
no stream: a snapshot is built once per change and shared, the last good one is kept, what
an ACK of a retained config says is recorded, and what Envoys can make it hold is bounded."""

from __future__ import annotations

import json

import pytest

from rollway.plane.control_plane import ControlPlane
from rollway.sources.serverset import member_json
from rollway.xds.cache import MAX_LISTENERS, RETAINED, SnapshotCache
from rollway.xds.ledger import EnvoyNode
from rollway.xds.resources import EXTENSION, ListenerSpec

from conftest import wait_for

ROUTEMAP = {"service": "web", "stages": [{"name": "prod", "weight": 1, "mode": "rolling",
                                          "serverset": "/discovery/web/prod"}]}


@pytest.fixture
def cache(tmp_path, open_stores):
    store = open_stores(f"file://{tmp_path}/store")
    plane = ControlPlane(store, debounce=0.01)
    plane.start()
    plane.push(json.dumps(ROUTEMAP), 0, "t", "t")
    member = store.announce("/discovery/web/prod", member_json("10.0.0.1", 8000, "v1"))
    wait_for(lambda: plane.services["web"].config is not None and plane.services["web"].endpoints.get("web.prod.v1"),
             what="a config with v1's member")
    yield SnapshotCache(plane)
    member.close()
    plane.stop()


def push_weight(cache: SnapshotCache, weight: float) -> None:
    plane = cache.plane
    revision = plane.get("web").revision
    doc = {**ROUTEMAP, "stages": [{**ROUTEMAP["stages"][0], "weight": weight}]}
    plane.push(json.dumps(doc), revision, "t", f"weight {weight}")
    wait_for(lambda: plane.services["web"].config.stages[0].weight == weight
             and plane.services["web"].config.stages[0].next_weight is None, what=f"weight {weight}")


def test_a_snapshot_is_built_once_per_change_and_shared(cache):
    first = cache.snapshot("web", 10000)
    assert cache.snapshot("web", 10000) is first
    push_weight(cache, 2)
    second = cache.snapshot("web", 10000)
    assert second is not first and second.versions[EXTENSION] != first.versions[EXTENSION]
    assert cache.configs[("web", ListenerSpec(port=10000))].stages[0].weight == 2


def test_an_ack_of_a_retained_config_says_what_the_envoy_knows(cache):
    old = cache.snapshot("web", 10000)
    old_config = cache.configs[("web", ListenerSpec(port=10000))]
    push_weight(cache, 3)
    cache.snapshot("web", 10000)
    node = EnvoyNode("envoy-late", "web", 10000)
    cache.ledger.connect(node)
    cache.on_ack(node, EXTENSION, old.versions[EXTENSION])       # an older config, still retained
    assert node.generation == old_config.generation and ("prod", "v1") in node.knows


def test_only_the_last_retained_configs_count(cache):
    first = cache.snapshot("web", 10000).versions[EXTENSION]
    for weight in range(2, RETAINED + 3):
        push_weight(cache, weight)
        cache.snapshot("web", 10000)
    assert len(cache.recent["web"]) == RETAINED and first not in cache.recent["web"]
    node = EnvoyNode("envoy-ancient", "web", 10000)
    cache.ledger.connect(node)
    cache.on_ack(node, EXTENSION, first)                         # counts only as an ACK
    assert node.knows == frozenset() and node.acked[EXTENSION] == first


def test_listeners_asked_for_are_bounded_per_service(cache):
    for port in range(20000, 20000 + MAX_LISTENERS + 40):
        cache.snapshot("web", ListenerSpec(port=port))
    assert len([k for k in cache.configs if k[0] == "web"]) <= MAX_LISTENERS
    assert len([k for k in cache.snapshots if k[0] == "web"]) <= MAX_LISTENERS
