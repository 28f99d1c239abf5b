"""Envoy bootstraps for Rollway: static (no control plane) and ADS (everything over xDS).

The module ``librollway_filter.so`` is two Envoy extensions: the route's cluster specifier
(``inline_cluster_specifier_plugin``), which decides while Envoy resolves the route and names
the cluster, and the HTTP filter, which writes what the decision means (the cluster header
app hosts check, the cookies, the refresh header). No capacity: no cluster is named, and the
route answers 503 ``rollway: no capacity``::

    from rollway.envoy import bootstrap as envoy_config
    doc = envoy_config.static_bootstrap(filter_config, {"web.prod.v1": [("127.0.0.1", 8081)]},
                                        listen_port=10000, admin_port=9901)
    json.dump(doc, open("envoy.json", "w"))     # envoy -c envoy.json
"""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rollway.envoy.edge import EdgeOptions

MODULE_NAME = "rollway_filter"
# The Envoy release the module is built against and the dynamic-module ABI version its
# envoy_dynamic_module_on_program_init returns (filter/rollway_filter.cc kAbiVersion).
ENVOY_VERSION = "1.40.0"
MODULE_ABI_VERSION = "v0.2.0"
FILTER_NAME = "rollway"
FILTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter"
PER_ROUTE_TYPE = "type.googleapis.com/envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilterPerRoute"
HCM_TYPE = ("type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3."
            "HttpConnectionManager")
ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
ECDS_RESOURCE_TYPE = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
SPECIFIER_TYPE = ("type.googleapis.com/envoy.extensions.router.cluster_specifiers.dynamic_modules.v3."
                  "DynamicModuleClusterSpecifier")
STRING_VALUE_TYPE = "type.googleapis.com/google.protobuf.StringValue"
NO_CAPACITY_BODY = "rollway: no capacity\n"
DEFAULT_CLUSTER_HEADER = "x-rw-cluster"
METRICS_NAMESPACE = "rollway"


def filter_library_path() -> str:
    """The installed ``librollway_filter.so``."""
    path = Path(__file__).parent.parent / "_filter" / f"lib{MODULE_NAME}.so"
    if not path.is_file():
        raise FileNotFoundError(f"librollway_filter.so is not installed at {path}; reinstall rollway")
    return str(path)


def module_search_path() -> str:
    """The directory to put in ``ENVOY_DYNAMIC_MODULES_SEARCH_PATH``."""
    return os.path.dirname(filter_library_path())


def envoy_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for running Envoy with the Rollway module on its search path."""
    env = dict(os.environ if base is None else base)
    env["ENVOY_DYNAMIC_MODULES_SEARCH_PATH"] = module_search_path()
    return env


def filter_typed_config(filter_config: Mapping | str, *, by_name: bool = False) -> dict:
    """The DynamicModuleFilter message carrying a Rollway filter config (JSON text).

    The module by absolute path (a bootstrap written on the Envoy's own host: no search
    path needed), or ``by_name``: ``rollway_filter``, which Envoy resolves to
    ``librollway_filter.so`` in ``$ENVOY_DYNAMIC_MODULES_SEARCH_PATH``. The control plane
    sends it by name, since its own install path means nothing on another host."""
    value = filter_config if isinstance(filter_config, str) else json.dumps(filter_config)
    module = _module(by_name)
    return {
        "@type": FILTER_TYPE,
        # Our own stats namespace: counters appear as rollway.<name> (Prometheus:
        # envoy_rollway_<name>_total).
        "dynamic_module_config": {**module, "metrics_namespace": METRICS_NAMESPACE},
        "filter_name": FILTER_NAME,
        "filter_config": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": value},
    }


def ecds_resource(filter_config: Mapping | str) -> dict:
    """The ECDS resource (TypedExtensionConfig) for the filter."""
    return {"@type": ECDS_RESOURCE_TYPE, "name": FILTER_NAME, "typed_config": filter_typed_config(filter_config)}


# A host that vanished without deregistering (a spot loss) stays in the endpoints until
# its ZooKeeper session expires. Requests it never received are safe to send elsewhere:
# retried on a refused or failed connection only (never after a reset, which may have
# reached the app), on another host of the same version (the cluster stays the filter's).
# And 421 Misdirected Request: an Envoy whose endpoints are stale (its link to the control
# plane cut) may still list an address that a deploy has since reused for another version;
# an app host that finds the cluster header naming a version it does not run answers 421
# without acting on the request (README, "Running Rollway across hosts"), and another host
# of the version the session wants serves it.
# No route timeout: Envoy's default (15 s until the whole response) cuts every EventSource
# stream and long download; a hung upstream is still cut by the edge's stream idle timeout
# (300 s without a byte either way; WebSockets are never subject to the route timeout).
STREAMS = {"timeout": "0s"}
RETRY_POLICY = {
    "retry_on": "connect-failure,refused-stream,retriable-status-codes",
    "retriable_status_codes": [421],
    "num_retries": 2,
    "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"}}],
    "host_selection_retry_max_attempts": "3",
}


# Per upstream cluster (static and EDS alike). Retries are limited by a budget (a quarter of
# the requests in flight, at least 20 at once), not by Envoy's default of 3 concurrent
# retries, which a burst of requests to a vanished host overflows into 503s. A host whose
# connections keep failing is ejected for a while (local-origin failures only: an app's
# own 5xx never ejects it), so a spot loss costs seconds of retries, not a ZooKeeper
# session timeout's worth.
UPSTREAM_RESILIENCE = {
    "circuit_breakers": {"thresholds": [{"retry_budget": {"budget_percent": {"value": 25.0},
                                                          "min_retry_concurrency": 20}}]},
    "outlier_detection": {"split_external_local_origin_errors": True, "consecutive_local_origin_failure": 3,
                          "interval": "1s", "base_ejection_time": "10s", "max_ejection_percent": 50},
}


def _module(by_name: bool) -> dict:
    """The module by name (resolved on the Envoy's host) or by this install's path."""
    return {"name": MODULE_NAME} if by_name else \
        {"name": MODULE_NAME, "module": {"local": {"filename": filter_library_path()}}}


def cluster_specifier(service: str, *, by_name: bool = False) -> dict:
    """The route's cluster specifier: Rollway's module deciding for ``service`` while Envoy
    resolves the route. Its config only names the service; the routing config is the one
    the filter config (ECDS) brings."""
    return {"extension": {"name": FILTER_NAME, "typed_config": {
        "@type": SPECIFIER_TYPE, "dynamic_module_config": _module(by_name), "specifier_name": FILTER_NAME,
        "specifier_config": {"@type": STRING_VALUE_TYPE, "value": json.dumps({"service": service})}}}}


def service_route(service: str, match: Mapping, *, by_name: bool = False) -> dict:
    """A route whose cluster Rollway picks for ``service``: retried on another host of the
    same version, no route timeout. A request no version can take gets no cluster, and the
    connection manager's local reply (``NO_CAPACITY``) answers it 503."""
    return {"match": dict(match), "route": {"inline_cluster_specifier_plugin": cluster_specifier(service, by_name=by_name),
                                            "retry_policy": RETRY_POLICY, **STREAMS}}


# The 503 of a request no version can take (the specifier named no cluster: Envoy's "NC"),
# with Rollway's body, as the route's own 503 had before the specifier.
NO_CAPACITY = {"mappers": [{"filter": {"response_flag_filter": {"flags": ["NC"]}}, "status_code": 503,
                            "body": {"inline_string": NO_CAPACITY_BODY}}]}


def route_config(service: str, name: str = "rollway", *, by_name: bool = False) -> dict:
    """One service on every domain and path."""
    return {"name": name, "virtual_hosts": [{"name": "rollway", "domains": ["*"],
                                             "routes": [service_route(service, {"prefix": "/"}, by_name=by_name)]}]}


@dataclass(frozen=True)
class Placement:
    """Where one service lives on an Envoy that fronts several: its host names and path
    prefix (the route map's ``domains`` and ``path_prefix``), and the request header its
    filter config writes the cluster into."""
    service: str
    domains: tuple[str, ...] = ("*",)
    path_prefix: str = "/"
    cluster_header: str = DEFAULT_CLUSTER_HEADER


MAX_OWN_ROUTES = 64 * 1024     # bytes of an Envoy's own routes carried in its node metadata


@dataclass(frozen=True)
class OwnRoutes:
    """Routes Rollway does not own (a health check, a static origin, an app Rollway does not
    roll), in Envoy's JSON: ``{"routes": {DOMAIN: [route, ...]}, "virtual_hosts": [...]}``.
    The routes go first on that domain's virtual host, the virtual hosts after Rollway's;
    the filter leaves them alone. Static bootstraps write them in; an ADS-fed Envoy carries
    them in its node metadata (``own_routes``) and the control plane adds them to its
    route table."""
    text: str                      # canonical JSON: the key the control plane caches by

    @property
    def doc(self) -> dict:
        return json.loads(self.text)

    @property
    def routes(self) -> dict[str, list]:
        return self.doc.get("routes", {})

    @property
    def virtual_hosts(self) -> list[dict]:
        return self.doc.get("virtual_hosts", [])

    @classmethod
    def parse(cls, doc: object) -> OwnRoutes:
        """Raises ValueError naming what is wrong."""
        if isinstance(doc, str):
            if len(doc) > MAX_OWN_ROUTES:
                raise ValueError(f"more than {MAX_OWN_ROUTES} bytes")
            try:
                doc = json.loads(doc)
            except ValueError as error:
                raise ValueError(f"not JSON: {error}") from None
        if not isinstance(doc, dict) or not set(doc) <= {"routes", "virtual_hosts"} \
                or not isinstance(doc.get("routes", {}), dict) or not isinstance(doc.get("virtual_hosts", []), list) \
                or not all(isinstance(r, list) for r in doc.get("routes", {}).values()):
            raise ValueError('must be {"routes": {DOMAIN: [route, ...]}, "virtual_hosts": [virtual host, ...]}')
        text = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        if len(text) > MAX_OWN_ROUTES:
            raise ValueError(f"more than {MAX_OWN_ROUTES} bytes")
        return cls(text)


def route_service_config(service: str, *, by_name: bool = False) -> dict:
    """The per-route config that names a route's service to the filter (an Envoy fronting
    several: the filter tells Rollway's routes from an operator's own by it)."""
    return {"@type": PER_ROUTE_TYPE, "dynamic_module_config": _module(by_name), "filter_name": FILTER_NAME,
            "filter_config": {"@type": STRING_VALUE_TYPE, "value": json.dumps({"service": service})}}


def _service_routes(placement: Placement, by_name: bool) -> list[dict]:
    """A service's route on one domain, with the per-route config naming its service."""
    match: dict[str, object] = {"prefix": "/"} if placement.path_prefix == "/" else \
        {"path_separated_prefix": placement.path_prefix}
    route = service_route(placement.service, match, by_name=by_name)
    route["typed_per_filter_config"] = {FILTER_NAME: route_service_config(placement.service, by_name=by_name)}
    return [route]


def services_route_config(placements: Iterable[Placement], *, by_name: bool = False,
                          extra_routes: Mapping[str, list] | None = None,
                          extra_virtual_hosts: Iterable[dict] = (), name: str = "rollway") -> dict:
    """One route table for an Envoy that fronts several services: a virtual host per
    domain, and on it each service's routes, longest path prefix first; a request for no
    service's domain gets Envoy's own 404. ``extra_routes`` (domain -> Envoy routes) go
    first on that domain's virtual host and ``extra_virtual_hosts`` after Rollway's: routes
    Rollway does not own (a health check, a static origin), which the filter leaves alone."""
    by_domain: dict[str, list[Placement]] = {}
    for placement in placements:
        for domain in placement.domains:
            by_domain.setdefault(domain, []).append(placement)
    extra_routes = dict(extra_routes or {})
    virtual_hosts = []
    for domain in sorted(by_domain, key=lambda d: (d == "*", d)):
        ordered = sorted(by_domain[domain], key=lambda p: (-len(p.path_prefix), p.path_prefix))
        routes = list(extra_routes.pop(domain, []))
        for placement in ordered:
            routes += _service_routes(placement, by_name)
        virtual_hosts.append({"name": domain, "domains": [domain], "routes": routes})
    for domain, routes in extra_routes.items():       # a domain no Rollway service claims
        virtual_hosts.append({"name": domain, "domains": [domain], "routes": list(routes)})
    return {"name": name, "virtual_hosts": virtual_hosts + list(extra_virtual_hosts)}


def services_filter_config(configs: Iterable[Mapping | str]) -> dict:
    """The filter config for several services: ``{"services": [one config each]}``."""
    return {"services": [json.loads(c) if isinstance(c, str) else dict(c) for c in configs]}


def ingress_listener(address: str, port: int, rollway_filter: dict, route: dict,
                     edge: EdgeOptions | None = None) -> dict:
    """The ingress listener: the Rollway filter, then the router, with the edge defaults
    (rollway.envoy.edge). One builder for the static bootstrap and for LDS."""
    edge = edge or EdgeOptions()
    return {
        "name": "rollway_ingress",
        "address": {"socket_address": {"address": address, "port_value": port}},
        **edge.listener(),
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": HCM_TYPE,
                "stat_prefix": "ingress",
                **edge.connection_manager(),
                "local_reply_config": NO_CAPACITY,
                **route,
                "http_filters": [rollway_filter,
                                 {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER_TYPE}}],
            },
        }]}],
    }


def static_cluster(name: str, endpoints: Iterable[tuple[str, int]]) -> dict:
    return {
        "name": name,
        "type": "STATIC",
        "connect_timeout": "1s",
        "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
            for host, port in endpoints
        ]}]},
    }


# Envoy's tag extraction for the filter's per-version counters (rollway.<what>.stage.<S>.
# version.<V>): done once per stat name when the counter is created, never per request. In
# /stats/prometheus they read envoy_rollway_requests{rollway_stage="prod",rollway_version="v2"}
# (likewise reloads and moves), which is what the Grafana dashboard (rollway.ops) plots.
# On an Envoy that fronts several services each service's counters carry its name first
# (rollway.service.<S>.requests...), read as rollway_service.
_COUNTERS = ("requests|reloads|moves|ids_minted|bad_cookies|forward_moves|rollback_moves|tiebreak_kept|"
             "unavailable_moves|refresh_signals|overrides_applied|overrides_rejected|no_capacity|configs_rejected|"
             "moves_not_committed|ids_unavailable|keyed_by_header|decided_in_filter")
STATS_TAGS = [
    {"tag_name": "rollway_service",
     "regex": rf"^rollway\.(service\.(.+?)\.)(?:{_COUNTERS})(?:\.|$)"},
    {"tag_name": "rollway_stage",
     "regex": r"^rollway\.(?:service\..+?\.)?(?:requests|reloads|moves)(\.stage\.(.+?))\.version\."},
    {"tag_name": "rollway_version",
     "regex": r"^rollway\.(?:service\..+?\.)?(?:requests|reloads|moves)\.stage\..+?(\.version\.(.+))$"},
]


def stats_config() -> dict:
    return {"stats_tags": STATS_TAGS}


def _upstream_cluster(name: str, endpoints: Iterable[tuple[str, int]], edge: EdgeOptions) -> dict:
    """A static upstream cluster with the edge's and Rollway's upstream options."""
    return {**static_cluster(name, endpoints), **edge.cluster(), **UPSTREAM_RESILIENCE}


def _admin(admin_port: int, address: str = "127.0.0.1") -> dict:
    return {"address": {"socket_address": {"address": address, "port_value": admin_port}}}


def static_bootstrap(filter_config: Mapping | str, clusters: Mapping[str, Iterable[tuple[str, int]]], *,
                     listen_port: int, admin_port: int, ecds_path: str | None = None,
                     node_id: str = "rollway-static",
                     listen_address: str = "127.0.0.1", admin_address: str = "127.0.0.1",
                     edge: EdgeOptions | None = None, placements: Iterable[Placement] | None = None,
                     extra_routes: Mapping[str, list] | None = None,
                     extra_virtual_hosts: Iterable[dict] = ()) -> dict:
    """Runs with no control plane: filter config inline (or, with ``ecds_path``, from a file
    watched for updates), static clusters. With ``placements`` the Envoy fronts several
    services: ``filter_config`` is ``services_filter_config`` of theirs, and the route table
    is ``services_route_config``."""
    if ecds_path is None:
        rollway_filter = {"name": FILTER_NAME, "typed_config": filter_typed_config(filter_config)}
    else:
        write_ecds_file(ecds_path, filter_config)
        rollway_filter = {"name": FILTER_NAME, "config_discovery": {
            "config_source": {"path_config_source": {"path": ecds_path}, "resource_api_version": "V3"},
            "type_urls": [FILTER_TYPE],
        }}
    edge = edge or EdgeOptions()
    return {
        "node": {"id": node_id, "cluster": "rollway"},  # xDS (ECDS too) requires a node identity
        "admin": _admin(admin_port, admin_address),
        "stats_config": stats_config(),
        "overload_manager": edge.overload_manager(),
        "static_resources": {
            "listeners": [ingress_listener(listen_address, listen_port, rollway_filter, {"route_config": (
                route_config(_service_of(filter_config)) if placements is None else
                services_route_config(placements, extra_routes=extra_routes, extra_virtual_hosts=extra_virtual_hosts))},
                edge)],
            "clusters": [_upstream_cluster(name, eps, edge) for name, eps in clusters.items()],
        },
    }


def _service_of(filter_config: Mapping | str) -> str:
    doc = json.loads(filter_config) if isinstance(filter_config, str) else filter_config
    return str(doc["service"])


def write_ecds_file(path: str, filter_config: Mapping | str, version: str | None = None) -> None:
    """Atomically replaces a file-based ECDS source (Envoy watches it for moves)."""
    doc = {"version_info": version or "0", "resources": [ecds_resource(filter_config)]}
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(doc, handle)
    os.replace(tmp, path)


@dataclass(frozen=True)
class XdsTLS:
    """How an Envoy reaches the control plane over TLS: the CA that signed the replicas'
    certificates, and the Envoy's own certificate and key when the replicas require one.
    Paths on the Envoy's host."""
    ca: str
    cert: str | None = None
    key: str | None = None


def ads_bootstrap(*, xds_host: str, xds_port: int, node_id: str, listen_port: int, admin_port: int,
                  service: str = "web", services: Iterable[str] | None = None,
                  xds_fallback: list[tuple[str, int]] | tuple = (),
                  listen_address: str = "127.0.0.1", admin_address: str = "127.0.0.1",
                  edge: EdgeOptions | None = None, tls: XdsTLS | None = None,
                  own_routes: OwnRoutes | None = None,
                  own_clusters: Mapping[str, Iterable[tuple[str, int]]] | None = None) -> dict:
    """Everything from the control plane over one ADS stream: listener with the filter (its
    config over ECDS), route, clusters (CDS) and endpoints (EDS). The node's ``cluster``
    names the service it fronts; its metadata the address and port its listener binds
    (``listen_address``, ``listen_port``), the edge options that differ from the defaults
    (``edge``), and ``admin_port``, where the control plane's dashboard reads its traffic
    counters (reachable from the control plane's host only when ``admin_address`` is).
    With ``services`` it fronts several: they go in the metadata (``services``), and the
    control plane routes each by its route map's domains and path prefix
    (rollway.xds.fronting); the node's ``cluster`` is then ``rollway-edge``. ``own_routes``
    (routes Rollway does not own) go in the metadata too, the Envoy then counts as fronting
    its services that way whatever their number; their clusters are ``own_clusters``,
    static in this bootstrap.

    ``xds_host:xds_port`` is the replica this Envoy prefers; ``xds_fallback`` lists other
    replicas (a lower priority) that it fails over to when a TCP health check finds the
    preferred one gone. Names are resolved (STRICT_DNS) when any address is not an IP
    literal; HTTP/2 keepalives notice a replica that vanished without closing the stream
    (and the replica's gRPC keepalives notice a vanished Envoy). With ``tls`` the link is TLS, the replica's certificate checked against the CA
    and the replicas' names (an address by its IP SAN)."""
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    edge = edge or EdgeOptions()
    node = _ads_node(node_id, service, services, listen_address, listen_port, admin_port, edge, own_routes)
    return {
        "node": node,
        "admin": _admin(admin_port, admin_address),
        "stats_config": stats_config(),
        "overload_manager": edge.overload_manager(),
        # Load reports (LRS) over the same link: per cluster, so per (stage, version), the
        # requests completed and failed; the control plane's guard judges versions by them.
        "cluster_manager": {"load_stats_config": {
            "api_type": "GRPC", "transport_api_version": "V3", "set_node_on_first_message_only": True,
            "grpc_services": [{"envoy_grpc": {"cluster_name": "rollway_xds"}}]}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                # Envoy's default reconnect backoff grows to 30 s: after a 20 s link cut an
                # Envoy waited 26 s more for its config. At most 3 s between attempts.
                "grpc_services": [{"envoy_grpc": {"cluster_name": "rollway_xds", "retry_policy": {
                    "retry_back_off": {"base_interval": "0.25s", "max_interval": "3s"}}}}],
                "set_node_on_first_message_only": True,
            },
            "lds_config": ads_source,
            "cds_config": ads_source,
        },
        "static_resources": {"clusters": [_xds_cluster([(xds_host, xds_port), *xds_fallback], tls), *(
            _upstream_cluster(name, eps, edge) for name, eps in (own_clusters or {}).items())]},
    }


def _ads_node(node_id: str, service: str, services: Iterable[str] | None, listen_address: str, listen_port: int,
              admin_port: int, edge: EdgeOptions, own_routes: OwnRoutes | None) -> dict:
    """The node an ADS-fed Envoy presents: its id, the service it fronts (``cluster``) or the
    services (metadata), and what the control plane builds its listener from."""
    metadata: dict[str, object] = {"listen_address": listen_address, "listen_port": listen_port,
                                   "admin_port": admin_port}
    if edge.overrides():
        metadata["edge"] = edge.overrides()
    if own_routes is not None and services is None:
        services = [service]
    if services is not None:
        metadata["services"] = list(services)
    if own_routes is not None:
        metadata["own_routes"] = own_routes.text
    return {"id": node_id, "cluster": service if services is None else "rollway-edge", "metadata": metadata}


def _xds_cluster(replicas: list[tuple[str, int]], tls: XdsTLS | None) -> dict:
    """The static cluster reaching the control plane: the preferred replica first, the others
    at a lower priority behind a TCP health check."""
    (xds_host, xds_port), xds_fallback = replicas[0], replicas[1:]

    def endpoint(host: str, port: int) -> dict:
        return {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}

    endpoints = [{"priority": 0, "lb_endpoints": [endpoint(xds_host, xds_port)]}]
    if xds_fallback:
        endpoints.append({"priority": 1, "lb_endpoints": [endpoint(h, p) for h, p in xds_fallback]})
    cluster: dict[str, object] = {
        "name": "rollway_xds",
        "type": "STATIC" if all(_is_ip(h) for h, _ in replicas) else "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {
                    "connection_keepalive": {"interval": "5s", "timeout": "5s"}}},
            },
        },
        "load_assignment": {"cluster_name": "rollway_xds", "endpoints": endpoints},
    }
    if xds_fallback:
        # A refused connection fails at once; a peer that vanished times out. Two failures
        # in a row, so one slow answer under load does not move an Envoy off its replica.
        cluster["health_checks"] = [{"timeout": "2s", "interval": "1s", "unhealthy_threshold": 2,
                                     "healthy_threshold": 1, "tcp_health_check": {}}]
    if cluster["type"] == "STRICT_DNS":
        # A name with both an IPv4 and an IPv6 address (localhost) is reached over IPv4
        # first: a replica bound to an IPv4 address refuses the IPv6 one.
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    if tls is not None:
        cluster["transport_socket"] = _xds_transport_socket(tls, [h for h, _ in replicas])
    return cluster


def _xds_transport_socket(tls: XdsTLS, hosts: list[str]) -> dict:
    """TLS to the replicas: their certificate must chain to ``tls.ca`` and name one of them
    (DNS SAN for a name, IP SAN for an address); ALPN h2 for gRPC."""
    sans = [{"san_type": "IP_ADDRESS" if _is_ip(h) else "DNS", "matcher": {"exact": h}} for h in dict.fromkeys(hosts)]
    common: dict[str, object] = {
        "alpn_protocols": ["h2"],
        "validation_context": {"trusted_ca": {"filename": tls.ca}, "match_typed_subject_alt_names": sans}}
    if tls.cert:
        common["tls_certificates"] = [{"certificate_chain": {"filename": tls.cert},
                                       "private_key": {"filename": tls.key}}]
    # No SNI: one cluster reaches every replica, each with its own name; the SAN list
    # checks whichever answers.
    context = {"@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
               "common_tls_context": common}
    return {"name": "envoy.transport_sockets.tls", "typed_config": context}


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
