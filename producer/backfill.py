"""``edxstream backfill PATH...``: ship rotated history (``tracking.log-*.gz``, plain
files, folders of them) once.

Files are shipped in the log's own time order (:func:`log_order`): by rotation suffix
(dated ``-YYYYMMDD[.gz]`` names by their date, then numbered ``.N[.gz]`` (or ``-N``) names highest
number first, then the current file without a suffix), then by the time of the file's
first event, then by name. Modification times are not used: copies (``cp -r``, scp, a
download) reset them. ``--order given`` ships the files in the order named instead
(a folder's files by name). A file is known by
the fingerprint of its decompressed first line, so the ``.gz`` of a file the live
shipper already shipped to its end is skipped too. Progress (position, finished files)
is checkpointed as deliveries are acknowledged, so an interrupted backfill resumes
where the broker stopped acknowledging; ``--force`` ships everything again (the stream
app drops the duplicates by fingerprint and offset).
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from edxstream.core.errors import UserError
from edxstream.core.model import UNKNOWN_TIME, parse_line
from edxstream.core.records import EnrichedEvent
from edxstream.core.settings import Settings
from producer.checkpoint import CheckpointStore, backfill_store_path, shipped_elsewhere
from producer.fingerprint import FP_MAX_BYTES, fingerprint_path, is_compressed, open_lines_file
from producer.metrics import MetricsReporter
from producer.sender import Counters, Rewind, Sender

log = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass
class BackfillResult:
    shipped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    seconds: float = 0.0


ORDERS = ("log", "given")

_DATED = re.compile(r"[-._](\d{8}(?:[-_]?\d{2,6})?|\d{10})$")  # -20240101, -20240101-1704067200, -%s
_NUMBERED = re.compile(r"[.-](\d{1,4})$")  # logrotate's .1, .2 ... (or -1, -2 ...)


def rotation_rank(name: str) -> tuple[int, int]:
    """Where a file's name puts it among its rotations, oldest first: dated suffixes by
    their date (or epoch seconds), then numbered ones (``.2`` before ``.1``), then the
    current file (no suffix). A ``.gz`` ending is ignored."""
    if name.endswith(".gz"):
        name = name[:-3]
    m = _DATED.search(name)
    if m:
        return (0, int(re.sub(r"\D", "", m.group(1))))
    m = _NUMBERED.search(name)
    if m:
        return (1, -int(m.group(1)))
    return (2, 0)


def log_order(files: list[tuple[Path, datetime | None]]) -> list[Path]:
    """The files, each with the time of its first event (None when none could be read),
    in the order to ship them: by :func:`rotation_rank`, then first event time (files
    without one after those with one), then name. Pure: the caller reads the times."""
    far = datetime.max.replace(tzinfo=UNKNOWN_TIME.tzinfo)

    def key(item: tuple[Path, datetime | None]):
        path, first = item
        return (rotation_rank(path.name), first is None, first or far, path.name, str(path))

    return [path for path, _ in sorted(files, key=key)]


def first_event_time(path: Path) -> datetime | None:
    """The time of the first line near the file's start that is an event with a time
    (within the first 64 KB of its decompressed bytes), or None."""
    with open_lines_file(path) as f:
        head = f.read(FP_MAX_BYTES)
    for line in head.split(b"\n")[:-1] or [head]:
        record = parse_line(line)
        if record.__class__ is EnrichedEvent and record.time is not UNKNOWN_TIME:
            return record.time
    return None


def expand(paths: list[str | os.PathLike], order: str = "log") -> list[Path]:
    """Files named, and the files inside folders named (not recursive), in ``order``:
    ``log`` (the log's own time, :func:`log_order`) or ``given`` (as named; a folder's
    files by name)."""
    if order not in ORDERS:
        raise UserError(f"backfill order must be one of {', '.join(ORDERS)}, not {order!r}")
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted((c for c in p.iterdir() if c.is_file() and not c.name.startswith(".")),
                                key=lambda c: c.name))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p} does not exist")
    seen: set[Path] = set()
    unique = []
    for f in files:  # a file named twice is shipped once, where first named
        if f.resolve() not in seen:
            seen.add(f.resolve())
            unique.append(f)
    if order == "given":
        return unique
    return log_order([(f, first_event_time(f)) for f in unique])


def backfill(settings: Settings, paths: list[str | os.PathLike], force: bool = False, progress: bool = True,
             topic: str | None = None, should_stop=lambda: False, order: str = "log") -> BackfillResult:
    files = expand(paths, order)
    store = CheckpointStore(backfill_store_path(settings.checkpoints))
    result = BackfillResult()
    plan: list[tuple[Path, str]] = []
    for f in files:
        fp = fingerprint_path(f, complete=True)
        if fp is None:
            log.info("skipping %s: empty", f)
            result.skipped.append(str(f))
            continue
        e = store.get(fp)
        if force:
            store.entries.pop(fp, None)  # start over; a resumed run after an error keeps its progress
        elif (e is not None and e.done) or shipped_elsewhere(settings.checkpoints, fp, _content_size(f)):
            log.info("skipping %s: already shipped (fingerprint %s; --force ships it again)", f, fp)
            result.skipped.append(str(f))
            continue
        plan.append((f, fp))
    started = time.monotonic()
    delay = 1.0
    while True:
        try:
            _ship_plan(settings, plan, store, result, progress, topic, should_stop)
            break
        except Rewind as exc:
            result.counters.rewinds += 1
            log.warning("restarting the backfill from its checkpoint in %.0fs (%s)", delay, exc)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
    result.seconds = time.monotonic() - started
    return result


def _content_size(f: Path) -> int:
    if not is_compressed(f):
        return f.stat().st_size
    with gzip.open(f, "rb") as g:  # only for files not yet known as done
        return g.seek(0, os.SEEK_END)


def _ship_plan(settings, plan, store: CheckpointStore, result: BackfillResult, progress: bool, topic, should_stop):
    sender = Sender(settings, topic=topic, counters=result.counters, should_stop=should_stop)
    metrics = MetricsReporter(settings, "backfill")
    todo = [(f, fp) for f, fp in plan if not (store.get(fp) and store.get(fp).done)]
    total = sum(f.stat().st_size for f, _ in todo)
    bar = tqdm(total=total, unit="B", unit_scale=True, desc="backfill", file=sys.stderr, disable=not progress,
               dynamic_ncols=True, mininterval=0.5)
    c = result.counters
    last = time.monotonic()

    def checkpoint(force=False):
        for sf in sender.update_committed():
            store.set(sf.fp, sf.committed, sf.path, sf.size, done=sf.closed and sf.committed >= sf.produced_end)
        store.save()
        metrics.maybe_report(lambda: {"lines": c.lines, "bytes": c.bytes, "in_flight": sender.in_flight(),
                                      "errors": c.errors, "dead_letters": c.dead_letters,
                                      "files_done": sum(e.done for e in store.entries.values())}, force=force)

    try:
        for f, fp in todo:
            e = store.get(fp)
            start = e.offset if e else 0
            raw = open(f, "rb")
            reader = gzip.GzipFile(fileobj=raw, mode="rb") if is_compressed(f) else raw
            with raw, reader:
                if start:
                    log.info("resuming %s at byte %d", f, start)
                    reader.seek(start)
                sf = sender.open_file(fp, str(f), start)
                pos, buf, seen = start, b"", raw.tell()
                while True:
                    if should_stop():
                        raise KeyboardInterrupt
                    data = reader.read(CHUNK)
                    if not data:
                        break
                    buf = buf + data if buf else data
                    consumed = sender.ship_lines(sf, buf, pos)
                    pos += consumed
                    buf = buf[consumed:]
                    sender.poll(0)
                    now_raw = raw.tell()
                    bar.update(now_raw - seen)
                    seen = now_raw
                    if time.monotonic() - last >= 0.5:
                        last = time.monotonic()
                        bar.set_postfix(lines=c.produced, refresh=False)
                        checkpoint()
                if buf:
                    pos += sender.ship_lines(sf, buf, pos, final=True)
                sf.size = pos
                sf.closed = True
                result.shipped.append(str(f))
        waited = time.monotonic()
        while not sender.flush(5.0):
            if sender.failed:
                sender.poll(0)  # raises Rewind
            log.warning("waiting for the broker to acknowledge %d records (%.0fs so far)", sender.in_flight(),
                        time.monotonic() - waited)
            checkpoint()
        bar.set_postfix(lines=c.produced)
    finally:
        bar.close()
        try:
            checkpoint(force=True)
        finally:
            sender.close()
