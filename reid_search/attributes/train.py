"""Train an attribute head over a model's embeddings: ``reid-search train-attributes``.

1. Embed every labelled crop with the model (the vectors a gallery would store).
2. Split by person (:meth:`AttributeLabels.test_people`): the test people are never trained on.
3. Fit a linear layer with class-balanced binary cross-entropy (each attribute's positives and
   negatives weigh half each, so ``logit > 0`` is the balanced decision), in Keras.
4. Calibrate each attribute's logit (Platt) on out-of-fold logits of the training people
   (``calibration_folds`` layers each trained without one fold), so 0.5 means what it says.
5. Score the held-out people (mA, instance F1, calibration error) into the head's card.

Usage::

    from reid_search.attributes.train import AttributeTrainConfig, train_attribute_head
    head = train_attribute_head(AttributeTrainConfig(["../shared/data/extra-crops"], "x.attributes.npz"))
    head.card["metrics"]["mA"]
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .. import __version__
from ..embedding.model_store import resolve_model_path
from .head import AttributeHead, AttributeHeadError
from .labels import SPLIT_SEED, TEST_FRACTION, AttributeLabels, join_labels, read_labels
from .metrics import calibration_error, fit_platt, instance_f1, label_accuracy
from .vocabulary import ATTRIBUTES


@dataclass
class AttributeTrainConfig:
    """Every setting of one head's training (saved in its card)."""

    data: list[str]
    out: str
    model: str = ""  # the embedding model (default: the package's)
    test_fraction: float = TEST_FRACTION  # people held out for the card's scores
    seed: int = SPLIT_SEED
    epochs: int = 20
    lr: float = 1e-3
    l2: float = 1e-4
    batch_size: int = 64
    calibration_folds: int = 5
    extra: dict = field(default_factory=dict)

    def check(self) -> None:
        if not self.data:
            raise AttributeHeadError("train-attributes needs at least one labelled folder")
        if not 0 < self.test_fraction < 1:
            raise AttributeHeadError(f"--test-fraction must be between 0 and 1, not {self.test_fraction}")
        if self.epochs < 1 or self.calibration_folds < 2:
            raise AttributeHeadError("--epochs must be at least 1 and --calibration-folds at least 2")


def train_command(config: AttributeTrainConfig) -> str:
    """The command line that reproduces ``config`` (every setting explicit)."""
    words = ["reid-search", "train-attributes", *config.data, "--out", config.out]
    if config.model:
        words += ["--model", config.model]
    words += ["--test-fraction", f"{config.test_fraction:g}", "--seed", str(config.seed)]
    words += ["--epochs", str(config.epochs), "--lr", f"{config.lr:g}", "--l2", f"{config.l2:g}"]
    words += ["--calibration-folds", str(config.calibration_folds)]
    return shlex.join(words)


def fit_layer(
    vectors: np.ndarray, truth: np.ndarray, config: AttributeTrainConfig
) -> tuple[np.ndarray, np.ndarray]:
    """(weights, bias) of a class-balanced linear layer (see the module)."""
    import keras
    from keras import ops

    prior = np.clip(truth.mean(0), 1e-3, 1 - 1e-3).astype(np.float32)

    def balanced_bce(y, p):
        weight = y * (0.5 / prior) + (1 - y) * (0.5 / (1 - prior))
        p = ops.clip(p, 1e-6, 1 - 1e-6)
        return -ops.mean(weight * (y * ops.log(p) + (1 - y) * ops.log(1 - p)))

    keras.utils.set_random_seed(config.seed)
    inputs = keras.Input((vectors.shape[1],))
    layer = keras.layers.Dense(
        truth.shape[1], activation="sigmoid", kernel_regularizer=keras.regularizers.l2(config.l2)
    )
    model = keras.Model(inputs, layer(inputs))
    model.compile(keras.optimizers.Adam(config.lr), balanced_bce)
    model.fit(vectors, truth, epochs=config.epochs, batch_size=config.batch_size, verbose=0, shuffle=True)
    weights, bias = layer.get_weights()
    return weights.astype(np.float32), bias.astype(np.float32)


def out_of_fold_logits(
    vectors: np.ndarray, labels: AttributeLabels, config: AttributeTrainConfig
) -> np.ndarray:
    """Each training image's logits from a layer trained without its person's fold."""
    people = np.array(sorted(set(labels.persons.tolist())))
    np.random.default_rng(config.seed + 1).shuffle(people)
    fold_of = {p: i % config.calibration_folds for i, p in enumerate(people)}
    folds = np.array([fold_of[p] for p in labels.persons])
    logits = np.zeros_like(labels.matrix)
    for fold in range(config.calibration_folds):
        held = folds == fold
        weights, bias = fit_layer(vectors[~held], labels.matrix[~held], config)
        logits[held] = vectors[held] @ weights + bias
    return logits


def score_head(head: AttributeHead, vectors: np.ndarray, truth: np.ndarray) -> dict:
    """mA, per-attribute scores, instance F1 and calibration error of ``head`` on labelled vectors."""
    said = head.decisions(vectors)
    accuracy = label_accuracy(truth, said)
    probabilities = head.probabilities(vectors)
    pos = truth > 0.5
    per_attribute = {
        name: {
            "mA": None if np.isnan(accuracy[j]) else round(float(accuracy[j]), 4),
            "positive_recall": round(float(said[pos[:, j], j].mean()), 4) if pos[:, j].any() else None,
            "negative_recall": round(float((~said[~pos[:, j], j]).mean()), 4),
            "positive_images": int(pos[:, j].sum()),
        }
        for j, name in enumerate(head.names)
    }
    return {
        "mA": round(float(np.nanmean(accuracy)), 4),
        "instance": {k: round(v, 4) for k, v in instance_f1(truth, said).items()},
        "calibration_error": round(calibration_error(truth, probabilities), 4),
        "images": len(truth),
        "per_attribute": per_attribute,
    }


def fit_calibrated_head(
    vectors: np.ndarray, labels: AttributeLabels, test: np.ndarray, config: AttributeTrainConfig
) -> tuple[AttributeHead, dict]:
    """Steps 3-5 of the module on any vectors (one row per labelled crop): the head trained and
    calibrated on the rows not in ``test``, and its scores on the ``test`` rows.

    >>> # head, metrics = fit_calibrated_head(vectors, labels, labels.mask(test_people), config)
    """
    train = labels.subset(~test)
    weights, bias = fit_layer(vectors[~test], train.matrix, config)
    oof = out_of_fold_logits(vectors[~test], train, config)
    calibration = [fit_platt(oof[:, j], train.matrix[:, j]) for j in range(len(labels.names))]
    scale, shift = (np.array(c, np.float32) for c in zip(*calibration, strict=True))
    head = AttributeHead(labels.names, weights, bias, scale, shift)
    return head, score_head(head, vectors[test], labels.matrix[test])


def train_attribute_head(
    config: AttributeTrainConfig, log: Callable[[str], None] = lambda line: None
) -> AttributeHead:
    """Train, calibrate, score and save a head (see the module); returns it, saved at ``config.out``."""
    from ..embedding.embedder import Embedder

    config.check()
    started = time.perf_counter()
    labels = join_labels([read_labels(folder) for folder in config.data])
    embedder = Embedder(resolve_model_path(config.model or None))
    vectors, used, failures = embedder.embed_files(labels.paths)
    if failures:
        log(f"skipped {len(failures)} unreadable images, e.g. {failures[0]}")
    labels = labels.subset(np.array(used))
    test_people = labels.test_people(config.test_fraction, config.seed)
    test = labels.mask(test_people)
    train = labels.subset(~test)
    log(f"{len(train.paths)} training images of {len(set(train.persons))} people; {int(test.sum())} held out")
    head, metrics = fit_calibrated_head(vectors, labels, test, config)
    log(f"held-out people: mA {metrics['mA']:.3f}, instance F1 {metrics['instance']['f1']:.3f}")
    head.card = {
        "name": Path(config.out).name.removesuffix(".attributes.npz"),
        "route": "embedding: a linear layer over the model's stored unit embeddings",
        "model_sha256": embedder.model_sha256,
        "model": str(embedder.model.path.name),
        "model_trained_on": list((getattr(embedder.card, "training", None) or {}).get("data", [])),
        "notes": "the model's tower may have trained on the labelled images (identity or teacher "
        "losses, never their attribute labels): see model_trained_on; this head never saw the test people",
        "attributes": {a.name: {"means": a.label, "peta": list(a.peta)} for a in ATTRIBUTES},
        "decision": "logit > 0 (class-balanced training); probabilities Platt-calibrated "
        "on out-of-fold logits",
        "training": {
            "command": train_command(config),
            "config": asdict(config),
            "data": config.data,
            "train_people": len(set(train.persons.tolist())),
            "train_images": len(train.paths),
            "test_people": sorted(test_people),
            "test_images": int(test.sum()),
            "wall_seconds": round(time.perf_counter() - started, 1),
        },
        "metrics": metrics,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool_version": __version__,
    }
    head.save(config.out)
    return head
