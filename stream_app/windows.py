"""Event-time tumbling-window counting, as pure functions over plain values.

The Faust agents only move records in and out; every decision that makes the counts
exact lives here, so it can be tested without a broker:

- a window is ``[start, start + size)`` in event time (UTC epoch seconds);
- each (course, size, start) holds one :class:`Cell`: every count of that window (per
  category, per action, distinct learners), and the highest raw offset it has counted
  per raw partition (``hw``). One cell per course window rather than one per counted
  dimension: an event touches all of its dimensions of a window at once, so one
  high-water mark serves them all, and the changelog and the aggregates topic carry one
  record per changed course window instead of one per changed dimension (on two years
  of sparse data, 0.55M course windows against 3.4M dimensions). An enriched event
  whose raw offset is not above ``hw`` was already counted (a re-delivery after a
  crash, or a batch re-processed because its table write did not land) and is
  skipped. Within one enriched partition the events of one raw partition arrive in
  raw-offset order, which is what makes this exact;
- distinct learners are a set, so counting one twice is harmless by construction;
- each enriched partition has a :class:`PartitionState` holding one event-time
  watermark per raw partition that feeds it (the highest event time seen from that raw
  partition). Lateness is judged against the event's own raw partition: the raw
  partitions are consumed at different speeds (a backfill of one learner's old file
  next to another's live tail), so a watermark over all of them would call the slower
  ones' events late. A window that ends before the *lowest* of those marks minus grace
  is final and can be forgotten;
- an event older than its raw partition's ``watermark - grace`` is *late*: its window
  may be forgotten already, so it is not counted here (a count from a forgotten cell
  would start again from zero). It is counted in ``late`` and its windows are named in
  the batch's ``recount``: the count agent emits one ``recount`` row per such window,
  and ClickHouse's ``window_counts_final`` computes a window that has one from its
  stored events instead of from the stream's counts (see docs/architecture.md). Late
  events thus reach their windows, and the live edge is not held back by them.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Iterable, Optional

import msgspec

from edxstream.core.records import RECOUNT, WindowCount

UTC = timezone.utc

CATEGORY = "course_category"
ACTION = "course_action"
LEARNERS = "course_learners"
KINDS = (CATEGORY, ACTION, LEARNERS)
# RECOUNT (edxstream.core.records): a WindowCount of that kind says "count this window
# from the stored events": it holds no count (0), only the window (see the module doc).

# Table keys are strings (Faust tables need hashable keys that survive a JSON round
# trip through the changelog). The unit separator never occurs in course ids, event
# names or route templates, unlike "|" or ":".
SEP = "\x1f"


class Cell(msgspec.Struct, array_like=True):
    """The state of one (course, window size, window start) key."""

    # raw partition -> highest raw offset counted in this window
    hw: dict[int, int] = msgspec.field(default_factory=dict)
    # version of the last emission of this window (shared by its dimensions: it only has
    # to grow for each of them)
    version: int = 0
    categories: dict[str, int] = msgspec.field(default_factory=dict)
    actions: dict[str, int] = msgspec.field(default_factory=dict)
    # distinct learners; the course_learners count is its size
    learners: set[str] = msgspec.field(default_factory=set)

    def count(self, kind: str, dimension: str) -> int:
        if kind == CATEGORY:
            return self.categories.get(dimension, 0)
        if kind == ACTION:
            return self.actions.get(dimension, 0)
        return len(self.learners)


class PartitionState(msgspec.Struct, array_like=True):
    """Per enriched partition: event-time watermark and the counters of what was seen."""

    watermark: float = 0.0  # highest event time seen from any raw partition (for display)
    late: int = 0  # events that went the late way (counted from the stored events)
    counted: int = 0
    # raw partition -> highest raw offset already reflected in the counters above
    hw: dict[int, int] = msgspec.field(default_factory=dict)
    # raw partition -> highest event time seen from it, epoch seconds
    marks: dict[int, float] = msgspec.field(default_factory=dict)
    # the next enriched-topic offset expected in this partition (see stream_app.positions)
    next_offset: Optional[int] = None
    # While set: the partition is being counted again from an earlier offset (its state
    # came back older than what was already counted and emitted), so its windows are not
    # emitted until the counting has passed this offset; then all of them are, once
    # (see stream_app.factory.Counter).
    hold_until: Optional[int] = None
    # raw partition -> highest raw offset written into a window cell (kept per batch from
    # the changed cells): the counts table holds a cell that high unless it lost writes
    cells_hw: dict[int, int] = msgspec.field(default_factory=dict)

    def closed_before(self, raw_partitions: int, grace: float) -> float:
        """Windows ending at or before this time can change no more. Until every raw
        partition has been seen, nothing is final: an unseen one may bring anything."""
        if len(self.marks) < raw_partitions or not self.marks:
            return float("-inf")
        return min(self.marks.values()) - grace


_cell_enc = msgspec.json.Encoder()
_cell_dec = msgspec.json.Decoder(Cell)
_pstate_dec = msgspec.json.Decoder(PartitionState)


def encode_state(value: Cell | PartitionState) -> bytes:
    return _cell_enc.encode(value)


def decode_cell(data: bytes) -> Cell:
    return _cell_dec.decode(data)


def decode_partition_state(data: bytes) -> PartitionState:
    return _pstate_dec.decode(data)


class Item(msgspec.Struct, array_like=True, frozen=True):
    """What counting needs from one enriched event. The enrich agent sends these to the
    count agent in batches (the tally topic), as msgpack arrays."""

    time: float  # event time, epoch seconds
    course: str  # "" when the event belongs to no course (not counted per course)
    category: str
    action: str
    learner: Optional[str]  # user id, else username; None for anonymous events
    raw_partition: int
    # the line's position in its raw partition (edxstream.core.frames.position): grows with
    # every line, so "not above what a key has counted" means "counted already"
    raw_offset: int


_tally_enc = msgspec.msgpack.Encoder()
_tally_dec = msgspec.msgpack.Decoder(list[Item])


def encode_tally(items: list[Item]) -> bytes:
    return _tally_enc.encode(items)


def decode_tally(data: bytes) -> list[Item]:
    return _tally_dec.decode(data)


def window_start(t: float, size: int) -> int:
    return int(t // size) * size


def cell_key(partition: int, course: str, size: int, start: int) -> str:
    return SEP.join((str(partition), course, str(size), str(start)))


def split_key(key: str) -> tuple[int, str, int, int]:
    p, course, size, start = key.split(SEP)
    return int(p), course, int(size), int(start)


def aggregate_key(course: str, size: int, start: int) -> str:
    """The key of an aggregates record (the changed counts of one course window).
    Records are placed in the partition of their course (as on the enriched topic)."""
    return f"{course}|{size}|{start}"


@dataclass
class BatchResult:
    changed: dict[str, Cell] = field(default_factory=dict)  # keys whose value changed
    # per changed key, the (kind, dimension) pairs whose count changed in this batch:
    # only those are emitted (the others' last emission still stands)
    dims: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    state: PartitionState = field(default_factory=PartitionState)
    counted: int = 0  # events counted now (not already counted)
    skipped: int = 0  # (window, event) pairs already counted before
    late: int = 0  # events that went the late way in this batch (not counted before)
    # (course, window size, window start) of every window a late event of this batch
    # falls in: counted from the stored events from now on
    recount: set[tuple[str, int, int]] = field(default_factory=set)


def count_batch(
    items: Iterable[Item],
    partition: int,
    windows: Iterable[int],
    grace: float,
    state: PartitionState,
    get_cell: Callable[[str], Optional[Cell]],
) -> BatchResult:
    """Apply a batch of events of one enriched partition, in order.

    ``get_cell`` returns the stored cell of a key (or None). Cells are updated in place
    and returned in ``changed``; ``state`` is updated in place. Each key appears once in
    the result however many events touched it, so the caller writes it once per batch.
    """
    sizes = tuple(windows)
    changed: dict[str, Cell] = {}
    dims: dict[str, set[tuple[str, str]]] = {}
    res = BatchResult(changed=changed, dims=dims, state=state)
    hw = state.hw
    marks = state.marks
    for it in items:
        rp = it.raw_partition
        new_here = it.raw_offset > hw.get(rp, -1)
        if new_here:
            hw[rp] = it.raw_offset
        mark = marks.get(rp)
        if mark is not None and it.time < mark - grace:
            if new_here:
                state.late += 1
                res.late += 1
            if it.course:  # a re-delivery names the windows again: harmless, idempotent
                for size in sizes:
                    res.recount.add((it.course, size, window_start(it.time, size)))
            continue
        if mark is None or it.time > mark:
            marks[rp] = it.time
        if it.time > state.watermark:
            state.watermark = it.time
        if new_here:
            state.counted += 1
        counted_now = False
        if not it.course:
            res.counted += new_here
            continue
        for size in sizes:
            key = cell_key(partition, it.course, size, window_start(it.time, size))
            cell = changed.get(key)
            if cell is None:
                cell = get_cell(key)
                if cell is None:
                    cell = Cell()
            if it.raw_offset <= cell.hw.get(rp, -1):
                res.skipped += 1
                continue
            cell.hw[rp] = it.raw_offset
            cats, acts = cell.categories, cell.actions
            cats[it.category] = cats.get(it.category, 0) + 1
            acts[it.action] = acts.get(it.action, 0) + 1
            d = dims.get(key)
            if d is None:
                d = dims[key] = set()
                changed[key] = cell
            d.add((CATEGORY, it.category))
            d.add((ACTION, it.action))
            if it.learner is not None and it.learner not in cell.learners:
                cell.learners.add(it.learner)
                d.add((LEARNERS, ""))
            counted_now = True
        res.counted += counted_now
    chw = state.cells_hw
    for cell in changed.values():  # per changed window, not per event
        for rp, off in cell.hw.items():
            if off > chw.get(rp, -1):
                chw[rp] = off
    return res


def cells_behind(state: PartitionState, cells: Iterable[Cell]) -> bool:
    """Whether the counts table lost writes the partition state saw done: no cell holds
    the highest raw offset the state says went into a cell. (A cell forgotten as final
    can hold it, which reads as lost: counting again then costs time, not exactness.)"""
    want = dict(state.cells_hw)
    for cell in cells:
        for rp, off in cell.hw.items():
            if want.get(rp, -1) <= off:
                want.pop(rp, None)
        if not want:
            return False
    return bool(want)


def next_version(cell: Cell, now_us: int) -> int:
    """Strictly increasing per key, and close to wall time so that a consumer that
    keeps the highest version also keeps the newest value after a restart."""
    return max(cell.version + 1, now_us)


def all_dims(cell: Cell) -> set[tuple[str, str]]:
    """Every (kind, dimension) a cell counts: what emitting the whole window means."""
    dims = {(CATEGORY, c) for c in cell.categories} | {(ACTION, a) for a in cell.actions}
    if cell.learners:
        dims.add((LEARNERS, ""))
    return dims


def window_counts(key: str, cell: Cell, dims: Iterable[tuple[str, str]]) -> list[WindowCount]:
    """The full value of each given dimension of a window, as the sinks store it."""
    return window_counts_of(split_key(key), cell, dims)


def window_counts_of(
    parts: tuple[int, str, int, int], cell: Cell, dims: Iterable[tuple[str, str]]
) -> list[WindowCount]:
    _, course, size, start = parts
    window_start_at = datetime.fromtimestamp(start, UTC)
    return [
        WindowCount(
            kind=kind,
            course_id=course,
            dimension=dim,
            window_seconds=size,
            window_start=window_start_at,
            count=cell.count(kind, dim),
            version=cell.version,
        )
        for kind, dim in sorted(dims)
    ]


def recount_rows(recount: Iterable[tuple[str, int, int]], version: int) -> list[WindowCount]:
    """The ``recount`` rows naming windows that late events fall in."""
    return [
        WindowCount(
            kind=RECOUNT,
            course_id=course,
            dimension="",
            window_seconds=size,
            window_start=datetime.fromtimestamp(start, UTC),
            count=0,
            version=version,
        )
        for course, size, start in sorted(recount)
    ]


def is_cell_key(key: str) -> bool:
    """False for keys of another layout: the table's sync marker, or a cell of the
    one-cell-per-dimension layout that came before (see docs/architecture.md)."""
    return key.count(SEP) == 3


def window_end(key: str) -> float:
    """When the window of a cell key ends (epoch seconds). A window is final, and can be
    forgotten, once it ends at or before the oldest time an event may still have (see
    :meth:`PartitionState.closed_before`). A key of an older layout gets -inf, so that
    expiry clears it away at once."""
    if not is_cell_key(key):
        return float("-inf")
    _, _, size, start = split_key(key)
    return start + size


class ExpiryQueue:
    """The open windows of one partition in the order they end, so that forgetting the
    final ones touches only them.

    Scanning the whole table instead costs a pass over every open window, so it could only
    run every few seconds; a backfill counts weeks of event time in that while, and their
    windows piled up in memory until the next pass. With the queue, expiry runs after
    every batch and costs one heap push per new window."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, str]] = []
        self._known: set[str] = set()

    def __len__(self) -> int:
        return len(self._known)

    def add(self, key: str, end: Optional[float] = None) -> None:
        """Remember a window (known ones are ignored: a window changes many times)."""
        if key in self._known:
            return
        self._known.add(key)
        heapq.heappush(self._heap, (window_end(key) if end is None else end, key))

    def pop_ended(self, closed_before: float) -> list[str]:
        """The keys of the windows ending at or before ``closed_before``, forgotten here."""
        heap, out = self._heap, []
        while heap and heap[0][0] <= closed_before:
            key = heapq.heappop(heap)[1]
            self._known.discard(key)
            out.append(key)
        return out
