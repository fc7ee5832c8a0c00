"""``edxstream reconcile``: do both stores and the windows hold what was shipped?

Per course and UTC day, four figures that must be equal:

- **shipped**: the events in the raw topic, each line once (a re-delivered line has the
  id of its first delivery, see :func:`edxstream.core.model.event_identity`), parsed by
  the event model exactly as the stream app parses them (same fingerprint, same
  allowed clock skew from the record's timestamp);
- **mysql**: rows of ``events``;
- **clickhouse**: rows of ``events`` (FINAL: after deduplication);
- **windows**: the sum of the ``course_category`` counts of the day's windows in
  ``window_counts_final`` (the largest configured window size that divides a day), for
  events that belong to a course.

Plus one line for the dead letters: lines the event model rejects against the parse
dead letters in MySQL. The comparison is pure (:func:`differences`); reading the topic
and the stores is at the edges. Each run leaves its outcome in
``<EDXSTREAM_HOME>/run/reconcile.json`` (:func:`outcome`), which the web app's operators
page shows.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Callable, Iterable, Optional

from edxstream.core import frames
from edxstream.core.chdb_server import open_runner
from edxstream.core.jsonfile import reconcile_file, write_json
from edxstream.core.model import parse_line
from edxstream.core.records import EnrichedEvent
from edxstream.core.settings import Settings

UTC = timezone.utc
NO_COURSE = ""  # events that belong to no course: in the stores, not in any window

Key = tuple[str, date]  # (course id or NO_COURSE, UTC day)


@dataclass
class Figures:
    """What each place holds, per (course, day)."""

    shipped: dict[Key, int]
    mysql: dict[Key, int]
    clickhouse: dict[Key, int]
    windows: Optional[dict[Key, int]]  # None when no window size divides a day
    dead_shipped: int
    dead_mysql: int
    # set when the raw topic no longer holds its oldest lines (retention): only the days
    # after this one, its first remaining day, are compared
    compared_after: Optional[date] = None


@dataclass(frozen=True)
class Difference:
    course: str
    day: Optional[date]  # None for the dead-letter line
    shipped: int
    mysql: int
    clickhouse: Optional[int]
    windows: Optional[int]


def differences(f: Figures) -> list[Difference]:
    """Every (course, day) whose figures are not all equal, and the dead letters when
    they differ."""
    out = []
    keys = set(f.shipped) | set(f.mysql) | set(f.clickhouse) | set(f.windows or ())
    if f.compared_after is not None:
        keys = {k for k in keys if k[1] > f.compared_after}
    for course, day in sorted(keys):
        n = f.shipped.get((course, day), 0)
        my, ch = f.mysql.get((course, day), 0), f.clickhouse.get((course, day), 0)
        win = None if f.windows is None or course == NO_COURSE else f.windows.get((course, day), 0)
        if my != n or ch != n or (win is not None and win != n):
            out.append(Difference(course, day, n, my, ch, win))
    if f.dead_shipped != f.dead_mysql and f.compared_after is None:
        out.append(Difference("(dead letters)", None, f.dead_shipped, f.dead_mysql, None, None))
    return out


def day_window(windows: Iterable[int]) -> Optional[int]:
    """The largest window size whose windows tile a UTC day (their sums per day are the
    day's counts), or None."""
    fitting = [w for w in windows if 0 < w <= 86400 and 86400 % w == 0]
    return max(fitting) if fitting else None


# -- reading ----------------------------------------------------------------------------------


def shipped_figures(settings: Settings, progress: bool = True) -> tuple[dict[Key, int], int, bool]:
    """(events per (course, day), dead letters, whether retention removed the topic's
    oldest records) of the raw topic, each line once."""
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
    from tqdm import tqdm

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "edxstream-reconcile",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    events: dict[str, Key] = {}
    dead: set[str] = set()
    skew = settings.max_clock_skew_seconds
    try:
        meta = consumer.list_topics(settings.raw_topic, timeout=10).topics.get(settings.raw_topic)
        n_parts = len(meta.partitions) if meta is not None and meta.partitions else 0
        trimmed = any(
            consumer.get_watermark_offsets(TopicPartition(settings.raw_topic, p), timeout=10)[0] > 0
            for p in range(n_parts)
        )
        consumer.assign([TopicPartition(settings.raw_topic, p, 0) for p in range(n_parts)])
        left = set(range(n_parts))
        bar = tqdm(unit=" records", desc="reconcile: raw topic", file=sys.stderr, disable=not progress, mininterval=0.5)
        while left:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:  # read to the true end
                    left.discard(msg.partition())
                    continue
                raise KafkaException(msg.error())
            bar.update(1)
            h = dict(msg.headers() or ())
            fp = h.get("fp")
            fp = fp.decode("utf-8", "replace") if fp is not None else None
            source = h.get("source")
            source = source.decode("utf-8", "replace") if source is not None else None
            try:
                first = int(h["offset"]) if "offset" in h else None
            except ValueError:
                first = None
            _, ts_ms = msg.timestamp()
            latest = datetime.fromtimestamp((ts_ms / 1000 if ts_ms > 0 else datetime.now(UTC).timestamp()) + skew, UTC)
            try:
                lines = frames.split(msg.value() or b"", first, h.get(frames.OFFSETS))
            except frames.FrameError:
                dead.add(f"frame|{msg.partition()}|{msg.offset()}")
                continue
            for offset, line in lines:
                rec = parse_line(line, source, offset, fp, latest)
                if rec.__class__ is EnrichedEvent:
                    events[rec.event_id] = (rec.course_id or NO_COURSE, rec.time.date())
                else:
                    dead.add(rec.dead_letter_id)
        bar.close()
    finally:
        consumer.close()
    counts: dict[Key, int] = {}
    for key in events.values():
        counts[key] = counts.get(key, 0) + 1
    return counts, len(dead), trimmed


def _by_key(rows: Iterable[dict]) -> dict[Key, int]:
    out: dict[Key, int] = {}
    for r in rows:
        day = r["day"] if isinstance(r["day"], date) else date.fromisoformat(str(r["day"])[:10])
        key = (r["course_id"] or NO_COURSE, day)
        out[key] = out.get(key, 0) + int(r["n"])
    return out


def store_figures(
    settings: Settings, clickhouse_rows: Optional[Callable[[str], list[dict]]] = None
) -> tuple[dict[Key, int], dict[Key, int], Optional[dict[Key, int]], int]:
    """(MySQL events, ClickHouse events, window sums, MySQL parse dead letters)."""
    from sinks.migrate import mysql_rows

    if clickhouse_rows is None:
        runner = open_runner(settings)

        def clickhouse_rows(sql: str) -> list[dict]:
            data = runner.raw(sql, "JSONEachRow")
            if isinstance(data, bytes):
                data = data.decode()
            return [json.loads(line) for line in data.splitlines() if line.strip()]

    mysql = _by_key(
        mysql_rows(
            settings,
            "SELECT course_id, DATE(`time`) AS day, COUNT(*) AS n FROM events GROUP BY course_id, DATE(`time`)",
        )
    )
    dead = int(mysql_rows(settings, "SELECT COUNT(*) AS n FROM dead_letters WHERE stage = 'parse'")[0]["n"])
    ch = _by_key(
        clickhouse_rows("SELECT course_id, toDate(time) AS day, count() AS n FROM events FINAL GROUP BY course_id, day")
    )
    size = day_window(settings.windows)
    windows = None
    if size is not None:
        windows = _by_key(
            clickhouse_rows(
                "SELECT course_id, toDate(window_start) AS day, sum(count) AS n FROM window_counts_final "
                f"WHERE kind = 'course_category' AND window_seconds = {int(size)} GROUP BY course_id, day"
            )
        )
    return mysql, ch, windows, dead


def reconcile(
    settings: Settings, progress: bool = True, clickhouse_rows: Optional[Callable[[str], list[dict]]] = None
) -> tuple[Figures, list[Difference]]:
    """Compare, and record the outcome for the operators' page (:func:`outcome`)."""
    shipped, dead_shipped, trimmed = shipped_figures(settings, progress)
    mysql, ch, windows, dead_mysql = store_figures(settings, clickhouse_rows)
    first_day = min((d for _, d in shipped), default=None) if trimmed else None
    figures = Figures(shipped, mysql, ch, windows, dead_shipped, dead_mysql, first_day)
    diffs = differences(figures)
    write_json(reconcile_file(settings), outcome(figures, diffs, datetime.now(UTC)))
    return figures, diffs


def outcome(figures: Figures, diffs: list[Difference], ran_at: datetime, limit: int = 20) -> dict:
    """What a run found, as the operators' page shows it: when it ran, what it compared,
    whether each place (MySQL, ClickHouse, the windows) agreed with what was shipped
    (None: not compared) and the first ``limit`` differences."""
    days = [d for d in diffs if d.day is not None]
    dead_ok = figures.dead_shipped == figures.dead_mysql or figures.compared_after is not None
    return {
        "ran_at": ran_at.isoformat(timespec="seconds"),
        "events": sum(figures.shipped.values()),
        "courses": len({c for c, _ in figures.shipped if c != NO_COURSE}),
        "days": len({d for _, d in figures.shipped}),
        "dead_letters": figures.dead_shipped,
        "compared_after": figures.compared_after.isoformat() if figures.compared_after else None,
        "agree": {
            "mysql": dead_ok and all(d.mysql == d.shipped for d in days),
            "clickhouse": all(d.clickhouse == d.shipped for d in days),
            "windows": None if figures.windows is None else all(d.windows in (None, d.shipped) for d in days),
        },
        "differences": len(diffs),
        "sample": [
            {
                "course": d.course or "(no course)",
                "day": d.day.isoformat() if d.day else "",
                "shipped": d.shipped,
                "mysql": d.mysql,
                "clickhouse": d.clickhouse,
                "windows": d.windows,
            }
            for d in diffs[:limit]
        ],
    }


def format_report(figures: Figures, diffs: list[Difference], limit: int = 50) -> str:
    """The differences as a table (at most ``limit`` rows), or one line saying all agree."""
    events = sum(figures.shipped.values())
    courses = {c for c, _ in figures.shipped if c != NO_COURSE}
    days = {d for _, d in figures.shipped}
    note = (
        ""
        if figures.compared_after is None
        else (
            f"\n(the raw topic no longer holds its oldest lines: only days after {figures.compared_after} are "
            "compared, and no dead letters)"
        )
    )
    if not diffs:
        return (
            f"reconcile: {events:,} events ({len(courses):,} courses, {len(days):,} days) and "
            f"{figures.dead_shipped:,} dead letters: MySQL, ClickHouse and the windows agree with what "
            "was shipped" + note
        )
    show = lambda v: "-" if v is None else f"{v:,}"  # noqa: E731
    rows = [("course", "day", "shipped", "mysql", "clickhouse", "windows")]
    for d in diffs[:limit]:
        rows.append(
            (
                d.course or "(no course)",
                d.day.isoformat() if d.day else "",
                f"{d.shipped:,}",
                f"{d.mysql:,}",
                show(d.clickhouse),
                show(d.windows),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False)))
        for r in rows
    ]
    if len(diffs) > limit:
        lines.append(f"... and {len(diffs) - limit:,} more")
    lines.append(f"reconcile: {len(diffs):,} differences (of {events:,} events shipped)" + note)
    return "\n".join(lines)
