"""The deploy simulator (work in progress, issue 6): its core claims on the scenarios it
already models faithfully. Decisions come from the real core, direction and admission
from the real control-plane code."""

import pytest

from rollway.sim import SimConfig, run


@pytest.mark.parametrize("scenario", ["rolling", "autoscale", "spot-loss", "rollback"])
def test_rollway_moves_every_session_once_with_lagging_envoys(scenario):
    m = run(SimConfig(scenario=scenario, strategy="rollway", sessions=2000, envoys=8, lag_max=30, seed=3)).metrics
    assert m["requests"] > 50_000
    assert m["bounces"] == 0
    assert m["refreshes_per_session_max"] == 1
    assert m["zero_capacity_requests"] == 0
    assert m["final_versions"] == ({"v1": 2000} if scenario == "rollback" else {"v2": 2000})


def test_the_peers_fail_where_rollway_holds():
    naive = run(SimConfig(scenario="rolling", strategy="naive", sessions=2000, seed=3)).metrics
    capacity = run(SimConfig(scenario="rolling", strategy="capacity", sessions=2000, seed=3)).metrics
    assert naive["zero_capacity_requests"] > 0          # hash % versions ignores capacity
    assert capacity["bounces"] > 0                      # no affinity: lagging views bounce sessions
    assert capacity["refreshes_per_session_max"] > 1
