"""The MySQL sink: enriched events → ``events``, dead letters → ``dead_letters``.

Rows are upserted (``INSERT ... ON DUPLICATE KEY UPDATE``) keyed by the deterministic
ids, in one transaction per batch: a replay finds every row already there with the same
values and changes nothing, while a replay after a rule change updates exactly the rows
whose values changed. A row the database refuses (too long for its column, ...) is
retried alone and the ones that still fail become dead letters, so one bad value never
stalls the sink.

Events take one of two paths, chosen per connection:

* ``load_data`` (when the server allows ``LOAD DATA LOCAL INFILE``): the batch goes as
  tab-separated text into a per-connection temporary staging table, then one
  ``INSERT INTO events SELECT ... FROM staging ON DUPLICATE KEY UPDATE``. While batches
  hold only new events (the common case: no replay running), the text is first loaded
  straight into ``events`` behind a savepoint, which saves the staging round; if that
  load skipped a row (its id was already there, so it may need updating) or warned, it
  is rolled back to the savepoint and the batch takes the staging route. Building the
  text is far cheaper in Python than building SQL literals, and the server parses it
  faster than a multi-megabyte statement. The staging columns are wider than the real
  ones (every string is LONGTEXT, nothing is NOT NULL) because LOAD DATA LOCAL turns
  bad values into warnings and truncations; the INSERT ... SELECT is strict, so a value
  ``events`` cannot hold fails it, and that batch then takes the other path, which
  finds the refused rows one by one. A LOAD DATA that warns at all is not trusted
  either.
* ``insert`` (MySQL 8 has ``local_infile`` off by default; or the server refuses it):
  multi-row ``INSERT ... VALUES ... ON DUPLICATE KEY UPDATE`` statements.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import threading
from pathlib import Path
from dataclasses import dataclass, field
from datetime import datetime

import msgspec
import pymysql

from edxstream.core import records
from edxstream.core.records import DeadLetter, EnrichedEvent
from edxstream.core.settings import Settings
from sinks import migrate, rows
from sinks.consumer import SinkLoop, SinkStats, Stuck
from sinks.retired import RetiredList
from sinks.rows import Msg

log = logging.getLogger(__name__)

# Errors about a value, not about the database being reachable: the row is at fault.
ROW_ERRORS = (pymysql.err.DataError, pymysql.err.IntegrityError)
NO_SUCH_TABLE = 1146  # ER_NO_SUCH_TABLE

# The server will not take LOAD DATA LOCAL: ER_NOT_ALLOWED_COMMAND (old MySQL and MariaDB),
# ER_CLIENT_LOCAL_FILES_DISABLED (MySQL 8 with local_infile off),
# ER_LOAD_INFILE_CAPABILITY_DISABLED (MariaDB 10.5+).
LOCAL_INFILE_REFUSED = {1148, 3948, 4166}

# Inside a quoted literal only the backslash and the quote must be escaped; NUL and ^Z
# are escaped too, as mysql_real_escape_string does, for tools that log statements.
_NEEDS_ESCAPE = re.compile("[\\\\'\x00\x1a]")


def _escape(v: str) -> str:
    if _NEEDS_ESCAPE.search(v) is None:  # the common case, and far cheaper than replacing
        return v
    return v.replace("\\", "\\\\").replace("'", "\\'").replace("\x00", "\\0").replace("\x1a", "\\Z")


def literal(v) -> str:
    """A SQL literal for the session's sql_mode (backslash escapes on, set at connect)."""
    t = type(v)
    if t is str:
        return "'" + _escape(v) + "'"
    if v is None:
        return "NULL"
    if t is int:
        return str(v)
    if t is float:
        return repr(v)
    if t is bool:
        return "1" if v else "0"
    if t is datetime:
        return (
            f"'{v.year:04d}-{v.month:02d}-{v.day:02d} {v.hour:02d}:{v.minute:02d}:{v.second:02d}.{v.microsecond:06d}'"
        )
    if t is bytes:
        return "X'" + v.hex() + "'"
    raise TypeError(f"no SQL literal for {t.__name__}")


def row_literal(row: tuple) -> str:
    return "(" + ",".join(map(literal, row)) + ")"


def upsert_prefix(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO `{table}` (" + ",".join(f"`{c}`" for c in columns) + ") VALUES "


def upsert_suffix(columns: tuple[str, ...], keep: tuple[str, ...]) -> str:
    updates = ",".join(f"`{c}`=VALUES(`{c}`)" for c in columns if c not in keep)
    return " ON DUPLICATE KEY UPDATE " + updates


def chunks(items: list[tuple[str, Msg]], budget: int) -> list[list[tuple[str, Msg]]]:
    """Split (row literal, message) pairs into groups whose literals total under
    ``budget`` characters (a single larger row goes alone)."""
    out, chunk, size = [], [], 0
    for item in items:
        n = len(item[0]) + 1
        if chunk and size + n > budget:
            out.append(chunk)
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        out.append(chunk)
    return out


EVENT_COLUMNS = records.ENRICHED_FIELDS
DEAD_COLUMNS = records.DEAD_LETTER_FIELDS
EVENT_KEEP = ("event_id",)
DEAD_KEEP = ("dead_letter_id", "seen_at")  # seen_at: the first time it was rejected


STAGING = "edxstream_events_staging"
_INFILE_DIR = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None  # None: the temp directory
_SQL_TYPES = {str: "LONGTEXT", int: "BIGINT", float: "DOUBLE", bool: "TINYINT", datetime: "DATETIME(6)"}


def staging_ddl() -> str:
    """A temporary table with the events' columns, wide enough for any decoded value,
    without keys: what LOAD DATA fills and INSERT ... SELECT reads."""
    cols = []
    for f in msgspec.structs.fields(EnrichedEvent):
        t = f.type
        if getattr(t, "__origin__", None) is not None or type(t).__name__ == "UnionType":  # Optional[X]
            t = next(a for a in t.__args__ if a is not type(None))
        cols.append(f"`{f.name}` {_SQL_TYPES[t]} NULL")
    return (
        f"CREATE TEMPORARY TABLE IF NOT EXISTS `{STAGING}` (" + ", ".join(cols) + ") "
        "DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin"
    )


def load_data_sql(path: str, table: str, columns: tuple[str, ...]) -> str:
    return (
        f"LOAD DATA LOCAL INFILE {literal(path)} INTO TABLE `{table}` "
        "CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' ("
        + ",".join(f"`{c}`" for c in columns)
        + ")"
    )


def upsert_select(table: str, source: str, columns: tuple[str, ...], keep: tuple[str, ...]) -> str:
    cols = ",".join(f"`{c}`" for c in columns)
    return f"INSERT INTO `{table}` ({cols}) SELECT {cols} FROM `{source}`" + upsert_suffix(columns, keep)


@dataclass
class Prepared:
    # (the event, the message it came from, its place in that message's array or None)
    events: list[tuple[EnrichedEvent, Msg, int | None]] = field(default_factory=list)
    # (row literal, the message it came from)
    dead_letters: list[tuple[str, Msg]] = field(default_factory=list)
    # The events as LOAD DATA text, the last of each id only (so the batch's order needs
    # no keeping in the staging table); None when the writer takes the insert path.
    events_tsv: bytes | None = None
    retired: int = 0  # events of retired learners left out (edxstream forget)


class MySQLWriter:
    name = "mysql"

    def __init__(self, settings: Settings, migrate_on_connect: bool = True, load_data: bool | None = None):
        """``load_data``: None (the default) takes the LOAD DATA path when the server
        allows it; False always takes the insert path; True takes LOAD DATA even when the
        server says local_infile is off (it falls back if the server then refuses)."""
        self.settings = settings
        self.migrate_on_connect = migrate_on_connect
        self.load_data = load_data
        self.conn: pymysql.connections.Connection | None = None
        self.max_chars = 1_000_000
        # The path the next batches take; decided on connect, and prepare() builds the
        # LOAD DATA text only while it may be used.
        self.path = "insert" if load_data is False else "load_data"
        # Whether the client offers LOCAL INFILE at the handshake (a test turns it off to
        # see a real server refusal).
        self._client_local_infile = load_data is not False
        # Whether the next batch tries LOAD DATA straight into events: until a batch
        # meets ids already stored (a replay), then again once one is all new.
        self.direct = True
        self.retired = RetiredList(settings)

    def _connect(self) -> None:
        conn = migrate.mysql_connect(self.settings, local_infile=self._client_local_infile)
        try:
            if self.migrate_on_connect:
                for m in migrate.migrate_mysql(self.settings, conn=conn):
                    log.info("MySQL: applied migration %s", m)
            with conn.cursor() as cur:
                cur.execute("SELECT @@max_allowed_packet, @@local_infile")
                packet, server_infile = cur.fetchone()
                # Characters, not bytes: a character is at most 4 bytes in utf8mb4.
                self.max_chars = max(64_000, min(int(packet) // 4, 8_000_000))
                if self.load_data is False:
                    path = "insert"
                elif not int(server_infile) and self.load_data is None:
                    log.info("MySQL: the server has local_infile off; writing events with multi-row INSERTs")
                    path = "insert"
                else:
                    cur.execute(staging_ddl())
                    path = "load_data"
        except BaseException:
            conn.close()
            raise
        self.path = path
        self.conn = conn

    def prepare(self, msgs: list[Msg]) -> Prepared:
        p = Prepared()
        enriched, dead = self.settings.enriched_topic, self.settings.deadletter_topic
        events = p.events
        retired = self.retired.current()
        for msg in msgs:
            if msg.topic == enriched:
                for rec, index in rows.decode_events(msg):
                    if rec.__class__ is DeadLetter:
                        p.dead_letters.append((row_literal(rows.mysql_dead_letter_row(rec)), msg))
                    elif retired and self.retired.is_retired(rec, retired, pseudonymized=False):
                        p.retired += 1
                    else:
                        events.append((rec, msg, index))
                continue
            if msg.topic == dead:
                rec = rows.decode_dead_letter(msg)
            else:
                rec = rows.poison(msg, "unexpected_topic", f"the MySQL sink does not read {msg.topic}")
            p.dead_letters.append((row_literal(rows.mysql_dead_letter_row(rec)), msg))
        if self.path == "load_data" and events:
            last = {e.event_id: e for e, _, _ in events}  # a later message for the same id wins
            p.events_tsv = rows.tsv_rows([rows.mysql_event_tuple(e) for e in last.values()])
        return p

    def write(self, p: Prepared) -> dict[str, int]:
        """Store a batch. A missing table is made by the migrations (on a new
        connection), once; if it is still missing the sink is stuck and says so."""
        try:
            return self._write(p)
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != NO_SUCH_TABLE:
                raise
            log.warning("MySQL: %s; running the migrations to make it", exc.args[-1])
        self.reset()  # the next connection runs the migrations
        try:
            return self._write(p)
        except pymysql.err.ProgrammingError as exc:
            if exc.args[0] != NO_SUCH_TABLE:
                raise
            raise Stuck(
                f"MySQL: {exc.args[-1]}, and the migrations did not make it (its migration is recorded "
                f"as applied in schema_migrations)"
            ) from None

    def _write(self, p: Prepared) -> dict[str, int]:
        if self.conn is None:
            self._connect()
        conn = self.conn
        try:
            with conn.cursor() as cur:
                bad_events = None
                if self.path == "load_data" and p.events_tsv:
                    bad_events = self._load_events(cur, p.events_tsv)
                if bad_events is None:
                    # a refused event's dead letter holds that event alone, not its whole record
                    items = [(row_literal(rows.mysql_event_row(e)), rows.part_of(msg, i, e)) for e, msg, i in p.events]
                    bad_events = self._upsert(cur, "events", EVENT_COLUMNS, EVENT_KEEP, items)
                bad_dead = self._upsert(cur, "dead_letters", DEAD_COLUMNS, DEAD_KEEP, p.dead_letters)
                # Dead letters about refused rows hold only short, fixed-size fields and
                # the raw text (LONGTEXT): if even they fail, something else is wrong.
                refused = [(row_literal(rows.mysql_dead_letter_row(dl)), msg) for dl, msg in bad_events + bad_dead]
                if refused and self._upsert(cur, "dead_letters", DEAD_COLUMNS, DEAD_KEEP, refused):
                    raise RuntimeError("MySQL refused a dead-letter row about a refused row")
            conn.commit()
        except BaseException:
            try:
                conn.rollback()
            except Exception:
                pass
            raise
        done = {
            "events": len(p.events) - len(bad_events),
            "dead_letters": len(p.dead_letters) - len(bad_dead) + len(refused),
        }
        if p.retired:
            done["retired"] = p.retired
        return done

    def _load_events(self, cur, tsv: bytes) -> list | None:
        """Upsert the batch, straight or through the staging table. Returns [] when every
        row is stored, or None when the batch must take the insert path (nothing of it
        is stored then): the server refused LOAD DATA, warned about a value, or refused
        a value in the upsert."""
        n_rows = tsv.count(b"\n")  # one per row: a newline inside a value is escaped
        # First in the transaction: TRUNCATE may commit implicitly, with nothing to commit.
        cur.execute(f"TRUNCATE TABLE `{STAGING}`")
        # The file only carries the batch to the server: memory-backed where there is
        # such a place, and gone as soon as it is read (a kill leaves one file at most).
        fd, infile = tempfile.mkstemp(prefix="edxstream-mysql-", suffix=".tsv", dir=_INFILE_DIR)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(tsv)
            if self.direct and self._load_direct(cur, infile, n_rows):
                return []
            cur.execute(load_data_sql(infile, STAGING, EVENT_COLUMNS))
        except pymysql.err.OperationalError as exc:
            if exc.args[0] not in LOCAL_INFILE_REFUSED:
                raise
            log.warning("MySQL refused LOAD DATA LOCAL INFILE (%s); writing events with multi-row INSERTs", exc)
            self.path = "insert"
            return None
        finally:
            os.unlink(infile)
        cur.execute("SELECT @@warning_count")
        warnings = int(cur.fetchone()[0])
        if warnings:
            cur.execute("SHOW WARNINGS LIMIT 3")
            log.warning(
                "MySQL warned while loading a batch into the staging table (%s); writing it with INSERTs",
                "; ".join(str(w[2]) for w in cur.fetchall()),
            )
            return None
        try:
            affected = cur.execute(upsert_select("events", STAGING, EVENT_COLUMNS, EVENT_KEEP))
        except ROW_ERRORS as exc:
            log.warning("MySQL refused a value in a batch of events (%s); writing them one by one", exc)
            return None
        # Affected rows count 1 per inserted row, 2 per updated, 0 per unchanged one.
        self.direct = affected == n_rows
        return []

    def _load_direct(self, cur, infile: str, n_rows: int) -> bool:
        """LOAD DATA the batch straight into events. True when every row went in as a
        new row without a warning; otherwise the load is undone (False). LOAD DATA LOCAL
        skips a row whose id exists and truncates a value with a warning, so only a
        clean, complete load can stand for the upsert."""
        cur.execute("SAVEPOINT edxstream_direct")
        try:
            loaded = cur.execute(load_data_sql(infile, "events", EVENT_COLUMNS))
            cur.execute("SELECT @@warning_count")
            if loaded == n_rows and not int(cur.fetchone()[0]):
                return True
        except ROW_ERRORS:
            pass
        cur.execute("ROLLBACK TO SAVEPOINT edxstream_direct")
        self.direct = False
        return False

    def _upsert(
        self, cur, table: str, columns: tuple[str, ...], keep: tuple[str, ...], items: list[tuple[str, Msg]]
    ) -> list[tuple[DeadLetter, Msg]]:
        """Multi-row upserts of the items. When the database refuses a value, that
        statement (only) is undone and its rows are upserted one by one; the rows still
        refused come back as dead letters about their messages."""
        prefix, suffix = upsert_prefix(table, columns), upsert_suffix(columns, keep)
        refused = []
        for chunk in chunks(items, self.max_chars - len(prefix) - len(suffix)):
            try:
                cur.execute(prefix + ",".join(lit for lit, _ in chunk) + suffix)
                continue
            except ROW_ERRORS as exc:
                log.warning(
                    "MySQL refused a value in a batch of %d %s (%s); writing them one by one", len(chunk), table, exc
                )
            for lit, msg in chunk:
                try:
                    cur.execute(prefix + lit + suffix)
                except ROW_ERRORS as exc:
                    refused.append(
                        (rows.poison(msg, "rejected_by_database", f"MySQL refused the row for {table}: {exc}"), msg)
                    )
        return refused

    def reset(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
        self.conn = None

    def close(self) -> None:
        self.reset()


def run(
    settings: Settings,
    stop: threading.Event | None = None,
    max_idle_seconds: float | None = None,
    load_data: bool | None = None,
    metrics_path: Path | None = None,
) -> SinkStats:
    """Consume the enriched and dead-letter topics into MySQL until ``stop`` is set (or,
    with ``max_idle_seconds``, until nothing arrived for that long: caught up).
    ``load_data``: see :class:`MySQLWriter` (None: LOAD DATA when the server allows it).
    ``metrics_path``: where the progress figures go (default: run/sink-mysql.metrics.json)."""
    writer = MySQLWriter(settings, load_data=load_data)
    loop = SinkLoop(
        settings,
        writer,
        settings.mysql_sink_group,
        [settings.enriched_topic, settings.deadletter_topic],
        stop=stop,
        max_idle_seconds=max_idle_seconds,
        metrics_path=metrics_path,
    )
    return loop.run()
