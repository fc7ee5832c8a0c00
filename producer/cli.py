"""``edxstream ship PATH`` and ``edxstream backfill PATH...``."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from edxstream.core import settings as settings_mod

log = logging.getLogger(__name__)


def register(sub) -> None:
    p = sub.add_parser(
        "ship",
        help="follow a tracking.log (like tail -F) into the raw topic",
        description="Follow a live tracking.log like tail -F, rotation included, and send each line, bytes "
        "unchanged, to the raw topic. A checkpoint (file identity and byte offset) is kept under "
        "EDXSTREAM_HOME, so a restart resumes where the broker last acknowledged: no line is lost or sent "
        "twice. Stop it with Ctrl-C or SIGTERM; it flushes and checkpoints first.",
    )
    p.add_argument("path", help="the live log file, e.g. /edx/var/log/tracking/tracking.log")
    p.add_argument(
        "--rotate-wait",
        type=float,
        default=1.0,
        help="seconds a rotated file must stay unchanged before it is closed (default 1)",
    )
    p.add_argument("--poll-interval", type=float, default=0.2, help="seconds between looks at an idle file")
    p.add_argument(
        "--checkpoint-interval",
        type=float,
        default=1.0,
        help="seconds between checkpoint writes (a crash re-sends at most this much more)",
    )
    p.set_defaults(func=run_ship)

    b = sub.add_parser(
        "backfill",
        help="ship rotated logs (tracking.log-*.gz, plain files, folders) once",
        description="Send the lines of finished log files (rotated tracking.log-*.gz, plain files, or every "
        "log in a folder) to the raw topic once, oldest first. Files already shipped are skipped, so it "
        "is safe to run again; an interrupted backfill resumes where it stopped.",
    )
    b.add_argument("paths", nargs="+", metavar="PATH", help="log files (.gz or plain) or folders holding them")
    b.add_argument("--force", action="store_true", help="ship files again even if already shipped")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.add_argument(
        "--order",
        choices=("log", "given"),
        default="log",
        help="log (default): oldest first by rotation suffix, then by each file's first event time; "
        "given: in the order named (a folder's files by name)",
    )
    b.set_defaults(func=run_backfill)


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum, frame):
        log.info("%s received: flushing and checkpointing before exit", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def run_ship(args) -> int:
    from edxstream.core import kafka_admin
    from producer.follow import ship

    s = settings_mod.load()
    kafka_admin.require_broker(s)
    stop = _stop_on_signals()
    c = ship(
        s,
        args.path,
        should_stop=stop.is_set,
        rotate_wait=args.rotate_wait,
        poll_interval=args.poll_interval,
        checkpoint_every=args.checkpoint_interval,
    )
    log.info("stopped: %d lines (%d bytes) acknowledged, %d errors", c.lines, c.bytes, c.errors)
    return 0


def run_backfill(args) -> int:
    from edxstream.core import kafka_admin
    from producer.backfill import backfill

    s = settings_mod.load()
    kafka_admin.require_broker(s)
    stop = _stop_on_signals()
    try:
        r = backfill(
            s, args.paths, force=args.force, progress=not args.no_progress, should_stop=stop.is_set, order=args.order
        )
    except KeyboardInterrupt:
        print("backfill interrupted; progress is checkpointed, run it again to resume")
        return 130
    c = r.counters
    rate = c.lines / r.seconds if r.seconds else 0.0
    print(
        f"backfill: {len(r.shipped)} files shipped, {len(r.skipped)} skipped (already shipped), "
        f"{c.lines} lines, {c.bytes / 1e6:.1f} MB in {r.seconds:.1f}s ({rate:,.0f} lines/s), "
        f"{c.dead_letters} dead letters, {c.empty_lines} empty lines skipped"
    )
    for why in r.broken:
        print(f"edxstream: {why}; the lines before it were shipped, the rest is a dead letter", file=sys.stderr)
    for why in r.unreadable:
        print(f"edxstream: {why}; not shipped", file=sys.stderr)
    return 2 if r.unreadable else 0
