"""``edxstream demo`` (the whole pipeline on a sample, then what a course team sees
first) and ``edxstream bench`` (the benchmark, ``bench/run_all.py``)."""

from __future__ import annotations

import argparse
import os
import runpy
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

from edxstream.core.errors import UserError
from edxstream.core.events.courses import short_block

REPO = Path(__file__).resolve().parents[2]
PLAIN_PROGRESS_SECONDS = 10.0  # progress off a terminal: one line this often


def register(subparsers) -> None:
    d = subparsers.add_parser(
        "demo",
        help="run the whole pipeline on a sample log and show what a course team sees first",
        description="Bring the local stack up, generate a sample tracking log (or take yours), backfill it, "
        "run the stream app and both sinks until everything is written, then print events per course and "
        "category, the busiest days, top videos and problems, and dead letters.",
    )
    d.add_argument(
        "--log",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="tracking logs (files, .gz or folders) to use instead of a generated sample",
    )
    d.add_argument("--events", type=int, default=40_000, help="size of the generated sample (40000)")
    d.add_argument("--courses", type=int, default=4, help="course runs in the sample (4)")
    d.add_argument("--learners", type=int, default=1_500, help="learners in the sample (1500)")
    d.add_argument("--days", type=int, default=14, help="days the sample covers (14)")
    d.add_argument("--seed", type=int, default=2026, help="sample seed (2026)")
    d.add_argument(
        "--database",
        default="edxstream_demo",
        help="MySQL and ClickHouse database the demo (re)creates and fills (edxstream_demo)",
    )
    d.add_argument("--timeout", type=float, default=900, help="give up after this many seconds (900)")
    d.set_defaults(func=run_demo)

    b = subparsers.add_parser(
        "bench",
        help="measure shipper, stream app, sinks, end-to-end backfill and live latency (bench/run_all.py)",
        description="Measure this machine: the shipper against kcat, one stream worker, the MySQL sink against "
        "LOAD DATA, the ClickHouse sink, an end-to-end backfill of 1,560,000 events, and the latency of live "
        "events at 500 a second. It runs bench/run_all.py, so it needs a checkout of the repository.",
    )
    b.add_argument(
        "--scale",
        choices=["full", "small"],
        default="full",
        help="full: the sizes the README's figures come from (about 15 minutes); small: a quick check",
    )
    b.add_argument("--json", help="also write the figures to this JSON file")
    b.add_argument("--only", help="comma-separated parts: ship,stream,sinks,e2e,live")
    b.add_argument("--keep", action="store_true", help="keep the work folder")
    b.set_defaults(func=run_bench)


def run_bench(args: argparse.Namespace) -> int:
    script = REPO / "bench" / "run_all.py"
    if not script.exists():
        raise UserError(f"{script} is missing: `edxstream bench` runs from a checkout of the repository")
    argv = ["--scale", args.scale]
    if args.json:
        argv += ["--json", args.json]
    if args.only:
        argv += ["--only", args.only]
    if args.keep:
        argv.append("--keep")
    old = sys.argv
    sys.argv = [str(script), *argv]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exc:  # the script ends with sys.exit(main()), or a message
        if isinstance(exc.code, str):
            raise UserError(exc.code) from None
        return int(exc.code or 0)
    finally:
        sys.argv = old
    return 0


# -- demo -------------------------------------------------------------------------------------


def _with_database(dsn: str, database: str) -> str:
    u = urlparse(dsn)
    return urlunparse(u._replace(path=f"/{database}"))


def demo_settings(base, database: str, run_id: str):
    """The demo's own topics, consumer groups and databases, so it never mixes with (or
    skips because of) earlier runs or real data."""
    from edxstream.core.privacy import DEFAULT_KEY
    from edxstream.core.settings import load
    from edxstream.ops import stack

    # The sinks refuse the default pseudonym key; the demo's throwaway databases get a
    # random key of their own unless one is set.
    key = base.pseudonym_key if base.pseudonym_key != DEFAULT_KEY else secrets.token_hex(32)
    return load(
        pseudonym_key=key,
        raw_topic=f"demo.{run_id}.raw",
        enriched_topic=f"demo.{run_id}.enriched",
        deadletter_topic=f"demo.{run_id}.deadletter",
        aggregates_topic=f"demo.{run_id}.aggregates",
        app_id=f"edxstream-demo-{run_id}",
        mysql_dsn=_with_database(base.mysql_dsn, database),
        clickhouse_database=database,
        checkpoint_dir=base.data_dir / "demo" / "checkpoints" / run_id,
        web_port=stack.free_ports(1)[0],
        broker_storage="memory",  # a broker the demo starts itself keeps nothing for later
    )


def _step(n: int, text: str) -> None:
    print(f"[{n}/5] {text}", flush=True)


def _log_paths(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            rotated = sorted(p.glob("tracking.log-*"))
            live = p / "tracking.log"
            out += rotated + ([live] if live.exists() else [])
            if not rotated and not live.exists():
                out += sorted(x for x in p.iterdir() if x.is_file() and not x.name.endswith(".json"))
        elif p.is_file():
            out.append(p)
        else:
            raise UserError(f"{p}: no such file or folder")
    if not out:
        raise UserError("no log files found in " + ", ".join(map(str, paths)))
    return out


def run_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from edxstream.ops import pipeline, stack
    from edxstream.core.settings import load

    t_start = time.monotonic()
    base = load()
    run_id = time.strftime("%Y%m%d%H%M%S")
    s = demo_settings(base, args.database, run_id)

    _step(1, "local stack: Kafka (Tansu), MariaDB, ClickHouse")
    # not stack.up(): its ClickHouse check would open the chdb folder in this process,
    # and the ClickHouse sink needs it; the schema step below checks ClickHouse instead
    s.data_dir.mkdir(parents=True, exist_ok=True)
    stack.web_down(s)  # a previous demo's web app: it may hold the chdb folder the sink needs
    print(f"      {'kafka':<11} {stack.broker_up(s)} ({s.kafka_bootstrap})")
    print(f"      {'mysql':<11} {stack.mysql_up(s)}")
    from edxstream.core import clickhouse

    print(f"      {'clickhouse':<11} {clickhouse.describe(s)}")

    exports: list[Path] = []
    if args.log:
        paths = _log_paths(args.log)
        _step(2, f"sample: {len(paths)} file(s) given")
    else:
        from edxstream.ops.generate import GenConfig, log_files, write_course_exports, write_dir

        out = s.data_dir / "demo" / "sample"
        cfg = GenConfig(
            events=args.events, courses=args.courses, learners=args.learners, days=args.days, seed=args.seed
        )
        _step(
            2,
            f"sample: generating {cfg.events:,} events for {cfg.courses} course runs, "
            f"{cfg.learners:,} learners over {cfg.days} days into {out}/",
        )
        write_dir(cfg, out)
        paths = log_files(out)
        # what Studio would export for each course: the names behind the logs' block ids
        exports = write_course_exports(cfg, out / "courses")
    expected = pipeline.expected_counts(paths, s.max_clock_skew_seconds)
    print(
        f"      {len(paths)} files, {expected.lines:,} lines: {expected.events:,} events and "
        f"{expected.dead_letters:,} malformed lines expected",
        flush=True,
    )

    _step(3, f"schemas: fresh MySQL and ClickHouse databases `{args.database}`")
    log_dir = s.log_dir / "demo" / run_id
    with pipeline.Pipeline(s, log_dir=log_dir) as pipe:
        pipeline.prepare(pipe, reset=True)
        if exports:  # before the ClickHouse sink starts and holds the embedded folder
            pipe.run("course-import", "course", "import", *map(str, exports))
            print(f"      course structure: {len(exports)} OLX exports imported from {exports[0].parent}/")
        _step(4, f"pipeline: backfill -> stream app -> MySQL and ClickHouse sinks (logs in {log_dir}/)")
        pipeline.start_workers(pipe, web_port=s.web_port)
        total = expected.events + expected.dead_letters
        # a bar redrawn in place on a terminal; elsewhere (a log, CI) a plain line now and then
        tty = sys.stderr.isatty()
        with tqdm(
            total=total,
            unit="row",
            unit_scale=True,
            file=sys.stderr,
            desc="      written to MySQL",
            mininterval=0.5,
            dynamic_ncols=True,
            disable=not tty,
        ) as bar:
            last_line = [time.monotonic()]

            def progress(stage: str, done: int, _total: int) -> None:
                if tty:
                    bar.set_postfix_str(stage, refresh=False)
                    bar.update(max(0, done - bar.n))
                elif time.monotonic() - last_line[0] >= PLAIN_PROGRESS_SECONDS:
                    last_line[0] = time.monotonic()
                    print(f"      {stage}: {done:,} of {total:,} rows written to MySQL", file=sys.stderr, flush=True)

            result = pipeline.backfill_until_written(pipe, paths, expected, progress=progress, timeout=args.timeout)
    rate = expected.lines / result.seconds if result.seconds else 0.0
    print(
        f"      done: {expected.lines:,} lines shipped in {result.ship_seconds:.1f}s, all rows in MySQL after "
        f"{result.mysql_seconds:.1f}s, in ClickHouse after {result.seconds:.1f}s ({rate:,.0f} lines/s)"
    )
    print(
        f"      ClickHouse holds {result.clickhouse_events:,} events and {result.clickhouse_windows:,} window "
        f"counts (a count per course, window and counted thing: a category, an action, ...); MySQL holds "
        f"the same events and the {expected.dead_letters:,} malformed lines as dead letters"
    )
    for note in result.notes:
        print(f"      note: {note}")

    _step(5, "what a course team wants to see first")
    print(summary(s))
    # what was shipped against both stores and the windows, per course and day
    check = subprocess.run(
        pipeline.edxstream_argv("reconcile", "--no-progress"),
        env=pipeline.settings_env(s),
        capture_output=True,
        text=True,
    )
    print(check.stdout.rstrip() or check.stderr.rstrip())
    print(open_the_web_app(s))
    print(how_to_query(s, args.database, write_mysql_options(s)))
    print(f"(demo finished in {time.monotonic() - t_start:.0f}s)")
    return 0 if check.returncode == 0 else 1


def open_the_web_app(s) -> str:
    """Start the web app on the demo's data with an operator account for this run."""
    from edxstream.ops import pipeline, stack

    password = secrets.token_urlsafe(9)
    # through the command that manages accounts (the web app's own code stays on the analyst side)
    made = subprocess.run(
        pipeline.edxstream_argv("user", "add", "demo", "--role", "operator"),
        env=pipeline.settings_env(s, EDXSTREAM_WEB_PASSWORD=password),
        capture_output=True,
        text=True,
    )
    if made.returncode != 0:
        return f"\nWeb app: not started ({(made.stderr.strip() or made.stdout.strip()).splitlines()[-1]})"
    try:
        started = stack.web_up(s, demo=True)
    except UserError as exc:
        return f"\nWeb app: not started ({exc})"
    return (
        f"\nWeb app: {started}\n  open {s.web_url}/ and log in as demo / {password}"
        f"\n  (`edxstream stack down` stops it; `edxstream user add NAME --role staff --course ID` adds accounts)"
    )


# -- the summary --------------------------------------------------------------------------------

CH_QUERIES = {
    # from the events table; the windows hold the same events (late ones are counted
    # from the stored events, docs/architecture.md), which `reconcile` checks
    "by_course": "SELECT course_id, category, count() AS n FROM events FINAL "
    "WHERE course_id IS NOT NULL GROUP BY course_id, category",
    "busiest_days": "SELECT toString(toDate(time)) AS day, count() AS events, uniqExact(username) AS learners "
    "FROM events FINAL GROUP BY day ORDER BY events DESC, day LIMIT 5",
    "all_events": "SELECT count() AS n FROM events FINAL",
    "windows": "SELECT sum(count) AS n FROM window_counts_final "
    "WHERE kind = 'course_category' AND window_seconds = 3600",
    "top_videos": "SELECT e.course_id AS course_id, e.block_id AS block_id, any(b.display_name) AS name, "
    "count() AS plays, uniqExact(e.username) AS learners "
    "FROM events AS e FINAL LEFT JOIN block_names AS b ON e.course_id = b.course_id "
    "AND arrayElement(splitByRegexp('[@/]', assumeNotNull(e.block_id)), -1) = b.block_key "
    "WHERE e.action = 'play_video' AND e.block_id IS NOT NULL "
    "GROUP BY course_id, block_id ORDER BY plays DESC, block_id LIMIT 5",
    # names of the problems the MySQL query below finds (from `edxstream course import`)
    "problem_names": "SELECT block_id, display_name FROM block_names WHERE block_type = 'problem'",
}
MYSQL_TOP_PROBLEMS = (
    "SELECT problem_id, COUNT(*) AS submissions, COUNT(DISTINCT username) AS learners, "
    "ROUND(100 * AVG(success), 1) AS pct_correct FROM events "
    "WHERE action = 'problem_check' AND event_source = 'server' AND problem_id IS NOT NULL "
    "GROUP BY problem_id ORDER BY submissions DESC, problem_id LIMIT 5"
)
MYSQL_DEAD_LETTERS = "SELECT reason, stage, COUNT(*) AS n FROM dead_letters GROUP BY reason, stage ORDER BY n DESC"


def table(rows: list[dict], columns: list[tuple[str, str]], indent: str = "  ") -> str:
    """A plain-text table; numbers right-aligned."""
    if not rows:
        return indent + "(none)"
    cells = [[_cell(r.get(key)) for key, _ in columns] for r in rows]
    heads = [title for _, title in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(heads)]
    numeric = [all(_is_num(r.get(key)) for r in rows) for key, _ in columns]

    def fmt(values: list[str]) -> str:
        return (
            indent
            + "  ".join(
                v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
            ).rstrip()
        )

    return "\n".join([fmt(heads), indent + "  ".join("-" * w for w in widths)] + [fmt(c) for c in cells])


def _is_num(v) -> bool:
    if isinstance(v, (int, float)):
        return True
    if isinstance(v, str):
        try:
            float(v)
            return True
        except ValueError:
            return False
    return v is None


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int) or (isinstance(v, str) and v.isdigit()):
        return f"{int(v):,}"
    return str(v)


def summary(s) -> str:
    from edxstream.ops import pipeline
    from sinks.migrate import mysql_rows
    from edxstream.core.model import CATEGORIES

    ch = pipeline.clickhouse_rows(s, CH_QUERIES)
    problems = mysql_rows(s, MYSQL_TOP_PROBLEMS)
    dead = mysql_rows(s, MYSQL_DEAD_LETTERS)
    out: list[str] = []

    pivot: dict[str, dict[str, int]] = {}
    for r in ch["by_course"]:
        pivot.setdefault(r["course_id"], {})[r["category"]] = int(r["n"])
    cats = [c for c in CATEGORIES if any(c in v for v in pivot.values())]
    rows = []
    for course, counts in sorted(pivot.items(), key=lambda kv: -sum(kv[1].values())):
        rows.append({"course": course, **{c: counts.get(c, 0) for c in cats}, "total": sum(counts.values())})
    out.append("\nEvents per course and category (ClickHouse events):")
    out.append(table(rows, [("course", "course"), *[(c, c) for c in cats], ("total", "total")]))

    windowed = int(ch["windows"][0]["n"] or 0) if ch["windows"] else 0
    in_courses = sum(r["total"] for r in rows)
    all_events = int(ch["all_events"][0]["n"] or 0) if ch["all_events"] else in_courses
    out.extend(course_notes(all_events, in_courses, windowed))

    out.append("\nBusiest days (all events, with or without a course):")
    out.append(table(ch["busiest_days"], [("day", "day"), ("events", "events"), ("learners", "learners")]))

    for r in ch["top_videos"]:
        r["video"] = r.get("name") or short_block(r["block_id"])
    out.append("\nTop videos by plays (ClickHouse events):")
    out.append(
        table(
            ch["top_videos"],
            [("course_id", "course"), ("video", "video"), ("plays", "plays"), ("learners", "learners")],
        )
    )

    problem_names = {r["block_id"]: r["display_name"] for r in ch["problem_names"]}
    for r in problems:
        r["problem"] = problem_names.get(r["problem_id"]) or short_block(r["problem_id"])
        r["pct_correct"] = float(r["pct_correct"]) if r["pct_correct"] is not None else None
    out.append("\nTop problems by submissions (MySQL events):")
    out.append(
        table(
            problems,
            [
                ("problem", "problem"),
                ("submissions", "submissions"),
                ("learners", "learners"),
                ("pct_correct", "% correct"),
            ],
        )
    )

    out.append("\nDead letters by reason (MySQL dead_letters; the raw lines are kept there):")
    out.append(table(dead, [("reason", "reason"), ("stage", "stage"), ("n", "lines")]))
    return "\n".join(out)


def course_notes(all_events: int, in_courses: int, windowed: int) -> list[str]:
    """What the numbers around the per-course table mean: the events the table leaves out
    (no course: dashboard, login, profile pages) and how many of its events the stream
    app's hourly counts hold."""
    notes = [f"  {in_courses:,} events belong to a course"]
    if all_events > in_courses:
        notes[0] += (
            f"; the other {all_events - in_courses:,} of the {all_events:,} events have none (dashboard, "
            f"login and profile pages, for instance) and are left out of this table"
        )
    if windowed == in_courses:
        notes.append("  The stream app's live hourly counts hold all of them.")
    else:
        notes.append(
            f"  The hourly window counts hold {windowed:,} of them; `edxstream reconcile` below says "
            f"where the other {in_courses - windowed:,} are missing."
        )
    return notes


def write_mysql_options(s) -> Path:
    """A MySQL client option file for the demo's database (mode 0600), so the printed
    mysql command logs in without showing the password."""
    m = s.mysql
    path = s.data_dir / "demo" / "mysql.cnf"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(
            f"[client]\nhost={m['host']}\nport={m['port']}\nuser={m['user']}\npassword={m['password']}\n"
            f"database={m['database']}\n"
        )
    return path


def how_to_query(s, database: str, mysql_options: Path) -> str:
    env = f"EDXSTREAM_CLICKHOUSE_DATABASE={database}"
    course = "course-v1:..."
    try:
        from sinks.migrate import mysql_rows

        rows = mysql_rows(
            s,
            "SELECT course_id FROM events WHERE course_id IS NOT NULL "
            "GROUP BY course_id ORDER BY COUNT(*) DESC LIMIT 1",
        )
        course = rows[0]["course_id"] if rows else course
    except Exception:  # noqa: BLE001 - only an example in the help text
        pass
    return f"""
Query further (the demo's data is in the MySQL and ClickHouse databases `{database}`):
  {env} edxstream query "SELECT * FROM course_daily_interactions LIMIT 10"
  {env} edxstream report --course '{course}' --out report/
  {env} edxstream export --course '{course}' --format csv --out events.csv
  mysql --defaults-extra-file={shlex.quote(str(mysql_options))} -e "SELECT action, COUNT(*) FROM events GROUP BY action"
Run it on your own logs: edxstream demo --log /edx/var/log/tracking/"""
