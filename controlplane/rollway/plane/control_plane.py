"""The control plane of one replica: what each service's route map, serversets, deploy
state and fleet say now, and the filter config that follows.

Transport-free (the operator API in ``rollway.api`` and the xDS server in ``rollway.xds``
sit on top). For each service with a route map it keeps one ``ServersetWatcher`` per
serverset, the service's deploy state record (``rollway.model.deploy_state``), the fleet
as every replica reports it (``rollway.plane.fleet_records``), and the current filter config.
Several replicas act as one: per service one leader (elected through the store) turns
evidence into deploy-state changes with compare-and-set; every replica renders the same
config from the record. Listeners hear about every new filter config / status.

Route-map operations (validate, push with compare-and-set, get, history, rollback) go
through the store, so several control-plane replicas against one ZooKeeper agree.

The xDS layer attaches itself (``attach``: a ``ViewSink`` that is handed every new
``ServiceView``, an immutable value, and an ``EnvoySource``, asked what the Envoys hold) and
reports through ``report_envoys`` and ``report_snapshot``; nothing outside this package
assigns the plane's attributes or takes its locks (readers outside take ``ServiceView``s). Threads: the ``rollway-plane`` worker makes every decision
(``ServiceController.recompute``) and flushes fleet records; store threads and debounce timers
only record what they saw under the service's lock and ``schedule`` it; the refresh thread
loads route maps; API threads read, and push through ``push``/``rollback``
(docs/design.md, "Threads").

Usage::

    plane = ControlPlane(open_store("file:///tmp/rollway"), ack_timeout=30)
    plane.start()
    plane.push(routemap_text, expected_revision=0, author="alice", reason="first map")
    plane.filter_config("web")      # -> FilterConfig (config.to_text() is what the filter parses)
    plane.service("web").converged()  # -> (True, []) once every Envoy holds it
"""

from __future__ import annotations

import functools
import logging
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from rollway import Router, new_routing_id
from rollway.inputs import InputError, check_name, check_text, check_version, printable
from rollway.model.deploy_state import GUARD, MAX_HALTS, DeployState, Halt
from rollway.model.direction import DirectionTracker
from rollway.model.endpoint_load import Endpoint, EndpointLoad
from rollway.model.filter_config import FilterConfig, Mode
from rollway.model.fleet_knowledge import NOBODY
from rollway.model.guard import Health
from rollway.model.publication import build_filter_config, draining_by_cluster, endpoints_by_cluster
from rollway.model.routemap import RouteMap, RouteMapError, collisions
from rollway.model.validation import check_routemap
from rollway.plane.decision import decide
from rollway.plane.fleet_records import EnvoyReport, FleetView, RecordEncoder, decode_reports, encode_reports
from rollway.sources.serverset import ServersetView, ServersetWatcher, build_view, read_now
from rollway.sources.store import Campaign, ConflictError, FleetRecord, RecordError, RouteMapRecord, Store, StoreError

log = logging.getLogger(__name__)

Listener = Callable[[str], None]  # called with the service name after any change


class NotFound(LookupError):
    pass


class BrokenRecord(LookupError):
    """A service whose stored route map this replica cannot serve (it does not parse, or
    the one validation refuses it): reported, and skipped."""


@dataclass(frozen=True)
class StageStatus:
    name: str
    mode: str
    weight: float
    versions: tuple[tuple[str, float, int], ...]  # (version, capacity, members), oldest first
    direction: str
    target: str | None
    skipped_members: int
    held_empty: bool
    active_slot: str | None = None


@dataclass(frozen=True)
class ServiceView:
    """What one service serves right now, as one immutable value. The controller replaces
    it whole (under its lock) after every change; xDS, the API and the dashboard read it
    without any lock, so nothing outside ``plane/`` takes the plane's locks."""
    service: str
    revision: int                               # of the route map served
    generation: int = 0
    config: FilterConfig | None = None          # None until the serversets were read
    endpoints: Mapping[str, tuple] = field(default_factory=dict)   # cluster -> (host, port, weight)...
    updated: float = 0.0
    domains: tuple[str, ...] = ("*",)           # where it lives on an Envoy that fronts several
    path_prefix: str = "/"
    draining: Mapping[str, tuple] = field(default_factory=dict)    # cluster -> (host, port)... being drained


class EnvoySource(Protocol):
    """What the plane asks of the layer that serves Envoys (``rollway.xds.cache``)."""

    def envoy_status(self, service: str) -> list[dict]: ...

    def gated_versions(self, service: str) -> tuple[str, ...] | None: ...

    def version_health(self, service: str) -> dict[tuple[str, str], Health]: ...

    def endpoint_load(self, service: str) -> EndpointLoad: ...


class ViewSink(Protocol):
    """Where the plane hands each new ``ServiceView`` (``rollway.xds.cache``): the one
    direction data flows from the plane to xDS."""

    def publish(self, view: ServiceView) -> None: ...


class XdsLayer(EnvoySource, ViewSink, Protocol):
    """The xDS layer a plane is attached to: it takes views and says what Envoys hold."""


class _NoEnvoys:
    """Before an xDS layer attaches (a plane used alone: the CLI's dry runs, tests)."""

    def envoy_status(self, service: str) -> list[dict]:
        return []

    def gated_versions(self, service: str) -> tuple[str, ...] | None:
        return None

    def version_health(self, service: str) -> dict[tuple[str, str], Health]:
        return {}

    def endpoint_load(self, service: str) -> EndpointLoad:
        return EndpointLoad()

    def publish(self, view: ServiceView) -> None:
        pass


class ServiceController:
    """One service as this replica holds it: route map, serverset views, the deploy state
    record, the fleet, and the filter config it serves.

    The leader (one replica per service, ``Store.campaign``) turns serverset evidence and
    fleet knowledge into deploy-state changes (``publish``), writes them with
    compare-and-set, and serves the config only once written. Followers watch the record
    and serve what it says (``render_config``). All decisions run on the control plane's
    worker thread, one service at a time."""

    def __init__(self, plane: ControlPlane, record: RouteMapRecord):
        self.plane = plane
        self.lock = threading.RLock()
        self.record = record
        self.routemap = check_routemap(record.document)   # RouteMapError: the plane skips the service
        self.views: dict[str, ServersetView | None] = {}
        self.watchers: dict[str, ServersetWatcher] = {}
        self.deploy = DeployState()
        self.deploy_version = -1          # the store's version of the record ``deploy`` came from
        self.deploy_loaded = False
        self.fresh = False                # the service had no deploy state when this replica started
        self.leading = False
        self.fleet = FleetView(ack_timeout=plane.ack_timeout)
        self.local_reports: dict[str, EnvoyReport] = {}
        self.fleet_dirty = False
        self.config: FilterConfig | None = None
        self.endpoints: dict[str, list] = {}    # cluster -> endpoints of the config served
        self.draining: dict[str, tuple] = {}    # cluster -> endpoints being drained
        self.updated = time.time()
        self.view = ServiceView(record.service, record.revision, updated=self.updated,
                                domains=self.routemap.domains, path_prefix=self.routemap.path_prefix)
        self.write_failures = 0
        self._handles: list = []
        self._fleet_record: FleetRecord | None = None
        self._encoder = RecordEncoder()       # the fleet record, re-encoding only the Envoys that changed
        self._campaign: Campaign | None = None
        self._next_flush = 0.0                # monotonic time before which the fleet record is not rewritten
        self._deciding = threading.Lock()   # one recomputation at a time (worker, start, apply)

    @property
    def service(self) -> str:
        return self.routemap.service

    @property
    def generation(self) -> int:
        config = self.config
        return config.generation if config else 0

    @property
    def directions(self) -> dict[str, DirectionTracker]:
        return self.deploy.trackers

    def start(self) -> None:
        store, service = self.plane.store, self.service
        self._sync_watchers()
        self._handles.append(store.watch_deploy_state(service, self._on_deploy_state))
        self._handles.append(store.watch_fleet(service, self._on_fleet))
        self._fleet_record = store.publish_fleet(service, self.plane.replica_id,
                                                 encode_reports(self.plane.replica_id, {}))
        self._handles.append(self._fleet_record)
        self._campaign = store.campaign(service, self.plane.replica_id, self._on_leadership)
        self._handles.append(self._campaign)
        self.recompute()

    def stop(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop()
        for handle in reversed(self._handles):
            try:
                handle.close()
            except Exception as error:  # store already gone: nothing left to release
                log.debug("closing %s: %s", handle, error)

    def apply(self, record: RouteMapRecord) -> None:
        """A newer revision; one that does not validate raises before anything changes, and
        the service keeps serving the revision it has."""
        routemap = check_routemap(record.document)
        with self.lock:
            self.record = record
            self.routemap = routemap
            self._replace_view()
        self._sync_watchers()
        self.recompute()

    def _replace_view(self) -> None:
        """A new ``ServiceView`` from the controller's state (the caller holds the lock)."""
        config = self.config
        self.view = ServiceView(self.service, self.record.revision, config.generation if config else 0, config,
                                {k: tuple(v) for k, v in self.endpoints.items()}, self.updated,
                                self.routemap.domains, self.routemap.path_prefix, dict(self.draining))

    def duplicates(self) -> list[str]:
        """Node ids more than one Envoy uses (a misconfiguration status names)."""
        with self.lock:
            return self.fleet.duplicates()

    def _sync_watchers(self) -> None:
        wanted = {key: spec for stage in self.routemap.stages for key, spec in stage.serversets().items()}
        with self.lock:
            for key in list(self.watchers):
                if key not in wanted or self.watchers[key].spec != wanted[key]:
                    self.watchers.pop(key).stop()
                    self.views.pop(key, None)
            started = []
            for key, spec in wanted.items():
                if key not in self.watchers:
                    watcher = ServersetWatcher(self.plane.store, spec, lambda view: None,
                                               debounce=self.plane.debounce, empty_grace=self.plane.empty_grace)
                    watcher.on_view = functools.partial(self._on_view, key, watcher)
                    self.watchers[key] = watcher
                    started.append(watcher)
        for watcher in started:
            watcher.start()

    # -- inputs (store threads) -------------------------------------------------------------

    def _on_view(self, key: str, watcher: ServersetWatcher, view: ServersetView) -> None:
        with self.lock:
            # A watcher replaced (its stage's serverset changed, or the stage went and came
            # back) may still be flushing a view of before: it must not overwrite the view
            # of the watcher that replaced it (found by the publication property under load).
            if self.watchers.get(key) is not watcher:
                return
            self.views[key] = view
        self.plane.schedule(self.service)

    def _on_deploy_state(self, data: bytes | None, version: int) -> None:
        """A record from the store's watch: taken if newer than the one held."""
        self._take_deploy_state(data, version, adopt=False)

    def _adopt_deploy_state(self, data: bytes | None, version: int) -> None:
        """What a direct read found after a compare-and-set conflict, taken as it is: a
        record deleted or restored from a backup has a lower version, and the leader must
        not loop on conflicts."""
        self._take_deploy_state(data, version, adopt=True)

    def _take_deploy_state(self, data: bytes | None, version: int, *, adopt: bool) -> None:
        if data is None:
            with self.lock:
                self.deploy_loaded = True
                self.fresh = True    # no deploy before this one: no Envoy routes on an old config
                if adopt or self.deploy_version >= 0:
                    self.deploy, self.deploy_version = DeployState(), -1
            self.plane.schedule(self.service)
            return
        try:
            state = DeployState.from_json(data)
        except (ValueError, KeyError, TypeError) as error:
            log.error("deploy state of %s (version %d) is unreadable, keeping the last one: %s",
                      self.service, version, error)
            return
        with self.lock:
            self.deploy_loaded = True
            if adopt or version > self.deploy_version:
                self.deploy, self.deploy_version = state, version
        self.plane.schedule(self.service)

    def _on_leadership(self, leading: bool) -> None:
        with self.lock:
            self.leading = leading
        log.info("%s: this replica (%s) %s", self.service, self.plane.replica_id,
                 "leads: it writes the deploy state" if leading else "follows the deploy state")
        self.plane.schedule(self.service)

    def _on_fleet(self, records: dict[str, bytes]) -> None:
        changed = False
        with self.lock:
            for replica in [r for r in self.fleet.replicas() if r not in records and r != self.plane.replica_id]:
                changed |= self.fleet.drop_replica(replica)
            for replica, data in records.items():
                if replica == self.plane.replica_id:
                    continue  # our own Envoys are fed in-process, without the round trip
                try:
                    record = decode_reports(data)
                except (ValueError, KeyError, TypeError, IndexError) as error:
                    log.warning("fleet record of replica %s for %s is unreadable: %s", replica, self.service, error)
                    continue
                changed |= self.fleet.set_replica(replica, record.envoys)
                changed |= self.fleet.set_health(replica, record.health) and self.leading
                self.fleet.set_load(replica, record.load)
        if changed:
            self.plane.schedule(self.service, delay=0.02)

    def report_envoys(self, reports: dict[str, EnvoyReport | None]) -> None:
        """From this replica's ACK ledger: what connected Envoys now hold."""
        changed = False
        with self.lock:
            completions = self.fleet.knowledge.completions
            for node_id, report in reports.items():
                if report is None:
                    self.local_reports.pop(node_id, None)
                else:
                    self.local_reports[node_id] = report
                changed |= self.fleet.set_report(self.plane.replica_id, node_id, report)
            self.fleet_dirty = True
            waiting = self.leading and self.config is not None and self.deploy.admission.waiting(self.config)
            complete = self.fleet.knowledge.completions != completions
        if changed and waiting:
            # Only a step waiting for the fleet can be released by an ACK; 5,000 ACKs of a
            # push arrive over a second or so, and one decision per 20 ms keeps up with them.
            # The ACK that makes a key known to the whole quorum is decided on at once: the
            # push's next step does not wait out the 20 ms.
            self.plane.schedule(self.service, delay=0.0 if complete else 0.02)

    def flush_fleet(self) -> None:
        """Writes this replica's fleet record if it changed. The plane calls it every 100 ms;
        a write is skipped until 20 times its own cost has passed since the last one, so the
        record of 5,000 Envoys (tens of ms to encode) takes a few percent of a core while
        they ACK a push, and 5,000 ACKs cost a handful of writes, not 5,000. Under traffic
        the Envoys' counts (the guard's input) change with every load report, so the record
        is rewritten about once a second, within the same bound."""
        now = time.monotonic()
        own_load = self.plane.endpoint_load(self.service)
        own_health = self.plane.version_health(self.service)
        judge = False
        with self.lock:
            if self.fleet.set_load(self.plane.replica_id, own_load):
                self.fleet_dirty = True
            if self.fleet.set_health(self.plane.replica_id, own_health):
                # This replica's Envoys' counts moved: into its record, and, on the leader of
                # a guarded service, to the guard now rather than at the next decision.
                self.fleet_dirty = True
                judge = self.leading and any(stage.guard is not None for stage in self.routemap.stages)
        if judge:
            self.plane.schedule(self.service)
        with self.lock:
            if not self.fleet_dirty or self._fleet_record is None or now < self._next_flush:
                return
            self.fleet_dirty = False
            reports = dict(self.local_reports)
            health = self.fleet.counts.get(self.plane.replica_id, {})
        data = self._encoder.encode(self.plane.replica_id, reports, health, own_load)
        self._next_flush = now + min(1.0, 20 * (time.monotonic() - now))
        try:
            self._fleet_record.update(data)
        except Exception as error:  # a store or disk problem: try again at the next flush
            with self.lock:
                self.fleet_dirty = True
            log.warning("fleet record of %s not written: %s", self.service, error)

    # -- the decision (the plane's worker thread) ------------------------------------------------

    def recompute(self) -> None:
        with self._deciding:
            self._recompute()

    def ready(self) -> bool:
        """Every serverset has been read once: before that, a config would show stages
        without capacity (and a leader would take the empty view as evidence)."""
        with self.lock:
            return all(key in self.views for key in self.watchers)

    def _recompute(self) -> None:
        # Nothing is served before the serversets were read and the deploy state record was
        # (or was found absent): a config from an empty state would show every version
        # admitted and every direction steady.
        if not self.ready() or not self.deploy_loaded:
            return
        own_health = self.plane.version_health(self.service)
        with self.lock:
            self.fleet.expire()
            if self.fleet.set_health(self.plane.replica_id, own_health):
                self.fleet_dirty = True
            # A replica that has just started, mid-deploy, has not seen the fleet yet: its
            # Envoys may still be reconnecting. It releases nothing until it has.
            fleet = self.fleet.knowledge if self.fresh or self.plane.fleet_seen() else NOBODY
            guarded = any(stage.guard is not None for stage in self.routemap.stages)
            decision = decide(self.routemap, self.views, self.deploy, fleet, leading=self.leading,
                              secrets_file=self.plane.secrets_file, routemap_revision=self.record.revision,
                              now=time.time(), health=self.fleet.health() if guarded and self.leading else None)
            config, state, expected = decision.config, decision.write, self.deploy_version
            before = self.deploy.halted()
        if state is not None:
            try:
                version = self.plane.store.write_deploy_state(self.service, state.to_json(), expected)
            except ConflictError:
                # Another replica wrote first (it led a moment ago): take its record and decide again.
                try:
                    data, version = self.plane.store.read_deploy_state(self.service)
                except StoreError as error:
                    log.warning("%s: deploy state not read after a conflict: %s", self.service, error)
                    self.plane.schedule(self.service, delay=0.5)
                    return
                self._adopt_deploy_state(data, version)
                return
            except StoreError as error:
                self.write_failures += 1
                log.warning("%s: deploy state not written, serving the last config: %s", self.service, error)
                self.plane.schedule(self.service, delay=0.5)
                return
            with self.lock:
                if version > self.deploy_version:
                    self.deploy, self.deploy_version = state, version
            for halt in state.halts.values():
                if halt.version not in before and halt.who == GUARD:     # once: the leader that wrote it
                    log.warning("%s: the guard halted version %s%s: %s (%s)", self.service, halt.version,
                                " and rolled it back" if halt.rollback else "", halt.why, halt.figures)
        with self.lock:
            endpoints = endpoints_by_cluster(self.routemap, self.views)
            draining = draining_by_cluster(self.routemap, self.views)
            if config == self.config and endpoints == self.endpoints and draining == self.draining:
                return
            self.config, self.endpoints, self.draining = config, endpoints, draining
            self.updated = time.time()
            self._replace_view()
        self.plane._notify(self.service)

    def leader(self) -> str:
        campaign = self._campaign
        try:
            return (campaign.leader() or "") if campaign is not None else ""
        except StoreError:
            return ""

    def views_current(self) -> list[str]:
        """Serversets whose view here differs from what the store holds now (read once):
        a change still in its debounce window, or not yet delivered."""
        with self.lock:
            watched = {key: (w.spec, self.views.get(key)) for key, w in self.watchers.items()}
        behind = []
        for spec, view in watched.values():
            path = spec.path
            fresh = build_view(spec, read_now(self.plane.store, spec))
            if view is None or (fresh.members and view.held_empty) or \
                    (not view.held_empty and (fresh.capacity, fresh.endpoints) != (view.capacity, view.endpoints)):
                behind.append(f"serverset {path}: the control plane has not applied its latest change yet")
        return behind

    def gate(self) -> tuple[bool, list[str]]:
        """The deploy gate as a deploy tool waits on it (``rollway deploy wait``): ``converged``,
        and the config also reflects the serversets as the store holds them now (a change
        still in its debounce window is not through yet). Returns (open, what is outstanding)."""
        outstanding = self.views_current() + self.converged()[1]
        return not outstanding, outstanding

    def converged(self) -> tuple[bool, list[str]]:
        """Every Envoy in the quorum holds the newest config, and nothing waits for
        admission or a second step. Returns (converged, what is outstanding)."""
        with self.lock:
            config, deploy = self.config, self.deploy
            outstanding = deploy.admission.outstanding(config) if config else ["no config published yet"]
            outstanding += deploy.settling()
            if config is not None and self.leading is False and config.generation != deploy.generation:
                outstanding.append("this replica has not rendered the newest deploy state")
            generation = config.generation if config else 0
            quorum = sorted(self.fleet.quorum(), key=lambda r: r.node_id)
        # Content versions, not generations: a follower whose serverset view lags renders the
        # same generation with other endpoints, and an endpoint-only change moves no generation.
        versions = self.plane.snapshot_versions(self.service)
        for report in quorum:
            holds = report.versions == versions if versions is not None else report.generation == generation
            if not holds or not report.caught_up:
                outstanding.append(f"envoy {report.node_id} (via {report.replica}) holds generation "
                                   f"{report.generation}" + ("" if holds else f", not the newest config ({generation})")
                                   + ("" if report.caught_up else ", has not ACKed everything sent"))
        with self.lock:
            for dup in self.fleet.duplicates():
                outstanding.append(f"node id {dup} is connected to more than one replica")
        return not outstanding, outstanding

    def status(self) -> list[StageStatus]:
        with self.lock:
            out = []
            for stage in self.routemap.stages:
                if stage.mode is Mode.ROLLING:
                    view = self.views.get(stage.name)
                    tracker = self.deploy.trackers.get(stage.name)
                    order = list(tracker.order) if tracker else sorted(view.capacity) if view else []
                    capacity = view.capacity if view else {}
                    members = {v: len(e) for v, e in (view.endpoints.items() if view else [])}
                    out.append(StageStatus(
                        stage.name, stage.mode, stage.weight,
                        tuple((v, capacity.get(v, 0.0), members.get(v, 0)) for v in order if v in capacity),
                        tracker.state if tracker else "steady", tracker.target if tracker else None,
                        view.skipped if view else 0, bool(view and view.held_empty)))
                else:
                    versions, skipped, held = [], 0, False
                    for slot in stage.slots:
                        view = self.views.get(f"{stage.name}/{slot}")
                        if view:
                            skipped += view.skipped
                            held = held or view.held_empty
                            for v, c in view.capacity.items():
                                versions.append((f"{slot}:{v}", c, len(view.endpoints.get(v, ()))))
                    out.append(StageStatus(stage.name, stage.mode, stage.weight, tuple(versions), "steady", None,
                                           skipped, held, stage.active))
            return out


class ControlPlane:
    def __init__(self, store: Store, *, debounce: float = 0.05, empty_grace: float = 30.0,
                 secrets_file: str | None = None, sample_size: int = 20000, ack_timeout: float = 30.0,
                 replica_id: str | None = None, startup_grace: float = 5.0):
        self.store = store
        self.ack_timeout = ack_timeout
        self.replica_id = replica_id or default_replica_id()
        self._due: dict[str, float] = {}          # service -> when to recompute it (the worker's queue)
        self._wake = threading.Event()
        self.startup_grace = startup_grace
        self._started = time.monotonic()
        self.debounce, self.empty_grace = debounce, empty_grace
        self.secrets_file = secrets_file
        self.sample_size = sample_size
        self.services: dict[str, ServiceController] = {}
        # Services whose stored route map (at the revision named) cannot be served, and why:
        # skipped, reported in status, /readyz and /metrics, logged once per revision.
        self.broken: dict[str, tuple[int, str]] = {}
        # Services whose newest snapshot did not build (the xDS cache serves the last good
        # one), and why: reported by the cache through ``report_snapshot``.
        self.snapshot_failures: dict[str, str] = {}
        self.store_problems: list[str] = []         # what keeps the store from being locked down (at start)
        self._listeners: list[Listener] = []
        # What this replica's xDS layer says of its Envoys: nothing until one attaches.
        self._envoys: XdsLayer = _NoEnvoys()
        self._lock = threading.Lock()
        # The one thread that decides runs from the start: a plane used without start()
        # (route maps pushed directly) still follows its serversets.
        self._stopping = threading.Event()
        threading.Thread(target=self._work, name="rollway-plane", daemon=True).start()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, refresh_interval: float = 1.0) -> None:
        self._sync_routemaps()
        # Reported at start, once: a store anyone may write is an operator's to fix.
        try:
            self.store_problems = self.store.security_problems(self.store.services())
        except StoreError as error:
            self.store_problems = [f"ZooKeeper ACLs could not be read: {error}"]
        for problem in self.store_problems:
            log.warning("store: %s", problem)
        # Replicas follow each other's pushes by re-reading route-map revisions; the same
        # loop works for both stores and bounds the lag to refresh_interval.

        def loop() -> None:
            while not self._stopping.wait(refresh_interval):
                try:
                    self._sync_routemaps()
                except Exception as error:  # store trouble: keep serving what we have
                    log.debug("route-map refresh failed: %s", error)

        threading.Thread(target=loop, name="rollway-routemap-refresh", daemon=True).start()

    def _sync_routemaps(self) -> None:
        """Loads every service's newest route map. One that cannot be read or served is
        reported and skipped: a bad service never stops the others (nor the start)."""
        for name in self.store.services():
            try:
                record = self.store.read_routemap(name)
            except (RecordError, InputError) as error:     # not JSON, or a name no service may have
                self._mark_broken(name, -1, str(error))
                continue
            if record is None:
                continue
            try:
                self._ensure_service(record)
            except (RouteMapError, InputError):
                pass            # marked broken, with its revision, by _ensure_service
            except StoreError:
                raise           # the store itself: the caller retries later
            except Exception as error:   # a bug in serving one service: the rest still serve
                log.exception("%s: loading the route map failed", printable(name))
                self._mark_broken(name, record.revision, f"{type(error).__name__}: {error}")

    def _mark_broken(self, service: str, revision: int, reason: str) -> None:
        with self._lock:
            known = self.broken.get(service)
            self.broken[service] = (revision, reason)
        if known != (revision, reason):
            serving = service in self.services
            log.error("%s: stored route map%s cannot be served, %s: %s", printable(service),
                      f" revision {revision}" if revision > 0 else "",
                      "keeping the revision already served" if serving else "skipping the service",
                      printable(reason))
            self._notify(service)

    def _clear_broken(self, service: str) -> None:
        with self._lock:
            cleared = self.broken.pop(service, None) is not None
        if cleared:
            log.info("%s: route map served again", printable(service))

    def schedule(self, service: str, delay: float = 0.0) -> None:
        """Asks the worker to recompute ``service`` (coalesced: a burst of 1,000 ACKs is a
        handful of recomputations)."""
        when = time.monotonic() + delay
        with self._lock:
            self._due[service] = min(self._due.get(service, when), when)
        self._wake.set()

    def _work(self, flush_interval: float = 0.1, tick: float = 1.0) -> None:
        """The one thread that decides: recomputes scheduled services, writes fleet records
        every ``flush_interval``, and re-checks every service each ``tick`` (time-based
        changes: an Envoy's record vanishing past the ACK timeout)."""
        next_tick = time.monotonic() + tick
        while not self._stopping.is_set():
            with self._lock:
                earliest = min(self._due.values(), default=None)
            timeout = flush_interval if earliest is None else \
                max(0.0, min(flush_interval, earliest - time.monotonic()))
            self._wake.wait(timeout)
            self._wake.clear()
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + tick
                for name in list(self.services):
                    self.schedule(name)
            with self._lock:
                ready = [s for s, when in self._due.items() if when <= now]
                for s in ready:
                    del self._due[s]
            for name in ready:
                state = self.services.get(name)
                if state is None:
                    continue
                try:
                    state.recompute()
                except Exception:
                    log.exception("%s: recomputing the filter config failed", name)
            for state in list(self.services.values()):
                try:
                    state.flush_fleet()
                except Exception:
                    log.exception("%s: writing the fleet record failed", state.service)

    def fleet_status(self, service: str) -> list[dict]:
        """Every Envoy of ``service`` as the fleet records show it (whichever replica it is
        connected to), with this replica's ledger details for its own."""
        state = self.service(service)
        local = {e["node_id"]: e for e in self.envoy_status(service)}
        with state.lock:
            reports = sorted(state.fleet.effective.values(), key=lambda r: r.node_id)
        fronted = self.services_fronted()
        out = []
        for r in reports:
            row = {"node_id": r.node_id, "replica": r.replica, "connected": r.connected,
                   "generation": r.generation, "stale": r.stale, "stale_since": r.since if r.stale else 0.0,
                   "nacks": r.nacks, "caught_up": r.caught_up, "services": fronted.get(r.node_id, [service])}
            if r.replica == self.replica_id and r.node_id in local:
                row = {**local[r.node_id], **row}
            out.append(row)
        return out

    def services_fronted(self) -> dict[str, list[str]]:
        """Node id -> every service that Envoy fronts (sorted), as each service's fleet
        records show it: an Envoy fronting several is in each one's records."""
        out: dict[str, list[str]] = {}
        for name, state in sorted(list(self.services.items())):
            with state.lock:
                node_ids = list(state.fleet.effective)
            for node_id in node_ids:
                out.setdefault(node_id, []).append(name)
        return out

    def fleet_seen(self) -> bool:
        """Whether this replica has watched the fleet long enough (``startup_grace``, at most
        the ACK timeout) for Envoys that were connected to it before a restart to be back."""
        return time.monotonic() - self._started >= min(self.startup_grace, self.ack_timeout)

    def report_envoys(self, service: str, reports: dict[str, EnvoyReport | None]) -> None:
        """The ACK ledger's callback: what Envoys connected to this replica hold."""
        state = self.services.get(service)
        if state is not None:
            state.report_envoys(reports)

    def attach(self, xds: XdsLayer) -> None:
        """This replica's xDS layer (its snapshot cache), which serves the Envoys: the plane
        hands it every new ``ServiceView`` (``publish``) and asks it what Envoys hold; it
        calls back ``report_envoys`` and ``report_snapshot``. The views already served go
        out at once."""
        self._envoys = xds
        for state in list(self.services.values()):
            xds.publish(state.view)

    def service_names(self) -> list[str]:
        """The services this replica holds, by name."""
        with self._lock:
            return sorted(self.services)

    def view(self, service: str) -> ServiceView | None:
        """What ``service`` serves now (None for a service this replica does not hold);
        no lock taken: the value is replaced whole."""
        state = self.services.get(service)
        return state.view if state is not None else None

    def envoy_status(self, service: str) -> list[dict]:
        """Per-Envoy status dicts (what each one ACKed) of this replica's Envoys."""
        return self._envoys.envoy_status(service)

    def version_health(self, service: str) -> dict[tuple[str, str], Health]:
        """(stage, version) -> what this replica's Envoys reported ``service`` served."""
        return self._envoys.version_health(service)

    def endpoint_load(self, service: str) -> EndpointLoad:
        """What this replica's Envoys have open now to ``service``'s endpoints."""
        return self._envoys.endpoint_load(service)

    def snapshot_versions(self, service: str) -> tuple | None:
        """The content versions the deploy gate compares, of the current snapshot."""
        return self._envoys.gated_versions(service)

    def report_snapshot(self, service: str, failure: str | None) -> None:
        """The xDS cache's callback: the newest snapshot of ``service`` did not build
        (``failure`` says why), or, with None, built again."""
        with self._lock:
            changed = self.snapshot_failures.get(service) != failure
            if failure is None:
                self.snapshot_failures.pop(service, None)
            else:
                self.snapshot_failures[service] = failure
        if changed and failure is None:
            log.info("%s: snapshots build again", printable(service))

    def problems(self, service: str) -> list[str]:
        """What this replica cannot serve of ``service`` as the store holds it now."""
        out = []
        with self._lock:
            broken, failure = self.broken.get(service), self.snapshot_failures.get(service)
        if broken is not None:
            revision = f"revision {broken[0]}" if broken[0] > 0 else "the stored route map"
            out.append(f"{revision} cannot be served ({broken[1]})"
                       + ("; the revision before it is served" if service in self.services else ""))
        if failure is not None:
            out.append(f"the newest snapshot did not build ({failure}); the last good one is served")
        return out

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        for state in list(self.services.values()):
            state.stop()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, service: str) -> None:
        state = self.services.get(service)
        if state is not None:
            try:
                self._envoys.publish(state.view)
            except Exception:
                log.exception("the xDS layer failed to take a view of %s", printable(service))
        for listener in list(self._listeners):
            try:
                listener(service)
            except Exception:
                log.exception("control-plane listener failed")

    def _ensure_service(self, record: RouteMapRecord) -> ServiceController:
        try:
            return self._load_service(record)
        except (RouteMapError, InputError) as error:
            self._mark_broken(record.service, record.revision, str(error))
            raise

    def _load_service(self, record: RouteMapRecord) -> ServiceController:
        with self._lock:
            state = self.services.get(record.service)
            created = state is None
            if state is None:
                state = ServiceController(self, record)
                self.services[record.service] = state
        if created:
            try:
                state.start()
            except Exception:
                # Half started (no deploy watch or campaign) it would serve for good: drop
                # it, and the route-map refresh tries again.
                with self._lock:
                    if self.services.get(record.service) is state:
                        del self.services[record.service]
                state.stop()
                raise
        elif state.record.revision != record.revision:
            state.apply(record)
        self._clear_broken(record.service)
        return state

    def refresh(self, service: str) -> None:
        """Re-reads a service's route map from the store (another replica may have pushed)."""
        record = self.store.read_routemap(service)
        if record is not None:
            self._ensure_service(record)

    # -- reads ---------------------------------------------------------------------------

    def service(self, name: str) -> ServiceController:
        check_name(name, "service")
        state = self.services.get(name)
        if state is None:
            try:
                self.refresh(name)
            except (RecordError, RouteMapError, InputError):
                pass     # recorded in self.broken, reported below
            state = self.services.get(name)
        if state is None:
            broken = self.broken.get(name)
            if broken is not None:
                raise BrokenRecord(f"service {name!r}: its stored route map cannot be served: {broken[1]}")
            raise NotFound(f"no route map for service {name!r}")
        return state

    def filter_config(self, service: str, timeout: float = 10.0) -> FilterConfig:
        """The filter config this replica serves; waits (up to ``timeout``) for a service
        whose serversets are still being read for the first time."""
        state = self.service(service)
        deadline = time.monotonic() + timeout
        while state.config is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if state.config is None:
            raise NotFound(f"service {service!r} has no filter config yet (serversets not read)")
        return state.config

    def get(self, service: str, revision: int = 0) -> RouteMapRecord:
        check_name(service, "service")
        if revision < 0:
            raise InputError(f"revision: {revision} is not a revision (0 = the current one)")
        if revision == 0:
            record = self.store.read_routemap(service)
            if record is None:
                raise NotFound(f"no route map for service {service!r}")
            return record
        for record in self.store.history(service):
            if record.revision == revision:
                return record
        raise NotFound(f"service {service!r} has no revision {revision}")

    def history(self, service: str) -> list[RouteMapRecord]:
        records = self.store.history(check_name(service, "service"))
        if not records:
            raise NotFound(f"no route map for service {service!r}")
        return records

    # -- writes --------------------------------------------------------------------------

    def push(self, text: str | dict, expected_revision: int, author: str, reason: str) -> RouteMapRecord:
        routemap = check_routemap(text)  # RouteMapError: rejected whole, nothing written
        clashes = collisions(routemap, self._other_routemaps(routemap.service))
        if clashes:
            raise RouteMapError(f"domains: {'; '.join(clashes)} (nothing stored)")
        if isinstance(expected_revision, bool) or not isinstance(expected_revision, int) or expected_revision < 0:
            raise InputError(f"expected_revision: {expected_revision!r} is not a revision (0 for a new service)")
        check_text(author, "author", 128)
        check_text(reason, "reason")
        record = RouteMapRecord(routemap.service, expected_revision + 1, routemap.document, author, reason,
                                time.time())
        self.store.write_routemap(record, expected_revision)  # ConflictError: nothing written
        log.info("route map %s revision %d pushed by %s: %s", record.service, record.revision, printable(author),
                 printable(reason))
        try:
            self._ensure_service(record)
        except (RouteMapError, InputError):
            # Unreachable while check_routemap is the one validation: reported, not raised,
            # since the revision is stored and the client must learn that it was.
            log.error("%s: revision %d stored but not served", record.service, record.revision)
        return record

    # An operator's halt or resume is a compare-and-set of the deploy state by whichever
    # replica takes the request, retried on a conflict (the leader writes it too); the
    # leader's next write conflicts in turn, and it adopts the record and decides again.
    CAS_ATTEMPTS = 20
    MAX_HALTS = MAX_HALTS      # a class attribute, so a test can lower it

    def halt(self, service: str, version: str, rollback: bool, author: str, reason: str) -> DeployState:
        """``rollway deploy halt``: ``version`` gets no new sessions in any stage of
        ``service``; with ``rollback`` a deploy taking a stage to it turns back at once."""
        service, version = check_name(service, "service"), check_version(version)
        check_text(author, "author", 128)
        check_text(reason, "reason")
        self.get(service)                                   # NotFound: no such service
        halt = Halt(version, bool(rollback), author, reason, time.time())

        def record(state: DeployState) -> DeployState:
            if version not in state.halts and len(state.halts) >= self.MAX_HALTS:
                raise InputError(f"version: {service!r} already has {self.MAX_HALTS} halted versions, the most "
                                 "a deploy state holds; resume one first (nothing stored)")
            return state.with_halt(halt)
        state = self._change_deploy_state(service, record)
        log.warning("%s: version %s halted%s by %s: %s", service, version, " and rolled back" if rollback else "",
                    printable(author), printable(reason))
        return state

    def resume(self, service: str, version: str, author: str, reason: str) -> DeployState:
        """``rollway deploy resume``: lifts ``version``'s halt (NotFound if it has none)."""
        service, version = check_name(service, "service"), check_version(version)
        check_text(author, "author", 128)
        check_text(reason, "reason")
        self.get(service)

        def lift(state: DeployState) -> DeployState:
            if version not in state.halts:
                raise NotFound(f"version {version!r} of {service!r} is not halted")
            return state.without_halt(version, author, reason, time.time())
        state = self._change_deploy_state(service, lift)
        log.warning("%s: version %s resumed by %s: %s", service, version, printable(author), printable(reason))
        return state

    def _change_deploy_state(self, service: str, change: Callable[[DeployState], DeployState]) -> DeployState:
        for _ in range(self.CAS_ATTEMPTS):
            data, version = self.store.read_deploy_state(service)
            try:
                current = DeployState.from_json(data) if data is not None else DeployState()
            except (ValueError, KeyError, TypeError) as error:
                raise BrokenRecord(f"deploy state of {service!r} is unreadable: {error}") from None
            changed = change(current)
            try:
                self.store.write_deploy_state(service, changed.to_json(), version)
            except ConflictError:
                continue                                    # written meanwhile: read again
            self.schedule(service)
            return changed
        raise ConflictError(f"the deploy state of {service!r} kept changing during {self.CAS_ATTEMPTS} attempts; "
                            "try again")

    def open_requests(self, service: str, endpoints: list[Endpoint]) -> tuple[dict[Endpoint, int], list[str]]:
        """What a drain waits on: the requests every Envoy in the quorum has open now to each
        of ``endpoints`` (their latest load reports, over every replica's fleet record), and
        the Envoys in the quorum with no fresh load report (their word is missing)."""
        controller = self.service(service)
        with controller.lock:
            load = controller.fleet.load()
            quorum = [r.node_id for r in controller.fleet.quorum()]
        return {e: load.open.get(e, 0) for e in endpoints}, sorted(n for n in quorum if n not in load.reported)

    def fleet_health(self, service: str) -> dict[tuple[str, str], Health]:
        """(stage, version) -> requests and 5xx over every replica's Envoys, as the fleet
        records show them (what the leader's guard judges)."""
        controller = self.service(service)
        with controller.lock:
            return controller.fleet.health()

    def halts(self, service: str) -> list[Halt]:
        """The service's halted versions, as its controller last read them."""
        controller = self.service(service)
        with controller.lock:
            return [h for _, h in sorted(controller.deploy.halts.items())]

    def _other_routemaps(self, service: str) -> list[RouteMap]:
        """Every other service's current route map, as stored (one that no longer parses
        claims nothing: it is not served either). The check reads, then the write is per
        service: two pushes racing on different replicas can both pass it."""
        out = []
        for name in self.store.services():
            if name == service:
                continue
            record = self.store.read_routemap(name)
            if record is None:
                continue
            try:
                out.append(check_routemap(record.document))
            except (RouteMapError, InputError):
                continue
        return out

    def rollback(self, service: str, to_revision: int, expected_revision: int, author: str,
                 reason: str) -> RouteMapRecord:
        """Pushes an earlier revision's document again (validated like any push: a revision
        stored before a rule was tightened is refused now, and nothing is stored)."""
        if to_revision < 1:
            raise InputError(f"to_revision: {to_revision} is not a revision (the first is 1)")
        old = self.get(service, to_revision)
        return self.push(old.document, expected_revision, author,
                         reason or f"rollback to revision {to_revision}")

    # -- dry run ---------------------------------------------------------------------------

    def validate(self, text: str | dict, sample_size: int | None = None) -> dict:
        """For each stage, the share of sessions that would change stage or version if this
        map were pushed now, computed with the routing core over a sample of routing ids."""
        proposed = check_routemap(text)
        current_state = self.services.get(proposed.service)
        views: dict[str, ServersetView | None] = {}
        directions: dict[str, DirectionTracker] = {}
        watched = {}
        if current_state is not None:
            with current_state.lock:
                views.update(current_state.views)
                directions.update(current_state.directions)
                watched = {key: watcher.spec for key, watcher in current_state.watchers.items()}
        for stage in proposed.stages:
            for key, spec in stage.serversets().items():
                if views.get(key) is None or watched.get(key) != spec:
                    # Read once, with no watch left behind (a dry run can name any path).
                    try:
                        members = read_now(self.store, spec)
                    except StoreError:
                        members = {}
                    views[key] = build_view(spec, members)
        proposed_config = build_filter_config(proposed, views, directions, 1, None)
        n = sample_size or self.sample_size
        rng = random.Random(7)
        now = time.time()
        ids = [new_routing_id(now, random_bits=rng.getrandbits(64)) for _ in range(n)]
        new = Router(proposed_config.without_secrets().to_text()).route_many(ids, now=now)
        new_stage, new_version = new.stage, new.version
        if current_state is not None and current_state.config is not None:
            old = Router(current_state.config.without_secrets().to_text()).route_many(ids, now=now)
            old_stage, old_version = old.stage, old.version
        else:
            old_stage, old_version = [None] * n, [None] * n
        names = [s.name for s in proposed.stages]
        if current_state is not None:
            names += [s.name for s in current_state.routemap.stages if s.name not in names]
        stages = []
        for name in names:
            before = [i for i in range(n) if old_stage[i] == name]
            stages.append({
                "stage": name,
                "current_share": len(before) / n,
                "proposed_share": sum(1 for s in new_stage if s == name) / n,
                "stage_change_share": sum(1 for i in before if new_stage[i] != name) / n,
                "version_change_share": sum(1 for i in before if new_stage[i] == name
                                            and new_version[i] != old_version[i]) / n,
            })
        changed = sum(1 for i in range(n) if (old_stage[i], old_version[i]) != (new_stage[i], new_version[i]))
        return {"service": proposed.service, "sample_size": n, "stages": stages, "total_change_share": changed / n}


def default_replica_id() -> str:
    """host-pid-random: unique per process, readable in status."""
    host = "".join(c if c.isalnum() or c in "._-" else "-" for c in socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(2)}"


__all__ = ["ControlPlane", "ConflictError", "NotFound", "RouteMapError", "ServiceController", "StageStatus"]
