"""Train the siamese tower on one or more datasets: config, data, model parts, loop, card.

Usage::

    >>> from reid_search.training import TrainConfig, train
    >>> config = TrainConfig(data=["../shared/data/cuhk03-mars"], out="runs/t", epochs=2)  # doctest: +SKIP
    >>> result = train(config)                                                            # doctest: +SKIP
"""

from .build import cosine_schedule, freeze_backbone_blocks, split_at_block
from .config import LOSSES, TrainConfig, parse_losses, train_command
from .data import TrainingData, ValidationSet, load_teacher_targets, load_training_data
from .loop import Trainer, TrainResult, train

__all__ = [
    "LOSSES",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingData",
    "ValidationSet",
    "cosine_schedule",
    "freeze_backbone_blocks",
    "load_teacher_targets",
    "load_training_data",
    "parse_losses",
    "split_at_block",
    "train",
    "train_command",
]
