"""Lightweight ADS clients for benchmarks/xds.py: N streams in one asyncio process, each
subscribing to the Rollway filter config (ECDS) and ACKing every response at once.

Run by benchmarks/xds.py as separate processes: python xds_clients.py HOST:PORT N [NODE-ID-PREFIX]
It prints "ready" once every stream holds a config, then runs until SIGTERM or SIGINT (or, if
its standard input is a pipe, until that closes), when it closes every stream and exits.

Exiting cleanly means closing the channels while the loop still runs: grpc.aio delivers each
call's completion to the loop that made the call, and one still open when that loop closes
(asyncio.run returning with a stream failing in a way nobody caught, or an interrupt)
prints an "Event loop is closed" traceback from PollerCompletionQueue._handle_events for
every such event: thousands at thousands of streams.
"""

import asyncio
import os
import random
import signal
import stat
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
        except (grpc.aio.AioRpcError, grpc.aio.UsageError, asyncio.InvalidStateError):
            # Refused or reset (opening thousands at once, gRPC's overload protection refuses
            # some), or written after the server ended it: opened again, as Envoy would.
            call.cancel()
        await asyncio.sleep(0.2 + random.random() * 0.3)


async def main(target: str, n: int, prefix: str = "") -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch_stdin = stat.S_ISFIFO(os.fstat(sys.stdin.fileno()).st_mode)   # a pipe from the parent
    if watch_stdin:
        loop.add_reader(sys.stdin.fileno(), lambda: os.read(sys.stdin.fileno(), 4096) or stop.set())  # EOF: it is gone
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(max(1, n // 100))]
    ready = asyncio.Event()
    counter = [0]
    tasks = [asyncio.ensure_future(client(channels[i % len(channels)], f"{prefix}{i}", ready, counter, n))
             for i in range(n)]
    failed = asyncio.gather(*tasks)        # done only if a task raises what it does not retry
    waiting = asyncio.ensure_future(ready.wait())
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([waiting, stopping, failed], return_when=asyncio.FIRST_COMPLETED)
        if waiting.done() and not stopping.done() and not failed.done():
            print("ready", flush=True)
            await asyncio.wait([stopping, failed], return_when=asyncio.FIRST_COMPLETED)
        if failed.done():
            failed.result()
    finally:
        if watch_stdin:
            loop.remove_reader(sys.stdin.fileno())
        for future in [*tasks, failed, waiting, stopping]:
            future.cancel()
        await asyncio.gather(*tasks, failed, waiting, stopping, return_exceptions=True)
        # Every call ends while the loop runs: none is left for grpc to complete on a closed loop.
        await asyncio.gather(*(channel.close() for channel in channels), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), *sys.argv[3:4]))
