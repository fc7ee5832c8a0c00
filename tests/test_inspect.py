"""``edxstream inspect``: the event model over log files, run as the real command."""

from __future__ import annotations

import gzip
import subprocess

import orjson
import pytest

from .conftest import CORPUS, edxstream_cmd

LINES = [
    b'{"username": "ada", "event_type": "play_video", "event_source": "browser", "time": "2024-03-01T10:00:00+00:00",'
    b' "context": {"course_id": "course-v1:UniX+CS101+2024_T1", "user_id": 4},'
    b' "event": "{\\"id\\": \\"v1\\", \\"code\\": \\"yt\\", \\"currentTime\\": 1.5}"}',
    b"2023-05-23 13:53:13,495 INFO 20 [tracking] logger.py:41 - "
    b'{"name": "edx.user.login", "time": "2024-03-01T10:00:01+00:00", "context": {}}',
    b'{"event_type": "seq_next", "time": "2024-03-01T10:00:02"',  # truncated
    b"",
    b'{"event_type": "/courses/UniX/CS101/2024_T1/courseware/ch/seq/", "time": "2024-03-01T10:00:03Z"}',
    b'{"event_type": "seq_next", "username": "\xff", "time": "2024-03-01T10:00:04Z"}',
    b'{"username": "stub", "time": "2024-03-01T10:00:05Z"}',
]


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(edxstream_cmd("inspect", *args), input=stdin, capture_output=True, timeout=120)


@pytest.fixture
def log(tmp_path):
    path = tmp_path / "tracking.log"
    path.write_bytes(b"\n".join(LINES) + b"\n")
    return path


def test_json_summary(log):
    res = run(str(log), "--format", "json")
    assert res.returncode == 0, res.stderr
    s = orjson.loads(res.stdout)
    assert s["lines"] == 7 and s["parsed"] == 3 and s["dead_letter"] == 4
    assert s["dead_letter_reasons"] == {"not_json": 1, "empty": 1, "not_utf8": 1, "missing_event_type": 1}
    assert s["categories"] == {
        "access": 1,
        "content": 1,
        "video": 1,
        "forum": 0,
        "assessment": 0,
        "enrollment": 0,
        "other": 0,
    }
    assert s["kinds"] == {"learner": 3, "echo": 0, "plumbing": 0, "authoring": 0, "system": 0, "api": 0, "other": 0}
    assert s["actions"] == {
        "play_video": 1,
        "edx.user.login": 1,
        "/courses/{course_id}/courseware/{chapter}/{sequential}/": 1,
    }
    assert s["course_id_found"] == 2
    assert res.stderr == b""  # no progress bar when stderr is not a terminal


def test_jsonl_one_record_per_line_in_order(log):
    res = run(str(log), "--format", "jsonl")
    assert res.returncode == 0, res.stderr
    out = [orjson.loads(x) for x in res.stdout.splitlines()]
    assert len(out) == len(LINES)
    assert [o.get("dead_letter") for o in out] == [
        None,
        None,
        "not_json",
        "empty",
        None,
        "not_utf8",
        "missing_event_type",
    ]
    assert out[0]["category"] == "video" and out[0]["video_position"] == 1.5 and out[0]["user_id"] == 4
    assert out[4]["course_id"] == "course-v1:UniX+CS101+2024_T1" and out[4]["section_id"] == "ch"
    # offsets are byte offsets of each line in the file, the source is the path given
    offsets, pos = [], 0
    for raw in LINES:
        offsets.append(pos)
        pos += len(raw) + 1
    assert [o["offset"] for o in out] == offsets
    assert {o["source"] for o in out} == {str(log)}
    assert out[5]["raw_encoding"] == "base64"


def test_gzip_recognised_by_magic_bytes_not_name(log, tmp_path):
    packed = tmp_path / "rotated-no-suffix"
    packed.write_bytes(gzip.compress(log.read_bytes()))
    plain = orjson.loads(run(str(log), "--format", "json").stdout)
    zipped = orjson.loads(run(str(packed), "--format", "json").stdout)
    del plain["files"], zipped["files"]
    assert plain == zipped


def test_several_files_and_stdin(log):
    res = run(str(log), "-", "--format", "json", stdin=gzip.compress(log.read_bytes()))
    s = orjson.loads(res.stdout)
    assert s["lines"] == 14 and s["parsed"] == 6 and s["files"] == [str(log), "-"]


def test_table_output(log):
    res = run(str(log))
    assert res.returncode == 0, res.stderr
    text = res.stdout.decode()
    for word in ("lines", "parsed", "dead_letter", "not_json", "course_id_found", "video", "edx.user.login"):
        assert word in text


def test_final_line_without_newline_counts(tmp_path):
    path = tmp_path / "t.log"
    path.write_bytes(LINES[0] + b"\n" + LINES[1])
    s = orjson.loads(run(str(path), "--format", "json").stdout)
    assert s["lines"] == 2 and s["parsed"] == 2


def test_missing_file_is_a_user_error(tmp_path):
    res = run(str(tmp_path / "nope.log"))
    assert res.returncode == 2
    assert b"no such file" in res.stderr and b"Traceback" not in res.stderr


def test_corpus_acceptance_figures():
    pub = orjson.loads(run(str(CORPUS / "public-tracking.log"), "--format", "json").stdout)
    assert (pub["lines"], pub["parsed"], pub["dead_letter"]) == (2761, 2761, 0)
    assert pub["course_id_found"] >= 2000
    odd = orjson.loads(run(str(CORPUS / "odd-and-malformed.log"), "--format", "json").stdout)
    assert odd["lines"] == 57 and odd["parsed"] + odd["dead_letter"] == 57
    assert sum(odd["dead_letter_reasons"].values()) == odd["dead_letter"]
