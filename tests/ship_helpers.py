"""Helpers shared by the shipper tests (no tests here): tracking-like lines, reading a topic back."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, TopicPartition

from edxstream.core import frames
from producer.keys import learner_key


def make_line(i: int, user: str | None = None, tag: str = "") -> bytes:
    user = user if user is not None else f"learner{i % 7}"
    return json.dumps(
        {
            "username": user,
            "event_type": "play_video",
            "event_source": "browser",
            "time": f"2024-03-01T10:00:00.{i:06d}+00:00",
            "tag": tag,
            "i": i,
            "context": {"user_id": i % 7, "course_id": "course-v1:Org+C+2024"},
        }
    ).encode()


def write_lines(path, lines: list[bytes], mode: str = "ab") -> None:
    with open(path, mode) as f:
        for line in lines:
            f.write(line + b"\n")


@dataclass
class Msg:
    """One line as read back from the raw topic (a frame's lines are split out)."""

    partition: int
    offset: int  # the line's position in the topic: frames.position(record offset, index)
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    @property
    def fp(self) -> str:
        return self.headers["fp"].decode()

    @property
    def line_offset(self) -> int:
        return int(self.headers["offset"])

    @property
    def source(self) -> str:
        return self.headers["source"].decode()


def read_topic(
    bootstrap: str, topic: str, expect: int | None = None, timeout: float = 60.0, quiet: float = 1.5
) -> list[Msg]:
    """Every line of the topic, from the start: stops once ``expect`` lines have
    arrived and nothing more came for ``quiet`` seconds (so late duplicates are seen too),
    or at the deadline."""
    c = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"check-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )
    md = c.list_topics(topic, timeout=30)
    parts = sorted(md.topics[topic].partitions)
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    out: list[Msg] = []
    deadline = time.monotonic() + timeout
    last_new = time.monotonic()
    try:
        while time.monotonic() < deadline:
            batch = c.consume(5000, 0.5)
            got = [m for m in batch if m.error() is None]
            for m in got:
                out.extend(lines_of(m))
            if got:
                last_new = time.monotonic()
            elif (expect is None or len(out) >= expect) and time.monotonic() - last_new >= quiet:
                break
    finally:
        c.close()
    return out


def lines_of(m) -> list[Msg]:
    """The lines of one raw record, each with its own ``offset`` header; a line of a
    multi-line frame gets the key the shipper gives a line alone."""
    headers = {k: v for k, v in (m.headers() or [])}
    offset = int(headers["offset"]) if "offset" in headers else None
    parts = frames.split(m.value(), offset, headers.get(frames.OFFSETS))
    if len(parts) == 1:
        return [Msg(m.partition(), frames.position(m.offset(), 0), m.key(), m.value(), headers)]
    out = []
    for i, (off, line) in enumerate(parts):
        h = {k: v for k, v in headers.items() if k != frames.OFFSETS}
        h["offset"] = b"%d" % off
        out.append(Msg(m.partition(), frames.position(m.offset(), i), learner_key(line) or headers["fp"], line, h))
    return out


def file_lines(data: bytes) -> dict[int, bytes]:
    """offset -> line (without its newline) of every non-empty line of a file's bytes."""
    out, pos = {}, 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl
        if end > pos:
            out[pos] = data[pos:end]
        pos = end + 1
    return out


def check_order_and_duplicates(msgs: list[Msg], replay_from: dict[str, int] | None = None) -> int:
    """Per partition and file, line offsets grow; a repeat of an earlier (fp, offset) is
    only allowed at or after ``replay_from[fp]`` (the checkpoint at a crash) and must
    carry the same bytes. Returns the number of duplicates."""
    seen: dict[tuple[str, int], bytes] = {}
    last: dict[tuple[int, str], int] = {}
    dups = 0
    for m in sorted(msgs, key=lambda m: (m.partition, m.offset)):
        k = (m.fp, m.line_offset)
        if k in seen:
            dups += 1
            assert seen[k] == m.value, f"duplicate {k} with different bytes"
            assert replay_from is not None and m.line_offset >= replay_from.get(m.fp, 0), (
                f"line {k} repeated although it was acknowledged before the crash"
            )
        else:
            seen[k] = m.value
            pk = (m.partition, m.fp)
            assert m.line_offset > last.get(pk, -1), f"partition {m.partition}: {k} out of order"
            last[pk] = m.line_offset
    return dups
