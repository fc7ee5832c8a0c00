"""Recommendations: item-item collaborative filtering on the learner x content matrix.

The matrix holds which video and problem blocks each learner used. Two blocks are
similar when the same learners used both (cosine similarity of their columns,
scikit-learn on a sparse matrix); rows are weighted by how well the learner does
(``0.5 + grade``), so the blocks that learners who did well used together weigh more.
A learner's score for a block is the sum of its similarities to the blocks they used,
the latest ones weighing most (what comes next is most like what they did last);
blocks they already used are never recommended. Learners who failed the first try of an
error-prone problem get the block that helped others first (``correlations``).

``hit_rate`` measures it the honest way: each learner's latest ``holdout`` share of
blocks is hidden, recommendations are made from the rest, and a hit is a hidden block
among the top 10; the most-popular baseline (the most used blocks the learner has not
used) is scored on the same split.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.metrics.pairwise import cosine_similarity

TOP = 10
MIN_LEARNERS = 10
MIN_BLOCKS = 5
RECENCY_HALF_LIFE = 3  # a learner's blocks count half as much every this many blocks back


def matrix(interactions: pd.DataFrame, weights: pd.Series | None = None, recency: bool = False):
    """(sparse learners x blocks matrix, learner ids, block ids) from interaction rows:
    1 per block used, times the learner's weight, or (``recency``) decaying with how many
    blocks ago the learner used it."""
    users, u_idx = np.unique(interactions["user_id"].to_numpy(), return_inverse=True)
    blocks, b_idx = np.unique(interactions["block_id"].to_numpy(), return_inverse=True)
    values = np.ones(len(interactions))
    if weights is not None:
        values = pd.Series(users).map(weights).fillna(0.5).to_numpy()[u_idx]
    if recency:
        back = interactions.groupby("user_id")["first_used"].rank(method="first", ascending=False).to_numpy() - 1
        values = 0.5 ** (back / RECENCY_HALF_LIFE)
    m = sp.csr_matrix((values, (u_idx, b_idx)), shape=(len(users), len(blocks)))
    m.sum_duplicates()
    return m, users, blocks


def scores(interactions: pd.DataFrame, grade: pd.Series | None):
    """(item-item scores of every block for every learner, used blocks at -inf, the
    binary used matrix, learner ids, block ids). Similarity comes from the
    outcome-weighted matrix; a learner's latest blocks weigh most in their query, since
    what comes next is most like what they did last."""
    used, users, blocks = matrix(interactions)
    weighted = used if grade is None else matrix(interactions, 0.5 + grade.fillna(0.0).clip(0, 1))[0]
    query = matrix(interactions, recency=True)[0]
    sim = cosine_similarity(weighted.T, dense_output=False)
    sim.setdiag(0)
    s = np.asarray((query @ sim).todense(), dtype=np.float32)
    s[used.nonzero()] = -np.inf
    return s, used, users, blocks


def top_blocks(s: np.ndarray, k: int = TOP) -> np.ndarray:
    k = min(k, s.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(s, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def recommend(interactions: pd.DataFrame, grade: pd.Series | None = None, k: int = TOP) -> pd.DataFrame:
    """user_id, rank, block_id, score for every learner (never a block they used)."""
    s, used, users, blocks = scores(interactions, grade)
    top = top_blocks(s, k)
    rows = []
    for i, user in enumerate(users):
        for rank, j in enumerate(top[i]):
            if np.isfinite(s[i, j]) and s[i, j] > 0:
                rows.append((int(user), rank + 1, str(blocks[j]), float(s[i, j])))
    return pd.DataFrame(rows, columns=["user_id", "rank", "block_id", "score"])


def split_latest(interactions: pd.DataFrame, holdout: float = 0.2) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Each learner's latest ``holdout`` share of blocks (at least one, if they used two
    or more) held out: (train, test)."""
    df = interactions.sort_values(["user_id", "first_used"])
    n = df.groupby("user_id")["block_id"].transform("size")
    pos = df.groupby("user_id").cumcount()
    hide = np.maximum(1, np.floor(n * holdout)).astype(int)
    test_mask = (n >= 2) & (pos >= n - hide)
    return df[~test_mask], df[test_mask]


def hit_rate(
    interactions: pd.DataFrame, grade: pd.Series | None = None, k: int = TOP, holdout: float = 0.2
) -> tuple[float, float]:
    """(collaborative filtering, most-popular baseline) hit rate at ``k`` on held-out blocks."""
    train, test = split_latest(interactions, holdout)
    if test.empty or train["user_id"].nunique() < MIN_LEARNERS:
        return float("nan"), float("nan")
    s, used, users, blocks = scores(train, grade)
    popularity = np.asarray(used.sum(axis=0)).ravel().astype(np.float32)
    pop = np.broadcast_to(popularity, s.shape).copy()
    pop[used.nonzero()] = -np.inf
    col = {b: j for j, b in enumerate(blocks)}
    row = {u: i for i, u in enumerate(users)}
    held = test[test["user_id"].isin(row) & test["block_id"].isin(col)]
    truth = sp.csr_matrix((np.ones(len(held)), (held["user_id"].map(row), held["block_id"].map(col))), shape=s.shape)
    evaluated = np.unique(held["user_id"].map(row).to_numpy())
    if len(evaluated) == 0:
        return float("nan"), float("nan")

    def rate(sc: np.ndarray) -> float:
        top = top_blocks(sc[evaluated], k)
        hits = np.asarray(truth[evaluated].todense())
        return float(np.take_along_axis(hits, top, axis=1).max(axis=1).mean())

    return rate(s), rate(pop)
