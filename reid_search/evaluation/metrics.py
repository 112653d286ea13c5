"""Re-ID ranking metrics: CMC, mAP and mINP, with junk removal, as torchreid/fast-reid define them.

For each query the gallery is sorted by similarity, highest first (ties keep gallery
order: a stable sort). Junk entries are removed from the list before anything is counted.
Of what remains, "positives" are the true matches.

* CMC(k): share of queries whose first positive is at rank <= k.
* AP: non-interpolated average precision, the mean over positives of the precision at
  each positive's rank (torchreid's ``evaluate_rank``): ``AP = (1/R) sum_k P@k * rel(k)``.
* INP: R / (rank of the last positive), so mINP measures the hardest match.

Queries with no positive left after junk removal cannot be scored; they are counted and
listed in ``MetricSummary.unmatched``, never silently dropped.

Usage::

    >>> import numpy as np
    >>> sims = np.array([[0.9, 0.8, 0.1]])
    >>> pos = np.array([[False, True, True]])
    >>> s = summarise([score_query(sims[0], pos[0], np.zeros(3, bool))])
    >>> float(s.cmc[0]), round(s.mean_ap, 4), round(s.mean_inp, 4)
    (0.0, 0.5833, 0.6667)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class QueryScore:
    """One query's outcome; ``first_hit`` is 1-based, None when it had no positive."""

    first_hit: int | None
    ap: float | None
    inp: float | None
    n_positives: int


@dataclass
class MetricSummary:
    """CMC curve (``cmc[k-1]`` = CMC at rank k), mAP, mINP and the query counts."""

    cmc: np.ndarray
    mean_ap: float
    mean_inp: float
    n_scored: int
    unmatched: list[int] = field(default_factory=list)  # positions of queries with no positive

    def rank(self, k: int) -> float:
        """CMC at rank k (1-based)."""
        return float(self.cmc[min(k, len(self.cmc)) - 1]) if len(self.cmc) else 0.0


def score_query(similarities: np.ndarray, positive: np.ndarray, junk: np.ndarray) -> QueryScore:
    """Rank one query's gallery and score it; junk entries are removed first."""
    order = np.argsort(-np.asarray(similarities, dtype=np.float64), kind="stable")
    keep = ~np.asarray(junk, bool)[order]
    hits = np.asarray(positive, bool)[order][keep]
    n_pos = int(hits.sum())
    if n_pos == 0:
        return QueryScore(None, None, None, 0)
    ranks = np.flatnonzero(hits) + 1  # 1-based ranks of the positives
    precision_at_hits = np.arange(1, n_pos + 1) / ranks
    return QueryScore(int(ranks[0]), float(precision_at_hits.mean()), float(n_pos / ranks[-1]), n_pos)


def score_block(similarities: np.ndarray, positive: np.ndarray, junk: np.ndarray) -> list[QueryScore]:
    """Score a block of queries at once, exactly as :func:`score_query` does one by one.

    A positive's rank is one plus the number of non-junk gallery items ranked before it
    (higher similarity, or equal similarity earlier in gallery order: a stable sort). Each
    row is sorted once and every positive is placed by binary search; junk above it
    (sparse) is subtracted, and the rare exact ties are resolved by gallery order.
    """
    sims = np.asarray(similarities)
    keep = ~np.asarray(junk, bool)
    pos = np.asarray(positive, bool) & keep
    q_idx, g_idx = np.nonzero(pos)  # row-major: grouped by query, gallery order within
    if len(q_idx) == 0:
        return [QueryScore(None, None, None, 0) for _ in range(len(sims))]
    ascending = np.sort(sims, axis=1)
    own = sims[q_idx, g_idx]
    counts = np.bincount(q_idx, minlength=len(sims))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    junk_q, junk_g = np.nonzero(~keep)
    junk_start = np.searchsorted(junk_q, np.arange(len(sims)))
    junk_end = np.searchsorted(junk_q, np.arange(len(sims)), side="right")
    ranks = np.empty(len(q_idx), np.int64)
    for q in np.flatnonzero(counts):
        lo, hi = starts[q], starts[q] + counts[q]
        values = own[lo:hi]
        right = np.searchsorted(ascending[q], values, side="right")
        ties = right - np.searchsorted(ascending[q], values, side="left") - 1
        junk_sims = sims[q, junk_g[junk_start[q] : junk_end[q]]]
        ranks[lo:hi] = sims.shape[1] - right + 1 - (junk_sims[None, :] > values[:, None]).sum(axis=1)
        for i in np.flatnonzero(ties):  # exact ties: stable (gallery) order, junk excluded
            g = g_idx[lo + i]
            ranks[lo + i] += int(((sims[q, :g] == values[i]) & keep[q, :g]).sum())
    out = []
    for start, n in zip(starts, counts, strict=True):
        if n == 0:
            out.append(QueryScore(None, None, None, 0))
            continue
        r = np.sort(ranks[start : start + n])
        ap = float((np.arange(1, n + 1) / r).mean())
        out.append(QueryScore(int(r[0]), ap, float(n / r[-1]), int(n)))
    return out


def summarise(scores: Sequence[QueryScore], max_rank: int = 50) -> MetricSummary:
    """Average query scores into a CMC curve (to ``max_rank``), mAP and mINP."""
    scored = [s for s in scores if s.first_hit is not None]
    unmatched = [i for i, s in enumerate(scores) if s.first_hit is None]
    if not scored:
        return MetricSummary(np.zeros(max_rank), 0.0, 0.0, 0, unmatched)
    first = np.array([s.first_hit for s in scored])
    cmc = np.array([(first <= k).mean() for k in range(1, max_rank + 1)])
    return MetricSummary(
        cmc=cmc,
        mean_ap=float(np.mean([s.ap for s in scored])),
        mean_inp=float(np.mean([s.inp for s in scored])),
        n_scored=len(scored),
        unmatched=unmatched,
    )


@dataclass(frozen=True)
class ClusterScores:
    """Pairwise agreement of a grouping with the true people (every pair of entries counts)."""

    precision: float  # pairs put together that are the same person
    recall: float  # same-person pairs that were put together
    clusters: int
    people: int

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


def pairwise_cluster_scores(people: Sequence, clusters: Sequence) -> ClusterScores:
    """Pairwise precision and recall of ``clusters`` against ``people`` (labels per entry).

    >>> s = pairwise_cluster_scores(["a", "a", "a", "b"], [0, 0, 1, 1])
    >>> round(s.precision, 3), round(s.recall, 3), s.clusters, s.people
    (0.5, 0.333, 2, 2)
    """
    _, person = np.unique(np.asarray(people), return_inverse=True)
    _, cluster = np.unique(np.asarray(clusters), return_inverse=True)
    pairs = lambda counts: float((counts * (counts - 1) / 2).sum())  # noqa: E731
    joint = np.unique(np.stack([person, cluster]), axis=1, return_counts=True)[1]
    together, same = pairs(joint), pairs(np.bincount(person))
    predicted = pairs(np.bincount(cluster))
    return ClusterScores(
        precision=together / predicted if predicted else 1.0,
        recall=together / same if same else 1.0,
        clusters=int(cluster.max() + 1) if len(cluster) else 0,
        people=int(person.max() + 1) if len(person) else 0,
    )


def score_items(
    items, protocol, block: int = 512, similarities: np.ndarray | None = None
) -> list[QueryScore]:
    """Score every query of ``protocol`` over ``items`` (cosine of their vectors, or the given
    query x gallery ``similarities``), vectorised a block of queries at a time (memory bounded)."""
    from .protocols import MatchCodes, matching_masks

    gallery_vectors = items.vectors[protocol.gallery]
    codes = MatchCodes.of(items)
    scores: list[QueryScore] = []
    for start in range(0, len(protocol.query), block):
        q = protocol.query[start : start + block]
        sims = (
            items.vectors[q] @ gallery_vectors.T
            if similarities is None
            else similarities[start : start + block]
        )
        positive, junk = matching_masks(items, q, protocol.gallery, codes)
        scores.extend(score_block(sims, positive, junk))
    return scores
