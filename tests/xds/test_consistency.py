"""The snapshot consistency check (rollway.xds.consistency): a snapshot is decoded as Envoy
reads it and compared with what the filter may pick; each way it can be broken is caught."""

from __future__ import annotations

import pytest
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration

from rollway.envoy import bootstrap as ec
from rollway.model.filter_config import FilterConfig
from rollway.xds.consistency import (
    CLUSTER,
    ENDPOINT,
    EXTENSION,
    ROUTE,
    ConsistencyError,
    check_snapshot,
    served_filter_config,
)
from rollway.xds.resources import build_resources

CONFIG = {"service": "web", "generation": 1, "routing_id": {}, "stages": [
    {"name": "prod", "weight": 1, "mode": "rolling", "direction": {"state": "steady"},
     "versions": [{"name": "v1", "capacity": 2, "cluster": "web.prod.v1"},
                  {"name": "v2", "capacity": 1, "cluster": "web.prod.v2"}]}]}
ENDPOINTS = {"web.prod.v1": [("10.0.0.1", 8080, 1), ("10.0.0.2", 8080, 1)], "web.prod.v2": [("10.0.0.3", 8080, 1)]}


def snapshot(config=CONFIG):
    typed = FilterConfig.from_json(config)
    return {t: dict(r) for t, r in build_resources(typed, ENDPOINTS, 10000).by_type.items()}


def test_a_built_snapshot_passes_and_reads_back_to_the_filter_config():
    by_type = snapshot()
    check_snapshot(by_type)
    assert served_filter_config(by_type).to_json() == CONFIG


def test_the_route_picks_the_cluster_with_the_specifier_for_the_filter_configs_service():
    by_type = snapshot()
    other = RouteConfiguration.from_dict(ec.route_config("api", "rollway", by_name=True))
    with pytest.raises(ConsistencyError, match="the route's cluster specifier is for 'api', the filter config for 'web'"):
        check_snapshot({**by_type, ROUTE: {"rollway": bytes(other)}})
    header_route = RouteConfiguration.from_dict({"name": "rollway", "virtual_hosts": [{
        "name": "rollway", "domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster_header": "x-rw-cluster"}}]}]})
    with pytest.raises(ConsistencyError, match="no route picks its cluster with Rollway's cluster specifier for 'web'"):
        check_snapshot({**by_type, ROUTE: {"rollway": bytes(header_route)}})


def test_a_cluster_the_filter_may_pick_without_cds_is_caught():
    by_type = snapshot()
    del by_type[CLUSTER]["web.prod.v2"]
    with pytest.raises(ConsistencyError, match="may pick 'web.prod.v2', which has no CDS cluster"):
        check_snapshot(by_type)


def test_a_cluster_whose_eds_is_not_served_is_caught():
    by_type = snapshot()
    del by_type[ENDPOINT]["web.prod.v1"]
    with pytest.raises(ConsistencyError, match="EDS 'web.prod.v1', which is not served"):
        check_snapshot(by_type)


def test_an_eds_resource_for_another_cluster_is_caught():
    by_type = snapshot()
    by_type[ENDPOINT]["web.prod.v1"] = by_type[ENDPOINT]["web.prod.v2"]
    with pytest.raises(ConsistencyError, match="EDS resource 'web.prod.v1' names another cluster"):
        check_snapshot(by_type)


def test_an_unreadable_filter_config_is_caught():
    by_type = snapshot()
    by_type[EXTENSION] = {}
    with pytest.raises(ConsistencyError, match="cannot be read back"):
        check_snapshot(by_type)
