"""The simulation loop: a deploy tool changing hosts, the control plane and lagging Envoys,
and browser sessions, tick by tick (rollway.tools.sim)."""

from __future__ import annotations

import math
import random
from collections import Counter

from rollway import murmur3_32, new_routing_id
from rollway.model.filter_config import RollingStage
from rollway.tools.sim.accounting import Actions, Overload, Sessions
from rollway.tools.sim.fleet import ControlPlane, Envoy
from rollway.tools.sim.model import After, Gate, SimConfig, SimResult, World
from rollway.tools.sim.scenarios import SCENARIOS, timeline, with_faults

STRATEGIES = ("naive", "capacity", "rollway")
NOW0 = 1_750_000_000


def _host_changes(old: dict[str, dict[str, float]], new: dict[str, dict[str, float]], t: float, spread: float,
                  rng: random.Random) -> list[tuple[float, str, str, float]]:
    """A step from ``old`` to ``new`` registered capacity as one change per host, spread
    over ``spread`` seconds in random order; removals that empty a version come after every
    addition (a version's last host goes only after its successor's first is announced)."""
    adds: list[tuple[str, str, float, bool]] = []      # (key, version, unit, whether it empties the version)
    removes: list[tuple[str, str, float, bool]] = []
    for key in sorted(set(old) | set(new)):
        for version in sorted(set(old.get(key, {})) | set(new.get(key, {}))):
            delta = new.get(key, {}).get(version, 0.0) - old.get(key, {}).get(version, 0.0)
            units = [math.copysign(1.0, delta)] * int(abs(delta))
            if abs(delta) - int(abs(delta)) > 1e-9:
                units.append(delta - sum(units))
            empties = new.get(key, {}).get(version, 0.0) <= 0
            for unit in units:
                (adds if unit > 0 else removes).append((key, version, unit, empties))
    out, latest_add = [], t
    for key, version, unit, _ in adds:
        when = t + rng.uniform(0.0, spread)
        latest_add = max(latest_add, when)
        out.append((when, key, version, unit))
    for key, version, unit, empties in removes:
        when = t + rng.uniform(0.0, spread)
        out.append((max(when, latest_add) if empties else when, key, version, unit))
    return sorted(out)


def run(cfg: SimConfig, events: list[tuple] | None = None, routemap: dict | None = None) -> SimResult:
    """Simulates ``cfg.scenario``, or the given steps ``[(timing, World)]`` over ``routemap``
    (for generated deploys); a timing is an absolute time, ``After(seconds)`` or
    ``Gate(extra)``."""
    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}")
    rng = random.Random(cfg.seed)               # sessions: the same draws for every strategy
    fleet_rng = random.Random(cfg.seed + 2)     # lags, reconnects, host order
    if events is None:
        if cfg.scenario not in SCENARIOS:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS)}")
        cfg = with_faults(cfg)
        events, routemap = timeline(cfg, random.Random(cfg.seed + 1))
    assert routemap is not None, "steps given without their route map"
    plane = ControlPlane(routemap, cfg)
    envoys = [Envoy(replica=k % max(1, cfg.replicas)) for k in range(cfg.envoys)]
    for index, when in cfg.silent:
        envoys[index % len(envoys)].silent_from = when
    failures = sorted((when, kind) for kind, when in cfg.failures)
    drain = cfg.drain_seconds

    world: World = events[0][1]                      # the operator's side: weights, slot, episode
    registered = {k: dict(v) for k, v in world.hosts.items()}
    plane.members = {k: dict(v) for k, v in registered.items()}
    plane.flush(0.0, registered)
    draining: list[tuple[str, str, float]] = []      # (key, version, serving until)
    changes: list[tuple[float, str, str, float]] = []
    step, step_t, gate_open_at = 1, 0.0, None
    seen: dict[str, list[str]] = {}                  # stage -> versions, first seen first

    ids = [new_routing_id(NOW0, random_bits=rng.getrandbits(64)) for _ in range(cfg.sessions)]
    keys = [murmur3_32(rid[9:25]) for rid in ids]
    cookie: list[str | None] = [None] * cfg.sessions
    stage_cookie: list[str | None] = [None] * cfg.sessions
    app: list[str | None] = [None] * cfg.sessions
    book = Sessions(cfg.sessions)
    actions = Actions()
    actions.record(world.episode, world.kind, world.target, world.weights)
    overload = Overload()
    metrics = Counter({"zero_capacity_requests": 0, "requests": 0, "requests_to_drained": 0,
                       "requests_to_draining": 0, "refreshes": 0, "stale_decisions": 0, "leader_changes": 0,
                       "reconnects": 0})
    stage_errors: list[float] = []
    series: dict = {}
    settle = cfg.lag_max + cfg.debounce + cfg.spread + 4 * cfg.step_interval   # after the last step
    end = max((e[0] for e in events if isinstance(e[0], (int, float))), default=0.0) + settle
    give_up = end + 4 * 3600.0    # a gate that never opens (a bug) must not hang the run
    p = min(1.0, cfg.request_rate * cfg.tick)
    t = 0.0

    def stale(envoy: Envoy) -> bool:
        return envoy.silent_from is not None and t - envoy.silent_from > cfg.ack_timeout

    def serving_now() -> dict[tuple[str, str], bool]:
        """(stage, version) -> whether only draining hosts answer (absent: nobody answers)."""
        out = {(key.split("/")[0], v): True for key, v, until in draining if until > t}
        for key, caps in registered.items():
            out.update({(key.split("/")[0], v): False for v, c in caps.items() if c > 0})
        return out

    def gate_open() -> bool:
        if changes or not plane.view_current() or not plane.leading(t) or plane.waiting():
            return False
        return all(e.config is plane.current for e in envoys if not stale(e))

    def due(timing) -> bool:
        if isinstance(timing, Gate):
            return gate_open_at is not None and gate_open_at + timing.extra <= t
        if isinstance(timing, After):
            return step_t + timing.seconds <= t
        return timing <= t

    def fail(kind: str) -> None:
        down = plane.leader if kind == "kill-leader" else fleet_rng.randrange(max(1, cfg.replicas))
        for envoy in envoys:
            if envoy.replica == down and not envoy.silent(t):
                envoy.drop(t, cfg.reconnect, cfg.replicas)
        if down == plane.leader:
            # A SIGKILLed leader keeps its lease until its session expires; a clean stop (or
            # a single replica coming back) hands over at once.
            wait = cfg.session_timeout if kind == "kill-leader" and cfg.replicas > 1 else cfg.reconnect
            plane.leader_down_until = t + wait
            plane.leader = (plane.leader + 1) % max(1, cfg.replicas)
            metrics["leader_changes"] += 1

    was_leading, was_quorum = True, len(envoys)
    while (t <= end or changes or step < len(events)) and t <= give_up:
        changed = plane.current is None       # the first config goes out at once
        while step < len(events) and due(events[step][0]):
            world = events[step][1]
            step, step_t, gate_open_at, changed = step + 1, t, None, True
            actions.record(world.episode, world.kind, world.target, world.weights)
            if step == len(events):
                end = max(end, t + settle)
            # From what is registered once the changes still under way have landed.
            planned = {k: dict(v) for k, v in registered.items()}
            for _, key, version, delta in changes:
                planned.setdefault(key, {})[version] = planned.get(key, {}).get(version, 0.0) + delta
            target = {**planned, **{k: dict(v) for k, v in world.hosts.items()}}
            changes = sorted(changes + _host_changes(planned, target, t, cfg.spread, fleet_rng))
        while changes and changes[0][0] <= t:
            _, key, version, delta = changes.pop(0)
            caps = registered.setdefault(key, {})
            caps[version] = caps.get(version, 0.0) + delta
            if caps[version] <= 1e-9:
                caps.pop(version)
            if delta < 0:
                draining.append((key, version, t + drain))
            plane.notice(t)
        draining = [d for d in draining if d[2] > t]
        changed = plane.flush(t, registered) or changed
        while failures and failures[0][0] <= t:
            fail(failures.pop(0)[1])
            changed = True
        if plane.leading(t) != was_leading:
            was_leading, changed = plane.leading(t), True
        if any(tracker.settling(t) for tracker in plane.state.trackers.values()):
            changed = True                # a change of way has settled: decide again, as the leader's tick does
        quorum_size = sum(1 for e in envoys if not stale(e))
        if quorum_size != was_quorum:     # an Envoy left the quorum: what waited on it may go
            was_quorum, changed = quorum_size, True
        for envoy in envoys:
            if not envoy.silent(t) and envoy.connected(t) and envoy.router is not None \
                    and fleet_rng.random() < cfg.reconnect_rate * cfg.tick / 60:
                envoy.drop(t, cfg.reconnect, cfg.replicas)
                metrics["reconnects"] += 1
        applied = False
        for envoy in envoys:
            if envoy.silent(t):
                envoy.pending.clear()              # silent: applies and ACKs nothing more
                continue
            if envoy.disconnected_until > 0 and envoy.connected(t):
                envoy.disconnected_until = -1.0    # reconnected: sent the current config
                envoy.last_arrival = t
                if plane.current is not None:
                    envoy.send(t, plane.current, world.episode, fleet_rng, cfg.lag_max)
            applied = envoy.receive(t, plane) or applied
        if changed or applied:  # a world change or an ACK may change the config
            # The quorum: every Envoy but those silent for longer than the ACK timeout (a
            # disconnected one still counts, with what it last ACKed).
            config = plane.build(world, [e.knows for e in envoys if not stale(e)], t)
            if config is not None:
                for envoy in envoys:
                    if envoy.connected(t) and not envoy.silent(t):
                        envoy.send(t, config, world.episode, fleet_rng, cfg.lag_max)
                if all(e.router is None for e in envoys):  # start-up: everyone gets the first config
                    for e in envoys:
                        e.pending.clear()
                        e.apply(config, world.episode, plane)
                    config = plane.build(world, [e.knows for e in envoys], t)   # they all ACKed it
                    for e in envoys:
                        if config is not None:
                            e.apply(config, world.episode, plane)
        if gate_open_at is None and gate_open():
            gate_open_at = t
        for key, caps in registered.items():
            order = seen.setdefault(key.split("/")[0], [])
            order.extend(v for v in caps if v not in order)

        # Each session requests with probability p this tick. For large fleets draw how many
        # (normal approximation of the binomial), then which: 100k coin flips per tick cost
        # more than the routing itself.
        if cfg.sessions <= 1000:
            active = [i for i in range(cfg.sessions) if rng.random() < p]
        else:
            n_active = int(round(rng.gauss(p * cfg.sessions, math.sqrt(cfg.sessions * p * (1 - p)))))
            active = rng.sample(range(cfg.sessions), min(cfg.sessions, max(0, n_active)))
        serving = serving_now()
        per_envoy: dict[int, list[int]] = {}
        for i in active:
            per_envoy.setdefault(rng.randrange(cfg.envoys), []).append(i)
        tick_versions: dict[str, Counter] = {}
        tick_stages: Counter = Counter()
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
                if cfg.strategy == "naive" and isinstance(stage_conf, RollingStage):
                    pool = seen.get(stage, [])
                    v = pool[keys[i] % len(pool)] if pool else v
                metrics["requests"] += 1
                if caps.get(v, 0) <= 0:
                    metrics["zero_capacity_requests"] += 1
                tick_stages[stage] += 1      # overload is per request sent, failed ones included
                draining_only = serving.get((stage, v)) if v is not None else None
                if v is None or draining_only is None:
                    # Sent to hosts that are gone: the request fails (503), and a failed
                    # response commits nothing -- the filter sets no version cookie and no
                    # refresh signal on a 5xx -- so the session stays where it was.
                    metrics["requests_to_drained"] += 1
                    continue
                if draining_only:
                    metrics["requests_to_draining"] += 1   # served by a draining host: committed
                counts = tick_versions.get(stage)
                if counts is None:
                    counts = tick_versions[stage] = Counter()
                counts[v] += 1
                told = refresh[j] if cfg.strategy == "rollway" else (app[i] is not None and app[i] != v
                                                                     and cookie[i] != v)
                if book.last[i] != v or told:   # which action a move belongs to: asked only for moves
                    moved_stage = stage_cookie[i] is not None and stage_cookie[i] != stage
                    action = actions.of(envoy.episode, v, moved_stage, envoy.weights)
                else:
                    action = envoy.episode
                book.served(i, v, told, action, out_of_quorum, stage)
                cookie[i], stage_cookie[i] = v, stage
                if app[i] is None or told:
                    if told:
                        metrics["refreshes"] += 1
                    app[i] = v
        overload.weights(world.weights, {key: caps for key, caps in registered.items() if "/" not in key})
        for key, caps in registered.items():
            if "/" not in key:
                in_stage = sum(n for (s, _), n in book.on_stage.items() if s == key) or 1
                resident = {v: n / in_stage for (s, v), n in book.on_stage.items() if s == key}
                overload.tick(t, key, caps, tick_versions.get(key, Counter()), tick_stages[key],
                              [e.views[key] for e in envoys if key in e.views], resident, in_stage)
        if tick_stages:
            weight_total = sum(world.weights.values())
            n = sum(tick_stages.values())
            if n >= 500:
                for stage, w in world.weights.items():
                    stage_errors.append(abs(tick_stages.get(stage, 0) / n - w / weight_total))
        on_version = {v: c for v, c in book.on_version.items() if c}
        total_sessions = sum(on_version.values()) or 1
        capacity: Counter = Counter()
        for caps in registered.values():
            capacity.update(caps)
        cap_total = sum(capacity.values()) or 1
        series[t] = {"sessions": {v: c / total_sessions for v, c in on_version.items()},
                     "capacity": {v: c / cap_total for v, c in capacity.items()}}
        t += cfg.tick

    out: dict[str, object] = dict(metrics)
    out.update({
        "scenario": cfg.scenario, "strategy": cfg.strategy, "envoys": cfg.envoys, "sessions": cfg.sessions,
        "lag_max": cfg.lag_max, "seed": cfg.seed,
        "bounces": book.bounces, "sessions_bounced": len(book.bounced), "bounces_after_stale": book.bounces_after_stale,
        "refreshes_per_session_max": book.reloads_per_deploy_max(), "sessions_after_stale": len(book.tainted),
        "steps_left": len(events) - step,
        "stage_share_error_max": round(max(stage_errors, default=0.0), 4),
        "final_versions": {v: sum(1 for x in book.last if x == v) for v in sorted({x for x in book.last if x})},
    })
    out.update(overload.metrics())
    return SimResult(out, series)
