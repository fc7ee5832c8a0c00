"""The chaos run: the whole pipeline on its own local stack while it is broken on purpose,
then an independent count of what reached the stores.

    python bench/chaos.py                 # about 5 minutes: 60,000 lines, 24 disruptions
    python bench/chaos.py --short         # about 2 minutes: what tests/test_chaos.py runs

It starts, under a fresh EDXSTREAM_HOME and on its own ports, the broker on its
persistent store (Tansu + SeaweedFS), two stream workers, both sinks and the live
shipper (`edxstream ship`), and writes a tracking log while it runs. Meanwhile, every
few seconds, it does one of: kill -9 the shipper, a worker, a sink or the broker and
start it again; cut MySQL for a while (the sinks' own MySQL user is locked and its
connections killed; the machine's MariaDB keeps running); rotate the log (rename and
create, as logrotate does). A component that exits by itself is restarted too, as a
service manager would, and counted.

Then it waits until the stores hold everything and counts independently, from the log
lines it wrote (run through the event model): every valid line must be one row of MySQL
``events`` and every bad one a row of ``dead_letters`` (lost = missing rows), and the
ClickHouse window counts must equal counts made from the lines (a count above is a line
counted twice, below a line lost). It prints the figures and exits 1 if anything was
lost or doubled.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import secrets
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

import pymysql

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edxstream.core.events.classification import counted_as  # noqa: E402
from edxstream.core.model import parse_line  # noqa: E402
from edxstream.core.records import DeadLetter  # noqa: E402
from edxstream.core.settings import load  # noqa: E402
from edxstream.core import kafka_admin  # noqa: E402
from edxstream.ops import pipeline, stack  # noqa: E402
from producer.fingerprint import fingerprint_of_head  # noqa: E402
from sinks import migrate  # noqa: E402

COURSES = ["course-v1:Chaos+C1+2026", "course-v1:Chaos+C2+2026", "course-v1:Chaos+C3+2026"]
ACTIONS = [
    ("play_video", "browser"),
    ("pause_video", "browser"),
    ("problem_check", "server"),
    ("/courses/{c}/courseware/ch/seq/", "server"),
    ("edx.forum.thread.created", "server"),
]
COMPONENTS = ("ship", "stream-1", "stream-2", "sink-mysql", "sink-clickhouse")
KINDS = (*COMPONENTS, "broker", "mysql", "rotate")  # what a disruption does


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_line(i: int, t0: float, rnd: random.Random) -> bytes:
    """One tracking line, unique by ``i``; about one in 200 is broken on purpose."""
    if i % 200 == 199:
        return b'{"event_type": "broken", "time": ' + str(i).encode()  # not JSON: a dead letter
    course = COURSES[i % len(COURSES)]
    action, source = ACTIONS[rnd.randrange(len(ACTIONS))]
    when = datetime.fromtimestamp(t0 + i * 0.01, tz=timezone.utc).isoformat()
    return json.dumps(
        {
            "username": f"learner{i % 97}",
            "event_type": action.format(c=course),
            "event_source": source,
            "time": when,
            "i": i,
            "page": f"https://lms/courses/{course}/courseware/",
            "context": {"user_id": i % 97, "course_id": course},
            "event": {"id": f"v{i % 13}"},
        }
    ).encode()


class LogWriter(threading.Thread):
    """Writes the tracking log at ``rate`` lines per second and rotates it on request."""

    def __init__(self, path: Path, n: int, rate: float, seed: int):
        super().__init__(daemon=True)
        self.path, self.n, self.rate = path, n, rate
        self.rnd = random.Random(seed)
        self.t0 = time.time() - 3600  # an hour ago onwards: never late, never in the future
        self.written = 0
        self.rotations = 0
        self.lines: list[bytes] = []
        # each line's identity as the pipeline gives it: its file's fingerprint (the hash of
        # the file's first line) and its byte offset in that file
        self.places: list[tuple[str | None, int]] = []
        self._rotate = threading.Event()
        self._lock = threading.Lock()

    def rotate(self) -> None:
        self._rotate.set()

    def shift(self, base: str) -> None:
        folder = self.path.parent
        n = 1
        while (folder / f"{base}.{n}").exists():
            n += 1
        for k in range(n, 1, -1):
            os.rename(folder / f"{base}.{k - 1}", folder / f"{base}.{k}")
        os.rename(self.path, folder / f"{base}.1")

    def run(self) -> None:
        f = open(self.path, "ab")
        fp, pos = None, f.tell()
        started = time.monotonic()
        while self.written < self.n:
            if self._rotate.is_set():
                self._rotate.clear()
                f.close()
                self.rotations += 1
                # logrotate's rename-and-create: .1 -> .2 ..., the live file -> .1, a new live file
                self.shift(self.path.name)
                f = open(self.path, "ab")
                fp, pos = None, 0
            due = int((time.monotonic() - started) * self.rate) - self.written
            batch = []
            for _ in range(max(0, min(due, self.n - self.written))):
                line = make_line(self.written, self.t0, self.rnd)
                batch.append(line)
                self.written += 1
            if batch:
                places = []
                for line in batch:
                    if pos == 0:
                        fp = fingerprint_of_head(line + b"\n")
                    places.append((fp, pos))
                    pos += len(line) + 1
                f.write(b"".join(line + b"\n" for line in batch))
                f.flush()
                with self._lock:
                    self.lines.extend(batch)
                    self.places.extend(places)
            time.sleep(0.05)
        f.close()


class Chaos:
    def __init__(self, args):
        self.args = args
        self.rnd = random.Random(args.seed)
        self.run_id = secrets.token_hex(4)
        self.home = Path(tempfile.mkdtemp(prefix=f"edxstream-chaos-{self.run_id}-"))
        self.db = f"edxstream_chaos_{self.run_id}"
        self.user = f"chaos_{self.run_id}"
        password = secrets.token_hex(8)
        self.settings = load(
            home=self.home,
            kafka_bootstrap=f"127.0.0.1:{free_port()}",
            broker_storage="s3",
            app_id=f"edxstream-chaos-{self.run_id}",
            partitions=4,
            mysql_dsn=f"mysql://{self.user}:{password}@127.0.0.1:3306/{self.db}",
            clickhouse_url=f"chdb://{self.home / 'clickhouse'}",
            checkpoint_dir=self.home / "checkpoints",
            pseudonym_key=secrets.token_hex(32),  # the sinks refuse the default key
        )
        self.password = password
        self.log = self.home / "logs-in" / "tracking.log"
        self.log.parent.mkdir(parents=True)
        self.pipe = pipeline.Pipeline(self.settings, log_dir=self.home / "logs")
        self.disruptions: Counter = Counter()
        self.restarts: Counter = Counter()  # components that exited by themselves
        self.last_disruption = time.monotonic()
        self._plan: list[str] = []

    # -- MySQL: the run's own database and user ------------------------------------------
    def _root(self):
        return pymysql.connect(
            host="127.0.0.1",
            port=3306,
            user=os.environ.get("EDXSTREAM_MYSQL_ADMIN_USER", "root"),
            password=os.environ.get("EDXSTREAM_MYSQL_ADMIN_PASSWORD", ""),
            autocommit=True,
        )

    def _admin(self, *statements: str) -> None:
        conn = self._root()
        try:
            with conn.cursor() as cur:
                for sql in statements:
                    cur.execute(sql)
        finally:
            conn.close()

    def mysql_setup(self) -> None:
        self._admin(
            f"CREATE DATABASE `{self.db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
            *[f"CREATE USER '{self.user}'@'{h}' IDENTIFIED BY '{self.password}'" for h in ("127.0.0.1", "localhost")],
            *[f"GRANT ALL ON `{self.db}`.* TO '{self.user}'@'{h}'" for h in ("127.0.0.1", "localhost")],
        )

    def mysql_cut(self, seconds: float) -> None:
        """Lock the sinks' user and drop its connections; unlock after ``seconds``."""
        self._admin(*[f"ALTER USER '{self.user}'@'{h}' ACCOUNT LOCK" for h in ("127.0.0.1", "localhost")])
        conn = self._root()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (self.user,))
                for (cid,) in cur.fetchall():
                    try:
                        cur.execute(f"KILL {int(cid)}")
                    except pymysql.err.OperationalError:
                        pass
        finally:
            conn.close()
        time.sleep(seconds)
        self._admin(*[f"ALTER USER '{self.user}'@'{h}' ACCOUNT UNLOCK" for h in ("127.0.0.1", "localhost")])

    def mysql_teardown(self) -> None:
        self._admin(
            f"DROP DATABASE IF EXISTS `{self.db}`",
            *[f"DROP USER IF EXISTS '{self.user}'@'{h}'" for h in ("127.0.0.1", "localhost")],
        )

    # -- components ----------------------------------------------------------------------
    def start(self, name: str) -> None:
        if name == "ship":
            self.pipe.start("ship", "ship", str(self.log), "--checkpoint-interval", "0.5")
        elif name.startswith("stream-"):
            self.pipe.start(name, "process", "--log-every", "2", "--web-port", str(free_port()))
        else:
            self.pipe.start(name, "sink", name.removeprefix("sink-"))

    def kill(self, name: str) -> None:
        comp = self.pipe.components.get(name)
        if comp is not None and comp.proc.poll() is None:
            comp.proc.kill()
            comp.proc.wait(30)
        self.pipe.components.pop(name, None)

    def kill_broker(self) -> None:
        pid = int((self.settings.data_dir / "run" / "broker.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        time.sleep(self.rnd.uniform(0.5, 3))
        stack.broker_up(self.settings)

    def supervise(self) -> None:
        """Start again what exited by itself (as systemd's Restart= would)."""
        for name in COMPONENTS:
            comp = self.pipe.components.get(name)
            if comp is None or comp.proc.poll() is not None:
                if comp is not None:
                    self.restarts[name] += 1
                    print(f"  {name} exited by itself (exit {comp.proc.returncode}); restarting", flush=True)
                    self.pipe.components.pop(name, None)
                self.start(name)

    def disrupt(self, writer: LogWriter) -> None:
        if not self._plan:  # every kind once per round, in a random order
            self._plan = list(KINDS)
            self.rnd.shuffle(self._plan)
        what = self._plan.pop()
        print(f"  {time.strftime('%H:%M:%S')} chaos: {what}", flush=True)
        if what == "broker":
            self.kill_broker()
        elif what == "mysql":
            self.mysql_cut(self.rnd.uniform(3, 8))
        elif what == "rotate":
            writer.rotate()
        else:
            self.kill(what)
            time.sleep(self.rnd.uniform(0.2, 2))
            self.start(what)
        self.disruptions[what] += 1
        self.last_disruption = time.monotonic()

    # -- the run -------------------------------------------------------------------------
    def run(self) -> int:
        a = self.args
        print(f"chaos run {self.run_id}: home {self.home}, broker {self.settings.kafka_bootstrap}", flush=True)
        self.mysql_setup()
        try:
            return self._run(a)
        finally:
            self.pipe.stop_all()
            for what in (stack.broker_down, stack.object_store_down):
                try:
                    what(self.settings)
                except Exception as exc:  # noqa: BLE001 - cleaning up, report and go on
                    print(f"  cleanup: {exc}")
            self.mysql_teardown()
            if not a.keep:
                shutil.rmtree(self.home, ignore_errors=True)

    def _run(self, a) -> int:
        stack.broker_up(self.settings)
        pipeline.prepare(self.pipe, reset=False)
        for name in COMPONENTS:
            self.start(name)
        writer = LogWriter(self.log, a.lines, a.rate, a.seed)
        writer.start()
        started = time.monotonic()
        next_chaos = time.monotonic() + a.every
        while writer.is_alive() or sum(self.disruptions.values()) < a.disruptions:
            time.sleep(0.5)
            self.supervise()
            if time.monotonic() >= next_chaos and sum(self.disruptions.values()) < a.disruptions:
                self.disrupt(writer)
                next_chaos = time.monotonic() + self.rnd.uniform(0.5, 1.5) * a.every
            if time.monotonic() - started > a.timeout:
                print("chaos: the writer did not finish in time", flush=True)
                return 2
        writer.join()
        print(
            f"chaos: {writer.written} lines written, {sum(self.disruptions.values())} disruptions "
            f"({dict(self.disruptions)}); waiting for the stores",
            flush=True,
        )
        return self._check(writer.lines, writer.places, started, a)

    def _check(self, lines: list[bytes], places: list[tuple[str | None, int]], started: float, a) -> int:
        events, dead = {}, set()
        windows: Counter = Counter()
        for line, (fp, offset) in zip(lines, places, strict=True):
            r = parse_line(line, None, offset, fp)
            if r.__class__ is DeadLetter:
                dead.add(r.dead_letter_id)
                continue
            events[r.event_id] = r
            start = int(r.time.timestamp()) // 3600 * 3600
            windows[(r.course_id, counted_as(r.kind, r.category), start)] += 1
        # MySQL: every row, waited for while the supervisor keeps things running
        conn = migrate.mysql_connect(self.settings, autocommit=True)
        deadline = time.monotonic() + a.timeout
        while True:
            self.supervise()
            n_events, n_dead = pipeline.mysql_counts(conn)
            if n_events >= len(events) and n_dead >= len(dead):
                break
            if time.monotonic() > deadline:
                break
            time.sleep(1)
        recovered_in = time.monotonic() - self.last_disruption
        with conn.cursor() as cur:
            cur.execute("SELECT event_id FROM events")
            stored = {r[0] for r in cur.fetchall()}
            cur.execute("SELECT dead_letter_id FROM dead_letters WHERE stage = 'parse'")
            stored_dead = {r[0] for r in cur.fetchall()}
        conn.close()
        lost_events = len(set(events) - stored)
        lost_dead = len(dead - stored_dead)
        # ClickHouse: the window counts, read after the sink has caught up and stopped
        got: dict = {}
        deadline = time.monotonic() + a.timeout
        while time.monotonic() < deadline:
            lag = kafka_admin.group_lag(
                self.settings,
                self.settings.clickhouse_sink_group,
                [self.settings.aggregates_topic, self.settings.enriched_topic],
            )
            if lag == 0:
                self.pipe.stop("sink-clickhouse")
                rows = pipeline.clickhouse_rows(
                    self.settings,
                    {
                        "w": (
                            "SELECT course_id, dimension, toUnixTimestamp(window_start) AS s, count "
                            "FROM window_counts_final "
                            "WHERE kind = 'course_category' AND window_seconds = 3600"
                        )
                    },
                )["w"]
                got = {(r["course_id"], r["dimension"], int(r["s"])): int(r["count"]) for r in rows}
                if got == windows or time.monotonic() > deadline - 5:
                    break
                self.start("sink-clickhouse")
            self.supervise()
            time.sleep(2)
        over = sum(max(0, got.get(k, 0) - v) for k, v in windows.items())
        under = sum(max(0, v - got.get(k, 0)) for k, v in windows.items())
        done_in = time.monotonic() - started
        report = {
            "lines": len(lines),
            "valid_events": len(events),
            "bad_lines": len(dead),
            "disruptions": sum(self.disruptions.values()),
            "by_kind": dict(self.disruptions),
            "exited_by_themselves": dict(self.restarts),
            "lost_events": lost_events,
            "lost_dead_letters": lost_dead,
            "counted_twice": over,
            "counted_missing": under,
            "mysql_caught_up_after_last_disruption_s": round(recovered_in, 1),
            "total_seconds": round(done_in, 1),
        }
        print(json.dumps(report, indent=2), flush=True)
        ok = lost_events == 0 and lost_dead == 0 and over == 0 and under == 0
        print(
            f"chaos: {'PASS' if ok else 'FAIL'}: {report['disruptions']} disruptions survived, "
            f"{len(lines)} lines, lost {lost_events + lost_dead}, counted twice {over}, counted missing {under}",
            flush=True,
        )
        return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lines", type=int, default=60_000)
    p.add_argument("--rate", type=float, default=400.0, help="lines written per second")
    p.add_argument("--disruptions", type=int, default=24)
    p.add_argument("--every", type=float, default=6.0, help="seconds between disruptions (on average)")
    p.add_argument("--seed", type=int, default=17)
    p.add_argument("--timeout", type=float, default=600.0)
    p.add_argument("--short", action="store_true", help="a short run: 8,000 lines, 8 disruptions")
    p.add_argument("--keep", action="store_true", help="keep the run's home folder (logs) afterwards")
    args = p.parse_args(argv)
    if args.short:
        args.lines, args.disruptions, args.every = 8_000, 8, 5.0
    return Chaos(args).run()


if __name__ == "__main__":
    sys.exit(main())
