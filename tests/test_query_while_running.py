"""`edxstream query` and `export` reach the embedded ClickHouse while the real ClickHouse
sink process holds its folder (chdb allows one process per folder)."""

from __future__ import annotations

import csv
import io
import signal
import subprocess
import time
from datetime import datetime, timedelta, timezone

from confluent_kafka import Producer

from edxstream.core import kafka_admin, records
from edxstream.core.records import EnrichedEvent, WindowCount
from tests.conftest import edxstream_cmd, env_for

COURSE = "course-v1:Live+Q101+2026"
T0 = datetime(2026, 11, 2, 10, 0, tzinfo=timezone.utc)


def _produce(settings) -> tuple[int, int]:
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    windows = [
        WindowCount(
            kind="course_category",
            course_id=COURSE,
            dimension=cat,
            window_seconds=60,
            window_start=T0 + timedelta(minutes=i),
            count=i + 1,
            version=1,
        )
        for i, cat in enumerate(["video", "content", "forum"])
    ]
    events = [
        EnrichedEvent(
            event_id=f"{i:032x}",
            time=T0 + timedelta(seconds=i),
            category="video",
            action="play_video",
            event_type="play_video",
            course_id=COURSE,
            user_id=i % 3,
            username=f"learner{i % 3}",
        )
        for i in range(7)
    ]
    for w in windows:
        p.produce(settings.aggregates_topic, key=w.course_id.encode(), value=records.encode(w))
    for e in events:
        p.produce(settings.enriched_topic, key=COURSE.encode(), value=records.encode(e))
    assert p.flush(30) == 0
    return sum(w.count for w in windows), len(events)


def _query(env, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        edxstream_cmd("query", sql, "--format", "csv"), env=env, capture_output=True, text=True, timeout=60
    )


def test_query_and_export_through_running_clickhouse_sink(settings):
    kafka_admin.ensure_topics(settings)
    expected_total, expected_events = _produce(settings)
    env = env_for(settings)
    sink = subprocess.Popen(
        edxstream_cmd("sink", "clickhouse"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 90
        got = None
        while time.monotonic() < deadline:
            assert sink.poll() is None, sink.stderr.read()
            r = _query(env, "SELECT sum(count) AS total FROM window_counts_final")
            if r.returncode == 0:
                rows = list(csv.reader(io.StringIO(r.stdout)))
                if rows[-1] and rows[-1][0] == str(expected_total):
                    got = int(rows[-1][0])
                    break
            time.sleep(1)
        assert got == expected_total, (r.returncode, r.stdout, r.stderr)
        # the sink is still running and holds the folder: export goes through it too
        assert sink.poll() is None
        exp = subprocess.run(
            edxstream_cmd(
                "export", "--course", COURSE, "--from", "2026-11-01", "--to", "2026-11-03", "--format", "csv"
            ),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert exp.returncode == 0, exp.stderr
        rows = list(csv.DictReader(io.StringIO(exp.stdout)))
        assert len(rows) == expected_events
        assert {r["course_id"] for r in rows} == {COURSE}
        # analyst tables are pseudonymized by default: no raw username leaves the sink
        assert not any(r["username"].startswith("learner") for r in rows)
        # writes are refused through the endpoint
        bad = _query(env, "DROP TABLE window_counts")
        assert bad.returncode != 0
        assert "Traceback" not in bad.stderr
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(60)
