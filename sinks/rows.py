"""Pure conversions from topic messages to table rows, shared by both sinks.

A message that cannot become a row (it does not decode, or a value cannot be stored)
becomes a :class:`DeadLetter` with ``stage="sink"``, so a poison message is recorded and
skipped instead of stalling a sink. Its id is derived from where the message sits and
what it holds, and ``seen_at`` from the message's own timestamp, so re-delivering the
same poison message produces the same row.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timezone

import msgspec

from edxstream.core import records
from edxstream.core.records import DeadLetter, EnrichedEvent, WindowCount

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(slots=True)
class Msg:
    """What a sink needs of a Kafka message (so the conversions stay testable). Not
    frozen: a frozen dataclass costs three times as much to build, once per message."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    timestamp_ms: int | None = None
    # One event of a record that holds several (see part_of): its place in the record.
    index: int | None = None

    @property
    def where(self) -> str:
        at = f"{self.topic}:{self.partition}:{self.offset}"
        return at if self.index is None else f"{at}[{self.index}]"


def from_kafka(m) -> Msg:
    ts_type, ts = m.timestamp()
    return Msg(m.topic(), m.partition(), m.offset(), m.value(), ts if ts_type and ts > 0 else None)


def poison(msg: Msg, reason: str, detail: str) -> DeadLetter:
    """The dead letter of a message the sink cannot store."""
    digest = hashlib.sha256(f"sink\0{msg.where}\0".encode() + (msg.value or b"")).hexdigest()[:32]
    seen = (
        datetime.fromtimestamp(msg.timestamp_ms / 1000, tz=timezone.utc)
        if msg.timestamp_ms is not None
        else datetime.now(timezone.utc)
    )
    return records.dead_letter(
        msg.value, reason, detail[:2000], dead_letter_id=digest, stage="sink", source=msg.where, seen_at=seen
    )


def utc_naive(dt: datetime | None) -> datetime | None:
    """MySQL DATETIME has no zone: store UTC wall time."""
    if dt is None:
        return dt
    tz = dt.tzinfo
    if tz is timezone.utc:  # what msgspec decodes "...Z" to: every record of ours
        return dt.replace(tzinfo=None)
    if tz is None:
        return dt
    return dt.astimezone(timezone.utc).replace(tzinfo=None)


def utc_aware(dt: datetime) -> datetime:
    tz = dt.tzinfo
    if tz is timezone.utc:  # what msgspec decodes "...Z" to: every record of ours
        return dt
    return dt.replace(tzinfo=timezone.utc) if tz is None else dt.astimezone(timezone.utc)


# The integer fields of an event: JSON allows any integer, the columns hold 64 bits. (Its
# floats need no check: msgspec refuses JSON numbers beyond a float's range.)
_EVENT_INTS = ("user_id", "attempts", "offset")


def _int_out_of_range(record, fields: tuple[str, ...]) -> str | None:
    for name in fields:
        v = getattr(record, name)
        if v is not None and not INT64_MIN <= v <= INT64_MAX:
            return f"{name}={v} does not fit a 64-bit integer column"
    return None


def decode_events(msg: Msg) -> list[tuple[EnrichedEvent | DeadLetter, int | None]]:
    """The events of one enriched record, each with its place in the record (None when
    the record is a lone event). A record that does not decode is one dead letter; an
    event with a value no column can hold is a dead letter of its own (about that event
    only), and the others of its record stay."""
    if not msg.value:
        return [(poison(msg, "undecodable_message", "empty message on the enriched topic"), None)]
    try:
        got = records.decode_enriched_record(msg.value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return [(poison(msg, "undecodable_message", f"not an EnrichedEvent or an array of them: {exc}"), None)]
    if got.__class__ is not list:
        problem = _int_out_of_range(got, _EVENT_INTS)
        return [(poison(msg, "unstorable_value", problem) if problem else got, None)]
    out: list[tuple[EnrichedEvent | DeadLetter, int | None]] = []
    for i, event in enumerate(got):
        problem = _int_out_of_range(event, _EVENT_INTS)
        out.append((poison(part_of(msg, i, event), "unstorable_value", problem) if problem else event, i))
    return out


def part_of(msg: Msg, index: int | None, event: EnrichedEvent) -> Msg:
    """The message standing for one event of a record that holds several, with the
    event's own JSON as its value: what a dead letter about that event alone records.
    The record's message itself when it holds one event (``index`` None)."""
    if index is None:
        return msg
    return Msg(msg.topic, msg.partition, msg.offset, records.encode(event), msg.timestamp_ms, index)


def decode_dead_letter(msg: Msg) -> DeadLetter:
    """A dead letter from the topic, or a dead letter about the message that is not one."""
    if not msg.value:
        return poison(msg, "undecodable_message", "empty message on the dead-letter topic")
    try:
        return records.decode_dead_letter(msg.value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return poison(msg, "undecodable_message", f"not a DeadLetter: {exc}")


def decode_windows(msg: Msg) -> list[WindowCount] | DeadLetter:
    """The window counts of one aggregates record, or a dead letter for the whole
    record when any of them cannot be stored (they were emitted together)."""
    if not msg.value:
        return poison(msg, "undecodable_message", "empty message on the aggregates topic")
    try:
        windows = records.decode_windows(msg.value)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return poison(msg, "undecodable_message", f"not a WindowCount or an array of them: {exc}")
    for w in windows:  # msgspec checked the types: ints, so ranges are all to check
        if not (0 <= w.window_seconds <= 2**32 - 1 and 0 <= w.count <= INT64_MAX and 0 <= w.version <= INT64_MAX):
            return poison(
                msg,
                "unstorable_value",
                "window_seconds, count and version must be non-negative 64-bit integers (window_seconds under 2^32)",
            )
    return windows


# -- MySQL rows: tuples in column order --------------------------------------------------


def mysql_event_row(e: EnrichedEvent) -> tuple:
    row = [getattr(e, n) for n in records.ENRICHED_FIELDS]
    row[1] = utc_naive(e.time)
    return tuple(row)


def mysql_dead_letter_row(d: DeadLetter) -> tuple:
    row = [getattr(d, n) for n in records.DEAD_LETTER_FIELDS]
    row[-1] = utc_naive(d.seen_at)
    return tuple(row)


# -- LOAD DATA text: one line per row, tab-separated --------------------------------------

# The format of LOAD DATA's defaults (FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES
# TERMINATED BY '\n'): a backslash, tab or newline inside a value is written escaped, and
# \N is NULL. Escaping value by value is cheap: str.replace returns the string itself
# when there is nothing to replace, which is nearly always.


def _tsv_scalar(v) -> str:
    t = type(v)
    if t is bool:
        return "1" if v else "0"
    if t is datetime:
        return utc_naive(v).isoformat(" ")
    if t is int or t is float:  # repr of a finite float reads back as the same double
        return repr(v)
    raise TypeError(f"no LOAD DATA text for {t.__name__}")


def tsv_rows(rows: list[tuple]) -> bytes:
    """LOAD DATA text (UTF-8) for rows of str, int, float, bool, datetime (stored as UTC
    wall time) or None."""
    if not rows:
        return b""
    # inline rather than a function per value: this runs for every column of every event
    return (
        "\n".join(
            [
                "\t".join(
                    [
                        v.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                        if v.__class__ is str
                        else "\\N"
                        if v is None
                        else _tsv_scalar(v)
                        for v in row
                    ]
                )
                for row in rows
            ]
        )
        + "\n"
    ).encode("utf-8")


def mysql_event_tuple(e: EnrichedEvent) -> tuple:
    """The event's values in column order, as decoded (tsv_rows converts the time)."""
    return msgspec.structs.astuple(e)


# -- ClickHouse rows: lists in column order ----------------------------------------------


def clickhouse_event_row(e: EnrichedEvent) -> list:
    row = [getattr(e, n) for n in records.ENRICHED_FIELDS]
    row[1] = utc_aware(e.time)
    return row


def clickhouse_window_row(w: WindowCount) -> list:
    return [w.kind, w.course_id, w.dimension, w.window_seconds, utc_aware(w.window_start), w.count, w.version]


def json_rows(values: list[bytes]) -> bytes:
    """One JSON array of rows from JSON documents that are each a row (an object) or an
    array of rows, for ClickHouse's JSONEachRow input (which takes one array, or objects
    one after another, but not several arrays). The documents must be valid JSON, as
    decoding checked: an array's first and last bytes, whitespace aside, are brackets."""
    parts = []
    for v in values:
        v = v.strip()
        if v[:1] == b"[":
            v = v[1:-1].strip()
            if not v:
                continue
        parts.append(v)
    return b"[" + b",".join(parts) + b"]"


@dataclass
class Decoded:
    """A batch split by destination; poison messages are already dead letters."""

    events: list[EnrichedEvent] = field(default_factory=list)
    windows: list[WindowCount] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
