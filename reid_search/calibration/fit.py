"""Choose the same/different threshold that ``compare`` (and open-set search) applies to a cosine.

Two rules over labelled pairs (cross-camera where cameras are known, as in evaluation):

* equal error rate: the similarity at which the share of same-person pairs called
  "different" equals the share of different-person pairs called "same";
* a target false-accept rate (``far``): the lowest threshold that calls at most that share
  of different-person pairs "same" (strict: look-alikes stay apart).

:func:`calibrate_model` applies either to a trained model on the held-out identities of
one or more datasets (the same identity split as ``train``) and reports, per dataset, the
false-accept and false-reject rates at the chosen threshold, and the false-accept rate on
look-alikes (each image with the other person dressed most alike, :mod:`.lookalikes`).

Usage::

    >>> import numpy as np
    >>> same, diff = np.array([0.9, 0.8, 0.7]), np.array([0.2, 0.75, 0.1])
    >>> round(equal_error_threshold(same, diff).threshold, 3)
    0.75
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import TrainingError


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
        raise TrainingError("need at least one same-person and one different-person pair")
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


def far_threshold(same: np.ndarray, different: np.ndarray, far: float) -> ThresholdChoice:
    """The lowest threshold whose false-accept rate over ``different`` is at most ``far``.

    >>> far_threshold(np.array([0.9, 0.5]), np.linspace(0, 0.99, 100), 0.05).false_accept
    0.05
    """
    same, different = np.asarray(same, float), np.sort(np.asarray(different, float))[::-1]
    if len(same) == 0 or len(different) == 0:
        raise TrainingError("need at least one same-person and one different-person pair")
    allowed = int(np.floor(far * len(different)))
    threshold = float(np.nextafter(different[allowed], np.inf)) if allowed < len(different) else -1.0
    frr, far_got = rates_at(threshold, same, different)
    return ThresholdChoice(threshold, frr, far_got, len(same), len(different))


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


def lookalike_similarities(
    vectors: np.ndarray, descriptors: np.ndarray, persons: np.ndarray, cameras: np.ndarray | None
) -> np.ndarray:
    """Model similarity of each image and its look-alike (the other person, on another
    camera, dressed most alike: :mod:`reid_search.calibration.lookalikes`); one value per distinct pair."""
    from .lookalikes import lookalike_pairs

    found = lookalike_pairs(descriptors, persons, cameras)
    if len(found) == 0:
        return np.zeros(0)
    pairs = np.unique(np.sort(found, axis=1), axis=0)
    return np.einsum("ij,ij->i", vectors[pairs[:, 0]], vectors[pairs[:, 1]])


def dataset_rates(threshold: float, same: np.ndarray, different: np.ndarray, lookalike: np.ndarray) -> dict:
    """Error rates of one dataset's held-out pairs at ``threshold``, as cards report them."""
    frr, far = rates_at(threshold, same, different)
    return {
        "false_reject": frr,
        "false_accept": far,
        "same_pairs": len(same),
        "different_pairs": len(different),
        "lookalike_false_accept": float(np.mean(lookalike >= threshold)) if len(lookalike) else 0.0,
        "lookalike_pairs": len(lookalike),
    }


@dataclass
class Calibration:
    """A threshold, how it was chosen, and its error rates on each dataset's held-out people."""

    threshold: float
    rule: str
    per_dataset: dict[str, dict[str, float]]


def held_out_split(
    card, datasets: list[str], val_fraction: float | None = None, seed: int | None = None
) -> tuple[float, int]:
    """The identity split to calibrate on: by default the one the model's training held out
    (its card's ``training.config``; 0.1 and 0 for a model without one). A different split of a
    dataset the model trained on would count people it learned as held out (its thresholds and
    false-alarm rates would look better than they are): refused.

    >>> from types import SimpleNamespace
    >>> split = {"data": ["/d/cuhk03-mars"], "val_fraction": 0.1, "seed": 1}
    >>> card = SimpleNamespace(training={"config": split})
    >>> held_out_split(card, ["../d/cuhk03-mars"])
    (0.1, 1)
    >>> held_out_split(card, ["../d/other"], seed=0)  # a dataset it never trained on: any split
    (0.1, 0)
    """
    from pathlib import Path

    config = (getattr(card, "training", None) or {}).get("config") or {}
    trained_fraction, trained_seed = config.get("val_fraction"), config.get("seed")
    if trained_fraction is None or trained_seed is None:
        return (0.1 if val_fraction is None else val_fraction, 0 if seed is None else seed)
    chosen = (
        trained_fraction if val_fraction is None else val_fraction,
        trained_seed if seed is None else seed,
    )
    trained_on = {Path(d).name for d in config.get("data", [])}
    overlap = sorted(trained_on & {Path(d).name for d in datasets})
    if overlap and chosen != (trained_fraction, trained_seed):
        raise TrainingError(
            f"{', '.join(overlap)}: the model trained on it holding out --val-fraction "
            f"{trained_fraction:g} --seed {trained_seed}; another split (--val-fraction {chosen[0]:g} "
            f"--seed {chosen[1]}) would count people it learned as held out. Leave both options out"
        )
    return chosen


def held_out_vectors(
    embedder, data: str, val_fraction: float = 0.1, seed: int = 0
) -> tuple[str, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """(dataset name, vectors, persons, cameras (-1 unknown), paths) of the identities ``train``
    holds out of ``data`` with the same ``val_fraction`` and ``seed``."""
    from pathlib import Path

    from ..data.layouts import scan_dataset
    from ..data.records import split_identities

    scan = scan_dataset(data)
    records = scan.people_records(scan.train_records(), purpose="calibration")
    _, held_out = split_identities([r.person for r in records], val_fraction, seed)
    held = set(held_out)
    chosen = [r for r in records if r.person in held]
    vectors, used, _ = embedder.embed_files([r.path for r in chosen])
    kept = [chosen[i] for i in used]
    cameras = np.array([-1 if r.camera is None else r.camera for r in kept])
    return Path(scan.root).name, vectors, np.array([r.person for r in kept]), cameras, [r.path for r in kept]


def calibrate_open_set(
    embedder, datasets: list[str], false_alarm: float = 0.10, val_fraction: float = 0.1, seed: int = 0
):
    """The query's open-set rules for ``embedder`` from simulated open-set queries of the held-out
    identities of ``datasets`` (each person querying with one crop from another camera against
    an unlabelled gallery of ``GALLERY_SHARES`` of the people, 10 draws each): one for galleries
    of single crops and one, under ``"tracklets"``, for galleries whose background counts each
    visit (tracklet) once. Returns (rule, per dataset: DIR / FAR at its level with 60% of the
    people in the gallery, and the FAR at each gallery share; the tracklet rule's under
    ``"tracklets"``); ``rule.to_dict()`` plus ``"tracklets"`` is what cards store."""
    from .open_set import ENTRIES, GALLERY_SHARES, PROTOCOL_SHARE, TRACKLETS, fit_rule, simulate

    held = [held_out_vectors(embedder, data, val_fraction, seed)[:4] for data in datasets]
    names = [name for name, *_ in held]
    shares = ", ".join(f"{s:.0%}" for s in GALLERY_SHARES)
    rules, per = {}, {name: {} for name in names}
    for sightings in (ENTRIES, TRACKLETS):
        groups = {
            (name, share): simulate(vectors, persons, cameras, present_share=share, sightings=sightings)
            for name, vectors, persons, cameras in held
            for share in GALLERY_SHARES
        }
        counted = "each crop" if sightings == ENTRIES else "each visit (person and camera) once"
        description = (
            f"logistic confidence of (best cosine + w * its margin over the query's background, "
            f"which counts {counted}), w chosen for the lowest worst false-alarm rate over datasets "
            f"and gallery sizes; fitted on simulated open-set queries of the held-out identities (val "
            f"fraction {val_fraction:g}, seed {seed}) of {', '.join(names)} "
            f"({sum(len(g.score) for g in groups.values())} queries, {shares} of the people in the "
            f"gallery); accept level at false-alarm rate {false_alarm:g}"
        )
        rule = rules[sightings] = fit_rule(list(groups.values()), false_alarm, description)
        for name in names:
            rates = {share: groups[name, share].rates(rule.confidences(groups[name, share]) >= rule.accept)
                     for share in GALLERY_SHARES}  # fmt: skip
            dir_, far = rates[PROTOCOL_SHARE]
            entry = {
                "DIR": dir_,
                "FAR": far,
                "queries": len(groups[name, PROTOCOL_SHARE].score),
                "FAR_by_gallery_share": {f"{share:g}": round(f, 4) for share, (_, f) in rates.items()},
            }
            if sightings == ENTRIES:
                per[name].update(entry)
            else:
                per[name][TRACKLETS] = entry
    return rules[ENTRIES], rules[TRACKLETS], per


def calibrate_model(
    embedder, datasets: list[str], far: float | None = None, val_fraction: float = 0.1, seed: int = 0
) -> Calibration:
    """Threshold for ``embedder`` from the held-out identities of ``datasets`` (train's split).

    ``far`` None: equal error rate; else the target false-accept rate. Pairs are pooled over
    the datasets (never across them) for the choice; rates are reported per dataset.
    """
    from .lookalikes import clothing_descriptors

    pairs, lookalikes = {}, {}
    for data in datasets:
        name, vectors, persons, cameras, paths = held_out_vectors(embedder, data, val_fraction, seed)
        cameras = None if (cameras < 0).any() else cameras
        pairs[name] = labelled_pairs(vectors, persons, cameras)
        descriptors, seen = clothing_descriptors(paths)
        lookalikes[name] = lookalike_similarities(
            vectors[seen], descriptors, persons[seen], None if cameras is None else cameras[seen]
        )
    same = np.concatenate([p[0] for p in pairs.values()])
    diff = np.concatenate([p[1] for p in pairs.values()])
    choice = equal_error_threshold(same, diff) if far is None else far_threshold(same, diff, far)
    threshold = math.ceil(choice.threshold * 1e4) / 1e4  # rounded up: never more false accepts
    per = {}
    for name, (s, d) in pairs.items():
        per[name] = dataset_rates(threshold, s, d, lookalikes[name])
    how = "equal error rate" if far is None else f"false-accept rate {far:g}"
    rule = (
        f"{how} over cross-camera pairs of the held-out identities "
        f"(val fraction {val_fraction:g}, seed {seed}) of {', '.join(pairs)} pooled: "
        f"{choice.n_same} same, {choice.n_different} different pairs; "
        f"FRR {choice.false_reject:.3f}, FAR {choice.false_accept:.3f}"
    )
    return Calibration(threshold, rule, per)


def write_threshold(model_path, calibration: Calibration) -> list:
    """Store the threshold in the card of a ``.keras`` model and of its linked fast export."""
    return update_cards(
        model_path,
        lambda card: {
            "threshold": calibration.threshold,
            "threshold_rule": calibration.rule,
            "metrics": {**card.metrics, "threshold_rates": calibration.per_dataset},
        },
    )


def write_open_set(model_path, rule, tracklet_rule, per_dataset: dict) -> list:
    """Store the open-set rules (the tracklet galleries' under ``"tracklets"``) and their rates
    per dataset in the model's card(s)."""
    stored = {**rule.to_dict(), "tracklets": tracklet_rule.to_dict()}
    return update_cards(
        model_path,
        lambda card: {"open_set": stored, "metrics": {**card.metrics, "open_set_rates": per_dataset}},
    )


def update_cards(model_path, changes) -> list:
    """Apply ``changes(card) -> {field: value}`` to the card of a ``.keras`` model and of its
    linked fast export; the card files written."""
    from dataclasses import replace
    from pathlib import Path

    from ..embedding.model_store import card_path, read_card_file, write_card

    path = Path(model_path)
    written = []
    card = read_card_file(card_path(path))
    targets = [path] + ([path.with_name(card.fast_runtime)] if card.fast_runtime else [])
    for target in targets:
        if not card_path(target).is_file():
            continue
        current = read_card_file(card_path(target))
        write_card(target, replace(current, **changes(current)))
        written.append(card_path(target))
    return written
