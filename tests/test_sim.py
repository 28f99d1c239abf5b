"""The deploy simulator (work in progress, issue 6): its core claims on the scenarios it
already models faithfully. Decisions come from the real core, direction and admission
from the real control-plane code."""

import pytest

from rollway.sim import SimConfig, run


@pytest.mark.parametrize("scenario", ["rolling", "autoscale", "spot-loss", "rollback", "blue-green"])
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


def test_rollway_simulate_cli_json_and_plot(tmp_path):
    import json
    import subprocess
    import sys

    plot = tmp_path / "rolling.png"
    out = subprocess.run([sys.executable, "-m", "rollway.cli", "simulate", "--scenario", "rolling", "--sessions", "800",
                          "--envoys", "4", "--lag-max", "10", "--json", "--plot", str(plot)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    for key in ("bounces", "refreshes_per_session_max", "zero_capacity_requests", "overload_max", "overload_p99"):
        assert key in metrics
    assert metrics["bounces"] == 0 and metrics["strategy"] == "rollway"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
