"""``edxstream process``: run a stream worker."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from edxstream.core.errors import UserError

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "process",
        help="run the stream app (enrich, dead-letter, windowed counts)",
        description="Run a worker of the stream app (Faust): it reads the raw topic, parses, classifies, "
        "enriches and pseudonymizes each line, and writes the enriched, dead-letter and aggregates (windowed "
        "counts) topics. Start several (with different --web-port) to share the partitions.",
    )
    p.add_argument(
        "--until-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop once no event has arrived for this long (default: run until stopped)",
    )
    p.add_argument(
        "--web-port",
        type=int,
        default=None,
        help="port of the live page and monitoring views (default: EDXSTREAM_WEB_PORT, 6066)",
    )
    p.add_argument(
        "--batch",
        type=int,
        default=256,
        help="max records per batch (default 256; a raw record holds up to EDXSTREAM_SHIP_FRAME_BYTES of lines)",
    )
    p.add_argument(
        "--batch-within",
        type=float,
        default=0.05,
        metavar="SECONDS",
        help="max wait to fill a batch (default 0.05; a backfill fills batches at once, "
        "a live trickle waits no longer than this)",
    )
    p.add_argument(
        "--log-every",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="seconds between progress lines in the log (default 5)",
    )
    p.add_argument(
        "--metrics-file",
        type=Path,
        default=None,
        help="where to write the progress figures as JSON (default: EDXSTREAM_HOME/run/stream.metrics.json, "
        "which `edxstream stack status` shows)",
    )
    p.add_argument("--loglevel", default="info", help="Faust worker log level (default info)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from edxstream.core import kafka_admin
    from edxstream.core.settings import load

    settings = load()
    if args.batch < 1:
        raise UserError("--batch must be at least 1")
    kafka_admin.require_broker(settings)
    kafka_admin.ensure_topics(settings)

    import faust

    from stream_app.factory import create_app

    app = create_app(
        settings,
        web_port=args.web_port,
        batch_max=args.batch,
        batch_within=args.batch_within,
        until_idle=args.until_idle,
        log_every=args.log_every,
        metrics_path=args.metrics_file,
    )
    worker = faust.Worker(app, loglevel=args.loglevel, quiet=True)
    try:
        worker.execute_from_commandline()  # leaves through SystemExit when the worker stops
    finally:
        pipe = app.worker
        pipe.metrics.write(app.metrics_path, pipe.partition_states())
        log.info("stream: stopped after %s", pipe.metrics.snapshot())
    return 0
