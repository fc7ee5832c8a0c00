"""The web app as people use it: a real headless Chromium (Debian's, driven by
playwright's client) logs in as an operator and as course staff, follows a learner's
signed link, opens every page on generated data loaded the way the ClickHouse sink writes
it, checks the figures against the same views queried directly, checks who may open
what, and saves screenshots at 1400 and 420 px wide whose DOM is checked for layout
problems (nothing wider than the viewport, no overlapping text).

Screenshots go to $EDXSTREAM_SCREENSHOTS when set (else the test's temporary folder)."""

from __future__ import annotations

import os
import re
import threading
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pymysql
import pytest
import requests
from playwright.sync_api import sync_playwright

from edxstream.analyst.analysis import run as analysis
from edxstream.analyst.web.accounts import Accounts, accounts_file
from edxstream.analyst.web.app import create_app
from edxstream.core import clickhouse
from edxstream.core import settings as settings_mod
from edxstream.core.chdb_server import open_runner
from edxstream.core.jsonfile import reconcile_file, write_json
from edxstream.ops import reconcile
from edxstream.ops.generate import GenConfig
from tests import conftest
from tests.test_analysis import load_generated
from tests.test_analyst_data import COURSE as SMALL_COURSE
from tests.test_analyst_data import load_course

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "correct horse battery"
WIDTHS = (1400, 420)

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (./dev)")


@pytest.fixture(scope="module")
def web(broker, mariadb, chdb_path, tmp_path_factory):
    """Generated courses in ClickHouse with their structure and an analysis run, the app
    served by waitress on a free port, and two accounts."""
    tmp = tmp_path_factory.mktemp("web")
    tid = conftest.test_id()
    db = f"edxstream_t{tid}"
    conn = pymysql.connect(**mariadb)
    with conn.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{db}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
    s = settings_mod.load(
        home=tmp / "home",
        kafka_bootstrap=broker.bootstrap,
        app_id=f"edxstream-t{tid}",
        raw_topic=f"t{tid}.raw",
        enriched_topic=f"t{tid}.enriched",
        deadletter_topic=f"t{tid}.deadletter",
        aggregates_topic=f"t{tid}.aggregates",
        mysql_dsn=f"mysql://root:@127.0.0.1:3306/{db}",
        clickhouse_url=f"chdb://{chdb_path}",
        clickhouse_database=f"t{tid}",
        web_app_port=conftest.free_port(),
        web_secret_key="a-test-key-that-is-long-enough-0123456789",
    )
    load_course(s)  # a small course with its imported structure (names)
    load_generated(s, tmp, GenConfig(events=30_000, courses=2, learners=300, days=40, seed=11))
    client = clickhouse.connect(s)
    runner = open_runner(s)
    analysis.run(runner, client)
    # what the stream app's one-minute windows hold for each course's last hour
    for kind, dimension, value in (
        ("course_category", "category", "count()"),
        ("course_action", "action", "count()"),
        ("course_learners", "''", "uniqExact(user_id)"),
    ):
        client.command(f"""
            INSERT INTO window_counts
            SELECT '{kind}', course_id, {dimension}, 60, toStartOfMinute(time), {value}, 1
            FROM course_events
            INNER JOIN (SELECT course_id, max(time) AS last FROM course_events GROUP BY course_id) AS m
                USING course_id
            WHERE time > last - INTERVAL 1 HOUR
            GROUP BY course_id, {dimension}, toStartOfMinute(time)""")
    courses = [
        r["course_id"]
        for r in json_rows(
            runner, "SELECT course_id, count() AS n FROM course_events GROUP BY course_id ORDER BY n DESC"
        )
    ]
    accounts = Accounts(accounts_file(s))
    accounts.add("ops", "operator", PASSWORD)
    staff_course = courses[0]
    accounts.add("teacher", "staff", PASSWORD, [staff_course, SMALL_COURSE])

    from waitress import create_server

    app = create_app(s, runner=runner)
    server = create_server(app, host="127.0.0.1", port=s.web_app_port, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    yield {
        "settings": s,
        "runner": runner,
        "url": f"http://127.0.0.1:{s.web_app_port}",
        "courses": courses,
        "staff_course": staff_course,
        "other_course": next(c for c in courses if c not in (staff_course, SMALL_COURSE)),
    }
    server.close()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    conn.close()


def json_rows(runner, sql: str) -> list[dict]:
    from edxstream.analyst.report import json_rows as rows

    return rows(runner, sql)


def one(runner, sql: str) -> dict:
    return json_rows(runner, sql)[0]


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = Path(os.environ.get("EDXSTREAM_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    return out


def login(browser, url: str, name: str, width: int = 1400):
    ctx = browser.new_context(viewport={"width": width, "height": 900})
    page = ctx.new_page()
    page.goto(url + "/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    return ctx, page


def c(course: str) -> str:
    return quote(course, safe=":+")


def num(n) -> str:
    return f"{int(n):,}"


# The layout check, run in the page: elements that stick out of the viewport (outside
# the scrolling table wrappers, which scroll on purpose) and pairs of text boxes that
# overlap.
LAYOUT_JS = """() => {
  const W = document.documentElement.clientWidth;
  const problems = [];
  if (document.documentElement.scrollWidth > W + 1) problems.push('page scrolls sideways: ' + document.documentElement.scrollWidth + ' > ' + W);
  const inScroller = el => el.closest('.table-wrap');
  for (const el of document.body.querySelectorAll('*')) {
    if (inScroller(el) || el.closest('svg')) continue;
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.height > 0 && (r.right > W + 1 || r.left < -1))
      problems.push('wider than the viewport: ' + el.tagName + '.' + el.className + ' ' + Math.round(r.left) + '..' + Math.round(r.right));
  }
  const boxes = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const t = walker.currentNode;
    if (!t.textContent.trim() || t.parentElement.closest('svg, script, style, .modebar')) continue;
    const range = document.createRange(); range.selectNodeContents(t);
    for (const r of range.getClientRects()) if (r.width > 0 && r.height > 0) boxes.push([r, t.textContent.trim().slice(0, 30), t.parentElement]);
  }
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const [a, ta, ea] = boxes[i], [b, tb, eb] = boxes[j];
    if (ea === eb) continue;
    const w = Math.min(a.right, b.right) - Math.max(a.left, b.left), h = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
    if (w > 2 && h > 2) {
      // text clipped away by a scrolling wrapper is not shown, so cannot overlap
      const sa = ea.closest('.table-wrap'), sb = eb.closest('.table-wrap');
      const visible = (s, r) => !s || (r.left < s.getBoundingClientRect().right && r.right > s.getBoundingClientRect().left);
      if (visible(sa, a) && visible(sb, b)) problems.push('text overlaps: "' + ta + '" and "' + tb + '"');
    }
  }
  return problems.slice(0, 20);
}"""


def check_layout(page, shots: Path, name: str) -> None:
    page.wait_for_load_state("networkidle")
    page.wait_for_timeout(300)  # plotly draws after the load event
    width = page.viewport_size["width"]
    page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)
    assert page.evaluate(LAYOUT_JS) == [], f"{name} at {width} px"


def test_health_and_login_are_the_only_open_pages(web):
    url = web["url"]
    assert requests.get(url + "/healthz", timeout=30).json() == {"status": "ok"}
    course = c(web["courses"][0])
    for path in (
        "/",
        f"/overview/{course}",
        f"/content/{course}",
        f"/learners/{course}",
        f"/live/{course}",
        f"/csv/learners/{course}",
        f"/report/{course}",
        "/operators",
    ):
        r = requests.get(url + path, allow_redirects=False, timeout=30)
        assert r.status_code == 302 and "/login" in r.headers["Location"], path
    # a form posted without its CSRF token is refused, even with the right password
    r = requests.post(url + "/login", data={"name": "ops", "password": PASSWORD}, allow_redirects=False, timeout=30)
    assert r.status_code == 400


def test_wrong_password_is_refused(web, browser):
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(web["url"] + "/login")
    page.fill("input[name=name]", "ops")
    page.fill("input[name=password]", "not the password")
    page.click("button[type=submit]")
    assert page.inner_text(".error") == "Wrong name or password."
    assert page.goto(web["url"] + "/").url.startswith(web["url"] + "/login")
    ctx.close()


def test_operator_sees_every_page_with_the_query_figures(web, browser, shots):
    url, runner = web["url"], web["runner"]
    course = web["staff_course"]
    q = f"'{course}'"
    for width in WIDTHS:
        ctx, page = login(browser, url, "ops", width)
        # courses: every course, with its events as the view counts them
        listed = page.locator("#courses tbody tr td:first-child").all_inner_texts()
        assert listed == [
            r["course_id"]
            for r in json_rows(
                runner, "SELECT course_id FROM course_events GROUP BY course_id ORDER BY max(time) DESC, course_id"
            )
        ]
        enrol = one(runner, f"SELECT enrolments, enrolled_now FROM course_enrolments WHERE course_id = {q}")
        check_layout(page, shots, "courses")

        page.goto(f"{url}/overview/{c(course)}")
        s = one(
            runner, f"SELECT count() AS events, uniqExact(user_id) AS learners FROM course_events WHERE course_id = {q}"
        )
        assert page.inner_text("#events-total") == num(s["events"])
        assert page.inner_text("#learners-total") == num(s["learners"])
        assert page.inner_text("#enrolments-total") == num(enrol["enrolments"])
        assert page.inner_text("#enrolled-now") == num(enrol["enrolled_now"])
        assert page.locator("div.chart .main-svg").count() >= 3  # interactions, learners, enrolments drawn
        check_layout(page, shots, "overview")

        page.goto(f"{url}/content/{c(SMALL_COURSE)}")
        v = json_rows(
            runner,
            f"SELECT display_name, unique_viewers FROM video_engagement WHERE course_id = "
            f"'{SMALL_COURSE}' ORDER BY unique_viewers DESC, plays DESC, video_id",
        )
        first = page.locator("#videos tbody tr").first.locator("td").all_inner_texts()
        assert first[0] == v[0]["display_name"] and first[1] == num(v[0]["unique_viewers"])  # names, not hashes
        p = json_rows(
            runner,
            f"SELECT display_name, first_try_success_rate FROM problem_outcomes WHERE course_id = "
            f"'{SMALL_COURSE}' ORDER BY learners DESC, attempts DESC, problem_id",
        )
        prow = page.locator("#problems tbody tr").first.locator("td").all_inner_texts()
        assert prow[0] == p[0]["display_name"]
        assert prow[4] == f"{100 * p[0]['first_try_success_rate']:.1f}%"  # a percentage, not 0.4597
        # sections and subsections by name (the imported structure), answers as submitted
        sections = {
            r["chapter_name"]
            for r in json_rows(
                runner,
                f"SELECT chapter_name FROM block_names WHERE course_id = '{SMALL_COURSE}' AND chapter_name != ''",
            )
        }
        assert set(page.locator("#sections tbody tr td:first-child").all_inner_texts()) <= sections
        assert page.locator("#sections tbody tr").count() > 0
        assert "42" in page.locator("table.answers").first.inner_text()
        check_layout(page, shots, "content-small")
        page.goto(f"{url}/content/{c(course)}")
        check_layout(page, shots, "content")

        page.goto(f"{url}/learners/{c(course)}")
        n = one(runner, f"SELECT count() AS n FROM learner_activity WHERE course_id = {q}")["n"]
        assert page.locator("#roster tbody tr").count() == n
        assert page.inner_text("#roster-count") == f"{n:,} learners."
        risks = page.locator("#roster tbody tr td:nth-child(7)").all_inner_texts()
        assert all(re.fullmatch(r"\d+%", r) for r in risks)  # the analysis run gave every learner a risk
        check_layout(page, shots, "learners")

        page.locator("#roster tbody tr a").first.click()
        page.wait_for_load_state("networkidle")
        assert page.locator("#timeline tbody tr").count() > 0
        check_layout(page, shots, "timeline")

        page.goto(f"{url}/live/{c(course)}")
        last = one(
            runner,
            f"SELECT toString(max(window_start)) AS t FROM window_counts_final "
            f"WHERE course_id = {q} AND window_seconds = 60",
        )["t"]
        assert page.inner_text("#live-last") == last
        assert page.locator("#live-charts .main-svg").count() >= 2  # events and learners, each its own chart
        top = one(
            runner,
            f"SELECT dimension, sum(count) AS n FROM window_counts_final WHERE course_id = {q} "
            f"AND kind = 'course_action' AND window_seconds = 60 AND window_start > "
            f"toDateTime('{last}', 'UTC') - INTERVAL 600 SECOND GROUP BY dimension "
            f"ORDER BY n DESC, dimension LIMIT 1",
        )
        assert page.locator("#live-top tbody tr").first.locator("td").all_inner_texts() == [
            top["dimension"],
            num(top["n"]),
        ]
        check_layout(page, shots, "live")

        page.goto(f"{url}/operators")
        assert page.locator("h1").inner_text() == "Pipeline health"
        reconcile_file(web["settings"]).unlink(missing_ok=True)
        page.goto(f"{url}/operators")
        assert "No reconcile has run yet" in page.inner_text("body")
        # a reconcile that found ClickHouse short of one event on a day
        day = date(2024, 5, 2)
        figures = reconcile.Figures(
            shipped={(course, day): 5},
            mysql={(course, day): 5},
            clickhouse={(course, day): 4},
            windows={(course, day): 5},
            dead_shipped=2,
            dead_mysql=2,
        )
        ran = datetime(2024, 5, 3, 9, 30, tzinfo=timezone.utc)
        write_json(reconcile_file(web["settings"]), reconcile.outcome(figures, reconcile.differences(figures), ran))
        page.goto(f"{url}/operators")
        summary = page.inner_text("#reconcile-summary")
        assert summary.startswith("1 difference at 2024-05-03T09:30:00+00:00") and "5 events shipped" in summary
        assert page.locator("#reconcile tbody tr").all_inner_texts() == [
            "MySQL events and dead letters\tyes",
            "ClickHouse events\tno",
            "Window counts\tyes",
        ]
        assert page.locator("#reconcile-differences tbody td").all_inner_texts() == [
            course,
            "2024-05-02",
            "5",
            "5",
            "4",
            "5",
        ]
        assert page.title() == "Pipeline · edxstream"
        check_layout(page, shots, "operators")

        assert page.goto(f"{url}/overview/course-v1:No+Such+Course").status == 404
        ctx.close()


def test_csv_download_matches_the_query(web, browser):
    ctx, page = login(browser, web["url"], "ops")
    course = web["staff_course"]
    with page.expect_download() as info:
        page.goto(f"{web['url']}/learners/{c(course)}")
        page.click("h2 a.csv")
    text = Path(info.value.path()).read_text()
    lines = text.strip().splitlines()
    n = one(web["runner"], f"SELECT count() AS n FROM learner_activity WHERE course_id = '{course}'")["n"]
    assert lines[0].startswith("user_id,username,interactions") and len(lines) == n + 1
    ctx.close()


def test_staff_see_only_their_courses(web, browser):
    url = web["url"]
    ctx, page = login(browser, url, "teacher")
    listed = set(page.locator("#courses tbody tr td:first-child").all_inner_texts())
    assert listed == {web["staff_course"], SMALL_COURSE}
    assert page.goto(f"{url}/overview/{c(web['staff_course'])}").status == 200
    other = c(web["other_course"])
    for path in (
        f"/overview/{other}",
        f"/content/{other}",
        f"/learners/{other}",
        f"/live/{other}",
        f"/csv/learners/{other}",
        f"/report/{other}",
        "/operators",
    ):
        assert page.goto(url + path).status == 403, path
    # logging out needs the form (with its CSRF token); afterwards pages need a login again
    page.click("text=Log out")
    page.wait_for_load_state("networkidle")
    assert page.goto(f"{url}/overview/{c(web['staff_course'])}").url.startswith(url + "/login")
    ctx.close()


def test_learner_link_opens_only_that_learners_page(web, browser, shots):
    url, runner = web["url"], web["runner"]
    course = web["staff_course"]
    ctx, page = login(browser, url, "teacher")
    page.goto(f"{url}/learners/{c(course)}")
    page.locator("#roster tbody tr a").first.click()
    page.wait_for_load_state("networkidle")
    link = page.locator("#learner-link").get_attribute("href")
    user_id = int(page.url.split("/learner/")[1].split("/")[0])
    ctx.close()

    for width in WIDTHS:
        learner = browser.new_context(viewport={"width": width, "height": 900})  # no account
        me = learner.new_page()
        assert me.goto(link).status == 200
        mine = one(
            runner,
            f"SELECT interactions, active_days FROM learner_activity "
            f"WHERE course_id = '{course}' AND user_id = {user_id}",
        )
        cells = me.locator("#peers tbody tr").first.locator("td").all_inner_texts()
        assert cells[0] == "Interactions" and cells[1] == num(mine["interactions"])
        med = one(
            runner, f"SELECT quantileExact(0.5)(interactions) AS m FROM learner_activity WHERE course_id = '{course}'"
        )["m"]
        assert cells[3] == num(med)
        check_layout(me, shots, "learner")
        # a link changed by hand (another learner's id) is not signed: no page
        token = link.rsplit("/", 1)[1]
        assert me.goto(f"{url}/me/{token[:-2]}xx").status == 404
        # and the link opens nothing else
        assert me.goto(f"{url}/learners/{c(course)}").url.startswith(url + "/login")
        learner.close()


def test_stack_up_starts_the_web_app_and_down_stops_it(settings):
    import subprocess

    from edxstream.ops import stack

    port = conftest.free_port()
    env = conftest.env_for(settings, EDXSTREAM_WEB_APP_PORT=str(port))
    # with the default key the app refuses to start, and says what to set
    up = subprocess.run(conftest.edxstream_cmd("stack", "up"), env=env, capture_output=True, text=True, timeout=120)
    assert up.returncode == 0, up.stderr
    assert "EDXSTREAM_WEB_SECRET_KEY" in next(line for line in up.stdout.splitlines() if line.startswith("web"))
    env["EDXSTREAM_WEB_SECRET_KEY"] = "another-test-key-long-enough-0123456789"
    up = subprocess.run(conftest.edxstream_cmd("stack", "up"), env=env, capture_output=True, text=True, timeout=120)
    assert f"started at http://127.0.0.1:{port}/" in up.stdout, up.stdout + up.stderr
    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).json() == {"status": "ok"}
    down = subprocess.run(conftest.edxstream_cmd("stack", "down"), env=env, capture_output=True, text=True, timeout=60)
    assert "web" in down.stdout and "stopped" in down.stdout
    assert not stack.port_open("127.0.0.1", port)


def test_user_command_and_serve_refusing_the_default_key(settings):
    import subprocess

    env = conftest.env_for(settings, EDXSTREAM_WEB_PASSWORD="long enough password")

    def run(*args, **extra):
        return subprocess.run(
            conftest.edxstream_cmd(*args),
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    assert run("user", "add", "carol", "--role", "staff", "--course", "course-v1:A+B+C").returncode == 0
    assert run("user", "add", "dave", "--role", "operator").returncode == 0
    listed = run("user", "list").stdout.splitlines()
    assert listed == ["carol\tstaff\tcourse-v1:A+B+C", "dave\toperator\t(every course)"]
    stored = Accounts(accounts_file(settings))
    assert stored.verify("carol", "long enough password").courses == ["course-v1:A+B+C"]
    assert stored.verify("carol", "wrong password") is None
    assert "long enough password" not in accounts_file(settings).read_text()  # only the argon2 hash
    assert oct(accounts_file(settings).stat().st_mode & 0o777) == "0o600"
    for args, extra, message in [
        (("user", "add", "erin", "--role", "staff"), {}, "needs at least one --course"),
        (("user", "add", "erin", "--role", "operator"), {"EDXSTREAM_WEB_PASSWORD": "short"}, "at least 8"),
        (("user", "remove", "nobody"), {}, "no account"),
        (("serve",), {}, "EDXSTREAM_WEB_SECRET_KEY is the default"),
    ]:
        r = run(*args, **extra)
        assert r.returncode == 2 and r.stderr.startswith("edxstream: ") and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr
    assert run("user", "remove", "carol").returncode == 0
    assert [line.split("\t")[0] for line in run("user", "list").stdout.splitlines()] == ["dave"]
    link = run(
        "user",
        "link",
        "--course",
        "course-v1:A+B+C",
        "--user-id",
        "7",
        EDXSTREAM_WEB_SECRET_KEY="link-key-long-enough-0123456789",
    ).stdout.strip()
    assert link.startswith(f"http://127.0.0.1:{settings.web_app_port}/me/")


def test_live_figures_are_never_served_from_the_cache(web, browser):
    """Course figures are kept for EDXSTREAM_WEB_CACHE_SECONDS; the live page's are not:
    a window the sink writes shows on the next refresh."""
    url, runner = web["url"], web["runner"]
    course = web["other_course"]
    ctx, page = login(browser, url, "ops")
    before = ctx.request.get(f"{url}/live.json/{c(course)}").json()
    last = one(
        runner,
        f"SELECT max(window_start) + 60 AS t, toString(t) AS s FROM window_counts_final "
        f"WHERE course_id = '{course}' AND window_seconds = 60",
    )
    from edxstream.core import clickhouse

    clickhouse.connect(web["settings"]).command(
        f"INSERT INTO window_counts VALUES ('course_category', '{course}', 'video', 60, "
        f"toDateTime('{last['s']}', 'UTC'), 5, 1)"
    )
    after = ctx.request.get(f"{url}/live.json/{c(course)}").json()
    assert before["last"] != after["last"] == last["s"]
    ctx.close()


def test_kept_figures_follow_the_data(web, browser):
    """Figures are kept per data version: new events of a course show once computed again,
    and what a page shows is always the events' count of one version, never a mix or a
    guess. (Runs after the other tests of the app: it changes the data.)"""
    import time

    url, runner = web["url"], web["runner"]
    course = web["other_course"]
    ctx, page = login(browser, url, "ops")

    def shown() -> int:
        page.goto(url + "/")
        row = page.locator("#courses tbody tr", has_text=course)
        return int(row.locator("td").nth(1).inner_text().replace(",", ""))

    def stored() -> int:
        return int(one(runner, f"SELECT count() AS n FROM course_events WHERE course_id = '{course}'")["n"])

    before = stored()
    assert shown() == before
    clickhouse.connect(web["settings"]).command(
        f"INSERT INTO events SELECT * REPLACE (concat(event_id, '-again') AS event_id) FROM events "
        f"WHERE course_id = '{course}' ORDER BY event_id LIMIT 3"
    )
    after = stored()
    assert after == before + 3
    seen = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        seen.add(shown())
        if after in seen:
            break
        time.sleep(0.5)
    assert after in seen and seen <= {before, after}, seen
    ctx.close()


def test_operators_lag_per_group_and_partition(settings):
    """The pipeline page's lag: every partition of each group's topics, what is not yet
    committed; kafka_admin.group_lag is their sum."""
    from confluent_kafka import Producer

    from edxstream.analyst.web import operators
    from edxstream.core import kafka_admin

    kafka_admin.ensure_topics(settings)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "logger": kafka_admin.LIBRDKAFKA_LOG})
    # one record batch per message: Tansu reports a partition's end as the base offset of
    # its last batch + 1 (docs/architecture.md), so lag read from the watermark is exact
    # only per batch; the page says so
    for i in range(5):
        producer.produce(settings.raw_topic, value=b"{}", partition=i % settings.partitions)
        assert producer.flush(30) == 0
    lags = operators.health(settings)["lags"]
    raw = [r for r in lags if r["group"] == settings.stream_group]
    assert sorted(r["partition"] for r in raw) == list(range(settings.partitions))
    assert sum(r["lag"] for r in raw) == 5 and all(r["committed"] is None for r in raw)
    assert kafka_admin.group_lag(settings, settings.stream_group, [settings.raw_topic]) == 5
    sink_groups = {r["group"] for r in lags} - {settings.stream_group}
    assert sink_groups == {settings.mysql_sink_group, settings.clickhouse_sink_group}
