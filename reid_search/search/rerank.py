"""k-reciprocal re-ranking (Zhong et al., CVPR 2017) of query-to-gallery distances.

Two people are more likely the same when each is among the other's nearest neighbours.
For every item (queries and gallery together) the method collects its *k-reciprocal*
neighbours ``R(i, k1)`` = the ``j`` in i's ``k1+1`` nearest whose own ``k1+1`` nearest
contain ``i``, grows the set with the ``R(j, k1/2)`` of its members that overlap it by
more than 2/3, and encodes it as a vector ``V[i]`` of weights ``exp(-d(i, j))``
(normalised to sum 1). ``V`` is then averaged over each item's ``k2`` nearest (local query
expansion). The final distance mixes the Jaccard distance of the ``V`` vectors with the
original one::

    d*(q, g) = (1 - lambda) * (1 - sum(min(Vq, Vg)) / sum(max(Vq, Vg))) + lambda * d(q, g)

Distances are squared Euclidean between unit vectors (``2 - 2 cos``), each row divided by
its maximum, as in the paper's code. Cost: three (n x n) float32 matrices for n = queries +
gallery (about 12 n^2 bytes), so it suits evaluation sets and a query's shortlist (capped by
the query path), not a million-entry gallery whole.

Usage::

    >>> import numpy as np
    >>> q = np.eye(3, dtype=np.float32)[:1]
    >>> g = np.eye(3, dtype=np.float32)
    >>> k_reciprocal_distances(q, g, k1=1, k2=1, lambda_value=0.3).shape
    (1, 3)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RerankConfig:
    """k1: neighbourhood size; k2: query-expansion size; lambda_value: weight of the original distance."""

    k1: int = 20
    k2: int = 6
    lambda_value: float = 0.3


def _reciprocal(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    """``R(i, k)``: the j among i's k+1 nearest (i included) that have i among their k+1 nearest."""
    forward = rank[i, : k + 1]
    backward = rank[forward, : k + 1]
    return forward[(backward == i).any(axis=1)]


def _expanded_neighbours(rank: np.ndarray, i: int, k1: int) -> np.ndarray:
    """``R(i, k1)`` grown by the ``R(j, k1/2)`` of its members that share over 2/3 with it."""
    core = _reciprocal(rank, i, k1)
    members = set(core.tolist())
    grown = [core]
    half = int(np.around(k1 / 2))
    for j in core:
        candidate = _reciprocal(rank, int(j), half)
        if len(members.intersection(candidate.tolist())) > 2 / 3 * len(candidate):
            grown.append(candidate)
    return np.unique(np.concatenate(grown))


def k_reciprocal_distances(
    query: np.ndarray,
    gallery: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked (n_query, n_gallery) distances between unit vectors; smaller is more alike."""
    query, gallery = np.asarray(query, np.float32), np.asarray(gallery, np.float32)
    n_query = len(query)
    features = np.concatenate([query, gallery])
    n = len(features)
    dist = np.maximum(2.0 - 2.0 * (features @ features.T), 0.0)
    dist /= np.maximum(dist.max(axis=1, keepdims=True), 1e-12)
    k1, k2 = min(k1, n - 1), max(1, min(k2, n))
    rank = _nearest_first(dist, max(k1, k2) + 1)
    weights = np.zeros((n, n), np.float32)
    for i in range(n):
        neighbours = _expanded_neighbours(rank, i, k1)
        w = np.exp(-dist[i, neighbours])
        weights[i, neighbours] = w / w.sum()
    if k2 > 1:  # local query expansion, summed neighbour by neighbour (no n x k2 x n array)
        expanded = np.zeros_like(weights)
        for j in range(k2):
            expanded += weights[rank[:, j]]
        weights = expanded / k2
    gallery_weights = weights[n_query:]
    jaccard = np.empty((n_query, len(gallery)), np.float32)
    for qi in range(n_query):
        cols = np.flatnonzero(weights[qi])
        overlap = np.minimum(weights[qi, cols][None, :], gallery_weights[:, cols]).sum(axis=1)
        # rows of V sum to 1, so sum(max) = 2 - sum(min)
        jaccard[qi] = 1.0 - overlap / (2.0 - overlap)
    return (1.0 - lambda_value) * jaccard + lambda_value * dist[:n_query, n_query:]


def _nearest_first(dist: np.ndarray, width: int, rows: int = 256) -> np.ndarray:
    """Each row's ``width`` nearest columns, nearest first (ties by column), sorted in row chunks
    so that no (n x n) index array is ever made."""
    n = len(dist)
    width = min(width, n)
    out = np.empty((n, width), np.int64)
    for start in range(0, n, rows):
        block = dist[start : start + rows]
        if width < n:
            part = np.argpartition(block, width - 1, axis=1)[:, :width]
            part.sort(axis=1)  # column order first, so the stable sort below breaks ties by column
        else:
            part = np.broadcast_to(np.arange(n), block.shape).copy()
        order = np.argsort(np.take_along_axis(block, part, axis=1), axis=1, kind="stable")
        out[start : start + rows] = np.take_along_axis(part, order, axis=1)
    return out


def rerank_similarities(query: np.ndarray, gallery: np.ndarray, config: RerankConfig) -> np.ndarray:
    """Re-ranked scores as similarities (higher = more alike): ``1 - distance``."""
    return 1.0 - k_reciprocal_distances(query, gallery, config.k1, config.k2, config.lambda_value)
