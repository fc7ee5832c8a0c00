"""Replay: move consumer groups back in time so history is reprocessed.

The module has two halves:

- pure planning (no I/O): which groups and topics a target touches, the window-aligned
  effective start time, and the per-partition plan (current, new, end offset, messages
  to reprocess) computed from offsets the I/O half fetched;
- Kafka (and ClickHouse) I/O at the edges: fetch committed offsets, low and *true* end
  offsets, find the first offset at a time, refuse while a group has active members,
  commit the new offsets, and reset the stream app's state.

Times are *event* times (the ``time`` of the tracking-log line, or of the enriched
record), not the Kafka message timestamps: a backfill writes years of history within
minutes, so message timestamps say nothing about the windows the stream app computes.
The broker's ListOffsets-by-timestamp is therefore not used; the first offset at a time
is found by a binary search over the partition, reading one message per step (see
:func:`first_offset_at`). On the Tansu broker ListOffsets-by-timestamp also always
answers offset 0, so it could not be used there anyway.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Literal

import orjson
from confluent_kafka import (
    Consumer,
    ConsumerGroupState,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from edxstream.core import frames, kafka_admin, stream_state
from edxstream.core.errors import UserError
from edxstream.core.settings import Settings

log = logging.getLogger(__name__)

BEGINNING = "BEGINNING"
TARGETS = ("process", "mysql", "clickhouse", "all")
Mode = Literal["rewind", "to_end"]

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


# -- pure: times -------------------------------------------------------------------------


def parse_time_argument(text: str) -> datetime | None:
    """``BEGINNING`` -> None; an ISO-8601 time -> an aware UTC datetime (naive = UTC)."""
    if text.strip().upper() == BEGINNING:
        return None
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UserError(
            f"cannot read the time {text!r}: give BEGINNING or an ISO-8601 time such as 2024-05-01T12:00:00Z"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def align_down(when: datetime, windows: Iterable[int]) -> datetime:
    """The latest time <= ``when`` that is a boundary of every window size.

    Windows are tumbling and aligned to the epoch, so a window that straddles the
    requested time must be recomputed whole: the replay starts at its beginning. The
    boundary common to all sizes is a multiple of their least common multiple."""
    sizes = [int(w) for w in windows if int(w) > 0]
    if not sizes:
        return when
    step = math.lcm(*sizes)
    seconds = (when - EPOCH) // _SECOND
    return datetime.fromtimestamp(seconds - seconds % step, tz=timezone.utc)


_SECOND = datetime(1970, 1, 1, 0, 0, 1, tzinfo=timezone.utc) - EPOCH


def event_time(value: bytes | None) -> datetime | None:
    """The event time a message carries, or None when it has none.

    Understands every value on the pipeline's topics: a raw tracking-log line (``time``,
    possibly behind a logger prefix), an EnrichedEvent (``time``), a WindowCount
    (``window_start``) and a DeadLetter (the ``time`` of its raw line)."""
    if not value:
        return None
    doc = _json_object(value)
    if doc is None:
        return None
    for key in ("time", "window_start"):
        if isinstance(doc.get(key), str):
            return _iso_or_none(doc[key])
    raw = doc.get("raw")
    if isinstance(raw, str) and doc.get("raw_encoding", "utf-8") == "utf-8":
        return event_time(raw.encode())
    return None


def record_time(value: bytes | None, headers: list | None) -> datetime | None:
    """The event time of a message; for a raw record holding several lines (see
    edxstream.core.frames), the latest of its lines' times, so that a binary search for a
    start time lands on the record that holds the first line at or after it."""
    more = _header(headers, frames.OFFSETS)
    if more is None or not value:
        return event_time(value)
    times = [t for t in map(event_time, value.split(b"\n")) if t is not None]
    return max(times) if times else None


def lines_before(value: bytes, headers: list | None, when: datetime) -> tuple[str, int] | None:
    """For the raw record a replay restarts at: (file fingerprint, byte offset of its last
    timed line before the first line at or after ``when``), so those lines can be marked
    as already shipped and the replay starts mid-record, as it would with one line per
    record. None when nothing in the record comes before ``when``."""
    more, fp, offset = (_header(headers, k) for k in (frames.OFFSETS, "fp", "offset"))
    if more is None or fp is None or offset is None or not value:
        return None
    try:
        lines = frames.split(value, int(offset), more)
    except (frames.FrameError, ValueError):
        return None
    skip = None
    for off, line in lines:
        t = event_time(line)
        if t is None:
            continue
        if t >= when:
            break
        skip = off
    return None if skip is None else (fp.decode("utf-8", "replace"), skip)


def _header(headers: list | None, name: str) -> bytes | None:
    for k, v in headers or ():
        if k == name:
            return v
    return None


def _json_object(value: bytes) -> dict | None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        start = value.find(b"{")  # a logger prefix before the JSON
        if start <= 0:
            return None
        try:
            doc = orjson.loads(value[start:])
        except orjson.JSONDecodeError:
            return None
    return doc if isinstance(doc, dict) else None


def _iso_or_none(text: str) -> datetime | None:
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


def first_offset_at(low: int, end: int, time_at: Callable[[int], datetime | None], when: datetime) -> int:
    """The smallest offset in [low, end) whose event time is >= ``when``, or ``end``.

    ``time_at(o)`` gives the event time of the first message at or after ``o`` that has
    one (None when none does before the end). Binary search: a tracking log is written
    in time order, so per partition the times grow (small clock skew between servers is
    absorbed by starting at a window boundary, see :func:`align_down`)."""
    lo, hi = low, end
    while lo < hi:
        mid = (lo + hi) // 2
        t = time_at(mid)
        if t is None or t >= when:
            hi = mid
        else:
            lo = mid + 1
    return lo


# -- pure: what a target touches -----------------------------------------------------------


@dataclass(frozen=True)
class GroupTopic:
    """One consumer group's position on one topic, and how the replay moves it."""

    group: str
    topic: str
    mode: Mode  # rewind: back to the start time; to_end: skip what the replay supersedes
    why: str


@dataclass(frozen=True)
class Scope:
    groups: tuple[GroupTopic, ...]
    reset_stream_state: bool  # delete the stream app's table changelogs (counts, dedupe)
    delete_windows: bool  # delete ClickHouse window rows from the effective start on


def scope_for(settings: Settings, target: str) -> Scope:
    """Which group/topic positions a target moves.

    - process: the stream app re-reads the raw topic with empty tables, so its counts
      are rebuilt, not added twice; its count agent (same group, tally topic) skips
      to the end and counts only what the replay re-emits. It re-emits the enriched records (same event ids)
      and every window from the start time. The sinks do not need to re-read anything
      old: the re-emitted records reach them after their current position and they
      upsert them. The ClickHouse sink's position on the aggregates topic jumps to the
      end, because windows emitted before the replay are superseded (their versions
      could outrank the recomputed ones), and the replay deletes the replayed range's
      window rows so a window that no longer exists (a count that dropped to zero after
      a rule change) leaves no stale row.
    - mysql / clickhouse: the sink alone re-reads its topics from the start time (a
      lost or restored database); the stream app is untouched.
    - all: process, plus nothing more for the sinks (see above: re-reading their old
      input as well would only write every row twice).
    """
    if target not in TARGETS:
        raise UserError(f"unknown replay target {target!r}: choose one of {', '.join(TARGETS)}")
    s = settings
    mysql = (
        GroupTopic(s.mysql_sink_group, s.enriched_topic, "rewind", "MySQL events"),
        GroupTopic(s.mysql_sink_group, s.deadletter_topic, "rewind", "MySQL dead letters"),
    )
    clickhouse = (
        GroupTopic(s.clickhouse_sink_group, s.aggregates_topic, "rewind", "ClickHouse windows"),
        GroupTopic(s.clickhouse_sink_group, s.enriched_topic, "rewind", "ClickHouse events"),
    )
    process = (
        GroupTopic(s.stream_group, s.raw_topic, "rewind", "stream app, tables reset"),
        # The stream app's count agent reads its tally topic in the same group: it must
        # count what the replay re-emits only, once, into the reset tables.
        GroupTopic(s.stream_group, s.tally_topic, "to_end", "counted again from the re-emitted records"),
        GroupTopic(s.clickhouse_sink_group, s.aggregates_topic, "to_end", "superseded by the recomputed windows"),
    )
    if target == "mysql":
        return Scope(mysql, reset_stream_state=False, delete_windows=False)
    if target == "clickhouse":
        return Scope(clickhouse, reset_stream_state=False, delete_windows=False)
    return Scope(process, reset_stream_state=True, delete_windows=True)


# -- pure: the plan ------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionPlan:
    group: str
    topic: str
    partition: int
    current: int | None  # committed offset, None when the group never committed here
    new: int
    end: int  # the true end of the partition (next offset to be written)
    stop: int | None = None  # first offset at --to (None: the end)
    # raw topic: (file fingerprint, byte offset) of the lines of the record at ``new`` that
    # come before the start time; the stream app is told they are done (see lines_before)
    skip_through: tuple[str, int] | None = None

    @property
    def to_reprocess(self) -> int:
        return max(0, (self.end if self.stop is None else self.stop) - self.new)

    @property
    def skipped(self) -> int:
        """Messages the group had not read yet and the replay skips (to_end moves)."""
        start = self.current if self.current is not None else 0
        return max(0, self.new - start) if self.new >= self.end else 0


@dataclass(frozen=True)
class Plan:
    requested: datetime | None  # None = BEGINNING
    effective: datetime | None  # aligned down to a window boundary
    scope: Scope
    partitions: tuple[PartitionPlan, ...]
    notes: tuple[str, ...] = field(default=())

    @property
    def total(self) -> int:
        return sum(p.to_reprocess for p in self.partitions)

    def by_group(self) -> dict[str, list[PartitionPlan]]:
        out: dict[str, list[PartitionPlan]] = {}
        for p in self.partitions:
            out.setdefault(p.group, []).append(p)
        return out


def plan_partitions(
    group: str,
    topic: str,
    mode: Mode,
    current: Mapping[int, int | None],
    at_time: Mapping[int, int | None],
    low: Mapping[int, int],
    end: Mapping[int, int],
    until: Mapping[int, int] | None = None,
) -> list[PartitionPlan]:
    """Per partition: the committed offset, the new one, and what will be re-read.

    ``at_time[p]`` is the first offset at the start time (None = the beginning). The new
    offset stays within [low, end]: a history older than retention starts at the low
    watermark (see docs/replay.md for re-backfilling what retention deleted).
    ``until[p]`` (--to) bounds the count of messages to reprocess."""
    plans = []
    for p in sorted(end):
        if mode == "to_end":
            new = end[p]
        else:
            at = at_time.get(p)
            new = low[p] if at is None else at
        new = min(max(new, low[p]), end[p])
        stop = None if until is None or mode == "to_end" else min(max(until[p], new), end[p])
        plans.append(PartitionPlan(group, topic, p, current.get(p), new, end[p], stop))
    return plans


def format_plan(plan: Plan) -> str:
    """The dry-run table: per group/topic/partition, current, new, to reprocess; totals."""
    lines = []
    if plan.requested is None:
        lines.append("replay from: BEGINNING")
    else:
        lines.append(f"replay from: {plan.requested.isoformat()} (requested)")
        if plan.effective != plan.requested:
            lines.append(
                f"effective from: {plan.effective.isoformat()} (aligned down to a window "
                f"boundary so the window that straddles the requested time is recomputed whole)"
            )
    for note in plan.notes:
        lines.append(note)
    header = f"{'group':<32} {'topic':<32} {'part':>4} {'current':>10} {'new':>10} {'end':>10} {'to reprocess':>13}"
    for group, parts in plan.by_group().items():
        lines.append("")
        lines.append(header)
        for p in parts:
            cur = "-" if p.current is None else str(p.current)
            extra = f"  (skips {p.skipped} superseded)" if p.skipped else ""
            lines.append(
                f"{group:<32} {p.topic:<32} {p.partition:>4} {cur:>10} {p.new:>10} {p.end:>10} "
                f"{p.to_reprocess:>13}{extra}"
            )
        lines.append(f"{'':<32} {'total for ' + group:<70} {sum(p.to_reprocess for p in parts):>13}")
    lines.append("")
    lines.append(f"total messages to reprocess: {plan.total}")
    return "\n".join(lines)


# -- I/O: reading the cluster ---------------------------------------------------------------


class ActiveGroupError(UserError):
    """A group still has members: moving its offsets now would be overwritten by them."""


_ACTIVE_STATES = {
    ConsumerGroupState.STABLE,
    ConsumerGroupState.PREPARING_REBALANCING,
    ConsumerGroupState.COMPLETING_REBALANCING,
}


def active_members(
    settings: Settings,
    groups: Mapping[str, Iterable[str]] | Iterable[str],
    timeout: float = 10.0,
    probe_timeout: float = 30.0,
) -> dict[str, list[str]]:
    """Groups that have live members -> a description of each member.

    ``groups`` maps each group to the topics it consumes (used by the join probe).
    Apache Kafka lists a group's members. Tansu lists none and keeps a group STABLE long
    after its last member stopped (it does not act on aiokafka's LeaveGroup, so every
    stopped Faust worker leaves it so), so for a non-empty state with no member listed
    the group is probed: a consumer joins it on its topics. If it is given every
    partition, nobody else is alive (the broker expires the dead members during the
    join, and the probe's own leave empties the group); if it gets only some, another
    member holds the rest."""
    if not isinstance(groups, Mapping):
        groups = {g: () for g in groups}
    names = sorted(groups)
    if not names:
        return {}
    client = kafka_admin.admin(settings)  # keep a reference: futures die with their client
    futures = client.describe_consumer_groups(names, request_timeout=timeout)
    active: dict[str, list[str]] = {}
    for group, future in futures.items():
        desc = future.result(timeout=timeout)
        members = [f"{m.client_id or m.member_id} on {m.host}" for m in desc.members or []]
        if members:
            active[group] = members
        elif desc.state in _ACTIVE_STATES:
            held = _join_probe(settings, group, sorted(groups[group]), probe_timeout)
            if held:
                active[group] = [f"state {desc.state.name}, members not listed by the broker; {held}"]
    return active


def _join_probe(settings: Settings, group: str, topics: list[str], timeout: float) -> str:
    """Join ``group`` on ``topics``; '' when this consumer got every partition (no live
    member), else what shows another member is alive."""
    if not topics:
        return "its topics are unknown, so it cannot be probed"
    existing = kafka_admin.admin(settings).list_topics(timeout=10).topics
    wanted = {(t, p) for t in topics if t in existing for p in existing[t].partitions}
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "logger": kafka_admin.LIBRDKAFKA_LOG,
            "group.id": group,
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
            "auto.offset.reset": "earliest",
        }
    )
    got: set[tuple[str, int]] | None = None
    try:
        consumer.subscribe(topics)
        deadline = time.monotonic() + timeout
        settled = None
        while time.monotonic() < (settled or deadline):
            msg = consumer.poll(0.2)  # never committed: the group's offsets stay as they are
            if msg is not None and msg.error() and msg.error().code() == KafkaError.INCONSISTENT_GROUP_PROTOCOL:
                return "a member uses another assignment protocol"
            now = {(tp.topic, tp.partition) for tp in consumer.assignment()}
            if now and settled is None:
                # A live member learns of the rebalance at its next heartbeat and rejoins;
                # a broker that closes the join early (Tansu: session timeout / 2) then
                # rebalances again. Watch long enough for that second round.
                settled = time.monotonic() + _PROBE_SETTLE
            if settled is not None:
                got = now if got is None else got & now
    finally:
        consumer.close()
    if not got:
        if got is None:
            return f"a test join was not assigned any partition within {timeout:.0f}s"
        return "a test join lost its partitions to another member"
    if got >= wanted:
        return ""
    return f"a test join got {len(got)} of {len(wanted)} partitions: another member holds the rest"


_PROBE_SETTLE = 7.0  # > 2 x the default 3 s heartbeat interval


def refuse_if_active(settings: Settings, groups: Mapping[str, Iterable[str]]) -> None:
    active = active_members(settings, groups)
    if active:
        detail = "; ".join(f"group {g!r} has active members: {', '.join(m)}" for g, m in active.items())
        raise ActiveGroupError(
            f"refusing to replay while consumers are running ({detail}). Stop them "
            f"(edxstream process / edxstream sink ...), wait for the session timeout, and "
            f"run the replay again."
        )


def _consumer(settings: Settings, group: str | None = None) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "logger": kafka_admin.LIBRDKAFKA_LOG,
            # A throwaway id when only reading: never join or commit for a real group here.
            "group.id": group or f"edxstream-replay-reader-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "fetch.wait.max.ms": 50,
        }
    )


def partitions_of(settings: Settings, topic: str, timeout: float = 10.0) -> list[int]:
    md = kafka_admin.admin(settings).list_topics(topic, timeout=timeout).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        raise UserError(f"topic {topic!r} does not exist on {settings.kafka_bootstrap}")
    return sorted(md.partitions)


def committed_offsets(
    settings: Settings, group: str, topic: str, parts: list[int], timeout: float = 10.0
) -> dict[int, int | None]:
    """The group's committed offsets (None where it has none)."""
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in parts])
    client = kafka_admin.admin(settings)
    futures = client.list_consumer_group_offsets([req], request_timeout=timeout)
    result = futures[group].result(timeout=timeout)
    out: dict[int, int | None] = {}
    for tp in result.topic_partitions:
        if tp.error is not None:
            raise KafkaException(tp.error)
        out[tp.partition] = tp.offset if tp.offset >= 0 else None
    return out


def low_and_end(consumer: Consumer, topic: str, partition: int, timeout: float = 10.0) -> tuple[int, int]:
    """The low watermark and the true end offset of a partition.

    The reported high watermark can trail the real end (Tansu reports the base offset of
    the last record batch + 1), so read from just below it to the end of the partition:
    the position at end-of-partition is the true end. On Apache Kafka this reads at most
    one message."""
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout)
    consumer.assign([TopicPartition(topic, partition, max(low, high - 1))])
    end = max(low, high)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return low, max(end, msg.offset())
            raise KafkaException(msg.error())
        end = max(end, msg.offset() + 1)
    raise TimeoutError(f"could not find the end of {topic}[{partition}] within {timeout}s")


def time_reader(
    consumer: Consumer, topic: str, partition: int, end: int, timeout: float = 10.0
) -> Callable[[int], datetime | None]:
    """time_at(o): the event time of the first message at or after offset ``o`` that has
    one, or None if none has before ``end``."""

    def time_at(offset: int) -> datetime | None:
        consumer.assign([TopicPartition(topic, partition, offset)])
        while True:
            msg = _next_message(consumer, topic, partition, offset, timeout)  # progress: a new timeout each
            if msg is None or msg.offset() >= end:
                return None
            t = record_time(msg.value(), msg.headers())
            if t is not None:
                return t

    return time_at


def check_range(scope: Scope, from_time: datetime | None, to_time: datetime | None) -> None:
    if to_time is None:
        return
    if scope.reset_stream_state:
        raise UserError(
            "--to cannot be used with --target process or all: the stream app's tables are "
            "reset, so every window from the start time on must be recomputed, up to the end "
            "of the raw topic. Leave --to out."
        )
    if from_time is not None and to_time <= from_time:
        raise UserError(f"--to ({to_time.isoformat()}) must be later than --from ({from_time.isoformat()})")


def build_plan(
    settings: Settings,
    target: str,
    from_time: datetime | None,
    stream_topics: Iterable[str] = (),
    to_time: datetime | None = None,
) -> Plan:
    """Fetch offsets for every group/topic the target touches and plan the move."""
    scope = scope_for(settings, target)
    check_range(scope, from_time, to_time)
    effective = None if from_time is None else align_down(from_time, settings.windows)
    notes = []
    if scope.reset_stream_state:
        topics = sorted(stream_topics)
        notes.append(
            "stream app state reset: "
            + (f"delete {', '.join(topics)}" if topics else "no table changelog topics exist yet")
        )
        if scope.delete_windows:
            notes.append(
                "ClickHouse: delete window rows "
                + ("(all)" if effective is None else f"with window_start >= {effective.isoformat()}")
                + " before the windows are recomputed"
            )
    consumer = _consumer(settings)
    try:
        plans: list[PartitionPlan] = []
        for gt in scope.groups:
            parts = partitions_of(settings, gt.topic)
            current = committed_offsets(settings, gt.group, gt.topic, parts)
            low, end, at, until = {}, {}, {}, {}
            for p in parts:
                low[p], end[p] = low_and_end(consumer, gt.topic, p)
                if gt.mode != "rewind":
                    continue
                time_at = time_reader(consumer, gt.topic, p, end[p])
                if effective is not None:
                    at[p] = first_offset_at(low[p], end[p], time_at, effective)
                if to_time is not None:
                    until[p] = first_offset_at(low[p], end[p], time_at, to_time)
            planned = plan_partitions(
                gt.group, gt.topic, gt.mode, current, at, low, end, until if to_time is not None else None
            )
            if scope.reset_stream_state and gt.topic == settings.raw_topic and effective is not None:
                planned = [_with_skip(consumer, pp, effective) for pp in planned]
            plans.extend(planned)
    finally:
        consumer.close()
    if to_time is not None:
        notes.append(
            f"counting messages up to {to_time.isoformat()}; the sinks then read on to the end "
            f"of their topics (a group has one position), re-writing later rows unchanged"
        )
    return Plan(from_time, effective, scope, tuple(plans), tuple(notes))


def _with_skip(consumer: Consumer, pp: PartitionPlan, when: datetime) -> PartitionPlan:
    if pp.new >= pp.end:
        return pp
    msg = read_at(consumer, pp.topic, pp.partition, pp.new)
    skip = None if msg is None else lines_before(msg.value(), msg.headers(), when)
    return pp if skip is None else replace(pp, skip_through=skip)


def read_at(consumer: Consumer, topic: str, partition: int, offset: int, timeout: float = 10.0):
    """The message at ``offset`` (or the next one there is), None at the end."""
    consumer.assign([TopicPartition(topic, partition, offset)])
    return _next_message(consumer, topic, partition, offset, timeout)


def _next_message(consumer: Consumer, topic: str, partition: int, offset: int, timeout: float):
    """The next message of the assigned partition, None at its end."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                return None
            raise KafkaException(msg.error())
        return msg
    raise TimeoutError(f"reading {topic}[{partition}] at {offset} timed out")


# -- I/O: applying ----------------------------------------------------------------------------


def commit_offsets(settings: Settings, group: str, offsets: list[TopicPartition], timeout: float = 10.0) -> None:
    """Set a stopped group's committed offsets.

    AlterConsumerGroupOffsets (works on Apache Kafka and Tansu); should a broker not
    support it, commit through a consumer with the group's id that assign()s the
    partitions without joining the group, which every broker supports."""
    req = ConsumerGroupTopicPartitions(group, offsets)
    try:
        client = kafka_admin.admin(settings)
        result = client.alter_consumer_group_offsets([req], request_timeout=timeout)[group].result(timeout=timeout)
        errors = [tp for tp in result.topic_partitions if tp.error is not None]
    except KafkaException as exc:
        if exc.args and exc.args[0].code() not in (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION):
            raise
        log.info("AlterConsumerGroupOffsets unsupported; committing through a consumer")
        consumer = _consumer(settings, group)
        try:
            consumer.assign(offsets)
            consumer.commit(offsets=offsets, asynchronous=False)
        finally:
            consumer.close()
        return
    if errors:
        codes = {tp.error.code() for tp in errors}
        if codes & {KafkaError.UNKNOWN_MEMBER_ID, KafkaError.REBALANCE_IN_PROGRESS, KafkaError.ILLEGAL_GENERATION}:
            raise ActiveGroupError(
                f"refusing to replay: group {group!r} has active members (the broker refused "
                f"the offset commit: {errors[0].error.name()}). Stop its consumers and run the "
                f"replay again; nothing was deleted."
            )
        raise KafkaException(errors[0].error)


def delete_topics(settings: Settings, topics: list[str], timeout: float = 30.0) -> None:
    """Delete topics (the stream app's changelogs) and wait until they are gone; the
    stream app recreates them, empty, when it starts."""
    if not topics:
        return
    client = kafka_admin.admin(settings)
    for future in client.delete_topics(topics, operation_timeout=timeout).values():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args and exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        existing = set(client.list_topics(timeout=timeout).topics)
        if not existing & set(topics):
            return
        time.sleep(0.2)
    raise TimeoutError(f"topics still listed {timeout}s after deletion: {topics}")


def stream_state_topics(settings: Settings) -> list[str]:
    """The stream app's table changelog topics that exist on the broker.

    The core names them (edxstream.core.stream_state.changelog_topics); Faust's naming rule
    (``<app id>-<table>-changelog``) also finds tables added later."""
    names: set[str] = set(stream_state.changelog_topics(settings))
    existing = set(kafka_admin.admin(settings).list_topics(timeout=10).topics)
    prefix = f"{settings.app_id}-"
    names.update(t for t in existing if t.startswith(prefix) and t.endswith("-changelog"))
    return sorted(names & existing)


def delete_windows(settings: Settings, since: datetime | None) -> None:
    """Delete the ClickHouse window rows the replay recomputes (all of them from the
    beginning), synchronously, so that windows that no longer exist leave no rows."""
    from edxstream.core import clickhouse

    client = clickhouse.connect(settings)
    exists = client.command(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = 'window_counts'"
    )
    if not int(exists):
        return
    if since is None:
        client.command("TRUNCATE TABLE window_counts")
        return
    client.command(
        "ALTER TABLE window_counts DELETE WHERE window_start >= {since:DateTime64(6, 'UTC')} "
        "SETTINGS mutations_sync = 2",
        parameters={"since": since},
    )


def group_topics(settings: Settings, scope: Scope) -> dict[str, list[str]]:
    """Each group the scope moves -> every topic that group consumes (for the probe)."""
    s = settings
    consumes = {
        s.stream_group: [s.raw_topic, s.tally_topic],
        s.mysql_sink_group: [s.enriched_topic, s.deadletter_topic],
        s.clickhouse_sink_group: [s.aggregates_topic, s.enriched_topic],
    }
    return {g.group: consumes.get(g.group, [g.topic]) for g in scope.groups}


@dataclass
class Result:
    plan: Plan
    applied: bool
    deleted_topics: list[str]


def replay(
    settings: Settings,
    target: str,
    from_time: datetime | None,
    to_time: datetime | None = None,
    dry_run: bool = False,
    progress: Callable[[str], None] = log.info,
) -> Result:
    """Plan, and unless ``dry_run``, apply: refuse while any touched group is active,
    reset the stream state, delete the replayed ClickHouse windows, commit the offsets."""
    scope = scope_for(settings, target)
    check_range(scope, from_time, to_time)
    groups = group_topics(settings, scope)
    refuse_if_active(settings, groups)
    state_topics = stream_state_topics(settings) if scope.reset_stream_state else []
    plan = build_plan(settings, target, from_time, state_topics, to_time)
    if dry_run:
        return Result(plan, False, [])
    # Check again right before acting: a consumer started while planning would
    # overwrite the offsets and keep counting on the old state.
    refuse_if_active(settings, groups)
    # Offsets first: a commit to a group with live members fails (UNKNOWN_MEMBER_ID), so
    # nothing is deleted if a consumer slipped in. Running it again is safe: the plan is
    # recomputed from the same time.
    for group, parts in plan.by_group().items():
        offsets = [TopicPartition(p.topic, p.partition, p.new) for p in parts]
        progress(f"committing {len(offsets)} offsets for group {group}")
        commit_offsets(settings, group, offsets)
    if scope.reset_stream_state:
        progress(f"deleting the stream app's changelog topics: {', '.join(state_topics) or 'none'}")
        delete_topics(settings, state_topics)
        skips = {
            p.partition: p.skip_through
            for p in plan.partitions
            if p.topic == settings.raw_topic and p.skip_through is not None
        }
        if skips:
            progress(f"marking the lines before the start time in {len(skips)} raw records as done")
            stream_state.seed_shipped(settings, skips)
    if scope.delete_windows:
        progress("deleting the replayed window rows in ClickHouse")
        delete_windows(settings, plan.effective)
    return Result(plan, True, state_topics)
