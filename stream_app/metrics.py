"""Process-local progress counters of a stream worker, written to a JSON file and served
by the web view. The exact, restart-proof figures (late events per partition) live in
the ``partitions`` table; these are what this process did since it started."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edxstream.core.jsonfile import write_json


@dataclass
class Metrics:
    records: int = 0  # raw records taken from the raw topic (a record holds one or more lines)
    lines: int = 0  # raw lines in them
    enriched: int = 0
    dead_letters: int = 0
    duplicates: int = 0  # shipper replays recognised and skipped
    time_out_of_range: int = 0  # dead letters: event time before 2012 or beyond the clock skew
    course_ids_rejected: int = 0  # events kept without a course: their context's course id is malformed
    enriched_seen: int = 0  # enriched events the counting agent received (as tally items)
    counted: int = 0
    late: int = 0  # events beyond the grace: their windows are counted from the stored events
    undecodable: int = 0  # tally records the counting agent could not read
    windows_emitted: int = 0
    windows_expired: int = 0
    windows_open: int = 0  # windows held in memory, not final yet (the last batch's count)
    seeks_back: int = 0  # partitions sought back over records the consumer skipped
    # partitions whose counts came back behind what was counted, counted again before emitting
    rebuilds: int = 0
    # where the agents' time goes: computing vs waiting for the broker's acknowledgements
    enrich_seconds: float = 0.0
    count_seconds: float = 0.0
    ack_wait_seconds: float = 0.0
    batches: int = 0
    # wall time the first raw batch arrived: throughput is lines / (done - this), which
    # counts the first batch too (one batch may hold a whole small input)
    first_batch_at: float | None = None
    started_at: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.monotonic)
    _rate_mark: tuple[float, int] = field(default_factory=lambda: (time.monotonic(), 0))

    def touch(self) -> None:
        self.last_activity = time.monotonic()

    def rate(self) -> float:
        """Raw lines per second since the previous call."""
        now = time.monotonic()
        t0, n0 = self._rate_mark
        self._rate_mark = (now, self.lines)
        return (self.lines - n0) / (now - t0) if now > t0 else 0.0

    def snapshot(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_") and k != "last_activity"}
        d["pid"] = os.getpid()
        d["uptime_seconds"] = round(time.time() - self.started_at, 3)
        return d

    def write(self, path: Path, partitions: dict | None = None) -> None:
        doc = self.snapshot()
        if partitions is not None:
            doc["partitions"] = partitions
        write_json(path, doc)
