"""Train the siamese tower on one or more datasets: config, data, model parts, loop, card.

Usage::

    from reid_search.training import TrainConfig, train
    config = TrainConfig(data=["../shared/data/cuhk03-mars"], out="runs/t", epochs=2)
    result = train(config)

Importing this package loads TensorFlow; the light parts (the sampler, the losses' numpy twins)
are modules of their own for code that only needs them.
"""

from __future__ import annotations

from .build import cosine_schedule, freeze_backbone_blocks, split_at_block
from .config import LOSSES, TrainConfig, parse_losses, train_command
from .data import TrainingData, ValidationSet, load_teacher_targets, load_training_data
from .loop import Trainer, TrainResult, train

__all__ = [
    "LOSSES", "TrainConfig", "TrainResult", "Trainer", "TrainingData", "ValidationSet",
    "cosine_schedule", "freeze_backbone_blocks", "load_teacher_targets", "load_training_data",
    "parse_losses", "split_at_block", "train", "train_command",
]  # fmt: skip
