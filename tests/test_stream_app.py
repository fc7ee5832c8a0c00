"""The stream app end to end: a known log (replays, out-of-order, late and too-late
events, malformed lines) goes through the real broker and real `edxstream process`
workers; the enriched, dead-letter and aggregates topics must hold exactly what the
test computes on its own from the same lines.

The expected counts are computed here from the fixture's own fields (the test built
every line, so it knows each line's time, course, learner and event type); the category
and action of each event type are written out literally below.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
import urllib.request
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional
from urllib.parse import quote

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from edxstream.core import frames, kafka_admin
from edxstream.core import stream_state as st
from edxstream.core.records import decode_dead_letter, decode_enriched_record, decode_windows, encode
from tests.conftest import edxstream_cmd, env_for, free_port, wait_inactive

UTC = timezone.utc
BASE = datetime(2024, 3, 4, 0, 0, tzinfo=UTC)
COURSES = ["course-v1:Org+C1+2024", "course-v1:Org+C2+2024", "course-v1:Other+X+2025"]
# (event_type, event_source, category, action, counted as): the expected classification,
# literally; the window counts count a learner interaction under its category and any
# other event under its kind (docs/taxonomy.md)
EVENT_TYPES = [
    ("play_video", "browser", "video", "play_video", "video"),
    ("edx.video.paused", "mobile", "video", "edx.video.paused", "video"),
    ("problem_check", "server", "assessment", "problem_check", "assessment"),
    ("problem_check", "browser", "assessment", "problem_check", "echo"),
    ("edx.forum.thread.created", "server", "forum", "edx.forum.thread.created", "forum"),
    ("seq_goto", "browser", "content", "seq_goto", "content"),
    ("page_close", "browser", "content", "page_close", "plumbing"),
    ("edx.course.enrollment.activated", "server", "enrollment", "edx.course.enrollment.activated", "enrollment"),
]
MALFORMED = [
    b"this is not json {",
    b'{"event_type": "play_video", "time": "not a time"}',
    b'{"time": "2024-03-04T00:00:00+00:00"}',
    b"\xff\xfe\x00 not utf-8",
    b"[1, 2, 3]",
]
WINDOWS = (60, 3600)
GRACE = 48 * 3600


@dataclass
class Line:
    raw: bytes
    source: str
    fp: str
    offset: int
    key: bytes
    # None for a malformed line; else what the event is
    time: Optional[float] = None
    course: Optional[str] = None
    category: Optional[str] = None
    action: Optional[str] = None
    learner: Optional[str] = None
    too_late: bool = False
    counted_as: Optional[str] = None  # the course_category dimension that counts it


def _event(t: datetime, learner: int, course: Optional[str], etype: tuple) -> tuple[bytes, bytes, Optional[str]]:
    name, source, *_ = etype
    ctx: dict = {"path": "/event", "org_id": "Org"}
    if course:
        ctx["course_id"] = course
    username = f"learner{learner}" if learner != 15 else ""
    if learner <= 12:  # 13 and 14 have only a username, 15 is anonymous
        ctx["user_id"] = 1000 + learner
    doc = {
        "username": username,
        "event_type": name,
        "event_source": source,
        "time": t.isoformat(),
        "context": ctx,
        "event": "{}",
        "host": "lms.example.org",
        "ip": "10.0.0.1",
        "agent": "test",
        "page": None,
    }
    learner_id = str(1000 + learner) if learner <= 12 else (username or None)
    return json.dumps(doc).encode(), (username or "anon").encode(), learner_id


def make_log(n: int, seed: int) -> list[Line]:
    """n lines over 30 hours of event time from two files: jittered (out of order by up
    to 90 s), 3% arriving 1-15 h late (within grace), some without a course, malformed
    lines, and one pair where a learner's event 30 h ahead is followed by one 5 days
    old (beyond grace whatever else happens: same learner, so same raw partition, so
    it is processed after the one that moved the watermark)."""
    rnd = random.Random(seed)
    files = {
        "A": ["/var/log/tracking.log", "fpA-" + str(seed), 0],
        "B": ["/var/log/tracking.log.1", "fpB-" + str(seed), 0],
    }
    lines: list[Line] = []

    def add(raw: bytes, key: bytes, **kw) -> None:
        f = files[rnd.choice("AB")]
        lines.append(Line(raw, f[0], f[1], f[2], key, **kw))
        f[2] += len(raw) + 1

    span = 30 * 3600
    for i in range(n):
        if i % 97 == 13:
            add(MALFORMED[(i // 97) % len(MALFORMED)], b"bad")
            continue
        t = BASE + timedelta(seconds=i * span / n + rnd.uniform(-90, 90), microseconds=rnd.randrange(10**6))
        if rnd.random() < 0.03:
            t -= timedelta(seconds=rnd.uniform(3600, 15 * 3600))
        learner = rnd.randint(1, 15)
        course = None if rnd.random() < 0.02 else rnd.choice(COURSES)
        et = rnd.choice(EVENT_TYPES)
        raw, key, lid = _event(t, learner, course, et)
        add(raw, key, time=t.timestamp(), course=course, category=et[2], action=et[3], learner=lid, counted_as=et[4])
        if i == n // 2:
            ahead = BASE + timedelta(seconds=span)
            raw, key, lid = _event(ahead, 3, COURSES[0], EVENT_TYPES[0])
            add(
                raw,
                key,
                time=ahead.timestamp(),
                course=COURSES[0],
                category="video",
                action="play_video",
                learner=lid,
                counted_as="video",
            )
            old = BASE - timedelta(days=5)
            raw, key, lid = _event(old, 3, COURSES[0], EVENT_TYPES[0])
            add(
                raw,
                key,
                time=old.timestamp(),
                course=COURSES[0],
                category="video",
                action="play_video",
                learner=lid,
                too_late=True,
                counted_as="video",
            )
    return lines


def produce(settings, lines: list[Line], max_frame: int = 8) -> None:
    """Into the raw topic as the shipper puts them: one learner's lines in one partition,
    and lines of one file bound for one partition sharing a record (1 to ``max_frame``
    lines, varied, so single-line records as kcat writes them come too)."""
    rnd = random.Random(len(lines))
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20, "enable.idempotence": True})
    open_frames: dict[int, list[Line]] = {}
    limits: dict[int, int] = {}

    def send(part: int) -> None:
        fr = open_frames.pop(part)
        headers = [("source", fr[0].source.encode()), ("offset", str(fr[0].offset).encode()), ("fp", fr[0].fp.encode())]
        if len(fr) > 1:
            headers.append((frames.OFFSETS, frames.offsets_header([ln.offset for ln in fr])))
        p.produce(
            settings.raw_topic, key=fr[0].key, value=b"\n".join(ln.raw for ln in fr), partition=part, headers=headers
        )
        p.poll(0)

    for ln in lines:
        part = zlib.crc32(ln.key) % settings.partitions
        fr = open_frames.get(part)
        if fr and (fr[0].fp != ln.fp or len(fr) >= limits[part]):
            send(part)
            fr = None
        if not fr:
            open_frames[part] = []
            limits[part] = rnd.randint(1, max_frame)
        open_frames[part].append(ln)
    for part in list(open_frames):
        send(part)
    assert p.flush(30) == 0


def expected_counts(lines: list[Line]) -> dict[str, int]:
    cnt: Counter = Counter()
    learners: dict[str, set] = defaultdict(set)
    for ln in lines:
        if ln.time is None or not ln.course:
            continue
        if ln.too_late:  # not counted by the stream: its windows are named for a recount
            for size in WINDOWS:
                cnt[f"recount|{ln.course}||{size}|{int(ln.time // size) * size}"] = 0
            continue
        for size in WINDOWS:
            start = int(ln.time // size) * size
            cnt[f"course_category|{ln.course}|{ln.counted_as}|{size}|{start}"] += 1
            cnt[f"course_action|{ln.course}|{ln.action}|{size}|{start}"] += 1
            if ln.learner is not None:
                learners[f"course_learners|{ln.course}||{size}|{start}"].add(ln.learner)
    out = dict(cnt)
    out.update({k: len(v) for k, v in learners.items()})
    return out


def decode_enriched_many(data: bytes) -> list:
    got = decode_enriched_record(data)
    return got if isinstance(got, list) else [got]


def read_topic(settings, topic: str, *, done=None, quiet: float = 3.0, timeout: float = 90.0) -> list:
    """Every message of a topic from the beginning, until ``done(messages)`` or no new
    message for ``quiet`` seconds."""
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(settings.partitions)])
    out, last, deadline = [], time.monotonic(), time.monotonic() + timeout
    try:
        while True:
            m = c.poll(0.2)
            now = time.monotonic()
            if m is not None and not m.error():
                out.append(m)
                last = now
                continue
            if done is not None and done(out):
                break
            if now - last > quiet or now > deadline:
                break
    finally:
        c.close()
    return out


def final_aggregates(msgs) -> dict[str, int]:
    best: dict[str, tuple[int, int]] = {}
    for m in msgs:
        counts = decode_windows(m.value())
        assert counts, "an aggregates record without counts"
        for wc in counts:
            # one record: the changed counts of one course window, keyed by it
            start = int(wc.window_start.timestamp())
            if wc.kind == "recount":  # one record names a course's windows to recount
                assert m.key().decode() == f"{wc.course_id}|recount" and wc.count == 0
            else:
                assert m.key().decode() == f"{wc.course_id}|{wc.window_seconds}|{start}"
            key = f"{wc.kind}|{wc.course_id}|{wc.dimension}|{wc.window_seconds}|{start}"
            if key not in best or wc.version > best[key][0]:
                best[key] = (wc.version, wc.count)
    return {k: c for k, (_, c) in best.items()}


def check_outputs(settings, lines: list[Line], *, exactly_once_enriched: bool) -> dict:
    """Enriched: every valid line, identical if repeated; dead letters: every malformed
    line; aggregates: exactly the expected counts."""
    unique = list({(ln.fp, ln.offset): ln for ln in lines}.values())
    valid = [ln for ln in unique if ln.time is not None]
    malformed = [ln for ln in unique if ln.time is None]

    def events_of(msgs) -> list:
        return [ev for m in msgs for ev in decode_enriched_many(m.value())]

    enriched = read_topic(settings, settings.enriched_topic, done=lambda ms: len(events_of(ms)) >= len(valid))
    seen: dict = {}
    per_line: Counter = Counter()
    for m in enriched:
        events = decode_enriched_many(m.value())
        assert m.value().startswith(b"[") and events, "an enriched record is an array of events"
        for ev in events:
            # a record holds the events of one course, keyed by it
            assert m.key() == (ev.course_id or "").encode()
            seen.setdefault((ev.source, ev.offset), set()).add(encode(ev))
            per_line[(ev.source, ev.offset)] += 1
    assert set(seen) == {(ln.source, ln.offset) for ln in valid}
    assert all(len(v) == 1 for v in seen.values()), "a line was enriched into two different events"
    if exactly_once_enriched:
        assert len(events_of(enriched)) == len(valid), Counter(per_line.values())
        assert len(enriched) < len(valid)  # several events a record
    dead = [
        decode_dead_letter(m.value())
        for m in read_topic(settings, settings.deadletter_topic, done=lambda ms: len(ms) >= len(malformed))
    ]
    assert {(d.source, d.offset) for d in dead} == {(ln.source, ln.offset) for ln in malformed}
    assert all(d.reason and d.stage == "parse" for d in dead)
    got = final_aggregates(read_topic(settings, settings.aggregates_topic))
    want = expected_counts(unique)
    missing = {k: v for k, v in want.items() if got.get(k) != v}
    extra = {k: v for k, v in got.items() if k not in want}
    assert not missing and not extra, (
        f"{len(missing)} wrong, {len(extra)} unexpected: "
        f"{list(missing.items())[:5]} got {[got.get(k) for k in list(missing)[:5]]}; extra {list(extra.items())[:5]}"
    )
    return got


def worker(
    settings, *extra: str, web_port: Optional[int] = None, metrics: Optional[Path] = None, log: Optional[Path] = None
) -> subprocess.Popen:
    args = ["process", "--log-every", "0.5", *extra]
    if web_port:
        args += ["--web-port", str(web_port)]
    if metrics:
        args += ["--metrics-file", str(metrics)]
    out = open(log, "ab") if log else subprocess.DEVNULL
    return subprocess.Popen(edxstream_cmd(*args), env=env_for(settings), stdout=out, stderr=subprocess.STDOUT)


def wait_exit(proc: subprocess.Popen, timeout: float, log: Optional[Path] = None) -> None:
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError(f"worker did not stop; log: {log.read_text()[-3000:] if log else ''}") from None
    assert rc == 0, log.read_text()[-3000:] if log else rc


def read_metrics(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def with_replays(lines: list[Line], start: int, length: int) -> list[Line]:
    """The log as a shipper that crashed and re-sent a stretch of lines delivers it."""
    return lines + lines[start : start + length]


def test_fixture_classification_matches_the_event_model():
    from edxstream.core.model import parse_line

    for ln in make_log(200, seed=1):
        rec = parse_line(ln.raw, ln.source, ln.offset)
        if ln.time is None:
            assert rec.__class__.__name__ == "DeadLetter"
            continue
        assert (rec.category, rec.action, rec.course_id) == (ln.category, ln.action, ln.course)
        assert rec.time.timestamp() == pytest.approx(ln.time, abs=1e-6)


def test_worker_enriches_dead_letters_and_counts_exactly(settings, tmp_path):
    lines = make_log(1500, seed=7)
    shipped = with_replays(lines, 400, 120)
    kafka_admin.ensure_topics(settings)
    produce(settings, shipped)
    port = free_port()
    log = tmp_path / "worker.log"
    metrics = tmp_path / "m.json"
    proc = worker(settings, web_port=port, metrics=metrics, log=log)
    try:
        want = expected_counts(lines)
        # wait until the worker has emitted every window with its final count
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            m = read_metrics(metrics)
            if m.get("enriched_seen", 0) >= sum(1 for ln in lines if ln.time is not None):
                break
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        got = check_outputs(settings, shipped, exactly_once_enriched=True)
        assert got == want

        # live views, from the tables of the running worker
        course = COURSES[0]
        body = get_json(f"http://127.0.0.1:{port}/counts/{quote(course, safe='')}/")
        assert body["course_id"] == course and body["owned"] is True
        for size in WINDOWS:
            starts = [
                int(k.rsplit("|", 1)[1])
                for k in want
                if k.startswith(f"course_category|{course}|") and k.split("|")[3] == str(size)
            ]
            latest = max(starts)
            w = body["windows"][str(size)]
            assert w["window_start"] == datetime.fromtimestamp(latest, UTC).isoformat().replace("+00:00", "Z")
            cats = {
                k.split("|")[2]: v
                for k, v in want.items()
                if k.startswith(f"course_category|{course}|") and k.endswith(f"|{size}|{latest}")
            }
            assert w["categories"] == cats
            assert w["active_learners"] == want.get(f"course_learners|{course}||{size}|{latest}", 0)
            assert sum(w["actions"].values()) == sum(cats.values())
        # the live page's course list (the page itself is drawn in test_live_page.py)
        listed = get_json(f"http://127.0.0.1:{port}/live/api/courses/")["courses"]
        assert sorted(c["course_id"] for c in listed) == sorted(COURSES)
        mbody = get_json(f"http://127.0.0.1:{port}/metrics/")
        assert mbody["late_total"] == 1
        assert mbody["duplicates"] == 120
        assert mbody["dead_letters"] == sum(1 for ln in lines if ln.time is None)
        assert mbody["lines"] == len(shipped)
        assert mbody["records"] < len(shipped)  # lines came framed
    finally:
        proc.send_signal(signal.SIGTERM)
    wait_exit(proc, 30, log)
    final = read_metrics(metrics)
    assert sum(p["late"] for p in final["partitions"].values()) == 1


def test_final_windows_are_forgotten_as_the_counting_passes_them(settings, tmp_path):
    """Ten days of events in one go, with a two-hour grace: the worker keeps in memory
    only the windows that can still change, while every window's count stays exact."""
    settings = settings.model_copy(update={"grace_seconds": 2 * 3600})
    rnd = random.Random(11)
    lines: list[Line] = []
    offset = 0
    n = 1200
    for i in range(n):
        t = BASE + timedelta(seconds=i * 10 * 86400 / n + rnd.uniform(-60, 60))
        course = rnd.choice(COURSES)
        et = rnd.choice(EVENT_TYPES)
        raw, key, lid = _event(t, rnd.randint(1, 15), course, et)
        lines.append(
            Line(
                raw,
                "/var/log/tracking.log",
                "fp-days",
                offset,
                key,
                time=t.timestamp(),
                course=course,
                category=et[2],
                action=et[3],
                learner=lid,
                counted_as=et[4],
            )
        )
        offset += len(raw) + 1
    cells = {(ln.course, size, int(ln.time // size) * size) for ln in lines for size in WINDOWS}
    kafka_admin.ensure_topics(settings)
    produce(settings, lines)
    log = tmp_path / "worker.log"
    metrics = tmp_path / "m.json"
    proc = worker(settings, metrics=metrics, log=log)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and read_metrics(metrics).get("counted", 0) < n:
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.3)
        check_outputs(settings, lines, exactly_once_enriched=True)
    finally:
        proc.send_signal(signal.SIGTERM)
    wait_exit(proc, 30, log)
    final = read_metrics(metrics)
    assert sum(p["late"] for p in final["partitions"].values()) == 0
    # every window was opened once and is now either forgotten or still open
    assert final["windows_expired"] + final["windows_open"] == len(cells)
    # what stays open is about the last grace period of ten days
    assert final["windows_open"] < len(cells) / 10, (final["windows_open"], len(cells))


@pytest.mark.slow
def test_counts_exact_after_worker_is_killed_mid_stream_and_restarted(settings, tmp_path):
    lines = make_log(30000, seed=11)
    shipped = with_replays(lines, 20000, 500)
    kafka_admin.ensure_topics(settings)
    produce(settings, shipped)
    log = tmp_path / "worker.log"
    metrics = tmp_path / "m.json"
    proc = worker(settings, "--batch", "500", metrics=metrics, log=log)
    deadline = time.monotonic() + 90
    seen = 0
    while time.monotonic() < deadline:
        m = read_metrics(metrics)
        seen = m.get("enriched_seen", 0)
        if m.get("lines", 0) >= 4000 and seen > 0:
            break
        assert proc.poll() is None, log.read_text()[-3000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 0 < read_metrics(metrics)["lines"] < len(shipped), "the kill must land mid-stream"

    proc = worker(settings, "--until-idle", "4", metrics=metrics, log=log)
    wait_exit(proc, 180, log)
    check_outputs(settings, shipped, exactly_once_enriched=False)
    final = read_metrics(metrics)
    assert sum(p["late"] for p in final["partitions"].values()) == 1


@pytest.mark.slow
def test_counts_exact_with_two_workers_sharing_the_partitions(settings, tmp_path):
    lines = make_log(12000, seed=23)
    first, second = lines[:6000], lines[6000:]
    kafka_admin.ensure_topics(settings)
    produce(settings, first)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    mfiles = [tmp_path / "a.json", tmp_path / "b.json"]
    a = worker(settings, "--until-idle", "6", web_port=free_port(), metrics=mfiles[0], log=logs[0])
    deadline = time.monotonic() + 60
    while read_metrics(mfiles[0]).get("lines", 0) == 0 and time.monotonic() < deadline:
        assert a.poll() is None, logs[0].read_text()[-3000:]
        time.sleep(0.1)
    # the second worker joins mid-stream: partitions (and their table state) move to it
    b = worker(settings, "--until-idle", "6", web_port=free_port(), metrics=mfiles[1], log=logs[1])
    deadline = time.monotonic() + 60
    while b"Worker]: Ready" not in logs[1].read_bytes() and time.monotonic() < deadline:
        assert b.poll() is None, logs[1].read_text()[-3000:]
        time.sleep(0.1)
    produce(settings, with_replays(second, 1000, 200))
    wait_exit(a, 180, logs[0])
    wait_exit(b, 180, logs[1])
    check_outputs(settings, with_replays(lines, 7000, 200), exactly_once_enriched=False)
    ma, mb = read_metrics(mfiles[0]), read_metrics(mfiles[1])
    # both took part: each consumed raw lines and counted enriched events
    assert ma["lines"] > 0 and mb["lines"] > 0, (ma, mb)
    assert ma["enriched_seen"] > 0 and mb["enriched_seen"] > 0, (ma, mb)


@pytest.mark.slow
def test_records_the_consumer_skipped_are_caught_up(settings, tmp_path):
    """Faust commits over a jump in the offsets it reads; a rebalance at the wrong moment
    makes such a jump out of records never processed. Simulated here by moving the
    stopped group's committed raw-topic offsets 100 records ahead of what the worker
    processed: the restarted worker must notice (its tables know the next offset) and go
    back. (The count agent's tally topic goes through the same check; its records are
    too few per batch for a 100-record jump to land inside unread ones.)"""
    from edxstream.ops.replay import ActiveGroupError, commit_offsets, committed_offsets

    lines = make_log(4000, seed=31)
    kafka_admin.ensure_topics(settings)
    produce(settings, lines[:2000])
    log, metrics = tmp_path / "worker.log", tmp_path / "m.json"
    wait_exit(worker(settings, "--until-idle", "3", metrics=metrics, log=log), 120, log)
    produce(settings, lines[2000:])
    parts = list(range(settings.partitions))
    moved = []
    done = committed_offsets(settings, settings.stream_group, settings.raw_topic, parts)
    assert all(v is not None for v in done.values()), done
    moved += [TopicPartition(settings.raw_topic, p, done[p] + 100) for p in parts]
    wait_inactive(settings, [settings.stream_group])
    deadline = time.monotonic() + 60
    while True:
        try:
            commit_offsets(settings, settings.stream_group, moved)
            break
        except ActiveGroupError:
            assert time.monotonic() < deadline, "the stopped worker's group never became empty"
            time.sleep(1)

    wait_exit(worker(settings, "--until-idle", "4", metrics=metrics, log=log), 180, log)
    check_outputs(settings, lines, exactly_once_enriched=False)
    assert read_metrics(metrics)["seeks_back"] >= settings.partitions, log.read_text()[-3000:]


def _changelog_ends(settings, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"ends-{uuid.uuid4().hex}"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(settings.partitions)}
    finally:
        c.close()


def _lose_changelog_tail(settings, topic: str, ends: dict[int, int]) -> int:
    """Make a table's changelog say what it said at ``ends``: every key written since
    goes back to its value then (or away), as if the broker had lost those writes.
    Returns how many keys were set back."""
    msgs = read_topic(settings, topic, quiet=2.0)
    then: dict[tuple[int, bytes], Optional[bytes]] = {}
    later: set[tuple[int, bytes]] = set()
    for m in msgs:
        k = (m.partition(), m.key())
        if m.offset() < ends[m.partition()]:
            then[k] = m.value()
        else:
            later.add(k)
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True})
    n = 0
    for part, key in sorted(later):
        if key != st.MARKER_KEY_BYTES:
            p.produce(topic, key=key, value=then.get((part, key)), partition=part)
            n += 1
    assert p.flush(30) == 0
    for part in range(settings.partitions):  # a one-record batch at the end (stream_app.state)
        p.produce(topic, key=st.MARKER_KEY_BYTES, value=b"", partition=part)
        assert p.flush(30) == 0
    return n


@pytest.mark.parametrize("tables", [(st.COUNTS, st.PARTITIONS), (st.COUNTS,)], ids=["both", "counts-only"])
def test_a_worker_whose_state_came_back_older_counts_again_before_emitting(settings, tmp_path, tables):
    """The counts' changelogs lose their last writes (as a crashed broker that comes back
    with less than it acknowledged would), both tables' or only the cells' (the partition
    state then says those records were counted): the next worker finds its state behind
    the counting, counts those records again, and emits no window before it is back where
    it was, so no window is ever emitted with a smaller count than before; the end counts
    are exact."""
    lines = make_log(6000, seed=31)
    kafka_admin.ensure_topics(settings)
    log = tmp_path / "worker.log"
    metrics = tmp_path / "m.json"
    produce(settings, lines[:2000])
    wait_exit(worker(settings, "--until-idle", "3", metrics=metrics, log=log), 180, log)
    topics = [st.changelog_topic(settings, t) for t in tables]
    ends = {t: _changelog_ends(settings, t) for t in topics}
    produce(settings, lines[2000:4000])
    wait_exit(worker(settings, "--until-idle", "3", "--batch", "2", metrics=metrics, log=log), 180, log)
    assert all(_lose_changelog_tail(settings, t, ends[t]) > 0 for t in topics)
    produce(settings, lines[4000:])
    wait_exit(worker(settings, "--until-idle", "4", "--batch", "1", metrics=metrics, log=log), 240, log)

    check_outputs(settings, lines, exactly_once_enriched=False)
    history: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for m in read_topic(settings, settings.aggregates_topic):
        for wc in decode_windows(m.value()):
            if wc.kind != "recount":
                key = f"{wc.kind}|{wc.course_id}|{wc.dimension}|{wc.window_seconds}|{wc.window_start}"
                history[key].append((wc.version, wc.count))
    counts = {k: [c for _, c in sorted(h)] for k, h in history.items()}
    went_down = {k: c for k, c in counts.items() if c != sorted(c)}
    assert not went_down, f"{len(went_down)} windows emitted smaller counts later: {list(went_down.items())[:3]}"
    assert read_metrics(metrics).get("rebuilds", 0) > 0, log.read_text()[-3000:]


def test_broker_probes_find_the_first_record_and_the_true_end_of_a_partition(settings):
    """The two reads the worker makes of the broker itself after a crash: where the
    records of a partition go on from an offset, and where the partition truly ends."""
    from confluent_kafka import Producer, TopicPartition

    from stream_app.factory import first_offset_from, true_ends

    kafka_admin.ensure_topics(settings)
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, **kafka_admin.DELIVERY_CONFIG})
    for i in range(3):
        p.produce(settings.raw_topic, value=b"line %d" % i, partition=0)
    assert p.flush(30) == 0
    bootstrap, topic = settings.kafka_bootstrap, settings.raw_topic
    assert first_offset_from(bootstrap, topic, 0, 1) == 1
    assert first_offset_from(bootstrap, topic, 0, 3) is None  # nothing there (yet)
    tp = TopicPartition(topic, 0)
    assert true_ends(bootstrap, {tp: 2}) == {tp: 3}  # reported short: read on to the end
    assert true_ends(bootstrap, {tp: 3}) == {tp: 3}
