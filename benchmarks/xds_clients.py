"""Lightweight ADS clients for benchmarks/xds.py: N streams in one asyncio process, each
subscribing to the Rollway filter config (ECDS) and ACKing every response at once.

Run by benchmarks/xds.py as a separate process: python xds_clients.py HOST:PORT N
It prints "ready" once every stream holds a config, then runs until killed.
"""

import asyncio
import sys

import grpc
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import (
    DiscoveryRequest,
    DiscoveryResponse,
)
from envoy_data_plane.google.protobuf import Struct, Value

EXTENSION = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


async def client(channel, index: int, ready: asyncio.Event, counter: list[int], total: int) -> None:
    call = channel.stream_stream(METHOD, request_serializer=bytes, response_deserializer=DiscoveryResponse.parse)()
    node = Node(id=f"bench-{index}", cluster="web",
                metadata=Struct(fields={"listen_port": Value(number_value=10000)}))
    await call.write(DiscoveryRequest(node=node, type_url=EXTENSION, resource_names=["rollway"]))
    first = True
    async for response in call:
        await call.write(DiscoveryRequest(type_url=EXTENSION, resource_names=["rollway"],
                                          version_info=response.version_info, response_nonce=response.nonce))
        if first:
            first = False
            counter[0] += 1
            if counter[0] == total:
                ready.set()


async def main(target: str, n: int) -> None:
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(max(1, n // 100))]
    ready = asyncio.Event()
    counter = [0]
    tasks = [asyncio.ensure_future(client(channels[i % len(channels)], i, ready, counter, n)) for i in range(n)]
    await ready.wait()
    print("ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
