"""One way to get a ClickHouse client, for a server or for the embedded chdb engine.

The sinks, ``db init``, ``query`` and ``export`` all call :func:`connect`, so the same
code runs against ``clickhouse-server`` (docker-compose) and against chdb (local runs and
CI). chdb lets one process at a time open a data folder, and inside a process
clickhouse-connect keeps one engine per folder, so clients are cached per target.
"""

from __future__ import annotations

import threading
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from edxstream.core.errors import UserError
from edxstream.core.settings import Settings

_lock = threading.Lock()
_embedded: dict[str, Client] = {}


def connect(settings: Settings, database: str | None = None) -> Client:
    """A client for the configured ClickHouse; ``database`` defaults to the settings'.

    The database is created when missing, so a client is always usable."""
    database = database or settings.clickhouse_database
    path = settings.clickhouse_embedded_path
    if path is None:
        u = urlparse(settings.clickhouse_url)
        client = clickhouse_connect.get_client(
            host=u.hostname or "127.0.0.1",
            port=u.port or (8443 if u.scheme == "https" else 8123),
            username=unquote(u.username or "default"),
            password=unquote(u.password or ""),
            secure=u.scheme == "https",
        )
        client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        client.database = database
        return client
    key = str(path)
    with _lock:
        embedded = _embedded.get(key)
        if embedded is None:
            path.mkdir(parents=True, exist_ok=True)
            try:
                embedded = clickhouse_connect.get_client(interface="chdb", path=key)
            except Exception as exc:  # chdb raises a generic error when the folder is held
                raise UserError(
                    f"cannot open the embedded ClickHouse folder {key}: another edxstream "
                    f"process (the ClickHouse sink) holds it. Stop that process, or query "
                    f"through it. ({exc})"
                ) from exc
            _embedded[key] = embedded
    embedded.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    embedded.database = database
    return embedded


def describe(settings: Settings) -> str:
    """Where the configured ClickHouse is, for messages (no password)."""
    path = settings.clickhouse_embedded_path
    if path is None:
        u = urlparse(settings.clickhouse_url)
        return f"{u.scheme}://{u.hostname}:{u.port or 8123}"
    return f"chdb:{path}"
