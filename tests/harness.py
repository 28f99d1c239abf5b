"""The tests' one harness for a control-plane replica: ``rollway.server.ControlPlaneServer``,
the wiring ``rollway serve`` runs, with test defaults (a 20 ms debounce, free ports) and the
members a test announced, closed with it.

Usage::

    replica = Replica(f"file://{tmp_path}/store", token=TOKEN)
    replica.announce("/discovery/web/prod", member_json("127.0.0.1", 9000, "v1"))
    replica.client().Push(...)
    replica.close()
"""

from __future__ import annotations

import grpc

from rollway.proto import routemap_pb2_grpc as pb_grpc
from rollway.server import ControlPlaneServer, PlaneOptions, ServerOptions
from rollway.sources.store import Handle, Store
from rollway.tls import ServerTLS


class Replica:
    def __init__(self, store_url: str, *, api: bool = True, xds: bool = True, xds_port: int = 0,
                 dashboard: bool = False, sample_interval: float = 1.0, token: str | None = None,
                 tls: ServerTLS | None = None, store: Store | None = None, store_options: dict | None = None,
                 host: str = "127.0.0.1", **plane_options):
        options = ServerOptions(store_url, PlaneOptions(**{"debounce": 0.02, **plane_options}),
                                store_options=store_options or {}, api_host=host, api_port=0 if api else None,
                                token=token, tls=tls, xds_port=xds_port if xds else None,
                                http_port=0 if dashboard else None, dashboard_sample_interval=sample_interval)
        self.server = ControlPlaneServer.start(options, store)
        self.store, self.plane = self.server.store, self.server.plane
        self.xds, self.api, self.dashboard = self.server.xds, self.server.api, self.server.dashboard
        self.handles: list[Handle] = []
        self.channels: list[grpc.Channel] = []

    def announce(self, path: str, data: bytes) -> Handle:
        handle = self.store.announce(path, data)
        self.handles.append(handle)
        return handle

    def client(self, channel: grpc.Channel | None = None) -> pb_grpc.RouteMapServiceStub:
        """A client of this replica's operator API (plaintext unless a channel is given)."""
        if channel is None:
            channel = grpc.insecure_channel(f"127.0.0.1:{self.server.api_port}")
        self.channels.append(channel)
        return pb_grpc.RouteMapServiceStub(channel)

    def close(self) -> None:
        for handle in self.handles:
            handle.close()
        for channel in self.channels:
            channel.close()
        self.server.stop()


def fleet_holds(plane, service: str, capacity: dict[str, float] | None = None, envoys: int | None = None) -> bool:
    """``service``'s config names exactly ``capacity`` per version (its rolling stages; None:
    whatever it is), nothing waits for admission, and every Envoy (exactly ``envoys`` of
    them, when given) ACKed it."""
    config = plane.filter_config(service)
    if config is None or any(True for _ in config.announced()):
        return False
    if capacity is not None and {v.name: v.capacity for s in config.rolling_stages() for v in s.versions} != capacity:
        return False
    statuses = plane.fleet_status(service)
    if envoys is not None and len(statuses) != envoys:
        return False
    return all(e["caught_up"] and not e["stale"] and e["generation"] == config.generation for e in statuses)
