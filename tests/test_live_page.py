"""The live monitoring page, end to end: tracking lines go through the real broker and a
real `edxstream process` worker; the page the worker serves is loaded in headless
Chromium, and both the DOM after its JavaScript ran and a screenshot of it must show
the counts this test computed from its own lines.

The pure helpers of stream_app.live_page are checked on their own first.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import pytest
from confluent_kafka import Producer
from PIL import Image

from edxstream.core import kafka_admin
from edxstream.core.model import parse_line
from stream_app import live_page
from stream_app import windows as win
from tests.conftest import edxstream_cmd, env_for

UTC = timezone.utc
BASE = datetime(2025, 5, 6, 10, 0, tzinfo=UTC)
COURSE_A = "course-v1:LiveOrg+Dash101+2025"
COURSE_B = "course-v1:LiveOrg+Other202+2025"
# category -> (event_type, event_source) that the event model puts in that category
EVENT_TYPES = {
    "video": ("play_video", "browser"),
    "assessment": ("problem_check", "server"),
    "forum": ("edx.forum.thread.created", "server"),
    "content": ("seq_goto", "browser"),
    # not learner interactions: counted as events, shown apart from the categories
    "echo": ("problem_check", "browser"),
    "plumbing": ("load_video", "browser"),
}
KINDS = ("echo", "plumbing")
# course -> minute after BASE -> category -> events; minute 4 of A is its current minute
PLAN = {
    COURSE_A: {
        0: {"video": 3, "content": 1},
        1: {"video": 2, "assessment": 2},
        2: {"forum": 1, "content": 2},
        3: {"video": 4},
        4: {"video": 9, "assessment": 5, "content": 3, "forum": 2, "echo": 5, "plumbing": 2},
    },
    COURSE_B: {2: {"video": 1}, 3: {"content": 6}},
}
LEARNERS_PER_MINUTE = {0: 2, 1: 3, 2: 3, 3: 1, 4: 7}  # learners 1..n of the minute take turns
# the page's bar colours per category (stream_app/live.html, COLORS)
BAR_RGB = {
    "video": (0x2F, 0x6F, 0xD6),
    "assessment": (0xE8, 0x59, 0x0C),
    "forum": (0x70, 0x48, 0xE8),
    "content": (0x2B, 0x8A, 0x3E),
}


def make_lines() -> list[tuple[bytes, bytes, dict]]:
    """(raw line, key, what it is) for every planned event, in file order."""
    out = []
    for course, minutes in PLAN.items():
        for minute, cats in minutes.items():
            i = 0
            for cat, n in cats.items():
                for _ in range(n):
                    # minute m's learners start at 2m + 1: some come back the next minute, some do not
                    learner = 1 + 2 * minute + i % LEARNERS_PER_MINUTE[minute] + (100 if course == COURSE_B else 0)
                    t = BASE + timedelta(minutes=minute, seconds=(i * 7) % 60, milliseconds=i)
                    name, source = EVENT_TYPES[cat]
                    doc = {
                        "username": f"learner{learner}",
                        "event_type": name,
                        "event_source": source,
                        "time": t.isoformat(),
                        "host": "lms.example.org",
                        "ip": "10.0.0.9",
                        "agent": "test",
                        "page": None,
                        "event": "{}",
                        "context": {
                            "course_id": course,
                            "user_id": 5000 + learner,
                            "org_id": "LiveOrg",
                            "path": "/event",
                        },
                    }
                    out.append(
                        (
                            json.dumps(doc).encode(),
                            f"learner{learner}".encode(),
                            {"course": course, "minute": minute, "category": cat, "learner": 5000 + learner},
                        )
                    )
                    i += 1
    return out


def expected(lines, course: str) -> dict:
    """The course's latest minute and its hour: events per category, distinct learners."""
    mine = [w for _, _, w in lines if w["course"] == course]
    last = max(w["minute"] for w in mine)
    out = {}
    for size, sel in (("60", [w for w in mine if w["minute"] == last]), ("3600", mine)):
        counted = Counter(w["category"] for w in sel)
        out[size] = {
            "categories": {c: n for c, n in counted.items() if c not in KINDS},
            "kinds": {c: n for c, n in counted.items() if c in KINDS},
            "interactions": sum(n for c, n in counted.items() if c not in KINDS),
            "active_learners": len({w["learner"] for w in sel}),
            "events": len(sel),
        }
    per_minute: dict[int, list] = defaultdict(list)
    for w in mine:
        per_minute[w["minute"]].append(w)
    out["series"] = [(m, len(ws), len({w["learner"] for w in ws})) for m, ws in sorted(per_minute.items())]
    return out


def chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        pytest.fail(
            "headless Chromium is needed to check the live page and is not installed: "
            "run `apt-get install -y chromium` (Debian), or `./dev install`"
        )
    return path


def browse(url: str, tmp: Path, *, screenshot: Path | None = None) -> str:
    """Load the page in headless Chromium, let its JavaScript run for 5 s of virtual
    time, and return the DOM (or write the screenshot)."""
    args = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--hide-scrollbars",
        f"--user-data-dir={tmp / 'chromium-profile'}",
        "--virtual-time-budget=5000",
        "--window-size=1200,900",
    ]
    args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
    proc = subprocess.run([*args, url], capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    if screenshot:
        assert screenshot.exists(), proc.stderr.decode(errors="replace")[-3000:]
    return proc.stdout.decode()


def by_id(dom: str, element_id: str) -> str:
    m = re.search(rf'id="{re.escape(element_id)}"[^>]*>([^<]*)<', dom)
    assert m, f"no element #{element_id} in the rendered page: {dom[:3000]}"
    return m.group(1)


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def longest_run(img: Image.Image, rgb: tuple, x0: int, x1: int) -> int:
    """The longest horizontal run of exactly this colour between x0 and x1: a bar's width."""
    px = img.load()
    best = 0
    for y in range(img.height):
        run = 0
        for x in range(x0, x1):
            if px[x, y][:3] == rgb:
                run += 1
                best = max(best, run)
            else:
                run = 0
    return best


# -- pure helpers --------------------------------------------------------------------


def _key(q, course, size, start):
    return win.SEP.join([str(q), course, str(size), str(start)])


def test_courses_and_series_from_table_keys():
    t0 = int(BASE.timestamp())
    cells = {
        _key(0, COURSE_A, 60, t0): win.Cell(
            categories={"video": 3, "forum": 1}, actions={"play_video": 3}, learners={"1", "2"}
        ),
        _key(0, COURSE_A, 60, t0 + 120): win.Cell(categories={"video": 5}, learners={"1", "2", "3", "4"}),
        _key(0, COURSE_A, 3600, t0): win.Cell(categories={"video": 8}, learners={"1", "2", "3", "4", "5"}),
        _key(1, COURSE_B, 60, t0 + 600): win.Cell(categories={"video": 1}, learners={"9"}),
        _key(1, "", 60, t0 + 900): win.Cell(categories={"access": 9}),  # events without a course
        "\x00sync": None,
    }
    courses = live_page.known_courses(cells, 60)
    assert [(c.course_id, c.latest_window) for c in courses] == [
        (COURSE_B, "2025-05-06T10:10:00Z"),
        (COURSE_A, "2025-05-06T10:02:00Z"),
    ]
    series = live_page.recent_series(cells, cells.get, COURSE_A, 60)
    # evenly spaced in time: the minute without events is there with zeros
    assert [(p.window_start, p.events, p.active_learners) for p in series] == [
        ("2025-05-06T10:00:00Z", 4, 2),
        ("2025-05-06T10:01:00Z", 0, 0),
        ("2025-05-06T10:02:00Z", 5, 4),
    ]
    assert [p.window_start for p in live_page.recent_series(cells, cells.get, COURSE_A, 60, limit=2)] == [
        "2025-05-06T10:01:00Z",
        "2025-05-06T10:02:00Z",
    ]
    assert live_page.recent_series(cells, cells.get, "course-v1:None+Such+Course", 60) == []


def test_page_is_self_contained_and_escapes_the_course():
    page = live_page.render_page('course-v1:X+"><script>alert(1)</script>')
    assert '"><script>alert' not in page
    assert 'content="course-v1:X+&quot;&gt;&lt;script&gt;' in page
    html = resources.files("stream_app").joinpath("static").joinpath(live_page.PAGE_FILE).read_text("utf-8")
    # nothing loaded from elsewhere: the machine running the page may have no internet
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "<link" not in html


# -- the page of a real worker, in a real browser ---------------------------------------


def test_live_page_shows_the_counts_of_a_running_worker(settings, tmp_path):
    lines = make_lines()
    for raw, _, what in lines:  # the fixture is what the event model says it is
        rec = parse_line(raw)
        counted = rec.category if rec.kind == "learner" else rec.kind
        assert (rec.course_id, counted) == (what["course"], what["category"]), rec
    kafka_admin.ensure_topics(settings)
    p = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5})
    offset = 0
    for raw, key, _ in lines:
        p.produce(
            settings.raw_topic,
            key=key,
            value=raw,
            headers=[
                ("source", b"/edx/var/log/tracking/tracking.log"),
                ("offset", str(offset).encode()),
                ("fp", b"live-page-test"),
            ],
        )
        offset += len(raw) + 1
    assert p.flush(30) == 0
    want_a, want_b = expected(lines, COURSE_A), expected(lines, COURSE_B)

    port = settings.web_port
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            edxstream_cmd(
                "process", "--web-port", str(port), "--log-every", "1", "--metrics-file", str(tmp_path / "m.json")
            ),
            env=env_for(settings),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # the worker's JSON view has every count before the browser looks
        deadline = time.monotonic() + 90
        body = body_b = {}
        while time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()[-3000:]
            try:
                body = get_json(f"{base}/counts/{quote(COURSE_A, safe='')}/")
                body_b = get_json(f"{base}/counts/{quote(COURSE_B, safe='')}/")
            except (urllib.error.URLError, ConnectionError, TimeoutError):  # not listening yet
                body = body_b = {}
            if (
                body.get("windows", {}).get("3600", {}).get("events") == want_a["3600"]["events"]
                and body.get("windows", {}).get("60", {}).get("events") == want_a["60"]["events"]
                and body_b.get("windows", {}).get("3600", {}).get("events") == want_b["3600"]["events"]
            ):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"the counts view never showed the events: {body}; log: {log.read_text()[-3000:]}")
        for size in ("60", "3600"):  # learner interactions per category; the other kinds apart
            w = body["windows"][size]
            assert (w["categories"], w["kinds"], w["interactions"]) == (
                want_a[size]["categories"],
                want_a[size]["kinds"],
                want_a[size]["interactions"],
            )

        # the worker's own guard: a foreign Host (DNS rebinding) is refused, and Faust's
        # table views, which served raw window cells (learner ids), are not served
        for url, headers, status in [
            (f"{base}/counts/{quote(COURSE_A, safe='')}/", {"Host": "rebind.example.com"}, 421),
            (f"{base}/table/counts/", {}, 404),
        ]:
            try:
                urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10)
                raise AssertionError(f"{url} answered")
            except urllib.error.HTTPError as exc:
                assert exc.code == status, (url, exc.code)

        # the JSON views of the page
        try:
            courses = get_json(f"{base}/live/api/courses/")
        except urllib.error.HTTPError as exc:
            raise AssertionError(
                "the worker does not serve the live page's views: stream_app.factory.create_app "
                "must call stream_app.live_page.register_live_page(app, settings)"
            ) from exc
        assert [c["course_id"] for c in courses["courses"]] == [COURSE_A, COURSE_B]  # most recent first
        series = get_json(f"{base}/live/api/series/?course={quote(COURSE_A, safe='')}")["series"]
        assert [(p["events"], p["active_learners"]) for p in series] == [(e, n) for _, e, n in want_a["series"]]

        # the course page, after its JavaScript ran: the numbers are in the DOM
        dom = browse(f"{base}/live/?course={quote(COURSE_A, safe='')}", tmp_path)
        assert re.fullmatch(r"updated \d\d:\d\d:\d\d UTC \S every 2.5 s", by_id(dom, "status")), by_id(dom, "status")
        assert by_id(dom, "course-title") == COURSE_A
        for size in ("60", "3600"):
            assert int(by_id(dom, f"events-{size}")) == want_a[size]["events"]
            assert int(by_id(dom, f"learners-{size}")) == want_a[size]["active_learners"]
            assert int(by_id(dom, f"interactions-{size}")) == want_a[size]["interactions"]
            for cat, n in want_a[size]["categories"].items():
                assert int(by_id(dom, f"cat-{size}-{cat}")) == n, (size, cat)
            for kind in KINDS:  # no bar for what is not a learner interaction
                assert f'id="cat-{size}-{kind}"' not in dom
        assert re.search(r'id="series"[^>]*data-windows="5"|data-windows="5"[^>]*id="series"', dom)
        for minute, events, _ in want_a["series"]:
            start = (BASE + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
            assert re.search(rf'data-start="{start}" data-events="{events}"', dom), (minute, events)
        # the course list holds both courses, the page's own selected
        assert re.search(rf'<option value="{re.escape(COURSE_A)}" selected[^>]*>', dom), dom[:3000]
        assert f'<option value="{COURSE_B}">' in dom

        # the per-course address answers with a page for that course
        with urllib.request.urlopen(f"{base}/live/{quote(COURSE_A, safe=':+')}/", timeout=10) as r:
            assert r.status == 200 and r.headers.get_content_type() == "text/html"
            assert COURSE_A in r.read().decode()

        # choosing a course: /live/ opens the most recent one, ?course= any other
        dom = browse(f"{base}/live/", tmp_path)
        assert by_id(dom, "course-title") == COURSE_A
        dom = browse(f"{base}/live/?course={quote(COURSE_B, safe='')}", tmp_path)
        assert by_id(dom, "course-title") == COURSE_B
        assert int(by_id(dom, "events-60")) == want_b["60"]["events"]
        assert int(by_id(dom, "events-3600")) == want_b["3600"]["events"]
        assert int(by_id(dom, "learners-3600")) == want_b["3600"]["active_learners"]

        # the picture: the bars are drawn, in each category's colour, as wide as their counts
        png = tmp_path / "live.png"
        browse(f"{base}/live/?course={quote(COURSE_A, safe='')}", tmp_path, screenshot=png)
        img = Image.open(png).convert("RGB")
        assert img.size == (1200, 900)
        colours = sorted(img.getcolors(maxcolors=1 << 20), reverse=True)
        assert len(colours) > 50, f"{len(colours)} colours: the page looks empty"
        # what is drawn below the header: every pixel but the two backgrounds (cards, page)
        drawn = sum(n for n, _ in sorted(img.crop((0, 80, 1200, 900)).getcolors(maxcolors=1 << 20), reverse=True)[2:])
        assert drawn > 30_000, f"only {drawn} drawn pixels: {png}"
        # left card: the current minute; right card: the current hour
        for (x0, x1), size in (((20, 600), "60"), ((600, 1180), "3600")):
            cats = want_a[size]["categories"]
            widths = {cat: longest_run(img, BAR_RGB[cat], x0, x1) for cat in cats}
            assert all(w > 0 for w in widths.values()), (size, widths)
            top = max(cats.values())
            for cat, n in cats.items():  # each bar is as long as its count says, within 8 px
                assert abs(widths[cat] - widths[max(cats, key=cats.get)] * n / top) <= 8, (size, widths, cats)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
