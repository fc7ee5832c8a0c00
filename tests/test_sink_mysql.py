"""The MySQL sink against the real broker and MariaDB: one row per event, replays change
nothing, poison messages become dead letters, a missing database is waited for, and a
sink killed mid-stream and restarted ends with the same table."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from datetime import datetime, timezone

import msgspec
import pymysql
import pytest

from edxstream.core import records
from edxstream.core.records import DeadLetter
from sinks import mysql_sink, rows
from sinks.rows import Msg
from tests.conftest import edxstream_cmd, env_for
from tests.sink_helpers import (
    committed,
    end_offsets,
    make_events,
    mysql_expected_row,
    mysql_table,
    produce,
    produce_events,
    reset_group,
)

# A sink retries a failing write forever (by design); a test must not.
pytestmark = pytest.mark.timeout(240)

IDLE = 3.0


def _dead_letters(n: int) -> list[DeadLetter]:
    return [
        DeadLetter(
            dead_letter_id=f"dl{i:04d}",
            reason="invalid_json",
            detail=f"line {i} is not JSON",
            raw=f"{{broken 'line' {i} \\ ☃",
            source="/var/log/tracking.log",
            offset=i * 10,
            stage="parse",
            seen_at=datetime(2024, 2, 1, 12, 0, i, 123456, tzinfo=timezone.utc),
        )
        for i in range(n)
    ]


@pytest.mark.parametrize("load_data", [None, False], ids=["load_data_path", "insert_path"])
def test_one_row_per_event_poison_to_dead_letters_and_replay_changes_nothing(settings, load_data):
    events = make_events(700)
    n_records = produce_events(settings, events)
    n_records += produce_events(settings, events[:50])  # re-sent duplicates, as an upstream replay does
    dls = _dead_letters(5)
    produce(settings, settings.deadletter_topic, [(b"k", records.encode(d)) for d in dls])
    poison = [
        (settings.enriched_topic, b"not json at all"),
        (settings.enriched_topic, b'{"event_id": "x"}'),
        (settings.enriched_topic, b""),
        (settings.deadletter_topic, b"\xff\xfe\x00binary"),
    ]
    for topic, value in poison:
        produce(settings, topic, [(None, value)])

    stats = mysql_sink.run(settings, max_idle_seconds=IDLE, load_data=load_data)

    expected = sorted(mysql_expected_row(e) for e in events)
    assert mysql_table(settings, "events", "event_id") == expected
    dead = {r[0]: r for r in mysql_table(settings, "dead_letters", "dead_letter_id")}
    for d in dls:
        assert dead[d.dead_letter_id][1:] == (
            d.reason,
            d.detail,
            d.raw,
            "utf-8",
            d.source,
            d.offset,
            "parse",
            d.seen_at.replace(tzinfo=None),
        )
    sink_dead = [r for r in dead.values() if r[7] == "sink"]
    assert len(sink_dead) == len(poison) and len(dead) == len(dls) + len(poison)
    assert {r[1] for r in sink_dead} == {"undecodable_message"}
    raws = {r[3] for r in sink_dead}
    assert "not json at all" in raws and '{"event_id": "x"}' in raws
    binary = next(r for r in sink_dead if r[4] == "base64")
    assert binary[5].startswith(settings.deadletter_topic + ":")  # source = topic:partition:offset
    assert stats.messages == n_records + len(dls) + len(poison)

    # Offsets are committed to the end of every partition.
    topics = [settings.enriched_topic, settings.deadletter_topic]
    assert committed(settings, settings.mysql_sink_group, topics) == end_offsets(settings, topics)

    # A replay (the group rewound) re-delivers everything and changes no row.
    before_events = mysql_table(settings, "events", "event_id")
    before_dead = mysql_table(settings, "dead_letters", "dead_letter_id")
    reset_group(settings, settings.mysql_sink_group, topics)
    again = mysql_sink.run(settings, max_idle_seconds=IDLE, load_data=load_data)
    assert again.messages == stats.messages
    assert mysql_table(settings, "events", "event_id") == before_events
    assert mysql_table(settings, "dead_letters", "dead_letter_id") == before_dead

    # A replay after a rule change updates exactly the re-classified rows.
    changed = [msgspec.structs.replace(e, category="other", action="reclassified") for e in events[:3]]
    produce_events(settings, changed)
    mysql_sink.run(settings, max_idle_seconds=IDLE, load_data=load_data)
    after = mysql_table(settings, "events", "event_id")
    want = sorted(mysql_expected_row(e) for e in changed + events[3:])
    assert after == want
    assert len([a for a, b in zip(after, before_events, strict=True) if a != b]) == 3


@pytest.mark.parametrize("load_data", [None, False], ids=["load_data_path", "insert_path"])
def test_refused_and_unstorable_values_become_dead_letters(settings, load_data):
    good = make_events(40, seed=7)
    too_long = msgspec.structs.replace(good[0], event_id="toolong", course_id="x" * 300)
    huge_int = msgspec.structs.replace(good[1], event_id="hugeint", user_id=2**70)
    produce_events(settings, good[2:] + [too_long, huge_int])
    infinite = records.encode(msgspec.structs.replace(good[3], event_id="infinite", grade=1.25))
    assert b'"grade":1.25' in infinite
    produce(settings, settings.enriched_topic, [(None, infinite.replace(b'"grade":1.25', b'"grade":1e999'))])

    mysql_sink.run(settings, max_idle_seconds=IDLE, load_data=load_data)

    assert mysql_table(settings, "events", "event_id") == sorted(mysql_expected_row(e) for e in good[2:])
    dead = mysql_table(settings, "dead_letters", "reason")
    reasons = sorted(r[1] for r in dead)
    # 2**70 decodes but fits no column; msgspec refuses 1e999 outright.
    assert reasons == ["rejected_by_database", "undecodable_message", "unstorable_value"]
    refused = next(r for r in dead if r[1] == "rejected_by_database")
    assert "course_id" in refused[2] and records.decode_enriched(refused[3].encode()).event_id == "toolong"


def test_waits_for_an_unreachable_database_without_committing(settings, mariadb):
    # The DSN names a database that does not exist yet: every write fails until it does.
    db = settings.mysql["database"] + "_late"
    late = settings.model_copy(update={"mysql_dsn": f"mysql://root:@127.0.0.1:3306/{db}"})
    events = make_events(300, seed=11)
    produce_events(late, events)
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("stats", mysql_sink.run(late, max_idle_seconds=IDLE)))
    thread.start()
    try:
        time.sleep(8)
        assert thread.is_alive()
        offsets = committed(late, late.mysql_sink_group, [late.enriched_topic])
        assert all(o < 0 for o in offsets.values()), offsets  # nothing committed while it cannot write
        conn = pymysql.connect(**mariadb)
        with conn, conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        thread.join(90)
        assert not thread.is_alive()
        assert result["stats"].retries >= 2
        assert mysql_table(late, "events", "event_id") == sorted(mysql_expected_row(e) for e in events)
        assert committed(late, late.mysql_sink_group, [late.enriched_topic]) == end_offsets(late, [late.enriched_topic])
    finally:
        thread.join(90)
        conn = pymysql.connect(**mariadb)
        with conn, conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")


def test_killed_mid_stream_and_restarted_ends_with_the_same_table(settings):
    events = make_events(30_000, seed=5)
    produce_events(settings, events)
    env = env_for(settings, EDXSTREAM_SINK_BATCH_ROWS="300")
    proc = subprocess.Popen(edxstream_cmd("sink", "mysql"), env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        count = 0
        while time.monotonic() < deadline and count < 3000:
            time.sleep(0.05)
            try:
                count = _count(settings)
            except pymysql.err.ProgrammingError:  # the table is not there yet
                continue
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    written = _count(settings)
    assert 0 < written < len(events), f"the kill was meant to land mid-stream, {written} rows written"

    done = subprocess.run(
        edxstream_cmd("sink", "mysql", "--max-idle", str(IDLE)), env=env, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert mysql_table(settings, "events", "event_id") == sorted(mysql_expected_row(e) for e in events)
    assert committed(settings, settings.mysql_sink_group, [settings.enriched_topic]) == end_offsets(
        settings, [settings.enriched_topic]
    )


def _count(settings) -> int:
    conn = pymysql.connect(**settings.mysql)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM events")
        return cur.fetchone()[0]


# -- the two write paths, through the writer itself ----------------------------------------


def _msgs(settings, events) -> list[Msg]:
    return [Msg(settings.enriched_topic, 0, i, records.encode(e)) for i, e in enumerate(events)]


def test_load_data_path_is_taken_and_keeps_the_last_version_of_an_id_in_a_batch(settings):
    events = make_events(120, seed=21)
    later = msgspec.structs.replace(events[5], category="other", action="reclassified")
    writer = mysql_sink.MySQLWriter(settings)
    try:
        counts = writer.write(writer.prepare(_msgs(settings, events + [later])))
        assert writer.path == "load_data"  # this MariaDB allows LOAD DATA LOCAL INFILE
        assert counts == {"events": 121, "dead_letters": 0}
        want = sorted(mysql_expected_row(e) for e in events[:5] + [later] + events[6:])
        assert mysql_table(settings, "events", "event_id") == want
        # The same batch again: every row already holds these values, none changes.
        with writer.conn.cursor() as cur:
            writer.write(writer.prepare(_msgs(settings, events[:5] + [later] + events[6:])))
            cur.execute("SELECT COUNT(*) FROM events")
            assert cur.fetchone()[0] == 120
        assert mysql_table(settings, "events", "event_id") == want
    finally:
        writer.close()


def test_batches_of_new_events_load_straight_into_events_until_one_meets_stored_ids(settings):
    events = make_events(90, seed=26)
    writer = mysql_sink.MySQLWriter(settings)
    try:
        writer.write(writer.prepare(_msgs(settings, events[:30])))
        assert writer.direct  # all new: loaded straight into events
        # Ids already stored (a replay): the straight load is undone and the batch upserts,
        # so the re-sent rows are updated, not skipped.
        changed = [msgspec.structs.replace(e, action="reclassified") for e in events[:10]]
        writer.write(writer.prepare(_msgs(settings, changed + events[30:60])))
        assert not writer.direct
        want = sorted(mysql_expected_row(e) for e in changed + events[10:60])
        assert mysql_table(settings, "events", "event_id") == want
        # The next batch (through the staging table) holds only new ids: straight again.
        writer.write(writer.prepare(_msgs(settings, events[60:])))
        assert writer.direct
        assert mysql_table(settings, "events", "event_id") == sorted(
            want + [mysql_expected_row(e) for e in events[60:]]
        )
    finally:
        writer.close()


def test_a_refused_value_on_the_load_data_path_becomes_a_dead_letter(settings, caplog):
    good = make_events(30, seed=22)
    # LOAD DATA LOCAL would truncate this with a warning; the staging table takes it whole
    # and the strict INSERT ... SELECT refuses it.
    too_long = msgspec.structs.replace(good[0], event_id="toolong", course_id="x" * 300)
    long_id = msgspec.structs.replace(good[1], event_id="e" * 65)  # over VARCHAR(64)
    writer = mysql_sink.MySQLWriter(settings)
    try:
        with caplog.at_level("WARNING", logger="sinks.mysql_sink"):
            counts = writer.write(writer.prepare(_msgs(settings, good[2:] + [too_long, long_id])))
        assert writer.path == "load_data"
        assert "refused a value in a batch of events" in caplog.text
        assert counts == {"events": 28, "dead_letters": 2}
        assert mysql_table(settings, "events", "event_id") == sorted(mysql_expected_row(e) for e in good[2:])
        dead = mysql_table(settings, "dead_letters", "dead_letter_id")
        assert sorted(r[1] for r in dead) == ["rejected_by_database"] * 2
        assert {records.decode_enriched(r[3].encode()).event_id for r in dead} == {"toolong", "e" * 65}
        # The next clean batch takes the LOAD DATA path again.
        more = make_events(10, seed=23)
        writer.write(writer.prepare(_msgs(settings, more)))
        assert writer.path == "load_data"
        assert len(mysql_table(settings, "events", "event_id")) == 38
    finally:
        writer.close()


def test_a_server_refusing_load_data_falls_back_to_inserts(settings, caplog):
    # A client that does not offer LOCAL INFILE at the handshake gets the same refusal from
    # the server as one whose server has local_infile off.
    events = make_events(50, seed=24)
    writer = mysql_sink.MySQLWriter(settings, load_data=True)
    writer._client_local_infile = False
    try:
        with caplog.at_level("WARNING", logger="sinks.mysql_sink"):
            counts = writer.write(writer.prepare(_msgs(settings, events)))
        assert "refused LOAD DATA LOCAL INFILE" in caplog.text
        assert writer.path == "insert"
        assert counts == {"events": 50, "dead_letters": 0}
        assert mysql_table(settings, "events", "event_id") == sorted(mysql_expected_row(e) for e in events)
        assert writer.prepare(_msgs(settings, events)).events_tsv is None  # no LOAD DATA text any more
    finally:
        writer.close()


def test_a_load_data_warning_sends_the_batch_to_the_insert_path(settings, caplog):
    writer = mysql_sink.MySQLWriter(settings)
    try:
        writer.write(writer.prepare([]))  # connect
        with writer.conn.cursor() as cur, caplog.at_level("WARNING", logger="sinks.mysql_sink"):
            assert writer._load_events(cur, b"only-one-column\n") is None
            assert "warned while loading" in caplog.text
            assert writer._load_events(cur, rows.tsv_rows([rows.mysql_event_tuple(make_events(1)[0])])) == []
        writer.conn.commit()
        assert len(mysql_table(settings, "events", "event_id")) == 1
    finally:
        writer.close()


TRICKY = [
    "plain",
    "tab\there",
    "new\nline",
    "back\\slash",
    "\\N",
    "\\",
    "",
    "  padded  ",
    "carriage\rreturn",
    "nul\x00byte",
    "ctl\x1d\x1e\x1f",
    "quote'\"`",
    "ünïcødé ☃ 😀",
    "\\t not a tab",
]


def test_tsv_rows_read_back_by_load_data_as_the_same_values(settings):
    base = make_events(len(TRICKY), seed=25)
    events = [
        msgspec.structs.replace(e, username=t, page=t if i % 2 else None, payload=t + t)
        for i, (e, t) in enumerate(zip(base, TRICKY, strict=True))
    ]
    events.append(
        msgspec.structs.replace(
            base[0],
            event_id="zero-micro",
            time=datetime(2024, 1, 1, tzinfo=timezone.utc),
            success=False,
            grade=0.1 + 0.2,
            user_id=-(2**63),
        )
    )
    writer = mysql_sink.MySQLWriter(settings)
    try:
        writer.write(writer.prepare(_msgs(settings, events)))
        assert writer.path == "load_data"
        assert mysql_table(settings, "events", "event_id") == sorted(mysql_expected_row(e) for e in events)
    finally:
        writer.close()


def test_tsv_rows_escape_backslash_tab_and_newline_and_write_null_as_backslash_n():
    row = ("plain", None, 1, 2.5, True, datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc), "a\\b\tc\nd\\N")
    assert rows.tsv_rows([row, row[:1] + (None,) * 6]) == (
        b"plain\t\\N\t1\t2.5\t1\t2024-01-02 03:04:05.000006\ta\\\\b\\tc\\nd\\\\N\nplain\t\\N\t\\N\t\\N\t\\N\t\\N\t\\N\n"
    )
    assert rows.tsv_rows([("ctl\x1d\x1e\x1f", "\r\x00")]) == b"ctl\x1d\x1e\x1f\t\r\x00\n"
    assert rows.tsv_rows([]) == b""


def test_an_array_record_gives_each_event_and_a_bad_one_is_a_dead_letter_alone(settings):
    good = make_events(3, seed=26)
    huge = msgspec.structs.replace(good[1], event_id="hugeint", user_id=2**70)
    frame = Msg(settings.enriched_topic, 0, 7, records.encode([good[0], huge, good[2]]))
    lone = Msg(settings.enriched_topic, 0, 8, records.encode(good[1]))
    p = mysql_sink.MySQLWriter(settings).prepare([frame, lone])
    assert [(e.event_id, m.offset, i) for e, m, i in p.events] == [
        (good[0].event_id, 7, 0),
        (good[2].event_id, 7, 2),
        (good[1].event_id, 8, None),
    ]
    assert len(p.dead_letters) == 1
    literal, msg = p.dead_letters[0]
    assert msg is frame  # the record's offset is what gets committed
    # the dead letter holds the refused event alone, and says where in the record it was
    assert """,'{"event_id":"hugeint",""" in literal  # the raw column: that event's JSON
    assert good[0].event_id not in literal and good[2].event_id not in literal
    assert f"'{settings.enriched_topic}:0:7[1]'" in literal and "'unstorable_value'" in literal


def test_batches_of_many_event_records_are_bounded_by_bytes_as_well(settings):
    from sinks.consumer import ROW_BYTES

    events = make_events(4000, seed=28)
    values = [records.encode(events[i : i + 100]) for i in range(0, len(events), 100)]
    produce(settings, settings.enriched_topic, [(None, v) for v in values])
    small = settings.model_copy(update={"sink_batch_rows": 500})
    stats = mysql_sink.run(small, max_idle_seconds=IDLE)
    assert stats.messages == len(values)
    assert mysql_table(settings, "events", "event_id") == sorted(mysql_expected_row(e) for e in events)
    # 40 records of 100 events: counted as records they would make one batch; a batch
    # holds at most 500 rows' worth of bytes, plus the record that crossed the line
    most = 500 * ROW_BYTES + max(map(len, values))
    assert stats.batches >= sum(map(len, values)) // most > 1


def test_two_sinks_under_one_home_each_report_in_their_own_metrics_file(settings):
    """Scaled out on one machine, two MySQL sinks share the partitions; with
    ``--metrics-file`` each reports its own figures, and `stack status` lists both."""
    from edxstream.ops import stack

    events = make_events(2_000, seed=8)
    produce_events(settings, events)
    run = settings.data_dir / "run"
    env = env_for(settings, EDXSTREAM_SINK_BATCH_ROWS="100")
    procs = [
        subprocess.Popen(
            edxstream_cmd(
                "sink", "mysql", "--max-idle", str(IDLE), "--metrics-file", str(run / f"sink-mysql-{i}.metrics.json")
            ),
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in (1, 2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    assert mysql_table(settings, "events", "event_id") == sorted(mysql_expected_row(e) for e in events)
    listed = {c.name: c for c in stack.components(settings)}
    assert {"sink-mysql-1", "sink-mysql-2"} <= set(listed) and "sink-mysql" not in listed
    one, two = listed["sink-mysql-1"], listed["sink-mysql-2"]
    assert one.pid != two.pid and one.pid == procs[0].pid and two.pid == procs[1].pid
    assert not one.running and not two.running and one.exit and two.exit
