"""The store's five parts, one suite for both backends (a real ZooKeeper, and the file
store): serversets, route maps, deploy state, and the checks and error translation that
``Store`` writes once for both. Leadership and fleet records between replicas:
test_store_coordination.py, beside it."""

from __future__ import annotations

import json
import time

import grpc
import pytest
from kazoo.exceptions import ConnectionLoss

from rollway.proto import routemap_pb2 as pb
from rollway.sources.serverset import member_json
from rollway.sources.store import (
    ConflictError,
    DeployStates,
    FleetRecords,
    Leadership,
    RouteMapRecord,
    RouteMaps,
    Serversets,
    StoreError,
)

from conftest import wait_for
from harness import Replica

PATH = "/discovery/web/prod"
DOC = {"service": "web", "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": PATH}]}


def record(revision: int, weight: float = 1) -> RouteMapRecord:
    doc = {**DOC, "stages": [{**DOC["stages"][0], "weight": weight}]}
    return RouteMapRecord("web", revision, doc, "alice", f"revision {revision}", time.time())


def test_a_store_is_each_of_the_five_parts(store_url, open_stores):
    store = open_stores(store_url)
    for part in (Serversets, RouteMaps, DeployStates, Leadership, FleetRecords):
        for name in (n for n in vars(part) if not n.startswith("_")):
            assert callable(getattr(store, name)), f"{type(store).__name__} lacks {part.__name__}.{name}"


def test_members_are_announced_watched_changed_and_removed(store_url, open_stores):
    store = open_stores(store_url)
    seen: list[dict] = []
    watch = store.watch_members(PATH, seen.append)
    first = store.announce(PATH, member_json("10.0.0.1", 8000, "v1"))
    store.announce(PATH + "/", member_json("10.0.0.2", 8000, "v1"))      # a trailing slash is the same path
    wait_for(lambda: seen and len(seen[-1]) == 2, what="two members watched")
    members = store.read_members(PATH)
    assert members == seen[-1]
    name = min(members)
    store.set_member(PATH, name, member_json("10.0.0.1", 8000, "v1", status="DEAD"))
    wait_for(lambda: b"DEAD" in seen[-1][name], what="the changed member")
    store.remove_member(PATH, name)
    store.remove_member(PATH, name)                                      # gone already is fine
    wait_for(lambda: name not in seen[-1], what="the removed member gone")
    with pytest.raises(StoreError, match="is gone"):
        store.set_member(PATH, name, b"{}")
    first.close()
    watch.close()


def test_zookeeper_watches_are_one_per_member_and_none_once_closed(zookeeper, open_stores):
    """kazoo holds one data-watch function per member however many resyncs (each used to add
    one more, living as long as the member), a member's change is still seen after resyncs
    and after a session loss (when kazoo has dropped every watch), and a closed watch leaves
    nothing in kazoo's table."""
    from zk_harness import expire_session

    url = f"zk://{zookeeper.hosts}/bounds-{time.time_ns()}"
    store, writer = open_stores(url, session_timeout=2), open_stores(url)
    member = writer.announce(PATH, member_json("10.0.0.1", 8000, "v1"))
    client = store.client
    listeners = len(client.state_listeners)

    def held(name: str) -> list:
        return [f for p, fs in client._data_watchers.items() if p.endswith(f"{PATH}/{name}") for f in fs]

    for _ in range(10):
        seen: list[dict] = []
        watch = store.watch_members(PATH, seen.append)
        wait_for(lambda: seen and len(seen[-1]) == 1, what="the member")
        watch.close()
        assert watch.data == {} and watch.watchers == {}
    # Nothing of a closed watch: no data or child watch function, no session listener.
    assert all(not functions for functions in client._data_watchers.values()), client._data_watchers
    assert all(not functions for functions in client._child_watchers.values()), client._child_watchers
    assert len(client.state_listeners) == listeners

    seen = []
    watch = store.watch_members(PATH, seen.append)
    wait_for(lambda: seen and len(seen[-1]) == 1, what="the member")
    name = next(iter(seen[-1]))
    for _ in range(5):
        watch._on_state("suspended")
        watch._on_state("connected")              # a resync, as after a reconnect
    assert len(held(name)) == 1 and set(watch.watchers) == {name}
    writer.set_member(PATH, name, member_json("10.0.0.1", 8000, "v1", status="STOPPING"))
    wait_for(lambda: b"STOPPING" in seen[-1][name], timeout=5, what="the change after resyncs")
    expire_session(client, zookeeper.hosts)       # kazoo drops every watch; the resync sets them again
    wait_for(lambda: store.state == "connected", timeout=10, what="a new session")
    writer.set_member(PATH, name, member_json("10.0.0.1", 8000, "v1"))
    wait_for(lambda: b"ALIVE" in seen[-1][name], timeout=10, what="the change after a session loss")
    assert len(held(name)) == 1
    member.close()
    wait_for(lambda: seen[-1] == {}, timeout=5, what="the member to go")
    assert watch.watchers == {} and held(name) == []
    watch.close()


def test_route_maps_are_compare_and_set_with_their_history(store_url, open_stores):
    store = open_stores(store_url)
    assert store.read_routemap("web") is None and store.history("web") == [] and store.services() == []
    store.write_routemap(record(1), 0)
    store.write_routemap(record(2, weight=5), 1)
    with pytest.raises(ConflictError, match="at revision 2, not 1"):
        store.write_routemap(record(2, weight=9), 1)
    assert store.read_routemap("web").document["stages"][0]["weight"] == 5
    assert [r.revision for r in store.history("web")] == [1, 2]
    assert store.services() == ["web"]


def test_deploy_state_is_versioned(store_url, open_stores):
    store = open_stores(store_url)
    assert store.read_deploy_state("web") == (None, -1)
    version = store.write_deploy_state("web", b"one", -1)
    assert store.read_deploy_state("web") == (b"one", version)
    with pytest.raises(ConflictError):
        store.write_deploy_state("web", b"two", -1)


@pytest.mark.parametrize("call", [
    lambda s: s.read_routemap("../etc"),
    lambda s: s.history("a/b"),
    lambda s: s.write_routemap(RouteMapRecord("..", 1, DOC, "", "", 0.0), 0),
    lambda s: s.write_routemap(record(1), -1),
    lambda s: s.write_routemap(record(1), True),
    lambda s: s.read_deploy_state(""),
    lambda s: s.write_deploy_state("web", b"", -2),
    lambda s: s.watch_members("/discovery/../etc", lambda m: None),
    lambda s: s.announce("relative/path", b"{}"),
    lambda s: s.read_members("/discovery//web"),
    lambda s: s.set_member(PATH, "../x", b"{}"),
    lambda s: s.remove_member(PATH, "a/b"),
    lambda s: s.campaign("web", "", lambda leading: None),
    lambda s: s.publish_fleet("web", "../r1", b"{}"),
    lambda s: s.watch_fleet("we b", lambda records: None),
])
def test_both_backends_refuse_the_same_bad_arguments_and_change_nothing(store_url, open_stores, call):
    store = open_stores(store_url)
    with pytest.raises(ValueError):           # InputError is a ValueError, as are version checks
        call(store)
    assert store.services() == [] and store.read_members("/discovery") == {}


def test_a_file_store_failure_names_what_failed(tmp_path, open_stores):
    store = open_stores(f"file://{tmp_path}/store")
    (tmp_path / "store" / "rollway").write_text("a file where a directory belongs")
    with pytest.raises(StoreError, match=r"^writing the route map of 'web': "):
        store.write_routemap(record(1), 0)


def test_a_connection_loss_during_a_push_reaches_the_client_as_unavailable(zookeeper):
    """The ZooKeeper route-map calls translate errors like every other call (issue 25: a
    ConnectionLoss during a push used to reach the client as UNKNOWN)."""
    replica = Replica(f"zk://{zookeeper.hosts}/loss", xds=False, token="t")
    store, stub = replica.store, replica.client()
    real = store.client.transaction

    def transaction():
        tx = real()

        def commit_async():
            raise ConnectionLoss()           # the connection drops as the commit goes out
        tx.commit_async = commit_async
        return tx
    store.client.transaction = transaction
    try:
        with pytest.raises(grpc.RpcError) as error:
            stub.Push(pb.PushRequest(document=json.dumps(DOC), expected_revision=0, author="t", reason="r"),
                      metadata=(("authorization", "Bearer t"),))
        assert error.value.code() == grpc.StatusCode.UNAVAILABLE, error.value.details()
        assert "writing the route map of 'web'" in error.value.details()
        store.client.transaction = real
        assert store.read_routemap("web") is None             # nothing was written
    finally:
        store.client.transaction = real
        replica.close()

