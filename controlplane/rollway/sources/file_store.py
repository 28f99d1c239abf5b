"""The embedded store: a local directory with the ZooKeeper store's layout.

- serversets: ``DIR/<path>/member_NNNNNNNNNN`` files. A member lives while its announcer
  keeps the file fresh (heartbeat every lease/3); a file older than the lease counts as
  gone, like an ephemeral znode whose session expired.
- route maps: ``DIR/rollway/<service>/routemap.json`` and ``history/<revision>.json``,
  written under an exclusive lock with the revision checked (compare-and-set), history
  first, then the current record by atomic rename.

Watches poll (default every 50 ms): no inotify dependency, and the cost is a directory
listing per watched serverset.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

from rollway.sources.store import CONNECTED, ConflictError, Handle, MembersCallback, RouteMapRecord, Store


class _Poller:
    def __init__(self, interval: float):
        self.interval = interval
        self.watches: list["_FileWatch"] = []
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="rollway-file-store", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            with self.lock:
                watches = list(self.watches)
            for watch in watches:
                watch.poll()


class _FileWatch(Handle):
    def __init__(self, store: "FileStore", directory: Path, callback: MembersCallback):
        self.store, self.directory, self.callback = store, directory, callback
        self.seen: dict[str, tuple[float, int]] | None = None
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
            if not entry.name.startswith("member_"):
                continue
            try:
                st = entry.stat()
            except FileNotFoundError:
                continue
            if now - st.st_mtime <= self.store.lease_seconds:
                listing[entry.name] = (st.st_mtime_ns, st.st_size)
        # Membership changes when the set of live files or a file's size changes; mtime
        # alone moves with every heartbeat.
        shape = {name: size for name, (_, size) in listing.items()}
        if self.seen is not None and shape == self.seen:
            return
        self.seen = shape
        members = {}
        for name in listing:
            try:
                members[name] = (self.directory / name).read_bytes()
            except FileNotFoundError:
                continue
        self.callback(members)

    def close(self) -> None:
        self.closed = True


class _Member(Handle):
    def __init__(self, store: "FileStore", path: Path):
        self.store, self.path = store, path

    def close(self) -> None:
        with self.store._lock:
            self.store._owned.discard(self.path)
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass


class FileStore(Store):
    def __init__(self, root: str, *, url: str | None = None, poll_interval: float = 0.05,
                 lease_seconds: float = 10.0):
        super().__init__()
        self.root = Path(root)
        self.url = url or f"file://{root}"
        self.poll_interval = poll_interval
        self.lease_seconds = lease_seconds
        self._owned: set[Path] = set()
        self._poller: _Poller | None = None
        self._heartbeat_stop = threading.Event()

    def start(self, timeout: float = 15.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self._poller = _Poller(self.poll_interval)
        threading.Thread(target=self._heartbeat, name="rollway-file-heartbeat", daemon=True).start()
        self._set_state(CONNECTED)

    def stop(self) -> None:
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

    def _dir(self, zk_path: str) -> Path:
        parts = [p for p in zk_path.split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise ValueError(f"path {zk_path!r} may not contain . or ..")
        return self.root.joinpath(*parts)

    def watch_members(self, path: str, callback: MembersCallback) -> Handle:
        watch = _FileWatch(self, self._dir(path), callback)
        watch.poll()
        assert self._poller is not None, "store not started"
        with self._poller.lock:
            self._poller.watches.append(watch)
        return watch

    def announce(self, path: str, data: bytes) -> Handle:
        directory = self._dir(path)
        directory.mkdir(parents=True, exist_ok=True)
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

    # -- route maps ------------------------------------------------------------------------

    def _service_dir(self, service: str) -> Path:
        return self._dir(f"/rollway/{service}")

    def read_routemap(self, service: str) -> RouteMapRecord | None:
        path = self._service_dir(service) / "routemap.json"
        try:
            return RouteMapRecord.from_json_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    def write_routemap(self, record: RouteMapRecord, expected_revision: int) -> None:
        directory = self._service_dir(record.service)
        (directory / "history").mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            current = self.read_routemap(record.service)
            current_revision = current.revision if current else 0
            if current_revision != expected_revision or record.revision != expected_revision + 1:
                raise ConflictError(f"route map of {record.service!r} is at revision {current_revision}, "
                                    f"not {expected_revision}: fetch it again and retry")
            payload = json.dumps(record.to_json_dict(), sort_keys=True)
            (directory / "history" / f"{record.revision:010d}.json").write_text(payload)
            tmp = directory / ".routemap.tmp"
            tmp.write_text(payload)
            os.replace(tmp, directory / "routemap.json")

    def history(self, service: str) -> list[RouteMapRecord]:
        directory = self._service_dir(service) / "history"
        if not directory.exists():
            return []
        return [RouteMapRecord.from_json_dict(json.loads(p.read_text())) for p in sorted(directory.glob("*.json"))]

    def services(self) -> list[str]:
        base = self._dir("/rollway")
        if not base.exists():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "routemap.json").exists())
