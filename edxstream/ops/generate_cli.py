"""``edxstream generate``: write a synthetic tracking log (see ``edxstream.ops.generate``)."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

from edxstream.core.errors import UserError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="write a synthetic, realistic tracking log (deterministic for a seed)",
        description="Write synthetic Open edX tracking-log lines: server page views, browser video and "
        "problem events, forum and enrolment events from learners in sessions over course runs, with a few "
        "malformed lines. The same arguments always write the same bytes.",
    )
    p.add_argument("--events", type=int, default=10_000, help="lines to write, malformed ones included (10000)")
    p.add_argument("--courses", type=int, default=5, help="course runs (5)")
    p.add_argument("--learners", type=int, default=500, help="learners (500)")
    p.add_argument("--days", type=int, default=30, help="days of activity, ending the day before --end (30)")
    p.add_argument(
        "--end",
        type=date.fromisoformat,
        default=date(2026, 11, 1),
        help="first day after the log, YYYY-MM-DD (2026-11-01)",
    )
    p.add_argument("--seed", type=int, default=42, help="random seed (42)")
    p.add_argument(
        "--malformed",
        type=float,
        default=0.001,
        help="fraction of lines that are malformed and must dead-letter (0.001)",
    )
    p.add_argument(
        "--prefixed", type=float, default=0.001, help="fraction of valid lines written behind a logger prefix (0.001)"
    )
    dest = p.add_mutually_exclusive_group()
    dest.add_argument("--out", type=Path, help="directory for tracking.log, rotated .gz files and manifest.json")
    dest.add_argument("--stdout", action="store_true", help="write every line to standard output instead")
    p.add_argument(
        "--rotate",
        choices=("daily", "none"),
        default="daily",
        help="with --out: one tracking.log-YYYYMMDD.gz per day before the last (daily), "
        "or everything in tracking.log (none)",
    )
    p.add_argument(
        "--gzip-level",
        type=int,
        default=3,
        choices=range(1, 10),
        metavar="1-9",
        help="compression level of rotated files (3)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from edxstream.ops.generate import GenConfig, write_dir, write_stream

    if not args.out and not args.stdout:
        raise UserError("say where to write: --out DIR or --stdout")
    try:
        cfg = GenConfig(
            events=args.events,
            courses=args.courses,
            learners=args.learners,
            days=args.days,
            end=args.end,
            seed=args.seed,
            malformed=args.malformed,
            prefixed=args.prefixed,
        )
    except ValueError as exc:
        raise UserError(str(exc)) from None
    show = not args.no_progress and (args.events >= 100_000 or sys.stderr.isatty())
    with tqdm(total=cfg.events, unit="ev", unit_scale=True, disable=not show, file=sys.stderr, desc="generate") as bar:
        if args.stdout:
            malformed = write_stream(cfg, sys.stdout.buffer, progress=bar.update)
            bad = sum(malformed.values())
            print(f"{cfg.events} lines ({bad} malformed) written to stdout", file=sys.stderr)
            return 0
        try:
            manifest = write_dir(cfg, args.out, rotate=args.rotate, gzip_level=args.gzip_level, progress=bar.update)
        except OSError as exc:
            raise UserError(f"cannot write to {args.out}: {exc}") from None
    bad = sum(manifest.malformed.values())
    print(
        f"{manifest.events} lines ({manifest.valid} valid, {bad} malformed) over {cfg.days} days "
        f"for {cfg.courses} course runs and {cfg.learners} learners in {len(manifest.files)} files "
        f"under {args.out}/ (see manifest.json)",
        file=sys.stderr,
    )
    return 0
