"""The xDS server: state-of-the-world ADS (LDS, RDS, CDS, EDS, ECDS) over grpc.aio.

State apart from transport, as in go-control-plane:

- ``SnapshotCache`` holds, per (service, listener port), the current ``Resources`` with
  content-derived versions per type, and per connected Envoy what it was sent and what it
  ACKed. It also decides *admission*: a version new to a rolling stage is first announced
  (``admitted: false``: Envoys keep sessions that already want it but send no new ones) and
  admitted only once every connected Envoy of the service has ACKed a filter config that
  contains it, so no Envoy can send back a session another one moved.
- ``AdsServicer`` runs one stream per Envoy: it answers subscriptions, records ACK/NACK
  (a NACK is logged with Envoy's error and counted; the Envoy keeps its previous config and
  is not sent the rejected version again) and pushes a type only when its version changed:
  endpoint churn moves EDS and ECDS, never the listener.

Usage::

    xds = XdsServer(plane)             # plane: rollway.state.ControlPlane
    port = await xds.start(port=18000)
"""

from __future__ import annotations

import asyncio
import copy
import logging
import threading
import time
from dataclasses import dataclass, field

import grpc
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest, DiscoveryResponse
from envoy_data_plane.google.protobuf import Any

from rollway.model.admission import AdmissionState, apply_admission, known_versions
from rollway.model.publish import endpoints_by_cluster
from rollway.plane.control_plane import ControlPlane, NotFound
from rollway.xds.resources import EXTENSION, TYPES, ConsistencyError, Resources, build_resources

log = logging.getLogger(__name__)
ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
SHORT = {t: t.rsplit(".", 1)[-1] for t in TYPES}


@dataclass
class EnvoyNode:
    node_id: str
    service: str
    listen_port: int
    connected_at: float = field(default_factory=time.time)
    sent: dict[str, tuple[str, str]] = field(default_factory=dict)     # type -> (version, nonce)
    acked: dict[str, str] = field(default_factory=dict)                 # type -> version
    nacks: int = 0
    last_nack: str = ""
    knows: set[tuple[str, str]] = field(default_factory=set)            # (stage, version) in ACKed ECDS
    wake: asyncio.Event | None = None
    admin_port: int = 0                 # from node metadata; 0 when the Envoy did not say
    peer_host: str = "127.0.0.1"
    behind_since: float | None = None   # first send of a version it has not ACKed yet
    last_ack_latency: float = 0.0       # seconds from the last send to its ACK

    def status(self) -> dict:
        return {"node_id": self.node_id, "listen_port": self.listen_port, "connected_at": self.connected_at,
                "acked": {SHORT[t]: v for t, v in self.acked.items()}, "nacks": self.nacks,
                "last_nack": self.last_nack, "admin_port": self.admin_port, "peer_host": self.peer_host,
                "behind_seconds": round(time.time() - self.behind_since, 3) if self.behind_since else 0.0,
                "last_ack_latency": round(self.last_ack_latency, 3)}


class SnapshotCache:
    def __init__(self, plane: ControlPlane):
        self.plane = plane
        self.lock = threading.RLock()
        self.nodes: dict[str, EnvoyNode] = {}
        self.snapshots: dict[tuple[str, int], Resources] = {}
        self.configs: dict[tuple[str, int], dict] = {}   # the filter config inside each snapshot
        self.admitted: dict[str, AdmissionState] = {}
        self.encoded: dict = {}          # canonical JSON -> bytes, shared by all snapshots
        self.responses: dict = {}        # (type, version, names) -> DiscoveryResponse bytes
        self.nack_total = 0
        self.pushes: dict[str, int] = {SHORT[t]: 0 for t in TYPES}   # responses sent, per type
        self.consistency_failures = 0
        # Services whose snapshots must be rebuilt (state changed, or admission may have).
        # Everything else is served from the cached snapshot: a push to 1,000 Envoys builds
        # the snapshot once, not once per stream.
        self.dirty: set[str] = set()
        self.fresh_keys: set[tuple[str, int]] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        plane.add_listener(self._on_plane_change)
        plane.envoy_status = self.envoy_status

    # -- building ------------------------------------------------------------------------

    def _filter_config(self, service: str) -> dict:
        state = self.plane.service(service)
        with state.lock:
            config = copy.deepcopy(state.config)
            endpoints = endpoints_by_cluster(state.routemap, state.views)
            revision = state.record.revision
        # Replicas must build identical resources from identical state: the generation sent
        # to Envoys is the route map revision (shared through the store), not a local counter.
        config["generation"] = revision
        nodes = [n for n in self.nodes.values() if n.service == service]
        apply_admission(config, self.admitted.setdefault(service, AdmissionState()), [n.knows for n in nodes])
        return config, endpoints

    def snapshot(self, service: str, listen_port: int) -> Resources:
        with self.lock:
            key = (service, listen_port)
            current = self.snapshots.get(key)
            if current is not None and service not in self.dirty and key in self.fresh_keys:
                return current
            if service in self.dirty:
                self.dirty.discard(service)
                self.fresh_keys = {k for k in self.fresh_keys if k[0] != service}
            try:
                config, endpoints = self._filter_config(service)
                fresh = build_resources(config, endpoints, listen_port, cache=self.encoded)
            except ConsistencyError as error:
                self.consistency_failures += 1
                log.error("xds: not publishing an inconsistent snapshot for %s: %s", service, error)
                if current is None:
                    raise
                return current
            self.snapshots[key] = fresh
            self.configs[key] = config
            self.fresh_keys.add(key)
            return fresh

    def response(self, type_url: str, resources: Resources, names: tuple[str, ...]) -> tuple[str, bytes]:
        version = resources.versions[type_url]
        key = (type_url, version, names)
        cached = self.responses.get(key)
        if cached is not None:
            return cached
        available = resources.by_type[type_url]
        chosen = sorted(available) if not names else [n for n in names if n in available]
        nonce = f"{SHORT[type_url]}-{version}-{abs(hash(names)) % 10**8}"
        body = bytes(DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce,
                                       resources=[Any(type_url=type_url, value=available[n]) for n in chosen]))
        if len(self.responses) > 4096:
            self.responses.clear()
        self.responses[key] = (nonce, body)
        return nonce, body

    # -- events --------------------------------------------------------------------------

    def _on_plane_change(self, service: str) -> None:
        with self.lock:
            self.dirty.add(service)
        self.wake(service)

    def wake(self, service: str) -> None:
        if self.loop is None:
            return
        with self.lock:
            events = [n.wake for n in self.nodes.values() if n.service == service and n.wake]
        for event in events:
            self.loop.call_soon_threadsafe(event.set)

    def on_ack(self, node: EnvoyNode, type_url: str, version: str) -> None:
        node.acked[type_url] = version
        if all(node.acked.get(t) == sent[0] for t, sent in node.sent.items()):
            if node.behind_since is not None:
                node.last_ack_latency = time.time() - node.behind_since
            node.behind_since = None
        if type_url != EXTENSION:
            return
        key = (node.service, node.listen_port)
        resources = self.snapshots.get(key)
        if resources is None or resources.versions.get(EXTENSION) != version:
            return
        # What this Envoy now holds: every (stage, version) of the filter config it ACKed.
        node.knows = known_versions(self.configs[key])
        state = self.admitted.get(node.service)
        waiting = state is not None and state.waiting(self.configs[key])
        if not waiting:
            return  # nothing awaits admission: this ACK changes no snapshot
        before = self.configs[key]
        self.dirty.add(node.service)
        self.snapshot(node.service, node.listen_port)
        if self.configs[key] != before:
            self.wake(node.service)
        else:
            self.dirty.discard(node.service)

    def envoy_status(self, service: str) -> list[dict]:
        with self.lock:
            return [n.status() for n in self.nodes.values() if n.service == service]


class AdsServicer:
    def __init__(self, cache: SnapshotCache, delays: dict[str, float] | None = None):
        self.cache = cache
        self.delays = delays or {}

    async def stream(self, request_iterator, context):
        cache = self.cache
        node: EnvoyNode | None = None
        wake = asyncio.Event()
        subscriptions: dict[str, tuple[str, ...]] = {}
        pending = asyncio.Queue()

        async def reader():
            async for request in request_iterator:
                await pending.put(request)
            await pending.put(None)

        reading = asyncio.ensure_future(reader())
        get = waiter = None
        try:
            while True:
                get = asyncio.ensure_future(pending.get())
                waiter = asyncio.ensure_future(wake.wait())
                done, _ = await asyncio.wait({get, waiter}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                request = None
                if get in done:
                    request = get.result()
                    if request is None:
                        return
                else:
                    get.cancel()
                wake.clear()
                if request is not None:
                    if node is None:
                        node = self._register(request, context, wake)
                        if node is None:
                            return
                    self._on_request(node, request, subscriptions)
                delay = self.delays.get(node.node_id, 0.0) if node else 0.0
                if delay:
                    await asyncio.sleep(delay)
                for type_url, names in list(subscriptions.items()):
                    message = self._maybe_response(node, type_url, names)
                    if message is not None:
                        yield message
        finally:
            for task in (reading, get, waiter):
                if task is not None:
                    task.cancel()
            if node is not None:
                with cache.lock:
                    if cache.nodes.get(node.node_id) is node:
                        del cache.nodes[node.node_id]
                log.info("xds: %s disconnected", node.node_id)

    def _register(self, request, context, wake) -> EnvoyNode | None:
        if not request.node or not request.node.id:
            log.warning("xds: first request without a node id; closing the stream")
            return None
        meta = request.node.metadata.fields if request.node.metadata else {}
        port_value = meta.get("listen_port")
        listen_port = int(port_value.number_value) if port_value is not None else 10000
        admin_value = meta.get("admin_port")
        node = EnvoyNode(request.node.id, request.node.cluster or "", listen_port, wake=wake,
                         admin_port=int(admin_value.number_value) if admin_value is not None else 0,
                         peer_host=_peer_host(context.peer()))
        with self.cache.lock:
            self.cache.nodes[node.node_id] = node
        log.info("xds: %s connected (service %s, listener :%d)", node.node_id, node.service, listen_port)
        return node

    def _on_request(self, node: EnvoyNode, request, subscriptions: dict) -> None:
        type_url = request.type_url
        if type_url not in TYPES:
            return
        subscriptions[type_url] = tuple(sorted(request.resource_names))
        if not request.response_nonce:
            return  # a (re)subscription: answered below
        sent = node.sent.get(type_url)
        if sent is None or request.response_nonce != sent[1]:
            return  # a stale nonce: superseded by a newer response
        if request.error_detail and (request.error_detail.code or request.error_detail.message):
            node.nacks += 1
            node.last_nack = request.error_detail.message
            self.cache.nack_total += 1
            log.warning("xds: %s NACKed %s version %s: %s", node.node_id, SHORT[type_url], sent[0],
                        request.error_detail.message)
            return
        with self.cache.lock:
            self.cache.on_ack(node, type_url, request.version_info)

    def _maybe_response(self, node: EnvoyNode, type_url: str, names: tuple[str, ...]):
        try:
            resources = self.cache.snapshot(node.service, node.listen_port)
        except NotFound:
            return None
        version = resources.versions[type_url]
        sent = node.sent.get(type_url)
        if sent is not None and sent[0] == version and sent[2:] == (names,):
            return None
        nonce, body = self.cache.response(type_url, resources, names)
        node.sent[type_url] = (version, nonce, names)
        if node.behind_since is None and node.acked.get(type_url) != version:
            node.behind_since = time.time()
        self.cache.pushes[SHORT[type_url]] += 1
        return body


def _peer_host(peer: str) -> str:
    """The host part of a gRPC peer string (``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``)."""
    kind, _, rest = (peer or "").partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]") or "::1"
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return "127.0.0.1"


class XdsServer:
    def __init__(self, plane: ControlPlane, *, delays: dict[str, float] | None = None):
        self.cache = SnapshotCache(plane)
        self.servicer = AdsServicer(self.cache, delays)
        self.server: grpc.aio.Server | None = None

    async def start(self, port: int, host: str = "127.0.0.1") -> int:
        self.cache.loop = asyncio.get_running_loop()
        self.server = grpc.aio.server(options=[("grpc.max_concurrent_streams", 100000)])
        handler = grpc.method_handlers_generic_handler(
            "envoy.service.discovery.v3.AggregatedDiscoveryService",
            {"StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self.servicer.stream, request_deserializer=DiscoveryRequest.parse,
                response_serializer=lambda body: body)})
        self.server.add_generic_rpc_handlers((handler,))
        bound = self.server.add_insecure_port(f"{host}:{port}")
        await self.server.start()
        log.info("xds: ADS listening on %s:%d", host, bound)
        return bound

    async def stop(self, grace: float = 0.5) -> None:
        if self.server is not None:
            await self.server.stop(grace)


class XdsThread:
    """Runs an XdsServer on its own asyncio loop in a background thread (for `rollway serve`
    and tests, whose control plane is thread-based)."""

    def __init__(self, plane: ControlPlane, port: int, host: str = "127.0.0.1",
                 delays: dict[str, float] | None = None):
        self.xds = XdsServer(plane, delays=delays)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.port = self.loop.run_until_complete(self.xds.start(port, host))
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="rollway-xds", daemon=True)
        self.thread.start()
        if not started.wait(30):
            raise RuntimeError("xDS server did not start")

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.xds.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


__all__ = ["XdsServer", "XdsThread", "SnapshotCache", "EnvoyNode"]
