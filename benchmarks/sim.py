"""Simulator speed: 100,000 sessions x 8 Envoys x one full rolling deploy.

Run: make bench-sim   (or: .venv/bin/python benchmarks/sim.py [--sessions N])

Prints the wall time and simulated requests per second for the Rollway strategy, and the
same run with the capacity-only peer (no wanted version, so the batch call carries less).
Target (issue 6): <= 30 s for 100,000 sessions.
"""

from __future__ import annotations

import argparse
import sys
import time

from rollway.tools.sim import SimConfig, run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100_000)
    parser.add_argument("--envoys", type=int, default=8)
    args = parser.parse_args()
    results = {}
    for strategy in ("rollway", "capacity"):
        start = time.perf_counter()
        metrics = run(SimConfig(scenario="rolling", strategy=strategy, sessions=args.sessions,
                                envoys=args.envoys)).metrics
        results[strategy] = (time.perf_counter() - start, metrics["requests"], metrics["bounces"])
    for strategy, (seconds, requests, bounces) in results.items():
        print(f"{strategy:9} {args.sessions} sessions x {args.envoys} Envoys, full rolling deploy: {seconds:6.1f} s "
              f"({requests / seconds:,.0f} simulated requests/s, {bounces} bounces)")
    seconds = results["rollway"][0]
    print(f"ratio rollway/capacity: {seconds / results['capacity'][0]:.2f}x; target <= 30 s: "
          f"{'met' if seconds <= 30 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
