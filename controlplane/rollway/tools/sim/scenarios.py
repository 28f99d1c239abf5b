"""The named deploy scenarios, as (time, World) steps and a route map.

In-place scenarios replace ``batch`` hosts per step (the runner spreads a step's host
changes over ``spread`` seconds, so halves of a batch land in different debounce windows);
the ``surge-*`` ones announce the incoming hosts a half step before retiring the outgoing
ones, as Kubernetes-style ``maxSurge`` deploys do. Every scenario follows the README's
operating rule: a version's first hosts are announced before the last host of the version
they replace goes.
"""

from __future__ import annotations

import dataclasses
import random

from rollway.tools.sim.model import DEPLOY, HALT, ROLLBACK, START, SWITCH, WEIGHTS, Gate, SimConfig, World

SCENARIOS = ("rolling", "rollback", "autoscale", "spot-loss", "third-version", "blue-green", "canary-ramp",
             "failover", "stale-envoy", "surge-rolling", "surge-rollback")
# Outside the operating rules, to show what breaking one costs (README, known limits): a
# rollback that starts moving hosts back without announcing itself first.
LIMITS = ("rollback-unannounced",)
# The bad-build guard (issue 28): the new version fails a share of its requests; compared
# with the same rules without the guard (strategy ``unguarded``), not with the naive peers.
GUARDED = ("bad-build",)
BAD_VERSION = "v2"
FINAL_VERSION = {"rollback": "v1", "surge-rollback": "v1", "third-version": "v3", "rollback-unannounced": "v1"}


class _Timeline:
    def __init__(self, cfg: SimConfig):
        self.t, self.episode, self.kind = 10.0, 0, START
        self.target: str | None = None
        self.events: list[tuple[float | Gate, World]] = []
        self.weights = {"prod": 99.0}

    def emit(self, hosts: dict, kind: str | None = None, active: str = "blue", target: str | None = None,
             gated: bool = False) -> None:
        """A step at the current time (``gated``: once the deploy gate opens, as ``rollway
        deploy wait`` paces a tool); ``kind`` starts a new operator action (to ``target``)."""
        if kind is not None:
            self.episode, self.kind, self.target = self.episode + 1, kind, target
        live = {s: {v: float(c) for v, c in caps.items() if c > 0} for s, caps in hosts.items()}
        world = World(live, dict(self.weights), active, self.episode, self.kind, self.target)
        self.events.append((Gate() if gated else self.t, world))


PROD = {"name": "prod", "weight": 99, "mode": "rolling", "serverset": "/discovery/web/prod"}


def timeline(cfg: SimConfig, rng: random.Random) -> tuple[list[tuple[float | Gate, World]], dict]:
    """The scenario as (time, World) steps, and its route map."""
    tl = _Timeline(cfg)
    if cfg.scenario == "blue-green":
        return _blue_green(cfg, tl)
    if cfg.scenario == "canary-ramp":
        return _canary_ramp(cfg, tl)
    if cfg.scenario == "third-version":
        return _third_version(cfg, tl)
    if cfg.scenario == "bad-build":
        return _bad_build(cfg, tl)
    return _rolling(cfg, rng, tl)


def _bad_build(cfg: SimConfig, tl: _Timeline) -> tuple[list[tuple[float | Gate, World]], dict]:
    """A rolling deploy of a bad v2 over v1, paced by the deploy gate as ``rollway deploy
    wait`` paces a tool: a halt stops the tool (``deploy wait`` exits 1), which leaves the
    hosts as they are. Guarded with ``action: rollback``: v2's sessions go back to v1."""
    h, b = cfg.hosts, cfg.batch
    counts = {"v1": h, "v2": 0}
    tl.emit({"prod": dict(counts)})
    kind: str | None = DEPLOY
    while counts["v1"] > 0:
        tl.t += cfg.step_interval
        n = min(b, counts["v1"])
        counts["v1"] -= n
        counts[BAD_VERSION] += n
        tl.emit({"prod": dict(counts)}, kind, target=BAD_VERSION)
        if kind is None:    # the tool's bake time after the gate opens, then the next step
            tl.events[-1] = (Gate(cfg.step_interval), tl.events[-1][1])
        kind = None
    return tl.events, {"service": "web", "guard": {"action": "rollback"}, "stages": [PROD]}


def _blue_green(cfg: SimConfig, tl: _Timeline) -> tuple[list[tuple[float | Gate, World]], dict]:
    routemap = {"service": "web", "stages": [{"name": "bg", "weight": 1, "mode": "blue_green", "active": "blue",
                                              "slots": {"blue": {"serverset": "/d/blue"},
                                                        "green": {"serverset": "/d/green"}}}]}
    tl.weights = {"bg": 1.0}
    world = {"bg/blue": {"v1": cfg.hosts}, "bg/green": {"v2": cfg.hosts}}
    tl.emit(world)
    tl.t += 60
    tl.emit(world, SWITCH, active="green")
    return tl.events, routemap


def _canary_ramp(cfg: SimConfig, tl: _Timeline) -> tuple[list[tuple[float | Gate, World]], dict]:
    routemap = {"service": "web",
                "stages": [{"name": "canary", "weight": 0.5, "mode": "rolling", "serverset": "/d/canary"}, PROD]}
    world = {"prod": {"v1": cfg.hosts}, "canary": {"v2": max(2, cfg.hosts // 5)}}
    tl.weights = {"canary": 0.5, "prod": 99.5}
    tl.emit(world)
    for w in (1, 2, 5):
        tl.t += cfg.step_interval * 2
        tl.weights = {"canary": float(w), "prod": 100.0 - w}
        tl.emit(world, WEIGHTS)
    return tl.events, routemap


def _third_version(cfg: SimConfig, tl: _Timeline) -> tuple[list[tuple[float | Gate, World]], dict]:
    """v2 replaces v1 until half the hosts run v2; then v3 starts and replaces the oldest
    hosts first (the rest of v1, then v2) until it runs everywhere."""
    h, b, step = cfg.hosts, cfg.batch, cfg.step_interval
    hosts = ["v1"] * h
    tl.emit({"prod": {"v1": h}})
    kind: str | None = DEPLOY
    while hosts.count("v2") < h // 2:
        tl.t += step
        for _ in range(b):
            if "v1" in hosts:
                hosts[hosts.index("v1")] = "v2"
        tl.emit({"prod": {v: hosts.count(v) for v in ("v1", "v2")}}, kind, target="v2")
        kind = None
    kind = DEPLOY
    while hosts.count("v3") < h:
        tl.t += step
        for _ in range(b):
            oldest = "v1" if "v1" in hosts else "v2"
            if oldest in hosts:
                hosts[hosts.index(oldest)] = "v3"
        tl.emit({"prod": {v: hosts.count(v) for v in ("v1", "v2", "v3")}}, kind, target="v3")
        kind = None
    return tl.events, {"service": "web", "stages": [PROD]}


def _rolling(cfg: SimConfig, rng: random.Random, tl: _Timeline) -> tuple[list[tuple[float | Gate, World]], dict]:
    """A rolling deploy of v2 over v1 (in place or surge-style), with the autoscaler or spot
    losses acting between steps, and turned back halfway in the rollback scenarios (announced
first: the halt, then the move back once the gate opens)."""
    h, b, step = cfg.hosts, cfg.batch, cfg.step_interval
    surge = cfg.scenario.startswith("surge-")
    back = cfg.scenario in ("rollback", "surge-rollback", "rollback-unannounced")
    counts = {"v1": float(h), "v2": 0.0}     # hosts; what is registered is counts x scale
    scale = 1.0

    def emit(kind: str | None = None, gated: bool = False) -> None:
        tl.emit({"prod": {v: c * scale for v, c in counts.items()}}, kind,
                target="v1" if kind in (ROLLBACK, HALT) else "v2", gated=gated)

    def move(source: str, target: str, n: float, kind: str | None) -> None:
        if surge:   # the incoming hosts first, the outgoing ones half a step later
            counts[target] += n
            emit(kind)
            tl.t += step / 2
            counts[source] -= n
            emit()
        else:
            counts[target] += n
            counts[source] -= n
            emit(kind)

    emit()
    kind: str | None = DEPLOY
    steps = 0
    while counts["v1"] > 0 and not (back and counts["v2"] >= h // 2):
        tl.t += step / 2 if surge else step
        move("v1", "v2", min(float(b), counts["v1"]), kind)
        kind, steps = None, steps + 1
        if cfg.scenario == "autoscale" and steps in (2, 6, 8):
            tl.t += step / 4     # the autoscaler acts between two deploy steps
            scale = {2: 1.5, 6: 1.0, 8: 0.75}[steps]
            emit()
        if cfg.scenario == "spot-loss" and rng.random() < 0.5 and counts["v1"] >= 2:
            tl.t += step / 4
            counts["v1"] -= 1    # a spot host of the old version vanishes
            emit()
    if back and cfg.scenario == "rollback-unannounced":
        kind = ROLLBACK
        while counts["v2"] > 0:
            tl.t += step
            move("v2", "v1", min(float(b), counts["v2"]), kind)
            kind = None
    elif back:
        # Announced first (README, "Rolling back"): v1's first hosts come back while v2 keeps
        # all of its own (the deploy is held: nobody moves either way), and v2's first hosts
        # go only once the gate opens, every Envoy holding the halt. A session a lagging
        # Envoy still moved forward meanwhile left v1 before the rollback began.
        n = min(float(b), counts["v2"])
        tl.t += step / 2 if surge else step
        counts["v1"] += n
        emit(HALT)
        tl.t += cfg.debounce + cfg.spread + cfg.lag_max + 1.0    # about when the gate opens
        counts["v2"] -= n
        emit(ROLLBACK, gated=True)
        kind = None
        while counts["v2"] > 0:
            tl.t += step / 2 if surge else step
            move("v2", "v1", min(float(b), counts["v2"]), kind)
            kind = None
    return tl.events, {"service": "web", "stages": [PROD]}


def with_faults(cfg: SimConfig) -> SimConfig:
    """The control-plane faults of the ``failover`` and ``stale-envoy`` scenarios (a rolling
    deploy underneath): three replicas, the leader SIGKILLed a third of the way in and a
    replica restarted two thirds in; or one Envoy falling silent before the deploy starts
    (it never learns of the new version)."""
    span = 10.0 + cfg.step_interval * cfg.hosts / max(1, cfg.batch)
    if cfg.scenario == "failover" and not cfg.failures:
        return dataclasses.replace(cfg, replicas=max(3, cfg.replicas),
                                   failures=(("kill-leader", span / 3), ("restart", 2 * span / 3)))
    if cfg.scenario == "stale-envoy" and not cfg.silent:
        return dataclasses.replace(cfg, replicas=max(2, cfg.replicas), silent=((0, 5.0),))
    return cfg
