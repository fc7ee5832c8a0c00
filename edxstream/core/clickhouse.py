"""One way to get a ClickHouse client, for a server or for the embedded chdb engine.

The sinks, ``db init``, ``query`` and ``export`` all call :func:`connect`, so the same
code runs against ``clickhouse-server`` (docker-compose) and against chdb (local runs and
CI). chdb lets one process at a time open a data folder, and inside a process
clickhouse-connect keeps one engine per folder, so clients are cached per target.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import tempfile
import threading
from urllib.parse import unquote, urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from edxstream.core.errors import UserError
from edxstream.core.settings import Settings

log = logging.getLogger(__name__)
_lock = threading.Lock()
_embedded: dict[str, Client] = {}
_read_only: dict[str, Client] = {}
# The engine's own guard on analyst sessions (see connect_read_only).
# readonly=2: no writes and no DDL, and `readonly` itself cannot be changed; unlike 1, the
# session may set query settings (the CSV output settings of `query` and `export`, and
# join_use_nulls, which chdb_server.check_read_only lets a statement set; it refuses
# every other SETTINGS clause).
READ_ONLY_SETTINGS = {"readonly": 2}


def _server_client(config: Settings, **extra) -> Client:
    """A client of the ClickHouse server in ``config.clickhouse_url``; ``extra`` goes to
    the client (its ``settings`` are the session's ClickHouse settings)."""
    u = urlparse(config.clickhouse_url)
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
        embedded = _embedded.get(key)
        if embedded is None:
            # the web app or `analyze` may hold the folder, yielding it: they hand it over
            # and go on through this process's endpoint (if it serves one) or wait for it
            from edxstream.core import chdb_server

            chdb_server.claim(settings)
            path.mkdir(parents=True, exist_ok=True)
            try:
                with native_output_to_debug_log():
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


@contextlib.contextmanager
def native_output_to_debug_log():
    """Catch what the chdb engine writes from C++ straight to the process's stdout and
    stderr while it opens a folder (for instance "Code: 76 ... Cannot lock file" when
    another process holds it, which the caller then handles) and put it in the debug
    log instead, so it does not land in a command's output."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = (os.dup(1), os.dup(2))
    libc = ctypes.CDLL(None)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 1)
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            libc.fflush(None)  # the engine's buffered C stdio, before the descriptors go back
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("chdb: %s", text)


def connection_problem(exc: BaseException) -> str:
    """Why a ClickHouse server could not be reached, in a few words rather than the HTTP
    client's chain of wrapped errors."""
    text = " ".join(str(exc).split())
    for cue, short in (
        ("Connection refused", "connection refused"),
        ("timed out", "timed out"),
        ("Name or service not known", "unknown host"),
        ("Authentication failed", "login refused"),
    ):
        if cue in text:
            return short
    return text


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
            client = clickhouse_connect.get_client(
                interface="chdb", path=key, settings=READ_ONLY_SETTINGS, database=database
            )
            _read_only[key] = client
    client.database = database
    return client


def connect_handle(settings: Settings) -> Client:
    """A writing client of its own on the embedded engine this process holds (a new
    handle, not the cached one another thread writes with); the caller closes it."""
    connect(settings)
    return clickhouse_connect.get_client(
        interface="chdb", path=str(settings.clickhouse_embedded_path), database=settings.clickhouse_database
    )


def close_embedded(settings: Settings) -> None:
    """Close this process's cached handles on the embedded folder. Once every handle on
    it is closed (the caller closes its own), the engine stops and another process can
    open the folder."""
    key = str(settings.clickhouse_embedded_path)
    with _lock:
        for cache in (_read_only, _embedded):
            client = cache.pop(key, None)
            if client is not None:
                client.close()


def describe(settings: Settings) -> str:
    """Where the configured ClickHouse is, for messages (no password)."""
    path = settings.clickhouse_embedded_path
    if path is None:
        u = urlparse(settings.clickhouse_url)
        return f"{u.scheme}://{u.hostname}:{u.port or 8123}"
    return f"chdb:{path}"
