"""``edxstream sink mysql|clickhouse`` and ``edxstream db init|status``."""

from __future__ import annotations

import signal
import threading

import pymysql

from edxstream.core import settings as settings_mod
from edxstream.core.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("sink", help="run a sink: enriched events and dead letters to MySQL, or "
                                    "window counts and events to ClickHouse")
    p.add_argument("target", choices=["mysql", "clickhouse"])
    p.add_argument("--max-idle", type=float, default=None, metavar="SECONDS",
                   help="stop once nothing has arrived for this long (caught up); default: run until stopped")
    p.set_defaults(func=run_sink)

    d = sub.add_parser("db", help="create or migrate the MySQL and ClickHouse schemas")
    d.add_argument("action", choices=["init", "status"])
    d.add_argument("--only", choices=["mysql", "clickhouse"], help="one database only")
    d.set_defaults(func=run_db)


def run_sink(args) -> int:
    s = settings_mod.load()
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
        stats = sink.run(s, stop=stop, max_idle_seconds=args.max_idle)
    except Stuck as exc:
        raise UserError(f"sink {args.target} stopped: {exc}") from None
    written = ", ".join(f"{k}={v}" for k, v in sorted(stats.written.items())) or "nothing"
    print(f"sink {args.target}: {stats.messages} messages in {stats.batches} batches ({written})")
    return 0


def run_db(args) -> int:
    from sinks import migrate

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
            m = s.mysql
            raise UserError(
                f"cannot use MySQL database {m['database']} at {m['host']}:{m['port']} as {m['user']}: "
                f"{exc.args[-1]}. Start it with `edxstream stack up` or check EDXSTREAM_MYSQL_DSN."
            ) from exc
    return 0
