"""``edxstream query``, ``export`` and ``report``: what analysts and course teams run.

All three work on a ClickHouse server and on the embedded engine, also while the
pipeline runs (then through the ClickHouse sink's query endpoint, see
``edxstream.core.chdb_server``). They read the tables as stored: pseudonymized when
``settings.pseudonymize`` is on.
"""

from __future__ import annotations

import io
import sys
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from edxstream.core import settings as settings_mod
from edxstream.core.errors import UserError

if TYPE_CHECKING:
    from edxstream.core.chdb_server import Runner

# clickhouse_connect takes about half of the command's start-up to import, so it (and the
# query path built on it) is imported when a command runs, not for `edxstream --help`.


def format_query_value(value) -> str:
    """ClickHouse's literal of a value."""
    from clickhouse_connect.driver.binding import format_query_value as literal

    return literal(value)


def open_runner(settings) -> Runner:
    """The query path to the configured ClickHouse (see edxstream.core.chdb_server)."""
    from edxstream.core import chdb_server

    return chdb_server.open_runner(settings)


QUERY_FORMATS = {
    "table": "PrettyCompactMonoBlock",
    "csv": "CSVWithNames",
    "tsv": "TabSeparatedWithNames",
    "json": "JSONEachRow",
}
# CSV that pandas and spreadsheets read typed: an empty field for NULL (ClickHouse writes
# \N, which makes a numeric column text), times in ISO 8601 with a Z; the header is the
# format's (CSVWithNames).
CSV_SETTINGS = {"format_csv_null_representation": "", "date_time_output_format": "iso"}
# Rows per export query: a course's events are read a bounded slice (whole days) at a time,
# so neither side holds a whole big course in memory.
EXPORT_CHUNK_ROWS = 200_000
COURSE_HELP = "course id, e.g. course-v1:edX+DemoX+Demo_Course"


def register(sub) -> None:
    q = sub.add_parser(
        "query",
        help="run SQL on the analyst database and print the result",
        description="Run one read-only SQL statement on the ClickHouse analyst database and print the result. "
        "Works while the pipeline runs. Learners appear pseudonymized, as stored. The tables and views are "
        'described in docs/analysts.md; `edxstream query "SHOW TABLES"` lists them.',
    )
    q.add_argument("sql", help='e.g. "SELECT * FROM course_daily_interactions LIMIT 10"')
    q.add_argument(
        "--format",
        choices=sorted(QUERY_FORMATS),
        default="table",
        help="table: aligned text (default); csv: with a header, empty for NULL, ISO times; "
        "tsv; json: one object per line",
    )
    q.set_defaults(func=run_query)

    e = sub.add_parser(
        "export",
        help="a course's events as CSV or Parquet, for a spreadsheet or a notebook",
        description="Write a course's events, each once and in time order, as CSV (a header, an empty "
        "field for NULL, ISO 8601 times in UTC: pandas.read_csv and spreadsheets read it typed) or as "
        "Parquet. Learners appear pseudonymized, as stored.",
    )
    e.add_argument("--course", required=True, help=COURSE_HELP)
    e.add_argument("--from", dest="start", help="ISO date/time (UTC unless it has an offset), inclusive")
    e.add_argument("--to", dest="end", help="ISO date/time, exclusive; a bare date means the end of that day")
    e.add_argument("--format", choices=["csv", "parquet"], default="csv", help="csv (default) or parquet")
    e.add_argument("--out", type=Path, help="file to write (default: stdout for csv)")
    e.set_defaults(func=run_export)

    r = sub.add_parser(
        "report",
        help="a static HTML report for a course (opens without a server)",
        description="Write a static HTML report for a course into a folder: activity per day and category, "
        "learners, the most watched videos and the most attempted problems. Open index.html in a browser; "
        "it needs no server.",
    )
    r.add_argument("--course", required=True, help=COURSE_HELP)
    r.add_argument("--out", type=Path, required=True, help="folder to write index.html into")
    r.add_argument("--top", type=int, default=10, help="how many videos and problems to list")
    r.set_defaults(func=run_report)


# -- query --------------------------------------------------------------------------------


def run_query(args) -> int:
    runner = open_runner(settings_mod.load())
    out = sys.stdout.buffer
    for chunk in runner.stream(args.sql, QUERY_FORMATS[args.format], CSV_SETTINGS if args.format == "csv" else None):
        out.write(chunk)
    out.flush()
    return 0


# -- export -------------------------------------------------------------------------------


def parse_when(text: str | None, end: bool = False) -> datetime | None:
    """ISO date or date-time -> aware UTC datetime. A bare date as ``--to`` includes that day."""
    if not text:
        return None
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            dt = datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
            return dt + timedelta(days=1) if end else dt
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"not an ISO date or date-time: {text!r} (e.g. 2024-03-01 or 2024-03-01T12:00:00Z)") from None
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _ts(dt: datetime) -> str:
    return f"toDateTime64({format_query_value(dt.strftime('%Y-%m-%d %H:%M:%S.%f'))}, 6, 'UTC')"


def course_filter(course: str, start: datetime | None, end: datetime | None) -> str:
    where = [f"course_id = {format_query_value(course)}"]
    if start:
        where.append(f"time >= {_ts(start)}")
    if end:
        where.append(f"time < {_ts(end)}")
    return " AND ".join(where)


def day_slices(day_counts: list[tuple[date, int]], budget: int) -> list[tuple[date, date]]:
    """Consecutive days grouped into [first, last] ranges of about ``budget`` rows (a day
    is never split: its rows come from one query)."""
    slices: list[tuple[date, date]] = []
    first = last = None
    rows = 0
    for day, n in day_counts:
        if first is not None and rows + n > budget:
            slices.append((first, last))
            first, rows = None, 0
        if first is None:
            first = day
        last, rows = day, rows + n
    if first is not None:
        slices.append((first, last))
    return slices


def export_events(
    runner: Runner,
    course: str,
    start: datetime | None,
    end: datetime | None,
    fmt: str,
    out: BinaryIO,
    chunk_rows: int = EXPORT_CHUNK_ROWS,
) -> int:
    """Write the course's events (deduplicated, in time order) to ``out``; returns rows."""
    where = course_filter(course, start, end)
    counts = [
        (date.fromisoformat(d), int(n))
        for d, n in (
            line.split("\t")
            for line in runner.raw(
                f"SELECT toDate(time) AS d, count() FROM events FINAL WHERE {where} GROUP BY d ORDER BY d",
                "TabSeparated",
            )
            .decode()
            .splitlines()
        )
    ]
    slices = day_slices(counts, chunk_rows) or [(None, None)]
    total = sum(n for _, n in counts)

    def sql(first: date | None, last: date | None) -> str:
        cond = where
        if first is not None:
            cond += (
                f" AND toDate(time) BETWEEN {format_query_value(first.isoformat())}"
                f" AND {format_query_value(last.isoformat())}"
            )
        return f"SELECT * FROM events FINAL WHERE {cond} ORDER BY time, event_id"

    if fmt == "csv":
        for i, (first, last) in enumerate(slices):
            for chunk in runner.stream(sql(first, last), "CSVWithNames" if i == 0 else "CSV", CSV_SETTINGS):
                out.write(chunk)
        return total
    import pyarrow.parquet as pq  # only the Parquet export needs it

    writer = None
    try:
        for first, last in slices:
            table = pq.read_table(io.BytesIO(runner.raw(sql(first, last), "Parquet")))
            if writer is None:
                writer = pq.ParquetWriter(out, table.schema, compression="zstd")
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    return total


def run_export(args) -> int:
    start, end = parse_when(args.start), parse_when(args.end, end=True)
    if start and end and start >= end:
        raise UserError("--from must be before --to")
    if args.format == "parquet" and args.out is None:
        raise UserError("Parquet is binary: give --out FILE")
    runner = open_runner(settings_mod.load())
    if args.out is None:
        rows = export_events(runner, args.course, start, end, args.format, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".part")
        with open(tmp, "wb") as f:
            rows = export_events(runner, args.course, start, end, args.format, f)
        tmp.replace(args.out)
    print(f"exported {rows} events of {args.course} ({runner.where})", file=sys.stderr)
    if rows == 0:
        print(
            'no events matched: check the course id (edxstream query "SELECT DISTINCT course_id FROM course_events")',
            file=sys.stderr,
        )
    return 0


# -- report -------------------------------------------------------------------------------


def run_report(args) -> int:
    from edxstream.analyst import report

    settings = settings_mod.load()
    runner = open_runner(settings)
    index = report.write_report(runner, args.course, args.out, top=args.top, pseudonymized=settings.pseudonymize)
    print(f"report written to {index} (open it in a browser; it needs no server)", file=sys.stderr)
    return 0
