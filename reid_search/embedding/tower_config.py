"""A tower's hyper-parameters (saved in every model card) and the input sizes each
architecture takes: light, so configs and help texts load without Keras.

    >>> TowerConfig(input_height=160, input_width=80).input_size
    (160, 80)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

NATIVE_INPUT_SIZES = {"seed": (256, 128), "onnx": (256, 128)}  # (height, width) each was made for
# the smallest (height, width) each takes: pooling leaves at least one cell (Keras' MobileNetV2
# refuses below 32x32); an imported ONNX network is checked layer by layer as it is rebuilt
MIN_INPUT_SIZES = {"mini": (8, 8), "seed": (16, 16), "mobilenetv2": (32, 32)}


def default_input_size(architecture: str) -> tuple[int, int]:
    """(height, width) a tower is built at when none is given: 256x128 for seed, else 128x64.

    >>> default_input_size("seed"), default_input_size("mobilenetv2")
    ((256, 128), (128, 64))
    """
    return NATIVE_INPUT_SIZES.get(architecture, (128, 64))


@dataclass
class TowerConfig:
    """Hyper-parameters of a tower; saved in every model card."""

    architecture: str = "mobilenetv2"  # the same default as `reid-search train --architecture`
    input_height: int = 128
    input_width: int = 64
    embedding_dim: int = 256
    backbone_weights: str | None = None  # a .weights.h5 file, "imagenet", or None (random)
    seed: int = 0
    ibn_blocks: int = 0  # mobilenetv2: IBN-a in the expand layer of blocks 1..N (0 = off)
    pooling: str = "avg"  # mobilenetv2: feature map -> vector, a name in POOLINGS

    @property
    def input_size(self) -> tuple[int, int]:
        return (self.input_height, self.input_width)

    def to_dict(self) -> dict:
        return asdict(self)
