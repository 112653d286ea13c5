"""Re-estimate a tower's batch-norm statistics on a gallery's own images (AdaBN, no labels).

A camera unlike the training data shifts the mean and variance of every feature map;
batch-norm layers normalise with the training data's statistics. Re-estimating them on the
new cameras' images (Li et al., "Revisiting batch normalization for practical domain
adaptation", 2016) needs no label and no training: every batch-norm layer's moving mean and
variance become the exact averages over the given images (cumulative, as if momentum were
``(t-1)/t``), all other weights unchanged. The result is a new ``.keras`` model with a card
that says so; index a gallery with it (``--model``) and query with the same model.

Usage::

    adapt_batchnorm("reid_search/models/default.keras", images, "lobby-adapted.keras")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.images import ImageError, list_images, load_image
from ..data.layouts import IMAGE_SUFFIXES
from ..errors import InputError
from .embedder import sample_frames
from .model_store import card_path, read_card_file, save_model


def batchnorm_layers(model) -> list:
    """Every batch-norm layer of ``model``, nested models included."""
    import keras

    def walk(layer):
        yield layer
        for sub in getattr(layer, "layers", []):
            yield from walk(sub)

    return [layer for layer in walk(model) if isinstance(layer, keras.layers.BatchNormalization)]


def reestimate(model, pixels: np.ndarray, batch_size: int = 64, seed: int = 0) -> int:
    """Set every batch-norm layer's moving statistics to their averages over ``pixels``
    (float 0-255, the tower's input size); returns the number of layers re-estimated."""
    layers = batchnorm_layers(model)
    for layer in layers:
        layer.trainable = True  # a frozen BN layer would not update its statistics
        layer.moving_mean.assign(np.zeros(layer.moving_mean.shape, "float32"))
        layer.moving_variance.assign(np.ones(layer.moving_variance.shape, "float32"))
    order = np.random.default_rng(seed).permutation(len(pixels))
    for t, start in enumerate(range(0, len(pixels), batch_size), start=1):
        for layer in layers:
            layer.momentum = (t - 1) / t  # cumulative average of the batches' statistics
        model(pixels[order[start : start + batch_size]], training=True)
    for layer in layers:
        layer.trainable = False
    return len(layers)


def adapt_batchnorm(
    model: str | Path | None, images: Sequence[str | Path], out: str | Path, max_images: int | None = None
) -> Path:
    """A copy of ``model`` (.keras; None = the default) with batch-norm statistics of ``images``
    (files or folders; at most ``max_images`` images, evenly spread; files that are not
    images are passed over)."""
    from .backends import open_model

    backend = open_model(model, fast=False)
    if not hasattr(backend, "keras_model"):
        raise InputError(f"{backend.path}: only .keras models can be adapted")
    size = backend.card.input_size
    sources = ", ".join(map(str, images[:2])) + (f" and {len(images) - 2} more" if len(images) > 2 else "")
    images = [p for p in list_images(images) if p.suffix.lower() in IMAGE_SUFFIXES]
    images = sample_frames(images, max_images)  # spread over the whole folder, not its first files
    decoded = []
    for path in images:
        try:
            decoded.append(load_image(path, size).pixels)
        except ImageError:
            continue
    if len(decoded) < 32:
        raise InputError(
            f"{sources}: {len(decoded)} readable images; at least 32 are needed to re-estimate statistics"
        )
    count = reestimate(backend.keras_model, np.stack(decoded))
    card = read_card_file(card_path(backend.path))
    note = f"batch-norm statistics of {count} layers re-estimated on {len(decoded)} unlabelled images (AdaBN)"
    adapted = replace(
        card,
        name=f"{card.name}-adapted",
        fast_runtime=None,
        notes=(card.notes + "; " if card.notes else "") + note,
    )
    return save_model(backend.keras_model, adapted, out)
