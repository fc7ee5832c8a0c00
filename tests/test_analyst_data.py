"""A small course whose answers are known, written into ClickHouse the way the sink
writes it, and the analyst views checked against those answers.

Other analyst tests import ``load_course`` from here. The events are built as
EnrichedEvent records (the sink's input), pseudonymized like the sink does, and inserted
with the sink's own row conversion; one event is inserted twice to check that every view
deduplicates before merges.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson

from edxstream.core import clickhouse, privacy
from edxstream.core.events.classification import describe
from edxstream.core.records import ENRICHED_FIELDS, EnrichedEvent
from edxstream.ops import course_import
from sinks import migrate, rows

COURSE = "course-v1:DemoX+AN101+2024_T1"
OTHER = "course-v1:DemoX+AN102+2024_T1"
DAY1 = datetime(2024, 3, 4, 9, 0, tzinfo=timezone.utc)
DAY2 = DAY1 + timedelta(days=1)
LEARNERS = {"alice_w": (11, "198.51.100.23"), "bob_k": (12, "198.51.100.42"), "carol_z": (13, "2001:db8::beef")}
V1 = "block-v1:DemoX+AN101+2024_T1+type@video+block@intro_video"
V2 = "block-v1:DemoX+AN101+2024_T1+type@video+block@week2_video"
P1 = "block-v1:DemoX+AN101+2024_T1+type@problem+block@quiz1"
P2 = "block-v1:DemoX+AN101+2024_T1+type@problem+block@quiz2"


class Builder:
    def __init__(self):
        self.events: list[EnrichedEvent] = []

    def add(
        self, who: str | None, at: datetime, category: str, event_type: str, course: str | None = COURSE, **fields
    ) -> EnrichedEvent:
        uid, ip = LEARNERS[who] if who else (None, None)
        n = len(self.events)
        action, source = fields.pop("action", event_type), fields.pop("event_source", "server")
        # kind and interaction as the event model gives them (docs/taxonomy.md)
        taxon = describe(action, source)
        if taxon.kind != "other":
            category = taxon.category
        ev = EnrichedEvent(
            event_id=f"ev{n:04d}",
            time=at,
            category=category,
            action=action,
            kind=taxon.kind,
            interaction=taxon.interaction,
            event_type=event_type,
            event_source=source,
            course_id=course,
            org="DemoX" if course else None,
            course=course.split("+")[1] if course else None,
            run=course.split("+")[2] if course else None,
            user_id=uid,
            username=who,
            session=f"sess-{who}-{at:%d}" if who else None,
            ip=ip,
            agent="Mozilla/5.0",
            host="lms.example.org",
            page=fields.pop("page", f"https://lms.example.org/courses/{course}/courseware" if course else None),
            payload=orjson.dumps(fields.pop("payload", {"username": who})).decode(),
            source="tracking.log",
            offset=n * 100,
            **fields,
        )
        self.events.append(ev)
        return ev


def build() -> list[EnrichedEvent]:
    b = Builder()
    t = DAY1
    # enrolments: carol enrols and leaves; alice changes mode
    for who in ("alice_w", "bob_k", "carol_z"):
        b.add(
            who, t, "access", "edx.course.enrollment.activated", payload={"user_id": LEARNERS[who][0], "mode": "audit"}
        )
    b.add("alice_w", t + timedelta(minutes=1), "access", "edx.course.enrollment.mode_changed")
    b.add("carol_z", t + timedelta(hours=2), "access", "edx.course.enrollment.deactivated")
    # content views
    for who in ("alice_w", "bob_k", "carol_z"):
        b.add(who, t + timedelta(minutes=5), "content", "edx.ui.lms.sequence.tab_selected")
    b.add("alice_w", DAY2, "content", "edx.ui.lms.sequence.tab_selected")
    # video V1, alice: play 0 -> pause 30 (30 s); play 30 -> seek from 50 (20 s); play 100, never ended (0 s)
    v = dict(video_id=V1, event_source="browser")
    s = t + timedelta(minutes=10)
    b.add("alice_w", s, "video", "play_video", video_position=0.0, **v)
    b.add("alice_w", s + timedelta(seconds=31), "video", "pause_video", video_position=30.0, **v)
    b.add("alice_w", s + timedelta(seconds=40), "video", "play_video", video_position=30.0, **v)
    b.add("alice_w", s + timedelta(seconds=61), "video", "seek_video", video_old_time=50.0, video_new_time=100.0, **v)
    b.add("alice_w", s + timedelta(seconds=62), "video", "play_video", video_position=100.0, **v)
    # bob plays V1 and nothing more (0 s); carol claims 500 s in 10 s of wall time (capped at 20 s)
    b.add("bob_k", s, "video", "play_video", video_position=0.0, **v)
    b.add("carol_z", s, "video", "play_video", video_position=0.0, **v)
    b.add("carol_z", s + timedelta(seconds=10), "video", "pause_video", video_position=500.0, **v)
    # V2 on day 2, bob: 10 -> 25 (15 s)
    b.add("bob_k", DAY2, "video", "play_video", video_position=10.0, video_id=V2, event_source="browser")
    b.add(
        "bob_k",
        DAY2 + timedelta(seconds=16),
        "video",
        "pause_video",
        video_position=25.0,
        video_id=V2,
        event_source="browser",
    )
    # problems: P1 alice wrong then right, bob right first, carol wrong; P2 alice right
    p = t + timedelta(minutes=30)
    for who, dt, ok, attempt in [
        ("alice_w", 0, False, 1),
        ("alice_w", 60, True, 2),
        ("bob_k", 0, True, 1),
        ("carol_z", 0, False, 1),
    ]:
        b.add(
            who,
            p + timedelta(seconds=dt),
            "assessment",
            "problem_check",
            problem_id=P1,
            success=ok,
            attempts=attempt,
            grade=1.0 if ok else 0.0,
            max_grade=1.0,
            payload={"answers": {"x": "42"}},
        )
    b.add(
        "alice_w",
        DAY2,
        "assessment",
        "problem_check",
        problem_id=P2,
        success=True,
        attempts=1,
        grade=2.0,
        max_grade=2.0,
    )
    # forum: alice posts (free text naming herself), bob replies, carol comments, bob votes
    f = t + timedelta(hours=1)
    b.add(
        "alice_w",
        f,
        "forum",
        "edx.forum.thread.created",
        payload={"title": "alice_w needs help", "body": "Call alice_w from 198.51.100.23", "id": "t1"},
    )
    b.add(
        "bob_k",
        f + timedelta(minutes=1),
        "forum",
        "edx.forum.response.created",
        payload={"body": "hi alice_w", "id": "r1"},
    )
    b.add("carol_z", DAY2, "forum", "edx.forum.comment.created", payload={"body": "me too", "id": "c1"})
    b.add("bob_k", DAY2, "forum", "edx.forum.thread.voted", payload={"id": "t1", "vote_value": "up"})
    b.add("alice_w", DAY2, "forum", "edx.forum.searched", payload={"query": "alice_w homework"})
    # a profile page outside any course, and another course
    b.add("alice_w", t, "access", "/u/{username}", course=None, page="https://lms.example.org/u/alice_w")
    b.add("bob_k", t, "content", "edx.ui.lms.sequence.tab_selected", course=OTHER)
    return b.events


def blocks_api_response() -> dict:
    """A response of GET /api/courses/v2/blocks/?course_id=...&all_blocks=true&depth=all
    &requested_fields=graded,format,due,weight,student_view_data,children, in the shape
    edx-platform's Course Blocks API documents: "root" is the course's usage key and
    "blocks" maps every usage key to its fields (id, block_id, type, display_name,
    lms_web_url, student_view_url, graded, format, due, children, ...)."""
    base = "block-v1:DemoX+AN101+2024_T1+type@"

    def block(kind: str, key: str, name: str, children=(), **extra) -> tuple[str, dict]:
        usage = f"{base}{kind}+block@{key}"
        return usage, {
            "id": usage,
            "block_id": key,
            "type": kind,
            "display_name": name,
            "lms_web_url": f"https://lms.example.org/courses/course-v1:DemoX+AN101+2024_T1/jump_to/{usage}",
            "student_view_url": f"https://lms.example.org/xblock/{usage}",
            "graded": extra.pop("graded", False),
            "format": extra.pop("format", None),
            "due": extra.pop("due", None),
            "children": [f"{base}{k}+block@{c}" for k, c in children],
            **extra,
        }

    items = dict(
        [
            block("course", "course", "Analytics 101", [("chapter", "week1")]),
            block("chapter", "week1", "Week 1: Getting started", [("sequential", "lesson1"), ("sequential", "hw1")]),
            block("sequential", "lesson1", "Lesson 1", [("vertical", "u1")]),
            block("vertical", "u1", "Welcome", [("video", "intro_video"), ("video", "week2_video")]),
            block(
                "video",
                "intro_video",
                "Welcome to the course",
                student_view_data={
                    "only_on_web": False,
                    "duration": 95.0,
                    "transcripts": {},
                    "encoded_videos": {"youtube": {"url": "https://www.youtube.com/watch?v=abc", "file_size": 0}},
                },
            ),
            block(
                "video",
                "week2_video",
                "How the data flows",
                student_view_data={"only_on_web": False, "duration": None, "transcripts": {}, "encoded_videos": {}},
            ),
            block(
                "sequential",
                "hw1",
                "Homework 1",
                [("vertical", "u2")],
                graded=True,
                format="Homework",
                due="2024-03-05T23:59:00Z",
            ),
            block(
                "vertical",
                "u2",
                "Quiz",
                [("problem", "quiz1"), ("problem", "quiz2")],
                graded=True,
                format="Homework",
                due="2024-03-05T23:59:00Z",
            ),
            block(
                "problem",
                "quiz1",
                "Quiz 1: Averages",
                graded=True,
                format="Homework",
                due="2024-03-05T23:59:00Z",
                weight=1.0,
            ),
            block(
                "problem",
                "quiz2",
                "Quiz 2: Medians",
                graded=True,
                format="Homework",
                due="2024-03-05T23:59:00Z",
                weight=2.0,
            ),
        ]
    )
    return {"root": f"{base}course+block@course", "blocks": items}


def load_course(settings, pseudonymize: bool = True, structure: bool = True) -> list[EnrichedEvent]:
    """Create the schema (``db init``'s migrations) and insert the course like the sink
    does, and its structure like ``edxstream course import`` (unless ``structure`` is
    false); returns the events as inserted."""
    client = clickhouse.connect(settings)
    migrate.migrate_clickhouse(settings, client=client)
    if structure:
        course_import.store(client, course_import.read_blocks_api(blocks_api_response()))
    events = [privacy.for_analysts(e, settings) if pseudonymize else e for e in build()]
    client.insert("events", [rows.clickhouse_event_row(e) for e in events], column_names=list(ENRICHED_FIELDS))
    # a re-delivered event (same row again, in a later insert): views must not count it twice
    client.insert("events", [rows.clickhouse_event_row(events[5])], column_names=list(ENRICHED_FIELDS))
    return events


def q(client, sql: str) -> list[dict]:
    result = client.query(sql)
    return [dict(zip(result.column_names, r, strict=True)) for r in result.result_rows]


def test_views_answer_the_course_questions(settings):
    load_course(settings)
    client = clickhouse.connect(settings)
    assert client.command("SELECT count() FROM events") == 32  # 31 + the duplicate, before any merge

    daily = {
        (str(r["day"]), r["category"]): (r["events"], r["learners"])
        for r in q(client, f"SELECT * FROM course_daily_interactions WHERE course_id = '{COURSE}'")
    }
    assert daily[("2024-03-04", "content")] == (3, 3)  # the duplicate tab_selected counted once
    assert daily[("2024-03-04", "video")] == (8, 3)
    assert daily[("2024-03-05", "forum")] == (3, 3)
    assert sum(e for e, _ in daily.values()) == 29  # not the other course, not the profile page

    learners = {
        str(r["day"]): r["active_learners"]
        for r in q(client, f"SELECT * FROM course_daily_learners WHERE course_id = '{COURSE}'")
    }
    assert learners == {"2024-03-04": 3, "2024-03-05": 3}

    (enr,) = q(client, f"SELECT * FROM course_enrolments WHERE course_id = '{COURSE}'")
    assert (enr["enrolments"], enr["unenrolments"], enr["mode_changes"]) == (3, 1, 1)
    assert (enr["learners_enrolled_ever"], enr["enrolled_now"]) == (3, 2)
    assert (enr["org"], enr["course"], enr["run"]) == ("DemoX", "AN101", "2024_T1")

    videos = {r["video_id"]: r for r in q(client, "SELECT * FROM video_engagement")}
    v1 = videos[V1]
    assert (v1["plays"], v1["unique_viewers"], v1["pauses"], v1["seeks"]) == (5, 3, 2, 1)
    assert videos[V1]["seconds_watched"] == 70.0  # 30 + 20 (alice) + 20 (carol, capped)
    assert (videos[V2]["plays"], videos[V2]["seconds_watched"]) == (1, 15.0)

    problems = {r["problem_id"]: r for r in q(client, "SELECT * FROM problem_outcomes")}
    p1 = problems[P1]
    assert (p1["attempts"], p1["learners"], p1["first_try_successes"], p1["learners_solved"]) == (4, 3, 1, 2)
    assert abs(p1["first_try_success_rate"] - 1 / 3) < 1e-3
    assert (problems[P2]["first_try_success_rate"], problems[P2]["avg_best_score"]) == (1.0, 1.0)

    forum = {str(r["day"]): r for r in q(client, f"SELECT * FROM forum_activity WHERE course_id = '{COURSE}'")}
    day = forum["2024-03-04"]
    assert (day["threads"], day["responses"], day["posters"]) == (1, 1, 2)
    assert (forum["2024-03-05"]["comments"], forum["2024-03-05"]["votes"], forum["2024-03-05"]["searches"]) == (1, 1, 1)

    acts = {r["username"]: r for r in q(client, f"SELECT * FROM learner_activity WHERE course_id = '{COURSE}'")}
    alice = acts[privacy.pseudonym_username("alice_w", settings.pseudonym_key)]
    assert alice["user_id"] == privacy.pseudonym_user_id(11, settings.pseudonym_key)
    assert (alice["active_days"], alice["videos_watched"], alice["problems_attempted"], alice["problems_solved"]) == (
        2,
        1,
        2,
        2,
    )
    assert (alice["video_events"], alice["forum_events"], alice["assessment_events"], alice["access_events"]) == (
        5,
        2,
        3,
        0,
    )
    assert (alice["enrollment_events"], alice["interactions"]) == (2, 14)
    assert len(acts) == 3
