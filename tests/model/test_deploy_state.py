"""Deploy state as data: the record round-trips, the publication function is pure (two
replicas given the same inputs produce the same bytes), followers render what the leader
decided, and fleet knowledge is counted incrementally."""

from __future__ import annotations

from rollway.model.admission import known_versions
from rollway.model.deploy_state import DeployState
from rollway.model.filter_config import FilterConfig
from rollway.model.fleet_knowledge import FleetKnowledge
from rollway.model.publication import advance, render_config
from rollway.model.routemap import parse_routemap
from rollway.plane.fleet_records import EnvoyReport, FleetView, decode_reports, encode_reports
from rollway.sources.serverset import ServersetView

# Build ids like git commits: alphabetical order is the reverse of their age.
OLD, NEW = "f3e2d1c", "a1b2c3d"
ROUTEMAP = parse_routemap({"service": "web", "stages": [
    {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/discovery/web/prod"}]})


def view(capacity: dict[str, float]) -> dict[str, ServersetView]:
    return {"prod": ServersetView("/discovery/web/prod", capacity, {}, int(sum(capacity.values())), 0)}


def deploy(state: DeployState, steps, fleet=()) -> FilterConfig:
    config = None
    for capacity in steps:
        config = advance(ROUTEMAP, view(capacity), state, list(fleet))
    return config


def test_the_record_round_trips_and_keeps_first_seen_order():
    state = DeployState()
    deploy(state, [{OLD: 4}, {OLD: 3, NEW: 1}])
    again = DeployState.from_json(state.to_json())
    assert again.to_json() == state.to_json()
    assert again.trackers["prod"].order == [OLD, NEW]           # first seen, not alphabetical
    assert (again.trackers["prod"].state, again.trackers["prod"].target) == ("forward", NEW)


def test_two_replicas_given_the_same_inputs_publish_the_same_bytes():
    a, b = DeployState(), DeployState()
    steps = [{OLD: 4}, {OLD: 3, NEW: 1}, {OLD: 2, NEW: 2}]
    config_a, config_b = deploy(a, steps), deploy(b, steps)
    assert config_a.to_text() == config_b.to_text()
    assert a.to_json() == b.to_json()
    assert config_a.generation == 3


def test_a_follower_renders_exactly_what_the_leader_published():
    leader = DeployState()
    envoy = set()
    config = deploy(leader, [{OLD: 4}])
    envoy = known_versions(config)
    config = advance(ROUTEMAP, view({OLD: 3, NEW: 1}), leader, [envoy])   # NEW announced, not admitted
    assert list(config.announced()) == [("prod", NEW)]
    follower = DeployState.from_json(leader.to_json())
    # The follower's members came back in another order (hosts re-registered): it does not matter.
    assert render_config(ROUTEMAP, view({NEW: 1, OLD: 3}), follower) == config


def test_the_generation_moves_only_when_the_config_changes():
    state = DeployState()
    deploy(state, [{OLD: 4}])
    before = state.to_json()
    deploy(state, [{OLD: 4}, {OLD: 4}])
    assert state.to_json() == before


def test_fleet_knowledge_counts_each_key_incrementally():
    fleet = FleetKnowledge()
    assert fleet.all_know(("prod", "v2"))                      # nobody to wait for
    fleet.update("a", {("prod", "v1")})
    fleet.update("b", {("prod", "v1"), ("prod", "v2")})
    assert fleet.all_know(("prod", "v1")) and not fleet.all_know(("prod", "v2"))
    fleet.update("a", {("prod", "v1"), ("prod", "v2")})
    assert fleet.all_know(("prod", "v2"))
    fleet.update("c", set(), in_quorum=False)                  # stale: counts for nothing
    assert fleet.all_know(("prod", "v2")) and len(fleet) == 2
    fleet.update("a", {("prod", "v1")})
    assert not fleet.all_know(("prod", "v2")) and fleet.counts[("prod", "v2")] == 1
    fleet.remove("b")
    assert fleet.all_know(("prod", "v1")) and ("prod", "v2") not in fleet.counts


def test_fleet_reports_merge_by_node_and_outlive_a_dead_replica_by_one_timeout():
    knows = frozenset({("prod", "v1")})
    fleet = FleetView(ack_timeout=30)
    fleet.set_replica("r1", {"e1": EnvoyReport("e1", "r1", True, knows)}, now=0)
    replica, decoded, *_ = decode_reports(encode_reports("r1", fleet.reports["r1"]))
    assert replica == "r1" and decoded == fleet.reports["r1"]
    # e1 moves to r2; r1 still lists it as disconnected: the live connection counts, once.
    fleet.set_replica("r1", {"e1": EnvoyReport("e1", "r1", False, knows, since=5)}, now=5)
    fleet.set_replica("r2", {"e1": EnvoyReport("e1", "r2", True, frozenset())}, now=5)
    assert len(fleet.knowledge) == 1 and not fleet.knowledge.all_know(("prod", "v1"))
    assert fleet.duplicates() == []
    fleet.set_replica("r1", {"e1": EnvoyReport("e1", "r1", True, knows)}, now=6)
    assert fleet.duplicates() == ["e1"]                        # two Envoys share an id
    fleet.set_replica("r1", {}, now=7)
    # r2 dies: its Envoy stays in the quorum (it routes on its last config) for one timeout.
    fleet.drop_replica("r2", now=10)
    assert len(fleet.knowledge) == 1
    fleet.expire(now=39)
    assert len(fleet.knowledge) == 1
    fleet.expire(now=41)
    assert len(fleet.knowledge) == 0


def test_a_change_of_way_settling_is_outstanding_for_the_gate():
    from rollway.model.deploy_state import DeployState
    from rollway.model.direction import DirectionTracker

    tracker = DirectionTracker()
    tracker.observe({"v1": 16.0}, now=0.0)
    tracker.observe({"v1": 12.0, "v2": 4.0}, now=1.0)                 # forward to v2
    tracker.observe({"v1": 12.0, "v2": 2.0, "v3": 2.0}, now=2.0)      # forward to v3, a new build
    assert tracker.observe({"v1": 12.0, "v2": 4.0}, now=3.0) == ("rollback", "v2")   # v3 gone: handed over
    tracker.observe({"v1": 14.0, "v2": 2.0}, now=4.0)                 # v2's hosts go to v1: retarget settling
    state = DeployState(trackers={"prod": tracker})
    assert tracker.changing() == ("rollback", "v1")
    assert state.settling() == ["prod: direction changing to rollback -> v1, settling"]
    tracker.observe({"v1": 14.0, "v2": 2.0}, now=20.0)                # settled
    assert tracker.changing() is None and state.settling() == []


def test_a_halt_never_leaves_a_stage_without_an_admitted_version():
    """Found by the real-Envoy rollback test: prod fully on v2, v2 halted with rollback, and
    v1's first host back but not yet known to every Envoy: nothing was admitted, prod took no
    traffic and every request got a 503. The halted version serves until v1 is admitted."""
    from rollway.model.deploy_state import Halt
    from rollway.model.publication import advance
    from rollway.model.routemap import parse_routemap
    from rollway.sources.serverset import ServersetView

    routemap = parse_routemap({"service": "web", "stages": [
        {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/prod"}]})

    def views(caps):
        return {"prod": ServersetView("/d/prod", caps, {}, len(caps), 0)}
    state = DeployState()
    advance(routemap, views({"v2": 4.0}), state, [{("prod", "v2")}])
    state = state.with_halt(Halt("v2", True, "ops", "bad build", 1.0))
    config = advance(routemap, views({"v1": 1.0, "v2": 3.0}), state, [{("prod", "v2")}])
    v1, v2 = sorted(config.stages[0].versions, key=lambda v: v.name)
    assert (v1.admitted, v2.admitted) == (False, True)
    config = advance(routemap, views({"v1": 1.0, "v2": 3.0}), state, [{("prod", "v2"), ("prod", "v1")}])
    v1, v2 = sorted(config.stages[0].versions, key=lambda v: v.name)
    assert v1.admitted and not v2.admitted and v2.halted                   # v1 known everywhere: v2 halted
