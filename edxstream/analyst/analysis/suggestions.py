"""Short texts for the course team and for learners, made from the analysis results.

For teachers: the error-prone problems ("problem X: 62 % fail the first try; learners
who used video Y first passed 1.8 times as often"), the segments and their sizes, how
many learners are at risk and what drives it, and the behaviours that go with grades.
For learners at risk: what to do next, from their recommendations. Pure functions.
"""

from __future__ import annotations

import pandas as pd

from edxstream.core.events.courses import short_block as short  # "video 0123abcd": a block key as people read it


def for_teachers(
    difficulty: pd.DataFrame | None,
    profiles: pd.DataFrame | None,
    predictions: pd.DataFrame | None,
    correlations: pd.DataFrame | None,
) -> list[str]:
    texts: list[str] = []
    if difficulty is not None and not difficulty.empty:
        overall = difficulty[difficulty["segment_label"] == ""].nlargest(5, "first_try_fail_rate")
        for _, r in overall.iterrows():
            if r["first_try_fail_rate"] < 0.4:
                break
            text = f"{short(r['problem_id'])}: {r['first_try_fail_rate']:.0%} fail the first try"
            if r["helpful_block"]:
                text += (
                    f"; learners who used {short(r['helpful_block'])} first passed "
                    f"{r['helpful_lift']:.1f} times as often"
                )
            worst = difficulty[(difficulty["problem_id"] == r["problem_id"]) & (difficulty["segment_label"] != "")]
            if not worst.empty:
                w = worst.loc[worst["first_try_fail_rate"].idxmax()]
                text += f"; hardest for learners who {w['segment_label']} ({w['first_try_fail_rate']:.0%})"
            texts.append(text)
    if profiles is not None and not profiles.empty:
        total = profiles["learners"].sum()
        parts = [
            f"{r['learners'] / total:.0%} {r['description']}"
            for _, r in profiles.sort_values("learners", ascending=False).iterrows()
        ]
        texts.append("Segments: " + "; ".join(parts))
    if predictions is not None and not predictions.empty:
        risky = predictions[predictions["at_risk"]]
        if len(risky):
            drivers = risky["drivers"].str.split(",").str[0].str.rsplit(" ", n=1).str[0].value_counts()
            texts.append(
                f"{len(risky)} of {len(predictions)} learners ({len(risky) / len(predictions):.0%}) are "
                f"at risk of not passing or stopping; the main driver is most often {drivers.index[0]}"
            )
    if correlations is not None and not correlations.empty:
        grade = correlations[(correlations["outcome"] == "grade") & (correlations["p_value"] < 0.05)]
        for _, r in grade.reindex(grade["rho"].abs().sort_values(ascending=False).index).head(2).iterrows():
            way = "higher" if r["rho"] > 0 else "lower"
            texts.append(
                f"more {r['feature'].replace('_', ' ')} goes with {way} grades "
                f"(rank correlation {r['rho']:.2f}, 95 % interval {r['ci_low']:.2f} to {r['ci_high']:.2f}, "
                f"{r['learners']} learners)"
            )
    return texts


def for_learners(predictions: pd.DataFrame | None, recs: pd.DataFrame | None) -> pd.DataFrame:
    """One text per learner at risk: their next step from their first recommendation."""
    if predictions is None or predictions.empty:
        return pd.DataFrame(columns=["user_id", "text"])
    risky = predictions.loc[predictions["at_risk"], ["user_id"]]
    text = pd.Series("You may be falling behind in this course", index=risky.index)
    if recs is not None and not recs.empty:
        first = risky.merge(recs[recs["rank"] == 1], on="user_id", how="left").set_index(risky.index)
        has = first["block_id"].notna()
        steps = [
            f"; a good next step: {short(b)} ({r})"
            for b, r in zip(first["block_id"][has], first["reason"][has], strict=True)
        ]
        text[has] += pd.Series(steps, index=first.index[has], dtype=object)
    return pd.DataFrame({"user_id": risky["user_id"].astype(int).to_numpy(), "text": text.to_numpy()})
