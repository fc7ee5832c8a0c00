"""``edxstream demo``: the whole pipeline on a generated sample, with real services,
and the pure helpers it prints with."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pymysql
import pytest

from edxstream.ops import pipeline
from edxstream.ops.demo_cli import _with_database, short_block, table
from edxstream.ops.generate import GenConfig, log_files, read_manifest, write_dir
from tests.conftest import MYSQL_ADMIN, edxstream_cmd, env_for


def test_expected_counts_match_the_generators_manifest(tmp_path):
    out = tmp_path / "logs"
    write_dir(GenConfig(events=2_000, courses=2, learners=60, days=3, seed=4, malformed=0.01), out)
    m = read_manifest(out)
    exp = pipeline.expected_counts(log_files(out))
    assert exp.lines == 2_000
    assert exp.events == m["valid"]
    assert exp.dead_letters == sum(m["malformed"].values()) > 0


def test_settings_reach_a_subprocess_unchanged(settings):
    env = pipeline.settings_env(settings)
    code = "from edxstream.core.settings import load; import sys; s = load(); sys.stdout.write(s.model_dump_json())"
    res = subprocess.run(["python", "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    from edxstream.core.settings import Settings

    assert Settings.model_validate_json(res.stdout) == settings


def test_table_and_block_names():
    text = table(
        [{"course": "course-v1:A+B+C", "n": 1234}, {"course": "x", "n": 5}], [("course", "course"), ("n", "n")]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["course", "n"]
    assert lines[2].endswith("1,234") and lines[3].endswith("5")
    assert table([], [("a", "a")]).strip() == "(none)"
    assert short_block("block-v1:A+B+C+type@video+block@0123456789abcdef") == "video 01234567"
    assert _with_database("mysql://u:p@h:1/edxstream", "demo") == "mysql://u:p@h:1/demo"


@pytest.mark.slow
def test_demo_runs_the_pipeline_and_prints_the_summary(settings, tmp_path):
    database = f"{settings.mysql['database']}_demo"
    env = env_for(settings)
    try:
        res = subprocess.run(
            edxstream_cmd(
                "demo",
                "--events",
                "3000",
                "--courses",
                "2",
                "--learners",
                "120",
                "--days",
                "3",
                "--database",
                database,
                "--timeout",
                "400",
            ),
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        out = res.stdout
        for step in range(1, 6):
            assert f"[{step}/5]" in out
        for heading in (
            "Events per course and category",
            "Busiest days",
            "Top videos",
            "Top problems",
            "Dead letters by reason",
            "Query further",
        ):
            assert heading in out, heading
        sample = settings.data_dir / "demo" / "sample"
        m = read_manifest(sample)
        for course in m["courses"]:
            assert course in out
        for reason in m["malformed"]:
            assert reason in out
        # the rows are really there: every valid line once, every malformed line once
        conn = pymysql.connect(**MYSQL_ADMIN, database=database)
        with conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM events")
            assert cur.fetchone()[0] == m["valid"]
            cur.execute("SELECT COUNT(*) FROM dead_letters")
            assert cur.fetchone()[0] == sum(m["malformed"].values())
        conn.close()
        assert f"ClickHouse holds {m['valid']:,} events" in out
        # the generator's course exports were imported: videos and problems by name
        assert "course structure: 2 OLX exports imported" in out
        top = out[out.index("Top videos") : out.index("Dead letters by reason")]
        assert "Video " in top and "Quiz " in top
        assert not re.search(r"\b(video|problem) [0-9a-f]{8}\b", top), top  # no block hashes
        # it ends with reconcile, which found the windows equal to the events
        assert f"reconcile: {m['valid']:,} events" in out and "the windows agree with what was shipped" in out
        # every number is explained: the events the per-course table leaves out, the live counts
        assert "events belong to a course" in out and "The stream app's live hourly counts hold" in out
        # the web app runs on the demo's data, with a login printed for it
        web = re.search(r"open (http://127\.0\.0\.1:(\d+))/ and log in as demo / (\S+)", out)
        assert web and int(web.group(2)) == settings.web_app_port, out[-2000:]
        from edxstream.analyst.web.accounts import Accounts, accounts_file

        assert Accounts(accounts_file(settings)).verify("demo", web.group(3)).role == "operator"
        with urllib.request.urlopen(web.group(1) + "/healthz", timeout=10) as r:
            assert r.status == 200
        assert "\r" not in res.stderr  # off a terminal: no progress bar redrawn in place
        # the closing hints run as printed
        hints = out.split("Query further", 1)[1].splitlines()[1:]
        commands = [line.strip() for line in hints if line.startswith("  ")]
        assert len(commands) == 4 and commands[-1].startswith("mysql "), hints
        # as after `. .venv/bin/activate`: edxstream on the PATH
        shell_env = {**env, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"}
        for command in commands:
            r = subprocess.run(
                ["bash", "-c", command], env=shell_env, cwd=tmp_path, capture_output=True, text=True, timeout=120
            )
            assert r.returncode == 0 and r.stdout + r.stderr, (command, r.stdout[-2000:], r.stderr[-2000:])
        assert (tmp_path / "events.csv").stat().st_size > 0 and (tmp_path / "report" / "index.html").exists()
    finally:
        conn = pymysql.connect(**MYSQL_ADMIN)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()


@pytest.mark.slow
def test_a_wait_that_cannot_finish_says_so_at_once(settings, tmp_path):
    """When MySQL's counts stand still while the stream app and the MySQL sink have read
    everything, the wait stops at once and says why, instead of running out its timeout
    (which would raise a different message, "... after 600s")."""
    from edxstream.core.errors import UserError

    s = settings.model_copy(update={"clickhouse_url": f"chdb://{tmp_path / 'clickhouse'}"})
    out = tmp_path / "logs"
    write_dir(GenConfig(events=500, courses=1, learners=20, days=1, seed=9, malformed=0.01), out)
    paths = log_files(out)
    exp = pipeline.expected_counts(paths, s.max_clock_skew_seconds)
    never = pipeline.Expected(exp.lines, exp.events + 1, exp.dead_letters)  # one row more than will ever come
    with pipeline.Pipeline(s, log_dir=tmp_path / "run") as pipe:
        pipeline.prepare(pipe, reset=False)
        pipeline.start_workers(pipe)
        with pytest.raises(UserError) as err:
            pipeline.backfill_until_written(pipe, paths, never, timeout=600)
    msg = str(err.value)
    assert f"MySQL holds {exp.events:,} of {exp.events + 1:,} events" in msg
    assert "the rest will not come" in msg and "edxstream reconcile" in msg
