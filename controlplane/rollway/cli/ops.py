"""``rollway ops``: the operations bundle (rollway.ops) on stdout or into a directory.

    rollway ops show rules          # Prometheus recording and alerting rules
    rollway ops show rules-test     # their promtool test cases
    rollway ops show dashboard      # the Grafana dashboard (JSON)
    rollway ops export DIR          # all three files
"""

from __future__ import annotations

import argparse
import sys

from rollway.cli.errors import CommandError


def cmd_show(args: argparse.Namespace) -> int:
    from rollway import ops

    sys.stdout.write(ops.read(args.what))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rollway import ops

    try:
        written = ops.export(args.directory)
    except OSError as error:
        raise CommandError(f"cannot write into {args.directory!r}: {error.strerror}") from None
    for path in written:
        print(path)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    from rollway.ops import FILES

    ops = sub.add_parser("ops", help="alert rules and dashboards for operators (Prometheus, Grafana)")
    osub = ops.add_subparsers(dest="ops_command", required=True)
    show = osub.add_parser("show", help="print one file of the bundle")
    show.add_argument("what", choices=sorted(FILES))
    show.set_defaults(func=cmd_show)
    export = osub.add_parser("export", help="write every file of the bundle into a directory")
    export.add_argument("directory")
    export.set_defaults(func=cmd_export)
