"""``edxstream reconcile``: compare what was shipped with both stores and the windows."""

from __future__ import annotations

import argparse

from edxstream.core import settings as settings_mod


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "reconcile",
        help="compare, per course and day, the lines shipped with the events in MySQL, in ClickHouse "
        "and in the window counts; exit 1 on any difference",
        description=(
            "Read the raw topic (each line once, parsed as the stream app parses it) and, per course "
            "and UTC day, compare its events with the rows of MySQL's events, ClickHouse's events "
            "and the sum of the day's window counts; dead letters are compared too. Prints the "
            "differences and exits 1 when there are any, 0 when everything agrees. Run it once the "
            "pipeline has caught up. When retention has removed the raw topic's oldest lines, only the "
            "days after its first remaining day are compared."
        ),
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--limit", type=int, default=50, help="most differences to print (default 50)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edxstream.ops import reconcile

    figures, diffs = reconcile.reconcile(settings_mod.load(), progress=not args.no_progress)
    print(reconcile.format_report(figures, diffs, args.limit))
    return 1 if diffs else 0
