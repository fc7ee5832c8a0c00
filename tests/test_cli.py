"""The command line as a newcomer meets it: every command, with its services down, given
a bad argument or a bad SQL statement, says in one ``edxstream:`` line what is wrong and
exits 2 (no traceback, no client library's own noise, no password); every command and
option has help written for users; ``stack status`` shows what runs, in ISO times, as
JSON too, with an exit status that means up / degraded / down; CSV reads back typed."""

from __future__ import annotations

import argparse
import io
import json
import signal
import subprocess
import time

import pandas as pd
import pytest

from edxstream import cli
from edxstream.analyst.cli import CSV_SETTINGS
from tests.conftest import REPO, edxstream_cmd, env_for, free_port
from tests.test_analyst_cli import holder  # noqa: F401 - fixture: a process holding a chdb folder with a course
from tests.test_analyst_data import COURSE

PASSWORD = "s3cret-pw"


def run(env, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(edxstream_cmd(*args), env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(r: subprocess.CompletedProcess, *args: str) -> str:
    """Exit 2, and stderr is exactly one line starting ``edxstream:``."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2, (args, r.returncode, r.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("edxstream: "), (args, r.stderr[-2000:])
    assert PASSWORD not in r.stdout + r.stderr, args
    return lines[0]


@pytest.fixture
def services_down(settings, tmp_path):
    """Settings pointing every service at a closed port, and a broker binary that is not
    there (so `stack up` and `demo` cannot start one on that port)."""
    log = tmp_path / "tracking.log"
    log.write_bytes(b'{"event_type": "play_video", "time": "2024-01-01T00:00:00Z"}\n')
    env = env_for(
        settings,
        EDXSTREAM_KAFKA_BOOTSTRAP=f"127.0.0.1:{free_port()}",
        EDXSTREAM_MYSQL_DSN=f"mysql://edxstream:{PASSWORD}@127.0.0.1:{free_port()}/edxstream",
        EDXSTREAM_CLICKHOUSE_URL=f"http://default:{PASSWORD}@127.0.0.1:{free_port()}",
        EDXSTREAM_TANSU_BIN=str(tmp_path / "no-tansu"),
    )
    return env, log


def test_every_command_with_its_services_down_says_what_to_do_in_one_line(services_down, tmp_path):
    env, log = services_down
    commands = [
        ("ship", str(log)),
        ("backfill", str(log)),
        ("process", "--until-idle", "1"),
        ("sink", "mysql", "--max-idle", "1"),
        ("sink", "clickhouse", "--max-idle", "1"),
        ("replay", "--from", "BEGINNING", "--dry-run"),
        ("db", "init"),
        ("db", "status"),
        ("db", "init", "--only", "clickhouse"),
        ("query", "SELECT 1"),
        ("export", "--course", COURSE),
        ("report", "--course", COURSE, "--out", str(tmp_path / "report")),
        ("stack", "up"),
        ("demo", "--events", "100"),
        ("inspect", str(tmp_path / "missing.log")),
        ("generate",),
    ]
    said = {}
    for args in commands:
        r = run(env, *args)
        said[args] = assert_one_line_error(r, *args)
        assert "%3|" not in r.stderr and "Traceback" not in r.stderr, args  # no librdkafka lines
    assert "no Kafka broker answers at 127.0.0.1:" in said[commands[0]] and "edxstream stack up" in said[commands[0]]
    assert "cannot use MySQL database edxstream" in said[("db", "init")]
    assert said[("query", "SELECT 1")].endswith(
        "does not answer (connection refused): start it, or check EDXSTREAM_CLICKHOUSE_URL"
    )

    status = run(env, "stack", "status")
    assert status.returncode == 3 and "Traceback" not in status.stderr, status.stdout + status.stderr
    assert status.stdout.strip().endswith("status: down (not answering: kafka, mysql, clickhouse)"), status.stdout
    assert PASSWORD not in status.stdout + status.stderr


def test_a_bad_argument_or_bad_sql_is_one_line(settings, tmp_path):
    env = env_for(settings, EDXSTREAM_CLICKHOUSE_URL=f"chdb://{tmp_path / 'chdb'}")
    for args in [
        ("query", "SELECT 1", "--format", "xml"),
        ("export",),
        ("stack", "restart"),
        ("no-such-command",),
        ("generate", "--events", "many"),
        ("inspect", "--top"),
    ]:
        line = assert_one_line_error(run(env, *args), *args)
        assert "--help" in line, line
    line = assert_one_line_error(run(env, "query", "SELEC 1"), "SELEC 1")
    # refused by the query path's parser before it runs; nothing appended to the user's SQL
    assert "cannot read this statement as ClickHouse SQL" in line and "FORMAT" not in line, line
    line = assert_one_line_error(run(env, "query", "SELECT * FROM nowhere"), "nowhere")
    assert "nowhere" in line and "edxstream db init" in line, line


def test_db_init_prints_each_migration_once_and_says_how_to_get_access(settings):
    from sinks import migrate

    env = env_for(settings)
    r = run(env, "db", "init", "--only", "mysql")
    assert r.returncode == 0, r.stderr
    for m in migrate.discover(migrate.MIGRATIONS / "mysql"):
        assert (r.stdout + r.stderr).count(str(m)) == 1, r.stdout + r.stderr
    m = settings.mysql
    denied = env_for(
        settings,
        EDXSTREAM_MYSQL_DSN=f"mysql://nobody_{free_port()}:{PASSWORD}@{m['host']}:{m['port']}/edxstream_cli_nowhere",
    )
    line = assert_one_line_error(run(denied, "db", "init", "--only", "mysql"), "denied")
    assert "Access denied" in line and "`edxstream stack up`" in line and "creates the database and the user" in line


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_option_has_help_written_for_users():
    parser = cli.build_parser()
    top = parser.format_help()
    commands = _subparsers(parser)
    assert {
        "stack",
        "ship",
        "backfill",
        "process",
        "sink",
        "db",
        "inspect",
        "replay",
        "generate",
        "demo",
        "bench",
        "query",
        "export",
        "report",
    } <= set(commands)
    helps = {
        a.dest: a.help
        for a in next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))._choices_actions
    }
    for name, sub in commands.items():
        assert helps.get(name), f"{name} has no one-line help in `edxstream --help`"
        assert name in top
        text = sub.format_help()
        assert sub.description, f"`edxstream {name} --help` has no description"
        assert "``" not in text and ":func:" not in text and "issue" not in text.lower(), (name, text)
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help, f"edxstream {name}: {action.option_strings or action.dest} has no help"
    assert top.rstrip().endswith("exits with status 2."), top  # the closing sentence is whole


def test_csv_is_typed_for_pandas_through_query_and_export(holder, tmp_path):  # noqa: F811
    env = holder
    out = tmp_path / "course.csv"
    r = run(env, "export", "--course", COURSE, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert "Code:" not in r.stderr and "Cannot lock" not in r.stderr, r.stderr  # no engine noise while held
    text = out.read_text()
    assert "\\N" not in text
    df = pd.read_csv(out)
    assert len(df) == 29 and list(df.columns[:3]) == ["event_id", "time", "category"]
    for column in ("video_position", "grade", "max_grade", "attempts"):
        assert df[column].dtype.kind in "fi", (column, df[column].dtype)  # numbers, NaN where NULL
    assert df["video_position"].notna().any() and df["video_position"].isna().any()
    assert df["grade"].notna().any() and df["attempts"].isna().any()
    assert pd.api.types.is_string_dtype(df["course_id"])
    times = pd.to_datetime(df["time"], format="ISO8601")
    assert str(times.dt.tz) == "UTC" and text.splitlines()[1].split(",")[1].endswith('Z"')

    q = run(
        env,
        "query",
        "SELECT time, video_position, attempts FROM events FINAL ORDER BY time LIMIT 40",
        "--format",
        "csv",
    )
    assert q.returncode == 0, q.stderr
    df = pd.read_csv(io.StringIO(q.stdout))
    assert list(df.columns) == ["time", "video_position", "attempts"] and "\\N" not in q.stdout
    assert df["video_position"].dtype.kind == "f" and df["attempts"].dtype.kind == "f"
    assert str(pd.to_datetime(df["time"], format="ISO8601").dt.tz) == "UTC"
    assert set(CSV_SETTINGS) <= __import__("edxstream.core.chdb_server", fromlist=["x"]).OUTPUT_SETTINGS


def _status_json(env) -> tuple[int, dict]:
    r = run(env, "stack", "status", "--json")
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout)


def test_stack_status_shows_running_and_exited_processes(settings, tmp_path):
    from confluent_kafka import Producer

    from edxstream.core import kafka_admin

    env = env_for(settings)
    # the ClickHouse sink opens its folder (and serves queries) at its first write: give it one
    kafka_admin.ensure_topics(settings)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    producer.produce(settings.enriched_topic, key=b"course", value=b"not an event: a dead letter")
    assert producer.flush(30) == 0
    sink = subprocess.Popen(
        edxstream_cmd("sink", "clickhouse"),
        env=env,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=open(tmp_path / "sink.log", "wb"),
    )
    try:
        metrics = settings.data_dir / "run" / "sink-clickhouse.metrics.json"
        endpoint = settings.data_dir / "run" / "clickhouse.endpoint"
        deadline = time.monotonic() + 120
        while not (metrics.exists() and endpoint.exists()):
            assert sink.poll() is None, (tmp_path / "sink.log").read_text()[-3000:]
            assert time.monotonic() < deadline, (
                metrics.exists(),
                endpoint.exists(),
                (tmp_path / "sink.log").read_text()[-3000:],
            )
            time.sleep(0.5)
        code, doc = _status_json(env)
        assert code == 0 and doc["status"] == "up", doc
        ch = next(s for s in doc["services"] if s["name"] == "clickhouse")
        assert ch["answers"] and f"open in pid {sink.pid}" in ch["detail"] and "Code:" not in ch["detail"], ch
        proc = next(p for p in doc["processes"] if p["name"] == "sink-clickhouse")
        assert proc["running"] and proc["pid"] == sink.pid and proc["last_report"].endswith("Z"), proc
        text = run(env, "stack", "status")
        assert text.returncode == 0 and "running:" in text.stdout and "sink-clickhouse" in text.stdout, text.stdout
        assert "Code:" not in text.stdout + text.stderr and "{" not in text.stdout, text.stdout
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(60)
    code, doc = _status_json(env)
    proc = next(p for p in doc["processes"] if p["name"] == "sink-clickhouse")
    assert not proc["running"] and proc["exit"].startswith("exit 0") and proc["exited_at"].endswith("Z"), proc
    last = proc["metrics"].get("last_commit")
    assert last is None or (isinstance(last, str) and last.endswith("Z")), proc  # ISO, not an epoch
    assert code == 0 and doc["status"] == "up"  # an exited process does not degrade the services
    text = run(env, "stack", "status").stdout
    assert "exited:" in text and "running:" not in text, text
