"""``edxstream inspect PATH...``: run the event model over tracking logs, no services.

Reads plain or gzip logs (recognised by their magic bytes, not their name) and folders
of them (their tracking-log files, as backfill takes them), in bounded memory, and
reports how the lines parse: totals, dead letters by reason, counts per category and
action, and how many events carry a course id.
``--format jsonl`` prints instead one record per input line, in input order.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from edxstream.core import logfiles
from edxstream.core import settings as settings_mod
from edxstream.core.events.classification import KINDS
from edxstream.core.model import CATEGORIES, line_dead_letter, parse_line
from edxstream.core.records import DeadLetter, encode


@dataclass
class Summary:
    files: list[str] = field(default_factory=list)
    lines: int = 0
    parsed: int = 0
    dead_letter: int = 0
    dead_letter_reasons: Counter = field(default_factory=Counter)
    categories: Counter = field(default_factory=Counter)
    actions: Counter = field(default_factory=Counter)
    course_id_found: int = 0
    unreadable: int = 0  # files whose end could not be read (a truncated .gz)
    kinds: Counter = field(default_factory=Counter)  # learner, echo, plumbing, ... (docs/taxonomy.md)

    def add(self, record) -> None:
        self.lines += 1
        if isinstance(record, DeadLetter):
            self.dead_letter += 1
            self.dead_letter_reasons[record.reason] += 1
        else:
            self.parsed += 1
            self.categories[record.category] += 1
            self.kinds[record.kind] += 1
            self.actions[record.action] += 1
            if record.course_id is not None:
                self.course_id_found += 1

    def as_dict(self) -> dict:
        return {
            "files": self.files,
            "lines": self.lines,
            "parsed": self.parsed,
            "dead_letter": self.dead_letter,
            "dead_letter_reasons": dict(self.dead_letter_reasons.most_common()),
            "categories": {c: self.categories.get(c, 0) for c in CATEGORIES},
            "actions": dict(self.actions.most_common()),
            "course_id_found": self.course_id_found,
            "kinds": {k: self.kinds.get(k, 0) for k in KINDS},
        }


def jsonl_record(record) -> bytes:
    """One output line: the enriched record, or the dead letter with a ``dead_letter``
    field holding its reason (first, so it is easy to grep)."""
    if isinstance(record, DeadLetter):
        return b'{"dead_letter":' + orjson.dumps(record.reason) + b"," + encode(record)[1:]
    return encode(record)


def format_table(s: Summary, top: int) -> str:
    pct = (lambda n, d: f"{100.0 * n / d:5.1f}%") if s.lines else (lambda n, d: "    -")
    out = [
        f"files            {len(s.files)}",
        f"lines            {s.lines:>9,}",
        f"parsed           {s.parsed:>9,}  {pct(s.parsed, s.lines)}",
        f"dead_letter      {s.dead_letter:>9,}  {pct(s.dead_letter, s.lines)}",
    ]
    for reason, n in s.dead_letter_reasons.most_common():
        out.append(f"  {reason:<22}{n:>7,}")
    out.append(f"course_id_found  {s.course_id_found:>9,}  {pct(s.course_id_found, s.parsed or 1)} of parsed")
    out.append("")
    out.append("category            events")
    for c in CATEGORIES:
        out.append(f"  {c:<18}{s.categories.get(c, 0):>8,}")
    out.append("")
    out.append("kind                events")
    for k in KINDS:
        out.append(f"  {k:<18}{s.kinds.get(k, 0):>8,}")
    out.append("")
    shown = s.actions.most_common(top if top > 0 else None)
    out.append(f"action (top {len(shown)} of {len(s.actions)})")
    for action, n in shown:
        out.append(f"  {n:>8,}  {action}")
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except BrokenPipeError:  # e.g. piped into head: stop quietly, like other tools
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def _run(args: argparse.Namespace) -> int:
    summary = Summary()
    write = sys.stdout.buffer.write if args.format == "jsonl" else None
    show_progress = sys.stderr.isatty() and not args.no_progress
    s = settings_mod.load()
    paths = ["-" if p == "-" else str(p) for p in _expand(args.paths, s.log_file_pattern)]
    for path in paths:
        stream = logfiles.open_log(path)
        size = 0 if path == "-" else Path(path).stat().st_size
        summary.files.append(path)
        bar = None
        if show_progress:
            from tqdm import tqdm  # only when someone is watching

            bar = tqdm(
                total=size or None, unit="B", unit_scale=True, desc=Path(path).name, file=sys.stderr, leave=False
            )
        raw_file = logfiles.raw_file(stream)
        try:
            last = 0
            for n, piece in enumerate(logfiles.iter_lines(stream, s.max_message_bytes)):
                if piece.__class__ is logfiles.LongLine:
                    record = too_long(piece, path)
                    offset = piece.offset
                else:
                    offset, line = piece
                    record = parse_line(line, path, offset)
                summary.add(record)
                if write is not None:
                    write(jsonl_record(record) + b"\n")
                if bar is not None and n % 4096 == 0:
                    pos = raw_file.tell() if size else offset
                    bar.update(pos - last)
                    last = pos
        except BrokenPipeError:
            raise
        except logfiles.BrokenLog as exc:  # e.g. a truncated .gz: what came before it is counted
            print(f"edxstream: {path}: {exc}; the lines before it are counted", file=sys.stderr)
            summary.unreadable += 1
        finally:
            if bar is not None:
                bar.close()
            logfiles.close_log(stream)
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    elif args.format == "table":
        print(format_table(summary, args.top))
    sys.stdout.flush()
    return 2 if summary.unreadable else 0


def _expand(paths: list[str], pattern: str) -> list[str]:
    """Standard input, files, and the tracking-log files in folders (as backfill takes them)."""
    out: list[str] = []
    for p in paths:
        out.extend(["-"] if p == "-" else [str(f) for f in logfiles.expand([p], pattern)])
    return out


def too_long(piece: logfiles.LongLine, path: str) -> DeadLetter:
    """What the shipper makes of a line longer than the limit: a dead letter with its head."""
    detail = f"line of {piece.length} bytes is longer than the limit; raw holds its first {len(piece.head)} bytes"
    return line_dead_letter("too_large", detail, piece.head, path, piece.offset)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="parse tracking logs offline and report categories, actions and dead letters",
        description="Parse tracking logs the way the stream app does, with no services running, and report "
        "how the lines parse: totals, lines that would become dead letters (by reason), events per category "
        "and action, and how many carry a course id. Plain and gzip files are both read (recognised by their "
        "content, not their name), a line at a time. --format jsonl prints instead one record per input line, "
        "in input order.",
    )
    p.add_argument(
        "paths", nargs="+", metavar="PATH", help="tracking log, plain or .gz, or a folder of them ('-' for stdin)"
    )
    p.add_argument(
        "--format",
        choices=("table", "json", "jsonl"),
        default="table",
        help="table: summary for people; json: summary object; jsonl: one record per line",
    )
    p.add_argument("--top", type=int, default=25, help="actions shown in the table (0 = all)")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.set_defaults(func=run)
