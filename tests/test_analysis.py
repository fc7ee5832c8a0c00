"""``edxstream analyze``: the generator's planted truth, the pure steps, and whole runs on
ClickHouse (a generated course with hidden profiles, a course too small to fit, and the
real public corpus).

Other tests import ``load_generated`` from here: it writes a generated log, loads its
events into the test's ClickHouse database the way the pipeline stores them, and
returns the planted truth (user ids pseudonymized like the events)."""

from __future__ import annotations

import html
import json
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from edxstream import cli
from edxstream.analyst import report
from edxstream.analyst.analysis import features, prediction, recommendations, segments
from edxstream.analyst.analysis import run as analysis
from edxstream.core import clickhouse, privacy
from edxstream.core.chdb_server import open_runner
from edxstream.core.records import ENRICHED_FIELDS
from edxstream.ops import generate
from edxstream.ops.generate import GenConfig, write_dir
from edxstream.ops.pipeline import load_clickhouse_events
from sinks import migrate, rows
from tests.conftest import CORPUS
from tests.test_analyst_data import COURSE, DAY1, LEARNERS, Builder, load_course

SMALL = GenConfig(
    events=60_000, courses=1, learners=250, days=60, end=date(2026, 6, 1), seed=11, malformed=0, prefixed=0
)


def load_generated(settings, tmp: Path, cfg: GenConfig = SMALL) -> pd.DataFrame:
    out = tmp / "gen"
    write_dir(cfg, out, rotate="none")
    with open(out / "tracking.log", "rb") as f:  # plain text (rotate="none")
        assert load_clickhouse_events(settings, f) > 0.99 * cfg.events
    truth = pd.DataFrame(json.loads((out / generate.TRUTH_FILE).read_bytes()))
    if settings.pseudonymize:
        truth["user_id"] = [privacy.pseudonym_user_id(u, settings.pseudonym_key) for u in truth["user_id"]]
    return truth


def analyze(settings, monkeypatch, capsys, *args: str):
    """``edxstream analyze`` in this process (it holds the test's chdb folder); its
    captured output (.out, .err)."""
    monkeypatch.setenv("EDXSTREAM_CLICKHOUSE_URL", settings.clickhouse_url)
    monkeypatch.setenv("EDXSTREAM_CLICKHOUSE_DATABASE", settings.clickhouse_database)
    monkeypatch.setenv("EDXSTREAM_HOME", str(settings.home))
    assert cli.main(["analyze", *args]) == 0
    return capsys.readouterr()


def latest(client, table: str, columns: str = "*") -> pd.DataFrame:
    return client.query_df(f"SELECT {columns} FROM {table} WHERE {analysis.LATEST}")


def starts(ev: pd.DataFrame) -> pd.Series:
    """Each learner's start in each course, done here in pandas (``features.START``): their
    first event other than a look at the about page or a request of the enrolment page,
    or their first event if they have nothing else."""
    keys = ["course_id", "user_id"]
    before = ev["interaction"].isin(["course_about.viewed", "enrollment.changed"])
    first = ev.groupby(keys)["time"].min()
    since = ev[~before].groupby(keys)["time"].min()
    return since.reindex(first.index).fillna(first).rename("t0")


EVENTS = """SELECT course_id, assumeNotNull(user_id) AS user_id, time, interaction
            FROM course_events WHERE user_id IS NOT NULL"""


# -- pure ----------------------------------------------------------------------------------


def test_generator_plants_profiles_and_outcomes(tmp_path):
    cfg = GenConfig(events=20_000, courses=2, learners=150, days=30, seed=3)
    write_dir(cfg, tmp_path / "a", rotate="none")
    write_dir(cfg, tmp_path / "b", rotate="none")
    a = (tmp_path / "a" / generate.TRUTH_FILE).read_bytes()
    assert a == (tmp_path / "b" / generate.TRUTH_FILE).read_bytes()  # deterministic, like the log
    truth = pd.DataFrame(json.loads(a))
    names = {p.name for p in generate.PROFILES}
    assert set(truth["profile"]) == names
    assert truth["at_risk"].equals(truth["stops"] | (truth["final_grade"] < generate.PASS_GRADE))
    assert truth.groupby("profile")["stops"].mean()["dropout"] == 1.0
    # the planted abilities show in the events: engaged learners answer better than dropouts
    assert (
        truth.groupby("profile")["ability"].mean()["engaged"]
        > truth.groupby("profile")["ability"].mean()["dropout"] + 0.3
    )


def test_at_risk_is_a_grade_so_far_under_the_default_pass_mark_or_stopping():
    now = pd.DataFrame(
        {
            "user_id": [1, 2, 3, 4, 5],
            "grade_so_far": [0.55, 0.45, None, 0.9, 0.9],
            "span_days": [20.0, 20.0, 20.0, 20.0, 2.0],
            "active_days": [5, 5, 5, 5, 3],
            "days_since_last": [1.0, 1.0, 1.0, 10.0, 20.0],
        }
    )
    # Open edX passes a course at 0.5 by default: 0.55 passes, 0.45 does not; no grade yet
    # is not failing; silent for 20 days after coming every day is stopped, 10 days after
    # coming every five is not
    assert prediction.PASS_GRADE == 0.5
    assert prediction.outcomes(now)["at_risk"].tolist() == [False, True, False, False, True]


def test_segments_keep_their_numbers_across_runs():
    rng = np.random.default_rng(1)
    centres = np.array([[0.8, 0.1, 0.9], [0.1, 0.8, 0.9], [0.4, 0.4, 0.1]])
    data = np.vstack([c + rng.normal(0, 0.05, (60, 3)) for c in centres])
    frame = pd.DataFrame(data, columns=["video_share", "problem_share", "persistence"])
    first = segments.segment(frame)
    assert first.k == 3
    # the next run sees the learners in another order; each keeps its segment number
    order = rng.permutation(len(frame))
    second = segments.segment(frame.iloc[order].reset_index(drop=True), previous_centres=first.centres)
    assert (second.labels == first.labels[order]).all()
    assert first.descriptions == second.descriptions
    assert "stopped coming early" in first.descriptions[int(first.labels[-1])]


def test_recommendations_never_repeat_what_a_learner_used():
    rows = [(u, f"b{(u + i) % 30}", i) for u in range(90) for i in range(5)]
    inter = pd.DataFrame(rows, columns=["user_id", "block_id", "first_used"])
    recs = recommendations.recommend(inter)
    used = set(zip(inter["user_id"], inter["block_id"], strict=False))
    assert len(recs) > 0 and not any((u, b) in used for u, b in zip(recs["user_id"], recs["block_id"], strict=False))
    # learners walk the blocks in order: the next block is what similar learners used next
    hit, base = recommendations.hit_rate(inter, k=2)
    assert hit == 1.0 and base < 0.5


# -- whole runs on ClickHouse ---------------------------------------------------------------


def test_analyze_writes_every_table_with_run_and_quality(settings, tmp_path, monkeypatch, capsys):
    truth = load_generated(settings, tmp_path)
    out = analyze(settings, monkeypatch, capsys).out
    client = clickhouse.connect(settings)
    runs = latest(client, "analysis_runs")
    assert set(runs["step"]) == {"segments", "prediction", "correlations", "problems", "recommendations", "suggestions"}
    assert (runs["status"] == analysis.OK).all(), runs[["step", "message"]]
    quality = {s: json.loads(q) for s, q in zip(runs["step"], runs["quality"], strict=False)}
    assert 0.5 < quality["prediction"]["auc"] <= 1 and quality["prediction"]["trained_on"] >= 30
    assert quality["recommendations"]["hit_rate_at_10"] > quality["recommendations"]["baseline_hit_rate_at_10"]
    assert runs["run_id"].iloc[0] in out

    seg = latest(client, "learner_segments")
    placed = seg[seg["segment"] != segments.UNPLACED].merge(truth, on="user_id")
    assert len(placed) > 100
    assert adjusted_rand_score(placed["profile"], placed["segment"]) > 0.4
    pred = latest(client, "learner_predictions")
    assert pred["risk"].between(0, 1).all() and (pred["drivers"].str.count(",") == 2).all()
    recs = latest(client, "recommendations")
    used = set(
        map(
            tuple,
            client.query(
                "SELECT DISTINCT user_id, block_id FROM course_events "
                "WHERE category IN ('video', 'assessment') AND block_id IS NOT NULL"
            ).result_rows,
        )
    )
    assert len(recs) and not any((u, b) in used for u, b in zip(recs["user_id"], recs["block_id"], strict=False))
    teacher = latest(client, "suggestions").query("audience == 'teacher'")["text"]
    assert teacher.str.contains("fail the first try").any() and teacher.str.startswith("Segments:").any()
    # the course report shows them
    course = runs["course_id"].iloc[0]
    page = report.write_report(open_runner(settings), course, tmp_path / "report").read_text()
    assert html.escape(teacher.iloc[0]) in page and "No analysis yet" not in page

    # a second run on the same events: a new run id, and every learner keeps their segment
    analyze(settings, monkeypatch, capsys)
    again = latest(client, "learner_segments")
    assert again["run_id"].iloc[0] != seg["run_id"].iloc[0]
    merged = seg.merge(again, on="user_id")
    assert (merged["segment_x"] == merged["segment_y"]).mean() > 0.95


def test_too_few_learners_get_not_enough_data(settings, monkeypatch, capsys):
    load_course(settings)  # three learners
    out = analyze(settings, monkeypatch, capsys).out
    runs = latest(clickhouse.connect(settings), "analysis_runs")
    assert len(runs) == 12  # two courses, six steps each
    assert (runs["status"] == analysis.NOT_ENOUGH).all()
    assert runs.query("step == 'segments'")["message"].str.contains("need at least").all()
    assert out.count("not enough data") == 12


def test_analyze_on_an_empty_database_says_so(settings, monkeypatch, capsys):
    load_course(settings)
    clickhouse.connect(settings).command("TRUNCATE TABLE events")
    assert "no course events" in analyze(settings, monkeypatch, capsys).err
    assert clickhouse.connect(settings).command("SELECT count() FROM analysis_runs") == 0


def test_analyze_runs_on_the_public_corpus(settings, monkeypatch, capsys):
    corpus = CORPUS / "public-tracking.log"
    if not corpus.exists():
        pytest.skip("shared corpus not present")
    with open(corpus, "rb") as f:  # plain text
        assert load_clickhouse_events(settings, f) > 0
    out = analyze(settings, monkeypatch, capsys).out
    runs = latest(clickhouse.connect(settings), "analysis_runs")
    assert len(runs) and set(runs["status"]) <= {analysis.OK, analysis.NOT_ENOUGH}
    # every step reports, and a step without enough learners says why instead of fitting
    assert (runs.query("status != 'ok'")["message"] != "").all()
    assert len(out.splitlines()) == 1 + len(runs) + runs["course_id"].nunique()


def test_analyze_runs_on_a_demo_sized_log(settings, tmp_path, monkeypatch, capsys):
    # the sample `edxstream demo` generates by default: 14 days are too few to know anyone's
    # outcome, so prediction says so while the other steps fit
    load_generated(settings, tmp_path, GenConfig(events=40_000, courses=4, learners=1_500, days=14))
    out = analyze(settings, monkeypatch, capsys).out
    runs = latest(clickhouse.connect(settings), "analysis_runs")
    assert runs["course_id"].nunique() == 4 and len(out.splitlines()) == 1 + 4 + len(runs)
    assert (runs.query("step == 'prediction'")["message"].str.contains("in the course for 28 days")).all()
    assert (runs.query("step == 'recommendations'")["status"] == analysis.OK).any()


def test_segments_place_any_learner_at_the_nearest_centre():
    rng = np.random.default_rng(2)
    centres = np.array([[0.9, 0.1], [0.1, 0.9]])
    frame = pd.DataFrame(
        np.vstack([c + rng.normal(0, 0.05, (40, 2)) for c in centres]), columns=["video_share", "problem_share"]
    )
    s = segments.segment(frame, k_range=range(2, 3))
    # the learners of the fit land where the fit put them; new ones by their nearest centre
    assert (s.nearest(frame) == s.labels).all()
    newcomers = pd.DataFrame({"video_share": [0.8, 0.2], "problem_share": [0.05, 0.7]})
    assert list(s.nearest(newcomers)) == [s.labels[0], s.labels[-1]]


def test_early_features_carry_other_courses_only_from_before_the_window_end(settings, tmp_path):
    load_generated(settings, tmp_path, GenConfig(events=15_000, courses=2, learners=120, days=40, seed=5))
    runner = open_runner(settings)
    as_of = analysis.latest_event_time(runner)
    early = features.load_features(runner, as_of, prediction.EARLY_DAYS)
    # the same count, done here in pandas from the events themselves
    ev = features.read_frame(runner, EVENTS)
    t0 = starts(ev).rename("time").reset_index()
    t0["end"] = np.minimum(t0["time"] + pd.Timedelta(days=prediction.EARLY_DAYS), pd.Timestamp(as_of))
    pairs = t0.merge(ev, on="user_id", suffixes=("", "_other"))
    before = pairs[(pairs["course_id_other"] != pairs["course_id"]) & (pairs["time_other"] < pairs["end"])]
    expected = before.groupby(["course_id", "user_id"]).size()
    got = early.set_index(["course_id", "user_id"])["other_events"]
    assert (got > 0).sum() > 10  # learners in both courses
    assert got[got > 0].astype(int).sort_index().equals(expected.sort_index().astype(int).rename("other_events"))
    assert (got.drop(expected.index) == 0).all()


def test_features_now_count_every_event_of_each_learner(settings, tmp_path):
    load_generated(settings, tmp_path, GenConfig(events=8_000, courses=2, learners=80, days=40, seed=5))
    runner = open_runner(settings)
    as_of = analysis.latest_event_time(runner)
    now = features.load_features(runner, as_of)
    ev = features.read_frame(runner, EVENTS)
    per = ev.groupby(["course_id", "user_id"])["time"].agg(["size", "min", "max"]).join(starts(ev))
    got = now.set_index(["course_id", "user_id"]).loc[per.index]
    assert len(now) == len(per)
    assert (got["events"].to_numpy() == per["size"].to_numpy()).all()
    # their time in the course starts when they enrolled: the look at the about page and
    # the enrolment page's request just before it are not part of it
    assert (got["first_seen"].to_numpy() == per["t0"].to_numpy()).all()
    assert (per["t0"] > per["min"]).mean() > 0.9
    span = (per["max"] - per["t0"]).dt.total_seconds() / 86400
    assert np.allclose(got["span_days"].to_numpy(), span.to_numpy(), atol=1e-5)
    # the early features see a learner's first days only, counted from that start
    early = features.load_features(runner, as_of, prediction.EARLY_DAYS).set_index(["course_id", "user_id"])
    first = ev.merge(per["t0"].reset_index(), on=["course_id", "user_id"])
    first = first[
        (first["time"] >= first["t0"]) & (first["time"] < first["t0"] + pd.Timedelta(days=prediction.EARLY_DAYS))
    ]
    expected = first.groupby(["course_id", "user_id"]).size()
    assert (early.loc[expected.index, "events"].to_numpy() == expected.to_numpy()).all()
    assert (early.loc[expected.index, "first_seen"].to_numpy() == per.loc[expected.index, "t0"].to_numpy()).all()


def test_a_learners_days_in_a_course_start_at_their_enrolment(settings):
    """Someone who looked at a course's about page three weeks before enrolling: their
    first two weeks and how long they have been in the course (and so whether they have
    been there long enough for a known outcome) count from the enrolment."""
    client = clickhouse.connect(settings)
    migrate.migrate_clickhouse(settings, client=client)
    b = Builder()
    day1 = DAY1
    about = dict(action="/courses/{course_id}/about", event_type=f"/courses/{COURSE}/about")
    # alice: the about page, then three weeks later the enrolment page, the enrolment and some work
    b.add("alice_w", day1 - timedelta(days=21), "access", **about)
    b.add("alice_w", day1 - timedelta(seconds=20), "enrollment", "/change_enrollment")
    b.add("alice_w", day1, "enrollment", "edx.course.enrollment.activated")
    b.add("alice_w", day1 + timedelta(minutes=5), "content", "edx.ui.lms.sequence.tab_selected")
    b.add("alice_w", day1 + timedelta(days=10), "content", "edx.ui.lms.sequence.tab_selected")
    # bob enrolled before the log began: his first visit of the course home starts his time
    b.add(
        "bob_k", day1 + timedelta(hours=1), "access", f"/courses/{COURSE}/course", action="/courses/{course_id}/course"
    )
    b.add("bob_k", day1 + timedelta(hours=2), "content", "edx.ui.lms.sequence.tab_selected")
    # carol only looked at the about page: she starts there
    b.add("carol_z", day1 - timedelta(days=3), "access", **about)
    client.insert("events", [rows.clickhouse_event_row(e) for e in b.events], column_names=list(ENRICHED_FIELDS))
    runner = open_runner(settings)
    as_of = day1 + timedelta(days=30)
    now = features.load_features(runner, as_of).set_index("user_id")
    early = features.load_features(runner, as_of, prediction.EARLY_DAYS).set_index("user_id")
    alice, bob, carol = (LEARNERS[w][0] for w in ("alice_w", "bob_k", "carol_z"))
    assert now.loc[alice, "events"] == 5  # every event of hers in the course
    assert now.loc[alice, "first_seen"] == pd.Timestamp(day1)
    assert now.loc[alice, "span_days"] == pytest.approx(10.0)
    assert now.loc[alice, "present_days"] == pytest.approx(30.0)
    # her first two weeks: the enrolment and her two visits, silent for the last four days
    assert early.loc[alice, "events"] == 3
    assert early.loc[alice, "first_seen"] == pd.Timestamp(day1)
    assert early.loc[alice, "days_since_last"] == pytest.approx(4.0)
    assert now.loc[bob, "first_seen"] == pd.Timestamp(day1 + timedelta(hours=1))
    assert now.loc[carol, "first_seen"] == pd.Timestamp(day1 - timedelta(days=3))


def test_early_features_count_the_last_week_units_and_first_try_points(settings, tmp_path):
    load_generated(settings, tmp_path, GenConfig(events=8_000, courses=1, learners=60, days=40, seed=5))
    runner = open_runner(settings)
    as_of = analysis.latest_event_time(runner)
    early = features.load_features(runner, as_of, prediction.EARLY_DAYS).set_index(["course_id", "user_id"])
    # the same counts, done here in pandas from the events of each learner's first days
    ev = features.read_frame(
        runner,
        """SELECT course_id, assumeNotNull(user_id) AS user_id, time, event_type, interaction, problem_id, success,
                  grade, max_grade FROM course_events WHERE user_id IS NOT NULL""",
    )
    ev = ev.merge(starts(ev).reset_index(), on=["course_id", "user_id"])
    end = np.minimum(ev["t0"] + pd.Timedelta(days=prediction.EARLY_DAYS), pd.Timestamp(as_of))
    ev = ev.assign(end=end)
    ev = ev[(ev["time"] >= ev["t0"]) & (ev["time"] < ev["t0"] + pd.Timedelta(days=prediction.EARLY_DAYS))]
    keys = ["course_id", "user_id"]
    recent = ev[ev["time"] >= ev["end"] - pd.Timedelta(days=7)].groupby(keys).size()
    got = early["recent_events"]
    assert (got > 0).sum() > 5 and (got == 0).sum() > 5  # some active in their second week, some gone
    assert got[got > 0].sort_index().equals(recent.sort_index().astype(got.dtype).rename("recent_events"))
    nav = ev["event_type"].isin(["seq_next", "seq_prev", "seq_goto"]) | ev["event_type"].str.contains(
        "/courseware/[^/]+/[^/]+/$"
    )
    units = ev[nav].groupby(keys).size()
    assert (early.loc[units.index, "units_visited"].to_numpy() == units.to_numpy()).all()
    # first-try points: each problem's first graded check, its points over its maximum
    checks = ev[ev["problem_id"].notna() & ev["success"].notna() & (ev["max_grade"] > 0)].sort_values("time")
    first = checks.groupby([*keys, "problem_id"]).first().groupby(keys)[["grade", "max_grade"]].sum()
    expected = first["grade"] / first["max_grade"]
    assert len(expected) > 10
    assert np.allclose(early.loc[expected.index, "first_try_points"].to_numpy(), expected.to_numpy())
    assert ((expected > 0) & (expected < 1)).any()


def test_write_inserts_a_run_in_batches_and_every_row_arrives(settings, tmp_path):
    load_generated(settings, tmp_path, GenConfig(events=15_000, courses=1, learners=150, days=40, seed=5))
    runner = open_runner(settings)
    client = clickhouse.connect(settings)
    as_of = analysis.latest_event_time(runner)
    now = features.load_features(runner, as_of)
    res = analysis.analyze_course(
        now["course_id"].iloc[0],
        now,
        features.load_features(runner, as_of, prediction.EARLY_DAYS),
        features.load_interactions(runner, as_of),
        as_of,
    )
    summary = analysis.RunSummary("batched", as_of, as_of, [res])
    assert len(res.tables["recommendations"]) > 3 * 97
    analysis.write(client, summary, batch=97)
    for table, df in res.tables.items():
        got = latest(client, table)
        assert len(got) == len(df), table
        assert set(got["run_id"]) == {"batched"}
    assert len(latest(client, "analysis_runs")) == len(res.steps)
