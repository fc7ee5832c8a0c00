"""Queries on the embedded ClickHouse (chdb) while another process holds its folder.

chdb lets one process at a time open a data folder. While the pipeline runs, the
ClickHouse sink holds it, so ``edxstream query``/``export``/``report`` cannot open it
themselves. The holding process therefore runs :func:`serve`: a small HTTP endpoint on
loopback, in a background thread, that runs read-only SQL on its engine and answers in
any ClickHouse output format. Its address and a random token are written to
``<data_dir>/run/clickhouse.endpoint`` (mode 0600, so only the same user can query).

:func:`open_runner` is the client side: a :class:`Runner` that queries a ClickHouse
server, or the chdb folder directly when it is free, or the endpoint when it is held.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import threading
import urllib.error
import urllib.parse
import urllib.request
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Protocol

import clickhouse_connect
from clickhouse_connect.driver.exceptions import ClickHouseError

from edxstream.core import clickhouse
from edxstream.core.errors import UserError
from edxstream.core.settings import Settings

log = logging.getLogger(__name__)

# Statements that only read. Anything else needs allow_write=True on the server side.
READ_KEYWORDS = frozenset({"SELECT", "WITH", "SHOW", "DESCRIBE", "DESC", "EXISTS", "EXPLAIN"})
# The only query settings a client may pass along: how results are written (the CSV that
# `query --format csv` and `export` write: empty for NULL, ISO times). Others could lift
# the endpoint's limits, so they are not forwarded.
OUTPUT_SETTINGS = frozenset({"format_csv_null_representation", "date_time_output_format"})
MAX_SQL_BYTES = 1_000_000


def endpoint_file(settings: Settings) -> Path:
    return settings.data_dir / "run" / "clickhouse.endpoint"


def _code_tokens(sql: str) -> tuple[list[str], bool]:
    """The words of ``sql`` outside quotes and comments, and whether a ``;`` is followed
    by more code (several statements)."""
    words: list[str] = []
    word: list[str] = []
    i, n = 0, len(sql)
    after_semicolon = False
    several = False

    def flush() -> None:
        if word:
            words.append("".join(word).upper())
            word.clear()

    while i < n:
        c = sql[i]
        if c in "'\"`":
            flush()
            j = i + 1
            while j < n and sql[j] != c:
                j += 2 if sql[j] == "\\" else 1
            several |= after_semicolon
            i = j + 1
        elif sql.startswith("--", i) or c == "#":
            flush()
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            flush()
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
        elif c == ";":
            flush()
            after_semicolon = True
            i += 1
        elif c.isalnum() or c == "_":
            word.append(c)
            several |= after_semicolon
            i += 1
        else:
            flush()
            several |= after_semicolon and not c.isspace()
            i += 1
    flush()
    return words, several


def check_read_only(sql: str) -> None:
    """Raise UserError unless ``sql`` is one statement that only reads."""
    words, several = _code_tokens(sql)
    if not words:
        raise UserError("empty query")
    if several:
        raise UserError("one statement per query, please")
    if words[0] not in READ_KEYWORDS:
        raise UserError(f"only read-only statements are allowed here ({', '.join(sorted(READ_KEYWORDS))}), not {words[0]}")
    for a, b in zip(words, words[1:]):
        if (a, b) == ("INTO", "OUTFILE"):
            raise UserError("INTO OUTFILE is not allowed: the endpoint returns results, it does not write files")


def strip_semicolons(sql: str) -> str:
    return sql.strip().rstrip(";").rstrip()


_EXPECTED = re.compile(r"\. Expected one of: .*?(?=\. \([A-Z_]+\)$|$)", re.S)


def engine_message(exc: Exception, fmt: str) -> str:
    """The engine's error as one line, as the user wrote the SQL: without the FORMAT
    clause the client appended to it, and without the parser's long list of tokens it
    expected. A missing table gets a hint, since that is what a fresh setup meets."""
    text = str(exc).replace(f"\n FORMAT {fmt}", "")
    text = " ".join(_EXPECTED.sub("", text).split())
    if "UNKNOWN_TABLE" in text or "UNKNOWN_DATABASE" in text:
        text += ". The analyst tables are made by `edxstream db init`; list them with edxstream query \"SHOW TABLES\""
    return text


# -- server side --------------------------------------------------------------------------


class EndpointServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, client, database: str, token: str, allow_write: bool, path_file: Path):
        super().__init__(address, _Handler)
        self.client = client
        self.database = database
        self.token = token
        self.allow_write = allow_write
        self.path_file = path_file
        self.lock = threading.Lock()  # one query at a time on our handle; the engine serialises anyway
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def stop(self) -> None:
        """Stop answering and remove the endpoint file (if it is still ours)."""
        self.shutdown()
        self.server_close()
        try:
            if json.loads(self.path_file.read_text()).get("token") == self.token:
                self.path_file.unlink()
        except (OSError, ValueError):
            pass


class _Handler(BaseHTTPRequestHandler):
    server: EndpointServer
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args) -> None:  # quiet: the sink's log is for the sink
        log.debug("endpoint: " + fmt, *args)

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # health check
        self._reply(HTTPStatus.OK, b"edxstream chdb endpoint\n")

    def do_POST(self) -> None:
        if not secrets.compare_digest(self.headers.get("X-Edxstream-Token", ""), self.server.token):
            self._reply(HTTPStatus.FORBIDDEN, b"bad token\n")
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_SQL_BYTES:
            self._reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, b"query too long\n")
            return
        sql = strip_semicolons(self.rfile.read(length).decode("utf-8", "replace"))
        params = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query, keep_blank_values=True)
        fmt = params.get("format", ["TabSeparatedWithNames"])[0]
        database = params.get("database", [self.server.database])[0]
        settings = {k: v[0] for k, v in params.items() if k in OUTPUT_SETTINGS}
        try:
            if not self.server.allow_write:
                check_read_only(sql)
            with self.server.lock:
                self.server.client.database = database
                body = self.server.client.raw_query(sql, fmt=fmt, settings=settings or None)
        except UserError as exc:
            self._reply(HTTPStatus.FORBIDDEN, f"{exc}\n".encode())
            return
        except Exception as exc:  # the engine's own message is what the analyst needs
            self._reply(HTTPStatus.BAD_REQUEST, f"{engine_message(exc, fmt)}\n".encode())
            return
        self._reply(HTTPStatus.OK, body, "application/octet-stream")


def serve(client, settings: Settings, allow_write: bool = False, host: str = "127.0.0.1") -> EndpointServer:
    """Answer queries on ``client``'s chdb folder from other processes, in a background
    thread, until ``.stop()``. Writes the endpoint file other processes look for.

    The endpoint gets its own handle on the engine (chdb allows several per folder inside
    one process), so its USE/database state never disturbs the caller's client."""
    path = settings.clickhouse_embedded_path
    own = clickhouse_connect.get_client(interface="chdb", path=str(path)) if path is not None else client
    target = endpoint_file(settings)
    token = secrets.token_hex(16)
    server = EndpointServer((host, 0), own, settings.clickhouse_database, token, allow_write, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"url": server.url, "token": token, "pid": os.getpid(), "path": str(path)}, f)
    os.replace(tmp, target)
    server.thread = threading.Thread(target=server.serve_forever, name="chdb-endpoint", daemon=True)
    server.thread.start()
    log.info("ClickHouse query endpoint on %s (for edxstream query/export/report)", server.url)
    return server


# -- client side --------------------------------------------------------------------------


class Runner(Protocol):
    """Runs SQL and returns the result in a ClickHouse output format."""

    where: str

    def raw(self, sql: str, fmt: str, settings: dict[str, str] | None = None) -> bytes: ...

    def stream(self, sql: str, fmt: str, settings: dict[str, str] | None = None) -> Iterator[bytes]: ...


class ClientRunner:
    def __init__(self, client, where: str):
        self.client = client
        self.where = where

    def raw(self, sql: str, fmt: str, settings: dict[str, str] | None = None) -> bytes:
        try:
            return self.client.raw_query(strip_semicolons(sql), fmt=fmt, settings=settings)
        except ClickHouseError as exc:
            raise UserError(f"ClickHouse ({self.where}): {engine_message(exc, fmt)}") from None

    def stream(self, sql: str, fmt: str, settings: dict[str, str] | None = None) -> Iterator[bytes]:
        try:
            stream = self.client.raw_stream(strip_semicolons(sql), fmt=fmt, settings=settings)
            try:
                while chunk := stream.read(1 << 20):
                    yield chunk
            finally:
                stream.close()
        except ClickHouseError as exc:
            raise UserError(f"ClickHouse ({self.where}): {engine_message(exc, fmt)}") from None


class EndpointRunner:
    def __init__(self, url: str, token: str, database: str, where: str):
        self.url = url
        self.token = token
        self.database = database
        self.where = where

    def _open(self, sql: str, fmt: str, settings: dict[str, str] | None):
        query = urllib.parse.urlencode({"format": fmt, "database": self.database, **(settings or {})})
        req = urllib.request.Request(
            f"{self.url}?{query}", data=sql.encode(), method="POST",
            headers={"X-Edxstream-Token": self.token, "Content-Type": "text/plain; charset=utf-8"},
        )
        try:
            return urllib.request.urlopen(req, timeout=600)
        except urllib.error.HTTPError as exc:
            raise UserError(f"ClickHouse ({self.where}): {exc.read().decode(errors='replace').strip()}") from None
        except OSError as exc:
            raise UserError(
                f"the process holding the ClickHouse folder does not answer on {self.url} ({exc}); "
                f"is the ClickHouse sink still starting or stuck?"
            ) from None

    def raw(self, sql: str, fmt: str, settings: dict[str, str] | None = None) -> bytes:
        with self._open(sql, fmt, settings) as resp:
            return resp.read()

    def stream(self, sql: str, fmt: str, settings: dict[str, str] | None = None) -> Iterator[bytes]:
        with self._open(sql, fmt, settings) as resp:
            while chunk := resp.read(1 << 20):
                yield chunk


def holder(settings: Settings) -> dict | None:
    """The endpoint file of the other live process that holds the embedded ClickHouse
    folder (url, token, pid, path), or None: no endpoint, a stale file, or ours."""
    path = settings.clickhouse_embedded_path
    if path is None:
        return None
    try:
        info = json.loads(endpoint_file(settings).read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if Path(info.get("path", "")) != path or pid == os.getpid():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # its process is gone: the folder is free
    except PermissionError:
        pass  # alive, another user's
    return info


def open_runner(settings: Settings) -> Runner:
    """A runner for the configured ClickHouse; through the holder's endpoint when
    another live process holds the chdb folder (without first trying to open it: the
    engine would complain on stderr)."""
    path = settings.clickhouse_embedded_path
    info = holder(settings)
    if info is not None:
        return EndpointRunner(info["url"], info["token"], settings.clickhouse_database,
                              f"chdb:{path} via pid {info['pid']}")
    where = clickhouse.describe(settings)
    try:
        return ClientRunner(clickhouse.connect(settings), where)
    except ClickHouseError as exc:  # a server that does not answer, or refuses us
        raise UserError(f"ClickHouse at {where} does not answer ({clickhouse.connection_problem(exc)}): start it, "
                        f"or check EDXSTREAM_CLICKHOUSE_URL") from None
    except UserError:
        if path is None:
            raise
        raise UserError(
            f"the embedded ClickHouse folder {path} is held by another process and it "
            f"publishes no query endpoint ({endpoint_file(settings)} is missing or stale). Stop that "
            f"process, or run the ClickHouse sink of this version, which serves queries."
        ) from None
