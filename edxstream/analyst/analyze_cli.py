"""``edxstream analyze``: learner segments, predictions, correlations, recommendations and
suggestions, written to the analysis tables (docs/analysts.md), once or every N minutes.

It reads the events through the analyst query path and writes the analysis tables with
the same store (:class:`edxstream.core.chdb_server.SharedStore`): on a ClickHouse server
directly; on the embedded engine through the ClickHouse sink while it holds the folder,
else on the folder itself, which it hands over to a sink that starts meanwhile.
"""

from __future__ import annotations

import sys
import time

from edxstream.core.errors import UserError


def register(sub) -> None:
    a = sub.add_parser(
        "analyze",
        help="segments, predictions, correlations, recommendations and suggestions per course",
        description="Fit the analysis models on the events in ClickHouse and write their results, with the run id, "
        "its time and quality figures, to the analysis tables (see docs/analysts.md). A course with too few "
        "learners gets a 'not enough data' row instead of a fit.",
    )
    a.add_argument("--course", action="append", help="only this course id (repeatable; default: every course)")
    a.add_argument("--as-of", dest="as_of", help="ISO date/time to analyse up to (default: the latest event)")
    a.add_argument("--every", type=float, metavar="MINUTES", help="run again every MINUTES minutes until stopped")
    a.set_defaults(func=run_analyze)


def run_analyze(args) -> int:
    from edxstream.analyst.analysis import run as analysis
    from edxstream.analyst.cli import parse_when
    from edxstream.core import settings as settings_mod
    from edxstream.core.chdb_server import SharedStore

    if args.every is not None and args.every <= 0:
        raise UserError("--every takes a positive number of minutes")
    settings = settings_mod.load()
    as_of = parse_when(args.as_of)
    store = SharedStore(settings)
    try:
        while True:
            summary = analysis.run(store, store, as_of, args.course, say=lambda s: print(s, file=sys.stderr))
            print_summary(summary)
            if args.every is None:
                return 0
            time.sleep(args.every * 60)
    finally:
        store.close()


def print_summary(summary) -> None:
    if not summary.courses:
        print("no course events in ClickHouse yet: nothing to analyse (run the pipeline first)", file=sys.stderr)
        return
    print(f"run {summary.run_id} as of {summary.as_of:%Y-%m-%d %H:%M} UTC")
    for c in summary.courses:
        print(c.course_id)
        for s in c.steps:
            detail = s["message"] if s["status"] != "ok" else s["quality"]
            print(f"  {s['step']:<16} {s['status']:<16} {s['learners']:>7} learners  {detail}")
