"""Train the siamese tower on one or more datasets: config, data, model parts, loop, card.

Usage::

    from reid_search.training import TrainConfig, train
    config = TrainConfig(data=["../shared/data/cuhk03-mars"], out="runs/t", epochs=2)
    result = train(config)
"""

from __future__ import annotations

# imported on first use, so the light parts (sampler, losses' numpy twins, calibration,
# look-alikes) load without TensorFlow
_EXPORTS = {
    "cosine_schedule": "build",
    "freeze_backbone_blocks": "build",
    "split_at_block": "build",
    "LOSSES": "config",
    "TrainConfig": "config",
    "parse_losses": "config",
    "train_command": "config",
    "TrainingData": "data",
    "ValidationSet": "data",
    "load_teacher_targets": "data",
    "load_training_data": "data",
    "Trainer": "loop",
    "TrainResult": "loop",
    "train": "loop",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
