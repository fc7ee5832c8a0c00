"""The ``edxstream`` command. Each component contributes its own subcommands through a
``register(subparsers)`` function in its ``cli`` module; this file only lists them, so
importing the command does not import Faust, Kafka or the databases until needed."""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import sys

from edxstream.core.errors import UserError

# module path of each component's CLI; each must define register(subparsers)
COMPONENTS = (
    "edxstream.ops.stack_cli",  # stack up|down|status
    "edxstream.ops.inspect_cli",  # inspect
    "producer.cli",  # ship, backfill
    "stream_app.cli",  # process
    "sinks.cli",  # sink mysql|clickhouse, db init
    "edxstream.ops.replay_cli",  # replay
    "edxstream.ops.generate_cli",  # generate
    "edxstream.ops.course_cli",  # course import
    "edxstream.ops.demo_cli",  # demo, bench
    "edxstream.analyst.cli",  # query, export, report
    "edxstream.analyst.analyze_cli",  # analyze
    "edxstream.analyst.web_cli",  # serve, user
)

# Cyclic-GC thresholds for every command (the workers are what they are for). With
# CPython's defaults (700, 10, 10) a full collection may run every 70,000 net
# allocations, and each walks every live object: the stream app's tables, a sink's batch
# in hand, the pseudonymizer's caches. In the two-year bench that was 42 of 233
# CPU-seconds. The pipeline makes few reference cycles (they are still collected, only
# later), so full collections are made rarer and young ones less frequent.
GC_THRESHOLDS = (10_000, 20, 100)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edxstream", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMPONENTS:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name in (name, name.split(".")[0]):  # component not in this checkout
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except UserError as exc:
        print(f"edxstream: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
