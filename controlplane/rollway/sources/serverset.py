"""Serverset members (Finagle/Aurora format) and a debounced watcher of one serverset.

Member znode data::

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

import json
import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rollway.inputs import InputError, check_ip, check_port, check_version, check_weight
from rollway.sources.store import Handle, Store
from rollway.sources.view_policy import DebounceWindow, EmptyGrace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Member:
    host: str
    port: int
    version: str
    weight: float
    status: str


MAX_MEMBER_BYTES = 64 * 1024   # a member document; real ones are ~200 bytes


def parse_member(data: bytes) -> tuple[Member | None, str | None]:
    """(member, None) or (None, why it was skipped)."""
    if len(data) > MAX_MEMBER_BYTES:
        return None, f"more than {MAX_MEMBER_BYTES} bytes"
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None, "not JSON"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    endpoint = doc.get("serviceEndpoint")
    if not isinstance(endpoint, dict):
        return None, "serviceEndpoint missing"
    status = doc.get("status", "ALIVE")
    if not isinstance(status, str):
        return None, "status invalid"
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        return None, "metadata invalid"
    try:
        host = check_ip(endpoint.get("host"), "serviceEndpoint.host")
        port = check_port(endpoint.get("port"), "serviceEndpoint.port")
        version = check_version(metadata.get("version"), "metadata.version")
        weight = check_weight(metadata.get("weight", "1"), "metadata.weight")
    except InputError as error:
        return None, str(error)
    return Member(host, port, version, weight, status), None


def check_member(host: str, port: int, version: str, weight: float) -> bytes:
    """The member document an announcer writes, refused (InputError) where the reader would
    skip it: nothing is announced that no control plane would count."""
    data = member_json(check_ip(host, "host"), check_port(port, "port"), check_version(version), weight)
    member, why = parse_member(data)
    if member is None:
        raise InputError(why or "member refused")
    return data


def member_json(host: str, port: int, version: str, weight: float = 1.0, status: str = "ALIVE",
                shard: int = 0) -> bytes:
    """The full Finagle member document (writers always emit every field)."""
    weight_text = str(int(weight)) if math.isfinite(weight) and float(weight).is_integer() else str(weight)
    return json.dumps({"serviceEndpoint": {"host": host, "port": port}, "additionalEndpoints": {},
                       "status": status, "shard": shard,
                       "metadata": {"version": version, "weight": weight_text}}).encode()


@dataclass(frozen=True)
class ServersetView:
    path: str
    capacity: dict[str, float]                   # version -> sum of ALIVE weights
    endpoints: dict[str, tuple[tuple[str, int, float], ...]]  # version -> (host, port, weight)
    members: int                                 # ALIVE members counted
    skipped: int                                 # malformed members in this snapshot
    held_empty: bool = False                     # an empty view is being held back
    time: float = field(default_factory=time.time)


ParseCache = dict[str, tuple[bytes, "Member | None", "str | None"]]


def build_view(path: str, members: dict[str, bytes], cache: ParseCache | None = None) -> ServersetView:
    """Aggregates members into capacity per version. With a ``cache`` (name -> (data,
    parsed)), only members whose bytes changed are parsed again: one host changing in a
    5,000-member serverset costs one JSON parse, not 5,000."""
    capacity: dict[str, float] = {}
    endpoints: dict[str, list[tuple[str, int, float]]] = {}
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
            member, why = parse_member(data)
            if cache is not None:
                cache[name] = (data, member, why)
        if member is None:
            skipped += 1
            log.debug("serverset %s: skipping %s: %s", path, name, why)
            continue
        if member.status != "ALIVE":
            continue
        alive += 1
        capacity[member.version] = capacity.get(member.version, 0.0) + member.weight
        endpoints.setdefault(member.version, []).append((member.host, member.port, member.weight))
    return ServersetView(path, capacity, {v: tuple(e) for v, e in endpoints.items()}, alive, skipped)


class ServersetWatcher:
    def __init__(self, store: Store, path: str, on_view: Callable[[ServersetView], None], *,
                 debounce: float = 0.05, empty_grace: float = 30.0):
        self.store, self.path, self.on_view = store, path, on_view
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
        self._handle = self.store.watch_members(self.path, self._on_members)

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
        view = build_view(self.path, members, self._parsed)
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
                                    view.skipped, held_empty=True))
        # Look again when the grace period ends, even if nothing else changes.
        retry = threading.Timer(left + 0.01, self._on_members, args=(members,))
        retry.daemon = True
        retry.start()

    def _publish(self, view: ServersetView) -> None:
        self.view = view
        self.on_view(view)
