"""The ADS server: state-of-the-world ADS (LDS, RDS, CDS, EDS, ECDS) over grpc.aio.

State apart from transport, as in go-control-plane: ``SnapshotCache`` (rollway.xds.cache)
serves the control plane's current snapshot, ``AckLedger`` (rollway.xds.ledger) records
what each Envoy was sent and ACKed and reports it to the control plane. ``AdsServicer``
runs one stream per Envoy: it answers subscriptions, records ACK/NACK (a NACK is logged
with Envoy's error and counted; the Envoy keeps its previous config and is not sent the
rejected version again) and pushes a type only when its version changed: endpoint churn
moves EDS and ECDS, never the listener.

Usage::

    xds = XdsServer(plane)             # plane: rollway.plane.control_plane.ControlPlane
    port = await xds.start(port=18000)
"""

from __future__ import annotations

import asyncio
import gc
import ipaddress
import logging
import threading
import time
from datetime import timedelta

import grpc
from envoy_data_plane.envoy.config.route.v3 import RouteConfiguration
from envoy_data_plane.envoy.service.load_stats.v3 import LoadStatsResponse

from rollway.envoy.bootstrap import OwnRoutes, services_route_config
from rollway.envoy.edge import EdgeOptionError, EdgeOptions
from rollway.inputs import check_node_id, printable
from rollway.plane.control_plane import ControlPlane
from rollway.ports import GRPC_OPTIONS, PortInUse
from rollway.tls import ServerTLS, is_loopback
from rollway.xds.cache import SnapshotCache
from rollway.xds.feeds import FrontingFeed, SingleFeed
from rollway.xds.fronting import MAX_FRONTED
from rollway.xds.health import REPORT_INTERVAL
from rollway.xds.ledger import SHORT, EnvoyNode
from rollway.xds.resources import CLUSTER, DEFAULT_LISTEN_ADDRESS, ENDPOINT, EXTENSION, TYPES, Resources
from rollway.xds.wire import parse_load_stats, parse_request

log = logging.getLogger(__name__)
ADS_METHOD = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"


class AdsServicer:
    def __init__(self, cache: SnapshotCache):
        self.cache = cache

    async def stream(self, request_iterator, context):
        # Two tasks per stream, as few loop steps and objects per message as grpc.aio allows
        # (its reader/writer API: no async generator between a message and the transport).
        # This one (grpc's) writes, and wakes only when something is owed: a new snapshot
        # (``_Wake.set`` from the cache) or a request that asks for one. The reader records
        # each request as it arrives, ACKs included, without a hop to the writer: at 10,000
        # streams a push is 10,000 writes and 10,000 ACKs, and an ACK owes nothing.
        first = await context.read()
        if first is grpc.aio.EOF:
            return
        wake = _Wake()
        feed, refusal = self._register(first, context, wake)
        if feed is None:
            # The reason goes to the Envoy too (its log shows the gRPC status), not only to
            # this server's log.
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, refusal)
            return
        node = feed.node
        subscriptions: dict[str, tuple[str, ...]] = {}

        async def reader():
            try:
                while (request := await context.read()) is not grpc.aio.EOF:
                    try:
                        self._on_request(feed, request, subscriptions)
                        owed = self._owed(feed, subscriptions)
                    except Exception as error:   # ours: the stream ends with it, as if raised there
                        wake.end(error)
                        return
                    if owed:
                        wake.set()
            except Exception as error:   # grpc's: the stream broke (the writer's write fails too)
                log.debug("xds: %s: reading ended: %s", node.node_id, error)
            finally:
                # Closed or broken: what it asked for before is answered, then the stream ends.
                wake.end(wake.ended or "closed")

        reading = None
        try:
            self._on_request(feed, first, subscriptions)
            reading = asyncio.ensure_future(reader())
            loop = asyncio.get_running_loop()
            while True:
                if not wake.pending:
                    wake.waiter = loop.create_future()
                    await wake.waiter
                wake.pending = False
                if isinstance(wake.ended, Exception):
                    raise wake.ended
                for type_url, names in self._ordered(feed, subscriptions):
                    if subscriptions.get(type_url) != names:
                        continue    # changed by a request while a write was under way: next pass
                    message = self._maybe_response(feed, type_url, names, CLUSTER in subscriptions)
                    if message is not None:
                        await context.write(message)
                if wake.ended is not None and not wake.pending:
                    return
        finally:
            if reading is not None:
                reading.cancel()
            feed.disconnect()
            log.info("xds: %s disconnected", node.node_id)

    def _register(self, request, context, wake) -> tuple[Feed | None, str]:
        """The stream's feed, or (None, why it is refused): the id and the services are keys
        in every replica's fleet record and rows in ``rollway status``, so they must be names
        (printable, bounded), and the metadata must have the types the bootstrap writes. An
        Envoy fronting several services lists them in its metadata (``services``); one
        fronting one names it as its ``cluster``."""
        node_id, service = request.node.id, request.node.cluster or ""
        try:
            check_node_id(node_id, "node.id")
            meta = request.node.metadata.fields
            services = _services(meta) if "services" in meta else None
            own = _own_routes(meta) if "own_routes" in meta else None
            if own is not None and services is None:
                raise ValueError("node metadata own_routes: needs services (the bootstrap writes both)")
            if services is None:
                check_node_id(service, "node.cluster (the service)")
            listen_port, admin_port = _port(meta, "listen_port", 10000), _port(meta, "admin_port", 0)
            listen_address = _address(meta, "listen_address")
            edge = EdgeOptions.parse(_struct(meta["edge"]) if "edge" in meta else None)
        except (ValueError, EdgeOptionError) as error:
            log.warning("xds: refusing a stream from %s: %s", _peer_host(context.peer()), printable(str(error)))
            return None, f"rollway: node refused: {error}"
        node = EnvoyNode(node_id, service if services is None else ",".join(services), listen_port, wake=wake,
                         admin_port=admin_port, peer_host=_peer_host(context.peer()), listen_address=listen_address,
                         edge=edge)
        node.__dict__["_listener"] = self.cache.intern(node.listener)
        feed: Feed = SingleFeed(self.cache, node) if services is None else \
            FrontingFeed(self.cache, node, services, own)
        feed.connect()
        log.info("xds: %s connected (%s %s, listener %s:%d)", node.node_id,
                 "service" if services is None else "services", node.service, listen_address, listen_port)
        return feed, ""

    def _on_request(self, feed: Feed, request, subscriptions: dict) -> None:
        node = feed.node
        type_url = request.type_url
        if type_url not in TYPES:
            return
        names = tuple(sorted(request.resource_names))
        if not names and type_url == ENDPOINT:
            # EDS is not a wildcard type: an Envoy that asks for no endpoints (its last EDS
            # cluster is gone) has unsubscribed, and ACKs nothing sent to it. Answering
            # with every endpoint would leave it "behind" until it went stale.
            subscriptions.pop(type_url, None)
            feed.unsubscribed(type_url)
            return
        subscriptions[type_url] = names
        if not request.response_nonce:
            return  # a (re)subscription: answered below
        sent = node.sent.get(type_url)
        if sent is None or request.response_nonce != sent[1]:
            return  # a stale nonce: superseded by a newer response
        if request.error_detail and (request.error_detail.code or request.error_detail.message):
            feed.nacked(type_url, request.error_detail.message)
            return
        if type_url == ENDPOINT:
            # These clusters have their endpoints: warm. Only names the snapshot serves: the
            # names are the client's, and what it can make this set hold must be bounded.
            resources = feed.resources()
            served = resources.by_type[ENDPOINT] if resources is not None else {}
            node.warm |= {name for name in sent[2] if name in served}
        elif type_url == CLUSTER:
            node.warm &= node.clusters        # a cluster removed must warm again if it comes back
        feed.acked(type_url, request.version_info)

    def _ordered(self, feed: Feed | None, subscriptions: dict) -> list[tuple[str, tuple[str, ...]]]:
        """Make before break: clusters and endpoints go out before a filter config that
        routes to new ones (which waits for them to be warm: ``_maybe_response``), and a
        filter config that stops routing to a cluster goes out before the cluster is
        removed, so no request is routed to a cluster Envoy lacks. Per cluster, not only
        per cluster set: the filter config also goes first whenever every cluster it routes
        to has a host taking requests in the endpoints this Envoy was last sent. A drain
        marks a version's last hosts DRAINING in the same snapshot that stops routing to it;
        endpoints first, Envoy would send that version's requests to no healthy host ("no
        healthy upstream", a 503) until the filter config came (found by the demo)."""
        items = list(subscriptions.items())
        if feed is None or EXTENSION not in subscriptions:
            return items
        resources = feed.resources()
        if resources is None:
            return items
        node = feed.node
        offered = resources.by_type[CLUSTER]
        if offered is node.offered:
            removing = False        # the clusters of the last pass (one snapshot, many passes): none removed
        else:
            clusters = set(offered)
            removing = bool(node.clusters - clusters)
            node.clusters, node.offered = clusters, offered
        if len(items) == 1:
            return items
        ecds = [(t, n) for t, n in items if t == EXTENSION]
        rest = [(t, n) for t, n in items if t != EXTENSION]
        return ecds + rest if removing or resources.routed <= node.serving else rest + ecds

    def _owed(self, feed: Feed, subscriptions: dict) -> bool:
        """Whether a response is owed on any subscription (what ``_maybe_response`` would send)."""
        takes_clusters = CLUSTER in subscriptions
        return any(self._due(feed, type_url, names, takes_clusters) is not None
                   for type_url, names in subscriptions.items())

    def _due(self, feed: Feed, type_url: str, names: tuple[str, ...], takes_clusters: bool) -> Resources | None:
        """The resources to answer a subscription from, or None when nothing is owed on it."""
        resources = feed.resources()
        if resources is None:
            return None
        node = feed.node
        if type_url == EXTENSION and takes_clusters and not node.warm.issuperset(resources.by_type[CLUSTER]):
            # A filter config may route to a cluster only once the Envoy has it warm: a new
            # EDS cluster is invisible to the router until its endpoints arrive, and they
            # are asked for only after the CDS response that adds it, a round trip later.
            # Sent earlier, the filter's choice 503s (no_cluster) for that round trip
            # (found with an Envoy 0.4 s away: tests/lagging_link.py). Sent again at the
            # EDS ACK, which ends the wait. (A client that takes no clusters from here, such
            # as the benchmark's ECDS-only streams, routes to none of them: not held.)
            return None
        sent = node.sent.get(type_url)
        if sent is not None and sent[0] == resources.versions[type_url] and sent[2:] == (names,):
            return None
        return resources

    def _maybe_response(self, feed: Feed, type_url: str, names: tuple[str, ...], takes_clusters: bool):
        resources = self._due(feed, type_url, names, takes_clusters)
        if resources is None:
            return None
        version = resources.versions[type_url]
        nonce, body = self.cache.response(type_url, resources, names, feed.subset(type_url, resources, names))
        feed.sent(type_url, version, nonce, names)
        if type_url == ENDPOINT:
            feed.node.serving = resources.serving.intersection(names)
        self.cache.pushes[SHORT[type_url]] += 1
        return body


Feed = SingleFeed | FrontingFeed
class LoadReportingServicer:
    """LRS (``envoy.service.load_stats.v3.LoadReportingService``): each Envoy's load reports,
    into the cache's ``HealthBook``. The first message names the node, which must have an
    ADS stream on this replica; the answer asks for every cluster, every REPORT_INTERVAL."""

    def __init__(self, cache: SnapshotCache):
        self.cache = cache
        # Per endpoint too: what is open to each host is what a drain waits on.
        self.answer = bytes(LoadStatsResponse(send_all_clusters=True, report_endpoint_granularity=True,
                                              load_reporting_interval=timedelta(seconds=REPORT_INTERVAL)))

    async def stream(self, request_iterator, context):
        node_id = None
        last = float("-inf")
        try:
            async for report in request_iterator:
                now = time.monotonic()
                if node_id is not None and now - last < REPORT_INTERVAL / 2:
                    # Envoy reports every REPORT_INTERVAL; a stream reporting faster is not one,
                    # and would make the server parse without bound. Dropped, counted.
                    self.cache.health.throttled += 1
                    continue
                last = now
                if node_id is None:
                    if not self.cache.ledger.has_node(report.node.id):
                        await context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                                            "rollway: load reports only from an Envoy with an ADS stream here")
                        return
                    node_id = report.node.id
                    yield self.answer
                self._take(node_id, report, now)
        finally:
            if node_id is not None:
                self.cache.load.forget(node_id)   # no stream, no word on what is open

    def _take(self, node_id: str, report, now: float) -> None:
        self.cache.health.add(node_id, (
            (c.cluster_name, sum(s.total_successful_requests + s.total_error_requests
                                 for s in c.upstream_locality_stats),
             sum(s.total_error_requests for s in c.upstream_locality_stats))
            for c in report.cluster_stats))
        self.cache.load.report(node_id, (
            (c.cluster_name, e.address.socket_address.address, e.address.socket_address.port_value,
             e.total_requests_in_progress)
            for c in report.cluster_stats for s in c.upstream_locality_stats for e in s.upstream_endpoint_stats),
            now)


# The youngest GC generation is collected after this many net allocations (CPython: 700).
# A push to N streams starts all N writes before the first completes, so what each write
# holds (futures, operation tags, coroutines: ~15 objects) lives across hundreds of young
# collections at 700, is promoted, and drives full collections of the whole heap (~100
# long-lived objects a stream). At 10,000 streams that is 2-3 full collections of ~0.65 s
# a push, 1.5-2.2 s of CPU in GC out of ~4.5 s; at 100,000, ~0.3 s, and a full collection
# every few dozen pushes. The server makes no cyclic garbage per message (checked with
# gc.DEBUG_SAVEALL over pushes), so collecting the young generation less often holds back
# almost nothing.
GC_YOUNG = 100_000


def _young_collections_at_least(threshold: int) -> None:
    young, *older = gc.get_threshold()
    if 0 < young < threshold:      # 0: the embedding program turned collection off; leave it
        gc.set_threshold(threshold, *older)


# Bytes of one DiscoveryRequest. Envoy's first one carries its node with every extension
# it was built with (about 100 KB for 1.40); ACKs are far smaller.
MAX_REQUEST = 1 << 20


def _port(fields, name: str, default: int) -> int:
    """A port from node metadata: absent -> default; anything but a whole number in
    0..65535 (a string, a list, 1.5) raises ValueError."""
    if name not in fields:
        return default
    item = fields[name]
    value = item.number_value
    if item.WhichOneof("kind") != "number_value" or not value.is_integer() or not 0 <= value <= 65535:
        raise ValueError(f"node metadata {name}: must be a number from 0 to 65535")
    return int(value)


def _services(fields) -> tuple[str, ...]:
    """The services an Envoy fronts (node metadata ``services``): a list of 1 to MAX_FRONTED
    names, each as a node id; sorted, without repeats."""
    item = fields["services"]
    if item.WhichOneof("kind") != "list_value":
        raise ValueError("node metadata services: must be a list of service names")
    values = item.list_value.values
    if not 1 <= len(values) <= MAX_FRONTED:
        raise ValueError(f"node metadata services: 1 to {MAX_FRONTED} names (got {len(values)})")
    names = []
    for i, value in enumerate(values):
        if value.WhichOneof("kind") != "string_value":
            raise ValueError(f"node metadata services[{i}]: must be a string")
        names.append(check_node_id(value.string_value, f"node metadata services[{i}]"))
    return tuple(sorted(set(names)))


def _own_routes(fields) -> OwnRoutes:
    """An Envoy's own routes (node metadata ``own_routes``: the JSON text of
    ``bootstrap.OwnRoutes``), checked as Envoy would read them: a route table that does not
    encode is refused here, not sent to be NACKed."""
    item = fields["own_routes"]
    if item.WhichOneof("kind") != "string_value":
        raise ValueError("node metadata own_routes: must be a string (JSON)")
    try:
        own = OwnRoutes.parse(item.string_value)
        RouteConfiguration.from_dict(services_route_config([], extra_routes=own.routes,
                                                           extra_virtual_hosts=own.virtual_hosts))
    except Exception as error:   # betterproto raises several kinds for a bad document
        raise ValueError(f"node metadata own_routes: {printable(str(error))[:200]}") from None
    return own


def _address(fields, name: str) -> str:
    """An IP address from node metadata (absent: every address); anything else raises."""
    if name not in fields:
        return DEFAULT_LISTEN_ADDRESS
    if fields[name].WhichOneof("kind") != "string_value":
        raise ValueError(f"node metadata {name}: must be a string (an IP address)")
    value = fields[name].string_value
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"node metadata {name} {printable(value[:64])!r}: not an IP address") from None


def _struct(value) -> dict:
    """A metadata Struct value as plain Python (numbers, strings, booleans only)."""
    kind = value.WhichOneof("kind")
    if kind != "struct_value":
        raise ValueError("edge: must be a mapping of option names to values")
    out = {}
    for key, item in value.struct_value.fields.items():
        which = item.WhichOneof("kind")
        if which not in ("number_value", "string_value", "bool_value"):
            raise ValueError(f"edge option {printable(key[:64])!r}: must be a number, string or boolean")
        out[key] = getattr(item, which)
    return out


class _Wake:
    """A stream's wake-up: ``set()`` (on the loop's thread) resolves the writer's waiter, if it
    waits; however many snapshots arrive before it runs, it makes one pass. ``end`` tells it
    the reader is done: "closed" (the Envoy closed its side) or what ended it."""

    __slots__ = ("pending", "waiter", "ended")

    def __init__(self) -> None:
        self.pending = True           # the first pass answers the first request
        self.waiter: asyncio.Future | None = None
        self.ended: str | Exception | None = None

    def set(self) -> None:
        self.pending = True
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def end(self, why: str | Exception) -> None:
        self.ended = why
        self.set()


def _peer_host(peer: str) -> str:
    """The host part of a gRPC peer string (``ipv4:127.0.0.1:5555``, ``ipv6:[::1]:5555``)."""
    kind, _, rest = (peer or "").partition(":")
    if kind == "ipv6":
        return rest.rsplit(":", 1)[0].strip("[]") or "::1"
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return "127.0.0.1"


class XdsServer:
    def __init__(self, plane: ControlPlane):
        self.cache = SnapshotCache(plane)
        self.servicer = AdsServicer(self.cache)
        self.load_reports = LoadReportingServicer(self.cache)
        self.server: grpc.aio.Server | None = None

    async def start(self, port: int, host: str = "127.0.0.1", tls: ServerTLS | None = None) -> int:
        """Serves ADS on ``host:port``; over TLS with ``tls``, and with its client CA only to
        Envoys presenting a certificate that CA signed (others fail the handshake)."""
        _young_collections_at_least(GC_YOUNG)
        self.cache.loop = asyncio.get_running_loop()
        self.cache.ledger.defer = self.cache.loop.call_soon   # ACKs of one loop turn: one report batch
        self.server = grpc.aio.server(options=[
            *GRPC_OPTIONS,     # no SO_REUSEPORT: a second server on this port fails to start
            ("grpc.max_concurrent_streams", 100000),
            ("grpc.max_receive_message_length", MAX_REQUEST),
            # Ping each Envoy every 10 s and drop it when 5 s pass without an answer, so a
            # host that vanished leaves the fleet's view by the liveness timeout, not TCP's.
            ("grpc.keepalive_time_ms", 10000), ("grpc.keepalive_timeout_ms", 5000),
            ("grpc.keepalive_permit_without_calls", 1),
            # Envoys ping every 5 s (HTTP/2 connection keepalive); gRPC's default minimum
            # (5 minutes) would answer those pings with GOAWAY "too_many_pings".
            ("grpc.http2.min_recv_ping_interval_without_data_ms", 4000),
            ("grpc.http2.max_ping_strikes", 0)])
        handler = grpc.method_handlers_generic_handler(
            "envoy.service.discovery.v3.AggregatedDiscoveryService",
            {"StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                self.servicer.stream, request_deserializer=parse_request,
                response_serializer=lambda body: body)})
        lrs = grpc.method_handlers_generic_handler(
            "envoy.service.load_stats.v3.LoadReportingService",
            {"StreamLoadStats": grpc.stream_stream_rpc_method_handler(
                self.load_reports.stream, request_deserializer=parse_load_stats,
                response_serializer=lambda body: body)})
        self.server.add_generic_rpc_handlers((handler, lrs))
        address = f"{host}:{port}"
        try:
            bound = self.server.add_secure_port(address, tls.grpc_credentials(require_client=True)) if tls \
                else self.server.add_insecure_port(address)
        except RuntimeError:     # grpcio raises where older versions returned 0
            bound = 0
        if bound == 0:
            raise PortInUse("xDS", address)
        await self.server.start()
        self._liveness = asyncio.ensure_future(self._check_liveness())
        log.info("xds: ADS listening on %s:%d (%s)", host, bound,
                 "plaintext" if tls is None else "TLS, client certificates required" if tls.client_ca else "TLS")
        if (tls is None or tls.client_ca is None) and not is_loopback(host):
            log.warning("xds: serving on %s without client certificates: any process that reaches this port "
                        "can join the fleet's quorum (until it stops ACKing); give --tls-client-ca", host)
        return bound

    async def _check_liveness(self, interval: float = 1.0) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.cache.ledger.check_liveness()
            except Exception:  # never let a bookkeeping bug stop the server
                log.exception("xds: liveness check failed")

    async def stop(self, grace: float = 0.5) -> None:
        if getattr(self, "_liveness", None) is not None:
            self._liveness.cancel()
        if self.server is not None:
            await self.server.stop(grace)


class XdsThread:
    """Runs an XdsServer on its own asyncio loop in a background thread (for `rollway serve`
    and tests, whose control plane is thread-based)."""

    def __init__(self, plane: ControlPlane, port: int, host: str = "127.0.0.1",
                 tls: ServerTLS | None = None):
        self.xds = XdsServer(plane)
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self.error: Exception | None = None
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            try:
                self.port = self.loop.run_until_complete(self.xds.start(port, host, tls))
            except Exception as error:   # reported to the starting thread
                self.error = error
                started.set()
                return
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="rollway-xds", daemon=True)
        self.thread.start()
        if not started.wait(30):
            raise RuntimeError("xDS server did not start")
        if self.error is not None:
            self.thread.join(5)
            raise self.error

    def stop(self) -> None:
        """Stops the server, then finishes every task still on its loop (stream handlers,
        the liveness check) before closing it: a loop closed under pending tasks makes grpc
        print "Event loop is closed" tracebacks when they are collected at exit. Stopping a
        stopped server does nothing."""
        if self.loop.is_closed():
            return

        async def shutdown() -> None:
            await self.xds.stop()
            pending = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            # grpc's own RPC tasks end by themselves once the server has stopped; on a loaded
            # machine that can take longer than the grace, and cancelling one makes grpc
            # print a CancelledError traceback. Let them finish first; cancel what is left.
            if pending:
                _, pending_set = await asyncio.wait(pending, timeout=5.0)
                pending = list(pending_set)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            await self.loop.shutdown_asyncgens()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(15)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


__all__ = ["XdsServer", "XdsThread", "SnapshotCache", "EnvoyNode"]
