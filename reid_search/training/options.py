"""The one table between ``reid-search train``'s options and :class:`TrainConfig`'s fields.

Each :class:`TrainOption` names its flag, the config field it sets (``tower.pooling``), its
help, and how a value crosses (text -> field, field -> text). From this table, and nothing
else, come: the command's typer options (their shown defaults read from the dataclasses),
the config built from only the options a user gave (every other field keeps its dataclass
default), and the full command line a card records (:func:`train_command`).

A new training option is one dataclass field and one row here::

    >>> config = config_from_options(["data/"], "runs/a", {"lr": 1e-3, "pooling": "gem"})
    >>> config.lr, config.tower.pooling, config.epochs  # epochs: the dataclass default
    (0.001, 'gem', 30)
    >>> "--lr 0.001" in train_command(config) and "--pooling gem" in train_command(config)
    True
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Any

from ..embedding.tower_config import TowerConfig, default_input_size
from ..errors import InputError
from .augment_config import AugmentConfig
from .config import TrainConfig, parse_losses


@dataclass(frozen=True)
class TrainOption:
    """One ``train`` option: its flag, the :class:`TrainConfig` field (dotted) it sets, help,
    the CLI value's type, converters both ways, and when the command line shows it."""

    flag: str
    field: str
    help: str
    kind: type = float
    repeat: bool = False  # a list option given once per value
    to_field: Callable[[Any], Any] | None = None  # CLI value -> field value
    to_text: Callable[[Any], str] | None = None  # field value -> CLI text
    shown: Callable[[TrainConfig], bool] | None = None  # in the card's command only when this holds

    @property
    def name(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def value_of(self, config: TrainConfig) -> Any:
        value: Any = config
        for part in self.field.split("."):
            value = getattr(value, part)
        return value

    def default_text(self) -> str:
        default = self.value_of(TrainConfig(data=[], out=""))
        if self.kind is bool:
            return self.flag if default else "--no-" + self.flag.removeprefix("--")
        return "none" if default in (None, []) else self._text(default)

    def _text(self, value: Any) -> str:
        if self.to_text:
            return self.to_text(value)
        return f"{value:g}" if isinstance(value, float) else str(value)

    def command_parts(self, config: TrainConfig) -> list[str]:
        value = self.value_of(config)
        if self.shown is not None and not self.shown(config):
            return []
        if self.kind is bool:
            return [self.flag if value else "--no-" + self.flag.removeprefix("--")]
        if self.repeat:
            return [part for v in value for part in (self.flag, str(v))]
        if value is None and self.to_text is None:
            return []  # unset: the default (None) again
        return [self.flag, self._text(value)]


def _size(text: str) -> tuple[int, int]:
    """``"128x64"`` -> (128, 64); anything else is one InputError line."""
    try:
        height, width = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise InputError(f"--input-size {text!r}: expected HEIGHTxWIDTH, e.g. 128x64") from None
    return height, width


def _losses_text(losses: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in losses.items())


def _paths(values) -> list[str]:
    return [str(v) for v in values]


TRAIN_OPTIONS: tuple[TrainOption, ...] = (
    TrainOption("--architecture", "tower.architecture",
                "mobilenetv2, onnx (imported from --backbone-weights FILE.onnx), seed or mini.", str),
    TrainOption("--input-size", "tower.input_size", "HEIGHTxWIDTH of the tower's input "
                "(an architecture's own: 256x128 for seed and onnx, else 128x64).", str, to_field=_size,
                to_text=lambda size: f"{size[0]}x{size[1]}"),
    TrainOption("--embedding-dim", "tower.embedding_dim", "Embedding size.", int),
    TrainOption("--backbone-weights", "tower.backbone_weights", "MobileNetV2 init: a .weights.h5 file or "
                "'imagenet' (download); onnx: the .onnx network.", str),
    TrainOption("--ibn-blocks", "tower.ibn_blocks", "MobileNetV2: IBN-a (half instance norm) in blocks 1..N "
                "(0 = off).", int, shown=lambda c: bool(c.tower.ibn_blocks)),
    TrainOption("--pooling", "tower.pooling", "MobileNetV2 pooling: avg, or gem (generalised mean, learned "
                "power).", str, shown=lambda c: c.tower.pooling != "avg"),
    TrainOption("--loss", "losses", "Weighted losses: pair, contrastive, triplet, id, cosface, distill, "
                "regress; e.g. 'triplet=1,id=1'.", str, to_field=parse_losses, to_text=_losses_text),
    TrainOption("--triplet-margin", "triplet_margin", "Batch-hard triplet margin; 0 = soft margin.",
                to_field=lambda v: v or None, to_text=lambda v: f"{v or 0:g}"),
    TrainOption("--contrastive-margin", "contrastive_margin", "Contrastive margin."),
    TrainOption("--label-smoothing", "label_smoothing", "ID (and cosface) loss label smoothing."),
    TrainOption("--cosface-scale", "cosface_scale", "Cosface loss: scale of the cosine logits.",
                shown=lambda c: "cosface" in c.losses),
    TrainOption("--cosface-margin", "cosface_margin", "Cosface loss: margin taken off the true class's "
                "cosine.", shown=lambda c: "cosface" in c.losses),
    TrainOption("--teacher-targets", "teacher_targets", "Teacher embeddings .npz (paths relative to the "
                "dataset, embeddings) for distill/regress; repeat for several datasets.", str, repeat=True,
                to_field=_paths),
    TrainOption("--unlabelled", "unlabelled", "Folder of crops with no identities (any layout), trained by "
                "the teacher only (distill/regress); its --teacher-targets file must cover every image. "
                "Repeatable.", str, repeat=True, to_field=_paths),
    TrainOption("--named-crops", "named_crops", "Folder of crops named PERSON_anything.jpg, each sub-folder "
                "its own scene: people with 2+ crops join the identity losses, single crops learn from the "
                "teacher only (left out without a distill/regress loss); no validation (cameras unknown). "
                "Repeatable.", str, repeat=True, to_field=_paths),
    TrainOption("--attribute-labels", "attribute_labels", "Folder with attributes.csv (PETA names per "
                "person) whose images are training images: the attr loss teaches the embedding what people "
                "wear; the people train-attributes scores on (its default split) are left out. Repeatable.",
                str, repeat=True, to_field=_paths),
    TrainOption("--unlabelled-per-batch", "unlabelled_per_batch", "Crops of --unlabelled folders added to "
                "each P x K batch.", int, shown=lambda c: bool(c.unlabelled or c.named_crops)),
    TrainOption("--epochs", "epochs", "Epochs.", int),
    TrainOption("--p", "p", "Identities per batch.", int),
    TrainOption("--k", "k", "Images per identity in a batch.", int),
    TrainOption("--lr", "lr", "Peak learning rate (AdamW)."),
    TrainOption("--warmup-epochs", "warmup_epochs", "Linear warm-up epochs before cosine decay."),
    TrainOption("--weight-decay", "weight_decay", "AdamW weight decay."),
    TrainOption("--mixstyle", "mixstyle", "MixStyle probability on the frozen blocks' output (needs "
                "--cached-views; 0 = off).", shown=lambda c: bool(c.mixstyle)),
    TrainOption("--freeze-blocks", "freeze_blocks", "Freeze the first N blocks (MobileNetV2: stem + blocks "
                "1..N; onnx: N pooling stages).", int),
    TrainOption("--cached-views", "cached_views", "With --freeze-blocks: precompute the frozen part for V "
                "augmented views (fast).", int),
    TrainOption("--flip", "augment.flip", "Random horizontal flip.", bool),
    TrainOption("--pad", "augment.pad", "Pad-and-crop fraction (0 = off)."),
    TrainOption("--colour-jitter", "augment.colour", "Colour jitter strength (0 = off)."),
    TrainOption("--grey", "augment.grey", "Probability of a grey-scale training image."),
    TrainOption("--downscale", "augment.downscale", "Probability of a low-resolution copy (shrunk to 30-80%, "
                "enlarged back).", shown=lambda c: bool(c.augment.downscale)),
    TrainOption("--random-erasing", "augment.erase", "Random erasing probability."),
    TrainOption("--randaugment", "augment.randaugment", "Light RandAugment (grey, contrast stretch, blur).",
                bool),
    TrainOption("--val-fraction", "val_fraction", "Dataset input: share of identities held out."),
    TrainOption("--steps-per-epoch", "steps_per_epoch", "Batches per epoch (none: images / (P*K)).", int),
    TrainOption("--seed", "seed", "Seed: weights, sampler, augmentation, split.", int),
)  # fmt: skip
OPTIONS_BY_NAME = {o.name: o for o in TRAIN_OPTIONS}


def config_from_options(data: list[str], out: str, given: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from only the options a user gave (``name -> CLI value``); every
    other field keeps its dataclass default (the input size: its architecture's default)."""
    top: dict[str, Any] = {}
    tower: dict[str, Any] = {}
    augment: dict[str, Any] = {}
    for name, value in given.items():
        option = OPTIONS_BY_NAME[name]
        converted = option.to_field(value) if option.to_field else value
        section, _, leaf = option.field.rpartition(".")
        {"": top, "tower": tower, "augment": augment}[section][leaf] = converted
    size = tower.pop("input_size", None) or default_input_size(
        tower.get("architecture", TowerConfig.architecture)
    )
    tower["input_height"], tower["input_width"] = size
    tower.setdefault("seed", top.get("seed", 0))
    return TrainConfig(
        data=[str(d) for d in data], out=str(out), tower=replace(TowerConfig(), **tower),
        augment=replace(AugmentConfig(), **augment), **top,
    )  # fmt: skip


def train_command(config: TrainConfig) -> str:
    """The full ``reid-search train`` command line that reproduces ``config`` (every option
    the table has, explicit unless it is off and shown only when on)."""
    parts = ["reid-search", "train", *config.data, "--out", config.out]
    for option in TRAIN_OPTIONS:
        parts += option.command_parts(config)
    return " ".join(shlex.quote(p) for p in parts)


def _check_table() -> None:
    """Every field of the three dataclasses a user may set has a row (a new field without one
    fails at import, so the CLI and the card's command cannot drift from the config)."""
    covered = {o.field for o in TRAIN_OPTIONS} | {"data", "out", "command", "tower", "augment"}
    covered |= {"tower.input_height", "tower.input_width", "tower.seed"}  # --input-size, --seed
    wanted = {f.name for f in fields(TrainConfig)}
    wanted |= {f"tower.{f.name}" for f in fields(TowerConfig)} | {
        f"augment.{f.name}" for f in fields(AugmentConfig)
    }
    missing = wanted - covered
    if missing:
        raise RuntimeError(f"train options table misses {sorted(missing)}")


_check_table()
