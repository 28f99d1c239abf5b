"""The simulator's overload check (rollway.tools.sim.accounting.Overload): each allowance
the README states lets through what it allows and flags traffic beyond it, and the
tolerance is the one derived in ``tolerated``."""

from __future__ import annotations

from collections import Counter

import pytest

from rollway.tools.sim.accounting import WINDOW, Overload, tolerated

SESSIONS = 10_000
PER_TICK = 2_000      # requests to the stage per tick: 10,000 sessions asking 0.2 times a second


def run_ticks(overload: Overload, shares: dict[str, float], views, resident, capacities, ticks=WINDOW,
              stage="prod", start=0.0) -> int:
    """``ticks`` ticks in which each version gets exactly ``shares`` of the requests; the
    violations counted so far."""
    for i in range(ticks):
        requests = Counter({v: round(PER_TICK * share) for v, share in shares.items()})
        overload.tick(start + i, stage, capacities, requests, PER_TICK, views, resident, SESSIONS)
    return overload.metrics()["overload_violations"]


def test_the_tolerance_is_the_stated_one():
    # Ten ticks of 2,000 requests with a 10,000-session population: 1.18x a 0.1 bound,
    # 1.06x a 0.5 bound (README, "Overload").
    for bound, ratio in ((0.1, 1.18), (0.5, 1.06)):
        window = [(0, PER_TICK, bound)] * WINDOW
        assert tolerated(window, SESSIONS) / (WINDOW * PER_TICK * bound) == pytest.approx(ratio, abs=0.005)


def test_traffic_at_the_bound_passes_and_beyond_it_is_flagged():
    views = [({"v1": 0.5, "v2": 0.5}, {"v1", "v2"}, None)]
    caps = {"v1": 10, "v2": 10}
    assert run_ticks(Overload(), {"v1": 0.5, "v2": 0.5}, views, {"v1": 0.5, "v2": 0.5}, caps) == 0
    assert run_ticks(Overload(), {"v1": 0.4, "v2": 0.6}, views, {"v1": 0.5, "v2": 0.5}, caps) > 0


def test_a_paused_deploy_allows_the_sessions_on_the_drained_version_and_no_more():
    """Forward to v2 (v1 drained), then paused (both hold): v1 may carry the 40% of the
    sessions still on it when the pause began, not more."""
    forward = [({"v1": 0.2, "v2": 0.8}, {"v2"}, "v2")]
    paused = [({"v1": 0.2, "v2": 0.8}, {"v1", "v2"}, "v2")]
    caps, resident = {"v1": 2, "v2": 8}, {"v1": 0.4, "v2": 0.6}
    allowed = Overload()
    run_ticks(allowed, {"v1": 0.2, "v2": 0.8}, forward, resident, caps, ticks=1)
    assert run_ticks(allowed, {"v1": 0.4, "v2": 0.6}, paused, resident, caps, start=1) == 0
    beyond = Overload()
    run_ticks(beyond, {"v1": 0.2, "v2": 0.8}, forward, resident, caps, ticks=1)
    assert run_ticks(beyond, {"v1": 0.5, "v2": 0.5}, paused, resident, caps, start=1) > 0


def test_a_third_versions_target_takes_the_drained_versions_sessions_and_no_more():
    """v3 replacing v1 while v2 is still live: v3 may carry its share plus the 30% left on
    v1 (drained straight to v3), not more; v2, which holds, no more than its share."""
    views = [({"v1": 0.1, "v2": 0.3, "v3": 0.6}, {"v2", "v3"}, "v3")]
    caps, resident = {"v1": 1, "v2": 3, "v3": 6}, {"v1": 0.3, "v2": 0.5, "v3": 0.2}
    assert run_ticks(Overload(), {"v1": 0.0, "v2": 0.1, "v3": 0.9}, views, resident, caps) == 0
    assert run_ticks(Overload(), {"v1": 0.0, "v2": 0.0, "v3": 1.0}, views, resident, caps) > 0
    assert run_ticks(Overload(), {"v1": 0.0, "v2": 0.45, "v3": 0.55}, views, resident, caps) > 0


def test_weight_given_up_by_a_stage_is_allowed_and_no_more():
    """The canary (v2) shrinks from 5% to 0.5% while prod serves v2 too: prod's v2 may carry
    the 4.5% of the traffic given up (for the rest of the run: a session given up moves when
    it next asks), not more."""
    overload = Overload()
    both = {"prod": {"v1": 9, "v2": 1}, "canary": {"v2": 1}}
    overload.weights({"prod": 95.0, "canary": 5.0}, both)
    overload.weights({"prod": 99.5, "canary": 0.5}, both)
    assert overload.imported("prod", "v2") == pytest.approx(0.045 / 0.995)
    views = [({"v1": 0.9, "v2": 0.1}, {"v1", "v2"}, None)]     # steady: no deploy's target
    resident = {"v1": 0.9, "v2": 0.1}
    assert run_ticks(overload, {"v1": 0.86, "v2": 0.14}, views, resident, both["prod"]) == 0
    assert run_ticks(overload, {"v1": 0.8, "v2": 0.2}, views, resident, both["prod"], start=WINDOW) > 0


def test_a_holding_target_carries_its_share_and_its_residents_and_no_more():
    """A rollback to v1: v1 keeps every session on it, wherever its hash now lies, and gains
    those its 68% share gives it: up to 68% plus the 30% already on it, not more. A version
    that holds but is no target gets no such allowance."""
    views = [({"v1": 0.68, "v2": 0.32}, {"v1"}, "v1")]
    caps, resident = {"v1": 2.125, "v2": 1.0}, {"v1": 0.3, "v2": 0.7}
    assert run_ticks(Overload(), {"v1": 0.9, "v2": 0.1}, views, resident, caps) == 0
    assert run_ticks(Overload(), {"v1": 1.0, "v2": 0.0}, views, {"v1": 0.2, "v2": 0.8}, caps) > 0
    steady = [({"v1": 0.68, "v2": 0.32}, {"v1", "v2"}, None)]
    assert run_ticks(Overload(), {"v1": 0.8, "v2": 0.2}, steady, resident, caps) > 0
