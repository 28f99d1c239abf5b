"""The embedded store: a local directory with the ZooKeeper store's layout.

- serversets: ``DIR/<path>/<member>`` files (``member_NNNNNNNNNN`` unless the announcer names
  them), and ``DIR/<path>/<version>/`` directories where versions are child paths. A member
  lives while its announcer keeps the file fresh (heartbeat every lease/3); a file older than
  the lease counts as gone, like an ephemeral znode whose session expired.
- route maps: ``DIR/rollway/<service>/routemap.json`` and ``history/<revision>.json``,
  written under an exclusive lock with the revision checked (compare-and-set), history
  first, then the current record by atomic rename.
- deploy state: ``DIR/rollway/<service>/deploy.json`` = {"version": n, "data": base64},
  replaced atomically under an flock on ``.deploy.lock`` after checking the version.
- leadership: ``DIR/rollway/<service>/leader.json`` = {"holder", "token", "expires"}, a
  lease each candidate tries to take or renew every lease/3 under an flock on
  ``.leader.lock``; it is free when absent or expired (a SIGKILLed leader stops renewing).
- fleet reports: ``DIR/rollway/<service>/fleet/<replica>.json``, kept fresh by the same
  heartbeat as members and counted as gone once older than the lease.

Watches poll (default every 50 ms): no inotify dependency, and the cost is a directory
listing per watched serverset or fleet (plus reading the few fleet records) and a stat per
watched deploy state.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from rollway.sources.store import (
    CONNECTED,
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

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _flocked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path``: excludes other processes and other FileStore
    instances alike (each opens its own file description)."""
    with open(path, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _write_atomically(path: Path, data: bytes) -> None:
    """Readers see the old bytes or the new ones, never a torn file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


class _Poller:
    """One thread polling every watch (anything with ``poll()`` and ``closed``)."""

    def __init__(self, interval: float):
        self.interval = interval
        self.watches: list = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rollway-file-store", daemon=True)
        self.thread.start()

    def add(self, watch) -> None:
        with self.lock:
            self.watches.append(watch)

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                self.watches = [w for w in self.watches if not w.closed]
                watches = list(self.watches)
            for watch in watches:
                try:
                    watch.poll()
                except Exception:  # one bad callback must not stop every other watch
                    log.exception("file store watch failed")


def _member_key(name: str) -> str | None:
    """Every file but the store's own (dot files: locks, counters, files being written)."""
    return None if name.startswith(".") else name


def _fleet_key(name: str) -> str | None:
    return name[:-5] if name.endswith(".json") and not name.startswith(".") else None


class _FileWatch(Handle):
    """Watches the live (fresh) files of a directory, as {key(name): bytes}.

    ``key`` picks the files and names them (None: not ours). With ``by_content`` every poll
    reads the files and compares bytes, because a record can change without changing size
    and heartbeats move mtimes; without it (serversets, where member data never changes) a
    change of the set of files or of a file's size is enough and no file is read."""

    def __init__(self, store: FileStore, directory: Path, callback: MembersCallback,
                 key: Callable[[str], str | None] = _member_key, by_content: bool = False):
        self.store, self.directory, self.callback = store, directory, callback
        self.key, self.by_content = key, by_content
        self.seen: dict | None = None
        self.closed = False

    def poll(self) -> None:
        if self.closed:
            return
        now = time.time()
        listing: dict[str, tuple[float, int]] = {}
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            entries = []
        for entry in entries:
            if self.key(entry.name) is None:
                continue
            try:
                if not entry.is_file():
                    continue     # a version's child path, not a member
                st = entry.stat()
            except FileNotFoundError:
                continue
            if now - st.st_mtime <= self.store.lease_seconds:
                listing[entry.name] = (st.st_mtime_ns, st.st_size)
        if not self.by_content:
            # Membership changes when the set of live files or a file's size changes; mtime
            # alone moves with every heartbeat.
            shape = {name: size for name, (_, size) in listing.items()}
            if self.seen is not None and shape == self.seen:
                return
            self.seen = shape
        members: dict[str, bytes] = {}
        for name in listing:
            key = self.key(name)
            assert key is not None  # ``listing`` holds only the names ``key`` accepts
            try:
                members[key] = (self.directory / name).read_bytes()
            except FileNotFoundError:
                continue
        if self.by_content:
            if self.seen is not None and members == self.seen:
                return
            self.seen = members
        self.callback(members)

    def close(self) -> None:
        self.closed = True


class _ChildrenWatch(Handle):
    """The names of a directory's subdirectories (a serverset's version paths)."""

    def __init__(self, directory: Path, callback: ChildrenCallback):
        self.directory, self.callback = directory, callback
        self.seen: list[str] | None = None
        self.closed = False

    def poll(self) -> None:
        if self.closed:
            return
        names = _subdirectories(self.directory)
        if names != self.seen:
            self.seen = names
            self.callback(names)

    def close(self) -> None:
        self.closed = True


def _subdirectories(directory: Path) -> list[str]:
    try:
        return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
    except FileNotFoundError:
        return []


class _Member(Handle):
    def __init__(self, store: FileStore, path: Path):
        self.store, self.path = store, path

    def close(self) -> None:
        with self.store._lock:
            self.store._owned.discard(self.path)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class _DeployWatch(Handle):
    """Calls back when the deploy record's version changes. A stat per poll; the record
    is read only when the file was replaced (new inode, mtime or size)."""

    def __init__(self, store: FileStore, service: str, callback: DeployStateCallback):
        self.store, self.service, self.callback = store, service, callback
        self.path = store._service_dir(service) / "deploy.json"
        self.fingerprint: tuple | None = None
        self.version: int | None = None
        self.closed = False

    def poll(self) -> None:
        if self.closed:
            return
        try:
            st = os.stat(self.path)
            fingerprint = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            fingerprint = None
        if self.version is not None and fingerprint == self.fingerprint:
            return
        self.fingerprint = fingerprint
        try:
            data, version = self.store.read_deploy_state(self.service)
        except StoreError as error:  # a broken record: keep the last view, say why
            log.warning("%s", error)
            return
        if version != self.version:
            self.version = version
            self.callback(data, version)

    def close(self) -> None:
        self.closed = True


class _Campaign(Campaign):
    """A lease in ``leader.json``, taken or renewed every lease/3. The token tells this
    campaign's lease from another one's with the same identity (a restarted replica)."""

    def __init__(self, store: FileStore, service: str, identity: str, on_change: LeadershipCallback):
        self.store, self.identity, self.on_change = store, identity, on_change
        self.directory = store._service_dir(service)
        self.path = self.directory / "leader.json"
        self.token = uuid.uuid4().hex
        self._held_until = 0.0          # our lease's expiry; 0 when we hold none
        self._reported = False
        self._stopped = threading.Event()
        self._step_lock = threading.Lock()  # a renewal never runs after close() released
        self._thread = threading.Thread(target=self._run, name=f"rollway-campaign-{service}", daemon=True)
        self._thread.start()

    @property
    def leading(self) -> bool:
        return time.time() < self._held_until

    def _read(self) -> dict | None:
        try:
            lease = json.loads(self.path.read_bytes())
            return lease if isinstance(lease, dict) else None
        except FileNotFoundError:
            return None
        except ValueError:
            return None  # a torn or foreign file: treat as free, the next write repairs it

    def _step(self) -> None:
        with self._step_lock:
            if self._stopped.is_set():
                return
            self.directory.mkdir(parents=True, exist_ok=True)
            with _flocked(self.directory / ".leader.lock"):
                now = time.time()
                lease = self._read()
                free = lease is None or float(lease.get("expires", 0)) <= now
                if free or (lease is not None and lease.get("token") == self.token):
                    expires = now + self.store.lease_seconds
                    _write_atomically(self.path, json.dumps(
                        {"holder": self.identity, "token": self.token, "expires": expires}).encode())
                    self._held_until = expires
                else:
                    self._held_until = 0.0

    def _report(self) -> None:
        leading = self.leading and not self._stopped.is_set()
        if leading != self._reported:
            self._reported = leading
            try:
                self.on_change(leading)
            except Exception:
                log.exception("leadership callback failed")

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self._step()
            except (OSError, ValueError, TypeError) as error:  # the lease lapses on its own
                log.warning("campaign for %s: %s", self.path, error)
            self._report()
            self._stopped.wait(self.store.lease_seconds / 3)
        self._report()

    def leader(self) -> str | None:
        lease = self._read()
        if lease is None or float(lease.get("expires", 0)) <= time.time():
            return None
        return lease.get("holder")

    def close(self) -> None:
        self._stopped.set()
        with self._step_lock:
            try:
                with _flocked(self.directory / ".leader.lock"):
                    lease = self._read()
                    if lease is not None and lease.get("token") == self.token:
                        self.path.unlink(missing_ok=True)
            except OSError as error:
                log.warning("campaign for %s: could not release the lease: %s", self.path, error)
            self._held_until = 0.0
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=5)
        self.store._campaigns.discard(self)


class _FleetRecord(FleetRecord):
    def __init__(self, store: FileStore, path: Path, data: bytes):
        self.store, self.path = store, path
        self.lock = threading.Lock()
        self.closed = False
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, data)
        with store._lock:
            store._owned.add(path)  # the heartbeat keeps it fresh

    def update(self, data: bytes) -> None:
        with self.lock:
            if not self.closed:
                _write_atomically(self.path, data)

    def close(self) -> None:
        with self.lock:
            self.closed = True
            with self.store._lock:
                self.store._owned.discard(self.path)
            self.path.unlink(missing_ok=True)


class FileStore(Store):
    def __init__(self, root: str, *, url: str | None = None, poll_interval: float = 0.05,
                 lease_seconds: float = 10.0):
        super().__init__()
        self.root = Path(root)
        self.url = url or f"file://{root}"
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self._owned: set[Path] = set()
        self._campaigns: set[_Campaign] = set()
        self._poller: _Poller | None = None
        self._heartbeat_stop = threading.Event()

    def start(self, timeout: float = 15.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._poller = _Poller(self.poll_interval)
        threading.Thread(target=self._heartbeat, name="rollway-file-heartbeat", daemon=True).start()
        self._set_state(CONNECTED)

    def stop(self) -> None:
        for campaign in list(self._campaigns):  # hand leadership over now, not at lease expiry
            campaign.close()
        if self._poller:
            self._poller.stopped.set()
        self._heartbeat_stop.set()

    def _heartbeat(self) -> None:
        while not self._heartbeat_stop.wait(self.lease_seconds / 3):
            with self._lock:
                owned = list(self._owned)
            for path in owned:
                try:
                    os.utime(path)
                except FileNotFoundError:
                    pass

    @contextlib.contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """An I/O failure becomes a StoreError that says what failed and why."""
        try:
            yield
        except OSError as error:
            raise StoreError(f"{what}: {error}") from None

    def _dir(self, zk_path: str) -> Path:
        """The directory that holds a (checked) ZooKeeper path."""
        return self.root.joinpath(*[p for p in zk_path.split("/") if p])

    def _watch(self, watch):
        """Calls back now, then from the poller."""
        assert self._poller is not None, "store not started"
        watch.poll()
        self._poller.add(watch)
        return watch

    # -- serversets (arguments checked and errors translated by Store) ---------------------

    def _watch_members(self, path: str, callback: MembersCallback) -> Handle:
        return self._watch(_FileWatch(self, self._dir(path), callback))

    def _watch_children(self, path: str, callback: ChildrenCallback) -> Handle:
        return self._watch(_ChildrenWatch(self._dir(path), callback))

    def _read_children(self, path: str) -> list[str]:
        return _subdirectories(self._dir(path))

    def _announce(self, path: str, data: bytes, name: str | None) -> Handle:
        directory = self._dir(path)
        directory.mkdir(parents=True, exist_ok=True)
        if name is not None:
            target = directory / name
            if target.exists() and time.time() - target.stat().st_mtime <= self.lease_seconds:
                raise StoreError(f"member {name} of {path} exists")
            _write_atomically(target, data)
            with self._lock:
                self._owned.add(target)
            return _Member(self, target)
        with open(directory / ".sequence.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            existing = [int(p.name[7:]) for p in directory.glob("member_*") if p.name[7:].isdigit()]
            counter_file = directory / ".sequence"
            last = int(counter_file.read_text() or 0) if counter_file.exists() else 0
            seq = max([last, *existing]) + 1
            counter_file.write_text(str(seq))
            target = directory / f"member_{seq:010d}"
            tmp = directory / f".tmp-{seq}"
            tmp.write_bytes(data)
            os.replace(tmp, target)
        with self._lock:
            self._owned.add(target)
        return _Member(self, target)

    def _read_members(self, path: str) -> dict[str, bytes]:
        directory, now, out = self._dir(path), time.time(), {}
        for entry in (list(os.scandir(directory)) if directory.is_dir() else []):
            if _member_key(entry.name) is None:
                continue
            try:
                if entry.is_file() and now - entry.stat().st_mtime <= self.lease_seconds:
                    out[entry.name] = Path(entry.path).read_bytes()
            except FileNotFoundError:
                continue
        return out

    def _set_member(self, path: str, name: str, data: bytes) -> None:
        target = self._dir(path) / name
        if not target.exists():
            raise StoreError(f"member {name} of {path} is gone")
        _write_atomically(target, data)

    def _remove_member(self, path: str, name: str) -> None:
        try:
            (self._dir(path) / name).unlink()
        except FileNotFoundError:
            pass

    # -- route maps ------------------------------------------------------------------------

    def _service_dir(self, service: str) -> Path:
        return self._dir(f"/rollway/{service}")

    def _read_routemap(self, service: str) -> RouteMapRecord | None:
        path = self._service_dir(service) / "routemap.json"
        try:
            return RouteMapRecord.decode(path.read_bytes(), str(path))
        except FileNotFoundError:
            return None

    def _write_routemap(self, record: RouteMapRecord, expected_revision: int) -> None:
        directory = self._service_dir(record.service)
        (directory / "history").mkdir(parents=True, exist_ok=True)
        with _flocked(directory / ".lock"):
            current = self._read_routemap(record.service)
            current_revision = current.revision if current else 0
            if current_revision != expected_revision or record.revision != expected_revision + 1:
                raise ConflictError(f"route map of {record.service!r} is at revision {current_revision}, "
                                    f"not {expected_revision}: fetch it again and retry")
            payload = json.dumps(record.to_json_dict(), sort_keys=True)
            (directory / "history" / f"{record.revision:010d}.json").write_text(payload)
            _write_atomically(directory / "routemap.json", payload.encode())

    def _history(self, service: str) -> list[RouteMapRecord]:
        directory = self._service_dir(service) / "history"
        if not directory.exists():
            return []
        return [RouteMapRecord.decode(p.read_bytes(), str(p)) for p in sorted(directory.glob("*.json"))]

    def _services(self) -> list[str]:
        base = self._dir("/rollway")
        if not base.exists():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "routemap.json").exists())

    # -- deploy state ----------------------------------------------------------------------

    def _read_deploy_state(self, service: str) -> tuple[bytes | None, int]:
        path = self._service_dir(service) / "deploy.json"
        try:
            record = json.loads(path.read_bytes())
            return base64.b64decode(record["data"], validate=True), int(record["version"])
        except FileNotFoundError:
            return None, -1
        except (ValueError, KeyError, TypeError, binascii.Error) as error:
            raise StoreError(f"deploy state of {service!r} in {path} is unreadable: {error}") from None

    def _write_deploy_state(self, service: str, data: bytes, expected_version: int) -> int:
        directory = self._service_dir(service)
        directory.mkdir(parents=True, exist_ok=True)
        with _flocked(directory / ".deploy.lock"):
            _, current = self._read_deploy_state(service)
            if current != expected_version:
                raise ConflictError(f"deploy state of {service!r} is at version {current}, not "
                                    f"{expected_version}: read it again and retry")
            version = current + 1
            _write_atomically(directory / "deploy.json", json.dumps(
                {"version": version, "data": base64.b64encode(data).decode("ascii")}).encode())
            return version

    def _watch_deploy_state(self, service: str, callback: DeployStateCallback) -> Handle:
        return self._watch(_DeployWatch(self, service, callback))

    # -- leadership and fleet records --------------------------------------------------------

    def _campaign(self, service: str, identity: str, on_change: LeadershipCallback) -> Campaign:
        campaign = _Campaign(self, service, identity, on_change)
        self._campaigns.add(campaign)
        return campaign

    def _publish_fleet(self, service: str, replica: str, data: bytes) -> FleetRecord:
        return _FleetRecord(self, self._service_dir(service) / "fleet" / f"{replica}.json", data)

    def _watch_fleet(self, service: str, callback: FleetCallback) -> Handle:
        directory = self._service_dir(service) / "fleet"
        return self._watch(_FileWatch(self, directory, callback, key=_fleet_key, by_content=True))
