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

from dataclasses import dataclass

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


CHUNK = 8192  # learners scored at a time: the dense scores of a chunk, not of everyone


@dataclass
class Model:
    """What scoring needs: the binary used matrix, the recency-weighted query rows, the
    block x block similarities, and the learner and block ids of the rows and columns."""

    used: sp.csr_matrix
    query: sp.csr_matrix
    sim: sp.csr_matrix
    users: np.ndarray
    blocks: np.ndarray

    def scores(self, rows: np.ndarray) -> np.ndarray:
        """Item-item scores of every block for the learners at ``rows`` (float32), the
        blocks each has used at -inf."""
        s = (self.query[rows] @ self.sim).toarray()
        used = self.used[rows].nonzero()
        s[used] = -np.inf
        return s


def fit(interactions: pd.DataFrame, grade: pd.Series | None) -> Model:
    """Similarity comes from the outcome-weighted matrix; a learner's latest blocks weigh
    most in their query, since what comes next is most like what they did last."""
    used, users, blocks = matrix(interactions)
    weighted = used if grade is None else matrix(interactions, 0.5 + grade.fillna(0.0).clip(0, 1))[0]
    query = matrix(interactions, recency=True)[0].astype(np.float32)
    sim = cosine_similarity(weighted.T, dense_output=False).astype(np.float32).tocsr()
    sim.setdiag(0)
    return Model(used, query, sim, users, blocks)


def chunks(n: int) -> list[np.ndarray]:
    return [np.arange(i, min(n, i + CHUNK)) for i in range(0, n, CHUNK)]


def top_blocks(s: np.ndarray, k: int = TOP) -> np.ndarray:
    k = min(k, s.shape[1])
    part = np.argpartition(-s, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(s, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def recommend(interactions: pd.DataFrame, grade: pd.Series | None = None, k: int = TOP) -> pd.DataFrame:
    """user_id, rank, block_id, score for every learner (never a block they used)."""
    model = fit(interactions, grade)
    parts = []
    for rows in chunks(len(model.users)):
        s = model.scores(rows)
        top = top_blocks(s, k)
        score = np.take_along_axis(s, top, axis=1)
        keep = np.isfinite(score) & (score > 0)
        parts.append(
            pd.DataFrame(
                {
                    "user_id": np.repeat(model.users[rows], top.shape[1])[keep.ravel()].astype(np.int64),
                    "rank": np.tile(np.arange(1, top.shape[1] + 1), len(rows))[keep.ravel()],
                    "block_id": model.blocks[top[keep]].astype(str),
                    "score": score[keep].astype(float),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["user_id", "rank", "block_id", "score"])
    return pd.concat(parts, ignore_index=True)


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
    model = fit(train, grade)
    popularity = np.asarray(model.used.sum(axis=0)).ravel().astype(np.float32)
    col = {b: j for j, b in enumerate(model.blocks)}
    row = {u: i for i, u in enumerate(model.users)}
    held = test[test["user_id"].isin(row) & test["block_id"].isin(col)]
    shape = (len(model.users), len(model.blocks))
    truth = sp.csr_matrix(
        (np.ones(len(held), dtype=bool), (held["user_id"].map(row), held["block_id"].map(col))), shape=shape
    )
    evaluated = np.unique(held["user_id"].map(row).to_numpy())
    if len(evaluated) == 0:
        return float("nan"), float("nan")
    hits = np.zeros(len(evaluated), dtype=bool)
    base_hits = np.zeros(len(evaluated), dtype=bool)
    done = 0
    for part in chunks(len(evaluated)):
        rows = evaluated[part]
        seen = truth[rows].toarray()
        s = model.scores(rows)
        hits[done : done + len(rows)] = np.take_along_axis(seen, top_blocks(s, k), axis=1).any(axis=1)
        s[:] = popularity  # the most-popular baseline, on the same rows, the used blocks again at -inf
        s[model.used[rows].nonzero()] = -np.inf
        base_hits[done : done + len(rows)] = np.take_along_axis(seen, top_blocks(s, k), axis=1).any(axis=1)
        done += len(rows)
    return float(hits.mean()), float(base_hits.mean())
