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

import logging
import os
import re
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from tqdm import tqdm

from edxstream.core import logfiles
from edxstream.core.errors import UserError
from edxstream.core.model import UNKNOWN_TIME, parse_line
from edxstream.core.records import EnrichedEvent
from edxstream.core.settings import Settings
from producer.checkpoint import CheckpointStore, backfill_store_path, shipped_elsewhere
from producer.fingerprint import FP_MAX_BYTES, fingerprint_path
from producer.metrics import MetricsReporter
from producer.sender import Counters, Sender, until_done

log = logging.getLogger(__name__)


@dataclass
class BackfillResult:
    shipped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # one message per file that could not be opened
    broken: list[str] = field(default_factory=list)  # files shipped up to a truncation or corruption
    counters: Counters = field(default_factory=Counters)
    seconds: float = 0.0

    @staticmethod
    def note(where: list[str], what: str) -> None:
        """Once, however many times a rewind ships the plan again."""
        if what not in where:
            where.append(what)


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
    try:
        f = logfiles.open_log(path)
    except logfiles.UnreadableLog:
        return None  # shipping it reports why
    try:
        head = b"".join(_head(f))
    except logfiles.BrokenLog:
        return None
    finally:
        logfiles.close_log(f)
    for line in head.split(b"\n")[:-1] or [head]:
        record = parse_line(line)
        if record.__class__ is EnrichedEvent and record.time is not UNKNOWN_TIME:
            return record.time
    return None


def _head(f) -> list[bytes]:
    """The first FP_MAX_BYTES of a reader's bytes (fewer where it ends or breaks early)."""
    got, n = [], 0
    for data in logfiles.chunks(f, FP_MAX_BYTES):
        got.append(data)
        n += len(data)
        if n >= FP_MAX_BYTES:
            break
    return got


def expand(paths: list[str | os.PathLike], pattern: str | None = None, order: str = "log") -> list[Path]:
    """Files named, and the tracking-log files inside folders named (see
    edxstream.core.logfiles.expand), in ``order``: ``log`` (the log's own time,
    :func:`log_order`) or ``given`` (as named; a folder's files by name)."""
    if order not in ORDERS:
        raise UserError(f"backfill order must be one of {', '.join(ORDERS)}, not {order!r}")
    files = logfiles.expand(paths, pattern or Settings.model_fields["log_file_pattern"].default)
    if order == "given":
        return files
    return log_order([(f, first_event_time(f)) for f in files])


def backfill(
    settings: Settings,
    paths: list[str | os.PathLike],
    force: bool = False,
    progress: bool = True,
    topic: str | None = None,
    should_stop=lambda: False,
    order: str = "log",
) -> BackfillResult:
    files = expand(paths, settings.log_file_pattern, order)
    store = CheckpointStore(backfill_store_path(settings.checkpoints))
    result = BackfillResult()
    plan: list[tuple[Path, str]] = []
    for f in files:
        try:
            fp = fingerprint_path(f, complete=True)
        except logfiles.UnreadableLog as exc:  # the caller reports it; the other files go on
            result.note(result.unreadable, str(exc))
            continue
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
    until_done(
        lambda: _ship_plan(settings, plan, store, result, progress, topic, should_stop),
        result.counters,
        "the backfill",
        should_stop,
    )
    result.seconds = time.monotonic() - started
    return result


def _content_size(f: Path) -> int:
    if not logfiles.is_gzip_file(f):
        return f.stat().st_size
    stream = logfiles.open_log(f)  # only for files not yet known as done
    size = 0
    try:
        for data in logfiles.chunks(stream):
            size += len(data)
    except logfiles.BrokenLog:
        pass  # the readable part is the content
    finally:
        logfiles.close_log(stream)
    return size


def _ship_piece(sender: Sender, sf, piece, final: bool = False) -> None:
    """Hand one piece from logfiles.Lines to the sender: whole lines, or an overlong one."""
    if piece.__class__ is logfiles.LongLine:
        sender.long_line(sf, piece.offset, piece.head, piece.length)
    else:
        offset, block = piece
        sender.ship_lines(sf, block, offset, final=final)


def _ship_plan(settings, plan, store: CheckpointStore, result: BackfillResult, progress: bool, topic, should_stop):
    sender = Sender(settings, topic=topic, counters=result.counters, should_stop=should_stop)
    metrics = MetricsReporter(settings, "backfill")
    todo = [(f, fp) for f, fp in plan if not (store.get(fp) and store.get(fp).done)]
    total = sum(f.stat().st_size for f, _ in todo)
    bar = tqdm(
        total=total,
        unit="B",
        unit_scale=True,
        desc="backfill",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        mininterval=0.5,
    )
    c = result.counters
    last = time.monotonic()

    def checkpoint(force=False):
        for sf in sender.update_committed():
            store.set(sf.fp, sf.committed, sf.path, sf.size, done=sf.closed and sf.committed >= sf.produced_end)
        store.save()
        metrics.maybe_report(
            lambda: {
                "lines": c.lines,
                "bytes": c.bytes,
                "in_flight": sender.in_flight(),
                "errors": c.errors,
                "dead_letters": c.dead_letters,
                "files_done": sum(e.done for e in store.entries.values()),
            },
            force=force,
        )

    try:
        for f, fp in todo:
            e = store.get(fp)
            start = e.offset if e else 0
            try:
                reader = logfiles.open_log(f)
            except logfiles.UnreadableLog as exc:  # gone or locked since it was planned
                result.note(result.unreadable, str(exc))
                continue
            raw = logfiles.raw_file(reader)
            try:
                sf = sender.open_file(fp, str(f), start)
                lines = logfiles.Lines(settings.max_message_bytes, start)
                seen = raw.tell()
                try:
                    if start:
                        log.info("resuming %s at byte %d", f, start)
                        logfiles.skip_to(reader, start)
                    for data in logfiles.chunks(reader):
                        if should_stop():
                            raise KeyboardInterrupt
                        for piece in lines.feed(data):
                            _ship_piece(sender, sf, piece)
                        sender.poll(0)
                        now_raw = raw.tell()
                        bar.update(now_raw - seen)
                        seen = now_raw
                        if time.monotonic() - last >= 0.5:
                            last = time.monotonic()
                            bar.set_postfix(lines=c.produced, refresh=False)
                            checkpoint()
                except logfiles.BrokenLog as exc:
                    at = lines.pos
                    log.info(
                        "%s: %s after %d readable bytes; the lines before are shipped, the rest is "
                        "recorded as a dead letter",
                        f,
                        exc,
                        lines.read_to,
                    )
                    sender.unreadable_rest(sf, at, lines.rest(), f"{exc} after byte {lines.read_to}")
                    result.note(result.broken, f"{f}: {exc}")
                for piece in lines.finish():
                    _ship_piece(sender, sf, piece, final=True)
                sf.size = sf.produced_end
                sf.closed = True
                result.shipped.append(str(f))
            finally:
                logfiles.close_log(reader)
        waited = time.monotonic()
        while not sender.flush(5.0):
            if sender.failed:
                sender.poll(0)  # raises Rewind
            log.warning(
                "waiting for the broker to acknowledge %d records (%.0fs so far)",
                sender.in_flight(),
                time.monotonic() - waited,
            )
            checkpoint()
        bar.set_postfix(lines=c.produced)
    finally:
        bar.close()
        try:
            checkpoint(force=True)
        finally:
            sender.close()
