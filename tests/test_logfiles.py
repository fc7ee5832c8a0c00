"""The one log reader (edxstream.core.logfiles) and the commands on it: truncated and
unreadable files, folders holding other files, gzip by magic bytes, and lines longer
than the limit, through backfill, ship and inspect against the real broker."""

from __future__ import annotations

import gzip
import json
import os
import socket
import subprocess
import time
import tracemalloc
import zlib

import pytest

from edxstream.core import logfiles
from edxstream.core.records import decode_dead_letter
from tests.conftest import edxstream_cmd, env_for
from tests.test_ship_follow import Running, wait_for
from tests.ship_helpers import file_lines, make_line, read_topic, write_lines

LIMIT = 1_000_000


def _truncated_gz(path, lines: list[bytes], keep: float = 0.6) -> int:
    """A .gz cut at ``keep`` of its size (a copy interrupted mid-way); returns how many
    whole lines zcat recovers from it."""
    data = gzip.compress(b"".join(line + b"\n" for line in lines))
    path.write_bytes(data[: int(len(data) * keep)])
    d = zlib.decompressobj(wbits=31)
    recovered = d.decompress(path.read_bytes())
    return recovered.count(b"\n")


def test_lines_cuts_an_overlong_line_in_bounded_memory_and_keeps_the_rest_exact():
    lines = logfiles.Lines(limit=1000, pos=0)
    out = lines.feed(b"a\nbb\nccc")  # a partial line is held
    assert out == [(0, b"a\nbb\n")] and lines.read_to == 8
    out = lines.feed(b"c" * 600)
    assert out == []
    out = lines.feed(b"c" * 600)  # now longer than the limit: cut off, its head kept
    assert out == [] and lines._parts == []
    out = lines.feed(b"c" * 5000 + b"\nnext\n")
    [long, (off, block)] = out
    assert (long.offset, long.length, long.head) == (5, 3 + 1200 + 5000, b"c" * 1203)
    assert (off, block) == (5 + 6203 + 1, b"next\n")
    assert lines.feed(b"tail") == [] and lines.finish() == [(off + 5, b"tail")]


def test_a_200_mb_line_without_newline_streams_in_bounded_memory():
    """The shipper held the whole line and re-joined it on every read (quadratic time,
    memory growing with the line): now it keeps at most the limit."""
    lines = logfiles.Lines(limit=LIMIT, pos=0)
    chunk = b"x" * logfiles.CHUNK
    tracemalloc.start()
    try:
        for _ in range(200):
            assert lines.feed(chunk) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * LIMIT  # the line is 200 MB; the reader never held more than ~the limit
    [long] = lines.feed(b"\n")
    assert long.length == 200 * logfiles.CHUNK and long.offset == 0 and len(long.head) == logfiles.HEAD_BYTES


def test_gzip_is_decided_by_magic_bytes_and_folders_expand_to_tracking_logs(tmp_path):
    (tmp_path / "tracking.log").write_bytes(b"a\n")
    (tmp_path / "tracking.log.1").write_bytes(b"b\n")
    (tmp_path / "tracking.log-20170920.gz").write_bytes(gzip.compress(b"c\n"))
    (tmp_path / "tracking.log.3.gz").write_bytes(b"plain after all\n")  # not compressed, whatever its name
    (tmp_path / "tracking.log-20170921-1505883601.gz").write_bytes(gzip.compress(b"d\n"))
    for other in ("manifest.json", "README.md", "tracking.log.swp", ".tracking.log.2"):
        (tmp_path / other).write_bytes(b'{"not": "a log"}\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "tracking.log").write_bytes(b"nested\n")
    pattern = r"tracking\.log([.-][0-9]+)*(\.gz)?"
    got = logfiles.expand([tmp_path], pattern)
    assert sorted(p.name for p in got) == [
        "tracking.log",
        "tracking.log-20170920.gz",
        "tracking.log-20170921-1505883601.gz",
        "tracking.log.1",
        "tracking.log.3.gz",
    ]
    texts = {}
    for p in got:
        f = logfiles.open_log(p)
        try:
            texts[p.name] = [line for _, line in logfiles.iter_lines(f, LIMIT)]
        finally:
            logfiles.close_log(f)
    assert texts["tracking.log.3.gz"] == [b"plain after all"] and texts["tracking.log-20170920.gz"] == [b"c"]
    with pytest.raises(logfiles.UnreadableLog, match="does not exist"):
        logfiles.expand([tmp_path / "nope"], pattern)


def test_backfill_ships_what_a_truncated_gz_holds_and_leaves_foreign_files_of_a_folder_alone(settings, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    good = [make_line(i, tag="good") for i in range(300)]
    write_lines(logs / "tracking.log.1", good, mode="wb")
    cut = [make_line(i, tag="cut") for i in range(3000)]
    recovered = _truncated_gz(logs / "tracking.log-20240301.gz", cut)
    assert 0 < recovered < len(cut)
    (logs / "manifest.json").write_text(json.dumps({"files": 3}))
    env = env_for(settings)
    run = subprocess.run(
        edxstream_cmd("backfill", "--no-progress", str(logs)), env=env, capture_output=True, text=True, timeout=180
    )
    assert "Traceback" not in run.stderr, run.stderr
    msgs = read_topic(settings.kafka_bootstrap, settings.raw_topic, expect=len(good) + recovered)
    values = [m.value for m in msgs]
    assert sorted(values) == sorted(good + cut[:recovered])  # every recoverable line, once; no manifest
    dls = [
        decode_dead_letter(m.value) for m in read_topic(settings.kafka_bootstrap, settings.deadletter_topic, expect=1)
    ]
    assert [(d.reason, d.stage) for d in dls] == [("truncated_file", "ship")]
    assert dls[0].source.endswith("tracking.log-20240301.gz") and "truncated" in dls[0].detail
    whole = sum(len(line) + 1 for line in cut[:recovered])
    assert dls[0].offset == whole and cut[recovered].startswith(dls[0].raw.encode())
    err = [line for line in run.stderr.splitlines() if line.startswith("edxstream:")]
    assert any("tracking.log-20240301.gz" in line and "truncated" in line for line in err), run.stderr
    # a re-run ships nothing again: the truncated file is done
    again = subprocess.run(
        edxstream_cmd("backfill", "--no-progress", str(logs)), env=env, capture_output=True, text=True, timeout=180
    )
    assert "0 lines" in again.stdout, again.stdout + again.stderr


def unreadable(path):
    """A file that exists and that not even root can open (a socket: ENXIO)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    return sock


def test_backfill_reports_an_unreadable_file_in_one_line_and_ships_the_others(settings, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    good = [make_line(i, tag="good") for i in range(100)]
    write_lines(logs / "tracking.log.1", good, mode="wb")
    bad = logs / "tracking.log.2"
    sock = unreadable(bad)
    run = subprocess.run(
        edxstream_cmd("backfill", "--no-progress", str(logs / "tracking.log.1"), str(bad)),
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=180,
    )
    err = [line for line in run.stderr.splitlines() if line.startswith("edxstream:")]
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert len(err) == 1 and "tracking.log.2" in err[0], run.stderr
    assert "1 files shipped" in run.stdout
    msgs = read_topic(settings.kafka_bootstrap, settings.raw_topic, expect=len(good))
    assert sorted(m.value for m in msgs) == sorted(good)
    sock.close()


def test_ship_on_an_unreadable_file_is_one_error_line(settings, tmp_path):
    path = tmp_path / "tracking.log"
    sock = unreadable(path)
    run = subprocess.run(
        edxstream_cmd("ship", str(path)), env=env_for(settings), capture_output=True, text=True, timeout=120
    )
    sock.close()
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    assert [line for line in run.stderr.splitlines() if line.startswith("edxstream:")] == [
        f"edxstream: {path}: cannot read: No such device or address"
    ]


def test_ship_cuts_off_a_line_longer_than_the_limit_while_it_streams(settings, tmp_path):
    s = settings.model_copy(update={"max_message_bytes": 50_000})
    log = tmp_path / "tracking.log"
    write_lines(log, [make_line(i) for i in range(20)], mode="wb")
    run = Running(s, log)
    try:
        wait_for(lambda: run.follower.counters.lines == 20, what="the first lines")
        start = log.stat().st_size
        with open(log, "ab") as f:  # a line that keeps growing, with no newline yet
            for _ in range(30):
                f.write(b"y" * 100_000)
        wait_for(
            lambda: run.follower.live is not None and run.follower.live.lines.read_to >= start + 3_000_000,
            what="the long line read",
        )
        assert run.follower.live.lines._parts == []  # not held: cut off
        with open(log, "ab") as f:
            f.write(b"\n")
        write_lines(log, [make_line(i, tag="after") for i in range(20, 30)])
        wait_for(
            lambda: run.follower.counters.lines == 30 and run.follower.counters.dead_letters == 1,
            what="the lines after the long one, and its dead letter",
        )
    finally:
        run.close()
    [dl_msg] = read_topic(s.kafka_bootstrap, s.deadletter_topic, expect=1)
    dl = decode_dead_letter(dl_msg.value)
    assert (dl.reason, dl.offset, dl.source) == ("too_large", start, str(log))
    assert "3000000 bytes" in dl.detail and dl.raw == "y" * logfiles.HEAD_BYTES
    msgs = read_topic(s.kafka_bootstrap, s.raw_topic, expect=30)
    data = log.read_bytes()
    assert {m.line_offset: m.value for m in msgs} == {o: v for o, v in file_lines(data).items() if o != start}


def test_inspect_takes_a_folder_as_backfill_does_and_counts_a_truncated_gz(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    write_lines(logs / "tracking.log.1", [make_line(i) for i in range(50)], mode="wb")
    recovered = _truncated_gz(logs / "tracking.log-2.gz", [make_line(i) for i in range(3000)])
    (logs / "manifest.json").write_text(json.dumps({"files": 2}))
    run = subprocess.run(
        edxstream_cmd("inspect", "--format", "json", str(logs)), capture_output=True, text=True, timeout=120
    )
    assert "Traceback" not in run.stderr, run.stderr
    summary = json.loads(run.stdout)
    assert sorted(os.path.basename(f) for f in summary["files"]) == ["tracking.log-2.gz", "tracking.log.1"]
    # the whole lines before the cut are read; the rest is reported
    assert summary["parsed"] == 50 + recovered and summary["dead_letter"] == 0
    err = [line for line in run.stderr.splitlines() if line.startswith("edxstream:")]
    assert len(err) == 1 and "truncated" in err[0] and run.returncode == 2


def test_a_frame_refused_as_too_large_goes_line_by_line_before_any_later_frame(settings):
    """The lines of a frame the producer refuses for its size are sent again at once,
    one per record, ahead of the frames that follow in the file (the stream app would
    drop a line arriving after a later line of its file as a replay)."""
    from confluent_kafka import Consumer, TopicPartition

    from edxstream.core import frames, kafka_admin
    from producer.sender import Sender

    kafka_admin.ensure_topics(settings)
    big = [b'{"username": "ada", "blob": "' + bytes([97 + i]) * 600_000 + b'"}' for i in range(2)]
    later = make_line(3, user="ada")
    offsets = [0, len(big[0]) + 1]
    later_at = offsets[1] + len(big[1]) + 1
    sender = Sender(settings)
    try:
        headers = [
            ("source", b"/logs/tracking.log"),
            ("offset", b"0"),
            ("fp", b"fp-order"),
            (frames.OFFSETS, frames.offsets_header(offsets)),
        ]
        sender._produce(b"\n".join(big), b"fp-order", 1, headers, 0)  # 1.2 MB: over message.max.bytes
        sender._produce(
            later,
            b"ada",
            1,
            [("source", b"/logs/tracking.log"), ("offset", b"%d" % later_at), ("fp", b"fp-order")],
            later_at,
        )
        assert sender.flush(30)
        sender.poll(0)
        assert sender.counters.lines == 3 and not sender._dl_pending
    finally:
        sender.close()
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "check-order",
            "enable.auto.commit": False,
            "fetch.message.max.bytes": 2_000_000,
        }
    )
    c.assign([TopicPartition(settings.raw_topic, 1, 0)])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 3 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.close()
    assert got == [big[0], big[1], later]
