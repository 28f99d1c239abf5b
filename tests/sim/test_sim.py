"""The deploy simulator: its core claims on every named scenario, with fixed seeds.
Decisions come from the real core, direction and admission from the real control-plane
code (rollway.model.publication). Generated deploys are in test_sim_stateful.py."""

import itertools

import pytest

from rollway.tools.sim import FINAL_VERSION, SCENARIOS, SimConfig, World, run
from rollway.tools.sim.model import DEPLOY
from rollway.tools.sim.recount import STALE_BOUNCES_PER_MOVE

# Seconds each (servers, subprocesses, whole simulated deploys): not in `pytest -m unit`.
pytestmark = [pytest.mark.slow]


def assert_promise(m: dict) -> None:
    """The product's promise, as the README states it, and the overload bound at every tick.
    Bounces and reloads are counted strictly (rollway.tools.sim.recount); a stale Envoy may
    cause some, within the stated bound, and nothing else may."""
    assert m["bounces"] == m["bounces_stale_caused"] <= min(STALE_BOUNCES_PER_MOVE * m["stale_moves"], m["stale_bound"]), m
    assert m["refreshes_per_session_max_fresh"] <= 1, m
    if not m["stale_moves"]:
        assert m["bounces"] == 0 and m["refreshes_per_session_max"] <= 1, m
    assert m["zero_capacity_requests"] == 0, m
    assert m["overload_violations"] == 0, m
    assert m["steps_left"] == 0, m


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "stale-envoy"])
def test_rollway_moves_every_session_once_with_lagging_envoys(scenario):
    m = run(SimConfig(scenario=scenario, strategy="rollway", sessions=2000, envoys=8, lag_max=30, seed=3,
                      reconnect_rate=0.2)).metrics
    assert m["requests"] > 50_000 and m["reconnects"] > 0
    if scenario == "failover":     # three replicas, the leader SIGKILLed, a replica restarted
        assert m["leader_changes"] >= 1
    assert_promise(m)
    assert m["refreshes_per_session_max"] == 1
    if scenario == "canary-ramp":   # prod keeps v1, canary (v2) grows from 0.5% to 5%
        assert set(m["final_versions"]) == {"v1", "v2"} and 0.03 < m["final_versions"]["v2"] / 2000 < 0.08
    else:
        assert m["final_versions"] == {FINAL_VERSION.get(scenario, "v2"): 2000}


@pytest.mark.parametrize("drain", [0.0, 90.0])
@pytest.mark.parametrize("scenario", ["surge-rolling", "third-version", "rollback", "surge-rollback"])
def test_drained_hosts_that_still_serve_commit_their_moves_and_nothing_bounces(scenario, drain):
    """With a drain period, a lagging Envoy's request to a deregistered host succeeds and the
    filter commits the move (``requests_to_draining``); without one it fails and commits
    nothing (``requests_to_drained``). Either way: no bounce, one reload. An operator's
    rollback (the halt) reaches every Envoy before the new version's first hosts go, so
    nobody is sent to them once they are gone."""
    m = run(SimConfig(scenario=scenario, sessions=2000, envoys=8, lag_max=30, seed=4, drain=drain)).metrics
    assert_promise(m)
    if "rollback" in scenario:
        assert m["requests_to_drained"] == m["requests_to_draining"] == 0, m
    elif drain:
        assert m["requests_to_draining"] > 0 and m["requests_to_drained"] == 0
    else:
        assert m["requests_to_drained"] > 0 and m["requests_to_draining"] == 0


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_overload_stays_within_the_stated_bound_at_every_tick(scenario):
    # The bound (README, "Overload"), checked per tick against the same tick's Envoy views:
    # 10,000 sessions sample shares closely enough for a 4-sigma test to bite.
    for lag in (0, 30):
        m = run(SimConfig(scenario=scenario, sessions=10000, envoys=8, lag_max=lag, seed=5)).metrics
        assert m["overload_violations"] == 0, m
        if scenario not in ("blue-green", "canary-ramp"):
            assert m["overload_max"] > 1.2      # deploys do overload: the check is not vacuous


def test_the_peers_fail_where_rollway_holds():
    naive = run(SimConfig(scenario="rolling", strategy="naive", sessions=2000, seed=3)).metrics
    capacity = run(SimConfig(scenario="rolling", strategy="capacity", sessions=2000, seed=3)).metrics
    assert naive["zero_capacity_requests"] > 0          # hash % versions ignores capacity
    assert capacity["bounces"] > 0                      # no affinity: lagging views bounce sessions
    assert capacity["refreshes_per_session_max"] > 1


def test_admission_progresses_while_updates_come_faster_than_an_envoys_lag():
    """Found by this simulator: counting an ACK only for the *current* config starved
    admission whenever updates came faster than an Envoy's lag (the surge scenarios change
    the view every 10 s with up to 30 s of lag): the new version was never admitted and no
    session moved. ACKs now count for any config the server still retains."""
    m = run(SimConfig(scenario="surge-rolling", sessions=2000, envoys=8, lag_max=30, seed=3)).metrics
    assert m["refreshes"] >= 1900 and m["final_versions"] == {"v2": 2000}


def test_a_gate_paced_deploy_tool_with_surge_steps():
    """Steps paced by the deploy gate (``Gate``) rather than the clock: the run waits for
    every Envoy to hold the newest config, then takes the next step."""
    from rollway.tools.sim import Gate
    routemap = {"service": "web", "stages": [{"name": "prod", "weight": 100, "mode": "rolling",
                                              "serverset": "/discovery/web/prod"}]}
    events = [(0.0, World({"prod": {"v1": 10.0}}, {"prod": 100.0}))]
    v1, v2 = 10.0, 0.0
    kind = DEPLOY
    while v1:
        v2 += 2
        events.append((Gate(1.0), World({"prod": {"v1": v1, "v2": v2}}, {"prod": 100.0}, episode=1, kind=kind,
                                        target="v2")))
        v1 -= 2
        events.append((Gate(1.0), World({"prod": {"v1": v1, "v2": v2}}, {"prod": 100.0}, episode=1, kind=kind,
                                        target="v2")))
    m = run(SimConfig(sessions=1000, envoys=4, lag_max=20, seed=2), events=events, routemap=routemap).metrics
    assert_promise(m)
    assert m["final_versions"] == {"v2": 1000}


def test_rollway_simulate_cli_json_and_plot(tmp_path):
    import json
    import subprocess
    import sys

    plot = tmp_path / "surge.png"
    out = subprocess.run([sys.executable, "-m", "rollway.cli.main", "simulate", "--scenario", "surge-rollback",
                          "--sessions", "800", "--envoys", "4", "--lag-max", "10", "--drain", "0", "--json",
                          "--plot", str(plot)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    metrics = json.loads(out.stdout)
    for key in ("bounces", "refreshes_per_session_max", "zero_capacity_requests", "overload_max", "overload_p99",
                "overload_violations", "requests_to_drained"):
        assert key in metrics
    assert metrics["bounces"] == 0 and metrics["strategy"] == "rollway" and metrics["scenario"] == "surge-rollback"
    assert metrics["final_versions"] == {"v1": 800}
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    bad = subprocess.run([sys.executable, "-m", "rollway.cli.main", "simulate", "--scenario", "surge-sideways"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "surge-rollback" in bad.stderr


def test_a_stale_envoy_causes_bounces_within_the_stated_bound_and_nothing_else_does():
    """An Envoy that stops ACKing still routes on its last config. After the ACK timeout it
    leaves the quorum, a new version is admitted without it, and it sends back sessions
    that others moved: every such return is a bounce (counted), caused by the stale Envoy
    (shown apart), at most four per response of its that moved a session and at most the
    README's bound for its share of traffic and how long it was stale."""
    m = run(SimConfig(scenario="stale-envoy", sessions=2000, envoys=4, lag_max=10, seed=3)).metrics
    assert m["stale_decisions"] > 0 and m["bounces"] > 0
    assert m["bounces"] == m["bounces_stale_caused"] <= STALE_BOUNCES_PER_MOVE * m["stale_moves"] <= STALE_BOUNCES_PER_MOVE * m["stale_responses"]
    assert m["bounces_stale_caused"] <= m["stale_bound"]
    assert m["refreshes_per_session_max"] > 1 and m["refreshes_per_session_max_fresh"] == 1


def test_the_stale_bound_is_the_stated_formula():
    from rollway.tools.sim.runner import stale_bound

    # 4 Envoys, 2,000 sessions at 0.2 requests/s, one Envoy stale 100 s: 10,000 requests.
    assert stale_bound(SimConfig(envoys=4, sessions=2000, request_rate=0.2), 100.0) == STALE_BOUNCES_PER_MOVE * (10_000 + 500) == 6 * 10_500
    assert stale_bound(SimConfig(), 0.0) == 0


def test_every_scenario_keeps_the_promise_across_drains_lags_and_seeds():
    """A sweep, small sessions: 11 scenarios x drain none/propagation/long x lags."""
    for scenario, drain, lag in itertools.product(SCENARIOS, (0.0, None, 90.0), (5.0, 30.0)):
        m = run(SimConfig(scenario=scenario, sessions=600, envoys=6, lag_max=lag, seed=7, drain=drain,
                          reconnect_rate=0.2)).metrics
        assert_promise(m)


def test_an_unannounced_rollback_bounces_only_sessions_moved_forward_while_it_propagated():
    """Outside the operating rules (README, known limits): a rollback that moves hosts back
    at once, without the halt first. Envoys that have not heard of it keep moving sessions
    forward, and the rollback takes them back: bounces, each one a session moved forward
    after the rollback began and within one propagation time of it. The same deploy,
    announced, bounces none."""
    cfg = SimConfig(scenario="rollback-unannounced", sessions=2000, envoys=8, lag_max=30, seed=3, trace=True)
    result = run(cfg)
    began = next(line["t"] for line in result.trace if line.get("action") == "rollback")
    window = began + cfg.debounce + cfg.spread + cfg.lag_max + 1.0
    last: dict[int, str] = {}
    late_forward = set()
    for line in result.trace:
        if "session" in line:
            if line["version"] == "v2" and last.get(line["session"]) == "v1" and began <= line["t"] <= window:
                late_forward.add(line["session"])
            last[line["session"]] = line["version"]
    m = result.metrics
    assert 0 < m["sessions_bounced"] <= len(late_forward), (m["sessions_bounced"], len(late_forward))
    assert m["bounces"] == m["sessions_bounced"] and m["bounces_stale_caused"] == 0
    announced = run(SimConfig(scenario="rollback", sessions=2000, envoys=8, lag_max=30, seed=3)).metrics
    assert announced["bounces"] == 0 and announced["final_versions"] == {"v1": 2000}


@pytest.mark.parametrize("seed, lag", [(1, 30.0), (2, 5.0), (3, 60.0)])
def test_the_guard_halts_a_bad_build_and_its_sessions_go_back_once_against_its_unguarded_peer(seed, lag):
    """``bad-build``: v2 fails 30 % of its requests. Guarded (``action: rollback``), the halt
    reaches every Envoy, the deploy tool stops, every session on v2 goes back once (the
    halt and the rollback are in the trace, and the recount of the trace finds no bounce);
    unguarded, the deploy finishes and every session ends on the bad build."""
    from rollway.tools.sim.recount import recount

    guarded = run(SimConfig(scenario="bad-build", envoys=6, sessions=3000, lag_max=lag, seed=seed, trace=True))
    peer = run(SimConfig(scenario="bad-build", strategy="unguarded", envoys=6, sessions=3000, lag_max=lag,
                         seed=seed)).metrics
    m = guarded.metrics
    assert_promise(m)
    assert m["time_to_halt"] is not None and m["halt_decided_after"] <= m["time_to_halt"]
    assert m["sessions_left_on_bad"] == 0 and m["final_versions"] == {"v1": 3000}
    assert m["justified_returns"] > 0                      # sessions did come back from v2, once each
    actions = [(a["action"], a["target"]) for a in guarded.trace if "action" in a]
    assert actions == [("deploy", "v2"), ("halt", "v2"), ("rollback", "v1")]
    assert recount(guarded.trace).summary() == {k: m[k] for k in recount(guarded.trace).summary()}
    assert peer["time_to_halt"] is None and peer["sessions_left_on_bad"] == 3000 and peer["bounces"] == 0
    assert m["sessions_met_errors"] * 3 < peer["sessions_met_errors"]


def test_the_guard_does_not_judge_a_build_as_good_as_its_baseline():
    m = run(SimConfig(scenario="bad-build", envoys=6, sessions=3000, bad_errors=0.02, seed=4)).metrics
    assert m["time_to_halt"] is None and m["halt_decided_after"] is None
    assert m["sessions_left_on_bad"] == 3000 and m["bounces"] == 0 and m["steps_left"] == 0
