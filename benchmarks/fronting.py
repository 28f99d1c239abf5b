"""One edge, many apps: the control plane's cost of Envoys that front many services.

Run: make bench-fronting   (or: .venv/bin/python benchmarks/fronting.py [--rounds 20])

A control plane (embedded store) holds S services, each with a rolling stage and two hosts;
100 Envoy-like ADS clients each front all S services (node metadata ``services``): they
subscribe to listeners, routes, clusters, the endpoints of every cluster they were sent, and
the filter config, and ACK every response, as Envoy does. One service's serverset changes
(a host joins, then leaves); we time from the store write to the moment every one of the
100 Envoys has ACKed that service's new endpoints and filter config (the versions the
deploy gate compares), p50/p99 over the rounds; and the control plane's resident memory
once everything is connected, above the same process before the replica started.

The peer, same run: the same with S = 1 (100 Envoys fronting that one service, as before
issue 27). Each configuration runs in its own process, so one's memory does not count in
the other's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENVOYS = 100
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
EXTENSION = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


# -- the Envoy-like clients (a separate process) ---------------------------------------------

async def envoy_client(channel, index: int, services: list[str], ready: asyncio.Event, counter: list[int]) -> None:
    import grpc
    from envoy_data_plane.envoy.config.cluster.v3 import Cluster
    from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryResponse

    from rollway.xds.wire import DiscoveryRequest

    def request(type_url: str, names=(), version: str = "", nonce: str = "", first: bool = False) -> bytes:
        r = DiscoveryRequest(type_url=type_url, resource_names=list(names), version_info=version,
                             response_nonce=nonce)
        if first:
            r.node.id = f"edge-{index}"
            if len(services) == 1:
                r.node.cluster = services[0]
            else:
                r.node.cluster = "rollway-edge"
                r.node.metadata.fields["services"].list_value.extend(services)
            r.node.metadata.fields["listen_port"].number_value = 10000
        return r.SerializeToString()

    first_seen = True
    while True:
        call = channel.stream_stream(METHOD, request_serializer=bytes, response_deserializer=bytes)()
        names = {LISTENER: (), CLUSTER: (), ROUTE: ("rollway",), EXTENSION: ("rollway",)}
        try:
            await call.write(request(LISTENER, first=True))
            for type_url in (CLUSTER, ROUTE, EXTENSION):
                await call.write(request(type_url, names[type_url]))
            async for raw in call:
                response = DiscoveryResponse.parse(raw)
                if response.type_url == CLUSTER:
                    clusters = sorted(Cluster.parse(r.value).name for r in response.resources)
                    await call.write(request(CLUSTER, (), response.version_info, response.nonce))
                    if tuple(clusters) != names.get(ENDPOINT):
                        names[ENDPOINT] = tuple(clusters)
                        await call.write(request(ENDPOINT, clusters))
                    continue
                await call.write(request(response.type_url, names.get(response.type_url, ()),
                                         response.version_info, response.nonce))
                if response.type_url == EXTENSION and first_seen:
                    first_seen = False
                    counter[0] += 1
                    if counter[0] == ENVOYS:
                        ready.set()
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.2 + random.random() * 0.3)


async def run_clients(target: str, services: list[str]) -> None:
    import grpc

    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1),
                                                           ("grpc.max_receive_message_length", 64 << 20)])
                for _ in range(10)]
    ready, counter = asyncio.Event(), [0]
    tasks = [asyncio.ensure_future(envoy_client(channels[i % 10], i, services, ready, counter))
             for i in range(ENVOYS)]
    await ready.wait()
    print("ready", flush=True)
    await asyncio.gather(*tasks)


# -- one configuration (its own process) ------------------------------------------------------

def one(services: int, rounds: int) -> dict:
    from rollway.server import ControlPlaneServer, PlaneOptions, ServerOptions
    from rollway.sources.serverset import member_json
    from rollway.xds.resources import ENDPOINT as EDS
    from rollway.xds.resources import EXTENSION as ECDS

    names = [f"app{i:02d}" for i in range(services)]
    work = Path(tempfile.mkdtemp(prefix="rollway-fronting-"))
    before = rss_mib()
    replica = ControlPlaneServer.start(ServerOptions(f"file://{work}/store", PlaneOptions(debounce=0.01),
                                                     api_port=None, xds_port=0))
    plane, store, cache = replica.plane, replica.store, replica.xds.xds.cache
    handles = []
    for i, name in enumerate(names):
        doc = {"service": name, "domains": [f"{name}.example.test"],
               "stages": [{"name": "prod", "weight": 1, "mode": "rolling", "serverset": f"/d/{name}"}]}
        plane.push(json.dumps(doc), 0, "bench", "bench")
        for host in range(2):
            handles.append(store.announce(f"/d/{name}", member_json(f"10.0.{i}.{host + 1}", 8080, "v1")))
    clients = subprocess.Popen([sys.executable, __file__, "--clients", f"127.0.0.1:{replica.xds.port}", *names],
                               stdout=subprocess.PIPE, text=True)
    changed = names[len(names) // 2]

    def everyone_acked() -> bool:
        gated = cache.gated_versions(changed)
        if gated is None:
            return False
        want = {EDS: gated[1], ECDS: gated[2]}
        with cache.ledger.lock:
            entries = [n for (s, _), n in cache.ledger.nodes.items() if s == changed]
        return len(entries) == ENVOYS and all(n.acked.get(t) == v for n in entries for t, v in want.items())

    try:
        line = clients.stdout.readline()
        assert line.strip() == "ready", line
        deadline = time.monotonic() + 60
        while not everyone_acked():
            if time.monotonic() > deadline:
                raise RuntimeError("the Envoys never settled")
            time.sleep(0.05)
        memory = rss_mib() - before
        times = []
        extra = None
        for r in range(rounds):
            previous = cache.gated_versions(changed)
            start = time.perf_counter()
            if extra is None:
                extra = store.announce(f"/d/{changed}", member_json(f"10.9.0.{r % 200 + 1}", 8080, "v1"))
            else:
                extra.close()
                extra = None
            deadline = time.monotonic() + 60
            # The change must reach the cache (new versions), then every Envoy ACKs it.
            while cache.gated_versions(changed) == previous or not everyone_acked():
                if time.monotonic() > deadline:
                    raise RuntimeError(f"round {r}: not every Envoy ACKed")
                time.sleep(0.002)
            times.append(time.perf_counter() - start)
            time.sleep(0.2)
        return {"services": services, "envoys": ENVOYS, "p50_ms": round(percentile(times, 50) * 1000, 1),
                "p99_ms": round(percentile(times, 99) * 1000, 1), "rss_mib": round(memory, 1),
                "pushes": dict(cache.pushes)}
    finally:
        clients.kill()
        clients.wait()
        clients.stdout.close()
        for handle in handles:
            handle.close()
        replica.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--clients", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clients:
        asyncio.run(run_clients(args.clients[0], args.clients[1:]))
        return
    if args.one is not None:
        print(json.dumps(one(args.one, args.rounds)), flush=True)
        return
    results = {}
    for services in (args.services, 1):
        done = subprocess.run([sys.executable, __file__, "--one", str(services), "--rounds", str(args.rounds)],
                              capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            sys.exit(f"the {services}-service run failed:\n{done.stderr[-3000:]}")
        results[services] = json.loads(done.stdout.strip().splitlines()[-1])
    many, single = results[args.services], results[1]
    print(f"{ENVOYS} Envoys, one service's serverset change -> every Envoy ACKed ({args.rounds} changes):")
    print(f"  {args.services} services on every Envoy: p50 {many['p50_ms']} ms, p99 {many['p99_ms']} ms; "
          f"control plane memory {many['rss_mib']} MiB")
    print(f"  peer, 1 service on every Envoy:      p50 {single['p50_ms']} ms, p99 {single['p99_ms']} ms; "
          f"control plane memory {single['rss_mib']} MiB")
    print(json.dumps({"many": many, "single": single}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
