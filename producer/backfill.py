"""``edxstream backfill PATH...``: ship rotated history (``tracking.log-*.gz``, plain
files, folders of them) once.

Files are shipped oldest first (by modification time, then name: logrotate's numbered
``.1, .2.gz`` and dated ``-YYYYMMDD.gz`` names both agree with it). A file is known by
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
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from edxstream.core.errors import UserError
from edxstream.core.settings import Settings
from producer.checkpoint import CheckpointStore, backfill_store_path, shipped_elsewhere
from producer.fingerprint import fingerprint_path, is_compressed
from producer.metrics import MetricsReporter
from producer.sender import Counters, Sender, until_done

log = logging.getLogger(__name__)

CHUNK = 1 << 20


@dataclass
class BackfillResult:
    shipped: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    seconds: float = 0.0


def expand(paths: list[str | os.PathLike]) -> list[Path]:
    """Files named, and the files inside folders named (not recursive), oldest first."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(c for c in p.iterdir() if c.is_file() and not c.name.startswith("."))
        elif p.is_file():
            files.append(p)
        else:
            raise UserError(f"{p} does not exist")
    unique = {f.resolve(): f for f in files}
    return sorted(unique.values(), key=lambda f: (f.stat().st_mtime, f.name))


def backfill(settings: Settings, paths: list[str | os.PathLike], force: bool = False, progress: bool = True,
             topic: str | None = None, should_stop=lambda: False) -> BackfillResult:
    files = expand(paths)
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
    until_done(lambda: _ship_plan(settings, plan, store, result, progress, topic, should_stop), result.counters,
               "the backfill", should_stop)
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
