"""Versioned migrations: `edxstream db init` creates both schemas, re-running applies
nothing, later-numbered files (several statements each) are applied in order."""

from __future__ import annotations

import shutil
import subprocess

import pymysql
import pytest

from edxstream.core import clickhouse, records
from sinks import migrate
from tests.conftest import edxstream_cmd, env_for


def test_split_statements_respects_quotes_and_comments():
    sql = """
    -- a comment; with a semicolon
    CREATE TABLE a (x String DEFAULT 'a;b', y String DEFAULT "c;\\"d");
    /* block; comment */
    INSERT INTO `we;ird` VALUES ('it''s; fine');
    ;
    SELECT 1
    """
    assert [s.splitlines()[-1].strip() for s in migrate.split_statements(sql)] == [
        'CREATE TABLE a (x String DEFAULT \'a;b\', y String DEFAULT "c;\\"d")',
        "INSERT INTO `we;ird` VALUES ('it''s; fine')",
        "SELECT 1",
    ]
    assert migrate.split_statements("-- only a comment\n") == []


def test_discover_orders_by_version_and_rejects_duplicates(tmp_path):
    for name in ("0100_views.sql", "0002_b.sql", "0010_c.sql", "README.md", "notes.sql"):
        (tmp_path / name).write_text("SELECT 1;")
    assert [str(m) for m in migrate.discover(tmp_path)] == ["0002_b", "0010_c", "0100_views"]
    (tmp_path / "0010_again.sql").write_text("SELECT 2;")
    with pytest.raises(ValueError, match="two migrations with version 10"):
        migrate.discover(tmp_path)


def test_db_init_creates_both_schemas_and_rerun_applies_nothing(settings):
    env = env_for(settings)
    first = subprocess.run(edxstream_cmd("db", "init"), env=env, capture_output=True, text=True, timeout=180)
    assert first.returncode == 0, first.stderr
    want = [f"{db}: applied {m}" for db in ("mysql", "clickhouse") for m in migrate.discover(migrate.MIGRATIONS / db)]
    assert "mysql: applied 0001_events_and_dead_letters" in want and "clickhouse: applied 0002_events" in want
    assert first.stdout.splitlines() == want
    second = subprocess.run(edxstream_cmd("db", "init"), env=env, capture_output=True, text=True, timeout=180)
    assert second.returncode == 0, second.stderr
    assert second.stdout.splitlines() == ["mysql: up to date", "clickhouse: up to date"]
    status = subprocess.run(
        edxstream_cmd("db", "status", "--only", "mysql"), env=env, capture_output=True, text=True, timeout=180
    )
    assert status.stdout.splitlines() == [f"mysql: {m} applied" for m in migrate.discover(migrate.MIGRATIONS / "mysql")]

    conn = pymysql.connect(**settings.mysql)
    with conn, conn.cursor() as cur:
        # row_id, the clustered key, is invisible: SELECT * gives EnrichedEvent's fields.
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND table_name = 'events' AND extra NOT LIKE '%INVISIBLE%' ORDER BY ordinal_position"
        )
        assert tuple(r[0] for r in cur.fetchall()) == records.ENRICHED_FIELDS
        cur.execute("SELECT * FROM events")
        assert tuple(d[0] for d in cur.description) == records.ENRICHED_FIELDS
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = DATABASE() "
            "AND table_name = 'dead_letters' ORDER BY ordinal_position"
        )
        assert tuple(r[0] for r in cur.fetchall()) == records.DEAD_LETTER_FIELDS
        cur.execute(
            "SELECT index_name, GROUP_CONCAT(column_name ORDER BY seq_in_index) FROM "
            "information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'events' "
            "GROUP BY index_name"
        )
        assert dict(cur.fetchall()) == {
            "PRIMARY": "row_id",
            "events_event_id": "event_id",
            "events_course_time": "course_id,time",
            "events_user_time": "user_id,time",
            "events_time": "time",
            "events_category_time": "category,time",
        }
        cur.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        assert cur.fetchall()[0] == (1, "events_and_dead_letters")


def test_db_init_reports_an_unreachable_mysql_clearly(settings):
    env = env_for(settings, EDXSTREAM_MYSQL_DSN="mysql://root:@127.0.0.1:1/nowhere")
    r = subprocess.run(
        edxstream_cmd("db", "init", "--only", "mysql"), env=env, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert "cannot use MySQL database nowhere at 127.0.0.1:1" in r.stderr and "Traceback" not in r.stderr


def test_later_migrations_apply_in_order_with_several_statements(settings, tmp_path):
    ch_dir, my_dir = tmp_path / "clickhouse", tmp_path / "mysql"
    shutil.copytree(migrate.MIGRATIONS / "clickhouse", ch_dir)
    shutil.copytree(migrate.MIGRATIONS / "mysql", my_dir)
    assert migrate.migrate_clickhouse(settings, ch_dir) == migrate.discover(ch_dir)
    assert migrate.migrate_mysql(settings, my_dir) == migrate.discover(my_dir)
    shipped_ch = [(m.version,) for m in migrate.discover(ch_dir)]
    shipped_my = [(m.version,) for m in migrate.discover(my_dir)]

    # An analyst's view file, numbered after all the shipped ones, with two statements that
    # depend on each other (the second reads the first's view).
    (ch_dir / "9001_course_totals.sql").write_text(
        "-- totals per course; the ';' in this comment is not a statement end\n"
        "CREATE VIEW IF NOT EXISTS course_totals AS SELECT course_id, sum(count) AS n FROM window_counts_final "
        "WHERE kind = 'course_category' GROUP BY course_id;\n"
        "CREATE VIEW IF NOT EXISTS busiest_course AS SELECT course_id FROM course_totals ORDER BY n DESC LIMIT 1;\n"
    )
    (my_dir / "9002_daily.sql").write_text(
        "CREATE TABLE IF NOT EXISTS daily (d DATE PRIMARY KEY, note VARCHAR(20) DEFAULT 'a;b');\n"
        "INSERT INTO daily (d) VALUES ('2024-01-01') ON DUPLICATE KEY UPDATE d = d;\n"
    )
    assert [str(m) for m in migrate.migrate_clickhouse(settings, ch_dir)] == ["9001_course_totals"]
    assert [str(m) for m in migrate.migrate_mysql(settings, my_dir)] == ["9002_daily"]
    assert migrate.migrate_clickhouse(settings, ch_dir) == [] and migrate.migrate_mysql(settings, my_dir) == []

    client = clickhouse.connect(settings)
    client.insert(
        "window_counts", [["course_category", "c1", "video", 60, 0, 7, 1]], column_names=list(records.WINDOW_FIELDS)
    )
    assert client.query("SELECT course_id FROM busiest_course").result_rows == [("c1",)]
    assert client.query("SELECT version FROM schema_migrations FINAL ORDER BY version").result_rows == shipped_ch + [
        (9001,)
    ]
    conn = pymysql.connect(**settings.mysql)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT note FROM daily")
        assert cur.fetchall() == (("a;b",),)
        cur.execute("SELECT version FROM schema_migrations ORDER BY version")
        assert [tuple(r) for r in cur.fetchall()] == shipped_my + [(9002,)]


# The migrations that add the columns at the end of events that today's writer writes
# (kind, interaction, notes): the old databases below get them too, so the writer can
# fill them.
WRITER_COLUMNS = ("events_kind_interaction", "events_notes")


def mysql_before(settings, tmp_path, name: str) -> tuple[list, "migrate.Migration"]:
    """Apply the shipped MySQL migrations that come before the one called ``name`` (and
    WRITER_COLUMNS), as a database made by an older version; returns (the shipped
    migrations, that one)."""
    shipped = migrate.discover(migrate.MIGRATIONS / "mysql")
    target = next(m for m in shipped if m.name == name)
    old = tmp_path / "mysql"
    old.mkdir()
    for m in shipped:
        if m.version < target.version or m.name in WRITER_COLUMNS:
            shutil.copy(m.path, old / m.path.name)
    migrate.migrate_mysql(settings, old)
    return shipped, target


def applied_after(shipped: list, target) -> list[str]:
    """What migrating a database made by :func:`mysql_before` applies."""
    return [str(m) for m in shipped if m.version >= target.version and m.name not in WRITER_COLUMNS]


def test_events_key_migration_keeps_existing_rows_upserts_by_event_id_and_reruns(settings, tmp_path):
    """A table created by 0001 (clustered on event_id) and holding rows is rebuilt on an
    arrival sequence; its rows are kept, event_id still makes an upsert idempotent, and
    running the migration's statements again changes nothing."""
    from sinks import mysql_sink
    from sinks.rows import Msg
    from tests.sink_helpers import make_events, mysql_expected_row, mysql_table

    shipped, key = mysql_before(settings, tmp_path, "events_sequential_key")
    events = make_events(50, seed=31)
    writer = mysql_sink.MySQLWriter(settings, migrate_on_connect=False)
    try:
        writer.write(
            writer.prepare([Msg(settings.enriched_topic, 0, i, records.encode(e)) for i, e in enumerate(events[:30])])
        )
    finally:
        writer.close()

    assert [str(m) for m in migrate.migrate_mysql(settings)] == applied_after(shipped, key)
    conn = migrate.mysql_connect(settings)
    with conn, conn.cursor() as cur:
        for statement in key.statements:  # as after an interruption before the ledger row
            cur.execute(statement)
        cur.execute("SELECT COUNT(DISTINCT row_id), MIN(row_id) FROM events")
        assert cur.fetchone() == (30, 1)
    assert mysql_table(settings, "events", "event_id") == sorted(mysql_expected_row(e) for e in events[:30])

    # The sink on the migrated table: re-sent rows update in place, new ones are added.
    writer = mysql_sink.MySQLWriter(settings)
    try:
        writer.write(
            writer.prepare([Msg(settings.enriched_topic, 0, i, records.encode(e)) for i, e in enumerate(events)])
        )
    finally:
        writer.close()
    assert mysql_table(settings, "events", "event_id") == sorted(mysql_expected_row(e) for e in events)


def test_identity_and_whole_values_migration_keeps_rows_and_takes_long_values(settings, tmp_path):
    """A table as migrations 0001-0002 left it, holding rows with content-hash ids: after
    0003 the rows are still there, and an event with a 374-character action and a
    dead letter with a long source are stored whole, with line-identity ids."""
    from edxstream.core.model import event_identity, parse_line
    from sinks import mysql_sink
    from sinks.rows import Msg
    from tests.sink_helpers import make_events, mysql_expected_row, mysql_table

    shipped, target = mysql_before(settings, tmp_path, "line_identity_and_whole_values")
    events = make_events(20, seed=5)
    writer = mysql_sink.MySQLWriter(settings, migrate_on_connect=False)
    try:
        writer.write(
            writer.prepare([Msg(settings.enriched_topic, 0, i, records.encode(e)) for i, e in enumerate(events)])
        )
    finally:
        writer.close()
    assert [str(m) for m in migrate.migrate_mysql(settings)] == applied_after(shipped, target)
    assert mysql_table(settings, "events", "event_id") == sorted(mysql_expected_row(e) for e in events)

    url = "/courses/course-v1:Org+C1+2017/courseware/" + "abc/" * 80
    raw = (
        b'{"event_type": "%s", "event_source": "server", "time": "2024-03-01T10:00:00+00:00", '
        b'"context": {"course_id": "course-v1:Org+C1+2017"}}' % url.encode()
    )
    long = parse_line(raw, "/var/log/" + "d/" * 600 + "tracking.log", 7, "ab" * 8)
    assert len(long.action) > 255 and long.event_id == event_identity("ab" * 8, 7)
    dl = parse_line(b"{broken", long.source, 9, "ab" * 8)
    writer = mysql_sink.MySQLWriter(settings)
    try:
        writer.write(
            writer.prepare(
                [
                    Msg(settings.enriched_topic, 0, 100, records.encode(long)),
                    Msg(settings.deadletter_topic, 0, 101, records.encode(dl)),
                ]
            )
        )
    finally:
        writer.close()
    conn = migrate.mysql_connect(settings)
    with conn, conn.cursor() as cur:
        cur.execute("SELECT action, event_type, source FROM events WHERE event_id = %s", (long.event_id,))
        assert cur.fetchone() == (long.action, url, long.source)
        cur.execute("SELECT source FROM dead_letters WHERE dead_letter_id = %s", (event_identity("ab" * 8, 9),))
        assert cur.fetchone() == (long.source,)
        cur.execute("SELECT COUNT(*) FROM events")
        assert cur.fetchone() == (21,)
