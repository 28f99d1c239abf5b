"""The bad-build guard on real parts (issue 28): app hosts whose new version answers a share
of requests with a 500, two stock Envoys fed over ADS by two control-plane replicas on one
store (ZooKeeper, and the embedded file store), each Envoy reporting its load to its own
replica, and browser sessions crossing between the Envoys on every request.

The guard's input travels as it does in production: Envoy's load reports to the replica it
is connected to, each replica's counts in its fleet record, the leader summing them."""

from __future__ import annotations

import json
import time

import pytest

from rollway.model.deploy_state import GUARD
from rollway.tools.session import BrowserSession

from conftest import wait_for
from envoy_harness import FailingBackend
from guarded_edge import SESSIONS, GuardedEdge, rolling

pytestmark = [pytest.mark.envoy]

@pytest.fixture
def edges(tmp_path):
    made = []

    def make(store_url, routemap, failing) -> GuardedEdge:
        made.append(GuardedEdge(tmp_path, store_url, routemap, failing))
        return made[-1]

    yield make
    for edge in made:
        edge.close()


def strict_bounces(served: list[str], halted: str) -> int:
    """Returns to a version the session had left, but the one return from the halted version
    a rollback owes it (the simulator's recount allows the same one)."""
    left, last, owed, bounces = set(), None, True, 0
    for version in served:
        if last is not None and version != last:
            if version in left:
                if last == halted and owed:
                    owed = False
                else:
                    bounces += 1
            left.add(last)
        last = version
    return bounces


def test_a_bad_build_is_halted_by_the_guard_and_its_sessions_go_back_once(edges, store_url):
    edge = edges(store_url, {"service": "web", "guard": {"action": "rollback"}, "stages": [rolling("prod", 1)]},
                 failing={"v2": 30})
    edge.set_hosts("prod", {"v1": 4})
    edge.start()
    wait_for(edge.settled, timeout=60, what="v1 served by both Envoys")
    sessions, log = [BrowserSession() for _ in range(SESSIONS)], {}
    edge.visit(sessions, log, 0)
    edge.set_hosts("prod", {"v1": 2, "v2": 2})                 # a deploy step: half the hosts on v2
    wait_for(edge.settled, timeout=60, what="v2 admitted on both Envoys")
    # The fleet's sessions move to v2 as its capacity says, and meet its 500s, until the
    # guard (default min_requests 500 on each side) halts it.
    round_no = edge.visit_until_halted(sessions, log)
    halt = edge.halted().get("v2")
    assert halt is not None and halt.who == GUARD and halt.rollback, edge.halted()
    assert halt.measured.requests >= 500 and halt.measured.error_ratio > 0.2 > 0.05 > halt.measured.baseline_error_ratio
    assert sum(1 for s in sessions if "v2" in s.served) > 20  # the deploy had really moved sessions
    # The deploy tool stops: deploy wait exits 1 naming the version and the figures.
    waited = edge.rollway("deploy", "wait", "web", "--timeout", "5")
    assert waited.returncode == 1 and "version v2 is halted and rolled back by guard" in waited.stderr, waited.stderr
    assert "vs baseline" in waited.stderr
    status = json.loads(edge.rollway("status", "web", "--json").stdout)
    v2 = next(v for s in status["stages"] for v in s["versions"] if v["name"] == "v2")
    assert v2["halted"]["author"] == "guard" and v2["halted"]["requests"] >= 500
    assert v2["halted"]["error_ratio"] > 0.2 and v2["halted"]["baseline_error_ratio"] < 0.05
    # What the guard judged, as operators see it: the fleet's counts (both replicas' Envoys)
    # and the halt, on either replica's /metrics.
    counts = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in edge.metrics().splitlines()
              if line.startswith(("rollway_version_requests{", "rollway_version_errors{"))
              and 'stage="prod",version="v2"' in line}
    assert counts["rollway_version_requests"] >= 500 and counts["rollway_version_errors"] >= 0.2 * 500, counts
    assert 'reason="guard rollback",service="web",stage="prod",version="v2"} 1.0' in edge.metrics()
    wait_for(lambda: edge.halt_reached("v2"), timeout=60, what="the halt on both Envoys")
    mark = {id(s): len(log[id(s)]) for s in sessions}
    # After the halt reached the Envoys: fresh sessions never reach v2, sessions on v1 never
    # move to it, and every session that was on v2 goes back to v1 once, told to reload
    # once for it.
    fresh = [BrowserSession() for _ in range(100)]
    for extra in range(40):
        edge.visit(sessions + fresh, log, round_no + extra)
        if all(s.last == "v1" for s in sessions) and extra >= 3:
            break
    assert all(version != "v2" for s in fresh for _, version, _, _ in log[id(s)])
    assert all(s.last == "v1" for s in sessions), [log[id(s)][-4:] for s in sessions if s.last != "v1"]
    for s in sessions:
        after = log[id(s)][mark[id(s)]:]
        assert strict_bounces(s.served, "v2") == 0, s.served
        seen = [version for _, version, _, _ in after]
        back = seen.index("v1") if "v1" in seen else len(seen)
        assert all(version == "v1" for version in seen[back:]), after            # once on v1, never v2 again
        # One reload per move, onto where it moved: v1 -> v2 -> v1 at most (a session whose
        # first page came from v2, its first answer from v1 having been a 500, moved once).
        moves = [b for a, b in zip(s.served, s.served[1:]) if a != b]
        refreshes = [version for _, version, _, refreshed in log[id(s)] if refreshed]
        assert refreshes == moves and moves in ([], ["v1"], ["v2", "v1"]), log[id(s)]


def test_a_build_halted_in_the_canary_gets_no_prod_sessions(edges, tmp_path):
    # The canary judges sooner (its own min_requests): the override of the service's guard.
    routemap = {"service": "web", "guard": {"action": "halt"},
                "stages": [rolling("canary", 30, guard={"min_requests": 200}), rolling("prod", 70)]}
    edge = edges(f"file://{tmp_path}/store", routemap, failing={"v2": 30})
    edge.set_hosts("canary", {"v1": 2})
    edge.set_hosts("prod", {"v1": 2})
    edge.start()
    wait_for(edge.settled, timeout=60, what="v1 served")
    sessions, log = [BrowserSession() for _ in range(SESSIONS)], {}
    edge.visit(sessions, log, 0)
    edge.set_hosts("canary", {"v1": 1, "v2": 1})
    wait_for(edge.settled, timeout=60, what="v2 admitted in the canary")
    round_no = edge.visit_until_halted(sessions, log)
    halt = edge.halted().get("v2")
    assert halt is not None and halt.measured.stage == "canary" and not halt.rollback
    in_canary = [s for s in sessions if s.last == "v2"]
    # The deploy tool goes on to prod anyway: v2 is halted there too.
    edge.set_hosts("prod", {"v1": 1, "v2": 1})
    wait_for(lambda: edge.halt_reached("v2"), timeout=60, what="v2 halted in both stages on both Envoys")
    mark = {id(s): len(log[id(s)]) for s in sessions}
    for extra in range(10):
        edge.visit(sessions, log, round_no + extra)
    for s in sessions:
        after = log[id(s)][mark[id(s)]:]
        assert all((stage, version) != ("prod", "v2") for stage, version, _, _ in after), after
        if s in in_canary:                      # halt, not rollback: its sessions stay
            assert all(version == "v2" for _, version, _, _ in after), after
        else:
            assert all(version == "v1" for _, version, _, _ in after), after


def test_no_false_halt_at_the_same_error_rate_and_a_small_canary_is_not_judged(edges, tmp_path):
    routemap = {"service": "web", "guard": {}, "stages": [rolling("canary", 5), rolling("prod", 95)]}
    # v2 fails as often as v1 in prod; in the canary it fails half its requests, but the
    # canary serves too few for the guard to judge (min_requests 500): some 10 sessions, half on v2.
    edge = edges(f"file://{tmp_path}/store", routemap, failing={"v1": 2, "v2": 2})
    edge.set_hosts("prod", {"v1": 2, "v2": 2})
    edge.set_hosts("canary", {"v1": 1})
    edge.start()
    wait_for(edge.settled, timeout=60, what="v1 and v2 served")
    canary_v2 = FailingBackend("canary.v2#0", 50)
    edge.hosts["canary.v2#0"] = canary_v2
    edge.set_hosts("canary", {"v1": 1, "v2": 1})
    wait_for(edge.settled, timeout=60, what="the canary's v2 admitted")
    sessions, log = [BrowserSession() for _ in range(SESSIONS)], {}
    for round_no in range(40):                                  # 8,000 requests
        edge.visit(sessions, log, round_no)
    # Every Envoy's last reports in: the counts stop changing for two report intervals and a
    # record write (the requests are over in seconds; reports come every 2 s, each replica's
    # record within another second).
    health, last = {}, None
    deadline = time.monotonic() + 45
    while (health != last or ("canary", "v2") not in health) and time.monotonic() < deadline:
        last, health = health, dict(edge.plane.service("web").fleet.health())
        time.sleep(5)
    assert health == last, "the fleet's counts kept changing"
    # Sessions keep their version: how 200 of them split between v1 and v2 varies, but each
    # side serves well over min_requests (500): both are judged.
    assert health[("prod", "v1")].requests > 1500 and health[("prod", "v2")].requests > 1500
    assert 0 < health[("canary", "v2")].requests < 500                 # not judged
    assert health[("canary", "v2")].ratio > 0.3
    assert edge.halted() == {}
