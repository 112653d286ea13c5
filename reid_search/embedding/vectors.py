"""Vectors files: every image below a folder embedded by a model, saved as one ``.npz``.

The file holds ``paths`` (relative to the folder, POSIX, sorted), ``embeddings``
(float32, L2-normalised, one row per path), ``model`` (the card's name), ``model_sha256``
and ``skipped`` (``"path: reason"`` of every file that could not be read). It is what
``train --teacher-targets`` reads (paths relative to the dataset's root) and what a
user's own pipeline can consume.

Usage::

    from reid_search.embedding.embedder import Embedder
    from reid_search.embedding.vectors import embed_folder, read_vectors
    report = embed_folder("../shared/data/cuhk03-mars", Embedder(), "t.npz")
    read_vectors("t.npz").embeddings.shape
    # (8177, 256)
"""

from __future__ import annotations

import os
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.layouts import IMAGE_SUFFIXES
from ..errors import InputError
from ..progress import Progress
from .embedder import Embedder


@dataclass
class VectorsFile:
    """The content of a vectors ``.npz``."""

    paths: list[str]
    embeddings: np.ndarray
    model: str = ""
    model_sha256: str = ""
    skipped: list[str] = field(default_factory=list)


@dataclass
class EmbedReport:
    out: Path
    embedded: int
    skipped: list[str]
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.embedded / self.seconds if self.seconds else 0.0


def image_files(folder: str | Path) -> list[Path]:
    """Every image file below ``folder`` (any depth, hidden entries skipped), sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [
            Path(root) / f
            for f in files
            if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES
        ]
    return sorted(found)


def embed_folder(
    folder: str | Path, embedder: Embedder, out: str | Path, progress: bool = False
) -> EmbedReport:
    """Embed every image below ``folder`` and write the vectors file ``out`` atomically."""
    folder, out = Path(folder), Path(out)
    files = image_files(folder)
    if not files:
        raise InputError(f"{folder}: no images below it ({', '.join(sorted(IMAGE_SUFFIXES))})")
    started = time.perf_counter()
    vectors, kept, failures = [], [], []
    with Progress(len(files), f"embed {folder.name}", enabled=progress) as bar:
        for batch in embedder.iter_batches(files):
            vectors.append(batch.vectors)
            kept += batch.indices
            failures += [str(f) for f in batch.failures]
            bar.update(batch.stop - batch.start)
    embeddings = np.concatenate(vectors) if vectors else np.zeros((0, embedder.dim), np.float32)
    write_vectors(
        out,
        VectorsFile(
            [files[i].relative_to(folder).as_posix() for i in kept],
            embeddings,
            embedder.card.name,
            embedder.model_sha256,
            failures,
        ),
    )
    return EmbedReport(out, len(kept), failures, time.perf_counter() - started)


def write_vectors(path: str | Path, vectors: VectorsFile) -> Path:
    """Write a vectors file atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    if path.suffix != ".npz":
        raise InputError(f"{path}: vectors files end in .npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(
                fh,
                paths=np.array(vectors.paths, dtype=str),
                embeddings=np.asarray(vectors.embeddings, np.float32),
                model=np.array(vectors.model),
                model_sha256=np.array(vectors.model_sha256),
                skipped=np.array(vectors.skipped, dtype=str),
            )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_vectors(path: str | Path) -> VectorsFile:
    """Read a vectors file (this project's, or any ``.npz`` with ``paths`` and ``embeddings``)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            if not {"paths", "embeddings"} <= names:
                raise InputError(f"{path}: a vectors file needs 'paths' and 'embeddings' arrays")
            paths = [str(p) for p in npz["paths"]]
            embeddings = npz["embeddings"].astype(np.float32)
            extra = {k: str(npz[k]) for k in ("model", "model_sha256") if k in names}
            skipped = [str(s) for s in npz["skipped"]] if "skipped" in names else []
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"{path}: not a readable .npz file ({str(exc)[:120]})") from None
    if embeddings.ndim != 2 or len(embeddings) != len(paths):
        raise InputError(f"{path}: {len(paths)} paths but embeddings of shape {embeddings.shape}")
    return VectorsFile(paths, embeddings, skipped=skipped, **extra)
