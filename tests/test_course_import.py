"""`edxstream course import`: OLX exports and Course Blocks API responses become
course_blocks rows, and the analyst views show names, due dates and video lengths,
also for events stored before the structure was imported."""

from __future__ import annotations

import io
import json
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from edxstream.core import clickhouse
from edxstream.core.errors import UserError
from edxstream.core.model import parse_line
from edxstream.core.records import ENRICHED_FIELDS, EnrichedEvent
from edxstream.ops import course_import
from edxstream.ops.generate import GenConfig, _Generator, course_export, write_course_exports, write_stream
from sinks import migrate, rows
from tests.conftest import edxstream_cmd, env_for
from tests.test_analyst_data import COURSE, P1, V1, V2, blocks_api_response, build, q

UTC = timezone.utc
CFG = GenConfig(events=3_000, courses=2, learners=80, days=6, seed=5)


def test_blocks_api_response_gives_the_outline_in_order():
    s = course_import.read_blocks_api(blocks_api_response())
    assert s.course_id == COURSE and s.source == "blocks_api"
    assert [b.block_key for b in s.blocks] == [
        "course",
        "week1",
        "lesson1",
        "u1",
        "intro_video",
        "week2_video",
        "hw1",
        "u2",
        "quiz1",
        "quiz2",
    ]
    quiz2 = s.blocks[-1]
    assert (quiz2.chapter_name, quiz2.sequential_name, quiz2.graded, quiz2.assignment_type, quiz2.weight) == (
        "Week 1: Getting started",
        "Homework 1",
        True,
        "Homework",
        2.0,
    )
    assert quiz2.due == datetime(2024, 3, 5, 23, 59, tzinfo=UTC)
    assert s.blocks[4].video_duration == 95.0 and s.blocks[5].video_duration is None
    with pytest.raises(UserError):
        course_import.read_blocks_api({"blocks": {}})


def test_generator_export_names_every_block_its_logs_mention(tmp_path):
    paths = write_course_exports(CFG, tmp_path)
    assert len(paths) == CFG.courses
    assert write_course_exports(CFG, tmp_path / "again")[0].read_bytes() == paths[0].read_bytes()
    structures = {s.course_id: s for s in map(course_import.read_structure, paths)}
    keys = {(cid, b.block_key): b for cid, s in structures.items() for b in s.blocks}
    buf = io.BytesIO()
    write_stream(CFG, buf)
    mentioned = set()
    for line in buf.getvalue().splitlines():
        e = parse_line(line)
        if isinstance(e, EnrichedEvent) and e.course_id in structures:
            for usage in (e.block_id, e.problem_id, e.subsection_id):
                if usage and "+type@" in usage:
                    mentioned.add((e.course_id, course_import.block_key_of(usage)))
            if e.video_id:
                mentioned.add((e.course_id, e.video_id))
    assert len(mentioned) > 50
    missing = mentioned - keys.keys()
    assert not missing, sorted(missing)[:5]
    assert all(keys[k].display_name for k in mentioned)
    # graded homework with due dates, and its problems inherit them
    for s in structures.values():
        hw = [b for b in s.blocks if b.block_type == "sequential" and b.graded]
        assert hw and all(b.due is not None and b.assignment_type == "Homework" for b in hw)
        probs = [b for b in s.blocks if b.block_type == "problem" and b.sequential_id in {h.block_id for h in hw}]
        assert probs and all(b.graded and b.due is not None and b.weight for b in probs)


def test_olx_pointer_and_inline_blocks_and_policy_overrides():
    files = {
        "course/course.xml": b'<course url_name="2024_T1" org="DemoX" course="AN101"/>',
        "course/course/2024_T1.xml": b'<course display_name="Analytics 101"><chapter url_name="week1"/></course>',
        "course/chapter/week1.xml": (
            b'<chapter display_name="Week 1"><sequential url_name="hw1" '
            b'display_name="Homework 1" graded="true" format="Homework">'
            b'<vertical url_name="u1"><problem url_name="quiz1" display_name="Quiz 1" '
            b'weight="3"/><video url_name="intro_video"/></vertical>'
            b"</sequential></chapter>"
        ),
        "course/video/intro_video.xml": b'<video display_name="Welcome" youtube_id_1_0="abc"/>',
        "course/policies/2024_T1/policy.json": json.dumps({"sequential/hw1": {"due": "2024-03-05T23:59:00Z"}}).encode(),
    }
    s = course_import.read_olx(files)
    by = {b.block_key: b for b in s.blocks}
    assert s.course_id == COURSE
    assert by["quiz1"].due == datetime(2024, 3, 5, 23, 59, tzinfo=UTC)
    assert (by["quiz1"].weight, by["quiz1"].graded, by["quiz1"].sequential_name) == (3.0, True, "Homework 1")
    assert by["intro_video"].display_name == "Welcome"  # from its own file
    with pytest.raises(UserError):
        course_import.read_olx({"x.xml": b"<a/>"})
    with pytest.raises(UserError):  # entity expansion is refused
        course_import.read_olx(
            {**files, "course/chapter/week1.xml": b'<!DOCTYPE x [<!ENTITY a "aaaa">]><chapter display_name="&a;"/>'}
        )


def test_views_show_names_due_dates_and_video_lengths_even_when_imported_later(settings):
    client = clickhouse.connect(settings)
    migrate.migrate_clickhouse(settings, client=client)
    events = build()
    client.insert("events", [rows.clickhouse_event_row(e) for e in events], column_names=list(ENRICHED_FIELDS))

    videos = {r["video_id"]: r for r in q(client, "SELECT * FROM video_engagement")}
    assert not videos[V1]["display_name"]  # no structure yet: no name
    assert (videos[V1]["duration"], videos[V1]["duration_estimated"]) == (500.0, 1)  # furthest position seen

    course_import.store(client, course_import.read_blocks_api(blocks_api_response()))
    videos = {r["video_id"]: r for r in q(client, "SELECT * FROM video_engagement")}
    assert videos[V1]["display_name"] == "Welcome to the course"
    assert (videos[V1]["duration"], videos[V1]["duration_estimated"]) == (95.0, 0)  # the structure's
    assert (videos[V2]["display_name"], videos[V2]["duration_estimated"]) == ("How the data flows", 1)
    problems = {r["problem_id"]: r for r in q(client, "SELECT * FROM problem_outcomes")}
    assert (problems[P1]["display_name"], problems[P1]["sequential_name"], problems[P1]["weight"]) == (
        "Quiz 1: Averages",
        "Homework 1",
        1.0,
    )
    daily = {
        (str(r["day"]), r["category"]): r["due"]
        for r in q(client, f"SELECT * FROM course_daily_interactions WHERE course_id = '{COURSE}'")
    }
    assert daily[("2024-03-05", "video")] == ["Homework 1"]
    assert daily[("2024-03-04", "video")] == []
    (due,) = q(
        client,
        f"SELECT display_name, toString(due) AS due FROM course_due_dates WHERE course_id = '{COURSE}' "
        "AND block_type = 'sequential'",
    )
    assert due == {"display_name": "Homework 1", "due": "2024-03-05 23:59:00"}

    # a later import of the course replaces the earlier one: renamed and removed blocks
    later = blocks_api_response()
    later["blocks"][V1]["display_name"] = "Welcome (new cut)"
    later["blocks"]["block-v1:DemoX+AN101+2024_T1+type@vertical+block@u2"]["children"] = [P1]
    course_import.store(
        client, course_import.read_blocks_api(later), imported_at=datetime.now(UTC) + timedelta(seconds=1)
    )
    names = {r["block_key"]: r["display_name"] for r in q(client, "SELECT * FROM block_names")}
    assert names["intro_video"] == "Welcome (new cut)" and "quiz2" not in names


def test_course_import_command(settings, tmp_path):
    export = tmp_path / "course.tar.gz"
    export.write_bytes(course_export(CFG, _Generator(CFG).courses[0]))
    env = env_for(settings)
    ok = subprocess.run(
        edxstream_cmd("course", "import", str(export)), env=env, capture_output=True, text=True, timeout=300
    )
    assert ok.returncode == 0, ok.stderr
    assert "blocks from" in ok.stdout and "graded subsections with a due date" in ok.stdout
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    got = subprocess.run(
        edxstream_cmd("course", "import", str(bad)), env=env, capture_output=True, text=True, timeout=300
    )
    assert got.returncode == 2
    assert got.stderr.strip().splitlines()[-1].startswith("edxstream: ")
