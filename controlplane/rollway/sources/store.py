"""Where Rollway keeps and watches the world: one interface, two backends.

``open_store("zk://127.0.0.1:2181/chroot")`` talks to ZooKeeper through kazoo;
``open_store("file:///var/lib/rollway")`` keeps the same things in a local directory
(the embedded default for the quick start). Both provide:

- serversets: ``watch_members(path, callback)`` calls ``callback({name: data})`` with the
  whole current membership each time it changes; ``announce(path, data)`` registers a
  member that lives as long as its handle (ZooKeeper: an ephemeral sequential znode; file
  store: a file kept fresh by a heartbeat, ignored once stale);
- route maps: ``read_routemap``, ``write_routemap`` (compare-and-set on the revision, the
  history entry written in the same step), ``history``, ``services``.

Usage::

    store = open_store("zk://127.0.0.1:2181")
    store.start()
    handle = store.announce("/discovery/web/prod", member_json)
    watch = store.watch_members("/discovery/web/prod", lambda members: print(len(members)))
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlparse

MembersCallback = Callable[[dict[str, bytes]], None]
StateCallback = Callable[[str], None]

# Store states, as reported to listeners and in status.
CONNECTED, SUSPENDED, LOST = "connected", "suspended", "lost"


class StoreError(RuntimeError):
    """The store could not do what was asked (not connected, I/O failure)."""


class ConflictError(StoreError):
    """Compare-and-set failed: someone else changed the route map first."""


@dataclass(frozen=True)
class RouteMapRecord:
    service: str
    revision: int
    document: dict
    author: str
    reason: str
    time: float

    def to_json_dict(self) -> dict:
        return {"service": self.service, "revision": self.revision, "document": self.document,
                "author": self.author, "reason": self.reason, "time": self.time}

    @classmethod
    def from_json_dict(cls, d: dict) -> "RouteMapRecord":
        return cls(d["service"], int(d["revision"]), d["document"], d.get("author", ""), d.get("reason", ""),
                   float(d.get("time", 0.0)))


class Handle(abc.ABC):
    @abc.abstractmethod
    def close(self) -> None: ...


class Store(abc.ABC):
    url: str

    def __init__(self) -> None:
        self._state = SUSPENDED
        self._state_listeners: list[StateCallback] = []
        self._lock = threading.Lock()

    @property
    def state(self) -> str:
        return self._state

    def add_state_listener(self, callback: StateCallback) -> None:
        self._state_listeners.append(callback)

    def _set_state(self, state: str) -> None:
        self._state = state
        for callback in list(self._state_listeners):
            callback(state)

    @abc.abstractmethod
    def start(self, timeout: float = 15.0) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def watch_members(self, path: str, callback: MembersCallback) -> Handle: ...

    @abc.abstractmethod
    def announce(self, path: str, data: bytes) -> Handle: ...

    @abc.abstractmethod
    def read_routemap(self, service: str) -> RouteMapRecord | None: ...

    @abc.abstractmethod
    def write_routemap(self, record: RouteMapRecord, expected_revision: int) -> None:
        """Stores ``record`` (whose revision must be expected_revision + 1) and its history
        entry atomically, or raises ConflictError and writes nothing."""

    @abc.abstractmethod
    def history(self, service: str) -> list[RouteMapRecord]: ...

    @abc.abstractmethod
    def services(self) -> list[str]: ...


def open_store(url: str, **options) -> Store:
    parsed = urlparse(url)
    if parsed.scheme == "zk":
        from rollway.sources.zookeeper_store import ZooKeeperStore

        if not parsed.netloc:
            raise ValueError(f"store {url!r}: expected zk://HOST:PORT[,HOST:PORT][/chroot]")
        return ZooKeeperStore(parsed.netloc, parsed.path or "", url=url, **options)
    if parsed.scheme == "file":
        from rollway.sources.file_store import FileStore

        root = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
        if not root:
            raise ValueError(f"store {url!r}: expected file:///path/to/dir")
        return FileStore(root, url=url, **options)
    raise ValueError(f"store {url!r}: use zk://HOST:PORT[/chroot] or file://DIR")
