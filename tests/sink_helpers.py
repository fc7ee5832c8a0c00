"""Known inputs for the sink tests, and independent computations of what the sinks must
store: the events as MySQL returns them, and the window counts computed from the events."""

from __future__ import annotations

import hashlib
import random
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone

import pymysql
from confluent_kafka import Consumer, Producer, TopicPartition

from edxstream.core import kafka_admin, records
from edxstream.core.records import EnrichedEvent, WindowCount

CATEGORIES = ["access", "content", "video", "forum", "assessment", "other"]
ACTIONS = {
    "access": ["page_view", "enrollment_activated"],
    "content": ["seq_goto", "seq_next"],
    "video": ["play_video", "pause_video", "seek_video"],
    "forum": ["thread_created"],
    "assessment": ["problem_check"],
    "other": ["unknown"],
}
COURSES = ["course-v1:MITx+6.002x+2024", "course-v1:HarvardX+CS50+T1", "course-v1:Ünïcode+Ç1+R"]
BASE = datetime(2024, 1, 31, 23, 30, tzinfo=timezone.utc)  # windows cross a month boundary


def make_events(n: int, seed: int = 1, id_prefix: str = "") -> list[EnrichedEvent]:
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        cat = rnd.choice(CATEGORIES)
        course = rnd.choice(COURSES + [None]) if i % 17 == 0 else rnd.choice(COURSES)
        org, crs, run = course.split(":")[1].split("+") if course else (None, None, None)
        user = rnd.randrange(1, 40)
        t = BASE + timedelta(seconds=rnd.randrange(0, 3 * 3600), microseconds=rnd.randrange(0, 10**6))
        out.append(
            EnrichedEvent(
                event_id=hashlib.sha256(f"{id_prefix}{seed}:{i}".encode()).hexdigest()[:32],
                time=t,
                category=cat,
                action=rnd.choice(ACTIONS[cat]),
                event_type=f"edx.{cat}.{i % 5}",
                event_source=rnd.choice(["server", "browser", None]),
                course_id=course,
                org=org,
                course=crs,
                run=run,
                block_id=f"block-v1:X+Y+Z+type@problem+block@{i:x}" if cat == "assessment" else None,
                user_id=user,
                username=f"learner_{user}" if user % 7 else f"Ünï'\"\\cødé_{user}",
                session=f"{rnd.getrandbits(64):016x}",
                ip=f"10.0.{user}.{rnd.randrange(255)}",
                agent='Mozilla/5.0 (X11; Linux) "quoted"',
                host="courses.example.org",
                page=f"https://courses.example.org/courses/{course}/x?q=1&r='2'" if course else None,
                video_id="vid-1" if cat == "video" else None,
                video_position=rnd.random() * 600 if cat == "video" else None,
                video_speed=1.5 if cat == "video" else None,
                problem_id=f"p{i}" if cat == "assessment" else None,
                attempts=rnd.randrange(1, 4) if cat == "assessment" else None,
                success=rnd.choice([True, False]) if cat == "assessment" else None,
                grade=float(rnd.randrange(0, 3)) if cat == "assessment" else None,
                max_grade=2.0 if cat == "assessment" else None,
                payload='{"text": "line1\\nline2 \\\\ \'single\' \\"double\\" ☃", "n": %d}' % i,
                source="/var/log/tracking.log",
                offset=i * 311,
            )
        )
    return out


def mysql_expected_row(e: EnrichedEvent) -> tuple:
    """The row MySQL returns for an event (what pymysql gives back for each column type)."""
    row = []
    for name in records.ENRICHED_FIELDS:
        v = getattr(e, name)
        if name == "time":
            v = v.astimezone(timezone.utc).replace(tzinfo=None)
        elif name == "success" and v is not None:
            v = int(v)
        row.append(v)
    return tuple(row)


def mysql_table(settings, table: str, order: str) -> list[tuple]:
    conn = pymysql.connect(**settings.mysql)
    with conn, conn.cursor() as cur:
        cur.execute(f"SELECT * FROM `{table}` ORDER BY {order}")
        return [tuple(r) for r in cur.fetchall()]


def window_start(t: datetime, seconds: int) -> datetime:
    epoch = int(t.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=timezone.utc)


def expected_windows(events: list[EnrichedEvent], windows=(60, 3600)) -> dict[tuple, int]:
    """Counts per (kind, course, dimension, window_seconds, window_start), computed
    directly from the events (independently of any sink or stream code)."""
    counts: dict[tuple, int] = defaultdict(int)
    learners: dict[tuple, set] = defaultdict(set)
    for e in events:
        if e.course_id is None:
            continue
        for w in windows:
            start = window_start(e.time, w)
            counts[("course_category", e.course_id, e.category, w, start)] += 1
            counts[("course_action", e.course_id, e.action, w, start)] += 1
            if e.user_id is not None:
                learners[("course_learners", e.course_id, "", w, start)].add(e.user_id)
    counts.update({k: len(v) for k, v in learners.items()})
    return dict(counts)


def window_emissions(events: list[EnrichedEvent], seed: int = 3) -> list[WindowCount]:
    """What a stream processor emits while counting the events in arrival order: each
    window's running value, with a growing version, at several points; the final
    emission of every window carries its full count. Returned shuffled across windows
    (and a few stale versions re-sent late), which a sink must tolerate."""
    rnd = random.Random(seed)
    emissions: list[WindowCount] = []
    for cut in (len(events) // 3, 2 * len(events) // 3, len(events)):
        partial = expected_windows(events[:cut])
        for (kind, course, dim, w, start), count in partial.items():
            emissions.append(
                WindowCount(
                    kind=kind,
                    course_id=course,
                    dimension=dim,
                    window_seconds=w,
                    window_start=start,
                    count=count,
                    version=cut,
                )
            )
    stale = rnd.sample(emissions[: len(emissions) // 3], k=min(20, len(emissions) // 3))
    rnd.shuffle(emissions)
    return emissions + stale


# The end offset of every partition the tests wrote to, from the delivery reports (the
# broker's high watermark can be under-reported by Tansu).
_ENDS: dict[tuple[str, int], int] = {}


def _delivered(err, msg) -> None:
    assert err is None, err
    key = (msg.topic(), msg.partition())
    _ENDS[key] = max(_ENDS.get(key, 0), msg.offset() + 1)


def produce(settings, topic: str, items: list[tuple[bytes | None, bytes]]) -> None:
    kafka_admin.ensure_topics(settings)  # with settings.partitions, before anything auto-creates them
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "enable.idempotence": True, "linger.ms": 20})
    for i, (key, value) in enumerate(items):
        p.produce(topic, key=key, value=value, on_delivery=_delivered)
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(60) == 0


def produce_events(settings, events: list[EnrichedEvent]) -> int:
    """As the stream app does, a course's events together in a record (a JSON array), in
    records of 1 to 5 events of one course; and, as older producers did, some as a lone
    object. Returns how many records were produced."""
    items, sizes = [], (1, 3, 5, 2, 1, 4)
    by_course: dict[str, list[EnrichedEvent]] = {}
    for e in events:
        by_course.setdefault(e.course_id or "", []).append(e)
    for course, evs in by_course.items():
        i = 0
        while i < len(evs):
            n = sizes[len(items) % len(sizes)]
            chunk = evs[i : i + n]
            value = records.encode(chunk[0]) if len(chunk) == 1 and len(items) % 2 == 0 else records.encode(chunk)
            items.append((course.encode(), value))
            i += n
    produce(settings, settings.enriched_topic, items)
    return len(items)


def produce_windows(settings, windows: list[WindowCount]) -> None:
    """As the stream app does, several counts per record (a JSON array), in records of
    1 to 5; and, as older producers did, some as a lone object; plus an empty array."""
    items, i, sizes = [], 0, (1, 3, 5, 2, 1, 4)
    while i < len(windows):
        n = sizes[len(items) % len(sizes)]
        chunk = windows[i : i + n]
        w = chunk[0]
        key = f"{w.course_id}|{w.window_seconds}|{int(w.window_start.timestamp())}".encode()
        value = records.encode(w) if n == 1 and len(items) % 2 == 0 else records.encode(chunk)
        items.append((key, value))
        i += n
    items.append((None, b"[]"))
    produce(settings, settings.aggregates_topic, items)


def _group_consumer(settings, group: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group,
            "enable.auto.commit": False,
            "session.timeout.ms": 6000,
        }
    )


def committed(settings, group: str, topics: list[str]) -> dict[tuple[str, int], int]:
    """The group's committed offsets (-1001 = none)."""
    c = _group_consumer(settings, group)
    try:
        parts = [TopicPartition(t, p) for t in topics for p in range(settings.partitions)]
        return {(tp.topic, tp.partition): tp.offset for tp in c.committed(parts, timeout=20)}
    finally:
        c.close()


def end_offsets(settings, topics: list[str]) -> dict[tuple[str, int], int]:
    """Where each partition ends, as committed offsets count it (-1001: never written)."""
    return {(t, p): _ENDS.get((t, p), -1001) for t in topics for p in range(settings.partitions)}


def reset_group(settings, group: str, topics: list[str]) -> None:
    """Rewind a (stopped) consumer group to the start of its topics, as an operator
    would for a replay."""
    c = _group_consumer(settings, group)
    try:
        c.commit(
            offsets=[TopicPartition(t, p, 0) for t in topics for p in range(settings.partitions)], asynchronous=False
        )
    finally:
        c.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if all(o in (0, -1001) for o in committed(settings, group, topics).values()):
            return
        time.sleep(0.2)
    raise AssertionError("group offsets were not reset")
