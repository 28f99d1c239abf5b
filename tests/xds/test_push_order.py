"""Make before break, per cluster, on the wire: the order in which one ADS stream is sent a
push's clusters, endpoints and filter config, read by a client that subscribes as Envoy
does (CDS wildcard, then EDS for the clusters it was given, the filter config by ECDS) and
ACKs everything.

Envoy applies each response as it comes. Endpoints that leave a version with no host taking
requests, applied before the filter config that stops routing there, answer that version's
requests "503 no healthy upstream" until the filter config comes (the demo found it when a
drain marked a version's last hosts DRAINING); a filter config routing to a version before
its endpoints came would do the same the other way round."""

from __future__ import annotations

import asyncio
import json
import threading

import grpc
from envoy_data_plane.envoy.config.cluster.v3 import Cluster
from envoy_data_plane.envoy.config.core.v3 import HealthStatus, Node
from envoy_data_plane.envoy.config.endpoint.v3 import ClusterLoadAssignment
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from envoy_data_plane.google.protobuf import Struct, Value

from rollway.envoy import bootstrap as ec
from rollway.sources.member_formats import DRAINING
from rollway.sources.serverset import member_json
from rollway.xds.consistency import served_filter_config
from rollway.xds.resources import CLUSTER, ENDPOINT, EXTENSION

from conftest import wait_for
from harness import Replica

METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
PATH = "/discovery/web/prod"


class OrderedClient:
    """One ADS stream, as Envoy subscribes and ACKs; ``events`` is what it was sent, in order:
    ("eds", {cluster: hosts taking requests}) and ("ecds", {version: cluster} it routes to)."""

    def __init__(self, target: str):
        self.target = target
        self.events: list[tuple[str, dict[str, object]]] = []
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self._run(), self.loop)

    async def _run(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            call = channel.stream_stream(METHOD, request_serializer=bytes,
                                         response_deserializer=DiscoveryResponse.parse)()
            node = Node(id="ordered-1", cluster="web",
                        metadata=Struct(fields={"listen_port": Value(number_value=10000)}))
            await call.write(DiscoveryRequest(node=node, type_url=CLUSTER, resource_names=[]))
            await call.write(DiscoveryRequest(type_url=EXTENSION, resource_names=[ec.FILTER_NAME]))
            names: dict[str, list[str]] = {CLUSTER: [], EXTENSION: [ec.FILTER_NAME], ENDPOINT: []}
            last: dict[str, tuple[str, str]] = {}
            async for response in call:
                self._record(response)
                last[response.type_url] = (response.version_info, response.nonce)
                await call.write(DiscoveryRequest(type_url=response.type_url, resource_names=names[response.type_url],
                                                  version_info=response.version_info, response_nonce=response.nonce))
                if response.type_url == CLUSTER:
                    clusters = sorted(Cluster.parse(r.value).name for r in response.resources)
                    if clusters != names[ENDPOINT]:      # Envoy asks for the new clusters' endpoints
                        names[ENDPOINT] = clusters
                        version, nonce = last.get(ENDPOINT, ("", ""))
                        await call.write(DiscoveryRequest(type_url=ENDPOINT, resource_names=clusters,
                                                          version_info=version, response_nonce=nonce))

    def _record(self, response: DiscoveryResponse) -> None:
        if response.type_url == ENDPOINT:
            serving = {}
            for resource in response.resources:
                assignment = ClusterLoadAssignment.parse(resource.value)
                serving[assignment.cluster_name] = sorted(
                    e.endpoint.address.socket_address.port_value for group in assignment.endpoints
                    for e in group.lb_endpoints if e.health_status != HealthStatus.DRAINING)
            event: tuple[str, dict[str, object]] = ("eds", serving)
        elif response.type_url == EXTENSION:
            config = served_filter_config({EXTENSION: {ec.FILTER_NAME: response.resources[0].value}})
            event = ("ecds", {v.name: v.cluster for s in config.rolling_stages() for v in s.versions
                              if v.capacity > 0})
        else:
            return
        with self.lock:
            self.events.append(event)

    def seen(self) -> list[tuple[str, dict[str, object]]]:
        with self.lock:
            return list(self.events)

    def close(self) -> None:
        self.task.cancel()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def first(events, kind: str, test) -> int:
    return next((i for i, (k, body) in enumerate(events) if k == kind and test(body)), -1)


def test_a_version_drained_away_leaves_the_filter_config_before_its_hosts_stop_taking_requests(tmp_path):
    replica = Replica(f"file://{tmp_path}/store", api=False, debounce=0.01)
    client = None
    try:
        replica.plane.push({"service": "web", "stages": [{"name": "prod", "weight": 1, "mode": "rolling",
                                                          "serverset": PATH}]}, 0, "test", "start")
        replica.announce(PATH, member_json("127.0.0.1", 9001, "v1"))
        client = OrderedClient(f"127.0.0.1:{replica.xds.port}")
        wait_for(lambda: first(client.seen(), "ecds", lambda b: "v1" in b) >= 0, timeout=20,
                 what="a filter config routing to v1")

        # Make: v2's hosts take requests in what the client holds before a filter config routes there.
        replica.announce(PATH, member_json("127.0.0.1", 9002, "v2"))
        wait_for(lambda: first(client.seen(), "ecds", lambda b: "v2" in b) >= 0, timeout=20,
                 what="a filter config routing to v2")
        events = client.seen()
        v2 = events[first(events, "ecds", lambda b: "v2" in b)][1]["v2"]
        assert 0 <= first(events, "eds", lambda b: b.get(v2)) < first(events, "ecds", lambda b: "v2" in b), events

        # Break: v1's last host marked DRAINING (a drain's first step). The filter config that
        # routes no more to v1 comes before the endpoints that leave v1 no host taking requests.
        v1 = events[first(events, "ecds", lambda b: "v1" in b)][1]["v1"]
        (name, data), = [(n, d) for n, d in replica.store.read_members(PATH).items() if b'"v1"' in d]
        doc = json.loads(data)
        doc["status"] = DRAINING
        replica.store.set_member(PATH, name, json.dumps(doc).encode())
        wait_for(lambda: first(client.seen(), "eds", lambda b: v1 in b and not b[v1]) >= 0, timeout=20,
                 what="endpoints with v1's host DRAINING")
        events = client.seen()
        drained = first(events, "eds", lambda b: v1 in b and not b[v1])
        left = first(events, "ecds", lambda b: "v1" not in b and "v2" in b)
        assert 0 <= left < drained, events
    finally:
        if client is not None:
            client.close()
        replica.close()
