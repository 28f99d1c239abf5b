"""A serverset's members as capacity per version, and a debounced watcher of one serverset.

A plain serverset holds Finagle members (other formats and version sources:
``rollway.sources.member_formats``)::

    {"serviceEndpoint": {"host": "10.1.2.3", "port": 8080}, "additionalEndpoints": {},
     "status": "ALIVE", "shard": 0, "metadata": {"version": "a1b2c3d", "weight": "1"}}

Reading is lenient: a malformed member is skipped and counted, never fatal, and the rules
are the filter's own for its inputs (``rollway.inputs``): the host must be an IP address
(Envoy refuses a whole EDS update for one name), the port 1-65535, the weight a finite
number from 0 to 10,000 (``MAX_MEMBER_WEIGHT``: Envoy's weights are uint32 and sum per
locality below 2**32), the version a name of letters, digits and ``. _ - +``. Only ALIVE
members count; capacity of a version = sum of its members' weights (default 1).

``ServersetWatcher`` batches changes (a deploy touching 100 hosts is one recomputation,
``debounce`` seconds after the first change) and guards against a serverset that suddenly
looks empty: the last non-empty view is kept for ``empty_grace`` seconds before an empty
one is believed. While the store is disconnected nothing changes at all::

    watcher = ServersetWatcher(store, "/discovery/web/prod", on_view, debounce=0.05)
    watcher.start()   # on_view(ServersetView) from a background thread
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rollway.inputs import InputError, check_version
from rollway.sources.member_formats import DRAINING, Member, ServersetSpec, accepts, member_json, read_member
from rollway.sources.store import Handle, Store
from rollway.sources.view_policy import DebounceWindow, EmptyGrace

log = logging.getLogger(__name__)
__all__ = ["Member", "MemberReading", "ServersetSpec", "ServersetView", "ServersetWatcher", "VersionPathsWatch",
           "build_view", "member_json", "parse_member", "version_paths", "read_members", "read_now", "read_once", "read_view_once",
           "watch_serverset"]


def parse_member(data: bytes) -> tuple[Member | None, str | None]:
    """(member, None) or (None, why it was skipped), for a plain (Finagle) serverset."""
    return read_member(_PLAIN, "member_", data)


_PLAIN = ServersetSpec("/")


@dataclass(frozen=True)
class ServersetView:
    path: str
    capacity: dict[str, float]                   # version -> sum of ALIVE weights
    endpoints: dict[str, tuple[tuple[str, int, float], ...]]  # version -> (host, port, weight)
    members: int                                 # ALIVE members counted
    skipped: int                                 # malformed members in this snapshot
    held_empty: bool = False                     # an empty view is being held back
    time: float = field(default_factory=time.time)
    # version -> (host, port) of members being drained (status STOPPING): no capacity, but
    # Envoy keeps them (DRAINING) so their open requests are counted until they go.
    draining: dict[str, tuple[tuple[str, int], ...]] = field(default_factory=dict)


ParseCache = dict[str, tuple[bytes, "Member | None", "str | None"]]


@dataclass(frozen=True)
class MemberReading:
    """One child of a serverset as its format reads it: the member, or why it was skipped."""
    name: str                 # "<version>/<member>" where versions are child paths
    member: Member | None
    why: str | None


def _read(spec: ServersetSpec, name: str, data: bytes) -> tuple[Member | None, str | None]:
    """One child as the format reads it: (member, None), (None, why it is skipped), or
    (None, None) for a child the format does not name as a member (a Finagle serverset's lock
    node): not listed, not counted. Where versions are child paths the name is
    ``<version>/<member>``."""
    version, _, child = name.rpartition("/") if spec.by_path else (None, "", name)
    if not accepts(spec, child):
        return None, None
    return read_member(spec, child, data, version)


def read_members(spec: ServersetSpec, members: dict[str, bytes]) -> list[MemberReading]:
    """Every child the format counts as a member, read (``rollway serverset show``)."""
    readings = (MemberReading(name, *_read(spec, name, members[name])) for name in sorted(members))
    return [r for r in readings if r.member is not None or r.why is not None]


def build_view(spec: ServersetSpec | str, members: dict[str, bytes], cache: ParseCache | None = None) -> ServersetView:
    """Aggregates members into capacity per version. With a ``cache`` (name -> (data,
    parsed)), only children whose bytes changed are read again: one host changing in a
    5,000-member serverset costs one parse, not 5,000."""
    spec = ServersetSpec.of(spec)
    capacity: dict[str, float] = {}
    endpoints: dict[str, list[tuple[str, int, float]]] = {}
    draining: dict[str, list[tuple[str, int]]] = {}
    alive = skipped = 0
    if cache is not None:
        for gone in [n for n in cache if n not in members]:
            del cache[gone]
    for name in sorted(members):
        data = members[name]
        cached = cache.get(name) if cache is not None else None
        if cached is not None and cached[0] == data:
            member, why = cached[1], cached[2]
        else:
            member, why = _read(spec, name, data)
            if cache is not None:
                cache[name] = (data, member, why)
        if member is None:
            if why is not None:
                skipped += 1
                log.debug("serverset %s: skipping %s: %s", spec.path, name, why)
            continue
        if member.status == DRAINING:
            draining.setdefault(member.version, []).append((member.host, member.port))
        if member.status != "ALIVE":
            continue
        alive += 1
        capacity[member.version] = capacity.get(member.version, 0.0) + member.weight
        endpoints.setdefault(member.version, []).append((member.host, member.port, member.weight))
    return ServersetView(spec.path, capacity, {v: tuple(e) for v, e in endpoints.items()}, alive, skipped,
                         draining={v: tuple(e) for v, e in draining.items()})


def watch_serverset(store: Store, spec: ServersetSpec, callback: Callable[[dict[str, bytes]], None]) -> Handle:
    """The store's watch of a serverset's children: one path, or one per version path."""
    if spec.by_path:
        return VersionPathsWatch(store, spec.path, callback)
    return store.watch_members(spec.path, callback)


def read_once(store: Store, spec: ServersetSpec, timeout: float = 5.0) -> dict[str, bytes] | None:
    """The serverset's children as a watch first delivers them, or None if the store gave
    nothing within ``timeout`` (kazoo waits without end while it reconnects)."""
    got = threading.Event()
    box: dict[str, dict[str, bytes]] = {}

    def first(members: dict[str, bytes]) -> None:
        box.setdefault("members", members)
        got.set()

    handle = watch_serverset(store, spec, first)
    try:
        got.wait(timeout)
    finally:
        handle.close()
    return box.get("members")


def read_view_once(store: Store, spec: ServersetSpec | str, timeout: float = 5.0) -> ServersetView:
    spec = ServersetSpec.of(spec)
    return build_view(spec, read_once(store, spec, timeout) or {})


MAX_VERSION_PATHS = 256   # version child paths one serverset watches (a deploy keeps a few live)


def version_paths(names: list[str]) -> tuple[list[str], dict[str, str]]:
    """(the child paths read as versions, {child not read: why}): a name that is not a
    version, or beyond the last ``MAX_VERSION_PATHS`` by name."""
    usable, refused = [], {}
    for name in sorted(names):
        try:
            usable.append(check_version(name, "version path"))
        except InputError as error:
            refused[name] = str(error)
    for name in usable[:-MAX_VERSION_PATHS]:
        refused[name] = f"more than {MAX_VERSION_PATHS} version paths: only the last by name are read"
    return usable[-MAX_VERSION_PATHS:], refused


def read_now(store: Store, spec: ServersetSpec) -> dict[str, bytes]:
    """The serverset's children read once, directly (names as ``read_members`` takes them)."""
    if not spec.by_path:
        return store.read_members(spec.path)
    return {f"{version}/{name}": data for version in version_paths(store.read_children(spec.path))[0]
            for name, data in store.read_members(f"{spec.path}/{version}").items()}


class VersionPathsWatch(Handle):
    """The members of every version child path of ``path`` (``<path>/<version>/<member>``),
    as one {"<version>/<member>": data}: a child path that appears is watched at once, one that
    goes is dropped. A child whose name is not a version, or beyond ``MAX_VERSION_PATHS``, is
    not watched (logged once). Watches are the store's own, so they survive session loss."""

    def __init__(self, store: Store, path: str, callback: Callable[[dict[str, bytes]], None]):
        self.store, self.path, self.callback = store, path, callback
        self._changing = threading.Lock()     # one change of the version list at a time
        self._lock = threading.Lock()         # the members held, and delivery in order
        self._handles: dict[str, Handle] = {}
        self._members: dict[str, dict[str, bytes]] = {}
        self._wanted: set[str] = set()
        self._refused: set[str] = set()
        self._starting = False                # new version watches are starting: deliver once after
        self._closed = False
        self._children = store.watch_children(path, self._on_versions)

    def _usable(self, names: list[str]) -> list[str]:
        usable, refused = version_paths(names)
        for name, why in refused.items():
            if name not in self._refused:
                log.warning("serverset %s: not watching child %s: %s", self.path, name[:64], why)
        self._refused = set(refused)      # only what is refused now: bounded by the children
        return usable

    def _on_versions(self, names: list[str]) -> None:
        with self._changing:
            if self._closed:
                return
            wanted = set(self._usable(names))
            with self._lock:
                self._wanted, self._starting = wanted, True
                for gone in [v for v in self._members if v not in wanted]:
                    del self._members[gone]
            try:
                for gone in [v for v in self._handles if v not in wanted]:
                    self._handles.pop(gone).close()
                for version in sorted(wanted - set(self._handles)):
                    self._handles[version] = self.store.watch_members(
                        f"{self.path}/{version}", functools.partial(self._on_members, version))
            finally:
                with self._lock:
                    self._starting = False
        self._deliver()

    def _on_members(self, version: str, members: dict[str, bytes]) -> None:
        with self._lock:
            if version not in self._wanted:
                return
            self._members[version] = members
        self._deliver()

    def _deliver(self) -> None:
        with self._lock:   # the callback only stores and schedules: it never calls back in
            # While version watches start (each calls back at once), a view would lack the
            # versions not yet read: one delivery follows them all.
            if not self._closed and not self._starting:
                self.callback({f"{v}/{n}": d for v, held in self._members.items() for n, d in held.items()})

    def close(self) -> None:
        with self._changing:
            self._closed = True
            self._children.close()
            handles, self._handles = list(self._handles.values()), {}
        for handle in handles:
            handle.close()


class ServersetWatcher:
    def __init__(self, store: Store, spec: ServersetSpec | str, on_view: Callable[[ServersetView], None], *,
                 debounce: float = 0.05, empty_grace: float = 30.0):
        self.spec = ServersetSpec.of(spec)
        self.store, self.path, self.on_view = store, self.spec.path, on_view
        self.debounce, self.empty_grace = debounce, empty_grace
        self.view: ServersetView | None = None
        self._window = DebounceWindow(debounce)
        self._grace = EmptyGrace(empty_grace)
        self._pending: dict[str, bytes] | None = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._handle: Handle | None = None
        self._parsed: ParseCache = {}

    def start(self) -> None:
        self._handle = watch_serverset(self.store, self.spec, self._on_members)

    def stop(self) -> None:
        if self._handle:
            self._handle.close()
        with self._lock:
            if self._timer:
                self._timer.cancel()

    @property
    def suspicious_empties(self) -> int:
        """How often the serverset went from members to none (each held for the grace)."""
        return self._grace.holds

    def _on_members(self, members: dict[str, bytes]) -> None:
        with self._lock:
            self._pending = members
            if self._window.notice(time.monotonic()):   # the first change of a batch starts the clock
                self._timer = threading.Timer(self.debounce, self._flush)
                self._timer.daemon = True
                self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            members, self._pending, self._timer = self._pending, None, None
            self._window.expire()
        if members is None:
            return
        view = build_view(self.spec, members, self._parsed)
        previous = self.view
        holds = self._grace.holds
        left = self._grace.hold_for(previous.members if previous else 0, view.members, time.time())
        if left is None:
            self._publish(view)
            return
        assert previous is not None      # a hold needs a view shown before
        if self._grace.holds != holds:
            log.warning("serverset %s went from %d members to none; holding the last view for %.0fs",
                        self.path, previous.members, self.empty_grace)
        self._publish(ServersetView(previous.path, previous.capacity, previous.endpoints, previous.members,
                                    view.skipped, held_empty=True, draining=previous.draining))
        # Look again when the grace period ends, even if nothing else changes.
        retry = threading.Timer(left + 0.01, self._on_members, args=(members,))
        retry.daemon = True
        retry.start()

    def _publish(self, view: ServersetView) -> None:
        self.view = view
        self.on_view(view)
