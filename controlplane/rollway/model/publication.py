"""The one publication function: what a service's filter config is, given its route map,
serverset views, deploy state and what the fleet knows. The control plane's leader and the
simulator both call ``advance``; followers call ``render_config`` on the leader's deploy
state. Both are pure functions of their inputs, so every replica given the same inputs
sends byte-identical configs, generation included.

Usage::

    config = advance(routemap, views, state, fleet)     # leader: advances ``state`` in place
    config = render_config(routemap, views, state)      # follower: serves what state says
    config.to_text()                                    # the filter's JSON
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import replace

from rollway.model import admission
from rollway.model.deploy_state import GUARD, MAX_HALTS, DeployState, Halt, Measured
from rollway.model.direction import DirectionTracker
from rollway.model.filter_config import (
    STEADY,
    BlueGreenStage,
    Direction,
    FilterConfig,
    Mode,
    RollingStage,
    Slot,
    Stage,
    VersionEntry,
    Way,
)
from rollway.model.guard import Health, judge
from rollway.model.routemap import RouteMap
from rollway.model.routemap import Stage as StagePlan
from rollway.sources.serverset import ServersetView


def cluster_name(service: str, stage: str, leaf: str) -> str:
    return f"{service}.{stage}.{leaf}"


def build_filter_config(routemap: RouteMap, views: Mapping[str, ServersetView | None],
                        directions: dict[str, DirectionTracker], generation: int,
                        secrets_file: str | None = None, halted: frozenset[str] = frozenset()) -> FilterConfig:
    """The filter config (docs/design.md) from a route map, serverset views and directions,
    before admission: what capacity and the route map say now, nothing held back but the
    ``halted`` versions (published unadmitted: they keep their sessions, get no new ones)."""
    stages: list[Stage] = [
        _rolling_stage(routemap.service, stage, views.get(stage.name), directions.get(stage.name), halted)
        if stage.mode is Mode.ROLLING else _blue_green_stage(routemap.service, stage, views)
        for stage in routemap.stages]
    return FilterConfig(service=routemap.service, generation=generation, routing_id=routemap.routing_id,
                        stages=tuple(stages), version_cookie=routemap.version_cookie,
                        stage_cookie=routemap.stage_cookie, headers=routemap.headers,
                        override=routemap.override or None, secrets_file=secrets_file or None,
                        cookie_path=routemap.path_prefix if routemap.path_prefix != "/" else None)


def _rolling_stage(service: str, stage: StagePlan, view: ServersetView | None,
                   tracker: DirectionTracker | None, halted: frozenset[str] = frozenset()) -> RollingStage:
    capacity = view.capacity if view else {}
    order = list(tracker.order) if tracker else sorted(capacity)
    order += [v for v in sorted(capacity) if v not in order]
    live = [v for v in order if capacity.get(v, 0) > 0]
    direction = STEADY
    if tracker and tracker.state != "steady":
        way, target = tracker.published()
        if target in live:
            direction = Direction(Way(way), target)
        elif len(live) > 1:
            # The deploy's target is gone and the leader has not decided since (it is
            # down, or this is its last view): move nobody, but send the gone version's
            # sessions where the evidence says the deploy turned, not by hash (found by
            # the state machine: a follower's render sent them back to a version they had
            # left).
            heir = tracker.handover(capacity, halted)
            if heir is not None:
                direction = Direction(Way.STEADY, heir)
    # (A stage left with nothing admitted keeps its halted versions: _never_emptied_by_a_halt.)
    versions = tuple(VersionEntry(v, capacity[v], cluster_name(service, stage.name, v), admitted=v not in halted,
                                  halted=v in halted) for v in live)
    return RollingStage(stage.name, stage.weight, versions, direction)


def _blue_green_stage(service: str, stage: StagePlan, views: Mapping[str, ServersetView | None]) -> BlueGreenStage:
    slots = {}
    for slot in stage.slots:
        view = views.get(f"{stage.name}/{slot}")
        capacity = view.capacity if view else {}
        # A slot runs one version; mid-redeploy, the one with most capacity names it.
        version = max(capacity, key=lambda v: (capacity[v], v)) if capacity else "none"
        slots[slot] = Slot(version, sum(capacity.values()), cluster_name(service, stage.name, slot))
    assert stage.active is not None     # parse_routemap requires it of a blue-green stage
    return BlueGreenStage(stage.name, stage.weight, stage.active, slots)


def draining_by_cluster(routemap: RouteMap, views: Mapping[str, ServersetView | None]) -> dict[str, tuple]:
    """Cluster name -> ((host, port), ...) of the members being drained: Envoy keeps them
    as DRAINING (no new requests) so their open requests stay counted until they go."""
    out: dict[str, list] = {}
    for stage in routemap.stages:
        for key, _ in stage.serversets().items():
            view = views.get(key)
            for version, eps in (view.draining.items() if view else []):
                target = version if stage.mode is Mode.ROLLING else key.partition("/")[2]
                out.setdefault(cluster_name(routemap.service, stage.name, target), []).extend(eps)
    return {cluster: tuple(sorted(set(eps))) for cluster, eps in out.items()}


def endpoints_by_cluster(routemap: RouteMap, views: Mapping[str, ServersetView | None]) -> dict[str, list]:
    """Cluster name -> [(host, port, weight)] for every cluster the filter config may name."""
    out: dict[str, list] = {}
    for stage in routemap.stages:
        if stage.mode is Mode.ROLLING:
            view = views.get(stage.name)
            for version, eps in (view.endpoints.items() if view else []):
                out[cluster_name(routemap.service, stage.name, version)] = list(eps)
        else:
            for slot in stage.slots:
                view = views.get(f"{stage.name}/{slot}")
                members = [e for group in (view.endpoints.values() if view else []) for e in group]
                out[cluster_name(routemap.service, stage.name, slot)] = members
    return out


def render_config(routemap: RouteMap, views: Mapping[str, ServersetView | None], state: DeployState,
                  secrets_file: str | None = None) -> FilterConfig:
    """The filter config ``state`` describes for these views: nothing is decided here."""
    config = build_filter_config(routemap, views, state.trackers, state.generation, secrets_file, state.halted())
    return _never_emptied_by_a_halt(admission.render(config, state.admission))


def _never_emptied_by_a_halt(config: FilterConfig) -> FilterConfig:
    """A halt never leaves a rolling stage without an admitted version: where every live
    version is halted (a canary whose only build was halted, prod fully on it) or the
    others are all announced but not yet admitted (the old version's first hosts back, not
    yet known to every Envoy), the halted ones keep serving until one is; status shows
    them halted. Without it the stage takes no traffic at all and every request gets a 503
    (found by the real-Envoy rollback test)."""
    stages: list[Stage] = []
    for stage in config.stages:
        if isinstance(stage, RollingStage) and any(v.halted for v in stage.versions) \
                and not any(v.admitted for v in stage.versions):
            stage = replace(stage, versions=tuple(replace(v, admitted=True, halted=False) if v.halted else v
                                                  for v in stage.versions))
        stages.append(stage)
    return replace(config, stages=tuple(stages))


def config_digest(config: FilterConfig) -> str:
    """The config's content, generation left out: a new generation only for new content."""
    body = json.dumps({**config.to_json(), "generation": 0}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


NO_HEALTH = Health(0, 0)


def guard_halts(routemap: RouteMap, views: Mapping[str, ServersetView | None], state: DeployState,
                health: Mapping[tuple[str, str], Health], now: float) -> list[Halt]:
    """The guard's verdicts for this step: per rolling stage with a ``guard``, every live
    version newer than the stage's baseline (its oldest live version not halted: the one
    the deploy replaces), not halted and not resumed by an operator, judged against the
    baseline on the fleet's counts (``health``: (stage, version) -> requests and 5xx, summed
    over every Envoy since the version appeared). A version that trips is halted in every
    stage (a halt is per service: the canary's halt keeps the build out of prod)."""
    halts: dict[str, Halt] = {}
    for stage in routemap.stages:
        view, tracker = views.get(stage.name), state.trackers.get(stage.name)
        if stage.guard is None or stage.mode is not Mode.ROLLING or view is None or tracker is None:
            continue
        live = [v for v in tracker.order if view.capacity.get(v, 0.0) > 0]
        baseline = next((v for v in live if v not in state.halts), None)
        for version in live:
            if baseline is None or tracker.rank(version) <= tracker.rank(baseline) or version in state.halts \
                    or version in state.resumed or version in halts:
                continue
            verdict = judge(stage.guard, health.get((stage.name, version), NO_HEALTH),
                            health.get((stage.name, baseline), NO_HEALTH))
            if verdict.trips:
                halts[version] = Halt(
                    version, stage.guard.action.value == "rollback", GUARD,
                    f"{stage.name}: 5xx ratio above {baseline}'s by more than {stage.guard.max_error_ratio:g}",
                    now, verdict.figures(),
                    Measured(stage.name, verdict.candidate.ratio, verdict.baseline.ratio, verdict.candidate.requests))
    return list(halts.values())


def advance(routemap: RouteMap, views: Mapping[str, ServersetView | None], state: DeployState,
            fleet: admission.Fleet | list[set], secrets_file: str | None = None,
            routemap_revision: int = 0, now: float | None = None,
            health: Mapping[tuple[str, str], Health] | None = None) -> FilterConfig:
    """The leader's step: advances ``state`` in place (the guard's halts from ``health``,
    direction evidence from the views, admission decisions from what the fleet knows, the
    generation when the config's content changes) and returns the filter config it
    describes. ``now`` (seconds) lets a change of a deploy's way settle
    (``DirectionTracker.settle``); the leader calls this every second."""
    if health:
        for halt in guard_halts(routemap, views, state, health, 0.0 if now is None else now):
            if len(state.halts) < MAX_HALTS:    # full: the halts recorded stand; status shows them
                state.record_halt(halt)
    halted = state.halted()
    for stage in routemap.stages:
        view = views.get(stage.name)
        if stage.mode is Mode.ROLLING and view is not None:
            # Observing the same capacities again is a no-op, so this is safe to repeat.
            tracker = state.trackers.setdefault(stage.name, DirectionTracker())
            tracker.observe(view.capacity, now, halted)
            # An operator's rollback turns the deploy back at once (idempotent: a rollback
            # already under way, or nothing older live, leaves it as it is).
            for halt in state.halts.values():
                if halt.rollback:
                    tracker.turn_back(halt.version, view.capacity, halted)
    rolling = {s.name for s in routemap.stages if s.mode is Mode.ROLLING}
    for gone in [name for name in state.trackers if name not in rolling]:
        del state.trackers[gone]
    wanted = build_filter_config(routemap, views, state.trackers, state.generation, secrets_file, halted)
    admission.decide(wanted, state.admission, fleet)
    config = render_config(routemap, views, state, secrets_file)
    digest = config_digest(config)
    if digest != state.digest:
        state.generation += 1
        state.digest = digest
        config = config.with_generation(state.generation)
    state.routemap_revision = routemap_revision
    return config
