"""An Envoy that fronts several services: its resources composed from each service's own
snapshot, and the trial that keeps one service's rejected filter config from holding the
others.

An Envoy lists the services it fronts in its node metadata (``services``, written by
``rollway envoy-config --ads --service web --service api``). It gets one listener, one
route table (a virtual host per domain, each service's routes longest prefix first, each
naming its service in the dynamic module's per-route config: ``bootstrap.services_route_config``),
the clusters and endpoints of every service, and one filter config (ECDS) listing each
service's config (``{"services": [...]}``). Each part comes from the service's own
snapshot (``SnapshotCache.snapshot``), built and checked as for an Envoy fronting one, so
the versions the deploy gate compares per service are the same either way: every part
keeps its service's version as a *component* (``FrontedSnapshot.components``), and an ACK
of the whole is an ACK of each component by that service's entry in the ledger.

Why per-service components: a service's quorum must be held only by what that service was
sent. A NACK of the combined filter config names the services whose configs changed in it
(the suspects); the filter's own message names the bad one (``services[i]``), and when it
does not, the suspects are tried one at a time (``ConfigTrial``). A rejected config is held
back from that Envoy (it keeps the one it last ACKed) until its service's config changes
again; the service's entry stays behind, turns stale after the ACK timeout and leaves that
service's quorum only; the other services' configs keep flowing.

Usage::

    fronted = compose(views, parts, listener_bytes)    # by SnapshotCache.fronted
    trial = ConfigTrial()
    chosen = trial.choose(fronted.components[EXTENSION])   # service -> config version to send
    trial.acked(chosen) / trial.nacked(chosen, message)    # what the Envoy answered
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rollway.envoy import bootstrap as ec
from rollway.xds.resources import (
    CLUSTER,
    ENDPOINT,
    EXTENSION,
    LISTENER,
    ROUTE,
    ROUTE_NAME,
    Resources,
    content_version,
)

MAX_FRONTED = 256          # services one Envoy may list (the filter's own limit, kMaxServices)
_NAMED = re.compile(r"services\[(\d+)\]")


def component_version(components: Mapping[str, str]) -> str:
    """A version for a whole composed from per-service versions: the same on every replica
    for the same parts."""
    digest = hashlib.sha256()
    for service in sorted(components):
        digest.update(service.encode() + b"\0" + components[service].encode() + b"\0")
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class FrontedSnapshot:
    """What an Envoy fronting ``services`` is served, but for its filter config, which
    depends on what that Envoy has accepted (``ConfigTrial``)."""
    services: tuple[str, ...]                       # the ones with a snapshot, sorted
    by_type: dict[str, dict[str, bytes]]            # listener, route, clusters, endpoints
    versions: dict[str, str]
    components: dict[str, dict[str, str]]           # type -> service -> that service's version
    serving: frozenset[str] = frozenset()           # every part's ``Resources.serving``


@dataclass
class ConfigTrial:
    """Which version of each service's filter config one Envoy is sent. ``held``: what it
    last ACKed per service; ``rejected``: a version it NACKed (sent again only once the
    service's config changes); ``trying``: services whose new configs came together in a
    NACK that did not say which was bad, tried one at a time in this order."""
    held: dict[str, str] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)
    trying: list[str] = field(default_factory=list)

    def choose(self, current: Mapping[str, str]) -> dict[str, str]:
        """Service -> config version to send. A service held back keeps its ACKed version
        (or is left out if it has none: its routes answer 503, the others serve)."""
        chosen: dict[str, str] = {}
        waiting = set(self.trying[1:])
        for service, version in current.items():
            if self.rejected.get(service) == version or service in waiting:
                if service in self.held:
                    chosen[service] = self.held[service]
            else:
                chosen[service] = version
        return chosen

    def acked(self, chosen: Mapping[str, str]) -> None:
        self.held = dict(chosen)
        if self.trying and self.trying[0] in chosen:
            self.trying.pop(0)              # it was good: try the next one

    def nacked(self, chosen: Mapping[str, str], message: str) -> list[str]:
        """The services whose configs are now rejected (possibly none yet, while a trial
        narrows them down)."""
        suspects = sorted(s for s, v in chosen.items() if self.held.get(s) != v)
        if not suspects:
            return []
        named = _NAMED.search(message or "")
        order = sorted(chosen)
        if named and int(named.group(1)) < len(order) and order[int(named.group(1))] in suspects:
            bad = [order[int(named.group(1))]]
        elif len(suspects) == 1:
            bad = suspects
        elif self.trying and self.trying[0] in suspects:
            bad = [self.trying[0]]
        else:
            self.trying = suspects          # cannot tell: one at a time from here
            return []
        for service in bad:
            self.rejected[service] = chosen[service]
            if service in self.trying:
                self.trying.remove(service)
        return bad


def placement_of(view, cluster_header: str) -> ec.Placement:
    return ec.Placement(view.service, tuple(view.domains), view.path_prefix, cluster_header)


def compose(parts: Mapping[str, Resources], route_bytes: bytes) -> FrontedSnapshot:
    """The fronted snapshot from each service's own snapshot, sorted by service,
    and the encoded route table. The listener is every part's own (it depends on the
    listener spec only)."""
    services = tuple(sorted(parts))
    by_type: dict[str, dict[str, bytes]] = {LISTENER: {}, ROUTE: {ROUTE_NAME: route_bytes}, CLUSTER: {},
                                            ENDPOINT: {}}
    components: dict[str, dict[str, str]] = {CLUSTER: {}, ENDPOINT: {}, EXTENSION: {}}
    for service in services:
        resources = parts[service]
        by_type[LISTENER] = resources.by_type[LISTENER]
        by_type[CLUSTER].update(resources.by_type[CLUSTER])
        by_type[ENDPOINT].update(resources.by_type[ENDPOINT])
        for kind in (CLUSTER, ENDPOINT, EXTENSION):
            components[kind][service] = resources.versions[kind]
    versions = {LISTENER: content_version(by_type[LISTENER]), ROUTE: content_version(by_type[ROUTE]),
                CLUSTER: component_version(components[CLUSTER]), ENDPOINT: component_version(components[ENDPOINT])}
    serving = frozenset().union(*(parts[s].serving for s in services))
    return FrontedSnapshot(services, by_type, versions, components, serving)

