"""``edxstream demo``: the whole pipeline on a generated sample, with real services,
and the pure helpers it prints with."""

from __future__ import annotations

import re
import subprocess

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
    text = table([{"course": "course-v1:A+B+C", "n": 1234}, {"course": "x", "n": 5}], [("course", "course"), ("n", "n")])
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
            edxstream_cmd("demo", "--events", "3000", "--courses", "2", "--learners", "120", "--days", "3",
                          "--database", database, "--timeout", "400"),
            env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
        out = res.stdout
        for step in range(1, 6):
            assert f"[{step}/5]" in out
        for heading in ("Events per course and category", "Busiest days", "Top videos", "Top problems",
                        "Dead letters by reason", "Query further"):
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
        top = out[out.index("Top videos"):out.index("Dead letters by reason")]
        assert "Video " in top and "Quiz " in top
        assert not re.search(r"\b(video|problem) [0-9a-f]{8}\b", top), top  # no block hashes
    finally:
        conn = pymysql.connect(**MYSQL_ADMIN)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
        conn.close()
