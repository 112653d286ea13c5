"""Train the siamese tower on one or more datasets: config, options, data, model parts, loop,
card. This package's top level is light (the config and its CLI options table, no TensorFlow);
the training itself lives in its modules.

Usage::

    from reid_search.training import TrainConfig
    from reid_search.training.loop import train
    config = TrainConfig(data=["../shared/data/cuhk03-mars"], out="runs/t", epochs=2)
    result = train(config)
"""

from __future__ import annotations

from .config import TrainConfig, parse_losses
from .loss_kinds import LOSSES
from .options import TRAIN_OPTIONS, config_from_options, train_command

__all__ = ["LOSSES", "TRAIN_OPTIONS", "TrainConfig", "config_from_options", "parse_losses", "train_command"]
