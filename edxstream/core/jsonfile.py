"""Small JSON files that other processes read while they change (checkpoints, metrics,
the query endpoint's address): written to a temporary file beside the target and moved
over it with ``os.replace``, so a reader sees the old or the new content, never half a
file."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from edxstream.core.settings import Settings


def reconcile_file(settings: Settings) -> Path:
    """Where ``edxstream reconcile`` leaves its last outcome (the operators' page reads it)."""
    return settings.data_dir / "run" / "reconcile.json"


def write_json(path: Path, data: Any, *, private: bool = False, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` as indented JSON, atomically; its folder is created.

    ``private``: readable by the owner only (the file holds a secret). ``durable``: the
    bytes reach the disk before the rename, so a machine crash too leaves the old or the
    new file (a checkpoint); without it a process crash does."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS, default=str)
    # one temporary name per writer: two processes or threads never share one
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}.{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
