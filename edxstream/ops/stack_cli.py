"""``edxstream stack up|down|status``."""

from __future__ import annotations

import json
import os

from edxstream.core import settings as settings_mod
from edxstream.ops import stack


def register(sub) -> None:
    p = sub.add_parser("stack", help="start, stop and report the local services (no Docker needed)")
    p.add_argument("action", choices=["up", "down", "status"])
    p.set_defaults(func=run)


def metrics_files(s) -> list:
    """Components running under this home publish their metrics as run/*.metrics.json."""
    run_dir = s.data_dir / "run"
    return sorted(run_dir.glob("*.metrics.json")) if run_dir.exists() else []


def _alive(pid) -> bool:
    """Whether the process that wrote a metrics file still runs (a file without a pid: yes)."""
    if not isinstance(pid, int):
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run(args) -> int:
    s = settings_mod.load()
    if args.action == "up":
        for name, what in stack.up(s):
            print(f"{name:<11} {what}")
        args.action = "status"
    if args.action == "down":
        for name, what in stack.down(s):
            print(f"{name:<11} {what}")
        return 0
    statuses = stack.status(s)
    for st in statuses:
        print(f"{st.name:<11} {st.address:<45} {'answers' if st.answers else 'DOWN':<8} {st.detail}")
    for path in metrics_files(s):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not _alive(data.get("pid")):
            continue  # an exited component's last figures: not running, not listed
        fields = " ".join(f"{k}={v}" for k, v in data.items())
        print(f"{path.name.removesuffix('.metrics.json'):<11} {fields}")
    return 0 if all(st.answers for st in statuses) else 1
