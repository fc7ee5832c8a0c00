"""No line can stop a stage: generated hostile lines (lone surrogates, NULs, huge numbers,
deep nesting, odd types in every field, broken bytes) through the event model, the
encoder and both sinks' row code in-process, then a batch of them through the real
worker and the MySQL sink, where every line must be stored or dead-lettered."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
import signal
import time
import warnings

import pymysql
import pytest
from hypothesis import HealthCheck, find, given, settings as hsettings, strategies as st

from edxstream.core.model import parse_line
from edxstream.core.records import DeadLetter, EnrichedEvent, decode_enriched, encode
from sinks import migrate, mysql_sink, rows
from sinks.rows import Msg
from tests.test_stream_app import wait_exit, worker

# any character, lone surrogates included (json.dumps writes them as \udxxx escapes)
ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)
NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([2**63, -(2**63) - 1, 2**64, 10**30]),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    NUMBERS,
    ANY_TEXT,
    st.sampled_from(
        [
            "course-v1:Org+C+R",
            "block-v1:Org+C+R+type@problem+block@p1",
            "/courses/x/y/z",
            "2026-11-27T10:00:00Z",
            "play_video",
            "problem_check",
            "",
            "{",
            "a=1&b=2",
        ]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)),
    max_leaves=12,
)
FIELDS = [
    "event_type",
    "name",
    "time",
    "timestamp",
    "context",
    "event",
    "data",
    "page",
    "referer",
    "username",
    "ip",
    "host",
    "agent",
    "session",
    "event_source",
]
CONTEXT_FIELDS = ["course_id", "user_id", "path", "org_id", "module", "username", "referer", "agent"]
EVENT_FIELDS = [
    "problem_id",
    "id",
    "code",
    "currentTime",
    "old_time",
    "new_time",
    "speed",
    "attempts",
    "success",
    "grade",
    "max_grade",
    "course_id",
    "user_id",
    "usage_key",
    "module_id",
]


def deep(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


@st.composite
def hostile_lines(draw) -> bytes:
    """A tracking-line-shaped object with odd values anywhere, sometimes damaged."""
    doc = {f: draw(VALUES) for f in draw(st.lists(st.sampled_from(FIELDS), unique=True))}
    if draw(st.booleans()):
        doc["event_type"] = draw(st.sampled_from(["play_video", "problem_check", "/courses/c/x", "edx.x"]))
        doc["time"] = draw(st.one_of(st.just("2026-11-27T10:00:00.123456+00:00"), SCALARS))
    if draw(st.booleans()):
        doc["context"] = {f: draw(VALUES) for f in draw(st.lists(st.sampled_from(CONTEXT_FIELDS), unique=True))}
    if draw(st.booleans()):
        ev = {f: draw(VALUES) for f in draw(st.lists(st.sampled_from(EVENT_FIELDS), unique=True))}
        doc["event"] = json.dumps(ev) if draw(st.booleans()) else ev
    text = json.dumps(doc, allow_nan=True)
    damage = draw(st.sampled_from(["none", "none", "deep_event", "deep_string", "nul", "bad_utf8", "cut", "huge"]))
    if damage == "deep_event":
        text = text[:-1] + (", " if len(doc) else "") + f'"event": {deep(draw(st.integers(200, 3000)))}' + "}"
    elif damage == "deep_string":
        text = text[:-1] + (", " if len(doc) else "") + f'"event": "{deep(draw(st.integers(200, 1100)))}"' + "}"
    elif damage == "huge":
        text = text[:-1] + (", " if len(doc) else "") + '"agent": [1e400, 123456789012345678901234567890]}'
    raw = text.encode("utf-8")
    if damage == "nul":
        i = draw(st.integers(0, len(raw)))
        raw = raw[:i] + b"\x00" + raw[i:]
    elif damage == "bad_utf8":
        i = draw(st.integers(0, len(raw)))
        raw = raw[:i] + b"\xff\xc3" + raw[i:]
    elif damage == "cut":
        raw = raw[: draw(st.integers(0, len(raw)))]
    return raw.replace(b"\n", b" ")


def examples(n: int) -> list[bytes]:
    """``n`` lines drawn from the generator outside a property test."""
    gen = hostile_lines()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # .example() is meant for exploring, which this is
        return [gen.example() for _ in range(n)]


def store_in_process(line: bytes) -> None:
    """What the worker and the sinks do with one line, without the services."""
    record = parse_line(line, "fuzz.log", 7)
    encoded = encode(record)
    if record.__class__ is DeadLetter:
        assert record.reason
        rows.mysql_dead_letter_row(record)
        return
    assert decode_enriched(encoded) == record
    msg = Msg("t.enriched", 0, 1, b"[" + encoded + b"]", 1_700_000_000_000)
    decoded = rows.decode_events(msg)
    assert len(decoded) == 1
    got, _ = decoded[0]
    if got.__class__ is DeadLetter:  # a value no column holds: a dead letter saying so
        assert got.reason == "unstorable_value"
        rows.mysql_dead_letter_row(got)
        return
    rows.tsv_rows([rows.mysql_event_tuple(got)])
    rows.mysql_event_row(got)
    rows.clickhouse_event_row(got)
    rows.json_rows([msg.value])


@hsettings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_lines())
def test_every_generated_hostile_line_parses_encodes_and_makes_a_row(line):
    store_in_process(line)


def test_a_lone_surrogate_escape_is_stored_not_a_crash():
    line = (
        b'{"event_type":"play_video","time":"2026-11-27T10:00:00Z","page":"https://lms/x\\ud800",'
        b'"context":{"course_id":"course-v1:O+C+R","user_id":5},"event":"{\\"id\\":\\"v\\ud800\\"}"}'
    )
    record = parse_line(line)
    assert record.__class__ is EnrichedEvent
    assert record.page == "https://lms/x\ufffd"
    assert b"\\ud800" not in encode(record) and decode_enriched(encode(record)).course_id == "course-v1:O+C+R"
    store_in_process(line)


def test_nesting_too_deep_to_write_is_a_dead_letter_and_less_deep_is_stored_whole():
    for depth in (1000, 1020):  # orjson reads it, no JSON writer writes it back
        for event in (b'"' + deep(depth).encode() + b'"', deep(depth).encode()):
            record = parse_line(b'{"event_type":"x","time":"2026-11-27T10:00:00Z","event":' + event + b"}")
            assert record.__class__ is DeadLetter and record.reason == "unwritable"
    record = parse_line(b'{"event_type":"x","time":"2026-11-27T10:00:00Z","event":' + deep(600).encode() + b"}")
    assert record.__class__ is EnrichedEvent and record.payload == deep(600)
    line = b'{"event_type":"x","time":"2026-11-27T10:00:00Z","agent":' + deep(600).encode() + b', "n": 1e400}'
    store_in_process(line)


def _mysql_count(settings, table: str) -> int:
    conn = pymysql.connect(**settings.mysql)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_a_batch_of_hostile_lines_through_the_real_worker_and_sink_all_stored_or_dead_lettered(settings, tmp_path):
    from producer.backfill import backfill

    lines = examples(300)
    # a valid play_video line with a lone surrogate now and then (the case that crash-looped the worker)
    body = []
    for i, line in enumerate(lines):
        if i % 10 == 0:
            body.append(
                b'{"event_type":"play_video","time":"2026-11-27T10:00:%02dZ","page":"https://lms/x\\ud800",'
                b'"context":{"course_id":"course-v1:O+C+R","user_id":%d},"n":%d}' % (i % 60, i, i)
            )
        else:
            body.append(line)
    path = tmp_path / "tracking.log"
    path.write_bytes(b"\n".join(body) + b"\n")
    # every line is a row of its own (identical lines too: a line's identity is its file and offset)
    want_events, want_dead = [], []
    # the worker refuses times past its clock plus the allowed skew (time_out_of_range)
    latest = datetime.now(timezone.utc) + timedelta(seconds=settings.max_clock_skew_seconds)
    for line in body:
        if not line.strip(b" \t\r\n\x0b\x0c"):
            continue
        r = parse_line(line, latest=latest)
        (want_dead if r.__class__ is DeadLetter else want_events).append(line)

    migrate.migrate_mysql(settings)
    backfill(settings, [path], progress=False)
    log = tmp_path / "worker.log"
    proc = worker(settings, log=log)
    try:
        deadline = time.monotonic() + 150
        stored = dead = 0
        while time.monotonic() < deadline:
            mysql_sink.run(settings, max_idle_seconds=3.0)
            stored, dead = _mysql_count(settings, "events"), _mysql_count(settings, "dead_letters")
            if stored >= len(want_events) and dead >= len(want_dead):
                break
            assert proc.poll() is None, log.read_text()[-3000:]
        assert stored == len(want_events), log.read_text()[-3000:]
        assert dead == len(want_dead)
        assert "Traceback" not in log.read_text()
    finally:
        proc.send_signal(signal.SIGTERM)
    wait_exit(proc, 60, log)


SHAPES = {
    "surrogate": lambda line: b"\\ud" in line,
    "nul": lambda line: b"\x00" in line,
    "deep": lambda line: b"[[[[[[[[[[" in line,
    "bad_utf8": lambda line: b"\xff\xc3" in line,
    "huge": lambda line: b"1e400" in line or b"Infinity" in line,
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_generated_lines_cover_the_hostile_shapes(shape):
    """The generator makes what it claims (so the property test above sees each shape).

    ``find`` searches the generator itself, derandomized, so the answer does not depend on
    which few examples a run happens to draw."""
    line = find(hostile_lines(), SHAPES[shape], settings=hsettings(max_examples=5000, database=None, derandomize=True))
    assert SHAPES[shape](line)
