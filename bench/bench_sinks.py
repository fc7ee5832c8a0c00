"""Sink throughput, with LOAD DATA of the same rows as the baseline, measured in one run.

    python bench/bench_sinks.py [--rows 200000] [--no-kafka] [--mysql mysql://root:@127.0.0.1:3306]

Figures printed (rows/s):
  mysql write path   the MySQL sink's own decode + batched upsert (MySQLWriter.prepare +
                     write, batches of settings.sink_batch_rows), messages already in memory;
                     on the path the sink chooses (LOAD DATA into a staging table, then
                     INSERT ... SELECT ... ON DUPLICATE KEY UPDATE) and on the multi-row
                     INSERT fallback (for servers with local_infile off); "last fifth" is
                     the rate over the last 20% of the rows, when the table is largest (with
                     --rows 1000000 it shows whether the sink slows as the table grows)
  mysql LOAD DATA    LOAD DATA LOCAL INFILE of the same rows (TSV prepared beforehand, not
                     timed) into an identical fresh table: the baseline
  clickhouse events / window_counts on chdb, through ClickHouseWriter (pseudonymizing)
  through Kafka      messages produced to a private Tansu broker first, then the sink
                     (`mysql_sink.run`) drains them: from its first message to its last commit

It needs MariaDB with root access (it creates and drops databases): 127.0.0.1:3306, or
the server --mysql names (e.g. one started with other settings). It prints the server
settings that bear on the figures and the load average, before and after: the figures
are only comparable within one run.
"""

from __future__ import annotations

import argparse
import urllib.parse
import hashlib
import logging
import random
import shutil
import socket
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edxstream.core import records  # noqa: E402

from edxstream.ops import stack
from edxstream.core import settings as settings_mod  # noqa: E402
from edxstream.core.records import EnrichedEvent, WindowCount  # noqa: E402
from sinks import migrate  # noqa: E402
from sinks.clickhouse_sink import ClickHouseWriter  # noqa: E402
from sinks.mysql_sink import MySQLWriter  # noqa: E402
from sinks.rows import Msg  # noqa: E402

ROOT = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
CATS = ["access", "content", "video", "forum", "assessment", "other"]


def generate(n: int) -> list[EnrichedEvent]:
    rnd = random.Random(42)
    base = datetime(2024, 3, 1, tzinfo=timezone.utc)
    out = []
    for i in range(n):
        cat = CATS[i % len(CATS)]
        course = f"course-v1:Org{i % 7}+C{i % 13}+2024"
        user = rnd.randrange(1, 5000)
        out.append(
            EnrichedEvent(
                event_id=hashlib.blake2b(str(i).encode(), digest_size=16).hexdigest(),
                time=base + timedelta(seconds=i // 10, microseconds=rnd.randrange(10**6)),
                category=cat,
                action=f"{cat}_action_{i % 4}",
                event_type=f"edx.{cat}.event{i % 4}",
                event_source="browser",
                course_id=course,
                org=f"Org{i % 7}",
                course=f"C{i % 13}",
                run="2024",
                block_id=f"block-v1:Org+C+2024+type@problem+block@{i % 300:x}",
                user_id=user,
                username=f"learner{user}",
                session=f"{rnd.getrandbits(64):016x}",
                ip=f"10.1.{user % 250}.{i % 250}",
                agent="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 Safari/537.36",
                host="courses.example.org",
                page=f"https://courses.example.org/courses/{course}/courseware/",
                video_id="v1" if cat == "video" else None,
                video_position=12.5 if cat == "video" else None,
                problem_id=f"p{i % 300}" if cat == "assessment" else None,
                attempts=1 if cat == "assessment" else None,
                success=True if cat == "assessment" else None,
                grade=1.0 if cat == "assessment" else None,
                max_grade=1.0 if cat == "assessment" else None,
                payload='{"id": "block-v1:Org+C+2024+type@video+block@%d", "currentTime": %d, "code": "html5"}'
                % (i % 50, i % 600),
                source="/edx/var/log/tracking/tracking.log",
                offset=i * 420,
            )
        )
    return out


def use_server(url: str) -> None:
    """Point the benchmark at the server ``url`` (mysql://user:password@host:port)."""
    u = urllib.parse.urlsplit(url)
    ROOT.update(
        host=u.hostname or "127.0.0.1",
        port=u.port or 3306,
        user=urllib.parse.unquote(u.username or "root"),
        password=urllib.parse.unquote(u.password or ""),
    )


def dsn(db: str) -> str:
    return (
        f"mysql://{urllib.parse.quote(ROOT['user'])}:{urllib.parse.quote(ROOT['password'])}"
        f"@{ROOT['host']}:{ROOT['port']}/{db}"
    )


def fresh_db(tag: str) -> str:
    name = f"edxstream_bench_{tag}_{uuid.uuid4().hex[:8]}"
    conn = pymysql.connect(**ROOT)
    with conn, conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    return name


def drop_db(name: str) -> None:
    conn = pymysql.connect(**ROOT)
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} rows/s  ({n:,} rows in {seconds:.2f} s)"


def server_settings() -> str:
    from run_all import describe_mysql, mysql_server  # one reading of the server's settings

    return f"server at {ROOT['host']}:{ROOT['port']}: " + describe_mysql(mysql_server(ROOT))


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def bench_mysql_writer(
    base, values: list[bytes], pipelined: bool, load_data: bool | None = None
) -> tuple[float, tuple[int, float], str]:
    """The sink's write path. Pipelined is how SinkLoop runs it: batch N+1 is decoded
    while a writer thread stores batch N (the database works on the other core).
    Returns the time, (rows, seconds) of the batches in the last fifth of the rows, and
    the path the writer took."""
    db = fresh_db("sink")
    try:
        s = base.model_copy(update={"mysql_dsn": dsn(db)})
        writer = MySQLWriter(s, load_data=load_data)
        writer.write(writer.prepare([]))  # connect + migrate, not timed
        size = s.sink_batch_rows
        pool = ThreadPoolExecutor(1)
        inflight = None
        t0 = time.perf_counter()
        tail_from, t_tail = len(values), None
        for i in range(0, len(values), size):
            if t_tail is None and i >= len(values) * 4 // 5:
                tail_from, t_tail = i, time.perf_counter()
            prepared = writer.prepare([Msg(s.enriched_topic, 0, i + j, v) for j, v in enumerate(values[i : i + size])])
            if inflight is not None:
                inflight.result()
            inflight = pool.submit(writer.write, prepared)
            if not pipelined:
                inflight.result()
        inflight.result()
        t1 = time.perf_counter()
        elapsed, tail = t1 - t0, (len(values) - tail_from, t1 - (t_tail or t1))
        pool.shutdown()
        path = writer.path
        writer.close()
        conn = pymysql.connect(**ROOT, database=db)
        with conn, conn.cursor() as cur:
            cur.execute("SELECT COUNT(*) FROM events")
            assert cur.fetchone()[0] == len(values)
        return elapsed, tail, path
    finally:
        drop_db(db)


def tsv_value(v) -> str:
    if v is None:
        return r"\N"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")
    return str(v).replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def bench_load_data(base, events: list[EnrichedEvent], tmp: Path) -> float:
    db = fresh_db("load")
    path = tmp / "events.tsv"
    with open(path, "w", encoding="utf-8", newline="") as f:
        for e in events:
            f.write("\t".join(tsv_value(getattr(e, c)) for c in records.ENRICHED_FIELDS) + "\n")
    try:
        s = base.model_copy(update={"mysql_dsn": dsn(db)})
        migrate.migrate_mysql(s)
        conn = migrate.mysql_connect(s, local_infile=True)
        cols = ",".join(f"`{c}`" for c in records.ENRICHED_FIELDS)
        with conn, conn.cursor() as cur:
            t0 = time.perf_counter()
            cur.execute(
                f"LOAD DATA LOCAL INFILE %s INTO TABLE events CHARACTER SET utf8mb4 "
                f"FIELDS TERMINATED BY '\\t' LINES TERMINATED BY '\\n' ({cols})",
                (str(path),),
            )
            conn.commit()
            elapsed = time.perf_counter() - t0
            cur.execute("SELECT COUNT(*) FROM events")
            assert cur.fetchone()[0] == len(events)
        return elapsed
    finally:
        drop_db(db)


def bench_clickhouse(base, values: list[bytes], windows: list[bytes], tmp: Path) -> tuple[float, float]:
    s = base.model_copy(update={"clickhouse_url": f"chdb://{tmp / 'chdb'}", "clickhouse_database": "bench"})
    writer = ClickHouseWriter(s)
    writer.write(writer.prepare([]))
    size = s.clickhouse_batch_rows
    t0 = time.perf_counter()
    for i in range(0, len(values), size):
        writer.write(writer.prepare([Msg(s.enriched_topic, 0, i + j, v) for j, v in enumerate(values[i : i + size])]))
    t_events = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(0, len(windows), size):
        writer.write(
            writer.prepare([Msg(s.aggregates_topic, 0, i + j, v) for j, v in enumerate(windows[i : i + size])])
        )
    t_windows = time.perf_counter() - t0
    return t_events, t_windows


def bench_kafka(base, values: list[bytes], tmp: Path) -> tuple[float, int]:
    from confluent_kafka import Producer

    from edxstream.core import kafka_admin
    from sinks import mysql_sink

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broker = stack.start_broker(stack.tansu_binary(base), "127.0.0.1", port, tmp / "broker.log")
    db = fresh_db("kafka")
    try:
        s = base.model_copy(update={"kafka_bootstrap": f"127.0.0.1:{port}", "mysql_dsn": dsn(db)})
        kafka_admin.ensure_topics(s)
        p = Producer({"bootstrap.servers": s.kafka_bootstrap, "linger.ms": 50, "batch.size": 1_000_000})
        for i, v in enumerate(values):
            while True:
                try:
                    p.produce(s.enriched_topic, value=v)
                    break
                except BufferError:
                    p.poll(0.1)
            if i % 5000 == 0:
                p.poll(0)
        assert p.flush(120) == 0
        stats = mysql_sink.run(s, max_idle_seconds=5)
        return stats.last_commit - stats.first_message, stats.messages
    finally:
        broker.kill()
        broker.wait(10)
        drop_db(db)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--no-kafka", action="store_true", help="skip the through-Kafka measurement")
    ap.add_argument(
        "--mysql",
        default="mysql://root:@127.0.0.1:3306",
        metavar="URL",
        help="the MariaDB/MySQL server to measure, as a user who may create databases",
    )
    args = ap.parse_args()
    use_server(args.mysql)
    logging.basicConfig(level=logging.WARNING)
    tmp = Path(tempfile.mkdtemp(prefix="bench_sinks_"))
    base = settings_mod.load(
        home=tmp / "home", app_id=f"bench-{uuid.uuid4().hex[:6]}", pseudonym_key="bench-pseudonym-key"
    )
    try:
        print(f"generating {args.rows:,} events ...", flush=True)
        events = generate(args.rows)
        values = [records.encode(e) for e in events]
        windows = [
            records.encode(
                WindowCount(
                    kind="course_category",
                    course_id=e.course_id,
                    dimension=e.category,
                    window_seconds=60,
                    window_start=e.time.replace(second=0, microsecond=0),
                    count=i,
                    version=i,
                )
            )
            for i, e in enumerate(events)
        ]

        print(server_settings(), flush=True)
        print(f"load average before: {loadavg()}  (2 cores; shared machine)", flush=True)
        t_sink, (tail_rows, t_tail), path = bench_mysql_writer(base, values, pipelined=True)
        print(f"mysql write path ({path}), pipelined (as the sink runs): {rate(len(values), t_sink)}", flush=True)
        if tail_rows:
            print(f"  of which the last fifth (the largest table):      {rate(tail_rows, t_tail)}", flush=True)
        t_load = bench_load_data(base, events, tmp)
        print(f"mysql LOAD DATA LOCAL INFILE (baseline):         {rate(len(values), t_load)}", flush=True)
        print(f"mysql sink ({path}, pipelined) / LOAD DATA ratio: {t_load / t_sink:.2f}", flush=True)
        t_serial, _, path = bench_mysql_writer(base, values, pipelined=False)
        print(f"mysql write path ({path}), serial (decode, then write): {rate(len(values), t_serial)}", flush=True)
        t_insert, _, path = bench_mysql_writer(base, values, pipelined=True, load_data=False)
        print(f"mysql write path ({path} fallback), pipelined:  {rate(len(values), t_insert)}", flush=True)
        # The machine's load drifts: measure the baseline again right after the fallback.
        t_load2 = bench_load_data(base, events, tmp)
        print(f"mysql LOAD DATA LOCAL INFILE (baseline, again):  {rate(len(values), t_load2)}", flush=True)
        print(f"mysql insert fallback / LOAD DATA ratio:         {t_load2 / t_insert:.2f}", flush=True)

        t_che, t_chw = bench_clickhouse(base, values, windows, tmp)
        print(f"clickhouse (chdb) events, pseudonymized:         {rate(len(values), t_che)}", flush=True)
        print(f"clickhouse (chdb) window_counts:                 {rate(len(windows), t_chw)}", flush=True)

        if not args.no_kafka:
            t_k, n = bench_kafka(base, values, tmp)
            print(f"mysql sink through Kafka (Tansu), first message to last commit: {rate(n, t_k)}", flush=True)
            print(
                f"mysql sink through Kafka / LOAD DATA (mean of both) ratio: "
                f"{(t_load + t_load2) / 2 / t_k * n / len(values):.2f}",
                flush=True,
            )
        print(f"load average after: {loadavg()}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
