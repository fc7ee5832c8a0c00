"""How good and how fast ``edxstream analyze`` is, each figure next to a baseline from the same run.

    python bench/bench_analysis.py [--scale small|full] [--json FILE]

1. Quality, on a generated log whose learners have hidden profiles and outcomes
   (``edxstream.ops.generate``, stated model there; ``truth.json``). The log is parsed
   and its events stored in ClickHouse as the pipeline stores them (without Kafka:
   ``pipeline.load_clickhouse_events``), then one ``analyze`` run, then:
   - ARI of the segments against the planted profiles (learners placed in a segment),
     next to k-means with the same k on raw counts per category;
   - AUC of the week-2 "at risk" prediction against the planted at-risk outcome, next to
     "days since the last activity at week 2" as the risk score;
   - R² of the week-2 grade prediction against the grade at the end of the log, on the
     later learners the run held out (its own figure), next to "the grade so far at
     week 2" as the prediction for the same kind of learners;
   - recommendation hit rate at 10 on each learner's latest blocks held out, next to the
     most-popular baseline (the run's own figures).
2. Scale: one fit of every step for 100,000 learners with 2 million events' worth of
   features. Pushing 2 million generated events through parsing and into chdb takes
   several minutes here, so the features and interactions are drawn directly from the
   same profile model (``synthetic_course``): the time and peak memory are those of the
   fit, not of reading the events. Run in a child process, for its own peak memory.
3. The public corpus (``../shared/corpus/public-tracking.log``): every step runs, and says
   "not enough data" where a course has too few learners.

Single process (plus the child for the scale fit); nothing here asserts a figure.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402
from sklearn.metrics import adjusted_rand_score, r2_score, roc_auc_score  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from edxstream.analyst.analysis import features, prediction, segments  # noqa: E402
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
        "learners": 100_000,
        "events": 2_000_000,
    },
    "small": {
        "quality": GenConfig(events=40_000, courses=1, learners=200, days=60, seed=42, malformed=0, prefixed=0),
        "learners": 5_000,
        "events": 100_000,
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

    # segments vs planted profiles, and the raw-count baseline with the same k
    seg = latest(client, "learner_segments").merge(truth, on=["course_id", "user_id"])
    now = features.load_features(runner, summary.as_of)
    ari, base_ari, placed, weights = [], [], 0, []
    for course, part in seg[seg["segment"] != segments.UNPLACED].groupby("course_id"):
        k = quality[(course, "segments")]["k"]
        counts = now.merge(part[["course_id", "user_id", "profile"]], on=["course_id", "user_id"])
        raw = np.log1p(counts[["video_events", "assessment_events", "content_events", "forum_events"]].to_numpy(float))
        with threadpool_limits(1):
            base = KMeans(n_clusters=k, n_init=4, random_state=0).fit_predict(raw)
        ari.append(adjusted_rand_score(part["profile"], part["segment"]))
        base_ari.append(adjusted_rand_score(counts["profile"], base))
        weights.append(len(part))
        placed += len(part)

    # at risk at week 2 vs planted outcome; baseline: days since last activity at week 2
    pred = latest(client, "learner_predictions").merge(truth, on=["course_id", "user_id"])
    early = features.load_features(runner, summary.as_of, prediction.EARLY_DAYS)
    pred = pred.merge(
        early[["course_id", "user_id", "days_since_last", "grade_so_far", "first_seen"]], on=["course_id", "user_id"]
    )
    auc = roc_auc_score(pred["at_risk_y"], pred["risk"])
    base_auc = roc_auc_score(pred["at_risk_y"], pred["days_since_last"])
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
        "ari_placed_share": round(placed / max(1, len(seg)), 3),
        "auc_at_risk_week2": round(float(auc), 3),
        "auc_baseline_days_since_last": round(float(base_auc), 3),
        "r2_grade_week2": round(float(np.nanmean(r2)), 3),
        "r2_baseline_grade_at_week2": round(float(base_r2), 3),
        "hit_rate_at_10": round(float(np.mean([h["hit_rate_at_10"] for h in hit])), 3),
        "hit_rate_baseline_most_popular": round(float(np.mean([h["baseline_hit_rate_at_10"] for h in hit])), 3),
    }


# -- 2. scale ----------------------------------------------------------------------------------


def synthetic_course(learners: int, events: int, seed: int = 0, blocks: int = 300, days: int = 70):
    """(now, early, interactions) frames for one course drawn from the generator's profile
    model: category shares, ability, stopping, a walk through the blocks in order."""
    rng = np.random.default_rng(seed)
    profs = generate.PROFILES
    p = rng.choice(len(profs), size=learners, p=[x.share for x in profs])
    video, problem, forum = (np.array([getattr(x, a) for x in profs])[p] for a in ("video", "problem", "forum"))
    ability = np.clip(
        np.array([x.ability for x in profs])[p] + rng.normal(0, generate.ABILITY_SD, learners), 0.05, 0.95
    )
    stops = np.array([x.stops for x in profs])[p]
    activity = rng.pareto(1.3, learners) + 1
    ev = np.maximum(3, rng.poisson(activity / activity.sum() * events)).astype(np.int64)
    start = pd.Timestamp("2026-01-01", tz="UTC") + pd.to_timedelta(rng.uniform(0, days * 0.6, learners), unit="D")
    as_of = pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(days=days)
    present = (as_of - start).total_seconds().to_numpy() / 86400
    span = np.where(
        stops,
        np.minimum(rng.exponential(generate.STOP_MEAN_DAYS, learners), present),
        present * rng.uniform(0.6, 1.0, learners),
    )
    kind = rng.choice(["video", "problem"], size=blocks, p=[0.55, 0.45])

    def frame(fraction: np.ndarray, window_days: float | None) -> pd.DataFrame:
        e = np.maximum(1, (ev * fraction).astype(np.int64))
        shares = np.stack([video * 0.6, problem * 0.5, forum * 0.2, np.full(learners, 0.3)], 1)
        shares /= shares.sum(1, keepdims=True)
        cats = np.array([rng.multinomial(n, s) for n, s in zip(e, shares, strict=False)])
        attempted = rng.binomial(np.maximum(1, cats[:, 1] // 5), 0.9)
        first_ok = rng.binomial(attempted, ability)
        sp = np.minimum(span, window_days) if window_days else span
        end = np.minimum(present, window_days) if window_days else present
        return pd.DataFrame(
            {
                "course_id": "bench",
                "user_id": np.arange(learners),
                "first_seen": start,
                "last_seen": start + pd.to_timedelta(sp, unit="D"),
                "active_days": np.maximum(1, np.minimum(sp + 1, e // 25 + 1)).astype(int),
                "sessions": e // 30 + 1,
                "events": e,
                "video_events": cats[:, 0],
                "assessment_events": cats[:, 1],
                "content_events": cats[:, 3],
                "forum_events": cats[:, 2],
                "videos_watched": cats[:, 0] // 8,
                "video_completions": cats[:, 0] // 20,
                "video_seconds": cats[:, 0] * 40.0,
                "problems_attempted": attempted,
                "first_try_rate": np.where(attempted > 0, first_ok / np.maximum(attempted, 1), np.nan),
                "grade_so_far": np.where(
                    attempted > 0, np.clip(ability + 0.1 + rng.normal(0, 0.05, learners), 0, 1), np.nan
                ),
                "forum_posts": cats[:, 2] // 4,
                "days_since_last": end - sp,
                "progress": np.minimum(1, (cats[:, 0] // 8 + attempted) / blocks),
                "span_days": sp,
                "present_days": np.maximum(end, 1),
            }
        )

    now = frame(np.ones(learners), None)
    early = frame(np.minimum(1, prediction.EARLY_DAYS / np.maximum(span, 1)), prediction.EARLY_DAYS)
    # interactions: each learner walks the blocks from the start, using a block of a kind
    # with their profile's probability
    n_used = np.minimum(blocks, np.maximum(1, ev // 6))
    rows_u, rows_b = [], []
    for u in range(learners):
        walk = np.arange(n_used[u])
        keep = rng.random(len(walk)) < np.where(kind[walk] == "video", video[u], problem[u])
        rows_u.append(np.full(keep.sum(), u))
        rows_b.append(walk[keep])
    users, blocks_used = np.concatenate(rows_u), np.concatenate(rows_b)
    t = start.tz_localize(None).to_numpy()[users] + (blocks_used * 3600 * 4).astype("timedelta64[s]")
    is_problem = kind[blocks_used] == "problem"
    ok = np.where(is_problem, rng.random(len(users)) < ability[users], np.nan)
    inter = pd.DataFrame(
        {
            "course_id": "bench",
            "user_id": users,
            "block_id": np.char.add("block", blocks_used.astype(str)),
            "first_used": t,
            "is_problem": is_problem,
            "first_try_at": np.where(is_problem, t, np.datetime64("NaT")),
            "first_ok": ok,
        }
    )
    return now, early, inter, as_of.to_pydatetime()


def bench_scale_child(learners: int, events: int) -> None:
    """In the child: draw the data, then time one fit of every step; print JSON."""
    now, early, inter, as_of = synthetic_course(learners, events)
    t = time.monotonic()
    with threadpool_limits(limits=1):
        res = analysis.analyze_course("bench", now, early, inter, as_of)
    seconds = time.monotonic() - t
    print(
        json.dumps(
            {
                "fit_seconds": round(seconds, 1),
                "fit_learners": learners,
                "fit_events": events,
                "fit_interactions": len(inter),
                "fit_steps": {s["step"]: s["status"] for s in res.steps},
                "fit_peak_mb": peak_mb(),
            }
        )
    )


def peak_mb() -> int:
    """This process's peak resident memory (VmHWM: unlike ru_maxrss it starts afresh at
    exec, so the parent's memory does not count)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def bench_scale(learners: int, events: int) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(learners), str(events)], capture_output=True, text=True, check=True
    )
    res = json.loads(out.stdout.strip().splitlines()[-1])
    say(
        f"scale: every step for {learners:,} learners, {events:,} events' worth of features "
        f"({res['fit_interactions']:,} learner x block interactions): {res['fit_seconds']} s, "
        f"peak {res['fit_peak_mb']:,} MB (the child process, with the drawing of the data)"
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
        ("segments: ARI vs planted profiles", "ari", "ari_baseline_raw_counts", "ari"),
        ("at risk at week 2: AUC vs planted", "auc_at_risk_week2", "auc_baseline_days_since_last", "auc"),
        ("grade at week 2: R² (later learners)", "r2_grade_week2", "r2_baseline_grade_at_week2", None),
        ("recommendations: hit rate at 10", "hit_rate_at_10", "hit_rate_baseline_most_popular", None),
    ]
    out = [f"{'figure':<40} {'value':>8} {'baseline':>9}  aim", "-" * 72]
    for title, key, base, aim in rows:
        if key in r:
            a = f">= {AIMS[aim]}" if aim else ""
            if key == "hit_rate_at_10":
                a = f">= {AIMS['hit_vs_baseline']}x baseline (x{r[key] / max(r[base], 1e-9):.2f})"
            out.append(f"{title:<40} {r[key]:>8} {r[base]:>9}  {a}")
    if "fit_seconds" in r:
        out.append(
            f"{'fit: seconds, ' + format(r['fit_learners'], ',') + ' learners':<40} {r['fit_seconds']:>8}"
            f" {'':>9}  < {AIMS['fit_seconds']}"
        )
        out.append(f"{'fit: peak MB':<40} {r['fit_peak_mb']:>8} {'':>9}  < {AIMS['fit_peak_mb']}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", choices=sorted(SCALES), default="full")
    ap.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        bench_scale_child(*args.child)
        return 0
    scale = SCALES[args.scale]
    results: dict = {"analysis_scale": args.scale}
    # chdb's background merges may still be writing in its folder as the run ends
    with tempfile.TemporaryDirectory(prefix="edxstream-bench-analysis-", ignore_cleanup_errors=True) as tmp:
        work = Path(tmp)
        results.update(bench_quality(work, scale["quality"]))
        results.update(bench_scale(scale["learners"], scale["events"]))
        results.update(bench_corpus(work))
    say("")
    say(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
