"""How well attributes are predicted, in pedestrian-attribute conventions (PETA, RAP).

- **mA** (label-based): per attribute, the mean of the recall on images that have it and the
  recall on images that have not; then the mean over attributes.
- **instance F1**: per image, precision and recall of its predicted attribute set against its
  labelled one; F1 of the means over images.
- **ECE**: expected calibration error of the probabilities (10 equal-width bins).

    >>> truth = np.array([[1, 0], [0, 0], [1, 1], [0, 1]], np.float32)
    >>> said = np.array([[1, 0], [1, 0], [1, 1], [0, 0]], bool)
    >>> [round(float(v), 3) for v in label_accuracy(truth, said)]
    [0.75, 0.75]
"""

from __future__ import annotations

import numpy as np


def label_accuracy(truth: np.ndarray, said: np.ndarray) -> np.ndarray:
    """Per attribute: (positive recall + negative recall) / 2 (NaN where a class is absent)."""
    pos = truth > 0.5
    out = np.full(truth.shape[1], np.nan)
    for j in range(truth.shape[1]):
        if pos[:, j].any() and (~pos[:, j]).any():
            out[j] = 0.5 * (said[pos[:, j], j].mean() + (~said[~pos[:, j], j]).mean())
    return out


def instance_f1(truth: np.ndarray, said: np.ndarray) -> dict[str, float]:
    """Instance-based precision, recall, F1 (means over images)."""
    pos = truth > 0.5
    both = (pos & said).sum(1)
    precision = np.where(said.sum(1) > 0, both / np.maximum(said.sum(1), 1), 0.0).mean()
    recall = np.where(pos.sum(1) > 0, both / np.maximum(pos.sum(1), 1), 0.0).mean()
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": float(precision), "recall": float(recall), "f1": float(f1)}


def calibration_error(truth: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """ECE over every (image, attribute) pair: sum of bin weight * |mean p - rate|."""
    p, y = probabilities.ravel(), truth.ravel()
    which = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(total)


def fit_platt(logits: np.ndarray, truth: np.ndarray, steps: int = 50) -> tuple[float, float]:
    """(scale, shift) minimising the log loss of ``sigmoid(scale * logit + shift)`` (Newton)."""
    a, b = 1.0, 0.0
    y = truth.astype(np.float64)
    z = logits.astype(np.float64)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(a * z + b, -30, 30)))
        g = np.array([((p - y) * z).sum(), (p - y).sum()])
        w = p * (1 - p) + 1e-9
        h = np.array([[(w * z * z).sum(), (w * z).sum()], [(w * z).sum(), w.sum()]]) + 1e-6 * np.eye(2)
        step = np.linalg.solve(h, g)
        a, b = a - step[0], b - step[1]
        if np.abs(step).max() < 1e-8:
            break
    return float(a), float(b)
