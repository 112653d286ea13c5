"""Metric definitions on hand-computed cases and against an independent plain-loop implementation."""

from __future__ import annotations

import numpy as np
import pytest

from reid_search.evaluation.metrics import score_query, summarise
from reid_search.evaluation.protocols import EvalItems, cross_camera, matching_masks
from reid_search.evaluation.run import score_protocol


def test_average_precision_hand_computed():
    # ranking: neg, pos, neg, pos -> precisions at hits 1/2 and 2/4 -> AP 0.5; INP 2/4
    s = score_query(np.array([0.9, 0.8, 0.7, 0.6]), np.array([0, 1, 0, 1], bool), np.zeros(4, bool))
    assert s.first_hit == 2
    assert s.ap == pytest.approx(0.5)
    assert s.inp == pytest.approx(0.5)


def test_junk_is_removed_before_ranking():
    # the top item is junk: removing it makes the positive rank 1
    s = score_query(np.array([0.9, 0.8, 0.1]), np.array([0, 1, 0], bool), np.array([1, 0, 0], bool))
    assert (s.first_hit, s.ap, s.inp) == (1, 1.0, 1.0)


def test_ties_keep_gallery_order():
    sims = np.array([0.5, 0.5, 0.5])
    positive_last = score_query(sims, np.array([0, 0, 1], bool), np.zeros(3, bool))
    positive_first = score_query(sims, np.array([1, 0, 0], bool), np.zeros(3, bool))
    assert positive_last.first_hit == 3 and positive_last.ap == pytest.approx(1 / 3)
    assert positive_first.first_hit == 1 and positive_first.ap == 1.0


def test_query_without_match_is_reported_not_dropped():
    scores = [
        score_query(np.array([0.9, 0.1]), np.array([1, 0], bool), np.zeros(2, bool)),
        score_query(
            np.array([0.9, 0.1]), np.array([0, 1], bool), np.array([0, 1], bool)
        ),  # only match is junk
    ]
    summary = summarise(scores, max_rank=2)
    assert summary.unmatched == [1]
    assert summary.n_scored == 1
    assert summary.rank(1) == 1.0 and summary.mean_ap == 1.0


def test_cmc_is_cumulative():
    scores = [
        score_query(np.array([0.9, 0.8, 0.7]), np.eye(3, dtype=bool)[i], np.zeros(3, bool)) for i in range(3)
    ]
    summary = summarise(scores, max_rank=3)
    assert summary.cmc.tolist() == pytest.approx([1 / 3, 2 / 3, 1.0])
    assert summary.mean_ap == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)


def plain_loop_metrics(sims, persons, cameras, max_rank):
    """Independent reference: explicit loops, no shared code with reid_search.evaluation.metrics."""
    n_q, n_g = sims.shape
    cmc_hits = [0] * max_rank
    aps, inps, scored = [], [], 0
    for q in range(n_q):
        order = sorted(range(n_g), key=lambda g: (-sims[q][g], g))
        kept = [g for g in order if not (persons[g] == persons[q] and cameras[g] == cameras[q])]
        flags = [persons[g] == persons[q] for g in kept]
        if not any(flags):
            continue
        scored += 1
        first = flags.index(True)
        for k in range(first, max_rank):
            cmc_hits[k] += 1
        hits, precisions, last = 0, [], 0
        for i, f in enumerate(flags):
            if f:
                hits += 1
                precisions.append(hits / (i + 1))
                last = i + 1
        aps.append(sum(precisions) / len(precisions))
        inps.append(hits / last)
    return [c / scored for c in cmc_hits], sum(aps) / scored, sum(inps) / scored, scored


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_plain_loop_reference(seed):
    rng = np.random.default_rng(seed)
    n, d = 60, 8
    persons = rng.integers(0, 12, n).astype(str)
    cameras = rng.integers(1, 4, n)
    vectors = rng.normal(size=(n, d)).astype(np.float32)
    vectors[5] = vectors[6]  # exact ties
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = EvalItems.from_labels(vectors, persons, cameras)
    protocol = cross_camera(items)
    summary = summarise(score_protocol(items, protocol, block=7), max_rank=10)
    sims = (vectors @ vectors.T).astype(np.float64)
    cmc, mean_ap, mean_inp, scored = plain_loop_metrics(sims, persons, cameras, 10)
    assert summary.n_scored == scored
    assert summary.cmc.tolist() == pytest.approx(cmc)
    assert summary.mean_ap == pytest.approx(mean_ap)
    assert summary.mean_inp == pytest.approx(mean_inp)


def test_distractors_are_negatives_and_junk_persons_ignored():
    vectors = np.eye(4, dtype=np.float32)
    items = EvalItems.from_labels(
        vectors,
        ["a", "a", "0000", "00-1"],
        cameras=[1, 2, 2, 2],
        kinds=["identity", "identity", "distractor", "junk"],
    )
    positive, junk = matching_masks(items, np.array([0]), np.arange(4))
    assert positive.tolist() == [[False, True, False, False]]
    assert junk.tolist() == [[True, False, False, True]]
    assert cross_camera(items).query.tolist() == [0, 1]  # distractors and junk never query


def test_single_shot_rank1_draws_one_item_per_person():
    from reid_search.evaluation.run import single_shot_rank1

    # query a (cam 1); gallery a@cam2 twice: one identical to the query, one orthogonal; b@cam2 in between
    vectors = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0.6, 0.8, 0]], np.float32)
    items = EvalItems.from_labels(vectors, ["a", "a", "a", "b"], cameras=[1, 2, 2, 2])
    protocol = cross_camera(items, query_cameras=[1], gallery_cameras=[2])
    value = single_shot_rank1(items, protocol, draws=400, seed=0)
    assert value == pytest.approx(0.5, abs=0.08)  # rank-1 exactly when the identical copy is drawn
    assert single_shot_rank1(items, protocol, draws=0) is None


def test_vectorised_block_scoring_equals_query_by_query_with_ties_and_junk():
    from reid_search.evaluation.metrics import score_block

    rng = np.random.default_rng(3)
    for _ in range(30):
        sims = np.round(rng.normal(size=(9, 40)), 1).astype(np.float32)  # many exact ties
        positive = rng.random((9, 40)) < 0.15
        junk = rng.random((9, 40)) < 0.15
        block = score_block(sims, positive, junk)
        one_by_one = [score_query(sims[i], positive[i], junk[i]) for i in range(9)]
        for got, want in zip(block, one_by_one, strict=True):
            assert (got.first_hit, got.n_positives) == (want.first_hit, want.n_positives)
            if want.ap is not None:
                assert got.ap == pytest.approx(want.ap) and got.inp == pytest.approx(want.inp)


def test_mars_sized_protocol_scores_every_query():
    """1,980 query tracklets against 12,180 (the MARS official sizes) on synthetic vectors.
    (Its time is measured by benchmarks/eval_speed.py, not here.)"""
    from reid_search.evaluation.protocols import EvalItems, Protocol
    from reid_search.evaluation.run import score_protocol

    rng = np.random.default_rng(0)
    persons = rng.integers(0, 600, 12180)
    centres = rng.normal(size=(600, 64)).astype(np.float32)
    vectors = centres[persons] + 0.8 * rng.normal(size=(12180, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = EvalItems.from_labels(vectors, persons, cameras=rng.integers(1, 7, 12180))
    protocol = Protocol("t", "", rng.choice(12180, 1980, replace=False), np.arange(12180))
    scores = score_protocol(items, protocol)
    scored = [s for s in scores if s.first_hit is not None]
    assert len(scores) == 1980 and len(scored) > 1900
    sample = protocol.query[:25]
    from reid_search.evaluation.protocols import matching_masks

    positive, junk = matching_masks(items, sample, protocol.gallery)
    reference = [score_query(vectors[q] @ vectors.T, positive[i], junk[i]) for i, q in enumerate(sample)]
    assert [s.first_hit for s in scores[:25]] == [r.first_hit for r in reference]


def test_pairwise_cluster_scores_count_every_pair():
    from itertools import combinations

    from reid_search.evaluation.metrics import pairwise_cluster_scores

    rng = np.random.default_rng(0)
    people, clusters = rng.integers(0, 6, 40), rng.integers(0, 9, 40)
    pairs = list(combinations(range(40), 2))
    together = [(i, j) for i, j in pairs if clusters[i] == clusters[j]]
    same = [(i, j) for i, j in pairs if people[i] == people[j]]
    both = [p for p in together if people[p[0]] == people[p[1]]]
    scores = pairwise_cluster_scores(people, clusters)
    assert scores.precision == pytest.approx(len(both) / len(together))
    assert scores.recall == pytest.approx(len(both) / len(same))
    assert (scores.clusters, scores.people) == (len(set(clusters)), len(set(people)))
    perfect = pairwise_cluster_scores(people, people + 100)
    assert perfect.precision == perfect.recall == perfect.f1 == 1.0
