"""Queries on the embedded ClickHouse (chdb) while another process holds its folder.

chdb lets one process at a time open a data folder. While the pipeline runs, the
ClickHouse sink holds it, so ``edxstream query``/``export``/``report`` cannot open it
themselves. The holding process therefore runs :func:`serve`: a small HTTP endpoint on
loopback, in a background thread, that runs read-only SQL on its engine and answers in
any ClickHouse output format. Its address and a random token are written to
``<data_dir>/run/clickhouse.endpoint`` (mode 0600, so only the same user can query).

:func:`open_runner` is the client side: a :class:`Runner` that queries a ClickHouse
server, or the chdb folder directly when it is free, or the endpoint when it is held.

Processes that only read, plus ``edxstream analyze``'s inserts into the analysis tables
(the web app, ``analyze``), use a :class:`SharedStore`: through the holder's endpoint
when there is one; else they open the folder themselves and serve an endpoint that
*yields*: a ClickHouse sink starting later calls :func:`claim`, the store closes its
engine and hands the folder over, and goes on through the sink's endpoint. So starting
the web app never keeps a sink from starting.
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

from clickhouse_connect.driver.exceptions import ClickHouseError
import sqlglot
import sqlglot.errors
from sqlglot import exp

from edxstream.core import clickhouse
from edxstream.core.errors import UserError
from edxstream.core.jsonfile import write_json
from edxstream.core.settings import Settings

log = logging.getLogger(__name__)

# The only query settings a client may pass along: how results are written (the CSV that
# `query --format csv` and `export` write: empty for NULL, ISO times). Others could lift
# the endpoint's limits, so they are not forwarded.
OUTPUT_SETTINGS = frozenset({"format_csv_null_representation", "date_time_output_format"})
MAX_SQL_BYTES = 1_000_000
# Settings a statement's own SETTINGS clause may change: how a query computes its result,
# nothing that lifts a limit (the engine refuses `readonly` itself in any case).
QUERY_SETTINGS = frozenset({"join_use_nulls"})
# The tables a client may add rows to through the endpoint: the analysis tables, which
# ``edxstream analyze`` writes (in this order: analysis_runs, which says a run is
# complete, comes last).
ANALYSIS_TABLES = (
    "analysis_runs",
    "learner_segments",
    "segment_profiles",
    "learner_predictions",
    "behaviour_correlations",
    "problem_difficulty",
    "recommendations",
    "suggestions",
)

# Table functions an analyst statement may use: they make rows out of nothing and reach
# nothing outside the analyst database.
SAFE_TABLE_FUNCTIONS = frozenset({"numbers", "numbers_mt", "zeros", "zeros_mt", "values", "generate_series"})
# Functions that read or reach something outside the analyst database (files, URLs,
# other databases and servers, programs), refused wherever they stand: most are table
# functions, but ``file`` is also a scalar function. Table functions not in
# SAFE_TABLE_FUNCTIONS are refused anyway; this list catches them in other positions.
OUTSIDE_FUNCTIONS = frozenset(
    {
        "file",
        "filecluster",
        "url",
        "urlcluster",
        "mysql",
        "postgresql",
        "sqlite",
        "mongodb",
        "redis",
        "remote",
        "remotesecure",
        "cluster",
        "clusterallreplicas",
        "s3",
        "s3cluster",
        "gcs",
        "oss",
        "cos",
        "hdfs",
        "hdfscluster",
        "azureblobstorage",
        "azureblobstoragecluster",
        "iceberg",
        "icebergs3",
        "icebergazure",
        "iceberghdfs",
        "deltalake",
        "hudi",
        "jdbc",
        "odbc",
        "executable",
        "input",
        "merge",
        "dictionary",
        "loop",
        "ytsaurus",
        "arrowflight",
        "fuzzjson",
        "fuzzquery",
    }
)
_SHOW = re.compile(
    r"(?is)\s*(?:TABLES(?:\s+(?:NOT\s+)?I?LIKE\s+'[^'\\]*')?|"
    r"(?:CREATE\s+(?:TABLE\s+|VIEW\s+)?|COLUMNS\s+FROM\s+)(?:`\w+`|\w+))\s*"
)


def endpoint_file(settings: Settings) -> Path:
    """The file where the process holding the chdb folder publishes its query endpoint."""
    return settings.data_dir / "run" / "clickhouse.endpoint"


def check_read_only(sql: str, database: str) -> str:
    """The statement to run, if ``sql`` is one statement that only reads the analyst
    ``database``; else UserError saying why.

    The statement is parsed (sqlglot, ClickHouse dialect), never matched by keyword: one
    statement, a SELECT (WITH, UNION...), DESCRIBE or SHOW TABLES/CREATE/COLUMNS; every
    table in ``database`` (no other database, not ``system``); no table function but
    SAFE_TABLE_FUNCTIONS; no function in OUTSIDE_FUNCTIONS anywhere; no INTO OUTFILE and no
    SETTINGS clause. A
    statement the parser cannot read is refused: refusing a valid but unusual query is
    the price of never running one that escapes."""
    text = strip_semicolons(sql)
    if not text:
        raise UserError("empty query")
    try:
        statements = [st for st in sqlglot.parse(text, read="clickhouse") if st is not None]
    except sqlglot.errors.SqlglotError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"cannot read this statement as ClickHouse SQL, so it is not run: {first}") from None
    if len(statements) != 1:
        raise UserError("one statement per query, please")
    root = statements[0]
    if isinstance(root, exp.Command):
        if root.name.upper() == "SHOW" and _SHOW.fullmatch(root.expression.name if root.expression else ""):
            return text
        raise UserError(
            f"analyst queries are read-only: SELECT, WITH, DESCRIBE or SHOW TABLES, not {root.name.upper()}"
        )
    if not isinstance(root, (exp.Query, exp.Describe)):
        raise UserError(f"analyst queries are read-only: SELECT, WITH, DESCRIBE or SHOW TABLES, not {root.key.upper()}")
    for node in root.walk():
        if isinstance(node, exp.Into):
            raise UserError("INTO is not allowed: queries return results, they do not write")
        names = {_setting_name(e) for e in node.args.get("settings") or ()}
        if not names <= QUERY_SETTINGS:
            raise UserError(
                f"a SETTINGS clause may only set {', '.join(sorted(QUERY_SETTINGS))} here: analyst queries run "
                f"with the engine's read-only settings"
            )
        if isinstance(node, exp.Table):
            if isinstance(node.this, exp.Func):
                fn = _function_name(node.this)
                if fn not in SAFE_TABLE_FUNCTIONS:
                    raise UserError(
                        f"the table function {fn}() is not allowed here: analyst queries read the "
                        f"analyst database only (allowed: {', '.join(sorted(SAFE_TABLE_FUNCTIONS))})"
                    )
            elif node.catalog or (node.db and node.db.lower() != database.lower()):
                raise UserError(f"{node.sql(dialect='clickhouse')}: analyst queries read the database {database} only")
        elif isinstance(node, exp.Func) and _function_name(node) in OUTSIDE_FUNCTIONS:
            raise UserError(
                f"the function {_function_name(node)}() is not allowed here: it reaches outside the analyst database"
            )
    return text


def _setting_name(node) -> str | None:
    """The name a ``SETTINGS name = value`` item sets (None for anything else)."""
    return node.this.name.lower() if isinstance(node, exp.EQ) and isinstance(node.this, exp.Column) else None


def _function_name(node: exp.Func) -> str:
    return (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()


def strip_semicolons(sql: str) -> str:
    """The statement without surrounding blanks and trailing semicolons."""
    return sql.strip().rstrip(";").rstrip()


_EXPECTED = re.compile(r"\. Expected one of: .*?(?=\. \([A-Z_]+\)$|$)", re.S)


def engine_message(exc: Exception, fmt: str) -> str:
    """The engine's error as one line, as the user wrote the SQL: without the FORMAT
    clause the client appended to it, and without the parser's long list of tokens it
    expected. A missing table gets a hint, since that is what a fresh setup meets."""
    text = str(exc).replace(f"\n FORMAT {fmt}", "")
    text = " ".join(_EXPECTED.sub("", text).split())
    if "UNKNOWN_TABLE" in text or "UNKNOWN_DATABASE" in text:
        text += '. The analyst tables are made by `edxstream db init`; list them with edxstream query "SHOW TABLES"'
    return text


# -- server side --------------------------------------------------------------------------


class EndpointServer(ThreadingHTTPServer):
    """The HTTP query endpoint on a chdb folder (see :func:`serve`)."""

    daemon_threads = True

    def __init__(self, address, client, database: str, token: str, path_file: Path, writer=None, on_release=None):
        super().__init__(address, _Handler)
        self.client = client
        self.writer = writer  # a writing handle for the analysis tables' inserts (None: refused)
        self.owns_writer = False  # set when the writer is a handle of its own, closed with the endpoint
        self.on_release = on_release  # set when the folder is handed over on request (a yielding holder)
        self.database = database
        self.token = token
        self.path_file = path_file
        self.lock = threading.Lock()  # one query at a time on our handle; the engine serialises anyway
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        assert isinstance(host, str)  # an AF_INET server's address is (str, int)
        return f"http://{host}:{port}/"

    def close_writer(self) -> None:
        """Close the writing handle, when it is the endpoint's own (on the embedded engine)."""
        with self.lock:
            writer, self.writer = self.writer, None
        if writer is not None and writer is not self.client and self.owns_writer:
            writer.close()

    def stop(self) -> None:
        """Stop answering and remove the endpoint file (if it is still ours)."""
        self.shutdown()
        self.server_close()
        self.close_writer()
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
        body = self.rfile.read(length)
        url = urllib.parse.urlparse(self.path)
        params = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if url.path == "/release":
            self._release(body)
            return
        if url.path == "/insert":
            self._insert(params.get("table", [""])[0], body)
            return
        sql = body.decode("utf-8", "replace")
        fmt = params.get("format", ["TabSeparatedWithNames"])[0]
        settings = {k: v[0] for k, v in params.items() if k in OUTPUT_SETTINGS}
        try:
            # Checked here too: the endpoint is the guard, whatever client sent the statement.
            sql = check_read_only(sql, self.server.database)
            with self.server.lock:
                body = self.server.client.raw_query(sql, fmt=fmt, settings=settings or None)
        except UserError as exc:
            self._reply(HTTPStatus.FORBIDDEN, f"{exc}\n".encode())
            return
        except Exception as exc:  # the engine's own message is what the analyst needs
            self._reply(HTTPStatus.BAD_REQUEST, f"{engine_message(exc, fmt)}\n".encode())
            return
        self._reply(HTTPStatus.OK, body, "application/octet-stream")

    def _release(self, body: bytes) -> None:
        """Hand the folder over to the process whose pid is the body (a yielding holder
        only): the engine is closed when the reply goes out, then the endpoint stops."""
        if self.server.on_release is None:
            self._reply(HTTPStatus.CONFLICT, b"this process keeps its folder\n")
            return
        try:
            claimant = int(body or b"0")
        except ValueError:
            claimant = 0
        with self.server.lock:
            self.server.on_release(claimant)
        self._reply(HTTPStatus.OK, b"released\n")
        threading.Thread(target=self.server.stop, name="chdb-endpoint-stop", daemon=True).start()

    def _insert(self, table: str, body: bytes) -> None:
        """Rows for an analysis table, as Parquet (``edxstream analyze`` while another
        process holds the folder): inserted as the analysis inserts them itself."""
        if table not in ANALYSIS_TABLES or self.server.writer is None:
            self._reply(
                HTTPStatus.FORBIDDEN, f"rows may be added to the analysis tables only, not {table!r}\n".encode()
            )
            return
        import io

        import pandas as pd

        try:
            df = pd.read_parquet(io.BytesIO(body))
            with self.server.lock:
                self.server.writer.insert_df(table, df)
        except Exception as exc:  # the engine's own message is what the caller needs
            self._reply(HTTPStatus.BAD_REQUEST, f"{' '.join(str(exc).split())[:2000]}\n".encode())
            return
        self._reply(HTTPStatus.OK, b"inserted\n")


def serve(client, settings: Settings, host: str = "127.0.0.1", on_release=None) -> EndpointServer:
    """Answer analyst queries on ``client``'s chdb folder from other processes, in a
    background thread, until ``.stop()``. Writes the endpoint file other processes look for.

    The endpoint gets its own read-only handle on the engine (chdb allows several per
    folder inside one process): its session runs with clickhouse.READ_ONLY_SETTINGS in the
    analyst database, and never disturbs the caller's client, which keeps writing. A
    second handle of its own inserts the analysis tables' rows (``/insert``).

    ``on_release``: the holder yields its folder: a process that needs it for itself (a
    ClickHouse sink, :func:`claim`) asks on ``/release`` with its pid,
    ``on_release(pid)`` closes every handle of this process on the engine, and the
    endpoint stops."""
    path = settings.clickhouse_embedded_path
    own = clickhouse.connect_read_only(settings) if path is not None else client
    writer = clickhouse.connect_handle(settings) if path is not None else client
    target = endpoint_file(settings)
    token = secrets.token_hex(16)

    def release(claimant: int) -> None:  # called with server.lock held
        server.writer = None
        writer.close()
        if on_release is not None:
            on_release(claimant)

    server = EndpointServer(
        (host, 0),
        own,
        settings.clickhouse_database,
        token,
        target,
        writer=writer,
        on_release=release if on_release is not None else None,
    )
    server.owns_writer = path is not None
    write_json(
        target,
        {"url": server.url, "token": token, "pid": os.getpid(), "path": str(path), "yields": on_release is not None},
        private=True,
    )
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
    """Runs analyst statements on a read-only client (see clickhouse.connect_read_only)."""

    def __init__(self, client, database: str, where: str):
        self.client = client
        self.database = database
        self.where = where

    def raw(self, sql: str, fmt: str, settings: dict[str, str] | None = None) -> bytes:
        try:
            return self.client.raw_query(check_read_only(sql, self.database), fmt=fmt, settings=settings)
        except ClickHouseError as exc:
            raise UserError(f"ClickHouse ({self.where}): {engine_message(exc, fmt)}") from None

    def stream(self, sql: str, fmt: str, settings: dict[str, str] | None = None) -> Iterator[bytes]:
        try:
            stream = self.client.raw_stream(check_read_only(sql, self.database), fmt=fmt, settings=settings)
            try:
                while chunk := stream.read(1 << 20):
                    yield chunk
            finally:
                stream.close()
        except ClickHouseError as exc:
            raise UserError(f"ClickHouse ({self.where}): {engine_message(exc, fmt)}") from None


class EndpointRunner:
    """Runs queries through the endpoint of the process that holds the chdb folder."""

    def __init__(self, url: str, token: str, database: str, where: str):
        self.url = url
        self.token = token
        self.database = database
        self.where = where

    def _open(self, sql: str, fmt: str, settings: dict[str, str] | None):
        sql = check_read_only(sql, self.database)  # refused here already, with the same words
        query = urllib.parse.urlencode({"format": fmt, **(settings or {})})
        req = urllib.request.Request(
            f"{self.url}?{query}",
            data=sql.encode(),
            method="POST",
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

    def insert_df(self, table: str, df) -> None:
        """Add rows to an analysis table through the holder (sent as Parquet)."""
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        _post(self.url, "insert?" + urllib.parse.urlencode({"table": table}), self.token, buf.getvalue(), self.where)


def _post(url: str, path: str, token: str, body: bytes, where: str) -> bytes:
    req = urllib.request.Request(url + path, data=body, method="POST", headers={"X-Edxstream-Token": token})
    try:
        with urllib.request.urlopen(req, timeout=600) as resp:
            return resp.read()
    except urllib.error.HTTPError as exc:
        raise UserError(f"ClickHouse ({where}): {exc.read().decode(errors='replace').strip()}") from None
    except OSError as exc:
        raise UserError(f"the process holding the ClickHouse folder does not answer on {url} ({exc})") from None


def claim(settings: Settings) -> None:
    """Before this process opens the embedded folder for itself (the ClickHouse sink):
    when a yielding holder (the web app, ``analyze``) has it, ask it to hand it over.
    Returns once it has closed its engine; a holder that keeps its folder is left alone
    (opening then says who holds it)."""
    info = holder(settings)
    if info is None or not info.get("yields"):
        return
    where = f"chdb:{settings.clickhouse_embedded_path} via pid {info['pid']}"
    try:
        _post(info["url"], "release", info["token"], str(os.getpid()).encode(), where)
    except UserError as exc:
        log.warning("the process holding the ClickHouse folder did not hand it over: %s", exc)
        return
    log.info("ClickHouse: pid %s handed the embedded folder over", info["pid"])


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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def open_runner(settings: Settings) -> Runner:
    """A runner for the configured ClickHouse; through the holder's endpoint when
    another live process holds the chdb folder (without first trying to open it: the
    engine would complain on stderr)."""
    path = settings.clickhouse_embedded_path
    info = holder(settings)
    if info is not None:
        return EndpointRunner(
            info["url"], info["token"], settings.clickhouse_database, f"chdb:{path} via pid {info['pid']}"
        )
    where = clickhouse.describe(settings)
    try:
        return ClientRunner(clickhouse.connect_read_only(settings), settings.clickhouse_database, where)
    except ClickHouseError as exc:  # a server that does not answer, or refuses us
        raise UserError(
            f"ClickHouse at {where} does not answer ({clickhouse.connection_problem(exc)}): start it, "
            f"or check EDXSTREAM_CLICKHOUSE_URL"
        ) from None
    except UserError:
        if path is None:
            raise
        raise UserError(
            f"the embedded ClickHouse folder {path} is held by another process and it "
            f"publishes no query endpoint ({endpoint_file(settings)} is missing or stale). Stop that "
            f"process, or run the ClickHouse sink of this version, which serves queries."
        ) from None


class SharedStore:
    """The query path (a :class:`Runner`) and the analysis tables' writer of a process
    that does not need the embedded folder for itself: the web app and ``analyze``.

    On a ClickHouse server it is the configured server. On the embedded engine it goes
    through the endpoint of the process that holds the folder; when none does, it opens
    the folder and serves a yielding endpoint (:func:`serve` with ``on_release``) for
    ``edxstream query`` and the others, until a process that needs the folder
    (:func:`claim`) asks for it. It then closes its engine, waits for the new holder's
    endpoint (or for it to exit: a short writer such as ``course import``) and carries on
    through it. When a holder's endpoint stops answering (the sink stopped), the next
    statement finds the folder free and opens it again."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._runner: Runner | None = None
        self._server: EndpointServer | None = None
        self._claimant = 0  # the process the folder was handed to
        self._state = threading.Lock()  # guards _runner and _server
        self._engine = threading.Lock()  # held by a statement on our own engine; release waits for it

    @property
    def where(self) -> str:
        return self._current().where

    def _current(self) -> Runner:
        with self._state:
            if self._runner is not None:
                return self._runner
            s = self.settings
            info = holder(s)
            if s.clickhouse_embedded_path is None or info is not None:
                self._runner = open_runner(s)
                return self._runner
            if self._claimant and _alive(self._claimant):
                raise UserError(
                    f"process {self._claimant} (a ClickHouse sink or another writer) has the embedded ClickHouse "
                    f"folder and does not serve queries yet; try again in a moment"
                )
            self._runner = open_runner(s)
            self._server = serve(clickhouse.connect(s), s, on_release=self._release)
            self._claimant = 0
            return self._runner

    def _release(self, claimant: int) -> None:
        """Called by our endpoint when a sink claims the folder: close every handle."""
        with self._engine, self._state:
            self._runner = None
            self._server = None
            self._claimant = claimant
            clickhouse.close_embedded(self.settings)

    def reset(self) -> None:
        """Forget a holder's endpoint (it stopped answering); our own engine is kept."""
        with self._state:
            if self._server is None:
                self._runner = None

    def _run(self, call):
        runner = self._current()
        try:
            if isinstance(runner, ClientRunner) and self.settings.clickhouse_embedded_path is not None:
                with self._engine:
                    current = runner is self._runner
                    if current:
                        return call(runner)
                # handed over while we waited for our engine: again, on whatever holds it now
                return self._run(call)
            return call(runner)
        except UserError:
            now = holder(self.settings)
            same = now is not None and (now.get("url"), now.get("token")) == (
                getattr(runner, "url", None),
                getattr(runner, "token", None),
            )
            if not isinstance(runner, EndpointRunner) or same:
                raise
            self.reset()  # the holder went away or changed: once more on whatever holds it now
            return call(self._current())

    def raw(self, sql: str, fmt: str, settings: dict[str, str] | None = None) -> bytes:
        return self._run(lambda r: r.raw(sql, fmt, settings))

    def stream(self, sql: str, fmt: str, settings: dict[str, str] | None = None) -> Iterator[bytes]:
        yield from self._run(lambda r: list(r.stream(sql, fmt, settings)))

    def insert_df(self, table: str, df) -> None:
        """Add an analysis table's rows, on our engine or through the holder's endpoint."""
        if table not in ANALYSIS_TABLES:
            raise UserError(f"rows may be added to the analysis tables only, not {table!r}")

        def insert(runner):
            if isinstance(runner, EndpointRunner):
                return runner.insert_df(table, df)
            return clickhouse.connect(self.settings).insert_df(table, df)

        self._run(insert)

    def close(self) -> None:
        with self._state:
            server, self._server, self._runner = self._server, None, None
        if server is not None:
            server.stop()
