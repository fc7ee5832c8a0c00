"""Catching records the consumer skipped.

Faust commits the offsets of acknowledged events and treats a jump in the offsets it
reads as a gap to commit over (compacted or transactional topics have such jumps). When a
rebalance lands between a fetch and the seek back to the committed offsets, the consumer
can resume past records it fetched but never handed to the agent; Faust then commits
over them and they are never processed (seen here with two workers joining and leaving).

So each agent keeps, in its own recoverable table, the next offset it expects from each
source partition, and checks every batch against it: a record past that offset means the
records in between were skipped. The agent drops that partition's rest of the batch and
seeks the partition back; the skipped records arrive next, then the dropped ones again.
Replays below the expected offset pass (the agents' own dedup handles them).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional


def split_gaps(
    events: Iterable[Any],
    expected: dict[int, int],
    offset_of=lambda e: (e.message.partition, e.message.offset),
) -> tuple[list[Any], dict[int, int]]:
    """Keep the events that follow on from ``expected`` (partition -> next offset; a
    partition missing there accepts anything), in order, and update ``expected`` in
    place. Returns the kept events and {partition: offset to seek back to} for each
    partition whose records jumped past what was expected."""
    kept: list[Any] = []
    gaps: dict[int, int] = {}
    for e in events:
        p, o = offset_of(e)
        if p in gaps:
            continue
        nxt: Optional[int] = expected.get(p)
        if nxt is not None and o > nxt:
            gaps[p] = nxt
            continue
        kept.append(e)
        if nxt is None or o + 1 > nxt:
            expected[p] = o + 1
    return kept, gaps
