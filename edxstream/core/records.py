"""The records that cross process boundaries: the schema of the enriched topic, the
dead-letter topic, the aggregates topic, the MySQL tables and the ClickHouse tables.

Everything reads these types; nothing else defines a wire format. Records are msgspec
Structs so that encoding and decoding them on the hot path is cheap and typed. Field
order is the column order of the sink tables.
"""

from __future__ import annotations

import base64
from datetime import datetime
from typing import Optional, Union

import msgspec


class EnrichedEvent(msgspec.Struct, kw_only=True, omit_defaults=False):
    """One parsed, classified, enriched tracking-log event.

    On the enriched topic a record holds a JSON array of the events of one course from
    one stream batch, keyed by the course (a single object is read as well): every
    record costs each consumer a fixed 3-4 µs, more than decoding an event."""

    # Deterministic: the same raw line always gets the same id, so replays deduplicate.
    event_id: str
    time: datetime  # UTC, microsecond precision
    category: str  # access | content | video | forum | assessment | enrollment | other
    action: str  # normalised event name; URL event types reduced to route templates
    event_type: str
    event_source: Optional[str] = None  # server | browser | mobile | task
    course_id: Optional[str] = None  # normalised to course-v1:Org+Course+Run
    org: Optional[str] = None
    course: Optional[str] = None
    run: Optional[str] = None
    block_id: Optional[str] = None  # usage key of the block the event is about
    section_id: Optional[str] = None  # chapter
    subsection_id: Optional[str] = None  # sequential
    user_id: Optional[int] = None
    username: Optional[str] = None
    session: Optional[str] = None
    ip: Optional[str] = None
    agent: Optional[str] = None
    host: Optional[str] = None
    page: Optional[str] = None
    referer: Optional[str] = None
    video_id: Optional[str] = None
    video_code: Optional[str] = None
    video_position: Optional[float] = None
    video_old_time: Optional[float] = None
    video_new_time: Optional[float] = None
    video_speed: Optional[float] = None
    problem_id: Optional[str] = None
    attempts: Optional[int] = None
    success: Optional[bool] = None
    grade: Optional[float] = None
    max_grade: Optional[float] = None
    payload: str = ""  # the decoded event payload as JSON text (or the raw text)
    source: Optional[str] = None  # file the line came from
    offset: Optional[int] = None  # byte offset of the line in that file
    # What the event is (edxstream.core.events.classification, docs/taxonomy.md): learner
    # (a learner interaction, counted) | echo | plumbing | authoring | system | api | other
    kind: str = ""
    interaction: str = ""  # shared by every record of one action, e.g. problem.submitted
    # What the event model could not use, e.g. "grade: not a finite number": the field is
    # null and the value stays in ``payload``, so a null is never silent. Names fields
    # only, never values (this column reaches the analyst tables).
    notes: str = ""


class DeadLetter(msgspec.Struct, kw_only=True):
    """What a stage could not use, with the reason and the raw bytes (make one with :func:`dead_letter`)."""

    dead_letter_id: str  # deterministic, like event_id
    reason: str  # short machine-readable code, e.g. "invalid_json"
    detail: str  # human-readable explanation
    raw: str  # the line as text, or base64 when it is not UTF-8
    raw_encoding: str = "utf-8"  # utf-8 | base64
    source: Optional[str] = None
    offset: Optional[int] = None
    stage: str = "parse"  # which component rejected it: ship | parse | sink
    seen_at: Optional[datetime] = None  # when it was rejected (not part of its identity)


def raw_text(value: bytes | None, max_bytes: int | None = None) -> tuple[str, str]:
    """(text, encoding) of a dead letter's raw bytes: the UTF-8 text when they are UTF-8,
    else base64, so the exact bytes are kept either way. ``max_bytes`` keeps only the
    head of an oversized value; a cut that splits a multi-byte character moves back to
    the character's start rather than turning the whole head into base64."""
    value = value or b""
    if max_bytes is not None and len(value) > max_bytes:
        head = value[:max_bytes]
        for cut in range(4):
            try:
                return head[: len(head) - cut].decode("utf-8"), "utf-8"
            except UnicodeDecodeError:
                continue
        return base64.b64encode(head).decode("ascii"), "base64"
    try:
        return value.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(value).decode("ascii"), "base64"


def dead_letter(
    raw: bytes | None,
    reason: str,
    detail: str,
    *,
    dead_letter_id: str,
    stage: str,
    source: Optional[str] = None,
    offset: Optional[int] = None,
    seen_at: Optional[datetime] = None,
    max_bytes: int | None = None,
) -> DeadLetter:
    """The one way to make a DeadLetter: the raw bytes are kept exactly (see
    :func:`raw_text`), whichever stage (ship, parse, sink) rejected them. Each stage
    derives ``dead_letter_id`` from what identifies the rejected bytes there, so a
    re-delivery makes the same letter."""
    text, encoding = raw_text(raw, max_bytes)
    return DeadLetter(
        dead_letter_id=dead_letter_id,
        reason=reason,
        detail=detail,
        raw=text,
        raw_encoding=encoding,
        source=source,
        offset=offset,
        stage=stage,
        seen_at=seen_at,
    )


class WindowCount(msgspec.Struct, kw_only=True):
    """One tumbling window's full value, emitted whenever it changes (not a delta), so a
    consumer upserts it. ``version`` grows with every emission of the same window.

    On the aggregates topic a record holds a JSON array of the WindowCounts of one
    course window that changed together (a single object is read as well)."""

    kind: str  # course_category | course_action | course_learners | recount (see RECOUNT)
    course_id: str
    dimension: str  # the category, the action, or "" for learners
    window_seconds: int
    window_start: datetime
    count: int
    version: int


# A WindowCount of this kind holds no count: it says "count this window from the stored
# events from now on" (ClickHouse's window_counts_final does; docs/architecture.md).
RECOUNT = "recount"

ENRICHED_FIELDS: tuple[str, ...] = EnrichedEvent.__struct_fields__
DEAD_LETTER_FIELDS: tuple[str, ...] = DeadLetter.__struct_fields__
WINDOW_FIELDS: tuple[str, ...] = WindowCount.__struct_fields__

_encoder = msgspec.json.Encoder()
_enriched_decoder = msgspec.json.Decoder(EnrichedEvent)
_enriched_many_decoder = msgspec.json.Decoder(Union[list[EnrichedEvent], EnrichedEvent])
_dead_decoder = msgspec.json.Decoder(DeadLetter)
_windows_decoder = msgspec.json.Decoder(Union[list[WindowCount], WindowCount])


def encode(record: EnrichedEvent | DeadLetter | WindowCount | list[WindowCount]) -> bytes:
    """JSON bytes of a record (or of a list of window counts)."""
    return _encoder.encode(record)


def decode_enriched(data: bytes) -> EnrichedEvent:
    """One EnrichedEvent from its JSON."""
    return _enriched_decoder.decode(data)


def decode_enriched_record(data: bytes) -> list[EnrichedEvent] | EnrichedEvent:
    """An enriched record as it was written: a list of events, or one event."""
    return _enriched_many_decoder.decode(data)


def join_array(encoded: list[bytes]) -> bytes:
    """One JSON array of already encoded records."""
    return b"[" + b",".join(encoded) + b"]"


# Most bytes of events in one enriched record: far below any broker's message size limit.
ENRICHED_RECORD_BYTES = 256 * 1024


def enriched_records(encoded: list[bytes], max_bytes: int = ENRICHED_RECORD_BYTES) -> list[bytes]:
    """The values of the enriched records holding these encoded events (one course's, in
    order): JSON arrays of up to ``max_bytes`` each (an event larger than that alone)."""
    out = []
    start = size = 0
    for i, e in enumerate(encoded):
        if size and size + len(e) > max_bytes:
            out.append(join_array(encoded[start:i]))
            start, size = i, 0
        size += len(e) + 1
    out.append(join_array(encoded[start:]))
    return out


def decode_dead_letter(data: bytes) -> DeadLetter:
    """One DeadLetter from its JSON."""
    return _dead_decoder.decode(data)


def decode_windows(data: bytes) -> list[WindowCount]:
    """The WindowCounts of an aggregates record: a JSON array of them, or one object."""
    got = _windows_decoder.decode(data)
    return got if got.__class__ is list else [got]
