"""What a run says about its model: validation per dataset, the same-person threshold, the card.

Validation uses identities held out of training (never a test set) and the engine's own
evaluation code, one dataset at a time (its own cameras). The ``compare`` threshold is the
equal error rate of cross-camera pairs pooled over the held-out identities of every
training dataset; the card also gives the false-accept and false-reject rates at that
threshold for each dataset, so a user sees how well it holds across cameras.

Usage::

    metrics = validate_sets(tower, data.validation)
    metrics["rank1"], metrics["per_dataset"]["cuhk03-mars"]["mAP"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..calibration.fit import dataset_rates, equal_error_threshold, labelled_pairs, lookalike_similarities
from ..calibration.lookalikes import clothing_descriptor
from ..embedding.model_store import ModelCard
from .config import TrainConfig
from .data import TrainingData, ValidationSet


def embed_pixels(tower, pixels: np.ndarray, batch: int = 128) -> np.ndarray:
    """Unit embeddings of uint8 pixels by the tower in inference mode."""
    from ..embedding.embedder import l2_normalise

    out = [
        tower(pixels[i : i + batch].astype(np.float32), training=False).numpy()
        for i in range(0, len(pixels), batch)
    ]
    return l2_normalise(np.concatenate(out)) if out else np.zeros((0, tower.output_shape[-1]), np.float32)


def _score_set(vectors: np.ndarray, val: ValidationSet) -> dict[str, float]:
    from ..evaluation.metrics import score_items, summarise
    from ..evaluation.protocols import EvalItems, cross_camera

    items = EvalItems.from_labels(vectors, val.persons, val.cameras, paths=val.paths)
    cams = sorted(set(val.cameras.tolist()))
    two = items.cameras_known and len(cams) == 2
    protocol = cross_camera(items, [cams[0]] if two else None, [cams[1]] if two else None)
    summary = summarise(score_items(items, protocol))
    return {"rank1": summary.rank(1), "mAP": summary.mean_ap, "queries": summary.n_scored}


def validate_sets(tower, validation: list[ValidationSet]) -> dict[str, Any]:
    """Rank-1/mAP per validation set and their mean (``rank1``, ``mAP``); {} without validation."""
    per = {v.name: _score_set(embed_pixels(tower, v.pixels), v) for v in validation if len(v.pixels)}
    if not per:
        return {}
    return {
        "rank1": float(np.mean([m["rank1"] for m in per.values()])),
        "mAP": float(np.mean([m["mAP"] for m in per.values()])),
        "per_dataset": per,
    }


def calibrate_threshold(tower, validation: list[ValidationSet]) -> tuple[float | None, str, dict]:
    """EER threshold over pooled cross-camera pairs; (threshold, rule, per-dataset FAR/FRR)."""
    pairs = {}
    for v in validation:
        if len(v.pixels) < 2:
            continue
        cams = v.cameras if (v.cameras >= 0).all() else None
        vectors = embed_pixels(tower, v.pixels)
        same, diff = labelled_pairs(vectors, v.persons, cams)
        alike = lookalike_similarities(vectors, clothing_descriptor(v.pixels), v.persons, cams)
        if len(same) and len(diff):
            pairs[v.name] = (same, diff, cams is not None, alike)
    if not pairs:
        return None, "validation has no same/different pairs: no threshold", {}
    same = np.concatenate([p[0] for p in pairs.values()])
    diff = np.concatenate([p[1] for p in pairs.values()])
    choice = equal_error_threshold(same, diff)
    threshold = round(choice.threshold, 4)
    per = {name: dataset_rates(threshold, s, d, alike) for name, (s, d, _, alike) in pairs.items()}
    cross = all(p[2] for p in pairs.values())
    rule = (
        f"equal error rate over {'cross-camera ' if cross else ''}pairs of the held-out identities of "
        f"{', '.join(pairs)} pooled: {choice.n_same} same, {choice.n_different} different pairs; "
        f"FRR {choice.false_reject:.3f}, FAR {choice.false_accept:.3f}"
    )
    return threshold, rule, per


def build_card(
    config: TrainConfig,
    data: TrainingData,
    *,
    metrics: dict[str, Any],
    threshold: tuple[float | None, str, dict],
    epochs_done: int,
    steps: int,
    seconds: float,
    interrupted: bool,
    frozen_layers: int,
    setup_seconds: float = 0.0,
) -> ModelCard:
    """The model card of a finished (or interrupted) run."""
    value, rule, per_dataset = threshold
    teachers = ", ".join(config.teacher_targets)
    return ModelCard(
        name=Path(config.out).name,
        architecture=config.tower.architecture,
        input_height=config.tower.input_height,
        input_width=config.tower.input_width,
        embedding_dim=config.tower.embedding_dim,
        threshold=value,
        threshold_rule=rule,
        trained=True,
        tower_config=config.tower.to_dict(),
        training={
            "command": config.command,
            "data": data.sources,
            "train_identities": int(data.n_classes),
            "train_images": len(data.train_labels) - data.n_unlabelled,
            "unlabelled_images": data.n_unlabelled,  # crops that learned from the teacher only
            "val_identities": sum(v.n_identities for v in data.validation),
            "val_images": sum(len(v.paths) for v in data.validation),
            "epochs": epochs_done,
            "epochs_planned": config.epochs,
            "interrupted": interrupted,
            "steps": steps,
            "wall_seconds": round(seconds, 1),  # the epochs (and validation), this session
            "setup_seconds": round(setup_seconds, 1),  # reading images and caching views before them
            "losses": config.losses,
            "teacher_targets": config.teacher_targets,
            "backbone_weights": config.tower.backbone_weights,
            "frozen_layers": frozen_layers,
            "config": config.to_dict(),
        },
        metrics={
            "validation": metrics,
            "validation_protocol": "cross-camera on held-out train identities, per dataset",
            "threshold_rates": per_dataset,
        },
        notes=f"distilled from teacher embeddings {teachers}" if teachers else "",
    )
