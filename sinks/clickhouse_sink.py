"""The ClickHouse sink: window counts → ``window_counts``, enriched events → ``events``.

Both tables are ReplacingMergeTree keyed by what identifies a row (the window; the event),
so re-delivered messages collapse into the rows already there and a later version of a
window replaces the earlier one. Events are pseudonymized on the way in when
``settings.pseudonymize`` is on (``edxstream.core.privacy``). The same code runs against a
ClickHouse server and the embedded chdb engine (``edxstream.core.clickhouse.connect``).

A message that is not a valid record goes, as a dead letter, to the dead-letter topic,
which the MySQL sink stores in ``dead_letters``: the analyst database holds no raw lines.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from dataclasses import dataclass, field

from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError
from confluent_kafka import Producer

from edxstream.core import chdb_server, clickhouse, kafka_admin, privacy, records
from edxstream.core.errors import UserError
from edxstream.core.records import DeadLetter, EnrichedEvent, WindowCount
from edxstream.core.settings import Settings
from sinks import migrate, rows
from sinks import retired as retired_mod
from sinks.consumer import SinkLoop, SinkStats, Stuck
from sinks.retired import RetiredList
from sinks.rows import Msg

log = logging.getLogger(__name__)

# ClickHouse's codes for a table or database that is not there (dropped by hand, or a
# data folder replaced)
MISSING_CODES = ("(UNKNOWN_TABLE)", "(UNKNOWN_DATABASE)")


def _missing(exc: Exception) -> bool:
    text = str(exc)
    return any(code in text for code in MISSING_CODES)


EVENT_COLUMNS = list(records.ENRICHED_FIELDS)
WINDOW_COLUMNS = list(records.WINDOW_FIELDS)


# How the JSON rows are read: RFC 3339 times as msgspec writes them ("...Z"), and fields
# a newer stream app may add are ignored, as msgspec ignores them when decoding.
JSON_INSERT_SETTINGS = {"date_time_input_format": "best_effort", "input_format_skip_unknown_fields": 1}


@dataclass
class Prepared:
    """A decoded batch. Rows travel to ClickHouse as JSON (``*_json``): the engine reads
    JSON in C++ for a fraction of what building column blocks in Python costs. The
    decoded records stay alongside, for a server that refuses the JSON."""

    events: list[EnrichedEvent] = field(default_factory=list)
    event_json: list[bytes] = field(default_factory=list)
    event_from: list[tuple[Msg, int | None]] = field(default_factory=list)  # message and place of each event
    windows: list[WindowCount] = field(default_factory=list)
    window_json: list[bytes] = field(default_factory=list)
    window_from: list[Msg] = field(default_factory=list)  # the message of each window
    dead_letters: list[DeadLetter] = field(default_factory=list)
    retired: int = 0  # events of retired learners left out (edxstream forget)


class ClickHouseWriter:
    name = "clickhouse"

    def __init__(self, settings: Settings, migrate_on_connect: bool = True):
        self.settings = settings
        self.migrate_on_connect = migrate_on_connect
        self.client = None
        self.producer: Producer | None = None
        self.endpoint = None  # query endpoint for the chdb folder this process holds
        self.retired = RetiredList(settings)
        self.retired_applied: frozenset[str] = frozenset()  # keys whose rows this writer deleted

    def prepare(self, msgs: list[Msg]) -> Prepared:
        p = Prepared()
        s = self.settings
        retired = self.retired.current()
        for msg in msgs:
            if msg.topic == s.enriched_topic:
                for rec, index in rows.decode_events(msg):
                    if rec.__class__ is not DeadLetter:
                        try:
                            rec = privacy.for_analysts(rec, s)
                        except UserError:
                            raise
                        except Exception as exc:  # never let one odd event reach analysts unmasked
                            rec = rows.poison(
                                rows.part_of(msg, index, rec), "pseudonymize_failed", f"{type(exc).__name__}: {exc}"
                            )
                    if rec.__class__ is DeadLetter:
                        p.dead_letters.append(rec)
                    elif retired and self.retired.is_retired(rec, retired, s.pseudonymize):
                        p.retired += 1
                    else:
                        p.events.append(rec)
                        p.event_json.append(records.encode(rec))
                        p.event_from.append((msg, index))
                continue
            if msg.topic == s.aggregates_topic:
                rec = rows.decode_windows(msg)
                if not isinstance(rec, DeadLetter):
                    # as received: it decoded and its values were checked
                    p.windows.extend(rec)
                    p.window_json.append(msg.value)
                    p.window_from.extend([msg] * len(rec))
            else:
                rec = rows.poison(msg, "unexpected_topic", f"the ClickHouse sink does not read {msg.topic}")
            if isinstance(rec, DeadLetter):
                p.dead_letters.append(rec)
        return p

    def _connect(self) -> None:
        client = clickhouse.connect(self.settings)
        if self.migrate_on_connect:
            for m in migrate.migrate_clickhouse(self.settings, client=client):
                log.info("ClickHouse: applied migration %s", m)
        self.client = client
        if self.settings.clickhouse_embedded_path is not None and self.endpoint is None:
            # While this process holds the chdb folder, `edxstream query|export|report`
            # cannot open it: they send read-only queries here instead.
            self.endpoint = chdb_server.serve(client, self.settings)

    def write(self, p: Prepared) -> dict[str, int]:
        """Windows, then events, then dead letters. A connection error goes up (the loop
        retries the batch with backoff); a missing table is made again by the
        migrations, once, else the sink is stuck; rows ClickHouse refuses for their
        values are found by halving and become dead letters, and the rest is stored."""
        if self.client is None:
            self._connect()
        new = self.retired.keys - self.retired_applied
        if new:  # learners retired since this writer last looked: their stored rows go
            n = retired_mod.delete_from_clickhouse(self.client, set(new))
            log.info("ClickHouse: deleted %d events of %d newly retired learner keys", n, len(new))
            self.retired_applied |= new
        refused: list[DeadLetter] = []
        if p.window_json:
            refused += self._store(
                "window_counts",
                p.window_json,
                WINDOW_COLUMNS,
                lambda i: rows.clickhouse_window_row(p.windows[i]),
                len(p.windows),
                p.window_from.__getitem__,
            )
        if p.event_json:
            refused += self._store(
                "events",
                p.event_json,
                EVENT_COLUMNS,
                lambda i: rows.clickhouse_event_row(p.events[i]),
                len(p.events),
                lambda i: rows.part_of(p.event_from[i][0], p.event_from[i][1], p.events[i]),
            )
        if p.dead_letters or refused:
            self._publish(p.dead_letters + refused)
        done = {"events": len(p.events), "windows": len(p.windows), "dead_letters": len(p.dead_letters) + len(refused)}
        if p.retired:
            done["retired"] = p.retired
        return done

    def _store(self, table: str, docs: list[bytes], columns: list[str], row, n_rows: int, source) -> list[DeadLetter]:
        try:
            return self._insert(table, docs, columns, row, n_rows, source)
        except DatabaseError as exc:
            if not _missing(exc):
                raise
            log.warning(
                "ClickHouse: %s (%s); running the migrations again to make it", table, str(exc).splitlines()[0][:200]
            )
            migrate.repair_clickhouse(self.settings, self.client)
        try:
            return self._insert(table, docs, columns, row, n_rows, source)
        except DatabaseError as exc:
            if _missing(exc):
                raise Stuck(
                    f"ClickHouse table {self.settings.clickhouse_database}.{table} is missing and the "
                    f"migrations did not make it again ({str(exc).splitlines()[0][:200]})"
                ) from None
            raise

    def _insert(self, table: str, docs: list[bytes], columns: list[str], row, n_rows: int, source) -> list[DeadLetter]:
        try:
            self.client.raw_insert(table, None, rows.json_rows(docs), settings=JSON_INSERT_SETTINGS, fmt="JSONEachRow")
            return []
        except OperationalError:
            raise  # not the rows: the connection
        except DatabaseError as exc:
            if _missing(exc):
                raise
            # A server that reads some value differently from msgspec: the rows then go
            # as column blocks, which is slower but takes whatever decoded; rows that
            # even so cannot be stored are found by halving.
            log.warning(
                "ClickHouse: %s refused the JSON rows (%s); inserting them as columns",
                table,
                str(exc).splitlines()[0][:300],
            )
        return self._columns(table, columns, row, 0, n_rows, source)

    def _columns(self, table: str, columns: list[str], row, lo: int, hi: int, source) -> list[DeadLetter]:
        try:
            self.client.insert(table, [row(i) for i in range(lo, hi)], column_names=columns)
            return []
        except OperationalError:
            raise
        except (DatabaseError, ValueError, TypeError, OverflowError) as exc:
            if isinstance(exc, DatabaseError) and _missing(exc):
                raise
            if hi - lo == 1:
                why = str(exc).splitlines()[0][:500] if str(exc) else type(exc).__name__
                log.warning("ClickHouse refused a row for %s: %s; it goes to the dead letters", table, why)
                return [
                    rows.poison(source(lo), "rejected_by_database", f"ClickHouse refused the row for {table}: {why}")
                ]
        mid = (lo + hi) // 2
        return self._columns(table, columns, row, lo, mid, source) + self._columns(table, columns, row, mid, hi, source)

    def _publish(self, dead_letters: list[DeadLetter]) -> None:
        """Send the dead letters to their topic and wait for the broker to have them all."""
        if self.producer is None:
            self.producer = Producer(
                {
                    "bootstrap.servers": self.settings.kafka_bootstrap,
                    "logger": kafka_admin.LIBRDKAFKA_LOG,
                    **kafka_admin.DELIVERY_CONFIG,
                    "linger.ms": 5,
                }
            )
        failures: list[str] = []

        def delivered(err, _msg):
            if err is not None:
                failures.append(str(err))

        for dl in dead_letters:
            self.producer.produce(
                self.settings.deadletter_topic,
                key=(dl.source or "").encode(),
                value=records.encode(dl),
                on_delivery=delivered,
            )
        left = self.producer.flush(30)
        if left or failures:
            raise RuntimeError(
                f"dead-letter topic did not take {left or len(failures)} messages: {failures[:1] or 'timeout'}"
            )

    def reset(self) -> None:
        # chdb clients are shared per folder (edxstream.core.clickhouse caches them): only
        # drop our reference; a server client reconnects over HTTP by itself.
        self.client = None

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(10)
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint = None
        self.client = None


def run(
    settings: Settings,
    stop: threading.Event | None = None,
    max_idle_seconds: float | None = None,
    metrics_path: Path | None = None,
) -> SinkStats:
    """Consume the aggregates and enriched topics into ClickHouse until ``stop`` is set
    (or, with ``max_idle_seconds``, until nothing arrived for that long: caught up).
    ``metrics_path``: where the progress figures go (default: run/sink-clickhouse.metrics.json)."""
    privacy.check_key(settings)  # before anything is read: no event is written under a public key
    writer = ClickHouseWriter(settings)
    loop = SinkLoop(
        settings,
        writer,
        settings.clickhouse_sink_group,
        [settings.aggregates_topic, settings.enriched_topic],
        stop=stop,
        max_idle_seconds=max_idle_seconds,
        batch_rows=settings.clickhouse_batch_rows,
        metrics_path=metrics_path,
    )
    return loop.run()
