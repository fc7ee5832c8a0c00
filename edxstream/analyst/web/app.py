"""The web app for course teams, learners and operators (``edxstream serve``).

A Flask app: Jinja2 templates, plotly.js charts served from the plotly package, CSRF
tokens on every form (Flask-WTF), argon2 password hashes (:mod:`.accounts`), signed
learner links (:mod:`.auth`). Every figure is read through the one analyst query path,
:func:`edxstream.core.chdb_server.open_runner`, so what a page shows is what
``edxstream query`` answers on the same views.

Pages (all behind a login except ``/login``, ``/healthz`` and a learner's signed link):

- ``/``: the courses the account may see, with the enrolment table per course and run;
- ``/overview/<course>``: enrolments by mode, active learners, interactions per day by
  category with due dates, the week's change;
- ``/content/<course>``: videos, problems, sections by time spent, forum;
- ``/learners/<course>`` and ``/learner/<user>/<course>``: roster and timeline;
- ``/live/<course>``: the stream's latest windows, refreshed without reload;
- ``/csv/<table>/<course>``: any table as CSV; ``/report/<course>``: the static report
  of the course.

The course id comes last in every address: ids may hold slashes (old-style
``org/course/run``), so nothing may follow them.
- ``/operators``: pipeline health (operators only);
- ``/me/<token>``: a learner's own page.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
import threading
import time
from importlib import resources

from flask import Flask, Response, abort, jsonify, redirect, render_template, request, session, url_for
from flask_wtf.csrf import CSRFProtect
from jinja2 import Undefined
from markupsafe import Markup
import orjson

from edxstream.analyst import report as report_mod
from edxstream.analyst.web import auth, charts, data, operators
from edxstream.analyst.web.accounts import Accounts, accounts_file
from edxstream.core.chdb_server import Runner, SharedStore
from edxstream.core.errors import UserError
from edxstream.core.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_SECRET = "change-me"
# learners listed on the roster page (the most recently seen); its CSV has them all
ROSTER_ROWS = 500
# the parts of the static report the overview shows
OVERVIEW_PARTS = ("summary", "enrolments", "daily", "learners", "due")
# videos of the content page with a drop-off curve (the most viewed)
DROPOFF_VIDEOS = 5
# how long the data version, read before a cached figure is used, is taken as current
VERSION_SECONDS = 1.0

# tables a course page offers as CSV: name -> the data function (the same results the
# pages show, so a download shares their kept figures)
CSV_TABLES = {
    "daily": data.daily_categories,
    "enrolments": data.enrolments_by_mode,
    "videos": data.videos,
    "problems": data.problems,
    "answers": data.answer_distribution,
    "sections": data.time_on_sections,
    "forum": data.forum,
    "learners": data.roster,
}


def report_page(runner: Runner, course: str, pseudonymized: bool) -> str:
    """The static report of a course as HTML (kept whole: drawing its charts takes time)."""
    return report_mod.render(report_mod.gather(runner, course), pseudonymized=pseudonymized)


class RunnerHolder:
    """The app's query path: a :class:`~edxstream.core.chdb_server.SharedStore` (through
    the process holding the chdb folder, or the folder itself, handed over to a ClickHouse
    sink that starts later), or the runner a test gives."""

    def __init__(self, settings: Settings, runner: Runner | None = None):
        self.runner: Runner = runner if runner is not None else SharedStore(settings)

    def get(self) -> Runner:
        return self.runner

    def reset(self) -> None:
        reset = getattr(self.runner, "reset", None)
        if reset is not None:
            reset()


def _missing(value) -> bool:
    return value is None or value == "" or isinstance(value, Undefined)


def num(value, digits: int = 0) -> str:
    """Thousands separators; a dash for a missing value."""
    if _missing(value):
        return "–"
    return f"{float(value):,.{digits}f}"


def pct(value, digits: int = 1) -> str:
    """A share (0..1) as a percentage."""
    if _missing(value):
        return "–"
    return f"{100 * float(value):.{digits}f}%"


def change(now, before) -> str:
    now, before = float(now or 0), float(before or 0)
    if before == 0:
        return "new" if now else "–"
    return f"{100 * (now - before) / before:+.0f}%"


def figure(fig: dict, name: str) -> Markup:
    """A chart placeholder: the figure as JSON in a script tag that app.js draws."""
    payload = orjson.dumps(fig).decode().replace("</", "<\\/")
    return Markup(f'<div class="chart" data-name="{name}"><script type="application/json">{payload}</script></div>')


def create_app(settings: Settings, runner: Runner | None = None, demo: bool = False, warm_up: bool = True) -> Flask:
    """The app. ``runner`` replaces the configured query path (tests give one). The
    default secret key is refused unless ``demo`` (the demo's data is synthetic).
    ``warm_up``: compute every course's figures in the background from the start."""
    if settings.web_secret_key == DEFAULT_SECRET and not demo:
        raise UserError(
            "EDXSTREAM_WEB_SECRET_KEY is the default: set a long random value of your own "
            "(for example `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
        )
    app = Flask(__name__)
    app.secret_key = settings.web_secret_key
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.web_url.startswith("https://"),
        WTF_CSRF_TIME_LIMIT=None,
    )
    CSRFProtect(app)
    app.extensions["edxstream_accounts"] = Accounts(accounts_file(settings))
    holder = RunnerHolder(settings, runner)
    app.extensions["edxstream_runner"] = holder
    app.extensions["edxstream_settings"] = settings
    app.jinja_env.filters.update(num=num, pct=pct)
    app.jinja_env.globals.update(
        change=change, figure=figure, current_account=auth.current_account, csv_tables=CSV_TABLES
    )

    # The embedded engine opened in this process takes one query at a time; a server
    # and the sink's endpoint take them concurrently.
    one_at_a_time = threading.Lock() if settings.clickhouse_embedded_path else None

    # Course figures are computed from every event of the course; for a big course that
    # takes seconds. A result is therefore kept with the data version it was computed on
    # (data_version: the row counts of the tables the pages read) and shared by every
    # page and viewer that needs it: while the data has not changed it is exact. Once
    # the data changed, a result is still shown for up to web_cache_seconds while it is
    # computed again in the background, so a page never waits for a big course while
    # the pipeline writes. At start the figures of every course are computed in the
    # background, most events first, and computed again whenever the data changed. The
    # live page's queries bypass all this: they are cheap and must show the latest windows.
    cache: dict[tuple, tuple[object, float, object]] = {}  # key -> (version, computed at, value)
    cache_lock = threading.Lock()
    computing: dict[tuple, threading.Event] = {}
    version_memo: list = [None, 0.0]  # (version, when read)
    seen_until: dict[object, float] = {}  # version -> when it was last read as current

    def current_version():
        with cache_lock:
            if time.monotonic() - version_memo[1] < VERSION_SECONDS:
                return version_memo[0]
        version = _rows(data.data_version)
        with cache_lock:
            version_memo[:] = [version, time.monotonic()]
            if len(seen_until) > 64:
                seen_until.clear()
            seen_until[version] = version_memo[1]
        return version

    def compute(key, fn, args, version):
        """Compute ``fn(*args)`` once for ``version`` (a caller arriving while another
        computes the same key waits for that result) and keep it."""
        with cache_lock:
            running = computing.get(key)
            if running is None:
                running = computing[key] = threading.Event()
                mine = True
            else:
                mine = False
        if not mine:
            running.wait()
            with cache_lock:
                hit = cache.get(key)
            if hit is not None:
                return hit[2]
            return compute(key, fn, args, version)
        try:
            value = _locked(fn, *args)
            with cache_lock:
                if len(cache) > 4096:
                    cache.clear()
                cache[key] = (version, time.monotonic(), value)
            return value
        finally:
            with cache_lock:
                computing.pop(key, None)
            running.set()

    def refresh_later(key, fn, args, version):
        def run():
            try:
                compute(key, fn, args, version)
            except Exception:  # noqa: BLE001 - the next request computes it and shows the error
                log.debug("background refresh of %s failed", key, exc_info=True)

        threading.Thread(target=run, name="web-refresh", daemon=True).start()

    def rows(fn, *args, fresh: bool = False):
        """Run a data function on the runner (or take its result from the cache); a store
        that stopped answering gets one fresh runner before the page gives up."""
        if fresh or settings.web_cache_seconds <= 0:
            return _locked(fn, *args)
        key = (fn, tuple(tuple(a) if isinstance(a, list) else a for a in args))
        version = current_version()
        with cache_lock:
            hit = cache.get(key)
            busy = key in computing
            # how long ago the kept figure's data stopped being the current data
            stale_for = time.monotonic() - seen_until.get(hit[0], hit[1]) if hit is not None else 0.0
        if hit is not None:
            if hit[0] == version:
                return hit[2]
            if stale_for < settings.web_cache_seconds:
                if not busy:
                    refresh_later(key, fn, args, version)
                return hit[2]
        return compute(key, fn, args, version)

    def _locked(fn, *args):
        if one_at_a_time is not None:
            with one_at_a_time:
                return _rows(fn, *args)
        return _rows(fn, *args)

    def warm() -> None:
        """Compute every course's figures once, most events first (in the background)."""
        try:
            for course in [c["course_id"] for c in rows(data.courses)]:
                for fn, args in page_figures(course):
                    rows(fn, *args)
                top = [v["video_id"] for v in rows(data.videos, course)[:DROPOFF_VIDEOS]]
                rows(data.video_dropoff, course, top)
        except Exception:  # noqa: BLE001 - a store not up yet: pages compute on demand
            log.debug("warming the figures failed", exc_info=True)

    warmed = threading.Event()

    def keep_fresh() -> None:
        """Warm up, then, whenever the data changed, compute every kept figure again, so a
        page shown after a change waits for nothing and its figures are at most about
        one computation old."""
        warm()
        warmed.set()
        while True:
            time.sleep(max(1.0, settings.web_cache_seconds / 3))
            try:
                version = current_version()
            except Exception:  # noqa: BLE001 - the store is away: try again later
                continue
            with cache_lock:
                stale = [key for key, entry in cache.items() if entry[0] != version]
            for key in stale:
                try:
                    compute(key, key[0], key[1], version)
                except Exception:  # noqa: BLE001 - a page asking for it shows the error
                    log.debug("refreshing %s failed", key, exc_info=True)

    def page_figures(course: str) -> list[tuple]:
        """The cached data calls of a course's pages (what warm() computes)."""
        return [
            (data.course_exists, (course,)),
            (report_mod.gather, (course, 10, OVERVIEW_PARTS)),
            (data.week_change, (course,)),
            (data.enrolments_by_mode, (course,)),
            (data.suggestions, (course, "teacher")),
            (data.videos, (course,)),
            (data.answer_distribution, (course,)),
            (data.grade_distribution, (course,)),
            (data.forum, (course,)),
            (data.problems, (course,)),
            (data.time_on_sections, (course,)),
            (data.roster, (course, ROSTER_ROWS)),
            (data.learner_count, (course,)),
            (data.peer_quartiles, (course,)),
            (data.enrolment_table, ()),
            (data.daily_categories, (course,)),
            (data.roster, (course,)),
            (report_page, (course, settings.pseudonymize)),
        ]

    def _rows(fn, *args):
        try:
            return fn(holder.get(), *args)
        except UserError:
            raise
        except Exception:  # noqa: BLE001 - the query path moved (sink started or stopped)
            holder.reset()
            return fn(holder.get(), *args)

    def course_or_404(course_id: str) -> str:
        auth.check_course(course_id)
        if not rows(data.course_exists, course_id):
            abort(404)
        return course_id

    @app.errorhandler(UserError)
    def store_down(exc):
        return render_template("error.html", code=503, message=str(exc)), 503

    @app.errorhandler(403)
    def forbidden(_exc):
        return render_template("error.html", code=403, message="This page is not open to your account."), 403

    @app.errorhandler(404)
    def not_found(_exc):
        return render_template("error.html", code=404, message="There is no such page or course."), 404

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok")

    @app.get("/static/plotly.min.js")
    def plotly_js():
        path = resources.files("plotly").joinpath("package_data", "plotly.min.js")
        return Response(
            path.read_bytes(), mimetype="text/javascript", headers={"Cache-Control": "public, max-age=86400"}
        )

    @app.route("/login", methods=["GET", "POST"])
    def login():
        error = ""
        if request.method == "POST":
            account = auth.accounts().verify(request.form.get("name", ""), request.form.get("password", ""))
            if account is not None:
                session.clear()
                session["account"] = account.name
                target = request.args.get("next", "")
                # only a path on this site (no //host, no scheme)
                return redirect(target if target.startswith("/") and not target.startswith("//") else url_for("home"))
            error = "Wrong name or password."
        return render_template("login.html", error=error), (401 if error else 200)

    @app.post("/logout")
    def logout():
        session.clear()
        return redirect(url_for("login"))

    @app.get("/")
    @auth.login_required
    def home():
        account = auth.current_account()
        visible = [c for c in rows(data.courses) if account.can_see(c["course_id"])]
        enrolments = [e for e in rows(data.enrolment_table) if account.can_see(e["course_id"])]
        return render_template(
            "home.html", courses=visible, enrolments=enrolments, totals=_enrolment_totals(enrolments)
        )

    @app.get("/overview/<path:course_id>")
    @auth.login_required
    def overview(course_id):
        course_or_404(course_id)
        summary = rows(report_mod.gather, course_id, 10, OVERVIEW_PARTS)
        week = rows(data.week_change, course_id)
        modes = rows(data.enrolments_by_mode, course_id)
        return render_template(
            "overview.html",
            course=course_id,
            charts=True,
            s=summary["summary"],
            enrol=summary["enrolments"],
            week=week,
            due=summary["due"],
            suggestions=rows(data.suggestions, course_id, "teacher"),
            chart_daily=charts.daily_interactions(summary["daily"], summary["due"]) if summary["daily"] else None,
            chart_learners=charts.active_learners(summary["learners"]) if summary["learners"] else None,
            chart_modes=charts.enrolments_by_mode(modes) if modes else None,
        )

    @app.get("/content/<path:course_id>")
    @auth.login_required
    def content(course_id):
        course_or_404(course_id)
        videos = rows(data.videos, course_id)
        curves: dict[str, list[dict]] = {}
        for r in rows(data.video_dropoff, course_id, [v["video_id"] for v in videos[:DROPOFF_VIDEOS]]):
            curves.setdefault(r["video_id"], []).append(r)
        for v in videos[:DROPOFF_VIDEOS]:
            v["dropoff"] = charts.dropoff(curves[v["video_id"]]) if v["video_id"] in curves else None
        answers: dict[str, list[dict]] = {}
        for a in rows(data.answer_distribution, course_id):
            answers.setdefault(a["problem_id"], []).append(a)
        grades = rows(data.grade_distribution, course_id)
        forum = rows(data.forum, course_id)
        return render_template(
            "content.html",
            course=course_id,
            charts=True,
            videos=videos,
            problems=rows(data.problems, course_id),
            answers=answers,
            sections=rows(data.time_on_sections, course_id),
            forum=forum,
            forum_totals={k: sum(int(r[k]) for r in forum) for k in ("threads", "responses", "comments", "votes")},
            chart_grades=charts.grades(grades) if grades else None,
            chart_forum=charts.forum(forum) if forum else None,
            label=report_mod.block_label,
        )

    @app.get("/learners/<path:course_id>")
    @auth.login_required
    def learners(course_id):
        course_or_404(course_id)
        roster = rows(data.roster, course_id, ROSTER_ROWS)
        total = rows(data.learner_count, course_id)
        analysed = any(r.get("segment") is not None or r.get("risk") is not None for r in roster)
        return render_template("learners.html", course=course_id, roster=roster, analysed=analysed, total=total)

    @app.get("/learner/<int:user_id>/<path:course_id>")
    @auth.login_required
    def learner_timeline(course_id, user_id):
        course_or_404(course_id)
        who = rows(data.learner, course_id, user_id)
        if who is None:
            abort(404)
        link = url_for("learner_page", token=auth.learner_token(course_id, user_id))
        return render_template(
            "timeline.html",
            course=course_id,
            who=who,
            events=rows(data.timeline, course_id, user_id),
            link=settings.web_url + link,
        )

    @app.get("/live/<path:course_id>")
    @auth.login_required
    def live(course_id):
        course_or_404(course_id)
        live_now = _live(course_id)
        return render_template(
            "live.html",
            course=course_id,
            charts=True,
            window=min(settings.windows),
            live_charts=live_now["charts"],
            top=live_now["top"],
            last=live_now["last"],
        )

    @app.get("/live.json/<path:course_id>")
    @auth.login_required
    def live_json(course_id):
        course_or_404(course_id)
        return jsonify(_live(course_id))

    def _live(course_id: str) -> dict:
        window = min(settings.windows)
        series = rows(data.live_series, course_id, window, fresh=True)
        return {
            "charts": charts.live(series),
            "top": rows(data.live_top_actions, course_id, window, fresh=True),
            "last": series[-1]["at"] if series else None,
        }

    @app.get("/csv/<name>/<path:course_id>")
    @auth.login_required
    def csv_table(course_id, name):
        course_or_404(course_id)
        if name not in CSV_TABLES:
            abort(404)
        table = rows(CSV_TABLES[name], course_id)
        out = io.StringIO()
        if table:
            writer = csv.DictWriter(out, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
        safe = "".join(ch if ch.isalnum() else "_" for ch in course_id)
        return Response(
            out.getvalue(),
            mimetype="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{safe}-{name}.csv"'},
        )

    @app.get("/report/<path:course_id>")
    @auth.login_required
    def static_report(course_id):
        course_or_404(course_id)
        page = rows(report_page, course_id, settings.pseudonymize)
        return Response(page.replace('src="plotly.min.js"', f'src="{url_for("plotly_js")}"'), mimetype="text/html")

    @app.get("/me/<token>")
    def learner_page(token):
        course_id, user_id = auth.read_learner_token(token)
        who = rows(data.learner, course_id, user_id)
        if who is None:
            abort(404)
        peers = rows(data.peer_quartiles, course_id)
        return render_template(
            "me.html",
            course=course_id,
            who=who,
            peers=peers,
            measures=data.PEER_MEASURES,
            recommendations=rows(data.recommendations, course_id, user_id),
            suggestions=rows(data.suggestions, course_id, "learner", user_id),
            label=report_mod.block_label,
        )

    @app.get("/operators")
    @auth.operator_required
    def operators_page():
        return render_template("operators.html", **operators.health(settings))

    if settings.web_cache_seconds > 0 and warm_up:
        app.extensions["edxstream_warmed"] = warmed  # set once every course's figures are in (the bench waits)
        threading.Thread(target=keep_fresh, name="web-keep-fresh", daemon=True).start()
    return app


def _enrolment_totals(rows: list[dict]) -> list[dict]:
    """Each course's runs added up (org and course: the paper's Table 1 totals)."""
    totals: dict[tuple[str, str], dict] = {}
    for r in rows:
        t = totals.setdefault(
            (r["org"], r["course"]),
            {"org": r["org"], "course": r["course"], "runs": 0, "enrolments": 0, "unenrolments": 0, "enrolled_now": 0},
        )
        t["runs"] += 1
        for k in ("enrolments", "unenrolments", "enrolled_now"):
            t[k] += int(r[k] or 0)
    return list(totals.values())


def serve(settings: Settings, demo: bool = False) -> None:
    """Run the app with waitress on the configured address until interrupted."""
    from waitress import serve as waitress_serve

    app = create_app(settings, demo=demo)
    print(f"edxstream web app on {settings.web_url}/ (Ctrl-C stops it)", file=sys.stderr, flush=True)
    waitress_serve(app, host=settings.web_host, port=settings.web_app_port, threads=4, ident="edxstream")
