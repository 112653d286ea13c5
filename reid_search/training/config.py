"""One dataclass holds every hyper-parameter of a training run; ``config.json`` is its copy on disk.

Usage::

    >>> config = TrainConfig(data=["a", "b"], out="runs/x", losses=parse_losses("triplet,id=0.5"))
    >>> config.losses
    {'triplet': 1.0, 'id': 0.5}
    >>> config.tower.pooling, config.epochs  # the rest: defaults
    ('avg', 30)

The ``reid-search train`` options that set these fields, and the card's command line, come
from one table: :mod:`reid_search.training.options`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..embedding.tower_config import TowerConfig
from ..errors import InputError, TrainingError  # noqa: F401  (TrainingError: re-exported)
from .augment_config import AugmentConfig
from .loss_kinds import LOSSES, losses_where

CLASSIFIER_LOSSES = losses_where("classifier")  # losses that train the identity classifier (one at a time)
TEACHER_LOSSES = losses_where("teacher")  # the losses a crop without a person can learn from
BLOCK_TOWERS = ("mobilenetv2", "onnx")  # towers --freeze-blocks / --cached-views understand
MAX_SIDE = 1024  # pixels of an input side: a person crop needs no more, memory grows with its square


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else [str(v) for v in value]


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; saved as ``config.json`` beside it.

    ``data`` is one or more dataset (or records) folders: identities are namespaced by
    dataset, so person 0001 of two datasets are two people. ``teacher_targets`` is zero or
    more ``.npz`` files matched to training images by their path inside their dataset.
    """

    data: list[str]
    out: str
    tower: TowerConfig = field(default_factory=TowerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    losses: dict[str, float] = field(default_factory=lambda: {"triplet": 1.0, "id": 1.0})
    triplet_margin: float | None = 0.3  # None: soft margin
    contrastive_margin: float = 1.0
    label_smoothing: float = 0.1
    cosface_scale: float = 30.0
    cosface_margin: float = 0.25
    teacher_targets: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)  # crop folders trained by the teacher only
    named_crops: list[str] = field(default_factory=list)  # crop folders named PERSON_*.jpg (see data.py)
    unlabelled_per_batch: int = 16  # crops of ``unlabelled`` added to each P x K batch
    attribute_labels: list[str] = field(default_factory=list)  # folders with attributes.csv (attr loss)
    p: int = 16
    k: int = 4
    epochs: int = 30
    lr: float = 3.5e-4
    warmup_epochs: float = 2.0
    weight_decay: float = 5e-4
    mixstyle: float = 0.0  # probability of MixStyle on the frozen blocks' output (needs cached_views)
    freeze_blocks: int = 0  # freeze the first N blocks of a block tower (BLOCK_TOWERS)
    cached_views: int = 0  # with freeze_blocks: precompute the frozen part for this many augmented views
    val_fraction: float = 0.1
    seed: int = 0
    steps_per_epoch: int | None = None  # default: images / (P*K)
    command: str = ""

    def __post_init__(self) -> None:
        self.data = _as_list(self.data)
        self.teacher_targets = _as_list(self.teacher_targets)
        self.unlabelled = _as_list(self.unlabelled)
        self.named_crops = _as_list(self.named_crops)
        self.attribute_labels = _as_list(self.attribute_labels)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["tower"] = TowerConfig(**data.get("tower", {}))
        data["augment"] = AugmentConfig(**data.get("augment", {}))
        return cls(**data)

    def validate(self) -> None:
        if not self.losses:
            raise TrainingError(f"no loss chosen; known: {', '.join(LOSSES.names())}")
        for name in self.losses:
            LOSSES.get(name)
        if not self.data:
            raise TrainingError("no training data given")
        if len(set(CLASSIFIER_LOSSES) & set(self.losses)) > 1:
            raise TrainingError(
                f"the {' and '.join(CLASSIFIER_LOSSES)} losses train the same classifier: choose one"
            )
        _check_ranges(self)
        if set(TEACHER_LOSSES) & set(self.losses) and not self.teacher_targets:
            raise TrainingError("the distill and regress losses need --teacher-targets FILE.npz")
        if ("attr" in self.losses) != bool(self.attribute_labels):
            raise TrainingError("the attr loss and --attribute-labels FOLDER go together")
        if self.unlabelled and not set(TEACHER_LOSSES) & set(self.losses):
            raise TrainingError(
                "--unlabelled crops learn from the teacher only: add a distill or regress loss"
            )
        if self.unlabelled and self.unlabelled_per_batch < 2:
            raise TrainingError("--unlabelled-per-batch must be at least 2 (pairs of crops for distill)")
        if self.mixstyle and not self.cached_views:
            raise TrainingError("--mixstyle mixes the frozen blocks' cached output: it needs --cached-views")
        _refuse_repeats([*self.data, *self.unlabelled, *self.named_crops])
        if self.cached_views and (self.freeze_blocks <= 0 or self.tower.architecture not in BLOCK_TOWERS):
            raise TrainingError(
                f"--cached-views needs --freeze-blocks N > 0 and an architecture with blocks "
                f"({', '.join(BLOCK_TOWERS)})"
            )
        from ..embedding.tower import check_tower

        check_tower(self.tower)
        _check_backbone_file(self.tower.backbone_weights)


PAIR_LOSSES = losses_where("pairs")  # losses that need two images of a person in a batch


def _check_ranges(config: TrainConfig) -> None:
    """Refuse numbers no run can use (one :class:`TrainingError` naming the option).

    >>> _check_ranges(TrainConfig(data=["d"], out="o", val_fraction=1.0))
    Traceback (most recent call last):
    ...
    reid_search.errors.TrainingError: --val-fraction 1: must be at least 0 and below 1
    """
    rules = [  # (option, value, allowed, what allowed means)
        ("--epochs", config.epochs, config.epochs >= 1, "must be at least 1"),
        ("--p", config.p, config.p >= 2, "must be at least 2 (people to tell apart in a batch)"),
        ("--k", config.k, config.k >= (2 if set(PAIR_LOSSES) & set(config.losses) else 1),
         f"must be at least 2 with the {'/'.join(PAIR_LOSSES)} losses (a person's images to pull together)"),
        ("--lr", config.lr, config.lr > 0, "must be above 0"),
        ("--weight-decay", config.weight_decay, config.weight_decay >= 0, "must be at least 0"),
        ("--warmup-epochs", config.warmup_epochs, config.warmup_epochs >= 0, "must be at least 0"),
        ("--val-fraction", config.val_fraction, 0 <= config.val_fraction < 1,
         "must be at least 0 and below 1"),
        ("--label-smoothing", config.label_smoothing, 0 <= config.label_smoothing < 1,
         "must be at least 0 and below 1"),
        ("--cosface-scale", config.cosface_scale, config.cosface_scale > 0, "must be above 0"),
        ("--cosface-margin", config.cosface_margin, 0 <= config.cosface_margin < 1,
         "must be at least 0 and below 1"),
        ("--freeze-blocks", config.freeze_blocks, config.freeze_blocks >= 0, "must be at least 0"),
        ("--cached-views", config.cached_views, config.cached_views >= 0, "must be at least 0"),
        ("--mixstyle", config.mixstyle, 0 <= config.mixstyle <= 1, "is a probability, from 0 to 1"),
        ("--steps-per-epoch", config.steps_per_epoch or 1, (config.steps_per_epoch or 1) >= 1,
         "must be at least 1"),
    ]  # fmt: skip
    a, t = config.augment, config.tower
    rules += [
        ("--pad", a.pad, 0 <= a.pad < 1, "is a share of the side, at least 0 and below 1"),
        ("--colour-jitter", a.colour, 0 <= a.colour <= 1, "is a strength, from 0 to 1"),
        ("--random-erasing", a.erase, 0 <= a.erase <= 1, "is a probability, from 0 to 1"),
        ("--grey", a.grey, 0 <= a.grey <= 1, "is a probability, from 0 to 1"),
        ("--downscale", a.downscale, 0 <= a.downscale <= 1, "is a probability, from 0 to 1"),
        (
            "--triplet-margin",
            config.triplet_margin or 0,
            (config.triplet_margin or 0) >= 0,
            "must be at least 0",
        ),
        (
            "--contrastive-margin",
            config.contrastive_margin,
            config.contrastive_margin >= 0,
            "must be at least 0",
        ),
        (
            "--input-size height",
            t.input_height,
            1 <= t.input_height <= MAX_SIDE,
            f"must be 1 to {MAX_SIDE} (the tower sets its own minimum)",
        ),
        (
            "--input-size width",
            t.input_width,
            1 <= t.input_width <= MAX_SIDE,
            f"must be 1 to {MAX_SIDE} (the tower sets its own minimum)",
        ),
        ("--embedding-dim", t.embedding_dim, 2 <= t.embedding_dim <= 4096, "must be 2 to 4096"),
    ]
    rules += [(f"--loss {name}", weight, weight >= 0, "a loss weight must be at least 0")
              for name, weight in config.losses.items()]  # fmt: skip
    for option, value, allowed, rule in rules:
        if not math.isfinite(float(value)):
            raise TrainingError(f"{option} {value}: must be a finite number")
        if not allowed:
            raise TrainingError(f"{option} {value:g}: {rule}")


def _check_backbone_file(weights: str | None) -> None:
    """A ``--backbone-weights`` file must exist and be HDF5 (Keras ``.weights.h5``) or ONNX;
    refused before anything is read or written."""
    from pathlib import Path

    if not weights or weights == "imagenet":
        return
    path = Path(weights)
    if not path.is_file():
        raise TrainingError(f"--backbone-weights {weights}: no such file")
    if path.suffix != ".onnx":
        with open(path, "rb") as handle:
            if handle.read(8) != b"\x89HDF\r\n\x1a\n":
                raise TrainingError(
                    f"--backbone-weights {weights}: not MobileNetV2 weights (a .weights.h5 file)"
                )


def _refuse_repeats(folders: list[str]) -> None:
    """A folder given twice would count its people twice (as two datasets): refuse it."""
    from pathlib import Path

    seen: dict[Path, str] = {}
    for folder in folders:
        key = Path(folder).expanduser().resolve()
        if key in seen:
            raise TrainingError(f"{folder}: given twice (also as {seen[key]}); give each dataset once")
        seen[key] = folder


def parse_losses(text: str) -> dict[str, float]:
    """``"triplet=1,id=0.5"`` -> {"triplet": 1.0, "id": 0.5}; a bare name weighs 1.

    >>> parse_losses("triplet,id=0.5")
    {'triplet': 1.0, 'id': 0.5}
    """
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, weight = part.partition("=")
        out[name.strip()] = float(weight) if weight else 1.0
    return out
