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
        client = _embedded.get(key)
        if client is None:
            path.mkdir(parents=True, exist_ok=True)
            try:
                with native_output_to_debug_log():
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
    for cue, short in (("Connection refused", "connection refused"), ("timed out", "timed out"),
                       ("Name or service not known", "unknown host"), ("Authentication failed", "login refused")):
        if cue in text:
            return short
    return text


def describe(settings: Settings) -> str:
    path = settings.clickhouse_embedded_path
    if path is None:
        u = urlparse(settings.clickhouse_url)
        return f"{u.scheme}://{u.hostname}:{u.port or 8123}"
    return f"chdb:{path}"
