"""The FAISS index of a gallery: a derived file, rebuilt or caught up from the vectors in SQLite.

The index type is a FAISS factory string (``Flat``, ``HNSW32``, ``IVF1024,Flat``,
``IVF4096,PQ32``...), always with the inner-product metric (cosine on unit vectors), or
``auto`` (:func:`auto_index_type`: exact ``Flat`` for small galleries, ``HNSW32`` from
:data:`AUTO_APPROXIMATE_FROM` entries). Beside ``index.faiss`` the sidecar ``index.json``
records the factory string, search parameters and the *watermark*: the highest gallery
id the file holds, its count and the gallery's deletion generation. Opening a gallery
compares that with SQLite: newer rows are added (caught up), a deletion since or a
missing or damaged file means a rebuild from the stored vectors. The file is written only
at the end of a build, by ``reindex``, or when a caught-up index is saved.

Usage::

    >>> import numpy as np
    >>> index = new_index("HNSW32", dim=4)
    >>> index.add_with_ids(np.eye(4, dtype="f4"), np.arange(10, 14))
    >>> search(index, np.eye(4, dtype="f4")[:1], 1, {"efSearch": 64})[1].tolist()
    [[10]]
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

INDEX_FILE = "index.faiss"
SIDECAR_FILE = "index.json"
AUTO = "auto"
AUTO_APPROXIMATE_FROM = 200_000  # entries; below, exact search is fast enough
DEFAULT_PARAMS = {"nprobe": 32, "efSearch": 128}  # chosen with benchmarks/scale.py


class IndexTypeError(InputError):
    """A factory string FAISS cannot build, or a gallery too small to train it."""


@dataclass
class IndexState:
    """What ``index.json`` says about ``index.faiss``."""

    factory: str
    dim: int
    watermark: int  # highest gallery id included (-1: none)
    count: int
    generation: int  # the gallery's deletion generation when written
    params: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PARAMS))

    @classmethod
    def read(cls, folder: Path) -> IndexState | None:
        try:
            data = json.loads((folder / SIDECAR_FILE).read_text())
            return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})
        except (OSError, ValueError, TypeError, KeyError):
            return None


def auto_index_type(entries: int) -> str:
    """The factory string ``auto`` stands for at this gallery size."""
    return "Flat" if entries < AUTO_APPROXIMATE_FROM else "HNSW32"


def resolve_index_type(requested: str, entries: int) -> str:
    return auto_index_type(entries) if requested == AUTO else requested


def _is_ivf(index) -> bool:
    import faiss

    try:
        faiss.extract_index_ivf(index)
        return True
    except RuntimeError:
        return False


def new_index(factory: str, dim: int):
    """An empty inner-product index for ``factory``, accepting our own ids."""
    import faiss

    try:
        base = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise IndexTypeError(
            f"FAISS cannot build index type {factory!r}: {str(exc).splitlines()[0]}"
        ) from None
    return base if _is_ivf(base) else faiss.IndexIDMap(base)


def needs_training(index) -> bool:
    return not index.is_trained


def train_sample_size(index) -> int:
    """Vectors to train on: 64 per IVF list (FAISS warns below 39), PQ/SQ codebooks ~10k."""
    import faiss

    if _is_ivf(index):
        return 64 * faiss.extract_index_ivf(index).nlist
    return 20_000


def min_train_size(index) -> int:
    import faiss

    return 39 * faiss.extract_index_ivf(index).nlist if _is_ivf(index) else 256


def set_params(index, params: dict[str, int]) -> None:
    """Apply search parameters that the index understands (nprobe for IVF, efSearch for HNSW)."""
    import faiss

    if _is_ivf(index) and "nprobe" in params:
        faiss.extract_index_ivf(index).nprobe = int(params["nprobe"])
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    if isinstance(inner, faiss.IndexHNSW) and "efSearch" in params:
        inner.hnsw.efSearch = int(params["efSearch"])


def search(index, queries: np.ndarray, k: int, params: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """(similarities, ids), each (n, k); id -1 pads when fewer than k entries exist."""
    set_params(index, params)
    return index.search(np.ascontiguousarray(queries, dtype=np.float32), k)


def write_index(folder: Path, index, state: IndexState) -> None:
    """Write ``index.faiss`` then ``index.json``, each to a temp file renamed over the old one.

    A reader that catches the new file with the old sidecar sees a count mismatch and
    rebuilds in memory: never a wrong answer.
    """
    import faiss

    target = folder / INDEX_FILE
    tmp = folder / f".{INDEX_FILE}.tmp"
    faiss.write_index(index, str(tmp))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    from .._files import write_json_atomic

    write_json_atomic(folder / SIDECAR_FILE, asdict(state))


def read_index(folder: Path, state: IndexState | None):
    """The index file if it exists, matches its sidecar and loads; else None."""
    import faiss

    path = folder / INDEX_FILE
    if state is None or not path.is_file():
        return None
    try:
        index = faiss.read_index(str(path))
    except RuntimeError:
        return None
    if index.ntotal != state.count or index.d != state.dim:
        return None
    return index


def describe(state: IndexState | None) -> dict[str, Any]:
    return {} if state is None else {"factory": state.factory, "entries": state.count, "params": state.params}
