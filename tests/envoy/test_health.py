"""Per-version health reaches the control plane from real Envoys (issue 28, the guard's
input): Envoy's load reports (LRS, on the same link as ADS) carry each cluster's completed
and failed requests, and the replica sums them per (stage, version)."""

from __future__ import annotations

import json

import grpc
import pytest
from envoy_data_plane.envoy.service.load_stats.v3 import LoadStatsRequest

from rollway.envoy import bootstrap as ec
from rollway.model.guard import Health
from rollway.sources.serverset import member_json
from rollway.xds.health import MAX_COUNT, HealthBook

from conftest import wait_for
from envoy_harness import EnvoyProcess, FailingBackend, free_port
from harness import Replica

pytestmark = [pytest.mark.envoy]


def test_each_versions_requests_and_5xx_reach_the_control_plane_from_envoys_load_reports(tmp_path):
    replica = Replica(f"file://{tmp_path}/store", api=False)
    app = FailingBackend("v1", 30)
    envoy = None
    try:
        replica.plane.push(json.dumps({"service": "web", "stages": [
            {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/web"}]}), 0, "alice", "web")
        replica.announce("/d/web", member_json("127.0.0.1", app.port, "v1"))
        listen, admin = free_port(), free_port()
        envoy = EnvoyProcess(ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=replica.xds.port, node_id="edge-1",
                                              listen_port=listen, admin_port=admin), tmp_path, listen, admin).start()
        cache = replica.xds.xds.cache

        def v1() -> Health:
            return cache.version_health("web").get(("prod", "v1"), Health(0, 0))

        # Envoy starts counting a cluster for its load reports at the first report period after
        # the cluster appears (requests before that are not reported: at most one interval's
        # worth of a new version's first traffic). Warm up until v1 is counted, then let a
        # report pass with no traffic, so everything after is reported and nothing before is.
        wait_for(lambda: envoy.get("/").status in (200, 500) and v1().requests > 0, timeout=30,
                 what="the Envoy routing, and v1 in its load reports")
        reports = cache.health.reports
        wait_for(lambda: cache.health.reports >= reports + 2, timeout=30, what="two more load reports")
        before = v1()
        statuses = [envoy.get("/").status for _ in range(300)]
        assert set(statuses) == {200, 500}
        failed = statuses.count(500)
        # Every request the Envoy completed, and every 500, counted once (a 500 is not retried).
        wait_for(lambda: v1() == Health(before.requests + 300, before.errors + failed), timeout=30,
                 what=f"300 more requests, {failed} failed, in the load reports")
    finally:
        if envoy is not None:
            envoy.stop()
        app.close()
        replica.close()


def test_load_reports_from_a_node_without_an_ads_stream_are_refused(tmp_path):
    replica = Replica(f"file://{tmp_path}/store", api=False)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{replica.xds.port}")
        call = channel.stream_stream("/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats",
                                     request_serializer=bytes, response_deserializer=bytes)
        report = LoadStatsRequest.from_dict({"node": {"id": "stranger"}, "cluster_stats": [
            {"cluster_name": "web.prod.v1", "upstream_locality_stats": [{"total_error_requests": "1000"}]}]})
        with pytest.raises(grpc.RpcError) as refused:
            list(call(iter([bytes(report)]), timeout=10))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert replica.xds.xds.cache.health.totals() == {}
        channel.close()
    finally:
        replica.close()


def test_load_reports_faster_than_an_envoy_sends_them_are_dropped(tmp_path):
    """A node with an ADS stream may report, but no faster than every REPORT_INTERVAL / 2:
    a client flooding reports is parsed once per interval, the rest dropped and counted."""
    from ads_client import AdsClient

    replica = Replica(f"file://{tmp_path}/store", api=False)
    client = None
    try:
        replica.plane.push(json.dumps({"service": "web", "stages": [
            {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/d/web"}]}), 0, "alice", "web")
        replica.announce("/d/web", member_json("127.0.0.1", 9, "v1"))
        cache = replica.xds.xds.cache
        wait_for(lambda: cache.serves_cluster("web.prod.v1"), timeout=30, what="web's config")
        client = AdsClient(f"127.0.0.1:{replica.xds.port}", "flooder").start()
        wait_for(lambda: cache.ledger.has_node("flooder"), timeout=30, what="the client's ADS stream")
        report = LoadStatsRequest.from_dict({"node": {"id": "flooder"}, "cluster_stats": [
            {"cluster_name": "web.prod.v1", "upstream_locality_stats": [
                {"total_successful_requests": "10", "total_error_requests": "10"}]}]})
        channel = grpc.insecure_channel(f"127.0.0.1:{replica.xds.port}")
        call = channel.stream_stream("/envoy.service.load_stats.v3.LoadReportingService/StreamLoadStats",
                                     request_serializer=bytes, response_deserializer=bytes)
        responses = call(iter([bytes(report)] * 200), timeout=10)
        assert len(list(responses)) == 1                  # asked once for every cluster
        assert cache.health.totals() == {"web.prod.v1": Health(20, 10)}     # the first report only
        assert cache.health.throttled == 199
        channel.close()
    finally:
        if client is not None:
            client.stop()
        replica.close()


@pytest.mark.unit
def test_a_report_is_bounded_and_names_only_served_clusters():
    book = HealthBook(known=lambda name: name.startswith("web."))
    book.add("e1", [("web.prod.v1", 100, 30), ("attacker.cluster", 10**9, 10**9), ("web.prod.v2", 10**12, 10**13),
                    ("web.prod.v1", 0, 5)])
    assert book.totals() == {"web.prod.v1": Health(100, 30), "web.prod.v2": Health(MAX_COUNT, MAX_COUNT)}
    assert book.dropped_clusters == 1
    book.forget(lambda name: name != "web.prod.v2")
    assert book.totals() == {"web.prod.v1": Health(100, 30)}
