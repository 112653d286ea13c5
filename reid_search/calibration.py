"""Choose the same/different threshold that ``compare`` applies to a cosine similarity.

The threshold is the equal error rate point over labelled pairs: the similarity at which
the share of same-person pairs called "different" equals the share of different-person
pairs called "same". Pairs are cross-camera where cameras are known, as in evaluation.

Usage::

    >>> import numpy as np
    >>> same, diff = np.array([0.9, 0.8, 0.7]), np.array([0.2, 0.75, 0.1])
    >>> round(equal_error_threshold(same, diff).threshold, 3)
    0.75
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    false_reject: float  # same-person pairs below the threshold
    false_accept: float  # different-person pairs at or above it
    n_same: int
    n_different: int


def equal_error_threshold(same: np.ndarray, different: np.ndarray) -> ThresholdChoice:
    """The candidate threshold where false-reject and false-accept rates are closest."""
    same, different = np.sort(np.asarray(same, float)), np.sort(np.asarray(different, float))
    if len(same) == 0 or len(different) == 0:
        raise ValueError("need at least one same-person and one different-person pair")
    candidates = np.unique(np.concatenate([same, different]))
    frr = np.searchsorted(same, candidates, side="left") / len(same)
    far = 1.0 - np.searchsorted(different, candidates, side="left") / len(different)
    best = int(np.argmin(np.abs(frr - far)))
    return ThresholdChoice(
        float(candidates[best]), float(frr[best]), float(far[best]), len(same), len(different)
    )


def rates_at(threshold: float, same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """(false-reject, false-accept) rates of calling pairs "same" at similarity >= ``threshold``.

    >>> rates_at(0.5, np.array([0.9, 0.4]), np.array([0.6, 0.1, 0.2, 0.3]))
    (0.5, 0.25)
    """
    same, different = np.asarray(same, float), np.asarray(different, float)
    frr = float(np.mean(same < threshold)) if len(same) else 0.0
    far = float(np.mean(different >= threshold)) if len(different) else 0.0
    return frr, far


def labelled_pairs(
    vectors: np.ndarray,
    persons: np.ndarray,
    cameras: np.ndarray | None = None,
    max_pairs: int = 200_000,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Similarities of same-person and different-person pairs (cross-camera when known)."""
    rng = np.random.default_rng(seed)
    n = len(vectors)
    sims = vectors @ vectors.T
    same_person = persons[:, None] == persons[None, :]
    allowed = ~np.eye(n, dtype=bool)
    if cameras is not None:
        allowed &= cameras[:, None] != cameras[None, :]
    iu = np.triu_indices(n, 1)
    flat_allowed = allowed[iu]
    same = sims[iu][flat_allowed & same_person[iu]]
    diff = sims[iu][flat_allowed & ~same_person[iu]]
    if len(diff) > max_pairs:
        diff = rng.choice(diff, max_pairs, replace=False)
    return same, diff
