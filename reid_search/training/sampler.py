"""P x K identity sampling: each batch holds P identities with K images each.

Batch-hard mining needs positives and negatives in every batch; a random batch of a
743-identity set has almost none. An epoch visits every identity about
``images / (P * K)`` times; an identity with fewer than K images is sampled with
replacement. Crops labelled ``-1`` (nobody named their person) never form identities: with
``extra > 0`` each batch appends that many of them after its P x K labelled images, for the
losses that need no labels (teacher distillation); an epoch is counted in labelled images.

Usage::

    >>> import numpy as np
    >>> sampler = PKSampler(np.repeat(np.arange(10), 5), p=4, k=2, seed=0)
    >>> batch = next(iter(sampler.epoch()))
    >>> len(batch), len(set(np.repeat(np.arange(10), 5)[batch]))
    (8, 4)
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..errors import TrainingError


class PKSampler:
    """Index batches of ``p`` identities x ``k`` images from integer ``labels``."""

    def __init__(self, labels: np.ndarray, p: int = 16, k: int = 4, seed: int = 0, extra: int = 0):
        self.labels = np.asarray(labels)
        self.p, self.k = p, k
        self.rng = np.random.default_rng(seed)
        self.by_label = {int(c): np.flatnonzero(self.labels == c) for c in np.unique(self.labels) if c >= 0}
        self.unlabelled = np.flatnonzero(self.labels < 0)
        self.extra = extra if len(self.unlabelled) else 0
        if len(self.by_label) < p:
            raise TrainingError(f"P={p} identities per batch, but the data has only {len(self.by_label)}")

    @property
    def labelled_size(self) -> int:
        """Rows of a batch that carry identities (the first ones)."""
        return self.p * self.k

    @property
    def batch_size(self) -> int:
        return self.labelled_size + self.extra

    def batches_per_epoch(self) -> int:
        return max(1, (len(self.labels) - len(self.unlabelled)) // self.labelled_size)

    def _take(self, label: int) -> np.ndarray:
        pool = self.by_label[label]
        return self.rng.choice(pool, self.k, replace=len(pool) < self.k)

    def epoch(self, n_batches: int | None = None) -> Iterator[np.ndarray]:
        """``n_batches`` batches (default: one epoch's); identities are drawn in proportion to
        their image counts. Each batch is drawn when asked for, so the sampler's state after a
        batch is exactly where the next one starts (what a checkpoint saves)."""
        labels = np.array(list(self.by_label))
        weights = np.array([len(self.by_label[c]) for c in labels], dtype=float)
        weights /= weights.sum()
        for _ in range(self.batches_per_epoch() if n_batches is None else n_batches):
            chosen = self.rng.choice(labels, self.p, replace=False, p=weights)
            crops = self.rng.choice(self.unlabelled, self.extra, replace=len(self.unlabelled) < self.extra)
            yield np.concatenate([*(self._take(int(c)) for c in chosen), crops.astype(np.int64)])

    def get_state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state
