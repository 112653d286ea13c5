"""The augmentation settings of a training run (light: no TensorFlow).

>>> AugmentConfig().erase
0.5
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class AugmentConfig:
    flip: bool = True
    pad: float = 0.1
    colour: float = 0.2  # brightness/contrast/saturation strength, 0 = off
    erase: float = 0.5  # probability of random erasing
    randaugment: bool = False
    grey: float = 0.0  # probability of a grey-scale image
    downscale: float = 0.0  # probability of a low-resolution copy (shrunk and enlarged back)

    def to_dict(self) -> dict:
        return asdict(self)
