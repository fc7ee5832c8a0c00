"""Sinks tell transient from permanent errors, against the real broker, MariaDB and chdb:
a dropped table is made again by the migrations (or the sink stops and says why), a row
the database refuses becomes a dead letter alone, and a sink that cannot reach its
database says so in its metrics (what `stack status` shows) before any data arrives."""

from __future__ import annotations

import json
import os
import subprocess
import threading

import pymysql
import pytest

from edxstream.core import clickhouse, privacy
from sinks import clickhouse_sink, migrate, mysql_sink
from sinks.consumer import Stuck
from tests.conftest import edxstream_cmd, env_for
from tests.test_ship_follow import wait_for
from tests.test_sink_clickhouse import final_windows, read_dead_letter_topic
from tests.sink_helpers import (
    expected_windows,
    make_events,
    mysql_table,
    produce_events,
    produce_windows,
    window_emissions,
)

pytestmark = pytest.mark.timeout(300)


class SinkThread:
    """A sink's run() in a thread of this process (chdb: one folder per process)."""

    def __init__(self, run, settings, **kw):
        self.stop = threading.Event()
        self.error: BaseException | None = None

        def target():
            try:
                run(settings, stop=self.stop, **kw)
            except BaseException as exc:  # noqa: BLE001 - the test reads it
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()


def metrics(settings, name: str) -> dict:
    try:
        return json.loads((settings.data_dir / "run" / f"sink-{name}.metrics.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def n_events(client) -> int:
    try:
        return client.query("SELECT count() FROM events FINAL").result_rows[0][0]
    except Exception as exc:  # not made yet, or dropped
        assert "UNKNOWN_TABLE" in str(exc)
        return -1


# What reading window_counts_final may say while the events table it reads for recounted
# windows is gone, or is being made again by the migrations (0002 creates it, later ones
# add columns): nothing else.
REBUILDING = ("UNKNOWN_TABLE", "UNKNOWN_IDENTIFIER", "NOT_AN_AGGREGATE")


def windows_or_none(client):
    try:
        return final_windows(client)
    except Exception as exc:
        assert any(code in str(exc) for code in REBUILDING), exc
        return None


def test_clickhouse_sink_makes_a_dropped_events_table_again_and_windows_keep_flowing(settings):
    first, second = make_events(60, seed=11), make_events(60, seed=12, id_prefix="b")
    produce_events(settings, first)
    produce_windows(settings, window_emissions(first))
    sink = SinkThread(clickhouse_sink.run, settings)
    client = clickhouse.connect(settings)
    try:
        wait_for(lambda: n_events(client) == len(first), 90, "the first events")
        client.command("DROP TABLE events")  # by hand, while the sink holds the folder
        produce_events(settings, second)
        produce_windows(settings, window_emissions(first + second, seed=4))
        wait_for(lambda: windows_or_none(client) == expected_windows(first + second), 90, "the windows of both")
        wait_for(lambda: n_events(client) == len(second), 90, "the second events, in the events table made again")
        # the metrics file is rewritten as the sink reports: wait for the report after the repair
        wait_for(lambda: metrics(settings, "clickhouse").get("state") == "ok", 60, "the sink to report ok")
        assert sink.error is None
    finally:
        sink.close()


def test_clickhouse_sink_is_stuck_and_says_why_when_a_table_cannot_be_made(settings, monkeypatch):
    """When the migrations cannot make a missing table again, the sink stops with the
    reason instead of retrying for ever (here the repair is pointed at no migrations)."""
    events = make_events(10, seed=13)
    writer = clickhouse_sink.ClickHouseWriter(settings)
    try:
        p = writer.prepare([])
        writer.write(p)  # connects and migrates
        clickhouse.connect(settings).command("DROP TABLE events")
        monkeypatch.setattr(migrate, "MIGRATIONS", settings.data_dir / "no-migrations")
        (settings.data_dir / "no-migrations" / "clickhouse").mkdir(parents=True)
        p = clickhouse_sink.Prepared(events=[privacy.for_analysts(e, settings) for e in events])
        p.event_json = [b"{}" for _ in events]
        with pytest.raises(Stuck, match="events is missing"):
            writer.write(p)
    finally:
        writer.close()


def test_clickhouse_row_refused_for_its_value_is_a_dead_letter_alone(settings):
    events = [privacy.for_analysts(e, settings) for e in make_events(9, seed=14)]
    bad = events[4]
    bad.user_id = 2**64  # no Int64 column takes it
    writer = clickhouse_sink.ClickHouseWriter(settings)
    try:
        from sinks.rows import Msg

        msg = Msg(settings.enriched_topic, 0, 42, b"[...]", 1_700_000_000_000)
        p = clickhouse_sink.Prepared(
            events=events, event_json=[b'{"time": "not a time"}'], event_from=[(msg, i) for i in range(len(events))]
        )
        assert writer.write(p) == {"events": 9, "windows": 0, "dead_letters": 1}
        stored = {r[0] for r in clickhouse.connect(settings).query("SELECT event_id FROM events FINAL").result_rows}
        assert stored == {e.event_id for e in events} - {bad.event_id}
    finally:
        writer.close()
    [dl] = read_dead_letter_topic(settings, expect=1)
    assert (dl.reason, dl.stage, dl.source) == ("rejected_by_database", "sink", f"{settings.enriched_topic}:0:42[4]")
    assert "ClickHouse refused the row for events" in dl.detail


def _mysql(settings, sql: str) -> None:
    conn = pymysql.connect(**settings.mysql)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        conn.commit()
    finally:
        conn.close()


def test_mysql_sink_makes_dropped_tables_again_or_stops_with_a_clear_error(settings):
    events = make_events(30, seed=15)
    produce_events(settings, events)
    mysql_sink.run(settings, max_idle_seconds=3.0)
    assert len(mysql_table(settings, "events", "event_id")) == 30
    # a database emptied by hand (ledger too): the migrations make everything again
    _mysql(settings, "DROP TABLE events")
    _mysql(settings, "DROP TABLE schema_migrations")
    more = make_events(20, seed=16, id_prefix="m")
    produce_events(settings, more)
    mysql_sink.run(settings, max_idle_seconds=3.0)
    assert len(mysql_table(settings, "events", "event_id")) == 20
    # a table dropped while its migration stays recorded: the sink stops and says why
    _mysql(settings, "DROP TABLE events")
    produce_events(settings, make_events(5, seed=17, id_prefix="x"))
    with pytest.raises(Stuck, match="events' doesn't exist.*migrations did not make it"):
        mysql_sink.run(settings, max_idle_seconds=3.0)
    state = metrics(settings, "mysql")["state"]
    assert state.startswith("stuck: ") and "events" in state
    run = subprocess.run(
        edxstream_cmd("sink", "mysql", "--max-idle", "3"),
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    err = [line for line in run.stderr.splitlines() if line.startswith("edxstream:")]
    assert run.returncode == 2 and len(err) == 1 and "sink mysql stopped" in err[0], run.stderr


def test_a_sink_that_cannot_reach_its_database_says_so_before_data_arrives(settings):
    s = settings.model_copy(update={"mysql_dsn": "mysql://root:@127.0.0.1:1/nowhere"})
    sink = SinkThread(mysql_sink.run, s)
    try:
        wait_for(
            lambda: metrics(s, "mysql").get("state", "").startswith("retrying: "),
            60,
            "the sink to report that it is retrying",
        )
        m = metrics(s, "mysql")
        assert "OperationalError" in m["last_error"] and m["last_write"] is None and m["pid"] == os.getpid()
        status = subprocess.run(
            edxstream_cmd("stack", "status"), env=env_for(s), capture_output=True, text=True, timeout=120
        )
        [line] = [ln for ln in status.stdout.splitlines() if ln.strip().startswith("sink-mysql")]
        assert "retrying: OperationalError" in line
    finally:
        sink.close()
    assert sink.error is None


def test_stack_status_leaves_out_components_that_have_exited(settings):
    run_dir = settings.data_dir / "run"
    run_dir.mkdir(parents=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run_dir / "sink-mysql.metrics.json").write_text(json.dumps({"pid": dead.pid, "state": "ok"}))
    (run_dir / "sink-clickhouse.metrics.json").write_text(json.dumps({"pid": os.getpid(), "state": "ok"}))
    status = subprocess.run(
        edxstream_cmd("stack", "--json", "status"), env=env_for(settings), capture_output=True, text=True, timeout=120
    )
    processes = json.loads(status.stdout)["processes"]
    assert [p["name"] for p in processes if p["running"]] == ["sink-clickhouse"], status.stdout


def test_a_sink_left_without_partitions_says_so_in_its_state_and_stack_status(settings):
    """Another member of the sink's group holds every partition (as a sink left out of its
    group after a broker restart would be): past the grace period the sink's state says
    it holds none and `stack status` shows it degraded."""
    from confluent_kafka import Consumer

    from edxstream.core import kafka_admin

    s = settings.model_copy(update={"partitions": 1, "sink_unassigned_grace_seconds": 3.0})
    topics = [s.enriched_topic, s.deadletter_topic]
    kafka_admin.ensure_topics(s, topics)
    held: list = []
    holder_stop = threading.Event()
    # "a-..." sorts before the sink's member id: the range assignor gives it each
    # topic's only partition
    holder = Consumer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": s.mysql_sink_group,
            "client.id": "a-holder",
            "session.timeout.ms": 6000,
            "enable.auto.commit": False,
            "logger": kafka_admin.LIBRDKAFKA_LOG,
        }
    )
    holder.subscribe(topics, on_assign=lambda c, ps: held.append(len(ps)))

    def keep_polling():
        while not holder_stop.is_set():
            holder.poll(0.2)
        holder.close()

    poller = threading.Thread(target=keep_polling, daemon=True)
    poller.start()
    sink = None
    try:
        wait_for(lambda: held and held[-1] == 2, 60, "the other member to hold both partitions")
        sink = SinkThread(mysql_sink.run, s)
        wait_for(
            lambda: metrics(s, "mysql").get("state", "").startswith("unassigned: "),
            90,
            "the sink to report that it holds no partitions",
        )
        assert held[-1] == 2, held  # the other member still holds them all
        m = metrics(s, "mysql")
        assert "no partitions assigned" in m["state"] and "have 2" in m["state"], m
        status = subprocess.run(
            edxstream_cmd("stack", "status"), env=env_for(s), capture_output=True, text=True, timeout=120
        )
        [line] = [ln for ln in status.stdout.splitlines() if ln.strip().startswith("sink-mysql")]
        assert "unassigned: no partitions assigned" in line, status.stdout
        assert status.returncode == 1 and "status: degraded" in status.stdout, status.stdout
    finally:
        holder_stop.set()
        poller.join(30)
        if sink is not None:
            sink.close()
    assert sink.error is None
