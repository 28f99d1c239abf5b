"""Coordination between control-plane replicas through the store: the deploy-state record
(compare-and-set and watch), leadership per service, and fleet reports, against a real
ZooKeeper and the file store."""

from __future__ import annotations

import threading
import time

import pytest

from rollway.sources.store import ConflictError

from conftest import wait_for


def fast(store_url: str) -> dict:
    """Small timeouts so that failover happens in a second or two."""
    return {"session_timeout": 2} if store_url.startswith("zk") else {"lease_seconds": 1}


class Recorder:
    def __init__(self):
        self.calls = []
        self.lock = threading.Lock()

    def __call__(self, *args):
        with self.lock:
            self.calls.append(args if len(args) > 1 else args[0])

    @property
    def last(self):
        with self.lock:
            return self.calls[-1] if self.calls else None


# -- deploy state -------------------------------------------------------------------------

def test_deploy_state_is_compare_and_set(store_url, open_stores):
    store = open_stores(store_url, **fast(store_url))
    assert store.read_deploy_state("web") == (None, -1)
    v0 = store.write_deploy_state("web", b"one", -1)
    assert store.read_deploy_state("web") == (b"one", v0)
    with pytest.raises(ConflictError) as created_twice:
        store.write_deploy_state("web", b"two", -1)
    assert "'web'" in str(created_twice.value) and str(v0) in str(created_twice.value)
    v1 = store.write_deploy_state("web", b"two", v0)
    assert v1 != v0
    with pytest.raises(ConflictError) as stale:
        store.write_deploy_state("web", b"three", v0)
    assert f"version {v1}, not {v0}" in str(stale.value)
    assert store.read_deploy_state("web") == (b"two", v1)       # nothing written
    assert store.read_deploy_state("api") == (None, -1)         # per service
    with pytest.raises(ConflictError):
        store.write_deploy_state("api", b"x", 0)                # no record to update


def test_names_are_validated(store_url, open_stores):
    store = open_stores(store_url, **fast(store_url))
    for bad in ("", "a/b", "..", "we b"):
        with pytest.raises(ValueError, match="service"):
            store.read_deploy_state(bad)
        with pytest.raises(ValueError, match="replica"):
            store.publish_fleet("web", bad, b"x")


def test_watch_deploy_state_sees_every_write_of_another_replica(store_url, open_stores):
    watching = open_stores(store_url, **fast(store_url))
    writing = open_stores(store_url, **fast(store_url))
    seen = Recorder()
    handle = watching.watch_deploy_state("web", seen)
    assert seen.calls == [(None, -1)]
    version = -1
    for i in range(3):
        data = f"state {i}".encode()
        version = writing.write_deploy_state("web", data, version)
        wait_for(lambda want=(data, version): seen.last == want, timeout=5, what=f"write {i}")
    assert [data for data, _ in seen.calls] == [None, b"state 0", b"state 1", b"state 2"]
    handle.close()
    writing.write_deploy_state("web", b"after close", version)
    wait_for(lambda: writing.read_deploy_state("web")[0] == b"after close", what="the write")
    time.sleep(0.3)
    assert seen.last[0] == b"state 2"


# -- leadership ---------------------------------------------------------------------------

def test_exactly_one_leads_and_closing_the_leader_hands_over(store_url, open_stores):
    stores = [open_stores(store_url, **fast(store_url)) for _ in range(2)]
    changes = [Recorder(), Recorder()]
    campaigns = [s.campaign("web", f"replica-{i}", changes[i]) for i, s in enumerate(stores)]
    wait_for(lambda: any(c.leading for c in campaigns), timeout=5, what="a leader")
    time.sleep(0.5)
    assert sum(c.leading for c in campaigns) == 1
    first = 0 if campaigns[0].leading else 1
    other = 1 - first
    assert campaigns[other].leader() == campaigns[first].leader() == f"replica-{first}"
    assert changes[first].calls == [True] and changes[other].calls == []

    campaigns[first].close()
    assert not campaigns[first].leading
    wait_for(lambda: campaigns[other].leading, timeout=5, what="the other replica to take over")
    assert changes[first].calls == [True, False]
    assert changes[other].calls == [True]
    assert campaigns[other].leader() == f"replica-{other}"
    campaigns[other].close()
    wait_for(lambda: campaigns[first].leader() is None, timeout=5, what="nobody to lead")


def test_zookeeper_session_expiry_moves_leadership(zookeeper, open_stores):
    from zk_harness import expire_session

    url = f"zk://{zookeeper.hosts}/election"
    a, b = open_stores(url, session_timeout=2), open_stores(url, session_timeout=2)
    a_changes, b_changes = Recorder(), Recorder()
    leader = a.campaign("web", "a", a_changes)
    wait_for(lambda: leader.leading, timeout=5, what="a to lead")
    follower = b.campaign("web", "b", b_changes)
    time.sleep(0.3)
    assert not follower.leading

    expire_session(a.client, zookeeper.hosts)
    wait_for(lambda: follower.leading, timeout=10, what="b to take over")
    assert not leader.leading
    assert a_changes.calls[:2] == [True, False]
    wait_for(lambda: a.state == "connected", what="a's new session")
    time.sleep(0.5)
    assert not leader.leading and follower.leading and leader.leader() == "b"
    follower.close()
    wait_for(lambda: leader.leading, timeout=5, what="a to lead again")


# -- fleet reports ------------------------------------------------------------------------

def test_fleet_records_are_seen_updated_and_removed(store_url, open_stores):
    one, two, watching = (open_stores(store_url, **fast(store_url)) for _ in range(3))
    seen = Recorder()
    handle = watching.watch_fleet("web", seen)
    assert seen.calls == [{}]
    r1 = one.publish_fleet("web", "cp-1", b"acked 1")
    r2 = two.publish_fleet("web", "cp-2", b"acked 1")
    wait_for(lambda: seen.last == {"cp-1": b"acked 1", "cp-2": b"acked 1"}, timeout=5, what="both records")
    r2.update(b"acked 2")                  # same size: seen by content, not size
    wait_for(lambda: seen.last == {"cp-1": b"acked 1", "cp-2": b"acked 2"}, timeout=5, what="the update")
    r1.close()
    wait_for(lambda: seen.last == {"cp-2": b"acked 2"}, timeout=5, what="the record to go")
    time.sleep(1.5)            # longer than the file store's lease: heartbeats keep it
    assert seen.last == {"cp-2": b"acked 2"}
    handle.close()
    r2.close()


def test_zookeeper_fleet_record_comes_back_after_session_expiry(zookeeper, open_stores):
    from zk_harness import expire_session

    url = f"zk://{zookeeper.hosts}/fleet-expiry"
    publishing, watching = open_stores(url, session_timeout=2), open_stores(url, session_timeout=2)
    seen = Recorder()
    watching.watch_fleet("web", seen)
    record = publishing.publish_fleet("web", "cp-1", b"acked 1")
    wait_for(lambda: seen.last == {"cp-1": b"acked 1"}, timeout=5, what="the record")
    expire_session(publishing.client, zookeeper.hosts)
    record.update(b"acked 2")              # during the outage, or just after: kept either way
    wait_for(lambda: seen.last == {"cp-1": b"acked 2"}, timeout=10, what="the record with the latest data")
    # The watcher survives its own session's expiry too, and resyncs data changes.
    expire_session(watching.client, zookeeper.hosts)
    record.update(b"acked 3")
    wait_for(lambda: seen.last == {"cp-1": b"acked 3"}, timeout=10, what="the watcher to resync")
    record.close()
    wait_for(lambda: seen.last == {}, timeout=5, what="the record to go")


@pytest.mark.zookeeper
def test_a_fleet_record_update_while_zookeeper_is_gone_returns_and_publishes_on_return(tmp_path, open_stores):
    """The plane's worker writes fleet records; with every ZooKeeper server gone, a write
    must not wait for them (kazoo queues it until the session is back, without end): the
    worker would hang, and a replica stopping (which closes the record) with it. Found by
    the fleet test's shutdown, which stops ZooKeeper and the replicas at once. The latest
    data is published once ZooKeeper is back."""
    from zk_harness import ZooKeeperServer

    server = ZooKeeperServer(tmp_path / "zk").start()
    try:
        store = open_stores(f"zk://{server.hosts}/gone", session_timeout=10)
        watcher = open_stores(f"zk://{server.hosts}/gone", session_timeout=10)
        record = store.publish_fleet("web", "cp-1", b"acked 1")
        server.stop()
        wait_for(lambda: not store.client.connected, timeout=10, what="the store to see ZooKeeper gone")
        writer = threading.Thread(target=lambda: [record.update(b"acked 2"), record.update(b"acked 3")],
                                  daemon=True)
        writer.start()
        writer.join(30)          # a bound on a hang, not a speed target: it returns at once
        assert not writer.is_alive(), "a fleet record update waited for ZooKeeper to come back"
        server.start()
        seen = Recorder()
        watcher.watch_fleet("web", seen)
        wait_for(lambda: seen.last == {"cp-1": b"acked 3"}, timeout=20, what="the latest data published on return")
        record.close()
    finally:
        server.stop()
