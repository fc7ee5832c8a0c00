"""Shipper metrics: logged periodically and written to ``run/<name>.metrics.json``,
which ``edxstream stack status`` prints."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from edxstream.core.settings import Settings

log = logging.getLogger(__name__)


class MetricsReporter:
    def __init__(self, settings: Settings, name: str, write_every: float = 2.0, log_every: float = 30.0):
        self.path = settings.data_dir / "run" / f"{name}.metrics.json"
        self.write_every = write_every
        self.log_every = log_every
        self._last_write = 0.0
        self._last_log = time.monotonic()

    def maybe_report(self, snapshot, force: bool = False) -> None:
        """``snapshot`` is a callable returning the metrics dict (built only when due)."""
        now = time.monotonic()
        write_due = force or now - self._last_write >= self.write_every
        log_due = force or now - self._last_log >= self.log_every
        if not (write_due or log_due):
            return
        data = snapshot()
        if write_due:
            self._last_write = now
            write_json(self.path, {"pid": os.getpid(), **data})  # stack status checks it still runs
        if log_due:
            self._last_log = now
            log.info("shipped %s", " ".join(f"{k}={v}" for k, v in data.items()))


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)
