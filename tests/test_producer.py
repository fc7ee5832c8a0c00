"""The shipper's pieces: message keys, fingerprints, checkpoints, and the sender and
backfill against the real broker."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import time


from edxstream.core.records import decode_dead_letter
from producer.backfill import backfill, expand
from producer.checkpoint import CheckpointStore, backfill_store_path
from producer.fingerprint import fingerprint_of_head, fingerprint_path
from producer.keys import learner_key
from tests.conftest import edxstream_cmd, env_for
from tests.ship_helpers import check_order_and_duplicates, file_lines, make_line, read_topic, write_lines


def test_learner_key_prefers_username_then_user_id_then_session():
    assert learner_key(b'{"username": "ada", "context": {"user_id": 5}}') == b"ada"
    assert learner_key(b'{"username":"ada","x":1}') == b"ada"
    assert learner_key(b'{"username": "", "context": {"user_id": 42}}') == b"user_id:42"
    assert learner_key(b'{"username": "anonymous", "event": {"user_id": 7}}') == b"user_id:7"
    assert learner_key(b'{"username": "", "session": "abc123"}') == b"session:abc123"
    assert learner_key(b'{"event_type": "x"}') is None
    assert learner_key(b"not json at all") is None
    assert learner_key(b'{"username": "unterminated') is None


def test_fingerprint_is_the_first_line_and_survives_rename_and_gzip(tmp_path):
    assert fingerprint_of_head(b'{"partial first line') is None  # still being written
    assert fingerprint_of_head(b'{"partial first line', complete=True) is not None
    assert fingerprint_of_head(b"a\nb\n") == fingerprint_of_head(b"a\nc\nd\n")
    assert fingerprint_of_head(b"a\n") != fingerprint_of_head(b"b\n")
    live = tmp_path / "tracking.log"
    write_lines(live, [make_line(i) for i in range(10)])
    fp = fingerprint_path(live)
    live.rename(tmp_path / "tracking.log.1")
    assert fingerprint_path(tmp_path / "tracking.log.1") == fp
    with open(tmp_path / "tracking.log.1", "rb") as src, gzip.open(tmp_path / "tracking.log-1.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert fingerprint_path(tmp_path / "tracking.log-1.gz") == fp


def test_checkpoint_store_roundtrip_and_atomic_file(tmp_path):
    s = CheckpointStore(tmp_path / "cp" / "ship.json")
    s.set("fp1", 100, "/a", 200)
    s.set("fp2", 50, "/b", 50, done=True)
    s.save()
    assert [p.name for p in (tmp_path / "cp").iterdir()] == ["ship.json"]  # no temp file left behind
    again = CheckpointStore(tmp_path / "cp" / "ship.json")
    assert again.get("fp1").offset == 100 and again.get("fp1").path == "/a"
    assert again.get("fp2").done and again.get("fp3") is None


def test_lines_keyed_with_headers_bytes_unchanged_and_oversized_dead_lettered(settings, tmp_path):
    s = settings.model_copy(update={"max_message_bytes": 4000})
    path = tmp_path / "tracking.log-20240301"
    not_utf8 = b'{"username": "bob", "bad": "\xff\xfe"}'
    huge = b'{"username": "carol", "blob": "' + b"x" * 10_000 + b'"}'
    no_key = b'{"event_type": "server_heartbeat"}'
    lines = [make_line(i, user=("ada" if i % 2 else "bob")) for i in range(200)]
    lines[10:10] = [not_utf8, b"", huge, no_key, b"\r"]
    write_lines(path, lines, mode="wb")
    with open(path, "ab") as f:
        f.write(b'{"username": "ada", "last": "no newline"}')  # a finished file's last line
    data = path.read_bytes()
    expected = {off: line for off, line in file_lines(data).items() if line != huge}

    r = backfill(s, [path], progress=False)
    assert r.counters.empty_lines == 1 and r.counters.dead_letters == 1

    msgs = read_topic(s.kafka_bootstrap, s.raw_topic, expect=len(expected))
    got = {m.line_offset: m.value for m in msgs}
    assert got == expected  # every line, byte for byte, at its offset (the \r line too)
    assert len(msgs) == len(expected)
    fp = fingerprint_path(path)
    assert {m.fp for m in msgs} == {fp} and {m.source for m in msgs} == {str(path)}
    check_order_and_duplicates(msgs)
    by_key: dict[bytes, set[int]] = {}
    for m in msgs:
        by_key.setdefault(m.key, set()).add(m.partition)
    assert all(len(parts) == 1 for parts in by_key.values())  # one learner, one partition
    assert by_key.keys() >= {b"ada", b"bob", fp.encode()}  # a keyless line is keyed by its file

    [dl_msg] = read_topic(s.kafka_bootstrap, s.deadletter_topic, expect=1)
    dl = decode_dead_letter(dl_msg.value)
    huge_offset = data.find(huge)
    assert (dl.reason, dl.stage, dl.source, dl.offset) == ("too_large", "ship", str(path), huge_offset)
    assert "10" in dl.detail and huge.startswith(dl.raw.encode())
    assert dl_msg.line_offset == huge_offset and dl_msg.fp == fp


def _gz(path, lines, mtime):
    with gzip.open(path, "wb") as f:
        for line in lines:
            f.write(line + b"\n")
    os.utime(path, (mtime, mtime))


def test_backfill_ships_each_gz_line_once_oldest_first_and_skips_on_rerun(settings, tmp_path):
    history = tmp_path / "history"
    history.mkdir()
    now = time.time()
    files = {}
    for n, name in enumerate(["tracking.log-3.gz", "tracking.log-2.gz", "tracking.log-1.gz"]):
        lines = [make_line(i, tag=name) for i in range(n * 1000, n * 1000 + 1500)]
        _gz(history / name, lines, now - 3600 * (3 - n))  # -3 is the oldest
        files[name] = lines
    plain = tmp_path / "tracking.log.1"
    write_lines(plain, [make_line(i, tag="plain") for i in range(3500, 3800)], mode="wb")
    # by the names' rotation suffixes, then (-1.gz and .1 alike) by their first events
    assert [p.name for p in expand([history, plain])] == [
        "tracking.log-3.gz",
        "tracking.log-2.gz",
        "tracking.log-1.gz",
        "tracking.log.1",
    ]
    total = 3 * 1500 + 300

    env = env_for(settings)
    run = subprocess.run(
        edxstream_cmd("backfill", str(history), str(plain)), env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "4 files shipped, 0 skipped" in run.stdout and f"{total} lines" in run.stdout
    assert "backfill" in run.stderr and "B/s" in run.stderr  # the progress bar

    msgs = read_topic(settings.kafka_bootstrap, settings.raw_topic, expect=total)
    assert len(msgs) == total
    assert len({(m.fp, m.line_offset) for m in msgs}) == total  # each line once
    check_order_and_duplicates(msgs)
    for name, lines in files.items():
        got = sorted((m.line_offset, m.value) for m in msgs if m.source == str(history / name))
        assert [v for _, v in got] == lines
    # oldest first: within a partition, the oldest file's lines come before the newer ones'
    first_seen = {}
    for m in sorted(msgs, key=lambda m: (m.partition, m.offset)):
        first_seen.setdefault((m.partition, m.source), m.offset)
    for p in {m.partition for m in msgs}:
        order = [src for (pp, src), _ in sorted(first_seen.items(), key=lambda kv: kv[1]) if pp == p]
        assert order == sorted(
            order,
            key=lambda src: ["-3.gz", "-2.gz", "-1.gz", ".1"].index(
                next(suf for suf in ["-3.gz", "-2.gz", "-1.gz", ".1"] if src.endswith(suf))
            ),
        )

    store = json.loads(backfill_store_path(settings.checkpoints).read_text())
    assert len(store) == 4 and all(e["done"] for e in store.values())

    again = subprocess.run(
        edxstream_cmd("backfill", "--no-progress", str(history), str(plain)),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "0 files shipped, 4 skipped" in again.stdout
    forced = subprocess.run(
        edxstream_cmd("backfill", "--no-progress", "--force", str(history / "tracking.log-1.gz")),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert forced.returncode == 0 and "1 files shipped" in forced.stdout, forced.stderr
    assert len(read_topic(settings.kafka_bootstrap, settings.raw_topic, expect=total + 1500)) == total + 1500


def test_backfill_of_a_missing_path_is_a_user_error(settings, tmp_path):
    run = subprocess.run(
        edxstream_cmd("backfill", str(tmp_path / "nope.gz")),
        env=env_for(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2 and "does not exist" in run.stderr


def test_a_frame_the_broker_refuses_is_resent_one_line_per_record(settings):
    """A frame refused as too large (a broker whose limit is below ours) goes again line
    by line to the same partition; the frame's checkpoint entry is released only once
    every line is acknowledged. (A single refused line becomes a dead letter: the
    backfill test above covers that path through max_message_bytes.)"""
    from confluent_kafka import Consumer, TopicPartition

    from edxstream.core import frames, kafka_admin
    from producer.sender import Sender

    kafka_admin.ensure_topics(settings)
    first, second = make_line(1, user="ada"), make_line(2, user="bob")
    offsets = [100, 100 + len(first) + 1]
    headers = {
        "source": b"/logs/tracking.log",
        "fp": b"fp-refused",
        "offset": b"100",
        frames.OFFSETS: frames.offsets_header(offsets),
    }
    sender = Sender(settings)
    entry = 100  # file generation 0, first line at byte 100
    sender._dl_pending.add(entry)  # as _produce holds a refused frame
    try:
        sender._resend_refused(entry, 1, first + b"\n" + second, headers)
        assert sender.flush(30)
        sender.poll(0)
        assert sender.counters.lines == 2 and entry not in sender._dl_pending
    finally:
        sender.close()

    c = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": "check-refused", "enable.auto.commit": False}
    )
    c.assign([TopicPartition(settings.raw_topic, 1, 0)])
    got, deadline = [], time.monotonic() + 30
    while len(got) < 2 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append((m.key(), m.value(), dict(m.headers())))
    c.close()
    assert [(k, v) for k, v, _ in got] == [(b"ada", first), (b"bob", second)]
    assert [h["offset"] for _, _, h in got] == [b"%d" % o for o in offsets]
    assert all(frames.OFFSETS not in h and h["fp"] == b"fp-refused" for _, _, h in got)


def test_backfill_orders_files_by_the_logs_own_time_not_mtime(tmp_path):
    """Copies reset modification times (here: the newest file looks oldest); the order
    comes from rotation suffixes, then each file's first event time; --order given
    keeps the order named."""
    from datetime import datetime, timezone
    from pathlib import Path

    from producer.backfill import first_event_time, log_order, rotation_rank

    assert rotation_rank("tracking.log-20240102.gz") < rotation_rank("tracking.log-20240103")
    assert (
        rotation_rank("tracking.log-20240103")
        < rotation_rank("tracking.log.2.gz")
        < rotation_rank("tracking.log.1")
        < rotation_rank("tracking.log")
    )
    t = lambda d: datetime(2024, 3, d, tzinfo=timezone.utc)  # noqa: E731
    assert log_order(
        [
            (Path("b.log"), t(2)),
            (Path("a.log"), None),
            (Path("c.log"), t(1)),
            (Path("tracking.log.1"), t(9)),
            (Path("d.log"), t(1)),
        ]
    ) == [Path("tracking.log.1"), Path("c.log"), Path("d.log"), Path("b.log"), Path("a.log")]

    # unnamed parts of one log, their mtimes reset newest-first, a header-less junk line first
    folder = tmp_path / "copied"
    folder.mkdir()
    names = ["part-x.log", "part-a.log", "part-m.log.gz"]
    for n, name in enumerate(names):  # part-x holds the oldest events, part-m the newest
        lines = [b"not json"] + [
            make_line(i, tag=name).replace(b"2024-03-01", f"2024-03-0{n + 1}".encode()) for i in range(5)
        ]
        path = folder / name
        if name.endswith(".gz"):
            with gzip.open(path, "wb") as f:
                f.write(b"\n".join(lines) + b"\n")
        else:
            write_lines(path, lines, mode="wb")
        os.utime(path, (1e9 - n * 1000, 1e9 - n * 1000))
    assert first_event_time(folder / "part-a.log") == datetime(2024, 3, 2, 10, 0, tzinfo=timezone.utc)
    parts = r"part-.*"  # not tracking.log's own names: the folder's files are picked by this pattern
    assert [p.name for p in expand([folder], parts)] == names
    assert [p.name for p in expand([folder], parts, order="given")] == sorted(names)
    assert [p.name for p in expand([folder / "part-m.log.gz", folder / "part-x.log"], order="given")] == [
        "part-m.log.gz",
        "part-x.log",
    ]
