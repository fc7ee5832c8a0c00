"""The live monitoring page of a stream worker (Faust web views).

- ``GET /live/``: the page; the course comes from ``?course=`` (any course id, also
  one with a ``/`` in it), else the first course this worker holds, else a chooser.
- ``GET /live/{course_id}/``: the page for one course (unless the app already serves
  that path: aiohttp refuses a second GET route for it).
- ``GET /live/api/courses/``: the courses in this worker's counts table, JSON.
- ``GET /live/api/series/?course=X``: the course's most recent windows of the smallest
  size (events, active learners) still in the table, oldest first, JSON.

The page (``stream_app/static/live.html``, one self-contained file: no CDN, the charts are
inline SVG drawn by plain JS) polls the stream app's ``/counts/{course_id}/`` view and
the series view every few seconds. Everything is read from the worker's own tables: a
course lives in one enriched partition, so a worker shows only the courses it holds
(the counts view says which worker holds another).
"""

from __future__ import annotations

import html
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any, Callable, Iterable, Iterator, Optional
from urllib.parse import unquote

from edxstream.core.settings import Settings
from stream_app import windows as win

PAGE_FILE = "live.html"  # in stream_app/static/
COURSE_TOKEN = "__COURSE_ID__"
SERIES_MAX = 120  # windows per series answer: two hours of minutes
CACHE_SECONDS = 1.0  # under the page's refresh interval (2.5 s)


@dataclass(frozen=True)
class CourseSeen:
    course_id: str
    latest_window: str  # start of the course's latest window of the smallest size (UTC, ISO)


@dataclass(frozen=True)
class SeriesPoint:
    window_start: str
    events: int
    active_learners: int


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def _keys(keys: Iterable[str]) -> Iterator[tuple[str, int, int, str]]:
    """(course, size, start, key) of each counts-table key; other keys (the tables' sync
    marker, cells of an older layout) are passed over."""
    for key in keys:
        if win.is_cell_key(key):
            _, course, size, start = win.split_key(key)
            yield course, size, start, key


def known_courses(keys: Iterable[str], size: int) -> list[CourseSeen]:
    """Courses with a window of ``size`` among the keys, most recently active first.
    Events without a course are counted under "" and are not a course to show."""
    # A worker's table holds up to the grace period of windows (hundreds of thousands
    # of keys) and a view runs on the worker's event loop: a substring test in C drops
    # the keys of other sizes before anything is split in Python.
    sized = f"{win.SEP}{size}{win.SEP}"
    latest: dict[str, int] = {}
    for course, s, start, _ in _keys(k for k in keys if sized in k):
        if s == size and course and start > latest.get(course, -1):
            latest[course] = start
    order = sorted(latest.items(), key=lambda kv: (-kv[1], kv[0]))
    return [CourseSeen(c, _iso(t)) for c, t in order]


def recent_series(
    keys: Iterable[str], cell_of: Callable[[str], Optional[win.Cell]], course: str, size: int, limit: int = SERIES_MAX
) -> list[SeriesPoint]:
    """The course's windows of ``size`` over the ``limit`` windows of event time ending
    with its latest one, oldest first; a window without events is there with zeros, so
    the series is evenly spaced in time (it starts at the oldest window still in the
    table). ``cell_of(key)`` reads a key's cell (None when the key went away
    meanwhile). Events per window are the sum over categories: every counted event has
    exactly one category."""
    events: dict[int, int] = {}
    learners: dict[int, int] = {}
    # as in known_courses: filter in C, then split
    mine, sized = f"{win.SEP}{course}{win.SEP}", f"{win.SEP}{size}{win.SEP}"
    for c, s, start, key in _keys(k for k in keys if mine in k and sized in k):
        if c != course or s != size:
            continue
        cell = cell_of(key)
        if cell is None:
            continue
        events[start] = events.get(start, 0) + sum(cell.categories.values())
        learners[start] = max(learners.get(start, 0), len(cell.learners))
    seen = events.keys()
    if not seen:
        return []
    last = max(seen)
    first = max(min(seen), last - (limit - 1) * size)
    return [SeriesPoint(_iso(t), events.get(t, 0), learners.get(t, 0)) for t in range(first, last + size, size)]


def render_page(course: str) -> str:
    """The page with its initial course (HTML-escaped: it lands in an attribute)."""
    page = resources.files("stream_app").joinpath("static").joinpath(PAGE_FILE).read_text("utf-8")
    return page.replace(COURSE_TOKEN, html.escape(course, quote=True))


def register_live_page(app: Any, settings: Settings) -> None:
    """Add the live page and its two JSON views to the app's web server. Call it after
    the stream app's own views are registered (``create_app``): it reads the worker's
    counts table (``app.worker.counts``) and leaves an already registered
    ``/live/{course_id}/`` route in place (aiohttp refuses a second GET route)."""
    size = min(settings.windows)
    # Every open page polls every few seconds; pages watching the same course share
    # one table scan per CACHE_SECONDS.
    cache: dict[tuple, tuple[float, Any]] = {}

    def cached(key: tuple, compute):
        now = time.monotonic()
        hit = cache.get(key)
        if hit is not None and now - hit[0] < CACHE_SECONDS:
            return hit[1]
        if len(cache) > 256:  # many courses looked at once: start over
            cache.clear()
        value = compute()
        cache[key] = (now, value)
        return value

    def counts_table():
        return app.worker.counts

    def course_keys() -> Iterable[str]:
        # No copy: a view runs on the worker's event loop and never awaits while it
        # iterates, so the agents cannot change the table meanwhile.
        return counts_table().store.keys()

    def cell_of(key: str) -> Optional[win.Cell]:
        return counts_table().get(key)

    @app.page("/live/")
    async def live_index(self, request):
        course = request.query.get("course", "")
        if not course:
            courses = cached(("courses",), lambda: known_courses(course_keys(), size))
            course = courses[0].course_id if courses else ""
        return self.html(render_page(course))

    if "/live/{course_id}/" not in app.web.views:

        @app.page("/live/{course_id}/")
        async def live_course(self, request, course_id: str):
            return self.html(render_page(unquote(course_id)))

    @app.page("/live/api/courses/")
    async def live_courses(self, request):
        courses = cached(("courses",), lambda: known_courses(course_keys(), size))
        return self.json({"window_seconds": size, "courses": [asdict(c) for c in courses]})

    @app.page("/live/api/series/")
    async def live_series(self, request):
        course = request.query.get("course", "")
        try:
            limit = max(1, min(int(request.query.get("limit", SERIES_MAX)), 10 * SERIES_MAX))
        except ValueError:
            return self.error(400, "limit must be an integer")
        points = cached(("series", course, limit), lambda: recent_series(course_keys(), cell_of, course, size, limit))
        return self.json({"course_id": course, "window_seconds": size, "series": [asdict(p) for p in points]})
