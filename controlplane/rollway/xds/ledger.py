"""The ACK ledger: per connected Envoy, what it was sent, what it ACKed, and whether it is
still in the quorum. It only records; what follows from an ACK reaches the control plane
through one callback, ``on_report(service, {node_id: EnvoyReport | None})``, the way
go-control-plane hands ACKs to the application.

Liveness: an Envoy that has not ACKed what it was sent within ``ack_timeout`` (silent,
NACKing, or stuck) is stale and leaves the quorum until it ACKs again. An Envoy whose stream
drops stays, as disconnected, for the same timeout: it still routes on its last config.
A stale Envoy is logged once, when it turns stale.

Usage::

    ledger = AckLedger(on_report, ack_timeout=30)
    node = ledger.connect(node_id, service, listen_port, ...)
    ledger.sent(node, type_url, version, nonce, names)
    ledger.acked(node, type_url, version, knows, generation)   # ECDS: what the config holds
    ledger.check_liveness()                                    # every second
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from rollway.envoy.edge import EdgeOptions
from rollway.plane.fleet_records import EnvoyReport
from rollway.xds.resources import (
    CLUSTER,
    DEFAULT_LISTEN_ADDRESS,
    ENDPOINT,
    EXTENSION,
    TYPES,
    ListenerSpec,
    content_version,
)

log = logging.getLogger(__name__)
EMPTY_VERSION = content_version({})   # the version of no resources: what an unsubscribed Envoy holds
SHORT = {t: t.rsplit(".", 1)[-1] for t in TYPES}
# What the deploy gate compares, by content version: the same on every replica and every
# listener port for the same inputs (the listener and route do not depend on deploys).
GATED = (CLUSTER, ENDPOINT, EXTENSION)
Report = Callable[[str, "dict[str, EnvoyReport | None]"], None]


class Wake(Protocol):
    """A stream's wake-up (rollway.xds.server's ``_Wake``)."""

    def set(self) -> None: ...


@dataclass
class EnvoyNode:
    node_id: str
    service: str
    listen_port: int
    connected_at: float = field(default_factory=time.time)
    sent: dict[str, tuple] = field(default_factory=dict)        # type -> (version, nonce, names)
    acked: dict[str, str] = field(default_factory=dict)         # type -> version
    nacks: int = 0
    last_nack: str = ""
    knows: frozenset = frozenset()                              # keys of the filter config it ACKed
    generation: int = 0                                         # generation of that config
    wake: Wake | None = None            # the stream's wake-up: ``set()`` on the loop's thread
    admin_port: int = 0                 # from node metadata; 0 when the Envoy did not say
    listen_address: str = DEFAULT_LISTEN_ADDRESS   # from node metadata
    edge: EdgeOptions = EdgeOptions()               # from node metadata
    peer_host: str = "127.0.0.1"
    behind_since: float | None = None   # first send of a version it has not ACKed yet
    last_ack_latency: float = 0.0       # seconds from the last send to its ACK
    disconnected_at: float | None = None
    last_ack_at: float = 0.0            # any ACK: progress, for staleness
    stale: str = ""                     # why it left the quorum; "" while in it
    stale_since: float = 0.0

    behind: set = field(default_factory=set)   # types whose last send it has not ACKed
    clusters: set = field(default_factory=set)  # the CDS clusters of the last snapshot it was offered
    offered: object = field(default=None, repr=False, compare=False)   # the snapshot's cluster map they came from
    warm: set = field(default_factory=set)      # clusters whose endpoints it has ACKed (EDS)
    serving: frozenset = frozenset()            # clusters the last endpoints sent give a host taking requests

    @property
    def listener(self) -> ListenerSpec:
        # One object per node: the snapshot cache's lookups then hit by identity.
        spec = self.__dict__.get("_listener")
        if spec is None or spec.port != self.listen_port:
            spec = self.__dict__["_listener"] = ListenerSpec(self.listen_port, self.listen_address, self.edge)
        return spec

    @property
    def caught_up(self) -> bool:
        return not self.behind

    def status(self) -> dict:
        now = time.time()
        return {"node_id": self.node_id, "listen_port": self.listen_port,
                "listen_address": self.listen_address, "connected_at": self.connected_at,
                "connected": self.disconnected_at is None,
                "acked": {SHORT[t]: v for t, v in self.acked.items()}, "nacks": self.nacks,
                "last_nack": self.last_nack, "admin_port": self.admin_port, "peer_host": self.peer_host,
                "behind_seconds": round(now - self.behind_since, 3) if self.behind_since else 0.0,
                "last_ack_latency": round(self.last_ack_latency, 6), "generation": self.generation,
                "stale": self.stale, "stale_since": self.stale_since}


class AckLedger:
    """``on_report(service, {node_id: EnvoyReport | None})`` hears of every change. With
    ``defer`` (the event loop's ``call_soon``), changes made during one turn of the loop go
    out as one batch: a push to 5,000 streams costs a few calls into the control plane, not
    10,000."""

    def __init__(self, on_report: Report, *, replica: str, ack_timeout: float = 30.0,
                 defer: Callable[[Callable[[], None]], object] | None = None):
        self.on_report, self.replica, self.ack_timeout = on_report, replica, ack_timeout
        self.defer = defer
        self.lock = threading.RLock()
        # One entry per (service, node id): an Envoy that fronts several services is in
        # each one's quorum on its own (rollway.xds.fronting), so one service's NACK or lag
        # holds only that service.
        self.nodes: dict[tuple[str, str], EnvoyNode] = {}
        self._services_of: dict[str, set[str]] = {}     # node id -> services it has entries for
        self.nack_total = 0
        self.stale_total = 0
        self._outbox: dict[str, dict[str, EnvoyReport | None]] = {}   # service -> node -> report

    def report(self, node: EnvoyNode) -> EnvoyReport:
        return EnvoyReport(node.node_id, self.replica, node.disconnected_at is None, node.knows, node.generation,
                           node.caught_up, node.stale,
                           node.stale_since if node.stale else (node.disconnected_at or node.connected_at),
                           node.nacks, tuple(node.acked.get(t, "") for t in GATED))

    def _tell(self, node: EnvoyNode, report: EnvoyReport | None | Literal[True] = True) -> None:
        report = self.report(node) if report is True else report
        if self.defer is None:
            self.on_report(node.service, {node.node_id: report})
            return
        if not self._outbox:
            self.defer(self._flush)
        self._outbox.setdefault(node.service, {})[node.node_id] = report

    def _flush(self) -> None:
        outbox, self._outbox = self._outbox, {}
        for service, reports in outbox.items():
            self.on_report(service, reports)

    def connect(self, *members: EnvoyNode) -> None:
        """One stream's entries: the node, or one per service it fronts (same node id)."""
        if not members:
            return
        node_id = members[0].node_id
        gone: list[EnvoyNode] = []
        with self.lock:
            services = self._services_of.setdefault(node_id, set())
            for service in services - {m.service for m in members}:
                # The id fronts other services now: gone from the ones it left.
                old = self.nodes.pop((service, node_id), None)
                if old is not None:
                    gone.append(old)
            services.clear()
            for node in members:
                # Until it ACKs a filter config, an Envoy is behind: one that never subscribes
                # to it, or never ACKs, leaves the quorum after the ACK timeout instead of
                # holding every admission with an empty set of known versions.
                node.behind.add(EXTENSION)
                node.behind_since = node.behind_since or time.time()
                self.nodes[(node.service, node_id)] = node
                services.add(node.service)
        for old in gone:
            self._tell(old, None)
        for node in members:
            self._tell(node)

    def has_node(self, node_id: str) -> bool:
        """Whether ``node_id`` has (or recently had) an ADS stream here."""
        with self.lock:
            return node_id in self._services_of

    def disconnect(self, node: EnvoyNode) -> None:
        with self.lock:
            if self.nodes.get((node.service, node.node_id)) is not node:
                return                                  # reconnected meanwhile: the new stream counts
            node.disconnected_at = time.time()
        self._tell(node)

    def _forget(self, node: EnvoyNode) -> bool:
        """Drops a disconnected entry (the caller holds the lock); False if it was replaced."""
        key = (node.service, node.node_id)
        if self.nodes.get(key) is not node:
            return False
        del self.nodes[key]
        services = self._services_of.get(node.node_id)
        if services is not None:
            services.discard(node.service)
            if not services:
                del self._services_of[node.node_id]
        return True

    @staticmethod
    def _reported(node: EnvoyNode) -> tuple:
        return node.knows, node.generation, node.caught_up, node.stale

    def sent(self, node: EnvoyNode, type_url: str, version: str, nonce: str, names: tuple) -> None:
        node.sent[type_url] = (version, nonce, names)
        if node.acked.get(type_url) != version:
            was_caught_up = not node.behind
            node.behind.add(type_url)
            if node.behind_since is None:
                node.behind_since = time.time()
            if was_caught_up:                   # behind again: the deploy gate must wait for it
                self._tell(node)

    def unsubscribed(self, node: EnvoyNode, type_url: str) -> None:
        """The Envoy asks for no resources of ``type_url`` (EDS after its last cluster went):
        it holds the empty set, which is what the gate compares, and is owed no ACK."""
        node.sent.pop(type_url, None)
        node.acked[type_url] = EMPTY_VERSION
        node.behind.discard(type_url)
        if node.caught_up:
            node.behind_since = None
        self._tell(node)

    def nacked(self, node: EnvoyNode, type_url: str, message: str) -> None:
        node.nacks += 1
        node.last_nack = message
        self.nack_total += 1
        log.warning("xds: %s NACKed %s version %s%s: %s", node.node_id, SHORT[type_url],
                    node.sent.get(type_url, ("?",))[0], f" (service {node.service})", message)

    def acked(self, node: EnvoyNode, type_url: str, version: str, knows: frozenset | None = None,
              generation: int | None = None) -> None:
        """Records an ACK; ``knows``/``generation`` describe the filter config of an ECDS ACK."""
        before = self._reported(node)
        node.acked[type_url] = version
        sent = node.sent.get(type_url)
        if sent is not None and sent[0] == version:
            node.behind.discard(type_url)
        if knows is not None:
            node.knows, node.generation = knows, generation or 0
        # Progress: staleness counts from the last ACK that moved it forward, so an Envoy
        # that keeps up with changes arriving faster than one round trip is never called
        # stale. While its filter config is behind (NACKed, say), only that counts.
        if EXTENSION not in node.behind:
            node.last_ack_at = time.time()
        if node.caught_up:
            if node.behind_since is not None:
                node.last_ack_latency = time.time() - node.behind_since
            node.behind_since = None
            if node.stale:
                log.info("xds: %s ACKed again; back in the quorum", node.node_id)
                node.stale, node.stale_since = "", 0.0
        if self._reported(node) != before:
            self._tell(node)

    def check_liveness(self, now: float | None = None) -> None:
        """Marks Envoys stale that are behind or gone for longer than the ACK timeout, and
        forgets disconnected ones after twice that."""
        now = time.time() if now is None else now
        with self.lock:
            nodes = list(self.nodes.values())
        for node in nodes:
            reason = ""
            if node.disconnected_at is not None:
                if now - node.disconnected_at > 2 * self.ack_timeout:
                    with self.lock:
                        forgotten = self._forget(node)
                    if forgotten:
                        self._tell(node, None)
                    continue
                if now - node.disconnected_at > self.ack_timeout:
                    reason = f"disconnected for more than {self.ack_timeout:g}s"
            elif node.behind_since is not None and now - max(node.behind_since, node.last_ack_at) > self.ack_timeout:
                reason = (f"NACKed ({node.last_nack[:120]})" if node.nacks and node.last_nack
                          else f"no ACK for {self.ack_timeout:g}s")
            if reason and not node.stale:
                node.stale, node.stale_since = reason, now
                self.stale_total += 1
                log.warning("xds: %s is stale and leaves the quorum: %s", node.node_id, reason)
                self._tell(node)

    def envoy_status(self, service: str) -> list[dict]:
        with self.lock:
            return [n.status() for n in self.nodes.values() if n.service == service]
