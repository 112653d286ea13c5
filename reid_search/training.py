"""Train the siamese tower: P x K batches, mixed metric/ID/distillation losses, a warm-up schedule.

A run folder holds ``config.json`` (every hyper-parameter, the command), ``checkpoints/``
(one per epoch, TensorFlow's format, resumable), ``tensorboard/`` (losses, learning rate,
validation rank-1/mAP each epoch) and, at the end or on Ctrl-C, the exported tower
``model.keras`` with its card.

Validation uses identities held out of training (never the test set) and the engine's own
evaluation code; the card's ``compare`` threshold is the equal error rate of its
cross-camera pairs.

Usage::

    >>> from reid_search.training import TrainConfig, train
    >>> config = TrainConfig(data="../shared/data/cuhk03-mars", out="runs/t", epochs=2)  # doctest: +SKIP
    >>> result = train(config)                                                          # doctest: +SKIP
    >>> result.model_path, result.metrics["rank1"]                                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import shlex
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .augment import AugmentConfig
from .images import ImageError, load_image
from .layouts import KIND_IDENTITY, scan_dataset
from .model_store import ModelCard, write_json_atomic
from .tower import TowerConfig

LOSSES = ("pair", "contrastive", "triplet", "id", "distill", "regress")


@dataclass
class TrainConfig:
    """Every hyper-parameter of a run; saved as ``config.json`` beside it."""

    data: str
    out: str
    tower: TowerConfig = field(default_factory=TowerConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    losses: dict[str, float] = field(default_factory=lambda: {"triplet": 1.0, "id": 1.0})
    triplet_margin: float | None = 0.3  # None: soft margin
    contrastive_margin: float = 1.0
    label_smoothing: float = 0.1
    teacher_targets: str | None = None
    p: int = 16
    k: int = 4
    epochs: int = 30
    lr: float = 3.5e-4
    warmup_epochs: float = 2.0
    weight_decay: float = 5e-4
    freeze_blocks: int = 0  # MobileNetV2: freeze the stem and blocks 1..N
    cached_views: int = 0  # with freeze_blocks: precompute the frozen part for this many augmented views
    val_fraction: float = 0.1
    seed: int = 0
    steps_per_epoch: int | None = None  # default: images / (P*K)
    command: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        data = dict(data)
        data["tower"] = TowerConfig(**data.get("tower", {}))
        data["augment"] = AugmentConfig(**data.get("augment", {}))
        return cls(**data)

    def validate(self) -> None:
        unknown = set(self.losses) - set(LOSSES)
        if unknown or not self.losses:
            raise ValueError(f"unknown or no loss {sorted(unknown)}; known: {', '.join(LOSSES)}")
        if {"distill", "regress"} & set(self.losses) and not self.teacher_targets:
            raise ValueError("the distill and regress losses need --teacher-targets FILE.npz")
        if self.cached_views and (self.freeze_blocks <= 0 or self.tower.architecture != "mobilenetv2"):
            raise ValueError("--cached-views needs --architecture mobilenetv2 and --freeze-blocks N > 0")


def train_command(config: TrainConfig) -> str:
    """The full ``reid-search train`` command line that reproduces ``config`` (every option explicit)."""
    t, a = config.tower, config.augment
    opts: list[str] = [
        "reid-search",
        "train",
        config.data,
        "--out",
        config.out,
        "--architecture",
        t.architecture,
        "--input-size",
        f"{t.input_height}x{t.input_width}",
        "--embedding-dim",
        str(t.embedding_dim),
        *(["--backbone-weights", t.backbone_weights] if t.backbone_weights else []),
        "--loss",
        ",".join(f"{k}={v:g}" for k, v in config.losses.items()),
        "--triplet-margin",
        f"{config.triplet_margin or 0:g}",
        "--contrastive-margin",
        f"{config.contrastive_margin:g}",
        "--label-smoothing",
        f"{config.label_smoothing:g}",
        *(["--teacher-targets", config.teacher_targets] if config.teacher_targets else []),
        "--epochs",
        str(config.epochs),
        "--p",
        str(config.p),
        "--k",
        str(config.k),
        "--lr",
        f"{config.lr:g}",
        "--warmup-epochs",
        f"{config.warmup_epochs:g}",
        "--weight-decay",
        f"{config.weight_decay:g}",
        "--freeze-blocks",
        str(config.freeze_blocks),
        "--cached-views",
        str(config.cached_views),
        "--flip" if a.flip else "--no-flip",
        "--pad",
        f"{a.pad:g}",
        "--colour-jitter",
        f"{a.colour:g}",
        "--random-erasing",
        f"{a.erase:g}",
        "--randaugment" if a.randaugment else "--no-randaugment",
        "--val-fraction",
        f"{config.val_fraction:g}",
        *(["--steps-per-epoch", str(config.steps_per_epoch)] if config.steps_per_epoch else []),
        "--seed",
        str(config.seed),
    ]
    return " ".join(shlex.quote(o) for o in opts)


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


# ---------------------------------------------------------------------- data
@dataclass
class TrainingData:
    """Decoded training and validation images in memory, with their labels."""

    train_pixels: np.ndarray  # uint8 (N, H, W, 3)
    train_labels: np.ndarray  # 0..C-1
    train_paths: list[str]
    val_pixels: np.ndarray
    val_persons: np.ndarray
    val_cameras: np.ndarray
    val_paths: list[str]
    n_classes: int
    source: str
    skipped: list[str]


def _decode_all(
    paths: list[str], size: tuple[int, int], blobs: list[bytes] | None = None
) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode files (or encoded bytes) to uint8 at ``size``: (pixels, kept indices, failures)."""
    import io

    def one(i: int):
        try:
            if blobs is None:
                return load_image(paths[i], size).pixels.astype(np.uint8)
            from PIL import Image

            with Image.open(io.BytesIO(blobs[i])) as img:
                return np.asarray(img.convert("RGB").resize((size[1], size[0]), Image.Resampling.BILINEAR))
        except (ImageError, OSError) as exc:
            return f"{paths[i]}: {exc}"

    with ThreadPoolExecutor(4) as pool:
        decoded = list(pool.map(one, range(len(paths))))
    keep = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    failures = [d for d in decoded if isinstance(d, str)]
    pixels = np.stack([decoded[i] for i in keep]) if keep else np.zeros((0, *size, 3), np.uint8)
    return pixels, keep, failures


def load_training_data(config: TrainConfig) -> TrainingData:
    """Read a records folder, or scan a dataset and split its identities like ``records`` does."""
    from .records import is_records_folder, read_records, split_identities

    size = config.tower.input_size
    if is_records_folder(config.data):
        train_ex = read_records(config.data, "train")
        val_ex = read_records(config.data, "val")
        tr_pix, tr_keep, fails = _decode_all([e.path for e in train_ex], size, [e.image for e in train_ex])
        va_pix, va_keep, vfails = _decode_all([e.path for e in val_ex], size, [e.image for e in val_ex])
        train_ex = [train_ex[i] for i in tr_keep]
        val_ex = [val_ex[i] for i in va_keep]
        labels = np.array([e.label for e in train_ex])
        return TrainingData(
            tr_pix,
            labels,
            [e.path for e in train_ex],
            va_pix,
            np.array([e.person for e in val_ex]),
            np.array([e.camera for e in val_ex]),
            [e.path for e in val_ex],
            int(labels.max()) + 1,
            config.data,
            fails + vfails,
        )
    scan = scan_dataset(config.data)
    for train_split in ("bbox_train", "bounding_box_train"):
        if train_split in scan.splits:
            scan.records = scan.split(train_split)
    records = [r for r in scan.records if r.kind == KIND_IDENTITY]
    train_ids, _ = split_identities([r.person for r in records], config.val_fraction, config.seed)
    label_of = {p: i for i, p in enumerate(train_ids)}
    train_recs = [r for r in records if r.person in label_of]
    val_recs = [r for r in records if r.person not in label_of]
    tr_pix, tr_keep, fails = _decode_all([r.path for r in train_recs], size)
    va_pix, va_keep, vfails = _decode_all([r.path for r in val_recs], size)
    train_recs = [train_recs[i] for i in tr_keep]
    val_recs = [val_recs[i] for i in va_keep]
    return TrainingData(
        tr_pix,
        np.array([label_of[r.person] for r in train_recs]),
        [r.path for r in train_recs],
        va_pix,
        np.array([r.person for r in val_recs]),
        np.array([r.camera if r.camera is not None else -1 for r in val_recs]),
        [r.path for r in val_recs],
        len(train_ids),
        scan.root,
        fails + vfails,
    )


def load_teacher_targets(path: str | Path, train_paths: list[str]) -> np.ndarray:
    """Teacher vectors for each training image, matched by file name (MARS names are unique)."""
    with np.load(path, allow_pickle=False) as npz:
        names = [Path(str(p)).name for p in npz["paths"]]
        vectors = npz["embeddings"].astype(np.float32)
    by_name = dict(zip(names, vectors, strict=True))
    missing = [p for p in train_paths if Path(p).name not in by_name]
    if missing:
        raise ValueError(f"{path}: no teacher vector for {len(missing)} training images, e.g. {missing[0]}")
    return np.stack([by_name[Path(p).name] for p in train_paths])


# ---------------------------------------------------------------------- model
def freeze_backbone_blocks(tower, blocks: int) -> int:
    """Freeze MobileNetV2's stem and ``block_1..block_N``; returns how many layers were frozen."""
    if blocks <= 0:
        return 0
    frozen = 0
    for layer in _backbone_layers(tower):
        name = layer.name
        stem = name.startswith(("Conv1", "bn_Conv1", "expanded_conv"))
        block = name.startswith("block_") and int(name.split("_")[1]) <= blocks
        if stem or block:
            layer.trainable = False
            frozen += 1
    return frozen


def _backbone_layers(tower):
    for layer in tower.layers:
        if hasattr(layer, "layers"):
            yield from layer.layers


def split_at_block(tower, blocks: int):
    """Split a MobileNetV2 tower after ``block_N``: (frozen part: pixels -> features, trainable view:
    features -> [BN-neck features, embedding]). Both share the tower's layers and weights."""
    import keras

    base = next(layer for layer in tower.layers if hasattr(layer, "layers"))
    names = {layer.name for layer in base.layers}
    cut_name = f"block_{blocks}_add" if f"block_{blocks}_add" in names else f"block_{blocks}_project_BN"
    cut = base.get_layer(cut_name).output
    lower = keras.Model(base.input, cut)
    upper = keras.Model(cut, base.output)
    pixels = keras.Input(tower.input_shape[1:])
    normalised = tower.get_layer("imagenet_norm")(tower.get_layer("to_unit")(pixels))
    frozen = keras.Model(pixels, lower(normalised))
    features = keras.Input(cut.shape[1:])
    bn = tower.get_layer("bnneck")(tower.get_layer("embedding")(tower.get_layer("gap")(upper(features))))
    view = keras.Model(features, [bn, tower.get_layer("l2norm")(bn)])
    return frozen, view


def cosine_schedule(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up from base/10 to base over ``warmup`` steps, then cosine decay to base/100.

    >>> round(cosine_schedule(0, 100, 10, 1.0), 3), cosine_schedule(10, 100, 10, 1.0)
    (0.1, 1.0)
    """
    if warmup > 0 and step < warmup:
        return base_lr * (0.1 + 0.9 * step / warmup)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))


@dataclass
class TrainResult:
    out: Path
    model_path: Path
    epochs_done: int
    metrics: dict[str, Any]
    seconds: float
    interrupted: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


class Trainer:
    """Holds the model, heads, optimizer and checkpoint of one run."""

    def __init__(self, config: TrainConfig, data: TrainingData, log=print):
        import keras
        import tensorflow as tf

        from .augment import Augmenter
        from .sampler import PKSampler
        from .tower import build_tower

        config.validate()
        self.config, self.data, self.log = config, data, log
        self.out = Path(config.out)
        keras.utils.set_random_seed(config.seed)
        self.tower = build_tower(config.tower)
        self.frozen = freeze_backbone_blocks(self.tower, config.freeze_blocks)
        self.teacher = (
            load_teacher_targets(config.teacher_targets, data.train_paths) if config.teacher_targets else None
        )
        self.augmenter = Augmenter(config.augment, config.seed)
        self.cache = None
        if config.cached_views:
            frozen_part, self.view = split_at_block(self.tower, config.freeze_blocks)
            self.cache = self._build_cache(frozen_part)
        else:
            self.view = keras.Model(
                self.tower.input, [self.tower.get_layer("bnneck").output, self.tower.output]
            )
        self.classifier = keras.layers.Dense(data.n_classes, use_bias=False, name="id_classifier")
        self.classifier.build((None, config.tower.embedding_dim))
        self.pair_head = keras.layers.Dense(1, name="pair_head")
        self.pair_head.build((None, config.tower.embedding_dim))
        teacher_dim = self.teacher.shape[1] if self.teacher is not None else 1
        self.teacher_head = keras.layers.Dense(teacher_dim, use_bias=False, name="teacher_head")
        self.teacher_head.build((None, config.tower.embedding_dim))
        self.optimizer = keras.optimizers.AdamW(config.lr, weight_decay=config.weight_decay)
        self.sampler = PKSampler(data.train_labels, config.p, config.k, config.seed)
        self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False)
        used_heads = {"id": self.classifier, "pair": self.pair_head, "regress": self.teacher_head}
        self.variables = list(self.view.trainable_variables)
        for loss_name, head in used_heads.items():
            if loss_name in config.losses:
                self.variables += head.trainable_variables
        self.optimizer.build(self.variables)
        self.checkpoint = tf.train.Checkpoint(
            tower=self.tower,
            classifier=self.classifier,
            pair_head=self.pair_head,
            teacher_head=self.teacher_head,
            optimizer=self.optimizer,
            augmenter=self.augmenter.rng,
            epoch=self.epoch,
            step=self.step,
        )
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.out / "checkpoints", max_to_keep=2)
        self.steps_per_epoch = config.steps_per_epoch or self.sampler.batches_per_epoch()
        self._train_step = self._make_train_step()

    def _build_cache(self, frozen_part) -> np.ndarray:
        """Frozen-part outputs of ``cached_views`` augmented views of every training image (float16)."""
        import tensorflow as tf

        started = time.perf_counter()
        infer = tf.function(lambda x: frozen_part(self.augmenter(x), training=False), autograph=False)
        n, views = len(self.data.train_pixels), self.config.cached_views
        cache = None
        for v in range(views):
            for i in range(0, n, 128):
                out = infer(tf.cast(self.data.train_pixels[i : i + 128], tf.float32)).numpy()
                if cache is None:
                    cache = np.zeros((views, n, *out.shape[1:]), np.float16)
                cache[v, i : i + len(out)] = out
        self.log(
            f"cached {views} augmented views of {n} images after block {self.config.freeze_blocks} "
            f"{cache.shape[2:]} in {time.perf_counter() - started:.0f} s"
        )
        return cache

    def _inputs(self, batch: np.ndarray, step: int) -> np.ndarray:
        """Pixels of the batch, or in cached mode one random cached view per image."""
        if self.cache is None:
            return self.data.train_pixels[batch]
        views = np.random.default_rng([self.config.seed, step]).integers(0, len(self.cache), len(batch))
        return self.cache[views, batch]

    # ------------------------------------------------------------------ step
    def _make_train_step(self):
        import tensorflow as tf

        from . import losses as L

        c = self.config
        weights = c.losses

        cached = self.cache is not None

        @tf.function(reduce_retracing=True, autograph=False)  # static Python branches only
        def train_step(inputs, labels, teacher, lr):
            self.optimizer.learning_rate.assign(lr)
            x = tf.cast(inputs, tf.float32) if cached else self.augmenter(tf.cast(inputs, tf.float32))
            with tf.GradientTape() as tape:
                bn_features, embedding = self.view(x, training=True)
                terms = {}
                if "triplet" in weights:
                    terms["triplet"] = L.batch_hard_triplet_loss(embedding, labels, c.triplet_margin)
                if "contrastive" in weights:
                    terms["contrastive"] = L.contrastive_loss(embedding, labels, c.contrastive_margin)
                if "pair" in weights:
                    terms["pair"] = L.pair_loss(embedding, labels, self.pair_head)
                if "id" in weights:
                    terms["id"] = L.id_loss(self.classifier(bn_features), labels, c.label_smoothing)
                if "distill" in weights:
                    terms["distill"] = L.distillation_loss(embedding, teacher)
                if "regress" in weights:
                    terms["regress"] = L.teacher_regression_loss(self.teacher_head(bn_features), teacher)
                total = tf.add_n([weights[k] * v for k, v in terms.items()])
            grads = tape.gradient(total, self.variables)
            self.optimizer.apply_gradients(zip(grads, self.variables, strict=True))
            return total, terms

        return train_step

    # ------------------------------------------------------------------ loop
    def restore(self) -> bool:
        """Resume from the latest checkpoint (and the sampler's saved state); False if none."""
        latest = self.manager.latest_checkpoint
        if not latest:
            return False
        self.checkpoint.restore(latest).assert_existing_objects_matched()
        state_file = self.out / "checkpoints" / "sampler_state.json"
        if state_file.is_file():
            self.sampler.set_state(json.loads(state_file.read_text()))
        self.log(f"resumed from {latest} (epoch {int(self.epoch.numpy())})")
        return True

    def save_checkpoint(self) -> str:
        path = self.manager.save(checkpoint_number=int(self.epoch.numpy()))
        write_json_atomic(self.out / "checkpoints" / "sampler_state.json", self.sampler.get_state())
        return path

    def run(self) -> TrainResult:
        import tensorflow as tf

        c = self.config
        total_steps = c.epochs * self.steps_per_epoch
        warmup = int(c.warmup_epochs * self.steps_per_epoch)
        writer = tf.summary.create_file_writer(str(self.out / "tensorboard"))
        history: list[dict[str, Any]] = []
        started = time.perf_counter()
        interrupted = False
        try:
            while int(self.epoch.numpy()) < c.epochs:
                epoch_start = time.perf_counter()
                sums: dict[str, float] = {}
                for i, batch in enumerate(self.sampler.epoch()):
                    if i >= self.steps_per_epoch:
                        break
                    step = int(self.step.numpy())
                    lr = cosine_schedule(step, total_steps, warmup, c.lr)
                    teacher = (
                        self.teacher[batch] if self.teacher is not None else np.zeros((len(batch), 1), "f4")
                    )
                    total, terms = self._train_step(
                        self._inputs(batch, step), self.data.train_labels[batch], teacher, np.float32(lr)
                    )
                    self.step.assign_add(1)
                    sums["loss"] = sums.get("loss", 0.0) + float(total)
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    if step % 10 == 0:
                        with writer.as_default(step=step):
                            log_scalar("loss/total", total)
                            for k, v in terms.items():
                                log_scalar(f"loss/{k}", v)
                            log_scalar("learning_rate", lr)
                n_steps = min(self.steps_per_epoch, i + 1)
                self.epoch.assign_add(1)
                record = {
                    "epoch": int(self.epoch.numpy()),
                    **{k: v / n_steps for k, v in sums.items()},
                    "lr": lr,
                    "seconds": time.perf_counter() - epoch_start,
                }
                record.update(self.validate())
                with writer.as_default(step=int(self.epoch.numpy())):
                    for key in ("rank1", "mAP"):
                        if key in record:
                            log_scalar(f"val/{key}", record[key])
                writer.flush()
                history.append(record)
                self._append_history(record)
                self.save_checkpoint()
                self.log(_format_epoch(record, c.epochs))
        except KeyboardInterrupt:
            interrupted = True
            self.save_checkpoint()
            self.log(f"interrupted: checkpoint saved in {self.out / 'checkpoints'}; --resume continues")
        seconds = time.perf_counter() - started
        model_path, metrics = self.export(seconds, interrupted)
        return TrainResult(
            self.out, model_path, int(self.epoch.numpy()), metrics, seconds, interrupted, history
        )

    def _append_history(self, record: dict[str, Any]) -> None:
        with open(self.out / "history.jsonl", "a") as fh:
            fh.write(json.dumps(record) + "\n")

    # ------------------------------------------------------------------ validation + export
    def embed_validation(self) -> np.ndarray:
        from .embedder import l2_normalise

        out = [
            self.tower(self.data.val_pixels[i : i + 128].astype(np.float32), training=False).numpy()
            for i in range(0, len(self.data.val_pixels), 128)
        ]
        return l2_normalise(np.concatenate(out)) if out else np.zeros((0, self.config.tower.embedding_dim))

    def validate(self) -> dict[str, float]:
        """Validation rank-1/mAP on held-out identities with the engine's evaluation code."""
        if len(self.data.val_pixels) == 0:
            return {}
        from .evaluation import score_protocol
        from .metrics import summarise
        from .protocols import EvalItems, cross_camera

        items = EvalItems.from_labels(
            self.embed_validation(), self.data.val_persons, self.data.val_cameras, paths=self.data.val_paths
        )
        cams = sorted(set(self.data.val_cameras.tolist()))
        two = items.cameras_known and len(cams) == 2
        protocol = cross_camera(items, [cams[0]] if two else None, [cams[1]] if two else None)
        summary = summarise(score_protocol(items, protocol))
        return {"rank1": summary.rank(1), "mAP": summary.mean_ap, "val_queries": summary.n_scored}

    def threshold(self) -> tuple[float | None, str]:
        from .calibration import equal_error_threshold, labelled_pairs

        if len(self.data.val_pixels) < 2:
            return None, "no validation identities: no threshold"
        cams = self.data.val_cameras if (self.data.val_cameras >= 0).all() else None
        same, diff = labelled_pairs(self.embed_validation(), self.data.val_persons, cams)
        if not len(same) or not len(diff):
            return None, "validation has no same/different pairs: no threshold"
        choice = equal_error_threshold(same, diff)
        return round(choice.threshold, 4), (
            f"equal error rate over {'cross-camera ' if cams is not None else ''}pairs of the "
            f"{len(set(self.data.val_persons))} validation identities: {choice.n_same} same, "
            f"{choice.n_different} different pairs; "
            f"FRR {choice.false_reject:.3f}, FAR {choice.false_accept:.3f}"
        )

    def export(self, seconds: float, interrupted: bool) -> tuple[Path, dict[str, Any]]:
        """Write the tower as ``model.keras`` with its card (validation metrics and threshold)."""
        from .model_store import save_model

        c = self.config
        metrics = self.validate()
        threshold, rule = self.threshold()
        card = ModelCard(
            name=Path(c.out).name,
            architecture=c.tower.architecture,
            input_height=c.tower.input_height,
            input_width=c.tower.input_width,
            embedding_dim=c.tower.embedding_dim,
            threshold=threshold,
            threshold_rule=rule,
            trained=True,
            tower_config=c.tower.to_dict(),
            training={
                "command": c.command,
                "data": self.data.source,
                "train_identities": int(self.data.n_classes),
                "train_images": len(self.data.train_labels),
                "val_identities": len(set(self.data.val_persons.tolist())),
                "val_images": len(self.data.val_paths),
                "epochs": int(self.epoch.numpy()),
                "epochs_planned": c.epochs,
                "interrupted": interrupted,
                "steps": int(self.step.numpy()),
                "wall_seconds": round(seconds, 1),
                "losses": c.losses,
                "teacher_targets": c.teacher_targets,
                "backbone_weights": c.tower.backbone_weights,
                "frozen_layers": self.frozen,
                "config": c.to_dict(),
            },
            metrics={
                "validation": metrics,
                "validation_protocol": "cross-camera on held-out train identities",
            },
            notes=(f"distilled from teacher embeddings {c.teacher_targets}") if c.teacher_targets else "",
        )
        path = save_model(self.tower, card, self.out / "model.keras")
        return path, metrics


def log_scalar(tag: str, value) -> None:
    """A TensorBoard scalar written with TensorFlow alone (the ``tensorboard`` package is
    only needed to view the logs: ``pip install tensorboard; tensorboard --logdir RUN``)."""
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    tf.summary.write(tag, tf.cast(value, tf.float32), metadata=metadata)


def _format_epoch(record: dict[str, Any], epochs: int) -> str:
    terms = " ".join(
        f"{k} {v:.4f}"
        for k, v in record.items()
        if k not in ("epoch", "lr", "seconds", "rank1", "mAP", "val_queries")
    )
    val = (
        f" | val rank-1 {100 * record['rank1']:.1f}% mAP {100 * record['mAP']:.1f}%"
        if "rank1" in record
        else ""
    )
    return f"epoch {record['epoch']}/{epochs} {terms} lr {record['lr']:.2e} ({record['seconds']:.0f} s){val}"


def train(config: TrainConfig, resume: bool = False, log=print) -> TrainResult:
    """Train (or resume) a run described by ``config``; returns where the model went and its metrics."""
    out = Path(config.out)
    config_file = out / "config.json"
    if resume:
        if not config_file.is_file():
            raise ValueError(f"{out}: nothing to resume (no config.json)")
        config = TrainConfig.from_dict(json.loads(config_file.read_text()))
    else:
        if (out / "checkpoints").exists():
            raise ValueError(f"{out}: a run is already there; use --resume or another --out")
        config.command = config.command or train_command(config)
        out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(config_file, config.to_dict())
    data = load_training_data(config)
    log(
        f"data: {len(data.train_labels)} training images of {data.n_classes} identities, "
        f"{len(data.val_paths)} validation images of "
        f"{len(set(data.val_persons.tolist()))} held-out identities"
        + (f", {len(data.skipped)} unreadable skipped" if data.skipped else "")
    )
    trainer = Trainer(config, data, log)
    if resume:
        trainer.restore()
    return trainer.run()
