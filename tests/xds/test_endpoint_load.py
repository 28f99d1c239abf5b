"""What is open to each app host (issue 29): Envoy's per-endpoint load reports read off the
wire, kept per Envoy as its latest word, carried across replicas in the fleet records; and
a draining host published to Envoy as DRAINING, its cluster kept while it drains."""

from __future__ import annotations

import json

import pytest
from envoy_data_plane.envoy.service.load_stats.v3 import LoadStatsRequest

from rollway.model.endpoint_load import EndpointLoad
from rollway.model.publication import draining_by_cluster
from rollway.model.routemap import parse_routemap
from rollway.plane.fleet_records import FleetView, decode_reports, encode_reports
from rollway.sources.serverset import build_view, member_json
from rollway.xds.health import FRESH_REPORT, MAX_ENDPOINTS, LoadBook
from rollway.xds.resources import assignment_dict, cluster_dict
from rollway.xds.wire import parse_load_stats

pytestmark = [pytest.mark.unit]


def test_the_in_progress_count_per_endpoint_is_read_off_envoys_wire_format():
    report = LoadStatsRequest.from_dict({"node": {"id": "edge-1"}, "cluster_stats": [
        {"cluster_name": "web.prod.v1", "upstream_locality_stats": [
            {"total_successful_requests": 7, "total_requests_in_progress": 3, "total_issued_requests": 9,
             "upstream_endpoint_stats": [
                 {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 8080}},
                  "total_requests_in_progress": 2, "total_successful_requests": 4},
                 {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 8080}},
                  "total_requests_in_progress": 1}]}]}]})
    parsed = parse_load_stats(bytes(report))
    locality = parsed.cluster_stats[0].upstream_locality_stats[0]
    assert (locality.total_successful_requests, locality.total_issued_requests) == (7, 9)
    assert [(e.address.socket_address.address, e.address.socket_address.port_value, e.total_requests_in_progress)
            for e in locality.upstream_endpoint_stats] == [("10.0.0.1", 8080, 2), ("10.0.0.2", 8080, 1)]


def test_each_envoys_latest_report_counts_until_it_is_stale_or_its_stream_ends():
    book = LoadBook()
    book.report("e1", [("web.prod.v1", "10.0.0.1", 80, 2), ("api.prod.a1", "10.0.0.9", 80, 5)], now=100.0)
    book.report("e2", [("web.prod.v1", "10.0.0.1", 80, 1), ("web.prod.v1", "10.0.0.2", 80, 0)], now=100.0)
    load = book.snapshot({"web.prod.v1"}, now=101.0)
    assert load.open == {("10.0.0.1", 80): 3} and load.reported == {"e1", "e2"}   # api's not web's
    book.report("e1", [], now=102.0)                       # replaced, not summed over time
    assert book.snapshot({"web.prod.v1"}, now=102.5).open == {("10.0.0.1", 80): 1}
    stale = book.snapshot({"web.prod.v1"}, now=100.0 + FRESH_REPORT + 0.5)
    assert stale.reported == {"e1"} and stale.open == {}   # e2's word is too old to trust
    book.forget("e1")
    assert book.snapshot({"web.prod.v1"}, now=102.5).reported == {"e2"}


def test_a_report_is_bounded_in_endpoints_and_counts():
    book = LoadBook()
    book.report("e1", [("c", "10.0.0.1", p, 10 ** 12) for p in range(1, MAX_ENDPOINTS + 50)], now=0.0)
    load = book.snapshot({"c"}, now=0.0)
    assert len(load.open) == MAX_ENDPOINTS and max(load.open.values()) == 1_000_000


def test_fleet_records_carry_each_replicas_open_requests_and_only_its_own_envoys_word():
    from rollway.plane.fleet_records import EnvoyReport

    own = {"e1": EnvoyReport("e1", "r1", True)}
    data = encode_reports("r1", own, None, EndpointLoad({("10.0.0.1", 80): 2}, frozenset({"e1", "e9"})))
    record = decode_reports(data)
    assert record.load.open == {("10.0.0.1", 80): 2}
    assert record.load.reported == {"e1"}                  # e9 is not r1's Envoy: its word is not r1's to give
    doc = json.loads(data)
    doc["open"] = [["10.0.0.1", 80, 10 ** 12]] * 5000
    clamped = decode_reports(json.dumps(doc).encode()).load
    assert clamped.open[("10.0.0.1", 80)] == 10 ** 9
    fleet = FleetView()
    fleet.set_load("r1", record.load)
    fleet.set_load("r2", EndpointLoad({("10.0.0.1", 80): 1, ("10.0.0.2", 80): 4}, frozenset({"e2"})))
    assert fleet.load() == EndpointLoad({("10.0.0.1", 80): 3, ("10.0.0.2", 80): 4}, frozenset({"e1", "e2"}))
    fleet.drop_replica("r2")
    assert fleet.load().open == {("10.0.0.1", 80): 2}


def test_a_draining_member_leaves_capacity_and_is_published_draining_in_its_cluster():
    routemap = parse_routemap(json.dumps({"service": "web", "stages": [
        {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/prod"}]}))
    view = build_view("/d/prod", {"member_1": member_json("10.0.0.1", 80, "v1"),
                                  "member_2": member_json("10.0.0.2", 80, "v1", status="STOPPING"),
                                  "member_3": member_json("10.0.0.3", 80, "v2", status="STOPPING"),
                                  "member_4": member_json("10.0.0.4", 80, "v2", status="DEAD")})
    assert view.capacity == {"v1": 1.0} and view.draining == {"v1": (("10.0.0.2", 80),), "v2": (("10.0.0.3", 80),)}
    draining = draining_by_cluster(routemap, {"prod": view})
    assert draining == {"web.prod.v1": (("10.0.0.2", 80),), "web.prod.v2": (("10.0.0.3", 80),)}
    eds = assignment_dict("web.prod.v1", view.endpoints["v1"], draining["web.prod.v1"])["endpoints"][0]["lb_endpoints"]
    assert [(e["endpoint"]["address"]["socket_address"]["address"], e.get("health_status")) for e in eds] == \
        [("10.0.0.1", None), ("10.0.0.2", "DRAINING")]
    assert cluster_dict("web.prod.v1")["common_lb_config"] == {"healthy_panic_threshold": {"value": 0.0}}


def test_a_version_drained_away_keeps_its_cluster_while_its_hosts_drain():
    from rollway.model.publication import build_filter_config
    from rollway.xds.consistency import CLUSTER, ENDPOINT
    from rollway.xds.resources import build_resources

    routemap = parse_routemap(json.dumps({"service": "web", "stages": [
        {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/prod"}]}))
    view = build_view("/d/prod", {"member_1": member_json("10.0.0.1", 80, "v2"),
                                  "member_2": member_json("10.0.0.2", 80, "v1", status="STOPPING")})
    config = build_filter_config(routemap, {"prod": view}, {}, 1)
    assert config.picked_clusters() == {"web.prod.v2"}          # v1 routes nobody any more
    endpoints = {"web.prod.v2": list(view.endpoints["v2"])}
    kept = build_resources(config, endpoints, 10000, draining=draining_by_cluster(routemap, {"prod": view}))
    assert set(kept.by_type[CLUSTER]) == set(kept.by_type[ENDPOINT]) == {"web.prod.v1", "web.prod.v2"}
    gone = build_resources(config, endpoints, 10000)
    assert set(gone.by_type[CLUSTER]) == {"web.prod.v2"}        # drained and removed: the cluster goes
