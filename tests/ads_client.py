"""A raw ADS client for tests: one stream that subscribes to the Rollway filter config
(ECDS) and then ACKs, NACKs, or stays silent, as a broken or hostile client would.

    client = AdsClient("127.0.0.1:18000", "silent-1", mode="silent").start()
    client.responses        # DiscoveryResponses received
    client.stop()
"""

from __future__ import annotations

import asyncio
import threading

import grpc
from envoy_data_plane.envoy.config.core.v3 import Node
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from envoy_data_plane.google.protobuf import Struct, Value
from envoy_data_plane.google.rpc import Status

EXTENSION = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"
METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


class AdsClient:
    def __init__(self, target: str, node_id: str, mode: str = "ack", service: str = "web",
                 listen_port: float | str = 10000, type_url: str = EXTENSION):
        assert mode in ("ack", "nack", "silent")
        self.target, self.node_id, self.mode, self.service = target, node_id, mode, service
        self.listen_port, self.type_url = listen_port, type_url
        self.closed = False
        self.responses: list[DiscoveryResponse] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.task = None

    async def _run(self) -> None:
        async with grpc.aio.insecure_channel(self.target) as channel:
            call = channel.stream_stream(METHOD, request_serializer=bytes,
                                         response_deserializer=DiscoveryResponse.parse)()
            # A string listen_port is what a careless or hostile client sends: the server refuses it.
            port = Value(string_value=self.listen_port) if isinstance(self.listen_port, str) \
                else Value(number_value=self.listen_port)
            node = Node(id=self.node_id, cluster=self.service, metadata=Struct(fields={"listen_port": port}))
            await call.write(DiscoveryRequest(node=node, type_url=self.type_url, resource_names=[]))
            async for response in call:
                self.responses.append(response)
                if self.mode == "silent":
                    continue
                error = Status(code=3, message="rejected by a test client") if self.mode == "nack" else None
                await call.write(DiscoveryRequest(
                    type_url=self.type_url, resource_names=[], response_nonce=response.nonce,
                    version_info="" if error else response.version_info, error_detail=error))
            self.closed = True

    def start(self) -> AdsClient:
        self.thread.start()
        self.task = asyncio.run_coroutine_threadsafe(self._run(), self.loop)
        return self

    def stop(self) -> None:
        """Ends the stream and its loop: the task is cancelled and finishes (its channel
        closed) on the loop before the loop stops, or it would be destroyed pending."""
        async def finish() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self.task is not None and self.thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(finish(), self.loop).result(5)
            except Exception:   # a loop that does not finish in time is stopped all the same
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.thread.is_alive():
            self.loop.close()     # else its self-pipe sockets are left for the GC to warn about
