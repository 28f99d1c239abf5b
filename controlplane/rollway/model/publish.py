"""Publication: what a service's filter config and endpoints are, given its route map,
serverset views and direction trackers. The xDS server and the simulator both call it, so
the rules for what goes out to Envoys have one home."""

from __future__ import annotations

from rollway.model.direction import DirectionTracker
from rollway.model.routemap import RouteMap
from rollway.sources.serverset import ServersetView


def cluster_name(service: str, stage: str, leaf: str) -> str:
    return f"{service}.{stage}.{leaf}"


def build_filter_config(routemap: RouteMap, views: dict[str, ServersetView | None],
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
            if tracker and tracker.state != "steady" and tracker.target in live:
                direction = {"state": tracker.state, "target": tracker.target}
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


def endpoints_by_cluster(routemap: RouteMap, views: dict[str, ServersetView | None]) -> dict[str, list]:
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
                eps = [e for group in (view.endpoints.values() if view else []) for e in group]
                out[cluster_name(routemap.service, stage.name, slot)] = eps
    return out
