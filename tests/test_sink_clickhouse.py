"""The ClickHouse sink against the real broker and chdb: window counts equal counts
computed independently from the events, events are stored once (pseudonymized),
replays change nothing, poison messages reach the dead-letter topic, and a sink killed
mid-stream and restarted ends with the same tables."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from datetime import timezone

import msgspec
import pytest
from confluent_kafka import Consumer

from edxstream.core import clickhouse, privacy, records
from sinks import clickhouse_sink
from tests.conftest import edxstream_cmd, env_for
from tests.sink_helpers import (
    committed,
    end_offsets,
    expected_windows,
    make_events,
    produce,
    produce_events,
    produce_windows,
    reset_group,
    window_emissions,
)

# A sink retries a failing write forever (by design); a test must not.
pytestmark = pytest.mark.timeout(240)

IDLE = 3.0


def _utc(dt):
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def final_windows(client) -> dict[tuple, int]:
    rows = client.query(
        "SELECT kind, course_id, dimension, window_seconds, window_start, count FROM window_counts_final"
    ).result_rows
    out = {(k, c, d, w, _utc(s)): n for k, c, d, w, s, n in rows}
    assert len(out) == len(rows), "the view must hold one row per window"
    return out


def event_snapshot(client) -> list[tuple]:
    return client.query("SELECT * FROM events FINAL ORDER BY event_id").result_rows


def read_dead_letter_topic(settings, expect: int) -> list[records.DeadLetter]:
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    c.subscribe([settings.deadletter_topic])
    got, deadline = [], time.monotonic() + 30
    while len(got) < expect and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(records.decode_dead_letter(m.value()))
    c.close()
    return got


def test_window_counts_equal_independent_counts_and_replay_changes_nothing(settings):
    events = make_events(600, seed=21)
    produce_events(settings, events + events[:40])  # with re-sent duplicates
    produce_windows(settings, window_emissions(events))
    produce(settings, settings.aggregates_topic, [(None, b"{not a window"), (None, b'{"kind": "x"}')])

    stats = clickhouse_sink.run(settings, max_idle_seconds=IDLE)
    assert stats.written["dead_letters"] == 2

    client = clickhouse.connect(settings)
    assert final_windows(client) == expected_windows(events)
    # Events: one row each (after FINAL), pseudonymized by default.
    stored = {r[0]: r for r in event_snapshot(client)}
    assert set(stored) == {e.event_id for e in events}
    cols = list(records.ENRICHED_FIELDS)
    for e in events[:50]:
        want = privacy.for_analysts(e, settings)
        row = stored[e.event_id]
        assert row[cols.index("user_id")] == want.user_id != e.user_id
        assert row[cols.index("username")] == want.username
        assert row[cols.index("ip")] is None
        assert _utc(row[cols.index("time")]) == e.time
        assert row[cols.index("payload")] == want.payload
    # Poison messages went to the dead-letter topic, for the MySQL sink to store.
    dead = read_dead_letter_topic(settings, 2)
    assert sorted(d.reason for d in dead) == ["undecodable_message"] * 2
    assert all(d.stage == "sink" and d.source.startswith(settings.aggregates_topic + ":") for d in dead)
    topics = [settings.aggregates_topic, settings.enriched_topic]
    assert committed(settings, settings.clickhouse_sink_group, topics) == end_offsets(settings, topics)

    # Replay: the group rewound, everything re-delivered, nothing changes.
    windows_before, events_before = final_windows(client), event_snapshot(client)
    reset_group(settings, settings.clickhouse_sink_group, topics)
    again = clickhouse_sink.run(settings, max_idle_seconds=IDLE)
    assert again.messages == stats.messages
    assert final_windows(client) == windows_before
    assert event_snapshot(client) == events_before
    # After merges the storage itself holds one row per window and per event.
    client.command("OPTIMIZE TABLE window_counts FINAL")
    client.command("OPTIMIZE TABLE events FINAL")
    assert client.query("SELECT count() FROM window_counts").result_rows[0][0] == len(windows_before)
    assert client.query("SELECT count() FROM events").result_rows[0][0] == len(events)

    # A later version of a window replaces the earlier one; an older one does not.
    key = next(iter(windows_before))
    kind, course, dim, w, start = key
    newer = records.WindowCount(
        kind=kind,
        course_id=course,
        dimension=dim,
        window_seconds=w,
        window_start=start,
        count=windows_before[key] + 5,
        version=10**6,
    )
    older = msgspec.structs.replace(newer, count=1, version=1)
    produce_windows(settings, [newer, older])
    clickhouse_sink.run(settings, max_idle_seconds=IDLE)
    assert final_windows(client) == {**windows_before, key: windows_before[key] + 5}


def test_identities_kept_when_pseudonymization_is_off(settings):
    plain = settings.model_copy(update={"pseudonymize": False})
    events = make_events(30, seed=4)
    produce_events(plain, events)
    clickhouse_sink.run(plain, max_idle_seconds=IDLE)
    rows = clickhouse.connect(plain).query("SELECT event_id, user_id, username, ip FROM events FINAL").result_rows
    assert sorted(rows) == sorted((e.event_id, e.user_id, e.username, e.ip) for e in events)


_READ_BACK = """
import json, sys
from edxstream.core import clickhouse, settings
c = clickhouse.connect(settings.load())
w = c.query("SELECT kind, course_id, dimension, window_seconds, toString(window_start), count "
            "FROM window_counts_final").result_rows
e = c.query("SELECT event_id, count() FROM events FINAL GROUP BY event_id").result_rows
json.dump({"windows": [list(r) for r in w], "events": [list(r) for r in e]}, sys.stdout)
"""


def test_killed_mid_stream_and_restarted_ends_with_the_same_tables(settings):
    """The sink runs as its own process (with its own chdb folder), is killed with
    SIGKILL after it has committed some batches, restarted until caught up, and the
    folder is then read by a third process."""
    events = make_events(6000, seed=9)
    produce_events(settings, events)
    produce_windows(settings, window_emissions(events))
    env = env_for(settings, EDXSTREAM_CLICKHOUSE_BATCH_ROWS="200")
    proc = subprocess.Popen(edxstream_cmd("-v", "sink", "clickhouse"), env=env, stderr=subprocess.PIPE, text=True)
    commits = 0
    try:
        deadline = time.monotonic() + 120
        for line in proc.stderr:
            if "sink clickhouse: committed" in line:
                commits += 1
                if commits == 5:
                    break
            if time.monotonic() > deadline:
                break
        proc.kill()
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert commits == 5, "the sink never committed a batch"
    topics = [settings.aggregates_topic, settings.enriched_topic]
    assert committed(settings, settings.clickhouse_sink_group, topics) != end_offsets(settings, topics), (
        "the kill was meant to land mid-stream"
    )

    done = subprocess.run(
        edxstream_cmd("sink", "clickhouse", "--max-idle", str(IDLE)),
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    assert committed(settings, settings.clickhouse_sink_group, topics) == end_offsets(settings, topics)

    read = subprocess.run([sys.executable, "-c", _READ_BACK], env=env, capture_output=True, text=True, timeout=120)
    assert read.returncode == 0, read.stderr
    data = json.loads(read.stdout)
    got = {(k, c, d, w, s): n for k, c, d, w, s, n in data["windows"]}
    want = {(k, c, d, w, s.strftime("%Y-%m-%d %H:%M:%S")): n for (k, c, d, w, s), n in expected_windows(events).items()}
    assert got == want
    assert sorted(data["events"]) == sorted([e.event_id, 1] for e in events)


def test_distinct_events_sharing_course_learner_and_time_both_survive_merges(settings):
    """ReplacingMergeTree keeps one row per sorting key: event_id must be part of it, or
    two events of one learner in one course at the same microsecond (a double click, a
    problem check and its grade) would collapse into one row on a merge."""
    from sinks.rows import Msg

    first = make_events(1, seed=41)[0]
    twin = msgspec.structs.replace(
        first,
        event_id=first.event_id[::-1],
        action="another_action",
        event_type="another.event_type",
        payload='{"twin": true}',
    )
    writer = clickhouse_sink.ClickHouseWriter(settings)
    try:
        for i, e in enumerate([first, twin, first]):  # `first` re-sent: that one collapses
            writer.write(writer.prepare([Msg(settings.enriched_topic, 0, i, records.encode(e))]))
        client = clickhouse.connect(settings)
        client.command("OPTIMIZE TABLE events FINAL")
        rows = client.query("SELECT event_id, action FROM events ORDER BY event_id").result_rows
        assert rows == sorted([(first.event_id, first.action), (twin.event_id, "another_action")])
    finally:
        writer.close()


def test_json_rows_join_objects_and_arrays_into_one_array():
    from sinks.rows import json_rows

    docs = [b'{"a":1}', b' [{"a":2},{"a":3}] ', b"[]", b"[ ]", b'[{"a":4}]']
    assert json.loads(json_rows(docs)) == [{"a": 1}, {"a": 2}, {"a": 3}, {"a": 4}]
    assert json_rows([]) == b"[]"


def test_rows_the_server_refuses_as_json_go_as_columns(settings):
    """A server that reads some value differently from msgspec refuses the JSON: the
    writer then inserts the decoded rows as column blocks, and nothing is lost."""
    events = make_events(20, seed=5)
    windows = window_emissions(events)
    writer = clickhouse_sink.ClickHouseWriter(settings)
    try:
        p = clickhouse_sink.Prepared(
            events=[privacy.for_analysts(e, settings) for e in events],
            event_json=[b'{"event_id": "x", "time": "not a time"}'],
            windows=windows,
            window_json=[b'{"kind": "k", "window_start": "not a time"}'],
        )
        assert writer.write(p) == {"events": 20, "windows": len(windows), "dead_letters": 0}
        client = clickhouse.connect(settings)
        assert final_windows(client) == expected_windows(events)
        stored = {r[0] for r in client.query("SELECT event_id FROM events FINAL").result_rows}
        assert stored == {e.event_id for e in events}
    finally:
        writer.close()


def test_an_array_record_gives_each_event_pseudonymized_and_a_bad_one_is_a_dead_letter_alone(settings):
    from sinks.rows import Msg

    good = make_events(3, seed=27)
    huge = msgspec.structs.replace(good[1], event_id="hugeint", attempts=2**70)
    frame = Msg(settings.enriched_topic, 1, 4, records.encode([good[0], huge, good[2]]))
    p = clickhouse_sink.ClickHouseWriter(settings).prepare([frame])
    assert [e.event_id for e in p.events] == [good[0].event_id, good[2].event_id]
    assert [e.username for e in p.events] == [privacy.for_analysts(e, settings).username for e in (good[0], good[2])]
    assert [records.decode_enriched(j) for j in p.event_json] == p.events
    (dl,) = p.dead_letters
    assert dl.reason == "unstorable_value" and dl.source == f"{settings.enriched_topic}:1:4[1]"
    assert records.decode_enriched(dl.raw.encode()) == huge
