"""The whole benchmark in one run on one machine (``edxstream bench`` runs this).

    python bench/run_all.py [--scale small|full] [--json FILE] [--only PART,...]

Parts (each prints its figures and a baseline measured in the same run):

- ship:   shipper lines/s (``producer.backfill``) next to ``kcat -P -l`` on the same
          file and broker; ratio.
- stream: one ``edxstream process`` worker, events/s from its first line to its last.
- sinks:  MySQL sink rows/s next to ``LOAD DATA LOCAL INFILE`` of the same rows (ratio);
          ClickHouse sink rows/s.
- e2e:    a backfill of 1,560,000 events (the two-year data set of the paper the project
          starts from) from daily ``.gz`` files into the running pipeline (the clock
          starts once the stream app and both sinks have joined their consumer groups),
          until every row is in MySQL and every window in ClickHouse: wall time,
          events/s, peak memory and CPU seconds per process.
- live:   the shipper follows a file written at 500 events/s for a minute; p50/p99 of
          the time from a line's append to its row in MySQL and its window count in
          ClickHouse (through the ClickHouse sink's query endpoint when it serves one,
          else - said so in the output - the window's update on the aggregates topic).
- scaleout: 300,000 events through the e2e's pipeline on 8 partitions twice: one stream
          worker and one sink of each kind, then two stream workers and two MySQL sinks
          (one ClickHouse sink: the embedded ClickHouse lets one process open its
          folder). Both checked exact (the event model over the files, and per course and
          day the raw topic against MySQL, ClickHouse and the windows); events/s and CPU
          µs per event per role side by side (on 2 cores more workers are not faster).
- analysis: ``bench/bench_analysis.py`` (its own process and ClickHouse folder): quality
          of ``edxstream analyze`` against the generator's planted profiles and outcomes
          next to baselines, the time and memory of reading the features from
          ClickHouse and fitting on a log of a few hundred thousand events, and (full
          scale) one ``analyze`` run measured on 2 million events of 100,000 learners.

Everything runs against a broker this script starts (Tansu, memory store, free port),
MySQL database ``edxstream_bench`` and a fresh embedded ClickHouse folder, all its own.
Nothing here asserts a time: the figures are printed, and written with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from edxstream.core import kafka_admin  # noqa: E402

from edxstream.ops import pipeline, stack  # noqa: E402
from sinks import migrate  # noqa: E402
from edxstream.core.chdb_server import endpoint_file, holder, open_runner  # noqa: E402
from edxstream.ops.generate import GenConfig, generate_lines, log_files, write_dir  # noqa: E402
from edxstream.core.events.classification import counted_as  # noqa: E402
from edxstream.core.model import parse_line  # noqa: E402
from edxstream.core.records import EnrichedEvent, encode, enriched_records  # noqa: E402
from edxstream.core.settings import Settings, load  # noqa: E402
from producer.fingerprint import fingerprint_of_head  # noqa: E402

PAPER_EVENTS = 1_560_000


@dataclass(frozen=True)
class Scale:
    ship_lines: int
    stream_lines: int
    sink_rows: int
    e2e_events: int
    e2e_days: int
    live_rate: int  # lines/s appended
    live_seconds: float
    scaleout_events: int
    scaleout_days: int


SCALES = {
    "full": Scale(
        ship_lines=500_000,
        stream_lines=200_000,
        sink_rows=200_000,
        e2e_events=PAPER_EVENTS,
        e2e_days=730,
        live_rate=500,
        live_seconds=60,
        scaleout_events=300_000,
        scaleout_days=140,
    ),
    "small": Scale(
        ship_lines=5_000,
        stream_lines=3_000,
        sink_rows=3_000,
        e2e_events=4_000,
        e2e_days=3,
        live_rate=50,
        live_seconds=4,
        scaleout_events=3_000,
        scaleout_days=3,
    ),
}
TARGETS = {"e2e_events_per_s": 15_000, "live_p99_s": 2.0, "ship_vs_kcat": 0.6, "stream_events_per_s": 20_000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def say(text: str) -> None:
    print(text, flush=True)


class Bench:
    """A broker, a MySQL database and a chdb folder for the run; settings per part."""

    def __init__(self, work: Path):
        self.work = work
        self.port = free_port()
        base = load()
        # A fresh machine has no application user yet: the bench makes it, as `demo` does.
        stack.ensure_mysql_database(base)
        self.broker = stack.start_broker(stack.tansu_binary(base), "127.0.0.1", self.port, work / "broker.log")
        self.mysql_root = {k: v for k, v in base.mysql.items() if k != "database"}
        self.results: dict = {}
        self.databases: set[str] = set()  # the MySQL databases of the parts run, dropped on close

    def settings(self, part: str, **extra) -> Settings:
        """Settings of one part: its own topics, groups, home, database, chdb folder."""
        home = self.work / part
        self.databases.add(f"edxstream_bench_{part}")
        extra.setdefault("partitions", 4)
        return load(
            home=home,
            kafka_bootstrap=f"127.0.0.1:{self.port}",
            raw_topic=f"{part}.raw",
            enriched_topic=f"{part}.enriched",
            deadletter_topic=f"{part}.deadletter",
            aggregates_topic=f"{part}.aggregates",
            app_id=f"bench-{part}",
            web_port=free_port(),
            mysql_dsn=_dsn(load().mysql_dsn, f"edxstream_bench_{part}"),
            clickhouse_url=f"chdb://{home / 'clickhouse'}",
            clickhouse_database="bench",
            pseudonym_key="bench-pseudonym-key",
            **extra,
        )

    def close(self, keep: bool = False) -> None:
        self.broker.kill()
        self.broker.wait(10)
        if not keep:
            import pymysql

            conn = pymysql.connect(**self.mysql_root, autocommit=True)
            with conn.cursor() as cur:
                for db in sorted(self.databases):
                    cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
            conn.close()


# The MySQL server's settings that decide what the MySQL sink costs once its tables
# outgrow memory: printed next to the figures, and the e2e runs on the server as found.
MYSQL_VARIABLES = (
    "version",
    "innodb_buffer_pool_size",
    "innodb_log_file_size",
    "innodb_redo_log_capacity",
    "innodb_flush_log_at_trx_commit",
    "innodb_flush_method",
    "innodb_doublewrite",
    "sync_binlog",
    "log_bin",
    "local_infile",
)


def mysql_server(mysql_root: dict) -> dict[str, str]:
    """The server's values of MYSQL_VARIABLES (those it has)."""
    import pymysql

    conn = pymysql.connect(**mysql_root)
    try:
        with conn.cursor() as cur:
            names = ", ".join(f"'{n}'" for n in MYSQL_VARIABLES)
            cur.execute(f"SHOW GLOBAL VARIABLES WHERE Variable_name IN ({names})")
            return {name: str(value) for name, value in cur.fetchall()}
    finally:
        conn.close()


def describe_mysql(v: dict[str, str]) -> str:
    """One line: buffer pool, redo log, flush settings and version."""

    def mib(name: str) -> str:
        return f"{int(v[name]) / 2**20:,.0f} MiB" if v.get(name, "").isdigit() else "?"

    redo = mib("innodb_redo_log_capacity") if "innodb_redo_log_capacity" in v else mib("innodb_log_file_size")
    return (
        f"MySQL server {v.get('version', '?')}: buffer pool {mib('innodb_buffer_pool_size')}, redo log {redo}, "
        f"flush_log_at_trx_commit {v.get('innodb_flush_log_at_trx_commit', '?')} (1: durable at every commit), "
        f"flush_method {v.get('innodb_flush_method', '?')}, doublewrite {v.get('innodb_doublewrite', '?')}, "
        f"binlog {v.get('log_bin', '?')}, sync_binlog {v.get('sync_binlog', '?')}, "
        f"local_infile {v.get('local_infile', '?')}"
    )


def _dsn(dsn: str, database: str) -> str:
    from urllib.parse import urlparse, urlunparse

    return urlunparse(urlparse(dsn)._replace(path=f"/{database}"))


def _fresh_mysql(s: Settings) -> None:
    stack.ensure_mysql_database(s)
    pipeline.reset_mysql(s)


def sample_file(path: Path, events: int, seed: int = 11) -> Path:
    cfg = GenConfig(
        events=events, courses=12, learners=max(100, events // 40), days=max(1, min(60, events // 5000)), seed=seed
    )
    with open(path, "wb") as f:
        for line in generate_lines(cfg):
            f.write(line)
    return path


# -- ship ------------------------------------------------------------------------------------


def bench_ship(b: Bench, scale: Scale) -> dict:
    from producer.backfill import backfill

    s = b.settings("ship")
    s.data_dir.mkdir(parents=True, exist_ok=True)
    src = sample_file(s.data_dir / "tracking.log", scale.ship_lines)
    lines = sum(1 for line in open(src, "rb") if line.strip())
    kafka_admin.ensure_topics(s, [s.raw_topic, s.deadletter_topic, "ship.kcat"])
    kcat = shutil.which("kcat")
    if not kcat:
        raise SystemExit("kcat is not installed (apt-get install kcat): it is the shipper's baseline")
    sys.path.insert(0, str(REPO / "bench"))
    from bench_ship import kcat_env  # the shipper engineer's fix for kcat's old librdkafka

    t = time.monotonic()
    subprocess.run(
        [kcat, "-P", "-b", s.kafka_bootstrap, "-t", "ship.kcat", "-l", str(src)], check=True, env=kcat_env(s.data_dir)
    )
    kcat_s = time.monotonic() - t
    r = backfill(s, [src], progress=False)
    out = {
        "ship_lines": r.counters.lines,
        "ship_lines_per_s": r.counters.lines / r.seconds,
        "kcat_lines_per_s": lines / kcat_s,
    }
    out["ship_vs_kcat"] = out["ship_lines_per_s"] / out["kcat_lines_per_s"]
    say(
        f"ship   : edxstream {out['ship_lines_per_s']:>10,.0f} lines/s   kcat -P -l {out['kcat_lines_per_s']:>10,.0f}"
        f" lines/s   ratio {out['ship_vs_kcat']:.2f}   ({lines:,} lines, {src.stat().st_size / 1e6:.0f} MB)"
    )
    return out


# -- stream -------------------------------------------------------------------------------------


def _ship_raw(s: Settings, lines: list[bytes]) -> None:
    """The lines into the raw topic as the shipper puts them there (framed records)."""
    from producer.backfill import backfill

    kafka_admin.ensure_topics(s)
    path = s.data_dir / "stream-input.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    r = backfill(s, [path], progress=False)
    if r.counters.lines != sum(1 for line in lines if line):
        raise SystemExit(f"shipped {r.counters.lines} of {len(lines)} raw lines")


def bench_stream(b: Bench, scale: Scale) -> dict:
    s = b.settings("stream")
    lines = [
        x.rstrip(b"\n")
        for x in generate_lines(
            GenConfig(
                events=scale.stream_lines, courses=12, learners=max(100, scale.stream_lines // 40), days=3, seed=12
            )
        )
    ]
    _ship_raw(s, lines)
    metrics = s.data_dir / "stream.metrics.json"
    with pipeline.Pipeline(s, log_dir=s.data_dir / "logs") as pipe:
        pipe.start("stream", "process", "--log-every", "0.1", "--metrics-file", str(metrics))
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            pipe.check_alive("stream")
            m = pipeline.stream_metrics(s, metrics)
            if m.get("lines", 0) >= len(lines) and m.get("enriched_seen", 0) >= m.get("enriched", 1):
                t_done = time.time()
                break
            time.sleep(0.05)
        else:
            raise SystemExit("stream worker did not finish; see " + str(s.data_dir / "logs"))
    # from the first raw batch the worker took (group join and start-up excluded) to the
    # last tally counted
    elapsed = max(1e-6, t_done - m["first_batch_at"])
    rate = len(lines) / elapsed
    say(f"stream : one worker {rate:>10,.0f} events/s   ({len(lines):,} lines in {elapsed:.1f}s)")
    return {"stream_events_per_s": rate}


# -- sinks ---------------------------------------------------------------------------------------


def _events(n: int, seed: int) -> list[EnrichedEvent]:
    out = []
    for line in generate_lines(
        GenConfig(events=n, courses=12, learners=max(100, n // 40), days=3, seed=seed, malformed=0)
    ):
        r = parse_line(line)
        if isinstance(r, EnrichedEvent):
            out.append(r)
    return out


def _as_the_stream_writes(events: list[EnrichedEvent]) -> list[tuple[bytes, bytes]]:
    """(key, value) records as the stream app writes events: JSON arrays of one course's
    events (``records.enriched_records``), keyed by the course."""
    by_course: dict[bytes, list[bytes]] = {}
    for e in events:
        by_course.setdefault((e.course_id or "").encode(), []).append(encode(e))
    return [(key, value) for key, encoded in by_course.items() for value in enriched_records(encoded)]


def _produce(s: Settings, topic: str, values: list[bytes] | list[tuple[bytes, bytes]]) -> None:
    from confluent_kafka import Producer

    p = Producer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    for i, v in enumerate(values):
        if isinstance(v, tuple):
            p.produce(topic, key=v[0], value=v[1])
        else:
            p.produce(topic, value=v)
        if i % 10_000 == 0:
            p.poll(0)
    if p.flush(300):
        raise SystemExit("could not produce")


def _tsv_value(v) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, bool):
        return "1" if v else "0"
    text = v.isoformat(sep=" ") if hasattr(v, "isoformat") else str(v)
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


def load_data_rate(s: Settings, events: list[EnrichedEvent]) -> float:
    """Rows/s of LOAD DATA LOCAL INFILE of the same rows into a copy of the events table."""
    import pymysql

    from sinks import rows

    path = s.data_dir / "events.tsv"
    with open(path, "w", encoding="utf-8") as f:
        for e in events:
            f.write("\t".join(_tsv_value(v) for v in rows.mysql_event_row(e)) + "\n")
    conn = pymysql.connect(**s.mysql, local_infile=True, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("DROP TABLE IF EXISTS events_load_data")
            cur.execute("CREATE TABLE events_load_data LIKE events")
            t = time.monotonic()
            cur.execute(f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE events_load_data CHARACTER SET utf8mb4")
            secs = time.monotonic() - t
            cur.execute("SELECT COUNT(*) FROM events_load_data")
            n = cur.fetchone()[0]
    finally:
        conn.close()
    if n != len(events):
        say(f"         (LOAD DATA stored {n} of {len(events)} rows)")
    return n / secs


def bench_sinks(b: Bench, scale: Scale) -> dict:
    s = b.settings("sinks")
    s.data_dir.mkdir(parents=True, exist_ok=True)
    _fresh_mysql(s)
    events = _events(scale.sink_rows, seed=13)
    kafka_admin.ensure_topics(s)
    enriched = _as_the_stream_writes(events)
    _produce(s, s.enriched_topic, enriched)
    out: dict = {}
    with pipeline.Pipeline(s, log_dir=s.data_dir / "logs") as pipe:
        pipeline.prepare(pipe, reset=False)
        # MySQL: from the first row to the last
        conn = migrate.mysql_connect(s, autocommit=True)
        counts = pipeline.RowCounter(conn, len(events))
        pipe.start("sink-mysql", "sink", "mysql")
        # from the last look that saw no row (the sink has joined its group and is about
        # to write its first batch) to the look that sees them all
        t_zero = time.monotonic()
        deadline = t_zero + 1800
        while time.monotonic() < deadline:
            pipe.check_alive("sink-mysql")
            now = time.monotonic()
            n, _ = counts()
            if n == 0:
                t_zero = now
            if n >= len(events):
                t_done = time.monotonic()
                break
            time.sleep(0.02)
        else:
            raise SystemExit("MySQL sink did not finish")
        conn.close()
        pipe.stop("sink-mysql")
        out["mysql_rows_per_s"] = len(events) / max(1e-6, t_done - t_zero)
        out["load_data_rows_per_s"] = load_data_rate(s, events)
        out["mysql_vs_load_data"] = out["mysql_rows_per_s"] / out["load_data_rows_per_s"]
        say(
            f"mysql  : sink {out['mysql_rows_per_s']:>10,.0f} rows/s   LOAD DATA {out['load_data_rows_per_s']:>10,.0f}"
            f" rows/s   ratio {out['mysql_vs_load_data']:.2f}   ({len(events):,} rows)"
        )
        # ClickHouse: from the first committed batch to no lag
        pipe.start("sink-clickhouse", "sink", "clickhouse")
        topics = [s.enriched_topic, s.aggregates_topic]
        t_zero = time.monotonic()
        while time.monotonic() < deadline:
            pipe.check_alive("sink-clickhouse")
            now = time.monotonic()
            lag = kafka_admin.group_lag(s, s.clickhouse_sink_group, topics)
            if lag is None or lag >= len(enriched):
                t_zero = now  # nothing committed yet
            if lag == 0:
                t_done = time.monotonic()
                break
            time.sleep(0.05)
        else:
            raise SystemExit("ClickHouse sink did not finish")
        pipe.stop("sink-clickhouse")
    ch_events, _ = pipeline.clickhouse_counts(s)
    out["clickhouse_rows_per_s"] = len(events) / max(1e-6, t_done - t_zero)
    say(f"click  : sink {out['clickhouse_rows_per_s']:>10,.0f} rows/s   ({ch_events:,} of {len(events):,} rows stored)")
    return out


# -- end to end ---------------------------------------------------------------------------------------


def bench_e2e(b: Bench, scale: Scale) -> dict:
    s = b.settings("e2e")
    logs = s.data_dir / "logs-in"
    t = time.monotonic()
    cfg = GenConfig(
        events=scale.e2e_events, courses=20, learners=max(200, scale.e2e_events // 75), days=scale.e2e_days, seed=14
    )
    write_dir(cfg, logs)
    paths = log_files(logs)
    say(f"e2e    : generated {scale.e2e_events:,} events in {len(paths)} files in {time.monotonic() - t:.0f}s")
    expected = pipeline.expected_counts(paths, s.max_clock_skew_seconds)
    _fresh_mysql(s)
    services = {"broker": b.broker.pid, "mariadbd": pipeline.pid_of("mariadbd")}
    with pipeline.Pipeline(s, log_dir=s.data_dir / "logs") as pipe:
        pipeline.prepare(pipe, reset=True)
        pipeline.start_workers(pipe)
        # The backfill goes into a running pipeline, as an operator's would: the clock
        # starts once the workers have joined their groups (their start-up CPU still
        # counts in the CPU figures below).
        joined = pipeline.wait_joined(pipe, [s.stream_group, s.mysql_sink_group, s.clickhouse_sink_group])
        say(f"e2e    : stream app and sinks joined their groups in {joined:.1f}s; backfill starts")
        cpu0 = {k: pipeline.cpu_seconds(pid) for k, pid in services.items() if pid}
        last = [0.0]

        def progress(stage: str, done: int, total: int) -> None:
            if time.monotonic() - last[0] > 10:
                last[0] = time.monotonic()
                say(f"         {stage}: {done:,}/{total:,} rows in MySQL")

        r = pipeline.backfill_until_written(pipe, paths, expected, progress=progress, timeout=3600)
        cpu = {k: pipeline.cpu_seconds(services[k]) - v for k, v in cpu0.items() if v is not None}
    rate = expected.lines / r.seconds
    peaks = {
        k: round(v, 1)
        for k, v in r.peaks_mb.items()
        if v and k in ("backfill", "stream", "sink-mysql", "sink-clickhouse")
    }
    say(
        f"e2e    : {expected.lines:,} lines from .gz files -> every row in MySQL after {r.mysql_seconds:.1f}s, "
        f"every window in ClickHouse after {r.seconds:.1f}s = {rate:,.0f} events/s"
    )
    say("         peak memory (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(peaks.items())))
    # the rest of a peak is mostly mapped library code (chdb's engine is a 0.5 GB library)
    anon = {k: round(r.anon_peaks_mb.get(k, 0.0), 1) for k in peaks}
    say("         of it heap (anonymous, sampled; MB): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(anon.items())))
    # where the machine's time went: on 2 cores the run is CPU-bound, so the sum over
    # processes, per event, is what bounds events/s
    cpu.update({k: v for k, v in r.cpu_s.items() if k in ("backfill", "stream", "sink-mysql", "sink-clickhouse")})
    cpu = {k: round(v, 1) for k, v in cpu.items()}
    total_cpu = sum(cpu.values())
    say(
        "         CPU seconds: "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(cpu.items()))
        + f"; total {total_cpu:.0f} = {1e6 * total_cpu / expected.lines:.0f} µs per event "
        f"({total_cpu / r.seconds:.2f} cores busy of {os.cpu_count()})"
    )
    for note in r.notes:
        say(f"         note: {note}")
    return {
        "e2e_events": expected.lines,
        "e2e_seconds": r.seconds,
        "e2e_mysql_seconds": r.mysql_seconds,
        "e2e_ship_seconds": r.ship_seconds,
        "e2e_events_per_s": rate,
        "e2e_peak_mb": peaks,
        "e2e_peak_anon_mb": anon,
        "e2e_cpu_seconds": cpu,
        "e2e_clickhouse_events": r.clickhouse_events,
        "e2e_clickhouse_windows": r.clickhouse_windows,
    }


# -- scale-out -----------------------------------------------------------------------------------------

# The roles whose CPU the scale-out part adds up, each over its processes
ROLES = ("backfill", "stream", "sink-mysql", "sink-clickhouse", "broker", "mariadbd")
SCALEOUT_PARTITIONS = 8


def _role(component: str) -> str:
    """``stream-2`` -> ``stream``: the role a component name belongs to."""
    return next((r for r in ROLES if component == r or component.startswith(r + "-")), component)


def _scaleout_run(
    b: Bench, part: str, paths: list[Path], expected, streams: int, mysql_sinks: int, measure_storage: bool
) -> dict:
    """One backfill of ``paths`` into a pipeline of ``streams`` stream workers,
    ``mysql_sinks`` MySQL sinks and one ClickHouse sink on SCALEOUT_PARTITIONS partitions;
    its rate, its CPU per role from the backfill's start (the workers' start-up
    excluded, as it does not grow with the events) and whether it is exact."""
    s = b.settings(part, partitions=SCALEOUT_PARTITIONS)
    _fresh_mysql(s)
    services = {"broker": b.broker.pid, "mariadbd": pipeline.pid_of("mariadbd")}
    with pipeline.Pipeline(s, log_dir=s.data_dir / "logs") as pipe:
        pipeline.prepare(pipe, reset=True)
        workers = pipeline.start_workers(pipe, streams=streams, mysql_sinks=mysql_sinks)
        groups = [s.stream_group, s.mysql_sink_group, s.clickhouse_sink_group]
        pipeline.wait_joined(pipe, groups)
        # the broker (Tansu) lists no group members: each worker's log says it has its
        # partitions, then the groups are stable again after the last join's rebalance
        _wait_assigned(pipe, workers.all)
        pipeline.wait_joined(pipe, groups)
        started = {name: pipeline.cpu_seconds(pipe.components[name].proc.pid) or 0.0 for name in workers.all}
        started.update({k: pipeline.cpu_seconds(pid) or 0.0 for k, pid in services.items() if pid})
        r = pipeline.backfill_until_written(pipe, paths, expected, timeout=3600, workers=workers)
        ended = {k: pipeline.cpu_seconds(pid) or 0.0 for k, pid in services.items() if pid}
    cpu: dict[str, float] = {}
    for name, secs in [*r.cpu_s.items(), *ended.items()]:
        if _role(name) in ROLES:
            cpu[_role(name)] = cpu.get(_role(name), 0.0) + secs - started.get(name, 0.0)
    exact, detail = _exact(s, expected, r)
    storage = _storage(s, expected.lines) if measure_storage else {}
    # what each worker did: its lines (stream workers' metrics files) and the enriched
    # partitions it held at the end (MySQL sinks' logs)
    shares = [
        f"{name} {pipeline.stream_metrics(s, f).get('lines', 0):,} lines"
        for name, f in zip(workers.stream, workers.metrics_files, strict=True)
    ]
    for name in workers.mysql:
        last = [
            x for x in (s.data_dir / "logs" / f"{name}.log").read_text().splitlines() if "sink mysql: assigned" in x
        ]
        held = last[-1].count(f"{s.enriched_topic}[") if last else 0
        shares.append(f"{name} {held} of {SCALEOUT_PARTITIONS} enriched partitions")
    return {
        "shares": shares,
        "storage": storage,
        "seconds": r.seconds,
        "events_per_s": expected.lines / r.seconds,
        "cpu_us": {k: 1e6 * v / expected.lines for k, v in cpu.items()},
        "cpu_us_per_event": 1e6 * sum(cpu.values()) / expected.lines,
        "exact": exact,
        "detail": detail,
        "notes": r.notes,
    }


# what a worker's log says once it has its partitions
ASSIGNED = {
    "stream": "[^Worker]: Ready",
    "sink-mysql": "sink mysql: assigned",
    "sink-clickhouse": "sink clickhouse: assigned",
}


def _wait_assigned(pipe: pipeline.Pipeline, names: tuple[str, ...], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    waiting = list(names)
    while waiting:
        pipe.check_alive()
        waiting = [
            n for n in waiting if ASSIGNED[_role(n)] not in pipe.components[n].log_path.read_text(errors="replace")
        ]
        if waiting and time.monotonic() > deadline:
            raise SystemExit(f"{', '.join(waiting)} got no partitions in {timeout:.0f}s; see {pipe.log_dir}")
        time.sleep(0.2)


def _exact(s: Settings, expected, r) -> tuple[bool, str]:
    """Do both stores hold exactly what the input should produce? The totals against the
    event model run over the files (``pipeline.expected_counts``), and per course and
    day the raw topic, MySQL, ClickHouse and the windows against each other (the
    reconcile logic)."""
    from edxstream.ops import reconcile

    figures, diffs = reconcile.reconcile(
        s, progress=False, clickhouse_rows=lambda sql: pipeline.clickhouse_rows(s, {"q": sql})["q"]
    )
    conn = migrate.mysql_connect(s, autocommit=True)
    try:
        mysql_events, mysql_dead = pipeline.mysql_counts(conn)
    finally:
        conn.close()
    in_courses = sum(n for (course, _), n in figures.shipped.items() if course != reconcile.NO_COURSE)
    windows = sum((figures.windows or {}).values())
    checks = {
        "shipped": (sum(figures.shipped.values()), expected.events),
        "MySQL events": (mysql_events, expected.events),
        "MySQL dead letters": (mysql_dead, expected.dead_letters),
        "ClickHouse events": (r.clickhouse_events, expected.events),
        "window counts (events in a course)": (windows, in_courses),
    }
    wrong = [f"{k} {got:,} != {want:,}" for k, (got, want) in checks.items() if got != want]
    if diffs:
        wrong.append(f"{len(diffs)} course-days differ: {reconcile.format_report(figures, diffs, 5)}")
    if wrong:
        return False, "; ".join(wrong)
    return True, (
        f"{expected.events:,} events and {expected.dead_letters:,} dead letters in MySQL, {r.clickhouse_events:,} "
        f"events in ClickHouse, window counts summing to {windows:,} (every event of a course), per course and day "
        "equal to the raw topic"
    )


def _storage(s: Settings, events: int) -> dict[str, float]:
    """Bytes per event that a run left in each store and topic: ClickHouse's tables'
    folders (the parts as merged so far), MySQL's tables (InnoDB's data and
    index pages, after ANALYZE TABLE), and each topic's records as the producers send
    them: the values read back and compressed again in batches of up to 512 KB per
    partition with the topic's codec (lz4 for the shipper's raw records, the stream
    app's ``EDXSTREAM_TOPIC_COMPRESSION`` for its own topics; changelogs uncompressed)."""
    import lz4.frame
    from aiokafka.codec import zstd_encode
    from confluent_kafka import Consumer, KafkaError, TopicPartition

    out: dict[str, float] = {}
    folder = s.clickhouse_embedded_path
    if folder is not None:  # chdb: the tables' folders (each a link into the store)
        tables = folder / "data" / s.clickhouse_database
        for table in sorted(tables.iterdir()) if tables.is_dir() else []:
            size = sum(f.stat().st_size for f in table.resolve().rglob("*") if f.is_file())
            if size:
                out[f"ClickHouse {table.name} (folder)"] = size / events
    conn = migrate.mysql_connect(s, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("ANALYZE TABLE events, dead_letters")
            cur.fetchall()
            cur.execute(
                "SELECT table_name, data_length + index_length FROM information_schema.tables "
                "WHERE table_schema = DATABASE() AND table_name IN ('events', 'dead_letters')"
            )
            for name, size in cur.fetchall():
                out[f"MySQL {name}"] = int(size) / events
    finally:
        conn.close()
    own = (s.raw_topic, s.enriched_topic, s.deadletter_topic, s.aggregates_topic, s.tally_topic)
    consumer = Consumer(
        {
            "bootstrap.servers": s.kafka_bootstrap,
            "group.id": f"bench-storage-{os.getpid()}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
    )
    try:
        topics = consumer.list_topics(timeout=10).topics
        names = [t for t in topics if t in own or (t.startswith(s.app_id + "-") and t.endswith("-changelog"))]
        for topic in names:
            if topic == s.raw_topic:
                codec, label = lz4.frame.compress, "lz4"
            elif topic.endswith("-changelog"):
                codec, label = bytes, "uncompressed"
            elif s.topic_compression == "zstd":
                codec, label = zstd_encode, "zstd"
            else:
                codec, label = bytes, f"uncompressed; {s.topic_compression} not measured"
            n_parts = len(topics[topic].partitions)
            consumer.assign([TopicPartition(topic, p, 0) for p in range(n_parts)])
            left, total = set(range(n_parts)), 0
            pending: dict[int, list[bytes]] = {q: [] for q in range(n_parts)}
            held = dict.fromkeys(range(n_parts), 0)  # bytes in pending
            quiet_since = time.monotonic()
            while left and time.monotonic() - quiet_since < 30:  # an empty partition may report no end
                msg = consumer.poll(1.0)
                if msg is None:
                    continue
                quiet_since = time.monotonic()
                if msg.error():
                    if msg.error().code() == KafkaError._PARTITION_EOF:
                        left.discard(msg.partition())
                        continue
                    raise SystemExit(f"reading {topic}: {msg.error()}")
                q, record = msg.partition(), (msg.key() or b"") + (msg.value() or b"")
                pending[q].append(record)
                held[q] += len(record)
                if held[q] >= 512 * 1024:
                    total += len(codec(b"".join(pending[q])))
                    pending[q], held[q] = [], 0
            total += sum(len(codec(b"".join(batch))) for batch in pending.values() if batch)
            out[f"Kafka {topic} ({label})"] = total / events
    finally:
        consumer.close()
    return out


def bench_scaleout(b: Bench, scale: Scale) -> dict:
    """The same input through one stream worker and one sink of each kind, then through
    two stream workers and two MySQL sinks, on 8 partitions: both exact, with CPU per
    event side by side (on 2 cores more workers cannot be faster; what scale-out must
    not do is cost more per event or lose exactness)."""
    work = b.work / "scaleout-input"
    t = time.monotonic()
    cfg = GenConfig(
        events=scale.scaleout_events,
        courses=20,
        learners=max(200, scale.scaleout_events // 75),
        days=scale.scaleout_days,
        seed=16,
    )
    write_dir(cfg, work)
    paths = log_files(work)
    expected = pipeline.expected_counts(paths, Settings.model_fields["max_clock_skew_seconds"].default)
    say(
        f"scale  : generated {scale.scaleout_events:,} events in {len(paths)} files in {time.monotonic() - t:.0f}s; "
        f"{SCALEOUT_PARTITIONS} partitions"
    )
    runs = {}
    for label, part, streams, mysql_sinks in (("single", "scaleout_1", 1, 1), ("scaled", "scaleout_2", 2, 2)):
        runs[label] = r = _scaleout_run(b, part, paths, expected, streams, mysql_sinks, label == "single")
        say(
            f"scale  : {streams} stream worker(s), {mysql_sinks} MySQL sink(s), 1 ClickHouse sink: "
            f"{r['events_per_s']:,.0f} events/s ({r['seconds']:.1f}s), {r['cpu_us_per_event']:.0f} µs CPU per event; "
            f"{'exact' if r['exact'] else 'NOT EXACT'}: {r['detail']}"
        )
        say("         " + "; ".join(r["shares"]))
        for note in r["notes"]:
            say(f"         note: {note}")
    one, two = runs["single"], runs["scaled"]
    say(f"         CPU µs per event     {'one of each':>12} {'2 stream, 2 MySQL':>18}")
    for role in ROLES:
        say(f"         {role:<20} {one['cpu_us'].get(role, 0):>12.1f} {two['cpu_us'].get(role, 0):>18.1f}")
    say(f"         {'total':<20} {one['cpu_us_per_event']:>12.1f} {two['cpu_us_per_event']:>18.1f}")
    say(
        "         (CPU from the backfill's start; one ClickHouse sink in both runs: the embedded ClickHouse "
        "lets one process open its data folder. Against a ClickHouse server, several ClickHouse sinks "
        "share the partitions the same way; not measured here)"
    )
    say(f"         bytes per event a run leaves (one of each; {expected.lines:,} events):")
    for where, size in sorted(one["storage"].items()):
        if size >= 0.5:  # not the empty tables
            say(f"         {where:<60} {size:>8,.0f}")
    return {
        "scaleout_bytes_per_event": {k: round(v, 1) for k, v in one["storage"].items()},
        "scaleout_events": expected.lines,
        "scaleout_partitions": SCALEOUT_PARTITIONS,
        "scaleout_workers": {"stream": 2, "sink-mysql": 2, "sink-clickhouse": 1},
        "scaleout_single_events_per_s": one["events_per_s"],
        "scaleout_scaled_events_per_s": two["events_per_s"],
        "scaleout_single_cpu_us_per_event": one["cpu_us_per_event"],
        "scaleout_scaled_cpu_us_per_event": two["cpu_us_per_event"],
        "scaleout_single_cpu_us": {k: round(v, 1) for k, v in one["cpu_us"].items()},
        "scaleout_scaled_cpu_us": {k: round(v, 1) for k, v in two["cpu_us"].items()},
        "scaleout_single_exact": one["exact"],
        "scaleout_scaled_exact": two["exact"],
    }


# -- live latency ------------------------------------------------------------------------------------


@dataclass
class LiveLine:
    appended: float
    event_id: str
    key: tuple[str, str, int]  # course, what it counts as (its category or kind), 60 s window start (epoch)
    ordinal: int  # how many lines of this key up to and including this one
    mysql: float | None = None
    clickhouse: float | None = None


def _live_templates(n: int) -> list[dict]:
    """Generated events that belong to a course (only those have course windows)."""
    docs: list[dict] = []
    size = n
    while len(docs) < n:
        size *= 2
        docs = [
            orjson.loads(line)
            for line in generate_lines(
                GenConfig(events=size, courses=4, learners=500, days=1, seed=15, malformed=0, prefixed=0)
            )
            if getattr(parse_line(line), "course_id", None)
        ]
    return docs[:n]


def bench_live(b: Bench, scale: Scale) -> dict:
    from datetime import datetime, timezone

    s = b.settings("live")
    s.data_dir.mkdir(parents=True, exist_ok=True)
    _fresh_mysql(s)
    live_file = s.data_dir / "tracking.log"
    live_file.write_bytes(b"")
    n = int(scale.live_rate * scale.live_seconds)
    templates = _live_templates(n + 200)  # the last ones are warm-up probes
    lines: list[LiveLine] = []
    per_key: dict[tuple, int] = {}
    with pipeline.Pipeline(s, log_dir=s.data_dir / "logs") as pipe:
        pipeline.prepare(pipe, reset=True)
        pipeline.start_workers(pipe)
        pipe.start("ship", "ship", str(live_file), "--poll-interval", "0.05")

        fingerprint: list[str | None] = [None]  # the live file's, once its first line is written

        def append(f, doc: dict, into: list[LiveLine]) -> None:
            now = time.time()
            doc["time"] = datetime.fromtimestamp(now, timezone.utc).isoformat()
            raw = orjson.dumps(doc)
            # the line's id as the pipeline gives it: the file's fingerprint and the line's offset
            offset = f.tell()
            if offset == 0:
                fingerprint[0] = fingerprint_of_head(raw + b"\n")
            ev = parse_line(raw, None, offset, fingerprint[0])
            key = (ev.course_id or "", counted_as(ev.kind, ev.category), int(now // 60) * 60)
            per_key[key] = per_key.get(key, 0) + 1
            into.append(LiveLine(time.monotonic(), ev.event_id, key, per_key[key]))
            f.write(raw + b"\n")

        def watch_until_seen(watched: list[LiveLine], timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and any(x.mysql is None or x.clickhouse is None for x in watched):
                pipe.check_alive("stream", "sink-mysql", "sink-clickhouse", "ship")
                time.sleep(0.2)

        # Warm-up: the clock starts once a probe line has gone all the way through (every
        # consumer group joined, the tables recovered, both databases written), so the
        # figures are those of a running pipeline, not of its start.
        probe: list[LiveLine] = []
        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(s, probe, stop, "aggregates topic"), daemon=True)
        watcher.start()
        # one probe a second: the shipper may start following the file after the first
        through = None
        deadline = time.monotonic() + 180
        with open(live_file, "ab", buffering=0) as f:
            while through is None and time.monotonic() < deadline:
                append(f, templates.pop(), probe)
                for _ in range(5):
                    pipe.check_alive("stream", "sink-mysql", "sink-clickhouse", "ship")
                    time.sleep(0.2)
                    through = next((x for x in list(probe) if x.mysql is not None and x.clickhouse is not None), None)
                    if through is not None:
                        break
        stop.set()
        watcher.join(10)
        if through is None:
            raise SystemExit("no warm-up line reached both stores; see " + str(s.data_dir / "logs"))
        say(f"live   : pipeline ready after {len(probe)} warm-up line(s)")
        # the ClickHouse sink's query endpoint (it opens the database on its first write);
        # else the aggregates topic
        via = "aggregates topic"
        deadline = time.monotonic() + 15
        while s.clickhouse_embedded_path is not None and not endpoint_file(s).exists() and time.monotonic() < deadline:
            pipe.check_alive("stream", "sink-mysql", "sink-clickhouse", "ship")
            time.sleep(0.2)
        if s.clickhouse_embedded_path is None or endpoint_file(s).exists():
            try:
                pipeline.clickhouse_rows(s, {"x": "SELECT 1 AS x"}, timeout=60)
                via = "clickhouse"
            except Exception:  # noqa: BLE001 - measured on the topic instead, and said so
                pass

        stop = threading.Event()
        watcher = threading.Thread(target=_watch, args=(s, lines, stop, via), daemon=True)
        watcher.start()
        interval = 1.0 / scale.live_rate
        t0 = time.monotonic()
        with open(live_file, "ab", buffering=0) as f:
            for i, doc in enumerate(templates[:n]):
                due = t0 + i * interval
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                append(f, doc, lines)
        watch_until_seen(lines, 120)
        stop.set()
        watcher.join(10)
    with open(s.data_dir / "live_latencies.csv", "w") as out:  # for a look at the tail (--keep)
        out.write("appended_s,mysql_s,window_s\n")
        for x in lines:
            out.write(
                f"{x.appended - lines[0].appended:.3f},"
                f"{'' if x.mysql is None else round(x.mysql - x.appended, 3)},"
                f"{'' if x.clickhouse is None else round(x.clickhouse - x.appended, 3)}\n"
            )
    done = [x for x in lines if x.mysql is not None and x.clickhouse is not None]
    if not done:
        raise SystemExit("no live line reached both stores; see " + str(s.data_dir / "logs"))
    both = sorted(max(x.mysql, x.clickhouse) - x.appended for x in done)
    my = sorted(x.mysql - x.appended for x in done)
    ch = sorted(x.clickhouse - x.appended for x in done)
    out = {
        "live_lines": len(lines),
        "live_seen": len(done),
        "live_rate": scale.live_rate,
        "live_via": via,
        "live_p50_s": _pct(both, 50),
        "live_p99_s": _pct(both, 99),
        "live_mysql_p50_s": _pct(my, 50),
        "live_mysql_p99_s": _pct(my, 99),
        "live_clickhouse_p50_s": _pct(ch, 50),
        "live_clickhouse_p99_s": _pct(ch, 99),
    }
    say(
        f"live   : {scale.live_rate}/s for {scale.live_seconds:.0f}s, {len(done):,}/{len(lines):,} lines seen; "
        f"append -> "
        f"MySQL row p50 {out['live_mysql_p50_s']:.2f}s p99 {out['live_mysql_p99_s']:.2f}s; append -> window count "
        f"({via}) p50 {out['live_clickhouse_p50_s']:.2f}s p99 {out['live_clickhouse_p99_s']:.2f}s; both p50 "
        f"{out['live_p50_s']:.2f}s p99 {out['live_p99_s']:.2f}s"
    )
    return out


def _pct(values: list[float], p: int) -> float:
    if len(values) == 1:
        return max(values[0], 1e-6)
    return max(statistics.quantiles(values, n=100, method="inclusive")[p - 1], 1e-6)


def _watch(s: Settings, lines: list[LiveLine], stop: threading.Event, via: str) -> None:
    """Marks when each line's row shows in MySQL and its window count reaches it.

    MySQL and the window counts are watched by two loops of their own, so a slow look at
    one never delays the time stamped on the other (a query through the ClickHouse sink
    waits for the insert it is running). A row is stamped with the start of the MySQL
    query that found it (a look of a millisecond or two); a window count with the end of
    the look that found it: it was there by then, and perhaps not at its start."""
    threads = [
        threading.Thread(target=_watch_mysql, args=(s, lines, stop), daemon=True),
        threading.Thread(target=_watch_windows, args=(s, lines, stop, via), daemon=True),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _watch_mysql(s: Settings, lines: list[LiveLine], stop: threading.Event) -> None:
    conn = migrate.mysql_connect(s, autocommit=True)
    try:
        while not stop.is_set():
            now = time.monotonic()
            waiting = [x for x in list(lines) if x.mysql is None]
            seen_ids: set[str] = set()
            with conn.cursor() as cur:
                for i in range(0, len(waiting), 1000):  # only the rows not seen yet
                    chunk = [x.event_id for x in waiting[i : i + 1000]]
                    cur.execute(
                        "SELECT event_id FROM events WHERE event_id IN (%s)" % ",".join(["%s"] * len(chunk)), chunk
                    )
                    seen_ids.update(eid for (eid,) in cur.fetchall())
            for x in waiting:
                if x.event_id in seen_ids:
                    x.mysql = now
            time.sleep(0.05)
    finally:
        conn.close()


def _watch_windows(s: Settings, lines: list[LiveLine], stop: threading.Event, via: str) -> None:
    from confluent_kafka import Consumer

    from edxstream.core.records import decode_windows

    consumer = None
    if via != "clickhouse":
        from confluent_kafka import OFFSET_BEGINNING, TopicPartition

        # assigned, not subscribed: a group join would hold the first seconds back
        consumer = Consumer(
            {
                "bootstrap.servers": s.kafka_bootstrap,
                "group.id": f"bench-live-watch-{os.getpid()}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 50,
            }
        )
        parts = {}
        while not parts and not stop.is_set():  # the stream app may not have made the topic yet
            parts = consumer.list_topics(s.aggregates_topic, timeout=30).topics[s.aggregates_topic].partitions
            if not parts:
                time.sleep(0.2)
        consumer.assign([TopicPartition(s.aggregates_topic, p, OFFSET_BEGINNING) for p in parts])
    # Looks at ClickHouse from this process, through the sink's query endpoint (or a
    # ClickHouse server): a short subprocess per look would spend seconds starting Python
    # on a busy machine, and that would be measured as latency.
    runner = None
    if via == "clickhouse" and (s.clickhouse_embedded_path is None or holder(s) is not None):
        runner = open_runner(s)
    sql = (
        "SELECT course_id, dimension, toUnixTimestamp(window_start) AS ws, max(count) AS n "
        "FROM window_counts WHERE kind = 'course_category' AND window_seconds = 60 "
        "GROUP BY course_id, dimension, ws"
    )
    counts: dict[tuple, int] = {}
    try:
        while not stop.is_set():
            if via == "clickhouse":
                if runner is not None:
                    rows = [orjson.loads(x) for x in runner.raw(sql, "JSONEachRow").splitlines() if x.strip()]
                else:  # the folder's holder publishes no endpoint: from a subprocess
                    rows = pipeline.clickhouse_rows(s, {"w": sql})["w"]
                for r in rows:
                    counts[(r["course_id"], r["dimension"], int(r["ws"]))] = int(r["n"])
            else:
                for m in consumer.consume(10_000, timeout=0.05):
                    if m.error():
                        continue
                    for w in decode_windows(m.value()):
                        if w.kind == "course_category" and w.window_seconds == 60:
                            key = (w.course_id, w.dimension, int(w.window_start.timestamp()))
                            counts[key] = max(counts.get(key, 0), w.count)
            seen = time.monotonic()
            for x in list(lines):
                if x.clickhouse is None and counts.get(x.key, 0) >= x.ordinal:
                    x.clickhouse = seen
            time.sleep(0.05)
    finally:
        if consumer is not None:
            consumer.close()


# -- main ---------------------------------------------------------------------------------------------


def bench_analysis(b: Bench, scale: Scale) -> dict:
    out = b.work / "analysis.json"
    name = "small" if scale is SCALES["small"] else "full"
    subprocess.run(
        [sys.executable, str(REPO / "bench" / "bench_analysis.py"), "--scale", name, "--json", str(out)], check=True
    )
    return json.loads(out.read_text())


PARTS = {
    "ship": bench_ship,
    "stream": bench_stream,
    "sinks": bench_sinks,
    "e2e": bench_e2e,
    "live": bench_live,
    "scaleout": bench_scaleout,
    "analysis": bench_analysis,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="edxstream bench", description=__doc__.splitlines()[0])
    ap.add_argument(
        "--scale",
        choices=sorted(SCALES),
        default="full",
        help="full: the sizes the README's figures come from (takes several minutes); small: a quick check",
    )
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--only", help="comma-separated parts: " + ",".join(PARTS))
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs, files)")
    args = ap.parse_args(argv)
    parts = args.only.split(",") if args.only else list(PARTS)
    unknown = set(parts) - set(PARTS)
    if unknown:
        ap.error(f"unknown parts: {', '.join(sorted(unknown))}")
    scale = SCALES[args.scale]
    work = Path(tempfile.mkdtemp(prefix="edxstream-bench-"))
    say(f"edxstream bench, scale {args.scale}, {os.cpu_count()} cores; work folder {work}")
    b = Bench(work)
    results: dict = {"scale": args.scale, "cores": os.cpu_count(), "mysql_server": mysql_server(b.mysql_root)}
    say(describe_mysql(results["mysql_server"]))
    try:
        for name in parts:
            t = time.monotonic()
            results.update(PARTS[name](b, scale))
            results[f"{name}_bench_seconds"] = round(time.monotonic() - t, 1)
    finally:
        b.close(keep=args.keep)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    say("")
    say(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        say(f"figures written to {args.json}")
    return 0


def table(results: dict) -> str:
    rows = [
        ("ship_vs_kcat", "shipper / kcat -P -l (lines/s ratio)", "{:.2f}"),
        ("ship_lines_per_s", "shipper lines/s", "{:,.0f}"),
        ("kcat_lines_per_s", "kcat -P -l lines/s", "{:,.0f}"),
        ("stream_events_per_s", "stream app events/s (one worker)", "{:,.0f}"),
        ("mysql_rows_per_s", "MySQL sink rows/s", "{:,.0f}"),
        ("load_data_rows_per_s", "LOAD DATA rows/s", "{:,.0f}"),
        ("mysql_vs_load_data", "MySQL sink / LOAD DATA", "{:.2f}"),
        ("clickhouse_rows_per_s", "ClickHouse sink rows/s", "{:,.0f}"),
        ("e2e_events", "end to end: events", "{:,}"),
        ("e2e_seconds", "end to end: wall seconds", "{:.1f}"),
        ("e2e_events_per_s", "end to end: events/s", "{:,.0f}"),
        ("live_p50_s", "live: append -> MySQL and window, p50 s", "{:.2f}"),
        ("live_p99_s", "live: append -> MySQL and window, p99 s", "{:.2f}"),
        ("scaleout_single_events_per_s", "scale-out: events/s, one of each", "{:,.0f}"),
        ("scaleout_scaled_events_per_s", "scale-out: events/s, 2 stream, 2 MySQL", "{:,.0f}"),
        ("scaleout_single_cpu_us_per_event", "scale-out: CPU µs/event, one of each", "{:.0f}"),
        ("scaleout_scaled_cpu_us_per_event", "scale-out: CPU µs/event, 2 stream, 2 MySQL", "{:.0f}"),
        ("scaleout_scaled_exact", "scale-out: 2 stream, 2 MySQL exact", "{}"),
        ("ari", "analysis: segments ARI vs planted", "{:.3f}"),
        ("auc_at_risk_week2", "analysis: at-risk AUC at week 2", "{:.3f}"),
        ("r2_grade_week2", "analysis: grade R² at week 2", "{:.3f}"),
        ("hit_rate_at_10", "analysis: recommendation hit rate at 10", "{:.3f}"),
        ("hit_rate_baseline_most_popular", "analysis: most-popular hit rate at 10", "{:.3f}"),
        ("fit_seconds", "analysis: read + fit seconds, every step", "{:.1f}"),
        ("fit_peak_mb", "analysis: read + fit peak MB", "{:,.0f}"),
        ("target_seconds", "analysis: analyze run, 100,000 learners, s", "{:.1f}"),
        ("target_cpu_seconds", "analysis: same, CPU s", "{:.1f}"),
        ("target_peak_mb", "analysis: same, peak MB", "{:,.0f}"),
    ]
    out = [f"{'figure':<44} {'value':>14}  target", "-" * 70]
    for key, title, fmt in rows:
        if key in results:
            target = TARGETS.get(key)
            t = "" if target is None else (f"<= {target}" if key.startswith("live") else f">= {target:,}")
            out.append(f"{title:<44} {fmt.format(results[key]):>14}  {t}")
    for proc, mb in sorted(results.get("e2e_peak_mb", {}).items()):
        out.append(f"{'end to end: peak MB, ' + proc:<44} {mb:>14,.0f}")
    for proc, mb in sorted(results.get("e2e_peak_anon_mb", {}).items()):
        out.append(f"{'end to end: heap MB (sampled), ' + proc:<44} {mb:>14,.0f}")
    for proc, cpu in sorted(results.get("e2e_cpu_seconds", {}).items()):
        out.append(f"{'end to end: CPU s, ' + proc:<44} {cpu:>14,.1f}")
    if results.get("mysql_server"):
        out.append(describe_mysql(results["mysql_server"]))
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
