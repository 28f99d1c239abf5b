"""The simulation loop: a deploy tool changing hosts, the control plane and lagging Envoys,
and browser sessions, tick by tick (rollway.tools.sim)."""

from __future__ import annotations

import math
import random
from collections import Counter

from rollway import murmur3_32, new_routing_id
from rollway.model.deploy_state import GUARD
from rollway.model.filter_config import FilterConfig, RollingStage, Way
from rollway.tools.sim.accounting import Overload, Sessions
from rollway.tools.sim.badbuild import BadBuildBook
from rollway.tools.sim.doubles import UNGUARDED, SimulatedEnvoy, SimulatedPlane
from rollway.tools.sim.model import DEPLOY, HALT, ROLLBACK, SWITCH, WEIGHTS, After, Gate, SimConfig, SimResult, World
from rollway.tools.sim.recount import STALE_BOUNCES_PER_MOVE, Recount
from rollway.tools.sim.scenarios import BAD_VERSION, GUARDED, LIMITS, SCENARIOS, timeline, with_faults

STRATEGIES = ("naive", "capacity", "rollway")
RULES = ("rollway", UNGUARDED)      # strategies that route by Rollway's rules
ANY = "*"                           # a guard's rollback: turned back to whatever the baseline is
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


def _action_lines(t: float, before: World, world: World) -> list[dict]:
    """The trace's lines for the operator action ``world`` starts: per stage it acts on."""
    kind, target = world.kind, world.target
    if kind == WEIGHTS:
        return []       # traced when the leader applies it (_Run._publish)
    if kind == SWITCH:
        lines = []
        for key, caps in world.hosts.items():
            stage, _, slot = key.partition("/")
            if slot == world.active:
                version = max(caps, key=lambda v: (caps[v], v)) if caps else None
                lines.append({"t": t, "action": kind, "stage": stage, "target": version})
        return lines
    if kind == HALT:    # the version halted: named, or the one the deploy under way was taking its stages to
        halted = world.halted or before.target
        return [{"t": t, "action": kind, "stage": key, "target": halted} for key, caps in world.hosts.items()
                if "/" not in key and caps.get(halted or "", 0.0) > 0]
    if kind not in (DEPLOY, ROLLBACK) or target is None:
        return []
    grown = [key for key, caps in world.hosts.items() if "/" not in key
             and caps.get(target, 0.0) > before.hosts.get(key, {}).get(target, 0.0)]
    stages = grown or [key for key, caps in world.hosts.items() if "/" not in key and caps.get(target, 0.0) > 0]
    return [{"t": t, "action": kind, "stage": stage, "target": target} for stage in stages]


def stale_bound(cfg: SimConfig, stale_envoy_seconds: float) -> int:
    """The most bounces stale Envoys can cause (README, "What a stale Envoy risks"): six per
    response of theirs that moves a session (rollway.tools.sim.recount), so at most six per
    request they serve while stale. An Envoy with share ``s`` of the traffic, stale for ``D`` seconds, serves about
    ``s * r * N * D`` requests (``N`` sessions asking ``r`` times a second); here each
    request picks one of the Envoys at random, ``s = 1/K``, with five standard deviations of
    sampling on top."""
    expected = cfg.sessions * cfg.request_rate * stale_envoy_seconds / max(1, cfg.envoys)
    return int(STALE_BOUNCES_PER_MOVE * (expected + 5 * math.sqrt(expected)))


def _applies(config: FilterConfig, weights: dict[str, float]) -> bool:
    """Whether ``config`` routes by ``weights`` (in proportion), with no change announced."""
    applied = {stage.name: stage.weight for stage in config.stages}
    if set(applied) != set(weights) or any(stage.next_weight is not None for stage in config.stages):
        return False
    ta, tw = sum(applied.values()) or 1.0, sum(weights.values()) or 1.0
    return all(abs(applied[k] / ta - weights[k] / tw) < 1e-9 for k in weights)


def run(cfg: SimConfig, events: list[tuple] | None = None, routemap: dict | None = None) -> SimResult:
    """Simulates ``cfg.scenario``, or the given steps ``[(timing, World)]`` over ``routemap``
    (for generated deploys); a timing is an absolute time, ``After(seconds)`` or
    ``Gate(extra)``."""
    if cfg.strategy not in STRATEGIES + (UNGUARDED,):
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES + (UNGUARDED,))}")
    if events is None:
        if cfg.scenario not in SCENARIOS + LIMITS + GUARDED:
            raise ValueError(f"scenario must be one of {', '.join(SCENARIOS + LIMITS + GUARDED)}")
        cfg = with_faults(cfg)
        events, routemap = timeline(cfg, random.Random(cfg.seed + 1))
    assert routemap is not None, "steps given without their route map"
    return _Run(cfg, events, routemap).run()


class _Run:
    """One simulation. Each tick runs the named steps in order: the deploy tool's next steps
    (``_take_steps``), host changes landing (``_land_changes``), the control plane's side
    (``_control_plane``: faults, leadership, quorum, reconnects, deliveries, publication),
    the deploy gate, the sessions' requests (``_requests``) and the tick's accounting
    (``_account``)."""

    def __init__(self, cfg: SimConfig, events: list[tuple], routemap: dict):
        self.cfg, self.events = cfg, events
        self.rng = random.Random(cfg.seed)               # sessions: the same draws for every strategy
        self.fleet_rng = random.Random(cfg.seed + 2)     # lags, reconnects, host order
        self.plane = SimulatedPlane(routemap, cfg)
        self.envoys = [SimulatedEnvoy(replica=k % max(1, cfg.replicas)) for k in range(cfg.envoys)]
        for index, when in cfg.silent:
            self.envoys[index % len(self.envoys)].silent_from = when
        self.failures = sorted((when, kind) for kind, when in cfg.failures)
        self.world: World = events[0][1]                 # the operator's side: weights, slot, episode
        self.registered = {k: dict(v) for k, v in self.world.hosts.items()}
        self.plane.members = {k: dict(v) for k, v in self.registered.items()}
        self.plane.flush(0.0, self.registered)
        self.draining: list[tuple[str, str, float]] = []     # (key, version, serving until)
        self.changes: list[tuple[float, str, str, float]] = []
        self.step, self.step_t = 1, 0.0
        self.gate_open_at: float | None = None
        self.seen: dict[str, list[str]] = {}             # stage -> versions, first seen first
        rng = self.rng
        self.ids = [new_routing_id(NOW0, random_bits=rng.getrandbits(64)) for _ in range(cfg.sessions)]
        self.keys = [murmur3_32(rid[9:25]) for rid in self.ids]
        self.cookie: list[str | None] = [None] * cfg.sessions
        self.stage_cookie: list[str | None] = [None] * cfg.sessions
        self.app: list[str | None] = [None] * cfg.sessions
        self.book = Sessions(cfg.sessions)
        self.overload = Overload()
        self.metrics = Counter({"zero_capacity_requests": 0, "requests": 0, "requests_to_drained": 0,
                                "requests_to_draining": 0, "refreshes": 0, "stale_decisions": 0,
                                "leader_changes": 0, "reconnects": 0})
        self.stage_errors: list[float] = []
        self.series: dict = {}
        self.settle = cfg.lag_max + cfg.debounce + cfg.spread + 4 * cfg.step_interval   # after the last step
        self.end = max((e[0] for e in events if isinstance(e[0], (int, float))), default=0.0) + self.settle
        self.give_up = self.end + 4 * 3600.0    # a gate that never opens (a bug) must not hang the run
        self.p = min(1.0, cfg.request_rate * cfg.tick)
        self.t = 0.0
        self.was_leading, self.was_quorum = True, len(self.envoys)
        self.trace: list[dict] = []           # with cfg.trace: responses and operator actions
        self.recount = Recount()              # bounces and reloads, counted from the trace's lines
        self.weights_asked: dict[str, float] | None = None   # a weight change not applied yet
        self.rollback_announced: str | None = None   # a halt's rollback target, until the rollback is traced
        self.stale_envoy_seconds = 0.0        # summed over Envoys: how long each was out of the quorum
        self.traced_episode = self.world.episode
        self.bad = BadBuildBook(cfg) if cfg.scenario in GUARDED else None
        self.halts_traced: set[str] = set()

    def run(self) -> SimResult:
        cfg = self.cfg
        while (self.t <= self.end or self.changes or self.step < len(self.events)) and self.t <= self.give_up:
            reported = self.bad is not None and self.bad.report(self.t)
            changed = self._take_steps()
            self._land_changes()
            self._control_plane(changed or reported)
            if self.bad is not None and self.bad.halted_at is not None and self._halt_reached():
                self.bad.reached(self.t)
            if self.gate_open_at is None and self._gate_open():
                self.gate_open_at = self.t
            for key, caps in self.registered.items():
                order = self.seen.setdefault(key.split("/")[0], [])
                order.extend(v for v in caps if v not in order)
            tick_versions, tick_stages = self._requests()
            self._account(tick_versions, tick_stages)
            self.stale_envoy_seconds += cfg.tick * sum(1 for e in self.envoys if self._stale(e))
            self.t += cfg.tick
        return self._result()

    # -- who is where ------------------------------------------------------------------------

    def _stale(self, envoy: SimulatedEnvoy) -> bool:
        return envoy.silent_from is not None and self.t - envoy.silent_from > self.cfg.ack_timeout

    def _serving_now(self) -> dict[tuple[str, str], bool]:
        """(stage, version) -> whether only draining hosts answer (absent: nobody answers)."""
        out = {(key.split("/")[0], v): True for key, v, until in self.draining if until > self.t}
        for key, caps in self.registered.items():
            out.update({(key.split("/")[0], v): False for v, c in caps.items() if c > 0})
        return out

    def _halt_reached(self) -> bool:
        """Every Envoy in the quorum routes on a config where the bad version is halted."""
        return all(e.config is not None and all(v.halted for s in e.config.rolling_stages() for v in s.versions
                                                if v.name == BAD_VERSION)
                   for e in self.envoys if not self._stale(e))

    def _gate_open(self) -> bool:
        plane = self.plane
        if self.changes or not plane.view_current() or not plane.leading(self.t) or plane.waiting():
            return False
        return all(e.config is plane.current for e in self.envoys if not self._stale(e))

    def _due(self, timing) -> bool:
        if isinstance(timing, Gate):
            return self.gate_open_at is not None and self.gate_open_at + timing.extra <= self.t
        if isinstance(timing, After):
            return self.step_t + timing.seconds <= self.t
        return timing <= self.t

    # -- the deploy tool and the hosts -------------------------------------------------------

    def _take_steps(self) -> bool:
        """The deploy tool's steps that are due: each becomes host changes spread over
        ``cfg.spread``. Returns whether the operator's world changed (or nothing is out yet)."""
        changed = self.plane.current is None       # the first config goes out at once
        if any(h.who == GUARD for h in self.plane.state.halts.values()) and self.step < len(self.events) \
                and isinstance(self.events[self.step][0], Gate):
            # The guard's halt stops the deploy tool (``rollway deploy wait`` exits 1): no
            # more steps. (An operator's rollback is the tool's own: it goes on, with
            # ``--allow-halted``.)
            self.events = self.events[:self.step]
            self.end = max(self.end, self.t + self.settle)
        while self.step < len(self.events) and self._due(self.events[self.step][0]):
            previous, self.world = self.world, self.events[self.step][1]
            world = self.world
            self.step, self.step_t, self.gate_open_at, changed = self.step + 1, self.t, None, True
            if world.episode != self.traced_episode:
                self.traced_episode = world.episode
                if world.kind == WEIGHTS:
                    self.weights_asked = dict(world.weights)    # traced once applied (_publish)
                announced = self.rollback_announced
                self.rollback_announced = world.target if world.kind == HALT else None
                halted = world.halted or previous.target
                if world.kind == HALT and halted is not None:
                    self.plane.halt(halted, self.t)
                # (An announced rollback the control plane began already was traced then.)
                if not (world.kind == ROLLBACK and previous.kind == HALT and announced is None):
                    for line in _action_lines(self.t, previous, world):
                        self._record(line)
            if self.step == len(self.events):
                self.end = max(self.end, self.t + self.settle)
            # From what is registered once the changes still under way have landed.
            planned = {k: dict(v) for k, v in self.registered.items()}
            for _, key, version, delta in self.changes:
                planned.setdefault(key, {})[version] = planned.get(key, {}).get(version, 0.0) + delta
            target = {**planned, **{k: dict(v) for k, v in world.hosts.items()}}
            self.changes = sorted(self.changes + _host_changes(planned, target, self.t, self.cfg.spread,
                                                               self.fleet_rng))
        return changed

    def _land_changes(self) -> None:
        """Host changes that are due register (or leave, draining for ``drain_seconds``)."""
        t = self.t
        while self.changes and self.changes[0][0] <= t:
            _, key, version, delta = self.changes.pop(0)
            caps = self.registered.setdefault(key, {})
            caps[version] = caps.get(version, 0.0) + delta
            if caps[version] <= 1e-9:
                caps.pop(version)
            if delta < 0:
                self.draining.append((key, version, t + self.cfg.drain_seconds))
            self.plane.notice(t)
        self.draining = [d for d in self.draining if d[2] > t]

    # -- the control plane and the Envoys ----------------------------------------------------

    def _control_plane(self, changed: bool) -> None:
        t, plane = self.t, self.plane
        changed = plane.flush(t, self.registered) or changed
        while self.failures and self.failures[0][0] <= t:
            self._fail(self.failures.pop(0)[1])
            changed = True
        if plane.leading(t) != self.was_leading:
            self.was_leading, changed = plane.leading(t), True
        if any(tracker.settling(t) for tracker in plane.state.trackers.values()):
            changed = True                # a change of way has settled: decide again, as the leader's tick does
        quorum_size = sum(1 for e in self.envoys if not self._stale(e))
        if quorum_size != self.was_quorum:     # an Envoy left the quorum: what waited on it may go
            self.was_quorum, changed = quorum_size, True
        self._reconnects()
        applied = self._deliver()
        if changed or applied:  # a world change or an ACK may change the config
            self._publish()

    def _fail(self, kind: str) -> None:
        cfg, plane, t = self.cfg, self.plane, self.t
        down = plane.leader if kind == "kill-leader" else self.fleet_rng.randrange(max(1, cfg.replicas))
        for envoy in self.envoys:
            if envoy.replica == down and not envoy.silent(t):
                envoy.drop(t, cfg.reconnect, cfg.replicas)
        if down == plane.leader:
            # A SIGKILLed leader keeps its lease until its session expires; a clean stop (or
            # a single replica coming back) hands over at once.
            wait = cfg.session_timeout if kind == "kill-leader" and cfg.replicas > 1 else cfg.reconnect
            plane.leader_down_until = t + wait
            plane.leader = (plane.leader + 1) % max(1, cfg.replicas)
            self.metrics["leader_changes"] += 1

    def _reconnects(self) -> None:
        """Streams break at random (``reconnect_rate`` a minute) and reconnect elsewhere."""
        cfg, t = self.cfg, self.t
        for envoy in self.envoys:
            if not envoy.silent(t) and envoy.connected(t) and envoy.router is not None \
                    and self.fleet_rng.random() < cfg.reconnect_rate * cfg.tick / 60:
                envoy.drop(t, cfg.reconnect, cfg.replicas)
                self.metrics["reconnects"] += 1

    def _deliver(self) -> bool:
        """Each Envoy applies what has arrived; a reconnected one is sent the current config.
        Returns whether any applied (an ACK may release a second step)."""
        t, applied = self.t, False
        for envoy in self.envoys:
            if envoy.silent(t):
                envoy.pending.clear()              # silent: applies and ACKs nothing more
                continue
            if envoy.disconnected_until > 0 and envoy.connected(t):
                envoy.disconnected_until = -1.0    # reconnected: sent the current config
                envoy.last_arrival = t
                if self.plane.current is not None:
                    envoy.send(t, self.plane.current, self.world.episode, self.fleet_rng, self.cfg.lag_max)
            applied = envoy.receive(t, self.plane) or applied
        return applied

    def _publish(self) -> None:
        """The plane decides on what the quorum knows and sends a new config to every
        connected Envoy. The quorum: every Envoy but those silent for longer than the ACK
        timeout (a disconnected one still counts, with what it last ACKed)."""
        t, world, plane, envoys = self.t, self.world, self.plane, self.envoys
        config = plane.build(world, [e.knows for e in envoys if not self._stale(e)], t,
                             health=self.bad.reported if self.bad is not None else None)
        if config is None:
            return
        self._trace_guard_halts(config)
        if self.rollback_announced is not None:
            # An announced rollback starts moving sessions when the control plane turns the
            # deploy (capacity may show it before the tool's second half: a spot loss of the
            # halted version), so that is when the trace says it began, if it is earlier.
            turned = [stage for stage in config.stages if isinstance(stage, RollingStage)
                      and stage.direction.state is Way.ROLLBACK
                      and self.rollback_announced in (ANY, stage.direction.target)]
            for stage in turned:
                self._record({"t": t, "action": ROLLBACK, "stage": stage.name, "target": stage.direction.target})
            if turned:
                self.rollback_announced = None
        if self.weights_asked is not None and _applies(config, self.weights_asked):
            # A weight change starts moving sessions when the leader applies it: until then
            # it is announced (``next_weight``) and nobody crosses between stages that serve
            # different versions, so this is when the trace says it began.
            self._record({"t": t, "action": WEIGHTS, "stage": None, "target": None})
            self.weights_asked = None
        for envoy in envoys:
            if envoy.connected(t) and not envoy.silent(t):
                envoy.send(t, config, world.episode, self.fleet_rng, self.cfg.lag_max)
        if all(e.router is None for e in envoys):  # start-up: everyone gets the first config
            for e in envoys:
                e.pending.clear()
                e.apply(config, world.episode, plane)
            config = plane.build(world, [e.knows for e in envoys], t)   # they all ACKed it
            for e in envoys:
                if config is not None:
                    e.apply(config, world.episode, plane)

    def _trace_guard_halts(self, config: FilterConfig) -> None:
        """The guard's halts, as the trace names an operator's: a halt line per stage the
        version is live in (one return from it is owed), and, for a rollback, the rollback
        line once the deploy turns (the reload back belongs to it)."""
        for version, halt in sorted(self.plane.state.halts.items()):
            if version in self.halts_traced or halt.who != GUARD:
                continue
            self.halts_traced.add(version)
            if self.bad is not None:
                self.bad.halted(self.t)
            for stage in config.rolling_stages():
                if version in stage.version_names():
                    self._record({"t": self.t, "action": HALT, "stage": stage.name, "target": version})
            if halt.rollback:
                self.rollback_announced = ANY

    # -- the sessions -----------------------------------------------------------------------

    def _active_sessions(self) -> list[int]:
        """Each session requests with probability p this tick. For large fleets draw how many
        (normal approximation of the binomial), then which: 100k coin flips per tick cost
        more than the routing itself."""
        cfg, rng, p = self.cfg, self.rng, self.p
        if cfg.sessions <= 1000:
            return [i for i in range(cfg.sessions) if rng.random() < p]
        n_active = int(round(rng.gauss(p * cfg.sessions, math.sqrt(cfg.sessions * p * (1 - p)))))
        return rng.sample(range(cfg.sessions), min(cfg.sessions, max(0, n_active)))

    def _requests(self) -> tuple[dict[str, Counter], Counter]:
        """This tick's requests, each routed by the Envoy it reaches; returns the requests
        served per stage and version, and sent per stage."""
        serving = self._serving_now()
        per_envoy: dict[int, list[int]] = {}
        for i in self._active_sessions():
            per_envoy.setdefault(self.rng.randrange(self.cfg.envoys), []).append(i)
        tick_versions: dict[str, Counter] = {}
        tick_stages: Counter = Counter()
        for k, sessions in per_envoy.items():
            envoy = self.envoys[k]
            if envoy.router is not None:
                self._route(k, envoy, sessions, serving, tick_versions, tick_stages)
        return tick_versions, tick_stages

    def _route(self, k: int, envoy: SimulatedEnvoy, sessions: list[int], serving: dict[tuple[str, str], bool],
               tick_versions: dict[str, Counter], tick_stages: Counter) -> None:
        cfg, ids, app, cookie, stage_cookie = self.cfg, self.ids, self.app, self.cookie, self.stage_cookie
        assert envoy.router is not None
        out_of_quorum = self._stale(envoy)
        if out_of_quorum:
            self.metrics["stale_decisions"] += len(sessions)
        if cfg.strategy in RULES:
            batch = envoy.router.route_many([ids[i] for i in sessions], [app[i] for i in sessions],
                                            NOW0 + self.t, version_cookies=[cookie[i] for i in sessions],
                                            stage_cookies=[stage_cookie[i] for i in sessions])
        else:
            batch = envoy.router.route_many([ids[i] for i in sessions], None, NOW0 + self.t)
        stages, versions, refresh = batch.stage, batch.version, batch.refresh
        for j, i in enumerate(sessions):
            stage, v = stages[j], versions[j]
            if stage is None:
                continue
            stage_conf, caps = envoy.stages[stage]
            if cfg.strategy == "naive" and isinstance(stage_conf, RollingStage):
                pool = self.seen.get(stage, [])
                v = pool[self.keys[i] % len(pool)] if pool else v
            self.metrics["requests"] += 1
            if caps.get(v, 0) <= 0:
                self.metrics["zero_capacity_requests"] += 1
            tick_stages[stage] += 1      # overload is per request sent, failed ones included
            draining_only = serving.get((stage, v)) if v is not None else None
            if v is None or draining_only is None:
                # Sent to hosts that are gone: the request fails (503), and a failed
                # response commits nothing -- the filter sets no version cookie and no
                # refresh signal on a 5xx -- so the session stays where it was.
                self.metrics["requests_to_drained"] += 1
                continue
            tick_versions.setdefault(stage, Counter())[v] += 1
            if self.bad is not None and self.bad.fails(self.t, i, stage, v):
                continue            # a 5xx commits nothing: no cookie, no reload
            if draining_only:
                self.metrics["requests_to_draining"] += 1   # served by a draining host: committed
            told = refresh[j] if cfg.strategy in RULES else (app[i] is not None and app[i] != v
                                                                 and cookie[i] != v)
            self._served(i, stage, v, told)
            # A trace line (kept with ``trace``), counted with the same fields either way.
            self.recount.served(self.t, i, stage, v, bool(told), out_of_quorum)
            if cfg.trace:
                self.trace.append({"t": self.t, "session": i, "envoy": k, "stage": stage, "version": v,
                                   "refresh": bool(told), "stale": out_of_quorum})

    def _record(self, line: dict) -> None:
        """An action's trace line: counted (bounces and reloads are only ever counted from
        the trace's lines, rollway.tools.sim.recount) and, with ``trace``, kept."""
        self.recount.feed(line)
        if self.cfg.trace:
            self.trace.append(line)

    def _served(self, i: int, stage: str, v: str, told: bool) -> None:
        """Session ``i`` was served by ``v``: its cookies, its page, and the book."""
        self.book.served(i, v, stage)
        self.cookie[i], self.stage_cookie[i] = v, stage
        if self.app[i] is None or told:
            if told:
                self.metrics["refreshes"] += 1
            self.app[i] = v

    # -- accounting ------------------------------------------------------------------------

    def _account(self, tick_versions: dict[str, Counter], tick_stages: Counter) -> None:
        """Overload per stage, the stage-share error, and the time series of the tick."""
        book, registered, world = self.book, self.registered, self.world
        self.overload.weights(world.weights, {key: caps for key, caps in registered.items() if "/" not in key})
        for key, caps in registered.items():
            if "/" not in key:
                in_stage = sum(n for (s, _), n in book.on_stage.items() if s == key) or 1
                resident = {v: n / in_stage for (s, v), n in book.on_stage.items() if s == key}
                self.overload.tick(self.t, key, caps, tick_versions.get(key, Counter()), tick_stages[key],
                                   [e.views[key] for e in self.envoys if key in e.views], resident, in_stage)
        if tick_stages:
            weight_total = sum(world.weights.values())
            n = sum(tick_stages.values())
            if n >= 500:
                for stage, w in world.weights.items():
                    self.stage_errors.append(abs(tick_stages.get(stage, 0) / n - w / weight_total))
        on_version = {v: c for v, c in book.on_version.items() if c}
        total_sessions = sum(on_version.values()) or 1
        capacity: Counter = Counter()
        for caps in registered.values():
            capacity.update(caps)
        cap_total = sum(capacity.values()) or 1
        self.series[self.t] = {"sessions": {v: c / total_sessions for v, c in on_version.items()},
                               "capacity": {v: c / cap_total for v, c in capacity.items()}}

    def _result(self) -> SimResult:
        cfg, book = self.cfg, self.book
        out: dict[str, object] = dict(self.metrics)
        out.update({
            "scenario": cfg.scenario, "strategy": cfg.strategy, "envoys": cfg.envoys, "sessions": cfg.sessions,
            "lag_max": cfg.lag_max, "seed": cfg.seed,
            **self.recount.counts.summary(),
            "stale_bound": stale_bound(cfg, self.stale_envoy_seconds),
            "steps_left": len(self.events) - self.step,
            "stage_share_error_max": round(max(self.stage_errors, default=0.0), 4),
            "final_versions": {v: sum(1 for x in book.last if x == v) for v in sorted({x for x in book.last if x})},
        })
        out.update(self.overload.metrics())
        if self.bad is not None:
            out.update(self.bad.metrics(sum(1 for x in book.last if x == BAD_VERSION)))
        return SimResult(out, self.series, self.trace)
