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
_read_only: dict[str, Client] = {}
# The engine's own guard on analyst sessions (see connect_read_only).
READ_ONLY_SETTINGS = {"readonly": 1}


def _server_client(settings: Settings, **extra) -> Client:
    """A client of the ClickHouse server in ``settings.clickhouse_url``."""
    u = urlparse(settings.clickhouse_url)
    return clickhouse_connect.get_client(
        host=u.hostname or "127.0.0.1",
        port=u.port or (8443 if u.scheme == "https" else 8123),
        username=unquote(u.username or "default"),
        password=unquote(u.password or ""),
        secure=u.scheme == "https",
        **extra,
    )


def connect(settings: Settings, database: str | None = None) -> Client:
    """A client for the configured ClickHouse; ``database`` defaults to the settings'.

    The database is created when missing, so a client is always usable."""
    database = database or settings.clickhouse_database
    path = settings.clickhouse_embedded_path
    if path is None:
        client = _server_client(settings)
        client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
        client.database = database
        return client
    key = str(path)
    with _lock:
        client = _embedded.get(key)
        if client is None:
            path.mkdir(parents=True, exist_ok=True)
            try:
                client = clickhouse_connect.get_client(interface="chdb", path=key)
            except Exception as exc:  # chdb raises a generic error when the folder is held
                raise UserError(
                    f"cannot open the embedded ClickHouse folder {key}: another edxstream "
                    f"process (the ClickHouse sink) holds it. Stop that process, or query "
                    f"through it. ({exc})"
                ) from exc
            _embedded[key] = client
    client.command(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    client.database = database
    return client


def connect_read_only(settings: Settings) -> Client:
    """A client for analyst statements: its session runs with the engine's ``readonly=1``
    (no writes, no DDL, no setting changes, no table functions outside the engine's safe
    set) in the analyst database. On chdb it is a second handle on the engine this
    process holds (chdb keeps session settings per handle), so the process's writing
    client is unaffected. On a server, connect with the read-only analyst user (see
    infra/README.md); the session setting holds for any user."""
    database = settings.clickhouse_database
    path = settings.clickhouse_embedded_path
    if path is None:
        return _server_client(settings, database=database, settings=READ_ONLY_SETTINGS)
    connect(settings)  # opens the engine (or says who holds the folder) and the database
    key = str(path)
    with _lock:
        client = _read_only.get(key)
        if client is None:
            client = clickhouse_connect.get_client(interface="chdb", path=key, settings=READ_ONLY_SETTINGS,
                                                   database=database)
            _read_only[key] = client
    client.database = database
    return client


def describe(settings: Settings) -> str:
    path = settings.clickhouse_embedded_path
    if path is None:
        u = urlparse(settings.clickhouse_url)
        return f"{u.scheme}://{u.hostname}:{u.port or 8123}"
    return f"chdb:{path}"
