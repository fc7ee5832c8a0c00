"""Performance prediction from what is known early: a GLM for the grade, boosted trees
(or, with few learners, a logistic model) for "at risk".

The inputs are each learner's features over their first ``EARLY_DAYS`` days in the course
(counts, and the shares that say how they work: videos, problems, forum; the first-try
score; for the risk also how their activity goes on: the last week's share of it, the
share of days they came on, the blocks they used per unit they opened, and the pooled
first-try points), and what they did in their other courses before that moment; the
targets come from the same learners' features now: the grade so far, and at risk =
stopped (silent for ``STOP_DAYS`` days and three times their usual gap) or a grade so far
under ``PASS_GRADE``. A learner's days in the course count from when they enrolled, not
from a look at its about page before that (``features.START``). Only learners who have
been in the course for ``MATURE_DAYS`` days have a known outcome. They are ordered by
when they started: the earlier ``1 - VALIDATE_SHARE`` train, the later ones validate (so
the figures say how the model does on learners it has not seen, who came later), then the
models are refitted on all of them and predict every learner.

The risk model is scikit-learn's histogram gradient boosting with the log loss (a
logistic link on a sum of small trees) from ``BOOSTED_MIN`` learners with a known
outcome: it finds what a linear model on these inputs cannot, such as a low score
mattering only for someone who attempts problems. Its trees are shallow and its risk is
averaged with a regularised logistic regression's: the outcome it learns from (stopped or
failing as the log shows it) is a noisy copy of the one meant (many who merely come
rarely look stopped), and the smooth model keeps the trees from following that noise.
Below ``BOOSTED_MIN``, the logistic regression alone, which needs fewer learners. Each
prediction comes with the features that pushed its risk most: how much the risk changes
when that one feature is set to the course's typical (median) value. Pure functions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression, TweedieRegressor
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from edxstream.analyst.analysis.features import BEHAVIOUR, EARLY, HISTORY, behaviour_shares

EARLY_DAYS = 14
MATURE_DAYS = 28
STOP_DAYS = 14
# the pass mark of Open edX's default grading policy ("Pass": 0.5), applied to the grade
# so far as the LMS keeps it (each problem's latest score)
PASS_GRADE = 0.5
VALIDATE_SHARE = 0.3
MIN_TRAIN = 30  # learners with a known outcome needed to fit ("not enough data" below)
BOOSTED_MIN = 200  # from this many learners with a known outcome, boosted trees for the risk
SEED = 0
# the behaviour features and the grade so far; counts go in on a log scale (LOG_SCALED)
INPUTS = (*BEHAVIOUR, "grade_so_far")
RATES = ("first_try_rate", "first_try_score", "grade_so_far", "first_try_points")  # no value until a problem is tried
LOG_SCALED = tuple(c for c in BEHAVIOUR if c not in ("active_days", *RATES, "days_since_last", "progress", "span_days"))
# inputs of the risk model only (how activity goes on or fades, which says who stops, and
# the pooled first-try points): the grade model fitted noise on them (its R² on the later
# learners fell with few learners)
RISK_ONLY = ("first_try_points", "recent_share", "active_share", "units_visited", "blocks_per_unit")
SHARES = ("video_share", "problem_share", "forum_share", "persistence", "video_block_share")


@dataclass
class Prediction:
    frame: pd.DataFrame  # user_id, predicted_grade, risk, at_risk, drivers
    auc: float  # on the later learners held out
    r2: float
    trained_on: int
    validated_on: int
    method: str = "boosted trees with logistic regression"


def inputs(early: pd.DataFrame) -> pd.DataFrame:
    """The model inputs: counts on a log scale (a few learners click far more), rates as
    they are, the shares of ``behaviour_shares``, and the learner's other courses (their
    events on a log scale, the video and problem shares there, their score there). A
    learner who tried no problem yet has no rate and no grade: they get the course's
    median, and ``tried_none`` says so (a 0 would read as failing everything); the same
    for no score in other courses (``other_none``)."""
    x = early[list(INPUTS)].astype(float).copy()
    for c in LOG_SCALED:
        x[c] = np.log1p(x[c])
    x["tried_none"] = x["grade_so_far"].isna().astype(float)
    more = early.reindex(columns=list(EARLY)).astype(float)
    x["first_try_points"] = more["first_try_points"]
    # what the window's last week holds of the learner's activity (a learner who is
    # fading has little there), the share of their days in the window they came on,
    # and the blocks they used per course unit they opened (does someone who opens a
    # unit watch and answer what is in it, or skim past)
    events = early["events"].astype(float).clip(lower=1)
    x["recent_share"] = (more["recent_events"] / events).fillna(0.0)
    x["active_share"] = early["active_days"].astype(float) / early["present_days"].astype(float).clip(lower=1)
    x["units_visited"] = np.log1p(more["units_visited"].fillna(0.0))
    used = (early["videos_watched"] + early["problems_attempted"]).astype(float)
    x["blocks_per_unit"] = used / more["units_visited"].fillna(0.0).clip(lower=1)
    for c in RATES:
        x[c] = x[c].fillna(x[c].median())
    shares = behaviour_shares(early)
    for c in SHARES:
        x[c] = shares[c].to_numpy()
    other = early.reindex(columns=list(HISTORY)).astype(float)
    events = other["other_events"].fillna(0.0)
    x["other_events"] = np.log1p(events)
    x["other_video_share"] = (other["other_video_events"] / events.clip(lower=1)).fillna(0.0)
    x["other_problem_share"] = (other["other_assessment_events"] / events.clip(lower=1)).fillna(0.0)
    x["other_none"] = other["other_score"].isna().astype(float)
    x["other_score"] = other["other_score"].fillna(other["other_score"].median())
    return x.fillna(0.0)


def outcomes(now: pd.DataFrame) -> pd.DataFrame:
    """Grade so far and at risk (stopped, or failing) per learner, from their features now."""
    grade = now["grade_so_far"].astype(float)
    # stopped: silent for STOP_DAYS and for three times their usual gap between active
    # days (someone who comes once a month has not stopped after two quiet weeks)
    gap = now["span_days"].astype(float) / (now["active_days"].astype(float) - 1).clip(lower=1)
    stopped = now["days_since_last"].astype(float) >= np.maximum(STOP_DAYS, 3 * gap)
    return pd.DataFrame(
        {"user_id": now["user_id"], "grade": grade, "at_risk": stopped | (grade.fillna(1.0) < PASS_GRADE)}
    )


def mature(now: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    return now["first_seen"] <= as_of - pd.Timedelta(days=MATURE_DAYS)


def _logistic():
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.5))


def _models(n: int):
    """(risk, grade) models for ``n`` learners with a known outcome, and the risk model's name."""
    if n >= BOOSTED_MIN:
        trees = HistGradientBoostingClassifier(
            max_iter=200,
            learning_rate=0.05,
            max_leaf_nodes=15,
            max_depth=3,  # the outcome seen is a noisy copy of the one meant: shallow trees
            min_samples_leaf=30,
            l2_regularization=1.0,
            random_state=SEED,
        )
        # the trees' risk averaged with a logistic model's: the smooth model steadies the
        # trees where the outcome seen is noisy (better on the later learners held out)
        risk = VotingClassifier([("trees", trees), ("logistic", _logistic())], voting="soft")
        name = "boosted trees with logistic regression"
    else:
        risk = _logistic()
        name = "logistic regression"
    grade = make_pipeline(StandardScaler(), TweedieRegressor(power=0, link="identity", alpha=1e-3, max_iter=1000))
    return risk, grade, name


# The inputs in groups a person reads (a driver is a group: credit is not split between
# inputs that say the same thing, such as video events and videos watched).
DRIVER_GROUPS = {
    "videos": (
        "video_events",
        "videos_watched",
        "video_completions",
        "video_seconds",
        "video_share",
        "video_block_share",
    ),
    "problems": ("assessment_events", "problems_attempted", "problem_share", "tried_none"),
    "scores": ("first_try_rate", "first_try_score", "grade_so_far", "first_try_points"),
    "forum": ("forum_events", "forum_posts", "forum_share"),
    "activity": ("active_days", "sessions", "events", "content_events", "units_visited", "blocks_per_unit"),
    "recency": ("days_since_last", "span_days", "persistence", "recent_share", "active_share"),
    "progress": ("progress",),
    "other_courses": ("other_events", "other_video_share", "other_problem_share", "other_none", "other_score"),
}


def drivers(model, x: pd.DataFrame, top: int = 3) -> list[str]:
    """What pushed each learner's risk most: the risk minus the risk with one group of
    inputs (``DRIVER_GROUPS``) set to the course's median (what a typical learner has)."""
    base = model.predict_proba(x)[:, 1]
    typical = x.median()
    groups = {g: [c for c in cols if c in x.columns] for g, cols in DRIVER_GROUPS.items()}
    groups = {g: cols for g, cols in groups.items() if cols}
    contrib = np.empty((len(x), len(groups)), dtype=float)
    for j, cols in enumerate(groups.values()):
        moved = x.copy()
        moved[cols] = typical[cols].to_numpy()
        contrib[:, j] = base - model.predict_proba(moved)[:, 1]
    names = np.asarray(list(groups))
    order = np.argsort(-np.abs(contrib), axis=1)[:, :top]
    return [", ".join(f"{names[j]} {contrib[i, j]:+.2f}" for j in row) for i, row in enumerate(order)]


def predict(early: pd.DataFrame, now: pd.DataFrame, as_of: pd.Timestamp) -> Prediction:
    """Fit, validate on later learners, refit and predict every learner in ``early``.
    Raises ValueError when too few learners have a known outcome."""
    known = now[mature(now, as_of)]
    target = outcomes(known).set_index("user_id")
    data = early.set_index("user_id").join(target, how="inner").sort_values("first_seen")
    if len(data) < MIN_TRAIN or data["at_risk"].nunique() < 2:
        raise ValueError(
            f"{len(data)} learners with a known outcome (in the course for {MATURE_DAYS} days); "
            f"the models need at least {MIN_TRAIN}, some at risk and some not"
        )
    x = inputs(data)
    y_risk = data["at_risk"].astype(int).to_numpy()
    graded = data["grade"].notna().to_numpy()
    cut = int(len(data) * (1 - VALIDATE_SHARE))
    risk_m, grade_m, method = _models(len(data))
    auc = r2 = float("nan")
    train, test = slice(0, cut), slice(cut, None)
    if len(set(y_risk[train])) == 2 and len(set(y_risk[test])) == 2:
        risk_m.fit(x.iloc[train], y_risk[train])
        auc = float(roc_auc_score(y_risk[test], risk_m.predict_proba(x.iloc[test])[:, 1]))
    g_train, g_test = graded[train], graded[test]
    if g_train.sum() >= MIN_TRAIN // 2 and g_test.sum() >= 5:
        gx = x.drop(columns=list(RISK_ONLY))
        grade_m.fit(gx.iloc[train][g_train], data["grade"].iloc[train][g_train])
        r2 = float(r2_score(data["grade"].iloc[test][g_test], grade_m.predict(gx.iloc[test][g_test])))
    risk_m, grade_m, method = _models(len(data))
    risk_m.fit(x, y_risk)
    everyone = inputs(early)
    risk = risk_m.predict_proba(everyone)[:, 1]
    if graded.sum() >= MIN_TRAIN // 2:
        grade_m.fit(x.drop(columns=list(RISK_ONLY))[graded], data["grade"][graded])
        grade = np.clip(grade_m.predict(everyone.drop(columns=list(RISK_ONLY))), 0.0, 1.0)
    else:
        grade = np.full(len(everyone), np.nan)
    frame = pd.DataFrame(
        {
            "user_id": early["user_id"].to_numpy(),
            "predicted_grade": grade,
            "risk": risk,
            "at_risk": risk >= 0.5,
            "drivers": drivers(risk_m, everyone),
        }
    )
    return Prediction(frame, auc, r2, len(data), len(data) - cut, method)
