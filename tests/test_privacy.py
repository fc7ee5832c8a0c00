"""Pseudonymization as a pure function: no raw username or IP survives anywhere in the
encoded record, pseudonyms are stable per key, and what analysts need is kept."""

from __future__ import annotations

from datetime import datetime, timezone

import msgspec
import orjson
import pytest
from urllib.parse import quote

from edxstream.core import privacy
from edxstream.core.records import EnrichedEvent, encode
from edxstream.core.settings import Settings

KEY = "test-secret-key"
COURSE = "course-v1:TestX+PRV101+2024"


def forum_event(username: str = "ann_learner", ip: str = "203.0.113.77") -> EnrichedEvent:
    payload = {
        "body": "My phone is 555-0100, ask ann_learner",
        "title": "Help from Ann_Learner please",
        "id": "553024d156c02c8f55000001",
        "category_name": "Week 1",
        "user_forums_roles": ["Student"],
        "url": f"http://{ip}:8000/courses/{COURSE}/discussion/forum",
        "target_username": "bob.peer",
        "user_id": 42,
    }
    return EnrichedEvent(
        event_id="e-forum-1",
        time=datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc),
        category="forum",
        action="edx.forum.thread.created",
        event_type="edx.forum.thread.created",
        event_source="server",
        course_id=COURSE,
        user_id=42,
        username=username,
        session="e427260a0c3072212863465416c869f9",
        ip=ip,
        agent="Mozilla/5.0",
        host="lms.example.org",
        page=f"https://lms.example.org/u/{username}?from={ip}",
        referer=f"https://lms.example.org/u/{username.upper()}",
        payload=orjson.dumps(payload).decode(),
    )


def video_event(username: str = "zoë+x@y", ip: str = "2001:db8:85a3::8a2e:370:7334") -> EnrichedEvent:
    inner = orjson.dumps({"id": "vid1", "currentTime": 12.5, "username": username, "ip": ip}).decode()
    return EnrichedEvent(
        event_id="e-video-1",
        time=datetime(2024, 3, 1, 12, 5, tzinfo=timezone.utc),
        category="video",
        action="play_video",
        event_type="play_video",
        event_source="browser",
        course_id=COURSE,
        user_id=7,
        username=username,
        ip=ip,
        page=f"https://lms.example.org/courses/{COURSE}/courseware?user={username}",
        video_id="vid1",
        video_position=12.5,
        payload=orjson.dumps({"event": inner, "note": f"seen from {ip} by {username}"}).decode(),
    )


def raw_leaks(event: EnrichedEvent, needles: list[str]) -> list[str]:
    # Neither msgspec nor orjson escapes non-ASCII or "/", so a raw value shows as itself.
    blob = encode(event).decode().lower()
    found = []
    for needle in needles:
        for form in {needle, quote(needle, safe=""), quote(needle)}:
            if form.lower() in blob:
                found.append(form)
    return found


@pytest.mark.parametrize("ip_mode", ["drop", "truncate"])
def test_forum_event_has_no_raw_identity_left(ip_mode):
    raw = forum_event()
    out = privacy.pseudonymize(raw, KEY, ip_mode)
    assert raw_leaks(out, ["ann_learner", "203.0.113.77", "bob.peer", raw.session]) == []
    payload = orjson.loads(out.payload)
    assert "body" not in payload and "title" not in payload  # forum free text dropped
    assert payload["category_name"] == "Week 1" and payload["id"] == "553024d156c02c8f55000001"
    assert payload["user_id"] == out.user_id  # same pseudonym inside the payload as in the column
    assert payload["target_username"] == privacy.pseudonym_username("bob.peer", KEY)
    assert out.page == f"https://lms.example.org/u/{out.username}?from={out.ip or '[ip]'}"
    assert out.ip == (None if ip_mode == "drop" else "203.0.113.0")


def test_ipv6_and_encoded_username_are_scrubbed_including_nested_json():
    raw = video_event()
    out = privacy.pseudonymize(raw, KEY, "truncate")
    assert out.ip == "2001:db8:85a3::"
    assert raw_leaks(out, ["zoë+x@y", "2001:db8:85a3::8a2e:370:7334", "8a2e:370:7334"]) == []
    inner = orjson.loads(orjson.loads(out.payload)["event"])
    assert inner["currentTime"] == 12.5 and inner["username"] == out.username
    assert out.video_id == "vid1" and out.video_position == 12.5


def test_ascii_username_found_in_any_case_and_any_percent_encoding():
    # the quick "is the name in there at all" test must not let these through
    raw = forum_event(username="Ann+X@y")
    raw = msgspec.structs.replace(
        raw, page="https://lms.example.org/u/ann%2bx%40Y/", referer="https://lms.example.org/search?q=ANN%2BX%40Y&n=2"
    )
    out = privacy.pseudonymize(raw, KEY)
    assert out.page == f"https://lms.example.org/u/{out.username}/"
    assert out.referer == f"https://lms.example.org/search?q={out.username}&n=2"


def test_payload_without_identities_is_kept_as_is_and_nested_ones_are_still_found():
    base = forum_event(username="ann")
    base = msgspec.structs.replace(base, event_type="play_video", category="video", ip="10.1.2.3")
    plain = '{"id": "block-v1:Org+C+2024+type@video+block@v1",  "currentTime": 12.5, "code": "html5"}'
    assert privacy.pseudonymize(msgspec.structs.replace(base, payload=plain), KEY).payload == plain
    inner = orjson.dumps({"target": {"UserName": "bob"}}).decode()
    twice = orjson.dumps({"event": orjson.dumps({"blob": inner}).decode()}).decode()  # JSON in JSON in JSON
    out = privacy.pseudonymize(msgspec.structs.replace(base, payload=twice), KEY)
    assert "bob" not in out.payload and privacy.pseudonym_username("bob", KEY) in out.payload
    for leak in ('{"note": "ANN was here"}', '{"seen_from": "10.1.2.3"}'):
        out = privacy.pseudonymize(msgspec.structs.replace(base, payload=leak), KEY)
        assert "ANN" not in out.payload and "10.1.2.3" not in out.payload, out.payload


def test_pseudonyms_are_stable_keyed_and_join_friendly():
    a = privacy.pseudonymize(forum_event(), KEY)
    b = privacy.pseudonymize(forum_event(username="ANN_LEARNER"), KEY)
    other_key = privacy.pseudonymize(forum_event(), "another-key")
    assert a.user_id == b.user_id and a.username == b.username  # same learner, same pseudonym
    assert a.username != other_key.username and a.user_id != other_key.user_id
    assert a.username.startswith("u_") and len(a.username) == 18
    assert 0 <= a.user_id < 2**63 and a.user_id != 42
    assert a.session.startswith("s_") and a.session == b.session
    # Everything analysts aggregate on is untouched.
    for field in ("event_id", "time", "category", "action", "event_type", "course_id", "agent", "host"):
        assert getattr(a, field) == getattr(forum_event(), field)


def test_short_username_does_not_eat_other_words():
    raw = forum_event(username="ann")
    raw = privacy.msgspec.structs.replace(raw, page="https://lms.example.org/annual/u/ann/")
    out = privacy.pseudonymize(raw, KEY)
    assert out.page == f"https://lms.example.org/annual/u/{out.username}/"


def test_non_json_forum_payload_is_dropped_and_anonymous_events_pass():
    raw = privacy.msgspec.structs.replace(forum_event(), payload="free text by ann_learner")
    assert privacy.pseudonymize(raw, KEY).payload == ""
    anon = EnrichedEvent(
        event_id="e3",
        time=datetime(2024, 1, 1, tzinfo=timezone.utc),
        category="other",
        action="x",
        event_type="x",
        payload='{"a": 1}',
    )
    out = privacy.pseudonymize(anon, KEY)
    assert out.user_id is None and out.username is None and orjson.loads(out.payload) == {"a": 1}


def test_for_analysts_follows_the_setting(tmp_path):
    raw = forum_event()
    on = Settings(home=tmp_path, pseudonymize=True, pseudonym_key=KEY)
    off = Settings(home=tmp_path, pseudonymize=False)
    assert privacy.for_analysts(raw, on) == privacy.pseudonymize(raw, KEY)
    assert privacy.for_analysts(raw, off) is raw
    truncating = Settings(home=tmp_path, pseudonym_key=KEY, pseudonym_ip="truncate")
    assert privacy.for_analysts(raw, truncating).ip == "203.0.113.0"
    with pytest.raises(privacy.UserError):
        privacy.for_analysts(raw, Settings(home=tmp_path, pseudonym_ip="keep"))


def test_mask_ip():
    assert privacy.mask_ip("10.1.2.3", "truncate") == "10.1.2.0"
    assert privacy.mask_ip("10.1.2.3") is None
    assert privacy.mask_ip("not-an-ip", "truncate") is None
    assert privacy.mask_ip(None, "truncate") is None


def _line(**doc) -> bytes:
    base = {
        "username": "bob",
        "event_source": "server",
        "time": "2017-09-20T10:00:00+00:00",
        "context": {"user_id": 7, "course_id": COURSE},
        "event": "{}",
    }
    return orjson.dumps({**base, **doc})


def test_identities_in_urls_forms_and_text_are_scrubbed_in_every_field():
    """The shapes that leaked on a real log: profile and account URLs in event_type,
    action, page and referer; query-string identities; e-mail addresses in login and
    registration forms (logged before login, so not the event's own username) and in
    free text."""
    from edxstream.core.model import parse_line

    lines = [
        _line(event_type="/u/bob", referer="https://lms.example.org/u/bob"),
        _line(event_type="/api/user/v1/accounts/bob", page="https://lms.example.org/api/user/v1/preferences/bob/"),
        _line(event_type="/courses/x/discussion/forum/users/4242?username=carol_x&user_id=4242"),
        _line(
            username="",
            event_type="/user_api/v1/account/login_session/",
            event={"POST": {"email": ["carol@example.org"], "password": "secret-pw", "remember": ["false"]}},
        ),
        _line(
            username="",
            event_type="/create_account",
            event={
                "POST": {
                    "username": ["dave_q"],
                    "name": ["Dave Quincy"],
                    "email": ["dave@example.com"],
                    "password": "********",
                    "goals": ["get a job"],
                },
                "GET": {},
            },
        ),
        _line(
            event_type="problem_check",
            event_source="browser",
            event="input_abc=write%20to%20erin%40example.net&input_def=2",
            page="https://lms.example.org/courses/x/?next=%2Fu%2Fbob&email=bob%40example.org",
        ),
        _line(
            event_type="edx.forum.comment.created",
            event=orjson.dumps({"body": "mail me at frank@example.org", "id": "c1"}).decode(),
        ),
        _line(event_type="edx.bi.user.frank@example.org.signed_in"),
    ]
    secrets = [
        "bob",
        "carol_x",
        "4242",
        "carol@example.org",
        "secret-pw",
        "dave_q",
        "Dave Quincy",
        "dave@example.com",
        "get a job",
        "erin%40example.net",
        "erin@example.net",
        "bob%40example.org",
        "frank@example.org",
    ]
    for line in lines:
        event = parse_line(line)
        out = privacy.pseudonymize(event, KEY)
        blob = encode(out).decode()
        for secret in secrets:
            assert secret not in blob, (secret, blob)
        # what analysts need stays: the route, a pseudonym where a learner was named
        assert out.action == event.action  # the model already left the learner out of the action
    profile = privacy.pseudonymize(parse_line(lines[0]), KEY)
    assert profile.event_type == f"/u/{privacy.pseudonym_username('bob', KEY)}" and profile.action == "/u/{username}"
    assert profile.referer == f"https://lms.example.org/u/{privacy.pseudonym_username('bob', KEY)}"
    forum_users = privacy.pseudonymize(parse_line(lines[2]), KEY)
    assert str(privacy.pseudonym_user_id(4242, KEY)) in forum_users.event_type
    login = privacy.pseudonymize(parse_line(lines[3]), KEY)
    assert orjson.loads(login.payload) == {"POST": {"remember": ["false"]}}
    signup = orjson.loads(privacy.pseudonymize(parse_line(lines[4]), KEY).payload)
    assert signup["POST"] == {"username": [privacy.pseudonym_username("dave_q", KEY)]}


def test_model_actions_name_no_learner():
    """The action is what the stream app's windows count and what the sink stores: the
    model derives it without the learner, so both hold the same identity-free value."""
    from edxstream.core.model import parse_line

    assert parse_line(_line(event_type="/u/bob")).action == "/u/{username}"
    assert (
        parse_line(_line(event_type="/api/user/v1/accounts/bob/image")).action
        == "/api/user/v1/accounts/{username}/image"
    )
    assert (
        parse_line(_line(event_type="/api/profile_images/v1/bob/upload")).action
        == "/api/profile_images/v1/{username}/upload"
    )
    assert parse_line(_line(event_type="/password_reset/erin@example.net/")).action == "/password_reset/{email}/"
    assert (
        parse_line(_line(event_type="/user_api/v1/preferences/email_opt_in/")).action
        == "/user_api/v1/preferences/email_opt_in/"
    )


def test_emails_are_found_and_usage_keys_are_not_emails():
    assert privacy.scrub_emails("mail a.b+c@sub.example.co.uk, or x%40y.org.") == "mail [email], or [email]."
    key = "block-v1:edX+DemoX+Demo_Course+type@problem+block@0b9e39477cf34507a7a48f74be381fdd"
    assert privacy.scrub_emails(key) == key
