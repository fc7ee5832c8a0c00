"""The synthetic log generator: determinism, shapes like the real corpus, the event
model's reading of every line, rotation into gzip files, and the CLI."""

from __future__ import annotations

import gzip
import io
import subprocess
from collections import Counter, defaultdict
from datetime import date, datetime, timezone
from pathlib import Path

import orjson
import pytest

from edxstream.ops.generate import (
    MALFORMED_KINDS,
    GenConfig,
    generate_days,
    log_files,
    read_manifest,
    write_dir,
    write_stream,
)
from edxstream.core.model import CATEGORIES, parse_line
from edxstream.core.records import DeadLetter, EnrichedEvent
from tests.conftest import edxstream_cmd

SMALL = GenConfig(events=6_000, courses=3, learners=150, days=5, seed=7, malformed=0.01, prefixed=0.01)


def _lines(cfg: GenConfig) -> list[bytes]:
    buf = io.BytesIO()
    write_stream(cfg, buf)
    return buf.getvalue().splitlines()


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return _lines(SMALL)


@pytest.fixture(scope="module")
def parsed(lines) -> list[EnrichedEvent | DeadLetter]:
    return [parse_line(line) for line in lines]


def _doc(line: bytes) -> dict | None:
    """The JSON object of a valid line (logger prefix skipped), else None."""
    try:
        return orjson.loads(line[line.index(b"{") :])
    except (ValueError, orjson.JSONDecodeError):
        return None


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    a = write_dir(SMALL, tmp_path / "a")
    b = write_dir(SMALL, tmp_path / "b")
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert a == b
    other = GenConfig(**{**SMALL.__dict__, "seed": 8})
    assert _lines(other) != _lines(SMALL)


def test_exact_line_count_in_time_order_within_the_days(lines, parsed):
    assert len(lines) == SMALL.events
    times = [r.time for r in parsed if isinstance(r, EnrichedEvent)]
    assert times == sorted(times)
    first = datetime(2026, 10, 27, tzinfo=timezone.utc)  # 5 days before 2026-11-01
    assert first <= times[0] and times[-1] < datetime(2026, 11, 1, tzinfo=timezone.utc)
    # every day of the period has activity
    assert {t.date() for t in times} == {date(2026, 10, d) for d in range(27, 32)}
    # no two lines are the same event
    ids = [r.event_id for r in parsed if isinstance(r, EnrichedEvent)]
    assert len(set(ids)) == len(ids)


def test_every_valid_line_parses_and_every_malformed_line_dead_letters(lines, parsed):
    manifest_counts = Counter()
    for day in generate_days(SMALL):
        manifest_counts.update(day.malformed)
    dead = Counter(r.reason for r in parsed if isinstance(r, DeadLetter))
    # the generator says which lines it broke and how; the model must agree exactly
    assert dead == manifest_counts
    assert set(dead) == set(MALFORMED_KINDS)
    assert sum(dead.values()) == pytest.approx(SMALL.events * SMALL.malformed, rel=0.5)
    # logger-prefixed lines are valid and parse like the bare line
    prefixed = [(line, r) for line, r in zip(lines, parsed, strict=True) if not line.startswith(b"{")]
    valid_prefixed = [(line, r) for line, r in prefixed if isinstance(r, EnrichedEvent)]
    assert len(valid_prefixed) > 10
    for line, r in valid_prefixed:
        assert b" logger.py:41 - {" in line
        bare = parse_line(line[line.index(b"{") :])
        assert bare.event_id == r.event_id


def test_categories_and_mix_look_like_a_mooc(parsed):
    events = [r for r in parsed if isinstance(r, EnrichedEvent)]
    share = {c: n / len(events) for c, n in Counter(r.category for r in events).items()}
    assert set(share) == set(CATEGORIES)
    # lots of video and page views; problems next; a little forum and enrolment
    assert 0.25 < share["video"] < 0.6
    assert 0.1 < share["content"] < 0.45
    assert 0.08 < share["assessment"] < 0.35
    assert 0.005 < share["forum"] < 0.1
    assert 0.02 < share["access"] < 0.15
    assert share["other"] < 0.05
    # events carry the course, learner and session they belong to
    in_course = [
        r
        for r in events
        if r.category != "other" and r.action != "/dashboard" and not r.action.startswith("/change_enrollment")
    ]
    assert all(r.course_id and r.course_id.startswith("course-v1:") for r in in_course)
    assert all(r.user_id and r.username and r.session for r in events if r.event_source == "browser")
    videos = [r for r in events if r.action == "play_video"]
    assert videos and all(r.video_id and r.video_position is not None and r.block_id for r in videos)
    checks = [r for r in events if r.action == "problem_check" and r.event_source == "server"]
    assert checks and all(r.problem_id and r.attempts and r.max_grade and r.success is not None for r in checks)


def test_payload_shapes_match_the_real_logs(lines):
    docs = [d for d in map(_doc, lines) if d is not None and "event_type" in d]
    by_type: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for d in docs:
        et = d["event_type"]
        by_type[("URL" if et.startswith("/") else et, d["event_source"])].append(d)
    # server page views: event_type is the path, event a JSON string of GET and POST
    views = by_type[("URL", "server")]
    assert views
    for d in views:
        assert isinstance(d["event"], str)
        assert set(orjson.loads(d["event"])) == {"GET", "POST"}
        assert d["context"]["path"] == d["event_type"] and d["page"] is None
    assert any("/courseware/" in d["event_type"] for d in views)
    # browser video and navigation events: a JSON-encoded string
    for et in (
        "load_video",
        "play_video",
        "pause_video",
        "seek_video",
        "stop_video",
        "speed_change_video",
        "seq_next",
        "seq_goto",
        "page_close",
    ):
        found = by_type[(et, "browser")]
        assert found, et
        for d in found:
            assert isinstance(d["event"], str)
            assert d["context"]["path"] == "/event"
            if et != "page_close":
                assert isinstance(orjson.loads(d["event"]), dict)
    seek = orjson.loads(by_type[("seek_video", "browser")][0]["event"])
    assert {"old_time", "new_time", "id", "code"} <= set(seek)
    # browser problem_check: a URL-encoded query string of input_... answers
    for d in by_type[("problem_check", "browser")]:
        assert isinstance(d["event"], str) and d["event"].startswith("input_") and "=" in d["event"]
    # problem_graded: [answers, html]
    assert all(isinstance(d["event"], list) and len(d["event"]) == 2 for d in by_type[("problem_graded", "browser")])
    # server problem_check: an object with the grade, and the block in context.module
    server_checks = by_type[("problem_check", "server")]
    assert server_checks
    for d in server_checks:
        assert {"success", "attempts", "grade", "max_grade", "problem_id"} <= set(d["event"])
        assert d["context"]["module"]["usage_key"] == d["event"]["problem_id"]
        assert "+type@problem+block@" in d["event"]["problem_id"]
    # forum and enrolment: object payloads
    assert by_type[("edx.forum.thread.created", "server")] and by_type[("edx.forum.thread.viewed", "server")]
    for d in by_type[("edx.course.enrollment.activated", "server")]:
        assert set(d["event"]) == {"course_id", "user_id", "mode"}
    # times with and without a zone
    zones = Counter(d["time"].endswith("+00:00") for d in docs)
    assert zones[True] > zones[False] > 0


def test_learners_enrol_before_acting_and_sessions_are_bursts():
    # no malformed lines here: a broken enrolment line would hide the enrolment
    cfg = GenConfig(events=30_000, courses=4, learners=300, days=8, seed=3, malformed=0)
    events = [parse_line(line) for line in _lines(cfg)]
    assert all(isinstance(r, EnrichedEvent) for r in events)
    enrolled: set[tuple[str, str]] = set()
    allowed_before = {"/courses/{course_id}/about", "/change_enrollment", "edx.course.enrollment.activated"}
    for r in events:
        if not r.course_id:
            continue
        key = (r.username, r.course_id)
        if r.action == "edx.course.enrollment.activated":
            enrolled.add(key)
        elif r.action == "edx.course.enrollment.deactivated":
            enrolled.discard(key)
            continue
        assert key in enrolled or r.action in allowed_before, (r.action, key, r.time)
    # a session belongs to one learner, and lasts minutes to hours, not days
    span: dict[str, list] = {}
    for r in events:
        if r.session:
            s = span.setdefault(r.session, [r.username, r.time, r.time])
            assert s[0] == r.username
            s[2] = r.time
    assert len(span) > 500
    assert max((s[2] - s[1]).total_seconds() for s in span.values()) < 86400
    per_learner = Counter(r.username for r in events)
    assert len(per_learner) > 50


def test_rotation_writes_one_gzip_per_day_with_that_days_events(tmp_path):
    out = tmp_path / "logs"
    manifest = write_dir(SMALL, out, rotate="daily", gzip_level=1)
    files = log_files(out)
    assert [p.name for p in files] == [f"tracking.log-202610{d}.gz" for d in range(27, 31)] + ["tracking.log"]
    total = valid = 0
    for path in files:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            assert raw[:2] == b"\x1f\x8b"
            data = gzip.decompress(raw)
            day = date(int(path.name[13:17]), int(path.name[17:19]), int(path.name[19:21]))
        else:
            data = raw
            day = date(2026, 10, 31)
        days = {r.time.date() for r in map(parse_line, data.splitlines()) if isinstance(r, EnrichedEvent)}
        assert days == {day}, path.name
        total += data.count(b"\n")
        valid += sum(isinstance(parse_line(x), EnrichedEvent) for x in data.splitlines())
    assert total == manifest.events == SMALL.events
    assert valid == manifest.valid
    m = read_manifest(out)
    assert m["valid"] == valid and sum(f["lines"] for f in m["files"]) == total
    assert len(m["courses"]) == 3 and m["first_day"] == "2026-10-27" and m["last_day"] == "2026-10-31"

    flat = tmp_path / "flat"
    write_dir(SMALL, flat, rotate="none")
    assert [p.name for p in log_files(flat)] == ["tracking.log"]
    assert (flat / "tracking.log").read_bytes() == b"".join(line + b"\n" for line in _lines(SMALL))


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        GenConfig(events=10, malformed=2.0)
    with pytest.raises(ValueError):
        GenConfig(events=10, days=0)


def test_cli_writes_the_same_bytes_as_the_library(tmp_path):
    args = ["generate", "--events", "3000", "--courses", "2", "--learners", "80", "--days", "3", "--seed", "5"]
    res = subprocess.run(edxstream_cmd(*args, "--stdout"), capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    expected = _lines(GenConfig(events=3000, courses=2, learners=80, days=3, seed=5))
    assert res.stdout.splitlines() == expected
    assert b"3000 lines" in res.stderr

    out = tmp_path / "cli"
    res = subprocess.run(edxstream_cmd(*args, "--out", str(out)), capture_output=True, timeout=120)
    assert res.returncode == 0, res.stderr.decode()
    assert len(log_files(out)) == 3 and read_manifest(out)["events"] == 3000

    res = subprocess.run(edxstream_cmd("generate", "--events", "10"), capture_output=True, timeout=60)
    assert res.returncode == 2 and b"--out DIR or --stdout" in res.stderr


def test_one_course_one_learner_still_fills_every_day():
    cfg = GenConfig(events=400, courses=1, learners=1, days=2, seed=1, malformed=0, prefixed=0)
    got = [parse_line(x) for x in _lines(cfg)]
    assert len(got) == 400 and all(isinstance(r, EnrichedEvent) for r in got)
    assert len({r.time.date() for r in got}) == 2


def test_corpus_event_types_are_covered():
    """Every event type the generator writes also occurs in the real corpus (no
    invented names), checked against the corpus when it is present."""
    corpus = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "public-tracking.log"
    if not corpus.exists():
        pytest.skip("shared corpus not present")
    real = set()
    for line in corpus.read_bytes().splitlines():
        d = _doc(line)
        if d and isinstance(d.get("event_type"), str) and not d["event_type"].startswith("/"):
            real.add(d["event_type"])
    ours = {
        d["event_type"]
        for d in map(_doc, _lines(SMALL))
        if d and "event_type" in d and not d["event_type"].startswith("/")
    }
    assert ours <= real, ours - real
