"""How fast the web app's pages answer, next to a bare health-check request.

    python bench/bench_web.py [--events 40000] [--big 2000000] [--repeat 5] [--json FILE]

(on a shared 2-core machine, ``--big 200000`` or ``500000`` and scale up: the queries of
a page without kept figures grow about linearly with the course's events)

1. Demo-sized data: the demo's default sample (40,000 events, 4 course runs, 1,500
   learners, 14 days; ``edxstream generate``), parsed and stored in ClickHouse as the
   pipeline stores them (``pipeline.load_clickhouse_events``), the courses' structure
   imported as the demo imports it, and one ``analyze`` run.
2. One big course (``--big`` events, default 2 million, one course run): the same, without
   the analysis run (roster columns from it are then empty; the roster query still
   reads every learner).

The app is served by waitress as ``edxstream serve`` serves it, on the embedded engine
in the same process, and each page is requested by an operator's session; the health
check's median is the floor. Two ways, in the same run, on the same data:

- **before** (baseline): the result cache off, so every request runs the page's queries
  on the events, as a first visit did before figures were kept per data version (the
  median of ``--repeat`` requests after one more);
- **after**: a freshly started app, which computes every course's figures in the
  background from its start (the time that takes is printed); once it has, the *first*
  request of each page, then the median of ``--repeat`` more. Then 1,000 new events
  arrive: the content page's first request after them (it shows the figures before
  them while they are computed again) and the time until the home page shows the new
  count.

Each course page is timed on the course with the most events. The live page's queries
are never kept (they show the latest windows); they are timed as they were (the latest
window found through the deduplicating view, over the course's whole history) and as
they are (found from the stored rows). Windows are written for every minute of each
course, as the stream app's one-minute windows would be. Nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PAGES = (
    "/overview/{c}",
    "/content/{c}",
    "/learners/{c}",
    "/learner/{u}/{c}",
    "/live/{c}",
    "/live.json/{c}",
    "/csv/learners/{c}",
    "/report/{c}",
    "/me/{token}",
    "/",
)
PASSWORD = "bench-password-123"


def load(folder: Path, name: str, events: int, courses: int, learners: int, days: int, analyse: bool):
    from edxstream.analyst.analysis import run as analysis
    from edxstream.core import clickhouse
    from edxstream.core import settings as settings_mod
    from edxstream.core.chdb_server import open_runner
    from edxstream.ops import course_import
    from edxstream.ops.generate import GenConfig, write_course_exports, write_dir
    from edxstream.ops.pipeline import load_clickhouse_events

    # one chdb folder per process (the engine opens one path), a database per data set
    s = settings_mod.load(
        home=folder / name,
        clickhouse_url=f"chdb://{folder / 'chdb'}",
        clickhouse_database=f"bench_web_{name}",
        web_secret_key="bench-" + "k" * 32,
    )
    cfg = GenConfig(events=events, courses=courses, learners=learners, days=days, seed=2026)
    t = time.monotonic()
    write_dir(cfg, folder / name / "log", rotate="none")
    exports = write_course_exports(cfg, folder / name / "courses")
    client = clickhouse.connect(s)
    with open(folder / name / "log" / "tracking.log", "rb") as f:
        n = load_clickhouse_events(s, f, client=client)
    for path in exports:
        course_import.store(client, course_import.read_structure(path))
    write_windows(client)
    print(f"  loaded {n:,} events in {time.monotonic() - t:.0f}s", file=sys.stderr, flush=True)
    runner = open_runner(s)
    if analyse:
        t = time.monotonic()
        analysis.run(runner, client)
        print(f"  analysis run in {time.monotonic() - t:.0f}s", file=sys.stderr, flush=True)
    return s, runner, n


# the live series as it was read before: the latest window found through the view
OLD_LIVE_SERIES = """
    WITH (SELECT max(window_start) FROM window_counts_final
          WHERE course_id = {c} AND window_seconds = 60) AS last
    SELECT toString(window_start) AS at, sumIf(count, kind = 'course_category') AS events,
           sumIf(count, kind = 'course_learners') AS learners
    FROM window_counts_final
    WHERE course_id = {c} AND window_seconds = 60 AND window_start > last - INTERVAL 3600 SECOND
    GROUP BY at ORDER BY at"""


def write_windows(client) -> None:
    """One-minute windows for every minute of each course, as the stream app counts them."""
    for kind, dimension, value in (
        ("course_category", "category", "count()"),
        ("course_action", "action", "count()"),
        ("course_learners", "''", "uniqExact(user_id)"),
    ):
        client.command(f"""
            INSERT INTO window_counts
            SELECT '{kind}', course_id, {dimension}, 60, toStartOfMinute(time), {value}, 1
            FROM course_events GROUP BY course_id, {dimension}, toStartOfMinute(time)""")


def time_live_queries(runner, repeat: int) -> dict:
    """The live series query before and after, on the runner (median ms)."""
    from edxstream.analyst.report import json_rows
    from edxstream.analyst.web import data

    course = json_rows(runner, "SELECT course_id FROM course_events GROUP BY course_id ORDER BY count() DESC LIMIT 1")[
        0
    ]["course_id"]

    def median_ms(fn) -> float:
        fn()
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return 1000 * statistics.median(times)

    old = median_ms(lambda: json_rows(runner, OLD_LIVE_SERIES.format(c=data.q(course))))
    new = median_ms(lambda: data.live_series(runner, course, 60))
    same = json_rows(runner, OLD_LIVE_SERIES.format(c=data.q(course))) == data.live_series(runner, course, 60)
    return {"old_ms": old, "new_ms": new, "same_rows": same}


def uncached(s):
    """The same settings with the app's result cache off: every request computes."""
    return s.model_copy(update={"web_cache_seconds": 0})


def time_pages(s, runner, repeat: int, first: bool = False) -> dict:
    import requests
    from waitress import create_server

    from edxstream.analyst.report import json_rows
    from edxstream.analyst.web import auth
    from edxstream.analyst.web.accounts import Accounts, accounts_file
    from edxstream.analyst.web.app import create_app

    Accounts(accounts_file(s)).add("bench", "operator", PASSWORD)
    t = time.perf_counter()
    app = create_app(s, runner=runner)
    app.config["WTF_CSRF_ENABLED"] = False  # the bench logs in with a plain POST
    warming = app.extensions.get("edxstream_warmed")
    if warming is not None:
        warming.wait()
    warm_s = time.perf_counter() - t
    server = create_server(app, host="127.0.0.1", port=0, threads=4)
    port = server.socket.getsockname()[1]
    threading.Thread(target=server.run, daemon=True).start()
    base = f"http://127.0.0.1:{port}"
    course = json_rows(runner, "SELECT course_id FROM course_events GROUP BY course_id ORDER BY count() DESC LIMIT 1")[
        0
    ]["course_id"]
    user = json_rows(
        runner, f"SELECT user_id FROM learner_activity WHERE course_id = '{course}' ORDER BY interactions DESC LIMIT 1"
    )[0]["user_id"]
    with app.test_request_context():
        token = auth.learner_token(course, user)
    session = requests.Session()
    session.post(base + "/login", data={"name": "bench", "password": PASSWORD}, timeout=60)

    firsts = {}

    def median_ms(path: str) -> float:
        t = time.perf_counter()
        assert session.get(base + path, timeout=300).status_code == 200, path
        firsts[path] = 1000 * (time.perf_counter() - t)
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            r = session.get(base + path, timeout=300)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, path
        return 1000 * statistics.median(times)

    out = {"course": course, "warm_up_s": warm_s if warming is not None else None, "healthz_ms": median_ms("/healthz")}
    for page in PAGES:
        path = page.format(c=quote(course, safe=":+"), u=user, token=token)
        out[page] = median_ms(path)
        out["first " + page] = firsts[path]
        print(
            f"  {page:<22} first {firsts[path]:8.0f} ms, median {out[page]:8.0f} ms (cache {s.web_cache_seconds:g} s)",
            file=sys.stderr,
            flush=True,
        )
    if warming is not None:
        out.update(after_a_change(s, runner, session, base, course))
    session.close()
    server.close()
    return out


def after_a_change(s, runner, session, base: str, course: str) -> dict:
    """New events arrive (1,000 copies of the course's events with new ids): the content
    page's first request after it, and how long until the overview shows the new count."""
    import re

    from edxstream.analyst.report import json_rows
    from edxstream.core import clickhouse

    clickhouse.connect(s).command(
        "INSERT INTO events SELECT * REPLACE (concat(event_id, '-new') AS event_id) FROM events "
        f"WHERE course_id = '{course}' ORDER BY event_id LIMIT 1000"
    )
    path = "/content/" + quote(course, safe=":+")
    t = time.perf_counter()
    assert session.get(base + path, timeout=300).status_code == 200
    first = 1000 * (time.perf_counter() - t)
    want = int(json_rows(runner, f"SELECT count() AS n FROM course_events WHERE course_id = '{course}'")[0]["n"])
    t = time.perf_counter()
    while time.perf_counter() - t < 600:
        page = session.get(base + "/", timeout=300).text
        m = re.search(re.escape(course) + r'</a></td>\s*<td class="n">([^<]+)</td>', page)
        if m and int(m.group(1).replace(",", "")) == want:
            break
        time.sleep(0.2)
    return {"content_after_change_ms": first, "new_count_shown_after_s": time.perf_counter() - t}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=40_000, help="demo-sized sample (40000)")
    ap.add_argument("--big", type=int, default=2_000_000, help="events of the one big course (0 skips it)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        print(f"demo-sized: {args.events:,} events, 4 course runs", file=sys.stderr)
        s, runner, n = load(Path(tmp), "demo", args.events, 4, 1_500, 14, analyse=True)
        live = {"demo": time_live_queries(runner, args.repeat)}
        results["demo before"] = {"events": n, **time_pages(uncached(s), runner, args.repeat)}
        results["demo after"] = {"events": n, **time_pages(s, runner, args.repeat)}
        if args.big:
            print(f"one big course: {args.big:,} events", file=sys.stderr)
            learners = max(1_500, args.big // 200)
            s, runner, n = load(Path(tmp), "big", args.big, 1, learners, 60, analyse=False)
            live["big"] = time_live_queries(runner, args.repeat)
            results["big before"] = {"events": n, **time_pages(uncached(s), runner, args.repeat)}
            results["big after"] = {"events": n, **time_pages(s, runner, args.repeat)}
    # before: the median (each request computes); after: the first request once the
    # app has computed its figures, and the median
    cols = []
    for name, v in results.items():
        if name.endswith("before"):
            cols.append((f"{name} ({v['events']:,} ev.)", v, ""))
        else:
            cols.append((f"{name}: first", v, "first "))
            cols.append((f"{name}: median", v, ""))
    print(f"{'page':<24}" + "".join(f"{c[0]:>32}" for c in cols))
    for key in ("healthz_ms", *PAGES):
        label = "GET /healthz (floor)" if key == "healthz_ms" else key
        cells = []
        for _, v, prefix in cols:
            got = v.get(prefix + key) if key != "healthz_ms" else v[key]
            cells.append(f"{got:>29.0f} ms" if got is not None else f"{'':>32}")
        print(f"{label:<24}" + "".join(cells))
    for name, v in results.items():
        if v.get("warm_up_s") is not None:
            print(f"{name}: the app computed every course's figures in {v['warm_up_s']:.1f} s after its start")
        if "content_after_change_ms" in v:
            print(
                f"{name}: after 1,000 new events, the content page answered in {v['content_after_change_ms']:.0f} ms "
                f"(the figures before them) and the home page showed the new count after "
                f"{v['new_count_shown_after_s']:.1f} s"
            )
    for name, v in live.items():
        print(
            f"{name}: live series query {v['old_ms']:.0f} ms as it was (latest window through the view), "
            f"{v['new_ms']:.0f} ms now (from the stored rows); {'the same' if v['same_rows'] else 'DIFFERENT'} rows"
        )
    if args.json:
        args.json.write_text(json.dumps({"pages": results, "live_series": live}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
