"""File fingerprints: which file is this, whatever its name or inode now?

Like Vector's file source, a file is recognised by a hash of its first line (up to
``FP_MAX_BYTES``), so ``tracking.log`` renamed to ``tracking.log.1`` (or compressed to
``tracking.log-20240101.gz``: the hash is taken over the decompressed bytes) is the same
file with the same offsets. Tracking lines carry a microsecond timestamp, so two log
files practically never share a first line; files that do (hand-made copies) are taken
for one file. A file whose first line is not complete yet has no fingerprint yet.
"""

from __future__ import annotations

import os
from hashlib import blake2b

from edxstream.core.logfiles import BrokenLog, chunks, close_log, open_log

FP_MAX_BYTES = 64 * 1024


def fingerprint_of_head(head: bytes, complete: bool = False) -> str | None:
    """The fingerprint of a file that starts with ``head``; None while the first line is
    still being written (no newline in the first ``FP_MAX_BYTES`` and the file may grow),
    unless ``complete`` says the file will not grow (then a short file is its own head)."""
    nl = head.find(b"\n", 0, FP_MAX_BYTES)
    if nl >= 0:
        first = head[: nl + 1]
    elif len(head) >= FP_MAX_BYTES:
        first = head[:FP_MAX_BYTES]
    elif complete and head:
        first = head
    else:
        return None
    return blake2b(first, digest_size=8).hexdigest()


def fingerprint_fd(fd: int, complete: bool = False) -> str | None:
    """Fingerprint of an open plain file, read with pread so the file position is left alone."""
    return fingerprint_of_head(os.pread(fd, FP_MAX_BYTES, 0), complete)


def fingerprint_path(path: str | os.PathLike, complete: bool = False) -> str | None:
    """Fingerprint of a file on disk, plain or compressed (see edxstream.core.logfiles);
    a file whose rest cannot be read is complete at what could be."""
    f = open_log(path)
    head = b""
    try:
        for data in chunks(f, FP_MAX_BYTES):
            head += data
            if len(head) >= FP_MAX_BYTES or b"\n" in data:
                break
    except BrokenLog:
        complete = True  # nothing more will come of it
    finally:
        close_log(f)
    return fingerprint_of_head(head[:FP_MAX_BYTES], complete)
