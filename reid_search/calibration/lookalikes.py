"""Look-alikes: different people dressed alike, to check that a threshold keeps them apart.

Clothing is described without any model, so the pairs do not depend on the network being
tested: a colour histogram of the upper body (rows 15-50% of the crop) and one of the lower
body (rows 55-95%), each with 8 hues x 2 saturations for coloured pixels and 3 grey levels
for the rest. Two crops dress alike when their histograms overlap (Bhattacharyya
coefficient, 1 = identical colours in both halves). Each image's look-alike is the most
alike image of *another* person (on another camera, where cameras are known), which is
the pair a same-person threshold is most likely to confuse.

Usage::

    >>> import numpy as np
    >>> red_blue = np.zeros((64, 32, 3), np.float32); red_blue[:32, :, 0] = 200; red_blue[32:, :, 2] = 200
    >>> green = np.zeros((64, 32, 3), np.float32); green[..., 1] = 200
    >>> d = clothing_descriptor(np.stack([red_blue, red_blue, green]))
    >>> lookalike_pairs(d, np.array(["a", "b", "c"])).tolist()    # a and b dress alike
    [[0, 1], [1, 0], [2, 0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

DESCRIPTOR_SIZE = (64, 32)  # (H, W) crops are reduced to before their colours are counted
BODY_ROWS = ((0.15, 0.50), (0.55, 0.95))  # upper and lower body, as fractions of the height
HUES, SATURATIONS, GREYS = 8, 2, 3
GREY_BELOW = 0.25  # saturation under which a pixel counts as black / grey / white


def _hsv(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """0-255 RGB (..., 3) -> hue in [0, 1), saturation and value in [0, 1]."""
    rgb = pixels / 255.0
    top, bottom = rgb.max(-1), rgb.min(-1)
    chroma = top - bottom
    safe = np.where(chroma > 0, chroma, 1.0)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(top == r, ((g - b) / safe) % 6, np.where(top == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = np.where(chroma > 0, hue / 6.0, 0.0)
    saturation = np.where(top > 0, chroma / np.where(top > 0, top, 1.0), 0.0)
    return hue, saturation, top


def _region_histogram(pixels: np.ndarray) -> np.ndarray:
    """(N, h, w, 3) -> (N, bins) normalised colour histogram of each image's region."""
    hue, sat, value = _hsv(pixels)
    coloured = sat >= GREY_BELOW
    hue_bin = np.minimum((hue * HUES).astype(int), HUES - 1)
    sat_bin = np.minimum(((sat - GREY_BELOW) / (1 - GREY_BELOW) * SATURATIONS).astype(int), SATURATIONS - 1)
    grey_bin = HUES * SATURATIONS + np.minimum((value * GREYS).astype(int), GREYS - 1)
    bins = np.where(coloured, hue_bin * SATURATIONS + np.maximum(sat_bin, 0), grey_bin)
    n_bins = HUES * SATURATIONS + GREYS
    flat = bins.reshape(len(pixels), -1)
    counts = np.stack([np.bincount(row, minlength=n_bins) for row in flat]).astype(np.float32)
    return counts / counts.sum(1, keepdims=True)


def clothing_descriptor(pixels: np.ndarray, chunk: int = 256) -> np.ndarray:
    """(N, H, W, 3) 0-255 RGB crops -> (N, D) unit vectors whose inner product is the
    Bhattacharyya coefficient of their upper- and lower-body colours (averaged)."""
    if len(pixels) > chunk:
        parts = [clothing_descriptor(pixels[i : i + chunk]) for i in range(0, len(pixels), chunk)]
        return np.concatenate(parts)
    height = pixels.shape[1]
    halves = [
        _region_histogram(pixels[:, int(a * height) : max(int(b * height), int(a * height) + 1)])
        for a, b in BODY_ROWS
    ]
    return np.concatenate([np.sqrt(h) for h in halves], axis=1) / np.sqrt(len(halves))


def clothing_descriptors(paths: Sequence[str | Path]) -> tuple[np.ndarray, list[int]]:
    """Descriptors of the readable files among ``paths`` and their indices (unreadable skipped)."""
    from ..data.images import ImageError, decode_image

    pixels, used = [], []
    for i, path in enumerate(paths):
        try:
            pixels.append(decode_image(Path(path).read_bytes(), DESCRIPTOR_SIZE, path)[0])
            used.append(i)
        except (ImageError, OSError):
            continue
    if not pixels:
        return np.zeros((0, 2 * (HUES * SATURATIONS + GREYS)), np.float32), used
    return clothing_descriptor(np.stack(pixels)), used


def lookalike_pairs(
    descriptors: np.ndarray, persons: np.ndarray, cameras: np.ndarray | None = None, block: int = 2048
) -> np.ndarray:
    """(M, 2) index pairs: each image and the most alike image of another person.

    With ``cameras``, only images on another camera qualify (as in cross-camera search).
    Images that have no candidate are left out; a pair found from both ends appears twice.
    """
    persons = np.asarray(persons)
    pairs = []
    for start in range(0, len(descriptors), block):
        rows = np.arange(start, min(start + block, len(descriptors)))
        alike = descriptors[rows] @ descriptors.T
        allowed = persons[rows, None] != persons[None, :]
        if cameras is not None:
            allowed &= np.asarray(cameras)[rows, None] != np.asarray(cameras)[None, :]
        alike = np.where(allowed, alike, -np.inf)
        best = alike.argmax(1)
        found = np.isfinite(alike[np.arange(len(rows)), best])
        pairs.append(np.stack([rows[found], best[found]], axis=1))
    return np.concatenate(pairs) if pairs else np.zeros((0, 2), int)
