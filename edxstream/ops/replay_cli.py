"""``edxstream replay``: reprocess history from a time (see docs/replay.md)."""

from __future__ import annotations

import argparse
import sys

from edxstream.core import settings as settings_mod

# What to start once the offsets are moved. For process and all, the sinks must run too:
# they receive the re-emitted records and windows after their current position.
START = {
    "process": ["edxstream process", "edxstream sink mysql", "edxstream sink clickhouse"],
    "all": ["edxstream process", "edxstream sink mysql", "edxstream sink clickhouse"],
    "mysql": ["edxstream sink mysql"],
    "clickhouse": ["edxstream sink clickhouse"],
}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "replay",
        help="reset consumer groups to a time so history is reprocessed",
        description=(
            "Move the chosen consumers back to a time (an event time) so they reprocess "
            "history: after a bug fix, a new classification rule, or a lost database. The "
            "consumers must be stopped. --target process (or all) also resets the stream "
            "app's tables, so counts are rebuilt rather than added twice, and deletes the "
            "replayed windows in ClickHouse. See docs/replay.md."
        ),
    )
    p.add_argument(
        "--from",
        dest="from_",
        required=True,
        metavar="BEGINNING|ISO-TIME",
        help="BEGINNING, or an ISO-8601 event time (UTC if no offset); aligned down to a window boundary",
    )
    p.add_argument(
        "--to",
        metavar="ISO-TIME",
        help="end of the range to count (sink targets only; the sinks still read on to the end of their topics)",
    )
    p.add_argument(
        "--target",
        choices=("process", "mysql", "clickhouse", "all"),
        default="all",
        help="which consumers to move (default: all = process, and the sinks follow)",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print, per group/topic/partition, the current and new offsets and the "
        "messages to reprocess; change nothing",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edxstream.ops import replay

    from edxstream.core import kafka_admin

    s = settings_mod.load()
    kafka_admin.require_broker(s)
    from_time = replay.parse_time_argument(args.from_)
    to_time = replay.parse_time_argument(args.to) if args.to else None
    if args.to and to_time is None:
        from edxstream.core.errors import UserError

        raise UserError("--to takes an ISO-8601 time, not BEGINNING")
    result = replay.replay(
        s,
        args.target,
        from_time,
        to_time=to_time,
        dry_run=args.dry_run,
        progress=lambda m: print(m, file=sys.stderr),
    )
    print(replay.format_plan(result.plan))
    if not result.applied:
        print("\ndry run: nothing changed")
        return 0
    print("\noffsets moved. Start the consumers to reprocess:")
    for cmd in START[args.target]:
        print(f"  {cmd}")
    return 0
