"""``edxstream stack up|down|status``."""

from __future__ import annotations

import json

from edxstream.core import settings as settings_mod
from edxstream.ops import stack

# exit status of `stack status` (and `stack up`, which ends with it); 2 stays what it is
# for every command, an error to fix. 3 is "not running", as for an init script's status.
EXIT_CODES = {"up": 0, "degraded": 1, "down": 3}


def register(sub) -> None:
    p = sub.add_parser(
        "stack",
        help="start, stop or check the local services (Kafka broker, MariaDB, ClickHouse)",
        description="Start, stop or check the local services, with no Docker needed: a Kafka broker (Tansu), "
        "the machine's MariaDB and the embedded ClickHouse engine, with their data under EDXSTREAM_HOME. "
        "`status` also lists the edxstream processes running under that home (shipper, stream app, sinks) "
        "and those that have exited, with when and how.",
        epilog="exit status of up and status: 0 every service answers (up), 1 some do not or a running "
        "process reports trouble (degraded), 3 none answers (down), 2 an error to fix.",
    )
    p.add_argument(
        "action",
        choices=["up", "down", "status"],
        help="up: start what is not running (safe to repeat); down: stop what up started; "
        "status: what answers and what runs",
    )
    p.add_argument("--json", action="store_true", help="print the status as one JSON object (for scripts)")
    p.set_defaults(func=run)


def _value(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, dict):
        return f"{len(v)} entries"
    if isinstance(v, list):
        return f"{len(v)} items"
    if isinstance(v, str) and (not v or any(c.isspace() for c in v)):
        return json.dumps(v)
    return str(v)


def format_status(services: list[stack.ServiceStatus], comps: list[stack.ComponentStatus], state: str) -> str:
    lines = [f"{st.name:<11} {st.address:<45} {'answers' if st.answers else 'DOWN':<8} {st.detail}" for st in services]
    running = [c for c in comps if c.running]
    exited = [c for c in comps if not c.running]
    if running:
        lines.append("\nrunning:")
        for c in running:
            fields = " ".join(f"{k}={_value(v)}" for k, v in c.metrics.items())
            lines.append(f"  {c.name:<16} pid {c.pid}  {fields}  (last report {c.last_report})")
    if exited:
        lines.append("\nexited:")
        for c in exited:
            lines.append(f"  {c.name:<16} at {c.exited_at}: {c.exit}")
    down = [st.name for st in services if not st.answers]
    troubled = [c.name for c in running if not c.healthy]
    why = "; ".join(
        filter(
            None,
            [
                f"not answering: {', '.join(down)}" if down else "",
                f"trouble reported by: {', '.join(troubled)}" if troubled else "",
            ],
        )
    )
    lines.append(f"\nstatus: {state}" + (f" ({why})" if why else ""))
    return "\n".join(lines)


def run(args) -> int:
    s = settings_mod.load()
    if args.action == "down":
        for name, what in stack.down(s):
            print(f"{name:<11} {what}")
        return 0
    if args.action == "up":
        for name, what in stack.up(s):
            print(f"{name:<11} {what}")
        print()
    services = stack.status(s)
    comps = stack.components(s)
    state = stack.overall(services, [c for c in comps if c.running])
    if args.json:
        print(
            json.dumps(
                {
                    "status": state,
                    "services": [
                        {"name": st.name, "address": st.address, "answers": st.answers, "detail": st.detail}
                        for st in services
                    ],
                    "processes": [
                        {
                            "name": c.name,
                            "pid": c.pid,
                            "running": c.running,
                            "healthy": c.healthy,
                            "last_report": c.last_report,
                            "exited_at": c.exited_at,
                            "exit": c.exit,
                            "metrics": c.metrics,
                        }
                        for c in comps
                    ],
                },
                indent=2,
            )
        )
    else:
        print(format_status(services, comps, state))
    return EXIT_CODES[state]
