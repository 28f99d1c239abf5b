"""Lightweight ADS clients for benchmarks/xds.py: N streams in one asyncio process, each
subscribing to the Rollway filter config (ECDS) and ACKing every response at once.

Run by benchmarks/xds.py as separate processes: python xds_clients.py HOST:PORT N [NODE-ID-PREFIX]
It prints "ready" once every stream holds a config, then runs until killed.
"""

import asyncio
import random
import sys

import grpc

from rollway.xds.wire import DiscoveryRequest, parse_response

EXTENSION = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


def first_request(index: str) -> bytes:
    request = DiscoveryRequest(type_url=EXTENSION, resource_names=["rollway"])
    request.node.id, request.node.cluster = f"bench-{index}", "web"
    request.node.metadata.fields["listen_port"].number_value = 10000
    return request.SerializeToString()


async def client(channel, index: str, ready: asyncio.Event, counter: list[int], total: int) -> None:
    first = True
    while True:   # like Envoy: a stream that fails is opened again after a short backoff
        call = channel.stream_stream(METHOD, request_serializer=bytes, response_deserializer=parse_response)()
        try:
            await call.write(first_request(index))
            async for response in call:
                ack = DiscoveryRequest(type_url=EXTENSION, resource_names=["rollway"],
                                       version_info=response.version_info, response_nonce=response.nonce)
                await call.write(ack.SerializeToString())
                if first:
                    first = False
                    counter[0] += 1
                    if counter[0] == total:
                        ready.set()
        except grpc.aio.AioRpcError:
            pass
        await asyncio.sleep(0.2 + random.random() * 0.3)


async def main(target: str, n: int, prefix: str = "") -> None:
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(max(1, n // 100))]
    ready = asyncio.Event()
    counter = [0]
    tasks = [asyncio.ensure_future(client(channels[i % len(channels)], f"{prefix}{i}", ready, counter, n))
             for i in range(n)]
    await ready.wait()
    print("ready", flush=True)
    await asyncio.gather(*tasks)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4]))
