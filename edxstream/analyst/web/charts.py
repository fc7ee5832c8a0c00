"""Chart specs for plotly.js, built as plain dicts (the page draws them with the
plotly.min.js that the plotly package ships, served by the app itself: no CDN, no build
step). Pure functions of the rows in :mod:`edxstream.analyst.web.data`."""

from __future__ import annotations

from collections import defaultdict

from edxstream.analyst.report import CATEGORY_COLOURS, DUE_COLOUR

LAYOUT = {
    "margin": {"l": 50, "r": 10, "t": 10, "b": 40},
    "height": 300,
    "legend": {"orientation": "h", "y": -0.2},
    "paper_bgcolor": "rgba(0,0,0,0)",
    "plot_bgcolor": "rgba(0,0,0,0)",
}


def _layout(**extra) -> dict:
    out = dict(LAYOUT)
    out.update(extra)
    return out


def daily_interactions(rows: list[dict], due: list[dict]) -> dict:
    """Stacked bars of learner interactions per day and category, graded due dates as
    red lines with the assignment's name."""
    by_cat: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        by_cat[r["category"]][r["day"]] = int(r["events"])
    data = [
        {
            "type": "bar",
            "name": cat,
            "x": list(days),
            "y": list(days.values()),
            "marker": {"color": CATEGORY_COLOURS.get(cat, "#999")},
        }
        for cat, days in sorted(by_cat.items())
    ]
    shapes = [
        {
            "type": "line",
            "xref": "x",
            "yref": "paper",
            "x0": d["day"],
            "x1": d["day"],
            "y0": 0,
            "y1": 1,
            "line": {"color": DUE_COLOUR, "dash": "dot", "width": 1},
        }
        for d in due
    ]
    notes = [
        {
            "x": d["day"],
            "y": 1,
            "xref": "x",
            "yref": "paper",
            "text": d["display_name"],
            "showarrow": False,
            "textangle": -90,
            "xanchor": "right",
            "yanchor": "top",
            "font": {"size": 9, "color": DUE_COLOUR},
        }
        for d in due
    ]
    return {
        "data": data,
        "layout": _layout(
            barmode="stack", shapes=shapes, annotations=notes, yaxis={"title": "interactions", "tickformat": ","}
        ),
    }


def active_learners(rows: list[dict]) -> dict:
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": "active learners",
                "x": [r["day"] for r in rows],
                "y": [r["active_learners"] for r in rows],
            }
        ],
        "layout": _layout(yaxis={"title": "learners", "tickformat": ",", "rangemode": "tozero"}),
    }


def enrolments_by_mode(rows: list[dict]) -> dict:
    by_mode: dict[str, dict[str, int]] = defaultdict(dict)
    for r in rows:
        by_mode[r["mode"]][r["day"]] = int(r["n"])
    return {
        "data": [
            {"type": "bar", "name": mode, "x": list(d), "y": list(d.values())} for mode, d in sorted(by_mode.items())
        ],
        "layout": _layout(barmode="stack", yaxis={"title": "enrolments", "tickformat": ","}),
    }


def dropoff(rows: list[dict]) -> dict:
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines+markers",
                "name": "still watching",
                "x": [r["percent_of_video"] for r in rows],
                "y": [r["share"] for r in rows],
            }
        ],
        "layout": _layout(
            height=220,
            xaxis={"title": "% of the video", "ticksuffix": "%"},
            yaxis={"title": "viewers", "tickformat": ".0%", "range": [0, 1.05]},
        ),
    }


def grades(rows: list[dict]) -> dict:
    labels = [f"{int(r['decile']) * 10}-{int(r['decile']) * 10 + 10}%" for r in rows]
    return {
        "data": [{"type": "bar", "name": "learners", "x": labels, "y": [r["learners"] for r in rows]}],
        "layout": _layout(
            height=240, xaxis={"title": "average best score"}, yaxis={"title": "learners", "tickformat": ","}
        ),
    }


def forum(rows: list[dict]) -> dict:
    return {
        "data": [
            {"type": "bar", "name": name, "x": [r["day"] for r in rows], "y": [r[key] for r in rows]}
            for key, name in (("threads", "threads"), ("responses", "responses"), ("comments", "comments"))
        ],
        "layout": _layout(height=240, barmode="stack", yaxis={"title": "posts", "tickformat": ","}),
    }


def live(rows: list[dict]) -> list[dict]:
    """Two charts, events and active learners, each on its own axis."""
    x = [r["at"] for r in rows]
    return [
        {
            "data": [{"type": "bar", "name": "events", "x": x, "y": [r["events"] for r in rows]}],
            "layout": _layout(height=220, yaxis={"title": "events per window", "tickformat": ","}),
        },
        {
            "data": [
                {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": "active learners",
                    "x": x,
                    "y": [r["learners"] for r in rows],
                    "line": {"color": "#54a24b"},
                }
            ],
            "layout": _layout(height=220, yaxis={"title": "active learners", "tickformat": ",", "rangemode": "tozero"}),
        },
    ]
