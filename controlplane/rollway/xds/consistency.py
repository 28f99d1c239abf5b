"""The snapshot consistency check: decode what a snapshot serves, as Envoy will read it,
and compare it with what the filter may pick.

The route must pick its cluster with Rollway's cluster specifier for the filter config's
service; every cluster the filter may pick must be a CDS cluster; every EDS
cluster's service name must be served as a ClusterLoadAssignment of that name. A snapshot
that breaks any of these would be half-applied by Envoy (requests 503 or routed nowhere),
so the cache withholds it and keeps serving the previous one.

Usage::

    check_snapshot(by_type)      # raises ConsistencyError naming every problem found
"""

from __future__ import annotations

import json

from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.core.v3 import TypedExtensionConfig
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
from envoy_data_plane.envoy.extensions.filters.http.dynamic_modules.v3 import DynamicModuleFilter
from envoy_data_plane.google.protobuf import StringValue

from rollway.envoy import bootstrap as ec
from rollway.envoy.specifier_proto import TYPE_URL as SPECIFIER_TYPE
from rollway.envoy.specifier_proto import DynamicModuleClusterSpecifier
from rollway.model.filter_config import FilterConfig

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
EXTENSION = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"


class ConsistencyError(RuntimeError):
    pass


def served_filter_config(by_type: dict[str, dict[str, bytes]]) -> FilterConfig:
    """The Rollway filter config inside the snapshot's ECDS resource."""
    extension = TypedExtensionConfig.parse(by_type[EXTENSION][ec.FILTER_NAME])
    # build_resources always fills both envelopes; what this check is for is the config inside.
    assert extension.typed_config is not None
    module = DynamicModuleFilter.parse(extension.typed_config.value)
    assert module.filter_config is not None
    return FilterConfig.from_json(json.loads(StringValue.parse(module.filter_config.value).value))


def check_snapshot(by_type: dict[str, dict[str, bytes]], route_name: str = "rollway") -> None:
    problems: list[str] = []
    try:
        config = served_filter_config(by_type)
    except (KeyError, ValueError, TypeError) as error:
        raise ConsistencyError(f"the filter config (ECDS) cannot be read back: {error!r}") from None
    clusters = {name: Cluster.parse(body) for name, body in by_type.get(CLUSTER, {}).items()}
    endpoints = by_type.get(ENDPOINT, {})
    for name in sorted(config.picked_clusters()):
        cluster = clusters.get(name)
        if cluster is None:
            problems.append(f"the filter may pick {name!r}, which has no CDS cluster")
            continue
        if cluster.name != name:
            problems.append(f"CDS resource {name!r} is a cluster named {cluster.name!r}")
        service = (cluster.eds_cluster_config.service_name if cluster.eds_cluster_config else "") or name
        if service not in endpoints:
            problems.append(f"cluster {name!r} takes endpoints from EDS {service!r}, which is not served")
        elif ClusterLoadAssignment.parse(endpoints[service]).cluster_name != service:
            problems.append(f"EDS resource {service!r} names another cluster")

    route = by_type.get(ROUTE, {}).get(route_name)
    if route is None:
        problems.append(f"no route configuration {route_name!r}")
    else:
        specified = False
        for host in RouteConfiguration.parse(route).virtual_hosts:
            for entry in host.routes:
                action = entry.route
                if action is None:
                    continue
                if action.inline_cluster_specifier_plugin is not None:
                    specified_for = _specified_service(action.inline_cluster_specifier_plugin)
                    if specified_for != config.service:
                        problems.append(f"the route's cluster specifier is for {specified_for!r}, "
                                        f"the filter config for {config.service!r}")
                    specified = True
                elif action.cluster and action.cluster not in clusters:
                    problems.append(f"the route names cluster {action.cluster!r}, which has no CDS cluster")
        if not specified:
            problems.append(f"no route picks its cluster with Rollway's cluster specifier for {config.service!r}")
    if problems:
        raise ConsistencyError("; ".join(problems))


def _specified_service(plugin) -> str | None:
    """The service a route's cluster specifier names, or None when it is not Rollway's."""
    extension = plugin.extension
    if extension is None or extension.typed_config is None or extension.typed_config.type_url != SPECIFIER_TYPE:
        return None
    specifier = DynamicModuleClusterSpecifier.parse(extension.typed_config.value)
    if specifier.specifier_config is None:
        return None
    try:
        doc = json.loads(StringValue.parse(specifier.specifier_config.value).value)
    except ValueError:
        return None
    return doc.get("service") if isinstance(doc, dict) else None
