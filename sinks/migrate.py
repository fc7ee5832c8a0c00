"""Versioned schema migrations for MySQL and ClickHouse (``edxstream db init``).

Migrations are files ``NNNN_name.sql`` under ``sinks/migrations/<engine>/``, applied in
version order; each may hold several statements. The versions applied are recorded in a
``schema_migrations`` table, so re-running applies only what is new. Statements are
written to be re-runnable (``IF NOT EXISTS``): MySQL DDL commits implicitly and
ClickHouse has no transactions, so a migration interrupted halfway is simply run again.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pymysql

from edxstream.core import clickhouse
from edxstream.core.settings import Settings

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_NAME = re.compile(r"^(\d{4,})_([\w.-]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()

    @property
    def statements(self) -> list[str]:
        return split_statements(self.sql)

    def __str__(self) -> str:
        return f"{self.version:04d}_{self.name}"


def discover(directory: Path) -> list[Migration]:
    """The migrations in ``directory``, in version order; other files are ignored."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            log.warning("ignoring %s: migration files are named NNNN_name.sql", path)
            continue
        version = int(m.group(1))
        if version in found:
            raise ValueError(f"two migrations with version {version}: {found[version].path.name} and {path.name}")
        found[version] = Migration(version, m.group(2), path)
    return [found[v] for v in sorted(found)]


def split_statements(sql: str) -> list[str]:
    """Split a script on the ``;`` that end statements, ignoring those inside quotes,
    backquotes and comments. Comment-only pieces are dropped."""
    statements: list[str] = []
    buf: list[str] = []
    has_code = False
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in "'\"`":
            j = i + 1
            while j < n:
                if sql[j] == "\\" and c != "`":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote inside a literal
                        j += 2
                        continue
                    break
                j += 1
            buf.append(sql[i : j + 1])
            has_code = True
            i = j + 1
        elif sql.startswith("--", i) or c == "#":
            j = sql.find("\n", i)
            j = n if j < 0 else j
            buf.append(sql[i:j])
            i = j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            j = n if j < 0 else j + 2
            buf.append(sql[i:j])
            i = j
        elif c == ";":
            if has_code:
                statements.append("".join(buf).strip())
            buf, has_code = [], False
            i += 1
        else:
            if not c.isspace():
                has_code = True
            buf.append(c)
            i += 1
    if has_code:
        statements.append("".join(buf).strip())
    return statements


def apply_pending(
    engine: str, migrations: list[Migration], applied: dict[int, str], execute, record
) -> list[Migration]:
    """The ledger's rule, the same for both engines: apply, in order, each migration whose
    version ``applied`` (version -> checksum, read from ``schema_migrations``) lacks,
    running its statements through ``execute`` and then ``record``-ing it in the ledger.
    A migration changed after it was applied is reported, not applied again. Returns
    the migrations applied now."""
    done = []
    for m in migrations:
        if m.version in applied:
            if applied[m.version] != m.checksum:
                log.warning("%s migration %s changed after it was applied; not re-applying it", engine, m)
            continue
        log.info("%s: applying migration %s", engine, m)
        for statement in m.statements:
            execute(statement)
        record(m)
        done.append(m)
    return done


# -- MySQL -------------------------------------------------------------------------------

_MYSQL_LEDGER = """
CREATE TABLE IF NOT EXISTS `schema_migrations` (
  `version`    INT          NOT NULL PRIMARY KEY,
  `name`       VARCHAR(255) NOT NULL,
  `checksum`   CHAR(64)     NOT NULL,
  `applied_at` DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
"""


def mysql_connect(
    settings: Settings, *, database: bool = True, autocommit: bool = False, **extra
) -> pymysql.connections.Connection:
    """The one way to connect to the MySQL database, with the session settings the sinks'
    SQL relies on: UTC, strict (bad values fail instead of being truncated) and backslash
    escapes. ``database=False`` connects to the server only (to create or drop the
    database); ``autocommit`` for readers that poll (each query then sees new rows)."""
    kw = dict(settings.mysql)
    if not database:
        kw.pop("database")
    conn = pymysql.connect(
        **kw,
        charset="utf8mb4",
        autocommit=autocommit,
        connect_timeout=5,
        read_timeout=600,
        write_timeout=600,
        **extra,
    )
    with conn.cursor() as cur:
        cur.execute("SET SESSION time_zone = '+00:00', sql_mode = 'STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'")
    return conn


def mysql_rows(settings: Settings, sql: str) -> list[dict]:
    """The rows of one read statement, as dicts, on a connection of its own."""
    conn = mysql_connect(settings, autocommit=True)
    try:
        with conn.cursor(pymysql.cursors.DictCursor) as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


def migrate_mysql(settings: Settings, directory: Path | None = None, conn=None) -> list[Migration]:
    """Apply the MySQL migrations not yet applied; returns those applied now."""
    migrations = discover(directory or MIGRATIONS / "mysql")
    own = conn is None
    conn = conn or mysql_connect(settings)
    try:
        with conn.cursor() as cur:
            # Two sinks (or a sink and `db init`) starting together take turns.
            cur.execute("SELECT GET_LOCK(CONCAT(DATABASE(), '.schema_migrations'), 60)")
            if cur.fetchone()[0] != 1:
                raise TimeoutError("another process holds the schema migration lock for over 60 s")
            try:
                cur.execute(_MYSQL_LEDGER)
                cur.execute("SELECT version, checksum FROM schema_migrations")
                applied = dict(cur.fetchall())

                def record(m: Migration) -> None:
                    cur.execute(
                        "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                        (m.version, m.name, m.checksum),
                    )
                    conn.commit()

                return apply_pending("MySQL", migrations, applied, cur.execute, record)
            finally:
                cur.execute("SELECT RELEASE_LOCK(CONCAT(DATABASE(), '.schema_migrations'))")
    finally:
        if own:
            conn.close()


def mysql_applied(settings: Settings) -> list[tuple[int, str]]:
    conn = mysql_connect(settings)
    with conn, conn.cursor() as cur:
        cur.execute(_MYSQL_LEDGER)
        cur.execute("SELECT version, name FROM schema_migrations ORDER BY version")
        return [tuple(r) for r in cur.fetchall()]


# -- ClickHouse --------------------------------------------------------------------------

_CH_LEDGER = """
CREATE TABLE IF NOT EXISTS schema_migrations
(
    version    UInt32,
    name       String,
    checksum   String,
    applied_at DateTime64(6, 'UTC') DEFAULT now64(6)
)
ENGINE = ReplacingMergeTree
ORDER BY version
"""


def migrate_clickhouse(settings: Settings, directory: Path | None = None, client=None) -> list[Migration]:
    """Apply the ClickHouse migrations not yet applied; returns those applied now."""
    migrations = discover(directory or MIGRATIONS / "clickhouse")
    client = client or clickhouse.connect(settings)
    client.command(_CH_LEDGER)
    applied = dict(client.query("SELECT version, any(checksum) FROM schema_migrations GROUP BY version").result_rows)

    def record(m: Migration) -> None:
        client.insert(
            "schema_migrations", [[m.version, m.name, m.checksum]], column_names=["version", "name", "checksum"]
        )

    return apply_pending("ClickHouse", migrations, applied, client.command, record)


def repair_clickhouse(settings: Settings, client=None) -> None:
    """Run every ClickHouse migration's statements again, applied or not: they are
    written re-runnable (``IF NOT EXISTS``), so this makes again a table that was dropped
    after its migration was recorded, and leaves the others as they are."""
    client = client or clickhouse.connect(settings)
    for m in discover(MIGRATIONS / "clickhouse"):
        for statement in m.statements:
            client.command(statement)
    migrate_clickhouse(settings, client=client)


def clickhouse_applied(settings: Settings) -> list[tuple[int, str]]:
    client = clickhouse.connect(settings)
    client.command(_CH_LEDGER)
    return [
        tuple(r)
        for r in client.query(
            "SELECT version, any(name) FROM schema_migrations GROUP BY version ORDER BY version"
        ).result_rows
    ]
