"""Planted identities through the real pipeline (backfill, stream app, both sinks): no
String column of any analyst table holds a username, a user id in a URL or an e-mail
address afterwards, the corpus keeps its counts; then `edxstream forget` leaves no row of
a learner, keeps their later events out, and is safe to run twice."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone


import orjson
import pymysql
import pytest

from edxstream.core import clickhouse, privacy
from edxstream.core.model import parse_line
from edxstream.core.records import DeadLetter
from edxstream.ops.forget import forget
from tests.conftest import REPO
from tests.test_replay_e2e import process, run_cli, sinks

CORPUS = REPO.parent / "shared" / "corpus"
COURSE = "course-v1:PlantX+P101+2026_T1"
# distinctive, so a hit in any column is a leak and not a coincidence
NAMES = ["plantann7731", "plant.bob.5520", "PlantCarol_88"]
EMAILS = ["ann.planted7731@example.org", "bob+5520@mail.example.net"]
NEEDLES = [
    *NAMES,
    *EMAILS,
    "learner_h",
    "learner_i",
    "someone@example.org",
    "learner.l@example.org",
    "ann.planted7731%40example.org",
]


def planted_lines(minute0: int = 0, names=NAMES) -> list[bytes]:
    out = []
    for i, name in enumerate(names):
        uid = 700000 + i
        t = f"2026-10-31T17:{minute0 + i:02d}:00+00:00"
        ctx = {"course_id": COURSE, "user_id": uid, "path": f"/u/{name}"}
        out += [
            {
                "username": name,
                "event_type": f"/u/{name}",
                "event_source": "server",
                "time": t,
                "context": ctx,
                "event": "{}",
                "referer": f"https://lms.example.org/api/user/v1/accounts/{name}?username={name}",
            },
            {
                "username": name,
                "event_type": f"/api/user/v1/preferences/{name}/",
                "event_source": "server",
                "time": t,
                "context": ctx,
                "event": {"GET": {}, "POST": {"email": [EMAILS[i % 2]]}},
            },
            {
                "username": "",
                "event_type": "/create_account",
                "event_source": "server",
                "time": t,
                "context": {"course_id": COURSE, "user_id": ""},
                "event": {
                    "POST": {
                        "username": [name],
                        "name": ["Planted Person"],
                        "email": [EMAILS[i % 2]],
                        "password": "********",
                    },
                    "GET": {},
                },
            },
            {
                "username": name,
                "event_type": "edx.forum.thread.created",
                "event_source": "server",
                "time": t,
                "context": ctx,
                "page": f"https://lms.example.org/courses/{COURSE}/discussion/forum?next=%2Fu%2F{name}",
                "event": {"body": f"write to {EMAILS[i % 2]}", "title": f"from {name}", "id": f"t{i}"},
            },
            {
                "username": name,
                "event_type": "play_video",
                "event_source": "browser",
                "time": t,
                "context": ctx,
                "page": f"https://lms.example.org/courses/{COURSE}/courseware/?email=ann.planted7731%40example.org",
                "event": orjson.dumps({"id": "v1", "currentTime": 3, "note": f"{name} was here"}).decode(),
            },
        ]
    return [orjson.dumps(d) for d in out]


def analyst_leaks(client) -> list[tuple[str, str, str]]:
    tables = [r[0] for r in client.query("SHOW TABLES").result_rows]
    found = []
    for table in tables:
        cols = [
            r[0]
            for r in client.query(f"DESCRIBE TABLE `{table}`").result_rows
            if "String" in r[1] or "LowCardinality" in r[1]
        ]
        for col in cols:
            text = f"ifNull(toString(`{col}`), '')"
            for needle in NEEDLES:
                n = client.command(
                    f"SELECT count() FROM `{table}` WHERE positionCaseInsensitive({text}, %(n)s) > 0",
                    parameters={"n": needle},
                )
                if int(n):
                    found.append((table, col, needle))
            n = client.command(
                f"SELECT count() FROM `{table}` WHERE match({text}, "
                r"'[A-Za-z0-9._%+-]+(@|%40)[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*\\.[A-Za-z]{2,}')"
            )
            if int(n):
                found.append((table, col, "an e-mail address"))
    return found


def mysql_count(settings, sql: str, args=()) -> int:
    conn = pymysql.connect(**settings.mysql)
    with conn, conn.cursor() as cur:
        cur.execute(sql, args)
        return int(cur.fetchone()[0])


@pytest.mark.slow
def test_planted_identities_leave_no_trace_and_forget_removes_a_learner(settings, tmp_path):
    lines = (
        (CORPUS / "public-tracking.log").read_bytes().splitlines()
        + (CORPUS / "hostile.log").read_bytes().splitlines()
        + planted_lines()
    )
    log = tmp_path / "tracking.log"
    log.write_bytes(b"\n".join(lines) + b"\n")
    # as the stream app parses them: a time further ahead than the clock skew is a dead
    # letter, and every line is a row of its own (identical lines too)
    latest = datetime.now(timezone.utc) + timedelta(seconds=settings.max_clock_skew_seconds)
    parsed = [parse_line(line, latest=latest) for line in lines]
    want_events = sum(1 for e in parsed if e.__class__ is not DeadLetter)

    run_cli(settings, "db", "init")
    run_cli(settings, "backfill", str(log))
    process(settings)
    sinks(settings)

    client = clickhouse.connect(settings)
    # the corpus keeps its counts: every event in both stores, every window counted
    assert int(client.command("SELECT count() FROM events FINAL")) == want_events
    assert mysql_count(settings, "SELECT COUNT(*) FROM events") == want_events
    # hostile.log's grade of 1e400: null in both stores, with a note, the value in the payload
    noted = "grade: not a usable number"
    assert (
        mysql_count(
            settings,
            "SELECT COUNT(*) FROM events WHERE notes = %s AND grade IS NULL AND payload LIKE '%%1e400%%'",
            (noted,),
        )
        == 1
    )
    assert int(client.command(f"SELECT count() FROM events FINAL WHERE notes = '{noted}' AND grade IS NULL")) == 1
    assert int(client.command("SELECT count() FROM events FINAL WHERE notes != ''")) == 1
    assert int(client.command("SELECT sum(count) FROM window_counts_final WHERE kind = 'course_category'")) > 0
    assert analyst_leaks(client) == []
    # the scan is not vacuous: MySQL (the operational store) holds the names as logged
    assert mysql_count(settings, "SELECT COUNT(*) FROM events WHERE username = %s", (NAMES[0],)) == 4
    # the action names no one, and it is the value the windows count (the model makes it)
    assert (
        int(client.command("SELECT count() FROM events FINAL WHERE action = '/u/{username}'")) == len(NAMES) + 1
    )  # and hostile.log's profile line
    assert int(
        client.command("SELECT count() FROM events FINAL WHERE action = '/api/user/v1/preferences/{username}/'")
    ) == len(NAMES)

    # -- forget ----------------------------------------------------------------------------
    uid = 700000
    key = settings.pseudonym_key
    done = forget(settings, NAMES[0])
    assert done["mysql_events"] == 4 and done["clickhouse_events"] == 4
    assert str(privacy.pseudonym_user_id(uid, key)) in done["keys"]  # found through MySQL's events
    assert (
        mysql_count(settings, "SELECT COUNT(*) FROM events WHERE user_id = %s OR username = %s", (uid, NAMES[0])) == 0
    )
    mine = (
        f"user_id = {privacy.pseudonym_user_id(uid, key)} OR username = '{privacy.pseudonym_username(NAMES[0], key)}'"
    )
    assert int(client.command(f"SELECT count() FROM events WHERE {mine}")) == 0
    assert (
        int(
            client.command(
                f"SELECT count() FROM events FINAL WHERE username = '{privacy.pseudonym_username(NAMES[1], key)}'"
            )
        )
        == 4
    )  # others stay
    again = forget(settings, str(uid))  # by id this time: nothing left to remove
    assert again["mysql_events"] == 0 and again["clickhouse_events"] == 0
    audit = (settings.data_dir / "audit" / "forget.log").read_text().splitlines()
    assert (
        len(audit) == 2
        and NAMES[0] not in "".join(audit)
        and str(uid) not in "".join(audit).replace(str(privacy.pseudonym_user_id(uid, key)), "")
    )

    # the learner comes back in the log (a late line, a replay): the sinks keep it out
    later = tmp_path / "later.log"
    later.write_bytes(b"\n".join(planted_lines(minute0=30, names=NAMES[:2])) + b"\n")
    run_cli(settings, "backfill", str(later))
    process(settings)
    sinks(settings)
    assert (
        mysql_count(settings, "SELECT COUNT(*) FROM events WHERE user_id = %s OR username = %s", (uid, NAMES[0])) == 0
    )
    assert int(client.command(f"SELECT count() FROM events WHERE {mine}")) == 0
    assert mysql_count(settings, "SELECT COUNT(*) FROM events WHERE username = %s", (NAMES[1],)) == 8
