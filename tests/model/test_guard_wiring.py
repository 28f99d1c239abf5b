"""The guard wired into the one publication function (issue 28): the route map's ``guard``
(service-wide, a rolling stage's override), the leader judging each version newer than its
stage's baseline on the fleet's counts, the halt recorded with its figures, and the counts
summed across replicas through the fleet records."""

from __future__ import annotations

import json

import pytest

from rollway.model.deploy_state import GUARD, DeployState
from rollway.model.filter_config import Direction, Way
from rollway.model.guard import Action, Guard, Health
from rollway.model.publication import advance, guard_halts
from rollway.model.routemap import RouteMapError, parse_routemap
from rollway.plane.decision import decide
from rollway.plane.fleet_records import MAX_HEALTH, FleetView, decode_reports, encode_reports
from rollway.sources.serverset import ServersetView

pytestmark = [pytest.mark.unit]

CANARY = {"name": "canary", "weight": 1, "mode": "rolling", "serverset": "/d/canary"}
PROD = {"name": "prod", "weight": 99, "mode": "rolling", "serverset": "/d/prod"}
BAD = Health(requests=800, errors=240)        # 30 %
GOOD = Health(requests=9000, errors=180)      # 2 %


def routemap(guard=None, stages=(PROD,)):
    return parse_routemap({"service": "web", "stages": list(stages), **({"guard": guard} if guard is not None else {})})


def views(**stages: dict[str, float]) -> dict[str, ServersetView]:
    return {name: ServersetView(f"/d/{name}", caps, {}, len(caps), 0) for name, caps in stages.items()}


def deployed(rm, caps_by_stage: list[dict], state: DeployState | None = None) -> DeployState:
    """A deploy state that has seen these capacities in turn (every Envoy knowing everything)."""
    state = state or DeployState()
    fleet = [{(stage, v) for stage in ("canary", "prod") for v in ("v1", "v2", "v3")}]
    for caps in caps_by_stage:
        advance(rm, views(**caps), state, fleet, now=1.0)
    return state


# -- the route map ------------------------------------------------------------------------------

def test_the_guard_key_defaults_and_a_stage_overrides_only_what_it_names():
    rm = parse_routemap({"service": "web", "guard": {"action": "rollback"}, "stages": [
        {**CANARY, "guard": {"min_requests": 100}}, PROD,
        {"name": "bg", "weight": 0, "mode": "blue_green", "active": "a",
         "slots": {"a": {"serverset": "/d/a"}, "b": {"serverset": "/d/b"}}}]})
    assert rm.guard == Guard(0.05, 500, Action.ROLLBACK)
    canary, prod, bg = rm.stages
    assert canary.guard == Guard(0.05, 100, Action.ROLLBACK) and prod.guard == rm.guard and bg.guard is None
    assert rm.document["guard"] == {"max_error_ratio": 0.05, "min_requests": 500, "action": "rollback"}
    assert parse_routemap(rm.canonical_json()) == rm                           # the stored form re-reads alike
    assert routemap().guard is None and routemap().stages[0].guard is None     # no key, no guard
    only_canary = parse_routemap({"service": "web", "stages": [{**CANARY, "guard": {}}, PROD]})
    assert only_canary.stages[0].guard == Guard() and only_canary.stages[1].guard is None


@pytest.mark.parametrize("doc, field", [
    ({"guard": {"max_error_ratio": 0}}, "guard.max_error_ratio"),
    ({"guard": {"max_error_ratio": 1.5}}, "guard.max_error_ratio"),
    ({"guard": {"max_error_ratio": "5%"}}, "guard.max_error_ratio"),
    ({"guard": {"min_requests": 10}}, "guard.min_requests"),
    ({"guard": {"min_requests": True}}, "guard.min_requests"),
    ({"guard": {"action": "stop"}}, "guard.action"),
    ({"guard": {"threshold": 0.1}}, "guard.threshold"),
    ({"guard": "on"}, "guard"),
    ({"stages": [{**PROD, "guard": {"action": "abort"}}]}, "stages[0].guard.action"),
    ({"stages": [{"name": "bg", "weight": 1, "mode": "blue_green", "active": "a", "guard": {},
                  "slots": {"a": {"serverset": "/d/a"}, "b": {"serverset": "/d/b"}}}]}, "stages[0].guard"),
])
def test_a_bad_guard_is_rejected_naming_the_field(doc, field):
    with pytest.raises(RouteMapError) as error:
        parse_routemap({"service": "web", "stages": [PROD], **doc})
    assert str(error.value).startswith(f"{field}:"), error.value


# -- the leader's judgement ------------------------------------------------------------------

def test_a_version_much_worse_than_its_baseline_is_halted_by_the_leader_with_its_figures():
    rm = routemap({})
    state = deployed(rm, [{"prod": {"v1": 10.0}}, {"prod": {"v1": 8.0, "v2": 2.0}}])
    health = {("prod", "v1"): GOOD, ("prod", "v2"): BAD}
    follower = decide(rm, views(prod={"v1": 8.0, "v2": 2.0}), state, [], leading=False, now=5.0, health=health)
    assert follower.write is None                                    # only the leader judges
    decision = decide(rm, views(prod={"v1": 8.0, "v2": 2.0}), state, [], leading=True, now=5.0, health=health)
    halt = decision.write.halts["v2"]
    assert (halt.who, halt.rollback, halt.at) == (GUARD, False, 5.0)
    assert halt.measured.to_dict() == {"stage": "prod", "error_ratio": 0.3, "baseline_error_ratio": 0.02,
                                       "requests": 800}
    assert "30.0% (240 of 800)" in halt.figures and "v1" in halt.why
    assert decision.write.halt_log[-1]["event"] == "halt"
    (v1, v2) = sorted(decision.config.stages[0].versions, key=lambda v: v.name)
    assert v2.halted and not v2.admitted and v1.admitted                # no new sessions for v2
    again = DeployState.from_json(decision.write.to_json())            # replicas and restarts agree
    assert again.halts["v2"] == halt


def test_the_rollback_action_turns_the_deploy_back_to_the_baseline():
    rm = routemap({"action": "rollback"})
    state = deployed(rm, [{"prod": {"v1": 10.0}}, {"prod": {"v1": 8.0, "v2": 2.0}}])
    decision = decide(rm, views(prod={"v1": 8.0, "v2": 2.0}), state, [], leading=True, now=5.0,
                      health={("prod", "v1"): GOOD, ("prod", "v2"): BAD})
    assert decision.write.halts["v2"].rollback
    assert decision.config.stages[0].direction == Direction(Way.ROLLBACK, "v1")


def test_a_version_halted_in_the_canary_is_halted_in_prod_too():
    rm = routemap({}, stages=(CANARY, PROD))
    state = deployed(rm, [{"canary": {"v1": 2.0}, "prod": {"v1": 10.0}},
                          {"canary": {"v1": 1.0, "v2": 1.0}, "prod": {"v1": 10.0}}])
    caps = {"canary": {"v1": 1.0, "v2": 1.0}, "prod": {"v1": 9.0, "v2": 1.0}}
    decision = decide(rm, views(**caps), state, [], leading=True, now=5.0,
                      health={("canary", "v1"): GOOD, ("canary", "v2"): BAD})
    assert decision.write.halts["v2"].measured.stage == "canary"
    prod = next(s for s in decision.config.stages if s.name == "prod")
    assert [v.name for v in prod.versions if v.halted] == ["v2"]          # the same build never reaches prod


@pytest.mark.parametrize("health, why", [
    ({("prod", "v1"): GOOD, ("prod", "v2"): Health(499, 400)}, "the candidate below min_requests"),
    ({("prod", "v1"): Health(400, 8), ("prod", "v2"): BAD}, "the baseline below min_requests"),
    ({("prod", "v1"): GOOD, ("prod", "v2"): Health(9000, 190)}, "as good as its baseline"),
    ({("prod", "v1"): Health(9000, 900), ("prod", "v2"): Health(9000, 1200)}, "worse, but by less than the margin"),
    ({("prod", "v2"): BAD}, "no baseline counts"),
])
def test_nothing_is_halted_without_the_evidence(health, why):
    rm = routemap({})
    state = deployed(rm, [{"prod": {"v1": 10.0}}, {"prod": {"v1": 8.0, "v2": 2.0}}])
    assert guard_halts(rm, views(prod={"v1": 8.0, "v2": 2.0}), state, health, 5.0) == [], why


def test_only_versions_newer_than_the_baseline_are_judged_and_a_resumed_one_is_not_judged_again():
    rm = routemap({})
    state = deployed(rm, [{"prod": {"v1": 10.0}}, {"prod": {"v1": 8.0, "v2": 2.0}}])
    caps = views(prod={"v1": 8.0, "v2": 2.0})
    # The baseline failing more than the new version halts nobody (the new one is the fix).
    assert guard_halts(rm, caps, state, {("prod", "v1"): BAD, ("prod", "v2"): GOOD}, 5.0) == []
    health = {("prod", "v1"): GOOD, ("prod", "v2"): BAD}
    assert [h.version for h in guard_halts(rm, caps, state, health, 5.0)] == ["v2"]
    resumed = state.with_halt(guard_halts(rm, caps, state, health, 5.0)[0]).without_halt("v2", "alice", "ok", 6.0)
    assert resumed.resumed == ["v2"] and guard_halts(rm, caps, resumed, health, 7.0) == []
    assert DeployState.from_json(resumed.to_json()).resumed == ["v2"]
    # A stage without a guard judges nothing.
    assert guard_halts(routemap(), caps, state, health, 5.0) == []


def test_once_v2_is_halted_a_third_version_is_judged_against_the_baseline():
    rm = routemap({})
    state = deployed(rm, [{"prod": {"v1": 10.0}}, {"prod": {"v1": 8.0, "v2": 2.0}}])
    state.record_halt(guard_halts(rm, views(prod={"v1": 8.0, "v2": 2.0}), state,
                                  {("prod", "v1"): GOOD, ("prod", "v2"): BAD}, 5.0)[0])
    caps = {"prod": {"v1": 7.0, "v2": 2.0, "v3": 1.0}}
    deployed(rm, [caps], state)
    health = {("prod", "v1"): GOOD, ("prod", "v2"): BAD, ("prod", "v3"): Health(700, 300)}
    [halt] = guard_halts(rm, views(**caps), state, health, 9.0)
    assert halt.version == "v3" and "v1" in halt.why


# -- across replicas ------------------------------------------------------------------------------

def test_each_replicas_counts_travel_in_its_fleet_record_and_the_leader_sums_them():
    fleet = FleetView()
    for replica, health in [("r1", {("prod", "v2"): Health(300, 90)}),
                            ("r2", {("prod", "v2"): Health(500, 150), ("prod", "v1"): GOOD})]:
        record = decode_reports(encode_reports(replica, {}, health))
        assert record.replica == replica and record.health == health
        assert fleet.set_health(replica, record.health)
    assert not fleet.set_health("r1", {("prod", "v2"): Health(300, 90)})   # unchanged: no work
    assert fleet.health() == {("prod", "v2"): Health(800, 240), ("prod", "v1"): GOOD}
    fleet.drop_replica("r2")                 # its record vanished: its counts go with it
    assert fleet.health() == {("prod", "v2"): Health(300, 90)}


def test_a_replica_with_no_envoys_is_forgotten_with_its_record():
    """A replica whose record carries counts but no Envoys is in no report; when its record
    goes, its counts and loads go too (they were kept forever, and judged by the guard)."""
    fleet = FleetView()
    fleet.set_replica("r1", {})
    fleet.set_health("r1", {("prod", "v2"): Health(300, 90)})
    assert "r1" in fleet.replicas()
    fleet.drop_replica("r1")
    assert fleet.replicas() == set() and fleet.health() == {}


def test_a_fleet_records_counts_are_bounded_and_clamped():
    doc = json.loads(encode_reports("r1", {}))
    doc["health"] = [["prod", "v2", -5, 3], ["prod", "v3", 10, 99]] + \
        [["prod", f"x{i}", 1, 0] for i in range(MAX_HEALTH + 10)]
    health = decode_reports(json.dumps(doc).encode()).health
    assert len(health) == MAX_HEALTH
    assert health[("prod", "v2")] == Health(0, 0) and health[("prod", "v3")] == Health(10, 10)
    doc["health"] = [["prod", "v2", "many", 1]]
    with pytest.raises(ValueError):
        decode_reports(json.dumps(doc).encode())


def _plain_record(replica, reports, health=None, load=None) -> bytes:
    """A fleet record written the plain way (json.dumps of the whole): what RecordEncoder
    must write, byte for byte."""
    from rollway.model.endpoint_load import EndpointLoad
    tables: dict = {}
    envoys = {}
    for node_id, r in sorted(reports.items()):
        index = tables.setdefault(r.knows, len(tables))
        envoys[node_id] = {"connected": r.connected, "knows": index, "generation": r.generation,
                           "caught_up": r.caught_up, "stale": r.stale, "since": r.since, "nacks": r.nacks,
                           "versions": list(r.versions)}
    knows = [sorted([list(k) for k in keys]) for keys, _ in sorted(tables.items(), key=lambda kv: kv[1])]
    counts = [[s, v, h.requests, h.errors] for (s, v), h in sorted((health or {}).items())]
    load = load or EndpointLoad()
    opened = [[host, port, n] for (host, port), n in sorted(load.open.items())]
    return json.dumps({"replica": replica, "knows": knows, "envoys": envoys, "health": counts, "open": opened,
                       "reported": sorted(load.reported)}, sort_keys=True).encode()


def test_the_record_encoder_writes_what_json_dumps_would_as_reports_change():
    """The fleet record re-encodes only the Envoys whose report changed (a push to 10,000
    Envoys rewrote the whole record every second: O(N) a second of an O(N) push): the bytes
    are those of the plain encoding, over many rounds of random changes."""
    import random

    from rollway.model.endpoint_load import EndpointLoad
    from rollway.plane.fleet_records import EnvoyReport, RecordEncoder
    rng = random.Random(30)
    encoder = RecordEncoder()
    reports: dict = {}
    configs = [frozenset({("prod", "v1")}), frozenset({("prod", "v1"), ("prod", "v2")}), frozenset()]
    for round_no in range(60):
        for _ in range(rng.randint(0, 40)):
            node = f"edge-{rng.randint(0, 80)}" + rng.choice(["", "\u00e9", '"q"'])
            if rng.random() < 0.15:
                reports.pop(node, None)
                continue
            reports[node] = EnvoyReport(node, "r1", rng.random() < 0.9, rng.choice(configs), rng.randint(0, 9),
                                        rng.random() < 0.7, rng.choice(["", "silent 30s"]),
                                        rng.choice([0.0, 1.5, 1e10 + 0.25, round_no * 0.1]), rng.randint(0, 3),
                                        tuple(rng.choice(["a1", "b2", "c3"]) for _ in range(rng.randint(0, 3))))
        health = {("prod", "v1"): Health(round_no, round_no // 3)} if round_no % 2 else None
        load = EndpointLoad({("10.0.0.1", 8000): round_no}, frozenset({"edge-1"})) if round_no % 3 else None
        assert encoder.encode("r1", dict(reports), health, load) == _plain_record("r1", reports, health, load)
    assert decode_reports(encoder.encode("r1", reports)).envoys.keys() == reports.keys()
