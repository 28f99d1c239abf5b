"""The bad-build guard: how soon a bad build stops getting sessions, and how many meet it.

Run: make bench-guard   (or: .venv/bin/python benchmarks/guard.py [--runs 5])

Real parts, per run: two control-plane replicas on the embedded store, a stock Envoy on each
(load reports to its own replica), four app hosts, 200 browser sessions crossing between the
Envoys on every request (about 200 requests a second in all). v1 runs on four hosts; the
deploy tool moves two to v2, which answers 30 % of requests with a 500 (v1: 2 %); the route
map's guard is ``{action: rollback}`` (defaults: max_error_ratio 0.05, min_requests 500).

Measured: the time from the first 500 a session got from v2 to the moment every Envoy routes
on a config where v2 is halted (both ACKed it: no new session reaches v2 from then), p50 and
p99 over the runs; and the sessions exposed (that got a 500 from v2).

The peer, same run: the simulator's ``bad-build`` scenario at the same scale (200 sessions,
two Envoys, four hosts, two moved per step, a request a second per session), without the
guard (strategy ``unguarded``: the deploy tool goes on, nobody halts v2) and with it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]  # envoy.py shadows `envoy`
sys.path.insert(0, os.path.join(_HERE, "..", "tests"))

from rollway.tools.session import BrowserSession  # noqa: E402
from rollway.tools.sim import SimConfig, run  # noqa: E402

from guarded_edge import SESSIONS, GuardedEdge, rolling  # noqa: E402

ROUTEMAP = {"service": "web", "guard": {"action": "rollback"}, "stages": [rolling("prod", 1)]}


def wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


def one_run(workdir: Path) -> tuple[float, int]:
    """(seconds from v2's first 500 to the halt on every Envoy, sessions exposed)."""
    edge = GuardedEdge(workdir, f"file://{workdir}/store", ROUTEMAP, failing={"v2": 30})
    try:
        edge.set_hosts("prod", {"v1": 4})
        edge.start()
        wait(edge.settled, 60, "v1 on both Envoys")
        sessions, log = [BrowserSession() for _ in range(SESSIONS)], {}
        edge.visit(sessions, log, 0)
        edge.set_hosts("prod", {"v1": 2, "v2": 2})
        wait(edge.settled, 60, "v2 admitted")
        reached: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set() and not reached:
                if edge.halt_reached("v2"):
                    reached.append(time.monotonic())
                time.sleep(0.02)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        round_no = 1
        while not reached and round_no < 200:
            edge.visit(sessions, log, round_no)
            round_no += 1
        stop.set()
        watcher.join()
        if not reached or "v2" not in edge.first_error:
            raise SystemExit("the guard did not halt v2")
        exposed = sum(1 for s in sessions if any(v == "v2" and status == 500 for _, v, status, _ in log[id(s)]))
        return reached[0] - edge.first_error["v2"], exposed
    finally:
        edge.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    times, exposed = [], []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="rollway-guard-") as tmp:
            seconds, n = one_run(Path(tmp))
        times.append(seconds)
        exposed.append(n)
        print(f"run {i + 1}: first 500 from v2 -> halted on every Envoy {seconds:.2f} s, {n} of {SESSIONS} "
              "sessions met a 500 from v2", flush=True)
    print(f"guarded, real Envoys ({args.runs} runs): first bad response -> no new session to v2 on every Envoy "
          f"p50 {statistics.median(times):.2f} s, p99 {percentile(times, 0.99):.2f} s; sessions exposed "
          f"p50 {statistics.median(exposed):.0f}, max {max(exposed)} of {SESSIONS}")
    sim = {strategy: run(SimConfig(scenario="bad-build", strategy=strategy, envoys=2, sessions=SESSIONS, hosts=4,
                                   batch=2, lag_max=1.0, request_rate=1.0, seed=1)).metrics
           for strategy in ("unguarded", "rollway")}
    for strategy, m in sim.items():
        halted = "never halted" if m["time_to_halt"] is None else f"halted on every Envoy after {m['time_to_halt']} s"
        print(f"simulator, {strategy:9}: {m['sessions_met_errors']} of {SESSIONS} sessions met a 500 from v2, "
              f"{halted}, {m['sessions_left_on_bad']} left on v2, {m['bounces']} bounces")


if __name__ == "__main__":
    main()
