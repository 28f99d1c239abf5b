"""The doubles the simulator runs in place of the control plane's replicas and the Envoys.

``SimulatedPlane``: the serverset watchers' rules (``rollway.sources.view_policy``: the
debounce window, the empty-serverset grace) on the simulator's clock, the replicas' step
(``rollway.plane.decision.decide``: the leader advancing the shared deploy state, followers
rendering it; the functions the server runs), and the deploy gate. ``SimulatedEnvoy``: one
xDS stream each: every update arrives after a lag drawn afresh (uniform 0..lag_max, never
overtaking the one before), the stream breaks and reconnects to the next replica, an ACK
says what the Envoy knows only for a config the server still retains (its last
``RETAINED``, as ``SnapshotCache.on_ack`` does), and a silent Envoy applies nothing more.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from rollway import Router
from rollway.model.admission import KnowsSets, known_versions
from rollway.model.deploy_state import DeployState, Halt
from rollway.model.filter_config import BlueGreenStage, FilterConfig, Way
from rollway.model.guard import Health
from rollway.model.routemap import parse_routemap
from rollway.plane.decision import decide
from rollway.sources.serverset import ServersetView
from rollway.sources.view_policy import DebounceWindow, EmptyGrace
from rollway.tools.sim.model import SimConfig, World
from rollway.xds.cache import RETAINED

UNGUARDED = "unguarded"     # the strategy: Rollway's rules without the route map's guard


class SimulatedPlane:
    def __init__(self, routemap: dict, cfg: SimConfig):
        self.routemap = parse_routemap(routemap)
        self.cfg = cfg
        self.state = DeployState()
        self.current: FilterConfig | None = None   # the newest config; every replica serves the same
        self.retained: list[FilterConfig] = []          # the last RETAINED configs, whose ACKs still count
        self.members: dict[str, dict[str, float]] = {}  # registered capacity when the last window closed
        self.view: dict[str, dict[str, float]] = {}     # what the watchers report (empty ones held)
        self.window = DebounceWindow(cfg.debounce)      # the watchers' rules (rollway.sources.view_policy)
        self.grace: dict[str, EmptyGrace] = {}          # per serverset
        self.leader, self.leader_down_until = 0, -1.0

    # -- the serverset watchers --------------------------------------------------------
    def notice(self, t: float) -> None:
        """A member changed: a window opens, unless one is open."""
        self.window.notice(t)

    def flush(self, t: float, registered: dict[str, dict[str, float]]) -> bool:
        """Takes the members when the window closes; holds a serverset that turns empty at
        its last view for ``empty_grace``. Returns whether the view changed."""
        if self.window.close(t):
            self.members = {k: {v: c for v, c in caps.items() if c > 0} for k, caps in registered.items()}
        view = {}
        for key, caps in self.members.items():
            grace = self.grace.setdefault(key, EmptyGrace(self.cfg.empty_grace))
            if grace.hold_for(len(self.view.get(key) or {}), len(caps), t) is not None:
                caps = self.view[key]            # held: an empty view is not believed yet
            view[key] = caps
        changed = view != self.view
        self.view = view
        return changed

    def view_current(self) -> bool:
        return not self.window.open and not any(g.holding for g in self.grace.values())

    # -- deciding ----------------------------------------------------------------------
    def leading(self, t: float) -> bool:
        return t >= self.leader_down_until

    def build(self, world: World, quorum: list[set], t: float,
              health: Mapping[tuple[str, str], Health] | None = None) -> FilterConfig | None:
        """The config for the current view and operator state; None when nothing changed.
        The leader decides (``advance``; the guard judges ``health``, the fleet's counts as
        the leader has them); with no leader, followers render the stored deploy state with
        their views (capacity moves, direction and admission stay as the dead leader left
        them). The ``unguarded`` strategy: the same, without the route map's guard."""
        doc = json.loads(json.dumps(self.routemap.document))
        if self.cfg.strategy == UNGUARDED:
            doc.pop("guard", None)
            for stage in doc["stages"]:
                stage.pop("guard", None)
        for stage in doc["stages"]:
            stage["weight"] = world.weights.get(stage["name"], stage["weight"])
            if stage["mode"] == "blue_green":
                stage["active"] = world.active
        routemap = parse_routemap(doc)
        views = {k: ServersetView(k, dict(caps), {}, int(sum(caps.values())), 0) for k, caps in self.view.items()}
        leading, generation = self.leading(t), self.state.generation
        decision = decide(routemap, views, self.state, KnowsSets(quorum), leading=leading, now=t, health=health)
        config = decision.config
        if decision.write is not None:
            self.state = decision.write        # the simulated store takes every write
        if leading and self.current is not None and config.generation == generation:
            return None
        if not leading and config == self.current:
            return None
        self.current = config
        self.retained = (self.retained + [config])[-RETAINED:]
        return config

    def halt(self, version: str, t: float) -> None:
        """An operator's ``rollway deploy halt --version V --rollback``: the compare-and-set
        of the deploy state any replica makes (``DeployState.with_halt``); the leader's next
        step turns the deploy back, and every replica's render stops giving V new sessions."""
        self.state = self.state.with_halt(Halt(version, rollback=True, who="deploy-tool", why="rollback", at=t))

    def retains(self, config: FilterConfig) -> bool:
        return any(config is kept for kept in self.retained)

    def waiting(self) -> bool:
        return self.current is None or self.state.admission.waiting(self.current) or bool(self.state.settling())


@dataclass
class SimulatedEnvoy:
    replica: int = 0
    silent_from: float | None = None      # stops applying and ACKing configs from then
    disconnected_until: float = -1.0      # its stream broke: no config until then
    pending: list = field(default_factory=list)   # (arrival time, config, episode), in order
    last_arrival: float = 0.0
    router: Router | None = None
    config: FilterConfig | None = None
    episode: int = 0                      # the operator action the config it routes on reflects
    knows: set = field(default_factory=set)
    stages: dict = field(default_factory=dict)      # stage -> (its Stage, {version: capacity})
    views: dict = field(default_factory=dict)       # stage -> (hashed shares, versions that hold, target)
    weights: dict = field(default_factory=dict)     # stage -> weight its config applies

    def silent(self, t: float) -> bool:
        return self.silent_from is not None and t >= self.silent_from

    def connected(self, t: float) -> bool:
        return self.disconnected_until <= t

    def send(self, t: float, config: FilterConfig, episode: int, rng: random.Random, lag_max: float) -> None:
        arrival = max(self.last_arrival, t + rng.uniform(0.0, lag_max))
        self.last_arrival = arrival
        self.pending.append((arrival, config, episode))

    def drop(self, t: float, reconnect: float, replicas: int) -> None:
        """The stream breaks: nothing in flight arrives; it reconnects to the next replica."""
        self.pending.clear()
        self.disconnected_until = t + reconnect
        self.replica = (self.replica + 1) % max(1, replicas)

    def receive(self, t: float, plane: SimulatedPlane) -> bool:
        """Applies the newest update that has arrived; returns whether it applied one."""
        due = [p for p in self.pending if p[0] <= t]
        if not due:
            return False
        self.pending = [p for p in self.pending if p[0] > t]
        _, config, episode = due[-1]
        self.apply(config, episode, plane)
        return True

    def apply(self, config: FilterConfig, episode: int, plane: SimulatedPlane) -> None:
        self.config, self.episode, self.router = config, episode, Router(config.to_text())
        self.weights = {stage.name: stage.weight for stage in config.stages}   # as applied
        if plane.retains(config):
            self.knows = known_versions(config)
        self.stages, self.views = {}, {}
        for stage in config.stages:
            if isinstance(stage, BlueGreenStage):
                self.stages[stage.name] = (stage, {x.version: x.capacity for x in stage.slots.values()})
                self.views[stage.name] = ({}, set(), None)
                continue
            self.stages[stage.name] = (stage, {x.name: x.capacity for x in stage.versions})
            hashed = {x.name: x.capacity for x in stage.versions if x.admitted}
            total = sum(hashed.values())
            # Which versions keep sessions under this config (router.cc, the tiebreak): all
            # while steady; in a forward deploy all but the oldest (its sessions go to the
            # target), in a rollback all but the newest.
            # A target not admitted yet makes sessions on the drained version wait there.
            listed = stage.version_names()
            way = stage.direction.state
            waiting = stage.direction.target not in hashed
            holds = set(listed[1:] if way is Way.FORWARD and not waiting else
                        listed[:-1] if way is Way.ROLLBACK and not waiting else listed)
            target = stage.direction.target     # also a steady step's (a held or settling one)
            self.views[stage.name] = ({v: c / total for v, c in hashed.items()} if total else {}, holds, target)
