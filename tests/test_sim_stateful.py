"""Hypothesis state machine: generated deploys through lagging Envoys never bounce a session.

Rules draw what happens to the stages' hosts and weights: deploy steps of random size and
pace, autoscaling of the whole fleet, spot hosts vanishing from either version, one
rollback, a third version starting mid-ramp, and canary weight shifts. At the end the
deploy runs through Envoys with random config delays, with the real core, direction
inference and admission (rollway.tools.sim). Asserted: zero bounces (a rollback's single move
back is not one), at most one refresh per session per deploy, no request decided onto a
version with zero capacity on the deciding Envoy, and overload within the stated bound.

The first version of this machine found the case that made failed responses commit
nothing: ``start(hosts=8, lag=3); autoscale(0.5); deploy_step(1); autoscale(0.5);
rollback()`` drains v2 in one step, and an Envoy that has not heard yet sent sessions,
just moved back to v1, to v2's vanished hosts again.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from rollway.tools.sim import SimConfig, World, run

ROUTEMAP = {"service": "web", "stages": [
    {"name": "canary", "weight": 0.5, "mode": "rolling", "serverset": "/discovery/web/canary"},
    {"name": "prod", "weight": 99.5, "mode": "rolling", "serverset": "/discovery/web/prod"}]}


class DeployMachine(RuleBasedStateMachine):
    @initialize(hosts=st.integers(6, 30), lag=st.floats(0.0, 40.0), envoys=st.integers(2, 8),
                seed=st.integers(0, 2**16), replicas=st.integers(1, 3))
    def start(self, hosts, lag, envoys, seed, replicas):
        self.counts = {"v1": float(hosts), "v2": 0.0, "v3": 0.0}
        self.canary_weight = 0.5
        self.t = 10.0
        self.rolled_back = False
        self.third = False
        self.weights_settle = 0.0
        self.cfg = SimConfig(strategy="rollway", sessions=1000, envoys=envoys, lag_max=lag, seed=seed,
                             request_rate=0.25, replicas=replicas, session_timeout=10.0, reconnect=2.0,
                             ack_timeout=30.0)
        self.failures: list[tuple[str, float]] = []
        self.silent: list[tuple[int, float]] = []
        self.events: list = []
        self.emit(0.0)

    def paced(self, extra: float) -> float:
        """The wait before a deploy step: one propagation time after the last change, two
        after a weight change (it goes out in two steps) -- and ``extra``. A deploy tool
        paced by the deploy gate also waits out an Envoy that has fallen silent: the gate
        blocks while it is in the quorum and behind, until the ACK timeout drops it."""
        wait = max(self.cfg.lag_max + 1.0, self.weights_settle - self.t) + extra
        for _, since in self.silent:
            if since <= self.t + wait < since + self.cfg.ack_timeout + self.cfg.lag_max + 1.0:
                wait = since + self.cfg.ack_timeout + self.cfg.lag_max + 1.0 - self.t
        return wait

    def emit(self, wait: float) -> None:
        self.t += wait
        live = {v: c for v, c in self.counts.items() if c > 0}
        weights = {"canary": self.canary_weight, "prod": 100 - self.canary_weight}
        self.events.append((self.t, World({"prod": live, "canary": {"v2": 2.0}}, weights,
                                          rollback_to="v1" if self.rolled_back else None)))

    # The deploy tool follows the operating rules the README states: batches at least one
    # config-propagation time (lag_max) apart, and a version's first hosts announced before
    # the last host of the version they replace is retired. A tool that retires the last
    # old host in the same step as it starts the new version leaves that host's sessions no
    # way to move only once (they must leave now, and the new version is not yet admitted).
    def replace(self, moves: list[tuple[str, str, float]], wait: float) -> None:
        new = any(self.counts[target] == 0 for _, target, n in moves if n > 0)
        emptied = any(self.counts[source] == n for source, _, n in moves if n > 0)
        for _, target, n in moves:
            self.counts[target] += n
        if new and emptied:              # surge: the new hosts first, the old ones next step
            self.emit(wait)
            wait = self.paced(0.0)
        for source, _, n in moves:
            self.counts[source] -= n
        self.emit(wait)

    @rule(batch=st.integers(1, 4), extra=st.floats(0.0, 30.0))
    def deploy_step(self, batch, extra):
        if self.rolled_back:
            order = [("v3", "v1"), ("v2", "v1")]
        elif self.third:
            order = [("v1", "v3"), ("v2", "v3")]     # the oldest hosts first
        else:
            order = [("v1", "v2")]
        moves = []
        for source, target in order:
            moved = min(batch, self.counts[source])
            moves.append((source, target, moved))
            batch -= moved
        self.replace(moves, self.paced(extra))

    @rule(factor=st.sampled_from([0.5, 0.75, 1.5, 2.0]), wait=st.floats(3.0, 20.0))
    def autoscale(self, factor, wait):
        if sum(self.counts.values()) * factor >= 2:
            self.counts = {v: c * factor for v, c in self.counts.items()}
            self.emit(wait)

    @rule(wait=st.floats(3.0, 20.0), version=st.sampled_from(["v1", "v2", "v3"]))
    def spot_loss(self, wait, version):
        if self.counts[version] >= 2:
            self.counts[version] -= 1
            self.emit(wait)

    @precondition(lambda self: not self.rolled_back and not self.third and self.counts["v2"] > 0
                  and self.counts["v1"] > 0)
    @rule(extra=st.floats(0.0, 20.0))
    def third_version(self, extra):
        self.third = True
        self.replace([("v1", "v3", min(2.0, self.counts["v1"]))], self.paced(extra))

    # Weight shifts at any point of prod's rollout or rollback to or from the canary's
    # version, also while prod serves it too (the stage cookie says which stage a session
    # is in then). Not once prod deploys v3 past the canary: weight moved to a canary that
    # runs an older build than prod's target takes sessions back to that build (README,
    # known limits).
    @precondition(lambda self: not self.third)
    @rule(weight=st.sampled_from([0.5, 1.0, 2.0, 5.0]), extra=st.floats(0.0, 30.0))
    def canary_shift(self, weight, extra):
        wait = self.paced(extra)   # operators change weights one propagation time apart, too
        self.canary_weight = weight
        self.emit(wait)
        self.weights_settle = self.t + 2 * self.cfg.lag_max + 1.0

    @precondition(lambda self: not self.rolled_back and self.counts["v1"] > 0
                  and (self.counts["v2"] > 0 or self.counts["v3"] > 0))
    @rule(extra=st.floats(0.0, 20.0))
    def rollback(self, extra):
        self.rolled_back = True
        newest = "v3" if self.third else "v2"
        self.replace([(newest, "v1", min(2.0, self.counts[newest]))], self.paced(extra))

    # The control plane fails at any point: its leader SIGKILLed (nothing is decided until
    # another replica's campaign wins; the dead replica's Envoys fail over), or a replica
    # restarted. An Envoy may fall silent: it routes on its last config, leaves the quorum
    # after the ACK timeout, and what it does to sessions after that is counted apart
    # (``bounces_after_stale``): the risk a stale Envoy carries (README).
    @rule(after=st.floats(0.0, 60.0), kind=st.sampled_from(["kill-leader", "restart"]))
    def control_plane_failure(self, after, kind):
        self.failures.append((kind, self.t + after))

    @precondition(lambda self: not self.silent)
    @rule(after=st.floats(0.0, 60.0), envoy=st.integers(0, 7))
    def envoy_falls_silent(self, after, envoy):
        self.silent.append((envoy, self.t + after))

    def teardown(self):
        if not hasattr(self, "events") or len(self.events) < 2:
            return
        self.cfg.failures, self.cfg.silent = tuple(self.failures), tuple(self.silent)
        metrics = run(self.cfg, events=self.events, routemap=ROUTEMAP).metrics
        assert metrics["bounces"] == 0, (metrics, self.events, self.failures, self.silent)
        assert metrics["refreshes_per_session_max"] <= 1, metrics
        assert metrics["zero_capacity_requests"] == 0, metrics
        # The overload bound (README, "Overload"): sessions are only ever held on a version,
        # so its traffic share stays within the largest capacity share it has had (spot
        # losses on the target, autoscaling down), twice that while three versions are live.
        # 1,000 sessions at 250 requests a tick sample a 5% share with about 12 requests,
        # hence the noise margin on the 99th percentile.
        assert metrics["overload_p99"] <= 1.5 * 2 * metrics["overload_hold_bound"], metrics


# derandomize: CI runs the same 40 generated deploys every time (a failure reproduces).
DeployMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=12, deadline=None,
                                           derandomize=True)
TestDeploys = DeployMachine.TestCase
