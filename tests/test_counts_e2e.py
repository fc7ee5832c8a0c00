"""Counts that equal the events, end to end, whatever the order and shape of the input.

The real pipeline: `edxstream backfill` and `edxstream process` as subprocesses (each
`process` run is a restart of the stream app from its changelogs), the MySQL and
ClickHouse sinks in this process (chdb allows one folder per process; the test's
database lives in the session's folder). The input is built so that the test knows
what every line is: the expected windows are computed here from the generator's own
record of each line, not from the pipeline's code.

The run: five days of a log in parts with shuffled names and reset modification times
(the newest part looks oldest), holding a far-future and a year-1 line, five identical
lines, an overlong action and junk course ids; then the five days *before* them (older
history after newer data: beyond the grace, the late way), one of them on a day the
first parts already counted; then one part swapped for a file with other lines, shipped
after a restart.
"""

from __future__ import annotations

import gzip
import os
import random
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pymysql
import pytest

from edxstream.core import clickhouse
from edxstream.core.events.classification import counted_as
from edxstream.core.jsonfile import reconcile_file
from edxstream.ops import reconcile
from tests.test_replay_e2e import process, run_cli, sinks
from tests.test_stream_app import COURSES, EVENT_TYPES, _event

pytestmark = pytest.mark.slow

UTC = timezone.utc
NEW = datetime(2024, 5, 11, tzinfo=UTC)  # the first five days shipped
OLD = datetime(2024, 5, 6, tzinfo=UTC)  # the five days before them, shipped after
WINDOWS = (60, 3600)
LONG_URL = "/courses/course-v1:Org+C1+2024/courseware/" + "abc/" * 80


def events(rnd: random.Random, start: datetime, days: float, n: int) -> list[tuple[bytes, dict]]:
    """n events in time order over ``days`` from ``start``: (line, what it is)."""
    out = []
    for i in range(n):
        t = start + timedelta(seconds=i * days * 86400 / n + rnd.uniform(0, 30), microseconds=rnd.randrange(10**6))
        learner = rnd.randint(1, 15)
        course = None if rnd.random() < 0.05 else rnd.choice(COURSES)
        et = rnd.choice(EVENT_TYPES)
        raw, _, lid = _event(t, learner, course, et)
        # category: what the windows count it under (its category, or its kind when it is
        # not a learner interaction; test_stream_app.EVENT_TYPES)
        out.append((raw, dict(time=t, course=course, category=et[4], action=et[3], learner=lid)))
    return out


def special_lines(t: datetime) -> list[tuple[bytes, dict | None]]:
    """The shapes that broke the counts, each with what it must become (None: a dead
    letter)."""
    c1 = COURSES[0]
    play = EVENT_TYPES[0]
    same, _, lid = _event(t, 3, c1, play)
    far, _, _ = _event(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), 4, c1, play)
    year1, _, _ = _event(datetime(1, 1, 1, tzinfo=UTC), 4, c1, play)
    long = orjson.dumps(
        {
            "event_type": LONG_URL,
            "event_source": "server",
            "time": (t + timedelta(seconds=5)).isoformat(),
            "context": {"course_id": c1, "user_id": 1005},
            "username": "learner5",
        }
    )
    encoded = orjson.loads(_event(t + timedelta(seconds=7), 6, c1, play)[0])
    encoded["context"]["course_id"] = "course-v1%3AOrg%2BC1%2B2024/courseware/abc"
    ellipsis = orjson.loads(_event(t + timedelta(seconds=9), 7, None, play)[0])
    ellipsis["context"]["course_id"] = "https://lms.example.org/courses/course-v1:Org+C\u2026"
    what = dict(time=t, course=c1, category="video", action="play_video", learner=lid)
    return (
        [(same, what)] * 5
        + [(far, None), (year1, None)]
        + [(long, dict(time=t + timedelta(seconds=5), course=c1, category=None, action=None, learner="1005"))]
        + [
            (
                orjson.dumps(encoded),
                dict(time=t + timedelta(seconds=7), course=c1, category="video", action="play_video", learner="1006"),
            )
        ]
        + [
            (
                orjson.dumps(ellipsis),
                dict(time=t + timedelta(seconds=9), course=None, category="video", action="play_video", learner="1007"),
            )
        ]
    )


def write(path: Path, lines: list[bytes], mtime: float) -> None:
    data = b"\n".join(lines) + b"\n"
    if path.name.endswith(".gz"):
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
            f.write(data)
    else:
        path.write_bytes(data)
    os.utime(path, (mtime, mtime))


def expected_windows(lines: list[dict]) -> dict[tuple, int]:
    cnt: Counter = Counter()
    learners: dict[tuple, set] = defaultdict(set)
    for ev in lines:
        if not ev["course"]:
            continue
        for size in WINDOWS:
            start = int(ev["time"].timestamp()) // size * size
            cnt[("course_category", ev["course"], ev["category"], size, start)] += 1
            cnt[("course_action", ev["course"], ev["action"], size, start)] += 1
            if ev["learner"] is not None:
                learners[("course_learners", ev["course"], "", size, start)].add(ev["learner"])
    out = dict(cnt)
    out.update({k: len(v) for k, v in learners.items()})
    return out


def windows_of(settings) -> dict[tuple, int]:
    ch = clickhouse.connect(settings)
    rows = ch.query(
        "SELECT kind, course_id, dimension, window_seconds, toUnixTimestamp(window_start), count "
        "FROM window_counts_final"
    ).result_rows
    got = {tuple(r[:5]): r[5] for r in rows}
    assert len(got) == len(rows), "window_counts_final holds a window twice"
    return got


def mysql_events(settings) -> list[tuple]:
    conn = pymysql.connect(**settings.mysql)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT event_id, `time`, course_id, category, action, user_id, username, source, `offset`, "
                "kind FROM events ORDER BY event_id"
            )
            return list(cur.fetchall())
    finally:
        conn.close()


def mysql_dead_reasons(settings) -> Counter:
    conn = pymysql.connect(**settings.mysql)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT reason FROM dead_letters")
            return Counter(r[0] for r in cur.fetchall())
    finally:
        conn.close()


def check(settings, want_events: list[dict], dead: int) -> None:
    """Both stores hold every event once per line, the windows equal the counts computed
    here and those computed from the stored events, and reconcile finds nothing."""
    my = mysql_events(settings)
    assert len(my) == len(want_events)
    ch = clickhouse.connect(settings)
    ch_rows = ch.query(
        "SELECT event_id, course_id, category, action, time FROM events FINAL ORDER BY event_id"
    ).result_rows
    assert [r[0] for r in ch_rows] == [r[0] for r in my], "the two stores hold different events"
    assert [(r[1], r[2], r[3]) for r in ch_rows] == [(r[2], r[3], r[4]) for r in my]
    assert sum(mysql_dead_reasons(settings).values()) == dead

    got = windows_of(settings)
    assert got == expected_windows(want_events)
    # and the same from the stored events (the stores' view of the truth)
    from_store: Counter = Counter()
    for r in my:
        if r[2]:
            from_store[
                (
                    "course_category",
                    r[2],
                    counted_as(r[9], r[3]),
                    3600,
                    int(r[1].replace(tzinfo=UTC).timestamp()) // 3600 * 3600,
                )
            ] += 1
    assert {k: v for k, v in got.items() if k[0] == "course_category" and k[3] == 3600} == dict(from_store)

    figures, diffs = reconcile.reconcile(settings, progress=False)
    assert diffs == [], reconcile.format_report(figures, diffs)
    assert sum(figures.shipped.values()) == len(want_events) and figures.dead_shipped == dead
    # and the operators' page has the run's outcome
    last = orjson.loads(reconcile_file(settings).read_bytes())
    assert last["agree"] == {"mysql": True, "clickhouse": True, "windows": True}
    assert last["events"] == len(want_events) and last["differences"] == 0


def late_total(settings) -> int:
    m = orjson.loads((settings.data_dir / "run" / "stream.metrics.json").read_bytes())
    return sum(p["late"] for p in m["partitions"].values())


def test_counts_equal_the_events_in_any_order_and_shape(settings, tmp_path):
    from edxstream.core.model import EnrichedEvent, parse_line
    from sinks import migrate

    rnd = random.Random(15)
    # parts named against their order: the folders' files are picked by this pattern, not tracking.log's names
    settings = settings.model_copy(update={"log_file_pattern": r"(part|history)-.*"})
    migrate.migrate_mysql(settings)
    migrate.migrate_clickhouse(settings)

    # five days in three parts, named against their order, the newest looking oldest
    new_dir = tmp_path / "new"
    new_dir.mkdir()
    parts = [events(rnd, NEW + timedelta(days=d), 5 / 3, 300) for d in (0, 5 / 3, 10 / 3)]
    parts[1] = parts[1][:150] + special_lines(parts[1][150][1]["time"]) + parts[1][150:]
    names = ["part-z.log.gz", "part-a.log", "part-m.log"]
    for n, (name, part) in enumerate(zip(names, parts, strict=False)):
        write(new_dir / name, [raw for raw, _ in part], 1.7e9 - 86400 * n)
    # the overlong line's category and action: what the event model makes of its URL
    long = next(raw for raw, what in parts[1] if what and what["category"] is None)
    parsed = parse_line(long)
    assert isinstance(parsed, EnrichedEvent) and len(parsed.action) > 255
    for _, what in parts[1]:
        if what is not None and what["category"] is None:
            what.update(category=counted_as(parsed.kind, parsed.category), action=parsed.action)

    run_cli(settings, "backfill", str(new_dir))
    process(settings)
    assert late_total(settings) == 0  # shipped in the log's order: nothing late
    m = orjson.loads((settings.data_dir / "run" / "stream.metrics.json").read_bytes())
    assert m["time_out_of_range"] == 2 and m["course_ids_rejected"] == 1  # the ellipsis, not the encoded one

    # the five days before, after them; one of their parts reaches into the first day
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    old = [events(rnd, OLD, 4, 200), events(rnd, OLD + timedelta(days=4), 1.2, 100)]
    for n, part in enumerate(old):
        write(old_dir / f"history-{n}.log", [raw for raw, _ in part], 1.7e9 + n)
    run_cli(settings, "backfill", str(old_dir))
    process(settings)
    assert late_total(settings) > 0  # beyond the grace: they went the late way
    sinks(settings)

    want = [what for part in parts + old for _, what in part if what is not None]
    check(settings, want, dead=2)
    same_time = parts[1][150][1]["time"].replace(tzinfo=None)
    identical = [r for r in mysql_events(settings) if r[1] == same_time and r[5] == 1003]
    assert len(identical) == 5 and len({r[8] for r in identical}) == 5  # five lines, five offsets
    assert mysql_dead_reasons(settings) == {"time_out_of_range": 2}
    conn = pymysql.connect(**settings.mysql)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT event_type, action FROM events WHERE event_type = %s", (LONG_URL,))
        assert cur.fetchall() == ((LONG_URL, parsed.action),)
    ch = clickhouse.connect(settings)
    assert ch.query(
        "SELECT action FROM events FINAL WHERE event_type = {u:String}", parameters={"u": LONG_URL}
    ).result_rows == [(parsed.action,)]

    # a part swapped for another file at the same path, shipped after a restart
    swapped = events(rnd, NEW + timedelta(days=5), 0.5, 120)
    write(new_dir / "part-a.log", [raw for raw, _ in swapped], 1.7e9)
    run_cli(settings, "backfill", str(new_dir))
    process(settings)
    sinks(settings)
    check(settings, want + [what for _, what in swapped], dead=2)
