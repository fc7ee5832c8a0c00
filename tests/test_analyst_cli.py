"""``edxstream query`` / ``export`` on the embedded engine, both when the folder is free
and while another process (as the ClickHouse sink does) holds it and serves queries
through ``edxstream.core.chdb_server``; the read-only guard of that endpoint."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone

import pyarrow.parquet as pq
import pytest

from edxstream.core import chdb_server, privacy
from edxstream.analyst.cli import day_slices, export_events, parse_when
from edxstream.core.errors import UserError
from tests.conftest import REPO, edxstream_cmd, env_for
from tests.test_analyst_data import COURSE, LEARNERS, load_course

# The holder: like the ClickHouse sink, it opens its chdb folder, writes, starts the
# endpoint, and keeps writing while others query.
HOLDER = """
import sys, time
from edxstream.core import chdb_server, clickhouse, settings
from edxstream.core.records import ENRICHED_FIELDS
from sinks import rows
from tests.test_analyst_data import load_course
s = settings.load()
events = load_course(s)
client = clickhouse.connect(s)
server = chdb_server.serve(client, s)
print("ready", flush=True)
n = 0
while True:  # the pipeline keeps running: new rows for another course
    n += 1
    e = events[-1].__class__(**{**{f: getattr(events[-1], f) for f in ENRICHED_FIELDS}, "event_id": f"live{n}"})
    client.insert("events", [rows.clickhouse_event_row(e)], column_names=list(ENRICHED_FIELDS))
    time.sleep(0.2)
"""


@pytest.fixture
def holder(settings, tmp_path):
    """A separate process holding its own chdb folder with the demo course in it."""
    env = env_for(settings, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=open(tmp_path / "holder.log", "wb"),
        text=True,
    )
    line = proc.stdout.readline()
    if line.strip() != "ready":
        proc.kill()
        pytest.fail(f"holder did not start: {(tmp_path / 'holder.log').read_text()[-3000:]}")
    yield env
    proc.terminate()
    proc.wait(10)


def run_cli(env, *args, ok=True) -> subprocess.CompletedProcess:
    p = subprocess.run(edxstream_cmd(*args), env=env, cwd=REPO, capture_output=True, timeout=120)
    if ok:
        assert p.returncode == 0, p.stderr.decode()[-3000:]
    return p


def test_query_and_export_go_through_the_process_holding_the_folder(holder, settings, tmp_path):
    env = holder
    # Another process can't open the folder: the CLI finds the endpoint and asks there.
    p = run_cli(env, "query", "SELECT course_id, enrolments, enrolled_now FROM course_enrolments", "--format", "json")
    assert json.loads(p.stdout.decode().splitlines()[0]) == {"course_id": COURSE, "enrolments": 3, "enrolled_now": 2}

    table = run_cli(
        env,
        "query",
        "SELECT category, sum(events) AS n FROM course_daily_interactions GROUP BY category ORDER BY category",
    ).stdout.decode()
    assert "category" in table and "assessment" in table and "│" in table  # aligned text table

    out = tmp_path / "course.csv"
    run_cli(env, "export", "--course", COURSE, "--from", "2024-03-04", "--to", "2024-03-04", "--out", str(out))
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 22 and {r["time"][:10] for r in rows} == {"2024-03-04"}
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)

    pq_out = tmp_path / "course.parquet"
    run_cli(env, "export", "--course", COURSE, "--format", "parquet", "--out", str(pq_out))
    table = pq.read_table(pq_out)
    assert table.num_rows == 29 and table.column_names[:3] == ["event_id", "time", "category"]
    # as stored: pseudonymized
    names = set(table.column("username").to_pylist())
    assert not names & set(LEARNERS) and privacy.pseudonym_username("alice_w", settings.pseudonym_key) in names

    refused = run_cli(env, "query", "DROP TABLE events", ok=False)
    assert refused.returncode == 2 and b"read-only" in refused.stderr
    live = run_cli(
        env,
        "query",
        "SELECT count() FROM events FINAL WHERE course_id = 'course-v1:DemoX+AN102+2024_T1'",
        "--format",
        "tsv",
    ).stdout
    assert live.split()[0] == b"count()" and int(live.split()[1]) > 1  # the holder has been writing meanwhile

    # This test process holds another chdb folder; its runner also goes through the endpoint.
    s = settings.model_copy(update={"clickhouse_url": env["EDXSTREAM_CLICKHOUSE_URL"], "home": settings.home})
    runner = chdb_server.open_runner(s)
    assert isinstance(runner, chdb_server.EndpointRunner)
    assert runner.raw("SELECT count() FROM course_events WHERE category = 'forum'", "TSV").strip() == b"5"
    with pytest.raises(UserError, match="one statement"):
        runner.raw("SELECT 1; DROP TABLE events", "TSV")


def test_endpoint_rejects_a_wrong_token(holder, settings):
    info = json.loads((settings.data_dir / "run" / "clickhouse.endpoint").read_text())
    assert oct((settings.data_dir / "run" / "clickhouse.endpoint").stat().st_mode & 0o777) == "0o600"
    bad = chdb_server.EndpointRunner(info["url"], "0" * 32, settings.clickhouse_database, "test")
    with pytest.raises(UserError, match="bad token"):
        bad.raw("SELECT 1", "TSV")


def test_query_and_export_open_a_free_folder_directly(settings, tmp_path):
    env = env_for(settings, EDXSTREAM_CLICKHOUSE_URL=f"chdb://{tmp_path / 'free-chdb'}")
    p = run_cli(env, "query", "SELECT 1 + 1 AS two", "--format", "csv")
    assert p.stdout.decode().split() == ['"two"', "2"]
    missing = run_cli(env, "export", "--course", "nope", "--format", "parquet", ok=False)
    assert missing.returncode == 2 and b"--out" in missing.stderr


def test_export_in_slices_matches_one_query(settings):
    load_course(settings)
    runner = chdb_server.open_runner(settings)
    assert isinstance(runner, chdb_server.ClientRunner)  # the test process's own folder
    whole, sliced = io.BytesIO(), io.BytesIO()
    assert export_events(runner, COURSE, None, None, "csv", whole) == 29
    assert export_events(runner, COURSE, None, None, "csv", sliced, chunk_rows=5) == 29
    assert whole.getvalue() == sliced.getvalue() and whole.getvalue().count(b"\n") == 30
    pq_buf = io.BytesIO()
    export_events(runner, COURSE, None, None, "parquet", pq_buf, chunk_rows=5)
    assert pq.read_table(io.BytesIO(pq_buf.getvalue())).num_rows == 29
    empty = io.BytesIO()
    assert export_events(runner, "course-v1:No+Such+Course", None, None, "csv", empty) == 0


def test_export_helpers():
    d = [(datetime(2024, 1, i).date(), n) for i, n in [(1, 3), (2, 3), (3, 10), (4, 1)]]
    assert day_slices(d, 6) == [(d[0][0], d[1][0]), (d[2][0], d[2][0]), (d[3][0], d[3][0])]
    assert parse_when("2024-03-04", end=True) == datetime(2024, 3, 5, tzinfo=timezone.utc)
    assert parse_when("2024-03-04T10:00:00+02:00") == datetime(2024, 3, 4, 8, tzinfo=timezone.utc)
    with pytest.raises(UserError):
        parse_when("last tuesday")


def test_read_only_guard():
    db = "edxstream"
    for ok in [
        "SELECT 1",
        "  with x as (select 1) select * from x;",
        "SHOW TABLES",
        "select ';drop' as s",
        "-- comment\nSELECT 1",
        "DESCRIBE events",
        "SELECT * FROM edxstream.events FINAL",
        "SELECT number FROM numbers(3)",
        "SELECT quantile(0.5)(x) FROM events",
        "SHOW CREATE TABLE events",
        "SELECT 1 UNION ALL SELECT 2",
    ]:
        chdb_server.check_read_only(ok, db)
    for bad in [
        "DROP TABLE events",
        "INSERT INTO events SELECT * FROM events",
        "SELECT 1; DROP TABLE x",
        "SELECT 1 INTO OUTFILE 'x.csv'",
        "",
        "/* hi */ ALTER TABLE events DELETE WHERE 1",
        "OPTIMIZE TABLE events FINAL",
        "SYSTEM SHUTDOWN",
        *ATTACKS,
        "SELECT * FROM system.tables",
        "SHOW TABLES FROM other",
        "SELECT * FROM (SELECT * FROM url('http://127.0.0.1:3306/'))",
        "SELECT * FROM events WHERE event_id IN (SELECT toString(x) FROM remote('h', db.t))",
        "SET readonly = 0",
        "SELECT * FROM merge('system', '.*')",
        "EXPLAIN SELECT 1",
    ]:
        with pytest.raises(UserError):
            chdb_server.check_read_only(bad, db)


# What a curious or hostile analyst tried: writing, several statements, reading local
# files, other services and other databases around the pseudonymisation.
ATTACKS = [
    "SELECT $$';$$ ; DROP TABLE events",
    "DROP TABLE events",
    "SELECT * FROM file('/etc/passwd', 'LineAsString')",
    "SELECT file('/etc/hostname')",
    "SELECT * FROM url('http://127.0.0.1:9/', 'LineAsString')",
    "SELECT * FROM mysql('127.0.0.1:3306', 'mysql', 'user', 'root', '')",
    "SELECT * FROM edxstream_other.events",
    "SELECT count() FROM events SETTINGS readonly = 0",
]


@pytest.mark.parametrize("through", ["endpoint", "free folder"])
def test_attacks_are_refused_and_change_nothing(through, holder, settings, tmp_path):
    if through == "endpoint":
        env = holder
    else:
        folder = tmp_path / "free-chdb"
        env = env_for(settings, EDXSTREAM_CLICKHOUSE_URL=f"chdb://{folder}")
        run_cli(env, "db", "init")
    before = [
        run_cli(env, "query", q, "--format", "tsv").stdout for q in ("SHOW TABLES", "SELECT count() FROM window_counts")
    ]
    for sql in ATTACKS + ["SELECT 1 INTO OUTFILE '" + str(tmp_path / "out.txt") + "'"]:
        p = run_cli(env, "query", sql, ok=False)
        err = p.stderr.decode()
        assert p.returncode == 2, (sql, err)
        # (chdb itself may print a line first when the folder is held: that is the engine's)
        assert err.strip().splitlines()[-1].startswith("edxstream:") and "Traceback" not in err, (sql, err)
        assert "root" not in p.stdout.decode() and not p.stdout.strip(), sql
    assert not (tmp_path / "out.txt").exists()
    after = [
        run_cli(env, "query", q, "--format", "tsv").stdout for q in ("SHOW TABLES", "SELECT count() FROM window_counts")
    ]
    assert after == before and b"events" in after[0]


def test_the_engine_refuses_writes_on_the_analyst_session(settings):
    """Behind the parser, the engine's own readonly setting: a statement that reached the
    analyst session unchecked still cannot write, make or drop tables, or lift readonly.
    (Table functions such as file() are the parser's to refuse: readonly=2, which lets a
    query set how its result is written, would run them; see test_read_only_guard.)"""
    from edxstream.core import clickhouse

    writer = clickhouse.connect(settings)
    writer.command("CREATE TABLE t_rw (x Int8) ENGINE = MergeTree ORDER BY x")
    client = clickhouse.connect_read_only(settings)
    for sql in [
        "CREATE TABLE t_attack (x Int8) ENGINE = Memory",
        "DROP TABLE t_rw",
        "INSERT INTO t_rw VALUES (1)",
        "SELECT 1 SETTINGS readonly = 0",
    ]:
        with pytest.raises(Exception, match="readonly"):
            client.raw_query(sql, fmt="TSV")
    assert client.raw_query("SELECT count() FROM t_rw", fmt="TSV") == b"0\n"
    # and the process's writing client is not read-only
    writer.command("INSERT INTO t_rw VALUES (1)")
    assert client.raw_query("SELECT count() FROM t_rw", fmt="TSV") == b"1\n"
