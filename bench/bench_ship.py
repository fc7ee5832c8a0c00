"""Benchmark: the shipper against ``kcat -P -l`` on the same file, broker and run.

    python bench/bench_ship.py [--lines 1000000] [--file PATH] [--partitions 4]

Generates (or takes) a file of tracking-log lines, starts its own Tansu broker, then
ships the file twice, each into its own fresh topic with the same partition count:

1. ``kcat -P -b BROKER -t TOPIC -l FILE`` (librdkafka defaults: unkeyed, no
   idempotence, no compression, no headers) - the baseline;
2. ``producer.backfill`` (keyed by learner, acks=all with one request in flight, lz4, three headers per line,
   acknowledgement tracking and checkpoints).

Prints lines/s for both and the ratio. Both runs are timed from start to the last
acknowledgement (kcat exits after flushing). The target is a ratio of at least 0.60.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from edxstream.core import kafka_admin  # noqa: E402

from edxstream.ops import stack  # noqa: E402
from edxstream.core import settings as settings_mod  # noqa: E402

EVENT_TYPES = [
    ("play_video", "browser"),
    ("pause_video", "browser"),
    ("seek_video", "browser"),
    ("problem_check", "server"),
    ("edx.course.enrollment.activated", "server"),
    ("/courses/course-v1:edX+DemoX+Demo_Course/courseware/", "server"),
    ("edx.forum.thread.created", "server"),
    ("page_close", "browser"),
]


def synthetic_line(rng: random.Random, i: int) -> str:
    """One line shaped like an Open edX tracking event (~600-900 bytes)."""
    user = rng.randrange(5000)
    course = f"course-v1:Org{user % 7}+C{user % 13}+2024"
    et, src = rng.choice(EVENT_TYPES)
    event = {
        "id": f"block-v1:Org+C+2024+type@video+block@{rng.randrange(10**8):08x}",
        "currentTime": round(rng.random() * 600, 3),
        "code": "html5",
    }
    rec = {
        "username": f"learner{user}",
        "event_source": src,
        "name": et,
        "time": f"2024-03-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{i % 60:02d}.{i % 1000000:06d}+00:00",
        "agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
        "page": f"https://lms.example.org/courses/{course}/courseware/sec/sub/1",
        "host": "lms.example.org",
        "session": f"{rng.getrandbits(128):032x}",
        "referer": f"https://lms.example.org/courses/{course}/courseware/",
        "accept_language": "en-US,en;q=0.9",
        "event": json.dumps(event) if src == "browser" else event,
        "ip": f"10.{user % 250}.{i % 250}.{user % 97}",
        "event_type": et,
        "context": {
            "course_user_tags": {},
            "user_id": user,
            "org_id": f"Org{user % 7}",
            "course_id": course,
            "path": "/event",
            "enterprise_uuid": "",
        },
    }
    return json.dumps(rec)


def generate(path: Path, lines: int) -> None:
    rng = random.Random(42)
    with open(path, "w") as f:
        for i in range(lines):
            f.write(synthetic_line(rng, i) + "\n")


def kcat_env(work: Path) -> dict:
    """kcat linked against the librdkafka bundled in the confluent-kafka wheel.

    The distribution's kcat 1.7.1 links librdkafka 2.0.2, which cannot parse Tansu's
    ApiVersions v3 response ("Read underflow"); librdkafka keeps its ABI, so pointing
    kcat at the wheel's newer copy fixes that and makes both runs use the same library."""
    import os

    import confluent_kafka

    libs = Path(confluent_kafka.__file__).resolve().parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    env = dict(os.environ)
    if found:
        d = work / "lib"
        d.mkdir(exist_ok=True)
        (d / "librdkafka.so.1").symlink_to(found[0])
        env["LD_LIBRARY_PATH"] = f"{d}:{env.get('LD_LIBRARY_PATH', '')}"
    return env


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--file", type=Path, help="ship this file instead of generating one")
    ap.add_argument("--partitions", type=int, default=4)
    args = ap.parse_args()
    kcat = shutil.which("kcat")
    if not kcat:
        print("kcat is not installed (apt-get install kcat)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench_ship_"))
    try:
        if args.file:
            src = args.file
        else:
            src = work / "tracking.log"
            t = time.monotonic()
            generate(src, args.lines)
            print(f"generated {args.lines:,} lines ({src.stat().st_size / 1e6:.0f} MB) in {time.monotonic() - t:.1f}s")
        n_lines = sum(1 for line in open(src, "rb") if line.strip())
        size_mb = src.stat().st_size / 1e6

        from tests.conftest import free_port  # the same free-port helper the tests use

        port = free_port()
        base = settings_mod.load()
        proc = stack.start_broker(stack.tansu_binary(base), "127.0.0.1", port, work / "broker.log")
        try:
            s = settings_mod.load(
                home=work / "home",
                kafka_bootstrap=f"127.0.0.1:{port}",
                raw_topic="bench.raw",
                deadletter_topic="bench.deadletter",
                partitions=args.partitions,
            )
            kafka_admin.ensure_topics(s, ["bench.kcat", "bench.raw", "bench.deadletter"])

            t = time.monotonic()
            subprocess.run(
                [kcat, "-P", "-b", s.kafka_bootstrap, "-t", "bench.kcat", "-l", str(src)],
                check=True,
                env=kcat_env(work),
            )
            kcat_s = time.monotonic() - t

            from producer.backfill import backfill

            r = backfill(s, [src], progress=False)
            ship_s = r.seconds
            shipped = r.counters.lines
        finally:
            proc.kill()
            proc.wait(10)
        kcat_rate = n_lines / kcat_s
        ship_rate = shipped / ship_s
        import confluent_kafka

        print(f"librdkafka {confluent_kafka.libversion()[0]} for both (kcat re-linked to the wheel's copy)")
        print(f"file: {n_lines:,} lines, {size_mb:.0f} MB; broker: Tansu (memory store), {args.partitions} partitions")
        print(
            f"kcat -P -l   : {n_lines:>9,} lines in {kcat_s:6.2f}s = {kcat_rate:>9,.0f} lines/s  "
            f"({size_mb / kcat_s:.0f} MB/s; unkeyed, no headers, no idempotence, no compression)"
        )
        print(
            f"edxstream    : {shipped:>9,} lines in {ship_s:6.2f}s = {ship_rate:>9,.0f} lines/s  "
            f"({size_mb / ship_s:.0f} MB/s; keyed by learner, 3 headers, acks=all, 1 in flight, lz4, checkpointed)"
        )
        print(f"ratio edxstream/kcat: {ship_rate / kcat_rate:.2f} (target >= 0.60)")
        if shipped != n_lines:
            print(f"WARNING: shipped {shipped} of {n_lines} lines", file=sys.stderr)
            return 1
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
