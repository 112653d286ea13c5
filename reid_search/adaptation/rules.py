"""Re-fit the decision rules of an adapted model without a label of the target.

An adapted model moves every cosine, so the start model's compare threshold and open-set
rule no longer mean what their cards say. Both are fitted again from what the target crops
themselves prove, plus (when its folders are here) the held-out people of the start model's
labelled training data:

* **same person**: crops of one tracklet, and crops the final clustering joined across
  cameras (pseudo-identities: only those seen on two cameras or more count);
* **different people**: two crops of one frame, and crops of different pseudo-identities.

The open-set rule is simulated on the pseudo-identities (each querying from one camera
against galleries of 30/60/90% of them, as :func:`~reid_search.calibration.open_set.simulate`)
and on the source's held-out people; the card says which evidence was used. Never the people
a benchmark tests on: those are not in the adaptation crops.

Usage::

    evidence = target_evidence(vectors, labels, target)
    refit_rules("lobby-adapted.keras", evidence, source_datasets=["../shared/data/cuhk01-mars"])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .target import TargetCrops


@dataclass
class Evidence:
    """Labelled-by-structure vectors: ``persons`` are pseudo-identities, ``what`` says whose."""

    name: str
    vectors: np.ndarray
    persons: np.ndarray
    cameras: np.ndarray
    what: str


def target_evidence(vectors: np.ndarray, labels: np.ndarray, target: TargetCrops) -> Evidence | None:
    """The pseudo-identities seen on two or more cameras (None if fewer than 20 such)."""
    spanning = [c for c in np.unique(labels[labels >= 0]) if len(np.unique(target.cameras[labels == c])) > 1]
    if len(spanning) < 20:
        return None
    rows = np.flatnonzero(np.isin(labels, spanning))
    return Evidence(
        "target",
        vectors[rows],
        labels[rows].astype(str),
        target.cameras[rows],
        f"{len(spanning)} pseudo-identities of the target seen on 2+ cameras ({len(rows)} crops; "
        "tracklets and cross-camera associations as same person, same-frame crops never joined)",
    )


def source_evidence(embedder, datasets: list[str], val_fraction: float, seed: int) -> list[Evidence]:
    """The held-out people of each labelled dataset that is present here."""
    from ..calibration.fit import held_out_vectors

    out = []
    for data in datasets:
        if not Path(data).is_dir():
            continue
        name, vectors, persons, cameras, _ = held_out_vectors(embedder, data, val_fraction, seed)
        if (cameras >= 0).all() and len(np.unique(persons)) >= 20:
            out.append(
                Evidence(
                    name, vectors, persons, cameras, f"{len(np.unique(persons))} held-out people of {name}"
                )
            )
    return out


def refit_rules(
    model_path: str | Path, evidence: list[Evidence], open_set_far: float = 0.1, compare_far: float = 0.001
) -> dict:
    """Fit the compare threshold (at ``compare_far`` false accepts over pooled cross-camera pairs)
    and both open-set rules (entries, tracklets) on ``evidence``; write them into the model's
    card(s); returns what was written (rates per evidence set)."""
    from ..calibration.fit import (
        Calibration,
        far_threshold,
        labelled_pairs,
        write_open_set,
        write_threshold,
    )
    from ..calibration.open_set import ENTRIES, GALLERY_SHARES, PROTOCOL_SHARE, TRACKLETS, fit_rule, simulate

    if not evidence:
        return {}
    used = "; ".join(e.what for e in evidence)
    pairs = {e.name: labelled_pairs(e.vectors, e.persons, e.cameras) for e in evidence}
    same = np.concatenate([p[0] for p in pairs.values()])
    diff = np.concatenate([p[1] for p in pairs.values()])
    choice = far_threshold(same, diff, compare_far)
    threshold = math.ceil(choice.threshold * 1e4) / 1e4
    rule_text = (
        f"false-accept rate {compare_far:g} over cross-camera pairs, fitted after adaptation without target "
        f"labels on: {used}: {choice.n_same} same, {choice.n_different} different pairs; "
        f"FRR {choice.false_reject:.3f}, FAR {choice.false_accept:.3f}"
    )
    per_pairs = {name: {"pairs_same": len(s), "pairs_different": len(d)} for name, (s, d) in pairs.items()}
    write_threshold(model_path, Calibration(threshold, rule_text, per_pairs))
    rules, per = {}, {e.name: {} for e in evidence}
    for sightings in (ENTRIES, TRACKLETS):
        groups = {
            (e.name, share): simulate(
                e.vectors, e.persons, e.cameras, present_share=share, sightings=sightings
            )
            for e in evidence
            for share in GALLERY_SHARES
        }
        description = (
            "logistic confidence of (best cosine + w * margin over the background), w for the lowest worst "
            f"false-alarm rate over evidence sets and gallery sizes; fitted after adaptation on simulated "
            f"open-set queries of: {used}; accept level at false-alarm rate {open_set_far:g}"
        )
        rules[sightings] = rule = fit_rule(list(groups.values()), open_set_far, description)
        for e in evidence:
            dir_, far = groups[e.name, PROTOCOL_SHARE].rates(
                rule.confidences(groups[e.name, PROTOCOL_SHARE]) >= rule.accept
            )
            entry = {"DIR": dir_, "FAR": far}
            per[e.name].update(entry) if sightings == ENTRIES else per[e.name].update({TRACKLETS: entry})
    write_open_set(model_path, rules[ENTRIES], rules[TRACKLETS], per)
    return {"threshold": threshold, "threshold_rule": rule_text, "open_set_rates": per, "evidence": used}
