"""The trainable model of a run: the tower, its frozen blocks, the cached view, the loss heads.

A block tower (MobileNetV2, or a network imported from ONNX) can freeze its first N
blocks; with cached views the frozen part runs once per augmented view before training
and only the rest (``view``) runs per step, which makes CPU training several times faster.

Usage::

    from reid_search.embedding.tower import TowerConfig, build_tower
    tower = build_tower(TowerConfig("mobilenetv2", 64, 32, 16))
    frozen, view = split_at_block(tower, 5)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .config import TrainingError


def _nested_backbone(tower):
    """The backbone model nested inside a tower (MobileNetV2), or None for a flat graph."""
    return next((layer for layer in tower.layers if hasattr(layer, "layers")), None)


def _flat_cut_layer(tower, blocks: int) -> str:
    """In a flat tower (an imported network), block N ends at its N-th pooling layer."""
    import keras

    pools = [
        layer.name
        for layer in tower.layers
        if isinstance(layer, keras.layers.MaxPooling2D | keras.layers.AveragePooling2D)
    ]
    if not 0 < blocks <= len(pools):
        raise TrainingError(f"--freeze-blocks {blocks}: this tower has {len(pools)} pooling stages")
    return pools[blocks - 1]


def freeze_backbone_blocks(tower, blocks: int) -> int:
    """Freeze the first ``blocks`` blocks; returns how many layers were frozen.

    MobileNetV2: its stem and ``block_1..block_N``. An imported (flat) network: every layer
    up to its N-th pooling layer (OSNet-x0.25: 1 = stem, 2 = + conv2 stage, 3 = + conv3).
    """
    if blocks <= 0:
        return 0
    import keras

    base = _nested_backbone(tower)
    if base is None:
        lower = keras.Model(tower.input, tower.get_layer(_flat_cut_layer(tower, blocks)).output)
        for layer in lower.layers:
            layer.trainable = False
        return len(lower.layers)
    frozen = 0
    for layer in base.layers:
        name = layer.name
        stem = name.startswith(("Conv1", "bn_Conv1", "expanded_conv"))
        block = name.startswith("block_") and int(name.split("_")[1]) <= blocks
        if stem or block:
            layer.trainable = False
            frozen += 1
    return frozen


def split_at_block(tower, blocks: int):
    """Split a tower after block N: (frozen part: pixels -> features, trainable view:
    features -> [BN-neck features, embedding]). Both share the tower's layers and weights."""
    import keras

    base = _nested_backbone(tower)
    if base is None:
        cut = tower.get_layer(_flat_cut_layer(tower, blocks)).output
        frozen = keras.Model(tower.input, cut)
        view = keras.Model(cut, [tower.get_layer("bnneck").output, tower.output])
        return frozen, view
    names = {layer.name for layer in base.layers}
    cut_name = f"block_{blocks}_add" if f"block_{blocks}_add" in names else f"block_{blocks}_project_BN"
    cut = base.get_layer(cut_name).output
    lower = keras.Model(base.input, cut)
    upper = keras.Model(cut, base.output)
    pixels = keras.Input(tower.input_shape[1:])
    normalised = tower.get_layer("imagenet_norm")(tower.get_layer("to_unit")(pixels))
    frozen = keras.Model(pixels, lower(normalised))
    features = keras.Input(cut.shape[1:])
    from ..embedding.tower import pooling_layer

    bn = tower.get_layer("bnneck")(tower.get_layer("embedding")(pooling_layer(tower)(upper(features))))
    view = keras.Model(features, [bn, tower.get_layer("l2norm")(bn)])
    return frozen, view


def cosine_schedule(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up from base/10 to base over ``warmup`` steps, then cosine decay to base/100,
    reached at the last step (``total - 1``).

    >>> round(cosine_schedule(0, 100, 10, 1.0), 3), cosine_schedule(10, 100, 10, 1.0)
    (0.1, 1.0)
    >>> cosine_schedule(99, 100, 10, 1.0)
    0.01
    """
    if warmup > 0 and step < warmup:
        return base_lr * (0.1 + 0.9 * step / warmup)
    progress = min(1.0, (step - warmup) / max(1, total - 1 - warmup))
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class Heads:
    """Layers that only training needs: ID classifier (id or cosface loss), pair head, teacher projection."""

    classifier: object
    pair_head: object
    teacher_head: object
    attribute_head: object = None  # attribute logits from the unit embedding (attr loss)
    attribute_prior: object = None  # each attribute's positive rate (the attr loss's balance)

    def for_losses(self, losses) -> list:
        """Trainable variables of the heads the chosen losses use (unused heads never train)."""
        from .loss_kinds import LOSSES

        names = dict.fromkeys(LOSSES.get(name).head for name in losses)  # id, cosface: one head
        return [v for name in names if name for v in getattr(self, name).trainable_variables]


def build_heads(embedding_dim: int, n_classes: int, teacher_dim: int, attribute_dim: int = 1) -> Heads:
    """The loss heads, built for ``embedding_dim``-wide BN-neck features (and embeddings)."""
    import keras

    classifier = keras.layers.Dense(n_classes, use_bias=False, name="id_classifier")
    pair_head = keras.layers.Dense(1, name="pair_head")
    teacher_head = keras.layers.Dense(teacher_dim, use_bias=False, name="teacher_head")
    attribute_head = keras.layers.Dense(attribute_dim, name="attribute_head")
    for layer in (classifier, pair_head, teacher_head, attribute_head):
        layer.build((None, embedding_dim))
    return Heads(classifier, pair_head, teacher_head, attribute_head)
