"""A static HTML report of one course for its teaching team.

``write_report`` queries the analyst views (docs/analysts.md) and writes ``index.html``
plus ``plotly.min.js`` (the charting library, copied from the plotly package) into a
folder. The data is embedded in the page, so it opens from the file system, with no
server and no internet. Charts: learner interactions per day by category (each action
once, docs/taxonomy.md) with the graded subsections' due dates marked, active learners
per day, top videos, top problems; tables with the figures behind the last two. Blocks
are shown by name when the course's structure was imported (``edxstream course
import``), else by the end of their id.
"""

from __future__ import annotations

import html
from datetime import datetime, timezone
from pathlib import Path

import orjson
from clickhouse_connect.driver.binding import format_query_value

from edxstream.core.chdb_server import Runner

CATEGORY_COLOURS = {
    "access": "#4c78a8",
    "content": "#f58518",
    "video": "#e45756",
    "forum": "#72b7b2",
    "assessment": "#54a24b",
    "enrollment": "#eeca3b",
    "other": "#b279a2",
}
DUE_COLOUR = "#c0392b"


def json_rows(runner: Runner, sql: str) -> list[dict]:
    return [orjson.loads(line) for line in runner.raw(sql, "JSONEachRow").splitlines() if line.strip()]


def gather(runner: Runner, course: str, top: int = 10, parts: tuple[str, ...] | None = None) -> dict:
    """Everything the report shows, as plain rows (also written as data.json); only
    ``parts`` of it when given (the web app's overview needs no video or problem rows)."""
    c = format_query_value(course)
    one = {"summary", "enrolments", "forum"}  # one row each
    queries = {
        "summary": f"""
            SELECT count() AS events, uniqExactIf(user_id, user_id IS NOT NULL) AS learners,
                   toString(min(time)) AS first_event, toString(max(time)) AS last_event,
                   uniqExact(toDate(time)) AS days
            FROM course_events WHERE course_id = {c}""",
        "enrolments": f"SELECT * FROM course_enrolments WHERE course_id = {c}",
        "daily": f"""
            SELECT toString(day) AS day, category, events FROM course_daily_interactions
            WHERE course_id = {c} ORDER BY day, category""",
        "learners": f"""
            SELECT toString(day) AS day, active_learners FROM course_daily_learners
            WHERE course_id = {c} ORDER BY day""",
        "due": f"""
            SELECT toString(day) AS day, display_name, assignment_type FROM course_due_dates
            WHERE course_id = {c} ORDER BY due, display_name""",
        "videos": f"""
            SELECT video_id, ifNull(display_name, '') AS display_name, plays, unique_viewers, seconds_watched,
                   pauses, seeks, duration, duration_estimated FROM video_engagement
            WHERE course_id = {c} ORDER BY unique_viewers DESC, plays DESC, video_id LIMIT {int(top)}""",
        "problems": f"""
            SELECT problem_id, ifNull(display_name, '') AS display_name, ifNull(sequential_name, '') AS sequential_name,
                   attempts, learners, first_try_successes, first_try_success_rate,
                   learners_solved FROM problem_outcomes
            WHERE course_id = {c} ORDER BY learners DESC, attempts DESC, problem_id LIMIT {int(top)}""",
        "forum": f"""
            SELECT sum(threads) AS threads, sum(responses) AS responses, sum(comments) AS comments,
                   sum(votes) AS votes FROM forum_activity WHERE course_id = {c}""",
        # the latest `edxstream analyze` run of the course, if any
        "suggestions": f"""
            SELECT text FROM suggestions WHERE course_id = {c} AND audience = 'teacher'
              AND run_id IN (SELECT run_id FROM latest_analysis_runs WHERE course_id = {c}) ORDER BY priority""",
        "segments": f"""
            SELECT segment, description, learners FROM segment_profiles WHERE course_id = {c}
              AND run_id IN (SELECT run_id FROM latest_analysis_runs WHERE course_id = {c})
            ORDER BY learners DESC""",
    }
    out: dict = {"course": course}
    for name, sql in queries.items():
        if parts is None or name in parts:
            found = json_rows(runner, sql)
            out[name] = (found or [{}])[0] if name in one else found
    return out


def short_block(block_id: str) -> str:
    """The readable tail of a usage key (block-v1:...+type@video+block@abc123 -> abc123)."""
    return block_id.rsplit("@", 1)[-1][:40] if block_id else "?"


def block_label(row: dict, key: str) -> str:
    """A block's name from the imported structure, else the tail of its id."""
    return row.get("display_name") or short_block(row.get(key, ""))


def _label_rows(data: dict) -> None:
    """Each video and problem row gets its ``name`` (what the charts and tables show)."""
    for r in data["videos"]:
        r["name"] = block_label(r, "video_id")
        if r.get("duration") is not None:
            r["length"] = f"{float(r['duration']):,.0f} s" + (" (estimated)" if r.get("duration_estimated") else "")
    for r in data["problems"]:
        r["name"] = block_label(r, "problem_id")


def figures(data: dict) -> list[tuple[str, "object"]]:
    import plotly.graph_objects as go

    layout = dict(
        template="plotly_white",
        height=380,
        margin=dict(l=60, r=20, t=50, b=60),
        font=dict(family="Helvetica, Arial, sans-serif", size=13),
    )
    figs = []

    daily = go.Figure(
        layout=dict(
            title="Learner interactions per day, by category (dashed: due dates)",
            barmode="stack",
            xaxis_title="day (UTC)",
            yaxis_title="interactions",
            **layout,
        )
    )
    for category in sorted({r["category"] for r in data["daily"]}):
        rows = [r for r in data["daily"] if r["category"] == category]
        daily.add_bar(
            x=[r["day"] for r in rows],
            y=[int(r["events"]) for r in rows],
            name=category,
            marker_color=CATEGORY_COLOURS.get(category),
        )
    # due dates: a dashed line through the due day's bar, named on top
    for r in data.get("due", []):
        daily.add_shape(
            type="line",
            x0=r["day"],
            x1=r["day"],
            y0=0,
            y1=1,
            yref="paper",
            line=dict(color=DUE_COLOUR, width=3, dash="dash"),
        )
        daily.add_annotation(
            x=r["day"],
            y=1,
            yref="paper",
            text=html.escape(r["display_name"]),
            showarrow=False,
            yanchor="bottom",
            font=dict(color=DUE_COLOUR, size=11),
        )
    figs.append(("daily", daily))

    learners = go.Figure(
        layout=dict(title="Active learners per day", xaxis_title="day (UTC)", yaxis_title="learners", **layout)
    )
    learners.add_scatter(
        x=[r["day"] for r in data["learners"]],
        y=[int(r["active_learners"]) for r in data["learners"]],
        mode="lines+markers",
        line=dict(color="#4c78a8", width=3),
        name="active learners",
    )
    learners.update_yaxes(rangemode="tozero")
    days = sorted({r["day"] for r in data["learners"]})
    for fig in (daily, learners):
        fig.update_xaxes(type="date")
        if days and (datetime.fromisoformat(days[-1]) - datetime.fromisoformat(days[0])).days <= 31:
            # a short course: one tick per day rather than hours of an interpolated axis
            fig.update_xaxes(tickformat="%b %d", dtick=86_400_000)
    figs.append(("learners", learners))

    videos = go.Figure(layout=dict(title="Top videos: unique viewers", xaxis_title="learners", **layout))
    vids = list(reversed(data["videos"]))
    videos.add_bar(
        y=[r["name"] for r in vids],
        x=[int(r["unique_viewers"]) for r in vids],
        orientation="h",
        marker_color="#e45756",
        name="unique viewers",
        customdata=[[r["plays"], r["seconds_watched"]] for r in vids],
        hovertemplate="%{y}: %{x} viewers, %{customdata[0]} plays, %{customdata[1]} s watched<extra></extra>",
    )
    figs.append(("videos", videos))

    problems = go.Figure(
        layout=dict(
            title="Top problems: learners and first-try successes", barmode="group", xaxis_title="learners", **layout
        )
    )
    probs = list(reversed(data["problems"]))
    names = [r["name"] for r in probs]
    problems.add_bar(
        y=names,
        x=[int(r["learners"]) for r in probs],
        orientation="h",
        name="learners who tried",
        marker_color="#9ecae9",
    )
    problems.add_bar(
        y=names,
        x=[int(r["first_try_successes"]) for r in probs],
        orientation="h",
        name="right at first try",
        marker_color="#54a24b",
    )
    figs.append(("problems", problems))
    return figs


def _table(rows: list[dict], columns: list[tuple[str, str]]) -> str:
    if not rows:
        return "<p class='empty'>No data yet.</p>"
    head = "".join(f"<th>{html.escape(label)}</th>" for _, label in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(r.get(key, '')))}</td>" for key, _ in columns) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{title}</title>
<script src="plotly.min.js"></script>
<style>
 body {{ font-family: Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }}
 h1 {{ font-size: 24px; margin-bottom: 4px; }} .sub {{ color: #666; margin-top: 0; }}
 .cards {{ display: flex; gap: 12px; flex-wrap: wrap; margin: 16px 0; }}
 .card {{ background: #f3f6fa; border-radius: 8px; padding: 10px 16px; min-width: 120px; }}
 .card b {{ display: block; font-size: 22px; color: #1f4e79; }}
 .chart {{ margin: 8px 0 20px; }}
 table {{ border-collapse: collapse; margin: 8px 0 24px; font-size: 13px; }}
 th, td {{ border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: left; }}
 th {{ background: #f3f6fa; }} .empty {{ color: #999; }}
</style></head>
<body>
<h1>{course}</h1>
<p class="sub">Activity report, {period}. Generated {generated} by edxstream. Learners are {privacy}.</p>
<div class="cards">{cards}</div>
{charts}
<h2>Top videos</h2>
{videos}
<h2>Top problems</h2>
{problems}
<h2>Analysis</h2>
{analysis}
<script type="application/json" id="report-data">{data}</script>
</body></html>
"""


def analysis_html(data: dict) -> str:
    """The latest analysis run's suggestions for the course team and its segments."""
    if not data["suggestions"] and not data["segments"]:
        return "<p class='empty'>No analysis yet: run <code>edxstream analyze</code>.</p>"
    items = "".join(f"<li>{html.escape(r['text'])}</li>" for r in data["suggestions"])
    segs = _table(
        data["segments"], [("segment", "segment"), ("description", "learners who..."), ("learners", "learners")]
    )
    return f"<ul>{items}</ul>{segs}"


def render(data: dict, pseudonymized: bool = True) -> str:
    _label_rows(data)
    figs = figures(data)
    charts = "\n".join(
        "<div class='chart'>"
        + fig.to_html(full_html=False, include_plotlyjs=False, div_id=name, config={"displaylogo": False})
        + "</div>"
        for name, fig in figs
    )
    s, e, f = data["summary"], data["enrolments"], data["forum"]
    cards = "".join(
        f"<div class='card'><b>{html.escape(str(v if v is not None else 0))}</b>{html.escape(k)}</div>"
        for k, v in [
            ("events", s.get("events")),
            ("learners active", s.get("learners")),
            ("days with activity", s.get("days")),
            ("enrolled now", e.get("enrolled_now")),
            ("forum posts", sum(int(f.get(k) or 0) for k in ("threads", "responses", "comments"))),
        ]
    )
    period = (
        f"{(s.get('first_event') or '?')[:10]} to {(s.get('last_event') or '?')[:10]}"
        if s.get("events")
        else "no events yet"
    )
    return PAGE.format(
        title=html.escape(f"Course report: {data['course']}"),
        course=html.escape(data["course"]),
        period=html.escape(period),
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        privacy="pseudonymized (keyed hashes)" if pseudonymized else "shown as stored",
        cards=cards,
        charts=charts,
        videos=_table(
            data["videos"],
            [
                ("name", "video"),
                ("length", "length"),
                ("unique_viewers", "unique viewers"),
                ("plays", "plays"),
                ("seconds_watched", "seconds watched"),
                ("pauses", "pauses"),
                ("seeks", "seeks"),
            ],
        ),
        problems=_table(
            data["problems"],
            [
                ("name", "problem"),
                ("sequential_name", "subsection"),
                ("learners", "learners"),
                ("attempts", "attempts"),
                ("first_try_successes", "right first try"),
                ("first_try_success_rate", "first-try rate"),
                ("learners_solved", "solved"),
            ],
        ),
        analysis=analysis_html(data),
        # "</" cannot end the script element early: JSON escapes it
        data=orjson.dumps(data).decode().replace("</", "<\\/"),
    )


def write_report(runner: Runner, course: str, out: Path, top: int = 10, pseudonymized: bool = True) -> Path:
    """Write ``out/index.html`` and ``out/plotly.min.js``; returns the index path."""
    from plotly.offline import get_plotlyjs

    data = gather(runner, course, top)
    out.mkdir(parents=True, exist_ok=True)
    js = out / "plotly.min.js"
    bundle = get_plotlyjs()
    if not js.exists() or js.stat().st_size != len(bundle.encode()):
        js.write_text(bundle, encoding="utf-8")
    index = out / "index.html"
    index.write_text(render(data, pseudonymized), encoding="utf-8")
    return index
