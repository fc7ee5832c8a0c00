"""Replay: the pure planning, and the offset machinery against the real broker."""

from __future__ import annotations

import subprocess
import threading
import time
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from edxstream.core import kafka_admin

from edxstream.ops import replay
from edxstream.core.errors import UserError
from tests.conftest import edxstream_cmd, env_for

UTC = timezone.utc
T0 = datetime(2024, 5, 1, 0, 0, tzinfo=UTC)


# -- pure -----------------------------------------------------------------------------------


def test_parse_time_argument():
    assert replay.parse_time_argument("beginning") is None
    assert replay.parse_time_argument("2024-05-01T12:00:00Z") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert replay.parse_time_argument("2024-05-01T14:00:00+02:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert replay.parse_time_argument("2024-05-01 12:00") == datetime(2024, 5, 1, 12, tzinfo=UTC)  # naive = UTC
    with pytest.raises(UserError, match="BEGINNING or an ISO-8601"):
        replay.parse_time_argument("yesterday")


def test_align_down_to_the_boundary_of_every_window():
    t = datetime(2024, 5, 1, 12, 34, 56, 789, tzinfo=UTC)
    assert replay.align_down(t, [60, 3600]) == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert replay.align_down(t, [60]) == datetime(2024, 5, 1, 12, 34, tzinfo=UTC)
    # 60 and 90 share a boundary every 180 s: 12:33:00 is one, 12:34:30 is not one of 60's
    assert replay.align_down(t, [60, 90]) == datetime(2024, 5, 1, 12, 33, tzinfo=UTC)
    on_boundary = datetime(2024, 5, 1, 13, tzinfo=UTC)
    assert replay.align_down(on_boundary, [60, 3600]) == on_boundary
    assert replay.align_down(t, []) == t


def test_event_time_of_every_topic_value():
    line = b'{"username": "a", "time": "2014-04-18T17:09:59.941616+00:00", "event_type": "x"}'
    assert replay.event_time(line) == datetime(2014, 4, 18, 17, 9, 59, 941616, tzinfo=UTC)
    # logger prefix, naive time
    assert replay.event_time(b'2013-06-08 INFO 123 [tracking] {"time": "2013-06-08T23:29:58"}') == datetime(
        2013, 6, 8, 23, 29, 58, tzinfo=UTC
    )
    window = orjson.dumps({"kind": "course_category", "window_start": "2024-05-01T01:00:00Z", "count": 3})
    assert replay.event_time(window) == datetime(2024, 5, 1, 1, tzinfo=UTC)
    dead = orjson.dumps({"dead_letter_id": "x", "reason": "r", "raw": line.decode(), "raw_encoding": "utf-8"})
    assert replay.event_time(dead) == datetime(2014, 4, 18, 17, 9, 59, 941616, tzinfo=UTC)
    for bad in (
        b"",
        b"not json",
        b'{"time": "{{ start_date }}T17:09:59"}',
        b"[1, 2]",
        orjson.dumps({"raw": "AAEC", "raw_encoding": "base64"}),
    ):
        assert replay.event_time(bad) is None


def test_a_raw_record_of_several_lines_is_found_by_its_latest_line_and_entered_mid_way():
    from edxstream.core import frames

    def line(minute: int) -> bytes:
        return orjson.dumps({"time": (T0 + timedelta(minutes=minute)).isoformat(), "event_type": "x"})

    lines = [line(1), line(2), b"not json", line(4), line(5)]
    offsets = [0, 100, 200, 300, 400]
    value = b"\n".join(lines)
    headers = [("source", b"/l"), ("offset", b"0"), ("fp", b"abc"), (frames.OFFSETS, frames.offsets_header(offsets))]
    assert replay.record_time(value, headers) == T0 + timedelta(minutes=5)
    assert replay.record_time(lines[0], headers[:3]) == T0 + timedelta(minutes=1)  # one line per record
    # from minute 3: the lines up to minute 2 are done; the untimed one after them is not
    assert replay.lines_before(value, headers, T0 + timedelta(minutes=3)) == ("abc", 100)
    assert replay.lines_before(value, headers, T0 + timedelta(minutes=1)) is None
    assert replay.lines_before(lines[0], headers[:3], T0 + timedelta(minutes=3)) is None


def test_first_offset_at_binary_search_skips_messages_without_time():
    times = {o: T0 + timedelta(minutes=o) for o in range(100)}
    for o in (40, 41, 42, 99):
        del times[o]  # malformed lines: no event time

    reads = []

    def time_at(offset):
        reads.append(offset)
        return next((times[o] for o in range(offset, 100) if o in times), None)

    assert replay.first_offset_at(0, 100, time_at, T0 + timedelta(minutes=41)) == 40
    assert replay.first_offset_at(0, 100, time_at, T0 + timedelta(minutes=43)) == 40  # 40..42 lead to 43
    assert replay.first_offset_at(0, 100, time_at, T0 + timedelta(minutes=44)) == 44
    assert replay.first_offset_at(0, 100, time_at, T0) == 0
    assert replay.first_offset_at(0, 100, time_at, T0 + timedelta(days=1)) == 99  # only untimed after
    assert replay.first_offset_at(10, 10, time_at, T0) == 10  # empty range
    assert len(reads) < 6 * 8  # logarithmic, not a scan


def test_plan_partitions_rewind_to_end_and_bounds():
    current = {0: 50, 1: None, 2: 7}
    low = {0: 0, 1: 0, 2: 5}
    end = {0: 50, 1: 20, 2: 9}
    plans = replay.plan_partitions("g", "t", "rewind", current, {0: 30, 1: None, 2: 2}, low, end)
    assert [(p.partition, p.current, p.new, p.end, p.to_reprocess) for p in plans] == [
        (0, 50, 30, 50, 20),
        (1, None, 0, 20, 20),  # None = beginning: the low watermark
        (2, 7, 5, 9, 4),  # older than retention: clamp to the low watermark
    ]
    from_beginning = replay.plan_partitions("g", "t", "rewind", current, {}, low, end)
    assert [p.new for p in from_beginning] == [0, 0, 5]
    skip = replay.plan_partitions("g", "t", "to_end", {0: 10, 1: None, 2: 9}, {}, low, end)
    assert [(p.new, p.to_reprocess, p.skipped) for p in skip] == [(50, 0, 40), (20, 0, 20), (9, 0, 0)]
    bounded = replay.plan_partitions(
        "g", "t", "rewind", current, {0: 30, 1: 0, 2: 5}, low, end, until={0: 40, 1: 0, 2: 100}
    )
    assert [p.to_reprocess for p in bounded] == [10, 0, 4]


def test_scope_for_targets(tmp_path):
    from edxstream.core.settings import load

    s = load(home=tmp_path)
    proc = replay.scope_for(s, "process")
    assert proc.reset_stream_state and proc.delete_windows
    assert {(g.group, g.topic, g.mode) for g in proc.groups} == {
        (s.stream_group, s.raw_topic, "rewind"),
        (s.stream_group, s.tally_topic, "to_end"),
        (s.clickhouse_sink_group, s.aggregates_topic, "to_end"),
    }
    assert replay.scope_for(s, "all") == proc
    mysql = replay.scope_for(s, "mysql")
    assert not mysql.reset_stream_state and not mysql.delete_windows
    assert {(g.group, g.topic) for g in mysql.groups} == {
        (s.mysql_sink_group, s.enriched_topic),
        (s.mysql_sink_group, s.deadletter_topic),
    }
    ch = replay.scope_for(s, "clickhouse")
    assert {(g.group, g.topic, g.mode) for g in ch.groups} == {
        (s.clickhouse_sink_group, s.aggregates_topic, "rewind"),
        (s.clickhouse_sink_group, s.enriched_topic, "rewind"),
    }
    with pytest.raises(UserError, match="unknown replay target"):
        replay.scope_for(s, "everything")
    with pytest.raises(UserError, match="--to cannot be used"):
        replay.check_range(proc, None, T0)
    with pytest.raises(UserError, match="must be later"):
        replay.check_range(mysql, T0, T0)


def test_format_plan_table_and_totals():
    scope = replay.Scope((), True, True)
    parts = (
        replay.PartitionPlan("grp", "raw", 0, 10, 4, 10),
        replay.PartitionPlan("grp", "raw", 1, None, 0, 3),
        replay.PartitionPlan("ch", "agg", 0, 2, 8, 8),
    )
    out = replay.format_plan(replay.Plan(T0 + timedelta(minutes=30), T0, scope, parts, ("a note",)))
    assert "effective from: 2024-05-01T00:00:00+00:00 (aligned down to a window boundary" in out
    assert "a note" in out
    rows = [line.split() for line in out.splitlines() if line.startswith(("grp ", "ch "))]
    assert rows[0][:7] == ["grp", "raw", "0", "10", "4", "10", "6"]
    assert rows[1][:7] == ["grp", "raw", "1", "-", "0", "3", "3"]
    assert rows[2][:7] == ["ch", "agg", "0", "2", "8", "8", "0"] and "skips 6 superseded" in out
    assert out.rstrip().endswith("total messages to reprocess: 9")


# -- against the broker -------------------------------------------------------------------


def line(t: datetime, n: int) -> bytes:
    return orjson.dumps({"username": f"u{n}", "event_type": "problem_check", "time": t.isoformat(), "n": n})


def produce_raw(settings, per_partition: dict[int, list[datetime]], batch: int = 7) -> None:
    """Raw lines in time order per partition, in several record batches (Tansu reports
    the end of a partition by its last batch, so batches must hold several messages)."""
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20})
    for part, times in per_partition.items():
        for i, t in enumerate(times):
            p.produce(settings.raw_topic, value=line(t, i), partition=part)
            if i % batch == batch - 1:
                p.flush(10)
        assert p.flush(10) == 0


def commit(settings, group, topic, offsets: dict[int, int]) -> None:
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group, "enable.auto.commit": False})
    tps = [TopicPartition(topic, p, o) for p, o in offsets.items()]
    c.assign(tps)
    c.commit(offsets=tps, asynchronous=False)
    c.close()


def committed(settings, group, topic, parts) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    got = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
    c.close()
    return {tp.partition: tp.offset for tp in got}


@pytest.fixture
def raw(settings):
    """Three hours of lines, one a minute on partition 0, one every two on partition 1,
    consumed to the end by the stream app's group."""
    kafka_admin.ensure_topics(settings)
    per = {0: [T0 + timedelta(minutes=m) for m in range(180)], 1: [T0 + timedelta(minutes=m) for m in range(0, 180, 2)]}
    produce_raw(settings, per)
    commit(settings, settings.stream_group, settings.raw_topic, {0: 180, 1: 90})
    return per


def test_dry_run_from_beginning_and_mid_log(settings, raw):
    plan = replay.replay(settings, "process", None, dry_run=True).plan
    stream = [p for p in plan.partitions if p.topic == settings.raw_topic]
    assert [(p.partition, p.current, p.new, p.end, p.to_reprocess) for p in stream] == [
        (0, 180, 0, 180, 180),
        (1, 90, 0, 90, 90),
    ]
    assert plan.total == 270

    # 01:30 straddles the hour window: the replay starts at 01:00
    plan = replay.replay(settings, "process", T0 + timedelta(minutes=90), dry_run=True).plan
    assert plan.effective == T0 + timedelta(hours=1)
    stream = [p for p in plan.partitions if p.topic == settings.raw_topic]
    assert [(p.new, p.to_reprocess) for p in stream] == [(60, 120), (30, 60)]
    # nothing changed
    assert committed(settings, settings.stream_group, settings.raw_topic, [0, 1]) == {0: 180, 1: 90}


def test_cli_dry_run_prints_the_plan(settings, raw):
    out = subprocess.run(
        edxstream_cmd("replay", "--from", "2024-05-01T01:30:00Z", "--target", "process", "--dry-run"),
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "effective from: 2024-05-01T01:00:00+00:00" in out.stdout
    rows = {
        (r[0], r[2]): r
        for r in (row.split() for row in out.stdout.splitlines())
        if r and r[0] == settings.stream_group and r[1] == settings.raw_topic
    }
    assert rows[(settings.stream_group, "0")][3:7] == ["180", "60", "180", "120"]
    assert rows[(settings.stream_group, "1")][3:7] == ["90", "30", "90", "60"]
    assert "total messages to reprocess: 180" in out.stdout
    assert "dry run: nothing changed" in out.stdout
    assert committed(settings, settings.stream_group, settings.raw_topic, [0, 1]) == {0: 180, 1: 90}


def test_replay_commits_offsets_that_a_consumer_then_reads_from(settings, raw):
    kafka_admin.ensure_topics(settings)
    result = replay.replay(settings, "process", T0 + timedelta(minutes=150))
    assert result.applied
    assert committed(settings, settings.stream_group, settings.raw_topic, [0, 1]) == {0: 120, 1: 60}
    # the ClickHouse sink skips the superseded windows: its aggregates position is the end
    assert committed(settings, settings.clickhouse_sink_group, settings.aggregates_topic, [0, 1]) == {0: 0, 1: 0}

    # a consumer of the group starts exactly there and sees the replayed hour
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": settings.stream_group,
            "session.timeout.ms": 6000,
            "auto.offset.reset": "latest",
            "enable.auto.commit": False,
        }
    )
    c.subscribe([settings.raw_topic])
    seen = []
    deadline = time.monotonic() + 40
    while len(seen) < 90 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            seen.append(replay.event_time(m.value()))
    c.close()
    assert len(seen) == 90
    assert min(seen) == T0 + timedelta(hours=2)


def test_sink_target_with_to_counts_the_range(settings):
    kafka_admin.ensure_topics(settings)
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for m in range(150):
        rec = {"event_id": f"e{m}", "time": (T0 + timedelta(minutes=m)).isoformat(), "category": "video"}
        p.produce(settings.enriched_topic, value=orjson.dumps(rec), partition=m % 2)
    dead = {
        "dead_letter_id": "d",
        "reason": "invalid_json",
        "detail": "",
        "raw": '{"time": "2024-05-01T00:30:00+00:00", "oops',
        "raw_encoding": "utf-8",
    }
    p.produce(settings.deadletter_topic, value=orjson.dumps(dead), partition=0)
    p.flush(10)
    # 01:20 is aligned down to 01:00 (minute 60, offset 30 per partition); 02:10 is minute 130
    plan = replay.replay(settings, "mysql", T0 + timedelta(minutes=80), T0 + timedelta(minutes=130), dry_run=True).plan
    assert plan.effective == T0 + timedelta(hours=1)
    enriched = [p for p in plan.partitions if p.topic == settings.enriched_topic]
    assert [(p.new, p.stop, p.end, p.to_reprocess) for p in enriched] == [(30, 65, 75, 35), (30, 65, 75, 35)]
    # the dead letter's raw line is unparseable JSON: no event time, so nothing to re-read
    assert sum(p.to_reprocess for p in plan.partitions if p.topic == settings.deadletter_topic) == 0
    with pytest.raises(UserError, match="--to cannot be used"):
        replay.replay(settings, "all", T0, T0 + timedelta(hours=1), dry_run=True)


def test_refuses_while_a_group_has_active_members(settings, raw):
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": settings.stream_group,
            "session.timeout.ms": 6000,
            "enable.auto.commit": False,
            "client.id": "worker-7",
        }
    )
    c.subscribe([settings.raw_topic])
    stop = threading.Event()
    assigned = threading.Event()

    def poll():
        while not stop.is_set():
            c.poll(0.2)
            if c.assignment():
                assigned.set()

    th = threading.Thread(target=poll)
    th.start()
    try:
        assert assigned.wait(30)
        with pytest.raises(replay.ActiveGroupError, match=settings.stream_group):
            replay.replay(settings, "process", None)
        out = subprocess.run(
            edxstream_cmd("replay", "--from", "BEGINNING"),
            env=env_for(settings),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2
        assert f"group {settings.stream_group!r} has active members" in out.stderr, out.stderr[-2000:]
        assert "Traceback" not in out.stderr
    finally:
        stop.set()
        th.join()
        c.close()
    assert committed(settings, settings.stream_group, settings.raw_topic, [0, 1]) == {0: 180, 1: 90}
    # once the member left, the same replay goes through
    deadline = time.monotonic() + 30
    while (
        replay.active_members(settings, {settings.stream_group: [settings.raw_topic]}) and time.monotonic() < deadline
    ):
        time.sleep(0.5)
    replay.replay(settings, "process", None)
    assert committed(settings, settings.stream_group, settings.raw_topic, [0, 1]) == {0: 0, 1: 0}


def test_process_target_deletes_the_stream_state_only(settings, raw):
    changelog = f"{settings.app_id}-counts-changelog"
    unrelated = f"{settings.app_id}-other"
    kafka_admin.ensure_topics(settings, [changelog, unrelated], config={})
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    p.produce(changelog, key=b"k", value=b"41")
    p.flush(10)
    assert replay.stream_state_topics(settings) == [changelog]

    replay.replay(settings, "mysql", None)
    assert changelog in kafka_admin.admin(settings).list_topics(timeout=10).topics

    result = replay.replay(settings, "all", None)
    assert result.deleted_topics == [changelog]
    topics = kafka_admin.admin(settings).list_topics(timeout=10).topics
    assert changelog not in topics and unrelated in topics
    # the topic can be created again, empty, as the stream app does when it starts
    kafka_admin.ensure_topics(settings, [changelog], config={})
    c = replay._consumer(settings)
    assert replay.low_and_end(c, changelog, 0) == (0, 0)
    c.close()


def test_delete_windows_in_clickhouse(settings):
    from edxstream.core import clickhouse

    from sinks import migrate

    replay.delete_windows(settings, None)  # no table yet: nothing to do, no error
    client = clickhouse.connect(settings)
    # the ClickHouse sink's own table definition (its first migration)
    sql = (migrate.MIGRATIONS / "clickhouse" / "0001_window_counts.sql").read_text()
    client.command(next(st for st in migrate.split_statements(sql) if "CREATE TABLE IF NOT EXISTS window_counts" in st))
    rows = [["course_category", "c", "video", 3600, T0 + timedelta(hours=h), 5, 1] for h in range(4)]
    client.insert(
        "window_counts",
        rows,
        column_names=["kind", "course_id", "dimension", "window_seconds", "window_start", "count", "version"],
    )
    replay.delete_windows(settings, T0 + timedelta(hours=2))
    left = client.query("SELECT window_start FROM window_counts ORDER BY window_start").result_rows
    assert [r[0].replace(tzinfo=UTC) if r[0].tzinfo is None else r[0] for r in left] == [T0, T0 + timedelta(hours=1)]
    replay.delete_windows(settings, None)
    assert client.command("SELECT count() FROM window_counts") == 0
