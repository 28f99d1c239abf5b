"""Where Rollway keeps and watches the world: five parts, one base class, two backends.

``open_store("zk://127.0.0.1:2181/chroot")`` talks to ZooKeeper through kazoo;
``open_store("file:///var/lib/rollway")`` keeps the same things in a local directory
(the embedded default for the quick start). Both provide:

- serversets: ``watch_members(path, callback)`` calls ``callback({name: data})`` with every
  child of ``path`` (whatever its format: the reader picks its members by name) each time
  they change; ``watch_children(path, callback)`` calls ``callback([name])`` with the
  child paths (versions laid out as paths); ``announce(path, data, name=None)`` registers a
  member that lives as long as its handle (ZooKeeper: an ephemeral znode, ``member_``
  sequential unless named; file store: a file kept fresh by a heartbeat, ignored once stale);
- route maps: ``read_routemap``, ``write_routemap`` (compare-and-set on the revision, the
  history entry written in the same step), ``history``, ``services``;
- deploy state, one opaque record per service: ``read_deploy_state`` -> (data, version),
  ``write_deploy_state(service, data, expected_version)`` (compare-and-set; -1 creates),
  ``watch_deploy_state`` (callback now and after every change);
- leadership per service: ``campaign(service, identity, on_change)`` -> a ``Campaign``
  whose ``on_change(True/False)`` follows this replica gaining and losing leadership
  (ZooKeeper: an ephemeral znode; file store: a lease file renewed every lease/3);
- fleet reports, one opaque record per control-plane replica per service (what its Envoys
  have ACKed): ``publish_fleet(service, replica, data)`` -> a ``FleetRecord`` that lives as
  long as its handle (like a member), ``watch_fleet(service, callback)`` ->
  ``callback({replica: data})``.

Service and replica names are single path components: letters, digits, ``.``, ``_``, ``-``.

Usage::

    store = open_store("zk://127.0.0.1:2181")
    store.start()
    handle = store.announce("/discovery/web/prod", member_json)
    watch = store.watch_members("/discovery/web/prod", lambda members: print(len(members)))
"""

from __future__ import annotations

import abc
import contextlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlparse

from rollway.inputs import InputError, check_zk_path
from rollway.inputs import check_name as check_name  # re-exported: the stores' name rule

MembersCallback = Callable[[dict[str, bytes]], None]
ChildrenCallback = Callable[[list[str]], None]
StateCallback = Callable[[str], None]
DeployStateCallback = Callable[[bytes | None, int], None]   # (data, version); (None, -1) when absent
LeadershipCallback = Callable[[bool], None]
FleetCallback = Callable[[dict[str, bytes]], None]          # {replica: data}

# Store states, as reported to listeners and in status.
CONNECTED, SUSPENDED, LOST = "connected", "suspended", "lost"


class StoreError(RuntimeError):
    """The store could not do what was asked (not connected, I/O failure)."""


class ConflictError(StoreError):
    """Compare-and-set failed: someone else changed the route map first."""


class RecordError(StoreError):
    """A record in the store that cannot be read (edited by hand, or written by another
    program): reported and skipped, never fatal to the other services."""


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
    def from_json_dict(cls, d: dict) -> RouteMapRecord:
        return cls(d["service"], int(d["revision"]), d["document"], d.get("author", ""), d.get("reason", ""),
                   float(d.get("time", 0.0)))

    @classmethod
    def decode(cls, data: bytes | str, where: str) -> RouteMapRecord:
        """A stored record, or RecordError naming ``where`` and what is wrong with it."""
        try:
            d = json.loads(data)
            record = cls.from_json_dict(d)
            if not isinstance(record.document, dict) or not isinstance(record.service, str) \
                    or not isinstance(record.author, str) or not isinstance(record.reason, str):
                raise TypeError("document, service, author or reason of the wrong type")
            return record
        except (ValueError, KeyError, TypeError, RecursionError) as error:
            raise RecordError(f"route-map record {where} is unreadable: {type(error).__name__}: {error}") from None


class Handle(abc.ABC):
    @abc.abstractmethod
    def close(self) -> None: ...


class Campaign(Handle):
    """One replica's candidacy for the leadership of one service.

    ``on_change(True/False)`` is called from a background thread (never while a store lock
    is held) each time this replica gains or loses leadership, including a final False when
    ``close()`` gives up a held leadership. Leadership is lost at the first sign of trouble
    (ZooKeeper connection suspended, lease not renewed): two leaders are worse than none for
    a moment."""

    @property
    @abc.abstractmethod
    def leading(self) -> bool:
        """Whether this replica leads right now."""

    @abc.abstractmethod
    def leader(self) -> str | None:
        """The current leader's identity, read from the store (None if nobody leads)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Stops campaigning and gives up leadership at once if held, so that another
        replica can take over without waiting for a timeout."""


class FleetRecord(Handle):
    """This replica's fleet report for one service. It lives as long as the handle (and
    the process: a dead replica's record goes away like an ephemeral node)."""

    @abc.abstractmethod
    def update(self, data: bytes) -> None:
        """Replaces the record's data. While the store is disconnected the data is kept and
        published once reconnected, so callers need not retry."""

    @abc.abstractmethod
    def close(self) -> None:
        """Removes the record."""


def check_version(expected_version: int) -> int:
    if isinstance(expected_version, bool) or not isinstance(expected_version, int) or expected_version < -1:
        raise ValueError(f"expected_version {expected_version!r}: use -1 (create) or a version read before")
    return expected_version


def check_member_path(path: str) -> str:
    """A serverset path as both backends use it: absolute, no trailing slash."""
    return check_zk_path(path.rstrip("/") if isinstance(path, str) else path, "path")


# -- the five parts, as callers see them ------------------------------------------------------
# A caller that needs one part asks for that Protocol (the serverset watcher for Serversets,
# the announcer for Serversets, the operator API for RouteMaps); a ``Store`` is all five.


class Serversets(Protocol):
    def watch_members(self, path: str, callback: MembersCallback) -> Handle: ...
    def watch_children(self, path: str, callback: ChildrenCallback) -> Handle: ...
    def announce(self, path: str, data: bytes, name: str | None = None) -> Handle: ...
    def read_members(self, path: str) -> dict[str, bytes]: ...
    def read_children(self, path: str) -> list[str]: ...
    def set_member(self, path: str, name: str, data: bytes) -> None: ...
    def remove_member(self, path: str, name: str) -> None: ...


class RouteMaps(Protocol):
    def read_routemap(self, service: str) -> RouteMapRecord | None: ...
    def write_routemap(self, record: RouteMapRecord, expected_revision: int) -> None: ...
    def history(self, service: str) -> list[RouteMapRecord]: ...
    def services(self) -> list[str]: ...


class DeployStates(Protocol):
    def read_deploy_state(self, service: str) -> tuple[bytes | None, int]: ...
    def write_deploy_state(self, service: str, data: bytes, expected_version: int) -> int: ...
    def watch_deploy_state(self, service: str, callback: DeployStateCallback) -> Handle: ...


class Leadership(Protocol):
    def campaign(self, service: str, identity: str, on_change: LeadershipCallback) -> Campaign: ...


class FleetRecords(Protocol):
    def publish_fleet(self, service: str, replica: str, data: bytes) -> FleetRecord: ...
    def watch_fleet(self, service: str, callback: FleetCallback) -> Handle: ...


class Store(abc.ABC):
    """The five parts over one backend. The public methods are written here once: each
    checks its arguments (``rollway.inputs``: names are path components, paths are safe
    ZooKeeper paths) and turns the backend's failures into ``StoreError`` naming what
    failed (``_errors``; route-map calls, which an operator waits on, through
    ``_bounded_errors``). A backend implements the ``_``-prefixed methods, which receive
    checked arguments, and ``_errors``."""

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

    def remove_state_listener(self, callback: StateCallback) -> None:
        try:
            self._state_listeners.remove(callback)
        except ValueError:
            pass

    def _set_state(self, state: str) -> None:
        self._state = state
        for callback in list(self._state_listeners):
            callback(state)

    @abc.abstractmethod
    def start(self, timeout: float = 15.0) -> None: ...

    @abc.abstractmethod
    def stop(self) -> None: ...

    @abc.abstractmethod
    def _errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        """The backend's failures (connection loss, I/O) become StoreError(what: why)."""

    def _bounded_errors(self, what: str) -> contextlib.AbstractContextManager[None]:
        """``_errors`` for a call an operator waits on; a backend that could wait without
        end (kazoo while reconnecting) bounds it here."""
        return self._errors(what)

    def security_problems(self, services: list[str]) -> list[str]:
        """What keeps this store from being locked down (ZooKeeper: credentials and ACLs;
        the file store: the directory's permissions are the operating system's)."""
        return []

    # -- serversets ------------------------------------------------------------------------

    def watch_members(self, path: str, callback: MembersCallback) -> Handle:
        """Calls ``callback({name: data})`` now and after every change, until closed."""
        path = check_member_path(path)
        with self._errors(f"watching members of {path}"):
            return self._watch_members(path, callback)

    def watch_children(self, path: str, callback: ChildrenCallback) -> Handle:
        """Calls ``callback([name])`` with the child paths of ``path`` (a serverset whose
        versions are child paths) now and after every change, until closed."""
        path = check_member_path(path)
        with self._errors(f"watching the children of {path}"):
            return self._watch_children(path, callback)

    def announce(self, path: str, data: bytes, name: str | None = None) -> Handle:
        """Registers a member that lives as long as the handle: a ``member_`` sequential node,
        or one called ``name`` (a Party or Curator member is named by its writer)."""
        path = check_member_path(path)
        if name is not None:
            check_zk_path(f"{path}/{name}", "name")
        with self._errors(f"announcing a member of {path}"):
            return self._announce(path, data, name)

    def read_members(self, path: str) -> dict[str, bytes]:
        """The serverset's live children now (name -> data), read once."""
        path = check_member_path(path)
        with self._errors(f"reading members of {path}"):
            return self._read_members(path)

    def read_children(self, path: str) -> list[str]:
        """The child paths of ``path`` now, read once."""
        path = check_member_path(path)
        with self._errors(f"listing the children of {path}"):
            return self._read_children(path)

    def set_member(self, path: str, name: str, data: bytes) -> None:
        """Replaces a member's data (a deploy tool marking it not-ALIVE to drain it);
        raises StoreError if it is gone."""
        path, name = check_member_path(path), check_name(name, "name")
        with self._errors(f"updating member {name} of {path}"):
            self._set_member(path, name, data)

    def remove_member(self, path: str, name: str) -> None:
        """Removes a member (gone already is fine)."""
        path, name = check_member_path(path), check_name(name, "name")
        with self._errors(f"removing member {name} of {path}"):
            self._remove_member(path, name)

    # -- route maps ------------------------------------------------------------------------

    def read_routemap(self, service: str) -> RouteMapRecord | None:
        service = check_name(service, "service")
        with self._bounded_errors(f"reading the route map of {service!r}"):
            return self._read_routemap(service)

    def write_routemap(self, record: RouteMapRecord, expected_revision: int) -> None:
        """Stores ``record`` (whose revision must be expected_revision + 1) and its history
        entry atomically, or raises ConflictError and writes nothing."""
        check_name(record.service, "service")
        if isinstance(expected_revision, bool) or not isinstance(expected_revision, int) or expected_revision < 0:
            raise InputError(f"expected_revision {expected_revision!r}: use 0 (create) or a revision read before")
        with self._bounded_errors(f"writing the route map of {record.service!r}"):
            self._write_routemap(record, expected_revision)

    def history(self, service: str) -> list[RouteMapRecord]:
        service = check_name(service, "service")
        with self._bounded_errors(f"reading the history of {service!r}"):
            return self._history(service)

    def services(self) -> list[str]:
        with self._bounded_errors("listing services"):
            return self._services()

    # -- deploy state ----------------------------------------------------------------------

    def read_deploy_state(self, service: str) -> tuple[bytes | None, int]:
        """(data, version) of the service's deploy state, (None, -1) when there is none."""
        service = check_name(service, "service")
        with self._errors(f"reading the deploy state of {service!r}"):
            return self._read_deploy_state(service)

    def write_deploy_state(self, service: str, data: bytes, expected_version: int) -> int:
        """Compare-and-set: stores ``data`` if the stored version is ``expected_version``
        (-1: there must be no record yet) and returns the new version. Otherwise raises
        ConflictError and writes nothing: read again, recompute, retry."""
        service, expected_version = check_name(service, "service"), check_version(expected_version)
        with self._errors(f"writing the deploy state of {service!r}"):
            return self._write_deploy_state(service, data, expected_version)

    def watch_deploy_state(self, service: str, callback: DeployStateCallback) -> Handle:
        """Calls ``callback(data, version)`` now and after every change ((None, -1) while
        there is no record), across reconnects, until the handle is closed."""
        service = check_name(service, "service")
        with self._errors(f"watching the deploy state of {service!r}"):
            return self._watch_deploy_state(service, callback)

    # -- leadership and fleet records --------------------------------------------------------

    def campaign(self, service: str, identity: str, on_change: LeadershipCallback) -> Campaign:
        """Runs for leader of ``service`` as ``identity`` until the campaign is closed."""
        service = check_name(service, "service")
        if not isinstance(identity, str) or not identity:
            raise ValueError(f"identity {identity!r}: use a non-empty string")
        with self._errors(f"campaigning for the leadership of {service!r}"):
            return self._campaign(service, identity, on_change)

    def publish_fleet(self, service: str, replica: str, data: bytes) -> FleetRecord:
        """Publishes this replica's fleet record for ``service``."""
        service, replica = check_name(service, "service"), check_name(replica, "replica")
        with self._errors(f"publishing the fleet record of {replica} for {service!r}"):
            return self._publish_fleet(service, replica, data)

    def watch_fleet(self, service: str, callback: FleetCallback) -> Handle:
        """Calls ``callback({replica: data})`` with every live fleet record of ``service``
        now and after every change, until the handle is closed."""
        service = check_name(service, "service")
        with self._errors(f"watching the fleet of {service!r}"):
            return self._watch_fleet(service, callback)

    # -- what a backend implements (arguments checked, errors translated by the caller) ------

    @abc.abstractmethod
    def _watch_members(self, path: str, callback: MembersCallback) -> Handle: ...

    @abc.abstractmethod
    def _watch_children(self, path: str, callback: ChildrenCallback) -> Handle: ...

    @abc.abstractmethod
    def _announce(self, path: str, data: bytes, name: str | None) -> Handle: ...

    @abc.abstractmethod
    def _read_members(self, path: str) -> dict[str, bytes]: ...

    @abc.abstractmethod
    def _read_children(self, path: str) -> list[str]: ...

    @abc.abstractmethod
    def _set_member(self, path: str, name: str, data: bytes) -> None: ...

    @abc.abstractmethod
    def _remove_member(self, path: str, name: str) -> None: ...

    @abc.abstractmethod
    def _read_routemap(self, service: str) -> RouteMapRecord | None: ...

    @abc.abstractmethod
    def _write_routemap(self, record: RouteMapRecord, expected_revision: int) -> None: ...

    @abc.abstractmethod
    def _history(self, service: str) -> list[RouteMapRecord]: ...

    @abc.abstractmethod
    def _services(self) -> list[str]: ...

    @abc.abstractmethod
    def _read_deploy_state(self, service: str) -> tuple[bytes | None, int]: ...

    @abc.abstractmethod
    def _write_deploy_state(self, service: str, data: bytes, expected_version: int) -> int: ...

    @abc.abstractmethod
    def _watch_deploy_state(self, service: str, callback: DeployStateCallback) -> Handle: ...

    @abc.abstractmethod
    def _campaign(self, service: str, identity: str, on_change: LeadershipCallback) -> Campaign: ...

    @abc.abstractmethod
    def _publish_fleet(self, service: str, replica: str, data: bytes) -> FleetRecord: ...

    @abc.abstractmethod
    def _watch_fleet(self, service: str, callback: FleetCallback) -> Handle: ...


def open_store(url: str, **options) -> Store:
    """``zk://HOST:PORT[,HOST:PORT][/chroot]`` (``zk+tls://``: over TLS; options
    ``credentials`` and ``tls``: ``rollway.sources.zk_security``) or ``file://DIR``."""
    parsed = urlparse(url)
    if parsed.scheme in ("zk", "zk+tls"):
        from rollway.sources.zk_security import ZkTls
        from rollway.sources.zookeeper_store import ZooKeeperStore

        if not parsed.netloc:
            raise ValueError(f"store {url!r}: expected {parsed.scheme}://HOST:PORT[,HOST:PORT][/chroot]")
        if parsed.scheme == "zk+tls" and options.get("tls") is None:
            options["tls"] = ZkTls()          # the system's CAs
        return ZooKeeperStore(parsed.netloc, parsed.path or "", url=url, **options)
    if parsed.scheme == "file":
        from rollway.sources.file_store import FileStore

        root = parsed.path if not parsed.netloc else parsed.netloc + parsed.path
        if not root:
            raise ValueError(f"store {url!r}: expected file:///path/to/dir")
        return FileStore(root, url=url, **options)
    raise ValueError(f"store {url!r}: use zk://HOST:PORT[/chroot], zk+tls://HOST:PORT[/chroot] or file://DIR")
