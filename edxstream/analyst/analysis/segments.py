"""Learner segments: k-means on standardised behaviour features, k chosen by silhouette.

Each segment is described in words from its centre (how far each feature lies from the
course's average, in standard deviations), and segments keep their numbers from one run
to the next: the new centres are matched to the previous run's by the Hungarian method
(``scipy.optimize.linear_sum_assignment``) on their distance, so "segment 2" stays the
same group of learners while the course runs. The features are all numeric (shares and
rates), so k-means it is; k-modes / k-prototypes would serve categorical ones. Pure
functions: frames in, frames out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn import config_context
from sklearn.cluster import KMeans
from sklearn.metrics import silhouette_score
from sklearn.preprocessing import StandardScaler

MIN_LEARNERS = 20  # fewer learners than this in a course: no segments ("not enough data")
# A learner with fewer events than this is not placed in a segment yet: a handful of
# clicks says little about how someone works, and would blur the segments of the rest.
MIN_EVENTS = 50
UNPLACED = 999  # their segment number
UNPLACED_LABEL = "too little activity yet to place"
K_RANGE = range(2, 9)
SILHOUETTE_SAMPLE = 4000  # silhouette on a sample: its cost grows with the square of the rows
# k is chosen on a sample of at most this many learners (each k is a fit), then only the
# chosen k is fitted on everyone: a course of 100,000 learners costs one full fit, not seven
K_SAMPLE = 20_000
SEED = 0

# How each feature reads in words, when a segment is above / below the course average.
WORDS = {
    "video_share": ("watches many videos", "rarely watches videos"),
    "problem_share": ("attempts many problems", "rarely attempts problems"),
    "forum_share": ("active in the forum", None),
    "first_try_rate": ("often right on the first try", "often wrong on the first try"),
    "first_try_score": ("often right on the first try", "often wrong on the first try"),
    "progress": ("far through the course", "early in the course"),
    "persistence": ("keeps coming back", "stopped coming early"),
    "video_block_share": ("mostly videos", "mostly problems"),
}


@dataclass
class Segmentation:
    labels: np.ndarray  # segment number per learner (stable across runs)
    centres: pd.DataFrame  # one row per segment number: feature means in original units
    descriptions: dict[int, str]
    k: int
    silhouette: float
    silhouettes: dict[int, float]  # k -> silhouette, as chosen from
    method: str = "kmeans"
    scaler: StandardScaler | None = None  # the fit's standardisation

    def nearest(self, features: pd.DataFrame) -> np.ndarray:
        """The segment number whose centre is nearest to each row of ``features`` (same
        columns as the fit): where learners the fit did not use would go."""
        assert self.scaler is not None
        z = self.scaler.transform(features[self.centres.columns].to_numpy(dtype=float))
        centres = self.scaler.transform(self.centres.to_numpy(dtype=float))
        distance = np.linalg.norm(z[:, None, :] - centres[None, :, :], axis=2)
        return np.asarray(self.centres.index)[np.argmin(distance, axis=1)]


def describe(centre_z: pd.Series, limit: int = 3, threshold: float = 0.4) -> str:
    """A segment in words: its most distinctive features (by |z|), at most ``limit``."""
    phrases = []
    for feature in centre_z.abs().sort_values(ascending=False).index:
        z = centre_z[feature]
        if abs(z) < threshold or len(phrases) >= limit:
            break
        high, low = WORDS.get(feature, (f"high {feature}", f"low {feature}"))
        phrase = high if z > 0 else low
        if phrase:
            phrases.append(phrase)
    return ", ".join(phrases) or "close to the course average"


def match_previous(centres: np.ndarray, previous: np.ndarray | None) -> list[int]:
    """Segment numbers for ``centres`` (standardised): the number of the previous run's
    centre each is matched to (Hungarian method on distances), new numbers for the rest."""
    k = len(centres)
    if previous is None or len(previous) == 0:
        return list(range(k))
    cost = np.linalg.norm(centres[:, None, :] - previous[None, :, :], axis=2)
    rows, cols = linear_sum_assignment(cost)
    numbers = [-1] * k
    for r, c in zip(rows, cols, strict=False):
        numbers[r] = int(c)
    nxt = len(previous)
    for i in range(k):
        if numbers[i] < 0:
            numbers[i] = nxt
            nxt += 1
    return numbers


def segment(
    features: pd.DataFrame, previous_centres: pd.DataFrame | None = None, k_range: range = K_RANGE, seed: int = SEED
) -> Segmentation:
    """k-means over ``k_range``, keeping the k with the best silhouette.
    ``previous_centres`` (segment number -> feature means, original units) keeps numbers
    stable; raises ValueError when there are too few learners."""
    if len(features) < MIN_LEARNERS:
        raise ValueError(f"{len(features)} learners; segments need at least {MIN_LEARNERS}")
    scaler = StandardScaler()
    x = scaler.fit_transform(features.to_numpy(dtype=float))
    rng = np.random.default_rng(seed)
    pool = rng.choice(len(x), size=min(len(x), K_SAMPLE), replace=False) if len(x) > K_SAMPLE else np.arange(len(x))
    xs = x[pool]
    sample = rng.choice(len(xs), size=min(len(xs), SILHOUETTE_SAMPLE), replace=False)
    best = None
    scores: dict[int, float] = {}
    for k in k_range:
        if k >= len(xs):
            break
        model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(xs)
        labels = model.labels_
        if len(set(labels[sample])) < 2:
            continue
        # in chunks of 64 MB of distances rather than all 4000 x 4000 at once
        with config_context(working_memory=64):
            scores[k] = float(silhouette_score(xs[sample], labels[sample]))
        if best is None or scores[k] > scores[best[0]]:
            best = (k, model)
    if best is None:
        raise ValueError("all learners behave alike: no segments to find")
    k, model = best
    if len(xs) < len(x):
        model = KMeans(n_clusters=k, n_init=4, random_state=seed).fit(x)
    prev = None
    if previous_centres is not None and len(previous_centres):
        cols = [c for c in features.columns if c in previous_centres.columns]
        if cols == list(features.columns):
            prev = scaler.transform(previous_centres[cols].to_numpy(dtype=float))
    numbers = match_previous(model.cluster_centers_, prev)
    labels = np.asarray(numbers)[model.labels_]  # model.labels_ are everyone's
    centres_z = pd.DataFrame(model.cluster_centers_, columns=features.columns, index=numbers).sort_index()
    centres = pd.DataFrame(
        scaler.inverse_transform(centres_z.to_numpy()), columns=features.columns, index=centres_z.index
    )
    descriptions = {int(n): describe(centres_z.loc[n]) for n in centres_z.index}
    return Segmentation(labels, centres, descriptions, k, scores[k], scores, scaler=scaler)
