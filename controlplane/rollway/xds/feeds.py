"""What one ADS stream serves, and where what its Envoy answers is recorded: the servicer
(rollway.xds.server) speaks the protocol, a feed knows the stream's resources and its
entries in the ACK ledger.

- ``SingleFeed``: an Envoy fronting one service (``node.cluster``): the service's snapshot,
  and the node is its own ledger entry.
- ``FrontingFeed``: an Envoy fronting several (node metadata ``services``): the composed
  snapshot (rollway.xds.fronting), one ledger entry per service, each told only of its own
  service's part of what was sent and ACKed; endpoints sent as what changed since the last
  send (state of the world allows it for EDS: an assignment left out of a response is kept),
  so one service's serverset change re-sends no other service's endpoints.

Usage::

    feed = SingleFeed(cache, node)            # or FrontingFeed(cache, node, services)
    feed.connect()
    resources = feed.resources()              # None while there is nothing to serve
    feed.sent(type_url, version, nonce, names); feed.acked(type_url, version); feed.disconnect()
"""

from __future__ import annotations

from dataclasses import replace

from rollway.envoy.bootstrap import OwnRoutes
from rollway.plane.control_plane import NotFound
from rollway.xds.cache import SnapshotCache
from rollway.xds.fronting import ConfigTrial, FrontedSnapshot
from rollway.xds.ledger import EnvoyNode
from rollway.xds.resources import CLUSTER, ENDPOINT, EXTENSION, Resources


class SingleFeed:
    def __init__(self, cache: SnapshotCache, node: EnvoyNode):
        self.cache, self.node = cache, node
        self.services = (node.service,)
        self._memo: tuple[int, Resources | None] = (-1, None)   # (cache epoch, what it served then)

    def connect(self) -> None:
        self.cache.ledger.connect(self.node)

    def resources(self) -> Resources | None:
        # Asked a few times per message: the cache's answer changes only with a new view
        # (its epoch), so a stream takes the cache's locks once per view, not per message.
        epoch = self.cache.epoch
        if self._memo[0] == epoch:
            return self._memo[1]
        try:
            resources: Resources | None = self.cache.snapshot(self.node.service, self.node.listener)
        except NotFound:
            resources = None
        self._memo = (epoch, resources)
        return resources

    def subset(self, type_url: str, resources: Resources, names: tuple[str, ...]) -> tuple[str, ...] | None:
        return None        # the whole of what is asked for

    def sent(self, type_url: str, version: str, nonce: str, names: tuple[str, ...]) -> None:
        self.cache.ledger.sent(self.node, type_url, version, nonce, names)

    def acked(self, type_url: str, version: str) -> None:
        self.cache.on_ack(self.node, type_url, version)

    def nacked(self, type_url: str, message: str) -> None:
        self.cache.ledger.nacked(self.node, type_url, message)

    def unsubscribed(self, type_url: str) -> None:
        self.cache.ledger.unsubscribed(self.node, type_url)

    def disconnect(self) -> None:
        self.cache.ledger.disconnect(self.node)


class FrontingFeed:
    """``node`` keeps the stream's own bookkeeping (what was sent, warm clusters) and is in
    no service's quorum; ``members`` are its entries in the ledger, one per service."""

    def __init__(self, cache: SnapshotCache, node: EnvoyNode, services: tuple[str, ...],
                 own_routes: OwnRoutes | None = None):
        self.cache, self.node, self.services, self.own_routes = cache, node, services, own_routes
        self.members = {s: replace(node, service=s, sent={}, acked={}, behind=set(), clusters=set(), warm=set())
                        for s in services}
        self.trial = ConfigTrial()
        self._revision = 0                        # of the trial: what the memo below is valid for
        self._memo: tuple | None = None           # (epoch, revision, fronted, chosen, resources)
        self._components: dict[str, dict[str, str]] = {}    # type -> service -> version, as last sent
        self._chosen_sent: dict[str, str] = {}
        self._endpoints_held: dict[str, int] = {}            # assignment name -> hash of what was sent
        # What the last ``resources()`` returned, and so what the response being sent was
        # built from: a view published meanwhile (another thread) must not change what the
        # send records, or an ACK would count for versions the Envoy was never sent.
        self._served: tuple[FrontedSnapshot | None, dict[str, str], Resources | None] = (None, {}, None)

    def connect(self) -> None:
        self.cache.ledger.connect(*self.members.values())

    def _current(self) -> tuple[FrontedSnapshot | None, dict[str, str], Resources | None]:
        epoch = self.cache.epoch
        memo = self._memo
        if memo is not None and memo[0] == epoch and memo[1] == self._revision:
            return memo[2], memo[3], memo[4]
        fronted = self.cache.fronted(self.services, self.node.listener, self.own_routes)
        chosen: dict[str, str] = {}
        resources = None
        if fronted is not None:
            chosen = self.trial.choose(fronted.components[EXTENSION])
            resources = self.cache.fronted_resources(fronted, chosen)
        self._memo = (epoch, self._revision, fronted, chosen, resources)
        return fronted, chosen, resources

    def resources(self) -> Resources | None:
        self._served = self._current()
        return self._served[2]

    def subset(self, type_url: str, resources: Resources, names: tuple[str, ...]) -> tuple[str, ...] | None:
        """Endpoints: only the assignments that changed since they were last sent."""
        if type_url != ENDPOINT:
            return None
        available = resources.by_type[ENDPOINT]
        held = self._endpoints_held
        return tuple(n for n in (names or sorted(available))
                     if n in available and held.get(n) != hash(available[n]))

    def sent(self, type_url: str, version: str, nonce: str, names: tuple[str, ...]) -> None:
        self.node.sent[type_url] = (version, nonce, names)
        fronted, chosen, resources = self._served
        if fronted is None or resources is None or resources.versions.get(type_url) != version:
            return
        if type_url == ENDPOINT:
            available = resources.by_type[ENDPOINT]
            for name in (names or available):
                if name in available:
                    self._endpoints_held[name] = hash(available[name])
            # Only assignments still served: a retired version's go (bounded by the snapshot).
            for gone in [n for n in self._endpoints_held if n not in available]:
                del self._endpoints_held[gone]
        if type_url == EXTENSION:
            self._chosen_sent = dict(chosen)
            current = fronted.components[EXTENSION]
            # A service held back is told nothing: its entry stays behind on the config it
            # was last sent (stale after the ACK timeout, out of that service's quorum).
            components = {s: v for s, v in chosen.items() if current.get(s) == v}
        elif type_url in (CLUSTER, ENDPOINT):
            components = dict(fronted.components[type_url])
        else:
            components = {s: version for s in fronted.services}
        self._components[type_url] = components
        for service, component in components.items():
            self.cache.ledger.sent(self.members[service], type_url, component, nonce, names)

    def acked(self, type_url: str, version: str) -> None:
        self.node.acked[type_url] = version
        sent = self.node.sent.get(type_url)
        if sent is None or sent[0] != version:
            return
        if type_url == EXTENSION:
            self.trial.acked(self._chosen_sent)
            self._revision += 1
        for service, component in self._components.get(type_url, {}).items():
            self.cache.on_ack(self.members[service], type_url, component)

    def nacked(self, type_url: str, message: str) -> None:
        self.node.nacks += 1
        self.node.last_nack = message
        if type_url == EXTENSION:
            blamed = self.trial.nacked(self._chosen_sent, message)
            self._revision += 1
        else:
            blamed = list(self._components.get(type_url, {}))
            if type_url == ENDPOINT:
                self._endpoints_held.clear()        # send them whole again
        for service in blamed:
            self.cache.ledger.nacked(self.members[service], type_url, message)

    def unsubscribed(self, type_url: str) -> None:
        self.node.sent.pop(type_url, None)
        if type_url == ENDPOINT:
            self._endpoints_held.clear()
        for member in self.members.values():
            self.cache.ledger.unsubscribed(member, type_url)

    def disconnect(self) -> None:
        for member in self.members.values():
            self.cache.ledger.disconnect(member)
