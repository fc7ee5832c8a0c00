"""Which behaviours go with results, and which problems are error-prone and for whom.

- ``behaviour_correlations``: Spearman's rank correlation (scipy) of each behaviour
  feature with the grade so far and with being at risk, per course, with a 95 %
  confidence interval from the Fisher transform (standard error after Bonett and Wright,
  sqrt((1 + rho^2 / 2) / (n - 3)), which suits rank correlations).
- ``problem_difficulty``: each problem's first-try failure rate, overall and per segment,
  and for the error-prone ones the content block seen *before* the first try whose
  viewers passed the first try most often compared with those who had not seen it (the
  lift), which is what the suggestions and recommendations point learners to.
Pure functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

MIN_LEARNERS = 10
WEAK_FAIL_RATE = 0.4  # first-try failure rate from which a problem counts as error-prone
MIN_GROUP = 5  # learners on each side (saw the block first / did not) for a lift


def rank_correlation(x: np.ndarray, y: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, float]:
    """(rho, low, high, p) of Spearman's rho with a Fisher-transform interval."""
    n = len(x)
    rho, p = stats.spearmanr(x, y)
    if not np.isfinite(rho):
        return float("nan"), float("nan"), float("nan"), float("nan")
    se = np.sqrt((1 + rho**2 / 2) / (n - 3))
    z = np.arctanh(np.clip(rho, -0.999999, 0.999999))
    q = stats.norm.ppf(0.5 + confidence / 2)
    return float(rho), float(np.tanh(z - q * se)), float(np.tanh(z + q * se)), float(p)


def behaviour_correlations(features: pd.DataFrame, outcomes: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """One row per (feature, outcome) with rho, interval, p and the learners it is on."""
    data = features.set_index("user_id")[columns].join(outcomes.set_index("user_id"), how="inner")
    rows = []
    for outcome in ("grade", "at_risk"):
        sub = data[data[outcome].notna()]
        if len(sub) < MIN_LEARNERS:
            continue
        y = sub[outcome].astype(float).to_numpy()
        for col in columns:
            x = sub[col].astype(float).fillna(0.0).to_numpy()
            if np.ptp(x) == 0 or np.ptp(y) == 0:
                continue
            rho, lo, hi, p = rank_correlation(x, y)
            rows.append(
                {
                    "feature": col,
                    "outcome": outcome,
                    "rho": rho,
                    "ci_low": lo,
                    "ci_high": hi,
                    "p_value": p,
                    "learners": len(sub),
                }
            )
    return pd.DataFrame(rows, columns=["feature", "outcome", "rho", "ci_low", "ci_high", "p_value", "learners"])


def problem_difficulty(
    interactions: pd.DataFrame, segment_of: pd.Series | None = None, top_weak: int = 10
) -> pd.DataFrame:
    """First-try failure rate per problem (segment_label '' = everyone, then per segment)
    and, for the ``top_weak`` most error-prone problems, the most helpful block seen first."""
    tries = interactions[interactions["first_ok"].notna()].copy()
    if tries.empty:
        return pd.DataFrame(
            columns=["problem_id", "segment_label", "learners", "first_try_fail_rate", "helpful_block", "helpful_lift"]
        )
    tries["fail"] = ~tries["first_ok"].astype(bool)
    overall = tries.groupby("block_id").agg(learners=("user_id", "size"), first_try_fail_rate=("fail", "mean"))
    overall = overall[overall["learners"] >= MIN_LEARNERS].reset_index().assign(segment_label="")
    parts = [overall]
    if segment_of is not None:
        seg = tries.join(segment_of.rename("segment_label"), on="user_id").dropna(subset=["segment_label"])
        per = (
            seg.groupby(["block_id", "segment_label"])
            .agg(learners=("user_id", "size"), first_try_fail_rate=("fail", "mean"))
            .reset_index()
        )
        parts.append(per[per["learners"] >= MIN_GROUP])
    out = pd.concat(parts, ignore_index=True).rename(columns={"block_id": "problem_id"})
    out["helpful_block"], out["helpful_lift"] = "", float("nan")
    weak = overall[overall["first_try_fail_rate"] >= WEAK_FAIL_RATE].nlargest(top_weak, "first_try_fail_rate")
    for problem in weak["block_id"]:
        block, lift = helpful_block(interactions, problem)
        if block:
            mask = (out["problem_id"] == problem) & (out["segment_label"] == "")
            out.loc[mask, ["helpful_block", "helpful_lift"]] = [block, lift]
    return out


def helpful_block(interactions: pd.DataFrame, problem: str) -> tuple[str, float]:
    """The block whose users, having used it before their first try at ``problem``,
    passed that try most often relative to those who had not: (block, lift), or ('', nan)."""
    tries = interactions[(interactions["block_id"] == problem) & interactions["first_ok"].notna()]
    tries = tries[["user_id", "first_try_at", "first_ok"]]
    if len(tries) < 2 * MIN_GROUP:
        return "", float("nan")
    before = interactions[interactions["user_id"].isin(tries["user_id"]) & (interactions["block_id"] != problem)]
    before = before.merge(tries, on="user_id", suffixes=("", "_p"))
    before = before[before["first_used"] < before["first_try_at_p"]]
    n = len(tries)
    passed_all = tries["first_ok"].astype(bool).sum()
    seen = before.groupby("block_id").agg(n=("user_id", "size"), ok=("first_ok_p", "sum"))
    seen = seen[(seen["n"] >= MIN_GROUP) & (n - seen["n"] >= MIN_GROUP)]
    if seen.empty:
        return "", float("nan")
    rate_seen = seen["ok"] / seen["n"]
    rate_unseen = (passed_all - seen["ok"]) / (n - seen["n"])
    lift = (rate_seen / rate_unseen.replace(0, np.nan)).dropna()
    if lift.empty or lift.max() <= 1:
        return "", float("nan")
    best = lift.idxmax()
    return str(best), float(lift[best])
