"""``edxstream inspect PATH...``: run the event model over tracking logs, no services.

Reads plain or gzip logs (recognised by their magic bytes, not their name), one line at
a time so memory stays constant, and reports how the lines parse: totals, dead letters
by reason, counts per category and action, and how many events carry a course id.
``--format jsonl`` prints instead one record per input line, in input order.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson

from edxstream.core.errors import UserError
from edxstream.core.events.classification import KINDS
from edxstream.core.model import CATEGORIES, parse_line
from edxstream.core.records import DeadLetter, encode

GZIP_MAGIC = b"\x1f\x8b"


def open_log(path: str) -> tuple[BinaryIO, int]:
    """Open a log for binary reading, transparently gunzipping; also return its size on
    disk (for progress; 0 for stdin). ``-`` is standard input."""
    if path == "-":
        stream: BinaryIO = sys.stdin.buffer
        head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
        return (gzip.GzipFile(fileobj=stream) if head == GZIP_MAGIC else stream), 0
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory; give the log files") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied") from None
    size = p.stat().st_size
    if f.read(2) == GZIP_MAGIC:
        f.close()
        return gzip.open(p, "rb"), size
    f.seek(0)
    return f, size


def iter_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(byte offset, line without its newline) for each line; a final line without a
    newline counts too."""
    offset = 0
    for line in stream:
        yield offset, line.rstrip(b"\r\n") if line.endswith(b"\n") else line
        offset += len(line)


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
    for path in args.paths:
        stream, size = open_log(path)
        summary.files.append(path)
        bar = None
        if show_progress:
            from tqdm import tqdm  # only when someone is watching

            bar = tqdm(total=size or None, unit="B", unit_scale=True, desc=Path(path).name,
                       file=sys.stderr, leave=False)
        raw_file = getattr(stream, "fileobj", None) or stream
        try:
            last = 0
            for n, (offset, line) in enumerate(iter_lines(stream)):
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
        except (OSError, EOFError) as exc:  # e.g. a truncated .gz
            raise UserError(f"{path}: cannot read: {exc}") from None
        finally:
            if bar is not None:
                bar.close()
            if stream is not sys.stdin.buffer:
                stream.close()
    if args.format == "json":
        sys.stdout.buffer.write(orjson.dumps(summary.as_dict(), option=orjson.OPT_INDENT_2) + b"\n")
    elif args.format == "table":
        print(format_table(summary, args.top))
    sys.stdout.flush()
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "inspect",
        help="parse tracking logs offline and report categories, actions and dead letters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="tracking log, plain or .gz ('-' for stdin)")
    p.add_argument("--format", choices=("table", "json", "jsonl"), default="table",
                   help="table: summary for people; json: summary object; jsonl: one record per line")
    p.add_argument("--top", type=int, default=25, help="actions shown in the table (0 = all)")
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    p.set_defaults(func=run)
