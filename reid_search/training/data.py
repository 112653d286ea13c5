"""Training data from one or more datasets: decoded pixels, namespaced labels, held-out identities.

Each dataset (a dataset folder or a ``records`` folder) is split by identity into training
and validation people. Its identities are namespaced by the dataset's name (person
``0001`` of ``cuhk03-mars`` is ``cuhk03-mars/0001``, never the same person as
``0001`` elsewhere), and its validation images stay a set of their own so every dataset
is validated (and reported) separately, on its own cameras.

Usage::

    from reid_search.training import TrainConfig
    config = TrainConfig(data=["../shared/data/cuhk03-mars", "../shared/data/market1501-train"],
                         out="runs/x")
    data = load_training_data(config)
    data.n_classes, [v.name for v in data.validation]
    # (1301, ['cuhk03-mars', 'market1501-train'])
"""

from __future__ import annotations

import json
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.images import ImageError, decode_image, load_image
from ..data.layouts import scan_dataset
from ..embedding.vectors import read_vectors
from .config import TEACHER_LOSSES, TrainConfig, TrainingError

UNLABELLED = -1  # the training label of a crop nobody named: it learns from the teacher only


@dataclass
class ValidationSet:
    """Held-out identities of one dataset (never trained on)."""

    name: str
    pixels: np.ndarray  # uint8 (N, H, W, 3)
    persons: np.ndarray
    cameras: np.ndarray  # -1 where unknown
    paths: list[str]

    @property
    def n_identities(self) -> int:
        return len(set(self.persons.tolist()))


@dataclass
class TrainingData:
    """Decoded training images of every dataset with namespaced labels, and one validation set each."""

    train_pixels: np.ndarray  # uint8 (N, H, W, 3)
    train_labels: np.ndarray  # 0..C-1 over all datasets; UNLABELLED for crops of --unlabelled folders
    train_paths: list[str]
    train_keys: list[str]  # path relative to its dataset's root (how teacher targets are matched)
    train_dataset: np.ndarray  # index into ``sources`` of each training image
    validation: list[ValidationSet]
    n_classes: int
    sources: list[str]
    skipped: list[str] = field(default_factory=list)

    @property
    def n_unlabelled(self) -> int:
        return int((self.train_labels == UNLABELLED).sum())

    def describe(self) -> str:
        per = ", ".join(
            f"{Path(s).name}: {int((self.train_dataset == i).sum())}" for i, s in enumerate(self.sources)
        )
        val = sum(len(v.paths) for v in self.validation)
        crops = f" + {self.n_unlabelled} unlabelled crops (teacher only)" if self.n_unlabelled else ""
        return (
            f"data: {len(self.train_labels) - self.n_unlabelled} training images of {self.n_classes} "
            f"identities{crops} ({per}), "
            f"{val} validation images of {sum(v.n_identities for v in self.validation)} held-out identities"
            + (f", {len(self.skipped)} unreadable skipped" if self.skipped else "")
        )


@dataclass
class _Part:
    """One dataset's training and validation items before decoding."""

    name: str
    root: str
    train: list[tuple[str, str | None, bytes | None]]  # (path, person or None, encoded bytes or None)
    val: list[tuple[str, str, int, bytes | None]]  # (path, person, camera, bytes or None)


def decode_all(
    paths: list[str], size: tuple[int, int], blobs: list[bytes | None] | None = None
) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode files (or encoded bytes) to uint8 at ``size``: (pixels, kept indices, failures)."""

    def one(i: int):
        try:
            if blobs is None or blobs[i] is None:
                return load_image(paths[i], size).pixels.astype(np.uint8)
            return decode_image(blobs[i], size, paths[i])[0].astype(np.uint8)
        except ImageError as exc:
            return str(exc)

    with ThreadPoolExecutor(4) as pool:
        decoded = list(pool.map(one, range(len(paths))))
    keep = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    failures = [d for d in decoded if isinstance(d, str)]
    pixels = np.stack([decoded[i] for i in keep]) if keep else np.zeros((0, *size, 3), np.uint8)
    return pixels, keep, failures


def _records_part(folder: str) -> _Part:
    from ..data.records import read_records

    summary_file = Path(folder) / "summary.json"
    root = json.loads(summary_file.read_text()).get("source", folder) if summary_file.is_file() else folder
    train = [(e.path, e.person, e.image) for e in read_records(folder, "train")]
    val = [(e.path, e.person, e.camera, e.image) for e in read_records(folder, "val")]
    return _Part(Path(root).name or Path(folder).name, str(root), train, val)


def _dataset_part(folder: str, val_fraction: float, seed: int) -> _Part:
    from ..data.records import split_identities

    scan = scan_dataset(folder)
    hint = ", or give the folder with --unlabelled and its --teacher-targets"
    records = scan.people_records(scan.train_records(), purpose="training", hint=hint)
    train_ids, _ = split_identities([r.person for r in records], val_fraction, seed)
    train_set = set(train_ids)
    train = [(r.path, r.person, None) for r in records if r.person in train_set]
    val = [
        (r.path, r.person, r.camera if r.camera is not None else -1, None)
        for r in records
        if r.person not in train_set
    ]
    return _Part(Path(scan.root).name, scan.root, train, val)


def _unlabelled_part(folder: str) -> _Part:
    """Every image below ``folder`` as one unlabelled training source (no validation people)."""
    scan = scan_dataset(folder, layout="unlabelled")
    if not scan.records:
        raise TrainingError(f"{folder}: no images to train on")
    return _Part(Path(scan.root).name, scan.root, [(r.path, None, None) for r in scan.records], [])


def person_from_name(relative: Path) -> str | None:
    """The person a named crop shows: its sub-folders and the file name up to the first ``_``.

    >>> person_from_name(Path("townc/0001_0042.jpg")), person_from_name(Path("solo.jpg"))
    ('townc/0001', None)
    """
    stem, sep, _ = relative.name.partition("_")
    return "/".join([*relative.parts[:-1], stem]) if sep and stem else None


def _named_crops_part(folder: str, keep_lone: bool) -> _Part:
    """Crops named ``PERSON_anything`` (``--named-crops``): a person with two or more crops joins
    the identity losses; a single crop, or a name without ``_``, learns from the teacher only
    (kept only with ``keep_lone``: when a teacher loss is trained). Sub-folders are scenes:
    ``townc/0001`` and ``caviar/0001`` are two people."""
    part = _unlabelled_part(folder)
    persons = [person_from_name(Path(path).relative_to(part.root)) for path, _, _ in part.train]
    counts = Counter(persons)
    named = [
        (path, person if person is not None and counts[person] >= 2 else None, None)
        for (path, _, _), person in zip(part.train, persons, strict=True)
    ]
    part.train = [item for item in named if keep_lone or item[1] is not None]
    return part


def _unique_names(parts: list[_Part]) -> None:
    seen: dict[str, int] = {}
    for part in parts:
        n = seen.get(part.name, 0)
        seen[part.name] = n + 1
        if n:
            part.name = f"{part.name}-{n + 1}"


def _relative_key(path: str, root: str) -> str:
    try:
        return Path(os.path.relpath(path, root)).as_posix()
    except ValueError:  # another drive on Windows
        return Path(path).name


def load_training_data(config: TrainConfig) -> TrainingData:
    """Read every dataset of ``config.data``, split its identities, namespace and decode."""
    from ..data.records import is_records_folder

    size = config.tower.input_size
    parts = (
        [
            _records_part(d) if is_records_folder(d) else _dataset_part(d, config.val_fraction, config.seed)
            for d in config.data
        ]
        + [_unlabelled_part(d) for d in config.unlabelled]
        + [_named_crops_part(d, bool(set(TEACHER_LOSSES) & set(config.losses))) for d in config.named_crops]
    )
    _unique_names(parts)
    pixels, labels, paths, keys, owner, validation, skipped = [], [], [], [], [], [], []
    label_of: dict[str, int] = {}
    for index, part in enumerate(parts):
        tr_pix, keep, fails = decode_all([t[0] for t in part.train], size, [t[2] for t in part.train])
        skipped += fails
        kept = [part.train[i] for i in keep]
        for path, person, _ in kept:
            labels.append(
                UNLABELLED if person is None else label_of.setdefault(f"{part.name}/{person}", len(label_of))
            )
            paths.append(path)
            keys.append(_relative_key(path, part.root))
            owner.append(index)
        pixels.append(tr_pix)
        if not part.val:
            continue
        va_pix, va_keep, vfails = decode_all([v[0] for v in part.val], size, [v[3] for v in part.val])
        skipped += vfails
        val = [part.val[i] for i in va_keep]
        validation.append(
            ValidationSet(
                part.name,
                va_pix,
                np.array([f"{part.name}/{v[1]}" for v in val]),
                np.array([v[2] for v in val], dtype=np.int64),
                [v[0] for v in val],
            )
        )
    return TrainingData(
        np.concatenate(pixels),
        np.array(labels, dtype=np.int64),
        paths,
        keys,
        np.array(owner, dtype=np.int64),
        validation,
        len(label_of),
        [p.root for p in parts],
        skipped,
    )


def load_teacher_targets(files: list[str], data: TrainingData) -> np.ndarray:
    """Teacher vectors for each training image, matched by its path inside its dataset.

    Each ``.npz`` holds ``paths`` (relative to its dataset's root, as ``reid-search embed``
    writes them) and ``embeddings``. A dataset takes the one file that has a vector for
    every one of its training images; when several do (datasets with the same file
    names), the files pair with the datasets in the order both were given.
    """
    tables = []
    for file in files:
        loaded = read_vectors(file)
        tables.append(dict(zip((Path(p).as_posix() for p in loaded.paths), loaded.embeddings, strict=True)))
    dims = {len(next(iter(t.values()))) for t in tables if t}
    if len(dims) > 1:
        raise TrainingError(f"teacher targets disagree on their size: {sorted(dims)}")
    keys = np.array(data.train_keys)
    out = np.zeros((len(keys), dims.pop() if dims else 1), np.float32)
    for index in range(len(data.sources)):
        mine = np.flatnonzero(data.train_dataset == index)
        table = tables[_teacher_file_for(index, keys[mine], tables, files, len(data.sources))]
        out[mine] = np.stack([table[k] for k in keys[mine]])
    return out


def _teacher_file_for(index: int, keys: np.ndarray, tables: list[dict], files: list[str], n_sets: int) -> int:
    """Which teacher file serves dataset ``index`` (see :func:`load_teacher_targets`)."""
    covering = [i for i, t in enumerate(tables) if all(k in t for k in keys)]
    if len(covering) == 1:
        return covering[0]
    if index in covering and len(tables) == n_sets:
        return index
    if covering:
        raise TrainingError(
            "several teacher files cover one dataset; give one file per dataset, in its order"
        )
    best = max(range(len(tables)), key=lambda i: sum(k in tables[i] for k in keys))
    missing = [k for k in keys if k not in tables[best]]
    raise TrainingError(
        f"{', '.join(files)}: no teacher vector for {len(missing)} training images of dataset "
        f"{index + 1}, e.g. {missing[0]}"
    )
