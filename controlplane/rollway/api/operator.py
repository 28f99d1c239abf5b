"""The operator API (gRPC RouteMapService): transport only, over ``state.ControlPlane``.

Writes (Push, Rollback, Halt, Resume) need ``authorization: Bearer <token>`` matching the server's
operator token; without a configured token every write is refused. The token is compared
in constant time and never logged. Errors map to gRPC codes with the control plane's
message (which names the offending field for a bad route map):

===============================  ===================
bad route map, name or argument  INVALID_ARGUMENT
a request that does not decode   INVALID_ARGUMENT
revision conflict                ABORTED
unknown service/rev              NOT_FOUND
a stored record not servable     FAILED_PRECONDITION
no/bad token                     UNAUTHENTICATED / PERMISSION_DENIED
too many calls at once           RESOURCE_EXHAUSTED
store unavailable                UNAVAILABLE
===============================  ===================

No input answers UNKNOWN or INTERNAL: every refusal above names what was wrong.

Usage::

    server = serve_operator_api(plane, port=0, token="s3cret")   # started grpc.Server
    server.rollway_port                                           # the bound port
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from concurrent import futures

import grpc

from rollway.inputs import InputError, check_endpoint, endpoint_text, printable
from rollway.model.deploy_state import Halt
from rollway.model.routemap import RouteMapError
from rollway.plane.control_plane import BrokenRecord, ControlPlane, NotFound
from rollway.ports import GRPC_OPTIONS, PortInUse
from rollway.proto import routemap_pb2 as pb
from rollway.proto import routemap_pb2_grpc as pb_grpc
from rollway.sources.store import ConflictError, RecordError, RouteMapRecord, StoreError
from rollway.tls import ServerTLS, is_loopback
from rollway.xds.health import REPORT_INTERVAL

log = logging.getLogger(__name__)
DEFAULT_WAIT, MAX_WAIT = 30.0, 3600.0   # WaitConverged's timeout: default and bound (seconds)
MAX_ENDPOINTS = 1000      # endpoints one OpenRequests call asks about (a deploy batch is a few)
# Validate needs no token and costs CPU and memory in proportion to its sample (20 million
# took 22 s and 3.5 GB): the sample is capped, and so are the Validates running at once.
MAX_SAMPLE, MAX_VALIDATING = 1_000_000, 2
MAX_MESSAGE = 1 << 20     # bytes of one request; a route map is bounded far below this


def revision_message(record: RouteMapRecord) -> pb.RouteMapRevision:
    return pb.RouteMapRevision(service=record.service, revision=record.revision,
                               document=json.dumps(record.document, sort_keys=True), author=record.author,
                               reason=record.reason, time=record.time)


def halt_message(halt: Halt) -> pb.HaltRecord:
    record = pb.HaltRecord(version=halt.version, rollback=halt.rollback, author=halt.who, reason=halt.why,
                           time=halt.at, figures=halt.figures)
    if halt.measured is not None:
        record.stage = halt.measured.stage
        record.error_ratio = halt.measured.error_ratio
        record.baseline_error_ratio = halt.measured.baseline_error_ratio
        record.requests = halt.measured.requests
    return record


def services_message(plane: ControlPlane) -> pb.ListServicesResponse:
    summaries = []
    for name in plane.service_names():
        view = plane.view(name)
        if view is None:
            continue
        envoys = plane.fleet_status(name)
        summaries.append(pb.ServiceSummary(
            service=name, revision=view.revision, generation=view.generation, domains=list(view.domains),
            path_prefix=view.path_prefix, envoys=len(envoys), stale_envoys=sum(1 for e in envoys if e["stale"]),
            halted=sorted({h.version for h in plane.halts(name)})))
    return pb.ListServicesResponse(services=summaries, envoys=[
        pb.EnvoyFronting(node_id=node_id, services=services)
        for node_id, services in sorted(plane.services_fronted().items())])


def status_message(plane: ControlPlane, service: str) -> pb.Status:
    state = plane.service(service)
    halts = plane.halts(service)
    halted = {h.version for h in halts}
    stages = []
    for s in state.status():
        stages.append(pb.StageStatus(
            name=s.name, mode=s.mode, weight=s.weight,
            versions=[pb.VersionStatus(name=v, capacity=c, members=m, halted=v in halted) for v, c, m in s.versions],
            direction=s.direction, target=s.target or "", skipped_members=s.skipped_members,
            held_empty=s.held_empty, active_slot=s.active_slot or ""))
    envoys = [pb.EnvoyStatus(node_id=e["node_id"], acked=e.get("acked", {}), nacks=e["nacks"],
                             last_nack=e.get("last_nack", ""), replica=e["replica"], connected=e["connected"],
                             generation=e["generation"], stale=e["stale"], stale_since=e["stale_since"],
                             services=e["services"])
              for e in plane.fleet_status(service)]
    view = state.view
    return pb.Status(service=service, revision=view.revision, generation=view.generation, stages=stages,
                     store_state=plane.store.state, time=view.updated, envoys=envoys,
                     filter_config=json.dumps(view.config.to_json(), sort_keys=True) if view.config else "",
                     leader=state.leader(), duplicate_node_ids=state.duplicates(),
                     problems=plane.problems(service), halts=[halt_message(h) for h in halts])


class RouteMapServicer(pb_grpc.RouteMapServiceServicer):
    def __init__(self, plane: ControlPlane, token: str | None, max_waiters: int = 8):
        self.plane = plane
        self.token = token
        # WaitConverged and WatchStatus need no token and hold a worker for as long as the
        # client likes: together at most this many at once, so they can never take every
        # worker from Push and the rest.
        self.waiters = threading.BoundedSemaphore(max_waiters)
        self.max_waiters = max_waiters
        self.validating = threading.BoundedSemaphore(MAX_VALIDATING)

    # -- helpers ---------------------------------------------------------------------------

    def _authorize_write(self, context: grpc.ServicerContext) -> None:
        if not self.token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "writes are disabled: the server has no operator token configured")
            raise AssertionError("unreachable: context.abort raises")  # grpc is untyped: mypy cannot know
        metadata = dict(context.invocation_metadata())
        header = metadata.get("authorization", "")
        if not header.startswith("Bearer ") or not header[7:]:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "writes need 'authorization: Bearer <operator token>'")
        if not hmac.compare_digest(header[7:].encode(), self.token.encode()):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "operator token not accepted")

    @staticmethod
    def _run(context: grpc.ServicerContext, fn):
        try:
            return fn()
        except (RouteMapError, InputError) as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except ConflictError as error:
            context.abort(grpc.StatusCode.ABORTED, str(error))
        except NotFound as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error.args[0] if error.args else error))
        except (BrokenRecord, RecordError) as error:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(error))
        except StoreError as error:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(error))

    # -- methods -----------------------------------------------------------------------------

    def _hold_worker(self, context: grpc.ServicerContext, semaphore: threading.BoundedSemaphore, what: str) -> None:
        if not semaphore.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, f"too many {what} calls at once; try again later")

    def Validate(self, request, context):  # noqa: N802 (gRPC names)
        if not 0 <= request.sample_size <= MAX_SAMPLE:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"sample_size: must be between 0 and {MAX_SAMPLE} (0 = the server default), "
                          f"not {request.sample_size}")
        self._hold_worker(context, self.validating, "Validate")
        try:
            result = self._run(context, lambda: self.plane.validate(request.document, request.sample_size or None))
        finally:
            self.validating.release()
        return pb.ValidateResponse(service=result["service"], sample_size=result["sample_size"],
                                   total_change_share=result["total_change_share"],
                                   stages=[pb.StageChange(**s) for s in result["stages"]])

    def Push(self, request, context):  # noqa: N802
        self._authorize_write(context)
        record = self._run(context, lambda: self.plane.push(request.document, request.expected_revision,
                                                             request.author or "unknown", request.reason))
        return pb.PushResponse(revision=revision_message(record))

    def ListServices(self, request, context):  # noqa: N802
        return self._run(context, lambda: services_message(self.plane))

    def OpenRequests(self, request, context):  # noqa: N802
        if len(request.endpoints) > MAX_ENDPOINTS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"endpoints: at most {MAX_ENDPOINTS}")
        try:
            endpoints = [check_endpoint(e, "endpoints") for e in request.endpoints]
        except InputError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        counts, unreported = self._run(context, lambda: self.plane.open_requests(request.service, endpoints))
        return pb.OpenRequestsResponse(
            endpoints=[pb.EndpointRequests(endpoint=endpoint_text(h, p), requests=n) for (h, p), n in counts.items()],
            unreported=unreported, report_interval_seconds=REPORT_INTERVAL)

    def Get(self, request, context):  # noqa: N802
        return revision_message(self._run(context, lambda: self.plane.get(request.service, request.revision)))

    def History(self, request, context):  # noqa: N802
        records = self._run(context, lambda: self.plane.history(request.service))
        return pb.HistoryResponse(revisions=[revision_message(r) for r in records])

    def Rollback(self, request, context):  # noqa: N802
        self._authorize_write(context)
        record = self._run(context, lambda: self.plane.rollback(request.service, request.to_revision,
                                                                 request.expected_revision,
                                                                 request.author or "unknown", request.reason))
        return pb.PushResponse(revision=revision_message(record))

    def Halt(self, request, context):  # noqa: N802
        self._authorize_write(context)
        state = self._run(context, lambda: self.plane.halt(request.service, request.version, request.rollback,
                                                           request.author or "unknown", request.reason))
        return pb.HaltResponse(halts=[halt_message(h) for _, h in sorted(state.halts.items())])

    def Resume(self, request, context):  # noqa: N802
        self._authorize_write(context)
        state = self._run(context, lambda: self.plane.resume(request.service, request.version,
                                                             request.author or "unknown", request.reason))
        return pb.HaltResponse(halts=[halt_message(h) for _, h in sorted(state.halts.items())])

    @property
    def waiting(self) -> int:
        """How many WaitConverged calls are waiting now."""
        return self.max_waiters - self.waiters._value

    def WaitConverged(self, request, context):  # noqa: N802
        timeout = request.timeout_seconds or DEFAULT_WAIT
        if not 0 < timeout <= MAX_WAIT:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"timeout_seconds: must be between 0 and {MAX_WAIT:g} (0 = {DEFAULT_WAIT:g})")
        state = self._run(context, lambda: self.plane.service(request.service))
        if not self.waiters.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{self.max_waiters} WaitConverged or WatchStatus calls are already waiting; "
                          "try again later")
        try:
            return self._wait_converged(request, context, state, timeout)
        finally:
            self.waiters.release()

    def _wait_converged(self, request, context, state, timeout: float):
        changed = threading.Event()
        listener = lambda name: changed.set() if name == request.service else None  # noqa: E731
        self.plane.add_listener(listener)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    converged, outstanding = state.gate()
                except StoreError as error:
                    converged, outstanding = False, [f"store: {error}"]
                left = deadline - time.monotonic()
                if converged or left <= 0 or not context.is_active():
                    return pb.WaitConvergedResponse(converged=converged, generation=state.generation,
                                                    outstanding=outstanding,
                                                    halts=[halt_message(h) for h in self.plane.halts(request.service)])
                # Fleet records from other replicas arrive without a config change: poll too
                # (each poll reads the service's serversets once).
                changed.wait(min(left, 0.25))
                changed.clear()
        finally:
            self.plane.remove_listener(listener)

    def WatchStatus(self, request, context):  # noqa: N802
        service = request.service
        self._run(context, lambda: self.plane.service(service))
        if not self.waiters.acquire(blocking=False):
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                          f"{self.max_waiters} WaitConverged or WatchStatus calls are already waiting; "
                          "try again later")
        # Publications set a flag, not a queue: a client slow to read gets the status as it
        # is when it reads, however many publications passed (nothing piles up).
        changed, cancelled = threading.Event(), threading.Event()
        listener = lambda name: changed.set() if name == service else None  # noqa: E731
        self.plane.add_listener(listener)
        # A client that reads one status and cancels (``rollway status``) frees its place at
        # once, not at the next poll.
        context.add_callback(lambda: (cancelled.set(), changed.set()))
        try:
            yield status_message(self.plane, service)
            while context.is_active() and not cancelled.is_set():
                if not changed.wait(0.5):
                    continue
                changed.clear()
                if cancelled.is_set():
                    return
                yield status_message(self.plane, service)
        finally:
            self.plane.remove_listener(listener)
            self.waiters.release()


class _Undecodable:
    """A request whose bytes are not the method's message (a string field that is not
    UTF-8, a truncated message): answered INVALID_ARGUMENT by the method, not INTERNAL."""

    def __init__(self, error: Exception):
        self.error = error


def _tolerant(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    decode, kind = handler.request_deserializer, "unary_unary" if handler.unary_unary else "unary_stream"
    behaviour = getattr(handler, kind)

    def safe_decode(data: bytes):
        try:
            return decode(data)
        except Exception as error:   # protobuf's DecodeError, and whatever else bad bytes raise
            return _Undecodable(error)

    def checked(request, context):
        if isinstance(request, _Undecodable):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"the request does not decode ({printable(str(request.error))[:200]}); "
                          "strings must be UTF-8")
        return behaviour(request, context)

    return handler._replace(request_deserializer=safe_decode, **{kind: checked})


class _DecodeRequestsSafely(grpc.ServerInterceptor):
    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or not (handler.unary_unary or handler.unary_stream):
            return handler
        return _tolerant(handler)


def serve_operator_api(plane: ControlPlane, *, port: int, token: str | None, host: str = "127.0.0.1",
                       max_workers: int = 16, tls: ServerTLS | None = None) -> grpc.Server:
    """The operator API on ``host:port``, over TLS with ``tls`` (writes are authenticated by
    the token either way; without TLS the token crosses the network in clear, so serving
    off loopback without it logs a warning)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rollway-api"),
                         interceptors=[_DecodeRequestsSafely()],
                         # No SO_REUSEPORT: a second server on this port must fail to start,
                         # not share the port and answer some of the calls.
                         options=[("grpc.max_receive_message_length", MAX_MESSAGE), *GRPC_OPTIONS])
    servicer = RouteMapServicer(plane, token, max_waiters=max_workers // 2)
    pb_grpc.add_RouteMapServiceServicer_to_server(servicer, server)
    server.rollway_servicer = servicer
    address = f"{host}:{port}"
    try:
        bound = server.add_secure_port(address, tls.grpc_credentials()) if tls else server.add_insecure_port(address)
    except RuntimeError:     # grpcio raises where older versions returned 0
        bound = 0
    if bound == 0:
        raise PortInUse("operator API", address)
    server.start()
    server.rollway_port = bound
    log.info("operator API listening on %s:%d (%s; writes %s)", host, bound, "TLS" if tls else "plaintext",
             "need the operator token" if token else "disabled: no token")
    if tls is None and not is_loopback(host):
        log.warning("operator API: serving on %s without TLS: the operator token crosses the network in "
                    "clear; give --tls-cert and --tls-key", host)
    return server


def wait_forever(server: grpc.Server) -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop(1)
