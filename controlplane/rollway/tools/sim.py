"""Deploy simulation: does every session move to the new version once, while Envoys learn
about capacity at different times?

A fleet of K Envoys, each receiving config updates after its own delay (drawn once per
Envoy from 0..lag_max: updates arrive in order, like one xDS stream each); S browser
sessions that keep their cookies, send requests to random Envoys, and reload when told;
and a deploy tool changing a stage's hosts over time. Nothing here restates a routing
rule: decisions come from the C++ core (``Router.route_many``); the filter config, direction
and admission from ``rollway.model.publish.publish``, the same function and deploy state
the control plane's leader runs.

Strategies compared on the same scenario and seed:

- ``naive``: version = hash(id) % number of versions the stage has seen (no capacity);
- ``capacity``: the core's capacity-ordered choice with no session affinity (no tiebreak);
- ``rollway``: the full rules (wanted version, direction tiebreak, admission).

Usage::

    from rollway.tools.sim import SimConfig, run
    result = run(SimConfig(scenario="rolling", envoys=8, sessions=10000, lag_max=30, seed=1))
    result.metrics["bounces"]
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
from dataclasses import dataclass, field

from rollway import Router, murmur3_32, new_routing_id
from rollway.model.admission import KnowsSets, known_versions
from rollway.model.deploy_state import DeployState
from rollway.model.publish import publish, render_config
from rollway.model.routemap import parse_routemap
from rollway.sources.serverset import ServersetView

SCENARIOS = ("rolling", "rollback", "autoscale", "spot-loss", "third-version", "blue-green", "canary-ramp",
             "failover", "stale-envoy")
STRATEGIES = ("naive", "capacity", "rollway")
NOW0 = 1_750_000_000


@dataclass
class SimConfig:
    scenario: str = "rolling"
    strategy: str = "rollway"
    envoys: int = 8
    sessions: int = 10000
    lag_max: float = 30.0
    seed: int = 1
    hosts: int = 20             # hosts in the deployed stage
    batch: int = 2              # hosts replaced per deploy step
    step_interval: float = 20.0  # seconds between deploy steps
    request_rate: float = 0.2   # requests per session per second
    tick: float = 1.0           # simulated seconds per tick
    # The control plane as a fleet: Envoys split across replicas (one leader writes the deploy
    # state, followers render it with their own views); failures at given times:
    # ("kill-leader", t): no decision until another replica's campaign wins, ``session_timeout``
    # later, the dead replica's Envoys fail over after ``reconnect``; ("restart", t): a replica
    # (the leader, if it is one) stops cleanly and comes back, its Envoys reconnect after
    # ``reconnect``. ``silent``: (Envoy index, time) pairs: from then the Envoy applies and ACKs
    # nothing more, still routing on its last config; after ``ack_timeout`` it leaves the quorum.
    replicas: int = 1
    failures: tuple = ()
    silent: tuple = ()
    session_timeout: float = 10.0
    reconnect: float = 2.0
    ack_timeout: float = 30.0


@dataclass
class World:
    """What is really deployed: hosts per version per stage, weights, blue-green slot."""
    hosts: dict[str, dict[str, float]]
    weights: dict[str, float]
    active: str = "blue"
    rollback_to: str | None = None   # the version a rollback returns to, while it runs


def timeline(cfg: SimConfig, rng: random.Random) -> tuple[list[tuple[float, World]], dict]:
    """The scenario as (time, world) events, and its route map."""
    h, b, step = cfg.hosts, cfg.batch, cfg.step_interval
    prod = {"name": "prod", "weight": 99, "mode": "rolling", "serverset": "/discovery/web/prod"}
    routemap = {"service": "web", "stages": [prod]}
    events: list[tuple[float, World]] = []
    t = 10.0

    def emit(hosts, weights=None, **kw):
        events.append((t, World({s: dict(v) for s, v in hosts.items()}, dict(weights or {"prod": 99}), **kw)))

    if cfg.scenario == "blue-green":
        routemap = {"service": "web", "stages": [{"name": "bg", "weight": 1, "mode": "blue_green", "active": "blue",
                                                  "slots": {"blue": {"serverset": "/d/blue"},
                                                            "green": {"serverset": "/d/green"}}}]}
        world = {"bg/blue": {"v1": h}, "bg/green": {"v2": h}}
        emit(world, {"bg": 1}, active="blue")
        t += 60
        emit(world, {"bg": 1}, active="green")
        return events, routemap
    if cfg.scenario == "canary-ramp":
        routemap["stages"] = [{"name": "canary", "weight": 0.5, "mode": "rolling", "serverset": "/d/canary"}, prod]
        world = {"prod": {"v1": h}, "canary": {"v2": max(2, h // 5)}}
        emit(world, {"canary": 0.5, "prod": 99.5})
        for w in (1, 2, 5):
            t += step * 2
            emit(world, {"canary": w, "prod": 100 - w})
        return events, routemap

    if cfg.scenario == "third-version":
        # Real hosts: v2 replaces v1 until half the hosts run v2; then v3 starts and replaces
        # the oldest hosts first (the rest of v1, then v2) until it runs everywhere.
        hosts = ["v1"] * h
        emit({"prod": {"v1": float(h)}})
        while hosts.count("v2") < h // 2:
            t += step
            for _ in range(b):
                if "v1" in hosts:
                    hosts[hosts.index("v1")] = "v2"
            emit({"prod": {v: float(hosts.count(v)) for v in ("v1", "v2") if hosts.count(v)}})
        while hosts.count("v3") < h:
            t += step
            for _ in range(b):
                oldest = "v1" if "v1" in hosts else "v2"
                if oldest in hosts:
                    hosts[hosts.index(oldest)] = "v3"
            emit({"prod": {v: float(hosts.count(v)) for v in ("v1", "v2", "v3") if hosts.count(v)}})
        return events, routemap

    counts = {"v1": float(h)}
    emit({"prod": counts})
    moved = 0
    scale = 1.0
    while moved < h:
        t += step
        moved = min(h, moved + b)
        if cfg.scenario == "rollback" and moved > h // 2:
            break
        counts = {"v1": float(h - moved), "v2": float(moved)}
        if cfg.scenario == "autoscale":
            scale = {2: 1.5, 6: 1.0, 8: 0.75}.get(moved // b, scale)
            counts = {v: c * scale for v, c in counts.items()}
        if cfg.scenario == "spot-loss" and rng.random() < 0.5 and counts.get("v1", 0) >= 1:
            counts["v1"] -= 1  # a spot host of the old version vanishes
        emit({"prod": counts})
    if cfg.scenario == "rollback":
        while counts.get("v2", 0) > 0:
            t += step
            back = min(b, counts["v2"])
            counts = {"v1": counts["v1"] + back, "v2": counts["v2"] - back}
            emit({"prod": counts}, rollback_to="v1")
    return events, routemap


def _scenario_faults(cfg: SimConfig) -> SimConfig:
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


class ControlPlaneSim:
    """The control plane's leader over a scenario's world: the same ``publish`` function and
    deploy state as the server (rollway.model.publish)."""

    def __init__(self, routemap: dict):
        self.routemap = parse_routemap(routemap)
        self.state = DeployState()
        self.config: dict | None = None
        self.weights: dict | None = None
        self.weight_change = 0                           # counts operator weight changes
        self.weight_change_of: dict[int, int] = {}       # config generation -> weight change

    def build(self, world: World, envoys_know: list[set], leading: bool = True) -> dict | None:
        if world.weights != self.weights:
            self.weights = dict(world.weights)
            self.weight_change += 1
        doc = json.loads(json.dumps(self.routemap.document))
        for stage in doc["stages"]:
            stage["weight"] = world.weights.get(stage["name"], stage["weight"])
            if stage["mode"] == "blue_green":
                stage["active"] = world.active
        routemap = parse_routemap(doc)
        views = {k: ServersetView(k, {v: c for v, c in caps.items() if c > 0}, {}, int(sum(caps.values())), 0)
                 for k, caps in world.hosts.items()}
        generation = self.state.generation
        if not leading:
            # No leader: followers render the last deploy state with their own views (capacity
            # moves, direction and admission stay as the dead leader left them).
            config = render_config(routemap, views, self.state)
            if self.config is not None and config == self.config:
                return None
        else:
            config = publish(routemap, views, self.state, KnowsSets(envoys_know))
            if self.config is not None and config["generation"] == generation:
                return None
        self.weight_change_of[config["generation"]] = self.weight_change
        self.config = config
        return config


@dataclass
class Envoy:
    delay: float
    replica: int = 0
    silent_from: float | None = None      # stops applying and ACKing configs from then
    disconnected_until: float = -1.0      # its replica died or restarted: no config until then
    pending: list = field(default_factory=list)   # (arrival time, config)
    router: Router | None = None
    config: dict | None = None
    knows: set = field(default_factory=set)
    stages: dict = field(default_factory=dict)      # stage name -> (stage config, {version: capacity})

    def apply(self, config: dict) -> None:
        self.config, self.router, self.knows = config, Router(json.dumps(config)), known_versions(config)
        self.stages = {}
        for stage in config["stages"]:
            caps = {x["name"]: x["capacity"] for x in stage.get("versions", [])} or \
                {x["version"]: x["capacity"] for x in stage.get("slots", {}).values()}
            self.stages[stage["name"]] = (stage, caps)


@dataclass
class SimResult:
    metrics: dict
    series: dict   # time -> {"sessions": {version: share}, "capacity": {version: share}}


def run(cfg: SimConfig, events: list[tuple[float, World]] | None = None, routemap: dict | None = None) -> SimResult:
    """Simulates ``cfg.scenario``, or the given ``events`` (time, World) over ``routemap``
    (for generated deploys, e.g. hypothesis state machines)."""
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
    rng = random.Random(cfg.seed)
    if events is None:
        if cfg.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}")
        cfg = _scenario_faults(cfg)
        events, routemap = timeline(cfg, random.Random(cfg.seed + 1))
    plane = ControlPlaneSim(routemap)
    envoys = [Envoy(rng.uniform(0, cfg.lag_max), replica=k % max(1, cfg.replicas)) for k in range(cfg.envoys)]
    for index, when in cfg.silent:
        envoys[index % len(envoys)].silent_from = when
    failures = sorted((when, kind) for kind, when in cfg.failures)
    leader, leader_down_until = 0, -1.0
    tainted: set[int] = set()      # sessions a stale Envoy (out of the quorum) moved
    ids = [new_routing_id(NOW0, random_bits=rng.getrandbits(64)) for _ in range(cfg.sessions)]
    keys = [murmur3_32(rid[9:25]) for rid in ids]
    cookie: list[str | None] = [None] * cfg.sessions
    stage_cookie: list[str | None] = [None] * cfg.sessions
    app: list[str | None] = [None] * cfg.sessions
    last: list[str | None] = [None] * cfg.sessions
    last_stage: list[str | None] = [None] * cfg.sessions
    left: list[set] = [set() for _ in range(cfg.sessions)]
    moves: dict = {}
    refreshes: dict = {}
    seen_versions: dict[str, list[str]] = {}
    metrics = {"bounces": 0, "sessions_bounced": 0, "zero_capacity_requests": 0, "requests": 0,
               "requests_to_drained": 0, "refreshes": 0, "bounces_after_stale": 0, "stale_decisions": 0,
               "leader_changes": 0}
    bounced: set[int] = set()
    on_version: dict[str, int] = {}  # sessions whose last response came from each version
    overloads: list[float] = []
    lag_bounds: list[float] = []
    hold_bounds: list[float] = []
    largest_share: dict[str, float] = {}  # stage:version -> the largest capacity share so far
    share_history: list[tuple[float, dict]] = []  # (time, {stage:version: capacity share}), last lag_max seconds
    stage_errors: list[float] = []
    series: dict = {}

    end = events[-1][0] + cfg.lag_max + 4 * cfg.step_interval
    t, ev = 0.0, 0
    world = events[0][1]
    p = min(1.0, cfg.request_rate * cfg.tick)

    def older(stage: str, a: str, b: str) -> bool:
        order = seen_versions.get(stage, [])
        return a in order and b in order and order.index(a) < order.index(b)

    def push(config: dict) -> None:
        for envoy in envoys:
            if envoy.disconnected_until <= t:
                envoy.pending.append((t + envoy.delay, config))

    def stale(envoy: Envoy) -> bool:
        return envoy.silent_from is not None and t - envoy.silent_from > cfg.ack_timeout

    def fail(kind: str) -> None:
        nonlocal leader, leader_down_until
        down = leader if kind == "kill-leader" else rng.randrange(max(1, cfg.replicas))
        for envoy in envoys:
            if envoy.replica == down:
                envoy.pending.clear()              # the stream broke: nothing more arrives from it
                envoy.disconnected_until = t + cfg.reconnect
        if down == leader:
            # A SIGKILLed leader keeps its lease until its session expires; a clean stop (or
            # a single replica coming back) hands over at once.
            wait = cfg.session_timeout if kind == "kill-leader" and cfg.replicas > 1 else cfg.reconnect
            leader_down_until = t + wait
            leader = (leader + 1) % max(1, cfg.replicas)
            metrics["leader_changes"] += 1

    while t <= end:
        changed = False
        while ev < len(events) and events[ev][0] <= t:
            world = events[ev][1]
            ev += 1
            changed = True
        while failures and failures[0][0] <= t:
            fail(failures.pop(0)[1])
            changed = True
        applied = False
        for envoy in envoys:
            if envoy.silent_from is not None and t >= envoy.silent_from:
                envoy.pending.clear()              # silent: applies and ACKs nothing more
                continue
            if envoy.disconnected_until > 0 and envoy.disconnected_until <= t:
                envoy.disconnected_until = -1.0    # reconnected (to another replica): sent the current config
                if plane.config is not None:
                    envoy.pending.append((t + envoy.delay, plane.config))
            due = [c for when, c in envoy.pending if when <= t]
            if due:
                envoy.pending = [(w, c) for w, c in envoy.pending if w > t]
                envoy.apply(due[-1])
                applied = True
        if changed or applied:  # a world change or an ACK may change the config
            # The quorum: every Envoy but those silent for longer than the ACK timeout (a
            # disconnected one still counts, with what it last ACKed).
            config = plane.build(world, [e.knows for e in envoys if not stale(e)], leading=t >= leader_down_until)
            if config is not None:
                push(config)
                if all(e.router is None for e in envoys):  # start-up: everyone gets the first config
                    for e in envoys:
                        e.pending.clear()
                        e.apply(config)
        for stage_name, caps in world.hosts.items():
            stage_key = stage_name.split("/")[0]
            for v in caps:
                if v not in seen_versions.setdefault(stage_key, []):
                    seen_versions[stage_key].append(v)

        # Each session requests with probability p this tick. For large fleets draw how many
        # (normal approximation of the binomial), then which: 100k coin flips per tick cost
        # more than the routing itself.
        if cfg.sessions <= 1000:
            active = [i for i in range(cfg.sessions) if rng.random() < p]
        else:
            n_active = int(round(rng.gauss(p * cfg.sessions, math.sqrt(cfg.sessions * p * (1 - p)))))
            active = rng.sample(range(cfg.sessions), min(cfg.sessions, max(0, n_active)))
        truth_by_stage: dict[str, dict] = {}
        for stage_name, caps in world.hosts.items():
            truth_by_stage.setdefault(stage_name.split("/")[0], {}).update(caps)
        per_envoy: dict[int, list[int]] = {}
        for i in active:
            per_envoy.setdefault(rng.randrange(cfg.envoys), []).append(i)
        tick_versions: dict[str, int] = {}
        tick_stages: dict[str, int] = {}
        for k, sessions in per_envoy.items():
            envoy = envoys[k]
            if envoy.router is None:
                continue
            out_of_quorum = stale(envoy)
            if out_of_quorum:
                metrics["stale_decisions"] += len(sessions)
            if cfg.strategy == "rollway":
                batch = envoy.router.route_many([ids[i] for i in sessions], [app[i] for i in sessions],
                                                NOW0 + t, version_cookies=[cookie[i] for i in sessions],
                                                stage_cookies=[stage_cookie[i] for i in sessions])
            else:
                batch = envoy.router.route_many([ids[i] for i in sessions], None, NOW0 + t)
            stages, versions, refresh = batch.stage, batch.version, batch.refresh
            for j, i in enumerate(sessions):
                stage, v = stages[j], versions[j]
                if stage is None:
                    continue
                stage_conf, caps = envoy.stages[stage]
                if cfg.strategy == "naive" and stage_conf["mode"] == "rolling":
                    pool = seen_versions.get(stage, [])
                    v = pool[keys[i] % len(pool)] if pool else v
                metrics["requests"] += 1
                if caps.get(v, 0) <= 0:
                    metrics["zero_capacity_requests"] += 1
                if truth_by_stage.get(stage, {}).get(v, 0) <= 0:
                    # A stale Envoy sent it to a version whose hosts are gone: the request
                    # fails (503), and a failed response commits nothing -- the filter sets
                    # no version cookie and no refresh signal on a 5xx -- so the session
                    # stays where it was.
                    metrics["requests_to_drained"] += 1
                    continue
                tick_versions[f"{stage}:{v}"] = tick_versions.get(f"{stage}:{v}", 0) + 1
                tick_stages[stage] = tick_stages.get(stage, 0) + 1
                told = refresh[j] if cfg.strategy == "rollway" else (app[i] is not None and app[i] != v
                                                                     and cookie[i] != v)
                prev, prev_stage = last[i], last_stage[i]
                # A move belongs to the deploy the deciding Envoy was carrying out (its
                # config's direction for the stage); a stale Envoy finishing a forward step
                # after a rollback began is still part of the forward deploy. A move to
                # another stage belongs to the weight change that caused it, and may return
                # to a version left in another stage (a canary ramp after a rollback in
                # prod). A stage move that keeps the version is invisible to the browser.
                direction = stage_conf.get("direction", {"state": "switch" if stage_conf["mode"] == "blue_green"
                                                         else "steady"})
                deploy_key = (stage, direction["state"], direction.get("target"),
                              stage_conf.get("active") if stage_conf["mode"] == "blue_green" else None)
                if prev is not None and prev_stage != stage:
                    deploy_key = ("weights", plane.weight_change_of[envoy.config["generation"]])
                if prev is not None and v != prev:
                    key = (i, deploy_key)
                    moves[key] = moves.get(key, 0) + 1
                    back = prev_stage == stage and (stage, v) in left[i] \
                        and not (direction["state"] == "rollback" and direction.get("target") == v) \
                        and world.rollback_to != v \
                        and not (world.rollback_to and older(stage, v, prev))  # a rollback's way back
                    if out_of_quorum:
                        tainted.add(i)   # what follows for this session is the stale Envoy's doing
                    if moves[key] > 1 or back:
                        if i in tainted:
                            metrics["bounces_after_stale"] += 1
                        else:
                            metrics["bounces"] += 1
                            bounced.add(i)
                    left[i].add((prev_stage, prev))
                if prev != v:
                    if prev is not None:
                        on_version[prev] -= 1
                    on_version[v] = on_version.get(v, 0) + 1
                last[i], last_stage[i] = v, stage
                cookie[i], stage_cookie[i] = v, stage
                if app[i] is None or told:
                    if told:
                        metrics["refreshes"] += 1
                        key = (i, deploy_key)
                        refreshes[key] = refreshes.get(key, 0) + 1
                    app[i] = v
        # Overload: traffic share / capacity share per live version of the rolling stage.
        # Beside it, the lag bound: the largest share the version had within the last
        # lag_max seconds over the share it has now -- what an Envoy still routing on a view
        # that old sends it, and so what any router that acts on what it was told reaches.
        shares_now = {f"{stage}:{v}": c / sum(caps.values()) for stage, caps in world.hosts.items()
                      if "/" not in stage and sum(caps.values()) > 0 for v, c in caps.items()}
        share_history.append((t, shares_now))
        for key, share in shares_now.items():
            largest_share[key] = max(largest_share.get(key, 0.0), share)
        while share_history[0][0] < t - cfg.lag_max - cfg.tick:
            share_history.pop(0)
        for stage, caps in world.hosts.items():
            if "/" in stage or tick_stages.get(stage, 0) < 200:
                continue
            total = sum(caps.values())
            for v, c in caps.items():
                share = c / total if total else 0
                if share >= 0.05:
                    key = f"{stage}:{v}"
                    overloads.append((tick_versions.get(key, 0) / tick_stages[stage]) / share)
                    lag_bounds.append(max(h.get(key, 0.0) for _, h in share_history) / share)
                    hold_bounds.append(largest_share[key] / share)
        if tick_stages:
            weight_total = sum(world.weights.values())
            n = sum(tick_stages.values())
            if n >= 500:
                for stage, w in world.weights.items():
                    stage_errors.append(abs(tick_stages.get(stage, 0) / n - w / weight_total))
        counts = {v: c for v, c in on_version.items() if c}
        seen = sum(counts.values()) or 1
        capacity: dict[str, float] = {}
        for caps in world.hosts.values():
            for v, c in caps.items():
                capacity[v] = capacity.get(v, 0) + c
        cap_total = sum(capacity.values()) or 1
        series[t] = {"sessions": {v: c / seen for v, c in counts.items()},
                     "capacity": {v: c / cap_total for v, c in capacity.items()}}
        t += cfg.tick

    overloads.sort()
    metrics.update({
        "scenario": cfg.scenario, "strategy": cfg.strategy, "envoys": cfg.envoys, "sessions": cfg.sessions,
        "lag_max": cfg.lag_max, "seed": cfg.seed,
        "sessions_bounced": len(bounced),
        "refreshes_per_session_max": max((n for (i, _), n in refreshes.items() if i not in tainted), default=0),
        "sessions_after_stale": len(tainted),
        "overload_max": round(overloads[-1], 3) if overloads else 0.0,
        "overload_p99": round(overloads[min(len(overloads) - 1, int(0.99 * len(overloads)))], 3) if overloads else 0.0,
        "overload_lag_bound": round(max(lag_bounds, default=0.0), 3),
        "overload_hold_bound": round(max(hold_bounds, default=0.0), 3),
        "stage_share_error_max": round(max(stage_errors, default=0.0), 4),
        "final_versions": {v: sum(1 for x in last if x == v) for v in sorted({x for x in last if x})},
    })
    return SimResult(metrics, series)


def plot(result: SimResult, path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    times = sorted(result.series)
    versions = sorted({v for point in result.series.values() for v in point["sessions"]} |
                      {v for point in result.series.values() for v in point["capacity"]})
    fig, ax = plt.subplots(figsize=(8, 4.2), dpi=110)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, v in enumerate(versions):
        color = colors[k % len(colors)]
        ax.plot(times, [result.series[t]["sessions"].get(v, 0) for t in times], color=color, lw=2,
                label=f"sessions on {v}")
        ax.plot(times, [result.series[t]["capacity"].get(v, 0) for t in times], color=color, lw=1, ls="--",
                label=f"capacity share of {v}")
    ax.set_xlabel("simulated seconds")
    ax.set_ylabel("share")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(title)
    ax.legend(loc="center right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


__all__ = ["SCENARIOS", "STRATEGIES", "SimConfig", "SimResult", "World", "run", "plot"]
