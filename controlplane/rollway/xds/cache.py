"""The snapshot cache: per (service, listener port), the resources of the control plane's
current filter config, built once per change and shared by every stream, as in
go-control-plane's ``SetSnapshot``. It decides nothing: the filter config it serves
(admission included) is the one in the ``ServiceView`` the plane last handed over
(``publish``, the ``ViewSink`` side of ``plane.attach``); it reads no plane state and takes
none of the plane's locks. Threads: ``publish`` runs on the plane's worker (it records the
view and marks the service dirty under ``dirty_lock`` only); snapshots are built on the
``rollway-xds`` loop, or an API thread asking for one, under ``lock``.

Usage::

    cache = SnapshotCache(plane)
    resources = cache.snapshot("web", 10000)     # Resources, content-versioned per type
    nonce, body = cache.response(type_url, resources, names)
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from typing import NamedTuple

from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse
from envoy_data_plane.google.protobuf import Any

from rollway.envoy import bootstrap as ec
from rollway.model.admission import known_versions
from rollway.model.endpoint_load import EndpointLoad
from rollway.model.filter_config import FilterConfig
from rollway.model.guard import Health
from rollway.plane.control_plane import ControlPlane, NotFound, ServiceView
from rollway.xds.fronting import FrontedSnapshot, component_version, compose, placement_of
from rollway.xds.health import HealthBook, LoadBook
from rollway.xds.ledger import GATED, SHORT, AckLedger, EnvoyNode
from rollway.xds.resources import (
    EXTENSION,
    TYPES,
    ConsistencyError,
    EncodeCache,
    ListenerSpec,
    Resources,
    build_resources,
    fronted_extension,
    fronted_route,
)

log = logging.getLogger(__name__)
RETAINED = 32    # filter configs per service whose ACKs still say what an Envoy knows
RESPONSES = 1024  # serialized DiscoveryResponses kept (SnapshotCache.responses)
MAX_LISTENERS = 256   # distinct listeners (address, port, edge options) built per service at once
MAX_FRONTED_SETS = 256   # distinct (services, listener) an Envoy fronting several can ask for, kept at once


class RetainedConfig(NamedTuple):
    """A filter config still served or ACKed: the versions it names, its generation, and its
    text (an Envoy fronting several services may be held at an older one)."""
    knows: frozenset
    generation: int
    text: str
    routed: frozenset = frozenset()      # FilterConfig.routed_clusters


class SnapshotCache:
    def __init__(self, plane: ControlPlane):
        self.plane = plane
        self.lock = threading.RLock()
        self.ledger = AckLedger(plane.report_envoys, replica=plane.replica_id, ack_timeout=plane.ack_timeout)
        self.snapshots: dict[tuple[str, ListenerSpec], Resources] = {}
        self._specs: dict[ListenerSpec, ListenerSpec] = {}
        self.configs: dict[tuple[str, ListenerSpec], FilterConfig] = {}   # the filter config inside each snapshot
        # What an Envoy ACKing a filter config knows, for the last RETAINED configs of each
        # service by ECDS version: an Envoy whose updates lag behind a deploy ACKs configs
        # that are no longer current, and they must still count (counting only the current
        # one starved admission whenever updates came faster than an Envoy's lag; found by
        # rollway.tools.sim). An ACK of a config no longer retained counts only as an ACK.
        self.recent: dict[str, OrderedDict[str, RetainedConfig]] = {}
        # Envoys fronting several services (rollway.xds.fronting): per (services, listener)
        # the parts composed and the result; per chosen set of config versions, the ECDS.
        self.fronted_sets: OrderedDict[tuple, tuple[tuple, FrontedSnapshot]] = OrderedDict()
        self.fronted_ecds: OrderedDict[str, Resources] = OrderedDict()
        self.encoded = EncodeCache()     # serialized resources, shared by all snapshots (bounded)
        # (type, version, names, subset) -> (nonce, DiscoveryResponse bytes): each response is
        # serialized once for every stream that asks for the same thing. The RESPONSES most
        # recently used (what the streams hold now is asked for on every push).
        self.responses: OrderedDict[tuple, tuple[str, bytes]] = OrderedDict()
        self.pushes: dict[str, int] = {SHORT[t]: 0 for t in TYPES}   # responses sent, per type
        self.consistency_failures = 0
        # Per (service, listener) the last snapshot that built, served while a newer one
        # fails to; per service how many builds failed and the newest failure (None once
        # one builds again).
        self.last_good: dict[tuple[str, ListenerSpec], Resources] = {}
        self.build_failures: dict[str, int] = {}
        self.last_failure: dict[str, str] = {}
        self.dirty: set[str] = set()     # services whose snapshots must be rebuilt
        self.dirty_lock = threading.Lock()
        self.epoch = 0                   # views handed over so far: what a stream's memo is valid for
        self._served_clusters: tuple[int, frozenset[str]] = (-1, frozenset())   # (epoch, clusters)
        # What the Envoys' load reports say each cluster served (rollway.xds.health).
        self.health = HealthBook(known=self.serves_cluster)
        self.load = LoadBook()
        self.views: dict[str, ServiceView] = {}     # what the plane handed over, per service
        self.loop: asyncio.AbstractEventLoop | None = None
        plane.attach(self)

    @property
    def nodes(self) -> dict[tuple[str, str], EnvoyNode]:
        return self.ledger.nodes

    @property
    def nack_total(self) -> int:
        return self.ledger.nack_total

    def envoy_status(self, service: str) -> list[dict]:
        return self.ledger.envoy_status(service)

    def intern(self, listener: ListenerSpec) -> ListenerSpec:
        """One object for equal listener specs: every lookup by a node's spec then hits the
        snapshot dict by identity, without comparing its edge options field by field."""
        if len(self._specs) >= 4 * MAX_LISTENERS:
            self._specs.clear()
        return self._specs.setdefault(listener, listener)

    def snapshot(self, service: str, listener: int | ListenerSpec) -> Resources:
        """The current resources for ``service`` and one listener (a port, or what an
        Envoy's metadata asks for: address, port and edge options)."""
        if not isinstance(listener, ListenerSpec):
            listener = ListenerSpec(port=listener)
        with self.lock:
            key = (service, listener)
            current = self.snapshots.get(key)
            with self.dirty_lock:
                dirty = service in self.dirty
                self.dirty.discard(service)
            if dirty:
                for stale in [k for k in self.snapshots if k[0] == service]:
                    self.last_good[stale] = self.snapshots.pop(stale)
                current = None
            if current is not None:
                return current
            # Only services the plane has handed over: loading a route map (store reads, a
            # first decision) is the refresh loop's work, never the ADS loop's.
            view = self.views.get(service)
            if view is None:
                raise NotFound(f"no route map for service {service!r} on this replica (yet)")
            config, endpoints = view.config, view.endpoints
            if config is None:
                raise NotFound(f"service {service!r} has no filter config yet")
            try:
                fresh = build_resources(config, endpoints, listener, cache=self.encoded, draining=view.draining)
            except Exception as error:
                # Nothing that fails here may reach a stream (it would end it, and Envoy
                # would reconnect in a loop getting nothing): the last good snapshot keeps
                # being served, and the failure is counted, logged and shown in status.
                if isinstance(error, ConsistencyError):
                    self.consistency_failures += 1
                self.build_failures[service] = self.build_failures.get(service, 0) + 1
                self.last_failure[service] = f"{type(error).__name__}: {error}"[:500]
                self.plane.report_snapshot(service, self.last_failure[service])
                previous = self.last_good.get(key)
                log.error("xds: snapshot of %s not built (%s), %s: %s", service, type(error).__name__,
                          "serving the last good one" if previous else "serving nothing yet", str(error)[:500])
                if previous is None:
                    raise NotFound(f"service {service!r} has no snapshot that builds yet") from None
                self.snapshots[key] = previous
                return previous
            # Listeners are what Envoys ask for (node metadata, unauthenticated): keep a
            # bounded number per service, oldest out; an evicted one is rebuilt when asked.
            self.configs.pop(key, None)
            held = [k for k in self.configs if k[0] == service]
            for old in held[:max(0, len(held) + 1 - MAX_LISTENERS)]:
                self.configs.pop(old, None)
                self.snapshots.pop(old, None)
                self.last_good.pop(old, None)
            self.snapshots[key] = fresh
            self.last_good[key] = fresh
            if self.last_failure.pop(service, None) is not None:
                self.plane.report_snapshot(service, None)
            self.configs[key] = config
            recent = self.recent.setdefault(service, OrderedDict())
            recent[fresh.versions[EXTENSION]] = RetainedConfig(frozenset(known_versions(config)), config.generation,
                                                               config.to_text(), fresh.routed)
            recent.move_to_end(fresh.versions[EXTENSION])
            while len(recent) > RETAINED:
                recent.popitem(last=False)
            return fresh

    def fronted(self, services: tuple[str, ...], listener: ListenerSpec,
                own: ec.OwnRoutes | None = None) -> FrontedSnapshot | None:
        """The resources of an Envoy fronting ``services`` (sorted), but its filter config
        (``fronted_resources``); None while none of them has a snapshot. A service with no
        snapshot yet is left out until it has one (its wake-up rebuilds this)."""
        parts: dict[str, Resources] = {}
        for service in services:
            try:
                resources = self.snapshot(service, listener)
            except NotFound:
                continue
            if self._retained(service, resources.versions[EXTENSION]) is not None:
                parts[service] = resources     # its config text can be listed (fronted_resources)
        if not parts:
            return None
        key = (services, listener, own)
        views = self.views
        placements = [placement_of(views[s], self.configs_header(s)) for s in sorted(parts)]
        # What the composition depends on, by value (not object identity, which Python
        # reuses once an old snapshot is freed).
        identity = (tuple(placements), tuple((s, tuple(sorted(parts[s].versions.items()))) for s in sorted(parts)))
        with self.lock:
            cached = self.fronted_sets.get(key)
            if cached is not None and cached[0] == identity:
                return cached[1]
            fronted = compose(parts, fronted_route(placements, self.encoded, own))
            self.fronted_sets[key] = (identity, fronted)
            self.fronted_sets.move_to_end(key)
            while len(self.fronted_sets) > MAX_FRONTED_SETS:
                self.fronted_sets.popitem(last=False)
            return fronted

    def _retained(self, service: str, version: str) -> RetainedConfig | None:
        with self.lock:
            retained = self.recent.get(service)
            return retained.get(version) if retained is not None else None

    def configs_header(self, service: str) -> str:
        view = self.views.get(service)
        config = view.config if view is not None else None
        return config.cluster_header(ec.DEFAULT_CLUSTER_HEADER) if config is not None else ec.DEFAULT_CLUSTER_HEADER

    def fronted_resources(self, fronted: FrontedSnapshot, chosen: dict[str, str]) -> Resources | None:
        """``fronted`` with the filter config listing ``chosen`` (service -> config version);
        None when a chosen version is no longer retained or nothing is chosen."""
        if not chosen:
            return None
        version = component_version(chosen)
        with self.lock:
            ecds = self.fronted_ecds.get(version)
            if ecds is None:
                texts: list[str] = []
                routed: set[str] = set()
                for service in sorted(chosen):
                    retained = self._retained(service, chosen[service])
                    if retained is None:
                        return None
                    texts.append(retained.text)
                    routed |= retained.routed
                ecds = Resources({EXTENSION: {ec.FILTER_NAME: fronted_extension(texts, self.encoded)}},
                                 {EXTENSION: version}, frozenset(routed))
                self.fronted_ecds[version] = ecds
                while len(self.fronted_ecds) > MAX_FRONTED_SETS:
                    self.fronted_ecds.popitem(last=False)
            self.fronted_ecds.move_to_end(version)
        return Resources({**fronted.by_type, **ecds.by_type}, {**fronted.versions, **ecds.versions},
                         ecds.routed, fronted.serving)

    def serves_cluster(self, name: str) -> bool:
        """Whether a config this replica serves may route to cluster ``name``."""
        epoch, clusters = self._served_clusters
        if epoch != self.epoch:
            with self.dirty_lock:
                epoch, views = self.epoch, list(self.views.values())
            clusters = frozenset(c for v in views if v.config is not None for c in v.config.picked_clusters())
            self._served_clusters = (epoch, clusters)
        return name in clusters

    def version_health(self, service: str) -> dict[tuple[str, str], Health]:
        """(stage, version) -> what this replica's Envoys reported it served, since this
        replica started (rolling stages)."""
        view = self.views.get(service)
        if view is None or view.config is None:
            return {}
        totals = self.health.totals()
        return {(stage.name, v.name): totals[v.cluster] for stage in view.config.rolling_stages()
                for v in stage.versions if v.cluster in totals}

    def endpoint_load(self, service: str) -> EndpointLoad:
        """What this replica's Envoys' latest load reports say is open now to each endpoint
        of ``service`` (its clusters, those being drained included)."""
        view = self.views.get(service)
        if view is None:
            return EndpointLoad()
        return self.load.snapshot(set(view.endpoints) | set(view.draining), time.monotonic())

    def gated_versions(self, service: str) -> tuple[str, ...] | None:
        """The content versions of what the deploy gate compares (CDS, EDS, ECDS) in this
        replica's current snapshot of ``service``; None before there is one."""
        with self.lock:
            port = next((k[1] for k in self.snapshots if k[0] == service), ListenerSpec())
        try:
            resources = self.snapshot(service, port)
        except NotFound:
            return None
        return tuple(resources.versions[t] for t in GATED)

    def response(self, type_url: str, resources: Resources, names: tuple[str, ...],
                 subset: tuple[str, ...] | None = None) -> tuple[str, bytes]:
        """The response carrying ``names`` (all when empty), or only ``subset`` of them (the
        endpoints that changed, for an Envoy that fronts several services)."""
        version = resources.versions[type_url]
        key = (type_url, version, names, subset)
        cached = self.responses.get(key)
        if cached is not None:
            self.responses.move_to_end(key)
            return cached
        available = resources.by_type[type_url]
        chosen = [n for n in subset if n in available] if subset is not None else \
            sorted(available) if not names else [n for n in names if n in available]
        nonce = f"{SHORT[type_url]}-{version}-{abs(hash((names, subset))) % 10**8}"
        body = bytes(DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce,
                                       resources=[Any(type_url=type_url, value=available[n]) for n in chosen]))
        self.responses[key] = (nonce, body)
        while len(self.responses) > RESPONSES:
            self.responses.popitem(last=False)
        return nonce, body

    def publish(self, view: ServiceView) -> None:
        """The plane's hand-over (``ViewSink``): a new view of one service. Its own lock: the
        deciding thread never waits behind a snapshot being built."""
        with self.dirty_lock:
            self.views[view.service] = view
            self.dirty.add(view.service)
            self.epoch += 1
        self.health.forget(self.serves_cluster)     # bounded across deploys: old versions' clusters go
        self.wake(view.service)

    def wake(self, service: str) -> None:
        if self.loop is None:
            return
        with self.ledger.lock:
            events = [n.wake for n in self.ledger.nodes.values()
                      if n.service == service and n.wake and n.disconnected_at is None]

        def wake_all() -> None:   # one hop onto the loop for all streams, not one per stream
            for event in events:
                event.set()
        self.loop.call_soon_threadsafe(wake_all)

    def on_ack(self, node: EnvoyNode, type_url: str, version: str) -> None:
        """An ACK. For a filter config (ECDS) still retained it also records what the Envoy
        now knows, current or not: that is the config it holds."""
        knows = generation = None
        if type_url == EXTENSION:
            with self.lock:
                retained = self.recent.get(node.service)
                known = retained.get(version) if retained is not None else None
            if known is not None:
                knows, generation = known.knows, known.generation
        self.ledger.acked(node, type_url, version, knows, generation)
