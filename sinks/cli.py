"""``edxstream sink mysql|clickhouse`` and ``edxstream db init|status``."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pymysql

from edxstream.core import settings as settings_mod
from edxstream.core.errors import UserError


def register(sub) -> None:
    p = sub.add_parser(
        "sink",
        help="run a sink: enriched events and dead letters to MySQL, or window counts and events to ClickHouse",
        description="Run a sink until stopped: `mysql` writes enriched events and dead letters to MySQL, "
        "`clickhouse` writes window counts and events to ClickHouse (the analyst tables). Writes are "
        "idempotent, so a restart re-reads at most a batch and changes nothing. A sink creates its tables "
        "on start. While the ClickHouse sink holds the embedded engine's folder, `edxstream query`, "
        "`export` and `report` go through it.",
    )
    p.add_argument("target", choices=["mysql", "clickhouse"], help="which database to write")
    p.add_argument(
        "--max-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop once nothing has arrived for this long (caught up); default: run until stopped",
    )
    p.add_argument(
        "--metrics-file",
        type=Path,
        default=None,
        metavar="PATH",
        help="where to write the progress figures as JSON (default: EDXSTREAM_HOME/run/sink-TARGET.metrics.json; "
        "give each sink its own when several of one kind run under one home)",
    )
    p.set_defaults(func=run_sink)

    d = sub.add_parser(
        "db",
        help="create or migrate the MySQL and ClickHouse schemas",
        description="init: create the tables and views, or bring them up to date; it applies only what is "
        "new, so it is safe to run again. status: list the schema versions and whether each is applied.",
    )
    d.add_argument("action", choices=["init", "status"], help="init: create or update; status: what is applied")
    d.add_argument("--only", choices=["mysql", "clickhouse"], help="one database only")
    d.set_defaults(func=run_db)


def run_sink(args) -> int:
    from edxstream.core import kafka_admin

    s = settings_mod.load()
    kafka_admin.require_broker(s)
    stop = threading.Event()

    def on_signal(signum, _frame):
        stop.set()  # finish (or abandon, uncommitted) the batch in hand, then exit

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if args.target == "mysql":
        from sinks import mysql_sink as sink
    else:
        from sinks import clickhouse_sink as sink
    from sinks.consumer import Stuck

    try:
        stats = sink.run(s, stop=stop, max_idle_seconds=args.max_idle, metrics_path=args.metrics_file)
    except Stuck as exc:
        raise UserError(f"sink {args.target} stopped: {exc}") from None
    written = ", ".join(f"{k}={v}" for k, v in sorted(stats.written.items())) or "nothing"
    print(f"sink {args.target}: {stats.messages} messages in {stats.batches} batches ({written})")
    return 0


def mysql_error(s, exc: pymysql.err.OperationalError) -> UserError:
    """What to do when MySQL cannot be used, in one line (pymysql's messages never hold
    the password)."""
    m = s.mysql
    where = f"MySQL database {m['database']} at {m['host']}:{m['port']} as {m['user']}"
    code = exc.args[0] if exc.args else None
    if code in (1044, 1045, 1049, 1698):  # access denied to the database, bad login, unknown database
        return UserError(
            f"cannot use {where}: {exc.args[-1]}. Run `edxstream stack up`: it creates the database and "
            f"the user of EDXSTREAM_MYSQL_DSN (logging in as EDXSTREAM_MYSQL_ADMIN_USER, default root)"
        )
    return UserError(
        f"cannot use {where}: {exc.args[-1] if exc.args else exc}. Start it with "
        f"`edxstream stack up`, or check EDXSTREAM_MYSQL_DSN"
    )


def run_db(args) -> int:
    import logging

    from clickhouse_connect.driver.exceptions import ClickHouseError

    from edxstream.core import clickhouse
    from sinks import migrate

    # db init prints each migration it applies; the migrations' own log lines would repeat them
    logging.getLogger(migrate.__name__).setLevel(logging.WARNING)
    s = settings_mod.load()
    targets = [args.only] if args.only else ["mysql", "clickhouse"]
    for target in targets:
        try:
            if args.action == "init":
                done = migrate.migrate_mysql(s) if target == "mysql" else migrate.migrate_clickhouse(s)
                if done:
                    for m in done:
                        print(f"{target}: applied {m}")
                else:
                    print(f"{target}: up to date")
            else:
                applied = migrate.mysql_applied(s) if target == "mysql" else migrate.clickhouse_applied(s)
                known = migrate.discover(migrate.MIGRATIONS / target)
                have = {v for v, _ in applied}
                for m in known:
                    print(f"{target}: {m} {'applied' if m.version in have else 'PENDING'}")
        except pymysql.err.OperationalError as exc:
            raise mysql_error(s, exc) from None
        except ClickHouseError as exc:
            problem = clickhouse.connection_problem(exc)
            raise UserError(
                f"cannot use ClickHouse at {clickhouse.describe(s)} ({problem}): start it, "
                f"or check EDXSTREAM_CLICKHOUSE_URL"
            ) from None
    return 0
