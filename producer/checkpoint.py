"""Checkpoints on disk: ``{fingerprint: {offset, path, size, done, updated}}``.

``offset`` is where reading resumes: the end of the longest run of lines, from the
file's start, that the broker has acknowledged. The file is replaced atomically
(``edxstream.core.jsonfile.write_json``: a temporary file, fsync, ``os.replace``), so a crash leaves the old or the new
checkpoint, never half of one.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edxstream.core.jsonfile import write_json

KEEP_ENTRIES = 2000  # rotated files remembered; older ones are forgotten first


@dataclass
class Entry:
    offset: int
    path: str
    size: int = 0
    done: bool = False
    updated: float = 0.0


class CheckpointStore:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.entries: dict[str, Entry] = {}
        self._dirty = False
        if self.path.exists():
            try:
                raw = json.loads(self.path.read_text())
            except ValueError as exc:
                from edxstream.core.errors import UserError

                raise UserError(f"checkpoint file {self.path} is corrupt ({exc}); move it away to start over") from exc
            self.entries = {fp: Entry(**e) for fp, e in raw.items()}

    def get(self, fp: str) -> Entry | None:
        return self.entries.get(fp)

    def set(self, fp: str, offset: int, path: str, size: int, done: bool = False) -> None:
        old = self.entries.get(fp)
        if old is not None and (old.offset, old.path, old.size, old.done) == (offset, path, size, done):
            return
        self.entries[fp] = Entry(offset=offset, path=path, size=size, done=done, updated=time.time())
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        if len(self.entries) > KEEP_ENTRIES:
            keep = sorted(self.entries.items(), key=lambda kv: kv[1].updated)[-KEEP_ENTRIES:]
            self.entries = dict(keep)
        write_json(self.path, {fp: asdict(e) for fp, e in self.entries.items()}, durable=True)
        self._dirty = False


def ship_store_path(checkpoints: Path, followed: Path) -> Path:
    """One store per followed path, so two shippers on one host never share a file."""
    digest = hashlib.sha1(str(Path(followed).resolve()).encode()).hexdigest()[:12]
    return checkpoints / f"ship-{Path(followed).name}-{digest}.json"


def backfill_store_path(checkpoints: Path) -> Path:
    return checkpoints / "backfill.json"


def shipped_elsewhere(checkpoints: Path, fp: str, size: int) -> bool:
    """Whether any shipper's store has this file's lines acknowledged through ``size``
    bytes (the live file was followed to its end before it was rotated and compressed)."""
    for path in sorted(Path(checkpoints).glob("ship-*.json")):
        try:
            entry = json.loads(path.read_text()).get(fp)
        except (OSError, ValueError):
            continue
        if entry and entry.get("offset", 0) >= size:
            return True
    return False
