"""``edxstream forget --user ID|USERNAME``: remove one learner (see edxstream.ops.forget)."""

from __future__ import annotations

from edxstream.core import settings as settings_mod


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "forget",
        help="remove one learner's data from MySQL and ClickHouse and keep their future events out",
        description=(
            "Remove a learner (Open edX user retirement, GDPR erasure): their events and the dead "
            "letters that name them are deleted from MySQL and ClickHouse, and both sinks leave out "
            "their future events. Window counts stay (aggregates that name no one). The topics keep "
            "the learner's lines until their retention ends. Safe to run again. Writes an audit line "
            "(no identity in it) to <home>/audit/forget.log. See docs/privacy.md."
        ),
    )
    p.add_argument("--user", required=True, metavar="ID|USERNAME", help="the learner's user id or username")
    p.set_defaults(func=run)


def run(args) -> int:
    from edxstream.ops.forget import forget

    done = forget(settings_mod.load(), args.user)
    ch = done["clickhouse_events"]
    print(
        f"forgotten: {done['mysql_events']} events and {done['mysql_dead_letters']} dead letters removed from "
        f"MySQL; ClickHouse events removed: {ch}. The sinks keep this learner's future events out."
    )
    return 0
