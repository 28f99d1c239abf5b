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
from collections import OrderedDict

from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse
from envoy_data_plane.google.protobuf import Any

from rollway.model.admission import known_versions
from rollway.model.filter_config import FilterConfig
from rollway.plane.control_plane import ControlPlane, NotFound, ServiceView
from rollway.xds.ledger import GATED, SHORT, AckLedger, EnvoyNode
from rollway.xds.resources import EXTENSION, TYPES, ConsistencyError, ListenerSpec, Resources, build_resources

log = logging.getLogger(__name__)
RETAINED = 32    # filter configs per service whose ACKs still say what an Envoy knows
MAX_LISTENERS = 256   # distinct listeners (address, port, edge options) built per service at once


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
        self.recent: dict[str, OrderedDict[str, tuple[frozenset, int]]] = {}
        self.encoded: dict = {}          # canonical JSON -> bytes, shared by all snapshots
        self.responses: dict = {}        # (type, version, names) -> DiscoveryResponse bytes
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
        self.views: dict[str, ServiceView] = {}     # what the plane handed over, per service
        self.loop: asyncio.AbstractEventLoop | None = None
        plane.attach(self)

    @property
    def nodes(self) -> dict[str, EnvoyNode]:
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
                fresh = build_resources(config, endpoints, listener, cache=self.encoded)
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
            recent[fresh.versions[EXTENSION]] = (frozenset(known_versions(config)), config.generation)
            recent.move_to_end(fresh.versions[EXTENSION])
            while len(recent) > RETAINED:
                recent.popitem(last=False)
            return fresh

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

    def response(self, type_url: str, resources: Resources, names: tuple[str, ...]) -> tuple[str, bytes]:
        version = resources.versions[type_url]
        key = (type_url, version, names)
        cached = self.responses.get(key)
        if cached is not None:
            return cached
        available = resources.by_type[type_url]
        chosen = sorted(available) if not names else [n for n in names if n in available]
        nonce = f"{SHORT[type_url]}-{version}-{abs(hash(names)) % 10**8}"
        body = bytes(DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce,
                                       resources=[Any(type_url=type_url, value=available[n]) for n in chosen]))
        if len(self.responses) > 4096:
            self.responses.clear()
        self.responses[key] = (nonce, body)
        return nonce, body

    def publish(self, view: ServiceView) -> None:
        """The plane's hand-over (``ViewSink``): a new view of one service. Its own lock: the
        deciding thread never waits behind a snapshot being built."""
        with self.dirty_lock:
            self.views[view.service] = view
            self.dirty.add(view.service)
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
                knows, generation = known
        self.ledger.acked(node, type_url, version, knows, generation)
