"""The ZooKeeper store (kazoo). Layout:

- serversets: ephemeral znodes under ``<path>``, whatever their format (``member_NNNNNNNNNN``
  sequential ones for Finagle; Party and Curator members named by their writers), or under
  ``<path>/<version>/`` where versions are child paths;
- route maps: ``/rollway/<service>/routemap`` (the current record, JSON) and
  ``/rollway/<service>/history/<revision, 10 digits>``, written in one transaction that
  also checks the routemap znode's version, so two operators can never both win.
- deploy state: ``/rollway/<service>/deploy``, opaque bytes; its version is the znode's
  ``stat.version``, checked by ``set(path, data, version=...)`` (compare-and-set).
- leadership: ``/rollway/<service>/leader``, an ephemeral znode holding the leader's
  identity. Candidates watch it and try to create it when it goes; it goes with the
  leader's session (close, or a killed process once the session times out).
- fleet reports: ``/rollway/<service>/fleet/<replica>``, ephemeral, re-created after a
  session loss with the latest data.

Watches survive connection and session loss: kazoo's ChildrenWatch and DataWatch re-register
after a reconnect, and the first callback after any interruption re-reads every child's data
(the per-child data watches died with the session). While disconnected, callbacks simply
stop: the last good view is kept by the caller.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    BadVersionError,
    ConnectionLoss,
    KazooException,
    NodeExistsError,
    NoNodeError,
    SessionExpiredError,
)
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.recipe.watchers import ChildrenWatch, DataWatch
from kazoo.security import OPEN_ACL_UNSAFE

from rollway.sources.store import (
    CONNECTED,
    LOST,
    SUSPENDED,
    Campaign,
    ChildrenCallback,
    ConflictError,
    DeployStateCallback,
    FleetCallback,
    FleetRecord,
    Handle,
    LeadershipCallback,
    MembersCallback,
    RouteMapRecord,
    Store,
    StoreError,
)
from rollway.sources.zk_security import ZkCredentials, ZkTls, acl_problems

log = logging.getLogger(__name__)
ROOT = "/rollway"
OPERATION_TIMEOUT = 10.0   # seconds one route-map read or write may wait for ZooKeeper


# Closing a watch. kazoo has no call to forget a watch before ZooKeeper fires it, and a
# serverset's node may never change again: a closed watch's functions (and all they refer
# to) would stay in kazoo's tables, a session listener with them. These use kazoo's own
# fields where they exist and do nothing where a release lacks them (the watch then goes at
# its node's next event, as before).

def _forget(client: KazooClient, path: str, *functions: object) -> None:
    """Takes ``functions`` out of kazoo's watch tables for ``path`` (unchrooted)."""
    full = (client.chroot or "") + path
    for table in (getattr(client, "_data_watchers", {}), getattr(client, "_child_watchers", {})):
        held = table.get(full)
        if held:
            held.difference_update(functions)


def _stop_recipe(client: KazooClient, recipe: DataWatch | ChildrenWatch | None) -> None:
    """Stops a kazoo DataWatch or ChildrenWatch now, as it stops itself when its function
    returns False (kazoo/recipe/watchers.py): no more calls, its session listener removed,
    its ZooKeeper watch forgotten."""
    if recipe is None or not hasattr(recipe, "_stopped"):
        return
    recipe._stopped = True
    listener = getattr(recipe, "_session_watcher", None)
    if listener is not None:
        client.remove_listener(listener)
    path, watcher = getattr(recipe, "_path", None), getattr(recipe, "_watcher", None)
    if isinstance(path, str) and watcher is not None:
        _forget(client, path, watcher)


class _WhilePresent:
    """Starts ``watch()`` (a ChildrenWatch) whenever ``path`` exists, and calls ``absent()``
    while it does not. A reader never creates the path it reads: under a locked-down store a
    serverset path is its announcers' to create, with their ACL (``zk_security``), and one
    made by the control plane would lock them out. kazoo's ChildrenWatch stops for good when
    its node goes; this starts a new one when the node comes back."""

    def __init__(self, store: ZooKeeperStore, path: str, watch, absent):
        self.client = store.client
        self.watch, self.absent = watch, absent
        self.children = None
        self.closed = False
        self.presence = DataWatch(store.client, path, self._on_presence)

    def close(self) -> None:
        self.closed = True
        _stop_recipe(self.client, self.presence)
        _stop_recipe(self.client, self.children)
        self.children = None

    def _on_presence(self, data, stat, event=None):  # 3 parameters: kazoo then calls it just once
        if self.closed:
            return False
        if stat is None:
            self.children = None
            self.absent()
        elif self.children is None:
            self.children = self.watch()
        return None


class _MemberWatch(Handle):
    """{child: data} of every child of ``path`` (a serverset's reader picks its members by its
    format's names; a fleet's children are all records)."""

    def __init__(self, store: ZooKeeperStore, path: str, callback: MembersCallback):
        self.store, self.path, self.callback = store, path.rstrip("/") or "/", callback
        self.lock = threading.Lock()
        self.data: dict[str, bytes] = {}
        # One data-watch function per child, passed again by every read of it: kazoo keeps a
        # path's watch functions in a set, so a resync (which re-reads every child after a
        # reconnect) re-registers the same function instead of adding one more per resync.
        # Always passed, never skipped: after a session loss kazoo has dropped them all, and
        # a read without a watch would leave that child unwatched.
        self.watchers: dict[str, Callable[[WatchedEvent], None]] = {}
        self.resync = True  # the first callback, and the first after an interruption, re-reads all
        self.closed = False
        self.deliver_lock = threading.Lock()
        self.taken = 0          # snapshots taken (under self.lock)
        self.delivered: tuple[int, dict[str, bytes] | None] = (0, None)
        store.add_state_listener(self._on_state)
        self.presence = _WhilePresent(store, self.path, lambda: ChildrenWatch(store.client, self.path, self._on_children),
                                      self._on_absent)

    def _on_absent(self) -> None:
        with self.lock:
            self.data, self.resync = {}, True
            snapshot = self._snapshot()
        self._deliver(snapshot)

    def _on_state(self, state: str) -> None:
        if state != CONNECTED:
            self.resync = True
        elif self.resync and not self.closed:
            # ChildrenWatch stays silent after a reconnect when the names did not change,
            # but data may have (and after a session loss no data watch is left): re-read.
            try:
                self._on_children(self.store.client.get_children(self.path))
            except NoNodeError:
                pass         # not there (yet): its presence watch tells
            except Exception as error:
                log.warning("%s: could not resync after reconnecting: %s", self.path, error)

    def _snapshot(self) -> tuple[int, dict[str, bytes]]:
        self.taken += 1
        return self.taken, dict(self.data)

    def _deliver(self, snapshot: tuple[int, dict[str, bytes]]) -> None:
        """Calls back in the order snapshots were taken, and never twice with the same view
        (kazoo's threads and the resync can race)."""
        with self.deliver_lock:
            number, view = snapshot
            if self.closed or number <= self.delivered[0] or view == self.delivered[1]:
                return
            self.delivered = snapshot
            self.callback(view)

    def _fetch(self, names: list[str]) -> dict[str, bytes]:
        pending = {}
        for name in names:
            watch = self.watchers.get(name) or self.watchers.setdefault(name, self._data_watch(name))
            pending[name] = self.store.client.get_async(f"{self.path}/{name}", watch=watch)
        out = {}
        for name, result in pending.items():
            try:
                out[name] = result.get(timeout=30)[0]
            except NoNodeError:
                self.watchers.pop(name, None)   # gone between the listing and the read: no watch set
        return out

    def _data_watch(self, name: str) -> Callable[[WatchedEvent], None]:
        def on_data(event: WatchedEvent) -> None:
            # DELETED too: a child deleted and made again under the same name (a member a
            # writer names) between two listings needs its watch set again; the read says.
            if self.closed or event.type not in (EventType.CHANGED, EventType.DELETED):
                return
            try:
                fresh = self._fetch([name])
            except Exception:  # connection trouble: the next resync repairs it
                self.resync = True
                return
            with self.lock:
                if name in self.data and name in fresh:
                    self.data[name] = fresh[name]
                snapshot = self._snapshot()
            self._deliver(snapshot)
        return on_data

    def _on_children(self, children: list[str]):
        if self.closed:
            return False  # tells kazoo to stop watching
        names = list(children)
        try:
            with self.lock:
                if self.resync:
                    self.data = self._fetch(names)
                    self.resync = False
                    for gone in set(self.watchers) - set(names):
                        self.watchers.pop(gone, None)
                else:
                    current = set(names)
                    for gone in set(self.data) - current:
                        del self.data[gone]
                        self.watchers.pop(gone, None)
                    self.data.update(self._fetch([n for n in names if n not in self.data]))
                snapshot = self._snapshot()
        except Exception as error:  # keep the last good view; the reconnect resyncs
            log.warning("%s: could not read the children: %s", self.path, error)
            self.resync = True
            return None
        self._deliver(snapshot)
        return None

    def close(self) -> None:
        self.closed = True
        self.presence.close()
        self.store.remove_state_listener(self._on_state)
        # kazoo would keep this watch's functions (and this object) until each child next
        # changes, which a serverset member may never do: take them out of its table.
        with self.lock:
            self.data = {}
            watchers, self.watchers = self.watchers, {}
        for name, function in watchers.items():
            _forget(self.store.client, f"{self.path}/{name}", function)


class _Children(Handle):
    """kazoo's ChildrenWatch on ``path``: the child names now, on every change and after a
    reconnect or session loss (kazoo re-registers it)."""

    def __init__(self, store: ZooKeeperStore, path: str, callback: ChildrenCallback):
        self.callback, self.closed = callback, False
        self.presence = _WhilePresent(store, path, lambda: ChildrenWatch(store.client, path, self._on_children),
                                      lambda: self._on_children([]))

    def _on_children(self, children: list[str]):
        if self.closed:
            return False  # tells kazoo to stop watching
        try:
            self.callback(sorted(children))
        except Exception:
            log.exception("children callback failed")
        return None

    def close(self) -> None:
        self.closed = True
        self.presence.close()


class _Member(Handle):
    """An announced member. Its ephemeral znode dies with the session, so after a session
    loss the member is registered again (a new sequential node, or its own name) once
    reconnected, the way a host agent keeps its host in the serverset."""

    def __init__(self, store: ZooKeeperStore, parent: str, data: bytes, name: str | None = None):
        self.store, self.parent, self.data, self.name = store, parent, data, name
        self.closed = False
        self.lost = False
        self.path = self._create()
        store.add_state_listener(self._on_state)

    def _create(self) -> str:
        if self.name is not None:
            return self.store.client.create(f"{self.parent}/{self.name}", self.data, ephemeral=True, makepath=True)
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
        if not self.store.client.connected:
            return      # the ephemeral node goes with the session; waiting could be forever
        try:
            self.store.client.delete_async(self.path).get(timeout=OPERATION_TIMEOUT)
        except NoNodeError:
            pass
        except (KazooException, self.store.client.handler.timeout_exception) as error:
            log.warning("could not remove %s: %s", self.path, error)


class _DeployWatch(Handle):
    """kazoo's DataWatch: called now, on every change and after reconnects (it re-reads and
    calls back only if the node changed meanwhile)."""

    def __init__(self, store: ZooKeeperStore, path: str, callback: DeployStateCallback):
        self.callback = callback
        self.closed = False
        self.watch = DataWatch(store.client, path, self._on_data)

    def _on_data(self, data, stat, event=None):  # 3 parameters: kazoo then calls it just once
        if self.closed:
            return False  # tells kazoo to stop watching
        try:
            if stat is None:
                self.callback(None, -1)
            else:
                self.callback(data, stat.version)
        except Exception:
            log.exception("deploy state callback failed")
        return None

    def close(self) -> None:
        self.closed = True


class _Campaign(Campaign):
    """The ephemeral-znode election, one thread per campaign.

    The thread tries to create ``leader``; then it reads the node with a watch, and leads if
    the node is ours (our data, our session). The watch, a reconnect or close() wakes it to
    look again. kazoo's connection listener (which must not block) only drops ``leading``
    at once on SUSPENDED/LOST and wakes the thread; ``epoch`` makes a look that straddled a
    connection change count for nothing."""

    def __init__(self, store: ZooKeeperStore, service: str, identity: str, on_change: LeadershipCallback):
        self.store, self.client = store, store.client
        self.path = f"{ROOT}/{service}/leader"
        self.identity, self.on_change = identity, on_change
        self._data = identity.encode()
        self._flags = threading.Lock()      # guards _leading and _epoch; held for an instant
        self._leading = False
        self._epoch = 0
        self._reported = False              # touched by the campaign thread only
        self._closed = False
        self._step_lock = threading.Lock()  # no create() after close() gave the node up
        self._wake = threading.Event()
        self._wake.set()
        self.client.add_listener(self._on_kazoo_state)
        self._thread = threading.Thread(target=self._run, name=f"rollway-campaign-{service}", daemon=True)
        self._thread.start()

    @property
    def leading(self) -> bool:
        return self._leading

    def _on_kazoo_state(self, state) -> None:
        with self._flags:
            self._epoch += 1
            if state != KazooState.CONNECTED:
                self._leading = False
        self._wake.set()

    def _on_node_event(self, _event) -> None:
        self._wake.set()

    def _step(self) -> None:
        with self._step_lock:
            if self._closed:
                return
            with self._flags:
                epoch = self._epoch
            if self.client.state != KazooState.CONNECTED:
                ours = False  # the reconnect wakes us
            else:
                try:
                    self.client.create(self.path, self._data, ephemeral=True, makepath=True)
                except NodeExistsError:
                    pass
                try:
                    data, stat = self.client.get(self.path, watch=self._on_node_event)
                except NoNodeError:
                    ours = False
                    self._wake.set()  # the leader just left: run again
                else:
                    session = self.client.client_id
                    ours = bool(session) and stat.ephemeralOwner == session[0] and data == self._data
            with self._flags:
                self._leading = ours and epoch == self._epoch

    def _report(self) -> None:
        leading = self._leading and not self._closed
        if leading != self._reported:
            self._reported = leading
            try:
                self.on_change(leading)
            except Exception:
                log.exception("leadership callback failed")

    def _run(self) -> None:
        retry = None
        while not self._closed:
            self._wake.wait(retry)
            self._wake.clear()
            retry = None
            try:
                self._step()
            except Exception as error:  # connection trouble mostly: not leading, look again soon
                with self._flags:
                    self._leading = False
                log.info("campaign for %s: %s", self.path, error)
                retry = 1.0
            self._report()
        self._report()

    def leader(self) -> str | None:
        with self.store._errors(f"reading the leader of {self.path}"):
            try:
                return self.client.get(self.path)[0].decode()
            except NoNodeError:
                return None

    def close(self) -> None:
        with self._step_lock:
            if self._closed:
                return
            self._closed = True
            with self._flags:
                self._leading = False
            self.client.remove_listener(self._on_kazoo_state)
            try:
                # Not connected: the node goes with the session (kazoo would wait for a
                # reconnect without end, and a replica stopping must not hang).
                if self.client.connected:
                    data, stat = self.client.get_async(self.path).get(timeout=OPERATION_TIMEOUT)
                    session = self.client.client_id
                    if session and stat.ephemeralOwner == session[0] and data == self._data:
                        self.client.delete_async(self.path, version=stat.version).get(timeout=OPERATION_TIMEOUT)
            except (NoNodeError, BadVersionError):
                pass
            except Exception as error:  # the node still goes with the session
                log.warning("campaign for %s: could not give up leadership: %s", self.path, error)
        self._wake.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self.store._campaigns.discard(self)


class _FleetRecord(FleetRecord):
    """An ephemeral znode holding this replica's report. After a session loss (or anything
    else that takes the node away) it is put back with the latest data once reconnected,
    like an announced member."""

    def __init__(self, store: ZooKeeperStore, path: str, data: bytes):
        self.store, self.client, self.path, self.data = store, store.client, path, data
        self.lock = threading.Lock()
        self.closed = False
        with store._errors(f"publishing {path}"), self.lock:
            self._sync()
        store.add_state_listener(self._on_state)

    def _sync(self) -> None:
        """Makes the node exist, owned by our session, holding self.data (under self.lock).
        A node left by an earlier session of the same replica (restarted, its session not
        yet expired) is replaced."""
        for _ in range(5):
            try:
                data, stat = self.client.get(self.path)
            except NoNodeError:
                try:
                    self.client.create(self.path, self.data, ephemeral=True, makepath=True)
                    return
                except NodeExistsError:
                    continue
            session = self.client.client_id
            if not session or stat.ephemeralOwner != session[0]:
                try:
                    self.client.delete(self.path, version=stat.version)
                except (NoNodeError, BadVersionError):
                    pass
                continue
            if data == self.data:
                return
            try:
                self.client.set(self.path, self.data, version=stat.version)
                return
            except (NoNodeError, BadVersionError):
                continue
        raise StoreError(f"fleet record {self.path} keeps changing under us: is another replica using this name?")

    def _on_state(self, state: str) -> None:
        if state != CONNECTED:
            return
        with self.lock:
            if self.closed:
                return
            try:
                self._sync()
            except Exception as error:  # the next reconnect tries again
                log.warning("could not re-publish %s: %s", self.path, error)

    def update(self, data: bytes) -> None:
        with self.lock:
            if self.closed:
                return
            self.data = data
            if not self.client.connected:
                # kazoo queues a request made while disconnected until the session is back,
                # and its synchronous calls wait for it without end: the plane's worker (and
                # a replica stopping, which takes this lock) would hang for as long as
                # ZooKeeper is gone. The reconnect publishes self.data (``_on_state``).
                return
            try:
                self.client.set_async(self.path, data).get(timeout=OPERATION_TIMEOUT)
            except NoNodeError:
                try:
                    self._sync()
                except Exception as error:
                    log.info("fleet record %s: will publish once reconnected: %s", self.path, error)
            except (ConnectionLoss, SessionExpiredError, self.client.handler.timeout_exception) as error:
                log.info("fleet record %s: will publish once reconnected: %s", self.path, error)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.store.remove_state_listener(self._on_state)
            try:
                if self.client.connected:    # else the node goes with the session
                    _data, stat = self.client.get_async(self.path).get(timeout=OPERATION_TIMEOUT)
                    session = self.client.client_id
                    if session and stat.ephemeralOwner == session[0]:
                        self.client.delete_async(self.path, version=stat.version).get(timeout=OPERATION_TIMEOUT)
            except (NoNodeError, BadVersionError):
                pass
            except (KazooException, self.client.handler.timeout_exception) as error:  # goes with the session
                log.warning("could not remove %s: %s", self.path, error)


class ZooKeeperStore(Store):
    def __init__(self, hosts: str, chroot: str = "", *, url: str | None = None, session_timeout: float = 10.0,
                 credentials: ZkCredentials | None = None, tls: ZkTls | None = None):
        super().__init__()
        self.url = url or f"zk://{hosts}{chroot}"
        self.hosts, self.chroot = hosts, chroot.rstrip("/")
        self.credentials, self.tls = credentials, tls
        self.client = KazooClient(hosts=hosts + chroot, timeout=session_timeout,
                                  connection_retry={"max_tries": -1, "delay": 0.1, "max_delay": 1.0},
                                  **self._security())
        self.client.add_listener(self._on_kazoo_state)
        self._campaigns: set[_Campaign] = set()

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Connection trouble becomes a StoreError that says what failed and why."""
        try:
            yield
        except (ConnectionLoss, SessionExpiredError) as error:
            raise StoreError(f"{what}: not connected to ZooKeeper at {self.url} "
                             f"({type(error).__name__})") from None
        except (KazooException, self.client.handler.timeout_exception) as error:
            raise StoreError(f"{what}: ZooKeeper at {self.url} failed: {type(error).__name__} {error}") from None

    def _on_kazoo_state(self, state) -> None:
        mapped = {KazooState.CONNECTED: CONNECTED, KazooState.SUSPENDED: SUSPENDED, KazooState.LOST: LOST}[state]
        # Listeners must not block kazoo's event thread.
        threading.Thread(target=self._set_state, args=(mapped,), daemon=True).start()

    def _security(self) -> dict:
        """kazoo's options for this store's identity (its znodes' ACL) and TLS."""
        options: dict = {}
        if self.credentials is not None:
            options.update(auth_data=self.credentials.auth_data(), default_acl=self.credentials.acl())
        if self.tls is not None:
            options.update(self.tls.kazoo_options())
        return options

    def security_problems(self, services: list[str]) -> list[str]:
        """What a locked-down store would not show: no credentials, or Rollway znodes anyone
        may change (``zk_security.acl_problems``), for ``/rollway`` and each service's."""
        if self.credentials is None:
            return ["ZooKeeper: no credentials (--zk-auth-file): any client that reaches ZooKeeper can rewrite "
                    "route maps, deploy state and serversets"]
        problems = []
        paths = [ROOT] + [f"{ROOT}/{s}/{part}" for s in services for part in ("", "routemap", "history", "deploy")]
        for path in paths:
            path = path.rstrip("/")
            try:
                acls, _ = self.client.get_acls(path)
            except NoNodeError:
                continue
            problems += acl_problems(path, acls, self.credentials)
        return problems

    def start(self, timeout: float = 15.0) -> None:
        try:
            if self.chroot:  # kazoo needs the chroot to exist before it is used
                bootstrap = KazooClient(hosts=self.hosts, timeout=10, **self._security())
                bootstrap.start(timeout=timeout)
                try:
                    # Open: other identities (announcers) make their paths beneath it.
                    bootstrap.ensure_path(self.chroot, acl=OPEN_ACL_UNSAFE)
                finally:
                    bootstrap.stop()
                    bootstrap.close()
            self.client.start(timeout=timeout)
        except Exception as error:
            raise StoreError(f"cannot connect to ZooKeeper at {self.url}: {error}") from None
        self._state = CONNECTED

    def stop(self) -> None:
        for campaign in list(self._campaigns):  # hand leadership over now, not at session expiry
            campaign.close()
        self.client.stop()
        self.client.close()

    # -- serversets (arguments checked and errors translated by Store) ---------------------

    def _watch_members(self, path: str, callback: MembersCallback) -> Handle:
        return _MemberWatch(self, path, callback)

    def _watch_children(self, path: str, callback: ChildrenCallback) -> Handle:
        return _Children(self, path, callback)

    def _announce(self, path: str, data: bytes, name: str | None) -> Handle:
        return _Member(self, path, data, name)

    def _read_children(self, path: str) -> list[str]:
        try:
            return sorted(self.client.get_children(path))
        except NoNodeError:
            return []

    def _read_members(self, path: str) -> dict[str, bytes]:
        names = self._read_children(path)
        out = {}
        for name in names:
            try:
                out[name] = self.client.get(f"{path}/{name}")[0]
            except NoNodeError:
                continue
        return out

    def _set_member(self, path: str, name: str, data: bytes) -> None:
        try:
            self.client.set(f"{path}/{name}", data)
        except NoNodeError:
            raise StoreError(f"member {name} of {path} is gone") from None

    def _remove_member(self, path: str, name: str) -> None:
        try:
            self.client.delete(f"{path}/{name}")
        except NoNodeError:
            pass

    # -- route maps --------------------------------------------------------------------------

    @staticmethod
    def _paths(service: str) -> tuple[str, str]:
        return f"{ROOT}/{service}/routemap", f"{ROOT}/{service}/history"

    @contextlib.contextmanager
    def _bounded_errors(self, what: str) -> Iterator[None]:
        """kazoo queues a request while it reconnects and waits for it without end, so a
        call an operator waits on fails at once while ZooKeeper is away, and waits at most
        OPERATION_TIMEOUT (``_wait``) otherwise."""
        with self._errors(what):
            if not self.client.connected:
                raise ConnectionLoss()
            yield

    def _wait(self, async_result):
        """The result of a kazoo ``*_async`` call within OPERATION_TIMEOUT: the operator
        API's calls are bounded even when ZooKeeper goes away in the middle of one."""
        return async_result.get(timeout=OPERATION_TIMEOUT)

    def _read_routemap(self, service: str) -> RouteMapRecord | None:
        current, _ = self._paths(service)
        try:
            data, _stat = self._wait(self.client.get_async(current))
        except NoNodeError:
            return None
        return RouteMapRecord.decode(data, current)

    def _write_routemap(self, record: RouteMapRecord, expected_revision: int) -> None:
        current_path, history_path = self._paths(record.service)
        payload = json.dumps(record.to_json_dict(), sort_keys=True).encode()
        self._wait(self.client.ensure_path_async(history_path))
        try:
            data, stat = self._wait(self.client.get_async(current_path))
            current = RouteMapRecord.decode(data, current_path).revision
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
        # A commit that times out may still land once ZooKeeper is back: the client
        # hears UNAVAILABLE, and a retry with the same expected revision then gets
        # ABORTED (compare-and-set), never a second copy.
        results = self._wait(tx.commit_async())
        failures = [r for r in results if isinstance(r, Exception)]
        if failures:
            if any(isinstance(f, (BadVersionError, NodeExistsError)) for f in failures):
                raise ConflictError(f"route map of {record.service!r} changed while writing revision "
                                    f"{record.revision}: fetch it again and retry")
            raise StoreError(f"writing route map failed: {failures}")

    def _history(self, service: str) -> list[RouteMapRecord]:
        _, history_path = self._paths(service)
        try:
            names = sorted(self._wait(self.client.get_children_async(history_path)))
        except NoNodeError:
            return []
        return [RouteMapRecord.decode(self._wait(self.client.get_async(f"{history_path}/{n}"))[0],
                                      f"{history_path}/{n}") for n in names]

    def _services(self) -> list[str]:
        try:
            return sorted(s for s in self._wait(self.client.get_children_async(ROOT))
                          if self._wait(self.client.exists_async(f"{ROOT}/{s}/routemap")))
        except NoNodeError:
            return []

    # -- deploy state ----------------------------------------------------------------------

    def _read_deploy_state(self, service: str) -> tuple[bytes | None, int]:
        try:
            data, stat = self.client.get(f"{ROOT}/{service}/deploy")
        except NoNodeError:
            return None, -1
        return data, stat.version

    def _write_deploy_state(self, service: str, data: bytes, expected_version: int) -> int:
        path = f"{ROOT}/{service}/deploy"
        try:
            if expected_version == -1:
                self.client.create(path, data, makepath=True)
                return 0
            # Never version=-1 here: that is ZooKeeper's "any version".
            return self.client.set(path, data, version=expected_version).version
        except (NodeExistsError, BadVersionError, NoNodeError):
            pass
        _, current = self._read_deploy_state(service)
        raise ConflictError(f"deploy state of {service!r} is at version {current}, not "
                            f"{expected_version}: read it again and retry")

    def _watch_deploy_state(self, service: str, callback: DeployStateCallback) -> Handle:
        return _DeployWatch(self, f"{ROOT}/{service}/deploy", callback)

    # -- leadership and fleet records --------------------------------------------------------

    def _campaign(self, service: str, identity: str, on_change: LeadershipCallback) -> Campaign:
        campaign = _Campaign(self, service, identity, on_change)
        self._campaigns.add(campaign)
        return campaign

    def _publish_fleet(self, service: str, replica: str, data: bytes) -> FleetRecord:
        return _FleetRecord(self, f"{ROOT}/{service}/fleet/{replica}", data)

    def _watch_fleet(self, service: str, callback: FleetCallback) -> Handle:
        return _MemberWatch(self, f"{ROOT}/{service}/fleet", callback)
