"""The ZooKeeper store (kazoo). Layout:

- serversets: ``<path>/member_NNNNNNNNNN`` ephemeral sequential znodes (Finagle format);
- route maps: ``/rollway/<service>/routemap`` (the current record, JSON) and
  ``/rollway/<service>/history/<revision, 10 digits>``, written in one transaction that
  also checks the routemap znode's version, so two operators can never both win.

Watches survive connection and session loss: kazoo's ChildrenWatch re-registers after a
reconnect, and the first callback after any interruption re-reads every member's data (the
per-member data watches died with the session). While disconnected, callbacks simply stop:
the last good view is kept by the caller.
"""

from __future__ import annotations

import json
import logging
import threading

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import BadVersionError, NodeExistsError, NoNodeError
from kazoo.protocol.states import EventType
from kazoo.recipe.watchers import ChildrenWatch

from rollway.sources.store import (
    CONNECTED,
    LOST,
    SUSPENDED,
    ConflictError,
    Handle,
    MembersCallback,
    RouteMapRecord,
    Store,
    StoreError,
)

log = logging.getLogger(__name__)
ROOT = "/rollway"


class _MemberWatch(Handle):
    def __init__(self, store: "ZooKeeperStore", path: str, callback: MembersCallback):
        self.store, self.path, self.callback = store, path.rstrip("/") or "/", callback
        self.lock = threading.Lock()
        self.data: dict[str, bytes] = {}
        self.resync = True  # the first callback, and the first after an interruption, re-reads all
        self.closed = False
        store.add_state_listener(self._on_state)
        store.client.ensure_path(self.path)
        self.watch = ChildrenWatch(store.client, self.path, self._on_children)

    def _on_state(self, state: str) -> None:
        if state != CONNECTED:
            self.resync = True

    def _fetch(self, names: list[str]) -> dict[str, bytes]:
        pending = {n: self.store.client.get_async(f"{self.path}/{n}", watch=self._data_watch(n)) for n in names}
        out = {}
        for name, result in pending.items():
            try:
                out[name] = result.get(timeout=30)[0]
            except NoNodeError:
                pass  # gone between the listing and the read
        return out

    def _data_watch(self, name: str):
        def on_data(event) -> None:
            if self.closed or event.type != EventType.CHANGED:
                return
            try:
                fresh = self._fetch([name])
            except Exception:  # connection trouble: the next resync repairs it
                self.resync = True
                return
            with self.lock:
                if name in self.data and name in fresh:
                    self.data[name] = fresh[name]
                snapshot = dict(self.data)
            self.callback(snapshot)
        return on_data

    def _on_children(self, children: list[str]):
        if self.closed:
            return False  # tells kazoo to stop watching
        names = [c for c in children if c.startswith("member_")]
        try:
            with self.lock:
                if self.resync:
                    self.data = self._fetch(names)
                    self.resync = False
                else:
                    current = set(names)
                    for gone in set(self.data) - current:
                        del self.data[gone]
                    self.data.update(self._fetch([n for n in names if n not in self.data]))
                snapshot = dict(self.data)
        except Exception as error:  # keep the last good view; the reconnect resyncs
            log.warning("serverset %s: could not read members: %s", self.path, error)
            self.resync = True
            return None
        self.callback(snapshot)
        return None

    def close(self) -> None:
        self.closed = True


class _Member(Handle):
    """An announced member. Its ephemeral znode dies with the session, so after a session
    loss the member is registered again (as a new sequential node) once reconnected, the
    way a host agent keeps its host in the serverset."""

    def __init__(self, store: "ZooKeeperStore", parent: str, data: bytes):
        self.store, self.parent, self.data = store, parent, data
        self.closed = False
        self.lost = False
        self.path = self._create()
        store.add_state_listener(self._on_state)

    def _create(self) -> str:
        return self.store.client.create(self.parent + "/member_", self.data, ephemeral=True, sequence=True,
                                        makepath=True)

    def _on_state(self, state: str) -> None:
        if self.closed:
            return
        if state == LOST:
            self.lost = True
        elif state == CONNECTED and self.lost:
            self.lost = False
            try:
                if not self.store.client.exists(self.path):
                    self.path = self._create()
            except Exception as error:
                log.warning("could not re-announce %s: %s", self.parent, error)

    def close(self) -> None:
        self.closed = True
        try:
            self.store.client.delete(self.path)
        except NoNodeError:
            pass


class ZooKeeperStore(Store):
    def __init__(self, hosts: str, chroot: str = "", *, url: str | None = None, session_timeout: float = 10.0):
        super().__init__()
        self.url = url or f"zk://{hosts}{chroot}"
        self.hosts, self.chroot = hosts, chroot.rstrip("/")
        self.client = KazooClient(hosts=hosts + chroot, timeout=session_timeout,
                                  connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0})
        self.client.add_listener(self._on_kazoo_state)

    def _on_kazoo_state(self, state) -> None:
        mapped = {KazooState.CONNECTED: CONNECTED, KazooState.SUSPENDED: SUSPENDED, KazooState.LOST: LOST}[state]
        # Listeners must not block kazoo's event thread.
        threading.Thread(target=self._set_state, args=(mapped,), daemon=True).start()

    def start(self, timeout: float = 15.0) -> None:
        try:
            if self.chroot:  # kazoo needs the chroot to exist before it is used
                bootstrap = KazooClient(hosts=self.hosts, timeout=10)
                bootstrap.start(timeout=timeout)
                try:
                    bootstrap.ensure_path(self.chroot)
                finally:
                    bootstrap.stop()
                    bootstrap.close()
            self.client.start(timeout=timeout)
        except Exception as error:
            raise StoreError(f"cannot connect to ZooKeeper at {self.url}: {error}") from None
        self._state = CONNECTED

    def stop(self) -> None:
        self.client.stop()
        self.client.close()

    def watch_members(self, path: str, callback: MembersCallback) -> Handle:
        return _MemberWatch(self, path, callback)

    def announce(self, path: str, data: bytes) -> Handle:
        return _Member(self, path.rstrip("/"), data)

    def _paths(self, service: str) -> tuple[str, str]:
        return f"{ROOT}/{service}/routemap", f"{ROOT}/{service}/history"

    def read_routemap(self, service: str) -> RouteMapRecord | None:
        current, _ = self._paths(service)
        try:
            data, _stat = self.client.get(current)
        except NoNodeError:
            return None
        return RouteMapRecord.from_json_dict(json.loads(data))

    def write_routemap(self, record: RouteMapRecord, expected_revision: int) -> None:
        current_path, history_path = self._paths(record.service)
        payload = json.dumps(record.to_json_dict(), sort_keys=True).encode()
        self.client.ensure_path(history_path)
        try:
            data, stat = self.client.get(current_path)
            current = json.loads(data)["revision"]
        except NoNodeError:
            stat, current = None, 0
        if current != expected_revision or record.revision != expected_revision + 1:
            raise ConflictError(f"route map of {record.service!r} is at revision {current}, "
                                f"not {expected_revision}: fetch it again and retry")
        tx = self.client.transaction()
        if stat is None:
            tx.create(current_path, payload)
        else:
            tx.set_data(current_path, payload, version=stat.version)
        tx.create(f"{history_path}/{record.revision:010d}", payload)
        results = tx.commit()
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            if any(isinstance(f, (BadVersionError, NodeExistsError)) for f in failures):
                raise ConflictError(f"route map of {record.service!r} changed while writing revision "
                                    f"{record.revision}: fetch it again and retry")
            raise StoreError(f"writing route map failed: {failures}")

    def history(self, service: str) -> list[RouteMapRecord]:
        _, history_path = self._paths(service)
        try:
            names = sorted(self.client.get_children(history_path))
        except NoNodeError:
            return []
        return [RouteMapRecord.from_json_dict(json.loads(self.client.get(f"{history_path}/{n}")[0])) for n in names]

    def services(self) -> list[str]:
        try:
            return sorted(s for s in self.client.get_children(ROOT)
                          if self.client.exists(f"{ROOT}/{s}/routemap"))
        except NoNodeError:
            return []
