"""Attribute labels in PETA's form, and the people-disjoint split every score is made on.

A labelled folder holds ``attributes.csv`` (``path,person,attributes``: the image's path
relative to the folder, its person, the PETA names the person has, space-separated; labels are
per person, an unlisted name is absent or not annotated), as ``../shared/data/extra-crops``.

Usage::

    labels = read_labels("../shared/data/extra-crops")
    test = labels.test_people(0.3, seed=0)          # never trained on
    labels.matrix.shape                             # (images, len(ATTRIBUTE_NAMES))
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .head import AttributeHeadError
from .vocabulary import ATTRIBUTES

LABELS_FILE = "attributes.csv"
TEST_FRACTION = 0.3  # the people split every attribute score is made on (train-attributes, train's attr loss)
SPLIT_SEED = 0


@dataclass
class AttributeLabels:
    """Images, their people, and a 0/1 matrix over the attribute set."""

    paths: list[Path]
    persons: np.ndarray  # str, one per image
    matrix: np.ndarray  # (images, attributes) float32 0/1
    names: tuple[str, ...]

    def test_people(self, fraction: float, seed: int) -> set[str]:
        """A seeded ``fraction`` of the people (sorted names, shuffled): the held-out ones."""
        people = np.array(sorted(set(self.persons.tolist())))
        np.random.default_rng(seed).shuffle(people)
        return set(people[: int(round(fraction * len(people)))].tolist())

    def mask(self, people: set[str]) -> np.ndarray:
        """Which images belong to ``people``."""
        return np.array([p in people for p in self.persons])

    def subset(self, rows: np.ndarray) -> AttributeLabels:
        idx = np.flatnonzero(rows) if rows.dtype == bool else rows
        return AttributeLabels([self.paths[i] for i in idx], self.persons[idx], self.matrix[idx], self.names)


def read_labels(folder: str | Path) -> AttributeLabels:
    """The labels of ``folder/attributes.csv`` over :data:`ATTRIBUTES` (one clear error if absent)."""
    folder = Path(folder)
    csv_path = folder / LABELS_FILE
    if not csv_path.is_file():
        raise AttributeHeadError(
            f"{folder}: no {LABELS_FILE} (path,person,attributes: PETA names per person)"
        )
    paths, persons, rows = [], [], []
    with csv_path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        if not {"path", "person", "attributes"} <= set(reader.fieldnames or ()):
            raise AttributeHeadError(f"{csv_path}: the columns must be path,person,attributes")
        for line in reader:
            has = set(line["attributes"].split())
            paths.append(folder / line["path"])
            persons.append(f"{folder.name}/{line['person']}")
            rows.append([any(p in has for p in a.peta) for a in ATTRIBUTES])
    if not paths:
        raise AttributeHeadError(f"{csv_path}: no labelled image")
    names = tuple(a.name for a in ATTRIBUTES)
    return AttributeLabels(paths, np.array(persons), np.array(rows, np.float32), names)


def join_labels(parts: list[AttributeLabels]) -> AttributeLabels:
    """Several labelled folders as one (people stay apart: their names carry the folder)."""
    return AttributeLabels(
        [p for part in parts for p in part.paths],
        np.concatenate([part.persons for part in parts]),
        np.concatenate([part.matrix for part in parts]),
        parts[0].names,
    )
