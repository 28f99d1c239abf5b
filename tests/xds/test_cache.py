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


def test_serialized_resources_and_responses_stay_bounded_under_endpoint_churn(cache):
    """Every serverset change makes new endpoints and a new filter config: the encoded
    resources and the serialized responses kept for reuse stay within their bounds however
    many changes pass (before issue 30 every change left ~2.4 KB behind until 20,000 entries)."""
    from rollway.xds.cache import RESPONSES
    from rollway.xds.resources import ENDPOINT, EncodeCache, build_resources
    small = EncodeCache(limit=64)
    config = cache.plane.services["web"].config
    for n in range(500):
        endpoints = {"web.prod.v1": [("10.0.0.1", 8000 + n, 1)]}
        resources = build_resources(config, endpoints, 10000, cache=small)
        cache.response(ENDPOINT, resources, ())
        assert len(small) <= 64
    assert len(cache.responses) <= RESPONSES
    # The newest is kept and served from the cache: the same bytes again.
    again = build_resources(config, {"web.prod.v1": [("10.0.0.1", 8499, 1)]}, 10000, cache=small)
    assert again.by_type[ENDPOINT] == resources.by_type[ENDPOINT]
    assert cache.response(ENDPOINT, again, ()) == cache.response(ENDPOINT, resources, ())


def test_the_encode_cache_forgets_the_least_recently_used():
    from rollway.xds.resources import EncodeCache
    lru = EncodeCache(limit=3)
    for key in (b"a", b"b", b"c"):
        lru.put(key, key * 2)
    assert lru.get(b"a") == b"aa"          # a is now the most recent
    lru.put(b"d", b"dd")
    assert lru.get(b"b") is None and lru.get(b"a") == b"aa" and len(lru) == 3
