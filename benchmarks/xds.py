"""xDS speed: push fan-out to many ADS streams, and end-to-end convergence in Envoy.

Run: make bench-xds   (or: .venv/bin/python benchmarks/xds.py)

(a) Fan-out: N lightweight ADS clients (benchmarks/xds_clients.py, one separate asyncio
    process) hold streams to the xDS server; a route-map push changes the filter config;
    we time from the push to the moment every one of the N streams has ACKed the change's
    final config (a weight change goes out in two steps: next_weight, then weight; both
    are counted). N = 100, 1,000, 5,000 and 10,000. Targets (medians): 1,000 <= 0.3 s,
    5,000 <= 1.5 s, 10,000 <= 3 s, and at most 2.2x the time per doubling of streams.
    Peer, same run: the time to serialize the new snapshot once (the part fan-out cannot
    avoid), to show what the per-stream transport adds. Also printed: the control plane's
    memory per stream (its RSS after the pushes, less before the clients connected, over N)
    and its CPU per push (this process hosts it; the clients run in another, on the same 2
    cores: at 10,000 they take ~1.2 s of CPU a push themselves).
    Clients ACK like Envoy and reopen a failed stream after a short backoff (opening
    thousands of streams at once, some are refused by gRPC's overload protection).
(c) Failover: two `rollway serve` replicas on a real ZooKeeper (session timeout 2 s); the
    leader is SIGKILLed and a serverset changes at once; we time until the survivor, now
    leading, publishes a config with the change. 10 kills, p50/p99. Bound: the session
    timeout (the dead leader's lease lives until its session expires) plus one publication.
(b) Convergence: a real ZooKeeper, the control plane, one real Envoy over ADS. A host of v2
    joins or leaves the serverset; we time from the ZooKeeper write to the first request
    through Envoy that is routed by the change (a probe session that hashes to v2 whenever
    v2 has capacity). >= 30 changes, p50/p99. Target: p99 <= 1 s. (A v2 that appears is
    first announced, then admitted after Envoy's ACK: two pushes, both counted.)
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # envoy.py shadows `envoy`
sys.path.insert(0, os.path.join(_HERE, "..", "tests"))

import rollway  # noqa: E402
from rollway.envoy import bootstrap as ec  # noqa: E402
from rollway.server import ControlPlaneServer, PlaneOptions, ServerOptions  # noqa: E402
from rollway.sources.serverset import member_json  # noqa: E402
from rollway.sources.store import open_store  # noqa: E402
from rollway.xds.resources import EXTENSION, build_resources  # noqa: E402

from envoy_harness import Backends, EnvoyProcess, free_port  # noqa: E402
from zk_harness import ZooKeeperServer  # noqa: E402

ROUTEMAP = {"service": "web", "stages": [
    {"name": "prod", "weight": 1, "mode": "rolling", "serverset": "/discovery/web/prod"},
    {"name": "canary", "weight": 1, "mode": "rolling", "serverset": "/discovery/web/canary"}]}


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def wait(predicate, timeout, what, interval=0.002):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise RuntimeError(f"timed out waiting for {what}")


def rss_bytes() -> int:
    """This process's resident memory: the control plane under test runs in it."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def fan_out(n: int, rounds: int) -> tuple[list[float], float, float, list[float]]:
    work = Path(tempfile.mkdtemp(prefix="rollway-xds-"))
    replica = ControlPlaneServer.start(ServerOptions(f"file://{work}/store", PlaneOptions(debounce=0.01),
                                                     api_port=None, xds_port=0))
    store, plane, xds = replica.store, replica.plane, replica.xds
    plane.push(json.dumps(ROUTEMAP), 0, "bench", "bench")
    store.announce("/discovery/web/prod", member_json("127.0.0.1", 9000, "v1"))
    cache = xds.xds.cache
    service = plane.service("web")

    def final_version(weight: float) -> str | None:
        """The ECDS version of the change's final config: new weight applied, nothing waiting
        for a second step (a weight change goes out as next_weight first)."""
        config = service.config
        if config is None or config.stages[1].weight != weight or service.deploy.admission.waiting(config):
            return None
        return cache.snapshot("web", 10000).versions[EXTENSION]

    acked_ecds = operator.methodcaller("get", EXTENSION)
    acked_of = operator.attrgetter("acked")
    # The clock must not steal the server's interpreter from its streams: walking every node
    # every 10 ms is O(N) a poll (at 10,000 streams, ~0.3 s of the server's GIL a push).
    # Instead the ledger's reports (one per ACK that moves a node, on the xDS loop) keep a
    # count per ECDS version, and the walk runs once that count says it can succeed (or
    # every 0.25 s, should a report not come).
    holding: dict[str, str] = {}       # node id -> ECDS version it last reported holding
    counts: dict[str, int] = {}        # ECDS version -> nodes reporting it
    report = cache.ledger.on_report

    def counting(service_name: str, reports: dict) -> None:
        for node_id, r in reports.items():
            version = r.versions[-1] if r is not None and r.versions else None
            old = holding.pop(node_id, None)
            if old is not None:
                counts[old] -= 1
            if version is not None:
                holding[node_id] = version
                counts[version] = counts.get(version, 0) + 1
        report(service_name, reports)
    cache.ledger.on_report = counting
    last_walk = [0.0]
    before = rss_bytes()
    clients = subprocess.Popen([sys.executable, os.path.join(_HERE, "xds_clients.py"), f"127.0.0.1:{xds.port}",
                                str(n)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def everyone_holds(weight: float) -> bool:
        target = final_version(weight)
        if target is None:
            return False
        now = time.monotonic()
        if counts.get(target, 0) < n and now - last_walk[0] < 0.25:
            return False
        last_walk[0] = now
        # Counted at C speed (map/count): the authority is each node's own ACK record.
        return list(map(acked_ecds, map(acked_of, list(cache.nodes.values())))).count(target) >= n
    try:
        line = clients.stdout.readline()
        assert line.strip() == "ready", line
        times, cpu = [], []
        for r in range(rounds):
            doc = json.loads(json.dumps(ROUTEMAP))
            weight = doc["stages"][1]["weight"] = 2 + r
            start, start_cpu = time.perf_counter(), time.process_time()
            plane.push(json.dumps(doc), r + 1, "bench", f"round {r}")
            wait(lambda: everyone_holds(weight), 120, f"{n} streams to hold the final config", interval=0.01)
            times.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)   # the control plane's CPU (all its threads)
        # Memory per stream: what N connected, subscribed streams (ledger entries, feeds,
        # grpc calls and tasks) added to the control plane's RSS, after the pushes.
        per_stream = (rss_bytes() - before) / n
        config = plane.filter_config("web")
        t = time.perf_counter()
        build_resources(config, {}, 10000)
        serialize = time.perf_counter() - t
    finally:
        # SIGTERM: the clients close their streams and exit, printing nothing; killed only if
        # they have not within 30 s (10,000 streams close in about a second).
        clients.terminate()
        try:
            clients.wait(30)
        except subprocess.TimeoutExpired:
            clients.kill()
            clients.wait()
        clients.stdin.close()
        clients.stdout.close()
        replica.stop()
    return times, serialize, per_stream, cpu


def routed_to(envoy, headers: dict, backend: str) -> bool:
    response = envoy.get("/", headers)
    return response.status == 200 and response.json["backend"] == backend


def convergence(changes: int) -> list[float]:
    work = Path(tempfile.mkdtemp(prefix="rollway-conv-"))
    zk = ZooKeeperServer(work / "zk").start()
    replica = ControlPlaneServer.start(ServerOptions(f"zk://{zk.hosts}/conv", PlaneOptions(debounce=0.05),
                                                     api_port=None, xds_port=0))
    plane, xds = replica.plane, replica.xds
    agent = open_store(replica.store.url)
    agent.start()
    doc = {"service": "web", "stages": [ROUTEMAP["stages"][0]]}
    plane.push(json.dumps(doc), 0, "bench", "bench")
    backends = Backends(["v1", "v2"])
    v1 = agent.announce("/discovery/web/prod", member_json(*backends.address("v1"), "v1"))
    listen, admin = free_port(), free_port()
    envoy = EnvoyProcess(ec.ads_bootstrap(xds_host="127.0.0.1", xds_port=xds.port, node_id="conv",
                                          listen_port=listen, admin_port=admin, service="web"), work, listen, admin)
    envoy.start()
    # A probe session that lands on v2 whenever v2 holds half the capacity.
    router = rollway.Router(json.dumps({"service": "web", "generation": 1, "stages": [
        {"name": "prod", "weight": 1, "mode": "rolling", "versions": [
            {"name": "v1", "capacity": 1, "cluster": "a"}, {"name": "v2", "capacity": 1, "cluster": "b"}]}]}))
    probe = next(r for r in (rollway.new_routing_id() for _ in range(100)) if router.route(r).version == "v2")
    headers = {"cookie": f"rw_rid={probe}"}
    times = []
    try:
        for _ in range(changes):
            time.sleep(0.05)
            start = time.perf_counter()
            member = agent.announce("/discovery/web/prod", member_json(*backends.address("v2"), "v2"))
            wait(lambda: routed_to(envoy, headers, "v2"), 30, "Envoy to route to v2")
            times.append(time.perf_counter() - start)
            time.sleep(0.05)
            start = time.perf_counter()
            member.close()
            wait(lambda: routed_to(envoy, headers, "v1"), 30, "Envoy to route back to v1")
            times.append(time.perf_counter() - start)
    finally:
        envoy.stop()
        v1.close()
        replica.stop()
        agent.stop()
        zk.stop()
        backends.close()
    return times


def failover(kills: int, session_timeout: float) -> list[float]:
    """(c) Two `rollway serve` replicas on a real ZooKeeper. Each round SIGKILLs the leader and
    at once changes a serverset; the clock stops when the survivor, now leading, publishes
    a config with the change (its generation moved on). The killed replica is restarted
    before the next round. Dominated by the ZooKeeper session timeout: the dead leader's
    ephemeral lease lives until its session expires."""
    import signal

    import grpc

    from rollway.proto import routemap_pb2 as pb
    from rollway.proto import routemap_pb2_grpc as pb_grpc
    from rollway.sources.store import RouteMapRecord

    work = Path(tempfile.mkdtemp(prefix="rollway-failover-"))
    zk = ZooKeeperServer(work / "zk").start()
    url = f"zk://{zk.hosts}/failover"
    agent = open_store(url)
    agent.start()
    agent.write_routemap(RouteMapRecord("web", 1, {"service": "web", "stages": [ROUTEMAP["stages"][0]]},
                                        "bench", "bench", time.time()), 0)
    members = [agent.announce("/discovery/web/prod", member_json("127.0.0.1", 9000, "v1"))]
    replicas: dict[str, tuple[subprocess.Popen, int]] = {}

    def start(name: str) -> None:
        api = free_port()
        process = subprocess.Popen([sys.executable, "-m", "rollway.cli.main", "serve", "--store", url,
                                    "--replica-id", name, "--api-port", str(api), "--xds-port", str(free_port()),
                                    "--http-port", str(free_port()), "--session-timeout", str(session_timeout)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        replicas[name] = (process, api)

    def status(name: str):
        stream = pb_grpc.RouteMapServiceStub(grpc.insecure_channel(f"127.0.0.1:{replicas[name][1]}")).WatchStatus(
            pb.WatchStatusRequest(service="web"), timeout=2)
        try:
            return next(iter(stream))
        except grpc.RpcError:
            return None
        finally:
            stream.cancel()

    times = []
    try:
        for name in ("a", "b"):
            start(name)
        for _ in range(kills):
            wait(lambda: all((s := status(n)) is not None and s.leader for n in replicas), 60, "both replicas up",
                 interval=0.05)
            leader = status("a").leader
            survivor = "b" if leader == "a" else "a"
            generation = status(survivor).generation
            t0 = time.perf_counter()
            replicas[leader][0].send_signal(signal.SIGKILL)
            members.append(agent.announce("/discovery/web/prod", member_json("127.0.0.1", 9000 + len(members), "v1")))
            capacity = float(len(members))

            def published() -> bool:
                s = status(survivor)
                return s is not None and s.leader == survivor and s.generation > generation and \
                    json.loads(s.filter_config)["stages"][0]["versions"][0]["capacity"] == capacity
            wait(published, 60, "the new leader's first config", interval=0.01)
            times.append(time.perf_counter() - t0)
            replicas[leader][0].wait(10)
            start(leader)
    finally:
        for process, _ in replicas.values():
            process.kill()
            process.wait()
        for m in members:
            m.close()
        agent.stop()
        zk.stop()
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 1000, 5000, 10000])
    parser.add_argument("--skip-convergence", action="store_true")
    parser.add_argument("--kills", type=int, default=10, help="leader kills for the failover figure (0: skip)")
    parser.add_argument("--changes", type=int, default=15, help="v2 joins and leaves: 2 measurements each")
    args = parser.parse_args()
    print("(a) fan-out: route-map push -> every ADS stream ACKed the new filter config")
    targets = {1000: 0.3, 5000: 1.5, 10000: 3.0}
    medians, cpu_medians = {}, {}
    for n in args.streams:
        times, serialize, per_stream, cpu = fan_out(n, args.rounds)
        cpu_medians[n] = percentile(cpu, 50)
        p50, worst = percentile(times, 50), max(times)
        medians[n] = p50
        target = targets.get(n)
        print(f"    N={n:5d}: median {p50 * 1000:7.1f} ms, worst {worst * 1000:7.1f} ms over {len(times)} pushes; "
              f"peer (snapshot serialization alone) {serialize * 1000:.1f} ms; "
              f"control plane memory {per_stream / 1024:.1f} KiB per stream, CPU {cpu_medians[n]:.2f} s per push"
              + (f"; target <= {target:g} s: {'met' if p50 <= target else 'MISSED'}" if target else ""),
              flush=True)
    ns = sorted(medians)
    for a, b in zip(ns, ns[1:]):
        per_doubling = (medians[b] / medians[a]) ** (1 / math.log2(b / a))
        cpu_doubling = (cpu_medians[b] / cpu_medians[a]) ** (1 / math.log2(b / a))
        print(f"    growth {a} -> {b} streams: x{b / a:g} streams, x{medians[b] / medians[a]:.1f} time "
              f"(x{per_doubling:.2f} per doubling; target <= 2.2: {'met' if per_doubling <= 2.2 else 'MISSED'}); "
              f"the control plane's CPU per push x{cpu_doubling:.2f} per doubling")
    if args.kills:
        timeout = 2.0
        times = failover(args.kills, timeout)
        print(f"(c) failover: leader SIGKILLed -> first config published by the new leader, {len(times)} kills, "
              f"ZooKeeper session timeout {timeout:g} s")
        print(f"    p50 {percentile(times, 50) * 1000:.0f} ms, p99 {percentile(times, 99) * 1000:.0f} ms "
              f"(bound: the session timeout plus one publication)", flush=True)
    if args.skip_convergence:
        return 0
    times = convergence(args.changes)
    p50, p99 = percentile(times, 50), percentile(times, 99)
    print(f"(b) convergence: serverset change in ZooKeeper -> real Envoy routing by it, {len(times)} changes")
    print(f"    p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms; target p99 <= 1 s: {'met' if p99 <= 1.0 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
