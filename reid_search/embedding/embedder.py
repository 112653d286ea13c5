"""Turn image files into embeddings with a tower: batched, with decoding in parallel threads.

Decoding the next batch (PIL, which releases the GIL) overlaps with the tower running on
the current one. A file that cannot be read is reported in the batch's ``failures`` and
never stops the stream.

Usage::

    from reid_search import Embedder
    embedder = Embedder()                                   # default model
    for batch in embedder.iter_batches(["a.jpg", "b.jpg"]):
        print(batch.indices, batch.vectors.shape, batch.failures)
    # [0, 1] (2, 256) []
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.images import ImageError, LoadedImage, load_image
from .backends import Backend, open_model


@dataclass(frozen=True)
class ImageFacts:
    """What is kept of a decoded file once its pixels are embedded."""

    width: int
    height: int
    sha256: str


@dataclass
class EmbeddedBatch:
    """Embeddings of the readable files of one batch.

    ``indices`` are positions in the input sequence; ``vectors[i]`` and ``images[i]``
    (original width, height, content hash; pixels dropped) belong to ``indices[i]``.
    """

    start: int  # the batch covers input positions [start, stop)
    stop: int
    indices: list[int]
    vectors: np.ndarray
    images: list[ImageFacts]
    failures: list[ImageError] = field(default_factory=list)


@dataclass
class PooledGroup:
    """The pooled vector of one group of files (None if none could be read)."""

    index: int
    vector: np.ndarray | None
    images: list[ImageFacts]


@dataclass
class PooledBatch:
    """Groups completed by one batch, how many files it covered, and the files that failed."""

    groups: list[PooledGroup]
    n_files: int
    failures: list[ImageError]


def l2_normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class Embedder:
    """A loaded model ready to embed files or pixel arrays.

    ``model`` is a model file of any supported format (``.keras``, ``.onnx``, OpenVINO
    ``.xml``, ``.tflite``) or a card pointing at one, a loaded
    :class:`~reid_search.embedding.backends.Backend`, or None for the package's default model.
    ``flip=True`` is flip test-time augmentation: each vector is the normalised sum of the
    image's and its mirror image's vectors (twice the compute).
    """

    def __init__(
        self,
        model: str | Path | Backend | None = None,
        batch_size: int = 64,
        workers: int | None = None,
        threads: int | None = None,
        flip: bool = False,
    ):
        self.model = model if isinstance(model, Backend) else open_model(model, threads)
        self.flip = flip
        self.batch_size = batch_size
        self.workers = workers or min(4, (os.cpu_count() or 2) + 1)

    @property
    def card(self):
        return self.model.card

    @property
    def dim(self) -> int:
        return self.model.card.embedding_dim

    @property
    def input_size(self) -> tuple[int, int]:
        return self.model.card.input_size

    @property
    def model_sha256(self) -> str:
        return self.model.sha256

    def embed_pixels(self, pixels: np.ndarray) -> np.ndarray:
        """Embed a (N, H, W, 3) float array of 0-255 RGB pixels; returns unit rows."""
        vectors = self.model.embed(pixels)
        if self.flip and len(pixels):
            vectors = l2_normalise(vectors) + l2_normalise(self.model.embed(np.asarray(pixels)[:, :, ::-1]))
        return l2_normalise(vectors)

    def _decode(self, path: str | Path) -> LoadedImage | ImageError:
        try:
            return load_image(path, self.input_size)
        except ImageError as exc:
            return exc

    def iter_batches(self, paths: Sequence[str | Path]) -> Iterator[EmbeddedBatch]:
        """Embed ``paths`` batch by batch, decoding ahead in threads. Memory stays bounded."""
        starts = range(0, len(paths), self.batch_size)
        with ThreadPoolExecutor(self.workers) as pool:
            pending: deque[tuple[int, list[Future]]] = deque()
            queue = iter(starts)

            def submit_next() -> None:
                start = next(queue, None)
                if start is not None:
                    chunk = paths[start : start + self.batch_size]
                    pending.append((start, [pool.submit(self._decode, p) for p in chunk]))

            submit_next()
            submit_next()
            while pending:
                start, futures = pending.popleft()
                submit_next()
                yield self._finish_batch(start, [f.result() for f in futures])

    def _finish_batch(self, start: int, decoded: list) -> EmbeddedBatch:
        indices, pixels, facts, failures = [], [], [], []
        for offset, item in enumerate(decoded):
            if isinstance(item, ImageError):
                failures.append(item)
            else:
                indices.append(start + offset)
                pixels.append(item.pixels)
                facts.append(ImageFacts(item.width, item.height, item.sha256))
        vectors = self.embed_pixels(np.stack(pixels)) if pixels else np.zeros((0, self.dim), "f4")
        return EmbeddedBatch(start, start + len(decoded), indices, vectors, facts, failures)

    def embed_files(self, paths: Sequence[str | Path]) -> tuple[np.ndarray, list[int], list[ImageError]]:
        """Embed every readable file: (vectors, their indices in ``paths``, failures)."""
        vectors, indices, failures = [], [], []
        for batch in self.iter_batches(paths):
            vectors.append(batch.vectors)
            indices.extend(batch.indices)
            failures.extend(batch.failures)
        stacked = np.concatenate(vectors) if vectors else np.zeros((0, self.dim), np.float32)
        return stacked, indices, failures

    def iter_pooled(self, groups: Sequence[Sequence[str | Path]]) -> Iterator[PooledBatch]:
        """Embed groups of files (tracklets) as one stream; yield each group once all its frames are done.

        A group whose every frame failed comes back with ``vector`` None.
        """
        flat = [p for g in groups for p in g]
        ends = np.cumsum([len(g) for g in groups])  # group i covers flat[ends[i-1]:ends[i]]
        done: dict[int, tuple[np.ndarray, ImageFacts]] = {}
        next_group = 0
        for batch in self.iter_batches(flat):
            for i, vec, facts in zip(batch.indices, batch.vectors, batch.images, strict=True):
                done[i] = (vec, facts)
            finished = []
            while next_group < len(groups) and ends[next_group] <= batch.stop:
                lo = int(ends[next_group - 1]) if next_group else 0
                got = [done.pop(i) for i in range(lo, int(ends[next_group])) if i in done]
                vector = _pooled(got)
                finished.append(PooledGroup(next_group, vector, [g[1] for g in got]))
                next_group += 1
            yield PooledBatch(finished, batch.stop - batch.start, batch.failures)


def _pooled(got: list[tuple[np.ndarray, ImageFacts]]) -> np.ndarray | None:
    """A group's vector: None for no frame, a lone frame's own (already unit) vector, else the pool."""
    if len(got) <= 1:
        return got[0][0] if got else None
    return pool_tracklet(np.stack([g[0] for g in got]))


def pool_tracklet(frame_vectors: np.ndarray) -> np.ndarray:
    """Mean-pool unit frame vectors and re-normalise (the MARS tracklet feature)."""
    return l2_normalise(np.mean(frame_vectors, axis=0, keepdims=True))[0]


def sample_frames(paths: Sequence, cap: int | None) -> list:
    """At most ``cap`` frames spread evenly over the tracklet (all if cap is None).

    >>> sample_frames(list(range(10)), 4)
    [0, 3, 6, 9]
    """
    if cap is None or len(paths) <= cap:
        return list(paths)
    positions = np.linspace(0, len(paths) - 1, cap).round().astype(int)
    return [paths[i] for i in positions]
