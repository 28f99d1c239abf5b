"""The one publication function: what a service's filter config is, given its route map,
serverset views, deploy state and what the fleet knows. The control plane's leader and the
simulator both call ``publish``; followers call ``render_config`` on the leader's deploy
state. Both are pure functions of their inputs, so every replica given the same inputs
sends byte-identical configs, generation included.

Usage::

    config = publish(routemap, views, state, fleet)   # leader: advances ``state`` in place
    config = render_config(routemap, views, state)    # follower: serves what state says
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from rollway.model import admission
from rollway.model.deploy_state import DeployState
from rollway.model.direction import DirectionTracker
from rollway.model.routemap import RouteMap
from rollway.sources.serverset import ServersetView


def cluster_name(service: str, stage: str, leaf: str) -> str:
    return f"{service}.{stage}.{leaf}"


def build_filter_config(routemap: RouteMap, views: Mapping[str, ServersetView | None],
                        directions: dict[str, DirectionTracker], generation: int,
                        secrets_file: str | None = None) -> dict:
    """The filter config (design.md) from a route map, serverset views and directions."""
    doc: dict = {"service": routemap.service, "generation": generation, "routing_id": dict(routemap.routing_id)}
    if routemap.version_cookie:
        doc["version_cookie"] = routemap.version_cookie
    if routemap.stage_cookie:
        doc["stage_cookie"] = routemap.stage_cookie
    if routemap.headers:
        doc["headers"] = dict(routemap.headers)
    if routemap.override:
        doc["override"] = dict(routemap.override)
    if secrets_file:
        doc["secrets_file"] = secrets_file
    stages = []
    for stage in routemap.stages:
        if stage.mode == "rolling":
            view = views.get(stage.name)
            capacity = view.capacity if view else {}
            tracker = directions.get(stage.name)
            order = list(tracker.order) if tracker else sorted(capacity)
            order += [v for v in sorted(capacity) if v not in order]
            live = [v for v in order if capacity.get(v, 0) > 0]
            direction = {"state": "steady"}
            way, target = tracker.published() if tracker else ("steady", None)
            if tracker and tracker.state != "steady" and target in live:
                direction = {"state": way, "target": target}
            elif tracker and tracker.state != "steady" and len(live) > 1:
                # The deploy's target is gone and the leader has not decided since (it is
                # down, or this is its last view): move nobody, but send the gone version's
                # sessions where the evidence says the deploy turned, not by hash (found by
                # the state machine: a follower's render sent them back to a version they had
                # left).
                heir = tracker.handover(capacity)
                if heir is not None:
                    direction = {"state": "steady", "target": heir}
            stages.append({"name": stage.name, "weight": stage.weight, "mode": "rolling",
                           "versions": [{"name": v, "capacity": capacity[v],
                                         "cluster": cluster_name(routemap.service, stage.name, v)} for v in live],
                           "direction": direction})
        else:
            slots = {}
            for slot in stage.slots:
                view = views.get(f"{stage.name}/{slot}")
                capacity = view.capacity if view else {}
                # A slot runs one version; mid-redeploy, the one with most capacity names it.
                version = max(capacity, key=lambda v: (capacity[v], v)) if capacity else "none"
                slots[slot] = {"version": version, "capacity": sum(capacity.values()),
                               "cluster": cluster_name(routemap.service, stage.name, slot)}
            stages.append({"name": stage.name, "weight": stage.weight, "mode": "blue_green",
                           "active": stage.active, "slots": slots})
    doc["stages"] = stages
    return doc


def endpoints_by_cluster(routemap: RouteMap, views: Mapping[str, ServersetView | None]) -> dict[str, list]:
    """Cluster name -> [(host, port, weight)] for every cluster the filter config may name."""
    out: dict[str, list] = {}
    for stage in routemap.stages:
        if stage.mode == "rolling":
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
                  secrets_file: str | None = None) -> dict:
    """The filter config ``state`` describes for these views: nothing is decided here."""
    config = build_filter_config(routemap, views, state.trackers, state.generation, secrets_file)
    admission.render(config, state.admission)
    return config


def config_digest(config: dict) -> str:
    body = json.dumps({**config, "generation": 0}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def publish(routemap: RouteMap, views: Mapping[str, ServersetView | None], state: DeployState,
            fleet: admission.Fleet | list[set], secrets_file: str | None = None,
            routemap_revision: int = 0, now: float | None = None) -> dict:
    """The leader's step: advances ``state`` in place (direction evidence from the views,
    admission decisions from what the fleet knows, the generation when the config's content
    changes) and returns the filter config it describes. ``now`` (seconds) lets a change of
    a deploy's way settle (``DirectionTracker.settle``); the leader calls this every second."""
    for stage in routemap.stages:
        view = views.get(stage.name)
        if stage.mode == "rolling" and view is not None:
            # Observing the same capacities again is a no-op, so this is safe to repeat.
            state.trackers.setdefault(stage.name, DirectionTracker()).observe(view.capacity, now)
    rolling = {s.name for s in routemap.stages if s.mode == "rolling"}
    for gone in [name for name in state.trackers if name not in rolling]:
        del state.trackers[gone]
    wanted = build_filter_config(routemap, views, state.trackers, state.generation, secrets_file)
    admission.decide(wanted, state.admission, fleet)
    config = render_config(routemap, views, state, secrets_file)
    digest = config_digest(config)
    if digest != state.digest:
        state.generation += 1
        state.digest = digest
        config["generation"] = state.generation
    state.routemap_revision = routemap_revision
    return config
