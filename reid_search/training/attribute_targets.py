"""Attribute targets for training the tower: PETA-style labels (``attributes.csv``) matched to
the training images, so the ``attr`` loss can teach the embedding what people wear and carry.

The people the attribute heads are scored on are never given: ``train-attributes``' default split
(:data:`~reid_search.attributes.labels.TEST_FRACTION`, :data:`~reid_search.attributes.labels.SPLIT_SEED`)
is held out, so a head trained on this tower's embeddings is still scored on people whose
attributes nothing saw. A training image without labels gets targets of -1 (ignored).

Usage::

    targets, prior = load_attribute_targets(["../shared/data/extra-crops"], data)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..attributes.labels import SPLIT_SEED, TEST_FRACTION, join_labels, read_labels
from ..errors import TrainingError


def load_attribute_targets(
    folders: list[str], data, test_fraction: float = TEST_FRACTION, seed: int = SPLIT_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(targets (images, attributes) with -1 where unknown, each attribute's positive rate)."""
    labels = join_labels([read_labels(folder) for folder in folders])
    held_out = labels.test_people(test_fraction, seed)
    row_of = {str(Path(p).resolve()): i for i, p in enumerate(data.train_paths)}
    targets = np.full((len(data.train_paths), len(labels.names)), -1.0, np.float32)
    matched = 0
    for path, person, row in zip(labels.paths, labels.persons, labels.matrix, strict=True):
        index = row_of.get(str(Path(path).resolve()))
        if index is not None and person not in held_out:
            targets[index] = row
            matched += 1
    if not matched:
        raise TrainingError(
            f"{', '.join(folders)}: no labelled image is a training image (give the same folders as "
            "--named-crops or data)"
        )
    known = targets[:, 0] >= 0
    prior = np.clip(targets[known].mean(axis=0), 1e-3, 1 - 1e-3).astype(np.float32)
    return targets, prior
