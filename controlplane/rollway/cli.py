"""The ``rollway`` command line.

Subcommands so far:

``rollway route --config FILE [--now T] [--sessions N | --id TOKEN ...] [--json]``
    Route routing ids (or N freshly minted sessions) against a filter config with the C++
    core and print each decision, plus the share of sessions per stage/version.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import time
from collections.abc import Sequence

from rollway import Router, new_routing_id


def _read_config(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError as error:
        raise SystemExit(f"rollway: cannot read config {path!r}: {error.strerror}") from None


def _cmd_route(args: argparse.Namespace) -> int:
    try:
        router = Router(_read_config(args.config))
    except ValueError as error:
        print(f"rollway: invalid config {args.config!r}: {error}", file=sys.stderr)
        return 2
    now = args.now if args.now is not None else time.time()
    ids: list[str | None] = list(args.id) if args.id else [
        new_routing_id(now) for _ in range(args.sessions)
    ]
    wanted = [args.wanted] * len(ids)
    batch = router.route_many(ids, wanted if args.wanted else None, now)
    # Each column is built once: a BatchDecisions attribute makes a new list per access.
    stages, versions, clusters = batch.stage, batch.version, batch.cluster
    reasons, refresh, minted = batch.reason, batch.refresh, batch.new_routing_id
    shares = collections.Counter(zip(stages, versions))
    rows = [
        {
            "routing_id": ids[i] or minted[i],
            "stage": stages[i],
            "version": versions[i],
            "cluster": clusters[i],
            "reason": reasons[i],
            "refresh": refresh[i],
            "minted": minted[i] is not None,
        }
        for i in range(len(batch))
    ] if args.id else []
    summary = [
        {"stage": stage, "version": version, "sessions": count, "share": count / len(ids)}
        for (stage, version), count in sorted(shares.items(), key=lambda kv: (str(kv[0][0]), str(kv[0][1])))
    ]
    if args.json:
        json.dump({"service": router.service, "generation": router.generation,
                   "decisions": rows, "shares": summary}, sys.stdout, indent=2)
        print()
        return 0
    print(f"service {router.service}  generation {router.generation}  sessions {len(ids)}")
    if args.id:
        print(f"{'routing id':42} {'stage':10} {'version':10} {'cluster':24} reason")
        for row in rows:
            print(f"{row['routing_id']:42} {row['stage'] or '-':10} {row['version'] or '-':10} "
                  f"{row['cluster'] or '-':24} {row['reason']}")
    print(f"{'stage':12} {'version':12} {'sessions':>9} {'share':>8}")
    for entry in summary:
        print(f"{entry['stage'] or '-':12} {entry['version'] or '-':12} {entry['sessions']:>9} "
              f"{entry['share']:>8.2%}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rollway", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    route = sub.add_parser("route", help="route routing ids against a filter config")
    route.add_argument("--config", required=True, help="filter config JSON file")
    route.add_argument("--now", type=float, help="unix time of the decision (default: now)")
    route.add_argument("--sessions", type=int, default=10000,
                       help="route this many freshly minted sessions (default 10000)")
    route.add_argument("--id", action="append", help="route this routing id (repeatable)")
    route.add_argument("--wanted", help="the app version the sessions run")
    route.add_argument("--json", action="store_true", help="machine-readable output")
    route.set_defaults(func=_cmd_route)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
