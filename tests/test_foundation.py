"""The foundation: real broker, MariaDB and ClickHouse answer, and the CLI drives them."""

from __future__ import annotations

import subprocess
import time
import uuid

import pymysql
from confluent_kafka import Consumer, Producer

from edxstream.core import clickhouse, kafka_admin

from edxstream.ops import stack
from edxstream.core import settings as settings_mod
from tests.conftest import edxstream_cmd, env_for


def test_settings_read_prefixed_env(monkeypatch, tmp_path):
    monkeypatch.setenv("EDXSTREAM_KAFKA_BOOTSTRAP", "10.0.0.1:9999")
    monkeypatch.setenv("EDXSTREAM_RAW_TOPIC", "custom.raw")
    monkeypatch.setenv("EDXSTREAM_WINDOWS", "[30, 300]")
    monkeypatch.setenv("EDXSTREAM_MYSQL_DSN", "mysql://u:p%40ss@db:3307/x")
    s = settings_mod.load()
    assert s.kafka_bootstrap == "10.0.0.1:9999"
    assert s.raw_topic == "custom.raw"
    assert s.windows == [30, 300]
    assert s.mysql == {"host": "db", "port": 3307, "user": "u", "password": "p@ss", "database": "x"}


def test_defaults_match_local_stack(monkeypatch):
    for k in list(__import__("os").environ):
        if k.startswith("EDXSTREAM_"):
            monkeypatch.delenv(k)
    s = settings_mod.load()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.raw_topic == "edx.tracking.raw"
    assert s.enriched_topic == "edx.tracking.enriched"
    assert s.clickhouse_embedded_path.name == "clickhouse"


def test_broker_produce_and_consume(settings):
    kafka_admin.ensure_topics(settings)
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True})
    payload = uuid.uuid4().bytes
    p.produce(settings.raw_topic, key=b"k", value=payload)
    assert p.flush(10) == 0
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": uuid.uuid4().hex,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
        }
    )
    c.subscribe([settings.raw_topic])
    got = None
    deadline = time.monotonic() + 30
    while got is None and time.monotonic() < deadline:
        m = c.poll(1.0)
        if m is not None and not m.error():
            got = m.value()
    c.close()
    assert got == payload


def test_mysql_row_roundtrip(settings):
    conn = pymysql.connect(**settings.mysql)
    with conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE t (id INT PRIMARY KEY, name VARCHAR(20))")
        cur.execute("INSERT INTO t VALUES (1, 'ada')")
        conn.commit()
        cur.execute("SELECT name FROM t WHERE id = 1")
        assert cur.fetchone() == ("ada",)


def test_clickhouse_row_roundtrip(settings):
    client = clickhouse.connect(settings)
    client.command("CREATE TABLE t (id UInt32, name String) ENGINE = MergeTree ORDER BY id")
    client.insert("t", [[1, "ada"], [2, "grace"]], column_names=["id", "name"])
    assert client.query("SELECT name FROM t ORDER BY id").result_rows == [("ada",), ("grace",)]


def test_stack_cli_up_status_down(settings):
    # The CLI, as a user runs it, against this test's broker/database names.
    env = env_for(settings)
    up = subprocess.run(edxstream_cmd("stack", "up"), env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    status = subprocess.run(edxstream_cmd("stack", "status"), env=env, capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    lines = {line.split()[0]: line for line in status.stdout.splitlines() if line.strip()}
    for name in ("kafka", "mysql", "clickhouse"):
        assert "answers" in lines[name], status.stdout
    # up is idempotent
    again = subprocess.run(edxstream_cmd("stack", "up"), env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "already running" in again.stdout


def test_stack_up_starts_its_own_broker_and_down_stops_it(settings, tmp_path):
    from tests.conftest import free_port

    port = free_port()
    env = env_for(settings, EDXSTREAM_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}")
    up = subprocess.run(edxstream_cmd("stack", "up"), env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert "started (pid" in up.stdout
    assert stack.port_open("127.0.0.1", port)
    down = subprocess.run(edxstream_cmd("stack", "down"), env=env, capture_output=True, text=True, timeout=60)
    assert "stopped" in down.stdout
    deadline = time.monotonic() + 10
    while stack.port_open("127.0.0.1", port) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not stack.port_open("127.0.0.1", port)


def test_missing_broker_binary_is_a_clear_error(settings):
    env = env_for(settings, EDXSTREAM_TANSU_BIN="/nonexistent/tansu", EDXSTREAM_KAFKA_BOOTSTRAP="127.0.0.1:1")
    r = subprocess.run(edxstream_cmd("stack", "up"), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert "edxstream:" in r.stderr


def test_every_command_runs_with_the_pipelines_gc_thresholds(tmp_path):
    import gc

    from edxstream import cli

    log = tmp_path / "tracking.log"
    log.write_bytes(b'{"event_type": "x", "time": "2024-01-01T00:00:00Z"}\n')
    before = gc.get_threshold()
    # an earlier command in this process may have set them already: start from Python's own
    gc.set_threshold(700, 10, 10)
    try:
        assert cli.main(["inspect", str(log)]) == 0
        assert gc.get_threshold() == cli.GC_THRESHOLDS != (700, 10, 10)
    finally:
        gc.set_threshold(*before)
