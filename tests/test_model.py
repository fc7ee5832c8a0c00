"""The event model on hand-written lines, one test per quirk of real tracking logs."""

from __future__ import annotations

import base64
import json
import math
from datetime import datetime, timezone

import orjson
import pytest

from edxstream.core import records
from edxstream.core.model import (
    CATEGORIES,
    UNKNOWN_TIME,
    DeadLetter,
    EnrichedEvent,
    course_key_parts,
    decode_payload,
    line_id,
    normalize_course_id,
    parse_line,
    parse_time,
)

UTC = timezone.utc
COURSE = "course-v1:UniX+CS101+2024_T1"
PROBLEM = "block-v1:UniX+CS101+2024_T1+type@problem+block@0f1e2d3c4b5a69788796a5b4c3d2e1f0"
VIDEO = "block-v1:UniX+CS101+2024_T1+type@video+block@aa11bb22cc33dd44ee55ff6677889900"


def line(**fields) -> bytes:
    doc = {
        "username": "ada",
        "event_source": "server",
        "time": "2024-03-01T10:00:00.123456+00:00",
        "context": {"course_id": COURSE, "user_id": 42, "org_id": "UniX"},
    }
    doc.update(fields)
    return orjson.dumps({k: v for k, v in doc.items() if v is not _DROP})


_DROP = object()


def ok(raw: bytes, **kw) -> EnrichedEvent:
    rec = parse_line(raw, **kw)
    assert isinstance(rec, EnrichedEvent), rec
    return rec


def dead(raw: bytes, **kw) -> DeadLetter:
    rec = parse_line(raw, **kw)
    assert isinstance(rec, DeadLetter), rec
    return rec


# --- the line itself --------------------------------------------------------------------


def test_plain_line_parses_into_typed_record():
    rec = ok(
        line(event_type="edx.course.enrollment.activated", event={"course_id": COURSE, "user_id": 42, "mode": "audit"}),
        source="/var/log/tracking.log",
        offset=1234,
    )
    assert rec.time == datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert rec.category == "enrollment"
    assert (rec.kind, rec.interaction) == ("learner", "enrolled")
    assert rec.action == "edx.course.enrollment.activated"
    assert rec.course_id == COURSE and (rec.org, rec.course, rec.run) == ("UniX", "CS101", "2024_T1")
    assert rec.user_id == 42 and rec.username == "ada"
    assert orjson.loads(rec.payload) == {"course_id": COURSE, "user_id": 42, "mode": "audit"}
    assert (rec.source, rec.offset) == ("/var/log/tracking.log", 1234)
    assert len(rec.event_id) == 32 and int(rec.event_id, 16) >= 0


def test_logger_prefix_is_skipped_and_id_matches_the_bare_line():
    bare = line(event_type="edx.grades.course.grade_calculated", event={"percent_grade": 1.0})
    prefixed = b"2023-05-23 13:53:13,495 INFO 20 [tracking] [user 4] [ip 1.2.3.4] logger.py:41 - " + bare
    a, b = ok(bare), ok(prefixed)
    assert a.event_id == b.event_id == line_id(bare)
    assert a == b
    assert b.category == "assessment"


def test_trailing_newline_and_carriage_return_do_not_change_the_id():
    bare = line(event_type="page_close", event="")
    ids = {ok(v).event_id for v in (bare, bare + b"\n", bare + b"\r\n", b"  " + bare + b" \r\n")}
    assert len(ids) == 1


def test_parse_is_deterministic_and_distinct_lines_get_distinct_ids():
    raw = line(event_type="play_video", event={"id": "x", "currentTime": 3})
    assert parse_line(raw, "f", 1) == parse_line(raw, "f", 1)
    other = line(event_type="play_video", event={"id": "x", "currentTime": 4})
    assert ok(raw).event_id != ok(other).event_id


def test_record_round_trips_through_the_wire_format():
    rec = ok(line(event_type="problem_check", event={"problem_id": PROBLEM, "success": "correct"}))
    assert records.decode_enriched(records.encode(rec)) == rec


# --- the event payload ---------------------------------------------------------------------


def test_event_as_json_encoded_string_is_decoded():
    rec = ok(line(event_type="/courses/course-v1:UniX+CS101+2024_T1/info", event='{"POST": {}, "GET": {"a": ["1"]}}'))
    assert orjson.loads(rec.payload) == {"POST": {}, "GET": {"a": ["1"]}}


def test_event_as_list_problem_graded():
    answers = "input_i4x-UniX-CS101-problem-abc123_2_1=choice_1"
    rec = ok(line(event_type="problem_graded", event_source="browser", event=[answers, "<div>html</div>"]))
    assert orjson.loads(rec.payload) == [answers, "<div>html</div>"]
    assert rec.category == "assessment"
    assert rec.problem_id == "i4x://UniX/CS101/problem/abc123" == rec.block_id


def test_event_as_url_encoded_query_string_browser_problem_check():
    key = "input_block-v1:UniX+CS101+2024_T1+type@problem+block@p1_2_1"
    query = (
        "input_block-v1%3AUniX%2BCS101%2B2024_T1%2Btype%40problem%2Bblock%40p1_2_1=42&"
        "input_block-v1%3AUniX%2BCS101%2B2024_T1%2Btype%40problem%2Bblock%40p1_3_1%5B%5D=a&"
        "input_block-v1%3AUniX%2BCS101%2B2024_T1%2Btype%40problem%2Bblock%40p1_3_1%5B%5D=b"
    )
    rec = ok(line(event_type="problem_check", event_source="browser", event=query))
    payload = orjson.loads(rec.payload)
    assert payload[key] == "42"
    assert payload["input_block-v1:UniX+CS101+2024_T1+type@problem+block@p1_3_1[]"] == ["a", "b"]
    assert rec.problem_id == "block-v1:UniX+CS101+2024_T1+type@problem+block@p1"


def test_truncated_json_string_is_kept_as_text():
    text = '{"id": "i4x-UniX-CS101-video-v1", "code": "abc", "currentTi'
    rec = ok(line(event_type="play_video", event_source="browser", event=text))
    assert rec.payload == text
    assert rec.category == "video" and rec.video_position is None


def test_missing_event_gives_empty_payload():
    rec = ok(line(event_type="edx.user.logout"))
    assert rec.payload == ""
    assert rec.category == "access"


def test_data_instead_of_event():
    rec = ok(
        line(
            name="edx.grades.problem.submitted",
            event_type="edx.grades.problem.submitted",
            data={"problem_id": PROBLEM, "weighted_earned": 1, "weighted_possible": 2},
        )
    )
    assert orjson.loads(rec.payload)["problem_id"] == PROBLEM
    assert rec.problem_id == PROBLEM and (rec.grade, rec.max_grade) == (1.0, 2.0)


def test_decode_payload_helper():
    assert decode_payload(None) == (None, "")
    assert decode_payload("plain words") == ("plain words", "plain words")
    assert decode_payload('["a", 1]') == (["a", 1], '["a",1]')
    assert decode_payload("a=1&a=2&b=") == ({"a": ["1", "2"], "b": ""}, '{"a":["1","2"],"b":""}')
    assert decode_payload(7) == (7, "7")


# --- context and time -----------------------------------------------------------------------


def test_missing_context():
    rec = ok(line(event_type="edx.forum.thread.created", context=_DROP, event={"course_id": COURSE}))
    assert rec.course_id == COURSE and rec.user_id is None and rec.category == "forum"


@pytest.mark.parametrize("ctx", ["not an object", ["a", "list"], 17, None])
def test_context_that_is_not_an_object(ctx):
    rec = ok(line(event_type="edx.forum.searched", context=ctx))
    assert rec.course_id is None and rec.category == "forum"


def test_context_given_as_json_string_is_read():
    rec = ok(line(event_type="edx.forum.searched", context=orjson.dumps({"course_id": COURSE}).decode()))
    assert rec.course_id == COURSE


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2013-06-08T23:29:58.346222", datetime(2013, 6, 8, 23, 29, 58, 346222, tzinfo=UTC)),  # no zone
        ("2013-06-08T23:29:58", datetime(2013, 6, 8, 23, 29, 58, tzinfo=UTC)),
        ("2015-04-14T19:42:52.237Z", datetime(2015, 4, 14, 19, 42, 52, 237000, tzinfo=UTC)),
        ("2015-04-14T20:42:49+0100", datetime(2015, 4, 14, 19, 42, 49, tzinfo=UTC)),
        ("2015-04-14T20:42:49.1234567+01:00", datetime(2015, 4, 14, 19, 42, 49, 123456, tzinfo=UTC)),
        ("2023-05-12 20:55:53.096285+00:00", datetime(2023, 5, 12, 20, 55, 53, 96285, tzinfo=UTC)),
        (1428, None),  # too small to be a real epoch? still a time: 1970 + 1428 s
    ],
)
def test_parse_time_variants(value, expected):
    got = parse_time(value)
    if expected is None:
        assert got == datetime(1970, 1, 1, 0, 23, 48, tzinfo=UTC)
    else:
        assert got == expected and got.tzinfo is UTC


def test_time_without_zone_is_utc_in_the_record():
    rec = ok(line(event_type="seq_goto", time="2013-06-08T23:29:58.346222"))
    assert rec.time.utcoffset().total_seconds() == 0 and rec.time.hour == 23


def test_epoch_milliseconds():
    assert parse_time(1700000000123) == datetime(2023, 11, 14, 22, 13, 20, 123000, tzinfo=UTC)


def test_timestamp_used_when_time_is_missing_and_unknown_time_otherwise():
    a = ok(line(event_type="seq_next", time=_DROP, timestamp="2023-05-23T14:12:19.620891+00:00"))
    assert a.time == datetime(2023, 5, 23, 14, 12, 19, 620891, tzinfo=UTC)
    b = ok(line(event_type="seq_next", time=_DROP))
    assert b.time == UNKNOWN_TIME


# --- dead letters -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, reason",
    [
        (b'{"event_type": "seq_next", "time": "2024-01-01T00:00:00"', "not_json"),  # truncated
        (b"this is not json at all", "not_json"),
        (b'2023-05-23 13:53:13,495 INFO logger.py:41 - {"name": "x", "context": "a": 1}', "not_json"),
        (b'["event_type", "time"]', "not_object"),
        (b'"just a string"', "not_object"),
        (b"42", "not_object"),
        (b'{"username": "ada", "time": "2017-07-20T17:09:59.941616+00:00"}', "missing_event_type"),
        (b'{"event_type": "", "time": "2017-07-20T17:09:59+00:00"}', "missing_event_type"),
        (b'{"event_type": 12, "time": "2017-07-20T17:09:59+00:00"}', "missing_event_type"),
        (b'{"event_type": "seq_next", "time": "{{ start_date }}T17:09:59.941616+00:00"}', "bad_time"),
        (b'{"event_type": "seq_next", "time": ["2017"]}', "bad_time"),
        (b"", "empty"),
        (b"   \r\n", "empty"),
    ],
)
def test_dead_letters_carry_a_reason(raw, reason):
    rec = dead(raw, source="t.log", offset=99)
    assert rec.reason == reason
    assert rec.detail
    assert (rec.source, rec.offset, rec.stage) == ("t.log", 99, "parse")
    assert rec.raw == raw.strip().decode() and rec.raw_encoding == "utf-8"
    assert rec.dead_letter_id == line_id(raw.strip())
    assert records.decode_dead_letter(records.encode(rec)) == rec


def test_not_utf8_line_is_kept_as_base64():
    raw = b'{"event_type": "seq_next", "username": "\xff\xfe", "time": "2024-01-01T00:00:00"}'
    rec = dead(raw)
    assert rec.reason == "not_utf8" and rec.raw_encoding == "base64"
    assert base64.b64decode(rec.raw) == raw


def test_segment_shaped_event_is_dead_lettered_with_a_hint():
    raw = orjson.dumps(
        {"messageId": "m1", "type": "track", "event": "Loaded Video", "timestamp": "2015-04-14T19:42:52.237Z"}
    )
    rec = dead(raw)
    assert rec.reason == "missing_event_type" and "Segment" in rec.detail


def test_name_without_event_type_is_enough():
    rec = ok(b'{"name": "edx.video.played", "time": "2024-01-01T00:00:00Z", "event": {"currentTime": 2.5}}')
    assert rec.event_type == "edx.video.played" and rec.category == "video" and rec.video_position == 2.5


# --- course ids ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("course-v1:UniX+CS101+2024_T1", "course-v1:UniX+CS101+2024_T1"),
        ("UniX/CS101/2024_T1", "course-v1:UniX+CS101+2024_T1"),
        ("ccx-v1:UniX+CS101+2024_T1+ccx@7", "ccx-v1:UniX+CS101+2024_T1+ccx@7"),
        ("course-v1%3AUniX%2BCS101%2B2024_T1", "course-v1:UniX+CS101+2024_T1"),
        ("block-v1:UniX+CS101+2024_T1+type@problem+block@p1", "course-v1:UniX+CS101+2024_T1"),
        ("", None),
        ("not a course", None),
        ("UniX/CS101", None),
        ("i4x://UniX/CS101/problem/p1", None),
    ],
)
def test_normalize_course_id(value, expected):
    assert normalize_course_id(value) == expected


def test_course_key_parts():
    assert course_key_parts("UniX/CS101/2024_T1") == ("UniX", "CS101", "2024_T1")
    assert course_key_parts("ccx-v1:UniX+CS101+2024_T1+ccx@7") == ("UniX", "CS101", "2024_T1")
    assert course_key_parts(None) == (None, None, None)
    assert course_key_parts("junk") == (None, None, None)


def test_old_slash_course_id_in_context_is_normalised():
    rec = ok(line(event_type="seq_goto", context={"course_id": "UniX/CS101/2024_T1"}))
    assert rec.course_id == COURSE and rec.run == "2024_T1"


def test_ccx_course_keeps_its_form_with_parts_filled():
    rec = ok(line(event_type="edx.bookmark.added", context={"course_id": "ccx-v1:UniX+CS101+2024_T1+ccx@7"}))
    assert rec.course_id == "ccx-v1:UniX+CS101+2024_T1+ccx@7"
    assert (rec.org, rec.course, rec.run) == ("UniX", "CS101", "2024_T1")


def test_unrecognised_context_course_id_is_no_course():
    """A malformed id would otherwise become a course of its own in every count."""
    rec = ok(line(event_type="seq_goto", context={"course_id": "weird-course-key"}))
    assert rec.course_id is None and rec.org is None


def test_course_id_only_in_event_type_url():
    rec = ok(line(event_type="/courses/UniX/CS101/2024_T1/courseware/ch1/seq1/", context={}))
    assert rec.course_id == COURSE
    assert rec.action == "/courses/{course_id}/courseware/{chapter}/{sequential}/"
    assert (rec.section_id, rec.subsection_id) == ("ch1", "seq1")
    assert rec.category == "content"


def test_course_id_percent_encoded_in_page_url():
    page = "https://lms.example.org/courses/course-v1%3AUniX%2BCS101%2B2024_T1/courseware/a/b/?x=1"
    rec = ok(line(event_type="page_close", event_source="browser", context={}, page=page, event=""))
    assert rec.course_id == COURSE and rec.page == page
    assert (rec.section_id, rec.subsection_id) == ("a", "b")


def test_course_id_only_in_referer():
    ref = "https://lms.example.org/courses/course-v1:UniX+CS101+2024_T1/course/"
    rec = ok(line(event_type="edx.course.tool.accessed", context={}, referer=ref))
    assert rec.course_id == COURSE and rec.referer == ref


def test_course_id_only_in_context_path():
    rec = ok(
        line(
            event_type="edx.ui.lms.link_clicked",
            context={"path": "/courses/course-v1:UniX+CS101+2024_T1/jump_to/" + PROBLEM},
        )
    )
    assert rec.course_id == COURSE and rec.block_id == PROBLEM


def test_context_course_id_wins_over_urls():
    rec = ok(line(event_type="/courses/Other/X/1/info", context={"course_id": COURSE}))
    assert rec.course_id == COURSE


# --- blocks, users, video, problems ------------------------------------------------------


def test_xblock_handler_url_gives_block_and_route():
    url = f"/courses/{COURSE}/xblock/{PROBLEM}/handler/xmodule_handler/problem_check"
    rec = ok(line(event_type=url, event='{"POST": {}, "GET": {}}'))
    assert rec.block_id == PROBLEM
    assert rec.action == "/courses/{course_id}/xblock/{usage_id}/handler/xmodule_handler/problem_check"
    assert rec.category == "assessment"


def test_old_i4x_xblock_url_form():
    url = "/courses/UniX/CS101/2024_T1/xblock/i4x:;_;_UniX;_CS101;_video;_v1/handler/xmodule_handler/save_user_state"
    rec = ok(line(event_type=url, context={}))
    assert rec.block_id == "i4x://UniX/CS101/video/v1"
    assert rec.course_id == COURSE and rec.category == "video"


def test_modx_url_with_i4x_key():
    url = "/courses/UniX/CS101/2024_T1/modx/i4x://UniX/CS101/problem/p9/problem_get"
    rec = ok(line(event_type=url))
    assert rec.block_id == "i4x://UniX/CS101/problem/p9"
    assert rec.action == "/courses/{course_id}/modx/{usage_id}/problem_get"


def test_context_module_usage_key():
    rec = ok(
        line(
            event_type="edx.grades.subsection.grade_calculated",
            context={"course_id": COURSE, "module": {"usage_key": PROBLEM}},
        )
    )
    assert rec.block_id == PROBLEM


def test_user_id_digit_string_and_empty_username():
    rec = ok(line(event_type="seq_next", username="", context={"course_id": COURSE, "user_id": "17", "username": ""}))
    assert rec.user_id == 17 and rec.username is None
    rec = ok(line(event_type="seq_next", username=_DROP, context={"user_id": "", "username": "bob"}))
    assert rec.user_id is None and rec.username == "bob"
    rec = ok(line(event_type="seq_next", context={"user_id": None}))
    assert rec.user_id is None


def test_request_fields():
    rec = ok(
        line(
            event_type="seq_next",
            session="s1",
            ip="10.0.0.1",
            agent="UA/1.0",
            host="lms.example.org",
            page="https://lms.example.org/x",
            referer="https://lms.example.org/y",
        )
    )
    assert (rec.session, rec.ip, rec.agent, rec.host) == ("s1", "10.0.0.1", "UA/1.0", "lms.example.org")
    assert (rec.page, rec.referer, rec.event_source) == (
        "https://lms.example.org/x",
        "https://lms.example.org/y",
        "server",
    )


def test_video_play_and_seek_and_speed():
    play = ok(
        line(
            event_type="play_video",
            event_source="browser",
            event=orjson.dumps({"id": "i4x-UniX-CS101-video-v1", "code": "yt123", "currentTime": 12.5}).decode(),
        )
    )
    assert (play.video_id, play.video_code, play.video_position) == ("i4x-UniX-CS101-video-v1", "yt123", 12.5)
    assert play.block_id == "i4x://UniX/CS101/video/v1"
    seek = ok(
        line(event_type="seek_video", event={"id": "v", "old_time": 38.9, "new_time": 147, "type": "onSlideSeek"})
    )
    assert (seek.video_old_time, seek.video_new_time) == (38.9, 147.0)
    speed = ok(
        line(
            event_type="speed_change_video",
            event={
                "id": "aa11bb22cc33dd44ee55ff6677889900",
                "current_time": 5.1,
                "old_speed": "1.0",
                "new_speed": "0.75",
            },
        )
    )
    assert (speed.video_speed, speed.video_position) == (0.75, 5.1)
    assert speed.block_id == VIDEO
    new_style = ok(line(event_type="edx.video.closed_captions.shown", event={"id": "v", "current_time": 3}))
    assert new_style.category == "video" and new_style.video_position == 3.0


def test_server_problem_check_fields():
    rec = ok(
        line(
            event_type="problem_check",
            event={
                "problem_id": PROBLEM,
                "attempts": 2,
                "success": "incorrect",
                "grade": 1,
                "max_grade": 3,
                "answers": {},
                "state": {},
            },
        )
    )
    assert (rec.problem_id, rec.block_id) == (PROBLEM, PROBLEM)
    assert (rec.attempts, rec.success, rec.grade, rec.max_grade) == (2, False, 1.0, 3.0)
    assert rec.course_id == COURSE
    correct = ok(line(event_type="problem_check", event={"problem_id": PROBLEM, "success": "correct"}))
    assert correct.success is True


def test_video_fields_stay_empty_on_other_categories():
    rec = ok(line(event_type="edx.forum.thread.created", event={"id": "t1", "currentTime": 3, "attempts": 9}))
    assert rec.video_id is None and rec.video_position is None and rec.attempts is None


def test_categories_constant():
    assert CATEGORIES == ("access", "content", "video", "forum", "assessment", "enrollment", "other")


# --- robustness: any value in any field -----------------------------------------------------

_ODD_VALUES = [
    None,
    "",
    " ",
    0,
    -1,
    2**70,
    1.5e308,
    True,
    [],
    {},
    ["x"],
    {"a": {"b": 1}},
    "/",
    "//",
    "%",
    "%ZZ",
    "/courses/",
    "/courses/a",
    "course-v1:",
    "block-v1:",
    "i4x://",
    "i4x:;_;_",
    "ccx-v1:+",
    "\u200b",
    "a=b",
    "=",
    "{",
    "[",
    "{{ x }}",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00+14:00",
]
_FIELDS = [
    "event_type",
    "name",
    "time",
    "timestamp",
    "context",
    "event",
    "data",
    "username",
    "page",
    "referer",
    "agent",
    "ip",
    "host",
    "session",
    "event_source",
]


@pytest.mark.parametrize("field", _FIELDS)
def test_any_value_in_any_field_never_raises(field):
    base = {
        "event_type": "problem_check",
        "time": "2024-01-01T00:00:00Z",
        "context": {"course_id": COURSE, "user_id": 1, "path": "/x", "module": {"usage_key": PROBLEM}},
        "event": {"problem_id": PROBLEM, "id": "v", "currentTime": 1},
    }
    for et in ("problem_check", "play_video", "/courses/x/y/z/courseware/a/", "edx.forum.thread.created"):
        for value in _ODD_VALUES:
            for where in ("top", "context", "event"):
                doc = orjson.loads(orjson.dumps(base))
                doc["event_type"] = et
                if where == "top":
                    doc[field] = value
                else:
                    doc[where][field] = value
                    doc[where]["course_id" if where == "context" else "problem_id"] = value
                rec = parse_line(json.dumps(doc).encode())
                assert isinstance(rec, (EnrichedEvent, DeadLetter))
                wire = records.encode(rec)
                decode = records.decode_enriched if isinstance(rec, EnrichedEvent) else records.decode_dead_letter
                assert decode(wire) == rec


def test_big_integers_and_nan_are_read_not_dead_lettered():
    raw = (
        b'{"event_type": "problem_check", "time": "2024-01-01T00:00:00Z", '
        b'"context": {"user_id": 123456789012345678901234},'
        b' "event": {"problem_id": "p", "attempts": 99999999999999999999999, "grade": NaN, "max_grade": 2}}'
    )
    rec = ok(raw)
    assert rec.user_id is None and rec.attempts is None  # beyond BIGINT: not a usable id/count
    assert rec.grade is None and rec.max_grade == 2.0
    assert "99999999999999999999999" in rec.payload
    assert not math.isnan(rec.max_grade)


def test_truncated_lines_never_raise():
    raw = line(
        event_type="/courses/course-v1:UniX+CS101+2024_T1/xblock/" + PROBLEM + "/handler/x",
        event={"answers": {"a": [1, 2]}, "success": "correct"},
        page="https://h/courses/UniX/CS101/2024_T1/courseware/a/b/",
    )
    for cut in range(len(raw) + 1):
        rec = parse_line(raw[:cut])
        assert isinstance(rec, (EnrichedEvent, DeadLetter))
        assert isinstance(rec, EnrichedEvent) == (cut == len(raw))


def test_action_prefers_the_canonical_name_over_the_legacy_event_type():
    rec = ok(line(event_type="video_hide_cc_menu", name="edx.video.language_menu.hidden", event={"id": "v"}))
    assert rec.action == "edx.video.language_menu.hidden" and rec.event_type == "video_hide_cc_menu"
    assert rec.category == "video"


def test_problem_id_from_the_block_of_a_problem_handler():
    url = f"/courses/{COURSE}/xblock/{PROBLEM}/handler/xmodule_handler/problem_check"
    rec = ok(line(event_type=url, event='{"POST": {}, "GET": {}}'))
    assert rec.problem_id == PROBLEM
    graded = ok(
        line(
            event_type="problem_graded",
            event=["no answers here", "<p/>"],
            context={"course_id": COURSE, "module": {"usage_key": PROBLEM}},
        )
    )
    assert graded.block_id == PROBLEM == graded.problem_id


# --- identity, time range, course ids (counts that equal the events) -------------------


def test_a_shipped_line_is_identified_by_fingerprint_and_offset():
    from edxstream.core.model import event_identity

    raw = line(event_type="play_video")
    a = ok(raw, source="/log", offset=0, fingerprint="00ff00ff00ff00ff")
    b = ok(raw, source="/log", offset=len(raw) + 1, fingerprint="00ff00ff00ff00ff")
    # identical lines at different offsets are distinct events; the same line is one
    assert a.event_id == "00ff00ff00ff00ff-000000000000" == event_identity("00ff00ff00ff00ff", 0)
    assert b.event_id != a.event_id
    assert ok(raw, offset=0, fingerprint="00ff00ff00ff00ff").event_id == a.event_id
    # a file's ids sort in file order (the unique index grows at its end)
    ids = [event_identity("ab" * 8, o) for o in (0, 9, 10, 4096, 2**40)]
    assert ids == sorted(ids)
    # broken lines too: every malformed line has its own dead letter
    assert dead(b"{broken", offset=5, fingerprint="ab" * 8).dead_letter_id == event_identity("ab" * 8, 5)
    assert (
        dead(b"{broken", offset=6, fingerprint="ab" * 8).dead_letter_id
        != dead(b"{broken", offset=5, fingerprint="ab" * 8).dead_letter_id
    )
    # without a source identity (another shipper's single-line record): the content
    assert ok(raw).event_id == ok(raw, source="/x", offset=3).event_id == line_id(raw)


def test_times_outside_the_sane_range_are_dead_letters_never_clamped():
    latest = datetime(2024, 3, 2, tzinfo=UTC)
    for t in ("0001-01-01T00:00:00+00:00", "2011-12-31T23:59:59+00:00", "1970-01-01T00:00:00+00:00"):
        d = dead(line(event_type="play_video", time=t), latest=latest)
        assert d.reason == "time_out_of_range" and "before 2012-01-01" in d.detail
    d = dead(line(event_type="play_video", time="9999-12-31T23:59:59"), latest=latest)
    assert d.reason == "time_out_of_range" and "after 2024-03-02" in d.detail
    assert ok(line(event_type="play_video", time="2024-03-02T00:00:00+00:00"), latest=latest)
    assert ok(line(event_type="play_video", time="2012-01-01T00:00:00+00:00"), latest=latest)
    # without a caller's clock only the lower bound applies (the model has no clock)
    assert ok(line(event_type="play_video", time="9999-12-31T23:59:59")).time.year == 9999
    # a line without a time is not out of range: it keeps the UNKNOWN_TIME mark
    assert ok(line(event_type="play_video", time=_DROP), latest=latest).time is UNKNOWN_TIME


def test_course_ids_are_decoded_cut_and_validated():
    cases = {
        "course-v1%3AOrg%2BC1%2B2017/courseware/abc": "course-v1:Org+C1+2017",
        "course-v1:Org+C1+2017?x=1": "course-v1:Org+C1+2017",
        "course-v1:Org+C1+2017+branch@draft": "course-v1:Org+C1+2017",
        "Org/C1/2017": "course-v1:Org+C1+2017",
        "course-v1:Org+C1\u2026": None,  # cut by a copy-paste: two parts
        "course-v1:Org+C\u2026+2017": None,  # a literal ellipsis is no key character
        "course-v1:Org++2017": None,
        "course-v1:Org+C1+" + "x" * 300: None,  # longer than any course id the sinks index
        "not a course": None,
    }
    for value, want in cases.items():
        assert normalize_course_id(value) == want, value
    # a malformed context course id leaves the event without a course (not a course of
    # its own); a well-formed one elsewhere in the event still counts
    rec = ok(line(event_type="play_video", context={"course_id": "https://x/courses/\u2026", "user_id": 1}))
    assert rec.course_id is None
    rec = ok(
        line(
            event_type="/courses/course-v1:Org+C1+2017/courseware/abc/",
            context={"course_id": "course-v1%3AOrg%2BC1%2B2017/courseware/abc", "user_id": 1},
        )
    )
    assert rec.course_id == "course-v1:Org+C1+2017"
    # what the stream app counts as a rejected course id
    from edxstream.core.model import rejected_course_id

    junk = line(event_type="play_video", context={"course_id": "https://x/courses/\u2026"})
    assert rejected_course_id(junk) == "https://x/courses/\u2026"
    assert rejected_course_id(b"tracking INFO - " + junk) == "https://x/courses/\u2026"
    assert rejected_course_id(line(event_type="play_video")) is None  # a good one
    assert rejected_course_id(line(event_type="play_video", context={"course_id": ""})) is None
    assert rejected_course_id(b"{broken course_id") is None


def test_a_long_action_is_kept_whole():
    url = "/courses/course-v1:Org+C1+2017/courseware/" + "abc/" * 80
    rec = ok(line(event_type=url, event_source="server", context={"course_id": "course-v1:Org+C1+2017"}))
    assert rec.course_id == "course-v1:Org+C1+2017" and len(rec.event_type) == len(url)
    assert len(rec.action) > 255


def test_a_number_no_column_can_hold_is_null_with_a_note_and_kept_in_the_payload():
    # a problem_check whose payload (a JSON string, as the browser logs it) has a grade
    # of 1e400: the grade column cannot hold it, so it is null, and the note says so
    rec = ok(
        line(
            event_type="problem_check",
            event_source="browser",
            event=f'{{"problem_id": "{PROBLEM}", "grade": 1e400, "max_grade": 2, "attempts": {10**29}}}',
        )
    )
    assert rec.grade is None and rec.attempts is None and rec.max_grade == 2.0
    assert rec.notes == "attempts: not a usable number; grade: not a usable number"
    assert "1e400" in rec.payload and str(10**29) in rec.payload
    assert rec.problem_id == PROBLEM  # the rest of the payload is read as usual

    # a video event whose position is text: the same
    rec = ok(line(event_type="play_video", event_source="browser", event={"id": "v1", "currentTime": "abc"}))
    assert rec.video_position is None and rec.notes == "video_position: not a usable number"
    # absent or empty values are not unusable ones: no note
    rec = ok(line(event_type="play_video", event_source="browser", event={"id": "v1", "currentTime": ""}))
    assert rec.notes == ""
    rec = ok(line(event_type="problem_check", event={"problem_id": PROBLEM, "grade": 1, "max_grade": 2}))
    assert rec.grade == 1.0 and rec.notes == ""
