"""k-reciprocal re-ranking: a case worked by hand, and what it must never change."""

from __future__ import annotations

import numpy as np
import pytest

from reid_search.search.rerank import RerankConfig, k_reciprocal_distances


def test_hand_checked_three_point_case():
    """q = (1, 0); g1 = (0.6, 0.8); g2 = (-1, 0); k1 = 1, k2 = 1, lambda = 0.5.

    Squared distances 2 - 2cos: q-g1 0.8, q-g2 4, g1-g2 3.2; each row divided by its max:
    q [0, 0.2, 1], g1 [0.25, 0, 1], g2 [1, 0.8, 0]. q and g1 are each other's nearest, so
    R(q) = R(g1) = {q, g1} and R(g2) = {g2}. V[q] = (1, e^-0.2) / (1 + e^-0.2) over (q, g1),
    V[g1] = (e^-0.25, 1) / (1 + e^-0.25). Jaccard(q, g1) = 1 - m / (2 - m) with
    m = sum(min) = e^-0.25/(1+e^-0.25) + e^-0.2/(1+e^-0.2); Jaccard(q, g2) = 1.
    """
    q = np.array([[1.0, 0.0]], np.float32)
    g = np.array([[0.6, 0.8], [-1.0, 0.0]], np.float32)
    m = np.exp(-0.25) / (1 + np.exp(-0.25)) + np.exp(-0.2) / (1 + np.exp(-0.2))
    expected_g1 = 0.5 * (1 - m / (2 - m)) + 0.5 * 0.2
    got = k_reciprocal_distances(q, g, k1=1, k2=1, lambda_value=0.5)
    np.testing.assert_allclose(got, [[expected_g1, 1.0]], atol=1e-5)


def test_a_reciprocal_match_overtakes_a_one_sided_neighbour():
    """Points on the unit circle. The query sits at 0 degrees, its true match at +10; a tight
    group of five others sits at -8 .. -13.5 (two of them nearer the query than the match),
    the rest far away. With k1 = 3 the query's 4 nearest are {q, -8, -9, +10}: the group's
    members have each other, not the query, among their nearest, while the match has the
    query: only the match is k-reciprocal, so re-ranking puts it first."""

    def at(degrees):
        rad = np.radians(np.atleast_1d(degrees))
        return np.stack([np.cos(rad), np.sin(rad)], axis=1).astype(np.float32)

    query = at(0)
    gallery = at([-8, -9, -10.5, -12, -13.5, 10, 90, 150, 200, 260])
    assert list(np.argsort(-(gallery @ query[0]))[:3]) == [0, 1, 5]  # plain cosine: the group first
    reranked = k_reciprocal_distances(query, gallery, k1=3, k2=1, lambda_value=0.3)[0]
    assert np.argmin(reranked) == 5
    assert reranked[5] < 0.5 < reranked[0]


@pytest.mark.parametrize("seed", [0, 1])
def test_lambda_one_keeps_the_cosine_order(seed):
    rng = np.random.default_rng(seed)
    vecs = rng.normal(size=(25, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    q, g = vecs[:5], vecs[5:]
    dist = k_reciprocal_distances(q, g, k1=5, k2=3, lambda_value=1.0)
    for i in range(5):
        np.testing.assert_array_equal(
            np.argsort(dist[i], kind="stable"), np.argsort(-(g @ q[i]), kind="stable")
        )


def test_evaluate_with_rerank_records_it_and_changes_scores(synth_root, embedder):
    from reid_search.evaluation.run import evaluate

    plain = evaluate(synth_root, embedder, single_shot_draws=0, progress=False)
    reranked = evaluate(
        synth_root, embedder, single_shot_draws=0, progress=False, rerank=RerankConfig(k1=6, k2=3)
    )
    assert reranked.to_dict()["rerank"] == {"k1": 6, "k2": 3, "lambda_value": 0.3}
    assert plain.to_dict()["rerank"] is None
    assert reranked.summary.mean_ap != plain.summary.mean_ap
