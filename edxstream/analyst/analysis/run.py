"""One run of the analysis: read the events, fit every step per course, write the tables.

``analyze_course`` is pure: a course's features (now, and over each learner's first
weeks) and content interactions in, the rows of every analysis table out, with a status
per step ("ok", or "not enough data" and why). ``run`` is the I/O around it: it reads
through the analyst query path (``edxstream.core.chdb_server.Runner``), including the
previous run's segment centres so segments keep their numbers, and writes the rows with
a ClickHouse client (the analysis tables are written the way the sinks write theirs; the
query path only reads).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from edxstream.analyst.analysis import correlations, features, prediction, recommendations, segments, suggestions
from edxstream.core.chdb_server import ANALYSIS_TABLES, Runner

OK, NOT_ENOUGH = "ok", "not enough data"
# WHERE condition keeping an analysis table's rows of the latest run of each course
LATEST = "(course_id, run_id) IN (SELECT course_id, run_id FROM latest_analysis_runs)"
TABLES = ANALYSIS_TABLES
# Rows per insert: each insert is encoded, sorted and compressed into a part whole, and
# the engine keeps the memory it took; a course of 100,000 learners has some 650,000
# recommendation rows, which in one insert took 750 MB more, in inserts of 10,000 rows
# under 200 MB (the parts are merged in the background as usual).
WRITE_ROWS = 10_000


@dataclass
class CourseResult:
    course_id: str
    steps: list[dict] = field(default_factory=list)  # step, status, learners, quality, message
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    def step(self, name: str, status: str, learners: int, message: str = "", **quality) -> None:
        self.steps.append(
            {
                "step": name,
                "status": status,
                "learners": learners,
                "quality": json.dumps(
                    {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in quality.items()}
                ),
                "message": message,
            }
        )


def analyze_course(
    course_id: str,
    now: pd.DataFrame,
    early: pd.DataFrame,
    interactions: pd.DataFrame,
    as_of: datetime,
    previous_centres: pd.DataFrame | None = None,
) -> CourseResult:
    res = CourseResult(course_id)
    n = len(now)
    as_of_ts = pd.Timestamp(as_of)
    # segments
    seg_of = None
    profiles = None
    placed = now[now["events"] >= segments.MIN_EVENTS]
    try:
        s = segments.segment(features.behaviour_shares(placed), previous_centres)
    except ValueError as exc:
        res.step("segments", NOT_ENOUGH, n, f"{exc} (with {segments.MIN_EVENTS} events or more)")
    else:
        seg = pd.Series(segments.UNPLACED, index=now["user_id"].to_numpy())
        seg[placed["user_id"].to_numpy()] = s.labels.astype(int)
        words = {**s.descriptions, segments.UNPLACED: segments.UNPLACED_LABEL}
        seg_of = seg.map(words)
        res.tables["learner_segments"] = pd.DataFrame(
            {
                "user_id": seg.index,
                "segment": seg.to_numpy(),
                "segment_label": seg_of.to_numpy(),
                "silhouette": s.silhouette,
            }
        )
        counts = pd.Series(s.labels).value_counts()
        profiles = pd.DataFrame(
            {
                "method": "kmeans",
                "segment": s.centres.index.astype(int),
                "label": [s.descriptions[int(i)] for i in s.centres.index],
                "description": [s.descriptions[int(i)] for i in s.centres.index],
                "learners": [int(counts.get(i, 0)) for i in s.centres.index],
                "centre": [
                    json.dumps({c: round(float(v), 4) for c, v in row.items()}) for _, row in s.centres.iterrows()
                ],
                "k": s.k,
                "silhouette": s.silhouette,
            }
        )
        res.tables["segment_profiles"] = profiles
        res.step(
            "segments",
            OK,
            n,
            placed=len(placed),
            k=s.k,
            silhouette=round(s.silhouette, 4),
            silhouettes={str(k): round(v, 4) for k, v in s.silhouettes.items()},
        )
    # prediction
    pred = None
    try:
        p = prediction.predict(early, now, as_of_ts)
    except ValueError as exc:
        res.step("prediction", NOT_ENOUGH, n, str(exc))
    else:
        pred = p.frame
        res.tables["learner_predictions"] = pred.assign(auc=p.auc, r2=p.r2, trained_on=p.trained_on)
        res.step(
            "prediction",
            OK,
            n,
            auc=p.auc,
            r2=p.r2,
            trained_on=p.trained_on,
            validated_on=p.validated_on,
            risk_model=p.method,
        )
    # correlations and problems
    outcomes = prediction.outcomes(now)
    corr = correlations.behaviour_correlations(now, outcomes, [c for c in features.BEHAVIOUR if c in now])
    if corr.empty:
        res.step("correlations", NOT_ENOUGH, n, f"{n} learners; correlations need at least {correlations.MIN_LEARNERS}")
    else:
        res.tables["behaviour_correlations"] = corr
        res.step("correlations", OK, n, pairs=len(corr), significant=int((corr["p_value"] < 0.05).sum()))
    difficulty = correlations.problem_difficulty(interactions, seg_of)
    if difficulty.empty:
        res.step("problems", NOT_ENOUGH, n, f"no problem with {correlations.MIN_LEARNERS} or more first tries")
    else:
        res.tables["problem_difficulty"] = difficulty
        res.step("problems", OK, n, problems=int((difficulty["segment_label"] == "").sum()))
    # recommendations
    recs = None
    n_blocks = interactions["block_id"].nunique()
    if interactions["user_id"].nunique() < recommendations.MIN_LEARNERS or n_blocks < recommendations.MIN_BLOCKS:
        res.step(
            "recommendations",
            NOT_ENOUGH,
            n,
            f"{interactions['user_id'].nunique()} learners and {n_blocks} "
            f"content blocks; recommendations need {recommendations.MIN_LEARNERS} and {recommendations.MIN_BLOCKS}",
        )
    else:
        grade = outcomes.set_index("user_id")["grade"]
        hit, base = recommendations.hit_rate(interactions, grade)
        recs = remediate(recommendations.recommend(interactions, grade), interactions, difficulty)
        res.tables["recommendations"] = recs.assign(hit_rate=hit, baseline_hit_rate=base)
        res.step("recommendations", OK, n, hit_rate_at_10=hit, baseline_hit_rate_at_10=base)
    # suggestions
    teacher = suggestions.for_teachers(difficulty, profiles, pred, corr)
    learner = suggestions.for_learners(pred, recs)
    rows = [("teacher", None, i + 1, t) for i, t in enumerate(teacher)]
    rows += [("learner", int(r.user_id), 1, r.text) for r in learner.itertuples()]
    res.tables["suggestions"] = pd.DataFrame(rows, columns=["audience", "user_id", "priority", "text"])
    res.step("suggestions", OK if rows else NOT_ENOUGH, n, "" if rows else "nothing to say yet", texts=len(rows))
    return res


def remediate(recs: pd.DataFrame, interactions: pd.DataFrame, difficulty: pd.DataFrame) -> pd.DataFrame:
    """Put, first, the block that helped others with an error-prone problem the learner
    failed on the first try (if they have not used it), then the collaborative picks."""
    recs = recs.assign(reason="learners with a similar path used it")
    helpful = difficulty[(difficulty["segment_label"] == "") & (difficulty["helpful_block"] != "")]
    if helpful.empty:
        return recs
    failed = interactions[interactions["first_ok"].notna() & ~interactions["first_ok"].astype(bool)]
    failed = failed.merge(
        helpful[["problem_id", "helpful_block", "helpful_lift"]], left_on="block_id", right_on="problem_id"
    )
    # only a block the learner has not used: an anti-join on (learner, block)
    used = interactions[["user_id", "block_id"]].rename(columns={"block_id": "helpful_block"}).drop_duplicates()
    failed = failed.merge(used, on=["user_id", "helpful_block"], how="left", indicator=True)
    failed = failed[failed["_merge"] == "left_only"].drop(columns="_merge")
    if failed.empty:
        return recs
    first = failed.sort_values("helpful_lift", ascending=False).drop_duplicates("user_id")
    extra = pd.DataFrame(
        {
            "user_id": first["user_id"].astype(int),
            "rank": 0,
            "block_id": first["helpful_block"],
            "score": first["helpful_lift"].astype(float),
            "reason": [
                f"learners who used it before {suggestions.short(p)} passed it {lift:.1f} times as often"
                for p, lift in zip(first["problem_id"], first["helpful_lift"], strict=False)
            ],
        }
    )
    merged = pd.concat([extra, recs], ignore_index=True)
    merged = merged.drop_duplicates(["user_id", "block_id"]).sort_values(["user_id", "rank"], kind="stable")
    merged["rank"] = merged.groupby("user_id").cumcount() + 1
    return merged[merged["rank"] <= recommendations.TOP].reset_index(drop=True)


# -- I/O -------------------------------------------------------------------------------------


def latest_event_time(runner: Runner) -> datetime | None:
    text = runner.raw("SELECT toUnixTimestamp64Micro(max(time)), count() FROM course_events", "TabSeparated")
    micros, count = text.decode().split()
    if int(count) == 0:
        return None
    return datetime.fromtimestamp(int(micros) / 1e6, timezone.utc)


def previous_centres(runner: Runner) -> dict[str, pd.DataFrame]:
    """The latest run's k-means centres per course (segment number -> feature means)."""
    df = features.read_frame(
        runner,
        f"""
        SELECT course_id, segment, centre FROM segment_profiles
        WHERE method = 'kmeans' AND {LATEST}
        ORDER BY course_id, segment""",
    )
    out: dict[str, pd.DataFrame] = {}
    for course, part in df.groupby("course_id"):
        out[str(course)] = pd.DataFrame([json.loads(c) for c in part["centre"]], index=part["segment"].astype(int))
    return out


@dataclass
class RunSummary:
    run_id: str
    run_at: datetime
    as_of: datetime
    courses: list[CourseResult]


def run(
    runner: Runner,
    client,
    as_of: datetime | None = None,
    courses: list[str] | None = None,
    say: Callable[[str], None] = lambda s: None,
) -> RunSummary:
    """Analyse every course (or ``courses``) as of ``as_of`` (default: the latest event)
    and write the tables with ``client``; returns what was done per course."""
    run_at = datetime.now(timezone.utc)
    run_id = f"{run_at:%Y%m%dT%H%M%S}Z-{secrets.token_hex(3)}"
    as_of = as_of or latest_event_time(runner)
    summary = RunSummary(run_id, run_at, as_of or run_at, [])
    if as_of is None:
        return summary
    say(f"reading learner features as of {as_of:%Y-%m-%d %H:%M} UTC")
    now = features.load_features(runner, as_of)
    early = features.load_features(runner, as_of, prediction.EARLY_DAYS)
    inter = features.load_interactions(runner, as_of)
    prev = previous_centres(runner)
    ids = sorted(now["course_id"].unique()) if courses is None else courses
    # One thread for the numeric libraries: on a machine shared with the pipeline,
    # OpenMP threads that spin waiting for each other made the fits ten times slower.
    with threadpool_limits(limits=1):
        for i, course in enumerate(ids, 1):
            say(f"[{i}/{len(ids)}] {course}")
            summary.courses.append(
                analyze_course(
                    course,
                    now[now["course_id"] == course].reset_index(drop=True),
                    early[early["course_id"] == course].reset_index(drop=True),
                    inter[inter["course_id"] == course].reset_index(drop=True),
                    as_of,
                    prev.get(course),
                )
            )
    write(client, summary)
    return summary


def write(client, summary: RunSummary, batch: int = WRITE_ROWS) -> None:
    """Insert every table's rows of the run, ``batch`` rows at a time; ``analysis_runs``
    last, so the ``latest_analysis_runs`` view never points at a run whose rows are not
    all in."""
    stamp = {"run_id": summary.run_id, "run_at": summary.run_at}
    frames: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}
    for c in summary.courses:
        for table, df in c.tables.items():
            if len(df):
                frames[table].append(df.assign(course_id=c.course_id, **stamp))
        frames["analysis_runs"].append(
            pd.DataFrame(c.steps).assign(course_id=c.course_id, as_of=summary.as_of, **stamp)
        )
    for table in TABLES[1:] + TABLES[:1]:
        if frames[table]:
            df = pd.concat(frames[table], ignore_index=True)
            df = df.replace({np.nan: None}) if table == "suggestions" else df
            for start in range(0, len(df), batch):
                client.insert_df(table, df.iloc[start : start + batch])
