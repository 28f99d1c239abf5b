"""The control plane's HTTP side: a live dashboard, its JSON, and Prometheus metrics.

``DashboardServer(plane, cache)`` serves, on one port:

- ``/``: a plain HTML/JS page (no external assets) that polls ``/api/state`` every second
  and shows, per service and stage, capacity per version (bars), direction, route-map
  revision, the connected Envoys with the config versions each has ACKed, and a live chart
  of traffic per version;
- ``/api/state``: the same as JSON;
- ``/metrics``: Prometheus text format through prometheus_client (pushes, NACKs, store
  state, readiness, per-Envoy lag, capacity, versions held by admission; the process's own);
- ``/healthz``: 200 while the process serves (liveness: restart it when this fails);
- ``/readyz``: 200 when the store is connected and every service has a snapshot published,
  else 503 naming what is missing (readiness: send Envoys elsewhere meanwhile). A service
  whose stored route map cannot be served is named too, but does not make the replica
  unready: every replica reads the same store, and the other services must keep serving.

Every path answers HEAD as it answers GET, without the body. A connection gets
``CONNECTION_TIMEOUT`` seconds per read and ``REQUEST_DEADLINE`` seconds in all, from accept
to the last byte of the answer; at most ``MAX_CONNECTIONS`` are served at once. So a client
that trickles a header line every few seconds holds a slot for at most ``REQUEST_DEADLINE``
seconds, and a client that hangs up is no error (logged at debug).

Traffic comes from the Envoys themselves: ``TrafficSampler`` reads each connected Envoy's
``rollway.requests.stage.<stage>.version.<version>`` counters from its admin endpoint (the
address the Envoy gives in its node metadata) once a second and keeps requests per second
for the last few minutes. The control plane never sees a request.

Usage::

    dashboard = DashboardServer(plane, xds.xds.cache, port=7780)
    ...
    dashboard.stop()
"""

from __future__ import annotations

import http.server
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from importlib import resources

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from rollway.envoy.process import admin_counters
from rollway.inputs import InputError, printable
from rollway.model.deploy_state import GUARD
from rollway.plane.control_plane import BrokenRecord, ControlPlane, NotFound
from rollway.ports import PortInUse

log = logging.getLogger(__name__)

REQUESTS_PREFIX = "rollway.requests.stage."
SERVICE_PREFIX = "rollway.service."
COUNTERS_PREFIX = "rollway."
CONNECTION_TIMEOUT = 5.0    # seconds a dashboard client may take per read
REQUEST_DEADLINE = 10.0     # seconds a connection may take in all, however it trickles
MAX_CONNECTIONS = 32
STORE_STATES = ("connected", "suspended", "lost")


class TrafficSampler:
    """Requests per second per ``stage:version`` and service, summed over the Envoys."""

    def __init__(self, cache, interval: float = 1.0, keep: int = 300):
        self.cache = cache
        self.interval = interval
        self.samples: dict[str, deque] = {}   # service -> deque of (time, {stage:version: rps})
        self.keep = keep
        self._last: dict[str, tuple[float, dict[str, int]]] = {}  # node id -> (time, counters)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rollway-traffic", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except Exception:  # a sampler problem must never take the control plane down
                log.exception("traffic sampling failed")

    def sample(self) -> None:
        # One read per Envoy, however many services it fronts (the ledger has an entry per
        # service): its counters name their service when it fronts several.
        envoys: dict[str, tuple[str, int, set[str]]] = {}
        with self.cache.lock:
            for n in self.cache.nodes.values():
                envoys.setdefault(n.node_id, (n.peer_host, n.admin_port, set()))[2].add(n.service)
        now = time.time()
        totals: dict[str, dict[str, float]] = {}
        for node_id, (host, port, services) in envoys.items():
            if not port:
                continue
            try:
                counters = admin_counters(host, port, COUNTERS_PREFIX, timeout=1.0)
            except (OSError, ValueError):
                continue
            previous = self._last.get(node_id)
            self._last[node_id] = (now, counters)
            if previous is None:
                continue
            elapsed = max(1e-3, now - previous[0])
            only = next(iter(services)) if len(services) == 1 else None
            for name, value in counters.items():
                parsed = _service_stage_version(name, only)
                if parsed is not None and parsed[0] in services:
                    rates = totals.setdefault(parsed[0], {})
                    delta = max(0, value - previous[1].get(name, 0))
                    rates[parsed[1]] = rates.get(parsed[1], 0.0) + delta / elapsed
        for node_id in list(self._last):
            if node_id not in envoys:
                del self._last[node_id]
        # Bounded: services the plane serves (a node names its own, which may be anything),
        # and versions with traffic (an Envoy keeps every version's counter until it restarts).
        served = set(self.cache.views)
        for service in [s for s in self.samples if s not in served]:
            del self.samples[service]
        for service, rates in totals.items():
            if service in served:
                self.samples.setdefault(service, deque(maxlen=self.keep)).append(
                    (round(now, 3), {k: round(v, 2) for k, v in rates.items() if v > 0}))

    def series(self, service: str) -> dict:
        points = list(self.samples.get(service, ()))
        keys = sorted({k for _, rates in points for k in rates})
        return {"times": [t for t, _ in points],
                "series": {k: [rates.get(k, 0.0) for _, rates in points] for k in keys}}


def _service_stage_version(stat: str, only: str | None) -> tuple[str, str] | None:
    """(service, "stage:version") of a request counter: ``rollway.requests.stage.S.version.V``
    on an Envoy fronting one service (``only``), ``rollway.service.N.requests.stage...`` on
    one fronting several."""
    service = only
    if stat.startswith(SERVICE_PREFIX):
        service, sep, rest = stat[len(SERVICE_PREFIX):].partition(".requests.stage.")
        if not sep:
            return None
    elif stat.startswith(REQUESTS_PREFIX):
        rest = stat[len(REQUESTS_PREFIX):]
    else:
        return None
    stage, sep, version = rest.partition(".version.")
    return (service, f"{stage}:{version}") if sep and service else None


def _services(plane: ControlPlane):
    """(name, ServiceController) of every service the control plane holds, by name."""
    for name in plane.service_names():
        try:
            yield name, plane.service(name)
        except (NotFound, BrokenRecord, InputError):
            continue


def dashboard_state(plane: ControlPlane, cache, sampler: TrafficSampler | None) -> dict:
    """Everything the dashboard shows, as one JSON-ready dict."""
    services = []
    for name, state in _services(plane):
        view = state.view
        halts = {h.version: h for h in plane.halts(name)}
        stages = []
        for stage in state.status():
            total = sum(c for _, c, _ in stage.versions) or 1.0
            stages.append({
                "name": stage.name, "mode": stage.mode, "weight": stage.weight,
                "direction": stage.direction, "target": stage.target, "active_slot": stage.active_slot,
                "skipped_members": stage.skipped_members, "held_empty": stage.held_empty,
                "versions": [{"name": v, "capacity": c, "members": m, "share": round(c / total, 4),
                              "halted": {"reason": halts[v].why, "author": halts[v].who, "rollback": halts[v].rollback,
                                         "time": halts[v].at, "figures": halts[v].figures or None}
                              if v in halts else None}
                             for v, c, m in stage.versions]})
        envoys = plane.fleet_status(name)
        services.append({"service": name, "revision": view.revision, "generation": view.generation,
                         "domains": list(view.domains), "path_prefix": view.path_prefix,
                         "leader": state.leader(), "duplicate_node_ids": state.duplicates(),
                         "store_state": plane.store.state, "stages": stages, "problems": plane.problems(name),
                         "envoys": sorted(envoys, key=lambda e: e["node_id"]),
                         "traffic": sampler.series(name) if sampler else {"times": [], "series": {}}})
    xds = {"pushes": dict(cache.pushes), "nacks": cache.nack_total,
           "consistency_failures": cache.consistency_failures} if cache is not None else {}
    broken = [{"service": name, "revision": revision, "reason": reason}
              for name, (revision, reason) in sorted(plane.broken.items())]
    fronting = [{"node_id": node_id, "services": fronted} for node_id, fronted in sorted(plane.services_fronted().items())]
    return {"time": time.time(), "services": services, "envoys": fronting, "broken": broken, "xds": xds}


class ControlPlaneCollector(Collector):
    """The control plane's metrics, read from its live state at each scrape (a custom
    prometheus_client collector: no values are copied into client-side metrics and left to
    go stale). Counters keep their ``_total`` names; values print exactly (a counter of
    1,234,567 is ``1.234567e+06``, not a rounded ``1.23457e+06``)."""

    def __init__(self, plane: ControlPlane, cache):
        self.plane, self.cache = plane, cache

    def collect(self) -> Iterator[Metric]:
        yield from self._process()
        yield from self._deploys()
        yield from self._versions()
        yield from self._envoys()

    def _process(self) -> Iterator[Metric]:
        """This replica: its store, readiness, xDS pushes and failures, broken route maps."""
        plane, cache = self.plane, self.cache
        state = plane.store.state
        yield _gauge("rollway_store_up", "1 while the store (ZooKeeper or directory) is connected", [],
                     [([], 1.0 if state == "connected" else 0.0)])
        yield _gauge("rollway_store_state", "the store's session state (1 for the current one)", ["state"],
                     [([s], 1.0 if s == state else 0.0) for s in STORE_STATES])
        yield _gauge("rollway_ready", "1 while /readyz answers 200: store connected and a snapshot published", [],
                     [([], 1.0 if not readiness_problems(plane, cache) else 0.0)])
        if cache is not None:
            yield _counter("rollway_xds_pushes_total", "xDS responses sent to Envoys, per resource type", ["type"],
                           [([t], n) for t, n in sorted(cache.pushes.items())])
            yield _counter("rollway_xds_nacks_total", "configs Envoys rejected (NACKs)", [], [([], cache.nack_total)])
            yield _counter("rollway_xds_consistency_failures_total",
                           "snapshots withheld because they failed the consistency check", [],
                           [([], cache.consistency_failures)])
            yield _counter("rollway_xds_snapshot_build_failures_total",
                           "snapshots that did not build (the last good one kept being served), per service",
                           ["service"], sorted(([name], n) for name, n in cache.build_failures.items()))
        yield _gauge("rollway_routemap_broken",
                     "1 for each service whose stored route map cannot be served (skipped, or its previous "
                     "revision served)", ["service"], [([name], 1.0) for name in sorted(plane.broken)])

    def _deploys(self) -> Iterator[Metric]:
        """Each service's route map, filter config, and per stage its capacity and direction."""
        revisions, generations, capacity, members, direction, skipped, held = [], [], [], [], [], [], []
        for name, service in _services(self.plane):
            view = service.view
            revisions.append(([name], view.revision))
            generations.append(([name], view.generation))
            config = view.config
            held.append(([name], sum(1 for _ in config.announced()) if config else 0))
            for stage in service.status():
                for version, cap, count in stage.versions:
                    capacity.append(([name, stage.name, version], cap))
                    members.append(([name, stage.name, version], count))
                direction.append(([name, stage.name, stage.direction, stage.target or ""], 1.0))
                skipped.append(([name, stage.name], stage.skipped_members))
        svc, stage_version = ["service"], ["service", "stage", "version"]
        yield _gauge("rollway_routemap_revision", "route-map revision in force", svc, revisions)
        yield _gauge("rollway_filter_config_generation", "filter configs built since start", svc, generations)
        yield _gauge("rollway_capacity", "live capacity (sum of member weights) per stage and version",
                     stage_version, capacity)
        yield _gauge("rollway_members", "ALIVE serverset members per stage and version", stage_version, members)
        yield _gauge("rollway_stage_direction", "deployment direction of each stage (1 for the current one)",
                     ["service", "stage", "state", "target"], direction)
        yield _gauge("rollway_serverset_skipped_members", "malformed serverset members skipped",
                     ["service", "stage"], skipped)
        yield _gauge("rollway_admission_held_versions",
                     "versions announced but not yet admitted (waiting for every Envoy to know them)", svc, held)

    def _versions(self) -> Iterator[Metric]:
        """What the guard judges (each version's requests and 5xx over the fleet) and the
        halts, the operator's and the guard's."""
        plane = self.plane
        halted, served, failed = [], [], []
        for name, service in _services(plane):
            halts = {h.version: h for h in plane.halts(name)}
            for (stage_name, version), health in sorted(plane.fleet_health(name).items()):
                served.append(([name, stage_name, version], health.requests))
                failed.append(([name, stage_name, version], health.errors))
            for stage in service.status():
                for version in (v for v, _, _ in stage.versions if v in halts):
                    reason = "rollback" if halts[version].rollback else "halt"
                    who = "guard" if halts[version].who == GUARD else "operator"
                    halted.append(([name, stage.name, version, f"{who} {reason}"], 1.0))
        stage_version = ["service", "stage", "version"]
        yield _gauge("rollway_version_halted", "1 for each version halted (rollway deploy halt, or the guard), per stage it "
                     "is live in, and why", ["service", "stage", "version", "reason"], halted)
        yield _gauge("rollway_version_requests", "requests each version completed, over every Envoy of the "
                     "service (their load reports, since the version appeared or a replica started)",
                     stage_version, served)
        yield _gauge("rollway_version_errors", "of those, 5xx (or reset): what the route map's guard judges",
                     stage_version, failed)

    def _envoys(self) -> Iterator[Metric]:
        """Each service's Envoys: connected here, in the quorum, stale, behind, NACKs."""
        plane, cache = self.plane, self.cache
        connected, behind, ack_latency, nacks, quorum = [], [], [], [], []
        stale: list[tuple[list[str], float]] = []
        for name, _ in _services(plane):
            envoys = cache.envoy_status(name) if cache is not None else []
            connected.append(([name], sum(1 for e in envoys if e["connected"])))
            fleet = plane.fleet_status(name)
            quorum.append(([name], sum(1 for e in fleet if not e["stale"])))
            stale.extend(([name, e["node_id"], e["replica"], e["stale"]], 1.0) for e in fleet if e["stale"])
            for e in envoys:
                behind.append(([name, e["node_id"]], e["behind_seconds"]))
                ack_latency.append(([name, e["node_id"]], e["last_ack_latency"]))
                nacks.append(([name, e["node_id"]], e["nacks"]))
        svc = ["service"]
        yield _gauge("rollway_envoys_connected", "Envoys on an ADS stream to this replica", svc, connected)
        yield _gauge("rollway_envoys_quorum", "Envoys of the service (any replica) whose ACKs admission waits for",
                     svc, quorum)
        yield _gauge("rollway_envoy_stale",
                     "1 for each Envoy out of the quorum (no ACK of the newest config within --ack-timeout)",
                     ["service", "node", "replica", "reason"], stale)
        yield _gauge("rollway_envoy_behind_seconds",
                     "how long an Envoy has not ACKed the newest config sent to it (0: up to date)",
                     ["service", "node"], behind)
        yield _gauge("rollway_envoy_last_ack_latency_seconds", "seconds from sending a config to its ACK, for the last one",
                     ["service", "node"], ack_latency)
        yield _counter("rollway_envoy_nacks_total", "configs this Envoy rejected", ["service", "node"], nacks)


def _gauge(name: str, help_text: str, labels: list[str], samples) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric([str(v) for v in values], float(value))
    return family


def _counter(name: str, help_text: str, labels: list[str], samples) -> CounterMetricFamily:
    family = CounterMetricFamily(name, help_text, labels=labels)
    for values, value in samples:
        family.add_metric([str(v) for v in values], float(value))
    return family


def metrics_registry(plane: ControlPlane, cache) -> CollectorRegistry:
    """A registry of this control plane's collector and the process's own (CPU, memory,
    file descriptors): private to it, so two control planes in one process (the tests) do
    not collide in prometheus_client's global registry."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ControlPlaneCollector(plane, cache))
    ProcessCollector(registry=registry)
    return registry


def prometheus_text(plane: ControlPlane, cache) -> str:
    """The control plane's metrics in the Prometheus text exposition format (0.0.4)."""
    return generate_latest(metrics_registry(plane, cache)).decode()


def readiness_problems(plane: ControlPlane, cache=None) -> list[str]:
    """Why this replica should not take Envoys yet, or nothing: the store must be connected,
    and every service it knows must have a filter config built from its route map and
    serversets (the snapshot the xDS cache serves to any Envoy that asks)."""
    problems = []
    if plane.store.state != "connected":
        problems.append(f"store {plane.store.state}")
    services = list(_services(plane))
    if not services:
        problems.append("no route map loaded")
    for name, service in services:
        if service.view.config is None:
            problems.append(f"no snapshot published for {name}")
    return problems


def readiness_notes(plane: ControlPlane) -> list[str]:
    """What /readyz names without failing: services whose stored route map is not served."""
    return [f"not served: {name}: {printable(reason)}" for name, (_, reason) in sorted(plane.broken.items())]


def dashboard_page() -> bytes:
    return resources.files("rollway.api").joinpath("dashboard.html").read_bytes()


class _BoundedHandler(http.server.BaseHTTPRequestHandler):
    """A request handler with a deadline for the whole request (``REQUEST_DEADLINE``,
    beside the per-read ``CONNECTION_TIMEOUT``), to which a hang-up is no error."""

    timeout = CONNECTION_TIMEOUT

    def setup(self):
        super().setup()
        # Past the deadline the socket is shut, and whatever read or write waits ends at once.
        self._deadline = threading.Timer(REQUEST_DEADLINE, self._expire)
        self._deadline.daemon = True
        self._deadline.start()

    def _expire(self):
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def finish(self):
        self._deadline.cancel()
        try:
            super().finish()
        except OSError:     # the client went away before the answer was flushed
            pass

    def handle(self):
        try:
            super().handle()
        except (OSError, ValueError) as error:   # hang-ups, resets, a shut socket
            log.debug("dashboard client %s: %s", self.client_address[0], error)


class DashboardServer:
    """The dashboard, its JSON and ``/metrics`` on one HTTP port, in a background thread."""

    def __init__(self, plane: ControlPlane, cache=None, *, port: int = 0, host: str = "127.0.0.1",
                 sample_interval: float = 1.0, tls=None):
        """``tls``: a rollway.tls.ServerTLS to serve HTTPS. Needs no token (it only reads),
        so it binds loopback by default; each connection gets ``CONNECTION_TIMEOUT`` seconds
        per read and at most ``MAX_CONNECTIONS`` are served at once (more wait in the
        listen backlog), so slow or many clients cost bounded threads."""
        self.plane, self.cache = plane, cache
        self.registry = metrics_registry(plane, cache)
        self.sampler = TrafficSampler(cache, sample_interval) if cache is not None else None
        page = dashboard_page()
        owner = self

        class Handler(_BoundedHandler):
            def do_HEAD(self):  # noqa: N802 (http.server's naming)
                self._head = True
                self.do_GET()

            def do_GET(self):  # noqa: N802 (http.server's naming)
                path = self.path.split("?", 1)[0]
                try:
                    if path in ("/", "/index.html"):
                        self._send(200, "text/html; charset=utf-8", page)
                    elif path == "/api/state":
                        body = json.dumps(dashboard_state(owner.plane, owner.cache, owner.sampler)).encode()
                        self._send(200, "application/json", body)
                    elif path == "/metrics":
                        body = generate_latest(owner.registry)
                        self._send(200, CONTENT_TYPE_LATEST, body)
                    elif path == "/healthz":   # alive: the process answers (not: its store works)
                        self._send(200, "text/plain", b"ok\n")
                    elif path == "/readyz":    # ready: store connected, a snapshot published
                        problems = readiness_problems(owner.plane, owner.cache)
                        notes = readiness_notes(owner.plane)
                        body = ("ready" if not problems else "not ready: " + "; ".join(problems)) + "\n"
                        body += "".join(f"{note}\n" for note in notes)
                        self._send(503 if problems else 200, "text/plain", body.encode())
                    else:
                        self._send(404, "text/plain", b"not found\n")
                except OSError:
                    raise       # the client hung up: handle() notes it quietly
                except Exception:
                    log.exception("dashboard request %s failed", printable(path[:200]))
                    self._send(500, "text/plain", b"internal error\n")

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(body)))
                self.send_header("cache-control", "no-store")
                self.end_headers()
                if not getattr(self, "_head", False):
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        try:
            self.server = _BoundedHTTPServer((host, port), Handler)
        except OSError:
            raise PortInUse("dashboard", f"{host}:{port}") from None
        self.server.daemon_threads = True
        if tls is not None:
            self.server.socket = tls.ssl_context().wrap_socket(self.server.socket, server_side=True,
                                                               do_handshake_on_connect=False)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name="rollway-dashboard", daemon=True)
        self._thread.start()
        if self.sampler is not None:
            self.sampler.start()

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        self.server.shutdown()
        self.server.server_close()


class _BoundedHTTPServer(http.server.ThreadingHTTPServer):
    """A thread per connection, at most MAX_CONNECTIONS at once."""

    # socketserver's default backlog is 5: a burst of clients past it has its handshakes
    # dropped and retried by the kernel after 1, 3, 7 s. Room for every slot and as many
    # waiting keeps a burst inside the kernel's queue, where waiting costs no thread.
    request_queue_size = 2 * MAX_CONNECTIONS

    def __init__(self, *args, **kwargs):
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address):
        self.slots.acquire()
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


__all__ = ["DashboardServer", "TrafficSampler", "dashboard_state", "prometheus_text"]
