"""The siamese tower: one network that maps a person crop to an L2-normalised embedding.

Two towers with shared weights are one Keras model applied twice, so "the tower" is all
that is ever saved or loaded. Every tower takes RGB float pixels in 0-255 at
``(input_height, input_width)`` and does its own normalisation inside, so the only
preprocessing a user applies is :func:`reid_search.data.images.load_image`.

Architectures:

* ``mini``        a small 4-block CNN with global pooling (fast; the interim default)
* ``mobilenetv2`` Keras MobileNetV2 (alpha 1.0), optionally initialised from a local
  ImageNet weights file or Keras' own ``imagenet`` download; ``ibn_blocks`` N turns the
  expand-layer batch norm of its first N blocks into IBN-a (:mod:`reid_search.embedding.layers`);
  ``pooling`` is how its last feature map becomes a vector (:data:`POOLINGS`: ``avg`` or
  ``gem``, generalised mean pooling with a learned power)
* ``seed``        the original project's tower: four 3x3 conv blocks of 256/128/64/32
  filters (max-pool, batch norm, ReLU), flatten, 4096-d sigmoid dense
* ``onnx``        a re-ID network imported with its weights from an ONNX file given as
  ``backbone_weights`` (e.g. OSNet-x0.25 trained on MSMT17: a re-ID-pretrained start);
  it must take ImageNet-normalised RGB, as torchreid's models do

Each architecture is a small builder in :data:`BACKBONES` (name -> function from the
normalised pixel tensor to a feature vector); :func:`build_tower` adds the shared head.

Usage::

    >>> from reid_search.embedding.tower import TowerConfig, build_tower
    >>> tower = build_tower(TowerConfig(architecture="mini", input_height=128, input_width=64))
    >>> tower.output_shape
    (None, 256)
"""

from __future__ import annotations

from collections.abc import Callable

import keras

from ..errors import InputError
from ..registry import Registry
from .layers import GeneralizedMeanPooling
from .tower_config import MIN_INPUT_SIZES, NATIVE_INPUT_SIZES, TowerConfig, default_input_size  # noqa: F401

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _normalise_pixels(inputs: keras.KerasTensor) -> keras.KerasTensor:
    """0-255 RGB -> ImageNet mean/std, inside the model (so files carry their preprocessing)."""
    x = keras.layers.Rescaling(1.0 / 255.0, name="to_unit")(inputs)
    variance = [s * s for s in IMAGENET_STD]
    return keras.layers.Normalization(mean=IMAGENET_MEAN, variance=variance, name="imagenet_norm")(x)


def _embedding_head(features: keras.KerasTensor, dim: int) -> keras.KerasTensor:
    """Linear projection, BN-neck, then L2 normalisation (cosine = inner product).

    When ``dim`` equals the feature size the projection starts as the identity, so a
    pretrained backbone's own metric is where training starts.
    """
    init = "identity" if features.shape[-1] == dim else "glorot_uniform"
    x = keras.layers.Dense(dim, use_bias=False, kernel_initializer=init, name="embedding")(features)
    x = keras.layers.BatchNormalization(name="bnneck")(x)
    return keras.layers.UnitNormalization(name="l2norm")(x)


def _mini_backbone(x: keras.KerasTensor, config: TowerConfig) -> keras.KerasTensor:
    for i, filters in enumerate((32, 64, 128, 256)):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i}")(x)
        x = keras.layers.BatchNormalization(name=f"bn{i}")(x)
        x = keras.layers.ReLU(name=f"relu{i}")(x)
        if i < 3:
            x = keras.layers.MaxPooling2D(2, name=f"pool{i}")(x)
    avg = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    peak = keras.layers.GlobalMaxPooling2D(name="gmp")(x)
    return keras.layers.Concatenate(name="pooled")([avg, peak])


def _mobilenetv2_backbone(x: keras.KerasTensor, config: TowerConfig) -> keras.KerasTensor:
    weights = config.backbone_weights
    base = keras.applications.MobileNetV2(
        input_shape=(config.input_height, config.input_width, 3),
        alpha=1.0,
        include_top=False,
        weights="imagenet" if weights == "imagenet" else None,
    )
    if weights and weights != "imagenet":
        try:
            base.load_weights(weights)
        except (OSError, ValueError) as exc:
            raise InputError(
                f"{weights}: not MobileNetV2 weights Keras can load (a .weights.h5 file; {str(exc)[:100]})"
            ) from None
    if config.ibn_blocks:
        base = _with_instance_batch_norm(base, config.ibn_blocks)
    name, pooling = POOLINGS.get(config.pooling)
    return pooling(name=name)(base(x))


# how a block tower's last feature map becomes one vector: name -> (the layer's name in a tower, class)
POOLINGS: Registry[tuple[str, type]] = Registry("pooling", InputError)
POOLINGS.register("avg", ("gap", keras.layers.GlobalAveragePooling2D))
POOLINGS.register("gem", ("gem", GeneralizedMeanPooling))


def pooling_layer(tower: keras.Model) -> keras.layers.Layer:
    """The layer of ``tower`` that pools its backbone's feature map (any of :data:`POOLINGS`)."""
    names = {layer.name for layer in tower.layers}
    return tower.get_layer(next(name for name, _ in POOLINGS.values() if name in names))


def _with_instance_batch_norm(base: keras.Model, blocks: int) -> keras.Model:
    """``base`` with the expand-layer batch norm of blocks 1..N turned into IBN-a.

    Every other layer is a copy of ``base``'s with its weights (a copy, not the same layer,
    so each layer belongs to one graph and the network can be split at a block); the IBN
    layers start from the batch norms they replace, so a pretrained network keeps its
    behaviour on the BN half.
    """
    from .layers import InstanceBatchNorm

    names = {f"block_{i}_expand_BN" for i in range(1, blocks + 1)}
    missing = names - {layer.name for layer in base.layers}
    if missing:
        raise InputError(f"--ibn-blocks {blocks}: this network has no {sorted(missing)[0]}")

    def swap(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name in names:
            return InstanceBatchNorm.from_batch_norm(layer)
        return layer.__class__.from_config(layer.get_config())

    clone = keras.models.clone_model(base, clone_function=swap)
    for layer in clone.layers:
        if layer.name not in names and layer.weights:
            layer.set_weights(base.get_layer(layer.name).get_weights())
    return clone


def _seed_backbone(x: keras.KerasTensor, config: TowerConfig) -> keras.KerasTensor:
    for i, filters in enumerate((256, 128, 64, 32)):
        x = keras.layers.Conv2D(filters, 3, padding="same", name=f"seed_conv{i}")(x)
        x = keras.layers.MaxPooling2D(2, name=f"seed_pool{i}")(x)
        x = keras.layers.BatchNormalization(name=f"seed_bn{i}")(x)
        x = keras.layers.ReLU(name=f"seed_relu{i}")(x)
    x = keras.layers.Flatten(name="seed_flatten")(x)
    return keras.layers.Dense(4096, activation="sigmoid", name="seed_fc")(x)


def _onnx_backbone(x: keras.KerasTensor, config: TowerConfig) -> keras.KerasTensor:
    from .onnx_import import onnx_graph_on

    if not config.backbone_weights or not str(config.backbone_weights).endswith(".onnx"):
        raise InputError("--architecture onnx needs --backbone-weights FILE.onnx (the network to import)")
    return onnx_graph_on(config.backbone_weights, x)


BACKBONES: Registry[Callable[[keras.KerasTensor, TowerConfig], keras.KerasTensor]] = Registry(
    "architecture", InputError
)  # a new backbone: one register call (its feature map -> the pooling and embedding head)
for _name, _backbone in (
    ("mini", _mini_backbone),
    ("mobilenetv2", _mobilenetv2_backbone),
    ("seed", _seed_backbone),
    ("onnx", _onnx_backbone),
):
    BACKBONES.register(_name, _backbone)
ARCHITECTURES = BACKBONES.names()


def check_tower(config: TowerConfig) -> None:
    """Refuse (one :class:`InputError`) a tower that cannot be built, before anything is
    built or written: an unknown architecture or pooling, an option its architecture does
    not have, an input size it cannot take (an ``onnx`` tower's network is rebuilt on a
    symbolic input of that size to find out, a second or two).

    >>> check_tower(TowerConfig("mobilenetv2", 24, 12))
    Traceback (most recent call last):
    ...
    reid_search.errors.InputError: --input-size 24x12: the mobilenetv2 tower needs at least 32x32
    """
    _check_options(config)
    if config.architecture == "onnx":
        _onnx_backbone(keras.Input((config.input_height, config.input_width, 3)), config)


def _check_options(config: TowerConfig) -> None:
    BACKBONES.get(config.architecture)  # an unknown name: the registry's one error
    height, width = config.input_size
    low = MIN_INPUT_SIZES.get(config.architecture, (1, 1))
    if height < low[0] or width < low[1]:
        raise InputError(
            f"--input-size {height}x{width}: the {config.architecture} tower needs at least {low[0]}x{low[1]}"
        )
    if config.ibn_blocks and config.architecture != "mobilenetv2":
        raise InputError("--ibn-blocks is available for --architecture mobilenetv2 only")
    POOLINGS.get(config.pooling)
    if config.pooling != "avg" and config.architecture != "mobilenetv2":
        raise InputError("--pooling is chosen for --architecture mobilenetv2 only")


def build_tower(config: TowerConfig) -> keras.Model:
    """Build the embedding tower described by ``config`` (weights random unless a backbone)."""
    _check_options(config)
    keras.utils.set_random_seed(config.seed)
    inputs = keras.Input((config.input_height, config.input_width, 3), name="pixels")
    features = BACKBONES.get(config.architecture)(_normalise_pixels(inputs), config)
    return keras.Model(inputs, _embedding_head(features, config.embedding_dim), name="tower")
