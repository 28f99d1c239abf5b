"""The README's simulation table, printed by one command with the settings it ran on.

Run: make sim-table   (or: .venv/bin/python benchmarks/sim_table.py [--scenario NAME ...] [--json])

Each row is ``rollway simulate --scenario NAME --strategy all`` at the settings printed
above the table (10,000 sessions, 8 Envoys lagging up to 30 s, seed 1, default drain,
debounce and reconnects). A cell is ``bounces / most reloads of one session in one rollout /
requests decided onto a version with zero capacity / overload p99``, bounces and reloads
counted by the user's definition (rollway.tools.sim.recount). Where a stale Envoy caused
some bounces, the Rollway cell says how many, against six per stale response that moved a
session and the README's bound (rollway.tools.sim.runner.stale_bound), and the reload
maximum without the stale Envoy's.
"""

from __future__ import annotations

import argparse
import json
import sys

from rollway.tools.sim import LIMITS, SCENARIOS, STRATEGIES, SimConfig, run
from rollway.tools.sim.recount import STALE_BOUNCES_PER_MOVE

TITLES = {
    "rolling": "rolling (in place)", "rollback": "rollback (half-way, announced, in place)",
    "autoscale": "autoscale during the deploy", "spot-loss": "spot hosts vanishing",
    "third-version": "third version mid-ramp", "blue-green": "blue-green cutover",
    "canary-ramp": "canary 0.5% → 5%", "failover": "leader killed, replica restarted",
    "stale-envoy": "an Envoy stale from before the deploy", "surge-rolling": "surge-style rolling",
    "surge-rollback": "surge-style rollback (half-way, announced)",
    "rollback-unannounced": "*outside the rules:* rollback not announced",
}


def cell(m: dict, strategy: str) -> str:
    p99 = "–" if m["scenario"] == "blue-green" else f"{m['overload_p99']:.2f}"
    text = f"{m['bounces']:,} / {m['refreshes_per_session_max']} / {m['zero_capacity_requests']:,} / {p99}"
    if strategy == "rollway" and m["bounces_stale_caused"]:
        text += (f" (stale-caused: {m['bounces_stale_caused']:,}; six per stale move: {STALE_BOUNCES_PER_MOVE * m['stale_moves']:,};"
                 f" the stated bound: {m['stale_bound']:,}; reloads without the stale Envoy's:"
                 f" {m['refreshes_per_session_max_fresh']})")
    return f"**{text}**" if strategy == "rollway" else text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", action="append", choices=SCENARIOS + LIMITS, help="only these rows (repeatable)")
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--envoys", type=int, default=8)
    parser.add_argument("--lag-max", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="every metric of every run")
    args = parser.parse_args()
    rows = {}
    for scenario in args.scenario or SCENARIOS + LIMITS:
        rows[scenario] = {s: run(SimConfig(scenario=scenario, strategy=s, sessions=args.sessions, envoys=args.envoys,
                                           lag_max=args.lag_max, seed=args.seed)).metrics for s in STRATEGIES}
        print(f"ran {scenario}", file=sys.stderr, flush=True)
    if args.json:
        json.dump(rows, sys.stdout, indent=2, sort_keys=True)
        print()
        return 0
    print(f"{args.sessions:,} sessions, {args.envoys} Envoys lagging up to {args.lag_max:g} s, seed {args.seed}, "
          "default drain, debounce and reconnects (`rollway simulate --scenario NAME --strategy all`)\n")
    print("| scenario | naive | capacity, no tiebreak | rollway |\n|---|---|---|---|")
    for scenario, results in rows.items():
        print(f"| {TITLES[scenario]} | " + " | ".join(cell(results[s], s) for s in STRATEGIES) + " |")
    violations = sum(r["rollway"]["overload_violations"] for r in rows.values())
    print(f"\nRollway ticks over the overload bound, all rows: {violations}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
