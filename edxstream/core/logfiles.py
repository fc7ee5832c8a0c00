"""Reading tracking-log files: the one reader behind ``backfill``, ``ship`` and ``inspect``.

Every command that reads a log on disk reads it through this module, so they agree on
what a log is and on what happens when one is damaged:

- **plain or gzip** is decided by the file's first two bytes (gzip's magic number),
  never by its name: a ``.gz`` that logrotate never compressed is read as text, and a
  compressed file without the suffix is decompressed;
- a **truncated or corrupt** ``.gz`` gives every line that can be decompressed, then
  :func:`chunks` raises :class:`BrokenLog` saying where the readable part ended (the
  caller ships what it got and records the rest as a dead letter), as ``zcat`` does;
- a file that **cannot be opened** (missing, a folder, no permission) raises
  :class:`UnreadableLog`, a :class:`~edxstream.core.errors.UserError` whose text is the
  one ``edxstream:`` line the user sees; a command reading several files reports it
  and goes on with the others;
- a **folder** stands for the tracking-log files directly inside it, chosen by their
  name (``EDXSTREAM_LOG_FILE_PATTERN``), so a manifest or a README beside the logs is
  not shipped as events;
- a **line longer than the limit** is cut off while it streams (:class:`Lines`): its
  first bytes are kept for the dead letter and the rest is skipped up to its newline,
  so memory stays bounded and time linear however long the line is.
"""

from __future__ import annotations

import gzip
import os
import re
import sys
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from edxstream.core.errors import UserError

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20  # bytes per read
HEAD_BYTES = 64 * 1024  # how much of an overlong line its dead letter keeps


class UnreadableLog(UserError):
    """A log file that cannot be opened or read at all; the message names it and says why."""


class BrokenLog(Exception):
    """The rest of a file cannot be read (a truncated or corrupt ``.gz``, an I/O error):
    everything before it was yielded."""


def is_gzip(head: bytes) -> bool:
    """Whether a file's first bytes are gzip's magic number."""
    return head[:2] == GZIP_MAGIC


def is_gzip_file(path: str | os.PathLike) -> bool:
    """Whether the file starts with gzip's magic number (False when it cannot be read)."""
    try:
        with open(path, "rb") as f:
            return is_gzip(f.read(2))
    except OSError:
        return False


def open_log(path: str | os.PathLike) -> BinaryIO:
    """A binary reader of a log's (decompressed) bytes; ``-`` is standard input.
    Raises :class:`UnreadableLog` when the file cannot be opened."""
    if str(path) == "-":
        stream: BinaryIO = sys.stdin.buffer
        head = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
        return cast(BinaryIO, gzip.GzipFile(fileobj=stream, mode="rb")) if is_gzip(head) else stream
    try:
        f = open(path, "rb")
        head = f.read(2)
    except FileNotFoundError:
        raise UnreadableLog(f"{path}: no such file") from None
    except IsADirectoryError:
        raise UnreadableLog(f"{path}: is a directory; give the log files") from None
    except PermissionError:
        raise UnreadableLog(f"{path}: permission denied") from None
    except OSError as exc:
        raise UnreadableLog(f"{path}: cannot read: {exc.strerror or exc}") from None
    f.seek(0)
    return cast(BinaryIO, gzip.GzipFile(fileobj=f, mode="rb") if is_gzip(head) else f)


def raw_file(stream: BinaryIO) -> BinaryIO:
    """The file on disk under a reader from :func:`open_log` (for progress in bytes read)."""
    return getattr(stream, "fileobj", None) or stream


def close_log(stream: BinaryIO) -> None:
    """Close a reader from :func:`open_log` and the file under it (never standard input)."""
    under = raw_file(stream)
    for s in (stream, under):
        if s is not sys.stdin.buffer:
            s.close()


def chunks(stream: BinaryIO, size: int = CHUNK) -> Iterator[bytes]:
    """The stream's bytes, ``size`` at a time. A gzip stream returns what it could
    decompress before a truncation or corruption, then this raises :class:`BrokenLog`.

    ``read1`` (one read of the file below) and not ``read``: a buffered ``read`` that
    meets the end of a truncated ``.gz`` drops what it had decompressed in that call."""
    read = getattr(stream, "read1", None) or stream.read
    while True:
        try:
            data = read(size)
        except (EOFError, zlib.error, OSError) as exc:  # gzip.BadGzipFile is an OSError
            raise BrokenLog(_why(exc)) from None
        if not data:
            return
        yield data


def _why(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the compressed file ends early (truncated)"
    if isinstance(exc, (zlib.error, gzip.BadGzipFile)):
        return f"the compressed data is corrupt ({exc})"
    return f"read error ({getattr(exc, 'strerror', None) or exc})"


def skip_to(stream: BinaryIO, offset: int) -> None:
    """Move a reader from :func:`open_log` to byte ``offset`` of its decompressed bytes.
    Raises :class:`BrokenLog` when the file ends (or breaks) before it."""
    try:
        stream.seek(offset)
    except (EOFError, zlib.error, OSError) as exc:
        raise BrokenLog(_why(exc)) from None


# -- folders ------------------------------------------------------------------------------


def tracking_logs(folder: Path, pattern: str) -> list[Path]:
    """The files directly inside ``folder`` whose name matches ``pattern`` (a regular
    expression over the whole name), in no particular order."""
    rx = re.compile(pattern)
    return [c for c in folder.iterdir() if rx.fullmatch(c.name) and c.is_file()]


def expand(paths: list[str | os.PathLike], pattern: str) -> list[Path]:
    """Files named, and the tracking-log files inside folders named (not recursive),
    each once, in the order given (folders' files sorted by name). A path that does not
    exist raises :class:`UnreadableLog`; ordering for shipping is the caller's."""
    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(tracking_logs(p, pattern)))
        elif p.exists():
            files.append(p)
        else:
            raise UnreadableLog(f"{p} does not exist (no such file or folder)")
    unique = {f.resolve(): f for f in files}
    return list(unique.values())


# -- lines --------------------------------------------------------------------------------


@dataclass
class LongLine:
    """A line longer than the limit: where it starts, its first bytes, and its length
    without the newline (final once its newline came)."""

    offset: int
    head: bytes
    length: int


class Lines:
    """Splits a log's bytes, fed as they are read, into whole lines, in bounded memory.

    ``feed`` returns what is ready: ``(offset, block)`` pairs, where ``block`` holds whole
    lines, each ending with a newline, starting at byte ``offset`` of the file; and a
    :class:`LongLine` for a line that grew past ``limit`` bytes without a newline (it is
    cut off: its head is kept, the rest is skipped, and it is handed out when its
    newline arrives). A partial last line is held (as pieces, so a line arriving in many
    reads is joined once, not once per read) until its newline comes or ``finish``.
    """

    def __init__(self, limit: int, pos: int = 0):
        self.limit = limit
        self.pos = pos  # offset of the first byte not handed out yet
        self.held = 0  # bytes read past ``pos`` (the partial or overlong line so far)
        self._parts: list[bytes] = []
        self._long: LongLine | None = None

    @property
    def read_to(self) -> int:
        """Offset of the next byte to read."""
        return self.pos + self.held

    def feed(self, data: bytes) -> list[tuple[int, bytes] | LongLine]:
        out: list[tuple[int, bytes] | LongLine] = []
        if self._long is not None:
            nl = data.find(b"\n")
            if nl < 0:
                self._long.length += len(data)
                self.held += len(data)
                return out
            self._long.length += nl
            out.append(self._long)
            self._long = None
            self.pos += self.held + nl + 1
            self.held = 0
            data = data[nl + 1 :]
        last = data.rfind(b"\n")
        if last < 0:
            self._hold(data)
            return out
        end = last + 1
        head = data if end == len(data) else data[:end]
        if self._parts:
            self._parts.append(head)
            head = b"".join(self._parts)
            self._parts = []
        out.append((self.pos, head))
        self.pos += len(head)
        self.held = 0
        if end < len(data):
            self._hold(data[end:])
        return out

    def _hold(self, data: bytes) -> None:
        if not data:
            return
        self._parts.append(data)
        self.held += len(data)
        if self.held > self.limit:
            joined = b"".join(self._parts)
            self._long = LongLine(self.pos, joined[:HEAD_BYTES], self.held)
            self._parts = []

    def finish(self) -> list[tuple[int, bytes] | LongLine]:
        """What is left when the file will not grow: its last line without a newline."""
        out: list[tuple[int, bytes] | LongLine] = []
        if self._long is not None:
            out.append(self._long)
        elif self._parts:
            out.append((self.pos, b"".join(self._parts)))
        self._long, self._parts = None, []
        self.pos += self.held
        self.held = 0
        return out

    def rest(self) -> bytes:
        """The bytes held (the first of an overlong line), dropped from the reader: for a
        file whose rest cannot be read, they belong to its dead letter."""
        held = self._long.head if self._long is not None else b"".join(self._parts)
        self._long, self._parts = None, []
        self.pos += self.held
        self.held = 0
        return held


def iter_lines(stream: BinaryIO, limit: int) -> Iterator[tuple[int, bytes] | LongLine]:
    """(byte offset, line without its newline) for each line of a whole stream, and a
    :class:`LongLine` for each line longer than ``limit``; a final line without a
    newline counts too. Raises :class:`BrokenLog` after the last readable line."""
    lines = Lines(limit)
    for data in chunks(stream):
        for piece in lines.feed(data):
            yield from _split(piece)
    for piece in lines.finish():
        yield from _split(piece)


def _split(piece: tuple[int, bytes] | LongLine) -> Iterator[tuple[int, bytes] | LongLine]:
    if isinstance(piece, LongLine):
        yield piece
        return
    offset, block = piece
    start = 0
    while start < len(block):
        nl = block.find(b"\n", start)
        end = nl if nl >= 0 else len(block)
        line = block[start:end]
        yield offset + start, line[:-1] if line.endswith(b"\r") else line
        start = end + 1
