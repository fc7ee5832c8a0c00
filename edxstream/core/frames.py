"""Raw records that hold several tracking-log lines.

The stream app is a Faust app, and Faust pays a fixed cost for every record it hands to
an agent (about 100 µs here: more than parsing the line). With one line per record it
cannot go past about 10,000 lines/s on one core, whatever the agent does. So the
shipper puts the lines of one read that go to the same partition into one record.

A record's value is its lines joined by ``\\n`` (a line never holds one). Headers:

- ``source``, ``fp``: the file the lines came from and its fingerprint;
- ``offset``: the byte offset of the first line in that file;
- ``offsets``: only when the record holds more than one line: for each further line,
  how many bytes after the previous line it starts (comma-separated). Lines of one
  record are in file order but need not be adjacent: each partition gets the lines of
  its own learners.

A record without ``offsets`` is one line, which is what ``kcat -P -l`` and other
shippers write; the stream app reads both.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Optional

OFFSETS = "offsets"
# Positions of lines inside the raw topic, for deduplication downstream: the record's
# Kafka offset shifted left by LINE_BITS, plus the line's index in the record. It grows
# with every line of a raw partition, as a Kafka offset does with every record.
LINE_BITS = 16
MAX_LINES = (1 << LINE_BITS) - 1


class FrameError(ValueError):
    """A record whose ``offsets`` header does not match its lines."""


def offsets_header(offsets: list[int]) -> bytes:
    """The ``offsets`` header for lines starting at these byte offsets (two or more)."""
    return b",".join([b"%d" % (b - a) for a, b in pairwise(offsets)])


def split(value: bytes, offset: Optional[int], more: Optional[bytes]) -> list[tuple[Optional[int], bytes]]:
    """(byte offset, line) for each line of a raw record. ``offset`` and ``more`` are its
    ``offset`` and ``offsets`` headers (None when absent)."""
    if more is None:
        return [(offset, value)]
    lines = value.split(b"\n")
    steps = more.split(b",")
    if len(steps) != len(lines) - 1 or offset is None:
        raise FrameError(
            f"a record of {len(lines)} lines has {len(steps)} offset steps"
            + ("" if offset is not None else " and no offset header")
        )
    out: list[tuple[Optional[int], bytes]] = [(offset, lines[0])]
    o = offset
    try:
        for step, line in zip(steps, lines[1:], strict=True):  # lengths checked above
            o += int(step)
            out.append((o, line))
    except ValueError as exc:
        raise FrameError(f"bad offsets header: {exc}") from None
    return out


def position(kafka_offset: int, index: int) -> int:
    """A line's position: its record's Kafka offset and its index in the record, as one growing integer."""
    return (kafka_offset << LINE_BITS) | index
