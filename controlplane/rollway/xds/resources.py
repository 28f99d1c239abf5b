"""xDS resources for one service, built from the control plane's state, as protobufs
(envoy-data-plane) serialized once per snapshot.

Each Envoy (node.cluster = the service it fronts; node.metadata: listen_address,
listen_port and edge options for its listener) gets: one listener with the Rollway filter (its config over ECDS) and the router, the
route (cluster picked by Rollway's cluster specifier for the service), one EDS cluster per
(stage, version) and blue-green slot, their endpoints, and the filter config.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

# Registering the message types used inside Any (typed_config) with betterproto2.
import envoy_data_plane.envoy.extensions.filters.http.dynamic_modules.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.http.router.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.filters.network.http_connection_manager.v3  # noqa: F401
import envoy_data_plane.envoy.extensions.retry.host.previous_hosts.v3  # noqa: F401
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.core.v3 import TypedExtensionConfig
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.listener.v3 import Listener
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

import rollway.envoy.specifier_proto  # noqa: F401  (the route's cluster specifier)
from rollway.envoy import bootstrap as ec
from rollway.envoy.edge import EdgeOptions
from rollway.model.filter_config import FilterConfig
from rollway.xds.consistency import (
    CLUSTER,
    ENDPOINT,
    EXTENSION,
    LISTENER,
    ROUTE,
    ConsistencyError,
    check_snapshot,
)

__all__ = [
    "CLUSTER",
    "ENDPOINT",
    "EXTENSION",
    "LISTENER",
    "ROUTE",
    "TYPES",
    "ConsistencyError",
    "EncodeCache",
    "ListenerSpec",
    "Resources",
    "build_resources",
]
TYPES = (LISTENER, ROUTE, CLUSTER, ENDPOINT, EXTENSION)
ROUTE_NAME = "rollway"
ADS = {"ads": {}, "resource_api_version": "V3"}
DEFAULT_LISTEN_ADDRESS = "0.0.0.0"    # an Envoy that does not say where to listen: everywhere
CACHE_LIMIT = 4096                    # encoded resources kept for reuse (EncodeCache)


@dataclass(frozen=True)
class Resources:
    """name -> serialized resource, per type; and a version per type derived from content,
    so every replica that sees the same state announces the same versions. ``routed`` and
    ``serving`` order a push (``XdsServer._ordered``): the clusters the filter config sends
    requests to, and the clusters whose endpoints include one that takes new requests."""
    by_type: dict[str, dict[str, bytes]]
    versions: dict[str, str]
    routed: frozenset[str] = frozenset()
    serving: frozenset[str] = frozenset()


def content_version(resources: dict[str, bytes]) -> str:
    digest = hashlib.sha256()
    for name in sorted(resources):
        digest.update(name.encode() + b"\0" + resources[name] + b"\0")
    return digest.hexdigest()[:16]


def listener_dict(listen_port: int, address: str = DEFAULT_LISTEN_ADDRESS, edge: EdgeOptions | None = None) -> dict:
    rollway_filter = {"name": ec.FILTER_NAME, "config_discovery": {"config_source": ADS,
                                                                    "type_urls": [ec.FILTER_TYPE]}}
    return ec.ingress_listener(address, listen_port, rollway_filter,
                               {"rds": {"config_source": ADS, "route_config_name": ROUTE_NAME}}, edge)


def cluster_dict(name: str, edge: EdgeOptions | None = None) -> dict:
    # No panic routing: with most of a version's hosts DRAINING (a drain batch), Envoy's
    # default (50 %) would spread new requests over the draining hosts too.
    return {"name": name, "type": "EDS", "connect_timeout": "1s",
            "eds_cluster_config": {"eds_config": ADS, "service_name": name}, **(edge or EdgeOptions()).cluster(),
            **ec.UPSTREAM_RESILIENCE, "common_lb_config": {"healthy_panic_threshold": {"value": 0.0}}}


def assignment_dict(name: str, endpoints: Sequence[tuple[str, int, float]],
                    draining: Sequence[tuple[str, int]] = ()) -> dict:
    """The cluster's endpoints, and the ones being drained as DRAINING: Envoy sends them no
    new request and keeps counting (and reporting) what is still open to them."""
    serving = {(h, p) for h, p, _ in endpoints}
    return {"cluster_name": name, "endpoints": [{"lb_endpoints": [
        {"endpoint": {"address": {"socket_address": {"address": h, "port_value": p}}},
         "load_balancing_weight": max(1, int(round(w)))} for h, p, w in endpoints] + [
        {"endpoint": {"address": {"socket_address": {"address": h, "port_value": p}}},
         "health_status": "DRAINING"} for h, p in draining if (h, p) not in serving]}]}


@dataclass(frozen=True)
class ListenerSpec:
    """What an Envoy asks for its own listener, from its node metadata. A key of the
    snapshot cache, looked up several times per response: its hash is computed once."""
    port: int = 10000
    address: str = DEFAULT_LISTEN_ADDRESS
    edge: EdgeOptions = EdgeOptions()
    _hash: int = field(init=False, repr=False, compare=False)   # set by __post_init__

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.port, self.address, self.edge)))

    def __hash__(self) -> int:
        return self._hash


class EncodeCache:
    """Serialized resources by content, shared by every snapshot and listener port, so an
    unchanged resource is not serialized again: the ``limit`` most recently used (a live
    resource is used by every build, so only what no snapshot serves any more ages out).
    Keyed by a 16-byte digest of the document, not the document: a key was as large as its
    resource, and under serverset churn every change left ~2.4 KB behind until 20,000
    entries (~48 MB) cleared at once (issue 30)."""

    def __init__(self, limit: int = CACHE_LIMIT):
        self.limit = limit
        self._items: OrderedDict[bytes, bytes] = OrderedDict()

    def get(self, key: bytes) -> bytes | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.limit:
            self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


def _digest(text: str) -> bytes:
    return hashlib.blake2b(text.encode(), digest_size=16).digest()


def encode_cached(cache: EncodeCache, kind, doc: dict) -> bytes:
    """``doc`` as the protobuf ``kind``, serialized; from ``cache`` when the same document was
    encoded lately."""
    key = _digest(kind.__name__ + json.dumps(doc, sort_keys=True))
    value = cache.get(key)
    if value is None:
        value = bytes(kind.from_dict(doc))
        cache.put(key, value)
    return value


def fronted_route(placements, cache: EncodeCache, own: ec.OwnRoutes | None = None) -> bytes:
    """The route table of an Envoy that fronts several services (rollway.xds.fronting), with
    the routes of its own it carries in its metadata."""
    return encode_cached(cache, RouteConfiguration, ec.services_route_config(
        placements, by_name=True, name=ROUTE_NAME, extra_routes=own.routes if own else None,
        extra_virtual_hosts=own.virtual_hosts if own else ()))


def fronted_extension(texts: Sequence[str], cache: EncodeCache) -> bytes:
    """The one filter config (ECDS) of an Envoy that fronts several services: each service's
    config text, in service order."""
    return encode_cached(cache, TypedExtensionConfig, {
        "name": ec.FILTER_NAME,
        # The services' texts as they are (each already the JSON the filter parses), not
        # parsed and written again: ``bootstrap.services_filter_config``'s document.
        "typed_config": ec.filter_typed_config('{"services": [' + ", ".join(texts) + "]}", by_name=True)})


def build_resources(filter_config: FilterConfig, endpoints: Mapping[str, Sequence], listener: int | ListenerSpec,
                    cache: EncodeCache | None = None, draining: Mapping[str, Sequence] | None = None) -> Resources:
    """All resources for one service and listener (a port, or a ListenerSpec). ``cache``
    keeps resources already serialized (EncodeCache), so unchanged ones are not
    serialized again. The route's cluster
    specifier names the service; the module goes by name: the Envoy's host resolves it."""
    cache = EncodeCache() if cache is None else cache
    spec = listener if isinstance(listener, ListenerSpec) else ListenerSpec(port=listener)

    def encode(kind, doc: dict) -> bytes:
        return encode_cached(cache, kind, doc)

    draining = draining or {}
    # A version being drained away may have left the filter config: its cluster stays while
    # its hosts drain, so the requests still open to them end normally and are reported.
    clusters = sorted(filter_config.picked_clusters() | set(draining))
    by_type = {
        LISTENER: {"rollway_ingress": encode(Listener, listener_dict(spec.port, spec.address, spec.edge))},
        ROUTE: {ROUTE_NAME: encode(RouteConfiguration, ec.route_config(filter_config.service, ROUTE_NAME,
                                                                       by_name=True))},
        CLUSTER: {name: encode(Cluster, cluster_dict(name, spec.edge)) for name in clusters},
        ENDPOINT: {name: encode(ClusterLoadAssignment, assignment_dict(name, endpoints.get(name, []),
                                                                       draining.get(name, ())))
                   for name in clusters},
        EXTENSION: {ec.FILTER_NAME: encode(TypedExtensionConfig, {
            "name": ec.FILTER_NAME, "typed_config": ec.filter_typed_config(filter_config.to_text(), by_name=True)})},
    }
    versions = {t: content_version(r) for t, r in by_type.items()}
    # Decoded back and compared as Envoy will read it (rollway.xds.consistency), once per
    # content: snapshots for other listener ports differ only in the listener.
    checked = _digest("consistent" + "".join(versions[t] for t in (ROUTE, CLUSTER, ENDPOINT, EXTENSION)))
    if cache.get(checked) is None:
        check_snapshot(by_type, ROUTE_NAME)
        cache.put(checked, b"")
    return Resources(by_type, versions, filter_config.routed_clusters(),
                     frozenset(name for name in clusters if endpoints.get(name)))
