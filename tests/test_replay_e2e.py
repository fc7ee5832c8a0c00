"""Replay end to end: ship a log, process it into MySQL and ClickHouse, replay, compare.

The real pipeline runs: `edxstream backfill` and `edxstream process` as subprocesses,
the MySQL and ClickHouse sinks in this process (chdb allows one folder per process: the
test's database lives in the session's folder), and the replay in this process too, so
that it deletes window rows in that same folder.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pymysql
import pytest

from edxstream.core import clickhouse
from edxstream.core.records import ENRICHED_FIELDS

from edxstream.ops import replay
from tests.conftest import edxstream_cmd, env_for, wait_inactive

pytestmark = pytest.mark.slow

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)
C1 = "course-v1:Org+C1+2024"
C2 = "course-v1:Org+C2+2024"
TYPES = ["play_video", "problem_check", "seq_goto", "show_transcript", "edx.forum.thread.created", "pause_video"]
# the rule the tests change: show_transcript moves from video to content
CHANGED_ACTION = "show_transcript"
RULE_CHANGE = (
    "from edxstream.core.events import classification as c; "
    f"k = ({CHANGED_ACTION!r}, None); c._EXACT[k] = c._EXACT[k]._replace(category=c.CONTENT); "
    "c.describe.cache_clear(); "
)


def tracking_log(path: Path) -> Path:
    """Three hours of events, one every 45 s, two courses, five learners, in time order;
    three malformed lines. In course C2 between 01:00 and 02:00 the only video events
    are show_transcript, so after the rule change that hour has no video count at all."""
    lines = []
    for i in range(240):
        t = T0 + timedelta(seconds=45 * i)
        course = C2 if i % 3 == 0 else C1
        et = TYPES[i % len(TYPES)]
        if course == C2 and 1 <= (t - T0).total_seconds() // 3600 < 2 and et in ("play_video", "pause_video"):
            et = CHANGED_ACTION
        user = i % 5
        lines.append(
            orjson.dumps(
                {
                    "username": f"learner{user}",
                    "event_source": "browser",
                    "event_type": et,
                    "context": {"course_id": course, "user_id": 100 + user, "org_id": "Org"},
                    "time": t.isoformat(),
                    "ip": "10.0.0.1",
                    "event": {"n": i},
                    "agent": "test",
                    "host": "lms",
                    "page": None,
                }
            )
        )
        if i in (50, 130, 200):
            lines.append(b'{"username": "x", "time": "' + t.isoformat().encode() + b'", broken')
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


# -- running the pipeline ---------------------------------------------------------------------


def run_cli(settings, *args, prelude: str = "", timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = edxstream_cmd(*args)
    if prelude:
        cmd = [
            sys.executable,
            "-c",
            prelude + f"import sys; from edxstream.cli import main; sys.exit(main({list(args)!r}))",
        ]
    out = subprocess.run(
        cmd, env=env_for(settings), capture_output=True, text=True, timeout=timeout, cwd=settings.home.parent
    )
    assert out.returncode == 0, f"{args}: {out.stdout}\n{out.stderr[-4000:]}"
    return out


def ship(settings, log: Path) -> None:
    run_cli(settings, "backfill", str(log))


def processed_lines(settings) -> int:
    """Lines the last `edxstream process` run parsed (not skipped as already done)."""
    m = orjson.loads((settings.data_dir / "run" / "stream.metrics.json").read_bytes())
    return m["enriched"] + m["dead_letters"]


def process(settings, prelude: str = "") -> None:
    run_cli(settings, "process", "--until-idle", "4", prelude=prelude)
    wait_inactive(settings, [settings.stream_group])


def sinks(settings) -> None:
    from sinks import clickhouse_sink, mysql_sink

    errors = []

    def run(mod):
        try:
            mod.run(settings, max_idle_seconds=2.5)
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(m,)) for m in (mysql_sink, clickhouse_sink)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(180)
    if errors:
        raise errors[0]
    wait_inactive(settings, [settings.mysql_sink_group, settings.clickhouse_sink_group])


def pipeline(settings, log: Path) -> None:
    from sinks import migrate

    migrate.migrate_mysql(settings)
    migrate.migrate_clickhouse(settings)
    ship(settings, log)
    process(settings)
    sinks(settings)


# -- snapshots ------------------------------------------------------------------------------------


def snapshot(settings) -> dict:
    conn = pymysql.connect(**settings.mysql)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT * FROM events ORDER BY event_id")
            events = cur.fetchall()
            cur.execute("SELECT * FROM dead_letters ORDER BY dead_letter_id")
            dead = cur.fetchall()
    finally:
        conn.close()
    ch = clickhouse.connect(settings)
    windows = ch.query(
        "SELECT kind, course_id, dimension, window_seconds, window_start, count, version "
        "FROM window_counts_final ORDER BY kind, course_id, dimension, window_seconds, window_start"
    ).result_rows
    ch_events = ch.query("SELECT event_id, category, action, time FROM events FINAL ORDER BY event_id").result_rows
    windows = [(*r[:4], as_utc(r[4]), *r[5:]) for r in windows]
    return {
        "events": events,
        "dead_letters": dead,
        # the version says when a window was computed, not what it holds
        "windows": {tuple(r[:5]): r[5] for r in windows},
        "versions": {tuple(r[:5]): r[6] for r in windows},
        "window_rows": len(windows),
        "ch_events": ch_events,
    }


def as_utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def categories_by_window(events, size: int) -> dict[tuple, int]:
    """course_category counts computed from MySQL's events: the independent check. A
    learner interaction counts under its category, any other event under its kind."""
    out: Counter = Counter()
    kind_at = ENRICHED_FIELDS.index("kind")
    for row in events:
        event_time, category, course = row[1], row[2], row[6]
        if row[kind_at] != "learner":
            category = row[kind_at]
        start = int(event_time.replace(tzinfo=UTC).timestamp()) // size * size
        out[(course, category, start)] += 1
    return dict(out)


def ch_categories(snap, size: int) -> dict[tuple, int]:
    return {
        (k[1], k[2], int(k[4].timestamp())): v
        for k, v in snap["windows"].items()
        if k[0] == "course_category" and k[3] == size
    }


def category_column(events) -> dict[str, str]:
    return {row[0]: row[2] for row in events}


# -- tests ----------------------------------------------------------------------------------------


def test_replay_everything_rebuilds_identical_databases(settings, tmp_path):
    log = tracking_log(tmp_path / "tracking.log")
    pipeline(settings, log)
    first = snapshot(settings)
    assert len(first["events"]) == 240 and len(first["dead_letters"]) == 3
    assert len(first["ch_events"]) == 240
    # the pipeline's own counts agree with the events (so the snapshot is meaningful)
    for size in settings.windows:
        assert ch_categories(first, size) == categories_by_window(first["events"], size)

    dry = subprocess.run(
        edxstream_cmd("replay", "--from", "BEGINNING", "--target", "all", "--dry-run"),
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dry.returncode == 0, dry.stderr
    assert "dry run: nothing changed" in dry.stdout

    started_us = int(time.time() * 1_000_000)
    result = replay.replay(settings, "all", None)
    assert sorted(result.deleted_topics) == sorted(
        __import__("stream_app.state", fromlist=["x"]).changelog_topics(settings)
    )
    # every raw record (the shipper frames lines, so there are fewer records than lines)
    raw = [p for p in result.plan.partitions if p.topic == settings.raw_topic]
    assert all(p.new == 0 and p.to_reprocess == p.end and p.skip_through is None for p in raw)
    assert 0 < result.plan.total == sum(p.end for p in raw) < 243
    assert f"total messages to reprocess: {result.plan.total}" in dry.stdout
    process(settings)
    assert processed_lines(settings) == 243
    sinks(settings)
    second = snapshot(settings)

    assert second["events"] == first["events"]  # same ids, same rows, no duplicates
    assert second["dead_letters"] == first["dead_letters"]
    assert second["windows"] == first["windows"]  # same counts, no window twice
    assert second["window_rows"] == first["window_rows"]
    assert second["ch_events"] == first["ch_events"]
    # and they were recomputed, not merely left alone
    assert all(v > started_us for v in second["versions"].values())


def test_changed_rule_changes_only_the_affected_rows(settings, tmp_path):
    log = tracking_log(tmp_path / "tracking.log")
    pipeline(settings, log)
    first = snapshot(settings)

    replay.replay(settings, "all", None)
    process(settings, prelude=RULE_CHANGE)
    sinks(settings)
    second = snapshot(settings)

    # MySQL: exactly the show_transcript rows changed, and only their category
    before = {r[0]: r for r in first["events"]}
    after = {r[0]: r for r in second["events"]}
    assert before.keys() == after.keys()
    changed = {eid for eid in before if before[eid] != after[eid]}
    affected = {eid for eid, r in before.items() if r[3] == CHANGED_ACTION}
    assert affected and changed == affected
    for eid in changed:
        b, a = list(before[eid]), list(after[eid])
        assert (b[2], a[2]) == ("video", "content")
        b[2] = a[2] = None
        assert a == b
    assert second["dead_letters"] == first["dead_letters"]
    assert {r[0]: r[1] for r in second["ch_events"]} == category_column(second["events"])

    # ClickHouse: the category windows follow the new rule, with no stale rows (C2 has
    # no video between 01:00 and 02:00 any more); every other window is unchanged
    for size in settings.windows:
        assert ch_categories(second, size) == categories_by_window(second["events"], size)
    gone = ("course_category", C2, "video", 3600, T0 + timedelta(hours=1))
    assert gone in first["windows"] and gone not in second["windows"]
    others_before = {k: v for k, v in first["windows"].items() if k[0] != "course_category"}
    others_after = {k: v for k, v in second["windows"].items() if k[0] != "course_category"}
    assert others_after == others_before
    diff = {
        k
        for k in first["windows"].keys() | second["windows"].keys()
        if first["windows"].get(k) != second["windows"].get(k)
    }
    assert diff and all(k[0] == "course_category" and k[2] in ("video", "content") for k in diff)


def test_mid_log_replay_recomputes_only_later_windows(settings, tmp_path):
    log = tracking_log(tmp_path / "tracking.log")
    pipeline(settings, log)
    first = snapshot(settings)

    requested = T0 + timedelta(hours=1, minutes=20)
    hour = T0 + timedelta(hours=1)
    dry = replay.replay(settings, "all", requested, dry_run=True).plan
    assert dry.effective == hour  # the 01:00-02:00 window straddles 01:20: recomputed whole
    raw_lines_from_hour = 2 * 80 + 2  # 160 events and 2 malformed lines from 01:00 on
    # The raw records hold many lines each: a record holding lines from before 01:00 is
    # re-read, and those lines are marked done so that the worker skips them.
    assert any(p.skip_through is not None for p in dry.partitions if p.topic == settings.raw_topic)

    started_us = int(time.time() * 1_000_000)
    replay.replay(settings, "all", requested)
    process(settings, prelude=RULE_CHANGE)
    assert processed_lines(settings) == raw_lines_from_hour
    sinks(settings)
    second = snapshot(settings)

    def start(key):
        return key[4]

    # windows before 01:00 are untouched: same values, same versions (not recomputed)
    early = {k for k in first["windows"] if start(k) < hour}
    assert early and {k: second["windows"].get(k) for k in early} == {k: first["windows"][k] for k in early}
    assert {k: second["versions"].get(k) for k in early} == {k: first["versions"][k] for k in early}
    assert not [k for k in second["windows"] if start(k) < hour and k not in early]
    # windows from 01:00 on were recomputed under the new rule
    late = [k for k in second["windows"] if start(k) >= hour]
    assert late and all(second["versions"][k] > started_us for k in late)
    new_rule = categories_by_window(second["events"], 3600)
    assert {k: v for k, v in ch_categories(second, 3600).items() if k[2] >= hour.timestamp()} == {
        k: v for k, v in new_rule.items() if k[2] >= hour.timestamp()
    }

    # MySQL: show_transcript events from 01:00 on were re-classified, earlier ones not
    before = {r[0]: r for r in first["events"]}
    after = {r[0]: r for r in second["events"]}
    changed = {eid for eid in before if before[eid] != after[eid]}
    expected = {eid for eid, r in before.items() if r[3] == CHANGED_ACTION and r[1].replace(tzinfo=UTC) >= hour}
    assert expected and changed == expected
    assert {
        after[e][2] for e in before if before[e][3] == CHANGED_ACTION and before[e][1].replace(tzinfo=UTC) < hour
    } == {"video"}
