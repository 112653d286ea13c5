"""TFRecord shards for training, split by identity so no validation person is ever trained on.

``write_records`` scans a dataset (default: its train split), assigns whole identities to
``val`` with probability ``val_fraction`` (seeded), and writes ``train-XXXXX-of-N.tfrecord``
and ``val-XXXXX-of-N.tfrecord`` shards of examples holding the encoded image bytes,
person label, person, camera, tracklet, frame and source path, plus ``label_map.json``
(person -> label; training identities are labels 0..n-1) and ``summary.json``.

Usage::

    from reid_search.data.records import write_records, read_records
    summary = write_records("../shared/data/cuhk03-mars", "runs/records")
    examples = read_records("runs/records", "train")
    examples[0].person, examples[0].label
    # ('0001', 0)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._files import write_json_atomic
from ..errors import InputError
from .layouts import ImageRecord, scan_dataset

RECORDS_FORMAT = "reid-search/records/v1"


@dataclass
class Example:
    """One training example as read back from a shard."""

    image: bytes
    label: int
    person: str
    camera: int
    tracklet: int
    frame: int
    path: str


def split_identities(persons: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Sorted train and validation identity lists; each identity lands wholly in one, and at
    least one identity trains (a lone person is never all held out).

    >>> train, val = split_identities(["a", "a", "b", "c"], 0.34, seed=0)
    >>> len(train), len(val)
    (2, 1)
    >>> split_identities(["a"], 0.5, seed=0)  # a lone person trains
    (['a'], [])
    """
    unique = sorted(set(persons))
    rng = np.random.default_rng(seed)
    n_val = int(round(len(unique) * val_fraction))
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    n_val = min(n_val, len(unique) - 1) if unique else 0
    val = set(rng.choice(unique, n_val, replace=False).tolist()) if n_val else set()
    return [p for p in unique if p not in val], sorted(val)


def _feature(value) -> Any:
    import tensorflow as tf

    if isinstance(value, bytes):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))
    if isinstance(value, str):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value.encode()]))
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))


def _serialise(record: ImageRecord, label: int) -> bytes:
    import tensorflow as tf

    features = {
        "image": _feature(Path(record.path).read_bytes()),
        "label": _feature(label),
        "person": _feature(record.person or ""),
        "camera": _feature(record.camera if record.camera is not None else -1),
        "tracklet": _feature(record.tracklet if record.tracklet is not None else -1),
        "frame": _feature(record.frame if record.frame is not None else -1),
        "path": _feature(record.path),
    }
    return tf.train.Example(features=tf.train.Features(feature=features)).SerializeToString()


def _write_shards(out: Path, split: str, items: list[tuple[ImageRecord, int]], shards: int) -> list[str]:
    import tensorflow as tf

    names = [f"{split}-{i:05d}-of-{shards:05d}.tfrecord" for i in range(shards)]
    writers = [tf.io.TFRecordWriter(str(out / n)) for n in names]
    try:
        for i, (record, label) in enumerate(items):
            writers[i % shards].write(_serialise(record, label))
    finally:
        for w in writers:
            w.close()
    return names


def write_records(
    data: str | Path,
    out: str | Path,
    val_fraction: float = 0.1,
    seed: int = 0,
    shards: int = 4,
    splits: list[str] | None = None,
    layout: str | None = None,
) -> dict[str, Any]:
    """Write identity-disjoint train/val TFRecord shards of ``data``; returns the summary."""
    scan = scan_dataset(data, layout, splits=splits)
    records = scan.train_records() if splits is None else scan.records
    records = scan.people_records(records, purpose="writing records")
    train_ids, val_ids = split_identities([r.person for r in records], val_fraction, seed)
    label_map = {p: i for i, p in enumerate(train_ids + val_ids)}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train_set = set(train_ids)
    train = [(r, label_map[r.person]) for r in records if r.person in train_set]
    val = [(r, label_map[r.person]) for r in records if r.person not in train_set]
    summary = {
        "format": RECORDS_FORMAT,
        "source": scan.root,
        "layout": scan.layout,
        "splits": sorted({r.split for r in records}),
        "val_fraction": val_fraction,
        "seed": seed,
        "shards": shards,
        "train": {
            "identities": len(train_ids),
            "images": len(train),
            "files": _write_shards(out, "train", train, shards),
        },
        "val": {
            "identities": len(val_ids),
            "images": len(val),
            "files": _write_shards(out, "val", val, shards) if val else [],
        },
        "n_train_classes": len(train_ids),
        "skipped": [f"{s.path}: {s.reason}" for s in scan.skipped],
    }
    write_json_atomic(out / "label_map.json", label_map)
    write_json_atomic(out / "summary.json", summary)
    return summary


def read_records(folder: str | Path, split: str) -> list[Example]:
    """Every example of one split (``train`` or ``val``), in shard order."""
    import tensorflow as tf

    folder = Path(folder)
    summary = json.loads((folder / "summary.json").read_text())
    if summary.get("format") != RECORDS_FORMAT:
        raise InputError(f"{folder}: not a reid-search records folder")
    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "person": tf.io.FixedLenFeature([], tf.string),
        "camera": tf.io.FixedLenFeature([], tf.int64),
        "tracklet": tf.io.FixedLenFeature([], tf.int64),
        "frame": tf.io.FixedLenFeature([], tf.int64),
        "path": tf.io.FixedLenFeature([], tf.string),
    }
    files = [str(folder / f) for f in summary[split]["files"]]
    examples = []
    for raw in tf.data.TFRecordDataset(files):
        e = tf.io.parse_single_example(raw, spec)
        examples.append(
            Example(
                image=e["image"].numpy(),
                label=int(e["label"]),
                person=e["person"].numpy().decode(),
                camera=int(e["camera"]),
                tracklet=int(e["tracklet"]),
                frame=int(e["frame"]),
                path=e["path"].numpy().decode(),
            )
        )
    return examples


def is_records_folder(path: str | Path) -> bool:
    summary = Path(path) / "summary.json"
    return summary.is_file() and json.loads(summary.read_text()).get("format") == RECORDS_FORMAT
