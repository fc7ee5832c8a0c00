"""How good and how fast ``edxstream analyze`` is, each figure next to a baseline from the same run.

    python bench/bench_analysis.py [--scale small|full] [--json FILE]

1. Quality, on a generated log whose learners have hidden profiles and outcomes
   (``edxstream.ops.generate``, stated model there; ``truth.json``). The log is parsed
   and its events stored in ClickHouse as the pipeline stores them (without Kafka:
   ``pipeline.load_clickhouse_events``), then one ``analyze`` run, then:
   - ARI of the segments against the planted profiles (learners placed in a segment),
     next to k-means with the same k on raw counts per category, and a Gaussian mixture
     (k by BIC) on the same features; and over every learner, those with too few events
     put in the segment with the nearest centre (and as stored: apart, as 999);
   - AUC of the week-2 "at risk" prediction against the planted at-risk outcome, next to
     "days since the last activity at week 2" as the risk score, the model before
     (logistic regression on the week-2 counts, trained the same way) and the ceiling of
     these inputs (the same model fitted to the planted outcome itself, 5 folds of
     learners);
   - R² of the week-2 grade prediction against the grade at the end of the log, on the
     later learners the run held out (its own figure), next to "the grade so far at
     week 2" as the prediction for the same kind of learners;
   - recommendation hit rate at 10 on each learner's latest blocks held out, next to the
     most-popular baseline (the run's own figures).
2. Scale: a larger generated log stored in its own ClickHouse folder (by a child
   process), then what ``analyze`` does before writing, in a fresh child each time: read
   the features from ClickHouse and fit every step, as of a quarter, half and all of the
   way through the log: how the time and memory grow with the events.
   With ``--scale full``, the target measured: a log of about 2 million events of
   100,000 learners in one course stored in a folder of its own (by a child, not timed),
   then one ``analyze`` run (read, fit every step, write the tables) in a fresh child:
   its wall time, CPU time and peak memory (VmHWM), next to the aim.
3. The public corpus (``../shared/corpus/public-tracking.log``): every step runs, and says
   "not enough data" where a course has too few learners.

One process, plus the children of the scale part; nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.mixture import GaussianMixture  # noqa: E402
from sklearn.model_selection import GroupKFold, cross_val_predict  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.metrics import adjusted_rand_score, r2_score, roc_auc_score  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from edxstream.analyst.analysis import features, prediction, segments  # noqa: E402
from edxstream.analyst.cli import _ts  # noqa: E402
from edxstream.analyst.analysis import run as analysis  # noqa: E402
from edxstream.core import clickhouse  # noqa: E402
from edxstream.core.chdb_server import open_runner  # noqa: E402
from edxstream.core.settings import load  # noqa: E402
from edxstream.ops import generate  # noqa: E402
from edxstream.ops.generate import GenConfig, write_dir  # noqa: E402
from edxstream.ops.pipeline import load_clickhouse_events  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "public-tracking.log"
SCALES = {
    "full": {
        "quality": GenConfig(events=400_000, courses=3, learners=2_000, days=70, seed=42, malformed=0, prefixed=0),
        "scale": GenConfig(events=300_000, courses=1, learners=15_000, days=70, seed=7),
        # about 100,000 learners in one course: shorter sessions than the generator's
        # default spread 2 million events over that many
        "target": GenConfig(
            events=2_000_000, courses=1, learners=300_000, days=70, seed=7, malformed=0, prefixed=0, session_events=8
        ),
    },
    "small": {
        "quality": GenConfig(events=40_000, courses=1, learners=200, days=60, seed=42, malformed=0, prefixed=0),
        "scale": GenConfig(events=40_000, courses=1, learners=2_000, days=70, seed=7),
        "target": None,  # the measured target is part of --scale full only
    },
}
AIMS = {"ari": 0.7, "auc": 0.85, "hit_vs_baseline": 1.5, "fit_seconds": 60, "fit_peak_mb": 1536}


def say(msg: str) -> None:
    print(msg, flush=True)


def settings_for(work: Path, name: str):
    # pseudonymize off: the bench matches learners to the generator's truth by user id
    return load(
        home=work / name, clickhouse_url=f"chdb://{work / 'clickhouse'}", clickhouse_database=name, pseudonymize=False
    )


def latest(client, table: str, columns: str = "*") -> pd.DataFrame:
    return client.query_df(f"SELECT {columns} FROM {table} WHERE {analysis.LATEST}")


# -- 1. quality --------------------------------------------------------------------------------


def bench_quality(work: Path, cfg: GenConfig) -> dict:
    t = time.monotonic()
    write_dir(cfg, work / "gen", rotate="none")
    truth = pd.DataFrame(json.loads((work / "gen" / generate.TRUTH_FILE).read_bytes()))
    s = settings_for(work, "quality")
    client = clickhouse.connect(s)
    with open(work / "gen" / "tracking.log", "rb") as f:  # plain text (rotate="none")
        n = load_clickhouse_events(s, f, client)
    say(
        f"quality: {n:,} generated events of {cfg.learners:,} learners in {cfg.courses} courses loaded "
        f"in {time.monotonic() - t:.0f} s"
    )
    runner = open_runner(s)
    t = time.monotonic()
    summary = analysis.run(runner, client)
    run_seconds = time.monotonic() - t
    runs = latest(client, "analysis_runs")
    quality = {
        (c, st): json.loads(q) for c, st, q in zip(runs["course_id"], runs["step"], runs["quality"], strict=False)
    }

    # segments vs planted profiles, and the raw-count baseline with the same k; a
    # Gaussian mixture (k by BIC) on the same features as a second method; and every
    # learner, those under MIN_EVENTS put in the segment with the nearest centre
    seg = latest(client, "learner_segments").merge(truth, on=["course_id", "user_id"])
    now = features.load_features(runner, summary.as_of)
    ari, base_ari, gmm_ari, all_ari, table_ari, placed, weights, all_weights = [], [], [], [], [], 0, [], []
    for course, everyone in seg.groupby("course_id"):
        part = everyone[everyone["segment"] != segments.UNPLACED]
        if part.empty:
            continue
        k = quality[(course, "segments")]["k"]
        counts = now.merge(part[["course_id", "user_id", "profile"]], on=["course_id", "user_id"])
        raw = np.log1p(counts[["video_events", "assessment_events", "content_events", "forum_events"]].to_numpy(float))
        shares = features.behaviour_shares(counts)
        mine = now[now["course_id"] == course].merge(everyone[["user_id", "profile"]], on="user_id")
        with threadpool_limits(1):
            base = KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(raw)
            z = StandardScaler().fit_transform(shares)
            mixtures = [GaussianMixture(j, covariance_type="diag", random_state=0).fit(z) for j in segments.K_RANGE]
            gmm = min(mixtures, key=lambda m: m.bic(z)).predict(z)
            fit = segments.segment(features.behaviour_shares(mine[mine["events"] >= segments.MIN_EVENTS]))
        nearest = fit.nearest(features.behaviour_shares(mine))
        ari.append(adjusted_rand_score(part["profile"], part["segment"]))
        base_ari.append(adjusted_rand_score(counts["profile"], base))
        gmm_ari.append(adjusted_rand_score(counts["profile"], gmm))
        all_ari.append(adjusted_rand_score(mine["profile"], nearest))
        table_ari.append(adjusted_rand_score(everyone["profile"], everyone["segment"]))
        weights.append(len(part))
        all_weights.append(len(everyone))
        placed += len(part)

    # at risk at week 2 vs planted outcome; baseline: days since last activity at week 2
    pred = latest(client, "learner_predictions").merge(truth, on=["course_id", "user_id"])
    early = features.load_features(runner, summary.as_of, prediction.EARLY_DAYS)
    pred = pred.merge(
        early[["course_id", "user_id", "days_since_last", "grade_so_far", "first_seen"]], on=["course_id", "user_id"]
    )
    auc = roc_auc_score(pred["at_risk_y"], pred["risk"])
    base_auc = roc_auc_score(pred["at_risk_y"], pred["days_since_last"])
    # the learners the models never learnt from: too new to have a known outcome
    unseen = pred[~prediction.mature(pred, pd.Timestamp(summary.as_of))]
    both = unseen["at_risk_y"].nunique() == 2  # an AUC needs learners of both outcomes
    auc_unseen = roc_auc_score(unseen["at_risk_y"], unseen["risk"]) if both else None
    base_unseen = roc_auc_score(unseen["at_risk_y"], unseen["days_since_last"]) if both else None
    before = previous_model(early, now, pd.Timestamp(summary.as_of)).merge(truth, on=["course_id", "user_id"])
    auc_before = roc_auc_score(before["at_risk"], before["risk"])
    ceiling = truth_ceiling(early, truth)
    # grade at week 2: the run's R² on held-out later learners; baseline on mature learners
    r2 = [quality[(c, "prediction")]["r2"] for c in runs["course_id"].unique() if (c, "prediction") in quality]
    mature = now[prediction.mature(now, pd.Timestamp(summary.as_of))][["course_id", "user_id", "grade_so_far"]]
    naive = pred.merge(mature, on=["course_id", "user_id"], suffixes=("_early", "_end")).dropna(
        subset=["grade_so_far_end"]
    )
    naive_pred = naive["grade_so_far_early"].fillna(naive["grade_so_far_early"].mean())
    base_r2 = r2_score(naive["grade_so_far_end"], naive_pred)
    hit = [quality[(c, "recommendations")] for c in runs["course_id"].unique() if (c, "recommendations") in quality]
    w = np.asarray(weights, float)
    return {
        "quality_events": n,
        "quality_learners": int(len(now)),
        "quality_run_seconds": round(run_seconds, 1),
        "ari": round(float(np.average(ari, weights=w)), 3),
        "ari_baseline_raw_counts": round(float(np.average(base_ari, weights=w)), 3),
        "ari_baseline_gaussian_mixture": round(float(np.average(gmm_ari, weights=w)), 3),
        "ari_placed_share": round(placed / max(1, len(seg)), 3),
        "ari_all_learners_nearest": round(float(np.average(all_ari, weights=all_weights)), 3),
        "ari_all_learners_as_stored": round(float(np.average(table_ari, weights=all_weights)), 3),
        "auc_previous_model": round(float(auc_before), 3),
        "auc_ceiling_fitted_to_truth": round(float(ceiling), 3),
        "auc_at_risk_week2": round(float(auc), 3),
        "auc_baseline_days_since_last": round(float(base_auc), 3),
        "auc_at_risk_week2_unseen": None if auc_unseen is None else round(float(auc_unseen), 3),
        "auc_baseline_unseen": None if base_unseen is None else round(float(base_unseen), 3),
        "auc_unseen_learners": int(len(unseen)),
        "r2_grade_week2": round(float(np.nanmean(r2)), 3),
        "r2_baseline_grade_at_week2": round(float(base_r2), 3),
        "hit_rate_at_10": round(float(np.mean([h["hit_rate_at_10"] for h in hit])), 3),
        "hit_rate_baseline_most_popular": round(float(np.mean([h["baseline_hit_rate_at_10"] for h in hit])), 3),
    }


PREVIOUS_LOG_SCALED = (
    "sessions",
    "events",
    "video_events",
    "assessment_events",
    "content_events",
    "forum_events",
    "videos_watched",
    "video_completions",
    "video_seconds",
    "problems_attempted",
    "forum_posts",
)
PREVIOUS_INPUTS = (
    *PREVIOUS_LOG_SCALED,
    "active_days",
    "first_try_rate",
    "days_since_last",
    "progress",
    "span_days",
    "grade_so_far",
)


def previous_inputs(early: pd.DataFrame) -> pd.DataFrame:
    """The inputs of the model before boosted trees: the counts (log scale) and rates of
    the learner's first weeks, without the shares, the first-try score or other courses."""
    x = early[list(PREVIOUS_INPUTS)].astype(float).copy()
    for c in PREVIOUS_LOG_SCALED:
        x[c] = np.log1p(x[c])
    x["tried_none"] = x["grade_so_far"].isna().astype(float)
    for c in ("first_try_rate", "grade_so_far"):
        x[c] = x[c].fillna(x[c].median())
    return x.fillna(0.0)


def previous_model(early: pd.DataFrame, now: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """Risk per learner from the model before (a logistic regression on
    ``previous_inputs``), trained like the run's on the same outcomes of the learners
    with a known one: the "before" next to the run's "after"."""
    out = []
    for course in sorted(early["course_id"].unique()):
        e, n = early[early["course_id"] == course], now[now["course_id"] == course]
        known = n[prediction.mature(n, as_of)]
        data = e.merge(prediction.outcomes(known), on="user_id")
        if len(data) < prediction.MIN_TRAIN or data["at_risk"].nunique() < 2:
            continue
        with threadpool_limits(1):
            model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.5))
            model.fit(previous_inputs(data), data["at_risk"].astype(int))
            risk = model.predict_proba(previous_inputs(e))[:, 1]
        out.append(pd.DataFrame({"course_id": course, "user_id": e["user_id"].to_numpy(), "risk": risk}))
    return pd.concat(out, ignore_index=True)


def truth_ceiling(early: pd.DataFrame, truth: pd.DataFrame) -> float:
    """How far the week-2 inputs can go: the same inputs and model fitted to the planted
    outcome itself (which no run sees), AUC over 5 folds of learners (a learner's
    courses stay in one fold). Not a figure of the product: the ceiling it is under."""
    data = early.merge(truth, on=["course_id", "user_id"])
    x = pd.concat([prediction.inputs(part) for _, part in data.groupby("course_id")]).loc[data.index]
    risk_model = prediction._models(len(data))[0]
    with threadpool_limits(1):
        p = cross_val_predict(
            risk_model, x, data["at_risk"].astype(int), cv=GroupKFold(5), groups=data["user_id"], method="predict_proba"
        )[:, 1]
    return float(roc_auc_score(data["at_risk"], p))


# -- 2. scale ----------------------------------------------------------------------------------


def _scale_settings(folder):
    """Settings of the scale runs: the scale log's chdb folder, stored as it came."""
    return load(
        home=folder.parent / "scale-home",
        clickhouse_url=f"chdb://{folder}",
        clickhouse_database="scale",
        pseudonymize=False,
    )


def bench_scale_load(folder: Path, cfg: GenConfig) -> None:
    """In a child: generate the scale log and store its events in the chdb ``folder``;
    prints JSON. A process of its own, so the measuring child finds the folder free."""
    t = time.monotonic()
    gen = folder.parent / f"{folder.name}-gen"
    write_dir(cfg, gen, rotate="none")
    s = _scale_settings(folder)
    with open(gen / "tracking.log", "rb") as f:  # plain text (rotate="none")
        n = load_clickhouse_events(s, f)
    shutil.rmtree(gen)  # the events are in the folder now
    print(json.dumps({"scale_events": n, "scale_load_seconds": round(time.monotonic() - t, 1)}))


def bench_scale_fit(folder: Path, share: float) -> None:
    """In a child: what ``edxstream analyze`` does before writing, timed, as of the time
    ``share`` of the way through the log (so the children see three amounts of the same
    log): read the features, the early features (with the other-course history) and the
    interactions from ClickHouse through the analyst query path, then fit every step of
    every course. Prints JSON with the times, the events read, this process's peak memory
    and its memory once the embedded ClickHouse is open (what does not grow with the
    data)."""
    s = _scale_settings(folder)
    runner = open_runner(s)
    first = runner.raw("SELECT toUnixTimestamp64Micro(min(time)) FROM course_events", "TabSeparated")
    last = analysis.latest_event_time(runner)
    start = datetime.fromtimestamp(int(first.decode()) / 1e6, timezone.utc)
    as_of = start + (last - start) * share
    events = int(runner.raw(f"SELECT count() FROM course_events WHERE time <= {_ts(as_of)}", "TabSeparated"))
    base = rss_mb()
    t, cpu = time.monotonic(), time.process_time()
    now = features.load_features(runner, as_of)
    early = features.load_features(runner, as_of, prediction.EARLY_DAYS)
    inter = features.load_interactions(runner, as_of)
    read, read_cpu = time.monotonic() - t, time.process_time() - cpu
    t, cpu = time.monotonic(), time.process_time()
    steps: dict[str, str] = {}
    with threadpool_limits(limits=1):
        for course in sorted(now["course_id"].unique()):
            res = analysis.analyze_course(
                course,
                now[now["course_id"] == course].reset_index(drop=True),
                early[early["course_id"] == course].reset_index(drop=True),
                inter[inter["course_id"] == course].reset_index(drop=True),
                as_of,
            )
            steps.update({st["step"]: st["status"] for st in res.steps})
    fit, fit_cpu = time.monotonic() - t, time.process_time() - cpu
    print(
        json.dumps(
            {
                "events": events,
                "read_seconds": round(read, 1),
                "model_seconds": round(fit, 1),
                "seconds": round(read + fit, 1),
                "read_cpu_seconds": round(read_cpu, 1),
                "model_cpu_seconds": round(fit_cpu, 1),
                "cpu_seconds": round(read_cpu + fit_cpu, 1),
                "learners": int(len(now)),
                "interactions": int(len(inter)),
                "steps": steps,
                "peak_mb": peak_mb(),
                "base_mb": base,
            }
        )
    )


def bench_target_fit(folder: Path) -> None:
    """In a child: what ``edxstream analyze`` does, measured as one run: the same store
    (``SharedStore``, as the command opens it) reads the features and interactions from
    ClickHouse, every step of every course is fitted and the analysis tables are
    written. Prints JSON with the wall and CPU time of the run, the peak memory of the
    process (VmHWM) before it, once the reading was done and at the end, and what was
    fitted."""
    from edxstream.core.chdb_server import SharedStore

    s = _scale_settings(folder)
    store = SharedStore(s)
    try:
        events = int(store.raw("SELECT count() FROM course_events", "TabSeparated"))
        base = peak_mb()
        marks: list[int] = []  # the peak as each course starts: the first is after reading
        t, cpu = time.monotonic(), time.process_time()
        summary = analysis.run(store, store, say=lambda msg: marks.append(peak_mb()) if msg.startswith("[") else None)
        seconds, cpu_seconds = time.monotonic() - t, time.process_time() - cpu
    finally:
        store.close()
    print(
        json.dumps(
            {
                "events": events,
                "learners": sum(st["learners"] for c in summary.courses for st in c.steps if st["step"] == "segments"),
                "courses": len(summary.courses),
                "seconds": round(seconds, 1),
                "cpu_seconds": round(cpu_seconds, 1),
                "peak_mb": peak_mb(),
                "read_peak_mb": marks[0] if marks else peak_mb(),
                "base_mb": base,
                "steps": {st["step"]: st["status"] for c in summary.courses for st in c.steps},
            }
        )
    )


def rss_mb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024)
    return 0


def peak_mb() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it starts afresh at
    exec, so the parent's memory does not count)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def child(*args: str) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"bench child {args[0]} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


SCALE_SHARES = (0.25, 0.5, 1.0)  # how far through the scale log each measuring child reads


def load_args(cfg: GenConfig) -> list[str]:
    return [str(cfg.events), str(cfg.learners), str(cfg.courses), str(cfg.session_events)]


def bench_scale(work: Path, cfg: GenConfig) -> dict:
    """Generate and store ``cfg``'s log (a child), then read and fit it as of a quarter,
    half and all of the way through, each in a fresh child: how reading and fitting grow
    with the events of one log. The times are the child's wall and CPU seconds: on a
    shared machine the wall time says as much about the neighbours as about the fit,
    while the CPU time is what it would take alone (the fit runs on one thread; reading
    may use two, so on an idle machine the wall time is at most this)."""
    folder = work / "scale-clickhouse"
    res = child("--load", str(folder), *load_args(cfg))
    points = [child("--fit", str(folder), str(share)) for share in SCALE_SHARES]
    res.update({f"fit_{k}": v for k, v in points[-1].items()})
    res["fit_points"] = [{k: v for k, v in p.items() if k != "steps"} for p in points]
    for n in points:
        say(
            f"scale: {n['events']:,} events of {n['learners']:,} learners read from ClickHouse and fitted "
            f"({n['interactions']:,} learner x block interactions): read {n['read_seconds']} s "
            f"({n['read_cpu_seconds']} s CPU), fit {n['model_seconds']} s ({n['model_cpu_seconds']} s CPU), peak "
            f"{n['peak_mb']:,} MB ({n['base_mb']} MB with the embedded ClickHouse open, before reading)"
        )
    return res


def bench_target(work: Path, cfg: GenConfig) -> dict:
    """The target measured: ``cfg``'s log (about 2 million events of 100,000 learners with
    ``--scale full``) generated and stored in a ClickHouse folder of its own by a child
    (not timed), then one ``analyze`` run in a fresh child (``bench_target_fit``): its
    wall time, CPU time and peak memory are the figures the aim is about."""
    folder = work / "target-clickhouse"
    loaded = child("--load", str(folder), *load_args(cfg))
    res = {"target_load_seconds": loaded["scale_load_seconds"]}
    run = child("--fit-target", str(folder))
    res.update({f"target_{k}": v for k, v in run.items()})
    say(
        f"target: {run['events']:,} events of {run['learners']:,} learners (stored in "
        f"{loaded['scale_load_seconds']} s, not counted), one analyze run: {run['seconds']} s "
        f"({run['cpu_seconds']} s CPU), peak {run['peak_mb']:,} MB "
        f"({run['read_peak_mb']:,} MB once read, {run['base_mb']} MB before reading)"
    )
    return res


# -- 3. the public corpus ------------------------------------------------------------------------


def bench_corpus(work: Path) -> dict:
    if not CORPUS.exists():
        say("corpus: ../shared/corpus/public-tracking.log is not here; skipped")
        return {}
    s = settings_for(work, "corpus")
    client = clickhouse.connect(s)
    with open(CORPUS, "rb") as f:  # plain text
        n = load_clickhouse_events(s, f, client)
    summary = analysis.run(open_runner(s), client)
    say(f"corpus: {n:,} events, {len(summary.courses)} courses")
    steps: dict[str, int] = {}
    for c in summary.courses:
        for st in c.steps:
            say(f"  {c.course_id[:48]:<48} {st['step']:<16} {st['status']:<16} {st['message'] or st['quality']}")
            steps[st["status"]] = steps.get(st["status"], 0) + 1
    return {"corpus_events": n, "corpus_courses": len(summary.courses), "corpus_steps": steps}


# -- main -----------------------------------------------------------------------------------------


def table(r: dict) -> str:
    rows = [
        ("segments: ARI vs planted (>= 50 events)", "ari", "ari_baseline_raw_counts", "ari"),
        ("  Gaussian mixture, same features", "ari_baseline_gaussian_mixture", None, None),
        ("  every learner, nearest segment", "ari_all_learners_nearest", None, None),
        ("  every learner, as stored (999 apart)", "ari_all_learners_as_stored", None, None),
        ("at risk at week 2: AUC vs planted", "auc_at_risk_week2", "auc_baseline_days_since_last", "auc"),
        ("  learners the models never learnt from", "auc_at_risk_week2_unseen", "auc_baseline_unseen", None),
        ("  previous model (logistic, counts)", "auc_previous_model", None, None),
        ("  ceiling: fitted to the planted outcome", "auc_ceiling_fitted_to_truth", None, None),
        ("grade at week 2: R² (later learners)", "r2_grade_week2", "r2_baseline_grade_at_week2", None),
        ("recommendations: hit rate at 10", "hit_rate_at_10", "hit_rate_baseline_most_popular", None),
    ]
    out = [f"{'figure':<42} {'value':>8} {'baseline':>9}  aim", "-" * 74]
    for title, key, base, aim in rows:
        if key in r:
            a = f">= {AIMS[aim]}" if aim else ""
            if key == "hit_rate_at_10":
                a = f">= {AIMS['hit_vs_baseline']}x baseline (x{r[key] / max(r[base], 1e-9):.2f})"
            b = r[base] if base else ""
            v, b = ("-" if x is None else x for x in (r[key], b))  # too few learners of one outcome
            out.append(f"{title:<42} {v:>8} {b:>9}  {a}")
    if "fit_seconds" in r:
        n = f"{r['fit_learners']:,} learners, {r['fit_events']:,} events"
        out.append(f"{'fit: seconds, ' + n:<42} {r['fit_seconds']:>8} {'':>9}  (read {r['fit_read_seconds']} s)")
        out.append(f"{'fit: CPU seconds, same':<42} {r['fit_cpu_seconds']:>8}")
        out.append(f"{'fit: peak MB, same':<42} {r['fit_peak_mb']:>8}")
    if "target_seconds" in r:
        learners, events = f"{r['target_learners']:,} learners", f"{r['target_events']:,} events"
        out.append(f"{'analyze: seconds, ' + learners:<42} {r['target_seconds']:>8} {'':>9}  < {AIMS['fit_seconds']}")
        out.append(
            f"{'analyze: CPU seconds, ' + events:<42} {r['target_cpu_seconds']:>8} {'':>9}  < {AIMS['fit_seconds']}"
        )
        out.append(f"{'analyze: peak MB, same':<42} {r['target_peak_mb']:>8} {'':>9}  < {AIMS['fit_peak_mb']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--load", nargs=5, help=argparse.SUPPRESS)
    ap.add_argument("--fit", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--fit-target", nargs=1, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.load:
        folder, events, learners, courses, session_events = args.load
        cfg = GenConfig(
            events=int(events),
            learners=int(learners),
            courses=int(courses),
            days=70,
            seed=7,
            malformed=0,
            prefixed=0,
            session_events=float(session_events),
        )
        bench_scale_load(Path(folder), cfg)
        return 0
    if args.fit_target:
        bench_target_fit(Path(args.fit_target[0]))
        return 0
    if args.fit:
        bench_scale_fit(Path(args.fit[0]), float(args.fit[1]))
        return 0
    scale = SCALES[args.scale]
    results: dict = {"analysis_scale": args.scale}
    # chdb's background merges may still be writing in its folder as the run ends
    with tempfile.TemporaryDirectory(prefix="edxstream-bench-analysis-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        results.update(bench_quality(work, scale["quality"]))
        results.update(bench_scale(work, scale["scale"]))
        if scale["target"] is not None:
            results.update(bench_target(work, scale["target"]))
        results.update(bench_corpus(work))
    say("")
    say(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
