"""WORK IN PROGRESS, not collected by pytest (the file name does not start with test_):
it fails today, and issue 6 stays open until it passes as tests/test_sim_stateful.py.

Falsifying example found by hypothesis (8 bounces among 4 sessions):
    start(hosts=8, lag=3.0, envoys=2, seed=1); autoscale(0.5); deploy_step(1);
    autoscale(0.5); rollback()   # the rollback drains v2 (0.5 capacity) in one step
Fast Envoys move v2 sessions back to v1 as v2 vanishes, while an Envoy that has not heard
yet still runs `forward` with v2 live and moves them to v2 again (onto hosts that are gone).
Needs a decision on how a deploy that ends by draining its target is published.
Run it by hand: .venv/bin/python -m pytest tests/wip_sim_stateful.py

Hypothesis state machine: random deploys through lagging Envoys never bounce a session.

Rules draw what happens to a stage's hosts (deploy steps of random size and pace,
autoscaling of the whole fleet, spot hosts vanishing, one rollback); at the end the
deploy is simulated through Envoys with random config delays, with the real core, direction
inference and admission. Asserted: zero bounces, at most one refresh per session per
deploy, no request ever decided onto a version with zero capacity on the deciding Envoy.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from rollway.sim import SimConfig, World, run

ROUTEMAP = {"service": "web", "stages": [
    {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/discovery/web/prod"}]}


class DeployMachine(RuleBasedStateMachine):
    @initialize(hosts=st.integers(6, 30), lag=st.floats(0.0, 40.0), envoys=st.integers(2, 8),
                seed=st.integers(0, 2**16))
    def start(self, hosts, lag, envoys, seed):
        self.counts = {"v1": float(hosts), "v2": 0.0}
        self.t = 10.0
        self.rolled_back = False
        self.cfg = SimConfig(strategy="rollway", sessions=600, envoys=envoys, lag_max=lag, seed=seed,
                             request_rate=0.3)
        self.events = [(self.t, World({"prod": dict(self.counts)}, {"prod": 1}))]

    def emit(self, wait: float) -> None:
        self.t += wait
        live = {v: c for v, c in self.counts.items() if c > 0}
        self.events.append((self.t, World({"prod": live}, {"prod": 1},
                                          rollback_to="v1" if self.rolled_back else None)))

    @rule(batch=st.integers(1, 4), wait=st.floats(3.0, 40.0))
    def deploy_step(self, batch, wait):
        source, target = ("v2", "v1") if self.rolled_back else ("v1", "v2")
        moved = min(batch, self.counts[source])
        self.counts[source] -= moved
        self.counts[target] += moved
        self.emit(wait)

    @rule(factor=st.sampled_from([0.5, 0.75, 1.5, 2.0]), wait=st.floats(3.0, 20.0))
    def autoscale(self, factor, wait):
        if sum(self.counts.values()) * factor >= 2:
            self.counts = {v: c * factor for v, c in self.counts.items()}
            self.emit(wait)

    @rule(wait=st.floats(3.0, 20.0), from_new=st.booleans())
    def spot_loss(self, wait, from_new):
        version = "v2" if from_new else "v1"
        if self.counts[version] >= 2:
            self.counts[version] -= 1
            self.emit(wait)

    @precondition(lambda self: not self.rolled_back and self.counts["v2"] > 0 and self.counts["v1"] > 0)
    @rule(wait=st.floats(3.0, 20.0))
    def rollback(self, wait):
        self.rolled_back = True
        moved = min(2.0, self.counts["v2"])
        self.counts["v2"] -= moved
        self.counts["v1"] += moved
        self.emit(wait)

    def teardown(self):
        if not hasattr(self, "events") or len(self.events) < 2:
            return
        metrics = run(self.cfg, events=self.events, routemap=ROUTEMAP).metrics
        assert metrics["bounces"] == 0, (metrics, self.events)
        assert metrics["refreshes_per_session_max"] <= 1, metrics
        assert metrics["zero_capacity_requests"] == 0, metrics


DeployMachine.TestCase.settings = settings(max_examples=25, stateful_step_count=10, deadline=None)
# (Shrinking a failure takes minutes at this size; keep the budget in mind before adding it to CI.)
TestDeploys = DeployMachine.TestCase
