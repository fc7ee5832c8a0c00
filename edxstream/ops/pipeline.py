"""Run the whole pipeline on a set of log files, as real processes, and know when it is done.

Used by ``edxstream demo`` and by the benchmark. Every component runs as its own
``edxstream ...`` subprocess with its own log under ``<log_dir>/`` - the stream app
(``process``), the MySQL and ClickHouse sinks (``sink mysql|clickhouse``) and the
shipper (``backfill`` / ``ship``) - exactly as an operator would run them.

Completion is decided from what the stores hold, not from timers:

- MySQL is complete when ``events`` holds every distinct valid line and ``dead_letters``
  every distinct bad one (the expected numbers come from running the event model over
  the input, which is cheap);
- ClickHouse is complete when the ClickHouse sink's consumer group has no lag on the
  enriched and aggregates topics after the stream app has counted every event (the
  group's committed offsets against the topics' ends); the sink is then stopped - it
  commits what it wrote - and the rows are checked in the chdb folder it released. If a
  broker under-reported a topic's end (Tansu can) and rows are missing, the sink is run
  again until idle to drain the rest.

chdb allows one process per data folder, so this module never opens the folder while a
sink may hold it: ClickHouse is read through a short ``python -m edxstream.ops.pipeline``
subprocess (:func:`clickhouse_rows`), which also works through the sink's query endpoint
when the sink serves one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pymysql

from edxstream.core import kafka_admin, logfiles
from edxstream.core.errors import UserError
from edxstream.core.settings import Settings
from edxstream.ops import stack
from sinks.migrate import mysql_connect


# -- settings to subprocesses ---------------------------------------------------------------


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment that gives an ``edxstream`` subprocess these settings."""
    env = dict(os.environ)
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, list):
            value = "[" + ",".join(str(v) for v in value) + "]"
        env[f"EDXSTREAM_{name.upper()}"] = str(value)
    env.update(extra)
    return env


def edxstream_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "edxstream.cli", *args]


# -- processes ----------------------------------------------------------------------------


def memory_mb(pid: int) -> dict[str, float]:
    """A running process's memory from /proc, in MB: ``peak`` (VmHWM, the most it has
    held resident) and ``anon`` (RssAnon: its heap and stacks now; the rest of what is
    resident is mostly mapped files, shared libraries' code among them). Empty once the
    process is gone."""
    fields = {"VmHWM:": "peak", "RssAnon:": "anon"}
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                parts = line.split()
                name = fields.get(parts[0]) if parts else None
                if name:
                    out[name] = int(parts[1]) / 1024
    except OSError:
        return {}
    return out


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a running process has used so far."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # fields after the parenthesised command name, which may itself hold spaces
            fields = f.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pid_of(command: str) -> int | None:
    """The first running process whose command name is ``command`` (a service not started here)."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/comm") as f:
                    if f.read().strip() == command:
                        return int(entry.name)
            except OSError:
                continue
    return None


@dataclass
class Component:
    name: str
    argv: list[str]
    log_path: Path
    proc: subprocess.Popen
    started: float = field(default_factory=time.monotonic)
    peak_mb: float = 0.0
    # the most anonymous memory seen at a sample (heap, not mapped library code)
    peak_anon_mb: float = 0.0
    cpu_s: float = 0.0

    def sample(self) -> None:
        if self.proc.poll() is None:
            mem = memory_mb(self.proc.pid)
            self.peak_mb = max(self.peak_mb, mem.get("peak", 0.0))
            self.peak_anon_mb = max(self.peak_anon_mb, mem.get("anon", 0.0))
            cpu = cpu_seconds(self.proc.pid)
            if cpu:
                self.cpu_s = max(self.cpu_s, cpu)

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Pipeline:
    """The subprocesses of one run; stops whatever is still running on exit."""

    def __init__(self, settings: Settings, log_dir: Path | None = None, env_extra: dict[str, str] | None = None):
        self.settings = settings
        self.log_dir = log_dir or settings.log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env = settings_env(settings, **(env_extra or {}))
        self.components: dict[str, Component] = {}
        self.peaks: dict[str, float] = {}
        self.anon_peaks: dict[str, float] = {}  # see Component.peak_anon_mb
        self.cpu: dict[str, float] = {}  # CPU seconds per component, as last sampled

    def __enter__(self) -> "Pipeline":
        return self

    def __exit__(self, *exc) -> None:
        self.stop_all()

    def start(self, name: str, *args: str) -> Component:
        argv = edxstream_argv(*args)
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")
        log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(args)}\n".encode())
        log.flush()
        proc = subprocess.Popen(argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        comp = Component(name, argv, log_path, proc)
        self.components[name] = comp
        return comp

    def run(self, name: str, *args: str, timeout: float = 300) -> None:
        """Run a command to completion; a failure is a UserError quoting its log."""
        comp = self.start(name, *args)
        try:
            while comp.proc.poll() is None:
                comp.sample()
                if time.monotonic() - comp.started > timeout:
                    raise UserError(f"`edxstream {' '.join(args)}` took more than {timeout:.0f}s; see {comp.log_path}")
                time.sleep(0.1)
        finally:
            self._forget(comp)
        if comp.proc.returncode != 0:
            raise UserError(
                f"`edxstream {' '.join(args)}` failed (exit {comp.proc.returncode}):\n"
                f"{comp.log_tail()}\n(full log: {comp.log_path})"
            )

    def sample(self) -> None:
        for comp in self.components.values():
            comp.sample()

    def check_alive(self, *names: str) -> None:
        for name in names or list(self.components):
            comp = self.components.get(name)
            if comp is not None and comp.proc.poll() is not None:
                self._forget(comp)
                raise UserError(
                    f"{name} stopped unexpectedly (exit {comp.proc.returncode}):\n{comp.log_tail()}\n"
                    f"(full log: {comp.log_path})"
                )

    def finished(self, name: str) -> bool:
        """True once a component exited by itself (a backfill); raises if it failed."""
        comp = self.components.get(name)
        if comp is None:
            return True
        comp.sample()
        code = comp.proc.poll()
        if code is None:
            return False
        self._forget(comp)
        if code != 0:
            raise UserError(f"{name} failed (exit {code}):\n{comp.log_tail()}\n(full log: {comp.log_path})")
        return True

    def stop(self, name: str, timeout: float = 30) -> None:
        """SIGTERM (components flush and commit on it), then SIGKILL after ``timeout``."""
        comp = self.components.get(name)
        if comp is None:
            return
        comp.sample()
        if comp.proc.poll() is None:
            comp.proc.send_signal(signal.SIGTERM)
            try:
                comp.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                comp.proc.kill()
                comp.proc.wait(10)
        self._forget(comp)

    def stop_all(self) -> None:
        for name in list(self.components):
            self.stop(name)

    def _forget(self, comp: Component) -> None:
        self.peaks[comp.name] = max(self.peaks.get(comp.name, 0.0), comp.peak_mb)
        self.anon_peaks[comp.name] = max(self.anon_peaks.get(comp.name, 0.0), comp.peak_anon_mb)
        self.cpu[comp.name] = self.cpu.get(comp.name, 0.0) + comp.cpu_s
        self.components.pop(comp.name, None)


# -- what the input should produce ------------------------------------------------------------


@dataclass
class Expected:
    lines: int = 0  # non-empty lines
    events: int = 0  # valid events (rows in MySQL events)
    dead_letters: int = 0  # bad lines (rows in MySQL dead_letters)


def expected_counts(paths: Iterable[Path], skew_seconds: float | None = None) -> Expected:
    """What the pipeline must write for these files: the event model run over them. Every
    line is one row (lines are identified by file and offset, so identical lines are
    rows of their own); a time further ahead of now than ``skew_seconds`` (default: the
    setting's default) is a dead letter, as in the stream app."""
    from datetime import datetime, timedelta, timezone

    from edxstream.core.model import parse_line
    from edxstream.core.records import DeadLetter

    if skew_seconds is None:
        skew_seconds = Settings.model_fields["max_clock_skew_seconds"].default
    latest = datetime.now(timezone.utc) + timedelta(seconds=skew_seconds)
    events = dead = n = 0
    for path in paths:
        f = logfiles.open_log(path)
        try:
            for _, line in logfiles.iter_lines(f, 1 << 62):
                if not line.strip():
                    continue
                n += 1
                if parse_line(line, latest=latest).__class__ is DeadLetter:
                    dead += 1
                else:
                    events += 1
        finally:
            logfiles.close_log(f)
    return Expected(n, events, dead)


def load_clickhouse_events(settings: Settings, lines: Iterable[bytes], client=None, batch: int = 50_000) -> int:
    """Parse ``lines`` and insert their events into ClickHouse's ``events`` as the stream
    app and the ClickHouse sink would (pseudonymized when the settings say so), without
    Kafka: for the analysis bench and tests. Returns the events inserted."""
    from edxstream.core import clickhouse, privacy
    from edxstream.core.model import parse_line
    from edxstream.core.records import ENRICHED_FIELDS, DeadLetter
    from sinks import migrate, rows

    client = client or clickhouse.connect(settings)
    migrate.migrate_clickhouse(settings, client=client)
    columns = list(ENRICHED_FIELDS)
    pending: list[list] = []
    n = 0
    for line in lines:
        r = parse_line(line)
        if r.__class__ is DeadLetter:
            continue
        pending.append(rows.clickhouse_event_row(privacy.for_analysts(r, settings)))
        if len(pending) >= batch:
            client.insert("events", pending, column_names=columns)
            n += len(pending)
            pending = []
    if pending:
        client.insert("events", pending, column_names=columns)
        n += len(pending)
    return n


# -- stores --------------------------------------------------------------------------------


def reset_mysql(settings: Settings) -> None:
    """Drop and re-create the configured MySQL database (only for databases a run owns)."""
    db = settings.mysql["database"]
    conn = mysql_connect(settings, database=False, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    finally:
        conn.close()


def mysql_counts(conn) -> tuple[int, int]:
    """(rows in events, rows in dead_letters), exact; (0, 0) before the tables exist.
    Reads whole indexes: for a watcher that looks again and again, see RowCounter."""
    with conn.cursor() as cur:
        try:
            cur.execute("SELECT (SELECT COUNT(*) FROM events), (SELECT COUNT(*) FROM dead_letters)")
        except pymysql.err.ProgrammingError:
            return 0, 0
        a, b = cur.fetchone()
    return int(a), int(b)


class RowCounter:
    """Counts the rows of ``events`` and ``dead_letters`` while a run writes them, without
    loading the server it watches.

    InnoDB's COUNT(*) reads a whole index (0.1 s of a core at 1.5M rows): a watcher that
    ran it several times a second would add a large share of the load it is there to
    measure. The highest ``row_id`` is no stand-in either: a LOAD DATA reserves ids in
    blocks that double in size, so ids run ahead of the rows by up to a half. So each
    look counts only the rows past the highest id seen so far (a range of the primary
    key). A transaction that commits lower ids after higher ones were counted would be
    missed that way, so the whole table is counted again whenever the running count
    reaches ``expect_events`` (the run may be done) and otherwise at most every
    ``recount_seconds``, and never more often than it keeps the server busy
    ``max_share`` of the time."""

    def __init__(self, conn, expect_events: int | None = None, recount_seconds: float = 10.0, max_share: float = 0.05):
        self.conn = conn
        self.expect_events = expect_events
        self.recount_seconds = recount_seconds
        self.max_share = max_share
        self.events = 0  # rows with row_id <= self.upto
        self.upto = 0
        self._next_recount = 0.0  # monotonic time of the next full count

    def __call__(self) -> tuple[int, int]:
        with self.conn.cursor() as cur:
            try:
                cur.execute(
                    "SELECT COUNT(*), COALESCE(MAX(row_id), %s), (SELECT COUNT(*) FROM dead_letters) "
                    "FROM events WHERE row_id > %s",
                    (self.upto, self.upto),
                )
            except pymysql.err.ProgrammingError:
                return 0, 0  # no tables yet
            added, upto, dead = cur.fetchone()
            self.events += int(added)
            self.upto = int(upto)
            now = time.monotonic()
            done = self.expect_events is not None and self.events >= self.expect_events
            if now >= self._next_recount or done:
                t = time.monotonic()
                cur.execute("SELECT COUNT(*), COALESCE(MAX(row_id), 0) FROM events")
                self.events, self.upto = map(int, cur.fetchone())
                took = time.monotonic() - t
                self._next_recount = now + max(self.recount_seconds, took / self.max_share)
        return self.events, int(dead)


def clickhouse_rows(settings: Settings, queries: dict[str, str], timeout: float = 300) -> dict[str, list[dict]]:
    """Run read queries on the configured ClickHouse from a short subprocess (this
    process never holds the chdb folder a sink may need) and return rows per query."""
    code = "import sys, json; from edxstream.ops.pipeline import _clickhouse_main; _clickhouse_main()"
    res = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(queries).encode(),
        env=settings_env(settings),
        capture_output=True,
        timeout=timeout,
    )
    if res.returncode != 0:
        err = res.stderr.decode(errors="replace").strip().splitlines()
        raise UserError("ClickHouse query failed: " + ("\n".join(err[-5:]) or f"exit {res.returncode}"))
    return json.loads(res.stdout)


def _clickhouse_main() -> None:
    from edxstream.core.chdb_server import open_runner
    from edxstream.core.settings import load

    queries = json.loads(sys.stdin.read())
    try:
        runner = open_runner(load())
        out = {}
        for name, sql in queries.items():
            data = runner.raw(sql, "JSONEachRow")
            out[name] = [json.loads(line) for line in data.splitlines() if line.strip()]
    except UserError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)
    sys.stdout.write(json.dumps(out))


def reset_clickhouse(settings: Settings) -> None:
    """Drop the configured ClickHouse database (from a subprocess, like every chdb use)."""
    code = (
        "from edxstream.core import clickhouse; from edxstream.core.settings import load; s = load(); "
        "c = clickhouse.connect(s, database='default'); "
        "c.command(f'DROP DATABASE IF EXISTS `{s.clickhouse_database}`')"
    )
    res = subprocess.run([sys.executable, "-c", code], env=settings_env(settings), capture_output=True, timeout=300)
    if res.returncode != 0:
        raise UserError("cannot reset the ClickHouse database: " + res.stderr.decode(errors="replace")[-500:])


def wait_joined(pipe: Pipeline, groups: list[str], timeout: float = 120) -> float:
    """Wait until the broker reports each consumer group stable (members joined and
    partitions assigned) while the workers stay alive; returns the seconds it took."""
    from confluent_kafka import ConsumerGroupState

    admin = kafka_admin.admin(pipe.settings)
    t0 = time.monotonic()
    while True:
        pipe.sample()
        pipe.check_alive()
        try:
            found = admin.describe_consumer_groups(groups, request_timeout=5)
            if all(f.result(timeout=10).state == ConsumerGroupState.STABLE for f in found.values()):
                return time.monotonic() - t0
        except Exception:  # noqa: BLE001 - not there yet, or a broker hiccup: ask again
            pass
        if time.monotonic() - t0 > timeout:
            raise UserError(
                f"consumer groups {', '.join(groups)} not all stable after {timeout:.0f}s; "
                f"see the logs in {pipe.log_dir}"
            )
        time.sleep(0.2)


def stream_metrics(settings: Settings, path: Path | None = None) -> dict:
    path = path or settings.data_dir / "run" / "stream.metrics.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


# the stream workers' progress figures that add up over the workers sharing the partitions
SUMMED_METRICS = ("lines", "enriched", "dead_letters", "enriched_seen", "counted", "windows_emitted")


def summed_stream_metrics(settings: Settings, paths: Iterable[Path]) -> dict:
    """The figures of SUMMED_METRICS summed over the metrics files of several stream
    workers (a file not written yet counts as zeros)."""
    out = dict.fromkeys(SUMMED_METRICS, 0)
    for path in paths:
        m = stream_metrics(settings, path)
        for key in SUMMED_METRICS:
            out[key] += m.get(key, 0) or 0
    return out


# -- one backfill run, start to finish ----------------------------------------------------------


@dataclass
class RunResult:
    expected: Expected
    seconds: float  # backfill start to every row in MySQL and ClickHouse
    mysql_seconds: float  # backfill start to every row in MySQL
    ship_seconds: float  # backfill start to the shipper's exit
    peaks_mb: dict[str, float]
    clickhouse_events: int
    clickhouse_windows: int
    notes: list[str] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # per component, as last sampled
    anon_peaks_mb: dict[str, float] = field(default_factory=dict)  # per component, sampled


def prepare(pipe: Pipeline, reset: bool = True) -> None:
    """Fresh databases (when the run owns them) and the schemas."""
    if reset:
        reset_mysql(pipe.settings)
        reset_clickhouse(pipe.settings)
    pipe.run("db-init", "db", "init", timeout=300)


@dataclass(frozen=True)
class Workers:
    """The worker processes of a run, by role (their component names in the Pipeline),
    and the metrics file each stream worker writes."""

    stream: tuple[str, ...]
    mysql: tuple[str, ...]
    clickhouse: tuple[str, ...]
    metrics_files: tuple[Path, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.stream + self.mysql + self.clickhouse


def _names(role: str, n: int) -> tuple[str, ...]:
    """``role`` for one process (the names the logs and figures have always used),
    ``role-1`` ... ``role-n`` for several."""
    return (role,) if n == 1 else tuple(f"{role}-{i}" for i in range(1, n + 1))


def start_workers(
    pipe: Pipeline, web_port: int | None = None, streams: int = 1, mysql_sinks: int = 1, clickhouse_sinks: int = 1
) -> Workers:
    """Start the stream workers and the sinks; several of a kind share the partitions of
    their topics through their consumer group, as an operator scales out. Each stream
    worker beyond the first gets a free web port and each its own metrics file.

    With the embedded ClickHouse (chdb) only one process can hold the data folder, so
    more than one ClickHouse sink needs a ClickHouse server."""
    if clickhouse_sinks > 1 and pipe.settings.clickhouse_embedded_path is not None:
        raise UserError(
            "the embedded ClickHouse (chdb) lets one process open its data folder: "
            "run several ClickHouse sinks against a ClickHouse server"
        )
    streams_ = _names("stream", streams)
    run = pipe.settings.data_dir / "run"
    # one worker writes the default file (the one `stack status` shows), several their own
    files = (
        tuple(run / "stream.metrics.json" for _ in streams_)
        if streams == 1
        else tuple(run / f"{name}.metrics.json" for name in streams_)
    )
    for i, (name, metrics) in enumerate(zip(streams_, files, strict=True)):
        args = ["process", "--log-every", "1"]
        port = web_port if i == 0 else stack.free_ports(1)[0]
        if port:
            args += ["--web-port", str(port)]
        if streams > 1:
            args += ["--metrics-file", str(metrics)]
        pipe.start(name, *args)
    workers = Workers(streams_, _names("sink-mysql", mysql_sinks), _names("sink-clickhouse", clickhouse_sinks), files)
    for target, names in (("mysql", workers.mysql), ("clickhouse", workers.clickhouse)):
        for name in names:
            # one sink of a kind writes the default file, several their own (as the workers)
            extra = ["--metrics-file", str(run / f"{name}.metrics.json")] if len(names) > 1 else []
            pipe.start(name, "sink", target, *extra)
    return workers


def backfill_until_written(
    pipe: Pipeline,
    paths: list[Path],
    expected: Expected,
    progress: Callable[[str, int, int], None] | None = None,
    timeout: float = 3600,
    workers: Workers | None = None,
) -> RunResult:
    """Backfill ``paths`` with the workers of ``pipe`` running (see :func:`start_workers`,
    whose answer is ``workers``; default: one of each) and return once MySQL and
    ClickHouse hold everything; the workers are stopped."""
    s = pipe.settings
    if workers is None:
        workers = Workers(("stream",), ("sink-mysql",), ("sink-clickhouse",), ())
    metrics_files = workers.metrics_files or (s.data_dir / "run" / "stream.metrics.json",)
    notes: list[str] = []
    t0 = time.monotonic()
    pipe.start("backfill", "backfill", "--force", "--no-progress", *map(str, paths))
    deadline = t0 + timeout
    ship_s = mysql_s = None
    conn = mysql_connect(s, autocommit=True)
    mysql_counts_now = RowCounter(conn, expected.events)
    total = expected.events + expected.dead_letters
    last_counts, still_since = None, time.monotonic()
    try:
        # 1. every row in MySQL
        while True:
            pipe.sample()
            if ship_s is None and pipe.finished("backfill"):
                ship_s = time.monotonic() - t0
            pipe.check_alive(*workers.all)
            ev, dl = mysql_counts_now()
            if progress:
                progress("shipping" if ship_s is None else "processing", ev + dl, total)
            if ev >= expected.events and dl >= expected.dead_letters and ship_s is not None:
                mysql_s = time.monotonic() - t0
                break
            if time.monotonic() > deadline:
                raise UserError(
                    f"MySQL holds {ev}/{expected.events} events and {dl}/{expected.dead_letters} "
                    f"dead letters after {timeout:.0f}s; see the logs in {pipe.log_dir}"
                )
            if (ev, dl) != last_counts or ship_s is None:
                last_counts, still_since = (ev, dl), time.monotonic()
            elif time.monotonic() - still_since >= STUCK_SECONDS and all_read(s):
                # nothing is left to read anywhere: waiting longer cannot help
                raise UserError(stuck_message(conn, ev, dl, expected, pipe.log_dir))
            time.sleep(0.25)
        # 2. the stream app has counted everything, and the ClickHouse sink has caught up
        stable = 0
        last = None
        caught_up = None  # when the looks that found nothing left to do began
        while time.monotonic() < deadline:
            pipe.sample()
            pipe.check_alive(*workers.stream, *workers.clickhouse)
            looked = time.monotonic()
            m = summed_stream_metrics(s, metrics_files)
            counted = m["enriched_seen"] >= m["enriched"] > 0
            if counted and len(workers.stream) > 1:
                # each worker's file is a second old at most: with several, the stream
                # group must also have read every raw and tally record
                counted = kafka_admin.group_lag(s, s.stream_group, [s.raw_topic, s.tally_topic]) == 0
            lag = kafka_admin.group_lag(s, s.clickhouse_sink_group, [s.enriched_topic, s.aggregates_topic])
            state = (m.get("windows_emitted"), lag)
            if progress:
                progress("clickhouse", total, total)
            done = counted and lag == 0
            if not done:
                caught_up = None
            elif caught_up is None or state != last:
                caught_up = looked
            stable = stable + 1 if done and state == last else 0
            last = state
            if stable >= 3:
                break
            time.sleep(0.25)
        else:
            notes.append("ClickHouse sink lag did not reach 0 in time")
            caught_up = None
        # The sink commits a batch's offsets only after ClickHouse has stored it, so
        # everything was there at the first of the looks that then saw nothing change;
        # the later looks and stopping the sink are not part of the work measured.
        ch_s = (caught_up if caught_up is not None else time.monotonic()) - t0
        for name in (*workers.clickhouse, *workers.stream, *workers.mysql):
            pipe.stop(name)
    finally:
        conn.close()
    ch_events, ch_windows = clickhouse_counts(s)
    if ch_events < expected.events:
        # the broker under-reported a topic's end: drain the rest, then look again
        notes.append(f"ClickHouse had {ch_events}/{expected.events} events after the lag check; drained again")
        pipe.run("sink-clickhouse-drain", "sink", "clickhouse", "--max-idle", "5", timeout=timeout)
        ch_s = time.monotonic() - t0
        ch_events, ch_windows = clickhouse_counts(s)
    return RunResult(
        expected,
        ch_s,
        mysql_s,
        ship_s,
        dict(pipe.peaks),
        ch_events,
        ch_windows,
        notes,
        dict(pipe.cpu),
        dict(pipe.anon_peaks),
    )


# Seconds MySQL's counts must stand still, with every consumer caught up, before a
# wait for rows is known never to finish.
STUCK_SECONDS = 10.0


def all_read(settings: Settings) -> bool:
    """True when the stream app has read the raw topic and the MySQL sink its topics to
    the end (False when a lag is unknown)."""
    s = settings
    return (
        kafka_admin.group_lag(s, s.stream_group, [s.raw_topic]) == 0
        and kafka_admin.group_lag(s, s.mysql_sink_group, [s.enriched_topic, s.deadletter_topic]) == 0
    )


def stuck_message(conn, events: int, dead: int, expected: Expected, log_dir: Path) -> str:
    """Why a wait for MySQL's rows cannot finish: what is there, and the dead letters by
    reason and stage (a row the database refused is a sink-stage dead letter)."""
    with conn.cursor() as cur:
        cur.execute("SELECT reason, stage, COUNT(*) FROM dead_letters GROUP BY reason, stage ORDER BY 3 DESC")
        reasons = ", ".join(f"{r} ({st}): {n:,}" for r, st, n in cur.fetchall()) or "none"
    return (
        f"MySQL holds {events:,} of {expected.events:,} events and {dead:,} of {expected.dead_letters:,} "
        f"dead letters, and the stream app and the MySQL sink have read everything: the rest will not come. "
        f"Dead letters by reason: {reasons}. Run `edxstream reconcile` to see which courses and days "
        f"differ; the logs are in {log_dir}"
    )


def clickhouse_counts(settings: Settings) -> tuple[int, int]:
    rows = clickhouse_rows(
        settings,
        {
            "events": "SELECT count() AS n FROM events FINAL",
            "windows": "SELECT count() AS n FROM window_counts_final",
        },
    )
    return int(rows["events"][0]["n"]), int(rows["windows"][0]["n"])


if __name__ == "__main__":  # used by clickhouse_rows
    _clickhouse_main()
