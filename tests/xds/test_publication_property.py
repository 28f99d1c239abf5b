"""Nothing the control plane publishes can be refused by Envoy (issue 24), as a property.

Hypothesis draws route maps (valid and not: bad names, paths, weights, modes, cookies, keys)
and serverset members (valid and not: host names, bad ports, weights of 1e300, NaN, -1,
versions with slashes, garbage bytes) and drives each through the one validation, the
serverset reader, the control plane's publication and the xDS cache, to one real Envoy over
ADS. Each example must be either

- refused, with a message that starts with the field it names (``stages[1].weight: ...``),
  and nothing stored; or
- published, and then ACKed by the Envoy: at the end, zero NACKs, zero ``update_rejected``
  in Envoy's stats, and zero snapshots that failed to build.

The example count follows the hypothesis profile (a fifth of its ``max_examples``: 40 in
CI's ``ci`` profile, 600 with ``HYPOTHESIS_PROFILE=thorough``), so a longer run is one
variable away; the seed is the profile's (``ci`` is derandomized). Mutation-checked: with
the reader's host check removed, the ``ci`` run fails on Envoy's NACK ("malformed IP
address")."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollway.envoy import bootstrap as ec
from rollway.model.publication import endpoints_by_cluster
from rollway.model.routemap import RouteMapError
from rollway.model.validation import check_routemap
from rollway.sources.serverset import build_view, member_json

from conftest import wait_for
from envoy_harness import EnvoyProcess, free_port
from harness import Replica

pytestmark = [pytest.mark.envoy, pytest.mark.slow]

PATHS = ["/d/a", "/d/b", "/d/c"]
FIELD = re.compile(r"^(document|filter config|[A-Za-z_][\w.]*(\[\d+\])?(\.[\w.+-]+(\[\d+\])?)*): ")
EXAMPLES = max(10, settings().max_examples // 5)


# -- what hypothesis draws -----------------------------------------------------------------------

def odd_numbers():
    return st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 2**40),
                     st.sampled_from([0, 1, 0.5, 99.5, 1e300, 4294967296, -1]), st.text(max_size=5), st.none())


STAGE_NAMES = ["prod", "canary", "beta"]


@st.composite
def stages(draw, name):
    """A valid stage (rolling or blue-green)."""
    weight = draw(st.sampled_from([1, 0.5, 99.5, 0, 3, 1e6]))
    if draw(st.integers(0, 3)) == 0:
        blue, green = draw(st.sampled_from(PATHS)), draw(st.sampled_from(PATHS))
        return {"name": name, "weight": weight, "mode": "blue_green", "active": draw(st.sampled_from(["blue", "green"])),
                "slots": {"blue": {"serverset": blue}, "green": {"serverset": green}}}
    return {"name": name, "weight": weight, "mode": "rolling", "serverset": draw(st.sampled_from(PATHS))}


def _set(path, value):
    """A mutation: sets doc[path...] (stage indices wrap around the stages there are; a path
    that an earlier mutation made impossible is left alone)."""
    def apply(doc):
        target = doc
        for i, key in enumerate(path):
            if isinstance(target, list):
                if not target:
                    return
                key = key % len(target)
            elif not isinstance(target, dict):
                return
            if i == len(path) - 1:
                target[key] = value
            elif isinstance(target, dict):
                target = target.setdefault(key, {})
            else:
                target = target[key]
    return apply


bad_names = st.sampled_from(["", "..", ".", "a b", "a/b", "s" * 129, "é", "a\x00b"])
bad_paths = st.sampled_from(["/../../etc", "relative", "/a//b", "/a/./b", "", "/", "/x/..", "/" + "p" * 1100])
mutations = st.one_of(
    st.builds(lambda v: _set(["service"], v), bad_names),
    st.builds(lambda i, v: _set(["stages", i, "name"], v), st.integers(0, 2), bad_names),
    st.builds(lambda i, v: _set(["stages", i, "weight"], v), st.integers(0, 2), odd_numbers()),
    st.builds(lambda i, v: _set(["stages", i, "serverset"], v), st.integers(0, 2), bad_paths),
    st.builds(lambda i, v: _set(["stages", i, "mode"], v), st.integers(0, 2), st.sampled_from(["canary", "", 1])),
    st.builds(lambda i, k, v: _set(["stages", i, k], v), st.integers(0, 2),
              st.sampled_from(["colour", "slots", "active", "serverset"]), odd_numbers()),
    st.builds(lambda v: _set(["routing_id", "cookie"], v), st.sampled_from(["bad cookie", "x" * 200, "rw_ver", ""])),
    st.builds(lambda v: _set(["routing_id", "ttl_seconds"], v), odd_numbers()),
    st.builds(lambda v: _set(["version_cookie"], v), st.sampled_from(["rw_rid", "a;b", "", "x" * 200])),
    st.builds(lambda k, v: _set(["headers", k], v), st.sampled_from(["app_version", "refresh", "cluster", "nosuch"]),
              st.sampled_from(["bad header", ":authority", "", "x-ok"])),
    st.builds(lambda v: _set(["stages"], v), st.sampled_from([[], {}, "prod", [1], None])),
    st.builds(lambda k, v: _set([k], v), st.sampled_from(["extra", "override", "stage_cookie"]), odd_numbers()),
)


@st.composite
def routemaps(draw):
    """Mostly valid maps, some with one to three faults: both sides of the property."""
    names = draw(st.lists(st.sampled_from(STAGE_NAMES), min_size=1, max_size=3, unique=True))
    doc = {"service": "web", "stages": [draw(stages(name)) for name in names]}
    if draw(st.booleans()):
        doc["routing_id"] = {"cookie": "rw_rid", "ttl_seconds": draw(st.sampled_from([86400, 1, 366 * 86400]))}
    if draw(st.booleans()):
        doc["version_cookie"] = "rw_ver"
        doc["headers"] = {"app_version": "x-app-version", "cluster": "x-rw-cluster"}
    for mutate in draw(st.lists(mutations, max_size=draw(st.sampled_from([0, 0, 1, 3])))):
        mutate(doc)
    return doc


BAD_MEMBER_FIELDS = {
    "host": ["localhost", "127.0.0.1 evil", "a" * 300, "", "256.1.1.1", "127.0.0.1:80", "::1%lo0"],
    "port": [0, -1, 65536, 70000],
    "version": ["v1/evil", "", "v" * 200, "v1 v2"],
    "weight": [1e300, 4294967296, 10001, -1, float("nan"), float("inf")],
}


@st.composite
def member_bytes(draw):
    """A member as a writer would announce it, and half the time with one field that the
    reader must skip (so the bad value is the only reason not to publish it)."""
    fields = {"host": draw(st.sampled_from(["127.0.0.1", "127.0.0.2", "::1", "0.0.0.0"])),
              "port": draw(st.sampled_from([8080, 9000, 1, 65535])),
              "version": draw(st.sampled_from(["v1", "v2", "v3"])),
              "weight": draw(st.sampled_from([1, 1, 2, 0, 0.3, 10000])),
              "status": draw(st.sampled_from(["ALIVE", "ALIVE", "ALIVE", "DEAD"]))}
    kind = draw(st.sampled_from(["good", "good", "bad field", "bad field", "garbage"]))
    if kind == "garbage":
        return draw(st.one_of(st.binary(max_size=40),
                              st.just(b'{"serviceEndpoint": {"host": "127.0.0.1", "port": "80"}}')))
    if kind == "bad field":
        field = draw(st.sampled_from(sorted(BAD_MEMBER_FIELDS)))
        fields[field] = draw(st.sampled_from(BAD_MEMBER_FIELDS[field]))
    return member_json(**fields)


memberships = st.fixed_dictionaries({path: st.lists(member_bytes(), max_size=4) for path in PATHS})


# -- one control plane, one Envoy, for every example --------------------------------------------------

class World:
    def __init__(self, tmp_path):
        self.replica = Replica(f"file://{tmp_path}/store", api=False, debounce=0.01, empty_grace=0.0)
        self.store, self.plane, self.xds = self.replica.store, self.replica.plane, self.replica.xds
        self.cache = self.replica.server.cache
        self.handles: list = []
        self.accepted = self.refused = 0
        self.plane.push({"service": "web", "stages": [{"name": "prod", "weight": 1, "mode": "rolling",
                                                       "serverset": "/d/a"}]}, 0, "test", "start")
        self.handles.append(self.store.announce("/d/a", member_json("127.0.0.1", 9000, "v1")))
        listen, admin = free_port(), free_port()
        self.envoy = EnvoyProcess(ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=self.xds.port, node_id="prop",
                                                   listen_port=listen, admin_port=admin, service="web"),
                                  tmp_path, listen, admin).start()

    def envoy_holds_the_current_snapshot(self) -> bool:
        node = self.cache.ledger.nodes.get(("web", "prop"))
        if node is None or node.disconnected_at is not None:
            return False
        resources = self.cache.snapshot("web", node.listener)
        return all(node.acked.get(t) == v for t, v in resources.versions.items())

    def close(self):
        for handle in self.handles:
            handle.close()
        self.envoy.stop()
        self.replica.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = World(tmp_path_factory.mktemp("property"))
    yield w
    w.close()


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=routemaps(), members=memberships)
def refused_by_name_or_accepted_by_envoy(world, doc, members):
    try:
        routemap = check_routemap(json.dumps(doc))
    except RouteMapError as error:
        assert FIELD.match(str(error)), f"refusal names no field: {error}"
        before = world.store.read_routemap("web").revision
        with pytest.raises(RouteMapError):
            world.plane.push(doc, before, "test", "property")
        assert world.store.read_routemap("web").revision == before     # nothing stored
        world.refused += 1
        return
    assert routemap.service == "web"
    nacks = world.cache.nack_total
    for handle in world.handles:
        handle.close()
    world.handles = [world.store.announce(path, data) for path, items in members.items() for data in items]
    world.plane.push(doc, world.store.read_routemap("web").revision, "test", "property")
    world.accepted += 1
    state = world.plane.service("web")
    wanted = {key: spec.path for stage in routemap.stages for key, spec in stage.serversets().items()}

    def views_current() -> bool:
        with state.lock:
            views = dict(state.views)
        for key, path in wanted.items():
            expect = build_view(path, {f"member_{i}": d for i, d in enumerate(members[path])})
            view = views.get(key)
            if view is None or (view.capacity, view.endpoints) != (expect.capacity, expect.endpoints):
                return False
        return True

    wait_for(views_current, timeout=20, what="the control plane to read the members")
    state.recompute()     # the config from these views now, not at the worker's next turn
    with state.lock:
        assert [s.name for s in state.config.stages] == [s.name for s in routemap.stages]
        assert state.endpoints == endpoints_by_cluster(routemap, state.views)
    wait_for(lambda: world.cache.nack_total > nacks or world.envoy_holds_the_current_snapshot(), timeout=20,
             what="the Envoy to ACK (or NACK) the snapshot")
    assert world.cache.nack_total == nacks, world.cache.ledger.nodes[("web", "prop")].last_nack
    assert world.cache.build_failures.get("web", 0) == 0, world.cache.last_failure
    assert not world.plane.problems("web")


def test_every_route_map_and_member_is_refused_by_name_or_accepted_by_envoy(world):
    refused_by_name_or_accepted_by_envoy(world)
    # Over every example, Envoy's own counters agree: nothing it was sent was rejected.
    stats = world.envoy.stats()
    assert {k: v for k, v in stats.items() if k.endswith("update_rejected") and v} == {}
    assert world.cache.nack_total == 0
    # Both sides of the property were exercised.
    assert world.accepted > 0 and world.refused > 0, (world.accepted, world.refused)
    print(f"property: {world.accepted} published and ACKed, {world.refused} refused by name")
