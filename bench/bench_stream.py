"""Throughput of one stream worker: raw lines -> classify, enrich, produce, count.

Starts a fresh Tansu broker on a free port, produces N synthetic but realistic tracking
lines (many courses and learners, browser/server/mobile events, URL page views, a
little malformed input, time moving forward with jitter) to the raw topic, runs one
``edxstream process`` worker, and measures from the worker's first line to the moment
every enriched record has been counted and its windows emitted. As a baseline it
times the pure ``parse_line`` over the same lines on one core in this process and
prints the ratio.

    python bench/bench_stream.py [--lines 200000] [--partitions 4] [--hours 2]

The default 200,000 lines over 2 hours of event time (28 events/s, 60 courses, 20,000
learners) is a mid-size Open edX site being backfilled; sparser event time means more
distinct windows per event, hence more window updates to emit and store.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from edxstream.core import kafka_admin

from edxstream.ops import stack
from edxstream.core.model import parse_line
from edxstream.core.settings import load
from producer.backfill import backfill

EVENTS = [
    ("play_video", "browser"),
    ("pause_video", "browser"),
    ("seek_video", "browser"),
    ("edx.video.played", "mobile"),
    ("problem_check", "server"),
    ("problem_check", "browser"),
    ("showanswer", "server"),
    ("seq_goto", "browser"),
    ("seq_next", "browser"),
    ("page_close", "browser"),
    ("edx.forum.thread.created", "server"),
    ("edx.forum.response.created", "server"),
    ("edx.course.enrollment.activated", "server"),
    ("edx.ui.lms.sequence.next_selected", "browser"),
    ("/courses/{c}/courseware/{ch}/{sq}/", "server"),
    ("/courses/{c}/progress", "server"),
    ("/courses/{c}/discussion/forum/", "server"),
    ("/courses/{c}/xblock/block-v1:{k}+type@problem+block@{ch}/handler/xmodule_handler/problem_check", "server"),
]


def synth_lines(n: int, seed: int = 5, hours: float = 2.0) -> list[bytes]:
    rnd = random.Random(seed)
    courses = [f"course-v1:Org{i % 7}+C{i}+2024" for i in range(60)]
    t0 = datetime(2024, 5, 6, 8, 0, tzinfo=timezone.utc)
    span = hours * 3600
    out = []
    for i in range(n):
        if i % 1000 == 999:
            out.append(b'{"event_type": "play_video", "time": "garbled' + str(i).encode())
            continue
        c = rnd.choice(courses)
        uid = rnd.randint(1, 20000)
        name, src = rnd.choice(EVENTS)
        ch, sq = f"{rnd.getrandbits(64):016x}", f"{rnd.getrandbits(64):016x}"
        etype = name.format(c=c, ch=ch, sq=sq, k=c[len("course-v1:") :])
        t = t0 + timedelta(seconds=i * span / n + rnd.uniform(-30, 30))
        event = (
            {"id": f"block-v1:{c[10:]}+type@video+block@{ch}", "currentTime": rnd.uniform(0, 600)}
            if "video" in name
            else {"problem_id": f"block-v1:{c[10:]}+type@problem+block@{sq}", "attempts": 1}
        )
        doc = {
            "username": f"user{uid}",
            "event_type": etype,
            "event_source": src,
            "time": t.isoformat(),
            "ip": f"10.{uid % 250}.{uid % 97}.{uid % 13}",
            "agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/124.0",
            "host": "courses.example.org",
            "session": f"{rnd.getrandbits(128):032x}",
            "page": f"https://courses.example.org/courses/{c}/courseware/{ch}/{sq}/",
            "referer": f"https://courses.example.org/courses/{c}/course/",
            "accept_language": "en-US,en;q=0.5",
            "context": {
                "course_id": c,
                "org_id": c.split(":")[1].split("+")[0],
                "user_id": uid,
                "path": "/event",
                "course_user_tags": {},
            },
            "event": json.dumps(event) if src == "browser" else event,
            "name": etype,
        }
        out.append(json.dumps(doc).encode())
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=200_000)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument(
        "--hours",
        type=float,
        default=2.0,
        help="event-time span of the lines (denser = fewer window updates per event)",
    )
    args = ap.parse_args()

    lines = synth_lines(args.lines, hours=args.hours)
    mb = sum(map(len, lines)) / 1e6

    # baseline: the pure event model on one core
    t = time.perf_counter()
    results = [parse_line(ln, "/bench.log", i) for i, ln in enumerate(lines)]
    parse_s = time.perf_counter() - t
    parse_rate = len(lines) / parse_s
    n_valid = sum(1 for r in results if r.__class__.__name__ == "EnrichedEvent")
    del results

    tmp = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    port = free_port()
    broker = stack.start_broker(stack.tansu_binary(load()), "127.0.0.1", port, tmp / "broker.log")
    try:
        s = load(
            home=tmp / "home",
            kafka_bootstrap=f"127.0.0.1:{port}",
            partitions=args.partitions,
            app_id="bench-stream",
            web_port=free_port(),
        )
        kafka_admin.ensure_topics(s)
        # shipped as the shipper ships a file: lines bound for one partition share a record
        src = tmp / "tracking.log"
        src.write_bytes(b"".join(ln + b"\n" for ln in lines))
        t = time.perf_counter()
        r = backfill(s, [src], progress=False)
        assert r.counters.lines == len(lines), r.counters
        print(f"shipped {len(lines):,} raw lines ({mb:.1f} MB) in {time.perf_counter() - t:.1f}s", flush=True)

        env = dict(os.environ)
        for name, value in s.model_dump().items():
            if value is not None:
                env[f"EDXSTREAM_{name.upper()}"] = (
                    "[" + ",".join(map(str, value)) + "]" if isinstance(value, list) else str(value)
                )
        metrics = tmp / "metrics.json"
        log = open(tmp / "worker.log", "wb")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "edxstream.cli",
                "process",
                "--log-every",
                "0.1",
                "--batch",
                str(args.batch),
                "--metrics-file",
                str(metrics),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        t_done = None
        deadline = time.monotonic() + 900
        try:
            while time.monotonic() < deadline:
                time.sleep(0.05)
                if proc.poll() is not None:
                    raise SystemExit(f"worker exited: see {tmp / 'worker.log'}")
                try:
                    m = json.loads(metrics.read_text())
                except (FileNotFoundError, ValueError):
                    continue
                if m["lines"] >= len(lines) and m["enriched_seen"] >= n_valid:
                    t_done = time.time()
                    break
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if t_done is None:
            raise SystemExit(f"timed out: see {tmp / 'worker.log'}")
        # from the first raw batch the worker took (start-up and group join excluded)
        elapsed = t_done - m["first_batch_at"]
        rate = len(lines) / elapsed
        print(f"pure parse_line, one core:        {parse_rate:10,.0f} lines/s")
        print(
            f"one worker (classify, enrich, produce, count): {rate:10,.0f} events/s "
            f"({len(lines):,} lines in {elapsed:.1f}s; {m['windows_emitted']:,} window updates emitted)"
        )
        print(f"ratio worker / pure parse:        {rate / parse_rate:10.2f}")
        print(
            f"target 20,000 events/s: {'met' if rate >= 20_000 else 'NOT met'} on this machine "
            f"({os.cpu_count()} cores, shared with other work)"
        )
    finally:
        broker.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
