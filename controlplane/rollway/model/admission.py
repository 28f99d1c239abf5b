"""Admission of new versions: announce first, admit after every Envoy holds them.

An Envoy can keep a session only on a version it knows. A version new to a rolling stage
is therefore first sent with ``admitted: false`` (Envoys keep sessions that already want
it but hash no new sessions there) and admitted once every Envoy in the quorum has ACKed a
config containing it. A stage with nothing admitted yet admits everything at once:
nobody can be bounced from a version that serves no one.

The same two-step publication covers the other changes that move sessions: a reversal of
direction goes through ``steady``, a blue-green switch through ``next``, and a change of
stage weights through ``next_weight`` (sessions the new weights place elsewhere are kept
there by every Envoy before any Envoy starts moving them).

Two halves, so that the leader decides and every replica serves the same thing:

- ``decide(wanted, state, fleet)``: the leader advances ``AdmissionState`` by what the
  fleet knows (``fleet.all_know(key)``: O(1) per key with ``rollway.model.fleet_knowledge``);
- ``render(config, state)``: the config a decided state makes of ``config`` (a new value),
  the only thing a follower does. ``apply_admission`` is both, in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Protocol, runtime_checkable

from rollway.model.filter_config import BlueGreenStage, Direction, FilterConfig, RollingStage, Way

Key = tuple[str, str]  # (stage, version) or (stage, token) for steps


@runtime_checkable  # ``decide`` tells a fleet from a list of sets by isinstance (hasattr underneath)
class Fleet(Protocol):
    def all_know(self, key: Key) -> bool: ...


class KnowsSets:
    """A fleet given as one set of known keys per Envoy (tests and small callers)."""

    def __init__(self, sets: Iterable[set[Key]]):
        self.sets = list(sets)

    def all_know(self, key: Key) -> bool:
        return all(key in s for s in self.sets)


def _direction_token(name: str, direction: Direction) -> Key:
    return (name, f"direction:{direction.state.value}:{direction.target or ''}")


def _bluegreen_token(name: str, active: str, next_slot: str | None) -> Key:
    return (name, f"bluegreen:{active}:{next_slot or ''}")


def _weights_token(weights: dict[str, float], next_weights: dict[str, float] | None, order: list[str]) -> Key:
    applied = tuple((n, weights[n]) for n in order)
    coming = tuple((n, (next_weights or weights)[n]) for n in order)
    return ("", f"weights:{applied!r}:{coming!r}")


def known_versions(config: FilterConfig) -> set[Key]:
    """What an Envoy holding ``config`` knows: every (stage, version) of its rolling stages,
    each stage's direction and blue-green step, and the stage weights."""
    out: set[Key] = set()
    for stage in config.stages:
        if isinstance(stage, RollingStage):
            out |= {(stage.name, v.name) for v in stage.versions}
            out.add(_direction_token(stage.name, stage.direction))
        else:
            out.add(_bluegreen_token(stage.name, stage.active, stage.next))
    order = [s.name for s in config.stages]
    weights = {s.name: s.weight for s in config.stages}
    next_weights = {s.name: s.weight if s.next_weight is None else s.next_weight for s in config.stages}
    out.add(_weights_token(weights, next_weights, order))
    return out


@dataclass
class AdmissionState:
    """What the leader has decided to publish, per service (part of the deploy state)."""
    versions: set[Key] = field(default_factory=set)                    # admitted (stage, version)
    directions: dict[str, Direction] = field(default_factory=dict)     # stage -> direction published
    holding: dict[str, Direction] = field(default_factory=dict)        # stage -> direction waiting behind steady
    active_slots: dict[str, str] = field(default_factory=dict)    # blue-green stage -> active slot published
    next_slots: dict[str, str] = field(default_factory=dict)      # blue-green stage -> slot announced as next
    weights: dict[str, float] | None = None                       # stage -> weight applied
    next_weights: dict[str, float] | None = None                  # announced as next_weight, not yet applied
    ways: dict[str, Way] = field(default_factory=dict)            # stage -> last non-steady state published

    def waiting(self, config: FilterConfig | None = None) -> bool:
        """Whether something is held back that an ACK could release (with ``config``, also
        a version announced there but not admitted)."""
        return bool(self.holding or self.next_slots or self.next_weights) or \
            config is not None and any(True for _ in config.announced())

    def outstanding(self, config: FilterConfig) -> list[str]:
        """What waits for the fleet, in words (for the deploy gate)."""
        out = [f"{stage}: direction {d.state.value}{' -> ' + d.target if d.target else ''} "
               f"held at steady" for stage, d in sorted(self.holding.items())]
        out += [f"{stage}: blue-green switch to {slot}" for stage, slot in sorted(self.next_slots.items())]
        if self.next_weights:
            out.append(f"stage weights changing to {self.next_weights}")
        out += [f"{stage}: version {version} announced, not admitted" for stage, version in config.announced()]
        return out

    def to_dict(self) -> dict:
        return {"versions": sorted([list(k) for k in self.versions]),
                "directions": {k: d.to_json() for k, d in self.directions.items()},
                "holding": {k: d.to_json() for k, d in self.holding.items()},
                "active_slots": self.active_slots, "next_slots": self.next_slots,
                "weights": self.weights, "next_weights": self.next_weights,
                "ways": {k: w.value for k, w in self.ways.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> AdmissionState:
        return cls({(k[0], k[1]) for k in d.get("versions", [])},
                   {k: Direction.from_json(v) for k, v in d.get("directions", {}).items()},
                   {k: Direction.from_json(v) for k, v in d.get("holding", {}).items()},
                   dict(d.get("active_slots", {})), dict(d.get("next_slots", {})),
                   d.get("weights"), d.get("next_weights"), {k: Way(v) for k, v in d.get("ways", {}).items()})


def apply_admission(config: FilterConfig, state: AdmissionState | set[Key],
                    fleet: Fleet | Iterable[set[Key]]) -> FilterConfig:
    """Decides (``decide``) and applies (``render``) admission: the config to publish."""
    if isinstance(state, set):  # versions only (callers that do not track directions)
        state = AdmissionState(state)
    decide(config, state, fleet)
    return render(config, state)


def decide(wanted: FilterConfig, state: AdmissionState, fleet: Fleet | Iterable[set[Key]]) -> None:
    """Advances ``state`` towards the ``wanted`` config (what capacity and the route map
    say now, nothing held back) as far as what the fleet knows allows.

    Only a reversal (forward <-> rollback) is held; retargeting a forward deploy to a newer
    version moves sessions the same way and goes out at once. Why: while Envoys lag, one
    still on ``forward`` would move a session forward again right after another, already
    on ``rollback``, moved it back. ``steady`` moves nobody, so going forward -> steady ->
    rollback (the second step only once every Envoy holds the first) never sends a session
    both ways (found by rollway.tools.sim)."""
    if not isinstance(fleet, Fleet):
        fleet = KnowsSets(fleet)
    _decide_weights(wanted, state, fleet)
    for stage in wanted.stages:
        if isinstance(stage, BlueGreenStage):
            _decide_blue_green(stage.name, stage.active, state, fleet)
        else:
            _decide_direction(stage, state, fleet)
            _decide_versions(stage, state, fleet)
    names = {s.name for s in wanted.stages}
    for table in (state.directions, state.holding, state.active_slots, state.next_slots, state.ways):
        for gone in [n for n in table if n not in names]:
            del table[gone]


def _decide_direction(stage: RollingStage, state: AdmissionState, fleet: Fleet) -> None:
    name, direction = stage.name, stage.direction
    held = direction.held()
    # A reversal is judged against the last way anyone was moved, not only the direction
    # published now: after a pause or a finished deploy (``steady``), an Envoy that has
    # not heard yet may still move sessions the old way.
    last_way = state.ways.get(name)
    reversal = direction.moving and last_way is not None and direction.state is not last_way
    if name in state.holding and direction.moving and not fleet.all_know(_direction_token(name, held)):
        state.holding[name] = direction                # still waiting for every Envoy
        state.directions[name] = held
    elif name not in state.holding and reversal and not fleet.all_know(_direction_token(name, held)):
        state.holding[name] = direction                # a reversal: nobody moves anyone first
        state.directions[name] = held
    else:
        state.holding.pop(name, None)
        state.directions[name] = direction
        if direction.moving:
            state.ways[name] = direction.state


def _decide_versions(stage: RollingStage, state: AdmissionState, fleet: Fleet) -> None:
    """Versions the stage no longer serves are forgotten; a stage with nothing admitted
    admits everything; a new version is admitted once every Envoy knows it."""
    live = {(stage.name, v.name) for v in stage.versions}
    state.versions.difference_update({k for k in state.versions if k[0] == stage.name and k not in live})
    if not state.versions & live:
        state.versions.update(live)
    state.versions.update(k for k in live if k not in state.versions and fleet.all_know(k))


def _decide_weights(wanted_config: FilterConfig, state: AdmissionState, fleet: Fleet) -> None:
    """A change of stage weights goes out in two steps: first the old weights with each
    stage's new one as ``next_weight`` (a session the new weights place in a stage that
    serves the version it wants is kept there), then, once every Envoy holds that, the new
    weights. Without it, an Envoy that has not heard of the change sends a session that a
    faster one moved from prod to canary straight back (found by rollway.tools.sim). A
    change starts only once every Envoy holds the previous one's final weights: with two
    changes in flight, Envoys applying different weights move sessions both ways."""
    order = [s.name for s in wanted_config.stages]
    wanted = {s.name: s.weight for s in wanted_config.stages}
    applied = state.weights
    if applied is None or set(applied) != set(wanted) or applied == wanted:
        state.weights, state.next_weights = wanted, None
        return
    if state.next_weights is None and not fleet.all_know(_weights_token(applied, None, order)):
        return                                      # the previous change is still going out
    state.next_weights = wanted
    if fleet.all_know(_weights_token(applied, wanted, order)):
        state.weights, state.next_weights = wanted, None


def _decide_blue_green(name: str, wanted: str, state: AdmissionState, fleet: Fleet) -> None:
    """A switch of the active slot goes out in two steps: first the old slot stays active
    with ``next`` naming the new one (sessions a faster Envoy already switched stay
    switched), then, once every Envoy holds that, the new slot becomes active."""
    published = state.active_slots.get(name)
    if published is not None and wanted != published \
            and not fleet.all_know(_bluegreen_token(name, published, wanted)):
        state.next_slots[name] = wanted
        return
    state.active_slots[name] = wanted
    state.next_slots.pop(name, None)


def render(config: FilterConfig, state: AdmissionState) -> FilterConfig:
    """The config a decided ``state`` makes of ``config``: the weights applied and
    announced, each rolling stage's published direction and unadmitted versions, each
    blue-green stage's active and next slot. Nothing is decided here."""
    names = {s.name for s in config.stages}
    weights = state.weights if state.weights is not None and set(state.weights) == names else None
    next_weights = state.next_weights if weights is not None and state.next_weights is not None \
        and set(state.next_weights) == names else None
    stages = []
    for stage in config.stages:
        if weights is not None:
            stage = replace(stage, weight=weights[stage.name],
                            next_weight=next_weights[stage.name] if next_weights is not None else stage.next_weight)
        stages.append(_render_blue_green(stage, state) if isinstance(stage, BlueGreenStage)
                      else _render_rolling(stage, state))
    return replace(config, stages=tuple(stages))


def _render_blue_green(stage: BlueGreenStage, state: AdmissionState) -> BlueGreenStage:
    active = state.active_slots.get(stage.name, stage.active)
    coming = state.next_slots.get(stage.name)
    return replace(stage, active=active, next=coming if coming is not None and coming != active else stage.next)


def _render_rolling(stage: RollingStage, state: AdmissionState) -> RollingStage:
    name, live = stage.name, stage.version_names()
    direction = state.directions.get(name)
    if direction is not None:
        # A follower whose serverset view lags may not list the target yet, or its view
        # is newer and the target has gone: move nobody, but keep where the evidence
        # sends a gone version's sessions (build_filter_config, DirectionTracker.handover).
        if direction.target not in (None, *live):
            direction = stage.direction if stage.direction.state is Way.STEADY else Direction()
        stage = replace(stage, direction=direction)
    if any((name, v) in state.versions for v in live):
        stage = replace(stage, versions=tuple(v if (name, v.name) in state.versions else replace(v, admitted=False)
                                              for v in stage.versions))
    return stage
