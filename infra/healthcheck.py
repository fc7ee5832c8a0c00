"""Container health check for a pipeline component: healthy while the component keeps
rewriting its metrics file (``$EDXSTREAM_HOME/run/<name>.metrics.json``; the shipper,
the stream app and the sinks all do, every few seconds, busy or idle).

    python infra/healthcheck.py NAME [MAX_AGE_SECONDS]

Standard library only, so the check costs no import of the pipeline itself."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def metrics_age(home: Path, name: str, now: float | None = None) -> float | None:
    """Seconds since the component last wrote its metrics, or None if it never did."""
    path = home / "run" / f"{name}.metrics.json"
    try:
        mtime = path.stat().st_mtime
    except OSError:
        return None
    return (time.time() if now is None else now) - mtime


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print(__doc__.splitlines()[-3].strip(), file=sys.stderr)
        return 2
    name, max_age = argv[0], float(argv[1]) if len(argv) > 1 else 60.0
    age = metrics_age(Path(os.environ.get("EDXSTREAM_HOME", ".edxstream")), name)
    if age is None:
        print(f"{name}: no metrics file yet", file=sys.stderr)
        return 1
    if age > max_age:
        print(f"{name}: metrics last written {age:.0f}s ago (limit {max_age:.0f}s)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
