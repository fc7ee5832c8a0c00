"""The ``edxstream`` command. Each component contributes its own subcommands through a
``register(subparsers)`` function in its ``cli`` module; this file only lists them. The
command modules keep Faust, Kafka and the databases out of their imports until a command
needs them, so the command starts fast."""

from __future__ import annotations

import argparse
import gc
import logging
import sys

from edxstream.analyst import analyze_cli
from edxstream.analyst import cli as analyst_cli
from edxstream.analyst import web_cli
from edxstream.core.errors import UserError
from edxstream.ops import (
    course_cli,
    demo_cli,
    forget_cli,
    generate_cli,
    inspect_cli,
    reconcile_cli,
    replay_cli,
    stack_cli,
)
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
    forget_cli,  # forget
    reconcile_cli,  # reconcile
    generate_cli,  # generate
    course_cli,  # course import
    demo_cli,  # demo, bench
    analyst_cli,  # query, export, report
    analyze_cli,  # analyze
    web_cli,  # serve, user
)

DESCRIPTION = """\
Near-real-time learning analytics for Open edX tracking logs: ship tracking.log into
Kafka, enrich and count its events with a stream app, and serve them from MySQL and
ClickHouse."""
EPILOG = """\
getting started:
  edxstream demo             the whole pipeline on a sample log, then what landed
  edxstream stack up         start the local services (Kafka broker, MariaDB, ClickHouse)
  edxstream db init          create the MySQL and ClickHouse tables
  edxstream COMMAND --help   the options of a command

Settings are EDXSTREAM_* environment variables (see the README). An error you can fix
is one line starting with "edxstream:", and the command exits with status 2."""

# Cyclic-GC thresholds for every command (the workers are what they are for). With
# CPython's defaults (700, 10, 10) a full collection may run every 70,000 net
# allocations, and each walks every live object: the stream app's tables, a sink's batch
# in hand, the pseudonymizer's caches. In the two-year bench that was 42 of 233
# CPU-seconds. The pipeline makes few reference cycles (they are still collected, only
# later), so full collections are made rarer and young ones less frequent.
GC_THRESHOLDS = (10_000, 20, 100)


class Parser(argparse.ArgumentParser):
    """argparse, with a wrong argument reported as one ``edxstream:`` line (exit 2)
    instead of the usage block; subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.exit(2, f"edxstream: {message} (see `{self.prog} --help`)\n")


def service_error(exc: BaseException) -> str | None:
    """One line for a service that went away under a command (after its start-up checks
    passed), or None for anything else, which keeps its traceback: that is a bug."""
    kind = f"{type(exc).__module__}.{type(exc).__name__}"
    if kind == "pymysql.err.OperationalError":
        return (
            f"MySQL: {exc.args[-1] if exc.args else exc}; check that it runs (`edxstream stack status`) "
            f"and EDXSTREAM_MYSQL_DSN"
        )
    if kind == "cimpl.KafkaException" or kind == "confluent_kafka.KafkaException":
        return (
            f"Kafka: {exc.args[0].str() if exc.args else exc}; check `edxstream stack status` "
            f"and EDXSTREAM_KAFKA_BOOTSTRAP"
        )
    if kind == "clickhouse_connect.driver.exceptions.OperationalError":
        return f"ClickHouse: {' '.join(str(exc).split())}; check EDXSTREAM_CLICKHOUSE_URL"
    return None


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="edxstream", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="log debug messages too (the Kafka and ClickHouse clients' own among them)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, title="commands")
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
    if not args.verbose:  # an HTTP client's retries, before the command says what failed
        for name in ("urllib3.connectionpool", "clickhouse_connect.driver._backend.http_sync"):
            logging.getLogger(name).setLevel(logging.ERROR)
    gc.set_threshold(*GC_THRESHOLDS)
    how = "crashed"
    try:
        code = int(args.func(args) or 0)
        how = _exit_note(code)
        return code
    except KeyboardInterrupt:
        how = "interrupted (Ctrl-C)"
        return 130
    except SystemExit as exc:  # the stream app's worker leaves this way when it stops
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        how = _exit_note(code)
        raise
    except UserError as exc:
        how = f"error: {exc}"
        print(f"edxstream: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        message = service_error(exc)
        # the type only: an unexpected message might hold a secret, and the log has it all
        how = f"crashed: {type(exc).__name__} (see its log)" if message is None else f"error: {message}"
        if message is None:
            raise
        logging.getLogger(__name__).debug("%s", message, exc_info=True)
        print(f"edxstream: {message}", file=sys.stderr)
        return 2
    finally:
        _record_exit(how)


def _exit_note(code: int) -> str:
    return f"exit {code}" + (" (finished, or stopped on request)" if code == 0 else "")


def _record_exit(how: str) -> None:
    """Mark this process's metrics files (if it wrote any) with how it ended, for
    `edxstream stack status`."""
    try:
        from edxstream.core.settings import load

        settings = load()
        if not any((settings.data_dir / "run").glob("*.metrics.json")):
            return
        from edxstream.ops import stack

        stack.record_exit(settings, how)
    except Exception:  # noqa: BLE001 - bookkeeping must never hide how the command ended
        logging.getLogger(__name__).debug("could not record how this process exited", exc_info=True)


if __name__ == "__main__":
    sys.exit(main())
