"""The ``edxstream`` command. Each component contributes its own subcommands through a
``register(subparsers)`` function in its ``cli`` module; this file only lists them. The
command modules keep Faust, Kafka and the databases out of their imports until a command
needs them, so the command starts fast."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from edxstream.analyst import cli as analyst_cli
from edxstream.core.errors import UserError
from edxstream.ops import demo_cli, generate_cli, inspect_cli, replay_cli, stack_cli
from producer import cli as producer_cli
from sinks import cli as sinks_cli
from stream_app import cli as stream_cli

# Each component's CLI module defines register(subparsers). They import only what building
# their parser needs; Faust, confluent_kafka, chdb and the like are imported inside the
# command functions, so `edxstream --help` stays fast.
COMPONENTS = (
    stack_cli,  # stack up|down|status
    inspect_cli,  # inspect
    producer_cli,  # ship, backfill
    stream_cli,  # process
    sinks_cli,  # sink mysql|clickhouse, db init
    replay_cli,  # replay
    generate_cli,  # generate
    demo_cli,  # demo, bench
    analyst_cli,  # query, export, report
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
    for module in COMPONENTS:
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
