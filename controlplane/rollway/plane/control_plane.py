"""Control-plane state: what each service's route map, serversets and deploys say now.

Transport-free (the gRPC handlers in ``api.py`` and the xDS server sit on top), like
go-control-plane's snapshot cache. For each service with a route map it keeps one
``ServersetWatcher`` per serverset, one ``DirectionTracker`` per rolling stage, and the
current filter config (JSON for the Envoy filter) with a generation that goes up whenever
its content changes. Listeners hear about every new filter config / status.

Route-map operations (validate, push with compare-and-set, get, history, rollback) go
through the store, so several control-plane replicas against one ZooKeeper agree.

Usage::

    plane = ControlPlane(open_store("file:///tmp/rollway"))
    plane.start()
    plane.push(routemap_text, expected_revision=0, author="alice", reason="first map")
    plane.filter_config("web")      # -> dict for the Envoy filter
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from rollway import Router, new_routing_id
from rollway.model.direction import DirectionTracker
from rollway.model.publish import build_filter_config
from rollway.model.routemap import RouteMap, RouteMapError, parse_routemap
from rollway.sources.serverset import ServersetView, ServersetWatcher, build_view
from rollway.sources.store import ConflictError, RouteMapRecord, Store

log = logging.getLogger(__name__)

Listener = Callable[[str], None]  # called with the service name after any change


class NotFound(LookupError):
    pass


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


class ServiceState:
    def __init__(self, plane: "ControlPlane", record: RouteMapRecord):
        self.plane = plane
        self.lock = threading.RLock()
        self.record = record
        self.routemap = parse_routemap(record.document)
        self.views: dict[str, ServersetView | None] = {}
        self.watchers: dict[str, ServersetWatcher] = {}
        self.directions: dict[str, DirectionTracker] = {}
        self.generation = 0
        self.config: dict | None = None
        self.updated = time.time()

    @property
    def service(self) -> str:
        return self.routemap.service

    def start(self) -> None:
        self._sync_watchers()
        self._recompute()

    def stop(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop()

    def apply(self, record: RouteMapRecord) -> None:
        with self.lock:
            self.record = record
            self.routemap = parse_routemap(record.document)
        self._sync_watchers()
        self._recompute()

    def _sync_watchers(self) -> None:
        wanted = {key: path for stage in self.routemap.stages for key, path in stage.serversets().items()}
        with self.lock:
            for key in list(self.watchers):
                if key not in wanted or self.watchers[key].path != wanted[key]:
                    self.watchers.pop(key).stop()
                    self.views.pop(key, None)
            new = {k: p for k, p in wanted.items() if k not in self.watchers}
            for key, path in new.items():
                self.watchers[key] = ServersetWatcher(
                    self.plane.store, path, lambda view, key=key: self._on_view(key, view),
                    debounce=self.plane.debounce, empty_grace=self.plane.empty_grace)
        for key in new:
            self.watchers[key].start()

    def _on_view(self, key: str, view: ServersetView) -> None:
        with self.lock:
            self.views[key] = view
            stage = next((s for s in self.routemap.stages if s.name == key), None)
            if stage is not None and stage.mode == "rolling":
                self.directions.setdefault(key, DirectionTracker()).observe(view.capacity)
        self._recompute()

    def _recompute(self) -> None:
        with self.lock:
            candidate = build_filter_config(self.routemap, self.views, self.directions, self.generation,
                                            self.plane.secrets_file)
            previous = self.config
            same = previous is not None and {**previous, "generation": 0} == {**candidate, "generation": 0}
            if same:
                return
            self.generation += 1
            candidate["generation"] = self.generation
            self.config = candidate
            self.updated = time.time()
        self.plane._notify(self.service)

    def status(self) -> list[StageStatus]:
        with self.lock:
            out = []
            for stage in self.routemap.stages:
                if stage.mode == "rolling":
                    view = self.views.get(stage.name)
                    tracker = self.directions.get(stage.name)
                    order = list(tracker.order) if tracker else []
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
                 secrets_file: str | None = None, sample_size: int = 20000):
        self.store = store
        self.debounce, self.empty_grace = debounce, empty_grace
        self.secrets_file = secrets_file
        self.sample_size = sample_size
        self.services: dict[str, ServiceState] = {}
        self._listeners: list[Listener] = []
        # Set by the xDS layer: service -> [per-Envoy status dicts] (what each one ACKed).
        self.envoy_status: Callable[[str], list[dict]] = lambda service: []
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, refresh_interval: float = 1.0) -> None:
        self._sync_routemaps()
        # Replicas follow each other's pushes by re-reading route-map revisions; the same
        # loop works for both stores and bounds the lag to refresh_interval.
        self._stopping = threading.Event()

        def loop() -> None:
            while not self._stopping.wait(refresh_interval):
                try:
                    self._sync_routemaps()
                except Exception as error:  # store trouble: keep serving what we have
                    log.debug("route-map refresh failed: %s", error)

        threading.Thread(target=loop, name="rollway-routemap-refresh", daemon=True).start()

    def _sync_routemaps(self) -> None:
        for name in self.store.services():
            record = self.store.read_routemap(name)
            if record is not None:
                self._ensure_service(record)

    def stop(self) -> None:
        if getattr(self, "_stopping", None):
            self._stopping.set()
        for state in list(self.services.values()):
            state.stop()

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def _notify(self, service: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(service)
            except Exception:
                log.exception("control-plane listener failed")

    def _ensure_service(self, record: RouteMapRecord) -> ServiceState:
        with self._lock:
            state = self.services.get(record.service)
            created = state is None
            if created:
                state = ServiceState(self, record)
                self.services[record.service] = state
        if created:
            state.start()
        elif state.record.revision != record.revision:
            state.apply(record)
        return state

    def refresh(self, service: str) -> None:
        """Re-reads a service's route map from the store (another replica may have pushed)."""
        record = self.store.read_routemap(service)
        if record is not None:
            self._ensure_service(record)

    # -- reads ---------------------------------------------------------------------------

    def service(self, name: str) -> ServiceState:
        state = self.services.get(name)
        if state is None:
            self.refresh(name)
            state = self.services.get(name)
        if state is None:
            raise NotFound(f"no route map for service {name!r}")
        return state

    def filter_config(self, service: str) -> dict:
        config = self.service(service).config
        assert config is not None
        return config

    def get(self, service: str, revision: int = 0) -> RouteMapRecord:
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
        records = self.store.history(service)
        if not records:
            raise NotFound(f"no route map for service {service!r}")
        return records

    # -- writes --------------------------------------------------------------------------

    def push(self, text: str | dict, expected_revision: int, author: str, reason: str) -> RouteMapRecord:
        routemap = parse_routemap(text)  # RouteMapError: rejected whole, nothing written
        self._check_filter_config(routemap)
        record = RouteMapRecord(routemap.service, expected_revision + 1, routemap.document, author, reason,
                                time.time())
        self.store.write_routemap(record, expected_revision)  # ConflictError: nothing written
        log.info("route map %s revision %d pushed by %s: %s", record.service, record.revision, author, reason)
        self._ensure_service(record)
        return record

    def rollback(self, service: str, to_revision: int, expected_revision: int, author: str,
                 reason: str) -> RouteMapRecord:
        old = self.get(service, to_revision)
        return self.push(old.document, expected_revision, author,
                         reason or f"rollback to revision {to_revision}")

    def _check_filter_config(self, routemap: RouteMap) -> None:
        """The core must accept what this map will produce, before it is stored."""
        config = build_filter_config(routemap, {}, {}, 1, None)
        # Signing keys live outside the config; validate shape with stand-in secrets.
        secrets = {}
        if "signing_key_id" in routemap.routing_id:
            secrets[routemap.routing_id["signing_key_id"]] = b"x" * 32
        if routemap.override:
            secrets[routemap.override["key_id"]] = b"x" * 32
        try:
            Router(json.dumps(config), secrets=secrets)
        except ValueError as error:
            raise RouteMapError(f"filter config: {error}") from None

    # -- dry run ---------------------------------------------------------------------------

    def validate(self, text: str | dict, sample_size: int | None = None) -> dict:
        """For each stage, the share of sessions that would change stage or version if this
        map were pushed now, computed with the routing core over a sample of routing ids."""
        proposed = parse_routemap(text)
        self._check_filter_config(proposed)
        current_state = self.services.get(proposed.service)
        views: dict[str, ServersetView | None] = {}
        directions: dict[str, DirectionTracker] = {}
        if current_state is not None:
            with current_state.lock:
                views.update(current_state.views)
                directions.update(current_state.directions)
        for stage in proposed.stages:
            for key, path in stage.serversets().items():
                if key not in views or views[key] is None or views[key].path != path:
                    views[key] = read_view_once(self.store, path)
        proposed_config = build_filter_config(proposed, views, directions, 1, None)
        n = sample_size or self.sample_size
        rng = random.Random(7)
        now = time.time()
        ids = [new_routing_id(now, random_bits=rng.getrandbits(64)) for _ in range(n)]
        new = Router(json.dumps(_without_secrets(proposed_config))).route_many(ids, now=now)
        new_stage, new_version = new.stage, new.version
        if current_state is not None and current_state.config is not None:
            old = Router(json.dumps(_without_secrets(current_state.config))).route_many(ids, now=now)
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


def _without_secrets(config: dict) -> dict:
    """Dry runs route with the core but hold no keys: signing affects ids, not routing."""
    doc = dict(config)
    doc.pop("secrets_file", None)
    doc.pop("override", None)
    rid = dict(doc.get("routing_id", {}))
    rid.pop("signing_key_id", None)
    doc["routing_id"] = rid
    return doc


def read_view_once(store: Store, path: str, timeout: float = 5.0) -> ServersetView:
    got = threading.Event()
    box: dict[str, dict] = {}

    def on_members(members: dict[str, bytes]) -> None:
        box.setdefault("members", members)
        got.set()

    handle = store.watch_members(path, on_members)
    try:
        got.wait(timeout)
    finally:
        handle.close()
    return build_view(path, box.get("members", {}))


__all__ = ["ControlPlane", "ConflictError", "NotFound", "RouteMapError", "ServiceState", "StageStatus"]
