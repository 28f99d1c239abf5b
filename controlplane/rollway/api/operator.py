"""The operator API (gRPC RouteMapService): transport only, over ``state.ControlPlane``.

Writes (Push, Rollback) need ``authorization: Bearer <token>`` matching the server's
operator token; without a configured token every write is refused. The token is compared
in constant time and never logged. Errors map to gRPC codes with the control plane's
message (which names the offending field for a bad route map):

=====================  ===================
bad route map          INVALID_ARGUMENT
revision conflict      ABORTED
unknown service/rev    NOT_FOUND
no/bad token           UNAUTHENTICATED / PERMISSION_DENIED
store unavailable      UNAVAILABLE
=====================  ===================

Usage::

    server = serve_operator_api(plane, port=0, token="s3cret")   # started grpc.Server
    server.rollway_port                                           # the bound port
"""

from __future__ import annotations

import hmac
import json
import logging
import queue
import threading
import time
from concurrent import futures

import grpc

from rollway.model.routemap import RouteMapError
from rollway.plane.control_plane import ControlPlane, NotFound
from rollway.proto import routemap_pb2 as pb
from rollway.proto import routemap_pb2_grpc as pb_grpc
from rollway.sources.store import ConflictError, RouteMapRecord, StoreError

log = logging.getLogger(__name__)
DEFAULT_WAIT, MAX_WAIT = 30.0, 3600.0   # WaitConverged's timeout: default and bound (seconds)
# WaitConverged needs no token and holds a worker while it waits: at most this many at once,
# so waiting clients can never take every worker from Push and the rest.


def revision_message(record: RouteMapRecord) -> pb.RouteMapRevision:
    return pb.RouteMapRevision(service=record.service, revision=record.revision,
                               document=json.dumps(record.document, sort_keys=True), author=record.author,
                               reason=record.reason, time=record.time)


def status_message(plane: ControlPlane, service: str) -> pb.Status:
    state = plane.service(service)
    stages = []
    for s in state.status():
        stages.append(pb.StageStatus(
            name=s.name, mode=s.mode, weight=s.weight,
            versions=[pb.VersionStatus(name=v, capacity=c, members=m) for v, c, m in s.versions],
            direction=s.direction, target=s.target or "", skipped_members=s.skipped_members,
            held_empty=s.held_empty, active_slot=s.active_slot or ""))
    envoys = [pb.EnvoyStatus(node_id=e["node_id"], acked=e.get("acked", {}), nacks=e["nacks"],
                             last_nack=e.get("last_nack", ""), replica=e["replica"], connected=e["connected"],
                             generation=e["generation"], stale=e["stale"], stale_since=e["stale_since"])
              for e in plane.fleet_status(service)]
    return pb.Status(service=service, revision=state.record.revision, generation=state.generation, stages=stages,
                     store_state=plane.store.state, time=state.updated, envoys=envoys,
                     filter_config=json.dumps(state.config, sort_keys=True) if state.config else "",
                     leader=state.leader(), duplicate_node_ids=state.fleet.duplicates())


class RouteMapServicer(pb_grpc.RouteMapServiceServicer):
    def __init__(self, plane: ControlPlane, token: str | None, max_waiters: int = 8):
        self.plane = plane
        self.token = token
        self.waiters = threading.BoundedSemaphore(max_waiters)
        self.max_waiters = max_waiters

    # -- helpers ---------------------------------------------------------------------------

    def _authorize_write(self, context: grpc.ServicerContext) -> None:
        if not self.token:
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "writes are disabled: the server has no operator token configured")
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
        except RouteMapError as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except ConflictError as error:
            context.abort(grpc.StatusCode.ABORTED, str(error))
        except NotFound as error:
            context.abort(grpc.StatusCode.NOT_FOUND, str(error.args[0] if error.args else error))
        except StoreError as error:
            context.abort(grpc.StatusCode.UNAVAILABLE, str(error))

    # -- methods -----------------------------------------------------------------------------

    def Validate(self, request, context):  # noqa: N802 (gRPC names)
        result = self._run(context, lambda: self.plane.validate(request.document, request.sample_size or None))
        return pb.ValidateResponse(service=result["service"], sample_size=result["sample_size"],
                                   total_change_share=result["total_change_share"],
                                   stages=[pb.StageChange(**s) for s in result["stages"]])

    def Push(self, request, context):  # noqa: N802
        self._authorize_write(context)
        record = self._run(context, lambda: self.plane.push(request.document, request.expected_revision,
                                                             request.author or "unknown", request.reason))
        return pb.PushResponse(revision=revision_message(record))

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
                          f"{self.max_waiters} WaitConverged calls are already waiting; try again later")
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
                    converged, outstanding = state.converged(check_store=True)
                except StoreError as error:
                    converged, outstanding = False, [f"store: {error}"]
                left = deadline - time.monotonic()
                if converged or left <= 0 or not context.is_active():
                    return pb.WaitConvergedResponse(converged=converged, generation=state.generation,
                                                    outstanding=outstanding)
                # Fleet records from other replicas arrive without a config change: poll too
                # (each poll reads the service's serversets once).
                changed.wait(min(left, 0.25))
                changed.clear()
        finally:
            self.plane.remove_listener(listener)

    def WatchStatus(self, request, context):  # noqa: N802
        service = request.service
        self._run(context, lambda: self.plane.service(service))
        changes: queue.Queue[str] = queue.Queue()
        listener = lambda name: changes.put(name) if name == service else None  # noqa: E731
        self.plane.add_listener(listener)
        try:
            yield status_message(self.plane, service)
            while context.is_active():
                try:
                    changes.get(timeout=0.5)
                except queue.Empty:
                    continue
                while not changes.empty():  # coalesce a burst into one message
                    changes.get_nowait()
                yield status_message(self.plane, service)
        finally:
            self.plane.remove_listener(listener)


def serve_operator_api(plane: ControlPlane, *, port: int, token: str | None, host: str = "127.0.0.1",
                       max_workers: int = 16) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rollway-api"))
    servicer = RouteMapServicer(plane, token, max_waiters=max_workers // 2)
    pb_grpc.add_RouteMapServiceServicer_to_server(servicer, server)
    server.rollway_servicer = servicer
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    server.start()
    server.rollway_port = bound
    log.info("operator API listening on %s:%d (writes %s)", host, bound,
             "need the operator token" if token else "disabled: no token")
    return server


def wait_forever(server: grpc.Server) -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop(1)
