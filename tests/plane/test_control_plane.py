"""Serversets, capacity, route maps and their store, against a real ZooKeeper and the
file store (the same tests where the claim applies to both)."""

from __future__ import annotations

import json
import time

import pytest

from rollway.model.routemap import RouteMapError
from rollway.plane.control_plane import ControlPlane
from rollway.sources.serverset import ServersetWatcher, member_json
from rollway.sources.store import ConflictError

from conftest import wait_for
from examples import ROUTEMAP


class Views:
    def __init__(self):
        self.views = []

    def __call__(self, view):
        self.views.append(view)

    @property
    def last(self):
        return self.views[-1] if self.views else None


def test_members_appear_and_disappear_and_capacity_follows(store_url, open_stores):
    store = open_stores(store_url)
    views = Views()
    watcher = ServersetWatcher(store, "/discovery/web/prod", views, debounce=0.02, empty_grace=0.5)
    watcher.start()
    handles = [store.announce("/discovery/web/prod", member_json("10.0.0.1", 8000 + i, "v1")) for i in range(3)]
    handles.append(store.announce("/discovery/web/prod", member_json("10.0.0.9", 9000, "v2", weight=2)))
    wait_for(lambda: views.last and views.last.capacity == {"v1": 3.0, "v2": 2.0}, what="capacity v1=3 v2=2")
    handles.pop(0).close()
    wait_for(lambda: views.last.capacity == {"v1": 2.0, "v2": 2.0}, what="a member to go")
    for h in handles:
        h.close()
    # The last members left: the guard holds the view, then believes it.
    wait_for(lambda: views.last.held_empty, what="the empty view to be held")
    assert views.last.capacity == {"v1": 2.0, "v2": 2.0}
    wait_for(lambda: views.last.capacity == {} and not views.last.held_empty, timeout=5, what="empty accepted")
    assert watcher.suspicious_empties == 1
    watcher.stop()


def test_malformed_members_are_skipped_and_counted(store_url, open_stores):
    store = open_stores(store_url)
    views = Views()
    ServersetWatcher(store, "/discovery/web/prod", views, debounce=0.02).start()
    good = store.announce("/discovery/web/prod", member_json("10.0.0.1", 8000, "v1"))
    bad = [store.announce("/discovery/web/prod", data) for data in (
        b"not json", b"[1,2]", json.dumps({"serviceEndpoint": {"host": "h", "port": 99999},
                                           "metadata": {"version": "v1"}}).encode(),
        json.dumps({"serviceEndpoint": {"host": "h", "port": 1}, "metadata": {"version": "v 1"}}).encode(),
        json.dumps({"serviceEndpoint": {"host": "h", "port": 1},
                    "metadata": {"version": "v1", "weight": "-1"}}).encode())]
    dead = store.announce("/discovery/web/prod", member_json("10.0.0.2", 8001, "v1", status="DEAD"))
    wait_for(lambda: views.last and views.last.skipped == 5, what="5 skipped members")
    assert views.last.capacity == {"v1": 1.0} and views.last.members == 1
    for h in [good, dead, *bad]:
        h.close()


def test_changes_are_batched(store_url, open_stores):
    store = open_stores(store_url)
    views = Views()
    ServersetWatcher(store, "/discovery/web/prod", views, debounce=0.3).start()
    wait_for(lambda: views.last is not None, what="the first view")
    before = len(views.views)
    handles = [store.announce("/discovery/web/prod", member_json("10.0.1.1", 7000 + i, "v2")) for i in range(100)]
    wait_for(lambda: views.last.capacity.get("v2") == 100.0, what="100 members")
    assert len(views.views) - before <= 4  # 100 changes, a handful of recomputations
    for h in handles:
        h.close()


def test_zookeeper_restart_keeps_the_last_view_then_resyncs(zookeeper, open_stores):
    url = f"zk://{zookeeper.hosts}/restart"
    watching = open_stores(url, session_timeout=20)
    announcing = open_stores(url, session_timeout=20)
    views = Views()
    ServersetWatcher(watching, "/discovery/web/prod", views, debounce=0.02).start()
    members = [announcing.announce("/discovery/web/prod", member_json("10.0.0.1", 8000 + i, "v1")) for i in range(2)]
    wait_for(lambda: views.last and views.last.capacity == {"v1": 2.0}, what="two members")
    zookeeper.stop()
    wait_for(lambda: watching.state != "connected", what="the watcher to notice")
    time.sleep(1.0)
    assert views.last.capacity == {"v1": 2.0}  # last good view kept while ZooKeeper is gone
    zookeeper.start()
    # A reconnect attempt that reaches the port while ZooKeeper is still starting waits out
    # kazoo's read timeout (about two thirds of the 20 s session timeout) before the next one.
    wait_for(lambda: watching.state == "connected" and announcing.state == "connected", timeout=60,
             what="reconnect")
    extra = announcing.announce("/discovery/web/prod", member_json("10.0.0.5", 8005, "v2"))
    wait_for(lambda: views.last.capacity == {"v1": 2.0, "v2": 1.0}, what="resync after restart")
    for h in [extra, *members]:
        h.close()


def test_session_expiry_resyncs_and_announcers_re_register(zookeeper, open_stores):
    from zk_harness import expire_session

    url = f"zk://{zookeeper.hosts}/expiry"
    watching = open_stores(url)
    announcing = open_stores(url)
    views = Views()
    ServersetWatcher(watching, "/discovery/web/prod", views, debounce=0.02, empty_grace=10).start()
    member = announcing.announce("/discovery/web/prod", member_json("10.0.0.1", 8000, "v1"))
    wait_for(lambda: views.last and views.last.capacity == {"v1": 1.0}, what="one member")
    expire_session(announcing.client, zookeeper.hosts)   # its ephemeral member dies with it...
    wait_for(lambda: announcing.state == "connected" and announcing.client.exists(member.path),
             what="the announcer to re-register")       # ...and the agent puts it back
    expire_session(watching.client, zookeeper.hosts)
    wait_for(lambda: watching.state == "connected", what="the watcher's new session")
    late = announcing.announce("/discovery/web/prod", member_json("10.0.0.2", 8001, "v2"))
    wait_for(lambda: views.last.capacity == {"v1": 1.0, "v2": 1.0}, what="the watch to survive expiry")
    for h in (member, late):
        h.close()


# -- route maps --------------------------------------------------------------------------

def test_push_history_and_rollback_round_trip(store_url, open_stores):
    plane = ControlPlane(open_stores(store_url), debounce=0.02)
    plane.start()
    first = plane.push(json.dumps(ROUTEMAP), 0, "alice", "first map")
    assert first.revision == 1
    second_map = {**ROUTEMAP, "stages": [{**ROUTEMAP["stages"][0], "weight": 5}, ROUTEMAP["stages"][1]]}
    second = plane.push(json.dumps(second_map), 1, "bob", "canary to 5")
    assert plane.get("web").revision == 2 and plane.get("web").document["stages"][0]["weight"] == 5
    history = plane.history("web")
    assert [(r.revision, r.author, r.reason) for r in history] == [(1, "alice", "first map"), (2, "bob", "canary to 5")]
    assert all(r.time > 0 for r in history)
    back = plane.rollback("web", 1, 2, "carol", "")
    assert back.revision == 3 and back.document == first.document and back.reason == "rollback to revision 1"
    assert plane.get("web", 2).document == second.document
    assert plane.filter_config("web").to_json()["stages"][0]["weight"] == 1
    plane.stop()


def test_a_cas_conflict_is_a_clear_error_and_writes_nothing(store_url, open_stores):
    store = open_stores(store_url)
    plane_a = ControlPlane(store, debounce=0.02)
    plane_b = ControlPlane(open_stores(store_url), debounce=0.02)  # a second replica
    plane_a.push(json.dumps(ROUTEMAP), 0, "alice", "first")
    plane_b.push(json.dumps({**ROUTEMAP, "stages": ROUTEMAP["stages"][1:]}), 1, "bob", "drop canary")
    with pytest.raises(ConflictError, match=r"'web' is at revision 2, not 1"):
        plane_a.push(json.dumps(ROUTEMAP), 1, "alice", "stale")
    assert [r.revision for r in store.history("web")] == [1, 2]
    assert store.read_routemap("web").author == "bob"


@pytest.mark.parametrize("edit,message", [
    (lambda m: m["stages"].append(dict(m["stages"][0])), r"stages\[2\]\.name: duplicate stage 'canary'"),
    (lambda m: m["stages"][0].update(weight=-1), r"stages\[0\]\.weight: must be a number >= 0"),
    (lambda m: [s.update(weight=0) for s in m["stages"]], r"stages: every stage has weight 0"),
    (lambda m: m["stages"][1].pop("serverset"), r"stages\[1\]\.serverset: is required"),
    (lambda m: m["stages"][0].update(colour="red"), r"stages\[0\]\.colour: unknown key"),
    (lambda m: m.update(extra=1), r"^extra: unknown key"),
    (lambda m: m["stages"].append({"name": "bg", "weight": 1, "mode": "blue_green",
                                   "slots": {"blue": {"serverset": "/a"}, "green": {"serverset": "/b"}}}),
     r"stages\[2\]\.active: is required"),
    (lambda m: m["stages"][0].update(serverset="relative/path"), r"stages\[0\]\.serverset: is not a ZooKeeper path"),
])
def test_a_bad_route_map_is_rejected_whole_with_the_field_named(store_url, open_stores, edit, message):
    store = open_stores(store_url)
    plane = ControlPlane(store, debounce=0.02)
    plane.push(json.dumps(ROUTEMAP), 0, "alice", "good")
    bad = json.loads(json.dumps(ROUTEMAP))
    edit(bad)
    with pytest.raises(RouteMapError, match=message):
        plane.push(json.dumps(bad), 1, "mallory", "bad")
    assert [r.revision for r in store.history("web")] == [1]
    assert store.read_routemap("web").document == plane.get("web", 1).document


def test_capacity_and_direction_reach_the_filter_config(store_url, open_stores):
    store = open_stores(store_url)
    plane = ControlPlane(store, debounce=0.02)
    plane.push(json.dumps(ROUTEMAP), 0, "alice", "first")
    hosts = [store.announce("/discovery/web/prod", member_json("10.0.0.1", 8000 + i, "v1")) for i in range(4)]
    wait_for(lambda: [v["capacity"] for v in plane.filter_config("web").to_json()["stages"][1]["versions"]] == [4.0],
             what="v1 capacity 4")
    # A deploy step: one host moves to v2.
    hosts.pop().close()
    hosts.append(store.announce("/discovery/web/prod", member_json("10.0.0.1", 8100, "v2")))
    def prod():
        return plane.filter_config("web").to_json()["stages"][1]
    wait_for(lambda: prod()["direction"] == {"state": "forward", "target": "v2"}, what="forward to v2")
    assert [(v["name"], v["capacity"], v["cluster"]) for v in prod()["versions"]] == [
        ("v1", 3.0, "web.prod.v1"), ("v2", 1.0, "web.prod.v2")]
    generation = plane.filter_config("web").to_json()["generation"]
    assert generation > 1
    for h in hosts:
        h.close()


def test_blue_green_cutover_through_a_route_map_push(store_url, open_stores):
    store = open_stores(store_url)
    plane = ControlPlane(store, debounce=0.02)
    bg = {"service": "shop", "stages": [{"name": "main", "weight": 1, "mode": "blue_green", "active": "blue",
                                          "slots": {"blue": {"serverset": "/discovery/shop/blue"},
                                                    "green": {"serverset": "/discovery/shop/green"}}}]}
    plane.push(json.dumps(bg), 0, "alice", "blue live")
    hosts = [store.announce("/discovery/shop/blue", member_json("10.0.0.1", 8000 + i, "b1")) for i in range(2)]
    hosts += [store.announce("/discovery/shop/green", member_json("10.0.0.2", 9000 + i, "g2")) for i in range(3)]

    def stage():
        return plane.filter_config("shop").to_json()["stages"][0]
    wait_for(lambda: stage()["slots"]["green"]["capacity"] == 3.0 and stage()["slots"]["blue"]["capacity"] == 2.0,
             what="both slots' capacity")
    assert stage()["active"] == "blue" and stage()["slots"]["blue"]["version"] == "b1"
    assert stage()["slots"]["green"] == {"version": "g2", "capacity": 3.0, "cluster": "shop.main.green"}
    bg["stages"][0]["active"] = "green"
    plane.push(json.dumps(bg), 1, "alice", "cut over")
    assert stage()["active"] == "green"
    for h in hosts:
        h.close()
