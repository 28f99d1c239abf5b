"""``rollway demo``: the quick start's flags, turned into ``DemoOptions`` for
``rollway.tools.demo`` (nothing past the CLI sees argparse)."""

from __future__ import annotations

import argparse
import dataclasses
import os


def cli_demo(args: argparse.Namespace) -> int:
    from rollway.tools.demo import DemoOptions, run_demo

    return run_demo(DemoOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DemoOptions)}))


def add_command(sub) -> None:
    demo = sub.add_parser("demo", help="watch a rolling deploy through two real Envoys (the quick start)")
    demo.add_argument("--duration", type=float, default=60.0, help="seconds of traffic (default 60)")
    demo.add_argument("--sessions", type=int, default=40, help="simulated browser sessions (default 40)")
    demo.add_argument("--batch", type=int, default=2, help="prod hosts replaced per deploy step (default 2)")
    demo.add_argument("--json", action="store_true", help="print a machine-readable summary at the end")
    demo.add_argument("--zk", metavar="HOST:PORT", help="use this ZooKeeper instead of a local directory")
    demo.add_argument("--http-port", type=int, default=int(os.environ.get("ROLLWAY_DEMO_HTTP_PORT", "7780")),
                      help="dashboard port (default 7780; 0 picks a free one)")
    demo.add_argument("--browsers", type=int, default=0, metavar="N",
                      help="also drive N real headless Chromium tabs on the app's page (Debian's chromium and "
                           "chromium-driver, and selenium: pip install 'rollway[browser]')")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--screenshot", metavar="FILE.png",
                      help="mid-deploy, save the dashboard as headless Chromium renders it")
    demo.set_defaults(func=cli_demo)
